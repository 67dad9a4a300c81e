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

# What the root has besides install-deps.sh's packages: what makes it a bootable system for
# the debian13-vm platform (systemd, a kernel, ssh) and what libguestfs needs (a kernel in /boot).
# Missing ones are installed at each use, so adding one here needs no new root.
SVM_D13_DEBOOTSTRAP="--variant=minbase --include=ca-certificates"
SVM_D13_EXTRA=(systemd-sysv systemd-resolved linux-image-amd64 udev dbus kmod iproute2 openssh-server
  python3 file)

# d13_key: what the root is made from: the debootstrap line and install-deps.sh's packages.
d13_key() {
  (echo "$SVM_D13_SUITE $SVM_D13_DEBOOTSTRAP"; cat "$SVM_REPO/contrib/install-deps.sh") | sha256sum | cut -c1-16
}

# d13_extras: install SVM_D13_EXTRA where missing. The root must be mounted.
d13_extras() {
  local missing=() p
  for p in "${SVM_D13_EXTRA[@]}"; do
    chroot "$(d13_root)" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  echo "Debian 13 root: installing ${missing[*]}"
  d13_run apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" \
    >"$(d13_dir)/extras.log" 2>&1 || { tail -20 "$(d13_dir)/extras.log"; die "could not install ${missing[*]} in the Debian 13 root"; }
}

d13_mount() {
  local r
  r=$(d13_root)
  # Each mount on its own, so that one added here reaches a root mounted by an older version.
  mountpoint -q "$r/proc" || mount -t proc proc "$r/proc"
  mountpoint -q "$r/sys" || { mount --rbind /sys "$r/sys" && mount --make-rslave "$r/sys"; }
  mountpoint -q "$r/dev" || { mount --rbind /dev "$r/dev" && mount --make-rslave "$r/dev"; }
  mountpoint -q "$r/run" || mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$r/run"
  mountpoint -q "$r/tmp" || mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
  mkdir -p "$r$SVM_REPO"
  # A bind of an earlier tree at this path (deleted, then cloned again) shows the old, empty
  # folder: only a bind of this very folder will do.
  while mountpoint -q "$r$SVM_REPO" && [ "$(stat -c %d:%i "$r$SVM_REPO")" != "$(stat -c %d:%i "$SVM_REPO")" ]; do
    umount -l "$r$SVM_REPO" || break
  done
  mountpoint -q "$r$SVM_REPO" || mount --bind "$SVM_REPO" "$r$SVM_REPO"
  # The images that are the same for every platform (debian11) are made once: the root's
  # $SVM_IMAGE_CACHE is the host's.
  mkdir -p "$SVM_IMAGE_CACHE" "$r/var/cache/slurm-vm/images"
  mountpoint -q "$r/var/cache/slurm-vm/images" || mount --bind "$SVM_IMAGE_CACHE" "$r/var/cache/slurm-vm/images"
  # Name resolution and this host's name, as the host has them.
  # systemd-resolved's package makes the root's resolv.conf a link into /run, which is empty
  # here: a file takes its place (in the system VM, DHCP gives the same slirp-forwarded server).
  [ -L "$r/etc/resolv.conf" ] && rm -f "$r/etc/resolv.conf"
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
# Not chroot(2): the kernel refuses a user namespace to a chrooted process, and virtiofsd runs
# in one. So CMD gets a mount namespace of its own whose root is the Debian 13 root
# (pivot_root): the same files and mounts as the host's view of the root, not chrooted.
d13_run() {
  local r
  r=$(d13_root)
  mkdir -p "$r/.oldroot"
  unshare --mount --propagation private -- /bin/sh -c '
    mount --rbind "$1" "$1" && cd "$1" && pivot_root . .oldroot && cd / && umount -l /.oldroot &&
    shift && exec "$@"' d13 "$r" \
    /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 SVM_BUILD="$SVM_REPO/build-debian13" \
    SVM_PLATFORM=debian13 CI="${CI:-}" \
    bash -c 'cd "$0" && exec "$@"' "$SVM_REPO" "$@"
}

# d13_install: slurm-vm built and installed in the root, its guest images made (setup.sh's
# svm_install), without starting its cluster. The root must be mounted.
d13_install() {
  d13_run bash -c 'SVM_REPO=$PWD && . contrib/lib/common.sh && . contrib/lib/setup.sh && svm_install'
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
    d13_mount
    d13_extras
    exec 8>&-
    return 0
  fi
  echo "making the Debian 13 root in $root (debootstrap, then install-deps.sh inside: about 5 minutes)"
  d13_umount
  rm -rf --one-file-system "$root" "$dir/.complete"
  work=$dir/root.tmp
  d13_umount_tree "$work"
  rm -rf --one-file-system "$work"
  # shellcheck disable=SC2086 # the options are words
  debootstrap $SVM_D13_DEBOOTSTRAP "$SVM_D13_SUITE" "$work" "$SVM_D13_MIRROR" \
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
  d13_extras
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

# d13_cluster_running: whether a daemon of the cluster runs inside the root.
d13_cluster_running() {
  [ -n "$(pids_in_root "$(d13_root)" -x 'slurmctld(-wlm)?|slurmd(-wlm)?|slurmdbd|munged|mariadbd|libvirtd')" ]
}

# d13_stop: stop the cluster inside the root. The mounts stay (others may be building in the
# root); `contrib/platform.sh debian13 umount` removes them.
d13_stop() {
  if d13_cluster_running; then
    d13_mount
    d13_run contrib/cluster.sh stop || true
  fi
}

# host_cluster_stop: the host's own cluster, before a platform's starts (same ports).
host_cluster_stop() {
  if pgrep_here -x 'slurmctld(-wlm)?|libvirtd|munged' >/dev/null; then
    "$SVM_REPO/contrib/cluster.sh" stop
  fi
}

# platform_option ARGS...: sets SVM_PLATFORM_ARG from a leading `--platform NAME` (or
# `--platform=NAME`) and SVM_REST to the other arguments.
platform_option() {
  SVM_PLATFORM_ARG=host
  SVM_REST=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --platform) SVM_PLATFORM_ARG=${2:?--platform needs a name}; shift 2 ;;
      --platform=*) SVM_PLATFORM_ARG=${1#--platform=}; shift ;;
      *) SVM_REST+=("$1"); shift ;;
    esac
  done
  local p
  for p in ${SVM_PLATFORM_ARG//,/ }; do
    case "$p" in
      host | debian13 | debian13-vm | all) ;;
      *) die "unknown platform '$p' (host, debian13, debian13-vm, all, or a list: host,debian13)" ;;
    esac
  done
}

# d13_enter SCRIPT ARGS...: runs one of the project's scripts (quickstart.sh, test.sh) inside
# the Debian 13 root, after making it and stopping the host's cluster.
d13_enter() {
  need_root
  d13_build
  host_cluster_stop
  d13_mount
  d13_run "$@"
}

# ---------------------------------------------------------------------------------------------
# debian13-vm: the Debian 13 root booted as a system VM under User-Mode Linux (UML: a Linux
# kernel that runs as processes of this machine; Debian 12's user-mode-linux, 6.1), systemd as
# PID 1, the unified cgroup v2 hierarchy, the daemons as systemd services, with job VMs nested in
# it under TCG. This machine cannot have cgroup v2 itself (its supervisor holds the memory
# controller in a v1 hierarchy), so this is how cgroup v2 is tested.
#
# Why UML and not a QEMU system VM: this machine has no working KVM, so such a VM runs under TCG,
# where nested KVM (TCG's emulated SVM) hangs and panics the VM's kernel, and a job VM's TCG
# inside TCG is too slow to boot (the tiny guest printed nothing in 10 minutes). Under UML the
# job VM's QEMU is a process of this machine whose translated code runs natively; only its
# system calls trap into the UML kernel (~20-60 us each here): the tiny guest boots 2-4 times
# slower than on this machine. What UML lacks: more than one CPU, the cpuset controller (so
# Slurm does not constrain cores there: contrib/cluster.sh), KVM, and address spaces above
# 512 GiB.
#
# The disk is made from the root after slurm-vm was built and installed in it (the same
# binaries as the debian13 platform), with mkfs.ext4 -d from a plain bind mount of the root (no
# submounts); this tree is mounted read-only inside through UML's hostfs at the same path.
# Commands reach it over ssh on a loopback port, with a key made for it: a QEMU without a
# machine (-machine none) is the VM's network, its user-mode network restricted to that one
# forwarded port and joined to the VM's interface by an L2TPv3 tunnel on 127.0.0.1.

# The nested set (README, "Platforms"): the VM in the job's cgroups and on its CPUs, its CPU time
# in sstat/sacct, scontrol suspend, the memory limit, the boot in the job's cgroup; each test
# also checks that nothing is left.
SVM_D13VM_TESTS=${SVM_D13VM_TESTS:-'test_containment::test_(a_vm_jobs_qemu|a_busy_guest|scontrol_suspend|a_vm_that_wants_more_memory|on_cgroup_v2)'}
# TCP on 127.0.0.1 for ssh; UDP on 127.0.0.1 for the tunnel (this port, and the next for UML).
: "${SVM_D13VM_SSH_PORT:=10022}"
: "${SVM_D13VM_MEMORY:=8G}"
# How much longer a nested job VM takes to boot than one on this machine: the tests' waits and
# the plugin's ready_timeout and libvirt_timeout are scaled by it (tests/integration/lib.sh,
# contrib/cluster.sh).
: "${SVM_D13VM_TIME_FACTOR:=8}"
SVM_D13VM_UMID=svm-debian13

d13vm_dir() { echo "$SVM_PLATFORM_DIR/debian13-vm"; }

d13vm_ssh() {
  local dir
  dir=$(d13vm_dir)
  ssh -q -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    -o ConnectTimeout=5 -o ServerAliveInterval=30 -i "$dir/id" -p "$SVM_D13VM_SSH_PORT" root@127.0.0.1 "$@"
}

# UML writes its main process's pid in <uml_dir>/<umid>/pid and removes the folder when it halts.
d13vm_pidfile() { echo "$(d13vm_dir)/$SVM_D13VM_UMID/pid"; }

d13vm_running() {
  local pidf
  pidf=$(d13vm_pidfile)
  [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null
}

d13vm_stop() {
  local dir pidf
  dir=$(d13vm_dir)
  pidf=$(d13vm_pidfile)
  if d13vm_running; then
    d13vm_ssh systemctl poweroff >/dev/null 2>&1 || true
    wait_for 60 sh -c "! kill -0 $(cat "$pidf") 2>/dev/null" || stop_pidfile "$pidf" 5
  fi
  rm -rf "${pidf%/pid}"
  stop_pidfile "$dir/net.pid" 5
  stop_pidfile "$dir/qemu.pid" 5 # a system VM of this platform's QEMU days holds the ssh port
}

# d13vm_kernel: Debian's UML kernel on this machine (the package, installed when missing).
d13vm_kernel() {
  command -v linux.uml >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q user-mode-linux >"$SVM_CACHE/apt-uml.log" 2>&1 ||
    die "installing user-mode-linux failed (see $SVM_CACHE/apt-uml.log)"
  linux.uml --version
}

# d13vm_configure_root: what the root needs to boot as a machine of its own. Harmless to the
# root's other use (a chroot, where nothing boots).
d13vm_configure_root() {
  local r dir kver
  r=$(d13_root)
  dir=$(d13vm_dir)
  kver=$(d13vm_kernel)
  [ -f "$dir/id" ] || ssh-keygen -q -t ed25519 -N '' -C slurm-vm-debian13-vm -f "$dir/id"
  install -d -m 0700 "$r/root/.ssh"
  install -m 0600 "$dir/id.pub" "$r/root/.ssh/authorized_keys"
  cat >"$r/etc/fstab" <<FSTAB
# the debian13-vm platform (contrib/lib/platform.sh): UML's block device, and this tree through
# hostfs (the host folder is the kernel's hostfs= argument)
/dev/ubda / ext4 rw,errors=remount-ro 0 1
none $SVM_REPO hostfs ro,nofail 0 0
FSTAB
  mkdir -p "$r$SVM_REPO" "$r/etc/systemd/network" "$r/lib/modules"
  # UML's modules (systemd loads a few at boot), from the package, where its kernel looks.
  [ -d "$r/lib/modules/$kver" ] || cp -a "/usr/lib/uml/modules/$kver" "$r/lib/modules/"
  # UML's network interface is vec0.
  printf '[Match]\nName=en* eth* vec*\n\n[Network]\nDHCP=yes\n' >"$r/etc/systemd/network/50-dhcp.network"
  echo svm-debian13 >"$r/etc/hostname"
  # No KVM under UML: the node's own KVM probe finds none and its VMs run under TCG.
  rm -f "$r/etc/modules-load.d/slurm-vm-kvm.conf" "$r/etc/udev/rules.d/65-slurm-vm-kvm.rules"
  # A UML process has 512 GiB of address space; InnoDB reserves 8 TiB for its buffer pool by
  # default and does not start.
  mkdir -p "$r/etc/mysql/mariadb.conf.d"
  printf '# the debian13-vm platform (contrib/lib/platform.sh): UML has 512 GiB of address space\n[mariadbd]\ninnodb_buffer_pool_size_max=1G\n' \
    >"$r/etc/mysql/mariadb.conf.d/90-slurm-vm.cnf"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tsvm-debian13\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts.vm"
  # The daemons are started by contrib/cluster.sh, as systemd services, when the tests want
  # them; what would only cost boot time does not start at all.
  chroot "$r" systemctl -q enable systemd-networkd ssh 2>/dev/null
  chroot "$r" systemctl -q disable slurmd slurmctld slurmdbd munge mariadb libvirtd virtlogd \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer \
    dpkg-db-backup.timer systemd-networkd-wait-online.service 2>/dev/null || true
  chroot "$r" systemctl -q mask systemd-networkd-wait-online.service e2scrub_reap.service 2>/dev/null || true
}

# d13vm_disk: the system VM's disk, made afresh from the root (about a minute).
d13vm_disk() {
  local dir r view
  dir=$(d13vm_dir)
  r=$(d13_root)
  view=$dir/view
  mkdir -p "$view"
  mountpoint -q "$view" || mount --bind "$r" "$view" # no submounts: /proc, /sys, /run stay out
  rm -f "$dir/disk.raw"
  # /etc/hosts in the root is the host's copy (for the chroot); the VM has its own name.
  mkfs.ext4 -q -F -L svm-debian13 -d "$view" "$dir/disk.raw" 12G || { umount "$view"; die "mkfs.ext4 of the system VM's disk failed"; }
  umount "$view"
  # debugfs writes the VM's own /etc/hosts into the image without mounting it.
  debugfs -w -R "rm /etc/hosts" "$dir/disk.raw" >/dev/null 2>&1
  debugfs -w -R "write $r/etc/hosts.vm /etc/hosts" "$dir/disk.raw" >/dev/null 2>&1
}

# d13vm_net: the system VM's network, a QEMU with no machine: its user-mode network (DHCP for
# the VM, ssh forwarded from 127.0.0.1; restrict=on: no way out to anything else) on a hub with
# an L2TPv3 tunnel over UDP on 127.0.0.1 to UML's vec0.
d13vm_net() {
  local dir p=$SVM_D13VM_SSH_PORT
  dir=$(d13vm_dir)
  stop_pidfile "$dir/net.pid" 5
  qemu-system-x86_64 -name svm-debian13-vm-net -machine none -nodefaults -display none \
    -netdev "user,id=user,restrict=on,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:$p-:22" \
    -netdev "l2tpv3,id=vm,src=127.0.0.1,dst=127.0.0.1,udp=on,srcport=$p,dstport=$((p + 1)),txsession=1,rxsession=1,counter=off" \
    -netdev hubport,id=p0,hubid=0,netdev=user -netdev hubport,id=p1,hubid=0,netdev=vm \
    -pidfile "$dir/net.pid" -daemonize 2>"$dir/net.log" || die "the system VM's network (QEMU) did not start: $(cat "$dir/net.log")"
}

# d13vm_boot: boot the system VM and wait for its ssh. UML runs on one CPU (it has one): its
# processes hand over to each other on every system call, much faster on the same CPU.
d13vm_boot() {
  local dir kver t0 p=$SVM_D13VM_SSH_PORT
  dir=$(d13vm_dir)
  kver=$(d13vm_kernel)
  rm -f "$dir/console.log"
  rm -rf "${dir:?}/$SVM_D13VM_UMID"
  t0=$(date +%s)
  d13vm_net
  (setsid taskset -c "$(($(nproc) - 1))" linux.uml umid="$SVM_D13VM_UMID" uml_dir="$dir" \
    mem="$SVM_D13VM_MEMORY" ubd0="$dir/disk.raw" root=/dev/ubda rw hostfs="$SVM_REPO" \
    "vec0:transport=l2tpv3,udp=1,src=127.0.0.1,srcport=$((p + 1)),dst=127.0.0.1,dstport=$p,rx_session=1,tx_session=1" \
    con=null con0=null,fd:1 quiet systemd.show_status=0 >"$dir/console.log" 2>&1 </dev/null &)
  wait_for 600 d13vm_ssh true || { tail -20 "$dir/console.log"; die "the Debian 13 system VM did not answer on ssh within 10 minutes (console above: $dir/console.log)"; }
  echo "Debian 13 system VM up in $(($(date +%s) - t0)) s (UML kernel $kver, systemd, $(d13vm_ssh 'cat /sys/fs/cgroup/cgroup.controllers' | tr ' ' ,) controllers in the unified hierarchy)"
}

# d13vm_enter SCRIPT ARGS...: the Debian 13 root made and set up (slurm-vm built and installed
# in it, its guest images made), a disk made of it, the VM booted, SCRIPT run inside it.
d13vm_enter() {
  need_root
  local dir
  dir=$(d13vm_dir)
  mkdir -p "$dir"
  d13vm_stop
  d13_build
  host_cluster_stop
  d13_mount
  echo "==> slurm-vm built and installed in the Debian 13 root"
  d13_install ||
    die "setting up slurm-vm in the Debian 13 root failed"
  d13_stop
  echo "==> the system VM's disk"
  d13vm_configure_root
  d13vm_disk
  echo "==> booting the Debian 13 system VM under User-Mode Linux"
  d13vm_boot
  d13vm_run "$@"
}

# d13vm_run CMD...: CMD in the system VM, as root, in this tree (mounted read-only there).
d13vm_run() {
  local q
  q=$(printf '%q ' "$@")
  d13vm_ssh "cd $(printf %q "$SVM_REPO") && env SVM_PLATFORM=debian13-vm SVM_BUILD=$SVM_REPO/build-debian13 SVM_TIME_FACTOR=$SVM_D13VM_TIME_FACTOR CI=${CI:-} $q"
}
