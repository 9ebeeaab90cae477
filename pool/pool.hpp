// Server pools keyed by (database, user): logic only, no sockets.
//
// Connections are injected through the PoolServer / PoolClient interfaces and
// new server connections are requested from a Connector, so every rule here
// (FIFO waiting, limits, reserve, timeouts, login backoff) is unit-tested
// without I/O or sleeps. A Pool belongs to exactly one worker loop.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pool/list.hpp"
#include "protocol/builders.hpp"

namespace pgmux::pool {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = std::chrono::milliseconds;
using Params = std::vector<std::pair<std::string, std::string>>;

class Pool;
class PoolClient;

// Where a server connection is in its life. Changed only by Pool::set_state,
// which also moves it between the pool's lists.
enum class ServerState {
  none,        // not in a pool (new, or removed)
  connecting,  // TCP connect + login in progress
  idle,        // logged in, clean, available
  active,      // linked to a client
  resetting,   // client gone; rollback / reset query in progress
};
const char* to_string(ServerState s);

class PoolServer {
 public:
  // Leaves its pool if still in one, so no list keeps a dangling pointer.
  virtual ~PoolServer();
  // The pool wants this connection gone (idle timeout, lifetime, connect
  // timeout). The implementation must call Pool::remove (now or later).
  virtual void pool_close(const char* reason) = 0;

  ServerState state() const { return state_; }
  Pool* pool() const { return pool_; }
  PoolClient* client() const { return client_; }
  TimePoint created_at() const { return created_; }
  TimePoint state_since() const { return since_; }
  uint64_t id() const { return id_; }

  ListHook<PoolServer> pool_hook;

 private:
  friend class Pool;
  ServerState state_ = ServerState::none;
  Pool* pool_ = nullptr;
  PoolClient* client_ = nullptr;
  TimePoint created_{};
  TimePoint since_{};
  uint64_t id_ = 0;
  uint32_t generation_ = 0;  // the pool's generation when it was opened
};

enum class ClientWait { none, welcome, server };

class PoolClient {
 public:
  // Leaves the wait queue if still in one.
  virtual ~PoolClient();
  // Server parameters are known: the client can finish its login.
  virtual void pool_welcome_ready() = 0;
  // A server was linked to this client after it waited.
  virtual void pool_server_assigned(PoolServer* server) = 0;
  // Waiting failed (timeout, server login failing): the error to send.
  virtual void pool_wait_failed(const proto::ErrorFields& error) = 0;
  // Waited query_wait_notify for a server (once per wait): tell the client.
  virtual void pool_wait_notice() {}

  ClientWait waiting() const { return wait_; }
  TimePoint wait_since() const { return wait_since_; }
  // Stops waiting in whichever pool it waits in.
  void leave_wait();
  ListHook<PoolClient> pool_hook;

 private:
  friend class Pool;
  ClientWait wait_ = ClientWait::none;
  bool wait_noticed_ = false;  // pool_wait_notice sent for this wait
  TimePoint wait_since_{};
  Pool* wait_pool_ = nullptr;
};

// Opens server connections for a pool. open_server must create the
// connection and call pool.add_connecting(server) before returning true;
// false means it cannot even try (the reason is in `error`).
class Connector {
 public:
  virtual ~Connector() = default;
  virtual bool open_server(Pool& pool, proto::ErrorFields& error) = 0;
  virtual TimePoint now() const = 0;
  // A released server can serve queued clients: the connector may run
  // pool.serve_deferred() later in the same loop turn (batching), or now.
  virtual void defer_serve(Pool& pool);
  // The pool goes away: forget any deferred serve for it.
  virtual void forget_pool(Pool& pool) { (void)pool; }
  // Pools with a key limit (more than one worker). A client of `pool` waits
  // and no slot is free: another worker may hold an idle one.
  virtual void slot_wanted(Pool& pool) { (void)pool; }
  // No client of `pool` waits any more.
  virtual void slot_unwanted(Pool& pool) { (void)pool; }
  // `s` is released: true if the connector closed it to give its slot to
  // another worker's waiting client (see Worker::give_slot_away).
  virtual bool give_slot_away(Pool& pool, PoolServer* s) {
    (void)pool;
    (void)s;
    return false;
  }
};

// A limit shared by several pools (max_db_connections, max_user_connections,
// and a pool's own size across workers), which may run on different worker
// threads: the counts are atomics, and a slot is taken by compare-and-swap
// so that two workers can never both take the last one.
struct SharedLimit {
  std::atomic<int> max{0};  // 0 = unlimited (the pool-size limit passes its own)
  std::atomic<int> count{0};
  // Workers (bit index % 64) whose pools wait for a slot of this limit
  // while other workers' pools may hold idle servers under it (see
  // Worker::slot_wanted).
  std::atomic<uint64_t> wanted{0};
  // For each wanting worker, since when its oldest client waits (steady
  // clock, ns; 0 = not wanting): the slot goes to the longest wait.
  std::array<std::atomic<int64_t>, 64> want_since{};
  // Slots given to worker (bit index) by another that closed a server for
  // it: counted in `count`, and taken only by that worker's pools, so the
  // giver cannot take the slot back before the receiver opens a server.
  std::array<std::atomic<int>, 64> granted{};
  bool take_grant(size_t worker) {
    std::atomic<int>& g = granted[worker % 64];
    int n = g.load(std::memory_order_relaxed);
    while (n > 0)
      if (g.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) return true;
    return false;
  }
  // A server leaving a pool under this limit keeps its slot for `worker`
  // (Pool::grant_slot_on_close): `count` does not change on the way, so the
  // limit never looks exceeded while the slot moves.
  void grant(size_t worker) { granted[worker % 64].fetch_add(1, std::memory_order_relaxed); }
  // Grants `worker` did not use go back to everyone.
  void drop_grants(size_t worker) {
    if (int n = granted[worker % 64].exchange(0, std::memory_order_relaxed); n > 0)
      count.fetch_sub(n, std::memory_order_relaxed);
  }
  bool full() const {
    int m = max.load(std::memory_order_relaxed);
    return m > 0 && count.load(std::memory_order_relaxed) >= m;
  }
  // One slot if fewer than `limit` are taken (limit <= 0: unlimited).
  bool try_take(int limit) {
    int c = count.load(std::memory_order_relaxed);
    do {
      if (limit > 0 && c >= limit) return false;
    } while (!count.compare_exchange_weak(c, c + 1, std::memory_order_relaxed));
    return true;
  }
  bool try_take() { return try_take(max.load(std::memory_order_relaxed)); }
  void give() { count.fetch_sub(1, std::memory_order_relaxed); }
};

struct PoolSettings {
  int pool_size = 20;
  bool server_pipelining = false;  // see ServerConnection::pipeline_slot_open
  // Idle servers are reused oldest first rather than most recently used
  // first (server_round_robin): the load spreads over every connection, and
  // over the hosts behind a load-balanced address.
  bool round_robin = false;
  int min_pool_size = 0;
  int reserve_pool_size = 0;
  Duration reserve_pool_timeout{5000};
  Duration query_wait_timeout{120000};  // 0 = wait forever
  Duration query_wait_notify{5000};     // 0 = no notice
  Duration server_connect_timeout{15000};
  Duration server_login_retry{15000};
  Duration server_idle_timeout{600000};  // 0 = never
  Duration server_lifetime{3600000};     // 0 = unlimited
};

struct PoolCounts {
  size_t connecting = 0, idle = 0, active = 0, resetting = 0;
  size_t waiting_welcome = 0, waiting_server = 0;
  size_t total_servers() const { return connecting + idle + active + resetting; }
};

// Latency histogram with fixed bucket bounds (microseconds), for the
// metrics endpoint; the last bucket is +Inf.
struct LatencyHistogram {
  static constexpr uint64_t kBoundsUs[] = {100,    250,    500,     1000,    2500,    5000,
                                           10000,  25000,  50000,   100000,  250000,  500000,
                                           1000000, 2500000, 5000000, 10000000};
  static constexpr size_t kBuckets = sizeof(kBoundsUs) / sizeof(kBoundsUs[0]) + 1;
  uint64_t counts[kBuckets] = {};  // not cumulative
  uint64_t sum_us = 0;
  uint64_t count = 0;
  void add(uint64_t us) {
    size_t i = 0;
    while (i < kBuckets - 1 && us > kBoundsUs[i]) ++i;
    ++counts[i];
    sum_us += us;
    ++count;
  }
  // Another histogram's samples (one pool per worker, reported as one).
  void add(const LatencyHistogram& o) {
    for (size_t i = 0; i < kBuckets; ++i) counts[i] += o.counts[i];
    sum_us += o.sum_us;
    count += o.count;
  }
};

// What a pool did since it was created (SHOW STATS, metrics).
struct PoolStats {
  uint64_t xact_count = 0;    // transactions (ReadyForQuery 'I' after work)
  uint64_t query_count = 0;   // requests answered (every ReadyForQuery)
  uint64_t client_bytes = 0;  // from clients to servers
  uint64_t server_bytes = 0;  // from servers to clients
  uint64_t xact_us = 0, query_us = 0, wait_us = 0;
  uint64_t waited = 0;  // clients that waited for a server (wait_hist also counts immediate ones)
  // server_pipelining: clients sent out behind another client's request.
  uint64_t pipelined = 0;
  uint64_t server_errors = 0;  // server connections lost or refused at login
  // Named prepared statements in transaction/statement mode: a client's
  // Parse, Bind or Describe found the statement already prepared on the
  // server it landed on (hit), or pgmux had to prepare it there (miss).
  uint64_t prepared_hits = 0, prepared_misses = 0;
  LatencyHistogram query_hist, xact_hist, wait_hist;
  // Another pool's figures (every worker's pool of a key, reported as one).
  void add(const PoolStats& o) {
    for (uint64_t PoolStats::*f : {&PoolStats::xact_count, &PoolStats::query_count, &PoolStats::client_bytes,
                                   &PoolStats::server_bytes, &PoolStats::xact_us, &PoolStats::query_us,
                                   &PoolStats::wait_us, &PoolStats::waited, &PoolStats::pipelined,
                                   &PoolStats::server_errors, &PoolStats::prepared_hits, &PoolStats::prepared_misses})
      this->*f += o.*f;
    query_hist.add(o.query_hist);
    xact_hist.add(o.xact_hist);
    wait_hist.add(o.wait_hist);
  }
};

enum class Acquire { assigned, queued, failed };

class Pool {
 public:
  // `key_limit` counts the servers of every worker's pool of the same key
  // (pool_size and reserve_pool_size bound them together); without it the
  // pool counts only its own.
  Pool(std::string database, std::string user, PoolSettings settings, Connector& connector,
       SharedLimit* db_limit = nullptr, SharedLimit* user_limit = nullptr, SharedLimit* key_limit = nullptr);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  const std::string& database() const { return database_; }
  const std::string& user() const { return user_; }
  const PoolSettings& settings() const { return settings_; }
  // Which backend of a routed database the pool connects to (0 = the
  // configured host), and whether it serves the health checker.
  uint16_t backend() const { return backend_; }
  bool health_check() const { return health_check_; }
  // pgmux's own pool for auth_query lookups (health_check() is true too:
  // both are internal, not for clients).
  bool auth_lookup() const { return auth_lookup_; }
  void set_backend(uint16_t backend, bool health_check, bool auth_lookup = false) {
    auth_lookup_ = auth_lookup;
    backend_ = backend;
    health_check_ = health_check;
  }
  // The backend is known to be up again: new logins may be tried at once.
  void clear_backoff() { in_failure_ = false; }
  PoolStats stats;
  // Oldest waiting client's wait so far (SHOW POOLS maxwait).
  Duration max_wait() const;
  // Since when the oldest waiting client waits (TimePoint{} if none).
  TimePoint oldest_wait_since() const;
  // Reload: new sizes and timeouts apply at once; a pool above its new
  // size closes idle servers now and busy ones as they are released.
  void update_settings(const PoolSettings& s);
  PoolCounts counts() const;

  // --- servers --------------------------------------------------------------
  void add_connecting(PoolServer* s);
  // Login finished: `params` are the server's ParameterStatus values, cached
  // as the welcome for clients. The server becomes idle and serves waiters.
  void server_login_ok(PoolServer* s, Params params);
  // Login (or connect) failed: the server leaves the pool; waiting clients
  // get the error, and new attempts wait server_login_retry.
  void server_login_failed(PoolServer* s, const proto::ErrorFields& error);
  // The linked client is gone and the connection must be cleaned first.
  void begin_reset(PoolServer* s);
  // The server is clean and reusable (after its client or a reset).
  void release(PoolServer* s);
  // The server is gone (closed, died, not reusable); any state.
  void remove(PoolServer* s);
  // The next server to leave this pool hands its slot of `l` (one of its
  // limits) to worker `worker`'s pools as a grant instead of freeing it
  // (another worker's clients wait for it); nullptr: no longer.
  void grant_slot_on_close(SharedLimit* l, size_t worker = 0) {
    grant_on_close_ = l;
    grant_to_ = worker;
  }

  // --- clients --------------------------------------------------------------
  bool welcome_ready() const { return have_welcome_; }
  const Params& welcome() const { return welcome_; }
  // Changes whenever the welcome's values change, unique across pools
  // (memoised parameter sync); 0 before the first login.
  uint64_t welcome_version() const { return welcome_version_; }
  // True when the welcome is ready now; else the client is queued and gets
  // pool_welcome_ready or pool_wait_failed later.
  bool wait_welcome(PoolClient* c);
  // A server for the client: assigned now (`out` set), queued (callback
  // later), or failed now (`error` set, e.g. during login backoff).
  Acquire acquire(PoolClient* c, PoolServer*& out, proto::ErrorFields& error) {
    Acquire a = acquire(c, out);
    if (a == Acquire::failed) error = last_error_;
    return a;
  }
  // The same; a failure's error is last_error().
  Acquire acquire(PoolClient* c, PoolServer*& out);
  // acquire() for callers that take every server through
  // pool_server_assigned: called here when one is free now. False when the
  // pool cannot serve (the error is last_error()); else the client has a
  // server or waits. No ErrorFields is built on the way: this runs at the
  // start of every pooled transaction.
  bool acquire_or_wait(PoolClient* c);
  // server_pipelining. The first active server for which f(server) holds
  // (a linear walk: only when a client had to queue).
  template <class F> PoolServer* find_active(F f) const {
    for (PoolServer* s = active_.front(); s; s = List<PoolServer, &PoolServer::pool_hook>::next(s))
      if (f(s)) return s;
    return nullptr;
  }
  // The longest-waiting client for a server for which f(client) holds
  // leaves the queue and is returned (nullptr: none).
  template <class F> PoolClient* take_waiter(F f) {
    for (PoolClient* c = wait_server_.front(); c; c = List<PoolClient, &PoolClient::pool_hook>::next(c)) {
      if (f(c)) {
        note_waited(c->wait_since_);
        ++stats.pipelined;
        dequeue(c);
        return c;
      }
    }
    return nullptr;
  }
  bool has_waiters() const { return !wait_server_.empty(); }
  // Opens servers for the waiting clients if slots are free (a slot was
  // just given up by another worker's pool).
  void open_for_waiters() { open_as_needed(); }
  bool has_idle() const { return !idle_.empty(); }
  // The idle server the next client gets (idle_ is ordered by release).
  PoolServer* next_idle() const { return settings_.round_robin ? idle_.front() : idle_.back(); }
  // Below its size (and the shared limits): a waiting client gets a new
  // server soon.
  bool can_grow() const { return can_open(false); }
  // A busy server may go on serving without going back to the pool
  // (server_pipelining): not once RECONNECT, a smaller pool size or
  // server_lifetime would close it at its release.
  bool keeps_busy(const PoolServer* s) const {
    return s->generation_ == generation_ && !over_capacity() &&
           (settings_.server_lifetime.count() == 0 || connector_.now() - s->created_ < settings_.server_lifetime);
  }
  // RECONNECT or a reload replaced the settings it was opened with: it is
  // closed when released.
  bool outdated(const PoolServer* s) const { return s->generation_ != generation_; }
  // An active server's request was answered and the pipelined client
  // queued behind it is now the one it serves.
  void hand_over(PoolServer* s, PoolClient* next) { s->client_ = next; }
  // Why the pool last failed to serve (what a failed acquire reports).
  const proto::ErrorFields& last_error() const { return last_error_; }
  // The client stops waiting (it disconnected).
  void cancel_wait(PoolClient* c);

  // Timeouts, reserve, min_pool_size, idle and lifetime closing.
  void tick();
  // Close every idle server (RECONNECT, shutdown).
  void close_idle(const char* reason);
  // RECONNECT: every server open now is closed (idle ones at once, the
  // others when released); new ones are opened as needed. With
  // `new_welcome` (the servers' startup parameters changed) clients that log
  // in from now on wait for a new server's values instead of the cached ones.
  void reconnect(bool new_welcome = false);
  // Servers opened before the last reconnect() are still open (WAIT_CLOSE).
  bool has_old_servers() const;
  // Runs the serve that release() deferred (see Connector::defer_serve).
  void serve_deferred();
  // Close the least recently used idle server; false if none.
  bool close_one_idle(const char* reason);
  // Clients wait and this pool could open more, but a shared limit
  // (max_db_connections / max_user_connections) is full.
  bool starved_by_shared_limit() const;
  SharedLimit* db_limit() const { return db_limit_; }
  SharedLimit* user_limit() const { return user_limit_; }
  SharedLimit* key_limit() const { return key_limit_; }
  // The worker this pool belongs to: slots granted to it (SharedLimit::
  // granted) are taken first.
  void set_worker(size_t index) { worker_ = index; }
  // Servers of this key: every worker's (key_limit) or this pool's own.
  size_t key_total() const;

 private:
  friend class PoolServer;
  void set_state(PoolServer* s, ServerState st);
  List<PoolServer, &PoolServer::pool_hook>* list_for(ServerState st);
  void link(PoolServer* s, PoolClient* c);
  void enqueue(PoolClient* c, ClientWait w);
  // A client that waited since `since` gets a server: wait statistics.
  void note_waited(TimePoint since);
  void dequeue(PoolClient* c);
  void serve_waiters();
  void open_as_needed();
  bool can_open(bool use_reserve) const;
  // Takes a slot of every limit for a server about to open (all or none);
  // add_connecting consumes it, or give_slot returns it if none was added.
  bool take_slot(bool use_reserve);
  void give_slot();
  // Opens one server under a slot taken first; false if no slot or the
  // connector could not (its error in `error`).
  bool open_one(bool use_reserve, proto::ErrorFields& error, bool& no_slot);
  void fail_waiters(const proto::ErrorFields& e, bool welcome_only);
  bool in_backoff() const;
  bool over_capacity() const;

  std::string database_, user_;
  PoolSettings settings_;
  Connector& connector_;
  SharedLimit* db_limit_;
  SharedLimit* user_limit_;
  SharedLimit* key_limit_;
  bool slot_held_ = false;  // take_slot succeeded, add_connecting not yet called
  SharedLimit* grant_on_close_ = nullptr;  // see grant_slot_on_close
  size_t grant_to_ = 0;
  size_t worker_ = 0;

  List<PoolServer, &PoolServer::pool_hook> connecting_, idle_, active_, resetting_;
  List<PoolClient, &PoolClient::pool_hook> wait_welcome_, wait_server_;

  bool have_welcome_ = false;
  Params welcome_;
  uint64_t welcome_version_ = 0;
  bool in_failure_ = false;  // last login failed; backoff until retry_at_
  TimePoint retry_at_{};
  proto::ErrorFields last_error_;
  uint64_t next_server_id_ = 1;
  bool serving_ = false;  // re-entrancy guard for serve_waiters
  bool serve_deferred_ = false;  // release() asked the connector to serve later
  uint16_t backend_ = 0;
  bool health_check_ = false;
  bool auth_lookup_ = false;
  uint32_t generation_ = 0;
};

}  // namespace pgmux::pool
