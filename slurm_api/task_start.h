// The Slurm release seam (docs/architecture.md, "The Slurm release seam") for a VM task's start:
// how a task becomes the exec client, and what the client must still do that slurmstepd
// did not. Each release folder implements it (slurm_api/<release>/task_start.cpp):
//   22.05: task_init execs slurm-vm-exec itself, before slurmstepd's own steps, so the client
//          does them: --multi-prog's line, TaskProlog and --task-prolog, TMPDIR, the limits
//          Slurm propagates (exec/task_setup.h). srun hands --task-prolog over.
//   24.11: task_init puts slurm-vm-exec before the task's argv (spank_prepend_task_argv, 23.11
//          on) and slurmstepd goes on: prologs, TMPDIR, limits, multi-prog and PATH are its
//          own, and the client only sends what it was left with to the guest.
#pragma once

extern "C" {
#include <slurm/spank.h>
}

#include <string>
#include <vector>

namespace svm::slurm_api {

struct TaskStart {
    const char *client = nullptr;      // slurm-vm-exec's path
    std::vector<std::string> options;  // the client's options every release passes
    bool batch = false;                // the batch step: argv[0] is slurmd's copy of the script
    // The user's srun --task-prolog as on_srun_step_launch handed it over, or "". Only 22.05
    // hands it over; 24.11's slurmstepd runs it itself.
    std::string user_task_prolog;
};

// task_init's last step for a task of a job with a VM on this node. Returns 0 when slurmstepd
// is to go on and exec the client (24.11); -1 after one line in the log when the task cannot
// start. On 22.05 it does not return when the client starts.
int start_exec_client(spank_t sp, const TaskStart &start);

// srun, in slurm_spank_local_user_init, just before it sends the step: what the release needs
// the step to carry for its tasks.
int on_srun_step_launch(spank_t sp);

}  // namespace svm::slurm_api
