// task_init: the job's user, in slurmstepd, just before the task's exec. When the job has a
// VM on this node, the task becomes the exec client, which runs the task's argv inside the
// VM and behaves like it (output, signals, exit status).
#include "spank_common.h"

#include "exec/task_setup.h"
#include "util/text.h"
#include "vm/job_vm.h"

extern "C" {
#include <slurm/slurm.h>  // SLURM_BATCH_SCRIPT, slurm_conf_t

// slurmstepd's configuration (libslurm's global, public type): TaskProlog and the limits it
// propagates. Weak, so that a process without it gives nullptr instead of failing to load.
extern slurm_conf_t slurm_conf __attribute__((weak));
}

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
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
            slurm_error("%s: job %u node %s image %s: no VM for the task (no prolog ran for "
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
    int argc = 0;
    char **argv = nullptr;
    if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || argc < 1) {
        slurm_error("%s: job %u node %s: cannot read the task's command", kTag, jobid, node);
        return -1;
    }
    const JobVmPaths paths = job_vm_paths(config(), jobid, node);
    // The batch step's argv[0] is the script in slurmd's spool, which the guest cannot see.
    uint32_t stepid = 0;
    const bool batch =
        spank_get_item(sp, S_JOB_STEPID, &stepid) == ESPANK_SUCCESS && stepid == SLURM_BATCH_SCRIPT;
    const std::string ports = std::to_string(config().exec_ports);
    std::vector<const char *> args = {SVM_EXEC_PATH, "--channel-dir", paths.channel_dir.c_str(),
                                      "--ports",     ports.c_str(),   "--stdin"};
    // The client decides what the guest may run on the host (host calls): the admin's choice.
    args.insert(args.end(), {"--host-calls", host_calls_name(config().host_calls)});
    const std::string image = requested_image(sp);
    if (!image.empty()) {
        args.insert(args.end(), {"--image", image.c_str()});
    }
    if (batch) {
        args.push_back("--script");
    }
    // What slurmstepd does after task_init, the client does for it (exec/task_setup.h).
    std::string rank_text, local_text;
    uint32_t rank = 0;
    int local_id = -1;
    if (spank_get_item(sp, S_TASK_GLOBAL_ID, &rank) == ESPANK_SUCCESS) {
        rank_text = std::to_string(rank);
        args.insert(args.end(), {"--task-rank", rank_text.c_str()});
    }
    if (spank_get_item(sp, S_TASK_ID, &local_id) == ESPANK_SUCCESS && local_id >= 0) {
        local_text = std::to_string(local_id);
        args.insert(args.end(), {"--local-task-id", local_text.c_str()});
    }
    // srun --multi-prog sends {CONF_FILE, CONF_TEXT, ...}; SPANK says nothing of the flag, so
    // the text is compared with the file's (the task's cwd is srun's, as for the program).
    if (!batch && !rank_text.empty() && argc >= 2 &&
        is_multi_prog_argv({argv[0], argv[1]}, multi_prog_file_text(argv[0]))) {
        args.push_back("--multi-prog");
    }
    if (&slurm_conf != nullptr) {
        const auto add = [&](const char *option, const char *value) {
            if (value != nullptr && value[0] != '\0') {
                args.insert(args.end(), {option, value});
            }
        };
        add("--task-prolog-conf", slurm_conf.task_prolog);
        add("--propagate-rlimits", slurm_conf.propagate_rlimits);
        add("--propagate-rlimits-except", slurm_conf.propagate_rlimits_except);
    }
    args.push_back("--");
    for (int i = 0; i < argc; ++i) {
        args.push_back(argv[i]);
    }
    args.push_back(nullptr);
    // The task's environment is not this process's: slurmstepd hands its own array (with
    // SLURM_PROCID and the other per-task variables) to execve. The client passes it on.
    char **env = nullptr;
    if (spank_get_item(sp, S_JOB_ENV, &env) != ESPANK_SUCCESS || env == nullptr) {
        slurm_error("%s: job %u node %s: cannot read the task's environment", kTag, jobid, node);
        return -1;
    }
    execve(SVM_EXEC_PATH, const_cast<char *const *>(args.data()), env);
    slurm_error("%s: job %u node %s: cannot run %s: %m", kTag, jobid, node, SVM_EXEC_PATH);
    return -1;
}

}  // namespace svm::spank
