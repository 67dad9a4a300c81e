#include "util/safe_fs.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace svm {
namespace {

namespace fs = std::filesystem;

class SafeFsTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-safefs-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        victim_ = dir_ + "/victim";
        std::ofstream(victim_) << "precious";
        chmod(victim_.c_str(), 0644);
    }
    void TearDown() override { fs::remove_all(dir_); }

    void make_socket(const std::string &path) {
        const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        ASSERT_GE(fd, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
        close(fd);
    }
    mode_t mode_of(const std::string &path) {
        struct stat st {};
        stat(path.c_str(), &st);
        return st.st_mode & 07777;
    }

    std::string dir_, victim_;
};

TEST_F(SafeFsTest, HandsOverASocketByDescriptor) {
    const std::string channels = dir_ + "/ch";
    fs::create_directory(channels);
    make_socket(channels + "/exec.0.sock");
    hand_over_socket(channels, "exec.0.sock", getuid(), getuid(), getgid());
    EXPECT_EQ(mode_of(channels + "/exec.0.sock"), 0600u);
}

TEST_F(SafeFsTest, RefusesASymlinkSwappedInForASocketAndLeavesItsTargetAlone) {
    const std::string channels = dir_ + "/ch";
    fs::create_directory(channels);
    fs::create_symlink(victim_, channels + "/exec.0.sock");
    try {
        hand_over_socket(channels, "exec.0.sock", getuid(), 12345, 12345);
        FAIL() << "a symlink was handed over";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("is not a socket (a symbolic link)"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_EQ(mode_of(victim_), 0644u);
    struct stat st {};
    stat(victim_.c_str(), &st);
    EXPECT_EQ(st.st_uid, getuid());
}

TEST_F(SafeFsTest, RefusesASocketOwnedBySomeoneElse) {
    const std::string channels = dir_ + "/ch";
    fs::create_directory(channels);
    make_socket(channels + "/exec.0.sock");
    EXPECT_THROW(hand_over_socket(channels, "exec.0.sock", getuid() + 1, 0, 0), Error);
}

TEST_F(SafeFsTest, OpensASocketOfTheFoldersOwnerForAConnect) {
    const std::string channels = dir_ + "/ch";
    fs::create_directory(channels);
    const int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(listener, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = channels + "/exec.0.sock";
    strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(listener, 1), 0);
    UniqueFd target = open_owned_socket(channels, "exec.0.sock");
    // Connecting through the descriptor reaches the very socket that was checked.
    const std::string via = "/proc/self/fd/" + std::to_string(target.get());
    const int client = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un to{};
    to.sun_family = AF_UNIX;
    strncpy(to.sun_path, via.c_str(), sizeof to.sun_path - 1);
    EXPECT_EQ(connect(client, reinterpret_cast<sockaddr *>(&to), sizeof to), 0) << strerror(errno);
    close(client);
    close(listener);
}

TEST_F(SafeFsTest, WillNotConnectThroughALinkOrToAFile) {
    const std::string channels = dir_ + "/ch";
    fs::create_directory(channels);
    // A link to a socket elsewhere (root's own services have sockets) is refused, not followed.
    make_socket(dir_ + "/elsewhere.sock");
    fs::create_symlink(dir_ + "/elsewhere.sock", channels + "/exec.0.sock");
    try {
        open_owned_socket(channels, "exec.0.sock");
        FAIL() << "a link was accepted";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), channels +
                                             "/exec.0.sock is not a socket (a symbolic link): "
                                             "refusing to connect to it");
    }
    std::ofstream(channels + "/exec.1.sock") << "x";
    EXPECT_THROW(open_owned_socket(channels, "exec.1.sock"), Error);
    EXPECT_THROW(open_owned_socket(channels, "exec.2.sock"), Error);
    // Nor is a folder that is a link.
    fs::create_directory_symlink(channels, dir_ + "/ch-link");
    make_socket(channels + "/exec.3.sock");
    EXPECT_THROW(open_owned_socket(dir_ + "/ch-link", "exec.3.sock"), Error);
    EXPECT_NO_THROW(open_owned_socket(channels, "exec.3.sock"));
}

TEST_F(SafeFsTest, WillNotConnectToASocketOfAnotherOwnerThanTheFolders) {
    if (getuid() != 0) {
        GTEST_SKIP() << "needs root to give a socket away";
    }
    // The user's folder holding root's socket (a hard link to one of root's services, say).
    const std::string channels = dir_ + "/ch";
    fs::create_directory(channels);
    make_socket(channels + "/exec.0.sock");
    ASSERT_EQ(chown(channels.c_str(), 12345, 12345), 0);
    try {
        open_owned_socket(channels, "exec.0.sock");
        FAIL() << "root's socket in a user's folder was accepted";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), channels +
                                             "/exec.0.sock is owned by uid 0, not by uid 12345 "
                                             "who owns its folder: refusing to connect to it");
    }
}

TEST_F(SafeFsTest, ConnectsToASocketRootHandedToAUserInRootsOwnFolder) {
    if (getuid() != 0) {
        GTEST_SKIP() << "needs root to give a socket away";
    }
    // A job VM's channel folder: root's, 0711, its sockets handed to the job's user.
    const std::string channels = dir_ + "/ch";
    fs::create_directory(channels);
    ASSERT_EQ(chmod(channels.c_str(), 0711), 0);
    make_socket(channels + "/exec.0.sock");
    hand_over_socket(channels, "exec.0.sock", 0, 12345, 12345);
    EXPECT_NO_THROW(open_owned_socket(channels, "exec.0.sock"));
    // A folder others may write to is no longer root's alone: only root's own socket then.
    ASSERT_EQ(chmod(channels.c_str(), 0777), 0);
    EXPECT_THROW(open_owned_socket(channels, "exec.0.sock"), Error);
}

TEST_F(SafeFsTest, RemoveTreeRemovesLinksNotTheirTargets) {
    const std::string tree = dir_ + "/tree";
    fs::create_directories(tree + "/sub/deeper");
    std::ofstream(tree + "/sub/deeper/f") << "x";
    fs::create_symlink(dir_, tree + "/link-to-parent");
    fs::create_symlink(victim_, tree + "/sub/link-to-file");
    remove_tree(tree);
    EXPECT_FALSE(fs::exists(tree));
    EXPECT_TRUE(fs::exists(victim_));
    EXPECT_EQ(mode_of(victim_), 0644u);
}

TEST_F(SafeFsTest, RemoveTreeOfALinkRemovesTheLinkOnly) {
    const std::string target = dir_ + "/kept";
    fs::create_directories(target);
    std::ofstream(target + "/f") << "x";
    fs::create_symlink(target, dir_ + "/channel");
    remove_tree(dir_ + "/channel");
    EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ + "/channel")));
    EXPECT_TRUE(fs::exists(target + "/f"));
}

TEST_F(SafeFsTest, RemoveTreeOfNothingIsFine) {
    EXPECT_NO_THROW(remove_tree(dir_ + "/nothing"));
    EXPECT_NO_THROW(remove_tree(dir_ + "/no/such/parent"));
}

TEST_F(SafeFsTest, HandOverFolderRefusesALink) {
    fs::create_symlink(dir_, dir_ + "/link");
    EXPECT_THROW(hand_over_folder(dir_ + "/link", 0, 0, 0700), Error);
    fs::create_directory(dir_ + "/real");
    hand_over_folder(dir_ + "/real", getuid(), getgid(), 0700);
    EXPECT_EQ(mode_of(dir_ + "/real"), 0700u);
}

}  // namespace
}  // namespace svm
