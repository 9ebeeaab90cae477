// SCRAM-SHA-256: RFC 7677 vectors, a PostgreSQL-written verifier, both sides
// against each other and against an independent client built in this file
// from the primitives, tampering at every field, channel binding, mock
// exchanges and the SaltedPassword cache.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "auth/crypto.hpp"
#include "auth/scram.hpp"

using namespace pgmux::auth;

namespace {

// RFC 7677 section 3.
constexpr const char* kRfcClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr const char* kRfcServerNoncePart = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr const char* kRfcSaltB64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr const char* kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr const char* kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr const char* kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr const char* kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
// Derived from the RFC's password/salt/iterations with Python's hashlib/hmac.
constexpr const char* kRfcVerifier =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
constexpr const char* kRfcClientKeyB64 = "pg/JI9Z+hkSpLRa5btpe9GVrDHJcSEN0viVTVXaZbos=";

// Written by PostgreSQL 15.18 (CREATE ROLE u1 PASSWORD 'scram_pw' with
// password_encryption = scram-sha-256), read back from pg_authid.
constexpr const char* kPgVerifierScramPw =
    "SCRAM-SHA-256$4096:eRt/ZI1jeNN8IdH91EON3w==$Trc0mmFRcWsz+2rSlmXAZ44XOEVq0+ra/NYRiDcgtqs=:"
    "rEEHg1NBBrjgtZTWNBBe5SCsyFlP4A9A7Dw4hNkmY4U=";
// Same run, password 'pencil'.
constexpr const char* kPgVerifierPencil =
    "SCRAM-SHA-256$4096:J56lP3KwhFtSk+caRJaDMg==$wQMTXqBLgmnRYFy9jOG8bIcabgCnArcig39CTzhgp+A=:"
    "//3anYK743YNSHHhwyrnFduj2sxeriNYh8ijar9yJr8=";

Sha256 key_from_b64(const char* b64) {
  auto raw = base64_decode(b64);
  REQUIRE(raw);
  REQUIRE(raw->size() == 32);
  Sha256 k{};
  std::copy(raw->begin(), raw->end(), reinterpret_cast<char*>(k.data()));
  return k;
}

ScramVerifier verifier(const char* text) {
  auto v = parse_scram_verifier(text);
  REQUIRE(v);
  return *v;
}

// A verifier that is cheap to compute and use (tests do many exchanges).
ScramVerifier fast_verifier(std::string_view password, std::string_view salt = "0123456789abcdef") {
  return make_scram_verifier(password, salt, 16);
}

using Mutator = std::function<std::string(std::string)>;
struct Tamper {
  Mutator client_first, server_first, client_final, server_final;
};

struct Outcome {
  bool ok = false;
  std::string failed_at;  // "server-first" = ScramServer::handle_client_first, ...
  std::string error;
  std::string client_first, server_first, client_final, server_final;
};

std::string apply(const Mutator& m, std::string s) { return m ? m(std::move(s)) : s; }

Outcome exchange(ScramClient& client, ScramServer& server, const Tamper& t = {},
                 std::optional<std::string> mechanism = std::nullopt) {
  Outcome o;
  o.client_first = apply(t.client_first, client.client_first());
  if (!server.handle_client_first(mechanism ? *mechanism : client.mechanism(), o.client_first,
                                  o.server_first, o.error)) {
    o.failed_at = "server-first";
    return o;
  }
  o.server_first = apply(t.server_first, o.server_first);
  if (!client.handle_server_first(o.server_first, o.client_final, o.error)) {
    o.failed_at = "client-first";
    return o;
  }
  o.client_final = apply(t.client_final, o.client_final);
  if (!server.handle_client_final(o.client_final, o.server_final, o.error)) {
    o.failed_at = "server-final";
    return o;
  }
  o.server_final = apply(t.server_final, o.server_final);
  if (!client.handle_server_final(o.server_final, o.error)) {
    o.failed_at = "client-final";
    return o;
  }
  o.ok = true;
  return o;
}

// An independent client written from RFC 5802 with the raw primitives, able
// to send what ScramClient never sends ("y" flag, n=user, extensions, chosen
// c= values), to cross-check ScramServer.
struct ManualClient {
  explicit ManualClient(std::string pw) : password(std::move(pw)) {}
  std::string password;
  std::string gs2 = "n,,";
  std::string cb_data;        // appended to gs2 in c= for the "p" flag
  std::string user;           // n= value
  std::string nonce = "manual+Nonce/0123456789";
  std::string first_extra;    // appended to client-first-message-bare
  std::string final_extra;    // inserted before ",p="
  std::optional<std::string> c_override;
  Sha256 expected_server_signature{};

  std::string bare() const { return "n=" + user + ",r=" + nonce + first_extra; }
  std::string first() const { return gs2 + bare(); }

  static std::string attr(const std::string& msg, char name) {
    size_t pos = 0;
    while (pos < msg.size()) {
      size_t end = msg.find(',', pos);
      if (end == std::string::npos) end = msg.size();
      if (msg[pos] == name && pos + 1 < msg.size() && msg[pos + 1] == '=')
        return msg.substr(pos + 2, end - pos - 2);
      pos = end + 1;
    }
    FAIL("attribute " << name << " missing in " << msg);
    return {};
  }

  std::string final_message(const std::string& server_first) {
    const std::string r = attr(server_first, 'r');
    const auto salt = base64_decode(attr(server_first, 's'));
    REQUIRE(salt);
    const int iterations = std::stoi(attr(server_first, 'i'));
    const std::string c = c_override ? *c_override : base64_encode(gs2 + cb_data);
    const std::string without_proof = "c=" + c + ",r=" + r + final_extra;
    const std::string auth = bare() + "," + server_first + "," + without_proof;
    const Sha256 salted = pbkdf2_sha256(password, *salt, iterations);
    const Sha256 client_key = hmac_sha256(view(salted), "Client Key");
    const Sha256 server_key = hmac_sha256(view(salted), "Server Key");
    const Sha256 stored_key = sha256(view(client_key));
    const Sha256 signature = hmac_sha256(view(stored_key), auth);
    Sha256 proof{};
    for (size_t i = 0; i < proof.size(); ++i) proof[i] = client_key[i] ^ signature[i];
    expected_server_signature = hmac_sha256(view(server_key), auth);
    return without_proof + ",p=" + base64_encode(view(proof));
  }
};

struct ManualOutcome {
  bool ok = false;
  std::string failed_at;
  std::string error;
};

ManualOutcome manual_exchange(ManualClient& c, ScramServer& s, const std::string& mechanism) {
  ManualOutcome o;
  std::string server_first, server_final;
  if (!s.handle_client_first(mechanism, c.first(), server_first, o.error)) {
    o.failed_at = "server-first";
    return o;
  }
  if (!s.handle_client_final(c.final_message(server_first), server_final, o.error)) {
    o.failed_at = "server-final";
    return o;
  }
  CHECK(server_final == "v=" + base64_encode(view(c.expected_server_signature)));
  o.ok = true;
  return o;
}

std::string replace_first(std::string s, const std::string& from, const std::string& to) {
  auto pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  return s.replace(pos, from.size(), to);
}

// Flips one bit of the base64 value of attribute `name` (keeping it valid base64).
std::string flip_bit_in(std::string msg, char name) {
  // The attribute is first or follows a ',' (values never contain ',').
  const std::string key = std::string(1, name) + "=";
  size_t pos = msg.rfind("," + key);
  if (pos != std::string::npos)
    ++pos;
  else if (msg.rfind(key, 0) == 0)
    pos = 0;
  REQUIRE(pos != std::string::npos);
  size_t end = msg.find(',', pos);
  if (end == std::string::npos) end = msg.size();
  auto raw = base64_decode(msg.substr(pos + 2, end - pos - 2));
  REQUIRE(raw);
  REQUIRE(!raw->empty());
  (*raw)[0] = static_cast<char>((*raw)[0] ^ 0x01);
  return msg.substr(0, pos + 2) + base64_encode(*raw) + msg.substr(end);
}

}  // namespace

// ---------------------------------------------------------------------------
// RFC 7677 test vector

TEST_CASE("RFC 7677 vector: verifier from the RFC's password and salt", "[auth][scram][rfc]") {
  auto salt = base64_decode(kRfcSaltB64);
  REQUIRE(salt);
  ScramVerifier v = make_scram_verifier("pencil", *salt, 4096);
  CHECK(format_scram_verifier(v) == kRfcVerifier);
}

TEST_CASE("RFC 7677 vector: server side", "[auth][scram][rfc]") {
  ScramServer server(verifier(kRfcVerifier));
  server.set_nonce_for_testing(kRfcServerNoncePart);
  std::string server_first, server_final, error;
  // The RFC's client sends n=user; PostgreSQL ignores n= and so do we.
  REQUIRE(server.handle_client_first("SCRAM-SHA-256", kRfcClientFirst, server_first, error));
  CHECK(server_first == kRfcServerFirst);
  REQUIRE(server.handle_client_final(kRfcClientFinal, server_final, error));
  CHECK(server_final == kRfcServerFinal);
  CHECK(server.keys().client_key == key_from_b64(kRfcClientKeyB64));
  CHECK(server.keys().server_key == verifier(kRfcVerifier).server_key);
}

TEST_CASE("RFC 7677 vector: server side rejects a one-bit change of the proof",
          "[auth][scram][rfc]") {
  ScramServer server(verifier(kRfcVerifier));
  server.set_nonce_for_testing(kRfcServerNoncePart);
  std::string server_first, server_final, error;
  REQUIRE(server.handle_client_first("SCRAM-SHA-256", kRfcClientFirst, server_first, error));
  CHECK_FALSE(server.handle_client_final(flip_bit_in(kRfcClientFinal, 'p'), server_final, error));
  CHECK(error == kScramAuthFailed);
  CHECK(server_final.empty());
}

TEST_CASE("RFC 7677 vector: client side with the password", "[auth][scram][rfc]") {
  ScramClient client = ScramClient::with_password("pencil");
  client.set_nonce_for_testing(kRfcClientNonce);
  client.set_username_for_testing("user");
  CHECK(client.mechanism() == "SCRAM-SHA-256");
  CHECK(client.client_first() == kRfcClientFirst);
  std::string client_final, error;
  REQUIRE(client.handle_server_first(kRfcServerFirst, client_final, error));
  CHECK(client_final == kRfcClientFinal);
  CHECK(client.handle_server_final(kRfcServerFinal, error));
}

TEST_CASE("RFC 7677 vector: client side with keys (pass-through)", "[auth][scram][rfc]") {
  ScramKeys keys{key_from_b64(kRfcClientKeyB64), verifier(kRfcVerifier).server_key};
  ScramClient client = ScramClient::with_keys(keys);
  client.set_nonce_for_testing(kRfcClientNonce);
  client.set_username_for_testing("user");
  CHECK(client.client_first() == kRfcClientFirst);
  std::string client_final, error;
  REQUIRE(client.handle_server_first(kRfcServerFirst, client_final, error));
  CHECK(client_final == kRfcClientFinal);
  CHECK(client.handle_server_final(kRfcServerFinal, error));
}

TEST_CASE("RFC 7677 vector: client rejects a wrong server signature", "[auth][scram][rfc]") {
  ScramClient client = ScramClient::with_password("pencil");
  client.set_nonce_for_testing(kRfcClientNonce);
  client.set_username_for_testing("user");
  client.client_first();
  std::string client_final, error;
  REQUIRE(client.handle_server_first(kRfcServerFirst, client_final, error));
  CHECK_FALSE(client.handle_server_final(flip_bit_in(kRfcServerFinal, 'v'), error));
  CHECK(error == "incorrect server signature");
}

TEST_CASE("RFC 7677 vector: a wrong password gives a different proof", "[auth][scram][rfc]") {
  ScramClient client = ScramClient::with_password("pencil2");
  client.set_nonce_for_testing(kRfcClientNonce);
  client.set_username_for_testing("user");
  client.client_first();
  std::string client_final, error;
  REQUIRE(client.handle_server_first(kRfcServerFirst, client_final, error));
  CHECK(client_final != kRfcClientFinal);
  CHECK_FALSE(client.handle_server_final(kRfcServerFinal, error));
}

TEST_CASE("client refuses a server that asks for too many iterations", "[auth][scram]") {
  const std::string huge = std::string(kRfcServerFirst).replace(
      std::string(kRfcServerFirst).find("i=4096"), 6, "i=" + std::to_string(kScramMaxServerIterations + 1));
  {
    ScramClient client = ScramClient::with_password("pencil");
    client.set_nonce_for_testing(kRfcClientNonce);
    client.set_username_for_testing("user");
    client.client_first();
    std::string client_final, error;
    CHECK_FALSE(client.handle_server_first(huge, client_final, error));
    CHECK_THAT(error, Catch::Matchers::Contains("SCRAM iterations"));
    CHECK(client_final.empty());
  }
  {
    // With keys (pass-through) nothing is computed: the count does not matter.
    ScramKeys keys{key_from_b64(kRfcClientKeyB64), verifier(kRfcVerifier).server_key};
    ScramClient client = ScramClient::with_keys(keys);
    client.set_nonce_for_testing(kRfcClientNonce);
    client.set_username_for_testing("user");
    client.client_first();
    std::string client_final, error;
    CHECK(client.handle_server_first(huge, client_final, error));
  }
}

TEST_CASE("client over TLS without binding sends y, and the exchange still works", "[auth][scram]") {
  ScramServer server(make_scram_verifier("pw", "0123456789abcdef"));
  ScramClient client = ScramClient::with_password("pw");
  client.set_could_bind();
  const std::string first = client.client_first();
  CHECK(first.rfind("y,,", 0) == 0);
  CHECK(client.mechanism() == "SCRAM-SHA-256");
  std::string server_first, client_final, server_final, error;
  REQUIRE(server.handle_client_first("SCRAM-SHA-256", first, server_first, error));
  REQUIRE(client.handle_server_first(server_first, client_final, error));
  CHECK(client_final.rfind("c=eSws", 0) == 0);  // base64("y,,")
  REQUIRE(server.handle_client_final(client_final, server_final, error));
  CHECK(client.handle_server_final(server_final, error));
  // A server that could bind (PLUS advertised) sees the downgrade.
  ScramServer binding(make_scram_verifier("pw", "0123456789abcdef"));
  binding.set_channel_binding("cbdata");
  ScramClient c2 = ScramClient::with_password("pw");
  c2.set_could_bind();
  CHECK_FALSE(binding.handle_client_first("SCRAM-SHA-256", c2.client_first(), server_first, error));
}

TEST_CASE("test username is escaped as a SASL name", "[auth][scram]") {
  ScramClient client = ScramClient::with_password("x");
  client.set_nonce_for_testing("abc");
  client.set_username_for_testing("a,b=c");
  CHECK(client.client_first() == "n,,n=a=2Cb=3Dc,r=abc");
}

// ---------------------------------------------------------------------------
// Verifiers

TEST_CASE("a verifier written by PostgreSQL", "[auth][scram][verifier]") {
  ScramVerifier v = verifier(kPgVerifierScramPw);
  CHECK(v.iterations == 4096);
  CHECK(v.salt.size() == 16);
  CHECK(format_scram_verifier(v) == kPgVerifierScramPw);
  // make_scram_verifier with PostgreSQL's salt reproduces it byte for byte.
  CHECK(format_scram_verifier(make_scram_verifier("scram_pw", v.salt, 4096)) == kPgVerifierScramPw);
  CHECK(format_scram_verifier(make_scram_verifier("scram_pw2", v.salt, 4096)) != kPgVerifierScramPw);
  ScramVerifier p = verifier(kPgVerifierPencil);
  CHECK(format_scram_verifier(make_scram_verifier("pencil", p.salt, 4096)) == kPgVerifierPencil);

  SECTION("the right password logs in") {
    ScramServer server(v);
    ScramClient client = ScramClient::with_password("scram_pw");
    auto o = exchange(client, server);
    INFO(o.error);
    CHECK(o.ok);
  }
  SECTION("a wrong password does not") {
    ScramServer server(v);
    ScramClient client = ScramClient::with_password("pencil");
    auto o = exchange(client, server);
    CHECK_FALSE(o.ok);
    CHECK(o.failed_at == "server-final");
    CHECK(o.error == kScramAuthFailed);
  }
}

TEST_CASE("make_scram_verifier defaults", "[auth][scram][verifier]") {
  ScramVerifier a = make_scram_verifier("pw");
  ScramVerifier b = make_scram_verifier("pw");
  CHECK(a.iterations == kScramDefaultIterations);
  CHECK(a.salt.size() == 16);
  CHECK(a.salt != b.salt);  // random salt
  CHECK(a.stored_key != b.stored_key);
  auto parsed = parse_scram_verifier(format_scram_verifier(a));
  REQUIRE(parsed);
  CHECK(parsed->iterations == a.iterations);
  CHECK(parsed->salt == a.salt);
  CHECK(parsed->stored_key == a.stored_key);
  CHECK(parsed->server_key == a.server_key);
  CHECK_THROWS_AS(make_scram_verifier("pw", "salt", 0), std::invalid_argument);
  // A verifier is a function of (password, salt, iterations).
  CHECK(format_scram_verifier(make_scram_verifier("pw", "salt", 7)) ==
        format_scram_verifier(make_scram_verifier("pw", "salt", 7)));
  CHECK(format_scram_verifier(make_scram_verifier("pw", "salt", 7)) !=
        format_scram_verifier(make_scram_verifier("pw", "salt", 8)));
}

TEST_CASE("parse_scram_verifier rejects malformed verifiers", "[auth][scram][verifier]") {
  const std::string salt = "eRt/ZI1jeNN8IdH91EON3w==";
  const std::string stored = "Trc0mmFRcWsz+2rSlmXAZ44XOEVq0+ra/NYRiDcgtqs=";
  const std::string server = "rEEHg1NBBrjgtZTWNBBe5SCsyFlP4A9A7Dw4hNkmY4U=";
  auto make = [&](std::string scheme, std::string iter, std::string s, std::string st,
                  std::string sv) { return scheme + "$" + iter + ":" + s + "$" + st + ":" + sv; };
  REQUIRE(parse_scram_verifier(make("SCRAM-SHA-256", "4096", salt, stored, server)));
  CHECK(parse_scram_verifier(make("SCRAM-SHA-256", "1", salt, stored, server)));
  CHECK(parse_scram_verifier(make("SCRAM-SHA-256", "2147483647", salt, stored, server)));
  // An empty salt is legal in PostgreSQL's format.
  auto empty_salt = parse_scram_verifier(make("SCRAM-SHA-256", "4096", "", stored, server));
  REQUIRE(empty_salt);
  CHECK(empty_salt->salt.empty());

  const std::string stored31 = base64_encode(std::string(31, 'x'));
  const std::string stored33 = base64_encode(std::string(33, 'x'));
  const std::vector<std::string> bad = {
      "",
      "SCRAM-SHA-256",
      "SCRAM-SHA-256$",
      "md53175bce1d3201d16594cebf9d7eb3f9d",
      "plain password",
      make("SCRAM-SHA-1", "4096", salt, stored, server),
      make("scram-sha-256", "4096", salt, stored, server),
      make("SCRAM-SHA-256-PLUS", "4096", salt, stored, server),
      make("SCRAM-SHA-256", "0", salt, stored, server),
      make("SCRAM-SHA-256", "-1", salt, stored, server),
      make("SCRAM-SHA-256", "+4096", salt, stored, server),
      make("SCRAM-SHA-256", " 4096", salt, stored, server),
      make("SCRAM-SHA-256", "4096 ", salt, stored, server),
      make("SCRAM-SHA-256", "", salt, stored, server),
      make("SCRAM-SHA-256", "abc", salt, stored, server),
      make("SCRAM-SHA-256", "4096x", salt, stored, server),
      make("SCRAM-SHA-256", "0x1000", salt, stored, server),
      make("SCRAM-SHA-256", "2147483648", salt, stored, server),
      make("SCRAM-SHA-256", "99999999999999999999", salt, stored, server),
      make("SCRAM-SHA-256", "4096", "eRt/ZI1jeNN8IdH91EON3w=", stored, server),
      make("SCRAM-SHA-256", "4096", "eRt/ZI1jeNN8IdH91EON3w!=", stored, server),
      make("SCRAM-SHA-256", "4096", salt, stored31, server),
      make("SCRAM-SHA-256", "4096", salt, stored33, server),
      make("SCRAM-SHA-256", "4096", salt, stored, stored31),
      make("SCRAM-SHA-256", "4096", salt, stored, stored33),
      make("SCRAM-SHA-256", "4096", salt, "", server),
      make("SCRAM-SHA-256", "4096", salt, stored, ""),
      make("SCRAM-SHA-256", "4096", salt, stored, server) + "\n",
      make("SCRAM-SHA-256", "4096", salt, stored, server) + ":",
      make("SCRAM-SHA-256", "4096", salt, stored, server) + "$",
      make("SCRAM-SHA-256", "4096", salt, stored, server + ":" + server),
      " " + make("SCRAM-SHA-256", "4096", salt, stored, server),
      "SCRAM-SHA-256$4096:" + salt + "$" + stored,       // no server key
      "SCRAM-SHA-256$4096:" + salt + ":" + stored + ":" + server,  // ':' for '$'
      "SCRAM-SHA-256$4096$" + salt + "$" + stored + ":" + server,  // '$' for ':'
  };
  for (const auto& text : bad) {
    INFO("verifier: " << text);
    CHECK_FALSE(parse_scram_verifier(text).has_value());
  }
}

TEST_CASE("scram_prepare_password is the identity for ASCII", "[auth][scram]") {
  CHECK(scram_prepare_password("pencil") == "pencil");
  CHECK(scram_prepare_password("") == "");
  CHECK(scram_prepare_password("a b\tc\x01") == "a b\tc\x01");
  // Documented limitation: non-ASCII is used as raw bytes.
  CHECK(scram_prepare_password("p\xC3\xA4ss") == "p\xC3\xA4ss");
}

// ---------------------------------------------------------------------------
// Client <-> server

TEST_CASE("password client against verifier server", "[auth][scram][exchange]") {
  ScramVerifier v = fast_verifier("secret");
  ScramServer server(v);
  ScramClient client = ScramClient::with_password("secret");
  auto o = exchange(client, server);
  INFO(o.error);
  REQUIRE(o.ok);

  // What PostgreSQL and libpq put on the wire.
  CHECK(o.client_first.rfind("n,,n=,r=", 0) == 0);
  const std::string client_nonce = o.client_first.substr(8);
  CHECK(client_nonce.size() == 24);  // 18 random bytes, base64
  REQUIRE(base64_decode(client_nonce));
  CHECK(base64_decode(client_nonce)->size() == 18);
  const std::string expected_prefix = "r=" + client_nonce;
  REQUIRE(o.server_first.rfind(expected_prefix, 0) == 0);
  const std::string server_nonce = o.server_first.substr(expected_prefix.size(), 24);
  REQUIRE(base64_decode(server_nonce));
  CHECK(base64_decode(server_nonce)->size() == 18);
  CHECK(o.server_first == "r=" + client_nonce + server_nonce + ",s=" + base64_encode(v.salt) + ",i=16");
  CHECK(o.client_final.rfind("c=biws,r=" + client_nonce + server_nonce + ",p=", 0) == 0);
  CHECK(o.server_final.rfind("v=", 0) == 0);
  CHECK(o.server_final.size() == 2 + 44);

  // Keys recovered by the server are the real ones.
  const Sha256 salted = pbkdf2_sha256("secret", v.salt, 16);
  CHECK(server.keys().client_key == hmac_sha256(view(salted), "Client Key"));
  CHECK(server.keys().server_key == hmac_sha256(view(salted), "Server Key"));
  CHECK(server.keys().server_key == v.server_key);
}

TEST_CASE("nonces differ between exchanges", "[auth][scram][exchange]") {
  ScramVerifier v = fast_verifier("secret");
  ScramServer s1(v), s2(v);
  ScramClient c1 = ScramClient::with_password("secret"), c2 = ScramClient::with_password("secret");
  auto o1 = exchange(c1, s1);
  auto o2 = exchange(c2, s2);
  REQUIRE(o1.ok);
  REQUIRE(o2.ok);
  CHECK(o1.client_first != o2.client_first);
  CHECK(o1.server_first != o2.server_first);
  CHECK(o1.client_final != o2.client_final);
}

TEST_CASE("wrong password fails at the server's final step", "[auth][scram][exchange]") {
  ScramServer server(fast_verifier("secret"));
  ScramClient client = ScramClient::with_password("Secret");
  auto o = exchange(client, server);
  CHECK_FALSE(o.ok);
  CHECK(o.failed_at == "server-final");
  CHECK(o.error == kScramAuthFailed);
}

TEST_CASE("empty password against a verifier of the empty password", "[auth][scram][exchange]") {
  ScramServer server(fast_verifier(""));
  ScramClient client = ScramClient::with_password("");
  CHECK(exchange(client, server).ok);
  ScramServer server2(fast_verifier(""));
  ScramClient other = ScramClient::with_password("x");
  CHECK_FALSE(exchange(other, server2).ok);
}

TEST_CASE("pass-through: keys from one exchange log in to another server",
          "[auth][scram][exchange]") {
  ScramVerifier v = fast_verifier("secret");
  ScramServer front(v);
  ScramClient app = ScramClient::with_password("secret");
  REQUIRE(exchange(app, front).ok);
  const ScramKeys keys = front.keys();

  SECTION("same verifier: success, including the server signature check") {
    ScramServer backend(v);
    ScramClient pgmux = ScramClient::with_keys(keys);
    auto o = exchange(pgmux, backend);
    INFO(o.error);
    CHECK(o.ok);
    CHECK(backend.keys().client_key == keys.client_key);
  }
  SECTION("keys work repeatedly") {
    for (int i = 0; i < 3; ++i) {
      ScramServer backend(v);
      ScramClient pgmux = ScramClient::with_keys(keys);
      CHECK(exchange(pgmux, backend).ok);
    }
  }
  SECTION("same password, different salt: the keys do not fit") {
    ScramServer backend(fast_verifier("secret", "another salt...."));
    ScramClient pgmux = ScramClient::with_keys(keys);
    auto o = exchange(pgmux, backend);
    CHECK_FALSE(o.ok);
    CHECK(o.failed_at == "server-final");
  }
  SECTION("a wrong ServerKey makes the client reject the server") {
    ScramKeys bad = keys;
    bad.server_key[0] ^= 1;
    ScramServer backend(v);
    ScramClient pgmux = ScramClient::with_keys(bad);
    auto o = exchange(pgmux, backend);
    CHECK_FALSE(o.ok);
    CHECK(o.failed_at == "client-final");
    CHECK(o.error == "incorrect server signature");
  }
  SECTION("a wrong ClientKey is rejected by the server") {
    ScramKeys bad = keys;
    bad.client_key[31] ^= 0x80;
    ScramServer backend(v);
    ScramClient pgmux = ScramClient::with_keys(bad);
    auto o = exchange(pgmux, backend);
    CHECK_FALSE(o.ok);
    CHECK(o.failed_at == "server-final");
    CHECK(o.error == kScramAuthFailed);
  }
}

TEST_CASE("a client that cannot verify the server (fake server) is rejected",
          "[auth][scram][exchange]") {
  // A server that does not know the verifier cannot produce ServerSignature.
  ScramServer real(fast_verifier("secret"));
  ScramClient client = ScramClient::with_password("secret");
  Tamper t;
  t.server_final = [](std::string) {
    return "v=" + base64_encode(std::string(32, 'z'));
  };
  auto o = exchange(client, real, t);
  CHECK_FALSE(o.ok);
  CHECK(o.failed_at == "client-final");
}

TEST_CASE("independent client against ScramServer", "[auth][scram][exchange]") {
  SECTION("n= empty (libpq)") {
    ScramServer server(fast_verifier("pw"));
    ManualClient c{"pw"};
    auto o = manual_exchange(c, server, "SCRAM-SHA-256");
    INFO(o.error);
    CHECK(o.ok);
  }
  SECTION("n=<any name> is accepted and ignored") {
    ScramServer server(fast_verifier("pw"));
    ManualClient c{"pw"};
    c.user = "somebody=2Celse";
    CHECK(manual_exchange(c, server, "SCRAM-SHA-256").ok);
  }
  SECTION("optional extensions are ignored (RFC 5802, PostgreSQL)") {
    ScramServer server(fast_verifier("pw"));
    ManualClient c{"pw"};
    c.first_extra = ",x=first-ext,Y=";
    c.final_extra = ",z=final=ext";
    auto o = manual_exchange(c, server, "SCRAM-SHA-256");
    INFO(o.error);
    CHECK(o.ok);
  }
  SECTION("wrong password") {
    ScramServer server(fast_verifier("pw"));
    ManualClient c{"pW"};
    auto o = manual_exchange(c, server, "SCRAM-SHA-256");
    CHECK_FALSE(o.ok);
    CHECK(o.error == kScramAuthFailed);
  }
}

// ---------------------------------------------------------------------------
// Mock exchanges

TEST_CASE("mock server always fails, like a wrong password", "[auth][scram][mock]") {
  ScramServer real(fast_verifier("secret"));
  ScramClient wrong = ScramClient::with_password("wrong");
  auto real_wrong = exchange(wrong, real);
  REQUIRE_FALSE(real_wrong.ok);

  for (const char* pw : {"secret", "wrong", ""}) {
    INFO("password: " << pw);
    ScramServer mock = ScramServer::mock("nobody");
    ScramClient client = ScramClient::with_password(pw);
    auto o = exchange(client, mock);
    CHECK_FALSE(o.ok);
    CHECK(o.failed_at == real_wrong.failed_at);
    CHECK(o.error == real_wrong.error);
    CHECK(o.error == kScramAuthFailed);
  }
}

TEST_CASE("mock server fails even for a client that knows its keys", "[auth][scram][mock]") {
  // A client cannot know the mock's keys, but even a proof that would verify
  // against them must not log in.
  ScramServer mock = ScramServer::mock("nobody");
  ScramClient client = ScramClient::with_password("x");
  auto o = exchange(client, mock);
  CHECK_FALSE(o.ok);
  CHECK(mock.keys().client_key == Sha256{});
}

TEST_CASE("mock server looks like a real one", "[auth][scram][mock]") {
  auto server_first_of = [](ScramServer s) {
    std::string sf, err;
    REQUIRE(s.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abcdef", sf, err));
    return sf;
  };
  auto salt_of = [](const std::string& sf) {
    auto s = sf.find(",s=");
    auto i = sf.find(",i=");
    return sf.substr(s + 3, i - s - 3);
  };
  const std::string a1 = server_first_of(ScramServer::mock("alice"));
  const std::string a2 = server_first_of(ScramServer::mock("alice"));
  const std::string b = server_first_of(ScramServer::mock("bob"));
  // Deterministic per user (a second try must not reveal a random salt),
  // different between users, 16 bytes, default iterations.
  CHECK(salt_of(a1) == salt_of(a2));
  CHECK(salt_of(a1) != salt_of(b));
  REQUIRE(base64_decode(salt_of(a1)));
  CHECK(base64_decode(salt_of(a1))->size() == 16);
  CHECK(a1.substr(a1.find(",i=")) == ",i=4096");
  // Fresh nonce each time.
  CHECK(a1 != a2);
  // Same shape as a real server's first message.
  const std::string real = server_first_of(ScramServer(make_scram_verifier("pw", "0123456789abcdef")));
  CHECK(real.size() == a1.size());
  // A verifier pgmux makes from a plain password for alice has the salt
  // alice's mock would have (derived_salt), so neither tells the other.
  const std::string made = server_first_of(ScramServer(make_scram_verifier("pw", derived_salt("alice"))));
  CHECK(salt_of(made) == salt_of(a1));
  CHECK(derived_salt("alice") == derived_salt("alice"));
  CHECK(derived_salt("alice") != derived_salt("bob"));
  // The mock takes the configured iteration count.
  const std::string many = server_first_of(ScramServer::mock("alice", 10007));
  CHECK(many.substr(many.find(",i=")) == ",i=10007");
}

TEST_CASE("mock server reports malformed messages like a real one", "[auth][scram][mock]") {
  ScramServer real(fast_verifier("pw"));
  ScramServer mock = ScramServer::mock("nobody");
  std::string sf1, sf2, e1, e2;
  CHECK_FALSE(real.handle_client_first("SCRAM-SHA-256", "n,,m=x,n=,r=a", sf1, e1));
  CHECK_FALSE(mock.handle_client_first("SCRAM-SHA-256", "n,,m=x,n=,r=a", sf2, e2));
  CHECK(e1 == e2);
  CHECK(e1 == "client requires an unsupported SCRAM extension (m=)");
}

TEST_CASE("a verifier with iterations < 1 never authenticates", "[auth][scram][mock]") {
  // Keys made with the iteration count the server falls back to (4096), so
  // the proof itself is right and only the doomed flag can fail it.
  ScramVerifier v = make_scram_verifier("pw", "0123456789abcdef", kScramDefaultIterations);
  v.iterations = 0;
  ScramServer server(v);
  ScramClient client = ScramClient::with_password("pw");
  auto o = exchange(client, server);
  CHECK_FALSE(o.ok);
  CHECK(o.error == kScramAuthFailed);
  CHECK(o.server_first.find(",i=4096") != std::string::npos);
}

// ---------------------------------------------------------------------------
// Server: malformed client-first-message

TEST_CASE("server rejects malformed client-first-messages", "[auth][scram][server]") {
  const std::vector<std::string> bad = {
      "",
      std::string("n,,n=,r=abc\0", 12),
      std::string("n,,n=a\0b,r=abc", 14),  // NUL in the (ignored) user name
      "x,,n=,r=abc",             // unknown flag
      "n",                       // truncated
      "n,",                      // truncated
      "n,,",                     // no bare message
      "nn,,n=,r=abc",            // junk after the flag
      "n,n=,r=abc",              // missing authzid slot
      "n,a=bob,n=,r=abc",        // authzid: unsupported (PostgreSQL)
      "n,,m=ext,n=,r=abc",       // mandatory extension
      "n,,r=abc",                // missing n=
      "n,,n=",                   // missing r=
      "n,,n=,r=",                // empty nonce
      "n,,n=,r=a b",             // space in nonce
      "n,,n=,r=a\x7f",           // DEL in nonce
      "n,,n=,r=a\xc3\xa9",       // non-ASCII in nonce
      "n,,n=,r=abc,",            // trailing comma
      "n,,n=,r=abc,1=x",         // extension name not ALPHA
      "n,,n=,r=abc,x",           // extension without '='
      "n,,n=,r=abc,,x=1",        // empty attribute
      "n,,n,r=abc",              // n without '='
      "n,,r=abc,n=",             // wrong order
      "n,,N=,r=abc",             // attribute names are case-sensitive
      "p=tls-server-end-point,,n=,r=abc",  // binding data with SCRAM-SHA-256
  };
  for (const auto& msg : bad) {
    INFO("client-first: " << msg);
    ScramServer server(fast_verifier("pw"));
    std::string sf, error;
    CHECK_FALSE(server.handle_client_first("SCRAM-SHA-256", msg, sf, error));
    CHECK_FALSE(error.empty());
    CHECK(sf.empty());
  }
}

TEST_CASE("server error texts for unsupported SCRAM features", "[auth][scram][server]") {
  auto error_for = [](const std::string& msg) {
    ScramServer server(fast_verifier("pw"));
    std::string sf, error;
    CHECK_FALSE(server.handle_client_first("SCRAM-SHA-256", msg, sf, error));
    return error;
  };
  CHECK(error_for("n,a=bob,n=,r=abc") ==
        "client uses SCRAM authorization identity (a=), but it is not supported");
  CHECK(error_for("n,,m=ext,n=,r=abc") == "client requires an unsupported SCRAM extension (m=)");
  CHECK(error_for(std::string("n,,n=a\0b,r=abc", 14)) ==
        "malformed SCRAM client-first-message: contains a NUL byte");
  CHECK(error_for("n,,n=,r=a b") == "non-printable characters in SCRAM nonce");
}

TEST_CASE("server accepts well-formed variants of client-first", "[auth][scram][server]") {
  for (const char* msg : {"n,,n=,r=abc", "n,,n=user,r=abc", "n,,n=,r=abc,x=1",
                          "n,,n=,r=!\"#$%&'()*+-./:;<=>?@[\\]^_`{|}~", "y,,n=,r=abc"}) {
    INFO("client-first: " << msg);
    ScramServer server(fast_verifier("pw"));
    std::string sf, error;
    CHECK(server.handle_client_first("SCRAM-SHA-256", msg, sf, error));
    INFO(error);
  }
}

TEST_CASE("server rejects unknown mechanisms", "[auth][scram][server]") {
  for (const char* mech : {"", "SCRAM-SHA-1", "scram-sha-256", "SCRAM-SHA-256-PLUS", "PLAIN"}) {
    INFO("mechanism: " << mech);
    ScramServer server(fast_verifier("pw"));  // no channel binding data
    std::string sf, error;
    CHECK_FALSE(server.handle_client_first(mech, "n,,n=,r=abc", sf, error));
  }
}

TEST_CASE("server enforces the order of the exchange", "[auth][scram][server]") {
  std::string out, error;
  SECTION("final before first") {
    ScramServer server(fast_verifier("pw"));
    CHECK_FALSE(server.handle_client_final("c=biws,r=abc,p=xxxx", out, error));
    CHECK_FALSE(server.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abc", out, error));
  }
  SECTION("first twice") {
    ScramServer server(fast_verifier("pw"));
    CHECK(server.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abc", out, error));
    CHECK_FALSE(server.handle_client_first("SCRAM-SHA-256", "n,,n=,r=abc", out, error));
  }
  SECTION("one final attempt only, even after a failure") {
    ScramServer server(fast_verifier("pw"));
    ManualClient c{"pw"};
    std::string sf;
    REQUIRE(server.handle_client_first("SCRAM-SHA-256", c.first(), sf, error));
    const std::string good = c.final_message(sf);
    CHECK_FALSE(server.handle_client_final(flip_bit_in(good, 'p'), out, error));
    CHECK_FALSE(server.handle_client_final(good, out, error));
  }
  SECTION("no replay after success") {
    ScramServer server(fast_verifier("pw"));
    ManualClient c{"pw"};
    std::string sf;
    REQUIRE(server.handle_client_first("SCRAM-SHA-256", c.first(), sf, error));
    const std::string good = c.final_message(sf);
    CHECK(server.handle_client_final(good, out, error));
    CHECK_FALSE(server.handle_client_final(good, out, error));
  }
}

// ---------------------------------------------------------------------------
// Server: tampered client-final-message

TEST_CASE("server rejects tampered client-final-messages", "[auth][scram][server]") {
  struct Case {
    const char* name;
    std::function<std::string(const std::string&)> f;
  };
  const std::vector<Case> cases = {
      {"c= of the y flag", [](const std::string& m) { return replace_first(m, "c=biws", "c=eSws"); }},
      {"c= of p with no data",
       [](const std::string& m) {
         return replace_first(m, "c=biws", "c=" + base64_encode("p=tls-server-end-point,,"));
       }},
      {"c= not base64", [](const std::string& m) { return replace_first(m, "c=biws", "c=biw"); }},
      {"c= empty", [](const std::string& m) { return replace_first(m, "c=biws", "c="); }},
      {"c= missing", [](const std::string& m) { return replace_first(m, "c=biws,", ""); }},
      {"nonce shortened",
       [](const std::string& m) {
         std::string s = m;
         return s.erase(s.find(",p=") - 1, 1);
       }},
      {"nonce extended", [](const std::string& m) { return replace_first(m, ",p=", "X,p="); }},
      {"nonce changed",
       [](const std::string& m) {
         std::string s = m;
         size_t i = s.find(",p=") - 1;
         s[i] = s[i] == 'A' ? 'B' : 'A';
         return s;
       }},
      {"client nonce only",
       [](const std::string& m) {
         size_t r = m.find(",r=") + 3;
         return m.substr(0, r) + "manual+Nonce/0123456789" + m.substr(m.find(",p="));
       }},
      {"r= missing",
       [](const std::string& m) {
         size_t r = m.find(",r=");
         return m.substr(0, r) + m.substr(m.find(",p="));
       }},
      {"proof bit flipped", [](const std::string& m) { return flip_bit_in(m, 'p'); }},
      {"proof 31 bytes",
       [](const std::string& m) {
         return m.substr(0, m.find(",p=")) + ",p=" + base64_encode(std::string(31, 'a'));
       }},
      {"proof 33 bytes",
       [](const std::string& m) {
         return m.substr(0, m.find(",p=")) + ",p=" + base64_encode(std::string(33, 'a'));
       }},
      {"proof not base64", [](const std::string& m) { return m.substr(0, m.size() - 1) + "!"; }},
      {"proof missing", [](const std::string& m) { return m.substr(0, m.find(",p=")); }},
      {"proof empty", [](const std::string& m) { return m.substr(0, m.find(",p=")) + ",p="; }},
      {"garbage after proof", [](const std::string& m) { return m + ",x=1"; }},
      {"trailing comma", [](const std::string& m) { return m + ","; }},
      {"NUL", [](const std::string& m) { return m + std::string(1, '\0'); }},
      {"empty", [](const std::string&) { return std::string(); }},
      {"r before c",
       [](const std::string& m) {
         size_t r = m.find(",r=");
         size_t p = m.find(",p=");
         return m.substr(r + 1, p - r - 1) + "," + m.substr(0, r) + m.substr(p);
       }},
      {"extension inserted (changes the signed message)",
       [](const std::string& m) { return replace_first(m, ",p=", ",x=1,p="); }},
  };
  for (const auto& c : cases) {
    INFO("case: " << c.name);
    ScramServer server(fast_verifier("pw"));
    ManualClient mc{"pw"};
    std::string sf, out, error;
    REQUIRE(server.handle_client_first("SCRAM-SHA-256", mc.first(), sf, error));
    const std::string good = mc.final_message(sf);
    const std::string tampered = c.f(good);
    REQUIRE(tampered != good);
    CHECK_FALSE(server.handle_client_final(tampered, out, error));
    CHECK_FALSE(error.empty());
    CHECK(out.empty());
    CHECK(server.keys().client_key == Sha256{});
  }
}

TEST_CASE("server error texts distinguish protocol errors from a wrong password",
          "[auth][scram][server]") {
  ScramServer server(fast_verifier("pw"));
  ManualClient mc{"pw"};
  std::string sf, out, error;
  REQUIRE(server.handle_client_first("SCRAM-SHA-256", mc.first(), sf, error));
  CHECK_FALSE(server.handle_client_final(replace_first(mc.final_message(sf), ",p=", "X,p="), out, error));
  CHECK(error != kScramAuthFailed);
  CHECK(error.find("nonce") != std::string::npos);
}

TEST_CASE("server: tampering with the client-first after the fact breaks the proof",
          "[auth][scram][server]") {
  // The server signs what it received; a client that signed something else fails.
  ScramServer server(fast_verifier("pw"));
  ScramClient client = ScramClient::with_password("pw");
  Tamper t;
  t.client_first = [](std::string m) { return replace_first(m, "n=,", "n=mallory,"); };
  auto o = exchange(client, server, t);
  CHECK_FALSE(o.ok);
  CHECK(o.failed_at == "server-final");
  CHECK(o.error == kScramAuthFailed);
}

TEST_CASE("server: tampering with the server-first breaks the proof", "[auth][scram][server]") {
  // E.g. a man in the middle lowering the iteration count.
  ScramServer server(fast_verifier("pw"));
  ScramClient client = ScramClient::with_password("pw");
  Tamper t;
  t.server_first = [](std::string m) { return replace_first(m, ",i=16", ",i=15"); };
  auto o = exchange(client, server, t);
  CHECK_FALSE(o.ok);
  CHECK(o.failed_at == "server-final");
}

// ---------------------------------------------------------------------------
// Client: malformed server messages

TEST_CASE("client rejects malformed server-first-messages", "[auth][scram][client]") {
  const std::string cn = "clientNonce";
  const std::string salt = base64_encode("saltsalt");
  const std::vector<std::string> bad = {
      "",
      "r=" + cn + "SRV,s=" + salt + ",i=4096" + std::string(1, '\0'),
      "r=other" + cn + ",s=" + salt + ",i=4096",        // does not start with our nonce
      "r=" + cn + ",s=" + salt + ",i=4096",             // server added nothing
      "r=clientNonc,s=" + salt + ",i=4096",             // shorter than ours
      "r=" + cn + "S R,s=" + salt + ",i=4096",          // non-printable server part
      "r=" + cn + "SRV,s=" + salt + "x,i=4096",         // bad base64 salt
      "r=" + cn + "SRV,s=" + salt + ",i=0",
      "r=" + cn + "SRV,s=" + salt + ",i=-1",
      "r=" + cn + "SRV,s=" + salt + ",i=abc",
      "r=" + cn + "SRV,s=" + salt + ",i=4096x",
      "r=" + cn + "SRV,s=" + salt + ",i=",
      "r=" + cn + "SRV,s=" + salt + ",i=99999999999",
      "r=" + cn + "SRV,s=" + salt,                      // missing i=
      "r=" + cn + "SRV,i=4096",                         // missing s=
      "s=" + salt + ",r=" + cn + "SRV,i=4096",          // wrong order
      "m=ext,r=" + cn + "SRV,s=" + salt + ",i=4096",    // mandatory extension
      "r=" + cn + "SRV,s=" + salt + ",i=4096,",         // trailing comma
      "r=" + cn + "SRV,s=" + salt + ",i=4096,garbage",  // not an attribute
      "e=other-error",
  };
  for (const auto& msg : bad) {
    INFO("server-first: " << msg);
    ScramClient client = ScramClient::with_password("pw");
    client.set_nonce_for_testing(cn);
    client.client_first();
    std::string cf, error;
    CHECK_FALSE(client.handle_server_first(msg, cf, error));
    CHECK_FALSE(error.empty());
    CHECK(cf.empty());
  }
  SECTION("a mandatory extension is named in the error") {
    ScramClient client = ScramClient::with_password("pw");
    client.set_nonce_for_testing(cn);
    client.client_first();
    std::string cf, error;
    CHECK_FALSE(client.handle_server_first("m=ext,r=" + cn + "SRV,s=" + salt + ",i=1", cf, error));
    CHECK(error == "server requires an unsupported SCRAM extension (m=)");
  }
  SECTION("leading zeros in the iteration count are a number (as strtol reads them)") {
    ScramClient client = ScramClient::with_password("pw");
    client.set_nonce_for_testing(cn);
    client.client_first();
    std::string cf, error;
    CHECK(client.handle_server_first("r=" + cn + "SRV,s=" + salt + ",i=0000000000001", cf, error));
  }
  SECTION("an optional extension after i= is accepted") {
    ScramClient client = ScramClient::with_password("pw");
    client.set_nonce_for_testing(cn);
    client.client_first();
    std::string cf, error;
    CHECK(client.handle_server_first("r=" + cn + "SRV,s=" + salt + ",i=1,x=ext", cf, error));
  }
  SECTION("an empty salt is accepted (PostgreSQL allows one in a verifier)") {
    ScramClient client = ScramClient::with_password("pw");
    client.set_nonce_for_testing(cn);
    client.client_first();
    std::string cf, error;
    CHECK(client.handle_server_first("r=" + cn + "SRV,s=,i=1", cf, error));
  }
}

TEST_CASE("client rejects malformed or failing server-final-messages", "[auth][scram][client]") {
  auto run = [](const std::function<std::string(std::string)>& f, std::string& error) {
    ScramServer server(fast_verifier("pw"));
    ScramClient client = ScramClient::with_password("pw");
    Tamper t;
    t.server_final = f;
    auto o = exchange(client, server, t);
    error = o.error;
    return o;
  };
  std::string error;
  {
    auto o = run([](std::string) { return std::string("e=invalid-proof"); }, error);
    CHECK_FALSE(o.ok);
    CHECK(o.failed_at == "client-final");
    CHECK(error == "error received from server in SCRAM exchange: invalid-proof");
  }
  {
    auto o = run([](std::string) { return std::string("e=bad\x01\xff"); }, error);
    CHECK_FALSE(o.ok);
    CHECK(error == "error received from server in SCRAM exchange: bad??");
  }
  const std::vector<std::function<std::string(std::string)>> bad = {
      [](std::string m) { return flip_bit_in(m, 'v'); },
      [](std::string) { return std::string("v=") + base64_encode(std::string(31, 'a')); },
      [](std::string) { return std::string("v=") + base64_encode(std::string(33, 'a')); },
      [](std::string m) { return m.substr(0, m.size() - 2) + "!="; },
      [](std::string) { return std::string("v="); },
      [](std::string) { return std::string(); },
      [](std::string m) { return m + ","; },
      [](std::string m) { return m + ",1=x"; },
      [](std::string m) { return "x" + m; },
      [](std::string m) { return m + std::string(1, '\0'); },
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    INFO("case " << i);
    auto o = run(bad[i], error);
    CHECK_FALSE(o.ok);
    CHECK(o.failed_at == "client-final");
    CHECK_FALSE(error.empty());
  }
  {
    auto o = run([](std::string m) { return m + ",x=ext"; }, error);
    CHECK(o.ok);  // optional extension after v=
  }
}

TEST_CASE("client enforces the order of the exchange", "[auth][scram][client]") {
  std::string cf, error;
  SECTION("server-first before client-first") {
    ScramClient client = ScramClient::with_password("pw");
    CHECK_FALSE(client.handle_server_first("r=abcSRV,s=c2FsdA==,i=1", cf, error));
  }
  SECTION("server-final before server-first") {
    ScramClient client = ScramClient::with_password("pw");
    client.client_first();
    CHECK_FALSE(client.handle_server_final("v=" + base64_encode(std::string(32, 'a')), error));
  }
  SECTION("server-first twice") {
    ScramClient client = ScramClient::with_password("pw");
    client.set_nonce_for_testing("abc");
    client.client_first();
    CHECK(client.handle_server_first("r=abcSRV,s=c2FsdA==,i=1", cf, error));
    CHECK_FALSE(client.handle_server_first("r=abcSRV,s=c2FsdA==,i=1", cf, error));
  }
  SECTION("a successful server-final cannot be replayed") {
    ScramServer server(fast_verifier("pw"));
    ScramClient client = ScramClient::with_password("pw");
    auto o = exchange(client, server);
    REQUIRE(o.ok);
    CHECK_FALSE(client.handle_server_final(o.server_final, error));
  }
}

// ---------------------------------------------------------------------------
// Channel binding

TEST_CASE("channel binding matrix (independent client)", "[auth][scram][cbind]") {
  const std::string cert_hash(view(sha256("server certificate")));
  const std::string other_hash(view(sha256("another certificate")));
  struct Row {
    const char* name;
    bool server_has_cb;
    const char* mechanism;
    std::string gs2;
    std::string client_cb;  // cb data the client binds to
    std::optional<std::string> c_override;
    bool ok;
    const char* failed_at;
  };
  const std::string p = "p=tls-server-end-point,,";
  const std::vector<Row> rows = {
      // Server without TLS channel binding.
      {"n, no cb", false, "SCRAM-SHA-256", "n,,", "", {}, true, ""},
      {"y, no cb (client could bind, server cannot)", false, "SCRAM-SHA-256", "y,,", "", {}, true, ""},
      {"y with c=biws", false, "SCRAM-SHA-256", "y,,", "", base64_encode("n,,"), false, "server-final"},
      {"n with c=eSws", false, "SCRAM-SHA-256", "n,,", "", base64_encode("y,,"), false, "server-final"},
      {"p without PLUS", false, "SCRAM-SHA-256", p, cert_hash, {}, false, "server-first"},
      {"PLUS without cb data on our side", false, "SCRAM-SHA-256-PLUS", p, cert_hash, {}, false,
       "server-first"},
      // Server with channel binding data.
      {"n with cb (client does not support binding)", true, "SCRAM-SHA-256", "n,,", "", {}, true, ""},
      {"y with cb: downgrade", true, "SCRAM-SHA-256", "y,,", "", {}, false, "server-first"},
      {"p + PLUS, right data", true, "SCRAM-SHA-256-PLUS", p, cert_hash, {}, true, ""},
      {"p + PLUS, wrong data", true, "SCRAM-SHA-256-PLUS", p, other_hash, {}, false, "server-final"},
      {"p + PLUS, no data", true, "SCRAM-SHA-256-PLUS", p, "", {}, false, "server-final"},
      {"p + PLUS, c= of n", true, "SCRAM-SHA-256-PLUS", p, cert_hash, base64_encode("n,,"), false,
       "server-final"},
      {"p + PLUS, data without header", true, "SCRAM-SHA-256-PLUS", p, cert_hash,
       base64_encode(cert_hash), false, "server-final"},
      {"p without PLUS", true, "SCRAM-SHA-256", p, cert_hash, {}, false, "server-first"},
      {"n with PLUS", true, "SCRAM-SHA-256-PLUS", "n,,", "", {}, false, "server-first"},
      {"y with PLUS", true, "SCRAM-SHA-256-PLUS", "y,,", "", {}, false, "server-first"},
      {"p=tls-unique", true, "SCRAM-SHA-256-PLUS", "p=tls-unique,,", cert_hash, {}, false,
       "server-first"},
      {"p= empty type", true, "SCRAM-SHA-256-PLUS", "p=,,", cert_hash, {}, false, "server-first"},
      {"p with authzid", true, "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,a=x,", cert_hash, {},
       false, "server-first"},
  };
  for (const auto& row : rows) {
    INFO("row: " << row.name);
    ScramServer server(fast_verifier("pw"));
    if (row.server_has_cb) server.set_channel_binding(cert_hash);
    ManualClient c{"pw"};
    c.gs2 = row.gs2;
    c.cb_data = row.client_cb;
    c.c_override = row.c_override;
    auto o = manual_exchange(c, server, row.mechanism);
    INFO("error: " << o.error);
    CHECK(o.ok == row.ok);
    CHECK(o.failed_at == row.failed_at);
  }
}

TEST_CASE("channel binding with ScramClient", "[auth][scram][cbind]") {
  const std::string cert_hash(view(sha256("server certificate")));
  SECTION("client binds, server has the same data") {
    ScramServer server(fast_verifier("pw"));
    server.set_channel_binding(cert_hash);
    ScramClient client = ScramClient::with_password("pw");
    client.set_channel_binding(cert_hash);
    CHECK(client.mechanism() == "SCRAM-SHA-256-PLUS");
    auto o = exchange(client, server);
    INFO(o.error);
    CHECK(o.ok);
    CHECK(o.client_first.rfind("p=tls-server-end-point,,n=,r=", 0) == 0);
    CHECK(o.client_final.rfind("c=" + base64_encode("p=tls-server-end-point,," + cert_hash) + ",r=", 0) == 0);
  }
  SECTION("client binds to another certificate (man in the middle)") {
    ScramServer server(fast_verifier("pw"));
    server.set_channel_binding(cert_hash);
    ScramClient client = ScramClient::with_password("pw");
    client.set_channel_binding(std::string(view(sha256("mitm certificate"))));
    auto o = exchange(client, server);
    CHECK_FALSE(o.ok);
    CHECK(o.failed_at == "server-final");
    CHECK(o.error == "SCRAM channel binding check failed");
  }
  SECTION("client binds, server cannot") {
    ScramServer server(fast_verifier("pw"));
    ScramClient client = ScramClient::with_password("pw");
    client.set_channel_binding(cert_hash);
    auto o = exchange(client, server);
    CHECK_FALSE(o.ok);
    CHECK(o.failed_at == "server-first");
  }
  SECTION("client without binding, server with: allowed (flag n)") {
    ScramServer server(fast_verifier("pw"));
    server.set_channel_binding(cert_hash);
    ScramClient client = ScramClient::with_password("pw");
    auto o = exchange(client, server);
    CHECK(o.ok);
  }
  SECTION("pass-through keys with channel binding") {
    ScramServer front(fast_verifier("pw"));
    ScramClient app = ScramClient::with_password("pw");
    REQUIRE(exchange(app, front).ok);
    ScramServer backend(fast_verifier("pw"));
    backend.set_channel_binding(cert_hash);
    ScramClient pgmux = ScramClient::with_keys(front.keys());
    pgmux.set_channel_binding(cert_hash);
    CHECK(exchange(pgmux, backend).ok);
  }
}

// ---------------------------------------------------------------------------
// SaltedPassword cache

TEST_CASE("SaltedPassword cache avoids repeated PBKDF2", "[auth][scram][cache]") {
  ScramVerifier v = make_scram_verifier("cache-test-pw", "cache-test-salt!", 32);
  auto before = scram_salted_password_cache_stats();
  {
    ScramServer server(v);
    ScramClient client = ScramClient::with_password("cache-test-pw");
    REQUIRE(exchange(client, server).ok);
  }
  auto after_first = scram_salted_password_cache_stats();
  CHECK(after_first.misses == before.misses + 1);
  for (int i = 0; i < 3; ++i) {
    ScramServer server(v);
    ScramClient client = ScramClient::with_password("cache-test-pw");
    REQUIRE(exchange(client, server).ok);
  }
  auto after_more = scram_salted_password_cache_stats();
  CHECK(after_more.misses == after_first.misses);
  CHECK(after_more.hits == after_first.hits + 3);

  // A different password, salt or iteration count is a different entry, and
  // a cached entry never authenticates a different password.
  {
    ScramServer server(v);
    ScramClient client = ScramClient::with_password("cache-test-pw2");
    CHECK_FALSE(exchange(client, server).ok);
    ScramServer server2(make_scram_verifier("cache-test-pw", "cache-test-salt!", 33));
    ScramClient client2 = ScramClient::with_password("cache-test-pw");
    CHECK(exchange(client2, server2).ok);
  }
  CHECK(scram_salted_password_cache_stats().misses == after_more.misses + 2);
}

TEST_CASE("SaltedPassword cache is bounded", "[auth][scram][cache]") {
  for (int i = 0; i < 80; ++i) {
    const std::string pw = "bounded-" + std::to_string(i);
    ScramServer server(make_scram_verifier(pw, "bounded-salt", 1));
    ScramClient client = ScramClient::with_password(pw);
    REQUIRE(exchange(client, server).ok);
  }
  CHECK(scram_salted_password_cache_stats().size == kScramSaltedPasswordCacheSize);
  // The most recent entries are still there; the oldest were evicted.
  auto before = scram_salted_password_cache_stats();
  {
    ScramServer server(make_scram_verifier("bounded-79", "bounded-salt", 1));
    ScramClient client = ScramClient::with_password("bounded-79");
    REQUIRE(exchange(client, server).ok);
  }
  CHECK(scram_salted_password_cache_stats().misses == before.misses);
  {
    ScramServer server(make_scram_verifier("bounded-0", "bounded-salt", 1));
    ScramClient client = ScramClient::with_password("bounded-0");
    REQUIRE(exchange(client, server).ok);
  }
  CHECK(scram_salted_password_cache_stats().misses == before.misses + 1);
}

TEST_CASE("SaltedPassword cache is safe under concurrency", "[auth][scram][cache]") {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < 40; ++i) {
        const std::string pw = "thread-" + std::to_string((t + i) % 10);
        ScramServer server(make_scram_verifier(pw, "thread-salt", 2));
        ScramClient client = ScramClient::with_password(pw);
        if (!exchange(client, server).ok) ++failures;
        ScramServer server2(make_scram_verifier(pw, "thread-salt", 2));
        ScramClient wrong = ScramClient::with_password(pw + "x");
        if (exchange(wrong, server2).ok) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(scram_salted_password_cache_stats().size <= kScramSaltedPasswordCacheSize);
}
