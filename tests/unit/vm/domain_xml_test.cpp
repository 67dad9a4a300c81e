#include "vm/domain_xml.h"

#include "util/error.h"

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

VmSpec kernel_boot_spec() {
    VmSpec spec;
    spec.name = "svm-42-node1";
    spec.domain_type = "qemu";
    spec.vcpus = 1;
    spec.memory_mib = 256;
    spec.kernel = "/var/cache/slurm-vm/guest/X/vmlinux";
    spec.initrd = "/var/cache/slurm-vm/guest/X/initrd.img";
    spec.cmdline = "console=ttyS0 quiet";
    spec.disk = "/var/lib/slurm-vm/42/node1.qcow2";
    spec.disk_format = "qcow2";
    spec.shares = {{"svm0", "/home", "/home", false, ""},
                   {"svm1", "/opt/software", "/opt/software", true, ""}};
    spec.console_log = "/var/log/slurm-vm/42-node1.console.log";
    spec.channel_dir = "/run/slurm-vm/42/node1";
    spec.exec_ports = 2;
    spec.run_as = std::make_pair(1000u, 1000u);
    spec.metadata = {{"jobid", "42"}, {"node", "node1"}, {"image", "tiny"}, {"user", "alice"}};
    return spec;
}

VmSpec firmware_boot_spec() {
    VmSpec spec;
    spec.name = "svm-7-gpu03";
    spec.domain_type = "kvm";
    spec.vcpus = 4;
    spec.memory_mib = 8192;
    spec.disk = "/var/lib/slurm-vm/7/gpu03.img";
    spec.disk_format = "raw";
    spec.channel_dir = "/run/slurm-vm/7/gpu03";
    spec.exec_ports = 1;
    spec.metadata = {{"jobid", "7"}};
    return spec;
}

std::string render_error(const VmSpec &spec) {
    try {
        render_domain_xml(spec);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

TEST(DomainXml, RendersKernelBootGuestExactly) {
    EXPECT_EQ(render_domain_xml(kernel_boot_spec()), read_data("domain_kernel_qemu.xml"));
}

TEST(DomainXml, RendersFirmwareBootKvmGuestExactly) {
    EXPECT_EQ(render_domain_xml(firmware_boot_spec()), read_data("domain_disk_kvm.xml"));
}

TEST(DomainXml, PassesHostCpuThroughOnlyUnderKvm) {
    VmSpec spec = kernel_boot_spec();
    EXPECT_EQ(render_domain_xml(spec).find("host-passthrough"), std::string::npos);
    spec.domain_type = "kvm";
    EXPECT_NE(render_domain_xml(spec).find("<cpu mode='host-passthrough'/>"), std::string::npos);
}

TEST(DomainXml, KeepsAGivenUuidAndMac) {
    VmSpec spec = kernel_boot_spec();
    spec.user_network = true;
    spec.uuid = "0123abcd-0000-4000-8000-00000000beef";
    spec.mac = "52:54:00:0a:0b:0c";
    const std::string xml = render_domain_xml(spec);
    EXPECT_NE(xml.find("<uuid>0123abcd-0000-4000-8000-00000000beef</uuid>"), std::string::npos);
    EXPECT_NE(xml.find("<mac address='52:54:00:0a:0b:0c'/>"), std::string::npos);
    spec.uuid = "";
    spec.mac = "";
    const std::string plain = render_domain_xml(spec);
    EXPECT_EQ(plain.find("<uuid>"), std::string::npos);
    EXPECT_EQ(plain.find("<mac "), std::string::npos);
}

TEST(DomainXml, RejectsMalformedUuidOrMacNamingTheField) {
    VmSpec spec = kernel_boot_spec();
    spec.uuid = "0123ABCD-0000-4000-8000-00000000beef";
    try {
        render_domain_xml(spec);
        FAIL() << "accepted an upper-case uuid";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("field 'uuid'"), std::string::npos) << e.what();
    }
    spec.uuid = "";
    spec.mac = "52:54:00:0a:0b:0c'/><x";
    try {
        render_domain_xml(spec);
        FAIL() << "accepted a malformed mac";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("field 'mac'"), std::string::npos) << e.what();
    }
}

TEST(DomainXml, EscapesHostileValues) {
    VmSpec spec = kernel_boot_spec();
    spec.cmdline = "console=ttyS0 '><script>&\"\ninit=/bin/sh";
    spec.console_log = "/var/log/a'/><evil x='";
    spec.metadata["user"] = "o'brien & \"co\" <x>";
    const std::string xml = render_domain_xml(spec);
    EXPECT_NE(xml.find("<cmdline>console=ttyS0 &apos;&gt;&lt;script&gt;&amp;&quot;&#10;init=/bin/"
                       "sh</cmdline>"),
              std::string::npos);
    EXPECT_NE(xml.find("<source path='/var/log/a&apos;/&gt;&lt;evil x=&apos;'/>"),
              std::string::npos);
    EXPECT_NE(xml.find("user='o&apos;brien &amp; &quot;co&quot; &lt;x&gt;'"), std::string::npos);
    EXPECT_EQ(xml.find("<script>"), std::string::npos);
    EXPECT_EQ(xml.find("<evil"), std::string::npos);
}

TEST(DomainXml, RejectsNulInAnyValueNamingTheField) {
    VmSpec spec = kernel_boot_spec();
    spec.cmdline = std::string("quiet\0init=/bin/sh", 18);
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-42-node1': field 'cmdline': cannot put a NUL byte into XML");
}

TEST(DomainXml, RejectsControlCharactersNamingTheField) {
    VmSpec spec = kernel_boot_spec();
    spec.shares[0].host_path = "/home\x1b[31m";
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-42-node1': field 'share host_path': cannot put control "
              "character 0x1b into XML");
    spec = kernel_boot_spec();
    spec.metadata["image"] = "tiny\r";
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-42-node1': field 'metadata image': cannot put control "
              "character 0x0d into XML");
}

TEST(DomainXml, RejectsMetadataKeysOutsideLowerCaseAndUnderscore) {
    VmSpec spec = kernel_boot_spec();
    spec.metadata["job-id"] = "1";
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-42-node1': field 'metadata': key 'job-id' does not match "
              "[a-z_]+");
}

TEST(DomainXml, RejectsSpecWithoutBootSource) {
    VmSpec spec = kernel_boot_spec();
    spec.kernel.clear();
    spec.disk.clear();
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-42-node1': field 'kernel': neither a kernel nor a disk to boot "
              "from");
}

TEST(DomainXml, RejectsUnknownDomainType) {
    VmSpec spec = kernel_boot_spec();
    spec.domain_type = "auto";
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-42-node1': field 'domain_type': expected kvm or qemu, got "
              "'auto'");
}

TEST(DomainXml, RejectsExecPortsWithoutChannelDir) {
    VmSpec spec = kernel_boot_spec();
    spec.channel_dir.clear();
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-42-node1': field 'channel_dir': is empty but exec_ports is 2");
}

TEST(XmlEscape, EscapesMarkupAndKeepsTabsAndNewlines) {
    EXPECT_EQ(xml_escape("a&b<c>d'e\"f"), "a&amp;b&lt;c&gt;d&apos;e&quot;f");
    EXPECT_EQ(xml_escape("a\tb\nc"), "a&#9;b&#10;c");
    EXPECT_EQ(xml_escape("caf\xc3\xa9"), "caf\xc3\xa9");
}

TEST(XmlEscape, RejectsNulAndControlCharacters) {
    EXPECT_THROW(xml_escape(std::string("a\0b", 3)), Error);
    EXPECT_THROW(xml_escape("a\x01"), Error);
    EXPECT_THROW(xml_escape("a\r"), Error);
}

TEST(DomainXml, GivesAUserModeNicOnlyWhenAsked) {
    VmSpec spec = kernel_boot_spec();
    EXPECT_EQ(render_domain_xml(spec).find("<interface"), std::string::npos);
    spec.user_network = true;
    const std::string xml = render_domain_xml(spec);
    EXPECT_NE(xml.find("<interface type='user'>\n      <model type='virtio'/>"), std::string::npos)
        << xml;
}

TEST(DomainXml, ServesAVirtiofsShareFromItsSocketWithSharedMemory) {
    VmSpec spec = kernel_boot_spec();
    EXPECT_EQ(render_domain_xml(spec).find("<memoryBacking>"), std::string::npos);
    spec.shares = {{"svm0", "/home", "/home", false, "/var/lib/slurm-vm/jobs/x/virtiofs.0.sock"}};
    const std::string xml = render_domain_xml(spec);
    EXPECT_NE(xml.find("  <memoryBacking>\n    <source type='memfd'/>\n"
                       "    <access mode='shared'/>\n  </memoryBacking>\n"),
              std::string::npos)
        << xml;
    EXPECT_NE(xml.find("    <filesystem type='mount'>\n"
                       "      <driver type='virtiofs' queue='1024'/>\n"
                       "      <source socket='/var/lib/slurm-vm/jobs/x/virtiofs.0.sock'/>\n"
                       "      <target dir='svm0'/>\n"
                       "    </filesystem>"),
              std::string::npos)
        << xml;
    spec.shares[0].readonly = true;
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-42-node1': field 'share svm0': virtiofs shares are read-write "
              "(libvirt 9.0)");
}

TEST(DomainXml, BootsUefiFromTheFirmwaresCodeAndTheVmsOwnVariables) {
    VmSpec spec = firmware_boot_spec();
    spec.uefi_code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    spec.uefi_vars = "/var/lib/slurm-vm/jobs/svm-7-gpu03/uefi-vars.fd";
    const std::string xml = render_domain_xml(spec);
    EXPECT_NE(xml.find("    <type arch='x86_64' machine='pc'>hvm</type>\n"
                       "    <loader readonly='yes' secure='no' type='pflash'>"
                       "/usr/share/OVMF/OVMF_CODE_4M.fd</loader>\n"
                       "    <nvram>/var/lib/slurm-vm/jobs/svm-7-gpu03/uefi-vars.fd</nvram>\n"
                       "    <boot dev='hd'/>"),
              std::string::npos)
        << xml;
    EXPECT_EQ(render_domain_xml(firmware_boot_spec()).find("<loader"), std::string::npos);
}

TEST(DomainXml, RefusesUefiWithoutItsVariablesOrWithADirectKernel) {
    VmSpec spec = firmware_boot_spec();
    spec.uefi_code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    EXPECT_EQ(render_error(spec), "domain XML for 'svm-7-gpu03': field 'uefi_vars': is empty");
    spec = kernel_boot_spec();
    spec.uefi_code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    spec.uefi_vars = "/x.fd";
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-42-node1': field 'uefi_code': UEFI boots a disk without a "
              "kernel");
}

}  // namespace
}  // namespace svm

namespace svm {
namespace {

// The XML of `spec` without pinning, with `cputune` inserted right after the <vcpu> line.
std::string with_cputune(const VmSpec &spec, const std::string &cputune) {
    VmSpec unpinned = spec;
    unpinned.cpus.clear();
    std::string xml = render_domain_xml(unpinned);
    const std::string vcpu = "  <vcpu>" + std::to_string(spec.vcpus) + "</vcpu>\n";
    const std::size_t at = xml.find(vcpu);
    EXPECT_NE(at, std::string::npos);
    return xml.insert(at + vcpu.size(), cputune);
}

TEST(DomainXml, PinsEachVcpuRoundRobinAndTheEmulatorOnAllAllocatedCpus) {
    VmSpec spec = firmware_boot_spec();  // 4 vCPUs
    spec.cpus = {2, 3};
    EXPECT_EQ(render_domain_xml(spec), with_cputune(spec,
                                                    "  <cputune>\n"
                                                    "    <vcpupin vcpu='0' cpuset='2'/>\n"
                                                    "    <vcpupin vcpu='1' cpuset='3'/>\n"
                                                    "    <vcpupin vcpu='2' cpuset='2'/>\n"
                                                    "    <vcpupin vcpu='3' cpuset='3'/>\n"
                                                    "    <emulatorpin cpuset='2-3'/>\n"
                                                    "  </cputune>\n"));
}

TEST(DomainXml, PinsOneVcpuPerCpuAndFewerVcpusThanCpus) {
    VmSpec spec = kernel_boot_spec();
    spec.vcpus = 2;
    spec.cpus = {0, 8};
    EXPECT_EQ(render_domain_xml(spec), with_cputune(spec,
                                                    "  <cputune>\n"
                                                    "    <vcpupin vcpu='0' cpuset='0'/>\n"
                                                    "    <vcpupin vcpu='1' cpuset='8'/>\n"
                                                    "    <emulatorpin cpuset='0,8'/>\n"
                                                    "  </cputune>\n"));
    spec.vcpus = 1;
    spec.cpus = {4, 5, 6, 10, 11};
    EXPECT_EQ(render_domain_xml(spec), with_cputune(spec,
                                                    "  <cputune>\n"
                                                    "    <vcpupin vcpu='0' cpuset='4'/>\n"
                                                    "    <emulatorpin cpuset='4-6,10-11'/>\n"
                                                    "  </cputune>\n"));
}

TEST(DomainXml, PinsNothingWithoutAllocatedCpus) {
    VmSpec spec = firmware_boot_spec();
    EXPECT_EQ(render_domain_xml(spec).find("cputune"), std::string::npos);
    EXPECT_EQ(render_domain_xml(spec), read_data("domain_disk_kvm.xml"));
}

TEST(DomainXml, RefusesACpuIdOutOfBoundsNamingTheField) {
    VmSpec spec = firmware_boot_spec();
    spec.cpus = {1, 8192};
    EXPECT_EQ(render_error(spec),
              "domain XML for 'svm-7-gpu03': field 'cpus': CPU id 8192 is not below 8192");
}

}  // namespace
}  // namespace svm
