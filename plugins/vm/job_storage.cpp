#include "vm/job_storage.h"

#include "util/fd.h"
#include "vm/job_names.h"
#include "vm/job_vm.h"  // NodeFaultError

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>

namespace svm {

namespace {

constexpr uint64_t kMib = 1024 * 1024;
constexpr unsigned long long kMinFreeInodes = 64;

// `path`, or its nearest parent that exists: where its files will go.
std::string existing(std::string path) {
    struct stat st {};
    while (stat(path.c_str(), &st) != 0 && path.size() > 1) {
        const auto slash = path.find_last_of('/');
        path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
    }
    return path;
}

uint64_t be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
        v = v << 8 | p[i];
    }
    return v;
}

struct DirClose {
    void operator()(DIR *d) const { closedir(d); }
};

}  // namespace

void check_room(const std::string &path, uint64_t need_mib, uint64_t min_free_mib) {
    const std::string where = existing(path);
    struct statvfs vfs {};
    if (statvfs(where.c_str(), &vfs) != 0) {
        return;  // nothing to judge by: the writes themselves will say
    }
    const uint64_t free_mib = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize / kMib;
    if (free_mib < need_mib + min_free_mib) {
        throw NoRoomError(
            "no room for a VM: " + path + " has " + std::to_string(free_mib) +
            " MiB free, and a VM needs " +
            (need_mib > 0 ? std::to_string(need_mib) + " MiB for its disk plus " : "") +
            std::to_string(min_free_mib) +
            " MiB left free (min_free); the node's admin must make room");
    }
    if (vfs.f_files > 0 && vfs.f_favail < kMinFreeInodes) {
        throw NoRoomError("no room for a VM: " + path + " has " + std::to_string(vfs.f_favail) +
                          " free inodes; the node's admin must make room");
    }
}

void check_room_for_vm(const Config &config, uint64_t disk_mib) {
    check_room(config.state_dir + "/jobs", disk_mib, config.min_free_mib);
    check_room(config.run_dir, 0, std::min<uint64_t>(config.min_free_mib, 1));
    check_room(config.log_dir, 0, config.min_free_mib);
}

uint64_t disk_size_mib(const std::string &path, const std::string &format) {
    const UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd || fstat(fd.get(), &st) != 0) {
        throw Error("cannot read the disk " + path + ": " + errno_text(errno));
    }
    uint64_t bytes = static_cast<uint64_t>(st.st_size);
    if (format == "qcow2") {
        // QCowHeader: magic "QFI\xfb", version, backing file offset and size, cluster bits,
        // then the virtual size, big-endian, at byte 24.
        std::array<unsigned char, 32> header{};
        if (pread(fd.get(), header.data(), header.size(), 0) !=
                static_cast<ssize_t>(header.size()) ||
            header[0] != 'Q' || header[1] != 'F' || header[2] != 'I' || header[3] != 0xfb) {
            throw Error("the disk " + path + " is not a qcow2 image");
        }
        bytes = be64(header.data() + 24);
    }
    return (bytes + kMib - 1) / kMib;
}

void throw_folder_error(const std::string &path, int err) {
    if (err == ENOSPC || err == EDQUOT) {
        throw NoRoomError("no room for a VM: cannot create " + path + ": " + errno_text(err) +
                          "; the node's admin must make room");
    }
    throw NodeFaultError("cannot create " + path + ": " + errno_text(err));
}

std::vector<std::string> prune_console_logs(const std::string &log_dir,
                                            const std::string &state_dir, uint64_t max_mib) {
    std::vector<std::string> removed;
    try {
        struct Log {
            std::string name;
            int64_t mtime;
            uint64_t bytes;
        };
        std::vector<Log> logs;
        uint64_t total = 0;
        std::unique_ptr<DIR, DirClose> dir(opendir(log_dir.c_str()));
        if (!dir) {
            return removed;
        }
        const int dfd = dirfd(dir.get());
        while (const dirent *e = readdir(dir.get())) {
            const std::string name = e->d_name;
            const auto dot = name.find(".console.log");
            struct stat st {};
            if (!name.starts_with("svm-") || dot == std::string::npos ||
                fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
                continue;
            }
            const uint64_t bytes = static_cast<uint64_t>(st.st_blocks) * 512;
            total += bytes;
            // A VM that still has its state folder may still be writing its log.
            if (parse_domain_name(name.substr(0, dot)) &&
                access((state_dir + "/jobs/" + name.substr(0, dot)).c_str(), F_OK) == 0) {
                continue;
            }
            logs.push_back({name, st.st_mtim.tv_sec, bytes});
        }
        std::sort(logs.begin(), logs.end(),
                  [](const Log &a, const Log &b) { return a.mtime < b.mtime; });
        for (const Log &log : logs) {
            if (total <= max_mib * kMib) {
                break;
            }
            if (unlinkat(dfd, log.name.c_str(), 0) == 0) {
                total -= std::min(total, log.bytes);
                removed.push_back(log_dir + "/" + log.name);
            }
        }
    } catch (const std::exception &) {
        // A log too many is no fault of the job's.
    }
    return removed;
}

}  // namespace svm
