#include "exec/host_calls.h"

#include "util/safe_fs.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/text.h"
#include "exec/protocol/frame.h"

extern char **environ;

namespace svm {

using protocol::FrameType;

namespace {

constexpr std::size_t kChunk = 65536;
// After a command exits, its background children holding its stdout/stderr get this long.
constexpr int kDrainAfterExitMs = 1000;
// Between SIGTERM and SIGKILL when the session ends under running commands.
constexpr int kStopGraceMs = 5000;
// Without pidfds (kernels before 5.3), exits are noticed by polling this often.
constexpr int kWaitPollMs = 100;
// The agent allows as many per session; more from the guest is a broken or hostile agent.
constexpr std::size_t kMaxCalls = 128;

// Of a command name the guest sent, a refusal shows at most this much: the refusal goes back at
// once, so an echo of the whole name (up to a frame's 4 MiB) would let a guest multiply the
// memory and bandwidth it costs the host.
constexpr std::size_t kMaxShownName = 64;

constexpr int kExitNotFound = 127;
constexpr int kExitNotExecutable = 126;
constexpr int kExitUnavailable = 255;

bool is_host_only(std::string_view entry) {
    const auto eq = entry.find('=');
    const std::string_view name = entry.substr(0, eq);
    return name == "PATH" || name == "HOME" || name.starts_with("LD_");
}

std::string join(const std::vector<std::string> &items, const char *separator) {
    std::string text;
    for (const auto &item : items) {
        text += (text.empty() ? "" : separator) + item;
    }
    return text;
}

// The command name as a refusal shows it: its start, printable.
std::string shown_name(std::string_view name) {
    if (name.size() <= kMaxShownName) {
        return printable(name);
    }
    return printable(name.substr(0, kMaxShownName)) + "...";
}

std::string find_command(const std::string &name, const std::vector<std::string> &dirs) {
    for (const auto &dir : dirs) {
        const std::string path = dir + "/" + name;
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            ::access(path.c_str(), X_OK) == 0) {
            return path;
        }
    }
    return {};
}

std::string client_cwd() {
    char buf[4096];
    return ::getcwd(buf, sizeof buf) ? buf : "/";
}

// posix_spawn's parts, released whatever happens.
struct SpawnSetup {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    SpawnSetup() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~SpawnSetup() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnSetup(const SpawnSetup &) = delete;
    SpawnSetup &operator=(const SpawnSetup &) = delete;
};

void make_pipe(UniqueFd &read_end, UniqueFd &write_end) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw Error("host call: pipe: " + errno_text(errno));
    }
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
}

// posix_spawn returns after the exec, so the group exists; it outlives a reaped leader while
// members remain (a pid alone could already be someone else's).
void kill_group(pid_t pid, int signo) {
    ::kill(-pid, signo);
}

}  // namespace

std::vector<std::string> host_call_environment(const std::vector<std::string> &guest_env,
                                               const std::vector<std::string> &host_env) {
    const std::string own_var = std::string(protocol::kHostCallEnv) + "=";
    std::vector<std::string> env;
    for (const auto &e : guest_env) {
        if (!is_host_only(e) && !e.starts_with(own_var)) {
            env.push_back(e);
        }
    }
    for (const auto &e : host_env) {
        if (is_host_only(e)) {
            env.push_back(e);
        }
    }
    return env;
}

HostCallRunner::HostCallRunner(const HostCallPolicy &policy, std::uint32_t session)
    : policy_(policy), session_(session) {}

HostCallRunner::~HostCallRunner() {
    stop_all();
}

void HostCallRunner::refuse(std::uint32_t call, const std::string &message, int exit_code,
                            std::string &out) {
    protocol::append_frame(out, FrameType::HostCallStderr, session_,
                           protocol::encode_hostcall_output(call, "slurm-vm: " + message + "\n"));
    RemoteExit exit;
    exit.exit_code = exit_code;
    protocol::append_frame(out, FrameType::HostCallExit, session_,
                           protocol::encode_hostcall_exit({call, exit}));
}

void HostCallRunner::start(const HostCallRequest &request, std::string &out) {
    const std::string &name = request.argv[0];
    const auto &allowed = policy_.commands;
    if (name.find('/') != std::string::npos ||
        std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        refuse(request.call,
               shown_name(name) + " cannot be run on the host from a VM job (allowed: " +
                   (allowed.empty() ? std::string("none") : join(allowed, ", ")) + ")",
               kExitNotFound, out);
        return;
    }
    if (calls_.count(request.call) != 0) {
        return;  // the agent never reuses a running call's id; answering would end that call
    }
    if (calls_.size() >= kMaxCalls) {
        refuse(request.call,
               name + ": too many host calls at once (at most " + std::to_string(kMaxCalls) + ")",
               kExitUnavailable, out);
        return;
    }
    const std::string path = find_command(name, policy_.search_dirs);
    if (path.empty()) {
        refuse(request.call,
               name + ": not found on the host (searched " + join(policy_.search_dirs, ":") + ")",
               kExitNotFound, out);
        return;
    }
    // The guest's directory is usually shared with the host (the job's working directory,
    // home); a guest-only one (/tmp in the VM) falls back to the job's directory here.
    const std::string cwd = is_traversable_directory(request.cwd) ? request.cwd : client_cwd();

    std::vector<std::string> host_env;
    for (char **e = environ; *e; ++e) {
        host_env.emplace_back(*e);
    }
    const std::vector<std::string> env = host_call_environment(request.env, host_env);
    std::vector<char *> argv = c_strings(request.argv);
    std::vector<char *> envp = c_strings(env);

    Call call;
    UniqueFd stdout_w, stderr_w;
    try {
        make_pipe(call.stdout_r, stdout_w);
        make_pipe(call.stderr_r, stderr_w);
    } catch (const Error &e) {
        refuse(request.call, name + ": " + e.what(), kExitUnavailable, out);
        return;
    }

    // posix_spawn, not fork: the caller may be multi-threaded (tests are).
    SpawnSetup spawn;
    posix_spawn_file_actions_addopen(&spawn.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&spawn.actions, stdout_w.get(), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&spawn.actions, stderr_w.get(), STDERR_FILENO);
    // Nothing of the client's (the exec channel, its lock) may leak into the command.
    posix_spawn_file_actions_addclosefrom_np(&spawn.actions, 3);
    posix_spawn_file_actions_addchdir_np(&spawn.actions, cwd.c_str());
    // Its own process group, so that signals and the final kill reach what it starts; default
    // dispositions and an empty mask, whatever the client itself catches or ignores.
    sigset_t all, none;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    sigemptyset(&none);
    posix_spawnattr_setflags(
        &spawn.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&spawn.attr, 0);
    posix_spawnattr_setsigdefault(&spawn.attr, &all);
    posix_spawnattr_setsigmask(&spawn.attr, &none);

    const int err = ::posix_spawn(&call.pid, path.c_str(), &spawn.actions, &spawn.attr, argv.data(),
                                  envp.data());
    if (err != 0) {
        refuse(request.call, name + ": cannot run " + path + " on the host: " + errno_text(err),
               err == ENOENT ? kExitNotFound : kExitNotExecutable, out);
        return;
    }
    stdout_w.reset();
    stderr_w.reset();
    call.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, call.pid, 0)));
    set_nonblocking(call.stdout_r.get());
    set_nonblocking(call.stderr_r.get());
    calls_.emplace(request.call, std::move(call));
}

void HostCallRunner::signal(const HostCallSignal &signal) {
    auto it = calls_.find(signal.call);
    if (it != calls_.end() && !it->second.exited) {
        kill_group(it->second.pid, signal.signal);
    }
}

void HostCallRunner::add_pollfds(std::vector<pollfd> &pfds, bool room) {
    polled_.clear();
    for (auto &[id, call] : calls_) {
        if (room && call.stdout_r) {
            pfds.push_back({call.stdout_r.get(), POLLIN, 0});
            polled_.emplace_back(id, Kind::Stdout);
        }
        if (room && call.stderr_r) {
            pfds.push_back({call.stderr_r.get(), POLLIN, 0});
            polled_.emplace_back(id, Kind::Stderr);
        }
        if (!call.exited && call.pidfd) {
            pfds.push_back({call.pidfd.get(), POLLIN, 0});
            polled_.emplace_back(id, Kind::Exit);
        }
    }
}

int HostCallRunner::poll_timeout_ms() const {
    std::int64_t timeout = -1;
    const std::int64_t now = monotonic_ms();
    for (const auto &[id, call] : calls_) {
        std::int64_t t = -1;
        if (call.exited) {
            t = std::max<std::int64_t>(0, call.drain_deadline - now);
        } else if (!call.pidfd) {
            t = kWaitPollMs;
        }
        if (t >= 0 && (timeout < 0 || t < timeout)) {
            timeout = t;
        }
    }
    return static_cast<int>(timeout);
}

bool HostCallRunner::read_output(std::uint32_t call, UniqueFd &pipe, bool is_stdout,
                                 std::string &out) {
    char buf[kChunk];
    const ssize_t n = ::read(pipe.get(), buf, sizeof buf);
    if (n > 0) {
        protocol::append_frame(
            out, is_stdout ? FrameType::HostCallStdout : FrameType::HostCallStderr, session_,
            protocol::encode_hostcall_output(call, std::string_view(buf, static_cast<size_t>(n))));
        return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        pipe.reset();
    }
    return false;
}

void HostCallRunner::check_exit(Call &call) {
    if (call.exited) {
        return;
    }
    int status = 0;
    pid_t r;
    while ((r = ::waitpid(call.pid, &status, WNOHANG)) < 0 && errno == EINTR) {
    }
    if (r == call.pid || (r < 0 && errno == ECHILD)) {
        // ECHILD: someone else reaped it (a caller that waits for any child); it did end.
        call.exited = true;
        call.status = r == call.pid ? status : (kExitUnavailable << 8);
        call.drain_deadline = monotonic_ms() + kDrainAfterExitMs;
        call.pidfd.reset();
    }
}

void HostCallRunner::process(const std::vector<pollfd> &pfds, std::size_t first, std::string &out,
                             std::size_t out_limit) {
    for (std::size_t i = 0; i < polled_.size(); ++i) {
        if (pfds[first + i].revents == 0) {
            continue;
        }
        auto it = calls_.find(polled_[i].first);
        if (it == calls_.end()) {
            continue;
        }
        Call &call = it->second;
        const bool room = out.size() < out_limit;
        switch (polled_[i].second) {
            case Kind::Stdout:
                if (room) {
                    read_output(it->first, call.stdout_r, true, out);
                }
                break;
            case Kind::Stderr:
                if (room) {
                    read_output(it->first, call.stderr_r, false, out);
                }
                break;
            case Kind::Exit:
                check_exit(call);
                break;
        }
    }
    polled_.clear();
    const std::int64_t now = monotonic_ms();
    for (auto it = calls_.begin(); it != calls_.end();) {
        Call &call = it->second;
        if (!call.pidfd) {
            check_exit(call);
        }
        const bool outputs_open = call.stdout_r || call.stderr_r;
        if (!call.exited || (outputs_open && now < call.drain_deadline)) {
            ++it;
            continue;
        }
        if (outputs_open) {
            // Background children of the command still hold its output: they go with it.
            kill_group(call.pid, SIGKILL);
            call.stdout_r.reset();
            call.stderr_r.reset();
        }
        protocol::append_frame(
            out, FrameType::HostCallExit, session_,
            protocol::encode_hostcall_exit({it->first, RemoteExit::from_wait_status(call.status)}));
        it = calls_.erase(it);
    }
}

void HostCallRunner::stop_all() {
    if (calls_.empty()) {
        return;
    }
    for (auto &[id, call] : calls_) {
        call.stdout_r.reset();
        call.stderr_r.reset();
        kill_group(call.pid, call.exited ? SIGKILL : SIGTERM);
    }
    const std::int64_t deadline = monotonic_ms() + kStopGraceMs;
    for (;;) {
        bool all_exited = true;
        for (auto &[id, call] : calls_) {
            check_exit(call);
            all_exited = all_exited && call.exited;
        }
        if (all_exited || monotonic_ms() >= deadline) {
            break;
        }
        ::usleep(50 * 1000);
    }
    for (auto &[id, call] : calls_) {
        if (!call.exited) {
            kill_group(call.pid, SIGKILL);
            int status;
            while (::waitpid(call.pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
    }
    calls_.clear();
}

}  // namespace svm
