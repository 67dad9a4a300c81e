// One error type for the core. Its message is a whole line a user or an admin can act on:
// what failed, on what, and why. The Slurm adapters catch it at the C boundary.
#pragma once

#include <stdexcept>
#include <string>

namespace svm {

class Error : public std::runtime_error {
  public:
    explicit Error(const std::string &message) : std::runtime_error(message) {}
};

// Data from outside the process (a guest's frame or message, a state file, a tool's output)
// that breaks the rules of its format: what the JSON helpers (util/json.h) throw. The exec
// protocol calls it ProtocolError (exec/protocol/frame.h).
class FormatError : public Error {
  public:
    using Error::Error;
};

// strerror(errno) as a std::string, for messages that end with the system's reason.
std::string errno_text(int err);

}  // namespace svm
