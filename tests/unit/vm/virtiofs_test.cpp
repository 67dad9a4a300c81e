#include "vm/virtiofs.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace svm {
namespace {

TEST(Virtiofs, MapsNamespaceRootToNobodyAndTheJobsIdToItself) {
    EXPECT_EQ(virtiofsd_id_map(1000), "0 65534 1\n1000 1000 1\n");
    EXPECT_EQ(virtiofsd_id_map(0), "0 0 1\n");
}

TEST(Virtiofs, RefusesNobodyAndAMissingDaemonNamingTheShare) {
    VirtiofsdSpec spec;
    spec.shared_dir = "/home";
    spec.socket_path = "/nonexistent/v.sock";
    spec.uid = 65534;
    spec.gid = 100;
    try {
        start_virtiofsd(spec);
        FAIL() << "started";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "virtiofs share /home: the job's user or group is nobody (65534), which "
                     "virtiofsd's namespace keeps for itself");
    }
    spec.uid = 1000;
    spec.binary = "/nonexistent/virtiofsd";
    try {
        start_virtiofsd(spec);
        FAIL() << "started";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "virtiofs share /home: /nonexistent/virtiofsd cannot run: No such file or "
                     "directory (Debian's qemu-system-common ships it)");
    }
}

// A guest can make virtiofsd talk without end (every refused request is a line): what it says
// after its start must not grow root's state folder. This one says it is ready, then about 1 MB
// more.
TEST(Virtiofs, KeepsOnlyWhatTheDaemonSaidWhileItStarted) {
    if (getuid() != 0) {
        GTEST_SKIP() << "needs root to start a daemon as another user in a user namespace";
    }
    char tmpl[] = "/tmp/svm-virtiofs-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl;
    ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
    VirtiofsdSpec spec;
    spec.binary = dir + "/virtiofsd";
    std::ofstream(spec.binary)
        << "#!/bin/sh\n"
           "echo 'virtiofsd: Waiting for vhost-user socket connection...' >&2\n"
           "trap '' PIPE\n"
           "i=0\n"
           "while [ $i -lt 30000 ]; do\n"
           "  echo \"lo_lookup: a message the guest provoked, number $i\" >&2; i=$((i+1))\n"
           "done\n";
    ASSERT_EQ(chmod(spec.binary.c_str(), 0755), 0);
    spec.shared_dir = dir;
    spec.socket_path = dir + "/v.sock";
    spec.log_path = dir + "/virtiofsd.log";
    spec.uid = 12345;
    spec.gid = 12345;
    const pid_t pid = start_virtiofsd(spec);
    int status = 0;
    for (int i = 0; i < 600 && waitpid(pid, &status, WNOHANG) == 0; ++i) {
        usleep(50000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    std::error_code ec;
    const auto size = std::filesystem::file_size(spec.log_path, ec);
    EXPECT_LE(size, 64u * 1024) << "virtiofsd's log grew with what it said after its start";
    std::ifstream in(spec.log_path);
    std::string first;
    std::getline(in, first);
    EXPECT_EQ(first, "virtiofsd: Waiting for vhost-user socket connection...");
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace svm
