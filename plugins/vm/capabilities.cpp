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

std::set<std::string> offered_domain_types(const std::string &capabilities_xml,
                                           const std::string &arch) {
    if (!is_valid_arch(arch)) {
        throw Error("architecture '" + printable(arch) + "' is not a valid name");
    }
    // No network, no entities, no error output on stderr (slurmd's stderr goes nowhere).
    std::unique_ptr<xmlDoc, XmlDocFree> doc(xmlReadMemory(
        capabilities_xml.data(), static_cast<int>(capabilities_xml.size()), "capabilities.xml",
        nullptr, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
    if (!doc) {
        throw Error("libvirt's capabilities are not well-formed XML");
    }
    std::unique_ptr<xmlXPathContext, XPathContextFree> ctx(xmlXPathNewContext(doc.get()));
    if (!ctx) {
        throw Error("cannot read libvirt's capabilities: out of memory");
    }
    // Xen-style "xen"/"linux" os types cannot boot our guests: only hvm counts.
    const std::string query = "/capabilities/guest[normalize-space(os_type)='hvm']/arch[@name='" +
                              arch + "']/domain/@type";
    std::unique_ptr<xmlXPathObject, XPathObjectFree> result(
        xmlXPathEvalExpression(reinterpret_cast<const xmlChar *>(query.c_str()), ctx.get()));
    std::set<std::string> types;
    if (!result || result->nodesetval == nullptr) {
        return types;
    }
    for (int i = 0; i < result->nodesetval->nodeNr; ++i) {
        xmlChar *value = xmlNodeGetContent(result->nodesetval->nodeTab[i]);
        if (value != nullptr) {
            if (value[0] != '\0') {
                types.insert(reinterpret_cast<const char *>(value));
            }
            xmlFree(value);
        }
    }
    return types;
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
        } else if (verdict && !verdict->works) {
            choice.fallback_reason = "KVM does not run guests on this host: " + verdict->reason;
        } else {
            choice.type = "kvm";
            choice.probe = !verdict.has_value();
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

std::string choose_domain_type(const std::string &capabilities_xml, const std::string &arch,
                               const std::string &wanted) {
    return choose_domain_type(offered_domain_types(capabilities_xml, arch), wanted, std::nullopt,
                              "")
        .type;
}

}  // namespace svm
