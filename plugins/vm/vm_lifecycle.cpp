#include "vm/vm_lifecycle.h"

#include "util/error.h"

#include <libvirt/virterror.h>

#include <algorithm>
#include <thread>

namespace svm {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How often a booting or stopping domain is looked at. A domain takes seconds either way.
constexpr milliseconds kPollInterval{50};

milliseconds since(Clock::time_point start) {
    return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

milliseconds until(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    return left.count() > 0 ? left : milliseconds(0);
}

void sleep_until_next_poll(Clock::time_point deadline) {
    std::this_thread::sleep_for(std::min(kPollInterval, until(deadline)));
}

bool is_no_domain(int code) {
    return code == VIR_ERR_NO_DOMAIN;
}

// virDomainShutdownFlags rejects a mode the driver does not implement (the test driver takes no
// flags at all); then the driver's own default mode is the best we can ask for.
bool is_unsupported_mode(int code) {
    return code == VIR_ERR_INVALID_ARG || code == VIR_ERR_NO_SUPPORT ||
           code == VIR_ERR_ARGUMENT_UNSUPPORTED || code == VIR_ERR_OPERATION_UNSUPPORTED;
}

// Why a domain that should be booting is not running, for "stopped running before it was ready:".
std::string describe_not_running(std::optional<int> state, int reason) {
    if (!state) {
        // A transient domain vanishes as it stops, taking the reason with it.
        return "it no longer exists (it crashed or powered off)";
    }
    switch (*state) {
        case VIR_DOMAIN_SHUTOFF:
            switch (reason) {
                case VIR_DOMAIN_SHUTOFF_CRASHED:
                    return "it crashed";
                case VIR_DOMAIN_SHUTOFF_SHUTDOWN:
                    return "it powered off";
                case VIR_DOMAIN_SHUTOFF_DESTROYED:
                    return "it was destroyed";
                case VIR_DOMAIN_SHUTOFF_FAILED:
                    return "it failed to start";
                default:
                    return "it is shut off";
            }
        case VIR_DOMAIN_CRASHED:
            return "it crashed";
        case VIR_DOMAIN_SHUTDOWN:
            return "it is shutting down or rebooting (a kernel panic reboots it)";
        case VIR_DOMAIN_PAUSED:
            switch (reason) {
                case VIR_DOMAIN_PAUSED_IOERROR:
                    return "it paused on an I/O error (is the file system of its disks full?)";
                case VIR_DOMAIN_PAUSED_WATCHDOG:
                    return "its watchdog fired";
                case VIR_DOMAIN_PAUSED_CRASHED:
                    return "it crashed (guest panic)";
                default:
                    return "QEMU stopped it (libvirt state paused, reason " +
                           std::to_string(reason) + ": an internal error)";
            }
        case VIR_DOMAIN_PMSUSPENDED:
            return "its guest suspended itself";
        default:
            return "it is in libvirt state " + std::to_string(*state);
    }
}

bool still_booting(std::optional<int> state, int reason) {
    if (!state) {
        return false;
    }
    switch (*state) {
        case VIR_DOMAIN_NOSTATE:
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
            return true;
        case VIR_DOMAIN_PAUSED:
            // Paused by someone (it will be resumed) or while starting is not a failure. QEMU
            // itself stops a guest that hit an I/O error, a watchdog, a panic or a KVM
            // internal error (libvirt reports that last one as "unknown"): none of those
            // recovers by waiting, so the boot has failed.
            switch (reason) {
                case VIR_DOMAIN_PAUSED_USER:
                case VIR_DOMAIN_PAUSED_MIGRATION:
                case VIR_DOMAIN_PAUSED_SAVE:
                case VIR_DOMAIN_PAUSED_DUMP:
                case VIR_DOMAIN_PAUSED_FROM_SNAPSHOT:
                case VIR_DOMAIN_PAUSED_SNAPSHOT:
                case VIR_DOMAIN_PAUSED_STARTING_UP:
                    return true;
                default:
                    return false;
            }
        default:
            return false;
    }
}

}  // namespace

const char *to_string(VmState state) {
    switch (state) {
        case VmState::Absent:
            return "absent";
        case VmState::Starting:
            return "starting";
        case VmState::Ready:
            return "ready";
        case VmState::Suspended:
            return "suspended";
        case VmState::Stopping:
            return "stopping";
        case VmState::Gone:
            return "gone";
        case VmState::Failed:
            return "failed";
    }
    return "unknown";
}

const char *to_string(StopPath path) {
    switch (path) {
        case StopPath::None:
            return "not running";
        case StopPath::Agent:
            return "agent";
        case StopPath::Acpi:
            return "ACPI power button";
        case StopPath::Destroy:
            return "destroyed";
    }
    return "unknown";
}

std::optional<DomainPtr> lookup_domain(virConnectPtr conn, const std::string &name) {
    silence_libvirt_stderr();
    DomainPtr dom(virDomainLookupByName(conn, name.c_str()));
    if (dom) {
        return dom;
    }
    if (is_no_domain(libvirt_last_error_code())) {
        return std::nullopt;
    }
    throw Error("cannot look up domain " + name + ": " + libvirt_last_error());
}

VmLifecycle::VmLifecycle(LibvirtLink &link, std::string domain_name)
    : link_(&link), name_(std::move(domain_name)) {}

VmLifecycle::VmLifecycle(virConnectPtr conn, std::string domain_name)
    : owned_link_(std::make_unique<LibvirtLink>(conn)),
      link_(owned_link_.get()),
      name_(std::move(domain_name)) {}

virDomainPtr VmLifecycle::domain() {
    link_->get();  // a new connection if libvirtd closed the last one
    if (dom_ && dom_generation_ != link_->generation()) {
        dom_.reset();  // a handle of the closed connection
    }
    if (!dom_) {
        silence_libvirt_stderr();
        DomainPtr found = link_->call("", link_->timeouts().call, [&](virConnectPtr conn) {
            return DomainPtr(virDomainLookupByName(conn, name_.c_str()));
        });
        if (!found) {
            if (is_no_domain(libvirt_last_error_code())) {
                return nullptr;
            }
            const std::string what = "cannot look up domain " + name_;
            throw Error(what + ": " + link_->failure(what));
        }
        dom_ = std::move(found);
        dom_generation_ = link_->generation();
    }
    return dom_.get();
}

std::optional<int> VmLifecycle::libvirt_state(int *reason) {
    // A read: if libvirtd went (a restart), read again on a new connection.
    try {
        return libvirt_state_once(reason);
    } catch (const LibvirtConnectionError &) {
        return libvirt_state_once(reason);
    }
}

std::optional<int> VmLifecycle::libvirt_state_once(int *reason) {
    virDomainPtr dom = domain();
    if (dom == nullptr) {
        return std::nullopt;
    }
    int state = VIR_DOMAIN_NOSTATE, why = 0;
    // libvirtd answers from its own record of the domain, without QEMU: no kill when late.
    if (link_->call("", link_->timeouts().call,
                    [&](virConnectPtr) { return virDomainGetState(dom, &state, &why, 0); }) < 0) {
        if (is_no_domain(libvirt_last_error_code())) {
            // Our handle outlived a transient domain. We do not look the name up again: a
            // domain of the same name now would be someone else's.
            return std::nullopt;
        }
        const std::string what = "cannot get the state of domain " + name_;
        throw Error(what + ": " + link_->failure(what));
    }
    if (reason != nullptr) {
        *reason = why;
    }
    return state;
}

bool VmLifecycle::is_active() {
    try {
        return is_active_once();
    } catch (const LibvirtConnectionError &) {
        return is_active_once();
    }
}

bool VmLifecycle::is_active_once() {
    virDomainPtr dom = domain();
    if (dom == nullptr) {
        return false;
    }
    const int active = link_->call("", link_->timeouts().call,
                                   [&](virConnectPtr) { return virDomainIsActive(dom); });
    if (active < 0) {
        if (is_no_domain(libvirt_last_error_code())) {
            return false;
        }
        const std::string what = "cannot get the state of domain " + name_;
        throw Error(what + ": " + link_->failure(what));
    }
    return active == 1;
}

void VmLifecycle::fail(const std::string &message) {
    state_ = VmState::Failed;
    throw Error(message);
}

void VmLifecycle::fail_call(const std::string &what) {
    state_ = VmState::Failed;
    const std::string reason = link_->failure(what);
    throw Error(what + ": " + reason);
}

int VmLifecycle::monitor_call(milliseconds limit, std::string &late,
                              const std::function<int(virDomainPtr)> &call) {
    virDomainPtr dom = domain();
    if (dom == nullptr) {
        return -1;
    }
    try {
        return link_->call(name_, limit, [&](virConnectPtr) { return call(dom); });
    } catch (const LibvirtDeadlineError &e) {
        late = e.what();
        return -1;
    }
}

std::string VmLifecycle::destroy_domain() {
    std::string late;
    const int rc = monitor_call(kDestroyDeadline, late,
                                [](virDomainPtr dom) { return virDomainDestroy(dom); });
    if (rc == 0) {
        return "";
    }
    std::string reason = late.empty() ? link_->failure("cannot destroy domain " + name_) : late;
    // A QEMU killed at the deadline, or one that went by itself meanwhile, is what we wanted.
    return is_active() ? reason : "";
}

void VmLifecycle::create(const std::string &xml, const std::function<void()> &before_run) {
    if (state_ != VmState::Absent) {
        throw Error("cannot create domain " + name_ + ": it is already " + to_string(state_));
    }
    silence_libvirt_stderr();
    const std::string what = "cannot create domain " + name_;
    DomainPtr dom;
    try {
        // Transient, and not auto-destroyed with our connection: the VM must outlive the
        // prolog. Late, its QEMU is killed: libvirt then fails the create and removes it.
        // Paused when something must happen before the guest's first instruction (cgroup v2:
        // QEMU moves into the job's cgroup before the guest touches its memory).
        dom = link_->call(name_, link_->timeouts().call, [&](virConnectPtr conn) {
            return DomainPtr(
                virDomainCreateXML(conn, xml.c_str(), before_run ? VIR_DOMAIN_START_PAUSED : 0));
        });
    } catch (const LibvirtDeadlineError &e) {
        state_ = VmState::Failed;
        throw LibvirtDeadlineError(what + ": " + e.what());
    }
    if (!dom) {
        fail_call(what);
    }
    const char *actual = virDomainGetName(dom.get());
    if (actual == nullptr || name_ != actual) {
        const std::string other = actual != nullptr ? actual : "?";
        try {
            link_->call(other, kDestroyDeadline,
                        [&](virConnectPtr) { return virDomainDestroy(dom.get()); });
        } catch (const Error &) {
            // Killed at the deadline, or libvirtd went: the error below is what matters.
        }
        fail(what + ": its XML names the domain '" + other + "'");
    }
    dom_ = std::move(dom);
    dom_generation_ = link_->generation();
    state_ = VmState::Starting;
    if (!before_run) {
        return;
    }
    std::string problem;
    try {
        before_run();
        std::string late;
        if (monitor_call(link_->timeouts().call, late,
                         [](virDomainPtr d) { return virDomainResume(d); }) < 0) {
            problem = "cannot run it after its start: " +
                      (late.empty() ? link_->failure("resume") : late);
        }
    } catch (const Error &e) {
        problem = e.what();
    }
    if (!problem.empty()) {
        destroy_domain();
        fail(what + ": " + problem);
    }
}

void VmLifecycle::restore(const std::string &state_file, const std::string &xml) {
    if (state_ != VmState::Absent) {
        throw Error("cannot restore domain " + name_ + ": it is already " + to_string(state_));
    }
    silence_libvirt_stderr();
    const std::string what = "cannot restore domain " + name_ + " from " + state_file;
    int rc = -1;
    try {
        rc = link_->call(name_, link_->timeouts().call, [&](virConnectPtr conn) {
            return virDomainRestoreFlags(conn, state_file.c_str(), xml.c_str(),
                                         VIR_DOMAIN_SAVE_RUNNING);
        });
    } catch (const LibvirtDeadlineError &e) {
        state_ = VmState::Failed;
        throw LibvirtDeadlineError(what + ": " + e.what());
    }
    if (rc != 0) {
        fail_call(what);
    }
    if (domain() == nullptr) {
        fail("domain " + name_ + " is not there after its restore (its XML names another?)");
    }
    state_ = VmState::Starting;
}

bool VmLifecycle::wait_ready(milliseconds timeout,
                             const std::function<bool(milliseconds remaining)> &probe) {
    if (state_ == VmState::Ready) {
        return true;
    }
    if (state_ != VmState::Starting) {
        throw Error("cannot wait for domain " + name_ + " to be ready: it is " + to_string(state_));
    }
    const auto deadline = Clock::now() + timeout;
    for (bool first = true;; first = false) {
        int reason = 0;
        std::optional<int> state;
        try {
            state = libvirt_state(&reason);
        } catch (...) {
            state_ = VmState::Failed;
            throw;
        }
        if (!still_booting(state, reason)) {
            state_ = VmState::Failed;
            throw VmStoppedError("domain " + name_ + " stopped running before it was ready: " +
                                 describe_not_running(state, reason));
        }
        if (!first && Clock::now() >= deadline) {
            state_ = VmState::Failed;
            return false;
        }
        bool ready = false;
        try {
            ready = probe(until(deadline));
        } catch (...) {
            state_ = VmState::Failed;
            throw;
        }
        if (ready) {
            state_ = VmState::Ready;
            return true;
        }
        sleep_until_next_poll(deadline);
    }
}

StopReport VmLifecycle::stop(milliseconds grace, const GuestPowerOff &ask_agent,
                             milliseconds agent_wait) {
    StopReport report;
    const auto start = Clock::now();
    if (!is_active()) {
        report.detail = "domain " + name_ + " was not running";
        state_ = VmState::Gone;
        dom_.reset();
        return report;
    }
    report.was_running = true;
    state_ = VmState::Stopping;
    const auto deadline = start + grace;
    // A request to QEMU (resume, the power button) may wait as long as the grace period lasts,
    // never beyond libvirt_timeout; when late, QEMU has been killed (a user's SIGSTOP).
    const auto request_limit = [&] {
        return std::max(milliseconds(1000), std::min(until(deadline), link_->timeouts().call));
    };

    const auto powered_off = [&](StopPath path, const std::string &note) {
        report.graceful = true;
        report.path = path;
        report.shutdown_time = since(start);
        report.detail = "domain " + name_ + " powered off after " +
                        std::to_string(report.shutdown_time.count()) + " ms (" + to_string(path) +
                        (note.empty() ? "" : "; " + note) + ")";
        state_ = VmState::Gone;
        dom_.reset();
        return report;
    };
    const auto killed = [&](const std::string &why) {
        report.shutdown_time = since(start);
        report.destroyed = true;
        report.path = StopPath::Destroy;
        report.detail = "domain " + name_ + " destroyed after " +
                        std::to_string(report.shutdown_time.count()) + " ms: " + why;
        state_ = VmState::Gone;
        dom_.reset();
        return report;
    };

    // libvirt clears its last error on every call: take the message before looking again.
    std::string why_forced;
    bool asked = false;
    if (libvirt_state() == VIR_DOMAIN_PAUSED) {
        std::string late;
        if (monitor_call(request_limit(), late,
                         [](virDomainPtr dom) { return virDomainResume(dom); }) < 0) {
            if (!late.empty() && !is_active()) {
                return killed("it was paused and its resume was not answered: " + late);
            }
            std::string reason = late.empty() ? link_->failure("cannot resume " + name_) : late;
            if (is_active()) {
                why_forced = "it is paused and could not be resumed for a shutdown: " + reason;
            }
        }
    }

    // The fast path: the agent syncs and powers off in milliseconds, where the ACPI button
    // takes the guest's whole shutdown (seconds) or is lost on a systemd guest before logind.
    std::string agent_note;  // why the agent did not stop it, for the detail
    if (why_forced.empty() && ask_agent && grace.count() > 0) {
        std::string refusal;
        try {
            refusal = ask_agent(std::min(kAgentAnswerTimeout, until(deadline)));
        } catch (const std::exception &e) {
            refusal = e.what();
        }
        if (refusal.empty()) {
            const auto agreed_at = Clock::now();
            const auto wait_end = std::min(deadline, agreed_at + agent_wait);
            while (is_active() && Clock::now() < wait_end) {
                sleep_until_next_poll(wait_end);
            }
            if (!is_active()) {
                return powered_off(StopPath::Agent, "");
            }
            agent_note = "the agent agreed to power off but the domain still ran " +
                         std::to_string(since(agreed_at).count()) + " ms later";
        } else if (!is_active()) {
            // The guest went while the agent was asked: its answer was lost with it.
            return powered_off(StopPath::Agent, "its answer was lost: " + refusal);
        } else {
            agent_note = "agent: " + refusal;
        }
    }

    // The ACPI power button; QEMU must answer it, so a stopped QEMU makes it late.
    const auto press = [&](std::string &late) {
        int rc = monitor_call(request_limit(), late, [](virDomainPtr dom) {
            return virDomainShutdownFlags(dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN);
        });
        if (rc < 0 && late.empty() && is_unsupported_mode(libvirt_last_error_code())) {
            rc = monitor_call(request_limit(), late,
                              [](virDomainPtr dom) { return virDomainShutdown(dom); });
        }
        return rc;
    };
    if (why_forced.empty()) {
        std::string late;
        const int rc = press(late);
        if (!late.empty()) {
            if (!is_active()) {
                return killed("its power button was not answered: " + late +
                              (agent_note.empty() ? "" : " (" + agent_note + ")"));
            }
            why_forced = "its power button was not answered: " + late;
        } else {
            std::string reason = rc < 0 ? link_->failure("cannot shut down " + name_) : "";
            if (rc < 0 && is_active()) {
                why_forced = "the shutdown request failed: " + reason;
            } else {
                asked = true;
            }
        }
    }

    if (asked) {
        auto asked_at = Clock::now();
        while (is_active() && Clock::now() < deadline) {
            sleep_until_next_poll(deadline);
            // A systemd guest handles the power button through logind; a press before logind
            // runs (a job that ends seconds after boot) is lost. Press again every 2 s.
            if (Clock::now() - asked_at >= std::chrono::seconds(2) && is_active()) {
                std::string late;
                press(late);
                if (!late.empty() && !is_active()) {
                    return killed("its power button was not answered: " + late);
                }
                asked_at = Clock::now();
            }
        }
        if (!is_active()) {
            return powered_off(StopPath::Acpi, agent_note);
        }
        why_forced = "it did not power off within " + std::to_string(grace.count()) +
                     " ms of the shutdown request";
    }
    if (!agent_note.empty()) {
        why_forced += " (" + agent_note + ")";
    }
    report.shutdown_time = since(start);

    const auto destroy_start = Clock::now();
    const std::string problem = destroy_domain();
    if (!problem.empty()) {
        fail("cannot destroy domain " + name_ + " (" + why_forced + "): " + problem);
    }
    report.destroyed = true;
    report.path = StopPath::Destroy;
    report.destroy_time = since(destroy_start);
    report.detail = "domain " + name_ + " destroyed after " +
                    std::to_string(report.destroy_time.count()) + " ms: " + why_forced;
    state_ = VmState::Gone;
    dom_.reset();
    return report;
}

void VmLifecycle::destroy() {
    if (is_active()) {
        state_ = VmState::Stopping;
        const std::string problem = destroy_domain();
        if (!problem.empty()) {
            fail("cannot destroy domain " + name_ + ": " + problem);
        }
    }
    state_ = VmState::Gone;
    dom_.reset();
}

VmState VmLifecycle::attach() {
    int reason = 0;
    std::optional<int> state = libvirt_state(&reason);
    if (!state) {
        state_ = VmState::Gone;
        return state_;
    }
    switch (*state) {
        case VIR_DOMAIN_NOSTATE:
        case VIR_DOMAIN_RUNNING:
        case VIR_DOMAIN_BLOCKED:
            state_ = VmState::Ready;
            break;
        case VIR_DOMAIN_PAUSED:
            state_ = VmState::Suspended;
            break;
        case VIR_DOMAIN_SHUTDOWN:
            state_ = VmState::Stopping;
            break;
        case VIR_DOMAIN_CRASHED:
            state_ = VmState::Failed;
            break;
        default:
            state_ = VmState::Gone;
            break;
    }
    return state_;
}

void VmLifecycle::pin(const std::vector<unsigned> &cpus) {
    if (cpus.empty()) {
        throw Error("cannot pin domain " + name_ + ": no CPUs given");
    }
    silence_libvirt_stderr();
    if (!is_active()) {
        throw Error("cannot pin domain " + name_ + ": it is not running");
    }
    virDomainPtr dom = domain();
    // Pinning takes the domain's job lock but not QEMU's monitor: late means libvirtd, not the
    // user's QEMU, so nothing is killed (LibvirtLink::call with no domain).
    const auto call = [&](const std::function<int()> &f) {
        return link_->call("", link_->timeouts().call, [&](virConnectPtr) { return f(); });
    };
    const int vcpus = call([&] { return virDomainGetVcpusFlags(dom, VIR_DOMAIN_AFFECT_LIVE); });
    if (vcpus < 1) {
        const std::string what = "cannot pin domain " + name_ + ": cannot read its vCPUs";
        throw Error(what + ": " + link_->failure(what));
    }
    const unsigned highest = *std::max_element(cpus.begin(), cpus.end());
    const int maplen = VIR_CPU_MAPLEN(static_cast<int>(highest) + 1);
    auto map_of = [&](const std::vector<unsigned> &on) {
        std::vector<unsigned char> map(static_cast<std::size_t>(maplen), 0);
        for (const unsigned cpu : on) {
            VIR_USE_CPU(map.data(), cpu);
        }
        return map;
    };
    // AFFECT_CURRENT is the live domain for a running one (a transient domain has nothing
    // else), and the only flag libvirt's test driver takes for vCPUs.
    for (int vcpu = 0; vcpu < vcpus; ++vcpu) {
        std::vector<unsigned char> map =
            map_of({cpus[static_cast<std::size_t>(vcpu) % cpus.size()]});
        if (call([&] {
                return virDomainPinVcpuFlags(dom, static_cast<unsigned>(vcpu), map.data(), maplen,
                                             VIR_DOMAIN_AFFECT_CURRENT);
            }) < 0) {
            const std::string what =
                "cannot pin vCPU " + std::to_string(vcpu) + " of domain " + name_;
            throw Error(what + ": " + link_->failure(what));
        }
    }
    std::vector<unsigned char> all = map_of(cpus);
    if (call([&] {
            return virDomainPinEmulator(dom, all.data(), maplen, VIR_DOMAIN_AFFECT_CURRENT);
        }) < 0) {
        const std::string what = "cannot pin the emulator threads of domain " + name_;
        throw Error(what + ": " + link_->failure(what));
    }
}

}  // namespace svm
