// Inspectors: valid bodies accepted, malformed ones (truncated at every byte,
// trailing garbage, bad counts/lengths/codes) rejected.
#include "support.hpp"

using namespace pgmux::proto;
using namespace pgmux::proto::test;

namespace {

const Inspector& inspector(std::string_view name) {
  for (const auto& i : inspectors()) {
    if (name == i.name) return i;
  }
  FAIL("no inspector " << name);
  return inspectors().front();
}

const std::string NUL(1, '\0');

// Hand-made Bind body.
struct BindSpec {
  std::string portal, statement;
  std::vector<int16_t> param_formats;
  std::vector<std::optional<std::string>> values;
  std::vector<int16_t> result_formats;
};

std::string bind_body(const BindSpec& b) {
  std::string s = cs(b.portal) + cs(b.statement);
  s += be16(uint16_t(b.param_formats.size()));
  for (int16_t f : b.param_formats) s += be16(uint16_t(f));
  s += be16(uint16_t(b.values.size()));
  for (const auto& v : b.values) {
    if (!v) {
      s += be32(0xffffffffu);
    } else {
      s += be32(uint32_t(v->size())) + *v;
    }
  }
  s += be16(uint16_t(b.result_formats.size()));
  for (int16_t f : b.result_formats) s += be16(uint16_t(f));
  return s;
}

}  // namespace

TEST_CASE("Reader: bounds-checked cursor", "[inspect]") {
  const std::string data = std::string("\x01\x80\x00\xff\xff\xff\xfe", 7) + "ab" + NUL + "cd";
  Reader r(span(data));
  uint8_t u8 = 0;
  int16_t i16 = 0;
  int32_t i32 = 0;
  std::string_view sv;
  CHECK(r.remaining() == 12);
  CHECK(r.u8(u8));
  CHECK(u8 == 1);
  CHECK(r.i16(i16));
  CHECK(i16 == -32768);
  CHECK(r.i32(i32));
  CHECK(i32 == -2);
  CHECK(r.pos() == 7);
  CHECK(r.cstr(sv));
  CHECK(sv == "ab");
  CHECK(r.remaining() == 2);
  CHECK_FALSE(r.cstr(sv));  // no NUL in "cd"
  CHECK(r.remaining() == 2);  // failed reads consume nothing
  CHECK_FALSE(r.i32(i32));
  CHECK_FALSE(r.bytes(3, sv));
  CHECK(r.bytes(0, sv));
  CHECK(sv.empty());
  CHECK(r.bytes(1, sv));
  CHECK(sv == "c");
  CHECK_FALSE(r.i16(i16));
  CHECK(r.rest() == "d");
  CHECK(r.at_end());
  CHECK(r.rest().empty());
  CHECK_FALSE(r.u8(u8));
  CHECK_FALSE(r.cstr(sv));
  CHECK(r.bytes(0, sv));

  SECTION("empty span") {
    Reader e{ByteSpan{}};
    CHECK(e.at_end());
    CHECK_FALSE(e.u8(u8));
    CHECK_FALSE(e.cstr(sv));
    CHECK(e.bytes(0, sv));
    CHECK(e.rest().empty());
    uint32_t u32 = 0;
    CHECK_FALSE(e.u32(u32));
  }
  SECTION("u32 reads the full unsigned range") {
    const std::string m = be32(0xfedcba98u);
    Reader q(span(m));
    uint32_t u32 = 0;
    CHECK(q.u32(u32));
    CHECK(u32 == 0xfedcba98u);
  }
}

TEST_CASE("parse_auth_request", "[inspect]") {
  const Inspector& in = inspector("parse_auth_request");
  SECTION("known codes with their layouts") {
    for (int32_t code : {0, 2, 3, 7, 9}) {
      INFO("code " << code);
      CHECK(in.accepts(span(be32(uint32_t(code)))));
      CHECK_FALSE(in.accepts(span(be32(uint32_t(code)) + "x")));
      CHECK_FALSE(in.accepts(span(be32(uint32_t(code)) + NUL)));
      require_prefix_free(in, be32(uint32_t(code)));
    }
    require_prefix_free(in, be32(5) + "salt");
    CHECK_FALSE(in.accepts(span(be32(5) + "sal")));
    CHECK_FALSE(in.accepts(span(be32(5) + "salts")));
    require_prefix_free(in, be32(10) + cs("SCRAM-SHA-256") + NUL);
    for (int32_t code : {8, 11, 12}) {
      CHECK(in.accepts(span(be32(uint32_t(code)))));
      CHECK(in.accepts(span(be32(uint32_t(code)) + std::string("\0\xff", 2))));
      CHECK_FALSE(in.accepts(span(be32(uint32_t(code)).substr(0, 3))));
    }
    const std::string gss = be32(8) + "gss";
    auto a = parse_auth_request(span(gss));
    REQUIRE(a);
    CHECK(a->code == 8);
    CHECK(a->data == "gss");
  }
  SECTION("unknown codes: opaque data, so the caller can name the method") {
    for (int32_t code : {1, 4, 6, 13, 100, 0x7fffffff}) {
      INFO("code " << code);
      const std::string body = be32(uint32_t(code)) + std::string("\0x", 2);
      auto a = parse_auth_request(span(body));
      REQUIRE(a);
      CHECK(a->code == code);
      CHECK(a->data == std::string_view("\0x", 2));
      CHECK(in.accepts(span(be32(uint32_t(code)))));
    }
  }
  SECTION("negative codes and short bodies are rejected") {
    for (uint32_t code : {0xffffffffu, 0x80000000u, 0xfffffff6u}) {
      CHECK_FALSE(in.accepts(span(be32(code))));
      CHECK_FALSE(in.accepts(span(be32(code) + "data")));
    }
    for (size_t n = 0; n < 4; ++n) CHECK_FALSE(in.accepts(span(std::string(n, '\0'))));
  }
  SECTION("SASL with a malformed mechanism list") {
    CHECK_FALSE(in.accepts(span(be32(10))));
    CHECK_FALSE(in.accepts(span(be32(10) + NUL)));
    CHECK_FALSE(in.accepts(span(be32(10) + "SCRAM")));
    CHECK_FALSE(in.accepts(span(be32(10) + cs("SCRAM"))));
    CHECK_FALSE(in.accepts(span(be32(10) + cs("SCRAM") + NUL + "x")));
  }
}

TEST_CASE("parse_sasl_mechanisms", "[inspect]") {
  auto m = parse_sasl_mechanisms(cs("A") + cs("B-PLUS") + NUL);
  REQUIRE(m);
  CHECK(*m == std::vector<std::string>{"A", "B-PLUS"});
  const Inspector& in = inspector("parse_sasl_mechanisms");
  require_prefix_free(in, cs("A") + cs("B-PLUS") + NUL);
  require_prefix_free(in, cs("SCRAM-SHA-256") + NUL);
  CHECK_FALSE(parse_sasl_mechanisms(""));
  CHECK_FALSE(parse_sasl_mechanisms(NUL));  // empty list
  CHECK_FALSE(parse_sasl_mechanisms(NUL + NUL));
}

TEST_CASE("parse_parameter_status", "[inspect]") {
  const Inspector& in = inspector("parse_parameter_status");
  require_prefix_free(in, cs("client_encoding") + cs("UTF8"));
  require_prefix_free(in, cs("") + cs(""));
  CHECK_FALSE(in.accepts(span(cs("a"))));
  CHECK_FALSE(in.accepts(span(cs("a") + cs("b") + cs("c"))));
  CHECK_FALSE(in.accepts(span(std::string("ab"))));
}

TEST_CASE("parse_backend_key_data", "[inspect]") {
  const Inspector& in = inspector("parse_backend_key_data");
  for (size_t n = 0; n <= 40; ++n) {
    INFO("size " << n);
    CHECK(in.accepts(span(std::string(n, '\x5a'))) == (n == 8));
  }
  auto k = parse_backend_key_data(span(be32(1) + be32(0xffffffffu)));
  REQUIRE(k);
  CHECK(k->pid == 1);
  CHECK(k->key == 0xffffffffu);
}

TEST_CASE("parse_ready_for_query", "[inspect]") {
  for (int c = 0; c < 256; ++c) {
    std::string b(1, char(c));
    auto r = parse_ready_for_query(span(b));
    INFO("status byte " << c);
    CHECK(r.has_value() == (c == 'I' || c == 'T' || c == 'E'));
    if (r) CHECK(*r == char(c));
  }
  CHECK_FALSE(parse_ready_for_query({}));
  CHECK_FALSE(parse_ready_for_query(span(std::string("II"))));
  CHECK_FALSE(parse_ready_for_query(span(std::string("I") + NUL)));
}

TEST_CASE("parse_error_fields", "[inspect]") {
  const Inspector& in = inspector("parse_error_fields");
  const std::string full = cs("SERREUR") + cs("VERROR") + cs("C42P01") + cs("Mrelation \"x\" does not exist") +
                           cs("P15") + cs("Fparse_relation.c") + cs("L1392") + cs("RparserOpenTable") + NUL;
  require_prefix_free(in, full);
  auto f = parse_error_fields(span(full));
  REQUIRE(f);
  CHECK(f->severity == "ERROR");  // non-localized V wins over localized S
  CHECK(f->sqlstate == "42P01");
  CHECK(f->message == "relation \"x\" does not exist");
  CHECK(f->detail.empty());
  CHECK(f->hint.empty());

  SECTION("S is used when there is no V (before 9.6)") {
    auto g = parse_error_fields(span(cs("SFATAL") + cs("C28P01") + NUL));
    REQUIRE(g);
    CHECK(g->severity == "FATAL");
    auto h = parse_error_fields(span(cs("VPANIC") + cs("SPANIQUE") + NUL));
    REQUIRE(h);
    CHECK(h->severity == "PANIC");  // V wins regardless of order
  }
  SECTION("absent fields are empty, not defaults") {
    auto g = parse_error_fields(span(cs("Mhi") + NUL));
    REQUIRE(g);
    CHECK(g->severity.empty());
    CHECK(g->sqlstate.empty());
    CHECK(g->message == "hi");
  }
  SECTION("a repeated field: last one wins") {
    auto g = parse_error_fields(span(cs("Ma") + cs("Mb") + NUL));
    REQUIRE(g);
    CHECK(g->message == "b");
  }
  SECTION("malformed") {
    CHECK_FALSE(in.accepts({}));                             // no terminator
    CHECK_FALSE(in.accepts(span(cs("Mhi"))));                // no terminator
    CHECK_FALSE(in.accepts(span(std::string("Mhi"))));       // unterminated string
    CHECK_FALSE(in.accepts(span(std::string("M"))));         // code without string
    CHECK_FALSE(in.accepts(span(NUL + "x")));                // trailing after terminator
    CHECK_FALSE(in.accepts(span(NUL + NUL)));
    CHECK_FALSE(in.accepts(span(cs("Mhi") + NUL + cs("Dx"))));  // fields after terminator
  }
}

TEST_CASE("is_stale_plan_error", "[inspect]") {
  // As PostgreSQL 15 sends it, in German: only C and R count.
  const std::string stale = cs("SFEHLER") + cs("VERROR") + cs("C0A000") +
                            cs("Mgecachter Plan darf den Ergebnistyp nicht ändern") + cs("Fplancache.c") +
                            cs("L735") + cs("RRevalidateCachedQuery") + NUL;
  CHECK(is_stale_plan_error(span(stale)));
  // Every shorter prefix is malformed.
  for (size_t i = 0; i < stale.size(); ++i) CHECK_FALSE(is_stale_plan_error(span(stale.substr(0, i))));
  CHECK_FALSE(is_stale_plan_error(span(stale + "x")));
  // Same code from another routine, or the routine with another code.
  CHECK_FALSE(is_stale_plan_error(span(cs("C0A000") + cs("RExecSetupPartitionTupleRouting") + NUL)));
  CHECK_FALSE(is_stale_plan_error(span(cs("C42P01") + cs("RRevalidateCachedQuery") + NUL)));
  CHECK_FALSE(is_stale_plan_error(span(cs("C0A000") + cs("Mcached plan must not change result type") + NUL)));
  CHECK(is_stale_plan_error(span(cs("RRevalidateCachedQuery") + cs("C0A000") + NUL)));
}

TEST_CASE("parse_command_complete, parse_password_message, parse_query", "[inspect]") {
  for (const char* name : {"parse_command_complete", "parse_password_message", "parse_query"}) {
    const Inspector& in = inspector(name);
    INFO(name);
    require_prefix_free(in, cs("SELECT 1"));
    require_prefix_free(in, cs(""));
    CHECK_FALSE(in.accepts(span(std::string("SELECT 1"))));
    CHECK_FALSE(in.accepts(span(cs("a") + cs("b"))));
  }
  CHECK(*parse_query(span(cs("SELECT 1; SELECT 2"))) == "SELECT 1; SELECT 2");
  CHECK(*parse_command_complete(span(cs("UPDATE 12"))) == "UPDATE 12");
  CHECK(*parse_password_message(span(cs("pw"))) == "pw");
}

TEST_CASE("parse_sasl_initial_response", "[inspect]") {
  const Inspector& in = inspector("parse_sasl_initial_response");
  const std::string good = cs("SCRAM-SHA-256") + be32(5) + "n,,ab";
  require_prefix_free(in, good);
  auto s = parse_sasl_initial_response(span(good));
  REQUIRE(s);
  CHECK(s->mechanism == "SCRAM-SHA-256");
  CHECK(s->has_data);
  CHECK(s->data == "n,,ab");

  SECTION("length -1: no data") {
    const std::string none = cs("SCRAM-SHA-256") + be32(0xffffffffu);
    require_prefix_free(in, none);
    auto n = parse_sasl_initial_response(span(none));
    REQUIRE(n);
    CHECK_FALSE(n->has_data);
    CHECK(n->data.empty());
  }
  SECTION("length 0: empty data") {
    const std::string zero = cs("M") + be32(0);
    auto z = parse_sasl_initial_response(span(zero));
    REQUIRE(z);
    CHECK(z->has_data);
    CHECK(z->data.empty());
  }
  SECTION("bad lengths") {
    for (uint32_t len : {0xfffffffeu, 0x80000000u, 6u, 100u, 0x7fffffffu}) {
      INFO("length " << len);
      CHECK_FALSE(in.accepts(span(cs("M") + be32(len) + "n,,ab")));
    }
    CHECK_FALSE(in.accepts(span(cs("M") + be32(4) + "n,,ab")));  // shorter than the rest
    CHECK_FALSE(in.accepts(span(std::string("M"))));
    CHECK_FALSE(in.accepts(span(cs("M") + be32(0xffffffffu) + "x")));  // -1 then bytes
  }
}

TEST_CASE("parse_parse", "[inspect]") {
  const Inspector& in = inspector("parse_parse");
  const std::string good = cs("stmt1") + cs("SELECT $1, $2") + be16(2) + be32(23) + be32(0xfffffff0u);
  require_prefix_free(in, good);
  auto p = parse_parse(span(good));
  REQUIRE(p);
  CHECK(p->statement == "stmt1");
  CHECK(p->query == "SELECT $1, $2");
  CHECK(p->param_types == std::vector<uint32_t>{23, 0xfffffff0u});

  const std::string unnamed = cs("") + cs("SELECT 1") + be16(0);
  require_prefix_free(in, unnamed);
  CHECK(parse_parse(span(unnamed))->statement.empty());

  CHECK_FALSE(in.accepts(span(cs("") + cs("SELECT 1") + be16(0xffff))));  // negative count
  CHECK_FALSE(in.accepts(span(cs("") + cs("SELECT 1") + be16(0x8000) + be32(1))));
  CHECK_FALSE(in.accepts(span(cs("") + cs("SELECT 1") + be16(3) + be32(1) + be32(2))));
  CHECK_FALSE(in.accepts(span(cs("") + cs("SELECT 1"))));
}

TEST_CASE("parse_bind", "[inspect]") {
  const Inspector& in = inspector("parse_bind");
  const BindSpec spec{"portal", "stmt", {0, 1}, {std::string("42"), std::nullopt, std::string(), std::string("\0\1", 2)}, {1}};
  const std::string good = bind_body(spec);
  require_prefix_free(in, good);
  auto b = parse_bind(span(good));
  REQUIRE(b);
  CHECK(b->portal == "portal");
  CHECK(b->statement == "stmt");
  CHECK(b->statement_offset == 7);
  CHECK(good.substr(b->statement_offset, 5) == cs("stmt"));

  SECTION("unnamed portal and statement, no params") {
    const std::string e = bind_body({});
    CHECK(e == NUL + NUL + be16(0) + be16(0) + be16(0));
    require_prefix_free(in, e);
    auto u = parse_bind(span(e));
    REQUIRE(u);
    CHECK(u->portal.empty());
    CHECK(u->statement.empty());
    CHECK(u->statement_offset == 1);
  }
  SECTION("statement_offset locates the name for in-place rewriting") {
    for (size_t plen : {0u, 1u, 9u, 63u}) {
      BindSpec s2 = spec;
      s2.portal = std::string(plen, 'p');
      s2.statement = "S_" + std::to_string(plen);
      const std::string body = bind_body(s2);
      auto r = parse_bind(span(body));
      REQUIRE(r);
      CHECK(r->statement_offset == plen + 1);
      CHECK(body.substr(r->statement_offset, r->statement.size()) == s2.statement);
      CHECK(r->statement.data() == body.data() + r->statement_offset);
    }
  }
  SECTION("malformed layouts") {
    const std::string head = cs("p") + cs("s");
    auto rejects = [&](const std::string& rest, const char* what) {
      INFO(what);
      CHECK_FALSE(in.accepts(span(head + rest)));
    };
    rejects(be16(0xffff) + be16(0) + be16(0), "negative format count");
    rejects(be16(2) + be16(0) + be16(0) + be16(0), "format count larger than codes");
    rejects(be16(0) + be16(0xffff) + be16(0), "negative parameter count");
    rejects(be16(0) + be16(1) + be32(0xfffffffeu) + be16(0), "parameter length -2");
    rejects(be16(0) + be16(1) + be32(0x80000000u) + be16(0), "parameter length INT_MIN");
    rejects(be16(0) + be16(1) + be32(5) + "abcd" + be16(0), "parameter value too short");
    rejects(be16(0) + be16(2) + be32(1) + "a" + be16(0), "missing parameter");
    rejects(be16(0) + be16(0) + be16(0xffff), "negative result format count");
    rejects(be16(0) + be16(0) + be16(1), "missing result format");
    rejects(be16(0) + be16(0), "missing result format count");
    rejects(be16(0) + be16(0) + be16(0) + "x", "trailing byte");
    rejects("", "nothing after the names");
    CHECK_FALSE(in.accepts(span(cs("p") + "s")));
    CHECK_FALSE(in.accepts(span(std::string("p"))));
  }
  SECTION("a parameter value may contain anything, including a Bind") {
    BindSpec inner = spec;
    inner.values = {good, std::nullopt};
    require_prefix_free(in, bind_body(inner));
  }
}

TEST_CASE("parse_describe and parse_close", "[inspect]") {
  for (const char* name : {"parse_describe", "parse_close"}) {
    const Inspector& in = inspector(name);
    INFO(name);
    require_prefix_free(in, "S" + cs("stmt"));
    require_prefix_free(in, "P" + cs(""));
    for (int c = 0; c < 256; ++c) {
      const std::string body = std::string(1, char(c)) + cs("x");
      CHECK(in.accepts(span(body)) == (c == 'S' || c == 'P'));
    }
  }
  const std::string dbody = "S" + cs("name");
  auto d = parse_describe(span(dbody));
  REQUIRE(d);
  CHECK(d->kind == 'S');
  CHECK(d->name == "name");
  const std::string cbody = "P" + cs("");
  auto c = parse_close(span(cbody));
  REQUIRE(c);
  CHECK(c->kind == 'P');
  CHECK(c->name.empty());
}

TEST_CASE("parse_negotiate_protocol_version", "[inspect]") {
  const Inspector& in = inspector("parse_negotiate_protocol_version");
  require_prefix_free(in, be32(0) + be32(2) + cs("_pq_.a") + cs(""));
  require_prefix_free(in, be32(1) + be32(0));
  CHECK_FALSE(in.accepts(span(be32(0) + be32(0xffffffffu))));
  CHECK_FALSE(in.accepts(span(be32(0) + be32(0x7fffffff) + cs("a"))));
  CHECK_FALSE(in.accepts(span(be32(0) + be32(3) + cs("a") + cs("b"))));
}

TEST_CASE("parse_row_description", "[inspect]") {
  const Inspector& in = inspector("parse_row_description");
  const std::string field = cs("id") + be32(16384) + be16(1) + be32(23) + be16(4) + be32(0xffffffffu) + be16(1);
  const std::string good = be16(2) + field + field;
  require_prefix_free(in, good);
  require_prefix_free(in, be16(0));
  auto cols = parse_row_description(span(good));
  REQUIRE(cols);
  CHECK((*cols)[0].table_oid == 16384);
  CHECK((*cols)[0].attnum == 1);
  CHECK((*cols)[0].type_oid == 23);
  CHECK((*cols)[0].typlen == 4);
  CHECK((*cols)[0].typmod == -1);
  CHECK((*cols)[0].format == 1);
  CHECK_FALSE(in.accepts(span(be16(0xffff))));
  CHECK_FALSE(in.accepts(span(be16(3) + field + field)));
  CHECK_FALSE(in.accepts(span(be16(0x7fff) + field)));
}

TEST_CASE("parse_data_row", "[inspect]") {
  const Inspector& in = inspector("parse_data_row");
  const std::string good = be16(3) + be32(2) + "ab" + be32(0xffffffffu) + be32(0);
  require_prefix_free(in, good);
  require_prefix_free(in, be16(0));
  CHECK_FALSE(in.accepts(span(be16(0xffff))));
  CHECK_FALSE(in.accepts(span(be16(1) + be32(0xfffffffeu))));
  CHECK_FALSE(in.accepts(span(be16(1) + be32(3) + "ab")));
  CHECK_FALSE(in.accepts(span(be16(2) + be32(0))));
}

TEST_CASE("Every inspector rejects every truncation of every valid corpus body", "[inspect]") {
  // Valid bodies per inspector, beyond the cases above.
  struct Case {
    const char* inspector;
    std::string body;
  };
  std::vector<Case> cases = {
      {"parse_parameter_status", cs("is_superuser") + cs("off")},
      {"parse_backend_key_data", be32(7) + be32(8)},
      {"parse_ready_for_query", "T"},
      {"parse_error_fields", cs("SLOG") + cs("Mx") + NUL},
      {"parse_command_complete", cs("COPY 10")},
      {"parse_sasl_initial_response", cs("SCRAM-SHA-256-PLUS") + be32(3) + "p=x"},
      {"parse_password_message", cs("md5" + std::string(32, 'f'))},
      {"parse_query", cs("BEGIN READ ONLY")},
      {"parse_parse", cs("s") + cs("q") + be16(1) + be32(25)},
      {"parse_bind", bind_body({"", "s", {1}, {std::string(300, '\0')}, {0, 1, 0}})},
      {"parse_describe", "P" + cs("portal")},
      {"parse_close", "S" + cs("s")},
      {"parse_sasl_mechanisms", cs("x") + NUL},
      {"parse_negotiate_protocol_version", be32(0) + be32(1) + cs("_pq_.x")},
      {"parse_row_description", be16(1) + cs("") + std::string(18, '\0')},
      {"parse_data_row", be16(1) + be32(0xffffffffu)},
  };
  size_t n = 0;
  for (const auto& c : cases) {
    require_prefix_free(inspector(c.inspector), c.body);
    ++n;
  }
  CHECK(n == inspectors().size() - 1);  // all but parse_auth_request (tested above)
}

TEST_CASE("result_shape: names, types and type modifiers decide", "[inspect]") {
  auto field = [](const std::string& name, uint32_t table, uint16_t attnum, uint32_t type, int32_t typmod,
                  uint16_t format) {
    return cs(name) + be32(table) + be16(attnum) + be32(type) + be16(4) + be32(uint32_t(typmod)) + be16(format);
  };
  auto shape = [](const std::string& fields, uint16_t n) {
    const std::string body = be16(n) + fields;
    return result_shape('T', span(body));
  };
  const uint64_t a = shape(field("a", 16384, 1, 23, -1, 0), 1);
  CHECK(a > kUnreadableShape);
  // Where a column comes from and its format code do not count (PostgreSQL's
  // revalidation compares the columns' names and types).
  CHECK(shape(field("a", 99999, 3, 23, -1, 1), 1) == a);
  CHECK(shape(field("b", 16384, 1, 23, -1, 0), 1) != a);     // name
  CHECK(shape(field("a", 16384, 1, 20, -1, 0), 1) != a);     // type
  CHECK(shape(field("a", 16384, 1, 23, 14, 0), 1) != a);     // typmod (varchar(10))
  CHECK(shape(field("a", 16384, 1, 23, -1, 0) + field("b", 16384, 2, 23, -1, 0), 2) != a);  // a column more
  // Names do not run into each other: ("ab","c") is not ("a","bc").
  CHECK(shape(field("ab", 0, 0, 25, -1, 0) + field("c", 0, 0, 25, -1, 0), 2) !=
        shape(field("a", 0, 0, 25, -1, 0) + field("bc", 0, 0, 25, -1, 0), 2));
  CHECK(shape("", 0) > kUnreadableShape);  // no columns: a RowDescription still
  CHECK(shape("", 0) != result_shape('n', {}));
  CHECK(result_shape('n', {}) == kNoRowsShape);
  // A malformed one is neither known nor unknown: it compares equal to anything.
  const std::string bad = be16(2) + field("a", 0, 0, 23, -1, 0);
  CHECK(result_shape('T', span(bad)) == kUnreadableShape);
}
