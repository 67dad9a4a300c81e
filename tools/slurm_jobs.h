// The admin tool's window on Slurm: jobs as slurmctld keeps them (slurm_load_jobs) and host
// lists expanded by Slurm's own functions (slurm_hostlist_*), never text parsed back from
// scontrol. Only API that Slurm 22.05 and 24.11 both have, with the same meaning, is used.
#pragma once

#include "accounting/running_jobs.h"

#include <string>
#include <string_view>
#include <vector>

namespace svm {

// Every job slurmctld knows, one at a time (a JobSource). Throws Error naming Slurm's reason
// when slurmctld cannot be asked.
void for_each_slurm_job(const std::function<void(const JobRecord &)> &on_job);

// `hostlist` expanded by Slurm's hostlist functions (a HostlistExpander). Throws Error when Slurm
// cannot read it or it names more than kMaxHostlistNames hosts.
std::vector<std::string> slurm_expand_hostlist(std::string_view hostlist);

}  // namespace svm
