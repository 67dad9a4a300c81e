// The job's user, in slurmstepd: user_init once per step, task_init just before each task's
// exec. When the job has a VM on this node, the task becomes the exec client, which runs the
// task's argv inside the VM and behaves like it (output, signals, exit status); how, depends on
// the Slurm release (slurm_api/task_start.h).
#include "spank_common.h"

#include "exec/guest_env.h"
#include "exec/task_setup.h"
#include "slurm_api/task_start.h"
#include "util/text.h"
#include "vm/job_vm.h"

extern "C" {
#include <slurm/slurm.h>  // SLURM_BATCH_SCRIPT
}

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#ifndef SVM_EXEC_PATH
#error "SVM_EXEC_PATH must name the installed slurm-vm-exec"
#endif

namespace svm::spank {

namespace {

// The job and node of this step, when the job has a VM here.
struct VmStep {
    uint32_t jobid = 0;
    const char *node = nullptr;
};

std::optional<VmStep> vm_step(spank_t sp) {
    VmStep step;
    step.node = getenv("SLURMD_NODENAME");
    if (spank_get_item(sp, S_JOB_ID, &step.jobid) != ESPANK_SUCCESS || step.node == nullptr ||
        !job_has_vm(config(), step.jobid, step.node)) {
        return std::nullopt;
    }
    return step;
}

// The step's (or task's) environment, as slurmstepd will hand it on.
std::vector<std::string> task_environment(spank_t sp) {
    std::vector<std::string> env;
    char **entries = nullptr;
    if (spank_get_item(sp, S_JOB_ENV, &entries) == ESPANK_SUCCESS && entries != nullptr) {
        for (char **e = entries; *e != nullptr; ++e) {
            env.emplace_back(*e);
        }
    }
    return env;
}

// Sets aside what the guest may have chosen (exec/guest_env.h). False after one line in the
// log: a step whose host side could run with those variables must not start.
bool set_aside_for_guest(spank_t sp, const VmStep &step, bool step_start) {
    const EnvEdit edit = svm::set_aside_for_guest(task_environment(sp), step_start);
    for (const std::string &name : edit.unset) {
        // Slurm's unsetenvp skips the second of two entries of a name in a row: again until
        // none is left.
        char probe[1];
        int tries = 0;
        while (spank_getenv(sp, name.c_str(), probe, sizeof probe) != ESPANK_ENV_NOEXIST &&
               tries++ < 8) {
            spank_unsetenv(sp, name.c_str());
        }
        if (spank_getenv(sp, name.c_str(), probe, sizeof probe) != ESPANK_ENV_NOEXIST) {
            slurm_error("%s: job %u node %s: cannot remove %s from the step's environment", kTag,
                        step.jobid, step.node, printable(name).c_str());
            return false;
        }
    }
    for (const auto &[name, value] : edit.set) {
        if (spank_setenv(sp, name.c_str(), value.c_str(), 1) != ESPANK_SUCCESS) {
            slurm_error("%s: job %u node %s: cannot set %s in the step's environment", kTag,
                        step.jobid, step.node, printable(name).c_str());
            return false;
        }
    }
    return true;
}

}  // namespace

// Before slurmstepd forks the step's tasks and runs their TaskProlog, and before it runs their
// TaskEpilog after them: all with this environment, on the host.
int on_step_user_init(spank_t sp) {
    const auto step = vm_step(sp);
    if (!step) {
        return 0;
    }
    return set_aside_for_guest(sp, *step, true) ? 0 : -1;
}

int on_task_init(spank_t sp) {
    uint32_t jobid = 0;
    const char *node = getenv("SLURMD_NODENAME");
    // The task prolog's hand-over (slurm_api/22.05) is for this callback alone: no task, host
    // side or guest, sees it.
    const std::string prolog = env_get(task_environment(sp), kTaskPrologEnv).value_or("");
    spank_unsetenv(sp, kTaskPrologEnv);
    if (spank_get_item(sp, S_JOB_ID, &jobid) != ESPANK_SUCCESS || node == nullptr) {
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
        return 0;  // not a VM job: the task runs as usual
    }
    if (const auto error = job_vm_error(config(), jobid, node)) {
        // The task's stderr is the job's output: the user reads why here.
        fprintf(stderr, "%s\n", error->c_str());
        fflush(stderr);
        return -1;
    }
    // Again for what Slurm added to the task's environment since user_init.
    if (!set_aside_for_guest(sp, VmStep{jobid, node}, false)) {
        return -1;
    }
    const JobVmPaths paths = job_vm_paths(config(), jobid, node);
    // The batch step's argv[0] is the script in slurmd's spool, which the guest cannot see.
    uint32_t stepid = 0;
    slurm_api::TaskStart start;
    start.client = SVM_EXEC_PATH;
    start.batch =
        spank_get_item(sp, S_JOB_STEPID, &stepid) == ESPANK_SUCCESS && stepid == SLURM_BATCH_SCRIPT;
    start.user_task_prolog = prolog;
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
