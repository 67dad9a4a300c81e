#include "vm/vm_lifecycle.h"

#include "util/error.h"
#include "vm/libvirt_handles.h"

#include <gtest/gtest.h>

#include <string>

namespace svm {
namespace {

using std::chrono::milliseconds;

// The test driver's domains need no emulator, so their whole life takes microseconds.
std::string test_domain_xml(const std::string &name) {
    return "<domain type='test'><name>" + name +
           "</name><memory>65536</memory><os><type>hvm</type></os></domain>";
}

// Pauses the running domain as Slurm's freezer or a SIGSTOP of QEMU leaves it.
void pause_domain(virConnectPtr conn, const std::string &name) {
    auto dom = lookup_domain(conn, name);
    ASSERT_TRUE(dom.has_value());
    ASSERT_EQ(virDomainSuspend(dom->get()), 0);
}

// test:///default is in-process state shared by the connections open at the same time: one
// connection per test, closed at its end, gives every test a fresh driver.
class VmLifecycleTest : public ::testing::Test {
  protected:
    ConnectionPtr conn = open_connection("test:///default");
    const std::string name = "svm-7-node1";
};

TEST_F(VmLifecycleTest, StartsAbsentWithoutTouchingLibvirt) {
    VmLifecycle vm(conn.get(), name);
    EXPECT_EQ(vm.state(), VmState::Absent);
    EXPECT_FALSE(lookup_domain(conn.get(), name).has_value());
}

TEST_F(VmLifecycleTest, CreateStartsATransientDomain) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    EXPECT_EQ(vm.state(), VmState::Starting);
    auto dom = lookup_domain(conn.get(), name);
    ASSERT_TRUE(dom.has_value());
    EXPECT_EQ(virDomainIsActive(dom->get()), 1);
    EXPECT_EQ(virDomainIsPersistent(dom->get()), 0);
}

TEST_F(VmLifecycleTest, CreateWithBadXmlNamesTheDomainAndLibvirtsReason) {
    VmLifecycle vm(conn.get(), name);
    try {
        vm.create("<domain type='test'><name>" + name + "</name>");
        FAIL() << "create accepted broken XML";
    } catch (const Error &e) {
        std::string message = e.what();
        EXPECT_NE(message.find("cannot create domain svm-7-node1: "), std::string::npos) << message;
        EXPECT_NE(message.find("Premature end of data"), std::string::npos) << message;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
    EXPECT_EQ(vm.state(), VmState::Failed);
}

TEST_F(VmLifecycleTest, CreateRejectsXmlForAnotherDomainAndLeavesNothingRunning) {
    VmLifecycle vm(conn.get(), name);
    try {
        vm.create(test_domain_xml("svm-8-node1"));
        FAIL() << "create accepted XML naming another domain";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "cannot create domain svm-7-node1: its XML names the domain 'svm-8-node1'");
    }
    EXPECT_FALSE(lookup_domain(conn.get(), "svm-8-node1").has_value());
}

TEST_F(VmLifecycleTest, CreateTwiceIsRefused) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    try {
        vm.create(test_domain_xml(name));
        FAIL() << "second create accepted";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "cannot create domain svm-7-node1: it is already starting");
    }
}

TEST_F(VmLifecycleTest, CreateFailsWhenTheDomainAlreadyExists) {
    VmLifecycle first(conn.get(), name);
    first.create(test_domain_xml(name));
    VmLifecycle second(conn.get(), name);
    try {
        second.create(test_domain_xml(name));
        FAIL() << "created a second domain of the same name";
    } catch (const Error &e) {
        std::string message = e.what();
        EXPECT_EQ(message.rfind("cannot create domain svm-7-node1: ", 0), 0u) << message;
        EXPECT_NE(message.find("already exists"), std::string::npos) << message;
    }
}

TEST_F(VmLifecycleTest, WaitReadyReturnsOnceTheProbeSucceeds) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    int calls = 0;
    bool ready = vm.wait_ready(milliseconds(10000), [&](milliseconds remaining) {
        EXPECT_GT(remaining.count(), 0);
        return ++calls == 3;
    });
    EXPECT_TRUE(ready);
    EXPECT_EQ(calls, 3);
    EXPECT_EQ(vm.state(), VmState::Ready);
}

TEST_F(VmLifecycleTest, WaitReadyReturnsFalseWhenTheProbeNeverSucceeds) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    int calls = 0;
    EXPECT_FALSE(vm.wait_ready(milliseconds(150), [&](milliseconds) {
        ++calls;
        return false;
    }));
    EXPECT_GE(calls, 1);
    EXPECT_EQ(vm.state(), VmState::Failed);
    // A VM that missed its deadline is still running: the caller stops it.
    EXPECT_TRUE(vm.stop(milliseconds(1000)).was_running);
    EXPECT_EQ(vm.state(), VmState::Gone);
}

TEST_F(VmLifecycleTest, WaitReadyFailsEarlyWhenTheDomainStops) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    int calls = 0;
    try {
        vm.wait_ready(milliseconds(60000), [&](milliseconds) {
            // The guest powers off while booting (a kernel panic with reboot=off does this).
            if (++calls == 2) {
                auto dom = lookup_domain(conn.get(), name);
                virDomainDestroy(dom->get());
            }
            return false;
        });
        FAIL() << "wait_ready went on with a stopped domain";
    } catch (const VmStoppedError &e) {
        // Its own type: the caller tells a guest that died from one that never answered.
        EXPECT_STREQ(e.what(),
                     "domain svm-7-node1 stopped running before it was ready: it no longer "
                     "exists (it crashed or powered off)");
    }
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(vm.state(), VmState::Failed);
}

TEST_F(VmLifecycleTest, WaitReadyPassesOnTheProbesError) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    EXPECT_THROW(vm.wait_ready(milliseconds(1000),
                               [](milliseconds) -> bool { throw Error("agent: bad reply"); }),
                 Error);
    EXPECT_EQ(vm.state(), VmState::Failed);
}

TEST_F(VmLifecycleTest, StopShutsARunningDomainDownGracefully) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    ASSERT_TRUE(vm.wait_ready(milliseconds(1000), [](milliseconds) { return true; }));
    StopReport report = vm.stop(milliseconds(5000));
    EXPECT_TRUE(report.was_running);
    EXPECT_TRUE(report.graceful);
    EXPECT_FALSE(report.destroyed);
    EXPECT_EQ(report.detail.rfind("domain svm-7-node1 powered off after ", 0), 0u) << report.detail;
    EXPECT_EQ(vm.state(), VmState::Gone);
    EXPECT_FALSE(lookup_domain(conn.get(), name).has_value());
}

TEST_F(VmLifecycleTest, StopFromAnotherLifecycleFindsTheDomainByName) {
    // The prolog creates the VM and exits; the epilog stops it by name.
    {
        VmLifecycle prolog(conn.get(), name);
        prolog.create(test_domain_xml(name));
    }
    ASSERT_TRUE(lookup_domain(conn.get(), name).has_value());
    VmLifecycle epilog(conn.get(), name);
    StopReport report = epilog.stop(milliseconds(5000));
    EXPECT_TRUE(report.was_running);
    EXPECT_TRUE(report.graceful);
    EXPECT_FALSE(lookup_domain(conn.get(), name).has_value());
}

TEST_F(VmLifecycleTest, StopOfADestroyedDomainIsHarmless) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    vm.destroy();
    StopReport report = vm.stop(milliseconds(1000));
    EXPECT_FALSE(report.was_running);
    EXPECT_FALSE(report.graceful);
    EXPECT_FALSE(report.destroyed);
    EXPECT_EQ(report.detail, "domain svm-7-node1 was not running");
    EXPECT_EQ(vm.state(), VmState::Gone);
}

TEST_F(VmLifecycleTest, StopOfADomainDestroyedBehindOurBackIsHarmless) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    virDomainDestroy(lookup_domain(conn.get(), name)->get());
    StopReport report = vm.stop(milliseconds(1000));
    EXPECT_FALSE(report.was_running);
    EXPECT_EQ(vm.state(), VmState::Gone);
}

TEST_F(VmLifecycleTest, StopOfANeverCreatedDomainIsHarmless) {
    VmLifecycle vm(conn.get(), "svm-99-node1");
    StopReport report = vm.stop(milliseconds(1000));
    EXPECT_FALSE(report.was_running);
    EXPECT_EQ(report.detail, "domain svm-99-node1 was not running");
}

TEST_F(VmLifecycleTest, StopOfASuspendedDomainResumesItAndShutsItDown) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    ASSERT_TRUE(vm.wait_ready(milliseconds(1000), [](milliseconds) { return true; }));
    pause_domain(conn.get(), name);
    StopReport report = vm.stop(milliseconds(5000));
    EXPECT_TRUE(report.was_running);
    EXPECT_TRUE(report.graceful);
    EXPECT_FALSE(lookup_domain(conn.get(), name).has_value());
}

// The job is over: the agent is asked first and, when it powers the guest off, that is the
// path. The test driver's shutdown stands in for the guest's own power-off.
TEST_F(VmLifecycleTest, StopAsksTheAgentFirstAndReportsItsPowerOff) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    int asked = 0;
    milliseconds given{0};
    StopReport report = vm.stop(milliseconds(30000), [&](milliseconds timeout) {
        ++asked;
        given = timeout;
        virDomainShutdown(lookup_domain(conn.get(), name)->get());
        return std::string();
    });
    EXPECT_EQ(asked, 1);
    EXPECT_EQ(given, kAgentAnswerTimeout);
    EXPECT_TRUE(report.was_running);
    EXPECT_TRUE(report.graceful);
    EXPECT_FALSE(report.destroyed);
    EXPECT_EQ(report.path, StopPath::Agent);
    EXPECT_EQ(report.detail.rfind("domain svm-7-node1 powered off after ", 0), 0u) << report.detail;
    EXPECT_EQ(report.detail.substr(report.detail.size() - 11), " ms (agent)") << report.detail;
    EXPECT_LT(report.shutdown_time, milliseconds(1000));
    EXPECT_EQ(vm.state(), VmState::Gone);
    EXPECT_FALSE(lookup_domain(conn.get(), name).has_value());
}

// An old agent (no answer), a refusal, or no channel: the power button, as before, and the log
// says why the agent did not.
TEST_F(VmLifecycleTest, StopFallsBackToTheAcpiButtonWhenTheAgentDoesNotAgree) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    StopReport report = vm.stop(milliseconds(30000), [](milliseconds) {
        return std::string("the VM's agent did not answer POWEROFF on x within 1000 ms");
    });
    EXPECT_TRUE(report.graceful);
    EXPECT_FALSE(report.destroyed);
    EXPECT_EQ(report.path, StopPath::Acpi);
    EXPECT_EQ(report.detail.rfind("domain svm-7-node1 powered off after ", 0), 0u) << report.detail;
    EXPECT_NE(report.detail.find(" ms (ACPI power button; agent: the VM's agent did not answer "
                                 "POWEROFF on x within 1000 ms)"),
              std::string::npos)
        << report.detail;
    EXPECT_FALSE(lookup_domain(conn.get(), name).has_value());
}

TEST_F(VmLifecycleTest, StopFallsBackToTheAcpiButtonWhenTheAgentAgreedButTheGuestRuns) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    StopReport report = vm.stop(
        milliseconds(30000), [](milliseconds) { return std::string(); }, milliseconds(100));
    EXPECT_EQ(report.path, StopPath::Acpi);
    EXPECT_TRUE(report.graceful);
    EXPECT_NE(report.detail.find("(ACPI power button; the agent agreed to power off but the "
                                 "domain still ran "),
              std::string::npos)
        << report.detail;
}

TEST_F(VmLifecycleTest, StopTakesAnAgentThatThrowsForOneThatRefused) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    StopReport report = vm.stop(milliseconds(30000), [](milliseconds) -> std::string {
        throw Error("cannot open /run/x: No such file or directory");
    });
    EXPECT_EQ(report.path, StopPath::Acpi);
    EXPECT_NE(report.detail.find("agent: cannot open /run/x: No such file or directory)"),
              std::string::npos)
        << report.detail;
}

TEST_F(VmLifecycleTest, StopReportsAGuestThatWentWhileTheAgentWasAsked) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    StopReport report = vm.stop(milliseconds(30000), [&](milliseconds) {
        virDomainShutdown(lookup_domain(conn.get(), name)->get());
        return std::string("lost the connection to the VM's agent (the channel x was closed)");
    });
    EXPECT_EQ(report.path, StopPath::Agent);
    EXPECT_TRUE(report.graceful);
    EXPECT_NE(report.detail.find(" ms (agent; its answer was lost: lost the connection"),
              std::string::npos)
        << report.detail;
}

// slurm-vm try --destroy: no grace, no agent, straight to the end.
TEST_F(VmLifecycleTest, StopWithoutAGracePeriodDoesNotAskTheAgent) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    bool asked = false;
    StopReport report = vm.stop(milliseconds(0), [&](milliseconds) {
        asked = true;
        return std::string();
    });
    EXPECT_FALSE(asked);
    EXPECT_NE(report.path, StopPath::Agent);
    EXPECT_FALSE(lookup_domain(conn.get(), name).has_value());
}

TEST(StopPath, NamesEachPathForTheLog) {
    EXPECT_STREQ(to_string(StopPath::Agent), "agent");
    EXPECT_STREQ(to_string(StopPath::Acpi), "ACPI power button");
    EXPECT_STREQ(to_string(StopPath::Destroy), "destroyed");
    EXPECT_STREQ(to_string(StopPath::None), "not running");
}

TEST_F(VmLifecycleTest, DestroyPowersOffAtOnceAndIsIdempotent) {
    VmLifecycle vm(conn.get(), name);
    vm.create(test_domain_xml(name));
    vm.destroy();
    EXPECT_EQ(vm.state(), VmState::Gone);
    EXPECT_FALSE(lookup_domain(conn.get(), name).has_value());
    vm.destroy();
    EXPECT_EQ(vm.state(), VmState::Gone);
}

TEST_F(VmLifecycleTest, AttachTakesAPausedDomainAsSuspended) {
    VmLifecycle prolog(conn.get(), name);
    prolog.create(test_domain_xml(name));
    pause_domain(conn.get(), name);
    VmLifecycle other(conn.get(), name);
    EXPECT_EQ(other.attach(), VmState::Suspended);
}

TEST(LibvirtHandles, OpenConnectionNamesTheUriAndLibvirtsReason) {
    try {
        open_connection("nosuchdriver:///system");
        FAIL() << "connected to a driver that does not exist";
    } catch (const Error &e) {
        std::string message = e.what();
        EXPECT_EQ(message.rfind("cannot connect to libvirt at nosuchdriver:///system: ", 0), 0u)
            << message;
        EXPECT_EQ(message.find("unknown libvirt error"), std::string::npos) << message;
    }
}

TEST(LibvirtHandles, LookupOfAMissingDomainIsEmpty) {
    ConnectionPtr conn = open_connection("test:///default");
    EXPECT_FALSE(lookup_domain(conn.get(), "svm-1-nowhere").has_value());
    // The test driver starts with one running domain named "test".
    EXPECT_TRUE(lookup_domain(conn.get(), "test").has_value());
}

TEST_F(VmLifecycleTest, PinsEachVcpuRoundRobinAndTheEmulatorOnAllCpus) {
    VmLifecycle vm(conn.get(), name);
    vm.create("<domain type='test'><name>" + name +
              "</name><memory>65536</memory><vcpu>3</vcpu><os><type>hvm</type></os></domain>");
    vm.pin({2, 5});
    auto dom = lookup_domain(conn.get(), name);
    ASSERT_TRUE(dom.has_value());
    unsigned char maps[3] = {0, 0, 0};
    ASSERT_EQ(virDomainGetVcpuPinInfo(dom->get(), 3, maps, 1, 0), 3);
    EXPECT_EQ(maps[0], 1u << 2);
    EXPECT_EQ(maps[1], 1u << 5);
    EXPECT_EQ(maps[2], 1u << 2);
    unsigned char emulator = 0;
    ASSERT_EQ(virDomainGetEmulatorPinInfo(dom->get(), &emulator, 1, 0), 1);
    EXPECT_EQ(emulator, (1u << 2) | (1u << 5));
}

TEST_F(VmLifecycleTest, PinRefusesNoCpusAndADomainThatIsNotRunning) {
    VmLifecycle vm(conn.get(), name);
    try {
        vm.pin({0});
        FAIL() << "pinned a domain that does not exist";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "cannot pin domain svm-7-node1: it is not running");
    }
    vm.create(test_domain_xml(name));
    try {
        vm.pin({});
        FAIL() << "pinned on no CPUs";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "cannot pin domain svm-7-node1: no CPUs given");
    }
}

}  // namespace
}  // namespace svm
