// One connection to libvirtd that survives a libvirtd restart, and libvirt calls that end by a
// deadline whatever QEMU or libvirtd do.
//
// Why: libvirt's QEMU driver talks to QEMU over its monitor (QMP) with no timeout, and QEMU
// runs as the job's user, who may SIGSTOP it: a create, restore, shutdown, resume or save then
// waits for ever, holding a libvirtd worker and the prolog or epilog. libvirt's client has
// keepalive (virConnectSetKeepAlive), but it only notices a libvirtd that stops answering (it
// needs an event loop registered, and libvirtd answers keepalives from its own event loop while
// a worker waits on a stopped QEMU), so it cannot end such a call. Hence CallDeadline: a
// watcher thread that, when a call is late,
//   1. SIGKILLs the domain's QEMU through a pidfd, after checking the pid is still that QEMU
//      (libvirt's pid file, `guest=<domain>` on its command line, the same start time). QEMU's
//      monitor then hangs up and the stuck call fails. (libvirt's own destroy would also kill
//      it: qemuDomainDestroyFlags -> qemuProcessBeginStopJob -> qemuProcessKill sends SIGTERM,
//      which a stopped QEMU does not act on, and SIGKILL only after 10 s, before it takes the
//      domain's job lock; we do not wait those 10 s.)
//   2. if the call still has not returned `kUnblockAfter` later (libvirtd itself is stuck),
//      shuts the connection's socket down: libvirt's client then fails the call ("End of file
//      while reading data") and the link opens a new connection for the next one.
// The watcher only makes system calls and is joined before the call's caller goes on.
//
// Reconnects: libvirtd closes every client when it restarts (a package upgrade, an admin's
// restart). get() opens a new connection when the last one is gone, retrying a refused one for
// up to `reconnect` (the plugstack's libvirt_reconnect), so a restart of a second or two costs a
// job nothing. Callers whose call failed because the connection went (LibvirtConnectionError)
// decide what a retry means: a lookup or a destroy is simply made again; a create whose answer
// was lost may or may not have made the domain (see start_job_vm).
#pragma once

#include "util/error.h"
#include "vm/libvirt_handles.h"
#include "vm/vm_processes.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>

namespace svm {

// libvirtd could not be reached within the reconnect wait (a node fault), or the connection to
// it went away during a call (the caller may retry: the next call opens a new one).
class LibvirtConnectionError : public Error {
  public:
    using Error::Error;
};

// A libvirt call did not return within its deadline: the domain's QEMU was killed (or the
// connection shut) to end it.
class LibvirtDeadlineError : public Error {
  public:
    using Error::Error;
};

struct LibvirtTimeouts {
    // One libvirt call (libvirt_timeout=): long enough for a create on a busy host (libvirt
    // probes QEMU again when /dev/kvm's mode is odd: 14 s measured), short enough for the
    // epilog to end within Slurm's limits.
    std::chrono::milliseconds call{60000};
    // How long a refused or lost connection is retried before libvirtd counts as down
    // (libvirt_reconnect=): a restart takes a second or two.
    std::chrono::milliseconds reconnect{30000};
};

// How long after its deadline a call whose QEMU was killed may take to return before the
// connection itself is shut down under it.
inline constexpr std::chrono::milliseconds kUnblockAfter{15000};

// A destroy of a healthy QEMU takes a fraction of a second; libvirt waits 10 s for a stopped
// one to act on SIGTERM. After this we kill it ourselves.
inline constexpr std::chrono::milliseconds kDestroyDeadline{3000};

// Kills the QEMU of `domain` with SIGKILL through a pidfd, once sure it is that QEMU (see
// vm/vm_processes.h find_qemu): returns what it did, for a log line ("QEMU (pid 123) killed", or
// why it could not: "no QEMU of domain D found: ...").
// `libvirt_run` and `proc` are for tests.
std::string kill_domain_qemu(const std::string &domain,
                             const std::string &libvirt_run = std::string(kLibvirtQemuRunDir),
                             const std::string &proc = "/proc");

// Watches one blocking call from another thread (see the top of this file). `on_late` runs
// once when `limit` passes before finish() and returns a note for the error; then, after
// `unblock_after` more, the sockets `socket_fds()` names then are shut down. Every action happens
// while the caller is still inside its call (the watcher holds a lock that finish() takes).
class CallDeadline {
  public:
    CallDeadline(std::chrono::milliseconds limit, std::function<std::string()> on_late,
                 std::function<std::set<int>()> socket_fds,
                 std::chrono::milliseconds unblock_after = kUnblockAfter);
    ~CallDeadline();
    CallDeadline(const CallDeadline &) = delete;
    CallDeadline &operator=(const CallDeadline &) = delete;

    // The call returned: nothing more is done to it. Joins the watcher.
    void finish();
    // Whether the deadline passed before finish(); then note() says what was done.
    bool expired() const;
    std::string note() const;

  private:
    void watch(std::chrono::steady_clock::time_point deadline);

    std::function<std::string()> on_late_;
    std::function<std::set<int>()> socket_fds_;
    std::chrono::milliseconds unblock_after_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    bool finished_ = false, expired_ = false;
    std::string note_;
    std::thread watcher_;
};

// The descriptors of this process that are unix stream sockets connected to a libvirt daemon
// (libvirtd, virtqemud, virtproxyd: their socket paths contain "libvirt").
std::set<int> libvirt_socket_fds();

// Blocks SIGPIPE in this thread while it lives, and swallows one raised meanwhile. libvirt's
// client writes to libvirtd's socket with write(2): once libvirtd is gone (a restart) that
// raises SIGPIPE, whose default action ends the whole process (slurmstepd). Measured: a client
// without this died at its first call after libvirtd was killed.
class SigpipeBlock {
  public:
    SigpipeBlock();
    ~SigpipeBlock();
    SigpipeBlock(const SigpipeBlock &) = delete;
    SigpipeBlock &operator=(const SigpipeBlock &) = delete;

  private:
    bool was_blocked_ = false;
};

// Used from the thread that made it (SIGPIPE is blocked in that thread while it lives).
class LibvirtLink {
  public:
    explicit LibvirtLink(std::string uri, LibvirtTimeouts timeouts = {});
    // A link over a connection someone else owns (the test driver, a caller's own): no
    // reconnect, no socket to shut.
    explicit LibvirtLink(virConnectPtr borrowed, LibvirtTimeouts timeouts = {});
    LibvirtLink(const LibvirtLink &) = delete;
    LibvirtLink &operator=(const LibvirtLink &) = delete;

    // The live connection; a new one when there is none or libvirtd closed the last one,
    // retried for up to timeouts().reconnect. Throws LibvirtConnectionError
    // ("cannot connect to libvirt at URI: <libvirt's reason> (tried for N s)").
    virConnectPtr get();

    // Runs f(conn) (a libvirt call on the live connection) under a deadline of `limit`. When
    // late: a call on `domain`'s QEMU (a monitor call: create, restore, shutdown, resume, save,
    // destroy) kills that QEMU, and the socket is shut kUnblockAfter later; any other call (a
    // lookup, a state: libvirtd answers those without QEMU) has the socket shut at once.
    // Throws LibvirtDeadlineError when the deadline passed, whatever f returned: "libvirt did not
    // answer within N s (<what was done>)".
    template <class F>
    auto call(const std::string &domain, std::chrono::milliseconds limit, F &&f)
        -> decltype(f(virConnectPtr{})) {
        virConnectPtr conn = get();
        CallDeadline deadline(
            limit,
            [&domain]() { return domain.empty() ? std::string() : kill_domain_qemu(domain); },
            [this] { return socket_fds_; },
            domain.empty() ? std::chrono::milliseconds(0) : kUnblockAfter);
        auto result = f(conn);
        deadline.finish();
        if (deadline.expired()) {
            late(limit, deadline.note());
        }
        return result;
    }

    // After a libvirt call failed: throws LibvirtConnectionError ("<what>: <libvirt's
    // message>") when the connection is gone, so that the caller may retry on a new one; else
    // returns libvirt's message (thread-local: call it right after the failed call).
    std::string failure(const std::string &what);

    // Whether the current connection was lost (libvirtd closed it, or a deadline shut it).
    bool lost() const;
    // Bumped each time a new connection is opened: handles from an older one are dead.
    unsigned generation() const { return generation_; }

    const LibvirtTimeouts &timeouts() const { return timeouts_; }
    const std::string &uri() const { return uri_; }

  private:
    [[noreturn]] void late(std::chrono::milliseconds limit, const std::string &note);
    void open();

    SigpipeBlock sigpipe_;
    std::string uri_;
    LibvirtTimeouts timeouts_;
    ConnectionPtr owned_;
    virConnectPtr conn_ = nullptr;
    bool can_reconnect_ = true;
    unsigned generation_ = 0;
    std::set<int> socket_fds_;
};

}  // namespace svm
