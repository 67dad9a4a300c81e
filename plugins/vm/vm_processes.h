// Which host processes are a job VM's: QEMU (libvirt's pid file, checked against QEMU's command
// line), the VM's virtiofsd, and their children. Root moves them into the job's cgroups
// (vm/job_cgroup.h), so each is named by its pid *and* its start time, and held by a pidfd
// while it is moved: a process that ended and whose pid was reused is never taken for it. Free
// of Slurm and of libvirt's API; /proc and libvirt's run folder are injectable for tests.
#pragma once

#include "util/fd.h"

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

// libvirt's QEMU driver writes <this>/<domain>.pid for each running domain (qemu:///system).
inline constexpr std::string_view kLibvirtQemuRunDir = "/run/libvirt/qemu";

// A process as it was when it was seen: its pid and its start time (field 22 of
// /proc/<pid>/stat, clock ticks after boot). pid 0: none.
struct ProcessIdentity {
    pid_t pid = 0;
    uint64_t start_ticks = 0;
};

// The start time of process `pid`. Throws Error when there is no such process.
uint64_t process_start_ticks(pid_t pid, const std::string &proc = "/proc");

// Whether `pid` is QEMU of libvirt domain `domain`: one of its arguments is
// `guest=<domain>` or starts with `guest=<domain>,` (libvirt's `-name guest=D,debug-threads=on`).
// False also when its command line does not come within 2 s (the process is the user's).
bool runs_guest(pid_t pid, std::string_view domain, const std::string &proc = "/proc");

// The QEMU process of `domain`: the pid in `<libvirt_run>/<domain>.pid`, which must be a process
// that runs_guest(domain). Throws Error naming the pid file or the process and why not.
ProcessIdentity find_qemu(std::string_view domain,
                          const std::string &libvirt_run = std::string(kLibvirtQemuRunDir),
                          const std::string &proc = "/proc");

// Throws Error unless `who` (described as `what`, e.g. "QEMU of svm-7-node1") still runs: the
// same pid with the same start time.
void check_same_process(const ProcessIdentity &who, const std::string &what,
                        const std::string &proc = "/proc");

// The descendants of `pid` (children, their children, ...), from the parent ids in
// <proc>/<n>/stat, in no particular order, each with the start time read with its parent id.
// Processes that end meanwhile are skipped.
std::vector<ProcessIdentity> process_descendants(pid_t pid, const std::string &proc = "/proc");

// A process held by a pidfd (pidfd_open(2)). A pid names a process only until that process is
// reaped; then the kernel may give it to a new one. Root writes pids into cgroup files, which
// take no pidfd, so it checks the pidfd around each write: a process that still holds its pid
// after the write is the one that was moved (docs/architecture.md, "Containment").
class ProcessHandle {
  public:
    // Opens a pidfd on `who.pid`, then checks `who`'s start time (check_same_process): a pidfd
    // opened before a check that finds the same start time refers to that very process. Throws
    // Error naming `what` (e.g. "QEMU of domain svm-7-node1") and why not.
    static ProcessHandle open(const ProcessIdentity &who, const std::string &what,
                              const std::string &proc = "/proc");

    pid_t pid() const { return pid_; }
    const std::string &what() const { return what_; }

    // Whether the process is not reaped yet (a zombie still is): until then no other process
    // can have its pid.
    bool holds_pid() const;

  private:
    ProcessHandle(pid_t pid, std::string what, UniqueFd fd)
        : pid_(pid), what_(std::move(what)), fd_(std::move(fd)) {}

    pid_t pid_;
    std::string what_;
    UniqueFd fd_;
};

}  // namespace svm
