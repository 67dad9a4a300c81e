// What slurmstepd does to a native task after SPANK's task_init, done by the exec client for a
// task that runs in a VM (Slurm 22.05 src/slurmd/slurmstepd/task.c exec_task, multi_prog.c,
// ulimits.c). The client runs on the host, as the job's user, in the task's place: it applies
// these to the EXEC request before sending it. See docs/architecture.md, "A VM task's start".
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "exec/protocol/messages.h"  // ResourceLimit

namespace svm {

// ---- srun --multi-prog ----------------------------------------------------------------------

// srun sends a --multi-prog step as argv = {CONF_FILE, CONF_TEXT, EXTRA_ARGS...}: the text of the
// configuration file is the second word. True when argv looks so: two words at least, and the
// second is exactly `file_text`, the text of the file the first names (nullopt: unreadable).
bool is_multi_prog_argv(const std::vector<std::string> &argv,
                        const std::optional<std::string> &file_text);

// The text of a --multi-prog configuration file as far as it can matter: srun refuses a file
// over 60000 bytes, and one byte more tells such a file apart. nullopt when it cannot be read.
std::optional<std::string> multi_prog_file_text(const std::string &path);

struct MultiProgResult {
    std::vector<std::string> argv;  // empty on error
    std::string error;              // "line 3: ..." / "no line for task 4"
};
// The argv of task `rank` (its global id), as slurmstepd's multi_prog_get_argv builds it: the
// first line whose ranks ("*", "N", "N-M", lists of them with ',') hold `rank`, split into words
// (single quotes keep everything, a backslash escapes one character or continues the line),
// %t replaced by the rank and %o by the task's offset in that line's ranks; then `extra` (the
// words after the file on srun's command line). Lines starting with '#' are comments. At most
// 127 words, as Slurm.
MultiProgResult multi_prog_argv(std::string_view conf, int rank,
                                const std::vector<std::string> &extra);

// ---- TaskProlog / --task-prolog -------------------------------------------------------------

// The variable by which the plugin in srun hands a task the user's --task-prolog (SPANK does
// not show it to task_init); removed from every task's environment, never taken from a guest.
inline constexpr const char *kTaskPrologEnv = "SLURM_VM_TASK_PROLOG";

// Whether the environment entry `entry` ("NAME=value") sets `name`.
inline bool env_entry_sets(std::string_view entry, std::string_view name) {
    return entry.size() > name.size() && entry[name.size()] == '=' && entry.starts_with(name);
}

// Applies a task prolog's standard output to env as slurmstepd does (_proc_stdout): each line
// "export NAME=VALUE" sets NAME (spaces after "export" and before '=' dropped, VALUE kept as it
// is), "unset NAME" removes it, "print TEXT" is returned, to go to the task's stdout. Other lines
// are ignored. env holds "NAME=value" entries.
std::string apply_task_prolog_output(std::string_view output, std::vector<std::string> &env);

// The value of NAME in env, or nullopt.
std::optional<std::string> env_get(const std::vector<std::string> &env, std::string_view name);
void env_set(std::vector<std::string> &env, std::string_view name, std::string_view value);
void env_unset(std::vector<std::string> &env, std::string_view name);

struct PrologRun {
    int status = 0;  // wait(2) status
    std::string output;
};
// Runs a task prolog as slurmstepd's run_command does: argv = {path}, the given environment,
// stdin from /dev/null, stdout and stderr into one pipe that is returned, in its own process
// group. Throws Error if it cannot start.
PrologRun run_task_prolog(const std::string &path, const std::vector<std::string> &env);

// The value of srun's --task-prolog in `options` (srun's words before the task's command), in
// any spelling getopt_long takes: "--task-prolog=V", "--task-prolog V", or an unambiguous
// abbreviation ("--task-p", "--task-pro=V"...). The last one wins; nullopt if none.
std::optional<std::string> find_task_prolog_option(const std::vector<std::string> &options);

// ---- Resource limits (PropagateResourceLimits, SLURM_RLIMIT_*) ------------------------------

// Which limits slurm.conf propagates: PropagateResourceLimitsExcept when set (all but those),
// else PropagateResourceLimits (ALL, the default when empty; NONE; or a list). Names may be
// written "CORE" or "RLIMIT_CORE", separated by ',' or ' '. Throws Error naming a bad word.
std::set<std::string> propagated_rlimits(const std::string &propagate, const std::string &except);

struct CurrentLimit {
    std::uint64_t soft = 0, hard = 0;  // ResourceLimit::kUnlimited for RLIM_INFINITY
};
// The limits of a native task, as set_user_limits leaves them: for each SLURM_RLIMIT_<NAME> in
// env ("U" before the number: the user asked with srun --propagate), when the admin propagates
// NAME or the user asked, the soft limit becomes the value (kept within the hard limit unless
// the user asked); otherwise the limit stays as `current` (slurmstepd's) says. Every limit of
// `current` is returned. The SLURM_RLIMIT_* variables are removed from env, as Slurm does.
// Unparsable values are ignored (Slurm logs and ignores them).
std::vector<ResourceLimit> task_limits(
    std::vector<std::string> &env, const std::set<std::string> &propagated,
    const std::vector<std::pair<std::string, CurrentLimit>> &current);

}  // namespace svm
