// TLS contexts (OpenSSL) for both sides: clients connecting to pgmux, and
// pgmux connecting to PostgreSQL. The per-connection part (memory BIOs under
// the Socket) is in socket.cpp.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "conf/config.hpp"

namespace pgmux::tls {

class Context {
 public:
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // [tls]: pgmux is the TLS server. cert and key are required; with mode
  // verify-ca / verify-full clients must present a certificate signed by ca.
  static std::shared_ptr<const Context> for_clients(const conf::TlsConfig& c, std::string& error);
  // [server_tls]: pgmux is the TLS client. verify-ca / verify-full check the
  // server's certificate against ca (default: the system store); verify-full
  // also checks the host name. cert/key: pgmux's client certificate.
  static std::shared_ptr<const Context> for_servers(const conf::TlsConfig& c, std::string& error);

  SSL_CTX* get() const { return ctx_; }
  conf::TlsMode mode() const { return mode_; }
  bool server_side() const { return server_side_; }
  // tls-server-end-point channel binding data of our own certificate (server
  // side), empty when it cannot be computed.
  const std::string& end_point() const { return end_point_; }

 private:
  Context() = default;
  // The common part: method, protocols, ciphers, modes, our certificate.
  static std::shared_ptr<Context> make(const conf::TlsConfig& c, bool server_side, std::string& error);
  SSL_CTX* ctx_ = nullptr;
  conf::TlsMode mode_ = conf::TlsMode::disable;
  bool server_side_ = false;
  std::string end_point_;
};

// Both sides' contexts from a config ([tls] unless disable; [server_tls]
// unless disable or allow, which connect in plaintext). False with the
// reason ("[tls] cert /x: ...") when a file does not load.
bool make_contexts(const conf::Config& c, std::shared_ptr<const Context>& for_clients,
                   std::shared_ptr<const Context>& for_servers, std::string& error);

// The tls-server-end-point hash of a certificate (RFC 5929): SHA-256 when
// its signature uses MD5 or SHA-1, else the signature's own hash. Empty if
// the algorithm has no single hash (e.g. Ed25519).
std::string end_point_hash(X509* cert);

// OpenSSL's error queue as one line (and cleared), or `fallback`.
std::string last_error(const char* fallback = "unknown TLS error");

}  // namespace pgmux::tls
