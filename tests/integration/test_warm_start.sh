# Issue 12: warm starts. A node keeps a memory snapshot of each image's booted guest and
# restores it for each job instead of booting; what must differ per VM is set afresh.

WARM=/var/lib/slurm-vm/warm

# no_warm_starts_here: the nodes boot every VM cold: on cgroup v2 a VM boots in its job's
# cgroup, and a restored VM's memory could not be charged to the job.
no_warm_starts_here() {
  [ "$CGROUP_VERSION" = 2 ]
}

# ready_line JOBID: the prolog's "VM ... ready as" line for the job.
ready_line() {
  grep -h "slurm-vm: job $1 node [^ ]* image [^ ]*: VM .* ready as" "$SVM_LOG"/slurmd-node*.log
}

# run_tiny_job NODE SCRIPT: submits SCRIPT in a tiny VM on NODE as the test user, waits for
# it, prints its job id.
run_tiny_job() {
  local j
  j=$(as_user "sbatch --parsable -w $1 --vm-image=tiny -o out-%j.txt --wrap '$2'")
  wait_job_done "$j" 120 >&2
  echo "$j"
}

test_a_warm_started_job_has_its_own_hostname_user_mounts_clock_and_randomness() {
  no_warm_starts_here && skip "cgroup v2: VMs start cold (docs/admin-guide.md, \"Warm start\")"
  local j1 j2 j3 t0 t1 g out2 out3
  echo "from-the-host" >"$TEST_DIR/marker.txt"
  chown "$SVM_TEST_USER" "$TEST_DIR/marker.txt"
  # The first makes the node's snapshot if there is none; the next ones restore it.
  j1=$(run_tiny_job node1 "echo first")
  sleep 3 # the snapshot's clock is now at least 3 s behind
  t0=$(date +%s)
  j2=$(run_tiny_job node1 "hostname; id -un; pwd; cat marker.txt; date +%s; head -c16 /dev/urandom | od -An -tx1 | tr -d \" \\n\"; echo")
  t1=$(date +%s)
  j3=$(run_tiny_job node1 "head -c16 /dev/urandom | od -An -tx1 | tr -d \" \\n\"; echo")
  for j in "$j2" "$j3"; do
    assert_contains "$(ready_line "$j")" "MiB): warm (slot [0-9]*), created in" "the prolog's line for job $j"
  done
  out2=$(cat "$TEST_DIR/out-$j2.txt")
  out3=$(cat "$TEST_DIR/out-$j3.txt")
  assert_eq "$(sed -n 1p <<<"$out2")" "node1-vm$j2" "hostname"
  assert_eq "$(sed -n 2p <<<"$out2")" "$SVM_TEST_USER" "user name"
  assert_eq "$(sed -n 3p <<<"$out2")" "$TEST_DIR" "working directory"
  assert_eq "$(sed -n 4p <<<"$out2")" "from-the-host" "a file of the shared folder"
  g=$(sed -n 5p <<<"$out2")
  [ -n "$g" ] && [ "$g" -ge $((t0 - 1)) ] && [ "$g" -le $((t1 + 1)) ] ||
    fail "the guest's clock said '$g', the host's was $t0..$t1" || return 1
  [ "$(sed -n 6p <<<"$out2" | wc -c)" -gt 30 ] || fail "no random bytes: $out2" || return 1
  [ "$(sed -n 6p <<<"$out2")" != "$(sed -n 1p <<<"$out3")" ] ||
    fail "two VMs restored from one snapshot read the same random bytes: $out3" || return 1
  assert_eq "$(job_state "$j3")" "COMPLETED" "job state"
  assert_no_leftovers
}

test_debian11_warm_start_renews_machine_id_and_sets_the_clock_to_the_millisecond() {
  no_warm_starts_here && skip "cgroup v2: VMs start cold (docs/admin-guide.md, \"Warm start\")"
  local j1 j2 m1 m2 line t0 t1 g
  j1=$(as_user "sbatch --parsable -w node2 --vm-image=debian11 -o out-%j.txt --wrap 'cat /etc/machine-id'")
  wait_job_done "$j1" 300
  sleep 2
  t0=$(date +%s.%N)
  j2=$(as_user "sbatch --parsable -w node2 --vm-image=debian11 -o out-%j.txt --wrap 'cat /etc/machine-id; python3 -c \"import time; print(time.time())\"'")
  wait_job_done "$j2" 120
  t1=$(date +%s.%N)
  line=$(ready_line "$j2")
  assert_contains "$line" "MiB): warm (slot [0-9]*), created in" "the prolog's line"
  # Prolog start to a ready agent: the restore and the first answer (issue 12: 2 s here).
  m1=$(head -1 "$TEST_DIR/out-$j1.txt")
  m2=$(head -1 "$TEST_DIR/out-$j2.txt")
  [ ${#m2} = 32 ] && [ "$m1" != "$m2" ] || fail "machine-id of two warm VMs: '$m1' and '$m2'" || return 1
  g=$(sed -n 2p "$TEST_DIR/out-$j2.txt")
  python3 -c "import sys; g,a,b=map(float,sys.argv[1:]); sys.exit(0 if a-1<=g<=b+1 else 1)" "$g" "$t0" "$t1" ||
    fail "the guest's clock said '$g', the host's was $t0..$t1" || return 1
  assert_no_leftovers
}

test_two_vms_at_once_on_one_node_restore_from_two_slots() {
  no_warm_starts_here && skip "cgroup v2: VMs start cold (docs/admin-guide.md, \"Warm start\")"
  local j k i
  run_tiny_job node3 "true" >/dev/null # a snapshot in slot 0, if none yet
  j=$(as_user "sbatch --parsable -w node3 -c1 --vm-image=tiny -o out-%j.txt --wrap 'sleep 8; hostname'")
  k=$(as_user "sbatch --parsable -w node3 -c1 --vm-image=tiny -o out-%j.txt --wrap 'sleep 8; hostname'")
  wait_job_done "$j" 180
  wait_job_done "$k" 180
  assert_eq "$(cat "$TEST_DIR/out-$j.txt")" "node3-vm$j" "first job's hostname"
  assert_eq "$(cat "$TEST_DIR/out-$k.txt")" "node3-vm$k" "second job's hostname"
  i=$( (ready_line "$j"; ready_line "$k") | grep -o 'warm (slot [0-9]*)' | sort -u | wc -l)
  assert_eq "$i" "2" "two slots: $(ready_line "$j") / $(ready_line "$k")"
  assert_no_leftovers
}

test_snapshot_is_made_again_when_the_image_file_changes() {
  no_warm_starts_here && skip "cgroup v2: VMs start cold (docs/admin-guide.md, \"Warm start\")"
  local j
  run_tiny_job node1 "true" >/dev/null
  touch /var/lib/slurm-vm/images/tiny/initrd.img
  j=$(run_tiny_job node1 "echo after-change")
  assert_eq "$(cat "$TEST_DIR/out-$j.txt")" "after-change" "job output"
  assert_contains "$(grep -h "slurm-vm: job $j node node1 image tiny: made a warm-start snapshot" "$SVM_LOG"/slurmd-node1.log)" "made a warm-start" "a new snapshot"
  assert_contains "$(ready_line "$j")" "MiB): warm (slot 0)" "the prolog's line"
  # The snapshots of the old file are gone: one folder of tiny's files remains.
  assert_eq "$(find "$WARM/tiny" -mindepth 1 -maxdepth 1 -type d | wc -l)" "1" "tiny's snapshot folders"
  assert_no_leftovers
}

test_corrupted_snapshot_falls_back_to_a_cold_boot_and_the_job_runs() {
  no_warm_starts_here && skip "cgroup v2: VMs start cold (docs/admin-guide.md, \"Warm start\")"
  local j k f size
  run_tiny_job node2 "true" >/dev/null
  for f in $(find "$WARM/tiny" -path '*slot-*/state'); do
    size=$(stat -c %s "$f")
    truncate -s $((size / 2)) "$f"
  done
  j=$(run_tiny_job node2 "echo ran-cold")
  assert_eq "$(cat "$TEST_DIR/out-$j.txt")" "ran-cold" "job output"
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  assert_contains "$(grep -h "slurm-vm: job $j node node2 image tiny: no warm start" "$SVM_LOG"/slurmd-node2.log)" "the snapshot did not restore" "the node's log"
  assert_contains "$(ready_line "$j")" "MiB): cold, created in" "the prolog's line"
  # The bad snapshot was dropped: the next job makes a new one and starts warm.
  k=$(run_tiny_job node2 "echo warm-again")
  assert_eq "$(cat "$TEST_DIR/out-$k.txt")" "warm-again" "next job's output"
  assert_contains "$(ready_line "$k")" "MiB): warm (slot" "the next job's line"
  assert_no_leftovers
  assert_nodes_up
}

test_an_image_that_opts_out_boots_cold() {
  local j
  # "vip" says "warm_start": false in the test catalog (snapshots of an older catalog go).
  rm -rf "$WARM/vip"
  j=$(as_user "sbatch --parsable -w node1 --vm-image=vip -o out-%j.txt --wrap 'echo in-vip'")
  wait_job_done "$j" 120
  assert_eq "$(cat "$TEST_DIR/out-$j.txt")" "in-vip" "job output"
  assert_contains "$(ready_line "$j")" "MiB): cold, created in" "the prolog's line"
  assert_eq "$(find "$WARM/vip" -name state 2>/dev/null | wc -l)" "0" "snapshots of vip"
  assert_no_leftovers
}
