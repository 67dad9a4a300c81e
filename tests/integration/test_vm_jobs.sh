# Jobs with --vm-image: they run inside a VM booted for them and otherwise behave like any job.

test_batch_job_runs_inside_the_vm() {
  local j out host_kernel
  j=$(as_user "sbatch --parsable -w node1 --vm-image=tiny -o out-%j.txt -e err-%j.txt --wrap 'hostname; cat /proc/version; echo job=\$SLURM_JOB_ID user=\$USER home=\$HOME; pwd; id -u; echo to-stderr >&2; exit 3'")
  wait_job_done "$j" 120
  out=$(cat "$TEST_DIR/out-$j.txt")
  host_kernel=$(uname -r)
  assert_contains "$out" "^node1-vm$j\$" "hostname in the VM"
  # Debian's kernel of the release the cluster runs on (6.1 on Debian 12, 6.12 on Debian 13)
  assert_contains "$out" "^Linux version [0-9.]*[-+].*(debian-kernel@lists.debian.org)" "guest /proc/version"
  assert_not_contains "$out" "$host_kernel" "guest /proc/version"
  assert_contains "$out" "job=$j user=$SVM_TEST_USER home=/home/$SVM_TEST_USER" "environment"
  assert_contains "$out" "^$TEST_DIR\$" "working directory"
  assert_contains "$out" "^$(id -u "$SVM_TEST_USER")\$" "uid in the guest"
  assert_eq "$(cat "$TEST_DIR/err-$j.txt")" "to-stderr" "stderr file"
  wait_sacct_field "$j" ExitCode "3:0"
  assert_no_leftovers
}

test_file_written_in_the_vm_is_on_the_host_owned_by_the_user() {
  local j
  j=$(as_user "sbatch --parsable --vm-image=tiny -o /dev/null --wrap 'echo from-vm > made-in-vm.txt; mkdir sub; echo x > sub/f'")
  wait_job_done "$j" 120
  assert_eq "$(cat "$TEST_DIR/made-in-vm.txt")" "from-vm" "file content"
  assert_eq "$(stat -c %U:%G "$TEST_DIR/made-in-vm.txt")" "$SVM_TEST_USER:$(id -gn "$SVM_TEST_USER")" "file owner"
  assert_eq "$(stat -c %U "$TEST_DIR/sub/f")" "$SVM_TEST_USER" "owner in a new folder"
}

test_srun_runs_two_tasks_at_once_in_one_vm() {
  local out
  # Each task waits for the other's file: both print only if they ran at the same time.
  out=$(as_user "srun -n2 -N1 -t 5 --vm-image=tiny sh -c 'touch t\$SLURM_PROCID; i=0
    while [ ! -e t\$((1 - SLURM_PROCID)) ] && [ \$i -lt 150 ]; do sleep 0.2; i=\$((i+1)); done
    [ -e t\$((1 - SLURM_PROCID)) ] && echo together \$SLURM_PROCID \$(hostname)'" 2>&1)
  assert_contains "$out" "together 0 node1-vm" "task 0"
  assert_contains "$out" "together 1 node1-vm" "task 1"
  assert_eq "$(printf '%s\n' "$out" | grep together | awk '{print $3}' | sort -u | wc -l)" "1" "one VM"
  assert_no_leftovers
}

test_two_nodes_get_one_vm_each() {
  local out
  out=$(as_user "srun -N2 -t 5 --vm-image=tiny hostname" 2>&1 | sort | tr '\n' ' ')
  assert_contains "$out" "^node1-vm[0-9]* node2-vm[0-9]* \$" "hostnames"
  assert_no_leftovers
}

test_salloc_with_vm_image_runs_steps_in_the_vm() {
  local out
  out=$(as_user "salloc -N1 -t 5 --vm-image=tiny srun hostname" 2>&1)
  assert_contains "$out" "node[0-9]-vm[0-9]" "salloc + srun output"
}

test_srun_step_inside_a_batch_job_runs_in_the_same_vm() {
  local j out
  j=$(as_user "sbatch --parsable -n2 --vm-image=tiny -o out-%j.txt --wrap 'echo batch \$(hostname); srun -n2 hostname; echo step-exit \$?'")
  wait_job_done "$j" 120
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "batch node1-vm$j" "batch script"
  assert_eq "$(printf '%s\n' "$out" | grep -c "^node1-vm$j\$")" "2" "step tasks in the same VM"
  assert_contains "$out" "step-exit 0" "step exit code"
}

test_ten_megabytes_of_output_arrive_intact_and_separate() {
  local j
  j=$(as_user "sbatch --parsable --vm-image=tiny -o big-out.txt -e big-err.txt --wrap 'seq 1 1300000; seq 1 50000 >&2'")
  wait_job_done "$j" 180
  assert_eq "$(md5sum <"$TEST_DIR/big-out.txt")" "$(seq 1 1300000 | md5sum)" "stdout checksum"
  assert_eq "$(md5sum <"$TEST_DIR/big-err.txt")" "$(seq 1 50000 | md5sum)" "stderr checksum"
  [ "$(stat -c %s "$TEST_DIR/big-out.txt")" -gt 9000000 ] || fail "stdout is smaller than 9 MB"
}

test_scancel_sends_sigterm_then_shuts_down_and_cleans_up() {
  local j i
  j=$(as_user "sbatch --parsable --vm-image=tiny -o out-%j.txt --wrap 'trap \"echo got-sigterm > term.txt; exit 0\" TERM; echo started; while :; do sleep 1; done'")
  for ((i = 0; i < 240; i++)); do grep -q started "$TEST_DIR/out-$j.txt" 2>/dev/null && break; sleep 0.5; done
  assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "started" "job output"
  scancel "$j"
  wait_job_done "$j" 60
  assert_eq "$(job_state "$j")" "CANCELLED" "job state"
  assert_eq "$(cat "$TEST_DIR/term.txt" 2>/dev/null)" "got-sigterm" "SIGTERM inside the guest"
  assert_contains "$(wait_for_vm_stopped "$j")" "image tiny: VM stopped: .*(shutdown [0-9.]* s, destroy [0-9.]* s)" "stop phases in slurmd's log"
  assert_no_leftovers
  assert_nodes_up
}

test_time_limit_stops_the_job_and_the_vm() {
  local j
  j=$(as_user "sbatch --parsable -t 1 --vm-image=tiny -o out-%j.txt --wrap 'trap \"echo got-sigterm > term.txt; exit 0\" TERM; while :; do sleep 1; done'")
  wait_job_done "$j" 200
  assert_eq "$(job_state "$j")" "TIMEOUT" "job state"
  assert_eq "$(cat "$TEST_DIR/term.txt" 2>/dev/null)" "got-sigterm" "SIGTERM inside the guest"
  wait_for_vm_stopped "$j"
  assert_no_leftovers
}

test_bad_image_names_fail_at_submit_and_queue_nothing() {
  local name="bad-$RANDOM" out cmd
  local tail
  for cmd in sbatch srun salloc; do
    tail=true
    [ "$cmd" = sbatch ] && tail=--wrap=true
    out=$(as_user "$cmd --job-name=$name --vm-image=a/b $tail" 2>&1) && fail "$cmd --vm-image=a/b succeeded"
    assert_contains "$out" "slurm-vm: --vm-image=a/b: image name is invalid: contains '/'" "$cmd"
    out=$(as_user "$cmd --job-name=$name --vm-image=nosuch $tail" 2>&1) && fail "$cmd --vm-image=nosuch succeeded"
    assert_contains "$out" "slurm-vm: image 'nosuch' is not in the catalog; images you may use: " "$cmd"
  done
  out=$(as_user "SLURM_VM_IMAGE=../x sbatch --job-name=$name --wrap true" 2>&1) && fail "env twin accepted ../x"
  assert_contains "$out" "SLURM_VM_IMAGE=../x: image name is invalid" "environment twin"
  assert_eq "$(squeue -h -n "$name" | wc -l)" "0" "jobs queued"
  assert_eq "$(sacct -n -X -S now-10minutes --name "$name" | wc -l)" "0" "jobs in accounting"
}

test_environment_twin_runs_the_job_in_a_vm() {
  local j
  j=$(as_user "SLURM_VM_IMAGE=tiny sbatch --parsable -o out-%j.txt --wrap hostname")
  wait_job_done "$j" 120
  assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "^node1-vm$j\$" "hostname"
}

test_guest_that_never_becomes_ready_fails_the_job_not_the_node() {
  local j out
  j=$(as_user "sbatch --parsable --vm-image=neverready -o out-%j.txt --wrap 'echo should-not-run'")
  wait_job_done "$j" 120
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "slurm-vm: image 'neverready' on node1 (job $j): the VM did not become ready within 8 s" "job output"
  assert_not_contains "$out" "should-not-run" "job output"
  assert_eq "$(job_state "$j")" "FAILED" "job state"
  assert_nodes_up
  assert_no_leftovers
}

test_vm_left_by_a_job_that_is_over_is_removed_by_the_next_prolog() {
  local j xml=/tmp/svm-orphan-$$.xml
  # A VM and folders as a crashed node would leave them, for a job id no job has.
  sed -e 's/@NAME@/svm-999999-node1/' "$(dirname "${BASH_SOURCE[0]}")/data/orphan-domain.xml" >"$xml"
  $VIRSH create "$xml" >/dev/null
  mkdir -p /run/slurm-vm/svm-999999-node1 /var/lib/slurm-vm/jobs/svm-999999-node1
  rm -f "$xml"
  j=$(as_user "sbatch --parsable -w node1 --vm-image=tiny -o /dev/null --wrap true")
  wait_job_done "$j" 120
  assert_contains "$(grep "job $j node node1: destroyed" "$SVM_LOG/slurmd-node1.log")" "svm-999999-node1, left by a job that is over" "slurmd log"
  assert_no_leftovers
}

test_another_user_cannot_reach_a_job_vm() {
  local j dir out i
  j=$(as_user "sbatch --parsable --vm-image=tiny -o /dev/null --wrap 'sleep 60'")
  wait_job_state "$j" RUNNING 60
  dir=/run/slurm-vm/svm-$j-node1
  for ((i = 0; i < 120; i++)); do [ -S "$dir/exec.0.sock" ] && break; sleep 0.5; done
  out=$(as_other "/usr/local/lib/slurm-vm/slurm-vm-exec --channel-dir $dir --ports 8 -- id" 2>&1) &&
    fail "$SVM_OTHER_USER ran a command in $SVM_TEST_USER's VM: $out"
  assert_contains "$out" "Permission denied" "$SVM_OTHER_USER's attempt"
  scancel "$j"
  wait_job_done "$j" 60
  assert_no_leftovers
}

test_scancel_while_the_vm_boots_leaves_nothing() {
  local j i
  j=$(as_user "sbatch --parsable --vm-image=tiny -o out-%j.txt --wrap 'echo ran'")
  # Cancel while the prolog is still booting the VM (the job is CONFIGURING until it is ready).
  for ((i = 0; i < 100; i++)); do
    [ -d "/run/slurm-vm/svm-$j-node1" ] && break
    sleep 0.1
  done
  scancel "$j"
  wait_job_done "$j" 120
  assert_eq "$(job_state "$j")" "CANCELLED" "job state"
  assert_not_contains "$(cat "$TEST_DIR/out-$j.txt" 2>/dev/null)" "ran" "job output"
  assert_no_leftovers
  assert_nodes_up
}

test_job_survives_a_libvirtd_restart() {
  local j i
  j=$(as_user "sbatch --parsable --vm-image=tiny -o out-%j.txt --wrap 'echo started; sleep 15; echo survived \$(hostname)'")
  for ((i = 0; i < 240; i++)); do grep -q started "$TEST_DIR/out-$j.txt" 2>/dev/null && break; sleep 0.5; done
  "$(dirname "${BASH_SOURCE[0]}")/../../contrib/cluster.sh" restart-libvirt
  wait_job_done "$j" 120
  assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "survived node1-vm$j" "job output"
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  assert_contains "$(wait_for_vm_stopped "$j")" "powered off" "the epilog's stop after the restart"
  assert_no_leftovers
}

# Issue 12, fast graceful stop: the epilog of a finished job asks the agent to power off (POWEROFF
# on exec port 0), which syncs and powers the guest off in milliseconds instead of ACPI (~2.3 s).
test_epilog_of_a_finished_job_stops_the_vm_through_the_agent_in_well_under_a_second() {
  local j line ms console
  j=$(as_user "sbatch --parsable --vm-image=tiny -o out-%j.txt --wrap 'echo done-in-vm > stop-file.txt; echo ran'")
  wait_job_done "$j" 120
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  line=$(wait_for_vm_stopped "$j")
  assert_contains "$line" "image tiny: VM stopped: domain svm-$j-node[0-9]* powered off after [0-9]* ms (agent) (shutdown [0-9.]* s, destroy 0.00 s)" "the agent's power-off in slurmd's log"
  ms=$(sed -n 's/.* powered off after \([0-9]*\) ms (agent).*/\1/p' <<<"$line")
  [ -n "$ms" ] && [ "$ms" -lt 500 ] || fail "the agent's power-off took '${ms}' ms, expected under 500 ms: $line"
  # What the job wrote is on the host (the agent synced before powering off).
  assert_eq "$(cat "$TEST_DIR/stop-file.txt" 2>/dev/null)" "done-in-vm" "the job's file"
  console=$(cat "$SVM_LOG"/guests/svm-"$j"-node*.console.log 2>/dev/null)
  assert_contains "$console" "slurm-vm-agent: session [0-9a-f]*: the host asks for a power-off; syncing" "the guest console"
  assert_no_leftovers
  assert_nodes_up
}

# Issue 11 (first part): a VM's vCPUs run on the CPUs Slurm gave the job on the node, as
# task/affinity binds a native task; another job on the node gets the other CPU.
test_a_one_cpu_vm_job_runs_its_vcpu_on_the_cpu_slurm_gave_it() {
  local j k i ids other pid tid allowed line
  j=$(as_user "sbatch --parsable -w node1 -n1 -c1 --vm-image=tiny -o out-%j.txt --wrap 'echo up; sleep 60'")
  for ((i = 0; i < 240; i++)); do grep -q up "$TEST_DIR/out-$j.txt" 2>/dev/null && break; sleep 0.5; done
  assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "^up\$" "job output"
  ids=$(scontrol show job -d "$j" | sed -n 's/.*Nodes=node1 CPU_IDs=\([0-9,-]*\).*/\1/p')
  [ -n "$ids" ] || fail "no CPU_IDs for job $j" || return 1
  line=$(grep -h "slurm-vm: job $j node node1 image tiny: VM .* ready as" "$SVM_LOG"/slurmd-node1.log)
  assert_contains "$line" "vCPUs on CPUs $ids\$" "the pinning in slurmd's log"
  pid=$(cat "/run/libvirt/qemu/svm-$j-node1.pid")
  tid=$(grep -l '^CPU 0/' /proc/"$pid"/task/*/comm | head -1 | cut -d/ -f5)
  [ -n "$tid" ] || fail "no vCPU thread in QEMU $pid" || return 1
  allowed=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "/proc/$pid/task/$tid/status")
  assert_eq "$allowed" "$ids" "the vCPU thread's CPUs"
  # A bare one-CPU job beside it gets the node's other CPU.
  k=$(as_user "sbatch --parsable -w node1 -n1 -c1 -o /dev/null --wrap 'sleep 30'")
  for ((i = 0; i < 40; i++)); do [ "$(job_state "$k")" = RUNNING ] && break; sleep 0.5; done
  other=$(scontrol show job -d "$k" | sed -n 's/.*Nodes=node1 CPU_IDs=\([0-9,-]*\).*/\1/p')
  [ -n "$other" ] && [ "$other" != "$ids" ] || fail "the second job's CPUs: '$other' (the VM's: $ids)" || return 1
  scancel "$j" "$k"
  wait_job_done "$j" 120
  wait_job_done "$k" 60
  assert_no_leftovers
  assert_nodes_up
}
