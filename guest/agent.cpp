// slurm-vm-agent: the in-guest end of the exec channel. Started by the guest's init, as root.
//
//   slurm-vm-agent [--ports GLOB]   serve every virtio-serial port matching GLOB
//                                   (default /dev/virtio-ports/org.slurmvm.exec.*)
//   slurm-vm-agent --listen PATH... serve unix sockets instead (host-side tests); repeatable
//   slurm-vm-agent --fd N           serve one connected fd until it closes (host-side tests)
//   --hostcall-dir DIR              where the per-session host-call sockets go
//                                   (default /run/slurm-vm-hostcall; "" turns host calls off)
//   --poweroff-marker FILE          with --listen or --fd: the host's POWEROFF syncs and
//                                   creates FILE instead of powering off (host-side tests)
//
// On virtio ports the host's POWEROFF syncs and powers the guest off. On --listen and --fd
// (the agent runs on a host, for tests) it is refused unless --poweroff-marker is given.
//
// Started as srun, sbatch, scancel, scontrol, squeue, sacct, sinfo, sstat or salloc (the guest
// has links of these names to it), or as `slurm-vm-agent --hostcall NAME [ARGS...]`, it is a
// shim instead: it runs that Slurm command on the host, next to the job (agent_hostcall.cpp).
//
// One server process per port, respawned if it dies, so a crash in one session leaves the
// others and the agent itself running.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <glob.h>
#include <map>
#include <optional>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/mount.h>
#include <unistd.h>
#include <vector>

#include "agent.h"

namespace {

using svm::errno_text;
using svm::monotonic_ms;
using svm::UniqueFd;
using svm::agent::Channel;
using svm::agent::log_line;

constexpr const char *kDefaultPorts = "/dev/virtio-ports/org.slurmvm.exec.*";
constexpr int kRespawnDelayMs = 1000;

const char *const kUsage =
    "usage: slurm-vm-agent [--ports GLOB] | --listen PATH [--listen PATH]... | --fd N "
    "[--hostcall-dir DIR] [--poweroff-marker FILE]\n"
    "       slurm-vm-agent --hostcall NAME [ARGS...]";

struct Options {
    std::string ports_glob = kDefaultPorts;
    std::vector<std::string> listen_paths;
    int fd = -1;
    svm::agent::ServerConfig server;
};

bool parse_options(int argc, char **argv, Options &options) {
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> const char * { return i + 1 < argc ? argv[++i] : nullptr; };
        const char *v = nullptr;
        if (arg == "--ports" && (v = value())) {
            options.ports_glob = v;
        } else if (arg == "--listen" && (v = value())) {
            options.listen_paths.emplace_back(v);
        } else if (arg == "--hostcall-dir" && (v = value())) {
            options.server.hostcall_dir = v;
        } else if (arg == "--poweroff-marker" && (v = value())) {
            options.server.poweroff_marker = v;
        } else if (arg == "--fd" && (v = value())) {
            char *end = nullptr;
            long fd = std::strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || fd < 0 || fd > 65535) {
                log_line("--fd: expected a file descriptor number, got '" + std::string(v) + "'");
                return false;
            }
            options.fd = static_cast<int>(fd);
        } else {
            log_line("unknown or incomplete argument '" + arg + "'; " + kUsage);
            return false;
        }
    }
    return true;
}

// A console-less start (or a careless test) may leave 0-2 closed; pipes and sockets must not
// land there.
void ensure_standard_fds() {
    for (int fd = 0; fd < 3; ++fd) {
        if (::fcntl(fd, F_GETFD) < 0) {
            ::open("/dev/null", O_RDWR);
        }
    }
}

UniqueFd listen_on(const std::string &path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        throw svm::Error("socket " + path + ": path too long");
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        throw svm::Error("socket " + path + ": " + errno_text(errno));
    }
    ::unlink(path.c_str());
    if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
        ::listen(fd.get(), 8) != 0) {
        throw svm::Error("socket " + path + ": " + errno_text(errno));
    }
    return fd;
}

std::vector<std::string> find_ports(const std::string &pattern) {
    std::vector<std::string> ports;
    glob_t g{};
    if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
        for (std::size_t i = 0; i < g.gl_pathc; ++i) {
            ports.emplace_back(g.gl_pathv[i]);
        }
    }
    ::globfree(&g);
    return ports;
}

// Supervises one server process per channel.
class Supervisor {
  public:
    Supervisor(std::vector<Channel> channels, svm::agent::ServerConfig config)
        : channels_(std::move(channels)), config_(std::move(config)) {}
    int run();

  private:
    void start(std::size_t index);

    std::vector<Channel> channels_;
    svm::agent::ServerConfig config_;
    std::map<pid_t, std::size_t> servers_;
    std::map<std::size_t, std::int64_t> respawn_at_;
    UniqueFd signal_fd_;
};

void Supervisor::start(std::size_t index) {
    pid_t pid = ::fork();
    if (pid < 0) {
        log_line("fork: " + errno_text(errno) + "; retrying");
        respawn_at_[index] = monotonic_ms() + kRespawnDelayMs;
        return;
    }
    if (pid == 0) {
        signal_fd_.reset();
        int code = 1;
        try {
            code = svm::agent::serve_channel(channels_[index], config_);
        } catch (const std::exception &e) {
            log_line(channels_[index].name() + ": " + e.what());
        }
        ::_exit(code);
    }
    servers_[pid] = index;
}

int Supervisor::run() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    signal_fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd_) {
        log_line("signalfd: " + errno_text(errno));
        return 1;
    }
    for (std::size_t i = 0; i < channels_.size(); ++i) {
        log_line("serving " + channels_[i].name());
        start(i);
    }
    bool stopping = false;
    while (!stopping || !servers_.empty()) {
        int timeout = -1;
        if (!respawn_at_.empty() && !stopping) {
            std::int64_t next = respawn_at_.begin()->second;
            for (auto &[index, at] : respawn_at_) {
                next = std::min(next, at);
            }
            timeout = static_cast<int>(std::max<std::int64_t>(0, next - monotonic_ms()));
        }
        pollfd pfd{signal_fd_.get(), POLLIN, 0};
        ::poll(&pfd, 1, timeout);
        signalfd_siginfo info;
        while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
            if (info.ssi_signo != SIGCHLD && !stopping) {
                stopping = true;
                log_line("stopping");
                for (auto &[pid, index] : servers_) {
                    ::kill(pid, SIGTERM);
                }
            }
        }
        int status;
        pid_t pid;
        while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
            auto it = servers_.find(pid);
            if (it == servers_.end()) {
                continue;
            }
            std::size_t index = it->second;
            servers_.erase(it);
            if (!stopping) {
                log_line("server for " + channels_[index].name() + " ended (status " +
                         std::to_string(status) + "); restarting it in 1 s");
                respawn_at_[index] = monotonic_ms() + kRespawnDelayMs;
            }
        }
        if (stopping) {
            continue;
        }
        const std::int64_t now = monotonic_ms();
        for (auto it = respawn_at_.begin(); it != respawn_at_.end();) {
            if (it->second <= now) {
                start(it->first);
                it = respawn_at_.erase(it);
            } else {
                ++it;
            }
        }
    }
    return 0;
}

// Where the agent is a shim: the command to run on the host and the index of its first
// argument in argv. Started through a link such as /usr/bin/srun, the link's name says which.
struct ShimCall {
    std::string command;
    int first_arg = 1;
};

std::optional<ShimCall> shim_call(int argc, char **argv) {
    if (argc >= 3 && std::strcmp(argv[1], "--hostcall") == 0) {
        return ShimCall{argv[2], 3};
    }
    if (argc < 1) {
        return std::nullopt;
    }
    const char *slash = std::strrchr(argv[0], '/');
    const std::string name = slash ? slash + 1 : argv[0];
    const auto &commands = svm::protocol::hostcall_commands();
    if (std::find(commands.begin(), commands.end(), name) != commands.end()) {
        return ShimCall{name, 1};
    }
    return std::nullopt;
}

// The agent as a server: creates what its sessions need (as root in the guest) and serves.
int serve(const Options &options) {
    using svm::agent::kScriptDir;
    if (::mkdir(kScriptDir, 01733) != 0 && errno != EEXIST) {
        log_line(std::string("mkdir ") + kScriptDir + ": " + errno_text(errno));
    }
    // Its own tmpfs: the image's /run may be mounted noexec (Debian's initramfs-tools does
    // that, and systemd keeps it), and batch scripts are run from here. As root only; an
    // unprivileged agent (the tests) uses the folder as it is.
    if (::geteuid() == 0 &&
        ::mount("slurm-vm-scripts", kScriptDir, "tmpfs", MS_NOSUID | MS_NODEV,
                "mode=1733,size=64m") != 0 &&
        errno != EBUSY) {
        log_line(std::string("mount tmpfs on ") + kScriptDir + ": " + errno_text(errno));
    }
    ::chmod(kScriptDir, 01733);
    const std::string &hostcall_dir = options.server.hostcall_dir;
    if (!hostcall_dir.empty()) {
        if (::mkdir(hostcall_dir.c_str(), 0711) != 0 && errno != EEXIST) {
            log_line("mkdir " + hostcall_dir + ": " + errno_text(errno) +
                     "; host calls will not work");
        }
    }
    try {
        if (options.fd >= 0) {
            Channel channel = Channel::connected_fd(options.fd);
            return svm::agent::serve_channel(channel, options.server);
        }
        std::vector<Channel> channels;
        for (const auto &path : options.listen_paths) {
            channels.push_back(Channel::listener(listen_on(path), path));
        }
        if (channels.empty()) {
            std::vector<std::string> ports = find_ports(options.ports_glob);
            // init creates the /dev/virtio-ports links; wait for them rather than give up.
            for (int waited = 0; ports.empty(); ++waited) {
                if (waited % 30 == 0) {
                    log_line("no port matches " + options.ports_glob + " yet; waiting");
                }
                ::sleep(1);
                ports = find_ports(options.ports_glob);
            }
            for (const auto &port : ports) {
                channels.push_back(Channel::virtio_port(port));
            }
        }
        return Supervisor(std::move(channels), options.server).run();
    } catch (const std::exception &e) {
        log_line(e.what());
        return 1;
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (auto shim = shim_call(argc, argv)) {
        return svm::agent::run_hostcall_shim(
            shim->command, std::vector<std::string>(argv + shim->first_arg, argv + argc));
    }
    ensure_standard_fds();
    // A host that left must show up as EPIPE, not kill a server.
    ::signal(SIGPIPE, SIG_IGN);
    Options options;
    if (!parse_options(argc, argv, options)) {
        return 2;
    }
    // Only the agent on a VM's virtio ports powers its machine off.
    if (options.fd >= 0 || !options.listen_paths.empty()) {
        options.server.poweroff = options.server.poweroff_marker.empty()
                                      ? svm::agent::PowerOffMode::Refuse
                                      : svm::agent::PowerOffMode::Marker;
    } else if (!options.server.poweroff_marker.empty()) {
        log_line("--poweroff-marker is for --listen and --fd only; " + std::string(kUsage));
        return 2;
    }
    return serve(options);
}
