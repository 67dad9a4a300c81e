#include "accounting/host_map.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace svm {
namespace {

namespace fs = std::filesystem;

class HostMapTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/svm-host-map-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/host-map";
    }
    void TearDown() override { fs::remove_all(dir_); }
    void write(const std::string &text) { std::ofstream(path_) << text; }
    std::string dir_, path_;
};

TEST_F(HostMapTest, MissingFileIsAnEmptyMap) {
    const HostMap map = HostMap::load(path_);
    EXPECT_TRUE(map.intervals().empty());
    EXPECT_TRUE(map.warnings().empty());
    EXPECT_FALSE(map.host_of("vm7", 100).has_value());
}

TEST_F(HostMapTest, FindsTheHostWithinHalfOpenIntervals) {
    write("# comment\n\nvm7 node1 100 200\nvm7 node2 200 -\n");
    const HostMap map = HostMap::load(path_);
    EXPECT_TRUE(map.warnings().empty());
    EXPECT_FALSE(map.host_of("vm7", 99).has_value());
    EXPECT_EQ(map.host_of("vm7", 100), "node1");
    EXPECT_EQ(map.host_of("vm7", 199), "node1");
    EXPECT_EQ(map.host_of("vm7", 200), "node2");
    EXPECT_EQ(map.host_of("vm7", 999999), "node2");
    EXPECT_FALSE(map.host_of("vm8", 150).has_value());
}

TEST_F(HostMapTest, SkipsMalformedLinesWithPathLineAndReason) {
    write(
        "vm7 node1 100 -\n"
        "vm8 node1\n"
        "vm9 node1 soon -\n"
        "vm9 node1 100 later\n"
        "vm9 node1 300 200\n"
        "vm/9 node1 100 -\n"
        "vm10 node2 5 -\n");
    const HostMap map = HostMap::load(path_);
    ASSERT_EQ(map.intervals().size(), 2u);
    EXPECT_EQ(map.intervals()[1], (HostInterval{"vm10", "node2", 5, std::nullopt}));
    const std::vector<std::string> expected{
        path_ + ":2: expected '<vm_node> <physical_host> <from> <to|->', got 2 fields",
        path_ + ":3: from 'soon': expected seconds since the epoch",
        path_ + ":4: to 'later': expected seconds since the epoch or '-'",
        path_ + ":5: interval ends (200) before it starts (300)",
        path_ + ":6: bad name 'vm/9': expected letters, digits, '.', '_' or '-'",
    };
    EXPECT_EQ(map.warnings(), expected);
}

TEST_F(HostMapTest, StartOnAnotherHostClosesTheOpenInterval) {
    HostMap map;
    map.record_start("vm7", "node1", 100);
    map.record_start("vm7", "node2", 300);
    ASSERT_EQ(map.intervals().size(), 2u);
    EXPECT_EQ(map.intervals()[0], (HostInterval{"vm7", "node1", 100, 300}));
    EXPECT_EQ(map.host_of("vm7", 299), "node1");
    EXPECT_EQ(map.host_of("vm7", 300), "node2");
}

TEST_F(HostMapTest, StartingTwiceOnTheSameHostKeepsOneInterval) {
    HostMap map;
    map.record_start("vm7", "node1", 100);
    map.record_start("vm7", "node1", 150);
    ASSERT_EQ(map.intervals().size(), 1u);
    EXPECT_EQ(map.intervals()[0].from, 100);
}

TEST_F(HostMapTest, StopClosesTheIntervalAndSaysWhenNothingWasOpen) {
    HostMap map;
    map.record_start("vm7", "node1", 100);
    EXPECT_TRUE(map.record_stop("vm7", 200));
    EXPECT_FALSE(map.record_stop("vm7", 250));
    EXPECT_FALSE(map.record_stop("vm8", 250));
    EXPECT_EQ(map.host_of("vm7", 150), "node1");
    EXPECT_FALSE(map.host_of("vm7", 200).has_value());
}

TEST_F(HostMapTest, RefusesNamesThatWouldBreakTheFile) {
    HostMap map;
    try {
        map.record_start("vm 7", "node1", 1);
        FAIL() << "accepted a name with a space";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(),
                     "host map: VM node 'vm 7': expected letters, digits, '.', '_' or '-'");
    }
    EXPECT_THROW(map.record_start("vm7", "", 1), Error);
}

TEST_F(HostMapTest, SaveAndLoadRoundTrip) {
    HostMap map;
    map.record_start("vm7", "node1", 100);
    map.record_stop("vm7", 200);
    map.record_start("vm8", "node2", 150);
    map.save(path_);
    const HostMap loaded = HostMap::load(path_);
    EXPECT_TRUE(loaded.warnings().empty());
    EXPECT_EQ(loaded.intervals(), map.intervals());
    std::ifstream in(path_);
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_EQ(text.str(),
              "# slurm-vm host map: <vm_node> <physical_host> <from_epoch> <to_epoch|->\n"
              "vm7 node1 100 200\nvm8 node2 150 -\n");
}

TEST_F(HostMapTest, SaveNamesThePathWhenItFails) {
    HostMap map;
    try {
        map.save(dir_ + "/missing/host-map");
        FAIL() << "saved into a missing folder";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "cannot write " + dir_ + "/missing/host-map: No such file or directory");
    }
}

}  // namespace
}  // namespace svm
