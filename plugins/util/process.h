// Runs an external program the way Slurm's own plugins do: no shell, no PATH search, no
// inherited descriptors, and always with a timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace svm {

struct ProcessResult {
    // The exit code, or 128 + the signal number when a signal ended the program (the shell's
    // convention; a timeout therefore gives 137); -1 if it could not be learnt (SIGCHLD ignored).
    int status = 0;
    // The first kMaxCapturedOutput bytes of each stream; the rest is read and dropped so the
    // program never blocks on a full pipe.
    std::string out, err;
    bool timed_out = false;
    // The stream was longer than kMaxCapturedOutput, so `out` (or `err`) is only its start. A
    // caller that parses `out` must refuse it then: a prefix of a record list looks valid.
    bool out_truncated = false, err_truncated = false;
};

// At most this much of stdout and of stderr is kept by run_process. The root paths rely on
// it as a bound on what a program they run can make them hold.
inline constexpr std::size_t kMaxCapturedOutput = 64 * 1024;

// Runs argv (argv[0] must be an absolute path) with stdin on /dev/null, in its own process
// group. On timeout the whole group gets SIGKILL and timed_out is set. Throws Error when the
// program cannot be started at all ("cannot run /usr/bin/x: No such file or directory").
ProcessResult run_process(const std::vector<std::string> &argv, std::chrono::milliseconds timeout);

// Receives one line of output without its '\n'. `complete` is false for a line longer than
// kMaxLineLength: `line` is then its first kMaxLineLength bytes and the rest was dropped.
using LineHandler = std::function<void(std::string_view line, bool complete)>;

inline constexpr std::size_t kMaxLineLength = 1024 * 1024;

// Cuts a byte stream into lines for a LineHandler. It holds at most one line, and at most
// kMaxLineLength bytes of it, whatever the length of the stream.
class LineSplitter {
  public:
    explicit LineSplitter(LineHandler on_line) : on_line_(std::move(on_line)) {}
    void feed(std::string_view bytes);
    // Hands over a last line that had no '\n'.
    void finish();

  private:
    LineHandler on_line_;
    std::string partial_;
    bool cut_ = false;
};

// As run_process, but stdout has no size cap: each line goes to on_line as it arrives, so
// memory is bounded by what on_line keeps, not by the output (sacct over a month can print
// megabytes). The result's `out` stays empty; `err` is kept as in run_process. When on_line
// throws, the program's group is killed and reaped, then the exception propagates.
ProcessResult run_process_lines(const std::vector<std::string> &argv,
                                std::chrono::milliseconds timeout, const LineHandler &on_line);

// Reads at most `max_bytes` of the file at `path` in a child process that is killed when it
// takes longer than `timeout`: some files of another user's process block their reader for as
// long as that process wants (/proc/<pid>/cmdline waits for the process's memory map, which a
// process can hold busy with userfaultfd; a FIFO waits for a writer). Throws Error naming the
// file when it cannot be read or the deadline passes.
std::string read_file_with_deadline(const std::string &path, std::size_t max_bytes,
                                    std::chrono::milliseconds timeout);

// The absolute path of `name` in /usr/bin:/usr/sbin:/bin:/sbin (a fixed list: slurmd's PATH is
// not ours to trust). Throws Error when it is in none of them.
std::string find_program(const std::string &name);

}  // namespace svm
