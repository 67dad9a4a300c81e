#!/bin/bash
# slurm-vm quick start, as root on a fresh Debian 12 machine: installs what is needed from
# Debian's packages, builds, starts a local cluster (3 nodes, accounting, libvirt), boots the
# test guest once on its own, then runs a real batch job inside a VM and shows its output.
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"
. "$SVM_REPO/contrib/lib/setup.sh"

svm_setup

phase "boot the guest 'tiny' on its own (slurm-vm try)"
slurm-vm try tiny

phase "what this node offers VM jobs (slurm-vm check)"
# Exit status 1 means warnings (this machine's broken KVM is one): shown, not fatal.
slurm-vm check || true

phase "a batch job inside a VM, as user $SVM_TEST_USER"
home=/home/$SVM_TEST_USER
cat >"$home/hello-vm.sh" <<'JOB'
#!/bin/sh
echo "hello from $(hostname), a VM on $SLURMD_NODENAME"
echo "kernel: $(uname -r)   user: $(id -u)   cwd: $(pwd)"
echo "job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, $SLURM_CPUS_ON_NODE CPU(s)"
JOB
chown "$SVM_TEST_USER:" "$home/hello-vm.sh"
job=$(runuser -u "$SVM_TEST_USER" -- env HOME="$home" USER="$SVM_TEST_USER" \
  bash -c "cd '$home' && sbatch --parsable --vm-image=tiny -o hello-vm-%j.out hello-vm.sh")
echo "$ sbatch --vm-image=tiny hello-vm.sh        (as $SVM_TEST_USER)"
echo "Submitted batch job $job"
for _ in $(seq 1 240); do
  state=$(sacct -n -X -P -j "$job" -o State 2>/dev/null | head -1)
  case "$state" in COMPLETED | FAILED | CANCELLED* | TIMEOUT) break ;; esac
  sleep 0.5
done
echo "$ cat $home/hello-vm-$job.out"
cat "$home/hello-vm-$job.out"
echo "$ sacct -j $job -X -o JobID,User,State,ExitCode,NodeList"
sacct -j "$job" -X -o JobID,User,State,ExitCode,NodeList
# The epilog stops the VM just after the job ends: wait for its line, to show the shutdown.
wait_for 30 grep -q "slurm-vm: job $job .*VM stopped" "$SVM_LOG"/slurmd-node*.log || true
echo "$ grep 'slurm-vm: job $job' $SVM_LOG/slurmd-node*.log"
grep -h "slurm-vm: job $job " "$SVM_LOG"/slurmd-node*.log

phase "a job script in Debian 11 (the debian11 image), as user $SVM_TEST_USER"
cat >"$home/job.sh" <<'JOB'
#!/bin/bash
. /etc/os-release; echo "$PRETTY_NAME, kernel $(uname -r), $(python3 --version), I am $(id -un)"
JOB
chown "$SVM_TEST_USER:" "$home/job.sh"
echo "$ cat job.sh"
cat "$home/job.sh"
d11=$(runuser -u "$SVM_TEST_USER" -- env HOME="$home" USER="$SVM_TEST_USER" \
  bash -c "cd '$home' && sbatch --parsable --vm-image=debian11 job.sh")
echo "$ sbatch --vm-image=debian11 job.sh        (as $SVM_TEST_USER; it boots Debian 11 under TCG here)"
echo "Submitted batch job $d11"
for _ in $(seq 1 600); do
  state=$(sacct -n -X -P -j "$d11" -o State 2>/dev/null | head -1)
  case "$state" in COMPLETED | FAILED | CANCELLED* | TIMEOUT) break ;; esac
  sleep 0.5
done
echo "$ cat slurm-$d11.out"
cat "$home/slurm-$d11.out"

phase "accounting: which physical host ran the VM, and usage per host"
echo "$ sacct -j $job -X -o JobID,NodeList,AdminComment%60"
sacct -j "$job" -X -o JobID,NodeList,AdminComment%60
echo "$ slurm-vm report --from $(date +%F) --to $(date -d tomorrow +%F)"
slurm-vm report --from "$(date +%F)" --to "$(date -d tomorrow +%F)"

phase_summary
cat <<MSG

Running now: munged, MariaDB, slurmdbd, slurmctld, slurmd node1..node3 (127.0.0.1),
virtlogd and libvirtd. Logs: $SVM_LOG. Users: $SVM_TEST_USER, $SVM_OTHER_USER.
Try:   su - $SVM_TEST_USER -c 'srun -N2 --vm-image=tiny hostname'
       su - $SVM_TEST_USER -c 'srun --vm-image=debian11 python3 --version'
Stop:  $SVM_REPO/contrib/cluster.sh stop
MSG
