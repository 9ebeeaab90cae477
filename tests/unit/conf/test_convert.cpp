// pgbouncer.ini -> pgmux TOML (pgmux --convert-pgbouncer): every conversion
// is fed back through conf::load_string and checked on the loaded Config.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "conf/config.hpp"
#include "conf/pgbouncer_ini.hpp"
#include "conf_test_util.hpp"

using namespace pgmux::conf;
using namespace pgmux::conf::test;
using namespace std::chrono_literals;

namespace {

std::string convert_ok(const std::string& ini) {
  const auto r = convert_pgbouncer_ini(ini, "t.ini");
  INFO("ini:\n" << ini);
  INFO("error: " << r.error);
  REQUIRE(r.ok);
  REQUIRE(r.error.empty());
  return r.toml;
}

// Converts, loads the result, returns the Config.
std::shared_ptr<const Config> convert_load(const std::string& ini) {
  const auto toml = convert_ok(ini);
  INFO("ini:\n" << ini);
  return ok(toml);
}

std::string convert_err(const std::string& ini) {
  const auto r = convert_pgbouncer_ini(ini, "t.ini");
  INFO("ini:\n" << ini);
  INFO("toml:\n" << r.toml);
  REQUIRE_FALSE(r.ok);
  REQUIRE_FALSE(r.error.empty());
  return r.error;
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream is(text);
  for (std::string l; std::getline(is, l);) {
    if (l == line) return true;
  }
  return false;
}

// A line starts with `prefix` (the header mentions the markers in quotes).
bool has_line_starting(const std::string& text, const std::string& prefix) {
  std::istringstream is(text);
  for (std::string l; std::getline(is, l);) {
    if (l.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

// A database and an auth type that needs no file, plus `settings` in
// [pgbouncer].
std::string with(const std::string& settings) {
  return "[databases]\napp = host=10.0.0.1\n\n[pgbouncer]\nauth_type = trust\n" + settings;
}

const DatabaseConfig& db(const Config& c, const std::string& name) {
  const auto it = c.databases.find(name);
  INFO("database " << name);
  REQUIRE(it != c.databases.end());
  return it->second;
}

std::string sample_path() {
  return (std::filesystem::path(__FILE__).parent_path() / "data" / "pgbouncer_sample.ini").string();
}

}  // namespace

TEST_CASE("convert: the sample pgbouncer.ini", "[convert]") {
  const auto r = convert_pgbouncer_ini_file(sample_path());
  INFO(r.error);
  REQUIRE(r.ok);
  INFO(r.toml);
  const auto c = ok(r.toml);

  // [pgbouncer] -> [pgmux]
  REQUIRE(c->listen.size() == 3);
  CHECK(c->listen[0].host == "127.0.0.1");
  CHECK(c->listen[0].port == 6432);
  CHECK(c->listen[1].host == "10.0.0.2");
  CHECK(c->listen[2].is_unix);
  CHECK(c->listen[2].path == "/var/run/postgresql/.s.PGSQL.6432");
  CHECK(c->listen[2].port == 6432);
  CHECK(c->pool_mode == PoolMode::transaction);
  CHECK(c->max_client_conn == 2000);
  CHECK(c->default_pool_size == 25);
  CHECK(c->min_pool_size == 5);
  CHECK(c->reserve_pool_size == 3);
  CHECK(c->reserve_pool_timeout == 2500ms);
  CHECK(c->max_db_connections == 100);
  CHECK(c->max_user_connections == 50);
  CHECK(c->max_prepared_statements == 100);
  CHECK(c->server_reset_query == "DISCARD ALL");
  CHECK(c->server_reset_query_always);
  CHECK(c->server_check_query == "select 1");
  CHECK(c->server_check_delay == 10s);
  CHECK(c->server_lifetime == 30min);
  CHECK(c->server_idle_timeout == 1min);
  CHECK(c->server_connect_timeout == 5s);
  CHECK(c->server_login_retry == 500ms);
  CHECK(c->query_timeout == 0s);
  CHECK(c->query_wait_timeout == 30s);
  CHECK(c->client_idle_timeout == 0s);
  CHECK(c->client_login_timeout == 20s);
  CHECK(c->idle_transaction_timeout == 2min);
  CHECK(c->max_packet_size == 1024u * 1024u * 1024u);

  // auth, tls, admin, log
  CHECK(c->auth.type == AuthType::scram_sha_256);
  CHECK(c->auth.file == "/etc/pgbouncer/userlist.txt");
  CHECK_FALSE(c->auth.query_set);
  CHECK(c->tls.mode == TlsMode::disable);
  CHECK(c->server_tls.mode == TlsMode::prefer);
  CHECK(c->server_tls.ca == "/etc/ssl/certs/ca-certificates.crt");
  CHECK(c->server_tls.protocols == "secure");
  CHECK(c->admin.users == std::vector<std::string>{"postgres", "ops"});
  CHECK(c->admin.stats_users == std::vector<std::string>{"stats", "monitoring"});
  CHECK(c->log.level == "debug");
  CHECK(c->log.file == "/var/log/postgresql/pgbouncer.log");
  CHECK_FALSE(c->log.connections);
  CHECK(c->log.disconnections);

  // [databases]
  CHECK(c->databases.size() == 6);
  const auto& app = db(*c, "app");
  CHECK(app.host == "10.0.0.5");
  CHECK(app.port == 5433);
  CHECK(app.dbname == "app_production");
  CHECK(app.pool_size == 40);
  CHECK(app.reserve_pool_size == 5);
  CHECK_FALSE(app.pool_mode);
  CHECK(app.auth_query_user == "pgbouncer_auth");
  CHECK(app.auth_query_database == "reports");
  CHECK(c->auth_lookup(app).enabled);
  CHECK(*c->auth_lookup(app).query == Config{}.auth.query);
  CHECK_FALSE(c->auth_lookup(db(*c, "reports")).enabled);
  CHECK(c->tcp_socket_buffer == 131072u);
  CHECK(c->unix_socket_mode == 0770u);
  CHECK(c->unix_socket_group == "postgres");
  CHECK(c->scram_iterations == 8192);
  const auto& reports = db(*c, "reports");
  CHECK(reports.host == "10.0.0.6");
  CHECK(reports.port == 5432);
  CHECK(reports.user == "reporter");
  CHECK(reports.password == "s3cr'et pw");
  CHECK(reports.pool_mode == PoolMode::session);
  CHECK(reports.max_db_connections == 10);
  CHECK(reports.max_db_client_connections == 25);
  CHECK(reports.connect_query == "SET search_path = reporting, public");
  const auto& v2 = db(*c, "app.v2");
  CHECK(v2.dbname == "app2");
  CHECK(v2.min_pool_size == 2);
  CHECK(db(*c, "legacy-db").host == "/var/run/postgresql");
  CHECK(db(*c, "quoted db").host == "10.0.0.7");
  CHECK(db(*c, "quoted db").dbname == "quoted db");
  const auto& fallback = db(*c, "*");
  CHECK(fallback.host == "10.0.0.9");
  CHECK(fallback.port == 6000);
  CHECK(fallback.dbname.empty());
  CHECK(c->find_database("anything") == &fallback);

  // [users]
  REQUIRE(c->find_user("batch"));
  CHECK(c->find_user("batch")->pool_mode == PoolMode::session);
  CHECK(c->find_user("batch")->max_user_connections == 15);
  REQUIRE(c->find_user("etl"));
  CHECK_FALSE(c->find_user("etl")->pool_mode);
  CHECK(c->find_user("etl")->max_user_connections == 3);
  CHECK(c->find_user("etl")->max_user_client_connections == 9);
  CHECK_FALSE(c->find_user("batch")->max_user_client_connections);
  CHECK(c->find_user("batch")->pool_size == 4);
  CHECK_FALSE(c->find_user("batch")->reserve_pool_size);  // -1: not set
  CHECK(c->find_user("batch")->query_timeout == std::optional<Duration>(60s));
  CHECK_FALSE(c->find_user("batch")->idle_transaction_timeout);  // 0: the global value
  CHECK(c->find_user("batch")->transaction_timeout == std::optional<Duration>(250ms));

  // Per-database startup parameters.
  CHECK(v2.parameters == std::vector<std::pair<std::string, std::string>>{{"client_encoding", "UTF8"},
                                                                          {"datestyle", "ISO"}});
  CHECK(db(*c, "legacy-db").parameters == std::vector<std::pair<std::string, std::string>>{{"timezone", "UTC"}});
  CHECK(app.parameters.empty());

  // What did not convert is listed.
  CHECK(r.toml.find("# unsupported: pidfile = /var/run/postgresql/pgbouncer.pid") != std::string::npos);
  CHECK(c->server_round_robin);
  CHECK(r.toml.find("# unsupported: pkt_buf = 4096") != std::string::npos);
  CHECK(has_line(r.toml, "so_reuseport = false"));
  CHECK(has_line(r.toml, "tcp_keepalive = true"));
  CHECK(r.toml.find("# unsupported: ignore_startup_parameters = extra_float_digits") != std::string::npos);
  CHECK(r.toml.find("# unsupported: %include /etc/pgbouncer/pgbouncer-local.ini") != std::string::npos);
  CHECK_FALSE(has_line_starting(r.toml, "# refused:"));
}

TEST_CASE("convert: PgBouncer's defaults are written out where pgmux's differ", "[convert]") {
  const auto toml = convert_ok("[databases]\napp = host=10.0.0.1\n[pgbouncer]\nauth_file = users.txt\n");
  const auto c = ok(toml);
  CHECK(c->pool_mode == PoolMode::session);
  CHECK(c->max_client_conn == 100);
  CHECK(c->auth.type == AuthType::md5);
  CHECK(c->server_tls.mode == TlsMode::disable);
  // No listen_addr: PgBouncer listens on its unix socket in /tmp only.
  REQUIRE(c->listen.size() == 1);
  CHECK(c->listen[0].is_unix);
  CHECK(c->listen[0].path == "/tmp/.s.PGSQL.6432");
  // Same defaults on both sides: not written.
  CHECK(toml.find("default_pool_size") == std::string::npos);
  CHECK(toml.find("query_wait_timeout") == std::string::npos);
  CHECK(c->default_pool_size == 20);
  CHECK(c->query_wait_timeout == 2min);
  CHECK(c->server_idle_timeout == 10min);
  CHECK(c->server_lifetime == 1h);
  CHECK(c->client_login_timeout == 60s);
  CHECK(c->reserve_pool_timeout == 5s);
  // A relative path stays relative in the text and resolves next to the TOML.
  CHECK(has_line(toml, "file = \"users.txt\""));
  CHECK(toml.find("# note: relative paths are kept as written") != std::string::npos);
  CHECK(c->auth.file == "/etc/pgmux/users.txt");
}

TEST_CASE("convert: durations are seconds, fractions allowed", "[convert]") {
  struct Case {
    const char* ini;
    Duration expect;
    const char* toml;
  };
  const Case cases[] = {
      {"0", 0ms, "\"0s\""},          {"0.0", 0ms, "\"0s\""},         {"0.5", 500ms, "\"500ms\""},
      {".25", 250ms, "\"250ms\""},   {"2.5", 2500ms, "\"2500ms\""},  {"15", 15s, "\"15s\""},
      {"600", 10min, "\"10min\""},   {"3600", 1h, "\"1h\""},         {"86400", 24h, "\"1d\""},
      {"90", 90s, "\"90s\""},        {"1.001", 1001ms, "\"1001ms\""}, {"007", 7s, "\"7s\""},
      {"250ms", 250ms, "\"250ms\""}, {"1.5min", 90s, "\"90s\""},     {"2 h", 2h, "\"2h\""},
      {"0.0004", 1ms, "\"1ms\""},    {"0.0016", 2ms, "\"2ms\""},
  };
  for (const auto& k : cases) {
    INFO(k.ini);
    const auto toml = convert_ok(with(std::string("query_timeout = ") + k.ini + "\n"));
    CHECK(has_line(toml, std::string("query_timeout = ") + k.toml));
    CHECK(ok(toml)->query_timeout == k.expect);
  }
  // Sub-millisecond precision is rounded, with a note.
  CHECK(convert_ok(with("query_timeout = 0.0004\n")).find("# note: query_timeout = 0.0004 is rounded to 1ms") !=
        std::string::npos);

  // Every time setting.
  const auto c = convert_load(with("reserve_pool_timeout = 1\nserver_check_delay = 2\nserver_connect_timeout = 3\n"
                                   "server_login_retry = 4\nserver_idle_timeout = 5\nserver_lifetime = 6\n"
                                   "query_timeout = 7\nquery_wait_timeout = 8\nclient_idle_timeout = 9\n"
                                   "client_login_timeout = 10\nidle_transaction_timeout = 11\ncancel_wait_timeout = 12\n"
                                   "transaction_timeout = 13\nautodb_idle_timeout = 14\nquery_wait_notify = 15\n"));
  CHECK(c->reserve_pool_timeout == 1s);
  CHECK(c->server_check_delay == 2s);
  CHECK(c->server_connect_timeout == 3s);
  CHECK(c->cancel_wait_timeout == 12s);
  CHECK(c->transaction_timeout == 13s);
  CHECK(c->autodb_idle_timeout == 14s);
  CHECK(c->query_wait_notify == 15s);
  CHECK(c->server_login_retry == 4s);
  CHECK(c->server_idle_timeout == 5s);
  CHECK(c->server_lifetime == 6s);
  CHECK(c->query_timeout == 7s);
  CHECK(c->query_wait_timeout == 8s);
  CHECK(c->client_idle_timeout == 9s);
  CHECK(c->client_login_timeout == 10s);
  CHECK(c->idle_transaction_timeout == 11s);

  // Invalid ones name the line.
  CHECK(convert_err(with("query_timeout = -1\n")) ==
        "t.ini:6: [pgbouncer] query_timeout: must not be negative, got \"-1\"");
  CHECK(convert_err(with("query_timeout = soon\n")) ==
        "t.ini:6: [pgbouncer] query_timeout: expected a number of seconds such as \"15\" or \"0.5\", got \"soon\"");
  CHECK(convert_err(with("query_timeout = 10m\n")).rfind("t.ini:6: [pgbouncer] query_timeout:", 0) == 0);
  CHECK_THAT(convert_err(with("query_timeout = 15 ; seconds\n")),
             Catch::Contains("comments must be on their own line"));
}

TEST_CASE("convert: zero values whose meaning differs", "[convert]") {
  SECTION("reserve_pool_timeout = 0 turns the reserve off") {
    const auto toml = convert_ok(
        "[databases]\napp = host=h reserve_pool=4\n[pgbouncer]\nauth_type = trust\nreserve_pool_size = 5\n"
        "reserve_pool_timeout = 0\n");
    const auto c = ok(toml);
    CHECK(c->reserve_pool_size == 0);
    CHECK_FALSE(db(*c, "app").reserve_pool_size);
    CHECK(toml.find("# untranslatable: reserve_pool = 4 (the reserve pool is off") != std::string::npos);
    CHECK_FALSE(has_line_starting(toml, "reserve_pool_timeout ="));
  }
  SECTION("server_lifetime = 0 is not 'unlimited' in PgBouncer") {
    const auto toml = convert_ok(with("server_lifetime = 0\n"));
    CHECK(toml.find("# untranslatable: server_lifetime = 0 (") != std::string::npos);
    CHECK(ok(toml)->server_lifetime == 1h);
  }
  SECTION("zero timeouts that mean 'off' on both sides") {
    const auto c = convert_load(with("server_idle_timeout = 0\nquery_wait_timeout = 0\nclient_login_timeout = 0\n"));
    CHECK(c->server_idle_timeout == 0ms);
    CHECK(c->query_wait_timeout == 0ms);
    CHECK(c->client_login_timeout == 0ms);
  }
}

TEST_CASE("convert: ini comment and quoting syntax", "[convert]") {
  const std::string ini =
      "; a comment\r\n"
      "# another one\r\n"
      "   ; an indented one\r\n"
      "\r\n"
      "[databases]   ; comment after a section header\r\n"
      "'my db' = host=10.0.0.1 user=u password='it''s' connect_query='SELECT ''a\\b'', \"q\"'\r\n"
      "\"say \"\"hi\"\"\" = host=10.0.0.2\r\n"
      "semi = host=10.0.0.3 dbname=x;y\r\n"
      "[pgbouncer]\r\n"
      "auth_type=trust\r\n"
      "server_reset_query = DISCARD ALL ; not a comment\r\n"
      "  pool_mode   =   Statement  \r\n"
      "admin_users = a , b,,a, c\r\n";
  const auto toml = convert_ok(ini);
  const auto c = ok(toml);
  const auto& my = db(*c, "my db");
  CHECK(my.password == "it's");
  CHECK(my.connect_query == "SELECT 'a\\b', \"q\"");
  CHECK(db(*c, "say \"hi\"").host == "10.0.0.2");
  CHECK(db(*c, "semi").dbname == "x;y");
  CHECK(c->server_reset_query == "DISCARD ALL ; not a comment");
  CHECK(c->pool_mode == PoolMode::statement);
  CHECK(c->admin.users == std::vector<std::string>{"a", "b", "c"});
  CHECK(has_line(toml, "[databases.\"my db\"]"));
  CHECK(has_line(toml, "[databases.\"say \\\"hi\\\"\"]"));
  CHECK(has_line(toml, "connect_query = \"SELECT 'a\\\\b', \\\"q\\\"\""));
}

TEST_CASE("convert: the * fallback database", "[convert]") {
  const auto toml = convert_ok("[databases]\n* = host=10.1.1.1 port=5444 user=app\n[pgbouncer]\nauth_type = trust\n");
  CHECK(has_line(toml, "[databases.\"*\"]"));
  const auto c = ok(toml);
  REQUIRE(c->databases.size() == 1);
  const auto* d = c->find_database("whatever");
  REQUIRE(d);
  CHECK(d->name == "*");
  CHECK(d->host == "10.1.1.1");
  CHECK(d->port == 5444);
  CHECK(d->user == "app");
  CHECK(d->dbname.empty());
}

TEST_CASE("convert: listen addresses", "[convert]") {
  SECTION("*, IPv6 and a port") {
    const auto c = convert_load(with("listen_addr = *, ::1\nlisten_port = 7000\nunix_socket_dir =\n"));
    REQUIRE(c->listen.size() == 2);
    CHECK(c->listen[0].host == "*");
    CHECK(c->listen[0].port == 7000);
    CHECK(c->listen[1].host == "::1");
    CHECK(c->listen[1].text == "[::1]:7000");
  }
  SECTION("unix_socket_dir names the socket file with the port") {
    const auto c = convert_load(with("listen_port = 6000\nunix_socket_dir = /run/pgbouncer/\n"));
    REQUIRE(c->listen.size() == 1);
    CHECK(c->listen[0].path == "/run/pgbouncer/.s.PGSQL.6000");
  }
  SECTION("host names are not resolved") {
    const auto toml = convert_ok(with("listen_addr = localhost, db.example.com\nunix_socket_dir =\n"));
    CHECK(toml.find("# note: listen_addr localhost is written as 127.0.0.1") != std::string::npos);
    CHECK(toml.find("# untranslatable: listen_addr = db.example.com (") != std::string::npos);
    const auto c = ok(toml);
    REQUIRE(c->listen.size() == 1);
    CHECK(c->listen[0].text == "127.0.0.1:6432");
  }
  SECTION("abstract sockets and nowhere to listen") {
    const auto toml = convert_ok(with("unix_socket_dir = @pgbouncer\n"));
    CHECK(toml.find("# untranslatable: unix_socket_dir = @pgbouncer") != std::string::npos);
    CHECK(toml.find("listens nowhere") != std::string::npos);
    CHECK(ok(toml)->listen[0].text == "127.0.0.1:6432");
  }
  SECTION("bad ports") {
    CHECK(convert_err(with("listen_port = 99999\n")) ==
          "t.ini:6: [pgbouncer] listen_port: must be between 1 and 65535, got 99999");
    CHECK(convert_err(with("listen_port = 64x\n")) ==
          "t.ini:6: [pgbouncer] listen_port: expected an integer, got \"64x\"");
  }
}

TEST_CASE("convert: pool settings", "[convert]") {
  SECTION("every integer key") {
    const auto c = convert_load(with("max_client_conn = 500\ndefault_pool_size = 10\nmin_pool_size = 2\n"
                                     "reserve_pool_size = 1\nmax_db_connections = 30\nmax_user_connections = 40\n"
                                     "max_db_client_connections = 300\nmax_user_client_connections = 400\n"
                                     "max_prepared_statements = 0\nmax_packet_size = 65536\nlisten_backlog = 4096\n"));
    CHECK(c->max_client_conn == 500);
    CHECK(c->default_pool_size == 10);
    CHECK(c->min_pool_size == 2);
    CHECK(c->reserve_pool_size == 1);
    CHECK(c->max_db_connections == 30);
    CHECK(c->max_user_connections == 40);
    CHECK(c->max_db_client_connections == 300);
    CHECK(c->max_user_client_connections == 400);
    CHECK(c->max_prepared_statements == 0);
    CHECK(c->max_packet_size == 65536u);
    CHECK(c->listen_backlog == 4096);
  }
  SECTION("strtol bases, as PgBouncer reads integers") {
    const auto toml = convert_ok(with("max_client_conn = 0x40\ndefault_pool_size = 010\n"));
    CHECK(toml.find("# note: default_pool_size = 010 is read as 8") != std::string::npos);
    const auto c = ok(toml);
    CHECK(c->max_client_conn == 64);
    CHECK(c->default_pool_size == 8);
  }
  SECTION("values pgmux has no equivalent for") {
    const auto toml = convert_ok(
        with("default_pool_size = 0\nmax_packet_size = 100\nmax_client_conn = 0\nlisten_backlog = 100000\n"));
    CHECK(toml.find("# untranslatable: default_pool_size = 0 (") != std::string::npos);
    CHECK(toml.find("# untranslatable: max_packet_size = 100 (") != std::string::npos);
    CHECK(toml.find("# untranslatable: max_client_conn = 0 (") != std::string::npos);
    CHECK(toml.find("# untranslatable: listen_backlog = 100000 (pgmux takes 1 to 65535)") != std::string::npos);
    ok(toml);
  }
  SECTION("min_pool_size is capped at the pool size, as PgBouncer does") {
    const auto c = convert_load(
        "[databases]\nsmall = host=h pool_size=3\nbig = host=h min_pool_size=50\n"
        "[pgbouncer]\nauth_type = trust\ndefault_pool_size = 10\nmin_pool_size = 12\n");
    CHECK(c->min_pool_size == 10);
    CHECK(db(*c, "small").min_pool_size == 3);
    CHECK(db(*c, "big").min_pool_size == 10);
  }
  SECTION("queries and booleans") {
    const auto c = convert_load(with("server_reset_query =\nserver_reset_query_always = on\n"
                                     "server_check_query = SELECT 2\nserver_round_robin = 1\n"
                                     "application_name_add_host = 1\n"));
    CHECK(c->server_reset_query.empty());
    CHECK(c->server_reset_query_always);
    CHECK(c->server_round_robin);
    CHECK(c->application_name_add_host);
    CHECK(c->server_check_query == "SELECT 2");
    const auto toml = convert_ok(with("server_check_query = <empty>\n"));
    CHECK(toml.find("# untranslatable: server_check_query = <empty> (") != std::string::npos);
    CHECK(ok(toml)->server_check_query == "SELECT 1");
    CHECK(convert_err(with("server_reset_query_always = maybe\n")) ==
          "t.ini:6: [pgbouncer] server_reset_query_always: expected 0 or 1, got \"maybe\"");
  }
  SECTION("TCP keepalive (seconds; tcp_user_timeout in milliseconds)") {
    const auto c = convert_load(with("tcp_keepalive = 1\ntcp_keepidle = 60\ntcp_keepintvl = 5\ntcp_keepcnt = 3\n"
                                     "tcp_user_timeout = 2500\n"));
    CHECK(c->tcp_keepalive);
    CHECK(c->tcp_keepidle == std::chrono::seconds(60));
    CHECK(c->tcp_keepintvl == std::chrono::seconds(5));
    CHECK(c->tcp_keepcnt == 3);
    CHECK(c->tcp_user_timeout == std::chrono::milliseconds(2500));
    CHECK_FALSE(convert_load(with("tcp_keepalive = 0\n"))->tcp_keepalive);
    const auto toml = convert_ok(with("tcp_keepidle = 40000\ntcp_keepcnt = 200\ntcp_user_timeout = -1\n"));
    CHECK(toml.find("# untranslatable: tcp_keepidle = 40000 (") != std::string::npos);
    CHECK(toml.find("# untranslatable: tcp_keepcnt = 200 (") != std::string::npos);
    CHECK(toml.find("# untranslatable: tcp_user_timeout = -1 (") != std::string::npos);
    ok(toml);
  }
  SECTION("server_fast_close") {
    CHECK(convert_load(with("server_fast_close = 1\n"))->server_fast_close);
    CHECK_FALSE(convert_load(with("server_fast_close = 0\n"))->server_fast_close);
  }
  SECTION("scram_iterations") {
    CHECK(convert_load(with("scram_iterations = 10000\n"))->scram_iterations == 10000);
    CHECK(convert_ok(with("scram_iterations = 0\n")).find("# untranslatable: scram_iterations = 0 (") !=
          std::string::npos);
  }
  SECTION("tcp_defer_accept (a boolean to PgBouncer) and tcp_socket_buffer (bytes)") {
    auto c = convert_load(with("tcp_defer_accept = 0\ntcp_socket_buffer = 262144\n"));
    CHECK(c->tcp_defer_accept == std::chrono::seconds(0));
    CHECK(c->tcp_socket_buffer == 262144u);
    c = convert_load(with("tcp_defer_accept = 1\ntcp_socket_buffer = 0\n"));
    CHECK(c->tcp_defer_accept == std::chrono::seconds(45));
    CHECK(c->tcp_socket_buffer == 0u);
    CHECK(convert_ok(with("tcp_socket_buffer = 100\n")).find("# untranslatable: tcp_socket_buffer = 100 (") !=
          std::string::npos);
  }
  SECTION("pool_mode") {
    CHECK(convert_load(with("pool_mode = session\n"))->pool_mode == PoolMode::session);
    CHECK(convert_load(with("pool_mode = TRANSACTION\n"))->pool_mode == PoolMode::transaction);
    CHECK(convert_err(with("pool_mode = fast\n")) ==
          "t.ini:6: [pgbouncer] pool_mode: must be one of session, transaction, statement; got \"fast\"");
  }
}

TEST_CASE("convert: auth", "[convert]") {
  auto type_of = [](const std::string& t) {
    return convert_load("[databases]\napp = host=h\n[pgbouncer]\nauth_file = /u.txt\nauth_hba_file = /h.conf\n"
                        "auth_type = " + t + "\n")
        ->auth.type;
  };
  CHECK(type_of("trust") == AuthType::trust);
  CHECK(type_of("md5") == AuthType::md5);
  CHECK(type_of("scram-sha-256") == AuthType::scram_sha_256);
  CHECK(type_of("hba") == AuthType::hba);
  CHECK(type_of("plain") == AuthType::md5);
  CHECK(type_of("any") == AuthType::trust);
  CHECK(type_of("cert") == AuthType::scram_sha_256);
  CHECK(type_of("pam") == AuthType::scram_sha_256);

  const auto plain = convert_ok(with("auth_type = plain\n"));
  CHECK(plain.find("# untranslatable: auth_type = plain (") != std::string::npos);
  CHECK(convert_ok(with("auth_type = any\n")).find("# untranslatable: auth_type = any (") != std::string::npos);
  CHECK(convert_ok(with("auth_type = pam\n")).find("# untranslatable: auth_type = pam (pgmux has no pam") !=
        std::string::npos);
  CHECK_THAT(convert_err(with("auth_type = kerberos\n")),
             Catch::StartsWith("t.ini:6: [pgbouncer] auth_type: must be one of trust, md5, scram-sha-256"));

  SECTION("no way to know users") {
    CHECK(convert_ok("[databases]\napp = host=h\n").find("# note: neither auth_file nor auth_user is set") !=
          std::string::npos);
    CHECK(convert_ok(with("auth_type = hba\n")).find("# note: auth_type = hba without auth_hba_file") !=
          std::string::npos);
  }
  SECTION("hba is converted") {
    const auto toml = convert_ok(with("auth_type = hba\nauth_hba_file = /etc/pgbouncer/hba.conf\n"
                                      "auth_ident_file = /etc/pgbouncer/ident.conf\n"));
    CHECK_FALSE(has_line_starting(toml, "# refused:"));
    const auto c = ok(toml);
    CHECK(c->auth.type == AuthType::hba);
    CHECK(c->auth.hba_file == "/etc/pgbouncer/hba.conf");
    CHECK(c->auth.ident_file == "/etc/pgbouncer/ident.conf");
    CHECK(convert_ok(with("auth_ident_file = /etc/pgbouncer/ident.conf\n"))
              .find("# untranslatable: auth_ident_file = /etc/pgbouncer/ident.conf (only used with auth_type = hba)") !=
          std::string::npos);
  }
  SECTION("auth_user enables the auth query") {
    const auto toml = convert_ok(with("auth_user = pgbouncer_auth\nauth_query = SELECT * FROM lookup($1)\n"));
    CHECK(toml.find("# note: this auth_query ignores VALID UNTIL") != std::string::npos);
    const auto c = ok(toml);
    CHECK(c->auth.query_set);
    CHECK(c->auth.query == "SELECT * FROM lookup($1)");
    CHECK(c->auth.query_user == "pgbouncer_auth");
    // Only auth_user: pgmux's own default (it checks VALID UNTIL), not
    // PgBouncer 1.18's, which does not.
    const auto only_user = convert_ok(with("auth_user = a\n"));
    CHECK(only_user.find("# note: auth_query not set") != std::string::npos);
    CHECK(convert_load(with("auth_user = a\n"))->auth.query == Config{}.auth.query);
    CHECK(convert_ok(with("auth_user = a\nauth_query = SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL "
                          "ELSE rolpassword END FROM pg_authid WHERE rolname = $1\n"))
              .find("ignores VALID UNTIL") == std::string::npos);
  }
  SECTION("auth_query without auth_user is not used by PgBouncer") {
    const auto toml = convert_ok(with("auth_query = SELECT 1\n"));
    CHECK(toml.find("# unsupported: auth_query = SELECT 1 (PgBouncer uses auth_query only together with "
                    "auth_user") != std::string::npos);
    CHECK_FALSE(ok(toml)->auth.query_set);
  }
}

TEST_CASE("convert: auth_dbname and per-database auth_user, auth_query", "[convert][auth]") {
  SECTION("global auth_dbname names the entry the lookup runs in") {
    const auto c = convert_load("[databases]\napp = host=h\nauthdb = host=h dbname=pgb\n[pgbouncer]\n"
                                "auth_file = u.txt\nauth_user = au\nauth_dbname = authdb\n");
    CHECK(c->auth.query_database == "authdb");
    CHECK(*c->auth_lookup(db(*c, "app")).database == "authdb");
  }
  SECTION("an auth_dbname that is no entry is left out") {
    auto toml = convert_ok(with("auth_user = au\nauth_dbname = nowhere\n"));
    CHECK(toml.find("# untranslatable: auth_dbname = nowhere (no [databases] entry nowhere") != std::string::npos);
    CHECK(ok(toml)->auth.query_database.empty());
    toml = convert_ok("[databases]\n* = host=h\n[pgbouncer]\nauth_type = trust\nauth_user = au\n"
                      "auth_dbname = *\n");
    CHECK(toml.find("# untranslatable: auth_dbname = * (pgmux needs a database entry of its own") !=
          std::string::npos);
  }
  SECTION("per-database auth_user runs the global auth_query for that entry only") {
    const auto toml = convert_ok("[databases]\napp = host=h auth_user=au auth_dbname=authdb\nauthdb = host=h\n"
                                 "other = host=h\n[pgbouncer]\nauth_type = md5\n"
                                 "auth_query = SELECT usename, passwd FROM lookup($1)\n");
    CHECK(toml.find("# unsupported: auth_query") == std::string::npos);
    CHECK(toml.find("# note: neither auth_file nor auth_user is set") == std::string::npos);
    CHECK(toml.find("# note: this auth_query ignores VALID UNTIL") != std::string::npos);
    const auto c = ok(toml);
    CHECK_FALSE(c->auth.query_set);
    const auto app = c->auth_lookup(db(*c, "app"));
    CHECK(app.enabled);
    CHECK(*app.user == "au");
    CHECK(*app.query == "SELECT usename, passwd FROM lookup($1)");
    CHECK(*app.database == "authdb");
    CHECK_FALSE(c->auth_lookup(db(*c, "other")).enabled);
  }
  SECTION("per-database auth_query with the global auth_user") {
    const auto c = convert_load("[databases]\napp = host=h auth_query='SELECT a, b FROM f($1)'\n"
                                "[pgbouncer]\nauth_file = u.txt\nauth_user = au\n");
    CHECK(*c->auth_lookup(db(*c, "app")).query == "SELECT a, b FROM f($1)");
    CHECK(*c->auth_lookup(db(*c, "app")).user == "au");
  }
  SECTION("an empty auth_query is pgmux's default") {
    const auto c = convert_load("[databases]\napp = host=h auth_user=au\n[pgbouncer]\n"
                                "auth_file = u.txt\nauth_query =\n");
    CHECK(c->auth_lookup(db(*c, "app")).enabled);
    CHECK(*c->auth_lookup(db(*c, "app")).query == Config{}.auth.query);
    CHECK(convert_load(with("auth_user = au\nauth_query =\n"))->auth.query == Config{}.auth.query);
  }
  SECTION("per-database auth_query without any auth_user is not used by PgBouncer") {
    const auto toml = convert_ok("[databases]\napp = host=h auth_query='SELECT 1'\n[pgbouncer]\nauth_type = trust\n");
    CHECK(toml.find("# unsupported: auth_query = SELECT 1 (PgBouncer uses auth_query only together with "
                    "auth_user") != std::string::npos);
    const auto c = ok(toml);
    CHECK_FALSE(c->auth_lookup(db(*c, "app")).enabled);
  }
}

TEST_CASE("convert: TLS", "[convert]") {
  SECTION("client side") {
    const auto toml = convert_ok(with("client_tls_sslmode = require\nclient_tls_key_file = /k.pem\n"
                                      "client_tls_cert_file = /c.pem\nclient_tls_ca_file = /ca.pem\n"
                                      "client_tls_protocols = tlsv1.2,tlsv1.3\nclient_tls_ciphers = HIGH:!aNULL\n"
                                      "client_tls_dheparams = auto\nclient_tls13_ciphers = TLS_AES_256_GCM_SHA384\n"
                                      "client_tls_ecdhcurve = secp384r1\n"));
    CHECK_FALSE(has_line_starting(toml, "# refused:"));
    CHECK(toml.find("# unsupported: client_tls_dheparams = auto (") != std::string::npos);
    CHECK(ok(toml)->tls.tls13_ciphers == "TLS_AES_256_GCM_SHA384");
    CHECK(ok(toml)->tls.groups == "secp384r1");
    // auto: OpenSSL's groups, as pgmux's default; none has no equivalent.
    CHECK(convert_load(with("client_tls_ecdhcurve = auto\n"))->tls.groups.empty());
    const auto none = convert_ok(with("client_tls_ecdhcurve = none\n"));
    CHECK(none.find("# untranslatable: client_tls_ecdhcurve = none (") != std::string::npos);
    CHECK(ok(none)->tls.groups.empty());
    const auto c = ok(toml);
    CHECK(c->tls.mode == TlsMode::require);
    CHECK(c->tls.key == "/k.pem");
    CHECK(c->tls.cert == "/c.pem");
    CHECK(c->tls.ca == "/ca.pem");
    CHECK(c->tls.protocols == "tlsv1.2,tlsv1.3");
    CHECK(c->tls.ciphers == "HIGH:!aNULL");
  }
  SECTION("server side") {
    const auto toml = convert_ok(with("server_tls_sslmode = verify-full\nserver_tls_ca_file = /ca.pem\n"
                                      "server_tls_key_file = /k.pem\nserver_tls_cert_file = /c.pem\n"
                                      "server_tls_ciphers = fast\nserver_tls13_ciphers = TLS_CHACHA20_POLY1305_SHA256\n"));
    CHECK(ok(toml)->server_tls.tls13_ciphers == "TLS_CHACHA20_POLY1305_SHA256");
    CHECK_FALSE(has_line_starting(toml, "# refused:"));
    const auto c = ok(toml);
    CHECK(c->server_tls.mode == TlsMode::verify_full);
    CHECK(c->server_tls.ca == "/ca.pem");
    CHECK(c->server_tls.key == "/k.pem");
    CHECK(c->server_tls.cert == "/c.pem");
    CHECK(c->server_tls.ciphers.empty());  // "fast" = OpenSSL's defaults
    CHECK(convert_load(with("server_tls_sslmode = allow\n"))->server_tls.mode == TlsMode::allow);
    CHECK_FALSE(has_line_starting(convert_ok(with("server_tls_sslmode = prefer\n")), "# refused:"));
  }
  SECTION("protocol words pgmux does not know") {
    const auto toml = convert_ok(with("client_tls_protocols = !tlsv1.0\nclient_tls_ciphers = all\n"));
    CHECK(toml.find("# untranslatable: client_tls_protocols = !tlsv1.0 (") != std::string::npos);
    CHECK(ok(toml)->tls.ciphers == "ALL:!aNULL:!eNULL");
  }
  CHECK(convert_err(with("client_tls_sslmode = on\n")) ==
        "t.ini:6: [pgbouncer] client_tls_sslmode: must be one of disable, allow, prefer, require, verify-ca, "
        "verify-full; got \"on\"");
}

TEST_CASE("convert: logging and admin users", "[convert]") {
  auto level = [](const std::string& v) { return convert_load(with("verbose = " + v + "\n"))->log.level; };
  CHECK(level("0") == "info");
  CHECK(level("1") == "debug");
  CHECK(level("2") == "trace");
  const auto c = convert_load(with("logfile = /var/log/pgmux.log\nlog_connections = 0\nlog_disconnections = 0\n"
                                   "admin_users = root\nstats_users =\n"));
  CHECK(c->log.file == "/var/log/pgmux.log");
  CHECK_FALSE(c->log.connections);
  CHECK_FALSE(c->log.disconnections);
  CHECK(c->admin.users == std::vector<std::string>{"root"});
  CHECK(c->admin.stats_users.empty());
  CHECK(convert_ok(with("syslog = 1\n")).find("# unsupported: syslog = 1 (") != std::string::npos);
  // The stats log line.
  CHECK(c->log.stats_period == std::chrono::seconds(60));
  CHECK(convert_load(with("stats_period = 15\n"))->log.stats_period == std::chrono::seconds(15));
  CHECK(convert_load(with("log_stats = 0\nstats_period = 15\n"))->log.stats_period.count() == 0);
  CHECK(convert_load(with("log_stats = 1\nstats_period = 30\n"))->log.stats_period == std::chrono::seconds(30));
  const auto toml = convert_ok(with("stats_period = 0\n"));
  CHECK(toml.find("# untranslatable: stats_period = 0 (") != std::string::npos);
  CHECK(ok(toml)->log.stats_period == std::chrono::seconds(60));
}

TEST_CASE("convert: database connection strings", "[convert]") {
  SECTION("every parameter") {
    const auto c = convert_load(
        "[databases]\nfull = host=db.internal port=5555 dbname=real user=u password=p pool_size=7 "
        "min_pool_size=1 reserve_pool_size=2 max_db_connections=9 pool_mode=statement "
        "connect_query='SELECT 1'\n[pgbouncer]\nauth_type = trust\n");
    const auto& d = db(*c, "full");
    CHECK(d.host == "db.internal");
    CHECK(d.port == 5555);
    CHECK(d.dbname == "real");
    CHECK(d.user == "u");
    CHECK(d.password == "p");
    CHECK(d.pool_size == 7);
    CHECK(d.min_pool_size == 1);
    CHECK(d.reserve_pool_size == 2);
    CHECK(d.max_db_connections == 9);
    CHECK(d.pool_mode == PoolMode::statement);
    CHECK(d.connect_query == "SELECT 1");
  }
  SECTION("no host: PgBouncer's unix socket directory") {
    auto c = convert_load("[databases]\nfoodb =\n[pgbouncer]\nauth_type = trust\n");
    CHECK(db(*c, "foodb").host == "/tmp");
    c = convert_load("[databases]\nfoodb = dbname=x\n[pgbouncer]\nauth_type = trust\nunix_socket_dir = /run/pg\n");
    CHECK(db(*c, "foodb").host == "/run/pg");
  }
  SECTION("what has no per-database equivalent") {
    const auto toml = convert_ok(
        "[databases]\nx = host=a,b load_balance_hosts=round-robin "
        "target_session_attrs=primary wat=1\n[pgbouncer]\nauth_type = trust\n");
    CHECK(toml.find("# untranslatable: host = a,b (") != std::string::npos);
    CHECK(toml.find("# unsupported: load_balance_hosts = round-robin (pgmux has no per-database "
                    "load_balance_hosts)") != std::string::npos);
    CHECK(toml.find("# untranslatable: target_session_attrs = primary (") != std::string::npos);
    CHECK(toml.find("# unsupported: wat = 1 (unknown PgBouncer connection parameter)") != std::string::npos);
    CHECK(db(*ok(toml), "x").host == "a");
  }
  SECTION("per-database server_lifetime and query_wait_timeout (seconds)") {
    const auto toml = convert_ok("[databases]\nx = host=a server_lifetime=600 query_wait_timeout=2.5\n"
                                 "y = host=a server_lifetime=0\n[pgbouncer]\nauth_type = trust\n");
    const auto c = ok(toml);
    CHECK(db(*c, "x").server_lifetime == std::optional<Duration>(std::chrono::minutes(10)));
    CHECK(db(*c, "x").query_wait_timeout == std::optional<Duration>(std::chrono::milliseconds(2500)));
    CHECK(toml.find("# note: server_lifetime = 0 on a database is PgBouncer's \"use the global value\"") !=
          std::string::npos);
    CHECK_FALSE(db(*c, "y").server_lifetime);
    CHECK_THAT(convert_err("[databases]\nx = host=a query_wait_timeout=soon\n[pgbouncer]\nauth_type = trust\n"),
               Catch::Contains("query_wait_timeout: expected a number of seconds"));
  }
  SECTION("startup parameters: the last one counts") {
    const auto c = convert_load("[databases]\nx = host=a timezone=UTC application_name=app timezone='Europe/Paris'\n"
                                "[pgbouncer]\nauth_type = trust\n");
    CHECK(db(*c, "x").parameters ==
          std::vector<std::pair<std::string, std::string>>{{"application_name", "app"}, {"timezone", "Europe/Paris"}});
  }
  SECTION("password without user is ignored by PgBouncer, and not echoed") {
    const auto toml = convert_ok("[databases]\nx = host=a password=hunter2\n[pgbouncer]\nauth_type = trust\n");
    CHECK(toml.find("hunter2") == std::string::npos);
    CHECK(toml.find("# unsupported: password = (not shown) (PgBouncer uses it only together with user=") !=
          std::string::npos);
    CHECK_FALSE(db(*ok(toml), "x").password);
  }
  SECTION("target_session_attrs is converted") {
    const auto toml = convert_ok("[databases]\nx = host=a user=u target_session_attrs=read-only\n"
                                 "[pgbouncer]\nauth_type = trust\n");
    CHECK(toml.find("# refused: this pgmux version does not implement target_session_attrs") ==
          std::string::npos);
    CHECK(db(*ok(toml), "x").target_session_attrs == TargetSessionAttrs::read_only);
  }
  SECTION("target_session_attrs without a forced user needs a health-check login") {
    const auto toml = convert_ok("[databases]\nx = host=a target_session_attrs=read-write\n"
                                 "[pgbouncer]\nauth_type = trust\n");
    CHECK(toml.find("# untranslatable: target_session_attrs = read-write (pgmux checks each server's role") !=
          std::string::npos);
    CHECK(has_line(toml, "# target_session_attrs = \"read-write\""));
    CHECK_FALSE(db(*ok(toml), "x").target_session_attrs);
  }
  SECTION("the last definition counts") {
    const auto toml = convert_ok("[databases]\nx = host=a\ny = host=c\nx = host=b\n[pgbouncer]\nauth_type = trust\n"
                                 "pool_mode = session\npool_mode = statement\n");
    CHECK(toml.find("# note: defined on lines 2, 4; the last one counts") != std::string::npos);
    CHECK(toml.find("# note: pool_mode is set on lines 7, 8; the last one counts") != std::string::npos);
    const auto c = ok(toml);
    CHECK(db(*c, "x").host == "b");
    CHECK(c->pool_mode == PoolMode::statement);
  }
  SECTION("reserved names") {
    const auto toml = convert_ok("[databases]\npgmux = host=a\nother = host=b\n[pgbouncer]\nauth_type = trust\n");
    CHECK(toml.find("# untranslatable: [databases] pgmux (the name \"pgmux\" is pgmux's admin console") !=
          std::string::npos);
    CHECK(ok(toml)->databases.size() == 1);
    CHECK(convert_err("[databases]\npgbouncer = host=a\n") ==
          "t.ini:2: [databases] pgbouncer: the name \"pgbouncer\" is reserved for the admin console");
  }
}

TEST_CASE("convert: [users], [peers] and unknown settings", "[convert]") {
  const auto toml = convert_ok(with(
      "unknown_thing = 5\n[users]\nbob = pool_mode=transaction max_user_connections=2 query_wait_timeout=4\n"
      "[peers]\n1 = host=/tmp/pgbouncer1\n"));
  CHECK(toml.find("# unsupported: unknown_thing = 5 (unknown PgBouncer setting; pgmux has no equivalent)") !=
        std::string::npos);
  CHECK(toml.find("# unsupported: query_wait_timeout = 4 (pgmux has no per-user query_wait_timeout)") !=
        std::string::npos);
  CHECK(toml.find("# unsupported: [peers] 1 = host=/tmp/pgbouncer1 (pgmux has no peering)") != std::string::npos);
  const auto c = ok(toml);
  REQUIRE(c->find_user("bob"));
  CHECK(c->find_user("bob")->pool_mode == PoolMode::transaction);
  CHECK(c->find_user("bob")->max_user_connections == 2);
  CHECK_THAT(convert_err("[users]\nbob = pool_mode=weird\n"),
             Catch::StartsWith("t.ini:2: [users] bob: pool_mode: must be one of"));
}

TEST_CASE("convert: malformed files name file:line", "[convert]") {
  CHECK(convert_err("pool_mode = session\n") ==
        "t.ini:1: setting \"pool_mode\" is outside of any section (PgBouncer settings go under [pgbouncer])");
  CHECK(convert_err("; c\n[pgbouncer\n") == "t.ini:2: missing ']' in the section header \"[pgbouncer\"");
  CHECK(convert_err("[pgbouncer]\n[server]\n") ==
        "t.ini:2: unknown section [server] (PgBouncer knows [pgbouncer], [databases], [users] and [peers])");
  CHECK(convert_err("[pgbouncer] x\n") == "t.ini:1: unexpected text after [pgbouncer]: \"x\"");
  CHECK(convert_err("[pgbouncer]\n\njust words\n") ==
        "t.ini:3: expected '=' after \"just\" (names with characters other than letters, digits and _.-* must be "
        "quoted, e.g. \"my db\" = ...)");
  CHECK(convert_err("[pgbouncer]\n= 5\n") == "t.ini:2: missing name before '='");
  CHECK(convert_err("[pgbouncer]\n!x = 5\n") == "t.ini:2: expected a setting \"name = value\", got \"!x = 5\"");
  CHECK(convert_err("[databases]\n'open = host=a\n") == "t.ini:2: missing closing ' after the quoted name");
  CHECK(convert_err("[databases]\napp = host=a port\n") ==
        "t.ini:2: [databases] app: expected key=value, got \"port\"");
  CHECK(convert_err("[databases]\napp = host='a\n") ==
        "t.ini:2: [databases] app: host: missing closing ' after the quoted value");
  CHECK(convert_err("[databases]\napp = host=''\n") ==
        "t.ini:2: [databases] app: host: empty value (quote it if it has spaces: key='a b')");
  CHECK(convert_err("[databases]\napp = port=abc\n") ==
        "t.ini:2: [databases] app: port: must be between 1 and 65535, got \"abc\"");
  CHECK(convert_err("[databases]\napp = pool_size=many\n") ==
        "t.ini:2: [databases] app: pool_size: expected an integer, got \"many\"");
  CHECK(convert_err("[databases]\napp = pool_mode=fast\n") ==
        "t.ini:2: [databases] app: pool_mode: must be one of session, transaction, statement; got \"fast\"");
  CHECK(convert_err("[pgbouncer]\nlogfile = caf\xe9\n") ==
        "t.ini:2: not valid UTF-8 (pgmux configuration files are UTF-8; convert the file first, e.g. with iconv)");
  CHECK(convert_err("[pgbouncer]\n%include\n") == "t.ini:2: %include needs a file name");

  const auto missing = convert_pgbouncer_ini_file("/nonexistent/pgbouncer.ini");
  CHECK_FALSE(missing.ok);
  CHECK(missing.error == "/nonexistent/pgbouncer.ini: cannot open: No such file or directory");
}

TEST_CASE("convert: odd but valid input", "[convert]") {
  SECTION("an empty file converts, with a note that pgmux needs a database") {
    CHECK(convert_ok("").find("# note: the ini defines no database") != std::string::npos);
    const auto toml = convert_ok("[pgbouncer]\nauth_type = trust\n");
    CHECK(toml.find("# note: the ini defines no database") != std::string::npos);
    CHECK_THAT(err(toml), Catch::Contains("no [databases] defined"));
  }
  SECTION("control characters and unicode survive the round trip") {
    const auto c = convert_load("[databases]\n\"d\xc3\xa9j\xc3\xa0\" = host=h user=u password='tab\there'\n"
                                "[pgbouncer]\nauth_type = trust\nserver_reset_query = \x01weird\x7f\n");
    CHECK(db(*c, "d\xc3\xa9j\xc3\xa0").password == "tab\there");
    CHECK(c->server_reset_query == "\x01weird\x7f");
    const auto e = convert_load("[databases]\nelephant = host=h user=u password=\xf0\x9f\x90\x98\n"
                                "[pgbouncer]\nauth_type = trust\n");
    CHECK(db(*e, "elephant").password == "\xf0\x9f\x90\x98");
    // Overlong forms and surrogates are not UTF-8.
    CHECK_THAT(convert_err("[databases]\nx = host=\xc0\xaf\n"), Catch::StartsWith("t.ini:2: not valid UTF-8"));
    CHECK_THAT(convert_err("[databases]\nx = host=\xed\xa0\x80\n"), Catch::StartsWith("t.ini:2: not valid UTF-8"));
    CHECK_THAT(convert_err("[databases]\nx = host=\xe2\x82\n"), Catch::StartsWith("t.ini:2: not valid UTF-8"));
  }
  SECTION("comments never break the TOML") {
    const auto toml = convert_ok(with("pkt_buf = \x01\"\\\n"));
    CHECK(toml.find("# unsupported: pkt_buf = ?\"\\ (") != std::string::npos);
    ok(toml);
  }
  SECTION("a file from disk, with relative paths") {
    const auto dir = std::filesystem::temp_directory_path() / ("pgmux-convert-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto ini = dir / "pgbouncer.ini";
    std::ofstream(ini) << "[databases]\napp = host=h\n[pgbouncer]\nauth_file = userlist.txt\nlogfile = log/pgb.log\n";
    const auto r = convert_pgbouncer_ini_file(ini.string());
    std::filesystem::remove_all(dir);
    REQUIRE(r.ok);
    CHECK(r.toml.rfind("# pgmux configuration converted from " + ini.string(), 0) == 0);
    const auto c = load_string(r.toml, "out.toml", "/srv/pgmux").config;
    REQUIRE(c);
    CHECK(c->auth.file == "/srv/pgmux/userlist.txt");
    CHECK(c->log.file == "/srv/pgmux/log/pgb.log");
  }
}
