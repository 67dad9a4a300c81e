#!/bin/sh
# First thing the tiny guest runs (from /etc/inittab). No udev and no module loader here:
# the modules are loaded in dependency order and the virtio port links are made by hand.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
chmod 1777 /tmp
# load-base and load-disk list them in dependency order (made by contrib/build-guest.sh from
# the kernel's modules.dep; what the kernel has built in is not there).
for m in $(cat /lib/modules/load-base); do
    insmod /lib/modules/$m.ko || echo "slurm-vm guest: insmod $m failed" >/dev/console
done
# A root disk, if the image has one, is ext4: load its modules only then.
if [ -e /sys/block/vda ]; then
    for m in $(cat /lib/modules/load-disk); do insmod /lib/modules/$m.ko; done
fi
# /dev/virtio-ports/<name> links, which udev would make. The ports appear shortly after
# virtio_console loads; wait for them (at most 5 s) so the agent finds them all at start.
mkdir -p /dev/virtio-ports
i=0
while [ $i -lt 50 ]; do
    for p in /sys/class/virtio-ports/*; do
        [ -r "$p/name" ] && ln -sf "/dev/${p##*/}" "/dev/virtio-ports/$(cat "$p/name")"
    done
    ls /dev/virtio-ports/org.slurmvm.exec.* >/dev/null 2>&1 && break
    i=$((i + 1))
    sleep 0.1
done
hostname slurm-vm-guest
ip link set lo up 2>/dev/null
# ACPI power button (virDomainShutdown) -> /etc/acpi/PWRF/00000080 -> poweroff.
# acpid needs a writable log file or it exits.
acpid -l /dev/null
echo "slurm-vm guest: up in $(cut -d' ' -f1 /proc/uptime) s" >/dev/console
