// node_features/slurm_vm (NodeFeaturesPlugins=node_features/slurm_vm), in slurmd and slurmctld:
// each node advertises as features the catalog images present on it, "vm_<image>", both
// available and active. slurmd asks at every registration (start and `scontrol reconfigure`),
// and the catalog and the image files are looked at afresh each time, so copying an image to a
// node or removing it and reconfiguring is all an admin does. slurmctld merges the list into the
// node's features from slurm.conf, replacing only the vm_* ones.
//
// Images never need a node reboot: user_update() is false, so Slurm never plans to reboot a node
// to make an image feature active, and job_xlate() has nothing to translate.
extern "C" {
#include "config.h"
#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "src/common/slurm_xlator.h"
#include "src/common/bitstring.h"
#include "src/common/list.h"
#include "src/common/node_conf.h"
#include "src/common/read_config.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"
#include "src/slurmd/slurmd/slurmd.h"
}

#include "catalog/catalog.h"
#include "util/error.h"
#include "catalog/image_features.h"
#include "catalog/image_name.h"

#include <dlfcn.h>

#include <mutex>
#include <string>
#include <vector>

extern "C" {
// Defined by hand: as C++ consts they would have internal linkage and Slurm finds them with dlsym.
extern const char plugin_name[] = "slurm-vm node features: the VM images present on each node";
extern const char plugin_type[] = "node_features/slurm_vm";
extern const uint32_t plugin_version = SLURM_VERSION_NUMBER;
}

namespace {

std::mutex g_mutex;
std::string g_catalog_path;
std::string g_last_error;

// slurmd's node name (-N in multiple-slurmd mode). Looked up at run time: slurmctld loads this
// plugin too and has no `conf`, and a direct reference would make the plugin fail to load there.
const char *this_node_name() {
    void *symbol = dlsym(RTLD_DEFAULT, "conf");
    if (symbol == nullptr) {
        return nullptr;
    }
    const slurmd_conf_t *slurmd_conf = *static_cast<slurmd_conf_t **>(symbol);
    return slurmd_conf != nullptr ? slurmd_conf->node_name : nullptr;
}

void append(char **list, const std::string &features) {
    if (features.empty()) {
        return;
    }
    xstrfmtcat(*list, "%s%s", (*list != nullptr && **list != '\0') ? "," : "", features.c_str());
}

std::vector<std::string> split_features(const char *list) {
    std::vector<std::string> features;
    if (list == nullptr) {
        return features;
    }
    std::string item;
    for (const char *p = list;; ++p) {
        if (*p == ',' || *p == '\0') {
            if (!item.empty()) {
                features.push_back(item);
            }
            item.clear();
            if (*p == '\0') {
                return features;
            }
        } else {
            item += *p;
        }
    }
}

// Caller holds g_mutex. Logs a problem once, not at every registration.
void log_problem(const std::string &problem) {
    if (problem != g_last_error) {
        error("slurm-vm: %s; this node reports no VM images until it is fixed", problem.c_str());
        g_last_error = problem;
    }
}

std::string image_features_of_this_node() {
    std::lock_guard lock(g_mutex);
    const char *node = this_node_name();
    if (node == nullptr) {
        log_problem("node_features/slurm_vm: cannot tell this slurmd's node name");
        return "";
    }
    try {
        const svm::Catalog catalog = svm::Catalog::load(g_catalog_path);
        std::string features;
        for (const std::string &image : svm::images_present_on_node(catalog, node)) {
            features += (features.empty() ? "" : ",") + svm::image_feature(image);
        }
        g_last_error.clear();
        info("slurm-vm: node %s carries images: %s", node,
             features.empty() ? "none" : features.c_str());
        return features;
    } catch (const svm::Error &e) {
        log_problem(e.what());
    }
    return "";
}

}  // namespace

extern "C" {

int init(void) {
    try {
        std::lock_guard lock(g_mutex);
        g_catalog_path = svm::catalog_path_from_environment();
    } catch (...) {
        error("slurm-vm: %s: unexpected error at load", plugin_type);
    }
    return SLURM_SUCCESS;
}

int fini(void) {
    return SLURM_SUCCESS;
}

// slurmd, at registration.
void node_features_p_node_state(char **avail_modes, char **current_mode) {
    if (avail_modes == nullptr || current_mode == nullptr) {
        return;
    }
    try {
        const std::string features = image_features_of_this_node();
        append(avail_modes, features);
        append(current_mode, features);
    } catch (const std::exception &e) {
        error("slurm-vm: node_features: %s", e.what());
    } catch (...) {
        error("slurm-vm: node_features: unexpected error");
    }
    // An empty list rather than none: slurmctld merges only when a list arrives, and the merge
    // is what removes the feature of an image that left the node.
    if (*avail_modes == nullptr) {
        *avail_modes = xstrdup("");
    }
    if (*current_mode == nullptr) {
        *current_mode = xstrdup("");
    }
}

// slurmctld: `new_features` is what the node reported, `orig_features` what the node had,
// slurm.conf's features included.
char *node_features_p_node_xlate(char *new_features, char *orig_features, char *, int) {
    try {
        const std::string merged = svm::merge_node_features(
            orig_features != nullptr ? orig_features : "", split_features(new_features));
        return merged.empty() ? nullptr : xstrdup(merged.c_str());
    } catch (...) {
        error("slurm-vm: node_features: cannot merge '%s' into '%s'; keeping the node's features",
              new_features, orig_features);
        return xstrdup(orig_features);
    }
}

char *node_features_p_node_xlate2(char *new_features) {
    return xstrdup(new_features);
}

bool node_features_p_changeable_feature(char *feature) {
    try {
        return feature != nullptr && svm::image_from_feature(feature).has_value();
    } catch (...) {
        return false;
    }
}

int node_features_p_job_valid(char *) {
    return SLURM_SUCCESS;  // job_submit/slurm_vm judges image constraints, with a message
}

char *node_features_p_job_xlate(char *) {
    return nullptr;  // no feature of ours ever needs a reboot to become active
}

bitstr_t *node_features_p_get_node_bitmap(void) {
    return node_conf_get_active_bitmap();
}

int node_features_p_overlap(bitstr_t *) {
    return 0;  // reservations never wait for a node to boot into an image
}

bool node_features_p_node_power(void) {
    return false;
}

int node_features_p_node_set(char *) {
    return SLURM_SUCCESS;
}

int node_features_p_node_update(char *, bitstr_t *) {
    return SLURM_SUCCESS;
}

bool node_features_p_node_update_valid(void *, update_node_msg_t *) {
    return true;
}

void node_features_p_step_config(bool, bitstr_t *) {}

uint32_t node_features_p_reboot_weight(void) {
    return INFINITE - 1;
}

uint32_t node_features_p_boot_time(void) {
    return 0;
}

int node_features_p_reconfig(void) {
    return SLURM_SUCCESS;  // nothing cached: the catalog is read at every registration
}

bool node_features_p_user_update(uid_t) {
    return false;  // never reboot a node to switch images
}

int node_features_p_get_node(char *) {
    return SLURM_SUCCESS;
}

void node_features_p_get_config(config_plugin_params_t *p) {
    try {
        xstrcat(p->name, plugin_type);
        auto *pair = static_cast<config_key_pair_t *>(xmalloc(sizeof(config_key_pair_t)));
        pair->name = xstrdup("Catalog");
        std::lock_guard lock(g_mutex);
        pair->value = xstrdup(g_catalog_path.c_str());
        list_append(p->key_pairs, pair);
    } catch (...) {
        error("slurm-vm: node_features: cannot report the configuration");
    }
}

}  // extern "C"
