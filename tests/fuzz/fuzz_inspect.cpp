// Message inspectors (protocol/inspect.hpp): every parse_* on the same
// message body (the bytes after type and length).
//
// Properties, for each parser that accepts the body:
//  - every returned string_view lies inside the body;
//  - the parsed fields re-encode (independently of protocol/builders) to
//    exactly the body, where the format is lossless: parameter status,
//    backend key, ready for query, command complete, SASL initial response,
//    password, query, Parse, Describe/Close, NegotiateProtocolVersion,
//    RowDescription, DataRow, Authentication*, SASL mechanism lists; for
//    Bind, the names sit where statement_offset says;
//  - ErrorResponse fields survive builders' error_response and a re-parse.
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"
#include "protocol/builders.hpp"
#include "protocol/inspect.hpp"

using namespace pgmux::proto;
using namespace pgmux::fuzz;

namespace {

void check_reader(ByteSpan body) {
  // The cursor never moves past the end, whatever is asked.
  Reader r(body);
  std::string_view v;
  uint8_t u8 = 0;
  int16_t i16 = 0;
  size_t step = 0;
  while (!r.at_end()) {
    const size_t before = r.pos();
    bool moved = false;
    switch (step++ % 4) {
      case 0: moved = r.cstr(v); if (moved) FUZZ_CHECK(inside(v, body)); break;
      case 1: moved = r.i16(i16); break;
      case 2: moved = r.bytes(3, v); if (moved) FUZZ_CHECK(v.size() == 3 && inside(v, body)); break;
      case 3: moved = r.u8(u8); break;
    }
    FUZZ_CHECK(r.pos() <= body.size());
    FUZZ_CHECK(r.remaining() == body.size() - r.pos());
    if (!moved) FUZZ_CHECK(r.pos() == before);
    if (!moved && step > 8) break;
  }
  v = r.rest();
  FUZZ_CHECK(r.at_end() && inside(v, body));
}

void same(const std::string& encoded, ByteSpan body) { FUZZ_CHECK(encoded == chars(body)); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan body(data, size);
  check_reader(body);

  if (auto a = parse_auth_request(body)) {
    FUZZ_CHECK(a->code >= 0 && inside(a->data, body));
    std::string e;
    put32(e, uint32_t(a->code));
    e.append(a->data);
    same(e, body);
    if (a->code == 5) FUZZ_CHECK(a->data.size() == 4);
    if (a->code == 0 || a->code == 3) FUZZ_CHECK(a->data.empty());
    if (a->code == 10) FUZZ_CHECK(parse_sasl_mechanisms(a->data).has_value());
  }
  if (auto m = parse_sasl_mechanisms(chars(body))) {
    FUZZ_CHECK(!m->empty());
    std::string e;
    for (const auto& name : *m) {
      FUZZ_CHECK(!name.empty());
      putcs(e, name);
    }
    e.push_back('\0');
    same(e, body);
  }
  if (auto m = parse_parameter_status(body)) {
    FUZZ_CHECK(inside(m->name, body) && inside(m->value, body));
    std::string e;
    putcs(e, m->name);
    putcs(e, m->value);
    same(e, body);
  }
  if (auto k = parse_backend_key_data(body)) {
    std::string e;
    put32(e, k->pid);
    put32(e, k->key);
    same(e, body);
  }
  if (auto z = parse_ready_for_query(body)) {
    FUZZ_CHECK(*z == 'I' || *z == 'T' || *z == 'E');
    same(std::string(1, *z), body);
  }
  // A stale-plan error is a well-formed ErrorResponse with SQLSTATE 0A000.
  if (is_stale_plan_error(body)) {
    auto f = parse_error_fields(body);
    FUZZ_CHECK(f.has_value() && f->sqlstate == "0A000");
  }
  if (auto f = parse_error_fields(body)) {
    std::string msg;
    error_response(msg, *f);
    FUZZ_CHECK(msg.size() >= 5 && msg[0] == 'E');
    auto g = parse_error_fields(as_bytes(std::string_view(msg).substr(5)));
    FUZZ_CHECK(g.has_value());
    FUZZ_CHECK(g->severity == f->severity && g->sqlstate == f->sqlstate && g->message == f->message &&
               g->detail == f->detail && g->hint == f->hint);
  }
  if (auto t = parse_command_complete(body)) {
    FUZZ_CHECK(inside(*t, body));
    std::string e;
    putcs(e, *t);
    same(e, body);
  }
  if (auto s = parse_sasl_initial_response(body)) {
    FUZZ_CHECK(inside(s->mechanism, body) && inside(s->data, body));
    std::string e;
    putcs(e, s->mechanism);
    if (s->has_data) {
      put32(e, uint32_t(s->data.size()));
      e.append(s->data);
    } else {
      FUZZ_CHECK(s->data.empty());
      put32(e, 0xffffffffu);
    }
    same(e, body);
  }
  if (auto pw = parse_password_message(body)) {
    FUZZ_CHECK(inside(*pw, body));
    std::string e;
    putcs(e, *pw);
    same(e, body);
    // A password body is a query body too: same layout.
    auto q = parse_query(body);
    FUZZ_CHECK(q && *q == *pw);
  } else {
    FUZZ_CHECK(!parse_query(body));
  }
  if (auto p = parse_parse(body)) {
    FUZZ_CHECK(inside(p->statement, body) && inside(p->query, body));
    std::string e;
    putcs(e, p->statement);
    putcs(e, p->query);
    put16(e, uint16_t(p->param_types.size()));
    for (uint32_t oid : p->param_types) put32(e, oid);
    same(e, body);
  }
  if (auto b = parse_bind(body)) {
    FUZZ_CHECK(inside(b->portal, body) && inside(b->statement, body));
    FUZZ_CHECK(b->portal.empty() || b->portal.data() == chars(body).data());
    FUZZ_CHECK(b->statement_offset == b->portal.size() + 1);
    FUZZ_CHECK(b->statement_offset + b->statement.size() < size);
    FUZZ_CHECK(chars(body).substr(b->statement_offset, b->statement.size()) == b->statement);
    FUZZ_CHECK(body[b->statement_offset + b->statement.size()] == 0);
  }
  auto d = parse_describe(body);
  auto c = parse_close(body);
  FUZZ_CHECK(d.has_value() == c.has_value());
  if (d) {
    FUZZ_CHECK((d->kind == 'S' || d->kind == 'P') && inside(d->name, body));
    FUZZ_CHECK(d->kind == c->kind && d->name == c->name);
    std::string e(1, d->kind);
    putcs(e, d->name);
    same(e, body);
  }
  if (auto n = parse_negotiate_protocol_version(body)) {
    std::string e;
    put32(e, n->newest_minor);
    put32(e, uint32_t(n->unrecognized.size()));
    for (auto opt : n->unrecognized) {
      FUZZ_CHECK(inside(opt, body));
      putcs(e, opt);
    }
    same(e, body);
  }
  if (auto cols = parse_row_description(body)) {
    std::string e;
    put16(e, uint16_t(cols->size()));
    for (const auto& col : *cols) {
      FUZZ_CHECK(inside(col.name, body));
      putcs(e, col.name);
      put32(e, col.table_oid);
      put16(e, uint16_t(col.attnum));
      put32(e, col.type_oid);
      put16(e, uint16_t(col.typlen));
      put32(e, uint32_t(col.typmod));
      put16(e, uint16_t(col.format));
    }
    same(e, body);
  }
  if (auto row = parse_data_row(body)) {
    std::string e;
    put16(e, uint16_t(row->size()));
    for (const auto& v : *row) {
      if (!v) {
        put32(e, 0xffffffffu);
        continue;
      }
      FUZZ_CHECK(inside(*v, body));
      put32(e, uint32_t(v->size()));
      e.append(*v);
    }
    same(e, body);
  }
  return 0;
}
