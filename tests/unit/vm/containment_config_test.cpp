// What slurm-vm check says of Slurm's configuration for containment, from the text of
// `scontrol show config` (as Slurm 24.11 prints it, cut down).
#include "vm/containment_config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace svm {
namespace {

const char *kContained = R"(Configuration data as of 2025-06-01T10:00:00
AccountingStorageType   = accounting_storage/slurmdbd
JobAcctGatherType       = jobacct_gather/cgroup
PrologFlags             = Alloc,Contain
ProctrackType           = proctrack/cgroup
TaskPlugin              = task/cgroup,task/affinity
TaskPluginParam         = (null type)

Cgroup Support Configuration:
CgroupMountpoint        = /sys/fs/cgroup
CgroupPlugin            = cgroup/v2
ConstrainCores          = yes
ConstrainRAMSpace       = yes
IgnoreSystemd           = yes

Slurmctld(primary) at ctl is UP
)";

TEST(ContainmentConfig, ReadsTheKeyValueLinesOfScontrolShowConfig) {
    const auto config = parse_slurm_config(kContained);
    EXPECT_EQ(config.at("PrologFlags"), "Alloc,Contain");
    EXPECT_EQ(config.at("TaskPlugin"), "task/cgroup,task/affinity");
    EXPECT_EQ(config.at("CgroupPlugin"), "cgroup/v2");
    EXPECT_EQ(config.at("TaskPluginParam"), "(null type)");
    EXPECT_FALSE(config.contains("Cgroup Support Configuration:"));
    EXPECT_FALSE(config.contains("Slurmctld(primary) at ctl is UP"));
}

TEST(ContainmentConfig, SaysNothingWhenEverythingContainmentNeedsIsThere) {
    EXPECT_TRUE(containment_warnings(parse_slurm_config(kContained), CgroupVersion::V2).empty());
    auto config = parse_slurm_config(kContained);
    config["CgroupPlugin"] = "autodetect";
    EXPECT_TRUE(containment_warnings(config, CgroupVersion::V1).empty());
    config["PrologFlags"] = "contain,X11";  // Slurm reads it without case
    EXPECT_TRUE(containment_warnings(config, CgroupVersion::V1).empty());
}

TEST(ContainmentConfig, WarnsOnceForEachSettingThatIsMissing) {
    const auto config = parse_slurm_config(
        "PrologFlags = Alloc\nProctrackType = proctrack/linuxproc\nTaskPlugin = task/affinity\n"
        "JobAcctGatherType = jobacct_gather/linux\nCgroupPlugin = cgroup/v1\n");
    EXPECT_EQ(containment_warnings(config, CgroupVersion::V2),
              (std::vector<std::string>{
                  "PrologFlags=Alloc lacks Contain: jobs have no extern step, and their VMs "
                  "stay outside their cgroups (not frozen by scontrol suspend, not in the job's "
                  "memory limit or accounting)",
                  "ProctrackType=proctrack/linuxproc is not proctrack/cgroup: scontrol suspend "
                  "and preemption by SUSPEND do not freeze VMs",
                  "TaskPlugin=task/affinity lacks task/cgroup: VMs are held to neither the "
                  "job's CPUs nor its memory",
                  "JobAcctGatherType=jobacct_gather/linux is not jobacct_gather/cgroup: sstat "
                  "and sacct do not count VMs' CPU time and memory",
                  "CgroupPlugin=cgroup/v1 but this node has cgroup v2: set cgroup/v2 (or "
                  "autodetect) in cgroup.conf"}));
}

TEST(ContainmentConfig, WarnsThatAPrologRunInTheJobBootsTheVmTooLateToPlaceIt) {
    auto config = parse_slurm_config(kContained);
    config["PrologFlags"] = "Alloc,Contain,RunInJob";
    EXPECT_EQ(containment_warnings(config, CgroupVersion::V2),
              std::vector<std::string>{
                  "PrologFlags=Alloc,Contain,RunInJob has RunInJob: the prolog boots the VM "
                  "inside the extern step, after the step's moment to place it, so VMs stay "
                  "outside their steps' cgroups (not frozen by scontrol suspend, not in sstat "
                  "or sacct)"});
}

TEST(ContainmentConfig, NamesASettingThatIsNotThereAtAll) {
    const auto lines = containment_warnings({}, CgroupVersion::V1);
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[0].substr(0, 38), "PrologFlags=(not set) lacks Contain: j");
}

}  // namespace
}  // namespace svm
