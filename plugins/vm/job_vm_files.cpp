// The files of a job's VM, by name: where they are, whether the job has a VM here, why it could
// not start. Free of libvirt, like job_names.cpp: task_init, in the SPANK plugin that every
// client command loads, needs only these.
#include "vm/job_vm.h"

#include "util/atomic_file.h"
#include "vm/job_names.h"

#include <filesystem>
#include <fstream>

namespace svm {

namespace fs = std::filesystem;

JobVmPaths job_vm_paths(const Config &config, uint32_t jobid, std::string_view node) {
    JobVmPaths p;
    p.domain = domain_name_for(jobid, node);
    p.state_dir = config.state_dir + "/jobs/" + p.domain;
    p.channel_dir = config.run_dir + "/" + p.domain;
    p.console_log = config.log_dir + "/" + p.domain + ".console.log";
    p.error_file = p.state_dir + "/error";
    p.state_file = p.state_dir + "/vm.json";
    return p;
}

void record_job_vm_error(const Config &config, uint32_t jobid, std::string_view node,
                         const std::string &message) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    try {
        std::error_code ec;
        fs::create_directories(paths.state_dir, ec);
        write_file_atomically(paths.error_file, message + "\n", 0644);
    } catch (const Error &) {
        // Nothing better to do: the caller logs the message too.
    }
}

std::optional<std::string> job_vm_error(const Config &config, uint32_t jobid,
                                        std::string_view node) {
    std::ifstream in(job_vm_paths(config, jobid, node).error_file);
    if (!in) {
        return std::nullopt;
    }
    std::string line;
    std::getline(in, line);
    return line;
}

bool job_has_vm(const Config &config, uint32_t jobid, std::string_view node) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    std::error_code ec;
    return fs::exists(paths.state_dir, ec) || fs::exists(paths.channel_dir, ec);
}

}  // namespace svm
