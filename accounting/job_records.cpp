#include "accounting/job_records.h"

#include "util/error.h"

#include <charconv>
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
    unsigned long value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
        throw Error("host list '" + std::string(whole) + "': '" + s + "' is not a node number");
    }
    return value;
}

}  // namespace

namespace {

// Appends the names `part` stands for ("rack[1-2]-n[01-02]": every bracket, left to right).
void expand_part(const std::string &part, std::string_view whole, std::vector<std::string> &out) {
    const auto open = part.find('[');
    if (open == std::string::npos) {
        if (out.size() >= kMaxHostlistNames) {
            throw Error("host list '" + std::string(whole) + "' names more than " +
                        std::to_string(kMaxHostlistNames) + " hosts");
        }
        out.push_back(part);
        return;
    }
    const auto close = part.find(']', open);
    if (close == std::string::npos) {
        throw Error("host list '" + std::string(whole) + "': missing ']'");
    }
    const std::string prefix = part.substr(0, open), suffix = part.substr(close + 1);
    std::stringstream ranges(part.substr(open + 1, close - open - 1));
    std::string range;
    while (std::getline(ranges, range, ',')) {
        const auto dash = range.find('-');
        const std::string lo = range.substr(0, dash);
        const std::string hi = dash == std::string::npos ? lo : range.substr(dash + 1);
        const unsigned long a = to_number(lo, whole), b = to_number(hi, whole);
        if (b >= a && b - a >= kMaxHostlistNames) {
            throw Error("host list '" + std::string(whole) + "' names more than " +
                        std::to_string(kMaxHostlistNames) + " hosts");
        }
        for (unsigned long i = a; i <= b; ++i) {
            std::string num = std::to_string(i);
            if (num.size() < lo.size()) {
                num.insert(0, lo.size() - num.size(), '0');  // node[01-10] keeps its width
            }
            expand_part(prefix + num + suffix, whole, out);
        }
    }
}

}  // namespace

std::vector<std::string> expand_hostlist(std::string_view hostlist) {
    std::vector<std::string> names;
    for (const auto &part : split_top_level_commas(hostlist)) {
        expand_part(part, hostlist, names);
    }
    return names;
}

}  // namespace svm
