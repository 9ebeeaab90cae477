// pgbouncer.ini -> pgmux TOML. See pgbouncer_ini.hpp for the accepted syntax
// and the comment conventions of the output.
//
// Two passes: parse_ini() splits the file into sections and entries exactly
// as PgBouncer's ini reader does (and fails on what PgBouncer would refuse to
// load); Converter then maps the entries onto pgmux tables. The output is
// built from fixed key orders, so the result does not depend on the order of
// the ini, only on its values.
#include "conf/pgbouncer_ini.hpp"


#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "conf/config.hpp"

namespace pgmux::conf {
namespace {

// ----------------------------------------------------------------- errors --

struct Failure {
  uint32_t line;
  std::string text;
};

[[noreturn]] void fail(uint32_t line, std::string text) { throw Failure{line, std::move(text)}; }

// ---------------------------------------------------------------- strings --

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }
bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// "value" for messages.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// ------------------------------------------------------------ TOML output --

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

// A table key: bare when TOML allows it, quoted otherwise ("my-db" is bare,
// "app.v2" and "*" are not).
std::string toml_key(std::string_view k) {
  const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return is_alnum(c) || c == '_' || c == '-';
  });
  return bare ? std::string(k) : toml_string(k);
}

std::string toml_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += toml_string(items[i]);
  }
  return out + "]";
}

// TOML comments may hold no control character but tab.
std::string comment_safe(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) c = '?';
  }
  return out;
}

// --------------------------------------------------------------- the ini --

struct Entry {
  std::string key;
  std::string value;
  uint32_t line = 0;
};

struct Ini {
  std::vector<Entry> pgbouncer, databases, users, peers;
  std::vector<Entry> includes;  // value = the file named by %include
};

// PgBouncer's (libusual's) ini reader, plus quoted names of newer versions.
Ini parse_ini(std::string_view text) {
  Ini ini;
  std::vector<Entry>* section = nullptr;
  uint32_t lineno = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? text.size() : nl;
    const std::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    ++lineno;
    if (raw.find('\0') != std::string_view::npos) fail(lineno, "the line contains a NUL byte");
    if (!valid_utf8(raw)) {
      fail(lineno, "not valid UTF-8 (pgmux configuration files are UTF-8; convert the file first, e.g. with iconv)");
    }
    const std::string_view line = trim(raw);
    if (line.empty() || line[0] == ';' || line[0] == '#') continue;

    if (line.substr(0, 8) == "%include" && (line.size() == 8 || is_space(line[8]))) {
      const auto file = trim(line.substr(8));
      if (file.empty()) fail(lineno, "%include needs a file name");
      ini.includes.push_back({"%include", std::string(file), lineno});
      continue;
    }

    if (line[0] == '[') {
      const auto close = line.find(']');
      if (close == std::string_view::npos) fail(lineno, "missing ']' in the section header " + quoted(line));
      const std::string name(trim(line.substr(1, close - 1)));
      const auto rest = trim(line.substr(close + 1));
      if (!rest.empty() && rest[0] != ';' && rest[0] != '#') {
        fail(lineno, "unexpected text after [" + name + "]: " + quoted(rest));
      }
      if (name == "pgbouncer") {
        section = &ini.pgbouncer;
      } else if (name == "databases") {
        section = &ini.databases;
      } else if (name == "users") {
        section = &ini.users;
      } else if (name == "peers") {
        section = &ini.peers;
      } else {
        fail(lineno, "unknown section [" + name + "] (PgBouncer knows [pgbouncer], [databases], [users] and [peers])");
      }
      continue;
    }

    // The name: bare, 'single-quoted' (libusual) or "double-quoted" with ""
    // for a double quote (SQL identifier quoting, newer PgBouncer).
    std::string key;
    size_t i = 0;
    if (line[0] == '\'') {
      const auto close = line.find('\'', 1);
      if (close == std::string_view::npos) fail(lineno, "missing closing ' after the quoted name");
      key = std::string(line.substr(1, close - 1));
      i = close + 1;
    } else if (line[0] == '"') {
      i = 1;
      for (;;) {
        if (i >= line.size()) fail(lineno, "missing closing \" after the quoted name");
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            key += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        key += line[i++];
      }
    } else {
      while (i < line.size() && (is_alnum(line[i]) || line[i] == '_' || line[i] == '.' || line[i] == '-' ||
                                 line[i] == '*')) {
        ++i;
      }
      key = std::string(line.substr(0, i));
    }
    while (i < line.size() && is_blank(line[i])) ++i;
    if (i >= line.size() || line[i] != '=') {
      if (key.empty()) fail(lineno, "expected a setting \"name = value\", got " + quoted(line));
      fail(lineno, "expected '=' after " + quoted(key) +
                       " (names with characters other than letters, digits and _.-* must be quoted, e.g. "
                       "\"my db\" = ...)");
    }
    if (key.empty()) fail(lineno, "missing name before '='");
    if (!section) {
      fail(lineno, "setting " + quoted(key) + " is outside of any section (PgBouncer settings go under [pgbouncer])");
    }
    section->push_back({std::move(key), std::string(trim(line.substr(i + 1))), lineno});
  }
  return ini;
}

// Connection strings ("host=db port=5432 connect_query='SELECT 1'") and the
// [users] settings, as PgBouncer's cstr_get_pair() reads them.
struct Pair {
  std::string key;
  std::string value;
};

std::vector<Pair> parse_connstr(const Entry& e, const std::string& where) {
  std::vector<Pair> out;
  const std::string_view s = e.value;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < s.size() && is_space(s[i])) ++i;
  };
  for (;;) {
    skip_space();
    if (i >= s.size()) break;
    const size_t k0 = i;
    while (i < s.size() && s[i] != '=' && !is_space(s[i])) ++i;
    std::string key(s.substr(k0, i - k0));
    skip_space();
    if (key.empty() || i >= s.size() || s[i] != '=') {
      fail(e.line, where + ": expected key=value, got " + quoted(s.substr(k0)));
    }
    ++i;
    skip_space();
    std::string value;
    if (i < s.size() && s[i] == '\'') {
      ++i;
      for (;;) {
        if (i >= s.size()) fail(e.line, where + ": " + key + ": missing closing ' after the quoted value");
        if (s[i] == '\'') {
          if (i + 1 < s.size() && s[i + 1] == '\'') {
            value += '\'';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        value += s[i++];
      }
      if (i < s.size() && !is_space(s[i])) {
        fail(e.line, where + ": " + key + ": expected a space after the closing quote");
      }
    } else {
      const size_t v0 = i;
      while (i < s.size() && !is_space(s[i])) ++i;
      value = std::string(s.substr(v0, i - v0));
    }
    if (value.empty()) fail(e.line, where + ": " + key + ": empty value (quote it if it has spaces: key='a b')");
    out.push_back({std::move(key), std::move(value)});
  }
  return out;
}

// ----------------------------------------------------------------- values --

// A value with a trailing "; comment" is a common mistake: PgBouncer only
// knows whole-line comments.
std::string comment_hint(std::string_view v) {
  if (v.find(';') != std::string_view::npos || v.find('#') != std::string_view::npos) {
    return " (comments must be on their own line; PgBouncer reads the rest of the line as the value)";
  }
  return {};
}

struct CInt {
  int64_t value;
  bool non_decimal;  // hexadecimal or octal, as C's strtol(.., 0) reads it
};

// The whole string as strtol(s, &end, 0) reads it; saturates far past any
// limit a caller checks, so "too large" is reported by the range check.
std::optional<CInt> parse_c_integer(std::string_view s) {
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  int base = 10;
  if (s.size() - i >= 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
    base = 16;
    i += 2;
  } else if (s.size() - i >= 2 && s[i] == '0') {
    base = 8;
    ++i;
  }
  if (i >= s.size()) return std::nullopt;
  constexpr int64_t kSaturate = int64_t{1} << 53;
  int64_t n = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    int d = -1;
    if (is_digit(c)) d = c - '0';
    if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    if (d < 0 || d >= base) return std::nullopt;
    n = std::min(kSaturate, n * base + d);
  }
  return CInt{negative ? -n : n, base != 10 && n != 0};
}

// Decimal only (PgBouncer reads connection-string numbers with atoi).
std::optional<int64_t> parse_decimal(std::string_view s) {
  size_t i = 0;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  if (i >= s.size()) return std::nullopt;
  int64_t n = 0;
  for (; i < s.size(); ++i) {
    if (!is_digit(s[i])) return std::nullopt;
    n = std::min(int64_t{1} << 53, n * 10 + (s[i] - '0'));
  }
  return negative ? -n : n;
}

struct Seconds {
  Duration value;
  bool rounded;  // finer than pgmux's millisecond resolution
};

// "15", "0.5", ".25" (seconds, as PgBouncer reads them) or with a unit
// ("250ms", "1.5 min", "2h").
std::optional<Seconds> parse_seconds(std::string_view s) {
  size_t i = 0;
  std::string whole, frac;
  while (i < s.size() && is_digit(s[i])) whole += s[i++];
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) frac += s[i++];
  }
  if (whole.empty() && frac.empty()) return std::nullopt;
  while (i < s.size() && s[i] == ' ') ++i;
  const auto unit = s.substr(i);
  int64_t factor = 0;  // milliseconds per unit
  if (unit.empty() || unit == "s" || unit == "sec") {
    factor = 1000;
  } else if (unit == "ms") {
    factor = 1;
  } else if (unit == "min") {
    factor = 60'000;
  } else if (unit == "h") {
    factor = 3'600'000;
  } else if (unit == "d") {
    factor = 86'400'000;
  } else {
    return std::nullopt;
  }
  while (whole.size() > 1 && whole[0] == '0') whole.erase(0, 1);
  if (whole.size() > 12) return std::nullopt;  // ~30,000 years of seconds
  bool rounded = false;
  int64_t ms = whole.empty() ? 0 : std::stoll(whole) * factor;
  bool nonzero = ms != 0;
  if (!frac.empty()) {
    // Nine digits keep frac * factor within 64 bits.
    if (frac.size() > 9) {
      if (frac.find_first_not_of('0', 9) != std::string::npos) rounded = true;
      frac.resize(9);
    }
    if (frac.find_first_not_of('0') != std::string::npos) nonzero = true;
    int64_t den = 1;
    for (size_t k = 0; k < frac.size(); ++k) den *= 10;
    const int64_t prod = std::stoll(frac) * factor;
    int64_t q = prod / den;
    const int64_t r = prod % den;
    if (r != 0) rounded = true;
    if (2 * r >= den) ++q;
    ms += q;
  }
  if (ms == 0 && nonzero) {
    ms = 1;  // a tiny timeout must not turn into "disabled"
    rounded = true;
  }
  return Seconds{Duration{ms}, rounded};
}

std::optional<bool> parse_bool(std::string_view s) {
  const auto l = lower(s);
  if (l == "on" || l == "true" || l == "yes") return true;
  if (l == "off" || l == "false" || l == "no") return false;
  if (auto n = parse_c_integer(s)) return n->value != 0;
  return std::nullopt;
}

std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t comma = s.find(',', i);
    const auto item = trim(s.substr(i, comma == std::string_view::npos ? std::string_view::npos : comma - i));
    if (!item.empty() && std::find(out.begin(), out.end(), item) == out.end()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    i = comma + 1;
  }
  return out;
}

// pgmux's accepted words for [tls] protocols (config.cpp).
bool known_tls_protocols(std::string_view s) {
  static const std::set<std::string> known = {"all",     "secure",  "legacy",  "default",
                                              "tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"};
  size_t count = 0, i = 0;
  while (i < s.size()) {
    const size_t j = s.find_first_of(", :", i);
    const auto tok = lower(s.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
    i = j == std::string_view::npos ? s.size() : j + 1;
    if (tok.empty()) continue;
    if (!known.count(tok)) return false;
    ++count;
  }
  return count > 0;
}

// -------------------------------------------------------------- converter --

// Lines of one TOML table (or of the top of the file).
struct Block {
  std::vector<std::string> lines;

  // A key given twice (PgBouncer reads "query_timeout=1 query_timeout=2"
  // in a [users] line as the last one) is written once, with the last value:
  // TOML refuses a key defined twice.
  void set(std::string_view key, const std::string& toml_value) {
    std::string line = std::string(key) + " = " + toml_value;
    for (std::string& l : lines)
      if (l.size() > key.size() + 3 && l.compare(0, key.size(), key) == 0 && l.compare(key.size(), 3, " = ") == 0) {
        l = std::move(line);
        return;
      }
    lines.push_back(std::move(line));
  }
  void comment(const std::string& text) { lines.push_back("# " + comment_safe(text)); }
  void note(const std::string& text) { comment("note: " + text); }
};

std::string unsupported(std::string_view key, std::string_view value, std::string_view why) {
  return "unsupported: " + std::string(key) + " = " + std::string(value) + " (" + std::string(why) + ")";
}

std::string untranslatable(std::string_view key, std::string_view value, std::string_view why) {
  return "untranslatable: " + std::string(key) + " = " + std::string(value) + " (" + std::string(why) + ")";
}

constexpr std::string_view kNoEquivalent = "pgmux has no equivalent";

// [pgbouncer] settings pgmux has no key for, and why.
const std::pair<std::string_view, std::string_view> kUnsupported[] = {
    {"pidfile", "not needed: pgmux runs in the foreground; let systemd track the process"},
    {"user", "not needed: start pgmux as the intended user (systemd User=)"},
    {"syslog", "pgmux logs to stderr (the journal under systemd) or to [log] file"},
    {"syslog_ident", "pgmux logs to stderr (the journal under systemd) or to [log] file"},
    {"syslog_facility", "pgmux logs to stderr (the journal under systemd) or to [log] file"},
    {"log_pooler_errors", "pgmux always logs why it refuses or ends a client (failed logins, limits, protocol "
                          "violations as warnings; timeouts and kills with [log] disconnections)"},
    {"ignore_startup_parameters", "not needed: pgmux keeps any startup parameter a client sends"},
    {"track_extra_parameters", "not needed: pgmux keeps any startup parameter a client sends"},
    {"disable_pqexec", kNoEquivalent},
    {"conffile", "not needed: pgmux --config names the file"},
    {"service_name", "Windows only"},
    {"job_name", "Windows only"},
    {"pool_idle_timeout", kNoEquivalent},
    {"dns_max_ttl", kNoEquivalent},
    {"dns_nxdomain_ttl", kNoEquivalent},
    {"dns_zone_check_period", kNoEquivalent},
    {"resolv_conf", kNoEquivalent},
    {"suspend_timeout", "pgmux has no SUSPEND"},
    {"pkt_buf", "pgmux sizes its buffers itself"},
    {"sbuf_loopcnt", "pgmux sizes its buffers itself"},
    {"peer_id", "pgmux has no peering"},
    {"login_notify_message", kNoEquivalent},
    {"auth_ldap_options", "pgmux has no LDAP authentication"},
    {"client_tls_dheparams", "pgmux offers no DHE key exchange; ECDHE (TLS 1.2) and TLS 1.3 groups serve instead"},
};

class Converter {
 public:
  Converter(const Ini& ini, const std::string& source) : ini_(ini), source_(source) {
    for (const auto& e : ini_.pgbouncer) settings_[e.key].push_back(&e);
  }

  std::string run() {
    convert_listen();
    convert_pool();
    convert_auth();
    convert_tls();
    convert_admin();
    convert_log();
    leftover_settings();
    convert_databases();
    convert_users();
    for (const auto& e : ini_.peers) {
      leftover(e.line, unsupported("[peers] " + e.key, e.value, "pgmux has no peering"));
    }
    for (const auto& e : ini_.includes) {
      leftover(e.line, "unsupported: %include " + e.value +
                           " (include files are not followed; convert that file too and merge the result)");
    }
    return render();
  }

 private:
  // ---------------------------------------------------------- [pgbouncer] --

  // The last occurrence wins, as in PgBouncer.
  const Entry* take(const std::string& key) {
    const bool first = taken_.insert(key).second;
    const auto it = settings_.find(key);
    if (it == settings_.end()) return nullptr;
    if (first && it->second.size() > 1) {
      std::string lines;
      for (const Entry* e : it->second) lines += (lines.empty() ? "" : ", ") + std::to_string(e->line);
      top_.note(key + " is set on lines " + lines + "; the last one counts, as in PgBouncer");
    }
    return it->second.back();
  }

  std::string where(const Entry& e) const { return "[pgbouncer] " + e.key; }

  int64_t integer(const Entry& e, Block& b) {
    const auto n = parse_c_integer(e.value);
    if (!n) fail(e.line, where(e) + ": expected an integer, got " + quoted(e.value) + comment_hint(e.value));
    if (n->non_decimal) {
      b.note(e.key + " = " + e.value + " is read as " + std::to_string(n->value) +
             " (a leading 0 means octal, 0x hexadecimal, to PgBouncer)");
    }
    return n->value;
  }

  // An integer setting pgmux accepts within [min, max]; nullopt (with a
  // comment) when the value has no pgmux equivalent.
  std::optional<int> bounded(const Entry& e, Block& b, int64_t min, int64_t max, std::string_view why) {
    const int64_t n = integer(e, b);
    if (n < min || n > max) {
      b.comment(untranslatable(e.key, e.value, why));
      return std::nullopt;
    }
    return static_cast<int>(n);
  }

  Seconds seconds(const Entry& e) {
    if (!e.value.empty() && e.value[0] == '-') {
      fail(e.line, where(e) + ": must not be negative, got " + quoted(e.value));
    }
    const auto s = parse_seconds(e.value);
    if (!s) {
      fail(e.line, where(e) + ": expected a number of seconds such as \"15\" or \"0.5\", got " + quoted(e.value) +
                       comment_hint(e.value));
    }
    return *s;
  }

  void duration(const Entry& e, Block& b) {
    const auto s = seconds(e);
    if (s.rounded) {
      b.note(e.key + " = " + e.value + " is rounded to " + format_duration(s.value) + " (pgmux counts milliseconds)");
    }
    b.set(e.key, toml_string(format_duration(s.value)));
  }

  void duration(const std::string& key, Block& b) {
    if (const Entry* e = take(key)) duration(*e, b);
  }

  bool boolean(const Entry& e) {
    const auto v = parse_bool(e.value);
    if (!v) fail(e.line, where(e) + ": expected 0 or 1, got " + quoted(e.value) + comment_hint(e.value));
    return *v;
  }

  std::string lookup(const Entry& e, std::initializer_list<std::string_view> allowed) {
    const auto v = lower(e.value);
    std::string list;
    for (auto a : allowed) {
      if (v == a) return v;
      list += (list.empty() ? "" : ", ") + std::string(a);
    }
    fail(e.line, where(e) + ": must be one of " + list + "; got " + quoted(e.value) + comment_hint(e.value));
  }

  // File names: kept as written, with a note where pgmux reads them differently.
  void path(const std::string& pgmux_key, const Entry& e, Block& b) {
    if (e.value.empty()) return;
    if (e.value[0] == '~') {
      b.note(e.key + " = " + e.value + ": pgmux does not expand '~'; write the full path");
    } else if (e.value[0] != '/') {
      relative_paths_ = true;
    }
    b.set(pgmux_key, toml_string(e.value));
  }

  void convert_listen() {
    int port = 6432;
    if (const Entry* e = take("listen_port")) {
      const int64_t n = integer(*e, pgmux_);
      if (n < 1 || n > 65535) fail(e->line, where(*e) + ": must be between 1 and 65535, got " + e->value);
      port = static_cast<int>(n);
    }
    const std::string p = std::to_string(port);
    std::vector<std::string> listen;
    auto add = [&](std::string a) {
      if (std::find(listen.begin(), listen.end(), a) == listen.end()) listen.push_back(std::move(a));
    };
    if (const Entry* e = take("listen_addr")) {
      for (const auto& a : split_list(e->value)) {
        if (a == "*") {
          add("*:" + p);
        } else if (is_ipv4(a)) {
          add(a + ":" + p);
        } else if (is_ipv6(a)) {
          add("[" + a + "]:" + p);
        } else if (a == "localhost") {
          pgmux_.note("listen_addr localhost is written as 127.0.0.1 (pgmux listens on addresses, not names; "
                      "add \"[::1]:" + p + "\" for IPv6)");
          add("127.0.0.1:" + p);
        } else {
          pgmux_.comment(untranslatable("listen_addr", a,
                                        "pgmux listens on IP addresses only, not on host names; "
                                        "write the address the name stands for"));
        }
      }
    }
    const Entry* dir = take("unix_socket_dir");
    unix_dir_ = dir ? dir->value : "/tmp";
    while (unix_dir_.size() > 1 && unix_dir_.back() == '/') unix_dir_.pop_back();
    if (!unix_dir_.empty()) {
      if (unix_dir_[0] == '@') {
        pgmux_.comment(untranslatable("unix_socket_dir", unix_dir_, "pgmux has no abstract-namespace sockets"));
      } else {
        if (!dir) pgmux_.note("PgBouncer also listens on a unix socket in /tmp unless unix_socket_dir is empty");
        if (unix_dir_[0] != '/') relative_paths_ = true;
        add("unix:" + unix_dir_ + "/.s.PGSQL." + p);
      }
    }
    if (listen.empty()) {
      pgmux_.note("this PgBouncer configuration listens nowhere (no listen_addr, no unix socket); "
                  "pgmux would listen on 127.0.0.1:6432");
    } else {
      pgmux_.set("listen", toml_array(listen));
    }
  }

  void convert_pool() {
    Block& b = pgmux_;
    if (const Entry* e = take("pool_mode")) {
      b.set("pool_mode", toml_string(lookup(*e, {"session", "transaction", "statement"})));
    } else {
      b.set("pool_mode", "\"session\"  # PgBouncer's default; pgmux's is \"transaction\"");
    }
    if (const Entry* e = take("max_client_conn")) {
      if (auto n = bounded(*e, b, 1, INT32_MAX, "pgmux needs at least 1")) b.set("max_client_conn", std::to_string(*n));
    } else {
      b.set("max_client_conn", "100  # PgBouncer's default; pgmux's is 10000");
    }
    if (const Entry* e = take("default_pool_size")) {
      if (auto n = bounded(*e, b, 1, INT32_MAX, "pgmux pools need at least 1 server connection")) {
        default_pool_size_ = *n;
        b.set("default_pool_size", std::to_string(*n));
      }
    }
    if (const Entry* e = take("min_pool_size")) {
      if (auto n = bounded(*e, b, 0, INT32_MAX, "must not be negative")) {
        if (*n > default_pool_size_) {
          b.note("min_pool_size = " + e->value + " is capped at default_pool_size (" +
                 std::to_string(default_pool_size_) + "), as PgBouncer does; pgmux refuses a larger value");
          *n = default_pool_size_;
        }
        min_pool_size_ = *n;
        b.set("min_pool_size", std::to_string(*n));
      }
    }
    const Entry* reserve = take("reserve_pool_size");
    const Entry* reserve_timeout = take("reserve_pool_timeout");
    if (reserve_timeout && seconds(*reserve_timeout).value.count() == 0) {
      // PgBouncer: 0 switches the reserve off. pgmux: 0 = use it at once.
      reserve_disabled_ = true;
      b.note("reserve_pool_timeout = " + reserve_timeout->value +
             " switches PgBouncer's reserve pool off; pgmux has no such switch (0 there means \"use the reserve "
             "at once\"), so the reserve is turned off with reserve_pool_size = 0");
      b.set("reserve_pool_size", "0");
    } else {
      if (reserve) {
        if (auto n = bounded(*reserve, b, 0, INT32_MAX, "must not be negative")) {
          b.set("reserve_pool_size", std::to_string(*n));
        }
      }
      if (reserve_timeout) duration(*reserve_timeout, b);
    }
    for (const char* key : {"max_db_connections", "max_user_connections", "max_db_client_connections",
                            "max_user_client_connections", "max_prepared_statements"}) {
      if (const Entry* e = take(key)) {
        if (auto n = bounded(*e, b, 0, INT32_MAX, "must not be negative")) b.set(key, std::to_string(*n));
      }
    }
    if (const Entry* e = take("server_reset_query")) b.set("server_reset_query", toml_string(e->value));
    if (const Entry* e = take("so_reuseport")) {
      b.set("so_reuseport", boolean(*e) ? "true" : "false");
    }
    if (const Entry* e = take("unix_socket_mode")) {
      const int64_t n = integer(*e, b);  // "0777": octal, as PgBouncer reads it
      if (n < 0 || n > 0777) {
        b.comment(untranslatable(e->key, e->value, "pgmux takes a mode up to 0777"));
      } else {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(n));
        b.set("unix_socket_mode", toml_string(mode));
      }
    }
    if (const Entry* e = take("unix_socket_group"); e && !e->value.empty())
      b.set("unix_socket_group", toml_string(e->value));
    if (const Entry* e = take("listen_backlog")) {
      if (auto n = bounded(*e, b, 1, 65535, "pgmux takes 1 to 65535")) b.set("listen_backlog", std::to_string(*n));
    }
    if (const Entry* e = take("server_reset_query_always")) {
      b.set("server_reset_query_always", boolean(*e) ? "true" : "false");
    }
    if (const Entry* e = take("server_fast_close")) b.set("server_fast_close", boolean(*e) ? "true" : "false");
    for (const char* key : {"server_round_robin", "application_name_add_host"}) {
      if (const Entry* e = take(key)) b.set(key, boolean(*e) ? "true" : "false");
    }
    if (const Entry* e = take("server_check_query")) {
      if (e->value == "<empty>") {
        b.comment(untranslatable(e->key, e->value,
                                 "pgmux cannot send an empty query as the check; it keeps its default, SELECT 1"));
      } else {
        b.set("server_check_query", toml_string(e->value));
      }
    }
    duration("server_check_delay", b);
    duration("server_connect_timeout", b);
    if (const Entry* e = take("cancel_wait_timeout")) {
      b.note("cancel_wait_timeout: PgBouncer bounds the wait before a cancel is sent; pgmux bounds it until "
             "PostgreSQL has taken the cancel, then closes that server instead of reusing it");
      duration(*e, b);
    }
    duration("server_login_retry", b);
    duration("server_idle_timeout", b);
    if (const Entry* e = take("server_lifetime")) {
      if (seconds(*e).value.count() == 0) {
        b.comment(untranslatable(e->key, e->value,
                                 "PgBouncer documents 0 as \"use each server connection once\"; pgmux has no such "
                                 "mode and reads 0 as unlimited, so its default (1h) stays; pick a short "
                                 "lifetime if you relied on it"));
      } else {
        duration(*e, b);
      }
    }
    duration("query_timeout", b);
    duration("query_wait_timeout", b);
    duration("query_wait_notify", b);
    duration("client_idle_timeout", b);
    duration("client_login_timeout", b);
    duration("idle_transaction_timeout", b);
    duration("transaction_timeout", b);
    duration("autodb_idle_timeout", b);
    if (const Entry* e = take("tcp_keepalive")) b.set("tcp_keepalive", boolean(*e) ? "true" : "false");
    for (const char* key : {"tcp_keepidle", "tcp_keepintvl"}) {  // seconds
      if (const Entry* e = take(key)) {
        if (auto n = bounded(*e, b, 0, 32767, "pgmux accepts 0 (the system's value) to 32767 seconds"))
          b.set(key, toml_string(format_duration(std::chrono::seconds(*n))));
      }
    }
    if (const Entry* e = take("tcp_keepcnt")) {
      if (auto n = bounded(*e, b, 0, 127, "pgmux accepts 0 (the system's value) to 127 probes"))
        b.set("tcp_keepcnt", std::to_string(*n));
    }
    if (const Entry* e = take("tcp_user_timeout")) {  // milliseconds
      if (auto n = bounded(*e, b, 0, INT32_MAX, "must not be negative"))
        b.set("tcp_user_timeout", toml_string(format_duration(Duration{*n})));
    }
    if (const Entry* e = take("scram_iterations")) {
      if (auto n = bounded(*e, b, 1, 1000000, "pgmux accepts 1 to 1000000 (it computes them on its event loop)"))
        b.set("scram_iterations", std::to_string(*n));
    }
    if (const Entry* e = take("tcp_defer_accept")) {
      // PgBouncer: a boolean; when on it sets 45 s, pgmux's default too.
      b.set("tcp_defer_accept", toml_string(integer(*e, b) != 0 ? "45s" : "0s"));
    }
    if (const Entry* e = take("tcp_socket_buffer")) {
      const int64_t n = integer(*e, b);
      if (n == 0) {
        // not set: the system's buffers, as pgmux's default
      } else if (n < 4096 || n > (int64_t(1) << 30)) {
        b.comment(untranslatable(e->key, e->value, "pgmux accepts 4kB to 1GB (or 0: the system's)"));
      } else {
        b.set("tcp_socket_buffer", toml_string(format_bytes(static_cast<uint64_t>(n))));
      }
    }
    if (const Entry* e = take("max_packet_size")) {
      const int64_t n = integer(*e, b);
      if (n < 1024 || n > 0x7fffffff) {
        b.comment(untranslatable(e->key, e->value, "pgmux accepts 1kB to 2147483647 bytes"));
      } else {
        b.set("max_packet_size", toml_string(format_bytes(static_cast<uint64_t>(n))));
      }
    }
  }

  void convert_auth() {
    Block& b = auth_;
    std::string type = "md5";
    if (const Entry* e = take("auth_type")) {
      const auto v = lookup(*e, {"trust", "md5", "scram-sha-256", "hba", "plain", "any", "cert", "pam", "ldap"});
      if (v == "plain") {
        b.comment(untranslatable(e->key, e->value,
                                 "pgmux never asks for clear-text passwords; md5 accepts the same auth_file and "
                                 "switches to SCRAM for users with a SCRAM secret"));
        type = "md5";
      } else if (v == "any") {
        b.comment(untranslatable(e->key, e->value,
                                 "trust is the nearest: no password, but the user name is not ignored"));
        type = "trust";
        auth_any_ = true;
      } else if (v == "cert" || v == "pam" || v == "ldap") {
        b.comment(untranslatable(e->key, e->value,
                                 "pgmux has no " + v +
                                     " authentication; scram-sha-256 against the auth_file (or the auth query) "
                                     "is used instead until you choose"));
        type = "scram-sha-256";
      } else {
        type = v;
      }
      b.set("type", toml_string(type));
    } else {
      b.set("type", "\"md5\"  # PgBouncer's default; pgmux's is \"scram-sha-256\"");
    }
    const Entry* file = take("auth_file");
    if (file) path("file", *file, b);
    const Entry* hba_file = take("auth_hba_file");
    if (hba_file) path("hba_file", *hba_file, b);
    if (const Entry* ident = take("auth_ident_file"); ident && !ident->value.empty()) {
      if (type == "hba") path("ident_file", *ident, b);
      else b.comment(untranslatable(ident->key, ident->value, "only used with auth_type = hba"));
    }
    const Entry* user = take("auth_user");
    const Entry* query = take("auth_query");
    if (query && trim(query->value).empty()) {
      b.comment(untranslatable("auth_query", "", "an empty query; pgmux's default is used"));
      query = nullptr;
    }
    const Entry* dbname = take("auth_dbname");
    const bool has_users = (file && !file->value.empty()) || (user && !user->value.empty()) || any_database_auth_user();
    if (type == "hba" && !(hba_file && !hba_file->value.empty())) {
      b.note("auth_type = hba without auth_hba_file: set hba_file (pgmux refuses the configuration without it)");
    } else if ((type == "md5" || type == "scram-sha-256") && !has_users) {
      b.note("neither auth_file nor auth_user is set, so PgBouncer knows no user; pgmux needs file (or query)");
    }
    if (user && !user->value.empty()) {
      global_auth_user_ = true;
      if (!query) {
        // PgBouncer 1.18's default does not look at VALID UNTIL
        // (CVE-2025-2291); pgmux's default returns no secret once expired.
        b.note("auth_query not set: pgmux's default query is used, which also refuses passwords past VALID UNTIL");
        b.set("query", toml_string(Config{}.auth.query));
      } else {
        note_valid_until(b, query->value);
        b.set("query", toml_string(query->value));
      }
      b.set("query_user", toml_string(user->value));
    } else if (query) {
      // Used by the databases that set auth_user (convert_database); a
      // leftover if none does.
      global_query_ = query;
    }
    if (dbname && !dbname->value.empty()) {
      if (auth_dbname_valid(dbname->value))
        b.set("query_database", toml_string(dbname->value));
      else
        b.comment(untranslatable(dbname->key, dbname->value, auth_dbname_problem(dbname->value)));
    }
  }

  void note_valid_until(Block& b, const std::string& query) {
    if (query.find("valuntil") == std::string::npos && query.find("rolvaliduntil") == std::string::npos)
      b.note("this auth_query ignores VALID UNTIL: expired passwords still log in (CVE-2025-2291); "
             "return NULL as the secret once expired, as pgmux's default query does");
  }

  // auth_dbname names a [databases] entry that pgmux keeps.
  bool auth_dbname_valid(const std::string& name) const {
    if (name == "*" || name == "pgmux") return false;
    return std::any_of(ini_.databases.begin(), ini_.databases.end(), [&](const Entry& e) { return e.key == name; });
  }
  static std::string auth_dbname_problem(const std::string& name) {
    return name == "*" ? "pgmux needs a database entry of its own for the lookup, not the \"*\" fallback"
                       : "no [databases] entry " + name + " (pgmux runs the lookup through a database entry)";
  }

  bool any_database_auth_user() const {
    for (const auto& e : ini_.databases)
      for (const auto& p : parse_connstr(e, "[databases] " + e.key))
        if (p.key == "auth_user" && !p.value.empty()) return true;
    return false;
  }

  void convert_tls() {
    // Client side.
    if (const Entry* e = take("client_tls_sslmode")) {
      const auto v = lookup(*e, {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"});
      tls_.set("mode", toml_string(v));
    }
    if (const Entry* e = take("client_tls_cert_file")) path("cert", *e, tls_);
    if (const Entry* e = take("client_tls_key_file")) path("key", *e, tls_);
    if (const Entry* e = take("client_tls_ca_file")) path("ca", *e, tls_);
    if (const Entry* e = take("client_tls_protocols")) protocols(*e, tls_);
    if (const Entry* e = take("client_tls_ciphers")) ciphers(*e, tls_);
    if (const Entry* e = take("client_tls13_ciphers")) tls13_ciphers(*e, tls_);
    if (const Entry* e = take("client_tls_ecdhcurve")) {
      const auto v = lower(e->value);
      // auto: OpenSSL's default groups, pgmux's default too.
      if (v == "none")
        tls_.comment(untranslatable(e->key, e->value, "pgmux always allows ECDH key exchange (TLS 1.3 needs it)"));
      else if (!v.empty() && v != "auto")
        tls_.set("groups", toml_string(e->value));
    }

    // Server side. PgBouncer 1.18 does not even ask servers for TLS by
    // default; pgmux (like newer PgBouncer) defaults to prefer.
    if (const Entry* e = take("server_tls_sslmode")) {
      const auto v = lookup(*e, {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"});
      server_tls_.set("mode", toml_string(v));
    } else {
      server_tls_.set("mode", "\"disable\"  # PgBouncer 1.18's default; pgmux's is \"prefer\"");
    }
    if (const Entry* e = take("server_tls_cert_file")) path("cert", *e, server_tls_);
    if (const Entry* e = take("server_tls_key_file")) path("key", *e, server_tls_);
    if (const Entry* e = take("server_tls_ca_file")) path("ca", *e, server_tls_);
    if (const Entry* e = take("server_tls_protocols")) protocols(*e, server_tls_);
    if (const Entry* e = take("server_tls_ciphers")) ciphers(*e, server_tls_);
    if (const Entry* e = take("server_tls13_ciphers")) tls13_ciphers(*e, server_tls_);
  }

  void tls13_ciphers(const Entry& e, Block& b) {
    const auto v = lower(e.value);
    if (v.empty() || v == "default") return;  // OpenSSL's, as pgmux's default
    b.set("tls13_ciphers", toml_string(e.value));
  }

  void protocols(const Entry& e, Block& b) {
    if (e.value.empty()) return;
    if (!known_tls_protocols(e.value)) {
      b.comment(untranslatable(e.key, e.value,
                               "pgmux knows tlsv1.0 to tlsv1.3, all, secure, legacy and default"));
      return;
    }
    b.set("protocols", toml_string(e.value));
  }

  void ciphers(const Entry& e, Block& b) {
    const auto v = lower(e.value);
    // PgBouncer's shortcuts for the system's OpenSSL defaults: pgmux's
    // default (no ciphers key) is the same.
    if (v.empty() || v == "default" || v == "secure" || v == "fast" || v == "normal") return;
    if (v == "all" || v == "legacy" || v == "compat" || v == "insecure") {
      b.set("ciphers", toml_string("ALL:!aNULL:!eNULL"));
      return;
    }
    b.set("ciphers", toml_string(e.value));
  }

  void convert_admin() {
    if (const Entry* e = take("admin_users")) {
      const auto users = split_list(e->value);
      if (auth_any_ && !users.empty()) {
        admin_.note("with auth_type = any PgBouncer lets every user in as admin; pgmux only these");
      }
      if (!users.empty()) admin_.set("users", toml_array(users));
    }
    if (const Entry* e = take("stats_users")) {
      const auto users = split_list(e->value);
      if (!users.empty()) admin_.set("stats_users", toml_array(users));
    }
  }

  void convert_log() {
    if (const Entry* e = take("verbose")) {
      const int64_t n = integer(*e, log_);
      if (n >= 2) {
        log_.set("level", "\"trace\"");
      } else if (n == 1) {
        log_.set("level", "\"debug\"");
      }
    }
    if (const Entry* e = take("logfile")) path("file", *e, log_);
    if (const Entry* e = take("log_connections")) log_.set("connections", boolean(*e) ? "true" : "false");
    if (const Entry* e = take("log_disconnections")) log_.set("disconnections", boolean(*e) ? "true" : "false");
    // log_stats = 0 turns the stats lines off; stats_period is their period
    // (pgmux's SHOW STATS averages since it started, whatever the period).
    const Entry* log_stats = take("log_stats");
    const Entry* period = take("stats_period");
    if (log_stats && !boolean(*log_stats)) {
      log_.set("stats_period", "\"0s\"");
    } else if (period) {
      const auto s = seconds(*period);
      if (s.value.count() == 0 || s.value < std::chrono::seconds(1)) {
        log_.comment(untranslatable(period->key, period->value, "pgmux needs at least 1s; its default, 60s, stays"));
      } else {
        duration(*period, log_);
      }
    }
  }

  // Every [pgbouncer] setting not converted above, in file order.
  void leftover_settings() {
    std::set<std::string> reported;
    for (const auto& e : ini_.pgbouncer) {
      if (taken_.count(e.key) || reported.count(e.key)) continue;
      reported.insert(e.key);
      const Entry& last = *settings_[e.key].back();
      std::string why = "unknown PgBouncer setting; pgmux has no equivalent";
      for (const auto& [key, reason] : kUnsupported) {
        if (key == e.key) why = reason;
      }
      leftover(last.line, unsupported(last.key, last.value, why));
    }
  }

  void leftover(uint32_t line, std::string text) { leftovers_.emplace_back(line, std::move(text)); }

  // ---------------------------------------------------------- [databases] --

  void convert_databases() {
    std::vector<std::string> order;
    std::map<std::string, std::vector<const Entry*>> defs;
    for (const auto& e : ini_.databases) {
      if (!defs.count(e.key)) order.push_back(e.key);
      defs[e.key].push_back(&e);
    }
    for (const auto& name : order) {
      const auto& all = defs[name];
      const Entry& e = *all.back();
      Block b;
      if (all.size() > 1) {
        std::string lines;
        for (const Entry* d : all) lines += (lines.empty() ? "" : ", ") + std::to_string(d->line);
        b.note("defined on lines " + lines + "; the last one counts, as in PgBouncer");
      }
      if (name == "pgbouncer") {
        fail(e.line, "[databases] pgbouncer: the name \"pgbouncer\" is reserved for the admin console");
      }
      if (name == "pgmux") {
        leftover(e.line, "untranslatable: [databases] pgmux (the name \"pgmux\" is pgmux's admin console; "
                         "rename the database)");
        continue;
      }
      convert_database(name, e, b);
      databases_.emplace_back(name, std::move(b));
    }
    if (databases_.empty()) {
      top_.note("the ini defines no database; pgmux needs at least one [databases.NAME] table");
    }
    if (global_query_ && !global_query_used_)
      leftover(global_query_->line, unsupported(global_query_->key, global_query_->value,
                                                "PgBouncer uses auth_query only together with auth_user, which is "
                                                "not set"));
  }

  void convert_database(const std::string& name, const Entry& e, Block& b) {
    const std::string where = "[databases] " + name;
    std::optional<std::string> host, dbname, user, password, pool_mode, connect_query, target;
    std::optional<std::string> auth_user, auth_query, auth_dbname;
    std::vector<std::pair<std::string, std::string>> parameters;
    std::vector<std::pair<std::string, std::string>> timeouts;  // per-database durations
    std::optional<int> port, pool_size, min_pool_size, reserve, max_db, max_db_clients;
    std::vector<std::string> comments;
    auto count = [&](const Pair& p, int64_t min, std::string_view why) -> std::optional<int> {
      const auto n = parse_decimal(p.value);
      if (!n) fail(e.line, where + ": " + p.key + ": expected an integer, got " + quoted(p.value));
      if (*n < 0) return std::nullopt;  // PgBouncer: negative = not set
      if (*n < min || *n > INT32_MAX) {
        comments.push_back(untranslatable(p.key, p.value, why));
        return std::nullopt;
      }
      return static_cast<int>(*n);
    };
    for (const auto& p : parse_connstr(e, where)) {
      const auto& k = p.key;
      if (k == "host") {
        host = p.value;
      } else if (k == "port") {
        const auto n = parse_decimal(p.value);
        if (!n || *n < 1 || *n > 65535) {
          fail(e.line, where + ": port: must be between 1 and 65535, got " + quoted(p.value));
        }
        port = static_cast<int>(*n);
      } else if (k == "dbname") {
        dbname = p.value;
      } else if (k == "user") {
        user = p.value;
      } else if (k == "password") {
        password = p.value;
      } else if (k == "pool_size") {
        pool_size = count(p, 1, "pgmux pools need at least 1 server connection");
      } else if (k == "min_pool_size") {
        min_pool_size = count(p, 0, "must not be negative");
      } else if (k == "reserve_pool" || k == "reserve_pool_size") {
        if (reserve_disabled_) {
          comments.push_back(untranslatable(k, p.value, "the reserve pool is off: reserve_pool_timeout = 0"));
        } else {
          reserve = count(p, 0, "must not be negative");
        }
      } else if (k == "max_db_connections") {
        max_db = count(p, 0, "must not be negative");
      } else if (k == "max_db_client_connections") {
        max_db_clients = count(p, 0, "must not be negative");
      } else if (k == "pool_mode") {
        const auto v = lower(p.value);
        if (v != "session" && v != "transaction" && v != "statement") {
          fail(e.line, where + ": pool_mode: must be one of session, transaction, statement; got " + quoted(p.value));
        }
        pool_mode = v;
      } else if (k == "connect_query") {
        connect_query = p.value;
      } else if (k == "target_session_attrs") {
        const auto v = lower(p.value);
        if (v == "any") {
          target.reset();  // pgmux's default behaviour
        } else if (v == "read-write" || v == "read-only") {
          target = v;
        } else {
          comments.push_back(untranslatable(k, p.value, "pgmux knows any, read-write, read-only, prefer-standby"));
        }
      } else if (k == "auth_user") {
        if (!p.value.empty()) auth_user = p.value;
      } else if (k == "auth_query") {
        if (!trim(p.value).empty()) auth_query = p.value;
      } else if (k == "auth_dbname") {
        if (!p.value.empty()) auth_dbname = p.value;
      } else if (k == "client_encoding" || k == "datestyle" || k == "timezone" || k == "application_name") {
        // The server connections' startup parameters; the last one counts.
        std::erase_if(parameters, [&](const auto& kv) { return kv.first == k; });
        parameters.emplace_back(k, p.value);
      } else if (k == "server_lifetime" || k == "query_wait_timeout") {
        const auto s = parse_seconds(p.value);
        if (!s || (!p.value.empty() && p.value[0] == '-'))
          fail(e.line, where + ": " + k + ": expected a number of seconds such as \"15\" or \"0.5\", got " +
                           quoted(p.value));
        std::erase_if(timeouts, [&](const auto& kv) { return kv.first == k; });  // the last one counts
        if (s->value.count() == 0)
          b.note(k + " = 0 on a database is PgBouncer's \"use the global value\": left out");
        else
          timeouts.emplace_back(k, format_duration(s->value));
      } else if (k == "max_db_client_connections" || k == "load_balance_hosts") {
        comments.push_back(unsupported(k, p.value, "pgmux has no per-database " + k));
      } else {
        comments.push_back(unsupported(k, p.value, "unknown PgBouncer connection parameter"));
      }
    }

    // Where PgBouncer connects.
    if (host) {
      if (const auto comma = host->find(','); comma != std::string::npos) {
        comments.push_back(untranslatable("host", *host,
                                          "pgmux connects each database to one primary; the first host is used "
                                          "([databases] replicas are for read routing, not round-robin)"));
        host = std::string(trim(std::string_view(*host).substr(0, comma)));
      }
      if (!host->empty() && (*host)[0] == '@') {
        comments.push_back(untranslatable("host", *host, "pgmux has no abstract-namespace sockets"));
        host.reset();
      }
    } else if (!unix_dir_.empty() && unix_dir_[0] == '/') {
      b.note("no host: PgBouncer connects through the unix socket in unix_socket_dir");
      host = unix_dir_;
    } else {
      comments.push_back("untranslatable: no host (PgBouncer would use a unix socket, but unix_socket_dir is "
                         "not an absolute directory); pgmux connects to 127.0.0.1");
    }

    // PgBouncer caps min_pool_size at the pool size; pgmux refuses it.
    const int size = pool_size.value_or(default_pool_size_);
    const int min = min_pool_size.value_or(min_pool_size_);
    if ((pool_size || min_pool_size) && min > size) {
      b.note("min_pool_size " + std::to_string(min) + " is capped at the pool size (" + std::to_string(size) +
             "), as PgBouncer does");
      min_pool_size = size;
    }

    if (password && !user) {
      // PgBouncer uses password= only for the forced user= login.
      comments.push_back("unsupported: password = (not shown) (PgBouncer uses it only together with user=, "
                         "which is not set)");
      password.reset();
    }

    if (host) b.set("host", toml_string(*host));
    if (port) b.set("port", std::to_string(*port));
    if (dbname) b.set("dbname", toml_string(*dbname));
    if (user) b.set("user", toml_string(*user));
    if (password) b.set("password", toml_string(*password));
    if (pool_mode) b.set("pool_mode", toml_string(*pool_mode));
    if (pool_size) b.set("pool_size", std::to_string(*pool_size));
    if (min_pool_size) b.set("min_pool_size", std::to_string(*min_pool_size));
    if (reserve) b.set("reserve_pool_size", std::to_string(*reserve));
    if (max_db) b.set("max_db_connections", std::to_string(*max_db));
    if (max_db_clients) b.set("max_db_client_connections", std::to_string(*max_db_clients));
    if (connect_query) b.set("connect_query", toml_string(*connect_query));
    for (const auto& [k, v] : timeouts) b.set(k, toml_string(v));
    if (!parameters.empty()) {
      std::string table;
      for (const auto& [k, v] : parameters) table += (table.empty() ? "{ " : ", ") + k + " = " + toml_string(v);
      b.set("parameters", table + " }");
    }
    if (target && user) {
      b.set("target_session_attrs", toml_string(*target));
    } else if (target) {
      // pgmux checks each server's role with a login of its own, which
      // defaults to the forced user; PgBouncer checks on the pooled login.
      b.comment(untranslatable("target_session_attrs", *target,
                               "pgmux checks each server's role with a login of its own: set health_check_user "
                               "(and health_check_password) and uncomment"));
      b.comment("target_session_attrs = " + toml_string(*target));
      b.comment("health_check_user = \"...\"");
    }
    // auth_query: PgBouncer runs it only for an auth_user (this entry's, or
    // the global one).
    if (auth_user) {
      b.set("auth_query_user", toml_string(*auth_user));
      if (!auth_query && !global_auth_user_) {
        // pgmux's [auth] query is written only with a global auth_user.
        if (global_query_) {
          global_query_used_ = true;
          note_valid_until(b, global_query_->value);
          b.set("auth_query", toml_string(global_query_->value));
        } else {
          b.note("auth_query not set: pgmux's default query is used, which also refuses passwords past VALID UNTIL");
        }
      }
    }
    if (auth_query && (auth_user || global_auth_user_)) {
      note_valid_until(b, *auth_query);
      b.set("auth_query", toml_string(*auth_query));
    } else if (auth_query) {
      comments.push_back(unsupported("auth_query", *auth_query,
                                     "PgBouncer uses auth_query only together with auth_user, which is not set"));
    }
    if (auth_dbname) {
      if (auth_dbname_valid(*auth_dbname))
        b.set("auth_query_database", toml_string(*auth_dbname));
      else
        comments.push_back(untranslatable("auth_dbname", *auth_dbname, auth_dbname_problem(*auth_dbname)));
    }
    for (auto& c : comments) b.comment(c);
  }

  // -------------------------------------------------------------- [users] --

  void convert_users() {
    std::vector<std::string> order;
    std::map<std::string, const Entry*> last;
    for (const auto& e : ini_.users) {
      if (!last.count(e.key)) order.push_back(e.key);
      last[e.key] = &e;
    }
    for (const auto& name : order) {
      const Entry& e = *last[name];
      const std::string where = "[users] " + name;
      Block b;
      std::optional<std::string> pool_mode;
      std::optional<int> max_conn, max_clients;
      std::vector<std::string> comments;
      for (const auto& p : parse_connstr(e, where)) {
        if (p.key == "pool_mode") {
          const auto v = lower(p.value);
          if (v != "session" && v != "transaction" && v != "statement") {
            fail(e.line, where + ": pool_mode: must be one of session, transaction, statement; got " +
                             quoted(p.value));
          }
          pool_mode = v;
        } else if (p.key == "max_user_connections" || p.key == "max_user_client_connections") {
          auto& out = p.key == "max_user_connections" ? max_conn : max_clients;
          const auto n = parse_decimal(p.value);
          if (!n) fail(e.line, where + ": " + p.key + ": expected an integer, got " + quoted(p.value));
          if (*n >= 0 && *n <= INT32_MAX) {
            out = static_cast<int>(*n);
          } else {
            out.reset();  // PgBouncer: negative = not set
          }
        } else if (p.key == "pool_size" || p.key == "reserve_pool_size") {
          const auto n = parse_decimal(p.value);
          if (!n) fail(e.line, where + ": " + p.key + ": expected an integer, got " + quoted(p.value));
          const int64_t min = p.key == "pool_size" ? 1 : 0;
          if (*n >= min && *n <= INT32_MAX) {
            b.set(p.key, std::to_string(*n));
          } else if (*n >= 0) {
            comments.push_back(untranslatable(p.key, p.value, "pgmux pools need at least 1 server connection"));
          }  // negative: not set, as PgBouncer reads it
        } else if (p.key == "query_timeout" || p.key == "idle_transaction_timeout" ||
                   p.key == "client_idle_timeout" || p.key == "transaction_timeout") {
          if (!p.value.empty() && p.value[0] == '-') continue;  // PgBouncer: negative = not set
          const auto s = parse_seconds(p.value);
          if (!s) {
            fail(e.line, where + ": " + p.key + ": expected a number of seconds such as \"15\" or \"0.5\", got " +
                             quoted(p.value));
          }
          if (s->value.count() == 0) continue;  // PgBouncer: 0 = the global value
          if (s->rounded)
            b.note(p.key + " = " + p.value + " is rounded to " + format_duration(s->value) +
                   " (pgmux counts milliseconds)");
          b.set(p.key, toml_string(format_duration(s->value)));
        } else if (p.key == "query_wait_timeout") {
          comments.push_back(unsupported(p.key, p.value, "pgmux has no per-user " + p.key));
        } else {
          comments.push_back(unsupported(p.key, p.value, "unknown PgBouncer user setting"));
        }
      }
      if (pool_mode) b.set("pool_mode", toml_string(*pool_mode));
      if (max_conn) b.set("max_user_connections", std::to_string(*max_conn));
      if (max_clients) b.set("max_user_client_connections", std::to_string(*max_clients));
      for (auto& c : comments) b.comment(c);
      users_.emplace_back(name, std::move(b));
    }
  }

  // ----------------------------------------------------------------- output --

  std::string render() {
    std::string out;
    auto line = [&](const std::string& l) { out += l + "\n"; };
    line("# pgmux configuration converted from " + comment_safe(source_) + " by `pgmux --convert-pgbouncer`.");
    line("# Where PgBouncer's (1.18) default differs from pgmux's, PgBouncer's value is written out.");
    line("# Lines starting with \"# unsupported:\" or \"# untranslatable:\" need a decision.");
    if (relative_paths_) {
      line("# note: relative paths are kept as written; pgmux resolves them against the directory of this file,");
      line("# PgBouncer resolved them against its working directory.");
    }
    for (const auto& l : top_.lines) line(l);

    auto table = [&](const std::string& header, const Block& b) {
      line("");
      line(header);
      for (const auto& l : b.lines) line(l);
    };
    table("[pgmux]", pgmux_);
    table("[auth]", auth_);
    if (!tls_.lines.empty()) table("[tls]", tls_);
    table("[server_tls]", server_tls_);
    if (!admin_.lines.empty()) table("[admin]", admin_);
    if (!log_.lines.empty()) table("[log]", log_);
    for (const auto& [name, b] : databases_) table("[databases." + toml_key(name) + "]", b);
    for (const auto& [name, b] : users_) table("[users." + toml_key(name) + "]", b);

    if (!leftovers_.empty()) {
      std::stable_sort(leftovers_.begin(), leftovers_.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      line("");
      line("# Not converted (line numbers of " + comment_safe(source_) + "):");
      for (const auto& [l, text] : leftovers_) line("# " + comment_safe(text) + "  [line " + std::to_string(l) + "]");
    }
    return out;
  }

  const Ini& ini_;
  const std::string& source_;
  std::map<std::string, std::vector<const Entry*>> settings_;
  std::set<std::string> taken_;

  Block top_, pgmux_, auth_, tls_, server_tls_, admin_, log_;
  std::vector<std::pair<std::string, Block>> databases_, users_;
  std::vector<std::pair<uint32_t, std::string>> leftovers_;

  std::string unix_dir_;
  int default_pool_size_ = 20;  // PgBouncer's and pgmux's default
  int min_pool_size_ = 0;
  bool reserve_disabled_ = false;
  bool auth_any_ = false;
  bool relative_paths_ = false;
  bool global_auth_user_ = false;
  const Entry* global_query_ = nullptr;  // auth_query without a global auth_user
  bool global_query_used_ = false;
};

}  // namespace

ConvertResult convert_pgbouncer_ini(std::string_view ini_text, const std::string& source) {
  ConvertResult r;
  try {
    const Ini ini = parse_ini(ini_text);
    r.toml = Converter(ini, source).run();
    r.ok = true;
  } catch (const Failure& f) {
    r.error = source + ":" + std::to_string(f.line) + ": " + f.text;
  } catch (const std::exception& e) {
    r.error = source + ": " + e.what();
  }
  return r;
}

ConvertResult convert_pgbouncer_ini_file(const std::string& path) {
  ConvertResult r;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    r.error = path + ": cannot open: " + std::strerror(errno);
    return r;
  }
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) {
    r.error = path + ": cannot read: " + std::strerror(err);
    return r;
  }
  return convert_pgbouncer_ini(text, path);
}

}  // namespace pgmux::conf
