// The job's extern step (PrologFlags=Contain): root, in the step's slurmstepd, from
// slurm_spank_task_post_fork. Slurm (22.05 and 24.11) calls it once the step's cgroups exist and
// before any task of the job starts (_spawn_job_container, src/slurmd/slurmstepd/mgr.c): the
// moment to put the job's VM, which the prolog started outside the step (in libvirt's cgroup on
// v1, in a cgroup of the job's on v2), into them. In the node module:
// it needs libvirt to pin the VM again.
//
// Slurm only logs a failure of this callback; a VM that cannot be placed fails the job through
// its error file instead (task_init prints it), never the node.
#include "spank_common.h"

#include "util/text.h"
#include "vm/job_vm.h"
#include "vm/kvm_verdict.h"  // first_warning_for_node

#include <cstdlib>
#include <string>

namespace svm::spank {

int on_extern_step(spank_t sp) {
    uint32_t jobid = 0, uid = 0;
    const char *node = getenv("SLURMD_NODENAME");  // slurmstepd sets it for itself
    if (spank_get_item(sp, S_JOB_ID, &jobid) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_UID, &uid) != ESPANK_SUCCESS || node == nullptr) {
        slurm_error("%s: extern step: cannot read the job id, user or node name from Slurm", kTag);
        return 0;
    }
    if (!job_has_vm(config(), jobid, node)) {
        return 0;
    }
    PlacementReport r;
    std::string image = "?";
    try {
        place_job_vm(config(), jobid, node, uid, r);
        image = r.image;
        for (const auto &note : r.notes) {
            // The same on every job of the host (the kernel's doing): once per node and text.
            if (first_warning_for_node(config().state_dir, std::string(node) + "-cgroup", note)) {
                slurm_info("%s: job %u node %s image %s: %s", kTag, jobid, node, image.c_str(),
                           printable(note).c_str());
            }
        }
        if (!r.skipped.empty()) {
            if (r.image.empty()) {
                return 0;  // the VM did not start: the prolog said why, the job fails with it
            }
            slurm_info("%s: job %u node %s image %s: VM not placed in the job's cgroups: %s", kTag,
                       jobid, node, image.c_str(), printable(r.skipped).c_str());
            return 0;
        }
        std::string line = "VM placed in the job's cgroups (" + r.hierarchy + ": " +
                           join(r.controllers) + ")" +
                           (r.cpus.empty() ? std::string("; no cpuset: its vCPUs stay where its "
                                                         "domain XML pinned them")
                                           : " on CPUs " + r.cpus);
        if (!r.missing.empty()) {
            line += "; the job has no " + join(r.missing) + " cgroup here";
        }
        slurm_info("%s: job %u node %s image %s: %s", kTag, jobid, node, image.c_str(),
                   line.c_str());
    } catch (const std::exception &e) {
        if (!r.image.empty()) {
            image = r.image;
        }
        const std::string message =
            std::string(kTag) + ": image '" + image + "' on " + node + " (job " +
            std::to_string(jobid) +
            "): the VM could not be placed in the job's cgroups: " + printable(e.what());
        slurm_error("%s: job %u node %s image %s: VM not placed in the job's cgroups: %s", kTag,
                    jobid, node, image.c_str(), printable(e.what()).c_str());
        // The VM runs but outside the job's limits and accounting: the job fails (task_init
        // prints this line), the epilog stops the VM as usual.
        record_job_vm_error(config(), jobid, node, message);
    }
    return 0;
}

}  // namespace svm::spank
