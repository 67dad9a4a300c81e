#include "exec/protocol/frame.h"

#include <cerrno>
#include <cstring>
#include <unistd.h>

#include "util/fd.h"

namespace svm::protocol {

namespace {

constexpr char kMagic0 = 'S';
constexpr char kMagic1 = 'V';
constexpr std::size_t kReadChunk = 65536 + kHeaderSize;
// A buffer that held a large frame (a batch script) gives its memory back once it is empty.
constexpr std::size_t kKeepCapacity = 256 * 1024;

void put_u32(std::string &out, std::uint32_t v) {
    out.push_back(static_cast<char>((v >> 24) & 0xff));
    out.push_back(static_cast<char>((v >> 16) & 0xff));
    out.push_back(static_cast<char>((v >> 8) & 0xff));
    out.push_back(static_cast<char>(v & 0xff));
}

std::uint32_t get_u32(const char *p) {
    auto b = reinterpret_cast<const unsigned char *>(p);
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
           std::uint32_t{b[3]};
}

}  // namespace

bool is_known_frame_type(std::uint8_t type) {
    switch (static_cast<FrameType>(type)) {
        case FrameType::Ping:
        case FrameType::Pong:
        case FrameType::Setup:
        case FrameType::Ok:
        case FrameType::Poweroff:
        case FrameType::Error:
        case FrameType::Exec:
        case FrameType::Started:
        case FrameType::Stdin:
        case FrameType::StdinEof:
        case FrameType::Stdout:
        case FrameType::Stderr:
        case FrameType::Signal:
        case FrameType::Exit:
        case FrameType::Winch:
        case FrameType::HostCall:
        case FrameType::HostCallStdout:
        case FrameType::HostCallStderr:
        case FrameType::HostCallExit:
        case FrameType::HostCallSignal:
            return true;
    }
    return false;
}

bool is_request(FrameType type) {
    return type == FrameType::Ping || type == FrameType::Setup || type == FrameType::Poweroff ||
           type == FrameType::Exec;
}

const char *frame_type_name(FrameType type) {
    switch (type) {
        case FrameType::Ping:
            return "PING";
        case FrameType::Pong:
            return "PONG";
        case FrameType::Setup:
            return "SETUP";
        case FrameType::Ok:
            return "OK";
        case FrameType::Poweroff:
            return "POWEROFF";
        case FrameType::Error:
            return "ERROR";
        case FrameType::Exec:
            return "EXEC";
        case FrameType::Started:
            return "STARTED";
        case FrameType::Stdin:
            return "STDIN";
        case FrameType::StdinEof:
            return "STDIN_EOF";
        case FrameType::Stdout:
            return "STDOUT";
        case FrameType::Stderr:
            return "STDERR";
        case FrameType::Signal:
            return "SIGNAL";
        case FrameType::Exit:
            return "EXIT";
        case FrameType::Winch:
            return "WINCH";
        case FrameType::HostCall:
            return "HOSTCALL";
        case FrameType::HostCallStdout:
            return "HOSTCALL_STDOUT";
        case FrameType::HostCallStderr:
            return "HOSTCALL_STDERR";
        case FrameType::HostCallExit:
            return "HOSTCALL_EXIT";
        case FrameType::HostCallSignal:
            return "HOSTCALL_SIGNAL";
    }
    return "UNKNOWN";
}

void append_frame(std::string &out, FrameType type, std::uint32_t session,
                  std::string_view payload) {
    if (payload.size() > kMaxPayload) {
        throw ProtocolError(std::string("frame ") + frame_type_name(type) + ": payload of " +
                            std::to_string(payload.size()) + " bytes exceeds the limit of " +
                            std::to_string(kMaxPayload));
    }
    out.reserve(out.size() + kHeaderSize + payload.size());
    out.push_back(kMagic0);
    out.push_back(kMagic1);
    out.push_back(static_cast<char>(type));
    out.push_back(0);
    put_u32(out, session);
    put_u32(out, static_cast<std::uint32_t>(payload.size()));
    out.append(payload);
}

std::string encode_frame(FrameType type, std::uint32_t session, std::string_view payload) {
    std::string out;
    append_frame(out, type, session, payload);
    return out;
}

void FrameReader::feed(std::string_view bytes) {
    // Compact lazily so that a long stream of small frames does not keep moving bytes.
    if (start_ > 0 && start_ >= buffer_.size() / 2) {
        buffer_.erase(0, start_);
        start_ = 0;
    }
    buffer_.append(bytes);
}

FrameReader::Fill FrameReader::fill_from(int fd) {
    if (buffered() >= kHeaderSize + kMaxPayload) {
        // next() cuts a frame (or skips bytes) from this much: nothing more is read until the
        // caller took it, so the buffer never exceeds a frame and a read.
        return Fill::Data;
    }
    char chunk[kReadChunk];
    for (;;) {
        ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n > 0) {
            feed(std::string_view(chunk, static_cast<std::size_t>(n)));
            return Fill::Data;
        }
        if (n == 0) {
            last_read_errno_ = 0;
            return Fill::Closed;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return Fill::WouldBlock;
        }
        if (errno == ECONNRESET || errno == EPIPE || errno == EIO || errno == ENOTCONN) {
            last_read_errno_ = errno;
            return Fill::Closed;
        }
        throw Error("reading the exec channel: " + errno_text(errno));
    }
}

void FrameReader::skip(std::size_t n) {
    start_ += n;
    skipped_ += n;
}

std::optional<Frame> FrameReader::next() {
    for (;;) {
        const std::size_t avail = buffer_.size() - start_;
        if (avail < 2) {
            // A lone trailing 'S' may be the start of the next header; anything else is noise.
            if (avail == 1 && buffer_[start_] != kMagic0) {
                skip(1);
            }
            return std::nullopt;
        }
        const char *p = buffer_.data() + start_;
        if (p[0] != kMagic0 || p[1] != kMagic1) {
            const void *found = std::memchr(p + 1, kMagic0, avail - 1);
            skip(found ? static_cast<std::size_t>(static_cast<const char *>(found) - p) : avail);
            continue;
        }
        if (avail < kHeaderSize) {
            return std::nullopt;
        }
        const auto type = static_cast<std::uint8_t>(p[2]);
        const std::uint32_t session = get_u32(p + 4);
        const std::uint32_t length = get_u32(p + 8);
        if (!is_known_frame_type(type) || p[3] != 0 ||
            (expected_session_ && session != *expected_session_)) {
            skip(1);
            continue;
        }
        if (length > kMaxPayload) {
            skip(1);
            throw ProtocolError("frame " + std::string(frame_type_name(FrameType(type))) +
                                ": announced payload of " + std::to_string(length) +
                                " bytes exceeds the limit of " + std::to_string(kMaxPayload));
        }
        if (avail < kHeaderSize + length) {
            return std::nullopt;
        }
        Frame frame{static_cast<FrameType>(type), session, std::string(p + kHeaderSize, length)};
        start_ += kHeaderSize + length;
        if (start_ == buffer_.size()) {
            reset();
        }
        return frame;
    }
}

std::size_t FrameReader::take_skipped() {
    std::size_t n = skipped_;
    skipped_ = 0;
    return n;
}

void FrameReader::reset() {
    if (buffer_.capacity() > kKeepCapacity) {
        std::string().swap(buffer_);
    } else {
        buffer_.clear();
    }
    start_ = 0;
}

}  // namespace svm::protocol
