// Shared helpers for the protocol unit tests.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "protocol/builders.hpp"
#include "protocol/codec.hpp"
#include "protocol/inspect.hpp"

namespace pgmux::proto::test {

inline ByteSpan span(const std::string& s) { return as_bytes(s); }

// Big-endian encoders written independently of MessageWriter, so that golden
// layouts in the tests do not depend on the code under test.
inline std::string be32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = char(v >> 24);
  s[1] = char((v >> 16) & 0xff);
  s[2] = char((v >> 8) & 0xff);
  s[3] = char(v & 0xff);
  return s;
}
inline std::string be16(uint16_t v) {
  std::string s(2, '\0');
  s[0] = char(v >> 8);
  s[1] = char(v & 0xff);
  return s;
}
inline std::string cs(std::string_view s) {  // C string
  std::string r(s);
  r.push_back('\0');
  return r;
}
// A typed message: type + int32 length (body + 4) + body.
inline std::string typed(char type, const std::string& body) {
  return std::string(1, type) + be32(uint32_t(body.size() + 4)) + body;
}
// An untyped startup-phase packet: int32 length (body + 4) + body.
inline std::string untyped(const std::string& body) { return be32(uint32_t(body.size() + 4)) + body; }

// Deterministic PRNG: only the engine is used (its output is specified by the
// standard), never the distributions (implementation-defined).
class Rng {
 public:
  explicit Rng(uint64_t seed) : e_(seed) {}
  uint64_t next() { return e_(); }
  size_t below(size_t n) { return n == 0 ? 0 : size_t(e_() % n); }
  bool chance(unsigned percent) { return below(100) < percent; }
  uint8_t byte() { return uint8_t(e_()); }
  std::string bytes(size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = char(byte());
    return s;
  }
  // Printable-ish string without NUL bytes.
  std::string text(size_t max_len) {
    std::string s(below(max_len + 1), '\0');
    for (auto& c : s) c = char(1 + below(255));
    return s;
  }

 private:
  std::mt19937_64 e_;
};

struct Msg {
  char type = 0;
  std::string body;
  bool operator==(const Msg& o) const { return type == o.type && body == o.body; }
};

inline std::ostream& operator<<(std::ostream& os, const Msg& m) {
  return os << "Msg{'" << m.type << "', " << m.body.size() << " bytes}";
}

// Splits a stream of typed messages with peek_frame (the reference framing).
// Stops at the first non-ok frame; `tail` receives its result.
inline std::vector<Msg> frame_all(const std::string& stream, Result* tail = nullptr,
                                  uint32_t max_len = kDefaultMaxMessage) {
  std::vector<Msg> out;
  ByteSpan b = span(stream);
  for (;;) {
    FrameResult fr = peek_frame(b, max_len);
    if (fr.result != Result::ok) {
      if (tail) *tail = b.empty() ? Result::ok : fr.result;
      return out;
    }
    out.push_back({fr.frame.type, std::string(as_chars(b.subspan(5, fr.frame.body_length())))});
    b = b.subspan(fr.frame.total());
  }
}

// Result of feeding chunks through a StreamFramer, with every documented
// invariant of the pieces checked on the way (REQUIRE fails the test).
struct FramerRun {
  std::vector<Msg> messages;
  bool invalid = false;
  size_t pieces = 0;
};

inline FramerRun run_framer(StreamFramer& f, const std::vector<ByteSpan>& chunks) {
  FramerRun run;
  bool in_msg = false;  // between a header piece and the last body piece
  Msg cur;
  uint32_t expect_len = 0;
  for (ByteSpan chunk : chunks) {
    // An empty chunk: need_more, nothing consumed, state unchanged.
    if (chunk.empty()) {
      const bool b = f.at_boundary();
      StreamFramer::Piece p = f.next(chunk);
      if (run.invalid) {
        REQUIRE(p.kind == StreamFramer::Kind::invalid);
      } else {
        REQUIRE(p.kind == StreamFramer::Kind::need_more);
        REQUIRE(f.at_boundary() == b);
      }
      REQUIRE(p.consumed == 0);
      continue;
    }
    while (!chunk.empty()) {
      StreamFramer::Piece p = f.next(chunk);
      ++run.pieces;
      REQUIRE(p.consumed <= chunk.size());
      switch (p.kind) {
        case StreamFramer::Kind::need_more:
          REQUIRE(p.consumed == chunk.size());
          REQUIRE_FALSE(in_msg);  // a partial body is always returned as a body piece
          REQUIRE_FALSE(f.at_boundary());
          break;
        case StreamFramer::Kind::invalid:
          REQUIRE(p.consumed == chunk.size());
          REQUIRE_FALSE(in_msg);
          REQUIRE(f.failed());
          REQUIRE_FALSE(f.at_boundary());
          run.invalid = true;
          break;
        case StreamFramer::Kind::header:
          REQUIRE_FALSE(run.invalid);
          REQUIRE_FALSE(in_msg);
          REQUIRE(p.consumed >= 1);
          REQUIRE(p.consumed <= 5);
          REQUIRE(p.data.empty());
          cur = Msg{p.type, {}};
          expect_len = p.body_length;
          if (p.body_length == 0) {
            REQUIRE(p.last_of_message);
            REQUIRE(f.at_boundary());
            run.messages.push_back(cur);
          } else {
            REQUIRE_FALSE(p.last_of_message);
            REQUIRE_FALSE(f.at_boundary());
            in_msg = true;
          }
          break;
        case StreamFramer::Kind::body:
          REQUIRE_FALSE(run.invalid);
          REQUIRE(in_msg);
          REQUIRE(p.consumed >= 1);
          REQUIRE(p.type == cur.type);
          REQUIRE(p.body_length == expect_len);
          // Zero copy: the data is exactly the consumed prefix of the chunk.
          REQUIRE(p.data.data() == chunk.data());
          REQUIRE(p.data.size() == p.consumed);
          cur.body.append(as_chars(p.data));
          REQUIRE(cur.body.size() <= expect_len);
          REQUIRE(p.last_of_message == (cur.body.size() == expect_len));
          REQUIRE(f.at_boundary() == p.last_of_message);
          if (p.last_of_message) {
            in_msg = false;
            run.messages.push_back(cur);
          }
          break;
      }
      chunk = chunk.subspan(p.consumed);
    }
  }
  return run;
}

// Cuts `stream` at the given sorted offsets.
inline std::vector<ByteSpan> cut(const std::string& stream, const std::vector<size_t>& at) {
  std::vector<ByteSpan> chunks;
  ByteSpan all = span(stream);
  size_t prev = 0;
  for (size_t a : at) {
    chunks.push_back(all.subspan(prev, a - prev));
    prev = a;
  }
  chunks.push_back(all.subspan(prev));
  return chunks;
}

// One message of every builder, concatenated (typed messages only).
inline std::string all_typed_messages() {
  std::string s;
  const uint8_t salt[4] = {0x01, 0x00, 0xff, 0x7f};
  auth_ok(s);
  auth_cleartext(s);
  auth_md5(s, salt);
  auth_sasl(s, {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"});
  auth_sasl_continue(s, "r=abc,s=c2FsdA==,i=4096");
  auth_sasl_final(s, "v=c2lnbmF0dXJl");
  parameter_status(s, "server_version", "16.2");
  parameter_status(s, "application_name", "");
  backend_key_data(s, 4242, 0xdeadbeef);
  ready_for_query(s, 'I');
  ready_for_query(s, 'T');
  ready_for_query(s, 'E');
  ErrorFields e;
  e.severity = "FATAL";
  e.sqlstate = "08P01";
  e.message = "invalid startup packet";
  e.detail = "the detail";
  e.hint = "the hint";
  error_response(s, e);
  ErrorFields n;
  n.severity = "NOTICE";
  n.sqlstate = "00000";
  n.message = "hello";
  notice_response(s, n);
  negotiate_protocol_version(s, 0, {"_pq_.a", "_pq_.b"});
  negotiate_protocol_version(s, 2, {});
  command_complete(s, "SELECT 1");
  empty_query_response(s);
  row_description_text(s, {"database", "user", "cl_active"});
  data_row(s, {"app", "", "7"}, {false, true, false});
  password_message(s, "secret");
  sasl_initial_response(s, "SCRAM-SHA-256", "n,,n=,r=nonce");
  sasl_response(s, "c=biws,r=nonce,p=proof");
  query(s, "SELECT 1");
  sync(s);
  terminate(s);
  // A few hand-made messages: large body, CopyData with NULs, empty bodies.
  s += typed('d', std::string(300, '\0') + "copy");
  s += typed('1', "");
  s += typed('2', "");
  s += typed('3', "");
  s += typed('H', "");
  return s;
}

// Every inspector, as "accepts this body?". prefix_free: when a body is
// accepted, no strict prefix of it and no extension of it is accepted (true of
// every self-delimiting layout; false for payloads that run to the end).
struct Inspector {
  const char* name;
  bool (*accepts)(ByteSpan);
  bool prefix_free;
};

inline const std::vector<Inspector>& inspectors() {
  static const std::vector<Inspector> all = {
      {"parse_parameter_status", [](ByteSpan b) { return parse_parameter_status(b).has_value(); }, true},
      {"parse_backend_key_data", [](ByteSpan b) { return parse_backend_key_data(b).has_value(); }, true},
      {"parse_ready_for_query", [](ByteSpan b) { return parse_ready_for_query(b).has_value(); }, true},
      {"parse_error_fields", [](ByteSpan b) { return parse_error_fields(b).has_value(); }, true},
      {"parse_command_complete", [](ByteSpan b) { return parse_command_complete(b).has_value(); }, true},
      {"parse_sasl_initial_response",
       [](ByteSpan b) { return parse_sasl_initial_response(b).has_value(); }, true},
      {"parse_password_message", [](ByteSpan b) { return parse_password_message(b).has_value(); }, true},
      {"parse_query", [](ByteSpan b) { return parse_query(b).has_value(); }, true},
      {"parse_parse", [](ByteSpan b) { return parse_parse(b).has_value(); }, true},
      {"parse_bind", [](ByteSpan b) { return parse_bind(b).has_value(); }, true},
      {"parse_describe", [](ByteSpan b) { return parse_describe(b).has_value(); }, true},
      {"parse_close", [](ByteSpan b) { return parse_close(b).has_value(); }, true},
      {"parse_sasl_mechanisms",
       [](ByteSpan b) { return parse_sasl_mechanisms(as_chars(b)).has_value(); }, true},
      {"parse_negotiate_protocol_version",
       [](ByteSpan b) { return parse_negotiate_protocol_version(b).has_value(); }, true},
      {"parse_row_description", [](ByteSpan b) { return parse_row_description(b).has_value(); }, true},
      {"parse_data_row", [](ByteSpan b) { return parse_data_row(b).has_value(); }, true},
      // Codes 8/11/12 carry a payload that runs to the end of the body.
      {"parse_auth_request", [](ByteSpan b) { return parse_auth_request(b).has_value(); }, false},
  };
  return all;
}

// Checks the prefix-free property of an accepted body.
inline void require_prefix_free(const Inspector& in, const std::string& body) {
  INFO(in.name << " body of " << body.size() << " bytes");
  REQUIRE(in.accepts(span(body)));
  for (size_t n = 0; n < body.size(); ++n) {
    INFO("truncated to " << n);
    REQUIRE_FALSE(in.accepts(span(body).first(n)));
  }
  for (char extra : {'\0', 'x', '\xff', 'S'}) {
    INFO("trailing byte " << int(uint8_t(extra)));
    REQUIRE_FALSE(in.accepts(span(body + extra)));
  }
}

}  // namespace pgmux::proto::test
