// Rejected configurations: every error names the source, the line of the
// offending value, the table and key, and the reason.
#include <catch2/catch.hpp>

#include <string>

#include "conf/config.hpp"
#include "conf_test_util.hpp"

using namespace pgmux::conf;
using namespace pgmux::conf::test;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

TEST_CASE("no databases", "[conf][errors]") {
  CHECK(err("") == "t.toml: no [databases] defined (add one, e.g. [databases.app] with host and port)");
  CHECK(err("# only a comment\n\n") ==
        "t.toml: no [databases] defined (add one, e.g. [databases.app] with host and port)");
  CHECK(err("[auth]\ntype = \"trust\"\n") ==
        "t.toml: no [databases] defined (add one, e.g. [databases.app] with host and port)");
  CHECK(err("[auth]\ntype = \"trust\"\n\n[databases]\n") ==
        "t.toml:4: [databases]: no [databases] defined: the table is empty (add e.g. [databases.app])");
  CHECK(err("databases = 5\n[auth]\ntype = \"trust\"\n") == "t.toml:1: [databases]: expected a table, got an integer");
  CHECK(err("[auth]\ntype = \"trust\"\n[[databases]]\nhost = \"x\"\n") ==
        "t.toml:3: [databases]: expected a table, got an array (write [databases], not [[databases]])");
}

TEST_CASE("errors are reported in file order", "[conf][errors]") {
  // Two problems: the one on the earlier line wins, whatever the table order.
  CHECK(err("[log]\nlevel = \"loud\"\n[pgmux]\nworkers = -1\n" + kMin) ==
        "t.toml:2: [log] level: must be one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"critical\", "
        "\"off\"; got \"loud\"");
  CHECK(err("[pgmux]\nworkers = -1\n[log]\nlevel = \"loud\"\n" + kMin) ==
        "t.toml:2: [pgmux] workers: must be between 0 and 64, got -1");
  // A problem without a line (missing [databases]) comes after the others.
  CHECK(err("[pgmux]\n\n\nworkers = -1\n") == "t.toml:4: [pgmux] workers: must be between 0 and 64, got -1");
}

TEST_CASE("unknown keys and tables", "[conf][errors][unknown]") {
  CHECK(err("[pgmux]\nworkers = 2\ndefualt_pool_size = 5\n" + kMin) ==
        "t.toml:3: unknown key 'defualt_pool_size' in [pgmux] (did you mean 'default_pool_size'?)");
  CHECK(err("[pgmux]\nfrobnicate = 1\n" + kMin) == "t.toml:2: unknown key 'frobnicate' in [pgmux]");
  CHECK(err("[pgmux]\nauth_type = \"md5\"\n" + kMin) ==
        "t.toml:2: unknown key 'auth_type' in [pgmux] (in pgmux this is 'type' in [auth])");
  CHECK(err("[pgmux]\nlisten_port = 6432\n" + kMin) ==
        "t.toml:2: unknown key 'listen_port' in [pgmux] (in pgmux this is 'listen' in [pgmux], e.g. listen = "
        "[\"127.0.0.1:6432\"])");
  CHECK(err("[auth]\ntype = \"trust\"\nfiel = \"x\"\n[databases.app]\n") ==
        "t.toml:3: unknown key 'fiel' in [auth] (did you mean 'file'?)");
  CHECK(err("[tls]\nmdoe = \"disable\"\n" + kMin) == "t.toml:2: unknown key 'mdoe' in [tls] (did you mean 'mode'?)");
  CHECK(err("[server_tls]\ncert_file = \"x\"\n" + kMin) == "t.toml:2: unknown key 'cert_file' in [server_tls]");
  CHECK(err("[admin]\nuser = [\"a\"]\n" + kMin) == "t.toml:2: unknown key 'user' in [admin] (did you mean 'users'?)");
  CHECK(err("[log]\nlevle = \"info\"\n" + kMin) == "t.toml:2: unknown key 'levle' in [log] (did you mean 'level'?)");
  CHECK(err(kMin + "hots = \"x\"\n") == "t.toml:5: unknown key 'hots' in [databases.app] (did you mean 'host'?)");
  CHECK(err(kMin + "[databases.\"*\"]\nprot = 1\n") ==
        "t.toml:6: unknown key 'prot' in [databases.\"*\"] (did you mean 'port'?)");
  CHECK(err(kMin + "[users.alice]\npool_mod = \"session\"\n") ==
        "t.toml:6: unknown key 'pool_mod' in [users.alice] (did you mean 'pool_mode'?)");
  CHECK(err(kMin + "[users.alice]\nmin_pool_size = 3\n") == "t.toml:6: unknown key 'min_pool_size' in [users.alice]");
  CHECK(err(kMin + "[users.alice]\npool_size = 0\n") == "t.toml:6: [users.alice] pool_size: must be >= 1, got 0");
  // A nested table is an unknown key too; the line is the table header's.
  CHECK(err(kMin + "[databases.app.extra]\nx = 1\n") == "t.toml:5: unknown key 'extra' in [databases.app]");
  // Inline table: the line of the key inside it.
  CHECK(err("[auth]\ntype = \"trust\"\n[databases]\napp = { host = \"h\", prt = 1 }\n") ==
        "t.toml:4: unknown key 'prt' in [databases.app] (did you mean 'port'?)");
}

TEST_CASE("unknown top-level tables and keys", "[conf][errors][unknown]") {
  CHECK(err(kMin + "[pgbouncer]\nlisten_port = 6432\n") == "t.toml:5: unknown table [pgbouncer]");
  CHECK(err(kMin + "[databse]\n") == "t.toml:5: unknown table [databse] (did you mean [databases]?)");
  CHECK(err(kMin + "[user.alice]\n") == "t.toml:5: unknown table [user] (did you mean [users]?)");
  CHECK(err("workers = 4\n" + kMin) ==
        "t.toml:1: unknown key 'workers' at the top level (settings belong in a table: put it under [pgmux])");
  CHECK(err("mode = \"require\"\n" + kMin) ==
        "t.toml:1: unknown key 'mode' at the top level (settings belong in a table: put it under [tls])");
  CHECK(err("logfile = \"x\"\n" + kMin) ==
        "t.toml:1: unknown key 'logfile' at the top level (in pgmux this is 'file' in [log])");
  CHECK(err("x = 1\n" + kMin) == "t.toml:1: unknown key 'x' at the top level");
}

TEST_CASE("wrong value types", "[conf][errors][types]") {
  CHECK(err("[pgmux]\ndefault_pool_size = \"20\"\n" + kMin) ==
        "t.toml:2: [pgmux] default_pool_size: expected an integer, got a string (write 20 without quotes)");
  CHECK(err("[pgmux]\ndefault_pool_size = \"many\"\n" + kMin) ==
        "t.toml:2: [pgmux] default_pool_size: expected an integer, got a string");
  CHECK(err("[pgmux]\nmax_client_conn = 1.5\n" + kMin) ==
        "t.toml:2: [pgmux] max_client_conn: expected an integer, got a float");
  CHECK(err("[pgmux]\nworkers = true\n" + kMin) == "t.toml:2: [pgmux] workers: expected an integer, got a boolean");
  CHECK(err("[pgmux]\nserver_reset_query_always = \"yes\"\n" + kMin) ==
        "t.toml:2: [pgmux] server_reset_query_always: expected a boolean (true or false), got a string");
  CHECK(err(kMin + "server_pipelining = 1\n") ==
        "t.toml:5: [databases.app] server_pipelining: expected a boolean (true or false), got an integer");
  CHECK(err("[pgmux]\nserver_reset_query = 1\n" + kMin) ==
        "t.toml:2: [pgmux] server_reset_query: expected a string, got an integer");
  CHECK(err("[pgmux]\npool_mode = [\"session\"]\n" + kMin) ==
        "t.toml:2: [pgmux] pool_mode: expected a string, got an array");
  CHECK(err("[pgmux]\nlisten = 6432\n" + kMin) ==
        "t.toml:2: [pgmux] listen: expected an array of strings, got an integer");
  CHECK(err("[pgmux]\nlisten = [\"127.0.0.1:6432\",\n  6433]\n" + kMin) ==
        "t.toml:3: [pgmux] listen: expected an array of strings, found an integer");
  CHECK(err("[pgmux]\nquery_timeout = 1979-05-27\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: expected a duration string such as \"15s\", got a date/time");
  CHECK(err("[pgmux]\nquery_timeout = 1.5\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: expected a duration string such as \"15s\", got a float");
  CHECK(err("[pgmux]\nmax_packet_size = true\n" + kMin) ==
        "t.toml:2: [pgmux] max_packet_size: expected a size such as \"64MB\" or a number of bytes, got a boolean");
  CHECK(err("[auth]\ntype = 5\n[databases.app]\n") == "t.toml:2: [auth] type: expected a string, got an integer");
  CHECK(err("[log]\nconnections = 1\n" + kMin) ==
        "t.toml:2: [log] connections: expected a boolean (true or false), got an integer");
  CHECK(err("[admin]\nusers = \"admin\"\nstats_users = [1]\n" + kMin) ==
        "t.toml:3: [admin] stats_users: expected an array of strings, found an integer");
  CHECK(err(kMin + "port = \"5432\"\n") ==
        "t.toml:5: [databases.app] port: expected an integer, got a string (write 5432 without quotes)");
  CHECK(err(kMin + "replicas = [[\"a\"]]\n") ==
        "t.toml:5: [databases.app] replicas: expected an array of strings, found an array");
  CHECK(err(kMin + "read_your_writes = \"true\"\n") ==
        "t.toml:5: [databases.app] read_your_writes: expected a boolean (true or false), got a string");
  CHECK(err(kMin + "max_replica_lag = true\n") ==
        "t.toml:5: [databases.app] max_replica_lag: expected a duration such as \"10s\" or a byte size such as "
        "\"16MB\", got a boolean");
  CHECK(err("pgmux = 1\n" + kMin) == "t.toml:1: [pgmux]: expected a table, got an integer");
  CHECK(err("[[pgmux]]\n" + kMin) == "t.toml:1: [pgmux]: expected a table, got an array (write [pgmux], not [[pgmux]])");
  CHECK(err("[auth]\ntype = \"trust\"\n[databases]\napp = \"host=127.0.0.1 port=5432\"\n") ==
        "t.toml:4: [databases] app: expected a table ([databases.app]), got a string; PgBouncer connection strings "
        "are written as keys: host = ..., port = ...");
  CHECK(err(kMin + "[users]\nalice = \"session\"\n") ==
        "t.toml:6: [users] alice: expected a table ([users.alice]), got a string");
  CHECK(err(kMin + "[users]\n\"\" = 1\n") == "t.toml:6: [users] \"\": expected a table ([users.\"\"]), got an integer");
}

TEST_CASE("enum values list the allowed spellings", "[conf][errors][enum]") {
  CHECK(err("[pgmux]\npool_mode = \"sesion\"\n" + kMin) ==
        "t.toml:2: [pgmux] pool_mode: must be one of \"session\", \"transaction\", \"statement\"; got \"sesion\"");
  CHECK(err("[pgmux]\npool_mode = \"Session\"\n" + kMin) ==
        "t.toml:2: [pgmux] pool_mode: must be one of \"session\", \"transaction\", \"statement\"; got \"Session\"");
  CHECK(err("[auth]\ntype = \"plain\"\n[databases.app]\n") ==
        "t.toml:2: [auth] type: must be one of \"trust\", \"md5\", \"scram-sha-256\", \"hba\"; got \"plain\"");
  CHECK(err("[tls]\nmode = \"on\"\n" + kMin) ==
        "t.toml:2: [tls] mode: must be one of \"disable\", \"allow\", \"prefer\", \"require\", \"verify-ca\", "
        "\"verify-full\"; got \"on\"");
  CHECK(err("[server_tls]\nmode = \"verify_full\"\n" + kMin) ==
        "t.toml:2: [server_tls] mode: must be one of \"disable\", \"allow\", \"prefer\", \"require\", \"verify-ca\", "
        "\"verify-full\"; got \"verify_full\"");
  CHECK(err(kMin + "read_routing = \"automatic\"\n") ==
        "t.toml:5: [databases.app] read_routing: must be one of \"off\", \"explicit\", \"auto\"; got \"automatic\"");
  CHECK(err(kMin + "load_balance = \"roundrobin\"\n") ==
        "t.toml:5: [databases.app] load_balance: must be one of \"least-outstanding\", \"round-robin\", \"random\"; "
        "got \"roundrobin\"");
  CHECK(err(kMin + "replica_fallback = \"none\"\n") ==
        "t.toml:5: [databases.app] replica_fallback: must be one of \"primary\", \"error\"; got \"none\"");
  CHECK(err(kMin + "target_session_attrs = \"primary\"\n") ==
        "t.toml:5: [databases.app] target_session_attrs: must be one of \"any\", \"read-write\", \"read-only\", "
        "\"prefer-standby\"; got \"primary\"");
  CHECK(err(kMin + "pool_mode = \"tx\"\n") ==
        "t.toml:5: [databases.app] pool_mode: must be one of \"session\", \"transaction\", \"statement\"; got \"tx\"");
  CHECK(err(kMin + "[users.bob]\npool_mode = \"\"\n") ==
        "t.toml:6: [users.bob] pool_mode: must be one of \"session\", \"transaction\", \"statement\"; got \"\"");
  CHECK(err("[log]\nlevel = \"verbose\"\n" + kMin) ==
        "t.toml:2: [log] level: must be one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"critical\", "
        "\"off\"; got \"verbose\"");
  CHECK(err("[log]\nlevel = \"INFO\"\n" + kMin) ==
        "t.toml:2: [log] level: must be one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"critical\", "
        "\"off\"; got \"INFO\"");
  CHECK(ok("[log]\nlevel = \"warning\"\n" + kMin)->log.level == "warn");  // spdlog's spelling, normalized
}

TEST_CASE("integer ranges", "[conf][errors][range]") {
  CHECK(err("[pgmux]\ndefault_pool_size = 0\n" + kMin) == "t.toml:2: [pgmux] default_pool_size: must be >= 1, got 0");
  CHECK(err("[pgmux]\nmax_client_conn = 0\n" + kMin) == "t.toml:2: [pgmux] max_client_conn: must be >= 1, got 0");
  CHECK(err("[pgmux]\nmax_client_conn = 2147483648\n" + kMin) ==
        "t.toml:2: [pgmux] max_client_conn: must be >= 1, got 2147483648");  // does not fit in an int
  CHECK(err("[pgmux]\nmax_client_conn = 99999999999999999999999\n" + kMin) ==
        "t.toml:2: [pgmux] max_client_conn: must be >= 1, got 99999999999999999999999");
  CHECK(err("[pgmux]\nworkers = -1\n" + kMin) == "t.toml:2: [pgmux] workers: must be between 0 and 64, got -1");
  CHECK(err("[pgmux]\nworkers = 65\n" + kMin) == "t.toml:2: [pgmux] workers: must be between 0 and 64, got 65");
  CHECK(err("[pgmux]\nlisten_backlog = 0\n" + kMin) ==
        "t.toml:2: [pgmux] listen_backlog: must be between 1 and 65535, got 0");
  CHECK(err("[pgmux]\nlisten_backlog = 65536\n" + kMin) ==
        "t.toml:2: [pgmux] listen_backlog: must be between 1 and 65535, got 65536");
  for (const char* key : {"min_pool_size", "reserve_pool_size", "max_db_connections", "max_user_connections",
                          "max_prepared_statements"}) {
    CHECK(err(std::string("[pgmux]\n") + key + " = -1\n" + kMin) ==
          std::string("t.toml:2: [pgmux] ") + key + ": must be >= 0, got -1");
  }
  CHECK(err("[pgmux]\nmax_startup_params = 0\n" + kMin) == "t.toml:2: [pgmux] max_startup_params: must be >= 1, got 0");
  CHECK(err("[pgmux]\nmax_concurrent_logins = 0\n" + kMin) ==
        "t.toml:2: [pgmux] max_concurrent_logins: must be >= 1, got 0");
  CHECK(err(kMin + "port = 0\n") == "t.toml:5: [databases.app] port: must be between 1 and 65535, got 0");
  CHECK(err(kMin + "port = 65536\n") == "t.toml:5: [databases.app] port: must be between 1 and 65535, got 65536");
  CHECK(err(kMin + "pool_size = 0\n") == "t.toml:5: [databases.app] pool_size: must be >= 1, got 0");
  CHECK(err(kMin + "min_pool_size = -1\n") == "t.toml:5: [databases.app] min_pool_size: must be >= 0, got -1");
  CHECK(err(kMin + "reserve_pool_size = -2\n") == "t.toml:5: [databases.app] reserve_pool_size: must be >= 0, got -2");
  CHECK(err(kMin + "max_db_connections = -3\n") ==
        "t.toml:5: [databases.app] max_db_connections: must be >= 0, got -3");
  CHECK(err(kMin + "[users.a]\nmax_user_connections = -1\n") ==
        "t.toml:6: [users.a] max_user_connections: must be >= 0, got -1");
}

TEST_CASE("pool size consistency", "[conf][errors][range]") {
  CHECK(err("[pgmux]\ndefault_pool_size = 5\nmin_pool_size = 6\n" + kMin) ==
        "t.toml:3: [pgmux] min_pool_size: min_pool_size (6) must not exceed default_pool_size (5)");
  CHECK(err("[pgmux]\ndefault_pool_size = 5\n" + kMin + "min_pool_size = 6\n") ==
        "t.toml:7: [databases.app] min_pool_size: min_pool_size (6) must not exceed pool_size (5)");
  CHECK(err("[pgmux]\nmin_pool_size = 4\n" + kMin + "pool_size = 3\n") ==
        "t.toml:7: [databases.app] pool_size: min_pool_size (4) must not exceed pool_size (3)");
  CHECK(err(kMin + "pool_size = 3\nmin_pool_size = 4\n") ==
        "t.toml:6: [databases.app] min_pool_size: min_pool_size (4) must not exceed pool_size (3)");
  // A database's own pool_size lifts the global limit.
  CHECK(ok("[pgmux]\ndefault_pool_size = 2\n" + kMin + "pool_size = 10\nmin_pool_size = 5\n"));
}

TEST_CASE("durations in the file", "[conf][errors][duration]") {
  CHECK(err("[pgmux]\nserver_idle_timeout = 600\n" + kMin) ==
        "t.toml:2: [pgmux] server_idle_timeout: expected a duration string with a unit, e.g. \"15s\" or \"250ms\"; "
        "got the integer 600 (write \"600s\" if you mean seconds)");
  CHECK(err("[pgmux]\nquery_timeout = -5\n" + kMin) == "t.toml:2: [pgmux] query_timeout: must not be negative, got -5");
  CHECK(err("[pgmux]\nquery_timeout = \"15\"\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: duration \"15\" needs a unit (ms, s, sec, min, h, d), e.g. \"15s\"");
  CHECK(err("[pgmux]\nquery_timeout = \"5m\"\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: invalid duration \"5m\": \"m\" is ambiguous, write \"5min\" for minutes or "
        "\"5ms\" for milliseconds");
  CHECK(err("[pgmux]\nquery_timeout = \"1.5s\"\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: invalid duration \"1.5s\": fractions are not supported, use a smaller unit "
        "(e.g. \"1500ms\" for 1.5s)");
  CHECK(err("[pgmux]\nquery_timeout = \"-1s\"\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: must not be negative, got \"-1s\"");
  CHECK(err("[pgmux]\nquery_timeout = \"5 mins\"\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: invalid duration \"5 mins\": unknown unit \"mins\" (use ms, s, sec, min, h, "
        "d)");
  CHECK(err("[pgmux]\nquery_timeout = \"5S\"\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: invalid duration \"5S\": unknown unit \"S\" (use ms, s, sec, min, h, d)");
  CHECK(err("[pgmux]\nquery_timeout = \"\"\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: empty duration; write e.g. \"15s\"");
  CHECK(err("[pgmux]\nquery_timeout = \"soon\"\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: invalid duration \"soon\": expected a number and a unit (ms, s, sec, min, "
        "h, d), e.g. \"15s\"");
  CHECK(err("[pgmux]\nquery_timeout = \"999999999999d\"\n" + kMin) ==
        "t.toml:2: [pgmux] query_timeout: duration \"999999999999d\" is too large");
  CHECK(err(kMin + "health_check_interval = \"0s\"\n") ==
        "t.toml:5: [databases.app] health_check_interval: must be greater than 0");
  CHECK(err(kMin + "health_check_interval = 0\n") ==
        "t.toml:5: [databases.app] health_check_interval: must be greater than 0");

  // Every duration key of [pgmux] goes through the same checks.
  for (const char* key :
       {"reserve_pool_timeout", "server_check_delay", "server_connect_timeout", "cancel_wait_timeout", "server_login_retry",
        "server_idle_timeout", "server_lifetime", "query_timeout", "query_wait_timeout", "client_idle_timeout",
        "client_login_timeout", "idle_transaction_timeout", "transaction_timeout", "autodb_idle_timeout", "query_wait_notify", "shutdown_timeout", "auth_failure_delay",
        "tcp_keepidle", "tcp_keepintvl", "tcp_user_timeout", "tcp_defer_accept"}) {
    INFO(key);
    CHECK_THAT(err(std::string("[pgmux]\n\n") + key + " = 15\n" + kMin),
               StartsWith(std::string("t.toml:3: [pgmux] ") + key + ": expected a duration string with a unit"));
    CHECK(ok(std::string("[pgmux]\n") + key + " = \"7min\"\n" + kMin));
  }
}

TEST_CASE("TCP keepalive settings", "[conf][errors]") {
  for (const char* key : {"tcp_keepidle", "tcp_keepintvl"}) {
    INFO(key);
    CHECK(err(std::string("[pgmux]\n") + key + " = \"1500ms\"\n" + kMin) ==
          std::string("t.toml:2: [pgmux] ") + key +
              ": must be whole seconds up to 32767s (0s: the system's value), got 1500ms");
    CHECK(err(std::string("[pgmux]\n") + key + " = \"32768s\"\n" + kMin) ==
          std::string("t.toml:2: [pgmux] ") + key +
              ": must be whole seconds up to 32767s (0s: the system's value), got 32768s");
    CHECK(ok(std::string("[pgmux]\n") + key + " = \"32767s\"\n" + kMin));
    CHECK(ok(std::string("[pgmux]\n") + key + " = \"0s\"\n" + kMin));
  }
  CHECK(err("[pgmux]\ntcp_keepcnt = 128\n" + kMin) ==
        "t.toml:2: [pgmux] tcp_keepcnt: must be between 0 and 127, got 128");
  CHECK(err("[pgmux]\ntcp_keepcnt = -1\n" + kMin) ==
        "t.toml:2: [pgmux] tcp_keepcnt: must be between 0 and 127, got -1");
  CHECK(err("[pgmux]\ntcp_user_timeout = \"25d\"\n" + kMin) ==
        "t.toml:2: [pgmux] tcp_user_timeout: must be at most 2147483647ms");
  CHECK(err("[pgmux]\ntcp_keepalive = 1\n" + kMin) ==
        "t.toml:2: [pgmux] tcp_keepalive: expected a boolean (true or false), got an integer");
  auto c = ok("[pgmux]\ntcp_keepalive = false\ntcp_user_timeout = \"24d\"\n" + kMin);
  REQUIRE(c);
  CHECK_FALSE(c->tcp_keepalive);
  CHECK(c->tcp_user_timeout == std::chrono::hours(24 * 24));
}

TEST_CASE("[databases.X] server_lifetime and query_wait_timeout", "[conf][errors]") {
  auto c = ok(kMin + "server_lifetime = \"10min\"\nquery_wait_timeout = \"0s\"\n");
  CHECK(c->databases.at("app").server_lifetime == std::optional<Duration>(std::chrono::minutes(10)));
  CHECK(c->databases.at("app").query_wait_timeout == std::optional<Duration>(Duration{0}));
  CHECK_FALSE(ok(kMin)->databases.at("app").server_lifetime);
  CHECK_THAT(err(kMin + "query_wait_timeout = 5\n"),
             StartsWith("t.toml:5: [databases.app] query_wait_timeout: expected a duration string with a unit"));
}

TEST_CASE("[databases.X] parameters", "[conf][errors]") {
  using P = std::vector<std::pair<std::string, std::string>>;
  auto c = ok(kMin + "parameters = { TimeZone = \"UTC\", work_mem = \"64MB\", jit = false, "
                     "extra_float_digits = 3, \"my.app_setting\" = \"x\" }\n");
  // Sorted by name (the table's order is not kept).
  CHECK(c->databases.at("app").parameters ==
        P{{"TimeZone", "UTC"}, {"extra_float_digits", "3"}, {"jit", "off"}, {"my.app_setting", "x"}, {"work_mem", "64MB"}});
  CHECK(ok(kMin)->databases.at("app").parameters.empty());
  CHECK(err(kMin + "parameters = \"TimeZone=UTC\"\n") ==
        "t.toml:5: [databases.app] parameters: expected a table such as { TimeZone = \"UTC\" }, got a string");
  CHECK(err(kMin + "parameters = { user = \"bob\" }\n") ==
        "t.toml:5: [databases.app] parameters.user: is not a setting: pgmux sends user itself (force the server "
        "login with user = ...)");
  CHECK(err(kMin + "parameters = { Database = \"x\" }\n") ==
        "t.toml:5: [databases.app] parameters.Database: is not a setting: pgmux sends database itself");
  CHECK(err(kMin + "parameters = { \"bad name\" = \"x\" }\n") ==
        "t.toml:5: [databases.app] parameters.\"bad name\": not a parameter name (letters, digits, '_' and '.')");
  CHECK_THAT(err(kMin + "parameters = { TimeZone = \"UTC\", timezone = \"GMT\" }\n"),
             Catch::EndsWith("is set twice (parameter names are case-insensitive)"));
  CHECK(err(kMin + "parameters = { work_mem = 1.5 }\n") ==
        "t.toml:5: [databases.app] parameters.work_mem: expected a string (or an integer or a boolean), got a float");
}

TEST_CASE("unix_socket_mode and unix_socket_group", "[conf][errors]") {
  CHECK(ok(kMin)->unix_socket_mode == 0777u);
  CHECK(ok(kMin)->unix_socket_group.empty());
  CHECK(ok("[pgmux]\nunix_socket_mode = \"0770\"\nunix_socket_group = \"postgres\"\n" + kMin)->unix_socket_mode ==
        0770u);
  CHECK(ok("[pgmux]\nunix_socket_mode = \"700\"\n" + kMin)->unix_socket_mode == 0700u);
  CHECK(ok("[pgmux]\nunix_socket_mode = 0o750\n" + kMin)->unix_socket_mode == 0750u);
  CHECK(err("[pgmux]\nunix_socket_mode = 777\n" + kMin) ==
        "t.toml:2: [pgmux] unix_socket_mode: expected an octal mode up to 0777 such as \"0770\" (a string, or the "
        "TOML integer 0o770), got 777");
  // Decimal integers are refused even when they would fit (400 is 0o620).
  CHECK(err("[pgmux]\nunix_socket_mode = 400\n" + kMin) ==
        "t.toml:2: [pgmux] unix_socket_mode: expected an octal mode up to 0777 such as \"0770\" (a string, or the "
        "TOML integer 0o770), got 400");
  CHECK(err("[pgmux]\nunix_socket_mode = 0o1777\n" + kMin) ==
        "t.toml:2: [pgmux] unix_socket_mode: expected an octal mode up to 0777 such as \"0770\" (a string, or the "
        "TOML integer 0o770), got 0o1777");
  CHECK(err("[pgmux]\nunix_socket_mode = \"0789\"\n" + kMin) ==
        "t.toml:2: [pgmux] unix_socket_mode: expected an octal mode up to 0777 such as \"0770\" (a string, or the "
        "TOML integer 0o770), got \"0789\"");
  CHECK(err("[pgmux]\nunix_socket_mode = true\n" + kMin) ==
        "t.toml:2: [pgmux] unix_socket_mode: expected an octal mode such as \"0770\", got a boolean");
  CHECK(is_restart_only("unix_socket_mode"));
  CHECK(is_restart_only("unix_socket_group"));
}

TEST_CASE("scram_iterations", "[conf][errors]") {
  CHECK(ok(kMin)->scram_iterations == 4096);
  CHECK(ok("[pgmux]\nscram_iterations = 100000\n" + kMin)->scram_iterations == 100000);
  CHECK(err("[pgmux]\nscram_iterations = 0\n" + kMin) ==
        "t.toml:2: [pgmux] scram_iterations: must be between 1 and 1000000, got 0");
  CHECK(err("[pgmux]\nscram_iterations = 1000001\n" + kMin) ==
        "t.toml:2: [pgmux] scram_iterations: must be between 1 and 1000000, got 1000001");
}

TEST_CASE("tcp_socket_buffer and tcp_defer_accept", "[conf][errors]") {
  auto c = ok(kMin);
  CHECK(c->tcp_socket_buffer == 0);
  CHECK(c->tcp_defer_accept == std::chrono::seconds(45));  // PgBouncer's default
  c = ok("[pgmux]\ntcp_socket_buffer = \"256kB\"\ntcp_defer_accept = \"0s\"\n" + kMin);
  CHECK(c->tcp_socket_buffer == 256u * 1024u);
  CHECK(c->tcp_defer_accept == std::chrono::seconds(0));
  CHECK(ok("[pgmux]\ntcp_socket_buffer = 0\n" + kMin)->tcp_socket_buffer == 0);
  CHECK(err("[pgmux]\ntcp_socket_buffer = 100\n" + kMin) ==
        "t.toml:2: [pgmux] tcp_socket_buffer: must be 0 (the system's) or at least 4kB, got 100");
  CHECK(err("[pgmux]\ntcp_socket_buffer = \"2GB\"\n" + kMin) ==
        "t.toml:2: [pgmux] tcp_socket_buffer: must be between 0B and 1073741824 bytes, got \"2GB\"");
  CHECK(err("[pgmux]\ntcp_defer_accept = \"1500ms\"\n" + kMin) ==
        "t.toml:2: [pgmux] tcp_defer_accept: must be whole seconds, got 1500ms");
  CHECK(err("[pgmux]\ntcp_defer_accept = \"2h\"\n" + kMin) ==
        "t.toml:2: [pgmux] tcp_defer_accept: must be at most 1h, got 2h");
  // Bound to the listening sockets: SET refuses it, a reload keeps the running value.
  CHECK(is_restart_only("tcp_defer_accept"));
  CHECK(is_restart_only("listen"));
  CHECK_FALSE(is_restart_only("tcp_socket_buffer"));
  const auto set = apply_setting(*ok(kMin), "tcp_defer_accept", "'10s'");
  CHECK_FALSE(set.config);
  CHECK(set.error == "SET tcp_defer_accept: cannot be changed while running (it takes a restart)");
  const auto buf = apply_setting(*ok(kMin), "tcp_socket_buffer", "'1MB'");
  REQUIRE(buf.config);
  CHECK(buf.config->tcp_socket_buffer == 1u << 20);
}

TEST_CASE("[log] stats_period", "[conf][errors]") {
  auto c = ok(kMin);
  REQUIRE(c);
  CHECK(c->log.stats_period == std::chrono::seconds(60));
  c = ok(kMin + "[log]\nstats_period = \"0s\"\n");
  REQUIRE(c);
  CHECK(c->log.stats_period.count() == 0);
  c = ok(kMin + "[log]\nstats_period = \"5min\"\n");
  REQUIRE(c);
  CHECK(c->log.stats_period == std::chrono::minutes(5));
  CHECK_THAT(err(kMin + "[log]\nstats_period = \"500ms\"\n"),
             Catch::Matchers::EndsWith("[log] stats_period: must be at least 1s (0s: no stats lines), got 500ms"));
  CHECK_THAT(err(kMin + "[log]\nstats_period = 60\n"),
             Catch::Matchers::Contains("[log] stats_period: expected a duration string with a unit"));
}

TEST_CASE("max_packet_size limits and formats", "[conf][errors][bytes]") {
  CHECK(err("[pgmux]\nmax_packet_size = 1023\n" + kMin) ==
        "t.toml:2: [pgmux] max_packet_size: must be between 1kB and 2147483647 bytes, got 1023");
  CHECK(err("[pgmux]\nmax_packet_size = \"2GB\"\n" + kMin) ==
        "t.toml:2: [pgmux] max_packet_size: must be between 1kB and 2147483647 bytes, got \"2GB\"");
  CHECK(err("[pgmux]\nmax_packet_size = -1\n" + kMin) ==
        "t.toml:2: [pgmux] max_packet_size: must not be negative, got -1");
  CHECK(err("[pgmux]\nmax_packet_size = \"64mb\"\n" + kMin) ==
        "t.toml:2: [pgmux] max_packet_size: invalid size \"64mb\": unknown unit \"mb\" (use B, kB, MB, GB, TB; units "
        "are case-sensitive)");
  CHECK(err("[pgmux]\nmax_packet_size = \"1.5MB\"\n" + kMin) ==
        "t.toml:2: [pgmux] max_packet_size: invalid size \"1.5MB\": fractions are not supported, use a smaller unit "
        "(e.g. \"1536kB\" for 1.5MB)");
  CHECK(err("[pgmux]\nmax_packet_size = \"big\"\n" + kMin) ==
        "t.toml:2: [pgmux] max_packet_size: invalid size \"big\": expected a number and a unit (B, kB, MB, GB, TB), "
        "e.g. \"64MB\"");
  CHECK(err("[pgmux]\nmax_packet_size = \"\"\n" + kMin) ==
        "t.toml:2: [pgmux] max_packet_size: empty size; write e.g. \"64MB\"");
  CHECK(err("[pgmux]\nmax_packet_size = \"99999999999999999999TB\"\n" + kMin) ==
        "t.toml:2: [pgmux] max_packet_size: size \"99999999999999999999TB\" is too large");
}

TEST_CASE("max_replica_lag errors", "[conf][errors][replicas]") {
  CHECK(err(kMin + "max_replica_lag = 10\n") ==
        "t.toml:5: [databases.app] max_replica_lag: expected a duration such as \"10s\" or a byte size such as "
        "\"16MB\", got the integer 10 (the unit decides which lag is bounded)");
  CHECK(err(kMin + "max_replica_lag = \"10\"\n") ==
        "t.toml:5: [databases.app] max_replica_lag: expected a duration such as \"10s\" or a byte size such as "
        "\"16MB\", got \"10\"");
  CHECK(err(kMin + "max_replica_lag = \"10m\"\n") ==
        "t.toml:5: [databases.app] max_replica_lag: expected a duration such as \"10s\" or a byte size such as "
        "\"16MB\", got \"10m\"");
  CHECK(err(kMin + "max_replica_lag = \"16mb\"\n") ==
        "t.toml:5: [databases.app] max_replica_lag: expected a duration such as \"10s\" or a byte size such as "
        "\"16MB\", got \"16mb\"");
}

TEST_CASE("listen address errors", "[conf][errors][listen]") {
  auto listen_err = [](const std::string& addr) {
    return err("[pgmux]\nlisten = [\"127.0.0.1:6432\",\n  \"" + addr + "\"]\n" + kMin);
  };
  const std::string forms =
      "expected \"host:port\", \"[ipv6]:port\", \"*:port\" or \"unix:/path/.s.PGSQL.6432\"";
  CHECK(listen_err("127.0.0.1") == "t.toml:3: [pgmux] listen: invalid address \"127.0.0.1\": missing port; " + forms);
  CHECK(listen_err("127.0.0.1:") ==
        "t.toml:3: [pgmux] listen: invalid address \"127.0.0.1:\": missing port number after ':'");
  CHECK(listen_err("127.0.0.1:0") ==
        "t.toml:3: [pgmux] listen: invalid address \"127.0.0.1:0\": port must be between 1 and 65535, got 0");
  CHECK(listen_err("127.0.0.1:65536") ==
        "t.toml:3: [pgmux] listen: invalid address \"127.0.0.1:65536\": port must be between 1 and 65535, got 65536");
  CHECK(listen_err("127.0.0.1:99999999999") ==
        "t.toml:3: [pgmux] listen: invalid address \"127.0.0.1:99999999999\": port must be between 1 and 65535, got "
        "99999999999");
  CHECK(listen_err("127.0.0.1:64x") == "t.toml:3: [pgmux] listen: invalid address \"127.0.0.1:64x\": invalid port \"64x\"");
  CHECK(listen_err(":6432") == "t.toml:3: [pgmux] listen: invalid address \":6432\": " + forms);
  CHECK(listen_err("") == "t.toml:3: [pgmux] listen: invalid address \"\": " + forms);
  CHECK(listen_err("::1:6432") ==
        "t.toml:3: [pgmux] listen: invalid address \"::1:6432\": IPv6 addresses must be written in brackets, e.g. "
        "\"[::1]:5432\"");
  CHECK(listen_err("[::1]") == "t.toml:3: [pgmux] listen: invalid address \"[::1]\": missing port; " + forms);
  CHECK(listen_err("[::1:6432") ==
        "t.toml:3: [pgmux] listen: invalid address \"[::1:6432\": missing ']' after the IPv6 address");
  CHECK(listen_err("[127.0.0.1]:6432") ==
        "t.toml:3: [pgmux] listen: invalid address \"[127.0.0.1]:6432\": \"127.0.0.1\" is not an IPv6 address");
  CHECK(listen_err("[::1]6432") == "t.toml:3: [pgmux] listen: invalid address \"[::1]6432\": expected ':' after ']'");
  CHECK(listen_err("localhost:6432") ==
        "t.toml:3: [pgmux] listen: invalid address \"localhost:6432\": listen host must be an IP address or \"*\", "
        "got \"localhost\" (host names are not resolved)");
  CHECK(listen_err("256.0.0.1:6432") ==
        "t.toml:3: [pgmux] listen: invalid address \"256.0.0.1:6432\": listen host must be an IP address or \"*\", "
        "got \"256.0.0.1\" (host names are not resolved)");
  CHECK(listen_err("unix:") == "t.toml:3: [pgmux] listen: invalid address \"unix:\": missing socket path after \"unix:\"");
  CHECK(listen_err("127.0.0.1:6432") == "t.toml:3: [pgmux] listen: \"127.0.0.1:6432\" is listed twice");
  CHECK(err("[pgmux]\nlisten = []\n" + kMin) == "t.toml:2: [pgmux] listen: must list at least one address");
  const std::string long_path = "/" + std::string(120, 'x');
  CHECK(err("[pgmux]\nlisten = [\"unix:" + long_path + "\"]\n" + kMin) ==
        "t.toml: [pgmux] listen: unix socket path \"" + long_path + "\" is too long (121 bytes, at most 107)");
}

TEST_CASE("replica address errors", "[conf][errors][replicas]") {
  CHECK(err(kMin + "replicas = [\"::1:5433\"]\n") ==
        "t.toml:5: [databases.app] replicas: invalid replica \"::1:5433\": IPv6 addresses must be written in "
        "brackets, e.g. \"[::1]:5432\"");
  CHECK(err(kMin + "replicas = [\n  \"a:5433\",\n  \"b:0\",\n]\n") ==
        "t.toml:7: [databases.app] replicas: invalid replica \"b:0\": port must be between 1 and 65535, got 0");
  CHECK(err(kMin + "replicas = [\"\"]\n") == "t.toml:5: [databases.app] replicas: invalid replica \"\": missing host");
  CHECK(err(kMin + "replicas = [\":5433\"]\n") ==
        "t.toml:5: [databases.app] replicas: invalid replica \":5433\": missing host");
  CHECK(err(kMin + "replicas = [\"a b:5433\"]\n") ==
        "t.toml:5: [databases.app] replicas: invalid replica \"a b:5433\": host must not contain whitespace");
  CHECK(err(kMin + "replicas = [\"r:5433\", \"r:5433\"]\n") ==
        "t.toml:5: [databases.app] replicas: \"r:5433\" is listed twice");
  CHECK(err(kMin + "replicas = 5433\n") ==
        "t.toml:5: [databases.app] replicas: expected an array of strings, got an integer");
}

TEST_CASE("database and user names", "[conf][errors][databases]") {
  CHECK(err("[auth]\ntype = \"trust\"\n[databases.pgbouncer]\n") ==
        "t.toml:3: [databases.pgbouncer]: the name \"pgbouncer\" is reserved for the admin console");
  CHECK(err("[auth]\ntype = \"trust\"\n[databases.pgmux]\n") ==
        "t.toml:3: [databases.pgmux]: the name \"pgmux\" is reserved for the admin console");
  CHECK(err("[auth]\ntype = \"trust\"\n[databases.\"\"]\n") ==
        "t.toml:3: [databases.\"\"]: the database name must not be empty");
  CHECK(err(kMin + "[users.\"\"]\n") == "t.toml:5: [users.\"\"]: the user name must not be empty");
  CHECK(err(kMin + "host = \"\"\n") == "t.toml:5: [databases.app] host: must not be empty");
  CHECK(err(kMin + "user = \"\"\n") == "t.toml:5: [databases.app] user: must not be empty");
}

TEST_CASE("auth requirements", "[conf][errors][auth]") {
  CHECK(err("[databases.app]\n") ==
        "t.toml: [auth] file: required when type = \"scram-sha-256\" (the userlist file with \"user\" \"secret\" "
        "lines), unless query is set");
  CHECK(err("[auth]\n\ntype = \"md5\"\n[databases.app]\n") ==
        "t.toml:3: [auth] file: required when type = \"md5\" (the userlist file with \"user\" \"secret\" lines), "
        "unless query is set");
  CHECK(err("[auth]\nquery_user = \"x\"\n[databases.app]\n") ==
        "t.toml:1: [auth] file: required when type = \"scram-sha-256\" (the userlist file with \"user\" \"secret\" "
        "lines), unless query is set");
  CHECK(err("[auth]\ntype = \"hba\"\nfile = \"u\"\n[databases.app]\n") ==
        "t.toml:2: [auth] hba_file: required when type = \"hba\"");
  CHECK(err("[auth]\nquery = \"\"\n[databases.app]\n") == "t.toml:2: [auth] query: must not be empty");
  CHECK(err("[auth]\ntype = \"trust\"\nident_file = \"i\"\n[databases.app]\n") ==
        "t.toml:3: [auth] ident_file: only used with type = \"hba\" (its map= options name the maps)");
  CHECK(ok("[auth]\ntype = \"hba\"\nhba_file = \"h\"\nident_file = \"i\"\n[databases.app]\n"));
  // Satisfied requirements.
  CHECK(ok("[auth]\ntype = \"md5\"\nfile = \"u\"\n[databases.app]\n"));
  CHECK(err("[auth]\ntype = \"md5\"\nquery = \"SELECT 1\"\n[databases.app]\n") ==
        "t.toml:3: [auth] query_user: required when query is set (the role that runs the lookup)");
  CHECK(ok("[auth]\ntype = \"md5\"\nquery = \"SELECT 1\"\nquery_user = \"q\"\n[databases.app]\n"));
  CHECK(ok("[auth]\ntype = \"hba\"\nhba_file = \"h\"\n[databases.app]\n"));
  CHECK(ok("[auth]\ntype = \"trust\"\n[databases.app]\n"));
}

TEST_CASE("auth lookups per database entry", "[conf][errors][auth]") {
  // The userlist may go when an entry looks users up (the others know no
  // user then, as in PgBouncer).
  CHECK(ok("[auth]\ntype = \"md5\"\n[databases.app]\nauth_query_user = \"q\"\n"));
  CHECK(ok("[auth]\ntype = \"md5\"\n[databases.app]\nauth_query_user = \"q\"\n[databases.b]\n"));
  CHECK(err("[auth]\ntype = \"md5\"\n[databases.app]\nauth_query = \"SELECT 1\"\n") ==
        "t.toml:4: [databases.app] auth_query_user: required with auth_query when [auth] query_user is not set "
        "(the role that runs the lookup)");
  CHECK(ok("[auth]\ntype = \"md5\"\nquery_user = \"q\"\n[databases.app]\nauth_query = \"SELECT 1\"\n"));
  CHECK(err(kMin + "auth_query_user = \"\"\n") == "t.toml:5: [databases.app] auth_query_user: must not be empty");
  // The entry a lookup runs in must be one.
  CHECK(err("[auth]\ntype = \"trust\"\nquery_database = \"nope\"\n[databases.app]\n") ==
        "t.toml:3: [auth] query_database: \"nope\" is not a [databases] entry");
  CHECK(err("[auth]\ntype = \"trust\"\nquery_database = \"*\"\n[databases.\"*\"]\n") ==
        "t.toml:3: [auth] query_database: \"*\" is not a [databases] entry (name one with its own table; \"*\" "
        "stands for any name)");
  CHECK(err("[auth]\ntype = \"trust\"\n[databases.app]\nauth_query_database = \"authdb\"\n") ==
        "t.toml:4: [databases.app] auth_query_database: \"authdb\" is not a [databases] entry");
  CHECK(ok("[auth]\ntype = \"trust\"\nquery_database = \"authdb\"\n[databases.app]\n[databases.authdb]\n"));
}

TEST_CASE("TLS requirements", "[conf][errors][tls]") {
  CHECK(err("[tls]\nmode = \"require\"\nkey = \"k\"\n" + kMin) == "t.toml:2: [tls] cert: required when mode = \"require\"");
  CHECK(err("[tls]\nmode = \"prefer\"\ncert = \"c\"\n" + kMin) == "t.toml:2: [tls] key: required when mode = \"prefer\"");
  CHECK(err("[tls]\nmode = \"allow\"\n" + kMin) == "t.toml:2: [tls] cert: required when mode = \"allow\"");
  CHECK(err("[tls]\nmode = \"verify-full\"\ncert = \"c\"\nkey = \"k\"\n" + kMin) ==
        "t.toml:2: [tls] ca: required when mode = \"verify-full\" (the CA that signs client certificates)");
  CHECK(err("[tls]\nmode = \"verify-ca\"\ncert = \"c\"\nkey = \"k\"\n" + kMin) ==
        "t.toml:2: [tls] ca: required when mode = \"verify-ca\" (the CA that signs client certificates)");
  CHECK(err("[server_tls]\ncert = \"c\"\n" + kMin) == "t.toml:2: [server_tls] key: required when cert is set");
  CHECK(err("[server_tls]\nmode = \"require\"\nkey = \"k\"\n" + kMin) ==
        "t.toml:3: [server_tls] cert: required when key is set");
  CHECK(err("[tls]\nprotocols = \"tls1.2\"\n" + kMin) ==
        "t.toml:2: [tls] protocols: unknown protocol \"tls1.2\" (use tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, all, secure "
        "or legacy, separated by commas)");
  CHECK(err("[server_tls]\nprotocols = \" , \"\n" + kMin) ==
        "t.toml:2: [server_tls] protocols: must name at least one protocol (use tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, "
        "all, secure or legacy, separated by commas)");
  // Satisfied requirements: server_tls needs no certificate, tls disable needs nothing.
  CHECK(ok("[server_tls]\nmode = \"verify-full\"\n" + kMin));
  CHECK(ok("[tls]\nmode = \"disable\"\n" + kMin));
  CHECK(ok("[tls]\nprotocols = \"TLSv1.2, tlsv1.3\"\n" + kMin));
  CHECK(ok("[tls]\nmode = \"require\"\ncert = \"c\"\nkey = \"k\"\n" + kMin));
}

TEST_CASE("admin and log errors", "[conf][errors][admin]") {
  CHECK(err("[admin]\nusers = [\"a\", \"\"]\n" + kMin) == "t.toml:2: [admin] users: names must not be empty");
  CHECK(err("[admin]\nusers = [\"a\", \"a\"]\n" + kMin) == "t.toml:2: [admin] users: \"a\" is listed twice");
  CHECK(err("[admin]\nmetrics_listen = \"9127\"\n" + kMin) ==
        "t.toml:2: [admin] metrics_listen: invalid address \"9127\": missing port; expected \"host:port\", "
        "\"[ipv6]:port\", \"*:port\" or \"unix:/path/.s.PGSQL.6432\"");
  CHECK(err("[admin]\nmetrics_listen = \"unix:/tmp/m.sock\"\n" + kMin) ==
        "t.toml:2: [admin] metrics_listen: invalid address \"unix:/tmp/m.sock\": a unix socket is not supported "
        "here; expected \"host:port\"");
  CHECK(ok("[admin]\nmetrics_listen = \"[::]:9127\"\n" + kMin)->admin.metrics_listen == "[::]:9127");
  CHECK(ok("[admin]\nmetrics_listen = \"\"\n" + kMin)->admin.metrics_listen.empty());
}

TEST_CASE("TOML syntax errors are condensed to one line with the line number", "[conf][errors][syntax]") {
  CHECK(err("[pgmux]\nworkers = \n") ==
        "t.toml:2: syntax error: missing value after key-value separator '=' (expected value, but got nothing): "
        "workers =");
  CHECK(err("a = 1\nb c\n") == "t.toml:2: syntax error: missing key-value separator `=` (should be `=`): b c");
  CHECK(err("[pgmux]\nworkers = 1\nworkers = 2\n") ==
        "t.toml:3: syntax error: value (\"workers\") already exists (line 2: value already exists here; line 3: "
        "value defined twice)");
  CHECK(err("[pgmux]\n[auth]\n[pgmux]\n") ==
        "t.toml:3: syntax error: table (\"pgmux\") already exists (line 1: table already exists here; line 3: table "
        "defined twice)");
  CHECK(err("\n\n[databases.app\n") == "t.toml:3: syntax error: an invalid key appeared (is not a valid key): "
                                       "[databases.app");
  CHECK(err("[pgmux]\nserver_reset_query = \"DISCARD ALL\n") ==
        "t.toml:2: syntax error: the next token is not a valid string: server_reset_query = \"DISCARD ALL");
  CHECK(err("[pgmux]\nlisten = [\"a\",\n\"b\",\n") ==
        "t.toml:4: syntax error: value having invalid format appeared in an array (line 2: array starts here; line "
        "4: it is not a valid value)");
  CHECK(err("[pgmux]\nworkers = 012\n") == "t.toml:2: syntax error: bad integer: leading zero: workers = 012");
  CHECK(err("[pgmux]\nconnections = tru\n") ==
        "t.toml:2: syntax error: the next token is not a boolean: connections = tru");
  // No multi-line output, whatever the error.
  for (const char* bad : {"=", "[", "[[a]", "a = {", "a = \"\\q\"", "a = 1979-13-45", "\xff = 1", "a.=1", "a = 0x"}) {
    INFO(bad);
    const auto e = err(bad);
    CHECK_THAT(e, StartsWith("t.toml:1: syntax error: "));
    CHECK(e.find('\n') == std::string::npos);
  }
}

TEST_CASE("load_string never throws", "[conf][errors]") {
  const char* inputs[] = {
      "", "\n", "\0", "[", "]", "[[", "a=", "=", "\"", "'''", "a = [[[[[[[[1]]]]]]]]", "[a.b.c.d.e.f]",
      "a = { b = { c = { d = 1 } } }", "[databases]\n\"\" = {}", "[databases.app]\nreplicas = [1, 2, 3]",
  };
  for (const char* text : inputs) {
    INFO(text);
    LoadResult r;
    CHECK_NOTHROW(r = load_string(text, "x"));
    CHECK((r.config == nullptr) != r.error.empty());
  }
}

TEST_CASE("text toml11 cannot be trusted with is refused before parsing", "[conf][errors][syntax]") {
  SECTION("invalid UTF-8") {
    // Found by tests/fuzz/fuzz_config (corpus regress-literal-string-invalid-utf8):
    // toml11 3.7 reads out of bounds when it reports invalid UTF-8 inside a
    // 'literal string'. A TOML file must be UTF-8: checked first.
    CHECK(err("a = 'caf\xe9'\n") ==
          "t.toml:1: syntax error: invalid UTF-8 (byte 0xe9 in column 9); a TOML file must be UTF-8");
    CHECK(err("'\xa7'\xa7") == "t.toml:1: syntax error: invalid UTF-8 (byte 0xa7 in column 2); a TOML file must be UTF-8");
    CHECK(err(kMin + "[pgmux]\nserver_reset_query = \"x\"  # \xff\n") ==
          "t.toml:6: syntax error: invalid UTF-8 (byte 0xff in column 29); a TOML file must be UTF-8");
    for (const char* bad : {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\x80", "\xf8\x88\x80\x80\x80"}) {
      INFO(bad);
      CHECK_THAT(err("# " + std::string(bad) + "\n" + kMin), StartsWith("t.toml:1: syntax error: invalid UTF-8 (byte 0x"));
    }
    // Valid UTF-8 is untouched, in strings and comments.
    const auto c = ok("[pgmux]\nserver_reset_query = 'SELECT \"caf\xc3\xa9\" \xf0\x9f\x98\x80' # \xe2\x82\xac\n" + kMin);
    CHECK(c->server_reset_query == "SELECT \"caf\xc3\xa9\" \xf0\x9f\x98\x80");
  }
  SECTION("deep nesting") {
    // toml11 recurses per level: a few thousand levels overflowed the stack
    // (pgmux --check crashed, and so would a SIGHUP reload). Found by
    // reading toml11 while fuzzing (corpus regress-nested-*).
    const std::string nested = "arrays and inline tables nested more than 32 deep";
    CHECK(err("a = " + std::string(100000, '[') + "\n") == "t.toml:1: syntax error: " + nested);
    std::string inline_tables = "\n\na = ";
    for (int i = 0; i < 5000; ++i) inline_tables += "{b=";
    CHECK(err(inline_tables) == "t.toml:3: syntax error: " + nested);
    std::string dotted = "a";
    for (int i = 0; i < 20000; ++i) dotted += ".a";
    CHECK(err(dotted + " = 1\n") == "t.toml:1: syntax error: a dotted key with more than 32 parts");
    CHECK(err("[" + dotted + "]\n") == "t.toml:1: syntax error: a dotted key with more than 32 parts");
    // 32 levels are fine (and reach the usual checks).
    CHECK(err("a = " + std::string(32, '[') + std::string(32, ']') + "\n" + kMin) ==
          "t.toml:1: unknown key 'a' at the top level");
    // Brackets, braces and dots inside strings and comments do not count;
    // lines inside multi-line strings do.
    const std::string many(100, '[');
    const auto c = ok("[pgmux]\nserver_reset_query = \"" + many + "\\\"" + many + "\" # " + many + "\n" +
                      "server_check_query = '''\n" + many + "\n'''\n" + "[databases.\"" + std::string(40, '.') +
                      "\"]\ndbname = \"" + std::string(100, '.') + "\"\n" + kMin);
    CHECK(c->server_reset_query == many + "\"" + many);
    CHECK(c->server_check_query == many + "\n");
    CHECK(c->find_database(std::string(40, '.'))->dbname == std::string(100, '.'));
    CHECK(err("[pgmux]\nserver_check_query = \"\"\"\n{\n\"\"\"\nlisten = " + std::string(40, '[') + "\n") ==
          "t.toml:5: syntax error: " + nested);
  }
}
