#!/bin/bash
# slurm-vm quick start, as root on a fresh Debian 12 or 13 machine: installs what is needed
# from Debian's packages, builds, starts a local cluster (3 nodes, accounting, libvirt), boots
# the test guest once on its own, then runs a real batch job inside a VM and shows its output.
#
#   contrib/quickstart.sh                        on this machine, with its own Debian release
#   contrib/quickstart.sh --platform debian13    the same inside a Debian 13 root made on this
#                                                machine (contrib/platform.sh debian13 CMD...)
#   contrib/quickstart.sh --platform debian13-vm the same inside a Debian 13 system VM (systemd,
#                                                cgroup v2), booted on this machine
set -euo pipefail
SVM_REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$SVM_REPO/contrib/lib/common.sh"
. "$SVM_REPO/contrib/lib/setup.sh"
. "$SVM_REPO/contrib/lib/platform.sh"

platform_option "$@"
case "$SVM_PLATFORM_ARG" in
  host) ;;
  debian13) d13_enter contrib/quickstart.sh; exit ;;
  debian13-vm) d13vm_enter contrib/quickstart.sh; exit ;;
  *) die "--platform $SVM_PLATFORM_ARG: the quick start sets up one platform at a time" ;;
esac

svm_setup

phase "boot the guest 'tiny' on its own (slurm-vm try)"
slurm-vm try tiny

phase "what this node offers VM jobs (slurm-vm check)"
# Exit status 1 means warnings (this machine's broken KVM is one): shown, not fatal.
slurm-vm check || true

home=/home/$SVM_TEST_USER

# submit_as_user SECONDS SBATCH_ARGS...: submits as the test user from its home, shows the
# command, waits up to SECONDS for the job to end, and prints the job id on stdout.
submit_as_user() {
  local wait=$1 j state
  shift
  j=$(runuser -u "$SVM_TEST_USER" -- env HOME="$home" USER="$SVM_TEST_USER" \
    bash -c "cd '$home' && sbatch --parsable $*")
  printf '$ sbatch %s        (as %s)\nSubmitted batch job %s\n' "$*" "$SVM_TEST_USER" "$j" >&2
  for _ in $(seq 1 $((wait * 2))); do
    state=$(sacct -n -X -P -j "$j" -o State 2>/dev/null | head -1)
    case "$state" in COMPLETED | FAILED | CANCELLED* | TIMEOUT) break ;; esac
    sleep 0.5
  done
  echo "$j"
}

phase "a batch job inside a VM, as user $SVM_TEST_USER"
cat >"$home/hello-vm.sh" <<'JOB'
#!/bin/sh
echo "hello from $(hostname), a VM on $SLURMD_NODENAME"
echo "kernel: $(uname -r)   user: $(id -un)   cwd: $(pwd)"
echo "job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, $SLURM_CPUS_ON_NODE CPU(s)"
JOB
chown "$SVM_TEST_USER:" "$home/hello-vm.sh"
job=$(submit_as_user 120 --vm-image=tiny -o hello-vm-%j.out hello-vm.sh)
echo "$ cat $home/hello-vm-$job.out"
cat "$home/hello-vm-$job.out"
echo "$ sacct -j $job -X -o JobID,User,State,ExitCode,NodeList"
sacct -j "$job" -X -o JobID,User,State,ExitCode,NodeList
# The epilog stops the VM just after the job ends: wait for its line, to show the shutdown.
wait_for 30 grep -q "slurm-vm: job $job .*VM stopped" "$SVM_LOG"/slurmd-node*.log || true
echo "$ grep 'slurm-vm: job $job' $SVM_LOG/slurmd-node*.log"
grep -h "slurm-vm: job $job " "$SVM_LOG"/slurmd-node*.log

phase "a job script in Debian 11 (the debian11 image; it boots under TCG here), as $SVM_TEST_USER"
cat >"$home/job.sh" <<'JOB'
#!/bin/bash
. /etc/os-release; echo "$PRETTY_NAME, kernel $(uname -r), $(python3 --version), I am $(id -un)"
JOB
chown "$SVM_TEST_USER:" "$home/job.sh"
echo "$ cat job.sh"
cat "$home/job.sh"
d11=$(submit_as_user 300 --vm-image=debian11 job.sh)
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
