#include "util/process.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

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

TEST(RunProcess, KeepsAtMost64KiBOfOutputAndSaysItCutIt) {
    ProcessResult r = run_process({"/bin/sh", "-c", "head -c 1000000 /dev/zero"}, seconds(10));
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out.size(), kMaxCapturedOutput);
    EXPECT_TRUE(r.out_truncated);
    EXPECT_FALSE(r.err_truncated);
}

TEST(RunProcess, OutputOfExactly64KiBIsWhole) {
    ProcessResult r = run_process({"/bin/sh", "-c", "head -c 65536 /dev/zero"}, seconds(10));
    EXPECT_EQ(r.out.size(), kMaxCapturedOutput);
    EXPECT_FALSE(r.out_truncated);
}

TEST(RunProcess, SaysWhenItCutStderr) {
    ProcessResult r =
        run_process({"/bin/sh", "-c", "echo out; head -c 100000 /dev/zero >&2"}, seconds(10));
    EXPECT_EQ(r.out, "out\n");
    EXPECT_FALSE(r.out_truncated);
    EXPECT_TRUE(r.err_truncated);
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

struct Line {
    std::string text;
    bool complete;
};

std::vector<Line> lines_of(const std::vector<std::string> &argv, ProcessResult &result,
                           milliseconds timeout = seconds(30)) {
    std::vector<Line> lines;
    result = run_process_lines(argv, timeout, [&lines](std::string_view line, bool complete) {
        lines.push_back({std::string(line), complete});
    });
    return lines;
}

TEST(RunProcessLines, StreamsEveryLineWithoutASizeCap) {
    // About 1.3 MB: twenty times what run_process keeps.
    unsigned long count = 0;
    std::string last;
    const ProcessResult r = run_process_lines({"/usr/bin/seq", "1", "200000"}, seconds(30),
                                              [&](std::string_view line, bool complete) {
                                                  EXPECT_TRUE(complete);
                                                  ++count;
                                                  last = line;
                                              });
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(count, 200000u);
    EXPECT_EQ(last, "200000");
    EXPECT_EQ(r.out, "");
    EXPECT_FALSE(r.out_truncated);
}

TEST(RunProcessLines, HandsOverALastLineWithoutNewlineAndEmptyLines) {
    ProcessResult r;
    const auto lines = lines_of({"/usr/bin/printf", "a\n\nb"}, r);
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0].text, "a");
    EXPECT_EQ(lines[1].text, "");
    EXPECT_EQ(lines[2].text, "b");
    EXPECT_TRUE(lines[2].complete);
}

TEST(RunProcessLines, CutsALineLongerThanTheLimitAndGoesOn) {
    ProcessResult r;
    const auto lines =
        lines_of({"/bin/sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo after"}, r);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0].text.size(), kMaxLineLength);
    EXPECT_FALSE(lines[0].complete);
    EXPECT_EQ(lines[1].text, "after");
    EXPECT_TRUE(lines[1].complete);
}

TEST(RunProcessLines, KeepsStderrApart) {
    ProcessResult r;
    const auto lines = lines_of({"/bin/sh", "-c", "echo out; echo err >&2; exit 4"}, r);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].text, "out");
    EXPECT_EQ(r.err, "err\n");
    EXPECT_EQ(r.status, 4);
}

TEST(RunProcessLines, KillsTheProcessGroupOnTimeout) {
    ProcessResult r;
    const auto lines =
        lines_of({"/bin/sh", "-c", "echo started; sleep 30 & sleep 30"}, r, milliseconds(300));
    EXPECT_TRUE(r.timed_out);
    EXPECT_EQ(r.status, 128 + 9);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0].text, "started");
}

TEST(RunProcessLines, AHandlerThatThrowsEndsAndReapsTheProgram) {
    const auto begin = std::chrono::steady_clock::now();
    pid_t pid = 0;
    try {
        run_process_lines({"/bin/sh", "-c", "echo $$; exec sleep 30"}, seconds(60),
                          [&pid](std::string_view line, bool) {
                              pid = std::stoi(std::string(line));
                              throw Error("enough");
                          });
        FAIL() << "the handler's exception was lost";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "enough");
    }
    EXPECT_LT(std::chrono::steady_clock::now() - begin, seconds(10));
    ASSERT_GT(pid, 0);
    // Reaped already: it is no longer our child.
    EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

TEST(LineSplitter, JoinsLinesSplitAcrossChunks) {
    std::vector<std::string> lines;
    LineSplitter split([&lines](std::string_view line, bool) { lines.emplace_back(line); });
    split.feed("ab");
    split.feed("c\nd");
    split.feed("\n\ne");
    split.finish();
    EXPECT_EQ(lines, (std::vector<std::string>{"abc", "d", "", "e"}));
}

TEST(ReadFileWithDeadline, ReadsAFileUpToItsBound) {
    EXPECT_EQ(read_file_with_deadline("/proc/self/cmdline", 1 << 20, seconds(5)).empty(), false);
    char tmpl[] = "/tmp/svm-read-XXXXXX";
    const int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "0123456789", 10), 10);
    close(fd);
    EXPECT_EQ(read_file_with_deadline(tmpl, 1 << 20, seconds(5)), "0123456789");
    EXPECT_EQ(read_file_with_deadline(tmpl, 4, seconds(5)), "0123");
    unlink(tmpl);
}

TEST(ReadFileWithDeadline, NamesAFileItCannotOpen) {
    try {
        read_file_with_deadline("/nonexistent/x", 100, seconds(5));
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "cannot read /nonexistent/x: No such file or directory");
    }
}

TEST(ReadFileWithDeadline, GivesUpWhenTheFileDoesNotAnswerInTime) {
    char tmpl[] = "/tmp/svm-fifo-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const std::string fifo = std::string(tmpl) + "/f";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);  // no writer: an open for reading waits for ever
    const auto t = std::chrono::steady_clock::now();
    try {
        read_file_with_deadline(fifo, 100, milliseconds(300));
        FAIL() << "no error";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()), "cannot read " + fifo + ": no answer within 300 ms");
    }
    EXPECT_LT(std::chrono::steady_clock::now() - t, seconds(3));
    unlink(fifo.c_str());
    rmdir(tmpl);
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
