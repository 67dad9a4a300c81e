#include "vm/image_prepare.h"

#include "catalog/image_name.h"
#include "exec/protocol/messages.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/json.h"
#include "util/process.h"
#include "util/safe_fs.h"
#include "util/text.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace svm {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char *kAgentDir = "/usr/local/libexec/slurm-vm";

// What a tool's stderr says went wrong, printable: its first "error:" line (libguestfs tools
// follow theirs with advice on debugging), else its last non-empty line.
std::string last_line(const std::string &text) {
    if (const auto at = text.find("error: "); at != std::string::npos) {
        const auto begin = text.rfind('\n', at);
        const auto start = begin == std::string::npos ? 0 : begin + 1;
        std::string line = text.substr(start, text.find('\n', at) - start);
        if (line.size() > 300) {
            line.resize(300);
        }
        return printable(line);
    }
    std::string line, last;
    for (std::size_t start = 0; start < text.size();) {
        std::size_t end = text.find('\n', start);
        if (end == std::string::npos) {
            end = text.size();
        }
        line = text.substr(start, end - start);
        if (line.find_first_not_of(" \t\r") != std::string::npos) {
            last = line;
        }
        start = end + 1;
    }
    if (last.size() > 300) {
        last.resize(300);
    }
    return printable(last);
}

// A temporary folder removed with everything in it when this goes out of scope.
class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/slurm-vm-prepare.XXXXXX";
        if (mkdtemp(tmpl) == nullptr) {
            throw Error(std::string("cannot make a temporary folder: ") + errno_text(errno));
        }
        path_ = tmpl;
    }
    ~TempDir() {
        try {
            remove_tree(path_);
        } catch (const Error &) {
        }
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    const std::string &path() const { return path_; }

  private:
    std::string path_;
};

std::vector<std::string> guestfs_command(const PrepareRequest &r, std::vector<std::string> tool) {
    std::vector<std::string> argv = {find_program("env"), "LIBGUESTFS_BACKEND=direct"};
    if (!r.appliance_kvm) {
        // Where KVM is offered but broken, libguestfs picks it and hangs (DESIGN: "Examining
        // the guest ..." for minutes): its appliance runs under TCG unless KVM is proven.
        argv.push_back("LIBGUESTFS_BACKEND_SETTINGS=force_tcg");
    }
    argv.insert(argv.end(), tool.begin(), tool.end());
    return argv;
}

std::string disk_format(const std::string &source) {
    const ProcessResult r = run_process({find_program("qemu-img"), "info", "--output=json", source},
                                        std::chrono::seconds(60));
    if (r.timed_out || r.status != 0) {
        throw Error(source + " is not a disk image (qemu-img: " + last_line(r.err) + ")");
    }
    try {
        JsonPtr info = parse_json_object(r.out, "qemu-img info");
        const std::string format =
            json_string_value(json_field(info.get(), "format", "qemu-img info"), "format");
        return format;
    } catch (const std::exception &e) {
        throw Error(source + ": cannot read qemu-img's answer: " + e.what());
    }
}

}  // namespace

std::string agent_unit_text(const std::string &dir) {
    return "# slurm-vm: the agent that runs a job's tasks in this VM for the host (virtio-serial\n"
           "# ports org.slurmvm.exec.N). Started as early as it can be, once the root file system\n"
           "# is writable: the host waits for it to answer.\n"
           "[Unit]\n"
           "Description=slurm-vm agent\n"
           "DefaultDependencies=no\n"
           "After=systemd-remount-fs.service systemd-journald.socket\n"
           "Before=sysinit.target shutdown.target\n"
           "Conflicts=shutdown.target\n"
           "\n"
           "[Service]\n"
           "ExecStartPre=" +
           dir + "/ports\n" + "ExecStart=" + dir +
           "/slurm-vm-agent\n"
           "Restart=always\n"
           "RestartSec=1\n"
           "\n"
           "[Install]\n"
           "WantedBy=sysinit.target\n";
}

std::string agent_ports_script() {
    // udev would load virtio_console and make the /dev/virtio-ports links, but its coldplug
    // takes seconds under TCG: do both here, as the tiny guest's rc.sh does, and load 9p's
    // modules for the shares mounted at set-up.
    return R"(#!/bin/sh
# slurm-vm: make the agent's virtio ports appear now, without waiting for udev.
modprobe -qa virtio_console 9pnet_virtio 9p
mkdir -p /dev/virtio-ports
i=0 seen=0
while [ $i -lt 100 ]; do
    for p in /sys/class/virtio-ports/*; do
        [ -r "$p/name" ] || continue
        n=$(cat "$p/name")
        [ -n "$n" ] && ln -sfn "../${p##*/}" "/dev/virtio-ports/$n"
    done
    now=$(ls /dev/virtio-ports | grep -c '^org\.slurmvm\.exec\.')
    [ "$now" -gt 0 ] && [ "$now" = "$seen" ] && exit 0
    seen=$now
    i=$((i + 1))
    sleep 0.1
done
echo "slurm-vm: no org.slurmvm.exec.* virtio port after 10 s" >&2
exit 0
)";
}

std::string agent_start_script(const std::string &dir) {
    return "#!/bin/sh\n"
           "# slurm-vm: the agent, for an init other than systemd (see init-fallback).\n" +
           dir + "/ports\nexec " + dir + "/slurm-vm-agent\n";
}

std::string agent_init_fallback_script(const std::string &dir) {
    // $SVM_ROOT is empty in the image (virt-customize runs this chrooted); tests point it at a
    // folder.
    return R"(#!/bin/sh
# slurm-vm: run by `slurm-vm image prepare` inside the image. systemd starts the agent through
# its unit; another init is told here to start (and restart) it.
root=${SVM_ROOT:-}
start=)" + dir +
           R"(/start
for init in /lib/systemd/systemd /usr/lib/systemd/systemd; do
    [ -x "$root$init" ] && exit 0
done
if [ -f "$root/etc/inittab" ]; then
    grep -q "$start" "$root/etc/inittab" && exit 0
    if grep -q '^::' "$root/etc/inittab"; then
        echo "::respawn:$start" >>"$root/etc/inittab"  # busybox init (Alpine and the like)
    else
        echo "svma:2345:respawn:$start" >>"$root/etc/inittab"  # SysV init
    fi
    exit 0
fi
for rc in /etc/rc.local /etc/rc.d/rc.local; do
    if [ -f "$root$rc" ]; then
        grep -q "$start" "$root$rc" && exit 0
        # Before a final "exit 0", if the file has one.
        sed -i '/^exit 0/d' "$root$rc"
        printf '(while :; do %s; sleep 1; done) &\nexit 0\n' "$start" >>"$root$rc"
        chmod 0755 "$root$rc"
        exit 0
    fi
done
echo "slurm-vm: the image has no systemd, /etc/inittab or rc.local: start $start from its init" >&2
exit 3
)";
}

namespace {

using Progress = std::function<void(const std::string &)>;

// The request's checks, before anything is made; the source's format (qcow2 or raw).
std::string checked_source_format(const PrepareRequest &r) {
    if (const std::string problem = image_name_problem(r.name); !problem.empty()) {
        throw Error("image name '" + printable(r.name) + "' is invalid: " + problem);
    }
    std::error_code ec;
    if (fs::exists(fs::symlink_status(r.destination, ec))) {
        throw Error(r.destination + " exists: choose a new file (the source is never changed)");
    }
    if (!fs::is_regular_file(r.source, ec)) {
        throw Error(r.source + ": no such disk image");
    }
    if (access(r.agent.c_str(), X_OK) != 0) {
        throw Error(r.agent + ": no slurm-vm agent there (" + errno_text(errno) + ")");
    }
    const std::string format = disk_format(r.source);
    if (format != "qcow2" && format != "raw") {
        throw Error(r.source + " is a " + printable(format) +
                    " image: convert it to qcow2 or raw first (qemu-img convert)");
    }
    return format;
}

// The source, copied to a new qcow2 file `part` (the source is never written).
void copy_to_qcow2(const PrepareRequest &r, const std::string &format, const std::string &part,
                   const Progress &say) {
    say("copying " + r.source + " (" + format + ") to " + part);
    ProcessResult c = run_process(
        {find_program("qemu-img"), "convert", "-f", format, "-O", "qcow2", r.source, part},
        std::chrono::seconds(r.timeout_seconds));
    if (c.timed_out || c.status != 0) {
        throw Error("cannot copy " + r.source + " to " + part + ": " + last_line(c.err));
    }
}

// virt-customize's arguments: the agent, its port script, its start script and its unit
// (from `files`) into `dir` of the image, the unit enabled, the host-call links to the agent,
// and the init fallback run inside the image.
std::vector<std::string> virt_customize_argv(const std::string &part, const std::string &agent,
                                             const std::string &files, const std::string &dir) {
    std::string links;
    for (const auto &cmd : protocol::hostcall_commands()) {
        links += ":/usr/local/bin/" + cmd;
    }
    const std::string unit = "/etc/systemd/system/slurm-vm-agent.service";
    return {find_program("virt-customize"),
            "-q",
            "-a",
            part,
            "--no-network",
            "--mkdir",
            dir,
            "--mkdir",
            "/usr/local/bin",
            "--mkdir",
            "/etc/systemd/system/sysinit.target.wants",
            "--upload",
            agent + ":" + dir + "/slurm-vm-agent",
            "--chmod",
            "0755:" + dir + "/slurm-vm-agent",
            "--upload",
            files + "/ports:" + dir + "/ports",
            "--chmod",
            "0755:" + dir + "/ports",
            "--upload",
            files + "/start:" + dir + "/start",
            "--chmod",
            "0755:" + dir + "/start",
            "--upload",
            files + "/slurm-vm-agent.service:" + unit,
            "--chmod",
            "0644:" + unit,
            "--link",
            unit + ":/etc/systemd/system/sysinit.target.wants/slurm-vm-agent.service",
            "--link",
            dir + "/slurm-vm-agent" + links,
            "--run",
            files + "/init-fallback"};
}

// Why virt-customize failed, in the admin's terms where its stderr `err` says.
[[noreturn]] void throw_virt_customize_failure(const PrepareRequest &r, const std::string &part,
                                               const std::string &err) {
    const std::string why = last_line(err);
    if (why.find("no operating systems were found") != std::string::npos) {
        throw Error(r.source + " holds no Linux system libguestfs can find");
    }
    if (why.find("No space left") != std::string::npos) {
        throw Error(r.source + " has no room for the agent (" + why + ")");
    }
    // The init fallback's own words (virt-customize's last line only says it failed).
    if (const auto at = err.find("slurm-vm: the image has no systemd"); at != std::string::npos) {
        const std::string line = err.substr(at, err.find('\n', at) - at);
        throw Error(r.source + ": " + printable(line.substr(strlen("slurm-vm: "))));
    }
    throw Error("virt-customize on " + part + " failed: " + why);
}

// The agent, its scripts and its unit, into the image `part` (virt-customize).
void install_agent(const PrepareRequest &r, const std::string &part, const Progress &say) {
    TempDir tmp;
    const std::string dir = kAgentDir;
    write_file_atomically(tmp.path() + "/slurm-vm-agent.service", agent_unit_text(dir), 0644);
    write_file_atomically(tmp.path() + "/ports", agent_ports_script(), 0755);
    write_file_atomically(tmp.path() + "/start", agent_start_script(dir), 0755);
    write_file_atomically(tmp.path() + "/init-fallback", agent_init_fallback_script(dir), 0755);
    say("installing the agent with virt-customize (libguestfs boots its own appliance)");
    ProcessResult v =
        run_process(guestfs_command(r, virt_customize_argv(part, r.agent, tmp.path(), dir)),
                    std::chrono::seconds(r.timeout_seconds));
    if (v.timed_out) {
        throw Error("virt-customize on " + part + " did not finish within " +
                    std::to_string(r.timeout_seconds) + " s");
    }
    if (v.status != 0) {
        throw_virt_customize_failure(r, part, v.err);
    }
}

// The image's kernel and initrd, out beside the destination (<stem>.vmlinuz,
// <stem>.initrd.img) for direct kernel boot; each file made goes to `made`.
void take_kernel_out(const PrepareRequest &r, const std::string &part, const std::string &stem,
                     PrepareResult &result, std::vector<std::string> &made, const Progress &say) {
    say("taking the kernel and initrd out (virt-get-kernel)");
    TempDir kdir;
    ProcessResult k =
        run_process(guestfs_command(r, {find_program("virt-get-kernel"), "-q", "-a", part,
                                        "--unversioned-names", "-o", kdir.path()}),
                    std::chrono::seconds(r.timeout_seconds));
    if (k.timed_out || k.status != 0) {
        throw Error("virt-get-kernel on " + part + " failed: " + last_line(k.err));
    }
    result.kernel = stem + ".vmlinuz";
    result.initrd = stem + ".initrd.img";
    std::error_code ec;
    for (const auto &[from, to] : {std::pair{kdir.path() + "/vmlinuz", result.kernel},
                                   std::pair{kdir.path() + "/initrd.img", result.initrd}}) {
        if (fs::exists(to, ec)) {
            throw Error(to + " exists: choose a new destination");
        }
        fs::copy_file(from, to, ec);
        if (ec) {
            throw Error("cannot copy " + from + " to " + to + ": " + ec.message());
        }
        made.push_back(to);
        chmod(to.c_str(), 0644);
    }
}

// The catalog entry the admin adds for the prepared image.
std::string catalog_entry(const PrepareRequest &r, const PrepareResult &result) {
    JsonPtr entry = json_new_object();
    json_set(entry.get(), "name", json_from_string(r.name));
    json_set(entry.get(), "description",
             json_from_string("prepared by slurm-vm image prepare from " + r.source));
    if (r.direct_boot) {
        json_set(entry.get(), "kernel", json_from_string(result.kernel));
        json_set(entry.get(), "initrd", json_from_string(result.initrd));
        // The image's own root file system on the first partition, or the whole disk.
        json_set(entry.get(), "cmdline", json_from_string("root=/dev/vda1 ro console=ttyS0"));
    }
    json_set(entry.get(), "disk", json_from_string(r.destination));
    json_set(entry.get(), "disk_format", json_from_string("qcow2"));
    if (r.uefi) {
        json_set(entry.get(), "firmware", json_from_string("uefi"));
    }
    JsonPtr vcpus = json_new_object();
    json_set(vcpus.get(), "default", json_from_int(1));
    json_set(vcpus.get(), "max", json_from_int(64));
    json_set(entry.get(), "vcpus", std::move(vcpus));
    JsonPtr mem = json_new_object();
    json_set(mem.get(), "default", json_from_int(1024));
    json_set(mem.get(), "max", json_from_int(65536));
    json_set(entry.get(), "memory_mib", std::move(mem));
    // A distribution with systemd boots in about 15 s under TCG, a few under KVM.
    json_set(entry.get(), "ready_timeout", json_from_int(180));
    return json_to_text(entry.get());
}

}  // namespace

PrepareResult prepare_image(const PrepareRequest &r,
                            const std::function<void(const std::string &)> &progress) {
    const Progress say = [&](const std::string &line) {
        if (progress) {
            progress(line);
        }
    };
    const auto start = Clock::now();
    const std::string format = checked_source_format(r);

    PrepareResult result;
    result.destination = r.destination;
    const std::string part = r.destination + ".part";
    const std::string stem = r.destination.substr(0, r.destination.rfind('.') == std::string::npos
                                                         ? r.destination.size()
                                                         : r.destination.rfind('.'));
    std::vector<std::string> made = {part};
    try {
        copy_to_qcow2(r, format, part, say);
        install_agent(r, part, say);
        if (r.direct_boot) {
            take_kernel_out(r, part, stem, result, made, say);
        }
        chmod(part.c_str(), 0644);  // QEMU reads it as the job's user
        if (rename(part.c_str(), r.destination.c_str()) != 0) {
            throw Error("cannot rename " + part + " to " + r.destination + ": " +
                        errno_text(errno));
        }
    } catch (...) {
        for (const auto &f : made) {
            unlink(f.c_str());
        }
        throw;
    }
    result.catalog_entry = catalog_entry(r, result);
    result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return result;
}

}  // namespace svm
