#include "util/cpu_list.h"

#include "util/error.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace svm {
namespace {

using Cpus = std::vector<unsigned>;

std::string error_of(std::string_view list, unsigned limit = kMaxCpuId) {
    try {
        parse_cpu_list(list, limit);
    } catch (const Error &e) {
        return e.what();
    }
    return "no error";
}

TEST(CpuList, ParsesIdsAndRanges) {
    EXPECT_EQ(parse_cpu_list("0-3,8,10-11"), (Cpus{0, 1, 2, 3, 8, 10, 11}));
    EXPECT_EQ(parse_cpu_list("5"), (Cpus{5}));
    EXPECT_EQ(parse_cpu_list("7-7"), (Cpus{7}));
    EXPECT_EQ(parse_cpu_list("0"), (Cpus{0}));
}

TEST(CpuList, ReadsWhatACgroupFileHolds) {
    EXPECT_EQ(parse_cpu_list("0-1\n"), (Cpus{0, 1}));
    EXPECT_EQ(parse_cpu_list(" 2 , 4-5 \n"), (Cpus{2, 4, 5}));
    EXPECT_EQ(parse_cpu_list(""), Cpus{});
    EXPECT_EQ(parse_cpu_list("\n"), Cpus{});
}

TEST(CpuList, SortsAndMergesOverlaps) {
    EXPECT_EQ(parse_cpu_list("8,0-2,1,2-3"), (Cpus{0, 1, 2, 3, 8}));
}

TEST(CpuList, RefusesMalformedEntriesNamingThem) {
    EXPECT_EQ(error_of("0,,2"), "CPU list '0,,2': entry '': is empty");
    EXPECT_EQ(error_of("1,"), "CPU list '1,': entry '': is empty");
    EXPECT_EQ(error_of("3-1"), "CPU list '3-1': entry '3-1': the range ends before it starts");
    EXPECT_EQ(error_of("0-"), "CPU list '0-': entry '0-': expected a CPU id");
    EXPECT_EQ(error_of("-2"), "CPU list '-2': entry '-2': expected a CPU id");
    EXPECT_EQ(error_of("a"), "CPU list 'a': entry 'a': 'a' is not a digit");
    EXPECT_EQ(error_of("0-3:2"), "CPU list '0-3:2': entry '0-3:2': ':' is not a digit");
    EXPECT_EQ(error_of("1-2-3"), "CPU list '1-2-3': entry '1-2-3': '-' is not a digit");
    EXPECT_EQ(error_of("+1"), "CPU list '+1': entry '+1': '+' is not a digit");
    EXPECT_EQ(error_of("01"), "CPU list '01': entry '01': CPU id '01' has a leading zero");
    EXPECT_EQ(error_of("1\x01"), "CPU list '1\\x01': entry '1\\x01': '\\x01' is not a digit");
}

TEST(CpuList, RefusesIdsOutOfBounds) {
    EXPECT_EQ(error_of("0-8192"),
              "CPU list '0-8192': entry '0-8192': CPU id 8192 is not below 8192");
    EXPECT_EQ(error_of("99999999999999999999"),
              "CPU list '99999999999999999999': entry '99999999999999999999': CPU id "
              "99999999999999999999 is not below 8192");
    EXPECT_EQ(error_of("2", 2), "CPU list '2': entry '2': CPU id 2 is not below 2");
    EXPECT_EQ(parse_cpu_list("0-1", 2), (Cpus{0, 1}));
    EXPECT_EQ(parse_cpu_list("8191").size(), 1u);
}

TEST(CpuList, FormatsRanges) {
    EXPECT_EQ(format_cpu_list({0, 1, 2, 3, 8, 10, 11}), "0-3,8,10-11");
    EXPECT_EQ(format_cpu_list({3}), "3");
    EXPECT_EQ(format_cpu_list({}), "");
    EXPECT_EQ(format_cpu_list({5, 1, 0, 5, 2}), "0-2,5");
}

TEST(CpuList, RoundTrips) {
    for (const char *list : {"0-3,8,10-11", "0", "1,3,5", "0-63", "4094-4095"}) {
        EXPECT_EQ(format_cpu_list(parse_cpu_list(list)), list);
    }
}

}  // namespace
}  // namespace svm
