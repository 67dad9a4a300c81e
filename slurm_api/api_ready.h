/* The Slurm release seam (docs/architecture.md, "The Slurm release seam"): what a process of
 * Slurm's must have loaded before the node module sends slurmctld an RPC (slurm_load_job).
 * Each release folder implements this (slurm_api/<release>/api_ready.c). */
#pragma once

#ifdef __cplusplus
extern "C" {
#endif

/* Loads what the RPC needs where the process has not (idempotent). Returns 0, or -1. */
int svm_slurm_api_ready(void);

#ifdef __cplusplus
}
#endif
