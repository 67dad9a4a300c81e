#include "accounting/usage_report.h"

#include "util/error.h"
#include "util/process.h"

#include <gtest/gtest.h>
#include <json-c/json.h>

#include <cstdlib>
#include <ctime>
#include <optional>
#include <sstream>
#include <string_view>

namespace svm {
namespace {

int64_t at(const char *text) {
    return parse_local_time(text, "test time");
}

const int64_t kFrom = at("2026-01-01");
const int64_t kTo = at("2026-01-02");

// A VM job on node1 and node2, a bare job on node2, a bare job on VM node vm7 (on node1).
const char *kDay =
    "100|alice|node[1-2]|4|2026-01-01T10:00:00|2026-01-01T11:00:00|COMPLETED|"
    "slurm-vm:image=tiny;hostname=%25n-vm%25j\n"
    "101|bob|node2|2|2026-01-01T12:00:00|2026-01-01T14:00:00|COMPLETED|\n"
    "102|carol|vm7|1|2026-01-01T15:00:00|2026-01-01T15:30:00|FAILED|\n";

HostMap vm7_on_node1() {
    HostMap map;
    map.record_start("vm7", "node1", at("2025-12-01"));
    return map;
}

std::vector<std::string> lines(const std::string &text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

// The jobs of sacct output whose every line is well formed.
std::vector<JobUsage> jobs_of(const std::string &sacct) {
    std::vector<JobUsage> jobs;
    for (const std::string &line : lines(sacct)) {
        jobs.push_back(parse_sacct_line(line));
    }
    return jobs;
}

// The report over sacct output, fed line by line as `slurm-vm report` streams it.
UsageReport report_of(const std::string &sacct, const HostMap &map, int64_t from, int64_t to,
                      int64_t now) {
    UsageAccumulator usage(map, from, to, now);
    for (const std::string &line : lines(sacct)) {
        usage.add_sacct_line(line);
    }
    return usage.finish();
}

// The name by view: a std::string made from a literal would be a temporary the returned reference
// seems to GCC 14 to point into (-Wdangling-reference).
const HostUsage &host(const UsageReport &r, std::string_view name) {
    for (const HostUsage &h : r.hosts) {
        if (h.host == name) {
            return h;
        }
    }
    throw std::runtime_error("no host " + std::string(name));
}

TEST(ParseSacct, ReadsFieldsAndExpandsNodes) {
    const auto jobs = jobs_of(kDay);
    ASSERT_EQ(jobs.size(), 3u);
    EXPECT_EQ(jobs[0].jobid, "100");
    EXPECT_EQ(jobs[0].user, "alice");
    EXPECT_EQ(jobs[0].nodes, (std::vector<std::string>{"node1", "node2"}));
    EXPECT_EQ(jobs[0].alloc_cpus, 4u);
    EXPECT_EQ(jobs[0].start, at("2026-01-01T10:00"));
    EXPECT_EQ(*jobs[0].end - *jobs[0].start, 3600);
    EXPECT_EQ(jobs[2].state, "FAILED");
    EXPECT_EQ(jobs[1].admin_comment, "");
}

TEST(ParseSacct, RunningAndPendingJobsHaveNoEndOrNoStart) {
    const auto jobs = jobs_of(
        "7|u|node1|1|2026-01-01T10:00:00|Unknown|RUNNING|\n"
        "8|u|None assigned|1|Unknown|Unknown|PENDING|\n");
    ASSERT_EQ(jobs.size(), 2u);
    EXPECT_TRUE(jobs[0].start.has_value());
    EXPECT_FALSE(jobs[0].end.has_value());
    EXPECT_FALSE(jobs[1].start.has_value());
    EXPECT_TRUE(jobs[1].nodes.empty());
}

TEST(ParseSacct, KeepsABarInTheLastColumn) {
    const auto jobs = jobs_of("7|u|node1|1|2026-01-01T10:00:00|Unknown|RUNNING|site|note\n");
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_EQ(jobs[0].admin_comment, "site|note");
}

TEST(ParseSacct, ReportsMalformedLinesWithTheirNumbersAndSkipsThem) {
    const UsageReport r = report_of(
        "1|u|node1|1|2026-01-01T10:00:00|Unknown|RUNNING|\n"
        "2|u|node1|1|2026-01-01T10:00:00\n"
        "3|u|node1|x|2026-01-01T10:00:00|Unknown|RUNNING|\n"
        "4|u|node1|1|yesterday|Unknown|RUNNING|\n"
        "5|u|node[1-|1|2026-01-01T10:00:00|Unknown|RUNNING|\n"
        "|u|node1|1|2026-01-01T10:00:00|Unknown|RUNNING|\n",
        HostMap{}, kFrom, kTo, kTo);
    ASSERT_EQ(r.hosts.size(), 1u);
    EXPECT_EQ(host(r, "node1").bare.jobs, 1u);
    const std::vector<std::string> &warnings = r.warnings;
    ASSERT_EQ(warnings.size(), 5u);
    EXPECT_EQ(warnings[0],
              "sacct output line 2: expected 8 '|'-separated fields "
              "(JobID,User,NodeList,AllocCPUS,Start,End,State,AdminComment), got 5");
    EXPECT_EQ(warnings[1], "sacct output line 3: AllocCPUS 'x': expected a number");
    EXPECT_EQ(warnings[2],
              "sacct output line 4: Start 'yesterday': expected YYYY-MM-DD[THH:MM[:SS]]");
    EXPECT_EQ(warnings[3].rfind("sacct output line 5: ", 0), 0u) << warnings[3];
    EXPECT_EQ(warnings[4], "sacct output line 6: empty JobID");
}

TEST(ParseSacct, ALineThrowsItsReason) {
    try {
        parse_sacct_line("1|u|node1|x|2026-01-01T10:00:00|Unknown|RUNNING|");
        FAIL() << "accepted a bad line";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "AllocCPUS 'x': expected a number");
    }
}

TEST(ParseSacct, EmptyLinesKeepTheirNumberAndACarriageReturnIsDropped) {
    UsageAccumulator usage(HostMap{}, kFrom, kTo, kTo);
    usage.add_sacct_line("");
    usage.add_sacct_line("1|u|node1|1|2026-01-01T10:00:00|2026-01-01T11:00:00|COMPLETED|\r");
    usage.add_sacct_line("2|u|node1|x|2026-01-01T10:00:00|2026-01-01T11:00:00|COMPLETED|");
    const UsageReport r = usage.finish();
    EXPECT_EQ(host(r, "node1").bare.jobs, 1u);
    EXPECT_EQ(r.warnings,
              std::vector<std::string>{"sacct output line 3: AllocCPUS 'x': expected a number"});
}

TEST(LocalTime, AcceptsDateMinuteAndSecondForms) {
    EXPECT_EQ(at("2026-01-01T00:00"), at("2026-01-01"));
    EXPECT_EQ(at("2026-01-01T10:30:15") - at("2026-01-01"), 10 * 3600 + 30 * 60 + 15);
    EXPECT_EQ(format_local_time(at("2026-03-04T05:06:07")), "2026-03-04T05:06:07");
}

TEST(LocalTime, RejectsWhatIsNotADate) {
    for (const char *bad : {"2026-1-01", "2026-01-01 10:00", "2026-01-01T10", "+026-01-01",
                            "2026-01-01T10:00Z", "tomorrow", ""}) {
        try {
            parse_local_time(bad, "--from");
            FAIL() << "accepted " << bad;
        } catch (const Error &e) {
            EXPECT_EQ(std::string(e.what()),
                      std::string("--from '") + bad + "': expected YYYY-MM-DD[THH:MM[:SS]]");
        }
    }
    try {
        parse_local_time("2026-02-30", "--to");
        FAIL() << "accepted February 30";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "--to '2026-02-30': no such date or time");
    }
}

TEST(UsageReport, ChargesVmJobsBareJobsAndVmNodeJobsToTheirHosts) {
    const UsageReport r = report_of(kDay, vm7_on_node1(), kFrom, kTo, kTo);
    ASSERT_EQ(r.hosts.size(), 2u);
    EXPECT_TRUE(r.warnings.empty());

    const HostUsage &node1 = host(r, "node1");
    EXPECT_EQ(node1.vm_jobs.jobs, 1u);
    EXPECT_DOUBLE_EQ(node1.vm_jobs.cpu_hours, 2.0);  // half of 4 CPUs for 1 h
    EXPECT_DOUBLE_EQ(node1.vm_jobs.elapsed_hours, 1.0);
    EXPECT_EQ(node1.vm_node_jobs.jobs, 1u);  // job 102 on vm7
    EXPECT_DOUBLE_EQ(node1.vm_node_jobs.cpu_hours, 0.5);
    EXPECT_EQ(node1.bare.jobs, 0u);
    EXPECT_EQ(node1.total.jobs, 2u);
    EXPECT_DOUBLE_EQ(node1.total.cpu_hours, 2.5);
    EXPECT_DOUBLE_EQ(node1.total.elapsed_hours, 1.5);

    const HostUsage &node2 = host(r, "node2");
    EXPECT_EQ(node2.vm_jobs.jobs, 1u);
    EXPECT_DOUBLE_EQ(node2.vm_jobs.cpu_hours, 2.0);
    EXPECT_EQ(node2.bare.jobs, 1u);
    EXPECT_DOUBLE_EQ(node2.bare.cpu_hours, 4.0);  // 2 CPUs for 2 h
    EXPECT_DOUBLE_EQ(node2.bare.elapsed_hours, 2.0);
    EXPECT_EQ(node2.total.jobs, 2u);

    ASSERT_EQ(r.images.size(), 1u);
    EXPECT_EQ(r.images[0].image, "tiny");
    EXPECT_EQ(r.images[0].usage.jobs, 1u);
    EXPECT_DOUBLE_EQ(r.images[0].usage.cpu_hours, 4.0);
}

TEST(UsageReport, VmNodeOutsideItsMappedIntervalIsABareNode) {
    HostMap map;
    map.record_start("vm7", "node1", at("2026-01-01T16:00"));  // after job 102 started
    const UsageReport r = report_of(kDay, map, kFrom, kTo, kTo);
    EXPECT_EQ(host(r, "vm7").bare.jobs, 1u);
    EXPECT_EQ(host(r, "node1").vm_node_jobs.jobs, 0u);
}

TEST(UsageReport, TwoVmNodesOfOneJobOnOneHostCountTheJobOnce) {
    HostMap map;
    map.record_start("vm7", "host1", at("2025-12-01"));
    map.record_start("vm8", "host1", at("2025-12-01"));
    const UsageReport r = report_of(
        "5|u|vm[7-8]|4|2026-01-01T10:00:00|2026-01-01T11:00:00|COMPLETED|\n", map, kFrom, kTo, kTo);
    ASSERT_EQ(r.hosts.size(), 1u);
    EXPECT_EQ(r.hosts[0].host, "host1");
    EXPECT_EQ(r.hosts[0].vm_node_jobs.jobs, 1u);
    EXPECT_DOUBLE_EQ(r.hosts[0].vm_node_jobs.cpu_hours, 4.0);
    EXPECT_DOUBLE_EQ(r.hosts[0].vm_node_jobs.elapsed_hours, 2.0);  // node-hours
}

TEST(UsageReport, ClipsJobsToTheWindowAndRunningJobsToNow) {
    const char *jobs =
        "1|u|node3|3|2025-12-31T23:00:00|2026-01-01T01:00:00|COMPLETED|\n"
        "2|u|node4|2|2026-01-01T23:00:00|Unknown|RUNNING|\n"
        "3|u|node5|8|2025-12-30T00:00:00|2025-12-31T00:00:00|COMPLETED|\n";
    const UsageReport after = report_of(jobs, HostMap{}, kFrom, kTo, kTo + 86400);
    EXPECT_DOUBLE_EQ(host(after, "node3").bare.cpu_hours, 3.0);  // 1 of its 2 hours
    EXPECT_DOUBLE_EQ(host(after, "node4").bare.cpu_hours, 2.0);  // up to the window's end
    EXPECT_EQ(after.hosts.size(), 2u);                           // node5 ran before the window

    const UsageReport during = report_of(jobs, HostMap{}, kFrom, kTo, at("2026-01-01T23:30"));
    EXPECT_DOUBLE_EQ(host(during, "node4").bare.cpu_hours, 1.0);  // half an hour so far
}

TEST(UsageReport, MalformedCommentIsWarnedAndChargedToTheNodes) {
    const UsageReport r = report_of(
        "9|u|node1|1|2026-01-01T10:00:00|2026-01-01T11:00:00|COMPLETED|"
        "slurm-vm:hostname=x\n",
        HostMap{}, kFrom, kTo, kTo);
    ASSERT_EQ(r.warnings.size(), 1u);
    EXPECT_EQ(r.warnings[0],
              "job 9: admin comment 'slurm-vm:hostname=x': no image; charged to its nodes");
    EXPECT_EQ(host(r, "node1").vm_jobs.jobs, 1u);
}

TEST(UsageReport, EmptyWindowGivesHeadersOnly) {
    const UsageReport r = report_of(kDay, vm7_on_node1(), kFrom, kFrom, kTo);
    EXPECT_TRUE(r.hosts.empty());
    EXPECT_TRUE(r.images.empty());
    EXPECT_EQ(render_report(r, ReportFormat::Csv),
              "section,name,class,jobs,cpu_hours,elapsed_hours\n");
    EXPECT_EQ(render_report(r, ReportFormat::Table),
              "slurm-vm usage from 2026-01-01T00:00:00 to 2026-01-01T00:00:00\n\n"
              "HOST  CLASS  JOBS  CPU_HOURS  ELAPSED_HOURS\n\n"
              "IMAGE  JOBS  CPU_HOURS  ELAPSED_HOURS\n");
    EXPECT_EQ(render_report(r, ReportFormat::Json),
              "{\"from\":\"2026-01-01T00:00:00\",\"to\":\"2026-01-01T00:00:00\",\"hosts\":[],"
              "\"images\":[],\"warnings\":[]}\n");
}

TEST(UsageReport, CsvHasOneRowPerHostClassAndPerImage) {
    const UsageReport r = report_of(kDay, vm7_on_node1(), kFrom, kTo, kTo);
    const std::vector<std::string> expected{
        "section,name,class,jobs,cpu_hours,elapsed_hours",
        "host,node1,bare,0,0.0000,0.0000",
        "host,node1,vm_jobs,1,2.0000,1.0000",
        "host,node1,vm_node_jobs,1,0.5000,0.5000",
        "host,node1,total,2,2.5000,1.5000",
        "host,node2,bare,1,4.0000,2.0000",
        "host,node2,vm_jobs,1,2.0000,1.0000",
        "host,node2,vm_node_jobs,0,0.0000,0.0000",
        "host,node2,total,2,6.0000,3.0000",
        "image,tiny,vm_jobs,1,4.0000,1.0000",
    };
    EXPECT_EQ(lines(render_report(r, ReportFormat::Csv)), expected);
}

TEST(UsageReport, TableAlignsColumnsAndShowsClassesThatHappened) {
    const UsageReport r = report_of(kDay, vm7_on_node1(), kFrom, kTo, kTo);
    const std::vector<std::string> expected{
        "slurm-vm usage from 2026-01-01T00:00:00 to 2026-01-02T00:00:00",
        "",
        "HOST   CLASS         JOBS  CPU_HOURS  ELAPSED_HOURS",
        "node1  vm_jobs          1       2.00           1.00",
        "node1  vm_node_jobs     1       0.50           0.50",
        "node1  total            2       2.50           1.50",
        "node2  bare             1       4.00           2.00",
        "node2  vm_jobs          1       2.00           1.00",
        "node2  total            2       6.00           3.00",
        "",
        "IMAGE  JOBS  CPU_HOURS  ELAPSED_HOURS",
        "tiny      1       4.00           1.00",
    };
    EXPECT_EQ(lines(render_report(r, ReportFormat::Table)), expected);
}

TEST(UsageReport, JsonHasHostsWithEveryClassAndImages) {
    const UsageReport r = report_of(kDay, vm7_on_node1(), kFrom, kTo, kTo);
    json_object *root = json_tokener_parse(render_report(r, ReportFormat::Json).c_str());
    ASSERT_NE(root, nullptr);
    json_object *hosts = json_object_object_get(root, "hosts");
    ASSERT_EQ(json_object_array_length(hosts), 2u);
    json_object *node1 = json_object_array_get_idx(hosts, 0);
    EXPECT_STREQ(json_object_get_string(json_object_object_get(node1, "host")), "node1");
    for (const char *cls : {"total", "bare", "vm_jobs", "vm_node_jobs"}) {
        json_object *u = json_object_object_get(node1, cls);
        ASSERT_NE(u, nullptr) << cls;
        EXPECT_TRUE(json_object_is_type(json_object_object_get(u, "jobs"), json_type_int));
        EXPECT_TRUE(json_object_is_type(json_object_object_get(u, "cpu_hours"), json_type_double));
        EXPECT_NE(json_object_object_get(u, "elapsed_hours"), nullptr);
    }
    EXPECT_DOUBLE_EQ(json_object_get_double(json_object_object_get(
                         json_object_object_get(node1, "total"), "cpu_hours")),
                     2.5);
    json_object *images = json_object_object_get(root, "images");
    ASSERT_EQ(json_object_array_length(images), 1u);
    EXPECT_STREQ(json_object_get_string(
                     json_object_object_get(json_object_array_get_idx(images, 0), "image")),
                 "tiny");
    EXPECT_EQ(json_object_array_length(json_object_object_get(root, "warnings")), 0u);
    json_object_put(root);
}

// 5000 jobs are about 350 KB of sacct output: 1009 of 3000 were counted when the output was
// cut at 64 KiB.
TEST(UsageReport, CountsEveryJobOfSacctOutputLargerThan64KiB) {
    const char *script =
        "i=1; while [ $i -le 5000 ]; do "
        "echo \"$i|u|node1|2|2026-01-01T10:00:00|2026-01-01T10:30:00|COMPLETED|\"; "
        "i=$((i + 1)); done";
    UsageAccumulator usage(HostMap{}, kFrom, kTo, kTo);
    std::size_t bytes = 0;
    const ProcessResult r = run_process_lines({"/bin/sh", "-c", script}, std::chrono::seconds(60),
                                              [&](std::string_view line, bool complete) {
                                                  bytes += line.size() + 1;
                                                  usage.add_sacct_line(line, complete);
                                              });
    ASSERT_EQ(r.status, 0);
    ASSERT_GT(bytes, 4 * kMaxCapturedOutput);
    const UsageReport report = usage.finish();
    EXPECT_TRUE(report.warnings.empty()) << report.warnings[0];
    EXPECT_EQ(host(report, "node1").bare.jobs, 5000u);
    EXPECT_DOUBLE_EQ(host(report, "node1").bare.cpu_hours, 5000.0);
}

TEST(UsageReport, ALineCutForLengthIsSkippedWithAWarning) {
    UsageAccumulator usage(HostMap{}, kFrom, kTo, kTo);
    usage.add_sacct_line("1|u|node1|1|2026-01-01T10:00:00|2026-01-01T11:00:00|COMPLETED|");
    usage.add_sacct_line(std::string(100, 'x'), false);  // what LineSplitter kept of it
    const UsageReport r = usage.finish();
    EXPECT_EQ(host(r, "node1").bare.jobs, 1u);
    EXPECT_EQ(r.warnings,
              std::vector<std::string>{"sacct output line 2: longer than 100 bytes; skipped"});
}

TEST(UsageReport, KeepsAHundredWarningsAndCountsTheRest) {
    UsageAccumulator usage(HostMap{}, kFrom, kTo, kTo);
    for (int i = 0; i < 150; ++i) {
        usage.add_sacct_line("garbage");
    }
    const UsageReport r = usage.finish();
    ASSERT_EQ(r.warnings.size(), kMaxReportWarnings + 1);
    EXPECT_EQ(r.warnings[99].rfind("sacct output line 100: ", 0), 0u) << r.warnings[99];
    EXPECT_EQ(r.warnings.back(), "50 more warnings not shown");
}

// Sets TZ for one test, then puts the old zone back for the others.
class LocalZone {
  public:
    explicit LocalZone(const char *zone) {
        if (const char *old = getenv("TZ")) {
            old_ = old;
        }
        setenv("TZ", zone, 1);
        tzset();
    }
    ~LocalZone() {
        if (old_) {
            setenv("TZ", old_->c_str(), 1);
        } else {
            unsetenv("TZ");
        }
        tzset();
    }

  private:
    std::optional<std::string> old_;
};

TEST(DefaultReportWindow, IsYesterdayFromMidnightToMidnight) {
    ReportWindow w = default_report_window(at("2026-03-15T13:45:10"));
    EXPECT_EQ(format_local_time(w.from), "2026-03-14T00:00:00");
    EXPECT_EQ(format_local_time(w.to), "2026-03-15T00:00:00");

    w = default_report_window(at("2026-03-15"));  // at midnight: the day that just ended
    EXPECT_EQ(format_local_time(w.from), "2026-03-14T00:00:00");
    EXPECT_EQ(format_local_time(w.to), "2026-03-15T00:00:00");

    w = default_report_window(at("2026-01-01T08:00"));
    EXPECT_EQ(format_local_time(w.from), "2025-12-31T00:00:00");
    EXPECT_EQ(format_local_time(w.to), "2026-01-01T00:00:00");
}

TEST(DefaultReportWindow, ADaylightSavingDayHas23Hours) {
    const LocalZone berlin("Europe/Berlin");
    const ReportWindow w = default_report_window(at("2026-03-30T12:00"));
    EXPECT_EQ(format_local_time(w.from), "2026-03-29T00:00:00");
    EXPECT_EQ(format_local_time(w.to), "2026-03-30T00:00:00");
    EXPECT_EQ(w.to - w.from, 23 * 3600);
}

TEST(ReportFormat, AcceptsTheThreeNamesOnly) {
    EXPECT_EQ(parse_report_format("table"), ReportFormat::Table);
    EXPECT_EQ(parse_report_format("csv"), ReportFormat::Csv);
    EXPECT_EQ(parse_report_format("json"), ReportFormat::Json);
    try {
        parse_report_format("xml");
        FAIL() << "accepted xml";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "format 'xml': expected table, csv or json");
    }
}

}  // namespace
}  // namespace svm
