#include "vm/virtiofs.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cerrno>
#include <functional>
#include <string>

namespace svm {
namespace {

namespace fs = std::filesystem;

constexpr const char *kQemuVirtiofsd = "/usr/lib/qemu/virtiofsd";
constexpr const char *kRustVirtiofsd = "/usr/libexec/virtiofsd";

TEST(Virtiofs, MapsOnlyTheJobsIdIntoTheNamespace) {
    // C: the job's id as itself; Rust: as namespace root. Never nobody, never anyone else.
    EXPECT_EQ(virtiofsd_id_map(VirtiofsdFlavour::QemuC, 1000), "1000 1000 1\n");
    EXPECT_EQ(virtiofsd_id_map(VirtiofsdFlavour::Rust, 1000), "0 1000 1\n");
}

TEST(Virtiofs, DrivesEachDaemonWithItsOwnOptions) {
    VirtiofsdSpec spec;
    spec.shared_dir = "/home";
    spec.uid = 1000;
    spec.gid = 100;
    EXPECT_EQ(virtiofsd_args(VirtiofsdFlavour::QemuC, spec),
              (std::vector<std::string>{"virtiofsd", "--fd=3", "-o", "source=/home", "-o",
                                        "sandbox=namespace", "-o", "cache=auto",
                                        "--rlimit-nofile=0", "-f"}));
    EXPECT_EQ(
        virtiofsd_args(VirtiofsdFlavour::Rust, spec),
        (std::vector<std::string>{"virtiofsd", "--fd=3", "--shared-dir=/home",
                                  "--sandbox=namespace", "--cache=auto", "--rlimit-nofile=0",
                                  "--translate-uid=map:1000:0:1", "--translate-gid=map:100:0:1"}));
}

TEST(Virtiofs, RefusesAMissingDaemonNamingTheShare) {
    VirtiofsdSpec spec;
    spec.shared_dir = "/home";
    spec.socket_path = "/nonexistent/v.sock";
    spec.uid = 1000;
    spec.gid = 100;
    spec.binary = "/nonexistent/virtiofsd";
    try {
        start_virtiofsd(spec);
        FAIL() << "started";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "virtiofs share /home: /nonexistent/virtiofsd cannot run: No such file or "
                     "directory (Debian's virtiofsd or qemu-system-common ships it)");
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
    spec.flavour = VirtiofsdFlavour::QemuC;  // a stand-in: its --help says nothing
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

TEST(Virtiofs, TellsWhichDaemonABinaryIs) {
    // Debian 12: QEMU's C daemon at /usr/lib/qemu/virtiofsd. Debian 13: the Rust one, package
    // virtiofsd, at /usr/libexec/virtiofsd (and /usr/lib/qemu/virtiofsd links to it).
    bool any = false;
    if (access(kRustVirtiofsd, X_OK) == 0) {
        EXPECT_EQ(virtiofsd_flavour(kRustVirtiofsd), VirtiofsdFlavour::Rust);
        any = true;
    }
    if (access(kQemuVirtiofsd, X_OK) == 0 && !fs::is_symlink(kQemuVirtiofsd)) {
        EXPECT_EQ(virtiofsd_flavour(kQemuVirtiofsd), VirtiofsdFlavour::QemuC);
        any = true;
    }
    EXPECT_THROW(virtiofsd_flavour("/bin/true"), Error);
    if (!any) {
        GTEST_SKIP() << "no virtiofsd is installed";
    }
}

// Runs `body` in a child process with the given uid and gid (and no other group) and returns
// its exit status: what a process of that identity on the host may do.
int as_identity(uid_t uid, gid_t gid, const std::function<int()> &body) {
    const pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
            setresuid(uid, uid, uid) != 0) {
            _exit(100);
        }
        _exit(body());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

// The uid the kernel gives a running process ("Uid:" in its status: real, effective, saved).
uid_t real_uid_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("Uid:", 0) == 0) {
            return static_cast<uid_t>(std::stoul(line.substr(4)));
        }
    }
    return static_cast<uid_t>(-1);
}

class RunningVirtiofsd : public ::testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0) {
            GTEST_SKIP() << "needs root (it starts virtiofsd as another user)";
        }
        if (access(kQemuVirtiofsd, X_OK) != 0) {
            GTEST_SKIP() << kQemuVirtiofsd << " is not installed";
        }
        char tmpl[] = "/tmp/svm-virtiofs-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        chmod(dir_.c_str(), 0755);
    }
    void TearDown() override {
        for (const pid_t pid : pids_) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
        if (!dir_.empty()) {
            std::error_code ec;
            fs::remove_all(dir_, ec);
        }
    }
    // A virtiofsd for job user `uid` (no account needed) serving a folder of its own.
    pid_t start(uid_t uid) {
        const std::string share = dir_ + "/share." + std::to_string(uid);
        fs::create_directory(share);
        EXPECT_EQ(chown(share.c_str(), uid, uid), 0);
        VirtiofsdSpec spec;
        spec.binary = kQemuVirtiofsd;
        spec.shared_dir = share;
        spec.socket_path = dir_ + "/v." + std::to_string(uid) + ".sock";
        spec.log_path = dir_ + "/v." + std::to_string(uid) + ".log";
        spec.uid = uid;
        spec.gid = uid;
        const pid_t pid = start_virtiofsd(spec);
        pids_.push_back(pid);
        return pid;
    }

    std::string dir_;
    std::vector<pid_t> pids_;
};

TEST_F(RunningVirtiofsd, TheJobsUserCannotEnterItsNamespace) {
    constexpr uid_t kUser = 4242;
    const pid_t pid = start(kUser);
    // nsenter -U -t <pid>, as the job's user: open the namespace, then join it.
    const int entered = as_identity(kUser, kUser, [pid] {
        const int fd = open(("/proc/" + std::to_string(pid) + "/ns/user").c_str(), O_RDONLY);
        if (fd < 0) {
            return 1;
        }
        return setns(fd, CLONE_NEWUSER) == 0 ? 0 : 2;
    });
    EXPECT_NE(entered, 0) << "the job's user joined virtiofsd's user namespace";
    EXPECT_NE(entered, 100);
    // And virtiofsd is the job's user on the host, not a shared `nobody`.
    EXPECT_EQ(real_uid_of(pid), kUser);
}

TEST_F(RunningVirtiofsd, OneJobsVirtiofsdCannotSignalAnothers) {
    const pid_t first = start(4242);
    const pid_t second = start(4243);
    // Whoever holds the first daemon's host identity (its user in its namespace, or a guest
    // that took it over) tries kill -0 on the second.
    const uid_t identity = real_uid_of(first);
    const int signalled = as_identity(identity, identity, [second] {
        if (kill(second, 0) == 0) {
            return 0;
        }
        return errno == EPERM ? 1 : 2;
    });
    EXPECT_EQ(signalled, 1) << "uid " << identity << " may signal another job's virtiofsd";
    // Another user altogether cannot either.
    EXPECT_EQ(as_identity(4244, 4244, [second] { return kill(second, 0) == 0 ? 0 : 1; }), 1);
}

}  // namespace
}  // namespace svm
