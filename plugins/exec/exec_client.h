// Host side of the exec channel: ask a VM's agent to run a command and behave like that command
// (its output, its signals, its exit status).
//
// A VM has N exec ports, each a unix socket <channel_dir>/exec.<i>.sock served by QEMU, one
// connection at a time. A client takes a port by flock()ing <channel_dir>/exec.<i>.lock for the
// whole session, so concurrent tasks never share a port.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "util/error.h"
#include "util/fd.h"                 // UniqueFd
#include "exec/protocol/messages.h"  // ExecRequest, SetupRequest, GuestMount, RemoteExit

namespace svm {

// Text the guest sent, fit for a one-line message in a host log: at most 512 bytes of it, each
// byte that is not printable ASCII written as \xNN (a newline from the guest must not forge a
// line of slurmd's log).
std::string guest_text(std::string_view text);

// The agent could not start the command (ERROR before STARTED): the message is the agent's
// ("execve(): nosuchcmd: No such file or directory"), made printable; stage and error_number
// say which step failed and why, for exit codes like a shell's (127, 126).
class RemoteStartError : public Error {
  public:
    explicit RemoteStartError(const AgentError &error)
        : Error(guest_text(error.message)),
          stage_(error.stage),
          error_number_(error.error_number) {}
    const std::string &stage() const { return stage_; }
    int error_number() const { return error_number_; }

  private:
    std::string stage_;
    int error_number_;
};

// Catches TERM INT HUP USR1 USR2 TSTP CONT QUIT for as long as it lives, so that run_in_guest
// forwards them to the remote command instead of the caller dying (or stopping) of them. The
// handlers only write to a self-pipe: nothing else in the process is affected, and the previous
// dispositions come back on destruction. One instance per process at a time.
class SignalForwarder {
  public:
    SignalForwarder();
    ~SignalForwarder();
    SignalForwarder(const SignalForwarder &) = delete;
    SignalForwarder &operator=(const SignalForwarder &) = delete;

    // Readable while a caught signal waits to be taken.
    int fd() const { return read_fd_; }
    // The next caught signal, or 0 if none is pending.
    int take();

    static const std::vector<int> &caught_signals();

  private:
    int read_fd_ = -1;
    int write_fd_ = -1;
};

// What a VM job's command may run on the host (host calls: the guest's srun, squeue, ... are
// shims that ask the host client to run the real command; see guest/agent_hostcall.cpp).
// Only a bare name from `commands` runs, found in `search_dirs` (never in a PATH the guest
// chose), with the guest's environment except PATH, HOME and LD_*, which are the host
// client's own. Tests point search_dirs at fake commands; an empty `commands` refuses all.
struct HostCallPolicy {
    std::vector<std::string> commands = protocol::hostcall_commands();
    std::vector<std::string> search_dirs = {"/usr/bin", "/usr/local/bin", "/bin"};
};

// Connects a unix stream socket to `path`, giving up after timeout_ms: the listener belongs to
// the job's user (QEMU runs as them), who can stop it or fill its backlog, and root must not
// wait for ever. `path` is used as given, so a caller that validated the socket through an
// O_PATH descriptor passes "/proc/self/fd/N". Returns the socket, non-blocking. Throws Error
// ("cannot connect to the VM's exec channel PATH: ...").
UniqueFd connect_unix_with_deadline(const std::string &path, int timeout_ms);

// Connects to one exec port socket, sends PING and waits for PONG, all within timeout_ms.
// Throws Error when the agent does not answer in time, or the socket cannot be reached.
void ping_agent(const std::string &socket_path, int timeout_ms);
// The same on a socket the caller connected (connect_unix_with_deadline); `channel` names it in
// messages. The socket may take further requests afterwards.
void ping_agent(int socket, const std::string &channel, int timeout_ms);

// Sends SETUP (hostname, 9p mounts) and waits for the agent's OK, all within timeout_ms. Throws
// Error with the agent's reason (made printable) when it refuses.
void setup_guest(const std::string &socket_path, const SetupRequest &request, int timeout_ms);
void setup_guest(int socket, const std::string &channel, const SetupRequest &request,
                 int timeout_ms);

// Runs request in the VM whose exec ports live in channel_dir (ports of them), waiting up to
// 60 s for a free port. Streams stdin_fd (if >= 0; otherwise the command's stdin is at end of
// file) and the command's stdout/stderr to stdout_fd/stderr_fd (discarded if < 0). With
// signals, caught signals go to the remote command's process group. Output that the caller's
// stdout/stderr do not take yet waits in a bounded buffer; while it is full the channel is not
// read, so a guest writing faster than the reader pushes back instead of growing this process.
// Returns a wait(2)-style status (WIFEXITED/WIFSIGNALED work). If a signal that would end the
// caller arrives while no port is free, returns that signal as the status without running.
// Throws RemoteStartError if the command could not start, Error for transport failures
// ("lost the connection to the VM's agent (...)").
// Host calls of the command run, as children of the caller, under `hostcalls`; those still
// running when the session ends get SIGTERM, and SIGKILL 5 s later, before this returns.
int run_in_guest(const std::string &channel_dir, unsigned ports, const ExecRequest &request,
                 int stdin_fd, int stdout_fd, int stderr_fd, SignalForwarder *signals = nullptr,
                 const HostCallPolicy &hostcalls = {});

}  // namespace svm
