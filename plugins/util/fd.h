// File descriptors: one RAII owner, non-blocking writes with a deadline, and small helpers the
// in-guest agent and the host side share.
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include <string_view>
#include <utility>

#include "util/error.h"

namespace svm {

// Owns one file descriptor; closes it on destruction.
class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd &&other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd &operator=(UniqueFd &&other) noexcept {
        if (this != &other) {
            reset(std::exchange(other.fd_, -1));
        }
        return *this;
    }
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    ~UniqueFd() { reset(); }

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1);

  private:
    int fd_ = -1;
};

void set_nonblocking(int fd);

enum class WriteResult { Done, PeerGone, TimedOut };

// Writes all of data to fd, which may be non-blocking, waiting for it with poll(2).
// PeerGone: the reader went away (EPIPE, ECONNRESET, EIO, or POLLHUP on a virtio port).
// timeout_ms < 0 waits forever. Other errors throw svm::Error naming `what`.
WriteResult write_all(int fd, std::string_view data, int timeout_ms, const std::string &what);

// A random, non-zero session id.
std::uint32_t random_session_id();

// `count` bytes from the kernel's random generator (getrandom). Throws Error when it fails.
std::string random_bytes(std::size_t count);

// Milliseconds on CLOCK_MONOTONIC.
std::int64_t monotonic_ms();

// A NULL-terminated array of pointers into `items`, for execve and posix_spawn; valid as long
// as `items` is.
std::vector<char *> c_strings(const std::vector<std::string> &items);

}  // namespace svm
