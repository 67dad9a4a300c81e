// Usage per physical host and per image over a time window, from Slurm's accounting (sacct)
// and the VM-to-host map. Pure computation: the report command fetches the inputs and streams
// them in.
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

#include "accounting/host_map.h"
#include "accounting/job_records.h"

#include <cstddef>
#include <cstdint>
#include <map>
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

// The sacct fields parse_sacct_line expects, in order.
inline constexpr const char *kSacctFields =
    "JobID,User,NodeList,AllocCPUS,Start,End,State,AdminComment";

// One line of that output, without its newline; NodeList expanded by `expand` (Slurm's own
// functions in the admin tool). Throws Error with the reason when malformed ("AllocCPUS 'x':
// expected a number").
JobUsage parse_sacct_line(std::string_view line, const HostlistExpander &expand = expand_hostlist);

// Local time "YYYY-MM-DD", "YYYY-MM-DDTHH:MM" or "YYYY-MM-DDTHH:MM:SS" (sacct's standard
// format) to seconds since the epoch. Throws Error "<what> '<text>': expected ...".
int64_t parse_local_time(std::string_view text, const std::string &what);
std::string format_local_time(int64_t t);  // "YYYY-MM-DDTHH:MM:SS"

struct ReportWindow {
    int64_t from = 0, to = 0;
};

// sreport's default window, for a report asked without --from/--to: yesterday 00:00 to today
// 00:00, local time, as seen at `now`.
ReportWindow default_report_window(int64_t now);

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

// At most this many warnings are kept; the rest are counted in one last warning, so a sacct
// output that is wrong throughout cannot make the report grow with it.
inline constexpr std::size_t kMaxReportWarnings = 100;

// Adds up jobs one at a time into a report, so the memory needed is that of the hosts and
// images, not of the jobs: sacct's output is streamed through add_sacct_line. An empty or
// reversed window gives an empty report.
class UsageAccumulator {
  public:
    UsageAccumulator(HostMap map, int64_t from, int64_t to, int64_t now,
                     HostlistExpander expand = expand_hostlist);

    void add(const JobUsage &job);
    // The next line of sacct's output (see JobUsage). An empty line is skipped; a malformed
    // or cut one (`complete` false) is skipped with a warning that has its line number
    // ("sacct output line 3: <reason>").
    void add_sacct_line(std::string_view line, bool complete = true);
    void warn(std::string message);

    // The report; the accumulator is spent.
    UsageReport finish();

  private:
    HostMap map_;
    HostlistExpander expand_;
    int64_t now_;
    UsageReport report_;
    std::map<std::string, HostUsage> hosts_;
    std::map<std::string, Usage> images_;
    unsigned long line_number_ = 0;
    unsigned long dropped_warnings_ = 0;
};

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
