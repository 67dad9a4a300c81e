// "What runs on this physical host now": bare jobs on it, jobs inside its VMs, and jobs on VM
// nodes it hosts (the host map). The jobs are slurmctld's own records, read through Slurm's API
// by the admin tool (tools/slurm_jobs.h), never scontrol's text: `scontrol show job` prints a
// job's name unquoted, so a name like "x AdminComment=..." or "NodeList=..." read as fields.
#pragma once

#include "accounting/host_map.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace svm {

// One job as slurmctld keeps it: every field is Slurm's, whatever the job's name says.
struct JobRecord {
    std::string jobid;  // as scontrol prints JobId
    std::string user;
    bool running = false;
    std::vector<std::string> nodes;  // the allocation, expanded by Slurm's hostlist functions
    std::string admin_comment;       // slurmctld's; users cannot set it
};

// Hands every job of the cluster to the callback, one at a time. Throws Error when slurmctld
// cannot be asked.
using JobSource = std::function<void(const std::function<void(const JobRecord &)> &on_job)>;

struct RunningJob {
    std::string jobid, user, node;
    std::string kind;  // "bare", "vm <vm_hostname> (image <image>)" or "on VM node <node>"
};

// The entries of one job for `host`: none when the job is not running there, else one per VM
// or node of the job on that host.
std::vector<RunningJob> running_on_host(const JobRecord &job, const HostMap &map,
                                        const std::string &host, int64_t now);

}  // namespace svm
