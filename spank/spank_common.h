// State and helpers shared by the SPANK plugin's per-context files. Every entry point is in
// slurm_vm_spank.cpp; the files named after a context hold what runs there:
//   submit.cpp       sbatch/srun/salloc (user, before anything is queued)
//   job_script.cpp   prolog and epilog (root, on each allocated node)
//   task.cpp         task_init (the job's user, in slurmstepd, just before exec)
#pragma once

extern "C" {
#include <slurm/spank.h>
}

#include "config.h"
#include "process.h"
#include "vm_lifecycle.h"  // StopReport

#include <chrono>
#include <optional>
#include <string>

namespace svm::spank {

inline constexpr const char *kTag = "slurm-vm";
inline constexpr const char *kImageEnv = "SLURM_VM_IMAGE";  // the option's environment twin

// The plugstack.conf arguments, parsed once in slurm_spank_init.
Config &config();

// The --vm-image value given on this command line (submit side), or "".
std::string &option_value();

// The option as registered with Slurm (it must be the same object in every context).
struct spank_option *image_option();

// The image a job asked for, as seen from the prolog/epilog/task: the option, else its
// environment twin carried in the job's SPANK environment.
std::string requested_image(spank_t sp);

int on_submit_init_post_opt(spank_t sp);

// `scontrol show job -o [-d] JOBID`, with a timeout (prolog and epilog must never hang).
ProcessResult scontrol_show_job(uint32_t jobid, bool detailed, std::chrono::seconds timeout);

// Accounting (vm_accounting.cpp). Both throw svm::Error.
void record_vm_placement(uint32_t jobid, const std::string &node, const std::string &image,
                         const std::string &vm_hostname);
void record_vm_stop(const Config &config, uint32_t jobid, const std::string &state_json,
                    const StopReport &stopped);
std::string read_state_file(const std::string &path);
int on_job_prolog(spank_t sp);
int on_job_epilog(spank_t sp);
int on_task_init(spank_t sp);

}  // namespace svm::spank
