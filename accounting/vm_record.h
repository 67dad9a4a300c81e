// The accounting record of one job VM on one node, and the three places it goes: a durable
// spool (so a record outlives restarts of slurmd, slurmctld, slurmdbd or MariaDB until it is
// delivered), a JSON-lines stream for the site's log system, and Slurm's AdminComment (so
// `sacct -o AdminComment` shows the image and the VMs' hostname template of a job).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace svm {

struct VmRecord {
    uint32_t jobid = 0;
    std::string cluster, user, image;
    std::string node;           // the Slurm node (several slurmd may share one physical host)
    std::string physical_host;  // the machine that ran the VM
    std::string vm_hostname, domain;
    unsigned vcpus = 0;
    uint64_t memory_mib = 0;
    int64_t ready_at = 0, stopped_at = 0;  // seconds since the epoch; 0: never ready
    std::string stop;                      // "graceful" | "destroyed" | "failed"
};

// The record of one VM from the prolog's state file (<state_dir>/jobs/<domain>/vm.json: domain,
// image, node, jobid, hostname, vcpus, memory_mib, ready_at), completed by the epilog with what
// only it knows. The epilog must read the file before stop_job_vm(), which removes it.
// Throws Error "VM state file: field '<key>': <reason>".
VmRecord vm_record_from_state(std::string_view state_json, const std::string &cluster,
                              const std::string &user, const std::string &physical_host,
                              int64_t stopped_at, const std::string &stop);

// VmRecord::stop from stop_job_vm()'s report: "destroyed" when the grace period ran out,
// "graceful" when the guest powered off by itself (or was off already), "failed" when it
// neither powered off nor could be destroyed.
struct StopReport;
std::string stop_kind(const StopReport &stopped);

// One record as one line of JSON (no newline). Decoding checks every field; errors read
// "VM record: field 'vcpus': expected an integer from 0 to ..., got "x"".
std::string encode_vm_record(const VmRecord &record);
VmRecord decode_vm_record(std::string_view json);

// The AdminComment of a VM job: one word of it, among whatever else the site keeps there.
// Grammar (values are percent-encoded: '%', ';', ',', '@', '=', '|', space and control bytes
// become %XX, so the word survives `sacct -P`, scontrol and the words around it):
//
//   word    := "slurm-vm:" field (";" field)*
//   field   := "image=" value | "hostname=" template | key "=" value
//
// The job_submit plugin writes it at submit, when slurmctld alone can write it and the user
// cannot: "slurm-vm:image=tiny;hostname=%n-vm%j". Each node of the job ran one VM, named by
// the template; the node is its physical host. (The prolog of early versions wrote the VMs out,
// "vms=vm@host,...": that key is now unknown, and such a job is charged to its nodes.)
inline constexpr std::string_view kAdminCommentPrefix = "slurm-vm:";

struct VmPlacement {
    std::string vm_hostname, physical_host;
    bool operator==(const VmPlacement &) const = default;
};

struct VmJobComment {
    std::string image;
    std::string hostname_template;  // "" in comments of early versions
};

// `existing` (the site's own words, kept; an earlier slurm-vm word replaced) with our word for
// `image` and the VM hostname template.
std::string admin_comment_at_submit(std::string_view existing, const std::string &image,
                                    const std::string &hostname_template);

// nullopt when no word of the comment is ours (none starts with "slurm-vm:"); throws Error
// ("admin comment '...': <reason>") when ours is malformed.
std::optional<VmJobComment> parse_admin_comment(std::string_view comment);

// The job's VMs: one per node of `nodes`, named by the template, on that node; none when the
// comment has no template.
std::vector<VmPlacement> vm_placements(const VmJobComment &comment,
                                       const std::vector<std::string> &nodes, uint32_t jobid);

// A folder of records waiting to be delivered: <dir>/pending/<jobid>-<node>.json, one record
// each. A record is in the spool from add() until done(), whatever restarts in between.
class RecordSpool {
  public:
    // Creates <dir>/pending and <dir>/bad (mode 0700) when missing.
    explicit RecordSpool(std::string dir);

    // Atomically: write a temporary file, fsync, rename into pending/, fsync the folder. A
    // record for the same job and node replaces the earlier one.
    void add(const VmRecord &record);

    // The records waiting, by id (<jobid>-<node>), oldest id order. A file that cannot be read
    // as a record is moved to <dir>/bad/ with a <name>.reason beside it, and warnings() says
    // so ("spool file <path>: <reason>; moved to <bad path>"); it is never silently dropped.
    std::vector<std::pair<std::string, VmRecord>> pending();

    // The record was delivered. An id that is no longer there is fine (a retry after a crash).
    void done(const std::string &id);

    // What the last pending() call found wrong.
    const std::vector<std::string> &warnings() const { return warnings_; }

    const std::string &dir() const { return dir_; }

  private:
    std::string dir_;
    std::vector<std::string> warnings_;
};

// Appends the record as one JSON line to `path` (created 0640), with O_APPEND and a single
// write(), so concurrent writers never interleave within a line.
void append_jsonl(const std::string &path, const VmRecord &record);

}  // namespace svm
