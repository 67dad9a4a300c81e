#include "util/spawn.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace svm {
namespace {

int wait_status(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

TEST(Spawn, RefusesAProgramNotGivenByAbsolutePath) {
    SpawnSpec spec;
    spec.argv = {"true"};
    EXPECT_THROW(spawn_program(spec), SpawnError);
}

TEST(Spawn, ReportsAProgramThatCannotRunWithItsErrno) {
    SpawnSpec spec;
    spec.argv = {"/no/such/program"};
    try {
        spawn_program(spec);
        FAIL() << "spawned";
    } catch (const SpawnError &e) {
        EXPECT_EQ(e.error_number(), ENOENT);
        EXPECT_STREQ(e.what(), "cannot run /no/such/program: No such file or directory");
    }
}

TEST(Spawn, StartsTheProgramInItsOwnGroupWithDefaultSignalsWhateverTheCallerIgnores) {
    // slurmd ignores and blocks signals; the program must still die of SIGTERM.
    struct sigaction ignore {
    }, old{};
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &ignore, &old);
    SpawnSpec spec;
    spec.argv = {"/bin/sh", "-c", "[ $(ps -o pgid= -p $$) -eq $$ ] && exec sleep 30"};
    const pid_t pid = spawn_program(spec);
    sigaction(SIGTERM, &old, nullptr);
    usleep(300000);
    EXPECT_EQ(getpgid(pid), pid);
    kill(pid, SIGTERM);
    const int status = wait_status(pid);
    EXPECT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

}  // namespace
}  // namespace svm
