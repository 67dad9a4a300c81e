// One server per exec port: waits for a host, reads requests, runs sessions one at a time.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <fstream>
#include <linux/random.h>
#include <poll.h>
#include <sstream>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

// Linux 4.17; older headers lack it.
#ifndef RNDRESEEDCRNG
#define RNDRESEEDCRNG _IO('R', 0x07)
#endif

#include "agent.h"
#include "command_links.h"
#include "util/json.h"

namespace svm::agent {

using protocol::Frame;
using protocol::FrameReader;
using protocol::FrameType;

namespace {

// How long a reply may wait for a host that stopped reading.
constexpr int kReplyTimeoutMs = 30000;
// Idle poll interval on a virtio port with no host: read() returns 0 and poll() reports POLLHUP
// at once then, so the server sleeps instead of spinning.
constexpr int kNoHostSleepMs = 50;

}  // namespace

void log_line(const std::string &text) {
    std::string line = "slurm-vm-agent: " + text + "\n";
    // One write per line so lines of the port servers do not interleave on the console.
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
}

Channel Channel::virtio_port(const std::string &path) {
    return Channel(Kind::Virtio, path);
}

Channel Channel::listener(UniqueFd listen_fd, const std::string &path) {
    Channel channel(Kind::Listener, path);
    channel.listen_ = std::move(listen_fd);
    return channel;
}

Channel Channel::connected_fd(int fd) {
    Channel channel(Kind::GivenFd, "fd " + std::to_string(fd));
    channel.conn_.reset(fd);
    return channel;
}

bool Channel::next_host(ServerSignals &signals) {
    const bool first = std::exchange(first_, false);
    bool terminate = false;
    switch (kind_) {
        case Kind::GivenFd:
            if (first) {
                set_nonblocking(conn_.get());
            }
            return first;
        case Kind::Virtio:
            // The port stays open across hosts; a new host simply starts writing to it.
            if (!first) {
                signals.wait_readable(-1, kNoHostSleepMs, terminate);
            }
            while (!conn_ && !terminate) {
                int fd = ::open(name_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                if (fd >= 0) {
                    conn_.reset(fd);
                    break;
                }
                log_line("port " + name_ + ": open: " + errno_text(errno) + "; retrying in 1 s");
                signals.wait_readable(-1, 1000, terminate);
            }
            return !terminate;
        case Kind::Listener:
            conn_.reset();
            for (;;) {
                if (!signals.wait_readable(listen_.get(), -1, terminate)) {
                    if (terminate) {
                        return false;
                    }
                    continue;
                }
                int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0) {
                    conn_.reset(fd);
                    return true;
                }
                if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) {
                    continue;
                }
                throw Error("socket " + name_ + ": accept: " + errno_text(errno));
            }
    }
    return false;
}

ServerSignals::ServerSignals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) {
        throw Error("sigprocmask: " + errno_text(errno));
    }
    fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!fd_) {
        throw Error("signalfd: " + errno_text(errno));
    }
}

bool ServerSignals::drain() {
    bool terminate = false;
    signalfd_siginfo info;
    while (::read(fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (info.ssi_signo != SIGCHLD) {
            terminate = true;
        }
    }
    return terminate;
}

bool ServerSignals::wait_readable(int fd, int timeout_ms, bool &terminate) {
    const std::int64_t deadline = timeout_ms < 0 ? -1 : monotonic_ms() + timeout_ms;
    for (;;) {
        int wait_ms = -1;
        if (deadline >= 0) {
            wait_ms = static_cast<int>(std::max<std::int64_t>(0, deadline - monotonic_ms()));
        }
        pollfd pfds[2] = {{fd, POLLIN, 0}, {fd_.get(), POLLIN, 0}};
        int r = ::poll(pfds, 2, wait_ms);
        if (r < 0 && errno != EINTR) {
            throw Error("poll: " + errno_text(errno));
        }
        if (r > 0 && pfds[1].revents) {
            if (drain()) {
                terminate = true;
                return false;
            }
            reap_children(-1);
        }
        if (r > 0 && pfds[0].revents) {
            return true;
        }
        if (r == 0) {
            return false;
        }
    }
}

std::optional<int> reap_children(pid_t watch) {
    std::optional<int> watched;
    for (;;) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            return watched;
        }
        if (pid == watch) {
            watched = status;
        }
    }
}

namespace {

// A repeated SETUP (a retried prolog) finds its mounts in place: that is success.
bool is_mounted(const GuestMount &mount) {
    std::ifstream mounts("/proc/self/mounts");
    std::string source, target, type, rest;
    while (mounts >> source >> target >> type && std::getline(mounts, rest)) {
        if (source == mount.tag && target == mount.path && type == mount.type) {
            return true;
        }
    }
    return false;
}

std::vector<std::string> read_lines(const std::string &path) {
    std::vector<std::string> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    return lines;
}

// The fields of a colon-separated /etc line.
std::vector<std::string> fields_of(const std::string &line) {
    std::vector<std::string> out;
    std::stringstream in(line);
    for (std::string f; std::getline(in, f, ':');) {
        out.push_back(f);
    }
    if (!line.empty() && line.back() == ':') {
        out.emplace_back();
    }
    return out;
}

// Replaces `path` with `lines`, keeping its mode; the guest's own files otherwise.
void write_lines(const std::string &path, const std::vector<std::string> &lines) {
    const std::string tmp = path + ".slurm-vm";
    {
        std::ofstream out(tmp, std::ios::trunc);
        for (const auto &l : lines) {
            out << l << '\n';
        }
        if (!out.flush()) {
            throw Error("writing " + tmp + " failed");
        }
    }
    struct stat st {};
    ::chmod(tmp.c_str(), ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        throw Error("rename " + tmp + ": " + errno_text(errno));
    }
}

// Gives the job's user a name inside: a passwd entry and its groups, where the guest lacks
// them. Entries the image has (a site image with its own directory service) are left alone.
void add_user(const GuestUser &user) {
    std::vector<std::string> passwd = read_lines("/etc/passwd");
    const bool known = std::any_of(passwd.begin(), passwd.end(), [&](const std::string &l) {
        const auto f = fields_of(l);
        return f.size() >= 3 && (f[0] == user.name || f[2] == std::to_string(user.uid));
    });
    if (!known) {
        const std::string shell = ::access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh";
        passwd.push_back(user.name + ":x:" + std::to_string(user.uid) + ":" +
                         std::to_string(user.gid) + ":slurm-vm job user:" + user.home + ":" +
                         shell);
        write_lines("/etc/passwd", passwd);
    }
    std::vector<std::string> group = read_lines("/etc/group");
    bool changed = false;
    for (const GuestGroup &g : user.groups) {
        bool found = false;
        for (auto &line : group) {
            auto f = fields_of(line);
            if (f.size() < 3 || (f[0] != g.name && f[2] != std::to_string(g.gid))) {
                continue;
            }
            found = true;
            if (f.size() < 4) {
                f.resize(4);
            }
            std::string members = "," + f[3] + ",";
            if (g.gid != user.gid && members.find("," + user.name + ",") == std::string::npos) {
                f[3] += (f[3].empty() ? "" : ",") + user.name;
                line = f[0] + ":" + f[1] + ":" + f[2] + ":" + f[3];
                changed = true;
            }
            break;
        }
        if (!found) {
            group.push_back(g.name + ":x:" + std::to_string(g.gid) + ":" +
                            (g.gid == user.gid ? "" : user.name));
            changed = true;
        }
    }
    if (changed) {
        write_lines("/etc/group", group);
    }
}

// A VM restored from a saved memory snapshot wakes with the clock of the moment it was saved.
void set_clock(std::int64_t clock_ns) {
    struct timespec now {};
    now.tv_sec = static_cast<time_t>(clock_ns / 1000000000);
    now.tv_nsec = static_cast<long>(clock_ns % 1000000000);
    if (::clock_settime(CLOCK_REALTIME, &now) != 0) {
        throw Error("set the clock: " + errno_text(errno));
    }
}

// Mixes the host's random bytes into the kernel's input pool, credited in full, then reseeds
// its CRNG from it at once: VMs restored from one snapshot share the CRNG state it holds, and
// kernels before 5.18 would otherwise keep that for up to 300 s.
void add_entropy(const std::string &bytes) {
    UniqueFd urandom(::open("/dev/urandom", O_WRONLY | O_CLOEXEC));
    if (!urandom) {
        throw Error("open /dev/urandom: " + errno_text(errno));
    }
    // struct rand_pool_info ends with its buffer; ints keep it aligned.
    std::vector<int> storage((sizeof(rand_pool_info) + bytes.size() + sizeof(int) - 1) /
                             sizeof(int));
    auto *info = reinterpret_cast<rand_pool_info *>(storage.data());
    info->entropy_count = static_cast<int>(8 * bytes.size());
    info->buf_size = static_cast<int>(bytes.size());
    std::memcpy(info->buf, bytes.data(), bytes.size());
    const int added = ::ioctl(urandom.get(), RNDADDENTROPY, info);
    const int add_errno = errno;
    ::explicit_bzero(storage.data(), storage.size() * sizeof(int));
    if (added != 0) {
        throw Error("RNDADDENTROPY on /dev/urandom: " + errno_text(add_errno));
    }
    // Kernels before 4.17 have no RNDRESEEDCRNG (ENOTTY or EINVAL); ENODATA: the CRNG is not
    // seeded yet, and it seeds itself from the pool above when it is.
    if (::ioctl(urandom.get(), RNDRESEEDCRNG) != 0 && errno != ENOTTY && errno != EINVAL &&
        errno != ENODATA) {
        throw Error("RNDRESEEDCRNG on /dev/urandom: " + errno_text(errno));
    }
}

constexpr const char *kMachineId = "/etc/machine-id";

// An image without a machine-id, or with an empty one (systemd fills that at boot), keeps it.
bool has_machine_id() {
    struct stat st {};
    return ::stat(kMachineId, &st) == 0 && st.st_size > 0;
}

// A fresh /etc/machine-id, written in place: under systemd it may be a bind mount.
void renew_machine_id() {
    if (!has_machine_id()) {
        return;
    }
    unsigned char id[16];
    if (::getrandom(id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) {
        throw Error("getrandom for " + std::string(kMachineId) + ": " + errno_text(errno));
    }
    // A version 4 UUID, as systemd makes them.
    id[6] = static_cast<unsigned char>((id[6] & 0x0f) | 0x40);
    id[8] = static_cast<unsigned char>((id[8] & 0x3f) | 0x80);
    static const char digits[] = "0123456789abcdef";
    std::string text;
    for (unsigned char b : id) {
        text += digits[b >> 4];
        text += digits[b & 0xf];
    }
    text += '\n';
    UniqueFd fd(::open(kMachineId, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        throw Error("open " + std::string(kMachineId) + ": " + errno_text(errno));
    }
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
        throw Error("write " + std::string(kMachineId) + ": " + errno_text(errno));
    }
}

}  // namespace

void apply_setup(const SetupRequest &request) {
    // First what a VM restored from a snapshot shares with the others restored from it.
    if (request.clock_ns) {
        set_clock(*request.clock_ns);
    }
    if (!request.entropy.empty()) {
        add_entropy(request.entropy);
    }
    if (request.new_machine_id) {
        renew_machine_id();
    }
    if (request.user) {
        add_user(*request.user);
    }
    if (::sethostname(request.hostname.data(), request.hostname.size()) != 0) {
        throw Error("sethostname " + request.hostname + ": " + errno_text(errno));
    }
    for (const GuestMount &mount : request.mounts) {
        if (is_mounted(mount)) {
            continue;
        }
        make_directories(mount.path);
        unsigned long flags = mount.readonly ? MS_RDONLY : 0;
        // virtiofs takes no options; the kernel loads its module (fs-virtiofs) on demand.
        const char *options =
            mount.type == "9p" ? "trans=virtio,version=9p2000.L,msize=262144" : nullptr;
        if (::mount(mount.tag.c_str(), mount.path.c_str(), mount.type.c_str(), flags, options) !=
            0) {
            throw Error("mount " + mount.type + " tag '" + mount.tag + "' on " + mount.path + ": " +
                        errno_text(errno));
        }
    }
}

namespace {

enum class Wait { Request, HostLeft, Terminate };

// The agent's own file: what a command link points at.
std::string own_executable() {
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// Sends one reply frame; false when the host is gone.
bool reply(Channel &channel, FrameType type, std::uint32_t session, const std::string &payload) {
    auto result = write_all(channel.fd(), protocol::encode_frame(type, session, payload),
                            kReplyTimeoutMs, "port " + channel.name());
    return result == WriteResult::Done;
}

// Waits for the next request frame while no session runs. Other frames are the tail of an
// earlier session (STDIN, SIGNAL sent before the host saw EXIT) and are dropped.
Wait wait_for_request(Channel &channel, FrameReader &reader, ServerSignals &signals,
                      std::optional<Frame> &request) {
    for (;;) {
        try {
            while (auto frame = reader.next()) {
                if (std::size_t skipped = reader.take_skipped()) {
                    log_line("port " + channel.name() + ": skipped " + std::to_string(skipped) +
                             " bytes that were not a frame");
                }
                if (protocol::is_request(frame->type)) {
                    request = std::move(frame);
                    return Wait::Request;
                }
            }
        } catch (const protocol::ProtocolError &e) {
            log_line("port " + channel.name() + ": " + e.what());
            continue;
        }
        pollfd pfds[2] = {{channel.fd(), POLLIN, 0}, {signals.fd(), POLLIN, 0}};
        if (::poll(pfds, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw Error("poll: " + errno_text(errno));
        }
        if (pfds[1].revents) {
            if (signals.drain()) {
                return Wait::Terminate;
            }
            reap_children(-1);
        }
        if (pfds[0].revents) {
            if (reader.fill_from(channel.fd()) == FrameReader::Fill::Closed) {
                return Wait::HostLeft;
            }
        }
    }
}

std::string describe(const Frame &frame) {
    char id[16];
    std::snprintf(id, sizeof id, "%08x", frame.session);
    return std::string("session ") + id;
}

// Why this agent will not power the guest off, or "" when it will.
std::string poweroff_refusal(const ServerConfig &config) {
    switch (config.poweroff) {
        case PowerOffMode::Refuse:
            return "this agent serves test sockets, not a VM: it does not power off";
        case PowerOffMode::Marker:
            return config.poweroff_marker.empty() ? "no power-off marker file was given" : "";
        case PowerOffMode::Machine:
            return ::geteuid() == 0 ? "" : "the agent does not run as root";
    }
    return "unknown power-off mode";
}

// The host's POWEROFF, after the OK went out. The job's tasks have ended and the guest's disk
// is a copy-on-write overlay the host throws away: what must survive is what the job wrote to
// the shared folders, and sync() writes back every file system's dirty data, the 9p and
// virtiofs shares included. After that a full shutdown would only stop services whose state
// is thrown away, so the kernel powers off at once (init, busybox's or systemd, is not asked:
// systemd would run its whole shutdown transaction, or wait on a stubborn unit). Returns only
// when the power-off failed.
void power_off(const ServerConfig &config, const std::string &label) {
    ::sync();
    if (config.poweroff == PowerOffMode::Marker) {
        UniqueFd fd(::open(config.poweroff_marker.c_str(),
                           O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
        if (!fd) {
            log_line(label + ": power-off marker " + config.poweroff_marker + ": " +
                     errno_text(errno));
        }
        return;
    }
    ::reboot(RB_POWER_OFF);
    log_line(label + ": power off failed: reboot(RB_POWER_OFF): " + errno_text(errno));
}

}  // namespace

int serve_channel(Channel &channel, const ServerConfig &config) {
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
        log_line("prctl(PR_SET_CHILD_SUBREAPER): " + errno_text(errno));
    }
    ServerSignals signals;
    FrameReader reader;
    std::optional<Frame> request;
    while (channel.next_host(signals)) {
        // Bytes of a host that left must not be read as the start of the next one's stream.
        reader.reset();
        request.reset();
        for (;;) {
            if (!request) {
                Wait wait = wait_for_request(channel, reader, signals, request);
                if (wait == Wait::Terminate) {
                    return 0;
                }
                if (wait == Wait::HostLeft) {
                    break;
                }
            }
            Frame frame = std::move(*request);
            request.reset();
            bool host_there = true;
            if (frame.type == FrameType::Ping) {
                host_there =
                    reply(channel, FrameType::Pong, frame.session, protocol::encode_pong());
            } else if (frame.type == FrameType::Setup) {
                AgentError error;
                try {
                    SetupRequest setup = protocol::decode_setup(frame.payload);
                    apply_setup(setup);
                    // A link that cannot be made costs the job only that path: no failure.
                    for (const std::string &problem :
                         link_host_commands(setup.command_links, own_executable())) {
                        log_line(describe(frame) + ": command link: " + problem);
                    }
                    log_line(
                        describe(frame) + ": hostname " + setup.hostname + ", " +
                        std::to_string(setup.mounts.size()) + " mount(s)" +
                        (setup.clock_ns ? ", clock set" : "") +
                        (setup.entropy.empty()
                             ? ""
                             : ", entropy " + std::to_string(setup.entropy.size()) + " bytes") +
                        // Left alone when the image has none: see renew_machine_id.
                        (setup.new_machine_id && has_machine_id() ? ", new machine-id" : ""));
                } catch (const Error &e) {
                    error.message = e.what();
                    error.stage = "setup";
                }
                if (error.message.empty()) {
                    host_there = reply(channel, FrameType::Ok, frame.session, "{}");
                } else {
                    log_line(describe(frame) + ": setup failed: " + error.message);
                    host_there = reply(channel, FrameType::Error, frame.session,
                                       protocol::encode_error(error));
                }
            } else if (frame.type == FrameType::Poweroff) {
                const std::string refusal = poweroff_refusal(config);
                if (refusal.empty()) {
                    log_line(describe(frame) + ": the host asks for a power-off; syncing");
                    // The answer first: once the kernel powers off, nothing more goes out.
                    host_there = reply(channel, FrameType::Ok, frame.session, "{}");
                    power_off(config, describe(frame));
                } else {
                    log_line(describe(frame) + ": power-off refused: " + refusal);
                    AgentError error;
                    error.message = "power-off refused: " + refusal;
                    error.stage = "poweroff";
                    host_there = reply(channel, FrameType::Error, frame.session,
                                       protocol::encode_error(error));
                }
            } else if (frame.type == FrameType::Exec) {
                SessionResult result = run_exec_session(channel, reader, signals, frame, config);
                if (result.end == SessionEnd::Terminate) {
                    return 0;
                }
                if (result.end == SessionEnd::HostLeft) {
                    host_there = false;
                } else if (result.end == SessionEnd::Superseded) {
                    request = std::move(result.next_request);
                }
            }
            if (!host_there) {
                break;
            }
        }
    }
    return 0;
}

}  // namespace svm::agent
