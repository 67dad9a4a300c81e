#include "exec/protocol/frame.h"
#include "exec/protocol/messages.h"

#include <gtest/gtest.h>

#include <csignal>
#include <limits>
#include <sys/wait.h>

namespace svm::protocol {
namespace {

std::string exec_json(const std::string &fields_override) {
    // A valid request, with one field replaced by the test.
    std::string argv = R"("argv":["sh","-c","true"])";
    std::string env = R"("env":["PATH=/bin","HOME=/home/u"])";
    std::string cwd = R"("cwd":"/home/u")";
    std::string uid = R"("uid":1000)";
    std::string gid = R"("gid":1000)";
    std::string groups = R"("groups":[1000,27])";
    for (std::string *f : {&argv, &env, &cwd, &uid, &gid, &groups}) {
        const std::string key = f->substr(0, f->find(':'));
        if (fields_override.rfind(key, 0) == 0) {
            *f = fields_override;
        }
    }
    return "{" + argv + "," + env + "," + cwd + "," + uid + "," + gid + "," + groups + "}";
}

std::string decode_exec_error(const std::string &json) {
    try {
        decode_exec(json);
    } catch (const ProtocolError &e) {
        return e.what();
    }
    return "(accepted)";
}

TEST(Frame, EncodesTheHeaderBigEndian) {
    std::string frame = encode_frame(FrameType::Stdout, 0x01020304, "hi");
    ASSERT_EQ(frame.size(), kHeaderSize + 2);
    EXPECT_EQ(frame.substr(0, 4), std::string("SV\x14\x00", 4));
    EXPECT_EQ(frame.substr(4, 4), std::string("\x01\x02\x03\x04", 4));
    EXPECT_EQ(frame.substr(8, 4), std::string("\x00\x00\x00\x02", 4));
    EXPECT_EQ(frame.substr(12), "hi");
}

TEST(Frame, RoundTripsFramesFedOneByteAtATime) {
    std::string stream = encode_frame(FrameType::Exec, 7, R"({"argv":["x"]})") +
                         encode_frame(FrameType::StdinEof, 7) +
                         encode_frame(FrameType::Stdin, 7, std::string(70000 / 2, '\0'));
    FrameReader reader;
    std::vector<Frame> frames;
    for (char c : stream) {
        reader.feed(std::string_view(&c, 1));
        while (auto f = reader.next()) {
            frames.push_back(std::move(*f));
        }
    }
    ASSERT_EQ(frames.size(), 3u);
    EXPECT_EQ(frames[0].type, FrameType::Exec);
    EXPECT_EQ(frames[0].session, 7u);
    EXPECT_EQ(frames[0].payload, R"({"argv":["x"]})");
    EXPECT_EQ(frames[1].type, FrameType::StdinEof);
    EXPECT_EQ(frames[1].payload, "");
    EXPECT_EQ(frames[2].payload, std::string(35000, '\0'));
    EXPECT_EQ(reader.take_skipped(), 0u);
}

TEST(Frame, ResyncsOverGarbageAndCountsTheSkippedBytes) {
    FrameReader reader;
    // "S" followed by something else, a bare "SV" header with an unknown type, then a frame.
    reader.feed("xxSyS");
    reader.feed(std::string("SV\x7f\x00", 4));
    reader.feed(encode_frame(FrameType::Ping, 42));
    auto frame = reader.next();
    ASSERT_TRUE(frame);
    EXPECT_EQ(frame->type, FrameType::Ping);
    EXPECT_EQ(frame->session, 42u);
    EXPECT_EQ(reader.take_skipped(), 9u);
    EXPECT_FALSE(reader.next());
}

TEST(Frame, PoweroffIsARequestThatRoundTrips) {
    FrameReader reader;
    reader.feed(encode_frame(FrameType::Poweroff, 0x01020304, "{}"));
    auto frame = reader.next();
    ASSERT_TRUE(frame);
    EXPECT_EQ(frame->type, FrameType::Poweroff);
    EXPECT_EQ(frame->session, 0x01020304u);
    EXPECT_EQ(frame->payload, "{}");
    EXPECT_TRUE(protocol::is_request(FrameType::Poweroff));
    EXPECT_STREQ(protocol::frame_type_name(FrameType::Poweroff), "POWEROFF");
    EXPECT_EQ(reader.take_skipped(), 0u);
}

// An agent older than POWEROFF reads its type as unknown: it skips the frame byte by byte and
// answers nothing (the host falls back to ACPI after its deadline), and the next request still
// gets through. The same reader code, with a type it does not know standing in for 0x05.
TEST(Frame, AnAgentThatDoesNotKnowAFrameTypeSkipsItAndReadsTheNextRequest) {
    FrameReader reader;
    std::string unknown = encode_frame(FrameType::Poweroff, 5, "{}");
    unknown[2] = '\x7e';
    reader.feed(unknown + encode_frame(FrameType::Ping, 6));
    auto frame = reader.next();
    ASSERT_TRUE(frame);
    EXPECT_EQ(frame->type, FrameType::Ping);
    EXPECT_EQ(frame->session, 6u);
    EXPECT_EQ(reader.take_skipped(), unknown.size());
}

TEST(Frame, SkipsFramesOfOtherSessionsWhenOneIsExpected) {
    FrameReader reader;
    reader.expect_session(9);
    // A stale half-frame of another session announces a length that would swallow ours.
    std::string stale = encode_frame(FrameType::Stdout, 3, std::string(1000, 'a')).substr(0, 20);
    reader.feed(stale + encode_frame(FrameType::Exit, 9, R"({"exit_code":0})"));
    auto frame = reader.next();
    ASSERT_TRUE(frame);
    EXPECT_EQ(frame->type, FrameType::Exit);
    EXPECT_EQ(frame->session, 9u);
    EXPECT_EQ(reader.take_skipped(), 20u);
}

TEST(Frame, RefusesToEncodeAnOversizePayload) {
    EXPECT_NO_THROW(encode_frame(FrameType::Stdout, 1, std::string(kMaxPayload, 'x')));
    try {
        encode_frame(FrameType::Stdout, 1, std::string(kMaxPayload + 1, 'x'));
        FAIL() << "accepted an oversize payload";
    } catch (const ProtocolError &e) {
        EXPECT_EQ(std::string(e.what()),
                  "frame STDOUT: payload of " + std::to_string(kMaxPayload + 1) +
                      " bytes exceeds the limit of " + std::to_string(kMaxPayload));
    }
}

TEST(Frame, RejectsAHeaderAnnouncingAnOversizePayloadAndReadsOn) {
    FrameReader reader;
    const std::uint32_t too_long = kMaxPayload + 1;
    std::string header("SV\x14\x00\x00\x00\x00\x01", 8);
    for (int shift : {24, 16, 8, 0}) {
        header.push_back(static_cast<char>((too_long >> shift) & 0xff));
    }
    reader.feed(header);
    reader.feed(encode_frame(FrameType::Pong, 1, "{}"));
    try {
        reader.next();
        FAIL() << "accepted an oversize header";
    } catch (const ProtocolError &e) {
        EXPECT_EQ(std::string(e.what()),
                  "frame STDOUT: announced payload of " + std::to_string(too_long) +
                      " bytes exceeds the limit of " + std::to_string(kMaxPayload));
    }
    auto frame = reader.next();
    ASSERT_TRUE(frame);
    EXPECT_EQ(frame->type, FrameType::Pong);
}

TEST(Messages, RoundTripsAnExecRequest) {
    ExecRequest request{
        {"sh", "-c", "echo \"$X\""}, {"X=a=b", "PATH=/bin"}, "/home/u", 1000, 1001, {1001, 27}, ""};
    ExecRequest back = decode_exec(encode_exec(request));
    EXPECT_EQ(back.argv, request.argv);
    EXPECT_EQ(back.env, request.env);
    EXPECT_EQ(back.cwd, "/home/u");
    EXPECT_EQ(back.uid, 1000u);
    EXPECT_EQ(back.gid, 1001u);
    EXPECT_EQ(back.groups, request.groups);
}

TEST(Messages, CarriesAPtyRequestAndItsResizes) {
    ExecRequest request;
    request.argv = {"bash"};
    request.cwd = "/";
    EXPECT_FALSE(decode_exec(encode_exec(request)).pty.has_value());
    request.pty = WindowSize{24, 80};
    EXPECT_EQ(decode_exec(encode_exec(request)).pty, (WindowSize{24, 80}));
    EXPECT_EQ(decode_winch(encode_winch({50, 132})), (WindowSize{50, 132}));
    EXPECT_THROW(decode_winch(R"({"rows": 70000, "cols": 80})"), ProtocolError);
    EXPECT_THROW(decode_winch(R"({"rows": 24})"), ProtocolError);
    EXPECT_STREQ(protocol::frame_type_name(FrameType::Winch), "WINCH");
}

TEST(Messages, RoundTripsASetupRequest) {
    SetupRequest request{"node1-vm42",
                         {{"svm0", "/home", false, "9p"}, {"svm1", "/opt/data", true, "9p"}}};
    SetupRequest back = decode_setup(encode_setup(request));
    EXPECT_EQ(back.hostname, "node1-vm42");
    ASSERT_EQ(back.mounts.size(), 2u);
    EXPECT_EQ(back.mounts[1].tag, "svm1");
    EXPECT_EQ(back.mounts[1].path, "/opt/data");
    EXPECT_TRUE(back.mounts[1].readonly);
    EXPECT_FALSE(back.mounts[0].readonly);
}

TEST(Messages, CarriesAVirtiofsMountAndReadsAnOlderHostsAs9p) {
    SetupRequest request{"node1-vm42", {{"svm0", "/home", false, "virtiofs"}}};
    EXPECT_EQ(decode_setup(encode_setup(request)).mounts.at(0).type, "virtiofs");
    const SetupRequest old = decode_setup(
        R"({"hostname": "h", "mounts": [{"tag": "svm0", "path": "/home", "readonly": false}]})");
    EXPECT_EQ(old.mounts.at(0).type, "9p");
    EXPECT_THROW(decode_setup(R"({"hostname": "h", "mounts": [{"tag": "svm0", "path": "/home",)"
                              R"( "type": "nfs"}]})"),
                 ProtocolError);
}

TEST(Messages, RoundTripsTheJobsUserInASetupRequest) {
    SetupRequest request{
        "node1-vm42",
        {},
        GuestUser{"alice", 1001, 1001, "/home/alice", {{"alice", 1001}, {"svmvip", 2001}}}};
    SetupRequest back = decode_setup(encode_setup(request));
    ASSERT_TRUE(back.user.has_value());
    EXPECT_EQ(*back.user, *request.user);
    EXPECT_FALSE(decode_setup(encode_setup({"node1-vm42", {}, std::nullopt})).user.has_value());
}

std::string decode_setup_error(const std::string &json) {
    try {
        decode_setup(json);
    } catch (const ProtocolError &e) {
        return e.what();
    }
    return "(accepted)";
}

TEST(Messages, RoundTripsWhatARestoredVmNeedsRefreshedInASetupRequest) {
    SetupRequest request{"node1-vm42", {}};
    request.clock_ns = 1700000000123456789;
    request.entropy = std::string("\x00\x01\xfe\xff secret", 11);
    request.new_machine_id = true;
    const std::string text = encode_setup(request);
    EXPECT_NE(text.find(R"("clock_ns":1700000000123456789)"), std::string::npos) << text;
    EXPECT_NE(text.find(R"("entropy":"0001feff20736563726574")"), std::string::npos) << text;
    EXPECT_NE(text.find(R"("new_machine_id":true)"), std::string::npos) << text;
    SetupRequest back = decode_setup(text);
    EXPECT_EQ(back.clock_ns, request.clock_ns);
    EXPECT_EQ(back.entropy, request.entropy);
    EXPECT_TRUE(back.new_machine_id);

    request.entropy = std::string(kMaxSetupEntropy, '\x5a');
    EXPECT_EQ(decode_setup(encode_setup(request)).entropy, request.entropy);
}

TEST(Messages, OmitsTheRefreshOfARestoredVmWhenNotAskedAndReadsAnOlderHostsRequest) {
    const std::string text = encode_setup({"node1-vm42", {}});
    EXPECT_EQ(text.find("clock_ns"), std::string::npos) << text;
    EXPECT_EQ(text.find("entropy"), std::string::npos) << text;
    EXPECT_EQ(text.find("new_machine_id"), std::string::npos) << text;
    const SetupRequest old = decode_setup(R"({"hostname": "h", "mounts": []})");
    EXPECT_FALSE(old.clock_ns.has_value());
    EXPECT_TRUE(old.entropy.empty());
    EXPECT_FALSE(old.new_machine_id);
    const SetupRequest empty =
        decode_setup(R"({"hostname": "h", "entropy": "", "new_machine_id": false})");
    EXPECT_TRUE(empty.entropy.empty());
    EXPECT_FALSE(empty.new_machine_id);
}

TEST(Messages, RefusesABadClockEntropyOrMachineIdInASetupRequest) {
    const auto error = [](const std::string &fields) {
        return decode_setup_error(R"({"hostname": "h", "mounts": [], )" + fields + "}");
    };
    const auto names = [&](const std::string &fields, const std::string &name) {
        const std::string message = error(fields);
        EXPECT_EQ(message.rfind("SETUP request: field '" + name + "': ", 0), 0u)
            << fields << " -> " << message;
    };
    names(R"("clock_ns": 0)", "clock_ns");
    names(R"("clock_ns": -5)", "clock_ns");
    names(R"("clock_ns": 1.5)", "clock_ns");
    names(R"("clock_ns": "1700000000000000000")", "clock_ns");
    names(R"("clock_ns": 9223372036854775807)", "clock_ns");  // json-c's INT64_MAX when larger
    names(R"("clock_ns": 9223372036854775808)", "clock_ns");
    names(R"("clock_ns": 99999999999999999999)", "clock_ns");
    names(R"("entropy": "abc")", "entropy");
    names(R"("entropy": "0g")", "entropy");
    names(R"("entropy": "ABCD")", "entropy");
    names(R"("entropy": "00 1")", "entropy");
    names(R"("entropy": 1234)", "entropy");
    names(R"("entropy": ")" + std::string(2 * kMaxSetupEntropy + 2, 'a') + "\"", "entropy");
    names(R"("new_machine_id": 1)", "new_machine_id");
    names(R"("new_machine_id": "true")", "new_machine_id");
    EXPECT_EQ(error(R"("entropy": "0g")"),
              "SETUP request: field 'entropy': expected an even number of lower-case hex "
              "digits, got \"0g\"");
    EXPECT_EQ(error(R"("clock_ns": 0)"),
              "SETUP request: field 'clock_ns': expected an integer from 1 to "
              "9223372036854775806, got 0");

    SetupRequest request{"node1-vm42", {}};
    request.clock_ns = 0;
    EXPECT_THROW(encode_setup(request), ProtocolError);
    request.clock_ns = -1;
    EXPECT_THROW(encode_setup(request), ProtocolError);
    request.clock_ns = std::numeric_limits<std::int64_t>::max();
    EXPECT_THROW(encode_setup(request), ProtocolError);
    request.clock_ns = std::nullopt;
    request.entropy = std::string(kMaxSetupEntropy + 1, 'x');
    try {
        encode_setup(request);
        FAIL() << "accepted 65 bytes of entropy";
    } catch (const ProtocolError &e) {
        EXPECT_STREQ(e.what(), "SETUP request: field 'entropy': expected at most 64 bytes, got 65");
    }
}

TEST(Messages, RefusesAUserThatCouldBreakTheGuestsPasswdFile) {
    const auto refused = [](GuestUser user) {
        SetupRequest request{"node1-vm42", {}, std::move(user)};
        EXPECT_THROW(encode_setup(request), ProtocolError);
    };
    refused({"al:ice", 1001, 1001, "/home/a", {}});
    refused({"alice\nroot", 1001, 1001, "/home/a", {}});
    refused({"-alice", 1001, 1001, "/home/a", {}});
    refused({"alice", 1001, 1001, "/home/a:/bin/sh", {}});
    refused({"alice", 1001, 1001, "relative", {}});
    refused({"alice", 0, 0, "/root", {}});
    refused({"alice", 1001, 1001, "/home/a", {{"g:x", 5}}});
}

TEST(Messages, RoundTripsExitStatusesAsWaitStatuses) {
    RemoteExit code = decode_exit(encode_exit(RemoteExit::from_wait_status(3 << 8)));
    EXPECT_TRUE(WIFEXITED(code.wait_status()));
    EXPECT_EQ(WEXITSTATUS(code.wait_status()), 3);
    RemoteExit killed = decode_exit(R"({"signal":9,"core_dumped":false})");
    EXPECT_TRUE(WIFSIGNALED(killed.wait_status()));
    EXPECT_EQ(WTERMSIG(killed.wait_status()), SIGKILL);
    RemoteExit core = decode_exit(R"({"signal":11,"core_dumped":true})");
    EXPECT_TRUE(WCOREDUMP(core.wait_status()));
}

TEST(Messages, RejectsAnExitWithBothCodeAndSignal) {
    EXPECT_THROW(decode_exit(R"({"exit_code":1,"signal":9})"), ProtocolError);
    EXPECT_THROW(decode_exit(R"({"exit_code":256})"), ProtocolError);
}

TEST(Messages, RejectsInvalidJson) {
    EXPECT_EQ(decode_exec_error("{\"argv\":"),
              "EXEC request: invalid JSON: unexpected end of input");
    EXPECT_EQ(decode_exec_error("[1,2]"), "EXEC request: expected a JSON object, got [1,2]");
    EXPECT_EQ(decode_exec_error(exec_json("") + "x"),
              "EXEC request: invalid JSON: trailing bytes after the object");
}

TEST(Messages, RejectsAnEmptyArgv) {
    EXPECT_EQ(decode_exec_error(exec_json(R"("argv":[])")),
              "EXEC request: field 'argv': must not be empty");
    EXPECT_EQ(decode_exec_error(exec_json(R"("argv":[""])")),
              "EXEC request: field 'argv[0]': the command name must not be empty");
}

TEST(Messages, RejectsArgvItemsThatAreNotStrings) {
    EXPECT_EQ(decode_exec_error(exec_json(R"("argv":["sh",5])")),
              "EXEC request: field 'argv[1]': expected a string, got 5");
}

TEST(Messages, RejectsNulBytesInArguments) {
    EXPECT_EQ(decode_exec_error(exec_json(R"("argv":["sh","a\u0000b"])")),
              "EXEC request: field 'argv[1]': contains a NUL byte");
}

TEST(Messages, RejectsEnvironmentEntriesWithoutEquals) {
    EXPECT_EQ(decode_exec_error(exec_json(R"("env":["PATH=/bin","JUNK"])")),
              "EXEC request: field 'env[1]': expected NAME=value, got \"JUNK\"");
    EXPECT_EQ(decode_exec_error(exec_json(R"("env":["=x"])")),
              "EXEC request: field 'env[0]': expected NAME=value, got \"=x\"");
}

TEST(Messages, RejectsARelativeWorkingDirectory) {
    EXPECT_EQ(decode_exec_error(exec_json(R"("cwd":"home/u")")),
              "EXEC request: field 'cwd': expected an absolute path, got \"home/u\"");
}

TEST(Messages, RejectsIdsOutOfRange) {
    EXPECT_EQ(decode_exec_error(exec_json(R"("uid":-1)")),
              "EXEC request: field 'uid': expected an integer from 0 to 4294967294, got -1");
    EXPECT_EQ(decode_exec_error(exec_json(R"("gid":4294967295)")),
              "EXEC request: field 'gid': expected an integer from 0 to 4294967294, got "
              "4294967295");
    EXPECT_EQ(decode_exec_error(exec_json(R"("uid":"1000")")),
              "EXEC request: field 'uid': expected an integer, got \"1000\"");
    EXPECT_EQ(decode_exec_error(exec_json(R"("groups":[1,1.5])")),
              "EXEC request: field 'groups[1]': expected an integer, got 1.5");
}

TEST(Messages, RejectsAMissingField) {
    EXPECT_EQ(decode_exec_error(R"({"argv":["sh"]})"), "EXEC request: missing field 'env'");
}

TEST(Messages, RefusesToEncodeAnInvalidRequest) {
    ExecRequest request{{"sh"}, {"NOEQUALS"}, "/", 0, 0, {}, ""};
    EXPECT_THROW(encode_exec(request), ProtocolError);
}

TEST(Messages, RejectsABadHostnameOrMountPath) {
    EXPECT_THROW(decode_setup(R"({"hostname":"a b","mounts":[]})"), ProtocolError);
    try {
        decode_setup(R"({"hostname":"vm1","mounts":[{"tag":"t","path":"/a/../etc"}]})");
        FAIL() << "accepted a path with ..";
    } catch (const ProtocolError &e) {
        EXPECT_STREQ(e.what(),
                     "SETUP request: field 'mounts[0].path': must not contain '..', got "
                     "\"/a/../etc\"");
    }
}

TEST(Messages, AcceptsOnlyTheForwardedSignals) {
    for (int signo :
         {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGTSTP, SIGCONT, SIGKILL}) {
        EXPECT_EQ(decode_signal(encode_signal(signo)), signo);
    }
    try {
        decode_signal(R"({"signal":11})");
        FAIL() << "accepted SIGSEGV";
    } catch (const ProtocolError &e) {
        EXPECT_STREQ(e.what(),
                     "SIGNAL frame: field 'signal': SIGSEGV is not one of the forwarded signals "
                     "(HUP INT QUIT TERM USR1 USR2 TSTP CONT KILL)");
    }
    EXPECT_THROW(decode_signal(R"({"signal":0})"), ProtocolError);
    EXPECT_THROW(decode_signal(R"({"signal":"TERM"})"), ProtocolError);
    EXPECT_THROW(encode_signal(SIGSTOP), ProtocolError);
}

TEST(Messages, CarriesTheFailedStageAndErrnoInErrors) {
    AgentError e =
        decode_error(encode_error({"execve(): x: No such file or directory", "execve", 2}));
    EXPECT_EQ(e.message, "execve(): x: No such file or directory");
    EXPECT_EQ(e.stage, "execve");
    EXPECT_EQ(e.error_number, 2);
    AgentError plain = decode_error(R"({"message":"boom"})");
    EXPECT_EQ(plain.stage, "");
    EXPECT_EQ(plain.error_number, 0);
}

TEST(Messages, RoundTripsTheHostPathsOfSlurmCommandsInASetupRequest) {
    SetupRequest request;
    request.hostname = "node1-vm7";
    request.command_links = {"/usr/bin/srun", "/opt/slurm/bin/squeue"};
    const SetupRequest back = decode_setup(encode_setup(request));
    EXPECT_EQ(back.command_links, request.command_links);
    // An older host sends none: the guest keeps what its image has.
    EXPECT_TRUE(decode_setup(R"({"hostname": "h"})").command_links.empty());
}

TEST(Messages, RefusesACommandLinkThatIsNotTheAbsolutePathOfASlurmCommand) {
    const auto error = [](const std::string &links) {
        return decode_setup_error(R"({"hostname": "h", "command_links": )" + links + "}");
    };
    EXPECT_EQ(error(R"(["usr/bin/srun"])").rfind("SETUP request: field 'command_links[0]': ", 0),
              0u);
    EXPECT_EQ(error(R"(["/usr/bin/../../etc/srun"])"),
              "SETUP request: field 'command_links[0]': must not contain '..', got "
              "\"/usr/bin/../../etc/srun\"");
    EXPECT_EQ(error(R"(["/usr/bin/srun", "/etc/passwd"])"),
              "SETUP request: field 'command_links[1]': expected the path of a Slurm command "
              "(srun, sbatch, scancel, scontrol, squeue, sacct, sinfo, sstat, salloc), got "
              "\"/etc/passwd\"");
    EXPECT_EQ(error(R"("/usr/bin/srun")").rfind("SETUP request: field 'command_links': ", 0), 0u);
    std::string many = "[";
    for (std::size_t i = 0; i <= kMaxCommandLinks; ++i) {
        many += std::string(i ? "," : "") + "\"/d" + std::to_string(i) + "/srun\"";
    }
    EXPECT_EQ(error(many + "]"),
              "SETUP request: field 'command_links': expected at most 32 paths, got 33");
}

}  // namespace
}  // namespace svm::protocol
