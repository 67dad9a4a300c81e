#include "exec/host_calls.h"

#include "exec/guest_env.h"   // kGuestEnvPrefix
#include "exec/task_setup.h"  // kTaskPrologEnv, env_entry_sets
#include "util/safe_fs.h"
#include "util/spawn.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/text.h"
#include "exec/protocol/frame.h"

extern char **environ;

namespace svm {

using protocol::FrameType;

namespace {

constexpr std::size_t kChunk = 65536;
// After a command exits, its background children holding its stdout/stderr get this long.
constexpr int kDrainAfterExitMs = 1000;
// Between SIGTERM and SIGKILL when the session ends under running commands.
constexpr int kStopGraceMs = 5000;
// Without pidfds (kernels before 5.3), exits are noticed by polling this often.
constexpr int kWaitPollMs = 100;
// The agent allows as many per session; more from the guest is a broken or hostile agent.
constexpr std::size_t kMaxCalls = 128;

// Of a command name the guest sent, a refusal shows at most this much: the refusal goes back at
// once, so an echo of the whole name (up to a frame's 4 MiB) would let a guest multiply the
// memory and bandwidth it costs the host.
constexpr std::size_t kMaxShownName = 64;

constexpr int kExitNotFound = 127;
constexpr int kExitNotExecutable = 126;
constexpr int kExitUnavailable = 255;
// An allowed command whose arguments or environment the policy refuses: as the command
// itself exits when it refuses an option. (127 stays "no such command here".)
constexpr int kExitRefusedArguments = 1;

// The command name as a refusal shows it: its start, printable.
std::string shown_name(std::string_view name) {
    if (name.size() <= kMaxShownName) {
        return printable(name);
    }
    return printable(name.substr(0, kMaxShownName)) + "...";
}

// Options whose value is a program that Slurm runs on the host, outside the VM: srun runs
// --prolog and --epilog itself, here; slurmstepd runs --task-prolog and --task-epilog around
// each task. Only srun has them; sbatch and salloc are checked too, so that a later Slurm
// giving them one cannot slip through.
constexpr std::string_view kProgramOptions[] = {"prolog", "epilog", "task-prolog", "task-epilog"};
constexpr std::string_view kProgramOptionCommands[] = {"srun", "sbatch", "salloc"};

// Variables that make a Slurm client run or load code of the caller's choosing, or (under
// steps) work on another job. The job's own values (the host client's: Slurm put them in the
// task's environment, SLURM_CONF always) pass; a guest that changes one is refused, for
// `command` (all commands when null), the one that reads it.
struct GuardedVariable {
    std::string_view name;
    const char *command;
    const char *why;  // ends the refusal line
    bool steps_only;
};
constexpr GuardedVariable kGuardedVariables[] = {
    {"SLURM_CONF", nullptr,
     "it would read another Slurm configuration, and load the plugins that one names, on the "
     "host; not allowed from inside a VM",
     false},
    {"SLURM_CONF_SERVER", nullptr,
     "it would fetch its Slurm configuration, and so the plugins it loads, from another "
     "server; not allowed from inside a VM",
     false},
    {"SLURM_PROLOG", "srun", "srun runs that program on the host; not allowed from inside a VM",
     false},
    {"SLURM_EPILOG", "srun", "srun runs that program on the host; not allowed from inside a VM",
     false},
    {"SLURM_TASK_PROLOG", "srun",
     "srun runs that program on the host; not allowed from inside a VM", false},
    {"SLURM_TASK_EPILOG", "srun",
     "srun runs that program on the host; not allowed from inside a VM", false},
    {"SLURM_JOB_ID", "srun",
     "srun would start steps in another job, or a new job; host_calls=steps allows steps of "
     "this job only",
     true},
};

bool is_guarded(std::string_view name, HostCalls mode) {
    return std::any_of(std::begin(kGuardedVariables), std::end(kGuardedVariables),
                       [&](const GuardedVariable &v) {
                           return v.name == name && (!v.steps_only || mode == HostCalls::Steps);
                       });
}

// Variables whose guest value never reaches a host call: the host's own takes its place. Each
// makes a program on the host find its code somewhere: the commands themselves (PATH), the
// loader (LD_*), glibc's charset modules (GCONV_PATH), the Lua modules of a cli_filter/lua
// script (LUA_PATH*, LUA_CPATH*); HOME is where Slurm's clients look for the user's files.
// SLURM_VM_TASK_PROLOG names the program the exec client runs on the host as the user's
// --task-prolog: only the host's srun sets it. Under kGuestEnvPrefix the client keeps the job's
// own values of what its host side may not run with (exec/guest_env.h): they travel in srun's
// environment to the new step's guest, which gets the job's PATH and LD_* as the first did,
// while srun itself runs with the host side's.
bool is_host_only(std::string_view name, HostCalls mode) {
    return name == "PATH" || name == "HOME" || name.starts_with("LD_") || name == "GCONV_PATH" ||
           name == kTaskPrologEnv || name.starts_with("LUA_PATH") ||
           name.starts_with("LUA_CPATH") || name.starts_with(kGuestEnvPrefix) ||
           is_guarded(name, mode);
}

std::string_view variable_name(std::string_view entry) {
    return entry.substr(0, entry.find('='));
}

// What puts variables of the caller's choosing into a new step's (or job's) environment:
// `--export=[ALL|NONE,]NAME[=VALUE],...` and the variables srun and sbatch read for it. The step
// then runs with them, and Slurm runs its TaskProlog, the exec client and its TaskEpilog on the
// host with that environment.
constexpr std::string_view kExportOption = "export";
constexpr std::string_view kExportCommands[] = {"srun", "sbatch"};
struct ExportVariable {
    std::string_view name;
    std::string_view command;
};
constexpr ExportVariable kExportVariables[] = {
    {"SLURM_EXPORT_ENV", "srun"}, {"SRUN_EXPORT_ENV", "srun"}, {"SBATCH_EXPORT", "sbatch"}};

// The first variable an --export value assigns that a host call may not choose (is_host_only),
// or "". Split at every comma, quoted or not, and quotes stripped from a name: Slurm keeps a
// quoted comma inside its item (find_quote_token), so this reads more assignments than Slurm
// does, never fewer.
std::string_view host_only_assignment(std::string_view value, HostCalls mode) {
    std::size_t start = 0;
    while (start <= value.size()) {
        std::size_t end = value.find(',', start);
        if (end == std::string_view::npos) {
            end = value.size();
        }
        std::string_view item = value.substr(start, end - start);
        start = end + 1;
        const std::size_t eq = item.find('=');
        if (eq == std::string_view::npos) {
            continue;  // NAME alone: srun's own value, which the policy already chose
        }
        std::string_view name = item.substr(0, eq);
        while (!name.empty() &&
               (name.front() == '\'' || name.front() == '"' || name.front() == ' ')) {
            name.remove_prefix(1);
        }
        if (is_host_only(name, mode)) {
            return name;
        }
    }
    return {};
}

// Every value `name` has in env (an environment may repeat a name; execve keeps them all).
std::vector<std::string_view> values_of(const std::vector<std::string> &env,
                                        std::string_view name) {
    std::vector<std::string_view> values;
    for (const auto &e : env) {
        if (env_entry_sets(e, name)) {
            values.push_back(std::string_view(e).substr(name.size() + 1));
        }
    }
    return values;
}

// The long option a word names as getopt_long reads it ("--name" or "--name=value"), or "".
std::string_view long_option_name(std::string_view word) {
    if (word.size() <= 2 || !word.starts_with("--")) {
        return {};
    }
    word.remove_prefix(2);
    return word.substr(0, word.find('='));
}

// Whether getopt_long may read `name` as `option`: its full name or an abbreviation. An
// abbreviation that another option shares is an error for getopt_long, so refusing it too
// costs nothing, and stays right whatever options a later Slurm adds.
bool may_mean(std::string_view name, std::string_view option) {
    return !name.empty() && option.starts_with(name);
}

// How a refusal shows a word of the guest's: a long option as given, cut and printable;
// with the option it stands for when abbreviated.
std::string shown_option(std::string_view name, std::string_view option) {
    std::string text = "--" + shown_name(name);
    if (name != option) {
        text += " (--" + std::string(option) + ")";
    }
    return text;
}

std::string find_command(const std::string &name, const std::vector<std::string> &dirs) {
    for (const auto &dir : dirs) {
        const std::string path = dir + "/" + name;
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            ::access(path.c_str(), X_OK) == 0) {
            return path;
        }
    }
    return {};
}

std::string client_cwd() {
    char buf[4096];
    return ::getcwd(buf, sizeof buf) ? buf : "/";
}

void make_pipe(UniqueFd &read_end, UniqueFd &write_end) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw Error("host call: pipe: " + errno_text(errno));
    }
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
}

// posix_spawn returns after the exec, so the group exists; it outlives a reaped leader while
// members remain (a pid alone could already be someone else's).
void kill_group(pid_t pid, int signo) {
    ::kill(-pid, signo);
}

}  // namespace

std::vector<std::string> HostCallPolicy::commands() const {
    std::vector<std::string> allowed;
    for (const auto &name : protocol::hostcall_commands()) {
        const bool steps =
            name == "srun" || name == "scancel" || name == "squeue" || name == "sstat";
        if (mode == HostCalls::All || (mode == HostCalls::Steps && steps)) {
            allowed.push_back(name);
        }
    }
    return allowed;
}

std::vector<std::string> HostCallPolicy::command_paths() const {
    std::vector<std::string> paths;
    for (const auto &name : commands()) {
        if (std::string path = find_command(name, search_dirs); !path.empty()) {
            paths.push_back(std::move(path));
        }
    }
    return paths;
}

std::optional<HostCallPolicy::Refusal> HostCallPolicy::refusal(
    const std::vector<std::string> &argv, const std::vector<std::string> &guest_env,
    const std::vector<std::string> &host_env) const {
    const std::string prefix = "host call refused: ";
    if (argv.empty()) {
        return Refusal{prefix + "no command given", kExitNotFound};
    }
    const std::string &name = argv.front();
    const std::string mode_name = host_calls_name(mode);
    const std::vector<std::string> allowed = commands();
    if (allowed.empty()) {
        return Refusal{prefix + shown_name(name) +
                           ": this cluster allows no Slurm commands from inside a VM "
                           "(host_calls=none)",
                       kExitNotFound};
    }
    const std::string allows = " (host_calls=" + mode_name + " allows " + join(allowed, ", ") + ")";
    if (name.find('/') != std::string::npos) {
        return Refusal{prefix + shown_name(name) + ": give a command's name, not a path" + allows,
                       kExitNotFound};
    }
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        return Refusal{prefix + shown_name(name) + " is not allowed from inside a VM" + allows,
                       kExitNotFound};
    }

    const auto refused = [&](const std::string &why) {
        return Refusal{prefix + name + " " + why, kExitRefusedArguments};
    };
    if (std::find(std::begin(kProgramOptionCommands), std::end(kProgramOptionCommands), name) !=
        std::end(kProgramOptionCommands)) {
        for (std::size_t i = 1; i < argv.size(); ++i) {
            const std::string_view option = long_option_name(argv[i]);
            for (std::string_view program_option : kProgramOptions) {
                if (may_mean(option, program_option)) {
                    return refused(shown_option(option, program_option) +
                                   " runs a program on the host; not allowed from inside a VM");
                }
            }
        }
    }
    if (std::find(std::begin(kExportCommands), std::end(kExportCommands), name) !=
        std::end(kExportCommands)) {
        const std::string host_only =
            " is the host's for a step started from inside a VM; not allowed from inside a VM";
        for (std::size_t i = 1; i < argv.size(); ++i) {
            const std::string_view option = long_option_name(argv[i]);
            if (!may_mean(option, kExportOption)) {
                continue;
            }
            const std::string_view word = argv[i];
            const auto eq = word.find('=');
            const std::string_view value = eq != std::string_view::npos ? word.substr(eq + 1)
                                           : i + 1 < argv.size() ? std::string_view(argv[i + 1])
                                                                 : std::string_view();
            if (const auto variable = host_only_assignment(value, mode); !variable.empty()) {
                return refused(shown_option(option, kExportOption) + " sets " +
                               shown_name(variable) + ", which" + host_only);
            }
        }
        for (const ExportVariable &variable : kExportVariables) {
            if (variable.command != name) {
                continue;
            }
            // The job's own value (sbatch --export puts it in the job's environment) was the
            // user's choice, on the host.
            const auto own = values_of(host_env, variable.name);
            for (std::string_view value : values_of(guest_env, variable.name)) {
                if (own.size() == 1 && value == own.front()) {
                    continue;
                }
                if (const auto set = host_only_assignment(value, mode); !set.empty()) {
                    return Refusal{prefix + name + " with " + std::string(variable.name) +
                                       " setting " + shown_name(set) + ", which" + host_only,
                                   kExitRefusedArguments};
                }
            }
        }
    }
    if (name == "salloc" && (argv.size() < 2 || argv[1] != "--no-shell")) {
        // Without --no-shell, salloc runs its command, or else the user's login shell (which
        // reads BASH_ENV or ~/.zshenv), on the host. Only a first --no-shell is surely an
        // option: a later one could be the value of the option before it.
        return refused(
            "runs a command, or your login shell, on the host; from inside a VM only "
            "'salloc --no-shell ...' is allowed, with --no-shell first");
    }
    if (mode == HostCalls::Steps && name == "srun") {
        const auto own = values_of(host_env, "SLURM_JOB_ID");
        for (std::size_t i = 1; i < argv.size(); ++i) {
            const std::string_view option = long_option_name(argv[i]);
            if (!may_mean(option, "jobid")) {
                continue;
            }
            // getopt_long takes the value after '=', or else the next word, whatever it is.
            const std::string_view word = argv[i];
            const auto eq = word.find('=');
            const std::optional<std::string_view> value =
                eq != std::string_view::npos ? std::optional(word.substr(eq + 1))
                : i + 1 < argv.size()        ? std::optional<std::string_view>(argv[i + 1])
                                             : std::nullopt;
            if (!value || own.size() != 1 || *value != own.front()) {
                return refused(shown_option(option, "jobid") +
                               " starts steps in another job; host_calls=steps allows steps of "
                               "this job only");
            }
        }
    }
    for (const GuardedVariable &variable : kGuardedVariables) {
        if ((variable.steps_only && mode != HostCalls::Steps) ||
            (variable.command && name != variable.command)) {
            continue;  // environment() still gives the command the job's value
        }
        const auto own = values_of(host_env, variable.name);
        for (std::string_view value : values_of(guest_env, variable.name)) {
            if (own.size() != 1 || value != own.front()) {
                return Refusal{prefix + name + " with " + std::string(variable.name) +
                                   " changed inside the VM: " + variable.why,
                               kExitRefusedArguments};
            }
        }
    }
    return std::nullopt;
}

std::vector<std::string> HostCallPolicy::environment(
    const std::vector<std::string> &guest_env, const std::vector<std::string> &host_env) const {
    std::vector<std::string> env;
    for (const auto &e : guest_env) {
        const std::string_view name = variable_name(e);
        if (!is_host_only(name, mode) && name != protocol::kHostCallEnv) {
            env.push_back(e);
        }
    }
    for (const auto &e : host_env) {
        if (is_host_only(variable_name(e), mode)) {
            env.push_back(e);
        }
    }
    return env;
}

HostCallRunner::HostCallRunner(const HostCallPolicy &policy, std::uint32_t session)
    : policy_(policy), session_(session) {}

HostCallRunner::~HostCallRunner() {
    stop_all();
}

void HostCallRunner::refuse(std::uint32_t call, const std::string &message, int exit_code,
                            std::string &out) {
    protocol::append_frame(out, FrameType::HostCallStderr, session_,
                           protocol::encode_hostcall_output(call, "slurm-vm: " + message + "\n"));
    RemoteExit exit;
    exit.exit_code = exit_code;
    protocol::append_frame(out, FrameType::HostCallExit, session_,
                           protocol::encode_hostcall_exit({call, exit}));
}

void HostCallRunner::start(const HostCallRequest &request, std::string &out) {
    std::vector<std::string> host_env;
    for (char **e = environ; *e; ++e) {
        host_env.emplace_back(*e);
    }
    if (const auto refusal = policy_.refusal(request.argv, request.env, host_env)) {
        refuse(request.call, refusal->message, refusal->exit_code, out);
        return;
    }
    const std::string &name = request.argv[0];
    if (calls_.count(request.call) != 0) {
        return;  // the agent never reuses a running call's id; answering would end that call
    }
    if (calls_.size() >= kMaxCalls) {
        refuse(request.call,
               name + ": too many host calls at once (at most " + std::to_string(kMaxCalls) + ")",
               kExitUnavailable, out);
        return;
    }
    const std::string path = find_command(name, policy_.search_dirs);
    if (path.empty()) {
        refuse(request.call,
               name + ": not found on the host (searched " + join(policy_.search_dirs, ":") + ")",
               kExitNotFound, out);
        return;
    }
    // The guest's directory is usually shared with the host (the job's working directory,
    // home); a guest-only one (/tmp in the VM) falls back to the job's directory here.
    const std::string cwd = is_traversable_directory(request.cwd) ? request.cwd : client_cwd();

    const std::vector<std::string> env = policy_.environment(request.env, host_env);

    Call call;
    UniqueFd stdout_w, stderr_w;
    try {
        make_pipe(call.stdout_r, stdout_w);
        make_pipe(call.stderr_r, stderr_w);
    } catch (const Error &e) {
        refuse(request.call, name + ": " + e.what(), kExitUnavailable, out);
        return;
    }
    SpawnSpec spec;
    spec.argv = request.argv;  // argv[0] as the guest named it, as a shell would leave it
    spec.program = path;
    spec.env = &env;
    spec.cwd = cwd;
    spec.stdout_fd = stdout_w.get();
    spec.stderr_fd = stderr_w.get();
    try {
        call.pid = spawn_program(spec);
    } catch (const SpawnError &e) {
        refuse(request.call,
               name + ": cannot run " + path + " on the host: " + errno_text(e.error_number()),
               e.error_number() == ENOENT ? kExitNotFound : kExitNotExecutable, out);
        return;
    }
    stdout_w.reset();
    stderr_w.reset();
    call.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, call.pid, 0)));
    set_nonblocking(call.stdout_r.get());
    set_nonblocking(call.stderr_r.get());
    calls_.emplace(request.call, std::move(call));
}

void HostCallRunner::signal(const HostCallSignal &signal) {
    auto it = calls_.find(signal.call);
    if (it != calls_.end() && !it->second.exited) {
        kill_group(it->second.pid, signal.signal);
    }
}

void HostCallRunner::add_pollfds(std::vector<pollfd> &pfds, bool room) {
    polled_.clear();
    for (auto &[id, call] : calls_) {
        if (room && call.stdout_r) {
            pfds.push_back({call.stdout_r.get(), POLLIN, 0});
            polled_.emplace_back(id, Kind::Stdout);
        }
        if (room && call.stderr_r) {
            pfds.push_back({call.stderr_r.get(), POLLIN, 0});
            polled_.emplace_back(id, Kind::Stderr);
        }
        if (!call.exited && call.pidfd) {
            pfds.push_back({call.pidfd.get(), POLLIN, 0});
            polled_.emplace_back(id, Kind::Exit);
        }
    }
}

int HostCallRunner::poll_timeout_ms() const {
    std::int64_t timeout = -1;
    const std::int64_t now = monotonic_ms();
    for (const auto &[id, call] : calls_) {
        std::int64_t t = -1;
        if (call.exited) {
            t = std::max<std::int64_t>(0, call.drain_deadline - now);
        } else if (!call.pidfd) {
            t = kWaitPollMs;
        }
        if (t >= 0 && (timeout < 0 || t < timeout)) {
            timeout = t;
        }
    }
    return static_cast<int>(timeout);
}

bool HostCallRunner::read_output(std::uint32_t call, UniqueFd &pipe, bool is_stdout,
                                 std::string &out) {
    char buf[kChunk];
    const ssize_t n = ::read(pipe.get(), buf, sizeof buf);
    if (n > 0) {
        protocol::append_frame(
            out, is_stdout ? FrameType::HostCallStdout : FrameType::HostCallStderr, session_,
            protocol::encode_hostcall_output(call, std::string_view(buf, static_cast<size_t>(n))));
        return true;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        pipe.reset();
    }
    return false;
}

void HostCallRunner::check_exit(Call &call) {
    if (call.exited) {
        return;
    }
    int status = 0;
    pid_t r;
    while ((r = ::waitpid(call.pid, &status, WNOHANG)) < 0 && errno == EINTR) {
    }
    if (r == call.pid || (r < 0 && errno == ECHILD)) {
        // ECHILD: someone else reaped it (a caller that waits for any child); it did end.
        call.exited = true;
        call.status = r == call.pid ? status : (kExitUnavailable << 8);
        call.drain_deadline = monotonic_ms() + kDrainAfterExitMs;
        call.pidfd.reset();
    }
}

void HostCallRunner::process(const std::vector<pollfd> &pfds, std::size_t first, std::string &out,
                             std::size_t out_limit) {
    for (std::size_t i = 0; i < polled_.size(); ++i) {
        if (pfds[first + i].revents == 0) {
            continue;
        }
        auto it = calls_.find(polled_[i].first);
        if (it == calls_.end()) {
            continue;
        }
        Call &call = it->second;
        const bool room = out.size() < out_limit;
        switch (polled_[i].second) {
            case Kind::Stdout:
                if (room) {
                    read_output(it->first, call.stdout_r, true, out);
                }
                break;
            case Kind::Stderr:
                if (room) {
                    read_output(it->first, call.stderr_r, false, out);
                }
                break;
            case Kind::Exit:
                check_exit(call);
                break;
        }
    }
    polled_.clear();
    const std::int64_t now = monotonic_ms();
    for (auto it = calls_.begin(); it != calls_.end();) {
        Call &call = it->second;
        if (!call.pidfd) {
            check_exit(call);
        }
        const bool outputs_open = call.stdout_r || call.stderr_r;
        if (!call.exited || (outputs_open && now < call.drain_deadline)) {
            ++it;
            continue;
        }
        if (outputs_open) {
            // Background children of the command still hold its output: they go with it.
            kill_group(call.pid, SIGKILL);
            call.stdout_r.reset();
            call.stderr_r.reset();
        }
        protocol::append_frame(
            out, FrameType::HostCallExit, session_,
            protocol::encode_hostcall_exit({it->first, RemoteExit::from_wait_status(call.status)}));
        it = calls_.erase(it);
    }
}

void HostCallRunner::stop_all() {
    if (calls_.empty()) {
        return;
    }
    for (auto &[id, call] : calls_) {
        call.stdout_r.reset();
        call.stderr_r.reset();
        kill_group(call.pid, call.exited ? SIGKILL : SIGTERM);
    }
    const std::int64_t deadline = monotonic_ms() + kStopGraceMs;
    for (;;) {
        bool all_exited = true;
        for (auto &[id, call] : calls_) {
            check_exit(call);
            all_exited = all_exited && call.exited;
        }
        if (all_exited || monotonic_ms() >= deadline) {
            break;
        }
        ::usleep(50 * 1000);
    }
    for (auto &[id, call] : calls_) {
        if (!call.exited) {
            kill_group(call.pid, SIGKILL);
            int status;
            while (::waitpid(call.pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
    }
    calls_.clear();
}

}  // namespace svm
