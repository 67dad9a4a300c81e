// Framing of the host <-> guest exec channel (a virtio-serial port; a unix socket on the host).
//
// A frame is a 12-byte header and a payload:
//   'S' 'V' | u8 type | u8 reserved (0) | u32 BE session id | u32 BE payload length | payload
// The channel is a byte stream that a new host client may join while the guest still holds bytes
// of the previous session, so readers resynchronise on the magic and every frame names the
// session it belongs to (chosen at random by the host, echoed by the guest).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "util/error.h"

namespace svm::protocol {

// A peer broke the protocol: bad frame, bad JSON, a value out of range. The same type as the
// JSON helpers' errors (util/json.h), so a message's decoder throws this one type.
using ProtocolError = FormatError;

inline constexpr std::size_t kHeaderSize = 12;
// Output is streamed in chunks of at most 64 KiB; only an EXEC request carrying a batch script
// is larger (Slurm's default max_script_size is 4 MiB).
inline constexpr std::uint32_t kMaxPayload = 4 * 1024 * 1024 + 256 * 1024;

enum class FrameType : std::uint8_t {
    Ping = 0x01,
    Pong = 0x02,
    Setup = 0x03,
    Ok = 0x04,
    // host -> guest, when the job is over: sync and power the guest off. The agent answers OK
    // (then powers off) or ERROR; an agent older than this frame skips it and never answers,
    // so the host gives up after a short deadline and presses the ACPI power button instead.
    Poweroff = 0x05,
    Error = 0x0F,
    Exec = 0x10,
    Started = 0x11,
    Stdin = 0x12,
    StdinEof = 0x13,
    Stdout = 0x14,
    Stderr = 0x15,
    Signal = 0x16,
    Exit = 0x17,
    // host -> guest: the terminal of a pty session changed size (srun --pty); see messages.h.
    Winch = 0x18,
    // Host calls: a Slurm client command (srun, squeue, ...) run inside an EXEC session's
    // command is relayed by the agent to the host, which runs it next to the job. Each frame
    // names its call (several may run at once in one session); see messages.h.
    HostCall = 0x20,        // guest -> host: start a command on the host
    HostCallStdout = 0x21,  // host -> guest: 4-byte BE call id + output bytes
    HostCallStderr = 0x22,  // host -> guest: 4-byte BE call id + output bytes
    HostCallExit = 0x23,    // host -> guest: how the command ended
    HostCallSignal = 0x24,  // guest -> host: deliver a signal to the command
};

bool is_known_frame_type(std::uint8_t type);
// Requests open a session on the guest: PING, SETUP, POWEROFF, EXEC.
bool is_request(FrameType type);
const char *frame_type_name(FrameType type);

struct Frame {
    FrameType type;
    std::uint32_t session;
    std::string payload;
};

// Appends one encoded frame to out. Throws ProtocolError if the payload is too large.
void append_frame(std::string &out, FrameType type, std::uint32_t session,
                  std::string_view payload = {});
std::string encode_frame(FrameType type, std::uint32_t session, std::string_view payload = {});

// Buffers bytes from the peer and cuts them into frames. Memory is bounded: fill_from() holds at
// most one frame of kMaxPayload and one read (about 4.4 MiB), provided frames are taken with
// next() in between.
class FrameReader {
  public:
    enum class Fill { Data, WouldBlock, Closed };

    void feed(std::string_view bytes);
    // One read(2) from a (non-blocking) fd into the buffer. Closed: end of file, or the peer
    // reset the connection (errno is then in last_read_errno()). Other read errors throw.
    // Reads nothing (and says Data) while a whole frame's worth waits for next().
    Fill fill_from(int fd);
    int last_read_errno() const { return last_read_errno_; }

    // The next whole frame, or nullopt when more bytes are needed. Bytes before a valid header
    // (bad magic, unknown type, nonzero reserved byte, or another session when one is
    // expected) are skipped and counted. A header announcing more than kMaxPayload bytes throws
    // ProtocolError, after skipping its first byte so that reading may go on.
    std::optional<Frame> next();

    // Host side: frames of other sessions are stale bytes of an earlier client; skipping only
    // their first byte (not their announced length) keeps a stale half-frame from swallowing
    // the frames of this session.
    void expect_session(std::uint32_t session) { expected_session_ = session; }

    // Bytes skipped since the last call.
    std::size_t take_skipped();
    std::size_t buffered() const { return buffer_.size() - start_; }
    // Forget everything buffered: the peer went away.
    void reset();

  private:
    void skip(std::size_t n);

    std::string buffer_;
    std::size_t start_ = 0;
    std::size_t skipped_ = 0;
    std::optional<std::uint32_t> expected_session_;
    int last_read_errno_ = 0;
};

}  // namespace svm::protocol
