// Seeded random and mutated input through every inspector: never crashes
// (the suite runs under ASan/UBSan), and accepted bodies are consistent.
#include <algorithm>

#include "support.hpp"

using namespace pgmux::proto;
using namespace pgmux::proto::test;

namespace {

// Valid seed bodies to mutate, so that random input also reaches deep paths.
std::vector<std::string> seed_bodies() {
  std::vector<std::string> seeds;
  for (const Msg& m : frame_all(all_typed_messages())) seeds.push_back(m.body);
  const std::string NUL(1, '\0');
  seeds.push_back(cs("portal") + cs("stmt") + be16(1) + be16(1) + be16(2) + be32(1) + "x" + be32(0xffffffffu) +
                  be16(1) + be16(0));
  seeds.push_back(cs("s") + cs("SELECT $1") + be16(1) + be32(23));
  seeds.push_back("S" + cs("stmt"));
  seeds.push_back(cs("SCRAM-SHA-256") + be32(0xffffffffu));
  seeds.push_back(be32(5) + "salt");
  seeds.push_back(be32(10) + cs("SCRAM-SHA-256") + NUL);
  return seeds;
}

std::string mutate(Rng& rng, std::string s) {
  const size_t ops = 1 + rng.below(3);
  for (size_t i = 0; i < ops; ++i) {
    switch (rng.below(6)) {
      case 0:  // flip a byte
        if (!s.empty()) s[rng.below(s.size())] = char(rng.byte());
        break;
      case 1:  // truncate
        s.resize(rng.below(s.size() + 1));
        break;
      case 2:  // insert bytes
        s.insert(rng.below(s.size() + 1), rng.bytes(1 + rng.below(4)));
        break;
      case 3:  // erase a range
        if (!s.empty()) {
          const size_t at = rng.below(s.size());
          s.erase(at, 1 + rng.below(s.size() - at));
        }
        break;
      case 4:  // interesting integers somewhere
        if (s.size() >= 4) {
          static const uint32_t vals[] = {0, 1, 0xffffffffu, 0xfffffffeu, 0x7fffffffu, 0x80000000u, 0xffff, 0x8000};
          const std::string v = be32(vals[rng.below(8)]);
          s.replace(rng.below(s.size() - 3), 4, v);
        }
        break;
      default:  // append garbage
        s += rng.bytes(rng.below(3));
        break;
    }
  }
  return s;
}

// Accepted bodies must re-encode to the same bytes where a builder exists.
void check_reencode(const std::string& body) {
  ByteSpan b = span(body);
  if (auto p = parse_parameter_status(b)) {
    std::string out;
    parameter_status(out, p->name, p->value);
    REQUIRE(out.substr(5) == body);
  }
  if (auto k = parse_backend_key_data(b)) {
    std::string out;
    backend_key_data(out, k->pid, k->key);
    REQUIRE(out.substr(5) == body);
  }
  if (auto z = parse_ready_for_query(b)) {
    std::string out;
    ready_for_query(out, *z);
    REQUIRE(out.substr(5) == body);
  }
  if (auto t = parse_command_complete(b)) {
    std::string out;
    command_complete(out, *t);
    REQUIRE(out.substr(5) == body);
  }
  if (auto q = parse_query(b)) {
    std::string out;
    query(out, *q);
    REQUIRE(out.substr(5) == body);
  }
  if (auto pw = parse_password_message(b)) {
    std::string out;
    password_message(out, *pw);
    REQUIRE(out.substr(5) == body);
  }
  if (auto s = parse_sasl_initial_response(b); s && s->has_data) {
    std::string out;
    sasl_initial_response(out, s->mechanism, s->data);
    REQUIRE(out.substr(5) == body);
  }
  if (auto a = parse_auth_request(b)) {
    std::string out;
    switch (a->code) {
      case 0: auth_ok(out); break;
      case 3: auth_cleartext(out); break;
      case 5: auth_md5(out, reinterpret_cast<const uint8_t*>(a->data.data())); break;
      case 10: auth_sasl(out, *parse_sasl_mechanisms(a->data)); break;
      case 11: auth_sasl_continue(out, a->data); break;
      case 12: auth_sasl_final(out, a->data); break;
      default: out = std::string(5, '\0') + body; break;
    }
    REQUIRE(out.substr(5) == body);
  }
  if (auto n = parse_negotiate_protocol_version(b)) {
    std::vector<std::string> opts(n->unrecognized.begin(), n->unrecognized.end());
    std::string out;
    negotiate_protocol_version(out, n->newest_minor, opts);
    REQUIRE(out.substr(5) == body);
  }
  if (auto r = parse_data_row(b)) {
    std::vector<std::string> values;
    std::vector<bool> nulls;
    for (const auto& v : *r) {
      values.emplace_back(v ? *v : std::string_view());
      nulls.push_back(!v);
    }
    std::string out;
    data_row(out, values, nulls);
    REQUIRE(out.substr(5) == body);
  }
  if (auto bind = parse_bind(b)) {
    REQUIRE(bind->portal.data() == body.data());
    REQUIRE(bind->statement_offset == bind->portal.size() + 1);
    REQUIRE(bind->statement.data() == body.data() + bind->statement_offset);
    REQUIRE(body[bind->statement_offset + bind->statement.size()] == '\0');
  }
  if (auto d = parse_describe(b)) {
    REQUIRE(body == std::string(1, d->kind) + cs(d->name));
    REQUIRE(parse_close(b));
  } else {
    REQUIRE_FALSE(parse_close(b));
  }
  if (auto p = parse_parse(b)) {
    std::string re = cs(p->statement) + cs(p->query) + be16(uint16_t(p->param_types.size()));
    for (uint32_t t : p->param_types) re += be32(t);
    REQUIRE(re == body);
  }
  if (auto e = parse_error_fields(b)) {
    // Only known fields survive, so compare the parsed view after a rebuild.
    std::string out;
    error_response(out, *e);
    auto again = parse_error_fields(span(out).subspan(5));
    REQUIRE(again);
    REQUIRE(again->severity == e->severity);
    REQUIRE(again->sqlstate == e->sqlstate);
    REQUIRE(again->message == e->message);
    REQUIRE(again->detail == e->detail);
    REQUIRE(again->hint == e->hint);
  }
}

}  // namespace

TEST_CASE("Inspectors on random bytes and mutated valid bodies", "[inspect][random]") {
  Rng rng(0x1a5bec7);
  const std::vector<std::string> seeds = seed_bodies();
  std::vector<size_t> accepted(inspectors().size(), 0);
  const int iterations = 60000;
  for (int iter = 0; iter < iterations; ++iter) {
    std::string body;
    if (iter % 3 == 0) {
      body = rng.bytes(rng.below(48));
    } else {
      body = seeds[rng.below(seeds.size())];
      if (iter % 3 == 2) body = mutate(rng, body);
    }
    INFO("iteration " << iter);
    // Exact-size copy so that ASan catches any read past the end.
    std::vector<uint8_t> exact(body.begin(), body.end());
    ByteSpan b(exact.data(), exact.size());
    for (size_t i = 0; i < inspectors().size(); ++i) {
      const Inspector& in = inspectors()[i];
      const bool ok = in.accepts(b);
      REQUIRE(ok == in.accepts(b));  // deterministic
      if (!ok) continue;
      ++accepted[i];
      if (in.prefix_free && iter % 5 == 0) require_prefix_free(in, body);
    }
    check_reencode(body);
  }
  // Every inspector accepted a meaningful number of inputs (the corpus is
  // not only exercising rejection paths).
  for (size_t i = 0; i < inspectors().size(); ++i) {
    INFO(inspectors()[i].name);
    CHECK(accepted[i] > 100);
  }
}

TEST_CASE("Whole random streams: frame, then inspect every body", "[framing][inspect][random]") {
  Rng rng(0xabcdef);
  const std::vector<std::string> seeds = seed_bodies();
  static const char types[] = "RSKZENCQPBDHpvTdIX123";
  for (int iter = 0; iter < 2000; ++iter) {
    std::string stream;
    std::vector<Msg> sent;
    const size_t n = 1 + rng.below(20);
    for (size_t i = 0; i < n; ++i) {
      Msg m{types[rng.below(sizeof(types) - 1)], mutate(rng, seeds[rng.below(seeds.size())])};
      stream += typed(m.type, m.body);
      sent.push_back(m);
    }
    std::vector<size_t> at;
    for (size_t i = 0, k = rng.below(10); i < k; ++i) at.push_back(rng.below(stream.size() + 1));
    std::sort(at.begin(), at.end());
    StreamFramer f;
    FramerRun run = run_framer(f, cut(stream, at));
    INFO("iteration " << iter);
    REQUIRE(run.messages == sent);
    for (const Msg& m : run.messages) {
      std::vector<uint8_t> exact(m.body.begin(), m.body.end());
      for (const Inspector& in : inspectors()) (void)in.accepts(ByteSpan(exact.data(), exact.size()));
    }
  }
}
