# A task in a VM sees what a native task sees: each test runs the same command bare and in a
# VM and asserts the same output (the bare run proves the assertion, the VM run proves parity).

# both CMD: prints "bare:<output>" and "vm:<output>" lines for CMD run with srun, one bare and
# one with --vm-image=tiny, on node1.
both() {
  as_user "srun -w node1 -t 5 sh -c '$1'" 2>&1 | sed 's/^/bare:/'
  as_user "srun -w node1 -t 5 --vm-image=tiny sh -c '$1'" 2>&1 | sed 's/^/vm:/'
}

test_the_jobs_user_has_a_name_and_its_groups_in_the_vm() {
  local out want groups
  out=$(both 'echo "$(id -un) $(whoami) $(id -u):$(id -g) $HOME"')
  want="$SVM_TEST_USER $SVM_TEST_USER $(id -u "$SVM_TEST_USER"):$(id -g "$SVM_TEST_USER") /home/$SVM_TEST_USER"
  assert_contains "$out" "^bare:$want\$" "bare task"
  assert_contains "$out" "^vm:$want\$" "task in the VM"
  groups=$(id -Gn "$SVM_TEST_USER" | tr ' ' '\n' | sort | tr '\n' ' ')
  out=$(both 'id -Gn | tr " " "\n" | sort | tr "\n" " "; echo')
  assert_contains "$out" "^bare:$groups\$" "bare groups"
  assert_contains "$out" "^vm:$groups\$" "groups in the VM"
  assert_no_leftovers
}

test_a_program_missing_from_the_image_is_named_in_the_users_words() {
  local out rc
  out=$(as_user "srun -w node1 -t 5 --vm-image=tiny printenv HOME" 2>&1) && rc=0 || rc=$?
  assert_contains "$out" "slurm-vm: 'printenv' is not in image 'tiny'" "error for a missing program"
  assert_eq "$rc" "127" "exit status, as a shell's for a missing command"
  assert_nodes_up
  assert_no_leftovers
}

# both_srun PRE ARGS: like both, for a command line that needs its own srun options or a shell
# set-up before srun (PRE: "ulimit ...;", "umask 023;", variables). ARGS follow srun's own.
both_srun() {
  as_user "$1 srun -w node1 -t 5 $2" 2>&1 | sed 's/^/bare:/'
  as_user "$1 srun -w node1 -t 5 --vm-image=tiny $2" 2>&1 | sed 's/^/vm:/'
}

# assert_parity OUT WANT WHAT: both runs printed the line WANT.
assert_parity() {
  assert_contains "$1" "^bare:$2\$" "bare: $3" && assert_contains "$1" "^vm:$2\$" "in the VM: $3"
}

test_multi_prog_gives_each_task_its_line_with_ranges_and_t_o() {
  local out
  printf '%s\n' '# tasks of a multi-prog step' '0-1,3 echo first t=%t o=%o' \
    '2 echo '"'"'second line'"'"' %t' '* echo rest t=%t o=%o' >"$TEST_DIR/mp.conf"
  chmod 0644 "$TEST_DIR/mp.conf"
  out=$(both_srun "" "-O -n5 -l --multi-prog mp.conf")
  assert_parity "$out" "0: first t=0 o=0" "task 0"
  assert_parity "$out" "1: first t=1 o=1" "task 1"
  assert_parity "$out" "2: second line 2" "task 2, quoted words"
  assert_parity "$out" "3: first t=3 o=2" "task 3, offset across ranges"
  assert_parity "$out" "4: rest t=4 o=4" "task 4, '*'"
  assert_not_contains "$out" "not found" "the configuration file is not run as a script"
  assert_no_leftovers
}

# One line of /proc/self/limits, soft and hard, for each limit a user lowers before srun.
test_the_limits_set_before_srun_reach_the_task() {
  local out pre
  pre="ulimit -S -n 512; ulimit -S -c 2048; ulimit -S -u 300; ulimit -S -s 4096;"
  out=$(both_srun "$pre" "sh -c 'grep -E \"^Max (open files|core file size|processes|stack size)\" /proc/self/limits | tr -s \" \"'")
  assert_contains "$out" "^bare:Max open files 512 " "bare nofile"
  assert_contains "$out" "^bare:Max core file size 2097152 " "bare core"
  assert_contains "$out" "^bare:Max processes 300 " "bare nproc"
  assert_contains "$out" "^bare:Max stack size 4194304 " "bare stack"
  local line
  while IFS= read -r line; do
    assert_contains "$out" "^vm:${line#bare:}\$" "the same limit (soft and hard) in the VM" || return 1
  done < <(printf '%s\n' "$out" | grep '^bare:Max')
  assert_no_leftovers
}

test_the_umask_set_before_srun_reaches_the_task() {
  local out
  out=$(both_srun "umask 023;" "sh -c umask")
  assert_parity "$out" "0023" "umask"
  assert_no_leftovers
}

test_taskprolog_from_slurm_conf_exports_and_prints() {
  local out
  out=$(both_srun "SVM_WANT_TASK_PROLOG=1" "sh -c 'echo \"TP_VAR=\$TP_VAR\"'")
  assert_parity "$out" "TP_VAR=from-taskprolog-0" "TaskProlog's export"
  assert_parity "$out" "taskprolog-says-hello" "TaskProlog's print"
  # Without the variable the prolog is silent: other jobs see nothing of it.
  out=$(both 'echo "TP_VAR=[$TP_VAR]"')
  assert_parity "$out" "TP_VAR=\[\]" "no TP_VAR unless asked"
  assert_no_leftovers
}

test_task_prolog_exports_and_task_epilog_runs() {
  local out run
  printf '%s\n' '#!/bin/sh' 'echo "export USER_TP=yes-$SLURM_PROCID"' 'echo "unset DROPME"' \
    'echo "print user-prolog-says-hi"' >"$TEST_DIR/tp.sh"
  printf '%s\n' '#!/bin/sh' 'echo "$SLURM_JOB_ID" >"$EPI_DIR/epilog-ran-$EPI_MARK"' >"$TEST_DIR/te.sh"
  chmod 0755 "$TEST_DIR/tp.sh" "$TEST_DIR/te.sh"
  out=$(both_srun "DROPME=1" "--task-prolog=$TEST_DIR/tp.sh sh -c 'echo \"USER_TP=\$USER_TP DROPME=[\$DROPME]\"'")
  assert_parity "$out" "USER_TP=yes-0 DROPME=\[\]" "--task-prolog's export and unset"
  assert_parity "$out" "user-prolog-says-hi" "--task-prolog's print"
  # Not a full path: slurmstepd refuses it, and the task ends with status 1, in a VM too.
  out=$(both_srun "" "--task-prolog=./tp.sh true; echo rc=\$?")
  # ("is not fully qualified pathname" on 22.05, "is not a fully qualified pathname" on 24.11)
  assert_contains "$out" "^bare:.*user task_prolog is not .*fully qualified pathname (./tp.sh)" "bare: a relative --task-prolog"
  assert_contains "$out" "^vm:.*user task_prolog is not .*fully qualified pathname (./tp.sh)" "in the VM: a relative --task-prolog"
  assert_parity "$out" "rc=1" "the status with a relative --task-prolog"
  for run in bare vm; do
    local image=""
    [ "$run" = vm ] && image="--vm-image=tiny"
    as_user "EPI_DIR='$TEST_DIR' EPI_MARK=$run srun -w node1 -t 5 $image --task-epilog='$TEST_DIR/te.sh' true" ||
      fail "$run: srun with --task-epilog failed" || return 1
    [ -s "$TEST_DIR/epilog-ran-$run" ] || fail "$run: --task-epilog left no file" || return 1
  done
  assert_no_leftovers
}

test_tmpdir_is_set_after_the_prolog_and_made_when_missing() {
  local out
  out=$(both_srun "unset TMPDIR;" "-n1 sh -c 'echo \"TMPDIR=\$TMPDIR\"'")
  assert_parity "$out" "TMPDIR=/tmp" "TMPDIR when unset"
  for run in bare vm; do
    local image="" dir="$TEST_DIR/tmp-$run"
    [ "$run" = vm ] && image="--vm-image=tiny"
    out=$(as_user "TMPDIR='$dir' srun -w node1 -t 5 -n1 $image sh -c 'echo \"\$TMPDIR\"; test -d \"\$TMPDIR\" && echo made'" 2>&1)
    assert_contains "$out" "^$dir\$" "$run: TMPDIR kept" || return 1
    assert_contains "$out" "^made\$" "$run: a missing TMPDIR is made" || return 1
  done
  assert_no_leftovers
}

test_a_relative_program_is_found_with_the_jobs_path() {
  local out
  mkdir -p "$TEST_DIR/bin"
  printf '%s\n' '#!/bin/sh' 'echo "found as $0"' >"$TEST_DIR/bin/svm-hello"
  printf '%s\n' '#!/bin/sh' 'echo "local as $0"' >"$TEST_DIR/svm-local"
  chmod 0755 "$TEST_DIR/bin/svm-hello" "$TEST_DIR/svm-local"
  chown -R "$SVM_TEST_USER" "$TEST_DIR/bin" "$TEST_DIR/svm-local"
  out=$(both_srun "PATH=$TEST_DIR/bin:\$PATH" "svm-hello")
  assert_parity "$out" "found as $TEST_DIR/bin/svm-hello" "a name found in the job's PATH"
  out=$(both_srun "" "./svm-local")
  assert_parity "$out" "local as $TEST_DIR/./svm-local" "a ./name"
  out=$(both_srun "" "svm-local")
  assert_parity "$out" "local as svm-local" "a name not in PATH, from the working directory"
  assert_no_leftovers
}

test_export_none_and_export_all_with_a_variable() {
  local out
  # No PATH with --export=NONE, natively too: the program by its path.
  out=$(both_srun "FOO=1" "--export=NONE /bin/sh -c 'echo \"FOO=[\$FOO]\"'")
  assert_parity "$out" "FOO=\[\]" "--export=NONE"
  out=$(both_srun "FOO=1" "--export=ALL,BAR=x sh -c 'echo \"FOO=\$FOO BAR=\$BAR\"'")
  assert_parity "$out" "FOO=1 BAR=x" "--export=ALL,BAR=x"
  # The same variables, less Slurm's own (their values differ from step to step).
  # env itself, not a shell (dash and busybox's ash export different variables of their own).
  out=$(both_srun "" "--export=NONE /bin/env")
  local bare vm
  bare=$(printf '%s\n' "$out" | sed -n 's/^bare:\([A-Za-z_0-9]*\)=.*/\1/p' | grep -v '^SLURM_' | sort | tr '\n' ' ')
  vm=$(printf '%s\n' "$out" | sed -n 's/^vm:\([A-Za-z_0-9]*\)=.*/\1/p' | grep -v '^SLURM_' | sort | tr '\n' ' ')
  # (24.11's slurmstepd adds SLURMD_DEBUG)
  assert_eq "${bare/SLURMD_DEBUG /}" "SLURMD_NODENAME TMPDIR " "bare: the variables with --export=NONE"
  assert_eq "$vm" "$bare" "the names of the variables with --export=NONE"
  assert_no_leftovers
}

# sbatch --get-user-env works only for root and SlurmUser; run as root for the test user.
test_get_user_env_gives_the_users_login_environment() {
  local out run image
  for run in bare vm; do
    image=""
    [ "$run" = vm ] && image="--vm-image=tiny"
    out=$(cd "$TEST_DIR" && env -i PATH=/usr/bin:/bin sbatch --uid="$SVM_TEST_USER" \
      --get-user-env -w node1 -t 5 $image --wait -o "$TEST_DIR/gue-$run.out" \
      --wrap 'echo "HOME=$HOME USER=$USER"' 2>&1) || fail "$run: sbatch --get-user-env: $out" || return 1
    assert_contains "$(cat "$TEST_DIR/gue-$run.out")" "^HOME=/home/$SVM_TEST_USER USER=$SVM_TEST_USER\$" "$run: the user's login environment" || return 1
  done
  assert_no_leftovers
}

test_srun_pty_gives_a_terminal_with_line_editing_interrupts_resizes_and_exit_status() {
  local out run image here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  # srun needs a terminal of its own for --pty: an interactive bash (a distribution image: busybox has none), driven through a terminal.
  for run in bare vm; do
    image=""
    [ "$run" = vm ] && image="--mem=1024 --vm-image=debian11-direct"
    out=$(as_user "python3 '$here/data/pty_session.py' -w node1 -t 10 $image --pty bash --norc --noprofile" 2>&1) ||
      fail "$run: srun --pty bash: $out" || return 1
    for check in shell tty size resize interrupt "status after ^C" "exit status"; do
      assert_contains "$out" "^ok $check\$" "$run: $check" || return 1
    done
  done
  assert_no_leftovers
}

# A job script may name Slurm's commands by the paths the host has them at (Slurm's own
# testsuite calls /usr/bin/srun): Debian 11's shims are in /usr/local/bin, so the guest gets
# links at the host's paths from the SETUP request.
test_a_job_script_runs_slurm_commands_by_their_host_paths_in_any_image() {
  local srun squeue j out
  srun=$(command -v srun)
  squeue=$(command -v squeue)
  printf '#!/bin/bash\n%s -n1 hostname\n%s -h -j $SLURM_JOB_ID -o queued:%%i\n' "$srun" "$squeue" \
    >"$TEST_DIR/paths.sh"
  chmod 0755 "$TEST_DIR/paths.sh"
  j=$(as_user "sbatch --parsable -w node1 -t 10 --vm-image=debian11 -o paths.out paths.sh")
  wait_job_done "$j" 300
  out=$(cat "$TEST_DIR/paths.out")
  assert_eq "$(job_state "$j")" COMPLETED "the job that ran $srun and $squeue (output: $out)"
  assert_contains "$out" "^node1-vm$j\$" "$srun's step in the VM"
  assert_contains "$out" "^queued:$j\$" "$squeue from the VM"
  assert_no_leftovers
}
