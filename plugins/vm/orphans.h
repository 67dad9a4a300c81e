// VMs, overlays and channel directories left behind by jobs that no longer exist (a node that
// rebooted mid-job, an epilog that was killed). Everything a job VM leaves on a node is named
// svm-<jobid>-<node>, so what is whose can be read from the name alone.
#pragma once

#include <libvirt/libvirt.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace svm {

// Job ids from here up name the VMs of the admin's commands (`slurm-vm try`, `check`), above any
// real Slurm job id (MaxJobId is at most 0x03ff0000): the sweep leaves them to their command.
inline constexpr uint32_t kAdminToolJobIds = 0x7e000000u;

// "svm-<jobid>-<node>". Throws Error when the node name is empty or holds a character outside
// [A-Za-z0-9._-]: the name is also used for files.
std::string domain_name_for(uint32_t jobid, std::string_view node);

// The job id and node of a name made by domain_name_for, or nullopt for any other name
// (including non-canonical job ids such as "007").
std::optional<std::pair<uint32_t, std::string>> parse_domain_name(std::string_view name);

// Running (or paused) domains named for `node` (for every node when `node` is empty: all the
// slurmd of one host share its libvirt) whose job is not live, sorted by name.
std::vector<std::string> find_orphan_domains(
    virConnectPtr conn, std::string_view node,
    const std::function<bool(uint32_t jobid)> &job_is_live);

struct OrphanReport {
    std::vector<std::string> destroyed_domains;
    std::vector<std::string> removed_state_dirs;    // <state_dir>/jobs/<domain> paths
    std::vector<std::string> removed_channel_dirs;  // paths
    std::vector<std::string> errors;                // one line each; the rest still went ahead
};

// Destroys the orphan domains of `node` (no grace: their job is gone), then removes
// <state_dir>/jobs/svm-<jobid>-<node>/ and <run_dir>/svm-<jobid>-<node>/ of every job
// that is not live, whether or not its domain was still running. Only entries whose names match
// that pattern exactly are touched, and symbolic links are removed, never followed.
OrphanReport remove_orphans(virConnectPtr conn, std::string_view node,
                            const std::function<bool(uint32_t jobid)> &job_is_live,
                            const std::string &state_dir, const std::string &run_dir);

}  // namespace svm
