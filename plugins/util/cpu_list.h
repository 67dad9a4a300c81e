// CPU lists in the kernel's list format ("0-3,8,10-11"), as cpuset.cpus, taskset -c, libvirt's
// cpuset attributes and Slurm's allocated-CPU strings write them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace svm {

// The highest CPU id a list may name, plus one (the kernel's NR_CPUS upper bound).
inline constexpr unsigned kMaxCpuId = 8192;

// The CPU ids of `text`, ascending and without duplicates. Entries are decimal ids or ranges
// "a-b" (a <= b) separated by commas; surrounding spaces and a trailing newline (as read from a
// cgroup file) are ignored; "" (an empty cpuset) gives no ids. Throws Error quoting the list and
// naming the bad entry: an empty entry, a non-digit, a reversed range, an id >= `limit`.
std::vector<unsigned> parse_cpu_list(std::string_view text, unsigned limit = kMaxCpuId);

// `cpus` in list format, sorted, duplicates dropped, consecutive ids as ranges: {0,1,2,3,8}
// gives "0-3,8"; an empty vector gives "".
std::string format_cpu_list(std::vector<unsigned> cpus);

}  // namespace svm
