#!/bin/bash
# Install everything slurm-vm needs to build, test and run a local cluster, from the running
# Debian release's own packages only: Debian 12 (bookworm: Slurm 22.05, QEMU 7.2, libvirt 9) or
# Debian 13 (trixie: Slurm 24.11, QEMU 10, libvirt 11, virtiofsd 1.13). Idempotent: a second
# run costs a few seconds.
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"
need_root
. /etc/os-release
codename=${VERSION_CODENAME:-}
case "$codename" in
  bookworm | trixie) ;;
  *) die "this is ${PRETTY_NAME:-an unknown system}: slurm-vm's scripts know Debian 12 (bookworm) and Debian 13 (trixie)" ;;
esac

# Without systemd, package postinst scripts would try to start daemons (munge, mariadb,
# libvirtd, slurm*) in the wrong way; our cluster scripts start them. policy-rc.d says no.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# installed by slurm-vm: daemons are started by contrib/cluster.sh\nexit 101\n' \
    >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
fi

# Slurm's internal plugin headers come from its Debian source package: that needs deb-src.
src_list=/etc/apt/sources.list.d/slurm-vm-deb-src.sources
if ! grep -rqs '^\(Types:.*deb-src\|deb-src \)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat >"$src_list" <<SRC
# added by slurm-vm: Slurm's internal plugin headers are configured from its source package
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  rm -f "$SVM_CACHE/.apt-updated"
fi

# What differs between the releases: libFuzzer's runtime (the fuzz targets in tests/fuzz) is
# versioned with clang; Debian 13's virtiofsd is a package of its own (Debian 12's QEMU ships
# the older C one in /usr/lib/qemu).
case "$codename" in
  bookworm) RELEASE_PACKAGES=(libclang-rt-14-dev) ;;
  trixie) RELEASE_PACKAGES=(libclang-rt-19-dev virtiofsd) ;;
esac

PACKAGES=(
  # build
  g++ make cmake pkg-config clang-format libjson-c-dev libgtest-dev googletest libvirt-dev libxml2-dev
  libslurm-dev dpkg-dev
  clang "${RELEASE_PACKAGES[@]}"
  # slurm and accounting
  slurmctld slurmd slurm-client slurmdbd munge mariadb-server
  # virtualisation
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils tini
  ovmf # UEFI firmware for images whose catalog entry says "firmware": "uefi"
  # guest image build: tiny (busybox initramfs) and debian11 (debootstrap, GRUB for BIOS and
  # UEFI, a FAT EFI system partition written without mounting, libguestfs for slurm-vm image
  # prepare)
  cpio xz-utils e2fsprogs debootstrap grub-pc-bin grub-efi-amd64-bin dosfstools mtools fdisk
  libguestfs-tools
  # test harness
  sudo procps psmisc
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
mkdir -p "$SVM_CACHE"
# apt-get update once per day at most, and always after we changed the sources: the index is
# what `apt-get source` and `apt-get download` use too.
if [ ${#missing[@]} -gt 0 ] || [ ! -e "$SVM_CACHE/.apt-updated" ] ||
  [ -n "$(find "$SVM_CACHE/.apt-updated" -mmin +1440 2>/dev/null)" ]; then
  # Third-party lists on some machines are unreachable; apt then exits non-zero although
  # Debian's own indexes were fetched. What matters is checked right below.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >"$SVM_CACHE/apt-update.log" 2>&1 || true
  apt-cache show slurmctld >/dev/null 2>&1 ||
    die "apt-get update could not reach Debian's package mirror (see $SVM_CACHE/apt-update.log)"
  touch "$SVM_CACHE/.apt-updated"
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" \
    >"$SVM_CACHE/apt-install.log" 2>&1 || {
    tail -30 "$SVM_CACHE/apt-install.log"
    die "apt-get install failed (full log: $SVM_CACHE/apt-install.log)"
  }
else
  echo "all ${#PACKAGES[@]} packages already installed"
fi
