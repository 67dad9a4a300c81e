#!/bin/bash
# The other platforms slurm-vm is tested on, from a Debian 12 machine, as root:
#
#   contrib/platform.sh debian13 CMD...   run CMD inside the Debian 13 root (as root; use
#                                         `runuser -u USER --` for a user), e.g.
#                                         contrib/platform.sh debian13 sinfo
#   contrib/platform.sh debian13 build    make (or bring up to date) the root; prints its folder
#   contrib/platform.sh debian13 shell    an interactive shell inside it
#   contrib/platform.sh debian13 stop     stop its cluster (umount: and unmount the root)
#   contrib/platform.sh debian13-vm CMD...  run CMD inside the Debian 13 system VM (cgroup v2,
#                                         systemd), as root; shell, stop as above
#
# contrib/quickstart.sh --platform debian13 makes the root, sets up and starts the cluster in
# it; contrib/test.sh --platform debian13 runs the tests there. See contrib/lib/platform.sh.
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"
. "$SVM_REPO/contrib/lib/platform.sh"

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 2 ] || usage
platform=$1
shift
need_root
case "$platform" in
  debian13)
    case "$1" in
      build) d13_build; d13_root ;;
      stop) d13_stop ;;
      umount) d13_stop; d13_umount ;;
      shell) d13_build; d13_mount; d13_run bash -i ;;
      *)
        [ -f "$(d13_dir)/.complete" ] || die "there is no Debian 13 root yet: run contrib/quickstart.sh --platform debian13"
        d13_mount
        d13_run "$@"
        ;;
    esac
    ;;
  debian13-vm)
    case "$1" in
      stop) d13vm_stop ;;
      shell) d13vm_running || die "the Debian 13 system VM is not running: contrib/quickstart.sh --platform debian13-vm"; d13vm_ssh -t ;;
      *)
        d13vm_running || die "the Debian 13 system VM is not running: contrib/quickstart.sh --platform debian13-vm"
        d13vm_run "$@"
        ;;
    esac
    ;;
  *) die "unknown platform '$platform' (known: debian13, debian13-vm)" ;;
esac
