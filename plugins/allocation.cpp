#include "allocation.h"

#include "error.h"

#include <sstream>

namespace svm {

namespace {

std::vector<std::string> split_top_level_commas(std::string_view s) {
    std::vector<std::string> parts;
    std::string cur;
    int depth = 0;
    for (char c : s) {
        if (c == '[') {
            ++depth;
        } else if (c == ']') {
            --depth;
        }
        if (c == ',' && depth == 0) {
            parts.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) {
        parts.push_back(cur);
    }
    return parts;
}

unsigned long to_number(const std::string &s, std::string_view whole) {
    if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) {
        throw Error("host list '" + std::string(whole) + "': '" + s + "' is not a number");
    }
    return std::stoul(s);
}

// Counts the CPUs in a CPU_IDs value such as "0-3,8".
unsigned count_ids(const std::string &ids) {
    unsigned n = 0;
    std::stringstream ss(ids);
    std::string range;
    while (std::getline(ss, range, ',')) {
        const auto dash = range.find('-');
        try {
            if (dash == std::string::npos) {
                to_number(range, ids);
                ++n;
            } else {
                n += to_number(range.substr(dash + 1), ids) -
                     to_number(range.substr(0, dash), ids) + 1;
            }
        } catch (const Error &) {
            return 0;
        }
    }
    return n;
}

}  // namespace

std::vector<std::string> expand_hostlist(std::string_view hostlist) {
    std::vector<std::string> names;
    for (const auto &part : split_top_level_commas(hostlist)) {
        const auto open = part.find('[');
        if (open == std::string::npos) {
            names.push_back(part);
            continue;
        }
        const auto close = part.find(']', open);
        if (close == std::string::npos) {
            throw Error("host list '" + std::string(hostlist) + "': missing ']'");
        }
        const std::string prefix = part.substr(0, open), suffix = part.substr(close + 1);
        std::stringstream ranges(part.substr(open + 1, close - open - 1));
        std::string range;
        while (std::getline(ranges, range, ',')) {
            const auto dash = range.find('-');
            const std::string lo = range.substr(0, dash);
            const std::string hi = dash == std::string::npos ? lo : range.substr(dash + 1);
            const unsigned long a = to_number(lo, hostlist), b = to_number(hi, hostlist);
            for (unsigned long i = a; i <= b; ++i) {
                std::string num = std::to_string(i);
                if (num.size() < lo.size()) {
                    num.insert(0, lo.size() - num.size(), '0');  // node[01-10] keeps its width
                }
                names.push_back(prefix + num + suffix);
            }
        }
    }
    return names;
}

std::string job_field(const std::string &line, std::string_view key) {
    const std::string needle = " " + std::string(key) + "=";
    const auto at = (" " + line).find(needle);
    if (at == std::string::npos) {
        return "";
    }
    const auto start = at + needle.size() - 1;
    return line.substr(start, line.find(' ', start) - start);
}

NodeAllocation node_allocation(const std::string &detail, std::string_view node) {
    NodeAllocation found;
    std::stringstream words(detail);
    std::string word;
    bool ours = false;
    while (words >> word) {
        if (word.rfind("Nodes=", 0) == 0) {
            ours = false;
            try {
                for (const auto &n : expand_hostlist(word.substr(6))) {
                    ours = ours || n == node;
                }
            } catch (const Error &) {
            }
        } else if (ours && word.rfind("CPU_IDs=", 0) == 0) {
            found.cpus = count_ids(word.substr(8));
        } else if (ours && word.rfind("Mem=", 0) == 0) {
            try {
                found.memory_mib = std::stoull(word.substr(4));
            } catch (const std::exception &) {
            }
        }
    }
    return found;
}

}  // namespace svm
