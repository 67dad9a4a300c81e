// The node's KVM probe: whether KVM really runs a guest on this host, decided by root with
// evidence no user can produce. A job's VM is never the trial: its QEMU runs as the job's user,
// who can stop or kill it on purpose, and a verdict "KVM broken" taken from that would move the
// whole host to TCG. The probe boots a catalog image as libvirt's own QEMU user (libvirt-qemu),
// in root's folder, with nothing of any job in it: under KVM first; a guest that answers proves
// KVM; QEMU's own error naming KVM (in libvirt's log of a QEMU no user can touch), or a guest
// that does not answer under KVM but does under TCG, proves it broken. The verdict is kept
// (vm/kvm_verdict.h) until kvm_verdict_ttl lapses or the kernel, QEMU or libvirt changes.
#pragma once

#include "catalog/catalog.h"
#include "util/config.h"
#include "vm/kvm_verdict.h"

#include <libvirt/libvirt.h>

#include <optional>
#include <string>

namespace svm {

// The domain the probe boots (one at a time per host: the probe holds kvm_probe_lock_path).
inline constexpr const char *kKvmProbeDomain = "svm-kvm-probe";

struct KvmProbeResult {
    // What this host now knows: the probe's verdict (saved), one another process decided
    // meanwhile, or nothing (another probe still runs, or this one could not boot at all).
    std::optional<KvmVerdict> verdict;
    bool ran = false;     // this call booted the probe
    double seconds = 0;   // how long it took
    std::string summary;  // one line for the node's log: "works: ...", "broken: ...", ...
};

// <state_dir>/kvm-probe.lock: held while a probe runs.
std::string kvm_probe_lock_path(const std::string &state_dir);

// The image the probe boots: of the catalog's images with a kernel whose files are on `node`
// and that restrict nobody (no access rules), the one with the least memory, resolved for the
// node; nothing when there is none (the caller may take the job's image instead).
std::optional<Image> kvm_probe_image(const Catalog &catalog, const std::string &node);

// The verdict for `key` if this host has one; else, under the host's probe lock, the probe's
// (waiting up to kvm_probe_timeout for a probe another process runs, then giving up without
// a verdict). `node` names who decided in the verdict file. Throws nothing: a probe that cannot
// run leaves no verdict and says why in `summary`.
KvmProbeResult kvm_verdict_or_probe(virConnectPtr conn, const Config &config, const Image &image,
                                    const std::string &key, const std::string &node);

// Runs the probe now, whatever verdict there is (slurm-vm check), and saves what it proves.
// The caller holds no lock: this takes it, waiting as kvm_verdict_or_probe does.
KvmProbeResult run_kvm_probe(virConnectPtr conn, const Config &config, const Image &image,
                             const std::string &key, const std::string &node);

}  // namespace svm
