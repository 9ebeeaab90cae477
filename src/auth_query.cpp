#include "src/auth_query.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "src/server.hpp"
#include "src/worker.hpp"

namespace pgmux {

// One query in flight for a (database entry, user): takes a server from the
// auth pool, runs the query with the user name bound, answers every waiting
// client.
class AuthQuery::Lookup final : public pool::PoolClient, public CheckOwner {
 public:
  Lookup(AuthQuery& owner, Key key, pool::Pool& pool, std::string query, pool::TimePoint now)
      : owner_(owner), key_(std::move(key)), pool_(pool), query_(std::move(query)), started_(now) {}
  ~Lookup() override {
    leave_wait();
    if (ServerConnection* s = std::exchange(server_, nullptr)) s->abandon_check();
  }

  void start() {
    if (!pool_.acquire_or_wait(this))
      owner_.finished(this, Answer::failed, std::nullopt, pool_.last_error().message);
  }

  void pool_welcome_ready() override {}
  void pool_server_assigned(pool::PoolServer* server) override {
    server_ = static_cast<ServerConnection*>(server);
    server_->run_check(query_, this, {key_.second}, /*empty_ok=*/true);
  }
  void pool_wait_failed(const proto::ErrorFields& error) override {
    owner_.finished(this, Answer::failed, std::nullopt, error.message);
  }
  void check_result(const std::vector<std::optional<std::string>>* row, const std::string& error) override {
    server_ = nullptr;
    if (!row) {
      owner_.finished(this, Answer::failed, std::nullopt, error);
      return;
    }
    // No row, or a NULL secret (expired, or no password): no such user.
    if (row->size() < 2 || !(*row)[1] || (*row)[1]->empty()) {
      owner_.finished(this, Answer::not_found, std::nullopt, {});
      return;
    }
    if (!(*row)[0] || *(*row)[0] != key_.second) {
      owner_.finished(this, Answer::failed, std::nullopt,
                      "auth query answered for another user (its first column must be the user name)");
      return;
    }
    owner_.finished(this, Answer::found, auth::classify_secret(*(*row)[1]), {});
  }

  const Key& key() const { return key_; }
  pool::TimePoint started() const { return started_; }
  std::vector<ClientConnection*> waiters;

 private:
  AuthQuery& owner_;
  Key key_;
  pool::Pool& pool_;
  std::string query_;
  pool::TimePoint started_;
  ServerConnection* server_ = nullptr;
};

AuthQuery::AuthQuery(Worker& w) : worker_(w) {}
AuthQuery::~AuthQuery() = default;

AuthQuery::Answer AuthQuery::lookup(ClientConnection* c, const conf::DatabaseConfig& db,
                                    const std::string& user, std::optional<auth::Secret>& secret) {
  const pool::TimePoint now = worker_.now();
  const conf::AuthLookup al = worker_.config().auth_lookup(db);
  const std::string& runs_in = al.database->empty() ? c->database() : *al.database;
  Key key{db.name + '\x1f' + runs_in, user};
  {
    Hub& hub = worker_.hub();
    std::lock_guard lk(hub.auth_cache_mu);
    if (auto it = hub.auth_cache.find(key); it != hub.auth_cache.end()) {
      if (now - it->second.at < kCacheFor) {
        secret = it->second.secret;
        // (Kept for server logins once the client's password was right:
        // ClientConnection::auth_succeeded calls remember.)
        return secret ? Answer::found : Answer::not_found;
      }
      hub.auth_cache.erase(it);
    }
  }
  auto it = running_.find(key);
  if (it == running_.end()) {
    auto l = std::make_unique<Lookup>(*this, key, worker_.auth_pool(db, c->database()), *al.query, now);
    Lookup* raw = l.get();
    it = running_.emplace(key, std::move(l)).first;
    raw->waiters.push_back(c);
    raw->start();  // may answer at once (and erase itself)
    return Answer::pending;
  }
  it->second->waiters.push_back(c);
  return Answer::pending;
}

void AuthQuery::forget(ClientConnection* c) {
  for (auto& [key, l] : running_) l->waiters.erase(std::remove(l->waiters.begin(), l->waiters.end(), c), l->waiters.end());
}

void AuthQuery::remember(const std::string& database, const std::string& user, const auth::Secret& secret) {
  known_[{database, user}] = secret;
}

void AuthQuery::forget_database(const std::string& database) {
  std::erase_if(known_, [&](const auto& kv) { return kv.first.first == database; });
}

const auth::Secret* AuthQuery::known(const std::string& database, const std::string& user) const {
  auto it = known_.find({database, user});
  return it == known_.end() ? nullptr : &it->second;
}

void AuthQuery::tick(pool::TimePoint now, pool::Duration limit) {
  if (limit.count() <= 0) limit = std::chrono::seconds(60);
  std::vector<Lookup*> late;
  for (auto& [key, l] : running_)
    if (now - l->started() >= limit) late.push_back(l.get());
  for (Lookup* l : late) finished(l, Answer::failed, std::nullopt, "no answer within client_login_timeout");
  // Expired cache entries go (a storm of random user names must not grow it).
  Hub& hub = worker_.hub();
  std::lock_guard lk(hub.auth_cache_mu);
  if (hub.auth_cache.size() > 1024)
    for (auto it = hub.auth_cache.begin(); it != hub.auth_cache.end();)
      it = now - it->second.at >= kCacheFor ? hub.auth_cache.erase(it) : std::next(it);
}

void AuthQuery::finished(Lookup* l, Answer a, std::optional<auth::Secret> secret, const std::string& error) {
  auto it = running_.find(l->key());
  if (it == running_.end() || it->second.get() != l) return;
  std::unique_ptr<Lookup> done = std::move(it->second);
  running_.erase(it);
  const Key& key = done->key();
  if (a == Answer::failed) {
    const auto sep = key.first.find('\x1f');
    spdlog::warn("auth query for user \"{}\" (database entry {}, run in {}) failed: {}", key.second,
                 key.first.substr(0, sep), key.first.substr(sep + 1), error);
  } else {
    {
      Hub& hub = worker_.hub();
      std::lock_guard lk(hub.auth_cache_mu);
      hub.auth_cache[key] = Hub::AuthAnswer{secret, worker_.now()};
    }
  }
  std::vector<ClientConnection*> waiters = std::move(done->waiters);
  done.reset();  // releases its wait / server before clients continue
  for (ClientConnection* c : waiters) c->auth_lookup_done(a, secret);
}

}  // namespace pgmux
