// parse_startup: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest.
#include "support.hpp"

using namespace pgmux::proto;
using namespace pgmux::proto::test;

namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

const std::string NUL(1, '\0');

// Hand-made StartupMessage, independent of the builder.
std::string raw_startup(const Params& params, uint32_t protocol = kProtocolV3) {
  std::string body = be32(protocol);
  for (const auto& [k, v] : params) body += cs(k) + cs(v);
  body.push_back('\0');
  return untyped(body);
}

Result parse(const std::string& b, StartupPacket& out, size_t max_len = kMaxStartupPacket,
             size_t max_params = kMaxStartupParams) {
  return parse_startup(span(b), out, max_len, max_params);
}

// Every strict prefix of `packet` is need_more with a reset output.
void require_prefixes_need_more(const std::string& packet) {
  for (size_t n = 0; n < packet.size(); ++n) {
    StartupPacket out;
    out.error = "stale";
    out.params.push_back({"stale", "x"});
    INFO("prefix length " << n);
    REQUIRE(parse_startup(span(packet).first(n), out) == Result::need_more);
    REQUIRE(out.params.empty());
    REQUIRE(out.error.empty());
    REQUIRE(out.consumed == 0);
  }
}

}  // namespace

TEST_CASE("parse_startup: StartupMessage", "[startup]") {
  const Params params = {{"user", "alice"},
                         {"database", "app"},
                         {"application_name", "psql"},
                         {"options", "-c search_path=x"},
                         {"replication", "database"},
                         {"_pq_.some_option", "on"},
                         {"client_encoding", ""}};
  const std::string pkt = raw_startup(params);
  StartupPacket out;
  REQUIRE(parse(pkt, out) == Result::ok);
  CHECK(out.kind == StartupKind::startup);
  CHECK(out.protocol == kProtocolV3);
  CHECK(out.params == params);
  CHECK(out.consumed == pkt.size());
  CHECK(out.error.empty());
  REQUIRE(out.param("user") != nullptr);
  CHECK(*out.param("user") == "alice");
  CHECK(*out.param("database") == "app");
  CHECK(*out.param("client_encoding") == "");
  CHECK(out.param("nope") == nullptr);
  CHECK(out.param("") == nullptr);
  CHECK(out.param("USER") == nullptr);  // names are case-sensitive

  require_prefixes_need_more(pkt);

  SECTION("followed by more bytes: consumed is the packet only") {
    std::string two = pkt + typed('Q', cs("SELECT 1"));
    StartupPacket o2;
    REQUIRE(parse(two, o2) == Result::ok);
    CHECK(o2.consumed == pkt.size());
    CHECK(o2.params == params);
  }
  SECTION("the builder's output is byte-identical to the hand-made packet") {
    std::string built;
    startup_message(built, params);
    CHECK(built == pkt);
  }
  SECTION("user only, minimal packet") {
    const std::string p = raw_startup({{"user", "u"}});
    CHECK(p.size() == 4 + 4 + 5 + 2 + 1);
    StartupPacket o;
    REQUIRE(parse(p, o) == Result::ok);
    CHECK(o.params.size() == 1);
  }
  SECTION("parameters in any order, user last") {
    StartupPacket o;
    REQUIRE(parse(raw_startup({{"database", "d"}, {"user", "u"}}), o) == Result::ok);
    CHECK(*o.param("user") == "u");
  }
  SECTION("names and values with arbitrary non-NUL bytes") {
    std::string odd = "\x01\xff\x7f name";
    StartupPacket o;
    REQUIRE(parse(raw_startup({{"user", "\xc3\xa9l\xc3\xa8ve"}, {odd, "\xff"}}), o) == Result::ok);
    CHECK(*o.param(odd) == "\xff");
  }
}

TEST_CASE("parse_startup: protocol versions", "[startup]") {
  SECTION("3.1 and 3.2 are accepted and recorded (the caller negotiates)") {
    for (uint32_t minor : {1u, 2u, 0xffffu}) {
      StartupPacket out;
      REQUIRE(parse(raw_startup({{"user", "u"}}, (3u << 16) | minor), out) == Result::ok);
      CHECK(out.protocol == ((3u << 16) | minor));
    }
  }
  SECTION("2.0 is rejected with a clear reason") {
    StartupPacket out;
    REQUIRE(parse(raw_startup({{"user", "u"}}, 2u << 16), out) == Result::invalid);
    CHECK(out.error.find("unsupported frontend protocol 2.0") != std::string::npos);
    CHECK(out.params.empty());
  }
  SECTION("other majors are rejected, already with 8 bytes") {
    for (uint32_t v : {0u, 1u << 16, (4u << 16), (2u << 16) | 5u, 0xffffffffu, 0x00030000u >> 1}) {
      const std::string p = raw_startup({{"user", "u"}}, v);
      StartupPacket out;
      INFO("version " << v);
      CHECK(parse(p, out) == Result::invalid);
      CHECK(out.error.find("unsupported frontend protocol") != std::string::npos);
      CHECK(parse(p.substr(0, 8), out) == Result::invalid);
      CHECK(parse(p.substr(0, 7), out) == Result::need_more);
    }
    StartupPacket out;
    CHECK(parse(raw_startup({{"user", "u"}}, (4u << 16)), out) == Result::invalid);
    CHECK(out.error.find("4.0") != std::string::npos);
  }
  SECTION("unknown 1234.x request codes are rejected") {
    for (uint32_t minor : {0u, 5678u, 5681u, 0xffffu}) {
      std::string p = untyped(be32((1234u << 16) | minor));
      StartupPacket out;
      INFO("minor " << minor);
      CHECK(parse(p, out) == Result::invalid);
      CHECK_FALSE(out.error.empty());
    }
  }
}

TEST_CASE("parse_startup: SSLRequest, GSSENCRequest, CancelRequest", "[startup]") {
  SECTION("SSLRequest") {
    const std::string p = untyped(be32(80877103));
    REQUIRE(p.size() == 8);
    StartupPacket out;
    REQUIRE(parse(p, out) == Result::ok);
    CHECK(out.kind == StartupKind::ssl_request);
    CHECK(out.consumed == 8);
    CHECK(out.params.empty());
    require_prefixes_need_more(p);
    std::string built;
    ssl_request(built);
    CHECK(built == p);
    // Followed by the TLS ClientHello or anything else: only 8 bytes consumed.
    StartupPacket o2;
    REQUIRE(parse(p + "\x16\x03\x01", o2) == Result::ok);
    CHECK(o2.consumed == 8);
  }
  SECTION("GSSENCRequest") {
    const std::string p = untyped(be32(80877104));
    StartupPacket out;
    REQUIRE(parse(p, out) == Result::ok);
    CHECK(out.kind == StartupKind::gssenc_request);
    CHECK(out.consumed == 8);
    require_prefixes_need_more(p);
  }
  SECTION("CancelRequest") {
    const std::string p = untyped(be32(80877102) + be32(0x01020304) + be32(0xfffffffe));
    REQUIRE(p.size() == 16);
    StartupPacket out;
    REQUIRE(parse(p, out) == Result::ok);
    CHECK(out.kind == StartupKind::cancel);
    CHECK(out.cancel_pid == 0x01020304u);
    CHECK(out.cancel_key == 0xfffffffeu);
    CHECK(out.consumed == 16);
    require_prefixes_need_more(p);
    std::string built;
    cancel_request(built, 0x01020304, 0xfffffffe);
    CHECK(built == p);
  }
  SECTION("wrong fixed sizes are invalid, decided once the code is visible") {
    struct Case {
      uint32_t code;
      size_t good;
    };
    for (Case c : {Case{80877103, 8}, Case{80877104, 8}, Case{80877102, 16}}) {
      for (size_t len = 8; len <= 24; ++len) {
        if (len == c.good) continue;
        std::string p = be32(uint32_t(len)) + be32(c.code) + std::string(len - 8, '\0');
        StartupPacket out;
        INFO("code " << c.code << " length " << len);
        CHECK(parse(p, out) == Result::invalid);
        CHECK_FALSE(out.error.empty());
        CHECK(parse(p.substr(0, 8), out) == Result::invalid);
      }
    }
  }
}

TEST_CASE("parse_startup: declared length", "[startup]") {
  SECTION("length < 8 is invalid with only the length present") {
    for (uint32_t len = 0; len < 8; ++len) {
      std::string p = be32(len) + std::string(8, '\0');
      StartupPacket out;
      INFO("length " << len);
      CHECK(parse(p, out) == Result::invalid);
      CHECK(parse(p.substr(0, 4), out) == Result::invalid);
      CHECK_FALSE(out.error.empty());
    }
  }
  SECTION("length > max_len is invalid with only the length present") {
    std::string p = be32(uint32_t(kMaxStartupPacket + 1));
    StartupPacket out;
    CHECK(parse(p, out) == Result::invalid);
    CHECK_FALSE(out.error.empty());
    CHECK(parse(be32(0xffffffffu), out) == Result::invalid);
    CHECK(parse(be32(0x80000000u), out) == Result::invalid);
    CHECK(parse(be32(100), out, 99) == Result::invalid);
    CHECK(parse(be32(100), out, 100) == Result::need_more);
  }
  SECTION("a packet of exactly max_len is accepted") {
    Params params = {{"user", "u"}};
    std::string filler_name = "application_name";
    // 4 len + 4 version + "user\0u\0" + name\0 + value\0 + final 0
    const size_t fixed = 4 + 4 + 7 + filler_name.size() + 1 + 1 + 1;
    params.push_back({filler_name, std::string(kMaxStartupPacket - fixed, 'v')});
    const std::string p = raw_startup(params);
    REQUIRE(p.size() == kMaxStartupPacket);
    StartupPacket out;
    REQUIRE(parse(p, out) == Result::ok);
    CHECK(out.consumed == kMaxStartupPacket);
    params[1].second.push_back('v');
    CHECK(parse(raw_startup(params), out) == Result::invalid);
  }
}

TEST_CASE("parse_startup: malformed StartupMessage layouts", "[startup]") {
  auto invalid = [](const std::string& body, const char* what) {
    std::string p = untyped(be32(kProtocolV3) + body);
    StartupPacket out;
    INFO(what);
    CHECK(parse(p, out) == Result::invalid);
    CHECK_FALSE(out.error.empty());
    CHECK(out.params.empty());
    CHECK(out.consumed == 0);
  };
  invalid("", "no terminator at all (length 8)");
  invalid(cs("user") + cs("u"), "missing final terminator");
  invalid(cs("user") + "u", "unterminated value");
  invalid("user", "unterminated name");
  invalid(cs("user"), "name without value");
  invalid(cs("user") + cs("u") + std::string(1, '\0') + "x", "trailing byte after terminator");
  invalid(cs("user") + cs("u") + std::string(2, '\0'), "two terminators");
  invalid(cs("user") + cs("u") + cs("database") + std::string(1, '\0'), "value is the terminator");
  invalid(std::string(1, '\0'), "no parameters: no user");
  invalid(cs("database") + cs("app") + std::string(1, '\0'), "missing user");
  invalid(cs("user") + cs("") + std::string(1, '\0'), "empty user");
  invalid(cs("user") + cs("a") + cs("user") + cs("b") + std::string(1, '\0'), "duplicate user");
  invalid(cs("user") + cs("a") + cs("x") + cs("1") + cs("x") + cs("1") + std::string(1, '\0'),
          "duplicate other parameter");

  SECTION("error texts") {
    StartupPacket out;
    REQUIRE(parse(raw_startup({{"database", "d"}}), out) == Result::invalid);
    CHECK(out.error == "no user name specified");
    REQUIRE(parse(raw_startup({{"user", "a"}, {"user", "b"}}), out) == Result::invalid);
    CHECK(out.error == "duplicate parameter \"user\"");
    REQUIRE(parse(untyped(be32(kProtocolV3) + cs("user") + "x"), out) == Result::invalid);
    CHECK(out.error == "missing value for parameter \"user\"");
    REQUIRE(parse(untyped(be32(kProtocolV3) + cs("user") + cs("x")), out) == Result::invalid);
    CHECK(out.error == "missing terminator after the last parameter");
    REQUIRE(parse(untyped(be32(kProtocolV3) + cs("user") + cs("x") + NUL + "!"), out) == Result::invalid);
    CHECK(out.error == "trailing bytes after the terminator");
    REQUIRE(parse(be32(3), out) == Result::invalid);
    CHECK(out.error == "length 3 is too short");
    REQUIRE(parse(be32(10001), out) == Result::invalid);
    CHECK(out.error == "length 10001 exceeds the limit of 10000 bytes");
    REQUIRE(parse(untyped(be32(80877103) + "xxxx"), out) == Result::invalid);
    CHECK(out.error == "invalid length 12 of SSL request");
    REQUIRE(parse(untyped(be32((1234u << 16) | 5681u)), out) == Result::invalid);
    CHECK(out.error == "unsupported request code 1234.5681");
  }
  SECTION("client-supplied names are escaped and cut in error texts") {
    StartupPacket out;
    const std::string evil = "a\nb\"\\\x1b\xff";
    REQUIRE(parse(raw_startup({{"user", "u"}, {evil, "1"}, {evil, "2"}}), out) == Result::invalid);
    CHECK(out.error == "duplicate parameter \"a\\x0ab\\x22\\x5c\\x1b\\xff\"");
    const std::string longname(100, 'n');
    REQUIRE(parse(raw_startup({{"user", "u"}, {longname, "1"}, {longname, "2"}}), out) == Result::invalid);
    CHECK(out.error == "duplicate parameter \"" + std::string(64, 'n') + "...\"");
  }
}

TEST_CASE("parse_startup: parameter count limit", "[startup]") {
  auto make = [](size_t n) {
    Params p = {{"user", "u"}};
    for (size_t i = 1; i < n; ++i) p.push_back({"p" + std::to_string(i), "v"});
    return raw_startup(p);
  };
  StartupPacket out;
  CHECK(parse(make(kMaxStartupParams), out) == Result::ok);
  CHECK(out.params.size() == kMaxStartupParams);
  CHECK(parse(make(kMaxStartupParams + 1), out) == Result::invalid);
  CHECK(out.error.find("too many") != std::string::npos);
  CHECK(parse(make(3), out, kMaxStartupPacket, 3) == Result::ok);
  CHECK(parse(make(4), out, kMaxStartupPacket, 3) == Result::invalid);
  CHECK(parse(make(1), out, kMaxStartupPacket, 0) == Result::invalid);
}

TEST_CASE("parse_startup: output is reset on every call", "[startup]") {
  StartupPacket out;
  REQUIRE(parse(raw_startup({{"user", "a"}, {"database", "b"}}), out) == Result::ok);
  REQUIRE(parse(untyped(be32(80877102) + be32(1) + be32(2)), out) == Result::ok);
  CHECK(out.params.empty());
  CHECK(out.protocol == 0);
  CHECK(out.kind == StartupKind::cancel);
  REQUIRE(parse(raw_startup({{"user", "a"}}), out) == Result::ok);
  CHECK(out.cancel_pid == 0);
  CHECK(out.cancel_key == 0);
  REQUIRE(parse(raw_startup({{"database", "b"}}), out) == Result::invalid);
  CHECK(out.params.empty());
  REQUIRE(parse(raw_startup({{"user", "a"}}).substr(0, 10), out) == Result::need_more);
  CHECK(out.error.empty());
}

namespace {

// Startup-ish random packets: correct length prefix, a likely code, random
// parameter soup with occasional corruption.
std::string random_startup(Rng& rng) {
  std::string body;
  switch (rng.below(6)) {
    case 0: body = be32(uint32_t(rng.next())); break;
    case 1: body = be32(80877102 + uint32_t(rng.below(3))); break;
    default: body = be32(kProtocolV3 + uint32_t(rng.below(3))); break;
  }
  if (rng.chance(60)) body += cs("user") + cs("u" + rng.text(4));
  const size_t n = rng.below(6);
  const char* names[] = {"user", "database", "options", "x", ""};
  for (size_t i = 0; i < n; ++i) {
    body += cs(rng.chance(70) ? names[rng.below(5)] : rng.text(6));
    body += cs(rng.chance(80) ? rng.text(6) : "");
  }
  if (rng.chance(80)) body.push_back('\0');
  if (rng.chance(20)) body += rng.bytes(rng.below(12));  // cancel payload or garbage
  std::string p = untyped(body);
  if (rng.chance(10) && !p.empty()) p[rng.below(p.size())] = char(rng.byte());
  if (rng.chance(10)) p = p.substr(0, rng.below(p.size() + 1));
  return p;
}

}  // namespace

TEST_CASE("parse_startup on random input is consistent", "[startup][random]") {
  Rng rng(0x57a27);
  size_t ok = 0, invalid = 0, need_more = 0, startups = 0;
  for (int iter = 0; iter < 30000; ++iter) {
    std::string p = iter % 4 == 0 ? rng.bytes(rng.below(40)) : random_startup(rng);
    const size_t max_params = iter % 7 == 0 ? rng.below(4) : kMaxStartupParams;
    StartupPacket out;
    const Result r = parse_startup(span(p), out, kMaxStartupPacket, max_params);
    INFO("iteration " << iter);
    switch (r) {
      case Result::ok: {
        ++ok;
        REQUIRE(out.error.empty());
        REQUIRE(out.consumed >= 8);
        REQUIRE(out.consumed <= p.size());
        REQUIRE(out.consumed == read_u32(span(p).data()));
        // The packet alone parses identically.
        StartupPacket again;
        REQUIRE(parse_startup(span(p).first(out.consumed), again, kMaxStartupPacket, max_params) ==
                Result::ok);
        REQUIRE(again.params == out.params);
        REQUIRE(again.kind == out.kind);
        // Every strict prefix is need_more (no early decision contradicts ok).
        for (size_t n = 0; n < out.consumed; ++n) {
          StartupPacket o;
          REQUIRE(parse_startup(span(p).first(n), o, kMaxStartupPacket, max_params) ==
                  Result::need_more);
        }
        // Re-encoding reproduces the exact bytes.
        std::string re;
        if (out.kind == StartupKind::startup) {
          ++startups;
          REQUIRE(out.params.size() <= max_params);
          REQUIRE(out.param("user") != nullptr);
          REQUIRE_FALSE(out.param("user")->empty());
          startup_message(re, out.params, out.protocol);
          REQUIRE(out.protocol >> 16 == 3);
        } else if (out.kind == StartupKind::cancel) {
          cancel_request(re, out.cancel_pid, out.cancel_key);
        } else if (out.kind == StartupKind::ssl_request) {
          ssl_request(re);
        } else {
          re = untyped(be32(kGssEncRequestCode));
        }
        REQUIRE(re == p.substr(0, out.consumed));
        break;
      }
      case Result::invalid: {
        ++invalid;
        REQUIRE_FALSE(out.error.empty());
        REQUIRE(out.params.empty());
        REQUIRE(p.size() >= 4);
        // Appending bytes never turns an invalid packet valid.
        std::string longer = p + rng.bytes(1 + rng.below(16));
        StartupPacket o;
        REQUIRE(parse_startup(span(longer), o, kMaxStartupPacket, max_params) == Result::invalid);
        break;
      }
      case Result::need_more: {
        ++need_more;
        REQUIRE(out.error.empty());
        REQUIRE(out.params.empty());
        if (p.size() >= 4) REQUIRE(p.size() < read_u32(span(p).data()));
        break;
      }
    }
  }
  // The generator must actually exercise every outcome.
  CHECK(ok > 1500);
  CHECK(startups > 1500);
  CHECK(invalid > 5000);
  CHECK(need_more > 1000);
}
