// Host calls end to end on the host, without a VM: the real agent serves unix sockets, a
// session's command runs the agent binary under the name srun (a link, as in the guest), and
// the exec client runs fake Slurm commands from a test folder in place of the real ones.
#include "exec/agent_harness.h"
#include "exec/exec_client.h"
#include "exec/host_calls.h"
#include "util/fd.h"
#include "exec/protocol/frame.h"
#include "exec/protocol/messages.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

namespace svm {
namespace {

namespace fs = std::filesystem;
using protocol::FrameType;

using test::kWaitTries;
using test::wait_until;

const char *const kStepsAllow = "host_calls=steps allows srun, scancel, squeue, sstat";
const char *const kAllAllow =
    "host_calls=all allows srun, sbatch, scancel, scontrol, squeue, sacct, sinfo, sstat, salloc";

UniqueFd memfd() {
    UniqueFd fd(::memfd_create("svm-hostcall-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd);
    return fd;
}

std::string read_all(int fd) {
    ::lseek(fd, 0, SEEK_SET);
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

bool process_gone(pid_t pid) {
    return ::kill(pid, 0) != 0 && errno == ESRCH;
}

class HostCallTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-hostcall-test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        // Traversable, so that a session of another user reaches its socket below.
        fs::permissions(dir_,
                        fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
        fs::create_directory(guest_bin());
        fs::create_directory(host_bin());
        for (const auto &name : protocol::hostcall_commands()) {
            fs::create_symlink(SVM_AGENT_PATH, guest_bin() + "/" + name);
        }
        for (int i = 0; i < 2; ++i) {
            std::ofstream(dir_ + "/exec." + std::to_string(i) + ".lock").put('\n');
        }
        ASSERT_NO_FATAL_FAILURE(agent_.start(dir_, {"--hostcall-dir", hostcall_dir()}, false));
        // The client is the job's task: Slurm gave it the job's id, which the guest's got too.
        if (const char *id = std::getenv("SLURM_JOB_ID")) {
            saved_job_id_ = id;
        }
        ::setenv("SLURM_JOB_ID", "42", 1);
    }

    void TearDown() override {
        if (saved_job_id_) {
            ::setenv("SLURM_JOB_ID", saved_job_id_->c_str(), 1);
        } else {
            ::unsetenv("SLURM_JOB_ID");
        }
        agent_.stop();
        std::error_code ignored;
        fs::remove_all(dir_, ignored);
    }

    std::string socket_path(int i) const { return dir_ + "/exec." + std::to_string(i) + ".sock"; }
    std::string hostcall_dir() const { return dir_ + "/hostcall"; }
    // In the "guest": srun, squeue, ... as links to the agent binary.
    std::string guest_bin() const { return dir_ + "/guest-bin"; }
    // On the "host": the fake Slurm commands the client runs.
    std::string host_bin() const { return dir_ + "/host-bin"; }

    void write_fake(const std::string &name, const std::string &body) {
        const std::string path = host_bin() + "/" + name;
        std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
        fs::permissions(path, fs::perms::owner_all);
    }

    HostCallPolicy policy() const {
        HostCallPolicy p;
        p.mode = mode_;
        p.search_dirs = {host_bin()};
        return p;
    }

    // Runs `script` with sh in the "guest" as a job's command would run; returns the wait
    // status, with stdout and stderr captured.
    ExecRequest script_request(const std::string &script) const {
        ExecRequest r;
        r.argv = {"sh", "-c", script};
        r.env = {"PATH=" + guest_bin() + ":/usr/local/bin:/usr/bin:/bin", "LC_ALL=C",
                 "SLURM_JOB_ID=42", "D=" + dir_};
        r.cwd = dir_;
        r.uid = ::getuid();
        r.gid = ::getgid();
        return r;
    }

    int run_script(const std::string &script, std::string *out, std::string *err = nullptr) {
        return run_request(script_request(script), out, err);
    }

    int run_request(const ExecRequest &r, std::string *out, std::string *err = nullptr) {
        UniqueFd out_fd = memfd(), err_fd = memfd();
        const int status =
            run_in_guest(dir_, 2, r, -1, out_fd.get(), err_fd.get(), nullptr, policy());
        if (out) {
            *out = read_all(out_fd.get());
        }
        if (err) {
            *err = read_all(err_fd.get());
        }
        return status;
    }

    std::string dir_;
    test::AgentProcess agent_;
    HostCalls mode_ = HostCalls::Steps;  // the plugstack default
    std::optional<std::string> saved_job_id_;
};

TEST_F(HostCallTest, RunsSrunOnTheHostWithItsOutputStreamsAndExitCode) {
    write_fake("srun",
               "echo \"args: $*\"; echo \"job: $SLURM_JOB_ID\"; echo \"on-stderr\" >&2; exit 5");
    std::string out, err;
    EXPECT_EQ(run_script("srun -n2 hostname; echo \"srun exited $?\"", &out, &err), 0);
    EXPECT_EQ(out, "args: -n2 hostname\njob: 42\nsrun exited 5\n");
    EXPECT_EQ(err, "on-stderr\n");
}

TEST_F(HostCallTest, RunsTwoCallsOfOneSessionAtTheSameTime) {
    // Each waits for the other's file: both succeed only if they run at the same time.
    write_fake("srun",
               "touch \"$1\"; i=0; while [ ! -e \"$2\" ] && [ $i -lt 200 ]; do sleep 0.05; "
               "i=$((i+1)); done; [ -e \"$2\" ] && echo \"$3 saw the other\"");
    std::string out;
    EXPECT_EQ(run_script("srun $D/a $D/b one >$D/one.out & p1=$!; "
                         "srun $D/b $D/a two >$D/two.out & p2=$!; "
                         "wait $p1; e1=$?; wait $p2; e2=$?; echo \"exits $e1 $e2\"; "
                         "cat $D/one.out $D/two.out",
                         &out),
              0);
    EXPECT_EQ(out, "exits 0 0\none saw the other\ntwo saw the other\n");
}

TEST_F(HostCallTest, RefusesACommandThatIsNotAllowed) {
    write_fake("rm", "touch \"$D/rm-ran\"");
    std::string out, err;
    EXPECT_EQ(run_script(std::string(SVM_AGENT_PATH) + " --hostcall rm -rf /nonexistent; "
                                                       "echo \"exit $?\"",
                         &out, &err),
              0);
    EXPECT_EQ(out, "exit 127\n");
    EXPECT_EQ(err, "slurm-vm: host call refused: rm is not allowed from inside a VM (" +
                       std::string(kStepsAllow) + ")\n");
    EXPECT_FALSE(fs::exists(dir_ + "/rm-ran"));
}

TEST_F(HostCallTest, RefusesAnAllowedNameGivenWithAPath) {
    write_fake("srun", "touch \"$D/srun-ran\"");
    const std::string path = host_bin() + "/srun";
    std::string out, err;
    EXPECT_EQ(run_script(std::string(SVM_AGENT_PATH) + " --hostcall " + path + "; echo \"exit $?\"",
                         &out, &err),
              0);
    EXPECT_EQ(out, "exit 127\n");
    EXPECT_EQ(err, "slurm-vm: host call refused: " + path +
                       ": give a command's name, not a path (" + std::string(kStepsAllow) + ")\n");
    EXPECT_FALSE(fs::exists(dir_ + "/srun-ran"));
}

TEST_F(HostCallTest, SaysWhenAnAllowedCommandIsNotOnTheHost) {
    std::string out, err;
    EXPECT_EQ(run_script("squeue; echo \"exit $?\"", &out, &err), 0);
    EXPECT_EQ(out, "exit 127\n");
    EXPECT_EQ(err, "slurm-vm: squeue: not found on the host (searched " + host_bin() + ")\n");
}

TEST_F(HostCallTest, TakesPathHomeAndLdVariablesFromTheHostNotTheGuest) {
    write_fake("squeue", "env | grep -E '^(LD_[A-Z_]*|PATH|HOME|SLURM_VM_HOSTCALL)=' | sort");
    std::vector<std::string> expected;
    for (char **e = environ; *e; ++e) {
        const std::string entry = *e;
        const std::string name = entry.substr(0, entry.find('='));
        if (name == "PATH" || name == "HOME" || name.starts_with("LD_")) {
            expected.push_back(entry);
        }
    }
    std::sort(expected.begin(), expected.end());
    std::string expected_text;
    for (const auto &e : expected) {
        expected_text += e + "\n";
    }
    std::string out;
    EXPECT_EQ(run_script("LD_PRELOAD=/guest/evil.so LD_LIBRARY_PATH=/guest/lib "
                         "HOME=/guest/home squeue -j 42",
                         &out),
              0);
    EXPECT_EQ(out, expected_text);
    EXPECT_EQ(out.find("/guest/"), std::string::npos) << out;
}

TEST_F(HostCallTest, ForwardsSigtermFromTheShimToTheHostCommand) {
    write_fake("srun", "trap 'echo got-term; exit 7' TERM; echo ready; sleep 100 & wait");
    std::string out;
    EXPECT_EQ(run_script("srun >$D/out & p=$!; i=0; "
                         "while ! grep -q ready $D/out 2>/dev/null && [ $i -lt 200 ]; do "
                         "sleep 0.05; i=$((i+1)); done; "
                         "kill -TERM $p; wait $p; echo \"exit $?\"; cat $D/out",
                         &out),
              0);
    EXPECT_EQ(out, "exit 7\nready\ngot-term\n");
}

TEST_F(HostCallTest, TheShimDiesOfTheSignalThatKilledTheHostCommand) {
    write_fake("srun", "kill -KILL $$");
    std::string out;
    EXPECT_EQ(run_script("srun; echo \"exit $?\"", &out), 0);
    EXPECT_EQ(out, "exit 137\n");
}

TEST_F(HostCallTest, StreamsLargeOutputCompletely) {
    write_fake("squeue", "head -c 3000000 /dev/zero | tr '\\0' y");
    std::string out;
    EXPECT_EQ(run_script("squeue | tr -d y | wc -c | tr -d ' '; squeue | wc -c | tr -d ' '", &out),
              0);
    EXPECT_EQ(out, "0\n3000000\n");
}

TEST_F(HostCallTest, RunsInTheGuestsWorkingDirectory) {
    write_fake("sstat", "pwd");
    fs::create_directory(dir_ + "/sub");
    std::string out;
    EXPECT_EQ(run_script("cd $D/sub && sstat", &out), 0);
    EXPECT_EQ(out, dir_ + "/sub\n");
}

TEST_F(HostCallTest, GivesEachSessionAPrivateSocketRemovedAtItsEnd) {
    std::string out;
    EXPECT_EQ(run_script("dirname \"$SLURM_VM_HOSTCALL\"; stat -c %a \"$SLURM_VM_HOSTCALL\"", &out),
              0);
    EXPECT_EQ(out, hostcall_dir() + "\n600\n");
    EXPECT_TRUE(wait_until([&] { return fs::is_empty(hostcall_dir()); }))
        << "a host-call socket outlived its session";
}

TEST_F(HostCallTest, TheSocketBelongsToTheSessionsUserAlone) {
    if (::getuid() != 0) {
        GTEST_SKIP() << "needs root to run a session as another user";
    }
    ExecRequest r = script_request("stat -c '%u %g %a' \"$SLURM_VM_HOSTCALL\"");
    r.uid = 65534;
    r.gid = 65534;
    r.groups = {65534};
    r.cwd = "/";
    std::string out, err;
    EXPECT_EQ(run_request(r, &out, &err), 0) << err;
    EXPECT_EQ(out, "65534 65534 600\n");
}

TEST_F(HostCallTest, KillsAHostCommandThatIgnoresSigtermWhenTheSessionEnds) {
    // The job's script leaves srun running in the background and ends: the host command must
    // not outlive the session, even one that ignores SIGTERM (SIGKILL follows 5 s later).
    write_fake("srun",
               "echo $$ >\"$1.tmp\"; mv \"$1.tmp\" \"$1\"; trap '' TERM; "
               "while :; do sleep 1; done");
    std::string out;
    EXPECT_EQ(run_script("srun $D/pid & i=0; while [ ! -s $D/pid ] && [ $i -lt 200 ]; do "
                         "sleep 0.05; i=$((i+1)); done; cat $D/pid",
                         &out),
              0);
    const pid_t pid = std::atoi(out.c_str());
    ASSERT_GT(pid, 0) << "the host command never started: " << out;
    // Reaped by the client before run_in_guest returned.
    EXPECT_TRUE(process_gone(pid));
}

TEST_F(HostCallTest, RefusesSrunPrologWithOneLineWithoutRunningSrun) {
    write_fake("srun", "touch \"$D/srun-ran\"");
    std::string out, err;
    EXPECT_EQ(run_script("srun --prolog=$D/x hostname; echo \"exit $?\"", &out, &err), 0);
    EXPECT_EQ(out, "exit 1\n");
    EXPECT_EQ(err,
              "slurm-vm: host call refused: srun --prolog runs a program on the host; not "
              "allowed from inside a VM\n");
    EXPECT_FALSE(fs::exists(dir_ + "/srun-ran"));
}

TEST_F(HostCallTest, RefusesSrunWithSlurmConfChangedInTheGuest) {
    write_fake("srun", "touch \"$D/srun-ran\"");
    std::string out, err;
    EXPECT_EQ(run_script("SLURM_CONF=$D/evil.conf srun hostname; echo \"exit $?\"", &out, &err), 0);
    EXPECT_EQ(out, "exit 1\n");
    EXPECT_EQ(err,
              "slurm-vm: host call refused: srun with SLURM_CONF changed inside the VM: it would "
              "read another Slurm configuration, and load the plugins that one names, on the "
              "host; not allowed from inside a VM\n");
    EXPECT_FALSE(fs::exists(dir_ + "/srun-ran"));
}

TEST_F(HostCallTest, UnderStepsRefusesSbatchAndScontrolButRunsTheStepCommands) {
    for (const char *name : {"srun", "scancel", "squeue", "sstat", "sbatch", "scontrol"}) {
        write_fake(name, std::string("echo ") + name + "-ran");
    }
    std::string out, err;
    EXPECT_EQ(run_script("for c in srun scancel squeue sstat sbatch scontrol; do $c; "
                         "echo \"$c exit $?\"; done",
                         &out, &err),
              0);
    EXPECT_EQ(out,
              "srun-ran\nsrun exit 0\nscancel-ran\nscancel exit 0\nsqueue-ran\nsqueue exit "
              "0\nsstat-ran\nsstat exit 0\nsbatch exit 127\nscontrol exit 127\n");
    EXPECT_EQ(err, "slurm-vm: host call refused: sbatch is not allowed from inside a VM (" +
                       std::string(kStepsAllow) +
                       ")\nslurm-vm: host call refused: scontrol is not allowed from inside a "
                       "VM (" +
                       std::string(kStepsAllow) + ")\n");
}

TEST_F(HostCallTest, UnderNoneEveryShimIsRefusedClearly) {
    mode_ = HostCalls::None;
    write_fake("srun", "touch \"$D/srun-ran\"");
    std::string out, err;
    EXPECT_EQ(run_script("srun hostname; echo \"exit $?\"", &out, &err), 0);
    EXPECT_EQ(out, "exit 127\n");
    EXPECT_EQ(err,
              "slurm-vm: host call refused: srun: this cluster allows no Slurm commands from "
              "inside a VM (host_calls=none)\n");
    EXPECT_FALSE(fs::exists(dir_ + "/srun-ran"));
}

TEST_F(HostCallTest, UnderAllRunsSbatchButStillRefusesSrunProlog) {
    mode_ = HostCalls::All;
    write_fake("sbatch", "echo \"sbatch $*\"");
    write_fake("srun", "touch \"$D/srun-ran\"");
    std::string out, err;
    EXPECT_EQ(run_script("sbatch --wrap true; srun --task-prolog $D/x true; echo \"exit $?\"", &out,
                         &err),
              0);
    EXPECT_EQ(out, "sbatch --wrap true\nexit 1\n");
    EXPECT_EQ(err,
              "slurm-vm: host call refused: srun --task-prolog runs a program on the host; not "
              "allowed from inside a VM\n");
    EXPECT_FALSE(fs::exists(dir_ + "/srun-ran"));
}

TEST_F(HostCallTest, AShimOutsideAJobSaysWhyItCannotRun) {
    const std::string command = "env -u SLURM_VM_HOSTCALL " + guest_bin() + "/srun hostname 2>&1";
    FILE *p = ::popen(command.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string text;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) {
        text += buf;
    }
    const int status = ::pclose(p);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 255) << "status " << status;
    EXPECT_EQ(text,
              "slurm-vm: srun: SLURM_VM_HOSTCALL is not set: Slurm commands run on the host "
              "only from within a slurm-vm job\n");
}

TEST(HostCallProtocol, RoundTripsARequest) {
    HostCallRequest r{7, {"srun", "-n2", "hostname"}, "/home/u", {"A=1", "B=x=y"}};
    HostCallRequest back = protocol::decode_hostcall(protocol::encode_hostcall(r));
    EXPECT_EQ(back.call, 7u);
    EXPECT_EQ(back.argv, r.argv);
    EXPECT_EQ(back.cwd, r.cwd);
    EXPECT_EQ(back.env, r.env);
}

TEST(HostCallProtocol, RejectsARequestWithARelativeDirectory) {
    try {
        protocol::decode_hostcall(R"({"call":1,"argv":["srun"],"cwd":"tmp","env":[]})");
        FAIL() << "accepted a relative cwd";
    } catch (const protocol::ProtocolError &e) {
        EXPECT_STREQ(e.what(),
                     "HOSTCALL request: field 'cwd': expected an absolute path, got \"tmp\"");
    }
}

TEST(HostCallProtocol, RejectsARequestWithoutACommand) {
    try {
        protocol::decode_hostcall(R"({"call":1,"argv":[],"cwd":"/","env":[]})");
        FAIL() << "accepted an empty argv";
    } catch (const protocol::ProtocolError &e) {
        EXPECT_STREQ(e.what(), "HOSTCALL request: field 'argv': must not be empty");
    }
}

TEST(HostCallProtocol, PrefixesOutputWithTheCallIdBigEndian) {
    const std::string payload = protocol::encode_hostcall_output(0x01020304, "hi");
    EXPECT_EQ(payload, std::string("\x01\x02\x03\x04hi", 6));
    HostCallOutput output = protocol::decode_hostcall_output(payload);
    EXPECT_EQ(output.call, 0x01020304u);
    EXPECT_EQ(output.data, "hi");
}

TEST(HostCallProtocol, RejectsOutputShorterThanItsCallId) {
    try {
        protocol::decode_hostcall_output("abc");
        FAIL() << "accepted a 3-byte payload";
    } catch (const protocol::ProtocolError &e) {
        EXPECT_STREQ(
            e.what(),
            "HOSTCALL output frame: payload of 3 bytes is shorter than its 4-byte call id");
    }
}

TEST(HostCallProtocol, RoundTripsExitCodesAndSignals) {
    RemoteExit code;
    code.exit_code = 5;
    HostCallExit back = protocol::decode_hostcall_exit(protocol::encode_hostcall_exit({3, code}));
    EXPECT_EQ(back.call, 3u);
    EXPECT_EQ(back.exit.wait_status(), code.wait_status());
    RemoteExit killed;
    killed.signaled = true;
    killed.signal = SIGKILL;
    back = protocol::decode_hostcall_exit(protocol::encode_hostcall_exit({4, killed}));
    EXPECT_EQ(back.call, 4u);
    EXPECT_TRUE(back.exit.signaled);
    EXPECT_EQ(back.exit.signal, SIGKILL);
}

TEST(HostCallProtocol, RejectsASignalThatIsNotForwarded) {
    try {
        protocol::decode_hostcall_signal(R"({"call":1,"signal":11})");
        FAIL() << "accepted SIGSEGV";
    } catch (const protocol::ProtocolError &e) {
        EXPECT_STREQ(e.what(),
                     "HOSTCALL_SIGNAL frame: field 'signal': SIGSEGV is not one of the forwarded "
                     "signals (HUP INT QUIT TERM USR1 USR2 TSTP CONT KILL)");
    }
    EXPECT_EQ(
        protocol::decode_hostcall_signal(protocol::encode_hostcall_signal({9, SIGINT})).signal,
        SIGINT);
}

TEST(HostCallProtocol, NamesTheNewFrameTypes) {
    EXPECT_STREQ(protocol::frame_type_name(FrameType::HostCall), "HOSTCALL");
    EXPECT_STREQ(protocol::frame_type_name(FrameType::HostCallExit), "HOSTCALL_EXIT");
    EXPECT_TRUE(protocol::is_known_frame_type(0x24));
    EXPECT_FALSE(protocol::is_request(FrameType::HostCall));
}

}  // namespace
}  // namespace svm
