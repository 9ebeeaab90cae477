// PgBouncer's auth_file format: one `"user" "secret"` pair per line.
// Inside quotes a doubled quote ("") stands for one quote. Lines starting with
// ';' or '#' and blank lines are ignored. Extra fields after the secret are
// ignored (PgBouncer tolerates them).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "auth/scram.hpp"

namespace pgmux::auth {

enum class SecretKind { plain, md5, scram };

struct Secret {
  SecretKind kind = SecretKind::plain;
  std::string text;       // as written in the file (password, "md5..." or verifier)
  ScramVerifier scram;    // kind == scram: parsed verifier
};

// Classifies a secret string: a valid SCRAM verifier, an md5 hash, else plain.
Secret classify_secret(std::string_view text);

struct Userlist {
  std::map<std::string, Secret, std::less<>> users;
  const Secret* find(std::string_view user) const;
};

struct UserlistResult {
  std::shared_ptr<const Userlist> list;  // null on error
  std::string error;                     // "line N: reason"
};
UserlistResult parse_userlist(std::string_view content);
UserlistResult load_userlist(const std::string& path);

}  // namespace pgmux::auth
