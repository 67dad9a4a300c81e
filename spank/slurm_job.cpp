// Job facts for the root paths, from slurmctld through Slurm's API (slurm_load_job), never from
// text a user can shape: `scontrol show job` prints the job's name, comment and work dir
// unquoted, so "--comment='x Nodes=n1 CPU_IDs=0-255'" looked like an allocation there.
// The API's symbols come from the Slurm process the plugin is loaded in (libslurmfull in
// slurmd and slurmstepd, libslurm in the client commands); the plugin links neither.
#include "spank_common.h"

#include "slurm_api/api_ready.h"
#include "slurm_api/job_cpus.h"

extern "C" {
#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>
}

#include <cerrno>

namespace svm::spank {

std::optional<SlurmJob> load_slurm_job(uint32_t jobid, const std::string &node) {
    job_info_msg_t *msg = nullptr;
    if (svm_slurm_api_ready() != 0) {
        throw Error("cannot load job " + std::to_string(jobid) +
                    ": Slurm's auth or hash plugin did not load in this process");
    }
    // One RPC to slurmctld, bounded by Slurm's MessageTimeout.
    if (slurm_load_job(&msg, jobid, SHOW_DETAIL) != SLURM_SUCCESS) {
        const int err = errno;  // what slurm_get_errno() returned, before 24.11 removed it
        if (err == ESLURM_INVALID_JOB_ID) {
            return std::nullopt;
        }
        throw Error("cannot load job " + std::to_string(jobid) +
                    " from slurmctld: " + slurm_strerror(err));
    }
    SlurmJob job;
    bool found = false;
    for (uint32_t i = 0; msg != nullptr && i < msg->record_count; ++i) {
        const slurm_job_info_t &info = msg->job_array[i];
        if (info.job_id != jobid) {
            continue;  // the other members of an array or heterogeneous job
        }
        found = true;
        const uint32_t base = info.job_state & JOB_STATE_BASE;
        job.may_own_vm = base == JOB_RUNNING || base == JOB_SUSPENDED ||
                         (info.job_state & (JOB_CONFIGURING | JOB_COMPLETING)) != 0;
        if (!node.empty() && info.job_resrcs != nullptr) {
            unsigned cpus = 0;
            char ids[4096] = "";
            if (svm_job_cpus_on_node(info.job_resrcs, node.c_str(), &cpus, ids, sizeof ids) == 0) {
                job.cpus_here = cpus;
                job.cpu_ids_here = ids;
            }
        }
        // pn_min_memory is per node, or per CPU with the MEM_PER_CPU bit (MiB either way).
        if (info.pn_min_memory != NO_VAL64 && info.pn_min_memory != 0) {
            job.memory_mib_here = (info.pn_min_memory & MEM_PER_CPU) != 0
                                      ? (info.pn_min_memory & ~MEM_PER_CPU) * job.cpus_here
                                      : info.pn_min_memory;
        }
        job.admin_comment = info.admin_comment != nullptr ? info.admin_comment : "";
        job.account = info.account != nullptr ? info.account : "";
        break;
    }
    slurm_free_job_info_msg(msg);
    if (!found) {
        return std::nullopt;
    }
    return job;
}

}  // namespace svm::spank
