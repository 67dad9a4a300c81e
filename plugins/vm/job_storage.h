// Room on the node for VM jobs, and the bounds of root's stores that grow with jobs. A user's
// jobs can fill a file system (a guest writing its disk, a warm snapshot per VM size, console
// logs), so every store root keeps has a bound, and "no room" fails the job that meets it with
// one line: never the node, which a full disk would otherwise drain for every later job.
#pragma once

#include "util/config.h"
#include "util/error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace svm {

// A file system without the room a VM needs: the job fails with this message (never a
// NodeFaultError, which drains the node).
class NoRoomError : public Error {
  public:
    using Error::Error;
};

// Throws NoRoomError "no room for a VM: <path> has N MiB free, ..." when the file system of
// `path` (or of its nearest existing parent) has less than `need_mib` + `min_free_mib` MiB
// free, or fewer than 64 free inodes where it counts them.
void check_room(const std::string &path, uint64_t need_mib, uint64_t min_free_mib);

// check_room for what a VM writes: its state folder (<state_dir>/jobs; `disk_mib` is the size
// its disk's overlay may grow to), its channel folder (run_dir) and its console log (log_dir),
// each keeping config.min_free_mib free.
void check_room_for_vm(const Config &config, uint64_t disk_mib);

// The size in MiB (rounded up) a guest sees of the disk image at `path`: a qcow2 image's
// virtual size from its header, a raw image's file size. Throws Error naming the file. Only
// for the admin's images and root's own snapshot disks: the header is trusted.
uint64_t disk_size_mib(const std::string &path, const std::string &format);

// Throws NoRoomError for `path` when `err` is ENOSPC or EDQUOT, else NodeFaultError ("cannot
// create <path>: <reason>"): the two ways a folder of root's can fail to be made.
[[noreturn]] void throw_folder_error(const std::string &path, int err);

// The guests' console logs in `log_dir` (svm-<job>-<node>.console.log, and the .N files of
// virtlogd's rotation) take at most `max_mib` MiB: the oldest go first, except those of a VM
// whose job still has its state folder in `state_dir` (a log still being written is not
// freed by removing it). Returns the files removed. Never throws.
std::vector<std::string> prune_console_logs(const std::string &log_dir,
                                            const std::string &state_dir, uint64_t max_mib);

}  // namespace svm
