// Small wrappers over OpenSSL primitives used by authentication.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pgmux::auth {

using Sha256 = std::array<uint8_t, 32>;

Sha256 sha256(std::string_view data);
Sha256 hmac_sha256(std::string_view key, std::string_view data);
// iterations must be >= 1 (std::invalid_argument otherwise: a caller bug;
// parsers reject such counts before they get here).
Sha256 pbkdf2_sha256(std::string_view password, std::string_view salt, int iterations);
std::string md5_hex(std::string_view data);  // 32 lowercase hex chars

std::string base64_encode(std::string_view raw);
// Strict (RFC 4648 section 3.5 canonical): standard alphabet, length a multiple
// of 4, '=' padding only at the end, no whitespace, zero unused bits. Every
// byte string has exactly one accepted encoding.
std::optional<std::string> base64_decode(std::string_view b64);

// Constant-time comparison (CRYPTO_memcmp); different lengths compare unequal.
bool constant_time_equal(std::string_view a, std::string_view b);

// Cryptographically secure random bytes (RAND_bytes). Aborts only if the
// OpenSSL RNG is unusable, which makes safe operation impossible.
void random_bytes(void* out, size_t n);
uint32_t random_u32();

inline std::string_view view(const Sha256& h) {
  return {reinterpret_cast<const char*>(h.data()), h.size()};
}

}  // namespace pgmux::auth
