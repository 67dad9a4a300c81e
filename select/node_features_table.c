/* node_features/slurm_vm in slurmctld: the node table, the same on every Slurm release this
 * builds against (next_node(), a node record's name, features and features_act). */
#include "config.h"

#include "slurm/slurm.h"
#include "src/common/slurm_xlator.h"

#include "src/common/bitstring.h"
#include "src/common/list.h"
#include "src/common/node_conf.h"
#include "src/common/read_config.h"
#include "src/common/xmalloc.h"

#include "slurm_api/node_features_api.h"

#include <stddef.h>

const char *svm_nf_state_save_location(void) {
    return slurm_conf.state_save_location;
}

const char *svm_nf_node_name_at(int node_inx) {
    if (node_inx < 0 || node_inx >= node_record_count || node_record_table_ptr == NULL ||
        node_record_table_ptr[node_inx] == NULL) {
        return NULL;
    }
    return node_record_table_ptr[node_inx]->name;
}

static void restore(const char *node, char **features) {
    char *restored = svm_nf_restored_features(node, *features);
    if (restored != NULL) {
        xfree(*features);
        *features = restored;
    }
}

void svm_nf_restore_node_table(void) {
    node_record_t *node_ptr;
    if (!svm_nf_load_known_features()) {
        return;
    }
    for (int i = 0; (node_ptr = next_node(&i)); i++) {
        restore(node_ptr->name, &node_ptr->features);
        restore(node_ptr->name, &node_ptr->features_act);
    }
}

void svm_nf_drop_unreported_active(int node_inx, const char *reported) {
    if (node_inx < 0 || node_inx >= node_record_count || node_record_table_ptr == NULL ||
        node_record_table_ptr[node_inx] == NULL) {
        return;
    }
    node_record_t *node_ptr = node_record_table_ptr[node_inx];
    char *kept = svm_nf_active_without_unreported(node_ptr->name, node_ptr->features_act, reported);
    if (kept != NULL) {
        xfree(node_ptr->features_act);
        node_ptr->features_act = kept;
    }
}
