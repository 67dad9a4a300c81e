// slurm-vm-exec: runs a command inside a job's VM and behaves like that command. The SPANK
// plugin replaces each task with it (execv from slurm_spank_task_init, as the job's user).
//
//   slurm-vm-exec --channel-dir DIR [--ports N] [--cwd DIR] [--stdin] [--script]
//                 [--host-calls none|steps|all] [--image NAME] [--multi-prog]
//                 [--task-rank N] [--local-task-id N] [--task-prolog-conf PATH]
//                 [--user-task-prolog PATH] [--propagate-rlimits LIST]
//                 [--propagate-rlimits-except LIST] -- ARGV...
//
// Before the command goes to the guest, the client does what slurmstepd did not do to the task
// (slurm_api/task_start.h): on Slurm 22.05, task_init passes the options for what slurmstepd
// does after it (exec/task_setup.h): the per-task argv of --multi-prog, TaskProlog
// (--task-prolog-conf) and the user's srun --task-prolog (--user-task-prolog) run here, on the
// host, and their output changes the environment; the limits Slurm propagates. On 24.11
// slurmstepd did all that before it ran the client. Either way TMPDIR is made in the guest for
// local task 0, the limits and umask of this process travel in the request, and the variables
// set aside for the guest (exec/guest_env.h) come back into its environment.
//
// Exit status: the remote command's; if a signal killed it, the same signal kills this process
// (so Slurm reports it); 127 command not found, 126 command not executable, 255 when the VM could
// not be reached. Errors are one line on stderr starting "slurm-vm: ".
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <getopt.h>
#include <unistd.h>
#include <set>
#include <vector>

#include "exec/exec_client.h"
#include "exec/guest_env.h"
#include "exec/task_setup.h"
#include "util/text.h"

extern char **environ;

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitNotExecutable = 126;
constexpr int kExitNotFound = 127;
constexpr int kExitTransport = 255;
// slurmstepd's exit for a task that has no program (a --multi-prog rank without a line).
constexpr int kExitNoProgram = 2;

const char *const kUsage =
    "usage: slurm-vm-exec --channel-dir DIR [--ports N] [--cwd DIR] [--stdin] "
    "[--script] [--host-calls none|steps|all] [--image NAME]\n"
    "                     [--multi-prog] [--task-rank N] [--local-task-id N] "
    "[--task-prolog-conf PATH]\n"
    "                     [--user-task-prolog PATH] [--propagate-rlimits LIST]\n"
    "                     [--propagate-rlimits-except LIST] -- ARGV...\n";

struct UsageError {
    std::string message;
};

struct Options {
    std::string channel_dir;
    unsigned ports = 1;
    std::string cwd;
    bool forward_stdin = false;
    bool send_script = false;  // argv[0] is a host file to send (the batch script)
    // What the command may run on the host; the SPANK plugin passes its host_calls= option.
    // Without the flag, the plugstack default.
    svm::HostCallPolicy hostcalls;
    std::string image;  // the job's image, to name it when a program is not in it
    std::vector<std::string> argv;
    // What slurmstepd would do after task_init (see the file's comment).
    bool multi_prog = false;  // argv is {CONF_FILE, CONF_TEXT, EXTRA...}
    long task_rank = -1;      // the task's global id
    long local_task_id = -1;
    std::string task_prolog_conf;                             // slurm.conf's TaskProlog
    std::optional<std::string> user_task_prolog;              // srun --task-prolog, as given
    std::string propagate_rlimits, propagate_rlimits_except;  // slurm.conf's
};

// The task ends before its command runs, as slurmstepd ends a native task then: with this code.
struct TaskEnd {
    int code;
    std::string message;  // one line for stderr, or "" (slurmstepd says nothing to the user)
};

long parse_number(const std::string &option, const std::string &text, long min, long max) {
    char *end = nullptr;
    errno = 0;
    long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
        throw UsageError{option + ": expected a number from " + std::to_string(min) + " to " +
                         std::to_string(max) + ", got '" + text + "'"};
    }
    return v;
}

Options parse_options(int argc, char **argv) {
    Options options;
    enum : int {
        kChannelDir = 256,
        kPorts,
        kCwd,
        kStdin,
        kScript,
        kHostCalls,
        kImage,
        kMultiProg,
        kTaskRank,
        kLocalTaskId,
        kTaskPrologConf,
        kUserTaskProlog,
        kPropagateRlimits,
        kPropagateRlimitsExcept
    };
    static const option long_options[] = {
        {"channel-dir", required_argument, nullptr, kChannelDir},
        {"ports", required_argument, nullptr, kPorts},
        {"cwd", required_argument, nullptr, kCwd},
        {"stdin", no_argument, nullptr, kStdin},
        {"script", no_argument, nullptr, kScript},
        {"host-calls", required_argument, nullptr, kHostCalls},
        {"image", required_argument, nullptr, kImage},
        {"multi-prog", no_argument, nullptr, kMultiProg},
        {"task-rank", required_argument, nullptr, kTaskRank},
        {"local-task-id", required_argument, nullptr, kLocalTaskId},
        {"task-prolog-conf", required_argument, nullptr, kTaskPrologConf},
        {"user-task-prolog", required_argument, nullptr, kUserTaskProlog},
        {"propagate-rlimits", required_argument, nullptr, kPropagateRlimits},
        {"propagate-rlimits-except", required_argument, nullptr, kPropagateRlimitsExcept},
        {"help", no_argument, nullptr, 'h'},
        {nullptr, 0, nullptr, 0}};
    optind = 1;
    opterr = 0;
    // "+": the task's argv follows "--" and is never parsed as ours.
    for (int c; (c = getopt_long(argc, argv, "+h", long_options, nullptr)) != -1;) {
        const std::string arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
        switch (c) {
            case kChannelDir:
                options.channel_dir = optarg;
                break;
            case kPorts:
                options.ports = static_cast<unsigned>(parse_number("--ports", optarg, 1, 1024));
                break;
            case kCwd:
                options.cwd = optarg;
                break;
            case kStdin:
                options.forward_stdin = true;
                break;
            case kScript:
                options.send_script = true;
                break;
            case kHostCalls: {
                const std::string mode = optarg;
                const auto parsed = svm::host_calls_from_name(mode);
                if (!parsed) {
                    throw UsageError{"--host-calls: expected none, steps or all, got '" + mode +
                                     "'"};
                }
                options.hostcalls.mode = *parsed;
                break;
            }
            case kImage:
                options.image = optarg;
                break;
            case kMultiProg:
                options.multi_prog = true;
                break;
            case kTaskRank:
                options.task_rank = parse_number("--task-rank", optarg, 0, 0x7fffffff);
                break;
            case kLocalTaskId:
                options.local_task_id = parse_number("--local-task-id", optarg, 0, 0x7fffffff);
                break;
            case kTaskPrologConf:
                options.task_prolog_conf = optarg;
                break;
            case kUserTaskProlog:
                options.user_task_prolog = optarg;
                break;
            case kPropagateRlimits:
                options.propagate_rlimits = optarg;
                break;
            case kPropagateRlimitsExcept:
                options.propagate_rlimits_except = optarg;
                break;
            case 'h':
                std::fputs(kUsage, stdout);
                std::exit(0);
            default:
                throw UsageError{"unknown argument or missing value: '" + arg + "'"};
        }
    }
    int i = optind;
    for (; i < argc; ++i) {
        options.argv.emplace_back(argv[i]);
    }
    if (options.channel_dir.empty()) {
        throw UsageError{"--channel-dir is required"};
    }
    if (options.argv.empty()) {
        throw UsageError{"no command given after --"};
    }
    if (options.multi_prog && (options.task_rank < 0 || options.argv.size() < 2)) {
        throw UsageError{"--multi-prog needs --task-rank and the configuration file and text"};
    }
    return options;
}

// One task prolog, as exec_task runs it: its output changes the environment, its "print" lines
// go to the task's stdout, and a failure ends the task with the prolog's status.
void run_prolog(const std::string &path, svm::ExecRequest &request) {
    if (path.empty()) {
        return;
    }
    svm::env_set(request.env, "SLURM_SCRIPT_CONTEXT", "prolog_task");
    svm::PrologRun run;
    try {
        run = svm::run_task_prolog(path, request.env);
    } catch (const svm::Error &e) {
        throw TaskEnd{1, std::string("slurm-vm: task prolog: ") + e.what()};
    }
    if (!WIFEXITED(run.status)) {
        throw TaskEnd{1,
                      "slurm-vm: task prolog " + svm::printable(path) + " did not exit normally"};
    }
    const std::string printed = svm::apply_task_prolog_output(run.output, request.env);
    if (!printed.empty()) {
        std::fwrite(printed.data(), 1, printed.size(), stdout);
        std::fflush(stdout);
    }
    if (WEXITSTATUS(run.status) != 0) {
        throw TaskEnd{WEXITSTATUS(run.status), "slurm-vm: task prolog " + svm::printable(path) +
                                                   " failed with status " +
                                                   std::to_string(WEXITSTATUS(run.status))};
    }
}

// What slurmstepd's exec_task does after task_init, in its order: TaskProlog, --task-prolog,
// TMPDIR, the program (here: --multi-prog's argv; the PATH lookup is the agent's), the limits;
// the umask was set before the task was forked.
void prepare_task(const Options &options, svm::ExecRequest &request) {
    // Never from the environment: the guest shapes that of a step it starts (exec/guest_env.h).
    svm::env_unset(request.env, svm::kTaskPrologEnv);
    run_prolog(options.task_prolog_conf, request);
    if (const auto &user_prolog = options.user_task_prolog) {
        if (user_prolog->empty() || (*user_prolog)[0] != '/') {
            // slurmstepd's own check and words (run_command), and its exit status.
            throw TaskEnd{1, "slurm-vm: user task_prolog is not fully qualified pathname (" +
                                 svm::printable(*user_prolog) + ")"};
        }
        run_prolog(*user_prolog, request);
    }
    if (options.local_task_id == 0) {
        if (!svm::env_get(request.env, "TMPDIR")) {
            svm::env_set(request.env, "TMPDIR", "/tmp");
        } else {
            request.make_tmpdir = true;  // checked in the guest, where the task runs
        }
    }
    if (options.multi_prog) {
        const std::vector<std::string> extra(options.argv.begin() + 2, options.argv.end());
        auto result =
            svm::multi_prog_argv(options.argv[1], static_cast<int>(options.task_rank), extra);
        if (result.argv.empty()) {
            throw TaskEnd{
                kExitNoProgram,
                "slurm-vm: --multi-prog " + svm::printable(options.argv[0]) + ": " + result.error};
        }
        request.argv = std::move(result.argv);
    }
    std::set<std::string> propagated;
    try {
        propagated =
            svm::propagated_rlimits(options.propagate_rlimits, options.propagate_rlimits_except);
    } catch (const svm::Error &) {
        // slurmd would not have started with it; propagate nothing rather than guess.
    }
    std::vector<std::pair<std::string, svm::CurrentLimit>> current;
    for (const auto &name : svm::protocol::rlimit_names()) {
        struct rlimit r {};
        if (::getrlimit(svm::protocol::rlimit_resource(name), &r) != 0) {
            continue;
        }
        const auto value = [](rlim_t v) {
            return v == RLIM_INFINITY ? svm::ResourceLimit::kUnlimited : std::uint64_t{v};
        };
        current.emplace_back(name, svm::CurrentLimit{value(r.rlim_cur), value(r.rlim_max)});
    }
    request.limits = svm::task_limits(request.env, propagated, current);
    const mode_t mask = ::umask(0);
    ::umask(mask);
    request.umask = static_cast<std::uint32_t>(mask & 0777);
}

svm::ExecRequest request_for_caller(const Options &options) {
    svm::ExecRequest request;
    request.argv = options.argv;
    if (options.send_script) {
        // argv[0] is a file the guest cannot see (slurmd's spool): send its text along.
        std::ifstream in(options.argv[0], std::ios::binary);
        std::ostringstream text;
        if (!in || !(text << in.rdbuf())) {
            throw svm::Error("cannot read the job script " + options.argv[0]);
        }
        request.script = text.str();
    }
    for (char **e = environ; *e; ++e) {
        const char *eq = std::strchr(*e, '=');
        if (eq && eq != *e) {
            request.env.emplace_back(*e);
        }
    }
    prepare_task(options, request);
    request.env = svm::guest_environment(request.env);
    request.cwd = options.cwd;
    if (request.cwd.empty()) {
        char buf[4096];
        request.cwd = ::getcwd(buf, sizeof buf) ? buf : "/";
    }
    request.uid = ::getuid();
    request.gid = ::getgid();
    // srun --pty: slurmstepd gave the task a terminal; the guest gives the command one too.
    if (options.forward_stdin && ::isatty(STDIN_FILENO)) {
        request.pty = svm::terminal_size(STDIN_FILENO);
    }
    int n = ::getgroups(0, nullptr);
    std::vector<gid_t> groups(n > 0 ? n : 0);
    n = ::getgroups(static_cast<int>(groups.size()), groups.data());
    for (int k = 0; k < n; ++k) {
        request.groups.push_back(groups[k]);
    }
    return request;
}

// Dies of the same signal as the remote command, so that our parent (slurmstepd) sees it.
int die_like(int status) {
    const int signo = WTERMSIG(status);
    // The remote command's core is in the VM; this process must not dump one on the host.
    struct rlimit no_core {
        0, 0
    };
    ::setrlimit(RLIMIT_CORE, &no_core);
    std::signal(signo, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    ::raise(signo);
    return 128 + signo;  // a signal whose default action does not end a process
}

// `program`: the program the guest is asked to run (for --multi-prog, the task's own).
int run_command(const Options &options, std::string &program) {
    svm::ExecRequest request;
    try {
        request = request_for_caller(options);
    } catch (const TaskEnd &end) {
        if (!end.message.empty()) {
            std::fprintf(stderr, "%s\n", end.message.c_str());
        }
        return end.code;
    }
    program = request.argv[0];
    int status;
    {
        svm::SignalForwarder signals;
        status = svm::run_in_guest(options.channel_dir, options.ports, request,
                                   options.forward_stdin ? STDIN_FILENO : -1, STDOUT_FILENO,
                                   STDERR_FILENO, &signals, options.hostcalls);
    }
    if (WIFSIGNALED(status)) {
        return die_like(status);
    }
    return WEXITSTATUS(status);
}

}  // namespace

int main(int argc, char **argv) {
    Options options;
    std::string program;
    try {
        options = parse_options(argc, argv);
    } catch (const UsageError &e) {
        std::fprintf(stderr, "slurm-vm: %s\n%s", e.message.c_str(), kUsage);
        return kExitUsage;
    }
    try {
        return run_command(options, program);
    } catch (const svm::RemoteStartError &e) {
        const bool missing =
            e.stage() == "execve" && (e.error_number() == ENOENT || e.error_number() == ENOTDIR);
        if (missing && !options.image.empty() && !program.empty() && !options.send_script) {
            // In the user's words: the program is not in the image they chose.
            std::fprintf(stderr, "slurm-vm: '%s' is not in image '%s' (%s)\n",
                         svm::printable(program).c_str(), svm::printable(options.image).c_str(),
                         e.what());
        } else {
            std::fprintf(stderr, "slurm-vm: %s\n", e.what());
        }
        if (e.stage() == "execve") {
            return e.error_number() == ENOENT || e.error_number() == ENOTDIR ? kExitNotFound
                                                                             : kExitNotExecutable;
        }
        return kExitTransport;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "slurm-vm: %s\n", e.what());
        return kExitTransport;
    }
}
