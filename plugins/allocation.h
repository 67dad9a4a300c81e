// What Slurm allocated to a job on one node, read from `scontrol show job -d -o`. The prolog's
// environment names the job's CPUs per node but not its memory; the detailed job record has
// both, per node, as "Nodes=node[1-2] CPU_IDs=0-1 Mem=512 GRES=".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

// Expands a Slurm host list ("node[1-3,5],gpu01") into names. Throws Error on bad syntax.
std::vector<std::string> expand_hostlist(std::string_view hostlist);

struct NodeAllocation {
    unsigned cpus = 0;
    uint64_t memory_mib = 0;
};

// The value of `key=` in a one-line job record (`scontrol show job -o`), "" when absent. The
// fields read this way hold no spaces.
std::string job_field(const std::string &oneliner, std::string_view key);

// The allocation of `node` in the one-line detailed job record; zeros where not found.
NodeAllocation node_allocation(const std::string &scontrol_detail, std::string_view node);

}  // namespace svm
