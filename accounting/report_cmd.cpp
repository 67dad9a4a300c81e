#include "report_cmd.h"

#include "util/error.h"
#include "accounting/host_map.h"
#include "util/process.h"
#include "util/fd.h"
#include "accounting/running_jobs.h"
#include "accounting/usage_report.h"

#include <fcntl.h>
#include <getopt.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
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
    "usage: slurm-vm report [--from YYYY-MM-DD[THH:MM]] [--to YYYY-MM-DD[THH:MM]] "
    "[--format table|csv|json] [--map FILE] [--sacct-output FILE]";
constexpr const char *kReportHelp =
    "Usage per physical host and per image in the window [--from, --to), from sacct and the\n"
    "host map. Without --from, the window starts yesterday at 00:00; without --to, it ends\n"
    "today at 00:00 (local time), as sreport's does. The table and JSON show the window used.\n"
    "  --format table|csv|json   output format (table)\n"
    "  --map FILE                the VM-node-to-host map (/var/lib/slurm-vm/host-map)\n"
    "  --sacct-output FILE       read this saved output of sacct instead of running it:\n";
constexpr const char *kMapUsage =
    "usage: slurm-vm map start VMNODE HOST [--at TIME] | stop VMNODE [--at TIME] | list "
    "[--map FILE]";
constexpr const char *kRunningUsage = "usage: slurm-vm running HOST [--map FILE]";

// A month of a busy cluster's jobs takes sacct a while; the report has no one waiting on it
// the way the prolog has slurmd.
constexpr auto kSacctTimeout = std::chrono::seconds(300);

// The words of a command line, options with their values and the other words in order.
struct CommandLine {
    std::vector<std::pair<int, std::string>> options;  // (getopt_long's val, value)
    std::vector<std::string> operands;
};

// "--f" when both --from and --format exist: getopt_long takes unique prefixes only.
bool is_ambiguous(const std::string &word, const option *options) {
    if (!word.starts_with("--")) {
        return false;
    }
    const std::string prefix = word.substr(2, word.find('=') - 2);
    int matches = 0;
    for (const option *o = options; o->name; ++o) {
        matches += std::string_view(o->name).starts_with(prefix) ? 1 : 0;
    }
    return matches > 1;
}

// getopt_long over args. Throws UsageError naming an unknown option or one without its value.
CommandLine parse_command_line(const char *command, const std::vector<std::string> &args,
                               const option *options) {
    std::vector<std::string> words{std::string("slurm-vm ") + command};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char *> argv = c_strings(words);
    const int argc = static_cast<int>(words.size());

    CommandLine line;
    // getopt keeps its state in globals: optind 0 starts afresh (each test calls us again).
    // opterr 0: the messages are ours, on one line. "-" hands over the operands in order, so
    // options may follow them ("running node1 --map F") whatever POSIXLY_CORRECT says.
    optind = 0;
    opterr = 0;
    for (;;) {
        const int c = getopt_long(argc, argv.data(), "-:h", options, nullptr);
        if (c == -1) {
            break;
        }
        if (c == 1) {
            line.operands.emplace_back(optarg);
        } else if (c == '?') {
            if (optopt != 0) {
                throw UsageError("unknown option '-" + std::string(1, static_cast<char>(optopt)) +
                                 "'");
            }
            const std::string name = argv[optind - 1];
            throw UsageError(
                (is_ambiguous(name, options) ? "ambiguous option '" : "unknown option '") + name +
                "'");
        } else if (c == ':') {
            throw UsageError("option '" + std::string(argv[optind - 1]) + "' needs a value");
        } else {
            line.options.emplace_back(c, optarg ? optarg : "");
        }
    }
    for (int i = optind; i < argc; ++i) {
        line.operands.emplace_back(argv[i]);  // after "--"
    }
    return line;
}

// One line, as scripts and the integration tests expect.
int usage_failure(const char *command, const std::string &message, const char *usage) {
    fprintf(stderr, "slurm-vm %s: %s; %s\n", command, message.c_str(), usage);
    return 2;
}

void print_warnings(const char *command, const std::vector<std::string> &warnings) {
    for (const std::string &w : warnings) {
        fprintf(stderr, "slurm-vm %s: warning: %s\n", command, w.c_str());
    }
}

// The first line of a program's stderr, for an error message.
std::string first_line(const std::string &text) {
    return text.substr(0, text.find('\n'));
}

// Streams sacct's records for the window into the report: no size cap, so every job counts.
void add_sacct_jobs(const ReportWindow &window, UsageAccumulator &usage) {
    // sacct prints times as SLURM_TIME_FORMAT says; the parser reads the standard ISO form.
    setenv("SLURM_TIME_FORMAT", "standard", 1);
    const std::vector<std::string> argv{find_program("sacct"),
                                        "--allusers",
                                        "--allocations",
                                        "--parsable2",
                                        "--noheader",
                                        "--format",
                                        kSacctFields,
                                        "--starttime",
                                        format_local_time(window.from),
                                        "--endtime",
                                        format_local_time(window.to)};
    const ProcessResult r = run_process_lines(
        argv, kSacctTimeout,
        [&usage](std::string_view line, bool complete) { usage.add_sacct_line(line, complete); });
    if (r.timed_out) {
        throw Error("sacct did not finish within " + std::to_string(kSacctTimeout.count()) +
                    " s (is slurmdbd up?); no report");
    }
    if (r.status != 0) {
        const std::string reason = first_line(r.err);
        throw Error("sacct failed with exit status " + std::to_string(r.status) +
                    (reason.empty() ? "" : ": " + reason));
    }
}

// A saved sacct output, read the same way: a file of any size.
void add_sacct_file(const std::string &path, UsageAccumulator &usage) {
    const UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        throw Error("cannot read " + path + ": " + errno_text(errno));
    }
    LineSplitter lines(
        [&usage](std::string_view line, bool complete) { usage.add_sacct_line(line, complete); });
    std::array<char, 65536> buf;
    for (;;) {
        const ssize_t n = read(fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            throw Error("cannot read " + path + ": " + errno_text(errno));
        }
        if (n == 0) {
            break;
        }
        lines.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    }
    lines.finish();
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
UniqueFd lock_map(const std::string &path) {
    const std::string lock = path + ".lock";
    UniqueFd fd(open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
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

enum Option { kFrom = 256, kTo, kFormat, kMap, kSacctOutput, kAt, kHelp = 'h' };

}  // namespace

int cmd_report(const std::vector<std::string> &args, const HostlistExpander &expand) {
    static const option kOptions[] = {{"from", required_argument, nullptr, kFrom},
                                      {"to", required_argument, nullptr, kTo},
                                      {"format", required_argument, nullptr, kFormat},
                                      {"map", required_argument, nullptr, kMap},
                                      {"sacct-output", required_argument, nullptr, kSacctOutput},
                                      {"help", no_argument, nullptr, kHelp},
                                      {nullptr, 0, nullptr, 0}};
    const int64_t now = static_cast<int64_t>(time(nullptr));
    ReportWindow window = default_report_window(now);
    std::string sacct_output_file, map_path = kDefaultHostMap;
    ReportFormat format = ReportFormat::Table;
    try {
        const CommandLine line = parse_command_line("report", args, kOptions);
        if (!line.operands.empty()) {
            throw UsageError("unexpected argument '" + line.operands[0] + "'");
        }
        bool have_from = false, have_to = false;
        for (const auto &[opt, value] : line.options) {
            switch (opt) {
                case kFrom:
                    window.from = parse_local_time(value, "--from");
                    have_from = true;
                    break;
                case kTo:
                    window.to = parse_local_time(value, "--to");
                    have_to = true;
                    break;
                case kFormat:
                    format = parse_report_format(value);
                    break;
                case kMap:
                    map_path = value;
                    break;
                case kSacctOutput:
                    sacct_output_file = value;
                    break;
                case kHelp:
                    printf("%s\n%s%28ssacct -a -X -P -n -o %s\n", kReportUsage, kReportHelp, "",
                           kSacctFields);
                    return 0;
            }
        }
        if (window.to < window.from) {
            throw UsageError(std::string("window: ") + (have_to ? "--to " : "the default --to ") +
                             format_local_time(window.to) + " is before " +
                             (have_from ? "--from " : "the default --from ") +
                             format_local_time(window.from));
        }
    } catch (const Error &e) {
        // Bad options, times or formats alike: the user's to fix.
        return usage_failure("report", e.what(), kReportUsage);
    }

    HostMap map = HostMap::load(map_path);
    const std::vector<std::string> map_warnings = map.warnings();
    UsageAccumulator usage(std::move(map), window.from, window.to, now, expand);
    for (const std::string &w : map_warnings) {
        usage.warn(w);
    }
    if (sacct_output_file.empty()) {
        add_sacct_jobs(window, usage);
    } else {
        add_sacct_file(sacct_output_file, usage);
    }
    const UsageReport report = usage.finish();
    print_warnings("report", report.warnings);
    fputs(render_report(report, format).c_str(), stdout);
    return 0;
}

int cmd_map(const std::vector<std::string> &args) {
    static const option kOptions[] = {{"map", required_argument, nullptr, kMap},
                                      {"at", required_argument, nullptr, kAt},
                                      {"help", no_argument, nullptr, kHelp},
                                      {nullptr, 0, nullptr, 0}};
    std::string map_path = kDefaultHostMap;
    std::vector<std::string> words;
    std::optional<int64_t> at;
    try {
        const CommandLine line = parse_command_line("map", args, kOptions);
        for (const auto &[opt, value] : line.options) {
            if (opt == kHelp) {
                printf("%s\n", kMapUsage);
                return 0;
            }
            if (opt == kMap) {
                map_path = value;
            } else {
                at = parse_at(value);
            }
        }
        words = line.operands;
        const bool ok = (words.size() == 3 && words[0] == "start") ||
                        (words.size() == 2 && words[0] == "stop") ||
                        (words.size() == 1 && words[0] == "list");
        if (!ok) {
            const bool known =
                !words.empty() && (words[0] == "start" || words[0] == "stop" || words[0] == "list");
            throw UsageError(known ? "wrong number of arguments for " + words[0]
                                   : "expected start, stop or list, got '" +
                                         (words.empty() ? "" : words[0]) + "'");
        }
        if (at && words[0] == "list") {
            throw UsageError("--at is for start and stop");
        }
    } catch (const UsageError &e) {
        return usage_failure("map", e.what(), kMapUsage);
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
    const UniqueFd lock = lock_map(map_path);
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
            return usage_failure("map", e.what(), kMapUsage);
        }
    } else if (!map.record_stop(words[1], t)) {
        fprintf(stderr, "slurm-vm map: VM node '%s' is not running on any host in %s\n",
                words[1].c_str(), map_path.c_str());
        return 1;
    }
    map.save(map_path);
    return 0;
}

int cmd_running(const std::vector<std::string> &args, const JobSource &list_jobs) {
    static const option kOptions[] = {{"map", required_argument, nullptr, kMap},
                                      {"help", no_argument, nullptr, kHelp},
                                      {nullptr, 0, nullptr, 0}};
    std::string host, map_path = kDefaultHostMap;
    try {
        const CommandLine line = parse_command_line("running", args, kOptions);
        for (const auto &[opt, value] : line.options) {
            if (opt == kHelp) {
                printf("%s\n", kRunningUsage);
                return 0;
            }
            map_path = value;
        }
        if (line.operands.empty()) {
            throw UsageError("no HOST given");
        }
        if (line.operands.size() > 1) {
            throw UsageError("unexpected argument '" + line.operands[1] + "'");
        }
        host = line.operands[0];
    } catch (const UsageError &e) {
        return usage_failure("running", e.what(), kRunningUsage);
    }
    const HostMap map = HostMap::load(map_path);
    print_warnings("running", map.warnings());
    const int64_t now = static_cast<int64_t>(time(nullptr));
    std::vector<RunningJob> jobs;
    // One job at a time: every job of the cluster passes through, only this host's are kept.
    list_jobs([&](const JobRecord &job) {
        for (RunningJob &j : running_on_host(job, map, host, now)) {
            jobs.push_back(std::move(j));
        }
    });
    printf("%-10s %-12s %-10s %s\n", "JOBID", "USER", "NODE", "WHERE");
    for (const auto &j : jobs) {
        printf("%-10s %-12s %-10s %s\n", j.jobid.c_str(), j.user.c_str(), j.node.c_str(),
               j.kind.c_str());
    }
    return 0;
}

}  // namespace svm
