// What a host has learnt about KVM: whether a guest really runs under it. libvirt offers the
// kvm domain type wherever /dev/kvm exists, but on some hosts (nested virtualisation, a module
// that loads but cannot run a guest) every guest dies at once with "KVM internal error". The
// node decides with its own probe (vm/kvm_probe.h: a guest root boots as libvirt-qemu, which
// no user can touch), never with a job's VM, whose QEMU is the user's to stop or kill. The
// verdict is kept in the state folder, keyed by what could change the answer (the kernel, QEMU
// and libvirt versions), and lapses after kvm_verdict_ttl: a new key or a lapsed verdict means
// a new probe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>

#include <libvirt/libvirt.h>

namespace svm {

struct KvmVerdict {
    bool works = false;
    // false: the probe proved nothing (its guest booted under neither KVM nor TCG): VMs run
    // under TCG until the verdict lapses, without blaming KVM.
    bool proven = true;
    std::string reason;  // why it does not work, one line; "" when it works
    std::string key;     // host_key() when it was decided
    std::string node;    // which node decided it (for the admin reading the file)
    int64_t decided_at = 0;
    int64_t expires_at = 0;  // seconds since the epoch; the verdict holds until then
};

// "kernel=<uname -r>;qemu=<version>;libvirt=<version>" for the host behind `conn`.
// Throws Error when libvirt cannot say its versions.
std::string host_key(virConnectPtr conn);

// <state_dir>/kvm-verdict.json
std::string kvm_verdict_path(const std::string &state_dir);

// The verdict stored in `state_dir` when it was made for `key` and holds at `now`; nothing when
// there is none, it is for another key, it has lapsed (or has no expiry: a verdict of an older
// slurm-vm, which a user's job could decide), or it cannot be read (a new probe is always safe).
std::optional<KvmVerdict> load_kvm_verdict(const std::string &state_dir, const std::string &key,
                                           int64_t now = time(nullptr));

// Writes the verdict atomically (json-c). Throws Error naming the file, or when the verdict
// has no expiry.
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
