#include "catalog/image_name.h"

#include <gtest/gtest.h>

#include <string>

namespace svm {
namespace {

TEST(ImageName, AcceptsNamesOfLettersDigitsDotsDashesUnderscores) {
    EXPECT_EQ(image_name_problem("debian12"), "");
    EXPECT_EQ(image_name_problem("Rocky-9.3_cuda"), "");
    EXPECT_EQ(image_name_problem("7"), "");
    EXPECT_EQ(image_name_problem(std::string(64, 'a')), "");
}

TEST(ImageName, RejectsEmptyName) {
    EXPECT_EQ(image_name_problem(""), "is empty");
}

TEST(ImageName, RejectsNameLongerThan64Characters) {
    EXPECT_EQ(image_name_problem(std::string(65, 'a')), "is longer than 64 characters");
}

TEST(ImageName, RejectsImageNameWithSlash) {
    EXPECT_EQ(image_name_problem("a/b"), "contains '/'");
    EXPECT_EQ(image_name_problem("/etc/passwd"), "contains '/'");
}

TEST(ImageName, RejectsNameNotStartingWithLetterOrDigit) {
    EXPECT_EQ(image_name_problem(".hidden"), "must start with a letter or digit");
    EXPECT_EQ(image_name_problem("-rf"), "must start with a letter or digit");
    EXPECT_EQ(image_name_problem("_x"), "must start with a letter or digit");
}

TEST(ImageName, RejectsDoubleDot) {
    EXPECT_EQ(image_name_problem("a..b"), "contains '..'");
}

TEST(ImageName, RejectsHashBecauseItTruncatesSbatchLines) {
    EXPECT_EQ(image_name_problem("deb#12"), "contains character '#'");
}

TEST(ImageName, ShowsUnprintableCharactersAsHex) {
    EXPECT_EQ(image_name_problem(std::string("a\nb")), "contains character '\\x0a'");
    EXPECT_EQ(image_name_problem(std::string("a\0b", 3)), "contains character '\\x00'");
    EXPECT_EQ(image_name_problem("caf\xc3\xa9"), "contains character '\\xc3'");
    EXPECT_EQ(image_name_problem("a b"), "contains character ' '");
}

TEST(ImageFeature, PrefixesNameWithVm) {
    EXPECT_EQ(image_feature("debian12"), "vm_debian12");
}

TEST(ImageFeature, MapsFeatureBackToImage) {
    EXPECT_EQ(image_from_feature("vm_debian12"), "debian12");
    EXPECT_EQ(image_from_feature(image_feature("Rocky-9.3_cuda")), "Rocky-9.3_cuda");
}

TEST(ImageFeature, IgnoresFeaturesThatAreNotImages) {
    EXPECT_EQ(image_from_feature("gpu"), std::nullopt);
    EXPECT_EQ(image_from_feature("vm_"), std::nullopt);
    EXPECT_EQ(image_from_feature("vm_a..b"), std::nullopt);
    EXPECT_EQ(image_from_feature("VM_debian12"), std::nullopt);
}

TEST(Printable, EscapesBytesThatWouldBreakAOneLineMessage) {
    EXPECT_EQ(printable("plain text"), "plain text");
    EXPECT_EQ(printable("a\nb\x01"), "a\\x0ab\\x01");
}

}  // namespace
}  // namespace svm
