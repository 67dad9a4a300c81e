// The control messages of the exec protocol (JSON payloads) and their validation.
// Every decode_* checks types and ranges and throws ProtocolError naming the field; every
// encode_* applies the same checks, so a bad request fails on the host with the same message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace svm {

struct GuestMount {
    std::string tag;   // the mount tag of the shared host directory
    std::string path;  // absolute mount point in the guest
    bool readonly = false;
    std::string type = "9p";  // or "virtiofs"; absent from older hosts' requests: 9p
};

// A group the job's user is in, by name and id, as the host knows it.
struct GuestGroup {
    std::string name;
    std::uint32_t gid = 0;
    bool operator==(const GuestGroup &) const = default;
};

// The job's user as the host knows it, so that inside the guest `id -un`, `whoami`,
// `getent passwd $USER` and the groups are as on the host. The agent adds what the guest's
// /etc/passwd and /etc/group lack; a job's VM writes only to its own overlay or tmpfs.
struct GuestUser {
    std::string name;
    std::uint32_t uid = 0, gid = 0;
    std::string home;
    std::vector<GuestGroup> groups;  // the primary group first
    bool operator==(const GuestUser &) const = default;
};

struct SetupRequest {
    std::string hostname;
    std::vector<GuestMount> mounts;
    std::optional<GuestUser> user = std::nullopt;  // default: the guest's own accounts only
    // For a VM restored from a saved memory snapshot, whose clock is stale and whose kernel
    // RNG state and /etc/machine-id are those of every other VM restored from it (optional
    // fields: an older host sends none of them, an older agent ignores them):
    // the host's CLOCK_REALTIME in ns since the epoch when it made the request (> 0);
    std::optional<std::int64_t> clock_ns = std::nullopt;
    // raw random bytes to mix into the guest kernel's RNG, which is then reseeded (at most
    // protocol::kMaxSetupEntropy; sent as lower-case hex; empty: none);
    std::string entropy = {};
    // a fresh /etc/machine-id, where the guest has a non-empty one.
    bool new_machine_id = false;
    // Where the host has the Slurm commands a VM job may call (host calls), e.g.
    // /usr/bin/srun: the agent links each path that the guest lacks to itself, so that a job
    // script naming a command by its host path works in any image (optional; at most
    // kMaxCommandLinks absolute paths, each ending in a name of hostcall_commands()).
    std::vector<std::string> command_links = {};
};

// A resource limit for the command, as slurmstepd's set_user_limits would have left it for a
// native task. `resource` is the name Slurm uses (CORE, NOFILE, ... see
// protocol::rlimit_names()), so both ends agree whatever their headers number it.
struct ResourceLimit {
    std::string resource;
    std::uint64_t soft = 0, hard = 0;  // kUnlimited: RLIM_INFINITY
    static constexpr std::uint64_t kUnlimited = ~std::uint64_t{0};
    bool operator==(const ResourceLimit &) const = default;
};

// A terminal's size, in characters (TIOCGWINSZ's rows and columns).
struct WindowSize {
    std::uint16_t rows = 0, cols = 0;
    bool operator==(const WindowSize &) const = default;
};

struct ExecRequest {
    std::vector<std::string> argv;
    std::vector<std::string> env;  // "NAME=value"
    std::string cwd;               // absolute
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::vector<std::uint32_t> groups;
    // The program's text, when argv[0] is a file only the host has (a batch script in
    // slurmd's spool): the agent writes it to a private file and runs that as argv[0].
    std::string script;
    // What slurmstepd applies to a native task after task_init (optional fields: an older
    // host sends none of them and the guest's defaults stay):
    std::vector<ResourceLimit> limits = {};  // set, soft and hard, before dropping privileges
    std::optional<std::uint32_t> umask = std::nullopt;  // 0 to 0777
    // The first task of a node checks TMPDIR as slurmstepd's _make_tmpdir does: created if
    // missing (mode 0700), and replaced by /tmp when it is not a writable directory.
    bool make_tmpdir = false;
    // srun --pty: the command runs on a pseudo-terminal of the guest of this size (its stdin,
    // stdout and stderr; its output comes as STDOUT), and WINCH frames resize it.
    std::optional<WindowSize> pty = std::nullopt;
};

// How the remote command ended.
struct RemoteExit {
    bool signaled = false;
    int exit_code = 0;  // when !signaled
    int signal = 0;     // when signaled
    bool core_dumped = false;

    // The same value wait(2) would have given for a local process.
    int wait_status() const;
    static RemoteExit from_wait_status(int status);
};

// ERROR reply. stage names the step that failed ("execve", "chdir", "setuid", "mount", ...)
// and error_number its errno (0 if none), so a client can map them to shell-like exit codes.
struct AgentError {
    std::string message;
    std::string stage;
    int error_number = 0;
};

struct AgentInfo {
    std::string agent;
    int version = 0;
};

// A host call: a Slurm client command that a command in the VM asked the host to run (see
// guest/agent_hostcall.cpp). `call` tells apart the calls of one session; on the guest's local
// socket (shim -> agent) it is 0 and the agent assigns it.
struct HostCallRequest {
    std::uint32_t call = 0;
    std::vector<std::string> argv;  // argv[0]: a bare command name, checked by the host
    std::string cwd;                // absolute; the guest's working directory
    std::vector<std::string> env;   // "NAME=value"
};

struct HostCallOutput {
    std::uint32_t call = 0;
    std::string_view data;  // a view into the frame's payload
};

struct HostCallExit {
    std::uint32_t call = 0;
    RemoteExit exit;
};

struct HostCallSignal {
    std::uint32_t call = 0;
    int signal = 0;
};

}  // namespace svm

namespace svm::protocol {

inline constexpr int kProtocolVersion = 1;
inline constexpr const char *kAgentName = "slurm-vm-agent";

std::string encode_pong(const AgentInfo &info = {kAgentName, kProtocolVersion});
AgentInfo decode_pong(std::string_view payload);

void validate_setup(const SetupRequest &request);
std::string encode_setup(const SetupRequest &request);
SetupRequest decode_setup(std::string_view payload);
// At most this many bytes of SetupRequest::entropy.
inline constexpr std::size_t kMaxSetupEntropy = 64;
inline constexpr std::size_t kMaxCommandLinks = 32;

// The resource limits Slurm propagates, by its names: CPU FSIZE DATA STACK CORE RSS NPROC
// NOFILE MEMLOCK AS.
const std::vector<std::string> &rlimit_names();
// The RLIMIT_* number of a name of rlimit_names(), or -1.
int rlimit_resource(std::string_view name);
// At most this many limits in a request.
inline constexpr std::size_t kMaxLimits = 16;

void validate_exec(const ExecRequest &request);
std::string encode_exec(const ExecRequest &request);
ExecRequest decode_exec(std::string_view payload);

std::string encode_winch(const WindowSize &size);
WindowSize decode_winch(std::string_view payload);

std::string encode_started(pid_t pid);
pid_t decode_started(std::string_view payload);

std::string encode_error(const AgentError &error);
AgentError decode_error(std::string_view payload);

// Only these signals cross the channel: HUP INT QUIT TERM USR1 USR2 TSTP CONT KILL.
bool is_forwardable_signal(int signo);
const std::vector<int> &forwardable_signals();
std::string encode_signal(int signo);
int decode_signal(std::string_view payload);

std::string encode_exit(const RemoteExit &exit);
RemoteExit decode_exit(std::string_view payload);

// "SIGTERM" for 15, "signal 99" for anything unnamed.
std::string signal_name(int signo);

// The environment variable that gives an EXEC session's command the path of its host-call
// socket in the guest.
inline constexpr const char *kHostCallEnv = "SLURM_VM_HOSTCALL";

// The Slurm client commands a VM job may run on the host; both ends use this list (the guest
// for its shims, the host as its allow-list).
const std::vector<std::string> &hostcall_commands();

void validate_hostcall(const HostCallRequest &request);
std::string encode_hostcall(const HostCallRequest &request);
HostCallRequest decode_hostcall(std::string_view payload);

// HOSTCALL_STDOUT / HOSTCALL_STDERR payloads: the call id (4 bytes, big-endian), then the bytes.
std::string encode_hostcall_output(std::uint32_t call, std::string_view data);
HostCallOutput decode_hostcall_output(std::string_view payload);

std::string encode_hostcall_exit(const HostCallExit &exit);
HostCallExit decode_hostcall_exit(std::string_view payload);

std::string encode_hostcall_signal(const HostCallSignal &signal);
HostCallSignal decode_hostcall_signal(std::string_view payload);

}  // namespace svm::protocol
