// "What runs on this physical host now": bare jobs on it, jobs inside its VMs, and jobs on VM
// nodes it hosts (the host map). Read from `scontrol show job -o`, which, unlike squeue in
// Slurm 22.05, shows the AdminComment where the prolog recorded each VM's host.
#pragma once

#include "accounting/host_map.h"

#include <cstdint>
#include <string>
#include <vector>

namespace svm {

struct RunningJob {
    std::string jobid, user, node;
    std::string kind;  // "bare", "vm <vm_hostname> (image <image>)" or "on VM node <node>"
};

// The entries of one job record (one line of `scontrol show job -o`) for `host`: none when the
// job is not running there, else one per VM or node of the job on that host. One line at a
// time, so the caller can stream scontrol's output however many jobs the cluster has.
std::vector<RunningJob> running_on_host(const std::string &oneliner, const HostMap &map,
                                        const std::string &host, int64_t now);

}  // namespace svm
