#include "exec_client.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "host_calls.h"
#include "protocol/fd.h"
#include "protocol/frame.h"

namespace svm {

using protocol::Frame;
using protocol::FrameReader;
using protocol::FrameType;
using protocol::UniqueFd;

namespace {

constexpr int kPortWaitMs = 60000;
constexpr int kPortRetryMs = 100;
// From EXEC to STARTED: the agent forks and execs; a VM this slow is broken.
constexpr int kStartTimeoutMs = 60000;
constexpr std::size_t kChunk = 65536;
// Stdin read ahead of the socket: above this, stop reading stdin until the socket drains.
constexpr std::size_t kMaxPendingToAgent = 256 * 1024;

std::atomic<int> g_signal_write_fd{-1};
struct sigaction g_previous_actions[NSIG];

void on_forwarded_signal(int signo) {
    const int saved_errno = errno;
    const unsigned char byte = static_cast<unsigned char>(signo);
    int fd = g_signal_write_fd.load();
    if (fd >= 0) {
        // A full pipe drops the signal; 64 KiB of pending signals means the loop is not reading.
        ssize_t ignored = ::write(fd, &byte, 1);
        (void)ignored;
    }
    errno = saved_errno;
}

std::string lost_connection(const std::string &reason) {
    return "lost the connection to the VM's agent (" + reason + ")";
}

UniqueFd connect_socket(const std::string &path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        throw Error("exec channel " + path + ": socket path too long");
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        throw Error("exec channel " + path + ": socket: " + errno_text(errno));
    }
    int r;
    while ((r = ::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr)) != 0 &&
           errno == EINTR) {
    }
    if (r != 0) {
        throw Error("cannot connect to the VM's exec channel " + path + ": " + errno_text(errno));
    }
    protocol::set_nonblocking(fd.get());
    return fd;
}

// One request, one reply, with a deadline: PING and SETUP.
Frame request_reply(const std::string &socket_path, FrameType type, const std::string &payload,
                    int timeout_ms) {
    const std::string what = std::string(protocol::frame_type_name(type));
    const std::int64_t deadline = protocol::monotonic_ms() + timeout_ms;
    UniqueFd sock = connect_socket(socket_path);
    const std::uint32_t session = protocol::random_session_id();
    const auto timed_out = [&] {
        return Error("the VM's agent did not answer " + what + " on " + socket_path + " within " +
                     std::to_string(timeout_ms) + " ms");
    };
    auto written = protocol::write_all(sock.get(), protocol::encode_frame(type, session, payload),
                                       timeout_ms, "exec channel " + socket_path);
    if (written == protocol::WriteResult::TimedOut) {
        throw timed_out();
    }
    if (written == protocol::WriteResult::PeerGone) {
        throw Error(lost_connection("the channel " + socket_path + " was closed"));
    }
    FrameReader reader;
    reader.expect_session(session);
    for (;;) {
        if (auto frame = reader.next()) {
            return std::move(*frame);
        }
        std::int64_t left = deadline - protocol::monotonic_ms();
        if (left <= 0) {
            throw timed_out();
        }
        pollfd pfd{sock.get(), POLLIN, 0};
        int r = ::poll(&pfd, 1, static_cast<int>(left));
        if (r < 0 && errno != EINTR) {
            throw Error("poll on exec channel " + socket_path + ": " + errno_text(errno));
        }
        if (r > 0 && reader.fill_from(sock.get()) == FrameReader::Fill::Closed) {
            throw Error(lost_connection("the channel " + socket_path + " was closed"));
        }
    }
}

bool ends_the_caller(int signo) {
    return signo != SIGTSTP && signo != SIGCONT;
}

struct PortLock {
    UniqueFd lock;
    unsigned index = 0;
    int signal = 0;  // a signal that ended the wait instead
};

PortLock acquire_port(const std::string &channel_dir, unsigned ports, SignalForwarder *signals) {
    if (ports == 0) {
        throw Error("exec channels in " + channel_dir + ": the VM has no exec port (ports = 0)");
    }
    const std::int64_t deadline = protocol::monotonic_ms() + kPortWaitMs;
    for (;;) {
        for (unsigned i = 0; i < ports; ++i) {
            const std::string path = channel_dir + "/exec." + std::to_string(i) + ".lock";
            UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
            if (!fd && errno == EACCES) {
                // flock() needs no write access: a lock file only readable by the job's user
                // works as well.
                fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
            }
            if (!fd) {
                throw Error("exec channel lock " + path + ": " + errno_text(errno));
            }
            if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
                return {std::move(fd), i, 0};
            }
            if (errno != EWOULDBLOCK && errno != EINTR) {
                throw Error("exec channel lock " + path + ": flock: " + errno_text(errno));
            }
        }
        if (protocol::monotonic_ms() >= deadline) {
            throw Error("all " + std::to_string(ports) + " exec channels of the VM are busy (" +
                        channel_dir + ", waited " + std::to_string(kPortWaitMs / 1000) + " s)");
        }
        pollfd pfd{signals ? signals->fd() : -1, POLLIN, 0};
        ::poll(&pfd, 1, kPortRetryMs);
        while (int signo = signals ? signals->take() : 0) {
            if (ends_the_caller(signo)) {
                return {UniqueFd(), 0, signo};
            }
        }
    }
}

// One EXEC session from the host's side.
class ClientSession {
  public:
    ClientSession(UniqueFd sock, std::string socket_path, int stdin_fd, int stdout_fd,
                  int stderr_fd, SignalForwarder *signals, const HostCallPolicy &hostcalls)
        : sock_(std::move(sock)),
          path_(std::move(socket_path)),
          stdin_fd_(stdin_fd),
          stdout_fd_(stdout_fd),
          stderr_fd_(stderr_fd),
          signals_(signals),
          session_(protocol::random_session_id()),
          hostcalls_(hostcalls, session_) {
        reader_.expect_session(session_);
    }

    int run(const std::string &exec_payload);

  private:
    void send(FrameType type, std::string_view payload = {}) {
        protocol::append_frame(out_, type, session_, payload);
    }
    void flush();
    void read_stdin();
    void forward_signals();
    void write_output(int fd, const std::string &data, const char *stream);
    std::optional<int> handle(const Frame &frame);

    UniqueFd sock_;
    std::string path_;
    int stdin_fd_, stdout_fd_, stderr_fd_;
    SignalForwarder *signals_;
    std::uint32_t session_;
    // Declared after session_ (it stamps frames with it); stops its commands on destruction.
    HostCallRunner hostcalls_;
    FrameReader reader_;
    std::string out_;
    bool started_ = false;
    bool stdin_open_ = false;
};

void ClientSession::flush() {
    while (!out_.empty()) {
        ssize_t n = ::send(sock_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
        if (n > 0) {
            out_.erase(0, static_cast<std::size_t>(n));
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            throw Error(lost_connection("writing " + path_ + ": " + errno_text(errno)));
        }
    }
}

void ClientSession::read_stdin() {
    char buf[kChunk];
    ssize_t n = ::read(stdin_fd_, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return;
    }
    if (n > 0) {
        send(FrameType::Stdin, std::string_view(buf, static_cast<std::size_t>(n)));
        return;
    }
    // End of file, or an unreadable stdin: either way the command sees the end of its input.
    send(FrameType::StdinEof);
    stdin_open_ = false;
}

void ClientSession::forward_signals() {
    while (int signo = signals_ ? signals_->take() : 0) {
        send(FrameType::Signal, protocol::encode_signal(signo));
    }
}

void ClientSession::write_output(int fd, const std::string &data, const char *stream) {
    if (fd < 0) {
        return;
    }
    if (protocol::write_all(fd, data, -1, stream) != protocol::WriteResult::Done) {
        throw Error(std::string("writing the command's ") + stream + ": the reader went away");
    }
}

std::optional<int> ClientSession::handle(const Frame &frame) {
    switch (frame.type) {
        case FrameType::Started:
            protocol::decode_started(frame.payload);
            started_ = true;
            break;
        case FrameType::Error: {
            AgentError error = protocol::decode_error(frame.payload);
            if (!started_) {
                throw RemoteStartError(error);
            }
            throw Error("the VM's agent reported: " + error.message);
        }
        case FrameType::Stdout:
            write_output(stdout_fd_, frame.payload, "stdout");
            break;
        case FrameType::Stderr:
            write_output(stderr_fd_, frame.payload, "stderr");
            break;
        case FrameType::Exit:
            return protocol::decode_exit(frame.payload).wait_status();
        case FrameType::HostCall:
            hostcalls_.start(protocol::decode_hostcall(frame.payload), out_);
            break;
        case FrameType::HostCallSignal:
            hostcalls_.signal(protocol::decode_hostcall_signal(frame.payload));
            break;
        default:
            break;
    }
    return std::nullopt;
}

int ClientSession::run(const std::string &exec_payload) {
    send(FrameType::Exec, exec_payload);
    stdin_open_ = stdin_fd_ >= 0;
    if (!stdin_open_) {
        send(FrameType::StdinEof);
    }
    const std::int64_t start_deadline = protocol::monotonic_ms() + kStartTimeoutMs;
    for (;;) {
        try {
            while (auto frame = reader_.next()) {
                if (auto status = handle(*frame)) {
                    return *status;
                }
            }
        } catch (const protocol::ProtocolError &e) {
            throw Error(lost_connection(std::string("protocol error: ") + e.what()));
        }
        std::vector<pollfd> pfds(3);
        pfds[0] = {sock_.get(), static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
        const bool room = out_.size() < kMaxPendingToAgent;
        const bool read_stdin_now = started_ && stdin_open_ && room;
        pfds[1] = {read_stdin_now ? stdin_fd_ : -1, POLLIN, 0};
        pfds[2] = {signals_ ? signals_->fd() : -1, POLLIN, 0};
        hostcalls_.add_pollfds(pfds, room);
        int timeout = hostcalls_.poll_timeout_ms();
        if (!started_) {
            std::int64_t left = start_deadline - protocol::monotonic_ms();
            if (left <= 0) {
                throw Error("the VM's agent did not start the command within " +
                            std::to_string(kStartTimeoutMs / 1000) + " s (" + path_ + ")");
            }
            timeout =
                timeout < 0 ? static_cast<int>(left) : std::min(timeout, static_cast<int>(left));
        }
        if (::poll(pfds.data(), pfds.size(), timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw Error("poll: " + errno_text(errno));
        }
        if (pfds[2].revents) {
            forward_signals();
        }
        if (pfds[1].revents) {
            read_stdin();
        }
        if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (reader_.fill_from(sock_.get()) == FrameReader::Fill::Closed) {
                int err = reader_.last_read_errno();
                throw Error(lost_connection(err ? "reading " + path_ + ": " + errno_text(err)
                                                : "the channel " + path_ + " was closed"));
            }
        }
        hostcalls_.process(pfds, 3, out_);
        flush();
    }
}

}  // namespace

SignalForwarder::SignalForwarder() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
        throw Error("signal forwarding: pipe: " + errno_text(errno));
    }
    int expected = -1;
    if (!g_signal_write_fd.compare_exchange_strong(expected, fds[1])) {
        ::close(fds[0]);
        ::close(fds[1]);
        throw Error("signal forwarding: another SignalForwarder is active in this process");
    }
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    struct sigaction action {};
    action.sa_handler = on_forwarded_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (int signo : caught_signals()) {
        ::sigaction(signo, &action, &g_previous_actions[signo]);
    }
}

SignalForwarder::~SignalForwarder() {
    for (int signo : caught_signals()) {
        ::sigaction(signo, &g_previous_actions[signo], nullptr);
    }
    g_signal_write_fd.store(-1);
    ::close(read_fd_);
    ::close(write_fd_);
}

int SignalForwarder::take() {
    unsigned char byte;
    ssize_t n;
    while ((n = ::read(read_fd_, &byte, 1)) < 0 && errno == EINTR) {
    }
    return n == 1 ? byte : 0;
}

const std::vector<int> &SignalForwarder::caught_signals() {
    static const std::vector<int> signals = {SIGTERM, SIGINT,  SIGHUP,  SIGUSR1,
                                             SIGUSR2, SIGTSTP, SIGCONT, SIGQUIT};
    return signals;
}

void ping_agent(const std::string &socket_path, int timeout_ms) {
    Frame reply = request_reply(socket_path, FrameType::Ping, "", timeout_ms);
    if (reply.type != FrameType::Pong) {
        throw Error("the VM's agent on " + socket_path + " answered PING with " +
                    protocol::frame_type_name(reply.type));
    }
    AgentInfo info = protocol::decode_pong(reply.payload);
    if (info.version != protocol::kProtocolVersion) {
        throw Error("the VM's agent on " + socket_path + " speaks protocol version " +
                    std::to_string(info.version) + ", this host speaks version " +
                    std::to_string(protocol::kProtocolVersion));
    }
}

void setup_guest(const std::string &socket_path, const SetupRequest &request, int timeout_ms) {
    Frame reply =
        request_reply(socket_path, FrameType::Setup, protocol::encode_setup(request), timeout_ms);
    if (reply.type == FrameType::Error) {
        throw Error("guest setup of " + request.hostname +
                    " failed: " + protocol::decode_error(reply.payload).message);
    }
    if (reply.type != FrameType::Ok) {
        throw Error("the VM's agent on " + socket_path + " answered SETUP with " +
                    protocol::frame_type_name(reply.type));
    }
}

int run_in_guest(const std::string &channel_dir, unsigned ports, const ExecRequest &request,
                 int stdin_fd, int stdout_fd, int stderr_fd, SignalForwarder *signals,
                 const HostCallPolicy &hostcalls) {
    const std::string payload = protocol::encode_exec(request);
    if (payload.size() > protocol::kMaxPayload) {
        throw Error("the command's arguments and environment take " +
                    std::to_string(payload.size()) +
                    " bytes as an EXEC request; the exec channel "
                    "carries at most " +
                    std::to_string(protocol::kMaxPayload));
    }
    PortLock port = acquire_port(channel_dir, ports, signals);
    if (port.signal != 0) {
        return port.signal;  // as if killed by it: WIFSIGNALED, WTERMSIG == signal
    }
    const std::string path = channel_dir + "/exec." + std::to_string(port.index) + ".sock";
    ClientSession session(connect_socket(path), path, stdin_fd, stdout_fd, stderr_fd, signals,
                          hostcalls);
    return session.run(payload);
}

}  // namespace svm
