// The slurm-vm SPANK plugin's arguments as the admin wrote them in plugstack.conf, so the
// admin tool boots VMs with exactly the configuration jobs get.
#pragma once

#include <string>
#include <vector>

namespace svm {

// Arguments of the first plugstack line that loads spank_slurm_vm.so, searching `file` and
// the files it includes. Empty when no such line exists.
std::vector<std::string> plugstack_args(const std::string &file = "/etc/slurm/plugstack.conf");

}  // namespace svm
