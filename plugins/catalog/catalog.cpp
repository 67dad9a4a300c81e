#include "catalog/catalog.h"

#include "util/accounts.h"
#include "util/config.h"
#include "util/error.h"
#include "util/json.h"
#include "util/text.h"
#include "catalog/image_name.h"
#include "util/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <map>
#include <optional>
#include <set>

namespace svm {

namespace {

// Catalogs are a few KiB; the cap keeps a wrong path (a disk image?) from being slurped whole.
constexpr std::size_t max_catalog_bytes = 16 << 20;
constexpr uint64_t max_ready_timeout = 24 * 3600;
// Far above any machine, low enough that MiB -> bytes never overflows.
constexpr uint64_t max_memory_mib = uint64_t{1} << 30;

using FieldNames = std::vector<std::string_view>;
const FieldNames top_fields = {"images"};
const FieldNames image_fields = {"name",   "description", "kernel",   "initrd",     "cmdline",
                                 "disk",   "disk_format", "vcpus",    "memory_mib", "ready_timeout",
                                 "access", "network",     "firmware", "share",      "warm_start"};
const FieldNames limit_fields = {"default", "max"};
const FieldNames access_fields = {"users", "groups", "accounts"};

// A JSON value as written in the file, shortened, for the "got ..." part of messages.
std::string shown(json_object *value) {
    return printable(json_excerpt(value));
}

// Where in the catalog we are, so every error names the file, the entry and the field.
class Where {
  public:
    explicit Where(std::string origin) : origin_(std::move(origin)) {}

    void enter_entry(std::size_t index) { entry_ = "entry " + std::to_string(index); }
    void name_entry(const std::string &name, std::size_t index) {
        entry_ = "image '" + name + "' (entry " + std::to_string(index) + ")";
    }

    [[noreturn]] void fail(const std::string &reason) const {
        throw Error("catalog " + origin_ + ": " + (entry_.empty() ? "" : entry_ + ": ") + reason);
    }
    [[noreturn]] void fail(std::string_view field, const std::string &reason) const {
        fail("field '" + printable(field) + "': " + reason);
    }

  private:
    std::string origin_;
    std::string entry_;
};

void reject_unknown_fields(json_object *object, const FieldNames &valid, const Where &where,
                           const std::string &parent) {
    for (auto it = json_object_iter_begin(object), end = json_object_iter_end(object);
         !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const std::string_view key = json_object_iter_peek_name(&it);
        if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
            where.fail(parent + std::string(key), "unknown field; valid fields: " + join(valid));
        }
    }
}

json_object *expect_object(json_object *value, const Where &where, const std::string &field) {
    if (!json_object_is_type(value, json_type_object)) {
        where.fail(field, "expected an object, got " + shown(value));
    }
    return value;
}

std::string expect_string(json_object *value, const Where &where, const std::string &field) {
    if (!json_object_is_type(value, json_type_string)) {
        where.fail(field, "expected a string, got " + shown(value));
    }
    std::string text(json_object_get_string(value),
                     static_cast<std::size_t>(json_object_get_string_len(value)));
    const std::string problem = control_character_problem(text);
    if (!problem.empty()) {
        where.fail(field, problem);
    }
    return text;
}

std::optional<std::string> string_field(json_object *object, const char *key, const Where &where) {
    const auto value = json_member(object, key);
    if (!value) {
        return std::nullopt;
    }
    return expect_string(*value, where, key);
}

std::optional<std::string> path_field(json_object *object, const char *key, const Where &where) {
    auto path = string_field(object, key, where);
    if (path) {
        const std::string problem = absolute_path_problem(*path);
        if (!problem.empty()) {
            where.fail(key, "path '" + *path + "' " + problem);
        }
    }
    return path;
}

uint64_t expect_count(json_object *value, uint64_t min, uint64_t max, const Where &where,
                      const std::string &field) {
    const std::string wanted = min == 0 ? "a non-negative integer" : "a positive integer";
    if (!json_object_is_type(value, json_type_int)) {
        where.fail(field, "expected " + wanted + ", got " + shown(value));
    }
    const int64_t n = json_object_get_int64(value);
    if (n < static_cast<int64_t>(min) || static_cast<uint64_t>(n) > max) {
        where.fail(field, "expected " + wanted + " up to " + std::to_string(max) + ", got " +
                              shown(value));
    }
    return static_cast<uint64_t>(n);
}

struct Limit {
    uint64_t default_value;
    uint64_t max_value;
};

// {"default": D, "max": M}, both optional. A lone "max" below the built-in default lowers the
// default with it, so "max": 128 alone is not an error.
Limit limit_field(json_object *image, const char *key, Limit builtin, uint64_t hard_max,
                  const Where &where) {
    const auto value = json_member(image, key);
    if (!value) {
        return builtin;
    }
    json_object *object = expect_object(*value, where, key);
    const std::string parent = std::string(key) + ".";
    reject_unknown_fields(object, limit_fields, where, parent);
    Limit limit = builtin;
    const auto max_value = json_member(object, "max");
    if (max_value) {
        limit.max_value = expect_count(*max_value, 1, hard_max, where, parent + "max");
        limit.default_value = std::min(limit.default_value, limit.max_value);
    }
    const auto default_value = json_member(object, "default");
    if (default_value) {
        limit.default_value = expect_count(*default_value, 1, hard_max, where, parent + "default");
    }
    if (limit.default_value > limit.max_value) {
        where.fail(key, "default " + std::to_string(limit.default_value) + " is larger than max " +
                            std::to_string(limit.max_value));
    }
    return limit;
}

std::vector<std::string> principal_list(json_object *access, const char *key, const Where &where) {
    std::vector<std::string> names;
    const auto value = json_member(access, key);
    if (!value) {
        return names;
    }
    const std::string field = "access." + std::string(key);
    if (!json_object_is_type(*value, json_type_array)) {
        where.fail(field, "expected a list of strings, got " + shown(*value));
    }
    const std::size_t count = json_object_array_length(*value);
    for (std::size_t i = 0; i < count; ++i) {
        const std::string item_field = field + "[" + std::to_string(i) + "]";
        const std::string name =
            expect_string(json_object_array_get_idx(*value, i), where, item_field);
        if (name.empty()) {
            where.fail(item_field, "is empty");
        }
        if (name.find_first_of(" \t,") != std::string::npos) {
            where.fail(item_field, "'" + printable(name) + "' contains whitespace or a comma");
        }
        names.push_back(name);
    }
    return names;
}

ImageAccess access_field(json_object *image, const Where &where) {
    const auto value = json_member(image, "access");
    if (!value) {
        return {};
    }
    json_object *access = expect_object(*value, where, "access");
    reject_unknown_fields(access, access_fields, where, "access.");
    return {principal_list(access, "users", where), principal_list(access, "groups", where),
            principal_list(access, "accounts", where)};
}

std::string name_field(json_object *entry, const Where &where) {
    const auto name = string_field(entry, "name", where);
    if (!name) {
        where.fail("name", "is required");
    }
    const std::string problem = image_name_problem(*name);
    if (!problem.empty()) {
        where.fail("name", "'" + printable(*name) + "' is invalid: " + problem);
    }
    return *name;
}

Image parse_image(json_object *entry, std::size_t index, Where &where) {
    where.enter_entry(index);
    if (!json_object_is_type(entry, json_type_object)) {
        where.fail("expected an object, got " + shown(entry));
    }
    Image image;
    image.name = name_field(entry, where);
    where.name_entry(image.name, index);
    reject_unknown_fields(entry, image_fields, where, "");

    image.description = string_field(entry, "description", where).value_or("");
    image.kernel = path_field(entry, "kernel", where).value_or("");
    image.initrd = path_field(entry, "initrd", where).value_or("");
    image.cmdline = string_field(entry, "cmdline", where).value_or("");
    image.disk = path_field(entry, "disk", where).value_or("");
    const auto disk_format = string_field(entry, "disk_format", where);
    if (const auto network = string_field(entry, "network", where)) {
        if (*network != "user" && *network != "none") {
            where.fail("network",
                       "expected \"user\" or \"none\", got \"" + printable(*network) + "\"");
        }
        image.network = *network;
    }

    if (const auto share = string_field(entry, "share", where)) {
        if (*share != "9p" && *share != "virtiofs") {
            where.fail("share",
                       "expected \"9p\" or \"virtiofs\", got \"" + printable(*share) + "\"");
        }
        image.share = *share;
    }
    if (const auto firmware = string_field(entry, "firmware", where)) {
        if (*firmware != "bios" && *firmware != "uefi") {
            where.fail("firmware",
                       "expected \"bios\" or \"uefi\", got \"" + printable(*firmware) + "\"");
        }
        if (image.disk.empty() || !image.kernel.empty()) {
            where.fail("firmware",
                       "is for an image that boots its 'disk' by firmware, without 'kernel'");
        }
        image.firmware = *firmware;
    }

    if (const auto warm = json_member(entry, "warm_start")) {
        if (!json_object_is_type(*warm, json_type_boolean)) {
            where.fail("warm_start", "expected true or false, got " + shown(*warm));
        }
        image.warm_start = json_object_get_boolean(*warm) != 0;
    }

    if (image.kernel.empty() && image.disk.empty()) {
        where.fail("kernel",
                   "an image needs 'kernel' (direct kernel boot) or 'disk' (firmware "
                   "boot) or both");
    }
    for (const char *needs_kernel : {"initrd", "cmdline"}) {
        if (image.kernel.empty() && json_member(entry, needs_kernel)) {
            where.fail(needs_kernel, "is set but 'kernel' is not");
        }
    }
    if (disk_format) {
        if (image.disk.empty()) {
            where.fail("disk_format", "is set but 'disk' is not");
        }
        if (*disk_format != "qcow2" && *disk_format != "raw") {
            where.fail("disk_format",
                       "expected \"qcow2\" or \"raw\", got \"" + printable(*disk_format) + "\"");
        }
        image.disk_format = *disk_format;
    }

    const ImageLimits builtin;
    const Limit vcpus =
        limit_field(entry, "vcpus", {builtin.default_vcpus, builtin.max_vcpus}, UINT_MAX, where);
    const Limit memory =
        limit_field(entry, "memory_mib", {builtin.default_memory_mib, builtin.max_memory_mib},
                    max_memory_mib, where);
    image.limits = {static_cast<unsigned>(vcpus.default_value),
                    static_cast<unsigned>(vcpus.max_value), memory.default_value, memory.max_value};

    if (const auto timeout = json_member(entry, "ready_timeout")) {
        image.ready_timeout = static_cast<unsigned>(
            expect_count(*timeout, 0, max_ready_timeout, where, "ready_timeout"));
    }
    image.access = access_field(entry, where);
    return image;
}

JsonPtr parse_json(const std::string &text, const std::string &origin) {
    if (text.size() > max_catalog_bytes) {
        throw Error("catalog " + origin + ": larger than " + std::to_string(max_catalog_bytes) +
                    " bytes; is this the catalog?");
    }
    const JsonTokenerPtr tokener(json_tokener_new());
    if (!tokener) {
        throw Error("catalog " + origin + ": out of memory");
    }
    json_tokener_set_flags(tokener.get(), JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    JsonPtr root(json_tokener_parse_ex(tokener.get(), text.data(), static_cast<int>(text.size())));
    const json_tokener_error error = json_tokener_get_error(tokener.get());
    if (root && error == json_tokener_success) {
        return root;
    }
    const std::size_t end = std::min(json_tokener_get_parse_end(tokener.get()), text.size());
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<long>(end), '\n');
    const std::string reason =
        error == json_tokener_continue ? "unexpected end of file" : json_tokener_error_desc(error);
    throw Error("catalog " + origin + ": invalid JSON at line " + std::to_string(line) + ": " +
                reason);
}

// json-c keeps the last of two equal keys without a word; a second "access" pasted below the
// first must not silently replace it. The text is already valid JSON, so a plain scan suffices.
void reject_duplicate_keys(const std::string &text, const std::string &origin) {
    std::vector<std::set<std::string>> objects;  // keys seen, per open object
    std::vector<bool> in_object;                 // per open container: object or array
    std::size_t line = 1;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '\n') {
            ++line;
        } else if (c == '{' || c == '[') {
            in_object.push_back(c == '{');
            objects.emplace_back();
        } else if ((c == '}' || c == ']') && !in_object.empty()) {
            in_object.pop_back();
            objects.pop_back();
        } else if (c == '"') {
            const std::size_t start = i + 1;
            for (++i; i < text.size() && text[i] != '"'; ++i) {
                i += text[i] == '\\' ? 1 : 0;
            }
            const std::string key = text.substr(start, i - start);
            std::size_t next = i + 1;
            while (next < text.size() && std::isspace(static_cast<unsigned char>(text[next]))) {
                ++next;
            }
            const bool is_key =
                !in_object.empty() && in_object.back() && next < text.size() && text[next] == ':';
            if (is_key && !objects.back().insert(key).second) {
                throw Error("catalog " + origin + ": line " + std::to_string(line) + ": field '" +
                            printable(key) + "' appears twice in the same object");
            }
        }
    }
}

std::string read_file(const std::string &path) {
    const UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        throw Error("catalog " + path + ": cannot open: " + errno_text(errno));
    }
    std::string text;
    char buf[65536];
    while (true) {
        const ssize_t n = read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            throw Error("catalog " + path + ": cannot read: " + errno_text(errno));
        }
        if (n == 0) {
            return text;
        }
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > max_catalog_bytes) {
            throw Error("catalog " + path + ": larger than " + std::to_string(max_catalog_bytes) +
                        " bytes; is this the catalog?");
        }
    }
}

std::string usable_list(const Catalog &catalog, const UserIdentity &who) {
    const auto names = usable_images(catalog, who);
    return names.empty() ? "none" : join(names);
}

bool contains(const std::vector<std::string> &list, const std::string &item) {
    return std::find(list.begin(), list.end(), item) != list.end();
}

}  // namespace

Catalog Catalog::parse(const std::string &json_text, const std::string &origin) {
    const JsonPtr root = parse_json(json_text, origin);
    reject_duplicate_keys(json_text, origin);
    Where where(origin);
    if (!json_object_is_type(root.get(), json_type_object)) {
        where.fail("expected a JSON object with an \"images\" list at the top, got " +
                   shown(root.get()));
    }
    reject_unknown_fields(root.get(), top_fields, where, "");
    const auto images = json_member(root.get(), "images");
    if (!images) {
        where.fail("images", "is required (it may be an empty list)");
    }
    if (!json_object_is_type(*images, json_type_array)) {
        where.fail("images", "expected a list, got " + shown(*images));
    }

    Catalog catalog;
    std::map<std::string, std::size_t> seen;
    const std::size_t count = json_object_array_length(*images);
    for (std::size_t i = 0; i < count; ++i) {
        Image image = parse_image(json_object_array_get_idx(*images, i), i, where);
        const auto [first, inserted] = seen.emplace(image.name, i);
        if (!inserted) {
            where.fail("name", "duplicate of entry " + std::to_string(first->second));
        }
        catalog.images_.push_back(std::move(image));
    }
    return catalog;
}

Catalog Catalog::load(const std::string &path) {
    return parse(read_file(path), path);
}

const Image *Catalog::find(std::string_view name) const {
    const auto it = std::find_if(images_.begin(), images_.end(),
                                 [&](const Image &image) { return image.name == name; });
    return it == images_.end() ? nullptr : &*it;
}

bool may_use(const Image &image, const UserIdentity &who) {
    const ImageAccess &access = image.access;
    if (!access.users.empty() && !contains(access.users, who.user)) {
        return false;
    }
    if (!access.groups.empty() &&
        std::none_of(who.groups.begin(), who.groups.end(),
                     [&](const std::string &group) { return contains(access.groups, group); })) {
        return false;
    }
    // An account not known yet (at submit time the default account may still be filled in
    // later) is checked again where it is known.
    if (!access.accounts.empty() && !who.account.empty() &&
        !contains(access.accounts, who.account)) {
        return false;
    }
    return true;
}

std::vector<std::string> usable_images(const Catalog &catalog, const UserIdentity &who) {
    std::vector<std::string> names;
    for (const Image &image : catalog.images()) {
        if (may_use(image, who)) {
            names.push_back(image.name);
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string image_refusal(const Catalog &catalog, std::string_view requested,
                          const UserIdentity &who) {
    const std::string problem = image_name_problem(requested);
    if (!problem.empty()) {
        return "image name '" + printable(requested) + "' is invalid: " + problem;
    }
    const Image *image = catalog.find(requested);
    if (!image) {
        return "image '" + std::string(requested) +
               "' is not in the catalog; images you may use: " + usable_list(catalog, who);
    }
    if (may_use(*image, who)) {
        return "";
    }
    std::vector<std::string> allowed;
    if (!image->access.users.empty()) {
        allowed.push_back("users: " + join(image->access.users));
    }
    if (!image->access.groups.empty()) {
        allowed.push_back("groups: " + join(image->access.groups));
    }
    if (!image->access.accounts.empty()) {
        allowed.push_back("accounts: " + join(image->access.accounts));
    }
    return "image '" + image->name + "' is not available to user '" + printable(who.user) +
           "' (allowed " + join(allowed, "; ") +
           "); images you may use: " + usable_list(catalog, who);
}

std::string image_refusal_at_start(const Catalog &catalog, std::string_view requested,
                                   const UserIdentity &who, const std::string &account_problem) {
    const Image *image = catalog.find(requested);
    if (image != nullptr && !image->access.accounts.empty() && who.account.empty()) {
        return "image '" + image->name + "' is for accounts " + join(image->access.accounts) +
               " only, and the job's account is not known" +
               (account_problem.empty() ? "" : " (" + account_problem + ")");
    }
    std::string refusal = image_refusal(catalog, requested, who);
    if (!refusal.empty() && !who.account.empty()) {
        refusal = "account '" + printable(who.account) + "': " + refusal;
    }
    return refusal;
}

UserIdentity identity_of_uid(uid_t uid, std::string account) {
    const std::string who = "uid " + std::to_string(uid);
    std::optional<UserEntry> user;
    try {
        user = find_user(uid);
    } catch (const Error &e) {
        throw Error(who + ": cannot look up the user: " + e.what());
    }
    if (!user) {
        throw Error(who + ": no such user");
    }
    UserIdentity identity{user->name, {}, std::move(account)};
    std::vector<gid_t> gids;
    try {
        gids = group_ids(user->name, user->gid);
    } catch (const Error &e) {
        throw Error(who + ": " + e.what());
    }
    for (const gid_t gid : gids) {
        // A gid without a name cannot match a name in the catalog: leave it out.
        const auto name = find_group_name(gid);
        if (name && !contains(identity.groups, *name)) {
            identity.groups.push_back(*name);
        }
    }
    return identity;
}

}  // namespace svm
