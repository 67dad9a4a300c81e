# Slurm 24.11 (Debian 13). Included by slurm_api/CMakeLists.txt.
set(dir "${CMAKE_CURRENT_LIST_DIR}")
# task_init puts the exec client before the task's argv (spank_prepend_task_argv, 23.11 on):
# slurmstepd does the rest itself.
set(SVM_RELEASE_SPANK_SOURCES "${dir}/task_start.cpp")
# The job's CPUs on a node: 24.11 has no call for it, only job_resources_t's fields.
set(SVM_RELEASE_NODE_SOURCES "${dir}/job_cpus.c" "${dir}/api_ready.c")
set(SVM_RELEASE_NODE_NEEDS_SLURM_SRC ON)
# The plugin interfaces moved to src/interfaces/ in 23.02.
set(SVM_RELEASE_JOB_SUBMIT_SOURCE "${dir}/job_submit.c")
set(SVM_RELEASE_JOB_SUBMIT_INTERFACE "src/interfaces/job_submit.c")
set(SVM_RELEASE_NODE_FEATURES_SOURCE "${dir}/node_features.c")
set(SVM_RELEASE_NODE_FEATURES_INTERFACE "src/interfaces/node_features.c")
