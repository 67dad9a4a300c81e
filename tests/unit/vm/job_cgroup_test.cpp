// The job VM's cgroups against fake trees of plain folders and files in a temp dir: the layouts
// Slurm's cgroup/v1 and cgroup/v2 make, and the writes a move makes. The processes moved are
// real (pidfds need them); the cgroup files are plain files. The kernel's own checks (a cpuset
// without CPUs refusing tasks, the whole thread group moving, no internal processes) are for
// the cluster's tests.
#include "vm/job_cgroup.h"
#include "vm/job_cgroup_impl.h"

#include "util/error.h"

#include "vm/test_process.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
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
using test::TestProcess;

class JobCgroupTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-cgroup-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        roots.mount = (dir / "cgroup").string();
        roots.proc = (dir / "proc").string();
        fs::create_directories(roots.mount);
        fs::create_directories(roots.proc + "/1");
        write(roots.proc + "/1/cgroup", "0::/init.scope\n");
    }
    void TearDown() override { fs::remove_all(dir); }

    // A cgroup folder as the kernel shows it: the member files exist, empty.
    std::string cgroup(const std::string &path) {
        fs::create_directories(path);
        write(path + "/cgroup.procs", "");
        write(path + "/tasks", "");
        return path;
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
    static mode_t mode_of(const std::string &path) {
        struct stat st {};
        stat(path.c_str(), &st);
        return st.st_mode & 07777;
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
    static std::vector<ProcessHandle> held(const std::vector<const TestProcess *> &processes) {
        std::vector<ProcessHandle> handles;
        for (const TestProcess *p : processes) {
            handles.push_back(ProcessHandle::open(p->identity(), "test process"));
        }
        return handles;
    }
    static std::string ids(std::vector<pid_t> list) {
        std::sort(list.begin(), list.end());
        std::string text;
        for (pid_t id : list) {
            text += std::to_string(id) + " ";
        }
        return text;
    }

    fs::path dir;
    CgroupRoots roots;
    const JobCgroupKey job{"node1", 1000, 42};
};

// ---- Which hierarchy.

TEST_F(JobCgroupTest, TakesAMountWithCgroupControllersForTheUnifiedHierarchy) {
    write(roots.mount + "/cgroup.controllers", "cpuset cpu io memory pids\n");
    EXPECT_EQ(detect_cgroup_version(roots.mount), CgroupVersion::V2);
    EXPECT_EQ(JobCgroups::for_node(roots)->version(), CgroupVersion::V2);
    EXPECT_STREQ(to_string(CgroupVersion::V2), "cgroup v2");
}

TEST_F(JobCgroupTest, TakesAHybridHostWithAControllerlessCgroup2BesideV1ForV1) {
    for (const char *c : {"freezer", "memory", "cpuset", "cpuacct"}) {
        fs::create_directories(roots.mount + "/" + c);
    }
    fs::create_directories(roots.mount + "/unified");
    write(roots.mount + "/unified/cgroup.controllers", "");
    EXPECT_EQ(detect_cgroup_version(roots.mount), CgroupVersion::V1);
    EXPECT_EQ(JobCgroups::for_node(roots)->version(), CgroupVersion::V1);
}

// ---- cgroup v1.

class JobCgroupV1Test : public JobCgroupTest {
  protected:
    // The extern step of job 42, uid 1000, under `prefix` (slurm_node1 or slurm).
    std::string step(const std::string &controller, const std::string &prefix = "slurm_node1") {
        return cgroup(roots.mount + "/" + controller + "/" + prefix +
                      "/uid_1000/job_42/step_extern");
    }
    std::string job42(const std::string &controller) {
        return roots.mount + "/" + controller + "/slurm_node1/uid_1000/job_42";
    }
    // Slurm's folders of job 42's extern step, with a task_3 folder in cpuacct and memory
    // (jobacct_gather/cgroup) and the job's CPU in cpuset.
    void slurm_tree() {
        for (const std::string &c : job_vm_controllers()) {
            const std::string s = step(c);
            if (c == "cpuset") {
                write(s + "/cpuset.cpus", "1\n");
                write(s + "/cpuset.mems", "0\n");
            } else if (c == "cpuacct" || c == "memory") {
                cgroup(s + "/task_3");
            }
        }
    }
    void SetUp() override {
        JobCgroupTest::SetUp();
        v1 = JobCgroups::v1(roots);
    }
    std::unique_ptr<JobCgroups> v1;
};

TEST_F(JobCgroupV1Test, NamesBothSlurmLayoutsMultipleSlurmdFirst) {
    EXPECT_EQ(
        extern_step_cgroup_candidates("/sys/fs/cgroup", "freezer", job),
        (std::vector<std::string>{"/sys/fs/cgroup/freezer/slurm_node1/uid_1000/job_42/step_extern",
                                  "/sys/fs/cgroup/freezer/slurm/uid_1000/job_42/step_extern"}));
}

TEST_F(JobCgroupV1Test, RefusesNamesThatLeaveTheirFolder) {
    for (const char *node : {"", ".", "..", "a/b"}) {
        EXPECT_EQ(error_of([&] {
                      extern_step_cgroup_candidates(roots.mount, "cpuset", {node, 1, 2});
                  }),
                  "cgroup: node name '" + std::string(node) + "' cannot be a folder name");
        EXPECT_EQ(error_of([&] { slurmstepd_scope_candidates(roots, node); }),
                  "cgroup: node name '" + std::string(node) + "' cannot be a folder name");
    }
    EXPECT_EQ(error_of([&] { extern_step_cgroup_candidates(roots.mount, "../etc", job); }),
              "cgroup: controller '../etc' cannot be a folder name");
}

TEST_F(JobCgroupV1Test, FindsTheExternStepsOneTaskFolderButNotTaskSpecial) {
    const std::string s = step("cpuacct");
    EXPECT_EQ(find_task_cgroup(s), std::nullopt);
    cgroup(s + "/task_2");
    fs::create_directories(s + "/task_x");
    fs::create_directories(s + "/task_special");
    fs::create_directories(s + "/slurm_vm");
    write(s + "/task_9", "");  // a file, not a folder
    EXPECT_EQ(find_task_cgroup(s), s + "/task_2");
    cgroup(s + "/task_0");
    EXPECT_EQ(error_of([&] { find_task_cgroup(s); }),
              "cgroup: " + s + " has 2 task folders (task_0, task_2), an extern step has one");
    EXPECT_EQ(error_of([&] { find_task_cgroup(roots.mount + "/none"); }),
              "cgroup: cannot list " + roots.mount + "/none: No such file or directory");
}

TEST_F(JobCgroupV1Test, PlansTheVmBelowTheStepOrItsTaskFolderAndNamesWhatIsMissing) {
    step("freezer");
    const std::string acct = step("cpuacct");
    cgroup(acct + "/task_3");
    const std::string mem = step("memory");  // no task folder: jobacct_gather/linux
    const VmCgroupPlan plan = v1->plan_vm_cgroups(job);
    EXPECT_EQ(plan.version, CgroupVersion::V1);
    ASSERT_EQ(plan.targets.size(), 3u);
    EXPECT_EQ(plan.targets[0],
              (VmCgroupTarget{"freezer", job42("freezer") + "/step_extern", false, false, true}));
    EXPECT_EQ(plan.targets[1], (VmCgroupTarget{"cpuacct", acct + "/task_3", false, false, true}));
    EXPECT_EQ(plan.targets[2], (VmCgroupTarget{"memory", mem, false, true, true}));
    EXPECT_EQ(plan.controllers, (std::vector<std::string>{"freezer", "cpuacct", "memory"}));
    EXPECT_EQ(plan.missing, std::vector<std::string>{"cpuset"});
    EXPECT_EQ(plan.cpus_file, "");
    EXPECT_EQ(plan.absent, "");
}

TEST_F(JobCgroupV1Test, SaysWhyAJobWithoutContainHasNoCgroup) {
    // No PrologFlags=Contain (or no cgroup plugin): no extern step folder in any controller.
    const VmCgroupPlan plan = v1->plan_vm_cgroups(job);
    EXPECT_TRUE(plan.targets.empty());
    EXPECT_EQ(plan.missing, job_vm_controllers());
    EXPECT_EQ(plan.absent, "no " + roots.mount +
                               "/freezer/slurm_node1/uid_1000/job_42/step_extern nor its like "
                               "in freezer, cpuset, cpuacct, memory");
}

TEST_F(JobCgroupV1Test, FindsThePlainLayoutAndPrefersThePerNodeOne) {
    const std::string plain = step("cpuset", "slurm");
    write(plain + "/cpuset.cpus", "0\n");
    ASSERT_EQ(v1->plan_vm_cgroups(job).targets.size(), 1u);
    EXPECT_EQ(v1->plan_vm_cgroups(job).targets[0].parent, plain);
    EXPECT_EQ(v1->plan_vm_cgroups(job).cpus_file, plain + "/cpuset.cpus");
    const std::string per_node = step("cpuset", "slurm_node1");
    EXPECT_EQ(v1->plan_vm_cgroups(job).targets[0].parent, per_node);
    EXPECT_EQ(v1->plan_vm_cgroups({"node2", 1000, 42}).targets.at(0).parent, plain);
    EXPECT_TRUE(v1->plan_vm_cgroups({"node1", 1001, 42}).targets.empty());
    EXPECT_TRUE(v1->plan_vm_cgroups({"node1", 1000, 43}).targets.empty());
}

TEST_F(JobCgroupV1Test, RefusesAnExternStepWithSeveralTaskFolders) {
    const std::string mem = step("memory");
    cgroup(mem + "/task_0");
    cgroup(mem + "/task_1");
    EXPECT_EQ(error_of([&] { v1->plan_vm_cgroups(job); }),
              "cgroup: " + mem + " has 2 task folders (task_0, task_1), an extern step has one");
}

TEST_F(JobCgroupV1Test, MovesTheVmsProcessesAndTheirChildrenIntoEachController) {
    slurm_tree();
    TestProcess qemu("read x", "guest=svm-42-node1");
    TestProcess virtiofsd("sleep 1000 & read x", "virtiofsd");
    const auto children = virtiofsd.wait_for_descendants(1);
    TestProcess other("read x", "someone-else");
    const VmCgroupPlacement placed =
        move_into_vm_cgroups(v1->plan_vm_cgroups(job), held({&qemu, &virtiofsd}));
    ASSERT_EQ(placed.folders.size(), 4u);
    EXPECT_EQ(placed.folders[0],
              std::make_pair(std::string("freezer"), job42("freezer") + "/step_extern/slurm_vm"));
    EXPECT_EQ(placed.folders[2], std::make_pair(std::string("cpuacct"),
                                                job42("cpuacct") + "/step_extern/task_3/slurm_vm"));
    const std::string want = ids({qemu.pid(), virtiofsd.pid(), children[0].pid});
    for (const auto &[controller, folder] : placed.folders) {
        EXPECT_EQ(ids(cgroup_members(folder)), want) << controller;
    }
    EXPECT_EQ(read(job42("memory") + "/step_extern/task_3/slurm_vm/"
                                     "memory.move_charge_at_immigrate"),
              "3");
    EXPECT_EQ(read(job42("cpuset") + "/step_extern/slurm_vm/cpuset.cpus"), "1\n");
    EXPECT_EQ(read(job42("cpuset") + "/step_extern/slurm_vm/cpuset.mems"), "0\n");
    EXPECT_TRUE(placed.notes.empty());
}

// Issue 20, finding 6: v1's step folders are the user's, who could make step_extern/slurm_vm
// before the extern step and keep the VM in a cgroup of their own (thawing it while the job is
// suspended, say). The VM's folder is always made anew, root's.
TEST_F(JobCgroupV1Test, ReplacesAVmFolderSomeoneMadeBeforeWithOneOfItsOwn) {
    slurm_tree();
    const std::string planted = job42("freezer") + "/step_extern/slurm_vm";
    fs::create_directories(planted);
    chmod(planted.c_str(), 0777);
    TestProcess qemu("read x", "guest=svm-42-node1");
    move_into_vm_cgroups(v1->plan_vm_cgroups(job), held({&qemu}));
    EXPECT_EQ(mode_of(planted), 0755u);
    EXPECT_EQ(cgroup_members(planted), std::vector<pid_t>{qemu.pid()});
}

TEST_F(JobCgroupV1Test, RefusesAVmFolderSomeoneMadeThatCannotBeRemoved) {
    slurm_tree();
    // A cgroup with a member: rmdir says EBUSY; a plain folder with a file, ENOTEMPTY.
    const std::string planted = cgroup(job42("freezer") + "/step_extern/slurm_vm");
    TestProcess qemu("read x", "guest=svm-42-node1");
    EXPECT_EQ(error_of([&] { move_into_vm_cgroups(v1->plan_vm_cgroups(job), held({&qemu})); }),
              "cannot move the VM into the job's freezer cgroup: cgroup: " + planted +
                  " is there already and cannot be removed (Directory not empty): it is not "
                  "ours to use");
    EXPECT_EQ(read(planted + "/cgroup.procs"), "");
}

TEST_F(JobCgroupV1Test, NamesTheTargetAndTheReasonWhenItCannotMove) {
    slurm_tree();
    fs::remove_all(job42("cpuset") + "/step_extern");  // gone under the plan
    TestProcess qemu("read x", "guest=svm-42-node1");
    VmCgroupPlan plan = v1->plan_vm_cgroups(job);
    plan.targets.push_back({"cpuset", job42("cpuset") + "/step_extern", true, false, true});
    EXPECT_EQ(error_of([&] { move_into_vm_cgroups(plan, held({&qemu})); }),
              "cannot move the VM into the job's cpuset cgroup: cgroup: cannot make " +
                  job42("cpuset") + "/step_extern/slurm_vm: No such file or directory");
}

// ---- The checked move of one process (issue 20, finding 6: pid reuse).

class MoveHeldProcessTest : public JobCgroupTest {
  protected:
    cgroup_impl::CgroupDir target() {
        return cgroup_impl::make_fresh_cgroup(cgroup(roots.mount + "/step"), "slurm_vm");
    }
};

TEST_F(MoveHeldProcessTest, MovesALiveProcessByItsPid) {
    TestProcess p("read x", "p");
    const auto dir = target();
    const ProcessHandle h = ProcessHandle::open(p.identity(), "test process");
    EXPECT_TRUE(cgroup_impl::move_held_process(dir, h, false, "/proc"));
    EXPECT_EQ(cgroup_members(dir.path), std::vector<pid_t>{p.pid()});
}

TEST_F(MoveHeldProcessTest, RefusesAProcessWhosePidWentToAnotherDuringTheWrite) {
    // The user kills QEMU between the checks and the write; the kernel gives its pid to a new
    // process, which the write moves. Simulated: the process is reaped right after the write,
    // and its pid is in the folder.
    TestProcess p("read x", "p");
    const auto dir = target();
    const ProcessHandle h = ProcessHandle::open(p.identity(), "QEMU of domain svm-42-node1");
    EXPECT_EQ(error_of([&] {
                  cgroup_impl::move_held_process(dir, h, false, "/proc",
                                                 [&] { p.kill_and_reap(); });
              }),
              "cgroup: QEMU of domain svm-42-node1 (process " + std::to_string(p.pid()) +
                  ") ended while it was moved into " + dir.path +
                  "/cgroup.procs, and its pid is another process's now");
}

TEST_F(MoveHeldProcessTest, WritesNoPidOfAProcessReapedBeforeTheMove) {
    TestProcess p("read x", "p");
    const auto dir = target();
    const ProcessHandle h = ProcessHandle::open(p.identity(), "test process");
    p.kill_and_reap();
    EXPECT_FALSE(cgroup_impl::move_held_process(dir, h, false, "/proc"));
    EXPECT_EQ(read(dir.path + "/cgroup.procs"), "");
    std::vector<ProcessHandle> both;
    both.push_back(ProcessHandle::open(TestProcess("read x", "q").identity(), "q"));
    // (q is reaped when its TestProcess goes: the handle outlives it.)
    EXPECT_EQ(error_of([&] { cgroup_impl::move_processes(dir, both, false, "/proc"); }),
              "q (process " + std::to_string(both[0].pid()) + ") ended before it was moved into " +
                  dir.path);
}

TEST_F(MoveHeldProcessTest, GoesThreadByThreadWhereCgroupProcsRefusesTheProcess) {
    TestProcess p("read x", "p");
    const std::string step = cgroup(roots.mount + "/step");
    const auto dir = cgroup_impl::make_fresh_cgroup(step, "slurm_vm");
    fs::create_directories(dir.path + "/cgroup.procs");  // refuses every write
    const ProcessHandle h = ProcessHandle::open(p.identity(), "test process");
    EXPECT_TRUE(cgroup_impl::move_held_process(dir, h, true, "/proc"));
    EXPECT_EQ(cgroup_members(dir.path, "tasks"), std::vector<pid_t>{p.pid()});  // one thread
    EXPECT_EQ(error_of([&] { cgroup_impl::move_held_process(dir, h, false, "/proc"); }),
              "cgroup: cannot move test process (process " + std::to_string(p.pid()) + ") into " +
                  dir.path + "/cgroup.procs: Is a directory");
}

TEST_F(MoveHeldProcessTest, RefusesAThreadWhoseIdWentToAnotherDuringTheWrite) {
    TestProcess p("read x", "p");
    const auto dir = cgroup_impl::make_fresh_cgroup(cgroup(roots.mount + "/step"), "slurm_vm");
    fs::create_directories(dir.path + "/cgroup.procs");
    // A fake /proc whose process has one thread that is gone by the time it is checked.
    const std::string proc = (this->dir / "fakeproc").string();
    const std::string tid = std::to_string(p.pid() + 1);
    fs::create_directories(proc + "/" + std::to_string(p.pid()) + "/task/" + tid);
    const ProcessHandle h = ProcessHandle::open(p.identity(), "QEMU");
    EXPECT_EQ(error_of([&] {
                  cgroup_impl::move_held_process(dir, h, true, proc, [&] {
                      fs::remove_all(proc + "/" + std::to_string(p.pid()) + "/task/" + tid);
                  });
              }),
              "cgroup: cannot move QEMU (process " + std::to_string(p.pid()) + ") into " +
                  dir.path + "/cgroup.procs: Is a directory; thread by thread: cgroup: thread " +
                  tid + " of QEMU (process " + std::to_string(p.pid()) + ") ended while it was " +
                  "moved into " + dir.path + "/tasks, and its id is another thread's now");
}

TEST_F(MoveHeldProcessTest, ReadsMembersAndRefusesGarbage) {
    const std::string s = cgroup(roots.mount + "/step");
    write(s + "/cgroup.procs", "1\n22\n333\n");
    EXPECT_EQ(cgroup_members(s), (std::vector<pid_t>{1, 22, 333}));
    write(s + "/cgroup.procs", "1\nx\n");
    EXPECT_EQ(error_of([&] { cgroup_members(s); }),
              "cgroup: " + s + "/cgroup.procs: 'x' is not a process id");
}

// ---- v1 removal, against bare folders: rmdir of a real cgroup ignores its control files,
// rmdir of a plain folder does not.

TEST_F(JobCgroupV1Test, RemovesTheVmFoldersThenTheJobsFoldersBottomUp) {
    const std::string freezer = job42("freezer");
    const std::string memory = job42("memory");
    const std::string cpuset = job42("cpuset");
    fs::create_directories(freezer + "/step_extern/slurm_vm");
    fs::create_directories(memory + "/step_extern/task_3/slurm_vm");
    fs::create_directories(cpuset + "/step_extern");  // no VM there: not ours to touch
    const CgroupCleanup r = v1->remove_vm_cgroups(job);
    EXPECT_TRUE(r.problems.empty()) << r.problems.front();
    EXPECT_FALSE(fs::exists(roots.mount + "/freezer/slurm_node1/uid_1000"));
    EXPECT_FALSE(fs::exists(roots.mount + "/memory/slurm_node1/uid_1000"));
    EXPECT_TRUE(fs::is_directory(roots.mount + "/freezer/slurm_node1"));
    EXPECT_TRUE(fs::is_directory(cpuset + "/step_extern"));
    EXPECT_EQ(r.removed,
              (std::vector<std::string>{freezer + "/step_extern/slurm_vm", freezer + "/step_extern",
                                        freezer, roots.mount + "/freezer/slurm_node1/uid_1000",
                                        memory + "/step_extern/task_3/slurm_vm",
                                        memory + "/step_extern/task_3", memory + "/step_extern",
                                        memory, roots.mount + "/memory/slurm_node1/uid_1000"}));
}

TEST_F(JobCgroupV1Test, LeavesFoldersOtherJobsStillUse) {
    const std::string freezer = job42("freezer");
    fs::create_directories(freezer + "/step_extern/slurm_vm");
    fs::create_directories(roots.mount + "/freezer/slurm_node1/uid_1000/job_43/step_0");
    const CgroupCleanup r = v1->remove_vm_cgroups(job);
    EXPECT_TRUE(r.problems.empty());
    EXPECT_FALSE(fs::exists(freezer));
    EXPECT_TRUE(fs::is_directory(roots.mount + "/freezer/slurm_node1/uid_1000/job_43/step_0"));
}

TEST_F(JobCgroupV1Test, SaysWhichVmFolderIsStillInUseAndLeavesItsParents) {
    const std::string freezer = job42("freezer");
    fs::create_directories(freezer + "/step_extern/slurm_vm");
    write(freezer + "/step_extern/slurm_vm/cgroup.procs", "9\n");  // not empty: in use
    const CgroupCleanup r = v1->remove_vm_cgroups(job, std::chrono::milliseconds(0));
    EXPECT_EQ(r.problems, std::vector<std::string>{"cgroup: " + freezer +
                                                   "/step_extern/slurm_vm is still in use: "
                                                   "Directory not empty"});
    EXPECT_TRUE(fs::is_directory(freezer + "/step_extern/slurm_vm"));
    EXPECT_TRUE(r.removed.empty());
}

TEST_F(JobCgroupV1Test, WaitsOnceInAllForVmFoldersStillInUse) {
    for (const std::string &c : job_vm_controllers()) {
        fs::create_directories(job42(c) + "/step_extern/slurm_vm");
        write(job42(c) + "/step_extern/slurm_vm/cgroup.procs", "9\n");
    }
    const auto start = std::chrono::steady_clock::now();
    const CgroupCleanup r = v1->remove_vm_cgroups(job, std::chrono::milliseconds(500));
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.problems.size(), 4u);
    EXPECT_GE(took, std::chrono::milliseconds(500));
    EXPECT_LT(took, std::chrono::milliseconds(1500));  // not 500 ms per folder
}

TEST_F(JobCgroupV1Test, RemovesNothingOfAJobWithoutVmFoldersAndAcceptsTheOtherLayout) {
    fs::create_directories(job42("freezer") + "/step_extern");
    fs::create_directories(roots.mount + "/cpuset/slurm/uid_1000/job_42/step_extern/slurm_vm");
    const CgroupCleanup r = v1->remove_vm_cgroups(job);
    EXPECT_TRUE(r.problems.empty());
    EXPECT_TRUE(fs::is_directory(job42("freezer") + "/step_extern"));
    EXPECT_FALSE(fs::exists(roots.mount + "/cpuset/slurm/uid_1000"));
    EXPECT_TRUE(v1->remove_vm_cgroups({"node2", 1000, 42}).removed.empty());
}

TEST_F(JobCgroupV1Test, BootsNoVmInACgroupOfTheJobs) {
    // Slurm's v1 folders of a job come with its first step, and the user owns them.
    const BootCgroup boot = v1->make_boot_cgroup(job, 512u << 20);
    EXPECT_EQ(boot.folder, "");
    EXPECT_EQ(boot.note, "");
    EXPECT_TRUE(fs::is_empty(roots.mount));
}

// ---- cgroup v2.

class JobCgroupV2Test : public JobCgroupTest {
  protected:
    void SetUp() override {
        JobCgroupTest::SetUp();
        write(roots.mount + "/cgroup.controllers", "cpuset cpu io memory pids\n");
        scope = roots.mount + "/system.slice/node1_slurmstepd.scope";
        v2 = JobCgroups::v2(roots);
    }
    // The scope as slurmd and slurmstepd set it up: system/ holds the parked slurmstepds.
    void slurm_scope(const std::string &path) {
        cgroup(path + "/system");
        write(path + "/cgroup.controllers", "cpuset cpu memory pids\n");
        write(path + "/cgroup.subtree_control", "cpuset cpu memory pids\n");
    }
    std::string job_dir() const { return scope + "/job_42"; }
    // Job 42's extern step as cgroup_p_step_create and cgroup_p_task_addto make it.
    std::string extern_step(const std::string &controllers = "cpuset cpu memory pids") {
        slurm_scope(scope);
        const std::string step = cgroup(job_dir() + "/step_extern");
        cgroup(step + "/slurm");
        const std::string user = cgroup(step + "/user");
        write(job_dir() + "/cgroup.subtree_control", controllers + "\n");
        write(step + "/cgroup.subtree_control", controllers + "\n");
        write(user + "/cgroup.subtree_control", controllers + "\n");
        return user;
    }
    std::string scope;
    std::unique_ptr<JobCgroups> v2;
};

TEST_F(JobCgroupV2Test, LooksForTheScopeBelowInitsFolderThenBelowTheMount) {
    EXPECT_EQ(slurmstepd_scope_candidates(roots, "node1"),
              (std::vector<std::string>{roots.mount + "/system.slice/node1_slurmstepd.scope",
                                        roots.mount + "/system.slice/slurmstepd.scope"}));
    // A container whose init is not at the hierarchy's root (no cgroup namespace).
    write(roots.proc + "/1/cgroup", "0::/docker.slice/c1.scope/init.scope\n");
    EXPECT_EQ(slurmstepd_scope_candidates(roots, "n"),
              (std::vector<std::string>{
                  roots.mount + "/docker.slice/c1.scope/system.slice/n_slurmstepd.scope",
                  roots.mount + "/docker.slice/c1.scope/system.slice/slurmstepd.scope",
                  roots.mount + "/system.slice/n_slurmstepd.scope",
                  roots.mount + "/system.slice/slurmstepd.scope"}));
    // Without systemd init is in the root cgroup; a hybrid host lists v1 lines too.
    write(roots.proc + "/1/cgroup", "4:memory:/\n0::/\n");
    EXPECT_EQ(slurmstepd_scope_candidates(roots, "node1").size(), 2u);
    fs::remove(roots.proc + "/1/cgroup");
    EXPECT_EQ(slurmstepd_scope_candidates(roots, "node1").size(), 2u);
}

TEST_F(JobCgroupV2Test, PlansTheVmBelowTheExternStepsTaskFolder) {
    const std::string user = extern_step();
    cgroup(user + "/task_3");
    cgroup(user + "/task_special");  // pam_slurm_adopt's processes
    write(job_dir() + "/cpuset.cpus", "1\n");
    const VmCgroupPlan plan = v2->plan_vm_cgroups(job);
    EXPECT_EQ(plan.version, CgroupVersion::V2);
    ASSERT_EQ(plan.targets.size(), 1u);
    EXPECT_EQ(plan.targets[0], (VmCgroupTarget{"unified", user + "/task_3", false, false, false}));
    EXPECT_EQ(plan.controllers,
              (std::vector<std::string>{"freezer", "cpuset", "cpuacct", "memory"}));
    EXPECT_TRUE(plan.missing.empty());
    EXPECT_EQ(plan.cpus_file, user + "/task_3/cpuset.cpus.effective");
    EXPECT_TRUE(plan.vacated.empty());
}

TEST_F(JobCgroupV2Test, FindsTheScopeOfASingleSlurmdBuild) {
    scope = roots.mount + "/system.slice/slurmstepd.scope";
    const std::string user = extern_step();
    EXPECT_EQ(v2->plan_vm_cgroups(job).targets.at(0).parent, user);  // no task folder
}

TEST_F(JobCgroupV2Test, NamesWhatIsMissingWithoutTheCpusetAndMemoryControllers) {
    const std::string user = extern_step("pids");
    cgroup(user + "/task_0");
    write(job_dir() + "/cpuset.cpus", "1\n");
    const VmCgroupPlan plan = v2->plan_vm_cgroups(job);
    EXPECT_EQ(plan.controllers, (std::vector<std::string>{"freezer", "cpuacct"}));
    EXPECT_EQ(plan.missing, (std::vector<std::string>{"cpuset", "memory"}));
    EXPECT_EQ(plan.cpus_file, "");  // no cpuset: the domain XML's pinning stays
}

TEST_F(JobCgroupV2Test, LeavesThePinningAloneWhereTheJobHasNoCpusOfItsOwn) {
    cgroup(extern_step() + "/task_0");
    write(job_dir() + "/cpuset.cpus", "\n");  // no ConstrainCores: every CPU
    EXPECT_EQ(v2->plan_vm_cgroups(job).cpus_file, "");
}

TEST_F(JobCgroupV2Test, SaysWhyThereIsNoCgroupWithoutSlurmsTreeOrWithoutContain) {
    VmCgroupPlan plan = v2->plan_vm_cgroups(job);
    EXPECT_TRUE(plan.targets.empty());
    EXPECT_EQ(plan.absent, "no Slurm cgroup/v2 tree (" + roots.mount +
                               "/system.slice/node1_slurmstepd.scope nor " + roots.mount +
                               "/system.slice/slurmstepd.scope)");
    // The scope, but no extern step: no PrologFlags=Contain, or the step is not there yet.
    slurm_scope(scope);
    cgroup(job_dir() + "/step_batch/user/task_0");
    plan = v2->plan_vm_cgroups(job);
    EXPECT_TRUE(plan.targets.empty());
    EXPECT_EQ(plan.absent, "no " + job_dir() + "/step_extern/user");
    EXPECT_EQ(plan.missing, job_vm_controllers());
}

TEST_F(JobCgroupV2Test, RefusesAnExternStepWithSeveralTaskFolders) {
    const std::string user = extern_step();
    cgroup(user + "/task_0");
    cgroup(user + "/task_1");
    EXPECT_EQ(error_of([&] { v2->plan_vm_cgroups(job); }),
              "cgroup: " + user + " has 2 task folders (task_0, task_1), an extern step has one");
}

TEST_F(JobCgroupV2Test, MakesABootCgroupBelowTheJobLimitedToItsMemory) {
    slurm_scope(scope);
    write(scope + "/cgroup.subtree_control", "");  // no slurmstepd ran since slurmd started
    const BootCgroup boot = v2->make_boot_cgroup(job, 768u << 20);
    EXPECT_EQ(boot.note, "");
    EXPECT_EQ(boot.folder, job_dir() + "/slurm_vm");
    EXPECT_EQ(read(scope + "/cgroup.subtree_control"), "+memory");
    EXPECT_EQ(read(job_dir() + "/cgroup.subtree_control"), "+memory");
    EXPECT_EQ(read(boot.folder + "/memory.max"), std::to_string(768u << 20));
    EXPECT_EQ(mode_of(boot.folder), 0755u);
}

TEST_F(JobCgroupV2Test, MakesNoBootCgroupWhereSlurmHasNoTree) {
    const BootCgroup boot = v2->make_boot_cgroup(job, 768u << 20);
    EXPECT_EQ(boot.folder, "");
    EXPECT_EQ(boot.note, "");
    EXPECT_FALSE(fs::exists(roots.mount + "/system.slice"));
}

TEST_F(JobCgroupV2Test, SaysWhyTheVmCannotBootInTheJobsCgroup) {
    slurm_scope(scope);
    write(scope + "/cgroup.controllers", "cpuset cpu pids\n");
    fs::remove(scope + "/cgroup.subtree_control");
    fs::create_directories(scope + "/cgroup.subtree_control");  // refuses "+memory"
    BootCgroup boot = v2->make_boot_cgroup(job, 0);
    EXPECT_EQ(boot.folder, "");
    EXPECT_EQ(boot.note,
              "the VM boots outside the job's cgroup, and the memory it touches before the "
              "extern step is not the job's: the memory controller is not available in " +
                  scope);
    EXPECT_FALSE(fs::exists(job_dir()));
    // A folder of that name with a process in it: not ours.
    fs::remove_all(scope);
    slurm_scope(scope);
    cgroup(job_dir() + "/slurm_vm");
    boot = v2->make_boot_cgroup(job, 0);
    EXPECT_EQ(boot.folder, "");
    EXPECT_EQ(boot.note,
              "the VM boots outside the job's cgroup, and the memory it touches before the "
              "extern step is not the job's: cgroup: " +
                  job_dir() +
                  "/slurm_vm is there already and cannot be removed (Directory not empty): it "
                  "is not ours to use");
    EXPECT_FALSE(fs::exists(job_dir() + "/slurm_vm/memory.max"));
}

TEST_F(JobCgroupV2Test, MovesTheBootedVmBelowTheTaskFolderAndEmptiesTheBootCgroup) {
    const std::string user = extern_step();
    cgroup(user + "/task_3");
    fs::create_directories(job_dir() + "/slurm_vm");  // the boot cgroup, as the kernel's: empty
    TestProcess qemu("read x", "guest=svm-42-node1");
    TestProcess virtiofsd("sleep 1000 & read x", "virtiofsd");
    const auto children = virtiofsd.wait_for_descendants(1);
    const VmCgroupPlan plan = v2->plan_vm_cgroups(job);
    EXPECT_EQ(plan.vacated, std::vector<std::string>{job_dir() + "/slurm_vm"});
    const VmCgroupPlacement placed = move_into_vm_cgroups(plan, held({&qemu, &virtiofsd}));
    EXPECT_EQ(
        placed.folders,
        (std::vector<std::pair<std::string, std::string>>{{"unified", user + "/task_3/slurm_vm"}}));
    EXPECT_EQ(ids(cgroup_members(user + "/task_3/slurm_vm")),
              ids({qemu.pid(), virtiofsd.pid(), children[0].pid}));
    EXPECT_FALSE(fs::exists(job_dir() + "/slurm_vm"));
    EXPECT_FALSE(fs::exists(user + "/task_3/slurm_vm/tasks"));  // no thread by thread on v2
    EXPECT_TRUE(placed.notes.empty());
}

TEST_F(JobCgroupV2Test, MovesIntoTheBootCgroup) {
    slurm_scope(scope);
    const BootCgroup boot = v2->make_boot_cgroup(job, 0);
    TestProcess qemu("read x", "guest=svm-42-node1");
    move_into_cgroup(boot.folder, held({&qemu}));
    EXPECT_EQ(cgroup_members(boot.folder), std::vector<pid_t>{qemu.pid()});
}

TEST_F(JobCgroupV2Test, RemovesTheVmFoldersThenWhatSlurmLeftBecauseOfThem) {
    const std::string user = extern_step();
    fs::remove_all(job_dir() + "/step_extern/slurm");  // Slurm removed it (it was empty)
    fs::create_directories(user + "/task_3/slurm_vm");
    // Bare folders from here on: rmdir of a real cgroup ignores its control files.
    for (const std::string &d : {job_dir(), job_dir() + "/step_extern", user, user + "/task_3"}) {
        for (const auto &e : fs::directory_iterator(d)) {
            if (e.is_regular_file()) {
                fs::remove(e.path());
            }
        }
    }
    const CgroupCleanup r = v2->remove_vm_cgroups(job);
    EXPECT_TRUE(r.problems.empty()) << r.problems.front();
    EXPECT_EQ(r.removed, (std::vector<std::string>{user + "/task_3/slurm_vm", user + "/task_3",
                                                   user, job_dir() + "/step_extern", job_dir()}));
    EXPECT_TRUE(fs::is_directory(scope + "/system"));
}

TEST_F(JobCgroupV2Test, RemovesTheBootCgroupOfAJobThatHadNoExternStep) {
    slurm_scope(scope);
    fs::create_directories(job_dir() + "/slurm_vm");
    fs::create_directories(roots.mount + "/system.slice/node1_slurmstepd.scope/job_43/step_0");
    const CgroupCleanup r = v2->remove_vm_cgroups(job);
    EXPECT_TRUE(r.problems.empty());
    EXPECT_EQ(r.removed, (std::vector<std::string>{job_dir() + "/slurm_vm", job_dir()}));
    EXPECT_TRUE(fs::is_directory(scope + "/job_43/step_0"));
}

TEST_F(JobCgroupV2Test, LeavesAJobWithoutVmFoldersAndOneStillInUse) {
    slurm_scope(scope);
    fs::create_directories(job_dir() + "/step_extern/user/task_0");
    EXPECT_TRUE(v2->remove_vm_cgroups(job).removed.empty());
    EXPECT_TRUE(fs::is_directory(job_dir() + "/step_extern/user/task_0"));
    fs::create_directories(job_dir() + "/step_extern/user/task_0/slurm_vm");
    write(job_dir() + "/step_extern/user/task_0/slurm_vm/cgroup.procs", "9\n");
    const CgroupCleanup r = v2->remove_vm_cgroups(job, std::chrono::milliseconds(0));
    EXPECT_EQ(r.problems,
              std::vector<std::string>{"cgroup: " + job_dir() +
                                       "/step_extern/user/task_0/slurm_vm is still in use: "
                                       "Directory not empty"});
    EXPECT_TRUE(r.removed.empty());
}

TEST_F(JobCgroupV2Test, LeavesTheJobFolderToAStepStillRunning) {
    const std::string user = extern_step();
    fs::remove_all(job_dir());
    fs::create_directories(user + "/task_0/slurm_vm");
    fs::create_directories(job_dir() + "/step_0/user/task_0");  // another step of the job
    const CgroupCleanup r = v2->remove_vm_cgroups(job);
    EXPECT_TRUE(r.problems.empty());
    EXPECT_FALSE(fs::exists(job_dir() + "/step_extern"));
    EXPECT_TRUE(fs::is_directory(job_dir() + "/step_0/user/task_0"));
}

}  // namespace
}  // namespace svm
