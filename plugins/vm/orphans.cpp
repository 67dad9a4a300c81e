#include "vm/orphans.h"

#include "util/config.h"

#include "util/error.h"
#include "vm/libvirt_handles.h"
#include "vm/vm_lifecycle.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace svm {

namespace fs = std::filesystem;

namespace {

// The job id of an entry named for `node` whose job is not live, if the name is one of ours.
std::optional<uint32_t> dead_job_of(std::string_view name, std::string_view node,
                                    const std::function<bool(uint32_t)> &job_is_live) {
    auto parsed = parse_domain_name(name);
    if (!parsed || (!node.empty() && parsed->second != node) || parsed->first >= kAdminToolJobIds ||
        job_is_live(parsed->first)) {
        return std::nullopt;
    }
    return parsed->first;
}

// Calls remove_one(path) for every entry of dir whose name, less `suffix`, is one of node's
// dead jobs' names. A missing directory holds nothing.
void for_each_dead_entry(const fs::path &dir, std::string_view suffix, std::string_view node,
                         const std::function<bool(uint32_t)> &job_is_live,
                         const std::function<void(const fs::path &)> &remove_one,
                         OrphanReport &report) {
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) {
        if (ec != std::errc::no_such_file_or_directory) {
            report.errors.push_back("cannot list " + dir.string() + ": " + ec.message());
        }
        return;
    }
    for (; it != fs::directory_iterator(); it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (name.size() <= suffix.size() || !name.ends_with(suffix)) {
            continue;
        }
        name.resize(name.size() - suffix.size());
        if (dead_job_of(name, node, job_is_live)) {
            remove_one(it->path());
        }
    }
    if (ec) {
        report.errors.push_back("cannot list " + dir.string() + ": " + ec.message());
    }
}

}  // namespace

std::vector<std::string> find_orphan_domains(virConnectPtr conn, std::string_view node,
                                             const std::function<bool(uint32_t)> &job_is_live) {
    silence_libvirt_stderr();
    virDomainPtr *domains = nullptr;
    int count = virConnectListAllDomains(conn, &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (count < 0) {
        throw Error("cannot list the libvirt domains of node " + std::string(node) + ": " +
                    libvirt_last_error());
    }
    // Owned right away, so no handle leaks if job_is_live throws.
    std::vector<DomainPtr> owned;
    owned.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        owned.emplace_back(domains[i]);
    }
    free(domains);

    std::vector<std::string> orphans;
    for (const DomainPtr &dom : owned) {
        const char *name = virDomainGetName(dom.get());
        if (name != nullptr && dead_job_of(name, node, job_is_live)) {
            orphans.emplace_back(name);
        }
    }
    std::sort(orphans.begin(), orphans.end());
    return orphans;
}

OrphanReport remove_orphans(virConnectPtr conn, std::string_view node,
                            const std::function<bool(uint32_t)> &job_is_live,
                            const std::string &state_dir, const std::string &run_dir) {
    OrphanReport report;
    for (const std::string &name : find_orphan_domains(conn, node, job_is_live)) {
        try {
            VmLifecycle(conn, name).destroy();
            report.destroyed_domains.push_back(name);
        } catch (const Error &e) {
            report.errors.push_back(e.what());
        }
    }

    // Both per-VM folders: <state_dir>/jobs/<domain> (overlay, state) and <run_dir>/<domain>
    // (channel sockets). remove_all() does not follow symbolic links, inside or at the top.
    const auto remove_folder = [&](const fs::path &path, std::vector<std::string> &removed) {
        std::error_code ec;
        const fs::file_status st = fs::symlink_status(path, ec);
        if (ec || !(fs::is_directory(st) || fs::is_symlink(st))) {
            return;
        }
        fs::remove_all(path, ec);
        if (ec) {
            report.errors.push_back("cannot remove " + path.string() + ": " + ec.message());
        } else {
            removed.push_back(path.string());
        }
    };
    for_each_dead_entry(
        fs::path(state_dir) / "jobs", "", node, job_is_live,
        [&](const fs::path &path) { remove_folder(path, report.removed_state_dirs); }, report);
    for_each_dead_entry(
        fs::path(run_dir), "", node, job_is_live,
        [&](const fs::path &path) { remove_folder(path, report.removed_channel_dirs); }, report);
    return report;
}

}  // namespace svm
