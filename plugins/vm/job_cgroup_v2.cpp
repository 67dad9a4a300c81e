// cgroup v2, as Slurm's cgroup/v2 (22.05 and 24.11) lays it out: one unified tree,
// <scope>/job_<id>/step_<s>/{slurm,user/task_<n>}, where <scope> is
// system.slice/[<node>_]slurmstepd.scope. See docs/architecture.md, "What Slurm 24.11 does
// (cgroup v2)".
#include "vm/job_cgroup.h"
#include "vm/job_cgroup_impl.h"

#include "util/error.h"
#include "util/text.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

namespace svm {

using namespace cgroup_impl;

namespace {

// The controllers v1 calls freezer and cpuacct are the core's on v2 (cgroup.freeze, cpu.stat):
// every cgroup has them, and both are hierarchical. cpuset and memory are there only where
// Slurm enabled them (cgroup.subtree_control of the folder above).
const std::vector<std::string> &domain_controllers() {
    static const std::vector<std::string> controllers{"cpuset", "memory"};
    return controllers;
}

bool has_word(const std::string &file, std::string_view word) {
    const auto text = try_read_file(file);
    if (!text) {
        return false;
    }
    const auto words = words_of(*text);
    return std::find(words.begin(), words.end(), word) != words.end();
}

// `controller` enabled for the children of `folder`, as Slurm's _enable_subtree_control writes
// it: "" when it is, else why not.
std::string enable_for_children(const std::string &folder, const std::string &controller) {
    if (has_word(folder + "/cgroup.subtree_control", controller)) {
        return "";
    }
    const int err = write_control(-1, folder + "/cgroup.subtree_control", "+" + controller);
    if (err == 0) {
        return "";
    }
    if (!has_word(folder + "/cgroup.controllers", controller)) {
        return "the " + controller + " controller is not available in " + printable(folder);
    }
    return "cannot enable the " + controller + " controller in " + printable(folder) +
           "/cgroup.subtree_control: " + errno_text(err);
}

class JobCgroupsV2 : public JobCgroups {
  public:
    explicit JobCgroupsV2(CgroupRoots roots) : JobCgroups(std::move(roots)) {}

    CgroupVersion version() const override { return CgroupVersion::V2; }

    BootCgroup make_boot_cgroup(const JobCgroupKey &job, uint64_t memory_max_bytes) const override {
        BootCgroup boot;
        std::string job_dir;
        bool made_job = false;
        try {
            const auto scope = find_scope(job.node);
            if (!scope) {
                return boot;  // Slurm's cgroup/v2 does not run here: nothing will be placed
            }
            const RootLock lock(*scope);  // as Slurm's step creation and removal take it
            if (!lock.locked()) {
                throw Error("cannot lock " + printable(*scope));
            }
            // The boot cgroup needs a memory controller of its own, below the job's: QEMU's pages
            // are charged to it, and so to the job's folder, which Slurm's limit holds.
            if (const std::string why = enable_for_children(*scope, "memory"); !why.empty()) {
                throw Error(why);
            }
            job_dir = *scope + "/job_" + std::to_string(job.jobid);
            if (mkdir(job_dir.c_str(), 0755) == 0) {
                made_job = true;
                chmod(job_dir.c_str(), 0755);  // as Slurm's common_cgroup_instantiate makes it
            } else if (const int err = errno; err != EEXIST || !is_dir(job_dir)) {
                throw Error("cannot make " + printable(job_dir) + ": " + errno_text(err));
            }
            if (const std::string why = enable_for_children(job_dir, "memory"); !why.empty()) {
                throw Error(why);
            }
            const CgroupDir dir = make_fresh_cgroup(job_dir, kVmCgroupName);
            boot.folder = dir.path;
            if (memory_max_bytes > 0) {
                const std::string file = dir.path + "/memory.max";
                if (const int err =
                        write_control(dir.fd.get(), file, std::to_string(memory_max_bytes))) {
                    boot.note = "cannot limit the VM's boot to the job's memory: cannot write " +
                                std::to_string(memory_max_bytes) + " to " + printable(file) + ": " +
                                errno_text(err);
                }
            }
        } catch (const Error &e) {
            if (made_job) {
                rmdir(job_dir.c_str());
            }
            boot.folder.clear();
            boot.note = std::string(
                            "the VM boots outside the job's cgroup, and the memory it "
                            "touches before the extern step is not the job's: ") +
                        e.what();
        }
        return boot;
    }

    VmCgroupPlan plan_vm_cgroups(const JobCgroupKey &job) const override {
        VmCgroupPlan plan;
        plan.version = CgroupVersion::V2;
        const auto scope = find_scope(job.node);
        if (!scope) {
            const auto tried = slurmstepd_scope_candidates(roots(), job.node);
            plan.absent = "no Slurm cgroup/v2 tree (" + join(tried, " nor ") + ")";
            plan.missing = {"freezer", "cpuset", "cpuacct", "memory"};
            return plan;
        }
        const std::string job_dir = *scope + "/job_" + std::to_string(job.jobid);
        const std::string user = job_dir + "/step_extern/user";
        if (!is_dir(user)) {
            plan.absent = "no " + user;
            plan.missing = {"freezer", "cpuset", "cpuacct", "memory"};
            return plan;
        }
        VmCgroupTarget target;
        target.label = "unified";
        // jobacct_gather/cgroup reads the extern step's task folder: cpu.stat and memory.current
        // count its children. Without one (jobacct_gather/linux), the step's user folder.
        target.parent = find_task_cgroup(user).value_or(user);
        plan.targets.push_back(target);
        const std::string enabled = user + "/cgroup.subtree_control";
        plan.controllers = {"freezer"};
        for (const std::string &c : domain_controllers()) {
            if (has_word(enabled, c)) {
                plan.controllers.push_back(c);
            } else {
                plan.missing.push_back(c);
            }
            if (c == "cpuset") {
                plan.controllers.push_back("cpuacct");  // cpu.stat: the core's, always there
            }
        }
        // The job's CPUs, where task/cgroup's ConstrainCores set them: what the VM's folder, which
        // has no cpuset of its own, gets from the one above.
        const auto job_cpus = try_read_file(job_dir + "/cpuset.cpus");
        if (has_word(enabled, "cpuset") && job_cpus && !is_blank(*job_cpus)) {
            plan.cpus_file = target.parent + "/cpuset.cpus.effective";
        }
        const std::string boot = job_dir + "/" + std::string(kVmCgroupName);
        if (is_dir(boot)) {
            plan.vacated.push_back(boot);
        }
        return plan;
    }

    CgroupCleanup remove_vm_cgroups(const JobCgroupKey &job,
                                    std::chrono::milliseconds wait) const override {
        CgroupCleanup report;
        const auto deadline = std::chrono::steady_clock::now() + wait;
        std::vector<std::string> scopes;
        try {
            scopes = slurmstepd_scope_candidates(roots(), job.node);
        } catch (const Error &e) {
            report.problems.push_back(e.what());
            return report;
        }
        for (const std::string &scope : scopes) {
            const std::string job_dir = scope + "/job_" + std::to_string(job.jobid);
            if (!is_dir(job_dir)) {
                continue;
            }
            const std::string step = job_dir + "/step_extern";
            const std::string user = step + "/user";
            const std::string vm = "/" + std::string(kVmCgroupName);
            std::vector<std::string> vm_folders;
            for (const std::string &task : subfolders(user, "task_")) {
                vm_folders.push_back(user + "/" + task + vm);
            }
            vm_folders.push_back(user + vm);
            vm_folders.push_back(job_dir + vm);  // the boot cgroup, where no extern step came
            bool left = false;
            if (!remove_vm_folders(vm_folders, deadline, report, left) || left) {
                continue;  // nothing of ours kept Slurm from removing the rest
            }
            const RootLock lock(scope);
            if (!lock.locked()) {
                report.problems.push_back("cgroup: cannot lock " + printable(scope) + "; left " +
                                          printable(job_dir) + " to Slurm");
                continue;
            }
            // Slurm's cgroup_p_step_destroy removes the task folders, step/slurm, step/user,
            // the step and the job, giving up at the first in use: what it left, bottom up.
            std::string why;
            bool gone = true;
            for (const std::string &task : subfolders(user, "task_")) {
                gone = remove_folder(user + "/" + task, report, why) && gone;
            }
            gone = gone && remove_folder(user, report, why);
            gone = gone && remove_folder(step + "/slurm", report, why);
            gone = gone && remove_folder(step, report, why);
            gone = gone && remove_folder(job_dir, report, why);
        }
        return report;
    }

  private:
    std::optional<std::string> find_scope(const std::string &node) const {
        for (const std::string &path : slurmstepd_scope_candidates(roots(), node)) {
            if (is_dir(path)) {
                return path;
            }
        }
        return std::nullopt;
    }
};

}  // namespace

std::vector<std::string> slurmstepd_scope_candidates(const CgroupRoots &roots,
                                                     std::string_view node) {
    check_component("node name", node);
    std::vector<std::string> bases;
    // Slurm 24.11 (_get_init_cg_path): below the folder of init's cgroup ("0::/init.scope" under
    // systemd: the mount itself), or the mount when init is in the root cgroup.
    if (const auto text = try_read_file(roots.proc + "/1/cgroup")) {
        std::size_t at = 0;
        while (at < text->size()) {
            const std::size_t end = std::min(text->find('\n', at), text->size());
            const std::string_view line = std::string_view(*text).substr(at, end - at);
            if (line.starts_with("0::/")) {
                const std::string_view path = line.substr(3);
                bases.push_back(roots.mount + std::string(path.substr(0, path.rfind('/'))));
            }
            at = end + 1;
        }
    }
    // Slurm 22.05 (_set_int_cg_ns): below the mount.
    if (std::find(bases.begin(), bases.end(), roots.mount) == bases.end()) {
        bases.push_back(roots.mount);
    }
    std::vector<std::string> scopes;
    for (const std::string &base : bases) {
        scopes.push_back(base + "/system.slice/" + std::string(node) + "_slurmstepd.scope");
        scopes.push_back(base + "/system.slice/slurmstepd.scope");
    }
    return scopes;
}

std::unique_ptr<JobCgroups> JobCgroups::v2(const CgroupRoots &roots) {
    return std::make_unique<JobCgroupsV2>(roots);
}

}  // namespace svm
