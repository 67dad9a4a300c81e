#include "vm/virtiofs.h"

#include "util/accounts.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/process.h"
#include "util/text.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>
#include <vector>

namespace svm {

namespace {

constexpr int kListenFd = 3;  // --fd=3: the descriptor virtiofsd serves on
// What virtiofsd prints once its sandbox is up and it waits for QEMU.
constexpr const char *kReadyLine = "Waiting for vhost-user socket connection";
// The most of virtiofsd's start-up messages kept in its log.
constexpr std::size_t kMaxStartLog = 64 * 1024;

std::string describe(const VirtiofsdSpec &spec) {
    return "virtiofs share " + printable(spec.shared_dir);
}

UniqueFd listening_socket(const VirtiofsdSpec &spec) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (spec.socket_path.size() >= sizeof(addr.sun_path)) {
        throw Error(describe(spec) + ": socket path " + spec.socket_path + " is too long");
    }
    std::memcpy(addr.sun_path, spec.socket_path.c_str(), spec.socket_path.size() + 1);
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    unlink(spec.socket_path.c_str());  // a stale one of an earlier VM of the same name
    if (!fd || bind(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
        chown(spec.socket_path.c_str(), spec.uid, spec.gid) != 0 ||
        chmod(spec.socket_path.c_str(), 0600) != 0 || listen(fd.get(), 1) != 0) {
        throw Error(describe(spec) + ": cannot listen on " + spec.socket_path + ": " +
                    errno_text(errno));
    }
    return fd;
}

std::vector<gid_t> groups_of(uid_t uid, gid_t gid) {
    try {
        if (const auto user = find_user(uid)) {
            return group_ids(user->name, gid);
        }
    } catch (const Error &) {
        // The primary group alone, as below.
    }
    return {gid};
}

void write_map(pid_t pid, const char *which, const std::string &map, const VirtiofsdSpec &spec) {
    const std::string path = "/proc/" + std::to_string(pid) + "/" + which;
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd || write(fd.get(), map.data(), map.size()) != static_cast<ssize_t>(map.size())) {
        throw Error(describe(spec) + ": cannot write " + path + ": " + errno_text(errno));
    }
}

// virtiofsd's last words, printable: the last non-empty line of the end of its log.
std::string last_log_line(const std::string &path) {
    std::istringstream in(file_tail(path, 4096));
    std::string line, last;
    while (std::getline(in, line)) {
        if (!line.empty()) {
            last = line;
        }
    }
    return printable(last);
}

// Raises every capability the process holds (in its own user namespace) as an ambient one, so
// that they survive execve although its uid is not the namespace's root. System calls only.
bool raise_ambient_capabilities() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (syscall(SYS_capget, &header, data) != 0) {
        return false;
    }
    data[0].inheritable = data[0].permitted;
    data[1].inheritable = data[1].permitted;
    if (syscall(SYS_capset, &header, data) != 0) {
        return false;
    }
    for (unsigned cap = 0; cap < 64; ++cap) {
        const bool held = (data[cap / 32].permitted >> (cap % 32)) & 1U;
        if (held && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) {
            return false;
        }
    }
    return true;
}

// In the child, between fork and exec: system calls only. Reports errno on `status` and ends.
[[noreturn]] void child(const VirtiofsdSpec &spec, VirtiofsdFlavour flavour,
                        const std::vector<gid_t> &groups, char *const argv[], char *const envp[],
                        int fds[6]) {
    // fds: listen, log, null, ready (write end), go (read end), status (write end).
    int high[6];
    for (int i = 0; i < 6; ++i) {
        high[i] = fcntl(fds[i], F_DUPFD, 100);
    }
    int status = high[5];
    auto fail = [&]() {
        const int err = errno;
        (void)!write(status, &err, sizeof err);
        _exit(127);
    };
    if (setsid() < 0 || dup2(high[2], 0) < 0 || dup2(high[1], 1) < 0 || dup2(high[1], 2) < 0 ||
        dup2(high[0], kListenFd) < 0 || dup2(high[3], 4) < 0 || dup2(high[4], 5) < 0 ||
        dup2(high[5], 6) < 0) {
        fail();
    }
    status = 6;
    syscall(SYS_close_range, 7U, ~0U, 0U);
    fcntl(6, F_SETFD, FD_CLOEXEC);  // EOF on exec tells the parent it worked
    fcntl(4, F_SETFD, FD_CLOEXEC);
    fcntl(5, F_SETFD, FD_CLOEXEC);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // The user's groups (they decide what the share may read, as for the user) and gid, set
    // while still root; the uid stays root's until the namespace exists, so that root, not
    // the job's user, owns the namespace.
    if (setgroups(groups.size(), groups.data()) != 0 ||
        setresgid(spec.gid, spec.gid, spec.gid) != 0 || unshare(CLONE_NEWUSER) != 0) {
        fail();
    }
    char byte = 'u';
    if (write(4, &byte, 1) != 1 || read(5, &byte, 1) != 1) {
        fail();
    }
    // Mapped now: become the job's user as the namespace sees it.
    if (flavour == VirtiofsdFlavour::QemuC) {
        // Its own id (nothing maps to namespace root, so the kernel keeps the capabilities
        // across the uid change), the capabilities carried over exec as ambient ones.
        if (setresuid(spec.uid, spec.uid, spec.uid) != 0 || !raise_ambient_capabilities()) {
            fail();
        }
    } else if (setresgid(0, 0, 0) != 0 || setresuid(0, 0, 0) != 0) {
        fail();  // namespace root, which is the job's user on the host
    }
    execve(spec.binary.c_str(), argv, envp);
    fail();
    _exit(127);  // not reached: fail() ends the process
}

}  // namespace

VirtiofsdFlavour virtiofsd_flavour(const std::string &binary) {
    const ProcessResult r = run_process({binary, "--help"}, std::chrono::seconds(10));
    const std::string help = r.out + r.err;
    // The Rust daemon has translated ids since 1.7 (Debian 13 ships 1.13); QEMU's C one takes
    // its options as -o key=value.
    if (help.find("--translate-uid") != std::string::npos) {
        return VirtiofsdFlavour::Rust;
    }
    if (help.find("-o sandbox=") != std::string::npos) {
        return VirtiofsdFlavour::QemuC;
    }
    throw Error(binary +
                " --help names neither --translate-uid (virtiofsd 1.7 or later) nor "
                "-o sandbox= (QEMU's virtiofsd): which virtiofsd is it?");
}

std::string virtiofsd_id_map(VirtiofsdFlavour flavour, unsigned id) {
    const std::string inside = flavour == VirtiofsdFlavour::QemuC ? std::to_string(id) : "0";
    return inside + " " + std::to_string(id) + " 1\n";
}

std::vector<std::string> virtiofsd_args(VirtiofsdFlavour flavour, const VirtiofsdSpec &spec) {
    const std::string fd = "--fd=" + std::to_string(kListenFd);
    if (flavour == VirtiofsdFlavour::QemuC) {
        return {"virtiofsd",         fd,   "-o",         "source=" + spec.shared_dir, "-o",
                "sandbox=namespace", "-o", "cache=auto", "--rlimit-nofile=0",         "-f"};
    }
    return {"virtiofsd", fd, "--shared-dir=" + spec.shared_dir, "--sandbox=namespace",
            "--cache=auto", "--rlimit-nofile=0",
            // The guest's user is namespace root (the job's user on the host); a guest uid
            // that is neither stays itself and is not mapped: refused.
            "--translate-uid=map:" + std::to_string(spec.uid) + ":0:1",
            "--translate-gid=map:" + std::to_string(spec.gid) + ":0:1"};
}

pid_t start_virtiofsd(const VirtiofsdSpec &spec) {
    if (access(spec.binary.c_str(), X_OK) != 0) {
        throw Error(describe(spec) + ": " + spec.binary + " cannot run: " + errno_text(errno) +
                    " (Debian's virtiofsd or qemu-system-common ships it)");
    }
    VirtiofsdFlavour flavour{};
    try {
        flavour = spec.flavour ? *spec.flavour : virtiofsd_flavour(spec.binary);
    } catch (const Error &e) {
        throw Error(describe(spec) + ": " + e.what());
    }
    UniqueFd listen_fd = listening_socket(spec);
    UniqueFd log_file(
        open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    UniqueFd null_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    // virtiofsd writes into a pipe, not the file: what it says until it is ready is copied into
    // the log (kMaxStartLog at most); later messages, which the guest can provoke without end,
    // go nowhere once this end is closed, so they cannot fill root's state folder.
    int ready[2], go[2], status[2], log_pipe[2];
    if (!log_file || !null_fd || pipe2(log_pipe, O_CLOEXEC) != 0) {
        throw Error(describe(spec) + ": cannot open " + spec.log_path + ": " + errno_text(errno));
    }
    UniqueFd log_r(log_pipe[0]), log_fd(log_pipe[1]);
    fcntl(log_r.get(), F_SETFL, O_NONBLOCK);
    if (pipe2(ready, O_CLOEXEC) != 0) {
        throw Error(describe(spec) + ": pipe: " + errno_text(errno));
    }
    UniqueFd ready_r(ready[0]), ready_w(ready[1]);
    if (pipe2(go, O_CLOEXEC) != 0) {
        throw Error(describe(spec) + ": pipe: " + errno_text(errno));
    }
    UniqueFd go_r(go[0]), go_w(go[1]);
    if (pipe2(status, O_CLOEXEC) != 0) {
        throw Error(describe(spec) + ": pipe: " + errno_text(errno));
    }
    UniqueFd status_r(status[0]), status_w(status[1]);

    // Everything the child needs is made before fork: it only makes system calls.
    const std::vector<gid_t> groups = groups_of(spec.uid, spec.gid);
    const std::vector<std::string> args = virtiofsd_args(flavour, spec);
    std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"};
    std::vector<char *> argv = c_strings(args), envp = c_strings(env);
    int fds[6] = {listen_fd.get(), log_fd.get(), null_fd.get(),
                  ready_w.get(),   go_r.get(),   status_w.get()};

    const pid_t pid = fork();
    if (pid < 0) {
        throw Error(describe(spec) + ": fork: " + errno_text(errno));
    }
    if (pid == 0) {
        child(spec, flavour, groups, argv.data(), envp.data(), fds);
    }
    ready_w = UniqueFd();
    go_r = UniqueFd();
    status_w = UniqueFd();
    log_fd = UniqueFd();
    std::string said;  // what virtiofsd said so far, kMaxStartLog at most
    const auto copy_log = [&]() {
        char buf[4096];
        ssize_t n;
        while (said.size() < kMaxStartLog && (n = read(log_r.get(), buf, sizeof buf)) > 0) {
            const std::size_t take =
                std::min(static_cast<std::size_t>(n), kMaxStartLog - said.size());
            said.append(buf, take);
            (void)!write(log_file.get(), buf, take);
        }
    };
    auto give_up = [&](const std::string &why) -> Error {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        unlink(spec.socket_path.c_str());
        return Error(describe(spec) + ": " + why);
    };
    char byte = 0;
    if (read(ready_r.get(), &byte, 1) != 1) {
        int err = 0;
        const bool told = read(status_r.get(), &err, sizeof err) == sizeof err;
        throw give_up(std::string("cannot make a user namespace for uid ") +
                      std::to_string(spec.uid) + ": " + (told ? errno_text(err) : "no answer"));
    }
    try {
        write_map(pid, "uid_map", virtiofsd_id_map(flavour, spec.uid), spec);
        write_map(pid, "gid_map", virtiofsd_id_map(flavour, spec.gid), spec);
    } catch (const Error &) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        unlink(spec.socket_path.c_str());
        throw;
    }
    if (write(go_w.get(), &byte, 1) != 1) {
        throw give_up("the starter went away: " + errno_text(errno));
    }
    int err = 0;
    if (read(status_r.get(), &err, sizeof err) == sizeof err) {
        throw give_up("cannot run " + spec.binary + ": " + errno_text(err));
    }
    // Exec'd: wait for its sandbox (a few ms), or its last words.
    for (int i = 0; i < 500; ++i) {
        copy_log();
        if (said.find(kReadyLine) != std::string::npos) {
            return pid;
        }
        int wstatus = 0;
        if (waitpid(pid, &wstatus, WNOHANG) == pid) {
            copy_log();  // its last words
            unlink(spec.socket_path.c_str());
            throw Error(describe(spec) +
                        ": virtiofsd ended at start: " + last_log_line(spec.log_path));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw give_up("virtiofsd did not start within 5 s: " + last_log_line(spec.log_path));
}

}  // namespace svm
