# KVM's verdict on a host comes from the node's own probe (a guest root boots as libvirt-qemu),
# never from a job's VM, and it lapses (issue 20, finding 4): a user who kills their own QEMU
# cannot move the host to TCG, and a verdict does not stay for good.

SVM_VERDICT=/var/lib/slurm-vm/kvm-verdict.json

kvm_offered() {
  $VIRSH capabilities 2>/dev/null | grep -q "<domain type='kvm'"
}

# verdict_field NAME: a field of the host's verdict file, or "" without one.
verdict_field() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' \
    "$SVM_VERDICT" "$1" 2>/dev/null || true
}

test_a_user_who_kills_their_qemu_cannot_decide_the_kvm_verdict() {
  local j killer out log before now
  rm -f "$SVM_VERDICT"
  : >"$TEST_DIR/kills"
  chown "$SVM_TEST_USER" "$TEST_DIR/kills"
  # The attack: while the host has no verdict, the job's user kills every QEMU of theirs that
  # runs under KVM (the trial), so that only the TCG boot works.
  as_user "for i in \$(seq 1 3600); do
      [ -e done ] && break
      for p in \$(pgrep -u $SVM_TEST_USER qemu-system); do
        if [ ! -e $SVM_VERDICT ] && tr '\\0' ' ' </proc/\$p/cmdline 2>/dev/null | grep -Eq 'accel[= ]kvm|-enable-kvm'; then
          kill -9 \$p && echo \$p >>kills
        fi
      done
      sleep 0.05
    done" &
  killer=$!
  log=$SVM_LOG/slurmd-node3.log
  before=$(stat -c %s "$log")
  j=$(as_user "sbatch --parsable -w node3 --vm-image=tiny -o out-%j.txt --wrap 'echo ran'")
  wait_job_done "$j" 180
  echo done >"$TEST_DIR/done"
  kill "$killer" 2>/dev/null || true
  wait "$killer" 2>/dev/null || true  # 143: it was killed
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "^ran\$" "job output"
  assert_eq "$(cat "$TEST_DIR/kills")" "" "pids of the user's own QEMU that ran under KVM before the host had a verdict (the user could kill them)"
  if kvm_offered; then
    [ -f "$SVM_VERDICT" ] || fail "no KVM verdict after the first VM job on a host that offers KVM"
    assert_eq "$(verdict_field node)" "node3" "the node that probed"
    now=$(date +%s)
    [ "$(verdict_field expires_at)" -gt "$now" ] 2>/dev/null || fail "the verdict has no expiry in the future: $(cat "$SVM_VERDICT")"
    assert_contains "$(tail -c +"$((before + 1))" "$log")" "node node3: KVM probe of this host: " "slurmd-node3.log"
  else
    [ ! -f "$SVM_VERDICT" ] || fail "a KVM verdict on a host that offers no KVM: $(cat "$SVM_VERDICT")"
  fi
  assert_nodes_up
  assert_no_leftovers
}

test_a_kvm_verdict_lapses_and_the_node_probes_again() {
  local j log before decided
  kvm_offered || { echo "    (libvirt offers no KVM here: there is no verdict to lapse)"; return 0; }
  # A verdict whose time is up, as one made kvm_verdict_ttl ago would be.
  if [ ! -f "$SVM_VERDICT" ]; then
    j=$(as_user "sbatch --parsable -w node2 --vm-image=tiny -o /dev/null --wrap true")
    wait_job_done "$j" 180
  fi
  [ -f "$SVM_VERDICT" ] || fail "no KVM verdict to begin with"
  python3 - "$SVM_VERDICT" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
v["decided_at"] = 1000
v["expires_at"] = 2000
json.dump(v, open(sys.argv[1], "w"))
PY
  log=$SVM_LOG/slurmd-node2.log
  before=$(stat -c %s "$log")
  j=$(as_user "sbatch --parsable -w node2 --vm-image=tiny -o out-%j.txt --wrap 'echo ran'")
  wait_job_done "$j" 180
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  assert_contains "$(tail -c +"$((before + 1))" "$log")" "node node2: KVM probe of this host: " "slurmd-node2.log"
  decided=$(verdict_field decided_at)
  [ "${decided:-0}" -gt 2000 ] || fail "the lapsed verdict was not made again: $(cat "$SVM_VERDICT")"
  assert_no_leftovers
}
