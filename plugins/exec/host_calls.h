// Host calls, host side: the Slurm client commands (srun, squeue, ...) that a VM job's command
// asks for run here, as children of the exec client (so as the job's user, in the job's
// environment), and their output and exit status go back to the guest as frames.
#pragma once

#include <cstdint>
#include <map>
#include <poll.h>
#include <string>
#include <sys/types.h>
#include <vector>

#include "exec/exec_client.h"  // HostCallPolicy
#include "util/fd.h"
#include "exec/protocol/messages.h"

namespace svm {

class HostCallRunner {
  public:
    // Frames go out stamped with session.
    HostCallRunner(const HostCallPolicy &policy, std::uint32_t session);
    // Stops what still runs (see stop_all).
    ~HostCallRunner();
    HostCallRunner(const HostCallRunner &) = delete;
    HostCallRunner &operator=(const HostCallRunner &) = delete;

    // A HOSTCALL frame: starts the command, or appends to `out` the frames that refuse it (a
    // message on its stderr; exit 127 when the command is not allowed or not found, 1 when the
    // policy refuses its arguments or environment, see HostCallPolicy::refusal).
    void start(const HostCallRequest &request, std::string &out);
    // A HOSTCALL_SIGNAL frame: the signal goes to the command's process group.
    void signal(const HostCallSignal &signal);

    // Appends the descriptors to poll (the output pipes only while `room`: backpressure when
    // the channel to the guest is full); after poll(), process() takes the same vector and the
    // index of the first of them and appends output and exit frames to `out`. It reads output
    // only while `out` holds less than out_limit bytes, so that many commands at once add one
    // chunk past it, not one chunk each.
    void add_pollfds(std::vector<pollfd> &pfds, bool room);
    void process(const std::vector<pollfd> &pfds, std::size_t first, std::string &out,
                 std::size_t out_limit);
    // How long poll() may sleep before process() has work that no descriptor announces
    // (a drain deadline); -1: no limit.
    int poll_timeout_ms() const;
    std::size_t running() const { return calls_.size(); }

    // SIGTERM to every command still running, SIGKILL to what is left 5 s later; reaps all.
    void stop_all();

  private:
    struct Call {
        pid_t pid = -1;
        UniqueFd pidfd;  // readable once the command exits (absent: poll waitpid)
        UniqueFd stdout_r, stderr_r;
        bool exited = false;
        int status = 0;
        std::int64_t drain_deadline = 0;
    };
    enum class Kind { Stdout, Stderr, Exit };

    void refuse(std::uint32_t call, const std::string &message, int exit_code, std::string &out);
    bool read_output(std::uint32_t call, UniqueFd &pipe, bool is_stdout, std::string &out);
    void check_exit(Call &call);

    HostCallPolicy policy_;
    std::uint32_t session_;
    std::map<std::uint32_t, Call> calls_;
    std::vector<std::pair<std::uint32_t, Kind>> polled_;
};

}  // namespace svm
