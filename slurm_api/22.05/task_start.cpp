// Slurm 22.05: task_init execs the exec client, in place of everything slurmstepd's exec_task
// would still have done (src/slurmd/slurmstepd/task.c): the client does it, told what it needs
// here (docs/architecture.md, "A VM task's start").
#include "slurm_api/task_start.h"

#include "exec/task_setup.h"
#include "spank/spank_common.h"

extern "C" {
#include <slurm/slurm.h>  // slurm_conf_t

// slurmstepd's configuration (libslurm's global, public type): TaskProlog and the limits it
// propagates. Weak, so that a process without it gives nullptr instead of failing to load.
extern slurm_conf_t slurm_conf __attribute__((weak));
}

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace svm::slurm_api {

using spank::kTag;

int start_exec_client(spank_t sp, const TaskStart &start) {
    int argc = 0;
    char **argv = nullptr;
    if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || argc < 1) {
        slurm_error("%s: cannot read the task's command", kTag);
        return -1;
    }
    std::vector<std::string> args = {start.client};
    args.insert(args.end(), start.options.begin(), start.options.end());
    const auto add = [&](const char *option, const std::string &value) {
        if (!value.empty()) {
            args.insert(args.end(), {option, value});
        }
    };
    uint32_t rank = 0;
    int local_id = -1;
    std::string rank_text;
    if (spank_get_item(sp, S_TASK_GLOBAL_ID, &rank) == ESPANK_SUCCESS) {
        rank_text = std::to_string(rank);
        add("--task-rank", rank_text);
    }
    if (spank_get_item(sp, S_TASK_ID, &local_id) == ESPANK_SUCCESS && local_id >= 0) {
        add("--local-task-id", std::to_string(local_id));
    }
    // srun --multi-prog sends {CONF_FILE, CONF_TEXT, ...}; SPANK says nothing of the flag, so
    // the text is compared with the file's (the task's cwd is srun's, as for the program).
    if (!start.batch && !rank_text.empty() && argc >= 2 &&
        is_multi_prog_argv({argv[0], argv[1]}, multi_prog_file_text(argv[0]))) {
        args.push_back("--multi-prog");
    }
    if (&slurm_conf != nullptr) {
        add("--task-prolog-conf", slurm_conf.task_prolog != nullptr ? slurm_conf.task_prolog : "");
        add("--propagate-rlimits",
            slurm_conf.propagate_rlimits != nullptr ? slurm_conf.propagate_rlimits : "");
        add("--propagate-rlimits-except", slurm_conf.propagate_rlimits_except != nullptr
                                              ? slurm_conf.propagate_rlimits_except
                                              : "");
    }
    // The batch step has no --task-prolog natively: a value there is a leftover of the
    // submitter's environment.
    if (!start.batch) {
        add("--user-task-prolog", start.user_task_prolog);
    }
    args.emplace_back("--");
    args.insert(args.end(), argv, argv + argc);
    std::vector<char *> c_args;
    for (std::string &arg : args) {
        c_args.push_back(arg.data());
    }
    c_args.push_back(nullptr);
    // The task's environment is not this process's: slurmstepd hands its own array (with
    // SLURM_PROCID and the other per-task variables) to execve. The client passes it on.
    char **env = nullptr;
    if (spank_get_item(sp, S_JOB_ENV, &env) != ESPANK_SUCCESS || env == nullptr) {
        slurm_error("%s: cannot read the task's environment", kTag);
        return -1;
    }
    execve(start.client, c_args.data(), env);
    slurm_error("%s: cannot run %s: %m", kTag, start.client);
    return -1;
}

namespace {

// This process's command line, word by word.
std::vector<std::string> own_command_line() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> words;
    std::string word;
    for (char c : text) {
        if (c == '\0') {
            words.push_back(std::move(word));
            word.clear();
        } else {
            word += c;
        }
    }
    return words;
}

// The user's --task-prolog, from srun's own options (its words before the task's), else
// SLURM_TASK_PROLOG, srun's input variable for the option; "" for none.
std::string srun_task_prolog(spank_t sp) {
    int argc = 0;
    char **argv = nullptr;
    std::optional<std::string> prolog;
    if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) == ESPANK_SUCCESS && argc >= 1) {
        // {CONF_FILE, CONF_TEXT, ...} for --multi-prog, whose text is not on the command line.
        const std::vector<std::string> words = own_command_line();
        std::size_t tail = static_cast<std::size_t>(argc);
        if (argc >= 2 && is_multi_prog_argv({argv[0], argv[1]}, multi_prog_file_text(argv[0]))) {
            tail -= 1;
        }
        if (words.size() > tail + 1) {
            prolog = find_task_prolog_option(std::vector<std::string>(
                words.begin() + 1, words.end() - static_cast<std::ptrdiff_t>(tail)));
        }
    }
    if (!prolog) {
        if (const char *env = getenv("SLURM_TASK_PROLOG"); env != nullptr) {
            prolog = env;
        }
    }
    return prolog.value_or("");
}

}  // namespace

// slurmstepd runs the user's --task-prolog after task_init, which is where a VM task leaves it,
// and SPANK does not show the option to the task. So it travels in the step's environment,
// set in srun's own (spank_setenv is for remote contexts; srun merges its environment into the
// step's after this callback). Always set, to "" for none: srun's own environment overrides
// what `--export` or SLURM_EXPORT_ENV put in the step's (_build_user_env, both for ALL and for
// a list, which still takes every SLURM_* variable of srun's), so a value a guest sent with a
// host call's srun never stands.
int on_srun_step_launch(spank_t sp) {
    if (spank_context() != S_CTX_LOCAL) {
        return 0;
    }
    // As given: slurmstepd refuses a path that is not absolute, and so does the exec client.
    if (setenv(kTaskPrologEnv, srun_task_prolog(sp).c_str(), 1) != 0) {
        slurm_error("%s: cannot pass --task-prolog to the step's tasks", kTag);
        return -1;
    }
    return 0;
}

}  // namespace svm::slurm_api
