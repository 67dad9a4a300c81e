#include "running_jobs.h"

#include "allocation.h"
#include "error.h"
#include "vm_record.h"

#include <sstream>

namespace svm {

std::vector<RunningJob> jobs_running_on_host(const std::string &text, const HostMap &map,
                                             const std::string &host, int64_t now) {
    std::vector<RunningJob> out;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (job_field(line, "JobState") != "RUNNING") {
            continue;
        }
        const std::string jobid = job_field(line, "JobId");
        std::string user = job_field(line, "UserId");
        user = user.substr(0, user.find('('));
        std::vector<VmPlacement> vms;
        try {
            if (const auto c = parse_admin_comment(job_field(line, "AdminComment"))) {
                vms = c->vms;
                for (const auto &vm : vms) {
                    if (vm.physical_host == host) {
                        out.push_back({jobid, user, host,
                                       "vm " + vm.vm_hostname + " (image " + c->image + ")"});
                    }
                }
            }
        } catch (const Error &) {
            // A comment that is not ours: the job is judged by its nodes alone.
        }
        std::vector<std::string> nodes;
        try {
            nodes = expand_hostlist(job_field(line, "NodeList"));
        } catch (const Error &) {
            continue;
        }
        for (const auto &node : nodes) {
            if (!vms.empty()) {
                continue;  // a VM job: counted by its VMs above
            }
            if (node == host) {
                out.push_back({jobid, user, node, "bare"});
            } else if (map.host_of(node, now) == host) {
                out.push_back({jobid, user, node, "on VM node " + node});
            }
        }
    }
    return out;
}

}  // namespace svm
