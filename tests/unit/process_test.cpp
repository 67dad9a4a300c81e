#include "process.h"

#include "error.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

namespace svm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RunProcess, ReportsTheExitStatus) {
    ProcessResult r = run_process({"/bin/sh", "-c", "exit 3"}, seconds(10));
    EXPECT_EQ(r.status, 3);
    EXPECT_FALSE(r.timed_out);
}

TEST(RunProcess, CapturesStdoutAndStderrApart) {
    ProcessResult r =
        run_process({"/bin/sh", "-c", "echo out; echo err >&2; echo more"}, seconds(10));
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out, "out\nmore\n");
    EXPECT_EQ(r.err, "err\n");
}

TEST(RunProcess, PassesArgumentsWithoutAShell) {
    ProcessResult r = run_process({"/bin/echo", "a b", "$HOME", ";", "*"}, seconds(10));
    EXPECT_EQ(r.out, "a b $HOME ; *\n");
}

TEST(RunProcess, GivesTheProgramDevNullAsStdin) {
    ProcessResult r = run_process({"/bin/cat"}, seconds(10));
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out, "");
    EXPECT_FALSE(r.timed_out);
}

TEST(RunProcess, KeepsAtMost64KiBOfOutput) {
    ProcessResult r = run_process({"/bin/sh", "-c", "head -c 1000000 /dev/zero"}, seconds(10));
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out.size(), kMaxCapturedOutput);
}

TEST(RunProcess, KillsTheProcessGroupOnTimeout) {
    // The shell's child sleeps too: the whole group must die, or the pipe would stay open.
    ProcessResult r =
        run_process({"/bin/sh", "-c", "echo started; sleep 30 & sleep 30"}, milliseconds(300));
    EXPECT_TRUE(r.timed_out);
    EXPECT_EQ(r.status, 128 + 9);
    EXPECT_EQ(r.out, "started\n");
}

TEST(RunProcess, ReturnsWhenTheProgramExitsEvenIfItsBackgroundChildHoldsTheOutput) {
    ProcessResult r = run_process({"/bin/sh", "-c", "sleep 3 & echo done"}, seconds(30));
    EXPECT_FALSE(r.timed_out);
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out, "done\n");
}

TEST(RunProcess, ReportsTheSignalThatEndedTheProgram) {
    ProcessResult r = run_process({"/bin/sh", "-c", "kill -TERM $$"}, seconds(10));
    EXPECT_EQ(r.status, 128 + 15);
    EXPECT_FALSE(r.timed_out);
}

TEST(RunProcess, DoesNotLeakDescriptors) {
    int fd = open("/dev/null", O_RDONLY);  // without O_CLOEXEC, as careless code does
    ASSERT_GE(fd, 0);
    ProcessResult r = run_process({"/bin/ls", "/proc/self/fd"}, seconds(10));
    close(fd);
    // 0, 1, 2 and the directory ls itself opened.
    EXPECT_EQ(r.out, "0\n1\n2\n3\n");
}

TEST(RunProcess, MissingProgramNamesIt) {
    try {
        run_process({"/usr/bin/no-such-program-svm"}, seconds(10));
        FAIL() << "ran a program that does not exist";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "cannot run /usr/bin/no-such-program-svm: No such file or directory");
    }
}

TEST(RunProcess, RefusesARelativeProgramPath) {
    try {
        run_process({"ls"}, seconds(10));
        FAIL() << "ran a program by relative path";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "cannot run 'ls': the program must be given by absolute path");
    }
}

TEST(FindProgram, FindsProgramsInTheSystemDirectories) {
    std::string sh = find_program("sh");
    EXPECT_TRUE(sh == "/usr/bin/sh" || sh == "/bin/sh") << sh;
}

TEST(FindProgram, MissingProgramListsWhereItLooked) {
    try {
        find_program("no-such-program-svm");
        FAIL() << "found a program that does not exist";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "program no-such-program-svm not found in /usr/bin:/usr/sbin:/bin:/sbin");
    }
}

}  // namespace
}  // namespace svm
