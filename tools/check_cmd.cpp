#include "check_cmd.h"

#include "vm/capabilities.h"
#include "vm/containment_config.h"
#include "vm/job_cgroup.h"
#include "catalog/catalog.h"
#include "util/config.h"
#include "util/error.h"
#include "util/fd.h"  // c_strings
#include "util/json.h"
#include "util/text.h"
#include "vm/job_vm.h"
#include "vm/kvm_probe.h"
#include "vm/kvm_verdict.h"
#include "catalog/image_features.h"
#include "vm/libvirt_handles.h"
#include "util/plugstack_args.h"
#include "util/process.h"

#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>

namespace svm {

namespace {

namespace fs = std::filesystem;

enum class Status { Ok, Warn, Fail };

const char *status_word(Status s) {
    switch (s) {
        case Status::Ok:
            return "OK";
        case Status::Warn:
            return "WARN";
        case Status::Fail:
            return "FAIL";
    }
    return "?";
}

struct Check {
    std::string name;
    Status status = Status::Ok;
    std::string detail;
    std::string fix;  // what to do, where it is not OK
};

class Report {
  public:
    explicit Report(bool json) : json_(json) {}
    void add(std::string name, Status status, std::string detail, std::string fix = "") {
        checks_.push_back({std::move(name), status, std::move(detail), std::move(fix)});
        if (!json_) {
            const Check &c = checks_.back();
            printf("%-4s  %-16s %s\n", status_word(c.status), c.name.c_str(), c.detail.c_str());
            if (!c.fix.empty()) {
                printf("      %-16s fix: %s\n", "", c.fix.c_str());
            }
            fflush(stdout);
        }
    }
    int finish() const {
        Status worst = Status::Ok;
        for (const auto &c : checks_) {
            worst = std::max(worst, c.status);
        }
        if (json_) {
            JsonPtr root = json_new_object();
            JsonPtr list(json_object_new_array());
            for (const auto &c : checks_) {
                JsonPtr item = json_new_object();
                json_set(item.get(), "check", json_from_string(c.name));
                json_set(item.get(), "status", json_from_string(status_word(c.status)));
                json_set(item.get(), "detail", json_from_string(c.detail));
                json_set(item.get(), "fix", json_from_string(c.fix));
                json_object_array_add(list.get(), item.release());
            }
            json_set(root.get(), "checks", std::move(list));
            json_set(root.get(), "status", json_from_string(status_word(worst)));
            printf("%s\n", json_to_text(root.get()).c_str());
        }
        return worst == Status::Ok ? 0 : worst == Status::Warn ? 1 : 2;
    }

  private:
    bool json_;
    std::vector<Check> checks_;
};

std::string mode_text(mode_t mode) {
    char buf[8];
    snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
    return buf;
}

// Whether every user can read `path` (and traverse the folders above it): QEMU runs as the
// job's user.
std::string unreadable_by_others(const std::string &path) {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
        return path + ": " + errno_text(errno);
    }
    if ((st.st_mode & 0004) == 0) {
        return path + " is mode " + mode_text(st.st_mode) + " (not readable by other users)";
    }
    for (fs::path dir = fs::path(path).parent_path(); !dir.empty() && dir != dir.root_path();
         dir = dir.parent_path()) {
        if (stat(dir.c_str(), &st) == 0 && (st.st_mode & 0001) == 0) {
            return dir.string() + " is mode " + mode_text(st.st_mode) +
                   " (other users cannot traverse it)";
        }
    }
    return "";
}

// The filesystem driver types libvirt's QEMU offers (capabilities.h); none when it cannot say.
std::set<std::string> filesystem_drivers(virConnectPtr conn, const std::string &domain_type) {
    char *caps =
        virConnectGetDomainCapabilities(conn, nullptr, "x86_64", nullptr, domain_type.c_str(), 0);
    if (caps == nullptr) {
        return {};
    }
    const std::string text(caps);
    free(caps);
    try {
        return offered_filesystem_drivers(text);
    } catch (const Error &) {
        return {};
    }
}

// The catalog image the probe boots: the one with a kernel and the least memory (the
// fastest to boot), unless the admin names one.
const Image *probe_image(const Catalog &catalog, const std::string &wanted) {
    if (!wanted.empty()) {
        return catalog.find(wanted);
    }
    const Image *best = nullptr;
    for (const auto &image : catalog.images()) {
        if (image.kernel.empty() || image.kernel.find("%n") != std::string::npos ||
            image.cmdline.find("rdinit=") != std::string::npos || !image.access.users.empty() ||
            !image.access.groups.empty() || !image.access.accounts.empty() ||
            !fs::exists(image.kernel)) {
            continue;
        }
        if (best == nullptr || image.limits.default_memory_mib < best->limits.default_memory_mib) {
            best = &image;
        }
    }
    return best;
}

struct ProbeResult {
    bool ok = false;
    double seconds = 0;
    std::string error;
};

// Boots `image` under `domain_type` as a job of user nobody would, waits for its agent, and
// destroys it (the TCG probe: KVM's is the node's own, run_kvm_probe). Job ids like `try`'s:
// above any real Slurm job id.
ProbeResult probe_boot(const Config &base, const Catalog &catalog, const Image &image,
                       const std::string &domain_type, uint32_t offset) {
    Config config = base;
    config.domain_type = domain_type;
    config.grace_seconds = 0;
    config.shared_paths.clear();
    JobVmRequest request;
    request.jobid = 0x7e000000u + static_cast<uint32_t>(getpid() % 0xffff) * 4 + offset;
    request.node = "check";
    request.image = image.name;
    request.uid = 65534;  // QEMU runs as the job's user: probe as an unprivileged one
    request.gid = 65534;
    ProbeResult result;
    const auto t = std::chrono::steady_clock::now();
    try {
        start_job_vm(config, catalog, request);
        result.ok = true;
        result.seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    } catch (const Error &e) {
        result.error = e.what();
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    try {
        stop_job_vm(config, request.jobid, request.node);
    } catch (const Error &) {
        // Nothing was left, or the next check's sweep removes it.
    }
    return result;
}

// Which cgroup hierarchy the node has, and what Slurm's configuration gives VM jobs on it
// (docs/admin-guide.md, "Containment"): one line for the first, one per missing setting.
void check_cgroups(Report &report) {
    const CgroupRoots roots;
    const CgroupVersion version = detect_cgroup_version(roots.mount);
    std::string detail = std::string(to_string(version));
    if (version == CgroupVersion::V2) {
        detail += " (the unified hierarchy at " + roots.mount + ")";
        std::vector<std::string> trees;
        std::error_code ec;
        for (fs::directory_iterator it(roots.mount + "/system.slice", ec), end; !ec && it != end;
             it.increment(ec)) {
            const std::string name = it->path().filename().string();
            if (name.ends_with("slurmstepd.scope")) {
                trees.push_back(it->path().string());
            }
        }
        detail += trees.empty() ? "; no Slurm cgroup/v2 tree yet (slurmd makes "
                                  "system.slice/<node>_slurmstepd.scope when it starts with "
                                  "cgroup/v2)"
                                : "; Slurm's cgroup/v2 trees: " + join(trees);
    } else {
        detail += " (a hierarchy per controller under " + roots.mount + ")";
        struct stat st {};
        if (lstat((roots.mount + "/unified/cgroup.controllers").c_str(), &st) == 0) {
            detail += "; the cgroup2 at " + roots.mount +
                      "/unified beside them (hybrid) is not used by Slurm";
        }
    }
    report.add("cgroups", Status::Ok, detail);
    const std::string fix = "see the admin guide, \"Containment\"";
    try {
        const ProcessResult r =
            run_process({find_program("scontrol"), "show", "config"}, std::chrono::seconds(10));
        if (r.timed_out || r.status != 0) {
            const std::string err = r.err.substr(0, r.err.find('\n'));
            throw Error("scontrol show config " + (r.timed_out
                                                       ? std::string("did not answer within 10 s")
                                                       : "failed: " + printable(err)));
        }
        const auto warnings = containment_warnings(parse_slurm_config(r.out), version);
        if (warnings.empty()) {
            report.add("containment", Status::Ok,
                       "PrologFlags=Contain and the cgroup plugins: VMs join their jobs' "
                       "cgroups");
        }
        for (const std::string &w : warnings) {
            report.add("containment", Status::Warn, w, fix);
        }
    } catch (const Error &e) {
        report.add("containment", Status::Warn,
                   std::string("cannot read Slurm's configuration: ") + e.what(),
                   "run slurm-vm check where scontrol reaches slurmctld");
    }
}

char seconds_buf[32];
const char *secs(double s) {
    snprintf(seconds_buf, sizeof seconds_buf, "%.2f s", s);
    return seconds_buf;
}

struct CheckOptions {
    bool json = false;
    bool boot = true;  // --no-boot: no probe boots
    std::string plugstack = "/etc/slurm/plugstack.conf";
    std::string image_name;  // the image the probes boot; "" for probe_image's choice
};

// The options of `slurm-vm check`; nothing (and the usage on stderr) for an unknown one.
std::optional<CheckOptions> parse_check_options(const std::vector<std::string> &args) {
    CheckOptions parsed;
    std::vector<std::string> argv_store = {"slurm-vm check"};
    argv_store.insert(argv_store.end(), args.begin(), args.end());
    std::vector<char *> argv = c_strings(argv_store);
    static const option options[] = {{"json", no_argument, nullptr, 'j'},
                                     {"no-boot", no_argument, nullptr, 'n'},
                                     {"image", required_argument, nullptr, 'i'},
                                     {"plugstack", required_argument, nullptr, 'p'},
                                     {nullptr, 0, nullptr, 0}};
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(static_cast<int>(argv.size()) - 1, argv.data(), "", options,
                                 nullptr)) != -1;) {
        switch (c) {
            case 'j':
                parsed.json = true;
                break;
            case 'n':
                parsed.boot = false;
                break;
            case 'i':
                parsed.image_name = optarg;
                break;
            case 'p':
                parsed.plugstack = optarg;
                break;
            default:
                fprintf(stderr,
                        "slurm-vm: check: unknown option '%s'\nusage: slurm-vm check [--json] "
                        "[--image NAME] [--no-boot] [--plugstack FILE]\n",
                        argv[optind - 1]);
                return std::nullopt;
        }
    }
    return parsed;
}

// The plugin's line of plugstack.conf, parsed; nothing when it does not parse.
std::optional<Config> check_plugstack(Report &report, const std::string &plugstack) {
    try {
        const auto words = plugstack_args(plugstack);
        Config config = parse_config(words);
        report.add("plugstack", words.empty() ? Status::Warn : Status::Ok,
                   words.empty() ? "no spank_slurm_vm.so line in " + plugstack + ": defaults used"
                                 : "slurm-vm line of " + plugstack + " parses",
                   words.empty() ? "add the plugin's line (see the admin guide)" : "");
        return config;
    } catch (const Error &e) {
        report.add("plugstack", Status::Fail, e.what(),
                   "correct the slurm-vm line of " + plugstack);
        return std::nullopt;
    }
}

// What libvirt on this host is and offers.
struct LibvirtFacts {
    ConnectionPtr conn;
    std::set<std::string> offered;  // domain types for x86_64: "qemu", "kvm"
    std::string key;                // host_key: what a KVM verdict is kept for
};

// libvirt and QEMU: libvirtd answers, and offers QEMU. Nothing when libvirt cannot be used.
std::optional<LibvirtFacts> check_libvirt(Report &report, const Config &config) {
    LibvirtFacts facts;
    try {
        facts.conn = open_connection(config.libvirt_uri);
    } catch (const Error &e) {
        report.add("libvirt", Status::Fail, e.what(),
                   "start libvirtd (and virtlogd), or set libvirt_uri= in plugstack.conf");
        return std::nullopt;
    }
    try {
        facts.key = host_key(facts.conn.get());
        char *caps = virConnectGetCapabilities(facts.conn.get());
        if (caps == nullptr) {
            throw Error("cannot read libvirt's capabilities: " + libvirt_last_error());
        }
        const std::string caps_xml(caps);
        free(caps);
        facts.offered = offered_domain_types(caps_xml);
        std::string types;
        for (const auto &t : facts.offered) {
            types += (types.empty() ? "" : " ") + t;
        }
        report.add("libvirt", Status::Ok, config.libvirt_uri + " answers (" + facts.key + ")");
        report.add("qemu", facts.offered.contains("qemu") ? Status::Ok : Status::Fail,
                   "domain types offered for x86_64: " + (types.empty() ? "none" : types),
                   facts.offered.contains("qemu") ? "" : "apt-get install qemu-system-x86");
    } catch (const Error &e) {
        report.add("libvirt", Status::Fail, e.what(), "check libvirtd's log");
        return std::nullopt;
    }
    return facts;
}

// /dev/kvm: present, and usable by the users QEMU runs as (every job user). Why job users
// cannot use it, or "".
std::string check_kvm_device(Report &report) {
    struct stat st {};
    const bool have_kvm = stat("/dev/kvm", &st) == 0;
    const std::string device_problem = have_kvm ? kvm_device_problem(65534, 65534) : "";
    if (!have_kvm) {
        report.add("kvm device", Status::Warn, "no /dev/kvm: every VM runs under TCG (slow)",
                   "enable virtualisation in the firmware and load kvm_intel or kvm_amd");
    } else if (!device_problem.empty()) {
        report.add("kvm device", Status::Warn,
                   device_problem +
                       "; libvirt then probes QEMU again on "
                       "every call (VM creation takes seconds)",
                   "chgrp kvm /dev/kvm && chmod 0666 /dev/kvm (what udev's rule does)");
    } else {
        report.add("kvm device", Status::Ok,
                   "/dev/kvm is mode " + mode_text(st.st_mode) + ", usable by job users");
    }
    return device_problem;
}

// The catalog loads, and job users can read every image's files. Nothing when it does not load.
std::optional<Catalog> check_catalog(Report &report, const Config &config) {
    try {
        Catalog catalog = Catalog::load(config.catalog);
        std::string problems;
        for (const auto &image : catalog.images()) {
            std::vector<const std::string *> files = {&image.kernel, &image.initrd, &image.disk};
            if (image.firmware == "uefi") {
                files.insert(files.end(), {&config.uefi_code, &config.uefi_vars});
            }
            for (const std::string *file : files) {
                if (file->empty() || file->find("%n") != std::string::npos) {
                    continue;  // per-node paths are checked by each node's feature list
                }
                const std::string p = unreadable_by_others(*file);
                if (!p.empty()) {
                    problems += (problems.empty() ? "" : "; ") + image.name + ": " + p;
                }
            }
        }
        report.add("catalog", problems.empty() ? Status::Ok : Status::Fail,
                   problems.empty()
                       ? config.catalog + ": " + std::to_string(catalog.images().size()) +
                             " images, every file readable by job users"
                       : printable(problems),
                   problems.empty() ? ""
                                    : "chmod o+r the files and o+x their folders (UEFI firmware: "
                                      "apt-get install ovmf)");
        return catalog;
    } catch (const Error &e) {
        report.add("catalog", Status::Fail, e.what(), "correct the catalog");
        return std::nullopt;
    }
}

// The plugin's folders are root's and traversable, and so is libvirt's (QEMU runs as job
// users).
void check_folders(Report &report, const Config &config) {
    struct stat st {};
    std::string problems;
    for (const auto &dir : {config.state_dir, config.run_dir, config.log_dir}) {
        if (stat(dir.c_str(), &st) != 0) {
            continue;  // made by the first VM job
        }
        if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 0022) != 0 ||
            (st.st_mode & 0001) == 0) {
            problems += (problems.empty() ? "" : "; ") + dir + " is mode " + mode_text(st.st_mode) +
                        " owner uid " + std::to_string(st.st_uid);
        }
    }
    report.add("folders", problems.empty() ? Status::Ok : Status::Fail,
               problems.empty() ? config.state_dir + ", " + config.run_dir + ", " + config.log_dir +
                                      ": root's, 0755 (or made on first use)"
                                : problems,
               problems.empty() ? "" : "chown root and chmod 0755 those folders");
    const bool traversable = stat("/var/lib/libvirt/qemu", &st) == 0 && (st.st_mode & 0001);
    report.add("libvirt folder", traversable ? Status::Ok : Status::Fail,
               "/var/lib/libvirt/qemu is mode " + mode_text(st.st_mode),
               traversable ? "" : "chmod 0711 /var/lib/libvirt/qemu (QEMU runs as job users)");
}

// Shared folders: 9p (libvirt's "path" driver) or virtiofs, where the node or an image asks
// for it.
void check_shares(Report &report, const Config &config, virConnectPtr conn,
                  const std::optional<Catalog> &catalog) {
    const auto drivers = filesystem_drivers(conn, "qemu");
    const bool ninep = drivers.contains("path");
    report.add("9p", ninep ? Status::Ok : Status::Fail,
               ninep ? "QEMU exports host folders over 9p"
                     : "QEMU offers no 9p export: jobs cannot see their folders",
               ninep ? "" : "install a QEMU built with virtfs");
    bool wanted = config.share == "virtiofs";
    if (catalog) {
        for (const auto &image : catalog->images()) {
            wanted = wanted || image.share == "virtiofs";
        }
    }
    if (wanted) {
        const bool runs = access(config.virtiofsd.c_str(), X_OK) == 0;
        report.add("virtiofs", runs ? Status::Ok : Status::Fail,
                   runs ? config.virtiofsd + " serves virtiofs shares, as each job's user"
                        : config.virtiofsd + " cannot run: " + errno_text(errno),
                   runs ? "" : "apt-get install qemu-system-common, or set virtiofsd=");
    }
}

// The line of the KVM probe (run_kvm_probe's result `kvm`, or why it was not run).
void report_kvm_probe(Report &report, const Config &config, const LibvirtFacts &libvirt,
                      const std::string &device_problem, const Image &image,
                      const KvmProbeResult &kvm) {
    if (!libvirt.offered.contains("kvm")) {
        report.add("kvm probe", Status::Warn, "not run: libvirt offers no kvm domain");
    } else if (!device_problem.empty()) {
        report.add("kvm probe", Status::Warn, "not run: " + device_problem,
                   "chgrp kvm /dev/kvm && chmod 0666 /dev/kvm");
    } else if (kvm.verdict && kvm.verdict->works) {
        report.add("kvm probe", Status::Ok,
                   "image '" + image.name + "' ready under KVM in " + secs(kvm.seconds));
    } else {
        const bool broken = kvm.verdict && kvm.verdict->proven;
        const Status s = config.domain_type == "kvm" ? Status::Fail : Status::Warn;
        report.add("kvm probe", s,
                   "KVM is offered but " +
                       std::string(broken ? "broken: guests do not boot under it ("
                                          : "the probe failed (") +
                       printable(kvm.verdict ? kvm.verdict->reason : kvm.summary) + ")",
                   config.domain_type == "kvm"
                       ? "set domain_type=auto (or qemu) in plugstack.conf, or fix KVM "
                         "(nested virtualisation, kvm module)"
                       : "nothing needed: domain_type=auto uses TCG here; fix KVM for speed");
    }
}

// Probe boots: does KVM really run a guest (the node's own probe, as root, which keeps the
// verdict), and does TCG run one as a job's VM would? A new KVM verdict replaces `verdict`.
void check_probes(Report &report, const Config &config, const std::optional<Catalog> &catalog,
                  const CheckOptions &options, const LibvirtFacts &libvirt,
                  const std::string &device_problem, std::optional<KvmVerdict> &verdict) {
    const Image *image = catalog ? probe_image(*catalog, options.image_name) : nullptr;
    if (!options.boot) {
        report.add("probe", Status::Ok, "skipped (--no-boot)");
        return;
    }
    if (image == nullptr) {
        report.add("probe", Status::Warn,
                   options.image_name.empty()
                       ? "no catalog image with a kernel to boot"
                       : "image '" + printable(options.image_name) + "' is not in the catalog",
                   "name an image: slurm-vm check --image NAME");
        return;
    }
    KvmProbeResult kvm;
    if (libvirt.offered.contains("kvm") && device_problem.empty()) {
        kvm = run_kvm_probe(libvirt.conn.get(), config, resolve_for_node(*image, "check"),
                            libvirt.key, "check");
        if (kvm.verdict) {
            verdict = kvm.verdict;
        }
    }
    const ProbeResult tcg = probe_boot(config, *catalog, *image, "qemu", 2);
    report_kvm_probe(report, config, libvirt, device_problem, *image, kvm);
    report.add(
        "tcg probe", tcg.ok ? Status::Ok : Status::Fail,
        tcg.ok ? "image '" + image->name + "' ready under TCG in " + secs(tcg.seconds) : tcg.error,
        tcg.ok ? "" : "see the guest console in " + config.log_dir);
}

// What `auto` (or the configured type) picks here.
void check_domain_type(Report &report, const Config &config, const LibvirtFacts &libvirt,
                       const std::optional<KvmVerdict> &verdict,
                       const std::string &device_problem) {
    try {
        const DomainTypeChoice choice =
            choose_domain_type(libvirt.offered, config.domain_type, verdict, device_problem);
        std::string detail = "domain_type=" + config.domain_type + " runs VMs under " +
                             (choice.type == "kvm" ? "KVM" : "TCG (qemu)");
        if (!choice.fallback_reason.empty()) {
            detail += ": " + choice.fallback_reason;
        }
        report.add("domain type", Status::Ok, detail);
    } catch (const Error &e) {
        report.add("domain type", Status::Fail, e.what(), "set domain_type= in plugstack.conf");
    }
}

}  // namespace

int cmd_check(const std::vector<std::string> &args) {
    const std::optional<CheckOptions> options = parse_check_options(args);
    if (!options) {
        return 2;
    }
    Report report(options->json);
    const std::optional<Config> config = check_plugstack(report, options->plugstack);
    if (!config) {
        return report.finish();
    }
    const std::optional<LibvirtFacts> libvirt = check_libvirt(report, *config);
    if (!libvirt) {
        return report.finish();
    }
    const std::string device_problem = check_kvm_device(report);
    const std::optional<Catalog> catalog = check_catalog(report, *config);
    check_folders(report, *config);
    check_cgroups(report);
    check_shares(report, *config, libvirt->conn.get(), catalog);
    std::optional<KvmVerdict> verdict =
        libvirt->key.empty() ? std::nullopt : load_kvm_verdict(config->state_dir, libvirt->key);
    check_probes(report, *config, catalog, *options, *libvirt, device_problem, verdict);
    check_domain_type(report, *config, *libvirt, verdict, device_problem);
    return report.finish();
}

}  // namespace svm
