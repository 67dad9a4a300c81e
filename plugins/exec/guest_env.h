// A VM task's environment is the guest's to choose: a step started from inside the VM (a host
// call's srun) carries whatever the guest put in srun's environment, `--export` or
// `SLURM_EXPORT_ENV`. Yet Slurm runs programs with that environment on the host, as the job's
// user: the TaskProlog and TaskEpilog, and the exec client itself, which slurmstepd execs. So a
// VM step's environment is split (docs/threat-model.md, "Host calls"):
//   - slurm_spank_user_init (slurmstepd, once per step, before any of those runs) sets aside
//     every variable that would choose code a host program loads or runs, and gives PATH the
//     host's own value (set_aside_for_guest);
//   - task_init does it again for what Slurm added to the task's environment since;
//   - the exec client gives the guest back what was set aside (guest_environment).
// The guest's program sees the job's environment; no host program ever sees those variables.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace svm {

// Where a variable set aside waits: SLURM_VM_GUEST_ENV_<NAME>=<value>.
inline constexpr std::string_view kGuestEnvPrefix = "SLURM_VM_GUEST_ENV_";

// The PATH a VM task's host side runs with: root's folders only. A guest's PATH in a host
// TaskProlog would choose which program a command name runs; with none at all, bash searches
// its built-in list, which ends with the working directory.
inline constexpr std::string_view kHostPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Whether a variable makes a program find or run code: the dynamic loader's (LD_*) and glibc's
// (GCONV_PATH), shells' start-up (BASH_ENV, ENV, ZDOTDIR, exported bash functions BASH_FUNC_*,
// SHELLOPTS, BASHOPTS, PS4, PROMPT_COMMAND), and interpreters' module paths and start-up
// options (PYTHON*, PERL*, RUBY*, LUA_*, NODE_*, TCLLIBPATH, JAVA_TOOL_OPTIONS, _JAVA_OPTIONS,
// JDK_JAVA_OPTIONS). PATH is not among them: it is replaced, not removed.
bool chooses_host_code(std::string_view name);

// Changes to make to an environment, in this order: unset, then set.
struct EnvEdit {
    std::vector<std::string> unset;
    std::vector<std::pair<std::string, std::string>> set;
    bool empty() const { return unset.empty() && set.empty(); }
};

// What makes a VM step's environment `env` ("NAME=value" entries) safe for its host side:
// each variable chooses_host_code names is set aside under kGuestEnvPrefix (replacing what stood
// there for that name) and unset, and PATH becomes kHostPath, the PATH it had set aside first.
// What already stands under kGuestEnvPrefix stays: a host call's srun carries there the job's
// own values of the variables the host kept for itself (HostCallPolicy::environment), and a
// name there only ever reaches the guest. `step_start`: the step's environment as srun sent
// it (user_init), whose PATH, even one equal to kHostPath, is the job's; otherwise (task_init)
// a PATH of kHostPath is the one user_init set, and is left.
EnvEdit set_aside_for_guest(const std::vector<std::string> &env, bool step_start);

// The environment the guest's program gets, from the exec client's own (`env`, after any task
// prolog changed it): each variable set aside comes back, unless a prolog set that name
// since (its value stands); PATH comes back the same way, where it is still kHostPath (and
// goes, where the job had none); nothing under kGuestEnvPrefix is left.
std::vector<std::string> guest_environment(const std::vector<std::string> &env);

}  // namespace svm
