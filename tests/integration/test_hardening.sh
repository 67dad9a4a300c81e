# The root path trusts nothing a user wrote: what each trick of issue 9 gets is a clear error
# or nothing, never more than the user's own rights, and never a drained node.

test_chdir_outside_the_shared_folders_fails_the_job_clearly() {
  local j out
  j=$(as_user "sbatch --parsable --chdir=/ --vm-image=tiny -o '$TEST_DIR/out-%j.txt' --wrap 'ls /etc/shadow; echo should-not-run'")
  wait_job_done "$j" 120
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "slurm-vm: image 'tiny' on node[0-9] (job $j): the working directory / is not under a folder shared with VMs (/home, /tmp)" "job output"
  assert_not_contains "$out" "should-not-run" "job output"
  assert_eq "$(job_state "$j")" "FAILED" "job state"
  assert_nodes_up
  assert_no_leftovers
}

test_channel_sockets_are_the_users_alone_once_the_vm_is_set_up() {
  local j dir i
  j=$(as_user "sbatch --parsable -w node1 --vm-image=tiny -o out-%j.txt --wrap 'echo up; sleep 30'")
  for ((i = 0; i < 240; i++)); do
    grep -q up "$TEST_DIR/out-$j.txt" 2>/dev/null && break
    sleep 0.5
  done
  dir=/run/slurm-vm/svm-$j-node1
  # The folder stays root's (nothing of the user's on /run); the sockets are the user's alone.
  assert_eq "$(stat -c '%U %a' "$dir")" "root 711" "channel folder"
  assert_eq "$(stat -c '%U %a %F' "$dir/exec.0.sock")" "$SVM_TEST_USER 600 socket" "channel socket"
  assert_eq "$(stat -c '%U %a' /var/lib/slurm-vm/jobs/svm-$j-node1)" "root 755" "state folder"
  scancel "$j"
  wait_job_done "$j" 60
  assert_no_leftovers
}

test_vm_left_by_a_crash_is_swept_when_slurmd_starts() {
  local xml=/tmp/svm-orphan-$$.xml here i
  here=$(dirname "${BASH_SOURCE[0]}")
  # A VM and folders as a node that crashed mid-job leaves them, for a job id no job has.
  sed -e 's/@NAME@/svm-999998-node2/' "$here/data/orphan-domain.xml" >"$xml"
  $VIRSH create "$xml" >/dev/null
  rm -f "$xml"
  mkdir -p /run/slurm-vm/svm-999998-node2 /var/lib/slurm-vm/jobs/svm-999998-node2
  "$here/../../contrib/cluster.sh" restart-slurm >/dev/null
  for ((i = 0; i < 120; i++)); do
    $VIRSH list --name | grep -q '^svm-999998-node2$' || break
    sleep 0.5
  done
  assert_not_contains "$($VIRSH list --name)" "svm-999998-node2" "domains after slurmd's start"
  assert_contains "$(cat "$SVM_LOG"/slurmd-node*.log)" "this host: destroyed svm-999998-node2, left by a job that is over" "slurmd logs"
  assert_no_leftovers
  for ((i = 0; i < 120; i++)); do
    [ -z "$(sinfo -h -N -o %T | grep -vx idle)" ] && break
    sleep 0.5
  done
  assert_nodes_up
}

test_vm_left_by_a_job_that_is_over_is_swept_by_any_jobs_end() {
  local xml=/tmp/svm-orphan-$$.xml here j
  here=$(dirname "${BASH_SOURCE[0]}")
  sed -e 's/@NAME@/svm-999997-node3/' "$here/data/orphan-domain.xml" >"$xml"
  $VIRSH create "$xml" >/dev/null
  rm -f "$xml"
  mkdir -p /run/slurm-vm/svm-999997-node3 /var/lib/slurm-vm/jobs/svm-999997-node3
  # A bare job: its epilog sweeps what an earlier job left on its node.
  j=$(as_user "sbatch --parsable -w node3 -o /dev/null --wrap true")
  wait_job_done "$j" 60
  assert_no_leftovers
  assert_contains "$(grep "job $j node node3: destroyed" "$SVM_LOG/slurmd-node3.log")" "svm-999997-node3, left by a job that is over" "slurmd log"
}

test_host_calls_refuse_programs_on_the_host_but_run_steps() {
  local j out
  # A task prolog of the user's: had srun taken it, slurmstepd would run it on the host.
  as_user "printf '#!/bin/sh\ntouch $TEST_DIR/task-prolog-ran\n' >mark.sh && chmod 755 mark.sh"
  j=$(as_user "sbatch --parsable --vm-image=tiny -o out-%j.txt --wrap 'srun --prolog=/bin/true hostname; echo prolog-exit \$?; srun --task-prolog $TEST_DIR/mark.sh hostname; echo task-prolog-exit \$?; SLURM_CONF=/tmp/x srun hostname; echo conf-exit \$?; srun hostname; echo step-exit \$?'")
  wait_job_done "$j" 180
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "^slurm-vm: host call refused: srun --prolog runs a program on the host; not allowed from inside a VM\$" "job output"
  assert_contains "$out" "^prolog-exit 1\$" "job output"
  assert_contains "$out" "^slurm-vm: host call refused: srun --task-prolog runs a program on the host; not allowed from inside a VM\$" "job output"
  assert_contains "$out" "^task-prolog-exit 1\$" "job output"
  assert_contains "$out" "^slurm-vm: host call refused: srun with SLURM_CONF changed inside the VM: it would read another Slurm configuration" "job output"
  assert_contains "$out" "^conf-exit 1\$" "job output"
  # Only the plain srun ran: one step, in the job's VM.
  assert_eq "$(printf '%s\n' "$out" | grep -c "^node[0-9]-vm$j\$")" "1" "hostname lines"
  assert_contains "$out" "^step-exit 0\$" "job output"
  [ ! -e "$TEST_DIR/task-prolog-ran" ] || fail "the refused --task-prolog ran on the host"
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  assert_nodes_up
  assert_no_leftovers
}

# ---- Issue 20 #1: a step the guest starts carries the environment the guest gave it ----------

# make_marks: mark.sh and mark.so in TEST_DIR, each leaving ran-on-<host name> there when it
# runs (mark.so: wherever a loader preloads it).
make_marks() {
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  as_user "printf '#!/bin/sh\ntouch $TEST_DIR/ran-on-\$(hostname)\n' >mark.sh && chmod 755 mark.sh"
  cc -shared -fPIC -o "$TEST_DIR/mark.so" -DMARK_DIR="\"$TEST_DIR\"" "$here/data/preload_mark.c" ||
    fail "cannot build the preload library" || return 1
  chmod 0755 "$TEST_DIR/mark.so"
}

# assert_nothing_ran_on_the_host JOB: no mark but a VM's (<node>-vm<job>).
assert_nothing_ran_on_the_host() {
  local marks
  marks=$(cd "$TEST_DIR" && ls -1 ran-on-* 2>/dev/null | grep -v -- "-vm$1\$" || true)
  [ -z "$marks" ] || fail "ran on the host: $marks ($(cd "$TEST_DIR" && head -n 5 $marks))"
}

test_a_guests_srun_export_cannot_run_a_program_on_the_host() {
  local j out
  make_marks || return 1
  # The job's PATH differs from the host side's (root's folders), to tell the two apart.
  j=$(as_user "PATH=$TEST_DIR/bin:\$PATH sbatch --parsable -w node1 --vm-image=tiny -o out-%j.txt --wrap '
srun --export=ALL,SLURM_VM_TASK_PROLOG=$TEST_DIR/mark.sh true; echo export-prolog-exit \$?
SLURM_EXPORT_ENV=ALL,SLURM_VM_TASK_PROLOG=$TEST_DIR/mark.sh srun true; echo env-prolog-exit \$?
srun --export=ALL,LD_PRELOAD=$TEST_DIR/mark.so true; echo preload-exit \$?
srun --export=ALL,FOO=from-export sh -c \"echo FOO=\\\$FOO\"; echo step-exit \$?
echo job-path=\$PATH; srun sh -c \"echo step-path=\\\$PATH\"'")
  wait_job_done "$j" 180
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "^slurm-vm: host call refused: srun --export sets SLURM_VM_TASK_PROLOG, which is the host's for a step started from inside a VM; not allowed from inside a VM\$" "job output"
  assert_contains "$out" "^export-prolog-exit 1\$" "job output"
  assert_contains "$out" "^slurm-vm: host call refused: srun with SLURM_EXPORT_ENV setting SLURM_VM_TASK_PROLOG, which is the host's" "job output"
  assert_contains "$out" "^env-prolog-exit 1\$" "job output"
  assert_contains "$out" "^slurm-vm: host call refused: srun --export sets LD_PRELOAD, which is the host's" "job output"
  assert_contains "$out" "^preload-exit 1\$" "job output"
  # --export of the guest's own variables still works.
  assert_contains "$out" "^FOO=from-export\$" "job output"
  assert_contains "$out" "^step-exit 0\$" "job output"
  # A step started from inside the VM has the job's PATH in its guest, not the host side's.
  local path
  path=$(printf '%s\n' "$out" | sed -n 's/^job-path=//p')
  assert_contains "$path" "^$TEST_DIR/bin:" "the job's PATH in its VM"
  assert_contains "$out" "^step-path=$path\$" "job output"
  assert_nothing_ran_on_the_host "$j"
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  assert_nodes_up
  assert_no_leftovers
}

# Whatever a VM step's environment holds for the loader goes to the guest's program, never to
# what runs on the host for it (the TaskProlog, the exec client): the same whether the step came
# from the host, as here, or from the guest past the refusals above.
test_a_vm_steps_loader_variables_reach_only_the_guest() {
  local out
  make_marks || return 1
  out=$(as_user "SVM_WANT_TASK_PROLOG=1 srun -w node1 -t 5 --vm-image=tiny --export=ALL,LD_PRELOAD=$TEST_DIR/mark.so sh -c 'echo \"guest LD_PRELOAD=\$LD_PRELOAD TP_VAR=\$TP_VAR\"'" 2>&1)
  assert_contains "$out" "^guest LD_PRELOAD=$TEST_DIR/mark.so TP_VAR=from-taskprolog-0\$" "the task's output"
  assert_nothing_ran_on_the_host "[0-9]*"
  assert_nodes_up
  assert_no_leftovers
}
