/* The Slurm release seam (docs/architecture.md, "The Slurm release seam"): a job's CPUs on one
 * node, for the prolog that sizes its VM. Slurm 22.05 has an API call for it; 24.11 removed it
 * and leaves only the fields of job_resources_t, which its source alone declares. Each release
 * folder implements this (slurm_api/<release>/job_cpus.c). */
#pragma once

#include <slurm/slurm.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The CPUs that `resources` (a job's job_resrcs from slurm_load_job) holds on `node`: *count,
 * and in `ids` their Slurm (abstract) ids as a list, "0-1,4", cut to ids_size - 1 bytes. A node
 * the job has no CPUs on gives 0 and "". Returns 0, or -1 when `resources` cannot say. */
int svm_job_cpus_on_node(job_resources_t *resources, const char *node, unsigned *count, char *ids,
                         size_t ids_size);

#ifdef __cplusplus
}
#endif
