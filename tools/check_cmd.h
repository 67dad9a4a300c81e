// slurm-vm check: what a VM job needs on this node, one line per check (in the spirit of
// virt-host-validate and `kata-runtime check`).
#pragma once

#include <string>
#include <vector>

namespace svm {

// slurm-vm check [--json] [--image NAME] [--no-boot] [--plugstack FILE]
// Exit status: 0 all OK, 1 warnings, 2 failures.
int cmd_check(const std::vector<std::string> &args);

}  // namespace svm
