// The names of what a job VM leaves on a node: svm-<jobid>-<node> for its domain, overlay
// folder and channel folder, so what is whose can be read from the name alone. Free of
// libvirt: the SPANK plugin's client side (task_init) names VMs without loading it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace svm {

// Job ids from here up name the VMs of the admin's commands (`slurm-vm try`, `check`), above any
// real Slurm job id (MaxJobId is at most 0x03ff0000): the sweep leaves them to their command.
inline constexpr uint32_t kAdminToolJobIds = 0x7e000000u;

// "svm-<jobid>-<node>". Throws Error when the node name is empty or holds a character outside
// [A-Za-z0-9._-]: the name is also used for files.
std::string domain_name_for(uint32_t jobid, std::string_view node);

// The job id and node of a name made by domain_name_for, or nullopt for any other name
// (including non-canonical job ids such as "007").
std::optional<std::pair<uint32_t, std::string>> parse_domain_name(std::string_view name);

}  // namespace svm
