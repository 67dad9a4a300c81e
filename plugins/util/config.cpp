#include "util/config.h"

#include "util/error.h"
#include "util/text.h"

#include <algorithm>
#include <charconv>
#include <functional>
#include <set>

namespace svm {

namespace {

constexpr std::size_t max_label_length = 63;
constexpr std::size_t max_hostname_length = 253;
constexpr uint64_t max_seconds = 24 * 3600;
constexpr unsigned max_exec_ports = 30;
constexpr uint64_t max_memory_overhead_mib = 64 * 1024;
constexpr uint64_t max_verdict_seconds = 30 * 24 * 3600;
constexpr uint64_t max_store_mib = 1024 * 1024 * 1024;  // 1 PiB: no bound an admin would reach

// Builds one `option '<key>=<value>': <reason>` error.
struct OptionWord {
    std::string key;
    std::string value;

    [[noreturn]] void fail(const std::string &reason) const {
        throw Error("option '" + printable(key) + "=" + printable(value) + "': " + reason);
    }
};

unsigned parse_unsigned(const OptionWord &word, uint64_t min, uint64_t max, const char *what) {
    const std::string &v = word.value;
    uint64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    const bool whole = !v.empty() && ec == std::errc() && end == v.data() + v.size();
    if (!whole || n < min || n > max) {
        word.fail("expected " + std::string(what) + " from " + std::to_string(min) + " to " +
                  std::to_string(max));
    }
    return static_cast<unsigned>(n);
}

std::string parse_path(const OptionWord &word) {
    const std::string problem = absolute_path_problem(word.value);
    if (!problem.empty()) {
        word.fail("path " + problem);
    }
    return word.value;
}

std::vector<std::string> parse_path_list(const OptionWord &word) {
    std::vector<std::string> paths;
    if (word.value.empty()) {
        return paths;  // "shared_paths=" shares nothing
    }
    std::set<std::string> seen;
    std::string_view rest = word.value;
    while (true) {
        const std::size_t comma = rest.find(',');
        const std::string path(rest.substr(0, comma));
        const std::string problem = absolute_path_problem(path);
        if (!problem.empty()) {
            word.fail("path '" + printable(path) + "' " + problem);
        }
        if (!seen.insert(path).second) {
            word.fail("path '" + path + "' is listed twice");
        }
        paths.push_back(path);
        if (comma == std::string_view::npos) {
            return paths;
        }
        rest.remove_prefix(comma + 1);
    }
}

std::string parse_libvirt_uri(const OptionWord &word) {
    const std::string &v = word.value;
    if (v.empty()) {
        word.fail("is empty");
    }
    const bool clean = std::none_of(v.begin(), v.end(), [](char c) {
        return static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
    });
    if (!clean) {
        word.fail("contains whitespace or control characters");
    }
    return v;
}

std::string parse_domain_type(const OptionWord &word) {
    if (word.value != "auto" && word.value != "kvm" && word.value != "qemu") {
        word.fail("expected auto, kvm or qemu");
    }
    return word.value;
}

HostCalls parse_host_calls(const OptionWord &word) {
    const auto mode = host_calls_from_name(word.value);
    if (!mode) {
        word.fail("expected all, steps or none");
    }
    return *mode;
}

std::string parse_hostname_template(const OptionWord &word) {
    try {
        expand_hostname(word.value, "node1", 1);
    } catch (const Error &e) {
        throw Error("option 'hostname': " + std::string(e.what()));
    }
    return word.value;
}

using Setter = std::function<void(Config &, const OptionWord &)>;

// In the order the documentation lists them; the unknown-option message repeats this order.
const std::vector<std::pair<std::string, Setter>> &options() {
    static const std::vector<std::pair<std::string, Setter>> table = {
        {"catalog", [](Config &c, const OptionWord &w) { c.catalog = parse_path(w); }},
        {"grace",
         [](Config &c, const OptionWord &w) {
             c.grace_seconds = parse_unsigned(w, 0, max_seconds, "a number of seconds");
         }},
        {"ready_timeout",
         [](Config &c, const OptionWord &w) {
             c.ready_timeout_seconds = parse_unsigned(w, 1, max_seconds, "a number of seconds");
         }},
        {"shared_paths",
         [](Config &c, const OptionWord &w) { c.shared_paths = parse_path_list(w); }},
        {"hostname",
         [](Config &c, const OptionWord &w) { c.hostname_template = parse_hostname_template(w); }},
        {"libvirt_uri",
         [](Config &c, const OptionWord &w) { c.libvirt_uri = parse_libvirt_uri(w); }},
        {"run_dir", [](Config &c, const OptionWord &w) { c.run_dir = parse_path(w); }},
        {"state_dir", [](Config &c, const OptionWord &w) { c.state_dir = parse_path(w); }},
        {"exec_ports",
         [](Config &c, const OptionWord &w) {
             c.exec_ports = parse_unsigned(w, 1, max_exec_ports, "a number of ports");
         }},
        {"domain_type",
         [](Config &c, const OptionWord &w) { c.domain_type = parse_domain_type(w); }},
        {"log_dir", [](Config &c, const OptionWord &w) { c.log_dir = parse_path(w); }},
        {"network",
         [](Config &c, const OptionWord &w) {
             if (w.value != "user" && w.value != "none") {
                 w.fail("expected user or none");
             }
             c.network = w.value;
         }},
        {"kvm_probe_timeout",
         [](Config &c, const OptionWord &w) {
             c.kvm_probe_timeout_seconds = parse_unsigned(w, 1, max_seconds, "a number of seconds");
         }},
        {"host_calls", [](Config &c, const OptionWord &w) { c.host_calls = parse_host_calls(w); }},
        {"share",
         [](Config &c, const OptionWord &w) {
             if (w.value != "9p" && w.value != "virtiofs") {
                 w.fail("expected 9p or virtiofs");
             }
             c.share = w.value;
         }},
        {"pin_vcpus",
         [](Config &c, const OptionWord &w) {
             if (w.value != "yes" && w.value != "no") {
                 w.fail("expected yes or no");
             }
             c.pin_vcpus = w.value == "yes";
         }},
        {"warm_start",
         [](Config &c, const OptionWord &w) {
             if (w.value != "yes" && w.value != "no") {
                 w.fail("expected yes or no");
             }
             c.warm_start = w.value == "yes";
         }},
        {"virtiofsd", [](Config &c, const OptionWord &w) { c.virtiofsd = parse_path(w); }},
        {"uefi_code", [](Config &c, const OptionWord &w) { c.uefi_code = parse_path(w); }},
        {"uefi_vars", [](Config &c, const OptionWord &w) { c.uefi_vars = parse_path(w); }},
        {"memory_overhead",
         [](Config &c, const OptionWord &w) {
             c.memory_overhead_mib =
                 parse_unsigned(w, 0, max_memory_overhead_mib, "a number of MiB");
         }},
        {"warm_cache",
         [](Config &c, const OptionWord &w) {
             c.warm_cache_mib = parse_unsigned(w, 0, max_store_mib, "a number of MiB");
         }},
        {"min_free",
         [](Config &c, const OptionWord &w) {
             c.min_free_mib = parse_unsigned(w, 0, max_store_mib, "a number of MiB");
         }},
        {"console_logs",
         [](Config &c, const OptionWord &w) {
             c.console_logs_mib = parse_unsigned(w, 1, max_store_mib, "a number of MiB");
         }},
        {"kvm_verdict_ttl",
         [](Config &c, const OptionWord &w) {
             c.kvm_verdict_ttl_seconds =
                 parse_unsigned(w, 60, max_verdict_seconds, "a number of seconds");
         }},
        {"libvirt_timeout",
         [](Config &c, const OptionWord &w) {
             c.libvirt_timeout_seconds = parse_unsigned(w, 1, max_seconds, "a number of seconds");
         }},
        {"libvirt_reconnect",
         [](Config &c, const OptionWord &w) {
             c.libvirt_reconnect_seconds = parse_unsigned(w, 0, max_seconds, "a number of seconds");
         }},
    };
    return table;
}

std::string valid_option_names() {
    std::string names;
    for (const auto &[key, setter] : options()) {
        names += (names.empty() ? "" : ", ") + key;
    }
    return names;
}

bool is_hostname_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

std::string lower_case(std::string_view text) {
    std::string out(text);
    std::transform(out.begin(), out.end(), out.begin(), [](char c) {
        return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    });
    return out;
}

std::string label_problem(std::string_view label) {
    const std::string quoted = "label '" + printable(label) + "'";
    if (label.empty()) {
        return "has an empty label";
    }
    if (label.size() > max_label_length) {
        return quoted + " is longer than " + std::to_string(max_label_length) + " characters";
    }
    for (char c : label) {
        if (!is_hostname_char(c)) {
            return quoted + " contains '" + printable(std::string_view(&c, 1)) +
                   "' (allowed: a-z, 0-9, '-')";
        }
    }
    if (label.front() == '-') {
        return quoted + " starts with '-'";
    }
    if (label.back() == '-') {
        return quoted + " ends with '-'";
    }
    return "";
}

}  // namespace

const char *host_calls_name(HostCalls mode) {
    switch (mode) {
        case HostCalls::None:
            return "none";
        case HostCalls::Steps:
            return "steps";
        case HostCalls::All:
            return "all";
    }
    return "steps";
}

std::optional<HostCalls> host_calls_from_name(std::string_view name) {
    for (HostCalls mode : {HostCalls::None, HostCalls::Steps, HostCalls::All}) {
        if (name == host_calls_name(mode)) {
            return mode;
        }
    }
    return std::nullopt;
}

std::string hostname_problem(std::string_view hostname) {
    if (hostname.empty()) {
        return "is empty";
    }
    if (hostname.size() > max_hostname_length) {
        return "is longer than " + std::to_string(max_hostname_length) + " characters";
    }
    while (true) {
        const std::size_t dot = hostname.find('.');
        const std::string problem = label_problem(hostname.substr(0, dot));
        if (!problem.empty()) {
            return problem;
        }
        if (dot == std::string_view::npos) {
            return "";
        }
        hostname.remove_prefix(dot + 1);
    }
}

std::string control_character_problem(std::string_view text) {
    for (char c : text) {
        if (c == '\0') {
            return "contains a NUL byte";
        }
        if (c == '\n') {
            return "contains a newline";
        }
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            return "contains a control character";
        }
    }
    return "";
}

std::string absolute_path_problem(std::string_view path) {
    if (path.empty()) {
        return "is empty";
    }
    if (std::string problem = control_character_problem(path); !problem.empty()) {
        return problem;
    }
    if (path.front() != '/') {
        return "is not absolute";
    }
    std::string_view rest = path;
    while (!rest.empty()) {
        const std::size_t slash = rest.find('/');
        if (rest.substr(0, slash) == "..") {
            return "contains '..'";
        }
        if (slash == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(slash + 1);
    }
    return "";
}

std::string node_name_problem(std::string_view node) {
    if (node.empty()) {
        return "is empty";
    }
    if (node == "." || node == "..") {
        return "is '" + std::string(node) + "'";
    }
    for (char c : node) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) {
            return c == '/' ? "contains '/'" : "contains '" + printable(std::string(1, c)) + "'";
        }
    }
    return "";
}

std::string expand_hostname(const std::string &tmpl, std::string_view node, uint32_t jobid) {
    const std::string named = "hostname template '" + printable(tmpl) + "'";
    std::string out;
    for (std::size_t i = 0; i < tmpl.size(); ++i) {
        if (tmpl[i] != '%') {
            out += tmpl[i];
            continue;
        }
        if (i + 1 == tmpl.size()) {
            throw Error(named + ": ends with a lone '%'");
        }
        switch (tmpl[++i]) {
            case 'n':
                out += lower_case(node);
                break;
            case 'j':
                out += std::to_string(jobid);
                break;
            case '%':
                out += '%';
                break;
            default:
                throw Error(named + ": unknown '%" + printable(tmpl.substr(i, 1)) +
                            "' (use %n for the node name, %j for the job id, %% for '%')");
        }
    }
    const std::string problem = hostname_problem(out);
    if (!problem.empty()) {
        throw Error(named + " gives '" + printable(out) + "' for node '" + printable(node) +
                    "', job " + std::to_string(jobid) + ": not a valid hostname: " + problem);
    }
    return out;
}

Config parse_config(const std::vector<std::string> &args) {
    Config config;
    std::set<std::string> given;
    for (const std::string &arg : args) {
        const std::size_t eq = arg.find('=');
        if (eq == std::string::npos) {
            throw Error("option '" + printable(arg) +
                        "' is not of the form key=value; valid options: " + valid_option_names());
        }
        const OptionWord word{arg.substr(0, eq), arg.substr(eq + 1)};
        const auto &table = options();
        const auto option = std::find_if(
            table.begin(), table.end(), [&](const auto &entry) { return entry.first == word.key; });
        if (option == table.end()) {
            throw Error("unknown option '" + printable(arg) +
                        "'; valid options: " + valid_option_names());
        }
        if (!given.insert(word.key).second) {
            throw Error("option '" + word.key + "' is given twice");
        }
        option->second(config, word);
    }
    return config;
}

}  // namespace svm
