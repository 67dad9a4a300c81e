// slurm-vm: the admin's command.
//   slurm-vm try IMAGE [--destroy] [--uid N] [--plugstack FILE] [-- CMD...]
//       boot IMAGE on this host as a job would, run CMD (default: uname -a) in it, stop it,
//       and print how long each phase took. Exit status: CMD's, or 1 when the VM failed.
//   slurm-vm image prepare   a distribution's disk image made a slurm-vm base (image_cmd.h)
//   slurm-vm check     what a VM job needs on this node, one line per check (check_cmd.h)
//   slurm-vm list      the job VMs running on this host
//   slurm-vm report    usage per physical host and image (accounting/report_cmd.h)
//   slurm-vm map       the VM-node-to-host map (accounting/report_cmd.h)
#include "catalog/catalog.h"
#include "check_cmd.h"
#include "image_cmd.h"
#include "slurm_jobs.h"
#include "util/config.h"
#include "util/error.h"
#include "util/fd.h"  // c_strings
#include "util/text.h"
#include "exec/exec_client.h"
#include "vm/job_vm.h"
#include "vm/kvm_verdict.h"
#include "vm/libvirt_handles.h"
#include "util/plugstack_args.h"
#include "accounting/report_cmd.h"

#include <getopt.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

// Wrong arguments: exit status 2 with the usage, as for any command-line tool.
class UsageError : public svm::Error {
  public:
    using Error::Error;
};

constexpr const char *kUsage =
    "usage: slurm-vm try IMAGE [--destroy] [--uid N] [--plugstack FILE] [-- CMD...]\n"
    "       slurm-vm check [--json] [--image NAME] [--no-boot] [--plugstack FILE]\n"
    "       slurm-vm image prepare SRC DEST [--name NAME] [--direct-boot] [--agent PATH]\n"
    "       slurm-vm list\n"
    "       slurm-vm report --from YYYY-MM-DD[THH:MM] --to YYYY-MM-DD[THH:MM] "
    "[--format table|csv|json] [--map FILE]\n"
    "       slurm-vm map start VMNODE HOST | stop VMNODE | list [--map FILE]\n"
    "       slurm-vm running HOST [--map FILE]\n";

// Domain names carry a job id: `try` uses ids above any real Slurm job id (Slurm's
// MaxJobId is at most 0x03ff0000) so it can never collide with a job's VM.
uint32_t try_job_id() {
    return 0x7f000000u + static_cast<uint32_t>(getpid() % 0xffffff);
}

int cmd_try(const std::vector<std::string> &args) {
    std::string image, plugstack = "/etc/slurm/plugstack.conf";
    bool destroy = false;
    uint32_t uid = 0;
    std::vector<std::string> command;
    // getopt_long over a copy: "try" stands in for argv[0]. It moves IMAGE after the options
    // and stops at "--": what follows is the command, options and all.
    std::vector<std::string> words = {"slurm-vm try"};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char *> argv = svm::c_strings(words);
    static const option options[] = {{"destroy", no_argument, nullptr, 'd'},
                                     {"uid", required_argument, nullptr, 'u'},
                                     {"plugstack", required_argument, nullptr, 'p'},
                                     {nullptr, 0, nullptr, 0}};
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(static_cast<int>(words.size()), argv.data(), "", options,
                                 nullptr)) != -1;) {
        switch (c) {
            case 'd':
                destroy = true;
                break;
            case 'u': {
                const std::string v = optarg;
                if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos ||
                    v.size() > 10 || std::stoull(v) > 0xfffffffeULL) {
                    throw UsageError("try: --uid '" + v + "' is not a uid");
                }
                uid = static_cast<uint32_t>(std::stoul(v));
                break;
            }
            case 'p':
                plugstack = optarg;
                break;
            default:
                throw UsageError("try: unknown option or missing value: '" +
                                 std::string(argv[optind - 1]) + "'");
        }
    }
    for (int i = optind; i < static_cast<int>(words.size()); ++i) {
        if (image.empty() && command.empty()) {
            image = argv[i];  // permuted: read argv, not words
        } else {
            command.push_back(argv[i]);
        }
    }
    if (image.empty()) {
        throw UsageError("try: which image?");
    }
    if (command.empty()) {
        command = {"/bin/sh", "-c", "uname -a; cat /proc/uptime"};
    }
    const svm::Config config = svm::parse_config(svm::plugstack_args(plugstack));
    const svm::Catalog catalog = svm::Catalog::load(config.catalog);

    svm::JobVmRequest request;
    request.jobid = try_job_id();
    request.node = "try";
    request.image = image;
    request.uid = uid;
    request.gid = uid;
    request.work_dir = "";  // nothing of the host shared but the configured paths
    const svm::JobVmPaths paths = svm::job_vm_paths(config, request.jobid, request.node);
    printf("slurm-vm try %s: booting %s\n", image.c_str(), paths.domain.c_str());
    fflush(stdout);
    const svm::StartReport started = svm::start_job_vm(config, catalog, request);
    printf("  %s domain, %u vCPU, %llu MiB, hostname %s\n", started.domain_type.c_str(),
           started.vcpus, static_cast<unsigned long long>(started.memory_mib),
           started.hostname.c_str());
    if (!started.kvm_fallback_reason.empty()) {
        printf("  TCG, not KVM: %s\n", started.kvm_fallback_reason.c_str());
    }
    if (!started.kvm_verdict.empty()) {
        printf("  KVM probe of this host: %s (verdict in %s)\n", started.kvm_verdict.c_str(),
               svm::kvm_verdict_path(config.state_dir).c_str());
    }
    if (started.snapshot_seconds > 0) {
        printf("  made a warm-start snapshot in %.2f s\n", started.snapshot_seconds);
    }
    printf("  started %s\n", svm::printable(started.start_mode).c_str());
    printf("  created in %.2f s, agent ready after %.2f s more, set up in %.2f s\n",
           started.create_seconds, started.ready_seconds, started.setup_seconds);
    fflush(stdout);

    svm::ExecRequest exec;
    exec.argv = command;
    exec.env = {"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root"};
    exec.cwd = "/";
    exec.uid = uid;
    exec.gid = uid;
    exec.groups = {uid};
    int status = 0;
    try {
        svm::HostCallPolicy host_calls;
        host_calls.mode = config.host_calls;  // as a job's task would have it
        status = svm::run_in_guest(paths.channel_dir, config.exec_ports, exec, -1, 1, 2, nullptr,
                                   host_calls);
    } catch (const svm::Error &e) {
        fprintf(stderr, "slurm-vm: %s\n", e.what());
        status = W_EXITCODE(1, 0);
    }
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("  command exit status %d\n", code);

    svm::Config stop_config = config;
    if (destroy) {
        stop_config.grace_seconds = 0;  // no shutdown request: straight to destroy
    }
    const svm::StopReport stopped = svm::stop_job_vm(stop_config, request.jobid, request.node);
    printf("  %s: %s\n", destroy ? "destroy" : "graceful shutdown", stopped.detail.c_str());

    svm::ConnectionPtr conn = svm::open_connection(config.libvirt_uri);
    const bool gone = !svm::lookup_domain(conn.get(), paths.domain).has_value();
    printf("  domain %s: %s\n", paths.domain.c_str(), gone ? "gone" : "STILL PRESENT");
    return gone ? code : 1;
}

int cmd_list() {
    const svm::Config config = svm::parse_config(svm::plugstack_args());
    svm::ConnectionPtr conn = svm::open_connection(config.libvirt_uri);
    virDomainPtr *domains = nullptr;
    const int n = virConnectListAllDomains(conn.get(), &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (n < 0) {
        throw svm::Error("cannot list domains: " + svm::libvirt_last_error());
    }
    for (int i = 0; i < n; ++i) {
        svm::DomainPtr d(domains[i]);
        const char *name = virDomainGetName(d.get());
        if (name != nullptr && strncmp(name, "svm-", 4) == 0) {
            printf("%s\n", name);
        }
    }
    free(domains);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    try {
        if (!args.empty() && args[0] == "try") {
            return cmd_try({args.begin() + 1, args.end()});
        }
        if (!args.empty() && args[0] == "image") {
            return svm::cmd_image({args.begin() + 1, args.end()});
        }
        if (!args.empty() && args[0] == "check") {
            return svm::cmd_check({args.begin() + 1, args.end()});
        }
        if (!args.empty() && args[0] == "list") {
            return cmd_list();
        }
        if (!args.empty() && args[0] == "report") {
            return svm::cmd_report({args.begin() + 1, args.end()}, svm::slurm_expand_hostlist);
        }
        if (!args.empty() && args[0] == "running") {
            return svm::cmd_running({args.begin() + 1, args.end()}, svm::for_each_slurm_job);
        }
        if (!args.empty() && args[0] == "map") {
            return svm::cmd_map({args.begin() + 1, args.end()});
        }
        fputs(kUsage, stderr);
        return 2;
    } catch (const UsageError &e) {
        fprintf(stderr, "slurm-vm: %s\n%s", e.what(), kUsage);
        return 2;
    } catch (const std::exception &e) {
        fprintf(stderr, "slurm-vm: %s\n", e.what());
        return 1;
    }
}
