#include "util/text.h"

#include <cstdio>

namespace svm {

bool is_printable_ascii(char c) {
    return c >= 0x20 && c < 0x7f;
}

std::string hex_byte(char c) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
    return buf;
}

std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (is_printable_ascii(c)) {
            out += c;
        } else {
            out += hex_byte(c);
        }
    }
    return out;
}

}  // namespace svm
