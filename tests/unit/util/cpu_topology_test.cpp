#include "util/cpu_topology.h"

#include "util/error.h"
#include "util/safe_fs.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace svm {
namespace {

namespace fs = std::filesystem;

// A fake /sys/devices/system/cpu: cpuN/topology/{physical_package_id,core_id}.
class FakeSysfs : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-cpu-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        root_ = tmpl;
    }
    void TearDown() override { remove_tree(root_); }
    void cpu(unsigned id, int package, int core) {
        const fs::path t = fs::path(root_) / ("cpu" + std::to_string(id)) / "topology";
        fs::create_directories(t);
        std::ofstream(t / "physical_package_id") << package << "\n";
        std::ofstream(t / "core_id") << core << "\n";
    }
    std::string root_;
};

TEST_F(FakeSysfs, OrdersTheThreadsOfACoreTogetherAsSlurmNumbersThem) {
    // 2 sockets x 2 cores x 2 threads, the kernel numbering first threads first (as Intel's).
    cpu(0, 0, 0), cpu(1, 0, 1), cpu(2, 1, 0), cpu(3, 1, 1);
    cpu(4, 0, 0), cpu(5, 0, 1), cpu(6, 1, 0), cpu(7, 1, 1);
    fs::create_directories(fs::path(root_) / "cpufreq");  // not a CPU
    fs::create_directories(fs::path(root_) / "cpu8");     // offline: no topology
    const auto order = kernel_cpus_in_slurm_order(root_);
    EXPECT_EQ(order, (std::vector<unsigned>{0, 4, 1, 5, 2, 6, 3, 7}));
    // Slurm's CPUs 0 and 1 are the two threads of socket 0's first core.
    EXPECT_EQ(kernel_cpus_of({0, 1}, order), (std::vector<unsigned>{0, 4}));
    EXPECT_EQ(kernel_cpus_of({2, 7}, order), (std::vector<unsigned>{1, 7}));
}

TEST_F(FakeSysfs, NamesACpuBeyondTheNode) {
    cpu(0, 0, 0), cpu(1, 0, 1);
    try {
        kernel_cpus_of({2}, kernel_cpus_in_slurm_order(root_));
        FAIL() << "mapped";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "Slurm's CPU 2 is beyond this node's 2 CPUs (does slurm.conf describe this "
                     "node?)");
    }
}

TEST(CpuTopology, ReadsThisMachine) {
    EXPECT_FALSE(kernel_cpus_in_slurm_order().empty());
}

}  // namespace
}  // namespace svm
