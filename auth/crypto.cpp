#include "auth/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <climits>
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

}  // namespace

Sha256 sha256(std::string_view data) {
  Sha256 out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != out.size())
    fatal("SHA-256");
  return out;
}

Sha256 hmac_sha256(std::string_view key, std::string_view data) {
  Sha256 out{};
  unsigned int len = 0;
  // HMAC() rejects a NULL key pointer even with length 0.
  static const unsigned char empty = 0;
  const unsigned char* k = key.empty() ? &empty : bytes(key);
  if (HMAC(EVP_sha256(), k, checked_int(key.size(), "HMAC-SHA-256"),
           data.empty() ? &empty : bytes(data), data.size(), out.data(), &len) == nullptr ||
      len != out.size())
    fatal("HMAC-SHA-256");
  return out;
}

Sha256 pbkdf2_sha256(std::string_view password, std::string_view salt, int iterations) {
  if (iterations < 1) throw std::invalid_argument("pbkdf2_sha256: iterations must be >= 1");
  Sha256 out{};
  static const unsigned char empty = 0;
  if (PKCS5_PBKDF2_HMAC(password.empty() ? "" : password.data(),
                        checked_int(password.size(), "PBKDF2"),
                        salt.empty() ? &empty : bytes(salt), checked_int(salt.size(), "PBKDF2"),
                        iterations, EVP_sha256(), static_cast<int>(out.size()),
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

void random_bytes(void* out, size_t n) {
  auto* p = static_cast<unsigned char*>(out);
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

uint32_t random_u32() {
  uint32_t v = 0;
  random_bytes(&v, sizeof v);
  return v;
}

}  // namespace pgmux::auth
