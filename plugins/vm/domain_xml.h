// The libvirt domain XML for one job VM on one node. The shape is the one measured to boot a
// Debian kernel + busybox initramfs guest here (see docs); every value passes xml_escape, because
// names, paths and the kernel command line reach us from the catalog and from the job.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace svm {

// The namespace of our <metadata> element. Cleanup and accounting find their domains by it, so it
// never changes for the life of a deployment.
inline constexpr std::string_view metadata_namespace = "https://github.com/slurm-vm/slurm-vm/1";

// A host directory exported to the guest; the guest mounts `tag` at `guest_path`. Over 9p
// (QEMU itself serves host_path) or, when `virtiofs_socket` is set, over virtiofs (the
// virtiofsd listening there serves it; see virtiofs.h).
struct Share {
    std::string tag;
    std::string host_path;
    std::string guest_path;
    bool readonly = false;
    std::string virtiofs_socket;
};

struct VmSpec {
    std::string name;  // libvirt domain name, e.g. "svm-42-node1"
    // The guest-visible identity libvirt would otherwise make up: the domain's UUID (SMBIOS)
    // and the NIC's MAC. A VM restored from a saved state must have the saved ones
    // (vm/warm_start.h). Empty: libvirt generates them.
    std::string uuid, mac;
    std::string domain_type;  // "kvm" or "qemu"; see capabilities.h
    unsigned vcpus = 1;
    // The host CPUs Slurm allocated to the job on this node (OS numbering). When not empty,
    // <cputune> pins vCPU i to cpus[i % cpus.size()] and QEMU's emulator threads to all of
    // them; when empty, nothing is pinned (the scheduler places the threads).
    std::vector<unsigned> cpus;
    uint64_t memory_mib = 512;
    std::string kernel, initrd, cmdline;  // direct kernel boot when kernel is set
    std::string disk, disk_format;        // the job's overlay; optional; format defaults to qcow2
    // UEFI boot (no kernel): the firmware's code (read-only pflash) and this VM's own copy of
    // the variable store. BIOS (SeaBIOS) when empty.
    std::string uefi_code, uefi_vars;
    std::vector<Share> shares;  // 9p (accessmode passthrough) or virtiofs
    std::string console_log;    // serial console to this file; none when empty
    bool user_network = false;  // a virtio NIC on QEMU's user-mode NAT
    // Exec channels: <channel_dir>/exec.<i>.sock on the host, virtio port org.slurmvm.exec.<i>
    // in the guest, for i in [0, exec_ports): one per concurrent task.
    std::string channel_dir;
    unsigned exec_ports = 0;
    // QEMU runs as this uid:gid (static DAC label, no relabelling), so a shared base image is
    // never chowned and 9p passthrough gives the guest exactly the job user's rights.
    std::optional<std::pair<uint32_t, uint32_t>> run_as;
    // Written as attributes of <svm:job> (job id, node, image, user) and read back by cleanup
    // and accounting. Keys must match [a-z_]+.
    std::map<std::string, std::string> metadata;
};

// `text` escaped for XML content and attribute values ('&', '<', '>', '\'', '"', and tab and
// newline as character references so attributes keep them). Throws Error for NUL and other
// control characters, which XML 1.0 cannot carry.
std::string xml_escape(std::string_view text);

// Throws Error naming the domain and the field for an invalid spec or an unencodable value.
std::string render_domain_xml(const VmSpec &spec);

}  // namespace svm
