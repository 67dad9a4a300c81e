// Room for VM jobs and the bounds of root's stores: a full file system fails the job with one
// line, never the node; console logs and the error line survive a state folder without room.
#include "vm/job_storage.h"

#include "util/atomic_file.h"
#include "vm/job_vm.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>

namespace svm {
namespace {

namespace fs = std::filesystem;

class JobStorageTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-storage-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
    }
    void TearDown() override { fs::remove_all(dir); }

    void write(const std::string &name, std::size_t bytes, int age) {
        const std::string path = dir + "/" + name;
        std::ofstream(path) << std::string(bytes, 'x');
        const time_t when = time(nullptr) - age;
        timeval times[2] = {{when, 0}, {when, 0}};
        utimes(path.c_str(), times);
    }

    std::string dir;
};

TEST_F(JobStorageTest, AFileSystemWithoutRoomIsTheJobsFailureNamingWhatIsMissing) {
    EXPECT_NO_THROW(check_room(dir, 0, 0));
    try {
        check_room(dir + "/jobs/not-yet", 0, 1ULL << 40);  // more than any disk here
        FAIL() << "no error";
    } catch (const NoRoomError &e) {
        const std::string what = e.what();
        EXPECT_EQ(what.rfind("no room for a VM: " + dir + "/jobs/not-yet has ", 0), 0u) << what;
        EXPECT_NE(what.find(" MiB free, and a VM needs 1099511627776 MiB left free (min_free)"),
                  std::string::npos)
            << what;
    }
    try {
        check_room(dir, 1ULL << 40, 5);
        FAIL() << "no error";
    } catch (const NoRoomError &e) {
        EXPECT_NE(std::string(e.what()).find("a VM needs 1099511627776 MiB for its disk plus 5 "
                                             "MiB left free (min_free)"),
                  std::string::npos)
            << e.what();
    }
}

TEST_F(JobStorageTest, NoRoomForAFolderFailsTheJobAnythingElseIsANodeFault) {
    EXPECT_THROW(throw_folder_error("/var/lib/slurm-vm/jobs/x", ENOSPC), NoRoomError);
    EXPECT_THROW(throw_folder_error("/var/lib/slurm-vm/jobs/x", EDQUOT), NoRoomError);
    try {
        throw_folder_error("/var/lib/slurm-vm/jobs/x", EROFS);
        FAIL() << "no error";
    } catch (const NodeFaultError &e) {
        EXPECT_STREQ(e.what(), "cannot create /var/lib/slurm-vm/jobs/x: Read-only file system");
    }
}

TEST_F(JobStorageTest, ReadsTheGuestsDiskSizeFromAQcow2HeaderOrARawFile) {
    std::string header = std::string("QFI\xfb", 4) + std::string(20, '\0');
    for (int shift = 56; shift >= 0; shift -= 8) {  // 3 GiB + 1 byte, big-endian
        header.push_back(static_cast<char>(((3ULL << 30) + 1) >> shift & 0xff));
    }
    write_file_atomically(dir + "/disk.qcow2", header, 0644);
    EXPECT_EQ(disk_size_mib(dir + "/disk.qcow2", "qcow2"), 3073u);
    write("disk.raw", 1024 * 1024 + 1, 0);
    EXPECT_EQ(disk_size_mib(dir + "/disk.raw", "raw"), 2u);
    EXPECT_THROW(disk_size_mib(dir + "/disk.raw", "qcow2"), Error);
    EXPECT_THROW(disk_size_mib(dir + "/none", "raw"), Error);
}

TEST_F(JobStorageTest, ConsoleLogsKeepWithinTheirBoundOldestFirstButNotARunningVmsLog) {
    fs::create_directories(dir + "/state/jobs/svm-5-node1");  // job 5 still has its VM
    write("svm-5-node1.console.log", 600 * 1024, 900);        // the oldest, but still written to
    write("svm-1-node1.console.log", 600 * 1024, 800);
    write("svm-1-node1.console.log.0", 600 * 1024, 850);  // virtlogd's rotation
    write("svm-2-node1.console.log", 300 * 1024, 100);
    write("slurmd-node1.log", 5 * 1024 * 1024, 1000);  // not a console log
    const auto removed = prune_console_logs(dir, dir + "/state", 1);
    EXPECT_EQ(removed, (std::vector<std::string>{dir + "/svm-1-node1.console.log.0",
                                                 dir + "/svm-1-node1.console.log"}));
    EXPECT_TRUE(fs::exists(dir + "/svm-5-node1.console.log"));
    EXPECT_TRUE(fs::exists(dir + "/svm-2-node1.console.log"));
    EXPECT_TRUE(fs::exists(dir + "/slurmd-node1.log"));
}

// The reason a VM did not start must reach the job even when the state folder's file system has
// no room for it: it goes to the channel folder (run_dir) instead.
TEST_F(JobStorageTest, TheReasonAVmDidNotStartSurvivesAStateFolderWithoutRoom) {
    Config config;
    config.state_dir = dir + "/state-is-a-file";
    config.run_dir = dir + "/run";
    std::ofstream(config.state_dir) << "x";  // nothing can be made below it
    record_job_vm_error(config, 7, "node1", "slurm-vm: no room for a VM");
    EXPECT_TRUE(job_has_vm(config, 7, "node1"));
    EXPECT_EQ(job_vm_error(config, 7, "node1"), "slurm-vm: no room for a VM");
}

}  // namespace
}  // namespace svm
