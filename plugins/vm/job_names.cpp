#include "vm/job_names.h"

#include "util/config.h"  // node_name_problem
#include "util/error.h"

#include <charconv>

namespace svm {

namespace {

constexpr std::string_view kPrefix = "svm-";

}  // namespace

std::string domain_name_for(uint32_t jobid, std::string_view node) {
    if (!node_name_problem(node).empty()) {
        throw Error("node name '" + std::string(node) +
                    "': expected letters, digits, '.', '_' or '-'");
    }
    return std::string(kPrefix) + std::to_string(jobid) + "-" + std::string(node);
}

std::optional<std::pair<uint32_t, std::string>> parse_domain_name(std::string_view name) {
    if (!name.starts_with(kPrefix)) {
        return std::nullopt;
    }
    name.remove_prefix(kPrefix.size());
    // The job id is the first field; the node name, which may hold '-', is all the rest.
    std::size_t dash = name.find('-');
    if (dash == std::string_view::npos || dash == 0) {
        return std::nullopt;
    }
    std::string_view digits = name.substr(0, dash);
    std::string_view node = name.substr(dash + 1);
    if (digits.size() > 1 && digits[0] == '0') {
        return std::nullopt;
    }
    uint32_t jobid = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), jobid);
    if (ec != std::errc() || end != digits.data() + digits.size()) {
        return std::nullopt;
    }
    if (!node_name_problem(node).empty()) {
        return std::nullopt;
    }
    return std::make_pair(jobid, std::string(node));
}

}  // namespace svm
