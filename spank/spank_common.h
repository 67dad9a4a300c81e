// State and helpers shared by the SPANK plugin's per-context files. Every entry point is in
// slurm_vm_spank.cpp; the files named after a context hold what runs there:
//   submit.cpp       sbatch/srun/salloc (user, before anything is queued)
//   task.cpp         user_init and task_init (the job's user, in slurmstepd)
//   job_script.cpp   prolog and epilog (root, on each allocated node), in the node module
//   extern_step.cpp  the job's extern step (root, in its slurmstepd), in the node module
// The plugin is two modules: spank_slurm_vm.so, which every sbatch, srun and salloc loads, links
// no libvirt (its load would cost each command ~10 ms); the prolog, the epilog and slurmd's
// start-up sweep load slurm_vm_node.so (node_module.cpp), which has libvirt, when they run.
#pragma once

extern "C" {
#include <slurm/spank.h>
}

#include "util/config.h"
#include "util/process.h"
#include "vm/vm_lifecycle.h"  // StopReport

#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <vector>

namespace svm::spank {

inline constexpr const char *kTag = "slurm-vm";
inline constexpr const char *kImageEnv = "SLURM_VM_IMAGE";  // the option's environment twin

// The plugstack.conf arguments, parsed on the first callback (guarded). Each module of the
// plugin (spank_slurm_vm.so, slurm_vm_node.so) has its own.
std::optional<Config> &config_slot();
Config &config();

// slurm_spank_init is not called in the prolog/epilog (job script) context, but every
// callback gets the plugstack.conf arguments: parse them on first use, wherever that is. No
// exception leaves: Slurm gets -1 and the log the reason.
template <typename F>
int guarded(const char *where, int ac, char **av, F &&f) {
    try {
        if (!config_slot()) {
            config_slot() = parse_config(std::vector<std::string>(av, av + ac));
        }
        return f();
    } catch (const std::exception &e) {
        slurm_error("%s: %s: %s", kTag, where, e.what());
    } catch (...) {
        slurm_error("%s: %s: unexpected error", kTag, where);
    }
    return -1;
}

// The --vm-image value given on this command line (submit side), or "".
std::string &option_value();

// The option as registered with Slurm (it must be the same object in every context).
struct spank_option *image_option();

// The image a job asked for, as seen from the prolog/epilog/task: the option, else its
// environment twin carried in the job's SPANK environment.
std::string requested_image(spank_t sp);

int on_submit_init_post_opt(spank_t sp);

// What slurmctld says of a job (slurm_job.cpp), through Slurm's API.
struct SlurmJob {
    bool may_own_vm = false;   // running, suspended, configuring or completing
    unsigned cpus_here = 0;    // CPUs allocated on the node asked about
    std::string cpu_ids_here;  // their Slurm (abstract) ids, "0-1,4": see util/cpu_topology.h
    uint64_t memory_mib_here = 0;
    std::string admin_comment;
    std::string account;  // the account the job runs under now ("" when Slurm has none)
};
// Nothing when slurmctld does not know the job; throws Error when it cannot be asked.
std::optional<SlurmJob> load_slurm_job(uint32_t jobid, const std::string &node);

// Accounting (vm_accounting.cpp). Throws svm::Error.
void record_vm_stop(const Config &config, uint32_t jobid, const std::string &state_json,
                    const StopReport &stopped);
std::string read_state_file(const std::string &path);
// Destroys VMs and removes files of jobs that are over: of `node`, or of every node on this
// host when `node` is empty (slurmd's start). Throws svm::Error.
void sweep_orphans(const std::string &node, uint32_t current_jobid);
int on_job_prolog(spank_t sp);
int on_job_epilog(spank_t sp);
// The extern step's task_post_fork: the job's VM into the job's cgroups. Always 0 (a failure
// fails the job through its error file).
int on_extern_step(spank_t sp);
// slurmstepd, once per step of a job with a VM here: what the guest may have put in the step's
// environment is set aside for it (exec/guest_env.h). -1 fails the step.
int on_step_user_init(spank_t sp);
int on_task_init(spank_t sp);

}  // namespace svm::spank
