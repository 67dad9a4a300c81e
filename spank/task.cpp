// task_init: the job's user, in slurmstepd, just before the task's exec. When the job has a
// VM on this node, the task becomes the exec client, which runs the task's argv inside the
// VM and behaves like it (output, signals, exit status); how, depends on the Slurm release
// (slurm_api/task_start.h).
#include "spank_common.h"

#include "exec/task_setup.h"
#include "slurm_api/task_start.h"
#include "util/text.h"
#include "vm/job_vm.h"

extern "C" {
#include <slurm/slurm.h>  // SLURM_BATCH_SCRIPT
}

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#ifndef SVM_EXEC_PATH
#error "SVM_EXEC_PATH must name the installed slurm-vm-exec"
#endif

namespace svm::spank {

int on_task_init(spank_t sp) {
    uint32_t jobid = 0;
    const char *node = getenv("SLURMD_NODENAME");
    if (spank_get_item(sp, S_JOB_ID, &jobid) != ESPANK_SUCCESS || node == nullptr) {
        spank_unsetenv(sp, kTaskPrologEnv);
        return 0;
    }
    if (!job_has_vm(config(), jobid, node)) {
        if (const std::string asked = requested_image(sp); !asked.empty()) {
            // The job asked for a VM but no prolog started one here: Slurm skips the prolog
            // of a job it ran on this node within the credential's lifetime (a requeued job
            // whose start an admin forced). Never run it on the host instead.
            fprintf(stderr,
                    "slurm-vm: image '%s' on %s (job %u): no VM was started for this job on "
                    "this node (its prolog did not run here); the task does not run outside "
                    "its VM\n",
                    printable(asked).c_str(), node, jobid);
            fflush(stderr);
            slurm_error(
                "%s: job %u node %s image %s: no VM for the task (no prolog ran for "
                "the job on this node); the task is refused",
                kTag, jobid, node, printable(asked).c_str());
            return -1;
        }
        // Not a VM job: the task runs as usual, without the variable our srun side set.
        spank_unsetenv(sp, kTaskPrologEnv);
        return 0;
    }
    if (const auto error = job_vm_error(config(), jobid, node)) {
        // The task's stderr is the job's output: the user reads why here.
        fprintf(stderr, "%s\n", error->c_str());
        fflush(stderr);
        return -1;
    }
    const JobVmPaths paths = job_vm_paths(config(), jobid, node);
    // The batch step's argv[0] is the script in slurmd's spool, which the guest cannot see.
    uint32_t stepid = 0;
    slurm_api::TaskStart start;
    start.client = SVM_EXEC_PATH;
    start.batch =
        spank_get_item(sp, S_JOB_STEPID, &stepid) == ESPANK_SUCCESS && stepid == SLURM_BATCH_SCRIPT;
    start.options = {"--channel-dir", paths.channel_dir, "--ports",
                     std::to_string(config().exec_ports), "--stdin"};
    // The client decides what the guest may run on the host (host calls): the admin's choice.
    start.options.insert(start.options.end(),
                         {"--host-calls", host_calls_name(config().host_calls)});
    if (const std::string image = requested_image(sp); !image.empty()) {
        start.options.insert(start.options.end(), {"--image", image});
    }
    if (start.batch) {
        start.options.emplace_back("--script");
    }
    if (slurm_api::start_exec_client(sp, start) != 0) {
        slurm_error("%s: job %u node %s: the task cannot start in its VM", kTag, jobid, node);
        return -1;
    }
    return 0;
}

}  // namespace svm::spank
