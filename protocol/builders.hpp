// Message builders. Every builder appends one complete message to `out`.
// Message layouts are written once, here, through MessageWriter.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgmux::proto {

// Appends a message to a std::string buffer and patches its length on finish().
class MessageWriter {
 public:
  // type == 0 writes an untyped (startup-phase) packet.
  MessageWriter(std::string& out, char type);
  MessageWriter& u8(uint8_t v);
  MessageWriter& i16(int16_t v);
  MessageWriter& i32(int32_t v);
  MessageWriter& u32(uint32_t v);
  MessageWriter& cstr(std::string_view s);  // bytes up to the first NUL in s, + NUL
  MessageWriter& bytes(std::string_view s);  // raw bytes
  void finish();  // writes the length; must be called exactly once

 private:
  std::string& out_;
  size_t start_;  // offset of the length field
};

// Error and notice fields. Empty strings are omitted. The builders send the
// severity twice, as 'S' and as the non-localized 'V', like PostgreSQL does.
struct ErrorFields {
  std::string severity = "ERROR";  // ERROR, FATAL, PANIC / WARNING, NOTICE, ...
  std::string sqlstate = "XX000";
  std::string message;
  std::string detail;
  std::string hint;
  // 'R': the PostgreSQL function that raised it, for errors pgmux gives in
  // PostgreSQL's name that drivers recognise by it (RevalidateCachedQuery).
  std::string routine;
};

// A FATAL error (the connection ends after it).
inline ErrorFields fatal_error(const char* sqlstate, std::string message) {
  ErrorFields e;
  e.severity = "FATAL";
  e.sqlstate = sqlstate;
  e.message = std::move(message);
  return e;
}

// Common SQLSTATEs used by the pooler.
namespace sqlstate {
constexpr const char* kProtocolViolation = "08P01";
constexpr const char* kConnectionFailure = "08006";
constexpr const char* kCannotConnectNow = "57P03";
constexpr const char* kInvalidPassword = "28P01";
constexpr const char* kInvalidAuthorization = "28000";
constexpr const char* kTooManyConnections = "53300";
constexpr const char* kQueryCanceled = "57014";
constexpr const char* kAdminShutdown = "57P01";
constexpr const char* kFeatureNotSupported = "0A000";
constexpr const char* kInternalError = "XX000";
constexpr const char* kIdleSessionTimeout = "57P05";
}  // namespace sqlstate

// --- backend -> frontend (pgmux acting as a server towards clients) --------
void auth_ok(std::string& out);
void auth_cleartext(std::string& out);
void auth_md5(std::string& out, const uint8_t salt[4]);
// Empty mechanism names are skipped (an empty string ends the list on the wire).
void auth_sasl(std::string& out, const std::vector<std::string>& mechanisms);
void auth_sasl_continue(std::string& out, std::string_view data);
void auth_sasl_final(std::string& out, std::string_view data);
void parameter_status(std::string& out, std::string_view name, std::string_view value);
void backend_key_data(std::string& out, uint32_t pid, uint32_t key);
void ready_for_query(std::string& out, char status);  // 'I', 'T' or 'E'
void error_response(std::string& out, const ErrorFields& f);
void notice_response(std::string& out, const ErrorFields& f);
void negotiate_protocol_version(std::string& out, uint32_t newest_minor,
                                const std::vector<std::string>& unrecognized);
void command_complete(std::string& out, std::string_view tag);
void empty_query_response(std::string& out);
// RowDescription with text columns (type OID 25 = text), for the admin console.
void row_description_text(std::string& out, const std::vector<std::string>& columns);
// DataRow; a nullopt-like null is represented by `nulls[i] == true`
// (`nulls` may be shorter than `values`: missing entries mean not null).
void data_row(std::string& out, const std::vector<std::string>& values,
              const std::vector<bool>& nulls = {});

// --- frontend -> backend (pgmux acting as a client towards servers) --------
// Pairs with an empty name are skipped (an empty name is the terminator).
void startup_message(std::string& out, const std::vector<std::pair<std::string, std::string>>& params,
                     uint32_t protocol = 196608);
void ssl_request(std::string& out);
void cancel_request(std::string& out, uint32_t pid, uint32_t key);
void password_message(std::string& out, std::string_view password);  // 'p' + cstr
// Always sends the data with its length (never the -1 "no data" form).
void sasl_initial_response(std::string& out, std::string_view mechanism, std::string_view data);
void sasl_response(std::string& out, std::string_view data);
void query(std::string& out, std::string_view sql);
// Parse (unnamed) + Bind (text parameters, text results) + Execute + Sync:
// one statement whose parameters are values, never SQL text.
void query_with_params(std::string& out, std::string_view sql, const std::vector<std::string>& params);
void sync(std::string& out);
void terminate(std::string& out);

}  // namespace pgmux::proto
