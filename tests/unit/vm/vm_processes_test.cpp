// Which processes are a job VM's, against a fake /proc and a fake libvirt run folder in a temp
// dir: the pid file, QEMU's command line, start times that tell a reused pid apart, children;
// and the pidfds that hold real ones while they are moved.
#include "vm/vm_processes.h"

#include "util/error.h"

#include "vm/test_process.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <thread>
#include <string>
#include <vector>

namespace svm {
namespace {

namespace fs = std::filesystem;

class VmProcessesTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-procs-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        proc = (dir / "proc").string();
        run = (dir / "run").string();
        fs::create_directories(proc);
        fs::create_directories(run);
    }
    void TearDown() override { fs::remove_all(dir); }

    // /proc/<pid>/stat as the kernel writes it (fields 1-22 matter here) and cmdline's NULs.
    void fake_process(pid_t pid, pid_t parent, uint64_t start, const std::string &comm,
                      const std::vector<std::string> &argv = {}) {
        const std::string p = proc + "/" + std::to_string(pid);
        fs::create_directories(p);
        std::string stat = std::to_string(pid) + " (" + comm + ") S " + std::to_string(parent);
        for (int field = 5; field <= 21; ++field) {
            stat += " 0";
        }
        stat += " " + std::to_string(start) + " 123456 789\n";
        write(p + "/stat", stat);
        std::string cmdline;
        for (const auto &arg : argv) {
            cmdline += arg;
            cmdline.push_back('\0');
        }
        write(p + "/cmdline", cmdline);
    }
    void qemu(pid_t pid, uint64_t start, const std::string &domain) {
        fake_process(pid, 1, start, "qemu-system-x86",
                     {"/usr/bin/qemu-system-x86_64", "-name",
                      "guest=" + domain + ",debug-threads=on", "-S"});
    }
    static void write(const std::string &path, const std::string &text) {
        std::ofstream(path, std::ios::binary) << text;
    }
    template <typename F>
    static std::string error_of(F &&f) {
        try {
            f();
        } catch (const Error &e) {
            return e.what();
        }
        return "no error";
    }

    fs::path dir;
    std::string proc, run;
};

TEST_F(VmProcessesTest, ReadsTheStartTimeAfterACommandNameWithSpacesAndParentheses) {
    fake_process(77, 1, 4242, "odd) name (x");
    EXPECT_EQ(process_start_ticks(77, proc), 4242u);
    EXPECT_EQ(error_of([&] { process_start_ticks(78, proc); }), "process 78 is gone");
    write(proc + "/77/stat", "77 (short) S 1 0\n");
    EXPECT_EQ(error_of([&] { process_start_ticks(77, proc); }),
              "cannot read the start time of process 77 from " + proc + "/77/stat");
}

TEST_F(VmProcessesTest, KnowsQemuByTheGuestNameOnItsCommandLine) {
    qemu(100, 5, "svm-42-node1");
    EXPECT_TRUE(runs_guest(100, "svm-42-node1", proc));
    EXPECT_FALSE(runs_guest(100, "svm-4-node1", proc));  // not a prefix match
    EXPECT_FALSE(runs_guest(100, "svm-42-node", proc));
    EXPECT_FALSE(runs_guest(101, "svm-42-node1", proc));  // no such process
    fake_process(102, 1, 5, "qemu", {"qemu", "-name", "guest=svm-42-node1"});
    EXPECT_TRUE(runs_guest(102, "svm-42-node1", proc));
    fake_process(103, 1, 5, "sh", {"sh", "-c", "echo guest=svm-42-node1,x"});
    EXPECT_FALSE(runs_guest(103, "svm-42-node1", proc));  // one argument, not the whole line
}

// A command line that never comes (here a FIFO nobody writes; for a real process, a memory map
// the user keeps busy with userfaultfd) must not hold root's check up.
TEST_F(VmProcessesTest, GivesUpOnACommandLineThatDoesNotComeWithinItsDeadline) {
    fake_process(104, 1, 5, "qemu");
    const std::string fifo = proc + "/104/cmdline";
    fs::remove(fifo);
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    auto answer = std::make_shared<std::promise<bool>>();
    std::future<bool> result = answer->get_future();
    std::thread([answer, this] {
        answer->set_value(runs_guest(104, "svm-42-node1", proc));
    }).detach();
    const bool answered = result.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
    if (!answered) {
        // Let the reader that had no deadline go: a writer that closes at once gives it EOF.
        const int fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
        if (fd >= 0) {
            close(fd);
        }
        result.wait();
    }
    EXPECT_TRUE(answered) << "runs_guest waited more than 10 s for /proc/<pid>/cmdline";
    EXPECT_FALSE(result.get());
}

TEST_F(VmProcessesTest, FindsQemuThroughLibvirtsPidFile) {
    qemu(4321, 999, "svm-42-node1");
    write(run + "/svm-42-node1.pid", "4321");
    const ProcessIdentity found = find_qemu("svm-42-node1", run, proc);
    EXPECT_EQ(found.pid, 4321);
    EXPECT_EQ(found.start_ticks, 999u);
}

TEST_F(VmProcessesTest, RefusesAPidFileThatIsMissingGarbledOrStale) {
    EXPECT_EQ(error_of([&] { find_qemu("svm-42-node1", run, proc); }),
              "no QEMU pid for domain svm-42-node1: cannot read " + run +
                  "/svm-42-node1.pid: No such file or directory");
    write(run + "/svm-42-node1.pid", "12ab\n");
    EXPECT_EQ(error_of([&] { find_qemu("svm-42-node1", run, proc); }),
              "no QEMU pid for domain svm-42-node1: " + run + "/svm-42-node1.pid holds '12ab'");
    write(run + "/svm-42-node1.pid", "555\n");
    EXPECT_EQ(
        error_of([&] { find_qemu("svm-42-node1", run, proc); }),
        "no QEMU for domain svm-42-node1 (" + run + "/svm-42-node1.pid): process 555 is gone");
    fake_process(555, 1, 3, "bash", {"bash"});  // the pid, reused by another program
    EXPECT_EQ(error_of([&] { find_qemu("svm-42-node1", run, proc); }),
              "no QEMU for domain svm-42-node1: process 555 (from " + run +
                  "/svm-42-node1.pid) does not run guest=svm-42-node1");
}

TEST_F(VmProcessesTest, TellsAReusedPidByItsStartTime) {
    qemu(600, 1000, "svm-42-node1");
    EXPECT_NO_THROW(check_same_process({600, 1000}, "QEMU of svm-42-node1", proc));
    EXPECT_EQ(error_of([&] {
                  check_same_process({600, 999}, "QEMU of svm-42-node1", proc);
              }),
              "QEMU of svm-42-node1 (process 600) is not running: pid 600 is another process "
              "now (started at tick 1000, not 999)");
    EXPECT_EQ(error_of([&] {
                  check_same_process({601, 1}, "virtiofsd of svm-42-node1", proc);
              }),
              "virtiofsd of svm-42-node1 (process 601) is not running: process 601 is gone");
}

TEST_F(VmProcessesTest, ListsChildrenAndTheirChildrenOnlyWithTheirStartTimes) {
    fake_process(10, 1, 1, "virtiofsd");
    fake_process(11, 10, 2, "virtiofsd");  // its sandbox child
    fake_process(12, 11, 3, "helper");
    fake_process(13, 1, 4, "other");
    fake_process(14, 13, 5, "other child");
    fs::create_directories(proc + "/self");  // not a pid
    write(proc + "/uptime", "1.0 1.0\n");
    std::vector<pid_t> found;
    for (const ProcessIdentity &p : process_descendants(10, proc)) {
        found.push_back(p.pid);
        EXPECT_EQ(p.start_ticks, p.pid == 11 ? 2u : 3u);
    }
    std::sort(found.begin(), found.end());
    EXPECT_EQ(found, (std::vector<pid_t>{11, 12}));
    EXPECT_TRUE(process_descendants(12, proc).empty());
}

TEST_F(VmProcessesTest, EndsOnParentIdsThatFormALoop) {
    fake_process(20, 21, 1, "a");
    fake_process(21, 20, 2, "b");
    const auto found = process_descendants(20, proc);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].pid, 21);
}

// Real processes from here: a pidfd needs one.

TEST_F(VmProcessesTest, HoldsAProcessByItsPidfdUntilItIsReaped) {
    test::TestProcess p("read x", "p");
    const ProcessHandle h = ProcessHandle::open(p.identity(), "QEMU of svm-42-node1");
    EXPECT_EQ(h.pid(), p.pid());
    EXPECT_TRUE(h.holds_pid());
    p.kill_only();  // a zombie still holds its pid
    EXPECT_TRUE(h.holds_pid());
    p.kill_and_reap();
    EXPECT_FALSE(h.holds_pid());
}

TEST_F(VmProcessesTest, OpensNoHandleOnAPidThatIsAnotherProcessNow) {
    test::TestProcess p("read x", "p");
    const ProcessIdentity other{p.pid(), p.identity().start_ticks + 1};
    EXPECT_EQ(error_of([&] { ProcessHandle::open(other, "QEMU of svm-42-node1"); }),
              "QEMU of svm-42-node1 (process " + std::to_string(p.pid()) +
                  ") is not running: pid " + std::to_string(p.pid()) +
                  " is another process now (started at tick " +
                  std::to_string(p.identity().start_ticks) + ", not " +
                  std::to_string(other.start_ticks) + ")");
    const ProcessIdentity gone = p.identity();
    p.kill_and_reap();
    EXPECT_EQ(error_of([&] { ProcessHandle::open(gone, "virtiofsd"); }).substr(0, 12),
              "virtiofsd (p");
    EXPECT_EQ(error_of([&] { ProcessHandle::open({0, 0}, "QEMU"); }), "QEMU: no process id");
}

}  // namespace
}  // namespace svm
