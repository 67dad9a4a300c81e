// What a VM's guest may run on the host: HostCallPolicy alone, on the argv and environment a
// shim would send. (hostcall_test.cpp runs the same refusals through the agent and the client.)
#include "exec/exec_client.h"
#include "exec/protocol/messages.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <optional>
#include <string>
#include <vector>

namespace svm {
namespace {

using Argv = std::vector<std::string>;
using Env = std::vector<std::string>;

// The job's environment as Slurm gives it to the task (and so to the host client, and through
// the VM to the guest's shims).
const Env kJobEnv = {"SLURM_JOB_ID=42", "SLURM_CONF=/etc/slurm/slurm.conf", "USER=u"};

const char *const kProgramLine = " runs a program on the host; not allowed from inside a VM";

HostCallPolicy policy(HostCalls mode) {
    HostCallPolicy p;
    p.mode = mode;
    return p;
}

std::optional<HostCallPolicy::Refusal> refusal(HostCalls mode, const Argv &argv,
                                               const Env &guest_env = kJobEnv) {
    return policy(mode).refusal(argv, guest_env, kJobEnv);
}

// The refusal's line, or "" when the call may run.
std::string refused(HostCalls mode, const Argv &argv, const Env &guest_env = kJobEnv) {
    const auto r = refusal(mode, argv, guest_env);
    return r ? r->message : "";
}

Env with(Env env, const std::string &entry) {
    env.push_back(entry);
    return env;
}

TEST(HostCallPolicy, DefaultsToStepsAsThePlugstackDoes) {
    EXPECT_EQ(HostCallPolicy{}.mode, HostCalls::Steps);
    EXPECT_EQ(HostCallPolicy{}.mode, Config{}.host_calls);
}

TEST(HostCallPolicy, EachModeAllowsItsCommands) {
    EXPECT_EQ(policy(HostCalls::None).commands(), Argv{});
    EXPECT_EQ(policy(HostCalls::Steps).commands(), (Argv{"srun", "scancel", "squeue", "sstat"}));
    EXPECT_EQ(policy(HostCalls::All).commands(), protocol::hostcall_commands());
}

TEST(HostCallPolicy, NoneRefusesEveryCommandAsNotFound) {
    for (const auto &name : protocol::hostcall_commands()) {
        const auto r = refusal(HostCalls::None, {name});
        ASSERT_TRUE(r) << name;
        EXPECT_EQ(r->message, "host call refused: " + name +
                                  ": this cluster allows no Slurm commands from inside a VM "
                                  "(host_calls=none)");
        EXPECT_EQ(r->exit_code, 127);
    }
}

TEST(HostCallPolicy, StepsRefusesSbatchScontrolAndTheOtherNonStepCommands) {
    for (const char *name : {"sbatch", "scontrol", "sacct", "sinfo", "salloc"}) {
        const auto r = refusal(HostCalls::Steps, {name, "--help"});
        ASSERT_TRUE(r) << name;
        EXPECT_EQ(r->message, std::string("host call refused: ") + name +
                                  " is not allowed from inside a VM (host_calls=steps allows "
                                  "srun, scancel, squeue, sstat)");
        EXPECT_EQ(r->exit_code, 127);
    }
    for (const char *name : {"srun", "scancel", "squeue", "sstat"}) {
        EXPECT_EQ(refused(HostCalls::Steps, {name}), "") << name;
    }
}

TEST(HostCallPolicy, AllAllowsSbatchScontrolSacctSinfo) {
    EXPECT_EQ(refused(HostCalls::All, {"sbatch", "--wrap", "hostname"}), "");
    EXPECT_EQ(refused(HostCalls::All, {"scontrol", "show", "job", "42"}), "");
    EXPECT_EQ(refused(HostCalls::All, {"sacct", "-j", "42"}), "");
    EXPECT_EQ(refused(HostCalls::All, {"sinfo"}), "");
}

TEST(HostCallPolicy, RefusesANameWithAPathOrOutsideTheList) {
    EXPECT_EQ(refused(HostCalls::All, {"/usr/bin/srun"}),
              "host call refused: /usr/bin/srun: give a command's name, not a path "
              "(host_calls=all allows srun, sbatch, scancel, scontrol, squeue, sacct, sinfo, "
              "sstat, salloc)");
    EXPECT_EQ(refusal(HostCalls::All, {"bash"})->exit_code, 127);
}

TEST(HostCallPolicy, ShowsAtMost64BytesOfARefusedName) {
    const std::string name(100000, 'x');
    EXPECT_EQ(refused(HostCalls::Steps, {name}),
              "host call refused: " + std::string(64, 'x') +
                  "... is not allowed from inside a VM (host_calls=steps allows srun, scancel, "
                  "squeue, sstat)");
}

TEST(HostCallPolicy, RefusesEachProgramOptionWithItsValueAttachedOrSeparate) {
    for (const char *option : {"prolog", "epilog", "task-prolog", "task-epilog"}) {
        const std::string expected =
            std::string("host call refused: srun --") + option + kProgramLine;
        EXPECT_EQ(refused(HostCalls::Steps,
                          {"srun", std::string("--") + option + "=/home/u/x", "hostname"}),
                  expected);
        EXPECT_EQ(refused(HostCalls::Steps,
                          {"srun", "-n2", std::string("--") + option, "/home/u/x", "hostname"}),
                  expected);
        const auto r = refusal(HostCalls::Steps, {"srun", std::string("--") + option + "="});
        ASSERT_TRUE(r) << option;
        EXPECT_EQ(r->exit_code, 1);
    }
}

TEST(HostCallPolicy, RefusesAbbreviationsThatGetoptLongWouldTake) {
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--task-pro=/home/u/x", "true"}),
              std::string("host call refused: srun --task-pro (--task-prolog)") + kProgramLine);
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--task-e", "/home/u/x", "true"}),
              std::string("host call refused: srun --task-e (--task-epilog)") + kProgramLine);
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--prol=/x", "true"}),
              std::string("host call refused: srun --prol (--prolog)") + kProgramLine);
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--epi", "/x", "true"}),
              std::string("host call refused: srun --epi (--epilog)") + kProgramLine);
}

TEST(HostCallPolicy, RefusesAProgramOptionHiddenBehindAnEndOfOptionsValue) {
    // getopt_long takes "--" as -J's value, so --prolog is still srun's own option here.
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "-J", "--", "--prolog=/x", "hostname"}),
              std::string("host call refused: srun --prolog") + kProgramLine);
}

TEST(HostCallPolicy, RefusesProgramOptionsOfSbatchAndSallocToo) {
    EXPECT_EQ(refused(HostCalls::All, {"sbatch", "--epilog=/x", "--wrap", "true"}),
              std::string("host call refused: sbatch --epilog") + kProgramLine);
    EXPECT_EQ(refused(HostCalls::All, {"salloc", "--no-shell", "--task-prolog=/x"}),
              std::string("host call refused: salloc --task-prolog") + kProgramLine);
}

TEST(HostCallPolicy, AllowsOptionsThatOnlyLookAlike) {
    EXPECT_EQ(refused(HostCalls::Steps,
                      {"srun", "--profile=task", "--propagate=ALL", "--tasks-per-node=2",
                       "--export=ALL", "--error=e.txt", "--exclusive", "-e", "e.txt", "hostname"}),
              "");
    // Options of commands that have no such options are theirs to judge.
    EXPECT_EQ(refused(HostCalls::Steps, {"squeue", "--epilog"}), "");
}

TEST(HostCallPolicy, AllowsSallocOnlyWithNoShellFirstUnderAll) {
    const std::string why =
        "host call refused: salloc runs a command, or your login shell, on the host; from "
        "inside a VM only 'salloc --no-shell ...' is allowed, with --no-shell first";
    EXPECT_EQ(refused(HostCalls::All, {"salloc", "--no-shell", "-N1", "-t", "5"}), "");
    EXPECT_EQ(refused(HostCalls::All, {"salloc", "-N1", "/home/u/x"}), why);
    EXPECT_EQ(refused(HostCalls::All, {"salloc"}), why);
    // A later --no-shell may be the value of the option before it (a job name here).
    EXPECT_EQ(refused(HostCalls::All, {"salloc", "-J", "--no-shell"}), why);
    EXPECT_EQ(refusal(HostCalls::All, {"salloc"})->exit_code, 1);
}

TEST(HostCallPolicy, RefusesSlurmConfChangedInTheGuest) {
    const std::string why =
        "host call refused: srun with SLURM_CONF changed inside the VM: it would read another "
        "Slurm configuration, and load the plugins that one names, on the host; not allowed "
        "from inside a VM";
    const Env guest = {"SLURM_JOB_ID=42", "SLURM_CONF=/home/u/evil.conf"};
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "hostname"}, guest), why);
    EXPECT_EQ(refused(HostCalls::All, {"sinfo"}, guest),
              "host call refused: sinfo with SLURM_CONF changed inside the VM: it would read "
              "another Slurm configuration, and load the plugins that one names, on the host; "
              "not allowed from inside a VM");
    // A second entry after the job's own: the command could see either.
    EXPECT_EQ(refused(HostCalls::Steps, {"srun"}, with(kJobEnv, "SLURM_CONF=/home/u/evil.conf")),
              why);
    EXPECT_EQ(refusal(HostCalls::Steps, {"srun"}, guest)->exit_code, 1);
    // The job's own value, or none (the command then gets the job's), pass.
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "hostname"}), "");
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "hostname"}, {"SLURM_JOB_ID=42"}), "");
}

TEST(HostCallPolicy, RefusesSlurmConfWhereTheJobHasNone) {
    EXPECT_EQ(policy(HostCalls::Steps)
                  .refusal({"squeue"}, {"SLURM_CONF=/etc/slurm/slurm.conf"}, {})
                  .value_or(HostCallPolicy::Refusal{"", 0})
                  .message,
              "host call refused: squeue with SLURM_CONF changed inside the VM: it would read "
              "another Slurm configuration, and load the plugins that one names, on the host; "
              "not allowed from inside a VM");
}

TEST(HostCallPolicy, RefusesTheVariablesThatRunOrFetchCode) {
    for (const char *name :
         {"SLURM_PROLOG", "SLURM_EPILOG", "SLURM_TASK_PROLOG", "SLURM_TASK_EPILOG"}) {
        EXPECT_EQ(refused(HostCalls::All, {"srun", "true"},
                          with(kJobEnv, std::string(name) + "=/home/u/x")),
                  std::string("host call refused: srun with ") + name +
                      " changed inside the VM: srun runs that program on the host; not allowed "
                      "from inside a VM");
    }
    EXPECT_EQ(refused(HostCalls::Steps, {"squeue"}, with(kJobEnv, "SLURM_CONF_SERVER=evil:6817")),
              "host call refused: squeue with SLURM_CONF_SERVER changed inside the VM: it "
              "would fetch its Slurm configuration, and so the plugins it loads, from another "
              "server; not allowed from inside a VM");
}

// Issue 20 #1: what srun --export or SLURM_EXPORT_ENV puts into a step's environment, the
// step's host side (TaskProlog, the exec client, TaskEpilog) runs with.
TEST(HostCallPolicy, RefusesTheTaskPrologHandOverInSrunExport) {
    EXPECT_EQ(
        refused(HostCalls::Steps, {"srun", "--export=ALL,SLURM_VM_TASK_PROLOG=/home/u/x", "true"}),
        "host call refused: srun --export sets SLURM_VM_TASK_PROLOG, which is the host's "
        "for a step started from inside a VM; not allowed from inside a VM");
    // Its other spellings: the value apart, an abbreviation, a quoted item.
    EXPECT_NE(refused(HostCalls::Steps,
                      {"srun", "--export", "ALL,SLURM_VM_TASK_PROLOG=/home/u/x", "true"}),
              "");
    EXPECT_NE(refused(HostCalls::Steps, {"srun", "--exp=SLURM_VM_TASK_PROLOG=/x", "true"}), "");
    EXPECT_NE(refused(HostCalls::Steps, {"srun", "--export=ALL,'SLURM_VM_TASK_PROLOG=/x'", "true"}),
              "");
    EXPECT_EQ(
        refusal(HostCalls::Steps, {"srun", "--export=SLURM_VM_TASK_PROLOG=/x", "true"})->exit_code,
        1);
}

TEST(HostCallPolicy, RefusesTheTaskPrologHandOverInSlurmExportEnv) {
    const Env guest = with(kJobEnv, "SLURM_EXPORT_ENV=ALL,SLURM_VM_TASK_PROLOG=/home/u/x");
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "true"}, guest),
              "host call refused: srun with SLURM_EXPORT_ENV setting SLURM_VM_TASK_PROLOG, "
              "which is the host's for a step started from inside a VM; not allowed from inside "
              "a VM");
    EXPECT_NE(refused(HostCalls::Steps, {"srun", "true"},
                      with(kJobEnv, "SRUN_EXPORT_ENV=SLURM_VM_TASK_PROLOG=/home/u/x")),
              "");
}

TEST(HostCallPolicy, RefusesLdPreloadInSrunExport) {
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--export=ALL,LD_PRELOAD=/home/u/x.so", "true"}),
              "host call refused: srun --export sets LD_PRELOAD, which is the host's for a step "
              "started from inside a VM; not allowed from inside a VM");
    EXPECT_NE(refused(HostCalls::All, {"sbatch", "--export=LD_AUDIT=/home/u/x.so", "--wrap=true"}),
              "");
    EXPECT_NE(refused(HostCalls::All, {"sbatch", "--wrap=true"},
                      with(kJobEnv, "SBATCH_EXPORT=ALL,LD_PRELOAD=/home/u/x.so")),
              "");
}

TEST(HostCallPolicy, AllowsExportOfTheGuestsOwnVariablesAndTheJobsOwnExportEnv) {
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--export=ALL,FOO=1,BAR", "true"}), "");
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--export=NONE", "/bin/true"}), "");
    // The name alone takes srun's value, which the policy chose (the host's LD_*).
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--export=ALL,LD_LIBRARY_PATH", "true"}), "");
    // sbatch --export=ALL,PATH=... on the host left SLURM_EXPORT_ENV in the job's environment.
    const Env job = with(kJobEnv, "SLURM_EXPORT_ENV=ALL,PATH=/opt/bin");
    EXPECT_EQ(policy(HostCalls::Steps).refusal({"srun", "true"}, job, job), std::nullopt);
    // Not srun's option: --exclusive and --exact only start like it.
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--exclusive", "--exact", "true"}), "");
}

TEST(HostCallPolicy, StepsKeepsSrunInThisJob) {
    const std::string other_job =
        "host call refused: srun --jobid starts steps in another job; host_calls=steps allows "
        "steps of this job only";
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--jobid=7", "hostname"}), other_job);
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--jobid", "7", "hostname"}), other_job);
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--jobi=7", "hostname"}),
              "host call refused: srun --jobi (--jobid) starts steps in another job; "
              "host_calls=steps allows steps of this job only");
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--jobid"}), other_job);
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--jobid=42", "hostname"}), "");
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "--jobid", "42", "hostname"}), "");
    EXPECT_EQ(refused(HostCalls::Steps, {"srun", "hostname"}, {"SLURM_JOB_ID=7"}),
              "host call refused: srun with SLURM_JOB_ID changed inside the VM: srun would "
              "start steps in another job, or a new job; host_calls=steps allows steps of this "
              "job only");
    // Under all, new jobs are allowed anyway (sbatch).
    EXPECT_EQ(refused(HostCalls::All, {"srun", "--jobid=7", "hostname"}), "");
    EXPECT_EQ(refused(HostCalls::All, {"srun", "hostname"}, {"SLURM_JOB_ID=7"}), "");
}

TEST(HostCallPolicy, LeavesToTheEnvironmentTheVariablesACommandDoesNotRead) {
    // squeue has no job of its own and sbatch no prologs: refusing would only get in the way;
    // they get the job's values anyway (see environment()).
    EXPECT_EQ(refused(HostCalls::Steps, {"squeue"}, {"SLURM_JOB_ID=7"}), "");
    EXPECT_EQ(refused(HostCalls::All, {"sbatch", "--wrap", "true"},
                      with(kJobEnv, "SLURM_TASK_PROLOG=/home/u/x")),
              "");
}

TEST(HostCallPolicy, RefusesAnEmptyCommand) {
    const auto r = policy(HostCalls::All).refusal({}, {}, {});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->message, "host call refused: no command given");
}

TEST(HostCallPolicyEnvironment, ReplacesPathHomeAndLoaderVariablesWithTheHosts) {
    const Env guest = {"PATH=/guest/bin",
                       "HOME=/guest",
                       "LD_PRELOAD=/x.so",
                       "LD_AUDIT=/y.so",
                       "GCONV_PATH=/guest/gconv",
                       "LUA_PATH=/guest/?.lua",
                       "LUA_CPATH_5_4=/guest/?.so",
                       "SLURM_JOB_ID=7",
                       "SLURM_VM_HOSTCALL=/run/slurm-vm-hostcall/1-2.sock",
                       "LDFLAGS=-s",
                       "A=LD_PRELOAD=z"};
    const Env host = {"PATH=/usr/bin:/bin", "HOME=/home/u", "LD_LIBRARY_PATH=/opt/lib",
                      "LUA_PATH=/usr/share/lua/?.lua", "SLURM_JOB_ID=host"};
    EXPECT_EQ(policy(HostCalls::All).environment(guest, host),
              (Env{"SLURM_JOB_ID=7", "LDFLAGS=-s", "A=LD_PRELOAD=z", "PATH=/usr/bin:/bin",
                   "HOME=/home/u", "LD_LIBRARY_PATH=/opt/lib", "LUA_PATH=/usr/share/lua/?.lua"}));
}

TEST(HostCallPolicyEnvironment, TakesTheGuardedVariablesFromTheJobEvenWhenTheGuestDropsThem) {
    // srun without SLURM_JOB_ID would ask for a new job; without SLURM_CONF, it could fall
    // back to SLURM_CONF_SERVER.
    const Env guest = {"A=1", "SLURM_CONF_SERVER=evil:6817"};
    const Env host = {"SLURM_JOB_ID=42", "SLURM_CONF=/etc/slurm/slurm.conf", "B=2"};
    EXPECT_EQ(policy(HostCalls::Steps).environment(guest, host),
              (Env{"A=1", "SLURM_JOB_ID=42", "SLURM_CONF=/etc/slurm/slurm.conf"}));
    EXPECT_EQ(policy(HostCalls::All).environment(guest, host),
              (Env{"A=1", "SLURM_CONF=/etc/slurm/slurm.conf"}));
    EXPECT_EQ(policy(HostCalls::All).environment({"SLURM_TASK_PROLOG=/home/u/x"}, {}), Env{});
}

TEST(HostCallPolicyEnvironment, NeverTakesTheTaskPrologHandOverFromTheGuest) {
    // The exec client runs SLURM_VM_TASK_PROLOG on the host: only the host's srun sets it.
    EXPECT_EQ(policy(HostCalls::All).environment({"SLURM_VM_TASK_PROLOG=/home/u/evil", "A=1"}, {}),
              (Env{"A=1"}));
    EXPECT_EQ(policy(HostCalls::Steps)
                  .environment({"SLURM_VM_TASK_PROLOG=/home/u/evil"},
                               {"SLURM_VM_TASK_PROLOG=/home/u/tp.sh"}),
              (Env{"SLURM_VM_TASK_PROLOG=/home/u/tp.sh"}));
}

TEST(HostCallPolicy, CommandPathsAreWhereTheHostHasTheAllowedCommands) {
    char tmpl[] = "/tmp/svm-paths.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl;
    for (const char *name : {"srun", "squeue", "sbatch", "notes"}) {
        const std::string path = dir + "/" + name;
        std::ofstream(path) << "#!/bin/sh\n";
        ::chmod(path.c_str(), name == std::string("notes") ? 0644 : 0755);
    }
    HostCallPolicy p = policy(HostCalls::Steps);
    p.search_dirs = {dir + "/missing", dir};
    // Steps allows srun, scancel, squeue, sstat; only srun and squeue are on this "host".
    EXPECT_EQ(p.command_paths(), (std::vector<std::string>{dir + "/srun", dir + "/squeue"}));
    p.mode = HostCalls::None;
    EXPECT_TRUE(p.command_paths().empty());
    std::filesystem::remove_all(dir);
}

TEST(HostCallPolicyEnvironment, CarriesTheJobsSetAsideVariablesToTheNewStepNotTheGuests) {
    // The host client runs with the host's PATH and no loader variables; the job's wait for its
    // guest under SLURM_VM_GUEST_ENV_ (exec/guest_env.h). srun gets the host client's of both.
    const Env guest = {"SLURM_VM_GUEST_ENV_LD_PRELOAD=/home/u/x.so", "A=1"};
    const Env host = {"PATH=/usr/sbin:/usr/bin", "SLURM_VM_GUEST_ENV_PATH=/job/bin",
                      "SLURM_VM_GUEST_ENV_LD_LIBRARY_PATH=/opt/lib"};
    EXPECT_EQ(policy(HostCalls::All).environment(guest, host),
              (Env{"A=1", "PATH=/usr/sbin:/usr/bin", "SLURM_VM_GUEST_ENV_PATH=/job/bin",
                   "SLURM_VM_GUEST_ENV_LD_LIBRARY_PATH=/opt/lib"}));
    EXPECT_NE(
        refused(HostCalls::Steps, {"srun", "--export=ALL,SLURM_VM_GUEST_ENV_PATH=/x", "true"}), "");
}

}  // namespace
}  // namespace svm
