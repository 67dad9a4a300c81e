#include "exec/guest_env.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

namespace svm {

namespace {

constexpr std::string_view kPath = "PATH";

constexpr std::string_view kCodeVariables[] = {
    "GCONV_PATH", "BASH_ENV",          "ENV",           "ZDOTDIR",
    "SHELLOPTS",  "BASHOPTS",          "PS4",           "PROMPT_COMMAND",
    "TCLLIBPATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS"};
constexpr std::string_view kCodePrefixes[] = {"LD_",  "BASH_FUNC_", "PYTHON", "PERL",
                                              "RUBY", "LUA_",       "NODE_"};

struct Entry {
    std::string_view name, value;
};

// "NAME=value" split at the first '='; an entry without one is a name with no value.
Entry split(std::string_view entry) {
    const std::size_t eq = entry.find('=');
    if (eq == std::string_view::npos) {
        return {entry, {}};
    }
    return {entry.substr(0, eq), entry.substr(eq + 1)};
}

bool set_aside(std::string_view name) {
    return name.starts_with(kGuestEnvPrefix);
}

}  // namespace

bool chooses_host_code(std::string_view name) {
    return std::find(std::begin(kCodeVariables), std::end(kCodeVariables), name) !=
               std::end(kCodeVariables) ||
           std::any_of(std::begin(kCodePrefixes), std::end(kCodePrefixes),
                       [&](std::string_view prefix) { return name.starts_with(prefix); });
}

EnvEdit set_aside_for_guest(const std::vector<std::string> &env, bool step_start) {
    EnvEdit edit;
    std::set<std::string_view> seen;
    std::optional<std::string_view> path;
    bool path_set_aside = false;
    bool paths = false;  // more than one PATH entry
    for (const std::string &e : env) {
        const Entry entry = split(e);
        paths = paths || (path && entry.name == kPath);
        if (entry.name.empty() || !seen.insert(entry.name).second) {
            continue;  // the first value of a name is the one a program's getenv finds
        }
        if (set_aside(entry.name)) {
            path_set_aside = path_set_aside || entry.name.substr(kGuestEnvPrefix.size()) == kPath;
        } else if (entry.name == kPath) {
            path = entry.value;
        } else if (chooses_host_code(entry.name)) {
            edit.unset.emplace_back(entry.name);
            edit.set.emplace_back(std::string(kGuestEnvPrefix) + std::string(entry.name),
                                  std::string(entry.value));
        }
    }
    const std::string path_aside = std::string(kGuestEnvPrefix) + std::string(kPath);
    if (!path || *path != kHostPath || paths) {
        if (path) {
            edit.set.emplace_back(path_aside, std::string(*path));
        }
        // Every PATH entry first: a shell takes the last of two, getenv the first.
        edit.unset.emplace_back(kPath);
        edit.set.emplace_back(std::string(kPath), std::string(kHostPath));
    } else if (step_start && !path_set_aside) {
        // The job's own PATH happens to be the host's: the guest gets it back all the same.
        edit.set.emplace_back(path_aside, std::string(*path));
    }
    return edit;
}

std::vector<std::string> guest_environment(const std::vector<std::string> &env) {
    std::map<std::string_view, std::string_view> waiting;
    std::set<std::string_view> present;
    std::vector<std::string> out;
    for (const std::string &e : env) {
        const Entry entry = split(e);
        if (set_aside(entry.name)) {
            waiting.emplace(entry.name.substr(kGuestEnvPrefix.size()), entry.value);
        } else if (entry.name == kPath && entry.value == kHostPath) {
            continue;  // the host side's PATH: the job's comes back below, if it had one
        } else {
            present.insert(entry.name);
            out.push_back(e);
        }
    }
    for (const auto &[name, value] : waiting) {
        if (!name.empty() && !present.contains(name)) {
            out.push_back(std::string(name) + "=" + std::string(value));
        }
    }
    return out;
}

}  // namespace svm
