// The SPANK plugin's settings: the `key=value` words after the plugin's path in plugstack.conf.
// Every value is checked when the plugin loads, so a typo fails there with a message naming the
// option, instead of failing some job later.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

// Which Slurm commands a VM job may run on the host (host calls: inside the VM, srun, squeue,
// ... are shims that the job's task on the host runs for real, as the job's user; see
// exec/host_calls.h). Root inside the guest chooses their arguments, so this is the admin's
// choice of how much of Slurm the guest reaches:
//   None:  nothing; the shims say so.
//   Steps: srun (steps of this job only), scancel, squeue, sstat.
//   All:   also sbatch, salloc --no-shell, scontrol, sacct, sinfo: new jobs, which need not
//          run in a VM.
// In every mode, options and variables that make a command run or load a program of the
// user's on the host are refused.
enum class HostCalls { None, Steps, All };

// "none", "steps", "all": the plugstack word, also passed to slurm-vm-exec --host-calls.
const char *host_calls_name(HostCalls mode);
std::optional<HostCalls> host_calls_from_name(std::string_view name);

struct Config {
    std::string catalog = "/etc/slurm/vm-images.json";
    // Wait for a graceful guest shutdown before destroying the domain. Keep it below Slurm's
    // KillWait/UnkillableStepTimeout, or Slurm drains the node while we wait.
    unsigned grace_seconds = 30;
    // Wait for the in-guest agent when an image sets no ready_timeout of its own.
    unsigned ready_timeout_seconds = 120;
    // Host directories shared into the guest at the same path, so the job's working directory
    // and home resolve the same inside.
    std::vector<std::string> shared_paths = {"/home"};
    std::string hostname_template = "%n-vm%j";
    std::string libvirt_uri = "qemu:///system";
    std::string run_dir = "/run/slurm-vm";        // exec channel sockets
    std::string state_dir = "/var/lib/slurm-vm";  // per-job disk overlays
    // Concurrent exec channels (tasks) per VM. At most 30: one virtio-serial controller has 31
    // ports and QEMU keeps port 0 for a console.
    unsigned exec_ports = 8;
    std::string domain_type = "auto";  // auto | kvm | qemu; see capabilities.h
    // How long the node's KVM probe (vm/kvm_probe.h) may take to answer under KVM before KVM
    // is judged not to work here: where it is broken, guests may spin for ever instead of
    // dying. A working KVM boots a guest in a few seconds.
    unsigned kvm_probe_timeout_seconds = 20;
    // How long a KVM verdict holds before the node probes again (vm/kvm_verdict.h): a verdict
    // is also dropped when the kernel, QEMU or libvirt changes.
    unsigned kvm_verdict_ttl_seconds = 24 * 3600;
    // Every VM's network unless its image says otherwise: "user" (outbound through QEMU's
    // user-mode NAT: no root helper, no bridge; the host is 10.0.2.2) or "none".
    std::string network = "user";
    // How shared_paths reach every VM unless its image says otherwise: "9p" (QEMU serves
    // them, as the job's user) or "virtiofs" (a virtiofsd per share, as the job's user in a
    // user namespace; for kernels without 9p, such as the RHEL family's).
    std::string share = "9p";
    // Pin each VM's vCPUs to the CPUs Slurm gave the job on the node (and QEMU's own threads
    // to all of them), as task/affinity binds a native task.
    bool pin_vcpus = true;
    // Start VMs by restoring a memory snapshot of the image's booted guest instead of booting
    // it (see vm/warm_start.h); images opt out in the catalog ("warm_start": false).
    bool warm_start = true;
    // The most the warm-start snapshots of this host (<state_dir>/warm) may take on disk, in
    // MiB; beyond it the least recently used are removed (vm/warm_start.h). 0: none is kept.
    unsigned warm_cache_mib = 4096;
    // A VM starts only where the file systems of state_dir, run_dir and log_dir keep at least
    // this much free (MiB), besides room for the VM's disk to grow to its full size; else its
    // job fails with one line (vm/job_storage.h). Never the node: a user can fill a disk.
    unsigned min_free_mib = 1024;
    // The most the guests' console logs (<log_dir>/svm-*.console.log*) may take, in MiB; beyond
    // it the oldest are removed when a VM starts.
    unsigned console_logs_mib = 1024;
    // MiB of the job's memory on a node kept for QEMU itself (its heap, TCG's translation
    // cache, I/O buffers) when the job's allocation sizes the guest: with task/cgroup's
    // ConstrainRAMSpace the allocation is the limit of the job's cgroup, which holds QEMU
    // (vm/job_cgroup.h), so a guest given all of it would push QEMU over the limit. The guest
    // gets min(image max, allocation - this), at least 64 MiB (vm/job_vm.h guest_memory_mib); 0
    // where the job's memory is not enforced.
    unsigned memory_overhead_mib = 256;
    std::string virtiofsd = "/usr/lib/qemu/virtiofsd";
    std::string log_dir = "/var/log/slurm-vm";  // guest console logs
    // UEFI firmware for images with "firmware": "uefi" (Debian's ovmf package): the code,
    // read-only, and the variable store template each VM gets its own copy of.
    std::string uefi_code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    std::string uefi_vars = "/usr/share/OVMF/OVMF_VARS_4M.fd";
    // Steps by default: a job's own srun inside its VM is the common need (MPI launchers, job
    // scripts with steps) and stays inside the job's VMs; submitting jobs from inside a VM
    // (which may then run outside any VM) is a site's explicit choice.
    HostCalls host_calls = HostCalls::Steps;
    // How long one libvirt call may take (vm/libvirt_link.h). A late call that talks to QEMU
    // (create, restore, shutdown, save) kills the domain's QEMU, which its user may have
    // stopped: the prolog and the epilog never wait for ever.
    unsigned libvirt_timeout_seconds = 60;
    // How long a refused or lost connection to libvirtd is tried again before the node counts
    // as faulty: a libvirtd restart (a package upgrade) takes a second or two and must cost the
    // jobs on the node nothing.
    unsigned libvirt_reconnect_seconds = 30;
};

// Parses plugstack.conf arguments. Throws Error for an unknown key (listing the valid ones), a
// word without '=', a key given twice, or a bad value (naming the key and the reason).
Config parse_config(const std::vector<std::string> &args);

// The VM's hostname: %n is the node name (lower-cased), %j the job id, %% a '%'. Throws Error,
// naming the template, for an unknown %-sequence or a result that is not an RFC 1123 hostname.
std::string expand_hostname(const std::string &tmpl, std::string_view node, uint32_t jobid);

// "" for a Slurm node name we accept ([A-Za-z0-9._-]+, not "." or ".."), else the reason. Node
// names end up in file names (svm-<job>-<node>, %n in catalog paths): one rule for all of them.
std::string node_name_problem(std::string_view node);

// "" for a valid RFC 1123 hostname made of lower-case labels, else the reason.
std::string hostname_problem(std::string_view hostname);

// "" for an absolute path without a ".." component or control characters, else the reason. Paths
// from configuration end up in libvirt XML, qemu-img arguments and mount tables: they must mean
// exactly what they say.
std::string absolute_path_problem(std::string_view path);

// "" when `text` holds no NUL, newline or other control character; else which one it holds.
std::string control_character_problem(std::string_view text);

}  // namespace svm
