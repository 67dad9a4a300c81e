#include "accounting/host_map.h"

#include "util/atomic_file.h"
#include "util/error.h"

#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <sstream>

namespace svm {

namespace {

// Node and host names: what Slurm and DNS accept, and nothing that could split a line.
bool valid_name(const std::string &name) {
    if (name.empty() || name.size() > 255) {
        return false;
    }
    for (const char c : name) {
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_')) {
            return false;
        }
    }
    return true;
}

std::optional<int64_t> parse_epoch(const std::string &text) {
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v < 0) {
        return std::nullopt;
    }
    return v;
}

void check_name(const char *what, const std::string &name) {
    if (!valid_name(name)) {
        throw Error(std::string("host map: ") + what + " '" + name +
                    "': expected letters, digits, '.', '_' or '-'");
    }
}

}  // namespace

HostMap HostMap::load(const std::string &path) {
    HostMap map;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0 && errno == ENOENT) {
        return map;
    }
    std::istringstream in(read_whole_file(path));
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        const auto first = line.find_first_not_of(" \t\r");
        if (first == std::string::npos || line[first] == '#') {
            continue;
        }
        std::istringstream fields(line);
        std::vector<std::string> f;
        for (std::string w; fields >> w;) {
            f.push_back(w);
        }
        const std::string where = path + ":" + std::to_string(number) + ": ";
        if (f.size() != 4) {
            map.warnings_.push_back(where +
                                    "expected '<vm_node> <physical_host> <from> <to|->', got " +
                                    std::to_string(f.size()) + " fields");
            continue;
        }
        if (!valid_name(f[0]) || !valid_name(f[1])) {
            map.warnings_.push_back(where + "bad name '" + (valid_name(f[0]) ? f[1] : f[0]) +
                                    "': expected letters, digits, '.', '_' or '-'");
            continue;
        }
        const auto from = parse_epoch(f[2]);
        if (!from) {
            map.warnings_.push_back(where + "from '" + f[2] +
                                    "': expected seconds since the epoch");
            continue;
        }
        HostInterval interval{f[0], f[1], *from, std::nullopt};
        if (f[3] != "-") {
            interval.to = parse_epoch(f[3]);
            if (!interval.to) {
                map.warnings_.push_back(where + "to '" + f[3] +
                                        "': expected seconds since the epoch or '-'");
                continue;
            }
            if (*interval.to < *from) {
                map.warnings_.push_back(where + "interval ends (" + f[3] + ") before it starts (" +
                                        f[2] + ")");
                continue;
            }
        }
        map.intervals_.push_back(std::move(interval));
    }
    return map;
}

void HostMap::record_start(const std::string &vm_node, const std::string &host, int64_t t) {
    check_name("VM node", vm_node);
    check_name("physical host", host);
    for (HostInterval &i : intervals_) {
        if (i.vm_node == vm_node && !i.to) {
            if (i.host == host) {
                return;
            }
            i.to = std::max(t, i.from);
        }
    }
    intervals_.push_back({vm_node, host, t, std::nullopt});
}

bool HostMap::record_stop(const std::string &vm_node, int64_t t) {
    bool closed = false;
    for (HostInterval &i : intervals_) {
        if (i.vm_node == vm_node && !i.to) {
            i.to = std::max(t, i.from);
            closed = true;
        }
    }
    return closed;
}

std::optional<std::string> HostMap::host_of(const std::string &vm_node, int64_t t) const {
    // The latest interval wins where a hand-edited map overlaps.
    for (auto it = intervals_.rbegin(); it != intervals_.rend(); ++it) {
        if (it->vm_node == vm_node && it->from <= t && (!it->to || t < *it->to)) {
            return it->host;
        }
    }
    return std::nullopt;
}

void HostMap::save(const std::string &path) const {
    std::string text = "# slurm-vm host map: <vm_node> <physical_host> <from_epoch> <to_epoch|->\n";
    for (const HostInterval &i : intervals_) {
        text += i.vm_node + " " + i.host + " " + std::to_string(i.from) + " " +
                (i.to ? std::to_string(*i.to) : "-") + "\n";
    }
    write_file_atomically(path, text, 0644);
}

}  // namespace svm
