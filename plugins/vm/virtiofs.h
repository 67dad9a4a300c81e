// virtiofs shares with the job user's rights, not root's. libvirt would start virtiofsd as
// root for a <filesystem> with a source dir, and root in the guest could then create set-uid
// root files in a user's folder. So slurm-vm starts virtiofsd itself, as the job's user, inside
// a user namespace that root creates (so root owns it) and maps from outside:
//
//   the job's uid/gid on the host is the only id mapped into the namespace, and virtiofsd
//   runs as it with every capability *of that namespace* (which reach only inodes whose owner
//   and group are mapped: the user's own files).
//
// Who can do what to it, by the kernel's rules:
// - enter it (setns, nsenter -U) or ptrace it: root only. Both need CAP_SYS_ADMIN or
//   CAP_SYS_PTRACE in its namespace, and a namespace's owner is the effective uid of the
//   process that made it (root), so the job's user has none there (user_namespaces(7),
//   ptrace(2) "cap_ptrace_access_check": another namespace needs CAP_SYS_PTRACE in it).
// - signal it: root and the job's user (its uids are the user's, as QEMU's are), nobody else.
//   Two jobs' virtiofsd never share an identity (there is no common `nobody`), and a
//   virtiofsd taken over by its guest holds capabilities in its own namespace only.
// - what files it makes: the guest's user creates as the job's user; any other guest uid,
//   root included, is either refused (QEMU's C virtiofsd: the id is not mapped, EINVAL) or
//   made the job's user too (the Rust virtiofsd: --translate-uid map:<uid>:0:1). No file is
//   ever owned by anyone else, so no set-uid file of another identity can be made.
//
// Two daemons, told apart by their --help (virtiofsd_flavour):
//   QEMU's C virtiofsd (Debian 12, /usr/lib/qemu/virtiofsd): namespace maps "<uid> <uid> 1",
//     it runs as the job's uid with its capabilities raised as ambient ones (it switches
//     credentials per request with setresuid, which needs every id it meets to be mapped);
//   the Rust virtiofsd (Debian 13, /usr/libexec/virtiofsd): namespace maps "0 <uid> 1", it
//     runs as namespace root (it takes its unprivileged path, which makes a namespace of its
//     own, whenever its euid is not 0) and translates the guest's user to that root.
// QEMU connects to the listening socket root made; virtiofsd ends when QEMU closes it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace svm {

// Which virtiofsd a binary is (see the top of this file).
enum class VirtiofsdFlavour { QemuC, Rust };

// Asks `binary --help` which daemon it is. Throws Error naming the binary when it cannot be
// run or is neither.
VirtiofsdFlavour virtiofsd_flavour(const std::string &binary);

struct VirtiofsdSpec {
    std::string binary = "/usr/lib/qemu/virtiofsd";
    std::string shared_dir;   // absolute
    std::string socket_path;  // made here, in a folder only root can write to
    std::string log_path;     // virtiofsd's own messages
    uid_t uid = 0;
    gid_t gid = 0;
    // Asked of the binary when not given.
    std::optional<VirtiofsdFlavour> flavour;
};

// Starts virtiofsd serving `shared_dir` on `socket_path` (listening, owned by uid:gid, mode
// 0600) and returns its pid once it runs under its namespace. The process is in a session of
// its own and outlives the caller. Throws Error naming the share and the reason; refuses root
// (uid or gid 0), which a namespace cannot take away anything from.
pid_t start_virtiofsd(const VirtiofsdSpec &spec);

// The uid map (or gid map) root writes for a job's `id`: "<id> <id> 1\n" (C) or "0 <id> 1\n"
// (Rust). Nothing else is mapped.
std::string virtiofsd_id_map(VirtiofsdFlavour flavour, unsigned id);

// virtiofsd's argv (without the binary): serve `spec.shared_dir` on descriptor 3, in its own
// namespace sandbox, and for the Rust daemon the guest's uid/gid translated to namespace root.
std::vector<std::string> virtiofsd_args(VirtiofsdFlavour flavour, const VirtiofsdSpec &spec);

}  // namespace svm
