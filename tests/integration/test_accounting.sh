# Accounting: VM jobs attributed to the hosts that ran them, in sacct (AdminComment), in the
# JSON-lines stream, and in `slurm-vm report`.

SVM_RECORDS=${SVM_LOG}/guests/vm-jobs.jsonl
SACCT_FIELDS=JobID,User,NodeList,AllocCPUS,Start,End,State,AdminComment

# sacct_lines_of JOBID FILE: the job's allocation line, as `slurm-vm report` reads sacct.
sacct_lines_of() { sacct -j "$1" -X -P -n -o "$SACCT_FIELDS" >"$2"; }

# report_window JOBID: "--from X --to Y" covering the job, in sacct's minutes.
report_window() {
  local start end
  start=$(sacct -j "$1" -X -P -n -o Start | cut -c1-16)
  end=$(date -d "$(sacct -j "$1" -X -P -n -o End) 1 minute" +%Y-%m-%dT%H:%M)
  echo "--from $start --to $end"
}

test_vm_job_on_two_nodes_is_in_sacct_the_record_stream_and_the_report() {
  local j comment csv cpu_sacct cpu_report
  j=$(as_user "sbatch --parsable -N2 --vm-image=tiny -o /dev/null --wrap 'srun sleep 3'")
  wait_job_done "$j" 120
  comment=$(sacct_field "$j" AdminComment)
  # Written at submit by slurmctld: the image, and how each node's VM is named.
  assert_eq "$comment" "slurm-vm:image=tiny;hostname=%25n-vm%25j" "sacct AdminComment"

  wait_for_vm_stopped "$j" >/dev/null
  for n in 1 2; do
    local rec
    rec=$(grep "\"jobid\":$j," "$SVM_RECORDS" | grep "\"node\":\"node$n\"")
    assert_contains "$rec" "\"image\":\"tiny\"" "record of node$n"
    assert_contains "$rec" "\"vm_hostname\":\"node$n-vm$j\"" "record of node$n"
    assert_contains "$rec" "\"physical_host\":\"node$n\"" "record of node$n"
    assert_contains "$rec" "\"user\":\"$SVM_TEST_USER\"" "record of node$n"
    assert_contains "$rec" "\"stop\":\"graceful\"" "record of node$n"
  done

  sacct_lines_of "$j" "$TEST_DIR/sacct.txt"
  # shellcheck disable=SC2046 # the window is two options
  csv=$(slurm-vm report $(report_window "$j") --format csv --sacct-output "$TEST_DIR/sacct.txt")
  assert_contains "$csv" "^host,node1,vm_jobs,1," "report"
  assert_contains "$csv" "^host,node2,vm_jobs,1," "report"
  assert_contains "$csv" "^image,tiny,vm_jobs,1," "report"
  cpu_sacct=$(sacct -j "$j" -X -P -n -o CPUTimeRAW | awk '{printf "%.4f", $1 / 3600}')
  cpu_report=$(printf '%s\n' "$csv" | awk -F, '$1=="host" && $3=="vm_jobs" {s += $5} END {printf "%.4f", s}')
  awk -v a="$cpu_sacct" -v b="$cpu_report" 'BEGIN{exit !(a - b < 0.0002 && b - a < 0.0002)}' ||
    fail "CPU-hours: sacct says $cpu_sacct, the report $cpu_report"
}

test_bare_job_on_a_vm_node_is_charged_to_the_host_in_the_map() {
  local j map=$TEST_DIR/host-map csv
  # node3 stands for a long-lived VM registered as a Slurm node, hosted on node1.
  slurm-vm map --map "$map" start node3 node1
  j=$(as_user "sbatch --parsable -w node3 -o /dev/null --wrap 'sleep 2'")
  wait_job_done "$j" 60
  slurm-vm map --map "$map" stop node3
  assert_contains "$(slurm-vm map --map "$map" list)" "^node3  *node1 " "map list"
  sacct_lines_of "$j" "$TEST_DIR/sacct.txt"
  # shellcheck disable=SC2046
  csv=$(slurm-vm report $(report_window "$j") --format csv --map "$map" --sacct-output "$TEST_DIR/sacct.txt")
  assert_contains "$csv" "^host,node1,vm_node_jobs,1," "report"
  assert_not_contains "$csv" "^host,node3,bare,1," "report"
}

test_record_arrives_when_slurmdbd_is_down_during_the_job() {
  local j here i comment
  here=$(dirname "${BASH_SOURCE[0]}")
  j=$(as_user "sbatch --parsable --vm-image=tiny -o /dev/null --wrap 'sleep 12'")
  wait_job_state "$j" RUNNING 60
  "$here/../../contrib/cluster.sh" stop-slurmdbd
  sleep 8
  "$here/../../contrib/cluster.sh" start-slurmdbd
  wait_job_done "$j" 120
  for ((i = 0; i < 120; i++)); do
    comment=$(sacct -j "$j" -X -P -n -o AdminComment 2>/dev/null)
    [ -n "$comment" ] && break
    sleep 0.5
  done
  assert_contains "$comment" "slurm-vm:image=tiny;hostname=" "sacct AdminComment after the restart"
  wait_sacct_field "$j" State COMPLETED
}

test_bad_report_arguments_give_one_line_and_an_empty_window_is_empty() {
  local out
  out=$(slurm-vm report --from yesterday --to 2026-01-01 2>&1) && fail "a bad window was accepted"
  assert_eq "$(printf '%s\n' "$out" | wc -l)" "1" "lines of the error"
  assert_contains "$out" "yesterday" "the error"
  out=$(slurm-vm report --from 2026-01-01 --to 2026-01-02 --format xml 2>&1) && fail "format xml was accepted"
  assert_contains "$out" "xml" "the error"
  out=$(slurm-vm report --from 2000-01-01 --to 2000-01-02 --format csv)
  assert_eq "$out" "section,name,class,jobs,cpu_hours,elapsed_hours" "report of an empty window"
}

test_running_view_lists_jobs_in_a_hosts_vms_and_on_its_vm_nodes() {
  local vmjob bare map=$TEST_DIR/host-map out
  slurm-vm map --map "$map" start node3 node1
  vmjob=$(as_user "sbatch --parsable -w node1 --vm-image=tiny -o /dev/null --wrap 'sleep 30'")
  bare=$(as_user "sbatch --parsable -w node3 -o /dev/null --wrap 'sleep 30'")
  wait_job_state "$vmjob" RUNNING 60
  wait_job_state "$bare" RUNNING 60
  out=$(slurm-vm running node1 --map "$map")
  scancel "$vmjob" "$bare"
  assert_contains "$out" "^$vmjob  *$SVM_TEST_USER  *node1  *vm node1-vm$vmjob (image tiny)" "slurm-vm running node1"
  assert_contains "$out" "^$bare  *$SVM_TEST_USER  *node3  *on VM node node3" "slurm-vm running node1"
  assert_not_contains "$(slurm-vm running node2 --map "$map")" "^$vmjob " "slurm-vm running node2"
  wait_job_done "$vmjob" 60
  assert_no_leftovers
}

test_report_without_a_window_reports_yesterday_and_refuses_unknown_options() {
  local out yesterday today rc=0
  yesterday=$(date -d yesterday +%Y-%m-%d)
  today=$(date +%Y-%m-%d)
  out=$(slurm-vm report) || fail "slurm-vm report without a window failed: $out"
  assert_eq "$(printf '%s\n' "$out" | head -1)" \
    "slurm-vm usage from ${yesterday}T00:00:00 to ${today}T00:00:00" "the window of a bare report"
  out=$(slurm-vm report --bogus 2>&1) || rc=$?
  assert_eq "$rc" "2" "exit status of an unknown option"
  assert_eq "$(printf '%s\n' "$out" | wc -l)" "1" "lines of the error"
  assert_contains "$out" "'--bogus'" "the error"
}

# More than 64 KiB of sacct output: the report must count every job, not a prefix of them.
test_report_counts_every_job_of_a_large_sacct_output() {
  local j csv n=3000
  # A job of at least a second: the report leaves out jobs that took no time.
  j=$(as_user "sbatch --parsable -o /dev/null --wrap 'sleep 2'")
  wait_job_done "$j" 60
  sacct_lines_of "$j" "$TEST_DIR/one.txt"
  # The same allocation line under 3000 job ids: about 200 KB.
  awk -F'|' -v n=$n 'BEGIN{OFS="|"} {for (i = 1; i <= n; i++) {$1 = i; print}}' \
    "$TEST_DIR/one.txt" >"$TEST_DIR/sacct.txt"
  [ "$(stat -c %s "$TEST_DIR/sacct.txt")" -gt 65536 ] || fail "the test output is too small"
  # shellcheck disable=SC2046
  csv=$(slurm-vm report $(report_window "$j") --format csv --sacct-output "$TEST_DIR/sacct.txt" 2>&1)
  assert_contains "$csv" "^host,[^,]*,total,$n," "report"
  assert_not_contains "$csv" "warning" "report"
}

test_forged_job_name_and_comment_change_nothing_and_a_site_admin_comment_is_kept() {
  local j out
  # What a user may write in a job's name and comment reaches no root decision: the VM is
  # sized to the allocation, accounting names the real image and nodes.
  j=$(as_user "sbatch --parsable -w node2 --vm-image=tiny -o out-%j.txt -J 'x AdminComment=slurm-vm:image=tiny;vms=fake@hostX' --comment='x Nodes=node2 CPU_IDs=0-255 Mem=1048576 Nodes=a[0-99999999999]' --wrap 'nproc; free -m | sed -n 2p'")
  wait_job_done "$j" 120
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "^1\$" "vCPUs in the VM (one CPU allocated)"
  assert_contains "$(grep "job $j node node2 image tiny: VM" "$SVM_LOG/slurmd-node2.log")" "(qemu, 1 vCPU, 256 MiB)\|(kvm, 1 vCPU, 256 MiB)" "the prolog's sizing"
  assert_eq "$(sacct_field "$j" AdminComment)" "slurm-vm:image=tiny;hostname=%25n-vm%25j" "AdminComment"
  assert_not_contains "$(slurm-vm running node2)" "fake" "running view"
  # An admin's (or another tool's) AdminComment is kept beside ours.
  j=$(as_user "sbatch --parsable -H -w node2 --vm-image=tiny -o /dev/null --wrap true")
  scontrol update jobid="$j" AdminComment='site:ticket=42'
  scontrol release "$j"
  wait_job_done "$j" 120
  assert_eq "$(sacct_field "$j" AdminComment)" "site:ticket=42 slurm-vm:image=tiny;hostname=%25n-vm%25j" "AdminComment with the site's words"
  assert_nodes_up
  assert_no_leftovers
}
