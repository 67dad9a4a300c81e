# The test guest under libvirt, outside Slurm, through the admin's `slurm-vm try`: it boots,
# answers, powers off on an ACPI request or is destroyed, and leaves nothing behind.

test_guest_boots_answers_and_powers_off_on_acpi_shutdown() {
  local out
  out=$(slurm-vm try tiny -- /bin/sh -c 'echo guest-kernel $(uname -r); hostname' 2>&1)
  assert_contains "$out" "agent ready after" "slurm-vm try"
  assert_contains "$out" "guest-kernel 6.1" "slurm-vm try"
  assert_contains "$out" "try-vm" "guest hostname"
  assert_contains "$out" "graceful shutdown: domain svm-[0-9]*-try powered off" "slurm-vm try"
  assert_contains "$out" ": gone" "slurm-vm try"
  assert_no_leftovers
}

test_guest_destroy_without_grace() {
  local out
  out=$(slurm-vm try tiny --destroy -- true 2>&1)
  assert_contains "$out" "destroy: domain svm-[0-9]*-try destroyed" "slurm-vm try --destroy"
  assert_contains "$out" ": gone" "slurm-vm try --destroy"
  assert_no_leftovers
}

test_overlay_leaves_base_image_untouched() {
  local base=/var/lib/slurm-vm/images/tinydisk/base.qcow2 before after out
  before=$(md5sum <"$base")
  out=$(slurm-vm try tinydisk -- /bin/sh -c 'mkdir -p /mnt && mount /dev/vda /mnt &&
    cat /mnt/marker.txt && dd if=/dev/zero of=/mnt/fill bs=1M count=8 2>/dev/null &&
    echo changed >/mnt/marker.txt && umount /mnt && echo guest-wrote' 2>&1)
  assert_contains "$out" "slurm-vm tinydisk base" "the guest reads the base's file"
  assert_contains "$out" "guest-wrote" "the guest writes its disk"
  after=$(md5sum <"$base")
  assert_eq "$after" "$before" "base image checksum"
  assert_no_leftovers
}
