// What Slurm's configuration must say for a job's VM to be contained in the job's cgroups
// (docs/admin-guide.md, "Containment"), read from `scontrol show config`, which prints
// slurm.conf and cgroup.conf as Slurm resolved them. For `slurm-vm check`.
#pragma once

#include "vm/job_cgroup.h"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

// The "Key = value" lines of `scontrol show config`, as key -> value ("PrologFlags" ->
// "Alloc,Contain"). Headings and other lines are skipped; a later key wins.
std::map<std::string, std::string> parse_slurm_config(std::string_view show_config_text);

// One line per setting containment needs that `config` lacks, in this order: PrologFlags
// without Contain, PrologFlags with RunInJob (Slurm 24.05 and later run the prolog inside the
// extern step, after task_post_fork), ProctrackType not proctrack/cgroup, TaskPlugin without
// task/cgroup, JobAcctGatherType not jobacct_gather/cgroup, and a CgroupPlugin for the other
// hierarchy than the node's `version`. None when all is there.
std::vector<std::string> containment_warnings(const std::map<std::string, std::string> &config,
                                              CgroupVersion version);

}  // namespace svm
