// The whole life of one job's VM on one node, free of Slurm: what the prolog starts, what
// task_init reaches, what the epilog stops. The SPANK plugin gathers the facts from Slurm
// and calls these; the admin tool (slurm-vm try) calls them too.
#pragma once

#include "catalog/catalog.h"
#include "util/config.h"
#include "util/error.h"
#include "vm/job_cgroup.h"
#include "vm/vm_lifecycle.h"
#include "vm/vm_processes.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

// What Slurm allocated to the job on this node.
struct JobVmRequest {
    uint32_t jobid = 0;
    std::string node;   // Slurm node name (several slurmd may share one host)
    std::string image;  // catalog name, already validated at submit
    uint32_t uid = 0, gid = 0;
    unsigned cpus = 0;  // 0: the image's default
    // The job's memory on this node, which task/cgroup's ConstrainRAMSpace makes the limit of
    // the job's cgroup, QEMU's included: see guest_memory_mib. 0: the image's default.
    uint64_t memory_mib = 0;
    std::string work_dir;  // shared into the guest at the same path
    // Slurm's (abstract) ids of the job's CPUs on this node: the vCPUs are pinned to them
    // (pin_vcpus=yes). Empty: not pinned.
    std::vector<unsigned> slurm_cpus;
    // Overrides the ready timeout when not 0 (slurm-vm check's probe boots).
    unsigned ready_timeout_seconds = 0;
    // A Slurm job's prolog: where the node's cgroups are. Where the node's hierarchy lets the
    // VM boot in a cgroup of the job's (cgroup v2: JobCgroups::make_boot_cgroup), QEMU joins it
    // before any guest code runs, so that its memory is the job's from the first page. Nothing:
    // the VM is no Slurm job's (slurm-vm try, check).
    std::optional<CgroupRoots> job_cgroups;
};

// Where a job VM's files live. The state folder is root's (the user cannot plant links where
// root writes); the channel folder is the user's alone (0700): only the job's user and root
// can reach the VM's exec channels.
struct JobVmPaths {
    std::string domain;       // libvirt domain name, svm-<jobid>-<node>
    std::string state_dir;    // <state_dir>/jobs/<domain>: overlay, state, error
    std::string channel_dir;  // <run_dir>/<domain>: exec.<i>.sock and exec.<i>.lock
    std::string console_log;  // <log_dir>/<domain>.console.log, kept after the job
    std::string error_file;   // why the VM could not start, for task_init to tell the user
    std::string state_file;   // facts about the running VM (JSON), for the epilog and accounting
};
JobVmPaths job_vm_paths(const Config &config, uint32_t jobid, std::string_view node);

struct StartReport {
    std::string domain, hostname, domain_type;
    unsigned vcpus = 0;
    uint64_t memory_mib = 0;
    double create_seconds = 0, ready_seconds = 0, setup_seconds = 0;
    // Why `auto` runs this VM under TCG although libvirt offers KVM; "" otherwise. The node's
    // log says it once (first_warning_for_node), not once per job.
    std::string kvm_fallback_reason;
    // What this start's KVM probe found ("works: ...", "broken: ...", "not proven: ...") when
    // it ran one (the host had no verdict), or why the host still has none; "" otherwise.
    std::string kvm_verdict;
    // Each time libvirtd closed the connection during the boot (a restart) and the boot was
    // made again: why, for the node's log.
    std::vector<std::string> libvirt_restarts;
    // The kernel's CPUs the vCPUs are pinned to ("0-1"), or "" and why not.
    std::string pinned_cpus, pin_problem;
    // How it started: "warm (slot N)" (restored from a snapshot, vm/warm_start.h), "cold"
    // (booted: the image or the plugstack opted out), or "cold: <why not warm>".
    std::string start_mode;
    // Set when this start made its slot's snapshot first (seconds it took).
    double snapshot_seconds = 0;
    // The snapshot folders that made room for it within warm_cache (least recently used).
    std::vector<std::string> warm_evicted;
    // A warm start was due but failed (a snapshot that would not be made or restored): one
    // line for the node's log. The VM then booted cold.
    std::string warm_problem;
    // The VM's host processes, for the extern step to move into the job's cgroups
    // (place_job_vm). qemu.pid is 0 when libvirt's pid file could not be read: qemu_problem
    // says why, and the extern step looks again.
    ProcessIdentity qemu;
    std::string qemu_problem;
    std::vector<ProcessIdentity> virtiofsds;
    // The cgroup of the job's the VM booted in ("" none: cgroup v1, or no Slurm cgroup/v2 tree
    // here), and why it has none where one was due (one line for the node's log).
    std::string boot_cgroup, boot_cgroup_problem;
};

// The smallest guest a job's allocation may leave: below it a Linux guest hardly boots.
inline constexpr uint64_t kMinGuestMemoryMib = 64;

// The guest's RAM in MiB for a job with `allocation_mib` of memory on the node (0: Slurm said
// none, the image's default). The allocation is the limit of the job's cgroup, which also holds
// QEMU itself (its heap, TCG's translation cache, I/O buffers): the guest gets
// allocation - overhead_mib (the plugstack's memory_overhead), capped by the image's max, so the
// overhead is taken only where the allocation, not the image, decides. Throws Error with the
// numbers when that leaves less than kMinGuestMemoryMib.
uint64_t guest_memory_mib(const ImageLimits &limits, uint64_t allocation_mib,
                          uint64_t overhead_mib);

// The node cannot run any VM (libvirtd unreachable, the state or run folder unwritable): not
// this job's fault, and the next job would meet it too. The prolog drains the node with this
// message; every other error fails the job alone.
class NodeFaultError : public Error {
  public:
    using Error::Error;
};

// The guest died while it booted (as opposed to never answering, or a set-up failure): what
// libvirt and QEMU said and the console's last lines are in the message.
class GuestDiedError : public Error {
  public:
    GuestDiedError(const std::string &message, std::string qemu)
        : Error(message), qemu_error(std::move(qemu)) {}
    std::string qemu_error;  // QEMU's own error line (kvm_verdict.h), "" when it said nothing
};

// Boots the job's VM and waits until its agent answers; sets the guest's hostname and mounts
// the shared paths. Throws Error with a message that names the image, the node and the
// reason; whatever was made is removed again before it throws. A libvirtd restart during the
// boot costs a new boot (report.libvirt_restarts), not the job; libvirtd unreachable for
// libvirt_reconnect seconds is a NodeFaultError.
StartReport start_job_vm(const Config &config, const Catalog &catalog, const JobVmRequest &request);

// The job is over: the agent syncs and powers the guest off (POWEROFF on exec port 0), else
// the ACPI power button, then destroy at the end of the grace period (VmLifecycle::stop); then
// the domain's files are removed. Safe to call when nothing is there. Every libvirt call has
// libvirt_timeout (a stopped QEMU is killed), and a libvirtd restart meanwhile is waited for
// (libvirt_reconnect) and the stop taken up again. Throws LibvirtConnectionError when libvirtd
// stays away.
StopReport stop_job_vm(const Config &config, uint32_t jobid, std::string_view node);

// Records why the VM could not start, where task_init finds it. Never throws.
void record_job_vm_error(const Config &config, uint32_t jobid, std::string_view node,
                         const std::string &message);

// The message recorded by record_job_vm_error, if any.
std::optional<std::string> job_vm_error(const Config &config, uint32_t jobid,
                                        std::string_view node);

// Whether the prolog set up (or tried to set up) a VM for this job on this node.
bool job_has_vm(const Config &config, uint32_t jobid, std::string_view node);

// What place_job_vm did.
struct PlacementReport {
    std::string domain, image;  // from the VM's state file
    // Why nothing was moved (no VM runs for the job here; the job has no cgroup here), one line
    // for the node's log; "" when the VM was placed.
    std::string skipped;
    std::string hierarchy;                 // "cgroup v1", "cgroup v2"
    std::vector<std::string> controllers;  // the VM is in the job's cgroup of each, in order
    std::vector<std::string> missing;      // controllers of job_vm_controllers() the job lacks
    std::string cpus;                      // the job's cpuset ("0-1"); "" without one
    bool repinned = false;                 // vCPUs pinned again on `cpus`
    std::vector<std::string> notes;        // what did not work and changes little: the
                                           // same words on every job of a host
};

// Where place_job_vm looks and how it pins; the real ones unless a test says otherwise.
struct PlacementRoots {
    std::string cgroup_mount = std::string(kCgroupMount);
    std::string proc = "/proc";
    std::string libvirt_run = std::string(kLibvirtQemuRunDir);
    // Pins the running domain on the CPUs; empty: VmLifecycle::pin over config.libvirt_uri.
    std::function<void(const std::string &domain, const std::vector<unsigned> &cpus)> pin;
};

// The job's extern step has started on this node: its cgroups exist and no task of the job
// runs yet. Moves the job's VM (QEMU with all its threads, the VM's virtiofsd, their children;
// each checked to be the very process the prolog started, and held by a pidfd while it moves)
// into the job's cgroups: a slurm_vm folder below the extern step, in freezer, cpuset, cpuacct
// and memory on cgroup v1, below its task folder on v2 (vm/job_cgroup.h). Then pins its vCPUs
// again on the job's cpuset (pin_vcpus=yes), which the move or Slurm reset. Skips, with
// the reason in `skipped`, when no VM runs for the job here or the job has no cgroup here (no
// cgroup plugins, no PrologFlags=Contain): the domain XML's pinning then stays. Throws Error
// naming what failed; the caller fails the job with it. `report` is filled as it goes: after an
// Error it has what was found before (the image, for the caller's message).
void place_job_vm(const Config &config, uint32_t jobid, std::string_view node, uint32_t uid,
                  PlacementReport &report, const PlacementRoots &roots = {});

}  // namespace svm
