// Host calls, guest side: the per-session relay in the agent, and the shim that srun, squeue,
// ... are links to. The guest has no Slurm; the host client that runs the job's task in the VM
// does, so these commands run there, as the job's user, with the job's allocation.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"

extern char **environ;

namespace svm::agent {

using protocol::encode_frame;
using protocol::Frame;
using protocol::FrameReader;
using protocol::FrameType;

namespace {

// Output of one call waiting for its shim, and of all calls together: above this, the port is
// not read (backpressure).
constexpr std::size_t kMaxShimBacklog = 1024 * 1024;
constexpr std::size_t kMaxTotalShimBacklog = 4 * 1024 * 1024;
// Calls running at once in one session; more is a runaway loop, not a job.
constexpr std::size_t kMaxCallsPerSession = 128;
// On the local socket frames carry no session: the socket is the session's own.
constexpr std::uint32_t kLocalSession = 0;

constexpr int kShimExitUnavailable = 255;

sockaddr_un socket_address(const std::string &path, const std::string &what) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        throw Error(what + " " + path + ": path too long");
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

}  // namespace

HostCallRelay::HostCallRelay(const std::string &dir, std::uint32_t session, uid_t uid, gid_t gid,
                             std::string label)
    : session_(session), label_(std::move(label)), uid_(uid) {
    char name[48];
    std::snprintf(name, sizeof name, "/%d-%08x.sock", static_cast<int>(::getpid()), session);
    const std::string path = dir + name;
    const sockaddr_un addr = socket_address(path, "host-call socket");
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        throw Error("host-call socket " + path + ": socket: " + errno_text(errno));
    }
    ::unlink(path.c_str());
    // The socket file must never be usable by others, not even between bind and chmod: create
    // it 0600 (the server is single-threaded, so the umask is ours alone).
    const mode_t old_umask = ::umask(0177);
    const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr *>(&addr), sizeof addr);
    const int bind_errno = errno;
    ::umask(old_umask);
    if (bound != 0) {
        throw Error("host-call socket " + path + ": bind: " + errno_text(bind_errno));
    }
    path_ = path;
    if (::geteuid() == 0 && ::chown(path.c_str(), uid, gid) != 0) {
        const int err = errno;
        ::unlink(path.c_str());
        throw Error("host-call socket " + path + ": chown to " + std::to_string(uid) + ":" +
                    std::to_string(gid) + ": " + errno_text(err));
    }
    if (::listen(fd.get(), 16) != 0) {
        const int err = errno;
        ::unlink(path.c_str());
        throw Error("host-call socket " + path + ": listen: " + errno_text(err));
    }
    listen_ = std::move(fd);
}

HostCallRelay::~HostCallRelay() {
    if (!path_.empty()) {
        ::unlink(path_.c_str());
    }
}

void HostCallRelay::add_pollfds(std::vector<pollfd> &pfds, bool room) {
    // Beyond the limit, one more shim is accepted to be told so; the rest wait in the backlog
    // until shims end, instead of each costing a descriptor and a buffer here.
    const bool accept = room && shims_.size() <= kMaxCallsPerSession;
    pfds.push_back({accept ? listen_.get() : -1, POLLIN, 0});
    polled_.clear();
    for (auto &[call, shim] : shims_) {
        // A shim whose call ended is only sent its last frames; what it says is of no use.
        short events = shim.ended || !room ? 0 : POLLIN;
        if (!shim.out.empty()) {
            events |= POLLOUT;
        }
        pfds.push_back({shim.fd.get(), events, 0});
        polled_.push_back(call);
    }
}

void HostCallRelay::process(const std::vector<pollfd> &pfds, std::size_t first,
                            std::string &to_host) {
    for (std::size_t i = 0; i < polled_.size(); ++i) {
        const short revents = pfds[first + 1 + i].revents;
        auto it = shims_.find(polled_[i]);
        if (revents == 0 || it == shims_.end()) {
            continue;
        }
        Shim &shim = it->second;
        bool alive = true;
        if (revents & POLLOUT) {
            alive = write_shim(shim);
        }
        if (alive && !shim.ended && (revents & (POLLIN | POLLHUP | POLLERR))) {
            alive = read_shim(it->first, shim, to_host);
        }
        if (!alive && shim.started && !shim.ended) {
            // The shim died (killed, or its stdout went away): the host command must not go on
            // without anyone to report to.
            log_line(label_ + ": host call " + std::to_string(it->first) +
                     ": the caller went away; sending SIGTERM");
            protocol::append_frame(to_host, FrameType::HostCallSignal, session_,
                                   protocol::encode_hostcall_signal({it->first, SIGTERM}));
        }
        if (!alive || (shim.ended && shim.out.empty())) {
            shims_.erase(it);
        }
    }
    polled_.clear();
    if (pfds[first].revents) {
        accept_shims();
    }
}

void HostCallRelay::accept_shims() {
    for (;;) {
        UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_line(label_ + ": host-call socket: accept: " + errno_text(errno));
            }
            return;
        }
        ucred peer{};
        socklen_t len = sizeof peer;
        if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 ||
            (peer.uid != uid_ && peer.uid != 0)) {
            // The socket is 0600: only a process of root could get here as someone else.
            log_line(label_ + ": host-call socket: refusing uid " + std::to_string(peer.uid));
            continue;
        }
        const std::uint32_t call = next_call_++;
        Shim &shim = shims_[call];
        shim.fd = std::move(fd);
        if (shims_.size() > kMaxCallsPerSession) {
            fail_call(shim, "too many host calls at once in this job (at most " +
                                std::to_string(kMaxCallsPerSession) + ")");
            return;  // the others wait in the backlog (see add_pollfds)
        }
    }
}

void HostCallRelay::fail_call(Shim &shim, const std::string &message) {
    protocol::append_frame(shim.out, FrameType::HostCallStderr, kLocalSession,
                           protocol::encode_hostcall_output(0, "slurm-vm: " + message + "\n"));
    RemoteExit exit;
    exit.exit_code = kShimExitUnavailable;
    protocol::append_frame(shim.out, FrameType::HostCallExit, kLocalSession,
                           protocol::encode_hostcall_exit({0, exit}));
    shim.ended = true;
}

bool HostCallRelay::read_shim(std::uint32_t call, Shim &shim, std::string &to_host) {
    FrameReader::Fill fill;
    try {
        fill = shim.reader.fill_from(shim.fd.get());
    } catch (const Error &e) {
        log_line(label_ + ": host call " + std::to_string(call) + ": " + e.what());
        return false;
    }
    for (;;) {
        std::optional<Frame> frame;
        try {
            frame = shim.reader.next();
        } catch (const protocol::ProtocolError &e) {
            fail_call(shim, e.what());
            return true;
        }
        if (!frame) {
            break;
        }
        try {
            if (frame->type == FrameType::HostCall && !shim.started) {
                HostCallRequest request = protocol::decode_hostcall(frame->payload);
                request.call = call;
                protocol::append_frame(to_host, FrameType::HostCall, session_,
                                       protocol::encode_hostcall(request));
                shim.started = true;
                log_line(label_ + ": host call " + std::to_string(call) + ": " + request.argv[0]);
            } else if (frame->type == FrameType::HostCallSignal && shim.started) {
                HostCallSignal signal = protocol::decode_hostcall_signal(frame->payload);
                signal.call = call;
                protocol::append_frame(to_host, FrameType::HostCallSignal, session_,
                                       protocol::encode_hostcall_signal(signal));
            }
        } catch (const protocol::ProtocolError &e) {
            if (!shim.started) {
                fail_call(shim, e.what());
                return true;
            }
            log_line(label_ + ": host call " + std::to_string(call) + ": " + e.what());
        }
    }
    return fill != FrameReader::Fill::Closed;
}

bool HostCallRelay::write_shim(Shim &shim) {
    while (!shim.out.empty()) {
        ssize_t n = ::send(shim.fd.get(), shim.out.data(), shim.out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            shim.out.erase(0, static_cast<std::size_t>(n));
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else {
            return false;
        }
    }
    return true;
}

void HostCallRelay::from_host(const Frame &frame) {
    try {
        std::uint32_t call = 0;
        bool ends = false;
        if (frame.type == FrameType::HostCallExit) {
            call = protocol::decode_hostcall_exit(frame.payload).call;
            ends = true;
        } else if (frame.type == FrameType::HostCallStdout ||
                   frame.type == FrameType::HostCallStderr) {
            call = protocol::decode_hostcall_output(frame.payload).call;
        } else {
            return;
        }
        auto it = shims_.find(call);
        // A call whose shim went away: its last frames have no one to go to.
        if (it == shims_.end() || it->second.ended || !it->second.started) {
            return;
        }
        protocol::append_frame(it->second.out, frame.type, kLocalSession, frame.payload);
        it->second.ended = ends;
    } catch (const protocol::ProtocolError &e) {
        log_line(label_ + ": " + e.what());
    }
}

bool HostCallRelay::backlogged() const {
    std::size_t total = 0;
    for (const auto &[call, shim] : shims_) {
        if (shim.out.size() > kMaxShimBacklog) {
            return true;
        }
        total += shim.out.size();
    }
    return total > kMaxTotalShimBacklog;
}

namespace {

// Dies of the host command's signal, so the caller's shell reports it as usual.
[[noreturn]] void die_of(int signo) {
    std::signal(signo, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    ::raise(signo);
    ::_exit(128 + signo);  // a signal whose default action does not end a process
}

void shim_error(const std::string &command, const std::string &message) {
    std::string line = "slurm-vm: " + command + ": " + message + "\n";
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
}

}  // namespace

int run_hostcall_shim(const std::string &command, const std::vector<std::string> &args) {
    const char *socket_path = std::getenv(protocol::kHostCallEnv);
    if (socket_path == nullptr || *socket_path == '\0') {
        shim_error(command, std::string(protocol::kHostCallEnv) +
                                " is not set: Slurm commands run on the host only from "
                                "within a slurm-vm job");
        return kShimExitUnavailable;
    }
    HostCallRequest request;
    request.argv.push_back(command);
    request.argv.insert(request.argv.end(), args.begin(), args.end());
    char cwd[4096];
    // The host falls back to the job's directory when it has no such path.
    request.cwd = ::getcwd(cwd, sizeof cwd) && cwd[0] == '/' ? cwd : "/";
    const std::string own_var = std::string(protocol::kHostCallEnv) + "=";
    for (char **e = environ; *e; ++e) {
        const char *eq = std::strchr(*e, '=');
        if (eq && eq != *e && std::strncmp(*e, own_var.c_str(), own_var.size()) != 0) {
            request.env.emplace_back(*e);
        }
    }
    std::string hello;
    try {
        hello = protocol::encode_frame(FrameType::HostCall, kLocalSession,
                                       protocol::encode_hostcall(request));
    } catch (const protocol::ProtocolError &e) {
        shim_error(command, e.what());
        return kShimExitUnavailable;
    }

    UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    try {
        addr = socket_address(socket_path, "host-call socket");
    } catch (const Error &e) {
        shim_error(command, e.what());
        return kShimExitUnavailable;
    }
    int r;
    while ((r = ::connect(sock.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr)) != 0 &&
           errno == EINTR) {
    }
    if (!sock || r != 0) {
        shim_error(command, std::string("cannot reach the slurm-vm agent at ") + socket_path +
                                ": " + errno_text(errno));
        return kShimExitUnavailable;
    }

    // Signals meant for the command go to the host command instead of ending the shim.
    sigset_t forwarded;
    sigemptyset(&forwarded);
    for (int signo : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) {
        sigaddset(&forwarded, signo);
    }
    ::sigprocmask(SIG_BLOCK, &forwarded, nullptr);
    UniqueFd signal_fd(::signalfd(-1, &forwarded, SFD_CLOEXEC | SFD_NONBLOCK));

    const auto lost = [&](const std::string &why) {
        shim_error(command, "lost the connection to the slurm-vm agent (" + why + ")");
        return kShimExitUnavailable;
    };
    try {
        if (write_all(sock.get(), hello, -1, "host-call socket") != WriteResult::Done) {
            return lost("it closed the socket");
        }
        FrameReader reader;
        for (;;) {
            while (auto frame = reader.next()) {
                if (frame->type == FrameType::HostCallStdout ||
                    frame->type == FrameType::HostCallStderr) {
                    const int fd =
                        frame->type == FrameType::HostCallStdout ? STDOUT_FILENO : STDERR_FILENO;
                    // Output nobody reads is dropped; a closed pipe kills us (SIGPIPE) as it
                    // would the real command, and the agent then stops the host command.
                    write_all(fd, protocol::decode_hostcall_output(frame->payload).data, -1,
                              "output");
                } else if (frame->type == FrameType::HostCallExit) {
                    const RemoteExit exit = protocol::decode_hostcall_exit(frame->payload).exit;
                    if (exit.signaled) {
                        die_of(exit.signal);
                    }
                    return exit.exit_code;
                }
            }
            pollfd pfds[2] = {{sock.get(), POLLIN, 0}, {signal_fd.get(), POLLIN, 0}};
            if (::poll(pfds, 2, -1) < 0) {
                if (errno == EINTR) {
                    continue;
                }
                return lost("poll: " + errno_text(errno));
            }
            if (pfds[1].revents) {
                signalfd_siginfo info;
                while (::read(signal_fd.get(), &info, sizeof info) ==
                       static_cast<ssize_t>(sizeof info)) {
                    const std::string frame = protocol::encode_frame(
                        FrameType::HostCallSignal, kLocalSession,
                        protocol::encode_hostcall_signal({0, static_cast<int>(info.ssi_signo)}));
                    write_all(sock.get(), frame, -1, "host-call socket");
                }
            }
            if (pfds[0].revents && reader.fill_from(sock.get()) == FrameReader::Fill::Closed) {
                return lost("the job's session ended");
            }
        }
    } catch (const std::exception &e) {
        return lost(e.what());
    }
}

}  // namespace svm::agent
