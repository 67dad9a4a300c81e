#include "command_links.h"

#include "util/error.h"

#include <cerrno>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace svm::agent {

void make_directories(const std::string &path) {
    std::string partial;
    std::stringstream parts(path);
    std::string part;
    while (std::getline(parts, part, '/')) {
        if (part.empty()) {
            continue;
        }
        partial += "/" + part;
        if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
            throw Error("mkdir " + partial + ": " + errno_text(errno));
        }
    }
}

std::vector<std::string> link_host_commands(const std::vector<std::string> &paths,
                                            const std::string &target, const std::string &root) {
    std::vector<std::string> problems;
    for (const std::string &path : paths) {
        const std::string where = root + path;
        struct stat st {};
        if (::lstat(where.c_str(), &st) == 0) {
            continue;
        }
        try {
            make_directories(where.substr(0, where.rfind('/')));
            if (::symlink(target.c_str(), where.c_str()) != 0 && errno != EEXIST) {
                throw Error("symlink " + where + ": " + errno_text(errno));
            }
        } catch (const Error &e) {
            problems.push_back(e.what());
        }
    }
    return problems;
}

}  // namespace svm::agent
