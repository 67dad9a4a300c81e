// The agent links the host's paths of Slurm's commands to itself where the image has none.
#include "guest/command_links.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace svm::agent {
namespace {

namespace fs = std::filesystem;

class CommandLinks : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-links.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        root_ = tmpl;
    }
    void TearDown() override { fs::remove_all(root_); }
    std::string link_of(const std::string &path) const {
        std::error_code ec;
        return fs::read_symlink(root_ + path, ec).string();
    }
    std::string root_;
};

TEST_F(CommandLinks, LinksTheHostsPathsTheImageLacksToTheAgent) {
    const auto problems =
        link_host_commands({"/usr/bin/srun", "/opt/slurm/bin/squeue"}, "/sbin/agent", root_);
    EXPECT_TRUE(problems.empty());
    EXPECT_EQ(link_of("/usr/bin/srun"), "/sbin/agent");
    EXPECT_EQ(link_of("/opt/slurm/bin/squeue"), "/sbin/agent");
}

TEST_F(CommandLinks, LeavesTheImagesOwnCommandsAndLinksAlone) {
    fs::create_directories(root_ + "/usr/bin");
    std::ofstream(root_ + "/usr/bin/srun") << "#!/bin/sh\necho the image's own srun\n";
    fs::create_symlink("/nowhere", root_ + "/usr/bin/squeue");  // dangling, still the image's
    EXPECT_TRUE(
        link_host_commands({"/usr/bin/srun", "/usr/bin/squeue"}, "/sbin/agent", root_).empty());
    EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(root_ + "/usr/bin/srun")));
    EXPECT_EQ(link_of("/usr/bin/squeue"), "/nowhere");
}

TEST_F(CommandLinks, SaysWhichPathItCouldNotLinkAndLinksTheOthers) {
    std::ofstream(root_ + "/usr") << "a file where a folder should be";
    const auto problems =
        link_host_commands({"/usr/bin/srun", "/bin/squeue"}, "/sbin/agent", root_);
    ASSERT_EQ(problems.size(), 1u);
    EXPECT_EQ(problems[0], "mkdir " + root_ + "/usr/bin: Not a directory");
    EXPECT_EQ(link_of("/bin/squeue"), "/sbin/agent");
}

}  // namespace
}  // namespace svm::agent
