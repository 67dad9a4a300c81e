#include "capabilities.h"

#include "error.h"
#include "image_name.h"

#include <set>
#include <string_view>

namespace svm {

namespace {

// The value of attribute `name` in the start tag beginning at `tag` (either quote style).
std::string attribute_value(std::string_view tag, std::string_view name) {
    const std::size_t tag_end = tag.find('>');
    tag = tag.substr(0, tag_end);
    for (std::size_t pos = tag.find(name); pos != std::string_view::npos;
         pos = tag.find(name, pos + 1)) {
        const bool starts_word =
            pos > 0 && (tag[pos - 1] == ' ' || tag[pos - 1] == '\t' || tag[pos - 1] == '\n');
        std::size_t i = pos + name.size();
        while (i < tag.size() && tag[i] == ' ') {
            ++i;
        }
        if (!starts_word || i >= tag.size() || tag[i] != '=') {
            continue;
        }
        ++i;
        while (i < tag.size() && tag[i] == ' ') {
            ++i;
        }
        if (i >= tag.size() || (tag[i] != '\'' && tag[i] != '"')) {
            continue;
        }
        const std::size_t close = tag.find(tag[i], i + 1);
        if (close == std::string_view::npos) {
            return "";
        }
        return std::string(tag.substr(i + 1, close - i - 1));
    }
    return "";
}

// Each element named `element` in `xml` (start tag to matching end tag, or the self-closing
// tag). These elements do not nest in capabilities XML, so the first end tag is the match.
template <typename Visit>
void for_each_element(std::string_view xml, std::string_view element, Visit visit) {
    const std::string open = "<" + std::string(element);
    const std::string close = "</" + std::string(element) + ">";
    for (std::size_t pos = xml.find(open); pos != std::string_view::npos;
         pos = xml.find(open, pos + 1)) {
        const std::size_t after = pos + open.size();
        if (after >= xml.size() ||
            !(xml[after] == ' ' || xml[after] == '>' || xml[after] == '/' || xml[after] == '\n')) {
            continue;  // <guestfoo>, not <guest>
        }
        const std::size_t tag_end = xml.find('>', pos);
        if (tag_end == std::string_view::npos) {
            return;
        }
        std::size_t end = tag_end + 1;
        if (xml[tag_end - 1] != '/') {
            const std::size_t close_pos = xml.find(close, tag_end);
            end = close_pos == std::string_view::npos ? xml.size() : close_pos + close.size();
        }
        visit(xml.substr(pos, end - pos));
        pos = end - 1;
    }
}

// The domain types libvirt offers for hvm guests of `arch`.
std::set<std::string> offered_domain_types(std::string_view caps, const std::string &arch) {
    std::set<std::string> types;
    for_each_element(caps, "guest", [&](std::string_view guest) {
        // Xen-style "xen"/"linux" os types cannot boot our guests; only hvm counts.
        bool hvm = false;
        for_each_element(guest, "os_type", [&](std::string_view os_type) {
            hvm = hvm || os_type.find(">hvm<") != std::string_view::npos;
        });
        if (!hvm) {
            return;
        }
        for_each_element(guest, "arch", [&](std::string_view arch_element) {
            if (attribute_value(arch_element, "name") != arch) {
                return;
            }
            for_each_element(arch_element, "domain", [&](std::string_view domain) {
                const std::string type = attribute_value(domain, "type");
                if (!type.empty()) {
                    types.insert(type);
                }
            });
        });
    });
    return types;
}

}  // namespace

std::string choose_domain_type(const std::string &capabilities_xml, const std::string &arch,
                               const std::string &wanted) {
    if (wanted != "auto" && wanted != "kvm" && wanted != "qemu") {
        throw Error("domain_type=" + printable(wanted) + " is not one of auto, kvm, qemu");
    }
    const std::set<std::string> offered = offered_domain_types(capabilities_xml, arch);
    const bool kvm = offered.contains("kvm");
    const bool qemu = offered.contains("qemu");
    if (wanted == "kvm" || (wanted == "auto" && kvm)) {
        if (!kvm) {
            throw Error("domain_type=kvm requested but libvirt offers no kvm domain for " +
                        printable(arch) + " on this host (is /dev/kvm present?)");
        }
        return "kvm";
    }
    if (!qemu) {
        throw Error("domain_type=" + wanted + ": libvirt offers no qemu domain for " +
                    printable(arch) + " on this host (is qemu-system-" + printable(arch) +
                    " installed?)");
    }
    return "qemu";
}

}  // namespace svm
