// More than one worker thread (`workers`): clients spread over the workers,
// one pool_size (and max_client_conn) over all of them, a pool's servers
// move to the worker whose clients wait, cancel requests reach the client's
// worker, and the admin console, reload and shutdown act on every worker.
#include <catch2/catch.hpp>

#include <signal.h>

#include <future>
#include <set>
#include <thread>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;

namespace {

PgmuxConfig workers_config(int workers, std::string extra_pgmux, std::string dbs = database_section("app")) {
  PgmuxConfig c;
  c.pgmux = "workers = " + std::to_string(workers) + "\npool_mode = \"transaction\"\n" + extra_pgmux;
  c.rest = auth_section("scram-sha-256") + "\n" + dbs + "\n[admin]\nusers = [\"admin\"]\n";
  c.userlist = plaintext_userlist() + userlist_line("admin", "admin_pw");
  return c;
}

// Two workers, a transaction pool of `pool_size` for database entry
// "bench", which is `db`.
PgmuxConfig bench_workers_config(const ScratchDatabase& db, int pool_size) {
  return workers_config(2, "default_pool_size = " + std::to_string(pool_size) + "\n",
                        database_section("bench", "dbname = \"" + db.name() + "\"\n"));
}

Result query(PGconn* c, const std::string& sql) { return Result(PQexec(c, sql.c_str())); }

// SHOW CLIENTS: the worker of the client whose application_name is `app`.
std::string worker_of(PGconn* admin, const std::string& app) {
  Result r = query(admin, "SHOW CLIENTS");
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return "error";
  int a = PQfnumber(r.get(), "application_name"), w = PQfnumber(r.get(), "worker");
  for (int i = 0; i < PQntuples(r.get()); ++i)
    if (app == PQgetvalue(r.get(), i, a)) return PQgetvalue(r.get(), i, w);
  return "none";
}

// A client whose application_name tells it apart in SHOW CLIENTS.
Conn named_client(const Pgmux& mux, const std::string& db, const std::string& app) {
  return connect(mux.conninfo(db, "scram_user", "scram_pw", "application_name=" + app));
}

// Two workers and a pool of one for database "one", which is a database of
// its own whose backends `monitor` counts.
struct OnePool {
  explicit OnePool(std::string_view tag, const std::string& extra_pgmux = {})
      : db(tag),
        mux(workers_config(2, "default_pool_size = 1\n" + extra_pgmux,
                           database_section("one", "dbname = \"" + db.name() + "\"\n"))),
        monitor("datname = '" + db.name() + "'") {}
  ScratchDatabase db;  // dropped last
  Pgmux mux;
  BackendMonitor monitor;
};

}  // namespace

TEST_CASE("workers: pgbench through two workers stays within one pool_size", "[workers][pgbench]") {
  ScratchDatabase db("workers");
  db.pgbench_init();
  Pgmux mux(bench_workers_config(db, 5));
  BackendMonitor monitor("datname = '" + db.name() + "'");
  auto rr = pgbench_through(mux, "bench", {"-M", "prepared", "-c", "20", "-j", "2", "-t", "100", "-n"});
  monitor.stop();
  INFO("pgbench output:\n" << rr.output);
  INFO("server backends: max " << monitor.max() << " over " << monitor.samples() << " samples "
                               << monitor.error());
  CHECK(rr.exit_code == 0);
  CHECK_THAT(rr.output, Contains("number of transactions actually processed: 2000/2000"));
  CHECK_THAT(rr.output, Contains("number of failed transactions: 0 ("));
  CHECK(monitor.error().empty());
  CHECK(monitor.max() <= 5);
  CHECK(monitor.max() >= 2);

  // Both workers served clients, and the console adds them up.
  Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  Result pools = query(admin.get(), "SHOW POOLS");
  REQUIRE(PQresultStatus(pools.get()) == PGRES_TUPLES_OK);
  std::set<std::string> workers;
  int db_col = PQfnumber(pools.get(), "database"), w_col = PQfnumber(pools.get(), "worker");
  REQUIRE(w_col >= 0);
  for (int i = 0; i < PQntuples(pools.get()); ++i)
    if (std::string(PQgetvalue(pools.get(), i, db_col)) == "bench") workers.insert(PQgetvalue(pools.get(), i, w_col));
  CHECK(workers == std::set<std::string>{"0", "1"});
  Result stats = query(admin.get(), "SHOW STATS");
  REQUIRE(PQresultStatus(stats.get()) == PGRES_TUPLES_OK);
  long xacts = -1;
  for (int i = 0; i < PQntuples(stats.get()); ++i)
    if (std::string(PQgetvalue(stats.get(), i, 0)) == "bench")
      xacts = std::atol(PQgetvalue(stats.get(), i, PQfnumber(stats.get(), "total_xact_count")));
  CHECK(xacts >= 2000);
  admin.reset();
  mux.finish();
}

// Under an even load each worker is often without a waiting client for a
// moment while the other's clients wait a moment: servers must not move
// between the workers then (each move is a close and a new server login;
// they once moved several times a second and halved the throughput), and
// a slot on its way must not make a pool look over its size.
TEST_CASE("workers: under an even load servers stay with their worker", "[workers][pgbench]") {
  ScratchDatabase db("workers");
  db.pgbench_init();
  Pgmux mux(bench_workers_config(db, 10));
  auto rr = pgbench_through(mux, "bench", {"-S", "-M", "extended", "-c", "30", "-j", "2", "-T", "5", "-n"});
  INFO("pgbench output:\n" << rr.output);
  CHECK(rr.exit_code == 0);
  CHECK_THAT(rr.output, Contains("number of failed transactions: 0 ("));
  const std::string log = mux.log_text();
  size_t moves = 0;
  for (size_t at = log.find("freeing a slot for another worker"); at != std::string::npos;
       at = log.find("freeing a slot for another worker", at + 1))
    ++moves;
  INFO(moves << " servers closed for the other worker");
  CHECK(moves <= 8);
  CHECK_FALSE(contains(log, "pool size reduced by a reload"));
  mux.finish();
}

TEST_CASE("workers: a pool of one serves the clients of both workers in turn", "[workers]") {
  OnePool one("workers1");
  Pgmux& mux = one.mux;
  BackendMonitor& monitor = one.monitor;
  Conn a = named_client(mux, "one", "wa");
  Conn b = named_client(mux, "one", "wb");
  Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  const std::string wa = worker_of(admin.get(), "wa"), wb = worker_of(admin.get(), "wb");
  INFO("a on worker " << wa << ", b on worker " << wb);
  REQUIRE(wa != wb);
  // Each turn, the one server is idle on the other worker: it is closed
  // there and opened here, well within query_wait_timeout.
  for (int i = 0; i < 4; ++i) {
    auto t0 = Clock::now();
    CHECK(scalar(a.get(), "SELECT 'a" + std::to_string(i) + "'") == "a" + std::to_string(i));
    CHECK(scalar(b.get(), "SELECT 'b" + std::to_string(i) + "'") == "b" + std::to_string(i));
    CHECK(seconds_since(t0) < 3.0);
  }
  // A transaction holds the server: the other worker's client waits for it.
  exec(a.get(), "BEGIN");
  exec(a.get(), "SELECT 1");
  auto waiter = std::async(std::launch::async, [&] { return try_exec(b.get(), "SELECT 'waited'"); });
  CHECK(waiter.wait_for(600ms) == std::future_status::timeout);
  exec(a.get(), "COMMIT");
  REQUIRE(waiter.wait_for(5s) == std::future_status::ready);
  auto w = waiter.get();
  CHECK(w.ok);
  monitor.stop();
  INFO("server backends: max " << monitor.max() << " " << monitor.error());
  CHECK(monitor.error().empty());
  CHECK(monitor.max() == 1);
  CHECK_THAT(mux.log_text(), Contains("freeing a slot for another worker's clients"));
  a.reset();
  b.reset();
  admin.reset();
  mux.finish();
}

TEST_CASE("workers: a cancel request arriving on another worker reaches the client's", "[workers][cancel]") {
  Pgmux mux(workers_config(2, ""));
  Conn c = connect(mux.conninfo("app", "cancel_user", "cancel_pw"));
  REQUIRE(scalar(c.get(), "SELECT 1") == "1");
  auto t0 = Clock::now();
  REQUIRE(PQsendQuery(c.get(), "SELECT pg_sleep(10)") == 1);
  std::this_thread::sleep_for(300ms);
  // The cancel connection goes to the worker with fewer clients: the other.
  PGcancel* cancel = PQgetCancel(c.get());
  REQUIRE(cancel != nullptr);
  char errbuf[256] = {0};
  REQUIRE(PQcancel(cancel, errbuf, sizeof errbuf) == 1);
  PQfreeCancel(cancel);
  Result r(PQgetResult(c.get()));
  REQUIRE(r);
  const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
  CHECK(std::string(state ? state : "") == "57014");
  CHECK(seconds_since(t0) < 3.0);
  while (Result more{PQgetResult(c.get())}) {
  }
  CHECK(scalar(c.get(), "SELECT 2") == "2");
  CHECK_THAT(mux.log_text(), Contains("cancel request forwarded"));
  c.reset();
  mux.finish();
}

TEST_CASE("workers: max_client_conn counts the clients of every worker", "[workers]") {
  Pgmux mux(workers_config(2, "max_client_conn = 3\n"));
  std::vector<Conn> held;
  for (int i = 0; i < 3; ++i) held.push_back(connect(mux.conninfo("app", "scram_user", "scram_pw")));
  for (int i = 0; i < 2; ++i)
    CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "scram_pw")),
               Contains("no more connections allowed (max_client_conn)"));
  held.pop_back();
  CHECK(wait_until([&] {
    Conn c = connect_raw(mux.conninfo("app", "scram_user", "scram_pw"));
    return PQstatus(c.get()) == CONNECTION_OK;
  }, 3s, 50ms));
  held.clear();
  mux.finish();
}

TEST_CASE("workers: the console, reload and shutdown act on every worker", "[workers][admin]") {
  Pgmux mux(workers_config(2, "default_pool_size = 3\n"));
  Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  Conn a = named_client(mux, "app", "ca");
  Conn b = named_client(mux, "app", "cb");
  const std::string wa = worker_of(admin.get(), "ca"), wb = worker_of(admin.get(), "cb");
  INFO("a on worker " << wa << ", b on worker " << wb);
  REQUIRE(wa != wb);
  // The admin console's own worker is one of the two: whichever client is
  // on the other one shows what crosses workers.
  const std::string wadmin = worker_of(admin.get(), "");
  for (int i = 0; i < 5; ++i) {
    exec(a.get(), "SELECT 1");
    exec(b.get(), "SELECT 1");
  }

  // PAUSE waits for a transaction open on either worker.
  exec(b.get(), "BEGIN");
  exec(b.get(), "SELECT 1");
  auto paused = std::async(std::launch::async, [&] { return try_exec(admin.get(), "PAUSE app"); });
  CHECK(paused.wait_for(700ms) == std::future_status::timeout);
  exec(b.get(), "COMMIT");
  REQUIRE(paused.wait_for(5s) == std::future_status::ready);
  CHECK(paused.get().ok);
  // Paused on both workers: new transactions wait until RESUME.
  auto held_a = std::async(std::launch::async, [&] { return try_exec(a.get(), "SELECT 'after resume'"); });
  CHECK(held_a.wait_for(500ms) == std::future_status::timeout);
  exec(admin.get(), "RESUME app");
  REQUIRE(held_a.wait_for(5s) == std::future_status::ready);
  CHECK(held_a.get().ok);

  // RELOAD: a new pool size on every worker's pools.
  write_file(mux.config_path(), replace_all(mux.config_text(), "default_pool_size = 3", "default_pool_size = 4"));
  exec(admin.get(), "RELOAD");
  Result dbs = query(admin.get(), "SHOW DATABASES");
  REQUIRE(PQresultStatus(dbs.get()) == PGRES_TUPLES_OK);
  for (int i = 0; i < PQntuples(dbs.get()); ++i)
    if (std::string(PQgetvalue(dbs.get(), i, 0)) == "app")
      CHECK(std::string(PQgetvalue(dbs.get(), i, PQfnumber(dbs.get(), "pool_size"))) == "4");
  CHECK(wait_until([&] {
    Result p = query(admin.get(), "SHOW CONFIG");
    for (int i = 0; p && i < PQntuples(p.get()); ++i)
      if (std::string(PQgetvalue(p.get(), i, 0)) == "default_pool_size") return std::string(PQgetvalue(p.get(), i, 1)) == "4";
    return false;
  }, 2s, 50ms));

  // KILL_CLIENT of the client on the other worker than the console's.
  PGconn* victim = wa != wadmin ? a.get() : b.get();
  const std::string victim_app = wa != wadmin ? "ca" : "cb";
  Result clients = query(admin.get(), "SHOW CLIENTS");
  std::string id;
  for (int i = 0; i < PQntuples(clients.get()); ++i)
    if (victim_app == PQgetvalue(clients.get(), i, PQfnumber(clients.get(), "application_name")))
      id = PQgetvalue(clients.get(), i, PQfnumber(clients.get(), "id"));
  REQUIRE(!id.empty());
  CHECK(try_exec(admin.get(), "KILL_CLIENT " + id).ok);
  CHECK(wait_until([&] { return !try_exec(victim, "SELECT 1").ok; }, 2s, 50ms));
  CHECK(try_exec(admin.get(), "KILL_CLIENT 999999").sqlstate == "42704");

  // SIGTERM: the transaction open on a worker finishes, then pgmux exits.
  PGconn* other = victim == a.get() ? b.get() : a.get();
  exec(other, "BEGIN");
  exec(other, "SELECT 1");
  mux.signal(SIGTERM);
  std::this_thread::sleep_for(300ms);
  CHECK(scalar(other, "SELECT 'finishing'") == "finishing");
  exec(other, "COMMIT");
  admin.reset();
  a.reset();
  b.reset();
  mux.finish();
}

TEST_CASE("workers: a worker whose clients keep the pool busy still gives a slot to a longer wait",
          "[workers]") {
  OnePool one("workersfair", "query_wait_timeout = \"6s\"\n");
  Pgmux& mux = one.mux;
  BackendMonitor& monitor = one.monitor;
  Conn a1 = named_client(mux, "one", "a1");
  Conn b = named_client(mux, "one", "b");
  Conn a2 = named_client(mux, "one", "a2");
  Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  const std::string w1 = worker_of(admin.get(), "a1"), w2 = worker_of(admin.get(), "a2"),
                    wb = worker_of(admin.get(), "b");
  INFO("a1 on " << w1 << ", a2 on " << w2 << ", b on " << wb);
  REQUIRE(w1 == w2);
  REQUIRE(wb != w1);
  // a1 and a2 keep their worker's one server busy: one of them always waits
  // there, so that worker never has an idle server, nor a release with no
  // client of its own waiting.
  std::atomic<bool> stop{false};
  auto loop = [&](PGconn* c) {
    int n = 0;
    while (!stop.load())
      if (try_exec(c, "SELECT pg_sleep(0.005)").ok) ++n;
    return n;
  };
  auto f1 = std::async(std::launch::async, loop, a1.get());
  auto f2 = std::async(std::launch::async, loop, a2.get());
  std::this_thread::sleep_for(300ms);
  for (int i = 0; i < 3; ++i) {
    auto t0 = Clock::now();
    auto r = try_exec(b.get(), "SELECT 'b'");
    INFO("b waited " << seconds_since(t0) << " s: " << r.message);
    CHECK(r.ok);
    CHECK(seconds_since(t0) < 2.0);
  }
  stop = true;
  CHECK(f1.get() > 0);
  CHECK(f2.get() > 0);
  monitor.stop();
  INFO("server backends: max " << monitor.max() << " " << monitor.error());
  CHECK(monitor.max() == 1);
  a1.reset();
  a2.reset();
  b.reset();
  admin.reset();
  mux.finish();
}

// Health and lag checks run on the first worker only, and every worker's
// router takes their outcome: one check connection per backend, and reads
// go to the replica from clients of every worker.
TEST_CASE("workers: one health check per backend, whatever the number of workers", "[workers][routing]") {
  REQUIRE(fixture().replica_port != 0);  // pg_fixture.sh start DIR --replica (ctest's fixture has one)
  ScratchDatabase db("hc");
  const std::string dbs = "[databases.app]\nhost = \"127.0.0.1\"\nport = @PG_PORT@\ndbname = \"" + db.name() +
                          "\"\nreplicas = [\"127.0.0.1:@REPLICA_PORT@\"]\nread_routing = \"explicit\"\n"
                          "health_check_interval = \"100ms\"\nhealth_check_timeout = \"1s\"\n"
                          "health_check_user = \"postgres\"\n";
  Pgmux mux(workers_config(3, "default_pool_size = 2\n", dbs));
  BackendMonitor checks("usename = 'postgres' AND datname = '" + db.name() + "'");
  Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  std::vector<Conn> clients;
  std::set<std::string> workers;
  for (int i = 0; i < 6; ++i) {
    const std::string app = "hc" + std::to_string(i);
    clients.push_back(named_client(mux, "app", app));
    workers.insert(worker_of(admin.get(), app));
  }
  CHECK(workers == std::set<std::string>{"0", "1", "2"});
  for (size_t i = 0; i < clients.size(); ++i) {
    INFO("client " << i);
    PGconn* c = clients[i].get();
    std::string last;
    CHECK(wait_until(
        [&] {
          exec(c, "BEGIN READ ONLY");
          last = scalar(c, "SELECT pg_is_in_recovery()");
          exec(c, "COMMIT");
          return last == "t";
        },
        5s, 50ms));
  }
  // Several check intervals: still one connection to the primary checks it.
  std::this_thread::sleep_for(800ms);
  checks.stop();
  INFO("check connections on the primary: max " << checks.max() << " over " << checks.samples() << " samples "
                                                << checks.error());
  CHECK(checks.error().empty());
  CHECK(checks.max() == 1);
  clients.clear();
  admin.reset();
  mux.finish();
}
