#include "util/safe_fs.h"

#include "util/error.h"
#include "util/fd.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

namespace svm {

namespace {

// Empties the folder open as `dirfd` (named `where` in messages), depth first.
void empty_folder(int dirfd, const std::string &where, int depth) {
    if (depth > 64) {
        throw Error("cannot remove " + where + ": folders nested too deep");
    }
    // fdopendir takes the descriptor it is given: hand it a duplicate.
    const int dup_fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) {
        throw Error("cannot read " + where + ": " + errno_text(errno));
    }
    DIR *dir = fdopendir(dup_fd);
    if (dir == nullptr) {
        const int err = errno;
        close(dup_fd);
        throw Error("cannot read " + where + ": " + errno_text(err));
    }
    std::vector<std::string> names;
    while (const dirent *e = readdir(dir)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") {
            names.push_back(n);
        }
    }
    closedir(dir);
    for (const auto &n : names) {
        if (unlinkat(dirfd, n.c_str(), 0) == 0 || errno == ENOENT) {
            continue;
        }
        if (errno != EISDIR && errno != EPERM) {
            throw Error("cannot remove " + where + "/" + n + ": " + errno_text(errno));
        }
        // A folder: open it without following a link that may have replaced it since.
        UniqueFd sub(openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) {
            throw Error("cannot remove " + where + "/" + n + ": " + errno_text(errno));
        }
        empty_folder(sub.get(), where + "/" + n, depth + 1);
        if (unlinkat(dirfd, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
            throw Error("cannot remove " + where + "/" + n + ": " + errno_text(errno));
        }
    }
}

std::string parent_of(const std::string &path) {
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string &path) {
    const auto slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

bool is_traversable_directory(const std::string &path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) &&
           ::access(path.c_str(), X_OK) == 0;
}

void remove_tree(const std::string &path) {
    // The parent is root's (run_dir, state_dir/jobs): only the last component can be the
    // user's, and it is opened relative to the parent without following a link.
    UniqueFd parent(open(parent_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!parent) {
        if (errno == ENOENT) {
            return;
        }
        throw Error("cannot remove " + path + ": " + errno_text(errno));
    }
    const std::string name = base_of(path);
    if (unlinkat(parent.get(), name.c_str(), 0) == 0 || errno == ENOENT) {
        return;  // a file or a link: gone, target untouched
    }
    UniqueFd dir(
        openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) {
        if (errno == ENOENT) {
            return;
        }
        throw Error("cannot remove " + path + ": " + errno_text(errno));
    }
    empty_folder(dir.get(), path, 0);
    if (unlinkat(parent.get(), name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        throw Error("cannot remove " + path + ": " + errno_text(errno));
    }
}

namespace {

// `name` in `dir`, opened O_PATH without following a link, after checking that it is a socket:
// the folder's descriptor, the socket's, and the socket's stat. `doing` ends the refusal.
struct OpenedSocket {
    UniqueFd dir, fd;
    struct stat st {};
};

OpenedSocket open_socket_in(const std::string &dir, const std::string &name, const char *doing) {
    const std::string path = dir + "/" + name;
    OpenedSocket s;
    s.dir = UniqueFd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!s.dir) {
        throw Error("cannot open " + dir + ": " + errno_text(errno));
    }
    s.fd = UniqueFd(openat(s.dir.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!s.fd) {
        throw Error("cannot open " + path + ": " + errno_text(errno));
    }
    if (fstat(s.fd.get(), &s.st) != 0) {
        throw Error("cannot look at " + path + ": " + errno_text(errno));
    }
    if (!S_ISSOCK(s.st.st_mode)) {
        throw Error(path + " is not a socket (" +
                    (S_ISLNK(s.st.st_mode) ? std::string("a symbolic link") : "another file type") +
                    "): refusing to " + doing);
    }
    return s;
}

}  // namespace

void hand_over_socket(const std::string &dir, const std::string &name, uid_t expected_owner,
                      uid_t uid, gid_t gid) {
    const std::string path = dir + "/" + name;
    const OpenedSocket s = open_socket_in(dir, name, "hand it over");
    if (s.st.st_uid != expected_owner) {
        throw Error(path + " is owned by uid " + std::to_string(s.st.st_uid) + ", not uid " +
                    std::to_string(expected_owner) + ": refusing to hand it over");
    }
    if (fchownat(s.fd.get(), "", uid, gid, AT_EMPTY_PATH) != 0) {
        throw Error("cannot give " + path + " to uid " + std::to_string(uid) + ": " +
                    errno_text(errno));
    }
    // fchmod does not take an O_PATH descriptor; its /proc link names this very inode.
    const std::string self = "/proc/self/fd/" + std::to_string(s.fd.get());
    if (chmod(self.c_str(), 0600) != 0) {
        throw Error("cannot make " + path + " private: " + errno_text(errno));
    }
}

UniqueFd open_owned_socket(const std::string &dir, const std::string &name) {
    const std::string path = dir + "/" + name;
    OpenedSocket s = open_socket_in(dir, name, "connect to it");
    struct stat dst {};
    if (fstat(s.dir.get(), &dst) != 0) {
        throw Error("cannot look at " + dir + ": " + errno_text(errno));
    }
    // In a folder only root can write to, whatever is there root put there (the channel
    // sockets root handed to the job's user). Elsewhere only the folder owner's own socket.
    const bool roots_alone = dst.st_uid == 0 && (dst.st_mode & 022) == 0;
    if (!roots_alone && s.st.st_uid != dst.st_uid) {
        throw Error(path + " is owned by uid " + std::to_string(s.st.st_uid) + ", not by uid " +
                    std::to_string(dst.st_uid) + " who owns its folder: refusing to connect to it");
    }
    return std::move(s.fd);
}

void hand_over_folder(const std::string &path, uid_t uid, gid_t gid, mode_t mode) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) {
        throw Error("cannot open " + path + ": " + errno_text(errno));
    }
    if (fchown(fd.get(), uid, gid) != 0 || fchmod(fd.get(), mode) != 0) {
        throw Error("cannot give " + path + " to uid " + std::to_string(uid) + ": " +
                    errno_text(errno));
    }
}

}  // namespace svm
