// Host lists, for the admin's commands (slurm-vm running, report). The admin tool expands them
// with Slurm's own functions (tools/slurm_jobs.h); expand_hostlist is the same grammar without
// Slurm, for the pure computations' tests. The root paths never expand a host list.
#pragma once

#include <cstdint>
#include <functional>
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

// Expands a host list, throwing Error as expand_hostlist does.
using HostlistExpander = std::function<std::vector<std::string>(std::string_view hostlist)>;

}  // namespace svm
