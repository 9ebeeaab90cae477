#include "auth/hba.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace pgmux::auth {

namespace {

constexpr size_t kMaxRecord = 8192;       // bytes in one record, continuations included
constexpr size_t kMaxRules = 10000;
constexpr size_t kMaxFileSize = 16u << 20;  // 10000 rules fit many times over

struct Token {
  std::string text;
  bool quoted = false;  // any '"' in it: keywords, +group and @file lose their meaning
};
using Field = std::vector<Token>;  // a comma-separated list; usually one token

struct Ip {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // network order; IPv4 in the first 4
};

// PostgreSQL's pg_isblank: CR counts as a blank, so CRLF files work.
bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// For error messages: printable ASCII only, at most 64 characters of `s`.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char ch : s.substr(0, 64)) {
    auto c = static_cast<unsigned char>(ch);
    out += (c >= 0x20 && c < 0x7f) ? ch : '?';
  }
  if (s.size() > 64) out += "...";
  return out + "\"";
}

// Names and comments may be UTF-8 but not arbitrary bytes: a file with
// control characters or broken UTF-8 is not a text file someone wrote.
std::string check_bytes(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == 0) return "NUL byte";
      if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
        char buf[48];
        std::snprintf(buf, sizeof buf, "control character 0x%02x", c);
        return buf;
      }
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return "invalid UTF-8";
    }
    if (s.size() - i < len) return "invalid UTF-8";
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return "invalid UTF-8";
      cp = (cp << 6) | (b & 0x3f);
    }
    // Overlong forms, surrogates and code points past Unicode.
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return "invalid UTF-8";
    i += len;
  }
  return {};
}

// Splits a record into fields, PostgreSQL's next_token: a field ends at an
// unquoted blank; an unquoted ',' continues the list with the next token
// (blanks after the comma allowed); an unquoted '#' ends the record; quotes
// may appear anywhere in a token and "" inside quotes is one quote.
std::string tokenize(std::string_view line, std::vector<Field>& fields) {
  size_t pos = 0;
  const size_t n = line.size();
  for (;;) {
    while (pos < n && is_blank(line[pos])) ++pos;
    if (pos == n || line[pos] == '#') return {};
    Field field;
    for (;;) {
      // PostgreSQL skips empty elements; an empty element is more likely a
      // mistake than a shorthand, so refuse it.
      if (line[pos] == ',') return "empty element in a comma-separated list";
      Token tok;
      bool in_quote = false, was_quote = false, comma = false, comment = false;
      while (pos < n && (in_quote || !is_blank(line[pos]))) {
        const char c = line[pos];
        if (!in_quote && c == '#') {
          comment = true;
          pos = n;
          break;
        }
        ++pos;
        if (!in_quote && c == ',') {
          comma = true;
          break;
        }
        if (c != '"' || was_quote) tok.text += c;
        was_quote = (in_quote && c == '"') ? !was_quote : false;
        if (c == '"') {
          in_quote = !in_quote;
          tok.quoted = true;
        }
      }
      if (in_quote) return "unterminated quote";
      field.push_back(std::move(tok));
      if (comment) {
        fields.push_back(std::move(field));
        return {};
      }
      if (!comma) break;
      while (pos < n && is_blank(line[pos])) ++pos;
      if (pos == n || line[pos] == '#') return "comma-separated list ends with a comma";
    }
    fields.push_back(std::move(field));
  }
}

bool parse_ip(std::string_view s, Ip& out) {
  // inet_pton wants a C string; nothing longer than this is an address.
  if (s.empty() || s.size() > 64 || s.find('\0') != std::string_view::npos) return false;
  const std::string z(s);
  out = Ip{};
  if (inet_pton(AF_INET, z.c_str(), out.bytes.data()) == 1) return true;
  out = Ip{};
  if (inet_pton(AF_INET6, z.c_str(), out.bytes.data()) == 1) {
    out.v6 = true;
    return true;
  }
  out = Ip{};
  return false;
}

// Clears the bits past the first `bits`.
void apply_prefix(std::array<uint8_t, 16>& b, int bits) {
  for (auto& byte : b) {
    if (bits >= 8) {
      bits -= 8;
    } else {
      byte = bits > 0 ? static_cast<uint8_t>(byte & (0xff << (8 - bits))) : 0;
      bits = 0;
    }
  }
}

// The prefix length of a netmask, or -1 if its one bits are not contiguous.
int prefix_of_mask(const Ip& mask) {
  const size_t len = mask.v6 ? 16 : 4;
  int bits = 0;
  size_t i = 0;
  while (i < len && mask.bytes[i] == 0xff) bits += 8, ++i;
  if (i < len) {
    const uint8_t b = mask.bytes[i];
    int ones = 0;
    while (ones < 8 && (b & (0x80 >> ones))) ++ones;
    if (static_cast<uint8_t>(b << ones) != 0) return -1;
    bits += ones;
    for (++i; i < len; ++i)
      if (mask.bytes[i] != 0) return -1;
  }
  return bits;
}

// Only for choosing the error message: "300.1.1.1" and "fe80::1%eth0" are
// broken addresses, "db.example.com" is a host name.
bool looks_like_ip(std::string_view s) {
  if (s.find(':') != std::string_view::npos) return true;
  for (char c : s)
    if (!(c == '.' || (c >= '0' && c <= '9'))) return false;
  return !s.empty();
}

std::string parse_cidr(std::string_view text, HbaAddress& out) {
  const size_t slash = text.find('/');
  const std::string_view ip_text = text.substr(0, slash);
  const std::string_view bits_text = text.substr(slash + 1);
  Ip ip;
  if (!parse_ip(ip_text, ip)) return "invalid IP address " + quoted(ip_text) + " in " + quoted(text);
  const int max = ip.v6 ? 128 : 32;
  int bits = 0;
  bool ok = !bits_text.empty() && bits_text.size() <= 3;
  for (char c : bits_text) {
    if (c < '0' || c > '9') ok = false;
    if (ok) bits = bits * 10 + (c - '0');
  }
  if (!ok || bits > max)
    return "invalid prefix length in " + quoted(text) + " (0.." + std::to_string(max) + " for " +
           (ip.v6 ? "IPv6)" : "IPv4)");
  out.family = ip.v6 ? HbaAddress::Family::ipv6 : HbaAddress::Family::ipv4;
  out.network = ip.bytes;
  out.prefix_len = bits;
  apply_prefix(out.network, bits);  // PostgreSQL ignores host bits too: it compares masked
  return {};
}

bool address_matches(const HbaAddress& a, const Ip& peer) {
  switch (a.family) {
    case HbaAddress::Family::any:
      return true;
    case HbaAddress::Family::ipv4:
    case HbaAddress::Family::ipv6: {
      // No promotion of IPv4 rules to IPv4-mapped IPv6 (PostgreSQL dropped it
      // in 9.0): ::ffff:10.1.2.3 does not match 10.0.0.0/8.
      if (peer.v6 != (a.family == HbaAddress::Family::ipv6)) return false;
      std::array<uint8_t, 16> masked = peer.bytes;
      apply_prefix(masked, a.prefix_len);
      return masked == a.network;
    }
  }
  return false;
}

std::string parse_name(const Token& tok, bool database, HbaName& out) {
  const std::string& t = tok.text;
  const char* what = database ? "database" : "user";
  if (!tok.quoted) {
    if (t == "all") {
      out.kind = HbaName::Kind::all;
      return {};
    }
    if (database) {
      if (t == "sameuser") {
        out.kind = HbaName::Kind::sameuser;
        return {};
      }
      if (t == "samerole" || t == "samegroup") return t + " is not supported by pgmux (it has no roles)";
      if (t == "replication") {
        out.kind = HbaName::Kind::replication;
        return {};
      }
    } else if (!t.empty() && t[0] == '+') {
      return "+group (role membership) is not supported by pgmux: " + quoted(t);
    }
    if (!t.empty() && t[0] == '@') return "@file includes are not supported by pgmux: " + quoted(t);
  }
  if (t.empty()) return std::string("empty ") + what + " name";
  // PostgreSQL 16 reads any name starting with '/' as a regular expression,
  // quoted or not; refusing it keeps such a file from meaning something else.
  if (t[0] == '/') return "regular expressions are not supported by pgmux: " + quoted(t);
  out.kind = HbaName::Kind::name;
  out.name = t;
  return {};
}

bool name_matches(const std::vector<HbaName>& list, const std::string& value, const std::string& user) {
  for (const HbaName& n : list) {
    switch (n.kind) {
      case HbaName::Kind::all:
        return true;
      case HbaName::Kind::sameuser:
        if (value == user) return true;
        break;
      case HbaName::Kind::replication:
        break;  // only a physical replication connection, which pgmux refuses
      case HbaName::Kind::name:
        if (value == n.name) return true;
        break;
    }
  }
  return false;
}

bool is_unsupported_option(std::string_view name) {
  for (std::string_view o : {"clientname", "include_realm", "krb_realm", "compat_realm", "upn_username",
                             "pamservice", "pam_use_hostname", "issuer", "scope", "validator",
                             "delegate_ident_mapping"})
    if (name == o) return true;
  return name.substr(0, 4) == "ldap" || name.substr(0, 6) == "radius";
}

// One record (at least one field) into `rule`; returns the reason it is wrong.
std::string parse_rule(const std::vector<Field>& f, HbaRule& rule) {
  if (f[0].size() != 1) return "connection type must be a single value";
  const std::string& type = f[0][0].text;
  if (type == "local") {
    rule.type = HbaConnType::local;
  } else if (type == "host") {
    rule.type = HbaConnType::host;
  } else if (type == "hostssl") {
    rule.type = HbaConnType::hostssl;
  } else if (type == "hostnossl") {
    rule.type = HbaConnType::hostnossl;
  } else if (type == "hostgssenc" || type == "hostnogssenc") {
    return "connection type \"" + type + "\" is not supported by pgmux (no GSSAPI encryption)";
  } else if (type == "include" || type == "include_if_exists" || type == "include_dir") {
    return "include directives are not supported by pgmux (\"" + type + "\")";
  } else {
    return "unknown connection type " + quoted(type);
  }
  const bool local = rule.type == HbaConnType::local;
  const std::string usage =
      " (expected: " + type + (local ? " DATABASE USER METHOD [OPTIONS])" : " DATABASE USER ADDRESS METHOD [OPTIONS])");

  if (f.size() < 2) return "missing DATABASE" + usage;
  for (const Token& tok : f[1]) {
    HbaName n;
    if (auto err = parse_name(tok, true, n); !err.empty()) return err;
    rule.databases.push_back(std::move(n));
  }
  if (f.size() < 3) return "missing USER" + usage;
  for (const Token& tok : f[2]) {
    HbaName n;
    if (auto err = parse_name(tok, false, n); !err.empty()) return err;
    rule.users.push_back(std::move(n));
  }

  size_t i = 3;
  if (!local) {
    if (f.size() <= i) return "missing ADDRESS" + usage;
    if (f[i].size() != 1) return "address must be a single value";
    const Token& tok = f[i][0];
    HbaAddress addr;
    if (!tok.quoted && tok.text == "all") {
      addr.family = HbaAddress::Family::any;
    } else if (!tok.quoted && (tok.text == "samehost" || tok.text == "samenet")) {
      return tok.text + " is not supported by pgmux; write the addresses as CIDR";
    } else if (tok.text.find('/') != std::string::npos) {
      if (auto err = parse_cidr(tok.text, addr); !err.empty()) return err;
    } else {
      Ip ip;
      if (!parse_ip(tok.text, ip)) {
        if (looks_like_ip(tok.text)) return "invalid IP address " + quoted(tok.text);
        return "host names are not supported by pgmux: " + quoted(tok.text) +
               (tok.quoted && tok.text == "all" ? " (quoted, so not the keyword all)" : "") +
               "; write an IP address with /prefix, or all";
      }
      ++i;
      if (f.size() <= i) return "missing netmask after IP address " + quoted(tok.text) + usage;
      if (f[i].size() != 1) return "netmask must be a single value";
      const std::string& mask_text = f[i][0].text;
      Ip mask;
      if (!parse_ip(mask_text, mask))
        return "invalid netmask " + quoted(mask_text) + " (an IP address without /prefix takes a netmask field)";
      if (mask.v6 != ip.v6) return "IP address " + quoted(tok.text) + " and netmask " + quoted(mask_text) +
                                   " are of different address families";
      const int bits = prefix_of_mask(mask);
      if (bits < 0) return "netmask " + quoted(mask_text) + " is not contiguous";
      addr.family = ip.v6 ? HbaAddress::Family::ipv6 : HbaAddress::Family::ipv4;
      addr.network = ip.bytes;
      addr.prefix_len = bits;
      apply_prefix(addr.network, bits);
    }
    rule.address = addr;
    ++i;
  }

  if (f.size() <= i) return "missing METHOD" + usage;
  if (f[i].size() != 1) return "authentication method must be a single value";
  const std::string& method = f[i][0].text;
  if (method == "trust") {
    rule.method = HbaMethod::trust;
  } else if (method == "reject") {
    rule.method = HbaMethod::reject;
  } else if (method == "md5") {
    rule.method = HbaMethod::md5;
  } else if (method == "scram-sha-256") {
    rule.method = HbaMethod::scram_sha_256;
  } else if (method == "cert") {
    rule.method = HbaMethod::cert;
  } else if (method == "peer") {
    rule.method = HbaMethod::peer;
  } else if (method == "password") {
    return "password (cleartext) is not supported; use scram-sha-256";
  } else if (method == "ident" || method == "gss" || method == "sspi" || method == "ldap" ||
             method == "radius" || method == "pam" || method == "bsd" || method == "oauth") {
    return "authentication method \"" + method + "\" is not supported by pgmux";
  } else {
    HbaAddress ignored;
    Ip ip;
    const bool address = method.find('/') != std::string::npos ? parse_cidr(method, ignored).empty()
                                                                : parse_ip(method, ip) || method == "all";
    return "unknown authentication method " + quoted(method) +
           (local && address ? " (local lines have no ADDRESS field)" : "");
  }
  if (rule.method == HbaMethod::cert && rule.type != HbaConnType::hostssl)
    return "cert authentication is only supported on hostssl lines";
  if (rule.method == HbaMethod::peer && rule.type != HbaConnType::local)
    return "peer authentication is only supported on local lines (unix sockets)";

  for (++i; i < f.size(); ++i) {
    for (const Token& tok : f[i]) {
      const size_t eq = tok.text.find('=');
      if (eq == std::string::npos) return "authentication option not in name=value format: " + quoted(tok.text);
      const std::string name = tok.text.substr(0, eq);
      const std::string value = tok.text.substr(eq + 1);
      if (name == "clientcert") {
        if (rule.type != HbaConnType::hostssl) return "clientcert can only be configured for hostssl lines";
        if (value != "verify-ca" && value != "verify-full")
          return "invalid clientcert value " + quoted(value) + " (expected verify-ca or verify-full)";
        if (rule.method == HbaMethod::cert && value != "verify-full")
          return "clientcert only accepts verify-full with cert authentication";
        if (rule.clientcert) return "clientcert given twice";
        rule.clientcert = value;
      } else if (name == "map") {
        if (value.empty()) return "empty map name";
        if (rule.map) return "map given twice";
        rule.map = value;
      } else if (is_unsupported_option(name)) {
        return "authentication option " + quoted(name) + " is not supported by pgmux";
      } else {
        return "unknown authentication option " + quoted(name);
      }
    }
  }
  // As in PostgreSQL: cert authentication always verifies the full chain and
  // the CN, so callers need to look at one field only.
  if (rule.method == HbaMethod::cert) rule.clientcert = "verify-full";
  if (rule.map && rule.method != HbaMethod::peer && rule.method != HbaMethod::cert)
    return "map is only used with peer and cert (it maps the OS user or the certificate's common name)";
  return {};
}

// The peer's address as libuv formats it; a zone ("%eth0") does not take
// part in matching (PostgreSQL compares the address bytes only).
bool parse_peer(std::string_view text, Ip& out) {
  const size_t pct = text.find('%');
  if (pct != std::string_view::npos && text.find(':') != std::string_view::npos) text = text.substr(0, pct);
  return parse_ip(text, out);
}

}  // namespace

std::string_view to_string(HbaConnType type) {
  switch (type) {
    case HbaConnType::local:
      return "local";
    case HbaConnType::host:
      return "host";
    case HbaConnType::hostssl:
      return "hostssl";
    case HbaConnType::hostnossl:
      return "hostnossl";
  }
  return "?";
}

std::string_view to_string(HbaMethod method) {
  switch (method) {
    case HbaMethod::trust:
      return "trust";
    case HbaMethod::reject:
      return "reject";
    case HbaMethod::md5:
      return "md5";
    case HbaMethod::scram_sha_256:
      return "scram-sha-256";
    case HbaMethod::cert:
      return "cert";
    case HbaMethod::peer:
      return "peer";
  }
  return "?";
}

std::optional<HbaMatch> HbaRules::match(const HbaRequest& request) const {
  Ip peer;
  const bool have_peer = !request.unix_socket && parse_peer(request.address, peer);
  for (const HbaRule& rule : rules) {
    switch (rule.type) {
      case HbaConnType::local:
        if (!request.unix_socket) continue;
        break;
      case HbaConnType::host:
        if (request.unix_socket) continue;
        break;
      case HbaConnType::hostssl:
        if (request.unix_socket || !request.tls) continue;
        break;
      case HbaConnType::hostnossl:
        if (request.unix_socket || request.tls) continue;
        break;
    }
    if (rule.address && (!have_peer || !address_matches(*rule.address, peer))) continue;
    if (!name_matches(rule.databases, request.database, request.user)) continue;
    if (!name_matches(rule.users, request.user, request.user)) continue;
    return HbaMatch{rule.method, rule.line, rule.clientcert, rule.map};
  }
  return std::nullopt;
}

namespace {

// Calls on_record(first_line, fields) for every record that has a field:
// physical lines joined while one ends in a backslash (the backslash and the
// line break vanish, as in PostgreSQL), checked and split into fields.
// Returns {line, reason} of the first problem (on_record's too), or {0, ""}.
template <class F>
std::pair<int, std::string> read_records(std::string_view text, F&& on_record) {
  // A UTF-8 byte order mark from a Windows editor is not part of line 1.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  int line_no = 0;
  size_t pos = 0;
  std::string record;
  std::vector<Field> fields;
  while (pos < text.size()) {
    const int first_line = line_no + 1;
    record.clear();
    for (;;) {
      ++line_no;
      size_t end = text.find('\n', pos);
      if (end == std::string_view::npos) end = text.size();
      std::string_view line = text.substr(pos, end - pos);
      pos = end + 1;
      while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      const bool continued = !line.empty() && line.back() == '\\';
      if (continued) line.remove_suffix(1);
      if (line.size() > kMaxRecord - record.size())
        return {first_line, "line too long (more than " + std::to_string(kMaxRecord) + " bytes)"};
      record += line;
      if (!continued || pos >= text.size()) break;
    }
    if (auto err = check_bytes(record); !err.empty()) return {first_line, err};
    fields.clear();
    if (auto err = tokenize(record, fields); !err.empty()) return {first_line, err};
    if (fields.empty()) continue;
    if (auto err = on_record(first_line, fields); !err.empty()) return {first_line, err};
  }
  return {0, {}};
}

// The whole file, at most kMaxFileSize; false with "<path>: cannot ...".
bool read_small_file(const std::string& path, std::string& content, std::string& error) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  char buf[65536];
  for (;;) {
    const size_t n = std::fread(buf, 1, sizeof buf, f);
    content.append(buf, n);
    if (content.size() > kMaxFileSize) {
      std::fclose(f);
      error = path + ": cannot read: larger than 16 MiB";
      return false;
    }
    if (n < sizeof buf) {
      if (std::ferror(f)) {
        const int err = errno;
        std::fclose(f);
        error = path + ": cannot read: " + std::strerror(err);
        return false;
      }
      break;
    }
  }
  std::fclose(f);
  return true;
}

}  // namespace

HbaLoadResult parse_hba(std::string_view text, const std::string& source) {
  auto rules = std::make_shared<HbaRules>();
  const auto [line, error] = read_records(text, [&](int first_line, const std::vector<Field>& fields) {
    if (rules->rules.size() == kMaxRules) return "too many rules (at most " + std::to_string(kMaxRules) + ")";
    HbaRule rule;
    rule.line = first_line;
    if (auto err = parse_rule(fields, rule); !err.empty()) return err;
    rules->rules.push_back(std::move(rule));
    return std::string();
  });
  if (!error.empty()) return {nullptr, source + ":" + std::to_string(line) + ": " + error};
  // PostgreSQL refuses such a file too: it would reject every connection,
  // which is never what an operator who set hba_file meant.
  if (rules->rules.empty()) return {nullptr, source + ": no rules (every connection would be rejected)"};
  return {std::move(rules), {}};
}

HbaLoadResult load_hba_file(const std::string& path) {
  std::string content, error;
  if (!read_small_file(path, content, error)) return {nullptr, error};
  return parse_hba(content, path);
}

// ---------------------------------------------------------------------------
// Ident maps

bool IdentMap::has_map(std::string_view name) const {
  return std::any_of(entries.begin(), entries.end(), [&](const IdentEntry& e) { return e.map == name; });
}

bool IdentMap::allows(std::string_view map, const std::string& system_user, std::string_view database_user) const {
  for (const IdentEntry& e : entries) {
    if (e.map != map) continue;
    std::string wanted = e.database_user;
    if (e.pattern) {
      std::smatch m;
      if (!std::regex_search(system_user, m, *e.pattern)) continue;
      // PostgreSQL substitutes the first parenthesized group for \1.
      if (const size_t at = wanted.find("\\1"); at != std::string::npos) {
        if (m.size() < 2 || !m[1].matched) continue;  // PostgreSQL: an error, so no login
        wanted.replace(at, 2, m[1].str());
      }
    } else if (e.system_user != system_user) {
      continue;
    }
    if (e.all_users || wanted == database_user) return true;
  }
  return false;
}

IdentLoadResult parse_ident(std::string_view text, const std::string& source) {
  auto map = std::make_shared<IdentMap>();
  const auto [line, error] = read_records(text, [&](int first_line, const std::vector<Field>& fields) {
    if (map->entries.size() == kMaxRules) return "too many lines (at most " + std::to_string(kMaxRules) + ")";
    if (fields.size() != 3) return std::string("expected MAPNAME SYSTEM-USERNAME DATABASE-USERNAME");
    for (const Field& f : fields)
      if (f.size() != 1) return std::string("a list where one value is expected");
    IdentEntry e;
    e.line = first_line;
    e.map = fields[0][0].text;
    const Token& sys = fields[1][0];
    const Token& db = fields[2][0];
    if (!sys.quoted && !sys.text.empty() && sys.text[0] == '/') {
      e.system_user = sys.text.substr(1);
      try {
        e.pattern = std::make_shared<const std::regex>(e.system_user, std::regex::ECMAScript);
      } catch (const std::regex_error& ex) {
        return "invalid regular expression " + quoted(e.system_user) + ": " + ex.what();
      }
    } else {
      e.system_user = sys.text;
    }
    if (!db.quoted && (db.text == "all")) e.all_users = true;
    else if (!db.quoted && !db.text.empty() && (db.text[0] == '+' || db.text[0] == '/'))
      return std::string("group roles and regular expressions as DATABASE-USERNAME are not supported by pgmux");
    e.database_user = db.text;
    map->entries.push_back(std::move(e));
    return std::string();
  });
  if (!error.empty()) return {nullptr, source + ":" + std::to_string(line) + ": " + error};
  return {std::move(map), {}};
}

IdentLoadResult load_ident_file(const std::string& path) {
  std::string content, error;
  if (!read_small_file(path, content, error)) return {nullptr, error};
  return parse_ident(content, path);
}

}  // namespace pgmux::auth
