#include "image_cmd.h"

#include "util/config.h"
#include "util/error.h"
#include "util/fd.h"  // c_strings
#include "util/plugstack_args.h"
#include "vm/image_prepare.h"
#include "vm/kvm_verdict.h"
#include "vm/libvirt_handles.h"

#include <getopt.h>

#include <cstdio>
#include <filesystem>

#ifndef SVM_AGENT_INSTALL_PATH
#error "SVM_AGENT_INSTALL_PATH must name the installed slurm-vm-agent"
#endif

namespace svm {

namespace {

constexpr const char *kUsage =
    "usage: slurm-vm image prepare SRC DEST [--name NAME] [--direct-boot | --uefi]\n"
    "                              [--agent PATH]\n";

// Whether this host proved that KVM runs guests (kvm_verdict.h): only then may libguestfs's
// appliance use it.
bool kvm_proven(const Config &config) {
    try {
        ConnectionPtr conn = open_connection(config.libvirt_uri);
        const auto verdict = load_kvm_verdict(config.state_dir, host_key(conn.get()));
        return verdict && verdict->works;
    } catch (const Error &) {
        return false;
    }
}

}  // namespace

int cmd_image(const std::vector<std::string> &args) {
    if (args.empty() || args[0] != "prepare") {
        fputs(kUsage, stderr);
        return 2;
    }
    std::vector<std::string> words = {"slurm-vm image prepare"};
    words.insert(words.end(), args.begin() + 1, args.end());
    std::vector<char *> argv = c_strings(words);
    static const option options[] = {{"name", required_argument, nullptr, 'n'},
                                     {"direct-boot", no_argument, nullptr, 'd'},
                                     {"uefi", no_argument, nullptr, 'u'},
                                     {"agent", required_argument, nullptr, 'a'},
                                     {nullptr, 0, nullptr, 0}};
    PrepareRequest request;
    request.agent = SVM_AGENT_INSTALL_PATH;
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(static_cast<int>(words.size()), argv.data(), "", options,
                                 nullptr)) != -1;) {
        switch (c) {
            case 'n':
                request.name = optarg;
                break;
            case 'd':
                request.direct_boot = true;
                break;
            case 'u':
                request.uefi = true;
                break;
            case 'a':
                request.agent = optarg;
                break;
            default:
                fprintf(stderr,
                        "slurm-vm: image prepare: unknown option or missing value: '%s'\n%s",
                        argv[optind - 1], kUsage);
                return 2;
        }
    }
    if (static_cast<int>(words.size()) - optind != 2) {
        fprintf(stderr, "slurm-vm: image prepare: expected SRC and DEST\n%s", kUsage);
        return 2;
    }
    if (request.direct_boot && request.uefi) {
        fprintf(stderr,
                "slurm-vm: image prepare: --direct-boot and --uefi exclude each other: a direct "
                "kernel boot uses no firmware from the disk\n%s",
                kUsage);
        return 2;
    }
    request.source = argv[optind];
    request.destination = argv[optind + 1];
    if (request.name.empty()) {
        request.name = std::filesystem::path(request.destination).stem().string();
    }
    Config config;
    try {
        config = parse_config(plugstack_args());
    } catch (const Error &) {
        // Defaults: the state folder is only read for the KVM verdict.
    }
    request.appliance_kvm = kvm_proven(config);
    const PrepareResult r = prepare_image(request, [](const std::string &line) {
        fprintf(stderr, "slurm-vm: image prepare: %s\n", line.c_str());
    });
    fprintf(stderr, "slurm-vm: image prepare: %s ready in %.0f s; add this entry to the catalog:\n",
            r.destination.c_str(), r.seconds);
    printf("%s\n", r.catalog_entry.c_str());
    return 0;
}

}  // namespace svm
