#include "vm/vm_processes.h"

#include "util/atomic_file.h"
#include "util/error.h"
#include "util/process.h"
#include "util/text.h"

#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>

namespace svm {

namespace {

// QEMU's command line is a few KiB; libvirt puts -name guest=... near its start.
constexpr std::size_t kMaxCmdline = 256 * 1024;
constexpr std::chrono::milliseconds kCmdlineTimeout{2000};

struct DirCloser {
    void operator()(DIR *d) const { closedir(d); }
};

std::optional<uint64_t> parse_number(std::string_view text) {
    uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
        return std::nullopt;
    }
    return value;
}

// The fields of <proc>/<pid>/stat after the command name, which may hold spaces and ')':
// field 3 (state) is the first. Nothing when the process is gone or the line is not one.
std::optional<std::vector<std::string_view>> stat_fields(const std::string &text) {
    const std::size_t close = text.rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::vector<std::string_view> fields;
    std::string_view rest = std::string_view(text).substr(close + 1);
    while (!rest.empty()) {
        const std::size_t start = rest.find_first_not_of(" \n");
        if (start == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(start);
        const std::size_t end = rest.find_first_of(" \n");
        fields.push_back(rest.substr(0, end));
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
    }
    return fields;
}

std::optional<std::string> read_stat(const std::string &proc, pid_t pid) {
    try {
        return read_whole_file(proc + "/" + std::to_string(pid) + "/stat");
    } catch (const Error &) {
        return std::nullopt;  // gone (or never was)
    }
}

std::string pid_text(pid_t pid) {
    return "process " + std::to_string(pid);
}

}  // namespace

uint64_t process_start_ticks(pid_t pid, const std::string &proc) {
    const auto text = read_stat(proc, pid);
    if (!text) {
        throw Error(pid_text(pid) + " is gone");
    }
    const auto fields = stat_fields(*text);
    // Field 22 (starttime) is the 20th after the command name.
    const auto start = fields && fields->size() >= 20 ? parse_number((*fields)[19]) : std::nullopt;
    if (!start) {
        throw Error("cannot read the start time of " + pid_text(pid) + " from " + proc + "/" +
                    std::to_string(pid) + "/stat");
    }
    return *start;
}

bool runs_guest(pid_t pid, std::string_view domain, const std::string &proc) {
    std::string cmdline;
    try {
        // The process is the job's user's (QEMU runs as them): reading its command line waits
        // for its memory map, which the user can keep busy (userfaultfd), so it has a deadline.
        cmdline = read_file_with_deadline(proc + "/" + std::to_string(pid) + "/cmdline",
                                          kMaxCmdline, kCmdlineTimeout);
    } catch (const Error &) {
        return false;
    }
    const std::string want = "guest=" + std::string(domain);
    std::string_view rest = cmdline;
    while (!rest.empty()) {
        const std::size_t nul = rest.find('\0');
        const std::string_view arg = rest.substr(0, nul);
        if (arg == want || (arg.starts_with(want) && arg[want.size()] == ',')) {
            return true;
        }
        rest.remove_prefix(nul == std::string_view::npos ? rest.size() : nul + 1);
    }
    return false;
}

ProcessIdentity find_qemu(std::string_view domain, const std::string &libvirt_run,
                          const std::string &proc) {
    const std::string pidfile = libvirt_run + "/" + std::string(domain) + ".pid";
    std::string text;
    try {
        text = read_whole_file(pidfile);
    } catch (const Error &e) {
        throw Error("no QEMU pid for domain " + std::string(domain) + ": " + e.what());
    }
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
        text.pop_back();
    }
    const auto pid = parse_number(text);
    if (!pid || *pid == 0 || *pid > 0x3fffffff) {
        throw Error("no QEMU pid for domain " + std::string(domain) + ": " + pidfile + " holds '" +
                    printable(text.substr(0, 32)) + "'");
    }
    ProcessIdentity qemu{static_cast<pid_t>(*pid), 0};
    // The start time first: a process that starts after this check has another one.
    try {
        qemu.start_ticks = process_start_ticks(qemu.pid, proc);
    } catch (const Error &e) {
        throw Error("no QEMU for domain " + std::string(domain) + " (" + pidfile +
                    "): " + e.what());
    }
    if (!runs_guest(qemu.pid, domain, proc)) {
        throw Error("no QEMU for domain " + std::string(domain) + ": " + pid_text(qemu.pid) +
                    " (from " + pidfile + ") does not run guest=" + std::string(domain));
    }
    return qemu;
}

void check_same_process(const ProcessIdentity &who, const std::string &what,
                        const std::string &proc) {
    uint64_t start = 0;
    try {
        start = process_start_ticks(who.pid, proc);
    } catch (const Error &e) {
        throw Error(what + " (" + pid_text(who.pid) + ") is not running: " + e.what());
    }
    if (start != who.start_ticks) {
        throw Error(what + " (" + pid_text(who.pid) + ") is not running: pid " +
                    std::to_string(who.pid) + " is another process now (started at tick " +
                    std::to_string(start) + ", not " + std::to_string(who.start_ticks) + ")");
    }
}

std::vector<ProcessIdentity> process_descendants(pid_t pid, const std::string &proc) {
    std::unique_ptr<DIR, DirCloser> d(opendir(proc.c_str()));
    if (!d) {
        throw Error("cannot list " + proc + ": " + errno_text(errno));
    }
    // parent -> child, with the child's start time from the same read as its parent id: a child
    // that ends and whose pid is reused by then has another start time, and is not taken.
    std::multimap<pid_t, ProcessIdentity> children;
    while (const dirent *e = readdir(d.get())) {
        const auto id = parse_number(e->d_name);
        if (!id || *id == 0 || *id > 0x3fffffff) {
            continue;
        }
        const auto text = read_stat(proc, static_cast<pid_t>(*id));
        const auto fields = text ? stat_fields(*text) : std::nullopt;
        if (!fields || fields->size() < 20) {
            continue;
        }
        const auto parent = parse_number((*fields)[1]);
        const auto start = parse_number((*fields)[19]);  // field 22, as process_start_ticks
        if (parent && start) {
            children.emplace(static_cast<pid_t>(*parent),
                             ProcessIdentity{static_cast<pid_t>(*id), *start});
        }
    }
    std::vector<ProcessIdentity> found;
    std::set<pid_t> seen{pid};  // parent ids read at different moments may form a loop
    std::vector<pid_t> todo{pid};
    while (!todo.empty()) {
        const pid_t parent = todo.back();
        todo.pop_back();
        const auto [first, last] = children.equal_range(parent);
        for (auto it = first; it != last; ++it) {
            if (seen.insert(it->second.pid).second) {
                found.push_back(it->second);
                todo.push_back(it->second.pid);
            }
        }
    }
    return found;
}

ProcessHandle ProcessHandle::open(const ProcessIdentity &who, const std::string &what,
                                  const std::string &proc) {
    if (who.pid <= 0) {
        throw Error(what + ": no process id");
    }
    UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_open, who.pid, 0)));
    if (!fd) {
        if (errno == ESRCH) {
            throw Error(what + " (" + pid_text(who.pid) + ") is not running");
        }
        throw Error("cannot open a pidfd on " + what + " (" + pid_text(who.pid) +
                    "): " + errno_text(errno));
    }
    // After the pidfd: if the pid still has the start time, the pidfd is that process's.
    check_same_process(who, what, proc);
    return ProcessHandle(who.pid, what, std::move(fd));
}

bool ProcessHandle::holds_pid() const {
    // Signal 0 checks only that the process exists; a zombie does, until it is reaped.
    return syscall(SYS_pidfd_send_signal, fd_.get(), 0, nullptr, 0) == 0 || errno == EPERM;
}

}  // namespace svm
