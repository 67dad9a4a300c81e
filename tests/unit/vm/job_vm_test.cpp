// Parts of a job VM's life that need no running QEMU: the guest's memory from the job's
// allocation, and the extern step's placement of the VM (place_job_vm) against a fake state
// folder and cgroup trees (v1 and v2) in a temp dir, real processes standing in for QEMU and
// virtiofsd, and the pinning captured instead of libvirt.
#include "vm/job_vm.h"

#include "util/error.h"

#include "vm/test_process.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace svm {
namespace {

namespace fs = std::filesystem;

template <typename F>
std::string error_of(F &&f) {
    try {
        f();
    } catch (const Error &e) {
        return e.what();
    }
    return "no error";
}

TEST(GuestMemory, IsTheImageDefaultWhenSlurmGaveNoMemory) {
    ImageLimits limits;
    limits.default_memory_mib = 256;
    limits.max_memory_mib = 4096;
    EXPECT_EQ(guest_memory_mib(limits, 0, 256), 256u);
}

TEST(GuestMemory, LeavesTheOverheadForQemuWhereTheAllocationDecides) {
    ImageLimits limits;
    limits.default_memory_mib = 256;
    limits.max_memory_mib = 4096;
    EXPECT_EQ(guest_memory_mib(limits, 512, 256), 256u);
    EXPECT_EQ(guest_memory_mib(limits, 1024, 256), 768u);
    EXPECT_EQ(guest_memory_mib(limits, 4200, 256), 3944u);
    EXPECT_EQ(guest_memory_mib(limits, 320, 256), kMinGuestMemoryMib);
    EXPECT_EQ(guest_memory_mib(limits, 512, 0), 512u);  // memory_overhead=0: all of it
}

TEST(GuestMemory, TakesNoOverheadWhereTheImagesMaximumDecides) {
    ImageLimits limits;
    limits.max_memory_mib = 1024;
    EXPECT_EQ(guest_memory_mib(limits, 8192, 256), 1024u);
    EXPECT_EQ(guest_memory_mib(limits, 1280, 256), 1024u);
}

TEST(GuestMemory, RefusesAnAllocationTooSmallForQemuAndAGuestNamingTheNumbers) {
    ImageLimits limits;
    EXPECT_EQ(error_of([&] { guest_memory_mib(limits, 300, 256); }),
              "the job's 300 MiB of memory on this node leave 44 MiB for the VM once QEMU's own "
              "256 MiB (memory_overhead) are set aside, and a VM needs at least 64 MiB: ask for "
              "at least 320 MiB (--mem, or --mem-per-cpu)");
    EXPECT_EQ(error_of([&] { guest_memory_mib(limits, 100, 256); }).substr(0, 58),
              "the job's 100 MiB of memory on this node leave 0 MiB for t");
    EXPECT_EQ(error_of([&] { guest_memory_mib(limits, 63, 0); }).substr(0, 57),
              "the job's 63 MiB of memory on this node leave 63 MiB for ");
}

class PlaceJobVmTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-place-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        config.state_dir = (dir / "state").string();
        config.run_dir = (dir / "run-svm").string();
        roots.cgroup_mount = (dir / "cgroup").string();
        roots.proc = "/proc";  // the processes are real: pidfds need them
        roots.libvirt_run = (dir / "libvirt").string();
        roots.pin = [this](const std::string &domain, const std::vector<unsigned> &cpus) {
            pinned.emplace_back(domain, cpus);
        };
        fs::create_directories(state_dir());
        fs::create_directories(roots.libvirt_run);
        fs::create_directories(roots.cgroup_mount);
        virtiofsd_child = virtiofsd.wait_for_descendants(1).at(0).pid;
    }
    void TearDown() override { fs::remove_all(dir); }

    std::string state_dir() const { return config.state_dir + "/jobs/svm-42-node1"; }
    void state_file(const std::string &extra) {
        write(state_dir() + "/vm.json",
              "{\"domain\":\"svm-42-node1\",\"image\":\"tiny\",\"node\":\"node1\",\"jobid\":42," +
                  extra + "}");
    }
    // "qemu_pid":P,"qemu_start":S[,"virtiofsd":[{"pid":...,"start":...}]]
    std::string processes(const test::TestProcess &q, bool with_virtiofsd = false,
                          uint64_t start_offset = 0) {
        std::string text = "\"qemu_pid\":" + std::to_string(q.pid()) + ",\"qemu_start\":" +
                           std::to_string(q.identity().start_ticks + start_offset);
        if (with_virtiofsd) {
            text += ",\"virtiofsd\":[{\"pid\":" + std::to_string(virtiofsd.pid()) +
                    ",\"start\":" + std::to_string(virtiofsd.identity().start_ticks) + "}]";
        }
        return text;
    }
    // Job 42's extern step as Slurm 22.05's cgroup/v1 makes it (uid 1000), with the kernel's
    // member files.
    std::string cgroup(const std::string &controller, const std::string &below = "") {
        const std::string step = roots.cgroup_mount + "/" + controller +
                                 "/slurm_node1/uid_1000/job_42/step_extern" + below;
        fs::create_directories(step);
        write(step + "/cgroup.procs", "");
        write(step + "/tasks", "");
        return step + "/slurm_vm";
    }
    void all_cgroups() {
        cgroup("freezer");
        const std::string cpuset = cgroup("cpuset");
        const std::string step = cpuset.substr(0, cpuset.rfind('/'));
        write(step + "/cpuset.cpus", "1\n");
        write(step + "/cpuset.mems", "0\n");
        cgroup("cpuacct", "/task_0");
        cgroup("memory", "/task_0");
    }
    static void write(const std::string &path, const std::string &text) {
        std::ofstream(path, std::ios::binary) << text;
    }
    static std::string read(const std::string &path) {
        std::ifstream in(path);
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }
    static std::string sorted(const std::vector<pid_t> &ids) {
        std::vector<pid_t> list = ids;
        std::sort(list.begin(), list.end());
        std::string text;
        for (pid_t id : list) {
            text += std::to_string(id) + " ";
        }
        return text;
    }
    std::string members(const std::string &folder) { return sorted(cgroup_members(folder)); }

    fs::path dir;
    Config config;
    PlacementRoots roots;
    std::vector<std::pair<std::string, std::vector<unsigned>>> pinned;
    PlacementReport report;
    test::TestProcess qemu{"read x", "guest=svm-42-node1"};
    test::TestProcess virtiofsd{"sleep 1000 & read x", "virtiofsd"};
    pid_t virtiofsd_child = 0;
};

TEST_F(PlaceJobVmTest, DoesNothingWhenTheVmDidNotStart) {
    all_cgroups();
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.skipped, "no VM runs for the job here");
    EXPECT_EQ(report.image, "");
    EXPECT_FALSE(fs::exists(roots.cgroup_mount +
                            "/freezer/slurm_node1/uid_1000/job_42/step_extern/slurm_vm"));
}

TEST_F(PlaceJobVmTest, SaysSoWhenTheJobHasNoCgroupHere) {
    state_file(processes(qemu));
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.image, "tiny");
    EXPECT_EQ(report.skipped,
              "the job has no cgroup on this node (no " + roots.cgroup_mount +
                  "/freezer/slurm_node1/uid_1000/job_42/step_extern nor its like in freezer, "
                  "cpuset, cpuacct, memory: are cgroup plugins configured, and "
                  "PrologFlags=Contain?): the VM runs outside them, on the CPUs its domain XML "
                  "pinned it to");
    EXPECT_TRUE(pinned.empty());
}

TEST_F(PlaceJobVmTest, MovesQemuAndVirtiofsdIntoEveryControllerAndPinsOnTheJobsCpuset) {
    all_cgroups();
    state_file(processes(qemu, true));
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.skipped, "");
    EXPECT_EQ(report.hierarchy, "cgroup v1");
    EXPECT_EQ(report.controllers, job_vm_controllers());
    EXPECT_TRUE(report.missing.empty());
    EXPECT_EQ(report.cpus, "1");
    EXPECT_TRUE(report.repinned);
    ASSERT_EQ(pinned.size(), 1u);
    EXPECT_EQ(pinned[0].first, "svm-42-node1");
    EXPECT_EQ(pinned[0].second, std::vector<unsigned>{1});
    for (const std::string &folder : {std::string("/freezer"), std::string("/cpuset"),
                                      std::string("/cpuacct"), std::string("/memory")}) {
        const std::string below = folder == "/cpuacct" || folder == "/memory" ? "/task_0" : "";
        EXPECT_EQ(members(roots.cgroup_mount + folder + "/slurm_node1/uid_1000/job_42/step_extern" +
                          below + "/slurm_vm"),
                  sorted({qemu.pid(), virtiofsd.pid(), virtiofsd_child}))
            << folder;
    }
}

TEST_F(PlaceJobVmTest, LeavesThePinningToTheCpusetWithPinVcpusNo) {
    all_cgroups();
    config.pin_vcpus = false;
    state_file(processes(qemu));
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.cpus, "1");
    EXPECT_FALSE(report.repinned);
    EXPECT_TRUE(pinned.empty());
}

TEST_F(PlaceJobVmTest, PlacesInWhatTheJobHasAndNamesTheRest) {
    cgroup("freezer");
    state_file(processes(qemu));
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.controllers, std::vector<std::string>{"freezer"});
    EXPECT_EQ(report.missing, (std::vector<std::string>{"cpuset", "cpuacct", "memory"}));
    EXPECT_EQ(report.cpus, "");
    EXPECT_TRUE(pinned.empty());
}

TEST_F(PlaceJobVmTest, RefusesAProcessThatIsNotTheOneThePrologStarted) {
    all_cgroups();
    const std::string q = std::to_string(qemu.pid());
    const std::string start = std::to_string(qemu.identity().start_ticks);
    state_file(processes(qemu, false, 1));
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              "QEMU of domain svm-42-node1 (process " + q + ") is not running: pid " + q +
                  " is another process now (started at tick " + start + ", not " +
                  std::to_string(qemu.identity().start_ticks + 1) + ")");
    EXPECT_EQ(report.image, "tiny");  // for the caller's message
    EXPECT_FALSE(fs::exists(roots.cgroup_mount +
                            "/freezer/slurm_node1/uid_1000/job_42/step_extern/slurm_vm"));
    state_file(processes(qemu) + ",\"virtiofsd\":[{\"pid\":" + std::to_string(virtiofsd.pid()) +
               ",\"start\":1}]");
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              "virtiofsd of domain svm-42-node1 (process " + std::to_string(virtiofsd.pid()) +
                  ") is not running: pid " + std::to_string(virtiofsd.pid()) +
                  " is another process now (started at tick " +
                  std::to_string(virtiofsd.identity().start_ticks) + ", not 1)");
    test::TestProcess shell("read x", "/bin/sh");
    state_file(processes(shell));
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              "QEMU of domain svm-42-node1 (process " + std::to_string(shell.pid()) +
                  ") no longer runs guest=svm-42-node1");
    // QEMU gone: the user killed it after the prolog.
    state_file(processes(qemu));
    qemu.kill_and_reap();
    EXPECT_EQ(error_of([&] {
                  place_job_vm(config, 42, "node1", 1000, report, roots);
              }).substr(0, 38 + q.size()),
              "QEMU of domain svm-42-node1 (process " + q + ")");
    EXPECT_FALSE(fs::exists(roots.cgroup_mount +
                            "/freezer/slurm_node1/uid_1000/job_42/step_extern/slurm_vm"));
}

TEST_F(PlaceJobVmTest, FindsQemuThroughLibvirtsPidFileWhenTheStateFileHasNone) {
    all_cgroups();
    state_file("\"qemu_pid\":0,\"qemu_start\":0");
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              "no QEMU pid for domain svm-42-node1: cannot read " + roots.libvirt_run +
                  "/svm-42-node1.pid: No such file or directory");
    write(roots.libvirt_run + "/svm-42-node1.pid", std::to_string(qemu.pid()) + "\n");
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.controllers.size(), 4u);
    EXPECT_EQ(
        members(roots.cgroup_mount + "/freezer/slurm_node1/uid_1000/job_42/step_extern/slurm_vm"),
        sorted({qemu.pid()}));
}

TEST_F(PlaceJobVmTest, RefusesAStateFileOfAnotherDomain) {
    all_cgroups();
    write(state_dir() + "/vm.json", "{\"domain\":\"svm-43-node1\",\"image\":\"tiny\"}");
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              state_dir() + "/vm.json names domain 'svm-43-node1', not svm-42-node1");
}

// Issue 20, finding 6: Slurm's v1 step folders are the user's, who can make
// step_extern/slurm_vm before the extern step starts. The VM must never go into it: it would
// stay the user's (who could thaw a suspended VM, say).
TEST_F(PlaceJobVmTest, NeverPutsTheVmInAFolderTheUserMadeBeforeTheExternStep) {
    all_cgroups();
    const std::string planted =
        roots.cgroup_mount + "/freezer/slurm_node1/uid_1000/job_42/step_extern/slurm_vm";
    fs::create_directories(planted);
    chmod(planted.c_str(), 0777);
    state_file(processes(qemu));
    place_job_vm(config, 42, "node1", 1000, report, roots);
    struct stat st {};
    ASSERT_EQ(stat(planted.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u);  // made again, by root
    EXPECT_EQ(members(planted), sorted({qemu.pid()}));
}

TEST_F(PlaceJobVmTest, FailsTheJobRatherThanUseAFolderTheUserMadeThatCannotBeRemoved) {
    all_cgroups();
    const std::string planted =
        roots.cgroup_mount + "/freezer/slurm_node1/uid_1000/job_42/step_extern/slurm_vm";
    fs::create_directories(planted);
    write(planted + "/cgroup.procs", "");  // a plain folder with a file: rmdir refuses it
    state_file(processes(qemu));
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              "cannot move the VM into the job's freezer cgroup: cgroup: " + planted +
                  " is there already and cannot be removed (Directory not empty): it is not "
                  "ours to use");
    EXPECT_EQ(read(planted + "/cgroup.procs"), "");
}

// cgroup v2 (Slurm's cgroup/v2): one tree, the VM below the extern step's task folder.
class PlaceJobVmV2Test : public PlaceJobVmTest {
  protected:
    void SetUp() override {
        PlaceJobVmTest::SetUp();
        write(roots.cgroup_mount + "/cgroup.controllers", "cpuset cpu io memory pids\n");
        job = roots.cgroup_mount + "/system.slice/node1_slurmstepd.scope/job_42";
    }
    std::string extern_step() {
        const std::string user = job + "/step_extern/user";
        fs::create_directories(user + "/task_0");
        fs::create_directories(job + "/step_extern/slurm");
        write(user + "/cgroup.subtree_control", "cpuset cpu memory pids\n");
        write(job + "/cpuset.cpus", "1\n");
        write(user + "/task_0/cpuset.cpus.effective", "1\n");
        return user + "/task_0";
    }
    std::string job;
};

TEST_F(PlaceJobVmV2Test, MovesTheVmBelowTheExternStepsTaskFolderAndPinsOnTheJobsCpus) {
    const std::string task = extern_step();
    fs::create_directories(job + "/slurm_vm");  // the boot cgroup the prolog made (empty now)
    state_file(processes(qemu, true));
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.skipped, "");
    EXPECT_EQ(report.hierarchy, "cgroup v2");
    EXPECT_EQ(report.controllers,
              (std::vector<std::string>{"freezer", "cpuset", "cpuacct", "memory"}));
    EXPECT_TRUE(report.missing.empty());
    EXPECT_EQ(members(task + "/slurm_vm"), sorted({qemu.pid(), virtiofsd.pid(), virtiofsd_child}));
    EXPECT_FALSE(fs::exists(job + "/slurm_vm"));
    EXPECT_EQ(report.cpus, "1");
    ASSERT_EQ(pinned.size(), 1u);
    EXPECT_EQ(pinned[0].second, std::vector<unsigned>{1});
}

TEST_F(PlaceJobVmV2Test, SaysSoWhenTheJobHasNoExternStep) {
    fs::create_directories(job + "/step_batch/user/task_0");  // no PrologFlags=Contain
    state_file(processes(qemu));
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.hierarchy, "cgroup v2");
    EXPECT_EQ(report.skipped, "the job has no cgroup on this node (no " + job +
                                  "/step_extern/user: are cgroup plugins configured, and "
                                  "PrologFlags=Contain?): the VM runs outside them, on the "
                                  "CPUs its domain XML pinned it to");
    EXPECT_TRUE(pinned.empty());
}

}  // namespace
}  // namespace svm
