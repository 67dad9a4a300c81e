# Real OS images: Debian 11 with its own kernel and userland, made by `slurm-vm image prepare`,
# booted by firmware (debian11) and by direct kernel boot (debian11-direct).

D11_DISK=/var/lib/slurm-vm/images/debian11/debian11.qcow2

test_batch_job_in_debian11_sees_its_os_its_user_and_writes_as_the_user() {
  local j out before after
  before=$(md5sum "$D11_DISK" | cut -d' ' -f1)
  cat >"$TEST_DIR/job.sh" <<'JOB'
#!/bin/bash
. /etc/os-release
echo "os=$ID-$VERSION_ID"
echo "kernel=$(uname -r)"
echo "python=$(python3 -c 'print(6 * 7)')"
echo "user=$(id -un) whoami=$(whoami) passwd=$(getent passwd "$USER" | cut -d: -f1,6)"
echo "groups=$(id -Gn)"
echo "cwd=$(pwd) home=$HOME"
echo from-debian11 >made-in-debian11.txt
srun hostname | sed 's/^/step=/'
exit 3
JOB
  chown "$SVM_TEST_USER:" "$TEST_DIR/job.sh"
  j=$(as_user "sbatch --parsable -w node1 --mem=1024 --vm-image=debian11 -o out-%j.txt job.sh")
  wait_job_done "$j" 400
  out=$(cat "$TEST_DIR/out-$j.txt")
  assert_contains "$out" "^os=debian-11\$" "os-release in the VM"
  assert_contains "$out" "^kernel=5\.10\." "the image's own kernel"
  assert_not_contains "$out" "kernel=$(uname -r)" "the image's own kernel"
  assert_contains "$out" "^python=42\$" "python3"
  assert_contains "$out" "^user=$SVM_TEST_USER whoami=$SVM_TEST_USER passwd=$SVM_TEST_USER:/home/$SVM_TEST_USER\$" "the user by name"
  assert_contains "$out" "^groups=$(id -Gn "$SVM_TEST_USER")\$" "the user's groups"
  assert_contains "$out" "^cwd=$TEST_DIR home=/home/$SVM_TEST_USER\$" "working directory and home"
  assert_contains "$out" "^step=node1-vm$j\$" "an srun step inside the batch job"
  assert_eq "$(cat "$TEST_DIR/made-in-debian11.txt")" "from-debian11" "file written in the VM"
  assert_eq "$(stat -c %U "$TEST_DIR/made-in-debian11.txt")" "$SVM_TEST_USER" "its owner on the host"
  wait_sacct_field "$j" ExitCode "3:0"
  after=$(md5sum "$D11_DISK" | cut -d' ' -f1)
  assert_eq "$after" "$before" "the base image after the job"
  # The job is over: the agent syncs and powers the guest off when the epilog asks, whether or
  # not systemd-logind runs yet (ACPI would need it).
  assert_contains "$(wait_for_vm_stopped "$j")" "VM stopped: domain svm-$j-node1 powered off after [0-9]* ms (agent)" "the stop in slurmd's log"
  assert_no_leftovers
}

test_direct_boot_runs_two_tasks_and_streams_10_mb() {
  local out
  out=$(as_user "srun -w node2 -n2 -t 10 --mem=1024 --vm-image=debian11-direct bash -c 'echo task \$SLURM_PROCID \$(hostname) \$(uname -r | cut -d. -f1-2)'" 2>&1)
  assert_contains "$out" "^task 0 node2-vm[0-9]* 5.10\$" "task 0"
  assert_contains "$out" "^task 1 node2-vm[0-9]* 5.10\$" "task 1"
  out=$(as_user "srun -w node2 -t 10 --mem=1024 --vm-image=debian11-direct head -c 10000000 /dev/zero" | wc -c)
  assert_eq "$out" "10000000" "bytes streamed out of the VM"
  assert_no_leftovers
}

test_the_vm_reaches_the_hosts_loopback_through_nat_and_not_without_network() {
  local port out pid
  port=$((20000 + RANDOM % 20000))
  # A listener on this machine's loopback only; the guest reaches it as 10.0.2.2 (QEMU's NAT).
  python3 -c "
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port)); s.listen(4); s.settimeout(400)
while True:
    c, _ = s.accept(); c.sendall(b'hello-from-host\n'); c.close()
" &
  pid=$!
  out=$(as_user "srun -w node3 -t 10 --mem=1024 --vm-image=debian11-direct python3 -c 'import socket; print(socket.create_connection((\"10.0.2.2\", $port), 20).recv(64).decode().strip())'" 2>&1)
  assert_contains "$out" "^hello-from-host\$" "a connection from the VM to the host's loopback"
  out=$(as_user "srun -w node3 -t 10 --mem=1024 --vm-image=debian11-offline python3 -c 'import socket; socket.create_connection((\"10.0.2.2\", $port), 5)'" 2>&1) &&
    fail "the VM without network reached the host: $out"
  kill "$pid" 2>/dev/null
  assert_no_leftovers
}

test_image_prepare_refuses_bad_inputs_with_one_line_and_leaves_nothing() {
  local out rc d=$TEST_DIR/prepare here
  here=$(dirname "${BASH_SOURCE[0]}")
  mkdir -p "$d"
  # This machine has no kernel in /boot for libguestfs's appliance: the set-up's helper gives
  # it Debian's (as an admin on such a host would).
  export SVM_REPO=$here/../..
  . "$here/../../contrib/lib/common.sh"
  . "$here/../../contrib/lib/guestfs-env.sh"
  guestfs_env
  echo "not a disk" >"$d/notes.txt"
  out=$(slurm-vm image prepare "$d/notes.txt" "$d/out.qcow2" 2>&1) && rc=0 || rc=$?
  assert_eq "$rc" "1" "exit status for a text file"
  assert_contains "$out" "notes.txt holds no Linux system libguestfs can find" "error for a text file"
  out=$(slurm-vm image prepare "$d/missing.qcow2" "$d/out.qcow2" 2>&1) && fail "a missing source was accepted"
  assert_contains "$out" "missing.qcow2: no such disk image" "error for a missing source"
  touch "$d/exists.qcow2"
  out=$(slurm-vm image prepare "$D11_DISK" "$d/exists.qcow2" 2>&1) && fail "an existing destination was accepted"
  assert_contains "$out" "exists.qcow2 exists: choose a new file" "error for an existing destination"
  # A disk with no operating system: libguestfs finds no Linux in it.
  qemu-img create -q -f qcow2 "$d/empty.qcow2" 64M
  out=$(slurm-vm image prepare "$d/empty.qcow2" "$d/out.qcow2" 2>&1) && fail "an empty disk was accepted"
  assert_contains "$out" "empty.qcow2 holds no Linux system libguestfs can find" "error for an empty disk"
  # A Linux root file system with no room left: virt-customize cannot add the agent.
  mkdir -p "$d/full/etc" "$d/full/bin" "$d/full/usr/bin" "$d/full/sbin"
  printf 'ID=debian\nVERSION_ID="11"\n' >"$d/full/etc/os-release"
  echo "/dev/vda / ext4 defaults 0 1" >"$d/full/etc/fstab"
  cp /bin/dash "$d/full/bin/sh"
  head -c $((6380 * 1024)) /dev/urandom >"$d/full/fill.bin" # random: mke2fs -d keeps zeros as holes
  mkfs.ext4 -q -F -d "$d/full" "$d/full.raw" 8M
  rm -rf "$d/full"
  out=$(slurm-vm image prepare "$d/full.raw" "$d/out.qcow2" 2>&1) && fail "a full disk was accepted"
  assert_contains "$out" "full.raw has no room for the agent (.*No space left on device)" "error for a full disk"
  assert_eq "$(ls "$d" | sort | tr '\n' ' ')" "empty.qcow2 exists.qcow2 full.raw notes.txt " "files left in the folder"
  out=$(slurm-vm image prepare --bogus 2>&1) && rc=0 || rc=$?
  assert_eq "$rc" "2" "exit status for an unknown option"
}

test_scancel_in_debian11_terms_the_job_and_systemd_shuts_down_within_the_grace_period() {
  local j i line
  # "started" once systemd-logind runs: it is what turns the ACPI power button into a shutdown.
  j=$(as_user "sbatch --parsable -w node3 --mem=1024 --vm-image=debian11-direct -o out-%j.txt --wrap 'trap \"echo got-sigterm > term.txt; exit 0\" TERM; i=0; until systemctl is-active -q systemd-logind || [ \$i -ge 120 ]; do sleep 0.5; i=\$((i+1)); done; echo started; while :; do sleep 1; done'")
  for ((i = 0; i < 600; i++)); do grep -q started "$TEST_DIR/out-$j.txt" 2>/dev/null && break; sleep 0.5; done
  assert_contains "$(cat "$TEST_DIR/out-$j.txt")" "started" "job output"
  scancel "$j"
  wait_job_done "$j" 120
  assert_eq "$(job_state "$j")" "CANCELLED" "job state"
  assert_eq "$(cat "$TEST_DIR/term.txt" 2>/dev/null)" "got-sigterm" "SIGTERM inside the guest"
  line=$(wait_for_vm_stopped "$j")
  # Powered off within the grace period (grace=10 on the test cluster): no destroy.
  assert_contains "$line" "image debian11-direct: VM stopped: domain svm-$j-node3 powered off after" "stop in slurmd's log"
  assert_no_leftovers
  assert_nodes_up
}

test_try_boots_debian11_by_firmware() {
  local out
  out=$(slurm-vm try debian11 -- /bin/sh -c '. /etc/os-release; echo os=$VERSION_CODENAME; cat /proc/cmdline' 2>&1)
  assert_contains "$out" "agent ready after" "slurm-vm try"
  assert_contains "$out" "^os=bullseye\$" "slurm-vm try"
  # Firmware boot: GRUB's command line, not one libvirt passed.
  assert_contains "$out" "BOOT_IMAGE=" "kernel command line"
  assert_contains "$out" "graceful shutdown: domain svm-[0-9]*-try powered off" "slurm-vm try"
  assert_no_leftovers
}

test_try_boots_debian11_by_uefi_firmware() {
  local out
  out=$(slurm-vm try debian11-uefi -- /bin/sh -c 'test -d /sys/firmware/efi && echo firmware=uefi; cat /proc/cmdline' 2>&1)
  assert_contains "$out" "agent ready after" "slurm-vm try"
  # Booted by OVMF, through GRUB on the disk's EFI system partition.
  assert_contains "$out" "^firmware=uefi\$" "UEFI firmware in the guest"
  assert_contains "$out" "BOOT_IMAGE=" "GRUB's kernel command line"
  assert_contains "$out" "graceful shutdown: domain svm-[0-9]*-try powered off" "slurm-vm try"
  assert_no_leftovers
}

test_a_uefi_batch_job_runs_and_leaves_no_variable_store() {
  local j
  j=$(as_user "sbatch --parsable -w node2 --mem=1024 --vm-image=debian11-uefi -o out-%j.txt --wrap 'test -d /sys/firmware/efi && echo uefi-\$(id -un)'")
  wait_job_done "$j" 400
  assert_eq "$(cat "$TEST_DIR/out-$j.txt")" "uefi-$SVM_TEST_USER" "job output"
  wait_sacct_field "$j" ExitCode "0:0"
  assert_no_leftovers
  # The VM's own copy of the UEFI variables went with it; libvirt kept none of its own.
  assert_eq "$(ls /var/lib/libvirt/qemu/nvram 2>/dev/null | grep -c '^svm-' || true)" "0" "libvirt nvram files"
}

test_virtiofs_shares_the_work_dir_with_the_users_rights_only() {
  local out
  out=$(as_user "srun -w node3 -t 10 --mem=1024 --vm-image=debian11-virtiofs bash -c 'findmnt -n -o FSTYPE -T .; echo over-virtiofs > vfs.txt; touch /home/$SVM_OTHER_USER/from-vm 2>&1 | sed s/.*from-vm.:/other-home:/; id -un'" 2>&1)
  assert_contains "$out" "^virtiofs\$" "the shared folder's file system in the guest"
  assert_contains "$out" "^other-home: Permission denied\$" "another user's home, from the VM"
  assert_contains "$out" "^$SVM_TEST_USER\$" "the user in the VM"
  assert_eq "$(cat "$TEST_DIR/vfs.txt")" "over-virtiofs" "file written over virtiofs"
  assert_eq "$(stat -c %U "$TEST_DIR/vfs.txt")" "$SVM_TEST_USER" "its owner on the host"
  [ ! -e "/home/$SVM_OTHER_USER/from-vm" ] || fail "the VM wrote into another user's home"
  assert_nodes_up
  assert_no_leftovers
}

test_image_prepare_gives_an_image_without_systemd_an_init_line_or_says_why_not() {
  local out d=$TEST_DIR/noinit here bb
  here=$(dirname "${BASH_SOURCE[0]}")
  export SVM_REPO=$here/../..
  . "$here/../../contrib/lib/common.sh"
  . "$here/../../contrib/lib/guestfs-env.sh"
  guestfs_env
  # A busybox system (as Alpine's): the static busybox of the tiny guest's cache, an inittab.
  bb=$(ls "$SVM_CACHE"/guest/base-*/busybox | head -1)
  mkdir -p "$d/root/etc" "$d/root/bin" "$d/root/usr/bin" "$d/root/sbin"
  cp "$bb" "$d/root/bin/busybox"
  for a in sh grep sed chmod cat; do ln -s busybox "$d/root/bin/$a"; done
  printf 'ID=alpine\nVERSION_ID=3.19\n' >"$d/root/etc/os-release"
  echo "/dev/vda / ext4 defaults 0 1" >"$d/root/etc/fstab"
  printf '::sysinit:/bin/sh /etc/rc\n' >"$d/root/etc/inittab"
  mkfs.ext4 -q -F -d "$d/root" "$d/busybox.raw" 32M
  slurm-vm image prepare "$d/busybox.raw" "$d/busybox.qcow2" >/dev/null 2>&1 || fail "prepare of a busybox image failed"
  out=$(LIBGUESTFS_BACKEND_SETTINGS=force_tcg virt-cat -a "$d/busybox.qcow2" /etc/inittab)
  assert_contains "$out" "^::respawn:/usr/local/libexec/slurm-vm/start\$" "the agent's line in inittab"
  # No init it knows: one line that says what to do.
  rm "$d/root/etc/inittab"
  mkfs.ext4 -q -F -d "$d/root" "$d/noinit.raw" 32M
  out=$(slurm-vm image prepare "$d/noinit.raw" "$d/noinit.qcow2" 2>&1) && fail "an image without an init was accepted"
  assert_contains "$out" "noinit.raw: the image has no systemd, /etc/inittab or rc.local: start /usr/local/libexec/slurm-vm/start from its init" "error for an image without an init"
  [ ! -e "$d/noinit.qcow2" ] && [ ! -e "$d/noinit.qcow2.part" ] || fail "prepare left a file behind"
}
