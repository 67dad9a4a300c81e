#!/bin/bash
# Put the slurm-vm agent into a copy of a systemd guest disk: the shell sketch of what
# `slurm-vm image prepare` does (issue 10), used to test images such as debian11 by hand.
#
#   contrib/lib/install-agent.sh SRC AGENT DEST     SRC: qcow2 or raw disk; DEST must not exist
#
# SRC is never modified. DEST gets, and nothing else (virt-customize would also refresh the
# random seed; on debian11 it says it cannot and leaves it):
#   /usr/local/libexec/slurm-vm/slurm-vm-agent   the static agent
#   /usr/local/libexec/slurm-vm/ports            loads virtio_console, makes /dev/virtio-ports links
#   /etc/systemd/system/slurm-vm-agent.service   started in the sysinit stage, before most units
#   /usr/local/bin/{srun,sbatch,...}             host-call shims: links to the agent
# The image surgery is libguestfs' (virt-customize), which boots its own appliance: see
# guestfs-env.sh for what it needs on a machine without a usable KVM or without /boot.
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/../.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"
. "$SVM_REPO/contrib/lib/guestfs-env.sh"

src=${1:?usage: install-agent.sh SRC AGENT DEST}
agent=${2:?usage: install-agent.sh SRC AGENT DEST}
dest=${3:?usage: install-agent.sh SRC AGENT DEST}
[ -f "$src" ] || die "$src: no such disk image"
[ -x "$agent" ] || die "$agent: no such agent binary"
[ ! -e "$dest" ] || die "$dest exists: choose a new name"
command -v virt-customize >/dev/null || die "virt-customize is missing: apt-get install libguestfs-tools"

guestfs_env

# Keep in step with hostcall_commands() in plugins/exec/protocol/messages.cpp.
hostcalls=(srun sbatch scancel scontrol squeue sacct sinfo sstat salloc)
dir=/usr/local/libexec/slurm-vm

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/slurm-vm-agent.service" <<EOF
# slurm-vm: the agent that runs a job's tasks in this VM for the host (virtio-serial ports
# org.slurmvm.exec.N). Started as early as it can be, once the root filesystem is writable:
# the host waits for it to answer.
[Unit]
Description=slurm-vm agent
DefaultDependencies=no
After=systemd-remount-fs.service systemd-journald.socket
Before=sysinit.target shutdown.target
Conflicts=shutdown.target

[Service]
ExecStartPre=$dir/ports
ExecStart=$dir/slurm-vm-agent
Restart=always
RestartSec=1

[Install]
WantedBy=sysinit.target
EOF
# The agent serves the ports it finds when it starts. udev would load virtio_console and make
# the /dev/virtio-ports links, but its coldplug takes seconds under TCG: do both here, as the
# tiny guest's rc.sh does, and load 9p's modules for the shares mounted at setup.
cat >"$tmp/ports" <<'EOF'
#!/bin/sh
modprobe -qa virtio_console 9pnet_virtio 9p
mkdir -p /dev/virtio-ports
i=0 seen=0
while [ $i -lt 100 ]; do
    for p in /sys/class/virtio-ports/*; do
        [ -r "$p/name" ] || continue
        n=$(cat "$p/name")
        [ -n "$n" ] && ln -sfn "../${p##*/}" "/dev/virtio-ports/$n"
    done
    # Done when some exec ports exist and no new one came in the last 0.1 s.
    now=$(ls /dev/virtio-ports | grep -c '^org\.slurmvm\.exec\.')
    [ "$now" -gt 0 ] && [ "$now" = "$seen" ] && exit 0
    seen=$now
    i=$((i + 1))
    sleep 0.1
done
echo "slurm-vm: no org.slurmvm.exec.* virtio port after 10 s" >&2
exit 0
EOF

links=""
for c in "${hostcalls[@]}"; do links="$links:/usr/local/bin/$c"; done
part=$dest.part
rm -f "$part"
trap 'rm -rf "$tmp"; rm -f "$part"' EXIT
qemu-img convert -O qcow2 "$src" "$part"
virt-customize -q -a "$part" --no-network \
  --mkdir "$dir" --mkdir /usr/local/bin --mkdir /etc/systemd/system/sysinit.target.wants \
  --upload "$agent:$dir/slurm-vm-agent" --chmod "0755:$dir/slurm-vm-agent" \
  --upload "$tmp/ports:$dir/ports" --chmod "0755:$dir/ports" \
  --upload "$tmp/slurm-vm-agent.service:/etc/systemd/system/slurm-vm-agent.service" \
  --chmod "0644:/etc/systemd/system/slurm-vm-agent.service" \
  --link "/etc/systemd/system/slurm-vm-agent.service:/etc/systemd/system/sysinit.target.wants/slurm-vm-agent.service" \
  --link "$dir/slurm-vm-agent$links" >&2 ||
  die "virt-customize failed on $part"
chmod 0644 "$part"
mv "$part" "$dest"
echo "$dest"
