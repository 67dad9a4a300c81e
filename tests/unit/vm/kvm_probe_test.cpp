// The node's KVM probe: which image it boots, and that a host with a verdict (or with another
// probe under way) does not probe again. The probe's boots need QEMU: see
// tests/integration/test_kvm_probe.sh.
#include "vm/kvm_probe.h"

#include "util/atomic_file.h"
#include "util/fd.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>

#include <ctime>
#include <filesystem>

namespace svm {
namespace {

namespace fs = std::filesystem;

class KvmProbeTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-kvmprobe-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        config.state_dir = dir + "/state";
        config.kvm_probe_timeout_seconds = 1;
        fs::create_directories(config.state_dir);
        for (const char *f : {"/vmlinux", "/initrd.img"}) {
            write_file_atomically(dir + f, "x", 0644);
        }
    }
    void TearDown() override { fs::remove_all(dir); }

    std::string dir;
    Config config;
};

TEST_F(KvmProbeTest, BootsTheSmallestImageEveryoneMayUseWhoseFilesAreHere) {
    const std::string k = dir + "/vmlinux", i = dir + "/initrd.img";
    const Catalog catalog = Catalog::parse(
        R"({"images": [
        {"name": "big", "kernel": ")" +
            k + R"(", "memory_mib": {"default": 1024}},
        {"name": "vip", "kernel": ")" +
            k + R"(", "memory_mib": {"default": 64},
         "access": {"groups": ["vip"]}},
        {"name": "sleeps", "kernel": ")" +
            k + R"(", "cmdline": "rdinit=/bin/sleep",
         "memory_mib": {"default": 64}},
        {"name": "elsewhere", "kernel": ")" +
            dir + R"(/%n/vmlinux", "memory_mib": {"default": 64}},
        {"name": "disk-only", "disk": ")" +
            k + R"(", "memory_mib": {"default": 64}},
        {"name": "tiny", "kernel": ")" +
            k + R"(", "initrd": ")" + i + R"(",
         "memory_mib": {"default": 256}}
    ]})",
        "test");
    const auto image = kvm_probe_image(catalog, "node1");
    ASSERT_TRUE(image.has_value());
    EXPECT_EQ(image->name, "tiny");
    EXPECT_FALSE(kvm_probe_image(Catalog::parse(R"({"images": []})", "test"), "n").has_value());
}

TEST_F(KvmProbeTest, AHostWithAVerdictDoesNotProbe) {
    KvmVerdict v;
    v.works = false;
    v.reason = "KVM internal error. Suberror: 1";
    v.key = "k";
    v.expires_at = time(nullptr) + 3600;
    save_kvm_verdict(config.state_dir, v);
    const KvmProbeResult r = kvm_verdict_or_probe(nullptr, config, Image{}, "k", "node1");
    EXPECT_FALSE(r.ran);
    ASSERT_TRUE(r.verdict.has_value());
    EXPECT_EQ(r.verdict->reason, v.reason);
}

TEST_F(KvmProbeTest, WaitsForAnotherProbeThenGoesOnWithoutAVerdict) {
    UniqueFd held(open(kvm_probe_lock_path(config.state_dir).c_str(), O_RDWR | O_CREAT, 0600));
    ASSERT_EQ(flock(held.get(), LOCK_EX), 0);
    const auto t = std::chrono::steady_clock::now();
    const KvmProbeResult r = kvm_verdict_or_probe(nullptr, config, Image{}, "k", "node1");
    EXPECT_FALSE(r.ran);
    EXPECT_FALSE(r.verdict.has_value());
    EXPECT_EQ(r.summary, "none yet: another process is probing KVM on this host");
    EXPECT_LT(std::chrono::steady_clock::now() - t, std::chrono::seconds(5));
}

}  // namespace
}  // namespace svm
