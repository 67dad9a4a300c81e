// Parts of a job VM's life that need no running QEMU: the guest's memory from the job's
// allocation.
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

}  // namespace
}  // namespace svm
