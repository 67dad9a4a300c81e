// Warm start: a job's VM restored from a memory snapshot of its image's booted guest instead
// of booting (libvirt's save and restore). The snapshot is of a guest that booted and whose
// agent answered, before any job was in it: no hostname, user or mounts, taken by root and
// run as libvirt's own QEMU user, never as a job's user (who could otherwise change the
// memory every later job starts from).
//
// On disk, per image and key (what the snapshot fits: the image's files, QEMU's and libvirt's
// versions, the VM's shape and size; warm_key_text):
//   <state_dir>/warm/<image>/<hash of key>/slot-<n>.lock   taken (flock) while making or
//                                                          restoring
//   <state_dir>/warm/<image>/<hash of key>/slot-<n>/       meta.json (key, uuid, mac), state
//                                                          (libvirt's save file), disk.qcow2 (the
//                                                          guest's disk at the save, read-only
//                                                          from then on: each job's overlay
//                                                          backs onto it, so the guest's page
//                                                          cache and its disk agree),
//                                                          uefi-vars.fd
// libvirt's restore keeps the saved UUID (and the guest keeps its MAC): two VMs restored from
// one state at once would collide, so each slot is one VM at a time, and a slot is busy while
// a running domain has its UUID. A node has as many slots of an image as it ran VMs of it at
// once, each made lazily by the first job that needs it.
#pragma once

#include "catalog/catalog.h"
#include "util/fd.h"
#include "vm/domain_xml.h"
#include "vm/vm_lifecycle.h"

#include <libvirt/libvirt.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

// Slots per image and key: more VMs of one image at once on one host boot cold.
inline constexpr unsigned kMaxWarmSlots = 16;
// How long a restored guest's agent may take to answer before the VM boots cold instead.
inline constexpr std::chrono::milliseconds kWarmReadyTimeout{10000};
// A snapshot that could not be made is not tried again for this long (unless its key
// changes): a broken image would otherwise cost every job a second boot.
inline constexpr std::chrono::seconds kWarmRetryAfter{3600};
// How long the snapshot's guest may stay busy after its agent answered.
inline constexpr std::chrono::milliseconds kWarmSettleLimit{60000};

// What a snapshot is valid for: a format version, the image's files (path, size, mtime, inode),
// the host (kvm_verdict.h's host_key: kernel, QEMU, libvirt), and the VM's shape: `spec`
// rendered with everything that differs between two jobs' VMs (name, identity, paths,
// owner, pinning, metadata) blanked. Throws Error naming a file that cannot be looked at.
std::string warm_key_text(const Image &image, const std::string &host_key, const VmSpec &spec);

// 16 lower-case hex digits (FNV-1a, 64 bits) of `text`: a folder name.
std::string warm_key_hash(std::string_view text);

// A fresh random UUID (version 4) and a MAC in QEMU's 52:54:00 range.
std::string random_uuid();
std::string random_mac();

// One slot, taken: its lock is held for the life of this object.
struct WarmSlot {
    unsigned index = 0;
    std::string dir;         // .../slot-<n>
    std::string state;       // dir/state
    std::string disk;        // dir/disk.qcow2 (when the image has a disk)
    std::string uefi_vars;   // dir/uefi-vars.fd (UEFI images)
    std::string uuid, mac;   // the saved guest's identity
    bool has_state = false;  // a snapshot for this key is there, ready to restore
    UniqueFd lock;
};

// The folder of `image`'s snapshots for `key_text`: <state_dir>/warm/<image>/<hash>.
std::string warm_key_dir(const std::string &state_dir, const std::string &image,
                         const std::string &key_text);

// Why snapshots of this key are not being made (an earlier try failed less than
// kWarmRetryAfter ago), or "".
std::string warm_make_refusal(const std::string &key_dir);

// The lowest slot of the key that no other process holds and no running domain (of `conn`)
// uses; its folder is emptied when what is there is not a snapshot of this key. nullopt when
// every slot is busy. Throws Error when the folders cannot be made.
std::optional<WarmSlot> take_warm_slot(virConnectPtr conn, const std::string &key_dir,
                                       const std::string &key_text);

// Makes the slot's snapshot: boots `spec` (the job's shape; its name, identity, paths and
// owner are set here) with the image's disk and firmware under it, calls wait_ready(vm, spec)
// (which returns once the agent answered, or throws), waits for the rest of the boot to settle
// (kWarmSettleLimit at most), saves the guest's memory and freezes its disk. On failure it
// leaves the slot empty, remembers why in the key's folder (warm_make_refusal) and rethrows:
// wait_ready's own exception as it was, Error otherwise. Returns the seconds it took.
double make_warm_snapshot(LibvirtLink &link, WarmSlot &slot, const std::string &key_dir,
                          const std::string &key_text, VmSpec spec, const Image &image,
                          const std::string &uefi_vars_template,
                          const std::function<void(VmLifecycle &vm, const VmSpec &spec)> &wait_ready);

// Renames the domain inside libvirt's save file `state_file` to `name`, in place, so that it
// restores as the job's domain: libvirt's restore refuses an XML whose <name> differs from the
// saved one, and virDomainSaveImageDefineXML refuses a rename. The file is libvirt's QEMU save
// format (qemu_saveimage.h: the "LibvirtQemudSave" header, version 2, then the domain XML, a
// cookie and 64 KiB of room for edits, then QEMU's migration stream, untouched here). Throws
// Error naming the file when it is not of that format or the new name does not fit.
void rename_saved_domain(const std::string &state_file, const std::string &name);

// Empties the slot (a state that would not restore): the next job makes it again.
void discard_warm_snapshot(WarmSlot &slot);

// Keeps the snapshots of <state_dir>/warm within `max_mib` MiB (the plugstack's warm_cache):
// removes the least recently used slots (by their last make or restore) until the rest fit,
// never one in use (its lock held by another prolog, or a running domain with its UUID) nor the
// folder `keep` (the caller's own slot). Snapshots in use can thus make the total exceed the
// bound for as long as their VMs run. Returns the slot folders removed. Throws Error only when
// the folder cannot be read.
std::vector<std::string> evict_warm_snapshots(virConnectPtr conn, const std::string &state_dir,
                                              uint64_t max_mib, const std::string &keep);

}  // namespace svm
