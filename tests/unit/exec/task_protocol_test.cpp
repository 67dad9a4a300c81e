// The EXEC request's task fields (limits, umask, make_tmpdir) and the guest's program lookup.
#include <gtest/gtest.h>

#include <set>

#include "exec/protocol/frame.h"
#include "exec/protocol/messages.h"
#include "exec/protocol/program_path.h"

namespace svm::protocol {
namespace {

ExecRequest base() {
    ExecRequest r;
    r.argv = {"true"};
    r.env = {"PATH=/bin"};
    r.cwd = "/";
    r.uid = 1000;
    r.gid = 1000;
    return r;
}

TEST(ExecTaskFields, RoundTrip) {
    ExecRequest r = base();
    r.limits = {{"NOFILE", 512, 4096},
                {"CORE", 0, ResourceLimit::kUnlimited},
                {"STACK", ResourceLimit::kUnlimited, ResourceLimit::kUnlimited}};
    r.umask = 023;
    r.make_tmpdir = true;
    const ExecRequest back = decode_exec(encode_exec(r));
    EXPECT_EQ(back.limits, r.limits);
    EXPECT_EQ(back.umask, std::optional<std::uint32_t>(023));
    EXPECT_TRUE(back.make_tmpdir);
}

TEST(ExecTaskFields, AbsentFromAnOlderHostsRequest) {
    const std::string old = R"({"argv":["true"],"env":[],"cwd":"/","uid":1,"gid":1,"groups":[]})";
    const ExecRequest r = decode_exec(old);
    EXPECT_TRUE(r.limits.empty());
    EXPECT_FALSE(r.umask);
    EXPECT_FALSE(r.make_tmpdir);
    // And a request without them says nothing of them.
    const std::string text = encode_exec(base());
    EXPECT_EQ(text.find("limits"), std::string::npos);
    EXPECT_EQ(text.find("umask"), std::string::npos);
    EXPECT_EQ(text.find("make_tmpdir"), std::string::npos);
}

void expect_rejected(const std::string &payload, const std::string &needle) {
    try {
        decode_exec(payload);
        FAIL() << "accepted: " << payload;
    } catch (const ProtocolError &e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

const std::string kHead = R"({"argv":["true"],"env":[],"cwd":"/","uid":1,"gid":1,"groups":[],)";

TEST(ExecTaskFields, RejectsBadLimits) {
    expect_rejected(kHead + R"("limits":{}})", "field 'limits'");
    expect_rejected(kHead + R"("limits":[1]})", "limits[0]");
    expect_rejected(kHead + R"("limits":[{"resource":"BOGUS","soft":1,"hard":1}]})",
                    "limits[0].resource");
    expect_rejected(kHead + R"("limits":[{"resource":"CORE","soft":-2,"hard":1}]})",
                    "limits[0].soft");
    expect_rejected(kHead + R"("limits":[{"resource":"CORE","soft":1}]})", "hard");
    expect_rejected(kHead + R"("limits":[{"resource":"CORE","soft":2,"hard":1}]})",
                    "above the hard limit");
    expect_rejected(kHead + R"("limits":[{"resource":"CORE","soft":-1,"hard":1}]})",
                    "above the hard limit");
    expect_rejected(kHead + R"("limits":[{"resource":"CORE","soft":1,"hard":1},)"
                            R"({"resource":"CORE","soft":1,"hard":1}]})",
                    "given twice");
    std::string many = kHead + R"("limits":[)";
    for (int i = 0; i < 17; ++i) {
        many += std::string(i ? "," : "") + R"({"resource":"CORE","soft":1,"hard":1})";
    }
    expect_rejected(many + "]}", "more than 16");
}

TEST(ExecTaskFields, RejectsBadUmaskAndTmpdir) {
    expect_rejected(kHead + R"("umask":512})", "field 'umask'");
    expect_rejected(kHead + R"("umask":-1})", "field 'umask'");
    expect_rejected(kHead + R"("umask":"022"})", "field 'umask'");
    expect_rejected(kHead + R"("make_tmpdir":1})", "field 'make_tmpdir'");
}

TEST(ExecTaskFields, EncodeChecksTheSame) {
    ExecRequest r = base();
    r.limits = {{"NOPE", 1, 1}};
    EXPECT_THROW(encode_exec(r), ProtocolError);
    r.limits = {{"CORE", std::uint64_t{1} << 63, ResourceLimit::kUnlimited}};
    EXPECT_THROW(encode_exec(r), ProtocolError);
    r.limits.clear();
    r.umask = 01000;
    EXPECT_THROW(encode_exec(r), ProtocolError);
}

TEST(ExecTaskFields, KnowsSlurmsLimitNames) {
    EXPECT_EQ(rlimit_names().size(), 10u);
    for (const auto &name : rlimit_names()) {
        EXPECT_GE(rlimit_resource(name), 0) << name;
    }
    EXPECT_EQ(rlimit_resource("RLIMIT_CORE"), -1);
}

TEST(ProgramPath, FindsTheProgramAsSlurmstepdDoes) {
    const auto in = [](std::set<std::string> files) {
        return [files](const std::string &p) { return files.contains(p); };
    };
    EXPECT_EQ(task_program_path("/abs/x", "/bin", "/w", in({})), "/abs/x");
    EXPECT_EQ(task_program_path("./x", "/bin", "/w", in({})), "/w/./x");
    EXPECT_EQ(task_program_path(".hidden", "/bin", "/w", in({})), "/w/.hidden");
    EXPECT_EQ(task_program_path("x", "/a::/b:/c", "/w", in({"/b/x", "/c/x"})), "/b/x");
    EXPECT_EQ(task_program_path("sub/x", "/a", "/w", in({"/a/sub/x"})), "/a/sub/x");
    // Not found: the name as given, which execve takes relative to the working directory.
    EXPECT_EQ(task_program_path("x", "/a", "/w", in({})), "x");
    EXPECT_EQ(task_program_path("x", "", "/w", in({"/x"})), "x");
}

}  // namespace
}  // namespace svm::protocol
