# `slurm-vm running` while the jobs run: it reads slurmctld's own job records (libslurm), so
# nothing a user puts in a job's name adds a VM, hides one, or breaks the listing. (Issue 20,
# finding 7: the older view parsed `scontrol show job` text, where a job's name is unquoted.)

test_running_view_of_running_jobs_cannot_be_forged_by_job_names() {
  local vm bare out rc
  vm=$(as_user "sbatch --parsable -w node2 --vm-image=tiny -o /dev/null -J 'x AdminComment=slurm-vm:image=tiny;vms=fake@hostX' --wrap 'sleep 120'")
  bare=$(as_user "sbatch --parsable -w node2 -o /dev/null -J 'NodeList=n[1-99999999999999999999999]' --wrap 'sleep 120'")
  wait_job_state "$vm" RUNNING 120
  wait_job_state "$bare" RUNNING 60
  out=$(slurm-vm running node2 2>&1) && rc=0 || rc=$?
  scancel "$vm" "$bare"
  assert_eq "$rc" "0" "exit status of slurm-vm running node2 (output: $out)"
  assert_contains "$out" "^$vm  *$SVM_TEST_USER  *node2  *vm node2-vm$vm (image tiny)\$" "running view of node2 (the VM job)"
  assert_contains "$out" "^$bare  *$SVM_TEST_USER  *node2  *bare\$" "running view of node2 (the bare job)"
  assert_not_contains "$out" "fake" "running view of node2"
  out=$(slurm-vm running hostX 2>&1) && rc=0 || rc=$?
  assert_eq "$rc" "0" "exit status of slurm-vm running hostX"
  assert_not_contains "$out" "^$vm " "running view of hostX"
  wait_job_done "$vm" 60
  wait_job_done "$bare" 60
  assert_no_leftovers
}
