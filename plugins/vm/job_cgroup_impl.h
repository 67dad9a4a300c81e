// What the cgroup v1 and v2 layouts of vm/job_cgroup.h share: file helpers, fresh folders of
// ours, the checked move of one process, and Slurm's lock. Not for callers outside job_cgroup*.cpp
// (tests excepted).
#pragma once

#include "vm/job_cgroup.h"

#include "util/fd.h"

#include <fcntl.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace svm::cgroup_impl {

// Throws Error unless `name` is one folder name ("", ".", "..", '/' and NUL are not).
void check_component(std::string_view what, std::string_view name);

// A folder (not a link to one).
bool is_dir(const std::string &path);

// The file's text; throws Error naming it.
std::string read_file(const std::string &path);

// The file's text, or nothing when it cannot be read.
std::optional<std::string> try_read_file(const std::string &path);

bool is_blank(std::string_view text);

// The words of a space-separated cgroup file (cgroup.controllers, cgroup.subtree_control).
std::vector<std::string> words_of(std::string_view text);

// One write of `value` to the file `path` (opened at the folder's descriptor `dir_fd` by its last
// component, or by path when dir_fd < 0), truncated, or appended to with O_APPEND as
// `mode_flag`: 0, or the errno. O_CREAT lets fake trees stand in for the kernel's; cgroupfs only
// ever opens the files it has.
int write_control(int dir_fd, const std::string &path, std::string_view value,
                  int mode_flag = O_TRUNC);

// A cgroup folder made by us: its path, and its descriptor, so that what we write goes into the
// very folder we made, whatever is renamed above it (v1's step folders are the user's).
struct CgroupDir {
    std::string path;
    UniqueFd fd;
};

// Makes `<parent>/<name>` anew, root's: a folder there already (a leftover, or someone else's)
// is removed first; one that cannot be removed (it has processes or children: a real cgroup
// says EBUSY) is an Error, and so is one made again meanwhile. Throws Error naming it.
CgroupDir make_fresh_cgroup(const std::string &parent, std::string_view name);

// Moves `who` into `dir` (cgroup.procs: every thread at once), checking its pidfd around the
// write: a process that no longer holds its pid after the write may have handed it to another
// process, which would then be in `dir`. With `by_thread`, a process cgroup.procs refuses goes
// thread by thread (v1's tasks). `after_write` runs right after each write (tests). Returns
// false when the process ended before it was moved (nothing of it was moved); throws Error
// naming it, the file and the reason otherwise.
bool move_held_process(const CgroupDir &dir, const ProcessHandle &who, bool by_thread,
                       const std::string &proc, const std::function<void()> &after_write = {});

// Moves each of `processes` and their descendants (each held by a pidfd in turn) into `dir`.
// The processes must be moved; a descendant that ends meanwhile is skipped. Throws Error.
void move_processes(const CgroupDir &dir, const std::vector<ProcessHandle> &processes,
                    bool by_thread, const std::string &proc);

// rmdir: true when the folder is gone (removed now, noted in `report`, or already), false when it
// is in use, with the reason in `why` (a cgroup with members or children says EBUSY; a plain
// folder with files, ENOTEMPTY).
bool remove_folder(const std::string &path, CgroupCleanup &report, std::string &why);

// Removes each folder of `vm_folders` that exists, retrying until `deadline` while it is in use
// (an exited process keeps its cgroup busy until it is reaped). Returns whether any existed;
// `left` is set when one could not be removed (and said so in `report`).
bool remove_vm_folders(const std::vector<std::string> &vm_folders,
                       std::chrono::steady_clock::time_point deadline, CgroupCleanup &report,
                       bool &left);

// The names of the folders in `dir` that start with `prefix`, sorted; none when it cannot be
// listed.
std::vector<std::string> subfolders(const std::string &dir, std::string_view prefix);

// Slurm's lock of a cgroup tree: flock(LOCK_EX) on the folder, as common_cgroup_lock does on the
// root of its tree, waited for up to 10 s (Slurm holds it for the few mkdir and rmdir of a step's
// start or end).
class RootLock {
  public:
    explicit RootLock(const std::string &root);
    RootLock(const RootLock &) = delete;
    RootLock &operator=(const RootLock &) = delete;
    ~RootLock();
    bool locked() const { return locked_; }

  private:
    UniqueFd fd_;
    bool locked_ = false;
};

}  // namespace svm::cgroup_impl
