// slurm-vm-exec: runs a command inside a job's VM and behaves like that command. The SPANK
// plugin replaces each task with it (execv from slurm_spank_task_init, as the job's user).
//
//   slurm-vm-exec --channel-dir DIR [--ports N] [--cwd DIR] [--stdin] [--env-from-current]
//                 [--host-calls none|steps|all] [--image NAME] -- ARGV...
//   slurm-vm-exec --ping SOCKET [--timeout-ms N]
//   slurm-vm-exec --setup SOCKET --hostname H [--mount TAG:PATH[:ro]]... [--timeout-ms N]
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
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <getopt.h>
#include <unistd.h>
#include <vector>

#include "exec/exec_client.h"
#include "util/text.h"

extern char **environ;

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitNotExecutable = 126;
constexpr int kExitNotFound = 127;
constexpr int kExitTransport = 255;

const char *const kUsage =
    "usage: slurm-vm-exec --channel-dir DIR [--ports N] [--cwd DIR] [--stdin] "
    "[--script] [--env-from-current] [--host-calls none|steps|all] [--image NAME] -- ARGV...\n"
    "       slurm-vm-exec --ping SOCKET [--timeout-ms N]\n"
    "       slurm-vm-exec --setup SOCKET --hostname H [--mount TAG:PATH[:ro]]... "
    "[--timeout-ms N]\n";

struct UsageError {
    std::string message;
};

struct Options {
    std::string channel_dir;
    unsigned ports = 1;
    std::string cwd;
    bool forward_stdin = false;
    bool send_script = false;  // argv[0] is a host file to send (the batch script)
    std::string ping_socket;
    std::string setup_socket;
    std::string hostname;
    std::vector<svm::GuestMount> mounts;
    int timeout_ms = 10000;
    // What the command may run on the host; the SPANK plugin passes its host_calls= option.
    // Without the flag, the plugstack default.
    svm::HostCallPolicy hostcalls;
    std::string image;  // the job's image, to name it when a program is not in it
    std::vector<std::string> argv;
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

svm::GuestMount parse_mount(const std::string &text) {
    svm::GuestMount mount;
    auto first = text.find(':');
    if (first == std::string::npos || first == 0) {
        throw UsageError{"--mount: expected TAG:PATH[:ro], got '" + text + "'"};
    }
    mount.tag = text.substr(0, first);
    mount.path = text.substr(first + 1);
    if (mount.path.size() > 3 && mount.path.compare(mount.path.size() - 3, 3, ":ro") == 0) {
        mount.readonly = true;
        mount.path.resize(mount.path.size() - 3);
    }
    return mount;
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
        kEnvFromCurrent,
        kPing,
        kSetup,
        kHostname,
        kMount,
        kTimeoutMs,
        kImage
    };
    static const option long_options[] = {
        {"channel-dir", required_argument, nullptr, kChannelDir},
        {"ports", required_argument, nullptr, kPorts},
        {"cwd", required_argument, nullptr, kCwd},
        {"stdin", no_argument, nullptr, kStdin},
        {"script", no_argument, nullptr, kScript},
        {"host-calls", required_argument, nullptr, kHostCalls},
        {"env-from-current", no_argument, nullptr, kEnvFromCurrent},
        {"ping", required_argument, nullptr, kPing},
        {"setup", required_argument, nullptr, kSetup},
        {"hostname", required_argument, nullptr, kHostname},
        {"mount", required_argument, nullptr, kMount},
        {"timeout-ms", required_argument, nullptr, kTimeoutMs},
        {"image", required_argument, nullptr, kImage},
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
            case kEnvFromCurrent:
                // The environment is always the caller's; accepted for explicit callers.
                break;
            case kPing:
                options.ping_socket = optarg;
                break;
            case kSetup:
                options.setup_socket = optarg;
                break;
            case kHostname:
                options.hostname = optarg;
                break;
            case kMount:
                options.mounts.push_back(parse_mount(optarg));
                break;
            case kTimeoutMs:
                options.timeout_ms =
                    static_cast<int>(parse_number("--timeout-ms", optarg, 1, 86400000));
                break;
            case kImage:
                options.image = optarg;
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
    const int modes =
        !options.channel_dir.empty() + !options.ping_socket.empty() + !options.setup_socket.empty();
    if (modes != 1) {
        throw UsageError{"give exactly one of --channel-dir, --ping and --setup"};
    }
    if (!options.channel_dir.empty() && options.argv.empty()) {
        throw UsageError{"no command given after --"};
    }
    if (!options.setup_socket.empty() && options.hostname.empty()) {
        throw UsageError{"--setup needs --hostname"};
    }
    return options;
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
    request.cwd = options.cwd;
    if (request.cwd.empty()) {
        char buf[4096];
        request.cwd = ::getcwd(buf, sizeof buf) ? buf : "/";
    }
    request.uid = ::getuid();
    request.gid = ::getgid();
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

int run_command(const Options &options) {
    svm::ExecRequest request = request_for_caller(options);
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
    try {
        options = parse_options(argc, argv);
    } catch (const UsageError &e) {
        std::fprintf(stderr, "slurm-vm: %s\n%s", e.message.c_str(), kUsage);
        return kExitUsage;
    }
    try {
        if (!options.ping_socket.empty()) {
            svm::ping_agent(options.ping_socket, options.timeout_ms);
            return 0;
        }
        if (!options.setup_socket.empty()) {
            svm::SetupRequest setup{options.hostname, options.mounts};
            svm::setup_guest(options.setup_socket, setup, options.timeout_ms);
            return 0;
        }
        return run_command(options);
    } catch (const svm::RemoteStartError &e) {
        const bool missing =
            e.stage() == "execve" && (e.error_number() == ENOENT || e.error_number() == ENOTDIR);
        if (missing && !options.image.empty() && !options.argv.empty() && !options.send_script) {
            // In the user's words: the program is not in the image they chose.
            std::fprintf(stderr, "slurm-vm: '%s' is not in image '%s' (%s)\n",
                         svm::printable(options.argv[0]).c_str(),
                         svm::printable(options.image).c_str(), e.what());
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
