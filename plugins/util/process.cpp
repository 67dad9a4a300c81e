#include "util/process.h"

#include "util/spawn.h"

#include "util/error.h"
#include "util/fd.h"

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
#include <cstring>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

namespace svm {

namespace {

using Clock = std::chrono::steady_clock;

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

int decode_wait_status(int wstatus) {
    if (WIFEXITED(wstatus)) {
        return WEXITSTATUS(wstatus);
    }
    if (WIFSIGNALED(wstatus)) {
        return 128 + WTERMSIG(wstatus);
    }
    return -1;
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

// Where the bytes of one output stream go.
using Sink = std::function<void(std::string_view)>;

// Keeps the first kMaxCapturedOutput bytes and notes that more came.
Sink bounded_sink(std::string &dst, bool &truncated) {
    return [&dst, &truncated](std::string_view data) {
        const std::size_t room = kMaxCapturedOutput - std::min(dst.size(), kMaxCapturedOutput);
        if (data.size() > room) {
            truncated = true;
        }
        dst.append(data.substr(0, room));
    };
}

// Reads what is available; returns false at end of file or on error.
bool read_some(int fd, const Sink &sink) {
    std::array<char, 8192> buf;
    for (;;) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n > 0) {
            sink(std::string_view(buf.data(), static_cast<std::size_t>(n)));
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
void drain(int fd, const Sink &sink) {
    std::array<char, 8192> buf;
    for (int chunks = 0; chunks < 64; ++chunks) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;
        }
        sink(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    }
}

// A started program, in its own process group. Until it is reaped, destroying this kills the
// group and reaps it: an exception from a sink must not leave a program running or a zombie.
class Child {
  public:
    explicit Child(pid_t pid) : pid_(pid) {}
    Child(const Child &) = delete;
    Child &operator=(const Child &) = delete;
    ~Child() {
        if (pid_ > 0) {
            kill_group();
            wait_for(pid_);
        }
    }

    void kill_group() const {
        kill(-pid_, SIGKILL);
        kill(pid_, SIGKILL);
    }
    // Waits for the program to end; its status as in ProcessResult.
    int reap() { return wait_for(std::exchange(pid_, -1)); }
    // The status if the program has ended, without waiting; -1 also when it cannot be learnt.
    std::optional<int> try_reap() {
        int wstatus = 0;
        const pid_t r = waitpid(pid_, &wstatus, WNOHANG);
        if (r == pid_) {
            pid_ = -1;
            return decode_wait_status(wstatus);
        }
        if (r < 0 && errno != EINTR) {
            pid_ = -1;
            return -1;
        }
        return std::nullopt;
    }

  private:
    pid_t pid_;
};

struct Started {
    std::unique_ptr<Child> child;
    UniqueFd out, err;
};

Started start(const std::vector<std::string> &argv) {
    const std::string program = argv.empty() ? std::string() : argv[0];
    Pipe out = make_pipe(program);
    Pipe err = make_pipe(program);
    SpawnSpec spec;
    spec.argv = argv;
    spec.stdout_fd = out.write.get();
    spec.stderr_fd = err.write.get();
    const pid_t pid = spawn_program(spec);  // throws "cannot run PROGRAM: reason"
    Started started{std::make_unique<Child>(pid), std::move(out.read), std::move(err.read)};
    fcntl(started.out.get(), F_SETFL, O_NONBLOCK);
    fcntl(started.err.get(), F_SETFL, O_NONBLOCK);
    return started;
}

// Feeds the program's output to the sinks until it ends or the deadline passes, then reaps it
// and sets result.status and result.timed_out.
void collect(Started &p, Clock::time_point deadline, const Sink &on_out, const Sink &on_err,
             ProcessResult &result) {
    Child &child = *p.child;
    bool out_open = true, err_open = true;
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
        std::array<pollfd, 2> fds{
            {{out_open ? p.out.get() : -1, POLLIN, 0}, {err_open ? p.err.get() : -1, POLLIN, 0}}};
        int ready = poll(fds.data(), fds.size(), wait_ms);
        if (ready < 0 && errno != EINTR) {
            break;
        }
        if (ready > 0) {
            if (out_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
                out_open = read_some(p.out.get(), on_out);
            }
            if (err_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
                err_open = read_some(p.err.get(), on_err);
            }
            continue;
        }
        if (const std::optional<int> status = child.try_reap()) {
            drain(p.out.get(), on_out);
            drain(p.err.get(), on_err);
            result.status = *status;
            return;
        }
    }

    // The pipes are closed: the program is exiting. Or it timed out.
    while (!result.timed_out) {
        if (const std::optional<int> status = child.try_reap()) {
            result.status = *status;
            return;
        }
        if (Clock::now() >= deadline) {
            result.timed_out = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    child.kill_group();
    child.reap();
    result.status = 128 + SIGKILL;
}

}  // namespace

void LineSplitter::feed(std::string_view bytes) {
    while (!bytes.empty()) {
        const std::size_t nl = bytes.find('\n');
        const std::string_view piece = bytes.substr(0, nl);
        if (nl != std::string_view::npos && partial_.empty() && !cut_ &&
            piece.size() <= kMaxLineLength) {
            on_line_(piece, true);  // the common case: a whole line in the chunk, no copy
        } else {
            const std::size_t room = kMaxLineLength - partial_.size();
            if (piece.size() > room) {
                cut_ = true;
            }
            partial_.append(piece.substr(0, room));
            if (nl == std::string_view::npos) {
                return;
            }
            on_line_(partial_, !cut_);
            partial_.clear();
            cut_ = false;
        }
        bytes.remove_prefix(nl + 1);
    }
}

void LineSplitter::finish() {
    if (!partial_.empty() || cut_) {
        on_line_(partial_, !cut_);
        partial_.clear();
        cut_ = false;
    }
}

ProcessResult run_process(const std::vector<std::string> &argv, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    Started p = start(argv);
    ProcessResult result;
    collect(p, deadline, bounded_sink(result.out, result.out_truncated),
            bounded_sink(result.err, result.err_truncated), result);
    return result;
}

ProcessResult run_process_lines(const std::vector<std::string> &argv,
                                std::chrono::milliseconds timeout, const LineHandler &on_line) {
    const auto deadline = Clock::now() + timeout;
    Started p = start(argv);
    ProcessResult result;
    LineSplitter lines(on_line);
    collect(
        p, deadline, [&lines](std::string_view data) { lines.feed(data); },
        bounded_sink(result.err, result.err_truncated), result);
    // After a timeout the last line is a fragment; the caller refuses the output anyway.
    if (!result.timed_out) {
        lines.finish();
    }
    return result;
}

namespace {

// The child of read_file_with_deadline: system calls only (the parent may have threads).
// Writes 'D' and the file's first `max_bytes`, or 'E' and errno, on `out`; then ends.
[[noreturn]] void read_into_pipe(const char *path, std::size_t max_bytes, int out) {
    setpgid(0, 0);  // a group of its own, as Child kills it
    const int fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        char msg[1 + sizeof err];
        msg[0] = 'E';
        memcpy(msg + 1, &err, sizeof err);
        (void)!write(out, msg, sizeof msg);
        _exit(1);
    }
    (void)!write(out, "D", 1);
    char buf[4096];
    std::size_t left = max_bytes;
    while (left > 0) {
        const ssize_t n = read(fd, buf, std::min(left, sizeof buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0 || write(out, buf, static_cast<std::size_t>(n)) != n) {
            break;
        }
        left -= static_cast<std::size_t>(n);
    }
    _exit(0);
}

}  // namespace

std::string read_file_with_deadline(const std::string &path, std::size_t max_bytes,
                                    std::chrono::milliseconds timeout) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        throw Error("cannot read " + path + ": pipe: " + errno_text(errno));
    }
    UniqueFd in(fds[0]), out(fds[1]);
    const pid_t pid = fork();
    if (pid < 0) {
        throw Error("cannot read " + path + ": fork: " + errno_text(errno));
    }
    if (pid == 0) {
        read_into_pipe(path.c_str(), max_bytes, out.get());
    }
    out = UniqueFd();
    Child child(pid);  // killed and reaped on every way out
    const auto deadline = Clock::now() + timeout;
    std::string got;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        pollfd pfd{in.get(), POLLIN, 0};
        const int ready = left.count() > 0 ? poll(&pfd, 1, static_cast<int>(left.count())) : 0;
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            throw Error("cannot read " + path + ": no answer within " +
                        std::to_string(timeout.count()) + " ms");
        }
        char buf[4096];
        const ssize_t n = read(in.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got.append(buf, static_cast<std::size_t>(n));
        if (got.size() > max_bytes + 1 + sizeof(int)) {
            break;  // the child writes no more than that; never hold more
        }
    }
    child.kill_group();  // it has ended, or says no more
    child.reap();
    if (got.empty()) {
        throw Error("cannot read " + path + ": the reader ended without a word");
    }
    if (got[0] == 'E') {
        int err = 0;
        if (got.size() >= 1 + sizeof err) {
            memcpy(&err, got.data() + 1, sizeof err);
        }
        throw Error("cannot read " + path + ": " + errno_text(err));
    }
    got.erase(0, 1);
    if (got.size() > max_bytes) {
        got.resize(max_bytes);
    }
    return got;
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
