// Chaos soak: a dozen clients mix every kind of traffic (simple queries,
// named prepared statements every client names alike, pipelines with an
// error in the middle, transaction blocks that SET TimeZone, COPY both ways,
// cancel requests, clients that vanish mid-transaction) through a two-worker
// transaction pool of 3 for kLoad, while another thread terminates one of
// the pool's backends every kChaosPeriod. pgmux's promise under that load:
// every answer a client gets is its own (each client's values carry its id),
// nothing hangs, a client whose server died gets an error that says so (and
// may reconnect), and afterwards pgmux is healthy, its pools are empty and
// PostgreSQL holds no transaction or lock of theirs.
//
// Reproducing: each client's sequence of actions comes from the seed
// printed on stderr (PGMUX_CHAOS_SEED=N replays it); the threads'
// interleaving and the chaos thread's victims do not repeat.
//
// Worker threads never use Catch assertions (not thread-safe): they throw
// Failure, which ends that client and is collected for the main thread, whose
// wait for the clients is also the watchdog for a client stuck in an action.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "harness.hpp"

using namespace it;

namespace {

constexpr auto kLoad = 12s;           // how long the clients run
constexpr int kClients = 12;
constexpr auto kAnswerLimit = 10s;    // a statement unanswered this long: a hang
constexpr auto kStuckLimit = 20s;     // a client in one action this long: stuck
constexpr auto kChaosPeriod = 700ms;  // one backend terminated per period

enum Action { kSimple, kPrepared, kPipeline, kTransaction, kCopy, kCancel, kDisconnect, kActions };
constexpr std::array<const char*, kActions> kActionNames = {
    "simple query", "prepared statements", "pipeline", "transaction block", "COPY", "cancel",
    "disconnect mid-transaction"};
// How often each is picked, relative to the others.
constexpr std::array<int, kActions> kWeights = {3, 3, 2, 3, 1, 1, 1};

// The client's server died under it (the chaos thread's doing): expected, the
// client reconnects.
struct ServerLost {
  std::string sqlstate, message;
};
// Anything else: the test fails with this.
struct Failure {
  std::string what;
};
// A 57014 "canceling statement due to user request" on a statement this
// client did not cancel is another client's cancel request reaching the next
// statement on that server: a failure like any other. (PostgreSQL signals a
// backend twice per cancel request, and this test first caught pgmux handing
// the server on before the second signal had landed: see
// ServerConnection::cancel_sent.)

std::string show(const Rows& rows) {
  std::string s = "[";
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i) s += ",";
    for (size_t j = 0; j < rows[i].size(); ++j) s += (j ? "|" : "") + rows[i][j];
  }
  return s + "]";
}

void expect_rows(const Rows& got, const Rows& want, const std::string& what) {
  if (got != want) throw Failure{what + ": got " + show(got) + ", expected " + show(want)};
}

std::string sqlstate_of(PGresult* r) {
  const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return s ? s : "";
}

// What the clients share: where to connect, the tallies, the failures, and a
// superuser connection to PostgreSQL that tells when a statement runs.
struct Shared {
  std::string conninfo;    // through pgmux
  std::string db;          // the scratch database's name on PostgreSQL
  std::string default_tz;  // the server's TimeZone: a new client's
  Clock::time_point deadline;

  std::array<std::atomic<int>, kActions> done{};  // actions completed
  std::array<std::atomic<int>, kActions> cut{};   // cut short by a lost server
  std::atomic<int> reconnects{0};                 // after a lost server

  std::mutex m;  // guards the members below
  std::vector<std::string> failures;
  std::map<std::string, int> losses;  // by SQLSTATE ("" = the connection just broke)
  std::map<std::string, std::string> loss_messages;
  Conn observer;

  void fail(std::string what) {
    std::lock_guard<std::mutex> lock(m);
    failures.push_back(std::move(what));
  }
  void lost(const ServerLost& e) {
    std::lock_guard<std::mutex> lock(m);
    ++losses[e.sqlstate];
    loss_messages.emplace(e.sqlstate, e.message);
  }
  // `sql` runs on a backend of the scratch database right now.
  bool running(const std::string& sql) {
    std::lock_guard<std::mutex> lock(m);
    auto r = try_exec(observer.get(), "SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db +
                                          "' AND state = 'active' AND query = '" + sql + "'");
    return r.ok && r.rows.size() == 1 && r.rows[0][0] == "1";
  }
};

// What a client is doing, for the main thread's watchdog.
struct Slot {
  std::mutex m;
  PGconn* conn = nullptr;  // under m
  std::atomic<int> action{-1};  // -1: between actions
  std::atomic<Clock::time_point> since{};
  std::atomic<bool> finished{false};
  bool reported = false;  // main thread only

  void set_conn(PGconn* c) {
    std::lock_guard<std::mutex> lock(m);
    conn = c;
  }
  // Makes a libpq call blocked on the client's socket return.
  void shut_down() {
    std::lock_guard<std::mutex> lock(m);
    if (conn && PQsocket(conn) >= 0) ::shutdown(PQsocket(conn), SHUT_RDWR);
  }
  double seconds_in_action() const {
    return action.load() < 0 ? 0 : std::chrono::duration<double>(Clock::now() - since.load()).count();
  }
};

// Each client's own sequence from the test's seed.
std::mt19937 client_rng(uint32_t seed, int id) {
  std::seed_seq seq{seed, uint32_t(id)};
  return std::mt19937(seq);
}

class Client {
 public:
  Client(Shared& sh, Slot& slot, int id, uint32_t seed)
      : sh_(sh), slot_(slot), id_(id), k_(std::to_string(id)), rng_(client_rng(seed, id)),
        offset_(100000L * id), zones_{"Etc/GMT-" + k_, "Etc/GMT+" + k_} {}

  void run() {
    std::discrete_distribution<int> pick(kWeights.begin(), kWeights.end());
    int a = -1;
    try {
      connect();
      while (Clock::now() < sh_.deadline) {
        a = pick(rng_);
        slot_.since = Clock::now();
        slot_.action = a;
        try {
          act(Action(a));
          ++sh_.done[size_t(a)];
        } catch (const ServerLost& e) {
          ++sh_.cut[size_t(a)];
          sh_.lost(e);
          ++sh_.reconnects;
          connect();
        }
        slot_.action = -1;
      }
    } catch (const Failure& f) {
      sh_.fail("client " + k_ + (a >= 0 ? std::string(", ") + kActionNames[size_t(a)] : std::string()) +
               ": " + f.what);
    }
    slot_.action = -1;
    drop();
    slot_.finished = true;
  }

 private:
  PGconn* c() const { return conn_.get(); }

  void act(Action a) {
    switch (a) {
      case kSimple: return simple();
      case kPrepared: return prepared();
      case kPipeline: return pipeline();
      case kTransaction: return transaction();
      case kCopy: return copy();
      case kCancel: return cancel();
      case kDisconnect: return disconnect();
      case kActions: break;
    }
  }

  // A new pgmux client: no statements, the server's TimeZone. pgmux itself
  // answers the login, so this never fails because of a lost server.
  void connect() {
    drop();
    conn_ = connect_raw(sh_.conninfo);
    if (!conn_ || PQstatus(c()) != CONNECTION_OK) {
      throw Failure{"connect: " + (conn_ ? trim(PQerrorMessage(c())) : std::string("out of memory"))};
    }
    slot_.set_conn(c());
    // The FATAL of a server terminated while the client sits in a block
    // between two statements arrives as a notice (libpq prints it); the next
    // statement reports the lost server.
    PQsetNoticeProcessor(c(), [](void*, const char*) {}, nullptr);
    prepared_ = false;
    tz_ = sh_.default_tz;
  }

  void drop() {
    slot_.set_conn(nullptr);
    conn_.reset();
  }

  // A server that died shows as its FATAL (57P01 from PostgreSQL), pgmux's
  // (08006 "server connection lost: ...", ServerConnection::fail), or as a
  // connection that just broke. pgmux's 08P01 means a protocol violation,
  // not a lost server: that fails the test.
  bool server_died(const std::string& sqlstate) const {
    return sqlstate == "57P01" || sqlstate == "08006" || (sqlstate.empty() && PQstatus(c()) == CONNECTION_BAD);
  }

  [[noreturn]] void broken(const std::string& sqlstate, const std::string& message, const std::string& what) {
    if (server_died(sqlstate)) throw ServerLost{sqlstate, message};
    throw Failure{what + ": " + (sqlstate.empty() ? "" : "error " + sqlstate + ": ") + message};
  }
  [[noreturn]] void broken(const std::string& what) { broken("", trim(PQerrorMessage(c())), what); }

  // The next PQgetResult, waiting at most kAnswerLimit for it.
  Result next_result(const std::string& what) {
    const auto deadline = Clock::now() + kAnswerLimit;
    for (;;) {
      if (PQconsumeInput(c()) == 0) break;  // broken: PQgetResult says so
      if (!PQisBusy(c())) break;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) throw Failure{what + ": no answer within 10 s"};
      pollfd p{PQsocket(c()), POLLIN, 0};
      ::poll(&p, 1, int(std::min<long long>(left.count(), 100)));
    }
    return Result(PQgetResult(c()));
  }

  struct Answer {
    ExecStatusType status = PGRES_FATAL_ERROR;  // of the last result
    Rows rows;
    bool error = false;  // the first error wins: a FATAL comes before libpq's
    std::string sqlstate, message;  // "server closed the connection"
  };
  // Every result of what was sent, up to PQgetResult's NULL.
  Answer read_answer(const std::string& what) {
    Answer a;
    bool any = false;
    while (Result r = next_result(what)) {
      any = true;
      const ExecStatusType st = PQresultStatus(r.get());
      if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE) {
        if (!a.error) {
          a.error = true;
          a.sqlstate = sqlstate_of(r.get());
          a.message = trim(PQresultErrorMessage(r.get()));
        }
        continue;
      }
      if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        throw Failure{what + ": unexpected " + PQresStatus(st)};
      }
      a.status = st;
      a.rows = rows_of(r.get());
    }
    if (!any && !a.error) broken(what + " (no result)");
    return a;
  }

  // The rows of a statement that must succeed.
  Rows collect(const std::string& what, ExecStatusType want = PGRES_TUPLES_OK) {
    Answer a = read_answer(what);
    if (a.error) broken(a.sqlstate, a.message, what);
    if (a.status != want) {
      throw Failure{what + ": " + PQresStatus(a.status) + ", expected " + PQresStatus(want)};
    }
    return a.rows;
  }

  Rows query(const std::string& sql, ExecStatusType want = PGRES_TUPLES_OK) {
    if (PQsendQuery(c(), sql.c_str()) != 1) broken(sql);
    return collect(sql, want);
  }
  void command(const std::string& sql) { query(sql, PGRES_COMMAND_OK); }

  // ---- a. a simple query whose answer names its client and its request
  void simple() {
    const std::string seq = std::to_string(++seq_);
    expect_rows(query("SELECT " + k_ + ", " + seq + ", current_setting('TimeZone')"), {{k_, seq, tz_}},
                "SELECT K, seq, TimeZone");
  }

  // ---- b. named statements: every client calls them s1 and s2, each with
  // its own text.
  void ensure_prepared() {
    if (prepared_) return;
    const std::pair<const char*, std::string> statements[] = {
        {"s1", "SELECT $1::int + " + std::to_string(offset_)}, {"s2", "SELECT $1::text || '-c" + k_ + "'"}};
    for (const auto& [name, sql] : statements) {
      if (PQsendPrepare(c(), name, sql.c_str(), 1, nullptr) != 1) broken(std::string("prepare ") + name);
      collect(std::string("prepare ") + name, PGRES_COMMAND_OK);
    }
    prepared_ = true;
  }

  Rows exec_prepared(const char* name, const std::string& param) {
    const char* values[] = {param.c_str()};
    const std::string what = std::string("execute ") + name + "(" + param + ")";
    if (PQsendQueryPrepared(c(), name, 1, values, nullptr, nullptr, 0) != 1) broken(what);
    return collect(what);
  }

  void prepared() {
    ensure_prepared();
    const int n = 2 + int(rng_() % 4);
    for (int i = 0; i < n; ++i) {
      const long v = long(rng_() % 100000);
      if (rng_() % 2 == 0) {
        expect_rows(exec_prepared("s1", std::to_string(v)), {{std::to_string(v + offset_)}},
                    "s1(" + std::to_string(v) + ")");
      } else {
        const std::string p = "v" + std::to_string(v);
        expect_rows(exec_prepared("s2", p), {{p + "-c" + k_}}, "s2(" + p + ")");
      }
    }
  }

  // ---- c. a pipeline: good statements, a division by zero, the rest
  // skipped up to the Sync; then a segment that works, and a plain query.
  Result pipeline_result(const std::string& what, bool error_expected) {
    Result r = next_result(what);
    if (!r) {
      if (PQstatus(c()) == CONNECTION_BAD) broken(what);
      return r;
    }
    if (PQresultStatus(r.get()) == PGRES_FATAL_ERROR &&
        !(error_expected && sqlstate_of(r.get()) == "22012")) {
      broken(sqlstate_of(r.get()), trim(PQresultErrorMessage(r.get())), what);
    }
    return r;
  }

  // Reads one result, which must be `want` (a PQresStatus name, or the
  // rows' values as show() writes them), then the NULL that ends it (but
  // not after a Sync).
  void expect_result(const std::string& what, const std::string& want, bool error_expected = false) {
    Result r = pipeline_result(what, error_expected);
    std::string got = !r ? "NULL" : PQresultStatus(r.get()) == PGRES_TUPLES_OK ? show(rows_of(r.get()))
                                                                              : PQresStatus(PQresultStatus(r.get()));
    if (r && PQresultStatus(r.get()) == PGRES_FATAL_ERROR) got += " " + sqlstate_of(r.get());
    if (got != want) throw Failure{what + ": got " + got + ", expected " + want};
    if (want == "PGRES_PIPELINE_SYNC") return;
    Result end = pipeline_result(what + " (end)", false);
    if (end) throw Failure{what + ": got " + PQresStatus(PQresultStatus(end.get())) + " where its end was due"};
  }

  bool send_params(const std::string& sql, const std::string& param) {
    const char* values[] = {param.c_str()};
    return PQsendQueryParams(c(), sql.c_str(), 1, nullptr, values, nullptr, nullptr, 0) == 1;
  }

  void pipeline() {
    ensure_prepared();
    if (PQenterPipelineMode(c()) != 1) broken("PQenterPipelineMode");
    const int n = 3 + int(rng_() % 4);
    const int bad = 1 + int(rng_() % uint32_t(n - 1));  // after at least one good one
    std::vector<std::string> want;
    for (int i = 0; i < n; ++i) {
      const std::string v = std::to_string(rng_() % 100000);
      bool sent = false;
      if (i == bad) {
        sent = send_params("SELECT " + k_ + " / $1::int", "0");
        want.push_back("PGRES_FATAL_ERROR 22012");
      } else {
        std::string value;
        switch (rng_() % 3) {
          case 0:
            sent = send_params("SELECT " + k_ + ", $1::int", v);
            value = show({{k_, v}});
            break;
          case 1: {
            const char* values[] = {v.c_str()};
            sent = PQsendQueryPrepared(c(), "s1", 1, values, nullptr, nullptr, 0) == 1;
            value = show({{std::to_string(std::stol(v) + offset_)}});
            break;
          }
          default: {
            const char* values[] = {v.c_str()};
            sent = PQsendQueryPrepared(c(), "s2", 1, values, nullptr, nullptr, 0) == 1;
            value = show({{v + "-c" + k_}});
          }
        }
        want.push_back(i < bad ? value : "PGRES_PIPELINE_ABORTED");
      }
      if (!sent) broken("pipeline: send statement " + std::to_string(i));
    }
    if (PQpipelineSync(c()) != 1) broken("PQpipelineSync");
    const std::string seq = std::to_string(++seq_);
    if (!send_params("SELECT " + k_ + ", $1::int", seq) || PQpipelineSync(c()) != 1) broken("pipeline: 2nd segment");

    for (int i = 0; i < n; ++i) {
      expect_result("pipeline statement " + std::to_string(i) + " (error at " + std::to_string(bad) + ")",
                    want[size_t(i)], i == bad);
    }
    expect_result("pipeline: 1st Sync", "PGRES_PIPELINE_SYNC");
    expect_result("pipeline: 2nd segment", show({{k_, seq}}));
    expect_result("pipeline: 2nd Sync", "PGRES_PIPELINE_SYNC");
    if (PQexitPipelineMode(c()) != 1) broken("PQexitPipelineMode");
    simple();
  }

  // ---- d. a transaction block with a SET TimeZone of this client's own;
  // SHOW TimeZone always tells the client's last session-level value.
  void expect_tz(const std::string& want, const std::string& what) {
    expect_rows(query("SHOW TimeZone"), {{want}}, "SHOW TimeZone " + what);
  }

  void transaction() {
    const std::string zone = zones_[rng_() % 2];
    const int variant = int(rng_() % 3);
    if (variant == 2) {  // a session-level SET outside a block
      command("SET TimeZone = '" + zone + "'");
      tz_ = zone;
      expect_tz(tz_, "after SET");
      simple();
      return;
    }
    const bool local = variant == 0;
    command("BEGIN");
    command(std::string(local ? "SET LOCAL" : "SET") + " TimeZone = '" + zone + "'");
    expect_tz(zone, "in the block");
    const std::string seq = std::to_string(++seq_);
    expect_rows(query("SELECT " + k_ + ", " + seq + ", current_setting('TimeZone')"), {{k_, seq, zone}},
                "SELECT K, seq, TimeZone in the block");
    expect_rows(query("SELECT n FROM chaos_rows WHERE id = " + k_), {{"0"}}, "own row in the block");
    const bool commit = rng_() % 2 == 0;
    command(commit ? "COMMIT" : "ROLLBACK");
    if (!local && commit) tz_ = zone;
    expect_tz(tz_, std::string("after ") + (local ? "SET LOCAL" : "SET") + (commit ? ", COMMIT" : ", ROLLBACK"));
    const char* reported = PQparameterStatus(c(), "TimeZone");
    if (!reported || reported != tz_) {
      throw Failure{"TimeZone reported to the client: " + std::string(reported ? reported : "none") +
                    ", expected " + tz_};
    }
  }

  // ---- e. COPY out of a query naming the client, COPY in a batch of its
  // own into its own table.
  void copy() {
    const long n = 50 + 13L * id_ + long(rng_() % 50);
    const std::string out_sql =
        "COPY (SELECT " + k_ + ", g FROM generate_series(1, " + std::to_string(n) + ") g) TO STDOUT";
    if (PQsendQuery(c(), out_sql.c_str()) != 1) broken(out_sql);
    Result start = next_result(out_sql);
    if (!start || PQresultStatus(start.get()) != PGRES_COPY_OUT) {
      if (start && PQresultStatus(start.get()) == PGRES_FATAL_ERROR) {
        broken(sqlstate_of(start.get()), trim(PQresultErrorMessage(start.get())), out_sql);
      }
      if (!start) broken(out_sql);
      throw Failure{out_sql + ": " + PQresStatus(PQresultStatus(start.get())) + ", expected PGRES_COPY_OUT"};
    }
    long rows = 0, sum = 0;
    const auto deadline = Clock::now() + kAnswerLimit;
    for (;;) {
      char* buf = nullptr;
      const int got = PQgetCopyData(c(), &buf, 1);
      if (got > 0) {
        const std::string line(buf, size_t(got));
        PQfreemem(buf);
        const auto tab = line.find('\t');
        if (tab == std::string::npos || line.substr(0, tab) != k_) {
          throw Failure{"COPY TO: row '" + trim(line) + "' is not this client's"};
        }
        ++rows;
        sum += std::atol(line.c_str() + tab + 1);
        continue;
      }
      if (got < 0) break;  // -1 done, -2 broken: the result says which
      if (Clock::now() > deadline) throw Failure{"COPY TO: no data within 10 s"};
      pollfd p{PQsocket(c()), POLLIN, 0};
      ::poll(&p, 1, 100);
      if (PQconsumeInput(c()) == 0) break;
    }
    collect(out_sql + " (end)", PGRES_COMMAND_OK);
    if (rows != n || sum != n * (n + 1) / 2) {
      throw Failure{"COPY TO: " + std::to_string(rows) + " rows summing to " + std::to_string(sum) + ", expected " +
                    std::to_string(n) + " rows summing to " + std::to_string(n * (n + 1) / 2)};
    }

    const std::string batch = std::to_string(++seq_);
    const int m = 20 + int(rng_() % 200);
    const std::string in_sql = "COPY chaos_copy_" + k_ + " FROM STDIN";
    if (PQsendQuery(c(), in_sql.c_str()) != 1) broken(in_sql);
    start = next_result(in_sql);
    if (!start || PQresultStatus(start.get()) != PGRES_COPY_IN) {
      if (start && PQresultStatus(start.get()) == PGRES_FATAL_ERROR) {
        broken(sqlstate_of(start.get()), trim(PQresultErrorMessage(start.get())), in_sql);
      }
      if (!start) broken(in_sql);
      throw Failure{in_sql + ": " + PQresStatus(PQresultStatus(start.get())) + ", expected PGRES_COPY_IN"};
    }
    std::string data;
    for (int i = 1; i <= m; ++i) data += batch + "\t" + std::to_string(i) + "\n";
    if (PQputCopyData(c(), data.data(), int(data.size())) != 1 || PQputCopyEnd(c(), nullptr) != 1) {
      // The server (or pgmux) may have said why before the connection went.
      Answer a = read_answer(in_sql);
      if (a.error) broken(a.sqlstate, a.message, in_sql);
      broken(in_sql + ": sending");
    }
    collect(in_sql, PGRES_COMMAND_OK);
    expect_rows(query("SELECT count(*), sum(i) FROM chaos_copy_" + k_ + " WHERE batch = " + batch),
                {{std::to_string(m), std::to_string(m * (m + 1) / 2)}}, "rows of the COPY FROM batch");
  }

  // ---- f. cancel a statement that runs on a server.
  void cancel() {
    const std::string sql = "SELECT pg_sleep(5) /* chaos " + k_ + "." + std::to_string(++seq_) + " */";
    if (PQsendQuery(c(), sql.c_str()) != 1) broken(sql);
    // pgmux forwards a cancel only while the statement runs on a server
    // linked to the client (README, Pooling modes > Cancel): with 3 servers
    // for 12 clients it may still be waiting for one, so wait until
    // PostgreSQL runs it (or it ended: its server died, or someone else's
    // cancel came first).
    std::this_thread::sleep_for(50ms);
    auto ended = [&] { return PQconsumeInput(c()) == 0 || !PQisBusy(c()); };
    if (!wait_until([&] { return ended() || sh_.running(sql); }, kAnswerLimit, 20ms) || ended()) {
      Answer a = read_answer(sql);
      if (a.error) broken(a.sqlstate, a.message, sql + " (before its cancel)");
      throw Failure{sql + ": never seen running, then " + PQresStatus(a.status)};
    }
    PGcancel* handle = PQgetCancel(c());
    if (!handle) throw Failure{"PQgetCancel failed"};
    char errbuf[256] = {0};
    const int sent = PQcancel(handle, errbuf, sizeof errbuf);
    PQfreeCancel(handle);
    if (sent != 1) throw Failure{std::string("PQcancel: ") + errbuf};
    Answer a = read_answer(sql);
    if (!a.error) throw Failure{sql + ": not cancelled (" + PQresStatus(a.status) + ")"};
    if (a.sqlstate != "57014") broken(a.sqlstate, a.message, sql + ", cancelled");
    simple();  // the connection works after it
  }

  // ---- g. vanish in a transaction that holds the client's row lock: pgmux
  // rolls it back, so the reconnected client can update the row at once
  // and finds it unchanged.
  void disconnect() {
    command("BEGIN");
    expect_rows(query("UPDATE chaos_rows SET n = n + 1 WHERE id = " + k_ + " RETURNING n"), {{"1"}},
                "UPDATE own row");
    connect();  // PQfinish without COMMIT
    expect_rows(query("UPDATE chaos_rows SET n = n WHERE id = " + k_ + " RETURNING n"), {{"0"}},
                "own row after the disconnect");
  }

  Shared& sh_;
  Slot& slot_;
  const int id_;
  const std::string k_;  // id_ as text
  std::mt19937 rng_;
  const long offset_;    // s1 adds it: 100000 * id, so no two clients' answers meet
  const std::array<std::string, 2> zones_;  // TimeZones no other client uses
  Conn conn_;
  bool prepared_ = false;  // s1 and s2 on this connection
  std::string tz_;         // the client's session-level TimeZone
  long seq_ = 0;
};

// Every kChaosPeriod until `deadline`, terminates one backend of `db` that is
// done logging in (a login cut short is another story: pgmux then fails new
// clients for server_login_retry). Returns how many it terminated.
int chaos(const std::string& db, Clock::time_point deadline, std::string& error) {
  Conn su = connect_raw(superuser_conninfo() + " options='-c statement_timeout=5000'");
  if (PQstatus(su.get()) != CONNECTION_OK) {
    error = "chaos thread: " + trim(PQerrorMessage(su.get()));
    return 0;
  }
  const std::string sql =
      "SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity WHERE datname = '" + db +
      "' AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND state IS NOT NULL "
      "ORDER BY random() LIMIT 1) victim";
  int terminated = 0;
  while (Clock::now() + kChaosPeriod < deadline) {
    std::this_thread::sleep_for(kChaosPeriod);
    auto r = try_exec(su.get(), sql);
    if (!r.ok) {
      error = "chaos thread: " + r.message;
      return terminated;
    }
    if (r.rows.size() == 1 && r.rows[0][0] == "t") ++terminated;
  }
  return terminated;
}

PgmuxConfig chaos_config(const ScratchDatabase& db) {
  PgmuxConfig c;
  c.pgmux = "workers = 2\npool_mode = \"transaction\"\ndefault_pool_size = 3\nquery_wait_timeout = \"20s\"\n";
  c.rest = auth_section("scram-sha-256") + "\n" + database_section("chaos", "dbname = \"" + db.name() + "\"\n") +
           "\n[admin]\nusers = [\"admin\"]\n";
  c.userlist = plaintext_userlist() + userlist_line("admin", "admin_pw");
  return c;
}

// SHOW POOLS, summed over the workers' rows of database entry `db`.
std::map<std::string, long> pool_totals(PGconn* admin, const std::string& db) {
  std::map<std::string, long> totals;
  Result r(PQexec(admin, "SHOW POOLS"));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) return {{"error", 1}};
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    if (db != PQgetvalue(r.get(), i, PQfnumber(r.get(), "database"))) continue;
    for (const char* col : {"cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_login"})
      totals[col] += std::atol(PQgetvalue(r.get(), i, PQfnumber(r.get(), col)));
  }
  return totals;
}

std::string show(const std::map<std::string, long>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += (s.empty() ? "" : " ") + k + "=" + std::to_string(v);
  return s;
}

}  // namespace

TEST_CASE("chaos: mixed clients and killed servers never see another client's answers", "[chaos][workers]") {
  const char* env_seed = std::getenv("PGMUX_CHAOS_SEED");
  const uint32_t seed = env_seed ? uint32_t(std::strtoul(env_seed, nullptr, 10)) : std::random_device{}();
  std::cerr << "chaos: seed " << seed << " (PGMUX_CHAOS_SEED=" << seed << " replays each client's actions)\n";
  INFO("seed " << seed);

  ScratchDatabase db("chaos");
  Shared sh;
  sh.db = db.name();
  {
    auto direct = connect(direct_conninfo(db.name(), "scram_user", "scram_pw"));
    sh.default_tz = scalar(direct.get(), "SHOW TimeZone");
    exec(direct.get(), "CREATE TABLE chaos_rows (id int PRIMARY KEY, n int NOT NULL)");
    exec(direct.get(),
         "INSERT INTO chaos_rows SELECT g, 0 FROM generate_series(1, " + std::to_string(kClients) + ") g");
    for (int k = 1; k <= kClients; ++k)
      exec(direct.get(), "CREATE TABLE chaos_copy_" + std::to_string(k) + " (batch bigint, i int)");
  }
  REQUIRE_FALSE(contains(sh.default_tz, "Etc/GMT"));  // the clients' zones are told apart from it
  Pgmux mux(chaos_config(db));
  sh.conninfo = mux.conninfo("chaos", "scram_user", "scram_pw");
  sh.observer = superuser();

  std::array<Slot, kClients> slots;
  int terminated = 0;
  std::string chaos_error;
  const auto t0 = Clock::now();
  sh.deadline = t0 + kLoad;
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kClients; ++i) {
      threads.emplace_back([&, i] { Client(sh, slots[size_t(i)], i + 1, seed).run(); });
    }
    threads.emplace_back([&] { terminated = chaos(db.name(), sh.deadline, chaos_error); });

    // The watchdog: a client stuck in one action fails the test with that
    // action's name, and its socket is shut down so libpq returns; should it
    // still not return (PQcancel has a socket of its own), killing pgmux
    // frees every call waiting on it.
    const double stuck = std::chrono::duration<double>(kStuckLimit).count();
    bool all_finished = wait_until(
        [&] {
          bool finished = true;
          for (int i = 0; i < kClients; ++i) {
            Slot& s = slots[size_t(i)];
            finished = finished && s.finished;
            const int action = s.action.load();
            const double t = s.seconds_in_action();
            if (t > stuck && !s.reported && action >= 0) {
              s.reported = true;
              sh.fail("client " + std::to_string(i + 1) + " stuck for 20 s in " + kActionNames[size_t(action)]);
              s.shut_down();
            }
            if (t > stuck + 5) mux.signal(SIGKILL);
          }
          return finished;
        },
        kLoad + kStuckLimit + 10s, 100ms);
    if (!all_finished) {
      sh.fail("clients still running long after the deadline");
      mux.signal(SIGKILL);
    }
  }
  const double load_seconds = seconds_since(t0);

  std::string counts;
  int lost = 0;
  for (size_t a = 0; a < kActions; ++a) {
    counts += std::string("\n  ") + kActionNames[a] + ": " + std::to_string(sh.done[a]) + " done, " +
              std::to_string(sh.cut[a]) + " cut short by a lost server";
  }
  std::string losses;
  for (const auto& [state, n] : sh.losses) {
    lost += n;
    losses += "\n  " + (state.empty() ? std::string("(no SQLSTATE)") : state) + " x" + std::to_string(n) + ", e.g. " +
              sh.loss_messages[state];
  }
  std::cerr << "chaos: " << load_seconds << " s of load, " << terminated << " backends terminated, "
            << sh.reconnects << " reconnects after a lost server" << counts << losses << "\n";
  INFO("actions:" << counts);
  INFO("lost servers seen by clients:" << losses);
  INFO("backends terminated: " << terminated << ", reconnects: " << sh.reconnects);
  {
    std::lock_guard<std::mutex> lock(sh.m);
    std::string failures;
    for (size_t i = 0; i < sh.failures.size() && i < 10; ++i) failures += "\n  " + sh.failures[i];
    INFO(sh.failures.size() << " failure(s):" << failures);
    CHECK(sh.failures.empty());
  }
  CHECK(chaos_error.empty());
  for (size_t a = 0; a < kActions; ++a) {
    INFO(kActionNames[a]);
    CHECK(sh.done[a] >= 3);
  }
  CHECK(terminated >= 5);
  // A server serves one client at a time: each backend terminated costs at
  // most one client its connection.
  CHECK(lost <= terminated);
  REQUIRE(mux.alive());

  // Afterwards: no client, no busy server in pgmux; no transaction and no
  // lock on PostgreSQL; the clients' uncommitted updates are gone.
  Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  std::map<std::string, long> pools;
  const bool pools_at_rest = wait_until(
      [&] {
        pools = pool_totals(admin.get(), "chaos");
        return pools["cl_active"] == 0 && pools["cl_waiting"] == 0 && pools["sv_active"] == 0 &&
               !pools.count("error");
      },
      5s, 50ms);
  {
    INFO("SHOW POOLS: " << show(pools));
    CHECK(pools_at_rest);
    CHECK(pools["sv_idle"] + pools["sv_used"] + pools["sv_login"] <= 3);
  }
  const std::string busy_sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db.name() +
                               "' AND state IS DISTINCT FROM 'idle'";
  const std::string locks_sql =
      "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.datname = '" + db.name() +
      "'";
  std::string busy, locks;
  const bool server_at_rest = wait_until(
      [&] {
        busy = scalar(sh.observer.get(), busy_sql);
        locks = scalar(sh.observer.get(), locks_sql);
        return busy == "0" && locks == "0";
      },
      5s, 50ms);
  {
    INFO("backends of the database not idle: " << busy << ", their locks: " << locks);
    CHECK(server_at_rest);
  }
  auto after = connect(sh.conninfo);
  CHECK(scalar(after.get(), "SELECT count(*) FROM chaos_rows WHERE n <> 0") == "0");
  CHECK(scalar(after.get(), "SHOW TimeZone") == sh.default_tz);
  after.reset();
  admin.reset();
  sh.observer.reset();
  mux.finish();
}
