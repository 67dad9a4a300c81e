// A job VM's place in the job's cgroups, on cgroup v1 (Slurm's cgroup/v1: one hierarchy per
// controller) and cgroup v2 (Slurm's cgroup/v2: the unified hierarchy): where the job's extern
// step is, moving QEMU there, and removing what our folders kept Slurm from removing. Which of
// the two a node uses is found once (JobCgroups::for_node); callers see one interface. Free of
// Slurm: the layout is read from the file system; every root is injectable for tests. See
// docs/architecture.md, "Containment".
#pragma once

#include "vm/vm_processes.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace svm {

inline constexpr std::string_view kCgroupMount = "/sys/fs/cgroup";

// Where the kernel's files are: the cgroup mount and /proc (whose 1/cgroup Slurm 24.11 reads
// to place its tree, and whose <pid>/stat the moves check).
struct CgroupRoots {
    std::string mount = std::string(kCgroupMount);
    std::string proc = "/proc";
};

enum class CgroupVersion { V1, V2 };

// "cgroup v1", "cgroup v2".
const char *to_string(CgroupVersion version);

// The hierarchy Slurm's cgroup plugin can use on the node: V2 when `mount` is the unified
// hierarchy (its root has cgroup.controllers), else V1: a hierarchy per controller below it,
// maybe beside a controller-less cgroup2 at <mount>/unified ("hybrid", which Slurm's cgroup/v2
// refuses: "Hybrid mode is not supported").
CgroupVersion detect_cgroup_version(const std::string &mount);

// One job on one node.
struct JobCgroupKey {
    std::string node;  // Slurm's node name: several slurmd may share a host, each its own tree
    uint32_t uid = 0;
    uint32_t jobid = 0;
};

// A job VM's own cgroup, below the job's extern step (and, on v2, first below the job while
// the VM boots). Always made anew by root: a folder of that name that was there already (a
// leftover, or one the user made where Slurm's v1 folders are the user's) is removed first,
// and refused when it cannot be.
inline constexpr std::string_view kVmCgroupName = "slurm_vm";

// One folder the VM joins: <parent>/slurm_vm.
struct VmCgroupTarget {
    std::string label;       // v1: the controller; v2: "unified"
    std::string parent;      // Slurm's folder
    bool cpuset = false;     // v1 cpuset: a new child has no CPUs and takes no task until set
    bool charges = false;    // v1 memory: ask the kernel to move charges with the process
    bool by_thread = false;  // v1: a process cgroup.procs refuses goes thread by thread (tasks)
    bool operator==(const VmCgroupTarget &) const = default;
};

// Where the VM goes for one job, as the node's hierarchy has it.
struct VmCgroupPlan {
    CgroupVersion version = CgroupVersion::V1;
    std::vector<VmCgroupTarget> targets;
    std::vector<std::string> controllers;  // what the VM is under, for the log
    std::vector<std::string> missing;      // controllers the job lacks here
    // Why the job has no cgroup here at all (no targets), one clause for the log: "no
    // /sys/fs/cgroup/freezer/slurm_node1/uid_1000/job_42/step_extern nor its like in ...".
    std::string absent;
    // The file that holds the job's CPUs in the kernel's numbering once the VM is moved ("":
    // the job has no cpuset): the vCPUs are pinned on them again.
    std::string cpus_file;
    // Folders of ours the move empties (the v2 boot cgroup): removed after it.
    std::vector<std::string> vacated;
};

struct VmCgroupPlacement {
    std::vector<std::pair<std::string, std::string>> folders;  // label, <parent>/slurm_vm
    std::vector<std::string> notes;  // what did not work and changes little, one line each
};

// Where a job's VM boots, before Slurm made any folder of the job's (the prolog): a cgroup
// charged to the job from QEMU's first page. `folder` "" when the node has none (cgroup v1,
// where Slurm's folders appear only with the extern step; no Slurm cgroup/v2 tree here);
// `note` says why not where one was due.
struct BootCgroup {
    std::string folder;
    std::string note;
};

struct CgroupCleanup {
    std::vector<std::string> removed;   // folders removed
    std::vector<std::string> problems;  // one line each: what is left and why
};

// The job's cgroups on a node, in the node's hierarchy.
class JobCgroups {
  public:
    // The node's hierarchy, detected once (detect_cgroup_version).
    static std::unique_ptr<JobCgroups> for_node(const CgroupRoots &roots = {});
    static std::unique_ptr<JobCgroups> v1(const CgroupRoots &roots);
    static std::unique_ptr<JobCgroups> v2(const CgroupRoots &roots);

    virtual ~JobCgroups() = default;
    virtual CgroupVersion version() const = 0;
    const CgroupRoots &roots() const { return roots_; }

    // The prolog: a cgroup of the job's for the VM to boot in (see BootCgroup), holding at most
    // `memory_max_bytes` (0: no limit of ours; Slurm's job limit comes with the extern step).
    // Never throws: a failure is the note.
    virtual BootCgroup make_boot_cgroup(const JobCgroupKey &job,
                                        uint64_t memory_max_bytes) const = 0;

    // The extern step: where the VM goes. Throws Error for a layout it cannot read (several
    // task folders, an unreadable step folder).
    virtual VmCgroupPlan plan_vm_cgroups(const JobCgroupKey &job) const = 0;

    // The epilog, after the VM is gone: removes the VM's folders, then the job's folders Slurm
    // left because of them, bottom up, only where a VM folder was; a folder that is gone or
    // still in use (another job of the user's) is left. VM folders whose processes are still
    // ending get `wait`, in all, to empty. Holds Slurm's lock (flock on the folder Slurm locks,
    // common_cgroup_lock) while it removes the job's folders. Never throws.
    virtual CgroupCleanup remove_vm_cgroups(
        const JobCgroupKey &job,
        std::chrono::milliseconds wait = std::chrono::milliseconds(5000)) const = 0;

  protected:
    explicit JobCgroups(CgroupRoots roots) : roots_(std::move(roots)) {}

  private:
    CgroupRoots roots_;
};

// Makes `<parent>/slurm_vm` anew for each target of `plan` and moves each of `processes` (held
// by pidfds: each is checked around its write) and its descendants there: cgroup.procs moves every
// thread of a process at once (on v2 also out of libvirt's threaded vcpu and emulator cgroups); on
// v1 a process it refuses goes thread by thread. On v1 memory, move_charge_at_immigrate=3 first; a
// kernel that refuses it (charge moving is gone from Linux 6.13) gives a note, the same words on
// every job, not an error. Then removes the plan's vacated folders. Throws Error naming the target,
// the process and the reason; a descendant that ends meanwhile is no error, a process that ends
// while it is moved is (its pid may be another process's by then).
VmCgroupPlacement move_into_vm_cgroups(const VmCgroupPlan &plan,
                                       const std::vector<ProcessHandle> &processes,
                                       const std::string &proc = "/proc");

// Moves `processes` and their descendants into the existing cgroup `folder` (the boot cgroup),
// as move_into_vm_cgroups does for one v2 target.
void move_into_cgroup(const std::string &folder, const std::vector<ProcessHandle> &processes,
                      const std::string &proc = "/proc");

// ---- Building blocks, for the layouts above and for tests.

// The controllers a job VM joins on v1: freezer (scontrol suspend freezes the step), cpuset (the
// job's CPUs), cpuacct and memory (the step's accounting and the job's memory limit). devices,
// cpu, blkio and pids stay libvirt's: QEMU needs /dev/kvm and its own devices.
const std::vector<std::string> &job_vm_controllers();

// v1: the two folders Slurm may use for the job's extern step in `controller`'s hierarchy, in
// the order to try them:
//   <mount>/<controller>/slurm_<node>/uid_<uid>/job_<jobid>/step_extern  (multiple-slurmd
//     builds, as Debian's slurmd: CgroupPrepend "/slurm_%n")
//   <mount>/<controller>/slurm/uid_<uid>/job_<jobid>/step_extern         (other builds)
// Throws Error for a node or controller name that could leave its folder ("", ".", "..", '/').
std::vector<std::string> extern_step_cgroup_candidates(std::string_view mount,
                                                       std::string_view controller,
                                                       const JobCgroupKey &job);

// v2: the folders Slurm's cgroup/v2 may hold its steps in (the "slurmstepd scope"), in the order
// to try them: below the dirname of init's cgroup (<proc>/1/cgroup; Slurm 24.11) or below the
// mount (Slurm 22.05): system.slice/<node>_slurmstepd.scope (multiple-slurmd builds), then
// system.slice/slurmstepd.scope. The same with or without systemd (IgnoreSystemd=yes only
// makes slurmd mkdir it instead of asking systemd for the scope).
std::vector<std::string> slurmstepd_scope_candidates(const CgroupRoots &roots,
                                                     std::string_view node);

// The only task_<n> folder (n digits) in `folder`: jobacct_gather/cgroup counts the extern step
// there (n is the node's index in the job). Nothing when there is none; throws Error when there
// are several (an extern step has one).
std::optional<std::string> find_task_cgroup(const std::string &folder);

// The ids listed in `<folder>/<file>` (cgroup.procs: processes; tasks: threads).
std::vector<pid_t> cgroup_members(const std::string &folder,
                                  std::string_view file = "cgroup.procs");

}  // namespace svm
