// Slurm's commands at the paths the host has them (SetupRequest::command_links): a job script
// that runs /usr/bin/srun works in an image whose shims are elsewhere. Apart from the agent's
// server so that unit tests build it alone.
#pragma once

#include <string>
#include <vector>

namespace svm::agent {

// mkdir -p with mode 0755. Throws svm::Error naming the folder and the reason.
void make_directories(const std::string &path);

// Links each of `paths` that is missing below `root` to `target` (the agent itself, which
// runs a command named by its link as a host call), making the folders it needs. A path that
// exists, even as a dangling link, is the image's own and left alone. Returns one line per
// path it could not link; never throws.
std::vector<std::string> link_host_commands(const std::vector<std::string> &paths,
                                            const std::string &target,
                                            const std::string &root = "");

}  // namespace svm::agent
