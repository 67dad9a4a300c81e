/* The Slurm release seam (docs/architecture.md, "The Slurm release seam") for
 * job_submit/slurm_vm. Each release's job_submit.c defines the entry points Slurm looks up,
 * with that release's signatures (checked at build time against Slurm's own source), over the
 * body in select/job_submit_slurm_vm.cpp, and gives the body what it needs of slurmctld's
 * internals, whose headers only C can read (24.11's name a member `operator`). */
#pragma once

#include <slurm/slurm.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct job_record job_record_t;

/* The body. err_msg may be NULL: 22.05's job_modify has none. */
int svm_job_submit(job_desc_msg_t *job_desc, uint32_t submit_uid, char **err_msg);
int svm_job_modify(job_desc_msg_t *job_desc, job_record_t *job_ptr, char **err_msg);

/* What the body needs of slurmctld. */
uint32_t svm_job_id(const job_record_t *job);
uint32_t svm_job_user_id(const job_record_t *job);
char **svm_job_spank_env(const job_record_t *job, uint32_t *size);
/* The job's constraint (--constraint), or NULL. */
const char *svm_job_features(const job_record_t *job);
/* 1 when some node has `feature` now, 0 when none has, -1 when slurmctld has no list yet. */
int svm_feature_on_some_node(const char *feature);
/* The user's default account from slurmctld's association cache, xmalloc'd, or NULL. */
char *svm_default_account(uint32_t uid);

#ifdef __cplusplus
}
#endif
