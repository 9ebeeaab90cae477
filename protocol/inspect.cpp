// Inspectors: full validation of message bodies through a bounds-checked
// Reader. Nothing here reads outside the given span or throws on bad input.
#include "protocol/inspect.hpp"

#include <cstring>

namespace pgmux::proto {

// ---------------------------------------------------------------------------
// Reader

bool Reader::u8(uint8_t& v) {
  if (remaining() < 1) return false;
  v = b_[pos_];
  pos_ += 1;
  return true;
}

bool Reader::i16(int16_t& v) {
  if (remaining() < 2) return false;
  v = int16_t(read_u16(b_.data() + pos_));
  pos_ += 2;
  return true;
}

bool Reader::i32(int32_t& v) {
  uint32_t u = 0;
  if (!u32(u)) return false;
  v = int32_t(u);
  return true;
}

bool Reader::u32(uint32_t& v) {
  if (remaining() < 4) return false;
  v = read_u32(b_.data() + pos_);
  pos_ += 4;
  return true;
}

bool Reader::cstr(std::string_view& v) {
  if (remaining() == 0) return false;
  const uint8_t* start = b_.data() + pos_;
  const void* nul = std::memchr(start, 0, remaining());
  if (nul == nullptr) return false;
  const size_t n = size_t(static_cast<const uint8_t*>(nul) - start);
  v = std::string_view(reinterpret_cast<const char*>(start), n);
  pos_ += n + 1;
  return true;
}

bool Reader::bytes(size_t n, std::string_view& v) {
  if (n > remaining()) return false;
  if (n == 0) {  // no pointer arithmetic on a possibly null, empty span
    v = {};
    return true;
  }
  v = std::string_view(reinterpret_cast<const char*>(b_.data() + pos_), n);
  pos_ += n;
  return true;
}

std::string_view Reader::rest() {
  if (remaining() == 0) return {};
  std::string_view v(reinterpret_cast<const char*>(b_.data() + pos_), remaining());
  pos_ = b_.size();
  return v;
}

// ---------------------------------------------------------------------------
// Authentication

namespace {

// Reads an Int16 count that must be >= 0.
bool count16(Reader& r, int16_t& n) { return r.i16(n) && n >= 0; }

// Reads `n` Int16 values (format codes) and discards them.
bool skip_i16s(Reader& r, int16_t n) {
  for (int16_t i = 0; i < n; ++i) {
    int16_t v = 0;
    if (!r.i16(v)) return false;
  }
  return true;
}

}  // namespace

std::optional<AuthRequest> parse_auth_request(ByteSpan body) {
  Reader r(body);
  AuthRequest a;
  if (!r.i32(a.code)) return std::nullopt;
  a.data = r.rest();
  switch (a.code) {
    case 0:   // AuthenticationOk
    case 2:   // KerberosV5
    case 3:   // CleartextPassword
    case 7:   // GSS
    case 9:   // SSPI
      if (!a.data.empty()) return std::nullopt;
      break;
    case 5:  // MD5Password: 4-byte salt
      if (a.data.size() != 4) return std::nullopt;
      break;
    case 10:  // SASL: mechanism list
      if (!parse_sasl_mechanisms(a.data)) return std::nullopt;
      break;
    case 8:   // GSSContinue
    case 11:  // SASLContinue
    case 12:  // SASLFinal
      break;
    default:
      // An unknown (future or obsolete) method: its layout cannot be checked;
      // hand it over so the caller can say "unsupported method N" instead of
      // "malformed". Codes are never negative.
      if (a.code < 0) return std::nullopt;
      break;
  }
  return a;
}

std::optional<std::vector<std::string>> parse_sasl_mechanisms(std::string_view data) {
  Reader r(as_bytes(data));
  std::vector<std::string> mechs;
  for (;;) {
    std::string_view m;
    if (!r.cstr(m)) return std::nullopt;  // missing terminator
    if (m.empty()) break;
    mechs.emplace_back(m);
  }
  if (!r.at_end() || mechs.empty()) return std::nullopt;
  return mechs;
}

// ---------------------------------------------------------------------------
// Session state messages

std::optional<ParameterStatusMsg> parse_parameter_status(ByteSpan body) {
  Reader r(body);
  ParameterStatusMsg m;
  if (!r.cstr(m.name) || !r.cstr(m.value) || !r.at_end()) return std::nullopt;
  return m;
}

std::optional<BackendKey> parse_backend_key_data(ByteSpan body) {
  Reader r(body);
  BackendKey k;
  if (!r.u32(k.pid) || !r.u32(k.key) || !r.at_end()) return std::nullopt;
  return k;
}

std::optional<char> parse_ready_for_query(ByteSpan body) {
  if (body.size() != 1) return std::nullopt;
  const char s = char(body[0]);
  if (s != 'I' && s != 'T' && s != 'E') return std::nullopt;
  return s;
}

std::optional<ErrorFields> parse_error_fields(ByteSpan body) {
  Reader r(body);
  ErrorFields f;
  f.severity.clear();
  f.sqlstate.clear();
  std::string_view localized_severity;
  bool have_v = false;
  for (;;) {
    uint8_t code = 0;
    if (!r.u8(code)) return std::nullopt;  // no terminator
    if (code == 0) break;
    std::string_view v;
    if (!r.cstr(v)) return std::nullopt;
    switch (code) {
      case 'S': localized_severity = v; break;
      case 'V': f.severity.assign(v); have_v = true; break;
      case 'C': f.sqlstate.assign(v); break;
      case 'M': f.message.assign(v); break;
      case 'D': f.detail.assign(v); break;
      case 'H': f.hint.assign(v); break;
      default: break;  // unknown / unused field: skipped
    }
  }
  if (!r.at_end()) return std::nullopt;
  if (!have_v) f.severity.assign(localized_severity);
  return f;
}

bool is_stale_plan_error(ByteSpan body) {
  Reader r(body);
  bool code = false, routine = false;
  for (;;) {
    uint8_t field = 0;
    if (!r.u8(field)) return false;
    if (field == 0) break;
    std::string_view v;
    if (!r.cstr(v)) return false;
    if (field == 'C') code = v == "0A000";
    else if (field == 'R') routine = v == "RevalidateCachedQuery";
  }
  return r.at_end() && code && routine;
}

std::optional<std::string_view> parse_command_complete(ByteSpan body) {
  Reader r(body);
  std::string_view tag;
  if (!r.cstr(tag) || !r.at_end()) return std::nullopt;
  return tag;
}

// ---------------------------------------------------------------------------
// Frontend 'p' variants, 'Q'

std::optional<SaslInitial> parse_sasl_initial_response(ByteSpan body) {
  Reader r(body);
  SaslInitial s;
  int32_t len = 0;
  if (!r.cstr(s.mechanism) || !r.i32(len)) return std::nullopt;
  if (len == -1) {
    s.has_data = false;
  } else if (len < 0 || !r.bytes(size_t(len), s.data)) {
    return std::nullopt;
  } else {
    s.has_data = true;
  }
  if (!r.at_end()) return std::nullopt;
  return s;
}

std::optional<std::string_view> parse_password_message(ByteSpan body) {
  Reader r(body);
  std::string_view pw;
  if (!r.cstr(pw) || !r.at_end()) return std::nullopt;
  return pw;
}

std::optional<std::string_view> parse_query(ByteSpan body) {
  Reader r(body);
  std::string_view sql;
  if (!r.cstr(sql) || !r.at_end()) return std::nullopt;
  return sql;
}

// ---------------------------------------------------------------------------
// Extended protocol

std::optional<ParseMsg> parse_parse(ByteSpan body) {
  Reader r(body);
  ParseMsg m;
  int16_t n = 0;
  if (!r.cstr(m.statement) || !r.cstr(m.query) || !count16(r, n)) return std::nullopt;
  if (r.remaining() != size_t(n) * 4) return std::nullopt;  // exact: no trailing bytes
  m.param_types.reserve(size_t(n));
  for (int16_t i = 0; i < n; ++i) {
    uint32_t oid = 0;
    r.u32(oid);  // cannot fail: size checked above
    m.param_types.push_back(oid);
  }
  return m;
}

std::optional<BindMsg> parse_bind(ByteSpan body) {
  Reader r(body);
  BindMsg m;
  if (!r.cstr(m.portal)) return std::nullopt;
  m.statement_offset = r.pos();
  if (!r.cstr(m.statement)) return std::nullopt;
  int16_t n = 0;
  if (!count16(r, n) || !skip_i16s(r, n)) return std::nullopt;  // parameter formats
  if (!count16(r, n)) return std::nullopt;                        // parameter values
  for (int16_t i = 0; i < n; ++i) {
    int32_t len = 0;
    if (!r.i32(len)) return std::nullopt;
    if (len == -1) continue;  // NULL
    std::string_view v;
    if (len < 0 || !r.bytes(size_t(len), v)) return std::nullopt;
  }
  if (!count16(r, n) || !skip_i16s(r, n)) return std::nullopt;  // result formats
  if (!r.at_end()) return std::nullopt;
  return m;
}

namespace {

std::optional<DescribeOrClose> parse_target(ByteSpan body) {
  Reader r(body);
  DescribeOrClose d;
  uint8_t kind = 0;
  if (!r.u8(kind) || (kind != 'S' && kind != 'P')) return std::nullopt;
  d.kind = char(kind);
  if (!r.cstr(d.name) || !r.at_end()) return std::nullopt;
  return d;
}

}  // namespace

std::optional<DescribeOrClose> parse_describe(ByteSpan body) { return parse_target(body); }
std::optional<DescribeOrClose> parse_close(ByteSpan body) { return parse_target(body); }

// ---------------------------------------------------------------------------
// Additions

std::optional<NegotiateProtocol> parse_negotiate_protocol_version(ByteSpan body) {
  Reader r(body);
  NegotiateProtocol m;
  int32_t n = 0;
  if (!r.u32(m.newest_minor) || !r.i32(n) || n < 0) return std::nullopt;
  // Every name takes >= 1 byte: a count larger than the body is malformed,
  // and checking it first bounds the loop and the vector.
  if (size_t(n) > r.remaining()) return std::nullopt;
  m.unrecognized.reserve(size_t(n));
  for (int32_t i = 0; i < n; ++i) {
    std::string_view opt;
    if (!r.cstr(opt)) return std::nullopt;
    m.unrecognized.push_back(opt);
  }
  if (!r.at_end()) return std::nullopt;
  return m;
}

std::optional<std::vector<ColumnDesc>> parse_row_description(ByteSpan body) {
  constexpr size_t kMinField = 1 + 4 + 2 + 4 + 2 + 4 + 2;  // empty name + fixed part
  Reader r(body);
  int16_t n = 0;
  if (!count16(r, n)) return std::nullopt;
  if (size_t(n) * kMinField > r.remaining()) return std::nullopt;
  std::vector<ColumnDesc> cols;
  cols.reserve(size_t(n));
  for (int16_t i = 0; i < n; ++i) {
    ColumnDesc c;
    if (!r.cstr(c.name) || !r.u32(c.table_oid) || !r.i16(c.attnum) || !r.u32(c.type_oid) ||
        !r.i16(c.typlen) || !r.i32(c.typmod) || !r.i16(c.format)) {
      return std::nullopt;
    }
    cols.push_back(c);
  }
  if (!r.at_end()) return std::nullopt;
  return cols;
}

uint64_t result_shape(char type, ByteSpan body) {
  if (type != 'T') return kNoRowsShape;
  auto cols = parse_row_description(body);
  if (!cols) return kUnreadableShape;
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 0x100000001b3ull;
    }
  };
  const uint32_t n = uint32_t(cols->size());
  mix(&n, sizeof n);
  for (const ColumnDesc& c : *cols) {
    mix(c.name.data(), c.name.size());
    mix("", 1);  // the name's end
    mix(&c.type_oid, sizeof c.type_oid);
    mix(&c.typmod, sizeof c.typmod);
  }
  return h > kUnreadableShape ? h : h + kUnreadableShape + 1;
}

std::optional<std::vector<std::optional<std::string_view>>> parse_data_row(ByteSpan body) {
  Reader r(body);
  int16_t n = 0;
  if (!count16(r, n)) return std::nullopt;
  if (size_t(n) * 4 > r.remaining()) return std::nullopt;
  std::vector<std::optional<std::string_view>> values;
  values.reserve(size_t(n));
  for (int16_t i = 0; i < n; ++i) {
    int32_t len = 0;
    if (!r.i32(len)) return std::nullopt;
    if (len == -1) {
      values.emplace_back(std::nullopt);
      continue;
    }
    std::string_view v;
    if (len < 0 || !r.bytes(size_t(len), v)) return std::nullopt;
    values.emplace_back(v);
  }
  if (!r.at_end()) return std::nullopt;
  return values;
}

}  // namespace pgmux::proto
