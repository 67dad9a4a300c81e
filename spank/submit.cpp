// sbatch, srun, salloc: the user is still watching, so a bad --vm-image fails the command
// here with one line, before anything is queued.
#include "spank_common.h"

#include "catalog/catalog.h"
#include "exec/task_setup.h"
#include "util/error.h"
#include "catalog/image_name.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace svm::spank {

int on_submit_init_post_opt(spank_t sp) {
    std::string image = option_value();
    if (image.empty()) {
        const char *env = getenv(kImageEnv);
        if (env == nullptr || *env == '\0') {
            return 0;
        }
        image = env;
        const std::string problem = image_name_problem(image);
        if (!problem.empty()) {
            slurm_error("%s: %s=%s: image name is invalid: %s", kTag, kImageEnv, image.c_str(),
                        problem.c_str());
            return -1;
        }
    }
    // The catalog is normally readable on submit hosts; where it is not, slurmctld's
    // job_submit plugin and the prolog still check.
    if (access(config().catalog.c_str(), R_OK) == 0) {
        const Catalog catalog = Catalog::load(config().catalog);
        const std::string refusal = image_refusal(catalog, image, identity_of_uid(getuid(), ""));
        if (!refusal.empty()) {
            slurm_error("%s: %s", kTag, refusal.c_str());
            return -1;
        }
    }
    // The prolog and epilog see this as SPANK_SLURM_VM_IMAGE, whichever form the user used.
    if (spank_job_control_setenv(sp, kImageEnv, image.c_str(), 1) != ESPANK_SUCCESS) {
        slurm_debug("%s: cannot pass %s to the job's prolog", kTag, kImageEnv);
    }
    return 0;
}

namespace {

// This process's command line, word by word.
std::vector<std::string> own_command_line() {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> words;
    std::string word;
    for (char c : text) {
        if (c == '\0') {
            words.push_back(std::move(word));
            word.clear();
        } else {
            word += c;
        }
    }
    return words;
}

}  // namespace

// In srun, once the step is about to launch. slurmstepd runs the user's --task-prolog after
// task_init, which is where a VM task leaves slurmstepd; SPANK does not show the option to the
// task, so it travels in the step's environment (srun merges its environment into the step's
// after this callback) for the exec client to run. Always set or unset: a value that came with
// the environment (from a guest, through a host call) must never stand.
int on_local_user_init(spank_t sp) {
    if (spank_context() != S_CTX_LOCAL) {
        return 0;
    }
    // srun's own environment: spank_setenv is for remote contexts only, and srun copies its
    // environment into the step's when it launches it, after this callback.
    unsetenv(kTaskPrologEnv);
    int argc = 0;
    char **argv = nullptr;
    if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || argc < 1) {
        return 0;
    }
    // srun's own options are its words before the task's: {CONF_FILE, CONF_TEXT, ...} for
    // --multi-prog, whose text is not on the command line.
    const std::vector<std::string> words = own_command_line();
    std::size_t tail = static_cast<std::size_t>(argc);
    if (argc >= 2 && is_multi_prog_argv({argv[0], argv[1]}, multi_prog_file_text(argv[0]))) {
        tail -= 1;
    }
    std::vector<std::string> options;
    if (words.size() > tail + 1) {
        options.assign(words.begin() + 1, words.end() - static_cast<std::ptrdiff_t>(tail));
    }
    std::optional<std::string> prolog = find_task_prolog_option(options);
    if (!prolog) {
        if (const char *env = getenv("SLURM_TASK_PROLOG"); env != nullptr && *env != '\0') {
            prolog = env;  // srun's input variable for the option
        }
    }
    if (!prolog || prolog->empty()) {
        return 0;
    }
    // As given: slurmstepd refuses a path that is not absolute, and so does the exec client.
    if (setenv(kTaskPrologEnv, prolog->c_str(), 1) != 0) {
        slurm_error("%s: cannot pass --task-prolog to the step's tasks", kTag);
        return -1;
    }
    return 0;
}

}  // namespace svm::spank
