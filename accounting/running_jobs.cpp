#include "accounting/running_jobs.h"

#include "accounting/job_records.h"
#include "util/error.h"
#include "accounting/vm_record.h"

namespace svm {

std::vector<RunningJob> running_on_host(const std::string &line, const HostMap &map,
                                        const std::string &host, int64_t now) {
    std::vector<RunningJob> out;
    if (job_field(line, "JobState") != "RUNNING") {
        return out;
    }
    const std::string jobid = job_field(line, "JobId");
    std::string user = job_field(line, "UserId");
    user = user.substr(0, user.find('('));
    std::vector<std::string> nodes;
    try {
        nodes = expand_hostlist(job_field(line, "NodeList"));
    } catch (const Error &) {
        return out;
    }
    try {
        if (const auto c = parse_admin_comment(job_field(line, "AdminComment"))) {
            uint32_t id = 0;
            try {
                id = static_cast<uint32_t>(std::stoul(jobid));
            } catch (const std::exception &) {
            }
            const auto vms = vm_placements(*c, nodes, id);
            if (!vms.empty()) {
                // A VM job: it is where its VMs are, whatever its nodes are called.
                for (const auto &vm : vms) {
                    if (vm.physical_host == host) {
                        out.push_back({jobid, user, host,
                                       "vm " + vm.vm_hostname + " (image " + c->image + ")"});
                    }
                }
                return out;
            }
        }
    } catch (const Error &) {
        // A comment that is not ours: the job is judged by its nodes alone.
    }
    for (const auto &node : nodes) {
        if (node == host) {
            out.push_back({jobid, user, node, "bare"});
        } else if (map.host_of(node, now) == host) {
            out.push_back({jobid, user, node, "on VM node " + node});
        }
    }
    return out;
}

}  // namespace svm
