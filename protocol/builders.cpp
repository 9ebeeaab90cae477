// Message builders. Every layout is written once, here, through MessageWriter.
#include "protocol/builders.hpp"

#include <cstring>

#include "protocol/codec.hpp"

namespace pgmux::proto {

// ---------------------------------------------------------------------------
// MessageWriter

MessageWriter::MessageWriter(std::string& out, char type) : out_(out) {
  if (type != 0) out_.push_back(type);
  start_ = out_.size();
  out_.append(4, '\0');  // length, patched by finish()
}

MessageWriter& MessageWriter::u8(uint8_t v) {
  out_.push_back(char(v));
  return *this;
}

MessageWriter& MessageWriter::i16(int16_t v) {
  const auto u = uint16_t(v);
  out_.push_back(char(u >> 8));
  out_.push_back(char(u & 0xff));
  return *this;
}

MessageWriter& MessageWriter::i32(int32_t v) { return u32(uint32_t(v)); }

MessageWriter& MessageWriter::u32(uint32_t v) {
  out_.push_back(char(v >> 24));
  out_.push_back(char((v >> 16) & 0xff));
  out_.push_back(char((v >> 8) & 0xff));
  out_.push_back(char(v & 0xff));
  return *this;
}

MessageWriter& MessageWriter::cstr(std::string_view s) {
  // A C string cannot hold a NUL: cut there so the message stays well formed.
  const size_t nul = s.find('\0');
  if (nul != std::string_view::npos) s = s.substr(0, nul);
  out_.append(s);
  out_.push_back('\0');
  return *this;
}

MessageWriter& MessageWriter::bytes(std::string_view s) {
  out_.append(s);
  return *this;
}

void MessageWriter::finish() {
  const uint32_t len = uint32_t(out_.size() - start_);
  out_[start_ + 0] = char(len >> 24);
  out_[start_ + 1] = char((len >> 16) & 0xff);
  out_[start_ + 2] = char((len >> 8) & 0xff);
  out_[start_ + 3] = char(len & 0xff);
}

// ---------------------------------------------------------------------------
// backend -> frontend

namespace {

enum AuthCode : int32_t {
  kAuthOk = 0,
  kAuthCleartext = 3,
  kAuthMd5 = 5,
  kAuthSasl = 10,
  kAuthSaslContinue = 11,
  kAuthSaslFinal = 12,
};

void fields_message(std::string& out, char type, const ErrorFields& f) {
  MessageWriter w(out, type);
  auto field = [&w](char code, const std::string& v) {
    if (!v.empty()) w.u8(uint8_t(code)).cstr(v);
  };
  field('S', f.severity);
  field('V', f.severity);  // non-localized severity (PostgreSQL >= 9.6 sends both)
  field('C', f.sqlstate);
  field('M', f.message);
  field('D', f.detail);
  field('H', f.hint);
  field('R', f.routine);
  w.u8(0);
  w.finish();
}

// Counts are Int16 on the wire; builders are only used for small admin
// result sets, but never let a count wrap into a negative number.
int16_t count16(size_t n) { return n > 32767 ? int16_t(32767) : int16_t(n); }

}  // namespace

void auth_ok(std::string& out) {
  MessageWriter w(out, 'R');
  w.i32(kAuthOk);
  w.finish();
}

void auth_cleartext(std::string& out) {
  MessageWriter w(out, 'R');
  w.i32(kAuthCleartext);
  w.finish();
}

void auth_md5(std::string& out, const uint8_t salt[4]) {
  MessageWriter w(out, 'R');
  w.i32(kAuthMd5).bytes(std::string_view(reinterpret_cast<const char*>(salt), 4));
  w.finish();
}

void auth_sasl(std::string& out, const std::vector<std::string>& mechanisms) {
  MessageWriter w(out, 'R');
  w.i32(kAuthSasl);
  for (const auto& m : mechanisms) {
    if (!m.empty()) w.cstr(m);  // an empty name would end the list early
  }
  w.u8(0);
  w.finish();
}

void auth_sasl_continue(std::string& out, std::string_view data) {
  MessageWriter w(out, 'R');
  w.i32(kAuthSaslContinue).bytes(data);
  w.finish();
}

void auth_sasl_final(std::string& out, std::string_view data) {
  MessageWriter w(out, 'R');
  w.i32(kAuthSaslFinal).bytes(data);
  w.finish();
}

void parameter_status(std::string& out, std::string_view name, std::string_view value) {
  MessageWriter w(out, 'S');
  w.cstr(name).cstr(value);
  w.finish();
}

void backend_key_data(std::string& out, uint32_t pid, uint32_t key) {
  MessageWriter w(out, 'K');
  w.u32(pid).u32(key);
  w.finish();
}

void ready_for_query(std::string& out, char status) {
  MessageWriter w(out, 'Z');
  w.u8(uint8_t(status));
  w.finish();
}

void error_response(std::string& out, const ErrorFields& f) { fields_message(out, 'E', f); }

void notice_response(std::string& out, const ErrorFields& f) { fields_message(out, 'N', f); }

void negotiate_protocol_version(std::string& out, uint32_t newest_minor,
                                const std::vector<std::string>& unrecognized) {
  MessageWriter w(out, 'v');
  w.u32(newest_minor).i32(int32_t(unrecognized.size()));
  for (const auto& opt : unrecognized) w.cstr(opt);
  w.finish();
}

void command_complete(std::string& out, std::string_view tag) {
  MessageWriter w(out, 'C');
  w.cstr(tag);
  w.finish();
}

void empty_query_response(std::string& out) {
  MessageWriter w(out, 'I');
  w.finish();
}

void row_description_text(std::string& out, const std::vector<std::string>& columns) {
  constexpr int32_t kTextOid = 25;
  const int16_t n = count16(columns.size());
  MessageWriter w(out, 'T');
  w.i16(n);
  for (int16_t i = 0; i < n; ++i) {
    w.cstr(columns[size_t(i)])
        .i32(0)         // table OID: not a table column
        .i16(0)         // attribute number
        .i32(kTextOid)  // type OID
        .i16(-1)        // typlen: varlena
        .i32(-1)        // typmod
        .i16(0);        // format: text
  }
  w.finish();
}

void data_row(std::string& out, const std::vector<std::string>& values,
              const std::vector<bool>& nulls) {
  const int16_t n = count16(values.size());
  MessageWriter w(out, 'D');
  w.i16(n);
  for (int16_t i = 0; i < n; ++i) {
    const size_t k = size_t(i);
    if (k < nulls.size() && nulls[k]) {
      w.i32(-1);
    } else {
      w.i32(int32_t(values[k].size())).bytes(values[k]);
    }
  }
  w.finish();
}

// ---------------------------------------------------------------------------
// frontend -> backend

void startup_message(std::string& out,
                     const std::vector<std::pair<std::string, std::string>>& params,
                     uint32_t protocol) {
  MessageWriter w(out, 0);
  w.u32(protocol);
  for (const auto& [name, value] : params) {
    if (name.empty()) continue;  // an empty name is the terminator
    w.cstr(name).cstr(value);
  }
  w.u8(0);
  w.finish();
}

void ssl_request(std::string& out) {
  MessageWriter w(out, 0);
  w.u32(kSslRequestCode);
  w.finish();
}

void cancel_request(std::string& out, uint32_t pid, uint32_t key) {
  MessageWriter w(out, 0);
  w.u32(kCancelRequestCode).u32(pid).u32(key);
  w.finish();
}

void password_message(std::string& out, std::string_view password) {
  MessageWriter w(out, 'p');
  w.cstr(password);
  w.finish();
}

void sasl_initial_response(std::string& out, std::string_view mechanism, std::string_view data) {
  MessageWriter w(out, 'p');
  w.cstr(mechanism).i32(int32_t(data.size())).bytes(data);
  w.finish();
}

void sasl_response(std::string& out, std::string_view data) {
  MessageWriter w(out, 'p');
  w.bytes(data);
  w.finish();
}

void query(std::string& out, std::string_view sql) {
  MessageWriter w(out, 'Q');
  w.cstr(sql);
  w.finish();
}

void query_with_params(std::string& out, std::string_view sql, const std::vector<std::string>& params) {
  {
    MessageWriter w(out, 'P');
    w.cstr("").cstr(sql).i16(0);  // unnamed; parameter types inferred
    w.finish();
  }
  {
    MessageWriter w(out, 'B');
    w.cstr("").cstr("").i16(0);  // unnamed portal and statement; all text
    w.i16(int16_t(params.size()));
    for (const auto& p : params) w.i32(int32_t(p.size())).bytes(p);
    w.i16(0);  // results in text
    w.finish();
  }
  {
    MessageWriter w(out, 'E');
    w.cstr("").i32(0);
    w.finish();
  }
  sync(out);
}

void sync(std::string& out) {
  MessageWriter w(out, 'S');
  w.finish();
}

void terminate(std::string& out) {
  MessageWriter w(out, 'X');
  w.finish();
}

}  // namespace pgmux::proto
