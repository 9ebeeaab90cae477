// Builders: exact wire layouts (golden bytes written from the PostgreSQL
// protocol documentation, independently of MessageWriter) and round trips
// through peek_frame + the matching inspector.
#include "support.hpp"

using namespace pgmux::proto;
using namespace pgmux::proto::test;

namespace {

// Frames exactly one message out of `s`, which must contain nothing else.
Msg one(const std::string& s) {
  FrameResult fr = peek_frame(span(s));
  REQUIRE(fr.result == Result::ok);
  REQUIRE(fr.frame.total() == s.size());
  return {fr.frame.type, s.substr(5)};
}

// The body of the single message in `s`, as a span into `s` (so views
// returned by inspectors stay valid as long as `s`).
ByteSpan body_in(const std::string& s) {
  FrameResult fr = peek_frame(span(s));
  REQUIRE(fr.result == Result::ok);
  REQUIRE(fr.frame.total() == s.size());
  return span(s).subspan(5, fr.frame.body_length());
}

}  // namespace

TEST_CASE("MessageWriter encodes big-endian and patches the length", "[builders]") {
  std::string out = "prefix";
  MessageWriter w(out, 'x');
  w.u8(0xab).i16(-2).i16(0x1234).i32(-1).i32(0x01020304).u32(0xfffffffe).cstr("ab").bytes(std::string("\0c", 2));
  w.finish();
  const std::string expect = std::string("prefix") + "x" + be32(4 + 1 + 2 + 2 + 4 + 4 + 4 + 3 + 2) + "\xab" +
                             "\xff\xfe" + "\x12\x34" + "\xff\xff\xff\xff" + "\x01\x02\x03\x04" +
                             "\xff\xff\xff\xfe" + std::string("ab\0\0c", 5);
  CHECK(out == expect);

  SECTION("untyped packet") {
    std::string u;
    MessageWriter uw(u, 0);
    uw.u32(7);
    uw.finish();
    CHECK(u == be32(8) + be32(7));
  }
  SECTION("cstr cuts at an embedded NUL so the layout stays valid") {
    std::string s;
    MessageWriter cw(s, 'Q');
    cw.cstr(std::string_view("SEL\0ECT", 7));
    cw.finish();
    CHECK(s == typed('Q', cs("SEL")));
  }
  SECTION("empty message") {
    std::string s;
    MessageWriter ew(s, 'S');
    ew.finish();
    CHECK(s == std::string("S\0\0\0\4", 5));
  }
}

TEST_CASE("Authentication builders", "[builders]") {
  std::string s;
  SECTION("AuthenticationOk") {
    auth_ok(s);
    CHECK(s == typed('R', be32(0)));
    auto a = parse_auth_request(body_in(s));
    REQUIRE(a);
    CHECK(a->code == 0);
    CHECK(a->data.empty());
  }
  SECTION("AuthenticationCleartextPassword") {
    auth_cleartext(s);
    CHECK(s == typed('R', be32(3)));
    auto a = parse_auth_request(body_in(s));
    REQUIRE(a);
    CHECK(a->code == 3);
  }
  SECTION("AuthenticationMD5Password") {
    const uint8_t salt[4] = {0x00, 0xff, 0x10, 0x80};
    auth_md5(s, salt);
    CHECK(s == typed('R', be32(5) + std::string("\x00\xff\x10\x80", 4)));
    CHECK(s.size() == 13);  // Int32(12) + type
    auto a = parse_auth_request(body_in(s));
    REQUIRE(a);
    CHECK(a->code == 5);
    CHECK(a->data == std::string_view("\x00\xff\x10\x80", 4));
  }
  SECTION("AuthenticationSASL: mechanisms then a terminating 0") {
    auth_sasl(s, {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
    CHECK(s == typed('R', be32(10) + cs("SCRAM-SHA-256-PLUS") + cs("SCRAM-SHA-256") + std::string(1, '\0')));
    auto a = parse_auth_request(body_in(s));
    REQUIRE(a);
    CHECK(a->code == 10);
    auto m = parse_sasl_mechanisms(a->data);
    REQUIRE(m);
    CHECK(*m == std::vector<std::string>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
  }
  SECTION("AuthenticationSASL skips empty mechanism names") {
    auth_sasl(s, {"", "SCRAM-SHA-256", ""});
    CHECK(s == typed('R', be32(10) + cs("SCRAM-SHA-256") + std::string(1, '\0')));
  }
  SECTION("AuthenticationSASLContinue / Final carry raw data") {
    const std::string data("r=x,s=\0y,i=1", 12);
    auth_sasl_continue(s, data);
    CHECK(s == typed('R', be32(11) + data));
    auto a = parse_auth_request(body_in(s));
    REQUIRE(a);
    CHECK(a->code == 11);
    CHECK(a->data == data);
    std::string f;
    auth_sasl_final(f, "v=abc");
    CHECK(f == typed('R', be32(12) + "v=abc"));
    a = parse_auth_request(body_in(f));
    REQUIRE(a);
    CHECK(a->code == 12);
    CHECK(a->data == "v=abc");
    std::string e;
    auth_sasl_final(e, "");
    a = parse_auth_request(body_in(e));
    REQUIRE(a);
    CHECK(a->data.empty());
  }
}

TEST_CASE("Session builders", "[builders]") {
  std::string s;
  SECTION("ParameterStatus") {
    parameter_status(s, "TimeZone", "UTC");
    CHECK(s == typed('S', cs("TimeZone") + cs("UTC")));
    auto p = parse_parameter_status(body_in(s));
    REQUIRE(p);
    CHECK(p->name == "TimeZone");
    CHECK(p->value == "UTC");
    std::string e;
    parameter_status(e, "x", "");
    p = parse_parameter_status(body_in(e));
    REQUIRE(p);
    CHECK(p->value.empty());
  }
  SECTION("BackendKeyData") {
    backend_key_data(s, 0x80000001u, 0x7fffffffu);
    CHECK(s == typed('K', be32(0x80000001u) + be32(0x7fffffffu)));
    auto k = parse_backend_key_data(body_in(s));
    REQUIRE(k);
    CHECK(k->pid == 0x80000001u);
    CHECK(k->key == 0x7fffffffu);
  }
  SECTION("ReadyForQuery") {
    for (char st : {'I', 'T', 'E'}) {
      std::string z;
      ready_for_query(z, st);
      CHECK(z == typed('Z', std::string(1, st)));
      auto r = parse_ready_for_query(body_in(z));
      REQUIRE(r);
      CHECK(*r == st);
    }
  }
  SECTION("CommandComplete") {
    command_complete(s, "INSERT 0 1");
    CHECK(s == typed('C', cs("INSERT 0 1")));
    auto t = parse_command_complete(body_in(s));
    REQUIRE(t);
    CHECK(*t == "INSERT 0 1");
  }
  SECTION("EmptyQueryResponse, Sync, Terminate") {
    empty_query_response(s);
    sync(s);
    terminate(s);
    CHECK(s == typed('I', "") + typed('S', "") + typed('X', ""));
  }
  SECTION("NegotiateProtocolVersion") {
    negotiate_protocol_version(s, 0, {"_pq_.foo", "_pq_.bar"});
    CHECK(s == typed('v', be32(0) + be32(2) + cs("_pq_.foo") + cs("_pq_.bar")));
    auto n = parse_negotiate_protocol_version(body_in(s));
    REQUIRE(n);
    CHECK(n->newest_minor == 0);
    CHECK(n->unrecognized == std::vector<std::string_view>{"_pq_.foo", "_pq_.bar"});
    std::string e;
    negotiate_protocol_version(e, 2, {});
    CHECK(e == typed('v', be32(2) + be32(0)));
    n = parse_negotiate_protocol_version(body_in(e));
    REQUIRE(n);
    CHECK(n->newest_minor == 2);
    CHECK(n->unrecognized.empty());
  }
}

TEST_CASE("Error and notice builders", "[builders]") {
  SECTION("all fields, S and V, terminating 0") {
    ErrorFields f;
    f.severity = "FATAL";
    f.sqlstate = sqlstate::kProtocolViolation;
    f.message = "bad packet";
    f.detail = "d";
    f.hint = "h";
    std::string s;
    error_response(s, f);
    CHECK(s == typed('E', "SFATAL" + std::string(1, '\0') + "VFATAL" + std::string(1, '\0') + "C08P01" +
                              std::string(1, '\0') + "Mbad packet" + std::string(1, '\0') + "Dd" +
                              std::string(1, '\0') + "Hh" + std::string(1, '\0') + std::string(1, '\0')));
    auto p = parse_error_fields(body_in(s));
    REQUIRE(p);
    CHECK(p->severity == "FATAL");
    CHECK(p->sqlstate == "08P01");
    CHECK(p->message == "bad packet");
    CHECK(p->detail == "d");
    CHECK(p->hint == "h");
  }
  SECTION("the routine, as PostgreSQL's own errors carry it") {
    ErrorFields f;
    f.sqlstate = "0A000";
    f.message = "cached plan must not change result type";
    f.routine = "RevalidateCachedQuery";
    std::string s;
    error_response(s, f);
    CHECK(s == typed('E', cs("SERROR") + cs("VERROR") + cs("C0A000") + cs("Mcached plan must not change result type") +
                              cs("RRevalidateCachedQuery") + std::string(1, '\0')));
    CHECK(is_stale_plan_error(body_in(s)));  // what pgmux itself looks for in a server's
  }
  SECTION("defaults and omitted empty fields") {
    ErrorFields f;
    f.message = "boom";
    std::string s;
    error_response(s, f);
    CHECK(s == typed('E', cs("SERROR") + cs("VERROR") + cs("CXX000") + cs("Mboom") + std::string(1, '\0')));
    auto p = parse_error_fields(body_in(s));
    REQUIRE(p);
    CHECK(p->severity == "ERROR");
    CHECK(p->sqlstate == "XX000");
    CHECK(p->detail.empty());
    CHECK(p->hint.empty());
  }
  SECTION("everything empty: just the terminator") {
    ErrorFields f;
    f.severity.clear();
    f.sqlstate.clear();
    std::string s;
    notice_response(s, f);
    CHECK(s == typed('N', std::string(1, '\0')));
    auto p = parse_error_fields(body_in(s));
    REQUIRE(p);
    CHECK(p->severity.empty());
    CHECK(p->sqlstate.empty());
    CHECK(p->message.empty());
  }
  SECTION("notice has type N and the same layout") {
    ErrorFields f;
    f.severity = "WARNING";
    f.sqlstate = "01000";
    f.message = "careful";
    std::string e, n;
    error_response(e, f);
    notice_response(n, f);
    CHECK(n[0] == 'N');
    CHECK(e[0] == 'E');
    CHECK(n.substr(1) == e.substr(1));
  }
}

TEST_CASE("Admin result set builders", "[builders]") {
  SECTION("RowDescription with text columns") {
    std::string s;
    row_description_text(s, {"a", "bc"});
    auto field = [](const std::string& name) {
      return cs(name) + be32(0) + be16(0) + be32(25) + be16(0xffff) + be32(0xffffffff) + be16(0);
    };
    CHECK(s == typed('T', be16(2) + field("a") + field("bc")));
    auto cols = parse_row_description(body_in(s));
    REQUIRE(cols);
    REQUIRE(cols->size() == 2);
    CHECK((*cols)[1].name == "bc");
    CHECK((*cols)[1].type_oid == 25);
    CHECK((*cols)[1].typlen == -1);
    CHECK((*cols)[1].typmod == -1);
    CHECK((*cols)[1].format == 0);
    CHECK((*cols)[1].table_oid == 0);
    CHECK((*cols)[1].attnum == 0);
    std::string e;
    row_description_text(e, {});
    CHECK(e == typed('T', be16(0)));
  }
  SECTION("DataRow with NULLs and empty strings") {
    std::string s;
    data_row(s, {"x", "", "ignored", "yz"}, {false, false, true});
    CHECK(s == typed('D', be16(4) + be32(1) + "x" + be32(0) + be32(0xffffffff) + be32(2) + "yz"));
    auto row = parse_data_row(body_in(s));
    REQUIRE(row);
    REQUIRE(row->size() == 4);
    CHECK((*row)[0] == std::optional<std::string_view>("x"));
    CHECK((*row)[1] == std::optional<std::string_view>(""));
    CHECK_FALSE((*row)[2].has_value());
    CHECK((*row)[3] == std::optional<std::string_view>("yz"));
    std::string d;
    data_row(d, {"a", std::string("b\0c", 3)});
    row = parse_data_row(body_in(d));
    REQUIRE(row);
    CHECK((*row)[1] == std::optional<std::string_view>(std::string_view("b\0c", 3)));
  }
  SECTION("a 200-column result set") {
    std::vector<std::string> names, values;
    for (int i = 0; i < 200; ++i) {
      names.push_back("c" + std::to_string(i));
      values.push_back(std::string(size_t(i), 'v'));
    }
    std::string s;
    row_description_text(s, names);
    data_row(s, values);
    FrameResult fr = peek_frame(span(s));
    REQUIRE(fr.result == Result::ok);
    auto cols = parse_row_description(span(s).subspan(5, fr.frame.body_length()));
    REQUIRE(cols);
    CHECK(cols->size() == 200);
    CHECK(cols->back().name == "c199");
    ByteSpan rest = span(s).subspan(fr.frame.total());
    fr = peek_frame(rest);
    REQUIRE(fr.result == Result::ok);
    CHECK(fr.frame.total() == rest.size());
    auto row = parse_data_row(rest.subspan(5));
    REQUIRE(row);
    CHECK(row->size() == 200);
    CHECK((*row)[199]->size() == 199);
  }
}

TEST_CASE("Frontend builders", "[builders]") {
  SECTION("StartupMessage") {
    std::string s;
    startup_message(s, {{"user", "bob"}, {"database", "db"}});
    CHECK(s == untyped(be32(196608) + cs("user") + cs("bob") + cs("database") + cs("db") + std::string(1, '\0')));
    StartupPacket p;
    REQUIRE(parse_startup(span(s), p) == Result::ok);
    CHECK(p.consumed == s.size());
    CHECK(*p.param("user") == "bob");
    CHECK(*p.param("database") == "db");
    std::string v31;
    startup_message(v31, {{"user", "bob"}}, (3u << 16) | 1u);
    REQUIRE(parse_startup(span(v31), p) == Result::ok);
    CHECK(p.protocol == 196609u);
    std::string skip;
    startup_message(skip, {{"user", "bob"}, {"", "x"}});
    CHECK(skip == untyped(be32(196608) + cs("user") + cs("bob") + std::string(1, '\0')));
  }
  SECTION("SSLRequest and CancelRequest") {
    std::string s;
    ssl_request(s);
    CHECK(s == be32(8) + be32(80877103));
    std::string c;
    cancel_request(c, 77, 0xcafebabe);
    CHECK(c == be32(16) + be32(80877102) + be32(77) + be32(0xcafebabe));
    StartupPacket p;
    REQUIRE(parse_startup(span(c), p) == Result::ok);
    CHECK(p.kind == StartupKind::cancel);
    CHECK(p.cancel_pid == 77);
    CHECK(p.cancel_key == 0xcafebabe);
  }
  SECTION("PasswordMessage") {
    std::string s;
    password_message(s, "md5abcdef");
    CHECK(s == typed('p', cs("md5abcdef")));
    auto pw = parse_password_message(body_in(s));
    REQUIRE(pw);
    CHECK(*pw == "md5abcdef");
  }
  SECTION("SASLInitialResponse") {
    std::string s;
    sasl_initial_response(s, "SCRAM-SHA-256", "n,,n=,r=abc");
    CHECK(s == typed('p', cs("SCRAM-SHA-256") + be32(11) + "n,,n=,r=abc"));
    auto r = parse_sasl_initial_response(body_in(s));
    REQUIRE(r);
    CHECK(r->mechanism == "SCRAM-SHA-256");
    CHECK(r->has_data);
    CHECK(r->data == "n,,n=,r=abc");
    std::string e;
    sasl_initial_response(e, "M", "");
    CHECK(e == typed('p', cs("M") + be32(0)));
    r = parse_sasl_initial_response(body_in(e));
    REQUIRE(r);
    CHECK(r->has_data);
    CHECK(r->data.empty());
  }
  SECTION("SASLResponse") {
    std::string s;
    const std::string data("c=biws,r=x,p=\0\1", 15);
    sasl_response(s, data);
    CHECK(s == typed('p', data));
    CHECK(one(s).body == data);
  }
  SECTION("Query") {
    std::string s;
    query(s, "SELECT 'é'");
    CHECK(s == typed('Q', cs("SELECT 'é'")));
    auto q = parse_query(body_in(s));
    REQUIRE(q);
    CHECK(*q == "SELECT 'é'");
  }
}

TEST_CASE("Builders append and never disturb earlier content", "[builders]") {
  const std::string stream = all_typed_messages();
  // Building each message separately gives the same bytes as appending.
  std::vector<Msg> msgs = frame_all(stream);
  std::string rebuilt;
  for (const auto& m : msgs) rebuilt += typed(m.type, m.body);
  CHECK(rebuilt == stream);
  // And each message is accepted by its inspector.
  size_t checked = 0;
  for (const auto& m : msgs) {
    ByteSpan b = span(m.body);
    INFO(m);
    switch (m.type) {
      case 'R': CHECK(parse_auth_request(b)); ++checked; break;
      case 'S': if (!m.body.empty()) { CHECK(parse_parameter_status(b)); ++checked; } break;
      case 'K': CHECK(parse_backend_key_data(b)); ++checked; break;
      case 'Z': CHECK(parse_ready_for_query(b)); ++checked; break;
      case 'E': case 'N': CHECK(parse_error_fields(b)); ++checked; break;
      case 'v': CHECK(parse_negotiate_protocol_version(b)); ++checked; break;
      case 'C': CHECK(parse_command_complete(b)); ++checked; break;
      case 'T': CHECK(parse_row_description(b)); ++checked; break;
      case 'D': CHECK(parse_data_row(b)); ++checked; break;
      case 'Q': CHECK(parse_query(b)); ++checked; break;
      default: break;
    }
  }
  CHECK(checked == 20);
}
