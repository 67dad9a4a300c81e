#include "vm/capabilities.h"

#include "util/error.h"
#include "util/text.h"

#include <libxml/parser.h>
#include <libxml/xpath.h>

#include <cctype>
#include <memory>

namespace svm {

namespace {

struct XmlDocFree {
    void operator()(xmlDoc *doc) const noexcept { xmlFreeDoc(doc); }
};
struct XPathContextFree {
    void operator()(xmlXPathContext *ctx) const noexcept { xmlXPathFreeContext(ctx); }
};
struct XPathObjectFree {
    void operator()(xmlXPathObject *obj) const noexcept { xmlXPathFreeObject(obj); }
};

bool is_valid_arch(const std::string &arch) {
    if (arch.empty() || arch.size() > 32) {
        return false;
    }
    for (char c : arch) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) {
            return false;
        }
    }
    return true;
}

}  // namespace

namespace {

// The non-empty string values `query` selects in `xml`. libxml2 with no network, no entities
// and no output on stderr (slurmd's stderr goes nowhere). Throws Error "<what> are not
// well-formed XML".
std::set<std::string> xpath_values(const std::string &xml, const std::string &query,
                                   const std::string &what) {
    std::unique_ptr<xmlDoc, XmlDocFree> doc(
        xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "libvirt.xml", nullptr,
                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
    if (!doc) {
        throw Error(what + " are not well-formed XML");
    }
    std::unique_ptr<xmlXPathContext, XPathContextFree> ctx(xmlXPathNewContext(doc.get()));
    if (!ctx) {
        throw Error("cannot read " + what + ": out of memory");
    }
    std::unique_ptr<xmlXPathObject, XPathObjectFree> result(
        xmlXPathEvalExpression(reinterpret_cast<const xmlChar *>(query.c_str()), ctx.get()));
    std::set<std::string> values;
    if (!result || result->nodesetval == nullptr) {
        return values;
    }
    for (int i = 0; i < result->nodesetval->nodeNr; ++i) {
        xmlChar *value = xmlNodeGetContent(result->nodesetval->nodeTab[i]);
        if (value != nullptr) {
            if (value[0] != '\0') {
                values.insert(reinterpret_cast<const char *>(value));
            }
            xmlFree(value);
        }
    }
    return values;
}

}  // namespace

std::set<std::string> offered_domain_types(const std::string &capabilities_xml,
                                           const std::string &arch) {
    if (!is_valid_arch(arch)) {
        throw Error("architecture '" + printable(arch) + "' is not a valid name");
    }
    // Xen-style "xen"/"linux" os types cannot boot our guests: only hvm counts.
    return xpath_values(capabilities_xml,
                        "/capabilities/guest[normalize-space(os_type)='hvm']/arch[@name='" + arch +
                            "']/domain/@type",
                        "libvirt's capabilities");
}

std::set<std::string> offered_filesystem_drivers(const std::string &domain_capabilities_xml) {
    return xpath_values(domain_capabilities_xml,
                        "/domainCapabilities/devices/filesystem[@supported='yes']"
                        "/enum[@name='driverType']/value",
                        "libvirt's domain capabilities");
}

DomainTypeChoice choose_domain_type(const std::set<std::string> &offered, const std::string &wanted,
                                    const std::optional<KvmVerdict> &verdict,
                                    const std::string &device_problem) {
    if (wanted != "auto" && wanted != "kvm" && wanted != "qemu") {
        throw Error("domain_type=" + printable(wanted) + " is not one of auto, kvm, qemu");
    }
    const bool kvm = offered.contains("kvm");
    DomainTypeChoice choice;
    if (wanted == "kvm") {
        if (!kvm) {
            throw Error(
                "domain_type=kvm requested but libvirt offers no kvm domain on this host (is "
                "/dev/kvm present?)");
        }
        if (!device_problem.empty()) {
            throw Error("domain_type=kvm requested but " + device_problem);
        }
        // Never falls back, even where KVM failed before: the admin asked for it.
        choice.type = "kvm";
        return choice;
    }
    if (wanted == "auto" && kvm) {
        if (!device_problem.empty()) {
            choice.fallback_reason = device_problem;
        } else if (!verdict) {
            choice.fallback_reason = "KVM is not proven on this host yet (no verdict of its probe)";
        } else if (!verdict->works) {
            choice.fallback_reason = (verdict->proven ? "KVM does not run guests on this host: "
                                                      : "KVM is not proven on this host: ") +
                                     verdict->reason;
        } else {
            choice.type = "kvm";
            return choice;
        }
    }
    if (!offered.contains("qemu")) {
        throw Error("domain_type=" + wanted +
                    ": libvirt offers no qemu domain on this host (is qemu-system-x86 "
                    "installed?)");
    }
    choice.type = "qemu";
    return choice;
}

}  // namespace svm
