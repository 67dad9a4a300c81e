// The cgroup v1 placement against a fake tree of plain folders and files in a temp dir: the
// layouts Slurm 22.05 uses, and the writes a move makes. The kernel's own checks (a cpuset
// without CPUs refusing tasks, the whole thread group moving) are for the cluster's tests.
#include "vm/job_cgroup.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace svm {
namespace {

namespace fs = std::filesystem;

class JobCgroupTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-cgroup-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        mount = (dir / "cgroup").string();
        proc = (dir / "proc").string();
    }
    void TearDown() override { fs::remove_all(dir); }

    // A cgroup folder as the kernel shows it: the member files exist, empty.
    std::string cgroup(const std::string &path) {
        fs::create_directories(path);
        write(path + "/cgroup.procs", "");
        write(path + "/tasks", "");
        return path;
    }
    // The extern step of job 42, uid 1000, under `prefix` (slurm_node1 or slurm).
    std::string step(const std::string &controller, const std::string &prefix = "slurm_node1") {
        return cgroup(mount + "/" + controller + "/" + prefix + "/uid_1000/job_42/step_extern");
    }
    void fake_process(pid_t pid, const std::vector<pid_t> &tids) {
        for (pid_t tid : tids) {
            fs::create_directories(proc + "/" + std::to_string(pid) + "/task/" +
                                   std::to_string(tid));
        }
    }
    static void write(const std::string &path, const std::string &text) {
        std::ofstream(path) << text;
    }
    static std::string read(const std::string &path) {
        std::ifstream in(path);
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }
    template <typename F>
    static std::string error_of(F &&f) {
        try {
            f();
        } catch (const Error &e) {
            return e.what();
        }
        return "no error";
    }

    fs::path dir;
    std::string mount, proc;
};

TEST_F(JobCgroupTest, NamesBothSlurmLayoutsMultipleSlurmdFirst) {
    EXPECT_EQ(
        extern_step_cgroup_candidates("/sys/fs/cgroup", "freezer", "node1", 1000, 42),
        (std::vector<std::string>{"/sys/fs/cgroup/freezer/slurm_node1/uid_1000/job_42/step_extern",
                                  "/sys/fs/cgroup/freezer/slurm/uid_1000/job_42/step_extern"}));
}

TEST_F(JobCgroupTest, RefusesNamesThatLeaveTheirFolder) {
    for (const char *node : {"", ".", "..", "a/b"}) {
        EXPECT_EQ(error_of([&] { extern_step_cgroup_candidates(mount, "cpuset", node, 1, 2); }),
                  "cgroup: node name '" + std::string(node) + "' cannot be a folder name");
    }
    EXPECT_EQ(error_of([&] { find_extern_step_cgroup(mount, "../etc", "node1", 1, 2); }),
              "cgroup: controller '../etc' cannot be a folder name");
}

TEST_F(JobCgroupTest, FindsTheMultipleSlurmdLayout) {
    const std::string freezer = step("freezer");
    EXPECT_EQ(find_extern_step_cgroup(mount, "freezer", "node1", 1000, 42), freezer);
    EXPECT_EQ(find_extern_step_cgroup(mount, "freezer", "node2", 1000, 42), std::nullopt);
    EXPECT_EQ(find_extern_step_cgroup(mount, "freezer", "node1", 1001, 42), std::nullopt);
    EXPECT_EQ(find_extern_step_cgroup(mount, "freezer", "node1", 1000, 43), std::nullopt);
    EXPECT_EQ(find_extern_step_cgroup(mount, "cpuset", "node1", 1000, 42), std::nullopt);
}

TEST_F(JobCgroupTest, FindsThePlainLayoutAndPrefersThePerNodeOne) {
    const std::string plain = step("cpuset", "slurm");
    EXPECT_EQ(find_extern_step_cgroup(mount, "cpuset", "node1", 1000, 42), plain);
    const std::string per_node = step("cpuset", "slurm_node1");
    EXPECT_EQ(find_extern_step_cgroup(mount, "cpuset", "node1", 1000, 42), per_node);
}

TEST_F(JobCgroupTest, IgnoresAFileWhereTheStepFolderShouldBe) {
    fs::create_directories(mount + "/memory/slurm/uid_1000/job_42");
    write(mount + "/memory/slurm/uid_1000/job_42/step_extern", "");
    EXPECT_EQ(find_extern_step_cgroup(mount, "memory", "node1", 1000, 42), std::nullopt);
}

TEST_F(JobCgroupTest, FindsEveryControllerOrNamesTheMissingOne) {
    for (const std::string &c : job_vm_controllers()) {
        if (c != "memory") {
            step(c);
        }
    }
    EXPECT_EQ(
        error_of([&] { find_extern_step_cgroups(mount, job_vm_controllers(), "node1", 1000, 42); }),
        "cgroup: job 42 has no extern step on node1 in the memory hierarchy (tried " + mount +
            "/memory/slurm_node1/uid_1000/job_42/step_extern and " + mount +
            "/memory/slurm/uid_1000/job_42/step_extern); is PrologFlags=Contain set and a "
            "cgroup plugin using memory configured?");
    step("memory");
    const auto found = find_extern_step_cgroups(mount, job_vm_controllers(), "node1", 1000, 42);
    ASSERT_EQ(found.size(), 4u);
    EXPECT_EQ(found.at("cpuacct"), mount + "/cpuacct/slurm_node1/uid_1000/job_42/step_extern");
}

TEST_F(JobCgroupTest, FindsTheExternStepsOneTaskFolder) {
    const std::string s = step("cpuacct");
    EXPECT_EQ(find_extern_task_cgroup(s), std::nullopt);
    cgroup(s + "/task_2");
    fs::create_directories(s + "/task_x");
    fs::create_directories(s + "/slurm_vm");
    write(s + "/task_9", "");  // a file, not a folder
    EXPECT_EQ(find_extern_task_cgroup(s), s + "/task_2");
    cgroup(s + "/task_0");
    EXPECT_EQ(error_of([&] { find_extern_task_cgroup(s); }),
              "cgroup: " + s + " has 2 task folders (task_0, task_2), an extern step has one");
    EXPECT_EQ(error_of([&] { find_extern_task_cgroup(mount + "/none"); }),
              "cgroup: cannot list " + mount + "/none: No such file or directory");
}

TEST_F(JobCgroupTest, MovesAProcessThroughCgroupProcs) {
    const std::string s = step("freezer");
    move_to_cgroup(s, 4242, CgroupMove::Process, proc);
    EXPECT_EQ(read(s + "/cgroup.procs"), "4242\n");
    EXPECT_EQ(cgroup_members(s), (std::vector<pid_t>{4242}));
}

TEST_F(JobCgroupTest, MovesEveryThreadThroughTasks) {
    const std::string s = step("cpuset");
    fake_process(4242, {4242, 4243, 4250});
    move_to_cgroup(s, 4242, CgroupMove::Threads, proc);
    EXPECT_EQ(read(s + "/tasks"), "4242\n4243\n4250\n");
    EXPECT_EQ(cgroup_members(s, "tasks"), (std::vector<pid_t>{4242, 4243, 4250}));
    EXPECT_EQ(read(s + "/cgroup.procs"), "");
}

TEST_F(JobCgroupTest, MovesTheRealCurrentProcessesThreadsListing) {
    // Our own /proc entry: at least the main thread, whose id is our pid.
    const std::string s = step("cpuset");
    move_to_cgroup(s, getpid(), CgroupMove::Threads);
    const auto tids = cgroup_members(s, "tasks");
    EXPECT_NE(std::find(tids.begin(), tids.end(), getpid()), tids.end());
}

TEST_F(JobCgroupTest, NamesTheFolderAndTheReasonWhenItCannotMove) {
    EXPECT_EQ(
        error_of([&] { move_to_cgroup(mount + "/freezer/none", 7, CgroupMove::Process); }),
        "cgroup: cannot open " + mount + "/freezer/none/cgroup.procs: No such file or directory");
    const std::string s = step("freezer");
    EXPECT_EQ(error_of([&] { move_to_cgroup(s, 4242, CgroupMove::Threads, proc); }),
              "cgroup: cannot move process 4242 into " + s + "/tasks: the process is gone");
    EXPECT_EQ(error_of([&] { move_to_cgroup(s, 0, CgroupMove::Process, proc); }),
              "cgroup: cannot move process 0 into " + s + ": not a process id");
    // A member file that refuses writes, as a cgroup that may not take the process.
    const std::string ro = cgroup(mount + "/cpuset/readonly");
    fs::remove(ro + "/cgroup.procs");
    fs::create_directories(ro + "/cgroup.procs");
    EXPECT_EQ(error_of([&] { move_to_cgroup(ro, 4242, CgroupMove::Process, proc); }),
              "cgroup: cannot open " + ro + "/cgroup.procs: Is a directory");
}

TEST_F(JobCgroupTest, ReadsMembersAndRefusesGarbage) {
    const std::string s = step("memory");
    write(s + "/cgroup.procs", "1\n22\n333\n");
    EXPECT_EQ(cgroup_members(s), (std::vector<pid_t>{1, 22, 333}));
    write(s + "/cgroup.procs", "1\nx\n");
    EXPECT_EQ(error_of([&] { cgroup_members(s); }),
              "cgroup: " + s + "/cgroup.procs: 'x' is not a process id");
}

TEST_F(JobCgroupTest, MakesAChildCpusetWithItsParentsCpusAndMems) {
    const std::string s = step("cpuset");
    write(s + "/cpuset.cpus", "2-3\n");
    write(s + "/cpuset.mems", "0\n");
    const std::string child = make_child_cgroup(s, "slurm_vm");
    EXPECT_EQ(child, s + "/slurm_vm");
    EXPECT_EQ(read(child + "/cpuset.cpus"), "2-3\n");
    EXPECT_EQ(read(child + "/cpuset.mems"), "0\n");
    // Kept, and its own values too, when it is there already.
    write(child + "/cpuset.cpus", "3\n");
    EXPECT_EQ(make_child_cgroup(s, "slurm_vm"), child);
    EXPECT_EQ(read(child + "/cpuset.cpus"), "3\n");
}

TEST_F(JobCgroupTest, MakesAChildElsewhereWithoutCpusetFiles) {
    const std::string s = step("freezer");
    const std::string child = make_child_cgroup(s, "slurm_vm");
    EXPECT_TRUE(fs::is_directory(child));
    EXPECT_FALSE(fs::exists(child + "/cpuset.cpus"));
    EXPECT_EQ(error_of([&] { make_child_cgroup(s, ".."); }),
              "cgroup: cgroup name '..' cannot be a folder name");
    EXPECT_EQ(error_of([&] { make_child_cgroup(mount + "/nope/x", "vm"); }),
              "cgroup: cannot make " + mount + "/nope/x/vm: No such file or directory");
}

TEST_F(JobCgroupTest, WritesAControlFileOrSaysWhy) {
    const std::string s = step("memory");
    write_cgroup_file(s, "memory.move_charge_at_immigrate", "3");
    EXPECT_EQ(read(s + "/memory.move_charge_at_immigrate"), "3");
    EXPECT_EQ(error_of([&] { write_cgroup_file(mount + "/none", "memory.limit_in_bytes", "1"); }),
              "cgroup: cannot write '1' to " + mount +
                  "/none/memory.limit_in_bytes: No such file or directory");
}

}  // namespace
}  // namespace svm
