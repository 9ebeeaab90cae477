// SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL uses it, both sides.
//
// Server side verifies clients against a stored verifier (no PBKDF2 per
// login). After a successful exchange it exposes the ClientKey recovered from
// the proof (ClientProof XOR ClientSignature), which lets pgmux log in to
// PostgreSQL as that user without knowing the password (pass-through, the
// verifier being the same one PostgreSQL stores).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "auth/crypto.hpp"

namespace pgmux::auth {

constexpr int kScramDefaultIterations = 4096;

// "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>"
struct ScramVerifier {
  int iterations = 0;
  std::string salt;  // raw bytes
  Sha256 stored_key{};
  Sha256 server_key{};
};
std::optional<ScramVerifier> parse_scram_verifier(std::string_view text);
std::string format_scram_verifier(const ScramVerifier& v);
// Builds a verifier from a password (PBKDF2 once). Empty salt = 16 random bytes.
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

class ScramServer {
 public:
  // Real exchange against a stored verifier.
  explicit ScramServer(ScramVerifier verifier);
  // Mock exchange for an unknown user / database: looks like a real one
  // (salt derived deterministically from `username` and a per-process secret,
  // default iterations) and always fails at the final step, so nothing
  // reveals whether the user exists.
  static ScramServer mock(std::string_view username);

  // Channel binding data for tls-server-end-point (hash of our certificate);
  // when set, the client may use SCRAM-SHA-256-PLUS ("p=tls-server-end-point").
  void set_channel_binding(std::string cb_data) { cb_data_ = std::move(cb_data); }

  // Step 1: the client-first-message (SASLInitialResponse data) and the
  // mechanism the client chose. Produces the server-first-message.
  // Returns false with `error` on malformed input or an unsupported mechanism
  // or channel-binding combination.
  bool handle_client_first(std::string_view mechanism, std::string_view client_first,
                           std::string& server_first, std::string& error);
  // Step 2: the client-final-message. Verifies nonce, channel binding and
  // proof (constant time). On success produces the server-final-message.
  bool handle_client_final(std::string_view client_final, std::string& server_final,
                           std::string& error);

  // Valid after a successful handle_client_final.
  const ScramKeys& keys() const { return keys_; }

 private:
  ScramServer() = default;
  ScramVerifier v_;
  bool mock_ = false;
  std::string cb_data_;
  std::string gs2_header_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string nonce_;  // full nonce (client + server part)
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
  // when set, client_first uses "p=tls-server-end-point" and mechanism PLUS.
  void set_channel_binding(std::string cb_data) { cb_data_ = std::move(cb_data); }
  std::string mechanism() const;  // "SCRAM-SHA-256" or "SCRAM-SHA-256-PLUS"

  std::string client_first();  // "n,,n=,r=<nonce>" (or p=... with binding)
  bool handle_server_first(std::string_view server_first, std::string& client_final,
                           std::string& error);
  // Verifies the server signature (constant time).
  bool handle_server_final(std::string_view server_final, std::string& error);

 private:
  ScramClient() = default;
  std::optional<std::string> password_;
  ScramKeys keys_;
  bool have_keys_ = false;
  std::string cb_data_;
  std::string gs2_header_;
  std::string client_nonce_;
  std::string client_first_bare_;
  Sha256 server_signature_{};
};

}  // namespace pgmux::auth
