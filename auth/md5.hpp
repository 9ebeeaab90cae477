// PostgreSQL's MD5 password scheme.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pgmux::auth {

// "md5" + md5hex(password + user): what pg_authid stores.
std::string md5_password_hash(std::string_view user, std::string_view password);
// The response to an AuthenticationMD5Password challenge, from the stored
// hash ("md5..." 35 chars): "md5" + md5hex(hash_hex + salt). The hex digits
// are lowercased first (what clients hash). Returns "" if `stored_hash` is not
// an MD5 hash (is_md5_hash), which never equals a 35-char client response.
std::string md5_response_from_hash(std::string_view stored_hash, const uint8_t salt[4]);
// Same, from a plaintext password.
std::string md5_response(std::string_view user, std::string_view password, const uint8_t salt[4]);
// Is `s` a stored MD5 hash ("md5" + 32 lowercase or uppercase hex digits)?
bool is_md5_hash(std::string_view s);

}  // namespace pgmux::auth
