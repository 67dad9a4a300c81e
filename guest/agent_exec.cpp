// One EXEC session: start the command as the requested user, stream its stdin/stdout/stderr as
// frames, forward signals to its process group, report how it ended.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <memory>
#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "exec/protocol/program_path.h"

extern char **environ;

namespace svm::agent {

using protocol::encode_frame;
using protocol::Frame;
using protocol::FrameReader;
using protocol::FrameType;

namespace {

constexpr std::size_t kChunk = 65536;
// Output waiting for the host: above this, stop reading the command's pipes (backpressure).
constexpr std::size_t kMaxPendingOutput = 256 * 1024;
// Stdin waiting for the command: above this, stop reading the port until it drains.
constexpr std::size_t kMaxPendingStdin = 1024 * 1024;
// After the command exits, background children holding its pipes get this long.
constexpr int kDrainAfterExitMs = 1000;

struct StartFailure {
    AgentError error;
};

struct Child {
    pid_t pid = -1;
    UniqueFd stdin_w, stdout_r, stderr_r;
    UniqueFd pty;  // srun --pty: the terminal's master side (stdin_w and stdout_r are copies)
};

void make_pipe(UniqueFd &read_end, UniqueFd &write_end) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw StartFailure{{"pipe(): " + errno_text(errno), "pipe", errno}};
    }
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
}

// In the child, before exec: report why it could not start, then die.
[[noreturn]] void child_fail(int error_fd, const char *stage, const std::string &subject, int err) {
    std::string report(reinterpret_cast<const char *>(&err), sizeof err);
    report += stage;
    report.push_back('\0');
    report += std::string(stage) + "(): " + subject + ": " + errno_text(err);
    ssize_t ignored = ::write(error_fd, report.data(), report.size());
    (void)ignored;
    ::_exit(127);
}

// The limits a native task would have: set as root, so a hard limit may be raised to the
// host's (slurmstepd's) as well as lowered; the soft one is what the user propagated.
void apply_limits(const ExecRequest &req, int error_fd) {
    for (const ResourceLimit &limit : req.limits) {
        const int resource = protocol::rlimit_resource(limit.resource);
        const auto value = [](std::uint64_t v) {
            return v == ResourceLimit::kUnlimited ? RLIM_INFINITY : static_cast<rlim_t>(v);
        };
        struct rlimit r {
            value(limit.soft), value(limit.hard)
        };
        if (::setrlimit(resource, &r) != 0) {
            // As an unprivileged agent (tests), a hard limit cannot go up: keep it, set the
            // soft one within it, as slurmstepd does for the limits the admin propagates.
            struct rlimit now {};
            if (::getrlimit(resource, &now) != 0) {
                child_fail(error_fd, "setrlimit", limit.resource, errno);
            }
            r.rlim_max = now.rlim_max;
            if (r.rlim_cur > r.rlim_max) {
                r.rlim_cur = r.rlim_max;
            }
            if (::setrlimit(resource, &r) != 0) {
                child_fail(error_fd, "setrlimit", limit.resource, errno);
            }
        }
    }
}

// slurmstepd's _make_tmpdir, in the guest and as the user: a TMPDIR that is not a writable
// directory (and cannot be made one) becomes /tmp. `envp` is the child's copy.
void make_tmpdir(char **envp) {
    for (char **e = envp; *e; ++e) {
        if (std::strncmp(*e, "TMPDIR=", 7) != 0) {
            continue;
        }
        const char *dir = *e + 7;
        if (::mkdir(dir, 0700) == 0) {
            return;
        }
        struct stat st {};
        if (::stat(dir, &st) == 0 && S_ISDIR(st.st_mode) &&
            ::faccessat(AT_FDCWD, dir, X_OK | W_OK, AT_EACCESS) == 0) {
            return;
        }
        static char tmp[] = "TMPDIR=/tmp";
        *e = tmp;
        return;
    }
}

const char *env_value(char **envp, const char *name) {
    const std::size_t n = std::strlen(name);
    for (char **e = envp; *e; ++e) {
        if (std::strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
            return *e + n + 1;
        }
    }
    return nullptr;
}

// Where the child writes the script of the request (see run_child); removed after the session.
std::string script_path(pid_t pid) {
    return std::string(kScriptDir) + "/" + std::to_string(pid);
}

[[noreturn]] void run_child(const ExecRequest &req, int stdin_r, int stdout_w, int stderr_w,
                            int error_fd, char **argv, char **envp) {
    for (int sig = 1; sig < NSIG; ++sig) {
        ::signal(sig, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Its own session and process group: signals from the host go to the whole job.
    ::setsid();
    if (::dup2(stdin_r, 0) < 0 || ::dup2(stdout_w, 1) < 0 || ::dup2(stderr_w, 2) < 0) {
        child_fail(error_fd, "dup2", "stdio", errno);
    }
    // A terminal session: the pseudo-terminal is the session's controlling terminal, so ^C,
    // ^Z and job control act in the guest as on a login.
    if (req.pty && ::ioctl(0, TIOCSCTTY, 0) != 0) {
        child_fail(error_fd, "ioctl", "TIOCSCTTY", errno);
    }
    // Nothing of the agent's may leak into the command.
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);

    apply_limits(req, error_fd);
    if (req.umask) {
        ::umask(static_cast<mode_t>(*req.umask));
    }
    if (::geteuid() == 0) {
        std::vector<gid_t> groups(req.groups.begin(), req.groups.end());
        if (::setgroups(groups.size(), groups.data()) != 0) {
            child_fail(error_fd, "setgroups", std::to_string(groups.size()) + " groups", errno);
        }
        if (::setgid(req.gid) != 0) {
            child_fail(error_fd, "setgid", std::to_string(req.gid), errno);
        }
        if (::setuid(req.uid) != 0) {
            child_fail(error_fd, "setuid", std::to_string(req.uid), errno);
        }
        if (req.uid != 0 && (::geteuid() == 0 || ::getuid() == 0)) {
            child_fail(error_fd, "setuid", std::to_string(req.uid), EPERM);
        }
    } else if (req.uid != ::geteuid()) {
        // An unprivileged agent (tests) can only run commands as itself.
        child_fail(error_fd, "setuid", std::to_string(req.uid), EPERM);
    }
    // A script only the host has (a batch script in slurmd's spool) is written here, as the
    // user, to a file of the agent's private tmpfs folder, and run from there.
    if (!req.script.empty()) {
        const std::string path = script_path(::getpid());
        const int fd =
            ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0700);
        if (fd < 0) {
            child_fail(error_fd, "open", path, errno);
        }
        const char *p = req.script.data();
        std::size_t left = req.script.size();
        while (left > 0) {
            const ssize_t n = ::write(fd, p, left);
            if (n < 0) {
                child_fail(error_fd, "write", path, errno);
            }
            p += n;
            left -= static_cast<std::size_t>(n);
        }
        ::close(fd);
        argv[0] = const_cast<char *>(path.c_str());
        if (::chdir(req.cwd.c_str()) != 0) {
            child_fail(error_fd, "chdir", req.cwd, errno);
        }
        environ = envp;
        ::execv(path.c_str(), argv);
        child_fail(error_fd, "execve", req.argv[0], errno);
    }
    // After dropping privileges, so the directory is checked with the user's rights.
    if (::chdir(req.cwd.c_str()) != 0) {
        child_fail(error_fd, "chdir", req.cwd, errno);
    }
    if (req.make_tmpdir) {
        make_tmpdir(envp);
    }
    // The program as slurmstepd would pick it on a node: the job's PATH, in the guest. Like a
    // native task, it gets the path found as its argv[0].
    const char *path_env = env_value(envp, "PATH");
    const std::string program = protocol::task_program_path(
        req.argv[0], path_env ? path_env : "", req.cwd, [](const std::string &candidate) {
            struct stat st {};
            return ::stat(candidate.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
        });
    argv[0] = const_cast<char *>(program.c_str());
    ::execve(program.c_str(), argv, envp);
    child_fail(error_fd, "execve", req.argv[0], errno);
}

// A pseudo-terminal of the request's size: `master` stays with the agent, the slave becomes the
// command's stdin, stdout and stderr.
void make_pty(const WindowSize &size, UniqueFd &master, UniqueFd &slave) {
    int m = -1, s = -1;
    winsize ws{};
    ws.ws_row = size.rows;
    ws.ws_col = size.cols;
    if (::openpty(&m, &s, nullptr, nullptr, &ws) != 0) {
        throw StartFailure{{"openpty(): " + errno_text(errno), "openpty", errno}};
    }
    master.reset(m);
    slave.reset(s);
    ::fcntl(m, F_SETFD, FD_CLOEXEC);
    ::fcntl(s, F_SETFD, FD_CLOEXEC);
}

UniqueFd duplicate(const UniqueFd &fd) {
    UniqueFd copy(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
    if (!copy) {
        throw StartFailure{{"fcntl(F_DUPFD): " + errno_text(errno), "dup", errno}};
    }
    return copy;
}

Child start_child(const ExecRequest &req) {
    UniqueFd stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w, error_r, error_w, pty;
    if (req.pty) {
        make_pty(*req.pty, pty, stdin_r);
        stdout_w = duplicate(stdin_r);
        stderr_w = duplicate(stdin_r);
        stdin_w = duplicate(pty);
        stdout_r = duplicate(pty);
    } else {
        make_pipe(stdin_r, stdin_w);
        make_pipe(stdout_r, stdout_w);
        make_pipe(stderr_r, stderr_w);
    }
    make_pipe(error_r, error_w);
    std::vector<char *> argv = c_strings(req.argv);
    std::vector<char *> envp = c_strings(req.env);

    pid_t pid = ::fork();
    if (pid < 0) {
        throw StartFailure{{"fork(): " + errno_text(errno), "fork", errno}};
    }
    if (pid == 0) {
        run_child(req, stdin_r.get(), stdout_w.get(), stderr_w.get(), error_w.get(), argv.data(),
                  envp.data());
    }
    stdin_r.reset();
    stdout_w.reset();
    stderr_w.reset();
    error_w.reset();

    // The error pipe is close-on-exec: end of file without data means exec succeeded.
    std::string report;
    char buf[512];
    for (;;) {
        ssize_t n = ::read(error_r.get(), buf, sizeof buf);
        if (n > 0) {
            report.append(buf, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    if (!report.empty()) {
        int status;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        AgentError error;
        if (report.size() > sizeof(int)) {
            std::memcpy(&error.error_number, report.data(), sizeof(int));
            std::string rest = report.substr(sizeof(int));
            auto nul = rest.find('\0');
            error.stage = rest.substr(0, nul);
            error.message = nul == std::string::npos ? rest : rest.substr(nul + 1);
        } else {
            error.message = "the command failed before exec";
        }
        throw StartFailure{error};
    }
    Child child;
    child.pid = pid;
    child.stdin_w = std::move(stdin_w);
    child.stdout_r = std::move(stdout_r);
    child.stderr_r = std::move(stderr_r);
    child.pty = std::move(pty);
    // One open file description for both copies of a pty's master: non-blocking for both.
    set_nonblocking(child.stdin_w.get());
    set_nonblocking(child.stdout_r.get());
    if (child.stderr_r) {
        set_nonblocking(child.stderr_r.get());
    }
    return child;
}

class ExecSession {
  public:
    ExecSession(Channel &channel, FrameReader &reader, ServerSignals &signals,
                std::uint32_t session, const ServerConfig &config)
        : channel_(channel),
          reader_(reader),
          signals_(signals),
          session_(session),
          config_(config) {
        char id[16];
        std::snprintf(id, sizeof id, "%08x", session);
        label_ = "port " + channel.name() + ": session " + id;
    }

    SessionResult run(const Frame &request);

  private:
    enum class Step { Continue, HostLeft, Superseded, Terminate };

    Step read_port();
    Step process_buffered_frames();
    Step handle_frame(Frame &frame);
    bool read_output(UniqueFd &pipe, FrameType type);
    void write_stdin();
    bool flush();  // false: the host is gone
    void kill_group(int signo);
    void abandon();  // the host is gone: kill everything, reap the command
    void send_now(FrameType type, const std::string &payload);
    void open_hostcalls(ExecRequest &req);

    Channel &channel_;
    FrameReader &reader_;
    ServerSignals &signals_;
    std::uint32_t session_;
    const ServerConfig &config_;
    std::string label_;
    std::unique_ptr<HostCallRelay> hostcalls_;

    Child child_;
    bool exited_ = false;
    int status_ = 0;
    std::string out_;    // frames waiting to go to the host
    std::string stdin_;  // bytes waiting to go to the command
    bool stdin_eof_ = false;
    std::optional<Frame> next_request_;
};

void ExecSession::send_now(FrameType type, const std::string &payload) {
    write_all(channel_.fd(), encode_frame(type, session_, payload), 30000,
              "port " + channel_.name());
}

void ExecSession::kill_group(int signo) {
    // The command leads its own process group; its id lives on while any member does.
    if (::kill(-child_.pid, signo) != 0 && errno != ESRCH) {
        log_line(label_ + ": kill " + protocol::signal_name(signo) + ": " + errno_text(errno));
    }
}

void ExecSession::abandon() {
    kill_group(SIGKILL);
    hostcalls_.reset();
    child_.stdin_w.reset();
    child_.stdout_r.reset();
    child_.stderr_r.reset();
    if (!exited_) {
        int status;
        while (::waitpid(child_.pid, &status, 0) < 0 && errno == EINTR) {
        }
        exited_ = true;
    }
    reap_children(-1);
}

bool ExecSession::flush() {
    while (!out_.empty()) {
        ssize_t n = ::write(channel_.fd(), out_.data(), out_.size());
        if (n > 0) {
            out_.erase(0, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        }
        return false;
    }
    return true;
}

ExecSession::Step ExecSession::handle_frame(Frame &frame) {
    if (frame.session != session_) {
        if (protocol::is_request(frame.type)) {
            next_request_ = std::move(frame);
            return Step::Superseded;
        }
        return Step::Continue;  // stale bytes of an earlier session
    }
    switch (frame.type) {
        case FrameType::Stdin:
            if (child_.stdin_w) {
                stdin_ += frame.payload;
            }
            break;
        case FrameType::StdinEof:
            // A terminal has no end of input to pass on (^D is a byte on it): the host's
            // terminal going away ends the session through the host instead.
            if (child_.pty) {
                break;
            }
            stdin_eof_ = true;
            if (stdin_.empty()) {
                child_.stdin_w.reset();
            }
            break;
        case FrameType::Winch:
            try {
                const WindowSize size = protocol::decode_winch(frame.payload);
                winsize ws{};
                ws.ws_row = size.rows;
                ws.ws_col = size.cols;
                // The kernel sends SIGWINCH to the terminal's foreground process group.
                if (child_.pty && ::ioctl(child_.pty.get(), TIOCSWINSZ, &ws) != 0) {
                    log_line(label_ + ": TIOCSWINSZ: " + errno_text(errno));
                }
            } catch (const protocol::ProtocolError &e) {
                log_line(label_ + ": " + e.what());
            }
            break;
        case FrameType::Signal:
            try {
                int signo = protocol::decode_signal(frame.payload);
                log_line(label_ + ": forwarding " + protocol::signal_name(signo));
                kill_group(signo);
            } catch (const protocol::ProtocolError &e) {
                log_line(label_ + ": " + e.what());
            }
            break;
        case FrameType::HostCallStdout:
        case FrameType::HostCallStderr:
        case FrameType::HostCallExit:
            if (hostcalls_) {
                hostcalls_->from_host(frame);
            }
            break;
        default:
            log_line(label_ + ": ignoring a " + protocol::frame_type_name(frame.type) +
                     " frame during the session");
    }
    return Step::Continue;
}

ExecSession::Step ExecSession::read_port() {
    if (reader_.fill_from(channel_.fd()) == FrameReader::Fill::Closed) {
        return Step::HostLeft;
    }
    return process_buffered_frames();
}

ExecSession::Step ExecSession::process_buffered_frames() {
    for (;;) {
        std::optional<Frame> frame;
        try {
            frame = reader_.next();
        } catch (const protocol::ProtocolError &e) {
            log_line(label_ + ": " + e.what());
            continue;
        }
        if (!frame) {
            return Step::Continue;
        }
        Step step = handle_frame(*frame);
        if (step != Step::Continue) {
            return step;
        }
    }
}

// True when it read something.
bool ExecSession::read_output(UniqueFd &pipe, FrameType type) {
    char buf[kChunk];
    ssize_t n = ::read(pipe.get(), buf, sizeof buf);
    if (n > 0) {
        protocol::append_frame(out_, type, session_, std::string_view(buf, n));
        return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        pipe.reset();
    }
    return false;
}

void ExecSession::write_stdin() {
    ssize_t n = ::write(child_.stdin_w.get(), stdin_.data(), stdin_.size());
    if (n > 0) {
        stdin_.erase(0, static_cast<std::size_t>(n));
    } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        // The command closed its stdin (EPIPE): what it did not read is dropped, as with a pipe.
        stdin_.clear();
        child_.stdin_w.reset();
        return;
    }
    if (stdin_.empty() && stdin_eof_) {
        child_.stdin_w.reset();
    }
}

void ExecSession::open_hostcalls(ExecRequest &req) {
    if (config_.hostcall_dir.empty()) {
        return;
    }
    try {
        hostcalls_ = std::make_unique<HostCallRelay>(config_.hostcall_dir, session_, req.uid,
                                                     req.gid, label_);
    } catch (const Error &e) {
        // The command still runs; its srun & co. say that host calls are unavailable.
        log_line(label_ + ": no host calls: " + e.what());
        return;
    }
    const std::string prefix = std::string(protocol::kHostCallEnv) + "=";
    std::erase_if(req.env, [&](const std::string &e) { return e.starts_with(prefix); });
    req.env.push_back(prefix + hostcalls_->socket_path());
}

SessionResult ExecSession::run(const Frame &request) {
    ExecRequest req;
    try {
        req = protocol::decode_exec(request.payload);
        open_hostcalls(req);
        child_ = start_child(req);
    } catch (const protocol::ProtocolError &e) {
        log_line(label_ + ": " + e.what());
        send_now(FrameType::Error, protocol::encode_error({e.what(), "request", 0}));
        return {};
    } catch (const StartFailure &failure) {
        log_line(label_ + ": " + failure.error.message);
        send_now(FrameType::Error, protocol::encode_error(failure.error));
        return {};
    }
    log_line(label_ + ": started " + req.argv[0] + " as uid " + std::to_string(req.uid) + ", pid " +
             std::to_string(child_.pid));
    protocol::append_frame(out_, FrameType::Started, session_,
                           protocol::encode_started(child_.pid));

    // The host sends STDIN_EOF or SIGNAL right behind EXEC: they may already be buffered.
    if (process_buffered_frames() == Step::Superseded) {
        log_line(label_ + ": a new host connected; killing the previous command");
        abandon();
        return {SessionEnd::Superseded, std::move(next_request_)};
    }
    std::int64_t drain_deadline = 0;
    bool stragglers_killed = false;
    for (;;) {
        const bool outputs_open = child_.stdout_r || child_.stderr_r;
        if (exited_ && !outputs_open) {
            break;
        }
        if (exited_ && monotonic_ms() >= drain_deadline) {
            if (stragglers_killed) {
                break;
            }
            // Background children of the command still hold its stdout/stderr.
            kill_group(SIGKILL);
            stragglers_killed = true;
            drain_deadline = monotonic_ms() + 100;
        }
        std::vector<pollfd> pfds(5);
        const bool room = out_.size() < kMaxPendingOutput;
        const bool take_input =
            stdin_.size() < kMaxPendingStdin && !(hostcalls_ && hostcalls_->backlogged());
        pfds[0] = {channel_.fd(),
                   static_cast<short>((take_input ? POLLIN : 0) | (out_.empty() ? 0 : POLLOUT)), 0};
        pfds[1] = {room ? child_.stdout_r.get() : -1, POLLIN, 0};
        pfds[2] = {room ? child_.stderr_r.get() : -1, POLLIN, 0};
        pfds[3] = {stdin_.empty() ? -1 : child_.stdin_w.get(), POLLOUT, 0};
        pfds[4] = {signals_.fd(), POLLIN, 0};
        if (hostcalls_) {
            hostcalls_->add_pollfds(pfds, room);
        }
        int timeout = -1;
        if (exited_) {
            timeout = static_cast<int>(std::max<std::int64_t>(0, drain_deadline - monotonic_ms()));
        }
        if (::poll(pfds.data(), pfds.size(), timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw Error("poll: " + errno_text(errno));
        }
        if (pfds[4].revents) {
            const bool terminate = signals_.drain();
            if (auto status = reap_children(child_.pid)) {
                exited_ = true;
                status_ = *status;
                drain_deadline = monotonic_ms() + kDrainAfterExitMs;
            }
            if (terminate) {
                log_line(label_ + ": agent told to stop; killing the command");
                abandon();
                return {SessionEnd::Terminate, {}};
            }
        }
        if (pfds[0].revents & POLLOUT) {
            if (!flush()) {
                log_line(label_ + ": the host left; killing the command");
                abandon();
                return {SessionEnd::HostLeft, {}};
            }
        }
        if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            Step step = read_port();
            if (step == Step::HostLeft) {
                log_line(label_ + ": the host left; killing the command");
                abandon();
                return {SessionEnd::HostLeft, {}};
            }
            if (step == Step::Superseded) {
                log_line(label_ + ": a new host connected; killing the previous command");
                abandon();
                return {SessionEnd::Superseded, std::move(next_request_)};
            }
        }
        if (pfds[1].revents) {
            read_output(child_.stdout_r, FrameType::Stdout);
        }
        if (pfds[2].revents) {
            read_output(child_.stderr_r, FrameType::Stderr);
        }
        if (pfds[3].revents) {
            write_stdin();
        }
        if (hostcalls_) {
            hostcalls_->process(pfds, 5, out_);
        }
    }
    // What the command wrote before it ended may still sit in the pipes (the host reading
    // slowly kept us from taking it): about a pipe's capacity each. Bounded, because a daemon
    // that escaped the process group may still be writing.
    for (int i = 0; i < 16 && child_.stdout_r && read_output(child_.stdout_r, FrameType::Stdout);
         ++i) {
    }
    for (int i = 0; i < 16 && child_.stderr_r && read_output(child_.stderr_r, FrameType::Stderr);
         ++i) {
    }
    child_.stdout_r.reset();
    child_.stderr_r.reset();
    child_.stdin_w.reset();
    reap_children(-1);

    ::unlink(script_path(child_.pid).c_str());  // if the request carried a script
    RemoteExit exit = RemoteExit::from_wait_status(status_);
    protocol::append_frame(out_, FrameType::Exit, session_, protocol::encode_exit(exit));
    log_line(label_ + ": " +
             (exit.signaled ? "killed by " + protocol::signal_name(exit.signal)
                            : "exited with " + std::to_string(exit.exit_code)));
    auto result = write_all(channel_.fd(), out_, 30000, "port " + channel_.name());
    out_.clear();
    if (result != WriteResult::Done) {
        return {SessionEnd::HostLeft, {}};
    }
    return {};
}

}  // namespace

SessionResult run_exec_session(Channel &channel, FrameReader &reader, ServerSignals &signals,
                               const Frame &request, const ServerConfig &config) {
    ExecSession session(channel, reader, signals, request.session, config);
    return session.run(request);
}

}  // namespace svm::agent
