// What both hierarchies share: detection, the checked moves, fresh folders, removal helpers.
// The layouts are in job_cgroup_v1.cpp and job_cgroup_v2.cpp.
#include "vm/job_cgroup.h"
#include "vm/job_cgroup_impl.h"

#include "util/error.h"
#include "util/text.h"

#include <cerrno>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <set>
#include <thread>

namespace svm {

namespace cgroup_impl {

namespace {

// Passes over <proc>/<pid>/task before giving up on a process that keeps starting threads.
constexpr int kThreadPasses = 16;

constexpr std::chrono::milliseconds kRootLockWait{10000};
constexpr std::chrono::milliseconds kPoll{50};

struct DirCloser {
    void operator()(DIR *d) const { closedir(d); }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

std::optional<pid_t> parse_id(std::string_view text) {
    if (text.empty() || text.size() > 9) {
        return std::nullopt;
    }
    pid_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        value = value * 10 + (c - '0');
    }
    return value > 0 ? std::optional<pid_t>(value) : std::nullopt;
}

// The thread ids of `pid`; nothing when the process is gone.
std::optional<std::vector<pid_t>> thread_ids(const std::string &proc, pid_t pid) {
    const std::string dir = proc + "/" + std::to_string(pid) + "/task";
    UniqueDir d(opendir(dir.c_str()));
    if (!d) {
        if (errno == ENOENT || errno == ESRCH) {
            return std::nullopt;
        }
        throw Error("cgroup: cannot list the threads of process " + std::to_string(pid) + " in " +
                    printable(dir) + ": " + errno_text(errno));
    }
    std::vector<pid_t> tids;
    while (const dirent *e = readdir(d.get())) {
        if (const auto tid = parse_id(e->d_name)) {
            tids.push_back(*tid);
        }
    }
    std::sort(tids.begin(), tids.end());
    return tids;
}

// One id per write(2), as cgroup files want: 0, or the errno. Appended (a fake tree's member
// file lists every id written; the kernel's takes each write as one move).
int write_id(int dir_fd, const std::string &path, pid_t id) {
    return write_control(dir_fd, path, std::to_string(id) + "\n", O_APPEND);
}

bool listed(const CgroupDir &dir, std::string_view file, pid_t id) {
    try {
        const auto ids = cgroup_members(dir.path, file);
        return std::find(ids.begin(), ids.end(), id) != ids.end();
    } catch (const Error &) {
        return true;  // cannot tell: assume the worst
    }
}

// Thread by thread into `dir`/tasks (v1), until a pass finds no new thread. A thread whose id
// is no longer this process's after its write but is listed in `dir` is someone else's thread
// that took the id: an Error.
void move_threads(const CgroupDir &dir, const ProcessHandle &who, const std::string &proc,
                  const std::function<void()> &after_write) {
    const std::string path = dir.path + "/tasks";
    const std::string what = who.what() + " (process " + std::to_string(who.pid()) + ")";
    std::set<pid_t> done;
    for (int pass = 0; pass < kThreadPasses; ++pass) {
        const auto tids = thread_ids(proc, who.pid());
        if (!tids || (pass == 0 && tids->empty()) || !who.holds_pid()) {
            throw Error("cgroup: cannot move " + what + " into " + printable(path) +
                        ": the process is gone");
        }
        bool new_thread = false;
        for (const pid_t tid : *tids) {
            if (!done.insert(tid).second) {
                continue;
            }
            new_thread = true;
            const int err = write_id(dir.fd.get(), path, tid);
            if (err == ESRCH) {
                continue;  // the thread ended meanwhile
            }
            if (err != 0) {
                throw Error("cgroup: cannot move thread " + std::to_string(tid) + " of " + what +
                            " into " + printable(path) + ": " + errno_text(err));
            }
            if (after_write) {
                after_write();
            }
            const std::string mine =
                proc + "/" + std::to_string(who.pid()) + "/task/" + std::to_string(tid);
            if (!is_dir(mine) && listed(dir, "tasks", tid)) {
                throw Error("cgroup: thread " + std::to_string(tid) + " of " + what +
                            " ended while it was moved into " + printable(path) +
                            ", and its id is another thread's now");
            }
        }
        if (!new_thread) {
            return;
        }
    }
    throw Error("cgroup: cannot move " + what + " into " + printable(path) + ": it still made " +
                "new threads after " + std::to_string(kThreadPasses) + " passes");
}

}  // namespace

void check_component(std::string_view what, std::string_view name) {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
        name.find('\0') != std::string_view::npos) {
        throw Error("cgroup: " + std::string(what) + " '" + printable(name) +
                    "' cannot be a folder name");
    }
}

bool is_dir(const std::string &path) {
    struct stat st {};
    return lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string read_file(const std::string &path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
        throw Error("cgroup: cannot read " + printable(path) + ": " + errno_text(errno));
    }
    std::string text;
    char buf[4096];
    while (true) {
        const ssize_t n = read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            throw Error("cgroup: cannot read " + printable(path) + ": " + errno_text(errno));
        }
        if (n == 0) {
            return text;
        }
        text.append(buf, static_cast<std::size_t>(n));
    }
}

std::optional<std::string> try_read_file(const std::string &path) {
    try {
        return read_file(path);
    } catch (const Error &) {
        return std::nullopt;
    }
}

bool is_blank(std::string_view text) {
    return text.find_first_not_of(" \t\n") == std::string_view::npos;
}

std::vector<std::string> words_of(std::string_view text) {
    std::vector<std::string> words;
    std::size_t at = 0;
    while ((at = text.find_first_not_of(" \t\n", at)) != std::string_view::npos) {
        const std::size_t end = std::min(text.find_first_of(" \t\n", at), text.size());
        words.emplace_back(text.substr(at, end - at));
        at = end;
    }
    return words;
}

int write_control(int dir_fd, const std::string &path, std::string_view value, int mode_flag) {
    const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | mode_flag;
    UniqueFd fd(dir_fd >= 0 ? openat(dir_fd, path.substr(path.rfind('/') + 1).c_str(), flags, 0644)
                            : open(path.c_str(), flags, 0644));
    if (!fd) {
        return errno;
    }
    ssize_t n;
    do {
        n = write(fd.get(), value.data(), value.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno;
    }
    return n == static_cast<ssize_t>(value.size()) ? 0 : EIO;
}

CgroupDir make_fresh_cgroup(const std::string &parent, std::string_view name) {
    check_component("cgroup name", name);
    const std::string path = parent + "/" + std::string(name);
    if (mkdir(path.c_str(), 0755) != 0) {
        const int err = errno;
        if (err != EEXIST) {
            throw Error("cgroup: cannot make " + printable(path) + ": " + errno_text(err));
        }
        // A leftover of an earlier run, or a folder someone else made to have the VM in a
        // cgroup of theirs: never used as it is.
        if (rmdir(path.c_str()) != 0) {
            throw Error("cgroup: " + printable(path) + " is there already and cannot be removed (" +
                        errno_text(errno) + "): it is not ours to use");
        }
        if (mkdir(path.c_str(), 0755) != 0) {
            throw Error("cgroup: cannot make " + printable(path) + " again: " + errno_text(errno));
        }
    }
    CgroupDir dir{path,
                  UniqueFd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))};
    struct stat st {};
    if (!dir.fd || fstat(dir.fd.get(), &st) != 0) {
        throw Error("cgroup: cannot open " + printable(path) + ": " + errno_text(errno));
    }
    if (st.st_uid != geteuid()) {
        throw Error("cgroup: " + printable(path) + " is uid " + std::to_string(st.st_uid) +
                    "'s, not the one just made");
    }
    fchmod(dir.fd.get(), 0755);  // as Slurm makes its folders, whatever our umask
    return dir;
}

bool move_held_process(const CgroupDir &dir, const ProcessHandle &who, bool by_thread,
                       const std::string &proc, const std::function<void()> &after_write) {
    const std::string path = dir.path + "/cgroup.procs";
    const std::string what = who.what() + " (process " + std::to_string(who.pid()) + ")";
    if (!who.holds_pid()) {
        return false;
    }
    const int err = write_id(dir.fd.get(), path, who.pid());
    if (err == ESRCH) {
        return false;  // it ended (a zombie cannot be moved)
    }
    if (err != 0) {
        if (!by_thread) {
            throw Error("cgroup: cannot move " + what + " into " + printable(path) + ": " +
                        errno_text(err));
        }
        try {
            move_threads(dir, who, proc, after_write);
        } catch (const Error &e) {
            throw Error("cgroup: cannot move " + what + " into " + printable(path) + ": " +
                        errno_text(err) + "; thread by thread: " + e.what());
        }
        return true;
    }
    if (after_write) {
        after_write();
    }
    // Still not reaped: its pid was never free, so the write moved this very process. Reaped:
    // it ended after the move, or before it and its pid went to a process that is now in `dir`.
    if (!who.holds_pid() && listed(dir, "cgroup.procs", who.pid())) {
        throw Error("cgroup: " + what + " ended while it was moved into " + printable(path) +
                    ", and its pid is another process's now");
    }
    return true;
}

void move_processes(const CgroupDir &dir, const std::vector<ProcessHandle> &processes,
                    bool by_thread, const std::string &proc) {
    for (const ProcessHandle &p : processes) {
        if (!move_held_process(dir, p, by_thread, proc)) {
            throw Error(p.what() + " (process " + std::to_string(p.pid()) +
                        ") ended before it was moved into " + printable(dir.path));
        }
        for (const ProcessIdentity &child : process_descendants(p.pid(), proc)) {
            std::optional<ProcessHandle> held;
            try {
                held.emplace(ProcessHandle::open(
                    child, "child of process " + std::to_string(p.pid()), proc));
            } catch (const Error &) {
                continue;  // it ended meanwhile
            }
            move_held_process(dir, *held, by_thread, proc);
        }
    }
}

bool remove_folder(const std::string &path, CgroupCleanup &report, std::string &why) {
    if (rmdir(path.c_str()) == 0) {
        report.removed.push_back(path);
        return true;
    }
    const int err = errno;
    if (err == ENOENT) {
        return true;
    }
    why = errno_text(err);
    return false;
}

bool remove_vm_folders(const std::vector<std::string> &vm_folders,
                       std::chrono::steady_clock::time_point deadline, CgroupCleanup &report,
                       bool &left) {
    bool had_vm = false;
    for (const std::string &folder : vm_folders) {
        if (!is_dir(folder)) {
            continue;
        }
        had_vm = true;
        // QEMU is gone by now; a virtiofsd may still be ending, and an exited process keeps its
        // cgroup busy until its parent reaps it.
        std::string why;
        while (!remove_folder(folder, report, why)) {
            if (std::chrono::steady_clock::now() >= deadline) {
                report.problems.push_back("cgroup: " + printable(folder) +
                                          " is still in use: " + why);
                left = true;
                break;
            }
            std::this_thread::sleep_for(kPoll);
        }
    }
    return had_vm;
}

std::vector<std::string> subfolders(const std::string &dir, std::string_view prefix) {
    std::vector<std::string> names;
    UniqueDir d(opendir(dir.c_str()));
    if (!d) {
        return names;
    }
    while (const dirent *e = readdir(d.get())) {
        const std::string_view name = e->d_name;
        if (name.starts_with(prefix) && name != "." && name != ".." &&
            is_dir(dir + "/" + std::string(name))) {
            names.emplace_back(name);
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

RootLock::RootLock(const std::string &root)
    : fd_(open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    const auto deadline = std::chrono::steady_clock::now() + kRootLockWait;
    while (fd_) {
        if (flock(fd_.get(), LOCK_EX | LOCK_NB) == 0) {
            locked_ = true;
            return;
        }
        if ((errno != EWOULDBLOCK && errno != EINTR) ||
            std::chrono::steady_clock::now() >= deadline) {
            return;
        }
        std::this_thread::sleep_for(kPoll);
    }
}

RootLock::~RootLock() {
    if (locked_) {
        flock(fd_.get(), LOCK_UN);
    }
}

}  // namespace cgroup_impl

using namespace cgroup_impl;

const char *to_string(CgroupVersion version) {
    return version == CgroupVersion::V2 ? "cgroup v2" : "cgroup v1";
}

CgroupVersion detect_cgroup_version(const std::string &mount) {
    // The root of a cgroup2 mount has cgroup.controllers; the tmpfs that holds v1 hierarchies
    // (and maybe a cgroup2 at unified/) does not. Slurm's autodetect asks statfs the same.
    struct stat st {};
    return lstat((mount + "/cgroup.controllers").c_str(), &st) == 0 && S_ISREG(st.st_mode)
               ? CgroupVersion::V2
               : CgroupVersion::V1;
}

std::unique_ptr<JobCgroups> JobCgroups::for_node(const CgroupRoots &roots) {
    return detect_cgroup_version(roots.mount) == CgroupVersion::V2 ? v2(roots) : v1(roots);
}

std::optional<std::string> find_task_cgroup(const std::string &folder) {
    struct stat st {};
    if (stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        throw Error("cgroup: cannot list " + printable(folder) + ": " +
                    errno_text(S_ISDIR(st.st_mode) || st.st_mode == 0 ? errno : ENOTDIR));
    }
    std::vector<std::string> tasks;
    for (const std::string &name : subfolders(folder, "task_")) {
        const std::string_view index = std::string_view(name).substr(5);
        if (!index.empty() && index.find_first_not_of("0123456789") == std::string_view::npos) {
            tasks.push_back(name);  // not task_special: the adopted processes of pam_slurm_adopt
        }
    }
    if (tasks.empty()) {
        return std::nullopt;
    }
    if (tasks.size() > 1) {
        throw Error("cgroup: " + printable(folder) + " has " + std::to_string(tasks.size()) +
                    " task folders (" + tasks[0] + ", " + tasks[1] + "), an extern step has one");
    }
    return folder + "/" + tasks[0];
}

std::vector<pid_t> cgroup_members(const std::string &folder, std::string_view file) {
    const std::string text = read_file(folder + "/" + std::string(file));
    std::vector<pid_t> ids;
    for (const std::string &word : words_of(text)) {
        const auto id = parse_id(word);
        if (!id) {
            throw Error("cgroup: " + printable(folder + "/" + std::string(file)) + ": '" +
                        printable(word) + "' is not a process id");
        }
        ids.push_back(*id);
    }
    return ids;
}

VmCgroupPlacement move_into_vm_cgroups(const VmCgroupPlan &plan,
                                       const std::vector<ProcessHandle> &processes,
                                       const std::string &proc) {
    VmCgroupPlacement placement;
    for (const VmCgroupTarget &target : plan.targets) {
        const std::string context =
            "cannot move the VM into the job's " + target.label + " cgroup: ";
        try {
            const CgroupDir dir = make_fresh_cgroup(target.parent, kVmCgroupName);
            placement.folders.emplace_back(target.label, dir.path);
            if (target.cpuset) {
                // A new v1 cpuset has no CPUs and takes no task until it has some.
                for (const char *file : {"cpuset.cpus", "cpuset.mems"}) {
                    const std::string value = read_file(target.parent + "/" + file);
                    if (const int err = write_control(dir.fd.get(), dir.path + "/" + file, value)) {
                        throw Error("cgroup: cannot write '" + printable(value) + "' to " +
                                    printable(dir.path + "/" + file) + ": " + errno_text(err));
                    }
                }
            }
            if (target.charges) {
                const std::string file = dir.path + "/memory.move_charge_at_immigrate";
                if (const int err = write_control(dir.fd.get(), file, "3")) {
                    // The same words on every job of a host, so that the node's log can say it
                    // once.
                    placement.notes.push_back(
                        "this kernel does not move memory charges with a process "
                        "(memory.move_charge_at_immigrate: " +
                        errno_text(err) +
                        "): the memory a VM used before it joined the job's cgroup stays "
                        "charged where it was (libvirt's), and is not in the job's accounting "
                        "or limit");
                }
            }
            move_processes(dir, processes, target.by_thread, proc);
        } catch (const Error &e) {
            throw Error(context + e.what());
        }
    }
    for (const std::string &folder : plan.vacated) {
        // Empty now; its memory stays charged to it, and so to the job's folder above it, until
        // freed. A process still ending keeps it: the epilog removes it then.
        rmdir(folder.c_str());
    }
    return placement;
}

void move_into_cgroup(const std::string &folder, const std::vector<ProcessHandle> &processes,
                      const std::string &proc) {
    const CgroupDir dir{
        folder, UniqueFd(open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))};
    if (!dir.fd) {
        throw Error("cgroup: cannot open " + printable(folder) + ": " + errno_text(errno));
    }
    move_processes(dir, processes, false, proc);
}

}  // namespace svm
