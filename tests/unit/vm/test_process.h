// Real child processes for the tests that move processes: pidfds need real ones. Each waits on
// a pipe (its stdin) until it is killed; the destructor kills its process group and reaps it.
#pragma once

#include "vm/vm_processes.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char **environ;

namespace svm::test {

class TestProcess {
  public:
    // Runs `script` with /bin/sh -c, with `name` as its $0 (so it is in /proc/<pid>/cmdline:
    // "guest=svm-42-node1" makes it pass for that domain's QEMU).
    TestProcess(const std::string &script, const std::string &name) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0) {
            throw std::runtime_error("pipe");
        }
        stdin_ = fds[1];
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
        posix_spawnattr_setpgroup(&attr, 0);
        std::vector<std::string> argv{"/bin/sh", "-c", script, name};
        std::vector<char *> args;
        for (auto &a : argv) {
            args.push_back(a.data());
        }
        args.push_back(nullptr);
        const int rc = posix_spawn(&pid_, "/bin/sh", &actions, &attr, args.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        close(fds[0]);
        if (rc != 0) {
            throw std::runtime_error("posix_spawn");
        }
        start_ = process_start_ticks(pid_);
    }
    TestProcess(const TestProcess &) = delete;
    TestProcess &operator=(const TestProcess &) = delete;
    ~TestProcess() {
        kill_and_reap();
        close(stdin_);
    }

    pid_t pid() const { return pid_; }
    ProcessIdentity identity() const { return {pid_, start_}; }

    // Its descendants, once there are `count` of them (a child the script starts in the
    // background takes a moment to appear).
    std::vector<ProcessIdentity> wait_for_descendants(std::size_t count) const {
        for (int i = 0; i < 200; ++i) {
            auto found = process_descendants(pid_);
            if (found.size() >= count) {
                return found;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        throw std::runtime_error("no child appeared");
    }

    // Ends it and its process group; reaped, its pid is free for the kernel to reuse.
    void kill_and_reap() {
        if (reaped_) {
            return;
        }
        ::kill(-pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        reaped_ = true;
    }

    // Ends it without reaping it: a zombie, which still holds its pid.
    void kill_only() {
        ::kill(-pid_, SIGKILL);
        siginfo_t info{};
        waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT);
    }

  private:
    pid_t pid_ = 0;
    uint64_t start_ = 0;
    int stdin_ = -1;
    bool reaped_ = false;
};

}  // namespace svm::test
