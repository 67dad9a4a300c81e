// What both of the plugin's modules need: the option, the plugstack arguments, the requested
// image. Compiled into spank_slurm_vm.so and slurm_vm_node.so alike (each has its own copy).
#include "spank_common.h"

#include "catalog/image_name.h"

#include <cstdlib>
#include <string>

namespace svm::spank {

namespace {

int on_option(int, const char *optarg, int remote) {
    const std::string value = optarg != nullptr ? optarg : "";
    const std::string problem = image_name_problem(value);
    if (!problem.empty()) {
        if (!remote) {
            slurm_error("%s: --vm-image=%s: image name is invalid: %s", kTag, value.c_str(),
                        problem.c_str());
        }
        return -1;
    }
    if (!option_value().empty() && option_value() != value) {
        slurm_error("%s: --vm-image given twice with different values ('%s' and '%s')", kTag,
                    option_value().c_str(), value.c_str());
        return -1;
    }
    option_value() = value;
    return 0;
}

struct spank_option g_image_option = {
    const_cast<char *>("vm-image"),
    const_cast<char *>("NAME"),
    const_cast<char *>("slurm-vm: run the job inside a virtual machine booted from catalog "
                       "image NAME (environment: SLURM_VM_IMAGE)"),
    1,
    0,
    on_option};

}  // namespace

std::optional<Config> &config_slot() {
    static std::optional<Config> config;
    return config;
}

Config &config() {
    return *config_slot();
}

std::string &option_value() {
    static std::string value;
    return value;
}

struct spank_option *image_option() {
    return &g_image_option;
}

std::string requested_image(spank_t sp) {
    char *value = nullptr;
    if (spank_option_getopt(sp, image_option(), &value) == ESPANK_SUCCESS && value != nullptr &&
        *value != '\0') {
        return value;
    }
    // Set by the submit side (spank_job_control_setenv) when the environment twin was used.
    if (const char *env = getenv("SPANK_"
                                 "SLURM_VM_IMAGE");
        env != nullptr) {
        return env;
    }
    char buf[256];
    if (spank_getenv(sp, kImageEnv, buf, sizeof buf) == ESPANK_SUCCESS) {
        return buf;
    }
    return "";
}

}  // namespace svm::spank
