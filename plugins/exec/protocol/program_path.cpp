#include "exec/protocol/program_path.h"

namespace svm::protocol {

std::string task_program_path(std::string_view name, std::string_view path_env,
                              std::string_view cwd,
                              const std::function<bool(const std::string &)> &is_file) {
    if (name.empty() || name[0] == '/') {
        return std::string(name);
    }
    if (name[0] == '.') {
        return std::string(cwd) + "/" + std::string(name);
    }
    std::size_t start = 0;
    while (start <= path_env.size()) {
        std::size_t end = path_env.find(':', start);
        if (end == std::string_view::npos) {
            end = path_env.size();
        }
        if (end > start) {
            std::string candidate =
                std::string(path_env.substr(start, end - start)) + "/" + std::string(name);
            if (is_file(candidate)) {
                return candidate;
            }
        }
        start = end + 1;
    }
    return std::string(name);
}

}  // namespace svm::protocol
