// libFuzzer target: the bytes a guest (or a stale session) puts on the exec channel. They are cut
// into frames by FrameReader, in chunks as reads would deliver them, and every frame's payload
// goes through the decoder the host or the agent would use. Checked besides memory safety:
//   - a reader never holds more than one frame and one read (it is the guest's to fill);
//   - only ProtocolError comes out of the reader and the decoders;
//   - a frame re-encoded is read back the same, and a decoded request encodes again (encode_*
//     and decode_* check the same things) to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "exec/protocol/frame.h"
#include "exec/protocol/messages.h"

namespace {

using svm::protocol::Frame;
using svm::protocol::FrameReader;
using svm::protocol::FrameType;
namespace protocol = svm::protocol;

void check(bool condition, const char *what) {
    if (!condition) {
        std::fprintf(stderr, "invariant broken: %s\n", what);
        std::abort();
    }
}

template <typename Decode, typename Encode>
void round_trip(const std::string &payload, Decode decode, Encode encode) {
    decltype(decode(payload)) value;
    try {
        value = decode(payload);
    } catch (const protocol::ProtocolError &) {
        return;
    }
    std::string again;
    try {
        again = encode(value);
    } catch (const protocol::ProtocolError &e) {
        std::fprintf(stderr, "%s\n", e.what());
        check(false, "a message that decodes does not encode again");
    }
    check(encode(decode(again)) == again, "decode(encode(x)) differs from x");
}

// Decoders that only read (the host's side of a frame): anything but ProtocolError escapes.
template <typename Decode>
void decode_only(const std::string &payload, Decode decode) {
    try {
        decode(payload);
    } catch (const protocol::ProtocolError &) {
    }
}

void decode(const Frame &frame) {
    const std::string &p = frame.payload;
    switch (frame.type) {
        case FrameType::Pong:
            decode_only(p, protocol::decode_pong);
            break;
        case FrameType::Setup:
            round_trip(p, protocol::decode_setup, protocol::encode_setup);
            break;
        case FrameType::Exec:
            round_trip(p, protocol::decode_exec, protocol::encode_exec);
            break;
        case FrameType::Started:
            decode_only(p, protocol::decode_started);
            break;
        case FrameType::Error:
            decode_only(p, protocol::decode_error);
            break;
        case FrameType::Signal:
            decode_only(p, protocol::decode_signal);
            break;
        case FrameType::Exit:
            decode_only(p, protocol::decode_exit);
            break;
        case FrameType::HostCall:
            round_trip(p, protocol::decode_hostcall, protocol::encode_hostcall);
            break;
        case FrameType::HostCallStdout:
        case FrameType::HostCallStderr:
            decode_only(p, protocol::decode_hostcall_output);
            break;
        case FrameType::HostCallExit:
            decode_only(p, protocol::decode_hostcall_exit);
            break;
        case FrameType::HostCallSignal:
            decode_only(p, protocol::decode_hostcall_signal);
            break;
        default:
            break;
    }
}

void check_reencoded(const Frame &frame) {
    FrameReader reader;
    reader.feed(protocol::encode_frame(frame.type, frame.session, frame.payload));
    auto again = reader.next();
    check(again && again->type == frame.type && again->session == frame.session &&
              again->payload == frame.payload,
          "a re-encoded frame reads back differently");
    check(reader.buffered() == 0, "a re-encoded frame leaves bytes behind");
}

}  // namespace

// Input: one byte of options (bit 0: expect session 0x00000001, as a host does; bits 1-7: the
// size of each chunk fed, 1 to 128 bytes), then the stream.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    FrameReader reader;
    if (data[0] & 1) {
        reader.expect_session(1);
    }
    const std::size_t chunk = 1 + (data[0] >> 1);
    std::string_view stream(reinterpret_cast<const char *>(data + 1), size - 1);
    while (!stream.empty()) {
        const std::string_view piece = stream.substr(0, chunk);
        stream.remove_prefix(piece.size());
        reader.feed(piece);
        for (;;) {
            std::optional<Frame> frame;
            try {
                frame = reader.next();
            } catch (const protocol::ProtocolError &) {
                continue;  // the reader skipped a byte: go on, as the agent does
            }
            if (!frame) {
                break;
            }
            check_reencoded(*frame);
            decode(*frame);
        }
        check(reader.buffered() < protocol::kHeaderSize + protocol::kMaxPayload,
              "the reader holds more than a frame after next() said it needs more");
        reader.take_skipped();
    }
    return 0;
}
