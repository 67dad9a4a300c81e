#include "slurm_jobs.h"

#include "accounting/job_records.h"
#include "util/accounts.h"
#include "util/error.h"
#include "util/text.h"

extern "C" {
#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>
}

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <type_traits>

namespace svm {

namespace {

// slurm_hostlist_create's handle: `struct hostlist *` in 22.05 (hostlist_t) and in 24.11
// (hostlist_t *) alike.
using HostlistHandle = decltype(slurm_hostlist_create(""));

struct HostlistFree {
    void operator()(std::remove_pointer_t<HostlistHandle> *hl) const { slurm_hostlist_destroy(hl); }
};

struct JobInfoFree {
    void operator()(job_info_msg_t *msg) const { slurm_free_job_info_msg(msg); }
};

// Before the first call into libslurm: its configuration (slurm.conf) and plugins.
void init_slurm() {
    static const bool done = [] {
        slurm_init(nullptr);
        return true;
    }();
    (void)done;
}

std::string user_of(const slurm_job_info_t &job) {
    if (job.user_name != nullptr && job.user_name[0] != '\0') {
        return job.user_name;
    }
    try {
        if (const auto user = find_user(job.user_id)) {
            return user->name;
        }
    } catch (const Error &) {
        // Named by its number, as below.
    }
    return std::to_string(job.user_id);
}

}  // namespace

std::vector<std::string> slurm_expand_hostlist(std::string_view hostlist) {
    init_slurm();
    const std::string text(hostlist);
    std::unique_ptr<std::remove_pointer_t<HostlistHandle>, HostlistFree> hl(
        slurm_hostlist_create(text.c_str()));
    if (!hl) {
        throw Error("host list '" + printable(text) + "' is not one Slurm can read");
    }
    std::vector<std::string> names;
    while (char *name = slurm_hostlist_shift(hl.get())) {
        names.emplace_back(name);
        free(name);  // slurm_hostlist_shift's string is the caller's, from malloc
        if (names.size() > kMaxHostlistNames) {
            throw Error("host list '" + printable(text) + "' names more than " +
                        std::to_string(kMaxHostlistNames) + " hosts");
        }
    }
    return names;
}

void for_each_slurm_job(const std::function<void(const JobRecord &)> &on_job) {
    init_slurm();
    job_info_msg_t *raw = nullptr;
    // One RPC to slurmctld, bounded by Slurm's MessageTimeout. SHOW_ALL: hidden partitions too.
    if (slurm_load_jobs(0, &raw, SHOW_ALL) != SLURM_SUCCESS) {
        // slurm_get_errno() is gone in 24.11; libslurm sets errno in both.
        const int err = errno;
        throw Error(std::string("cannot load the jobs from slurmctld: ") + slurm_strerror(err));
    }
    std::unique_ptr<job_info_msg_t, JobInfoFree> msg(raw);
    for (uint32_t i = 0; i < msg->record_count; ++i) {
        const slurm_job_info_t &info = msg->job_array[i];
        JobRecord job;
        job.jobid = std::to_string(info.job_id);
        job.user = user_of(info);
        job.running = (info.job_state & JOB_STATE_BASE) == JOB_RUNNING;
        if (job.running && info.nodes != nullptr && info.nodes[0] != '\0') {
            job.nodes = slurm_expand_hostlist(info.nodes);
        }
        job.admin_comment = info.admin_comment != nullptr ? info.admin_comment : "";
        on_job(job);
    }
}

}  // namespace svm
