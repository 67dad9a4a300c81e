// Root's file operations in folders a job's user owns or has owned. Every step works on
// descriptors (openat with O_NOFOLLOW, fchownat with AT_EMPTY_PATH), never on a path a user
// could swap for a symbolic link between a check and the use.
#pragma once

#include <sys/types.h>

#include <string>

#include "util/fd.h"

namespace svm {

// Whether `path` is a folder this process may enter (stat, then access(X_OK)).
bool is_traversable_directory(const std::string &path);

// Removes `path` and everything under it without following any symbolic link, at the top or
// inside: links are removed, never their targets. A missing path is fine. Throws Error naming
// the entry it could not remove.
void remove_tree(const std::string &path);

// Gives the unix socket `dir`/`name` to uid:gid with mode 0600, after checking, on a
// descriptor opened with O_PATH|O_NOFOLLOW, that it is a socket owned by `expected_owner`.
// Throws Error naming the entry and what it is instead.
void hand_over_socket(const std::string &dir, const std::string &name, uid_t expected_owner,
                      uid_t uid, gid_t gid);

// Root reaching a socket in a folder that may be a job's user's: opens `dir` (not a link) and
// `dir`/`name` with O_PATH|O_NOFOLLOW and checks that it is a socket, owned by the folder's
// owner unless the folder is root's and writable by root alone (then root put it there, and may
// have handed it to a user: a job VM's channel sockets). Connect through
// "/proc/self/fd/N" of the returned descriptor, which names this very inode: a link the user
// planted is refused, not followed, and a socket the owner check lets through is one the
// folder's owner made (or was given), never a socket of root's or of another user's hard-linked
// into the folder. Throws Error naming the entry and what it is instead.
UniqueFd open_owned_socket(const std::string &dir, const std::string &name);

// Gives the folder `path` (not a link) to uid:gid with `mode`, through its descriptor.
void hand_over_folder(const std::string &path, uid_t uid, gid_t gid, mode_t mode);

}  // namespace svm
