#include "vm/job_cgroup.h"

#include "util/error.h"
#include "util/fd.h"
#include "util/text.h"

#include "vm/vm_processes.h"

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

namespace {

// Passes over <proc>/<pid>/task before giving up on a process that keeps starting threads.
constexpr int kThreadPasses = 16;

// How long the epilog waits for Slurm's lock of a controller before it leaves the job's
// folders to Slurm (it holds the lock for the few rmdir and mkdir of a step's start or end).
constexpr std::chrono::milliseconds kRootLockWait{10000};
constexpr std::chrono::milliseconds kPoll{50};

void check_component(std::string_view what, std::string_view name) {
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
        name.find('\0') != std::string_view::npos) {
        throw Error("cgroup: " + std::string(what) + " '" + printable(name) +
                    "' cannot be a folder name");
    }
}

struct DirCloser {
    void operator()(DIR *d) const { closedir(d); }
};
using UniqueDir = std::unique_ptr<DIR, DirCloser>;

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

bool is_blank(std::string_view text) {
    return text.find_first_not_of(" \t\n") == std::string_view::npos;
}

// Opens a member file (cgroup.procs, tasks) for writing; its absence means `folder` is no cgroup.
UniqueFd open_members(const std::string &path) {
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
        throw Error("cgroup: cannot open " + printable(path) + ": " + errno_text(errno));
    }
    return fd;
}

// One id per write(2), as cgroup files want. errno on failure, 0 on success.
int write_id(int fd, pid_t id) {
    const std::string text = std::to_string(id) + "\n";
    ssize_t n;
    do {
        n = write(fd, text.data(), text.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return errno;
    }
    return n == static_cast<ssize_t>(text.size()) ? 0 : EIO;
}

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

}  // namespace

std::vector<std::string> extern_step_cgroup_candidates(std::string_view mount,
                                                       std::string_view controller,
                                                       std::string_view node, uint32_t uid,
                                                       uint32_t jobid) {
    check_component("controller", controller);
    check_component("node name", node);
    const std::string base = std::string(mount) + "/" + std::string(controller) + "/";
    const std::string tail =
        "/uid_" + std::to_string(uid) + "/job_" + std::to_string(jobid) + "/step_extern";
    return {base + "slurm_" + std::string(node) + tail, base + "slurm" + tail};
}

std::optional<std::string> find_extern_step_cgroup(std::string_view mount,
                                                   std::string_view controller,
                                                   std::string_view node, uint32_t uid,
                                                   uint32_t jobid) {
    for (const std::string &path :
         extern_step_cgroup_candidates(mount, controller, node, uid, jobid)) {
        if (is_dir(path)) {
            return path;
        }
    }
    return std::nullopt;
}

std::map<std::string, std::string> find_extern_step_cgroups(
    std::string_view mount, const std::vector<std::string> &controllers, std::string_view node,
    uint32_t uid, uint32_t jobid) {
    std::map<std::string, std::string> found;
    for (const std::string &controller : controllers) {
        const auto path = find_extern_step_cgroup(mount, controller, node, uid, jobid);
        if (!path) {
            const auto tried = extern_step_cgroup_candidates(mount, controller, node, uid, jobid);
            throw Error("cgroup: job " + std::to_string(jobid) + " has no extern step on " +
                        printable(node) + " in the " + controller + " hierarchy (tried " +
                        printable(tried[0]) + " and " + printable(tried[1]) +
                        "); is PrologFlags=Contain set and a cgroup plugin using " + controller +
                        " configured?");
        }
        found[controller] = *path;
    }
    return found;
}

std::optional<std::string> find_extern_task_cgroup(const std::string &step_dir) {
    UniqueDir d(opendir(step_dir.c_str()));
    if (!d) {
        throw Error("cgroup: cannot list " + printable(step_dir) + ": " + errno_text(errno));
    }
    std::vector<std::string> tasks;
    while (const dirent *e = readdir(d.get())) {
        const std::string_view name = e->d_name;
        const std::string_view index = name.substr(std::min<std::size_t>(name.size(), 5));
        if (name.starts_with("task_") && !index.empty() &&
            index.find_first_not_of("0123456789") == std::string_view::npos) {
            if (is_dir(step_dir + "/" + std::string(name))) {
                tasks.emplace_back(name);
            }
        }
    }
    if (tasks.empty()) {
        return std::nullopt;
    }
    if (tasks.size() > 1) {
        std::sort(tasks.begin(), tasks.end());
        throw Error("cgroup: " + printable(step_dir) + " has " + std::to_string(tasks.size()) +
                    " task folders (" + tasks[0] + ", " + tasks[1] + "), an extern step has one");
    }
    return step_dir + "/" + tasks[0];
}

void write_cgroup_file(const std::string &folder, std::string_view name, std::string_view value) {
    const std::string path = folder + "/" + std::string(name);
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    ssize_t n = -1;
    if (fd) {
        do {
            n = write(fd.get(), value.data(), value.size());
        } while (n < 0 && errno == EINTR);
    }
    if (n != static_cast<ssize_t>(value.size())) {
        const int err = n < 0 ? errno : EIO;
        throw Error("cgroup: cannot write '" + printable(value) + "' to " + printable(path) + ": " +
                    errno_text(err));
    }
}

std::string make_child_cgroup(const std::string &parent, std::string_view name) {
    check_component("cgroup name", name);
    const std::string child = parent + "/" + std::string(name);
    if (mkdir(child.c_str(), 0755) != 0 && !(errno == EEXIST && is_dir(child))) {
        throw Error("cgroup: cannot make " + printable(child) + ": " + errno_text(errno));
    }
    struct stat st {};
    if (lstat((parent + "/cpuset.cpus").c_str(), &st) == 0) {
        for (const char *file : {"cpuset.cpus", "cpuset.mems"}) {
            const std::string mine = child + "/" + file;
            if (lstat(mine.c_str(), &st) != 0 || is_blank(read_file(mine))) {
                write_cgroup_file(child, file, read_file(parent + "/" + file));
            }
        }
    }
    return child;
}

void move_to_cgroup(const std::string &folder, pid_t pid, CgroupMove how, const std::string &proc) {
    if (pid <= 0) {
        throw Error("cgroup: cannot move process " + std::to_string(pid) + " into " +
                    printable(folder) + ": not a process id");
    }
    const std::string what = "process " + std::to_string(pid);
    if (how == CgroupMove::Process) {
        const std::string path = folder + "/cgroup.procs";
        const UniqueFd fd = open_members(path);
        if (const int err = write_id(fd.get(), pid)) {
            throw Error("cgroup: cannot move " + what + " into " + printable(path) + ": " +
                        (err == ESRCH ? std::string("the process is gone") : errno_text(err)));
        }
        return;
    }
    const std::string path = folder + "/tasks";
    const UniqueFd fd = open_members(path);
    std::set<pid_t> done;
    for (int pass = 0; pass < kThreadPasses; ++pass) {
        const auto tids = thread_ids(proc, pid);
        if (!tids || (pass == 0 && tids->empty())) {
            throw Error("cgroup: cannot move " + what + " into " + printable(path) +
                        ": the process is gone");
        }
        bool new_thread = false;
        for (const pid_t tid : *tids) {
            if (!done.insert(tid).second) {
                continue;
            }
            new_thread = true;
            const int err = write_id(fd.get(), tid);
            if (err != 0 && err != ESRCH) {  // ESRCH: the thread ended meanwhile
                throw Error("cgroup: cannot move thread " + std::to_string(tid) + " of " + what +
                            " into " + printable(path) + ": " + errno_text(err));
            }
        }
        if (!new_thread) {
            return;
        }
    }
    throw Error("cgroup: cannot move " + what + " into " + printable(path) + ": it still made " +
                "new threads after " + std::to_string(kThreadPasses) + " passes");
}

std::vector<pid_t> cgroup_members(const std::string &folder, std::string_view file) {
    const std::string text = read_file(folder + "/" + std::string(file));
    std::vector<pid_t> ids;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) {
            end = text.size();
        }
        const std::string_view line(text.data() + start, end - start);
        if (!line.empty()) {
            const auto id = parse_id(line);
            if (!id) {
                throw Error("cgroup: " + printable(folder + "/" + std::string(file)) + ": '" +
                            printable(line) + "' is not a process id");
            }
            ids.push_back(*id);
        }
        start = end + 1;
    }
    return ids;
}

namespace {

// One write of `value` to an existing control file: 0, or the errno.
int write_control(const std::string &path, std::string_view value) {
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
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

bool process_exists(const std::string &proc, pid_t pid) {
    struct stat st {};
    return lstat((proc + "/" + std::to_string(pid)).c_str(), &st) == 0;
}

// One process into `folder`: the whole thread group at once, else thread by thread (a kernel or
// a cgroup that refuses cgroup.procs).
void move_process(const std::string &folder, pid_t pid, const std::string &proc) {
    try {
        move_to_cgroup(folder, pid, CgroupMove::Process, proc);
    } catch (const Error &first) {
        try {
            move_to_cgroup(folder, pid, CgroupMove::Threads, proc);
        } catch (const Error &) {
            throw first;
        }
    }
}

std::vector<std::string> task_folders(const std::string &step_dir) {
    std::vector<std::string> tasks;
    UniqueDir d(opendir(step_dir.c_str()));
    if (!d) {
        return tasks;
    }
    while (const dirent *e = readdir(d.get())) {
        const std::string_view name = e->d_name;
        if (name.starts_with("task_") && is_dir(step_dir + "/" + std::string(name))) {
            tasks.emplace_back(name);
        }
    }
    std::sort(tasks.begin(), tasks.end());
    return tasks;
}

// rmdir: true when the folder is gone (removed now or already), false when it is in use (a
// cgroup with members or children says EBUSY; a plain folder with files, ENOTEMPTY).
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

// Slurm's lock of a controller's hierarchy (common_cgroup_lock on the root cgroup).
class RootLock {
  public:
    explicit RootLock(const std::string &root)
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
    RootLock(const RootLock &) = delete;
    RootLock &operator=(const RootLock &) = delete;
    ~RootLock() {
        if (locked_) {
            flock(fd_.get(), LOCK_UN);
        }
    }
    bool locked() const { return locked_; }

  private:
    UniqueFd fd_;
    bool locked_ = false;
};

}  // namespace

VmCgroupPlan plan_vm_cgroups(std::string_view mount, const std::vector<std::string> &controllers,
                             std::string_view node, uint32_t uid, uint32_t jobid) {
    VmCgroupPlan plan;
    for (const std::string &controller : controllers) {
        const auto step = find_extern_step_cgroup(mount, controller, node, uid, jobid);
        if (!step) {
            plan.missing.push_back(controller);
            continue;
        }
        std::string parent = *step;
        if (controller == "cpuacct" || controller == "memory") {
            if (const auto task = find_extern_task_cgroup(*step)) {
                parent = *task;
            }
        }
        plan.parents.emplace_back(controller, parent);
    }
    return plan;
}

VmCgroupPlacement move_into_vm_cgroups(const VmCgroupPlan &plan,
                                       const std::vector<pid_t> &processes,
                                       const std::string &proc) {
    VmCgroupPlacement placement;
    for (const auto &[controller, parent] : plan.parents) {
        const std::string folder = make_child_cgroup(parent, kVmCgroupName);
        placement.folders.emplace_back(controller, folder);
        if (controller == "memory") {
            if (const int err = write_control(folder + "/memory.move_charge_at_immigrate", "3")) {
                // The same words on every job of a host, so that the node's log can say it once.
                placement.notes.push_back(
                    "this kernel does not move memory charges with a process "
                    "(memory.move_charge_at_immigrate: " +
                    errno_text(err) +
                    "): the memory a VM used before it joined the job's cgroup stays charged "
                    "where it was (libvirt's), and is not in the job's accounting or limit");
            }
        }
        for (const pid_t pid : processes) {
            try {
                move_process(folder, pid, proc);
                for (const pid_t child : process_descendants(pid, proc)) {
                    try {
                        move_process(folder, child, proc);
                    } catch (const Error &) {
                        if (process_exists(proc, child)) {
                            throw;
                        }
                    }
                }
            } catch (const Error &e) {
                throw Error("cannot move the VM into the job's " + controller +
                            " cgroup: " + e.what());
            }
        }
    }
    return placement;
}

CgroupCleanup remove_vm_cgroups(std::string_view mount, const std::vector<std::string> &controllers,
                                std::string_view node, uint32_t uid, uint32_t jobid,
                                std::chrono::milliseconds wait) {
    CgroupCleanup report;
    // One wait for all: a VM that is still there (its stop failed) costs the epilog `wait` once.
    const auto deadline = std::chrono::steady_clock::now() + wait;
    for (const std::string &controller : controllers) {
        std::vector<std::string> steps;
        try {
            steps = extern_step_cgroup_candidates(mount, controller, node, uid, jobid);
        } catch (const Error &e) {
            report.problems.push_back(e.what());
            continue;
        }
        for (const std::string &step : steps) {
            if (!is_dir(step)) {
                continue;
            }
            std::vector<std::string> vm_folders;
            for (const std::string &task : task_folders(step)) {
                vm_folders.push_back(step + "/" + task + "/" + std::string(kVmCgroupName));
            }
            vm_folders.push_back(step + "/" + std::string(kVmCgroupName));
            bool had_vm = false, vm_left = false;
            for (const std::string &folder : vm_folders) {
                if (!is_dir(folder)) {
                    continue;
                }
                had_vm = true;
                // QEMU is gone by now; a virtiofsd may still be ending, and an exited process
                // keeps its cgroup busy until its parent reaps it.
                std::string why;
                while (!remove_folder(folder, report, why)) {
                    if (std::chrono::steady_clock::now() >= deadline) {
                        report.problems.push_back("cgroup: " + printable(folder) +
                                                  " is still in use: " + why);
                        vm_left = true;
                        break;
                    }
                    std::this_thread::sleep_for(kPoll);
                }
            }
            if (!had_vm || vm_left) {
                continue;  // nothing of ours kept Slurm from removing the rest
            }
            // step is <mount>/<controller>/<prepend>/uid_<uid>/job_<jobid>/step_extern.
            const std::string job = step.substr(0, step.rfind('/'));
            const std::string user = job.substr(0, job.rfind('/'));
            const RootLock lock(std::string(mount) + "/" + controller);
            if (!lock.locked()) {
                report.problems.push_back("cgroup: cannot lock " + std::string(mount) + "/" +
                                          controller + "; left " + printable(step) +
                                          " and its parents to Slurm");
                continue;
            }
            std::string why;
            bool gone = true;
            for (const std::string &task : task_folders(step)) {
                gone = remove_folder(step + "/" + task, report, why) && gone;
            }
            // Each level only once the one below is gone; the job's or user's folder in use by
            // another step or job is theirs to remove.
            gone = gone && remove_folder(step, report, why);
            gone = gone && remove_folder(job, report, why);
            gone = gone && remove_folder(user, report, why);
        }
    }
    return report;
}

}  // namespace svm
