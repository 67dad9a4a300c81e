# virtiofsd runs in a user namespace that root owns, as the job's user (issue 20): the job's
# user cannot enter it (before: `nsenter -U -t <pid>` gave them a shell as host nobody, which
# could signal every other job's virtiofsd), other users cannot signal it, and the file naming
# its pid is root's alone.

test_the_jobs_user_cannot_enter_its_virtiofsd_nor_another_user_signal_it() {
  local j i state pid out
  j=$(as_user "sbatch --parsable -w node3 --mem=1024 --vm-image=debian11-virtiofs -o out-%j.txt --wrap 'echo started; sleep 300'")
  for ((i = 0; i < 480; i++)); do
    grep -q started "$TEST_DIR/out-$j.txt" 2>/dev/null && break
    sleep 0.5
  done
  assert_contains "$(cat "$TEST_DIR/out-$j.txt" 2>/dev/null)" "started" "job output" || { scancel "$j"; return 1; }
  state=/var/lib/slurm-vm/jobs/svm-$j-node3/vm.json
  pid=$(grep -o '"virtiofsd": *\[ *{ *"pid": *[0-9]*' "$state" | grep -o '[0-9]*$')
  [ -n "$pid" ] && kill -0 "$pid" || { scancel "$j"; fail "no virtiofsd pid in $state: $(cat "$state")"; }
  assert_eq "$(stat -c %a "$state")" "600" "mode of $state" || { scancel "$j"; return 1; }
  if out=$(as_user "nsenter -U -t $pid id -u" 2>&1); then
    scancel "$j"
    fail "the job's user entered virtiofsd's user namespace: id -u there is $out"
  fi
  if as_other "kill -0 $pid" 2>/dev/null; then
    scancel "$j"
    fail "another user may signal the job's virtiofsd"
  fi
  # What the guest writes over the share is the user's, as before.
  out=$(as_user "srun --jobid=$j -w node3 --overlap bash -c 'echo from-guest > vfs-owner.txt; id -un'" 2>&1)
  assert_contains "$out" "^$SVM_TEST_USER\$" "the user in the VM" || { scancel "$j"; return 1; }
  assert_eq "$(stat -c %U "$TEST_DIR/vfs-owner.txt")" "$SVM_TEST_USER" "owner on the host of a file the guest wrote"
  scancel "$j"
  wait_job_done "$j" 120
  assert_nodes_up
  assert_no_leftovers
}
