// Which physical host ran each long-lived VM node, and when: Slurm knows the VM node only by
// its own name, so without this map its jobs could not be charged to the machine under it.
//
// File format, one interval a line ('#' starts a comment line):
//   <vm_node> <physical_host> <from_epoch> <to_epoch|->
// "-" marks the interval still open (the VM node runs there now). Intervals are half-open:
// [from, to).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace svm {

struct HostInterval {
    std::string vm_node, host;
    int64_t from = 0;
    std::optional<int64_t> to;  // nullopt: still running there
    bool operator==(const HostInterval &) const = default;
};

class HostMap {
  public:
    // A missing file is an empty map. A malformed line is skipped and warnings() names it
    // ("<path>:<line>: <reason>"). Throws Error when the file exists but cannot be read.
    static HostMap load(const std::string &path);

    // vm_node runs on host from t on. An open interval of vm_node elsewhere is closed at t;
    // one on the same host is kept as it is (starting twice is harmless).
    void record_start(const std::string &vm_node, const std::string &host, int64_t t);

    // vm_node stopped at t. False when it had no open interval.
    bool record_stop(const std::string &vm_node, int64_t t);

    // The host vm_node ran on at time t, if the map knows one.
    std::optional<std::string> host_of(const std::string &vm_node, int64_t t) const;

    // Writes the whole map atomically (temporary file and rename).
    void save(const std::string &path) const;

    const std::vector<HostInterval> &intervals() const { return intervals_; }
    const std::vector<std::string> &warnings() const { return warnings_; }

  private:
    std::vector<HostInterval> intervals_;
    std::vector<std::string> warnings_;
};

}  // namespace svm
