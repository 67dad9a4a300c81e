// slurm_vm_node.so: what runs on a node as root and needs libvirt (the prolog, the epilog,
// the extern step's placement of the VM, slurmd's start-up sweep), loaded by spank_slurm_vm.so when
// one of them runs, so that the client commands that load the SPANK plugin never load libvirt.
#include "spank_common.h"

#include <cstring>

using namespace svm::spank;

extern "C" int slurm_vm_node_call(const char *what, spank_t sp, int ac, char **av) {
    return guarded(what, ac, av, [&] {
        if (std::strcmp(what, "prolog") == 0) {
            return on_job_prolog(sp);
        }
        if (std::strcmp(what, "epilog") == 0) {
            return on_job_epilog(sp);
        }
        if (std::strcmp(what, "extern step") == 0) {
            return on_extern_step(sp);
        }
        if (std::strcmp(what, "start-up sweep") == 0) {
            sweep_orphans("", 0);
            return 0;
        }
        slurm_error("%s: the node module has no '%s'", kTag, what);
        return -1;
    });
}
