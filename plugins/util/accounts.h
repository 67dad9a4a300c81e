// The system's user database (NSS: /etc/passwd, LDAP, sssd...), asked by uid and gid, with
// buffers that grow as the answer needs. The one place root's code looks users and groups up:
// the catalog's access rules, the job's user in the guest, virtiofsd's groups, /dev/kvm's
// owner.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace svm {

struct UserEntry {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;  // primary group
    std::string home;
};

// The user `uid`, or nullopt when the database has none. Throws Error, whose text is the
// system's reason, when the database cannot be asked.
std::optional<UserEntry> find_user(uid_t uid);

// The user called `name`, the same way (a system account such as libvirt-qemu).
std::optional<UserEntry> find_user_named(const std::string &name);

// The groups of `user` whose primary group is `gid`, as getgrouplist gives them (`gid`
// included). Throws Error when the list cannot be had (more groups than Linux allows).
std::vector<gid_t> group_ids(const std::string &user, gid_t gid);

// The name of group `gid`, or nullopt when it has none (or the database cannot be asked).
std::optional<std::string> find_group_name(gid_t gid);

}  // namespace svm
