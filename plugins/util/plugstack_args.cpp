#include "util/plugstack_args.h"

#include <glob.h>

#include <fstream>
#include <sstream>

namespace svm {

std::vector<std::string> plugstack_args(const std::string &file) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line.substr(0, line.find('#')));
        std::string first, path;
        words >> first;
        if (first == "include") {
            words >> path;
            glob_t g{};
            if (glob(path.c_str(), 0, nullptr, &g) == 0) {
                for (size_t i = 0; i < g.gl_pathc; ++i) {
                    auto args = plugstack_args(g.gl_pathv[i]);
                    if (!args.empty()) {
                        globfree(&g);
                        return args;
                    }
                }
            }
            globfree(&g);
        } else if (first == "required" || first == "optional") {
            words >> path;
            if (path.find("spank_slurm_vm.so") != std::string::npos) {
                std::vector<std::string> args;
                for (std::string w; words >> w;) {
                    args.push_back(w);
                }
                return args.empty() ? std::vector<std::string>{"catalog=/etc/slurm/vm-images.json"}
                                    : args;
            }
        }
    }
    return {};
}

}  // namespace svm
