// The exec client as Slurm runs it (spank/exec_main.cpp): the real slurm-vm-exec, with the
// environment a task has, against the real agent serving unix sockets on this host.
#include "exec/agent_harness.h"
#include "exec/guest_env.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace svm {
namespace {

namespace fs = std::filesystem;

#ifdef SVM_EXEC_CLIENT_PATH

class ExecClientTask : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-exec-main.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        for (int i = 0; i < 2; ++i) {
            std::ofstream(dir_ + "/exec." + std::to_string(i) + ".lock").put('\n');
        }
        ASSERT_NO_FATAL_FAILURE(agent_.start(dir_, {}, false));
    }
    void TearDown() override {
        agent_.stop();
        fs::remove_all(dir_);
    }

    // Runs the client with `env` on `argv` (after "--"); its stdout and exit status.
    std::pair<std::string, int> run(const std::vector<std::string> &env,
                                    const std::vector<std::string> &argv) {
        std::vector<std::string> args = {
            "slurm-vm-exec", "--channel-dir", dir_, "--ports", "2", "--"};
        args.insert(args.end(), argv.begin(), argv.end());
        std::vector<char *> c_args, c_env;
        for (auto &a : args) {
            c_args.push_back(a.data());
        }
        c_args.push_back(nullptr);
        std::vector<std::string> env_copy = env;
        for (auto &e : env_copy) {
            c_env.push_back(e.data());
        }
        c_env.push_back(nullptr);
        int fds[2];
        EXPECT_EQ(::pipe(fds), 0);
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::dup2(fds[1], STDOUT_FILENO);
            ::close(fds[0]);
            ::close(fds[1]);
            ::execve(SVM_EXEC_CLIENT_PATH, c_args.data(), c_env.data());
            ::_exit(127);
        }
        ::close(fds[1]);
        std::string out;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fds[0], buf, sizeof buf)) > 0) {
            out.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fds[0]);
        int status = 0;
        ::waitpid(pid, &status, 0);
        return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
    }

    std::string dir_;
    test::AgentProcess agent_;
};

// Issue 20 #1: a step a guest starts can carry any variable (srun --export); the client must
// run on the host only what the host gave it.
TEST_F(ExecClientTask, NeverRunsATaskPrologItsEnvironmentNames) {
    const std::string marker = dir_ + "/prolog-ran";
    const std::string script = dir_ + "/mark.sh";
    std::ofstream(script) << "#!/bin/sh\ntouch " << marker << "\n";
    ::chmod(script.c_str(), 0755);
    const auto [out, status] =
        run({"PATH=/usr/bin:/bin", "SLURM_VM_TASK_PROLOG=" + script}, {"/bin/true"});
    EXPECT_EQ(status, 0);
    EXPECT_FALSE(fs::exists(marker)) << "the client ran " << script << " on the host";
}

TEST_F(ExecClientTask, GivesTheGuestTheVariablesSetAsideForIt) {
    const auto [out, status] =
        run({"PATH=" + std::string(kHostPath), "SLURM_VM_GUEST_ENV_PATH=/job/bin:/usr/bin:/bin",
             "SLURM_VM_GUEST_ENV_BASH_ENV=/home/u/x", "FOO=1"},
            {"/usr/bin/env"});
    EXPECT_EQ(status, 0);
    std::vector<std::string> lines;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    const auto has = [&](const std::string &line) {
        return std::find(lines.begin(), lines.end(), line) != lines.end();
    };
    EXPECT_TRUE(has("BASH_ENV=/home/u/x")) << out;
    EXPECT_TRUE(has("PATH=/job/bin:/usr/bin:/bin")) << out;
    EXPECT_TRUE(has("FOO=1")) << out;
    EXPECT_EQ(out.find("SLURM_VM_GUEST_ENV_"), std::string::npos) << out;
}

#endif

}  // namespace
}  // namespace svm
