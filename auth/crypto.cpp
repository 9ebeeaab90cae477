#include "auth/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <pthread.h>

#include <climits>
#include <cstring>
#include <initializer_list>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace pgmux::auth {

namespace {

// OpenSSL failing on a fixed-size digest of in-memory data means the library
// is broken (or out of memory); nothing an untrusted peer can trigger.
[[noreturn]] void fatal(const char* what) {
  std::fprintf(stderr, "pgmux: fatal: %s failed in OpenSSL; cannot continue safely\n", what);
  std::fflush(stderr);
  std::abort();
}

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

int checked_int(size_t n, const char* what) {
  if (n > static_cast<size_t>(INT_MAX)) fatal(what);
  return static_cast<int>(n);
}

constexpr char kB64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// -1 = not a base64 alphabet character.
constexpr int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// SHA-256 fetched once. OpenSSL 3 looks the algorithm up in its provider
// tables on every use of EVP_sha256() or HMAC(): that lookup cost about
// 20,000 instructions per HMAC, several times the hash itself, and a SCRAM
// login makes several.
const EVP_MD* sha256_md() {
  static EVP_MD* md = [] {
    EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (!m) fatal("fetching SHA-256");
    return m;
  }();
  return md;
}

// One digest context per thread, reused.
EVP_MD_CTX* digest_ctx() {
  struct Holder {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Holder() { EVP_MD_CTX_free(ctx); }
  };
  static thread_local Holder h;
  if (!h.ctx) fatal("EVP_MD_CTX_new");
  return h.ctx;
}

void digest_parts(std::initializer_list<std::string_view> parts, unsigned char* out) {
  EVP_MD_CTX* ctx = digest_ctx();
  unsigned int len = 0;
  if (EVP_DigestInit_ex2(ctx, sha256_md(), nullptr) != 1) fatal("SHA-256");
  for (std::string_view p : parts)
    if (!p.empty() && EVP_DigestUpdate(ctx, p.data(), p.size()) != 1) fatal("SHA-256");
  if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != 32) fatal("SHA-256");
}

}  // namespace

Sha256 sha256(std::string_view data) {
  Sha256 out{};
  digest_parts({data}, out.data());
  return out;
}

// HMAC (RFC 2104) over the cached digest.
Sha256 hmac_sha256(std::string_view key, std::string_view data) {
  constexpr size_t kBlock = 64;
  unsigned char k[kBlock] = {};
  if (key.size() > kBlock) {
    digest_parts({key}, k);
  } else if (!key.empty()) {
    std::memcpy(k, key.data(), key.size());
  }
  unsigned char ipad[kBlock], opad[kBlock];
  for (size_t i = 0; i < kBlock; ++i) {
    ipad[i] = static_cast<unsigned char>(k[i] ^ 0x36);
    opad[i] = static_cast<unsigned char>(k[i] ^ 0x5c);
  }
  auto sv = [](const unsigned char* p, size_t n) {
    return std::string_view(reinterpret_cast<const char*>(p), n);
  };
  Sha256 inner{}, out{};
  digest_parts({sv(ipad, kBlock), data}, inner.data());
  digest_parts({sv(opad, kBlock), sv(inner.data(), inner.size())}, out.data());
  OPENSSL_cleanse(k, sizeof k);
  OPENSSL_cleanse(ipad, sizeof ipad);
  OPENSSL_cleanse(opad, sizeof opad);
  OPENSSL_cleanse(inner.data(), inner.size());
  return out;
}

Sha256 pbkdf2_sha256(std::string_view password, std::string_view salt, int iterations) {
  if (iterations < 1) throw std::invalid_argument("pbkdf2_sha256: iterations must be >= 1");
  Sha256 out{};
  static const unsigned char empty = 0;
  if (PKCS5_PBKDF2_HMAC(password.empty() ? "" : password.data(),
                        checked_int(password.size(), "PBKDF2"),
                        salt.empty() ? &empty : bytes(salt), checked_int(salt.size(), "PBKDF2"),
                        iterations, sha256_md(), static_cast<int>(out.size()),
                        out.data()) != 1)
    fatal("PBKDF2-HMAC-SHA-256");
  return out;
}

std::string md5_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1 || len != 16)
    fatal("MD5");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(32, '\0');
  for (unsigned i = 0; i < 16; ++i) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 0xf];
  }
  return out;
}

std::string base64_encode(std::string_view raw) {
  std::string out;
  out.reserve((raw.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= raw.size(); i += 3) {
    uint32_t v = (uint32_t(uint8_t(raw[i])) << 16) | (uint32_t(uint8_t(raw[i + 1])) << 8) |
                 uint32_t(uint8_t(raw[i + 2]));
    out += kB64Alphabet[(v >> 18) & 63];
    out += kB64Alphabet[(v >> 12) & 63];
    out += kB64Alphabet[(v >> 6) & 63];
    out += kB64Alphabet[v & 63];
  }
  size_t rest = raw.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t(uint8_t(raw[i])) << 16;
    out += kB64Alphabet[(v >> 18) & 63];
    out += kB64Alphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    uint32_t v = (uint32_t(uint8_t(raw[i])) << 16) | (uint32_t(uint8_t(raw[i + 1])) << 8);
    out += kB64Alphabet[(v >> 18) & 63];
    out += kB64Alphabet[(v >> 12) & 63];
    out += kB64Alphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// Strict RFC 4648 decoding: standard alphabet only, length a multiple of 4,
// '=' only as the last one or two characters, no whitespace, and the unused
// bits before the padding must be zero, so every byte string has exactly one
// accepted encoding (lets callers compare encodings or decodings alike).
std::optional<std::string> base64_decode(std::string_view b64) {
  if (b64.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(b64.size() / 4 * 3);
  for (size_t i = 0; i < b64.size(); i += 4) {
    const bool last = i + 4 == b64.size();
    int pad = 0;
    if (last) {
      if (b64[i + 3] == '=') pad = (b64[i + 2] == '=') ? 2 : 1;
    }
    int v[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4 - pad; ++k) {
      v[k] = b64_value(static_cast<unsigned char>(b64[i + k]));
      if (v[k] < 0) return std::nullopt;  // includes a misplaced '='
    }
    uint32_t w = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) |
                 uint32_t(v[3]);
    out += static_cast<char>((w >> 16) & 0xff);
    if (pad == 2) {
      if (v[1] & 0x0f) return std::nullopt;  // non-canonical trailing bits
      break;
    }
    out += static_cast<char>((w >> 8) & 0xff);
    if (pad == 1) {
      if (v[2] & 0x03) return std::nullopt;
      break;
    }
    out += static_cast<char>(w & 0xff);
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {
void rand_or_die(unsigned char* p, size_t n) {
  while (n > 0) {
    int chunk = n > (1u << 30) ? (1 << 30) : static_cast<int>(n);
    if (RAND_bytes(p, chunk) != 1) {
      std::fprintf(stderr,
                   "pgmux: fatal: RAND_bytes failed; no secure randomness, cannot continue "
                   "safely\n");
      std::fflush(stderr);
      std::abort();
    }
    p += chunk;
    n -= static_cast<size_t>(chunk);
  }
}

// Small requests (nonces, cancel keys: a few per login) are served from a
// per-thread block drawn from RAND_bytes, since each RAND_bytes call costs
// about 10,000 instructions of locking and DRBG bookkeeping whatever its
// size. Served bytes are wiped from the block.
struct RandomPool {
  static constexpr size_t kSize = 4096;
  unsigned char buf[kSize];
  size_t left = 0;
  ~RandomPool() { OPENSSL_cleanse(buf, sizeof buf); }
};
thread_local RandomPool t_random_pool;

// A forked child must not serve the bytes its parent may serve too.
void forget_random_pool_in_child() {
  OPENSSL_cleanse(t_random_pool.buf, sizeof t_random_pool.buf);
  t_random_pool.left = 0;
}
}  // namespace

void random_bytes(void* out, size_t n) {
  auto* p = static_cast<unsigned char*>(out);
  static const bool fork_hook = [] {
    pthread_atfork(nullptr, nullptr, forget_random_pool_in_child);
    return true;
  }();
  (void)fork_hook;
  RandomPool& pool = t_random_pool;
  if (n > RandomPool::kSize / 4) {
    rand_or_die(p, n);
    return;
  }
  while (n > 0) {
    if (pool.left == 0) {
      rand_or_die(pool.buf, RandomPool::kSize);
      pool.left = RandomPool::kSize;
    }
    size_t take = n < pool.left ? n : pool.left;
    unsigned char* src = pool.buf + (RandomPool::kSize - pool.left);
    std::memcpy(p, src, take);
    OPENSSL_cleanse(src, take);
    pool.left -= take;
    p += take;
    n -= take;
  }
}

uint32_t random_u32() {
  uint32_t v = 0;
  random_bytes(&v, sizeof v);
  return v;
}

}  // namespace pgmux::auth
