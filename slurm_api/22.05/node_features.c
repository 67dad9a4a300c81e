/* Slurm 22.05: every operation node_features/slurm_vm must offer (src/common/node_features.c).
 * Images are features that never need a reboot: most operations have nothing to do. */
#include "config.h"

#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "src/common/slurm_xlator.h"

#include "src/common/bitstring.h"
#include "src/common/list.h"
#include "src/common/node_conf.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"
#include "src/slurmd/slurmd/slurmd.h"

#include "slurm_api/node_features_api.h"

#include <dlfcn.h>

extern const char plugin_type[];

/* Looked up at run time: slurmctld loads this plugin too and has no `conf`, and a direct
 * reference would make the plugin fail to load there. */
const char *svm_slurmd_node_name(void) {
    void *symbol = dlsym(RTLD_DEFAULT, "conf");
    if (symbol == NULL) {
        return NULL;
    }
    const slurmd_conf_t *slurmd_conf = *(slurmd_conf_t **)symbol;
    return slurmd_conf != NULL ? slurmd_conf->node_name : NULL;
}

/* slurmd, at registration: the images on this node. */
void node_features_p_node_state(char **avail_modes, char **current_mode) {
    svm_nf_node_state(avail_modes, current_mode);
}

/* slurmctld: the node's report merged into its features from slurm.conf. */
char *node_features_p_node_xlate(char *new_features, char *orig_features, char *avail_features,
                                 int node_inx) {
    (void)avail_features;
    return svm_nf_node_xlate(new_features, orig_features, svm_nf_node_name_at(node_inx));
}

char *node_features_p_node_xlate2(char *new_features) {
    return xstrdup(new_features);
}

bool node_features_p_changeable_feature(char *feature) {
    return svm_nf_changeable_feature(feature);
}

/* job_submit/slurm_vm judges image constraints, with a message. */
int node_features_p_job_valid(char *job_features) {
    (void)job_features;
    return SLURM_SUCCESS;
}

/* No feature of ours ever needs a reboot to become active. */
char *node_features_p_job_xlate(char *job_features) {
    (void)job_features;
    return NULL;
}

bitstr_t *node_features_p_get_node_bitmap(void) {
    return node_conf_get_active_bitmap();
}

/* Reservations never wait for a node to boot into an image. */
int node_features_p_overlap(bitstr_t *active_bitmap) {
    (void)active_bitmap;
    return 0;
}

bool node_features_p_node_power(void) {
    return false;
}

int node_features_p_node_set(char *active_features) {
    (void)active_features;
    return SLURM_SUCCESS;
}

int node_features_p_node_update(char *active_features, bitstr_t *node_bitmap) {
    (void)active_features;
    (void)node_bitmap;
    return SLURM_SUCCESS;
}

bool node_features_p_node_update_valid(void *node_ptr, update_node_msg_t *update_node_msg) {
    (void)node_ptr;
    (void)update_node_msg;
    return true;
}

void node_features_p_step_config(bool mem_sort, bitstr_t *numa_bitmap) {
    (void)mem_sort;
    (void)numa_bitmap;
}

uint32_t node_features_p_reboot_weight(void) {
    return INFINITE - 1;
}

uint32_t node_features_p_boot_time(void) {
    return 0;
}

/* Nothing cached: the catalog is read at every registration. */
int node_features_p_reconfig(void) {
    return SLURM_SUCCESS;
}

/* Never reboot a node to switch images. */
bool node_features_p_user_update(uid_t uid) {
    (void)uid;
    return false;
}

/* slurmctld: NULL at its start, when a new slurmctld knows only slurm.conf's features; a node's
 * own report replaces what is given back here when it registers. */
int node_features_p_get_node(char *node_list) {
    if (node_list == NULL) {
        svm_nf_restore_node_table();
    }
    return SLURM_SUCCESS;
}

void node_features_p_get_config(config_plugin_params_t *p) {
    xstrcat(p->name, plugin_type);
    config_key_pair_t *pair = xmalloc(sizeof(config_key_pair_t));
    pair->name = xstrdup("Catalog");
    pair->value = svm_nf_catalog_path();
    list_append(p->key_pairs, pair);
}

#include "node_features_interface.h"
