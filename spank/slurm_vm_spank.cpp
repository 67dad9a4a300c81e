// slurm-vm SPANK plugin: --vm-image=NAME on sbatch, srun and salloc. The entry points only
// dispatch on the context and make sure nothing thrown crosses into Slurm.
#include "spank_common.h"

#include "slurm_api/task_start.h"
#include "vm/job_vm.h"  // job_has_vm: libvirt-free

extern "C" {
#include <slurm/slurm.h>  // SLURM_EXTERN_CONT
}

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

extern "C" {
// SPANK_PLUGIN() would give these internal linkage under C++ (const implies static), and
// Slurm finds them with dlsym: define them by hand.
extern const char plugin_name[] = "slurm_vm";
extern const char plugin_type[] = "spank";
extern const unsigned int plugin_version = SLURM_VERSION_NUMBER;
extern const unsigned int spank_plugin_version = 1;
}

namespace svm::spank {

namespace {

#ifndef SVM_NODE_MODULE
#error "SVM_NODE_MODULE must name the installed slurm_vm_node.so"
#endif

#ifndef SVM_NODE_MODULE_SLURM_VERSION
#error "SVM_NODE_MODULE_SLURM_VERSION must name the exact Slurm of the node module, or be empty"
#endif

using NodeCall = int (*)(const char *, spank_t, int, char **);

// Slurm loads a SPANK plugin into any Slurm of the major and minor release it was built for. A
// release whose node module reads Slurm's internal structures (24.11: a job's CPUs, see
// slurm_api/job_cpus.h) needs exactly the Slurm it was built against, as select/'s plugins do.
bool node_module_fits(const char *what, spank_t sp) {
    constexpr std::string_view built_for = SVM_NODE_MODULE_SLURM_VERSION;
    if (built_for.empty()) {
        return true;
    }
    char *running = nullptr;
    if (spank_get_item(sp, S_SLURM_VERSION, &running) != ESPANK_SUCCESS || running == nullptr) {
        slurm_error("%s: %s: cannot tell this Slurm's version; %s is for Slurm %s alone", kTag,
                    what, SVM_NODE_MODULE, SVM_NODE_MODULE_SLURM_VERSION);
        return false;
    }
    if (running != built_for) {
        slurm_error(
            "%s: %s: %s was built for Slurm %s, this is Slurm %s: rebuild slurm-vm "
            "against this Slurm",
            kTag, what, SVM_NODE_MODULE, SVM_NODE_MODULE_SLURM_VERSION, running);
        return false;
    }
    return true;
}

// The node module's one entry point, loaded on first use (RTLD_LOCAL: nothing of it is seen by
// the rest of the process). Slurm's own symbols (spank_*, slurm_*) resolve from the process.
int node_call(const char *what, spank_t sp, int ac, char **av) {
    static NodeCall call = nullptr;
    if (call == nullptr) {
        if (!node_module_fits(what, sp)) {
            return -1;
        }
        void *module = dlopen(SVM_NODE_MODULE, RTLD_NOW | RTLD_LOCAL);
        if (module == nullptr) {
            slurm_error("%s: %s: cannot load %s: %s", kTag, what, SVM_NODE_MODULE, dlerror());
            return -1;
        }
        call = reinterpret_cast<NodeCall>(dlsym(module, "slurm_vm_node_call"));
        if (call == nullptr) {
            slurm_error("%s: %s: %s has no slurm_vm_node_call", kTag, what, SVM_NODE_MODULE);
            return -1;
        }
    }
    return call(what, sp, ac, av);
}

// VMs left by jobs that ended while this host was down (or slurmd was): swept when slurmd
// starts, in a detached grandchild so slurmd's start never waits on libvirt or slurmctld.
void sweep_at_slurmd_start(spank_t sp, int ac, char **av) {
    const pid_t child = fork();
    if (child < 0) {
        slurm_error("%s: cannot fork the start-up sweep: %m", kTag);
        return;
    }
    if (child > 0) {
        waitpid(child, nullptr, 0);
        return;
    }
    if (fork() != 0) {
        _exit(0);
    }
    setsid();
    node_call("start-up sweep", sp, ac, av);
    _exit(0);
}

}  // namespace

}  // namespace svm::spank

using namespace svm::spank;

extern "C" {

int slurm_spank_init(spank_t sp, int ac, char **av) {
    return guarded("plugstack.conf", ac, av, [&] {
        // Registered here, not through an exported table: sbatch and salloc ignore the table.
        if (spank_option_register(sp, image_option()) != ESPANK_SUCCESS) {
            slurm_error("%s: cannot register --vm-image", kTag);
            return -1;
        }
        if (spank_context() == S_CTX_SLURMD) {
            sweep_at_slurmd_start(sp, ac, av);
        }
        return 0;
    });
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av) {
    const spank_context_t ctx = spank_context();
    if (ctx != S_CTX_LOCAL && ctx != S_CTX_ALLOCATOR) {
        return 0;
    }
    return guarded("--vm-image", ac, av, [&] { return on_submit_init_post_opt(sp); });
}

// srun, just before it sends the step.
int slurm_spank_local_user_init(spank_t sp, int ac, char **av) {
    return guarded("step launch", ac, av, [&] { return svm::slurm_api::on_srun_step_launch(sp); });
}

// slurmstepd, once per step, before its tasks and their prologs and epilogs.
int slurm_spank_user_init(spank_t sp, int ac, char **av) {
    if (spank_context() != S_CTX_REMOTE) {
        return 0;
    }
    return guarded("step", ac, av, [&] { return on_step_user_init(sp); });
}

int slurm_spank_job_prolog(spank_t sp, int ac, char **av) {
    return node_call("prolog", sp, ac, av);
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av) {
    return node_call("epilog", sp, ac, av);
}

int slurm_spank_task_init(spank_t sp, int ac, char **av) {
    return guarded("task", ac, av, [&] { return on_task_init(sp); });
}

// Every task of every step passes here, as root in slurmstepd, and a failure would fail its step:
// only the extern step (taskid -1, PrologFlags=Contain) of a job with a VM on this node goes on,
// to the node module, which puts the VM into the job's cgroups (extern_step.cpp). Always 0: for
// the extern step Slurm only logs a failure, and the node module fails the job its own way.
int slurm_spank_task_post_fork(spank_t sp, int ac, char **av) {
    uint32_t stepid = 0;
    if (spank_context() != S_CTX_REMOTE ||
        spank_get_item(sp, S_JOB_STEPID, &stepid) != ESPANK_SUCCESS ||
        stepid != SLURM_EXTERN_CONT) {
        return 0;
    }
    guarded("extern step", ac, av, [&] {
        uint32_t jobid = 0;
        const char *node = getenv("SLURMD_NODENAME");
        if (spank_get_item(sp, S_JOB_ID, &jobid) == ESPANK_SUCCESS && node != nullptr &&
            job_has_vm(config(), jobid, node)) {
            node_call("extern step", sp, ac, av);
        }
        return 0;
    });
    return 0;
}

}  // extern "C"
