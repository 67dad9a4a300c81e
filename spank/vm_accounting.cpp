// Accounting hooks of the prolog and epilog: which physical host ran which VM of a job.
//
// The AdminComment that `sacct -o AdminComment` shows (image, VM hostnames) is written at submit
// by the job_submit plugin (plugins/vm_record.h documents the format). The epilog writes the whole
// record (sizes, times, how the VM stopped) to a spool first and then to the JSON-lines
// stream <log_dir>/vm-jobs.jsonl: a record survives a crash between the two.
#include "spank_common.h"

#include "util/error.h"
#include "accounting/vm_record.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

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

}  // namespace

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
