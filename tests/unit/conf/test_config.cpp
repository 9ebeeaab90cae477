// Successful loads: the DESIGN.md example, every key, defaults, listen and
// replica addresses, lookups, overrides, relative paths, load_file.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "conf/config.hpp"
#include "conf_test_util.hpp"

using namespace pgmux::conf;
using namespace pgmux::conf::test;
using namespace std::chrono_literals;

namespace {

// DESIGN.md section 2, verbatim.
const char* const kDesignExample = R"toml(
[pgmux]
listen = ["127.0.0.1:6432"]          # "unix:/path/.s.PGSQL.6432" too
workers = 1                          # 0 = one per core
pool_mode = "transaction"            # session | transaction | statement
max_client_conn = 10000
default_pool_size = 20
min_pool_size = 0
reserve_pool_size = 0
reserve_pool_timeout = "5s"
max_db_connections = 0               # 0 = unlimited
max_user_connections = 0
max_prepared_statements = 200
server_reset_query = "DISCARD ALL"
server_connect_timeout = "15s"
server_idle_timeout = "10min"
server_lifetime = "1h"
query_timeout = "0s"                 # 0 = off
query_wait_timeout = "2min"
client_idle_timeout = "0s"
client_login_timeout = "60s"
idle_transaction_timeout = "0s"
shutdown_timeout = "30s"

[auth]
type = "scram-sha-256"               # trust | md5 | scram-sha-256 | hba
file = "userlist.txt"                # PgBouncer's format: "user" "secret"
# query = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"
# query_user = "pgmux_auth"
# hba_file = "pgmux_hba.conf"

[tls]                                # client side
mode = "disable"                     # disable | allow | prefer | require | verify-ca | verify-full
# cert = "server.crt"  key = "server.key"  ca = "root.crt"

[server_tls]                         # towards PostgreSQL
mode = "prefer"

[admin]
users = ["admin"]                    # may run commands on the admin console
stats_users = []                     # may run SHOW only
# metrics_listen = "127.0.0.1:9127"  # Prometheus text format on /metrics

[log]
level = "info"
connections = true
disconnections = true

[databases.app]                      # clients connect to database "app"
host = "127.0.0.1"                   # the primary
port = 5432
dbname = "app"                       # name on the server, default = key
# user / password                    # forced server credentials
# pool_mode / pool_size              # per-database overrides
# replicas = ["127.0.0.1:5433"]
# read_routing = "explicit"          # off | explicit | auto

[users.alice]                        # per-user overrides (pool_mode, max_user_connections)
)toml";

// Every key with a value different from its default.
const char* const kEverything = R"toml(
[pgmux]
listen = ["0.0.0.0:7000", "[::1]:7001", "*:7002", "unix:/run/pgmux/.s.PGSQL.7003"]
workers = 3
pool_mode = "session"
max_client_conn = 500
default_pool_size = 7
min_pool_size = 2
reserve_pool_size = 3
reserve_pool_timeout = "250ms"
max_db_connections = 40
max_user_connections = 41
max_db_client_connections = 400
max_user_client_connections = 410
max_prepared_statements = 0
server_reset_query = "RESET ALL"
server_reset_query_always = true
server_round_robin = true
application_name_add_host = true
server_pipelining = true
server_check_query = ""
server_check_delay = "7s"
server_connect_timeout = "3s"
cancel_wait_timeout = "0s"
transaction_timeout = "5min"
autodb_idle_timeout = "0s"
query_wait_notify = "0s"
server_login_retry = "2s"
server_idle_timeout = "1h"
server_lifetime = "2d"
query_timeout = "90s"
query_wait_timeout = "45sec"
client_idle_timeout = "30min"
client_login_timeout = "5s"
idle_transaction_timeout = "100ms"
shutdown_timeout = "1min"
max_packet_size = "16MB"
max_startup_params = 10
max_concurrent_logins = 50
auth_failure_delay = "1500ms"
tcp_keepalive = true
tcp_keepidle = "1min"
tcp_keepintvl = "5s"
tcp_keepcnt = 3
tcp_user_timeout = "2500ms"

[auth]
type = "md5"
file = "/etc/pgmux/userlist.txt"
query = "SELECT u, p FROM my_users WHERE u = $1"
query_user = "pgmux_auth"
hba_file = "/etc/pgmux/hba.conf"

[tls]
mode = "verify-full"
cert = "/tls/server.crt"
key = "/tls/server.key"
ca = "/tls/root.crt"
protocols = "tlsv1.3"
ciphers = "HIGH:!aNULL"
tls13_ciphers = "TLS_AES_256_GCM_SHA384"
groups = "X25519:P-256"

[server_tls]
mode = "verify-ca"
cert = "/tls/client.crt"
key = "/tls/client.key"
ca = "/tls/server-ca.crt"
protocols = "secure"
ciphers = "ECDHE+AESGCM"
tls13_ciphers = "TLS_CHACHA20_POLY1305_SHA256"
groups = "P-384"

[admin]
users = ["admin", "ops"]
stats_users = ["monitor"]
metrics_listen = "127.0.0.1:9127"

[log]
level = "debug"
file = "/var/log/pgmux.log"
connections = false
disconnections = false

[databases.app]
host = "db.internal"
port = 6543
dbname = "app_prod"
user = "app_owner"
password = "s3cret"
pool_mode = "statement"
pool_size = 11
min_pool_size = 4
reserve_pool_size = 5
max_db_connections = 60
max_db_client_connections = 300
server_pipelining = true
connect_query = "SET search_path = app"
replicas = ["10.0.0.2:5433", "[::1]:5434", "replica.internal", "/var/run/postgresql:5435"]
read_routing = "auto"
load_balance = "round-robin"
max_replica_lag = "10s"
replica_fallback = "error"
health_check_interval = "500ms"
read_your_writes = false
target_session_attrs = "read-write"

[databases."*"]
host = "/var/run/postgresql"
max_replica_lag = "16MB"

[users.alice]
pool_mode = "session"
max_user_connections = 5
max_user_client_connections = 50
pool_size = 3
reserve_pool_size = 1
query_timeout = "30s"
idle_transaction_timeout = "2min"
client_idle_timeout = 0
transaction_timeout = "1h"

[users.bob]
max_user_connections = 0
)toml";

}  // namespace

TEST_CASE("the DESIGN.md example loads with the documented values", "[conf][load]") {
  const auto c = ok(kDesignExample, "/etc/pgmux");
  CHECK(c->source == "t.toml");

  REQUIRE(c->listen.size() == 1);
  CHECK_FALSE(c->listen[0].is_unix);
  CHECK(c->listen[0].host == "127.0.0.1");
  CHECK(c->listen[0].port == 6432);
  CHECK(c->listen[0].text == "127.0.0.1:6432");
  CHECK(c->workers == 1);
  CHECK(c->pool_mode == PoolMode::transaction);
  CHECK(c->max_client_conn == 10000);
  CHECK(c->default_pool_size == 20);
  CHECK(c->min_pool_size == 0);
  CHECK(c->reserve_pool_size == 0);
  CHECK(c->reserve_pool_timeout == 5s);
  CHECK(c->max_db_connections == 0);
  CHECK(c->max_user_connections == 0);
  CHECK(c->max_db_client_connections == 0);
  CHECK(c->max_user_client_connections == 0);
  CHECK(c->max_prepared_statements == 200);
  CHECK(c->server_reset_query == "DISCARD ALL");
  CHECK(c->server_connect_timeout == 15s);
  CHECK(c->cancel_wait_timeout == 10s);
  CHECK(c->transaction_timeout == 0s);
  CHECK(c->autodb_idle_timeout == 1h);
  CHECK(c->query_wait_notify == 5s);
  CHECK(c->server_idle_timeout == 10min);
  CHECK(c->server_lifetime == 1h);
  CHECK(c->query_timeout == 0s);
  CHECK(c->query_wait_timeout == 2min);
  CHECK(c->client_idle_timeout == 0s);
  CHECK(c->client_login_timeout == 60s);
  CHECK(c->idle_transaction_timeout == 0s);
  CHECK(c->shutdown_timeout == 30s);

  CHECK(c->auth.type == AuthType::scram_sha_256);
  CHECK(c->auth.file == "/etc/pgmux/userlist.txt");
  CHECK_FALSE(c->auth.query_set);
  CHECK(c->auth.query_user.empty());
  CHECK(c->auth.hba_file.empty());

  CHECK(c->tls.mode == TlsMode::disable);
  CHECK(c->server_tls.mode == TlsMode::prefer);
  CHECK(c->admin.users == std::vector<std::string>{"admin"});
  CHECK(c->admin.stats_users.empty());
  CHECK(c->admin.metrics_listen.empty());
  CHECK(c->log.level == "info");
  CHECK(c->log.file.empty());
  CHECK(c->log.connections);
  CHECK(c->log.disconnections);

  REQUIRE(c->databases.size() == 1);
  const auto& app = c->databases.at("app");
  CHECK(app.name == "app");
  CHECK(app.host == "127.0.0.1");
  CHECK(app.port == 5432);
  CHECK(app.dbname == "app");
  CHECK_FALSE(app.user);
  CHECK_FALSE(app.password);
  CHECK_FALSE(app.pool_mode);
  CHECK_FALSE(app.pool_size);
  CHECK(app.replicas.empty());
  CHECK(app.read_routing == ReadRouting::off);

  REQUIRE(c->users.size() == 1);
  const auto& alice = c->users.at("alice");
  CHECK(alice.name == "alice");
  CHECK_FALSE(alice.pool_mode);
  CHECK_FALSE(alice.max_user_connections);
}

TEST_CASE("every key is read into its field", "[conf][load]") {
  const auto c = ok(kEverything, "/etc/pgmux");

  REQUIRE(c->listen.size() == 4);
  CHECK(c->listen[0].host == "0.0.0.0");
  CHECK(c->listen[0].port == 7000);
  CHECK(c->listen[1].host == "::1");
  CHECK(c->listen[1].port == 7001);
  CHECK(c->listen[1].text == "[::1]:7001");
  CHECK(c->listen[2].host == "*");
  CHECK(c->listen[2].port == 7002);
  CHECK(c->listen[3].is_unix);
  CHECK(c->listen[3].path == "/run/pgmux/.s.PGSQL.7003");
  CHECK(c->listen[3].port == 7003);
  CHECK(c->workers == 3);
  CHECK(c->pool_mode == PoolMode::session);
  CHECK(c->max_client_conn == 500);
  CHECK(c->default_pool_size == 7);
  CHECK(c->min_pool_size == 2);
  CHECK(c->reserve_pool_size == 3);
  CHECK(c->reserve_pool_timeout == 250ms);
  CHECK(c->max_db_connections == 40);
  CHECK(c->max_user_connections == 41);
  CHECK(c->max_db_client_connections == 400);
  CHECK(c->max_user_client_connections == 410);
  CHECK(c->effective_max_db_client_connections(nullptr) == 400);
  CHECK(c->effective_max_user_client_connections("nobody") == 410);
  CHECK(c->max_prepared_statements == 0);
  CHECK(c->server_reset_query == "RESET ALL");
  CHECK(c->server_reset_query_always);
  CHECK(c->server_round_robin);
  CHECK(c->application_name_add_host);
  CHECK(c->server_pipelining);
  CHECK(c->server_check_query.empty());
  CHECK(c->server_check_delay == 7s);
  CHECK(c->server_connect_timeout == 3s);
  CHECK(c->cancel_wait_timeout == 0s);
  CHECK(c->transaction_timeout == 5min);
  CHECK(c->autodb_idle_timeout == 0s);
  CHECK(c->query_wait_notify == 0s);
  CHECK(c->server_login_retry == 2s);
  CHECK(c->server_idle_timeout == 1h);
  CHECK(c->server_lifetime == 48h);
  CHECK(c->query_timeout == 90s);
  CHECK(c->query_wait_timeout == 45s);
  CHECK(c->client_idle_timeout == 30min);
  CHECK(c->client_login_timeout == 5s);
  CHECK(c->idle_transaction_timeout == 100ms);
  CHECK(c->shutdown_timeout == 1min);
  CHECK(c->max_packet_size == 16u * 1024u * 1024u);
  CHECK(c->max_startup_params == 10);
  CHECK(c->max_concurrent_logins == 50);
  CHECK(c->auth_failure_delay == 1500ms);
  CHECK(c->tcp_keepalive);
  CHECK(c->tcp_keepidle == 60s);
  CHECK(c->tcp_keepintvl == 5s);
  CHECK(c->tcp_keepcnt == 3);
  CHECK(c->tcp_user_timeout == 2500ms);

  CHECK(c->auth.type == AuthType::md5);
  CHECK(c->auth.file == "/etc/pgmux/userlist.txt");
  CHECK(c->auth.query_set);
  CHECK(c->auth.query == "SELECT u, p FROM my_users WHERE u = $1");
  CHECK(c->auth.query_user == "pgmux_auth");
  CHECK(c->auth.hba_file == "/etc/pgmux/hba.conf");

  CHECK(c->tls.mode == TlsMode::verify_full);
  CHECK(c->tls.cert == "/tls/server.crt");
  CHECK(c->tls.key == "/tls/server.key");
  CHECK(c->tls.ca == "/tls/root.crt");
  CHECK(c->tls.protocols == "tlsv1.3");
  CHECK(c->tls.ciphers == "HIGH:!aNULL");
  CHECK(c->tls.tls13_ciphers == "TLS_AES_256_GCM_SHA384");
  CHECK(c->tls.groups == "X25519:P-256");
  CHECK(c->server_tls.mode == TlsMode::verify_ca);
  CHECK(c->server_tls.cert == "/tls/client.crt");
  CHECK(c->server_tls.key == "/tls/client.key");
  CHECK(c->server_tls.ca == "/tls/server-ca.crt");
  CHECK(c->server_tls.protocols == "secure");
  CHECK(c->server_tls.ciphers == "ECDHE+AESGCM");
  CHECK(c->server_tls.tls13_ciphers == "TLS_CHACHA20_POLY1305_SHA256");
  CHECK(c->server_tls.groups == "P-384");

  CHECK(c->admin.users == std::vector<std::string>{"admin", "ops"});
  CHECK(c->admin.stats_users == std::vector<std::string>{"monitor"});
  CHECK(c->admin.metrics_listen == "127.0.0.1:9127");

  CHECK(c->log.level == "debug");
  CHECK(c->log.file == "/var/log/pgmux.log");
  CHECK_FALSE(c->log.connections);
  CHECK_FALSE(c->log.disconnections);

  REQUIRE(c->databases.size() == 2);
  const auto& app = c->databases.at("app");
  CHECK(app.name == "app");
  CHECK(app.host == "db.internal");
  CHECK(app.port == 6543);
  CHECK(app.dbname == "app_prod");
  CHECK(app.user == std::optional<std::string>("app_owner"));
  CHECK(app.password == std::optional<std::string>("s3cret"));
  CHECK(app.pool_mode == std::optional<PoolMode>(PoolMode::statement));
  CHECK(app.pool_size == std::optional<int>(11));
  CHECK(app.min_pool_size == std::optional<int>(4));
  CHECK(app.reserve_pool_size == std::optional<int>(5));
  CHECK(app.max_db_connections == std::optional<int>(60));
  CHECK(app.max_db_client_connections == std::optional<int>(300));
  CHECK(c->effective_max_db_client_connections(&app) == 300);
  CHECK(app.server_pipelining == std::optional<bool>(true));
  CHECK(app.connect_query == "SET search_path = app");
  REQUIRE(app.replicas.size() == 4);
  CHECK(app.replicas[0].host == "10.0.0.2");
  CHECK(app.replicas[0].port == 5433);
  CHECK(app.replicas[1].host == "::1");
  CHECK(app.replicas[1].port == 5434);
  CHECK(app.replicas[2].host == "replica.internal");
  CHECK(app.replicas[2].port == 5432);
  CHECK(app.replicas[3].host == "/var/run/postgresql");
  CHECK(app.replicas[3].port == 5435);
  CHECK(app.read_routing == ReadRouting::automatic);
  CHECK(app.load_balance == LoadBalance::round_robin);
  CHECK(app.max_replica_lag == std::optional<Duration>(10s));
  CHECK_FALSE(app.max_replica_lag_bytes);
  CHECK(app.replica_fallback == ReplicaFallback::error);
  CHECK(app.health_check_interval == 500ms);
  CHECK_FALSE(app.read_your_writes);
  CHECK(app.target_session_attrs == std::optional<TargetSessionAttrs>(TargetSessionAttrs::read_write));

  const auto& star = c->databases.at("*");
  CHECK(star.name == "*");
  CHECK(star.host == "/var/run/postgresql");
  CHECK(star.dbname.empty());
  CHECK_FALSE(star.max_replica_lag);
  CHECK(star.max_replica_lag_bytes == std::optional<uint64_t>(16u << 20));

  REQUIRE(c->users.size() == 2);
  CHECK(c->users.at("alice").pool_mode == std::optional<PoolMode>(PoolMode::session));
  CHECK(c->users.at("alice").max_user_connections == std::optional<int>(5));
  CHECK(c->users.at("alice").max_user_client_connections == std::optional<int>(50));
  CHECK(c->effective_max_user_client_connections("alice") == 50);
  CHECK_FALSE(c->users.at("bob").max_user_client_connections);
  const auto& alice = c->users.at("alice");
  CHECK(alice.pool_size == std::optional<int>(3));
  CHECK(alice.reserve_pool_size == std::optional<int>(1));
  CHECK(alice.query_timeout == std::optional<Duration>(30s));
  CHECK(alice.idle_transaction_timeout == std::optional<Duration>(2min));
  CHECK(alice.client_idle_timeout == std::optional<Duration>(0s));
  CHECK(alice.transaction_timeout == std::optional<Duration>(1h));
  CHECK(alice.has_timeouts());
  CHECK_FALSE(c->users.at("bob").has_timeouts());
  CHECK_FALSE(c->users.at("bob").pool_size);
  CHECK_FALSE(c->users.at("bob").pool_mode);
  CHECK(c->users.at("bob").max_user_connections == std::optional<int>(0));
}

TEST_CASE("absent keys keep their defaults", "[conf][defaults]") {
  const auto c = ok("[databases.app]\n[auth]\nfile = \"users.txt\"\n");
  const Config d;  // the struct's own defaults

  REQUIRE(c->listen.size() == 1);
  CHECK_FALSE(c->listen[0].is_unix);
  CHECK(c->listen[0].host == "127.0.0.1");
  CHECK(c->listen[0].port == 6432);
  CHECK(c->listen[0].text == "127.0.0.1:6432");
  CHECK(c->workers == 1);
  CHECK(c->pool_mode == PoolMode::transaction);
  CHECK(c->max_client_conn == 10000);
  CHECK(c->default_pool_size == 20);
  CHECK(c->min_pool_size == 0);
  CHECK(c->reserve_pool_size == 0);
  CHECK(c->reserve_pool_timeout == 5s);
  CHECK(c->max_db_connections == 0);
  CHECK(c->max_user_connections == 0);
  CHECK(c->max_prepared_statements == 200);
  CHECK(c->server_reset_query == "DISCARD ALL");
  CHECK_FALSE(c->server_reset_query_always);
  CHECK_FALSE(c->server_round_robin);
  CHECK_FALSE(c->application_name_add_host);
  CHECK_FALSE(c->server_pipelining);
  CHECK(c->server_check_query == "SELECT 1");
  CHECK(c->server_check_delay == 30s);
  CHECK(c->server_connect_timeout == 15s);
  CHECK(c->server_login_retry == 15s);
  CHECK(c->server_idle_timeout == 10min);
  CHECK(c->server_lifetime == 1h);
  CHECK(c->query_timeout == 0s);
  CHECK(c->query_wait_timeout == 2min);
  CHECK(c->client_idle_timeout == 0s);
  CHECK(c->client_login_timeout == 60s);
  CHECK(c->idle_transaction_timeout == 0s);
  CHECK(c->shutdown_timeout == 30s);
  CHECK(c->max_packet_size == 64u * 1024u * 1024u);
  CHECK(c->max_startup_params == 64);
  CHECK(c->max_concurrent_logins == 1000);
  CHECK(c->auth_failure_delay == 0s);
  CHECK(c->tcp_keepalive);  // as PgBouncer's tcp_keepalive = 1
  CHECK(c->tcp_keepidle == 0s);
  CHECK(c->tcp_keepintvl == 0s);
  CHECK(c->tcp_keepcnt == 0);
  CHECK(c->tcp_user_timeout == 0s);

  CHECK(c->auth.type == AuthType::scram_sha_256);
  CHECK(c->auth.file == "/etc/pgmux/users.txt");
  CHECK_FALSE(c->auth.query_set);
  CHECK(c->auth.query == d.auth.query);
  CHECK(c->auth.query_user.empty());
  CHECK(c->auth.hba_file.empty());

  CHECK(c->tls.mode == TlsMode::disable);
  CHECK(c->tls.cert.empty());
  CHECK(c->tls.key.empty());
  CHECK(c->tls.ca.empty());
  CHECK(c->tls.protocols == "tlsv1.2,tlsv1.3");
  CHECK(c->tls.ciphers.empty());
  CHECK(c->tls.tls13_ciphers.empty());
  CHECK(c->tls.groups.empty());
  CHECK(c->server_tls.mode == TlsMode::prefer);
  CHECK(c->server_tls.cert.empty());
  CHECK(c->server_tls.protocols == "tlsv1.2,tlsv1.3");

  CHECK(c->admin.users.empty());
  CHECK(c->admin.stats_users.empty());
  CHECK(c->admin.metrics_listen.empty());
  CHECK(c->log.level == "info");
  CHECK(c->log.file.empty());
  CHECK(c->log.connections);
  CHECK(c->log.disconnections);
  CHECK(c->users.empty());

  REQUIRE(c->databases.size() == 1);
  const auto& app = c->databases.at("app");
  CHECK(app.name == "app");
  CHECK(app.host == "127.0.0.1");
  CHECK(app.port == 5432);
  CHECK(app.dbname == "app");
  CHECK_FALSE(app.user);
  CHECK_FALSE(app.password);
  CHECK_FALSE(app.pool_mode);
  CHECK_FALSE(app.pool_size);
  CHECK_FALSE(app.min_pool_size);
  CHECK_FALSE(app.reserve_pool_size);
  CHECK_FALSE(app.max_db_connections);
  CHECK(app.connect_query.empty());
  CHECK(app.replicas.empty());
  CHECK(app.read_routing == ReadRouting::off);
  CHECK(app.load_balance == LoadBalance::least_outstanding);
  CHECK_FALSE(app.max_replica_lag);
  CHECK_FALSE(app.max_replica_lag_bytes);
  CHECK(app.replica_fallback == ReplicaFallback::primary);
  CHECK(app.health_check_interval == 1s);
  CHECK(app.read_your_writes);
  CHECK_FALSE(app.target_session_attrs);
}

TEST_CASE("workers = 0 means one per core, at least one", "[conf][load]") {
  const auto c = ok("[pgmux]\nworkers = 0\n" + kMin);
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  CHECK(c->workers == std::max(1, cores));
  CHECK(c->workers >= 1);
}

TEST_CASE("listen addresses", "[conf][listen]") {
  SECTION("IPv4") {
    const auto c = ok("[pgmux]\nlisten = [\"10.1.2.3:6000\"]\n" + kMin);
    REQUIRE(c->listen.size() == 1);
    CHECK_FALSE(c->listen[0].is_unix);
    CHECK(c->listen[0].host == "10.1.2.3");
    CHECK(c->listen[0].port == 6000);
    CHECK(c->listen[0].path.empty());
    CHECK(c->listen[0].text == "10.1.2.3:6000");
  }
  SECTION("IPv6 in brackets, the brackets are not part of the host") {
    const auto c = ok("[pgmux]\nlisten = [\"[::]:6432\", \"[fe80::1%lo]:6433\", \"[2001:db8::7]:1\"]\n" + kMin);
    REQUIRE(c->listen.size() == 3);
    CHECK(c->listen[0].host == "::");
    CHECK(c->listen[0].port == 6432);
    CHECK(c->listen[1].host == "fe80::1%lo");
    CHECK(c->listen[2].host == "2001:db8::7");
    CHECK(c->listen[2].port == 1);
  }
  SECTION("* means every address, IPv4 and IPv6") {
    const auto c = ok("[pgmux]\nlisten = [\"*:65535\"]\n" + kMin);
    REQUIRE(c->listen.size() == 1);
    CHECK(c->listen[0].host == "*");
    CHECK(c->listen[0].port == 65535);
  }
  SECTION("unix sockets; the port comes from the .s.PGSQL.NNNN name") {
    const auto c = ok("[pgmux]\nlisten = [\"unix:/tmp/.s.PGSQL.6432\", \"unix:/run/pgmux.sock\"]\n" + kMin);
    REQUIRE(c->listen.size() == 2);
    CHECK(c->listen[0].is_unix);
    CHECK(c->listen[0].path == "/tmp/.s.PGSQL.6432");
    CHECK(c->listen[0].port == 6432);
    CHECK(c->listen[0].host.empty());
    CHECK(c->listen[0].text == "unix:/tmp/.s.PGSQL.6432");
    CHECK(c->listen[1].is_unix);
    CHECK(c->listen[1].path == "/run/pgmux.sock");
    CHECK(c->listen[1].port == 0);
  }
  SECTION("a relative unix socket path is resolved against the config directory") {
    const auto c = ok("[pgmux]\nlisten = [\"unix:run/.s.PGSQL.6432\"]\n" + kMin, "/srv/pgmux");
    REQUIRE(c->listen.size() == 1);
    CHECK(c->listen[0].path == "/srv/pgmux/run/.s.PGSQL.6432");
    CHECK(c->listen[0].text == "unix:run/.s.PGSQL.6432");
  }
  SECTION("a single string is accepted as a one-element list") {
    const auto c = ok("[pgmux]\nlisten = \"127.0.0.1:7432\"\n" + kMin);
    REQUIRE(c->listen.size() == 1);
    CHECK(c->listen[0].port == 7432);
  }
  SECTION("several entries keep their order") {
    const auto c = ok("[pgmux]\nlisten = [\n  \"127.0.0.1:6432\",\n  \"[::1]:6432\",\n  \"unix:/tmp/.s.PGSQL.6432\",\n]\n" +
                      kMin);
    REQUIRE(c->listen.size() == 3);
    CHECK(c->listen[0].host == "127.0.0.1");
    CHECK(c->listen[1].host == "::1");
    CHECK(c->listen[2].is_unix);
  }
}

TEST_CASE("replica addresses", "[conf][replicas]") {
  const auto c = ok(kMin +
                    "replicas = [\"127.0.0.1:5433\", \"[::1]:5433\", \"[::1]\", \"standby\", \"standby2:6000\", "
                    "\"/tmp\", \"/tmp:5499\"]\nhealth_check_user = \"monitor\"\n");
  const auto& r = c->databases.at("app").replicas;
  REQUIRE(r.size() == 7);
  CHECK((r[0].host == "127.0.0.1" && r[0].port == 5433));
  CHECK((r[1].host == "::1" && r[1].port == 5433));
  CHECK((r[2].host == "::1" && r[2].port == 5432));
  CHECK((r[3].host == "standby" && r[3].port == 5432));
  CHECK((r[4].host == "standby2" && r[4].port == 6000));
  CHECK((r[5].host == "/tmp" && r[5].port == 5432));
  CHECK((r[6].host == "/tmp" && r[6].port == 5499));
}

TEST_CASE("routing needs replicas, a pooling mode that can route, and a health check login", "[conf][replicas]") {
  CHECK(err(kMin + "read_routing = \"explicit\"\n") ==
        "t.toml:5: [databases.app] read_routing: needs replicas (add replicas = [\"host:port\", ...])");
  CHECK(err(kMin + "replicas = [\"r:5433\"]\nuser = \"u\"\npool_mode = \"session\"\nread_routing = \"auto\"\n")
            .find("t.toml:8: [databases.app] read_routing: needs pool_mode \"transaction\" or \"statement\"") == 0);
  CHECK(err(kMin + "replicas = [\"r:5433\"]\n") ==
        "t.toml: [databases.app] health_check_user: required with replicas or target_session_attrs (the "
        "login pgmux uses to check each backend's health and role), unless user is set");
  const auto c = ok(kMin + "replicas = [\"r:5433\"]\nhealth_check_user = \"mon\"\nhealth_check_password = \"pw\"\n"
                    "health_check_timeout = \"750ms\"\n");
  const auto& db = c->databases.at("app");
  CHECK(*db.check_user() == "mon");
  CHECK(db.health_check_password == std::optional<std::string>("pw"));
  CHECK(db.health_check_timeout == 750ms);
  CHECK(db.routed());
  CHECK(*ok(kMin + "target_session_attrs = \"any\"\nuser = \"owner\"\n")->databases.at("app").check_user() == "owner");
}

TEST_CASE("max_replica_lag fills the field matching its unit", "[conf][replicas]") {
  auto lag = [](const std::string& v) { return ok(kMin + "max_replica_lag = " + v + "\n")->databases.at("app"); };
  SECTION("durations") {
    CHECK(lag("\"10s\"").max_replica_lag == std::optional<Duration>(10s));
    CHECK(lag("\"500ms\"").max_replica_lag == std::optional<Duration>(500ms));
    CHECK(lag("\"2min\"").max_replica_lag == std::optional<Duration>(2min));
    CHECK_FALSE(lag("\"10s\"").max_replica_lag_bytes);
  }
  SECTION("zero is a duration") {
    CHECK(lag("\"0\"").max_replica_lag == std::optional<Duration>(0s));
    CHECK(lag("0").max_replica_lag == std::optional<Duration>(0s));
  }
  SECTION("byte sizes") {
    CHECK(lag("\"16MB\"").max_replica_lag_bytes == std::optional<uint64_t>(16u << 20));
    CHECK(lag("\"512kB\"").max_replica_lag_bytes == std::optional<uint64_t>(512u << 10));
    CHECK(lag("\"100B\"").max_replica_lag_bytes == std::optional<uint64_t>(100));
    CHECK(lag("\"1GB\"").max_replica_lag_bytes == std::optional<uint64_t>(1u << 30));
    CHECK_FALSE(lag("\"16MB\"").max_replica_lag);
  }
  SECTION("absent: neither") {
    const auto db = ok(kMin)->databases.at("app");
    CHECK_FALSE(db.max_replica_lag);
    CHECK_FALSE(db.max_replica_lag_bytes);
  }
}

TEST_CASE("every enum spelling is accepted", "[conf][enum]") {
  for (const char* m : {"session", "transaction", "statement"}) {
    const auto c = ok(std::string("[pgmux]\npool_mode = \"") + m + "\"\n" + kMin);
    CHECK(to_string(c->pool_mode) == m);
  }
  for (const char* t : {"trust", "md5", "scram-sha-256", "hba"}) {
    const auto c =
        ok(std::string("[auth]\ntype = \"") + t + "\"\nfile = \"u.txt\"\nhba_file = \"h.conf\"\n[databases.app]\n");
    CHECK(to_string(c->auth.type) == t);
  }
  for (const char* m : {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}) {
    const auto c = ok(std::string("[tls]\nmode = \"") + m + "\"\ncert = \"c\"\nkey = \"k\"\nca = \"a\"\n" +
                      "[server_tls]\nmode = \"" + m + "\"\n" + kMin);
    CHECK(to_string(c->tls.mode) == m);
    CHECK(to_string(c->server_tls.mode) == m);
  }
  for (const char* r : {"off", "explicit", "auto"}) {
    const auto c = ok(kMin + "read_routing = \"" + r + "\"\nreplicas = [\"r:5433\"]\nuser = \"u\"\n");
    CHECK(to_string(c->databases.at("app").read_routing) == r);
  }
  for (const char* b : {"least-outstanding", "round-robin", "random"}) {
    const auto c = ok(kMin + "load_balance = \"" + b + "\"\n");
    CHECK(to_string(c->databases.at("app").load_balance) == b);
  }
  for (const char* f : {"primary", "error"}) {
    const auto c = ok(kMin + "replica_fallback = \"" + f + "\"\n");
    CHECK(to_string(c->databases.at("app").replica_fallback) == f);
  }
  for (const char* a : {"any", "read-write", "read-only", "prefer-standby"}) {
    const auto c = ok(kMin + "target_session_attrs = \"" + a + "\"\nhealth_check_user = \"m\"\n");
    REQUIRE(c->databases.at("app").target_session_attrs);
    CHECK(to_string(*c->databases.at("app").target_session_attrs) == a);
  }
  for (const char* l : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    const auto c = ok(std::string("[log]\nlevel = \"") + l + "\"\n" + kMin);
    CHECK(c->log.level == l);
  }
}

TEST_CASE("database names and dbname defaults", "[conf][databases]") {
  const auto c = ok(R"toml(
[auth]
type = "trust"
[databases.app]
[databases."*"]
[databases."my db"]
[databases.renamed]
dbname = "on_server"
[databases.same_as_client]
dbname = ""
[databases."with.dot"]
)toml");
  REQUIRE(c->databases.size() == 6);
  CHECK(c->databases.at("app").dbname == "app");
  CHECK(c->databases.at("*").dbname.empty());
  CHECK(c->databases.at("my db").dbname == "my db");
  CHECK(c->databases.at("my db").name == "my db");
  CHECK(c->databases.at("renamed").dbname == "on_server");
  CHECK(c->databases.at("same_as_client").dbname.empty());
  CHECK(c->databases.at("with.dot").name == "with.dot");
}

TEST_CASE("inline tables and dotted keys work like table headers", "[conf][databases]") {
  const auto c = ok(R"toml(
pgmux.default_pool_size = 9
auth = { type = "trust" }
[databases]
app = { host = "10.0.0.1", port = 5433 }
other.host = "10.0.0.2"
)toml");
  CHECK(c->default_pool_size == 9);
  CHECK(c->auth.type == AuthType::trust);
  CHECK(c->databases.at("app").host == "10.0.0.1");
  CHECK(c->databases.at("app").port == 5433);
  CHECK(c->databases.at("other").host == "10.0.0.2");
}

TEST_CASE("find_database: exact name, else \"*\", else nullptr", "[conf][lookup]") {
  SECTION("with a fallback entry") {
    const auto c = ok("[auth]\ntype = \"trust\"\n[databases.app]\nport = 1\n[databases.\"*\"]\nport = 2\n");
    REQUIRE(c->find_database("app") != nullptr);
    CHECK(c->find_database("app")->port == 1);
    CHECK(c->find_database("app")->name == "app");
    REQUIRE(c->find_database("other") != nullptr);
    CHECK(c->find_database("other")->port == 2);
    CHECK(c->find_database("other")->name == "*");
    REQUIRE(c->find_database("") != nullptr);
    CHECK(c->find_database("")->name == "*");
    CHECK(c->find_database("APP")->name == "*");  // names are case-sensitive, like PostgreSQL's
    CHECK(c->find_database("*")->name == "*");
  }
  SECTION("without a fallback entry") {
    const auto c = ok(kMin);
    REQUIRE(c->find_database("app") != nullptr);
    CHECK(c->find_database("app")->name == "app");
    CHECK(c->find_database("other") == nullptr);
    CHECK(c->find_database("App") == nullptr);
    CHECK(c->find_database("") == nullptr);
  }
  SECTION("find_user") {
    const auto c = ok(kMin + "[users.alice]\nmax_user_connections = 3\n");
    REQUIRE(c->find_user("alice") != nullptr);
    CHECK(c->find_user("alice")->max_user_connections == std::optional<int>(3));
    CHECK(c->find_user("bob") == nullptr);
    CHECK(c->find_user("Alice") == nullptr);
  }
}

TEST_CASE("effective pool mode and size: user > database > global", "[conf][overrides]") {
  const auto c = ok(R"toml(
[pgmux]
pool_mode = "transaction"
default_pool_size = 20
[auth]
type = "trust"
[databases.plain]
[databases.sess]
pool_mode = "session"
pool_size = 5
[users.stmt]
pool_mode = "statement"
[users.limited]
max_user_connections = 3
)toml");
  const auto& plain = c->databases.at("plain");
  const auto& sess = c->databases.at("sess");
  CHECK(c->effective_pool_mode(plain, "nobody") == PoolMode::transaction);
  CHECK(c->effective_pool_mode(sess, "nobody") == PoolMode::session);
  CHECK(c->effective_pool_mode(plain, "stmt") == PoolMode::statement);
  CHECK(c->effective_pool_mode(sess, "stmt") == PoolMode::statement);  // the user wins
  CHECK(c->effective_pool_mode(sess, "limited") == PoolMode::session);  // no pool_mode for that user
  CHECK(c->effective_pool_size(plain) == 20);
  CHECK(c->effective_pool_size(sess) == 5);
}

TEST_CASE("relative paths are resolved against the base directory", "[conf][paths]") {
  const std::string text = R"toml(
[auth]
file = "userlist.txt"
hba_file = "conf/../hba.conf"
[tls]
mode = "require"
cert = "tls/server.crt"
key = "./tls/server.key"
ca = "tls/ca.crt"
[server_tls]
cert = "client.crt"
key = "client.key"
ca = "/abs/root.crt"
[log]
file = "../log/pgmux.log"
[databases.app]
)toml";
  SECTION("absolute base directory") {
    const auto c = ok(text, "/etc/pgmux");
    CHECK(c->auth.file == "/etc/pgmux/userlist.txt");
    CHECK(c->auth.hba_file == "/etc/pgmux/hba.conf");
    CHECK(c->tls.cert == "/etc/pgmux/tls/server.crt");
    CHECK(c->tls.key == "/etc/pgmux/tls/server.key");
    CHECK(c->tls.ca == "/etc/pgmux/tls/ca.crt");
    CHECK(c->server_tls.cert == "/etc/pgmux/client.crt");
    CHECK(c->server_tls.key == "/etc/pgmux/client.key");
    CHECK(c->server_tls.ca == "/abs/root.crt");  // absolute paths stay as written
    CHECK(c->log.file == "/etc/log/pgmux.log");
  }
  SECTION("base directory with a trailing slash") {
    const auto c = ok(text, "/etc/pgmux/");
    CHECK(c->auth.file == "/etc/pgmux/userlist.txt");
  }
  SECTION("empty base directory = the current directory") {
    const auto c = ok(text, "");
    const auto cwd = std::filesystem::current_path();
    CHECK(c->auth.file == (cwd / "userlist.txt").lexically_normal().string());
    CHECK(std::filesystem::path(c->tls.cert).is_absolute());
  }
  SECTION("relative base directory is made absolute") {
    const auto c = ok(text, "sub");
    const auto cwd = std::filesystem::current_path();
    CHECK(c->auth.file == (cwd / "sub" / "userlist.txt").lexically_normal().string());
  }
  SECTION("auth query text and unset paths are left alone") {
    const auto c = ok("[auth]\nquery = \"SELECT 1\"\nquery_user = \"q\"\n[databases.app]\n", "/etc/pgmux");
    CHECK(c->auth.file.empty());
    CHECK(c->auth.hba_file.empty());
    CHECK(c->log.file.empty());
    CHECK(c->auth.query == "SELECT 1");
  }
}

TEST_CASE("auth.query replaces the userlist file", "[conf][auth]") {
  const auto c = ok("[auth]\ntype = \"scram-sha-256\"\nquery = \"SELECT usename, passwd FROM pg_shadow WHERE usename = $1\"\n"
                    "query_user = \"pgmux_auth\"\n[databases.app]\n");
  CHECK(c->auth.query_set);
  CHECK(c->auth.file.empty());
  CHECK(c->auth.query_user == "pgmux_auth");
}

TEST_CASE("auth lookups: per-database overrides over [auth]", "[conf][auth]") {
  const auto c = ok("[auth]\nfile = \"u\"\nquery = \"SELECT g($1)\"\nquery_user = \"qa\"\n"
                    "query_database = \"authdb\"\n"
                    "[databases.app]\n[databases.authdb]\n"
                    "[databases.own]\nauth_query = \"SELECT o($1)\"\nauth_query_user = \"qo\"\n"
                    "auth_query_database = \"\"\n");
  const auto app = c->auth_lookup(c->databases.at("app"));
  CHECK(app.enabled);
  CHECK(*app.query == "SELECT g($1)");
  CHECK(*app.user == "qa");
  CHECK(*app.database == "authdb");
  const auto own = c->auth_lookup(c->databases.at("own"));
  CHECK(own.enabled);
  CHECK(*own.query == "SELECT o($1)");
  CHECK(*own.user == "qo");
  CHECK(own.database->empty());  // the client's database
  CHECK(c->auth_lookup_runs_as("qa"));
  CHECK(c->auth_lookup_runs_as("qo"));
  CHECK_FALSE(c->auth_lookup_runs_as("app"));
  // Without [auth] query, only entries with an auth_query_user look up.
  const auto d = ok("[auth]\nfile = \"u\"\n[databases.app]\n[databases.b]\nauth_query_user = \"qb\"\n");
  CHECK_FALSE(d->auth_lookup(d->databases.at("app")).enabled);
  CHECK(d->auth_lookup(d->databases.at("b")).enabled);
  CHECK(*d->auth_lookup(d->databases.at("b")).query == Config{}.auth.query);
  CHECK_FALSE(d->auth_lookup_runs_as(""));
}

TEST_CASE("max_packet_size accepts a size string or a number of bytes", "[conf][bytes]") {
  CHECK(ok("[pgmux]\nmax_packet_size = \"64MB\"\n" + kMin)->max_packet_size == 64u << 20);
  CHECK(ok("[pgmux]\nmax_packet_size = \"512kB\"\n" + kMin)->max_packet_size == 512u << 10);
  CHECK(ok("[pgmux]\nmax_packet_size = 1048576\n" + kMin)->max_packet_size == 1u << 20);
  CHECK(ok("[pgmux]\nmax_packet_size = 1024\n" + kMin)->max_packet_size == 1024);
  CHECK(ok("[pgmux]\nmax_packet_size = \"1kB\"\n" + kMin)->max_packet_size == 1024);
  CHECK(ok("[pgmux]\nmax_packet_size = 2147483647\n" + kMin)->max_packet_size == 2147483647u);
  CHECK(ok("[pgmux]\nmax_packet_size = \"1GB\"\n" + kMin)->max_packet_size == 1u << 30);
}

TEST_CASE("durations: integer zero and every unit are accepted in the file", "[conf][duration]") {
  CHECK(ok("[pgmux]\nquery_timeout = 0\n" + kMin)->query_timeout == 0s);
  CHECK(ok("[pgmux]\nquery_timeout = \"0\"\n" + kMin)->query_timeout == 0s);
  CHECK(ok("[pgmux]\nquery_timeout = \"250ms\"\n" + kMin)->query_timeout == 250ms);
  CHECK(ok("[pgmux]\nquery_timeout = \"3s\"\n" + kMin)->query_timeout == 3s);
  CHECK(ok("[pgmux]\nquery_timeout = \"3sec\"\n" + kMin)->query_timeout == 3s);
  CHECK(ok("[pgmux]\nquery_timeout = \"3min\"\n" + kMin)->query_timeout == 3min);
  CHECK(ok("[pgmux]\nquery_timeout = \"3h\"\n" + kMin)->query_timeout == 3h);
  CHECK(ok("[pgmux]\nquery_timeout = \"3d\"\n" + kMin)->query_timeout == 72h);
  CHECK(ok("[pgmux]\nquery_timeout = '3s'\n" + kMin)->query_timeout == 3s);  // literal string
}

TEST_CASE("integer edge values", "[conf][load]") {
  CHECK(ok("[pgmux]\nmax_client_conn = 1\n" + kMin)->max_client_conn == 1);
  CHECK(ok("[pgmux]\nmax_client_conn = 2147483647\n" + kMin)->max_client_conn == 2147483647);
  CHECK(ok("[pgmux]\ndefault_pool_size = 1\n" + kMin)->default_pool_size == 1);
  CHECK(ok("[pgmux]\nmax_client_conn = 1_000\n" + kMin)->max_client_conn == 1000);
  CHECK(ok("[pgmux]\nmax_client_conn = 0x10\n" + kMin)->max_client_conn == 16);
  CHECK(ok("[pgmux]\nworkers = 64\n" + kMin)->workers == 64);
  CHECK(ok(kMin)->listen_backlog == 1024);
  CHECK(ok("[pgmux]\nlisten_backlog = 1\n" + kMin)->listen_backlog == 1);
  CHECK(ok("[pgmux]\nlisten_backlog = 65535\n" + kMin)->listen_backlog == 65535);
  CHECK(ok(kMin + "port = 1\n")->databases.at("app").port == 1);
  CHECK(ok(kMin + "port = 65535\n")->databases.at("app").port == 65535);
  CHECK(ok("[pgmux]\nmin_pool_size = 20\n" + kMin)->min_pool_size == 20);  // equal to default_pool_size
}

TEST_CASE("comments, blank lines, CRLF line ends and a BOM are fine", "[conf][load]") {
  const auto c = ok("\xEF\xBB\xBF# pgmux\r\n\r\n[pgmux]\r\nworkers = 2 # two\r\n[auth]\r\ntype = \"trust\"\r\n"
                    "[databases.app]\r\n");
  CHECK(c->workers == 2);
}

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pgmux-conf-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const auto p = path / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
};

}  // namespace

TEST_CASE("load_file reads the file and resolves paths against its directory", "[conf][file]") {
  TempDir dir;
  const auto file = dir.write("pgmux.toml", "[auth]\nfile = \"userlist.txt\"\n[databases.app]\n");
  const auto r = load_file(file);
  INFO(r.error);
  REQUIRE(r.config);
  CHECK(r.error.empty());
  CHECK(r.config->source == file);
  CHECK(r.config->auth.file == (dir.path / "userlist.txt").string());
}

TEST_CASE("load_file with a relative path", "[conf][file]") {
  TempDir dir;
  std::filesystem::create_directories(dir.path / "etc");
  dir.write("etc/pgmux.toml", "[auth]\nfile = \"userlist.txt\"\n[databases.app]\n");
  const auto old = std::filesystem::current_path();
  std::filesystem::current_path(dir.path);
  const auto r = load_file("etc/pgmux.toml");
  std::filesystem::current_path(old);
  INFO(r.error);
  REQUIRE(r.config);
  CHECK(r.config->source == "etc/pgmux.toml");
  CHECK(r.config->auth.file == (dir.path / "etc" / "userlist.txt").string());
}

TEST_CASE("load_file errors name the file", "[conf][file]") {
  TempDir dir;
  SECTION("missing file") {
    const auto missing = (dir.path / "nope.toml").string();
    const auto r = load_file(missing);
    CHECK_FALSE(r.config);
    CHECK(r.error == missing + ": cannot open: No such file or directory");
  }
  SECTION("a directory") {
    const auto r = load_file(dir.path.string());
    CHECK_FALSE(r.config);
    CHECK(r.error == dir.path.string() + ": cannot read: Is a directory");
  }
  SECTION("syntax errors carry the path and the line") {
    const auto file = dir.write("bad.toml", "[pgmux]\nworkers = \n");
    const auto r = load_file(file);
    CHECK_FALSE(r.config);
    CHECK(r.error.rfind(file + ":2: syntax error: ", 0) == 0);
  }
  SECTION("validation errors carry the path and the line") {
    const auto file = dir.write("bad.toml", "[pgmux]\n\nworkers = -1\n");
    const auto r = load_file(file);
    CHECK_FALSE(r.config);
    CHECK(r.error == file + ":3: [pgmux] workers: must be between 0 and 64, got -1");
  }
  SECTION("an empty file") {
    const auto file = dir.write("empty.toml", "");
    const auto r = load_file(file);
    CHECK_FALSE(r.config);
    CHECK(r.error == file + ": no [databases] defined (add one, e.g. [databases.app] with host and port)");
  }
}

TEST_CASE("enum values accept '_' for '-'", "[conf][load]") {
  const auto c = ok(kMin + "load_balance = \"least_outstanding\"\ntarget_session_attrs = \"prefer_standby\"\n"
                           "user = \"u\"\n");
  CHECK(c->databases.at("app").load_balance == LoadBalance::least_outstanding);
  CHECK(c->databases.at("app").target_session_attrs == TargetSessionAttrs::prefer_standby);
  CHECK(ok(kMin + "load_balance = \"round_robin\"\n")->databases.at("app").load_balance == LoadBalance::round_robin);
}
