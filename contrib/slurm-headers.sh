#!/bin/bash
# Prepare Slurm's internal plugin headers (config.h, slurm_version.h and the source tree) for
# the installed Slurm, in $SVM_CACHE/slurm-src/<version>. Prints that folder on stdout.
# job_submit and node_features plugins include slurmctld/slurmd internals that no -dev package
# ships, and they must match the daemons' exact version, so the source is Debian's own source
# package of exactly the installed version. The 35 s configure runs once per version.
#
# Where the mirror has the source package's index but not its .dsc or Debian part (trixie's
# mirror answered 404 for slurm-wlm 24.11's), the upstream tarball of exactly the installed
# version (the .orig.tar.gz, which the same index lists with its SHA-256) is used instead,
# configured with the same flags: without Debian's patches, which touch packaging, paths and
# documentation, not the structures the plugins read.
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"

ver=$(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null) || die "slurmctld is not installed"
upstream=${ver#*:}
upstream=${upstream%-*}
dir=$SVM_CACHE/slurm-src/$ver
if [ -f "$dir/.complete" ]; then
  echo "$dir"
  exit 0
fi
need_root

# source_field FIELD: from the (signed) source index's stanza of exactly $ver, the SHA-256 of
# the upstream tarball (sha256) or the pool folder it is in (directory).
source_field() {
  apt-cache showsrc --only-source slurm-wlm 2>/dev/null | awk -v RS= -v FS='\n' \
    -v want="$1" -v ver="$ver" -v f="slurm-wlm_$upstream.orig.tar.gz" '
    {
      if (index("\n" $0 "\n", "\nVersion: " ver "\n") == 0) next
      sums = 0
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^Directory: / && want == "directory") { sub(/^Directory: /, "", $i); print $i; exit }
        if ($i ~ /^Checksums-Sha256:/) { sums = 1; continue }
        if ($i !~ /^ /) sums = 0
        if (sums && want == "sha256") { split($i, w, " "); if (w[3] == f) { print w[1]; exit } }
      }
    }'
}

# unpack_orig: the upstream tarball into src/, checked against the source index. apt-get source
# leaves it behind, checked, when only the .dsc or the Debian part was missing; else it is
# fetched from the pool that index names.
unpack_orig() {
  local orig=slurm-wlm_$upstream.orig.tar.gz sum pool
  sum=$(source_field sha256)
  [ -n "$sum" ] || { echo "the source index has no checksum for $orig (apt-get update?)" >&2; return 1; }
  if [ ! -f "$orig" ]; then
    pool=$(source_field directory)
    curl -fsSL -o "$orig" "http://deb.debian.org/debian/$pool/$orig" ||
      { echo "cannot download $orig from the Debian pool" >&2; return 1; }
  fi
  echo "$sum  $orig" | sha256sum -c --quiet - ||
    { echo "$orig does not match the source index's SHA-256" >&2; return 1; }
  mkdir src
  tar -xzf "$orig" -C src --strip-components=1
  echo "using the upstream tarball $orig: the source package is not on the mirror" >>source.log
}

rm -rf "$dir"
mkdir -p "$dir"
(
  cd "$dir"
  if apt-get source -q --download-only "slurm-wlm=$ver" >source.log 2>&1; then
    dpkg-source -x --skip-debianization slurm-wlm_*.dsc src >>source.log 2>&1 ||
      dpkg-source -x slurm-wlm_*.dsc src >>source.log 2>&1 || { cat source.log >&2; exit 1; }
  else
    unpack_orig >>source.log 2>&1 || { cat source.log >&2; exit 1; }
  fi
  rm -f ./*.tar.* ./*.dsc
  mkdir -p build
  cd build
  # The flags that change struct layouts are Debian's (debian/rules); --no-create skips the
  # ~300 Makefiles we do not need (93 s -> 35 s). --without-munge: munge decides only whether
  # Slurm's own munge plugins are built, and 24.11's configure stops without libmunge-dev.
  ../src/configure -q --no-create --prefix=/usr --sysconfdir=/etc/slurm \
    --libdir=/usr/lib/x86_64-linux-gnu --enable-multiple-slurmd --disable-debug --without-rpath \
    --without-munge \
    >configure.log 2>&1 || { tail -20 configure.log >&2; exit 1; }
  ./config.status config.h slurm/slurm_version.h >>configure.log 2>&1
) || die "could not prepare Slurm $ver headers in $dir"
grep -q "SLURM_VERSION_STRING \"$upstream\"" "$dir/build/config.h" ||
  die "configured headers in $dir are not for Slurm $upstream"
touch "$dir/.complete"
echo "$dir"
