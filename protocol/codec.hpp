// PostgreSQL v3 wire framing: pure functions over byte spans, no I/O.
//
// Every decoder answers ok / need_more / invalid and consumes nothing until a
// unit is complete. Declared lengths are validated before any body is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgmux::proto {

using ByteSpan = std::span<const uint8_t>;

inline ByteSpan as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
inline std::string_view as_chars(ByteSpan b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

enum class Result { ok, need_more, invalid };

constexpr uint32_t kProtocolV3 = 196608;  // 3.0
constexpr uint32_t kCancelRequestCode = 80877102;
constexpr uint32_t kSslRequestCode = 80877103;
constexpr uint32_t kGssEncRequestCode = 80877104;

// PostgreSQL's own cap on startup packets (MAX_STARTUP_PACKET_LENGTH).
constexpr size_t kMaxStartupPacket = 10000;
constexpr size_t kMaxStartupParams = 64;
// Default cap on a regular message's declared length (configurable by callers).
constexpr uint32_t kDefaultMaxMessage = 64u * 1024u * 1024u;

inline uint32_t read_u32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
inline uint16_t read_u16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }

// ---------------------------------------------------------------------------
// Regular (typed) messages: 1 type byte + int32 length (includes itself).

struct Frame {
  char type = 0;
  uint32_t length = 0;  // declared length, includes the 4 length bytes
  size_t total() const { return size_t(length) + 1; }
  uint32_t body_length() const { return length - 4; }
};

struct FrameResult {
  Result result = Result::need_more;
  Frame frame;
};

// Looks at the header at the start of `buf`. ok only when the whole message
// (header + body) is inside buf. invalid when the declared length is < 4 or
// > max_len (decided as soon as the 5 header bytes are present). need_more
// otherwise (also when only the header is present). `frame` is filled whenever
// the 5 header bytes are present (also on invalid, for logging). Never allocates.
FrameResult peek_frame(ByteSpan buf, uint32_t max_len = kDefaultMaxMessage);

// ---------------------------------------------------------------------------
// Streaming splitter for forwarding: never needs a whole message in memory.
//
// Feed arbitrary chunks; next() returns pieces, each consuming some prefix of
// the remaining chunk. A message is reported as one `header` piece followed by
// zero or more `body` pieces (the last has last_of_message = true; a message
// with an empty body gets a single header piece with last_of_message = true).
// Header bytes split across chunks are kept internally (at most 5 bytes).
//
// Progress guarantee: for a non-empty chunk every piece consumes >= 1 byte
// (a header piece consumes the header bytes that were still missing, which is
// at least the byte completing the header), so this loop always terminates:
//   while (!chunk.empty()) {
//     auto p = f.next(chunk);
//     chunk = chunk.subspan(p.consumed);
//     if (p.kind == StreamFramer::Kind::invalid) break;  // close the peer
//     ...
//   }
// An empty chunk returns need_more with consumed == 0.
// Body pieces reference the chunk (`data`, no copy); header pieces carry type
// and body_length but no data.
// invalid is terminal: it consumes the whole chunk (consumed == chunk.size())
// and every later call returns invalid the same way until reset().
// next() never allocates.
class StreamFramer {
 public:
  enum class Kind { need_more, header, body, invalid };
  struct Piece {
    Kind kind = Kind::need_more;
    size_t consumed = 0;           // bytes of the chunk this piece used
    char type = 0;                 // message type (header and body pieces)
    uint32_t body_length = 0;      // declared length - 4
    ByteSpan data;                 // body bytes inside the chunk (body pieces)
    bool last_of_message = false;  // this piece ends the message
  };

  explicit StreamFramer(uint32_t max_len = kDefaultMaxMessage) : max_len_(max_len) {}

  // Returns the next piece from `chunk` (which must start right after what
  // earlier calls consumed). need_more means the whole chunk was consumed
  // (consumed == chunk.size()) and more input is needed. invalid: declared
  // length < 4 or > max_len; the stream cannot continue.
  // Inline for the two common cases (a whole header at a message boundary,
  // body bytes); partial headers and errors take the out-of-line path.
  Piece next(ByteSpan chunk) {
    if (in_body_) return chunk.empty() ? Piece{} : body_piece(chunk);
    if (header_have_ != 0 || failed_ || chunk.size() < 5) return next_slow(chunk);
    const uint32_t length = read_u32(chunk.data() + 1);
    if (length < 4 || length > max_len_) return next_slow(chunk);
    return header_piece(char(chunk[0]), length, 5);
  }

  // True between messages (no partial header or body pending, not failed).
  bool at_boundary() const { return header_have_ == 0 && remaining_ == 0 && !in_body_ && !failed_; }
  // True after an invalid header was seen (until reset()).
  bool failed() const { return failed_; }
  // Some bytes of a header are buffered, the rest has not arrived.
  bool in_header() const { return header_have_ > 0; }
  void reset() { header_have_ = 0; remaining_ = 0; in_body_ = false; failed_ = false; }
  void set_max_len(uint32_t max_len) { max_len_ = max_len; }

 private:
  // Packed (24 bytes): every connection holds one.
  Piece next_slow(ByteSpan chunk);
  // A valid header (type, declared length) completed with the chunk's
  // first `consumed` bytes: the message starts.
  Piece header_piece(char type, uint32_t length, size_t consumed) {
    Piece p;
    type_ = type;
    body_len_ = length - 4;
    remaining_ = body_len_;
    header_have_ = 0;
    p.kind = Kind::header;
    p.consumed = consumed;
    p.type = type_;
    p.body_length = body_len_;
    if (body_len_ == 0) p.last_of_message = true;
    else in_body_ = true;
    return p;
  }
  // Body bytes at the start of a non-empty chunk: referenced, not copied.
  Piece body_piece(ByteSpan chunk) {
    Piece p;
    const size_t take = remaining_ < chunk.size() ? remaining_ : chunk.size();  // >= 1
    remaining_ -= uint32_t(take);
    p.kind = Kind::body;
    p.consumed = take;
    p.type = type_;
    p.body_length = body_len_;
    p.data = chunk.first(take);
    if (remaining_ == 0) {
      in_body_ = false;
      p.last_of_message = true;
    }
    return p;
  }

  uint32_t max_len_;
  uint32_t body_len_ = 0;
  uint32_t remaining_ = 0;
  uint8_t header_[5] = {};
  uint8_t header_have_ = 0;  // 0..5
  bool in_body_ = false;
  char type_ = 0;
  bool failed_ = false;
};

// ---------------------------------------------------------------------------
// Startup phase packets (no type byte): StartupMessage, SSLRequest,
// GSSENCRequest, CancelRequest.

enum class StartupKind { startup, ssl_request, gssenc_request, cancel };

struct StartupPacket {
  StartupKind kind = StartupKind::startup;
  uint32_t protocol = 0;  // StartupMessage: requested protocol version
  std::vector<std::pair<std::string, std::string>> params;  // in order sent
  uint32_t cancel_pid = 0;
  uint32_t cancel_key = 0;
  size_t consumed = 0;  // bytes the packet occupies
  std::string error;    // short human-readable reason when invalid, no prefix
                        // (e.g. "unsupported frontend protocol 2.0")

  // Value of a startup parameter, or nullptr.
  const std::string* param(std::string_view name) const;
};

// Parses one startup-phase packet at the start of buf. Rules:
// - length < 8 or > max_len -> invalid; body not yet complete -> need_more.
// - SSLRequest/GSSENCRequest/CancelRequest must have exactly their fixed size
//   (8, 8, 16) -> else invalid.
// - StartupMessage: major version must be 3 (minor may be > 0; the caller
//   negotiates). Then name/value C-string pairs terminated by an empty name;
//   every string NUL-terminated inside the packet; no trailing bytes after the
//   terminator; no empty values for "user"; at most max_params pairs;
//   "user" is required. Violations -> invalid with `error` set.
// - Unlike PostgreSQL (last value wins) a parameter name sent twice is
//   invalid, so auth, routing and forwarding can never see different values.
// - Once 8 bytes are present the request code is checked: a wrong fixed size
//   for SSL/GSSENC/Cancel, an unknown 1234.x code or a protocol major != 3 is
//   invalid at once, without waiting for the declared length to arrive.
// On invalid, every field of `out` but `error` is reset; on need_more `out` is
// reset. On ok, `consumed` is the declared length.
Result parse_startup(ByteSpan buf, StartupPacket& out, size_t max_len = kMaxStartupPacket,
                     size_t max_params = kMaxStartupParams);

}  // namespace pgmux::proto
