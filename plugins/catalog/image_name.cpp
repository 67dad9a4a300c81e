#include "catalog/image_name.h"

#include "util/text.h"

namespace svm {

namespace {

constexpr std::string_view feature_prefix = "vm_";

bool is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool is_name_char(char c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '-';
}

}  // namespace

std::string image_name_problem(std::string_view name) {
    if (name.empty()) {
        return "is empty";
    }
    if (name.size() > max_image_name_length) {
        return "is longer than " + std::to_string(max_image_name_length) + " characters";
    }
    if (name.find('/') != std::string_view::npos) {
        return "contains '/'";
    }
    if (!is_alnum(name.front())) {
        return "must start with a letter or digit";
    }
    if (name.find("..") != std::string_view::npos) {
        return "contains '..'";
    }
    for (char c : name) {
        if (!is_name_char(c)) {
            const std::string shown = is_printable_ascii(c) ? std::string(1, c) : hex_byte(c);
            return "contains character '" + shown + "'";
        }
    }
    return "";
}

std::string image_feature(std::string_view name) {
    return std::string(feature_prefix) + std::string(name);
}

std::optional<std::string> image_from_feature(std::string_view feature) {
    if (!feature.starts_with(feature_prefix)) {
        return std::nullopt;
    }
    const std::string_view name = feature.substr(feature_prefix.size());
    if (!image_name_problem(name).empty()) {
        return std::nullopt;
    }
    return std::string(name);
}

}  // namespace svm
