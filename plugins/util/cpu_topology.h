// Slurm's abstract CPU ids and the kernel's. Slurm numbers a node's CPUs socket by socket, core
// by core, the threads of a core next to each other (what slurm_job_cpus_allocated_str_on_node
// gives); the kernel often numbers the first thread of every core first. slurmd maps one to the
// other through the node's topology (xcpuinfo_abs_to_mac); this does the same from sysfs, so a
// VM's vCPUs are pinned to the CPUs Slurm gave the job.
#pragma once

#include <string>
#include <vector>

namespace svm {

// The kernel's CPU ids in Slurm's abstract order: every CPU with a topology folder under
// `sysfs_cpu_dir` (cpuN/topology), sorted by package, then core, then the CPU id. Throws Error
// naming the file it could not read.
std::vector<unsigned> kernel_cpus_in_slurm_order(
    const std::string &sysfs_cpu_dir = "/sys/devices/system/cpu");

// The kernel's ids of Slurm's `abstract` ids, given the order above. Throws Error when an id is
// beyond the node's CPUs (slurm.conf describes more CPUs than the node has).
std::vector<unsigned> kernel_cpus_of(const std::vector<unsigned> &abstract,
                                     const std::vector<unsigned> &slurm_order);

}  // namespace svm
