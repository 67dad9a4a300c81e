#include "accounting/running_jobs.h"

#include "accounting/vm_record.h"
#include "util/error.h"

#include <charconv>

namespace svm {

std::vector<RunningJob> running_on_host(const JobRecord &job, const HostMap &map,
                                        const std::string &host, int64_t now) {
    std::vector<RunningJob> out;
    if (!job.running) {
        return out;
    }
    try {
        if (const auto c = parse_admin_comment(job.admin_comment)) {
            uint32_t id = 0;
            std::from_chars(job.jobid.data(), job.jobid.data() + job.jobid.size(), id);
            const auto vms = vm_placements(*c, job.nodes, id);
            if (!vms.empty()) {
                // A VM job: it is where its VMs are, whatever its nodes are called.
                for (const auto &vm : vms) {
                    if (vm.physical_host == host) {
                        out.push_back({job.jobid, job.user, host,
                                       "vm " + vm.vm_hostname + " (image " + c->image + ")"});
                    }
                }
                return out;
            }
        }
    } catch (const Error &) {
        // A comment that is not ours: the job is judged by its nodes alone.
    }
    for (const auto &node : job.nodes) {
        if (node == host) {
            out.push_back({job.jobid, job.user, node, "bare"});
        } else if (map.host_of(node, now) == host) {
            out.push_back({job.jobid, job.user, node, "on VM node " + node});
        }
    }
    return out;
}

}  // namespace svm
