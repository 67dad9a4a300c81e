#include "util/atomic_file.h"

#include "util/error.h"
#include "util/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace svm {

namespace {

std::string parent_of(const std::string &path) {
    const auto slash = path.rfind('/');
    if (slash == std::string::npos) {
        return ".";
    }
    return slash == 0 ? "/" : path.substr(0, slash);
}

void write_all_or_throw(int fd, std::string_view data, const std::string &what) {
    while (!data.empty()) {
        const ssize_t n = write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw Error("cannot write " + what + ": " + errno_text(errno));
        }
        data.remove_prefix(static_cast<size_t>(n));
    }
}

}  // namespace

void write_file_atomically(const std::string &path, std::string_view content, mode_t mode) {
    const std::string tmp = parent_of(path) + "/." + path.substr(path.rfind('/') + 1) + ".tmp." +
                            std::to_string(getpid());
    try {
        UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode));
        if (!fd) {
            throw Error("cannot write " + path + ": " + errno_text(errno));
        }
        write_all_or_throw(fd.get(), content, path);
        if (fsync(fd.get()) != 0) {
            throw Error("cannot write " + path + ": fsync: " + errno_text(errno));
        }
        fd.reset();
        if (rename(tmp.c_str(), path.c_str()) != 0) {
            throw Error("cannot write " + path + ": rename: " + errno_text(errno));
        }
    } catch (const Error &) {
        unlink(tmp.c_str());
        throw;
    }
    // Without this the rename itself may be lost in a crash.
    UniqueFd dir(open(parent_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) {
        fsync(dir.get());
    }
}

std::string read_whole_file(const std::string &path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        throw Error("cannot read " + path + ": " + errno_text(errno));
    }
    std::string content;
    char buf[8192];
    for (;;) {
        const ssize_t n = read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw Error("cannot read " + path + ": " + errno_text(errno));
        }
        if (n == 0) {
            return content;
        }
        content.append(buf, static_cast<size_t>(n));
    }
}

}  // namespace svm
