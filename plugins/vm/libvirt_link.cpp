#include "vm/libvirt_link.h"

#include "util/fd.h"
#include "util/text.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace svm {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How often a refused connection is tried again while libvirtd restarts.
constexpr milliseconds kReconnectInterval{250};

std::string seconds_text(milliseconds d) {
    const auto ms = d.count();
    return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

}  // namespace

std::string kill_domain_qemu(const std::string &domain, const std::string &libvirt_run,
                             const std::string &proc) {
    ProcessIdentity qemu;
    try {
        qemu = find_qemu(domain, libvirt_run, proc);
    } catch (const Error &e) {
        return std::string("no QEMU to kill: ") + e.what();
    }
    // The pidfd pins the process: once it is open and the process is still the one found
    // (same start time, same guest), the signal cannot reach a process that reused the pid.
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, qemu.pid, 0)));
    if (!pidfd) {
        return "QEMU (pid " + std::to_string(qemu.pid) + ") is gone: " + errno_text(errno);
    }
    try {
        check_same_process(qemu, "QEMU of domain " + domain, proc);
        if (!runs_guest(qemu.pid, domain, proc)) {
            return "pid " + std::to_string(qemu.pid) + " no longer runs domain " + domain;
        }
    } catch (const Error &e) {
        return e.what();
    }
    if (syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0) != 0) {
        return "cannot kill QEMU (pid " + std::to_string(qemu.pid) + "): " + errno_text(errno);
    }
    return "its QEMU (pid " + std::to_string(qemu.pid) + ") was killed";
}

CallDeadline::CallDeadline(milliseconds limit, std::function<std::string()> on_late,
                           std::function<std::set<int>()> socket_fds, milliseconds unblock_after)
    : on_late_(std::move(on_late)),
      socket_fds_(std::move(socket_fds)),
      unblock_after_(unblock_after) {
    watcher_ = std::thread([this, deadline = Clock::now() + limit] { watch(deadline); });
}

CallDeadline::~CallDeadline() {
    finish();
}

void CallDeadline::finish() {
    {
        std::lock_guard lock(mutex_);
        finished_ = true;
    }
    cv_.notify_all();
    if (watcher_.joinable()) {
        watcher_.join();
    }
}

bool CallDeadline::expired() const {
    std::lock_guard lock(mutex_);
    return expired_;
}

std::string CallDeadline::note() const {
    std::lock_guard lock(mutex_);
    return note_;
}

void CallDeadline::watch(Clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    if (cv_.wait_until(lock, deadline, [this] { return finished_; })) {
        return;
    }
    // Still inside the call, and it stays there while we hold the lock: finish() waits.
    expired_ = true;
    try {
        note_ = on_late_ ? on_late_() : "";
    } catch (const std::exception &e) {
        note_ = e.what();
    }
    if (cv_.wait_until(lock, Clock::now() + unblock_after_, [this] { return finished_; })) {
        return;
    }
    // libvirtd itself does not answer. The descriptor stays open (libvirt closes it with the
    // connection), so it cannot be reused under us: the client sees end-of-file and fails.
    const std::set<int> fds = socket_fds_ ? socket_fds_() : std::set<int>{};
    for (const int fd : fds) {
        shutdown(fd, SHUT_RDWR);
    }
    if (!fds.empty()) {
        note_ +=
            std::string(note_.empty() ? "" : "; ") + "libvirt's connection was shut" +
            (unblock_after_.count() > 0 ? " after " + seconds_text(unblock_after_) + " more" : "");
    }
    cv_.wait(lock, [this] { return finished_; });
}

std::set<int> libvirt_socket_fds() {
    std::set<int> fds;
    DIR *dir = opendir("/proc/self/fd");
    if (dir == nullptr) {
        return fds;
    }
    while (const dirent *entry = readdir(dir)) {
        char *end = nullptr;
        const long fd = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) {
            continue;
        }
        sockaddr_un peer{};
        socklen_t len = sizeof peer;
        int type = 0;
        socklen_t type_len = sizeof type;
        if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &type, &type_len) != 0 ||
            type != SOCK_STREAM ||
            getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr *>(&peer), &len) != 0 ||
            peer.sun_family != AF_UNIX || len <= offsetof(sockaddr_un, sun_path)) {
            continue;
        }
        const std::string path(peer.sun_path,
                               strnlen(peer.sun_path, len - offsetof(sockaddr_un, sun_path)));
        if (path.find("libvirt") != std::string::npos) {
            fds.insert(static_cast<int>(fd));
        }
    }
    closedir(dir);
    return fds;
}

SigpipeBlock::SigpipeBlock() {
    sigset_t pipe, old;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old);
    was_blocked_ = sigismember(&old, SIGPIPE) == 1;
}

SigpipeBlock::~SigpipeBlock() {
    if (was_blocked_) {
        return;
    }
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    const timespec now{0, 0};
    while (sigtimedwait(&pipe, nullptr, &now) == SIGPIPE) {
    }
    pthread_sigmask(SIG_UNBLOCK, &pipe, nullptr);
}

LibvirtLink::LibvirtLink(std::string uri, LibvirtTimeouts timeouts)
    : uri_(std::move(uri)), timeouts_(timeouts) {}

LibvirtLink::LibvirtLink(virConnectPtr borrowed, LibvirtTimeouts timeouts)
    : timeouts_(timeouts), conn_(borrowed), can_reconnect_(false) {
    const char *uri = borrowed != nullptr ? virConnectGetURI(borrowed) : nullptr;
    uri_ = uri != nullptr ? uri : "(a borrowed connection)";
    free(const_cast<char *>(uri));
}

bool LibvirtLink::lost() const {
    return conn_ != nullptr && virConnectIsAlive(conn_) == 0;
}

virConnectPtr LibvirtLink::get() {
    if (conn_ != nullptr && !lost()) {
        return conn_;
    }
    if (!can_reconnect_) {
        throw LibvirtConnectionError("the connection to libvirt at " + uri_ + " was lost");
    }
    open();
    return conn_;
}

void LibvirtLink::open() {
    silence_libvirt_stderr();
    owned_.reset();
    conn_ = nullptr;
    socket_fds_.clear();
    const auto give_up_at = Clock::now() + timeouts_.reconnect;
    std::string reason;
    for (;;) {
        const std::set<int> before = libvirt_socket_fds();
        ConnectionPtr conn;
        {
            // A libvirtd that accepts but never answers: its new socket is shut under the open.
            CallDeadline deadline(
                timeouts_.call, [] { return std::string(); },
                [&before] {
                    std::set<int> fresh;
                    for (const int fd : libvirt_socket_fds()) {
                        if (before.count(fd) == 0) {
                            fresh.insert(fd);
                        }
                    }
                    return fresh;
                },
                milliseconds(0));
            conn.reset(virConnectOpen(uri_.c_str()));
            deadline.finish();
        }
        if (conn) {
            for (const int fd : libvirt_socket_fds()) {
                if (before.count(fd) == 0) {
                    socket_fds_.insert(fd);
                }
            }
            owned_ = std::move(conn);
            conn_ = owned_.get();
            ++generation_;
            return;
        }
        reason = libvirt_last_error();
        if (Clock::now() + kReconnectInterval >= give_up_at) {
            break;
        }
        std::this_thread::sleep_for(kReconnectInterval);
    }
    throw LibvirtConnectionError("cannot connect to libvirt at " + uri_ + ": " + reason +
                                 " (tried for " + seconds_text(timeouts_.reconnect) + ")");
}

std::string LibvirtLink::failure(const std::string &what) {
    std::string reason = libvirt_last_error();
    if (lost()) {
        throw LibvirtConnectionError(what + ": the connection to libvirt at " + uri_ +
                                     " was lost (" + reason + ")");
    }
    return reason;
}

void LibvirtLink::late(milliseconds limit, const std::string &note) {
    throw LibvirtDeadlineError("libvirt did not answer within " + seconds_text(limit) +
                               (note.empty() ? "" : " (" + note + ")"));
}

}  // namespace svm
