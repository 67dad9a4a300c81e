#include "accounting/vm_record.h"

#include "util/atomic_file.h"
#include "util/config.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/json.h"
#include "vm/vm_lifecycle.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <limits>

namespace svm {

namespace {

namespace fs = std::filesystem;

constexpr const char *kWhat = "VM record";

std::string field_what(const char *key) {
    return std::string(kWhat) + ": field '" + key + "'";
}

std::string string_field(json_object *obj, const char *key) {
    return json_string_value(json_field(obj, key, kWhat), field_what(key));
}

int64_t int_field(json_object *obj, const char *key, int64_t min, int64_t max) {
    return json_int_value(json_field(obj, key, kWhat), min, max, field_what(key));
}

bool valid_stop(const std::string &stop) {
    return stop == "graceful" || stop == "destroyed" || stop == "failed";
}

// Bytes that would break the comment's own grammar, sacct's '|' columns or scontrol's
// argument parsing.
bool needs_escape(unsigned char c) {
    return c == '%' || c == ';' || c == ',' || c == '@' || c == '=' || c == '|' || c <= ' ' ||
           c == 0x7f;
}

std::string escape_value(std::string_view value) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (const char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        if (needs_escape(c)) {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        } else {
            out += ch;
        }
    }
    return out;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

std::vector<std::string_view> split(std::string_view text, char sep) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    for (;;) {
        const size_t pos = text.find(sep, start);
        parts.push_back(text.substr(start, pos == std::string_view::npos ? pos : pos - start));
        if (pos == std::string_view::npos) {
            return parts;
        }
        start = pos + 1;
    }
}

class CommentParser {
  public:
    explicit CommentParser(std::string_view comment) : comment_(comment) {}

    [[noreturn]] void fail(const std::string &reason) const {
        throw Error("admin comment '" + std::string(comment_) + "': " + reason);
    }

    std::string unescape(std::string_view value, const std::string &where) const {
        std::string out;
        for (size_t i = 0; i < value.size(); ++i) {
            if (value[i] != '%') {
                out += value[i];
                continue;
            }
            const int hi = i + 2 < value.size() ? hex_digit(value[i + 1]) : -1;
            const int lo = hi >= 0 ? hex_digit(value[i + 2]) : -1;
            if (lo < 0) {
                fail(where + ": '%' must be followed by two hex digits");
            }
            out += static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        return out;
    }

  private:
    std::string_view comment_;
};

}  // namespace

std::string encode_vm_record(const VmRecord &r) {
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "jobid", json_from_int(r.jobid));
    json_set(obj.get(), "cluster", json_from_string(r.cluster));
    json_set(obj.get(), "user", json_from_string(r.user));
    json_set(obj.get(), "image", json_from_string(r.image));
    json_set(obj.get(), "node", json_from_string(r.node));
    json_set(obj.get(), "physical_host", json_from_string(r.physical_host));
    json_set(obj.get(), "vm_hostname", json_from_string(r.vm_hostname));
    json_set(obj.get(), "domain", json_from_string(r.domain));
    json_set(obj.get(), "vcpus", json_from_int(r.vcpus));
    json_set(obj.get(), "memory_mib", json_from_int(static_cast<int64_t>(r.memory_mib)));
    json_set(obj.get(), "ready_at", json_from_int(r.ready_at));
    json_set(obj.get(), "stopped_at", json_from_int(r.stopped_at));
    json_set(obj.get(), "stop", json_from_string(r.stop));
    return json_to_text(obj.get());
}

VmRecord decode_vm_record(std::string_view json) {
    JsonPtr obj = parse_json_object(json, kWhat);
    json_object *o = obj.get();
    VmRecord r;
    r.jobid = static_cast<uint32_t>(int_field(o, "jobid", 1, std::numeric_limits<uint32_t>::max()));
    r.cluster = string_field(o, "cluster");
    r.user = string_field(o, "user");
    r.image = string_field(o, "image");
    r.node = string_field(o, "node");
    r.physical_host = string_field(o, "physical_host");
    r.vm_hostname = string_field(o, "vm_hostname");
    r.domain = string_field(o, "domain");
    r.vcpus = static_cast<unsigned>(int_field(o, "vcpus", 0, std::numeric_limits<int>::max()));
    r.memory_mib =
        static_cast<uint64_t>(int_field(o, "memory_mib", 0, std::numeric_limits<int64_t>::max()));
    r.ready_at = int_field(o, "ready_at", 0, std::numeric_limits<int64_t>::max());
    r.stopped_at = int_field(o, "stopped_at", 0, std::numeric_limits<int64_t>::max());
    r.stop = string_field(o, "stop");
    if (!valid_stop(r.stop)) {
        throw Error(field_what("stop") +
                    ": expected \"graceful\", \"destroyed\" or \"failed\", got " +
                    json_excerpt(json_field(o, "stop", kWhat)));
    }
    for (const auto &[key, value] :
         {std::pair<const char *, const std::string *>{"image", &r.image},
          {"node", &r.node},
          {"physical_host", &r.physical_host}}) {
        if (value->empty()) {
            throw Error(field_what(key) + ": must not be empty");
        }
    }
    return r;
}

VmRecord vm_record_from_state(std::string_view state_json, const std::string &cluster,
                              const std::string &user, const std::string &physical_host,
                              int64_t stopped_at, const std::string &stop) {
    static const std::string what = "VM state file";
    JsonPtr obj = parse_json_object(state_json, what);
    json_object *o = obj.get();
    const auto str = [&](const char *key) {
        return json_string_value(json_field(o, key, what), what + ": field '" + key + "'");
    };
    const auto num = [&](const char *key, int64_t min, int64_t max) {
        return json_int_value(json_field(o, key, what), min, max, what + ": field '" + key + "'");
    };
    VmRecord r;
    r.jobid = static_cast<uint32_t>(num("jobid", 1, std::numeric_limits<uint32_t>::max()));
    r.cluster = cluster;
    r.user = user;
    r.image = str("image");
    r.node = str("node");
    r.physical_host = physical_host;
    r.vm_hostname = str("hostname");
    r.domain = str("domain");
    r.vcpus = static_cast<unsigned>(num("vcpus", 0, std::numeric_limits<int>::max()));
    r.memory_mib = static_cast<uint64_t>(num("memory_mib", 0, std::numeric_limits<int64_t>::max()));
    r.ready_at = num("ready_at", 0, std::numeric_limits<int64_t>::max());
    r.stopped_at = stopped_at;
    r.stop = stop;
    if (!valid_stop(r.stop)) {
        throw Error(what + ": stop kind '" + stop + "': expected graceful, destroyed or failed");
    }
    return r;
}

std::string stop_kind(const StopReport &stopped) {
    if (stopped.destroyed) {
        return "destroyed";
    }
    if (stopped.graceful || !stopped.was_running) {
        return "graceful";
    }
    return "failed";
}

namespace {

// Where our word starts in `comment` (at its start or after a space), npos when absent.
std::size_t our_word(std::string_view comment) {
    for (std::size_t at = comment.find(kAdminCommentPrefix); at != std::string_view::npos;
         at = comment.find(kAdminCommentPrefix, at + 1)) {
        if (at == 0 || comment[at - 1] == ' ') {
            return at;
        }
    }
    return std::string_view::npos;
}

std::string_view trimmed(std::string_view s) {
    while (!s.empty() && s.front() == ' ') {
        s.remove_prefix(1);
    }
    while (!s.empty() && s.back() == ' ') {
        s.remove_suffix(1);
    }
    return s;
}

}  // namespace

std::string admin_comment_at_submit(std::string_view existing, const std::string &image,
                                    const std::string &hostname_template) {
    std::string foreign(existing);
    if (const std::size_t at = our_word(existing); at != std::string_view::npos) {
        const std::size_t end = existing.find(' ', at);
        foreign = std::string(existing.substr(0, at)) +
                  std::string(end == std::string_view::npos ? "" : existing.substr(end));
    }
    const std::string ours = std::string(kAdminCommentPrefix) + "image=" + escape_value(image) +
                             ";hostname=" + escape_value(hostname_template);
    const std::string_view kept = trimmed(foreign);
    return kept.empty() ? ours : std::string(kept) + " " + ours;
}

std::optional<VmJobComment> parse_admin_comment(std::string_view whole) {
    const std::size_t at = our_word(whole);
    if (at == std::string_view::npos) {
        return std::nullopt;
    }
    std::string_view comment = whole.substr(at);
    comment = comment.substr(0, comment.find(' '));
    const CommentParser p(comment);
    VmJobComment parsed;
    bool have_image = false;
    for (const std::string_view field : split(comment.substr(kAdminCommentPrefix.size()), ';')) {
        const size_t eq = field.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            p.fail("field '" + std::string(field) + "': expected key=value");
        }
        const std::string_view key = field.substr(0, eq), value = field.substr(eq + 1);
        if (key == "image") {
            parsed.image = p.unescape(value, "image");
            have_image = !parsed.image.empty();
        } else if (key == "hostname") {
            parsed.hostname_template = p.unescape(value, "hostname");
        }
        // Other keys: a newer slurm-vm may add fields; the ones we know still count.
    }
    if (!have_image) {
        p.fail("no image");
    }
    return parsed;
}

std::vector<VmPlacement> vm_placements(const VmJobComment &comment,
                                       const std::vector<std::string> &nodes, uint32_t jobid) {
    std::vector<VmPlacement> out;
    if (comment.hostname_template.empty()) {
        return out;
    }
    for (const auto &node : nodes) {
        out.push_back({expand_hostname(comment.hostname_template, node, jobid), node});
    }
    return out;
}

RecordSpool::RecordSpool(std::string dir) : dir_(std::move(dir)) {
    for (const char *sub : {"", "/pending", "/bad"}) {
        const std::string path = dir_ + sub;
        if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
            throw Error("record spool " + path + ": cannot create: " + errno_text(errno));
        }
    }
}

void RecordSpool::add(const VmRecord &record) {
    if (record.node.empty() || record.node.find('/') != std::string::npos ||
        record.node[0] == '.') {
        throw Error("record spool " + dir_ + ": node name '" + record.node +
                    "' cannot name a spool file");
    }
    const std::string path =
        dir_ + "/pending/" + std::to_string(record.jobid) + "-" + record.node + ".json";
    write_file_atomically(path, encode_vm_record(record) + "\n", 0600);
}

std::vector<std::pair<std::string, VmRecord>> RecordSpool::pending() {
    warnings_.clear();
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto &entry : fs::directory_iterator(dir_ + "/pending", ec)) {
        const std::string name = entry.path().filename().string();
        // Dot files are add()'s temporaries, complete only once renamed.
        if (!name.starts_with(".") && name.ends_with(".json")) {
            names.push_back(name);
        }
    }
    if (ec) {
        throw Error("record spool " + dir_ + "/pending: cannot list: " + ec.message());
    }
    std::sort(names.begin(), names.end());
    std::vector<std::pair<std::string, VmRecord>> records;
    for (const std::string &name : names) {
        const std::string path = dir_ + "/pending/" + name;
        try {
            records.emplace_back(name.substr(0, name.size() - 5),
                                 decode_vm_record(read_whole_file(path)));
        } catch (const Error &e) {
            const std::string bad = dir_ + "/bad/" + name;
            std::string warning = std::string("spool file ") + path + ": " + e.what();
            if (rename(path.c_str(), bad.c_str()) == 0) {
                warning += "; moved to " + bad;
                try {
                    write_file_atomically(bad + ".reason", std::string(e.what()) + "\n", 0600);
                } catch (const Error &) {
                    // The warning itself still carries the reason.
                }
            } else {
                warning += "; cannot move it to " + bad + ": " + errno_text(errno);
            }
            warnings_.push_back(warning);
        }
    }
    return records;
}

void RecordSpool::done(const std::string &id) {
    if (id.empty() || id.find('/') != std::string::npos || id[0] == '.') {
        throw Error("record spool " + dir_ + ": '" + id + "' is not a record id");
    }
    const std::string path = dir_ + "/pending/" + id + ".json";
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
        throw Error("record spool: cannot remove " + path + ": " + errno_text(errno));
    }
}

void append_jsonl(const std::string &path, const VmRecord &record) {
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
    if (!fd) {
        throw Error("cannot append to " + path + ": " + errno_text(errno));
    }
    const std::string line = encode_vm_record(record) + "\n";
    ssize_t n;
    do {
        n = write(fd.get(), line.data(), line.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        throw Error("cannot append to " + path + ": " + errno_text(errno));
    }
    if (static_cast<size_t>(n) != line.size()) {
        // A partial line would corrupt the next one; a newline at least ends it.
        (void)!write(fd.get(), "\n", 1);
        throw Error("cannot append to " + path + ": short write (" + std::to_string(n) + " of " +
                    std::to_string(line.size()) + " bytes)");
    }
}

}  // namespace svm
