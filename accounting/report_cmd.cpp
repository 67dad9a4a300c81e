#include "report_cmd.h"

#include "atomic_file.h"
#include "error.h"
#include "host_map.h"
#include "process.h"
#include "protocol/fd.h"
#include "running_jobs.h"
#include "usage_report.h"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>

namespace svm {

namespace {

// Wrong arguments: exit status 2, as for any command-line tool.
class UsageError : public Error {
  public:
    using Error::Error;
};

constexpr const char *kReportUsage =
    "usage: slurm-vm report --from YYYY-MM-DD[THH:MM] --to YYYY-MM-DD[THH:MM] "
    "[--format table|csv|json] [--map FILE] [--sacct-output FILE]";
constexpr const char *kMapUsage =
    "usage: slurm-vm map start VMNODE HOST [--at TIME] | stop VMNODE [--at TIME] | list "
    "[--map FILE]";

const std::string &option_value(const std::vector<std::string> &args, size_t &i) {
    if (i + 1 >= args.size()) {
        throw UsageError(args[i] + " needs a value");
    }
    return args[++i];
}

// One line, as scripts and the integration tests expect; the usage is in `slurm-vm` alone.
int usage_failure(const char *command, const UsageError &e) {
    fprintf(stderr, "slurm-vm %s: %s\n", command, e.what());
    return 2;
}

void print_warnings(const char *command, const std::vector<std::string> &warnings) {
    for (const std::string &w : warnings) {
        fprintf(stderr, "slurm-vm %s: warning: %s\n", command, w.c_str());
    }
}

std::string run_sacct(int64_t from, int64_t to) {
    // sacct prints times as SLURM_TIME_FORMAT says; the parser reads the standard ISO form.
    setenv("SLURM_TIME_FORMAT", "standard", 1);
    const std::vector<std::string> argv{find_program("sacct"),
                                        "-a",
                                        "-X",
                                        "-P",
                                        "-n",
                                        "-o",
                                        kSacctFields,
                                        "-S",
                                        format_local_time(from),
                                        "-E",
                                        format_local_time(to)};
    const ProcessResult r = run_process(argv, std::chrono::seconds(120));
    if (r.timed_out) {
        throw Error("sacct did not answer within 120 s (is slurmdbd up?)");
    }
    if (r.status != 0) {
        std::string reason = r.err.substr(0, r.err.find('\n'));
        throw Error("sacct failed with exit status " + std::to_string(r.status) +
                    (reason.empty() ? "" : ": " + reason));
    }
    return r.out;
}

int64_t parse_at(const std::string &text) {
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec == std::errc() && end == text.data() + text.size() && v >= 0) {
        return v;
    }
    try {
        return parse_local_time(text, "--at");
    } catch (const Error &e) {
        throw UsageError(std::string(e.what()) + " or seconds since the epoch");
    }
}

// Serialises load-modify-save of the map among concurrent callers (the power-saving programs
// may run for several nodes at once).
protocol::UniqueFd lock_map(const std::string &path) {
    const std::string lock = path + ".lock";
    protocol::UniqueFd fd(open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd) {
        throw Error("host map " + path + ": cannot open lock " + lock + ": " + errno_text(errno));
    }
    while (flock(fd.get(), LOCK_EX) != 0) {
        if (errno != EINTR) {
            throw Error("host map " + path + ": cannot lock " + lock + ": " + errno_text(errno));
        }
    }
    return fd;
}

}  // namespace

int cmd_report(const std::vector<std::string> &args) {
    int64_t from = 0, to = 0;
    std::string sacct_output_file, map_path = kDefaultHostMap;
    ReportFormat format = ReportFormat::Table;
    try {
        bool have_from = false, have_to = false;
        for (size_t i = 0; i < args.size(); ++i) {
            if (args[i] == "--from") {
                from = parse_local_time(option_value(args, i), "--from");
                have_from = true;
            } else if (args[i] == "--to") {
                to = parse_local_time(option_value(args, i), "--to");
                have_to = true;
            } else if (args[i] == "--format") {
                format = parse_report_format(option_value(args, i));
            } else if (args[i] == "--map") {
                map_path = option_value(args, i);
            } else if (args[i] == "--sacct-output") {
                sacct_output_file = option_value(args, i);
            } else {
                throw UsageError("unexpected argument '" + args[i] + "'; " + kReportUsage);
            }
        }
        if (!have_from || !have_to) {
            throw UsageError("the window needs both --from and --to");
        }
        if (to < from) {
            throw UsageError("window: --to " + format_local_time(to) + " is before --from " +
                             format_local_time(from));
        }
    } catch (const UsageError &e) {
        return usage_failure("report", e);
    } catch (const Error &e) {
        // Bad time or format values: the user's to fix, like any other argument.
        return usage_failure("report", UsageError(e.what()));
    }

    const std::string sacct_text =
        sacct_output_file.empty() ? run_sacct(from, to) : read_whole_file(sacct_output_file);
    std::vector<std::string> warnings;
    const std::vector<JobUsage> jobs = parse_sacct_parsable(sacct_text, warnings);
    const HostMap map = HostMap::load(map_path);
    warnings.insert(warnings.end(), map.warnings().begin(), map.warnings().end());
    UsageReport report = compute_usage(jobs, map, from, to, static_cast<int64_t>(time(nullptr)));
    report.warnings.insert(report.warnings.begin(), warnings.begin(), warnings.end());
    print_warnings("report", report.warnings);
    fputs(render_report(report, format).c_str(), stdout);
    return 0;
}

int cmd_map(const std::vector<std::string> &args) {
    std::string map_path = kDefaultHostMap;
    std::vector<std::string> words;
    std::optional<int64_t> at;
    try {
        for (size_t i = 0; i < args.size(); ++i) {
            if (args[i] == "--map") {
                map_path = option_value(args, i);
            } else if (args[i] == "--at") {
                at = parse_at(option_value(args, i));
            } else if (args[i].starts_with("-")) {
                throw UsageError("unexpected argument '" + args[i] + "'");
            } else {
                words.push_back(args[i]);
            }
        }
        const bool ok = (words.size() == 3 && words[0] == "start") ||
                        (words.size() == 2 && words[0] == "stop") ||
                        (words.size() == 1 && words[0] == "list");
        if (!ok) {
            const bool known =
                !words.empty() && (words[0] == "start" || words[0] == "stop" || words[0] == "list");
            throw UsageError(known ? std::string(kMapUsage)
                                   : "expected start, stop or list, got '" +
                                         (words.empty() ? "" : words[0]) + "'");
        }
        if (at && words[0] == "list") {
            throw UsageError("--at is for start and stop");
        }
    } catch (const UsageError &e) {
        return usage_failure("map", e);
    }

    const int64_t t = at.value_or(static_cast<int64_t>(time(nullptr)));
    if (words[0] == "list") {
        const HostMap map = HostMap::load(map_path);
        print_warnings("map", map.warnings());
        printf("%-20s %-20s %-19s  %s\n", "VM_NODE", "HOST", "FROM", "TO");
        for (const HostInterval &i : map.intervals()) {
            printf("%-20s %-20s %-19s  %s\n", i.vm_node.c_str(), i.host.c_str(),
                   format_local_time(i.from).c_str(),
                   i.to ? format_local_time(*i.to).c_str() : "running");
        }
        return 0;
    }
    const protocol::UniqueFd lock = lock_map(map_path);
    HostMap map = HostMap::load(map_path);
    print_warnings("map", map.warnings());
    if (!map.warnings().empty()) {
        // Saving would drop the lines it could not read: the admin must fix them first.
        throw Error("host map " + map_path + ": not changed: fix the lines above first");
    }
    if (words[0] == "start") {
        try {
            map.record_start(words[1], words[2], t);
        } catch (const Error &e) {
            return usage_failure("map", UsageError(e.what()));
        }
    } else if (!map.record_stop(words[1], t)) {
        fprintf(stderr, "slurm-vm map: VM node '%s' is not running on any host in %s\n",
                words[1].c_str(), map_path.c_str());
        return 1;
    }
    map.save(map_path);
    return 0;
}

int cmd_running(const std::vector<std::string> &args) {
    std::string host, map_path = kDefaultHostMap;
    try {
        for (size_t i = 0; i < args.size(); ++i) {
            if (args[i] == "--map") {
                map_path = option_value(args, i);
            } else if (host.empty() && !args[i].empty() && args[i][0] != '-') {
                host = args[i];
            } else {
                throw UsageError{"unexpected argument '" + args[i] + "'"};
            }
        }
        if (host.empty()) {
            throw UsageError{"which host? usage: slurm-vm running HOST [--map FILE]"};
        }
    } catch (const UsageError &e) {
        return usage_failure("running", e);
    }
    const HostMap map = HostMap::load(map_path);
    print_warnings("running", map.warnings());
    const ProcessResult r =
        run_process({find_program("scontrol"), "show", "job", "-o"}, std::chrono::seconds(60));
    if (r.timed_out || r.status != 0) {
        throw Error("scontrol show job failed: " + r.err);
    }
    const auto jobs = jobs_running_on_host(r.out, map, host, static_cast<int64_t>(time(nullptr)));
    printf("%-10s %-12s %-10s %s\n", "JOBID", "USER", "NODE", "WHERE");
    for (const auto &j : jobs) {
        printf("%-10s %-12s %-10s %s\n", j.jobid.c_str(), j.user.c_str(), j.node.c_str(),
               j.kind.c_str());
    }
    return 0;
}

}  // namespace svm
