// virtiofs shares with the job user's rights, not root's. libvirt would start virtiofsd as
// root for a <filesystem> with a source dir, and root in the guest could then create set-uid
// root files in a user's folder. So slurm-vm starts Debian's virtiofsd (the C one in QEMU 7.2,
// which needs root to set up its sandbox) itself, as the job's user inside a user namespace
// made for it (mapped by root from outside):
//
//   inside the namespace   on the host
//   uid/gid 0            = nobody/nogroup (65534): virtiofsd itself, with capabilities over
//                          nothing but what the job's user and nobody own
//   the job's uid/gid    = the job's uid/gid: what the guest's user creates is theirs
//
// Other users' files are reached only through their "other" bits and the job user's groups,
// as with 9p (where QEMU runs as the job's user). QEMU connects to the listening socket root
// made; virtiofsd ends when QEMU closes it.
#pragma once

#include <sys/types.h>

#include <string>

namespace svm {

struct VirtiofsdSpec {
    std::string binary = "/usr/lib/qemu/virtiofsd";
    std::string shared_dir;   // absolute
    std::string socket_path;  // made here, in a folder only root can write to
    std::string log_path;     // virtiofsd's own messages
    uid_t uid = 0;
    gid_t gid = 0;
};

// Starts virtiofsd serving `shared_dir` on `socket_path` (listening, owned by uid:gid, mode
// 0600) and returns its pid once it runs under its namespace. The process is in a session of
// its own and outlives the caller. Throws Error naming the share and the reason.
pid_t start_virtiofsd(const VirtiofsdSpec &spec);

// The uid and gid maps written for `uid` and `gid` ("0 65534 1\n<uid> <uid> 1\n"); for tests.
std::string virtiofsd_id_map(unsigned id);

}  // namespace svm
