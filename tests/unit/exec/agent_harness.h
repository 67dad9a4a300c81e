// The real agent binary, run on the host for tests: it listens on <dir>/exec.0.sock and
// <dir>/exec.1.sock as QEMU's channel sockets would be, and stops with the test.
#pragma once

#include "util/error.h"
#include "exec/exec_client.h"
#include "util/fd.h"

#include <gtest/gtest.h>

#include <csignal>
#include <functional>
#include <string>
#include <vector>

#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace svm::test {

inline constexpr int kWaitTries = 200;  // x 50 ms: bounds for conditions that come true at once

inline bool wait_until(const std::function<bool()> &condition) {
    for (int i = 0; i < kWaitTries; ++i) {
        if (condition()) {
            return true;
        }
        ::usleep(50 * 1000);
    }
    return condition();
}

// In a forked child that is about to exec the agent: a mount namespace of its own. As root the
// agent mounts a tmpfs on /run/slurm-vm-scripts, which on the test host would pile up, one per
// test. Not root: nothing to do (the agent mounts nothing, and unshare is refused).
inline void enter_own_mount_namespace() {
    if (::unshare(CLONE_NEWNS) == 0) {
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
    }
}

class AgentProcess {
  public:
    AgentProcess() = default;
    AgentProcess(const AgentProcess &) = delete;
    AgentProcess &operator=(const AgentProcess &) = delete;
    ~AgentProcess() { stop(); }

    // Starts the agent and waits until both sockets answer a ping. With own_namespaces, it gets
    // its own UTS and mount namespaces, so SETUP cannot rename or mount on the test host.
    // Use under ASSERT_NO_FATAL_FAILURE.
    void start(const std::string &dir, const std::vector<std::string> &extra_args,
               bool own_namespaces) {
        dir_ = dir;
        std::vector<std::string> args = {"slurm-vm-agent", "--listen", socket_path(0), "--listen",
                                         socket_path(1)};
        args.insert(args.end(), extra_args.begin(), extra_args.end());
        std::vector<char *> argv = c_strings(args);
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::setpgid(0, 0);
            // A test killed by ctest's timeout must not leave the agent behind.
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (own_namespaces) {
                ::unshare(CLONE_NEWUTS);
            }
            enter_own_mount_namespace();
            ::execv(SVM_AGENT_PATH, argv.data());
            ::_exit(127);
        }
        pid_ = pid;
        for (int i = 0; i < 2; ++i) {
            ASSERT_TRUE(wait_until([&] {
                try {
                    ping_agent(socket_path(i), 1000);
                    return true;
                } catch (const Error &) {
                    return false;
                }
            })) << "the agent never answered on "
                << socket_path(i);
        }
    }

    // SIGTERM, which the agent must obey; SIGKILL to its process group if it does not.
    void stop() {
        if (pid_ <= 0) {
            return;
        }
        ::kill(pid_, SIGTERM);
        int status;
        const bool ended = wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; });
        EXPECT_TRUE(ended) << "the agent did not stop on SIGTERM";
        if (!ended) {
            ::kill(-pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
        pid_ = -1;
    }

    pid_t pid() const { return pid_; }
    std::string socket_path(int i) const { return dir_ + "/exec." + std::to_string(i) + ".sock"; }

  private:
    std::string dir_;
    pid_t pid_ = -1;
};

}  // namespace svm::test
