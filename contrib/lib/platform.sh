# The second test platform, Debian 13 (trixie: Slurm 24.11, QEMU 10, libvirt 11, virtiofsd
# 1.13), on a Debian 12 machine: a root folder made with debootstrap from Debian's mirror, in
# which the same scripts (install-deps.sh, quickstart.sh, test.sh) run as they would on a
# Debian 13 host. Sourced after common.sh by platform.sh, quickstart.sh and test.sh.
#
# The root lives in $SVM_CACHE/platform/debian13/root, keyed by what makes it (this file's
# debootstrap line and install-deps.sh's package list): a new key makes a new root. Its packages
# are brought up to date once a day (apt-get upgrade inside), so a cached root is a current
# Debian 13. Its own caches (Slurm's configured source, the guest images) live inside it, under
# its /var/cache/slurm-vm, keyed by version as on any host.
#
# The project's tree is bind-mounted at the same path inside the root, built into
# build-debian13/. The root has its own /run, /tmp and /home; /proc, /sys (cgroups included)
# and /dev are the host's. The cluster inside uses the same ports as the host's, so one of the
# two runs at a time: starting either stops the other.

: "${SVM_PLATFORM_DIR:=$SVM_CACHE/platform}"
SVM_D13_SUITE=trixie
SVM_D13_MIRROR=${SVM_DEBIAN_MIRROR:-http://deb.debian.org/debian}

d13_dir() { echo "$SVM_PLATFORM_DIR/debian13"; }
d13_root() { echo "$(d13_dir)/root"; }

# d13_key: what the root is made from. install-deps.sh decides the packages; this file decides
# the rest.
d13_key() {
  cat "$SVM_REPO/contrib/lib/platform.sh" "$SVM_REPO/contrib/install-deps.sh" | sha256sum | cut -c1-16
}

# d13_mounted: whether the root's file systems are mounted.
d13_mounted() { mountpoint -q "$(d13_root)/proc"; }

d13_mount() {
  local r
  r=$(d13_root)
  d13_mounted && return 0
  mount -t proc proc "$r/proc"
  mount --rbind /sys "$r/sys" && mount --make-rslave "$r/sys"
  mount --rbind /dev "$r/dev" && mount --make-rslave "$r/dev"
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$r/run"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
  mkdir -p "$r$SVM_REPO"
  mount --bind "$SVM_REPO" "$r$SVM_REPO"
  # Name resolution and this host's name, as the host has them.
  cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
  cp /etc/hosts "$r/etc/hosts"
}

d13_umount() {
  local r m
  r=$(d13_root)
  [ -d "$r" ] || return 0
  for m in $(awk -v d="$r/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

# d13_run CMD...: CMD inside the root, as root, with a clean environment that says where the
# build and logs go. The root must be mounted.
d13_run() {
  chroot "$(d13_root)" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 SVM_BUILD="$SVM_REPO/build-debian13" \
    SVM_PLATFORM=debian13 CI="${CI:-}" ${SVM_TEST_SCOPE:+SVM_TEST_SCOPE=$SVM_TEST_SCOPE} \
    bash -c 'cd "$0" && exec "$@"' "$SVM_REPO" "$@"
}

# d13_build: make the root (about 5 minutes) unless a complete one of the current key is there;
# once a day, bring its packages up to date. Prints nothing; dies on failure.
d13_build() {
  local dir root key work
  dir=$(d13_dir)
  root=$(d13_root)
  key=$(d13_key)
  mkdir -p "$dir"
  exec 8>"$dir/.lock"
  flock 8
  if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$key" ]; then
    if [ -n "$(find "$dir/.complete" -mmin +1440 2>/dev/null)" ]; then
      echo "Debian 13 root: daily package update"
      d13_mount
      d13_run bash -c 'apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 -y -q upgrade' \
        >"$dir/upgrade.log" 2>&1 || { tail -20 "$dir/upgrade.log"; die "apt-get upgrade in the Debian 13 root failed"; }
      echo "$key" >"$dir/.complete"
    fi
    exec 8>&-
    return 0
  fi
  echo "making the Debian 13 root in $root (debootstrap, then install-deps.sh inside: about 5 minutes)"
  d13_umount
  rm -rf --one-file-system "$root" "$dir/.complete"
  work=$dir/root.tmp
  d13_umount_tree "$work"
  rm -rf --one-file-system "$work"
  debootstrap --variant=minbase --include=ca-certificates "$SVM_D13_SUITE" "$work" "$SVM_D13_MIRROR" \
    >"$dir/debootstrap.log" 2>&1 || { tail -20 "$dir/debootstrap.log"; die "debootstrap $SVM_D13_SUITE failed (log: $dir/debootstrap.log)"; }
  rm -f "$work/etc/apt/sources.list"
  cat >"$work/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $SVM_D13_MIRROR
Suites: $SVM_D13_SUITE $SVM_D13_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SVM_D13_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  # Daemons are started by contrib/cluster.sh (or systemd in the system VM), never by postinst.
  printf '#!/bin/sh\nexit 101\n' >"$work/usr/sbin/policy-rc.d"
  chmod 755 "$work/usr/sbin/policy-rc.d"
  mv "$work" "$root"
  d13_mount
  d13_run contrib/install-deps.sh || { d13_umount; die "install-deps.sh failed in the Debian 13 root"; }
  echo "$key" >"$dir/.complete"
  exec 8>&-
}

# d13_umount_tree DIR: unmount whatever is mounted below DIR (a build that was interrupted).
d13_umount_tree() {
  local m
  for m in $(awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

# d13_stop: stop the cluster inside the root, then unmount it.
d13_stop() {
  if d13_mounted; then
    d13_run contrib/cluster.sh stop || true
  fi
  d13_umount
}

# host_cluster_stop: the host's own cluster, before a platform's starts (same ports).
host_cluster_stop() {
  if pgrep -x slurmctld >/dev/null || pgrep -x libvirtd >/dev/null || pgrep -x munged >/dev/null; then
    "$SVM_REPO/contrib/cluster.sh" stop
  fi
}
