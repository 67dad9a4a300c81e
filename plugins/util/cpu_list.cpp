#include "util/cpu_list.h"

#include "util/error.h"
#include "util/text.h"

#include <algorithm>

namespace svm {

namespace {

std::string_view trim(std::string_view text) {
    const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n'; };
    while (!text.empty() && space(text.front())) {
        text.remove_prefix(1);
    }
    while (!text.empty() && space(text.back())) {
        text.remove_suffix(1);
    }
    return text;
}

class ListParser {
  public:
    ListParser(std::string_view list, unsigned limit) : list_(list), limit_(limit) {}

    [[noreturn]] void fail(std::string_view entry, const std::string &reason) const {
        throw Error("CPU list '" + printable(list_) + "': entry '" + printable(entry) +
                    "': " + reason);
    }

    unsigned id(std::string_view entry, std::string_view digits) const {
        if (digits.empty()) {
            fail(entry, "expected a CPU id");
        }
        if (digits.size() > 1 && digits.front() == '0') {
            fail(entry, "CPU id '" + printable(digits) + "' has a leading zero");
        }
        unsigned long value = 0;
        for (char c : digits) {
            if (c < '0' || c > '9') {
                fail(entry, "'" + printable(std::string_view(&c, 1)) + "' is not a digit");
            }
            value = value * 10 + static_cast<unsigned>(c - '0');
            if (value >= limit_) {
                fail(entry,
                     "CPU id " + printable(digits) + " is not below " + std::to_string(limit_));
            }
        }
        return static_cast<unsigned>(value);
    }

  private:
    std::string_view list_;
    unsigned limit_;
};

}  // namespace

std::vector<unsigned> parse_cpu_list(std::string_view text, unsigned limit) {
    const std::string_view list = trim(text);
    std::vector<unsigned> cpus;
    if (list.empty()) {
        return cpus;
    }
    const ListParser parser(list, limit);
    std::string_view rest = list;
    while (true) {
        const std::size_t comma = rest.find(',');
        const std::string_view entry = trim(rest.substr(0, comma));
        if (entry.empty()) {
            parser.fail(entry, "is empty");
        }
        const std::size_t dash = entry.find('-');
        if (dash == std::string_view::npos) {
            cpus.push_back(parser.id(entry, entry));
        } else {
            const unsigned first = parser.id(entry, entry.substr(0, dash));
            const unsigned last = parser.id(entry, entry.substr(dash + 1));
            if (last < first) {
                parser.fail(entry, "the range ends before it starts");
            }
            for (unsigned cpu = first; cpu <= last; ++cpu) {
                cpus.push_back(cpu);
            }
        }
        if (comma == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(comma + 1);
    }
    std::sort(cpus.begin(), cpus.end());
    cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
    return cpus;
}

std::string format_cpu_list(std::vector<unsigned> cpus) {
    std::sort(cpus.begin(), cpus.end());
    cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
    std::string out;
    for (std::size_t i = 0; i < cpus.size();) {
        std::size_t j = i;
        while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) {
            ++j;
        }
        if (!out.empty()) {
            out += ',';
        }
        out += std::to_string(cpus[i]);
        if (j > i) {
            out += '-' + std::to_string(cpus[j]);
        }
        i = j + 1;
    }
    return out;
}

}  // namespace svm
