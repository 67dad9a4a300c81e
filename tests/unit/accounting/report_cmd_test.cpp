// The accounting subcommands as the admin calls them: their command lines, exit statuses and
// output. Built by accounting/CMakeLists.txt, since these link svm_accounting, which the core's
// unit tests do not.
#include "accounting/report_cmd.h"

#include "accounting/usage_report.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace svm {
namespace {

std::vector<std::string> lines(const std::string &text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

struct Outcome {
    int status;
    std::string out, err;
};

template <typename Command>
Outcome run(Command command, const std::vector<std::string> &args) {
    testing::internal::CaptureStdout();
    testing::internal::CaptureStderr();
    const int status = command(args);
    fflush(stdout);
    fflush(stderr);
    Outcome r{status, testing::internal::GetCapturedStdout(), ""};
    r.err = testing::internal::GetCapturedStderr();
    return r;
}

int report(const std::vector<std::string> &args) {
    return cmd_report(args);
}

// slurmctld's jobs, as the admin tool reads them through Slurm's API.
void two_jobs(const std::function<void(const JobRecord &)> &on_job) {
    on_job({"41", "alice", true, {"node1"}, ""});
    on_job({"42", "bob", true, {"node1", "node2"}, "slurm-vm:image=tiny;hostname=%25n-vm%25j"});
}

int running(const std::vector<std::string> &args) {
    return cmd_running(args, two_jobs);
}

class ReportCommand : public testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-report-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        map_ = dir_ + "/host-map";
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string write(const std::string &name, const std::string &text) {
        const std::string path = dir_ + "/" + name;
        std::ofstream(path) << text;
        return path;
    }

    std::string dir_, map_;
};

// 5000 jobs are about 330 KB of sacct output: 1009 of 3000 were counted when sacct's output
// was cut at 64 KiB.
TEST_F(ReportCommand, CountsEveryJobOfSacctOutputLargerThan64KiB) {
    std::string sacct;
    for (int i = 1; i <= 5000; ++i) {
        sacct +=
            std::to_string(i) + "|u|node1|2|2026-01-01T10:00:00|2026-01-01T10:30:00|COMPLETED|\n";
    }
    ASSERT_GT(sacct.size(), 4u * 64 * 1024);
    const Outcome r = run(report, {"--from", "2026-01-01", "--to", "2026-01-02", "--format", "csv",
                                   "--map", map_, "--sacct-output", write("sacct", sacct)});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "");
    const auto out = lines(r.out);
    ASSERT_GE(out.size(), 2u);
    EXPECT_EQ(out[1], "host,node1,bare,5000,5000.0000,2500.0000");
}

TEST_F(ReportCommand, WithoutAWindowReportsYesterdayFromMidnightToMidnight) {
    const ReportWindow yesterday = default_report_window(static_cast<int64_t>(time(nullptr)));
    const Outcome r =
        run(report, {"--map", map_, "--sacct-output", write("sacct", ""), "--format=table"});
    EXPECT_EQ(r.status, 0) << r.err;
    ASSERT_FALSE(r.out.empty());
    EXPECT_EQ(lines(r.out)[0], "slurm-vm usage from " + format_local_time(yesterday.from) + " to " +
                                   format_local_time(yesterday.to));
    EXPECT_EQ(format_local_time(yesterday.to).substr(10), "T00:00:00");
    EXPECT_EQ(yesterday.to - yesterday.from, 86400) << "unless the day changed DST";
}

TEST_F(ReportCommand, OnlyFromRunsToTodayAtMidnight) {
    const ReportWindow yesterday = default_report_window(static_cast<int64_t>(time(nullptr)));
    const Outcome r = run(report, {"--from", "2000-01-01", "--format", "json", "--map", map_,
                                   "--sacct-output", write("sacct", "")});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("\"from\":\"2000-01-01T00:00:00\",\"to\":\"" +
                         format_local_time(yesterday.to) + "\""),
              std::string::npos)
        << r.out;
}

TEST_F(ReportCommand, UnknownOptionExitsWith2WithOneLineNamingItAndTheUsage) {
    const Outcome r = run(report, {"--from", "2026-01-01", "--bogus", "x"});
    EXPECT_EQ(r.status, 2);
    EXPECT_EQ(r.out, "");
    ASSERT_EQ(lines(r.err).size(), 1u) << r.err;
    EXPECT_EQ(r.err.rfind("slurm-vm report: unknown option '--bogus'; usage: slurm-vm report ", 0),
              0u)
        << r.err;
}

TEST_F(ReportCommand, UnknownShortOptionExitsWith2) {
    const Outcome r = run(report, {"-x"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("unknown option '-x'"), std::string::npos) << r.err;
}

TEST_F(ReportCommand, AnAmbiguousPrefixIsNamedAsSuch) {
    const Outcome r = run(report, {"--f", "csv"});  // --from or --format
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("ambiguous option '--f'"), std::string::npos) << r.err;
}

TEST_F(ReportCommand, AnOptionWithoutItsValueExitsWith2) {
    const Outcome r = run(report, {"--from"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("option '--from' needs a value"), std::string::npos) << r.err;
}

TEST_F(ReportCommand, BadValuesAndStrayWordsExitWith2) {
    for (const std::vector<std::string> &args : {std::vector<std::string>{"--from", "yesterday"},
                                                 {"--format", "xml"},
                                                 {"extra"},
                                                 {"--from", "2026-01-02", "--to", "2026-01-01"},
                                                 {"--to", "2000-01-01"}}) {
        const Outcome r = run(report, args);
        EXPECT_EQ(r.status, 2) << args[0];
        EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
    }
}

TEST_F(ReportCommand, HelpPrintsTheUsageAndTheDefaultWindow) {
    const Outcome r = run(report, {"--help"});
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out.rfind("usage: slurm-vm report ", 0), 0u) << r.out;
    EXPECT_NE(r.out.find("yesterday at 00:00"), std::string::npos) << r.out;
}

TEST_F(ReportCommand, MapStartStopAndListTakeTheirOptionsAnywhere) {
    EXPECT_EQ(run(cmd_map, {"--map", map_, "start", "vm7", "node1", "--at", "100"}).status, 0);
    EXPECT_EQ(run(cmd_map, {"stop", "--at=200", "vm7", "--map=" + map_}).status, 0);
    const Outcome list = run(cmd_map, {"list", "--map", map_});
    EXPECT_EQ(list.status, 0) << list.err;
    const auto out = lines(list.out);
    ASSERT_EQ(out.size(), 2u) << list.out;
    EXPECT_EQ(out[1].rfind("vm7                  node1                ", 0), 0u) << out[1];
    EXPECT_EQ(out[1].substr(out[1].size() - 19), format_local_time(200));
}

TEST_F(ReportCommand, MapUnknownOptionOrWrongWordsExitWith2) {
    EXPECT_EQ(run(cmd_map, {"list", "--bogus"}).status, 2);
    EXPECT_EQ(run(cmd_map, {"start", "vm7"}).status, 2);
    EXPECT_EQ(run(cmd_map, {"frobnicate"}).status, 2);
    EXPECT_EQ(run(cmd_map, {"list", "--at", "5"}).status, 2);
    const Outcome r = run(cmd_map, {"list", "--bogus"});
    EXPECT_EQ(r.err.rfind("slurm-vm map: unknown option '--bogus'; usage: ", 0), 0u) << r.err;
}

TEST_F(ReportCommand, RunningUnknownOptionOrNoHostExitWith2) {
    const Outcome r = run(running, {"node1", "--bogus"});
    EXPECT_EQ(r.status, 2);
    EXPECT_EQ(r.err.rfind("slurm-vm running: unknown option '--bogus'; usage: ", 0), 0u) << r.err;
    EXPECT_EQ(run(running, {"--map", map_}).status, 2);
    EXPECT_EQ(run(running, {"node1", "node2"}).status, 2);
}

TEST_F(ReportCommand, RunningListsTheJobsSlurmctldGivesForTheHost) {
    const Outcome r = run(running, {"node2", "--map", map_});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(lines(r.out), (std::vector<std::string>{
                                "JOBID      USER         NODE       WHERE",
                                "42         bob          node2      vm node2-vm42 (image tiny)"}));
}

}  // namespace
}  // namespace svm
