// SCRAM-SHA-256 as PostgreSQL speaks it. Behaviour follows RFC 5802/7677 and
// PostgreSQL's auth-scram.c (server) / fe-auth-scram.c (libpq); the comments
// mark where PostgreSQL deviates from the RFC and we follow PostgreSQL.
#include "auth/scram.hpp"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <vector>

namespace pgmux::auth {

namespace {

constexpr std::string_view kMechanism = "SCRAM-SHA-256";
constexpr std::string_view kMechanismPlus = "SCRAM-SHA-256-PLUS";
constexpr std::string_view kCbindType = "tls-server-end-point";
constexpr std::string_view kCbindHeader = "p=tls-server-end-point,,";
constexpr size_t kRawNonceLen = 18;  // PostgreSQL's SCRAM_RAW_NONCE_LEN
constexpr size_t kDefaultSaltLen = 16;

Sha256 xor_keys(const Sha256& a, const Sha256& b) {
  Sha256 out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = a[i] ^ b[i];
  return out;
}

Sha256 client_key_from(const Sha256& salted) { return hmac_sha256(view(salted), "Client Key"); }
Sha256 server_key_from(const Sha256& salted) { return hmac_sha256(view(salted), "Server Key"); }

std::string random_nonce() {
  unsigned char raw[kRawNonceLen];
  random_bytes(raw, sizeof raw);
  return base64_encode({reinterpret_cast<const char*>(raw), sizeof raw});
}

// RFC 5802 "printable": %x21-2B / %x2D-7E (printable ASCII except ',').
bool is_printable_nonce(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// For error messages: never echo raw peer bytes.
std::string describe_char(char ch) {
  auto c = static_cast<unsigned char>(ch);
  if (c >= 0x21 && c <= 0x7e) return std::string("'") + ch + "'";
  static constexpr char hex[] = "0123456789abcdef";
  return std::string("0x") + hex[c >> 4] + hex[c & 0xf];
}

std::string sanitize(std::string_view s, size_t max = 200) {
  std::string out;
  for (char ch : s.substr(0, max)) {
    auto c = static_cast<unsigned char>(ch);
    out += (c >= 0x20 && c <= 0x7e) ? ch : '?';
  }
  if (s.size() > max) out += "...";
  return out;
}

// A cursor over "a=value,b=value,...". Every value runs to the next ',' or
// the end; a ',' must be followed by another attribute.
class AttrReader {
 public:
  AttrReader(std::string_view s, const char* what) : s_(s), what_(what) {}

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }
  size_t pos() const { return pos_; }

  // Reads the attribute `attr`.
  bool read(char attr, std::string_view& value, std::string& error) {
    if (at_end()) {
      error = malformed() + "expected attribute '" + attr + "' but found end of message";
      return false;
    }
    if (s_[pos_] != attr) {
      error = malformed() + "expected attribute '" + attr + "' but found " + describe_char(s_[pos_]);
      return false;
    }
    return read_value(attr, value, error);
  }

  // Reads any attribute (ALPHA "=" value).
  bool read_any(char& attr, std::string_view& value, std::string& error) {
    if (at_end()) {
      error = malformed() + "attribute expected, but found end of message";
      return false;
    }
    attr = s_[pos_];
    if (!is_alpha(attr)) {
      error = malformed() + "attribute expected, but found " + describe_char(attr);
      return false;
    }
    return read_value(attr, value, error);
  }

  std::string malformed() const { return std::string("malformed SCRAM ") + what_ + ": "; }

 private:
  bool read_value(char attr, std::string_view& value, std::string& error) {
    ++pos_;
    if (pos_ >= s_.size() || s_[pos_] != '=') {
      error = malformed() + "expected '=' after attribute '" + attr + "'";
      return false;
    }
    ++pos_;
    size_t end = s_.find(',', pos_);
    if (end == std::string_view::npos) end = s_.size();
    value = s_.substr(pos_, end - pos_);
    pos_ = end;
    if (pos_ < s_.size()) {
      ++pos_;  // the ','
      if (pos_ == s_.size()) {
        error = malformed() + "trailing ','";
        return false;
      }
    }
    return true;
  }

  std::string_view s_;
  const char* what_;
  size_t pos_ = 0;
};

bool check_message(std::string_view msg, const char* what, std::string& error) {
  if (msg.empty()) {
    error = std::string("malformed SCRAM ") + what + ": the message is empty";
    return false;
  }
  if (msg.find('\0') != std::string_view::npos) {
    error = std::string("malformed SCRAM ") + what + ": contains a NUL byte";
    return false;
  }
  return true;
}

// Decimal digits only, 1..INT_MAX.
std::optional<int> parse_iterations(std::string_view s) {
  if (s.empty()) return std::nullopt;
  for (char c : s)
    if (c < '0' || c > '9') return std::nullopt;
  long long v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 1 || v > INT_MAX) return std::nullopt;
  return static_cast<int>(v);
}

std::optional<Sha256> decode_key(std::string_view b64) {
  auto raw = base64_decode(b64);
  if (!raw || raw->size() != Sha256{}.size()) return std::nullopt;
  Sha256 k{};
  std::memcpy(k.data(), raw->data(), k.size());
  return k;
}

// Per-process secrets, created on first use (thread-safe static init).
const std::string& mock_secret() {
  static const std::string s = [] {
    std::string v(32, '\0');
    random_bytes(v.data(), v.size());
    return v;
  }();
  return s;
}

const std::string& cache_secret() {
  static const std::string s = [] {
    std::string v(32, '\0');
    random_bytes(v.data(), v.size());
    return v;
  }();
  return s;
}

// SaltedPassword cache. Keyed by a keyed hash of (password, salt, iterations)
// so the table holds no copy of any password; PBKDF2 runs outside the lock.
class SaltedPasswordCache {
 public:
  std::optional<Sha256> get(const Sha256& key) {
    std::lock_guard lock(mu_);
    for (auto& e : entries_) {
      if (e.key == key) {
        e.last_used = ++tick_;
        ++hits_;
        return e.salted;
      }
    }
    ++misses_;
    return std::nullopt;
  }

  void put(const Sha256& key, const Sha256& salted) {
    std::lock_guard lock(mu_);
    for (auto& e : entries_) {
      if (e.key == key) {  // another thread computed it meanwhile
        e.last_used = ++tick_;
        return;
      }
    }
    if (entries_.size() < kScramSaltedPasswordCacheSize) {
      entries_.push_back({key, salted, ++tick_});
      return;
    }
    auto lru = std::min_element(entries_.begin(), entries_.end(),
                                [](const Entry& a, const Entry& b) { return a.last_used < b.last_used; });
    *lru = {key, salted, ++tick_};
  }

  ScramCacheStats stats() {
    std::lock_guard lock(mu_);
    return {hits_, misses_, entries_.size()};
  }

 private:
  struct Entry {
    Sha256 key;
    Sha256 salted;
    uint64_t last_used;
  };
  std::mutex mu_;
  std::vector<Entry> entries_;
  uint64_t tick_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

SaltedPasswordCache& salted_cache() {
  static SaltedPasswordCache c;
  return c;
}

void append_len_prefixed(std::string& out, std::string_view s) {
  uint64_t n = s.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  out.append(s);
}

Sha256 salted_password_cached(const std::string& password, std::string_view salt, int iterations) {
  std::string id;
  id.reserve(password.size() + salt.size() + 24);
  append_len_prefixed(id, password);
  append_len_prefixed(id, salt);
  append_len_prefixed(id, std::to_string(iterations));
  Sha256 key = hmac_sha256(cache_secret(), id);
  auto& cache = salted_cache();
  if (auto hit = cache.get(key)) return *hit;
  Sha256 salted = pbkdf2_sha256(password, salt, iterations);
  cache.put(key, salted);
  return salted;
}

// RFC 5802 saslname escaping, for the test-only n= user name.
std::string escape_saslname(std::string_view user) {
  std::string out;
  for (char c : user) {
    if (c == ',')
      out += "=2C";
    else if (c == '=')
      out += "=3D";
    else
      out += c;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Verifiers

std::optional<ScramVerifier> parse_scram_verifier(std::string_view text) {
  // SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>
  size_t d1 = text.find('$');
  if (d1 == std::string_view::npos || text.substr(0, d1) != kMechanism) return std::nullopt;
  size_t c1 = text.find(':', d1 + 1);
  if (c1 == std::string_view::npos) return std::nullopt;
  size_t d2 = text.find('$', c1 + 1);
  if (d2 == std::string_view::npos) return std::nullopt;
  size_t c2 = text.find(':', d2 + 1);
  if (c2 == std::string_view::npos) return std::nullopt;

  auto iterations = parse_iterations(text.substr(d1 + 1, c1 - d1 - 1));
  auto salt = base64_decode(text.substr(c1 + 1, d2 - c1 - 1));
  auto stored = decode_key(text.substr(d2 + 1, c2 - d2 - 1));
  auto server = decode_key(text.substr(c2 + 1));  // strict base64: no further ':' or '$'
  if (!iterations || !salt || !stored || !server) return std::nullopt;

  ScramVerifier v;
  v.iterations = *iterations;
  v.salt = std::move(*salt);
  v.stored_key = *stored;
  v.server_key = *server;
  return v;
}

std::string format_scram_verifier(const ScramVerifier& v) {
  std::string out(kMechanism);
  out += '$';
  out += std::to_string(v.iterations);
  out += ':';
  out += base64_encode(v.salt);
  out += '$';
  out += base64_encode(view(v.stored_key));
  out += ':';
  out += base64_encode(view(v.server_key));
  return out;
}

ScramVerifier make_scram_verifier(std::string_view password, std::string_view salt,
                                  int iterations) {
  if (iterations < 1) throw std::invalid_argument("make_scram_verifier: iterations must be >= 1");
  ScramVerifier v;
  v.iterations = iterations;
  if (salt.empty()) {
    v.salt.resize(kDefaultSaltLen);
    random_bytes(v.salt.data(), v.salt.size());
  } else {
    v.salt = std::string(salt);
  }
  Sha256 salted = pbkdf2_sha256(scram_prepare_password(password), v.salt, iterations);
  v.stored_key = sha256(view(client_key_from(salted)));
  v.server_key = server_key_from(salted);
  return v;
}

std::string scram_prepare_password(std::string_view password) {
  // pg_saslprep returns pure-ASCII input unchanged (even control characters).
  // Non-ASCII: PostgreSQL normalizes valid UTF-8 with SASLprep (NFKC, mapping
  // of non-ASCII spaces, removal of "mapped to nothing" characters) and falls
  // back to the raw bytes when that fails. We always use the raw bytes, which
  // matches PostgreSQL for passwords that SASLprep leaves unchanged (e.g. NFC
  // text without compatibility characters or special spaces). Limitation.
  return std::string(password);
}

// ---------------------------------------------------------------------------
// Server

ScramServer::ScramServer(ScramVerifier verifier) : v_(std::move(verifier)) {
  if (v_.iterations < 1) {
    // Cannot advertise such a count; run the motions and fail like a mock.
    mock_ = true;
    v_.iterations = kScramDefaultIterations;
  }
}

namespace {
// The per-user secret behind derived_salt and the mock's keys.
Sha256 user_secret(std::string_view username) { return hmac_sha256(mock_secret(), username); }
std::string salt_of(const Sha256& user_secret) {
  return std::string(reinterpret_cast<const char*>(user_secret.data()), kDefaultSaltLen);
}
}  // namespace

std::string derived_salt(std::string_view username) { return salt_of(user_secret(username)); }

ScramServer ScramServer::mock(std::string_view username, int iterations) {
  ScramServer s;
  s.mock_ = true;
  const Sha256 h = user_secret(username);
  s.v_.salt = salt_of(h);  // derived_salt(username), without a second HMAC
  s.v_.iterations = iterations >= 1 ? iterations : kScramDefaultIterations;
  // Unused for success (a mock always fails) but real-looking keys keep the
  // final step's work identical to a real exchange.
  s.v_.stored_key = hmac_sha256(view(h), "StoredKey");
  s.v_.server_key = hmac_sha256(view(h), "ServerKey");
  return s;
}

bool ScramServer::handle_client_first(std::string_view mechanism, std::string_view client_first,
                                      std::string& server_first, std::string& error) {
  server_first.clear();
  if (step_ != Step::client_first) {
    error = "SCRAM exchange out of order: client-first-message already handled";
    step_ = Step::done;
    return false;
  }
  step_ = Step::done;  // until this step succeeds

  if (mechanism == kMechanism) {
    cb_in_use_ = false;
  } else if (mechanism == kMechanismPlus && !cb_data_.empty()) {
    cb_in_use_ = true;
  } else {
    // Includes PLUS without channel binding data: we would not have offered it.
    error = "client selected an invalid SASL authentication mechanism";
    return false;
  }
  if (!check_message(client_first, "client-first-message", error)) return false;

  // gs2-header = gs2-cbind-flag "," [ authzid ] ","
  size_t pos = 0;
  const char flag = client_first[0];
  switch (flag) {
    case 'n':
    case 'y':
      if (cb_in_use_) {
        error =
            "malformed SCRAM client-first-message: the client selected SCRAM-SHA-256-PLUS, but "
            "the message does not include channel binding data";
        return false;
      }
      if (flag == 'y' && !cb_data_.empty()) {
        // The client could bind but believes we cannot: someone stripped
        // SCRAM-SHA-256-PLUS from our mechanism list (downgrade).
        error =
            "SCRAM channel binding negotiation error: the client supports channel binding but "
            "thinks the server does not; this server does support channel binding";
        return false;
      }
      pos = 1;
      break;
    case 'p': {
      if (!cb_in_use_) {
        error =
            "malformed SCRAM client-first-message: the client selected SCRAM-SHA-256 without "
            "channel binding, but the message includes channel binding data";
        return false;
      }
      if (client_first.size() < 2 || client_first[1] != '=') {
        error = "malformed SCRAM client-first-message: expected '=' after channel-binding flag 'p'";
        return false;
      }
      size_t end = client_first.find(',', 2);
      std::string_view cbname =
          client_first.substr(2, end == std::string_view::npos ? std::string_view::npos : end - 2);
      if (cbname != kCbindType) {
        error = "unsupported SCRAM channel-binding type \"" + sanitize(cbname, 30) + "\"";
        return false;
      }
      pos = 2 + cbname.size();
      break;
    }
    default:
      error = "malformed SCRAM client-first-message: unexpected channel-binding flag " +
              describe_char(flag);
      return false;
  }
  if (pos >= client_first.size() || client_first[pos] != ',') {
    error = "malformed SCRAM client-first-message: expected ',' after the channel-binding flag";
    return false;
  }
  ++pos;
  if (pos < client_first.size() && client_first[pos] == 'a') {
    error = "client uses SCRAM authorization identity (a=), but it is not supported";
    return false;
  }
  if (pos >= client_first.size() || client_first[pos] != ',') {
    error = "malformed SCRAM client-first-message: expected ',' to end the gs2 header";
    return false;
  }
  ++pos;
  std::string_view gs2_header = client_first.substr(0, pos);
  std::string_view bare = client_first.substr(pos);

  AttrReader r(bare, "client-first-message");
  if (r.peek() == 'm') {
    error = "client requires an unsupported SCRAM extension (m=)";
    return false;
  }
  std::string_view user, client_nonce;
  // n= is ignored: PostgreSQL authenticates the user of the startup packet
  // (libpq sends "n=").
  if (!r.read('n', user, error) || !r.read('r', client_nonce, error)) return false;
  if (client_nonce.empty()) {
    error = "malformed SCRAM client-first-message: empty nonce";
    return false;
  }
  if (!is_printable_nonce(client_nonce)) {
    error = "non-printable characters in SCRAM nonce";
    return false;
  }
  // Optional extensions: RFC 5802 says unknown ones MUST be ignored, and
  // PostgreSQL does; they must still be well-formed attributes.
  while (!r.at_end()) {
    char attr;
    std::string_view value;
    if (!r.read_any(attr, value, error)) return false;
  }

  std::string server_nonce = test_nonce_.empty() ? random_nonce() : test_nonce_;
  gs2_header_ = std::string(gs2_header);
  client_first_bare_ = std::string(bare);
  nonce_ = std::string(client_nonce) + server_nonce;
  server_first_ = "r=" + nonce_ + ",s=" + base64_encode(v_.salt) + ",i=" + std::to_string(v_.iterations);
  server_first = server_first_;
  step_ = Step::client_final;
  return true;
}

bool ScramServer::handle_client_final(std::string_view client_final, std::string& server_final,
                                      std::string& error) {
  server_final.clear();
  if (step_ != Step::client_final) {
    error = step_ == Step::client_first
                ? "SCRAM exchange out of order: client-final-message before client-first-message"
                : "SCRAM exchange out of order: the exchange is over";
    step_ = Step::done;
    return false;
  }
  step_ = Step::done;  // one attempt only, whatever happens
  if (!check_message(client_final, "client-final-message", error)) return false;

  AttrReader r(client_final, "client-final-message");
  std::string_view cbind, nonce;
  if (!r.read('c', cbind, error)) return false;
  auto cbind_raw = base64_decode(cbind);
  if (!cbind_raw) {
    error = "malformed SCRAM client-final-message: invalid base64 in channel-binding attribute";
    return false;
  }
  // c= repeats the gs2 header of client-first (which names the same flag),
  // followed by the channel binding data for 'p'.
  std::string expected = gs2_header_;
  if (cb_in_use_) expected += cb_data_;
  if (!constant_time_equal(*cbind_raw, expected)) {
    error = cb_in_use_ ? "SCRAM channel binding check failed"
                       : "unexpected SCRAM channel-binding attribute in client-final-message";
    return false;
  }
  if (!r.read('r', nonce, error)) return false;
  if (!constant_time_equal(nonce, nonce_)) {
    error = "invalid SCRAM response: nonce does not match";
    return false;
  }
  // Optional extensions, then the proof, which must come last.
  size_t proof_start = 0;
  std::string_view proof_b64;
  for (;;) {
    proof_start = r.pos();
    char attr;
    std::string_view value;
    if (!r.read_any(attr, value, error)) return false;
    if (attr == 'p') {
      proof_b64 = value;
      break;
    }
  }
  if (!r.at_end()) {
    error = "malformed SCRAM client-final-message: garbage after the proof";
    return false;
  }
  auto proof = decode_key(proof_b64);
  if (!proof) {
    error = "malformed SCRAM client-final-message: malformed proof";
    return false;
  }
  // proof_start is just after the ',' that precedes "p=".
  std::string_view without_proof = client_final.substr(0, proof_start - 1);

  std::string auth_message;
  auth_message.reserve(client_first_bare_.size() + server_first_.size() + without_proof.size() + 2);
  auth_message.append(client_first_bare_).append(",").append(server_first_).append(",").append(
      without_proof);

  // Same work for real and mock exchanges: the mock fails only at the end.
  const Sha256 client_signature = hmac_sha256(view(v_.stored_key), auth_message);
  const Sha256 client_key = xor_keys(*proof, client_signature);
  const Sha256 computed_stored = sha256(view(client_key));
  const bool proof_ok = constant_time_equal(view(computed_stored), view(v_.stored_key));
  const Sha256 server_signature = hmac_sha256(view(v_.server_key), auth_message);
  if (!proof_ok || mock_) {
    error = std::string(kScramAuthFailed);
    return false;
  }
  keys_.client_key = client_key;
  keys_.server_key = v_.server_key;
  server_final = "v=" + base64_encode(view(server_signature));
  return true;
}

// ---------------------------------------------------------------------------
// Client

ScramClient ScramClient::with_password(std::string_view password) {
  ScramClient c;
  c.password_ = scram_prepare_password(password);
  return c;
}

ScramClient ScramClient::with_keys(const ScramKeys& keys) {
  ScramClient c;
  c.keys_ = keys;
  c.have_keys_ = true;
  return c;
}

std::string ScramClient::mechanism() const {
  return std::string(cb_data_.empty() ? kMechanism : kMechanismPlus);
}

std::string ScramClient::client_first() {
  client_nonce_ = test_nonce_.empty() ? random_nonce() : test_nonce_;
  gs2_header_ = !cb_data_.empty() ? std::string(kCbindHeader) : could_bind_ ? std::string("y,,") : std::string("n,,");
  client_first_bare_ = "n=" + escape_saslname(test_user_) + ",r=" + client_nonce_;
  step_ = Step::server_first;
  return gs2_header_ + client_first_bare_;
}

bool ScramClient::handle_server_first(std::string_view server_first, std::string& client_final,
                                      std::string& error) {
  client_final.clear();
  if (step_ != Step::server_first) {
    error = "SCRAM exchange out of order: server-first-message not expected now";
    step_ = Step::done;
    return false;
  }
  step_ = Step::done;
  if (!check_message(server_first, "server-first-message", error)) return false;

  AttrReader r(server_first, "server-first-message");
  if (r.peek() == 'm') {
    error = "server requires an unsupported SCRAM extension (m=)";
    return false;
  }
  std::string_view nonce, salt_b64, iter_text;
  if (!r.read('r', nonce, error)) return false;
  // The server must extend our nonce with its own part.
  if (nonce.size() <= client_nonce_.size() ||
      !constant_time_equal(nonce.substr(0, client_nonce_.size()), client_nonce_) ||
      !is_printable_nonce(nonce)) {
    error = "invalid SCRAM response (nonce mismatch)";
    return false;
  }
  if (!r.read('s', salt_b64, error)) return false;
  auto salt = base64_decode(salt_b64);
  if (!salt) {
    error = "malformed SCRAM server-first-message: invalid salt";
    return false;
  }
  if (!r.read('i', iter_text, error)) return false;
  auto iterations = parse_iterations(iter_text);
  if (!iterations) {
    error = "malformed SCRAM server-first-message: invalid iteration count";
    return false;
  }
  while (!r.at_end()) {  // optional extensions
    char attr;
    std::string_view value;
    if (!r.read_any(attr, value, error)) return false;
  }

  Sha256 client_key{}, server_key{};
  if (have_keys_) {
    client_key = keys_.client_key;
    server_key = keys_.server_key;
  } else if (password_) {
    if (*iterations > kScramMaxServerIterations) {
      error = "server asks for " + std::to_string(*iterations) +
              " SCRAM iterations; pgmux computes at most " + std::to_string(kScramMaxServerIterations) +
              " (lower scram_iterations on the server for this role, or give pgmux the SCRAM keys)";
      return false;
    }
    const Sha256 salted = salted_password_cached(*password_, *salt, *iterations);
    client_key = client_key_from(salted);
    server_key = server_key_from(salted);
  } else {
    error = "SCRAM client has neither a password nor keys";
    return false;
  }

  std::string cbind_input = gs2_header_;
  if (gs2_header_ == kCbindHeader) cbind_input += cb_data_;
  std::string without_proof = "c=" + base64_encode(cbind_input) + ",r=" + std::string(nonce);

  std::string auth_message;
  auth_message.reserve(client_first_bare_.size() + server_first.size() + without_proof.size() + 2);
  auth_message.append(client_first_bare_).append(",").append(server_first).append(",").append(
      without_proof);

  const Sha256 stored_key = sha256(view(client_key));
  const Sha256 client_signature = hmac_sha256(view(stored_key), auth_message);
  const Sha256 proof = xor_keys(client_key, client_signature);
  server_signature_ = hmac_sha256(view(server_key), auth_message);

  client_final = without_proof + ",p=" + base64_encode(view(proof));
  step_ = Step::server_final;
  return true;
}

bool ScramClient::handle_server_final(std::string_view server_final, std::string& error) {
  if (step_ != Step::server_final) {
    error = "SCRAM exchange out of order: server-final-message not expected now";
    step_ = Step::done;
    return false;
  }
  step_ = Step::done;
  if (!check_message(server_final, "server-final-message", error)) return false;

  AttrReader r(server_final, "server-final-message");
  if (r.peek() == 'e') {
    std::string_view text;
    if (!r.read('e', text, error)) return false;
    error = "error received from server in SCRAM exchange: " + sanitize(text);
    return false;
  }
  std::string_view sig_b64;
  if (!r.read('v', sig_b64, error)) return false;
  while (!r.at_end()) {  // optional extensions
    char attr;
    std::string_view value;
    if (!r.read_any(attr, value, error)) return false;
  }
  auto sig = decode_key(sig_b64);
  if (!sig) {
    error = "malformed SCRAM server-final-message: invalid server signature";
    return false;
  }
  if (!constant_time_equal(view(*sig), view(server_signature_))) {
    error = "incorrect server signature";
    return false;
  }
  return true;
}

ScramCacheStats scram_salted_password_cache_stats() { return salted_cache().stats(); }

}  // namespace pgmux::auth
