#include "util/accounts.h"

#include "util/error.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace svm {

namespace {

// NSS answers that need more than this are broken; give up rather than grow forever.
constexpr std::size_t kMaxNssBuffer = 16 << 20;
constexpr std::size_t kMaxGroups = 65536;  // NGROUPS_MAX on Linux

std::vector<char> nss_buffer(int sysconf_name) {
    const long hint = sysconf(sysconf_name);
    return std::vector<char>(hint > 0 ? static_cast<std::size_t>(hint) : 16384);
}

}  // namespace

namespace {

// getpwuid_r or getpwnam_r, with a buffer that grows as the answer needs.
template <typename Lookup>
std::optional<UserEntry> find_user_with(Lookup lookup) {
    std::vector<char> buf = nss_buffer(_SC_GETPW_R_SIZE_MAX);
    passwd entry{};
    passwd *found = nullptr;
    int rc;
    while ((rc = lookup(&entry, buf.data(), buf.size(), &found)) == ERANGE &&
           buf.size() < kMaxNssBuffer) {
        buf.resize(buf.size() * 2);
    }
    if (rc != 0) {
        throw Error(errno_text(rc));
    }
    if (found == nullptr) {
        return std::nullopt;
    }
    return UserEntry{entry.pw_name, entry.pw_uid, entry.pw_gid,
                     entry.pw_dir != nullptr ? entry.pw_dir : ""};
}

}  // namespace

std::optional<UserEntry> find_user(uid_t uid) {
    return find_user_with([uid](passwd *entry, char *buf, std::size_t size, passwd **found) {
        return getpwuid_r(uid, entry, buf, size, found);
    });
}

std::optional<UserEntry> find_user_named(const std::string &name) {
    return find_user_with([&name](passwd *entry, char *buf, std::size_t size, passwd **found) {
        return getpwnam_r(name.c_str(), entry, buf, size, found);
    });
}

std::vector<gid_t> group_ids(const std::string &user, gid_t gid) {
    std::vector<gid_t> gids(64);
    while (true) {
        int count = static_cast<int>(gids.size());
        if (getgrouplist(user.c_str(), gid, gids.data(), &count) >= 0) {
            gids.resize(static_cast<std::size_t>(count));
            return gids;
        }
        if (gids.size() > kMaxGroups) {
            throw Error("cannot list the groups of user '" + user + "'");
        }
        // glibc reports the needed size in count.
        gids.resize(std::max(static_cast<std::size_t>(count), gids.size() * 2));
    }
}

std::optional<std::string> find_group_name(gid_t gid) {
    std::vector<char> buf = nss_buffer(_SC_GETGR_R_SIZE_MAX);
    group entry{};
    group *found = nullptr;
    int rc;
    while ((rc = getgrgid_r(gid, &entry, buf.data(), buf.size(), &found)) == ERANGE &&
           buf.size() < kMaxNssBuffer) {
        buf.resize(buf.size() * 2);
    }
    if (rc != 0 || found == nullptr) {
        return std::nullopt;
    }
    return std::string(entry.gr_name);
}

}  // namespace svm
