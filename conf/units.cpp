// Value formats shared by the loader and the rest of pgmux: enum names,
// durations, byte sizes, and the lookups on a loaded Config. No TOML here.
#include "conf/config.hpp"

#include <arpa/inet.h>

#include <limits>

namespace pgmux::conf {

bool is_ipv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool is_ipv6(const std::string& s) {
  // Allow a zone id ("fe80::1%eth0"); libuv understands it.
  const std::string addr = s.substr(0, s.find('%'));
  in6_addr a{};
  return inet_pton(AF_INET6, addr.c_str(), &a) == 1;
}

std::string_view to_string(PoolMode m) {
  switch (m) {
    case PoolMode::session: return "session";
    case PoolMode::transaction: return "transaction";
    case PoolMode::statement: return "statement";
  }
  return "?";
}

std::string_view to_string(AuthType t) {
  switch (t) {
    case AuthType::trust: return "trust";
    case AuthType::md5: return "md5";
    case AuthType::scram_sha_256: return "scram-sha-256";
    case AuthType::hba: return "hba";
  }
  return "?";
}

std::string_view to_string(TlsMode m) {
  switch (m) {
    case TlsMode::disable: return "disable";
    case TlsMode::allow: return "allow";
    case TlsMode::prefer: return "prefer";
    case TlsMode::require: return "require";
    case TlsMode::verify_ca: return "verify-ca";
    case TlsMode::verify_full: return "verify-full";
  }
  return "?";
}

std::string_view to_string(ReadRouting r) {
  switch (r) {
    case ReadRouting::off: return "off";
    case ReadRouting::explicit_: return "explicit";
    case ReadRouting::automatic: return "auto";
  }
  return "?";
}

std::string_view to_string(LoadBalance b) {
  switch (b) {
    case LoadBalance::least_outstanding: return "least-outstanding";
    case LoadBalance::round_robin: return "round-robin";
    case LoadBalance::random: return "random";
  }
  return "?";
}

std::string_view to_string(ReplicaFallback f) {
  switch (f) {
    case ReplicaFallback::primary: return "primary";
    case ReplicaFallback::error: return "error";
  }
  return "?";
}

std::string_view to_string(TargetSessionAttrs t) {
  switch (t) {
    case TargetSessionAttrs::any: return "any";
    case TargetSessionAttrs::read_write: return "read-write";
    case TargetSessionAttrs::read_only: return "read-only";
    case TargetSessionAttrs::prefer_standby: return "prefer-standby";
  }
  return "?";
}

namespace {

struct Unit {
  std::string_view name;
  uint64_t factor;
};

constexpr Unit kDurationUnits[] = {
    {"ms", 1},         {"s", 1000},           {"sec", 1000},
    {"min", 60'000},   {"h", 3'600'000},      {"d", 86'400'000},
};

constexpr Unit kByteUnits[] = {
    {"B", 1},
    {"kB", uint64_t{1} << 10},
    {"KB", uint64_t{1} << 10},
    {"MB", uint64_t{1} << 20},
    {"GB", uint64_t{1} << 30},
    {"TB", uint64_t{1} << 40},
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "<digits>[ ]*<unit>" -> number and unit; nullopt when there are no leading
// digits or the number does not fit in 64 bits.
struct NumberUnit {
  uint64_t number;
  std::string_view unit;
};

std::optional<NumberUnit> split_number_unit(std::string_view s) {
  size_t i = 0;
  uint64_t n = 0;
  while (i < s.size() && is_digit(s[i])) {
    const auto d = static_cast<uint64_t>(s[i] - '0');
    if (n > (std::numeric_limits<uint64_t>::max() - d) / 10) return std::nullopt;
    n = n * 10 + d;
    ++i;
  }
  if (i == 0) return std::nullopt;
  while (i < s.size() && s[i] == ' ') ++i;
  return NumberUnit{n, s.substr(i)};
}

template <size_t N>
std::optional<uint64_t> scale(const NumberUnit& nu, const Unit (&units)[N], uint64_t max) {
  for (const auto& u : units) {
    if (nu.unit != u.name) continue;
    if (nu.number > max / u.factor) return std::nullopt;
    return nu.number * u.factor;
  }
  return std::nullopt;
}

template <size_t N>
std::string format_exact(uint64_t n, const Unit (&units)[N], std::string_view zero_unit) {
  // (Appended rather than "0" + ...: GCC 12 warns -Wrestrict wrongly on
  // operator+ with a literal at -O2, its bug 105651.)
  if (n == 0) return std::string("0").append(zero_unit);
  // Units are listed smallest first; aliases with the same factor come after
  // the preferred spelling, so scan from the end and skip equal factors.
  for (size_t i = N; i-- > 0;) {
    if (i > 0 && units[i - 1].factor == units[i].factor) continue;
    if (n % units[i].factor == 0) return std::to_string(n / units[i].factor) + std::string(units[i].name);
  }
  return std::to_string(n);
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view s) {
  const auto nu = split_number_unit(s);
  if (!nu) return std::nullopt;
  if (nu->unit.empty()) {
    // A bare number is only unambiguous when it is zero.
    if (nu->number == 0 && s.find(' ') == std::string_view::npos) return Duration{0};
    return std::nullopt;
  }
  const auto ms = scale(*nu, kDurationUnits,
                        static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max()));
  if (!ms) return std::nullopt;
  return Duration{static_cast<Duration::rep>(*ms)};
}

std::optional<uint64_t> parse_bytes(std::string_view s) {
  const auto nu = split_number_unit(s);
  if (!nu) return std::nullopt;
  if (nu->unit.empty()) {
    if (s.find(' ') != std::string_view::npos) return std::nullopt;
    return nu->number;
  }
  return scale(*nu, kByteUnits, std::numeric_limits<uint64_t>::max());
}

std::string format_duration(Duration d) {
  const auto ms = d.count();
  if (ms < 0) {
    // Not produced by the loader; formatted for completeness (not parseable).
    return std::string("-").append(format_exact(static_cast<uint64_t>(-(ms + 1)) + 1, kDurationUnits, "s"));
  }
  return format_exact(static_cast<uint64_t>(ms), kDurationUnits, "s");
}

std::string format_bytes(uint64_t n) { return format_exact(n, kByteUnits, "B"); }

const DatabaseConfig* Config::find_database(std::string_view name) const {
  if (auto it = databases.find(name); it != databases.end()) return &it->second;
  if (auto it = databases.find(std::string_view("*")); it != databases.end()) return &it->second;
  return nullptr;
}

const UserConfig* Config::find_user(std::string_view name) const {
  if (auto it = users.find(name); it != users.end()) return &it->second;
  return nullptr;
}

PoolMode Config::effective_pool_mode(const DatabaseConfig& db, std::string_view user) const {
  if (const auto* u = find_user(user); u && u->pool_mode) return *u->pool_mode;
  if (db.pool_mode) return *db.pool_mode;
  return pool_mode;
}

int Config::effective_pool_size(const DatabaseConfig& db) const {
  return db.pool_size ? *db.pool_size : default_pool_size;
}

int Config::effective_max_db_connections(const DatabaseConfig* db) const {
  return db ? db->max_db_connections.value_or(max_db_connections) : max_db_connections;
}

int Config::effective_max_db_client_connections(const DatabaseConfig* db) const {
  return db ? db->max_db_client_connections.value_or(max_db_client_connections) : max_db_client_connections;
}

int Config::effective_max_user_client_connections(std::string_view user) const {
  const UserConfig* uc = find_user(user);
  return (uc && uc->max_user_client_connections) ? *uc->max_user_client_connections : max_user_client_connections;
}

int Config::effective_max_user_connections(std::string_view user) const {
  const UserConfig* uc = find_user(user);
  return (uc && uc->max_user_connections) ? *uc->max_user_connections : max_user_connections;
}

AuthLookup Config::auth_lookup(const DatabaseConfig& db) const {
  AuthLookup l;
  l.enabled = auth.query_set || db.auth_query || db.auth_query_user;
  l.query = db.auth_query ? &*db.auth_query : &auth.query;
  l.user = db.auth_query_user ? &*db.auth_query_user : &auth.query_user;
  l.database = db.auth_query_database ? &*db.auth_query_database : &auth.query_database;
  return l;
}

bool Config::auth_lookup_runs_as(std::string_view user) const {
  for (const auto& [name, db] : databases) {
    const AuthLookup l = auth_lookup(db);
    if (l.enabled && *l.user == user) return true;
  }
  return false;
}

}  // namespace pgmux::conf
