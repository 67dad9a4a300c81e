#include "vm/warm_start.h"

#include "util/accounts.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/json.h"
#include "util/safe_fs.h"
#include "util/text.h"
#include "vm/libvirt_handles.h"
#include "vm/overlay.h"
#include <libvirt/virterror.h>
#include "vm/vm_lifecycle.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>

namespace fs = std::filesystem;

namespace svm {

namespace {

constexpr const char *kFormat = "slurm-vm warm v1";
// libvirt's own unprivileged account for QEMU (Debian's libvirt-daemon-system makes it).
constexpr const char *kSnapshotUser = "libvirt-qemu";

std::string file_identity(const std::string &path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        throw Error("cannot look at " + path + ": " + errno_text(errno));
    }
    return path + " size=" + std::to_string(st.st_size) +
           " mtime=" + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec) + " inode=" + std::to_string(st.st_dev) + ":" +
           std::to_string(st.st_ino);
}

// The part of the key that only a change of the image's files or of the host invalidates: its
// folder's older siblings can never be used again.
std::string image_part(const Image &image, const std::string &host_key) {
    std::string text = std::string(kFormat) + "\nhost " + host_key + "\n";
    for (const std::string *path : {&image.kernel, &image.initrd, &image.disk}) {
        if (!path->empty()) {
            text += "file " + file_identity(*path) + "\n";
        }
    }
    return text;
}

// The VM's shape: what two jobs' VMs of one size share.
std::string shape_part(const VmSpec &job) {
    VmSpec shape = job;
    shape.name = "svm-warm";
    shape.uuid.clear();
    shape.mac.clear();
    shape.cpus.clear();
    shape.metadata.clear();
    shape.run_as.reset();
    if (!shape.channel_dir.empty()) {
        shape.channel_dir = "/channels";
    }
    if (!shape.console_log.empty()) {
        shape.console_log = "/console";
    }
    if (!shape.disk.empty()) {
        shape.disk = "/disk";
    }
    if (!shape.uefi_vars.empty()) {
        shape.uefi_vars = "/uefi-vars";
    }
    return "shape\n" + render_domain_xml(shape);
}

// `path` and every folder from `<state_dir>/warm` down to it, root's and 0755 whatever
// slurmd's umask made them: job QEMUs (the jobs' users) read a slot's disk.
void make_public_dir(const std::string &path) {
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec) {
        throw Error("cannot create " + path + ": " + ec.message());
    }
    // A slot is 5 levels below `warm`: never more, whatever the path.
    int levels = 6;
    for (fs::path p = path; levels-- > 0 && p.has_relative_path(); p = p.parent_path()) {
        if (chmod(p.c_str(), 0755) != 0) {
            throw Error("cannot make " + p.string() + " traversable: " + errno_text(errno));
        }
        if (p.filename() == "warm") {
            break;
        }
    }
}

std::string hex(std::string_view bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

struct SlotMeta {
    std::string key, uuid, mac;
};

std::optional<SlotMeta> read_meta(const std::string &dir) {
    try {
        const std::string text = read_whole_file(dir + "/meta.json");
        JsonPtr obj = parse_json_object(text, "warm slot");
        SlotMeta meta;
        meta.key = json_string_value(json_field(obj.get(), "key", "warm slot"), "key");
        meta.uuid = json_string_value(json_field(obj.get(), "uuid", "warm slot"), "uuid");
        meta.mac = json_string_value(json_field(obj.get(), "mac", "warm slot"), "mac");
        return meta;
    } catch (const Error &) {
        return std::nullopt;
    }
}

void write_meta(const WarmSlot &slot, const std::string &key_text, double seconds) {
    JsonPtr obj = json_new_object();
    json_set(obj.get(), "key", json_from_string(key_text));
    json_set(obj.get(), "uuid", json_from_string(slot.uuid));
    json_set(obj.get(), "mac", json_from_string(slot.mac));
    json_set(obj.get(), "made_at", json_from_int(time(nullptr)));
    json_set(obj.get(), "make_ms", json_from_int(static_cast<int64_t>(seconds * 1000)));
    write_file_atomically(slot.dir + "/meta.json", json_to_text(obj.get()) + "\n", 0644);
}

bool domain_with_uuid_runs(virConnectPtr conn, const std::string &uuid) {
    if (uuid.empty()) {
        return false;
    }
    virDomainPtr dom = virDomainLookupByUUIDString(conn, uuid.c_str());
    if (dom == nullptr) {
        if (libvirt_last_error_code() == VIR_ERR_NO_DOMAIN) {
            return false;
        }
        throw Error("cannot look domain " + uuid + " up: " + libvirt_last_error());
    }
    DomainPtr owned(dom);
    return virDomainIsActive(dom) == 1;
}

std::string failure_marker(const std::string &key_dir) {
    return key_dir + "/make-failed";
}

void set_slot_files(WarmSlot &slot) {
    slot.state = slot.dir + "/state";
    slot.disk = slot.dir + "/disk.qcow2";
    slot.uefi_vars = slot.dir + "/uefi-vars.fd";
}

// A frozen file of the snapshot: root's, written by nobody; readable by every job's QEMU
// (`mode` 0644: the disk, the UEFI store) or by root alone (0600: the memory state, which
// libvirtd reads and hands to QEMU as an open file).
void freeze(const std::string &path, mode_t mode = 0644) {
    if (chown(path.c_str(), 0, 0) != 0 || chmod(path.c_str(), mode) != 0) {
        throw Error("cannot make " + path + " read-only: " + errno_text(errno));
    }
}

// Removes the folders of this image's snapshots made for other files or another host.
void prune_stale_keys(const std::string &key_dir) {
    const fs::path image_dir = fs::path(key_dir).parent_path().parent_path();
    const std::string current = fs::path(key_dir).parent_path().filename();
    std::error_code ec;
    for (const auto &entry : fs::directory_iterator(image_dir, ec)) {
        if (entry.path().filename() != current && entry.is_directory(ec) && !entry.is_symlink(ec)) {
            try {
                remove_tree(entry.path());
            } catch (const Error &) {
                // A later make tries again.
            }
        }
    }
}

// An agent answers before the rest of the guest's boot is over (systemd starts its other
// units beside it): a snapshot taken then would make every job finish that boot. Waits until
// the guest's CPU use falls below a quarter of one vCPU over half a second, or `limit` passes.
void wait_until_idle(virConnectPtr conn, const std::string &domain,
                     std::chrono::milliseconds limit) {
    constexpr auto kSample = std::chrono::milliseconds(500);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    virDomainPtr dom = virDomainLookupByName(conn, domain.c_str());
    if (dom == nullptr) {
        throw Error("the snapshot's VM is gone: " + libvirt_last_error());
    }
    DomainPtr owned(dom);
    const auto cpu_ns = [&]() {
        virDomainInfo info{};
        if (virDomainGetInfo(dom, &info) != 0) {
            throw Error("cannot read the snapshot VM's CPU time: " + libvirt_last_error());
        }
        return info.cpuTime;
    };
    unsigned long long before = cpu_ns();
    while (std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(kSample);
        const unsigned long long now = cpu_ns();
        const auto used = std::chrono::nanoseconds(now - before);
        before = now;
        if (used < kSample / 4) {
            return;
        }
    }
}

}  // namespace

std::string warm_key_text(const Image &image, const std::string &host_key, const VmSpec &spec) {
    return image_part(image, host_key) + shape_part(spec);
}

std::string warm_key_hash(std::string_view text) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : text) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    char out[17];
    std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
    return out;
}

std::string random_uuid() {
    std::string b = random_bytes(16);
    b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);
    b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);
    const std::string h = hex(b);
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
           "-" + h.substr(20);
}

std::string random_mac() {
    const std::string h = hex(random_bytes(3));
    return "52:54:00:" + h.substr(0, 2) + ":" + h.substr(2, 2) + ":" + h.substr(4, 2);
}

std::string warm_key_dir(const std::string &state_dir, const std::string &image,
                         const std::string &key_text) {
    const std::size_t split = key_text.find("\nshape\n");
    const std::string images = key_text.substr(0, split);
    const std::string shape = split == std::string::npos ? "" : key_text.substr(split);
    return state_dir + "/warm/" + image + "/" + warm_key_hash(images) + "/" + warm_key_hash(shape);
}

std::string warm_make_refusal(const std::string &key_dir) {
    struct stat st {};
    const std::string marker = failure_marker(key_dir);
    if (lstat(marker.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        return "";
    }
    if (time(nullptr) - st.st_mtime >= kWarmRetryAfter.count()) {
        unlink(marker.c_str());
        return "";
    }
    std::string reason;
    try {
        reason = file_tail(marker, 1000);
    } catch (const Error &) {
    }
    while (!reason.empty() && reason.back() == '\n') {
        reason.pop_back();
    }
    return "an earlier try failed: " + printable(reason);
}

std::optional<WarmSlot> take_warm_slot(virConnectPtr conn, const std::string &key_dir,
                                       const std::string &key_text) {
    make_public_dir(key_dir);
    for (unsigned n = 0; n < kMaxWarmSlots; ++n) {
        const std::string name = "slot-" + std::to_string(n);
        const std::string lock_path = key_dir + "/" + name + ".lock";
        UniqueFd lock(open(lock_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!lock) {
            throw Error("cannot open " + lock_path + ": " + errno_text(errno));
        }
        if (flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
            continue;  // another prolog is making or restoring it
        }
        WarmSlot slot;
        slot.index = n;
        slot.dir = key_dir + "/" + name;
        set_slot_files(slot);
        const auto meta = read_meta(slot.dir);
        if (meta && domain_with_uuid_runs(conn, meta->uuid)) {
            continue;  // a job's VM restored from it runs
        }
        struct stat st {};
        if (meta && meta->key == key_text && lstat(slot.state.c_str(), &st) == 0 &&
            S_ISREG(st.st_mode)) {
            slot.uuid = meta->uuid;
            slot.mac = meta->mac;
            slot.has_state = true;
            // Its last use, for evict_warm_snapshots: the least recently used go first.
            utimensat(AT_FDCWD, (slot.dir + "/meta.json").c_str(), nullptr, AT_SYMLINK_NOFOLLOW);
        } else {
            remove_tree(slot.dir);
        }
        make_public_dir(slot.dir);
        slot.lock = std::move(lock);
        return slot;
    }
    return std::nullopt;
}

double make_warm_snapshot(
    LibvirtLink &link, WarmSlot &slot, const std::string &key_dir, const std::string &key_text,
    VmSpec spec, const Image &image, const std::string &uefi_vars_template,
    const std::function<void(VmLifecycle &vm, const VmSpec &spec)> &wait_ready) {
    const auto started = std::chrono::steady_clock::now();
    const std::string domain =
        "svm-warm-" + fs::path(key_dir).filename().string() + "-" + std::to_string(slot.index);
    VmLifecycle vm(link, domain);
    try {
        prune_stale_keys(key_dir);
        VmLifecycle(link, domain).destroy();  // a maker of this slot killed before it finished
        remove_tree(slot.dir);
        make_public_dir(slot.dir);
        const auto user = find_user_named(kSnapshotUser);
        if (!user) {
            throw Error(std::string("there is no user ") + kSnapshotUser +
                        " to run the snapshot's VM as (libvirt-daemon-system makes it)");
        }
        const std::string channels = slot.dir + "/channels";
        if (mkdir(channels.c_str(), 0700) != 0) {
            throw Error("cannot create " + channels + ": " + errno_text(errno));
        }
        slot.uuid = random_uuid();
        slot.mac = spec.user_network ? random_mac() : "";
        spec.name = domain;
        spec.uuid = slot.uuid;
        spec.mac = slot.mac;
        spec.cpus.clear();
        spec.metadata = {{"image", image.name}, {"warm_slot", std::to_string(slot.index)}};
        spec.channel_dir = channels;
        spec.console_log = slot.dir + "/console.log";
        spec.run_as = std::make_pair(user->uid, user->gid);
        if (!spec.disk.empty()) {
            spec.disk = slot.disk;
            create_overlay(image.disk, image.disk_format, slot.disk, user->uid, user->gid);
        }
        if (!spec.uefi_vars.empty()) {
            spec.uefi_vars = slot.uefi_vars;
            copy_uefi_vars(uefi_vars_template, slot.uefi_vars, user->uid, user->gid);
        }
        vm.create(render_domain_xml(spec));
        wait_ready(vm, spec);
        wait_until_idle(link.get(), domain, kWarmSettleLimit);
        const std::string partial = slot.state + ".part";
        {
            virDomainPtr dom = virDomainLookupByName(link.get(), domain.c_str());
            if (dom == nullptr) {
                throw Error("the snapshot's VM is gone: " +
                            link.failure("the snapshot's VM is gone"));
            }
            DomainPtr owned(dom);
            // Under the link's deadline (the VM is libvirt-qemu's, but libvirtd may hang).
            if (link.call(domain, link.timeouts().call, [&](virConnectPtr) {
                    return virDomainSaveFlags(dom, partial.c_str(), nullptr, 0);
                }) != 0) {
                const std::string what = "libvirt could not save the snapshot's VM";
                throw Error(what + ": " + link.failure(what));
            }
        }
        freeze(partial, 0600);
        if (!spec.disk.empty()) {
            freeze(slot.disk);
        }
        if (!spec.uefi_vars.empty()) {
            freeze(slot.uefi_vars);
        }
        if (rename(partial.c_str(), slot.state.c_str()) != 0) {
            throw Error("cannot rename " + partial + ": " + errno_text(errno));
        }
        remove_tree(channels);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        write_meta(slot, key_text, seconds);
        slot.has_state = true;
        return seconds;
    } catch (const Error &e) {
        try {
            vm.destroy();
        } catch (const Error &) {
        }
        discard_warm_snapshot(slot);
        // libvirtd's restart says nothing of the image: no marker, the next job tries again.
        if (dynamic_cast<const LibvirtConnectionError *>(&e) == nullptr) {
            try {
                write_file_atomically(failure_marker(key_dir), printable(e.what()) + "\n", 0644);
            } catch (const Error &) {
            }
        }
        throw;
    }
}

namespace {

// libvirt's struct _virQEMUSaveHeader (src/qemu/qemu_saveimage.h), native byte order.
struct SaveHeader {
    char magic[16];
    std::uint32_t version;
    std::uint32_t data_len;
    std::uint32_t was_running;
    std::uint32_t compressed;
    std::uint32_t cookie_offset;
    std::uint32_t unused[14];
};
static_assert(sizeof(SaveHeader) == 92);
constexpr std::string_view kSaveMagic = "LibvirtQemudSave";
constexpr std::uint32_t kSaveVersion = 2;
constexpr std::uint32_t kMaxSaveData = 16 << 20;

}  // namespace

void rename_saved_domain(const std::string &state_file, const std::string &name) {
    const auto fail = [&](const std::string &why) {
        throw Error("cannot rename the domain saved in " + state_file + ": " + why);
    };
    UniqueFd fd(open(state_file.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        fail(errno_text(errno));
    }
    SaveHeader header{};
    if (pread(fd.get(), &header, sizeof header, 0) != static_cast<ssize_t>(sizeof header)) {
        fail("it is shorter than libvirt's header");
    }
    if (std::string_view(header.magic, sizeof header.magic) != kSaveMagic ||
        header.version != kSaveVersion) {
        fail("it is not a libvirt QEMU save file of version " + std::to_string(kSaveVersion));
    }
    if (header.data_len == 0 || header.data_len > kMaxSaveData ||
        header.cookie_offset >= header.data_len) {
        fail("its header's lengths make no sense");
    }
    std::string data(header.data_len, '\0');
    if (pread(fd.get(), data.data(), data.size(), sizeof header) !=
        static_cast<ssize_t>(data.size())) {
        fail("it is shorter than its header says");
    }
    const std::string xml = data.substr(0, data.find('\0'));
    std::string cookie;
    if (header.cookie_offset != 0) {
        cookie = data.substr(header.cookie_offset);
        cookie = cookie.substr(0, cookie.find('\0'));
    }
    // libvirt writes the domain's <name> first; other <name> elements come later.
    const std::size_t open_tag = xml.find("<name>");
    const std::size_t close_tag = xml.find("</name>", open_tag);
    if (open_tag == std::string::npos || close_tag == std::string::npos ||
        xml.find('<', xml.find("<domain") + 1) != open_tag) {
        fail("its domain XML does not start with <name>");
    }
    const std::string renamed =
        xml.substr(0, open_tag + 6) + xml_escape(name) + xml.substr(close_tag);
    std::string out = renamed + '\0';
    if (header.cookie_offset != 0) {
        header.cookie_offset = static_cast<std::uint32_t>(out.size());
        out += cookie + '\0';
    }
    if (out.size() > header.data_len) {
        fail("the new name does not fit");
    }
    out.resize(header.data_len, '\0');
    if (pwrite(fd.get(), &header, sizeof header, 0) != static_cast<ssize_t>(sizeof header) ||
        pwrite(fd.get(), out.data(), out.size(), sizeof header) !=
            static_cast<ssize_t>(out.size())) {
        fail(errno_text(errno));
    }
}

namespace {

// Bytes on disk of the files in `dir` and its folders, without following links.
uint64_t bytes_under(const fs::path &dir, int depth = 0) {
    uint64_t total = 0;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        struct stat st {};
        if (lstat(it->path().c_str(), &st) != 0) {
            continue;
        }
        total += static_cast<uint64_t>(st.st_blocks) * 512;
        if (S_ISDIR(st.st_mode) && depth < 4) {
            total += bytes_under(it->path(), depth + 1);
        }
    }
    return total;
}

struct CachedSlot {
    fs::path dir;      // .../<key>/slot-<n>
    fs::path lock;     // .../<key>/slot-<n>.lock
    int64_t used = 0;  // meta.json's mtime: its last make or restore
    uint64_t bytes = 0;
};

// Every slot folder of <state_dir>/warm/<image>/<files+host>/<shape>/.
std::vector<CachedSlot> cached_slots(const std::string &state_dir) {
    std::vector<CachedSlot> slots;
    const auto folders = [](const fs::path &p) {
        std::vector<fs::path> out;
        std::error_code ec;
        for (fs::directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec)) {
            if (it->is_directory(ec) && !it->is_symlink(ec)) {
                out.push_back(it->path());
            }
        }
        return out;
    };
    for (const auto &image : folders(fs::path(state_dir) / "warm")) {
        for (const auto &files : folders(image)) {
            for (const auto &shape : folders(files)) {
                for (const auto &dir : folders(shape)) {
                    if (!dir.filename().string().starts_with("slot-")) {
                        continue;
                    }
                    CachedSlot slot;
                    slot.dir = dir;
                    slot.lock = dir.string() + ".lock";
                    struct stat st {};
                    slot.used =
                        lstat((dir / "meta.json").c_str(), &st) == 0 ? st.st_mtim.tv_sec : 0;
                    slot.bytes = bytes_under(dir);
                    slots.push_back(std::move(slot));
                }
            }
        }
    }
    return slots;
}

}  // namespace

std::vector<std::string> evict_warm_snapshots(virConnectPtr conn, const std::string &state_dir,
                                              uint64_t max_mib, const std::string &keep) {
    std::vector<CachedSlot> slots = cached_slots(state_dir);
    uint64_t total = 0;
    for (const auto &slot : slots) {
        total += slot.bytes;
    }
    std::sort(slots.begin(), slots.end(),
              [](const CachedSlot &a, const CachedSlot &b) { return a.used < b.used; });
    std::vector<std::string> removed;
    const uint64_t max_bytes = max_mib * 1024 * 1024;
    for (const auto &slot : slots) {
        if (total <= max_bytes) {
            break;
        }
        if (slot.dir == fs::path(keep)) {
            continue;
        }
        UniqueFd lock(open(slot.lock.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
        if (!lock || flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
            continue;  // being made or restored
        }
        const auto meta = read_meta(slot.dir);
        try {
            if (meta && domain_with_uuid_runs(conn, meta->uuid)) {
                continue;  // a job's VM runs from it (its disk backs the VM's overlay)
            }
            remove_tree(slot.dir);
        } catch (const Error &) {
            continue;  // libvirt could not say, or a file would not go: keep it
        }
        total -= std::min(total, slot.bytes);
        removed.push_back(slot.dir.string());
    }
    return removed;
}

void discard_warm_snapshot(WarmSlot &slot) {
    slot.has_state = false;
    try {
        remove_tree(slot.dir);
    } catch (const Error &) {
        // The next take_warm_slot empties it (no meta, no state).
    }
}

}  // namespace svm
