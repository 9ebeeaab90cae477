// What the workers of one pgmux process share: the list of workers, the
// limits that span them (atomics, see pool::SharedLimit), ids, and the two
// ways one worker reaches the others.
//
// - Worker::post runs a function on another worker's thread (a queue and a
//   uv_async per worker). Everything that changes a worker's state goes
//   this way: console commands, reload, shutdown, cancel requests, accepted
//   client sockets.
// - read_all runs a function while every other worker is parked (blocked
//   in its inbox callback, between two loop callbacks), so it may read any
//   worker's connections and pools: SHOW commands, metrics, the stats line.
//   It must not change them (another thread's loop is not ours to touch).
//
// With one worker both are direct calls, and nothing here costs anything on
// the forwarding path: a worker reads only its own state there.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "auth/hba.hpp"
#include "auth/userlist.hpp"
#include "conf/config.hpp"
#include "pool/pool.hpp"
#include "src/tls.hpp"

namespace pgmux {

// What a config names outside itself, loaded and checked: the userlist,
// both sides' TLS contexts, the hba rules. Startup (and --check) and reload
// load them the same way, before anything is applied.
struct ConfigFiles {
  std::shared_ptr<const auth::Userlist> userlist;  // null without [auth] file
  std::shared_ptr<const tls::Context> client_tls, server_tls;
  std::shared_ptr<const auth::HbaRules> hba;  // [auth] type = "hba"
  std::shared_ptr<const auth::IdentMap> ident;  // [auth] ident_file
};

class Worker;

class Hub {
 public:
  Hub() = default;
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // Workers register in index order before any loop runs.
  void add(Worker* w) { workers_.push_back(w); }
  size_t size() const { return workers_.size(); }
  Worker& worker(size_t i) const { return *workers_[i]; }
  const std::vector<Worker*>& workers() const { return workers_; }

  // Runs fn on every worker: at once on `self` (the caller's own worker,
  // or null), through the inbox on the others.
  void broadcast(Worker* self, const std::function<void(Worker&)>& fn);
  // Runs fn while every worker but `self` is parked (see above). `self`
  // must be the calling thread's worker.
  void read_all(Worker* self, const std::function<void()>& fn);

  // The worker a new client goes to: the one with the fewest clients
  // (round robin among equals).
  size_t pick_worker();
  // Client and server ids, unique in the process (C-n / S-n).
  uint64_t next_id() { return ids_.fetch_add(1, std::memory_order_relaxed) + 1; }

  // Clients counted against max_client_conn, and logins in progress
  // (max_concurrent_logins), over every worker.
  std::atomic<int64_t> clients{0};
  std::atomic<int64_t> logins{0};

  // Logged-in clients by database (the name a client asked for) and by
  // login user, over every worker. Counts `db` and `user` unless that would
  // pass max_db (0 = no limit) or max_user: then counts nothing and returns
  // the setting that refused. Login and close paths only.
  enum class LoginRefusal { none, db, user };
  LoginRefusal count_login(const std::string& db, int max_db, const std::string& user, int max_user);
  void uncount_login(const std::string& db, const std::string& user);
  int64_t clients_of_database(const std::string& db);
  std::map<std::string, int64_t, std::less<>> clients_by_user();

  // auth_query's answers (found or not) by (database entry, user), for all
  // workers alike (see AuthQuery): a changed password applies on every
  // worker at once. Logins only, never the forwarding path.
  struct AuthAnswer {
    std::optional<auth::Secret> secret;
    pool::TimePoint at;
  };
  std::mutex auth_cache_mu;
  std::map<std::pair<std::string, std::string>, AuthAnswer> auth_cache;  // under auth_cache_mu

  // Limits over every worker's pools, by database name, user name and pool
  // key; created on first use, never freed (pools keep pointers to them).
  pool::SharedLimit& db_limit(const std::string& db) { return limit(db_limits_, db); }
  pool::SharedLimit& user_limit(const std::string& user) { return limit(user_limits_, user); }
  pool::SharedLimit& key_limit(const std::string& key) { return limit(key_limits_, key); }
  // f(kind, name, limit) for every limit of every kind.
  enum class LimitKind { db, user, key };
  void for_each_limit(const std::function<void(LimitKind, const std::string&, pool::SharedLimit&)>& f);

  // --- the config in force ---------------------------------------------------
  // Reload and console SET run on whichever worker got them, possibly two at
  // once: each builds on the latest config under `config_mu` and publishes
  // it with a new version; a worker skips a config older than its own, so
  // all end on the newest whatever order the broadcasts arrive in.
  std::mutex config_mu;
  uint64_t config_version = 0;                  // under config_mu
  std::shared_ptr<const conf::Config> config;   // under config_mu
  ConfigFiles files;                            // under config_mu

  // --- parking (Worker's side) ---------------------------------------------
  // The worker is parked: blocks until the read_all that asked is done.
  void park();
  // The worker stopped for good while asked to park: counts as parked.
  void park_gone();

  // Called once every worker has stopped (main closes the signal handles).
  std::function<void()> on_all_stopped;
  void worker_stopped();

 private:
  using LimitMap = std::map<std::string, std::unique_ptr<pool::SharedLimit>, std::less<>>;
  pool::SharedLimit& limit(LimitMap& m, const std::string& name);
  std::vector<Worker*> workers_;
  std::atomic<uint64_t> ids_{0};
  std::atomic<size_t> rr_{0};
  std::mutex limits_mu_;
  LimitMap db_limits_, user_limits_, key_limits_;
  std::mutex login_counts_mu_;
  std::map<std::string, int64_t, std::less<>> db_clients_, user_clients_;  // under login_counts_mu_

  std::mutex read_mu_;  // one read_all at a time
  std::mutex park_mu_;
  std::condition_variable park_cv_;
  size_t parked_ = 0;          // parked in the current round
  uint64_t round_ = 0;         // the current read_all round
  uint64_t released_ = 0;      // rounds up to this one are over
  std::atomic<size_t> stopped_{0};
};

}  // namespace pgmux
