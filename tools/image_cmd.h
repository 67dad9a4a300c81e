// slurm-vm image prepare SRC DEST [--name NAME] [--direct-boot] [--agent PATH]
#pragma once

#include <string>
#include <vector>

namespace svm {

int cmd_image(const std::vector<std::string> &args);

}  // namespace svm
