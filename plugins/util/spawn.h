// One way to start a program: posix_spawn (safe in multi-threaded callers such as slurmd and
// the exec client), in a process group of its own so that a signal or the final kill reaches
// everything it starts, with default signal dispositions and an empty mask whatever the caller
// catches, blocks or ignores, stdin from /dev/null, and no descriptor of the caller's but the
// two it is given.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace svm {

struct SpawnSpec {
    std::vector<std::string> argv;
    std::string program;  // by absolute path; "" means argv[0]
    // The program's environment; nullptr: the caller's.
    const std::vector<std::string> *env = nullptr;
    std::string cwd;  // "" keeps the caller's
    int stdout_fd = -1, stderr_fd = -1;
};

// The program's pid, in its own process group (pgid == pid). Throws SpawnError naming the
// program and the system's reason (glibc's posix_spawn reports a failed exec too).
pid_t spawn_program(const SpawnSpec &spec);

class SpawnError;

}  // namespace svm

#include "util/error.h"

namespace svm {

class SpawnError : public Error {
  public:
    SpawnError(const std::string &message, int error_number)
        : Error(message), error_number_(error_number) {}
    int error_number() const { return error_number_; }

  private:
    int error_number_;
};

}  // namespace svm
