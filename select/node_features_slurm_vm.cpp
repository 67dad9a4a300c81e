// node_features/slurm_vm (NodeFeaturesPlugins=node_features/slurm_vm), in slurmd and slurmctld:
// each node advertises as features the catalog images present on it, "vm_<image>", both
// available and active. slurmd asks at every registration (start and `scontrol reconfigure`),
// and the catalog and the image files are looked at afresh each time, so copying an image to a
// node or removing it and reconfiguring is all an admin does. slurmctld merges the list into the
// node's features from slurm.conf, replacing only the vm_* ones.
//
// Images never need a node reboot: user_update() is false, so Slurm never plans to reboot a node
// to make an image feature active, and job_xlate() has nothing to translate.
//
// This is the body; every operation Slurm looks up, with the signatures of the Slurm release
// built against, is in slurm_api/<release>/node_features.c, most of them doing nothing for
// images, the others calling the svm_nf_* functions here (slurm_api/node_features_api.h).
extern "C" {
#include "config.h"
#include "slurm/slurm.h"
#include "src/common/slurm_xlator.h"
#include "src/common/log.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"
}

#include "slurm_api/node_features_api.h"

#include "catalog/catalog.h"
#include "util/error.h"
#include "catalog/image_features.h"
#include "catalog/image_name.h"
#include "util/atomic_file.h"

#include <unistd.h>

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
    const char *node = svm_slurmd_node_name();
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

// slurmctld: what each node last reported, so that a new slurmctld can give it back before the
// node registers again (catalog/image_features.h, KnownImageFeatures).
svm::KnownImageFeatures g_known;
std::string g_known_error;

std::string known_features_path() {
    const char *dir = svm_nf_state_save_location();
    if (dir == nullptr || *dir == '\0') {
        throw svm::Error("slurmctld has no StateSaveLocation");
    }
    return std::string(dir) + "/slurm_vm_node_features";
}

// Caller holds g_mutex. Logs a failure to keep the file once, not at every registration.
void known_problem(const std::string &problem) {
    if (problem != g_known_error) {
        error("slurm-vm: node_features: %s; after a restart slurmctld waits for each node's "
              "registration to know its images",
              problem.c_str());
        g_known_error = problem;
    }
}

void remember_node_features(const char *node, const char *reported) {
    try {
        std::lock_guard lock(g_mutex);
        std::vector<std::string> features = svm::image_features_in(reported);
        const auto known = g_known.find(node);
        if (known != g_known.end() && known->second == features) {
            return;
        }
        g_known[node] = std::move(features);
        svm::write_file_atomically(known_features_path(), svm::render_known_image_features(g_known),
                                   0600);
        g_known_error.clear();
    } catch (const std::exception &e) {
        known_problem(e.what());
    } catch (...) {
        known_problem("unexpected error");
    }
}

}  // namespace

extern "C" {

bool svm_nf_load_known_features(void) {
    try {
        std::lock_guard lock(g_mutex);
        const std::string path = known_features_path();
        if (access(path.c_str(), F_OK) != 0) {
            return false;  // a first start, or a node_features plugin new to this cluster
        }
        g_known = svm::parse_known_image_features(svm::read_whole_file(path));
        return !g_known.empty();
    } catch (const std::exception &e) {
        std::lock_guard lock(g_mutex);
        known_problem(e.what());
    } catch (...) {
    }
    return false;
}

char *svm_nf_restored_features(const char *node, const char *features) {
    try {
        std::lock_guard lock(g_mutex);
        const auto known = g_known.find(node != nullptr ? node : "");
        if (known == g_known.end()) {
            return nullptr;
        }
        const std::string before = features != nullptr ? features : "";
        const std::string after = svm::restore_image_features(before, known->second);
        if (after == before) {
            return nullptr;
        }
        info("slurm-vm: node %s: image features %s as it last reported them, until it registers",
             node, after.c_str());
        return xstrdup(after.c_str());
    } catch (...) {
        return nullptr;
    }
}

char *svm_nf_active_without_unreported(const char *node, const char *active,
                                       const char *reported) {
    try {
        const std::string before = active != nullptr ? active : "";
        const std::string after = svm::drop_unreported_image_features(
            before, svm::image_features_in(reported != nullptr ? reported : ""));
        if (after == before) {
            return nullptr;
        }
        info("slurm-vm: node %s no longer reports some of its images: active features '%s' "
             "become '%s'",
             node != nullptr ? node : "?", before.c_str(), after.c_str());
        return xstrdup(after.c_str());
    } catch (...) {
        return nullptr;
    }
}

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

void svm_nf_node_state(char **avail_modes, char **current_mode) {
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

// `new_features` is what the node reported, `orig_features` what the node had, slurm.conf's
// features included.
char *svm_nf_node_xlate(const char *new_features, const char *orig_features, const char *node) {
    if (node != nullptr) {
        remember_node_features(node, new_features != nullptr ? new_features : "");
    }
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

bool svm_nf_changeable_feature(const char *feature) {
    try {
        return feature != nullptr && svm::image_from_feature(feature).has_value();
    } catch (...) {
        return false;
    }
}

char *svm_nf_catalog_path(void) {
    try {
        std::lock_guard lock(g_mutex);
        return xstrdup(g_catalog_path.c_str());
    } catch (...) {
        return xstrdup("");
    }
}

}  // extern "C"
