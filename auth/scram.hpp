// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL uses it, both sides.
//
// Server side verifies clients against a stored verifier (no PBKDF2 per
// login). After a successful exchange it exposes the ClientKey recovered from
// the proof (ClientProof XOR ClientSignature), which lets pgmux log in to
// PostgreSQL as that user without knowing the password (pass-through, the
// verifier being the same one PostgreSQL stores).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "auth/crypto.hpp"

namespace pgmux::auth {

constexpr int kScramDefaultIterations = 4096;
// The most PBKDF2 iterations pgmux computes for a server that asks (as a
// client with a password). The work blocks the event loop of every client on
// the worker: 1e6 iterations take about a second; PostgreSQL's default is
// 4096. A server asking for more is refused.
constexpr int kScramMaxServerIterations = 1000000;

// The error ScramServer::handle_client_final reports for a wrong password, for
// a mock exchange and for a verifier that cannot succeed, and nothing else:
// the caller can map exactly this one to "password authentication failed"
// (28P01) and every other failure to a protocol violation (08P01).
inline constexpr std::string_view kScramAuthFailed = "SCRAM authentication failed: invalid proof";

// "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>"
struct ScramVerifier {
  int iterations = 0;
  std::string salt;  // raw bytes
  Sha256 stored_key{};
  Sha256 server_key{};
};
// parse: the iteration count is decimal digits only, 1..INT_MAX; salt and keys
// are strict base64 (salt may be empty, as PostgreSQL allows); both keys are
// 32 bytes. PostgreSQL's own parser accepts a superset (a sign, a zero count,
// whitespace inside base64) that PostgreSQL never writes.
std::optional<ScramVerifier> parse_scram_verifier(std::string_view text);
std::string format_scram_verifier(const ScramVerifier& v);
// Builds a verifier from a password (PBKDF2 once). Empty salt = 16 random bytes.
// iterations < 1 throws std::invalid_argument (caller bug).
ScramVerifier make_scram_verifier(std::string_view password, std::string_view salt = {},
                                  int iterations = kScramDefaultIterations);
// PostgreSQL applies SASLprep to passwords; for ASCII-only passwords it is the
// identity. Non-ASCII passwords are used as raw bytes (PostgreSQL's fallback
// when SASLprep fails); documented as a limitation.
std::string scram_prepare_password(std::string_view password);

// Keys that let pgmux act as the client towards PostgreSQL without a password.
struct ScramKeys {
  Sha256 client_key{};
  Sha256 server_key{};
};

// The salt pgmux gives a user: derived from the name and a per-process
// secret, the same on every worker and across reloads. A verifier pgmux makes
// from a plain password uses it, and so does the mock exchange of an unknown
// user, so the two cannot be told apart by their salt.
std::string derived_salt(std::string_view username);

class ScramServer {
 public:
  // Real exchange against a stored verifier. A verifier with iterations < 1
  // cannot be offered to a client; the exchange then runs like a mock one.
  explicit ScramServer(ScramVerifier verifier);
  // Mock exchange for an unknown user / database: looks like a real one
  // (salt derived deterministically from `username` and a per-process secret,
  // default iterations) and always fails at the final step, so nothing
  // reveals whether the user exists.
  static ScramServer mock(std::string_view username, int iterations = kScramDefaultIterations);

  // Channel binding data for tls-server-end-point (hash of our certificate);
  // when set, the client may use SCRAM-SHA-256-PLUS ("p=tls-server-end-point").
  // Set it before handle_client_first, exactly when PLUS was advertised. When
  // set, the "y" flag (client could bind but thinks we cannot) fails as a
  // downgrade; when not set, SCRAM-SHA-256-PLUS fails. As PostgreSQL does.
  void set_channel_binding(std::string cb_data) { cb_data_ = std::move(cb_data); }

  // Step 1: the client-first-message (SASLInitialResponse data) and the
  // mechanism the client chose. Produces the server-first-message.
  // Returns false with `error` on malformed input or an unsupported mechanism
  // or channel-binding combination.
  bool handle_client_first(std::string_view mechanism, std::string_view client_first,
                           std::string& server_first, std::string& error);
  // Step 2: the client-final-message. Verifies nonce, channel binding and
  // proof (constant time). On success produces the server-final-message.
  // A wrong proof (or a mock) fails with exactly kScramAuthFailed. One
  // attempt per object: any call out of order or after step 2 fails.
  bool handle_client_final(std::string_view client_final, std::string& server_final,
                           std::string& error);

  // Valid after a successful handle_client_final.
  const ScramKeys& keys() const { return keys_; }

  // Tests only: the server part of the nonce (default: 18 random bytes,
  // base64), so published exchanges (RFC 7677) can be replayed.
  void set_nonce_for_testing(std::string server_nonce) { test_nonce_ = std::move(server_nonce); }

 private:
  enum class Step { client_first, client_final, done };
  ScramServer() = default;
  ScramVerifier v_;
  bool mock_ = false;
  bool cb_in_use_ = false;  // SCRAM-SHA-256-PLUS selected
  Step step_ = Step::client_first;
  std::string cb_data_;
  std::string gs2_header_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;  // full nonce (client + server part)
  std::string test_nonce_;
  ScramKeys keys_;
};

class ScramClient {
 public:
  // With a password (PBKDF2 with the server's salt; results cached per
  // (password, salt, iterations) process-wide so reconnects don't repeat it).
  static ScramClient with_password(std::string_view password);
  // Pass-through: keys recovered from a client's exchange.
  static ScramClient with_keys(const ScramKeys& keys);

  // Channel binding (tls-server-end-point hash of the server's certificate);
  // when set, client_first uses "p=tls-server-end-point" and mechanism PLUS,
  // so set it only when the server advertised SCRAM-SHA-256-PLUS. Without it
  // the client sends "n" ("y" after set_could_bind).
  void set_channel_binding(std::string cb_data) { cb_data_ = std::move(cb_data); }
  // Over TLS without binding (the server did not offer PLUS): send "y", so a
  // server that does support binding sees the downgrade (RFC 5802 5.1).
  void set_could_bind() { could_bind_ = true; }
  std::string mechanism() const;  // "SCRAM-SHA-256" or "SCRAM-SHA-256-PLUS"

  std::string client_first();  // "n,,n=,r=<nonce>" (or p=... with binding)
  bool handle_server_first(std::string_view server_first, std::string& client_final,
                           std::string& error);
  // Verifies the server signature (constant time). Fails on "e=<error>"
  // (reporting the server's text) and on a wrong signature.
  bool handle_server_final(std::string_view server_final, std::string& error);

  // Tests only: the client nonce (default: 18 random bytes, base64) and the
  // n= user name (default empty, as libpq), to replay RFC 7677 exactly.
  void set_nonce_for_testing(std::string nonce) { test_nonce_ = std::move(nonce); }
  void set_username_for_testing(std::string user) { test_user_ = std::move(user); }

 private:
  enum class Step { client_first, server_first, server_final, done };
  ScramClient() = default;
  std::optional<std::string> password_;
  ScramKeys keys_;
  bool have_keys_ = false;
  Step step_ = Step::client_first;
  bool could_bind_ = false;
  std::string cb_data_;
  std::string gs2_header_;
  std::string client_nonce_;
  std::string client_first_bare_;
  std::string test_nonce_;
  std::string test_user_;
  Sha256 server_signature_{};
};

// The process-wide SaltedPassword cache behind ScramClient::with_password
// (bounded: kScramSaltedPasswordCacheSize entries, least recently used out).
constexpr size_t kScramSaltedPasswordCacheSize = 64;
struct ScramCacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;  // = PBKDF2 runs
  size_t size = 0;
};
ScramCacheStats scram_salted_password_cache_stats();

}  // namespace pgmux::auth
