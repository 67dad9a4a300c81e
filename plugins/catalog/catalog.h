// The admin's image catalog: which images exist, how they boot, how big their VMs may be and who
// may use them. Users only ever name an image; every path comes from here, because a
// user-supplied image would mean root in the guest on a shared host.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

struct ImageLimits {
    unsigned default_vcpus = 1;
    unsigned max_vcpus = 256;
    uint64_t default_memory_mib = 512;
    uint64_t max_memory_mib = 1048576;
};

// Each list restricts one dimension; an empty list places no restriction on it.
struct ImageAccess {
    std::vector<std::string> users;
    std::vector<std::string> groups;
    std::vector<std::string> accounts;
};

struct Image {
    std::string name;
    std::string description;
    std::string kernel;  // direct kernel boot when set
    std::string initrd;
    std::string cmdline;
    std::string disk;  // base disk; the job gets a copy-on-write overlay on it
    std::string disk_format = "qcow2";
    ImageLimits limits;
    unsigned ready_timeout = 0;  // seconds; 0 means the plugin's configured default
    ImageAccess access;
    // "user" (outbound network through user-mode NAT), "none", or "" for the plugstack's
    // network= default.
    std::string network;
    // How a disk boots without a kernel: "bios" (SeaBIOS, the default) or "uefi" (OVMF, the
    // plugstack's uefi_code and uefi_vars; no Secure Boot).
    std::string firmware = "bios";
    // How the shared folders reach the guest: "9p", "virtiofs" (for kernels without 9p), or
    // "" for the plugstack's share= default.
    std::string share;
    // Whether jobs may start from a snapshot of this image's booted guest (vm/warm_start.h).
    // false for images whose guest must boot for each job.
    bool warm_start = true;
};

class Catalog {
  public:
    // Throws Error with a one-line message naming the file, the entry and the field. Unknown
    // fields are errors too: a misspelt "acess" must not silently open an image to everyone.
    static Catalog load(const std::string &path);
    // As load(), for text already in memory; `origin` names it in messages.
    static Catalog parse(const std::string &json_text, const std::string &origin);

    const Image *find(std::string_view name) const;
    const std::vector<Image> &images() const { return images_; }

  private:
    std::vector<Image> images_;
};

struct UserIdentity {
    std::string user;
    std::vector<std::string> groups;
    std::string account;  // empty: not known yet (e.g. at submit, before the default account)
};

// True when the identity matches every restricted dimension of the image's access lists.
bool may_use(const Image &image, const UserIdentity &who);

// Names of the images `who` may use, sorted: the alternatives offered in refusal messages.
std::vector<std::string> usable_images(const Catalog &catalog, const UserIdentity &who);

// "" when `who` may use the requested image, else the one-line reason shown to the user: an
// invalid name, an image not in the catalog, or one the user may not use, followed by the images
// the user may use.
std::string image_refusal(const Catalog &catalog, std::string_view requested,
                          const UserIdentity &who);

// As image_refusal, where the job is about to run (the prolog): the account must be known by
// then, so an image restricted to accounts refuses a `who` whose account is empty, with
// `account_problem` (why it could not be learnt) in the reason.
std::string image_refusal_at_start(const Catalog &catalog, std::string_view requested,
                                   const UserIdentity &who, const std::string &account_problem);

// The user name and group names of `uid` from the system's user database (NSS). Throws Error
// when the uid is unknown. `account` is copied as is.
UserIdentity identity_of_uid(uid_t uid, std::string account);

}  // namespace svm
