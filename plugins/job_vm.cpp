#include "job_vm.h"

#include "capabilities.h"
#include "domain_xml.h"
#include "error.h"
#include "exec_client.h"
#include "image_features.h"
#include "orphans.h"
#include "overlay.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace svm {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string describe(const JobVmRequest &r) {
    return "image '" + r.image + "' on " + r.node + " (job " + std::to_string(r.jobid) + ")";
}

void make_dir(const std::string &path, mode_t mode, uid_t uid, gid_t gid) {
    std::error_code ec;
    fs::remove_all(path, ec);  // a stale folder of an earlier job with the same id
    if (mkdir(path.c_str(), mode) != 0) {
        throw Error("cannot create " + path + ": " + errno_text(errno));
    }
    if (chown(path.c_str(), uid, gid) != 0 || chmod(path.c_str(), mode) != 0) {
        throw Error("cannot give " + path + " to uid " + std::to_string(uid) + ": " +
                    errno_text(errno));
    }
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

// libvirt creates the channel sockets as root (it passes them to QEMU as open files). Until
// they are the user's, only root can connect; the folder is the user's alone, so nobody else
// could reach them in between either.
void give_sockets_to_user(const JobVmPaths &paths, unsigned ports, uid_t uid, gid_t gid) {
    for (unsigned i = 0; i < ports; ++i) {
        const std::string sock = paths.channel_dir + "/exec." + std::to_string(i) + ".sock";
        if (lchown(sock.c_str(), uid, gid) != 0 || chmod(sock.c_str(), 0600) != 0) {
            throw Error("cannot give " + sock + " to uid " + std::to_string(uid) + ": " +
                        errno_text(errno));
        }
    }
}

bool is_under(const std::string &path, const std::string &dir) {
    if (path == dir) {
        return true;
    }
    const std::string prefix = dir.back() == '/' ? dir : dir + "/";
    return path.compare(0, prefix.size(), prefix) == 0;
}

std::vector<Share> shares_for(const Config &config, const std::string &work_dir) {
    std::vector<Share> shares;
    for (const auto &p : config.shared_paths) {
        if (fs::is_directory(p)) {
            shares.push_back({"svm" + std::to_string(shares.size()), p, p, false});
        }
    }
    const bool covered = std::any_of(shares.begin(), shares.end(), [&](const Share &s) {
        return is_under(work_dir, s.host_path);
    });
    if (!work_dir.empty() && !covered && fs::is_directory(work_dir)) {
        shares.push_back({"svm" + std::to_string(shares.size()), work_dir, work_dir, false});
    }
    return shares;
}

void write_file(const std::string &path, const std::string &text) {
    const std::string tmp = path + ".tmp";
    const int fd = open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        throw Error("cannot write " + tmp + ": " + errno_text(errno));
    }
    const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
        throw Error("cannot write " + path + ": " + errno_text(errno));
    }
}

std::string json_string(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

void remove_job_files(const JobVmPaths &paths) {
    std::error_code ec;
    fs::remove_all(paths.channel_dir, ec);
    fs::remove_all(paths.state_dir, ec);
}

}  // namespace

JobVmPaths job_vm_paths(const Config &config, uint32_t jobid, std::string_view node) {
    JobVmPaths p;
    p.domain = domain_name_for(jobid, node);
    p.state_dir = config.state_dir + "/jobs/" + p.domain;
    p.channel_dir = config.run_dir + "/" + p.domain;
    p.console_log = config.log_dir + "/" + p.domain + ".console.log";
    p.error_file = p.state_dir + "/error";
    p.state_file = p.state_dir + "/vm.json";
    return p;
}

StartReport start_job_vm(const Config &config, const Catalog &catalog, const JobVmRequest &r) {
    const Image *listed = catalog.find(r.image);
    if (listed == nullptr) {
        throw Error(describe(r) + ": the image is not in the catalog " + config.catalog);
    }
    // Per-node image folders: %n in the catalog's paths is this node's name.
    const Image resolved = resolve_for_node(*listed, r.node);
    const Image *image = &resolved;
    const JobVmPaths paths = job_vm_paths(config, r.jobid, r.node);
    StartReport report;
    report.domain = paths.domain;
    report.hostname = expand_hostname(config.hostname_template, r.node, r.jobid);
    report.vcpus =
        r.cpus == 0 ? image->limits.default_vcpus : std::min(r.cpus, image->limits.max_vcpus);
    report.memory_mib = r.memory_mib == 0 ? image->limits.default_memory_mib
                                          : std::min(r.memory_mib, image->limits.max_memory_mib);

    ConnectionPtr conn = open_connection(config.libvirt_uri);
    VmLifecycle vm(conn.get(), paths.domain);
    try {
        // slurmd may run with umask 077: the parents must stay traversable for the job's
        // user (its exec client and its QEMU), whatever the umask made them.
        for (const auto &dir :
             {config.state_dir, config.state_dir + "/jobs", config.run_dir, config.log_dir}) {
            std::error_code ec;
            fs::create_directories(dir, ec);
            if (ec || chmod(dir.c_str(), 0755) != 0) {
                throw Error("cannot create " + dir + ": " +
                            (ec ? ec.message() : errno_text(errno)));
            }
        }
        make_dir(paths.state_dir, 0755, 0, 0);
        make_dir(paths.channel_dir, 0700, r.uid, r.gid);
        make_lock_files(paths, config.exec_ports, r.uid, r.gid);

        VmSpec spec;
        spec.name = paths.domain;
        char *caps = virConnectGetCapabilities(conn.get());
        if (caps == nullptr) {
            throw Error("cannot read libvirt's capabilities: " + libvirt_last_error());
        }
        const std::string caps_xml(caps);
        free(caps);
        spec.domain_type = choose_domain_type(caps_xml, "x86_64", config.domain_type);
        report.domain_type = spec.domain_type;
        spec.vcpus = report.vcpus;
        spec.memory_mib = report.memory_mib;
        // QEMU runs as the job's user and libvirt relabels nothing (relabel='no'): the
        // catalog's files stay root's and only need to be readable.
        spec.kernel = image->kernel;
        spec.initrd = image->initrd;
        spec.cmdline = image->cmdline;
        if (!image->disk.empty()) {
            spec.disk = paths.state_dir + "/disk.qcow2";
            spec.disk_format = "qcow2";
            create_overlay(image->disk, image->disk_format, spec.disk, r.uid, r.gid);
        }
        spec.shares = shares_for(config, r.work_dir);
        spec.console_log = paths.console_log;
        spec.channel_dir = paths.channel_dir;
        spec.exec_ports = config.exec_ports;
        spec.run_as = std::make_pair(r.uid, r.gid);
        spec.metadata = {{"jobid", std::to_string(r.jobid)},
                         {"node", r.node},
                         {"image", r.image},
                         {"uid", std::to_string(r.uid)}};

        auto t = Clock::now();
        vm.create(render_domain_xml(spec));
        give_sockets_to_user(paths, config.exec_ports, r.uid, r.gid);
        report.create_seconds = seconds_since(t);

        t = Clock::now();
        const unsigned timeout_s =
            image->ready_timeout != 0 ? image->ready_timeout : config.ready_timeout_seconds;
        const std::string control = paths.channel_dir + "/exec.0.sock";
        const bool ready = vm.wait_ready(
            std::chrono::seconds(timeout_s), [&](std::chrono::milliseconds remaining) {
                try {
                    ping_agent(control,
                               static_cast<int>(std::min<long long>(remaining.count(), 2000)));
                    return true;
                } catch (const Error &) {
                    return false;
                }
            });
        if (!ready) {
            throw Error("the VM did not become ready within " + std::to_string(timeout_s) +
                        " s (its agent never answered; guest console: " + paths.console_log + ")");
        }
        report.ready_seconds = seconds_since(t);

        t = Clock::now();
        SetupRequest setup;
        setup.hostname = report.hostname;
        for (const auto &s : spec.shares) {
            setup.mounts.push_back({s.tag, s.guest_path, s.readonly});
        }
        setup_guest(control, setup, 30000);
        report.setup_seconds = seconds_since(t);

        std::ostringstream state;
        state << "{\"domain\":" << json_string(paths.domain)
              << ",\"image\":" << json_string(r.image) << ",\"node\":" << json_string(r.node)
              << ",\"jobid\":" << r.jobid << ",\"hostname\":" << json_string(report.hostname)
              << ",\"vcpus\":" << report.vcpus << ",\"memory_mib\":" << report.memory_mib
              << ",\"domain_type\":" << json_string(report.domain_type)
              << ",\"ready_at\":" << time(nullptr) << "}\n";
        write_file(paths.state_file, state.str());
        return report;
    } catch (const Error &e) {
        try {
            vm.destroy();
        } catch (const Error &) {
            // The domain may never have existed; the original error is what matters.
        }
        remove_job_files(paths);
        throw Error(describe(r) + ": " + e.what());
    }
}

StopReport stop_job_vm(const Config &config, uint32_t jobid, std::string_view node) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    StopReport report;
    ConnectionPtr conn = open_connection(config.libvirt_uri);
    VmLifecycle vm(conn.get(), paths.domain);
    if (vm.attach() != VmState::Absent) {
        report = vm.stop(std::chrono::seconds(config.grace_seconds));
    } else {
        report.detail = "no VM was running";
    }
    remove_job_files(paths);
    return report;
}

void record_job_vm_error(const Config &config, uint32_t jobid, std::string_view node,
                         const std::string &message) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    try {
        std::error_code ec;
        fs::create_directories(paths.state_dir, ec);
        write_file(paths.error_file, message + "\n");
    } catch (const Error &) {
        // Nothing better to do: the caller logs the message too.
    }
}

std::optional<std::string> job_vm_error(const Config &config, uint32_t jobid,
                                        std::string_view node) {
    std::ifstream in(job_vm_paths(config, jobid, node).error_file);
    if (!in) {
        return std::nullopt;
    }
    std::string line;
    std::getline(in, line);
    return line;
}

bool job_has_vm(const Config &config, uint32_t jobid, std::string_view node) {
    const JobVmPaths paths = job_vm_paths(config, jobid, node);
    std::error_code ec;
    return fs::exists(paths.state_dir, ec) || fs::exists(paths.channel_dir, ec);
}

}  // namespace svm
