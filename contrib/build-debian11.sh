#!/bin/bash
# Build the test image "debian11": Debian 11 (bullseye) with its own 5.10 kernel, systemd, bash
# and python3, from Debian's packages only, on a partitioned disk that boots three ways:
#   - by BIOS firmware: SeaBIOS -> GRUB in the disk's MBR gap -> /boot/grub/grub.cfg on the
#     root fs (partition 1);
#   - by UEFI firmware: OVMF -> \EFI\BOOT\BOOTX64.EFI (GRUB) on the EFI system partition
#     (partition 2, FAT) -> the same grub.cfg;
#   - by direct kernel boot: vmlinuz and initrd.img (copies of the image's /boot) with
#     root=/dev/vda1.
# The image holds no slurm-vm agent: `slurm-vm image prepare` adds it (contrib/lib/setup.sh
# install_debian11 runs it, as an admin would). Networking is systemd-networkd with DHCP on any en* link and
# systemd-resolved, so a user-mode NIC works when the domain has one.
#
#   contrib/build-debian11.sh     prints the folder holding base.qcow2, vmlinuz, initrd.img
#                                 (and versions.txt: every package in the image, with its version)
#
# Cached in $SVM_IMAGE_CACHE/debian11-<key> (shared by the test platforms): the key hashes the suite's package index as the mirror
# publishes it (its SHA256 in the signed InRelease: the same index means the same package
# versions), the package list and this script. Offline, the newest complete build is used.
# No loop device, no mount: the root filesystem is written into the disk file by mkfs.ext4 -d
# at the partition's offset, GRUB's boot.img and core.img by dd. Cold: ~65-125 s debootstrap,
# ~15 s for the rest.
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"

suite=bullseye
mirror=${SVM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# minbase plus what a job expects of a real distribution. dbus: without it systemd-logind does
# not run and the ACPI power button (the graceful stop) is ignored.
include=systemd-sysv,linux-image-amd64,udev,kmod,iproute2,python3,procps,bash,coreutils,dbus
disk_mib=3072 # virtual size; qcow2 stores only what is written (~330 MB)
part_start=2048 # sectors: the partition starts at 1 MiB, GRUB's core.img lives before it
esp_mib=16      # the EFI system partition, at the disk's end

log() { printf 'build-debian11: %s\n' "$*" >&2; }

# remove_tree DIR: debootstrap mounts /proc, /sys (and sometimes /dev) in the new root and
# unmounts them when it exits; should one stay behind, unmount it rather than delete through it.
remove_tree() {
  local d=$1 m
  [ -d "$d" ] || return 0
  for m in $(awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$d"
}

for tool in debootstrap grub-mkimage sfdisk mkfs.ext4 mkfs.vfat mcopy qemu-img; do
  command -v "$tool" >/dev/null || die "$tool is missing (contrib/install-deps.sh: debootstrap grub-pc-bin fdisk e2fsprogs dosfstools mtools qemu-utils)"
done
[ -f /usr/lib/grub/i386-pc/boot.img ] || die "GRUB's BIOS images are missing: apt-get install grub-pc-bin"
[ -d /usr/lib/grub/x86_64-efi ] || die "GRUB's UEFI modules are missing: apt-get install grub-efi-amd64-bin"

# The cache key. The InRelease file is a few hundred KB and signed; debootstrap checks the
# signature itself when it builds.
inrelease=$(mktemp)
trap 'rm -f "$inrelease"' EXIT
if /usr/lib/apt/apt-helper download-file "$mirror/dists/$suite/InRelease" "$inrelease" >/dev/null 2>&1; then
  index=$(awk '/^SHA256:/{s=1; next} /^[^ ]/{s=0} s && $3 == "main/binary-amd64/Packages"{print $1; exit}' "$inrelease")
  [ -n "$index" ] || die "$mirror/dists/$suite/InRelease has no main/binary-amd64/Packages entry"
  key=$( (echo "$suite $index $include $disk_mib"; cat "$0") | sha256sum | cut -c1-16)
  out=$SVM_IMAGE_CACHE/debian11-$key
else
  out=$(ls -dt "$SVM_IMAGE_CACHE"/debian11-[0-9a-f]*/.complete 2>/dev/null | head -1)
  [ -n "$out" ] || die "cannot reach $mirror and no debian11 image is cached"
  out=$(dirname "$out")
  log "cannot reach $mirror: using the cached $out"
fi

if [ ! -f "$out/.complete" ]; then
  need_root
  mkdir -p "$SVM_IMAGE_CACHE"
  # Two builds at once (two nodes' set-ups) would debootstrap twice: the second waits.
  exec 9>"$SVM_IMAGE_CACHE/debian11.lock"
  flock 9
fi
if [ ! -f "$out/.complete" ]; then
  work=$(mktemp -d "$SVM_IMAGE_CACHE/debian11.tmp.XXXXXX")
  trap 'rm -f "$inrelease"; remove_tree "$work"' EXIT
  root=$work/root
  t0=$(date +%s.%N)
  log "debootstrap $suite from $mirror into $root (about a minute)"
  debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  t1=$(date +%s.%N)
  kver=$(ls "$root/lib/modules")
  [ "$(echo "$kver" | wc -l)" = 1 ] && [ -f "$root/boot/vmlinuz-$kver" ] || die "expected one kernel in the image, found: $kver"
  uuid=$(cat /proc/sys/kernel/random/uuid)

  log "configuring the system (kernel $kver, root filesystem UUID $uuid)"
  # The root filesystem is always clean (each job writes to its own overlay): no fsck, rw at boot.
  echo "UUID=$uuid / ext4 errors=remount-ro 0 0" >"$root/etc/fstab"
  echo debian11 >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  # Empty: systemd makes a machine id at each boot, so no two VMs share one.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  cat >"$root/etc/systemd/network/50-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF
  ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
  chroot "$root" systemctl -q enable systemd-networkd.service systemd-resolved.service
  # A job VM lives minutes: nothing should wake up to clean or update it.
  chroot "$root" systemctl -q disable apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    fstrim.timer e2scrub_reap.service 2>/dev/null || true

  # Size: no package cache, no docs, and only the kernel modules a VM can use (virtio, block,
  # filesystems, netfilter...): hardware drivers for GPUs, sound, Wi-Fi, cameras go.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  m=$root/lib/modules/$kver/kernel
  rm -rf "$m"/sound "$m"/drivers/{gpu,media,infiniband,staging,iio,bluetooth,isdn,net/wireless,net/ethernet} \
    "$m"/net/{wireless,mac80211,bluetooth}
  depmod -b "$root" "$kver"
  # A small initramfs (only what finds and mounts a virtio root) boots seconds faster under
  # TCG than the default MODULES=most one (27 MB). virtio_console and 9p load there too: the
  # exec ports then exist when systemd starts, and the agent need not wait for udev.
  sed -i 's/^MODULES=.*/MODULES=list/' "$root/etc/initramfs-tools/initramfs.conf"
  printf '%s\n' virtio_pci virtio_blk virtio_scsi ext4 crc32c_generic virtio_console 9pnet_virtio 9p \
    >>"$root/etc/initramfs-tools/modules"
  chroot "$root" update-initramfs -u -k "$kver" >"$work/initramfs.log" 2>&1 ||
    { cat "$work/initramfs.log" >&2; die "update-initramfs failed"; }

  # The disk's own bootloader: GRUB (BIOS), core.img in the gap before the partition, its
  # configuration in the image's /boot. Serial console only: the VM has no display.
  mkdir -p "$root/boot/grub"
  cat >"$root/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=0
linux /boot/vmlinuz-$kver root=UUID=$uuid rw console=ttyS0 quiet
initrd /boot/initrd.img-$kver
boot
EOF
  dpkg-query --admindir="$root/var/lib/dpkg" -W >"$work/versions.txt"
  cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
  cp "$root/boot/initrd.img-$kver" "$work/initrd.img"

  log "writing the disk"
  raw=$work/disk.raw
  truncate -s "${disk_mib}M" "$raw"
  # ext4 features spelled out (a newer host's mke2fs.conf turns on orphan_file, which the
  # 5.10 kernel and bullseye's e2fsck do not know).
  cat >"$work/mke2fs.conf" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
EOF
  root_mib=$((disk_mib - 1 - esp_mib))
  esp_start=$((part_start + root_mib * 2048))
  MKE2FS_CONFIG=$work/mke2fs.conf mkfs.ext4 -q -F -T default -U "$uuid" -L debian11 \
    -E offset=$((part_start * 512)) -d "$root" "$raw" "${root_mib}M"
  printf 'label: dos\nstart=%s, size=%s, type=83, bootable\nstart=%s, type=ef\n' \
    "$part_start" "$((root_mib * 2048))" "$esp_start" |
    sfdisk -q --wipe never --wipe-partitions never "$raw" 2>&1 | { grep -v 'contains a ext4 signature' || true; } >&2
  # UEFI: GRUB as the removable-media loader on a FAT partition, made and filled as a file
  # (mtools), then copied in at its offset. Its prefix is the root fs, as for BIOS.
  grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -p '(hd0,msdos1)/boot/grub' \
    part_msdos ext2 normal linux serial terminal
  mkfs.vfat -n ESP -C "$work/esp.img" $((esp_mib * 1024)) >/dev/null
  mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
  mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  dd if="$work/esp.img" of="$raw" bs=512 seek="$esp_start" conv=notrunc status=none
  grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 normal linux serial terminal
  [ "$(stat -c %s "$work/core.img")" -lt $(((part_start - 1) * 512)) ] || die "GRUB's core.img does not fit before the partition"
  # boot.img's code only (440 bytes): the partition table after it stays. It loads the sector
  # at LBA 1 (its default), where core.img goes; core.img's first sector lists the rest.
  dd if=/usr/lib/grub/i386-pc/boot.img of="$raw" bs=440 count=1 conv=notrunc status=none
  dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
  qemu-img convert -O qcow2 "$raw" "$work/base.qcow2"
  rm -f "$raw"
  t2=$(date +%s.%N)
  cat >"$work/build.txt" <<EOF
suite $suite, mirror $mirror, kernel $kver, root UUID $uuid
debootstrap $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s, configure and disk $(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.1f", b-a}') s
firmware boot (BIOS or UEFI): the disk alone; direct boot: vmlinuz, initrd.img, cmdline "root=/dev/vda1 rw console=ttyS0 quiet"
EOF
  remove_tree "$root"
  rm -f "$work/core.img" "$work/mke2fs.conf" "$work/BOOTX64.EFI" "$work/esp.img"
  # QEMU runs as the job's user: the image files must be readable by everyone.
  chmod 0644 "$work"/*
  chmod 0755 "$work"
  touch "$work/.complete"
  rm -rf "$out"
  mv "$work" "$out"
  trap 'rm -f "$inrelease"' EXIT
  log "built $out: $(du -sh --apparent-size "$out/base.qcow2" | cut -f1) base.qcow2 ($(sed -n 2p "$out/build.txt"))"
  # A rebuild is two minutes: keep only this one.
  find "$SVM_IMAGE_CACHE" -mindepth 1 -maxdepth 1 -name 'debian11-[0-9a-f]*' ! -path "$out" -exec rm -rf {} +
fi
chmod 0755 "$SVM_CACHE" "$SVM_IMAGE_CACHE" "$out"
echo "$out"
