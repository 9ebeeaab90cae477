// PostgreSQL v3 framing and startup-phase packets. See codec.hpp.
//
// Everything here is bounds-checked against the span it was given; nothing
// throws (the only allocating function, parse_startup, builds small strings
// bounded by the startup packet cap).
#include "protocol/codec.hpp"

#include <algorithm>
#include <cstring>

namespace pgmux::proto {

// ---------------------------------------------------------------------------
// peek_frame

FrameResult peek_frame(ByteSpan buf, uint32_t max_len) {
  FrameResult r;
  if (buf.size() < 5) return r;  // need_more: header incomplete
  r.frame.type = char(buf[0]);
  r.frame.length = read_u32(buf.data() + 1);
  // Validate the declared length before looking at any body byte.
  if (r.frame.length < 4 || r.frame.length > max_len) {
    r.result = Result::invalid;
    return r;
  }
  r.result = buf.size() >= r.frame.total() ? Result::ok : Result::need_more;
  return r;
}

// ---------------------------------------------------------------------------
// StreamFramer

StreamFramer::Piece StreamFramer::next_slow(ByteSpan chunk) {
  Piece p;
  if (failed_) {
    // Terminal state: swallow the chunk so that any caller loop ends.
    p.kind = Kind::invalid;
    p.type = type_;
    p.consumed = chunk.size();
    return p;
  }
  if (chunk.empty()) return p;  // need_more, consumed 0
  if (in_body_) return body_piece(chunk);

  // Collect the 5 header bytes, possibly across calls.
  const size_t take = std::min(sizeof(header_) - header_have_, chunk.size());
  std::memcpy(header_ + header_have_, chunk.data(), take);
  header_have_ = uint8_t(header_have_ + take);
  if (header_have_ < sizeof(header_)) {
    p.consumed = take;  // == chunk.size()
    return p;           // need_more
  }
  type_ = char(header_[0]);
  const uint32_t length = read_u32(header_ + 1);
  if (length < 4 || length > max_len_) {
    failed_ = true;
    p.kind = Kind::invalid;
    p.type = type_;
    p.consumed = chunk.size();
    return p;
  }
  return header_piece(type_, length, take);  // take >= 1: the header completes on a chunk byte
}

// ---------------------------------------------------------------------------
// Startup-phase packets

const std::string* StartupPacket::param(std::string_view name) const {
  for (const auto& kv : params) {
    if (kv.first == name) return &kv.second;
  }
  return nullptr;
}

namespace {

constexpr uint32_t kSpecialMajor = 1234;  // codes of SSLRequest & co: 1234.567x

// On invalid, every field but `error` is reset so no half-parsed data leaks.
Result fail(StartupPacket& out, std::string reason) {
  out = StartupPacket{};
  out.error = std::move(reason);
  return Result::invalid;
}

std::string version_text(uint32_t code) {
  return std::to_string(code >> 16) + "." + std::to_string(code & 0xffffu);
}

// A parameter name for an error text: it comes from the client and ends up
// in logs and in the ErrorResponse, so escape control and non-ASCII bytes
// and keep it short.
std::string quoted(std::string_view name) {
  constexpr size_t kMax = 64;
  static const char kHex[] = "0123456789abcdef";
  std::string q = "\"";
  for (size_t i = 0; i < name.size() && i < kMax; ++i) {
    const auto c = uint8_t(name[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      q.push_back(char(c));
    } else {
      q += "\\x";
      q.push_back(kHex[c >> 4]);
      q.push_back(kHex[c & 0xf]);
    }
  }
  if (name.size() > kMax) q += "...";
  q.push_back('"');
  return q;
}

// Finds a NUL-terminated string starting at `pos` inside [pos, end).
// Returns false when no NUL is found before `end`.
bool read_cstr(ByteSpan b, size_t& pos, size_t end, std::string_view& s) {
  const uint8_t* start = b.data() + pos;
  const void* nul = std::memchr(start, 0, end - pos);
  if (nul == nullptr) return false;
  const size_t n = size_t(static_cast<const uint8_t*>(nul) - start);
  s = std::string_view(reinterpret_cast<const char*>(start), n);
  pos += n + 1;
  return true;
}

}  // namespace

Result parse_startup(ByteSpan buf, StartupPacket& out, size_t max_len, size_t max_params) {
  out = StartupPacket{};
  if (buf.size() < 4) return Result::need_more;
  const uint32_t len = read_u32(buf.data());
  if (len < 8) return fail(out, "length " + std::to_string(len) + " is too short");
  if (len > max_len) return fail(out, "length " + std::to_string(len) + " exceeds the limit of " +
                                        std::to_string(max_len) + " bytes");
  if (buf.size() < 8) return Result::need_more;

  // The request code is known from the 8th byte on: reject what can never
  // become valid without waiting for the rest of a (possibly large) packet.
  const uint32_t code = read_u32(buf.data() + 4);
  size_t fixed = 0;
  StartupKind kind = StartupKind::startup;
  if (code == kSslRequestCode) {
    fixed = 8;
    kind = StartupKind::ssl_request;
  } else if (code == kGssEncRequestCode) {
    fixed = 8;
    kind = StartupKind::gssenc_request;
  } else if (code == kCancelRequestCode) {
    fixed = 16;
    kind = StartupKind::cancel;
  } else if ((code >> 16) == kSpecialMajor) {
    return fail(out, "unsupported request code " + version_text(code));
  } else if ((code >> 16) != 3) {
    return fail(out, "unsupported frontend protocol " + version_text(code));
  }
  if (fixed != 0 && len != fixed) {
    const char* what = kind == StartupKind::cancel        ? "cancel request"
                       : kind == StartupKind::ssl_request ? "SSL request"
                                                          : "GSSENC request";
    return fail(out, "invalid length " + std::to_string(len) + " of " + what);
  }
  if (buf.size() < len) return Result::need_more;

  out.kind = kind;
  if (kind == StartupKind::cancel) {
    out.cancel_pid = read_u32(buf.data() + 8);
    out.cancel_key = read_u32(buf.data() + 12);
  }
  if (kind != StartupKind::startup) {
    out.consumed = len;
    return Result::ok;
  }

  // StartupMessage: name/value pairs, then a single NUL which must be the
  // last byte of the packet.
  out.protocol = code;
  size_t pos = 8;
  const size_t end = len;
  for (;;) {
    if (pos >= end) return fail(out, "missing terminator after the last parameter");
    std::string_view name;
    if (!read_cstr(buf, pos, end, name)) return fail(out, "unterminated parameter name");
    if (name.empty()) break;  // terminator
    std::string_view value;
    if (!read_cstr(buf, pos, end, value)) {
      return fail(out, "missing value for parameter " + quoted(name));
    }
    if (out.params.size() >= max_params) {
      return fail(out, "too many parameters (limit " + std::to_string(max_params) + ")");
    }
    // Duplicate names are rejected rather than resolved ("last wins" in
    // PostgreSQL): the pooler reads user/database for auth and routing and
    // forwards the rest, and every consumer must see the same value.
    if (out.param(name) != nullptr) return fail(out, "duplicate parameter " + quoted(name));
    out.params.emplace_back(std::string(name), std::string(value));
  }
  if (pos != end) return fail(out, "trailing bytes after the terminator");

  const std::string* user = out.param("user");
  if (user == nullptr || user->empty()) {
    return fail(out, "no user name specified");
  }
  out.consumed = len;
  return Result::ok;
}

}  // namespace pgmux::proto
