# libguestfs settings for slurm-vm's scripts (virt-customize, guestfish, virt-get-kernel).
# Sourced after common.sh; call guestfs_env before the first libguestfs tool.
#
# libguestfs boots its own appliance VM, built by supermin from the host's packages and the
# host's kernel. Two things go wrong on machines like the CI one:
#   - KVM is offered but broken: libguestfs picks it and hangs ("Examining the guest...");
#     force TCG (SVM_GUESTFS_TCG=0 to let libguestfs choose, on a node where KVM works);
#   - there is no kernel in /boot (a container-like host): supermin fails with "failed to find
#     a suitable kernel". Then we give it Debian's kernel package, unpacked under
#     $SVM_CACHE/guestfs-kernel-<package>-<version>, through SUPERMIN_KERNEL and SUPERMIN_MODULES
#     (and an empty /lib/modules, which supermin also needs).

guestfs_env() {
  export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
  if [ "${SVM_GUESTFS_TCG:-1}" = 1 ]; then
    export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}
  fi
  if [ -n "${SUPERMIN_KERNEL:-}" ] || ls /boot/vmlinuz-* >/dev/null 2>&1; then
    return 0
  fi
  local kpkg kver dir tmp
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  [ -n "$kpkg" ] || die "no kernel in /boot for libguestfs, and Debian's kernel package is unknown (apt-get update?)"
  kver=$(apt-cache policy "$kpkg" | awk '/Candidate:/{print $2}')
  dir=$SVM_CACHE/guestfs-kernel-$kpkg-$kver
  if [ ! -f "$dir/.complete" ]; then
    need_root
    rm -rf "$dir"
    tmp=$(mktemp -d "$SVM_CACHE/guestfs-kernel.tmp.XXXXXX")
    (cd "$tmp" && apt-get download -q "$kpkg=$kver" >/dev/null 2>&1) ||
      { rm -rf "$tmp"; die "could not download $kpkg=$kver from Debian's mirror"; }
    mkdir "$tmp/x"
    dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/x"
    rm -f "$tmp"/linux-image-*.deb
    depmod -b "$tmp/x" "${kpkg#linux-image-}"
    touch "$tmp/.complete"
    mv "$tmp" "$dir"
  fi
  # supermin copies the modules from SUPERMIN_MODULES but still looks at the host's
  # /lib/modules (for its owner and mode): it must exist, even empty.
  [ -d /lib/modules ] || install -d -m 0755 /lib/modules
  export SUPERMIN_KERNEL=$(ls "$dir"/x/boot/vmlinuz-*)
  export SUPERMIN_KERNEL_VERSION=${kpkg#linux-image-}
  export SUPERMIN_MODULES=$dir/x/lib/modules/$SUPERMIN_KERNEL_VERSION
}
