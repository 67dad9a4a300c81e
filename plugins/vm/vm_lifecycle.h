// The life of one job's VM on one node, as an explicit state machine (after HTCondor's VM gahp:
// a graceful shutdown that falls back to destroy, like SIGTERM then SIGKILL).
//
//   Absent --create--> Starting --wait_ready--> Ready
//   attach: Ready, Suspended (paused: by Slurm's freezer, a user's SIGSTOP of QEMU...) or Gone
//   any --stop/destroy--> Stopping --> Gone
//   Failed: creation failed, the VM died while booting, missed its deadline, or would not die.
//
// The VM outlives this object: the prolog creates it, the epilog (another process) stops it by
// name with a new VmLifecycle. Destroying a VmLifecycle never touches the domain.
#pragma once

#include "util/error.h"
#include "vm/libvirt_handles.h"
#include "vm/libvirt_link.h"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace svm {

enum class VmState { Absent, Starting, Ready, Suspended, Stopping, Gone, Failed };

// "absent", "starting", ... for messages and logs.
const char *to_string(VmState state);

// What ended a running domain in stop(), fastest first.
enum class StopPath {
    None,     // it was not running
    Agent,    // the guest's agent synced and powered off when asked (POWEROFF)
    Acpi,     // the guest's OS handled the ACPI power button
    Destroy,  // it was destroyed at the end of the grace period (or at once, with no grace)
};
// "agent", "ACPI power button", "destroy", "none": for logs.
const char *to_string(StopPath path);

struct StopReport {
    bool was_running = false;  // the domain existed and was running (or paused) when stop began
    bool graceful = false;     // it powered off by itself within the grace period
    bool destroyed = false;    // it had to be destroyed
    StopPath path = StopPath::None;
    std::chrono::milliseconds shutdown_time{0}, destroy_time{0};
    std::string detail;  // one line for the log: what happened and why
};

// The domain stopped running (crashed, powered off, or QEMU paused it for good) while it booted.
class VmStoppedError : public Error {
  public:
    using Error::Error;
};

// The domain named `name`, if it exists. Throws Error for failures other than "no such domain".
std::optional<DomainPtr> lookup_domain(virConnectPtr conn, const std::string &name);

// Asks the guest's agent to sync and power off, within `timeout`: returns "" when it agreed,
// else why not (one line for the log: refused, no answer, no channel). The VM is the caller's.
using GuestPowerOff = std::function<std::string(std::chrono::milliseconds timeout)>;

// How long stop() waits for the guest's agent to answer POWEROFF (an agent older than the frame
// never does), then for the domain to be off once it agreed (sync, then the kernel's power-off:
// milliseconds, unless the shared folders have much to write).
inline constexpr std::chrono::milliseconds kAgentAnswerTimeout{1000};
inline constexpr std::chrono::milliseconds kAgentPowerOffWait{5000};

// Every libvirt call of a VmLifecycle has a deadline (vm/libvirt_link.h): one that talks to
// QEMU's monitor and is late kills the domain's QEMU (a user may SIGSTOP their QEMU), so no
// operation waits for ever. Over a LibvirtLink, a connection that libvirtd closed is opened
// again for the next call; a call that failed because of it throws LibvirtConnectionError.
class VmLifecycle {
  public:
    // Does not talk to libvirt: operations look the domain up by name when they need it.
    // `link` must outlive this object.
    VmLifecycle(LibvirtLink &link, std::string domain_name);
    // Over a connection that cannot be opened again (the test driver, an admin tool's).
    // `conn` must outlive this object.
    VmLifecycle(virConnectPtr conn, std::string domain_name);

    // Starts a transient domain from `xml`, whose <name> must be the domain name given above.
    // Absent -> Starting. Throws Error naming the domain and libvirt's reason (state Failed).
    // With `before_run`, the domain starts paused (VIR_DOMAIN_START_PAUSED: QEMU is up, no vCPU
    // has run, the guest's memory is untouched but for firmware and the kernel QEMU loads), runs
    // before_run (which moves QEMU into the job's cgroup), then resumes; a before_run that
    // throws destroys the domain and fails the creation with its reason.
    void create(const std::string &xml, const std::function<void()> &before_run = {});

    // Starts the domain from libvirt's save file `state_file` with `xml` (whose <name> must be
    // the domain name given above, whose <uuid> and guest-visible devices the saved ones), as
    // a running transient domain. Absent -> Starting, as create(). Throws Error naming the
    // domain, the file and libvirt's reason (state Failed).
    void restore(const std::string &state_file, const std::string &xml);

    // Calls probe(remaining time) until it returns true (-> Ready, returns true). Throws
    // VmStoppedError (state Failed) as soon as the domain stops running or QEMU pauses it: it
    // crashed or powered off while booting. Returns false (state Failed) when the timeout passes
    // first. probe is called at least once, and should itself return within the remaining time.
    bool wait_ready(std::chrono::milliseconds timeout,
                    const std::function<bool(std::chrono::milliseconds remaining)> &probe);

    // Graceful shutdown, a poll every 50 ms until the domain is off or `grace` passes, then
    // destroy. With `ask_agent` (and a grace period), the guest's agent is asked first
    // (kAgentAnswerTimeout at most) and, if it agreed, the domain gets `agent_wait` to go off;
    // then, or when the agent did not agree, the ACPI power button (pressed again every 2 s).
    // A domain that is already gone is fine. A paused domain is resumed first so its guest can
    // act. -> Gone; throws Error (state Failed) only when the domain is still running after
    // destroy. The report's path says what stopped it and its detail why the faster paths did
    // not ("domain D powered off after N ms (agent)", "... (ACPI power button; ...)",
    // "domain D destroyed after N ms: ...").
    StopReport stop(std::chrono::milliseconds grace, const GuestPowerOff &ask_agent = {},
                    std::chrono::milliseconds agent_wait = kAgentPowerOffWait);

    // Immediate power-off, no grace. A domain that is already gone is fine. -> Gone. A QEMU
    // that libvirt does not end within kDestroyDeadline (a stopped one: libvirt waits 10 s on
    // its SIGTERM) is killed.
    void destroy();

    // Pins vCPU i of the running domain on cpus[i % n] and QEMU's other threads on all of
    // `cpus`, as <cputune> does at start (vm/domain_xml.h), on the live domain only. For a VM
    // whose CPUs changed under it: moving a thread into a cgroup v1 cpuset resets its affinity
    // to the whole cpuset. Throws Error naming the domain, the vCPU and libvirt's reason.
    void pin(const std::vector<unsigned> &cpus);

    // Looks the domain up and takes its state from libvirt: Ready (running), Suspended
    // (paused), or Gone (no such domain or not running). For processes that did not create it.
    VmState attach();

    VmState state() const { return state_; }
    const std::string &name() const { return name_; }

  private:
    // The domain handle, looked up by name if need be; nullptr when there is no such domain.
    virDomainPtr domain();
    // libvirt's state of the domain (VIR_DOMAIN_*), or nullopt when it no longer exists. Reads
    // are made again, once, on a new connection when libvirtd closed the last one.
    std::optional<int> libvirt_state(int *reason = nullptr);
    bool is_active();
    std::optional<int> libvirt_state_once(int *reason);
    bool is_active_once();
    [[noreturn]] void fail(const std::string &message);
    // After a libvirt call on the domain failed: Failed, then LibvirtConnectionError when the
    // connection went, else Error("<what>: <libvirt's message>").
    [[noreturn]] void fail_call(const std::string &what);
    // virDomainDestroy under kDestroyDeadline: "" when it worked or the domain went anyway,
    // else why not.
    std::string destroy_domain();
    // A call on the domain that talks to its QEMU, under `limit`: returns its result, or -1
    // with `late` set to what the deadline did.
    int monitor_call(std::chrono::milliseconds limit, std::string &late,
                     const std::function<int(virDomainPtr)> &call);

    std::unique_ptr<LibvirtLink> owned_link_;
    LibvirtLink *link_;
    std::string name_;
    DomainPtr dom_;
    unsigned dom_generation_ = 0;  // the link's connection the handle came from
    VmState state_ = VmState::Absent;
};

}  // namespace svm
