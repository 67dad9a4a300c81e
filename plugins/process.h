// Runs an external program the way Slurm's own plugins do: no shell, no PATH search, no
// inherited descriptors, and always with a timeout.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace svm {

struct ProcessResult {
    // The exit code, or 128 + the signal number when a signal ended the program (the shell's
    // convention; a timeout therefore gives 137); -1 if it could not be learnt (SIGCHLD ignored).
    int status = 0;
    // The first 64 KiB of each stream; the rest is read and dropped so the program never blocks.
    std::string out, err;
    bool timed_out = false;
};

// At most this much of stdout and of stderr is kept.
inline constexpr std::size_t kMaxCapturedOutput = 64 * 1024;

// Runs argv (argv[0] must be an absolute path) with stdin on /dev/null, in its own process
// group. On timeout the whole group gets SIGKILL and timed_out is set. Throws Error when the
// program cannot be started at all ("cannot run /usr/bin/x: No such file or directory").
ProcessResult run_process(const std::vector<std::string> &argv, std::chrono::milliseconds timeout);

// The absolute path of `name` in /usr/bin:/usr/sbin:/bin:/sbin (a fixed list: slurmd's PATH is
// not ours to trust). Throws Error when it is in none of them.
std::string find_program(const std::string &name);

}  // namespace svm
