// sbatch, srun, salloc: the user is still watching, so a bad --vm-image fails the command
// here with one line, before anything is queued.
#include "spank_common.h"

#include "catalog/catalog.h"
#include "util/error.h"
#include "catalog/image_name.h"

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace svm::spank {

int on_submit_init_post_opt(spank_t sp) {
    std::string image = option_value();
    if (image.empty()) {
        const char *env = getenv(kImageEnv);
        if (env == nullptr || *env == '\0') {
            return 0;
        }
        image = env;
        const std::string problem = image_name_problem(image);
        if (!problem.empty()) {
            slurm_error("%s: %s=%s: image name is invalid: %s", kTag, kImageEnv, image.c_str(),
                        problem.c_str());
            return -1;
        }
    }
    // The catalog is normally readable on submit hosts; where it is not, slurmctld's
    // job_submit plugin and the prolog still check.
    if (access(config().catalog.c_str(), R_OK) == 0) {
        const Catalog catalog = Catalog::load(config().catalog);
        const std::string refusal = image_refusal(catalog, image, identity_of_uid(getuid(), ""));
        if (!refusal.empty()) {
            slurm_error("%s: %s", kTag, refusal.c_str());
            return -1;
        }
    }
    // The prolog and epilog see this as SPANK_SLURM_VM_IMAGE, whichever form the user used.
    if (spank_job_control_setenv(sp, kImageEnv, image.c_str(), 1) != ESPANK_SUCCESS) {
        slurm_debug("%s: cannot pass %s to the job's prolog", kTag, kImageEnv);
    }
    return 0;
}

}  // namespace svm::spank
