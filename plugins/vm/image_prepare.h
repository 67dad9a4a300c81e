// `slurm-vm image prepare`: an admin's Linux disk image (a distribution's cloud image, or one
// the site built) made into a slurm-vm base image. The image surgery is libguestfs'
// (virt-customize, virt-get-kernel), never ours: a copy of SRC gets the static agent, a systemd
// unit that starts it early (in the sysinit stage), the script that makes its virtio ports
// appear without waiting for udev, and the host-call links (srun, sbatch, ...). Nothing else
// in the image changes, and SRC is never written.
#pragma once

#include <functional>
#include <string>

namespace svm {

struct PrepareRequest {
    std::string source;        // qcow2 or raw disk image
    std::string destination;   // a new qcow2 file; must not exist
    std::string name;          // catalog name for the printed entry
    std::string agent;         // the static slurm-vm-agent to install
    bool direct_boot = false;  // also take the kernel and initrd out, for direct kernel boot
    bool uefi = false;         // the printed entry boots the disk by UEFI (OVMF), not BIOS
    // libguestfs boots its own appliance: under TCG unless KVM is known to work here.
    bool appliance_kvm = false;
    unsigned timeout_seconds = 1200;
};

struct PrepareResult {
    std::string destination;
    std::string kernel, initrd;  // when direct_boot
    std::string catalog_entry;   // JSON, for the admin to add to the catalog
    double seconds = 0;
};

// Throws Error with one line that names SRC or DEST and the reason ("is not a disk image",
// "holds no Linux system libguestfs can find", "exists", the tool's own last line); whatever
// it made is removed first. `progress` gets a line per step.
PrepareResult prepare_image(const PrepareRequest &request,
                            const std::function<void(const std::string &)> &progress = {});

// The unit and the port script that prepare installs, for tests and the admin guide.
std::string agent_unit_text(const std::string &dir);
std::string agent_ports_script();
// For images without systemd: `start` (the port script, then the agent) and the script that
// prepare runs inside the image to have init start it: a respawn line in /etc/inittab
// (SysV or busybox syntax), else a respawning loop in rc.local; nothing where systemd is
// the init; exit 3 with one line where it finds no init it knows.
std::string agent_start_script(const std::string &dir);
std::string agent_init_fallback_script(const std::string &dir);

}  // namespace svm
