// The files of a job's VM, by name: where they are, whether the job has a VM here, why it could
// not start. Free of libvirt, like job_names.cpp: task_init, in the SPANK plugin that every
// client command loads, needs only these.
#include "vm/job_vm.h"

#include "util/atomic_file.h"
#include "vm/job_names.h"

#include <sys/stat.h>

#include <cerrno>
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

namespace {

// Where the reason goes when the state folder's file system has no room for it: the channel
// folder, on run_dir's (another file system, as a rule: /run).
std::string fallback_error_file(const JobVmPaths &paths) {
    return paths.channel_dir + "/error";
}

bool write_error(const std::string &dir, const std::string &file, const std::string &message) {
    try {
        if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
            return false;
        }
        write_file_atomically(file, message + "\n", 0644);
        return true;
    } catch (const Error &) {
        return false;
    }
}

}  // namespace

void record_job_vm_error(const Config &config, uint32_t jobid, std::string_view node,
                         const std::string &message) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    std::error_code ec;
    fs::create_directories(config.state_dir + "/jobs", ec);
    if (!write_error(paths.state_dir, paths.error_file, message)) {
        // Nothing better to do if this fails too: the caller logs the message.
        fs::create_directories(config.run_dir, ec);
        write_error(paths.channel_dir, fallback_error_file(paths), message);
    }
}

std::optional<std::string> job_vm_error(const Config &config, uint32_t jobid,
                                        std::string_view node) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    for (const std::string &file : {paths.error_file, fallback_error_file(paths)}) {
        std::ifstream in(file);
        if (in) {
            std::string line;
            std::getline(in, line);
            return line;
        }
    }
    return std::nullopt;
}

bool job_has_vm(const Config &config, uint32_t jobid, std::string_view node) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    std::error_code ec;
    return fs::exists(paths.state_dir, ec) || fs::exists(paths.channel_dir, ec);
}

}  // namespace svm
