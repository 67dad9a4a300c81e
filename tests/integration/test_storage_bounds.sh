# Root's stores are bounded and a full one fails a job, never the node (issue 20, finding 5):
# nothing of a user's is on /run, the warm-start snapshots stay within warm_cache, and a file
# system without room fails the job that meets it with one line while the node stays up.

SVM_STATE=/var/lib/slurm-vm

test_nothing_of_the_users_lands_in_the_channel_folder_on_run() {
  local j bad out i dir
  j=$(as_user "sbatch --parsable -w node1 --vm-image=tiny -o out-%j.txt --wrap 'echo up; sleep 30'")
  for ((i = 0; i < 240; i++)); do
    grep -q up "$TEST_DIR/out-$j.txt" 2>/dev/null && break
    sleep 0.5
  done
  dir=/run/slurm-vm/svm-$j-node1
  assert_eq "$(stat -c '%U %a' "$dir")" "root 711" "channel folder while the job runs"
  if as_user "touch $dir/mine" 2>/dev/null; then
    scancel "$j"
    fail "the user could create a file in the channel folder $dir"
  fi
  # The job's own srun still reaches the VM through its sockets.
  out=$(as_user "srun --jobid=$j --overlap -n1 hostname" 2>&1)
  assert_contains "$out" "^node1-vm$j\$" "a step of the running job"
  scancel "$j"
  wait_job_done "$j" 60
  # Output aimed at the channel folder does not get there: Slurm cannot open it as the user.
  bad=$(as_user "sbatch --parsable -w node1 --vm-image=tiny -o /run/slurm-vm/svm-%j-node1/f --wrap 'echo ran; sleep 5'")
  for ((i = 0; i < 60; i++)); do
    [ -e "/run/slurm-vm/svm-$bad-node1/f" ] && break
    case "$(job_state "$bad")" in COMPLETED | FAILED | CANCELLED) break ;; esac
    sleep 0.5
  done
  [ ! -e "/run/slurm-vm/svm-$bad-node1/f" ] || {
    scancel "$bad"
    fail "job $bad wrote its output into its channel folder on /run"
  }
  wait_job_done "$bad" 60
  assert_eq "$(find /run/slurm-vm -user "$SVM_TEST_USER" ! -type s ! -name 'exec.*.lock' 2>/dev/null)" "" "the user's files on /run"
  assert_nodes_up
  assert_no_leftovers
}

test_a_full_state_file_system_fails_the_job_with_one_line_and_not_the_node() {
  local j out i
  mkdir -p "$SVM_STATE/jobs"
  # A file system without a free inode over the jobs' folder (as one a user filled would be).
  mount -t tmpfs -o size=4m,nr_inodes=32,mode=0755 svm-full "$SVM_STATE/jobs"
  trap 'umount "$SVM_STATE/jobs" 2>/dev/null; scancel "$j" 2>/dev/null; scontrol update NodeName=node3 State=RESUME 2>/dev/null' EXIT
  for ((i = 0; i < 64; i++)); do
    touch "$SVM_STATE/jobs/fill.$i" 2>/dev/null || break
  done
  j=$(as_user "sbatch --parsable -w node3 --vm-image=tiny -o out-%j.txt --wrap 'echo ran'")
  wait_job_done "$j" 120 || true
  out=$(cat "$TEST_DIR/out-$j.txt" 2>/dev/null)
  scontrol show node node3 | grep -q 'State=[A-Z+]*DRAIN' && fail "node3 was drained: $(scontrol show node node3 | grep -o 'Reason=.*')"
  assert_eq "$(job_state "$j")" "FAILED" "job state"
  assert_contains "$out" "^slurm-vm: image 'tiny' on node3 (job $j): no room for a VM: $SVM_STATE/jobs has " "job output"
  assert_not_contains "$out" "ran" "job output"
  umount "$SVM_STATE/jobs"
  trap - EXIT
  assert_nodes_up
  assert_no_leftovers
}

test_warm_snapshots_stay_within_warm_cache_least_recently_used_first() {
  local cap old j log before
  cap=$(sed -n 's/.*warm_cache=\([0-9]*\).*/\1/p' /etc/slurm/plugstack.conf.d/slurm-vm.conf 2>/dev/null)
  cap=${cap:-4096}
  # An old snapshot of another image, bigger than the whole cache.
  old=$SVM_STATE/warm/svm-test-old/0000000000000000/0000000000000000/slot-0
  mkdir -p "$old"
  printf '{"key": "old", "uuid": "00000000-0000-4000-8000-0000000000aa", "mac": ""}\n' >"$old/meta.json"
  fallocate -l "$((cap + 64))M" "$old/state"
  touch -d '2 days ago' "$old/meta.json"
  : >"$old.lock"
  trap 'rm -rf "$SVM_STATE/warm/svm-test-old"' EXIT
  # No snapshot of tiny yet: this job's prolog makes one.
  rm -rf "$SVM_STATE/warm/tiny"
  log=$SVM_LOG/slurmd-node1.log
  before=$(stat -c %s "$log")
  j=$(as_user "sbatch --parsable -w node1 --vm-image=tiny -o out-%j.txt --wrap 'echo ran'")
  wait_job_done "$j" 120
  assert_eq "$(job_state "$j")" "COMPLETED" "job state"
  assert_contains "$(tail -c +"$((before + 1))" "$log")" "job $j node node1 image tiny: made a warm-start snapshot" "slurmd-node1.log"
  [ ! -e "$old" ] || fail "the least recently used snapshot ($old, $((cap + 64)) MiB) is still there beyond warm_cache=$cap"
  # At least the old one; more where other images' snapshots (a soak's, say) fill the cache too.
  assert_contains "$(tail -c +"$((before + 1))" "$log")" "job $j node node1 image tiny: removed [1-9][0-9]* least recently used warm-start snapshot(s) to stay within warm_cache=$cap MiB" "slurmd-node1.log"
  [ "$(du -sm "$SVM_STATE/warm" | cut -f1)" -le "$cap" ] || fail "the snapshots take $(du -sm "$SVM_STATE/warm" | cut -f1) MiB, more than warm_cache=$cap"
  assert_no_leftovers
}
