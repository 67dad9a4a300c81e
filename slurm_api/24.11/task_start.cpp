// Slurm 24.11: task_init puts the exec client before the task's argv
// (spank_prepend_task_argv), and slurmstepd's exec_task (src/slurmd/slurmstepd/task.c) goes on
// as for any task: TaskProlog and --task-prolog with their output, TMPDIR (made on the host),
// the limits and umask, then execve of the client, whose path is already absolute, with the
// task's argv after "--" (the --multi-prog line was picked when the step was made). The client
// sends what it was left with: its environment, limits and umask (docs/architecture.md, "A VM
// task's start").
#include "slurm_api/task_start.h"

#include "spank/spank_common.h"

#include <string>
#include <vector>

namespace svm::slurm_api {

using spank::kTag;

int start_exec_client(spank_t sp, const TaskStart &start) {
    std::vector<std::string> args = {start.client};
    args.insert(args.end(), start.options.begin(), start.options.end());
    // _make_tmpdir made TMPDIR on the host, for local task 0 alone; the guest makes it there.
    int local_id = -1;
    if (spank_get_item(sp, S_TASK_ID, &local_id) == ESPANK_SUCCESS && local_id >= 0) {
        args.insert(args.end(), {"--local-task-id", std::to_string(local_id)});
    }
    args.emplace_back("--");
    std::vector<const char *> c_args;
    for (const std::string &arg : args) {
        c_args.push_back(arg.c_str());
    }
    // Slurm copies the words (xstrdup).
    const spank_err_t err =
        spank_prepend_task_argv(sp, static_cast<int>(c_args.size()), c_args.data());
    if (err != ESPANK_SUCCESS) {
        slurm_error("%s: cannot put %s before the task's command: %s", kTag, start.client,
                    spank_strerror(err));
        return -1;
    }
    return 0;
}

// slurmstepd runs srun's --task-prolog itself: nothing to hand over.
int on_srun_step_launch(spank_t) {
    return 0;
}

}  // namespace svm::slurm_api
