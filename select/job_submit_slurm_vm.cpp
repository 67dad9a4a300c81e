// job_submit/slurm_vm (JobSubmitPlugins=slurm_vm), in slurmctld: a job that asks for a VM image
// is checked against the catalog and the user's rights while the user is still watching, and
// the image's feature is made part of the job's constraint, so the scheduler alone places the
// job on nodes that carry the image. A refusal here costs nothing; the same mistake found in a
// prolog would fail the job and could drain a node.
//
// The image comes from, in this order: the SPANK option (--vm-image) or its twin that the SPANK
// plugin sets in the job's SPANK environment; the job's environment variable SLURM_VM_IMAGE
// (a submission without SPANK, e.g. slurmrestd); a constraint with one image feature (-C vm_NAME).
// The catalog is $SLURM_VM_CATALOG in slurmctld's environment, else /etc/slurm/vm-images.json;
// it is re-read for every VM job, so catalog edits need no restart.
//
// This is the body; Slurm's entry points, with the signatures of the Slurm release built
// against, are in slurm_api/<release>/job_submit.c, which also gives the body what it needs of
// slurmctld (slurm_api/job_submit_api.h).
extern "C" {
#include "config.h"
#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "src/common/slurm_xlator.h"
#include "src/common/log.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"
}

#include "slurm_api/job_submit_api.h"

#include "catalog/catalog.h"
#include "util/config.h"
#include "util/error.h"
#include "catalog/image_features.h"
#include "catalog/image_name.h"
#include "util/plugstack_args.h"
#include "accounting/vm_record.h"

#include <mutex>
#include <optional>
#include <string>
#include <string_view>

extern "C" {
// Defined by hand: as C++ consts they would have internal linkage and Slurm finds them with dlsym.
extern const char plugin_name[] = "slurm-vm job submit: VM image requests become node constraints";
extern const char plugin_type[] = "job_submit/slurm_vm";
extern const uint32_t plugin_version = SLURM_VERSION_NUMBER;
}

namespace {

// Slurm names a SPANK option's variable _SLURM_SPANK_OPTION_<plugin>_<option>, each character
// that is not alphanumeric made '_' (src/common/plugstack.c, _opt_env_name); the SPANK plugin is
// "slurm_vm" and its option "vm-image". In the prolog's environment Slurm prefixes "SPANK_".
constexpr std::string_view kOptionVar = "_SLURM_SPANK_OPTION_slurm_vm_vm_image";
// The option's twin: the job environment variable, and the SPANK job-control variable the SPANK
// plugin sets at submit. The prolog reads it as SPANK_SLURM_VM_IMAGE.
constexpr std::string_view kTwinVar = "SLURM_VM_IMAGE";
constexpr std::string_view kSpankPrefix = "SPANK_";

// slurmctld serialises job_submit/job_modify calls, but init() runs apart from them.
std::mutex g_mutex;
std::string g_catalog_path;
std::string g_last_catalog_error;
// The VM hostname template of the SPANK plugin's plugstack line, for the AdminComment.
std::string g_hostname_template = svm::Config{}.hostname_template;

// A refusal the user reads: `code` for Slurm, `message` for sbatch's "error:" line.
struct Refusal {
    int code;
    std::string message;
};

std::optional<std::string> value_of(const char *entry, std::string_view name) {
    const std::string_view text(entry);
    if (text.size() > name.size() && text.starts_with(name) && text[name.size()] == '=') {
        return std::string(text.substr(name.size() + 1));
    }
    return std::nullopt;
}

std::string spank_prefixed(std::string_view name) {
    return std::string(kSpankPrefix) + std::string(name);
}

// The image the job's SPANK environment names. Every form must agree: the prolog takes whichever
// comes first, so a hand-made second entry must not smuggle in an image nobody checked.
std::optional<std::string> image_from_spank_env(char **env, uint32_t size) {
    std::optional<std::string> image;
    const std::string names[] = {std::string(kOptionVar), spank_prefixed(kOptionVar),
                                 std::string(kTwinVar), spank_prefixed(kTwinVar)};
    for (uint32_t i = 0; env != nullptr && i < size; ++i) {
        if (env[i] == nullptr) {
            continue;
        }
        for (const std::string &name : names) {
            auto value = value_of(env[i], name);
            // An empty twin means unset, as in the SPANK plugin; an empty option is a request
            // for "" that the catalog check refuses by name.
            if (!value || (value->empty() && name.ends_with(kTwinVar))) {
                continue;
            }
            if (image && *image != *value) {
                throw Refusal{ESLURM_INVALID_FEATURE,
                              "the job asks for two VM images ('" + svm::printable(*image) +
                                  "' and '" + svm::printable(*value) + "'): one VM image per job"};
            }
            image = std::move(value);
        }
    }
    return image;
}

std::optional<std::string> image_from_environment(char **env, uint32_t size) {
    for (uint32_t i = 0; env != nullptr && i < size; ++i) {
        if (env[i] == nullptr) {
            continue;
        }
        if (auto value = value_of(env[i], kTwinVar); value && !value->empty()) {
            return value;
        }
    }
    return std::nullopt;
}

std::optional<std::string> requested_image(const job_desc_msg_t *job) {
    if (auto image = image_from_spank_env(job->spank_job_env, job->spank_job_env_size)) {
        return image;
    }
    if (auto image = image_from_environment(job->environment, job->env_size)) {
        return image;
    }
    try {
        return svm::image_from_constraint(job->features != nullptr ? job->features : "");
    } catch (const svm::Error &e) {
        throw Refusal{ESLURM_INVALID_FEATURE, e.what()};
    }
}

// Caller holds g_mutex.
svm::Catalog load_catalog() {
    try {
        svm::Catalog catalog = svm::Catalog::load(g_catalog_path);
        if (!g_last_catalog_error.empty()) {
            info("slurm-vm: catalog %s is readable again (%zu images)", g_catalog_path.c_str(),
                 catalog.images().size());
            g_last_catalog_error.clear();
        }
        return catalog;
    } catch (const svm::Error &e) {
        if (g_last_catalog_error != e.what()) {
            error("slurm-vm: %s; jobs asking for a VM image are refused until it is fixed",
                  e.what());
            g_last_catalog_error = e.what();
        }
        throw Refusal{ESLURM_INVALID_FEATURE,
                      std::string("VM jobs are refused until the admin fixes the image "
                                  "catalog: ") +
                          e.what()};
    }
}

// Whether some node advertises the feature now. Slurm would refuse such a job too, but with
// "Invalid feature specification"; the user deserves to know it is the image that is missing.
bool feature_on_some_node(const std::string &feature) {
    // -1: slurmctld has not built its list yet; leave the judgement to Slurm.
    return svm_feature_on_some_node(feature.c_str()) != 0;
}

void replace_features(char **features, const std::string &value) {
    xfree(*features);
    *features = xstrdup(value.c_str());
}

// Leaves exactly one SPANK_SLURM_VM_IMAGE=<image> in the job's SPANK environment: the prolog
// reads it when the job did not come through the SPANK option (environment variable,
// constraint), and it must agree with what was checked here.
void set_spank_image(job_desc_msg_t *job, const std::string &image) {
    const std::string twin = std::string(kTwinVar);
    const std::string prefixed = spank_prefixed(kTwinVar);
    uint32_t kept = 0;
    for (uint32_t i = 0; job->spank_job_env != nullptr && i < job->spank_job_env_size; ++i) {
        char *entry = job->spank_job_env[i];
        if (entry != nullptr && (value_of(entry, twin) || value_of(entry, prefixed))) {
            xfree(entry);
            continue;
        }
        job->spank_job_env[kept++] = entry;
    }
    // One slot more than the count: some readers of Slurm's string arrays stop at NULL.
    xrealloc(job->spank_job_env, sizeof(char *) * (kept + 2));
    job->spank_job_env[kept] = xstrdup((prefixed + "=" + image).c_str());
    job->spank_job_env[kept + 1] = nullptr;
    job->spank_job_env_size = kept + 1;
}

// The account the job will run under: the one it names, else the user's default account (as
// job_submit/lua finds it), else "" (no accounting: account rules cannot be judged here).
std::string account_of(const job_desc_msg_t *job, uid_t uid) {
    if (job->account != nullptr && *job->account != '\0') {
        return job->account;
    }
    char *account = svm_default_account(uid);
    if (account == nullptr) {
        return "";
    }
    std::string copy = account;
    xfree(account);
    return copy;
}

int submit(job_desc_msg_t *job, uint32_t submit_uid) {
    const std::optional<std::string> image = requested_image(job);
    if (!image) {
        return SLURM_SUCCESS;
    }
    const uid_t uid = job->user_id != NO_VAL ? job->user_id : submit_uid;
    std::lock_guard lock(g_mutex);
    const svm::Catalog catalog = load_catalog();
    const svm::UserIdentity who = svm::identity_of_uid(uid, account_of(job, uid));
    const std::string refusal = svm::image_refusal(catalog, *image, who);
    if (!refusal.empty()) {
        const bool listed = svm::image_name_problem(*image).empty() && catalog.find(*image);
        throw Refusal{listed ? ESLURM_ACCESS_DENIED : ESLURM_INVALID_FEATURE, refusal};
    }
    std::string features;
    try {
        features = svm::add_image_constraint(job->features != nullptr ? job->features : "", *image);
    } catch (const svm::Error &e) {
        throw Refusal{ESLURM_INVALID_FEATURE, e.what()};
    }
    const std::string feature = svm::image_feature(*image);
    if (!feature_on_some_node(feature)) {
        throw Refusal{ESLURM_INVALID_FEATURE,
                      "image '" + *image + "' is in the catalog but on no node: no node has the " +
                          "feature " + feature + " (sinfo -o '%N %f' shows which node has which)"};
    }
    debug("slurm-vm: job of %s asks for image %s; constraint '%s' -> '%s'", who.user.c_str(),
          image->c_str(), job->features != nullptr ? job->features : "", features.c_str());
    replace_features(&job->features, features);
    set_spank_image(job, *image);
    // Accounting's record of the image and the VMs, written here because here slurmctld alone
    // writes it (users cannot set AdminComment) and no prolog has to update the job later. An
    // admin's own comment is kept.
    const std::string comment = svm::admin_comment_at_submit(
        job->admin_comment != nullptr ? job->admin_comment : "", *image, g_hostname_template);
    xfree(job->admin_comment);
    job->admin_comment = xstrdup(comment.c_str());
    return SLURM_SUCCESS;
}

int modify(job_desc_msg_t *job, job_record_t *job_ptr) {
    uint32_t env_size = 0;
    char **env = svm_job_spank_env(job_ptr, &env_size);
    std::optional<std::string> image = image_from_spank_env(env, env_size);
    if (job->account != nullptr && image) {
        // The image's access rules hold for the account the job runs under, not only the one it
        // was submitted with: `scontrol update job account=B` must not run an image of A's.
        std::lock_guard lock(g_mutex);
        const svm::Catalog catalog = load_catalog();
        const uid_t uid = svm_job_user_id(job_ptr);
        const svm::UserIdentity who = svm::identity_of_uid(uid, account_of(job, uid));
        const std::string refusal = svm::image_refusal(catalog, *image, who);
        if (!refusal.empty()) {
            throw Refusal{ESLURM_ACCESS_DENIED,
                          "account '" + svm::printable(who.account) + "': " + refusal};
        }
    }
    if (job->admin_comment != nullptr && image) {
        // An admin (or another tool) sets the AdminComment: keep our word in it.
        const std::string comment =
            svm::admin_comment_at_submit(job->admin_comment, *image, g_hostname_template);
        xfree(job->admin_comment);
        job->admin_comment = xstrdup(comment.c_str());
    }
    if (job->features == nullptr) {
        return SLURM_SUCCESS;  // the constraint is not being changed
    }
    if (const char *features = svm_job_features(job_ptr); !image && features != nullptr) {
        try {
            image = svm::image_from_constraint(features);
        } catch (const svm::Error &) {
            // Accepted at submit, so not ours to judge now.
        }
    }
    std::string features;
    try {
        if (!image) {
            // The image check and the prolog's knowledge of the image come from submit time.
            if (svm::image_from_constraint(job->features)) {
                throw svm::Error("--constraint '" + svm::printable(job->features) +
                                 "': a VM image cannot be added to a job after submission; "
                                 "submit it with --vm-image");
            }
            return SLURM_SUCCESS;
        }
        features = svm::add_image_constraint(job->features, *image);
    } catch (const svm::Error &e) {
        throw Refusal{ESLURM_INVALID_FEATURE, e.what()};
    }
    if (features != job->features) {
        info("slurm-vm: JobId=%u: features '%s' keep the image: '%s'", svm_job_id(job_ptr),
             job->features, features.c_str());
        replace_features(&job->features, features);
    }
    return SLURM_SUCCESS;
}

void set_err_msg(char **err_msg, const std::string &message) {
    if (err_msg == nullptr) {
        return;
    }
    xfree(*err_msg);
    *err_msg = xstrdup(("slurm-vm: " + message).c_str());
}

}  // namespace

extern "C" {

int init(void) {
    try {
        std::lock_guard lock(g_mutex);
        g_catalog_path = svm::catalog_path_from_environment();
        try {
            g_hostname_template = svm::parse_config(svm::plugstack_args()).hostname_template;
        } catch (const std::exception &e) {
            error("slurm-vm: %s: plugstack.conf: %s; VM hostnames in AdminComment use %s",
                  plugin_type, e.what(), g_hostname_template.c_str());
        }
        const svm::Catalog catalog = load_catalog();
        info("slurm-vm: %s loaded; catalog %s has %zu images", plugin_type, g_catalog_path.c_str(),
             catalog.images().size());
    } catch (const Refusal &) {
        // Logged by load_catalog. slurmctld keeps running and refuses VM jobs with the reason.
    } catch (const std::exception &e) {
        error("slurm-vm: %s: %s", plugin_type, e.what());
    } catch (...) {
        error("slurm-vm: %s: unexpected error at load", plugin_type);
    }
    return SLURM_SUCCESS;
}

int fini(void) {
    return SLURM_SUCCESS;
}

int svm_job_submit(job_desc_msg_t *job_desc, uint32_t submit_uid, char **err_msg) {
    try {
        return submit(job_desc, submit_uid);
    } catch (const Refusal &r) {
        info("slurm-vm: job from uid %u refused: %s", submit_uid, r.message.c_str());
        set_err_msg(err_msg, r.message);
        return r.code;
    } catch (const std::exception &e) {
        info("slurm-vm: job from uid %u refused: %s", submit_uid, e.what());
        set_err_msg(err_msg, e.what());
        return ESLURM_INVALID_FEATURE;
    } catch (...) {
        error("slurm-vm: job from uid %u: unexpected error", submit_uid);
        return SLURM_ERROR;
    }
}

int svm_job_modify(job_desc_msg_t *job_desc, job_record_t *job_ptr, char **err_msg) {
    const uint32_t id = svm_job_id(job_ptr);
    try {
        return modify(job_desc, job_ptr);
    } catch (const Refusal &r) {
        info("slurm-vm: JobId=%u: update refused: %s", id, r.message.c_str());
        set_err_msg(err_msg, r.message);
        return r.code;
    } catch (const std::exception &e) {
        error("slurm-vm: JobId=%u: update: %s", id, e.what());
        set_err_msg(err_msg, e.what());
        return ESLURM_INVALID_FEATURE;
    } catch (...) {
        error("slurm-vm: JobId=%u: update: unexpected error", id);
        return SLURM_ERROR;
    }
}

}  // extern "C"
