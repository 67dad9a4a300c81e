#include "vm/libvirt_link.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

namespace svm {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

TEST(CallDeadline, DoesNothingToACallThatReturnsInTime) {
    bool late_ran = false;
    CallDeadline deadline(
        1000ms,
        [&] {
            late_ran = true;
            return std::string("killed");
        },
        [] { return std::set<int>{}; });
    std::this_thread::sleep_for(10ms);
    deadline.finish();
    EXPECT_FALSE(deadline.expired());
    EXPECT_FALSE(late_ran);
}

TEST(CallDeadline, ActsWhileALateCallIsStillInside) {
    // The injected slow call: it returns once the deadline's action has run, as a libvirt call
    // returns once QEMU is killed.
    std::atomic<bool> killed{false};
    CallDeadline deadline(
        50ms,
        [&] {
            killed = true;
            return std::string("its QEMU was killed");
        },
        [] { return std::set<int>{}; });
    const auto start = Clock::now();
    while (!killed && Clock::now() - start < 5s) {
        std::this_thread::sleep_for(5ms);
    }
    deadline.finish();
    EXPECT_TRUE(killed);
    EXPECT_TRUE(deadline.expired());
    EXPECT_EQ(deadline.note(), "its QEMU was killed");
}

TEST(CallDeadline, ShutsTheConnectionUnderACallThatStillDoesNotReturn) {
    // A call blocked reading a connection that never answers (libvirtd stuck): the deadline
    // shuts the socket, the read sees end-of-file and the call returns.
    int pair[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    CallDeadline deadline(
        30ms, [] { return std::string("no QEMU to kill"); }, [&] { return std::set<int>{pair[0]}; },
        30ms);
    char byte = 0;
    const auto start = Clock::now();
    const ssize_t n = read(pair[0], &byte, 1);
    deadline.finish();
    EXPECT_EQ(n, 0);
    EXPECT_LT(Clock::now() - start, 5s);
    EXPECT_TRUE(deadline.expired());
    EXPECT_EQ(deadline.note(), "no QEMU to kill; libvirt's connection was shut after 30 ms more");
    close(pair[0]);
    close(pair[1]);
}

TEST(LibvirtLink, ALateCallThrowsWhatTheDeadlineDid) {
    LibvirtLink link("test:///default", {100ms, 0ms});
    const auto start = Clock::now();
    try {
        link.call("", 100ms, [](virConnectPtr) {
            std::this_thread::sleep_for(300ms);
            return 0;
        });
        FAIL() << "no deadline";
    } catch (const LibvirtDeadlineError &e) {
        EXPECT_STREQ(e.what(), "libvirt did not answer within 100 ms");
    }
    EXPECT_LT(Clock::now() - start, 5s);
    // A call in time goes through.
    EXPECT_EQ(link.call("", 1000ms, [](virConnectPtr conn) { return conn != nullptr ? 7 : 0; }), 7);
}

TEST(LibvirtLink, RetriesARefusedConnectionForTheReconnectWaitThenSaysSo) {
    LibvirtLink link("test:///nonexistent/slurm-vm-test.xml", {1000ms, 600ms});
    const auto start = Clock::now();
    try {
        link.get();
        FAIL() << "connected";
    } catch (const LibvirtConnectionError &e) {
        const std::string message = e.what();
        EXPECT_EQ(message.rfind(
                      "cannot connect to libvirt at test:///nonexistent/slurm-vm-test.xml: ", 0),
                  0u)
            << message;
        EXPECT_NE(message.find("(tried for 600 ms)"), std::string::npos) << message;
    }
    const auto took = Clock::now() - start;
    EXPECT_GE(took, 350ms);
    EXPECT_LT(took, 5s);
}

TEST(SigpipeBlock, AWriteToAClosedLibvirtdDoesNotEndTheProcess) {
    // libvirt's client writes to libvirtd's socket with write(2); after a restart the peer is
    // gone. Unblocked, the SIGPIPE would end this process.
    int pair[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
    close(pair[1]);
    {
        SigpipeBlock block;
        EXPECT_EQ(write(pair[0], "x", 1), -1);
        EXPECT_EQ(errno, EPIPE);
    }
    sigset_t pending;
    sigpending(&pending);
    EXPECT_EQ(sigismember(&pending, SIGPIPE), 0) << "a SIGPIPE is left pending";
    sigset_t mask;
    pthread_sigmask(SIG_SETMASK, nullptr, &mask);
    EXPECT_EQ(sigismember(&mask, SIGPIPE), 0) << "SIGPIPE is still blocked";
    close(pair[0]);
}

class StoppedQemu : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-kill-qemu.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        run_ = tmpl;
    }
    void TearDown() override {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        std::error_code ec;
        fs::remove_all(run_, ec);
    }
    // A process that looks like QEMU of `guest` to find_qemu, stopped as a user's kill -STOP
    // leaves it, with libvirt's pid file naming it.
    void start(const std::string &guest) {
        pid_ = fork();
        if (pid_ == 0) {
            execl("/bin/sh", "sh", "-c", "kill -STOP $$; sleep 60", ("guest=" + guest).c_str(),
                  static_cast<char *>(nullptr));
            _exit(127);
        }
        int status = 0;
        ASSERT_EQ(waitpid(pid_, &status, WUNTRACED), pid_);
        ASSERT_TRUE(WIFSTOPPED(status));
        std::ofstream(run_ + "/" + guest + ".pid") << pid_ << "\n";
    }
    // How the process ended: the signal that killed it, or 0.
    int killed_by() {
        int status = 0;
        if (waitpid(pid_, &status, 0) != pid_) {
            return -1;
        }
        pid_ = 0;
        return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }
    std::string run_;
    pid_t pid_ = 0;
};

TEST_F(StoppedQemu, IsKilledThroughItsPidfd) {
    start("svm-7-node1");
    const std::string note = kill_domain_qemu("svm-7-node1", run_);
    EXPECT_EQ(note, "its QEMU (pid " + std::to_string(pid_) + ") was killed");
    EXPECT_EQ(killed_by(), SIGKILL);
}

TEST_F(StoppedQemu, OfAnotherDomainIsLeftAlone) {
    start("svm-8-node1");
    // The pid file of domain svm-7-node1 names a process that does not run it.
    std::ofstream(run_ + "/svm-7-node1.pid") << pid_ << "\n";
    const std::string note = kill_domain_qemu("svm-7-node1", run_);
    EXPECT_EQ(note.rfind("no QEMU to kill: ", 0), 0u) << note;
    EXPECT_EQ(kill(pid_, 0), 0);
    EXPECT_EQ(kill_domain_qemu("svm-9-node1", run_).rfind("no QEMU to kill: ", 0), 0u);
}

}  // namespace
}  // namespace svm
