#include "src/tls.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <algorithm>
#include <sstream>
#include <vector>

namespace pgmux::tls {

std::string last_error(const char* fallback) {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string(fallback) : out;
}

std::string end_point_hash(X509* cert) {
  if (!cert) return {};
  int md_nid = NID_undef, pk_nid = NID_undef;
  if (!OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, &pk_nid)) return {};
  const EVP_MD* md = nullptr;
  if (md_nid == NID_md5 || md_nid == NID_sha1) md = EVP_sha256();
  else if (md_nid != NID_undef) md = EVP_get_digestbynid(md_nid);
  if (!md) return {};
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!X509_digest(cert, md, buf, &len)) return {};
  return std::string(reinterpret_cast<const char*>(buf), len);
}

namespace {

// "tlsv1.2,tlsv1.3", "secure", "all", "legacy" -> [min, max] versions.
bool protocol_range(const std::string& text, int& min_v, int& max_v) {
  min_v = 0;
  max_v = 0;
  auto add = [&](int v) {
    if (!min_v || v < min_v) min_v = v;
    if (v > max_v) max_v = v;
  };
  // Separators as the config check accepts them: comma, colon, space.
  std::string norm = text;
  std::replace_if(norm.begin(), norm.end(), [](char c) { return c == ',' || c == ':' || c == '\t'; }, ' ');
  std::stringstream ss(norm);
  std::string item;
  while (ss >> item) {
    std::transform(item.begin(), item.end(), item.begin(), [](unsigned char c) { return std::tolower(c); });
    if (item == "tlsv1.0" || item == "tlsv1") add(TLS1_VERSION);
    else if (item == "tlsv1.1") add(TLS1_1_VERSION);
    else if (item == "tlsv1.2") add(TLS1_2_VERSION);
    else if (item == "tlsv1.3") add(TLS1_3_VERSION);
    else if (item == "secure" || item == "default") {
      add(TLS1_2_VERSION);
      add(TLS1_3_VERSION);
    } else if (item == "all" || item == "legacy") {
      add(TLS1_VERSION);
      add(TLS1_3_VERSION);
    } else if (!item.empty()) {
      return false;
    }
  }
  return min_v != 0;
}

bool common_setup(SSL_CTX* ctx, const conf::TlsConfig& c, std::string& error) {
  int min_v = 0, max_v = 0;
  if (!protocol_range(c.protocols, min_v, max_v)) {
    error = "invalid protocols \"" + c.protocols + "\"";
    return false;
  }
  if (!SSL_CTX_set_min_proto_version(ctx, min_v) || !SSL_CTX_set_max_proto_version(ctx, max_v)) {
    error = "protocols \"" + c.protocols + "\": " + last_error();
    return false;
  }
  if (!c.ciphers.empty() && !SSL_CTX_set_cipher_list(ctx, c.ciphers.c_str())) {
    error = "ciphers \"" + c.ciphers + "\": " + last_error();
    return false;
  }
  if (!c.tls13_ciphers.empty()) {
    // OpenSSL skips the names it does not know as long as one is left:
    // each is tried alone first, so a typo is an error, not a lost suite.
    size_t start = 0;
    while (start <= c.tls13_ciphers.size()) {
      const size_t end = std::min(c.tls13_ciphers.find(':', start), c.tls13_ciphers.size());
      const std::string one = c.tls13_ciphers.substr(start, end - start);
      if (one.empty() || !SSL_CTX_set_ciphersuites(ctx, one.c_str())) {
        ERR_clear_error();
        error = "tls13_ciphers \"" + c.tls13_ciphers + "\": unknown TLS 1.3 cipher suite \"" + one + "\"";
        return false;
      }
      start = end + 1;
    }
    if (!SSL_CTX_set_ciphersuites(ctx, c.tls13_ciphers.c_str())) {
      error = "tls13_ciphers \"" + c.tls13_ciphers + "\": " + last_error();
      return false;
    }
  }
  if (!c.groups.empty() && !SSL_CTX_set1_groups_list(ctx, c.groups.c_str())) {
    error = "groups \"" + c.groups + "\": " + last_error();
    return false;
  }
  // An idle connection keeps no read/write buffers.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (!c.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1) {
      error = "cert " + c.cert + ": " + last_error();
      return false;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      error = "key " + c.key + ": " + last_error();
      return false;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      error = "key " + c.key + " does not match cert " + c.cert;
      return false;
    }
  }
  return true;
}

}  // namespace

Context::~Context() {
  if (ctx_) SSL_CTX_free(ctx_);
}

std::shared_ptr<Context> Context::make(const conf::TlsConfig& c, bool server_side, std::string& error) {
  std::shared_ptr<Context> x(new Context);
  x->mode_ = c.mode;
  x->server_side_ = server_side;
  x->ctx_ = SSL_CTX_new(server_side ? TLS_server_method() : TLS_client_method());
  if (!x->ctx_) {
    error = last_error();
    return nullptr;
  }
  if (!common_setup(x->ctx_, c, error)) return nullptr;
  return x;
}

std::shared_ptr<const Context> Context::for_clients(const conf::TlsConfig& c, std::string& error) {
  std::shared_ptr<Context> x = make(c, /*server_side=*/true, error);
  if (!x) return nullptr;
  if (c.cert.empty()) {
    error = "cert and key are required";
    return nullptr;
  }
  SSL_CTX_set_session_cache_mode(x->ctx_, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(x->ctx_, 0);
  if (!c.ca.empty()) {
    if (SSL_CTX_load_verify_locations(x->ctx_, c.ca.c_str(), nullptr) != 1) {
      error = "ca " + c.ca + ": " + last_error();
      return nullptr;
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(c.ca.c_str());
    if (names) SSL_CTX_set_client_CA_list(x->ctx_, names);
    ERR_clear_error();
  }
  if (conf::tls_verifies(c.mode))
    SSL_CTX_set_verify(x->ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  else if (!c.ca.empty())
    SSL_CTX_set_verify(x->ctx_, SSL_VERIFY_PEER, nullptr);  // a certificate is checked if sent (hba cert)
  x->end_point_ = end_point_hash(SSL_CTX_get0_certificate(x->ctx_));
  return x;
}

std::shared_ptr<const Context> Context::for_servers(const conf::TlsConfig& c, std::string& error) {
  std::shared_ptr<Context> x = make(c, /*server_side=*/false, error);
  if (!x) return nullptr;
  if (conf::tls_verifies(c.mode)) {
    int ok = c.ca.empty() ? SSL_CTX_set_default_verify_paths(x->ctx_)
                          : SSL_CTX_load_verify_locations(x->ctx_, c.ca.c_str(), nullptr);
    if (ok != 1) {
      error = (c.ca.empty() ? std::string("the system CA store") : "ca " + c.ca) + ": " + last_error();
      return nullptr;
    }
    SSL_CTX_set_verify(x->ctx_, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(x->ctx_, SSL_VERIFY_NONE, nullptr);
  }
  return x;
}

bool make_contexts(const conf::Config& c, std::shared_ptr<const Context>& for_clients,
                   std::shared_ptr<const Context>& for_servers, std::string& error) {
  for_clients.reset();
  for_servers.reset();
  if (c.tls.mode != conf::TlsMode::disable) {
    for_clients = Context::for_clients(c.tls, error);
    if (!for_clients) {
      error = "[tls] " + error;
      return false;
    }
  }
  // "allow" connects in plaintext (libpq would try TLS only after a refusal).
  const conf::TlsMode m = c.server_tls.mode;
  if (m != conf::TlsMode::disable && m != conf::TlsMode::allow) {
    for_servers = Context::for_servers(c.server_tls, error);
    if (!for_servers) {
      error = "[server_tls] " + error;
      return false;
    }
  }
  return true;
}

}  // namespace pgmux::tls
