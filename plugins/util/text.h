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

}  // namespace svm
