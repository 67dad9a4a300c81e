// Host side of the exec channel: ask a VM's agent to run a command and behave like that command
// (its output, its signals, its exit status).
//
// A VM has N exec ports, each a unix socket <channel_dir>/exec.<i>.sock served by QEMU, one
// connection at a time. A client takes a port by flock()ing <channel_dir>/exec.<i>.lock for the
// whole session, so concurrent tasks never share a port.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/config.h"  // HostCalls
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
// shims that ask the host client to run the real command; see guest/agent_hostcall.cpp), and
// with what environment. The one place that decides: the guest's root chooses every byte of a
// request, and gains the job's user's rights on the host, no more, so what it must not get is
// a program of its own run on the host outside the VM.
// Only a bare name that `mode` allows runs, found in `search_dirs` (never in a PATH the guest
// chose). Tests point search_dirs at fake commands.
struct HostCallPolicy {
    HostCalls mode = HostCalls::Steps;  // the plugstack default
    std::vector<std::string> search_dirs = {"/usr/bin", "/usr/local/bin", "/bin"};

    // The commands `mode` allows, in the order protocol::hostcall_commands() lists them.
    std::vector<std::string> commands() const;
    // Where this host has each of commands(): the path a host call runs, for the guest to
    // have the same path (SetupRequest::command_links). Commands the host lacks are left out.
    std::vector<std::string> command_paths() const;

    struct Refusal {
        std::string message;  // one line for the guest's stderr, without "slurm-vm: "
        int exit_code;        // 127: a command not allowed here; 1: its arguments are not
    };
    // Why `argv`, asked with the guest's environment, may not run; nullopt when it may.
    // host_env is the client's own environment: the job's, as Slurm gave it to the task.
    // Refused in every mode: srun/sbatch/salloc --prolog, --epilog, --task-prolog,
    // --task-epilog, in any spelling getopt_long takes (--opt=V, --opt V, an abbreviation),
    // anywhere in argv (where Slurm's options end depends on its option table, which we do not
    // copy: a program argument spelled so is refused too); salloc unless its first argument is
    // --no-shell (else it runs a command or the user's login shell on the host); the guest
    // changing SLURM_CONF or SLURM_CONF_SERVER, or srun's SLURM_[TASK_]{PRO,EPI}LOG. Under
    // Steps also srun --jobid (but this job's own) and a changed SLURM_JOB_ID: steps of this
    // job only.
    std::optional<Refusal> refusal(const std::vector<std::string> &argv,
                                   const std::vector<std::string> &guest_env,
                                   const std::vector<std::string> &host_env) const;

    // The environment an allowed call runs with: the guest's, except that what makes a Slurm
    // client load code or choose its job is the host client's (from host_env): PATH, HOME, LD_*,
    // GCONV_PATH, LUA_PATH*, LUA_CPATH*, the variables refusal() guards, what the client keeps
    // set aside for its guest (SLURM_VM_GUEST_ENV_*, exec/guest_env.h), and SLURM_VM_HOSTCALL
    // is dropped. Taking them from the host, rather than only refusing a changed value, also
    // covers a guest that unsets one (srun without SLURM_JOB_ID would make a new job).
    std::vector<std::string> environment(const std::vector<std::string> &guest_env,
                                         const std::vector<std::string> &host_env) const;
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

// Sends POWEROFF (the job is over: sync and power off) and waits for the agent's OK, all within
// timeout_ms, on a socket the caller connected; `channel` names it in messages. After the OK the
// guest syncs and powers off: the caller watches the domain. Throws Error when the agent
// refuses (its reason, made printable), answers something else, or does not answer in time: an
// agent older than POWEROFF skips the frame and never answers, so keep timeout_ms short and
// fall back to the ACPI power button.
void request_poweroff(int socket, const std::string &channel, int timeout_ms);

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
// The size of the terminal on `fd` (TIOCGWINSZ); 0 x 0 when it has none.
WindowSize terminal_size(int fd);

// With request.pty and a terminal on stdin_fd, run_in_guest puts that terminal in raw mode for
// the session (restored on every way out), so that ^C, ^Z and the like reach the guest's
// terminal as bytes, and sends the terminal's new size on each SIGWINCH.
int run_in_guest(const std::string &channel_dir, unsigned ports, const ExecRequest &request,
                 int stdin_fd, int stdout_fd, int stderr_fd, SignalForwarder *signals = nullptr,
                 const HostCallPolicy &hostcalls = {});

}  // namespace svm
