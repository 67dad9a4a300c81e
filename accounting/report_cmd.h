// The accounting subcommands of the admin tool `slurm-vm`:
//   slurm-vm report [--from YYYY-MM-DD[THH:MM]] [--to YYYY-MM-DD[THH:MM]]
//                   [--format table|csv|json] [--map FILE] [--sacct-output FILE]
//       usage per physical host and per image in [from, to), from sacct and the host map. The
//       window defaults to sreport's: yesterday 00:00 to today 00:00, local time.
//   slurm-vm map start VMNODE HOST [--at TIME] | stop VMNODE [--at TIME] | list  [--map FILE]
//       record and list which physical host runs each long-lived VM node.
// Options are read with getopt_long, so they may come in any order, as --opt=value, or after
// the other words. Each command returns the process's exit status: 0 done, 2 bad arguments
// (one line on stderr naming the problem, with the usage); other failures throw svm::Error
// for main() to print.
#pragma once

#include "accounting/job_records.h"
#include "accounting/running_jobs.h"

#include <string>
#include <vector>

namespace svm {

inline constexpr const char *kDefaultHostMap = "/var/lib/slurm-vm/host-map";

// `expand` expands sacct's node lists: Slurm's own functions in the admin tool.
int cmd_report(const std::vector<std::string> &args,
               const HostlistExpander &expand = expand_hostlist);
int cmd_map(const std::vector<std::string> &args);
// slurm-vm running HOST [--map FILE]: the jobs running on HOST now, bare, in its VMs, and on
// the VM nodes it hosts. `jobs` is slurmctld's job list (Slurm's API in the admin tool).
int cmd_running(const std::vector<std::string> &args, const JobSource &jobs);

}  // namespace svm
