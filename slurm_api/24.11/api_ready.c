/* Slurm 24.11: the SPANK job prolog and epilog run in `slurmstepd spank prolog|epilog`, which
 * reads slurmd's light configuration and loads neither the auth nor the hash plugins (23.02
 * added message hashes); slurm_load_job there ends in fatal("No hash plugins loaded"), which
 * fails the prolog and drains the node. Both loaders return at once where already loaded
 * (slurmd, slurmstepd). The node module runs only in those processes, whose libslurmfull has
 * the two functions. */
#include "config.h"

#include "slurm/slurm.h"
#include "src/common/slurm_xlator.h"

#include "src/interfaces/auth.h"
#include "src/interfaces/hash.h"

#include "slurm_api/api_ready.h"

int svm_slurm_api_ready(void) {
    if (auth_g_init() != SLURM_SUCCESS || hash_g_init() != SLURM_SUCCESS) {
        return -1;
    }
    return 0;
}
