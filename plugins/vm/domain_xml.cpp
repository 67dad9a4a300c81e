#include "vm/domain_xml.h"

#include "util/cpu_list.h"
#include "util/error.h"
#include "util/text.h"

#include <cstdio>
#include <cstdlib>

#include <algorithm>

namespace svm {

namespace {

bool is_metadata_key(std::string_view key) {
    if (key.empty()) {
        return false;
    }
    for (char c : key) {
        if (!((c >= 'a' && c <= 'z') || c == '_')) {
            return false;
        }
    }
    return true;
}

// `text` has lower-case hex digits where `shape` has 'x' and the same character elsewhere.
bool matches_hex_shape(std::string_view text, std::string_view shape) {
    if (text.size() != shape.size()) {
        return false;
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        if (shape[i] == 'x' ? !hex : c != shape[i]) {
            return false;
        }
    }
    return true;
}

bool is_uuid(std::string_view text) {
    return matches_hex_shape(text, "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx");
}

bool is_mac(std::string_view text) {
    return matches_hex_shape(text, "xx:xx:xx:xx:xx:xx");
}

// Accumulates the XML; every value goes through value(), which names the field on failure.
class DomainWriter {
  public:
    explicit DomainWriter(std::string domain) : domain_(std::move(domain)) {}

    [[noreturn]] void fail(std::string_view field, const std::string &reason) const {
        throw Error("domain XML for '" + printable(domain_) + "': field '" + std::string(field) +
                    "': " + reason);
    }

    std::string value(std::string_view field, std::string_view text) const {
        try {
            return xml_escape(text);
        } catch (const Error &e) {
            fail(field, e.what());
        }
    }

    std::string nonempty(std::string_view field, std::string_view text) const {
        if (text.empty()) {
            fail(field, "is empty");
        }
        return value(field, text);
    }

    void line(const std::string &text) { xml_ += text + "\n"; }
    const std::string &xml() const { return xml_; }

  private:
    std::string domain_;
    std::string xml_;
};

void write_metadata(DomainWriter &w, const VmSpec &spec) {
    std::string element = "    <svm:job xmlns:svm='" + xml_escape(metadata_namespace) + "'";
    for (const auto &[key, val] : spec.metadata) {
        if (!is_metadata_key(key)) {
            w.fail("metadata", "key '" + printable(key) + "' does not match [a-z_]+");
        }
        element += " " + key + "='" + w.value("metadata " + key, val) + "'";
    }
    w.line("  <metadata>");
    w.line(element + "/>");
    w.line("  </metadata>");
}

void write_os(DomainWriter &w, const VmSpec &spec) {
    w.line("  <os>");
    // x86_64 only for now: the guest kernels we build and the measured boot path are x86.
    w.line("    <type arch='x86_64' machine='pc'>hvm</type>");
    if (!spec.uefi_code.empty()) {
        // Explicit files rather than libvirt's firmware auto-selection: the variable store is
        // the VM's own file, writable by the job's user QEMU runs as, and goes with the VM.
        w.line("    <loader readonly='yes' secure='no' type='pflash'>" +
               w.value("uefi_code", spec.uefi_code) + "</loader>");
        w.line("    <nvram>" + w.nonempty("uefi_vars", spec.uefi_vars) + "</nvram>");
    }
    if (!spec.kernel.empty()) {
        w.line("    <kernel>" + w.value("kernel", spec.kernel) + "</kernel>");
        if (!spec.initrd.empty()) {
            w.line("    <initrd>" + w.value("initrd", spec.initrd) + "</initrd>");
        }
        if (!spec.cmdline.empty()) {
            w.line("    <cmdline>" + w.value("cmdline", spec.cmdline) + "</cmdline>");
        }
    } else {
        w.line("    <boot dev='hd'/>");
    }
    w.line("  </os>");
}

void write_disk(DomainWriter &w, const VmSpec &spec) {
    const std::string format = spec.disk_format.empty() ? "qcow2" : spec.disk_format;
    if (format != "qcow2" && format != "raw") {
        w.fail("disk_format", "expected qcow2 or raw, got '" + printable(format) + "'");
    }
    w.line("    <disk type='file' device='disk'>");
    // writeback, not none: cache='none' needs O_DIRECT, which tmpfs and some overlay
    // directories refuse; the overlay is thrown away with the job anyway.
    w.line("      <driver name='qemu' type='" + format + "' cache='writeback'/>");
    w.line("      <source file='" + w.value("disk", spec.disk) + "'/>");
    w.line("      <target dev='vda' bus='virtio'/>");
    w.line("    </disk>");
}

void write_shares(DomainWriter &w, const VmSpec &spec) {
    for (const Share &share : spec.shares) {
        if (!share.virtiofs_socket.empty()) {
            if (share.readonly) {
                w.fail("share " + share.tag, "virtiofs shares are read-write (libvirt 9.0)");
            }
            w.line("    <filesystem type='mount'>");
            w.line("      <driver type='virtiofs' queue='1024'/>");
            w.line("      <source socket='" + w.value("virtiofs_socket", share.virtiofs_socket) +
                   "'/>");
            w.line("      <target dir='" + w.nonempty("share tag", share.tag) + "'/>");
            w.line("    </filesystem>");
            continue;
        }
        w.line("    <filesystem type='mount' accessmode='passthrough'>");
        w.line("      <source dir='" + w.nonempty("share host_path", share.host_path) + "'/>");
        w.line("      <target dir='" + w.nonempty("share tag", share.tag) + "'/>");
        if (share.readonly) {
            w.line("      <readonly/>");
        }
        w.line("    </filesystem>");
    }
}

void write_channels(DomainWriter &w, const VmSpec &spec) {
    if (spec.exec_ports > 0 && spec.channel_dir.empty()) {
        w.fail("channel_dir", "is empty but exec_ports is " + std::to_string(spec.exec_ports));
    }
    for (unsigned i = 0; i < spec.exec_ports; ++i) {
        const std::string port = std::to_string(i);
        w.line("    <channel type='unix'>");
        w.line("      <source mode='bind' path='" + w.value("channel_dir", spec.channel_dir) +
               "/exec." + port + ".sock'/>");
        w.line("      <target type='virtio' name='org.slurmvm.exec." + port + "'/>");
        w.line("    </channel>");
    }
}

void write_devices(DomainWriter &w, const VmSpec &spec) {
    w.line("  <devices>");
    if (!spec.disk.empty()) {
        write_disk(w, spec);
    }
    write_shares(w, spec);
    if (spec.user_network) {
        // User-mode NAT: outbound only, no root helper, no bridge (passt is not accepted by
        // libvirt 9.0's XML). The guest gets 10.0.2.15 by DHCP; the host is 10.0.2.2.
        w.line("    <interface type='user'>");
        if (!spec.mac.empty()) {
            w.line("      <mac address='" + spec.mac + "'/>");
        }
        w.line("      <model type='virtio'/>");
        w.line("    </interface>");
    }
    if (!spec.console_log.empty()) {
        w.line("    <serial type='file'>");
        w.line("      <source path='" + w.value("console_log", spec.console_log) + "'/>");
        w.line("    </serial>");
    }
    write_channels(w, spec);
    // No USB controller and no balloon: fewer devices to emulate makes TCG boots faster, and
    // the VM's memory is the job's allocation, not something to reclaim.
    w.line("    <controller type='usb' model='none'/>");
    w.line("    <memballoon model='none'/>");
    w.line("  </devices>");
}

// One vCPU per allocated CPU is the usual sizing, but an image's max_vcpus may make fewer, and
// an image's default more: round-robin covers both. The emulator threads (QEMU's main loop,
// I/O, TCG's when not per-vCPU) may run on any allocated CPU, never outside the allocation.
void write_cputune(DomainWriter &w, const VmSpec &spec) {
    if (spec.cpus.empty()) {
        return;
    }
    for (unsigned cpu : spec.cpus) {
        if (cpu >= kMaxCpuId) {
            w.fail("cpus",
                   "CPU id " + std::to_string(cpu) + " is not below " + std::to_string(kMaxCpuId));
        }
    }
    w.line("  <cputune>");
    for (unsigned vcpu = 0; vcpu < spec.vcpus; ++vcpu) {
        w.line("    <vcpupin vcpu='" + std::to_string(vcpu) + "' cpuset='" +
               std::to_string(spec.cpus[vcpu % spec.cpus.size()]) + "'/>");
    }
    w.line("    <emulatorpin cpuset='" + format_cpu_list(spec.cpus) + "'/>");
    w.line("  </cputune>");
}

void check_spec(const DomainWriter &w, const VmSpec &spec) {
    if (spec.domain_type != "kvm" && spec.domain_type != "qemu") {
        w.fail("domain_type", "expected kvm or qemu, got '" + printable(spec.domain_type) + "'");
    }
    if (spec.vcpus == 0) {
        w.fail("vcpus", "must be at least 1");
    }
    if (spec.memory_mib == 0) {
        w.fail("memory_mib", "must be at least 1");
    }
    if (spec.kernel.empty() && spec.disk.empty()) {
        w.fail("kernel", "neither a kernel nor a disk to boot from");
    }
    if (!spec.uuid.empty() && !is_uuid(spec.uuid)) {
        w.fail("uuid",
               "expected 8-4-4-4-12 lower-case hex digits, got '" + printable(spec.uuid) + "'");
    }
    if (!spec.mac.empty() && !is_mac(spec.mac)) {
        w.fail("mac", "expected six lower-case hex pairs separated by ':', got '" +
                          printable(spec.mac) + "'");
    }
    if (!spec.uefi_code.empty() && (spec.disk.empty() || !spec.kernel.empty())) {
        w.fail("uefi_code", "UEFI boots a disk without a kernel");
    }
}

// Decodes the five named entities and numeric character references.
}  // namespace

std::string xml_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '\'':
                out += "&apos;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\n':
                out += "&#10;";
                break;
            case '\t':
                out += "&#9;";
                break;
            case '\0':
                throw Error("cannot put a NUL byte into XML");
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char code[8];
                    std::snprintf(code, sizeof code, "0x%02x", static_cast<unsigned char>(c));
                    throw Error("cannot put control character " + std::string(code) + " into XML");
                }
                out += c;
        }
    }
    return out;
}

std::string render_domain_xml(const VmSpec &spec) {
    DomainWriter w(spec.name);
    check_spec(w, spec);
    w.line("<domain type='" + spec.domain_type + "'>");
    w.line("  <name>" + w.nonempty("name", spec.name) + "</name>");
    if (!spec.uuid.empty()) {
        w.line("  <uuid>" + spec.uuid + "</uuid>");
    }
    write_metadata(w, spec);
    w.line("  <memory unit='MiB'>" + std::to_string(spec.memory_mib) + "</memory>");
    w.line("  <vcpu>" + std::to_string(spec.vcpus) + "</vcpu>");
    write_cputune(w, spec);
    const bool virtiofs = std::any_of(spec.shares.begin(), spec.shares.end(),
                                      [](const Share &s) { return !s.virtiofs_socket.empty(); });
    if (virtiofs) {
        // vhost-user: virtiofsd maps the guest's memory, so it must be shareable.
        w.line("  <memoryBacking>");
        w.line("    <source type='memfd'/>");
        w.line("    <access mode='shared'/>");
        w.line("  </memoryBacking>");
    }
    write_os(w, spec);
    w.line("  <features>");
    w.line("    <acpi/>");  // ACPI power button: the graceful shutdown path
    w.line("  </features>");
    if (spec.domain_type == "kvm") {
        // TCG cannot pass the host CPU through; under KVM it is the fastest model.
        w.line("  <cpu mode='host-passthrough'/>");
    }
    // A job VM never comes back by itself: any stop is the end of it, and the epilog cleans up.
    w.line("  <on_poweroff>destroy</on_poweroff>");
    w.line("  <on_reboot>destroy</on_reboot>");
    w.line("  <on_crash>destroy</on_crash>");
    write_devices(w, spec);
    if (spec.run_as) {
        w.line("  <seclabel type='static' model='dac' relabel='no'>");
        w.line("    <label>+" + std::to_string(spec.run_as->first) + ":+" +
               std::to_string(spec.run_as->second) + "</label>");
        w.line("  </seclabel>");
    }
    w.line("</domain>");
    return w.xml();
}

}  // namespace svm
