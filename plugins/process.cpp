#include "process.h"

#include "error.h"
#include "protocol/fd.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <thread>

namespace svm {

namespace {

using Clock = std::chrono::steady_clock;

using protocol::UniqueFd;

struct Pipe {
    UniqueFd read, write;
};

Pipe make_pipe(const std::string &program) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        throw Error("cannot run " + program + ": pipe: " + errno_text(errno));
    }
    return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Only async-signal-safe calls from here on: the parent may have threads (slurmd does).
[[noreturn]] void exec_child(char *const argv[], int out_fd, int err_fd, int report_fd,
                             int max_fd) {
    setpgid(0, 0);
    // slurmd blocks and ignores signals that the program must see with their defaults.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2}) {
        sigaction(sig, &dfl, nullptr);
    }

    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0 ||
        dup2(report_fd, 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0) {
        int err = errno;
        (void)!write(report_fd, &err, sizeof err);
        _exit(127);
    }
    // fd 3 reports a failed execv to the parent; close-on-exec tells it execv succeeded.
    if (close_range(4, ~0U, 0) != 0) {
        for (int fd = 4; fd < max_fd; ++fd) {
            close(fd);
        }
    }
    execv(argv[0], argv);
    int err = errno;
    (void)!write(3, &err, sizeof err);
    _exit(127);
}

int decode_wait_status(int wstatus) {
    if (WIFEXITED(wstatus)) {
        return WEXITSTATUS(wstatus);
    }
    if (WIFSIGNALED(wstatus)) {
        return 128 + WTERMSIG(wstatus);
    }
    return -1;
}

void append_bounded(std::string &dst, const char *data, std::size_t len) {
    if (dst.size() < kMaxCapturedOutput) {
        dst.append(data, std::min(len, kMaxCapturedOutput - dst.size()));
    }
}

// Reads what is available; returns false at end of file or on error.
bool read_some(int fd, std::string &dst) {
    std::array<char, 8192> buf;
    for (;;) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n > 0) {
            append_bounded(dst, buf.data(), static_cast<std::size_t>(n));
            return true;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return true;
        }
        return false;
    }
}

// Takes what is left in a pipe whose writer may never close it, without waiting for more.
void drain(int fd, std::string &dst) {
    std::array<char, 8192> buf;
    for (int chunks = 0; chunks < 64; ++chunks) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        append_bounded(dst, buf.data(), static_cast<std::size_t>(n));
    }
}

int wait_for(pid_t pid) {
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    return decode_wait_status(wstatus);
}

}  // namespace

ProcessResult run_process(const std::vector<std::string> &argv, std::chrono::milliseconds timeout) {
    if (argv.empty() || argv[0].empty() || argv[0][0] != '/') {
        throw Error("cannot run '" + (argv.empty() ? std::string() : argv[0]) +
                    "': the program must be given by absolute path");
    }
    const std::string &program = argv[0];

    // Everything the child needs is prepared before fork: it must not allocate.
    std::vector<char *> cargv;
    cargv.reserve(argv.size() + 1);
    for (const std::string &arg : argv) {
        cargv.push_back(const_cast<char *>(arg.c_str()));
    }
    cargv.push_back(nullptr);
    struct rlimit nofile {};
    int max_fd = 1024;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
        max_fd = static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 65536));
    }

    Pipe out = make_pipe(program);
    Pipe err = make_pipe(program);
    Pipe report = make_pipe(program);

    const auto deadline = Clock::now() + timeout;
    pid_t pid = fork();
    if (pid < 0) {
        throw Error("cannot run " + program + ": fork: " + errno_text(errno));
    }
    if (pid == 0) {
        exec_child(cargv.data(), out.write.get(), err.write.get(), report.write.get(), max_fd);
    }
    // Both sides set the group, so a kill that comes early still reaches it.
    setpgid(pid, pid);
    out.write.reset();
    err.write.reset();
    report.write.reset();

    // Blocks only until execv: the descriptor closes on exec, or carries execv's errno.
    int exec_errno = 0;
    ssize_t n;
    do {
        n = read(report.read.get(), &exec_errno, sizeof exec_errno);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {
        wait_for(pid);
        throw Error("cannot run " + program + ": " + errno_text(exec_errno));
    }

    fcntl(out.read.get(), F_SETFL, O_NONBLOCK);
    fcntl(err.read.get(), F_SETFL, O_NONBLOCK);

    ProcessResult result;
    bool out_open = true, err_open = true;
    bool reaped = false;
    int wstatus = 0;
    while (out_open || err_open) {
        auto now = Clock::now();
        if (now >= deadline) {
            result.timed_out = true;
            break;
        }
        // A program that exits while a daemonised child of it still holds the pipes is done:
        // check for its exit now and then instead of waiting for end of file.
        auto slice = std::min<Clock::duration>(deadline - now, std::chrono::milliseconds(100));
        int wait_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(slice).count());
        std::array<pollfd, 2> fds{{{out_open ? out.read.get() : -1, POLLIN, 0},
                                   {err_open ? err.read.get() : -1, POLLIN, 0}}};
        int ready = poll(fds.data(), fds.size(), wait_ms);
        if (ready < 0 && errno != EINTR) {
            break;
        }
        if (ready > 0) {
            if (out_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
                out_open = read_some(out.read.get(), result.out);
            }
            if (err_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
                err_open = read_some(err.read.get(), result.err);
            }
            continue;
        }
        if (waitpid(pid, &wstatus, WNOHANG) == pid) {
            reaped = true;
            drain(out.read.get(), result.out);
            drain(err.read.get(), result.err);
            break;
        }
    }

    if (result.timed_out) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
    }
    if (reaped) {
        result.status = decode_wait_status(wstatus);
        return result;
    }
    // The pipes are closed: the program is exiting, or was killed above.
    if (!result.timed_out) {
        for (;;) {
            pid_t r = waitpid(pid, &wstatus, WNOHANG);
            if (r == pid) {
                result.status = decode_wait_status(wstatus);
                return result;
            }
            if (r < 0 && errno != EINTR) {
                result.status = -1;
                return result;
            }
            if (Clock::now() >= deadline) {
                result.timed_out = true;
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    wait_for(pid);
    result.status = 128 + SIGKILL;
    return result;
}

std::string find_program(const std::string &name) {
    if (name.empty() || name.find('/') != std::string::npos) {
        throw Error("program name '" + name + "' must be a bare name");
    }
    for (const char *dir : {"/usr/bin", "/usr/sbin", "/bin", "/sbin"}) {
        std::string path = std::string(dir) + "/" + name;
        struct stat st {};
        if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            access(path.c_str(), X_OK) == 0) {
            return path;
        }
    }
    throw Error("program " + name + " not found in /usr/bin:/usr/sbin:/bin:/sbin");
}

}  // namespace svm
