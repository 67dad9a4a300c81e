#include "vm/overlay.h"

#include "util/error.h"
#include "util/process.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace svm {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

class OverlayTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-overlay-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        base = (dir / "base.qcow2").string();
        overlay = (dir / "svm-7-node1.qcow2").string();
        ProcessResult r = run_process(
            {find_program("qemu-img"), "create", "-q", "-f", "qcow2", base, "16M"}, seconds(30));
        ASSERT_EQ(r.status, 0) << r.err;
    }
    void TearDown() override { fs::remove_all(dir); }

    std::string md5(const std::string &path) {
        ProcessResult r = run_process({find_program("md5sum"), path}, seconds(30));
        EXPECT_EQ(r.status, 0) << r.err;
        return r.out.substr(0, r.out.find(' '));
    }

    fs::path dir;
    std::string base, overlay;
};

TEST_F(OverlayTest, CreatesAnOverlayBackedByTheBase) {
    std::string before = md5(base);
    create_overlay(base, "qcow2", overlay, getuid(), getgid());

    ASSERT_TRUE(fs::exists(overlay));
    ProcessResult info =
        run_process({find_program("qemu-img"), "info", "-U", overlay}, seconds(30));
    ASSERT_EQ(info.status, 0) << info.err;
    EXPECT_NE(info.out.find("backing file: " + base), std::string::npos) << info.out;
    EXPECT_NE(info.out.find("backing file format: qcow2"), std::string::npos) << info.out;
    EXPECT_EQ(md5(base), before);
}

TEST_F(OverlayTest, OverlayIsReadableByItsOwnerOnly) {
    create_overlay(base, "qcow2", overlay, getuid(), getgid());
    struct stat st {};
    ASSERT_EQ(stat(overlay.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(st.st_uid, getuid());
    EXPECT_EQ(st.st_gid, getgid());
}

TEST_F(OverlayTest, MissingBaseIsNamedInTheError) {
    const std::string missing = (dir / "missing.qcow2").string();
    try {
        create_overlay(missing, "qcow2", overlay, getuid(), getgid());
        FAIL() << "created an overlay on a missing base";
    } catch (const Error &e) {
        std::string message = e.what();
        EXPECT_EQ(
            message.rfind("cannot create overlay " + overlay + " on base " + missing + ": ", 0), 0u)
            << message;
        EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
    // No half-made overlay is left behind.
    EXPECT_FALSE(fs::exists(overlay));
}

TEST_F(OverlayTest, RefusesToOverwriteAnExistingOverlay) {
    create_overlay(base, "qcow2", overlay, getuid(), getgid());
    try {
        create_overlay(base, "qcow2", overlay, getuid(), getgid());
        FAIL() << "overwrote an existing overlay";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), "cannot create overlay " + overlay + " on base " + base +
                                             ": the overlay already exists");
    }
    EXPECT_TRUE(fs::exists(overlay));
}

TEST_F(OverlayTest, RefusesRelativePaths) {
    EXPECT_THROW(create_overlay("base.qcow2", "qcow2", overlay, getuid(), getgid()), Error);
    EXPECT_THROW(create_overlay(base, "qcow2", "svm-7-node1.qcow2", getuid(), getgid()), Error);
}

}  // namespace
}  // namespace svm
