#include "vm/containment_config.h"

#include "util/text.h"

#include <algorithm>
#include <cctype>

namespace svm {

namespace {

std::string_view trim(std::string_view text) {
    const std::size_t first = text.find_first_not_of(" \t\r");
    if (first == std::string_view::npos) {
        return {};
    }
    const std::size_t last = text.find_last_not_of(" \t\r");
    return text.substr(first, last - first + 1);
}

// The comma-separated items of `value`, compared without case (Slurm reads these so).
bool has_item(std::string_view value, std::string_view item) {
    const auto lower = [](std::string_view s) {
        std::string out(s);
        std::transform(out.begin(), out.end(), out.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        return out;
    };
    const std::string want = lower(item);
    std::size_t at = 0;
    while (at <= value.size()) {
        const std::size_t end = std::min(value.find(',', at), value.size());
        if (lower(trim(value.substr(at, end - at))) == want) {
            return true;
        }
        at = end + 1;
    }
    return false;
}

std::string value_of(const std::map<std::string, std::string> &config, const std::string &key) {
    const auto it = config.find(key);
    return it == config.end() ? "" : it->second;
}

std::string shown(const std::string &value) {
    return value.empty() ? "(not set)" : printable(value);
}

}  // namespace

std::map<std::string, std::string> parse_slurm_config(std::string_view text) {
    std::map<std::string, std::string> config;
    std::size_t at = 0;
    while (at < text.size()) {
        const std::size_t end = std::min(text.find('\n', at), text.size());
        const std::string_view line = text.substr(at, end - at);
        at = end + 1;
        const std::size_t eq = line.find('=');
        if (eq == std::string_view::npos) {
            continue;
        }
        const std::string_view key = trim(line.substr(0, eq));
        if (key.empty() || key.find_first_of(" \t") != std::string_view::npos) {
            continue;  // not "Key = value": a heading or a free-form line
        }
        config[std::string(key)] = std::string(trim(line.substr(eq + 1)));
    }
    return config;
}

std::vector<std::string> containment_warnings(const std::map<std::string, std::string> &config,
                                              CgroupVersion version) {
    std::vector<std::string> lines;
    const std::string flags = value_of(config, "PrologFlags");
    if (!has_item(flags, "Contain")) {
        lines.push_back("PrologFlags=" + shown(flags) +
                        " lacks Contain: jobs have no extern step, and their VMs stay outside "
                        "their cgroups (not frozen by scontrol suspend, not in the job's memory "
                        "limit or accounting)");
    }
    if (has_item(flags, "RunInJob")) {
        lines.push_back("PrologFlags=" + shown(flags) +
                        " has RunInJob: the prolog boots the VM inside the extern step, after "
                        "the step's moment to place it, so VMs stay outside their steps' "
                        "cgroups (not frozen by scontrol suspend, not in sstat or sacct)");
    }
    const std::string proctrack = value_of(config, "ProctrackType");
    if (!has_item(proctrack, "proctrack/cgroup")) {
        lines.push_back("ProctrackType=" + shown(proctrack) +
                        " is not proctrack/cgroup: scontrol suspend and preemption by SUSPEND "
                        "do not freeze VMs");
    }
    const std::string task = value_of(config, "TaskPlugin");
    if (!has_item(task, "task/cgroup")) {
        lines.push_back("TaskPlugin=" + shown(task) +
                        " lacks task/cgroup: VMs are held to neither the job's CPUs nor its "
                        "memory");
    }
    const std::string acct = value_of(config, "JobAcctGatherType");
    if (!has_item(acct, "jobacct_gather/cgroup")) {
        lines.push_back("JobAcctGatherType=" + shown(acct) +
                        " is not jobacct_gather/cgroup: sstat and sacct do not count VMs' CPU "
                        "time and memory");
    }
    const std::string plugin = value_of(config, "CgroupPlugin");
    const std::string want = version == CgroupVersion::V2 ? "cgroup/v2" : "cgroup/v1";
    if (has_item(plugin, version == CgroupVersion::V2 ? "cgroup/v1" : "cgroup/v2")) {
        lines.push_back("CgroupPlugin=" + shown(plugin) + " but this node has " +
                        to_string(version) + ": set " + want + " (or autodetect) in cgroup.conf");
    }
    return lines;
}

}  // namespace svm
