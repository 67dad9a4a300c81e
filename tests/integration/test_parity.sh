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
