#include "vm/overlay.h"

#include "util/atomic_file.h"
#include "util/error.h"
#include "util/process.h"
#include "util/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

namespace svm {

namespace {

std::string first_line(const std::string &text) {
    std::string line = text.substr(0, text.find('\n'));
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
        line.pop_back();
    }
    return line;
}

bool mentions_no_space(const std::string &text) {
    return text.find("No space left on device") != std::string::npos;
}

void set_owner_and_mode(int fd, uint32_t uid, uint32_t gid, const std::string &what) {
    if (fchown(fd, uid, gid) != 0) {
        throw Error(what + ": cannot chown to " + std::to_string(uid) + ":" + std::to_string(gid) +
                    ": " + errno_text(errno));
    }
    if (fchmod(fd, 0600) != 0) {
        throw Error(what + ": cannot chmod 0600: " + errno_text(errno));
    }
}

}  // namespace

void create_overlay(const std::string &base, const std::string &base_format,
                    const std::string &overlay_path, uint32_t owner_uid, uint32_t owner_gid,
                    std::chrono::milliseconds timeout) {
    const std::string what = "cannot create overlay " + overlay_path + " on base " + base;
    if (overlay_path.empty() || overlay_path[0] != '/') {
        throw Error(what + ": the overlay path must be absolute");
    }
    if (base.empty() || base[0] != '/') {
        throw Error(what + ": the base path must be absolute");
    }
    if (base_format.empty() || base_format.find_first_of(",= ") != std::string::npos) {
        throw Error(what + ": invalid base format '" + base_format + "'");
    }
    const std::string qemu_img = find_program("qemu-img");

    // Created here, exclusively and already 0600, so the disk is never readable by others, and
    // a leftover or a running VM's disk is never overwritten. qemu-img create reuses the file.
    UniqueFd created(
        open(overlay_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (created.get() < 0) {
        int err = errno;
        if (err == EEXIST) {
            throw Error(what + ": the overlay already exists");
        }
        throw Error(what + ": " + (err == ENOSPC ? "no space left on device" : errno_text(err)));
    }

    ProcessResult r;
    try {
        r = run_process(
            {qemu_img, "create", "-q", "-f", "qcow2", "-F", base_format, "-b", base, overlay_path},
            timeout);
    } catch (const Error &e) {
        unlink(overlay_path.c_str());
        throw Error(what + ": " + e.what());
    }
    if (r.timed_out || r.status != 0) {
        unlink(overlay_path.c_str());
        std::string reason;
        if (r.timed_out) {
            reason = "qemu-img did not finish within " + std::to_string(timeout.count()) + " ms";
        } else if (mentions_no_space(r.err)) {
            reason = "no space left on device (" + first_line(r.err) + ")";
        } else if (!r.err.empty()) {
            reason = first_line(r.err);
        } else {
            reason = "qemu-img exited with status " + std::to_string(r.status);
        }
        throw Error(what + ": " + reason);
    }

    // Reopened by name, in case qemu-img replaced the file instead of reusing it.
    UniqueFd overlay(open(overlay_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (overlay.get() < 0) {
        int err = errno;
        unlink(overlay_path.c_str());
        throw Error(what + ": cannot open it after qemu-img: " + errno_text(err));
    }
    try {
        set_owner_and_mode(overlay.get(), owner_uid, owner_gid, what);
    } catch (...) {
        unlink(overlay_path.c_str());
        throw;
    }
}

void copy_uefi_vars(const std::string &template_path, const std::string &dest, uint32_t uid,
                    uint32_t gid) {
    constexpr std::streamoff max_size = 64 << 20;  // OVMF's are 128 KiB to 4 MiB
    std::ifstream in(template_path, std::ios::binary);
    std::string bytes;
    if (in) {
        in.seekg(0, std::ios::end);
        const std::streamoff size = in.tellg();
        if (size > 0 && size <= max_size) {
            bytes.resize(static_cast<std::size_t>(size));
            in.seekg(0);
            in.read(bytes.data(), size);
        }
    }
    if (!in || bytes.empty()) {
        throw Error("the UEFI variable store template " + template_path + " cannot be read");
    }
    // The state folder is root's: nobody else can put a link where dest goes.
    write_file_atomically(dest, bytes, 0600);
    if (chown(dest.c_str(), uid, gid) != 0) {
        throw Error("cannot hand " + dest + " to uid " + std::to_string(uid) + ": " +
                    errno_text(errno));
    }
}

}  // namespace svm
