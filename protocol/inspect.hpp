// Inspectors for the messages the pooler must understand. Each takes the
// message BODY (without type byte and length) and validates it fully: a
// malformed body returns std::nullopt / false, never reads out of bounds.
// Returned string_views point into `body`: copy them before it goes away.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/builders.hpp"
#include "protocol/codec.hpp"

namespace pgmux::proto {

// Bounds-checked cursor over a message body.
class Reader {
 public:
  explicit Reader(ByteSpan body) : b_(body) {}
  bool u8(uint8_t& v);
  bool i16(int16_t& v);
  bool i32(int32_t& v);
  bool u32(uint32_t& v);
  bool cstr(std::string_view& v);          // up to NUL (NUL consumed, not included)
  bool bytes(size_t n, std::string_view& v);
  std::string_view rest();                 // remaining bytes, consumes them
  bool at_end() const { return pos_ == b_.size(); }
  size_t remaining() const { return b_.size() - pos_; }
  size_t pos() const { return pos_; }  // bytes consumed so far

 private:
  ByteSpan b_;
  size_t pos_ = 0;
};

// 'R' Authentication*: code and the bytes after it.
struct AuthRequest {
  int32_t code = -1;  // 0 ok, 3 cleartext, 5 md5, 10 SASL, 11 SASL continue, 12 SASL final
  std::string_view data;  // md5: 4-byte salt; SASL: mechanism list; 11/12: payload
};
// Known codes and their layouts: 0, 2 (KerberosV5), 3, 7 (GSS), 9 (SSPI): no
// data; 5: exactly 4 salt bytes; 10: a valid mechanism list (see below);
// 8 (GSS continue), 11, 12: any payload. Other codes >= 0 are returned with
// their bytes as opaque data (the caller reports an unsupported method);
// a negative code or a body shorter than 4 bytes -> nullopt.
std::optional<AuthRequest> parse_auth_request(ByteSpan body);
// SASL mechanism list of an AuthenticationSASL (code 10) payload: one or more
// non-empty C strings, then the terminating NUL, nothing after it.
std::optional<std::vector<std::string>> parse_sasl_mechanisms(std::string_view data);

// 'S' ParameterStatus
struct ParameterStatusMsg {
  std::string_view name, value;
};
std::optional<ParameterStatusMsg> parse_parameter_status(ByteSpan body);

// 'K' BackendKeyData
struct BackendKey {
  uint32_t pid = 0, key = 0;
};
std::optional<BackendKey> parse_backend_key_data(ByteSpan body);

// 'Z' ReadyForQuery: 'I', 'T' or 'E'.
std::optional<char> parse_ready_for_query(ByteSpan body);

// 'E' / 'N' fields. Unknown field codes are skipped. Fields absent from the
// message are empty in the result (not ErrorFields' defaults). severity is
// taken from 'V' (non-localized) when present, else from 'S'. The final 0 byte
// is required and must be the last byte.
std::optional<ErrorFields> parse_error_fields(ByteSpan body);

// An ErrorResponse body saying a prepared statement's plan went stale with
// a changed result type ("cached plan must not change result type": SQLSTATE
// 0A000 from routine RevalidateCachedQuery, which no locale translates).
// The statement fails on that connection until it is prepared again.
bool is_stale_plan_error(ByteSpan body);

// 'C' CommandComplete tag.
std::optional<std::string_view> parse_command_complete(ByteSpan body);

// Frontend 'p' as SASLInitialResponse: mechanism + data (length -1 = absent).
struct SaslInitial {
  std::string_view mechanism;
  std::string_view data;
  bool has_data = false;
};
std::optional<SaslInitial> parse_sasl_initial_response(ByteSpan body);
// Frontend 'p' as PasswordMessage (cleartext or md5): the NUL-terminated string.
std::optional<std::string_view> parse_password_message(ByteSpan body);

// Frontend 'Q' Query: the SQL text.
std::optional<std::string_view> parse_query(ByteSpan body);

// Frontend extended-protocol messages (used by transaction pooling).
struct ParseMsg {
  std::string_view statement, query;
  std::vector<uint32_t> param_types;
};
std::optional<ParseMsg> parse_parse(ByteSpan body);
struct BindMsg {
  std::string_view portal, statement;  // names only; the rest is forwarded as is
  size_t statement_offset = 0;         // offset of the statement name in body
};
// Validates the whole layout (format codes, parameter values with -1 = NULL,
// result format codes, nothing after); counts must be >= 0. Format code
// values and count consistency are left to the server.
std::optional<BindMsg> parse_bind(ByteSpan body);
struct DescribeOrClose {
  char kind = 0;  // 'S' statement or 'P' portal
  std::string_view name;
};
std::optional<DescribeOrClose> parse_describe(ByteSpan body);
std::optional<DescribeOrClose> parse_close(ByteSpan body);

// --- additions: messages the pooler reads when it is the client -----------

// Backend 'v' NegotiateProtocolVersion.
struct NegotiateProtocol {
  uint32_t newest_minor = 0;
  std::vector<std::string_view> unrecognized;  // option names, e.g. "_pq_.x"
};
std::optional<NegotiateProtocol> parse_negotiate_protocol_version(ByteSpan body);

// Backend 'T' RowDescription (e.g. the result of auth_query).
struct ColumnDesc {
  std::string_view name;
  uint32_t table_oid = 0;
  int16_t attnum = 0;
  uint32_t type_oid = 0;
  int16_t typlen = 0;
  int32_t typmod = 0;
  int16_t format = 0;
};
std::optional<std::vector<ColumnDesc>> parse_row_description(ByteSpan body);

// A statement's result type, as PostgreSQL compares it when it revalidates
// a cached plan: the columns' names, type OIDs and type modifiers (not the
// table a column comes from, nor the format codes). A hash of them from a
// 'T' RowDescription body, or kNoRowsShape for 'n' NoData; never 0 (0
// stands for "not known"). kUnreadableShape: a malformed RowDescription
// (compares equal to anything).
constexpr uint64_t kNoRowsShape = 1;
constexpr uint64_t kUnreadableShape = 2;
uint64_t result_shape(char type, ByteSpan body);

// Backend 'D' DataRow: one entry per column, nullopt = SQL NULL.
std::optional<std::vector<std::optional<std::string_view>>> parse_data_row(ByteSpan body);

}  // namespace pgmux::proto
