#include "accounting/vm_record.h"

#include "util/error.h"
#include "vm/vm_lifecycle.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>

namespace svm {
namespace {

namespace fs = std::filesystem;

VmRecord sample(uint32_t jobid = 42, const std::string &node = "node1") {
    VmRecord r;
    r.jobid = jobid;
    r.cluster = "svm";
    r.user = "alice";
    r.image = "tiny";
    r.node = node;
    r.physical_host = "host1";
    r.vm_hostname = node + "-vm" + std::to_string(jobid);
    r.domain = "svm-" + std::to_string(jobid) + "-" + node;
    r.vcpus = 2;
    r.memory_mib = 512;
    r.ready_at = 1700000000;
    r.stopped_at = 1700000600;
    r.stop = "graceful";
    return r;
}

void expect_same(const VmRecord &a, const VmRecord &b) {
    EXPECT_EQ(a.jobid, b.jobid);
    EXPECT_EQ(a.cluster, b.cluster);
    EXPECT_EQ(a.user, b.user);
    EXPECT_EQ(a.image, b.image);
    EXPECT_EQ(a.node, b.node);
    EXPECT_EQ(a.physical_host, b.physical_host);
    EXPECT_EQ(a.vm_hostname, b.vm_hostname);
    EXPECT_EQ(a.domain, b.domain);
    EXPECT_EQ(a.vcpus, b.vcpus);
    EXPECT_EQ(a.memory_mib, b.memory_mib);
    EXPECT_EQ(a.ready_at, b.ready_at);
    EXPECT_EQ(a.stopped_at, b.stopped_at);
    EXPECT_EQ(a.stop, b.stop);
}

std::string error_of(const std::function<void()> &f) {
    try {
        f();
    } catch (const Error &e) {
        return e.what();
    }
    return "(no error)";
}

class TempDir : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-vm-record-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string dir_;
};

TEST(VmRecordJson, RoundTripsEveryField) {
    const VmRecord r = sample();
    const std::string line = encode_vm_record(r);
    EXPECT_EQ(line.find('\n'), std::string::npos);
    expect_same(decode_vm_record(line), r);
}

TEST(VmRecordJson, KeepsQuotesAndUnicodeInStrings) {
    VmRecord r = sample();
    r.user = "o\"brien \xc3\xa9";
    expect_same(decode_vm_record(encode_vm_record(r)), r);
}

TEST(VmRecordJson, DecodeErrorNamesTheField) {
    std::string line = encode_vm_record(sample());
    const std::string bad =
        std::string(line).replace(line.find("\"vcpus\":2"), 9, "\"vcpus\":\"x\"");
    EXPECT_EQ(error_of([&] { decode_vm_record(bad); }),
              "VM record: field 'vcpus': expected an integer, got \"x\"");
}

TEST(VmRecordJson, DecodeErrorNamesAMissingField) {
    EXPECT_EQ(error_of([] { decode_vm_record("{\"jobid\":1}"); }),
              "VM record: missing field 'cluster'");
}

TEST(VmRecordJson, RejectsAnUnknownStopKind) {
    VmRecord r = sample();
    r.stop = "vanished";
    EXPECT_EQ(error_of([&] { decode_vm_record(encode_vm_record(r)); }),
              "VM record: field 'stop': expected \"graceful\", \"destroyed\" or \"failed\", got "
              "\"vanished\"");
}

TEST(VmRecordJson, RejectsJobIdZeroAndBrokenJson) {
    VmRecord r = sample();
    r.jobid = 0;
    EXPECT_EQ(error_of([&] { decode_vm_record(encode_vm_record(r)); }),
              "VM record: field 'jobid': expected an integer from 1 to 4294967295, got 0");
    EXPECT_EQ(error_of([] { decode_vm_record("{\"jobid\":"); }),
              "VM record: invalid JSON: unexpected end of input");
}

TEST(AdminComment, AtSubmitNamesTheImageAndTheHostnameTemplate) {
    EXPECT_EQ(admin_comment_at_submit("", "tiny", "%n-vm%j"),
              "slurm-vm:image=tiny;hostname=%25n-vm%25j");
}

TEST(AdminComment, AtSubmitKeepsTheSitesOwnWordsAndReplacesAnOldWordOfOurs) {
    EXPECT_EQ(admin_comment_at_submit("site:tag=1", "tiny", "%n-vm%j"),
              "site:tag=1 slurm-vm:image=tiny;hostname=%25n-vm%25j");
    EXPECT_EQ(admin_comment_at_submit("a slurm-vm:image=old;hostname=x b", "tiny", "%n-vm%j"),
              "a  b slurm-vm:image=tiny;hostname=%25n-vm%25j");
}

TEST(AdminComment, ParsesOurWordAmongOthersAndPlacesOneVmPerNode) {
    const auto parsed = parse_admin_comment(
        "site:tag=1 " + admin_comment_at_submit("", "tiny", "%n-vm%j") + " other");
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->image, "tiny");
    EXPECT_EQ(parsed->hostname_template, "%n-vm%j");
    EXPECT_EQ(vm_placements(*parsed, {"node1", "node2"}, 42),
              (std::vector<VmPlacement>{{"node1-vm42", "node1"}, {"node2-vm42", "node2"}}));
}

// Early versions' prolog listed the VMs ("vms=vm@host,..."): that key is no longer read.
TEST(AdminComment, TheVmListOfEarlyVersionsPlacesNoVm) {
    const auto parsed =
        parse_admin_comment("slurm-vm:image=tiny;vms=node1-vm42@host1,node2-vm42@host1");
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->image, "tiny");
    EXPECT_TRUE(vm_placements(*parsed, {"node1", "node2"}, 42).empty());
}

TEST(AdminComment, EscapesSeparatorsInValuesAndRoundTrips) {
    const std::string image = "a;b,c@d=e|f%g h";
    const std::string comment = admin_comment_at_submit("", image, "%n-vm%j");
    EXPECT_EQ(comment, "slurm-vm:image=a%3Bb%2Cc%40d%3De%7Cf%25g%20h;hostname=%25n-vm%25j");
    EXPECT_EQ(parse_admin_comment(comment)->image, image);
}

TEST(AdminComment, AWordThatOnlyContainsThePrefixIsNotOurs) {
    EXPECT_FALSE(parse_admin_comment("xslurm-vm:image=tiny").has_value());
}

TEST(AdminComment, IsNotOursWithoutThePrefix) {
    EXPECT_FALSE(parse_admin_comment("").has_value());
    EXPECT_FALSE(parse_admin_comment("site note: rerun").has_value());
}

TEST(AdminComment, IgnoresUnknownKeysFromNewerVersions) {
    const auto parsed = parse_admin_comment("slurm-vm:image=tiny;gpu=1;hostname=v%25j");
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->hostname_template, "v%j");
}

TEST(AdminComment, MalformedCommentsNameTheReason) {
    EXPECT_EQ(error_of([] { parse_admin_comment("slurm-vm:vms=v@h"); }),
              "admin comment 'slurm-vm:vms=v@h': no image");
    EXPECT_EQ(error_of([] { parse_admin_comment("slurm-vm:image=t%4"); }),
              "admin comment 'slurm-vm:image=t%4': image: '%' must be followed by two hex digits");
    EXPECT_EQ(error_of([] { parse_admin_comment("slurm-vm:image"); }),
              "admin comment 'slurm-vm:image': field 'image': expected key=value");
}

using RecordSpoolTest = TempDir;

TEST_F(RecordSpoolTest, RecordSurvivesANewSpoolObject) {
    {
        RecordSpool spool(dir_);
        spool.add(sample(42, "node1"));
        spool.add(sample(43, "node2"));
    }
    RecordSpool restarted(dir_);
    const auto pending = restarted.pending();
    ASSERT_EQ(pending.size(), 2u);
    EXPECT_EQ(pending[0].first, "42-node1");
    expect_same(pending[0].second, sample(42, "node1"));
    EXPECT_EQ(pending[1].first, "43-node2");
    EXPECT_TRUE(restarted.warnings().empty());
}

TEST_F(RecordSpoolTest, DoneRemovesTheRecordAndIsIdempotent) {
    RecordSpool spool(dir_);
    spool.add(sample(42, "node1"));
    spool.done("42-node1");
    spool.done("42-node1");
    EXPECT_TRUE(RecordSpool(dir_).pending().empty());
    EXPECT_THROW(spool.done("../x"), Error);
}

TEST_F(RecordSpoolTest, AddingTheSameJobAndNodeReplacesTheRecord) {
    RecordSpool spool(dir_);
    spool.add(sample(42, "node1"));
    VmRecord later = sample(42, "node1");
    later.stop = "destroyed";
    spool.add(later);
    const auto pending = spool.pending();
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending[0].second.stop, "destroyed");
}

TEST_F(RecordSpoolTest, LeavesNoTemporaryFilesBehind) {
    RecordSpool spool(dir_);
    spool.add(sample());
    std::vector<std::string> names;
    for (const auto &e : fs::directory_iterator(dir_ + "/pending")) {
        names.push_back(e.path().filename().string());
    }
    EXPECT_EQ(names, std::vector<std::string>{"42-node1.json"});
}

TEST_F(RecordSpoolTest, MovesAMalformedFileToBadWithItsReason) {
    RecordSpool spool(dir_);
    spool.add(sample(42, "node1"));
    std::ofstream(dir_ + "/pending/7-node9.json") << "{\"jobid\":7,\"cluster\":3}\n";
    const auto pending = spool.pending();
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending[0].first, "42-node1");
    ASSERT_EQ(spool.warnings().size(), 1u);
    EXPECT_EQ(spool.warnings()[0], "spool file " + dir_ +
                                       "/pending/7-node9.json: VM record: field 'cluster': "
                                       "expected a string, got 3; moved to " +
                                       dir_ + "/bad/7-node9.json");
    EXPECT_FALSE(fs::exists(dir_ + "/pending/7-node9.json"));
    EXPECT_TRUE(fs::exists(dir_ + "/bad/7-node9.json"));
    std::ifstream reason(dir_ + "/bad/7-node9.json.reason");
    std::stringstream text;
    text << reason.rdbuf();
    EXPECT_EQ(text.str(), "VM record: field 'cluster': expected a string, got 3\n");
    // Reported once, then out of the way.
    spool.pending();
    EXPECT_TRUE(spool.warnings().empty());
}

TEST_F(RecordSpoolTest, IgnoresUnfinishedTemporaryFiles) {
    RecordSpool spool(dir_);
    std::ofstream(dir_ + "/pending/.42-node1.json.tmp.99") << "{\"jobid\":";
    EXPECT_TRUE(spool.pending().empty());
    EXPECT_TRUE(spool.warnings().empty());
}

TEST_F(RecordSpoolTest, RefusesANodeNameThatIsAPath) {
    RecordSpool spool(dir_);
    EXPECT_EQ(error_of([&] { spool.add(sample(1, "../etc")); }),
              "record spool " + dir_ + ": node name '../etc' cannot name a spool file");
}

using JsonLinesTest = TempDir;

TEST_F(JsonLinesTest, AppendsOneLinePerRecord) {
    const std::string path = dir_ + "/vm-jobs.jsonl";
    append_jsonl(path, sample(42, "node1"));
    append_jsonl(path, sample(42, "node2"));
    std::ifstream in(path);
    std::string line;
    std::vector<VmRecord> read;
    while (std::getline(in, line)) {
        read.push_back(decode_vm_record(line));
    }
    ASSERT_EQ(read.size(), 2u);
    EXPECT_EQ(read[1].node, "node2");
}

TEST_F(JsonLinesTest, NamesThePathWhenItCannotAppend) {
    EXPECT_EQ(error_of([&] { append_jsonl(dir_ + "/no/such/x.jsonl", sample()); }),
              "cannot append to " + dir_ + "/no/such/x.jsonl: No such file or directory");
}

}  // namespace
}  // namespace svm

namespace svm {
namespace {

const char *kStateFile =
    "{\"domain\":\"svm-42-node1\",\"image\":\"tiny\",\"node\":\"node1\",\"jobid\":42,"
    "\"hostname\":\"node1-vm42\",\"vcpus\":2,\"memory_mib\":512,\"domain_type\":\"qemu\","
    "\"ready_at\":1700000000}\n";

TEST(VmRecordFromState, TakesThePrologFactsAndTheEpilogOnes) {
    const VmRecord r =
        vm_record_from_state(kStateFile, "svm", "alice", "host1", 1700000600, "destroyed");
    expect_same(r, [] {
        VmRecord e = sample(42, "node1");
        e.stop = "destroyed";
        return e;
    }());
}

TEST(VmRecordFromState, NamesTheStateFileAndFieldOnError) {
    EXPECT_EQ(
        error_of([] { vm_record_from_state("{\"domain\":\"d\"}", "", "", "h", 1, "graceful"); }),
        "VM state file: missing field 'jobid'");
    EXPECT_EQ(error_of([] { vm_record_from_state(kStateFile, "", "", "h", 1, "lost"); }),
              "VM state file: stop kind 'lost': expected graceful, destroyed or failed");
}

TEST(StopKind, FollowsTheStopReport) {
    StopReport stopped;
    stopped.was_running = true;
    stopped.graceful = true;
    EXPECT_EQ(stop_kind(stopped), "graceful");
    stopped.graceful = false;
    stopped.destroyed = true;
    EXPECT_EQ(stop_kind(stopped), "destroyed");
    stopped.destroyed = false;
    EXPECT_EQ(stop_kind(stopped), "failed");
    EXPECT_EQ(stop_kind(StopReport{}), "graceful");  // nothing was running
}

}  // namespace
}  // namespace svm
