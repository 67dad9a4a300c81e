/* Slurm 24.11: a job's CPUs on a node. 24.11 removed slurm_job_cpus_allocated_on_node() and
 * slurm_job_cpus_allocated_str_on_node() (SchedMD commit 9b2184b31e, "Remove unused api
 * calls"); this is their 22.05 code over the same fields of job_resources_t, which only Slurm's
 * source declares, so the node module is built against the configured source of exactly the
 * installed Slurm. Like 22.05's (whose node table was never loaded in our processes), the ids
 * count one per core: Slurm's abstract ids with one thread per core (see util/cpu_topology.h). */
#include "config.h"

#include "slurm/slurm.h"
#include "src/common/slurm_xlator.h"

#include "src/common/bitstring.h"
#include "src/common/job_resources.h"

#include "slurm_api/job_cpus.h"

#include <stdio.h>

/* The node's place among the job's nodes, or -1. */
static int node_index(job_resources_t *resources, const char *node) {
    hostlist_t *hosts = hostlist_create(resources->nodes);
    if (hosts == NULL) {
        return -1;
    }
    const int index = hostlist_find(hosts, node);
    hostlist_destroy(hosts);
    return index;
}

/* cpu_array_value repeats for cpu_array_reps consecutive nodes. */
static unsigned cpus_on(job_resources_t *resources, int index) {
    int last = -1;
    for (uint32_t i = 0; i < resources->cpu_array_cnt; ++i) {
        last += (int)resources->cpu_array_reps[i];
        if (last >= index) {
            return resources->cpu_array_value[i];
        }
    }
    return 0;
}

/* Appends "a" or "a-b" (with a comma before all but the first) while there is room. */
static void append_range(char *ids, size_t ids_size, size_t *used, unsigned first, unsigned last) {
    char item[32];
    const int n = first == last
                      ? snprintf(item, sizeof item, "%s%u", *used ? "," : "", first)
                      : snprintf(item, sizeof item, "%s%u-%u", *used ? "," : "", first, last);
    if (n > 0 && *used + (size_t)n < ids_size) {
        snprintf(ids + *used, ids_size - *used, "%s", item);
        *used += (size_t)n;
    }
}

/* The job's cores on the node: the node's stretch of core_bitmap, whose length is the node's
 * sockets times cores per socket (sock_core_rep_count says for how many nodes in a row). */
static void format_ids(job_resources_t *resources, int index, char *ids, size_t ids_size) {
    if (resources->core_bitmap == NULL || resources->sock_core_rep_count == NULL ||
        resources->sockets_per_node == NULL || resources->cores_per_socket == NULL) {
        return;
    }
    bitoff_t bit = 0;
    uint32_t remaining = (uint32_t)index + 1;
    uint32_t i = 0;
    for (;; ++i) {
        if (i >= resources->nhosts) {
            return; /* the counts do not add up to the node: no ids rather than wrong ones */
        }
        const bitoff_t per_node =
            (bitoff_t)resources->sockets_per_node[i] * resources->cores_per_socket[i];
        if (remaining > resources->sock_core_rep_count[i]) {
            bit += per_node * resources->sock_core_rep_count[i];
            remaining -= resources->sock_core_rep_count[i];
        } else {
            bit += per_node * (remaining - 1);
            break;
        }
    }
    const bitoff_t cores =
        (bitoff_t)resources->sockets_per_node[i] * resources->cores_per_socket[i];
    const bitoff_t size = bit_size(resources->core_bitmap);
    size_t used = 0;
    long first = -1;
    for (bitoff_t core = 0; core <= cores; ++core) {
        const int set =
            core < cores && bit + core < size && bit_test(resources->core_bitmap, bit + core);
        if (set && first < 0) {
            first = core;
        } else if (!set && first >= 0) {
            append_range(ids, ids_size, &used, (unsigned)first, (unsigned)(core - 1));
            first = -1;
        }
    }
}

int svm_job_cpus_on_node(job_resources_t *resources, const char *node, unsigned *count, char *ids,
                         size_t ids_size) {
    *count = 0;
    if (ids_size > 0) {
        ids[0] = '\0';
    }
    if (resources == NULL || resources->nodes == NULL || node == NULL) {
        return -1;
    }
    const int index = node_index(resources, node);
    if (index < 0) {
        return 0;
    }
    *count = cpus_on(resources, index);
    if (*count > 0) {
        format_ids(resources, index, ids, ids_size);
    }
    return 0;
}
