// VMs, overlays and channel directories left behind by jobs that no longer exist (a node that
// rebooted mid-job, an epilog that was killed). Everything a job VM leaves on a node is named
// svm-<jobid>-<node>, so what is whose can be read from the name alone.
#pragma once

#include "vm/job_names.h"

#include <libvirt/libvirt.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace svm {

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
