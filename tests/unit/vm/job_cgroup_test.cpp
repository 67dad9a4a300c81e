// The cgroup v1 placement against a fake tree of plain folders and files in a temp dir: the
// layouts Slurm 22.05 uses, and the writes a move makes. The kernel's own checks (a cpuset
// without CPUs refusing tasks, the whole thread group moving) are for the cluster's tests.
#include "vm/job_cgroup.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
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
    // /proc/<pid>/stat with the parent id: what process_descendants reads.
    void fake_parent(pid_t pid, pid_t parent) {
        fs::create_directories(proc + "/" + std::to_string(pid));
        write(proc + "/" + std::to_string(pid) + "/stat",
              std::to_string(pid) + " (p) S " + std::to_string(parent) + " 0 0\n");
    }
    // The folders Slurm makes for job 42's extern step, with a task_3 folder in cpuacct and
    // memory (jobacct_gather/cgroup), and the slurm_vm child the kernel would make complete.
    void slurm_tree() {
        for (const std::string &c : job_vm_controllers()) {
            const std::string s = step(c);
            if (c == "cpuset") {
                write(s + "/cpuset.cpus", "1\n");
                write(s + "/cpuset.mems", "0\n");
                cgroup(s + "/slurm_vm");
            } else if (c == "cpuacct" || c == "memory") {
                cgroup(s + "/task_3/slurm_vm");
                if (c == "memory") {
                    write(s + "/task_3/slurm_vm/memory.move_charge_at_immigrate", "");
                }
            } else {
                cgroup(s + "/slurm_vm");
            }
        }
    }
    std::string job42(const std::string &controller) {
        return mount + "/" + controller + "/slurm_node1/uid_1000/job_42";
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

TEST_F(JobCgroupTest, PlansTheVmBelowTheStepOrItsTaskFolderAndNamesWhatIsMissing) {
    step("freezer");
    const std::string acct = step("cpuacct");
    cgroup(acct + "/task_3");
    const std::string mem = step("memory");  // no task folder: jobacct_gather/linux
    const VmCgroupPlan plan = plan_vm_cgroups(mount, job_vm_controllers(), "node1", 1000, 42);
    EXPECT_EQ(plan.parents, (std::vector<std::pair<std::string, std::string>>{
                                {"freezer", job42("freezer") + "/step_extern"},
                                {"cpuacct", acct + "/task_3"},
                                {"memory", mem}}));
    EXPECT_EQ(plan.missing, std::vector<std::string>{"cpuset"});
    const VmCgroupPlan none = plan_vm_cgroups(mount, job_vm_controllers(), "node2", 1000, 42);
    EXPECT_TRUE(none.parents.empty());
    EXPECT_EQ(none.missing, job_vm_controllers());
}

TEST_F(JobCgroupTest, MovesTheVmsProcessesAndTheirChildrenIntoEachController) {
    slurm_tree();
    fake_parent(500, 1);    // QEMU
    fake_parent(600, 1);    // virtiofsd
    fake_parent(601, 600);  // its sandbox child
    fake_parent(700, 1);    // someone else's
    const VmCgroupPlan plan = plan_vm_cgroups(mount, job_vm_controllers(), "node1", 1000, 42);
    const VmCgroupPlacement placed = move_into_vm_cgroups(plan, {500, 600}, proc);
    ASSERT_EQ(placed.folders.size(), 4u);
    EXPECT_EQ(placed.folders[0],
              std::make_pair(std::string("freezer"), job42("freezer") + "/step_extern/slurm_vm"));
    EXPECT_EQ(placed.folders[2], std::make_pair(std::string("cpuacct"),
                                                job42("cpuacct") + "/step_extern/task_3/slurm_vm"));
    for (const auto &[controller, folder] : placed.folders) {
        EXPECT_EQ(read(folder + "/cgroup.procs"), "500\n600\n601\n") << controller;
    }
    EXPECT_EQ(
        read(job42("memory") + "/step_extern/task_3/slurm_vm/memory.move_charge_at_immigrate"),
        "3");
    EXPECT_EQ(read(job42("cpuset") + "/step_extern/slurm_vm/cpuset.cpus"), "1\n");
    EXPECT_TRUE(placed.notes.empty());
}

TEST_F(JobCgroupTest, AKernelWithoutChargeMovingIsANoteNotAnError) {
    slurm_tree();
    fake_parent(500, 1);
    const std::string mem = job42("memory") + "/step_extern/task_3/slurm_vm";
    fs::remove(mem + "/memory.move_charge_at_immigrate");
    fs::create_directories(mem + "/memory.move_charge_at_immigrate");  // refuses the write
    const VmCgroupPlan plan = plan_vm_cgroups(mount, {"memory"}, "node1", 1000, 42);
    const VmCgroupPlacement placed = move_into_vm_cgroups(plan, {500}, proc);
    EXPECT_EQ(read(mem + "/cgroup.procs"), "500\n");
    EXPECT_EQ(placed.notes,
              std::vector<std::string>{
                  "this kernel does not move memory charges with a process "
                  "(memory.move_charge_at_immigrate: Is a directory): the memory a VM used before "
                  "it joined the job's cgroup stays charged where it was (libvirt's), and is not "
                  "in the job's accounting or limit"});
}

TEST_F(JobCgroupTest, FallsBackToThreadsAndOtherwiseNamesTheController) {
    slurm_tree();
    fake_parent(500, 1);
    fake_process(500, {500, 501});
    const std::string freezer = job42("freezer") + "/step_extern/slurm_vm";
    fs::remove(freezer + "/cgroup.procs");
    fs::create_directories(freezer + "/cgroup.procs");  // refuses the whole process
    move_into_vm_cgroups(plan_vm_cgroups(mount, {"freezer"}, "node1", 1000, 42), {500}, proc);
    EXPECT_EQ(read(freezer + "/tasks"), "500\n501\n");

    const std::string cpuset = job42("cpuset") + "/step_extern/slurm_vm";
    fs::remove(cpuset + "/cgroup.procs");
    fs::create_directories(cpuset + "/cgroup.procs");
    fs::remove(cpuset + "/tasks");
    fs::create_directories(cpuset + "/tasks");  // and every thread
    EXPECT_EQ(error_of([&] {
                  move_into_vm_cgroups(plan_vm_cgroups(mount, {"cpuset"}, "node1", 1000, 42), {500},
                                       proc);
              }),
              "cannot move the VM into the job's cpuset cgroup: cgroup: cannot open " + cpuset +
                  "/cgroup.procs: Is a directory");
}

// Removal, against bare folders: rmdir of a real cgroup ignores its control files, rmdir of a
// plain folder does not.
TEST_F(JobCgroupTest, RemovesTheVmFoldersThenTheJobsFoldersBottomUp) {
    const std::string freezer = job42("freezer");
    const std::string memory = job42("memory");
    const std::string cpuset = job42("cpuset");
    fs::create_directories(freezer + "/step_extern/slurm_vm");
    fs::create_directories(memory + "/step_extern/task_3/slurm_vm");
    fs::create_directories(cpuset + "/step_extern");  // no VM there: not ours to touch
    const CgroupCleanup r = remove_vm_cgroups(mount, job_vm_controllers(), "node1", 1000, 42);
    EXPECT_TRUE(r.problems.empty()) << r.problems.front();
    EXPECT_FALSE(fs::exists(mount + "/freezer/slurm_node1/uid_1000"));
    EXPECT_FALSE(fs::exists(mount + "/memory/slurm_node1/uid_1000"));
    EXPECT_TRUE(fs::is_directory(mount + "/freezer/slurm_node1"));
    EXPECT_TRUE(fs::is_directory(cpuset + "/step_extern"));
    EXPECT_EQ(r.removed,
              (std::vector<std::string>{freezer + "/step_extern/slurm_vm", freezer + "/step_extern",
                                        freezer, mount + "/freezer/slurm_node1/uid_1000",
                                        memory + "/step_extern/task_3/slurm_vm",
                                        memory + "/step_extern/task_3", memory + "/step_extern",
                                        memory, mount + "/memory/slurm_node1/uid_1000"}));
}

TEST_F(JobCgroupTest, LeavesFoldersOtherJobsStillUse) {
    const std::string freezer = job42("freezer");
    fs::create_directories(freezer + "/step_extern/slurm_vm");
    fs::create_directories(mount + "/freezer/slurm_node1/uid_1000/job_43/step_0");
    const CgroupCleanup r = remove_vm_cgroups(mount, {"freezer"}, "node1", 1000, 42);
    EXPECT_TRUE(r.problems.empty());
    EXPECT_FALSE(fs::exists(freezer));
    EXPECT_TRUE(fs::is_directory(mount + "/freezer/slurm_node1/uid_1000/job_43/step_0"));
}

TEST_F(JobCgroupTest, SaysWhichVmFolderIsStillInUseAndLeavesItsParents) {
    const std::string freezer = job42("freezer");
    fs::create_directories(freezer + "/step_extern/slurm_vm");
    write(freezer + "/step_extern/slurm_vm/cgroup.procs", "9\n");  // not empty: in use
    const CgroupCleanup r =
        remove_vm_cgroups(mount, {"freezer"}, "node1", 1000, 42, std::chrono::milliseconds(0));
    EXPECT_EQ(r.problems, std::vector<std::string>{"cgroup: " + freezer +
                                                   "/step_extern/slurm_vm is still in use: "
                                                   "Directory not empty"});
    EXPECT_TRUE(fs::is_directory(freezer + "/step_extern/slurm_vm"));
    EXPECT_TRUE(r.removed.empty());
}

TEST_F(JobCgroupTest, WaitsOnceInAllForVmFoldersStillInUse) {
    for (const std::string &c : job_vm_controllers()) {
        fs::create_directories(job42(c) + "/step_extern/slurm_vm");
        write(job42(c) + "/step_extern/slurm_vm/cgroup.procs", "9\n");
    }
    const auto start = std::chrono::steady_clock::now();
    const CgroupCleanup r = remove_vm_cgroups(mount, job_vm_controllers(), "node1", 1000, 42,
                                              std::chrono::milliseconds(500));
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.problems.size(), 4u);
    EXPECT_GE(took, std::chrono::milliseconds(500));
    EXPECT_LT(took, std::chrono::milliseconds(1500));  // not 500 ms per folder
}

TEST_F(JobCgroupTest, RemovesNothingOfAJobWithoutVmFoldersAndAcceptsTheOtherLayout) {
    fs::create_directories(job42("freezer") + "/step_extern");
    fs::create_directories(mount + "/cpuset/slurm/uid_1000/job_42/step_extern/slurm_vm");
    const CgroupCleanup r = remove_vm_cgroups(mount, {"freezer", "cpuset"}, "node1", 1000, 42);
    EXPECT_TRUE(r.problems.empty());
    EXPECT_TRUE(fs::is_directory(job42("freezer") + "/step_extern"));
    EXPECT_FALSE(fs::exists(mount + "/cpuset/slurm/uid_1000"));
    EXPECT_TRUE(remove_vm_cgroups(mount, {"memory"}, "node1", 1000, 42).removed.empty());
}

}  // namespace
}  // namespace svm
