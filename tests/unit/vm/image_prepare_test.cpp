#include "vm/image_prepare.h"

#include "util/atomic_file.h"
#include "util/process.h"
#include "util/safe_fs.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace svm {
namespace {

namespace fs = std::filesystem;

// A fake image root: the fallback script runs against it through $SVM_ROOT.
class InitFallback : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-prepare-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        fs::create_directories(root_ + "/etc");
        write_file_atomically(root_ + "/fallback.sh",
                              agent_init_fallback_script("/usr/local/libexec/slurm-vm"), 0755);
    }
    void TearDown() override { remove_tree(root_); }

    ProcessResult run() {
        return run_process({"/usr/bin/env", "SVM_ROOT=" + root_, "/bin/sh", root_ + "/fallback.sh"},
                           std::chrono::seconds(10));
    }
    std::string read(const std::string &path) {
        std::ifstream in(root_ + path);
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }
    std::string root_;
};

TEST_F(InitFallback, LeavesASystemdImageAlone) {
    fs::create_directories(root_ + "/lib/systemd");
    write_file_atomically(root_ + "/lib/systemd/systemd", "", 0755);
    write_file_atomically(root_ + "/etc/inittab", "id:2:initdefault:\n", 0644);
    EXPECT_EQ(run().status, 0);
    EXPECT_EQ(read("/etc/inittab"), "id:2:initdefault:\n");
}

TEST_F(InitFallback, AddsARespawnLineToSysvAndBusyboxInittabsOnce) {
    write_file_atomically(root_ + "/etc/inittab", "id:2:initdefault:\n", 0644);
    EXPECT_EQ(run().status, 0);
    EXPECT_EQ(run().status, 0);
    EXPECT_EQ(read("/etc/inittab"),
              "id:2:initdefault:\nsvma:2345:respawn:/usr/local/libexec/slurm-vm/start\n");
    write_file_atomically(root_ + "/etc/inittab", "::sysinit:/sbin/openrc sysinit\n", 0644);
    EXPECT_EQ(run().status, 0);
    EXPECT_EQ(read("/etc/inittab"),
              "::sysinit:/sbin/openrc sysinit\n::respawn:/usr/local/libexec/slurm-vm/start\n");
}

TEST_F(InitFallback, LoopsTheAgentFromRcLocalBeforeItsExit) {
    write_file_atomically(root_ + "/etc/rc.local", "#!/bin/sh\necho hi\nexit 0\n", 0644);
    EXPECT_EQ(run().status, 0);
    EXPECT_EQ(read("/etc/rc.local"),
              "#!/bin/sh\necho hi\n(while :; do /usr/local/libexec/slurm-vm/start; sleep 1; done) "
              "&\nexit 0\n");
}

TEST_F(InitFallback, NamesWhatItFoundNoneOf) {
    const ProcessResult r = run();
    EXPECT_EQ(r.status, 3);
    EXPECT_EQ(r.err,
              "slurm-vm: the image has no systemd, /etc/inittab or rc.local: start "
              "/usr/local/libexec/slurm-vm/start from its init\n");
}

TEST(AgentStartScript, RunsThePortScriptThenTheAgent) {
    EXPECT_EQ(agent_start_script("/d"),
              "#!/bin/sh\n# slurm-vm: the agent, for an init other than systemd (see "
              "init-fallback).\n/d/ports\nexec /d/slurm-vm-agent\n");
}

}  // namespace
}  // namespace svm
