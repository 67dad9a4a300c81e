# An image's `accounts` rule holds for the account a job runs under, not only the one it was
# submitted with (issue 20, finding 8): `scontrol update job account=...` is checked again
# (job_submit's job_modify), and the prolog checks the rules as they are when the job starts;
# a refusal there fails the job with one line and leaves the node up.
#
# The tests restrict the catalog's "vip" image (group svmvip, which the test user is in) to
# accounts for their duration, and give the test user a second account, svmtest2.

SVM_CATALOG=${SVM_CATALOG:-/etc/slurm/vm-images.json}
SECOND_ACCOUNT=svmtest2

# vip_for_accounts JSON_LIST: the catalog's "vip" entry gets "accounts": JSON_LIST until the test
# ends (the catalog is read again by slurmctld for every VM job, and by every prolog).
vip_for_accounts() {
  [ -f "$SVM_CATALOG.before-test" ] || {
    cp -p "$SVM_CATALOG" "$SVM_CATALOG.before-test"
    trap 'mv -f "$SVM_CATALOG.before-test" "$SVM_CATALOG"' EXIT
  }
  cp -p "$SVM_CATALOG.before-test" "$SVM_CATALOG.new"
  python3 - "$SVM_CATALOG.before-test" "$SVM_CATALOG.new" "$1" <<'PY'
import json, sys
catalog = json.load(open(sys.argv[1]))
for image in catalog["images"]:
    if image["name"] == "vip":
        image.setdefault("access", {})["accounts"] = json.loads(sys.argv[3])
with open(sys.argv[2], "w") as out:
    json.dump(catalog, out, indent=2)
PY
  mv -f "$SVM_CATALOG.new" "$SVM_CATALOG"
}

# The test user may run under svmtest (their default) and svmtest2, and slurmctld knows it: a
# bare held job moves from one to the other.
need_second_account() {
  local j i
  sacctmgr -i -Q add account "$SECOND_ACCOUNT" Description=slurm-vm-tests Organization=slurm-vm >/dev/null 2>&1 || true
  sacctmgr -i -Q add user "$SVM_TEST_USER" Account="$SECOND_ACCOUNT" >/dev/null 2>&1 || true
  j=$(as_user "sbatch --parsable -H -A svmtest -o /dev/null --wrap true")
  for ((i = 0; i < 40; i++)); do
    as_user "scontrol update jobid=$j account=$SECOND_ACCOUNT" >/dev/null 2>&1 && break
    sleep 0.5
  done
  scancel "$j"
  [ "$i" -lt 40 ] || fail "slurmctld does not let $SVM_TEST_USER move a job to account $SECOND_ACCOUNT"
}

job_account() {
  scontrol show job "$1" | sed -n 's/.*Account=\([^ ]*\).*/\1/p'
}

test_a_jobs_account_cannot_be_changed_to_one_its_image_refuses() {
  local j out
  need_second_account
  vip_for_accounts '["svmtest"]'
  j=$(as_user "sbatch --parsable -H -A svmtest -w node1 --vm-image=vip -o out-%j.txt --wrap 'echo ran'")
  if out=$(as_user "scontrol update jobid=$j account=$SECOND_ACCOUNT" 2>&1); then
    scancel "$j"
    fail "the account of VM job $j changed to $SECOND_ACCOUNT, which image vip refuses: $out"
  fi
  assert_eq "$(job_account "$j")" "svmtest" "the job's account after the refused update"
  scancel "$j"
  wait_job_done "$j" 60
  assert_nodes_up
}

test_the_prolog_refuses_an_image_the_jobs_account_may_no_longer_use() {
  local j out
  vip_for_accounts '["svmtest"]'
  j=$(as_user "sbatch --parsable -H -A svmtest -w node1 --vm-image=vip -o out-%j.txt --wrap 'echo ran'")
  # The rule changes while the job waits: it starts under an account the image now refuses.
  vip_for_accounts "[\"$SECOND_ACCOUNT\"]"
  scontrol release "$j"
  wait_job_done "$j" 120
  out=$(cat "$TEST_DIR/out-$j.txt" 2>/dev/null)
  assert_eq "$(job_state "$j")" "FAILED" "job state"
  assert_contains "$out" "slurm-vm: image 'vip' on node1 (job $j): not started: account 'svmtest': image 'vip' is not available to user '$SVM_TEST_USER'" "job output"
  # One line of ours (slurmstepd adds its own two about the failed task_init).
  assert_eq "$(printf '%s\n' "$out" | grep -c '^slurm-vm:')" "1" "slurm-vm's lines in the job output"
  assert_not_contains "$out" "ran" "job output"
  assert_nodes_up
  assert_no_leftovers
}
