# Helpers for integration tests: they run against the real cluster that contrib/cluster.sh
# started, submit as the non-root test user, and assert what that user sees.
# Sourced by run.sh; each test file defines functions named test_*.

SVM_TEST_USER=${SVM_TEST_USER:-svmuser}
SVM_OTHER_USER=${SVM_OTHER_USER:-svmother}
SVM_LOG=${SVM_LOG:-/var/log/slurm-vm}
# How much slower than this machine's own TCG a guest boots here: the debian13-vm platform's
# guests are nested in a User-Mode Linux system VM. The waits for a job's state scale by it.
SVM_TIME_FACTOR=${SVM_TIME_FACTOR:-1}
VIRSH="virsh -q -c qemu:///system"

# The current test's private folder, in the test user's home (a shared path in the VMs).
TEST_DIR=""

fail() {
  printf '    FAIL: %s\n' "$*" >&2
  return 1
}

# skip REASON: ends the test as skipped (run.sh counts it apart), for a test that does not apply
# to this host (a cgroup v1 test on a cgroup v2 host, say).
skip() {
  printf '    SKIP: %s\n' "$*" >&2
  exit 77
}

# as_user CMD...: run a shell command line as the test user in TEST_DIR.
# runuser keeps the caller's environment: give the user's own identity variables, as a login would.
as_user() {
  runuser -u "$SVM_TEST_USER" -- env HOME="/home/$SVM_TEST_USER" USER="$SVM_TEST_USER" \
    LOGNAME="$SVM_TEST_USER" bash -c "cd '$TEST_DIR' && $*"
}
as_other() {
  runuser -u "$SVM_OTHER_USER" -- env HOME="/home/$SVM_OTHER_USER" USER="$SVM_OTHER_USER" \
    LOGNAME="$SVM_OTHER_USER" bash -c "cd /tmp && $*"
}

# job_state JOBID: the job's state from slurmctld, or from accounting once it is gone.
job_state() {
  local s
  s=$(scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  [ -n "$s" ] || s=$(sacct -n -X -P -j "$1" -o State 2>/dev/null | head -1 | cut -d' ' -f1)
  echo "$s"
}

# wait_job_done JOBID [SECONDS]: wait until the job is in a final state.
wait_job_done() {
  local j=$1 t=$((${2:-120} * SVM_TIME_FACTOR)) i s
  for ((i = 0; i < t * 2; i++)); do
    s=$(job_state "$j")
    case "$s" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) return 0 ;;
    esac
    sleep 0.5
  done
  fail "job $j did not finish within ${t}s (state: $s)"
}

# wait_job_state JOBID STATE [SECONDS]
wait_job_state() {
  local j=$1 want=$2 t=$((${3:-60} * SVM_TIME_FACTOR)) i
  for ((i = 0; i < t * 2; i++)); do
    [ "$(job_state "$j")" = "$want" ] && return 0
    sleep 0.5
  done
  fail "job $j did not reach $want within ${t}s (state: $(job_state "$j"))"
}

# sacct_field JOBID FIELD: one field of the job's allocation line, waiting for accounting.
sacct_field() {
  local j=$1 f=$2 i v
  for ((i = 0; i < 40; i++)); do
    v=$(sacct -n -X -P -j "$j" -o "$f" 2>/dev/null | head -1)
    [ -n "$v" ] && { echo "$v"; return 0; }
    sleep 0.5
  done
  echo ""
}

assert_eq() {
  [ "$1" = "$2" ] || fail "${3:-value}: expected '$2', got '$1'"
}

assert_contains() {
  printf '%s' "$1" | grep -q -- "$2" || fail "${3:-output} does not contain '$2': $(printf '%s' "$1" | head -c 600)"
}

assert_not_contains() {
  ! printf '%s' "$1" | grep -q -- "$2" || fail "${3:-output} contains '$2': $(printf '%s' "$1" | head -c 600)"
}

# unusable_nodes: "NODE STATE" of each node that cannot take jobs (drained, down, inval...).
unusable_nodes() { sinfo -h -N -o '%N %T' | grep -Ev ' (idle|mixed|allocated|completing)$' || true; }

# assert_nodes_up: no node of the cluster is drained or down (a user's mistake must not do that).
assert_nodes_up() {
  local bad
  bad=$(unusable_nodes)
  [ -z "$bad" ] || fail "nodes not usable: $bad ($(sinfo -h -N -o '%N %T %E'))"
}

# no_leftovers: no domain, overlay, channel folder of slurm-vm remains once the epilogs ran
# (srun returns when its step ends; the job's epilog runs after that).
assert_no_leftovers() {
  local doms left i
  for ((i = 0; i < 120; i++)); do
    [ -z "$($VIRSH list --name 2>/dev/null | grep '^svm-')" ] &&
      [ -z "$(find /run/slurm-vm /var/lib/slurm-vm/jobs -mindepth 1 -maxdepth 1 2>/dev/null)" ] &&
      ! pgrep -x virtiofsd >/dev/null && [ -z "$(vm_cgroups)" ] && break
    sleep 0.5
  done
  doms=$($VIRSH list --name 2>/dev/null | grep '^svm-' || true)
  [ -z "$doms" ] || fail "domains left running: $doms"
  left=$(find /run/slurm-vm /var/lib/slurm-vm/jobs -mindepth 1 -maxdepth 1 2>/dev/null || true)
  [ -z "$left" ] || fail "files left behind: $left"
  left=$(pgrep -a -x virtiofsd || true)
  [ -z "$left" ] || fail "virtiofsd processes left: $left"
  left=$(vm_cgroups)
  [ -z "$left" ] || fail "VM cgroup folders left behind: $left"
}

# The node's cgroup hierarchy, as slurm-vm sees it (vm/job_cgroup.h): 2 where /sys/fs/cgroup is
# the unified hierarchy, else 1 (a hierarchy per controller; a controller-less cgroup2 at
# /sys/fs/cgroup/unified beside them, "hybrid", is v1 for Slurm).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then CGROUP_VERSION=2; else CGROUP_VERSION=1; fi
# Whether the cluster constrains cores, as contrib/cluster.sh decided when it wrote cgroup.conf
# (only where the kernel has the cpuset controller: the debian13-vm platform's User-Mode Linux
# has none).
CPUSET=no
grep -qix 'ConstrainCores=yes' /etc/slurm/cgroup.conf 2>/dev/null && CPUSET=yes

# stepd_scope NODE: Slurm's cgroup/v2 folder of NODE's steps (Debian's slurmd is a
# multiple-slurmd build: system.slice/<node>_slurmstepd.scope), or "".
stepd_scope() {
  local s
  for s in /sys/fs/cgroup/system.slice/"$1"_slurmstepd.scope /sys/fs/cgroup/system.slice/slurmstepd.scope; do
    [ -d "$s" ] && { echo "$s"; return 0; }
  done
}

# vm_cgroups: the VMs' own cgroup folders (slurm_vm, below a job's extern step or, on v2, the
# boot cgroup below the job) on every node.
vm_cgroups() {
  if [ "$CGROUP_VERSION" = 2 ]; then
    find /sys/fs/cgroup/system.slice/*slurmstepd.scope -type d -name slurm_vm 2>/dev/null || true
  else
    find /sys/fs/cgroup/*/slurm_node* -type d -name slurm_vm 2>/dev/null || true
  fi
}

# job_cgroup CONTROLLER JOBID NODE: the job's cgroup folder on NODE, or "". v1: in CONTROLLER's
# hierarchy, /sys/fs/cgroup/<controller>/slurm_<node>/uid_<uid>/job_<id>; v2 (one hierarchy:
# CONTROLLER does not matter): <scope>/job_<id>.
job_cgroup() {
  if [ "$CGROUP_VERSION" = 2 ]; then
    local s
    s=$(stepd_scope "$3")
    [ -n "$s" ] && [ -d "$s/job_$2" ] && echo "$s/job_$2"
    return 0
  fi
  find "/sys/fs/cgroup/$1/slurm_$3" -mindepth 2 -maxdepth 2 -type d -name "job_$2" 2>/dev/null | head -1
}

# assert_no_job_cgroups JOBID NODE: Slurm's and the epilog's removal left no folder of the job.
assert_no_job_cgroups() {
  local c i left
  for ((i = 0; i < 20; i++)); do
    left=""
    for c in freezer cpuset cpuacct memory; do
      left+=$(job_cgroup "$c" "$1" "$2")
    done
    [ -z "$left" ] && return 0
    sleep 0.5
  done
  fail "cgroup folders of job $1 left on $2: $left"
}

# vm_cgroup JOBID NODE: the folder the job's VM is in once placed: v1 its freezer folder, v2 its
# only one (below the extern step's task folder).
vm_cgroup() {
  local j
  j=$(job_cgroup freezer "$1" "$2")
  if [ "$CGROUP_VERSION" = 2 ]; then
    find "$j/step_extern/user" -mindepth 2 -maxdepth 2 -type d -name slurm_vm 2>/dev/null | head -1
  else
    echo "$j/step_extern/slurm_vm"
  fi
}

# is_frozen FOLDER: the cgroup is frozen (v1: freezer.state FROZEN; v2: cgroup.events frozen 1).
is_frozen() {
  if [ "$CGROUP_VERSION" = 2 ]; then
    grep -qx 'frozen 1' "$1/cgroup.events" 2>/dev/null
  else
    [ "$(cat "$1/freezer.state" 2>/dev/null)" = FROZEN ]
  fi
}

# qemu_pid JOBID NODE: the pid of the job's QEMU on NODE (libvirt's pid file).
qemu_pid() {
  cat "/run/libvirt/qemu/svm-$1-$2.pid" 2>/dev/null
}

# cpu_ticks PID: the CPU time (user + system, clock ticks) of every thread of the process so far.
cpu_ticks() {
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# slurm_seconds TIME: sacct's and sstat's [D-][HH:]MM:SS[.mmm] in whole seconds.
slurm_seconds() {
  awk -v t="$1" 'BEGIN { d = 0; if (index(t, "-")) { split(t, a, "-"); d = a[1]; t = a[2] }
    n = split(t, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%d\n", d * 86400 + s }'
}

# slurm_mib SIZE: sacct's and sstat's 1234K, 56M, 1.5G (or bytes) in whole MiB.
slurm_mib() {
  awk -v v="$1" 'BEGIN { u = substr(v, length(v)); n = v + 0
    if (u == "K") n /= 1024; else if (u == "G") n *= 1024; else if (u == "T") n *= 1048576; else if (u != "M") n /= 1048576
    printf "%d\n", n }'
}

# wait_for_vm_placed JOBID NODE: prints the extern step's line saying where the job's VM went.
wait_for_vm_placed() {
  local i line
  for ((i = 0; i < 240 * SVM_TIME_FACTOR; i++)); do
    line=$(grep -h "slurm-vm: job $1 node $2 image [^ ]*: VM \(placed\|not placed\) in the job's cgroups" "$SVM_LOG/slurmd-$2.log")
    [ -n "$line" ] && { echo "$line"; return 0; }
    sleep 0.5
  done
  fail "no line about placing job $1's VM in $SVM_LOG/slurmd-$2.log"
}

# wait_for_vm_stopped JOBID: prints the epilog's "VM stopped" line for the job, once it is logged.
wait_for_vm_stopped() {
  local i line
  for ((i = 0; i < 120 * SVM_TIME_FACTOR; i++)); do
    line=$(grep -h "slurm-vm: job $1 node [^ ]* image [^ ]*: VM stopped" "$SVM_LOG"/slurmd-node*.log || true)
    [ -n "$line" ] && { echo "$line"; return 0; }
    sleep 0.5
  done
  fail "no 'VM stopped' line for job $1 in the slurmd logs"
}

# wait_sacct_field JOBID FIELD VALUE: accounting gets the job's final record a moment after
# the job ends; wait for it to say VALUE.
wait_sacct_field() {
  local i v
  for ((i = 0; i < 60; i++)); do
    v=$(sacct -n -X -P -j "$1" -o "$2" 2>/dev/null | head -1)
    [ "$v" = "$3" ] && return 0
    sleep 0.5
  done
  fail "sacct $2 of job $1: expected '$3', got '$v'"
}
