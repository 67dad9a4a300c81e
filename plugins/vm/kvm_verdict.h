// What a host has learnt about KVM: whether a guest really ran under it. libvirt offers the
// kvm domain type wherever /dev/kvm exists, but on some hosts (nested virtualisation, a module
// that loads but cannot run a guest) every guest dies at once with "KVM internal error". The
// first VM boot under kvm on a host is the probe (job_vm.cpp; `slurm-vm check` runs one too);
// its outcome is kept in the state folder, keyed by what could change the answer: the kernel,
// QEMU and libvirt versions. A new key means a new probe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include <libvirt/libvirt.h>

namespace svm {

struct KvmVerdict {
    bool works = false;
    std::string reason;  // why it does not work, one line; "" when it works
    std::string key;     // host_key() when it was decided
    std::string node;    // which node decided it (for the admin reading the file)
    int64_t decided_at = 0;
};

// "kernel=<uname -r>;qemu=<version>;libvirt=<version>" for the host behind `conn`.
// Throws Error when libvirt cannot say its versions.
std::string host_key(virConnectPtr conn);

// <state_dir>/kvm-verdict.json
std::string kvm_verdict_path(const std::string &state_dir);

// The verdict stored in `state_dir` when it was made for `key`; nothing when there is none,
// it is for another key, or it cannot be read (a new probe is always safe).
std::optional<KvmVerdict> load_kvm_verdict(const std::string &state_dir, const std::string &key);

// Writes the verdict atomically (json-c). Throws Error naming the file.
void save_kvm_verdict(const std::string &state_dir, const KvmVerdict &verdict);

// "" when a process of uid/gid (and the uid's supplementary groups) can open `device` for
// reading and writing, else why not, in words an admin can act on:
// "/dev/kvm is mode 0600 owned by root:root, so QEMU (running as uid 1000) cannot open it".
std::string kvm_device_problem(uid_t uid, gid_t gid, const std::string &device = "/dev/kvm");

// The line of QEMU's own log for `domain` (libvirt keeps it in /var/log/libvirt/qemu) that
// says why it stopped, made printable: the last line that mentions an error; "" when none.
std::string qemu_log_error(const std::string &domain,
                           const std::string &log_dir = "/var/log/libvirt/qemu");

// Whether QEMU's error line blames KVM itself (as opposed to the guest or the image).
bool blames_kvm(const std::string &qemu_error);

// Logs a fallback warning at most once per node and verdict: true the first time for
// (node, text), false afterwards. Marker files live in <state_dir>/kvm-warned/. Never throws.
bool first_warning_for_node(const std::string &state_dir, const std::string &node,
                            const std::string &text);

}  // namespace svm
