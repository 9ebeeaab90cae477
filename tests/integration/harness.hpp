// Integration-test harness: the PostgreSQL fixture's environment, a pgmux child
// process with its own temp directory, libpq helpers and raw sockets.
//
// Tests run against a real PostgreSQL started by tests/integration/pg_fixture.sh
// (ctest fixture `pg`); the fixture's env file is found through
// $PGMUX_FIXTURE_ENV and the binary under test through $PGMUX_BIN (both set by
// ctest; compiled-in defaults point into the build tree for manual runs).
//
// Catch2 assertions are not thread-safe: helpers meant for worker threads
// (connect_raw, try_exec, ...) never assert; the *_or_fail ones do.
#pragma once

#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace it {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------
// Fixture

struct FixtureEnv {
  std::string pg_host;  // 127.0.0.1
  int pg_port = 0;
  std::string pg_socket_dir;
  std::string pg_bin;  // directory with psql, pgbench, ...
  std::string pg_data;
  std::string scram_user_verifier;  // "SCRAM-SHA-256$4096:..." from pg_authid
  std::string md5_user_hash;        // "md5..." from pg_authid
  std::string cancel_user_verifier;
  int replica_port = 0;  // 0 when the fixture has no replica
  std::string replica_data;
  std::string path;                          // the env file
  std::map<std::string, std::string> vars;  // everything in the file
};

// Reads $PGMUX_FIXTURE_ENV once (fails the test with a hint when missing).
const FixtureEnv& fixture();
// $PGMUX_BIN (fails the test when it is not an executable).
const std::string& pgmux_bin();

// A TCP port on 127.0.0.1 that was free a moment ago (bind to 0).
int free_port();

// Parses a shell-sourceable KEY='VALUE' file as written by pg_fixture.sh.
std::map<std::string, std::string> parse_env_file(std::string_view text);

// ---------------------------------------------------------------------------
// Small utilities

std::string read_file(const std::string& path);
void write_file(const std::string& path, std::string_view content);
// Replaces every occurrence of `from` in `s`.
std::string replace_all(std::string s, std::string_view from, std::string_view to);
bool contains(std::string_view haystack, std::string_view needle);
// Without leading and trailing whitespace.
std::string trim(std::string s);
// Polls `pred` every `step` until it is true or `timeout` passed.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = 20ms);
double seconds_since(Clock::time_point t0);

// A fresh directory under /tmp (short paths: unix socket names are limited to
// 107 bytes). Removed by the destructor unless keep() was called.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
  void keep() { keep_ = true; }

 private:
  std::string path_;
  bool keep_ = false;
};

// Runs a program to completion; stdout and stderr are captured together.
struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  int signal = 0;
  bool timed_out = false;
  std::string output;
};
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& extra_env = {},
                          std::chrono::milliseconds timeout = 60s);

// ---------------------------------------------------------------------------
// Config text

// The parts of a pgmux config. The harness writes
//   [pgmux]
//   listen = ["127.0.0.1:<port>", "unix:<dir>/.s.PGSQL.<port>"]
//   shutdown_timeout = "2s"          (unless `pgmux` sets it)
//   <pgmux>
//   <rest>
// and `userlist` to <dir>/userlist.txt. In `pgmux` and `rest` these
// placeholders are replaced: @USERLIST@ (absolute path of userlist.txt),
// @DIR@, @PG_HOST@, @PG_PORT@, @REPLICA_PORT@, @PORT@ (pgmux's port).
struct PgmuxConfig {
  std::string pgmux;     // extra lines for the [pgmux] table
  std::string rest;      // [auth], [databases.*], [log], ...
  std::string userlist;  // contents of userlist.txt
  // The TCP port; 0 = a free one. With a fixed port (another pgmux may
  // listen there, so_reuseport) readiness is read from the log.
  int port = 0;
  // The TCP listen host ("*" = every address, dual-stack); clients still
  // connect to 127.0.0.1.
  std::string listen_host = "127.0.0.1";
};

// "[auth]\ntype = \"<type>\"\nfile = \"@USERLIST@\"\n"
std::string auth_section(std::string_view type);
// "[databases.<name>]\nhost = \"@PG_HOST@\"\nport = @PG_PORT@\n" + extra lines
std::string database_section(std::string_view name, std::string_view extra = {});
// One PgBouncer-format userlist line: "user" "secret" (quotes doubled).
std::string userlist_line(std::string_view user, std::string_view secret);
// Plaintext passwords of the fixture's roles (scram_user, md5_user,
// cancel_user).
std::string plaintext_userlist();
// A session-pooling config for database `app` with the given auth type.
PgmuxConfig session_config(std::string_view auth_type, std::string userlist,
                           std::string extra_pgmux = {}, std::string extra_rest = {});

// "<pid>_<random>_<counter>": names unique across tests and runs.
std::string unique_suffix();

// A database of its own on the fixture's primary, owned by scram_user, so a
// test can count its backends without seeing other tests' connections.
// Dropped (WITH (FORCE)) by the destructor: declare it before the Pgmux.
class ScratchDatabase {
 public:
  explicit ScratchDatabase(std::string_view tag);
  ~ScratchDatabase();
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;
  const std::string& name() const { return name_; }
  // pgbench -i -s 1 directly on PostgreSQL (as scram_user); REQUIREs success.
  void pgbench_init() const;

 private:
  std::string name_;
};

// ---------------------------------------------------------------------------
// The pooler under test

class Pgmux {
 public:
  // Writes the config, starts `$PGMUX_BIN --config <dir>/pgmux.toml` and
  // waits (10 s) until its TCP port accepts connections. Fails the test with
  // the log when the process exits or never listens.
  explicit Pgmux(PgmuxConfig config);
  // SIGTERM, then SIGKILL after 5 s; reaps the child.
  ~Pgmux();
  Pgmux(const Pgmux&) = delete;
  Pgmux& operator=(const Pgmux&) = delete;

  int port() const { return port_; }
  int pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/pgmux.toml"; }
  std::string log_path() const { return dir_ + "/pgmux.log"; }
  std::string unix_socket_path() const;
  std::string log_text() const;
  std::string config_text() const;

  // libpq connection strings through pgmux. `password` empty = none sent.
  std::string conninfo(std::string_view db, std::string_view user,
                       std::string_view password = {}, std::string_view extra = {}) const;
  std::string unix_conninfo(std::string_view db, std::string_view user,
                            std::string_view password = {}, std::string_view extra = {}) const;

  bool alive();       // the child has not exited
  void signal(int sig);
  // Stops the process (SIGTERM, SIGKILL after `grace`) and returns its wait
  // status (as from waitpid), or the status it already exited with.
  int stop(std::chrono::milliseconds grace = 5s);
  // CHECKs that the log has no critical / sanitizer lines.
  void expect_clean_log() const;
  // stop() + CHECK a clean exit (status 0) + expect_clean_log(). Close the
  // test's connections first, or it waits for shutdown_timeout (2 s).
  void finish();

 private:
  void start();
  void fail_start(const std::string& why);

  std::string dir_;
  int port_ = 0;
  int pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

// pgbench `args` through `mux` (or the pgmux listening on 127.0.0.1:`port`)
// to database entry `db`, as scram_user (password scram_pw).
ProcessResult pgbench_through(int port, const std::string& db, const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout = 60s);
inline ProcessResult pgbench_through(const Pgmux& mux, const std::string& db, const std::vector<std::string>& args,
                                     std::chrono::milliseconds timeout = 60s) {
  return pgbench_through(mux.port(), db, args, timeout);
}

// Log lines that must never appear (case-insensitive "crit", sanitizer
// reports). Returns the offending lines.
std::vector<std::string> bad_log_lines(std::string_view log);

// ---------------------------------------------------------------------------
// libpq

struct PGconnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, PGconnDeleter>;
struct PGresultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, PGresultDeleter>;

using Rows = std::vector<std::vector<std::string>>;  // NULL reads as ""

// No assertions (thread-safe): returns the connection whatever its status.
Conn connect_raw(const std::string& conninfo);
// The client's own port of its TCP connection (REQUIREs getsockname).
int local_port(PGconn* c);
// REQUIREs CONNECTION_OK (message includes PQerrorMessage).
Conn connect(const std::string& conninfo);
// REQUIREs failure; returns PQerrorMessage (trailing whitespace trimmed).
std::string connect_error(const std::string& conninfo);
// Drops libpq's "connection to server at "...", port N failed: " /
// "connection to server on socket "..." failed: " prefixes and trims.
std::string strip_conn_prefix(std::string msg);

struct QueryOutcome {
  bool ok = false;
  ExecStatusType status = PGRES_FATAL_ERROR;
  std::string sqlstate;  // empty when none (e.g. the connection broke)
  std::string message;   // PQresultErrorMessage or PQerrorMessage
  Rows rows;
  std::string cmd_status;
};
// A result's rows as text (no assertions, thread-safe).
Rows rows_of(const PGresult* r);
// One cell of a console command's answer (`show`, e.g. "SHOW POOLS"): the
// `column` of the first row whose `key_column` is `key`; "no such cell"
// when there is none.
// How many times `what` occurs in `text` (log lines, say).
size_t count_of(const std::string& text, const std::string& what);
std::string show_cell(PGconn* console, const std::string& show, const std::string& key_column,
                      const std::string& key, const std::string& column);
// No assertions (thread-safe).
QueryOutcome try_exec(PGconn* conn, const std::string& sql);
// REQUIREs success; returns the rows.
Rows exec(PGconn* conn, const std::string& sql);
// REQUIREs success and one row, one column.
std::string scalar(PGconn* conn, const std::string& sql);
// REQUIREs failure; returns the outcome (sqlstate + message).
QueryOutcome exec_error(PGconn* conn, const std::string& sql);

// Direct superuser connection to the fixture's primary (unix socket, trust).
Conn superuser(std::string_view db = "postgres");
std::string superuser_conninfo(std::string_view db = "postgres");
// Direct connection to the fixture's primary over TCP as `user`.
std::string direct_conninfo(std::string_view db, std::string_view user,
                            std::string_view password = {});

// A primary and a streaming replica of a test's own (pg_fixture.sh start
// DIR --replica), for tests that stop, pause or promote servers. Stopped and
// deleted by the destructor. Takes about 2 s to start.
class PrivateCluster {
 public:
  PrivateCluster();
  ~PrivateCluster();
  PrivateCluster(const PrivateCluster&) = delete;
  PrivateCluster& operator=(const PrivateCluster&) = delete;

  int primary_port() const { return primary_port_; }
  int replica_port() const { return replica_port_; }
  // pg_fixture.sh ctl: stop-primary, start-primary, stop-replica,
  // start-replica, promote-replica. REQUIREs success.
  void ctl(const std::string& action, const std::vector<std::string>& args = {});
  // Superuser over the unix socket (trust) to the primary or the replica.
  std::string superuser_conninfo(bool replica, std::string_view db = "app") const;

 private:
  TempDir dir_;
  int primary_port_ = 0, replica_port_ = 0;
  std::string socket_dir_;
  bool started_ = false;
};

// A throwaway PKI made with the openssl command: a CA, a second unrelated
// CA, and certificates issued by either (REQUIREs success).
struct Pki {
  TempDir dir;
  std::string ca, ca_key, other_ca, other_ca_key;
  Pki();
  // Signed by `ca` (or the other CA); `san` e.g. "DNS:localhost,IP:127.0.0.1"
  // (empty: none). Returns the certificate path; its key is key_of(cert),
  // mode 0600 (libpq refuses a group/world readable key).
  std::string issue(const std::string& name, const std::string& cn, const std::string& san,
                    bool by_other_ca = false);
  static std::string key_of(const std::string& crt) { return crt.substr(0, crt.size() - 4) + ".key"; }

 private:
  void make_ca(const std::string& crt, const std::string& key, const std::string& cn);
};

// Quotes a libpq conninfo value.
std::string conninfo_quote(std::string_view v);

// ---------------------------------------------------------------------------
// Raw sockets (protocol abuse tests)

class RawSocket {
 public:
  RawSocket() = default;
  ~RawSocket();
  RawSocket(RawSocket&& o) noexcept;
  RawSocket& operator=(RawSocket&& o) noexcept;

  static RawSocket connect_tcp(int port, const std::string& host = "127.0.0.1");
  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  // Sends all bytes; false if the peer is gone.
  bool send(std::string_view bytes);

  struct ReadResult {
    std::string data;
    bool closed = false;  // EOF or connection reset seen
    bool timed_out = false;
    double seconds = 0;   // until closed or timeout
  };
  // Reads until the peer closes or `timeout` passes.
  ReadResult read_until_closed(std::chrono::milliseconds timeout);

  struct Message {
    char type = 0;
    std::string payload;  // without type and length
  };
  // Reads one backend message; nullopt on timeout / close.
  std::optional<Message> read_message(std::chrono::milliseconds timeout);
  void close();

 private:
  explicit RawSocket(int fd) : fd_(fd) {}
  bool read_exact(std::string& out, size_t n, Clock::time_point deadline);
  int fd_ = -1;
  std::string buffered_;
};

// A TCP relay on loopback between pgmux and PostgreSQL (a network fault
// put in, not a mock: everything it passes is PostgreSQL's). `dribble`
// passes the server's bytes on one to three at a time; `hold_cancels`
// takes CancelRequest connections and neither forwards nor closes them, as
// a PostgreSQL that never answers a cancel would (until the relay ends).
class TcpRelay {
 public:
  struct Options {
    bool dribble = false;
    bool hold_cancels = false;
  };
  TcpRelay(const std::string& host, int port, Options options);
  ~TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;
  int port() const { return listen_port_; }
  int cancels_held() const { return cancels_held_.load(); }

 private:
  void accept_loop();
  void serve(int client);
  void track(int fd);
  static void pump(int from, int to, bool dribble);

  std::string host_;
  int port_;
  Options options_;
  int listen_fd_ = -1;
  int listen_port_ = 0;
  std::atomic<int> cancels_held_{0};
  std::mutex mu_;
  std::vector<int> fds_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
  std::thread acceptor_;  // last
};

// Wire-format builders.
std::string be32(uint32_t v);
std::string startup_packet(const std::vector<std::pair<std::string, std::string>>& params,
                           uint32_t protocol = 196608);
// An ErrorResponse payload's field (e.g. 'C' for SQLSTATE, 'M' message).
std::string error_field(std::string_view payload, char field);

// ---------------------------------------------------------------------------

template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout, std::chrono::milliseconds step) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

// Counts client backends matching `where` in pg_stat_activity every 10 ms
// (direct superuser connection) and remembers the maximum.
class BackendMonitor {
 public:
  explicit BackendMonitor(std::string where)
      : where_(std::move(where)), thread_([this] { run(); }) {}
  ~BackendMonitor() { stop(); }
  void stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int max() const { return max_.load(); }
  int samples() const { return samples_.load(); }
  const std::string& error() const { return error_; }  // after stop()

 private:
  void run() {
    Conn su = connect_raw(conninfo_);
    if (PQstatus(su.get()) != CONNECTION_OK) {
      error_ = PQerrorMessage(su.get());
      return;
    }
    const std::string sql =
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND (" +
        where_ + ")";
    while (!done_.load()) {
      auto r = try_exec(su.get(), sql);
      if (!r.ok) {
        error_ = r.message;
        return;
      }
      int n = std::stoi(r.rows.at(0).at(0));
      int prev = max_.load();
      while (n > prev && !max_.compare_exchange_weak(prev, n)) {
      }
      ++samples_;
      std::this_thread::sleep_for(10ms);
    }
  }

  std::string where_;
  std::string conninfo_ = superuser_conninfo();
  std::atomic<bool> done_{false};
  std::atomic<int> max_{0};
  std::atomic<int> samples_{0};
  std::string error_;
  std::thread thread_;  // last
};

}  // namespace it
