#include "vm/orphans.h"

#include "util/error.h"
#include "vm/libvirt_handles.h"
#include "vm/vm_lifecycle.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

namespace svm {
namespace {

namespace fs = std::filesystem;

TEST(DomainName, IsPrefixJobIdAndNode) {
    EXPECT_EQ(domain_name_for(7, "node1"), "svm-7-node1");
    EXPECT_EQ(domain_name_for(4294967295u, "rack-1.c_2"), "svm-4294967295-rack-1.c_2");
}

TEST(DomainName, RejectsNodeNameWithSlash) {
    try {
        domain_name_for(7, "../etc");
        FAIL() << "accepted a node name with '/'";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "node name '../etc': expected letters, digits, '.', '_' or '-'");
    }
    EXPECT_THROW(domain_name_for(7, ""), Error);
}

TEST(DomainName, ParsesJobIdAsTheFirstFieldAndKeepsDashesInTheNode) {
    auto parsed = parse_domain_name("svm-42-rack-1-node-3");
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->first, 42u);
    EXPECT_EQ(parsed->second, "rack-1-node-3");
}

TEST(DomainName, ParseInvertsDomainNameFor) {
    auto parsed = parse_domain_name(domain_name_for(123, "node1"));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->first, 123u);
    EXPECT_EQ(parsed->second, "node1");
}

TEST(DomainName, RejectsNamesThatAreNotOurs) {
    for (const char *name : {"test", "svm-", "svm-7", "svm-7-", "svm--node1", "svm-x-node1",
                             "svm-007-node1", "svm-+7-node1", "svm-4294967296-node1",
                             "svm-7-node/1", "svm-7-node 1", "SVM-7-node1", "xsvm-7-node1"}) {
        EXPECT_FALSE(parse_domain_name(name).has_value()) << name;
    }
}

std::string test_domain_xml(const std::string &name) {
    return "<domain type='test'><name>" + name +
           "</name><memory>65536</memory><os><type>hvm</type></os></domain>";
}

class OrphansTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-orphans-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        fs::create_directories(dir / "state" / "jobs");
        fs::create_directories(dir / "run");
        for (const char *name : {"svm-7-node1", "svm-8-node1", "svm-7-node2"}) {
            VmLifecycle(conn.get(), name).create(test_domain_xml(name));
        }
    }
    void TearDown() override { fs::remove_all(dir); }

    void touch(const fs::path &path) { std::ofstream(path) << "x"; }

    std::set<std::string> running_domains() {
        std::set<std::string> names;
        for (const char *name : {"svm-7-node1", "svm-8-node1", "svm-7-node2"}) {
            if (lookup_domain(conn.get(), name)) {
                names.insert(name);
            }
        }
        return names;
    }

    ConnectionPtr conn = open_connection("test:///default");
    fs::path dir;
    std::function<bool(uint32_t)> only_job_8_live = [](uint32_t jobid) { return jobid == 8; };
};

TEST_F(OrphansTest, FindsOnlyThisNodesDomainsOfDeadJobs) {
    EXPECT_EQ(find_orphan_domains(conn.get(), "node1", only_job_8_live),
              std::vector<std::string>{"svm-7-node1"});
}

TEST_F(OrphansTest, FindsNothingWhenAllJobsAreLive) {
    EXPECT_TRUE(find_orphan_domains(conn.get(), "node1", [](uint32_t) { return true; }).empty());
}

TEST_F(OrphansTest, RemovesTheDeadJobsDomainOverlayAndChannelDirOnly) {
    const fs::path jobs = dir / "state" / "jobs";
    const fs::path run = dir / "run";
    fs::create_directories(jobs / "svm-7-node1");
    fs::create_directories(jobs / "svm-8-node1");
    fs::create_directories(jobs / "svm-7-node2");
    touch(jobs / "svm-7-node1.bak");
    fs::create_directories(jobs / "svm-007-node1");
    fs::create_directories(run / "svm-7-node1");
    touch(run / "svm-7-node1" / "agent.sock");
    fs::create_directories(run / "svm-8-node1");
    fs::create_directories(run / "svm-7-node2");
    fs::create_directories(run / "other");

    OrphanReport report = remove_orphans(conn.get(), "node1", only_job_8_live,
                                         (dir / "state").string(), run.string());

    EXPECT_EQ(report.destroyed_domains, std::vector<std::string>{"svm-7-node1"});
    EXPECT_EQ(report.removed_state_dirs, std::vector<std::string>{(jobs / "svm-7-node1").string()});
    EXPECT_EQ(report.removed_channel_dirs,
              std::vector<std::string>{(run / "svm-7-node1").string()});
    EXPECT_TRUE(report.errors.empty());

    EXPECT_EQ(running_domains(), (std::set<std::string>{"svm-8-node1", "svm-7-node2"}));
    EXPECT_FALSE(fs::exists(jobs / "svm-7-node1"));
    EXPECT_TRUE(fs::exists(jobs / "svm-8-node1"));
    EXPECT_TRUE(fs::exists(jobs / "svm-7-node2"));
    EXPECT_TRUE(fs::exists(jobs / "svm-7-node1.bak"));
    EXPECT_TRUE(fs::exists(jobs / "svm-007-node1"));
    EXPECT_FALSE(fs::exists(run / "svm-7-node1"));
    EXPECT_TRUE(fs::exists(run / "svm-8-node1"));
    EXPECT_TRUE(fs::exists(run / "svm-7-node2"));
    EXPECT_TRUE(fs::exists(run / "other"));
}

TEST_F(OrphansTest, RemovesLeftoverFilesOfADeadJobWhoseDomainIsAlreadyGone) {
    fs::create_directories(dir / "state" / "jobs" / "svm-5-node1");
    fs::create_directories(dir / "run" / "svm-5-node1");
    OrphanReport report = remove_orphans(
        conn.get(), "node1", [](uint32_t jobid) { return jobid != 5; }, (dir / "state").string(),
        (dir / "run").string());
    EXPECT_TRUE(report.destroyed_domains.empty());
    EXPECT_EQ(report.removed_state_dirs.size(), 1u);
    EXPECT_EQ(report.removed_channel_dirs.size(), 1u);
    EXPECT_EQ(running_domains().size(), 3u);
}

TEST_F(OrphansTest, RemovesAChannelDirSymlinkWithoutFollowingIt) {
    const fs::path victim = dir / "victim";
    fs::create_directories(victim);
    touch(victim / "keep");
    fs::create_directory_symlink(victim, dir / "run" / "svm-7-node1");
    OrphanReport report = remove_orphans(conn.get(), "node1", only_job_8_live,
                                         (dir / "state").string(), (dir / "run").string());
    EXPECT_FALSE(fs::exists(fs::symlink_status(dir / "run" / "svm-7-node1")));
    EXPECT_TRUE(fs::exists(victim / "keep"));
}

TEST_F(OrphansTest, MissingDirectoriesHoldNothing) {
    OrphanReport report = remove_orphans(conn.get(), "node1", only_job_8_live,
                                         (dir / "nostate").string(), (dir / "norun").string());
    EXPECT_EQ(report.destroyed_domains, std::vector<std::string>{"svm-7-node1"});
    EXPECT_TRUE(report.errors.empty());
}

}  // namespace
}  // namespace svm
