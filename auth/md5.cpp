#include "auth/md5.hpp"

#include "auth/crypto.hpp"

namespace pgmux::auth {

std::string md5_password_hash(std::string_view user, std::string_view password) {
  std::string in;
  in.reserve(password.size() + user.size());
  in.append(password).append(user);
  return "md5" + md5_hex(in);
}

std::string md5_response_from_hash(std::string_view stored_hash, const uint8_t salt[4]) {
  if (!is_md5_hash(stored_hash)) return {};
  // PostgreSQL stores lowercase hex and clients hash the lowercase form; a
  // hand-written userlist entry in uppercase must give the same response.
  std::string in;
  in.reserve(32 + 4);
  for (char c : stored_hash.substr(3))
    in += (c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c;
  in.append(reinterpret_cast<const char*>(salt), 4);
  return "md5" + md5_hex(in);
}

std::string md5_response(std::string_view user, std::string_view password, const uint8_t salt[4]) {
  return md5_response_from_hash(md5_password_hash(user, password), salt);
}

bool is_md5_hash(std::string_view s) {
  if (s.size() != 35 || s.substr(0, 3) != "md5") return false;
  for (char c : s.substr(3))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      return false;
  return true;
}

}  // namespace pgmux::auth
