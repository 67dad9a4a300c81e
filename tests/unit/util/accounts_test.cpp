#include "util/accounts.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace svm {
namespace {

TEST(Accounts, FindsRootAndItsGroup) {
    const auto root = find_user(0);
    ASSERT_TRUE(root.has_value());
    EXPECT_EQ(root->name, "root");
    EXPECT_EQ(root->gid, 0u);
    EXPECT_EQ(root->home, "/root");
    const auto groups = group_ids("root", 0);
    EXPECT_NE(std::find(groups.begin(), groups.end(), 0u), groups.end());
    EXPECT_EQ(find_group_name(0), "root");
    const auto by_name = find_user_named("root");
    ASSERT_TRUE(by_name.has_value());
    EXPECT_EQ(by_name->uid, 0u);
}

TEST(Accounts, SaysNothingOfAnUnknownUidOrGid) {
    EXPECT_FALSE(find_user(3999999).has_value());
    EXPECT_FALSE(find_user_named("no-such-user-svm").has_value());
    EXPECT_FALSE(find_group_name(3999999).has_value());
}

}  // namespace
}  // namespace svm
