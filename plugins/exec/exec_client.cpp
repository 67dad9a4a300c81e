#include "exec/exec_client.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <sys/ioctl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "exec/host_calls.h"
#include "util/text.h"
#include "util/fd.h"
#include "exec/protocol/frame.h"

namespace svm {

using protocol::Frame;
using protocol::FrameReader;
using protocol::FrameType;

namespace {

constexpr int kPortWaitMs = 60000;
constexpr int kPortRetryMs = 100;
// From EXEC to STARTED: the agent forks and execs; a VM this slow is broken.
constexpr int kStartTimeoutMs = 60000;
// Connecting to a port whose lock this client holds: QEMU takes the connection at once unless
// its user stopped it, and then the task must not hang for ever either.
constexpr int kConnectTimeoutMs = 30000;
// Between two connects to a listener whose backlog is full.
constexpr int kConnectRetryMaxMs = 50;
constexpr std::size_t kChunk = 65536;
// Stdin and host-call output read ahead of the socket: above this, stop reading them.
constexpr std::size_t kMaxPendingToAgent = 256 * 1024;
// Everything waiting to go to the agent, including the answers to its own frames (a refused
// host call answers at once): above this, the socket is not read, so an agent that sends
// without reading cannot grow this process. Well above kMaxPendingToAgent plus a chunk each of
// stdin and host-call output, so that read ahead alone never stops the socket (the guest may
// need its output read to take more input: a deadlock).
constexpr std::size_t kMaxQueuedToAgent = 1024 * 1024;
// The command's output that stdout/stderr have not taken yet: above this, no more frames are
// taken (and the socket is not read) until the reader catches up.
constexpr std::size_t kMaxPendingOutput = 256 * 1024;
// Guest text in one message.
constexpr std::size_t kMaxGuestText = 512;

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

// srun --pty: the task's terminal in raw mode for the session, and SIGWINCH caught (into the
// forwarder's pipe), both as they were again on destruction.
class RawTerminal {
  public:
    explicit RawTerminal(int fd) : fd_(fd) {
        if (::tcgetattr(fd_, &saved_) != 0) {
            throw Error("the task's terminal: tcgetattr: " + errno_text(errno));
        }
        termios raw = saved_;
        ::cfmakeraw(&raw);
        if (::tcsetattr(fd_, TCSANOW, &raw) != 0) {
            throw Error("the task's terminal: tcsetattr: " + errno_text(errno));
        }
        struct sigaction action {};
        action.sa_handler = on_forwarded_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;
        ::sigaction(SIGWINCH, &action, &saved_winch_);
    }
    ~RawTerminal() {
        ::sigaction(SIGWINCH, &saved_winch_, nullptr);
        ::tcsetattr(fd_, TCSADRAIN, &saved_);
    }
    RawTerminal(const RawTerminal &) = delete;
    RawTerminal &operator=(const RawTerminal &) = delete;

  private:
    int fd_;
    termios saved_{};
    struct sigaction saved_winch_ {};
};

std::string lost_connection(const std::string &reason) {
    // Seen by the user when QEMU dies under a running task: say what it means for them.
    return "the VM stopped or its agent went away while the command ran: lost the connection to "
           "the VM's agent (" +
           reason + ")";
}

int ms_left(std::int64_t deadline) {
    return static_cast<int>(std::max<std::int64_t>(0, deadline - monotonic_ms()));
}

// One request, one reply, both within the deadline: PING, SETUP and POWEROFF.
Frame request_reply(int sock, const std::string &channel, FrameType type,
                    const std::string &payload, int timeout_ms, std::int64_t deadline) {
    const std::string what = std::string(protocol::frame_type_name(type));
    const std::uint32_t session = random_session_id();
    const auto timed_out = [&] {
        return Error("the VM's agent did not answer " + what + " on " + channel + " within " +
                     std::to_string(timeout_ms) + " ms");
    };
    auto written = write_all(sock, protocol::encode_frame(type, session, payload),
                             ms_left(deadline), "exec channel " + channel);
    if (written == WriteResult::TimedOut) {
        throw timed_out();
    }
    if (written == WriteResult::PeerGone) {
        throw Error(lost_connection("the channel " + channel + " was closed"));
    }
    FrameReader reader;
    reader.expect_session(session);
    for (;;) {
        try {
            if (auto frame = reader.next()) {
                return std::move(*frame);
            }
        } catch (const protocol::ProtocolError &e) {
            throw Error(
                lost_connection("protocol error on " + channel + ": " + guest_text(e.what())));
        }
        const int left = ms_left(deadline);
        if (left <= 0) {
            throw timed_out();
        }
        pollfd pfd{sock, POLLIN, 0};
        int r = ::poll(&pfd, 1, left);
        if (r < 0 && errno != EINTR) {
            throw Error("poll on exec channel " + channel + ": " + errno_text(errno));
        }
        if (r > 0 && reader.fill_from(sock) == FrameReader::Fill::Closed) {
            throw Error(lost_connection("the channel " + channel + " was closed"));
        }
    }
}

void ping_within(int sock, const std::string &channel, int timeout_ms, std::int64_t deadline) {
    Frame reply = request_reply(sock, channel, FrameType::Ping, "", timeout_ms, deadline);
    if (reply.type != FrameType::Pong) {
        throw Error("the VM's agent on " + channel + " answered PING with " +
                    protocol::frame_type_name(reply.type));
    }
    AgentInfo info;
    try {
        info = protocol::decode_pong(reply.payload);
    } catch (const protocol::ProtocolError &e) {
        throw Error("the VM's agent on " + channel + ": " + guest_text(e.what()));
    }
    if (info.version != protocol::kProtocolVersion) {
        throw Error("the VM's agent on " + channel + " speaks protocol version " +
                    std::to_string(info.version) + ", this host speaks version " +
                    std::to_string(protocol::kProtocolVersion));
    }
}

// The agent's reason in an ERROR reply, printable.
std::string error_reason(const Frame &reply) {
    try {
        return guest_text(protocol::decode_error(reply.payload).message);
    } catch (const protocol::ProtocolError &e) {
        return guest_text(e.what());
    }
}

void setup_within(int sock, const std::string &channel, const SetupRequest &request, int timeout_ms,
                  std::int64_t deadline) {
    Frame reply = request_reply(sock, channel, FrameType::Setup, protocol::encode_setup(request),
                                timeout_ms, deadline);
    if (reply.type == FrameType::Error) {
        throw Error("guest setup of " + request.hostname + " failed: " + error_reason(reply));
    }
    if (reply.type != FrameType::Ok) {
        throw Error("the VM's agent on " + channel + " answered SETUP with " +
                    protocol::frame_type_name(reply.type));
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
    const std::int64_t deadline = monotonic_ms() + kPortWaitMs;
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
        if (monotonic_ms() >= deadline) {
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

// The remote command's stdout and stderr on their way to the caller's descriptors. Nothing here
// waits for a reader, so that signals are still forwarded while one is slow; the session takes
// no more frames while size() is above kMaxPendingOutput. Bytes leave in the order they came,
// as stdout and stderr may be one pipe.
class OutputQueue {
  public:
    OutputQueue(int stdout_fd, int stderr_fd)
        : sinks_{make_sink(stdout_fd, "stdout"), make_sink(stderr_fd, "stderr")} {}

    // Output of a descriptor below 0 is dropped.
    void push(bool is_stdout, std::string data);
    std::size_t size() const { return size_; }
    // The descriptor to poll for POLLOUT; -1 when nothing waits.
    int waiting_fd() const { return chunks_.empty() ? -1 : sinks_[chunks_.front().sink].fd; }
    // Writes what the descriptors take now. Throws Error when a reader went away.
    void write_ready();
    // Writes everything, waiting for the readers (the command has ended).
    void drain();

  private:
    enum class Mode {
        Plain,    // a file, or already non-blocking: write() never waits for a reader
        Socket,   // send(MSG_DONTWAIT)
        PipeBuf,  // a pipe or terminal that may be shared, so its flags stay as they are:
                  // after POLLOUT, PIPE_BUF bytes go without waiting (on a terminal, a write
                  // may still wait briefly for it to drain)
    };
    struct Sink {
        int fd;
        Mode mode;
        const char *name;
    };
    struct Chunk {
        std::size_t sink;
        std::string data;
        std::size_t offset = 0;
    };

    static Sink make_sink(int fd, const char *name);
    // Bytes written; 0 when the descriptor takes nothing now.
    static std::size_t write_some(const Sink &sink, std::string_view data);

    Sink sinks_[2];
    std::deque<Chunk> chunks_;
    std::size_t size_ = 0;
};

OutputQueue::Sink OutputQueue::make_sink(int fd, const char *name) {
    if (fd < 0) {
        return {-1, Mode::Plain, name};
    }
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
        return {fd, Mode::Socket, name};
    }
    const int flags = ::fcntl(fd, F_GETFL);
    if (::fstat(fd, &st) != 0 || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) ||
        (flags >= 0 && (flags & O_NONBLOCK))) {
        return {fd, Mode::Plain, name};
    }
    return {fd, Mode::PipeBuf, name};
}

std::size_t OutputQueue::write_some(const Sink &sink, std::string_view data) {
    const auto gone = [&] {
        return Error(std::string("writing the command's ") + sink.name + ": the reader went away");
    };
    for (;;) {
        ssize_t n = 0;
        if (sink.mode == Mode::Socket) {
            n = ::send(sink.fd, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
        } else if (sink.mode == Mode::Plain) {
            n = ::write(sink.fd, data.data(), data.size());
        } else {
            pollfd pfd{sink.fd, POLLOUT, 0};
            const int r = ::poll(&pfd, 1, 0);
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r == 0) {
                return 0;
            }
            if (r > 0 && !(pfd.revents & POLLOUT)) {
                throw gone();  // POLLERR: no reader any more
            }
            n = ::write(sink.fd, data.data(), std::min<std::size_t>(data.size(), PIPE_BUF));
        }
        if (n >= 0) {
            return static_cast<std::size_t>(n);
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        if (errno == EPIPE || errno == ECONNRESET || errno == EIO) {
            throw gone();
        }
        throw Error(std::string("writing the command's ") + sink.name + ": " + errno_text(errno));
    }
}

void OutputQueue::push(bool is_stdout, std::string data) {
    const std::size_t sink = is_stdout ? 0 : 1;
    if (sinks_[sink].fd < 0 || data.empty()) {
        return;
    }
    size_ += data.size();
    chunks_.push_back({sink, std::move(data)});
}

void OutputQueue::write_ready() {
    while (!chunks_.empty()) {
        Chunk &chunk = chunks_.front();
        const std::size_t n =
            write_some(sinks_[chunk.sink], std::string_view(chunk.data).substr(chunk.offset));
        if (n == 0) {
            return;
        }
        chunk.offset += n;
        size_ -= n;
        if (chunk.offset == chunk.data.size()) {
            chunks_.pop_front();
        }
    }
}

void OutputQueue::drain() {
    for (;;) {
        write_ready();
        if (chunks_.empty()) {
            return;
        }
        pollfd pfd{waiting_fd(), POLLOUT, 0};
        if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) {
            throw Error("poll: " + errno_text(errno));
        }
    }
}

// One EXEC session from the host's side.
class ClientSession {
  public:
    ClientSession(UniqueFd sock, std::string socket_path, int stdin_fd, int stdout_fd,
                  int stderr_fd, SignalForwarder *signals, const HostCallPolicy &hostcalls,
                  bool pty)
        : pty_(pty),
          sock_(std::move(sock)),
          path_(std::move(socket_path)),
          stdin_fd_(stdin_fd),
          output_(stdout_fd, stderr_fd),
          signals_(signals),
          session_(random_session_id()),
          hostcalls_(hostcalls, session_) {
        reader_.expect_session(session_);
    }

    int run(const std::string &exec_payload);

  private:
    void send(FrameType type, std::string_view payload = {}) {
        protocol::append_frame(out_, type, session_, payload);
    }
    // False while the output or what waits for the agent is over its limit: the frames already
    // read stay in the reader and the socket is not read.
    bool taking_frames() const {
        return output_.size() < kMaxPendingOutput && out_.size() < kMaxQueuedToAgent;
    }
    void flush();
    void read_stdin();
    void forward_signals();
    std::optional<int> handle(Frame &frame);

    bool pty_;  // a terminal session: SIGWINCH becomes WINCH
    UniqueFd sock_;
    std::string path_;
    int stdin_fd_;
    OutputQueue output_;
    SignalForwarder *signals_;
    std::uint32_t session_;
    // Declared after session_ (it stamps frames with it); stops its commands on destruction.
    HostCallRunner hostcalls_;
    FrameReader reader_;
    std::string out_;  // frames waiting to go to the agent
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
        if (signo == SIGWINCH) {
            if (pty_) {
                send(FrameType::Winch, protocol::encode_winch(terminal_size(stdin_fd_)));
            }
            continue;
        }
        send(FrameType::Signal, protocol::encode_signal(signo));
    }
}

std::optional<int> ClientSession::handle(Frame &frame) {
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
            throw Error("the VM's agent reported: " + guest_text(error.message));
        }
        case FrameType::Stdout:
        case FrameType::Stderr:
            output_.push(frame.type == FrameType::Stdout, std::move(frame.payload));
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
    const std::int64_t start_deadline = monotonic_ms() + kStartTimeoutMs;
    for (;;) {
        try {
            while (taking_frames()) {
                auto frame = reader_.next();
                if (!frame) {
                    break;
                }
                if (auto status = handle(*frame)) {
                    // Host calls still running are stopped by hostcalls_'s destructor.
                    output_.drain();
                    return *status;
                }
            }
        } catch (const protocol::ProtocolError &e) {
            throw Error(lost_connection("protocol error: " + guest_text(e.what())));
        }
        // The socket is read only while frames are taken, and written while anything waits:
        // with neither, it is left out of poll() (POLLHUP alone would wake it in a loop).
        const short sock_events =
            static_cast<short>((taking_frames() ? POLLIN : 0) | (out_.empty() ? 0 : POLLOUT));
        const bool room = out_.size() < kMaxPendingToAgent;
        const bool read_stdin_now = started_ && stdin_open_ && room;
        std::vector<pollfd> pfds(4);
        pfds[0] = {sock_events != 0 ? sock_.get() : -1, sock_events, 0};
        pfds[1] = {read_stdin_now ? stdin_fd_ : -1, POLLIN, 0};
        pfds[2] = {signals_ ? signals_->fd() : -1, POLLIN, 0};
        pfds[3] = {output_.waiting_fd(), POLLOUT, 0};
        hostcalls_.add_pollfds(pfds, room);
        int timeout = hostcalls_.poll_timeout_ms();
        if (!started_) {
            std::int64_t left = start_deadline - monotonic_ms();
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
        if (pfds[3].revents) {
            output_.write_ready();
        }
        if ((sock_events & POLLIN) && (pfds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (reader_.fill_from(sock_.get()) == FrameReader::Fill::Closed) {
                int err = reader_.last_read_errno();
                throw Error(lost_connection(err ? "reading " + path_ + ": " + errno_text(err)
                                                : "the channel " + path_ + " was closed"));
            }
        }
        hostcalls_.process(pfds, 4, out_, kMaxPendingToAgent);
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
    // The one list of the protocol, less what no process can catch.
    static const std::vector<int> signals = [] {
        std::vector<int> out;
        for (int s : protocol::forwardable_signals()) {
            if (s != SIGKILL && s != SIGSTOP) {
                out.push_back(s);
            }
        }
        return out;
    }();
    return signals;
}

WindowSize terminal_size(int fd) {
    winsize ws{};
    if (::ioctl(fd, TIOCGWINSZ, &ws) != 0) {
        return {};
    }
    return {ws.ws_row, ws.ws_col};
}

std::string guest_text(std::string_view text) {
    if (text.size() <= kMaxGuestText) {
        return printable(text);
    }
    return printable(text.substr(0, kMaxGuestText)) + "...";
}

UniqueFd connect_unix_with_deadline(const std::string &path, int timeout_ms) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        throw Error("exec channel " + path + ": socket path too long");
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    const std::int64_t deadline = monotonic_ms() + std::max(0, timeout_ms);
    const auto failed = [&](int err) {
        return Error("cannot connect to the VM's exec channel " + path + ": " + errno_text(err));
    };
    const auto timed_out = [&] {
        return Error("cannot connect to the VM's exec channel " + path + " within " +
                     std::to_string(timeout_ms) + " ms (nothing takes the connection)");
    };
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        throw Error("exec channel " + path + ": socket: " + errno_text(errno));
    }
    int retry_ms = 1;
    for (;;) {
        if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) == 0) {
            return fd;
        }
        const int err = errno;
        if (err == EAGAIN) {
            // A unix listener whose backlog is full (QEMU stopped, or flooded by the socket's
            // owner) refuses a non-blocking connect at once instead of queueing it: try again
            // until the deadline.
            const int left = ms_left(deadline);
            if (left <= 0) {
                throw timed_out();
            }
            ::poll(nullptr, 0, std::min(retry_ms, left));
            retry_ms = std::min(retry_ms * 2, kConnectRetryMaxMs);
            continue;
        }
        if (err != EINPROGRESS && err != EALREADY && err != EINTR) {
            throw failed(err);
        }
        // In progress (other socket families behave so): writable once it completes.
        pollfd pfd{fd.get(), POLLOUT, 0};
        const int r = ::poll(&pfd, 1, ms_left(deadline));
        if (r < 0 && errno != EINTR) {
            throw Error("poll on exec channel " + path + ": " + errno_text(errno));
        }
        if (r == 0) {
            throw timed_out();
        }
        if (r > 0) {
            int so_error = 0;
            socklen_t len = sizeof so_error;
            if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) {
                throw failed(errno);
            }
            if (so_error == 0) {
                return fd;
            }
            throw failed(so_error);
        }
    }
}

void ping_agent(const std::string &socket_path, int timeout_ms) {
    const std::int64_t deadline = monotonic_ms() + timeout_ms;
    UniqueFd sock = connect_unix_with_deadline(socket_path, timeout_ms);
    ping_within(sock.get(), socket_path, timeout_ms, deadline);
}

void ping_agent(int socket, const std::string &channel, int timeout_ms) {
    ping_within(socket, channel, timeout_ms, monotonic_ms() + timeout_ms);
}

void setup_guest(const std::string &socket_path, const SetupRequest &request, int timeout_ms) {
    const std::int64_t deadline = monotonic_ms() + timeout_ms;
    UniqueFd sock = connect_unix_with_deadline(socket_path, timeout_ms);
    setup_within(sock.get(), socket_path, request, timeout_ms, deadline);
}

void request_poweroff(int socket, const std::string &channel, int timeout_ms) {
    Frame reply = request_reply(socket, channel, FrameType::Poweroff, "{}", timeout_ms,
                                monotonic_ms() + timeout_ms);
    if (reply.type == FrameType::Error) {
        throw Error("the VM's agent on " + channel + " refused POWEROFF: " + error_reason(reply));
    }
    if (reply.type != FrameType::Ok) {
        throw Error("the VM's agent on " + channel + " answered POWEROFF with " +
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
    const bool pty = request.pty && stdin_fd >= 0 && ::isatty(stdin_fd);
    ClientSession session(connect_unix_with_deadline(path, kConnectTimeoutMs), path, stdin_fd,
                          stdout_fd, stderr_fd, signals, hostcalls, pty);
    std::optional<RawTerminal> raw;
    if (pty) {
        raw.emplace(stdin_fd);
    }
    return session.run(payload);
}

}  // namespace svm
