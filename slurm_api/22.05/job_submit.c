/* Slurm 22.05: job_submit/slurm_vm's entry points and what its body needs of slurmctld. */
#include "config.h"

#include "slurm/slurm.h"
#include "slurm/slurm_errno.h"
#include "src/common/slurm_xlator.h"

#include "src/common/assoc_mgr.h"
#include "src/common/list.h"
#include "src/common/xmalloc.h"
#include "src/common/xstring.h"
#include "src/slurmctld/slurmctld.h"

#include "slurm_api/job_submit_api.h"

int job_submit(job_desc_msg_t *job_desc, uint32_t submit_uid, char **err_msg) {
    return svm_job_submit(job_desc, submit_uid, err_msg);
}

/* 22.05 gives job_modify no err_msg: a refusal reaches the user as its code alone. */
int job_modify(job_desc_msg_t *job_desc, job_record_t *job_ptr, uint32_t submit_uid) {
    (void)submit_uid;
    return svm_job_modify(job_desc, job_ptr, NULL);
}

uint32_t svm_job_id(const job_record_t *job) {
    return job->job_id;
}

uint32_t svm_job_user_id(const job_record_t *job) {
    return job->user_id;
}

char **svm_job_spank_env(const job_record_t *job, uint32_t *size) {
    *size = job->spank_job_env_size;
    return job->spank_job_env;
}

const char *svm_job_features(const job_record_t *job) {
    return job->details != NULL ? job->details->features : NULL;
}

static int match_feature_name(void *feature, void *name) {
    return xstrcmp(((node_feature_t *)feature)->name, (char *)name) == 0;
}

int svm_feature_on_some_node(const char *feature) {
    if (active_feature_list == NULL) {
        return -1;
    }
    return list_find_first(active_feature_list, match_feature_name, (void *)feature) != NULL;
}

char *svm_default_account(uint32_t uid) {
    slurmdb_user_rec_t user = {0};
    user.uid = uid;
    if (assoc_mgr_fill_in_user(acct_db_conn, &user, accounting_enforce, NULL, false) ==
            SLURM_ERROR ||
        user.default_acct == NULL) {
        return NULL;
    }
    /* assoc_mgr's string: copied at once. */
    return xstrdup(user.default_acct);
}

#include "job_submit_interface.h"
