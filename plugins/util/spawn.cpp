#include "util/spawn.h"

#include "util/fd.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

extern char **environ;

namespace svm {

namespace {

// posix_spawn's parts, released whatever happens.
struct SpawnSetup {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    SpawnSetup() {
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
    }
    ~SpawnSetup() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
    SpawnSetup(const SpawnSetup &) = delete;
    SpawnSetup &operator=(const SpawnSetup &) = delete;
};

}  // namespace

pid_t spawn_program(const SpawnSpec &spec) {
    const std::string program = !spec.program.empty() ? spec.program
                                : spec.argv.empty()   ? std::string()
                                                      : spec.argv[0];
    if (spec.argv.empty() || program.empty() || program[0] != '/') {
        throw SpawnError("cannot run '" + program + "': the program must be given by absolute path",
                         EINVAL);
    }
    std::vector<char *> argv = c_strings(spec.argv);
    std::vector<char *> envp;
    if (spec.env != nullptr) {
        envp = c_strings(*spec.env);
    }

    SpawnSetup s;
    posix_spawn_file_actions_addopen(&s.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    if (spec.stdout_fd >= 0) {
        posix_spawn_file_actions_adddup2(&s.actions, spec.stdout_fd, STDOUT_FILENO);
    }
    if (spec.stderr_fd >= 0) {
        posix_spawn_file_actions_adddup2(&s.actions, spec.stderr_fd, STDERR_FILENO);
    }
    // Nothing of the caller's (slurmd's sockets, the exec channel, its lock) leaks.
    posix_spawn_file_actions_addclosefrom_np(&s.actions, 3);
    if (!spec.cwd.empty()) {
        posix_spawn_file_actions_addchdir_np(&s.actions, spec.cwd.c_str());
    }
    sigset_t all, none;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    sigemptyset(&none);
    posix_spawnattr_setflags(
        &s.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    posix_spawnattr_setpgroup(&s.attr, 0);
    posix_spawnattr_setsigdefault(&s.attr, &all);
    posix_spawnattr_setsigmask(&s.attr, &none);

    pid_t pid = -1;
    const int err = ::posix_spawn(&pid, program.c_str(), &s.actions, &s.attr, argv.data(),
                                  spec.env != nullptr ? envp.data() : environ);
    if (err != 0) {
        throw SpawnError("cannot run " + program + ": " + errno_text(err), err);
    }
    return pid;
}

}  // namespace svm
