// The exec client against peers that misbehave: a listener that takes no connection or never
// answers (QEMU runs as the job's user, who can stop it or fill its backlog), and a fake agent
// that floods the client. Every wait must end at its deadline, and the client's memory must not
// be the guest's to grow.
#include "exec/exec_client.h"
#include "util/fd.h"
#include "exec/protocol/frame.h"
#include "exec/protocol/messages.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace svm {
namespace {

namespace fs = std::filesystem;
using protocol::Frame;
using protocol::FrameReader;
using protocol::FrameType;

// What "returns at its deadline" allows on top of the deadline: generous, for loaded machines
// and sanitizers; a wait without a deadline never comes back at all.
constexpr int kSlackMs = 2000;
// A flood the client keeps reading past this has no bound.
constexpr std::size_t kFloodLimit = 64u << 20;
// What a bounded client may have taken in by the time it pushes back: its buffers plus the
// kernel's socket buffers, a few hundred KiB each.
constexpr std::size_t kBoundedIntake = 8u << 20;

class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/svm-exec-channel.XXXXXX";
        EXPECT_NE(::mkdtemp(tmpl), nullptr);
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    const std::string &path() const { return path_; }

  private:
    std::string path_;
};

sockaddr_un address(const std::string &path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

UniqueFd listen_at(const std::string &path, int backlog) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un addr = address(path);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr *>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd.get(), backlog), 0);
    return fd;
}

// Connections that fill the listener's backlog (nobody accepts them).
std::vector<UniqueFd> fill_backlog(const std::string &path) {
    std::vector<UniqueFd> queued;
    const sockaddr_un addr = address(path);
    for (int i = 0; i < 1000; ++i) {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (::connect(fd.get(), reinterpret_cast<const sockaddr *>(&addr), sizeof addr) != 0) {
            EXPECT_EQ(errno, EAGAIN) << std::strerror(errno);
            return queued;
        }
        queued.push_back(std::move(fd));
    }
    ADD_FAILURE() << "the backlog never filled";
    return queued;
}

struct Outcome {
    bool returned = false;  // false: still waiting at the limit, and killed
    std::int64_t elapsed_ms = 0;
    std::string error;  // what it threw
};

// Runs fn in a child process and kills it at limit_ms, so that a wait without a deadline fails
// the test instead of hanging it.
Outcome run_bounded(const std::function<void()> &fn, int limit_ms) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    const std::int64_t start = monotonic_ms();
    const pid_t pid = ::fork();
    if (pid == 0) {
        std::string message = "(it returned without an error)";
        try {
            fn();
        } catch (const std::exception &e) {
            message = e.what();
        }
        ssize_t ignored = ::write(write_end.get(), message.data(), message.size());
        (void)ignored;
        ::_exit(0);
    }
    write_end.reset();
    Outcome outcome;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (monotonic_ms() - start > limit_ms) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            outcome.elapsed_ms = monotonic_ms() - start;
            return outcome;
        }
        ::usleep(10 * 1000);
    }
    outcome.returned = true;
    outcome.elapsed_ms = monotonic_ms() - start;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(read_end.get(), buf, sizeof buf)) > 0) {
        outcome.error.append(buf, static_cast<std::size_t>(n));
    }
    return outcome;
}

bool contains(const std::string &text, const std::string &part) {
    return text.find(part) != std::string::npos;
}

TEST(ExecChannelDeadline, PingGivesUpAtDeadlineWhenTheBacklogIsFull) {
    TempDir dir;
    const std::string path = dir.path() + "/exec.0.sock";
    UniqueFd listener = listen_at(path, 0);
    std::vector<UniqueFd> queued = fill_backlog(path);
    const int timeout_ms = 300;
    Outcome outcome = run_bounded([&] { ping_agent(path, timeout_ms); }, timeout_ms + kSlackMs);
    ASSERT_TRUE(outcome.returned) << "ping still waited after " << outcome.elapsed_ms << " ms";
    EXPECT_GE(outcome.elapsed_ms, timeout_ms - 50);
    EXPECT_EQ(outcome.error, "cannot connect to the VM's exec channel " + path + " within " +
                                 std::to_string(timeout_ms) + " ms (nothing takes the connection)");
}

TEST(ExecChannelDeadline, PingGivesUpAtDeadlineWhenTheAgentsProcessIsStopped) {
    // As a user can SIGSTOP their own QEMU: the kernel queues the first connections, the
    // following ones find the backlog full. A prolog pings again and again; each must end.
    TempDir dir;
    const std::string path = dir.path() + "/exec.0.sock";
    const pid_t qemu = ::fork();
    ASSERT_GE(qemu, 0);
    if (qemu == 0) {
        UniqueFd listener = listen_at(path, 1);
        ::raise(SIGSTOP);
        ::pause();
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(qemu, &status, WUNTRACED), qemu);
    ASSERT_TRUE(WIFSTOPPED(status));
    const int timeout_ms = 200, pings = 6;
    std::vector<std::string> errors;
    Outcome outcome = run_bounded(
        [&] {
            std::string all;
            for (int i = 0; i < pings; ++i) {
                try {
                    ping_agent(path, timeout_ms);
                    all += "answered\n";
                } catch (const Error &e) {
                    all += std::string(e.what()) + "\n";
                }
            }
            throw Error(all);
        },
        pings * timeout_ms + kSlackMs);
    ::kill(qemu, SIGKILL);
    ::waitpid(qemu, &status, 0);
    ASSERT_TRUE(outcome.returned) << "a ping still waited after " << outcome.elapsed_ms << " ms";
    std::istringstream lines(outcome.error);
    std::string line;
    int timed_out = 0;
    while (std::getline(lines, line)) {
        EXPECT_TRUE(contains(line, "within " + std::to_string(timeout_ms) + " ms")) << line;
        ++timed_out;
    }
    EXPECT_EQ(timed_out, pings);
}

TEST(ExecChannelDeadline, SetupGivesUpAtDeadlineWhenThePeerStopsReading) {
    TempDir dir;
    const std::string path = dir.path() + "/exec.0.sock";
    UniqueFd listener = listen_at(path, 4);
    // More than the socket's buffer takes, so that the request itself cannot be sent.
    SetupRequest setup{"node1-vm1", {}};
    for (int i = 0; i < 200; ++i) {
        setup.mounts.push_back({"tag" + std::to_string(i), "/" + std::string(4000, 'a'), false});
    }
    const int timeout_ms = 300;
    Outcome outcome =
        run_bounded([&] { setup_guest(path, setup, timeout_ms); }, timeout_ms + kSlackMs);
    ASSERT_TRUE(outcome.returned) << "setup still waited after " << outcome.elapsed_ms << " ms";
    EXPECT_EQ(outcome.error, "the VM's agent did not answer SETUP on " + path + " within " +
                                 std::to_string(timeout_ms) + " ms");
}

TEST(ExecChannelDeadline, ConnectsThroughTheProcPathOfAValidatedSocket) {
    // How root reaches a socket in a folder the user could change: it checks an O_PATH
    // descriptor of it, then connects through /proc/self/fd.
    TempDir dir;
    const std::string path = dir.path() + "/exec.0.sock";
    UniqueFd listener = listen_at(path, 4);
    std::thread agent([&] {
        UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        FrameReader reader;
        std::optional<Frame> ping;
        while (!ping && reader.fill_from(conn.get()) == FrameReader::Fill::Data) {
            ping = reader.next();
        }
        ASSERT_TRUE(ping);
        const std::string pong =
            protocol::encode_frame(FrameType::Pong, ping->session, protocol::encode_pong());
        EXPECT_EQ(write_all(conn.get(), pong, 5000, "test"), WriteResult::Done);
    });
    UniqueFd handle(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    ASSERT_TRUE(handle);
    UniqueFd sock =
        connect_unix_with_deadline("/proc/self/fd/" + std::to_string(handle.get()), 5000);
    EXPECT_NO_THROW(ping_agent(sock.get(), path, 5000));
    agent.join();
}

TEST(ExecChannelDeadline, NamesAGuestErrorOnlyInPrintableText) {
    TempDir dir;
    const std::string path = dir.path() + "/exec.0.sock";
    UniqueFd listener = listen_at(path, 4);
    std::thread agent([&] {
        UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        FrameReader reader;
        std::optional<Frame> request;
        while (!request && reader.fill_from(conn.get()) == FrameReader::Fill::Data) {
            request = reader.next();
        }
        ASSERT_TRUE(request);
        const std::string forged = "no\nslurmd: forged line " + std::string(100000, 'x');
        const std::string reply = protocol::encode_frame(
            FrameType::Error, request->session, protocol::encode_error({forged, "setup", 0}));
        write_all(conn.get(), reply, 5000, "test");
    });
    try {
        setup_guest(path, {"node1-vm1", {}}, 5000);
        ADD_FAILURE() << "setup succeeded";
    } catch (const Error &e) {
        const std::string message = e.what();
        EXPECT_TRUE(message.starts_with("guest setup of node1-vm1 failed: no\\x0aslurmd: forged"))
            << message;
        EXPECT_EQ(message.find('\n'), std::string::npos);
        EXPECT_LT(message.size(), 1024u);
    }
    agent.join();
}

// The agent's end of a session, played by the test: it listens on the port the client will
// take, accepts the client and reads its EXEC request.
class FakeAgent {
  public:
    explicit FakeAgent(const std::string &dir) : dir_(dir) {
        std::ofstream(dir + "/exec.0.lock").put('\n');
        listener_ = listen_at(dir + "/exec.0.sock", 4);
    }

    // Returns false if the client did not come.
    bool accept_session() {
        pollfd pfd{listener_.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 10000) != 1) {
            return false;
        }
        conn_.reset(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        for (int i = 0; i < 200; ++i) {
            if (auto frame = next_frame(50)) {
                if (frame->type == FrameType::Exec) {
                    session_ = frame->session;
                    reader_.expect_session(session_);
                    return send_now(FrameType::Started, protocol::encode_started(4242));
                }
            }
        }
        return false;
    }

    std::string frame(FrameType type, std::string_view payload) const {
        return protocol::encode_frame(type, session_, payload);
    }

    bool send_now(FrameType type, std::string_view payload = {}) {
        return write_all(conn_.get(), frame(type, payload), 10000, "test") == WriteResult::Done;
    }

    // Sends `one` again and again, without reading, until the client stops taking bytes for a
    // second or kFloodLimit went. Returns the bytes the client took; the rest of a frame sent
    // in part is kept in unsent_.
    std::size_t flood(const std::string &one) {
        std::size_t taken = 0;
        std::string_view left = one;
        while (taken < kFloodLimit) {
            const ssize_t n = ::send(conn_.get(), left.data(), left.size(), MSG_NOSIGNAL);
            if (n > 0) {
                taken += static_cast<std::size_t>(n);
                left.remove_prefix(static_cast<std::size_t>(n));
                if (left.empty()) {
                    left = one;
                }
                continue;
            }
            if (n < 0 && errno != EAGAIN) {
                ADD_FAILURE() << "send: " << std::strerror(errno);
                break;
            }
            pollfd pfd{conn_.get(), POLLOUT, 0};
            if (::poll(&pfd, 1, 1000) == 0) {
                break;  // the client pushes back
            }
        }
        if (left.size() != one.size()) {
            unsent_ = std::string(left);
        }
        return taken;
    }

    // Finishes a frame the flood sent in part, then sends EXIT.
    bool end_session() {
        std::string rest = unsent_ + frame(FrameType::Exit, protocol::encode_exit({}));
        unsent_.clear();
        return write_all(conn_.get(), rest, 20000, "test") == WriteResult::Done;
    }

    // The next frame of the session from the client within timeout_ms.
    std::optional<Frame> next_frame(int timeout_ms) {
        const std::int64_t deadline = monotonic_ms() + timeout_ms;
        for (;;) {
            if (auto frame = reader_.next()) {
                return frame;
            }
            const std::int64_t left = deadline - monotonic_ms();
            if (left <= 0) {
                return std::nullopt;
            }
            pollfd pfd{conn_.get(), POLLIN, 0};
            if (::poll(&pfd, 1, static_cast<int>(left)) > 0 &&
                reader_.fill_from(conn_.get()) == FrameReader::Fill::Closed) {
                return std::nullopt;
            }
        }
    }

    // Every byte the client sends, until it closes the connection.
    std::size_t read_to_end() {
        std::size_t total = 0;
        char buf[65536];
        for (;;) {
            pollfd pfd{conn_.get(), POLLIN, 0};
            if (::poll(&pfd, 1, 20000) != 1) {
                ADD_FAILURE() << "the client never closed the connection";
                return total;
            }
            const ssize_t n = ::read(conn_.get(), buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                return total;
            }
            if (n > 0) {
                total += static_cast<std::size_t>(n);
                reader_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
            }
        }
    }

    FrameReader &reader() { return reader_; }

  private:
    std::string dir_;
    UniqueFd listener_, conn_;
    std::uint32_t session_ = 0;
    FrameReader reader_;
    std::string unsent_;
};

ExecRequest true_request() {
    return {{"true"}, {}, "/", ::getuid(), ::getgid(), {}, ""};
}

// Reads a pipe to its end in a thread, once started.
class Drain {
  public:
    explicit Drain(int fd)
        : thread_([fd] {
              char buf[65536];
              while (::read(fd, buf, sizeof buf) > 0) {
              }
          }) {}
    ~Drain() { thread_.join(); }

  private:
    std::thread thread_;
};

TEST(ExecChannelBounds, ForwardsSignalsAndStopsReadingWhileStdoutIsNotRead) {
    TempDir dir;
    FakeAgent agent(dir.path());
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    UniqueFd out_r(fds[0]), out_w(fds[1]);
    SignalForwarder signals;
    int status = -1;
    std::string failure;
    std::thread client([&] {
        try {
            status = run_in_guest(dir.path(), 1, true_request(), -1, out_w.get(), -1, &signals);
        } catch (const std::exception &e) {
            failure = e.what();
        }
    });
    ASSERT_TRUE(agent.accept_session());

    // Nobody reads the client's stdout: it must push back instead of buffering the flood.
    const std::size_t taken = agent.flood(agent.frame(FrameType::Stdout, std::string(65536, 'x')));
    EXPECT_LT(taken, kBoundedIntake) << "the client kept reading while its stdout was full";

    // Stuck output must not stop it from forwarding a signal (scancel's SIGTERM).
    ::kill(::getpid(), SIGTERM);
    std::optional<int> forwarded;
    for (int i = 0; i < 100 && !forwarded; ++i) {
        auto frame = agent.next_frame(100);
        if (frame && frame->type == FrameType::Signal) {
            forwarded = protocol::decode_signal(frame->payload);
        }
    }
    EXPECT_EQ(forwarded, SIGTERM);

    {
        Drain drain(out_r.get());
        EXPECT_TRUE(agent.end_session());
        client.join();
        out_w.reset();
    }
    EXPECT_EQ(failure, "");
    EXPECT_EQ(status, 0);
}

TEST(ExecChannelBounds, StopsReadingAnAgentThatDoesNotReadItsRefusals) {
    TempDir dir;
    FakeAgent agent(dir.path());
    int status = -1;
    std::string failure;
    std::thread client([&] {
        try {
            status = run_in_guest(dir.path(), 1, true_request(), -1, -1, -1);
        } catch (const std::exception &e) {
            failure = e.what();
        }
    });
    ASSERT_TRUE(agent.accept_session());
    // Each call is refused at once (not an allowed command): the answers pile up on the
    // client's side while the agent reads nothing.
    const std::string call =
        agent.frame(FrameType::HostCall, protocol::encode_hostcall({1, {"nosuch"}, "/", {}}));
    const std::size_t taken = agent.flood(call);
    EXPECT_LT(taken, kBoundedIntake) << "the client kept reading while the agent did not";

    std::thread reader([&] { agent.read_to_end(); });
    EXPECT_TRUE(agent.end_session());
    client.join();
    reader.join();
    EXPECT_EQ(failure, "");
    EXPECT_EQ(status, 0);
}

TEST(ExecChannelBounds, EchoesOnlyTheStartOfRefusedCommandNames) {
    TempDir dir;
    FakeAgent agent(dir.path());
    int status = -1;
    std::thread client([&] { status = run_in_guest(dir.path(), 1, true_request(), -1, -1, -1); });
    ASSERT_TRUE(agent.accept_session());
    // 64 MiB of names: an echo of each would cost the client (and the agent) as much again.
    const int calls = 64;
    const std::string name = "\n" + std::string(1 << 20, 'x');
    for (int i = 0; i < calls; ++i) {
        EXPECT_TRUE(
            agent.send_now(FrameType::HostCall,
                           protocol::encode_hostcall({std::uint32_t(i + 1), {name}, "/", {}})));
    }
    std::size_t replies = 0, refusals = 0, exits = 0;
    while (exits < static_cast<std::size_t>(calls)) {
        auto frame = agent.next_frame(10000);
        if (!frame) {
            ADD_FAILURE() << "only " << exits << " calls were answered";
            break;
        }
        replies += protocol::kHeaderSize + frame->payload.size();
        if (frame->type == FrameType::HostCallStderr) {
            const std::string text(protocol::decode_hostcall_output(frame->payload).data);
            EXPECT_TRUE(text.starts_with("slurm-vm: host call refused: \\x0axxx"))
                << text.substr(0, 100);
            EXPECT_EQ(text.find('\n'), text.size() - 1);
            ++refusals;
        }
        exits += frame->type == FrameType::HostCallExit;
    }
    EXPECT_TRUE(agent.end_session());
    client.join();
    EXPECT_EQ(status, 0);
    EXPECT_EQ(refusals, static_cast<std::size_t>(calls));
    EXPECT_LT(replies, static_cast<std::size_t>(calls) * 1024);
}

}  // namespace
}  // namespace svm
