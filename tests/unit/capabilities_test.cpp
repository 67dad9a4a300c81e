#include "capabilities.h"

#include "error.h"

#include <gtest/gtest.h>

#include <fstream>
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

std::string choose_error(const std::string &caps, const std::string &arch,
                         const std::string &wanted) {
    try {
        choose_domain_type(caps, arch, wanted);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

TEST(Capabilities, PicksKvmWhenOffered) {
    EXPECT_EQ(choose_domain_type(read_data("capabilities_kvm.xml")), "kvm");
    EXPECT_EQ(choose_domain_type(read_data("capabilities_kvm.xml"), "x86_64", "kvm"), "kvm");
}

TEST(Capabilities, FallsBackToQemuWithoutKvm) {
    EXPECT_EQ(choose_domain_type(read_data("capabilities_tcg.xml")), "qemu");
}

TEST(Capabilities, HonoursQemuEvenWhereKvmIsOffered) {
    EXPECT_EQ(choose_domain_type(read_data("capabilities_kvm.xml"), "x86_64", "qemu"), "qemu");
}

TEST(Capabilities, RefusesKvmWhenNotOffered) {
    EXPECT_EQ(choose_error(read_data("capabilities_tcg.xml"), "x86_64", "kvm"),
              "domain_type=kvm requested but libvirt offers no kvm domain for x86_64 on this "
              "host (is /dev/kvm present?)");
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
    EXPECT_EQ(choose_domain_type(caps, "x86_64"), "qemu");
    EXPECT_EQ(choose_domain_type(caps, "i686"), "kvm");
}

TEST(Capabilities, ReportsArchWithoutAnyDomain) {
    EXPECT_EQ(choose_error(read_data("capabilities_tcg.xml"), "aarch64", "auto"),
              "domain_type=auto: libvirt offers no qemu domain for aarch64 on this host (is "
              "qemu-system-aarch64 installed?)");
    EXPECT_EQ(choose_error("", "x86_64", "auto"),
              "domain_type=auto: libvirt offers no qemu domain for x86_64 on this host (is "
              "qemu-system-x86_64 installed?)");
}

TEST(Capabilities, RejectsUnknownWantedType) {
    EXPECT_EQ(choose_error(read_data("capabilities_kvm.xml"), "x86_64", "xen"),
              "domain_type=xen is not one of auto, kvm, qemu");
}

}  // namespace
}  // namespace svm
