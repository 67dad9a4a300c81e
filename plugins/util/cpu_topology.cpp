#include "util/cpu_topology.h"

#include "util/error.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <tuple>

namespace svm {

namespace {

namespace fs = std::filesystem;

long read_number(const fs::path &file) {
    std::ifstream in(file);
    long value = 0;
    if (!(in >> value)) {
        throw Error("cannot read a number from " + file.string());
    }
    return value;
}

}  // namespace

std::vector<unsigned> kernel_cpus_in_slurm_order(const std::string &sysfs_cpu_dir) {
    std::vector<std::tuple<long, long, unsigned>> cpus;  // package, core, id
    std::error_code ec;
    for (const auto &entry : fs::directory_iterator(sysfs_cpu_dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.size() < 4 || name.compare(0, 3, "cpu") != 0 ||
            !std::all_of(name.begin() + 3, name.end(),
                         [](char c) { return c >= '0' && c <= '9'; })) {
            continue;
        }
        const fs::path topology = entry.path() / "topology";
        if (!fs::is_directory(topology, ec)) {
            continue;  // offline
        }
        cpus.emplace_back(read_number(topology / "physical_package_id"),
                          read_number(topology / "core_id"),
                          static_cast<unsigned>(std::stoul(name.substr(3))));
    }
    if (ec) {
        throw Error("cannot list " + sysfs_cpu_dir + ": " + ec.message());
    }
    std::sort(cpus.begin(), cpus.end());
    std::vector<unsigned> order;
    for (const auto &cpu : cpus) {
        order.push_back(std::get<2>(cpu));
    }
    return order;
}

std::vector<unsigned> kernel_cpus_of(const std::vector<unsigned> &abstract,
                                     const std::vector<unsigned> &slurm_order) {
    std::vector<unsigned> out;
    for (unsigned id : abstract) {
        if (id >= slurm_order.size()) {
            throw Error("Slurm's CPU " + std::to_string(id) + " is beyond this node's " +
                        std::to_string(slurm_order.size()) +
                        " CPUs (does slurm.conf describe this node?)");
        }
        out.push_back(slurm_order[id]);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace svm
