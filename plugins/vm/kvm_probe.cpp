#include "vm/kvm_probe.h"

#include "catalog/image_features.h"
#include "exec/exec_client.h"
#include "util/accounts.h"
#include "util/error.h"
#include "util/fd.h"
#include "util/safe_fs.h"
#include "util/text.h"
#include "vm/domain_xml.h"
#include "vm/overlay.h"
#include "vm/vm_lifecycle.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

namespace svm {

namespace {

using Clock = std::chrono::steady_clock;

// libvirt's own unprivileged QEMU account (Debian's libvirt-daemon-system makes it): no job's
// user can stop, trace or signal a QEMU running as it.
constexpr const char *kProbeUser = "libvirt-qemu";
// A probe that proved nothing (its guest answered under neither KVM nor TCG) is not run again
// for this long (or kvm_verdict_ttl, if shorter): every job would otherwise pay for it.
constexpr int64_t kUnprovenHoldsSeconds = 3600;

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string secs(double s) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.2f s", s);
    return buf;
}

// One boot of the probe's guest.
struct ProbeBoot {
    bool booted = false;  // libvirt was asked to start it (anything before that is no evidence)
    bool ready = false;   // its agent answered
    std::string why;      // why not, one line
    std::string qemu;     // QEMU's own error line, "" when it said none
    double seconds = 0;
};

// Boots `image` under `type` as libvirt-qemu in <state_dir>/kvm-probe (root's), waits up to
// `timeout` for its agent, then destroys it and removes its files.
ProbeBoot boot_probe(virConnectPtr conn, const Config &config, const Image &image,
                     const std::string &type, std::chrono::seconds timeout) {
    const std::string dir = config.state_dir + "/kvm-probe";
    ProbeBoot boot;
    VmLifecycle vm(conn, kKvmProbeDomain);
    try {
        vm.destroy();  // one that a probe killed half-way left running
        remove_tree(dir);
        std::error_code ec;
        std::filesystem::create_directories(config.state_dir, ec);
        const std::string channels = dir + "/channels";
        if (mkdir(dir.c_str(), 0755) != 0 || chmod(dir.c_str(), 0755) != 0 ||
            mkdir(channels.c_str(), 0700) != 0) {
            throw Error("cannot create " + dir + ": " + errno_text(errno));
        }
        const auto user = find_user_named(kProbeUser);
        if (!user) {
            throw Error(std::string("there is no user ") + kProbeUser +
                        " to run the probe's VM as (libvirt-daemon-system makes it)");
        }
        VmSpec spec;
        spec.name = kKvmProbeDomain;
        spec.domain_type = type;
        spec.vcpus = 1;
        spec.memory_mib = image.limits.default_memory_mib;
        spec.kernel = image.kernel;
        spec.initrd = image.initrd;
        spec.cmdline = image.cmdline;
        if (!spec.kernel.empty() && spec.cmdline.find("panic=") == std::string::npos) {
            spec.cmdline += spec.cmdline.empty() ? "panic=1" : " panic=1";  // as a job's VM
        }
        spec.run_as = std::make_pair(user->uid, user->gid);
        if (!image.disk.empty()) {
            spec.disk = dir + "/disk.qcow2";
            spec.disk_format = "qcow2";
            create_overlay(image.disk, image.disk_format, spec.disk, user->uid, user->gid);
            if (image.firmware == "uefi") {
                spec.uefi_code = config.uefi_code;
                spec.uefi_vars = dir + "/uefi-vars.fd";
                copy_uefi_vars(config.uefi_vars, spec.uefi_vars, user->uid, user->gid);
            }
        }
        spec.user_network = (image.network.empty() ? config.network : image.network) == "user";
        spec.console_log = dir + "/console.log";
        spec.channel_dir = channels;
        spec.exec_ports = config.exec_ports;  // the shape of every VM: the agent expects it
        spec.metadata = {{"image", image.name}, {"kvm_probe", "1"}};
        const std::string xml = render_domain_xml(spec);
        const auto t = Clock::now();
        boot.booted = true;
        try {
            vm.create(xml);
        } catch (const Error &e) {
            // Where KVM is offered but broken, QEMU may end before the guest runs at all
            // ("failed to set MSR 0x10a": KVM refused the vCPU's state): evidence like a death.
            boot.why = "did not start: " + printable(std::string(e.what()).substr(0, 300));
            boot.qemu = qemu_log_error(kKvmProbeDomain);
            if (boot.qemu.empty() && blames_kvm(e.what())) {
                // libvirt's message holds QEMU's stderr (a QEMU of libvirt-qemu's, not a user's)
                boot.qemu = printable(std::string(e.what()).substr(0, 300));
            }
            throw;
        }
        const std::string control = channels + "/exec.0.sock";
        try {
            boot.ready = vm.wait_ready(timeout, [&](std::chrono::milliseconds remaining) {
                try {
                    ping_agent(control,
                               static_cast<int>(std::min<long long>(remaining.count(), 1000)));
                    return true;
                } catch (const Error &) {
                    return false;
                }
            });
            if (!boot.ready) {
                boot.why = "did not answer within " + std::to_string(timeout.count()) + " s";
            }
        } catch (const VmStoppedError &e) {
            boot.why = std::string("stopped while it booted (") + printable(e.what()) + ")";
        }
        boot.seconds = seconds_since(t);
        if (!boot.ready) {
            boot.qemu = qemu_log_error(kKvmProbeDomain);
        }
    } catch (const Error &e) {
        if (boot.why.empty()) {
            boot.why = printable(e.what());
        }
    }
    try {
        vm.destroy();
    } catch (const Error &) {
        // Destroyed by the next probe, which destroys a leftover first.
    }
    try {
        remove_tree(dir);
    } catch (const Error &) {
    }
    return boot;
}

// The probe, under the host's probe lock: boots, judges, saves.
KvmProbeResult probe_locked(virConnectPtr conn, const Config &config, const Image &image,
                            const std::string &key, const std::string &node) {
    KvmProbeResult result;
    result.ran = true;
    const auto t = Clock::now();
    KvmVerdict v;
    v.key = key;
    v.node = node;
    v.decided_at = time(nullptr);
    const std::string what = "image '" + image.name + "'";
    const ProbeBoot kvm = boot_probe(conn, config, image, "kvm",
                                     std::chrono::seconds(config.kvm_probe_timeout_seconds));
    if (kvm.ready) {
        v.works = true;
        result.summary = "works: " + what + " answered under KVM in " + secs(kvm.seconds);
    } else if (blames_kvm(kvm.qemu)) {
        // QEMU's own words, from a QEMU no user can touch.
        v.reason = kvm.qemu;
        result.summary = "broken: " + what + " " + kvm.why + " under KVM; QEMU: " + kvm.qemu;
    } else {
        // A guest that spins under KVM, or dies without QEMU naming KVM: the same guest under
        // TCG tells whether KVM or the image is to blame.
        const unsigned tcg_timeout =
            image.ready_timeout != 0 ? image.ready_timeout : config.ready_timeout_seconds;
        const ProbeBoot tcg =
            boot_probe(conn, config, image, "qemu", std::chrono::seconds(tcg_timeout));
        if (!kvm.booted && !tcg.booted) {
            // Nothing was learnt about KVM: no verdict; the next VM job tries again.
            result.summary = "the probe could not run: " + kvm.why;
            result.seconds = seconds_since(t);
            return result;
        }
        if (tcg.ready) {
            v.reason =
                what + " " + kvm.why + " under KVM, and answered under TCG in " + secs(tcg.seconds);
            result.summary = "broken: " + v.reason;
        } else {
            v.proven = false;
            v.reason = "the probe's " + what + " answered under neither KVM (" + kvm.why +
                       ") nor TCG (" + tcg.why + ")";
            result.summary = "not proven: " + v.reason;
        }
    }
    const int64_t holds =
        v.proven ? config.kvm_verdict_ttl_seconds
                 : std::min<int64_t>(config.kvm_verdict_ttl_seconds, kUnprovenHoldsSeconds);
    v.expires_at = v.decided_at + holds;
    try {
        save_kvm_verdict(config.state_dir, v);
    } catch (const Error &e) {
        result.summary += std::string(" (not saved: ") + e.what() + ")";
    }
    result.verdict = v;
    result.seconds = seconds_since(t);
    return result;
}

// The host's probe lock, waiting up to `wait` for a probe another process runs.
std::optional<UniqueFd> take_probe_lock(const Config &config, std::chrono::seconds wait) {
    std::error_code ec;
    std::filesystem::create_directories(config.state_dir, ec);
    const std::string path = kvm_probe_lock_path(config.state_dir);
    UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) {
        return std::nullopt;
    }
    const auto deadline = Clock::now() + wait;
    while (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if ((errno != EWOULDBLOCK && errno != EINTR) || Clock::now() >= deadline) {
            return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return fd;
}

}  // namespace

std::string kvm_probe_lock_path(const std::string &state_dir) {
    return state_dir + "/kvm-probe.lock";
}

std::optional<Image> kvm_probe_image(const Catalog &catalog, const std::string &node) {
    std::optional<Image> best;
    for (const Image &listed : catalog.images()) {
        if (listed.kernel.empty() || !listed.access.users.empty() ||
            !listed.access.groups.empty() || !listed.access.accounts.empty() ||
            listed.cmdline.find("rdinit=") != std::string::npos) {
            continue;  // no kernel, not for everyone, or an init of its own choosing
        }
        Image image = resolve_for_node(listed, node);
        bool present = true;
        for (const std::string *file : {&image.kernel, &image.initrd, &image.disk}) {
            present = present && (file->empty() || access(file->c_str(), R_OK) == 0);
        }
        if (present &&
            (!best || image.limits.default_memory_mib < best->limits.default_memory_mib)) {
            best = std::move(image);
        }
    }
    return best;
}

KvmProbeResult kvm_verdict_or_probe(virConnectPtr conn, const Config &config, const Image &image,
                                    const std::string &key, const std::string &node) {
    KvmProbeResult result;
    if ((result.verdict = load_kvm_verdict(config.state_dir, key))) {
        return result;
    }
    const auto lock =
        take_probe_lock(config, std::chrono::seconds(config.kvm_probe_timeout_seconds));
    if (!lock) {
        result.summary = "none yet: another process is probing KVM on this host";
        return result;
    }
    if ((result.verdict = load_kvm_verdict(config.state_dir, key))) {
        return result;  // decided while this one waited
    }
    return probe_locked(conn, config, image, key, node);
}

KvmProbeResult run_kvm_probe(virConnectPtr conn, const Config &config, const Image &image,
                             const std::string &key, const std::string &node) {
    const auto lock =
        take_probe_lock(config, std::chrono::seconds(config.kvm_probe_timeout_seconds));
    if (!lock) {
        KvmProbeResult result;
        result.summary = "not run: another process is probing KVM on this host";
        return result;
    }
    return probe_locked(conn, config, image, key, node);
}

}  // namespace svm
