// End to end on the host, without a VM: the real agent binary serves unix sockets (as QEMU's
// virtio-serial sockets would be), and the exec client library talks to it.
#include "exec/agent_harness.h"
#include "exec/exec_client.h"
#include "util/fd.h"
#include "exec/protocol/frame.h"
#include "exec/protocol/messages.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
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

using test::kWaitTries;
using test::wait_until;

void sleep_ms(int ms) {
    ::usleep(ms * 1000);
}

UniqueFd memfd(const std::string &content = "") {
    UniqueFd fd(::memfd_create("svm-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd);
    EXPECT_EQ(::write(fd.get(), content.data(), content.size()),
              static_cast<ssize_t>(content.size()));
    ::lseek(fd.get(), 0, SEEK_SET);
    return fd;
}

std::string read_all(int fd) {
    ::lseek(fd, 0, SEEK_SET);
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

bool process_gone(pid_t pid) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
        return true;
    }
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto paren = line.rfind(')');
    return paren != std::string::npos && line.size() > paren + 2 && line[paren + 2] == 'Z';
}

// Reads a pipe in a thread, so a test can wait for some output while the command runs.
class PipeCollector {
  public:
    // start_delay_ms: a reader that starts late, like a busy slurmstepd.
    explicit PipeCollector(int start_delay_ms = 0) {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
        read_.reset(fds[0]);
        write_.reset(fds[1]);
        thread_ = std::thread([this, start_delay_ms] {
            sleep_ms(start_delay_ms);
            char buf[4096];
            ssize_t n;
            while ((n = ::read(read_.get(), buf, sizeof buf)) > 0) {
                std::lock_guard lock(mutex_);
                text_.append(buf, static_cast<std::size_t>(n));
                changed_.notify_all();
            }
        });
    }
    ~PipeCollector() { finish(); }
    int fd() const { return write_.get(); }
    bool wait_for(const std::string &needle) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, std::chrono::seconds(10),
                                 [&] { return text_.find(needle) != std::string::npos; });
    }
    std::string finish() {
        write_.reset();
        if (thread_.joinable()) {
            thread_.join();
        }
        std::lock_guard lock(mutex_);
        return text_;
    }

  private:
    UniqueFd read_, write_;
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::string text_;
};

class AgentTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-agent-test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        fs::permissions(dir_,
                        fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
        for (int i = 0; i < 2; ++i) {
            std::ofstream(lock_path(i)).put('\n');
        }
        ASSERT_NO_FATAL_FAILURE(agent_.start(dir_, {}, true));
        namespaced_ = fs::read_symlink("/proc/" + std::to_string(agent_.pid()) + "/ns/uts") !=
                      fs::read_symlink("/proc/self/ns/uts");
    }

    void TearDown() override {
        agent_.stop();
        std::error_code ignored;
        fs::remove_all(dir_, ignored);
    }

    std::string socket_path(int i) const { return dir_ + "/exec." + std::to_string(i) + ".sock"; }
    std::string lock_path(int i) const { return dir_ + "/exec." + std::to_string(i) + ".lock"; }

    ExecRequest request(std::vector<std::string> argv) const {
        ExecRequest r;
        r.argv = std::move(argv);
        r.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C"};
        r.cwd = "/";
        r.uid = ::getuid();
        r.gid = ::getgid();
        return r;
    }

    ExecRequest shell(const std::string &script) const { return request({"sh", "-c", script}); }

    // Runs a request with stdout and stderr captured; returns the wait status.
    int run(const ExecRequest &r, std::string *out = nullptr, std::string *err = nullptr,
            int stdin_fd = -1) {
        UniqueFd out_fd = memfd(), err_fd = memfd();
        int status = run_in_guest(dir_, 2, r, stdin_fd, out_fd.get(), err_fd.get());
        if (out) {
            *out = read_all(out_fd.get());
        }
        if (err) {
            *err = read_all(err_fd.get());
        }
        return status;
    }

    // A raw connection to port 0, for what the client library never does on purpose.
    UniqueFd connect_raw() {
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::string path = socket_path(0);
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
        return fd;
    }

    void send_raw(int fd, FrameType type, std::uint32_t session, const std::string &payload = "") {
        std::string frame = protocol::encode_frame(type, session, payload);
        ASSERT_EQ(::write(fd, frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
    }

    // The next frame of `session` on a raw connection (blocking, bounded by 10 s).
    std::optional<Frame> next_frame(int fd, FrameReader &reader) {
        for (int i = 0; i < kWaitTries; ++i) {
            if (auto frame = reader.next()) {
                return frame;
            }
            pollfd pfd{fd, POLLIN, 0};
            if (::poll(&pfd, 1, 50) > 0 && reader.fill_from(fd) == FrameReader::Fill::Closed) {
                return std::nullopt;
            }
        }
        return std::nullopt;
    }

    std::string dir_;
    test::AgentProcess agent_;
    bool namespaced_ = false;
};

TEST_F(AgentTest, AnswersPing) {
    EXPECT_NO_THROW(ping_agent(socket_path(1), 5000));
}

TEST_F(AgentTest, PropagatesTheExitCode) {
    int status = run(shell("exit 3"));
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 3);
}

TEST_F(AgentTest, RunsWithTheRequestedEnvironmentAndDirectory) {
    ExecRequest r = shell("echo \"$GREETING\"; pwd");
    r.env.push_back("GREETING=hello world");
    r.cwd = dir_;
    std::string out;
    EXPECT_EQ(run(r, &out), 0);
    EXPECT_EQ(out, "hello world\n" + dir_ + "\n");
}

TEST_F(AgentTest, StreamsTenMegabytesOfStdoutApartFromStderr) {
    std::string out, err;
    int status = run(shell("echo first-err >&2; seq 1 1400000; echo last-err >&2"), &out, &err);
    EXPECT_EQ(status, 0);
    std::string expected;
    for (int i = 1; i <= 1400000; ++i) {
        expected += std::to_string(i);
        expected += '\n';
    }
    ASSERT_GT(expected.size(), 10u * 1000 * 1000);
    EXPECT_EQ(out.size(), expected.size());
    EXPECT_TRUE(out == expected) << "stdout differs from seq's output";
    EXPECT_EQ(err, "first-err\nlast-err\n");
}

TEST_F(AgentTest, DeliversAllOutputToASlowReader) {
    // The command ends while its last output still waits in the agent's pipe, longer than the
    // agent's one-second drain limit for background children.
    PipeCollector out(1500);
    int status =
        run_in_guest(dir_, 2, shell("head -c 2000000 /dev/zero | tr '\\0' x"), -1, out.fd(), -1);
    std::string text = out.finish();
    EXPECT_EQ(status, 0);
    EXPECT_EQ(text.size(), 2000000u);
    EXPECT_EQ(text.find_first_not_of('x'), std::string::npos);
}

TEST_F(AgentTest, ForwardsStdin) {
    std::string input;
    for (int i = 0; i < 100000; ++i) {
        input += "line " + std::to_string(i) + "\n";
    }
    UniqueFd in = memfd(input);
    std::string out;
    EXPECT_EQ(run(request({"cat"}), &out, nullptr, in.get()), 0);
    EXPECT_EQ(out.size(), input.size());
    EXPECT_TRUE(out == input) << "cat's output differs from its input";
}

TEST_F(AgentTest, GivesTheCommandAnEmptyStdinWhenNoneIsForwarded) {
    std::string out;
    EXPECT_EQ(run(shell("cat; echo done"), &out), 0);
    EXPECT_EQ(out, "done\n");
}

TEST_F(AgentTest, ForwardsSigtermToTheRemoteProcessGroup) {
    SignalForwarder signals;
    PipeCollector out;
    std::thread sender([&] {
        if (out.wait_for("ready")) {
            ::kill(::getpid(), SIGTERM);
        }
    });
    int status = run_in_guest(dir_, 2,
                              shell("trap 'echo got-term; exit 42' TERM; echo ready; "
                                    "sleep 100 & wait"),
                              -1, out.fd(), -1, &signals);
    sender.join();
    std::string text = out.finish();
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 42);
    EXPECT_EQ(text, "ready\ngot-term\n");
}

TEST_F(AgentTest, ReportsDeathBySignal) {
    int status = run(shell("kill -KILL $$"));
    ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
    EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

TEST_F(AgentTest, RunsTwoSessionsConcurrentlyOnTwoPorts) {
    // Each waits for the other's file: they finish only if both run at the same time.
    const std::string a = dir_ + "/a", b = dir_ + "/b";
    const std::string wait_loop =
        "i=0; while [ ! -e %s ] && [ $i -lt 200 ]; do sleep 0.05; "
        "i=$((i+1)); done; [ -e %s ]";
    auto script = [&](const std::string &mine, const std::string &other) {
        std::string loop = wait_loop;
        loop.replace(loop.find("%s"), 2, other);
        loop.replace(loop.find("%s"), 2, other);
        return "touch " + mine + "; " + loop;
    };
    int status_a = -1, status_b = -1;
    std::thread ta([&] { status_a = run_in_guest(dir_, 2, shell(script(a, b)), -1, -1, -1); });
    std::thread tb([&] { status_b = run_in_guest(dir_, 2, shell(script(b, a)), -1, -1, -1); });
    ta.join();
    tb.join();
    EXPECT_EQ(status_a, 0);
    EXPECT_EQ(status_b, 0);
}

TEST_F(AgentTest, AThirdRequestWaitsForAFreePort) {
    const std::string release = dir_ + "/release", third = dir_ + "/third-ran";
    const std::string hold = "echo running; i=0; while [ ! -e " + release +
                             " ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done";
    PipeCollector out_a, out_b;
    int status_a = -1, status_b = -1, status_c = -1;
    std::thread ta([&] { status_a = run_in_guest(dir_, 2, shell(hold), -1, out_a.fd(), -1); });
    std::thread tb([&] { status_b = run_in_guest(dir_, 2, shell(hold), -1, out_b.fd(), -1); });
    ASSERT_TRUE(out_a.wait_for("running"));
    ASSERT_TRUE(out_b.wait_for("running"));
    std::thread tc([&] { status_c = run_in_guest(dir_, 2, shell("touch " + third), -1, -1, -1); });
    sleep_ms(300);
    // Both ports are held by the first two: the third cannot have run yet.
    EXPECT_FALSE(fs::exists(third));
    std::ofstream(release).put('\n');
    ta.join();
    tb.join();
    tc.join();
    EXPECT_EQ(status_a, 0);
    EXPECT_EQ(status_b, 0);
    EXPECT_EQ(status_c, 0);
    EXPECT_TRUE(fs::exists(third));
}

TEST_F(AgentTest, NamesANonexistentCommand) {
    try {
        run(request({"nosuchcmd-svm"}));
        FAIL() << "a nonexistent command started";
    } catch (const RemoteStartError &e) {
        EXPECT_STREQ(e.what(), "execve(): nosuchcmd-svm: No such file or directory");
        EXPECT_EQ(e.stage(), "execve");
        EXPECT_EQ(e.error_number(), ENOENT);
    }
}

TEST_F(AgentTest, NamesAWorkingDirectoryThatDoesNotExist) {
    ExecRequest r = shell("true");
    r.cwd = dir_ + "/missing";
    try {
        run(r);
        FAIL() << "started in a missing directory";
    } catch (const RemoteStartError &e) {
        EXPECT_EQ(std::string(e.what()),
                  "chdir(): " + dir_ + "/missing: No such file or directory");
    }
}

TEST_F(AgentTest, KillsTheRemoteProcessGroupWhenTheClientDisconnects) {
    UniqueFd sock = connect_raw();
    const std::uint32_t session = 0x5eed;
    send_raw(sock.get(), FrameType::Exec, session,
             protocol::encode_exec(shell("sleep 100 & echo $$ $!; wait")));
    send_raw(sock.get(), FrameType::StdinEof, session);
    FrameReader reader;
    reader.expect_session(session);
    std::string out;
    while (out.find('\n') == std::string::npos) {
        auto frame = next_frame(sock.get(), reader);
        ASSERT_TRUE(frame) << "no output from the command";
        if (frame->type == FrameType::Stdout) {
            out += frame->payload;
        }
    }
    pid_t shell_pid = 0, sleep_pid = 0;
    ASSERT_EQ(std::sscanf(out.c_str(), "%d %d", &shell_pid, &sleep_pid), 2) << out;
    EXPECT_FALSE(process_gone(sleep_pid));
    sock.reset();
    EXPECT_TRUE(wait_until([&] { return process_gone(shell_pid); }));
    EXPECT_TRUE(wait_until([&] { return process_gone(sleep_pid); }));
}

TEST_F(AgentTest, GivesAPtySessionATerminalOfTheRequestedSize) {
    ExecRequest r = shell("tty; stty size; test -t 0 && test -t 2 && echo all-terminals");
    r.pty = WindowSize{30, 100};
    std::string out, err;
    EXPECT_EQ(run(r, &out, &err), 0);
    // One stream, through the terminal's line discipline (\n becomes \r\n).
    EXPECT_NE(out.find("/dev/pts/"), std::string::npos) << out;
    EXPECT_NE(out.find("30 100\r\n"), std::string::npos) << out;
    EXPECT_NE(out.find("all-terminals\r\n"), std::string::npos) << out;
    EXPECT_EQ(err, "");
}

TEST_F(AgentTest, ResizesAPtyOnWinchAndTakesInputThroughIt) {
    UniqueFd sock = connect_raw();
    ExecRequest r = shell("read line; echo \"got $line\"; stty size");
    r.pty = WindowSize{24, 80};
    send_raw(sock.get(), FrameType::Exec, 9, protocol::encode_exec(r));
    FrameReader reader;
    reader.expect_session(9);
    auto started = next_frame(sock.get(), reader);
    ASSERT_TRUE(started);
    ASSERT_EQ(started->type, FrameType::Started);
    send_raw(sock.get(), FrameType::Winch, 9, protocol::encode_winch({50, 120}));
    send_raw(sock.get(), FrameType::StdinEof, 9);  // ignored: a terminal has no end of input
    send_raw(sock.get(), FrameType::Stdin, 9, "go\r");
    std::string out;
    std::optional<RemoteExit> exit;
    while (!exit) {
        auto frame = next_frame(sock.get(), reader);
        ASSERT_TRUE(frame) << "the session did not end; output: " << out;
        if (frame->type == FrameType::Stdout) {
            out += frame->payload;
        } else if (frame->type == FrameType::Exit) {
            exit = protocol::decode_exit(frame->payload);
        }
    }
    EXPECT_NE(out.find("got go\r\n"), std::string::npos) << out;
    EXPECT_NE(out.find("50 120\r\n"), std::string::npos) << out;
    EXPECT_EQ(exit->wait_status(), 0);
}

TEST_F(AgentTest, IgnoresStaleBytesBeforeARequest) {
    UniqueFd sock = connect_raw();
    const std::string garbage = "noise" + protocol::encode_frame(FrameType::Stdin, 5, "stale");
    ASSERT_EQ(::write(sock.get(), garbage.data(), garbage.size()),
              static_cast<ssize_t>(garbage.size()));
    send_raw(sock.get(), FrameType::Exec, 6, protocol::encode_exec(shell("cat; echo hi")));
    send_raw(sock.get(), FrameType::StdinEof, 6);
    FrameReader reader;
    reader.expect_session(6);
    std::string out;
    std::optional<RemoteExit> exit;
    while (!exit) {
        auto frame = next_frame(sock.get(), reader);
        ASSERT_TRUE(frame) << "the session did not end";
        if (frame->type == FrameType::Stdout) {
            out += frame->payload;
        } else if (frame->type == FrameType::Exit) {
            exit = protocol::decode_exit(frame->payload);
        }
    }
    EXPECT_EQ(out, "hi\n");
    EXPECT_EQ(exit->wait_status(), 0);
}

TEST_F(AgentTest, ANewSessionReplacesOneWhoseHostLeftUnnoticed) {
    UniqueFd sock = connect_raw();
    send_raw(sock.get(), FrameType::Exec, 1, protocol::encode_exec(shell("echo $$; sleep 100")));
    FrameReader reader;
    reader.expect_session(1);
    std::string out;
    while (out.find('\n') == std::string::npos) {
        auto frame = next_frame(sock.get(), reader);
        ASSERT_TRUE(frame);
        if (frame->type == FrameType::Stdout) {
            out += frame->payload;
        }
    }
    const pid_t first = std::atoi(out.c_str());
    send_raw(sock.get(), FrameType::Exec, 2, protocol::encode_exec(shell("echo second")));
    send_raw(sock.get(), FrameType::StdinEof, 2);
    FrameReader second;
    second.expect_session(2);
    std::string out2;
    for (;;) {
        auto frame = next_frame(sock.get(), second);
        ASSERT_TRUE(frame);
        if (frame->type == FrameType::Stdout) {
            out2 += frame->payload;
        }
        if (frame->type == FrameType::Exit) {
            break;
        }
    }
    EXPECT_EQ(out2, "second\n");
    EXPECT_TRUE(wait_until([&] { return process_gone(first); }));
}

// Resident memory of the agent's port servers, in KiB.
std::size_t servers_rss_kib(pid_t agent) {
    std::ifstream children("/proc/" + std::to_string(agent) + "/task/" + std::to_string(agent) +
                           "/children");
    std::size_t total = 0;
    pid_t pid;
    while (children >> pid) {
        std::ifstream status("/proc/" + std::to_string(pid) + "/status");
        std::string key;
        while (status >> key) {
            if (key == "VmRSS:") {
                std::size_t kib = 0;
                status >> kib;
                total += kib;
                break;
            }
        }
    }
    return total;
}

TEST_F(AgentTest, StopsReadingTheCommandWhileTheHostDoesNotRead) {
    UniqueFd sock = connect_raw();
    send_raw(sock.get(), FrameType::Exec, 9, protocol::encode_exec(shell("exec cat /dev/zero")));
    send_raw(sock.get(), FrameType::StdinEof, 9);
    sleep_ms(1000);
    const std::size_t before = servers_rss_kib(agent_.pid());
    ASSERT_GT(before, 0u);
    // The command writes as fast as it can; a server that kept reading its pipe would grow by
    // hundreds of MiB in this time.
    sleep_ms(2000);
    const std::size_t after = servers_rss_kib(agent_.pid());
    EXPECT_LT(after, before + 8 * 1024)
        << "the agent's servers grew from " << before << " to " << after << " KiB";
}

TEST_F(AgentTest, ReportsALostAgent) {
    // The command kills the agent's server serving it: the client must not hang.
    try {
        run(shell("kill -KILL $PPID; sleep 1"));
        FAIL() << "the session ended normally";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "the VM stopped or its agent went away while the command ran: lost the "
                  "connection to the VM's agent (the channel " +
                      socket_path(0) + " was closed)");
    }
}

TEST_F(AgentTest, RunsAsTheRequestedUnprivilegedUser) {
    if (::getuid() != 0) {
        GTEST_SKIP() << "needs root to switch users";
    }
    ExecRequest r = shell("id -u; id -g; id -G");
    r.uid = 65534;
    r.gid = 65534;
    r.groups = {65534};
    std::string out;
    EXPECT_EQ(run(r, &out), 0);
    EXPECT_EQ(out, "65534\n65534\n65534\n");
}

TEST_F(AgentTest, SetsTheHostnameOnSetup) {
    if (!namespaced_) {
        GTEST_SKIP() << "the agent could not get its own UTS namespace";
    }
    setup_guest(socket_path(0), {"node1-vm42", {}}, 5000);
    std::string out;
    EXPECT_EQ(run(request({"hostname"}), &out), 0);
    EXPECT_EQ(out, "node1-vm42\n");
}

TEST_F(AgentTest, NamesTheMountPointWhenAMountFails) {
    if (!namespaced_) {
        GTEST_SKIP() << "the agent could not get its own mount namespace";
    }
    const std::string mount_point = dir_ + "/mnt/home";
    try {
        setup_guest(socket_path(0), {"node1-vm42", {{"svm-no-such-tag", mount_point, false}}},
                    5000);
        FAIL() << "a mount of a missing 9p tag succeeded";
    } catch (const Error &e) {
        const std::string prefix =
            "guest setup of node1-vm42 failed: mount 9p tag "
            "'svm-no-such-tag' on " +
            mount_point + ": ";
        EXPECT_EQ(std::string(e.what()).substr(0, prefix.size()), prefix) << e.what();
    }
    EXPECT_TRUE(fs::is_directory(mount_point));
}

TEST(AgentFdMode, ServesOneConnectedFdAndExitsAtItsEnd) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    UniqueFd ours(fds[0]), theirs(fds[1]);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::fcntl(theirs.get(), F_SETFD, 0);
        const std::string fd = std::to_string(theirs.get());
        test::enter_own_mount_namespace();
        ::execl(SVM_AGENT_PATH, "slurm-vm-agent", "--fd", fd.c_str(), static_cast<char *>(nullptr));
        ::_exit(127);
    }
    theirs.reset();
    const std::string ping = protocol::encode_frame(FrameType::Ping, 77);
    ASSERT_EQ(::write(ours.get(), ping.data(), ping.size()), static_cast<ssize_t>(ping.size()));
    FrameReader reader;
    std::optional<Frame> reply;
    for (int i = 0; i < kWaitTries && !reply; ++i) {
        pollfd pfd{ours.get(), POLLIN, 0};
        if (::poll(&pfd, 1, 50) > 0 && reader.fill_from(ours.get()) != FrameReader::Fill::Data) {
            break;
        }
        reply = reader.next();
    }
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->type, FrameType::Pong);
    EXPECT_EQ(reply->session, 77u);
    EXPECT_EQ(protocol::decode_pong(reply->payload).agent, "slurm-vm-agent");
    ours.reset();
    int status = -1;
    EXPECT_TRUE(wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST(ExecClient, ReportsAnAgentThatDoesNotAnswer) {
    char tmpl[] = "/tmp/svm-silent.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string path = std::string(tmpl) + "/exec.0.sock";
    // A socket nobody serves, like QEMU's before the guest's agent runs.
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener.get(), 1), 0);
    try {
        ping_agent(path, 200);
        FAIL() << "ping succeeded";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "the VM's agent did not answer PING on " + path + " within 200 ms");
    }
    fs::remove_all(tmpl);
}

// Under the tests the agent serves sockets on the host, maybe as root: it must never power the
// host off. It says so, and goes on serving.
TEST_F(AgentTest, RefusesPoweroffOnTestSockets) {
    UniqueFd sock = connect_unix_with_deadline(socket_path(0), 5000);
    try {
        request_poweroff(sock.get(), socket_path(0), 5000);
        FAIL() << "the agent agreed to power the host off";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "the VM's agent on " + socket_path(0) +
                      " refused POWEROFF: power-off refused: this agent serves test sockets, not "
                      "a VM: it does not power off");
    }
    EXPECT_NO_THROW(ping_agent(sock.get(), socket_path(0), 5000));
}

TEST(AgentPoweroff, SyncsAndAnswersOkThenPowersOff) {
    char tmpl[] = "/tmp/svm-poweroff.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl;
    const std::string marker = dir + "/powered-off";
    {
        test::AgentProcess agent;
        ASSERT_NO_FATAL_FAILURE(agent.start(dir, {"--poweroff-marker", marker}, false));
        UniqueFd sock = connect_unix_with_deadline(agent.socket_path(1), 5000);
        const std::int64_t start = monotonic_ms();
        EXPECT_NO_THROW(request_poweroff(sock.get(), agent.socket_path(1), 5000));
        EXPECT_LT(monotonic_ms() - start, 1000) << "POWEROFF's answer must be fast";
        // The "power-off" (the marker standing in for reboot(RB_POWER_OFF)) follows the answer.
        EXPECT_TRUE(wait_until([&] { return fs::exists(marker); }));
    }
    fs::remove_all(dir);
}

TEST(AgentPoweroff, TheMarkerIsForTestSocketsOnly) {
    // On virtio ports (a VM) the agent powers off for real: no test hook there.
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, 2);
        test::enter_own_mount_namespace();
        ::execl(SVM_AGENT_PATH, "slurm-vm-agent", "--ports", "/nonexistent/*", "--poweroff-marker",
                "/tmp/x", static_cast<char *>(nullptr));
        ::_exit(127);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << "status " << status;
}

// An agent older than POWEROFF skips the frame and says nothing: the host gives up at its
// deadline (and presses the power button instead).
TEST(ExecClient, ReportsAnAgentThatDoesNotAnswerPoweroff) {
    char tmpl[] = "/tmp/svm-silent.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string path = std::string(tmpl) + "/exec.0.sock";
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener.get(), 1), 0);
    UniqueFd sock = connect_unix_with_deadline(path, 1000);
    const std::int64_t start = monotonic_ms();
    try {
        request_poweroff(sock.get(), path, 200);
        FAIL() << "POWEROFF succeeded";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "the VM's agent did not answer POWEROFF on " + path + " within 200 ms");
    }
    EXPECT_LT(monotonic_ms() - start, 1000);
    fs::remove_all(tmpl);
}

TEST(ExecClient, ReportsAMissingSocket) {
    try {
        ping_agent("/nonexistent/exec.0.sock", 200);
        FAIL() << "ping succeeded";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "cannot connect to the VM's exec channel /nonexistent/exec.0.sock: "
                     "No such file or directory");
    }
}

TEST(ExecClient, ReportsAMissingLockFile) {
    ExecRequest r{{"true"}, {}, "/", 0, 0, {}, ""};
    try {
        run_in_guest("/nonexistent", 1, r, -1, -1, -1);
        FAIL() << "ran without a channel";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "exec channel lock /nonexistent/exec.0.lock: No such file or directory");
    }
}

TEST(ExecClient, RefusesAnEnvironmentTooLargeForOneFrame) {
    ExecRequest r{{"true"}, {"BIG=" + std::string(protocol::kMaxPayload, 'x')}, "/", 0, 0, {}, ""};
    try {
        run_in_guest("/nonexistent", 1, r, -1, -1, -1);
        FAIL() << "accepted an oversize request";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("the exec channel carries at most " +
                                             std::to_string(protocol::kMaxPayload)),
                  std::string::npos)
            << e.what();
    }
}

// What slurmstepd does to a native task before execve, the agent does in the guest.
TEST_F(AgentTest, AppliesTheRequestsLimitsAndUmask) {
    ExecRequest r = shell("ulimit -S -n; ulimit -S -c; umask");
    r.limits = {{"NOFILE", 512, 1024}, {"CORE", 0, 0}};
    r.umask = 023;
    std::string out;
    EXPECT_EQ(run(r, &out), 0);
    EXPECT_EQ(out, "512\n0\n0023\n");
}

TEST_F(AgentTest, FindsARelativeProgramInTheJobsPathThenTheWorkingDirectory) {
    const std::string bin = dir_ + "/bin";
    fs::create_directories(bin);
    {
        std::ofstream(bin + "/svm-hello") << "#!/bin/sh\necho \"hello $0\"\n";
        std::ofstream(dir_ + "/svm-local") << "#!/bin/sh\necho \"local $0\"\n";
    }
    fs::permissions(bin + "/svm-hello", fs::perms::owner_all);
    fs::permissions(dir_ + "/svm-local", fs::perms::owner_all);
    ExecRequest r = request({"svm-hello"});
    r.env = {"PATH=/usr/bin:" + bin + ":/bin"};
    r.cwd = dir_;
    std::string out;
    EXPECT_EQ(run(r, &out), 0);
    EXPECT_EQ(out, "hello " + bin + "/svm-hello\n");  // argv[0] is the path found, as natively
    // Not in PATH: slurmstepd leaves the name, and execve finds it in the working directory.
    r.argv = {"svm-local"};
    EXPECT_EQ(run(r, &out), 0);
    EXPECT_EQ(out, "local svm-local\n");
    r.argv = {"svm-nowhere"};
    try {
        run(r);
        FAIL() << "a missing program started";
    } catch (const RemoteStartError &e) {
        EXPECT_EQ(e.stage(), "execve");
        EXPECT_EQ(e.error_number(), ENOENT);
        EXPECT_NE(std::string(e.what()).find("svm-nowhere"), std::string::npos) << e.what();
    }
}

TEST_F(AgentTest, ReplacesAnUnusableTmpdirWithTmp) {
    ExecRequest r = shell("echo \"$TMPDIR\"; test -d \"$TMPDIR\" && echo dir");
    r.make_tmpdir = true;
    r.env.push_back("TMPDIR=" + dir_ + "/new-tmp");
    std::string out;
    EXPECT_EQ(run(r, &out), 0);
    EXPECT_EQ(out, dir_ + "/new-tmp\ndir\n");  // made, as slurmstepd makes it
    { std::ofstream(dir_ + "/a-file") << "x"; }
    r.env.back() = "TMPDIR=" + dir_ + "/a-file";
    EXPECT_EQ(run(r, &out), 0);
    EXPECT_EQ(out, "/tmp\ndir\n");
}

}  // namespace
}  // namespace svm
