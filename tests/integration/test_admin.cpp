// The admin console (issue 6): SHOW commands with PgBouncer's columns through
// libpq, on "pgmux" and its "pgbouncer" alias; who may do what; PAUSE /
// RESUME, DISABLE / ENABLE, RECONNECT / WAIT_CLOSE, KILL, KILL_CLIENT,
// SHUTDOWN.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <atomic>
#include <future>
#include <thread>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;

namespace {

PgmuxConfig admin_config(std::string_view mode = "transaction") {
  PgmuxConfig c;
  c.pgmux = "pool_mode = \"" + std::string(mode) + "\"\ndefault_pool_size = 2\n";
  c.rest = auth_section("scram-sha-256") + "\n" + database_section("app") +
           "\n[admin]\nusers = [\"admin\"]\nstats_users = [\"watcher\"]\n";
  c.userlist = plaintext_userlist() + userlist_line("admin", "admin_pw") + userlist_line("watcher", "watch_pw");
  return c;
}

std::vector<std::string> columns(PGresult* r) {
  std::vector<std::string> c;
  for (int i = 0; i < PQnfields(r); ++i) c.emplace_back(PQfname(r, i));
  return c;
}

Result query(PGconn* c, const std::string& sql) { return Result(PQexec(c, sql.c_str())); }

// The value of `col` in the row whose column `key_col` is `key`.
std::string cell(PGresult* r, const std::string& key_col, const std::string& key, const std::string& col) {
  int kc = PQfnumber(r, key_col.c_str()), vc = PQfnumber(r, col.c_str());
  if (kc < 0 || vc < 0) return "no such column";
  for (int i = 0; i < PQntuples(r); ++i)
    if (key == PQgetvalue(r, i, kc)) return PQgetvalue(r, i, vc);
  return "no such row";
}

}  // namespace

TEST_CASE("admin: SHOW commands with PgBouncer's columns, on pgmux and pgbouncer", "[admin]") {
  Pgmux mux(admin_config());
  Conn app = connect(mux.conninfo("app", "scram_user", "scram_pw", "application_name=admin_test"));
  for (int i = 0; i < 10; ++i) exec(app.get(), "SELECT 1");
  exec(app.get(), "BEGIN");
  exec(app.get(), "SELECT 2");
  exec(app.get(), "COMMIT");
  for (const char* db : {"pgmux", "pgbouncer"}) {
    Conn a = connect(mux.conninfo(db, "admin", "admin_pw"));
    auto pools = query(a.get(), "SHOW POOLS");
    REQUIRE(PQresultStatus(pools.get()) == PGRES_TUPLES_OK);
    const std::vector<std::string> pgb_pools = {
        "database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
        "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
        "maxwait", "maxwait_us", "pool_mode"};
    auto cols = columns(pools.get());
    REQUIRE(cols.size() > pgb_pools.size());
    CHECK(std::vector<std::string>(cols.begin(), cols.begin() + long(pgb_pools.size())) == pgb_pools);
    CHECK(cell(pools.get(), "database", "app", "cl_active") == "1");
    CHECK(cell(pools.get(), "database", "app", "sv_idle") == "1");
    CHECK(cell(pools.get(), "database", "app", "pool_mode") == "transaction");

    auto stats = query(a.get(), "SHOW STATS");
    REQUIRE(PQresultStatus(stats.get()) == PGRES_TUPLES_OK);
    CHECK(columns(stats.get()) ==
          std::vector<std::string>{"database", "total_xact_count", "total_query_count", "total_received",
                                   "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
                                   "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent", "avg_xact_time",
                                   "avg_query_time", "avg_wait_time"});
    CHECK(std::stol(cell(stats.get(), "database", "app", "total_xact_count")) == 11);
    CHECK(std::stol(cell(stats.get(), "database", "app", "total_query_count")) == 13);
    CHECK(std::stol(cell(stats.get(), "database", "app", "total_received")) > 0);
    CHECK(std::stol(cell(stats.get(), "database", "app", "total_sent")) > 0);
    // The two halves of SHOW STATS, as PgBouncer names them (exporters
    // query SHOW STATS_TOTALS).
    const std::vector<std::string> half = {"database",   "xact_count", "query_count", "bytes_received",
                                           "bytes_sent", "xact_time",  "query_time",  "wait_time"};
    auto totals_part = query(a.get(), "SHOW STATS_TOTALS");
    REQUIRE(PQresultStatus(totals_part.get()) == PGRES_TUPLES_OK);
    CHECK(columns(totals_part.get()) == half);
    CHECK(cell(totals_part.get(), "database", "app", "xact_count") == "11");
    CHECK(cell(totals_part.get(), "database", "app", "query_count") == "13");
    CHECK(cell(totals_part.get(), "database", "app", "bytes_received") ==
          cell(stats.get(), "database", "app", "total_received"));
    auto avg_part = query(a.get(), "show stats_averages;");
    REQUIRE(PQresultStatus(avg_part.get()) == PGRES_TUPLES_OK);
    CHECK(columns(avg_part.get()) == half);
    CHECK(cell(avg_part.get(), "database", "app", "query_time") ==
          cell(stats.get(), "database", "app", "avg_query_time"));

    auto clients = query(a.get(), "SHOW CLIENTS");
    REQUIRE(PQresultStatus(clients.get()) == PGRES_TUPLES_OK);
    auto ccols = columns(clients.get());
    REQUIRE(ccols.size() >= 18);
    CHECK(std::vector<std::string>(ccols.begin(), ccols.begin() + 18) ==
          std::vector<std::string>{"type", "user", "database", "state", "addr", "port", "local_addr",
                                   "local_port", "connect_time", "request_time", "wait", "wait_us",
                                   "close_needed", "ptr", "link", "remote_pid", "tls", "application_name"});
    CHECK(cell(clients.get(), "application_name", "admin_test", "user") == "scram_user");
    CHECK(cell(clients.get(), "application_name", "admin_test", "addr") == "127.0.0.1");
    auto servers = query(a.get(), "SHOW SERVERS");
    REQUIRE(PQresultStatus(servers.get()) == PGRES_TUPLES_OK);
    CHECK(cell(servers.get(), "database", "app", "state") == "idle");
    CHECK(std::to_string(fixture().pg_port) == cell(servers.get(), "database", "app", "port"));

    auto dbs = query(a.get(), "show databases;");
    REQUIRE(PQresultStatus(dbs.get()) == PGRES_TUPLES_OK);
    CHECK(cell(dbs.get(), "name", "app", "port") == std::to_string(fixture().pg_port));
    CHECK(cell(dbs.get(), "name", "app", "pool_size") == "2");
    auto cfg = query(a.get(), "SHOW CONFIG");
    CHECK(cell(cfg.get(), "key", "default_pool_size", "value") == "2");
    CHECK(cell(cfg.get(), "key", "default_pool_size", "default") == "20");
    auto lists = query(a.get(), "SHOW LISTS");
    CHECK(cell(lists.get(), "list", "pools", "items") == "1");
    auto users = query(a.get(), "SHOW USERS");
    CHECK(cell(users.get(), "name", "scram_user", "pool_mode").empty());
    CHECK(columns(users.get()) ==
          std::vector<std::string>{"name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections",
                                   "current_connections", "max_user_client_connections",
                                   "current_client_connections"});
    auto totals = query(a.get(), "SHOW TOTALS");
    CHECK(std::stol(cell(totals.get(), "name", "total_xact_count", "value")) == 11);
    auto state = query(a.get(), "SHOW STATE");
    CHECK(cell(state.get(), "key", "paused", "value") == "no");
    CHECK_THAT(scalar(a.get(), "SHOW VERSION"), Contains("pgmux") && Contains("PgBouncer 1.18.0"));
    auto help = query(a.get(), "SHOW HELP");
    CHECK(PQresultStatus(help.get()) == PGRES_COMMAND_OK);

    // Errors keep the session usable.
    auto bad = exec_error(a.get(), "SELECT 1");
    CHECK_THAT(bad.message, Contains("invalid command 'SELECT 1', use SHOW HELP;"));
    Result ext(PQexecParams(a.get(), "SHOW POOLS", 0, nullptr, nullptr, nullptr, nullptr, 0));
    CHECK(PQresultStatus(ext.get()) == PGRES_FATAL_ERROR);
    CHECK_THAT(PQresultErrorMessage(ext.get()), Contains("only simple queries"));
    CHECK(PQresultStatus(query(a.get(), "SHOW POOLS").get()) == PGRES_TUPLES_OK);
  }
  // The psql client a DBA would use.
  auto r = run_process({fixture().pg_bin + "/psql", "-X", "-c", "SHOW POOLS", mux.conninfo("pgbouncer", "admin", "admin_pw")});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("cl_active"));
  app.reset();
  mux.finish();
}

TEST_CASE("admin: stats_users may only SHOW; everyone else is refused like a wrong password", "[admin]") {
  Pgmux mux(admin_config());
  Conn w = connect(mux.conninfo("pgmux", "watcher", "watch_pw"));
  CHECK(PQresultStatus(query(w.get(), "SHOW POOLS").get()) == PGRES_TUPLES_OK);
  for (const char* cmd : {"PAUSE", "RESUME", "RECONNECT", "RELOAD", "SHUTDOWN", "KILL app", "KILL_CLIENT 1"}) {
    auto e = exec_error(w.get(), cmd);
    CHECK(e.sqlstate == "42501");
  }
  // An ordinary user, a wrong password, an unknown user: one answer.
  std::string a = strip_conn_prefix(connect_error(mux.conninfo("pgmux", "scram_user", "scram_pw")));
  std::string b = strip_conn_prefix(connect_error(mux.conninfo("pgmux", "admin", "wrong")));
  std::string c = strip_conn_prefix(connect_error(mux.conninfo("pgbouncer", "nobody", "x")));
  CHECK_THAT(a, Contains("password authentication failed"));
  CHECK(a == replace_all(b, "\"admin\"", "\"scram_user\""));
  CHECK(c == replace_all(b, "\"admin\"", "\"nobody\""));
  CHECK_THAT(mux.log_text(), Contains("is not in [admin] users or stats_users"));
  w.reset();
  mux.finish();
}

TEST_CASE("admin: PAUSE waits for running transactions, holds new ones until RESUME", "[admin]") {
  Pgmux mux(admin_config());
  Conn busy = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  Conn later = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  Conn a = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  exec(busy.get(), "BEGIN");
  exec(busy.get(), "SELECT 1");
  auto t0 = Clock::now();
  auto pause = std::async(std::launch::async, [&] { return try_exec(a.get(), "PAUSE app"); });
  // PAUSE does not answer while the transaction runs.
  CHECK(pause.wait_for(500ms) == std::future_status::timeout);
  exec(busy.get(), "COMMIT");
  auto pr = pause.get();
  CHECK(pr.ok);
  CHECK(pr.cmd_status == "PAUSE");
  CHECK(seconds_since(t0) >= 0.5);
  // Paused: a new transaction waits.
  auto held = std::async(std::launch::async, [&] { return try_exec(later.get(), "SELECT 42"); });
  CHECK(held.wait_for(500ms) == std::future_status::timeout);
  Conn a2 = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  auto dbs = query(a2.get(), "SHOW DATABASES");
  CHECK(cell(dbs.get(), "name", "app", "paused") == "1");
  CHECK(cell(query(a2.get(), "SHOW POOLS").get(), "database", "app", "sv_idle") == "0");  // PAUSE closed them
  exec(a2.get(), "RESUME app");
  auto hr = held.get();
  CHECK(hr.ok);
  REQUIRE(hr.rows.size() == 1);
  CHECK(hr.rows[0][0] == "42");
  busy.reset();
  later.reset();
  a.reset();
  a2.reset();
  mux.finish();
}

TEST_CASE("admin: RECONNECT and WAIT_CLOSE replace server connections; KILL_CLIENT and KILL", "[admin]") {
  Pgmux mux(admin_config());
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  Conn a = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  std::string pid1 = scalar(c.get(), "SELECT pg_backend_pid()");
  exec(c.get(), "BEGIN");  // hold the server across RECONNECT
  exec(a.get(), "RECONNECT app");
  CHECK(scalar(c.get(), "SELECT pg_backend_pid()") == pid1);  // not cut mid-transaction
  auto wait = std::async(std::launch::async, [&] { return try_exec(a.get(), "WAIT_CLOSE app"); });
  CHECK(wait.wait_for(300ms) == std::future_status::timeout);
  exec(c.get(), "COMMIT");
  auto wr = wait.get();
  CHECK(wr.ok);
  CHECK(wr.cmd_status == "WAIT_CLOSE");
  CHECK(scalar(c.get(), "SELECT pg_backend_pid()") != pid1);

  // KILL_CLIENT by the id SHOW CLIENTS gives.
  Conn victim = connect(mux.conninfo("app", "scram_user", "scram_pw", "application_name=victim"));
  exec(victim.get(), "SELECT 1");
  auto clients = query(a.get(), "SHOW CLIENTS");
  std::string id = cell(clients.get(), "application_name", "victim", "id");
  REQUIRE(id.find("no such") == std::string::npos);
  exec(a.get(), "KILL_CLIENT " + id);
  auto gone = try_exec(victim.get(), "SELECT 1");
  CHECK_FALSE(gone.ok);
  CHECK(exec_error(a.get(), "KILL_CLIENT 999999").sqlstate == "42704");
  CHECK(exec_error(a.get(), "PAUSE nosuchdb").sqlstate == "42704");

  // KILL app: its clients go, and it stays paused until RESUME.
  exec(a.get(), "KILL app");
  CHECK_FALSE(try_exec(c.get(), "SELECT 1").ok);
  Conn fresh = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  auto held = std::async(std::launch::async, [&] { return try_exec(fresh.get(), "SELECT 7"); });
  CHECK(held.wait_for(300ms) == std::future_status::timeout);
  exec(a.get(), "RESUME");
  CHECK(held.get().ok);
  CHECK_THAT(mux.log_text(), Contains("admin console: KILL app"));
  c.reset();
  victim.reset();
  fresh.reset();
  a.reset();
  mux.finish();
}

// server_fast_close (session pooling): after RECONNECT an idle session goes
// with its server at once (the client is told), a session inside a
// transaction when it ends; without it, sessions keep their servers to the
// end.
TEST_CASE("admin: server_fast_close ends idle sessions whose servers RECONNECT replaces", "[admin]") {
  Pgmux mux(admin_config("session"));
  Conn a = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  Conn idle = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  Conn in_tx = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  const std::string idle_pid = scalar(idle.get(), "SELECT pg_backend_pid()");
  const std::string tx_pid = scalar(in_tx.get(), "SELECT pg_backend_pid()");
  // Off (the default): the sessions keep their servers.
  exec(a.get(), "RECONNECT app");
  std::this_thread::sleep_for(800ms);
  CHECK(scalar(idle.get(), "SELECT pg_backend_pid()") == idle_pid);
  CHECK(scalar(in_tx.get(), "SELECT pg_backend_pid()") == tx_pid);
  // On (the transaction opened first, so no check can find it idle).
  exec(in_tx.get(), "BEGIN");
  exec(in_tx.get(), "CREATE TEMP TABLE fast_close_t (i int)");
  exec(a.get(), "SET server_fast_close = 1");
  CHECK(show_cell(a.get(), "SHOW CONFIG", "key", "server_fast_close", "value") == "1");
  // The idle session is ended within a tick or two, with a reason.
  CHECK(wait_until([&] { return contains(mux.log_text(), "closing (server_fast_close)"); }, 3s));
  const auto gone = try_exec(idle.get(), "SELECT 1");
  CHECK_FALSE(gone.ok);
  CHECK_THAT(gone.message, Contains("server_fast_close"));
  // The open transaction runs on, to its end.
  std::this_thread::sleep_for(800ms);
  CHECK(scalar(in_tx.get(), "SELECT count(*) FROM fast_close_t") == "0");
  CHECK(scalar(in_tx.get(), "SELECT pg_backend_pid()") == tx_pid);
  exec(in_tx.get(), "COMMIT");
  CHECK(wait_until([&] { return !try_exec(in_tx.get(), "SELECT 1").ok; }, 3s));
  // New sessions get new servers and stay.
  Conn fresh = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  const std::string fresh_pid = scalar(fresh.get(), "SELECT pg_backend_pid()");
  CHECK(fresh_pid != idle_pid);
  CHECK(fresh_pid != tx_pid);
  std::this_thread::sleep_for(800ms);
  CHECK(scalar(fresh.get(), "SELECT pg_backend_pid()") == fresh_pid);
  // A session that is inside a transaction at almost every moment still
  // goes at the end of its first transaction after RECONNECT.
  Conn batch = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  exec(batch.get(), "BEGIN");
  exec(a.get(), "RECONNECT app");
  CHECK(try_exec(batch.get(), "SELECT pg_sleep(0.6); COMMIT").ok);  // started before: runs to its end
  const auto next = try_exec(batch.get(), "BEGIN; SELECT pg_sleep(0.6); COMMIT");
  CHECK_FALSE(next.ok);  // the FATAL, or libpq's "closed unexpectedly" if it came in between
  // idle, in_tx, then fresh (idle at this RECONNECT) and batch.
  CHECK(wait_until([&] { return count_of(mux.log_text(), "closing (server_fast_close)") == 4; }, 3s));
  batch.reset();
  fresh.reset();
  idle.reset();
  in_tx.reset();
  fresh.reset();
  a.reset();
  mux.finish();
}

TEST_CASE("admin: DISABLE refuses new logins to a database until ENABLE; its clients go on", "[admin]") {
  PgmuxConfig cfg = admin_config();
  cfg.rest += "\n" + database_section("app2");
  Pgmux mux(cfg);
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  Conn a = connect(mux.conninfo("pgbouncer", "admin", "admin_pw"));
  auto r = try_exec(a.get(), "DISABLE app");
  CHECK(r.ok);
  CHECK(r.cmd_status == "DISABLE");
  CHECK(cell(query(a.get(), "SHOW DATABASES").get(), "name", "app", "disabled") == "1");
  CHECK(cell(query(a.get(), "SHOW DATABASES").get(), "name", "app2", "disabled") == "0");
  const std::string refused = connect_error(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK_THAT(refused, Contains("database \"app\" does not allow connections (DISABLE on the admin console)"));
  {
    // SQLSTATE 57P03 (cannot connect now), as a client sees it.
    Conn raw = connect_raw(mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK(PQstatus(raw.get()) == CONNECTION_BAD);
    CHECK_THAT(std::string(PQerrorMessage(raw.get())), Contains("does not allow connections"));
  }
  // A wrong password is still a wrong password.
  CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "nope")), Contains("password authentication failed"));
  // The connected client goes on; other databases take logins.
  CHECK(scalar(c.get(), "SELECT 1") == "1");
  Conn other = connect(mux.conninfo("app2", "scram_user", "scram_pw"));
  CHECK(scalar(other.get(), "SELECT current_database()") == "app2");
  // A reload keeps the database disabled.
  exec(a.get(), "RELOAD");
  CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "scram_pw")), Contains("does not allow connections"));
  CHECK(exec_error(a.get(), "DISABLE nosuchdb").sqlstate == "42704");
  CHECK(exec_error(a.get(), "DISABLE").sqlstate == "42601");
  CHECK(exec_error(a.get(), "ENABLE app app2").sqlstate == "42601");
  {
    Conn watcher = connect(mux.conninfo("pgmux", "watcher", "watch_pw"));
    CHECK(exec_error(watcher.get(), "ENABLE app").sqlstate == "42501");
  }
  r = try_exec(a.get(), "ENABLE app");
  CHECK(r.ok);
  CHECK(r.cmd_status == "ENABLE");
  CHECK(cell(query(a.get(), "SHOW DATABASES").get(), "name", "app", "disabled") == "0");
  Conn back = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(back.get(), "SELECT 2") == "2");
  CHECK_THAT(mux.log_text(), Contains("DISABLE app: new logins are refused until ENABLE"));
  c.reset();
  other.reset();
  back.reset();
  a.reset();
  mux.finish();
}

// Names the "*" entry serves can be disabled; a disabled name whose entry a
// reload removed (so "*" serves it) can still be enabled.
TEST_CASE("admin: DISABLE and ENABLE with the \"*\" entry", "[admin]") {
  PgmuxConfig cfg = admin_config();
  cfg.rest += "\n[databases.\"*\"]\nhost = \"@PG_HOST@\"\nport = @PG_PORT@\n";
  Pgmux mux(cfg);
  Conn a = connect(mux.conninfo("pgbouncer", "admin", "admin_pw"));
  std::vector<std::string> notices;
  PQsetNoticeReceiver(
      a.get(),
      [](void* arg, const PGresult* res) {
        const char* m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        static_cast<std::vector<std::string>*>(arg)->push_back(m ? m : "");
      },
      &notices);
  CHECK(try_exec(a.get(), "DISABLE app2").ok);
  // A name no client used yet, with no entry of its own: maybe a typo.
  REQUIRE(notices.size() == 1);
  CHECK_THAT(notices[0], Contains("\"app2\" has no entry of its own and no client has used it"));
  CHECK_THAT(connect_error(mux.conninfo("app2", "scram_user", "scram_pw")), Contains("does not allow connections"));
  CHECK(try_exec(a.get(), "ENABLE app2").ok);
  Conn c2 = connect(mux.conninfo("app2", "scram_user", "scram_pw"));
  CHECK(scalar(c2.get(), "SELECT current_database()") == "app2");
  CHECK(exec_error(a.get(), "DISABLE \"\"").sqlstate == "42704");
  // app's own entry goes with a reload: "*" serves it, still disabled.
  CHECK(try_exec(a.get(), "DISABLE app").ok);  // its own entry: no notice
  CHECK(try_exec(a.get(), "DISABLE app2").ok);  // used by a client now: none either
  CHECK(try_exec(a.get(), "ENABLE app2").ok);
  CHECK(notices.size() == 1);
  std::string text = mux.config_text();
  const size_t at = text.find("[databases.app]");
  REQUIRE(at != std::string::npos);
  const size_t end = text.find("\n[", at + 1);
  text.erase(at, end == std::string::npos ? std::string::npos : end + 1 - at);
  write_file(mux.config_path(), text);
  exec(a.get(), "RELOAD");
  CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "scram_pw")), Contains("does not allow connections"));
  CHECK(try_exec(a.get(), "ENABLE app").ok);
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c.get(), "SELECT current_database()") == "app");
  c.reset();
  c2.reset();
  a.reset();
  mux.finish();
}

TEST_CASE("admin: SHUTDOWN ends pgmux", "[admin]") {
  Pgmux mux(admin_config());
  Conn a = connect(mux.conninfo("pgbouncer", "admin", "admin_pw"));
  auto r = try_exec(a.get(), "SHUTDOWN");
  CHECK((r.ok || !r.message.empty()));
  CHECK(wait_until([&] { return !mux.alive(); }, 5s));
  int st = mux.stop();
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  mux.expect_clean_log();
}
