#include "auth/userlist.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "auth/md5.hpp"

namespace pgmux::auth {

namespace {

constexpr std::string_view kScramPrefix = "SCRAM-SHA-256$";
constexpr size_t kMaxFileSize = 64u << 20;  // a userlist this big is a mistake

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string printable(std::string_view s) {
  std::string out;
  for (char ch : s.substr(0, 64)) {
    auto c = static_cast<unsigned char>(ch);
    out += (c >= 0x20 && c < 0x7f) ? ch : '?';
  }
  if (s.size() > 64) out += "...";
  return out;
}

// Reads a quoted field starting at line[pos] == '"'. Inside, "" is one quote.
// On success `pos` is just past the closing quote.
bool read_quoted(std::string_view line, size_t& pos, std::string& out) {
  out.clear();
  ++pos;  // opening quote
  while (pos < line.size()) {
    char c = line[pos];
    if (c == '"') {
      if (pos + 1 < line.size() && line[pos + 1] == '"') {
        out += '"';
        pos += 2;
        continue;
      }
      ++pos;
      return true;
    }
    out += c;
    ++pos;
  }
  return false;
}

}  // namespace

Secret classify_secret(std::string_view text) {
  Secret s;
  s.text = std::string(text);
  if (auto v = parse_scram_verifier(text)) {
    s.kind = SecretKind::scram;
    s.scram = std::move(*v);
  } else if (is_md5_hash(text)) {
    s.kind = SecretKind::md5;
  } else {
    s.kind = SecretKind::plain;
  }
  return s;
}

const Secret* Userlist::find(std::string_view user) const {
  auto it = users.find(user);
  return it == users.end() ? nullptr : &it->second;
}

UserlistResult parse_userlist(std::string_view content) {
  auto list = std::make_shared<Userlist>();
  auto fail = [](size_t line_no, const std::string& why) {
    return UserlistResult{nullptr, "line " + std::to_string(line_no) + ": " + why};
  };

  // A UTF-8 byte order mark from a Windows editor is not part of line 1.
  if (content.substr(0, 3) == "\xEF\xBB\xBF") content.remove_prefix(3);

  size_t line_no = 0;
  size_t start = 0;
  while (start < content.size()) {
    ++line_no;
    size_t end = content.find('\n', start);
    if (end == std::string_view::npos) end = content.size();
    std::string_view line = content.substr(start, end - start);
    start = end + 1;

    if (line.find('\0') != std::string_view::npos) return fail(line_no, "NUL byte");
    size_t pos = 0;
    while (pos < line.size() && is_blank(line[pos])) ++pos;
    if (pos == line.size() || line[pos] == ';' || line[pos] == '#') continue;

    if (line[pos] != '"') return fail(line_no, "expected '\"' to start the user name");
    std::string user, secret;
    if (!read_quoted(line, pos, user)) return fail(line_no, "unterminated quote");
    if (user.empty()) return fail(line_no, "empty user name");

    if (pos < line.size() && !is_blank(line[pos]))
      return fail(line_no, "expected whitespace after the user name");
    while (pos < line.size() && is_blank(line[pos])) ++pos;
    if (pos == line.size()) return fail(line_no, "missing secret (expected \"user\" \"secret\")");
    if (line[pos] != '"') return fail(line_no, "expected '\"' to start the secret");
    if (!read_quoted(line, pos, secret)) return fail(line_no, "unterminated quote");
    // Anything after the secret is ignored, as PgBouncer does.

    Secret s = classify_secret(secret);
    if (s.kind != SecretKind::scram && secret.compare(0, kScramPrefix.size(), kScramPrefix) == 0) {
      // Treating a mistyped verifier as a plain password would make the
      // verifier text itself the password.
      return fail(line_no, "malformed SCRAM verifier for user \"" + printable(user) + "\"");
    }
    list->users.insert_or_assign(std::move(user), std::move(s));  // last entry wins
  }
  return UserlistResult{std::move(list), {}};
}

UserlistResult load_userlist(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return {nullptr, "cannot open " + path + ": " + std::strerror(errno)};
  std::string content;
  char buf[65536];
  for (;;) {
    size_t n = std::fread(buf, 1, sizeof buf, f);
    content.append(buf, n);
    if (content.size() > kMaxFileSize) {
      std::fclose(f);
      return {nullptr, "cannot read " + path + ": larger than 64 MiB"};
    }
    if (n < sizeof buf) {
      if (std::ferror(f)) {
        int err = errno;
        std::fclose(f);
        return {nullptr, "cannot read " + path + ": " + std::strerror(err)};
      }
      break;
    }
  }
  std::fclose(f);
  return parse_userlist(content);
}

}  // namespace pgmux::auth
