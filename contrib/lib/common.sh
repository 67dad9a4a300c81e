# Shared helpers for slurm-vm's scripts. Sourced, never run.
# Every path the scripts own is defined here so that one place says where things live.

: "${SVM_CACHE:=/var/cache/slurm-vm}"            # slow-to-make artefacts, keyed by version
: "${SVM_IMAGE_CACHE:=$SVM_CACHE/images}"        # the same for every platform (debian11): shared
: "${SVM_STATE:=/var/lib/slurm-vm-cluster}"      # the local cluster's spool and database
: "${SVM_LOG:=/var/log/slurm-vm}"                # every daemon's log: the one folder tests print from
: "${SVM_RUN:=/run/slurm-vm-cluster}"            # pid files of the local cluster
: "${SVM_BUILD:=$SVM_REPO/build}"                # cmake build tree
: "${SVM_TEST_USER:=svmuser}"                    # the non-root user tests submit jobs as
: "${SVM_OTHER_USER:=svmother}"                  # a second user (access rules, isolation)
export SVM_CACHE SVM_IMAGE_CACHE SVM_STATE SVM_LOG SVM_RUN SVM_BUILD SVM_TEST_USER SVM_OTHER_USER
export DEBIAN_FRONTEND=noninteractive

svm_t0=${svm_t0:-$(date +%s.%N)}
svm_phase_start=$svm_t0
svm_phase_name=""
svm_phases=()

# phase NAME: close the previous phase (printing its time) and open a new one.
phase() {
  local now
  now=$(date +%s.%N)
  if [ -n "$svm_phase_name" ]; then
    local d
    d=$(awk -v a="$svm_phase_start" -v b="$now" 'BEGIN{printf "%.1f", b-a}')
    svm_phases+=("$(printf '%-28s %7ss' "$svm_phase_name" "$d")")
    printf '    (%s: %ss)\n' "$svm_phase_name" "$d"
  fi
  svm_phase_name=$1
  svm_phase_start=$now
  [ -n "$1" ] && printf '\n==> %s\n' "$1"
  return 0
}

# phase_summary: close the open phase and print every phase's time.
phase_summary() {
  phase ""
  printf '\nSet-up time per phase:\n'
  local p
  for p in "${svm_phases[@]}"; do printf '  %s\n' "$p"; done
  printf '  %-28s %7ss\n' total "$(awk -v a="$svm_t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')"
}

die() { printf 'slurm-vm: %s\n' "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "$0 must run as root (it installs packages and starts daemons)"; }

# pids_in_root FOLDER PGREP_ARGS...: the processes pgrep finds whose root folder is FOLDER
# (compared as device and inode: d13_run pivots into the debian13 root, where /proc/PID/root
# reads "/").
pids_in_root() {
  local root p
  root=$(stat -L -c %d:%i "$1" 2>/dev/null) || return 0
  shift
  for p in $(pgrep "$@" 2>/dev/null); do
    [ "$(stat -L -c %d:%i "/proc/$p/root" 2>/dev/null)" = "$root" ] && echo "$p"
  done
  return 0
}
# pgrep and pkill that keep to the processes whose root folder is this one's. The debian13
# platform's cluster runs on the same machine inside its root (contrib/lib/platform.sh, d13_run:
# a mount namespace per command, pivoted into the root), and one cluster's stop by process name
# must not reach the other's daemons.
pgrep_here() {
  local found
  found=$(pids_in_root / "$@")
  [ -n "$found" ] && echo "$found"
}
# pkill_here [-SIGNAL] PGREP_ARGS...
pkill_here() {
  local signal=-TERM found
  case "${1:-}" in -[0-9]* | -[A-Z]*) signal=$1; shift ;; esac
  found=$(pids_in_root / "$@")
  # shellcheck disable=SC2086 # one word per pid
  [ -n "$found" ] && kill "$signal" $found
}
# none_here PATTERN: no process of that name here (for wait_for).
none_here() { ! pgrep_here -x "$1" >/dev/null; }

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds or time runs out.
wait_for() {
  local t=$1 i
  shift
  for ((i = 0; i < t * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop_pidfile FILE [SECONDS]: TERM the process, wait, then KILL; remove the file.
stop_pidfile() {
  local f=$1 t=${2:-15} p i
  [ -f "$f" ] || return 0
  p=$(cat "$f" 2>/dev/null)
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
    kill "$p" 2>/dev/null
    for ((i = 0; i < t * 10; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  fi
  rm -f "$f"
}
