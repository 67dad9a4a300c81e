#include "util/text.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>

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

std::string file_tail(const std::string &path, std::size_t max_bytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return "";
    }
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    in.seekg(std::max<std::streamoff>(0, size - static_cast<std::streamoff>(max_bytes)));
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace svm
