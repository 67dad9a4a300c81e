// What the exec client does in slurmstepd's place after task_init (exec/task_setup.h), checked
// against what Slurm 22.05 does for a native task.
#include "exec/task_setup.h"
#include "util/error.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace svm {
namespace {

using Argv = std::vector<std::string>;

// ---- --multi-prog ---------------------------------------------------------------------------

TEST(MultiProg, RecognisesSrunsArgvByTheFilesText) {
    const std::string text = "0 hostname\n";
    EXPECT_TRUE(is_multi_prog_argv({"conf", text}, text));
    EXPECT_TRUE(is_multi_prog_argv({"conf", text, "extra"}, text));
    EXPECT_FALSE(is_multi_prog_argv({"conf", "other"}, text));
    EXPECT_FALSE(is_multi_prog_argv({"conf"}, text));
    EXPECT_FALSE(is_multi_prog_argv({"conf", text}, std::nullopt));
}

TEST(MultiProg, PicksTheLineOfTheRankWithRangesListsAndStar) {
    const std::string conf = "# comment\n\n0-1,4 echo low %t %o\n2 echo two\n* echo rest %t %o\n";
    EXPECT_EQ(multi_prog_argv(conf, 0, {}).argv, (Argv{"echo", "low", "0", "0"}));
    EXPECT_EQ(multi_prog_argv(conf, 1, {}).argv, (Argv{"echo", "low", "1", "1"}));
    EXPECT_EQ(multi_prog_argv(conf, 4, {}).argv, (Argv{"echo", "low", "4", "2"}));
    EXPECT_EQ(multi_prog_argv(conf, 2, {}).argv, (Argv{"echo", "two"}));
    // '*': the offset is the rank itself.
    EXPECT_EQ(multi_prog_argv(conf, 3, {}).argv, (Argv{"echo", "rest", "3", "3"}));
}

TEST(MultiProg, OffsetsCountAcrossTheRangesOfALine) {
    const std::string conf = "1,3-5,9 prog %o\n";
    EXPECT_EQ(multi_prog_argv(conf, 1, {}).argv, (Argv{"prog", "0"}));
    EXPECT_EQ(multi_prog_argv(conf, 3, {}).argv, (Argv{"prog", "1"}));
    EXPECT_EQ(multi_prog_argv(conf, 5, {}).argv, (Argv{"prog", "3"}));
    EXPECT_EQ(multi_prog_argv(conf, 9, {}).argv, (Argv{"prog", "4"}));
}

TEST(MultiProg, QuotesEscapesAndContinuedLines) {
    const std::string conf =
        "0 printf '%s|%t' a\\ b 'c d'\n"
        "1 echo one\\\n"
        "  two\n"
        "2 echo x%ty%qz\n";
    // Inside quotes nothing is replaced; %q is dropped, as Slurm does.
    EXPECT_EQ(multi_prog_argv(conf, 0, {}).argv, (Argv{"printf", "%s|%t", "a b", "c d"}));
    EXPECT_EQ(multi_prog_argv(conf, 1, {}).argv, (Argv{"echo", "one", "two"}));
    EXPECT_EQ(multi_prog_argv(conf, 2, {}).argv, (Argv{"echo", "x2yz"}));
}

TEST(MultiProg, ALinesContinuationIsNotReadAsALineOfItsOwn) {
    const std::string conf = "0 echo a \\\n1 b\n1 echo real\n";
    EXPECT_EQ(multi_prog_argv(conf, 1, {}).argv, (Argv{"echo", "real"}));
}

TEST(MultiProg, AppendsTheWordsAfterTheFile) {
    EXPECT_EQ(multi_prog_argv("* echo %t\n", 3, {"x", "y z"}).argv,
              (Argv{"echo", "3", "x", "y z"}));
}

TEST(MultiProg, NamesWhatIsWrong) {
    auto none = multi_prog_argv("0 echo zero\n", 1, {});
    EXPECT_TRUE(none.argv.empty());
    EXPECT_EQ(none.error, "no line for task 1");

    auto bare = multi_prog_argv("# x\n0-3\n", 1, {});
    EXPECT_TRUE(bare.argv.empty());
    EXPECT_EQ(bare.error, "line 2: no program after the task ranks");

    auto quote = multi_prog_argv("0 echo 'open\n", 0, {});
    EXPECT_TRUE(quote.argv.empty());
    EXPECT_EQ(quote.error, "line 1: a quote (') is not closed");

    EXPECT_FALSE(multi_prog_argv("* echo\n", -1, {}).error.empty());
}

TEST(MultiProg, IgnoresABadRangeAsSlurmDoes) {
    // "x" and "1-2a" are ignored with an error in slurmd's log; the next range still counts.
    EXPECT_EQ(multi_prog_argv("x,1-2a,3 echo %o\n", 3, {}).argv, (Argv{"echo", "0"}));
    EXPECT_EQ(multi_prog_argv("x,1-2a,3 echo %o\n", 1, {}).error, "no line for task 1");
}

TEST(MultiProg, StopsAt127Words) {
    std::string line = "0 prog";
    for (int i = 0; i < 200; ++i) {
        line += " a";
    }
    EXPECT_EQ(multi_prog_argv(line + "\n", 0, {"extra"}).argv.size(), 127u);
}

// ---- task prolog output -----------------------------------------------------------------------

TEST(TaskPrologOutput, ExportsUnsetsAndPrints) {
    std::vector<std::string> env = {"KEEP=1", "GONE=2", "TP_VAR=old"};
    const std::string printed = apply_task_prolog_output(
        "export TP_VAR=new value = with spaces\n"
        "export   SPACED  =x\n"
        "unset GONE  \n"
        "print hello from the prolog\n"
        "ignored line\n"
        "export NOEQUALS\n"
        "print   last",
        env);
    EXPECT_EQ(printed, "hello from the prolog\nlast");
    EXPECT_EQ(env,
              (std::vector<std::string>{"KEEP=1", "TP_VAR=new value = with spaces", "SPACED=x"}));
}

TEST(TaskPrologOutput, NeedsTheKeywordAtTheStartOfTheLine) {
    std::vector<std::string> env;
    EXPECT_EQ(apply_task_prolog_output(" export A=1\nexportB=2\nunset\nunset \n", env), "");
    EXPECT_TRUE(env.empty());
}

TEST(TaskPrologOutput, EnvironmentHelpers) {
    std::vector<std::string> env = {"A=1", "AB=2"};
    EXPECT_EQ(env_get(env, "A"), "1");
    EXPECT_EQ(env_get(env, "B"), std::nullopt);
    env_set(env, "A", "3");
    env_unset(env, "AB");
    EXPECT_EQ(env, (std::vector<std::string>{"A=3"}));
}

TEST(TaskProlog, RunsWithTheGivenEnvironmentAndCapturesBothStreams) {
    const std::string dir = ::testing::TempDir();
    const std::string path = dir + "/svm-task-prolog-test.sh";
    {
        std::ofstream script(path);
        script << "#!/bin/sh\necho \"export SEEN=$GIVEN\"\necho oops >&2\nread x && echo "
                  "stdin-not-empty\nexit 3\n";
    }
    std::filesystem::permissions(path, std::filesystem::perms::owner_all);
    const std::vector<std::string> env = {"GIVEN=yes", "PATH=/usr/bin:/bin"};
    const PrologRun run = run_task_prolog(path, env);
    ASSERT_TRUE(WIFEXITED(run.status));
    EXPECT_EQ(WEXITSTATUS(run.status), 3);
    EXPECT_EQ(run.output, "export SEEN=yes\noops\n");
    std::filesystem::remove(path);
}

// ---- srun's --task-prolog -------------------------------------------------------------------

TEST(TaskPrologOption, FindsEverySpellingGetoptLongTakes) {
    EXPECT_EQ(find_task_prolog_option({"-n2", "--task-prolog=/a"}), "/a");
    EXPECT_EQ(find_task_prolog_option({"--task-prolog", "/b", "-l"}), "/b");
    EXPECT_EQ(find_task_prolog_option({"--task-p", "c"}), "c");
    EXPECT_EQ(find_task_prolog_option({"--task-pro=d", "--task-prolog=e"}), "e");
    EXPECT_EQ(find_task_prolog_option({"--task-epilog=x", "--task-=y", "--task=z"}), std::nullopt);
    EXPECT_EQ(find_task_prolog_option({"--", "--task-prolog=x"}), std::nullopt);
    EXPECT_EQ(find_task_prolog_option({"--task-prolog"}), std::nullopt);
}

// ---- resource limits ----------------------------------------------------------------------

const std::set<std::string> kAll(protocol::rlimit_names().begin(), protocol::rlimit_names().end());

TEST(Rlimits, PropagateResourceLimitsSemantics) {
    EXPECT_EQ(propagated_rlimits("", ""), kAll);
    EXPECT_EQ(propagated_rlimits("ALL", ""), kAll);
    EXPECT_TRUE(propagated_rlimits("NONE", "").empty());
    EXPECT_EQ(propagated_rlimits("CORE,RLIMIT_NOFILE", ""),
              (std::set<std::string>{"CORE", "NOFILE"}));
    std::set<std::string> all_but = kAll;
    all_but.erase("MEMLOCK");
    all_but.erase("STACK");
    EXPECT_EQ(propagated_rlimits("NONE", "MEMLOCK STACK"), all_but);
    EXPECT_TRUE(propagated_rlimits("", "ALL").empty());
    EXPECT_THROW(propagated_rlimits("CORE,BOGUS", ""), Error);
}

TEST(Rlimits, AppliesTheSubmitHostsSoftLimitsWithinTheHardOnes) {
    std::vector<std::string> env = {"SLURM_RLIMIT_NOFILE=512",
                                    "SLURM_RLIMIT_CORE=1000000",
                                    "SLURM_RLIMIT_STACK=18446744073709551615",
                                    "SLURM_RLIMIT_NPROC=U99999",
                                    "SLURM_RLIMIT_CPU=U50",
                                    "SLURM_RLIMIT_AS=garbage",
                                    "OTHER=1"};
    const std::uint64_t inf = ResourceLimit::kUnlimited;
    const std::vector<std::pair<std::string, CurrentLimit>> current = {
        {"NOFILE", {1024, 4096}}, {"CORE", {0, 1000}}, {"STACK", {8388608, inf}},
        {"NPROC", {100, 1000}},   {"CPU", {inf, inf}}, {"AS", {inf, inf}},
        {"FSIZE", {inf, inf}}};
    // The admin propagates NOFILE, CORE and STACK; NPROC and CPU the user asked for (U).
    const auto limits = task_limits(env, {"NOFILE", "CORE", "STACK"}, current);
    EXPECT_EQ(limits, (std::vector<ResourceLimit>{{"NOFILE", 512, 4096},
                                                  {"CORE", 1000, 1000},  // reduced to the max
                                                  {"STACK", inf, inf},
                                                  {"NPROC", 100, 1000},  // above max: unchanged
                                                  {"CPU", 50, inf},
                                                  {"AS", inf, inf},  // unparsable: ignored
                                                  {"FSIZE", inf, inf}}));
    // Users do not see SLURM_RLIMIT_*.
    EXPECT_EQ(env, (std::vector<std::string>{"OTHER=1"}));
}

TEST(Rlimits, LeavesLimitsTheAdminDoesNotPropagate) {
    std::vector<std::string> env = {"SLURM_RLIMIT_NOFILE=512"};
    const auto limits = task_limits(env, {}, {{"NOFILE", {1024, 4096}}});
    EXPECT_EQ(limits, (std::vector<ResourceLimit>{{"NOFILE", 1024, 4096}}));
    EXPECT_TRUE(env.empty());
}

}  // namespace
}  // namespace svm
