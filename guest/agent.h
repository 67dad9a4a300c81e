// slurm-vm-agent: runs commands for the host inside the VM, over virtio-serial ports.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/types.h>
#include <vector>

#include "util/fd.h"
#include "exec/protocol/frame.h"
#include "exec/protocol/messages.h"

namespace svm::agent {

// Scripts sent with an EXEC request are written here by the command's own user: a folder on
// the guest's tmpfs that anyone may create files in and nobody may list (mode 1733).
inline constexpr const char *kScriptDir = "/run/slurm-vm-scripts";

// Each EXEC session gets a host-call socket here (see HostCallRelay). Mode 0711: users reach
// their own socket by name and cannot list the others.
inline constexpr const char *kHostCallDir = "/run/slurm-vm-hostcall";

// What the agent does with the host's POWEROFF (the job is over).
enum class PowerOffMode {
    Machine,  // sync(), then reboot(RB_POWER_OFF): the guest's real agent, on virtio ports
    Refuse,   // answer ERROR: an agent serving test sockets on the host must never power it off
    Marker,   // sync(), then create the marker file and go on serving: host-side tests
};

struct ServerConfig {
    // Where the per-session host-call sockets go; empty: no host calls.
    std::string hostcall_dir = kHostCallDir;
    PowerOffMode poweroff = PowerOffMode::Machine;
    std::string poweroff_marker;  // for PowerOffMode::Marker
};

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
    UniqueFd fd_;
};

// Where a server meets the host: a virtio-serial port, a listening unix socket (each accepted
// connection is one host), or one already-connected fd (host-side tests).
class Channel {
  public:
    static Channel virtio_port(const std::string &path);
    static Channel listener(UniqueFd listen_fd, const std::string &path);
    static Channel connected_fd(int fd);

    const std::string &name() const { return name_; }
    // Waits until a host may be there and makes fd() the way to it. False: no host will come
    // any more (a given fd that reached its end), or a termination signal arrived.
    bool next_host(ServerSignals &signals);
    int fd() const { return conn_.get(); }

  private:
    enum class Kind { Virtio, Listener, GivenFd };
    Channel(Kind kind, std::string name) : kind_(kind), name_(std::move(name)) {}

    Kind kind_;
    std::string name_;
    UniqueFd listen_;
    UniqueFd conn_;
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
                               ServerSignals &signals, const protocol::Frame &request,
                               const ServerConfig &config);

// The guest end of an EXEC session's host calls. The session's command (and everything it
// starts) finds the socket in $SLURM_VM_HOSTCALL; each connection is one shim (the agent binary
// started as srun, squeue, ...) asking for one host call. The relay numbers the calls, passes
// their requests and signals to the host over the session's port, and routes the host's
// output and exit frames back to the right shim.
class HostCallRelay {
  public:
    // Creates the socket <dir>/<server pid>-<session>.sock, usable only by uid (and root).
    // Throws svm::Error naming the socket.
    HostCallRelay(const std::string &dir, std::uint32_t session, uid_t uid, gid_t gid,
                  std::string label);
    ~HostCallRelay();  // hangs up on every shim and removes the socket
    HostCallRelay(const HostCallRelay &) = delete;
    HostCallRelay &operator=(const HostCallRelay &) = delete;

    const std::string &socket_path() const { return path_; }

    // Appends the descriptors to poll; after poll(), process() takes the same vector and the
    // index of the first of them. Frames for the host are appended to to_host. Shims are read
    // (and new ones accepted) only while `room`: to_host has space (backpressure from a host
    // that reads slowly, instead of buffering without bound).
    void add_pollfds(std::vector<pollfd> &pfds, bool room);
    void process(const std::vector<pollfd> &pfds, std::size_t first, std::string &to_host);
    // A HOSTCALL_STDOUT, HOSTCALL_STDERR or HOSTCALL_EXIT frame from the host.
    void from_host(const protocol::Frame &frame);
    // True while shims are slow to take their output (one has over 1 MiB waiting, or all
    // together over 4 MiB): the port must not be read meanwhile, so the host feels the
    // backpressure instead of the agent buffering without bound.
    bool backlogged() const;

  private:
    struct Shim {
        UniqueFd fd;
        protocol::FrameReader reader;
        std::string out;       // frames waiting to go to the shim
        bool started = false;  // its HOSTCALL went to the host
        bool ended = false;    // its HOSTCALL_EXIT is queued: close once out is sent
    };

    void accept_shims();
    // False: the shim is gone.
    bool read_shim(std::uint32_t call, Shim &shim, std::string &to_host);
    bool write_shim(Shim &shim);
    void fail_call(Shim &shim, const std::string &message);

    std::uint32_t session_;
    std::string path_;
    std::string label_;
    uid_t uid_;
    UniqueFd listen_;
    std::map<std::uint32_t, Shim> shims_;
    std::vector<std::uint32_t> polled_;  // shim ids in add_pollfds order
    std::uint32_t next_call_ = 1;
};

// The agent binary started as srun, squeue, ... (or `slurm-vm-agent --hostcall NAME ARGS...`):
// runs `NAME ARGS...` on the host through the socket in $SLURM_VM_HOSTCALL, prints its output
// and returns its exit code (or dies of its signal).
int run_hostcall_shim(const std::string &command, const std::vector<std::string> &args);

// Applies a SETUP request (hostname, 9p mounts). Throws svm::Error naming what failed.
void apply_setup(const SetupRequest &request);

// Serves one channel until told to stop. Returns the process exit code.
int serve_channel(Channel &channel, const ServerConfig &config);

}  // namespace svm::agent
