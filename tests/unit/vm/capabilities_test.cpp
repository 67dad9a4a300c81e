#include "vm/capabilities.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace svm {
namespace {

std::string read_data(const std::string &name) {
    std::ifstream in(std::string(SVM_TEST_DATA_DIR) + "/" + name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// The choice from libvirt's offer alone, with no verdict: `auto` is then qemu (KVM not proven).
std::string choose_from_offer(const std::string &capabilities_xml,
                              const std::string &arch = "x86_64",
                              const std::string &wanted = "auto") {
    return choose_domain_type(offered_domain_types(capabilities_xml, arch), wanted, std::nullopt,
                              "")
        .type;
}

std::string choose_error(const std::string &caps, const std::string &arch,
                         const std::string &wanted) {
    try {
        choose_from_offer(caps, arch, wanted);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

TEST(Capabilities, PicksKvmWhenOfferedAndAskedFor) {
    EXPECT_EQ(choose_from_offer(read_data("capabilities_kvm.xml"), "x86_64", "kvm"), "kvm");
    // The offer alone is no proof: `auto` waits for the node's probe.
    EXPECT_EQ(choose_from_offer(read_data("capabilities_kvm.xml")), "qemu");
}

TEST(Capabilities, FallsBackToQemuWithoutKvm) {
    EXPECT_EQ(choose_from_offer(read_data("capabilities_tcg.xml")), "qemu");
}

TEST(Capabilities, HonoursQemuEvenWhereKvmIsOffered) {
    EXPECT_EQ(choose_from_offer(read_data("capabilities_kvm.xml"), "x86_64", "qemu"), "qemu");
}

TEST(Capabilities, RefusesKvmWhenNotOffered) {
    EXPECT_EQ(choose_error(read_data("capabilities_tcg.xml"), "x86_64", "kvm"),
              "domain_type=kvm requested but libvirt offers no kvm domain on this host (is "
              "/dev/kvm present?)");
}

TEST(Capabilities, LooksOnlyAtTheRequestedArch) {
    const std::string caps = R"(<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest>
    <os_type>hvm</os_type>
    <arch name="i686">
      <domain type="qemu"/>
      <domain type="kvm"/>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name="x86_64">
      <domain type="qemu"/>
    </arch>
  </guest>
</capabilities>)";
    EXPECT_EQ(choose_from_offer(caps, "x86_64"), "qemu");
    EXPECT_EQ(choose_error(caps, "x86_64", "kvm").substr(0, 45),
              "domain_type=kvm requested but libvirt offers ");
    EXPECT_EQ(choose_from_offer(caps, "i686", "kvm"), "kvm");
}

TEST(Capabilities, ReportsArchWithoutAnyDomain) {
    EXPECT_EQ(choose_error(read_data("capabilities_tcg.xml"), "aarch64", "auto"),
              "domain_type=auto: libvirt offers no qemu domain on this host (is qemu-system-x86 "
              "installed?)");
}

TEST(Capabilities, RejectsTextThatIsNotXml) {
    EXPECT_EQ(choose_error("", "x86_64", "auto"), "libvirt's capabilities are not well-formed XML");
    EXPECT_EQ(choose_error("<capabilities><guest>", "x86_64", "auto"),
              "libvirt's capabilities are not well-formed XML");
}

TEST(Capabilities, RejectsAnArchThatCouldChangeTheQuery) {
    EXPECT_EQ(choose_error(read_data("capabilities_kvm.xml"), "x86_64' or '1'='1", "auto"),
              "architecture 'x86_64' or '1'='1' is not a valid name");
}

TEST(Capabilities, ListsOnlyHvmDomainTypes) {
    EXPECT_EQ(offered_domain_types(read_data("capabilities_kvm.xml")),
              (std::set<std::string>{"kvm", "qemu"}));
    EXPECT_EQ(offered_domain_types(read_data("capabilities_tcg.xml")),
              (std::set<std::string>{"qemu"}));
}

// The decision `auto` makes from libvirt's offer, the device and what the host learnt.
const std::set<std::string> kKvmOffered = {"kvm", "qemu"};
const std::set<std::string> kTcgOnly = {"qemu"};

KvmVerdict verdict(bool works, const std::string &reason = "") {
    KvmVerdict v;
    v.works = works;
    v.reason = reason;
    v.key = "k";
    return v;
}

// No job's VM is ever KVM's trial: its QEMU is the user's, who could kill it on purpose.
TEST(DomainTypeChoice, AutoUsesTcgUntilTheNodesProbeHasProvedKvm) {
    const DomainTypeChoice c = choose_domain_type(kKvmOffered, "auto", std::nullopt, "");
    EXPECT_EQ(c.type, "qemu");
    EXPECT_EQ(c.fallback_reason, "KVM is not proven on this host yet (no verdict of its probe)");
}

TEST(DomainTypeChoice, AutoUsesKvmWhereTheProbeProvedItWorks) {
    const DomainTypeChoice c = choose_domain_type(kKvmOffered, "auto", verdict(true), "");
    EXPECT_EQ(c.type, "kvm");
    EXPECT_EQ(c.fallback_reason, "");
}

TEST(DomainTypeChoice, AutoSaysSoWhenTheProbeProvedNothing) {
    KvmVerdict v = verdict(false, "the probe guest answered under neither KVM nor TCG");
    v.proven = false;
    const DomainTypeChoice c = choose_domain_type(kKvmOffered, "auto", v, "");
    EXPECT_EQ(c.type, "qemu");
    EXPECT_EQ(c.fallback_reason,
              "KVM is not proven on this host: the probe guest answered under neither KVM nor "
              "TCG");
}

TEST(DomainTypeChoice, AutoFallsBackToTcgWhereKvmIsOfferedButBroken) {
    const DomainTypeChoice c = choose_domain_type(
        kKvmOffered, "auto", verdict(false, "KVM internal error. Suberror: 1"), "");
    EXPECT_EQ(c.type, "qemu");
    EXPECT_EQ(c.fallback_reason,
              "KVM does not run guests on this host: KVM internal error. Suberror: 1");
}

TEST(DomainTypeChoice, AutoFallsBackToTcgWhenQemuCannotOpenTheDevice) {
    const DomainTypeChoice c = choose_domain_type(kKvmOffered, "auto", verdict(true),
                                                  "/dev/kvm is mode 0600 owned by root:root");
    EXPECT_EQ(c.type, "qemu");
    EXPECT_EQ(c.fallback_reason, "/dev/kvm is mode 0600 owned by root:root");
}

TEST(DomainTypeChoice, AutoUsesTcgQuietlyWhereKvmIsNotOffered) {
    const DomainTypeChoice c = choose_domain_type(kTcgOnly, "auto", std::nullopt, "");
    EXPECT_EQ(c.type, "qemu");
    EXPECT_EQ(c.fallback_reason, "");
}

TEST(DomainTypeChoice, KvmNeverFallsBackEvenWhereItFailedBefore) {
    const DomainTypeChoice c =
        choose_domain_type(kKvmOffered, "kvm", verdict(false, "KVM internal error"), "");
    EXPECT_EQ(c.type, "kvm");
}

TEST(DomainTypeChoice, KvmFailsWithTheDeviceProblem) {
    try {
        choose_domain_type(kKvmOffered, "kvm", std::nullopt, "/dev/kvm is mode 0600");
        FAIL() << "expected an error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "domain_type=kvm requested but /dev/kvm is mode 0600");
    }
}

TEST(DomainTypeChoice, QemuNeverTouchesKvm) {
    const DomainTypeChoice c = choose_domain_type(kKvmOffered, "qemu", verdict(true), "");
    EXPECT_EQ(c.type, "qemu");
    EXPECT_EQ(c.fallback_reason, "");
}

TEST(Capabilities, RejectsUnknownWantedType) {
    EXPECT_EQ(choose_error(read_data("capabilities_kvm.xml"), "x86_64", "xen"),
              "domain_type=xen is not one of auto, kvm, qemu");
}

TEST(Capabilities, ListsTheFilesystemDriversLibvirtSupports) {
    const std::string domcaps = R"(<domainCapabilities><devices>
  <filesystem supported='yes'><enum name='driverType'><value>path</value><value>handle</value>
    <value>virtiofs</value></enum></filesystem>
</devices></domainCapabilities>)";
    EXPECT_EQ(offered_filesystem_drivers(domcaps),
              (std::set<std::string>{"handle", "path", "virtiofs"}));
    EXPECT_TRUE(offered_filesystem_drivers(
                    "<domainCapabilities><devices><filesystem supported='no'><enum "
                    "name='driverType'><value>path</value></enum></filesystem></devices>"
                    "</domainCapabilities>")
                    .empty());
}

}  // namespace
}  // namespace svm
