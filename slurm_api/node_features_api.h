/* The Slurm release seam (docs/architecture.md, "The Slurm release seam") for
 * node_features/slurm_vm. Each release's node_features.c defines every operation Slurm looks
 * up, with that release's signatures (checked at build time against Slurm's own source): the
 * ones that do nothing for images there, the others over the body in
 * select/node_features_slurm_vm.cpp. */
#pragma once

#include <slurm/slurm.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The body. */
void svm_nf_node_state(char **avail_modes, char **current_mode);
char *svm_nf_node_xlate(const char *new_features, const char *orig_features);
bool svm_nf_changeable_feature(const char *feature);
/* The catalog the plugin reads, xmalloc'd. */
char *svm_nf_catalog_path(void);

/* What the body needs of slurmd: its node name (-N), or NULL where there is none (slurmctld). */
const char *svm_slurmd_node_name(void);

#ifdef __cplusplus
}
#endif
