// TOML -> validated Config. All TOML handling (toml11 is header-heavy) lives in
// this one translation unit.
//
// Strategy: read every table with a small reader that records which keys it
// knows, collect every problem with the source line of the offending value,
// and report the first one in file order. Nothing here throws to the caller.
#include "conf/config.hpp"


#include <algorithm>
#include <type_traits>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>
#include <toml.hpp>
#include <unordered_map>
#include <utility>

namespace pgmux::conf {
namespace {

namespace fs = std::filesystem;
using Value = toml::basic_value<toml::discard_comments, std::unordered_map, std::vector>;

constexpr int64_t kIntMax = std::numeric_limits<int>::max();
constexpr uint64_t kMinPacketSize = 1024;
constexpr uint64_t kMaxPacketSize = 0x7fffffff;  // the wire length field is an int32
// SO_SNDBUF / SO_RCVBUF: the kernel doubles the value and caps it at
// net.core.wmem_max / rmem_max; below 4kB nothing sensible happens.
constexpr uint64_t kMinSocketBuffer = 4096;
constexpr uint64_t kMaxSocketBuffer = 1u << 30;
constexpr size_t kMaxUnixPath = 107;  // sizeof(sockaddr_un::sun_path) - 1

// ---------------------------------------------------------------- helpers --

// A value in double quotes for an error message, on one line: quotes and
// backslashes escaped, control characters as \n, \r, \t or \xNN.
std::string dq(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// A table key as it would be written in TOML: bare when possible.
std::string key_repr(std::string_view k) {
  const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
  return bare ? std::string(k) : dq(k);
}

std::string type_name(const Value& v) {
  switch (v.type()) {
    case toml::value_t::boolean: return "a boolean";
    case toml::value_t::integer: return "an integer";
    case toml::value_t::floating: return "a float";
    case toml::value_t::string: return "a string";
    case toml::value_t::array: return "an array";
    case toml::value_t::table: return "a table";
    case toml::value_t::offset_datetime:
    case toml::value_t::local_datetime:
    case toml::value_t::local_date:
    case toml::value_t::local_time: return "a date/time";
    case toml::value_t::empty: return "nothing";
  }
  return "an unknown type";
}

// The literal as written in the file (so "got 99999999999999999999" shows what
// the user typed, not toml11's saturated int64).
std::string literal_text(const Value& v) {
  const auto loc = v.location();
  const auto& line = loc.line_str();
  if (loc.column() >= 1 && loc.column() - 1 + loc.region() <= line.size()) {
    return line.substr(loc.column() - 1, loc.region());
  }
  if (v.is_integer()) return std::to_string(v.as_integer());
  return "?";
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions),
// for "did you mean" hints.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates) {
  const size_t limit = word.size() <= 4 ? 1 : word.size() <= 10 ? 2 : 3;
  std::optional<std::string> best;
  size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

// "host:port", "[v6]:port", "host", "[v6]". Fills `why` on error.
struct HostPortText {
  std::string host;
  std::optional<uint16_t> port;
  bool bracketed = false;
};

std::optional<uint16_t> parse_port(std::string_view s, std::string& why) {
  if (s.empty()) {
    why = "missing port number after ':'";
    return std::nullopt;
  }
  uint32_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      why = "invalid port " + dq(s);
      return std::nullopt;
    }
    n = n * 10 + static_cast<uint32_t>(c - '0');
    if (n > 65535) break;
  }
  if (n < 1 || n > 65535) {
    why = "port must be between 1 and 65535, got " + std::string(s);
    return std::nullopt;
  }
  return static_cast<uint16_t>(n);
}

std::optional<HostPortText> split_host_port(std::string_view s, std::string& why) {
  HostPortText out;
  std::string_view rest;
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos) {
      why = "missing ']' after the IPv6 address";
      return std::nullopt;
    }
    out.host = std::string(s.substr(1, close - 1));
    out.bracketed = true;
    if (!is_ipv6(out.host)) {
      why = dq(out.host) + " is not an IPv6 address";
      return std::nullopt;
    }
    rest = s.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') {
      why = "expected ':' after ']'";
      return std::nullopt;
    }
  } else {
    const auto colon = s.find(':');
    if (colon != std::string_view::npos && s.find(':', colon + 1) != std::string_view::npos) {
      why = "IPv6 addresses must be written in brackets, e.g. \"[::1]:5432\"";
      return std::nullopt;
    }
    out.host = std::string(s.substr(0, colon));
    if (colon != std::string_view::npos) rest = s.substr(colon);
  }
  if (out.host.empty()) {
    why = "missing host";
    return std::nullopt;
  }
  if (out.host.find_first_of(" \t\r\n") != std::string::npos) {
    why = "host must not contain whitespace";
    return std::nullopt;
  }
  if (!rest.empty()) {
    out.port = parse_port(rest.substr(1), why);
    if (!out.port) return std::nullopt;
  }
  return out;
}

constexpr std::string_view kListenForms =
    "expected \"host:port\", \"[ipv6]:port\", \"*:port\" or \"unix:/path/.s.PGSQL.6432\"";

std::optional<ListenAddr> parse_listen(std::string_view s, bool allow_unix, std::string& why) {
  ListenAddr a;
  a.text = std::string(s);
  if (s.substr(0, 5) == "unix:") {
    if (!allow_unix) {
      why = "a unix socket is not supported here; expected \"host:port\"";
      return std::nullopt;
    }
    a.is_unix = true;
    a.path = std::string(s.substr(5));
    if (a.path.empty()) {
      why = "missing socket path after \"unix:\"";
      return std::nullopt;
    }
    // libpq's naming convention gives clients the port: /dir/.s.PGSQL.6432
    const auto base = fs::path(a.path).filename().string();
    constexpr std::string_view prefix = ".s.PGSQL.";
    if (base.size() > prefix.size() && base.compare(0, prefix.size(), prefix) == 0) {
      std::string ignored;
      if (auto p = parse_port(std::string_view(base).substr(prefix.size()), ignored)) a.port = *p;
    }
    return a;
  }
  auto hp = split_host_port(s, why);
  if (!hp) {
    if (why == "missing host") why = std::string(kListenForms);
    return std::nullopt;
  }
  if (!hp->port) {
    why = "missing port; " + std::string(kListenForms);
    return std::nullopt;
  }
  if (!hp->bracketed && hp->host != "*" && !is_ipv4(hp->host)) {
    why = "listen host must be an IP address or \"*\", got " + dq(hp->host) +
          " (host names are not resolved)";
    return std::nullopt;
  }
  a.host = hp->host;
  a.port = *hp->port;
  return a;
}

std::optional<HostPort> parse_replica(std::string_view s, std::string& why) {
  HostPort out;
  if (!s.empty() && s.front() == '/') {
    // A unix socket directory, optionally followed by ":port".
    const auto colon = s.rfind(':');
    std::string ignored;
    if (colon != std::string_view::npos) {
      if (auto p = parse_port(s.substr(colon + 1), ignored)) {
        out.host = std::string(s.substr(0, colon));
        out.port = *p;
        return out;
      }
    }
    out.host = std::string(s);
    return out;
  }
  auto hp = split_host_port(s, why);
  if (!hp) return std::nullopt;
  out.host = hp->host;
  if (hp->port) out.port = *hp->port;
  return out;
}

constexpr std::string_view kDurationUnitList = "ms, s, sec, min, h, d";

std::string duration_problem(std::string_view s) {
  if (s.empty()) return "empty duration; write e.g. \"15s\"";
  if (s.front() == '-') return "must not be negative, got " + dq(s);
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == 0) {
    return "invalid duration " + dq(s) + ": expected a number and a unit (" +
           std::string(kDurationUnitList) + "), e.g. \"15s\"";
  }
  size_t j = i;
  while (j < s.size() && s[j] == ' ') ++j;
  const auto unit = s.substr(j);
  if (unit.empty()) {
    return "duration " + dq(s) + " needs a unit (" + std::string(kDurationUnitList) +
           "), e.g. \"" + std::string(s.substr(0, i)) + "s\"";
  }
  if (unit.front() == '.' || unit.front() == ',') {
    return "invalid duration " + dq(s) +
           ": fractions are not supported, use a smaller unit (e.g. \"1500ms\" for 1.5s)";
  }
  if (unit == "m") {
    return "invalid duration " + dq(s) + ": \"m\" is ambiguous, write \"" +
           std::string(s.substr(0, i)) + "min\" for minutes or \"" + std::string(s.substr(0, i)) +
           "ms\" for milliseconds";
  }
  for (std::string_view u : {"ms", "s", "sec", "min", "h", "d"}) {
    if (unit == u) return "duration " + dq(s) + " is too large";
  }
  return "invalid duration " + dq(s) + ": unknown unit " + dq(unit) + " (use " +
         std::string(kDurationUnitList) + ")";
}

constexpr std::string_view kByteUnitList = "B, kB, MB, GB, TB";

std::string bytes_problem(std::string_view s) {
  if (s.empty()) return "empty size; write e.g. \"64MB\"";
  if (s.front() == '-') return "must not be negative, got " + dq(s);
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == 0) {
    return "invalid size " + dq(s) + ": expected a number and a unit (" +
           std::string(kByteUnitList) + "), e.g. \"64MB\"";
  }
  size_t j = i;
  while (j < s.size() && s[j] == ' ') ++j;
  const auto unit = s.substr(j);
  if (unit.empty()) return "invalid size " + dq(s);  // trailing blanks
  if (unit.front() == '.' || unit.front() == ',') {
    return "invalid size " + dq(s) +
           ": fractions are not supported, use a smaller unit (e.g. \"1536kB\" for 1.5MB)";
  }
  for (std::string_view u : {"B", "kB", "KB", "MB", "GB", "TB"}) {
    if (unit == u) return "size " + dq(s) + " is too large";
  }
  return "invalid size " + dq(s) + ": unknown unit " + dq(unit) + " (use " +
         std::string(kByteUnitList) + "; units are case-sensitive)";
}

// ------------------------------------------------------------ error sink --

struct Problem {
  uint32_t line;  // 0 = unknown
  uint32_t column;
  std::string text;
  bool first_among_unplaced;  // among problems without a line, report this one first
};

struct Ctx {
  std::string source;
  std::vector<Problem> problems;
  // Keys each fixed table knows, for hints on misplaced top-level keys.
  std::vector<std::pair<std::string, std::vector<std::string>>> section_keys;

  void add(const Value* at, std::string text, bool first_among_unplaced = false) {
    uint32_t line = 0, column = 0;
    if (at) {
      const auto loc = at->location();
      line = loc.line();
      column = loc.column();
    }
    problems.push_back({line, column, std::move(text), first_among_unplaced});
  }

  std::string first_error() const {
    // File order; problems without a line (a missing table) come last.
    auto order = [](const Problem& p) {
      return std::make_tuple(p.line == 0 ? UINT32_MAX : p.line, !p.first_among_unplaced, p.column);
    };
    const auto it = std::min_element(problems.begin(), problems.end(),
                                     [&](const Problem& a, const Problem& b) { return order(a) < order(b); });
    std::string out = source;
    if (it->line != 0) out += ":" + std::to_string(it->line);
    return out + ": " + it->text;
  }
};

// PgBouncer's flat setting names and where they live here, so a pasted
// pgbouncer.ini setting gets a useful answer.
const std::pair<std::string_view, std::string_view> kPgBouncerNames[] = {
    {"auth_type", "'type' in [auth]"},
    {"auth_file", "'file' in [auth]"},
    {"auth_query", "'query' in [auth]"},
    {"auth_user", "'query_user' in [auth]"},
    {"auth_dbname", "'query_database' in [auth]"},
    {"auth_hba_file", "'hba_file' in [auth]"},
    {"auth_ident_file", "'ident_file' in [auth]"},
    {"listen_addr", "'listen' in [pgmux], e.g. listen = [\"127.0.0.1:6432\"]"},
    {"listen_port", "'listen' in [pgmux], e.g. listen = [\"127.0.0.1:6432\"]"},
    {"unix_socket_dir", "'listen' in [pgmux], e.g. listen = [\"unix:/run/pgmux/.s.PGSQL.6432\"]"},
    {"pool_size", "'default_pool_size' in [pgmux]"},
    {"client_tls_sslmode", "'mode' in [tls]"},
    {"client_tls_cert_file", "'cert' in [tls]"},
    {"client_tls_key_file", "'key' in [tls]"},
    {"client_tls_ca_file", "'ca' in [tls]"},
    {"client_tls_protocols", "'protocols' in [tls]"},
    {"client_tls_ciphers", "'ciphers' in [tls]"},
    {"server_tls_sslmode", "'mode' in [server_tls]"},
    {"server_tls_cert_file", "'cert' in [server_tls]"},
    {"server_tls_key_file", "'key' in [server_tls]"},
    {"server_tls_ca_file", "'ca' in [server_tls]"},
    {"server_tls_protocols", "'protocols' in [server_tls]"},
    {"server_tls_ciphers", "'ciphers' in [server_tls]"},
    {"admin_users", "'users' in [admin]"},
    {"stats_users", "'stats_users' in [admin]"},
    {"logfile", "'file' in [log]"},
    {"log_connections", "'connections' in [log]"},
    {"log_disconnections", "'disconnections' in [log]"},
};

// ---------------------------------------------------------- table reader --

class Table {
 public:
  // `tbl` is null when the table is absent: every read then keeps the default.
  Table(Ctx& ctx, const Value* tbl, std::string name) : ctx_(ctx), tbl_(tbl), name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  const Value* value() const { return tbl_; }

  const Value* take(std::string_view key) {
    known_.emplace_back(key);
    if (!tbl_) return nullptr;
    const auto& t = tbl_->as_table();
    const auto it = t.find(std::string(key));
    return it == t.end() ? nullptr : &it->second;
  }

  void error(const Value* at, std::string_view key, const std::string& reason) {
    ctx_.add(at, name_ + " " + std::string(key) + ": " + reason);
  }

  void type_error(const Value& v, std::string_view key, std::string_view expected) {
    std::string reason = "expected " + std::string(expected) + ", got " + type_name(v);
    if (v.is_array() && expected == "a table") reason += " (write [name], not [[name]])";
    error(&v, key, reason);
  }

  // Integers --------------------------------------------------------------
  std::optional<int64_t> raw_integer(std::string_view key, const Value* v, int64_t min, int64_t max) {
    if (!v) return std::nullopt;
    if (!v->is_integer()) {
      std::string expected = "an integer";
      if (v->is_string()) {
        const auto& s = v->as_string().str;
        if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
          error(v, key, "expected an integer, got a string (write " + s + " without quotes)");
          return std::nullopt;
        }
      }
      type_error(*v, key, expected);
      return std::nullopt;
    }
    const int64_t n = v->as_integer();
    if (n < min || n > max) {
      std::string rule;
      if (max >= kIntMax) {
        rule = "must be >= " + std::to_string(min);
      } else {
        rule = "must be between " + std::to_string(min) + " and " + std::to_string(max);
      }
      error(v, key, rule + ", got " + literal_text(*v));
      return std::nullopt;
    }
    return n;
  }

  const Value* integer(std::string_view key, int& out, int64_t min, int64_t max = kIntMax) {
    const Value* v = take(key);
    if (auto n = raw_integer(key, v, min, max)) out = static_cast<int>(*n);
    return v;
  }

  const Value* integer(std::string_view key, std::optional<int>& out, int64_t min, int64_t max = kIntMax) {
    const Value* v = take(key);
    if (auto n = raw_integer(key, v, min, max)) out = static_cast<int>(*n);
    return v;
  }

  const Value* port(std::string_view key, uint16_t& out) {
    const Value* v = take(key);
    if (auto n = raw_integer(key, v, 1, 65535)) out = static_cast<uint16_t>(*n);
    return v;
  }

  // Strings and booleans -----------------------------------------------------
  const Value* string(std::string_view key, std::string& out, bool non_empty = false) {
    const Value* v = take(key);
    if (!v) return nullptr;
    if (!v->is_string()) {
      type_error(*v, key, "a string");
    } else if (non_empty && v->as_string().str.empty()) {
      error(v, key, "must not be empty");
    } else {
      out = v->as_string().str;
    }
    return v;
  }

  const Value* string(std::string_view key, std::optional<std::string>& out, bool non_empty = false) {
    std::string s;
    const Value* v = string(key, s, non_empty);
    if (v && v->is_string() && (!non_empty || !s.empty())) out = std::move(s);
    return v;
  }

  const Value* boolean(std::string_view key, bool& out) {
    const Value* v = take(key);
    if (!v) return nullptr;
    if (!v->is_boolean()) {
      type_error(*v, key, "a boolean (true or false)");
    } else {
      out = v->as_boolean();
    }
    return v;
  }

  const Value* boolean(std::string_view key, std::optional<bool>& out) {
    bool b = false;
    const Value* v = boolean(key, b);
    if (v && v->is_boolean()) out = b;
    return v;
  }

  // Either one string or an array of strings; each element checked by `fn`,
  // which reports its own errors and returns false on a bad element.
  template <typename Fn>
  const Value* string_list(std::string_view key, Fn&& fn) {
    const Value* v = take(key);
    if (!v) return nullptr;
    if (v->is_string()) {
      fn(*v, v->as_string().str);
    } else if (v->is_array()) {
      for (const auto& e : v->as_array()) {
        if (!e.is_string()) {
          error(&e, key, "expected an array of strings, found " + type_name(e));
          continue;
        }
        fn(e, e.as_string().str);
      }
    } else {
      type_error(*v, key, "an array of strings");
    }
    return v;
  }

  const Value* names(std::string_view key, std::vector<std::string>& out) {
    return string_list(key, [&](const Value& e, const std::string& s) {
      if (s.empty()) {
        error(&e, key, "names must not be empty");
      } else if (std::find(out.begin(), out.end(), s) != out.end()) {
        error(&e, key, dq(s) + " is listed twice");
      } else {
        out.push_back(s);
      }
    });
  }

  // Durations and sizes -----------------------------------------------------
  std::optional<Duration> raw_duration(std::string_view key, const Value* v) {
    if (!v) return std::nullopt;
    if (v->is_integer()) {
      if (v->as_integer() == 0) return Duration{0};
      if (v->as_integer() < 0) {
        error(v, key, "must not be negative, got " + literal_text(*v));
        return std::nullopt;
      }
      const auto text = literal_text(*v);
      error(v, key,
            "expected a duration string with a unit, e.g. \"15s\" or \"250ms\"; got the integer " + text +
                " (write \"" + text + "s\" if you mean seconds)");
      return std::nullopt;
    }
    if (!v->is_string()) {
      type_error(*v, key, "a duration string such as \"15s\"");
      return std::nullopt;
    }
    const auto& s = v->as_string().str;
    if (auto d = parse_duration(s)) return d;
    error(v, key, duration_problem(s));
    return std::nullopt;
  }

  const Value* duration(std::string_view key, Duration& out, bool positive = false) {
    const Value* v = take(key);
    if (auto d = raw_duration(key, v)) {
      if (positive && d->count() == 0) {
        error(v, key, "must be greater than 0");
      } else {
        out = *d;
      }
    }
    return v;
  }

  // A duration that `rule` must also accept: it returns the reason it does
  // not (out then keeps its value), or an empty string.
  template <typename Rule>
  const Value* checked_duration(std::string_view key, Duration& out, Rule&& rule) {
    const Value* v = take(key);
    if (auto d = raw_duration(key, v)) {
      if (std::string why = rule(*d); !why.empty()) error(v, key, why);
      else out = *d;
    }
    return v;
  }

  const Value* bytes(std::string_view key, uint64_t& out, uint64_t min, uint64_t max) {
    const Value* v = take(key);
    if (!v) return nullptr;
    std::optional<uint64_t> n;
    if (v->is_integer()) {
      if (v->as_integer() < 0) {
        error(v, key, "must not be negative, got " + literal_text(*v));
        return v;
      }
      n = static_cast<uint64_t>(v->as_integer());
    } else if (v->is_string()) {
      n = parse_bytes(v->as_string().str);
      if (!n) {
        error(v, key, bytes_problem(v->as_string().str));
        return v;
      }
    } else {
      type_error(*v, key, "a size such as \"64MB\" or a number of bytes");
      return v;
    }
    if (*n < min || *n > max) {
      error(v, key, "must be between " + format_bytes(min) + " and " + std::to_string(max) + " bytes, got " +
                        literal_text(*v));
      return v;
    }
    out = *n;
    return v;
  }

  // Enums ----------------------------------------------------------------------
  template <typename E, size_t N>
  std::optional<E> raw_enum(std::string_view key, const Value* v, const E (&values)[N]) {
    if (!v) return std::nullopt;
    if (!v->is_string()) {
      type_error(*v, key, "a string");
      return std::nullopt;
    }
    const auto& s = v->as_string().str;
    // Routing values may be written with '_' ("least_outstanding" as well as
    // "least-outstanding"); libpq-style values (sslmode, auth types) are
    // spelled exactly as libpq and PostgreSQL spell them.
    constexpr bool loose = std::is_same_v<E, LoadBalance> || std::is_same_v<E, TargetSessionAttrs> ||
                           std::is_same_v<E, ReplicaFallback> || std::is_same_v<E, ReadRouting>;
    auto same = [&](std::string_view a, std::string_view b) {
      if (!loose) return a == b;
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
        if (x != y) return false;
      }
      return true;
    };
    std::string allowed;
    for (const E e : values) {
      if (same(to_string(e), s)) return e;
      if (!allowed.empty()) allowed += ", ";
      allowed += dq(to_string(e));
    }
    error(v, key, "must be one of " + allowed + "; got " + dq(s));
    return std::nullopt;
  }

  template <typename E, size_t N>
  const Value* enumeration(std::string_view key, E& out, const E (&values)[N]) {
    const Value* v = take(key);
    if (auto e = raw_enum(key, v, values)) out = *e;
    return v;
  }

  template <typename E, size_t N>
  const Value* enumeration(std::string_view key, std::optional<E>& out, const E (&values)[N]) {
    const Value* v = take(key);
    if (auto e = raw_enum(key, v, values)) out = *e;
    return v;
  }

  // Unknown keys ------------------------------------------------------------
  void finish() {
    if (!tbl_) return;
    for (const auto& [key, v] : tbl_->as_table()) {
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::string msg = "unknown key '" + key + "' in " + name_;
      if (auto hint = closest(key, known_)) {
        msg += " (did you mean '" + *hint + "'?)";
      } else if (name_ == "[pgmux]") {
        for (const auto& [old_name, where] : kPgBouncerNames) {
          if (key == old_name) msg += " (in pgmux this is " + std::string(where) + ")";
        }
      }
      ctx_.add(&v, msg);
    }
  }

  const std::vector<std::string>& known() const { return known_; }

 private:
  Ctx& ctx_;
  const Value* tbl_;
  std::string name_;
  std::vector<std::string> known_;
};

constexpr PoolMode kPoolModes[] = {PoolMode::session, PoolMode::transaction, PoolMode::statement};
constexpr AuthType kAuthTypes[] = {AuthType::trust, AuthType::md5, AuthType::scram_sha_256, AuthType::hba};
constexpr TlsMode kTlsModes[] = {TlsMode::disable, TlsMode::allow,     TlsMode::prefer,
                                 TlsMode::require, TlsMode::verify_ca, TlsMode::verify_full};
constexpr ReadRouting kReadRoutings[] = {ReadRouting::off, ReadRouting::explicit_, ReadRouting::automatic};
constexpr LoadBalance kLoadBalances[] = {LoadBalance::least_outstanding, LoadBalance::round_robin,
                                         LoadBalance::random};
constexpr ReplicaFallback kFallbacks[] = {ReplicaFallback::primary, ReplicaFallback::error};
constexpr TargetSessionAttrs kSessionAttrs[] = {TargetSessionAttrs::any, TargetSessionAttrs::read_write,
                                                TargetSessionAttrs::read_only,
                                                TargetSessionAttrs::prefer_standby};

// ---------------------------------------------------------------- sections --

void read_pgmux(Table& t, Config& c) {
  if (const Value* v = t.string_list("listen", [&](const Value& e, const std::string& s) {
        std::string why;
        auto a = parse_listen(s, /*allow_unix=*/true, why);
        if (!a) {
          t.error(&e, "listen", "invalid address " + dq(s) + ": " + why);
          return;
        }
        for (const auto& prev : c.listen) {
          if (prev.is_unix == a->is_unix && prev.host == a->host && prev.port == a->port &&
              prev.path == a->path) {
            t.error(&e, "listen", dq(s) + " is listed twice");
            return;
          }
        }
        c.listen.push_back(std::move(*a));
      })) {
    if (v->is_array() && v->as_array().empty()) t.error(v, "listen", "must list at least one address");
  }

  int workers = c.workers;
  t.integer("workers", workers, 0, kMaxWorkers);
  if (workers == 0)
    workers = std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxWorkers);
  c.workers = workers;

  t.boolean("so_reuseport", c.so_reuseport);
  t.integer("listen_backlog", c.listen_backlog, 1, 65535);
  if (const Value* v = t.take("unix_socket_mode")) {
    // "0770" (octal digits) or a TOML octal integer (0o770).
    std::optional<uint64_t> mode;
    if (v->is_string()) {
      const std::string& s = v->as_string().str;
      if (!s.empty() && s.size() <= 4 && s.find_first_not_of("01234567") == std::string::npos)
        mode = std::stoul(s, nullptr, 8);
    } else if (v->is_integer() && v->as_integer() >= 0 && literal_text(*v).rfind("0o", 0) == 0) {
      mode = uint64_t(v->as_integer());  // a decimal integer is no mode (777 would be 0o1411)
    }
    if (!v->is_string() && !v->is_integer())
      t.type_error(*v, "unix_socket_mode", "an octal mode such as \"0770\"");
    else if (!mode || *mode > 0777)
      t.error(v, "unix_socket_mode",
              "expected an octal mode up to 0777 such as \"0770\" (a string, or the TOML integer 0o770), got " +
                  literal_text(*v));
    else
      c.unix_socket_mode = uint32_t(*mode);
  }
  t.string("unix_socket_group", c.unix_socket_group);
  t.enumeration("pool_mode", c.pool_mode, kPoolModes);
  t.integer("max_client_conn", c.max_client_conn, 1);
  const Value* dps = t.integer("default_pool_size", c.default_pool_size, 1);
  const Value* mps = t.integer("min_pool_size", c.min_pool_size, 0);
  t.integer("reserve_pool_size", c.reserve_pool_size, 0);
  t.duration("reserve_pool_timeout", c.reserve_pool_timeout);
  t.integer("max_db_connections", c.max_db_connections, 0);
  t.integer("max_user_connections", c.max_user_connections, 0);
  t.integer("max_db_client_connections", c.max_db_client_connections, 0);
  t.integer("max_user_client_connections", c.max_user_client_connections, 0);
  t.integer("max_prepared_statements", c.max_prepared_statements, 0);
  t.string("server_reset_query", c.server_reset_query);
  t.boolean("server_reset_query_always", c.server_reset_query_always);
  t.boolean("server_fast_close", c.server_fast_close);
  t.boolean("server_round_robin", c.server_round_robin);
  t.boolean("application_name_add_host", c.application_name_add_host);
  t.boolean("server_pipelining", c.server_pipelining);
  t.string("server_check_query", c.server_check_query);
  t.duration("server_check_delay", c.server_check_delay);
  t.duration("server_connect_timeout", c.server_connect_timeout);
  t.duration("cancel_wait_timeout", c.cancel_wait_timeout);
  t.duration("server_login_retry", c.server_login_retry);
  t.duration("server_idle_timeout", c.server_idle_timeout);
  t.duration("server_lifetime", c.server_lifetime);
  t.duration("query_timeout", c.query_timeout);
  t.duration("query_wait_timeout", c.query_wait_timeout);
  t.duration("query_wait_notify", c.query_wait_notify);
  t.duration("client_idle_timeout", c.client_idle_timeout);
  t.duration("client_login_timeout", c.client_login_timeout);
  t.duration("idle_transaction_timeout", c.idle_transaction_timeout);
  t.duration("transaction_timeout", c.transaction_timeout);
  t.duration("shutdown_timeout", c.shutdown_timeout);
  t.duration("autodb_idle_timeout", c.autodb_idle_timeout);
  uint64_t packet = c.max_packet_size;
  t.bytes("max_packet_size", packet, kMinPacketSize, kMaxPacketSize);
  c.max_packet_size = static_cast<uint32_t>(packet);
  t.integer("max_startup_params", c.max_startup_params, 1);
  t.integer("max_concurrent_logins", c.max_concurrent_logins, 1);
  t.duration("auth_failure_delay", c.auth_failure_delay);
  // pgmux computes PBKDF2 on the worker's thread (once per user and
  // password): the same cap as for a server that asks.
  t.integer("scram_iterations", c.scram_iterations, 1, 1000000);
  t.boolean("tcp_keepalive", c.tcp_keepalive);
  for (auto [key, out] : {std::pair{"tcp_keepidle", &c.tcp_keepidle}, std::pair{"tcp_keepintvl", &c.tcp_keepintvl}}) {
    t.checked_duration(key, *out, [](Duration d) {
      return d.count() % 1000 != 0 || d > std::chrono::seconds(32767)
                 ? "must be whole seconds up to 32767s (0s: the system's value), got " + format_duration(d)
                 : std::string();
    });
  }
  t.integer("tcp_keepcnt", c.tcp_keepcnt, 0, 127);
  t.checked_duration("tcp_user_timeout", c.tcp_user_timeout, [](Duration d) {
    return d.count() > kIntMax ? "must be at most " + std::to_string(kIntMax) + "ms" : std::string();
  });
  uint64_t socket_buffer = c.tcp_socket_buffer;
  if (const Value* v = t.bytes("tcp_socket_buffer", socket_buffer, 0, kMaxSocketBuffer);
      v && socket_buffer != 0 && socket_buffer < kMinSocketBuffer) {
    t.error(v, "tcp_socket_buffer",
            "must be 0 (the system's) or at least " + format_bytes(kMinSocketBuffer) + ", got " + literal_text(*v));
    socket_buffer = 0;
  }
  c.tcp_socket_buffer = static_cast<uint32_t>(socket_buffer);
  t.checked_duration("tcp_defer_accept", c.tcp_defer_accept, [](Duration d) {
    if (d.count() % 1000 != 0) return "must be whole seconds, got " + format_duration(d);
    return d > std::chrono::hours(1) ? "must be at most 1h, got " + format_duration(d) : std::string();
  });

  if (c.min_pool_size > c.default_pool_size && (mps || dps)) {
    t.error(mps ? mps : dps, mps ? "min_pool_size" : "default_pool_size",
            "min_pool_size (" + std::to_string(c.min_pool_size) + ") must not exceed default_pool_size (" +
                std::to_string(c.default_pool_size) + ")");
  }
}

void read_auth(Table& t, Config& c) {
  const Value* type = t.enumeration("type", c.auth.type, kAuthTypes);
  t.string("file", c.auth.file);
  const Value* query = t.string("query", c.auth.query, /*non_empty=*/true);
  if (query) c.auth.query_set = query->is_string();
  t.string("query_user", c.auth.query_user);
  t.string("query_database", c.auth.query_database);
  t.string("hba_file", c.auth.hba_file);
  const Value* ident = t.string("ident_file", c.auth.ident_file);

  const Value* at = type ? type : t.value();
  if (c.auth.type == AuthType::hba && c.auth.hba_file.empty()) {
    t.error(at, "hba_file", "required when type = \"hba\"");
  }
  if (!c.auth.ident_file.empty() && c.auth.type != AuthType::hba)
    t.error(ident, "ident_file", "only used with type = \"hba\" (its map= options name the maps)");
}

// [auth] against the [databases] entries: the userlist may be left out when
// an entry has an auth_query (as in PgBouncer, the others then know no
// user); each lookup needs a role, and the entry it runs in must exist.
void check_auth_lookups(Ctx& ctx, const Value* auth_section, const Value* databases_section, const Config& c) {
  auto at = [](const Value* table, std::string_view key) -> const Value* {
    if (!table || !table->is_table()) return nullptr;
    const auto& t = table->as_table();
    const auto it = t.find(std::string(key));
    return it == t.end() ? nullptr : &it->second;
  };
  auto db_value = [&](const std::string& name, std::string_view key) {
    const Value* v = at(at(databases_section, name), key);
    return v ? v : at(databases_section, name);
  };
  // A lookup database must be an entry of its own.
  auto check_target = [&](const Value* at_value, const std::string& where, const std::string& target) {
    if (target.empty() || (target != "*" && c.databases.count(target))) return;
    ctx.add(at_value, where + ": " + dq(target) + " is not a [databases] entry" +
                          (target == "*" ? " (name one with its own table; \"*\" stands for any name)" : ""));
  };
  bool some_entry_looks_up = false;
  for (const auto& [name, db] : c.databases) {
    const AuthLookup l = c.auth_lookup(db);
    some_entry_looks_up = some_entry_looks_up || l.enabled;
    const std::string shown = "[databases." + key_repr(name) + "]";
    if (l.enabled && l.user->empty()) {
      if (db.auth_query)
        ctx.add(db_value(name, "auth_query"), shown + " auth_query_user: required with auth_query when [auth] "
                                                       "query_user is not set (the role that runs the lookup)");
      else if (!db.auth_query_user)
        ctx.add(at(auth_section, "query"),
                "[auth] query_user: required when query is set (the role that runs the lookup)");
    }
    if (db.auth_query_database)
      check_target(db_value(name, "auth_query_database"), shown + " auth_query_database", *db.auth_query_database);
  }
  check_target(at(auth_section, "query_database"), "[auth] query_database", c.auth.query_database);
  if ((c.auth.type == AuthType::md5 || c.auth.type == AuthType::scram_sha_256) && c.auth.file.empty() &&
      !some_entry_looks_up) {
    const Value* type = at(auth_section, "type");
    ctx.add(type ? type : auth_section,
            "[auth] file: required when type = " + dq(to_string(c.auth.type)) +
                " (the userlist file with \"user\" \"secret\" lines), unless query is set");
  }
}

bool valid_tls_protocols(const std::string& s, std::string& bad) {
  static const std::set<std::string> known = {"all",     "secure",  "legacy",  "default",
                                              "tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3"};
  size_t count = 0;
  size_t i = 0;
  while (i < s.size()) {
    const size_t j = s.find_first_of(", :", i);
    std::string tok = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
    i = j == std::string::npos ? s.size() : j + 1;
    if (tok.empty()) continue;
    std::transform(tok.begin(), tok.end(), tok.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (!known.count(tok)) {
      bad = tok;
      return false;
    }
    ++count;
  }
  return count > 0;
}

void read_tls(Table& t, TlsConfig& tls, bool client_side) {
  const Value* mode = t.enumeration("mode", tls.mode, kTlsModes);
  const Value* cert = t.string("cert", tls.cert);
  const Value* key = t.string("key", tls.key);
  t.string("ca", tls.ca);
  if (const Value* p = t.string("protocols", tls.protocols); p && p->is_string()) {
    std::string bad;
    if (!valid_tls_protocols(tls.protocols, bad)) {
      t.error(p, "protocols",
              (bad.empty() ? std::string("must name at least one protocol") : "unknown protocol " + dq(bad)) +
                  " (use tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, all, secure or legacy, separated by commas)");
    }
  }
  t.string("ciphers", tls.ciphers);
  t.string("tls13_ciphers", tls.tls13_ciphers);
  t.string("groups", tls.groups);

  const Value* at = mode ? mode : t.value();
  const std::string mode_text = dq(to_string(tls.mode));
  if (client_side && tls.mode != TlsMode::disable) {
    if (tls.cert.empty()) t.error(at, "cert", "required when mode = " + mode_text);
    if (tls.key.empty()) t.error(at, "key", "required when mode = " + mode_text);
    if (tls_verifies(tls.mode) && tls.ca.empty()) {
      t.error(at, "ca", "required when mode = " + mode_text + " (the CA that signs client certificates)");
    }
  } else if (!tls.cert.empty() && tls.key.empty()) {
    t.error(cert, "key", "required when cert is set");
  } else if (tls.cert.empty() && !tls.key.empty()) {
    t.error(key, "cert", "required when key is set");
  }
}

void read_admin(Table& t, Config& c) {
  t.names("users", c.admin.users);
  t.names("stats_users", c.admin.stats_users);
  if (const Value* v = t.string("metrics_listen", c.admin.metrics_listen); v && !c.admin.metrics_listen.empty()) {
    std::string why;
    if (!parse_listen(c.admin.metrics_listen, /*allow_unix=*/false, why)) {
      t.error(v, "metrics_listen", "invalid address " + dq(c.admin.metrics_listen) + ": " + why);
    }
  }
}

void read_log(Table& t, Config& c) {
  if (const Value* v = t.string("level", c.log.level)) {
    if (c.log.level == "warning") c.log.level = "warn";  // spdlog's own spelling
    static const std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (v->is_string() && std::find(levels.begin(), levels.end(), c.log.level) == levels.end()) {
      t.error(v, "level",
              "must be one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"critical\", \"off\"; got " +
                  dq(v->as_string().str));
      c.log.level = "info";
    }
  }
  t.string("file", c.log.file);
  t.boolean("connections", c.log.connections);
  t.boolean("disconnections", c.log.disconnections);
  t.checked_duration("stats_period", c.log.stats_period, [](Duration d) {
    return d.count() != 0 && d < std::chrono::seconds(1)
               ? "must be at least 1s (0s: no stats lines), got " + format_duration(d)
               : std::string();
  });
}

// [databases.X] parameters = { TimeZone = "UTC", work_mem = "64MB" }
void read_parameters(Table& t, const Value& v, std::vector<std::pair<std::string, std::string>>& out) {
  if (!v.is_table()) {
    t.type_error(v, "parameters", "a table such as { TimeZone = \"UTC\" }");
    return;
  }
  auto lower = [](std::string s) {
    for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  std::set<std::string> seen;
  for (const auto& [name, value] : v.as_table()) {
    const std::string key = "parameters." + key_repr(name);
    const bool valid_name = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.';
    });
    const std::string l = lower(name);
    if (!valid_name) {
      t.error(&value, key, "not a parameter name (letters, digits, '_' and '.')");
    } else if (l == "user" || l == "database" || l == "options" || l == "replication") {
      t.error(&value, key, "is not a setting: pgmux sends " + l + " itself" +
                               (l == "user" ? " (force the server login with user = ...)" : ""));
    } else if (!seen.insert(l).second) {
      t.error(&value, key, "is set twice (parameter names are case-insensitive)");
    } else if (value.is_string()) {
      out.emplace_back(name, value.as_string().str);
    } else if (value.is_integer()) {
      out.emplace_back(name, std::to_string(value.as_integer()));
    } else if (value.is_boolean()) {
      out.emplace_back(name, value.as_boolean() ? "on" : "off");
    } else {
      t.type_error(value, key, "a string (or an integer or a boolean)");
    }
  }
  // The table's order is not kept: sorted, so equal settings compare equal.
  std::sort(out.begin(), out.end());
}

void read_database(Table& t, const std::string& name, Config& c) {
  DatabaseConfig db;
  db.name = name;
  db.dbname = name == "*" ? std::string() : name;
  t.string("host", db.host, /*non_empty=*/true);
  t.port("port", db.port);
  t.string("dbname", db.dbname);
  t.string("user", db.user, /*non_empty=*/true);
  t.string("password", db.password);
  t.enumeration("pool_mode", db.pool_mode, kPoolModes);
  const Value* ps = t.integer("pool_size", db.pool_size, 1);
  const Value* mps = t.integer("min_pool_size", db.min_pool_size, 0);
  t.integer("reserve_pool_size", db.reserve_pool_size, 0);
  t.integer("max_db_connections", db.max_db_connections, 0);
  t.integer("max_db_client_connections", db.max_db_client_connections, 0);
  t.boolean("server_pipelining", db.server_pipelining);
  for (auto [key, out] : {std::pair{"server_lifetime", &db.server_lifetime},
                          std::pair{"query_wait_timeout", &db.query_wait_timeout}}) {
    if (auto d = t.raw_duration(key, t.take(key))) *out = *d;
  }
  t.string("connect_query", db.connect_query);
  if (const Value* v = t.take("parameters")) read_parameters(t, *v, db.parameters);
  t.string_list("replicas", [&](const Value& e, const std::string& s) {
    std::string why;
    auto r = parse_replica(s, why);
    if (!r) {
      t.error(&e, "replicas", "invalid replica " + dq(s) + ": " + why);
      return;
    }
    for (const auto& prev : db.replicas) {
      if (prev.host == r->host && prev.port == r->port) {
        t.error(&e, "replicas", dq(s) + " is listed twice");
        return;
      }
    }
    db.replicas.push_back(std::move(*r));
  });
  const Value* rr = t.enumeration("read_routing", db.read_routing, kReadRoutings);
  t.enumeration("load_balance", db.load_balance, kLoadBalances);
  if (const Value* v = t.take("max_replica_lag")) {
    if (v->is_integer() && v->as_integer() == 0) {
      db.max_replica_lag = Duration{0};
    } else if (v->is_string()) {
      const auto& s = v->as_string().str;
      if (auto d = parse_duration(s)) {
        db.max_replica_lag = *d;
      } else if (auto b = parse_bytes(s); b && s.find_first_not_of("0123456789") != std::string::npos) {
        db.max_replica_lag_bytes = *b;
      } else {
        t.error(v, "max_replica_lag",
                "expected a duration such as \"10s\" or a byte size such as \"16MB\", got " + dq(s));
      }
    } else if (v->is_integer()) {
      t.error(v, "max_replica_lag",
              "expected a duration such as \"10s\" or a byte size such as \"16MB\", got the integer " +
                  literal_text(*v) + " (the unit decides which lag is bounded)");
    } else {
      t.type_error(*v, "max_replica_lag", "a duration such as \"10s\" or a byte size such as \"16MB\"");
    }
  }
  t.enumeration("replica_fallback", db.replica_fallback, kFallbacks);
  t.duration("health_check_interval", db.health_check_interval, /*positive=*/true);
  t.duration("health_check_timeout", db.health_check_timeout, /*positive=*/true);
  t.string("health_check_user", db.health_check_user, /*non_empty=*/true);
  t.string("health_check_password", db.health_check_password);
  t.boolean("read_your_writes", db.read_your_writes);
  t.enumeration("target_session_attrs", db.target_session_attrs, kSessionAttrs);
  t.string("auth_query", db.auth_query, /*non_empty=*/true);
  t.string("auth_query_user", db.auth_query_user, /*non_empty=*/true);
  t.string("auth_query_database", db.auth_query_database);

  if (db.read_routing != ReadRouting::off) {
    if (db.replicas.empty()) {
      t.error(rr, "read_routing", "needs replicas (add replicas = [\"host:port\", ...])");
    } else if (db.pool_mode.value_or(c.pool_mode) == PoolMode::session) {
      t.error(rr, "read_routing",
              "needs pool_mode \"transaction\" or \"statement\" (a session is bound to one "
              "server; for session pooling use target_session_attrs with a separate database name)");
    }
  }
  if (db.routed() && !db.check_user()) {
    t.error(nullptr, "health_check_user",
            "required with replicas or target_session_attrs (the login pgmux uses to check each "
            "backend's health and role), unless user is set");
  }

  if (db.min_pool_size || db.pool_size) {
    const int min = db.min_pool_size.value_or(c.min_pool_size);
    const int size = db.pool_size.value_or(c.default_pool_size);
    if (min > size) {
      t.error(mps ? mps : ps, mps ? "min_pool_size" : "pool_size",
              "min_pool_size (" + std::to_string(min) + ") must not exceed pool_size (" + std::to_string(size) +
                  ")");
    }
  }
  c.databases.emplace(name, std::move(db));
}

void read_databases(Ctx& ctx, const Value* section, Config& c) {
  if (!section) {
    ctx.add(nullptr, "no [databases] defined (add one, e.g. [databases.app] with host and port)",
            /*first_among_unplaced=*/true);
    return;
  }
  const auto& tbl = section->as_table();
  if (tbl.empty()) {
    ctx.add(section, "[databases]: no [databases] defined: the table is empty (add e.g. [databases.app])");
    return;
  }
  for (const auto& [name, v] : tbl) {
    const std::string shown = "[databases." + key_repr(name) + "]";
    if (!v.is_table()) {
      std::string msg = "[databases] " + key_repr(name) + ": expected a table (" + shown + "), got " + type_name(v);
      if (v.is_string() && v.as_string().str.find('=') != std::string::npos) {
        msg += "; PgBouncer connection strings are written as keys: host = ..., port = ...";
      }
      ctx.add(&v, msg);
      continue;
    }
    if (name.empty()) {
      ctx.add(&v, shown + ": the database name must not be empty");
      continue;
    }
    if (name == "pgmux" || name == "pgbouncer") {
      ctx.add(&v, shown + ": the name " + dq(name) + " is reserved for the admin console");
      continue;
    }
    Table t(ctx, &v, shown);
    read_database(t, name, c);
    t.finish();
  }
}

void read_users(Ctx& ctx, const Value* section, Config& c) {
  if (!section) return;
  for (const auto& [name, v] : section->as_table()) {
    const std::string shown = "[users." + key_repr(name) + "]";
    if (!v.is_table()) {
      ctx.add(&v, "[users] " + key_repr(name) + ": expected a table (" + shown + "), got " + type_name(v));
      continue;
    }
    if (name.empty()) {
      ctx.add(&v, shown + ": the user name must not be empty");
      continue;
    }
    Table t(ctx, &v, shown);
    UserConfig u;
    u.name = name;
    t.enumeration("pool_mode", u.pool_mode, kPoolModes);
    t.integer("max_user_connections", u.max_user_connections, 0);
    t.integer("max_user_client_connections", u.max_user_client_connections, 0);
    t.integer("pool_size", u.pool_size, 1);
    t.integer("reserve_pool_size", u.reserve_pool_size, 0);
    for (auto [key, out] : {std::pair{"query_timeout", &u.query_timeout},
                            std::pair{"idle_transaction_timeout", &u.idle_transaction_timeout},
                            std::pair{"client_idle_timeout", &u.client_idle_timeout},
                            std::pair{"transaction_timeout", &u.transaction_timeout}}) {
      if (auto d = t.raw_duration(key, t.take(key))) *out = *d;
    }
    t.finish();
    c.users.emplace(name, std::move(u));
  }
}

// ------------------------------------------------------------------ paths --

void resolve_paths(Config& c, const fs::path& base) {
  auto resolve = [&](std::string& p) {
    if (p.empty()) return;
    const fs::path path(p);
    if (path.is_absolute()) return;
    p = (base / path).lexically_normal().string();
  };
  resolve(c.auth.file);
  resolve(c.auth.hba_file);
  resolve(c.auth.ident_file);
  for (TlsConfig* tls : {&c.tls, &c.server_tls}) {
    resolve(tls->cert);
    resolve(tls->key);
    resolve(tls->ca);
  }
  resolve(c.log.file);
  for (auto& l : c.listen) {
    if (l.is_unix) resolve(l.path);
  }
}

// ----------------------------------------------------------- syntax errors --

// toml11 formats syntax errors as a multi-line, underlined excerpt:
//   [error] toml::parse_key_value_pair: missing key-value separator `=`
//    --> pgmux.toml
//      |
//    2 | b c
//      |  ^--- should be `=`
// Condense it to one line: "pgmux.toml:2: syntax error: missing key-value
// separator `=` (should be `=`): b c".
std::string condense_syntax_error(const std::string& what, const std::string& source, uint32_t fallback_line) {
  std::vector<std::string> lines;
  {
    std::istringstream is(what);
    for (std::string l; std::getline(is, l);) lines.push_back(l);
  }
  auto trim = [](std::string s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return std::string();
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
  };

  std::string header = lines.empty() ? std::string() : lines.front();
  if (header.rfind("[error]", 0) == 0) header = header.substr(7);
  header = trim(header);
  if (header.rfind("toml::", 0) == 0) {
    size_t i = 6;
    while (i < header.size() && (std::isalnum(static_cast<unsigned char>(header[i])) || header[i] == '_')) ++i;
    if (i < header.size() && header[i] == ':') ++i;
    header = trim(header.substr(i));
  }
  while (!header.empty() && header.back() == '.') header.pop_back();

  struct Block {
    uint32_t line;
    std::string code, comment;
  };
  std::vector<Block> blocks;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    const auto bar = l.find(" | ");
    if (bar == std::string::npos) continue;
    const std::string num = trim(l.substr(0, bar));
    if (num.empty() || !std::all_of(num.begin(), num.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      continue;
    }
    Block b{static_cast<uint32_t>(std::stoul(num)), trim(l.substr(bar + 3)), {}};
    if (i + 1 < lines.size()) {
      const std::string& u = lines[i + 1];
      const auto mark = u.find_first_of("^~", u.find('|') == std::string::npos ? 0 : u.find('|') + 1);
      if (mark != std::string::npos) {
        size_t k = mark;
        while (k < u.size() && (u[k] == '^' || u[k] == '~' || u[k] == '-')) ++k;
        b.comment = trim(u.substr(k));
        while (!b.comment.empty() && b.comment.back() == '.') b.comment.pop_back();
        ++i;
      }
    }
    blocks.push_back(std::move(b));
  }

  const uint32_t line = blocks.empty() ? fallback_line : blocks.back().line;
  std::string out = source;
  if (line != 0) out += ":" + std::to_string(line);
  out += ": syntax error: ";
  if (blocks.size() == 1) {
    const auto& b = blocks.front();
    if (header.empty()) {
      out += b.comment.empty() ? std::string("invalid TOML") : b.comment;
    } else {
      out += header;
      if (!b.comment.empty() && b.comment != "here") out += " (" + b.comment + ")";
    }
    if (!b.code.empty()) out += ": " + b.code;
  } else {
    out += header.empty() ? std::string("invalid TOML") : header;
    if (!blocks.empty()) {
      out += " (";
      for (size_t i = 0; i < blocks.size(); ++i) {
        if (i) out += "; ";
        out += "line " + std::to_string(blocks[i].line) + ": " + blocks[i].comment;
      }
      out += ")";
    }
  }
  return out;
}

// --------------------------------------------------------------- pre-scan --

// Checks toml11 cannot be trusted with, done before it sees the text:
//  - A TOML file must be UTF-8. toml11 3.7 reads out of bounds when it
//    reports invalid UTF-8 inside a 'literal string' (parse_literal_string
//    rewinds a location over a copy of the token with an iterator into the
//    whole file), so such text never reaches it.
//  - toml11 parses arrays and inline tables, and builds the tables of a
//    dotted key (a.b.c = 1, [a.b.c]), recursively: a few thousand levels
//    overflow the stack (and a SIGHUP reload would take the running pooler
//    down). No pgmux setting nests more than three deep.
// Errors look like condensed syntax errors: "<source>:<line>: syntax error: ...".
constexpr size_t kMaxNesting = 32;

// Length of the valid UTF-8 sequence at s[i] (the ranges of RFC 3629, which
// toml11's lexer uses too: no overlong forms, no surrogates, <= U+10FFFF),
// 0 if there is none.
size_t utf8_sequence(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0x100u; };
  auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) { return at(k) >= lo && at(k) <= hi; };
  const unsigned c = at(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

std::optional<std::string> prescan(std::string_view s, const std::string& source) {
  uint32_t line = 1;
  size_t line_start = 0;
  auto fail = [&](const std::string& why) { return source + ":" + std::to_string(line) + ": syntax error: " + why; };
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence(s, i);
    if (n == 0) {
      static constexpr char kHex[] = "0123456789abcdef";
      const auto c = static_cast<unsigned char>(s[i]);
      return fail(std::string("invalid UTF-8 (byte 0x") + kHex[c >> 4] + kHex[c & 0xf] + " in column " +
                  std::to_string(i - line_start + 1) + "); a TOML file must be UTF-8");
    }
    if (s[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
    i += n;
  }

  // Nesting depth of '[' and '{' outside strings and comments. Unterminated
  // strings end at the line's end here; toml11 reports them.
  line = 1;
  size_t depth = 0;
  size_t dots = 0;  // '.' in the current key: toml11 nests tables for them recursively
  auto skip_to = [&](size_t i, std::string_view close, bool escapes, bool multiline) {
    while (i < s.size()) {
      if (s[i] == '\n') {
        if (!multiline) return i;
        ++line;
        ++i;
        continue;
      }
      if (escapes && s[i] == '\\') {
        ++i;  // the escaped character is skipped below (a newline is counted)
        if (i < s.size() && s[i] == '\n') continue;
        ++i;
        continue;
      }
      if (s.compare(i, close.size(), close) == 0) {
        i += close.size();
        // A multi-line string may end with up to two more quotes: """a"""".
        for (int extra = 0; multiline && extra < 2 && i < s.size() && s[i] == close[0]; ++extra) ++i;
        return i;
      }
      ++i;
    }
    return i;
  };
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '#') {
      while (i < s.size() && s[i] != '\n') ++i;
    } else if (c == '"' || c == '\'') {
      const std::string triple(3, c);
      if (s.compare(i, 3, triple) == 0) {
        i = skip_to(i + 3, triple, c == '"', true);
      } else {
        i = skip_to(i + 1, std::string(1, c), c == '"', false);
      }
    } else {
      if (c == '[' || c == '{') {
        if (++depth > kMaxNesting) {
          return fail("arrays and inline tables nested more than " + std::to_string(kMaxNesting) + " deep");
        }
      } else if ((c == ']' || c == '}') && depth > 0) {
        --depth;
      } else if (c == '\n') {
        ++line;
      }
      if (c == '.') {
        if (++dots > kMaxNesting) {
          return fail("a dotted key with more than " + std::to_string(kMaxNesting) + " parts");
        }
      } else if (c == '=' || c == ',' || c == '\n' || c == '[' || c == ']' || c == '{' || c == '}') {
        dots = 0;
      }
      ++i;
    }
  }
  return std::nullopt;
}

// ------------------------------------------------------------------ driver --

LoadResult load(std::string_view text, const std::string& source, const std::string& base_dir) {
  if (auto error = prescan(text, source)) return {nullptr, std::move(*error)};
  Value root;
  try {
    std::istringstream is{std::string(text)};
    root = toml::parse<toml::discard_comments, std::unordered_map, std::vector>(is, source);
  } catch (const toml::syntax_error& e) {
    return {nullptr, condense_syntax_error(e.what(), source, e.location().line())};
  }

  const fs::path base = base_dir.empty() ? fs::current_path() : fs::absolute(fs::path(base_dir));

  Ctx ctx{source, {}, {}};
  auto cfg = std::make_shared<Config>();
  Config& c = *cfg;
  c.source = source;
  c.server_tls.mode = TlsMode::prefer;

  const auto& top = root.as_table();
  auto section = [&](const std::string& name) -> const Value* {
    const auto it = top.find(name);
    if (it == top.end()) return nullptr;
    if (!it->second.is_table()) {
      std::string msg = "[" + name + "]: expected a table, got " + type_name(it->second);
      if (it->second.is_array()) msg += " (write [" + name + "], not [[" + name + "]])";
      ctx.add(&it->second, msg);
      return nullptr;
    }
    return &it->second;
  };
  auto fixed = [&](const std::string& name, auto&& read) {
    Table t(ctx, section(name), "[" + name + "]");
    read(t);
    t.finish();
    ctx.section_keys.emplace_back(name, t.known());
  };

  fixed("pgmux", [&](Table& t) { read_pgmux(t, c); });
  fixed("auth", [&](Table& t) { read_auth(t, c); });
  fixed("tls", [&](Table& t) { read_tls(t, c.tls, /*client_side=*/true); });
  fixed("server_tls", [&](Table& t) { read_tls(t, c.server_tls, /*client_side=*/false); });
  fixed("admin", [&](Table& t) { read_admin(t, c); });
  fixed("log", [&](Table& t) { read_log(t, c); });
  if (const auto it = top.find("databases"); it != top.end() && !it->second.is_table()) {
    section("databases");  // reports the wrong type; "no [databases]" would only confuse
  } else {
    read_databases(ctx, section("databases"), c);
  }
  read_users(ctx, section("users"), c);
  if (ctx.problems.empty()) check_auth_lookups(ctx, section("auth"), section("databases"), c);

  // Keys at the top level that belong to no table.
  std::vector<std::string> tables;
  for (const auto& [name, keys] : ctx.section_keys) tables.push_back(name);
  tables.push_back("databases");
  tables.push_back("users");
  for (const auto& [key, v] : top) {
    if (std::find(tables.begin(), tables.end(), key) != tables.end()) continue;
    std::string msg;
    if (v.is_table()) {
      msg = "unknown table [" + key_repr(key) + "]";
      if (auto hint = closest(key, tables)) msg += " (did you mean [" + *hint + "]?)";
    } else {
      msg = "unknown key '" + key + "' at the top level";
      std::string home;
      for (const auto& [name, keys] : ctx.section_keys) {
        if (home.empty() && std::find(keys.begin(), keys.end(), key) != keys.end()) home = name;
      }
      if (!home.empty()) {
        msg += " (settings belong in a table: put it under [" + home + "])";
      } else {
        for (const auto& [old_name, where] : kPgBouncerNames) {
          if (key == old_name) msg += " (in pgmux this is " + std::string(where) + ")";
        }
      }
    }
    ctx.add(&v, msg);
  }

  if (!ctx.problems.empty()) return {nullptr, ctx.first_error()};
  resolve_paths(c, base);
  for (const auto& l : c.listen) {
    if (l.is_unix && l.path.size() > kMaxUnixPath) {
      return {nullptr, source + ": [pgmux] listen: unix socket path " + dq(l.path) + " is too long (" +
                           std::to_string(l.path.size()) + " bytes, at most " + std::to_string(kMaxUnixPath) +
                           ")"};
    }
  }
  if (c.listen.empty()) {
    ListenAddr a;
    a.host = "127.0.0.1";
    a.port = 6432;
    a.text = "127.0.0.1:6432";
    c.listen.push_back(std::move(a));
  }
  return {std::move(cfg), {}};
}

}  // namespace

LoadResult load_string(std::string_view toml_text, const std::string& source, const std::string& base_dir) {
  try {
    return load(toml_text, source, base_dir);
  } catch (const std::exception& e) {
    return {nullptr, source + ": " + e.what()};
  } catch (...) {
    return {nullptr, source + ": unexpected error while loading the configuration"};
  }
}

namespace {

// A SQL literal from the console (SET key = value) as a TOML value:
// 'quoted' text and bare words become strings, except integers and
// true/false/on/off, which keep their type so integer and boolean keys can
// be set with or without quotes.
std::string toml_value_from_sql(std::string_view v) {
  std::string text;
  if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') {
    for (size_t i = 1; i + 1 < v.size(); ++i) {
      text += v[i];
      if (v[i] == '\'' && i + 2 < v.size() && v[i + 1] == '\'') ++i;  // '' -> '
    }
  } else {
    text = std::string(v);
  }
  const bool integer = !text.empty() && text.size() <= 18 &&
                       std::all_of(text.begin(), text.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  if (integer) return text;
  std::string lower;
  for (char ch : text) lower += char(std::tolower(static_cast<unsigned char>(ch)));
  if (lower == "true" || lower == "on") return "true";
  if (lower == "false" || lower == "off") return "false";
  std::string out = "\"";
  for (unsigned char ch : text) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += char(ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += char(ch);
    }
  }
  return out + "\"";
}

}  // namespace

bool is_restart_only(std::string_view key) {
  static constexpr std::string_view kKeys[] = {"listen",           "workers",          "so_reuseport",
                                               "listen_backlog",   "tcp_defer_accept", "unix_socket_mode",
                                               "unix_socket_group"};
  return std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
}

static LoadResult apply_setting_as_given(const Config& base, std::string_view key, std::string_view value) {
  const std::string source = "SET " + std::string(key);
  try {
    if (is_restart_only(key))
      return {nullptr, source + ": cannot be changed while running (it takes a restart)"};
    const bool bare_key = !key.empty() && std::all_of(key.begin(), key.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
    });
    if (!bare_key) return {nullptr, source + ": not a setting name"};
    const std::string text = "[pgmux]\n" + std::string(key) + " = " + toml_value_from_sql(value) + "\n";
    if (auto error = prescan(text, source)) return {nullptr, std::move(*error)};
    Value root;
    try {
      std::istringstream is{text};
      root = toml::parse<toml::discard_comments, std::unordered_map, std::vector>(is, source);
    } catch (const toml::syntax_error& e) {
      return {nullptr, condense_syntax_error(e.what(), source, e.location().line())};
    }
    Ctx ctx{source, {}, {}};
    auto cfg = std::make_shared<Config>(base);
    const auto& top = root.as_table();
    const auto it = top.find("pgmux");
    Table t(ctx, it == top.end() ? nullptr : &it->second, "[pgmux]");
    read_pgmux(t, *cfg);
    t.finish();
    // What the file's database entries check against [pgmux] settings.
    for (const auto& [name, db] : cfg->databases) {
      if (!ctx.problems.empty()) break;
      const std::string entry = "[databases." + key_repr(name) + "]";
      if (db.read_routing != ReadRouting::off && db.pool_mode.value_or(cfg->pool_mode) == PoolMode::session)
        ctx.add(nullptr, "[pgmux] " + std::string(key) + ": " + entry +
                             " has read_routing, which needs pool_mode \"transaction\" or \"statement\"");
      const int min = db.min_pool_size.value_or(cfg->min_pool_size);
      const int size = db.pool_size.value_or(cfg->default_pool_size);
      if (min > size)
        ctx.add(nullptr, "[pgmux] " + std::string(key) + ": " + entry + " would get min_pool_size " +
                             std::to_string(min) + " above its pool size " + std::to_string(size));
    }
    if (!ctx.problems.empty()) {
      // "SET x:2: [pgmux] x: reason" -> "SET x: reason"
      std::string e = ctx.first_error();
      const std::string noise = "[pgmux] " + std::string(key) + ": ";
      if (auto at = e.find(noise); at != std::string::npos) e = source + ": " + e.substr(at + noise.size());
      else if (auto colon = e.find(": "); colon != std::string::npos) e = source + e.substr(colon);
      return {nullptr, e};
    }
    return {std::move(cfg), {}};
  } catch (const std::exception& e) {
    return {nullptr, source + ": " + e.what()};
  }
}

LoadResult apply_setting(const Config& base, std::string_view key, std::string_view value) {
  LoadResult r = apply_setting_as_given(base, key, value);
  // PgBouncer's console takes 0 and 1 for its boolean settings.
  if (!r.config && r.error.find("expected a boolean") != std::string::npos) {
    const std::string_view v = value.size() == 3 && value.front() == '\'' && value.back() == '\'' ? value.substr(1, 1)
                                                                                                : value;
    if (v == "0" || v == "1") return apply_setting_as_given(base, key, v == "1" ? "true" : "false");
  }
  return r;
}

LoadResult load_file(const std::string& path) {
  try {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return {nullptr, path + ": cannot open: " + std::strerror(errno)};
    std::string text;
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    const bool failed = std::ferror(f) != 0;
    const int err = errno;
    std::fclose(f);
    if (failed) return {nullptr, path + ": cannot read: " + std::strerror(err)};
    const fs::path dir = fs::absolute(fs::path(path)).parent_path();
    return load_string(text, path, dir.string());
  } catch (const std::exception& e) {
    return {nullptr, path + ": " + e.what()};
  } catch (...) {
    return {nullptr, path + ": unexpected error while loading the configuration"};
  }
}

}  // namespace pgmux::conf
