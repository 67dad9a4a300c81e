# Faults a node meets: a KVM that is offered but broken, a guest that dies while it boots, a QEMU
# that dies under a running job. The job fails fast and says why; the node stays usable.

# The "KVM verdict" of this host, as the plugin keeps it: works, broken or none.
kvm_verdict() {
  python3 -c 'import json,sys; print("works" if json.load(open(sys.argv[1]))["works"] else "broken")' \
    /var/lib/slurm-vm/kvm-verdict.json 2>/dev/null || echo none
}

# Whether libvirt offers the kvm domain type here.
kvm_offered() {
  $VIRSH capabilities 2>/dev/null | grep -q "<domain type='kvm'"
}

test_guest_whose_kernel_panics_fails_the_job_fast() {
  local j out elapsed
  j=$(as_user "sbatch --parsable -w node2 --vm-image=panics -o out-%j.txt --wrap 'echo should-not-run'")
  wait_job_done "$j" 90
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "slurm-vm: image 'panics' on node2 (job $j): the VM stopped while it booted" "job output"
  assert_contains "$out" "console: .*Kernel panic" "job output (console tail)"
  assert_not_contains "$out" "should-not-run" "job output"
  assert_eq "$(job_state "$j")" "FAILED" "job state"
  # From the job's start (the prolog boots the VM) to its end: the panic is seen when it
  # happens (a few seconds of boot under TCG, more on a loaded host), not at the end of the
  # ready timeout the cluster gives a VM.
  local ready limit
  ready=$(sed -n 's/.*ready_timeout=\([0-9]*\).*/\1/p' /etc/slurm/plugstack.conf.d/slurm-vm.conf)
  limit=$((${ready:-90} / 3))
  elapsed=$(sacct -n -X -P -j "$j" -o ElapsedRaw | head -1)
  [ "${elapsed:-999}" -lt "$limit" ] ||
    fail "the job took ${elapsed}s to fail (want under ${limit} s, a third of ready_timeout=${ready:-90})"
  assert_nodes_up
  assert_no_leftovers
}

test_qemu_killed_in_the_middle_of_a_job_ends_it_clearly() {
  local j out i pid
  j=$(as_user "sbatch --parsable -w node3 --vm-image=tiny -o out-%j.txt --wrap 'echo started; sleep 120; echo not-reached'")
  for ((i = 0; i < 240; i++)); do
    grep -q started "$TEST_DIR/out-$j.txt" 2>/dev/null && break
    sleep 0.5
  done
  assert_contains "$(cat "$TEST_DIR/out-$j.txt" 2>/dev/null)" "started" "job output before the kill"
  pid=$(pgrep -f "guest=svm-$j-node3" | head -1)
  [ -n "$pid" ] || fail "no QEMU process for job $j"
  kill -9 "$pid"
  wait_job_done "$j" 60
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "slurm-vm: .*the VM stopped" "job output"
  assert_not_contains "$out" "not-reached" "job output"
  assert_eq "$(job_state "$j")" "FAILED" "job state"
  assert_nodes_up
  assert_no_leftovers
  # The node takes the next VM job as usual.
  out=$(as_user "srun -w node3 -t 5 --vm-image=tiny hostname" 2>&1)
  assert_contains "$out" "^node3-vm[0-9]*\$" "next job on node3"
  assert_no_leftovers
}

test_auto_runs_jobs_and_warns_once_per_node_where_kvm_does_not_work() {
  local log=$SVM_LOG/slurmd-node3.log before out j1 j2 warnings
  # A fresh marker for node3, so this run's warning is counted whatever ran before.
  rm -f /var/lib/slurm-vm/kvm-warned/node3
  before=$(stat -c %s "$log")
  j1=$(as_user "sbatch --parsable -w node3 --vm-image=tiny -o /dev/null --wrap true")
  wait_job_done "$j1" 120
  j2=$(as_user "sbatch --parsable -w node3 --vm-image=tiny -o /dev/null --wrap true")
  wait_job_done "$j2" 120
  assert_eq "$(job_state "$j1") $(job_state "$j2")" "COMPLETED COMPLETED" "job states"
  out=$(tail -c +"$((before + 1))" "$log")
  warnings=$(printf '%s\n' "$out" | grep -c "WARNING: node node3: domain_type=auto uses TCG" || true)
  if kvm_offered && [ "$(kvm_verdict)" != works ]; then
    # This machine: KVM offered, guests die under it. Both jobs ran under TCG; one warning.
    assert_contains "$out" "job $j1 node node3 image tiny: VM .* (qemu," "prolog line of job $j1"
    assert_eq "$warnings" "1" "warnings in slurmd-node3.log for two jobs"
    assert_contains "$out" "WARNING: node node3: .*KVM does not run guests on this host" "the warning's reason"
  elif ! kvm_offered; then
    assert_eq "$warnings" "0" "warnings where there is no KVM at all"
  fi
  assert_no_leftovers
}

test_slurm_vm_check_reports_each_need_and_its_exit_status_matches() {
  local out rc json want
  out=$(slurm-vm check 2>&1) && rc=0 || rc=$?
  assert_contains "$out" "^OK    libvirt " "check output"
  assert_contains "$out" "^OK    tcg probe .*ready under TCG in" "check output"
  assert_contains "$out" "^OK    9p " "check output"
  assert_contains "$out" "^OK    domain type .*domain_type=auto runs VMs under" "check output"
  if printf '%s\n' "$out" | grep -q '^FAIL'; then want=2
  elif printf '%s\n' "$out" | grep -q '^WARN'; then want=1
  else want=0; fi
  assert_eq "$rc" "$want" "exit status of slurm-vm check"
  if kvm_offered && [ "$(kvm_verdict)" = broken ]; then
    assert_contains "$out" "^WARN  kvm probe .*KVM is offered but broken: guests do not boot under it" "the KVM line"
    assert_contains "$out" "runs VMs under TCG (qemu): KVM does not run guests on this host" "the domain type line"
  fi
  json=$(slurm-vm check --json --no-boot) && rc=0 || rc=$?
  printf '%s' "$json" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["checks"] and d["status"] in ("OK","WARN","FAIL")' ||
    fail "slurm-vm check --json is not the expected JSON: $json"
  out=$(slurm-vm check --bogus 2>&1) && rc=0 || rc=$?
  assert_eq "$rc" "2" "exit status for an unknown option"
  assert_contains "$out" "unknown option '--bogus'" "error for an unknown option"
  assert_no_leftovers
}

test_libvirtd_down_drains_the_node_with_the_reason() {
  local j here reason i
  here=$(dirname "${BASH_SOURCE[0]}")
  pkill -x libvirtd
  for ((i = 0; i < 50; i++)); do pgrep -x libvirtd >/dev/null || break; sleep 0.2; done
  j=$(as_user "sbatch --parsable -w node3 --vm-image=tiny -o out-%j.txt --wrap 'echo ran'")
  for ((i = 0; i < 120; i++)); do
    reason=$(scontrol show node node3 | sed -n 's/.*Reason=\(.*\)/\1/p')
    [ -n "$reason" ] && break
    sleep 0.5
  done
  "$here/../../contrib/cluster.sh" restart-libvirt >/dev/null
  scontrol show node node3 | grep -q 'State=[A-Z+]*DRAIN' || fail "node3 is not drained: $(scontrol show node node3 | grep State=)"
  scancel "$j"
  scontrol update NodeName=node3 State=RESUME
  assert_contains "$reason" "slurm-vm: cannot connect to libvirt at qemu:///system" "node3's drain reason"
  wait_job_done "$j" 60
  assert_not_contains "$(cat "$TEST_DIR/out-$j.txt" 2>/dev/null)" "ran" "job output"
  for ((i = 0; i < 60; i++)); do
    [ "$(sinfo -h -n node3 -o %T)" = idle ] && break
    sleep 0.5
  done
  assert_nodes_up
  assert_no_leftovers
}
