// Text that reaches a log line or a one-line message from somewhere we do not control (a user's
// option, a guest's output, a catalog value): one way to make it harmless.
#pragma once

#include <string>
#include <string_view>

namespace svm {

// `text` with every byte that is not printable ASCII written as \xNN, so a hostile value cannot
// break (or forge) the one-line messages and log lines it is quoted in.
std::string printable(std::string_view text);

// Whether `c` is printable ASCII (0x20-0x7e).
bool is_printable_ascii(char c);

// "\xNN" for byte `c`.
std::string hex_byte(char c);

// The last `max_bytes` of the file at `path` (all of it when shorter), as they are: a log that
// a guest or a daemon wrote, whose end says what happened. "" when it cannot be read.
std::string file_tail(const std::string &path, std::size_t max_bytes);

// The items (strings or string views) with `separator` between them: "a, b, c".
template <typename Strings>
std::string join(const Strings &items, std::string_view separator = ", ") {
    std::string out;
    for (const auto &item : items) {
        if (!out.empty()) {
            out += separator;
        }
        out += item;
    }
    return out;
}

}  // namespace svm
