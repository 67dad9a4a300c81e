// slurm-vm SPANK plugin: --vm-image=NAME on sbatch, srun and salloc. The entry points only
// dispatch on the context and make sure nothing thrown crosses into Slurm.
#include "spank_common.h"

#include "util/error.h"
#include "catalog/image_name.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
// SPANK_PLUGIN() would give these internal linkage under C++ (const implies static), and
// Slurm finds them with dlsym: define them by hand.
extern const char plugin_name[] = "slurm_vm";
extern const char plugin_type[] = "spank";
extern const unsigned int plugin_version = SLURM_VERSION_NUMBER;
extern const unsigned int spank_plugin_version = 1;
}

namespace svm::spank {

namespace {

std::optional<Config> g_config;

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

// slurm_spank_init is not called in the prolog/epilog (job script) context, but every
// callback gets the plugstack.conf arguments: parse them on first use, wherever that is.
template <typename F>
int guarded(const char *where, int ac, char **av, F &&f) {
    try {
        if (!g_config) {
            g_config = parse_config(std::vector<std::string>(av, av + ac));
        }
        return f();
    } catch (const std::exception &e) {
        slurm_error("%s: %s: %s", kTag, where, e.what());
    } catch (...) {
        slurm_error("%s: %s: unexpected error", kTag, where);
    }
    return -1;
}

// VMs left by jobs that ended while this host was down (or slurmd was): swept when slurmd
// starts, in a detached grandchild so slurmd's start never waits on libvirt or slurmctld.
void sweep_at_slurmd_start() {
    const pid_t child = fork();
    if (child < 0) {
        slurm_error("%s: cannot fork the start-up sweep: %m", kTag);
        return;
    }
    if (child > 0) {
        waitpid(child, nullptr, 0);
        return;
    }
    if (fork() != 0) {
        _exit(0);
    }
    setsid();
    try {
        sweep_orphans("", 0);
    } catch (const std::exception &e) {
        slurm_error("%s: start-up sweep: %s", kTag, e.what());
    }
    _exit(0);
}

}  // namespace

Config &config() {
    return *g_config;
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

using namespace svm::spank;

extern "C" {

int slurm_spank_init(spank_t sp, int ac, char **av) {
    return guarded("plugstack.conf", ac, av, [&] {
        // Registered here, not through an exported table: sbatch and salloc ignore the table.
        if (spank_option_register(sp, image_option()) != ESPANK_SUCCESS) {
            slurm_error("%s: cannot register --vm-image", kTag);
            return -1;
        }
        if (spank_context() == S_CTX_SLURMD) {
            sweep_at_slurmd_start();
        }
        return 0;
    });
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av) {
    const spank_context_t ctx = spank_context();
    if (ctx != S_CTX_LOCAL && ctx != S_CTX_ALLOCATOR) {
        return 0;
    }
    return guarded("--vm-image", ac, av, [&] { return on_submit_init_post_opt(sp); });
}

int slurm_spank_local_user_init(spank_t sp, int ac, char **av) {
    return guarded("--task-prolog", ac, av, [&] { return on_local_user_init(sp); });
}

int slurm_spank_job_prolog(spank_t sp, int ac, char **av) {
    return guarded("prolog", ac, av, [&] { return on_job_prolog(sp); });
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av) {
    return guarded("epilog", ac, av, [&] { return on_job_epilog(sp); });
}

int slurm_spank_task_init(spank_t sp, int ac, char **av) {
    return guarded("task", ac, av, [&] { return on_task_init(sp); });
}

}  // extern "C"
