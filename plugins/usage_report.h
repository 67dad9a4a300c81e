// Usage per physical host and per image over a time window, from Slurm's accounting (sacct)
// and the VM-to-host map. Pure computation: the report command fetches the inputs.
//
// Attribution, per job and per node of the job (AllocCPUS is shared evenly among them):
// - vm_jobs: the AdminComment holds "slurm-vm:..." (vm_record.h): charged to the physical
//   host of each VM in the comment (to the job's nodes if the comment lists none);
// - vm_node_jobs: the node is a VM node the host map places on a physical host at the job's
//   start: charged to that host;
// - bare: anything else, charged to the node itself.
// elapsed_hours are node-hours (wall-clock hours times the job's nodes on that host); jobs
// counts each job once per host and class. Jobs are clipped to the window [from, to); a
// running job counts up to `now`.
#pragma once

#include "host_map.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

// One line of `sacct -a -X -P -n -o JobID,User,NodeList,AllocCPUS,Start,End,State,AdminComment`
// (with SLURM_TIME_FORMAT=standard).
struct JobUsage {
    std::string jobid;  // "42", "42_3" (array), "42+1" (heterogeneous)
    std::string user;
    std::vector<std::string> nodes;  // expanded; empty while pending
    unsigned alloc_cpus = 0;
    std::optional<int64_t> start;  // nullopt: not started ("Unknown", "None")
    std::optional<int64_t> end;    // nullopt: still running ("Unknown")
    std::string state, admin_comment;
};

// The sacct fields parse_sacct_parsable expects, in order.
inline constexpr const char *kSacctFields =
    "JobID,User,NodeList,AllocCPUS,Start,End,State,AdminComment";

// Malformed lines are skipped and named in warnings ("sacct output line 3: <reason>").
std::vector<JobUsage> parse_sacct_parsable(const std::string &text,
                                           std::vector<std::string> &warnings);
// As above, but the first malformed line throws Error.
std::vector<JobUsage> parse_sacct_parsable(const std::string &text);

// Local time "YYYY-MM-DD", "YYYY-MM-DDTHH:MM" or "YYYY-MM-DDTHH:MM:SS" (sacct's standard
// format) to seconds since the epoch. Throws Error "<what> '<text>': expected ...".
int64_t parse_local_time(std::string_view text, const std::string &what);
std::string format_local_time(int64_t t);  // "YYYY-MM-DDTHH:MM:SS"

struct Usage {
    unsigned jobs = 0;
    double cpu_hours = 0, elapsed_hours = 0;
};

struct HostUsage {
    std::string host;
    Usage total, bare, vm_jobs, vm_node_jobs;
};

struct ImageUsage {
    std::string image;
    Usage usage;
};

struct UsageReport {
    int64_t from = 0, to = 0;
    std::vector<HostUsage> hosts;    // by host name
    std::vector<ImageUsage> images;  // by image name
    std::vector<std::string> warnings;
};

// An empty or reversed window gives an empty report.
UsageReport compute_usage(const std::vector<JobUsage> &jobs, const HostMap &map, int64_t from,
                          int64_t to, int64_t now);

enum class ReportFormat { Table, Csv, Json };
// Throws Error "format '<text>': expected table, csv or json".
ReportFormat parse_report_format(std::string_view text);

// Table: aligned columns for people. CSV: one header line
// "section,name,class,jobs,cpu_hours,elapsed_hours", then host rows (every class and total)
// and image rows (class vm_jobs). JSON: {"from","to","hosts":[{"host","total","bare",
// "vm_jobs","vm_node_jobs"}],"images":[{"image","jobs","cpu_hours","elapsed_hours"}],
// "warnings":[]}, each usage {"jobs","cpu_hours","elapsed_hours"}.
std::string render_report(const UsageReport &report, ReportFormat format);

}  // namespace svm
