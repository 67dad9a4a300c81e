// slurm-vm-agent: runs commands for the host inside the VM, over virtio-serial ports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "protocol/fd.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace svm::agent {

// Scripts sent with an EXEC request are written here by the command's own user: a folder on
// the guest's tmpfs that anyone may create files in and nobody may list (mode 1733).
inline constexpr const char *kScriptDir = "/run/slurm-vm-scripts";

// One line on stderr (the guest console), prefixed "slurm-vm-agent: ".
void log_line(const std::string &text);

// The signals a server waits for through its signalfd.
class ServerSignals {
  public:
    ServerSignals();  // blocks SIGCHLD, SIGTERM, SIGINT, SIGHUP and opens the signalfd
    int fd() const { return fd_.get(); }
    // Drains the signalfd; true if a termination signal arrived.
    bool drain();
    // Waits up to timeout_ms (-1: forever) for fd to become readable or a termination signal.
    // True: fd is readable; false: timed out. Sets `terminate` when told to stop.
    bool wait_readable(int fd, int timeout_ms, bool &terminate);

  private:
    protocol::UniqueFd fd_;
};

// Where a server meets the host: a virtio-serial port, a listening unix socket (each accepted
// connection is one host), or one already-connected fd (host-side tests).
class Channel {
  public:
    static Channel virtio_port(const std::string &path);
    static Channel listener(protocol::UniqueFd listen_fd, const std::string &path);
    static Channel connected_fd(int fd);

    const std::string &name() const { return name_; }
    bool is_virtio() const { return kind_ == Kind::Virtio; }
    // Waits until a host may be there and makes fd() the way to it. False: no host will come
    // any more (a given fd that reached its end), or a termination signal arrived.
    bool next_host(ServerSignals &signals);
    int fd() const { return conn_.get(); }

  private:
    enum class Kind { Virtio, Listener, GivenFd };
    Channel(Kind kind, std::string name) : kind_(kind), name_(std::move(name)) {}

    Kind kind_;
    std::string name_;
    protocol::UniqueFd listen_;
    protocol::UniqueFd conn_;
    bool first_ = true;
};

// Reaps every exited child (the server is a child subreaper, so orphans of a session come back
// to it). Returns the wait status of `watch` if it was among them.
std::optional<int> reap_children(pid_t watch);

enum class SessionEnd {
    Finished,    // the session ran to its end; the host may send another request
    HostLeft,    // the host disconnected
    Superseded,  // a request of another session arrived: the previous host left unnoticed
    Terminate,   // the server was told to stop
};

struct SessionResult {
    SessionEnd end = SessionEnd::Finished;
    std::optional<protocol::Frame> next_request;  // with Superseded
};

// Runs one EXEC session: starts the command, streams it, reports its end.
SessionResult run_exec_session(Channel &channel, protocol::FrameReader &reader,
                               ServerSignals &signals, const protocol::Frame &request);

// Applies a SETUP request (hostname, 9p mounts). Throws svm::Error naming what failed.
void apply_setup(const SetupRequest &request);

// Serves one channel until told to stop. Returns the process exit code.
int serve_channel(Channel &channel);

}  // namespace svm::agent
