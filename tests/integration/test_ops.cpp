// Operations (issue 6): reload (SIGHUP, RELOAD, console SET) under load,
// graceful and immediate shutdown, and the SO_REUSEPORT handover.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <future>
#include <iterator>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;

namespace {

std::string admin_rest() {
  return "\n[admin]\nusers = [\"admin\"]\nstats_users = [\"watcher\"]\n";
}

std::string admin_users() {
  return userlist_line("admin", "admin_pw") + userlist_line("watcher", "watch_pw");
}

// Database `app` (SCRAM, the fixture's users) and the console's users, with
// `pgmux` as the [pgmux] lines.
PgmuxConfig console_config(std::string pgmux) {
  PgmuxConfig cfg;
  cfg.pgmux = std::move(pgmux);
  cfg.rest = auth_section("scram-sha-256") + "\n" + database_section("app") + admin_rest();
  cfg.userlist = plaintext_userlist() + admin_users();
  return cfg;
}

// pgbench through pgmux into `db` (its "bench" entry) in the background.
std::future<ProcessResult> pgbench_async(const Pgmux& mux, const std::string& dbname,
                                         std::vector<std::string> args) {
  args.insert(args.begin(), "-n");
  return std::async(std::launch::async,
                    [port = mux.port(), dbname, args] { return pgbench_through(port, dbname, args); });
}

void expect_no_failures(const ProcessResult& r) {
  INFO("pgbench output:\n" << r.output);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("number of failed transactions: 0 ("));
  CHECK_FALSE(contains(r.output, "aborted"));
}

// The value of SHOW CONFIG's `key`.
// Each console command fails, its message containing the text paired with it.
void check_refused(PGconn* admin, const std::vector<std::pair<std::string, std::string>>& commands) {
  for (const auto& [sql, expect] : commands) {
    Result r(PQexec(admin, sql.c_str()));
    INFO(sql);
    CHECK(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
    CHECK_THAT(std::string(PQresultErrorMessage(r.get())), Contains(expect));
  }
}

std::string config_value(PGconn* admin, const std::string& key) {
  Rows rows = exec(admin, "SHOW CONFIG");
  for (const auto& r : rows)
    if (!r.empty() && r[0] == key) return r[1];
  return "<no such key>";
}

// Server connections of pool `db` (SHOW POOLS: sv_active + sv_idle + sv_used
// + sv_tested + sv_login).
int pool_servers(PGconn* admin, const std::string& db) {
  Result r(PQexec(admin, "SHOW POOLS"));
  int total = 0;
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    if (db != PQgetvalue(r.get(), i, PQfnumber(r.get(), "database"))) continue;
    for (const char* col : {"sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"})
      total += std::atoi(PQgetvalue(r.get(), i, PQfnumber(r.get(), col)));
  }
  return total;
}

// Transaction pooling of database app; SIGTERM may take up to 20 s.
PgmuxConfig shutdown_config() {
  PgmuxConfig cfg;
  cfg.pgmux = "pool_mode = \"transaction\"\nshutdown_timeout = \"20s\"\n";
  cfg.rest = auth_section("scram-sha-256") + "\n" + database_section("app");
  cfg.userlist = plaintext_userlist();
  return cfg;
}

}  // namespace

// ---------------------------------------------------------------------------
// Reload

TEST_CASE("ops: SIGHUP reload under pgbench load: sizes, databases, log level, userlist; no client dropped",
          "[ops][reload][pgbench]") {
  ScratchDatabase db("reload");
  db.pgbench_init();
  PgmuxConfig cfg;
  cfg.pgmux = "pool_mode = \"transaction\"\ndefault_pool_size = 4\nquery_wait_timeout = \"30s\"\n";
  cfg.rest = auth_section("scram-sha-256") + "\n" +
             database_section("bench", "dbname = \"" + db.name() + "\"\n") + "\n" +
             database_section("gone", "dbname = \"" + db.name() + "\"\n") + admin_rest() +
             "\n[log]\nlevel = \"info\"\n";
  cfg.userlist = userlist_line("scram_user", "scram_pw") + admin_users();
  Pgmux mux(cfg);
  Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  Conn on_gone = connect(mux.conninfo("gone", "scram_user", "scram_pw"));
  CHECK(scalar(on_gone.get(), "SELECT 1") == "1");
  // md5_user is not in the userlist yet.
  CHECK_THAT(connect_error(mux.conninfo("bench", "md5_user", "md5_pw")), Contains("password authentication failed"));

  auto bench = pgbench_async(mux, "bench", {"-M", "extended", "-c", "8", "-j", "2", "-T", "7"});
  std::this_thread::sleep_for(1500ms);
  REQUIRE(wait_until([&] { return pool_servers(admin.get(), "bench") >= 3; }, 5s));

  // Smaller pool, a new database, a removed one, a new user, quieter log.
  std::string text = mux.config_text();
  text = replace_all(text, "default_pool_size = 4", "default_pool_size = 2");
  text = replace_all(text, "query_wait_timeout = \"30s\"", "query_wait_timeout = \"20s\"");
  text = replace_all(text, "[databases.gone]", "[databases.added]");
  text = replace_all(text, "level = \"info\"", "level = \"warn\"");
  write_file(mux.config_path(), text);
  write_file(mux.dir() + "/userlist.txt",
             userlist_line("scram_user", "scram_pw") + userlist_line("md5_user", "md5_pw") + admin_users());
  const size_t logins_before = count_of(mux.log_text(), "login ok");
  mux.signal(SIGHUP);
  REQUIRE(wait_until([&] { return config_value(admin.get(), "default_pool_size") == "2"; }, 5s));
  CHECK(config_value(admin.get(), "query_wait_timeout") == "20s");
  CHECK(config_value(admin.get(), "log_level") == "warn");
  // The pool shrinks as its servers are released, while pgbench runs on.
  CHECK(wait_until([&] { return pool_servers(admin.get(), "bench") <= 2; }, 5s));
  {
    Conn added = connect(mux.conninfo("added", "md5_user", "md5_pw"));
    CHECK(scalar(added.get(), "SELECT current_user") == "md5_user");
  }
  // The removed database: its connected client goes on, new logins fail.
  CHECK(scalar(on_gone.get(), "SELECT 2") == "2");
  CHECK_THAT(connect_error(mux.conninfo("gone", "scram_user", "scram_pw")),
             Contains("password authentication failed"));
  CHECK(count_of(mux.log_text(), "login ok") == logins_before);  // info lines are off now

  // An invalid config is refused; the running one stays.
  write_file(mux.config_path(), replace_all(text, "default_pool_size = 2", "default_pool_size = 0"));
  mux.signal(SIGHUP);
  CHECK(wait_until([&] { return contains(mux.log_text(), "reload refused"); }, 5s));
  CHECK_THAT(mux.log_text(), Contains("default_pool_size: must be >= 1"));
  CHECK(config_value(admin.get(), "default_pool_size") == "2");
  Result refused(PQexec(admin.get(), "RELOAD"));
  CHECK(PQresultStatus(refused.get()) == PGRES_FATAL_ERROR);
  CHECK_THAT(std::string(PQresultErrorMessage(refused.get())), Contains("default_pool_size: must be >= 1"));
  CHECK(config_value(admin.get(), "default_pool_size") == "2");

  auto r = bench.get();
  expect_no_failures(r);
  CHECK(scalar(on_gone.get(), "SELECT 3") == "3");
  on_gone.reset();
  // The retired pool goes once its last client left.
  CHECK(wait_until([&] {
    for (const auto& row : exec(admin.get(), "SHOW POOLS"))
      if (!row.empty() && row[0] == "gone") return false;
    return true;
  }, 5s));
  admin.reset();
  CHECK(mux.alive());
  mux.finish();
}

TEST_CASE("ops: console SET and RELOAD", "[ops][reload][admin]") {
  Pgmux mux(console_config("pool_mode = \"transaction\"\ndefault_pool_size = 2\n"));
  Conn admin = connect(mux.conninfo("pgbouncer", "admin", "admin_pw"));
  Result ok(PQexec(admin.get(), "SET default_pool_size = 5"));
  CHECK(PQresultStatus(ok.get()) == PGRES_COMMAND_OK);
  CHECK(std::string(PQcmdStatus(ok.get())) == "SET");
  CHECK(config_value(admin.get(), "default_pool_size") == "5");
  exec(admin.get(), "SET query_timeout TO '2s'");
  CHECK(config_value(admin.get(), "query_timeout") == "2s");
  // The new query_timeout applies to running clients.
  {
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    auto out = exec_error(c.get(), "SELECT pg_sleep(5)");
    CHECK_THAT(out.message, Contains("query_timeout"));
  }
  check_refused(admin.get(), {{"SET default_pool_size = 0", "must be >= 1"},
                              {"SET listen = '127.0.0.1:1'", "takes a restart"},
                              {"SET no_such_thing = 1", "unknown key"},
                              {"SET default_pool_size", "invalid command"}});
  CHECK(config_value(admin.get(), "default_pool_size") == "5");
  {
    Conn watcher = connect(mux.conninfo("pgmux", "watcher", "watch_pw"));
    Result r(PQexec(watcher.get(), "SET default_pool_size = 9"));
    CHECK(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
    CHECK_THAT(std::string(PQresultErrorMessage(r.get())), Contains("admin access needed"));
  }
  // RELOAD re-reads the file: SET values are gone.
  exec(admin.get(), "RELOAD");
  CHECK(config_value(admin.get(), "default_pool_size") == "2");
  CHECK(config_value(admin.get(), "query_timeout") == "0s");

  // A database whose port changed gets new server connections there (the
  // fixture's replica); its connected client goes on.
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c.get(), "SELECT pg_is_in_recovery()") == "f");
  const std::string primary_port = "port = " + std::to_string(fixture().pg_port);
  const std::string text = mux.config_text();
  REQUIRE(contains(text, primary_port));
  write_file(mux.config_path(),
             replace_all(text, primary_port, "port = " + std::to_string(fixture().replica_port)));
  exec(admin.get(), "RELOAD");
  CHECK(wait_until([&] { return scalar(c.get(), "SELECT pg_is_in_recovery()") == "t"; }, 5s));
  // Removed, then added back: logins refused, then served again.
  write_file(mux.config_path(), replace_all(text, "[databases.app]", "[databases.other]"));
  exec(admin.get(), "RELOAD");
  CHECK_THAT(connect_error(mux.conninfo("app", "md5_user", "md5_pw")), Contains("password authentication failed"));
  CHECK(scalar(c.get(), "SELECT 1") == "1");
  write_file(mux.config_path(), text);
  exec(admin.get(), "RELOAD");
  {
    Conn back = connect(mux.conninfo("app", "md5_user", "md5_pw"));
    CHECK(scalar(back.get(), "SELECT pg_is_in_recovery()") == "f");
  }
  CHECK(wait_until([&] { return scalar(c.get(), "SELECT pg_is_in_recovery()") == "f"; }, 5s));
  c.reset();
  admin.reset();
  mux.finish();
}

// The backlog of a listening socket, as `ss` shows it (the Send-Q of a
// LISTEN socket): `flags` -ltn or -lx, `local` the socket's local address as
// ss prints it (127.0.0.1:6432 or the socket path). -1 when none matches.
long listen_backlog_of(const std::string& flags, const std::string& local) {
  auto r = run_process({"ss", "-H", flags});
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> w{std::istream_iterator<std::string>(words), {}};
    // [netid] LISTEN recv-q send-q local ...
    auto at = std::find(w.begin(), w.end(), "LISTEN");
    if (at == w.end() || w.end() - at < 4 || at[3] != local) continue;
    return std::stol(at[2]);
  }
  return -1;
}

TEST_CASE("ops: listen_backlog reaches every listener and takes a restart", "[ops][reload]") {
  Pgmux mux(console_config("listen_backlog = 37\n"));
  const std::string tcp = "127.0.0.1:" + std::to_string(mux.port());
  CHECK(listen_backlog_of("-ltn", tcp) == 37);
  CHECK(listen_backlog_of("-lx", mux.unix_socket_path()) == 37);
  Conn admin = connect(mux.conninfo("pgbouncer", "admin", "admin_pw"));
  CHECK(config_value(admin.get(), "listen_backlog") == "37");
  check_refused(admin.get(), {{"SET listen_backlog = 50", "takes a restart"}});
  // A reload leaves the sockets alone, says so, and SHOW CONFIG keeps
  // showing the value in force.
  write_file(mux.config_path(), replace_all(mux.config_text(), "listen_backlog = 37", "listen_backlog = 50"));
  exec(admin.get(), "RELOAD");
  CHECK_THAT(mux.log_text(), Contains("listen_backlog changed (37 -> 50): takes effect after a restart"));
  CHECK(config_value(admin.get(), "listen_backlog") == "37");
  CHECK(listen_backlog_of("-ltn", tcp) == 37);
  admin.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// Shutdown

TEST_CASE("ops: SIGTERM lets a running pg_sleep(2) finish, then pgmux exits", "[ops][shutdown]") {
  Pgmux mux(shutdown_config());
  Conn busy = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  Conn idle = connect(mux.conninfo("app", "md5_user", "md5_pw"));
  CHECK(scalar(idle.get(), "SELECT 1") == "1");
  auto t0 = Clock::now();
  auto sleeper = std::async(std::launch::async, [&] { return try_exec(busy.get(), "SELECT pg_sleep(2)"); });
  std::this_thread::sleep_for(300ms);
  mux.signal(SIGTERM);
  // No new clients...
  CHECK(wait_until([&] {
    Conn c = connect_raw(mux.conninfo("app", "scram_user", "scram_pw"));
    return PQstatus(c.get()) != CONNECTION_OK;
  }, 2s));
  // ...the idle one is closed, the running query completes...
  auto out = sleeper.get();
  INFO(out.message);
  CHECK(out.ok);
  CHECK(seconds_since(t0) >= 1.9);
  CHECK_FALSE(try_exec(idle.get(), "SELECT 1").ok);
  // ...and pgmux exits soon after, well before shutdown_timeout.
  CHECK(wait_until([&] { return !mux.alive(); }, 5s));
  CHECK(seconds_since(t0) < 8);
  int status = mux.stop();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  mux.expect_clean_log();
}

TEST_CASE("ops: SIGINT exits at once, even with a query running", "[ops][shutdown]") {
  Pgmux mux(shutdown_config());
  Conn busy = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  auto t0 = Clock::now();
  auto sleeper = std::async(std::launch::async, [&] { return try_exec(busy.get(), "SELECT pg_sleep(10)"); });
  std::this_thread::sleep_for(300ms);
  mux.signal(SIGINT);
  CHECK(wait_until([&] { return !mux.alive(); }, 3s));
  auto out = sleeper.get();
  CHECK_FALSE(out.ok);
  CHECK(seconds_since(t0) < 5);
  int status = mux.stop();
  CHECK(WIFEXITED(status));
  mux.expect_clean_log();
}

// ---------------------------------------------------------------------------
// Zero-downtime restart: a new pgmux binds the same port (so_reuseport) while
// the old one drains.

TEST_CASE("ops: SO_REUSEPORT handover under pgbench load with zero failed transactions",
          "[ops][shutdown][pgbench]") {
  ScratchDatabase db("handover");
  db.pgbench_init();
  PgmuxConfig cfg;
  cfg.pgmux = "pool_mode = \"transaction\"\ndefault_pool_size = 4\nso_reuseport = true\n"
              "shutdown_timeout = \"20s\"\n";
  cfg.rest = auth_section("scram-sha-256") + "\n" +
             database_section("bench", "dbname = \"" + db.name() + "\"\n") + admin_rest();
  cfg.userlist = userlist_line("scram_user", "scram_pw") + admin_users();
  cfg.port = free_port();
  auto old_mux = std::make_unique<Pgmux>(cfg);
  REQUIRE_THAT(old_mux->log_text(), Contains("(SO_REUSEPORT)"));

  // Without so_reuseport nobody else may bind the port.
  {
    PgmuxConfig plain = cfg;
    plain.pgmux = "pool_mode = \"transaction\"\n";
    const auto& bin = pgmux_bin();
    TempDir dir;
    write_file(dir.path() + "/userlist.txt", plain.userlist);
    std::string text = "[pgmux]\nlisten = [\"127.0.0.1:" + std::to_string(cfg.port) + "\"]\n" + plain.pgmux +
                       replace_all(replace_all(replace_all(plain.rest, "@USERLIST@", dir.path() + "/userlist.txt"),
                                               "@PG_HOST@", fixture().pg_host),
                                   "@PG_PORT@", std::to_string(fixture().pg_port));
    write_file(dir.path() + "/pgmux.toml", text);
    auto r = run_process({bin, "--config", dir.path() + "/pgmux.toml"}, {}, 10s);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("address already in use"));
    CHECK_THAT(r.output, Contains("so_reuseport = true"));
  }

  // -C: a new connection per transaction, as clients that reconnect would.
  auto bench = pgbench_async(*old_mux, "bench", {"-C", "-c", "4", "-j", "2", "-T", "8"});
  std::this_thread::sleep_for(2s);
  auto new_mux = std::make_unique<Pgmux>(cfg);  // same port
  std::this_thread::sleep_for(1s);
  old_mux->signal(SIGTERM);
  CHECK(wait_until([&] { return !old_mux->alive(); }, 10s));
  int status = old_mux->stop();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  old_mux->expect_clean_log();

  auto r = bench.get();
  expect_no_failures(r);
  // The new one served the rest.
  Conn admin = connect(new_mux->conninfo("pgmux", "admin", "admin_pw"));
  Rows totals = exec(admin.get(), "SHOW TOTALS");
  std::string xacts;
  for (const auto& row : totals)
    if (row.size() > 1 && row[0] == "total_xact_count") xacts = row[1];
  INFO("new pgmux SHOW TOTALS total_xact_count: " << xacts);
  CHECK(std::atol(xacts.c_str()) > 100);
  admin.reset();
  new_mux->finish();
}

// ---------------------------------------------------------------------------
// TCP keepalive (tcp_keepalive, tcp_keepidle, tcp_keepintvl, tcp_keepcnt,
// tcp_user_timeout): read back from pgmux's own sockets. The test is
// pgmux's parent, so pidfd_getfd may copy its descriptors.

namespace {

struct SockOpts {
  int keepalive = -1, idle = -1, interval = -1, count = -1, user_timeout = -1, sndbuf = -1, rcvbuf = -1;
};

int sysctl_int(const std::string& name) {
  return std::stoi(trim(read_file("/proc/sys/net/ipv4/" + name)));
}

// Calls `f` with a copy of each of pgmux's socket descriptors until it
// returns true.
template <class F>
void for_each_pgmux_socket(int pid, F f) {
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  REQUIRE(pidfd >= 0);
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(e.path(), ec);
    if (ec || !target.string().starts_with("socket:")) continue;
    const int theirs = std::stoi(e.path().filename().string());
    const int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, theirs, 0));
    if (fd < 0) {
      INFO("pidfd_getfd needs ptrace access to pgmux (root, or kernel.yama.ptrace_scope <= 1)");
      REQUIRE(errno != EPERM);
      continue;  // closed meanwhile
    }
    const bool done = f(fd);
    ::close(fd);
    if (done) break;
  }
  ::close(pidfd);
}

int int_option(int fd, int level, int name) {
  int out = -1;
  socklen_t l = sizeof out;
  REQUIRE(getsockopt(fd, level, name, &out, &l) == 0);
  return out;
}

// The options of pgmux's TCP socket whose peer port is `peer_port` (a
// client's local port, or PostgreSQL's port for a server connection).
std::optional<SockOpts> pgmux_socket(int pid, int peer_port) {
  std::optional<SockOpts> found;
  for_each_pgmux_socket(pid, [&](int fd) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 || peer.ss_family != AF_INET ||
        ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port) != peer_port)
      return false;
    SockOpts o;
    o.keepalive = int_option(fd, SOL_SOCKET, SO_KEEPALIVE);
    o.idle = int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    o.interval = int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    o.count = int_option(fd, IPPROTO_TCP, TCP_KEEPCNT);
    o.user_timeout = int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT);
    o.sndbuf = int_option(fd, SOL_SOCKET, SO_SNDBUF);
    o.rcvbuf = int_option(fd, SOL_SOCKET, SO_RCVBUF);
    found = o;
    return true;
  });
  return found;
}

// TCP_DEFER_ACCEPT of pgmux's listening socket on `port` (the kernel
// reports it rounded up to its SYN-ACK retransmission steps).
std::optional<int> pgmux_listener_defer(int pid, int port) {
  std::optional<int> found;
  for_each_pgmux_socket(pid, [&](int fd) {
    sockaddr_storage self{};
    socklen_t len = sizeof self;
    if (int_option(fd, SOL_SOCKET, SO_ACCEPTCONN) != 1 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) != 0 || self.ss_family != AF_INET ||
        ntohs(reinterpret_cast<sockaddr_in*>(&self)->sin_port) != port)
      return false;
    found = int_option(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT);
    return true;
  });
  return found;
}

// pgmux's socket towards this client, and one of its sockets towards
// PostgreSQL (session mode: the client's own server).
std::pair<SockOpts, SockOpts> keepalive_of(Pgmux& mux, PGconn* c) {
  CHECK(scalar(c, "SELECT 1") == "1");
  auto client_side = pgmux_socket(mux.pid(), local_port(c));
  auto server_side = pgmux_socket(mux.pid(), fixture().pg_port);
  REQUIRE(client_side);
  REQUIRE(server_side);
  return {*client_side, *server_side};
}

}  // namespace

TEST_CASE("ops: TCP keepalive on client and server connections", "[ops][keepalive]") {
  SECTION("on by default, with the system's timings") {
    Pgmux mux(session_config("scram-sha-256", plaintext_userlist()));
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    const auto [client_side, server_side] = keepalive_of(mux, c.get());
    for (const SockOpts& o : {client_side, server_side}) {
      CHECK(o.keepalive == 1);
      CHECK(o.idle == sysctl_int("tcp_keepalive_time"));
      CHECK(o.interval == sysctl_int("tcp_keepalive_intvl"));
      CHECK(o.count == sysctl_int("tcp_keepalive_probes"));
      CHECK(o.user_timeout == 0);
    }
    c.reset();
    mux.finish();
  }
  SECTION("timings from the config, changed by console SET for new connections") {
    PgmuxConfig cfg = session_config("scram-sha-256", plaintext_userlist() + admin_users(),
                                     "tcp_keepidle = \"7s\"\ntcp_keepintvl = \"3s\"\ntcp_keepcnt = 4\n"
                                     "tcp_user_timeout = \"9500ms\"\n",
                                     admin_rest());
    Pgmux mux(cfg);
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    const auto [client_side, server_side] = keepalive_of(mux, c.get());
    for (const SockOpts& o : {client_side, server_side}) {
      CHECK(o.keepalive == 1);
      CHECK(o.idle == 7);
      CHECK(o.interval == 3);
      CHECK(o.count == 4);
      CHECK(o.user_timeout == 9500);
    }
    Conn admin = connect(mux.conninfo("pgbouncer", "admin", "admin_pw"));
    CHECK(config_value(admin.get(), "tcp_keepidle") == "7s");
    CHECK(config_value(admin.get(), "tcp_user_timeout") == "9500ms");
    exec(admin.get(), "SET tcp_keepidle = '11s'");
    check_refused(admin.get(), {{"SET tcp_keepidle = '1500ms'", "whole seconds"},
                                {"SET tcp_keepcnt = 128", "must be between 0 and 127"}});
    Conn d = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    auto newer = pgmux_socket(mux.pid(), local_port(d.get()));
    REQUIRE(newer);
    CHECK(newer->idle == 11);
    CHECK(newer->interval == 3);
    // The first client's socket keeps what it was given.
    auto older = pgmux_socket(mux.pid(), local_port(c.get()));
    REQUIRE(older);
    CHECK(older->idle == 7);
    c.reset();
    d.reset();
    admin.reset();
    mux.finish();
  }
  SECTION("off") {
    Pgmux mux(session_config("scram-sha-256", plaintext_userlist(),
                             "tcp_keepalive = false\ntcp_user_timeout = \"4s\"\n"));
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    const auto [client_side, server_side] = keepalive_of(mux, c.get());
    for (const SockOpts& o : {client_side, server_side}) {
      CHECK(o.keepalive == 0);
      CHECK(o.user_timeout == 4000);
    }
    c.reset();
    mux.finish();
  }
}

// tcp_defer_accept (on by default, as PgBouncer) and tcp_socket_buffer.
TEST_CASE("ops: tcp_defer_accept hands a connection over when it speaks; tcp_socket_buffer", "[ops][keepalive]") {
  auto silent_client_seen = [](Pgmux& mux) {
    RawSocket raw = RawSocket::connect_tcp(mux.port());
    REQUIRE(raw.valid());
    sockaddr_in self{};
    socklen_t len = sizeof self;
    REQUIRE(getsockname(raw.fd(), reinterpret_cast<sockaddr*>(&self), &len) == 0);
    const int port = ntohs(self.sin_port);
    std::this_thread::sleep_for(500ms);
    const bool seen = pgmux_socket(mux.pid(), port).has_value();
    // Once it speaks it is served either way.
    REQUIRE(raw.send(startup_packet({{"user", "scram_user"}, {"database", "app"}})));
    auto m = raw.read_message(5s);
    REQUIRE(m);
    CHECK(m->type == 'R');
    return seen;
  };
  SECTION("default: deferred; the system's buffers") {
    Pgmux mux(session_config("scram-sha-256", plaintext_userlist()));
    const auto defer = pgmux_listener_defer(mux.pid(), mux.port());
    REQUIRE(defer);
    CHECK(*defer >= 45);
    CHECK_FALSE(silent_client_seen(mux));
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(c.get(), "SELECT 1") == "1");
    const auto opts = pgmux_socket(mux.pid(), local_port(c.get()));
    REQUIRE(opts);
    CHECK(opts->rcvbuf != 2 * 49152);
    c.reset();
    mux.finish();
  }
  SECTION("off, and 48kB buffers on both sides") {
    Pgmux mux(session_config("scram-sha-256", plaintext_userlist(),
                             "tcp_defer_accept = \"0s\"\ntcp_socket_buffer = \"48kB\"\n"));
    CHECK(pgmux_listener_defer(mux.pid(), mux.port()) == 0);
    CHECK(silent_client_seen(mux));
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    const auto [client_side, server_side] = keepalive_of(mux, c.get());
    for (const SockOpts& o : {client_side, server_side}) {
      // The kernel doubles what it is given (for its bookkeeping).
      CHECK(o.sndbuf == 2 * 49152);
      CHECK(o.rcvbuf == 2 * 49152);
    }
    c.reset();
    mux.finish();
  }
}

// [log] stats_period: a line per database with what it did in the period.
TEST_CASE("ops: periodic stats log line per database", "[ops][log]") {
  PgmuxConfig cfg = session_config("scram-sha-256", plaintext_userlist() + admin_users(), "",
                                   "\n" + database_section("app2") + "\n[log]\nstats_period = \"1s\"\n" + admin_rest());
  Pgmux mux(cfg);
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  // Traffic through app only, for longer than a period.
  const auto t0 = Clock::now();
  int n = 0;
  while (seconds_since(t0) < 2.5) {
    ++n;
    CHECK(scalar(c.get(), "SELECT " + std::to_string(n)) == std::to_string(n));
    std::this_thread::sleep_for(5ms);
  }
  Conn idle = connect(mux.conninfo("app2", "scram_user", "scram_pw"));
  const std::regex line(R"(stats (\w+): (\d+) xacts/s, (\d+) queries/s, in (\d+) B/s, out (\d+) B/s, )"
                        R"(xact (\d+) us, query (\d+) us, wait (\d+) us \((\d+) clients waited\))");
  // Lines for app with traffic, and (once its pool exists) a quiet one for app2.
  int busy_lines = 0, app2_lines = 0;
  REQUIRE(wait_until(
      [&] {
        busy_lines = app2_lines = 0;
        const std::string log = mux.log_text();
        for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator(); ++it) {
          const auto& m = *it;
          if (m[1] == "app" && std::stoull(m[2]) > 0) {
            ++busy_lines;
            CHECK(m[9] == "0");  // one client: it never waited
            CHECK(std::stoull(m[3]) >= std::stoull(m[2]));  // a query per transaction here
            CHECK(std::stoull(m[4]) > 0);
            CHECK(std::stoull(m[5]) > 0);
          }
          if (m[1] == "app2") {
            ++app2_lines;
            CHECK(std::stoull(m[2]) == 0);
          }
        }
        return busy_lines >= 2 && app2_lines >= 1;
      },
      5s));
  // Turned off by a reload: no more lines.
  write_file(mux.config_path(), replace_all(mux.config_text(), "stats_period = \"1s\"", "stats_period = \"0s\""));
  Conn admin = connect(mux.conninfo("pgbouncer", "admin", "admin_pw"));
  exec(admin.get(), "RELOAD");
  CHECK(config_value(admin.get(), "stats_period") == "0s");
  std::this_thread::sleep_for(200ms);
  const size_t count = [&] {
    const std::string log = mux.log_text();
    return static_cast<size_t>(std::distance(std::sregex_iterator(log.begin(), log.end(), line), std::sregex_iterator()));
  }();
  std::this_thread::sleep_for(1500ms);
  const std::string log = mux.log_text();
  CHECK(static_cast<size_t>(std::distance(std::sregex_iterator(log.begin(), log.end(), line), std::sregex_iterator())) ==
        count);
  c.reset();
  idle.reset();
  admin.reset();
  mux.finish();
}

// The stats line's totals only grow: a pool of the database that a reload
// retired and then dropped still counts (else the surviving pools' whole
// history showed up as the period's traffic).
TEST_CASE("ops: stats line after a reload drops one of the database's pools", "[ops][log]") {
  PgmuxConfig cfg = session_config("scram-sha-256", plaintext_userlist() + admin_users(), "",
                                   "\n[log]\nstats_period = \"1s\"\n" + admin_rest());
  Pgmux mux(cfg);
  Conn burst = connect(mux.conninfo("app", "md5_user", "md5_pw"));
  for (int i = 0; i < 1500; ++i) REQUIRE(scalar(burst.get(), "SELECT 1") == "1");
  std::atomic<bool> stop{false};
  std::thread steady([&] {
    Conn c = connect_raw(mux.conninfo("app", "scram_user", "scram_pw"));
    // A history of its own, which a wrong line would show as this period's.
    for (int i = 0; i < 600; ++i) try_exec(c.get(), "SELECT 1");
    while (!stop) {
      try_exec(c.get(), "SELECT 1");
      std::this_thread::sleep_for(50ms);
    }
  });
  std::this_thread::sleep_for(2500ms);
  // Logins to app now use scram_user on the server: md5_user's pool is
  // retired, and dropped once its client has left.
  std::string text = mux.config_text();
  const size_t at = text.find("[databases.app]\n");
  REQUIRE(at != std::string::npos);
  text.insert(at + std::string("[databases.app]\n").size(), "user = \"scram_user\"\npassword = \"scram_pw\"\n");
  write_file(mux.config_path(), text);
  Conn admin = connect(mux.conninfo("pgbouncer", "admin", "admin_pw"));
  exec(admin.get(), "RELOAD");
  burst.reset();
  REQUIRE(wait_until([&] { return contains(mux.log_text(), "pool app/md5_user closed"); }, 5s));
  std::this_thread::sleep_for(2500ms);
  stop = true;
  steady.join();
  const std::string log = mux.log_text();
  const std::string after = log.substr(log.find("pool app/md5_user closed"));
  const std::regex line(R"(stats app: (\d+) xacts/s)");
  int lines = 0;
  for (auto it = std::sregex_iterator(after.begin(), after.end(), line); it != std::sregex_iterator(); ++it) {
    ++lines;
    INFO((*it)[0]);
    // The steady client does about 20 a second, and nothing else runs.
    CHECK(std::stoull((*it)[1]) >= 5);
    CHECK(std::stoull((*it)[1]) <= 60);
  }
  CHECK(lines >= 2);
  admin.reset();
  mux.finish();
}
