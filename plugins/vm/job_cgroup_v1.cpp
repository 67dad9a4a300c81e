// cgroup v1, as Slurm 22.05's cgroup/v1 lays it out: one hierarchy per controller,
// <mount>/<controller>/slurm[_<node>]/uid_<uid>/job_<id>/step_extern[/task_<n>]. See
// docs/architecture.md, "What Slurm 22.05 does (cgroup v1)".
#include "vm/job_cgroup.h"
#include "vm/job_cgroup_impl.h"

#include "util/error.h"
#include "util/text.h"

namespace svm {

using namespace cgroup_impl;

namespace {

// The first candidate that is a folder: nothing when neither is (no cgroup plugin for that
// controller, no PrologFlags=Contain, or the step is not there yet).
std::optional<std::string> find_extern_step(std::string_view mount, std::string_view controller,
                                            const JobCgroupKey &job) {
    for (const std::string &path : extern_step_cgroup_candidates(mount, controller, job)) {
        if (is_dir(path)) {
            return path;
        }
    }
    return std::nullopt;
}

class JobCgroupsV1 : public JobCgroups {
  public:
    explicit JobCgroupsV1(CgroupRoots roots) : JobCgroups(std::move(roots)) {}

    CgroupVersion version() const override { return CgroupVersion::V1; }

    // Slurm's v1 folders of a job appear only with its first step; the user owns the step
    // folders. A VM boots in libvirt's cgroup and joins the job's in the extern step.
    BootCgroup make_boot_cgroup(const JobCgroupKey &, uint64_t) const override { return {}; }

    VmCgroupPlan plan_vm_cgroups(const JobCgroupKey &job) const override {
        VmCgroupPlan plan;
        plan.version = CgroupVersion::V1;
        for (const std::string &controller : job_vm_controllers()) {
            const auto step = find_extern_step(roots().mount, controller, job);
            if (!step) {
                plan.missing.push_back(controller);
                continue;
            }
            VmCgroupTarget target;
            target.label = controller;
            target.parent = *step;
            target.by_thread = true;
            if (controller == "cpuacct" || controller == "memory") {
                // jobacct_gather/cgroup reads the extern step's task folder.
                if (const auto task = find_task_cgroup(*step)) {
                    target.parent = *task;
                }
            }
            target.cpuset = controller == "cpuset";
            target.charges = controller == "memory";
            if (target.cpuset) {
                plan.cpus_file = *step + "/cpuset.cpus";
            }
            plan.controllers.push_back(controller);
            plan.targets.push_back(std::move(target));
        }
        if (plan.targets.empty()) {
            plan.absent = "no " + extern_step_cgroup_candidates(roots().mount, "freezer", job)[0] +
                          " nor its like in " + join(plan.missing);
        }
        return plan;
    }

    CgroupCleanup remove_vm_cgroups(const JobCgroupKey &job,
                                    std::chrono::milliseconds wait) const override {
        CgroupCleanup report;
        // One wait for all: a VM that is still there (its stop failed) costs the epilog `wait`
        // once.
        const auto deadline = std::chrono::steady_clock::now() + wait;
        for (const std::string &controller : job_vm_controllers()) {
            std::vector<std::string> steps;
            try {
                steps = extern_step_cgroup_candidates(roots().mount, controller, job);
            } catch (const Error &e) {
                report.problems.push_back(e.what());
                continue;
            }
            for (const std::string &step : steps) {
                if (!is_dir(step)) {
                    continue;
                }
                std::vector<std::string> vm_folders;
                for (const std::string &task : subfolders(step, "task_")) {
                    vm_folders.push_back(step + "/" + task + "/" + std::string(kVmCgroupName));
                }
                vm_folders.push_back(step + "/" + std::string(kVmCgroupName));
                bool left = false;
                if (!remove_vm_folders(vm_folders, deadline, report, left) || left) {
                    continue;  // nothing of ours kept Slurm from removing the rest
                }
                // step is <mount>/<controller>/<prepend>/uid_<uid>/job_<jobid>/step_extern.
                const std::string job_dir = step.substr(0, step.rfind('/'));
                const std::string user_dir = job_dir.substr(0, job_dir.rfind('/'));
                const std::string root = roots().mount + "/" + controller;
                const RootLock lock(root);
                if (!lock.locked()) {
                    report.problems.push_back("cgroup: cannot lock " + root + "; left " +
                                              printable(step) + " and its parents to Slurm");
                    continue;
                }
                std::string why;
                bool gone = true;
                for (const std::string &task : subfolders(step, "task_")) {
                    gone = remove_folder(step + "/" + task, report, why) && gone;
                }
                // Each level only once the one below is gone; the job's or user's folder in use
                // by another step or job is theirs to remove.
                gone = gone && remove_folder(step, report, why);
                gone = gone && remove_folder(job_dir, report, why);
                gone = gone && remove_folder(user_dir, report, why);
            }
        }
        return report;
    }
};

}  // namespace

const std::vector<std::string> &job_vm_controllers() {
    static const std::vector<std::string> controllers{"freezer", "cpuset", "cpuacct", "memory"};
    return controllers;
}

std::vector<std::string> extern_step_cgroup_candidates(std::string_view mount,
                                                       std::string_view controller,
                                                       const JobCgroupKey &job) {
    check_component("controller", controller);
    check_component("node name", job.node);
    const std::string base = std::string(mount) + "/" + std::string(controller) + "/";
    const std::string tail =
        "/uid_" + std::to_string(job.uid) + "/job_" + std::to_string(job.jobid) + "/step_extern";
    return {base + "slurm_" + job.node + tail, base + "slurm" + tail};
}

std::unique_ptr<JobCgroups> JobCgroups::v1(const CgroupRoots &roots) {
    return std::make_unique<JobCgroupsV1>(roots);
}

}  // namespace svm
