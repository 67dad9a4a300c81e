// Which libvirt domain type to ask for: "kvm" where KVM really runs guests, "qemu" (TCG
// emulation) elsewhere. libvirt's offer alone is not enough: a host can have a /dev/kvm that
// libvirt offers and every guest dies on (nested virtualisation on cloud nodes, a kvm module
// that loads but cannot run a guest), or one that QEMU, running as the job's user, cannot open.
// So `auto` takes the offer, the device's mode and what this host has learnt about KVM
// (kvm_verdict.h) into account; `kvm` and `qemu` are the admin's word and never fall back.
#pragma once

#include "vm/kvm_verdict.h"

#include <optional>
#include <set>
#include <string>

namespace svm {

// The domain types libvirt offers for hvm guests of `arch`, from virConnectGetCapabilities()
// output. Throws Error when the text is not capabilities XML.
std::set<std::string> offered_domain_types(const std::string &capabilities_xml,
                                           const std::string &arch = "x86_64");

// The filesystem driver types libvirt's QEMU offers, from virConnectGetDomainCapabilities()
// output: "path" is 9p, "virtiofs" virtiofs. Throws Error when the text is not XML.
std::set<std::string> offered_filesystem_drivers(const std::string &domain_capabilities_xml);

struct DomainTypeChoice {
    std::string type;  // "kvm" or "qemu"
    // Why `auto` took qemu although libvirt offers kvm; "" otherwise. For the node's log.
    std::string fallback_reason;
};

// `wanted` is the configured domain_type (auto | kvm | qemu). `verdict` is what this host's
// probe learnt about KVM, if anything (vm/kvm_probe.h: the caller probes first where there is
// no verdict); `device_problem` is kvm_device_problem() for the user QEMU runs as ("" when it
// can open /dev/kvm). `auto` takes kvm only on a verdict that KVM works: without one, qemu.
// Throws Error when the wanted type cannot be had.
DomainTypeChoice choose_domain_type(const std::set<std::string> &offered, const std::string &wanted,
                                    const std::optional<KvmVerdict> &verdict,
                                    const std::string &device_problem);

}  // namespace svm
