#include "accounting/running_jobs.h"

#include <gtest/gtest.h>

#include <sstream>

namespace svm {
namespace {

const char *kJobs =
    "JobId=7 JobName=a UserId=alice(1001) JobState=RUNNING NodeList=node1 AdminComment=x\n"
    "JobId=8 JobName=b UserId=bob(1002) JobState=RUNNING NodeList=node[1-2] "
    "AdminComment=slurm-vm:image=tiny;vms=node1-vm8@node1,node2-vm8@node2\n"
    "JobId=9 JobName=c UserId=carol(1003) JobState=RUNNING NodeList=vm7\n"
    "JobId=10 JobName=d UserId=dave(1004) JobState=COMPLETED NodeList=node1\n"
    "JobId=11 JobName=e UserId=erin(1005) JobState=RUNNING NodeList=node3\n";

// What `slurm-vm running` collects, one scontrol line at a time.
std::vector<RunningJob> jobs_running_on_host(const std::string &oneliners, const HostMap &map,
                                             const std::string &host, int64_t now) {
    std::vector<RunningJob> out;
    std::istringstream in(oneliners);
    for (std::string line; std::getline(in, line);) {
        for (RunningJob &j : running_on_host(line, map, host, now)) {
            out.push_back(std::move(j));
        }
    }
    return out;
}

TEST(RunningJobs, ListsBareJobsVmJobsAndJobsOnHostedVmNodes) {
    HostMap map;
    map.record_start("vm7", "node1", 100);
    const auto jobs = jobs_running_on_host(kJobs, map, "node1", 200);
    ASSERT_EQ(jobs.size(), 3u);
    EXPECT_EQ(jobs[0].jobid, "7");
    EXPECT_EQ(jobs[0].user, "alice");
    EXPECT_EQ(jobs[0].kind, "bare");
    EXPECT_EQ(jobs[1].jobid, "8");
    EXPECT_EQ(jobs[1].kind, "vm node1-vm8 (image tiny)");
    EXPECT_EQ(jobs[2].jobid, "9");
    EXPECT_EQ(jobs[2].kind, "on VM node vm7");
}

TEST(RunningJobs, IgnoresAVmNodeOnceItLeftTheHost) {
    HostMap map;
    map.record_start("vm7", "node1", 100);
    map.record_stop("vm7", 150);
    const auto jobs = jobs_running_on_host(kJobs, map, "node1", 200);
    for (const auto &j : jobs) {
        EXPECT_NE(j.jobid, "9");
    }
}

TEST(RunningJobs, AnotherHostSeesOnlyItsOwn) {
    const auto jobs = jobs_running_on_host(kJobs, HostMap{}, "node2", 200);
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_EQ(jobs[0].kind, "vm node2-vm8 (image tiny)");
}

TEST(RunningJobs, AVmJobOnTwoVmsOfOneHostIsListedOncePerVm) {
    const auto jobs = running_on_host(
        "JobId=12 UserId=u(1) JobState=RUNNING NodeList=node[1-2] "
        "AdminComment=slurm-vm:image=tiny;vms=node1-vm12@host1,node2-vm12@host1",
        HostMap{}, "host1", 200);
    ASSERT_EQ(jobs.size(), 2u);
    EXPECT_EQ(jobs[0].kind, "vm node1-vm12 (image tiny)");
    EXPECT_EQ(jobs[1].kind, "vm node2-vm12 (image tiny)");
}

TEST(RunningJobs, ALineThatIsNotAJobGivesNothing) {
    EXPECT_TRUE(running_on_host("No jobs in the system", HostMap{}, "node1", 200).empty());
}

}  // namespace
}  // namespace svm
