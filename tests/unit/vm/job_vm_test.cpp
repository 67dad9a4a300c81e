// Parts of a job VM's life that need no running QEMU: the guest's memory from the job's
// allocation, and the extern step's placement of the VM (place_job_vm) against a fake state
// folder, cgroup tree and /proc in a temp dir, with the pinning captured instead of libvirt.
#include "vm/job_vm.h"

#include "util/error.h"

#include <gtest/gtest.h>

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
        roots.proc = (dir / "proc").string();
        roots.libvirt_run = (dir / "libvirt").string();
        roots.pin = [this](const std::string &domain, const std::vector<unsigned> &cpus) {
            pinned.emplace_back(domain, cpus);
        };
        fs::create_directories(state_dir());
        fs::create_directories(roots.libvirt_run);
        process(500, 1, 77,
                {"/usr/bin/qemu-system-x86_64", "-name", "guest=svm-42-node1,debug-threads=on"});
        process(600, 1, 80, {"virtiofsd", "--fd=3"});
        process(601, 600, 81, {"virtiofsd", "--fd=3"});
    }
    void TearDown() override { fs::remove_all(dir); }

    std::string state_dir() const { return config.state_dir + "/jobs/svm-42-node1"; }
    void state_file(const std::string &extra) {
        write(state_dir() + "/vm.json",
              "{\"domain\":\"svm-42-node1\",\"image\":\"tiny\",\"node\":\"node1\",\"jobid\":42," +
                  extra + "}");
    }
    void process(pid_t pid, pid_t parent, uint64_t start, const std::vector<std::string> &argv) {
        const std::string p = roots.proc + "/" + std::to_string(pid);
        fs::create_directories(p);
        std::string stat = std::to_string(pid) + " (p) S " + std::to_string(parent);
        for (int field = 5; field <= 21; ++field) {
            stat += " 0";
        }
        write(p + "/stat", stat + " " + std::to_string(start) + " 0\n");
        std::string cmdline;
        for (const auto &arg : argv) {
            cmdline += arg + std::string(1, '\0');
        }
        write(p + "/cmdline", cmdline);
    }
    // Job 42's extern step as Slurm 22.05 makes it (uid 1000), with the kernel's member files.
    std::string cgroup(const std::string &controller, const std::string &below = "") {
        const std::string step = roots.cgroup_mount + "/" + controller +
                                 "/slurm_node1/uid_1000/job_42/step_extern" + below;
        fs::create_directories(step + "/slurm_vm");
        for (const std::string &d : {step, step + "/slurm_vm"}) {
            write(d + "/cgroup.procs", "");
            write(d + "/tasks", "");
        }
        return step + "/slurm_vm";
    }
    void all_cgroups() {
        cgroup("freezer");
        const std::string cpuset = cgroup("cpuset");
        write(cpuset + "/../cpuset.cpus", "1\n");
        write(cpuset + "/../cpuset.mems", "0\n");
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

    fs::path dir;
    Config config;
    PlacementRoots roots;
    std::vector<std::pair<std::string, std::vector<unsigned>>> pinned;
    PlacementReport report;
};

TEST_F(PlaceJobVmTest, DoesNothingWhenTheVmDidNotStart) {
    all_cgroups();
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.skipped, "no VM runs for the job here");
    EXPECT_EQ(report.image, "");
    EXPECT_EQ(read(roots.cgroup_mount + "/freezer/slurm_node1/uid_1000/job_42/step_extern/"
                                        "slurm_vm/cgroup.procs"),
              "");
}

TEST_F(PlaceJobVmTest, SaysSoWhenTheJobHasNoCgroupHere) {
    state_file("\"qemu_pid\":500,\"qemu_start\":77");
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
    state_file("\"qemu_pid\":500,\"qemu_start\":77,\"virtiofsd\":[{\"pid\":600,\"start\":80}]");
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.skipped, "");
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
        EXPECT_EQ(read(roots.cgroup_mount + folder + "/slurm_node1/uid_1000/job_42/step_extern" +
                       below + "/slurm_vm/cgroup.procs"),
                  "500\n600\n601\n")
            << folder;
    }
}

TEST_F(PlaceJobVmTest, LeavesThePinningToTheCpusetWithPinVcpusNo) {
    all_cgroups();
    config.pin_vcpus = false;
    state_file("\"qemu_pid\":500,\"qemu_start\":77");
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.cpus, "1");
    EXPECT_FALSE(report.repinned);
    EXPECT_TRUE(pinned.empty());
}

TEST_F(PlaceJobVmTest, PlacesInWhatTheJobHasAndNamesTheRest) {
    cgroup("freezer");
    state_file("\"qemu_pid\":500,\"qemu_start\":77");
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.controllers, std::vector<std::string>{"freezer"});
    EXPECT_EQ(report.missing, (std::vector<std::string>{"cpuset", "cpuacct", "memory"}));
    EXPECT_EQ(report.cpus, "");
    EXPECT_TRUE(pinned.empty());
}

TEST_F(PlaceJobVmTest, RefusesAProcessThatIsNotTheOneThePrologStarted) {
    all_cgroups();
    state_file("\"qemu_pid\":500,\"qemu_start\":76");
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              "QEMU of domain svm-42-node1 (process 500) is not running: pid 500 is another "
              "process now (started at tick 77, not 76)");
    EXPECT_EQ(report.image, "tiny");  // for the caller's message
    EXPECT_EQ(read(roots.cgroup_mount + "/freezer/slurm_node1/uid_1000/job_42/step_extern/"
                                        "slurm_vm/cgroup.procs"),
              "");
    state_file("\"qemu_pid\":500,\"qemu_start\":77,\"virtiofsd\":[{\"pid\":600,\"start\":1}]");
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              "virtiofsd of domain svm-42-node1 (process 600) is not running: pid 600 is another "
              "process now (started at tick 80, not 1)");
    process(500, 1, 77, {"/bin/sh"});
    state_file("\"qemu_pid\":500,\"qemu_start\":77");
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              "QEMU of domain svm-42-node1 (process 500) no longer runs guest=svm-42-node1");
}

TEST_F(PlaceJobVmTest, FindsQemuThroughLibvirtsPidFileWhenTheStateFileHasNone) {
    all_cgroups();
    state_file("\"qemu_pid\":0,\"qemu_start\":0");
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              "no QEMU pid for domain svm-42-node1: cannot read " + roots.libvirt_run +
                  "/svm-42-node1.pid: No such file or directory");
    write(roots.libvirt_run + "/svm-42-node1.pid", "500\n");
    place_job_vm(config, 42, "node1", 1000, report, roots);
    EXPECT_EQ(report.controllers.size(), 4u);
    EXPECT_EQ(read(roots.cgroup_mount + "/freezer/slurm_node1/uid_1000/job_42/step_extern/"
                                        "slurm_vm/cgroup.procs"),
              "500\n");
}

TEST_F(PlaceJobVmTest, RefusesAStateFileOfAnotherDomain) {
    all_cgroups();
    write(state_dir() + "/vm.json", "{\"domain\":\"svm-43-node1\",\"image\":\"tiny\"}");
    EXPECT_EQ(error_of([&] { place_job_vm(config, 42, "node1", 1000, report, roots); }),
              state_dir() + "/vm.json names domain 'svm-43-node1', not svm-42-node1");
}

}  // namespace
}  // namespace svm
