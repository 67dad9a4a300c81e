#!/bin/bash
# The soak with faults of issue 20, against the local test cluster, as root:
#
#   bench/soak.sh [--jobs N] [--seed S] [--quick] [--concurrency K] [--faults LIST]
#   bench/soak.sh --dry-run [--quick] [--seed S]     the plan for a seed (no cluster, no root)
#   bench/soak.sh --self-test                       the pure pieces (no cluster, no root)
#   bench/soak.sh --cleanup-only                    undo what a killed run left
#
# N VM jobs (200; --quick 30) as the test user over every node, while faults are injected on a
# schedule that follows from the seed; then a table of jobs, faults and checks (leaks, drained
# nodes, accounting). Exit status 0 only if every check passed. Not run by the tests: it
# restarts daemons and takes about 10 (--quick) to 40 minutes. See bench/README.md, "Soak".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
soak_py=$here/soak.py

for arg in "$@"; do
  case "$arg" in
    --dry-run | --self-test | -h | --help) exec python3 -B "$soak_py" "$@" ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "soak: run as root (it kills QEMUs, restarts daemons, mounts over the jobs folder)" >&2; exit 2; }
for arg in "$@"; do
  [ "$arg" = --cleanup-only ] && exec python3 -B "$soak_py" --cleanup-only
done

# The cluster must be up: slurmctld, the slurmd, libvirtd, accounting.
not_up() {
  echo "soak: the local cluster is not running: $*" >&2
  echo "soak: start it with contrib/quickstart.sh (or contrib/cluster.sh start, once built), then run bench/soak.sh again" >&2
  exit 2
}
scontrol ping 2>/dev/null | grep -q UP || not_up "slurmctld does not answer (scontrol ping)"
nodes=$(sinfo -h -N -o %N 2>/dev/null | sort -u | wc -l)
[ "$nodes" -ge 1 ] || not_up "no node registered (sinfo)"
virsh -q -c qemu:///system version >/dev/null 2>&1 || not_up "libvirtd does not answer (virsh -c qemu:///system version)"
sacctmgr -n -P list cluster >/dev/null 2>&1 || not_up "slurmdbd does not answer (sacctmgr list cluster)"

# Whatever way this ends (an error, ^C, a kill), what the soak changed is undone: a stopped
# QEMU resumed, the small file system unmounted, a daemon it stopped started, its jobs cancelled.
# soak.py does the same itself; this covers a soak.py that died without its finally.
cleanup() { python3 -B "$soak_py" --cleanup-only || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
python3 -B "$soak_py" "$@"
