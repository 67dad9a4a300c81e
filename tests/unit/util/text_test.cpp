#include "util/text.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <unistd.h>

namespace svm {
namespace {

TEST(FileTail, GivesTheEndOfAFileOrAllOfAShortOne) {
    char path[] = "/tmp/svm-tail-test.XXXXXX";
    const int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    std::ofstream(path) << "first line\nsecond line\n";
    EXPECT_EQ(file_tail(path, 12), "second line\n");
    EXPECT_EQ(file_tail(path, 4096), "first line\nsecond line\n");
    unlink(path);
    EXPECT_EQ(file_tail(path, 4096), "");
}

}  // namespace
}  // namespace svm
