// SCRAM-SHA-256 message parsers (auth/scram.hpp), both sides, on the
// messages a peer controls.
//
// Input layout: byte 0 is the mode, the rest is two messages separated by
// the first NUL byte (the second may hold NULs).
//   mode bit 0 = 0: ScramServer: client-first-message, client-final-message.
//     bits 1-2: mechanism SCRAM-SHA-256 / SCRAM-SHA-256-PLUS / PLUS / taken
//     from the input, "<mechanism>,<client-first>" (3); bit 3: channel binding
//     data set; bit 4: a mock exchange (unknown user); bit 5: final first.
//   mode bit 0 = 1: ScramClient (pass-through keys): server-first-message,
//     server-final-message; bit 3: channel binding.
// The verifier, the keys and both nonces are RFC 7677's (user "user",
// password "pencil"), so the RFC's messages are seeds that succeed.
//
// Properties: nothing crashes; every error text is non-empty, bounded and
// printable ASCII (it reaches logs and clients), and empty on success;
//  - server: success only for a real (non-mock) exchange, with keys whose
//    ClientKey hashes to the verifier's StoredKey, server-first "r=<client
//    nonce><server nonce>,s=<salt>,i=4096", server-final "v=..."; a second
//    call after the end always fails;
//  - client: client-final ends in ",p=<proof>", starts with "c=" and the
//    channel-binding input; for the RFC's server-first it is the RFC's
//    client-final; success on the server-final only after a client-final.
#include <cstdint>
#include <string>
#include <string_view>

#include "auth/crypto.hpp"
#include "auth/scram.hpp"
#include "fuzz_check.hpp"

using namespace pgmux::auth;

namespace {

constexpr std::string_view kClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view kSaltB64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view kServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view kClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view kCbData = "0123456789abcdef0123456789abcdef";  // a certificate hash

struct Fixture {
  ScramVerifier verifier;
  ScramKeys keys;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    const std::string salt = *base64_decode(kSaltB64);
    x.verifier = make_scram_verifier("pencil", salt, 4096);  // PBKDF2 once per process
    const Sha256 salted = pbkdf2_sha256("pencil", salt, 4096);
    x.keys.client_key = hmac_sha256(view(salted), "Client Key");
    x.keys.server_key = hmac_sha256(view(salted), "Server Key");
    FUZZ_CHECK(sha256(view(x.keys.client_key)) == x.verifier.stored_key);
    return x;
  }();
  return f;
}

void check_error(bool ok, const std::string& error) {
  if (ok) {
    FUZZ_CHECK(error.empty());
    return;
  }
  FUZZ_CHECK(!error.empty());
  FUZZ_CHECK(error.size() <= 400);
  for (char ch : error) {
    const auto c = static_cast<unsigned char>(ch);
    FUZZ_CHECK(c >= 0x20 && c <= 0x7e);
  }
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

void run_server(uint8_t mode, std::string_view first, std::string_view final_msg) {
  const Fixture& fx = fixture();
  const bool mock = mode & 0x10;
  ScramServer server = mock ? ScramServer::mock("user") : ScramServer(fx.verifier);
  server.set_nonce_for_testing(std::string(kServerNonce));
  if (mode & 0x08) server.set_channel_binding(std::string(kCbData));
  std::string mechanism;
  switch ((mode >> 1) & 3) {
    case 0: mechanism = "SCRAM-SHA-256"; break;
    case 1:
    case 2: mechanism = "SCRAM-SHA-256-PLUS"; break;
    case 3: {  // "<mechanism>,<client-first-message>"
      const size_t comma = first.find(',');
      mechanism = std::string(first.substr(0, comma));
      first = comma == std::string_view::npos ? std::string_view() : first.substr(comma + 1);
      break;
    }
  }

  std::string out, error;
  if (mode & 0x20) {  // out of order: the final message first
    const bool ok = server.handle_client_final(final_msg, out, error);
    FUZZ_CHECK(!ok && out.empty());
    check_error(ok, error);
    error.clear();
    FUZZ_CHECK(!server.handle_client_first(mechanism, first, out, error));
    check_error(false, error);
    return;
  }

  error.clear();
  const bool first_ok = server.handle_client_first(mechanism, first, out, error);
  check_error(first_ok, error);
  if (first_ok) {
    FUZZ_CHECK(starts_with(out, "r="));
    const size_t comma = out.find(',');
    FUZZ_CHECK(comma != std::string::npos);
    const std::string_view nonce = std::string_view(out).substr(2, comma - 2);
    FUZZ_CHECK(nonce.size() > kServerNonce.size());
    FUZZ_CHECK(nonce.substr(nonce.size() - kServerNonce.size()) == kServerNonce);
    FUZZ_CHECK(first.find(std::string(",r=") + std::string(nonce.substr(0, nonce.size() - kServerNonce.size()))) !=
               std::string_view::npos);
    if (!mock) FUZZ_CHECK(std::string_view(out).substr(comma) == std::string(",s=") + std::string(kSaltB64) + ",i=4096");
  } else {
    FUZZ_CHECK(out.empty());
  }

  error.clear();
  const bool final_ok = server.handle_client_final(final_msg, out, error);
  check_error(final_ok, error);
  if (final_ok) {
    FUZZ_CHECK(first_ok && !mock);
    FUZZ_CHECK(sha256(view(server.keys().client_key)) == fx.verifier.stored_key);
    FUZZ_CHECK(server.keys().server_key == fx.verifier.server_key);
    FUZZ_CHECK(starts_with(out, "v=") && base64_decode(std::string_view(out).substr(2)).has_value());
  } else {
    FUZZ_CHECK(out.empty());
  }
  // One attempt per object.
  error.clear();
  FUZZ_CHECK(!server.handle_client_final(final_msg, out, error));
  check_error(false, error);
}

void run_client(uint8_t mode, std::string_view server_first, std::string_view server_final) {
  ScramClient client = ScramClient::with_keys(fixture().keys);
  client.set_nonce_for_testing(std::string(kClientNonce));
  client.set_username_for_testing("user");
  const bool cb = mode & 0x08;
  if (cb) client.set_channel_binding(std::string(kCbData));
  const std::string first = client.client_first();
  FUZZ_CHECK(first == (cb ? "p=tls-server-end-point,,n=user,r=" : "n,,n=user,r=") + std::string(kClientNonce));

  std::string client_final, error;
  const bool first_ok = client.handle_server_first(server_first, client_final, error);
  check_error(first_ok, error);
  if (first_ok) {
    FUZZ_CHECK(starts_with(client_final, "c="));
    const size_t proof = client_final.rfind(",p=");
    FUZZ_CHECK(proof != std::string::npos);
    FUZZ_CHECK(base64_decode(std::string_view(client_final).substr(proof + 3))->size() == 32);
    const std::string_view c = std::string_view(client_final).substr(2, client_final.find(',') - 2);
    FUZZ_CHECK(*base64_decode(c) == (cb ? "p=tls-server-end-point,," + std::string(kCbData) : "n,,"));
    if (!cb && server_first == kServerFirst) FUZZ_CHECK(client_final == kClientFinal);
  } else {
    FUZZ_CHECK(client_final.empty());
  }

  error.clear();
  const bool final_ok = client.handle_server_final(server_final, error);
  check_error(final_ok, error);
  if (final_ok) FUZZ_CHECK(first_ok);
  error.clear();
  FUZZ_CHECK(!client.handle_server_final(server_final, error));
  check_error(false, error);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t nul = rest.find('\0');
  const std::string_view first = rest.substr(0, nul);
  const std::string_view second = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  if (mode & 1) {
    run_client(mode, first, second);
  } else {
    run_server(mode, first, second);
  }
  return 0;
}
