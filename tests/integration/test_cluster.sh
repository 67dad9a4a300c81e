# The local cluster itself: real slurmctld, three slurmd, slurmdbd on MariaDB, a non-root user.

test_three_nodes_idle() {
  assert_eq "$(sinfo -h -N -o %N | sort -u | tr '\n' ' ')" "node1 node2 node3 " "nodes"
  assert_nodes_up
}

test_sbatch_wrap_as_test_user_writes_output_and_exit_code() {
  local j
  j=$(as_user "sbatch --parsable -o out-%j.txt --wrap 'echo hello from \$SLURMD_NODENAME; id -un; exit 3'")
  wait_job_done "$j" 60
  assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "hello from node" "job output"
  assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "$SVM_TEST_USER" "job output"
  assert_eq "$(stat -c %U "$TEST_DIR/out-$j.txt")" "$SVM_TEST_USER" "output file owner"
  wait_sacct_field "$j" ExitCode "3:0"
  wait_sacct_field "$j" State "FAILED"
  assert_eq "$(sacct_field "$j" User)" "$SVM_TEST_USER" "sacct User"
}

test_srun_on_three_nodes() {
  local out
  out=$(as_user "srun -N3 -t 1 bash -c 'echo \$SLURMD_NODENAME'" | sort | tr '\n' ' ')
  assert_eq "$out" "node1 node2 node3 " "srun -N3 output"
}

test_sacct_records_node_list() {
  local j
  j=$(as_user "sbatch --parsable -N2 -o /dev/null --wrap 'srun true'")
  wait_job_done "$j" 60
  wait_sacct_field "$j" NodeList "node[1-2]"
  wait_sacct_field "$j" ExitCode "0:0"
}
