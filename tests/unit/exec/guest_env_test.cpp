// A VM step's environment split between its host side and the guest (exec/guest_env.h): what
// the guest chose never reaches a program on the host, and all of it reaches the guest's.
#include "exec/guest_env.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace svm {
namespace {

using Env = std::vector<std::string>;

// `env` after `edit`, as spank/task.cpp leaves a step's environment: every entry of a name
// unset, then each set replacing the first entry of its name (Slurm's setenvf) or appended.
Env applied(Env env, const EnvEdit &edit) {
    for (const std::string &name : edit.unset) {
        std::erase_if(env, [&](const std::string &e) { return e.starts_with(name + "="); });
    }
    for (const auto &[name, value] : edit.set) {
        const auto it = std::find_if(env.begin(), env.end(), [&](const std::string &e) {
            return e.starts_with(name + "=");
        });
        if (it != env.end()) {
            *it = name + "=" + value;
        } else {
            env.push_back(name + "=" + value);
        }
    }
    return env;
}

bool has(const Env &env, const std::string &entry) {
    return std::find(env.begin(), env.end(), entry) != env.end();
}

bool sets(const Env &env, const std::string &name) {
    return std::any_of(env.begin(), env.end(),
                       [&](const std::string &e) { return e.starts_with(name + "="); });
}

const std::string kHost = "PATH=" + std::string(kHostPath);

TEST(GuestEnv, NamesTheLoaderShellAndInterpreterVariables) {
    for (const char *name :
         {"LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GCONV_PATH", "BASH_ENV", "ENV",
          "BASH_FUNC_ls%%", "SHELLOPTS", "PS4", "ZDOTDIR", "PYTHONPATH", "PERL5OPT", "RUBYOPT",
          "LUA_INIT", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS"}) {
        EXPECT_TRUE(chooses_host_code(name)) << name;
    }
    for (const char *name : {"PATH", "HOME", "SLURM_JOB_ID", "LDFLAGS", "ENVIRONMENT", "TMPDIR"}) {
        EXPECT_FALSE(chooses_host_code(name)) << name;
    }
}

TEST(GuestEnv, SetsLoaderAndShellVariablesAsideForTheHost) {
    const Env step = {"SLURM_JOB_ID=7",
                      "LD_PRELOAD=/home/u/x.so",
                      "BASH_ENV=/home/u/x",
                      "BASH_FUNC_echo%%=() { touch /tmp/x; }",
                      "PATH=/home/u/bin:/usr/bin",
                      "FOO=1"};
    const Env host = applied(step, set_aside_for_guest(step, true));
    for (const char *name : {"LD_PRELOAD", "BASH_ENV", "BASH_FUNC_echo%%"}) {
        EXPECT_FALSE(sets(host, name)) << name << " still on the host side";
    }
    EXPECT_TRUE(has(host, kHost));
    EXPECT_TRUE(has(host, "SLURM_JOB_ID=7"));
    EXPECT_TRUE(has(host, "FOO=1"));
    EXPECT_TRUE(has(host, "SLURM_VM_GUEST_ENV_LD_PRELOAD=/home/u/x.so"));
    EXPECT_TRUE(has(host, "SLURM_VM_GUEST_ENV_PATH=/home/u/bin:/usr/bin"));
}

TEST(GuestEnv, TheGuestGetsBackExactlyTheStepsEnvironment) {
    const Env step = {"SLURM_JOB_ID=7", "LD_PRELOAD=/home/u/x.so", "BASH_ENV=/home/u/x",
                      "PATH=/home/u/bin:/usr/bin", "FOO=1"};
    Env guest = guest_environment(applied(step, set_aside_for_guest(step, true)));
    Env want = step;
    std::sort(guest.begin(), guest.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(guest, want);
}

TEST(GuestEnv, AStepFromAHostCallGetsTheJobsValuesInItsGuest) {
    // What a host call's srun sends: the host's PATH and no loader variables for srun itself,
    // the job's values set aside (HostCallPolicy::environment).
    const Env step = {"PATH=" + std::string(kHostPath), "SLURM_VM_GUEST_ENV_PATH=/job/bin",
                      "SLURM_VM_GUEST_ENV_LD_LIBRARY_PATH=/opt/lib"};
    const Env host = applied(step, set_aside_for_guest(step, true));
    EXPECT_TRUE(has(host, kHost));
    EXPECT_FALSE(sets(host, "LD_LIBRARY_PATH"));
    const Env guest = guest_environment(host);
    EXPECT_TRUE(has(guest, "PATH=/job/bin"));
    EXPECT_TRUE(has(guest, "LD_LIBRARY_PATH=/opt/lib"));
}

TEST(GuestEnv, AStepWithoutPathGetsTheHostsOnTheHostAndNoneInTheGuest) {
    // srun --export=NONE: no PATH, natively too.
    const Env step = {"SLURM_JOB_ID=7"};
    const Env host = applied(step, set_aside_for_guest(step, true));
    EXPECT_TRUE(has(host, kHost));
    EXPECT_EQ(guest_environment(host), Env{"SLURM_JOB_ID=7"});
    // task_init after user_init: nothing more to do.
    EXPECT_TRUE(set_aside_for_guest(host, false).empty());
}

TEST(GuestEnv, TaskInitSetsAsideOnlyWhatSlurmAddedSince) {
    const Env step = {"LD_PRELOAD=/a.so", "PATH=/job/bin"};
    Env task = applied(step, set_aside_for_guest(step, true));
    EXPECT_TRUE(set_aside_for_guest(task, false).empty());
    task.push_back("LD_LIBRARY_PATH=/opt/mpi/lib");  // a plugin's, between user_init and task_init
    task = applied(task, set_aside_for_guest(task, false));
    EXPECT_FALSE(sets(task, "LD_LIBRARY_PATH"));
    EXPECT_TRUE(has(task, "SLURM_VM_GUEST_ENV_PATH=/job/bin"));
    const Env guest = guest_environment(task);
    EXPECT_TRUE(has(guest, "LD_PRELOAD=/a.so"));
    EXPECT_TRUE(has(guest, "LD_LIBRARY_PATH=/opt/mpi/lib"));
    EXPECT_TRUE(has(guest, "PATH=/job/bin"));
}

TEST(GuestEnv, LeavesTheHostSideOnePathEvenWhenTheStepHadTwo) {
    // A shell takes the last of two entries of a name, getenv the first.
    const Env step = {kHost, "PATH=/home/u/evil"};
    const EnvEdit edit = set_aside_for_guest(step, true);
    const Env host = applied(step, edit);
    EXPECT_EQ(std::count_if(host.begin(), host.end(),
                            [](const std::string &e) { return e.starts_with("PATH="); }),
              1);
    EXPECT_TRUE(has(host, kHost));
}

TEST(GuestEnv, AJobPathEqualToTheHostsStillReachesTheGuest) {
    const Env step = {kHost};
    const Env host = applied(step, set_aside_for_guest(step, true));
    EXPECT_EQ(guest_environment(host), Env{kHost});
}

TEST(GuestEnv, WhatATaskPrologSetsSinceWinsOverWhatWasSetAside) {
    const Env step = {"LD_PRELOAD=/a.so", "PATH=/job/bin"};
    Env host = applied(step, set_aside_for_guest(step, true));
    // The admin's TaskProlog printed "export LD_PRELOAD=/site.so" and "export PATH=/site/bin".
    std::erase_if(host, [](const std::string &e) { return e.starts_with("PATH="); });
    host.insert(host.end(), {"LD_PRELOAD=/site.so", "PATH=/site/bin"});
    const Env guest = guest_environment(host);
    EXPECT_TRUE(has(guest, "LD_PRELOAD=/site.so"));
    EXPECT_FALSE(has(guest, "LD_PRELOAD=/a.so"));
    EXPECT_TRUE(has(guest, "PATH=/site/bin"));
    EXPECT_FALSE(sets(guest, "SLURM_VM_GUEST_ENV_LD_PRELOAD"));
}

}  // namespace
}  // namespace svm
