// The extern step's part of a job VM's life: moving the running VM into the job's cgroups and
// pinning it on the job's CPUs again (place_job_vm). See docs/architecture.md, "Containment".
#include "vm/job_vm.h"

#include "util/atomic_file.h"
#include "util/cpu_list.h"
#include "util/error.h"
#include "util/json.h"
#include "util/text.h"
#include "vm/libvirt_handles.h"

#include <sys/stat.h>

#include <limits>
#include <memory>

namespace svm {

namespace {

// What the prolog wrote in the VM's state file (write_state_file in job_vm.cpp) that the
// extern step needs.
struct RunningVm {
    std::string domain, image;
    ProcessIdentity qemu;  // pid 0: the prolog could not find it
    std::vector<ProcessIdentity> virtiofsds;
};

ProcessIdentity identity_of(json_object *o, const char *pid_key, const char *start_key,
                            const std::string &what) {
    ProcessIdentity id;
    json_object *pid = json_optional_field(o, pid_key);
    json_object *start = json_optional_field(o, start_key);
    if (pid != nullptr && start != nullptr) {
        id.pid = static_cast<pid_t>(json_int_value(pid, 0, std::numeric_limits<pid_t>::max(),
                                                   what + ": field '" + pid_key + "'"));
        id.start_ticks = static_cast<uint64_t>(json_int_value(
            start, 0, std::numeric_limits<int64_t>::max(), what + ": field '" + start_key + "'"));
    }
    return id;
}

RunningVm read_running_vm(const std::string &text) {
    static const std::string what = "VM state file";
    JsonPtr obj = parse_json_object(text, what);
    RunningVm vm;
    vm.domain = json_string_value(json_field(obj.get(), "domain", what), what + ": field 'domain'");
    vm.image = json_string_value(json_field(obj.get(), "image", what), what + ": field 'image'");
    // Absent from the files of older versions: then QEMU is found through libvirt's pid file.
    vm.qemu = identity_of(obj.get(), "qemu_pid", "qemu_start", what);
    if (json_object *list = json_optional_field(obj.get(), "virtiofsd")) {
        json_object *array = json_array_value(list, what + ": field 'virtiofsd'");
        for (std::size_t i = 0; i < json_object_array_length(array); ++i) {
            json_object *one = json_object_array_get_idx(array, i);
            if (!json_object_is_type(one, json_type_object)) {
                throw Error(what + ": field 'virtiofsd': expected objects");
            }
            const ProcessIdentity d = identity_of(one, "pid", "start", what + ": virtiofsd");
            if (d.pid > 0) {
                vm.virtiofsds.push_back(d);
            }
        }
    }
    return vm;
}

void pin_through_libvirt(const Config &config, const std::string &domain,
                         const std::vector<unsigned> &cpus) {
    // A libvirtd restart (refused or closed connection) is waited for, then the pin made again.
    LibvirtLink link(config.libvirt_uri, {std::chrono::seconds(config.libvirt_timeout_seconds),
                                          std::chrono::seconds(config.libvirt_reconnect_seconds)});
    try {
        VmLifecycle(link, domain).pin(cpus);
    } catch (const LibvirtConnectionError &) {
        VmLifecycle(link, domain).pin(cpus);
    }
}

}  // namespace

void place_job_vm(const Config &config, uint32_t jobid, std::string_view node, uint32_t uid,
                  PlacementReport &report, const PlacementRoots &roots) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    report = PlacementReport{};
    report.domain = paths.domain;
    struct stat st {};
    if (lstat(paths.state_file.c_str(), &st) != 0) {
        // The prolog wrote it once the VM was ready: the VM did not start, and the job fails
        // with the prolog's reason.
        report.skipped = "no VM runs for the job here";
        return;
    }
    const RunningVm vm = read_running_vm(read_whole_file(paths.state_file));
    report.image = vm.image;
    if (vm.domain != paths.domain) {
        throw Error(paths.state_file + " names domain '" + vm.domain + "', not " + paths.domain);
    }

    const std::unique_ptr<JobCgroups> cgroups =
        JobCgroups::for_node(CgroupRoots{roots.cgroup_mount, roots.proc});
    const VmCgroupPlan plan = cgroups->plan_vm_cgroups(JobCgroupKey{std::string(node), uid, jobid});
    report.hierarchy = to_string(plan.version);
    report.missing = plan.missing;
    if (plan.targets.empty()) {
        report.skipped = "the job has no cgroup on this node (" + plan.absent +
                         ": are cgroup plugins configured, and PrologFlags=Contain?): the VM "
                         "runs outside them, on the CPUs its domain XML pinned it to";
        return;
    }

    // The very processes the prolog started, not whatever has their pids now: each held by a
    // pidfd from here on, and checked around every write that moves it.
    std::vector<ProcessHandle> processes;
    const std::string qemu_what = "QEMU of domain " + paths.domain;
    ProcessIdentity qemu = vm.qemu;
    if (qemu.pid == 0) {
        qemu = find_qemu(paths.domain, roots.libvirt_run, roots.proc);
    }
    processes.push_back(ProcessHandle::open(qemu, qemu_what, roots.proc));
    if (!runs_guest(qemu.pid, paths.domain, roots.proc)) {
        throw Error(qemu_what + " (process " + std::to_string(qemu.pid) +
                    ") no longer runs guest=" + paths.domain);
    }
    for (const ProcessIdentity &d : vm.virtiofsds) {
        processes.push_back(
            ProcessHandle::open(d, "virtiofsd of domain " + paths.domain, roots.proc));
    }

    const VmCgroupPlacement placed = move_into_vm_cgroups(plan, processes, roots.proc);
    report.notes = placed.notes;
    report.controllers = plan.controllers;
    if (plan.cpus_file.empty()) {
        return;  // no cpuset: the vCPUs stay where the domain XML pinned them
    }
    // The job's CPUs in the kernel's numbering (task/cgroup's ConstrainCores), which the prolog
    // could only derive from Slurm's abstract ids. The move reset every thread's affinity to
    // them (v1), and Slurm setting the job's cpuset after the VM booted did too (v2).
    const std::vector<unsigned> cpus = parse_cpu_list(read_whole_file(plan.cpus_file));
    report.cpus = format_cpu_list(cpus);
    if (cpus.empty() || !config.pin_vcpus) {
        return;  // the cpuset alone keeps every thread on the job's CPUs
    }
    if (roots.pin) {
        roots.pin(paths.domain, cpus);
    } else {
        pin_through_libvirt(config, paths.domain, cpus);
    }
    report.repinned = true;
}

}  // namespace svm
