#!/bin/bash
# Build the test guest "tiny": Debian's kernel booted as an uncompressed vmlinux (PVH: QEMU
# skips the XZ decompressor, ~3 s faster per boot under TCG) and a busybox initramfs holding
# the slurm-vm agent. Everything comes from Debian's packages.
#
#   contrib/build-guest.sh AGENT_BINARY     prints the folder holding vmlinux and initrd.img
#
# Two cache levels under $SVM_CACHE/guest: the kernel, its modules and busybox, keyed by the
# package versions (slow: a 70 MB download and an unpack), and the initramfs, keyed by those
# plus a hash of the agent and of guest/rootfs (fast: ~1 s to assemble).
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"

agent=${1:?usage: build-guest.sh AGENT_BINARY}
[ -x "$agent" ] || die "agent binary $agent is missing: build the project first"
file -b "$agent" 2>/dev/null | grep -qE 'statically linked|static-pie linked' ||
  ldd "$agent" 2>&1 | grep -q 'not a dynamic' || die "agent $agent is not a static binary"

kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$kpkg" ] || die "cannot find Debian's kernel package (apt-get update?)"
kver=$(apt-cache policy "$kpkg" | awk '/Candidate:/{print $2}')
bbver=$(apt-cache policy busybox-static | awk '/Candidate:/{print $2}')
base=$SVM_CACHE/guest/base-$kpkg-$kver-busybox-${bbver//:/_}-m2

# The modules the guest needs; their dependencies are found in the kernel's modules.dep, and
# those built into the kernel (virtio_pci and virtio_console in Debian 13's) are left out.
# rc.sh loads the lists load-base and load-disk (a root disk's ext4) in the order given here.
MODULES_BASE=(virtio_pci virtio_console virtio_blk evdev button 9pnet_virtio 9p)
MODULES_DISK=(crc32c_generic ext4)

# module_order DIR NAME...: the module files (paths in DIR's modules.dep) that NAME... need,
# dependencies first, each once, built-in ones left out. Dies on a name the kernel lacks.
module_order() {
  local dir=$1 seen=" " out=() m
  shift
  visit() {
    local name=$1 path deps d
    path=$(awk -F: -v n="$name" '{f=$1; sub(/.*\//, "", f); sub(/\.ko(\.(xz|zst|gz))?$/, "", f); gsub(/-/, "_", f)}
      f == n {print $1; exit}' "$dir/modules.dep")
    if [ -z "$path" ]; then
      grep -Eq "/${name//_/[_-]}\.ko\$" "$dir/modules.builtin" && return 0
      die "kernel module $name is neither a module nor built into $kpkg"
    fi
    case "$seen" in *" $path "*) return 0 ;; esac
    seen+="$path "
    deps=$(awk -F': *' -v p="$path" '$1 == p {print $2; exit}' "$dir/modules.dep")
    for d in $deps; do
      d=${d##*/}; d=${d%%.ko*}; visit "${d//-/_}"
    done
    out+=("$path")
  }
  for m in "$@"; do visit "$m"; done
  printf '%s\n' "${out[@]}"
}

if [ ! -f "$base/.complete" ]; then
  need_root
  rm -rf "$base"
  mkdir -p "$base/debs" "$base/modules"
  (cd "$base/debs" && apt-get download -q "$kpkg=$kver" "busybox-static=$bbver" >/dev/null 2>&1) ||
    die "could not download $kpkg and busybox-static from Debian's mirror"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  dpkg-deb --fsys-tarfile "$base"/debs/linux-image-*.deb | tar -x -C "$tmp" --wildcards \
    './boot/vmlinuz-*' '*lib/modules/*'
  # Debian 13's package has them under /usr (merged /usr): depmod -b looks in lib/modules.
  [ -d "$tmp/usr/lib/modules" ] && mkdir -p "$tmp/lib" && mv "$tmp/usr/lib/modules" "$tmp/lib/"
  mdir=$(ls -d "$tmp"/lib/modules/*/ | head -1)
  # The package has no modules.dep (its postinst makes one): depmod makes it here.
  depmod -b "$tmp" "$(basename "$mdir")" || die "depmod failed on $kpkg's modules"
  # Modules go into the initramfs uncompressed (busybox's insmod reads plain ELF), under their
  # own names; load-base and load-disk give rc.sh the order.
  for list in base disk; do
    if [ $list = base ]; then names=("${MODULES_BASE[@]}"); else names=("${MODULES_DISK[@]}"); fi
    : >"$base/modules/load-$list"
    for f in $(module_order "$mdir" "${names[@]}"); do
      m=${f##*/}; m=${m%%.ko*}
      grep -qx "$m" "$base/modules/load-base" 2>/dev/null && [ $list = disk ] && continue
      case "$f" in
        *.ko.xz) xz -dc "$mdir/$f" >"$base/modules/$m.ko" ;;
        *.ko.zst) zstd -qdc "$mdir/$f" >"$base/modules/$m.ko" ;;
        *.ko.gz) gzip -dc "$mdir/$f" >"$base/modules/$m.ko" ;;
        *) cp "$mdir/$f" "$base/modules/$m.ko" ;;
      esac
      echo "$m" >>"$base/modules/load-$list"
    done
  done
  # vmlinuz is a bzImage holding a compressed stream (XZ in Debian 12's, zstd in Debian 13's):
  # cut it out and decompress it, as the kernel's scripts/extract-vmlinux does. The decompressor
  # complains about the bytes after the stream; the output is complete, which the ELF check proves.
  vmlinuz=$(ls "$tmp"/boot/vmlinuz-*)
  for c in '\xfd7zXZ\x00:xz -dcq' '\x28\xb5\x2f\xfd:zstd -dcq'; do
    off=$(LC_ALL=C grep -obUaP "${c%%:*}" "$vmlinuz" | head -1 | cut -d: -f1 || true)
    [ -n "$off" ] || continue
    tail -c +$((off + 1)) "$vmlinuz" | ${c#*:} 2>/dev/null >"$base/vmlinux" || true
    [ "$(head -c4 "$base/vmlinux" | tail -c3)" = ELF ] && break
  done
  [ "$(head -c4 "$base/vmlinux" 2>/dev/null | tail -c3)" = ELF ] || die "could not extract vmlinux from $vmlinuz"
  dpkg-deb --fsys-tarfile "$base"/debs/busybox-static_*.deb | tar -x -O --wildcards "*bin/busybox" >"$base/busybox" # /usr/bin in Debian 13
  chmod 755 "$base/busybox"
  rm -rf "$base/debs"
  touch "$base/.complete"
fi

key=$( (cat "$agent" "$0"; cd "$SVM_REPO/guest/rootfs" && find . -type f | sort | xargs cat; echo "$base") |
  sha256sum | cut -c1-16)
out=$SVM_CACHE/guest/tiny-$key
if [ ! -f "$out/.complete" ]; then
  need_root
  rm -rf "$out"
  mkdir -p "$out"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,root,lib/modules,var/log}
  ln -s ../run "$root/var/run"
  cp "$base/busybox" "$root/bin/busybox"
  for a in $("$root/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
  ln -s bin/busybox "$root/init"
  cp "$base"/modules/*.ko "$base"/modules/load-* "$root/lib/modules/"
  cp -a "$SVM_REPO/guest/rootfs/." "$root/"
  install -m 755 "$agent" "$root/sbin/slurm-vm-agent"
  # Host calls: under these names the agent runs the Slurm command on the host, in the job's
  # allocation (keep in step with hostcall_commands() in plugins/protocol/messages.cpp).
  for c in srun sbatch scancel scontrol squeue sacct sinfo sstat salloc; do
    ln -sf /sbin/slurm-vm-agent "$root/usr/bin/$c"
  done
  (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 >"$out/initrd.img"
  ln "$base/vmlinux" "$out/vmlinux" 2>/dev/null || cp "$base/vmlinux" "$out/vmlinux"
  chmod 0644 "$out/initrd.img" "$out/vmlinux"
  touch "$out/.complete"
  # Older initramfs builds are a second's work to remake: keep only this one.
  find "$SVM_CACHE/guest" -mindepth 1 -maxdepth 1 -name 'tiny-*' ! -path "$out" -exec rm -rf {} +
fi
# QEMU runs as the job's user: the image files must be readable by everyone.
chmod 0755 "$SVM_CACHE" "$SVM_CACHE/guest" "$out"
echo "$out"
