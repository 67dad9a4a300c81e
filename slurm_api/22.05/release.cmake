# Slurm 22.05 (Debian 12). Included by slurm_api/CMakeLists.txt.
set(dir "${CMAKE_CURRENT_LIST_DIR}")
# task_init execs the exec client, which then does what slurmstepd would have done.
set(SVM_RELEASE_SPANK_SOURCES "${dir}/task_start.cpp")
# The job's CPUs on a node: slurm.h's own calls.
set(SVM_RELEASE_NODE_SOURCES "${dir}/job_cpus.c" "${dir}/api_ready.c")
set(SVM_RELEASE_NODE_NEEDS_SLURM_SRC OFF)
set(SVM_RELEASE_JOB_SUBMIT_SOURCE "${dir}/job_submit.c")
set(SVM_RELEASE_JOB_SUBMIT_INTERFACE "src/slurmctld/job_submit.c")
set(SVM_RELEASE_NODE_FEATURES_SOURCE "${dir}/node_features.c")
set(SVM_RELEASE_NODE_FEATURES_INTERFACE "src/common/node_features.c")
