#include "accounting/usage_report.h"

#include "accounting/job_records.h"
#include "util/error.h"
#include "util/json.h"
#include "accounting/vm_record.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <utility>

namespace svm {

namespace {

std::vector<std::string> split_fields(std::string_view line) {
    std::vector<std::string> fields;
    for (;;) {
        const size_t bar = line.find('|');
        fields.emplace_back(line.substr(0, bar));
        if (bar == std::string_view::npos) {
            return fields;
        }
        line.remove_prefix(bar + 1);
    }
}

bool not_a_time(const std::string &text) {
    return text == "Unknown" || text == "None" || text.empty();
}

void add_usage(Usage &u, double cpu_hours, double elapsed_hours) {
    u.cpu_hours += cpu_hours;
    u.elapsed_hours += elapsed_hours;
}

std::string fixed(double v, int decimals) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

std::string csv_field(const std::string &s) {
    if (s.find_first_of(",\"\n") == std::string::npos) {
        return s;
    }
    std::string out = "\"";
    for (const char c : s) {
        out += c;
        if (c == '"') {
            out += '"';
        }
    }
    return out + "\"";
}

// Columns: the first left-aligned, the rest right-aligned (numbers).
std::string aligned(const std::vector<std::vector<std::string>> &rows, size_t left_columns) {
    std::vector<size_t> width;
    for (const auto &row : rows) {
        width.resize(std::max(width.size(), row.size()));
        for (size_t i = 0; i < row.size(); ++i) {
            width[i] = std::max(width[i], row[i].size());
        }
    }
    std::string out;
    for (const auto &row : rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i) {
            const std::string pad(width[i] - row[i].size(), ' ');
            if (i > 0) {
                line += "  ";
            }
            line += i < left_columns ? row[i] + pad : pad + row[i];
        }
        while (!line.empty() && line.back() == ' ') {
            line.pop_back();
        }
        out += line + "\n";
    }
    return out;
}

std::vector<std::pair<std::string, const Usage *>> classes(const HostUsage &h) {
    return {{"bare", &h.bare},
            {"vm_jobs", &h.vm_jobs},
            {"vm_node_jobs", &h.vm_node_jobs},
            {"total", &h.total}};
}

std::string render_table(const UsageReport &r) {
    std::string out = "slurm-vm usage from " + format_local_time(r.from) + " to " +
                      format_local_time(r.to) + "\n\n";
    std::vector<std::vector<std::string>> rows{
        {"HOST", "CLASS", "JOBS", "CPU_HOURS", "ELAPSED_HOURS"}};
    for (const HostUsage &h : r.hosts) {
        for (const auto &[name, u] : classes(h)) {
            // People need the classes that happened; scripts get all of them in CSV and JSON.
            if (u->jobs > 0 || name == "total") {
                rows.push_back({h.host, name, std::to_string(u->jobs), fixed(u->cpu_hours, 2),
                                fixed(u->elapsed_hours, 2)});
            }
        }
    }
    out += aligned(rows, 2) + "\n";
    rows = {{"IMAGE", "JOBS", "CPU_HOURS", "ELAPSED_HOURS"}};
    for (const ImageUsage &i : r.images) {
        rows.push_back({i.image, std::to_string(i.usage.jobs), fixed(i.usage.cpu_hours, 2),
                        fixed(i.usage.elapsed_hours, 2)});
    }
    return out + aligned(rows, 1);
}

std::string render_csv(const UsageReport &r) {
    std::string out = "section,name,class,jobs,cpu_hours,elapsed_hours\n";
    const auto row = [&out](const char *section, const std::string &name, const std::string &cls,
                            const Usage &u) {
        out += std::string(section) + "," + csv_field(name) + "," + cls + "," +
               std::to_string(u.jobs) + "," + fixed(u.cpu_hours, 4) + "," +
               fixed(u.elapsed_hours, 4) + "\n";
    };
    for (const HostUsage &h : r.hosts) {
        for (const auto &[name, u] : classes(h)) {
            row("host", h.host, name, *u);
        }
    }
    for (const ImageUsage &i : r.images) {
        row("image", i.image, "vm_jobs", i.usage);
    }
    return out;
}

JsonPtr json_double(double v) {
    const std::string text = fixed(v, 4);
    return JsonPtr(json_object_new_double_s(v, text.c_str()));
}

void set_usage_fields(json_object *obj, const Usage &u) {
    json_set(obj, "jobs", json_from_int(u.jobs));
    json_set(obj, "cpu_hours", json_double(u.cpu_hours));
    json_set(obj, "elapsed_hours", json_double(u.elapsed_hours));
}

std::string render_json(const UsageReport &r) {
    JsonPtr root = json_new_object();
    json_set(root.get(), "from", json_from_string(format_local_time(r.from)));
    json_set(root.get(), "to", json_from_string(format_local_time(r.to)));
    JsonPtr hosts(json_object_new_array());
    for (const HostUsage &h : r.hosts) {
        JsonPtr host = json_new_object();
        json_set(host.get(), "host", json_from_string(h.host));
        for (const auto &[name, u] : classes(h)) {
            JsonPtr usage = json_new_object();
            set_usage_fields(usage.get(), *u);
            json_set(host.get(), name.c_str(), std::move(usage));
        }
        json_object_array_add(hosts.get(), host.release());
    }
    json_set(root.get(), "hosts", std::move(hosts));
    JsonPtr images(json_object_new_array());
    for (const ImageUsage &i : r.images) {
        JsonPtr image = json_new_object();
        json_set(image.get(), "image", json_from_string(i.image));
        set_usage_fields(image.get(), i.usage);
        json_object_array_add(images.get(), image.release());
    }
    json_set(root.get(), "images", std::move(images));
    JsonPtr warnings(json_object_new_array());
    for (const std::string &w : r.warnings) {
        json_object_array_add(warnings.get(), json_from_string(w).release());
    }
    json_set(root.get(), "warnings", std::move(warnings));
    return json_to_text(root.get()) + "\n";
}

}  // namespace

JobUsage parse_sacct_line(std::string_view line, const HostlistExpander &expand) {
    std::vector<std::string> f = split_fields(line);
    if (f.size() < 8) {
        throw Error("expected 8 '|'-separated fields (" + std::string(kSacctFields) + "), got " +
                    std::to_string(f.size()));
    }
    // AdminComment is the last column and is not ours alone: a '|' in it splits nothing.
    for (size_t i = 8; i < f.size(); ++i) {
        f[7] += "|" + f[i];
    }
    JobUsage job;
    job.jobid = f[0];
    if (job.jobid.empty()) {
        throw Error("empty JobID");
    }
    job.user = f[1];
    if (f[2] != "None assigned" && !f[2].empty()) {
        job.nodes = expand(f[2]);
    }
    unsigned cpus = 0;
    const auto [end, ec] = std::from_chars(f[3].data(), f[3].data() + f[3].size(), cpus);
    if (ec != std::errc() || end != f[3].data() + f[3].size()) {
        throw Error("AllocCPUS '" + f[3] + "': expected a number");
    }
    job.alloc_cpus = cpus;
    if (!not_a_time(f[4])) {
        job.start = parse_local_time(f[4], "Start");
    }
    if (!not_a_time(f[5])) {
        job.end = parse_local_time(f[5], "End");
    }
    job.state = f[6];
    job.admin_comment = f[7];
    return job;
}

int64_t parse_local_time(std::string_view text, const std::string &what) {
    const std::string s(text);
    const auto fail = [&]() -> int64_t {
        throw Error(what + " '" + s + "': expected YYYY-MM-DD[THH:MM[:SS]]");
    };
    std::tm tm{};
    int consumed = 0;
    if (s.size() == 10) {
        if (sscanf(s.c_str(), "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &consumed) !=
            3) {
            return fail();
        }
    } else if (s.size() == 16) {
        if (sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                   &tm.tm_hour, &tm.tm_min, &consumed) != 5) {
            return fail();
        }
    } else if (s.size() == 19) {
        if (sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
            return fail();
        }
    } else {
        return fail();
    }
    // sscanf accepts signs and spaces inside the fields; the layout must be exact.
    for (size_t i = 0; i < s.size(); ++i) {
        const bool sep = i == 4 || i == 7 || i == 10 || i == 13 || i == 16;
        if (!sep && (s[i] < '0' || s[i] > '9')) {
            return fail();
        }
    }
    if (static_cast<size_t>(consumed) != s.size()) {
        return fail();
    }
    const std::tm wanted = tm;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    const time_t t = mktime(&tm);
    // mktime normalises 2026-02-30 to March: a date that moved was not a date.
    if (t == static_cast<time_t>(-1) || tm.tm_mday != wanted.tm_mday ||
        tm.tm_mon != wanted.tm_mon - 1 || tm.tm_hour != wanted.tm_hour ||
        tm.tm_min != wanted.tm_min || tm.tm_sec != wanted.tm_sec) {
        throw Error(what + " '" + s + "': no such date or time");
    }
    return static_cast<int64_t>(t);
}

std::string format_local_time(int64_t t) {
    const time_t tt = static_cast<time_t>(t);
    std::tm tm{};
    localtime_r(&tt, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return buf;
}

ReportWindow default_report_window(int64_t now) {
    const time_t t = static_cast<time_t>(now);
    std::tm tm{};
    localtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_isdst = -1;  // midnight may be in the other DST period than now
    std::tm yesterday = tm;
    ReportWindow w;
    w.to = static_cast<int64_t>(mktime(&tm));
    yesterday.tm_mday -= 1;  // mktime carries the day into the previous month or year
    w.from = static_cast<int64_t>(mktime(&yesterday));
    return w;
}

UsageAccumulator::UsageAccumulator(HostMap map, int64_t from, int64_t to, int64_t now,
                                   HostlistExpander expand)
    : map_(std::move(map)), expand_(std::move(expand)), now_(now) {
    report_.from = from;
    report_.to = to;
}

void UsageAccumulator::warn(std::string message) {
    if (report_.warnings.size() < kMaxReportWarnings) {
        report_.warnings.push_back(std::move(message));
    } else {
        ++dropped_warnings_;
    }
}

void UsageAccumulator::add_sacct_line(std::string_view line, bool complete) {
    ++line_number_;
    const std::string where = "sacct output line " + std::to_string(line_number_) + ": ";
    if (!complete) {
        warn(where + "longer than " + std::to_string(line.size()) + " bytes; skipped");
        return;
    }
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
    }
    if (line.empty()) {
        return;
    }
    try {
        add(parse_sacct_line(line, expand_));
    } catch (const Error &e) {
        warn(where + e.what());
    }
}

void UsageAccumulator::add(const JobUsage &job) {
    const int64_t from = report_.from, to = report_.to;
    if (to <= from || !job.start || job.nodes.empty()) {
        return;
    }
    const int64_t start = std::max(*job.start, from);
    const int64_t end = std::min(job.end.value_or(std::max(now_, *job.start)), to);
    if (end <= start) {
        return;
    }
    const double elapsed = static_cast<double>(end - start) / 3600.0;
    const double cpu_hours = elapsed * job.alloc_cpus;

    // (host, class) of each node of the job.
    enum Class { Bare, Vm, VmNode };
    std::vector<std::pair<std::string, Class>> units;
    std::optional<VmJobComment> comment;
    try {
        comment = parse_admin_comment(job.admin_comment);
    } catch (const Error &e) {
        warn("job " + job.jobid + ": " + e.what() + "; charged to its nodes");
        for (const std::string &node : job.nodes) {
            units.emplace_back(node, Vm);
        }
    }
    if (comment) {
        // Each node of the job ran one of its VMs.
        for (const std::string &node : job.nodes) {
            units.emplace_back(node, Vm);
        }
        Usage &image = images_[comment->image];
        ++image.jobs;
        add_usage(image, cpu_hours, elapsed);
    } else if (units.empty()) {
        for (const std::string &node : job.nodes) {
            if (auto host = map_.host_of(node, *job.start)) {
                units.emplace_back(*host, VmNode);
            } else {
                units.emplace_back(node, Bare);
            }
        }
    }

    const double share = 1.0 / static_cast<double>(units.size());
    std::set<std::pair<std::string, int>> counted;
    for (const auto &[host, cls] : units) {
        HostUsage &h = hosts_[host];
        h.host = host;
        Usage &u = cls == Bare ? h.bare : cls == Vm ? h.vm_jobs : h.vm_node_jobs;
        add_usage(u, cpu_hours * share, elapsed);
        add_usage(h.total, cpu_hours * share, elapsed);
        if (counted.insert({host, cls}).second) {
            ++u.jobs;
        }
        if (counted.insert({host, -1}).second) {
            ++h.total.jobs;
        }
    }
}

UsageReport UsageAccumulator::finish() {
    if (dropped_warnings_ > 0) {
        report_.warnings.push_back(std::to_string(dropped_warnings_) + " more warnings not shown");
        dropped_warnings_ = 0;
    }
    for (auto &[name, h] : hosts_) {
        report_.hosts.push_back(std::move(h));
    }
    for (auto &[name, u] : images_) {
        report_.images.push_back({name, u});
    }
    hosts_.clear();
    images_.clear();
    return std::move(report_);
}

ReportFormat parse_report_format(std::string_view text) {
    if (text == "table") {
        return ReportFormat::Table;
    }
    if (text == "csv") {
        return ReportFormat::Csv;
    }
    if (text == "json") {
        return ReportFormat::Json;
    }
    throw Error("format '" + std::string(text) + "': expected table, csv or json");
}

std::string render_report(const UsageReport &report, ReportFormat format) {
    switch (format) {
        case ReportFormat::Table:
            return render_table(report);
        case ReportFormat::Csv:
            return render_csv(report);
        case ReportFormat::Json:
            return render_json(report);
    }
    return {};
}

}  // namespace svm
