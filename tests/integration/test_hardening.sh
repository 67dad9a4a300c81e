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
  assert_eq "$(stat -c '%U %a' "$dir")" "$SVM_TEST_USER 700" "channel folder"
  assert_eq "$(stat -c '%U %a %F' "$dir/exec.0.sock")" "$SVM_TEST_USER 600 socket" "channel socket"
  assert_eq "$(stat -c '%U %a' /var/lib/slurm-vm/jobs/svm-$j-node1)" "root 755" "state folder"
  scancel "$j"
  wait_job_done "$j" 60
  assert_no_leftovers
}
