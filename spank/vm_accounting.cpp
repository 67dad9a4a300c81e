// Accounting hooks of the prolog and epilog: which physical host ran which VM of a job.
//
// Slurm 22.05 stores a job's AdminComment in slurmdbd, so `sacct -o AdminComment` shows the
// image and the VMs (plugins/vm_record.h documents the format). It is written by the prolog,
// while the job can still be updated; each node adds its own VM. The epilog writes the whole
// record (sizes, times, how the VM stopped) to a spool first and then to the JSON-lines
// stream <log_dir>/vm-jobs.jsonl: a record survives a crash between the two.
#include "spank_common.h"

#include "allocation.h"
#include "error.h"
#include "process.h"
#include "vm_record.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace svm::spank {

namespace {

// The Slurm node that ran the VM. On a real cluster that is the physical host; where several
// slurmd share one machine (as on the test cluster), each node stands for its own host, which
// keeps VM jobs and bare jobs attributed the same way in the report.
std::string physical_host() {
    const char *node = getenv("SLURMD_NODENAME");
    return node != nullptr ? node : "";
}

std::string env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v != nullptr ? v : fallback;
}

std::string current_admin_comment(uint32_t jobid) {
    const ProcessResult r = scontrol_show_job(jobid, false, std::chrono::seconds(10));
    if (r.timed_out || r.status != 0) {
        throw Error("scontrol show job " + std::to_string(jobid) + " failed: " + r.err);
    }
    return job_field(r.out, "AdminComment");
}

}  // namespace

void record_vm_placement(uint32_t jobid, const std::string &node, const std::string &image,
                         const std::string &vm_hostname) {
    VmRecord mine;
    mine.jobid = jobid;
    mine.image = image;
    mine.node = node;
    mine.vm_hostname = vm_hostname;
    mine.physical_host = physical_host();
    // Every node of the job adds its VM to the same comment: read, add, write, and check
    // that it stuck, since another node may have written in between.
    for (int attempt = 0; attempt < 6; ++attempt) {
        std::vector<VmRecord> all;
        if (const auto parsed = parse_admin_comment(current_admin_comment(jobid))) {
            for (const auto &vm : parsed->vms) {
                if (vm.vm_hostname == mine.vm_hostname) {
                    return;  // there already
                }
                VmRecord other = mine;
                other.vm_hostname = vm.vm_hostname;
                other.physical_host = vm.physical_host;
                all.push_back(other);
            }
        }
        all.push_back(mine);
        const std::string comment = admin_comment_for(all);
        run_process({find_program("scontrol"), "update", "jobid=" + std::to_string(jobid),
                     "AdminComment=" + comment},
                    std::chrono::seconds(10));
        std::this_thread::sleep_for(
            std::chrono::milliseconds(50 + 100 * attempt + (getpid() % 97)));
    }
    throw Error("could not record the VM in the job's AdminComment (other nodes kept writing)");
}

void record_vm_stop(const Config &config, uint32_t jobid, const std::string &state_json,
                    const StopReport &stopped) {
    const VmRecord record = vm_record_from_state(
        state_json, env_or("SLURM_CLUSTER_NAME", ""), env_or("SLURM_JOB_USER", ""), physical_host(),
        static_cast<int64_t>(time(nullptr)), stop_kind(stopped));
    RecordSpool spool(config.state_dir + "/records");
    spool.add(record);
    // Deliver everything pending, this record and any a crash left behind.
    for (const auto &[id, pending] : spool.pending()) {
        append_jsonl(config.log_dir + "/vm-jobs.jsonl", pending);
        spool.done(id);
    }
    for (const auto &warning : spool.warnings()) {
        slurm_error("%s: job %u: %s", kTag, jobid, warning.c_str());
    }
}

std::string read_state_file(const std::string &path) {
    std::ifstream in(path);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace svm::spank
