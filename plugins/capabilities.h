// Which libvirt domain type to ask for: "kvm" where the host offers hardware virtualisation,
// "qemu" (TCG emulation) elsewhere. Decided from the host's capabilities, never hard-coded, so
// the same configuration works on a KVM cluster and in a container without /dev/kvm.
#pragma once

#include <string>

namespace svm {

// `capabilities_xml` is virConnectGetCapabilities() output; `wanted` is the configured
// domain_type (auto | kvm | qemu). Throws Error when the wanted type is not offered for `arch`.
std::string choose_domain_type(const std::string &capabilities_xml,
                               const std::string &arch = "x86_64",
                               const std::string &wanted = "auto");

}  // namespace svm
