// Read/write routing to replicas (issue 4), against real PostgreSQL: the
// ctest fixture's primary and streaming replica for what leaves servers as
// they were, and a PrivateCluster (a primary + replica of the test's own)
// for stopping, pausing and promoting.
//
// Where a test needs the health checker's first results it polls (checks
// run every 200 ms here), so none of them depends on timing beyond generous
// bounds.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <random>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;

namespace {

std::string unique_name(std::string_view prefix) {
  static std::atomic<int> counter{0};
  static const unsigned seed = std::random_device{}();
  return std::string(prefix) + "_" + std::to_string(getpid()) + "_" + std::to_string(seed % 100000) +
         "_" + std::to_string(counter++);
}

// [databases.app] on `primary` with `replicas`, checked every 200 ms as
// scram_user (password from the plaintext userlist).
std::string routed_db(std::string_view name, const std::string& primary_port,
                      const std::vector<std::string>& replicas, std::string_view extra) {
  std::string s = "[databases." + std::string(name) + "]\nhost = \"127.0.0.1\"\nport = " + primary_port +
                  "\ndbname = \"app\"\nreplicas = [";
  for (size_t i = 0; i < replicas.size(); ++i) s += (i ? ", \"" : "\"") + replicas[i] + "\"";
  s += "]\nhealth_check_interval = \"200ms\"\nhealth_check_timeout = \"1s\"\n"
       "health_check_user = \"scram_user\"\n";
  s += extra;
  if (s.back() != '\n') s += '\n';
  return s;
}

PgmuxConfig routed_config(std::string dbs, std::string_view mode = "transaction") {
  PgmuxConfig c;
  c.pgmux = "pool_mode = \"" + std::string(mode) + "\"\ndefault_pool_size = 5\n";
  c.rest = auth_section("scram-sha-256") + "\n" + dbs + "\n[log]\nlevel = \"debug\"\n";
  c.userlist = plaintext_userlist();
  return c;
}

// The fixture's primary and replica.
PgmuxConfig fixture_routed(std::string_view extra, std::string_view mode = "transaction") {
  return routed_config(routed_db("app", "@PG_PORT@", {"127.0.0.1:@REPLICA_PORT@"}, extra), mode);
}

std::string first_value(const QueryOutcome& r) {
  if (!r.ok) return "error: " + r.sqlstate + " " + r.message;
  if (r.rows.empty() || r.rows[0].empty()) return "no row";
  return r.rows[0][0];
}

// pg_is_in_recovery() inside BEGIN READ ONLY ("t" = a replica answered).
std::string read_only_tx(PGconn* c, std::string_view begin = "BEGIN READ ONLY") {
  auto b = try_exec(c, std::string(begin));
  if (!b.ok) return "error: " + b.sqlstate + " " + b.message;
  std::string v = first_value(try_exec(c, "SELECT pg_is_in_recovery()"));
  try_exec(c, "COMMIT");
  return v;
}

std::string plain(PGconn* c, const std::string& sql = "SELECT pg_is_in_recovery()") {
  return first_value(try_exec(c, sql));
}

// A new connection each time (a FATAL routing error ends the previous one).
std::string fresh_read_only_tx(const Pgmux& mux) {
  Conn c = connect_raw(mux.conninfo("app", "scram_user", "scram_pw"));
  if (PQstatus(c.get()) != CONNECTION_OK) return "connect: " + std::string(PQerrorMessage(c.get()));
  return read_only_tx(c.get());
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  return wait_until(pred, timeout, 50ms);
}

// Direct superuser connection to the fixture's replica (unix socket, trust).
std::string fixture_replica_superuser() {
  const auto& fx = fixture();
  return "host=" + conninfo_quote(fx.pg_socket_dir) + " port=" + std::to_string(fx.replica_port) +
         " user=postgres dbname=app";
}

// Creates `sql` objects on the primary and waits until the replica has them.
void on_primary_and_replayed(const std::string& sql, const std::string& check) {
  Conn p = superuser("app");
  exec(p.get(), sql);
  Conn r = connect(fixture_replica_superuser());
  REQUIRE(eventually([&] { return plain(r.get(), check) == "t"; }));
}

}  // namespace

TEST_CASE("routing: explicit read-only transactions go to the replica, the rest to the primary",
          "[routing]") {
  Pgmux mux(fixture_routed("read_routing = \"explicit\"\n"));
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  REQUIRE(eventually([&] { return read_only_tx(c.get()) == "t"; }));
  for (int i = 0; i < 3; ++i) {
    CHECK(plain(c.get()) == "f");
    CHECK(read_only_tx(c.get()) == "t");
  }
  // Any spelling, case and comment placement.
  CHECK(read_only_tx(c.get(), "START TRANSACTION /* x */ IsOlAtIoN LeVeL rEpEaTaBlE rEaD,\n read -- c\n only") == "t");
  CHECK(read_only_tx(c.get(), "begin transaction read only deferrable") == "t");
  CHECK(read_only_tx(c.get(), "BEGIN") == "f");
  CHECK(read_only_tx(c.get(), "BEGIN READ WRITE") == "f");
  CHECK(read_only_tx(c.get(), "/* READ ONLY */ BEGIN") == "f");
  // A whole read-only transaction in one query string.
  {
    Result r(PQexec(c.get(), "BEGIN READ ONLY; SELECT pg_is_in_recovery(); COMMIT"));
    CHECK(PQresultStatus(r.get()) == PGRES_COMMAND_OK);
  }
  // The extended protocol.
  {
    Result b(PQexecParams(c.get(), "BEGIN READ ONLY", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQresultStatus(b.get()) == PGRES_COMMAND_OK);
    Result r(PQexecParams(c.get(), "SELECT pg_is_in_recovery()", 0, nullptr, nullptr, nullptr, nullptr, 0));
    REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
    CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == "t");
    exec(c.get(), "COMMIT");
  }
  // A read-only session: everything goes to the replica, until it is not.
  exec(c.get(), "SET default_transaction_read_only = on");
  CHECK(plain(c.get()) == "t");
  CHECK(plain(c.get()) == "t");
  exec(c.get(), "SET default_transaction_read_only = off");
  CHECK(plain(c.get()) == "f");
  // ... also when set in the startup packet.
  Conn ro = connect(mux.conninfo("app", "scram_user", "scram_pw",
                                 "options='-c default_transaction_read_only=on'"));
  CHECK(plain(ro.get()) == "t");
  CHECK(plain(ro.get(), "SHOW default_transaction_read_only") == "on");
  // A write in an explicit read-only transaction fails as PostgreSQL says.
  exec(c.get(), "BEGIN READ ONLY");
  auto w = exec_error(c.get(), "CREATE TEMP TABLE nope (x int)");
  CHECK(w.sqlstate == "25006");
  exec(c.get(), "ROLLBACK");
  CHECK(plain(c.get()) == "f");
  c.reset();
  ro.reset();
  CHECK_THAT(mux.log_text(), Contains("up, replica"));
  CHECK_THAT(mux.log_text(), Contains("up, primary"));
  mux.finish();
}

TEST_CASE("routing: auto sends proven reads to the replica and re-runs refused ones on the primary",
          "[routing]") {
  const std::string seq = unique_name("rt_seq");
  on_primary_and_replayed("CREATE SEQUENCE " + seq + "; GRANT ALL ON SEQUENCE " + seq + " TO scram_user",
                          "SELECT (count(*) = 1)::text::bool FROM pg_class WHERE relname = '" + seq + "'");
  Pgmux mux(fixture_routed("read_routing = \"auto\"\n"));
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  REQUIRE(eventually([&] { return plain(c.get()) == "t"; }));
  CHECK(plain(c.get(), "WITH x AS (SELECT 1) SELECT pg_is_in_recovery() FROM x") == "t");
  CHECK(plain(c.get(), "SHOW transaction_read_only") == "on");
  // Not single proven reads: the primary.
  CHECK(plain(c.get(), "SELECT 1; SELECT pg_is_in_recovery()") == "f");
  CHECK(read_only_tx(c.get(), "BEGIN") == "f");
  // nextval() writes: the replica refuses it, pgmux re-runs it on the
  // primary, the client never sees the refusal.
  long last = 0;
  for (int i = 0; i < 10; ++i) {
    std::string v = plain(c.get(), "SELECT nextval('" + seq + "')");
    REQUIRE(v.find("error") == std::string::npos);
    CHECK(std::stol(v) > last);
    last = std::stol(v);
  }
  // The same through the extended protocol, with a parameter.
  for (int i = 0; i < 5; ++i) {
    const char* params[] = {seq.c_str()};
    Result r(PQexecParams(c.get(), "SELECT nextval($1::regclass)", 1, nullptr, params, nullptr, nullptr, 0));
    INFO(PQresultErrorMessage(r.get()));
    REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
    CHECK(std::stol(PQgetvalue(r.get(), 0, 0)) > last);
    last = std::stol(PQgetvalue(r.get(), 0, 0));
  }
  // nextval() wrote: read your writes keeps this client's reads on the
  // primary until a replica has replayed past it; another client's reads
  // (extended protocol too) stay on the replica.
  Conn other = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  for (int i = 0; i < 3; ++i) {
    Result q(PQexecParams(other.get(), "SELECT pg_is_in_recovery()", 0, nullptr, nullptr, nullptr, nullptr, 0));
    CHECK(std::string(PQgetvalue(q.get(), 0, 0)) == "t");
  }
  CHECK(eventually([&] { return plain(c.get()) == "t"; }, 5s));
  // An error that is not 25006 reaches the client as it is.
  auto e = exec_error(c.get(), "SELECT 1/0");
  CHECK(e.sqlstate == "22012");
  CHECK(plain(c.get()) == "t");
  other.reset();
  c.reset();
  CHECK_THAT(mux.log_text(), Contains("re-running it on the primary"));
  mux.finish();
}

TEST_CASE("routing: a client reads its own writes at once, others keep using the replica",
          "[routing][destructive]") {
  // Replay is paused on the replica while the client writes, so a read
  // routed there would miss the write: only read-your-writes makes the
  // test pass. No max_replica_lag: the replica stays eligible for others.
  PrivateCluster pc;
  {
    Conn su = connect(pc.superuser_conninfo(false));
    exec(su.get(), "CREATE TABLE ryw (id int); GRANT ALL ON ryw TO scram_user");
  }
  Conn replica = connect(pc.superuser_conninfo(true));
  REQUIRE(eventually([&] { return plain(replica.get(), "SELECT to_regclass('ryw') IS NOT NULL") == "t"; }));
  Pgmux mux(routed_config(routed_db("app", std::to_string(pc.primary_port()),
                                    {"127.0.0.1:" + std::to_string(pc.replica_port())},
                                    "read_routing = \"auto\"\n")));
  Conn writer = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  Conn other = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  REQUIRE(eventually([&] { return read_only_tx(writer.get()) == "t"; }));
  exec(replica.get(), "SELECT pg_wal_replay_pause()");
  for (int i = 0; i < 20; ++i) {
    const std::string id = std::to_string(i);
    exec(writer.get(), "INSERT INTO ryw VALUES (" + id + ")");
    exec(writer.get(), "BEGIN READ ONLY");
    CHECK(scalar(writer.get(), "SELECT count(*) FROM ryw WHERE id = " + id) == "1");
    exec(writer.get(), "COMMIT");
    CHECK(plain(writer.get(), "SELECT count(*) FROM ryw WHERE id = " + id) == "1");
    // Someone who did not write is not held back (and sees the paused
    // replica, without the row).
    CHECK(read_only_tx(other.get()) == "t");
    CHECK(plain(other.get(), "SELECT count(*) FROM ryw WHERE id = " + id) == "0");
  }
  // Once a replica has replayed past the write, the writer's reads go there too.
  exec(replica.get(), "SELECT pg_wal_replay_resume()");
  CHECK(eventually([&] { return read_only_tx(writer.get()) == "t"; }, 5s));
  CHECK(plain(writer.get(), "SELECT count(*) FROM ryw") == "20");
  // Writes whose command tag says "SELECT n" count too (CREATE TABLE AS,
  // SELECT INTO): with replay paused again, the next read must not go to the
  // replica, which has not got the table.
  exec(replica.get(), "SELECT pg_wal_replay_pause()");
  exec(writer.get(), "CREATE TABLE ryw_ctas AS SELECT generate_series(1, 3) AS id");
  CHECK(plain(writer.get(), "SELECT count(*) FROM ryw_ctas") == "3");
  exec(replica.get(), "SELECT pg_wal_replay_resume()");
  CHECK(eventually([&] { return read_only_tx(writer.get()) == "t"; }, 5s));
  exec(replica.get(), "SELECT pg_wal_replay_pause()");
  exec(writer.get(), "SELECT * INTO ryw_into FROM ryw_ctas");
  CHECK(plain(writer.get(), "SELECT count(*) FROM ryw_into") == "3");
  exec(replica.get(), "SELECT pg_wal_replay_resume()");
  writer.reset();
  other.reset();
  mux.finish();
}

TEST_CASE("routing: pgbench through auto routing, reads and writes mixed", "[routing][pgbench]") {
  const auto& fx = fixture();
  const std::string db = unique_name("rt_bench");
  {
    Conn su = superuser();
    exec(su.get(), "CREATE DATABASE " + db + " OWNER scram_user");
  }
  const std::map<std::string, std::string> env = {{"PGPASSWORD", "scram_pw"}};
  auto ir = run_process({fx.pg_bin + "/pgbench", "-i", "-s", "1", "-q", "-h", fx.pg_host, "-p",
                         std::to_string(fx.pg_port), "-U", "scram_user", db},
                        env, 60s);
  INFO(ir.output);
  REQUIRE(ir.exit_code == 0);
  {
    const std::string ci = "host=" + conninfo_quote(fx.pg_socket_dir) + " port=" +
                           std::to_string(fx.replica_port) + " user=postgres dbname=" + db;
    REQUIRE(eventually([&] {
      Conn r = connect_raw(ci);
      return PQstatus(r.get()) == CONNECTION_OK &&
             plain(r.get(), "SELECT count(*) FROM pgbench_branches") == "1";
    }));
  }
  std::string dbs = routed_db("bench", "@PG_PORT@", {"127.0.0.1:@REPLICA_PORT@"}, "read_routing = \"auto\"\n");
  dbs = replace_all(dbs, "dbname = \"app\"", "dbname = \"" + db + "\"");
  Pgmux mux(routed_config(dbs));
  for (const char* mode : {"simple", "extended", "prepared"}) {
    for (bool select_only : {true, false}) {
      std::vector<std::string> args = {"-M", mode, "-c", "8", "-j", "2", "-t", "50", "-n"};
      if (select_only) args.push_back("-S");
      auto rr = pgbench_through(mux, "bench", args);
      INFO("pgbench -M " << mode << (select_only ? " -S" : "") << ":\n" << rr.output);
      CHECK(rr.exit_code == 0);
      CHECK_THAT(rr.output, Contains("number of transactions actually processed: 400/400"));
    }
  }
  CHECK_THAT(mux.log_text(), Contains("-> 127.0.0.1:" + std::to_string(fx.replica_port)));
  mux.finish();
  Conn su = superuser();
  try_exec(su.get(), "DROP DATABASE " + db + " WITH (FORCE)");
}

TEST_CASE("routing: with replica_fallback = error, reads fail clearly when no replica is up",
          "[routing]") {
  const std::string dead = "127.0.0.1:" + std::to_string(free_port());
  Pgmux mux(routed_config(routed_db("app", "@PG_PORT@", {dead},
                                    "read_routing = \"explicit\"\nreplica_fallback = \"error\"\n")));
  std::string last;
  REQUIRE(eventually([&] {
    last = fresh_read_only_tx(mux);
    return last.find("replica_fallback") != std::string::npos;
  }));
  CHECK_THAT(last, Contains("no replica of database \"app\" is available"));
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(plain(c.get()) == "f");  // writes are not affected
  c.reset();
  CHECK_THAT(mux.log_text(), Contains("down: "));
  mux.finish();
}

TEST_CASE("routing: two backends claiming to be primary: writes are refused", "[routing]") {
  const auto& fx = fixture();
  // The same primary twice (TCP and its unix socket), checked as postgres.
  std::string dbs = routed_db("app", "@PG_PORT@", {fx.pg_socket_dir + ":@PG_PORT@"}, "read_routing = \"explicit\"\n");
  dbs = replace_all(dbs, "health_check_user = \"scram_user\"", "health_check_user = \"postgres\"");
  Pgmux mux(routed_config(dbs));
  std::string last;
  REQUIRE(eventually([&] {
    Conn c = connect_raw(mux.conninfo("app", "scram_user", "scram_pw"));
    last = plain(c.get());
    return last.find("claims to be the primary") != std::string::npos;
  }));
  CHECK_THAT(last, Contains("08006"));
  CHECK_THAT(mux.log_text(), Contains("more than one backend claims to be primary"));
  mux.finish();
}

TEST_CASE("routing: target_session_attrs picks the backend of a session", "[routing][session]") {
  std::string dbs;
  for (auto [name, attrs] : {std::pair{"app_ro", "read-only"}, {"app_rw", "read-write"},
                             {"app_ps", "prefer-standby"}, {"app_any", "any"}})
    dbs += routed_db(name, "@PG_PORT@", {"127.0.0.1:@REPLICA_PORT@"},
                     std::string("target_session_attrs = \"") + attrs + "\"\n") + "\n";
  Pgmux mux(routed_config(dbs, "session"));
  auto in_recovery = [&](const char* db) {
    Conn c = connect_raw(mux.conninfo(db, "scram_user", "scram_pw"));
    if (PQstatus(c.get()) != CONNECTION_OK) return std::string("connect: ") + PQerrorMessage(c.get());
    return plain(c.get());
  };
  REQUIRE(eventually([&] { return in_recovery("app_ro") == "t"; }));
  CHECK(in_recovery("app_rw") == "f");
  CHECK(in_recovery("app_ps") == "t");
  CHECK(in_recovery("app_any") == "f");
  mux.finish();
}

TEST_CASE("routing: a stopped replica takes no reads, and takes them again when back",
          "[routing][destructive]") {
  PrivateCluster pc;
  Pgmux mux(routed_config(routed_db("app", std::to_string(pc.primary_port()),
                                    {"127.0.0.1:" + std::to_string(pc.replica_port())},
                                    "read_routing = \"explicit\"\n")));
  REQUIRE(eventually([&] { return fresh_read_only_tx(mux) == "t"; }));
  pc.ctl("stop-replica");
  // Within two check intervals (200 ms) plus the check timeout, reads
  // succeed again, on the primary.
  auto stopped = Clock::now();
  std::string last;
  REQUIRE(eventually([&] { return (last = fresh_read_only_tx(mux)) == "f"; }, 5s));
  INFO("reads failed for " << seconds_since(stopped) << " s; last: " << last);
  CHECK(seconds_since(stopped) < 2.0);
  for (int i = 0; i < 5; ++i) CHECK(fresh_read_only_tx(mux) == "f");
  pc.ctl("start-replica");
  CHECK(eventually([&] { return fresh_read_only_tx(mux) == "t"; }, 15s));
  CHECK_THAT(mux.log_text(), Contains("down: "));
  mux.finish();
}

TEST_CASE("routing: a replica past max_replica_lag is excluded until it catches up",
          "[routing][destructive]") {
  PrivateCluster pc;
  Pgmux mux(routed_config(routed_db("app", std::to_string(pc.primary_port()),
                                    {"127.0.0.1:" + std::to_string(pc.replica_port())},
                                    "read_routing = \"explicit\"\nmax_replica_lag = \"1s\"\n")));
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  REQUIRE(eventually([&] { return read_only_tx(c.get()) == "t"; }));
  Conn replica = connect(pc.superuser_conninfo(true));
  Conn primary = connect(pc.superuser_conninfo(false));
  exec(replica.get(), "SELECT pg_wal_replay_pause()");
  exec(primary.get(), "CREATE TABLE lag_t (x int)");
  // Writes keep coming; replay stands still.
  int n = 0;
  bool excluded = eventually([&] {
    exec(primary.get(), "INSERT INTO lag_t VALUES (" + std::to_string(++n) + ")");
    return read_only_tx(c.get()) == "f";
  }, 10s);
  CHECK(excluded);
  CHECK_THAT(mux.log_text(), Contains("excluded from reads"));
  exec(replica.get(), "SELECT pg_wal_replay_resume()");
  CHECK(eventually([&] { return read_only_tx(c.get()) == "t"; }, 10s));
  CHECK_THAT(mux.log_text(), Contains("takes reads again"));
  c.reset();
  mux.finish();
}

TEST_CASE("routing: writes follow a promoted replica", "[routing][destructive]") {
  PrivateCluster pc;
  {
    Conn su = connect(pc.superuser_conninfo(false));
    exec(su.get(), "CREATE TABLE promo (x int); GRANT ALL ON promo TO scram_user");
  }
  Pgmux mux(routed_config(routed_db("app", std::to_string(pc.primary_port()),
                                    {"127.0.0.1:" + std::to_string(pc.replica_port())},
                                    "read_routing = \"explicit\"\n")));
  {
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    REQUIRE(eventually([&] { return read_only_tx(c.get()) == "t"; }));
    exec(c.get(), "INSERT INTO promo VALUES (1)");
  }
  pc.ctl("stop-primary");
  pc.ctl("promote-replica");
  std::string last;
  bool wrote = eventually([&] {
    Conn c = connect_raw(mux.conninfo("app", "scram_user", "scram_pw"));
    if (PQstatus(c.get()) != CONNECTION_OK) {
      last = PQerrorMessage(c.get());
      return false;
    }
    auto r = try_exec(c.get(), "INSERT INTO promo VALUES (2)");
    last = r.message;
    return r.ok;
  }, 20s);
  INFO("last error: " << last);
  REQUIRE(wrote);
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(plain(c.get()) == "f");
  CHECK(plain(c.get(), "SELECT count(*) FROM promo WHERE x = 2") == "1");
  c.reset();
  CHECK_THAT(mux.log_text(), Contains("is now the primary"));
  mux.finish();
}

// server_pipelining leaves reads routed to a replica alone: they go out one
// segment at a time once the server owes nothing, so a read queued behind
// another client's would never be sent.
TEST_CASE("routing: server_pipelining does not queue replica reads", "[routing][pipelining]") {
  PgmuxConfig cfg = fixture_routed("read_routing = \"explicit\"\nserver_pipelining = true\n");
  cfg.pgmux = "pool_mode = \"transaction\"\ndefault_pool_size = 1\n";
  Pgmux mux(cfg);
  const std::string ci =
      mux.conninfo("app", "scram_user", "scram_pw", "options='-c default_transaction_read_only=on'");
  Conn a = connect(ci);
  Conn b = connect(ci);
  REQUIRE(eventually([&] { return plain(a.get()) == "t"; }));
  CHECK(plain(b.get()) == "t");
  REQUIRE(PQsendQuery(a.get(), "SELECT pg_sleep(0.5), 'a'") == 1);
  std::this_thread::sleep_for(150ms);
  REQUIRE(PQsendQuery(b.get(), "SELECT 'b'") == 1);
  auto answer = [](PGconn* c) {
    auto t0 = Clock::now();
    while (seconds_since(t0) < 5.0) {
      if (PQconsumeInput(c) == 0 || !PQisBusy(c)) break;
      std::this_thread::sleep_for(20ms);
    }
    Result r(PQgetResult(c));
    std::string v = r && PQresultStatus(r.get()) == PGRES_TUPLES_OK ? PQgetvalue(r.get(), 0, PQnfields(r.get()) - 1)
                                                                   : "no answer";
    while (Result more{PQgetResult(c)}) {
    }
    return v;
  };
  CHECK(answer(a.get()) == "a");
  CHECK(answer(b.get()) == "b");
  CHECK_THAT(mux.log_text(), !Contains("pipelined behind"));
  a.reset();
  b.reset();
  mux.finish();
}
