#include "accounting/running_jobs.h"

#include "accounting/job_records.h"

#include <gtest/gtest.h>

namespace svm {
namespace {

// Jobs as the admin tool gets them from slurmctld (tools/slurm_jobs.h): fields, not text.
std::vector<JobRecord> jobs() {
    return {
        {"7", "alice", true, {"node1"}, "x"},
        {"8", "bob", true, expand_hostlist("node[1-2]"),
         "slurm-vm:image=tiny;hostname=%25n-vm%25j"},
        {"9", "carol", true, {"vm7"}, ""},
        {"10", "dave", false, {"node1"}, ""},
        {"11", "erin", true, {"node3"}, ""},
        {"12", "frank", true, expand_hostlist("node[1-2]"),
         "site:ticket=4 slurm-vm:image=tiny;hostname=%25n-vm%25j"},
    };
}

// What `slurm-vm running` collects, one job at a time.
std::vector<RunningJob> jobs_running_on_host(const HostMap &map, const std::string &host,
                                             int64_t now) {
    std::vector<RunningJob> out;
    for (const JobRecord &job : jobs()) {
        for (RunningJob &j : running_on_host(job, map, host, now)) {
            out.push_back(std::move(j));
        }
    }
    return out;
}

TEST(RunningJobs, ListsBareJobsVmJobsAndJobsOnHostedVmNodes) {
    HostMap map;
    map.record_start("vm7", "node1", 100);
    const auto jobs = jobs_running_on_host(map, "node1", 200);
    ASSERT_EQ(jobs.size(), 4u);
    EXPECT_EQ(jobs[0].jobid, "7");
    EXPECT_EQ(jobs[0].user, "alice");
    EXPECT_EQ(jobs[0].kind, "bare");
    EXPECT_EQ(jobs[1].jobid, "8");
    EXPECT_EQ(jobs[1].kind, "vm node1-vm8 (image tiny)");
    EXPECT_EQ(jobs[2].jobid, "9");
    EXPECT_EQ(jobs[2].kind, "on VM node vm7");
    EXPECT_EQ(jobs[3].jobid, "12");
    EXPECT_EQ(jobs[3].kind, "vm node1-vm12 (image tiny)");
}

TEST(RunningJobs, IgnoresAVmNodeOnceItLeftTheHost) {
    HostMap map;
    map.record_start("vm7", "node1", 100);
    map.record_stop("vm7", 150);
    const auto jobs = jobs_running_on_host(map, "node1", 200);
    for (const auto &j : jobs) {
        EXPECT_NE(j.jobid, "9");
    }
}

TEST(RunningJobs, AnotherHostSeesOnlyItsOwn) {
    const auto jobs = jobs_running_on_host(HostMap{}, "node2", 200);
    ASSERT_EQ(jobs.size(), 2u);
    EXPECT_EQ(jobs[0].kind, "vm node2-vm8 (image tiny)");
    EXPECT_EQ(jobs[1].kind, "vm node2-vm12 (image tiny)");
}

TEST(RunningJobs, AJobThatIsNotRunningGivesNothing) {
    EXPECT_TRUE(
        running_on_host({"13", "u", false, {"node1"}, ""}, HostMap{}, "node1", 200).empty());
}

}  // namespace
}  // namespace svm
