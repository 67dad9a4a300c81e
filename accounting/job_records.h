// Host lists and one-line job records, for the admin's commands (slurm-vm running, report).
// The root paths never read these: they take job facts from Slurm's API (spank/slurm_job.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

// A bound on what one host list may expand to: more than any cluster has, far less than what
// "a[0-99999999999]" would allocate.
inline constexpr std::size_t kMaxHostlistNames = 100000;

// Expands a Slurm host list ("node[1-3,5],gpu01", "rack[1-2]-n[1-2]") into names. Throws Error
// on bad syntax or more than kMaxHostlistNames names.
std::vector<std::string> expand_hostlist(std::string_view hostlist);

// The value of `key=` in a one-line job record (`scontrol show job -o`), "" when absent. The
// fields read this way hold no spaces.
std::string job_field(const std::string &oneliner, std::string_view key);

}  // namespace svm
