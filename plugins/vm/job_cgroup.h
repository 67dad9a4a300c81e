// A job VM's place in the job's cgroups (cgroup v1, Slurm 22.05's proctrack/cgroup, task/cgroup
// and jobacct_gather/cgroup): where the job's extern step is, and moving QEMU there. Free of
// Slurm: the layout is read from the file system; every root is injectable for tests. See
// docs/architecture.md, "Containment (issue 11)".
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

inline constexpr std::string_view kCgroupV1Mount = "/sys/fs/cgroup";

// The controllers a job VM joins: freezer (scontrol suspend freezes the step), cpuset (the
// job's CPUs), cpuacct and memory (the step's accounting and the job's memory limit).
// devices, cpu, blkio and pids stay libvirt's: QEMU needs /dev/kvm and its own devices.
inline const std::vector<std::string> &job_vm_controllers() {
    static const std::vector<std::string> controllers{"freezer", "cpuset", "cpuacct", "memory"};
    return controllers;
}

// The two folders Slurm 22.05 may use for job `jobid`'s extern step in `controller`'s hierarchy,
// in the order to try them:
//   <mount>/<controller>/slurm_<node>/uid_<uid>/job_<jobid>/step_extern  (multiple-slurmd
//     builds, as Debian's slurmd: CgroupPrepend "/slurm_%n")
//   <mount>/<controller>/slurm/uid_<uid>/job_<jobid>/step_extern         (other builds)
// Throws Error for a node or controller name that could leave its folder ("", ".", "..", '/').
std::vector<std::string> extern_step_cgroup_candidates(std::string_view mount,
                                                       std::string_view controller,
                                                       std::string_view node, uint32_t uid,
                                                       uint32_t jobid);

// The first candidate that is a folder; nothing when neither is (no cgroup plugin for that
// controller, no PrologFlags=Contain, or the step is not there yet).
std::optional<std::string> find_extern_step_cgroup(std::string_view mount,
                                                   std::string_view controller,
                                                   std::string_view node, uint32_t uid,
                                                   uint32_t jobid);

// The folder of each of `controllers`. Throws Error naming the job, the node, the first missing
// controller and the folders tried.
std::map<std::string, std::string> find_extern_step_cgroups(
    std::string_view mount, const std::vector<std::string> &controllers, std::string_view node,
    uint32_t uid, uint32_t jobid);

// jobacct_gather/cgroup counts the extern step from its task folder, `<step>/task_<n>` (n is
// the node's index in the job) in cpuacct and memory: the only task_* folder under `step_dir`.
// Nothing when there is none; throws Error when there are several.
std::optional<std::string> find_extern_task_cgroup(const std::string &step_dir);

// Makes the cgroup `<parent>/<name>` (an existing one is kept) and returns its path. Under a
// cpuset parent (one with cpuset.cpus), the child gets the parent's cpuset.cpus and cpuset.mems
// when its own are empty: a new cpuset has none and accepts no task until they are set.
std::string make_child_cgroup(const std::string &parent, std::string_view name);

// Writes `value` to the control file `<folder>/<name>`, in one write. Throws Error naming the
// file, the value and the kernel's reason.
void write_cgroup_file(const std::string &folder, std::string_view name, std::string_view value);

enum class CgroupMove {
    Process,  // the pid to cgroup.procs: the kernel moves every thread at once
    Threads,  // each thread id under <proc>/<pid>/task to tasks, until no new thread shows up
};

// Moves process `pid` (all its threads) into the cgroup `folder`. A thread that ends meanwhile
// is no error; a process that is gone is. Throws Error naming the process, the thread, the
// file and the reason. `proc` is /proc, injectable for tests.
void move_to_cgroup(const std::string &folder, pid_t pid, CgroupMove how,
                    const std::string &proc = "/proc");

// The ids listed in `<folder>/<file>` (cgroup.procs: processes; tasks: threads).
std::vector<pid_t> cgroup_members(const std::string &folder,
                                  std::string_view file = "cgroup.procs");

// A job VM's own cgroup, one per controller, below the job's extern step: the freezer and the
// accounting are hierarchical, so the VM is suspended and counted with the step, but the step's
// SIGKILL at the job's end (proctrack/cgroup) reaches only the step folder's own members, and the
// epilog can still stop the VM gracefully. See docs/architecture.md, "Containment".
inline constexpr std::string_view kVmCgroupName = "slurm_vm";

// Where the VM's cgroup goes in each of `controllers` the job has on `node`: under the extern
// step in freezer and cpuset; under the step's task folder in cpuacct and memory, where
// jobacct_gather/cgroup reads the extern step's usage (the step folder when there is none).
struct VmCgroupPlan {
    std::vector<std::pair<std::string, std::string>> parents;  // controller, folder, in order
    std::vector<std::string> missing;  // controllers with no extern step folder for the job
};
// Throws Error for a layout it cannot read (several task folders, an unreadable step folder).
VmCgroupPlan plan_vm_cgroups(std::string_view mount, const std::vector<std::string> &controllers,
                             std::string_view node, uint32_t uid, uint32_t jobid);

struct VmCgroupPlacement {
    std::vector<std::pair<std::string, std::string>> folders;  // controller, <parent>/slurm_vm
    std::vector<std::string> notes;  // what did not work and changes little, one line each
};

// Makes `<parent>/slurm_vm` for each planned controller and moves each of `processes` (all its
// threads: cgroup.procs, else thread by thread) and its descendants there. In memory,
// move_charge_at_immigrate=3 first, so that what QEMU touched so far is charged to the job; a
// kernel that refuses it (charge moving is gone from Linux 6.13) gives a note, the same words
// on every job, not an error.
// Throws Error naming the controller, the process and the reason; a descendant that ends
// meanwhile is no error. `proc` is /proc, injectable for tests.
VmCgroupPlacement move_into_vm_cgroups(const VmCgroupPlan &plan,
                                       const std::vector<pid_t> &processes,
                                       const std::string &proc = "/proc");

struct CgroupCleanup {
    std::vector<std::string> removed;   // folders removed
    std::vector<std::string> problems;  // one line each: what is left and why
};

// After the job's VM is gone (the epilog): in each of `controllers` and both layouts, removes
// the VM's slurm_vm folders, then the job's folders Slurm left because of them, bottom up:
// task_<n>, step_extern, job_<jobid>, uid_<uid>. Only where a slurm_vm folder was found; a
// folder that is gone or still in use (another job of the user) is left. slurm_vm folders
// whose processes are still ending get `wait`, in all, to empty. Holds Slurm's lock of the
// controller (flock on <mount>/<controller>, as its cgroup plugin does) while it removes the job's
// folders, so that no step is being made in them meanwhile. Never throws.
CgroupCleanup remove_vm_cgroups(std::string_view mount, const std::vector<std::string> &controllers,
                                std::string_view node, uint32_t uid, uint32_t jobid,
                                std::chrono::milliseconds wait = std::chrono::milliseconds(5000));

}  // namespace svm
