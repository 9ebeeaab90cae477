// PgBouncer's auth_file format: one `"user" "secret"` pair per line.
// Inside quotes a doubled quote ("") stands for one quote. Lines starting with
// ';' or '#' and blank lines are ignored. Extra fields after the secret are
// ignored (PgBouncer tolerates them).
//
// Stricter than PgBouncer (which silently stops loading at the first broken
// line): any malformed line fails the whole file with "line N: reason" —
// a field not starting with '"', an unterminated quote (a quoted field cannot
// span lines), an empty user name, a missing secret, no whitespace between the
// two fields, a NUL byte, or a secret starting with "SCRAM-SHA-256$" that is
// not a valid verifier. Leading blanks, CRLF line ends and a UTF-8 BOM are
// accepted. An empty secret is kept (kind plain, empty text); like PostgreSQL,
// callers should treat an empty password as "no password" and never accept it.
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
// Errors: "cannot open <path>: <reason>", or parse_userlist's "line N: reason"
// (the caller adds the path if it wants it in its log line).
UserlistResult load_userlist(const std::string& path);

}  // namespace pgmux::auth
