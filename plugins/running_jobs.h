// "What runs on this physical host now": bare jobs on it, jobs inside its VMs, and jobs on VM
// nodes it hosts (the host map). Read from `scontrol show job -o`, which, unlike squeue in
// Slurm 22.05, shows the AdminComment where the prolog recorded each VM's host.
#pragma once

#include "host_map.h"

#include <cstdint>
#include <string>
#include <vector>

namespace svm {

struct RunningJob {
    std::string jobid, user, node;
    std::string kind;  // "bare", "vm <vm_hostname> (image <image>)" or "on VM node <node>"
};

std::vector<RunningJob> jobs_running_on_host(const std::string &scontrol_oneliners,
                                             const HostMap &map, const std::string &host,
                                             int64_t now);

}  // namespace svm
