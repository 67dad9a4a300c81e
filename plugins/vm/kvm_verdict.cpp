#include "vm/kvm_verdict.h"

#include "util/accounts.h"

#include "util/atomic_file.h"
#include "util/error.h"
#include "util/json.h"
#include "util/text.h"
#include "vm/libvirt_handles.h"

#include <sys/stat.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <sstream>
#include <vector>

namespace svm {

namespace {

namespace fs = std::filesystem;

std::string version_text(unsigned long v) {
    return std::to_string(v / 1000000) + "." + std::to_string(v / 1000 % 1000) + "." +
           std::to_string(v % 1000);
}

bool in_group(uid_t uid, gid_t gid, gid_t wanted) {
    if (gid == wanted) {
        return true;
    }
    try {
        const auto user = find_user(uid);
        if (!user) {
            return false;
        }
        const std::vector<gid_t> groups = group_ids(user->name, gid);
        return std::find(groups.begin(), groups.end(), wanted) != groups.end();
    } catch (const Error &) {
        return false;
    }
}

std::string user_name(uid_t uid) {
    try {
        if (const auto user = find_user(uid)) {
            return user->name;
        }
    } catch (const Error &) {
        // Named by its number, as below.
    }
    return std::to_string(uid);
}

std::string group_name(gid_t gid) {
    return find_group_name(gid).value_or(std::to_string(gid));
}

std::string safe_marker_name(const std::string &node) {
    std::string out;
    for (char c : node) {
        out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
    }
    return out.empty() ? "_" : out;
}

}  // namespace

std::string host_key(virConnectPtr conn) {
    struct utsname u {};
    uname(&u);
    unsigned long hv = 0, lib = 0;
    if (virConnectGetVersion(conn, &hv) < 0 || virConnectGetLibVersion(conn, &lib) < 0) {
        throw Error("cannot read libvirt's and QEMU's versions: " + libvirt_last_error());
    }
    return std::string("kernel=") + u.release + ";qemu=" + version_text(hv) +
           ";libvirt=" + version_text(lib);
}

std::string kvm_verdict_path(const std::string &state_dir) {
    return state_dir + "/kvm-verdict.json";
}

std::optional<KvmVerdict> load_kvm_verdict(const std::string &state_dir, const std::string &key,
                                           int64_t now) {
    try {
        const std::string text = read_whole_file(kvm_verdict_path(state_dir));
        JsonPtr obj = parse_json_object(text, "KVM verdict");
        const std::string what = "KVM verdict";
        KvmVerdict v;
        v.key = json_string_value(json_field(obj.get(), "key", what), what);
        if (v.key != key) {
            return std::nullopt;
        }
        v.works = json_bool_value(json_field(obj.get(), "works", what), what);
        if (json_object *r = json_optional_field(obj.get(), "reason")) {
            v.reason = json_string_value(r, what);
        }
        if (json_object *n = json_optional_field(obj.get(), "node")) {
            v.node = json_string_value(n, what);
        }
        if (json_object *t = json_optional_field(obj.get(), "decided_at")) {
            v.decided_at = json_int_value(t, 0, INT64_MAX, what);
        }
        if (json_object *p = json_optional_field(obj.get(), "proven")) {
            v.proven = json_bool_value(p, what);
        }
        json_object *expires = json_optional_field(obj.get(), "expires_at");
        if (expires == nullptr) {
            return std::nullopt;  // an older slurm-vm's, decided by a job's VM: probe again
        }
        v.expires_at = json_int_value(expires, 0, INT64_MAX, what);
        if (now >= v.expires_at) {
            return std::nullopt;
        }
        return v;
    } catch (const std::exception &) {
        return std::nullopt;
    }
}

void save_kvm_verdict(const std::string &state_dir, const KvmVerdict &verdict) {
    if (verdict.expires_at == 0) {
        throw Error("a KVM verdict needs an expiry (" + kvm_verdict_path(state_dir) + ")");
    }
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "key", json_from_string(verdict.key));
    json_set(obj.get(), "works", json_from_bool(verdict.works));
    json_set(obj.get(), "proven", json_from_bool(verdict.proven));
    json_set(obj.get(), "expires_at", json_from_int(verdict.expires_at));
    json_set(obj.get(), "reason", json_from_string(verdict.reason));
    json_set(obj.get(), "node", json_from_string(verdict.node));
    json_set(obj.get(), "decided_at",
             json_from_int(verdict.decided_at != 0 ? verdict.decided_at : time(nullptr)));
    write_file_atomically(kvm_verdict_path(state_dir), json_to_text(obj.get()) + "\n", 0644);
}

std::string kvm_device_problem(uid_t uid, gid_t gid, const std::string &device) {
    struct stat st {};
    if (stat(device.c_str(), &st) != 0) {
        return device + " is missing (" + errno_text(errno) + ")";
    }
    if (!S_ISCHR(st.st_mode)) {
        return device + " is not a character device";
    }
    const mode_t mode = st.st_mode & 07777;
    bool ok = false;
    if (uid == 0) {
        ok = true;
    } else if (st.st_uid == uid) {
        ok = (mode & 0600) == 0600;
    } else if (in_group(uid, gid, st.st_gid)) {
        ok = (mode & 0060) == 0060;
    } else {
        ok = (mode & 0006) == 0006;
    }
    if (ok) {
        return "";
    }
    char octal[8];
    snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    return device + " is mode " + octal + " owned by " + user_name(st.st_uid) + ":" +
           group_name(st.st_gid) + ", so QEMU (running as " + user_name(uid) +
           ") cannot open it (udev's rule gives group kvm, mode 0666)";
}

std::string qemu_log_error(const std::string &domain, const std::string &log_dir) {
    std::string tail = file_tail(log_dir + "/" + domain + ".log", 16384);
    // The file holds every start of a domain of that name: only the last one matters.
    if (const auto start = tail.rfind("starting up"); start != std::string::npos) {
        tail.erase(0, start);
    }
    std::string error_line, failure_line, line;
    std::istringstream lines(tail);
    while (std::getline(lines, line)) {
        std::string lower = line;
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (lower.find("error") != std::string::npos) {
            error_line = line;
        } else if (lower.find("fail") != std::string::npos) {
            failure_line = line;
        }
    }
    // "KVM internal error. Suberror: 1" is followed by "emulation failure": the error says more.
    std::string found = error_line.empty() ? failure_line : error_line;
    // QEMU prefixes a timestamp and "qemu-system-x86_64: ": keep what it says.
    if (const auto colon = found.find(": ");
        found.rfind("20", 0) == 0 && colon != std::string::npos) {
        found = found.substr(colon + 2);
    }
    if (found.size() > 300) {
        found.resize(300);
    }
    return printable(found);
}

bool blames_kvm(const std::string &qemu_error) {
    return qemu_error.find("KVM") != std::string::npos ||
           qemu_error.find("kvm") != std::string::npos;
}

bool first_warning_for_node(const std::string &state_dir, const std::string &node,
                            const std::string &text) {
    try {
        const std::string dir = state_dir + "/kvm-warned";
        std::error_code ec;
        fs::create_directories(dir, ec);
        const std::string path = dir + "/" + safe_marker_name(node);
        try {
            if (read_whole_file(path) == text + "\n") {
                return false;
            }
        } catch (const Error &) {
            // No marker yet.
        }
        write_file_atomically(path, text + "\n", 0644);
    } catch (const std::exception &) {
        // A warning too many is better than none.
    }
    return true;
}

}  // namespace svm
