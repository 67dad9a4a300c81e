#include "vm/kvm_verdict.h"

#include "util/error.h"
#include "vm/libvirt_handles.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>

namespace svm {
namespace {

namespace fs = std::filesystem;

class KvmVerdictTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-kvm-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string dir_;
};

TEST_F(KvmVerdictTest, AVerdictIsReadBackForTheSameHostKey) {
    KvmVerdict v;
    v.works = false;
    v.reason = "KVM internal error. Suberror: 1";
    v.key = "kernel=6.1;qemu=7.2.0;libvirt=9.0.0";
    v.node = "node1";
    v.expires_at = time(nullptr) + 3600;
    save_kvm_verdict(dir_, v);
    const auto back = load_kvm_verdict(dir_, v.key);
    ASSERT_TRUE(back.has_value());
    EXPECT_FALSE(back->works);
    EXPECT_EQ(back->reason, v.reason);
    EXPECT_EQ(back->node, "node1");
    EXPECT_GT(back->decided_at, 0);
    EXPECT_EQ(back->expires_at, v.expires_at);
    EXPECT_TRUE(back->proven);
}

// A verdict holds for kvm_verdict_ttl, then the node probes again: a KVM fixed since, or a
// verdict that was wrong, does not stay for good.
TEST_F(KvmVerdictTest, AVerdictLapsesAtItsExpiry) {
    KvmVerdict v;
    v.works = false;
    v.reason = "KVM internal error. Suberror: 1";
    v.key = "k";
    v.decided_at = 1000;
    v.expires_at = 1000 + 86400;
    save_kvm_verdict(dir_, v);
    EXPECT_TRUE(load_kvm_verdict(dir_, "k", 1000 + 86399).has_value());
    EXPECT_FALSE(load_kvm_verdict(dir_, "k", 1000 + 86400).has_value());
    v.expires_at = 0;
    EXPECT_THROW(save_kvm_verdict(dir_, v), Error);
}

// Older slurm-vm kept a verdict with no expiry, decided by a job's VM (whose user could kill
// it on purpose): such a verdict is not taken.
TEST_F(KvmVerdictTest, AVerdictWithoutExpiryIsNotTaken) {
    std::ofstream(kvm_verdict_path(dir_))
        << R"j({"key": "k", "works": false, "reason": "the VM stopped while it booted (kvm)",)j"
        << R"j( "node": "node1", "decided_at": 1000})j";
    EXPECT_FALSE(load_kvm_verdict(dir_, "k", 2000).has_value());
}

TEST_F(KvmVerdictTest, AnUnprovenVerdictSaysSo) {
    KvmVerdict v;
    v.proven = false;
    v.key = "k";
    v.expires_at = time(nullptr) + 60;
    save_kvm_verdict(dir_, v);
    const auto back = load_kvm_verdict(dir_, "k");
    ASSERT_TRUE(back.has_value());
    EXPECT_FALSE(back->proven);
}

TEST_F(KvmVerdictTest, AVerdictForAnotherKernelOrQemuIsIgnored) {
    KvmVerdict v;
    v.works = true;
    v.key = "kernel=6.1;qemu=7.2.0;libvirt=9.0.0";
    v.expires_at = time(nullptr) + 3600;
    save_kvm_verdict(dir_, v);
    EXPECT_FALSE(load_kvm_verdict(dir_, "kernel=6.2;qemu=7.2.0;libvirt=9.0.0").has_value());
}

TEST_F(KvmVerdictTest, AMissingOrDamagedVerdictMeansProbeAgain) {
    EXPECT_FALSE(load_kvm_verdict(dir_, "k").has_value());
    std::ofstream(kvm_verdict_path(dir_)) << "{\"key\": \"k\", \"works\": ";
    EXPECT_FALSE(load_kvm_verdict(dir_, "k").has_value());
}

TEST_F(KvmVerdictTest, HostKeyNamesKernelQemuAndLibvirt) {
    ConnectionPtr conn = open_connection("test:///default");
    const std::string key = host_key(conn.get());
    EXPECT_EQ(key.rfind("kernel=", 0), 0u) << key;
    EXPECT_NE(key.find(";qemu="), std::string::npos) << key;
    EXPECT_NE(key.find(";libvirt="), std::string::npos) << key;
}

TEST_F(KvmVerdictTest, DeviceOpenToEveryoneHasNoProblem) {
    EXPECT_EQ(kvm_device_problem(12345, 12345, "/dev/null"), "");
}

TEST_F(KvmVerdictTest, DeviceOnlyRootMayOpenIsAProblemForTheJobsUser) {
    const std::string dev = dir_ + "/kvm";
    if (mknod(dev.c_str(), S_IFCHR | 0600, makedev(1, 3)) != 0) {
        GTEST_SKIP() << "cannot make a device node here";
    }
    chmod(dev.c_str(), 0600);
    EXPECT_EQ(kvm_device_problem(0, 0, dev), "");
    const std::string problem = kvm_device_problem(12345, 12345, dev);
    EXPECT_NE(problem.find(dev + " is mode 0600 owned by root:"), std::string::npos) << problem;
    EXPECT_NE(problem.find("so QEMU (running as 12345) cannot open it"), std::string::npos)
        << problem;
}

TEST_F(KvmVerdictTest, MissingDeviceAndRegularFileAreProblems) {
    EXPECT_NE(kvm_device_problem(0, 0, dir_ + "/nokvm").find("is missing"), std::string::npos);
    std::ofstream(dir_ + "/file") << "x";
    EXPECT_NE(kvm_device_problem(0, 0, dir_ + "/file").find("is not a character device"),
              std::string::npos);
}

TEST_F(KvmVerdictTest, QemuLogErrorIsTheKvmLineOfTheLastStart) {
    std::ofstream(dir_ + "/svm-1-node1.log")
        << "2026-11-30 12:00:00.000+0000: starting up libvirt version: 9.0.0\n"
        << "old run: some error that is over\n"
        << "2026-11-30 12:59:23.471+0000: starting up libvirt version: 9.0.0\n"
        << "LC_ALL=C /usr/bin/qemu-system-x86_64 -name guest=svm-1-node1\n"
        << "KVM internal error. Suberror: 1\n"
        << "emulation failure\n"
        << "EAX=00000000 EBX=00000000\n";
    const std::string line = qemu_log_error("svm-1-node1", dir_);
    EXPECT_EQ(line, "KVM internal error. Suberror: 1");
    EXPECT_TRUE(blames_kvm(line));
    EXPECT_EQ(qemu_log_error("svm-2-node1", dir_), "");
}

TEST_F(KvmVerdictTest, QemuLogErrorIsMadePrintable) {
    std::ofstream(dir_ + "/d.log") << "2026-11-30 starting up\nerror: \x1b[31mred\n";
    EXPECT_EQ(qemu_log_error("d", dir_), "error: \\x1b[31mred");
    EXPECT_FALSE(blames_kvm("could not open disk image"));
}

TEST_F(KvmVerdictTest, TheFallbackWarningIsLoggedOncePerNodeAndReason) {
    EXPECT_TRUE(first_warning_for_node(dir_, "node1", "KVM internal error"));
    EXPECT_FALSE(first_warning_for_node(dir_, "node1", "KVM internal error"));
    EXPECT_TRUE(first_warning_for_node(dir_, "node2", "KVM internal error"));
    EXPECT_TRUE(first_warning_for_node(dir_, "node1", "/dev/kvm is mode 0600"));
    EXPECT_TRUE(first_warning_for_node(dir_, "../etc", "x"));
    EXPECT_TRUE(fs::exists(dir_ + "/kvm-warned/___etc"));
}

}  // namespace
}  // namespace svm
