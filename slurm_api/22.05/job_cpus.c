/* Slurm 22.05: a job's CPUs on a node through its own API (slurm.h). */
#include "slurm_api/job_cpus.h"

#include <slurm/slurm.h>

int svm_job_cpus_on_node(job_resources_t *resources, const char *node, unsigned *count, char *ids,
                         size_t ids_size) {
    *count = 0;
    if (ids_size > 0) {
        ids[0] = '\0';
    }
    const int cpus = slurm_job_cpus_allocated_on_node(resources, node);
    if (cpus < 0) {
        return -1;
    }
    *count = (unsigned)cpus;
    /* SLURM_ERROR here means only that the node is not the job's: no ids. */
    if (cpus > 0 &&
        slurm_job_cpus_allocated_str_on_node(ids, ids_size, resources, node) != SLURM_SUCCESS &&
        ids_size > 0) {
        ids[0] = '\0';
    }
    return 0;
}
