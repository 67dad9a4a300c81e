# What a stopped QEMU and a libvirtd restart cost: nothing but the stopped VM itself (issue 20).
# A user may SIGSTOP their own QEMU (it runs as them); libvirt's monitor calls have no timeout,
# so every call of ours has a deadline that kills that QEMU. libvirtd restarts (a package
# upgrade) close every client's connection; every call on the job path waits for it to come
# back (libvirt_reconnect, 30 s) before the node counts as faulty.

# libvirtd_stop: libvirtd gone (its VMs keep running: QEMU is not its child).
libvirtd_stop() {
  local i
  pkill -x libvirtd || true
  for ((i = 0; i < 50; i++)); do pgrep -x libvirtd >/dev/null || return 0; sleep 0.2; done
  fail "libvirtd did not stop"
}

libvirtd_start() {
  "$(dirname "${BASH_SOURCE[0]}")/../../contrib/cluster.sh" restart-libvirt >/dev/null
}

# wait_for_output FILE TEXT [SECONDS]
wait_for_output() {
  local i
  for ((i = 0; i < ${3:-240} * 2; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  fail "'$2' never appeared in $1: $(tail -c 400 "$1" 2>/dev/null)"
}

test_a_job_whose_qemu_its_user_stopped_ends_and_the_node_stays_up() {
  local j pid log=$SVM_LOG/slurmd-node2.log before
  before=$(stat -c %s "$log")
  j=$(as_user "sbatch --parsable -w node2 --vm-image=tiny -o out-%j.txt --wrap 'echo started; sleep 300'")
  wait_for_output "$TEST_DIR/out-$j.txt" started || return 1
  pid=$(qemu_pid "$j" node2)
  [ -n "$pid" ] || fail "no QEMU for job $j"
  # The user stops their own QEMU: every monitor call to it would now wait for ever.
  as_user "kill -STOP $pid"
  sleep 0.5
  grep -q '^State:.*stopped' "/proc/$pid/status" || fail "QEMU $pid is not stopped"
  scancel "$j"
  # KillWait, then the epilog: the agent does not answer (1 s), the power button is not
  # answered within the grace period (10 s here), QEMU is killed. Before: COMPLETING for ever.
  wait_job_done "$j" 120 || return 1
  assert_eq "$(job_state "$j")" "CANCELLED" "job state"
  assert_nodes_up
  assert_no_leftovers
  assert_contains "$(tail -c +"$before" "$log")" "job $j node node2 .*VM stopped: domain svm-$j-node2 destroyed" "node2's log"
  assert_contains "$(tail -c +"$before" "$log")" "was killed" "node2's log"
  ! kill -0 "$pid" 2>/dev/null || fail "QEMU $pid still runs"
}

test_a_job_submitted_while_libvirtd_restarts_runs_and_nothing_is_drained() {
  local j i out
  libvirtd_stop || return 1
  j=$(as_user "sbatch --parsable -w node1 --vm-image=tiny -o out-%j.txt --wrap 'hostname'")
  # The prolog meets a refused connection; libvirtd comes back 4 s later, as after an upgrade.
  for ((i = 0; i < 60; i++)); do
    [ "$(job_state "$j")" = RUNNING ] || [ "$(job_state "$j")" = CONFIGURING ] && break
    sleep 0.2
  done
  sleep 4
  libvirtd_start
  wait_job_done "$j" 120 || return 1
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "^node1-vm$j\$" "job output"
  assert_nodes_up
  assert_no_leftovers
}

test_libvirtd_restarting_while_a_vm_boots_costs_the_job_nothing() {
  local j i out
  j=$(as_user "sbatch --parsable -w node3 --vm-image=tiny -o out-%j.txt --wrap 'echo booted'")
  # As soon as its QEMU runs (the create returned or is about to; the agent is not up yet).
  for ((i = 0; i < 600; i++)); do
    [ -n "$(qemu_pid "$j" node3)" ] && break
    sleep 0.05
  done
  [ -n "$(qemu_pid "$j" node3)" ] || fail "job $j never got a QEMU"
  libvirtd_stop || return 1
  sleep 1
  libvirtd_start
  wait_job_done "$j" 180 || return 1
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "booted" "job output"
  assert_nodes_up
  assert_no_leftovers
  # One VM for the job, never two.
  [ "$(grep -c "job $j node node3 .*VM svm-$j-node3 ready" "$SVM_LOG/slurmd-node3.log")" = 1 ] ||
    fail "job $j's VM was reported ready more than once"
}

test_libvirtd_away_while_a_job_ends_still_stops_its_vm() {
  local j
  j=$(as_user "sbatch --parsable -w node2 --vm-image=tiny -o out-%j.txt --wrap 'echo started; sleep 300'")
  wait_for_output "$TEST_DIR/out-$j.txt" started || return 1
  libvirtd_stop || return 1
  scancel "$j"
  # The epilog waits for libvirtd (libvirt_reconnect) instead of leaving the VM to a sweep
  # that no other job on the node would run.
  sleep 5
  libvirtd_start
  wait_job_done "$j" 120 || return 1
  assert_nodes_up
  assert_no_leftovers
}
