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
/* slurmctld, at a node's registration: `node` (NULL when unknown) is remembered to have reported
 * `new_features`. */
char *svm_nf_node_xlate(const char *new_features, const char *orig_features, const char *node);
bool svm_nf_changeable_feature(const char *feature);
/* The catalog the plugin reads, xmalloc'd. */
char *svm_nf_catalog_path(void);

/* slurmctld, at its start (select/node_features_table.c): every node's features with the image
 * features it last reported, until it registers again (catalog/image_features.h). */
void svm_nf_restore_node_table(void);
/* slurmctld's StateSaveLocation, where the body keeps what each node last reported. */
const char *svm_nf_state_save_location(void);
/* The name of the node at `node_inx` in slurmctld's table, or NULL. */
const char *svm_nf_node_name_at(int node_inx);
/* For the above, from the body: reads what slurmctld last knew (false: nothing), then, per node,
 * `features` with the node's image features given back, xmalloc'd, or NULL to keep them. */
bool svm_nf_load_known_features(void);
char *svm_nf_restored_features(const char *node, const char *features);

/* slurmctld, Slurm 23.11 and later, at a node's registration (select/node_features_table.c):
 * the node's active features lose the image features `reported` lacks. */
void svm_nf_drop_unreported_active(int node_inx, const char *reported);
/* For the above, from the body: `active` without them, xmalloc'd, or NULL to keep it. */
char *svm_nf_active_without_unreported(const char *node, const char *active,
                                       const char *reported);

/* What the body needs of slurmd: its node name (-N), or NULL where there is none (slurmctld). */
const char *svm_slurmd_node_name(void);

#ifdef __cplusplus
}
#endif
