// A worker owns one libuv loop and every connection and pool on it.
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "auth/hba.hpp"
#include "auth/scram.hpp"
#include "auth/userlist.hpp"
#include "conf/config.hpp"
#include "pool/list.hpp"
#include "pool/pool.hpp"
#include "src/admin.hpp"
#include "src/auth_query.hpp"
#include "src/client.hpp"
#include "src/health.hpp"
#include "src/hub.hpp"
#include "src/prepared.hpp"
#include "src/server.hpp"
#include "src/tls.hpp"

namespace pgmux {

class Listener;
class CancelSender;

// Why a connection ends: decides the log line, what the peer is told, and
// whether a linked server connection may be reused.
enum class CloseReason {
  client_terminate,     // client sent Terminate
  client_gone,          // client socket EOF / error
  login_timeout,        // client_login_timeout
  auth_failed,          // wrong password / unknown user / unknown database
  protocol_violation,   // malformed packet from the client
  too_many_clients,     // max_client_conn, max_concurrent_logins, max_{db,user}_client_connections
  wait_failed,          // query_wait_timeout or server login failing
  server_gone,          // linked server died
  shutdown,             // pgmux shutting down
  internal_error,
  cancel_request,       // a cancel connection is done
  unsupported,          // a feature we refuse (e.g. replication connections)
  timeout,              // query_timeout, client_idle_timeout, idle_transaction_timeout
  killed,               // KILL / KILL_CLIENT on the admin console
  disabled,             // login to a database DISABLEd on the admin console
  server_outdated,      // server_fast_close: its server was due to be replaced
};
const char* to_string(CloseReason r);

struct PoolKey {
  std::string database;  // the client's database name
  std::string user;      // the server-side user
  uint16_t backend = 0;  // routed databases: 0 = configured host, 1.. = replicas
  bool health = false;   // pgmux's own pool (health checker, or auth lookups)
  bool auth = false;     // ... for auth_query lookups (health is set too)
  bool operator<(const PoolKey& o) const {
    return std::tie(database, user, backend, health, auth) <
           std::tie(o.database, o.user, o.backend, o.health, o.auth);
  }
};

// False with the reason ("userlist /x: ...", "[tls] cert /x: ...").
bool load_config_files(const conf::Config& c, ConfigFiles& out, std::string& error);

class Worker : public pool::Connector {
 public:
  // Worker `index` of `hub` (index 0 owns the listeners).
  Worker(Hub& hub, size_t index, std::shared_ptr<const conf::Config> config, ConfigFiles files);
  ~Worker() override;

  uv_loop_t* loop() { return &loop_; }
  Hub& hub() const { return hub_; }
  size_t index() const { return index_; }
  // Every worker of the process, this one included. Another worker's state
  // may be read only inside hub().read_all.
  const std::vector<Worker*>& all() const { return hub_.workers(); }
  // Runs fn on this worker's thread, soon (thread-safe). False (fn
  // dropped) if the worker has stopped.
  bool post(std::function<void(Worker&)> fn);
  // Hub::read_all asks this worker to park; false if it has stopped.
  bool ask_park();
  // Parks now if a read_all asked (a worker waiting for its own turn).
  void park_if_asked();
  // Clients sent to this worker and not yet gone (Hub::pick_worker).
  std::atomic<int64_t> load{0};
  // TLS contexts in force ([tls] towards clients, [server_tls] towards
  // servers); null when that side does not use TLS.
  const std::shared_ptr<const tls::Context>& client_tls() const { return files_.client_tls; }
  const std::shared_ptr<const tls::Context>& server_tls() const { return files_.server_tls; }
  const conf::Config& config() const { return *config_; }
  // server_fast_close: a session server due to be replaced reached the end
  // of a transaction; its session is closed after this loop turn's I/O.
  void fast_close_due() { fast_close_due_ = true; }
  // The [pgmux] tcp_keepalive and tcp_socket_buffer settings on a client's or server's socket
  // (`who` names the connection in the warning if the kernel refuses one).
  void set_tcp_options(Socket& s, const std::string& who) const;
  const auth::Userlist* userlist() const { return files_.userlist.get(); }

  // Binds every configured listen address (the first worker only); false
  // (with a logged reason) if any fails.
  bool start();
  // Runs the loop until the worker has stopped.
  int run();
  // Graceful (SIGTERM): stop accepting; running transactions finish, idle
  // clients are closed; everything left is closed at shutdown_timeout.
  // `wait_for_clients` (SHUTDOWN WAIT_FOR_CLIENTS): idle clients are not
  // closed either, pgmux waits for them to disconnect.
  void shutdown_gracefully(bool wait_for_clients = false);
  // Immediate: close everything and stop the loop.
  void shutdown_now();
  // SIGHUP / RELOAD: re-read the config file and the userlist and apply
  // them (on every worker) without dropping clients. An invalid new config
  // is refused (false, with the reason logged and in `error`); the old one
  // stays in force.
  bool reload(std::string* error = nullptr);
  // Console SET: the config with one [pgmux] setting changed, applied like a
  // reload (until the next reload re-reads the file), on every worker.
  bool set_setting(std::string_view key, std::string_view value, std::string& error);

  // --- used by connections ----------------------------------------------
  // `owner`: the config `db` lives in (default: the current one).
  pool::Pool& pool_for(const PoolKey& key, const conf::DatabaseConfig& db,
                       const std::shared_ptr<const conf::Config>& owner = nullptr);
  // Routing state of a database entry with replicas or
  // target_session_attrs; nullptr for a plain one.
  std::shared_ptr<RouteState> route_for(const conf::DatabaseConfig& db);
  // The pool the health checker of `backend` uses.
  pool::Pool& health_pool(RouteState& route, size_t backend);
  // The pool auth_query lookups for database entry `db` use.
  pool::Pool& auth_pool(const conf::DatabaseConfig& db, const std::string& client_database);
  AuthQuery& auth_query() { return *auth_query_; }
  // The hba rules in force ([auth] type = "hba"), else null.
  const auth::HbaRules* hba() const { return files_.hba.get(); }
  const auth::IdentMap* ident() const { return files_.ident.get(); }
  // A user's secret: the userlist's, else the last one auth_query found.
  // `database`: the database name of the pool that logs in (auth_query
  // answers are kept per client database).
  const auth::Secret* find_secret(const std::string& user, const std::string& database) const;
  // A health check (of the first worker) finished: this worker's router
  // takes the outcome, and every other worker's router of the database.
  void check_done(RouteState& route, size_t backend, const CheckSample& sample);
  // Counts `c` against max_client_conn (over every worker) if there is
  // room; false if not.
  bool try_count_client(ClientConnection* c);
  // Clients between accept and the end of their login (every worker's).
  size_t logins_in_progress() const { return size_t(std::max<int64_t>(0, hub_.logins.load(std::memory_order_relaxed))); }
  // Closes `c` with `error` at `when` (auth_failure_delay); forgotten if the
  // client is closed before.
  void close_later(ClientConnection* c, pool::TimePoint when, CloseReason reason, proto::ErrorFields error);
  void uncount_client(ClientConnection* c);
  void client_started(ClientConnection* c);
  void client_logged_in(ClientConnection* c);
  void client_finished(ClientConnection* c);
  // Issues a fresh BackendKeyData for the client and registers it.
  void register_cancel_key(ClientConnection* c, uint32_t& pid, uint32_t& key);
  void unregister_cancel_key(uint32_t pid);
  void handle_cancel(uint32_t pid, uint32_t key);
  // Cancels whatever the server is running (its own key, new connection).
  void cancel_server_query(ServerConnection* s);
  void cancel_finished(CancelSender* c);
  void server_finished(ServerConnection* s);
  // SCRAM keys recovered from a client's login to `database`, for
  // pass-through by that database's pools.
  void remember_scram_keys(const std::string& database, const std::string& user, const auth::ScramKeys& keys);
  const auth::ScramKeys* scram_keys(const std::string& database, const std::string& user) const;
  // A verifier for a plaintext userlist password, computed once.
  const auth::ScramVerifier& verifier_for_plain(const std::string& user,
                                                const std::string& password);

  // pool::Connector
  bool open_server(pool::Pool& pool, proto::ErrorFields& error) override;
  pool::TimePoint now() const override { return pool::Clock::now(); }
  void defer_serve(pool::Pool& pool) override;
  void forget_pool(pool::Pool& pool) override;
  void slot_wanted(pool::Pool& pool) override;
  void slot_unwanted(pool::Pool& pool) override;
  bool give_slot_away(pool::Pool& pool, pool::PoolServer* s) override;

  // --- introspection (admin console, metrics) -----------------------------
  // f(const PoolKey&, const pool::Pool&, const conf::DatabaseConfig&)
  template <class F>
  void for_each_pool(F&& f) const {
    for (const auto& [key, entry] : pools_) f(key, *entry.pool, *entry.db);
  }
  // f(const ClientConnection&) / f(const ServerConnection&)
  template <class F>
  void for_each_client(F&& f) const {
    for (const ClientConnection* c = clients_.front(); c; c = decltype(clients_)::next(c)) f(*c);
  }
  template <class F>
  void for_each_server(F&& f) const {
    for (const ServerConnection* s = servers_.front(); s; s = decltype(servers_)::next(s)) f(*s);
  }
  // f(const RouteState&)
  template <class F>
  void for_each_route(F&& f) const {
    for (const auto& [name, r] : routes_) f(*r);
  }
  bool shutting_down() const { return shutting_down_; }
  // I/O buffers this worker's thread holds (metrics).
  size_t io_buffers_in_use() const { return io_buffers_ ? *io_buffers_ : 0; }
  // Clients counted against max_client_conn, over every worker.
  size_t client_count() const { return size_t(std::max<int64_t>(0, hub_.clients.load(std::memory_order_relaxed))); }
  pool::TimePoint started_at() const { return started_at_; }

  // --- admin console commands ----------------------------------------------
  // `db` empty = every database. Paused databases hold new transactions
  // (their clients are parked) until RESUME.
  bool is_paused(std::string_view db) const {
    return paused_all_ || (!db.empty() && paused_dbs_.count(db) > 0);
  }
  void pause(const std::string& db);
  void resume(const std::string& db);
  // DISABLE / ENABLE: a disabled database (its name as in the config)
  // refuses new logins; connected clients go on. Kept across reloads.
  void disable(const std::string& db);
  void enable(const std::string& db);
  bool is_disabled(std::string_view db) const { return disabled_dbs_.count(db) > 0; }
  void park(ClientConnection* c);
  void unpark(ClientConnection* c);
  void reconnect(const std::string& db);
  void kill_database(const std::string& db);
  bool kill_client(uint64_t id);
  void request_shutdown(bool wait_for_clients) { shutdown_request_ = wait_for_clients ? 2 : 1; }
  // PAUSE / WAIT_CLOSE: this worker's pools of `db` ("" = all) are done
  // (no busy server for PAUSE, no server from before RECONNECT otherwise).
  bool admin_wait_ready(const std::string& tag, const std::string& db) const;
  // PAUSE and WAIT_CLOSE answer once their condition holds (checked every
  // tick); the client gets admin_done(tag).
  void admin_wait(ClientConnection* c, std::string tag, std::string db);
  void admin_wait_cancel(ClientConnection* c);

  uint64_t next_id() { return hub_.next_id(); }
  // The same number for the same set of session parameters (names compared
  // without case), never 0: a server synced to one set needs no SET for
  // another client with the same set (ServerConnection::link_sync).
  uint64_t param_set_id(const pool::Params& params);
  PreparedRegistry& prepared() { return prepared_; }
  // A prepared statement's result type changed on a server (a schema
  // change): statements prepared from now on get new server names
  // (PreparedRegistry::retire_all).
  void invalidate_plans(const std::string& dbname, const std::string& seen_by);
  // What the pools of each database that were dropped after a reload did
  // (the stats line's totals only grow).
  const std::map<std::string, PoolTotals, std::less<>>& dropped_totals() const { return dropped_totals_; }

 private:
  static void on_tick(uv_timer_t* t);
  void tick();
  void check_client_timeouts();
  void close_outdated_sessions();
  bool fast_close_due_ = false;
  void balance_shared_limits();
  // Closes idle servers under limits (`only`, or any) that other workers
  // want a slot of, and hands each slot over (take_want, open_on).
  void give_idle_slots(pool::SharedLimit* only);
  int take_want(pool::SharedLimit* l, int64_t before_ns);
  // The router of `route` takes a check's outcome: what changed is logged
  // (`log`: by the worker that ran the check), and the backend's pools try
  // again at once (up) or drop their idle connections (down).
  void apply_check(RouteState& route, size_t backend, const CheckSample& sample, bool log);
  template <class Close>
  bool give_slot(pool::Pool& p, pool::SharedLimit* l, int64_t before_ns, Close close);
  void open_on(size_t worker, pool::SharedLimit* l);
  uint64_t ticks_ = 0;
  uint64_t config_version_ = 0;  // of the config in force (Hub::publish_config)
  // Makes `cfg` the latest config and sends it to every worker (under
  // hub_.config_mu).
  void publish_config(std::shared_ptr<const conf::Config> cfg, ConfigFiles files);
  // Takes a config published as `version`, unless a newer one is in force.
  void take_config(uint64_t version, std::shared_ptr<const conf::Config> cfg, ConfigFiles files);
  void maybe_finish_shutdown();

  Hub& hub_;
  const size_t index_;
  uv_loop_t loop_{};
  uv_timer_t tick_timer_{};
  uv_async_t inbox_async_{};
  std::mutex inbox_mu_;
  std::vector<std::function<void(Worker&)>> inbox_;
  bool inbox_closed_ = false;
  std::atomic<bool> park_asked_{false};
  static void on_inbox(uv_async_t* h);
  void close_inbox();
  bool reported_stop_ = false;
  const size_t* io_buffers_ = nullptr;  // the loop thread's counter
  void end_login(ClientConnection* c);
  // Pools whose released servers serve queued clients after this loop
  // turn's I/O callbacks (see defer_serve).
  uv_check_t serve_check_{};
  uv_idle_t serve_idle_{};  // keeps the poll from blocking while some wait
  std::vector<pool::Pool*> deferred_serves_;
  static void on_serve_check(uv_check_t* h);
  std::shared_ptr<const conf::Config> config_;
  ConfigFiles files_;
  std::unique_ptr<AuthQuery> auth_query_;

  std::vector<std::unique_ptr<Listener>> listeners_;

  struct PoolEntry {
    std::unique_ptr<pool::Pool> pool;
    std::shared_ptr<const conf::Config> owner;  // the config `db` lives in
    const conf::DatabaseConfig* db = nullptr;
    std::string host;
    uint16_t port = 5432;
    std::optional<std::string> password;  // for the server login
    // A reload removed its database entry (or moved its clients to another
    // pool): it serves the clients it has and goes when they are gone.
    bool retired = false;
    uint64_t unused_since_ms = 0;  // pools of the "*" entry: see drop_idle_auto_pools
  };
  std::map<PoolKey, PoolEntry> pools_;
  std::map<std::string, std::shared_ptr<RouteState>, std::less<>> routes_;  // by entry name
  pool::PoolSettings settings_for(const PoolKey& key, const conf::DatabaseConfig& db) const;
  // Where the pool's servers connect: host, port and login password.
  void set_target(PoolEntry& e, const PoolKey& key, const conf::DatabaseConfig& db) const;
  // The pool takes `db` (current config) as its entry: new settings, and
  // new server connections if where or how it connects changed.
  void follow_entry(PoolEntry& e, const PoolKey& key, const conf::DatabaseConfig& db);
  void start_route(const std::string& name, const conf::DatabaseConfig& db);
  void retire_route(std::map<std::string, std::shared_ptr<RouteState>, std::less<>>::iterator it);
  void apply_config(std::shared_ptr<const conf::Config> cfg, ConfigFiles files);
  void drop_retired_pools();
  void drop_idle_auto_pools(uint64_t now_ms);
  bool retired_pools_ = false;
  // By (client database, user): a verifier auth_query found for one
  // database entry may not be another's. A health check pool's database is
  // its entry's name, so an entry's checker finds the keys of its clients.
  std::map<std::pair<std::string, std::string>, auth::ScramKeys> scram_keys_;
  std::map<std::string, std::pair<std::string, auth::ScramVerifier>, std::less<>> plain_verifiers_;
  std::unordered_map<uint32_t, std::pair<ClientConnection*, uint32_t>> cancel_keys_;
  pool::List<ClientConnection, &ClientConnection::all_hook> clients_;
  pool::List<ClientConnection, &ClientConnection::login_hook> logging_in_;  // FIFO by start
  pool::List<ServerConnection, &ServerConnection::all_hook> servers_;
  std::vector<CancelSender*> cancels_;  // in flight
  void expire_cancels(uint64_t now_ms);
  PreparedRegistry prepared_;
  std::unordered_map<std::string, uint64_t> param_sets_;
  uint64_t last_param_set_ = 0;
  bool shutting_down_ = false;
  bool wait_for_clients_ = false;
  // A client idle this long during a graceful shutdown is closed.
  static constexpr uint64_t kShutdownIdleGraceMs = 500;
  pool::TimePoint shutdown_deadline_{};
  pool::TimePoint started_at_ = pool::Clock::now();
  // [log] stats_period: the totals at the last stats line.
  std::map<std::string, PoolTotals, std::less<>> stats_last_;
  std::map<std::string, PoolTotals, std::less<>> dropped_totals_;  // of pools a reload retired, then dropped
  pool::TimePoint stats_at_{};
  bool stats_primed_ = false;
  void maybe_log_stats(pool::TimePoint now);
  std::set<std::string, std::less<>> paused_dbs_;
  std::set<std::string, std::less<>> disabled_dbs_;
  bool paused_all_ = false;
  std::vector<ClientConnection*> parked_;
  struct DelayedClose {
    ClientConnection* client;
    pool::TimePoint when;
    CloseReason reason;
    proto::ErrorFields error;
  };
  std::vector<DelayedClose> delayed_closes_;
  void run_delayed_closes();
  struct AdminWait {
    ClientConnection* client;
    std::string tag, db;
    std::shared_ptr<std::atomic<int>> pending;  // other workers yet to see the wait
  };
  std::vector<AdminWait> admin_waits_;
  int shutdown_request_ = 0;  // 1 = now, 2 = wait for clients (SHUTDOWN from the console)
  void check_admin_waits();
  bool matches(const conf::DatabaseConfig& entry, const PoolKey& key, const std::string& db) const {
    return db.empty() || key.database == db || entry.name == db;
  }

  friend class Listener;
  friend class ClientConnection;
  friend class ServerConnection;
};

// Every worker's pools, clients and servers, for the admin console and
// /metrics (inside Hub::read_all): f(worker, ...) as Worker's for_each_*.
template <class F>
void each_pool(const Worker& w, F&& f) {
  for (Worker* x : w.all())
    x->for_each_pool([&](const PoolKey& k, const pool::Pool& p, const conf::DatabaseConfig& d) { f(*x, k, p, d); });
}
template <class F>
void each_client(const Worker& w, F&& f) {
  for (Worker* x : w.all()) x->for_each_client([&](const ClientConnection& c) { f(*x, c); });
}
template <class F>
void each_server(const Worker& w, F&& f) {
  for (Worker* x : w.all()) x->for_each_server([&](const ServerConnection& s) { f(*x, s); });
}

}  // namespace pgmux
