# A job's VM inside the job's cgroups (issues 11 and 19): its QEMU is in the job's cgroups on its
# node (cgroup v1: freezer, cpuset, cpuacct and memory; cgroup v2: the extern step's task folder
# of the unified hierarchy), pinned to the job's CPUs; sstat and sacct count it in the extern
# step; scontrol suspend freezes it; preemption in each mode ends, requeues or suspends it and
# leaves nothing behind; it stays within the memory it was given. The cluster runs
# proctrack/cgroup, task/cgroup and jobacct_gather/cgroup with the plugin for the host's
# hierarchy (contrib/cluster.sh). Run: tests/integration/run.sh containment

# The cgroup of every thread of process PID in CONTROLLER (v1), or in the unified hierarchy
# (v2: CONTROLLER does not matter), one per line, sorted and unique.
thread_cgroups() {
  local pid=$1 controller=$2
  [ "$CGROUP_VERSION" = 2 ] && controller=""
  cat /proc/"$pid"/task/*/cgroup 2>/dev/null | awk -F: -v c="$controller" '$2 == c {print $3}' | sort -u
}

# wait_for_line FILE PATTERN [SECONDS]: until FILE has a line matching PATTERN.
wait_for_line() {
  local i t=$((${3:-240} * SVM_TIME_FACTOR))
  for ((i = 0; i < t * 2; i++)); do
    grep -q -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  fail "no line '$2' in $1 within ${t}s: $(tail -c 300 "$1" 2>/dev/null)"
}

# extern_step_frozen_cgroup JOBID NODE: the folder Slurm freezes for the job's extern step (v1:
# the step in freezer; v2: the step's user folder, cgroup_p_step_suspend).
extern_step_frozen_cgroup() {
  local j
  j=$(job_cgroup freezer "$1" "$2")/step_extern
  [ "$CGROUP_VERSION" = 2 ] && j=$j/user
  echo "$j"
}

# wait_frozen JOBID NODE SECONDS: until the job's extern step (and so its VM) is frozen.
wait_frozen() {
  local i f
  for ((i = 0; i < $3 * 10; i++)); do
    f=$(extern_step_frozen_cgroup "$1" "$2")
    is_frozen "$f" && return 0
    sleep 0.1
  done
  fail "the extern step of job $1 on $2 is not frozen within $3 s ($f)"
}

test_a_vm_jobs_qemu_is_in_the_jobs_cgroups_on_its_cpu_and_a_bare_job_gets_the_other() {
  local j k i ids other pid uid c want got line allowed tid
  uid=$(id -u "$SVM_TEST_USER")
  j=$(as_user "sbatch --parsable -w node1 -n1 -c1 --vm-image=tiny -o out-%j.txt --wrap 'echo up; sleep 60'")
  wait_for_line "$TEST_DIR/out-$j.txt" "^up\$"
  ids=$(scontrol show job -d "$j" | sed -n 's/.*Nodes=node1 CPU_IDs=\([0-9,-]*\).*/\1/p')
  [ -n "$ids" ] || fail "no CPU_IDs for job $j" || return 1
  line=$(wait_for_vm_placed "$j" node1)
  if [ "$CPUSET" = yes ]; then
    assert_contains "$line" "image tiny: VM placed in the job's cgroups (cgroup v$CGROUP_VERSION: freezer, cpuset, cpuacct, memory) on CPUs $ids\$" "slurmd's log"
  else
    # A kernel without the cpuset controller: the job has no CPUs of its own to be held on, and
    # the vCPUs stay where the domain XML pinned them.
    assert_contains "$line" "image tiny: VM placed in the job's cgroups (cgroup v$CGROUP_VERSION: freezer, cpuacct, memory); no cpuset:" "slurmd's log"
  fi
  pid=$(qemu_pid "$j" node1)
  [ -n "$pid" ] || fail "no QEMU pid for job $j" || return 1
  # Every thread of QEMU, in the VM's folder below the job's extern step (below its task folder
  # for accounting), in each controller; on v2 out of libvirt's threaded vcpu and emulator
  # cgroups too, into the one folder below the extern step's task folder.
  if [ "$CGROUP_VERSION" = 2 ]; then
    want=$(job_cgroup - "$j" node1)/step_extern/user/task_0/slurm_vm
    assert_eq "$(thread_cgroups "$pid")" "${want#/sys/fs/cgroup}" "the cgroup of QEMU's threads"
  else
    for c in freezer cpuset cpuacct memory; do
      want=/slurm_node1/uid_$uid/job_$j/step_extern/slurm_vm
      case $c in cpuacct | memory) want=/slurm_node1/uid_$uid/job_$j/step_extern/task_0/slurm_vm ;; esac
      got=$(thread_cgroups "$pid" "$c")
      assert_eq "$got" "$want" "the $c cgroup of QEMU's threads"
    done
  fi
  if [ "$CPUSET" = yes ]; then
    assert_eq "$(cat "$(job_cgroup cpuset "$j" node1)/cpuset.cpus")" "$ids" "the job's cpuset"
    for tid in /proc/"$pid"/task/*; do
      allowed=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$tid/status" 2>/dev/null)
      [ -z "$allowed" ] || assert_eq "$allowed" "$ids" "CPUs of QEMU's thread ${tid##*/} ($(cat "$tid/comm" 2>/dev/null))"
    done
  fi
  # A bare one-CPU job beside it gets the node's other CPU, as its own cpuset.
  k=$(as_user "sbatch --parsable -w node1 -n1 -c1 -o bare-%j.txt --wrap 'cat /proc/self/cgroup; sleep 30'")
  wait_for_line "$TEST_DIR/bare-$k.txt" "step_batch" 60
  if [ "$CPUSET" = yes ]; then
    other=$(cat "$(job_cgroup cpuset "$k" node1)/cpuset.cpus")
    [ -n "$other" ] && [ "$other" != "$ids" ] || fail "the bare job's cpuset: '$other' (the VM job's: $ids)" || return 1
  fi
  if [ "$CGROUP_VERSION" = 2 ]; then
    want=$(job_cgroup - "$k" node1)
    assert_contains "$(cat "$TEST_DIR/bare-$k.txt")" "^0::${want#/sys/fs/cgroup}/step_batch/user/task_0\$" "the bare job's own cgroup"
  else
    assert_contains "$(cat "$TEST_DIR/bare-$k.txt")" "freezer:/slurm_node1/uid_$uid/job_$k/step_batch" "the bare job's own cgroup"
  fi
  scancel "$j" "$k"
  wait_job_done "$j" 120
  wait_job_done "$k" 60
  wait_for_vm_stopped "$j" >/dev/null
  assert_no_leftovers
  assert_no_job_cgroups "$j" node1
  assert_nodes_up
}

test_a_busy_guest_shows_its_cpu_time_in_sstat_and_sacct_for_the_extern_step() {
  local j i pid ticks busy charge rss_kb job_kb sstat_line cpu mib total elapsed
  # 20 s of a busy loop in the guest, then quiet long enough for jobacct_gather's last poll
  # (JobAcctGatherFrequency=5) to see all of it.
  j=$(as_user "sbatch --parsable -w node2 -n1 -c1 --vm-image=tiny -o out-%j.txt --wrap 'echo busy; timeout 20 sh -c \"while :; do :; done\"; echo idle; sleep 20; echo done'")
  wait_for_line "$TEST_DIR/out-$j.txt" "^busy\$"
  wait_for_vm_placed "$j" node2 >/dev/null
  pid=$(qemu_pid "$j" node2)
  ticks=$(cpu_ticks "$pid")
  # A v1 file: on v2 there is none, and cat's failure must not end the test.
  charge=$(cat "$(job_cgroup memory "$j" node2)/step_extern/task_0/slurm_vm/memory.move_charge_at_immigrate" 2>/dev/null || true)
  wait_for_line "$TEST_DIR/out-$j.txt" "^idle\$" 120
  # What QEMU really got of a CPU while the guest was busy: on a loaded host, less than the
  # 20 s of wall time. The extern step must count at least that.
  busy=$((($(cpu_ticks "$pid") - ticks) / $(getconf CLK_TCK)))
  [ "$busy" -ge 5 ] || fail "QEMU used $busy s of CPU while its guest was busy for 20 s" || return 1
  rss_kb=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status")
  if [ "$CGROUP_VERSION" = 2 ]; then
    # The VM booted in a cgroup of the job's: all its memory is the job's, what it touched
    # before the extern step included.
    job_kb=$(($(cat "$(job_cgroup memory "$j" node2)/memory.current") / 1024))
    [ "$job_kb" -ge $((rss_kb / 2)) ] || fail "the job's memory.current $job_kb kB, QEMU's RSS $rss_kb kB" || return 1
  fi
  sleep 8
  sstat_line=$(as_user "sstat -n -P -j $j.extern -o AveCPU,MaxRSS" 2>&1)
  cpu=$(slurm_seconds "${sstat_line%%|*}")
  [ "$cpu" -ge $((busy - 3)) ] || fail "sstat's CPU time of the extern step: '$sstat_line' ($cpu s; QEMU used $busy s while the guest was busy)" || return 1
  wait_job_done "$j" 120
  wait_sacct_field "$j" State COMPLETED
  for ((i = 0; i < 40; i++)); do
    total=$(sacct -n -P -j "$j.extern" -o TotalCPU,MaxRSS,Elapsed 2>/dev/null | head -1)
    [ -n "${total%%|*}" ] && break
    sleep 0.5
  done
  cpu=$(slurm_seconds "$(cut -d'|' -f1 <<<"$total")")
  mib=$(slurm_mib "$(cut -d'|' -f2 <<<"$total")")
  elapsed=$(slurm_seconds "$(cut -d'|' -f3 <<<"$total")")
  [ "$cpu" -ge $((busy - 3)) ] || fail "sacct's TotalCPU of $j.extern: '$total' ($cpu s; QEMU used $busy s while the guest was busy)" || return 1
  # One CPU's cpuset: QEMU cannot have used more than the time it ran.
  [ "$cpu" -le $((elapsed + 2)) ] || fail "TotalCPU $cpu s above the one CPU's $elapsed s: '$total'" || return 1
  [ -n "$(cut -d'|' -f2 <<<"$total")" ] && [ "$mib" -le 512 ] ||
    fail "sacct's MaxRSS of $j.extern: '$total' (job memory 512 MiB)" || return 1
  # Where the kernel moves charges with the process (v1, Linux before 6.13), the extern step's
  # memory is QEMU's; elsewhere what QEMU touched before the move stays charged where it was
  # (v1: libvirt's cgroup; v2: the job's boot cgroup, in the job's limit but not in the extern
  # step's MaxRSS) and only what it touches later is the step's (docs/admin-guide.md,
  # "Containment").
  if [ "$charge" = 3 ]; then
    [ "$mib" -ge $((rss_kb / 1024 / 2)) ] || fail "MaxRSS $mib MiB, QEMU's RSS $((rss_kb / 1024)) MiB" || return 1
  fi
  assert_no_leftovers
  assert_no_job_cgroups "$j" node2
}

test_scontrol_suspend_freezes_the_vm_and_resume_lets_the_job_finish() {
  local j pid start took a b lines_a lines_b out
  j=$(as_user "sbatch --parsable -w node3 -n1 -c1 --vm-image=tiny -o out-%j.txt --wrap 'i=0; while [ \$i -lt 25 ]; do echo tick \$i; i=\$((i+1)); sleep 1; done; echo finished; exit 7'")
  wait_for_line "$TEST_DIR/out-$j.txt" "^tick 2\$"
  wait_for_vm_placed "$j" node3 >/dev/null
  pid=$(qemu_pid "$j" node3)
  start=$(date +%s.%N)
  scontrol suspend "$j"
  # Slurm sends SIGTSTP to the tasks (the guest's command gets it at once through the exec
  # channel), waits 2 s, then freezes every step's cgroup, the VM's below the extern step.
  wait_frozen "$j" node3 10
  took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%d", b - a}')
  [ "$took" -le 4 ] || fail "the VM froze ${took} s after scontrol suspend" || return 1
  assert_eq "$(job_state "$j")" SUSPENDED "job state"
  is_frozen "$(vm_cgroup "$j" node3)" || fail "the VM's cgroup $(vm_cgroup "$j" node3) is not frozen" || return 1
  a=$(cpu_ticks "$pid")
  lines_a=$(wc -l <"$TEST_DIR/out-$j.txt")
  sleep 5
  b=$(cpu_ticks "$pid")
  lines_b=$(wc -l <"$TEST_DIR/out-$j.txt")
  [ "$b" -le $((a + 1)) ] || fail "QEMU used $((b - a)) ticks of CPU in 5 s of suspension" || return 1
  assert_eq "$lines_b" "$lines_a" "output lines while suspended"
  scontrol resume "$j"
  wait_job_done "$j" 120
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_eq "$(grep -c '^tick ' <<<"$out")" 25 "ticks"
  assert_contains "$out" "^finished\$" "job output"
  wait_sacct_field "$j" ExitCode "7:0"
  assert_no_leftovers
  assert_no_job_cgroups "$j" node3
  assert_nodes_up
}

test_preemption_cancel_ends_the_vm_job_and_leaves_nothing() {
  local j k
  j=$(as_user "sbatch --parsable -p low-cancel -w node3 -n1 -c2 --vm-image=tiny -o out-%j.txt --wrap 'echo started; sleep 600'")
  wait_for_line "$TEST_DIR/out-$j.txt" "^started\$"
  wait_for_vm_placed "$j" node3 >/dev/null
  k=$(as_user "sbatch --parsable -p urgent -w node3 -n1 -c2 -o /dev/null --wrap 'sleep 20'")
  wait_job_done "$j" 120
  assert_contains "$(job_state "$j")" "PREEMPTED\|CANCELLED" "the preempted job's state"
  wait_job_state "$k" RUNNING 60
  wait_for_vm_stopped "$j" >/dev/null
  assert_no_leftovers
  assert_no_job_cgroups "$j" node3
  wait_job_done "$k" 60
  assert_eq "$(job_state "$k")" COMPLETED "the urgent job's state"
  assert_nodes_up
}

test_preemption_requeue_stops_the_vm_then_runs_the_job_again_in_a_new_one() {
  local j k i s
  j=$(as_user "sbatch --parsable --requeue -p low-requeue -w node3 -n1 -c2 --vm-image=tiny -o /dev/null --wrap 'n=\${SLURM_RESTART_COUNT:-0}; echo run-\$n \$(hostname) >> runs.txt; [ \$n != 0 ] || exec sleep 600; echo finished-\$n >> runs.txt'")
  wait_for_line "$TEST_DIR/runs.txt" "^run-0 node3-vm$j\$"
  wait_for_vm_placed "$j" node3 >/dev/null
  k=$(as_user "sbatch --parsable -p urgent -w node3 -n1 -c2 -o /dev/null --wrap 'sleep 15'")
  for ((i = 0; i < 240; i++)); do
    s=$(job_state "$j")
    [ "$s" = PENDING ] && break
    sleep 0.5
  done
  assert_eq "$s" PENDING "the requeued job's state"
  wait_for_vm_stopped "$j" >/dev/null
  assert_no_leftovers
  assert_no_job_cgroups "$j" node3
  wait_job_done "$k" 120
  # Slurm holds a requeued batch job back for the credential's lifetime (20 min), because
  # slurmd skips the prolog of a job it ran within it: start it now, on another node.
  scontrol update JobId="$j" ReqNodeList=node2 StartTime=now
  wait_job_done "$j" 300
  assert_eq "$(cat "$TEST_DIR/runs.txt")" "run-0 node3-vm$j
run-1 node2-vm$j
finished-1" "the runs"
  assert_eq "$(job_state "$j")" COMPLETED "the job's state"
  assert_no_leftovers
  assert_no_job_cgroups "$j" node3
  assert_no_job_cgroups "$j" node2
  assert_nodes_up
}

# A requeued VM job forced to start at once on the same node: slurmd may skip its prolog (for a
# job it ran there within the credential's lifetime; measured: sometimes it does, sometimes not).
# Either the prolog runs and the job gets a new VM, or the task is refused with a line that says
# why; it never runs on the host.
test_a_requeued_vm_job_forced_onto_the_same_node_runs_in_a_vm_or_not_at_all() {
  local j out i
  j=$(as_user "sbatch --parsable --requeue -w node1 --vm-image=tiny -o out-%j.txt --open-mode=append --wrap 'n=\${SLURM_RESTART_COUNT:-0}; echo run-\$n \$(hostname); [ \$n != 0 ] || exec sleep 600'")
  wait_for_line "$TEST_DIR/out-$j.txt" "^run-0 node1-vm$j\$"
  scontrol requeue "$j"
  wait_for_vm_stopped "$j" >/dev/null
  for ((i = 0; i < 120; i++)); do
    [ "$(job_state "$j")" = PENDING ] && scontrol update JobId="$j" StartTime=now 2>/dev/null && break
    sleep 0.5
  done
  wait_job_done "$j" 120 || { scancel "$j"; return 1; }
  out=$(cat "$TEST_DIR/out-$j.txt")
  if grep -q "^run-1" <<<"$out"; then
    assert_contains "$out" "^run-1 node1-vm$j\$" "the second run's host (a VM, not the host)"
    assert_eq "$(job_state "$j")" COMPLETED "the job's state"
  else
    assert_contains "$out" "slurm-vm: image 'tiny' on node1 (job $j): no VM was started for this job on this node" "the job's output"
    assert_eq "$(job_state "$j")" FAILED "the job's state"
  fi
  assert_no_leftovers
  assert_nodes_up
}

test_preemption_suspend_freezes_the_vm_until_the_urgent_job_ends() {
  local j k pid a b out
  j=$(as_user "sbatch --parsable -p low-suspend -w node3 -n1 -c2 --vm-image=tiny -o out-%j.txt --wrap 'i=0; while [ \$i -lt 30 ]; do echo tick \$i; i=\$((i+1)); sleep 1; done; echo finished'")
  wait_for_line "$TEST_DIR/out-$j.txt" "^tick 2\$"
  wait_for_vm_placed "$j" node3 >/dev/null
  pid=$(qemu_pid "$j" node3)
  k=$(as_user "sbatch --parsable -p urgent -w node3 -n1 -c2 -o /dev/null --wrap 'sleep 20'")
  wait_job_state "$j" SUSPENDED 60
  wait_frozen "$j" node3 10
  wait_job_state "$k" RUNNING 60
  a=$(cpu_ticks "$pid")
  sleep 3
  b=$(cpu_ticks "$pid")
  [ "$b" -le $((a + 1)) ] || fail "QEMU used $((b - a)) ticks of CPU in 3 s while preempted" || return 1
  wait_job_done "$k" 120
  wait_job_done "$j" 180
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_eq "$(grep -c '^tick ' <<<"$out")" 30 "ticks"
  assert_contains "$out" "^finished\$" "job output"
  wait_sacct_field "$j" State COMPLETED
  assert_no_leftovers
  assert_no_job_cgroups "$j" node3
  assert_nodes_up
}

test_a_vm_that_wants_more_memory_than_it_was_given_stays_within_the_jobs_limit() {
  local j out line total mib kb cg limit peak
  # 768 MiB for the job: 512 for the guest, 256 (memory_overhead) for QEMU itself. The guest's
  # awk doubles a string until the guest's kernel stops it; QEMU, in the job's memory cgroup,
  # must survive, and the job goes on.
  cat >"$TEST_DIR/hog.sh" <<'EOF'
#!/bin/sh
grep MemTotal /proc/meminfo
awk 'BEGIN { s = "x"; while (1) s = s s }' >/dev/null 2>&1
echo "awk ended: $?"
echo alive
sleep 10
EOF
  chmod 0755 "$TEST_DIR/hog.sh"
  j=$(as_user "sbatch --parsable -w node1 -n1 -c1 --mem=768 --vm-image=tiny -o out-%j.txt hog.sh")
  wait_for_line "$TEST_DIR/out-$j.txt" "^alive\$" 300
  # The job's limit held everything charged to the job, the VM's memory included (on v2 from its
  # first page: it booted in a cgroup of the job's).
  cg=$(job_cgroup memory "$j" node1)
  if [ "$CGROUP_VERSION" = 2 ]; then
    limit=$(cat "$cg/memory.max")
    peak=$(cat "$cg/memory.peak")
  else
    limit=$(cat "$cg/memory.limit_in_bytes")
    peak=$(cat "$cg/memory.max_usage_in_bytes")
  fi
  assert_eq "$limit" $((768 * 1024 * 1024)) "the job's memory limit"
  [ "$peak" -le "$limit" ] || fail "the job's memory peaked at $peak bytes, above its limit $limit" || return 1
  wait_job_done "$j" 300
  line=$(grep -h "slurm-vm: job $j node node1 image tiny: VM .* ready as" "$SVM_LOG/slurmd-node1.log")
  assert_contains "$line" ", 1 vCPU, 512 MiB)" "the guest's size in slurmd's log"
  assert_contains "$(wait_for_vm_placed "$j" node1)" "VM placed in the job's cgroups" "slurmd's log"
  out=$(cat "$TEST_DIR/out-$j.txt")
  kb=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' <<<"$out")
  [ -n "$kb" ] && [ "$kb" -gt $((400 * 1024)) ] && [ "$kb" -le $((512 * 1024)) ] ||
    fail "the guest's MemTotal: '$kb' kB (given 512 MiB)" || return 1
  assert_contains "$out" "^awk ended: [1-9]" "the guest stopped the hog"
  assert_contains "$out" "^alive\$" "the job after the hog"
  assert_eq "$(job_state "$j")" COMPLETED "the job's state (not OUT_OF_MEMORY)"
  total=$(sacct -n -P -j "$j.extern" -o MaxRSS 2>/dev/null | head -1)
  mib=$(slurm_mib "$total")
  [ "$mib" -le 768 ] || fail "the extern step's MaxRSS: '$total' (the job has 768 MiB)" || return 1
  assert_no_leftovers
  assert_no_job_cgroups "$j" node1
  # An allocation too small for QEMU and a guest fails the job with the numbers, not the node.
  j=$(as_user "sbatch --parsable -w node1 -n1 -c1 --mem=300 --vm-image=tiny -o small-%j.txt --wrap true")
  wait_job_done "$j" 120
  assert_contains "$(cat "$TEST_DIR/small-$j.txt")" "the job's 300 MiB of memory on this node leave 44 MiB for the VM" "the job's error"
  assert_eq "$(job_state "$j")" FAILED "the small job's state"
  assert_no_leftovers
  assert_nodes_up
}

# cgroup v2 (issue 19): the VM boots in a cgroup of its job's (the prolog's boot cgroup, below
# the job's folder, limited to the job's memory), so all its memory is the job's; the extern
# step moves it on below its task folder and removes the boot cgroup; it starts cold.
test_on_cgroup_v2_a_vm_boots_in_its_jobs_cgroup_and_starts_cold() {
  local j line cg pid rss_kb job_kb
  [ "$CGROUP_VERSION" = 2 ] || skip "cgroup v1 host: VMs boot in libvirt's cgroup there"
  j=$(as_user "sbatch --parsable -w node2 -n1 -c1 --mem=768 --vm-image=tiny -o out-%j.txt --wrap 'echo up; sleep 30'")
  wait_for_line "$TEST_DIR/out-$j.txt" "^up\$"
  line=$(grep -h "slurm-vm: job $j node node2 image tiny: VM .* ready as" "$SVM_LOG/slurmd-node2.log")
  assert_contains "$line" "MiB): cold, created in" "the prolog's line (no warm start on v2)"
  assert_not_contains "$(grep -h "slurm-vm: job $j node node2 " "$SVM_LOG/slurmd-node2.log")" "VM boots outside the job's cgroup" "slurmd's log"
  wait_for_vm_placed "$j" node2 >/dev/null
  cg=$(job_cgroup - "$j" node2)
  [ -n "$cg" ] || fail "no cgroup folder for job $j" || return 1
  [ ! -d "$cg/slurm_vm" ] || fail "the boot cgroup $cg/slurm_vm is still there after the placement" || return 1
  assert_eq "$(cat "$cg/memory.max")" $((768 * 1024 * 1024)) "the job's memory limit"
  pid=$(qemu_pid "$j" node2)
  rss_kb=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status")
  job_kb=$(($(cat "$cg/memory.current") / 1024))
  [ "$job_kb" -ge $((rss_kb / 2)) ] || fail "the job's memory.current $job_kb kB, QEMU's RSS $rss_kb kB" || return 1
  scancel "$j"
  wait_job_done "$j" 120
  wait_for_vm_stopped "$j" >/dev/null
  assert_no_leftovers
  assert_no_job_cgroups "$j" node2
  assert_nodes_up
}
