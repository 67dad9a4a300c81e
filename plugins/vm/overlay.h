// Copy-on-write overlays: each job VM writes to its own qcow2 file on top of a shared base image,
// which stays untouched.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace svm {

// Creates overlay_path as a qcow2 overlay on `base` (whose format, e.g. "qcow2" or "raw", is
// base_format), owned by owner_uid:owner_gid with mode 0600. Both paths must be absolute.
// Refuses an overlay that already exists: it may be the disk of a running VM. Throws Error naming
// the overlay, the base and qemu-img's reason; a full disk reads "no space left on device".
void create_overlay(const std::string &base, const std::string &base_format,
                    const std::string &overlay_path, uint32_t owner_uid, uint32_t owner_gid,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60));

// The VM's own UEFI variable store: a copy of `template_path` (the firmware's template, or a
// warm snapshot's store) at `dest`, owned by uid:gid (QEMU writes it), mode 0600. `dest`'s
// folder must be root's. Throws Error naming the file that cannot be read or written.
void copy_uefi_vars(const std::string &template_path, const std::string &dest, uint32_t uid,
                    uint32_t gid);

}  // namespace svm
