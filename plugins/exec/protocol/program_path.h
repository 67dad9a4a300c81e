// Which file a task's argv[0] names, found as slurmstepd finds it for a native task
// (Slurm 22.05 src/slurmd/slurmstepd/task.c, _build_path), so that the agent, which runs the
// task in the guest, picks the same program the job's PATH would pick on a node.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace svm::protocol {

// - an absolute name is used as it is;
// - a name starting with '.' is taken from cwd ("./a.out", "../bin/x", ".hidden");
// - any other name (even "bin/x") is tried in each directory of path_env, in order (empty
//   entries skipped), and the first that `is_file` accepts (exists, not a directory) wins;
// - none found: the name as given, which execve then takes relative to the working directory.
std::string task_program_path(std::string_view name, std::string_view path_env,
                              std::string_view cwd,
                              const std::function<bool(const std::string &)> &is_file);

}  // namespace svm::protocol
