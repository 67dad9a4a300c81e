# Images as node features: node_features/slurm_vm advertises the images present on each node,
# job_submit/slurm_vm turns an image request into a constraint and refuses bad requests at submit.
#
# Needs, besides the cluster of contrib/cluster.sh with both plugins configured:
#   - catalog entries (contrib/etc/vm-images.json.in) whose files live in per-node folders,
#     which these tests create and remove: "only2", "moving", "nowhere" with
#     kernel @IMAGES@/%n/<name>/vmlinux and initrd @IMAGES@/%n/<name>/initrd.img;
#   - an entry "vip" on tiny's files with "access": {"groups": ["svmvip"]};
#   - group svmvip with the test user in it and the other user not;
#   - the admin feature "svmhost" on every node in slurm.conf (Features=svmhost).

SVM_CATALOG=${SVM_CATALOG:-/etc/slurm/vm-images.json}
SVM_IMAGES=${SVM_IMAGES:-/var/lib/slurm-vm/images}
SVM_FEATURES_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# need_setup: fail with what is missing, rather than with a puzzling assertion later.
need_setup() {
  local name
  for name in only2 moving nowhere vip; do
    grep -q "\"name\": *\"$name\"" "$SVM_CATALOG" ||
      fail "catalog $SVM_CATALOG has no test image '$name' (see the top of test_features.sh)"
  done
  id -nG "$SVM_TEST_USER" | tr ' ' '\n' | grep -qx svmvip ||
    fail "user $SVM_TEST_USER is not in group svmvip"
  ! id -nG "$SVM_OTHER_USER" | tr ' ' '\n' | grep -qx svmvip ||
    fail "user $SVM_OTHER_USER must not be in group svmvip"
  scontrol show config | grep -q 'NodeFeaturesPlugins *= *node_features/slurm_vm' ||
    fail "NodeFeaturesPlugins=node_features/slurm_vm is not configured"
  scontrol show config | grep -q 'JobSubmitPlugins *= *slurm_vm' ||
    fail "JobSubmitPlugins=slurm_vm is not configured"
  scontrol show node node1 | grep -q 'AvailableFeatures=.*svmhost' ||
    fail "node1 has no feature svmhost: slurm.conf's NodeName line needs Features=svmhost"
}

# node_features NODE: the node's available features, one per line.
node_features() {
  scontrol show node "$1" | sed -n 's/.*AvailableFeatures=\([^ ]*\).*/\1/p' | tr ',' '\n'
}

node_has_feature() { node_features "$1" | grep -qx "$2"; }

# place_image NODE NAME: the per-node folder of image NAME on NODE, with tiny's files.
place_image() {
  local dir=$SVM_IMAGES/$1/$2 f
  install -d -m 0755 "$SVM_IMAGES/$1" "$dir"
  for f in vmlinux initrd.img; do
    ln -f "$SVM_IMAGES/tiny/$f" "$dir/$f" 2>/dev/null || cp -f "$SVM_IMAGES/tiny/$f" "$dir/$f"
  done
}

remove_image() { rm -rf "${SVM_IMAGES:?}/$1/$2"; }

# reconfigure_until NODE FEATURE yes|no: reconfigure, then wait for the node's registration.
# Slurm 24.11's reconfigure restarts slurmctld (which gives back each node's last report until
# the node registers) and makes each slurmd exec itself anew. Also used by the tests' traps, so
# that the next test does not meet daemons in the middle of that.
reconfigure_until() {
  local node=$1 feature=$2 want=$3 i log=$SVM_LOG/slurmd-$1.log reports
  # Each registration of the node logs its images once (node_features/slurm_vm): one more line
  # than before the reconfigure is the registration it brought.
  reports=$(grep -c "slurm-vm: node $node carries images" "$log" || true)
  scontrol reconfigure
  for ((i = 0; i < 120; i++)); do
    if [ "$(grep -c "slurm-vm: node $node carries images" "$log" || true)" -le "$reports" ] ||
      ! node_has_feature "$node" vm_tiny; then
      :
    elif node_has_feature "$node" "$feature"; then
      [ "$want" = yes ] && return 0
    else
      [ "$want" = no ] && return 0
    fi
    sleep 0.5
  done
  fail "after scontrol reconfigure, $node $( [ "$want" = yes ] && echo lacks || echo still has) feature $feature (features: $(node_features "$node" | tr '\n' ','))"
}

# job_features JOBID: the job's constraint as slurmctld holds it.
job_features() { scontrol show job "$1" | sed -n 's/.*[^a-zA-Z]Features=\([^ ]*\).*/\1/p' | head -1; }

test_every_node_advertises_the_shared_images_and_keeps_admin_features() {
  need_setup
  local n
  for n in node1 node2 node3; do
    node_has_feature "$n" vm_tiny || fail "$n lacks vm_tiny: $(node_features "$n" | tr '\n' ',')"
    node_has_feature "$n" svmhost || fail "$n lost its slurm.conf feature svmhost"
    ! node_has_feature "$n" vm_nowhere || fail "$n advertises vm_nowhere, whose files are nowhere"
  done
  assert_contains "$(sinfo -h -N -o '%N %f')" "node2 .*vm_tiny" "sinfo -o '%N %f'"
  assert_contains "$(scontrol show config)" "^Catalog *= *$SVM_CATALOG" "scontrol show config"
}

test_image_only_on_node2_runs_only_on_node2() {
  need_setup
  trap 'remove_image node2 only2; reconfigure_until node2 vm_only2 no' EXIT
  place_image node2 only2
  reconfigure_until node2 vm_only2 yes
  ! node_has_feature node1 vm_only2 || fail "node1 advertises vm_only2"
  ! node_has_feature node3 vm_only2 || fail "node3 advertises vm_only2"

  # Three ways to ask: the option with an admin feature, the environment variable, and the
  # constraint alone (as slurmrestd would send it).
  local jobs=() j
  jobs+=("$(as_user "sbatch --parsable --vm-image=only2 -C svmhost -o out-%j.txt --wrap hostname")")
  jobs+=("$(as_user "SLURM_VM_IMAGE=only2 sbatch --parsable -o out-%j.txt --wrap hostname")")
  jobs+=("$(as_user "sbatch --parsable -C vm_only2 -o out-%j.txt --wrap hostname")")
  assert_eq "$(job_features "${jobs[0]}")" "svmhost&vm_only2" "constraint of --vm-image with -C"
  for j in "${jobs[@]}"; do
    wait_job_done "$j" 180
    assert_eq "$(sacct_field "$j" NodeList)" "node2" "node of job $j"
    assert_eq "$(sacct_field "$j" State)" "COMPLETED" "state of job $j"
    assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "^node2-vm$j\$" "hostname of job $j (in its VM)"
  done

  # Kept away from node2, the job has nowhere to go: refused at submit or left pending.
  if j=$(as_user "sbatch --parsable --vm-image=only2 -x node2 -o /dev/null --wrap true" 2>/dev/null); then
    sleep 3
    local state
    state=$(job_state "$j")
    scancel "$j"
    assert_eq "$state" "PENDING" "state of a job asking for only2 without node2"
  fi
  assert_nodes_up
}

test_image_on_no_node_is_refused_at_submit() {
  need_setup
  local out
  if out=$(as_user "sbatch --vm-image=nowhere --wrap true" 2>&1); then
    fail "sbatch --vm-image=nowhere was accepted: $out"
  fi
  assert_contains "$out" "slurm-vm: image 'nowhere' is in the catalog but on no node: no node has the feature vm_nowhere" "sbatch"
  if out=$(as_user "sbatch -C vm_nowhere --wrap true" 2>&1); then
    fail "sbatch -C vm_nowhere was accepted: $out"
  fi
  assert_contains "$out" "image 'nowhere' is in the catalog but on no node" "sbatch -C"
}

test_image_appears_and_disappears_with_reconfigure() {
  need_setup
  trap 'remove_image node3 moving; reconfigure_until node3 vm_moving no' EXIT
  local before
  before=$(node_features node3 | grep -v '^vm_' | sort | tr '\n' ',')
  ! node_has_feature node3 vm_moving || fail "node3 advertises vm_moving before the files exist"

  place_image node3 moving
  reconfigure_until node3 vm_moving yes
  ! node_has_feature node1 vm_moving || fail "node1 advertises vm_moving"
  assert_eq "$(node_features node3 | grep -v '^vm_' | sort | tr '\n' ',')" "$before" "node3's other features"
  assert_contains "$(sinfo -h -N -n node3 -o '%N %f')" "vm_moving" "sinfo"

  remove_image node3 moving
  reconfigure_until node3 vm_moving no
  assert_eq "$(node_features node3 | grep -v '^vm_' | sort | tr '\n' ',')" "$before" "node3's other features"
  node_has_feature node3 vm_tiny || fail "node3 lost vm_tiny"
}

test_image_removed_then_slurmd_restarted_leaves_the_node_usable() {
  need_setup
  trap 'remove_image node3 moving; reconfigure_until node3 vm_moving no' EXIT
  place_image node3 moving
  reconfigure_until node3 vm_moving yes
  # Slurm 24.11 sets a node INVAL when its registration reports fewer images than slurmctld
  # holds active for it; a plain slurmd restart (no reconfigure) after an image left is that.
  remove_image node3 moving
  local i
  "$SVM_FEATURES_REPO/contrib/cluster.sh" restart-slurmd node3
  for ((i = 0; i < 60; i++)); do
    node_has_feature node3 vm_moving || break
    sleep 0.5
  done
  ! node_has_feature node3 vm_moving || fail "node3 still offers vm_moving after its slurmd restarted"
  node_has_feature node3 vm_tiny || fail "node3 lost vm_tiny"
  assert_nodes_up
}

test_right_after_a_slurmctld_restart_vm_jobs_are_accepted_before_the_nodes_register() {
  need_setup
  local slurmds out
  # The slurmd are held stopped, so none registers before the submission: a new slurmctld knows
  # only slurm.conf's features until then, unless node_features/slurm_vm gives back the image
  # features each node last reported (found by the soak: an srun refused as "on no node").
  # One slurmd per node, none in the middle of a restart (24.11's slurmd execs itself anew at a
  # reconfigure, as slurmd-wlm on Debian).
  local i before=
  for ((i = 0; i < 40; i++)); do
    slurmds=$(pgrep -x 'slurmd(-wlm)?' | sort | tr '\n' ' ')
    [ "$slurmds" = "$before" ] && [ "$(wc -w <<<"$slurmds")" -eq 3 ] && break
    before=$slurmds
    sleep 0.5
  done
  [ "$(wc -w <<<"$slurmds")" -eq 3 ] || fail "not one slurmd per node: $slurmds"
  # shellcheck disable=SC2064 # the pids are known now
  trap "kill -CONT $slurmds 2>/dev/null" EXIT
  # shellcheck disable=SC2086 # one word per pid
  kill -STOP $slurmds
  "$SVM_FEATURES_REPO/contrib/cluster.sh" restart-slurmctld >/dev/null
  out=$(as_user "sbatch --parsable --hold --vm-image=tiny -o /dev/null --wrap true" 2>&1) ||
    fail "a VM job was refused right after slurmctld's restart: $out"
  assert_eq "$(job_features "$out")" "vm_tiny" "constraint"
  node_has_feature node2 vm_tiny || fail "node2 has no vm_tiny before it registered: $(node_features node2 | tr '\n' ',')"
  node_has_feature node2 svmhost || fail "node2 lost slurm.conf's feature svmhost"
  scancel "$out"
  # shellcheck disable=SC2086 # one word per pid
  kill -CONT $slurmds
  assert_contains "$(grep "slurm-vm: node node2: image features" "$SVM_LOG/slurmctld.log" | tail -1)" \
    "svmhost.*vm_tiny.*as it last reported them, until it registers" "slurmctld.log"
  # The nodes register again and take their own report over what was given back.
  for ((i = 0; i < 60; i++)); do
    [ -z "$(unusable_nodes)" ] && break
    sleep 0.5
  done
  assert_nodes_up
}

test_user_outside_the_allowed_group_is_refused_and_a_member_runs() {
  need_setup
  local out j
  # sbatch's SPANK side refuses first where it can read the catalog; slurmctld says the same.
  if out=$(as_other "sbatch --vm-image=vip --wrap true" 2>&1); then
    fail "sbatch --vm-image=vip was accepted for $SVM_OTHER_USER: $out"
  fi
  assert_contains "$out" "image 'vip' is not available to user '$SVM_OTHER_USER' (allowed groups: svmvip); images you may use: " "sbatch --vm-image"
  assert_not_contains "$out" "use: .*vip" "the images offered"
  # The constraint alone bypasses the SPANK option: only job_submit/slurm_vm is left to refuse.
  if out=$(as_other "sbatch -C vm_vip --wrap true" 2>&1); then
    fail "sbatch -C vm_vip was accepted for $SVM_OTHER_USER: $out"
  fi
  assert_contains "$out" "slurm-vm: image 'vip' is not available to user '$SVM_OTHER_USER' (allowed groups: svmvip)" "sbatch -C vm_vip"

  j=$(as_user "sbatch --parsable --vm-image=vip -o out-%j.txt --wrap hostname")
  wait_job_done "$j" 180
  assert_eq "$(sacct_field "$j" State)" "COMPLETED" "state of the member's job"
  assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "^node[0-9]-vm$j\$" "hostname in the VM"
}

test_constraint_is_combined_with_the_image() {
  need_setup
  local j
  j=$(as_user "sbatch --parsable --hold --vm-image=tiny -C 'svmhost|svmhost' -o /dev/null --wrap true")
  assert_eq "$(job_features "$j")" "(svmhost|svmhost)&vm_tiny" "constraint with an OR"
  scancel "$j"
  j=$(as_user "sbatch --parsable --hold --vm-image=tiny -C 'svmhost&vm_tiny' -o /dev/null --wrap true")
  assert_eq "$(job_features "$j")" "svmhost&vm_tiny" "constraint already holding the image"
  scancel "$j"
  local out
  if out=$(as_user "sbatch --vm-image=tiny -C vm_tinydisk --wrap true" 2>&1); then
    fail "two images were accepted: $out"
  fi
  assert_contains "$out" "--constraint asks for image feature vm_tinydisk but --vm-image=tiny (one VM image per job)" "sbatch"
}

test_scontrol_update_cannot_drop_the_image_feature() {
  need_setup
  local j out
  j=$(as_user "sbatch --parsable --hold --vm-image=tiny -o /dev/null --wrap true")
  # shellcheck disable=SC2064 # the job id is known now
  trap "scancel $j" EXIT
  assert_eq "$(job_features "$j")" "vm_tiny" "constraint at submit"

  as_user "scontrol update jobid=$j features=svmhost"
  assert_eq "$(job_features "$j")" "svmhost&vm_tiny" "after features=svmhost (by the user)"
  scontrol update jobid="$j" features=
  assert_eq "$(job_features "$j")" "vm_tiny" "after features= (by root)"
  if out=$(scontrol update jobid="$j" features=vm_tinydisk 2>&1); then
    fail "features=vm_tinydisk was accepted: $out"
  fi
  assert_eq "$(job_features "$j")" "vm_tiny" "after a refused features=vm_tinydisk"
}

test_broken_catalog_at_slurmctld_start_is_named_in_slurmctld_log() {
  need_setup
  local backup mark out j
  backup=$(mktemp "$SVM_CATALOG.test-backup.XXXXXX")
  cp -p "$SVM_CATALOG" "$backup"
  # shellcheck disable=SC2064 # the backup path is known now
  trap "cp -p '$backup' '$SVM_CATALOG' && rm -f '$backup'; '$SVM_FEATURES_REPO/contrib/cluster.sh' restart-slurm >/dev/null" EXIT
  cat >"$SVM_CATALOG" <<JSON
{"images": [
  {"name": "tiny", "kernel": "$SVM_IMAGES/tiny/vmlinux", "initrd": "$SVM_IMAGES/tiny/initrd.img"},
  {"name": "broken", "kernel": "$SVM_IMAGES/tiny/vmlinux", "acess": {"groups": ["svmvip"]}}
]}
JSON
  mark=$(wc -l <"$SVM_LOG/slurmctld.log")
  "$SVM_FEATURES_REPO/contrib/cluster.sh" restart-slurm >/dev/null
  assert_contains "$(tail -n +"$((mark + 1))" "$SVM_LOG/slurmctld.log")" \
    "error: slurm-vm: catalog $SVM_CATALOG: image 'broken' (entry 1): field 'acess': unknown field" \
    "slurmctld.log after the restart"

  # slurmctld runs on: VM jobs are refused with the reason, other jobs run.
  if out=$(as_user "sbatch -C vm_tiny --wrap true" 2>&1); then
    fail "a VM job was accepted with a broken catalog: $out"
  fi
  assert_contains "$out" "slurm-vm: VM jobs are refused until the admin fixes the image catalog: catalog $SVM_CATALOG: image 'broken' (entry 1)" "sbatch"
  j=$(as_user "sbatch --parsable -o /dev/null --wrap true")
  wait_job_done "$j" 60
  assert_eq "$(sacct_field "$j" State)" "COMPLETED" "a job without VM"
}
