// Prolog and epilog: root, on each allocated node (PrologFlags=Alloc), before any task and
// after the last one.
//
// A failing prolog drains the node in Slurm, so nothing a user can cause may fail it: when
// the VM cannot start, the reason is recorded and task_init fails the job with it, in the
// job's own output. The node stays usable.
#include "spank_common.h"

#include "util/cpu_list.h"

#include "catalog/catalog.h"
#include "util/error.h"
#include "util/text.h"
#include "vm/job_cgroup.h"
#include "vm/job_vm.h"
#include "vm/kvm_verdict.h"
#include "vm/libvirt_handles.h"
#include "vm/orphans.h"
#include "util/process.h"

#include <cstdlib>
#include <filesystem>
#include <string>

namespace svm::spank {

namespace fs = std::filesystem;

namespace {

struct JobFacts {
    uint32_t jobid = 0, uid = 0, gid = 0;
    std::string node, image;
};

bool job_facts(spank_t sp, JobFacts &facts) {
    facts.image = requested_image(sp);
    if (facts.image.empty()) {
        return false;
    }
    const char *node = getenv("SLURMD_NODENAME");
    if (spank_get_item(sp, S_JOB_ID, &facts.jobid) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_UID, &facts.uid) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_GID, &facts.gid) != ESPANK_SUCCESS || node == nullptr) {
        throw Error("cannot read the job id, user or node name from Slurm");
    }
    facts.node = node;
    return true;
}

// CPUs and memory of this node's share of the job, from slurmctld. Zeros (the image's
// defaults) when it cannot be asked.
struct NodeAllocation {
    unsigned cpus = 0;
    uint64_t memory_mib = 0;
    std::string cpu_ids;  // Slurm's abstract ids
};

// What slurmctld says of the job now, or why it says nothing.
struct JobNow {
    std::optional<SlurmJob> job;
    std::string problem;  // "" when `job` is set
};

JobNow job_now(const JobFacts &f) {
    JobNow now;
    try {
        now.job = load_slurm_job(f.jobid, f.node);
        if (!now.job) {
            now.problem = "slurmctld does not know the job";
        }
    } catch (const Error &e) {
        now.problem = e.what();
    }
    return now;
}

NodeAllocation allocation_here(const JobFacts &f, const JobNow &now) {
    if (now.job) {
        return {now.job->cpus_here, now.job->memory_mib_here, now.job->cpu_ids_here};
    }
    slurm_info("%s: job %u node %s: %s; using image defaults", kTag, f.jobid, f.node.c_str(),
               now.problem.c_str());
    return {};
}

// The image's access rules again, for the account the job runs under now: an admin or the user
// may have changed it since submit (job_modify checks that too; this is the last word). Throws
// Error, which fails the job and leaves the node alone.
void check_access_now(const Catalog &catalog, const JobFacts &f, const JobNow &now) {
    const UserIdentity who = identity_of_uid(f.uid, now.job ? now.job->account : "");
    const std::string refusal = image_refusal_at_start(catalog, f.image, who, now.problem);
    if (!refusal.empty()) {
        throw Error("image '" + printable(f.image) + "' on " + f.node + " (job " +
                    std::to_string(f.jobid) + "): not started: " + refusal);
    }
}

// Whether slurmctld still has the job in a state that may own a VM. When slurmctld cannot be
// asked, the answer is yes: a VM is removed only when its job is known to be over.
bool job_may_own_vm(uint32_t jobid) {
    try {
        const auto job = load_slurm_job(jobid, "");
        return job.has_value() && job->may_own_vm;
    } catch (const Error &) {
        return true;
    }
}

// Drains `node` with `reason` (cut to what Slurm shows), before the failed prolog does it with
// a bare "Prolog error". Never throws.
void drain_node(const std::string &node, std::string reason) {
    if (reason.size() > 200) {
        reason.resize(200);
    }
    try {
        const ProcessResult r = run_process({find_program("scontrol"), "update", "NodeName=" + node,
                                             "State=DRAIN", "Reason=" + reason},
                                            std::chrono::seconds(10));
        if (r.timed_out || r.status != 0) {
            slurm_error("%s: node %s: cannot drain it: %s", kTag, node.c_str(),
                        printable(r.err).c_str());
        }
    } catch (const std::exception &e) {
        slurm_error("%s: node %s: cannot drain it: %s", kTag, node.c_str(), e.what());
    }
}

}  // namespace

// VMs and files left by jobs that are over (a node that crashed, an epilog that was killed).
void sweep_orphans(const std::string &node, uint32_t current_jobid) {
    ConnectionPtr conn = open_connection(config().libvirt_uri);
    const OrphanReport r = remove_orphans(
        conn.get(), node,
        [&](uint32_t jobid) { return jobid == current_jobid || job_may_own_vm(jobid); },
        config().state_dir, config().run_dir);
    const std::string who = current_jobid != 0 ? "job " + std::to_string(current_jobid) + " " : "";
    const std::string where = node.empty() ? "this host" : "node " + node;
    for (const auto &d : r.destroyed_domains) {
        slurm_info("%s: %s%s: destroyed %s, left by a job that is over", kTag, who.c_str(),
                   where.c_str(), d.c_str());
    }
    for (const auto &list : {r.removed_state_dirs, r.removed_channel_dirs}) {
        for (const auto &path : list) {
            slurm_info("%s: %s%s: removed %s, left by a job that is over", kTag, who.c_str(),
                       where.c_str(), path.c_str());
        }
    }
    for (const auto &e : r.errors) {
        slurm_error("%s: %s%s: orphan cleanup: %s", kTag, who.c_str(), where.c_str(), e.c_str());
    }
}

namespace {

// Whether anything of another job of `node` is in the run or state folder: a cheap look that
// spares a bare job's epilog a libvirt connection when there is nothing to sweep.
bool leftovers_of_other_jobs(const std::string &node, uint32_t jobid) {
    for (const auto &dir : {config().run_dir, config().state_dir + "/jobs"}) {
        std::error_code ec;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const auto parsed = parse_domain_name(it->path().filename().string());
            if (parsed && parsed->second == node && parsed->first != jobid &&
                parsed->first < kAdminToolJobIds) {
                return true;
            }
        }
    }
    return false;
}

}  // namespace

int on_job_prolog(spank_t sp) {
    JobFacts f;
    if (!job_facts(sp, f)) {
        return 0;
    }
    try {
        sweep_orphans(f.node, f.jobid);
    } catch (const std::exception &e) {
        slurm_error("%s: job %u node %s: orphan cleanup: %s", kTag, f.jobid, f.node.c_str(),
                    e.what());
    }
    try {
        const Catalog catalog = Catalog::load(config().catalog);
        JobVmRequest request;
        request.jobid = f.jobid;
        request.node = f.node;
        request.image = f.image;
        request.uid = f.uid;
        request.gid = f.gid;
        const JobNow now = job_now(f);
        check_access_now(catalog, f, now);
        const NodeAllocation alloc = allocation_here(f, now);
        request.cpus = alloc.cpus;
        request.memory_mib = alloc.memory_mib;
        try {
            request.slurm_cpus = parse_cpu_list(alloc.cpu_ids);
        } catch (const Error &e) {
            slurm_info("%s: job %u node %s: the job's CPU ids: %s; the VM is not pinned", kTag,
                       f.jobid, f.node.c_str(), e.what());
        }
        if (const char *wd = getenv("SLURM_JOB_WORK_DIR"); wd != nullptr) {
            request.work_dir = wd;
        }
        request.job_cgroups = CgroupRoots{};  // a Slurm job's VM: it boots in the job's cgroup
        const StartReport r = start_job_vm(config(), catalog, request);
        if (!r.boot_cgroup_problem.empty()) {
            slurm_info("%s: job %u node %s image %s: %s", kTag, f.jobid, f.node.c_str(),
                       f.image.c_str(), printable(r.boot_cgroup_problem).c_str());
        }
        if (!r.boot_cgroup.empty() && r.start_mode.starts_with("cold: ") &&
            first_warning_for_node(config().state_dir, f.node + "-warm", r.start_mode)) {
            // The same on every VM job of a cgroup v2 node that would start warm: once.
            slurm_info("%s: node %s: no warm starts here: %s", kTag, f.node.c_str(),
                       printable(r.start_mode.substr(6)).c_str());
        }
        if (!r.kvm_fallback_reason.empty() &&
            first_warning_for_node(config().state_dir, f.node, r.kvm_fallback_reason)) {
            // Once per node and reason, not once per job: the admin needs to read it once.
            slurm_info(
                "%s: WARNING: node %s: domain_type=auto uses TCG (software emulation, "
                "much slower) instead of KVM: %s",
                kTag, f.node.c_str(), printable(r.kvm_fallback_reason).c_str());
        }
        if (!r.kvm_verdict.empty()) {
            slurm_info("%s: node %s: KVM probe of this host: %s (verdict in %s)", kTag,
                       f.node.c_str(), printable(r.kvm_verdict).c_str(),
                       kvm_verdict_path(config().state_dir).c_str());
        }
        if (!r.warm_problem.empty()) {
            slurm_info("%s: job %u node %s image %s: no warm start: %s", kTag, f.jobid,
                       f.node.c_str(), f.image.c_str(), printable(r.warm_problem).c_str());
        }
        if (!r.qemu_problem.empty()) {
            slurm_info("%s: job %u node %s image %s: %s (the extern step looks again)", kTag,
                       f.jobid, f.node.c_str(), f.image.c_str(), printable(r.qemu_problem).c_str());
        }
        for (const std::string &lost : r.libvirt_restarts) {
            slurm_info(
                "%s: job %u node %s image %s: libvirtd went away during the boot (%s); "
                "booted again",
                kTag, f.jobid, f.node.c_str(), f.image.c_str(), printable(lost).c_str());
        }
        if (r.snapshot_seconds > 0) {
            slurm_info("%s: job %u node %s image %s: made a warm-start snapshot in %.2f s", kTag,
                       f.jobid, f.node.c_str(), f.image.c_str(), r.snapshot_seconds);
        }
        if (!r.warm_evicted.empty()) {
            slurm_info(
                "%s: job %u node %s image %s: removed %zu least recently used warm-start "
                "snapshot(s) to stay within warm_cache=%u MiB",
                kTag, f.jobid, f.node.c_str(), f.image.c_str(), r.warm_evicted.size(),
                config().warm_cache_mib);
        }
        slurm_info(
            "%s: job %u node %s image %s: VM %s ready as %s (%s, %u vCPU, %llu MiB): %s, "
            "created in %.2f s, agent ready after %.2f s, set up in %.2f s; vCPUs on CPUs %s",
            kTag, f.jobid, f.node.c_str(), f.image.c_str(), r.domain.c_str(), r.hostname.c_str(),
            r.domain_type.c_str(), r.vcpus, static_cast<unsigned long long>(r.memory_mib),
            printable(r.start_mode.substr(0, r.start_mode.find(':'))).c_str(), r.create_seconds,
            r.ready_seconds, r.setup_seconds,
            r.pinned_cpus.empty() ? ("any (" + r.pin_problem + ")").c_str()
                                  : r.pinned_cpus.c_str());
    } catch (const NodeFaultError &e) {
        // Not the user's doing, and the next job here would fail the same way: the node is
        // drained with the reason, which `sinfo -R` and `scontrol show node` show, and the
        // failed prolog lets Slurm requeue the job elsewhere.
        const std::string reason = std::string(kTag) + ": " + printable(e.what());
        slurm_error("%s: job %u node %s image %s: node fault: %s", kTag, f.jobid, f.node.c_str(),
                    f.image.c_str(), printable(e.what()).c_str());
        record_job_vm_error(config(), f.jobid, f.node, reason);
        drain_node(f.node, reason);
        return -1;
    } catch (const std::exception &e) {
        // libvirt's message can carry QEMU's stderr, and QEMU is the user's: one printable line
        // in the log and in the job's output, never a forged second one.
        const std::string why = printable(e.what());
        slurm_error("%s: job %u node %s image %s: VM not started: %s", kTag, f.jobid,
                    f.node.c_str(), f.image.c_str(), why.c_str());
        record_job_vm_error(config(), f.jobid, f.node, std::string(kTag) + ": " + why);
    }
    return 0;
}

int on_job_epilog(spank_t sp) {
    uint32_t jobid = 0;
    const char *node = getenv("SLURMD_NODENAME");
    if (spank_get_item(sp, S_JOB_ID, &jobid) != ESPANK_SUCCESS || node == nullptr) {
        return 0;
    }
    // Every job's end also sweeps what earlier jobs of this node left (not only the next VM
    // job's start), after this job's own VM is gone.
    struct SweepAfter {
        std::string node;
        uint32_t jobid;
        ~SweepAfter() {
            try {
                if (leftovers_of_other_jobs(node, jobid)) {
                    sweep_orphans(node, jobid);
                }
            } catch (const std::exception &e) {
                slurm_error("%s: job %u node %s: orphan cleanup: %s", kTag, jobid, node.c_str(),
                            e.what());
            }
        }
    } sweep_after{node, jobid};
    // Not the option: whatever the prolog left for this job is stopped and removed.
    if (!job_has_vm(config(), jobid, node)) {
        return 0;
    }
    const std::string image = requested_image(sp);
    uint32_t uid = 0;
    const bool have_uid = spank_get_item(sp, S_JOB_UID, &uid) == ESPANK_SUCCESS;
    // Once the VM is gone: its cgroups below the extern step, and the job's folders that Slurm
    // could not remove because of them (the extern step ended before this epilog).
    struct CgroupsAfter {
        bool have_uid;
        uint32_t uid, jobid;
        const char *node;
        const std::string &image;
        ~CgroupsAfter() {
            if (!have_uid) {
                return;
            }
            try {
                const CgroupCleanup r =
                    JobCgroups::for_node()->remove_vm_cgroups(JobCgroupKey{node, uid, jobid});
                for (const auto &problem : r.problems) {
                    slurm_error("%s: job %u node %s image %s: cgroup cleanup: %s", kTag, jobid,
                                node, image.c_str(), printable(problem).c_str());
                }
            } catch (const std::exception &e) {
                slurm_error("%s: job %u node %s image %s: cgroup cleanup: %s", kTag, jobid, node,
                            image.c_str(), e.what());
            }
        }
    } cgroups_after{have_uid, uid, jobid, node, image};
    try {
        const std::string state = read_state_file(job_vm_paths(config(), jobid, node).state_file);
        const StopReport r = stop_job_vm(config(), jobid, node);
        if (!state.empty()) {  // empty: the VM never became ready, there is nothing to record
            try {
                record_vm_stop(config(), jobid, state, r);
            } catch (const std::exception &e) {
                slurm_error("%s: job %u node %s image %s: accounting record: %s", kTag, jobid, node,
                            image.c_str(), e.what());
            }
        }
        slurm_info("%s: job %u node %s image %s: VM stopped: %s (shutdown %.2f s, destroy %.2f s)",
                   kTag, jobid, node, image.c_str(), printable(r.detail).c_str(),
                   r.shutdown_time.count() / 1000.0, r.destroy_time.count() / 1000.0);
    } catch (const std::exception &e) {
        // Still success for Slurm: a failed epilog drains the node. The orphan sweep of the
        // next prolog on this node removes what is left.
        slurm_error("%s: job %u node %s image %s: stopping the VM failed: %s", kTag, jobid, node,
                    image.c_str(), printable(e.what()).c_str());
    }
    return 0;
}

}  // namespace svm::spank
