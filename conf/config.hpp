// TOML configuration -> validated, immutable Config.
//
// Every error names the key, the line (when toml11 knows it) and the reason,
// e.g. "pgmux.toml:12: [pgmux] default_pool_size: must be >= 1, got 0".
// Unknown keys are errors (a typo must not silently fall back to a default):
// "pgmux.toml:3: unknown key 'defualt_pool_size' in [pgmux] (did you mean
// 'default_pool_size'?)". TOML syntax errors are condensed to one line:
// "pgmux.toml:2: syntax error: <toml11's reason>: <the offending line>".
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::conf {

// Worker threads at most: the limits shared by workers keep a bit and a
// slot per worker (pool::SharedLimit).
inline constexpr int kMaxWorkers = 64;

using Duration = std::chrono::milliseconds;

enum class PoolMode { session, transaction, statement };
enum class AuthType { trust, md5, scram_sha_256, hba };
enum class TlsMode { disable, allow, prefer, require, verify_ca, verify_full };
enum class ReadRouting { off, explicit_, automatic };
enum class LoadBalance { least_outstanding, round_robin, random };
enum class ReplicaFallback { primary, error };
enum class TargetSessionAttrs { any, read_write, read_only, prefer_standby };

std::string_view to_string(PoolMode m);
std::string_view to_string(AuthType t);
std::string_view to_string(TlsMode m);
std::string_view to_string(ReadRouting r);
std::string_view to_string(LoadBalance b);
std::string_view to_string(ReplicaFallback f);
std::string_view to_string(TargetSessionAttrs t);
// require, verify-ca, verify-full: no plaintext.
inline bool tls_required(TlsMode m) {
  return m == TlsMode::require || m == TlsMode::verify_ca || m == TlsMode::verify_full;
}
// verify-ca, verify-full: the peer's certificate is checked against a CA.
inline bool tls_verifies(TlsMode m) { return m == TlsMode::verify_ca || m == TlsMode::verify_full; }

// "15s", "10min", "1h", "250ms", "2d", "0s"; also "0" (zero). No negatives.
// Units (case-sensitive, as in PostgreSQL): ms, s, sec, min, h, d; spaces
// between number and unit are allowed. "m" is rejected (minutes or months?).
std::optional<Duration> parse_duration(std::string_view s);
// "16MB", "512kB", "1GB", "100" (bytes). Units B, kB/KB, MB, GB, TB, 1024-based.
std::optional<uint64_t> parse_bytes(std::string_view s);
// Largest unit that is exact: 250ms -> "250ms", 600000ms -> "10min", 0 -> "0s".
// The result is accepted by parse_duration.
std::string format_duration(Duration d);
// Largest unit that is exact: "64MB", "1536kB", "100B". Accepted by parse_bytes.
std::string format_bytes(uint64_t n);
// IP address literals; IPv6 may carry a zone id ("fe80::1%eth0").
bool is_ipv4(const std::string& s);
bool is_ipv6(const std::string& s);

struct ListenAddr {
  bool is_unix = false;
  std::string host;  // TCP: IPv4/IPv6 literal or "*" / "0.0.0.0" / "::"
  uint16_t port = 0;
  std::string path;  // unix: socket path
  std::string text;  // as written, for logs
};

struct HostPort {
  std::string host;
  uint16_t port = 5432;
};

struct DatabaseConfig {
  std::string name;    // the key clients use ("*" = fallback for any name)
  std::string host = "127.0.0.1";  // may be a unix socket directory (starts with '/')
  uint16_t port = 5432;
  std::string dbname;  // name on the server; empty = the client's database name
  std::optional<std::string> user;      // forced server user
  std::optional<std::string> password;  // password for the server login
  std::optional<PoolMode> pool_mode;
  std::optional<int> pool_size;
  std::optional<int> min_pool_size;
  std::optional<int> reserve_pool_size;
  std::optional<int> max_db_connections;
  std::optional<int> max_db_client_connections;
  std::optional<bool> server_pipelining;
  // Over the [pgmux] values for this entry's pools (as PgBouncer 1.24+).
  std::optional<Duration> server_lifetime;
  std::optional<Duration> query_wait_timeout;
  std::string connect_query;  // run once on each new server connection
  // Startup parameters of this entry's server connections (PgBouncer's
  // per-database client_encoding, datestyle, timezone, and any other GUC):
  // the session defaults its clients get unless they set their own.
  std::vector<std::pair<std::string, std::string>> parameters;
  std::vector<HostPort> replicas;
  ReadRouting read_routing = ReadRouting::off;
  LoadBalance load_balance = LoadBalance::least_outstanding;
  std::optional<Duration> max_replica_lag;   // time bound
  std::optional<uint64_t> max_replica_lag_bytes;
  ReplicaFallback replica_fallback = ReplicaFallback::primary;
  Duration health_check_interval = std::chrono::seconds(1);
  Duration health_check_timeout = std::chrono::seconds(5);
  // The health checker's login (default: `user` / `password`). Its password
  // may also come from the userlist (plaintext or md5) or from SCRAM keys a
  // client login of that user revealed.
  std::optional<std::string> health_check_user;
  std::optional<std::string> health_check_password;
  bool read_your_writes = true;
  std::optional<TargetSessionAttrs> target_session_attrs;
  // auth_query for logins to this entry (PgBouncer's per-database
  // auth_user, auth_query, auth_dbname), over [auth] query, query_user and
  // query_database. Setting either of the first two turns the lookup on for
  // this entry.
  std::optional<std::string> auth_query;
  std::optional<std::string> auth_query_user;
  std::optional<std::string> auth_query_database;

  // Backends are checked and chosen per transaction (replicas or
  // target_session_attrs configured).
  bool routed() const { return !replicas.empty() || target_session_attrs.has_value(); }
  // The login the health checker uses.
  const std::string* check_user() const {
    return health_check_user ? &*health_check_user : user ? &*user : nullptr;
  }
};

struct UserConfig {
  std::string name;
  std::optional<PoolMode> pool_mode;
  std::optional<int> max_user_connections;
  std::optional<int> max_user_client_connections;
  // Pools whose server user this is (over the database's and the global
  // values), as PgBouncer 1.24+.
  std::optional<int> pool_size;
  std::optional<int> reserve_pool_size;
  // Clients that logged in as this user (over the global values).
  std::optional<Duration> query_timeout;
  std::optional<Duration> idle_transaction_timeout;
  std::optional<Duration> client_idle_timeout;
  std::optional<Duration> transaction_timeout;
  bool has_timeouts() const {
    return query_timeout || idle_transaction_timeout || client_idle_timeout || transaction_timeout;
  }
};

struct AuthConfig {
  AuthType type = AuthType::scram_sha_256;
  std::string file;        // resolved to an absolute path when relative
  // The default returns no secret for an expired password (VALID UNTIL),
  // so such a login fails (CVE-2025-2291 class).
  std::string query =
      "SELECT usename, CASE WHEN valuntil IS NULL OR valuntil > pg_catalog.now() THEN passwd END "
      "FROM pg_catalog.pg_shadow WHERE usename = $1";
  bool query_set = false;  // auth_query enabled when the key is present
  std::string query_user;
  // The [databases] entry whose server runs the lookup (PgBouncer's
  // auth_dbname); empty = the database the client asked for.
  std::string query_database;
  std::string hba_file;
  std::string ident_file;  // user name maps for map= in hba_file (PgBouncer's auth_ident_file)
};

struct TlsConfig {
  TlsMode mode = TlsMode::disable;
  std::string cert, key, ca;
  std::string protocols = "tlsv1.2,tlsv1.3";
  std::string ciphers;  // empty = OpenSSL default
  std::string tls13_ciphers;  // TLS 1.3 cipher suites; empty = OpenSSL default
  std::string groups;         // key exchange groups (curves); empty = OpenSSL default
};

struct AdminConfig {
  std::vector<std::string> users;
  std::vector<std::string> stats_users;
  std::string metrics_listen;  // empty = off
};

struct LogConfig {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
  std::string file;            // empty = stderr
  bool connections = true;
  bool disconnections = true;
  // A line per database with its rates and average times over the period
  // (PgBouncer's log_stats); 0 = none.
  Duration stats_period = std::chrono::seconds(60);
};

// The auth_query lookup for logins to one database entry, after its
// overrides (Config::auth_lookup). The pointers point into the Config.
struct AuthLookup {
  bool enabled = false;
  const std::string* query = nullptr;
  const std::string* user = nullptr;      // the role that runs it
  const std::string* database = nullptr;  // entry name; empty = the client's database
};

struct Config {
  std::string source;  // file path (or origin name) it was loaded from

  std::vector<ListenAddr> listen;  // default: 127.0.0.1:6432
  int workers = 1;                 // 0 = one per core, at most kMaxWorkers (resolved at load)
  // SO_REUSEPORT on TCP listeners: a new pgmux can bind the same address
  // while the old one drains (zero-downtime restart).
  bool so_reuseport = false;
  // listen(2)'s backlog on every listener (the kernel caps it at
  // net.core.somaxconn).
  int listen_backlog = 1024;
  // Permissions and group of unix socket listeners (PgBouncer's
  // unix_socket_mode, unix_socket_group); empty group = the process's.
  uint32_t unix_socket_mode = 0777;
  std::string unix_socket_group;
  PoolMode pool_mode = PoolMode::transaction;
  int max_client_conn = 10000;
  int default_pool_size = 20;
  int min_pool_size = 0;
  int reserve_pool_size = 0;
  Duration reserve_pool_timeout = std::chrono::seconds(5);
  int max_db_connections = 0;
  int max_user_connections = 0;
  // Logged-in clients per database (the name clients ask for) and per
  // login user, over every worker; 0 = unlimited.
  int max_db_client_connections = 0;
  int max_user_client_connections = 0;
  int max_prepared_statements = 200;
  std::string server_reset_query = "DISCARD ALL";
  bool server_reset_query_always = false;
  // Session pooling: a server due to be replaced (RECONNECT, a reload that
  // changed its entry's connection settings) is closed, with its client, as
  // soon as it is idle between transactions rather than at the session's
  // end (PgBouncer's server_fast_close).
  bool server_fast_close = false;
  // Idle servers are reused oldest first (PgBouncer's server_round_robin)
  // instead of most recently used first.
  bool server_round_robin = false;
  // A client's application_name gets " - <address>:<port>" appended at
  // login (PgBouncer's application_name_add_host).
  bool application_name_add_host = false;
  // Send a waiting client's request behind another client's on a busy server
  // (transaction pooling; see README, Pooling modes).
  bool server_pipelining = false;
  std::string server_check_query = "SELECT 1";  // empty string = disabled
  Duration server_check_delay = std::chrono::seconds(30);
  Duration server_connect_timeout = std::chrono::seconds(15);
  // A cancel request PostgreSQL has not taken (connected, sent, connection
  // closed by PostgreSQL) within this is given up, and the server it was for
  // is closed instead of reused. 0 = wait as long as it takes.
  Duration cancel_wait_timeout = std::chrono::seconds(10);
  Duration server_login_retry = std::chrono::seconds(15);
  Duration server_idle_timeout = std::chrono::minutes(10);
  Duration server_lifetime = std::chrono::hours(1);
  Duration query_timeout{0};
  Duration query_wait_timeout = std::chrono::minutes(2);
  // A client that has waited this long for a server gets a NOTICE saying it
  // is queued (once per wait; PgBouncer 1.25's default). 0 = never.
  Duration query_wait_notify = std::chrono::seconds(5);
  Duration client_idle_timeout{0};
  Duration client_login_timeout = std::chrono::seconds(60);
  Duration idle_transaction_timeout{0};
  // A client's transaction (or statement outside one) running longer is
  // ended: the client is closed, its statement cancelled, the server rolled
  // back (PgBouncer's transaction_timeout). 0 = off.
  Duration transaction_timeout{0};
  Duration shutdown_timeout = std::chrono::seconds(30);
  // Pools of database names the "*" entry serves are dropped (their idle
  // servers closed) once no client has used them for this long. 0 = never.
  Duration autodb_idle_timeout = std::chrono::hours(1);
  uint32_t max_packet_size = 64u * 1024u * 1024u;  // cap on one message's length
  int max_startup_params = 64;
  int max_concurrent_logins = 1000;
  Duration auth_failure_delay{0};
  // PBKDF2 iterations of the SCRAM verifier pgmux makes for a user whose
  // userlist entry is a plain password (and of the mock exchange for an
  // unknown user).
  int scram_iterations = 4096;
  // TCP keepalive on clients' and servers' TCP connections (applied when a
  // connection is accepted or opened). 0 = the system's value.
  bool tcp_keepalive = true;
  Duration tcp_keepidle{0};      // whole seconds, up to 32767 s (TCP_KEEPIDLE)
  Duration tcp_keepintvl{0};     // whole seconds, up to 32767 s (TCP_KEEPINTVL)
  int tcp_keepcnt = 0;           // probes, up to 127 (TCP_KEEPCNT)
  Duration tcp_user_timeout{0};  // unacknowledged data this long closes the connection (TCP_USER_TIMEOUT)
  // SO_SNDBUF and SO_RCVBUF of clients' and servers' TCP connections; 0 =
  // the system's (autotuned).
  uint32_t tcp_socket_buffer = 0;
  // TCP_DEFER_ACCEPT on the TCP listeners (whole seconds; 0 = off): a
  // connection is handed over when its first bytes arrive. On by default,
  // as in PgBouncer (45 s).
  Duration tcp_defer_accept{std::chrono::seconds(45)};

  AuthConfig auth;
  TlsConfig tls;                 // client side; default disable
  TlsConfig server_tls;          // towards PostgreSQL; default prefer
  AdminConfig admin;
  LogConfig log;

  std::map<std::string, DatabaseConfig, std::less<>> databases;
  std::map<std::string, UserConfig, std::less<>> users;

  // The database entry for a client's database name: exact key, else "*",
  // else nullptr.
  const DatabaseConfig* find_database(std::string_view name) const;
  const UserConfig* find_user(std::string_view name) const;
  // Effective values after per-database and per-user overrides.
  PoolMode effective_pool_mode(const DatabaseConfig& db, std::string_view user) const;
  int effective_pool_size(const DatabaseConfig& db) const;
  // max_db_connections for clients of `db` (nullptr: no entry), and
  // max_user_connections for server user `user`; 0 = unlimited.
  int effective_max_db_connections(const DatabaseConfig* db) const;
  int effective_max_user_connections(std::string_view user) const;
  // max_db_client_connections for `db` (nullptr: no entry) and
  // max_user_client_connections for login user `user`; 0 = unlimited.
  int effective_max_db_client_connections(const DatabaseConfig* db) const;
  int effective_max_user_client_connections(std::string_view user) const;
  AuthLookup auth_lookup(const DatabaseConfig& db) const;
  // Some entry's lookup runs as `user`.
  bool auth_lookup_runs_as(std::string_view user) const;
};

// [pgmux] settings bound when pgmux starts (sockets, threads): a reload
// keeps the running value and says so, SET refuses them.
bool is_restart_only(std::string_view key);

struct LoadResult {
  std::shared_ptr<const Config> config;  // null on error
  // One line: "<source>:<line>: [table] key: <reason>"; ":<line>" is absent
  // when the problem has no place in the file (e.g. "no [databases] defined").
  // With several problems, the first one in file order is reported.
  std::string error;
};

// Never throws. A missing file: "<path>: cannot open: <strerror>". Relative
// paths inside the file are resolved against the file's directory.
LoadResult load_file(const std::string& path);
// `source` names the origin in error messages; relative paths inside the
// config are resolved against `base_dir` (empty = current directory).
LoadResult load_string(std::string_view toml_text, const std::string& source,
                       const std::string& base_dir = {});

// The console's SET key = value: `base` with one [pgmux] setting changed,
// validated like the file (error: "SET key: <reason>"). `value` is the SQL
// literal as typed ('5s', 50, on). listen and workers are refused: they
// take a restart.
LoadResult apply_setting(const Config& base, std::string_view key, std::string_view value);

}  // namespace pgmux::conf
