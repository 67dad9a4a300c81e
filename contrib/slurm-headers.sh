#!/bin/bash
# Prepare Slurm's internal plugin headers (config.h, slurm_version.h and the source tree) for
# the installed Slurm, in $SVM_CACHE/slurm-src/<version>. Prints that folder on stdout.
# job_submit and node_features plugins include slurmctld/slurmd internals that no -dev package
# ships, and they must match the daemons' exact version, so the source is Debian's own source
# package of exactly the installed version. The 35 s configure runs once per version.
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"

ver=$(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null) || die "slurmctld is not installed"
dir=$SVM_CACHE/slurm-src/$ver
if [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi
need_root
rm -rf "$dir"
mkdir -p "$dir"
(
  cd "$dir"
  apt-get source -q --download-only "slurm-wlm=$ver" >source.log 2>&1 ||
    { cat source.log >&2; exit 1; }
  dpkg-source -x --skip-debianization slurm-wlm_*.dsc src >>source.log 2>&1 ||
    dpkg-source -x slurm-wlm_*.dsc src >>source.log 2>&1 || { cat source.log >&2; exit 1; }
  rm -f ./*.tar.* ./*.dsc
  mkdir -p build
  cd build
  # The flags that change struct layouts are Debian's (debian/rules); --no-create skips the
  # ~300 Makefiles we do not need (93 s -> 35 s).
  ../src/configure -q --no-create --prefix=/usr --sysconfdir=/etc/slurm \
    --libdir=/usr/lib/x86_64-linux-gnu --enable-multiple-slurmd --disable-debug --without-rpath \
    >configure.log 2>&1 || { tail -20 configure.log >&2; exit 1; }
  ./config.status config.h slurm/slurm_version.h >>configure.log 2>&1
) || die "could not prepare Slurm $ver headers in $dir"
upstream=${ver%%-*}
grep -q "SLURM_VERSION_STRING \"$upstream\"" "$dir/build/config.h" ||
  die "configured headers in $dir are not for Slurm $upstream"
touch "$dir/.complete"
echo "$dir"
