#include "util/fd.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

namespace svm {

void UniqueFd::reset(int fd) {
    if (fd_ >= 0) {
        ::close(fd_);
    }
    fd_ = fd;
}

void set_nonblocking(int fd) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        throw Error("fcntl(O_NONBLOCK) on fd " + std::to_string(fd) + ": " + errno_text(errno));
    }
}

namespace {

bool is_socket(int fd) {
    struct stat st;
    return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

WriteResult write_all(int fd, std::string_view data, int timeout_ms, const std::string &what) {
    const bool socket = is_socket(fd);
    const std::int64_t deadline = timeout_ms < 0 ? -1 : monotonic_ms() + timeout_ms;
    while (!data.empty()) {
        // MSG_NOSIGNAL: a peer that left must not kill us with SIGPIPE.
        ssize_t n = socket ? ::send(fd, data.data(), data.size(), MSG_NOSIGNAL)
                           : ::write(fd, data.data(), data.size());
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET || errno == EIO)) {
            return WriteResult::PeerGone;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            throw Error("writing " + what + ": " + errno_text(errno));
        }
        int wait_ms = -1;
        if (deadline >= 0) {
            std::int64_t left = deadline - monotonic_ms();
            if (left <= 0) {
                return WriteResult::TimedOut;
            }
            wait_ms = static_cast<int>(left);
        }
        pollfd pfd{fd, POLLOUT, 0};
        int r = ::poll(&pfd, 1, wait_ms);
        if (r < 0 && errno != EINTR) {
            throw Error("poll on " + what + ": " + errno_text(errno));
        }
        if (r > 0 && (pfd.revents & (POLLHUP | POLLERR)) && !(pfd.revents & POLLOUT)) {
            return WriteResult::PeerGone;
        }
    }
    return WriteResult::Done;
}

std::uint32_t random_session_id() {
    std::uint32_t id = 0;
    while (id == 0) {
        if (::getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) {
            // getrandom only fails before the pool is initialised on old kernels; the id only
            // needs to differ from the previous client's, so a clock-derived value will do.
            timespec ts;
            ::clock_gettime(CLOCK_MONOTONIC, &ts);
            id = static_cast<std::uint32_t>(ts.tv_nsec) ^ static_cast<std::uint32_t>(::getpid());
        }
    }
    return id;
}

std::string random_bytes(std::size_t count) {
    std::string bytes(count, '\0');
    std::size_t got = 0;
    while (got < count) {
        const ssize_t n = getrandom(bytes.data() + got, count - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw Error(std::string("getrandom: ") + errno_text(errno));
        }
        got += static_cast<std::size_t>(n);
    }
    return bytes;
}

std::int64_t monotonic_ms() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::vector<char *> c_strings(const std::vector<std::string> &items) {
    std::vector<char *> out;
    out.reserve(items.size() + 1);
    for (const auto &s : items) {
        out.push_back(const_cast<char *>(s.c_str()));
    }
    out.push_back(nullptr);
    return out;
}

}  // namespace svm
