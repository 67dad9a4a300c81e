#include "vm/job_vm.h"

#include "util/accounts.h"
#include "util/atomic_file.h"
#include "vm/capabilities.h"
#include "vm/domain_xml.h"
#include "util/error.h"
#include "exec/exec_client.h"
#include "catalog/image_features.h"
#include "vm/orphans.h"
#include "util/json.h"
#include "util/text.h"
#include "vm/job_storage.h"
#include "vm/kvm_probe.h"
#include "vm/kvm_verdict.h"
#include "vm/overlay.h"
#include "vm/virtiofs.h"
#include "vm/warm_start.h"
#include "util/cpu_list.h"
#include "util/cpu_topology.h"
#include "util/safe_fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace svm {

namespace {

using Clock = std::chrono::steady_clock;

// How many times a boot (or a stop) is made again after libvirtd closed its connection.
constexpr unsigned kBootAttempts = 3;

LibvirtTimeouts libvirt_timeouts(const Config &config) {
    LibvirtTimeouts t;
    t.call = std::chrono::seconds(config.libvirt_timeout_seconds);
    t.reconnect = std::chrono::seconds(config.libvirt_reconnect_seconds);
    return t;
}

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string describe(const JobVmRequest &r) {
    return "image '" + r.image + "' on " + r.node + " (job " + std::to_string(r.jobid) + ")";
}

// A root-owned folder of `mode` (the umask does not apply), after removing a stale one of an
// earlier job with the same id. A file system without room is a job failure (a user can fill
// one), any other failure a node fault.
void make_dir(const std::string &path, mode_t mode) {
    remove_tree(path);
    if (mkdir(path.c_str(), mode) != 0) {
        throw_folder_error(path, errno);
    }
    hand_over_folder(path, 0, 0, mode);
}

// exec.<i>.lock: exec clients take a free channel by locking its file (see exec_client.h).
void make_lock_files(const JobVmPaths &paths, unsigned ports, uid_t uid, gid_t gid) {
    for (unsigned i = 0; i < ports; ++i) {
        const std::string lock = paths.channel_dir + "/exec." + std::to_string(i) + ".lock";
        const int fd =
            open(lock.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || fchown(fd, uid, gid) != 0) {
            const int err = errno;
            if (fd >= 0) {
                close(fd);
            }
            throw Error("cannot create " + lock + ": " + errno_text(err));
        }
        close(fd);
    }
}

// The channel folder is root's for the VM's whole life: nothing of the user's is ever in it
// while root pings and sets up the guest through its sockets, and the user cannot put files on
// run_dir's file system (/run, a small tmpfs: `sbatch -o <channel folder>/f` would fill it).
// libvirt made the sockets (it passes them to QEMU as open files); each is checked and handed
// to the user through a descriptor (0600: only the user and root connect), then the folder is
// opened to traversal (0711): the user reaches their sockets and lock files by name.
void give_channels_to_user(const JobVmPaths &paths, unsigned ports, uid_t uid, gid_t gid) {
    for (unsigned i = 0; i < ports; ++i) {
        hand_over_socket(paths.channel_dir, "exec." + std::to_string(i) + ".sock", 0, uid, gid);
    }
    hand_over_folder(paths.channel_dir, 0, 0, 0711);
}

bool is_under(const std::string &path, const std::string &dir) {
    if (path == dir) {
        return true;
    }
    const std::string prefix = dir.back() == '/' ? dir : dir + "/";
    return path.compare(0, prefix.size(), prefix) == 0;
}

// The configured shared paths that exist here. The job's working directory must lie under
// one of them: sharing it wherever it points would put the host's `/` (--chdir=/) or any
// folder over the guest's own.
std::vector<Share> shares_for(const Config &config, const std::string &work_dir) {
    std::vector<Share> shares;
    for (const auto &p : config.shared_paths) {
        if (fs::is_directory(p)) {
            shares.push_back({"svm" + std::to_string(shares.size()), p, p, false, ""});
        }
    }
    if (work_dir.empty()) {
        return shares;
    }
    const std::string wd = fs::path(work_dir).lexically_normal().string();
    const bool covered = std::any_of(shares.begin(), shares.end(),
                                     [&](const Share &s) { return is_under(wd, s.host_path); });
    if (!covered) {
        std::string list;
        for (const auto &p : config.shared_paths) {
            list += (list.empty() ? "" : ", ") + p;
        }
        throw Error("the working directory " + printable(work_dir) +
                    " is not under a folder shared with VMs (" + list +
                    "): submit from under one of them (or use --chdir), or ask your admin to add "
                    "it to shared_paths");
    }
    return shares;
}

// Moves `who` (and its children) into the job's boot cgroup, held by a pidfd.
void move_into_boot_cgroup(const std::string &folder, const ProcessIdentity &who,
                           const std::string &what) {
    std::vector<ProcessHandle> held;
    held.push_back(ProcessHandle::open(who, what));
    try {
        move_into_cgroup(folder, held);
    } catch (const Error &e) {
        throw Error("cannot move the VM into the job's cgroup: " + std::string(e.what()));
    }
}

// Facts about the running VM for the epilog and accounting (vm_record.h reads them).
void write_state_file(const JobVmPaths &paths, const JobVmRequest &r, const StartReport &report) {
    JsonPtr state = json_new_object();
    json_set(state.get(), "domain", json_from_string(paths.domain));
    json_set(state.get(), "image", json_from_string(r.image));
    json_set(state.get(), "node", json_from_string(r.node));
    json_set(state.get(), "jobid", json_from_int(r.jobid));
    json_set(state.get(), "hostname", json_from_string(report.hostname));
    json_set(state.get(), "vcpus", json_from_int(report.vcpus));
    json_set(state.get(), "memory_mib", json_from_int(static_cast<int64_t>(report.memory_mib)));
    json_set(state.get(), "domain_type", json_from_string(report.domain_type));
    json_set(state.get(), "ready_at", json_from_int(time(nullptr)));
    json_set(state.get(), "pinned_cpus", json_from_string(report.pinned_cpus));
    // For the extern step, which moves these into the job's cgroups (place_job_vm): each one
    // by pid and start time, so a pid reused meanwhile is never taken for it.
    json_set(state.get(), "qemu_pid", json_from_int(report.qemu.pid));
    json_set(state.get(), "qemu_start",
             json_from_int(static_cast<int64_t>(report.qemu.start_ticks)));
    JsonPtr virtiofsds(json_object_new_array());
    for (const ProcessIdentity &d : report.virtiofsds) {
        JsonPtr one = json_new_object();
        json_set(one.get(), "pid", json_from_int(d.pid));
        json_set(one.get(), "start", json_from_int(static_cast<int64_t>(d.start_ticks)));
        json_object_array_add(virtiofsds.get(), one.release());
    }
    json_set(state.get(), "virtiofsd", std::move(virtiofsds));
    // Root's alone: it names QEMU's and virtiofsd's pids, which are no business of other users.
    write_file_atomically(paths.state_file, json_to_text(state.get()) + "\n", 0600);
}

// The epilog's fast stop: POWEROFF to the agent on exec port 0 (the tasks have ended, so no
// client holds it). Root connects into the user's folder: the socket is opened without
// following links and must be the folder owner's (open_owned_socket), then reached through its
// descriptor. A user who put a listener of their own there gets root's POWEROFF frame in their
// own process, nothing else, and the stop goes on with the power button. "" when the agent
// agreed, else why not.
std::string ask_agent_to_power_off(const JobVmPaths &paths, std::chrono::milliseconds timeout) {
    const std::string name = "exec.0.sock";
    const std::string path = paths.channel_dir + "/" + name;
    const int timeout_ms = static_cast<int>(std::max<long long>(0, timeout.count()));
    const std::int64_t deadline = monotonic_ms() + timeout_ms;
    try {
        UniqueFd target = open_owned_socket(paths.channel_dir, name);
        const std::string via = "/proc/self/fd/" + std::to_string(target.get());
        UniqueFd sock;
        try {
            sock = connect_unix_with_deadline(via, timeout_ms);
        } catch (const Error &e) {
            std::string message = e.what();
            if (auto at = message.find(via); at != std::string::npos) {
                message.replace(at, via.size(), path);
            }
            throw Error(message);
        }
        const auto left = static_cast<int>(std::max<std::int64_t>(1, deadline - monotonic_ms()));
        request_poweroff(sock.get(), path, left);
        return "";
    } catch (const Error &e) {
        return e.what();
    }
}

// The channel folder is the user's by now: remove_tree follows no link they may have planted.
void remove_job_files(const JobVmPaths &paths) {
    for (const auto &dir : {paths.channel_dir, paths.state_dir}) {
        try {
            remove_tree(dir);
        } catch (const Error &) {
            // The orphan sweep tries again; the caller's own error is what matters.
        }
    }
}

// The last `count` non-empty lines of the guest's console, printable, joined by " | ".
std::string console_tail(const std::string &path, std::size_t count = 2) {
    std::istringstream in(file_tail(path, 8192));
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
            line.pop_back();
        }
        if (!line.empty()) {
            lines.push_back(printable(line.substr(0, 200)));
        }
    }
    std::string out;
    const std::size_t first = lines.size() > count ? lines.size() - count : 0;
    // A panic's first line says why; the lines after it are a stack trace.
    for (std::size_t i = 0; i < first; ++i) {
        if (lines[i].find("Kernel panic") != std::string::npos) {
            out = lines[i] + " | ...";
            break;
        }
    }
    for (std::size_t i = first; i < lines.size(); ++i) {
        out += (out.empty() ? "" : " | ") + lines[i];
    }
    return out;
}

// The job's user as this host knows it (root's NSS lookup, never text from the job), for the
// guest's /etc/passwd and /etc/group. Nothing for root, or a uid the host cannot name.
std::optional<GuestUser> guest_user_for(uid_t uid, gid_t gid) {
    if (uid == 0) {
        return std::nullopt;
    }
    std::optional<UserEntry> found;
    try {
        found = find_user(uid);
    } catch (const Error &) {
        return std::nullopt;
    }
    if (!found) {
        return std::nullopt;
    }
    GuestUser user;
    user.name = found->name;
    user.uid = uid;
    user.gid = gid;
    user.home = found->home.starts_with('/') ? found->home : "/";
    std::vector<gid_t> gids;
    try {
        gids = group_ids(user.name, gid);
    } catch (const Error &) {
        // The primary group alone.
    }
    gids.insert(gids.begin(), gid);  // the primary group first
    for (gid_t g : gids) {
        const auto name = find_group_name(g);
        if (!name) {
            continue;
        }
        const bool seen = std::any_of(user.groups.begin(), user.groups.end(),
                                      [&](const GuestGroup &x) { return x.gid == g; });
        if (!seen) {
            user.groups.push_back({*name, g});
        }
    }
    return user;
}

// Which domain type this VM gets. Under `auto`, a host without a verdict on KVM probes it
// first (vm/kvm_probe.h): as root, with a guest no user can touch, never with this job's VM.
DomainTypeChoice choose_type(LibvirtLink &link, const Config &config, const Catalog &catalog,
                             const Image &image, const JobVmRequest &r, StartReport &report) {
    char *caps = link.call("", link.timeouts().call,
                           [](virConnectPtr conn) { return virConnectGetCapabilities(conn); });
    if (caps == nullptr) {
        const std::string what = "cannot read libvirt's capabilities";
        throw Error(what + ": " + link.failure(what));
    }
    const std::string caps_xml(caps);
    free(caps);
    const std::set<std::string> offered = offered_domain_types(caps_xml);
    std::optional<KvmVerdict> verdict;
    std::string device_problem;
    if (config.domain_type != "qemu" && offered.contains("kvm")) {
        // QEMU runs as the job's user: it is that user who must be able to open /dev/kvm.
        device_problem = kvm_device_problem(r.uid, r.gid);
        if (config.domain_type == "auto" && device_problem.empty()) {
            const std::optional<Image> probe_image = kvm_probe_image(catalog, r.node);
            const KvmProbeResult probe =
                kvm_verdict_or_probe(link.get(), config, probe_image ? *probe_image : image,
                                     host_key(link.get()), r.node);
            verdict = probe.verdict;
            if (probe.ran || !probe.verdict) {
                report.kvm_verdict = probe.summary;
            }
        }
    }
    return choose_domain_type(offered, config.domain_type, verdict, device_problem);
}

// One short ping of the agent on `control`: between two, wait_ready looks at the domain's
// state, so a guest that dies is noticed within about a second.
bool agent_answers(const std::string &control, std::chrono::milliseconds remaining) {
    try {
        ping_agent(control, static_cast<int>(std::min<long long>(remaining.count(), 1000)));
        return true;
    } catch (const Error &) {
        return false;
    }
}

// The guest booted but its agent never answered: the image's fault, as when it dies.
class GuestNotReadyError : public Error {
  public:
    using Error::Error;
};

// Waits until the agent of the VM just created from `spec` answers. Throws GuestDiedError when
// the guest stopped, GuestNotReadyError when it never answered.
void wait_for_agent(VmLifecycle &vm, const VmSpec &spec, unsigned timeout_s) {
    const std::string control = spec.channel_dir + "/exec.0.sock";
    const std::string &domain_type = spec.domain_type;
    bool ready = false;
    try {
        ready = vm.wait_ready(
            std::chrono::seconds(timeout_s),
            [&](std::chrono::milliseconds remaining) { return agent_answers(control, remaining); });
    } catch (const VmStoppedError &e) {
        const std::string qemu = qemu_log_error(spec.name);
        std::string message =
            std::string("the VM stopped while it booted (") + domain_type + "): " + e.what();
        if (!qemu.empty()) {
            message += "; QEMU: " + qemu;
        }
        const std::string console = console_tail(spec.console_log);
        message += "; console: " + (console.empty() ? "(empty)" : console);
        throw GuestDiedError(message, qemu);
    }
    if (!ready) {
        const std::string console = console_tail(spec.console_log);
        throw GuestNotReadyError("the VM did not become ready within " + std::to_string(timeout_s) +
                                 " s (its agent never answered; console: " +
                                 (console.empty() ? "(empty)" : console) + ")");
    }
}

// Starts the job's VM from a snapshot of its image (vm/warm_start.h), making the snapshot
// first when this node has none free. True, with report.start_mode "warm (...)", when the
// agent answered; otherwise false, with report.start_mode "cold: <why>" (and
// report.warm_problem when something failed) and whatever it made removed: the caller boots
// cold. Throws what wait_for_agent throws when the snapshot's own boot shows the image broken.
bool start_warm(LibvirtLink &link, const Config &config, const Image &image, const JobVmRequest &r,
                const JobVmPaths &paths, VmSpec &spec, unsigned timeout_s, StartReport &report) {
    std::string key_text, key_dir;
    std::optional<WarmSlot> slot;
    try {
        key_text = warm_key_text(image, host_key(link.get()), spec);
        key_dir = warm_key_dir(config.state_dir, image.name, key_text);
        slot = take_warm_slot(link.get(), key_dir, key_text);
    } catch (const LibvirtConnectionError &) {
        throw;  // libvirtd went: the whole boot is tried again (start_job_vm)
    } catch (const Error &e) {
        report.start_mode = std::string("cold: ") + e.what();
        report.warm_problem = report.start_mode;
        return false;
    }
    if (!slot) {
        report.start_mode = "cold: all " + std::to_string(kMaxWarmSlots) +
                            " snapshot slots of this image are in use";
        return false;
    }
    if (!slot->has_state) {
        const std::string refusal = warm_make_refusal(key_dir);
        if (!refusal.empty()) {
            report.start_mode = "cold: no snapshot (" + refusal + ")";
            return false;
        }
        try {
            report.snapshot_seconds =
                make_warm_snapshot(link, *slot, key_dir, key_text, spec, image, config.uefi_vars,
                                   [timeout_s](VmLifecycle &vm, const VmSpec &booted) {
                                       wait_for_agent(vm, booted, timeout_s);
                                   });
        } catch (const GuestDiedError &) {
            throw;  // the image's guest dies or hangs: booting it again would not help
        } catch (const GuestNotReadyError &) {
            throw;
        } catch (const LibvirtConnectionError &) {
            throw;
        } catch (const Error &e) {
            report.start_mode = std::string("cold: the snapshot could not be made: ") + e.what();
            report.warm_problem = report.start_mode;
            return false;
        }
        // The cache grew: the least recently used snapshots go beyond warm_cache.
        try {
            report.warm_evicted = evict_warm_snapshots(link.get(), config.state_dir,
                                                       config.warm_cache_mib, slot->dir);
        } catch (const Error &e) {
            report.warm_problem =
                std::string("cannot keep the snapshots within warm_cache: ") + e.what();
        }
    }
    VmLifecycle vm(link, paths.domain);
    try {
        if (!spec.disk.empty()) {
            create_overlay(slot->disk, "qcow2", spec.disk, r.uid, r.gid);
        }
        if (!spec.uefi_vars.empty()) {
            copy_uefi_vars(slot->uefi_vars, spec.uefi_vars, r.uid, r.gid);
        }
        spec.uuid = slot->uuid;
        spec.mac = slot->mac;
        auto t = Clock::now();
        // The slot is this job's while its lock is held: the saved domain takes its name.
        rename_saved_domain(slot->state, paths.domain);
        vm.restore(slot->state, render_domain_xml(spec));
        report.create_seconds = seconds_since(t);
        t = Clock::now();
        const std::string control = paths.channel_dir + "/exec.0.sock";
        bool ready = false;
        try {
            // The guest misses the first connection to its port after a restore (measured
            // with debian11: a ping on it is never answered, the next connection's is), so
            // the first pings are short: 250 ms, 500 ms, then 1 s each.
            int ping_ms = 250;
            ready = vm.wait_ready(kWarmReadyTimeout, [&](std::chrono::milliseconds remaining) {
                const auto limit = std::chrono::milliseconds(ping_ms);
                ping_ms = std::min(ping_ms * 2, 1000);
                return agent_answers(control, std::min(remaining, limit));
            });
        } catch (const VmStoppedError &e) {
            throw Error(std::string("the restored VM stopped: ") + e.what());
        }
        if (!ready) {
            throw Error("the restored VM's agent did not answer within " +
                        std::to_string(kWarmReadyTimeout.count() / 1000) + " s");
        }
        report.ready_seconds = seconds_since(t);
        report.start_mode = "warm (slot " + std::to_string(slot->index) + ")";
        return true;
    } catch (const LibvirtConnectionError &) {
        // libvirtd went: the snapshot is not to blame and stays; the boot is tried again.
        try {
            vm.destroy();
        } catch (const Error &) {
        }
        for (const std::string *file : {&spec.disk, &spec.uefi_vars}) {
            if (!file->empty()) {
                unlink(file->c_str());
            }
        }
        throw;
    } catch (const Error &e) {
        try {
            vm.destroy();
        } catch (const Error &) {
        }
        for (const std::string *file : {&spec.disk, &spec.uefi_vars}) {
            if (!file->empty()) {
                unlink(file->c_str());
            }
        }
        spec.uuid.clear();
        spec.mac.clear();
        discard_warm_snapshot(*slot);
        report.snapshot_seconds = 0;
        report.start_mode = std::string("cold: the snapshot did not restore: ") + e.what();
        report.warm_problem = report.start_mode;
        return false;
    }
}

// The job's folders: the parents (made traversable), its state folder, its channel folder and
// the channels' lock files.
void make_job_folders(const Config &config, const JobVmRequest &r, const JobVmPaths &paths) {
    // slurmd may run with umask 077: the parents must stay traversable for the job's
    // user (its exec client and its QEMU), whatever the umask made them.
    for (const auto &dir :
         {config.state_dir, config.state_dir + "/jobs", config.run_dir, config.log_dir}) {
        std::error_code ec;
        fs::create_directories(dir, ec);
        if (ec || chmod(dir.c_str(), 0755) != 0) {
            throw_folder_error(dir, ec ? ec.value() : errno);
        }
    }
    make_dir(paths.state_dir, 0755);
    make_dir(paths.channel_dir, 0700);
    make_lock_files(paths, config.exec_ports, r.uid, r.gid);
}

// The host CPUs the vCPUs are pinned on: Slurm's for the job, in the kernel's numbering. None
// (and report.pin_problem says why) when pinning is off or cannot be done.
void pin_vcpus(const Config &config, const JobVmRequest &r, VmSpec &spec, StartReport &report) {
    if (!config.pin_vcpus) {
        report.pin_problem = "pin_vcpus=no";
    } else if (r.slurm_cpus.empty()) {
        report.pin_problem = "Slurm gave no CPU ids";
    } else {
        try {
            // The kernel's ids: Slurm's are abstract (socket, core, thread order).
            spec.cpus = kernel_cpus_of(r.slurm_cpus, kernel_cpus_in_slurm_order());
            report.pinned_cpus = format_cpu_list(spec.cpus);
        } catch (const Error &e) {
            report.pin_problem = e.what();  // a node description to fix, not a job to fail
        }
    }
}

// How the guest boots: its kernel, or its disk (an overlay, made later) and firmware.
void set_boot_media(const Config &config, const Image &image, const JobVmPaths &paths,
                    VmSpec &spec) {
    // QEMU runs as the job's user and libvirt relabels nothing (relabel='no'): the
    // catalog's files stay root's and only need to be readable.
    spec.kernel = image.kernel;
    spec.initrd = image.initrd;
    spec.cmdline = image.cmdline;
    if (!spec.kernel.empty() && spec.cmdline.find("panic=") == std::string::npos) {
        // A kernel that panics while booting would otherwise hang until the ready
        // timeout; rebooting ends the domain at once (<on_reboot>destroy</on_reboot>).
        spec.cmdline += spec.cmdline.empty() ? "panic=1" : " panic=1";
    }
    if (image.disk.empty()) {
        return;
    }
    // Made later: on the image's disk (cold) or on a snapshot's (warm).
    spec.disk = paths.state_dir + "/disk.qcow2";
    spec.disk_format = "qcow2";
    if (image.firmware == "uefi") {
        if (access(config.uefi_code.c_str(), R_OK) != 0) {
            throw NodeFaultError("the UEFI firmware " + config.uefi_code +
                                 " cannot be read (install Debian's ovmf package, or "
                                 "set uefi_code in plugstack.conf)");
        }
        spec.uefi_code = config.uefi_code;
        spec.uefi_vars = paths.state_dir + "/uefi-vars.fd";
    }
}

// The domain this job's VM is, except the virtiofs sockets (start_virtiofsds adds them).
VmSpec vm_spec_for(const Config &config, const Image &image, const JobVmRequest &r,
                   const JobVmPaths &paths, const std::string &domain_type, StartReport &report) {
    VmSpec spec;
    spec.name = paths.domain;
    spec.domain_type = domain_type;
    spec.vcpus = report.vcpus;
    pin_vcpus(config, r, spec, report);
    spec.memory_mib = report.memory_mib;
    set_boot_media(config, image, paths, spec);
    spec.shares = shares_for(config, r.work_dir);
    spec.user_network = (image.network.empty() ? config.network : image.network) == "user";
    spec.console_log = paths.console_log;
    spec.channel_dir = paths.channel_dir;
    spec.exec_ports = config.exec_ports;
    spec.run_as = std::make_pair(r.uid, r.gid);
    spec.metadata = {{"jobid", std::to_string(r.jobid)},
                     {"node", r.node},
                     {"image", r.image},
                     {"uid", std::to_string(r.uid)}};
    return spec;
}

// One virtiofsd per share when the image (or the node) shares by virtiofs, each in the job's
// boot cgroup when there is one. Their pids go to `virtiofsds` as each starts, so that the
// caller can kill them if the boot fails.
void start_virtiofsds(const Config &config, const Image &image, const JobVmRequest &r,
                      const JobVmPaths &paths, VmSpec &spec, StartReport &report,
                      std::vector<pid_t> &virtiofsds) {
    if ((image.share.empty() ? config.share : image.share) != "virtiofs") {
        return;
    }
    for (std::size_t i = 0; i < spec.shares.size(); ++i) {
        Share &share = spec.shares[i];
        VirtiofsdSpec d;
        d.binary = config.virtiofsd;
        d.shared_dir = share.host_path;
        // The state folder is root's and traversable: QEMU (the job's user) connects.
        d.socket_path = paths.state_dir + "/virtiofs." + std::to_string(i) + ".sock";
        d.log_path = paths.state_dir + "/virtiofsd." + std::to_string(i) + ".log";
        d.uid = r.uid;
        d.gid = r.gid;
        virtiofsds.push_back(start_virtiofsd(d));
        report.virtiofsds.push_back({virtiofsds.back(), process_start_ticks(virtiofsds.back())});
        share.virtiofs_socket = d.socket_path;
        if (!report.boot_cgroup.empty()) {
            move_into_boot_cgroup(report.boot_cgroup, report.virtiofsds.back(),
                                  "virtiofsd of domain " + paths.domain);
        }
    }
}

// How long the guest has to answer: the job's choice, else the image's, else the node's.
unsigned ready_timeout_for(const Config &config, const Image &image, const JobVmRequest &r) {
    unsigned timeout_s =
        image.ready_timeout != 0 ? image.ready_timeout : config.ready_timeout_seconds;
    if (r.ready_timeout_seconds != 0) {
        timeout_s = r.ready_timeout_seconds;
    }
    return timeout_s;
}

// Why this VM boots cold without trying a snapshot, as report.start_mode says it; "" when a
// warm start may be tried.
std::string cold_start_reason(const Config &config, const Image &image, const StartReport &report,
                              bool has_virtiofsd) {
    if (!config.warm_start || !image.warm_start) {
        return "cold";  // warm_start=no, or the catalog's "warm_start": false
    }
    if (config.warm_cache_mib == 0) {
        return "cold: warm_cache=0 keeps no snapshot";
    }
    if (!report.boot_cgroup.empty()) {
        // libvirt's restore loads all of the guest's memory before it returns, with no hook
        // between QEMU's start and the load (qemuProcessStart waits for the incoming
        // migration; its "started" hook runs after). QEMU would load it in libvirt's cgroup,
        // and cgroup v2 never moves charges: that memory would never be the job's.
        return "cold: on cgroup v2 a restored VM's memory could not be charged to its job (it "
               "is loaded before QEMU can join the job's cgroup, and charges never move)";
    }
    if (has_virtiofsd) {
        return "cold: virtiofs shares cannot be saved with their virtiofsd";
    }
    return "";
}

// Boots the VM from the image's own disk (an overlay) or kernel and waits for its agent.
void start_cold(VmLifecycle &vm, const Config &config, const Image &image, const JobVmRequest &r,
                const JobVmPaths &paths, const VmSpec &spec, unsigned timeout_s,
                StartReport &report) {
    if (!spec.disk.empty()) {
        create_overlay(image.disk, image.disk_format, spec.disk, r.uid, r.gid);
    }
    if (!spec.uefi_vars.empty()) {
        if (access(config.uefi_vars.c_str(), R_OK) != 0) {
            throw NodeFaultError("the UEFI variable store template " + config.uefi_vars +
                                 " cannot be read (install Debian's ovmf package, or "
                                 "set uefi_vars in plugstack.conf)");
        }
        // Now only writing the copy can fail: the state folder's room, a job failure.
        copy_uefi_vars(config.uefi_vars, spec.uefi_vars, r.uid, r.gid);
    }
    auto t = Clock::now();
    if (report.boot_cgroup.empty()) {
        vm.create(render_domain_xml(spec));
    } else {
        // Paused until QEMU is in the job's cgroup: no vCPU has touched the guest's
        // memory yet, so every page of it is the job's.
        vm.create(render_domain_xml(spec), [&] {
            move_into_boot_cgroup(report.boot_cgroup, find_qemu(paths.domain),
                                  "QEMU of domain " + paths.domain);
        });
    }
    report.create_seconds = seconds_since(t);
    t = Clock::now();
    wait_for_agent(vm, spec, timeout_s);
    report.ready_seconds = seconds_since(t);
}

// The agent sets the guest up for the job (clock, entropy, hostname, user, mounts, command
// links); then the channels become the user's.
void set_up_guest_for_job(const Config &config, const JobVmRequest &r, const JobVmPaths &paths,
                          const VmSpec &spec, StartReport &report) {
    const auto t = Clock::now();
    SetupRequest setup;
    setup.hostname = report.hostname;
    for (const auto &s : spec.shares) {
        setup.mounts.push_back(
            {s.tag, s.guest_path, s.readonly, s.virtiofs_socket.empty() ? "9p" : "virtiofs"});
    }
    setup.user = guest_user_for(r.uid, r.gid);
    // What a snapshot's guests would otherwise share, or have stale: the clock (stopped at
    // the save), the kernel's random state, machine-id. A booted guest gets the same
    // clock and entropy: no harm, and one path to test.
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    setup.clock_ns = static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
    setup.entropy = random_bytes(32);
    setup.new_machine_id = report.start_mode.starts_with("warm");
    // A job script may name a Slurm command by its path on the host (/usr/bin/srun):
    // the guest gets that path too, where its image has nothing there.
    setup.command_links = HostCallPolicy{config.host_calls}.command_paths();
    setup_guest(paths.channel_dir + "/exec.0.sock", setup, 30000);
    give_channels_to_user(paths, config.exec_ports, r.uid, r.gid);
    report.setup_seconds = seconds_since(t);
}

// What a failed boot made goes: the domain, its virtiofsds and the job's files.
void undo_boot(VmLifecycle &vm, const std::vector<pid_t> &virtiofsds, const JobVmPaths &paths) {
    try {
        vm.destroy();
    } catch (const Error &) {
        // The domain may never have existed; the original error is what matters.
    }
    for (const pid_t pid : virtiofsds) {
        kill(pid, SIGKILL);  // our own child: the pid cannot have been reused
        waitpid(pid, nullptr, 0);
    }
    remove_job_files(paths);
}

// Boots the VM under `domain_type`, waits for its agent and sets the guest up. On failure,
// removes whatever it made and throws GuestDiedError (the guest stopped while booting) or Error.
void boot(LibvirtLink &link, const Config &config, const Image &image, const JobVmRequest &r,
          const JobVmPaths &paths, const std::string &domain_type, StartReport &report) {
    VmLifecycle vm(link, paths.domain);
    report.domain_type = domain_type;
    // virtiofsd processes of this boot: each ends when QEMU closes its socket, but one whose
    // QEMU never came is killed here.
    std::vector<pid_t> virtiofsds;
    try {
        make_job_folders(config, r, paths);
        VmSpec spec = vm_spec_for(config, image, r, paths, domain_type, report);
        start_virtiofsds(config, image, r, paths, spec, report, virtiofsds);
        // A console log of an earlier boot of this domain would be read as this one's.
        unlink(paths.console_log.c_str());

        const unsigned timeout_s = ready_timeout_for(config, image, r);
        const std::string cold = cold_start_reason(config, image, report, !virtiofsds.empty());
        bool warm = false;
        if (cold.empty()) {
            warm = start_warm(link, config, image, r, paths, spec, timeout_s, report);
        } else {
            report.start_mode = cold;
        }
        if (!warm) {
            start_cold(vm, config, image, r, paths, spec, timeout_s, report);
        }
        set_up_guest_for_job(config, r, paths, spec, report);

        try {
            // The same pid file whether the VM booted or was restored.
            report.qemu = find_qemu(paths.domain);
        } catch (const Error &e) {
            report.qemu_problem = e.what();  // the extern step looks again, and says so
        }
        write_state_file(paths, r, report);
    } catch (const Error &) {
        undo_boot(vm, virtiofsds, paths);
        throw;
    }
}

}  // namespace

uint64_t guest_memory_mib(const ImageLimits &limits, uint64_t allocation_mib,
                          uint64_t overhead_mib) {
    if (allocation_mib == 0) {
        return limits.default_memory_mib;
    }
    const uint64_t left = allocation_mib > overhead_mib ? allocation_mib - overhead_mib : 0;
    if (left < kMinGuestMemoryMib) {
        throw Error("the job's " + std::to_string(allocation_mib) +
                    " MiB of memory on this node leave " + std::to_string(left) +
                    " MiB for the VM once QEMU's own " + std::to_string(overhead_mib) +
                    " MiB (memory_overhead) are set aside, and a VM needs at least " +
                    std::to_string(kMinGuestMemoryMib) + " MiB: ask for at least " +
                    std::to_string(kMinGuestMemoryMib + overhead_mib) +
                    " MiB (--mem, or --mem-per-cpu)");
    }
    return std::min(left, limits.max_memory_mib);
}

StartReport start_job_vm(const Config &config, const Catalog &catalog, const JobVmRequest &r) {
    const Image *listed = catalog.find(r.image);
    if (listed == nullptr) {
        throw Error(describe(r) + ": the image is not in the catalog " + config.catalog);
    }
    // Per-node image folders: %n in the catalog's paths is this node's name.
    const Image image = resolve_for_node(*listed, r.node);
    const JobVmPaths paths = job_vm_paths(config, r.jobid, r.node);
    StartReport report;
    report.domain = paths.domain;
    report.hostname = expand_hostname(config.hostname_template, r.node, r.jobid);
    report.vcpus =
        r.cpus == 0 ? image.limits.default_vcpus : std::min(r.cpus, image.limits.max_vcpus);
    try {
        report.memory_mib =
            guest_memory_mib(image.limits, r.memory_mib, config.memory_overhead_mib);
    } catch (const Error &e) {
        throw Error(describe(r) + ": " + e.what());
    }

    try {
        // Room first: a file system a user filled fails this job with one line, before
        // anything is made (a write that fails half-way would say less, or drain the node).
        check_room_for_vm(config,
                          image.disk.empty() ? 0 : disk_size_mib(image.disk, image.disk_format));
        prune_console_logs(config.log_dir, config.state_dir, config.console_logs_mib);
    } catch (const Error &e) {
        throw Error(describe(r) + ": " + e.what());
    }

    if (r.job_cgroups) {
        // Before Slurm makes any folder of the job's: the VM boots in one of ours below the
        // job's, limited to the job's memory until Slurm's own limit comes with the extern step.
        const BootCgroup boot = JobCgroups::for_node(*r.job_cgroups)
                                    ->make_boot_cgroup(JobCgroupKey{r.node, r.uid, r.jobid},
                                                       r.memory_mib * 1024 * 1024);
        report.boot_cgroup = boot.folder;
        report.boot_cgroup_problem = boot.note;
    }

    LibvirtLink link(config.libvirt_uri, libvirt_timeouts(config));
    // libvirtd unreachable for libvirt_reconnect seconds: not the job's doing, and the next
    // job would meet it too.
    const auto node_fault = [&](const LibvirtConnectionError &e) {
        return NodeFaultError(e.what());
    };
    DomainTypeChoice choice;
    try {
        choice = choose_type(link, config, catalog, image, r, report);
    } catch (const LibvirtConnectionError &e) {
        throw node_fault(e);
    } catch (const Error &e) {
        throw Error(describe(r) + ": " + e.what());
    }
    report.kvm_fallback_reason = choice.fallback_reason;
    // libvirtd went away in the middle of a boot (a restart closes every client's
    // connection). The create (or restore) may or may not have made the domain: libvirtd,
    // coming back, kills a domain that was still starting (qemuProcessReconnect) and keeps
    // one that had started. boot() destroyed it if it could; it is destroyed by name here
    // once libvirtd answers again, then the whole boot is made again from scratch (new
    // virtiofsd, overlay, channels): never two domains, never one left behind.
    try {
        for (unsigned attempt = 1;; ++attempt) {
            try {
                boot(link, config, image, r, paths, choice.type, report);
                break;
            } catch (const LibvirtConnectionError &e) {
                if (attempt >= kBootAttempts) {
                    throw node_fault(e);
                }
                try {
                    VmLifecycle(link, paths.domain).destroy();
                } catch (const LibvirtConnectionError &gone) {
                    throw node_fault(gone);
                }
                report.libvirt_restarts.push_back(e.what());
            }
        }
    } catch (const GuestDiedError &died) {
        throw GuestDiedError(describe(r) + ": " + died.what(), died.qemu_error);
    } catch (const NodeFaultError &) {
        throw;
    } catch (const Error &e) {
        throw Error(describe(r) + ": " + e.what());
    }
    return report;
}

StopReport stop_job_vm(const Config &config, uint32_t jobid, std::string_view node) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    StopReport report;
    LibvirtLink link(config.libvirt_uri, libvirt_timeouts(config));
    const auto grace_end =
        std::chrono::steady_clock::now() + std::chrono::seconds(config.grace_seconds);
    // A libvirtd restart during the stop closes the connection: the stop is taken up again
    // on a new one with what is left of the grace period (the domain outlives libvirtd).
    for (unsigned attempt = 1;; ++attempt) {
        try {
            VmLifecycle vm(link, paths.domain);
            vm.attach();
            // The job is over: the agent's power-off first, then the power button, then
            // destroy.
            const auto left = std::max(std::chrono::milliseconds(0),
                                       std::chrono::duration_cast<std::chrono::milliseconds>(
                                           grace_end - std::chrono::steady_clock::now()));
            report = vm.stop(left, [&](std::chrono::milliseconds timeout) {
                return ask_agent_to_power_off(paths, timeout);
            });
            break;
        } catch (const LibvirtConnectionError &) {
            if (attempt < kBootAttempts) {
                continue;
            }
            // The job's files go anyway; a domain still running without them is removed by
            // the orphan sweep (which finds domains through libvirt) once libvirtd is back.
            remove_job_files(paths);
            throw;
        }
    }
    remove_job_files(paths);
    return report;
}

}  // namespace svm
