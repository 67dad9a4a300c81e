#include "exec/protocol/messages.h"

#include <algorithm>

#include <csignal>
#include <cstring>
#include <limits>
#include <sys/resource.h>
#include <sys/wait.h>

#include "exec/protocol/frame.h"
#include "util/json.h"
#include "util/text.h"

namespace svm {

int RemoteExit::wait_status() const {
    if (signaled) {
        return (signal & 0x7f) | (core_dumped ? 0x80 : 0);
    }
    return (exit_code & 0xff) << 8;
}

RemoteExit RemoteExit::from_wait_status(int status) {
    RemoteExit exit;
    if (WIFSIGNALED(status)) {
        exit.signaled = true;
        exit.signal = WTERMSIG(status);
        exit.core_dumped = WCOREDUMP(status);
    } else {
        exit.exit_code = WEXITSTATUS(status);
    }
    return exit;
}

}  // namespace svm

namespace svm::protocol {

namespace {

constexpr std::int64_t kMaxId = 4294967294;  // (uint32_t)-1 means "no change" to set*id()
constexpr std::size_t kMaxGroups = 65536;
constexpr std::size_t kMaxHostname = 64;
// json-c reads any larger integer as INT64_MAX, which must not pass for a time.
constexpr std::int64_t kMaxClockNs = std::numeric_limits<std::int64_t>::max() - 1;

std::string quoted(std::string_view s) {
    std::string out = "\"";
    for (char c : s.substr(0, 60)) {
        if (c == '\0') {
            out += "\\0";
        } else {
            out += c;
        }
    }
    if (s.size() > 60) {
        out += "...";
    }
    return out + "\"";
}

std::string field(const std::string &what, const std::string &name) {
    return what + ": field '" + name + "'";
}

bool has_nul(std::string_view s) {
    return s.find('\0') != std::string_view::npos;
}

void check_text(std::string_view s, const std::string &where) {
    if (has_nul(s)) {
        throw ProtocolError(where + ": contains a NUL byte");
    }
}

void check_absolute_path(std::string_view s, const std::string &where) {
    check_text(s, where);
    if (s.empty() || s[0] != '/') {
        throw ProtocolError(where + ": expected an absolute path, got " + quoted(s));
    }
}

void check_id(std::int64_t v, const std::string &where) {
    if (v < 0 || v > kMaxId) {
        throw ProtocolError(where + ": expected an integer from 0 to " + std::to_string(kMaxId) +
                            ", got " + std::to_string(v));
    }
}

JsonPtr string_array(const std::vector<std::string> &items) {
    JsonPtr array(json_object_new_array());
    for (const auto &item : items) {
        json_object_array_add(array.get(), json_from_string(item).release());
    }
    return array;
}

std::vector<std::string> decode_string_array(json_object *obj, const char *key,
                                             const std::string &what) {
    json_object *array = json_array_value(json_field(obj, key, what), field(what, key));
    std::vector<std::string> out;
    const std::size_t n = json_object_array_length(array);
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(
            json_string_value(json_object_array_get_idx(array, i),
                              field(what, std::string(key) + "[" + std::to_string(i) + "]")));
    }
    return out;
}

const char *const kExecWhat = "EXEC request";
const char *const kSetupWhat = "SETUP request";

const char kHexDigits[] = "0123456789abcdef";

std::string to_hex(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) {
        const auto b = static_cast<unsigned char>(c);
        out += kHexDigits[b >> 4];
        out += kHexDigits[b & 0xf];
    }
    return out;
}

// Lower-case hex digits to bytes; nullopt when `hex` is not an even number of them.
std::optional<std::string> from_hex(std::string_view hex) {
    const auto digit = [](char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    if (hex.size() % 2 != 0) {
        return std::nullopt;
    }
    std::string out;
    out.reserve(hex.size() / 2);
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        const int high = digit(hex[i]), low = digit(hex[i + 1]);
        if (high < 0 || low < 0) {
            return std::nullopt;
        }
        out += static_cast<char>(high << 4 | low);
    }
    return out;
}

}  // namespace

std::string encode_pong(const AgentInfo &info) {
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "agent", json_from_string(info.agent));
    json_set(obj.get(), "version", json_from_int(info.version));
    return json_to_text(obj.get());
}

AgentInfo decode_pong(std::string_view payload) {
    const std::string what = "PONG reply";
    JsonPtr obj = parse_json_object(payload, what);
    AgentInfo info;
    info.agent = json_string_value(json_field(obj.get(), "agent", what), field(what, "agent"));
    info.version = static_cast<int>(
        json_int_value(json_field(obj.get(), "version", what), 1, 1000000, field(what, "version")));
    return info;
}

namespace {
void validate_user(const GuestUser &user);
}  // namespace

void validate_setup(const SetupRequest &request) {
    const std::string what = kSetupWhat;
    const std::string &h = request.hostname;
    const std::string where = field(what, "hostname");
    if (h.empty() || h.size() > kMaxHostname) {
        throw ProtocolError(where + ": expected 1 to " + std::to_string(kMaxHostname) +
                            " characters, got " + quoted(h));
    }
    for (char c : h) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.';
        if (!ok) {
            throw ProtocolError(where + ": expected letters, digits, '-' and '.', got " +
                                quoted(h));
        }
    }
    if (h[0] == '-' || h[0] == '.') {
        throw ProtocolError(where + ": must start with a letter or a digit, got " + quoted(h));
    }
    for (std::size_t i = 0; i < request.mounts.size(); ++i) {
        const GuestMount &m = request.mounts[i];
        const std::string prefix = "mounts[" + std::to_string(i) + "]";
        const std::string tag_where = field(what, prefix + ".tag");
        check_text(m.tag, tag_where);
        if (m.tag.empty() || m.tag.size() > 255 || m.tag.find(',') != std::string::npos) {
            throw ProtocolError(tag_where + ": expected 1 to 255 characters without ',', got " +
                                quoted(m.tag));
        }
        if (m.type != "9p" && m.type != "virtiofs") {
            throw ProtocolError(field(what, prefix + ".type") + ": expected 9p or virtiofs, got " +
                                quoted(m.type));
        }
        const std::string path_where = field(what, prefix + ".path");
        check_absolute_path(m.path, path_where);
        if (("/" + m.path + "/").find("/../") != std::string::npos) {
            throw ProtocolError(path_where + ": must not contain '..', got " + quoted(m.path));
        }
    }
    if (request.user) {
        validate_user(*request.user);
    }
    if (request.clock_ns && (*request.clock_ns <= 0 || *request.clock_ns > kMaxClockNs)) {
        throw ProtocolError(field(what, "clock_ns") + ": expected an integer from 1 to " +
                            std::to_string(kMaxClockNs) + ", got " +
                            std::to_string(*request.clock_ns));
    }
    if (request.entropy.size() > kMaxSetupEntropy) {
        throw ProtocolError(field(what, "entropy") + ": expected at most " +
                            std::to_string(kMaxSetupEntropy) + " bytes, got " +
                            std::to_string(request.entropy.size()));
    }
    if (request.command_links.size() > kMaxCommandLinks) {
        throw ProtocolError(field(what, "command_links") + ": expected at most " +
                            std::to_string(kMaxCommandLinks) + " paths, got " +
                            std::to_string(request.command_links.size()));
    }
    const auto &commands = hostcall_commands();
    for (std::size_t i = 0; i < request.command_links.size(); ++i) {
        const std::string &path = request.command_links[i];
        const std::string where = field(what, "command_links[" + std::to_string(i) + "]");
        check_absolute_path(path, where);
        if (("/" + path + "/").find("/../") != std::string::npos) {
            throw ProtocolError(where + ": must not contain '..', got " + quoted(path));
        }
        const std::string name = path.substr(path.rfind('/') + 1);
        if (std::find(commands.begin(), commands.end(), name) == commands.end()) {
            throw ProtocolError(where + ": expected the path of a Slurm command (" +
                                join(commands) + "), got " + quoted(path));
        }
    }
}

namespace {

// User and group names that are safe as /etc/passwd and /etc/group fields: what useradd
// accepts (letters, digits, '.', '_', '-', a trailing '$'), not starting with '-'.
void check_account_name(const std::string &name, const std::string &where) {
    bool ok = !name.empty() && name.size() <= 32 && name[0] != '-' && name[0] != '.';
    for (std::size_t i = 0; ok && i < name.size(); ++i) {
        const char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-' || (c == '$' && i + 1 == name.size());
    }
    if (!ok) {
        throw ProtocolError(
            where + ": expected an account name ([A-Za-z0-9._-], at most 32), got " + quoted(name));
    }
}

void validate_user(const GuestUser &user) {
    const std::string what = kSetupWhat;
    check_account_name(user.name, field(what, "user.name"));
    check_absolute_path(user.home, field(what, "user.home"));
    if (user.home.find(':') != std::string::npos) {
        throw ProtocolError(field(what, "user.home") + ": must not contain ':', got " +
                            quoted(user.home));
    }
    if (user.uid == 0) {
        throw ProtocolError(field(what, "user.uid") + ": root is not a job's user");
    }
    if (user.groups.size() > 1024) {
        throw ProtocolError(field(what, "user.groups") + ": more than 1024 groups");
    }
    for (std::size_t i = 0; i < user.groups.size(); ++i) {
        check_account_name(user.groups[i].name,
                           field(what, "user.groups[" + std::to_string(i) + "].name"));
    }
}

}  // namespace

std::string encode_setup(const SetupRequest &request) {
    validate_setup(request);
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "hostname", json_from_string(request.hostname));
    JsonPtr mounts(json_object_new_array());
    for (const auto &m : request.mounts) {
        JsonPtr mount = json_new_object();
        json_set(mount.get(), "tag", json_from_string(m.tag));
        json_set(mount.get(), "path", json_from_string(m.path));
        json_set(mount.get(), "readonly", json_from_bool(m.readonly));
        if (m.type != "9p") {
            json_set(mount.get(), "type", json_from_string(m.type));
        }
        json_object_array_add(mounts.get(), mount.release());
    }
    json_set(obj.get(), "mounts", std::move(mounts));
    if (request.user) {
        const GuestUser &u = *request.user;
        JsonPtr user = json_new_object();
        json_set(user.get(), "name", json_from_string(u.name));
        json_set(user.get(), "uid", json_from_int(u.uid));
        json_set(user.get(), "gid", json_from_int(u.gid));
        json_set(user.get(), "home", json_from_string(u.home));
        JsonPtr groups(json_object_new_array());
        for (const auto &g : u.groups) {
            JsonPtr group = json_new_object();
            json_set(group.get(), "name", json_from_string(g.name));
            json_set(group.get(), "gid", json_from_int(g.gid));
            json_object_array_add(groups.get(), group.release());
        }
        json_set(user.get(), "groups", std::move(groups));
        json_set(obj.get(), "user", std::move(user));
    }
    if (request.clock_ns) {
        json_set(obj.get(), "clock_ns", json_from_int(*request.clock_ns));
    }
    if (!request.entropy.empty()) {
        json_set(obj.get(), "entropy", json_from_string(to_hex(request.entropy)));
    }
    if (request.new_machine_id) {
        json_set(obj.get(), "new_machine_id", json_from_bool(true));
    }
    if (!request.command_links.empty()) {
        JsonPtr links(json_object_new_array());
        for (const auto &path : request.command_links) {
            json_object_array_add(links.get(), json_from_string(path).release());
        }
        json_set(obj.get(), "command_links", std::move(links));
    }
    return json_to_text(obj.get());
}

SetupRequest decode_setup(std::string_view payload) {
    const std::string what = kSetupWhat;
    JsonPtr obj = parse_json_object(payload, what);
    SetupRequest request;
    request.hostname =
        json_string_value(json_field(obj.get(), "hostname", what), field(what, "hostname"));
    if (json_object *mounts = json_optional_field(obj.get(), "mounts")) {
        json_array_value(mounts, field(what, "mounts"));
        const std::size_t n = json_object_array_length(mounts);
        for (std::size_t i = 0; i < n; ++i) {
            const std::string prefix = "mounts[" + std::to_string(i) + "]";
            json_object *m = json_object_array_get_idx(mounts, i);
            if (!json_object_is_type(m, json_type_object)) {
                throw ProtocolError(field(what, prefix) + ": expected an object, got " +
                                    json_excerpt(m));
            }
            const std::string mwhat = field(what, prefix);
            GuestMount mount;
            mount.tag =
                json_string_value(json_field(m, "tag", mwhat), field(what, prefix + ".tag"));
            mount.path =
                json_string_value(json_field(m, "path", mwhat), field(what, prefix + ".path"));
            if (json_object *ro = json_optional_field(m, "readonly")) {
                mount.readonly = json_bool_value(ro, field(what, prefix + ".readonly"));
            }
            if (json_object *type = json_optional_field(m, "type")) {
                mount.type = json_string_value(type, field(what, prefix + ".type"));
            }
            request.mounts.push_back(std::move(mount));
        }
    }
    if (json_object *u = json_optional_field(obj.get(), "user")) {
        const std::string uwhat = field(what, "user");
        if (!json_object_is_type(u, json_type_object)) {
            throw ProtocolError(uwhat + ": expected an object, got " + json_excerpt(u));
        }
        GuestUser user;
        user.name = json_string_value(json_field(u, "name", uwhat), field(what, "user.name"));
        user.uid = static_cast<std::uint32_t>(
            json_int_value(json_field(u, "uid", uwhat), 0, 4294967294, field(what, "user.uid")));
        user.gid = static_cast<std::uint32_t>(
            json_int_value(json_field(u, "gid", uwhat), 0, 4294967294, field(what, "user.gid")));
        user.home = json_string_value(json_field(u, "home", uwhat), field(what, "user.home"));
        json_object *groups =
            json_array_value(json_field(u, "groups", uwhat), field(what, "user.groups"));
        const std::size_t n = json_object_array_length(groups);
        if (n > 1024) {
            throw ProtocolError(field(what, "user.groups") + ": more than 1024 groups");
        }
        for (std::size_t i = 0; i < n; ++i) {
            const std::string gwhat = field(what, "user.groups[" + std::to_string(i) + "]");
            json_object *g = json_object_array_get_idx(groups, i);
            if (!json_object_is_type(g, json_type_object)) {
                throw ProtocolError(gwhat + ": expected an object, got " + json_excerpt(g));
            }
            GuestGroup group;
            group.name = json_string_value(json_field(g, "name", gwhat), gwhat + ".name");
            group.gid = static_cast<std::uint32_t>(
                json_int_value(json_field(g, "gid", gwhat), 0, 4294967294, gwhat + ".gid"));
            user.groups.push_back(std::move(group));
        }
        request.user = std::move(user);
    }
    if (json_object *clock = json_optional_field(obj.get(), "clock_ns")) {
        request.clock_ns = json_int_value(clock, 1, kMaxClockNs, field(what, "clock_ns"));
    }
    if (json_object *entropy = json_optional_field(obj.get(), "entropy")) {
        const std::string where = field(what, "entropy");
        const std::string hex = json_string_value(entropy, where);
        if (hex.size() > 2 * kMaxSetupEntropy) {
            throw ProtocolError(where + ": expected at most " + std::to_string(kMaxSetupEntropy) +
                                " bytes, got " + std::to_string(hex.size() / 2));
        }
        std::optional<std::string> bytes = from_hex(hex);
        if (!bytes) {
            throw ProtocolError(where + ": expected an even number of lower-case hex digits, got " +
                                quoted(hex));
        }
        request.entropy = std::move(*bytes);
    }
    if (json_object *fresh = json_optional_field(obj.get(), "new_machine_id")) {
        request.new_machine_id = json_bool_value(fresh, field(what, "new_machine_id"));
    }
    if (json_object *links = json_optional_field(obj.get(), "command_links")) {
        const std::string where = field(what, "command_links");
        json_array_value(links, where);
        const std::size_t n = json_object_array_length(links);
        if (n > kMaxCommandLinks) {
            throw ProtocolError(where + ": expected at most " + std::to_string(kMaxCommandLinks) +
                                " paths, got " + std::to_string(n));
        }
        for (std::size_t i = 0; i < n; ++i) {
            request.command_links.push_back(json_string_value(
                json_object_array_get_idx(links, i), where + "[" + std::to_string(i) + "]"));
        }
    }
    validate_setup(request);
    return request;
}

// What an EXEC request and a host call both carry: a command line, its environment and
// its working directory.
static void check_command(const std::vector<std::string> &argv, const std::vector<std::string> &env,
                          const std::string &cwd, const std::string &what) {
    if (argv.empty()) {
        throw ProtocolError(field(what, "argv") + ": must not be empty");
    }
    for (std::size_t i = 0; i < argv.size(); ++i) {
        const std::string where = field(what, "argv[" + std::to_string(i) + "]");
        check_text(argv[i], where);
        if (i == 0 && argv[i].empty()) {
            throw ProtocolError(where + ": the command name must not be empty");
        }
    }
    for (std::size_t i = 0; i < env.size(); ++i) {
        const std::string where = field(what, "env[" + std::to_string(i) + "]");
        check_text(env[i], where);
        const auto eq = env[i].find('=');
        if (eq == std::string::npos || eq == 0) {
            throw ProtocolError(where + ": expected NAME=value, got " + quoted(env[i]));
        }
    }
    check_absolute_path(cwd, field(what, "cwd"));
}

void validate_exec(const ExecRequest &request) {
    const std::string what = kExecWhat;
    check_command(request.argv, request.env, request.cwd, what);
    if (request.uid > kMaxId) {
        check_id(request.uid, field(what, "uid"));
    }
    if (request.gid > kMaxId) {
        check_id(request.gid, field(what, "gid"));
    }
    if (request.groups.size() > kMaxGroups) {
        throw ProtocolError(field(what, "groups") + ": more than " + std::to_string(kMaxGroups) +
                            " groups");
    }
    for (std::size_t i = 0; i < request.groups.size(); ++i) {
        check_id(request.groups[i], field(what, "groups[" + std::to_string(i) + "]"));
    }
    if (request.limits.size() > kMaxLimits) {
        throw ProtocolError(field(what, "limits") + ": more than " + std::to_string(kMaxLimits) +
                            " limits");
    }
    for (std::size_t i = 0; i < request.limits.size(); ++i) {
        const ResourceLimit &limit = request.limits[i];
        const std::string item = "limits[" + std::to_string(i) + "]";
        const std::string where = field(what, item);
        if (rlimit_resource(limit.resource) < 0) {
            throw ProtocolError(field(what, item + ".resource") +
                                ": expected one of CPU FSIZE DATA STACK CORE RSS "
                                "NPROC NOFILE MEMLOCK AS, got " +
                                quoted(limit.resource));
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (request.limits[j].resource == limit.resource) {
                throw ProtocolError(field(what, item + ".resource") + ": " + limit.resource +
                                    " given twice");
            }
        }
        constexpr auto kMaxValue =
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        for (auto [name, value] : {std::pair{"soft", limit.soft}, std::pair{"hard", limit.hard}}) {
            if (value > kMaxValue && value != ResourceLimit::kUnlimited) {
                throw ProtocolError(field(what, item + "." + name) + ": " + std::to_string(value) +
                                    " is neither a limit nor unlimited");
            }
        }
        if (limit.soft > limit.hard) {
            throw ProtocolError(where + ": the soft limit " + std::to_string(limit.soft) +
                                " is above the hard limit " + std::to_string(limit.hard));
        }
    }
    if (request.umask && *request.umask > 0777) {
        throw ProtocolError(field(what, "umask") + ": expected 0 to 0777, got " +
                            std::to_string(*request.umask));
    }
}

namespace {

// A limit in JSON: a number, or -1 for unlimited (json-c's integers are signed 64-bit).
JsonPtr limit_value(std::uint64_t value) {
    return json_from_int(value == ResourceLimit::kUnlimited ? -1
                                                            : static_cast<std::int64_t>(value));
}

std::uint64_t decode_limit_value(json_object *value, const std::string &where) {
    const std::int64_t v =
        json_int_value(value, -1, std::numeric_limits<std::int64_t>::max(), where);
    return v < 0 ? ResourceLimit::kUnlimited : static_cast<std::uint64_t>(v);
}

struct RlimitName {
    const char *name;
    int resource;
};
constexpr RlimitName kRlimits[] = {
    {"CPU", RLIMIT_CPU},     {"FSIZE", RLIMIT_FSIZE},   {"DATA", RLIMIT_DATA},
    {"STACK", RLIMIT_STACK}, {"CORE", RLIMIT_CORE},     {"RSS", RLIMIT_RSS},
    {"NPROC", RLIMIT_NPROC}, {"NOFILE", RLIMIT_NOFILE}, {"MEMLOCK", RLIMIT_MEMLOCK},
    {"AS", RLIMIT_AS},
};

JsonPtr window_size_json(const WindowSize &size) {
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "rows", json_from_int(size.rows));
    json_set(obj.get(), "cols", json_from_int(size.cols));
    return obj;
}

WindowSize window_size_from_json(json_object *obj, const std::string &what) {
    if (!json_object_is_type(obj, json_type_object)) {
        throw ProtocolError(what + ": expected an object, got " + json_excerpt(obj));
    }
    WindowSize size;
    size.rows = static_cast<std::uint16_t>(
        json_int_value(json_field(obj, "rows", what), 0, 65535, field(what, "rows")));
    size.cols = static_cast<std::uint16_t>(
        json_int_value(json_field(obj, "cols", what), 0, 65535, field(what, "cols")));
    return size;
}

}  // namespace

const std::vector<std::string> &rlimit_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> out;
        for (const auto &r : kRlimits) {
            out.emplace_back(r.name);
        }
        return out;
    }();
    return names;
}

int rlimit_resource(std::string_view name) {
    for (const auto &r : kRlimits) {
        if (name == r.name) {
            return r.resource;
        }
    }
    return -1;
}

std::string encode_exec(const ExecRequest &request) {
    validate_exec(request);
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "argv", string_array(request.argv));
    json_set(obj.get(), "env", string_array(request.env));
    json_set(obj.get(), "cwd", json_from_string(request.cwd));
    json_set(obj.get(), "uid", json_from_int(request.uid));
    json_set(obj.get(), "gid", json_from_int(request.gid));
    JsonPtr groups(json_object_new_array());
    for (auto g : request.groups) {
        json_object_array_add(groups.get(), json_from_int(g).release());
    }
    json_set(obj.get(), "groups", std::move(groups));
    if (!request.script.empty()) {
        json_set(obj.get(), "script", json_from_string(request.script));
    }
    if (!request.limits.empty()) {
        JsonPtr limits(json_object_new_array());
        for (const auto &l : request.limits) {
            JsonPtr limit = json_new_object();
            json_set(limit.get(), "resource", json_from_string(l.resource));
            json_set(limit.get(), "soft", limit_value(l.soft));
            json_set(limit.get(), "hard", limit_value(l.hard));
            json_object_array_add(limits.get(), limit.release());
        }
        json_set(obj.get(), "limits", std::move(limits));
    }
    if (request.umask) {
        json_set(obj.get(), "umask", json_from_int(*request.umask));
    }
    if (request.make_tmpdir) {
        json_set(obj.get(), "make_tmpdir", json_from_bool(true));
    }
    if (request.pty) {
        json_set(obj.get(), "pty", window_size_json(*request.pty));
    }
    return json_to_text(obj.get());
}

ExecRequest decode_exec(std::string_view payload) {
    const std::string what = kExecWhat;
    JsonPtr obj = parse_json_object(payload, what);
    ExecRequest request;
    request.argv = decode_string_array(obj.get(), "argv", what);
    request.env = decode_string_array(obj.get(), "env", what);
    request.cwd = json_string_value(json_field(obj.get(), "cwd", what), field(what, "cwd"));
    request.uid = static_cast<std::uint32_t>(
        json_int_value(json_field(obj.get(), "uid", what), 0, kMaxId, field(what, "uid")));
    request.gid = static_cast<std::uint32_t>(
        json_int_value(json_field(obj.get(), "gid", what), 0, kMaxId, field(what, "gid")));
    json_object *groups =
        json_array_value(json_field(obj.get(), "groups", what), field(what, "groups"));
    const std::size_t n = json_object_array_length(groups);
    if (n > kMaxGroups) {
        throw ProtocolError(field(what, "groups") + ": more than " + std::to_string(kMaxGroups) +
                            " groups");
    }
    for (std::size_t i = 0; i < n; ++i) {
        request.groups.push_back(static_cast<std::uint32_t>(
            json_int_value(json_object_array_get_idx(groups, i), 0, kMaxId,
                           field(what, "groups[" + std::to_string(i) + "]"))));
    }
    json_object *script = nullptr;
    if (json_object_object_get_ex(obj.get(), "script", &script)) {
        request.script = json_string_value(script, field(what, "script"));
    }
    if (json_object *limits = json_optional_field(obj.get(), "limits")) {
        json_array_value(limits, field(what, "limits"));
        const std::size_t count = json_object_array_length(limits);
        if (count > kMaxLimits) {
            throw ProtocolError(field(what, "limits") + ": more than " +
                                std::to_string(kMaxLimits) + " limits");
        }
        for (std::size_t i = 0; i < count; ++i) {
            const std::string item = "limits[" + std::to_string(i) + "]";
            const std::string lwhat = field(what, item);
            json_object *l = json_object_array_get_idx(limits, i);
            if (!json_object_is_type(l, json_type_object)) {
                throw ProtocolError(lwhat + ": expected an object, got " + json_excerpt(l));
            }
            ResourceLimit limit;
            limit.resource = json_string_value(json_field(l, "resource", lwhat),
                                               field(what, item + ".resource"));
            limit.soft =
                decode_limit_value(json_field(l, "soft", lwhat), field(what, item + ".soft"));
            limit.hard =
                decode_limit_value(json_field(l, "hard", lwhat), field(what, item + ".hard"));
            request.limits.push_back(std::move(limit));
        }
    }
    if (json_object *mask = json_optional_field(obj.get(), "umask")) {
        request.umask =
            static_cast<std::uint32_t>(json_int_value(mask, 0, 0777, field(what, "umask")));
    }
    if (json_object *tmpdir = json_optional_field(obj.get(), "make_tmpdir")) {
        request.make_tmpdir = json_bool_value(tmpdir, field(what, "make_tmpdir"));
    }
    if (json_object *pty = json_optional_field(obj.get(), "pty")) {
        request.pty = window_size_from_json(pty, field(what, "pty"));
    }
    validate_exec(request);
    return request;
}

std::string encode_started(pid_t pid) {
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "pid", json_from_int(pid));
    return json_to_text(obj.get());
}

pid_t decode_started(std::string_view payload) {
    const std::string what = "STARTED reply";
    JsonPtr obj = parse_json_object(payload, what);
    return static_cast<pid_t>(
        json_int_value(json_field(obj.get(), "pid", what), 1, 0x7fffffff, field(what, "pid")));
}

std::string encode_error(const AgentError &error) {
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "message", json_from_string(error.message));
    if (!error.stage.empty()) {
        json_set(obj.get(), "stage", json_from_string(error.stage));
    }
    if (error.error_number != 0) {
        json_set(obj.get(), "errno", json_from_int(error.error_number));
    }
    return json_to_text(obj.get());
}

AgentError decode_error(std::string_view payload) {
    const std::string what = "ERROR reply";
    JsonPtr obj = parse_json_object(payload, what);
    AgentError error;
    error.message =
        json_string_value(json_field(obj.get(), "message", what), field(what, "message"));
    if (json_object *stage = json_optional_field(obj.get(), "stage")) {
        error.stage = json_string_value(stage, field(what, "stage"));
    }
    if (json_object *err = json_optional_field(obj.get(), "errno")) {
        error.error_number = static_cast<int>(json_int_value(err, 0, 4095, field(what, "errno")));
    }
    return error;
}

const std::vector<int> &forwardable_signals() {
    static const std::vector<int> signals = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM, SIGUSR1,
                                             SIGUSR2, SIGTSTP, SIGCONT, SIGKILL};
    return signals;
}

bool is_forwardable_signal(int signo) {
    for (int s : forwardable_signals()) {
        if (s == signo) {
            return true;
        }
    }
    return false;
}

std::string signal_name(int signo) {
    const char *abbrev = (signo > 0 && signo < NSIG) ? sigabbrev_np(signo) : nullptr;
    if (abbrev) {
        return std::string("SIG") + abbrev;
    }
    return "signal " + std::to_string(signo);
}

std::string encode_winch(const WindowSize &size) {
    return json_to_text(window_size_json(size).get());
}

WindowSize decode_winch(std::string_view payload) {
    const std::string what = "WINCH frame";
    JsonPtr obj = parse_json_object(payload, what);
    return window_size_from_json(obj.get(), what);
}

std::string encode_signal(int signo) {
    if (!is_forwardable_signal(signo)) {
        throw ProtocolError("SIGNAL frame: " + signal_name(signo) +
                            " is not one of the forwarded signals (HUP INT QUIT TERM USR1 USR2 "
                            "TSTP CONT KILL)");
    }
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "signal", json_from_int(signo));
    return json_to_text(obj.get());
}

int decode_signal(std::string_view payload) {
    const std::string what = "SIGNAL frame";
    JsonPtr obj = parse_json_object(payload, what);
    int signo = static_cast<int>(
        json_int_value(json_field(obj.get(), "signal", what), 1, NSIG - 1, field(what, "signal")));
    if (!is_forwardable_signal(signo)) {
        throw ProtocolError(field(what, "signal") + ": " + signal_name(signo) +
                            " is not one of the forwarded signals (HUP INT QUIT TERM USR1 USR2 "
                            "TSTP CONT KILL)");
    }
    return signo;
}

namespace {

void put_exit(json_object *obj, const RemoteExit &exit) {
    if (exit.signaled) {
        json_set(obj, "signal", json_from_int(exit.signal));
        json_set(obj, "core_dumped", json_from_bool(exit.core_dumped));
    } else {
        json_set(obj, "exit_code", json_from_int(exit.exit_code));
    }
}

RemoteExit get_exit(json_object *obj, const std::string &what) {
    json_object *code = json_optional_field(obj, "exit_code");
    json_object *signal = json_optional_field(obj, "signal");
    if ((code != nullptr) == (signal != nullptr)) {
        throw ProtocolError(what + ": expected exactly one of the fields 'exit_code' and 'signal'");
    }
    RemoteExit exit;
    if (code) {
        exit.exit_code = static_cast<int>(json_int_value(code, 0, 255, field(what, "exit_code")));
        return exit;
    }
    exit.signaled = true;
    exit.signal = static_cast<int>(json_int_value(signal, 1, NSIG - 1, field(what, "signal")));
    if (json_object *core = json_optional_field(obj, "core_dumped")) {
        exit.core_dumped = json_bool_value(core, field(what, "core_dumped"));
    }
    return exit;
}

std::uint32_t get_call(json_object *obj, const std::string &what) {
    return static_cast<std::uint32_t>(
        json_int_value(json_field(obj, "call", what), 0, 0xffffffff, field(what, "call")));
}

std::string not_forwarded(int signo) {
    return signal_name(signo) +
           " is not one of the forwarded signals (HUP INT QUIT TERM USR1 USR2 TSTP CONT KILL)";
}

const char *const kHostCallWhat = "HOSTCALL request";

}  // namespace

std::string encode_exit(const RemoteExit &exit) {
    JsonPtr obj = json_new_object();
    put_exit(obj.get(), exit);
    return json_to_text(obj.get());
}

RemoteExit decode_exit(std::string_view payload) {
    const std::string what = "EXIT frame";
    JsonPtr obj = parse_json_object(payload, what);
    return get_exit(obj.get(), what);
}

const std::vector<std::string> &hostcall_commands() {
    static const std::vector<std::string> commands = {
        "srun", "sbatch", "scancel", "scontrol", "squeue", "sacct", "sinfo", "sstat", "salloc"};
    return commands;
}

void validate_hostcall(const HostCallRequest &request) {
    const std::string what = kHostCallWhat;
    check_command(request.argv, request.env, request.cwd, what);
}

std::string encode_hostcall(const HostCallRequest &request) {
    validate_hostcall(request);
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "call", json_from_int(request.call));
    json_set(obj.get(), "argv", string_array(request.argv));
    json_set(obj.get(), "cwd", json_from_string(request.cwd));
    json_set(obj.get(), "env", string_array(request.env));
    return json_to_text(obj.get());
}

HostCallRequest decode_hostcall(std::string_view payload) {
    const std::string what = kHostCallWhat;
    JsonPtr obj = parse_json_object(payload, what);
    HostCallRequest request;
    request.call = get_call(obj.get(), what);
    request.argv = decode_string_array(obj.get(), "argv", what);
    request.cwd = json_string_value(json_field(obj.get(), "cwd", what), field(what, "cwd"));
    request.env = decode_string_array(obj.get(), "env", what);
    validate_hostcall(request);
    return request;
}

std::string encode_hostcall_output(std::uint32_t call, std::string_view data) {
    std::string payload;
    payload.reserve(4 + data.size());
    payload.push_back(static_cast<char>((call >> 24) & 0xff));
    payload.push_back(static_cast<char>((call >> 16) & 0xff));
    payload.push_back(static_cast<char>((call >> 8) & 0xff));
    payload.push_back(static_cast<char>(call & 0xff));
    payload.append(data);
    return payload;
}

HostCallOutput decode_hostcall_output(std::string_view payload) {
    if (payload.size() < 4) {
        throw ProtocolError("HOSTCALL output frame: payload of " + std::to_string(payload.size()) +
                            " bytes is shorter than its 4-byte call id");
    }
    auto b = reinterpret_cast<const unsigned char *>(payload.data());
    HostCallOutput output;
    output.call = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) |
                  (std::uint32_t{b[2]} << 8) | std::uint32_t{b[3]};
    output.data = payload.substr(4);
    return output;
}

std::string encode_hostcall_exit(const HostCallExit &exit) {
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "call", json_from_int(exit.call));
    put_exit(obj.get(), exit.exit);
    return json_to_text(obj.get());
}

HostCallExit decode_hostcall_exit(std::string_view payload) {
    const std::string what = "HOSTCALL_EXIT frame";
    JsonPtr obj = parse_json_object(payload, what);
    HostCallExit exit;
    exit.call = get_call(obj.get(), what);
    exit.exit = get_exit(obj.get(), what);
    return exit;
}

std::string encode_hostcall_signal(const HostCallSignal &signal) {
    if (!is_forwardable_signal(signal.signal)) {
        throw ProtocolError("HOSTCALL_SIGNAL frame: " + not_forwarded(signal.signal));
    }
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "call", json_from_int(signal.call));
    json_set(obj.get(), "signal", json_from_int(signal.signal));
    return json_to_text(obj.get());
}

HostCallSignal decode_hostcall_signal(std::string_view payload) {
    const std::string what = "HOSTCALL_SIGNAL frame";
    JsonPtr obj = parse_json_object(payload, what);
    HostCallSignal signal;
    signal.call = get_call(obj.get(), what);
    signal.signal = static_cast<int>(
        json_int_value(json_field(obj.get(), "signal", what), 1, NSIG - 1, field(what, "signal")));
    if (!is_forwardable_signal(signal.signal)) {
        throw ProtocolError(field(what, "signal") + ": " + not_forwarded(signal.signal));
    }
    return signal;
}

}  // namespace svm::protocol
