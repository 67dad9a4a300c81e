#include "accounting/job_records.h"

#include "util/error.h"

#include <gtest/gtest.h>

namespace svm {
namespace {

using Names = std::vector<std::string>;

TEST(Hostlist, ExpandsRangesListsAndPadding) {
    EXPECT_EQ(expand_hostlist("node[1-3,5],gpu01"),
              (Names{"node1", "node2", "node3", "node5", "gpu01"}));
    EXPECT_EQ(expand_hostlist("n[08-10]"), (Names{"n08", "n09", "n10"}));
}

TEST(Hostlist, ExpandsEveryBracketOfANameWithTwoRanges) {
    EXPECT_EQ(expand_hostlist("rack[1-2]-n[1-2]"),
              (Names{"rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"}));
}

TEST(Hostlist, RefusesAListThatWouldNameMoreHostsThanAnyCluster) {
    try {
        expand_hostlist("a[0-99999999999]");
        FAIL() << "expanded";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "host list 'a[0-99999999999]' names more than 100000 hosts");
    }
    EXPECT_THROW(expand_hostlist("a[0-999]-b[0-999]"), Error);
}

TEST(Hostlist, RefusesANumberTooBigForANodeWithItsOwnError) {
    try {
        expand_hostlist("n[1-99999999999999999999999]");
        FAIL() << "expanded";
    } catch (const Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "host list 'n[1-99999999999999999999999]': '99999999999999999999999' is not a "
                  "node number");
    }
}

TEST(Hostlist, RefusesBadSyntax) {
    EXPECT_THROW(expand_hostlist("node[1-3"), Error);
    EXPECT_THROW(expand_hostlist("node[x-3]"), Error);
}

}  // namespace
}  // namespace svm
