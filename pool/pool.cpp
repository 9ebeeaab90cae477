#include "pool/pool.hpp"

#include <algorithm>
#include <atomic>

namespace pgmux::pool {

const char* to_string(ServerState s) {
  switch (s) {
    case ServerState::none: return "none";
    case ServerState::connecting: return "connecting";
    case ServerState::idle: return "idle";
    case ServerState::active: return "active";
    case ServerState::resetting: return "resetting";
  }
  return "?";
}

PoolServer::~PoolServer() {
  if (pool_) pool_->set_state(this, ServerState::none);
}

PoolClient::~PoolClient() {
  if (wait_pool_) wait_pool_->cancel_wait(this);
}

void PoolClient::leave_wait() {
  if (wait_pool_) wait_pool_->cancel_wait(this);
}

Pool::Pool(std::string database, std::string user, PoolSettings settings, Connector& connector,
           SharedLimit* db_limit, SharedLimit* user_limit, SharedLimit* key_limit)
    : database_(std::move(database)),
      user_(std::move(user)),
      settings_(settings),
      connector_(connector),
      db_limit_(db_limit),
      user_limit_(user_limit),
      key_limit_(key_limit) {}

void Connector::defer_serve(Pool& pool) { pool.serve_deferred(); }

Pool::~Pool() {
  if (serve_deferred_) connector_.forget_pool(*this);
  // Owners close every connection before destroying a pool; unlink defensively
  // so no object keeps a dangling pointer to us.
  for (auto* l : {&connecting_, &idle_, &active_, &resetting_}) {
    while (PoolServer* s = l->front()) set_state(s, ServerState::none);
  }
  while (PoolClient* c = wait_welcome_.front()) dequeue(c);
  while (PoolClient* c = wait_server_.front()) dequeue(c);
}

void Pool::update_settings(const PoolSettings& s) {
  settings_ = s;
  // A smaller pool: idle servers above the new size go now, busy ones when
  // they are released (see release).
  while (over_capacity() && close_one_idle("pool size reduced by a reload")) {
  }
  open_as_needed();
}

bool Pool::over_capacity() const {
  return key_total() > size_t(settings_.pool_size) + size_t(settings_.reserve_pool_size);
}

size_t Pool::key_total() const {
  if (key_limit_) return size_t(std::max(0, key_limit_->count.load(std::memory_order_relaxed)));
  return connecting_.size() + idle_.size() + active_.size() + resetting_.size();
}

PoolCounts Pool::counts() const {
  PoolCounts c;
  c.connecting = connecting_.size();
  c.idle = idle_.size();
  c.active = active_.size();
  c.resetting = resetting_.size();
  c.waiting_welcome = wait_welcome_.size();
  c.waiting_server = wait_server_.size();
  return c;
}

List<PoolServer, &PoolServer::pool_hook>* Pool::list_for(ServerState st) {
  switch (st) {
    case ServerState::connecting: return &connecting_;
    case ServerState::idle: return &idle_;
    case ServerState::active: return &active_;
    case ServerState::resetting: return &resetting_;
    case ServerState::none: return nullptr;
  }
  return nullptr;
}

// The only place a server's state changes: list membership and the shared
// limits follow it, so they cannot drift apart.
void Pool::set_state(PoolServer* s, ServerState st) {
  ServerState old = s->state_;
  if (old == st) return;
  if (auto* l = list_for(old)) l->remove(s);
  if (auto* l = list_for(st)) l->push_back(s);
  if (old == ServerState::none && st != ServerState::none) {
    if (slot_held_) {
      slot_held_ = false;  // taken by take_slot
    } else {
      for (SharedLimit* l : {db_limit_, user_limit_, key_limit_})
        if (l) l->count.fetch_add(1, std::memory_order_relaxed);
    }
    s->pool_ = this;
  } else if (old != ServerState::none && st == ServerState::none) {
    for (SharedLimit* l : {db_limit_, user_limit_, key_limit_}) {
      if (!l) continue;
      if (l == grant_on_close_) l->grant(grant_to_);
      else l->give();
    }
    grant_on_close_ = nullptr;
    s->pool_ = nullptr;
  }
  if (st != ServerState::active) s->client_ = nullptr;
  s->state_ = st;
  s->since_ = connector_.now();
}

void Pool::add_connecting(PoolServer* s) {
  s->id_ = next_server_id_++;
  s->created_ = connector_.now();
  s->generation_ = generation_;
  set_state(s, ServerState::connecting);
}

void Pool::server_login_ok(PoolServer* s, Params params) {
  // Versions are unique across pools, so a version names one pool's values.
  static std::atomic<uint64_t> last_welcome_version{0};
  in_failure_ = false;
  if (s->generation_ != generation_) {
    // Opened before RECONNECT or a change of its settings: it would serve
    // with the old ones (and, after reconnect(true), give no welcome). A
    // new one is opened in its place if anyone waits.
    set_state(s, ServerState::idle);
    s->pool_close("RECONNECT");
    return;
  }
  if (!have_welcome_ || params != welcome_) welcome_version_ = ++last_welcome_version;
  welcome_ = std::move(params);
  have_welcome_ = true;
  set_state(s, ServerState::idle);
  serve_waiters();
  // Clients waiting for the welcome can finish their login now. A callback
  // may re-enter the pool (acquire), so pop one at a time.
  while (PoolClient* c = wait_welcome_.front()) {
    dequeue(c);
    c->pool_welcome_ready();
  }
}

void Pool::server_login_failed(PoolServer* s, const proto::ErrorFields& error) {
  set_state(s, ServerState::none);
  ++stats.server_errors;
  in_failure_ = true;
  retry_at_ = connector_.now() + settings_.server_login_retry;
  last_error_ = error;
  // Server waiters can still be served by connections that exist; only fail
  // them when nothing is left that could ever serve them.
  bool none_left = connecting_.empty() && idle_.empty() && active_.empty() && resetting_.empty();
  fail_waiters(error, /*welcome_only=*/!none_left);
}

void Pool::begin_reset(PoolServer* s) { set_state(s, ServerState::resetting); }

void Pool::release(PoolServer* s) {
  if (s->generation_ != generation_) {
    s->pool_close("RECONNECT");
    return;
  }
  if (over_capacity()) {
    s->pool_close("pool size reduced by a reload");
    return;
  }
  if (key_limit_ && connector_.give_slot_away(*this, s)) return;
  set_state(s, ServerState::idle);
  if (wait_server_.empty() || serve_deferred_) return;
  serve_deferred_ = true;
  connector_.defer_serve(*this);
}

void Pool::serve_deferred() {
  serve_deferred_ = false;
  serve_waiters();
}

void Pool::remove(PoolServer* s) {
  if (s->state_ == ServerState::none) return;
  set_state(s, ServerState::none);
  open_as_needed();
}

bool Pool::wait_welcome(PoolClient* c) {
  if (have_welcome_) return true;
  if (in_backoff() && connecting_.empty()) {
    c->pool_wait_failed(last_error_);
    return false;
  }
  enqueue(c, ClientWait::welcome);
  open_as_needed();
  return false;
}

Acquire Pool::acquire(PoolClient* c, PoolServer*& out) {
  out = nullptr;
  // Waiters first: a newcomer never overtakes a queued client.
  if (!idle_.empty() && wait_server_.empty()) {
    // LIFO unless round_robin: the most recently used connection is the
    // warmest, and the least used ones age out through server_idle_timeout.
    PoolServer* s = next_idle();
    link(s, c);
    stats.wait_hist.add(0);
    out = s;
    return Acquire::assigned;
  }
  bool none_left = connecting_.empty() && idle_.empty() && active_.empty() && resetting_.empty();
  if (in_backoff() && none_left) return Acquire::failed;
  enqueue(c, ClientWait::server);
  open_as_needed();
  serve_waiters();
  return c->wait_ == ClientWait::none ? Acquire::assigned : Acquire::queued;
}

bool Pool::acquire_or_wait(PoolClient* c) {
  PoolServer* s = nullptr;
  switch (acquire(c, s)) {
    case Acquire::assigned:
      if (s) c->pool_server_assigned(s);  // else serve_waiters already did
      return true;
    case Acquire::queued:
      return true;
    case Acquire::failed:
      return false;
  }
  return false;
}

void Pool::cancel_wait(PoolClient* c) {
  if (c->wait_ != ClientWait::none && c->wait_pool_ == this) dequeue(c);
}

void Pool::link(PoolServer* s, PoolClient* c) {
  set_state(s, ServerState::active);
  s->client_ = c;
}

TimePoint Pool::oldest_wait_since() const {
  TimePoint oldest{};
  for (const List<PoolClient, &PoolClient::pool_hook>* l : {&wait_server_, &wait_welcome_})
    if (const PoolClient* c = l->front(); c && (oldest == TimePoint{} || c->wait_since_ < oldest))
      oldest = c->wait_since_;
  return oldest;
}

Duration Pool::max_wait() const {
  const TimePoint oldest = oldest_wait_since();
  if (oldest == TimePoint{}) return Duration{0};
  return std::chrono::duration_cast<Duration>(connector_.now() - oldest);
}

void Pool::enqueue(PoolClient* c, ClientWait w) {
  c->wait_ = w;
  c->wait_noticed_ = false;
  c->wait_since_ = connector_.now();
  c->wait_pool_ = this;
  (w == ClientWait::welcome ? wait_welcome_ : wait_server_).push_back(c);
}

void Pool::note_waited(TimePoint since) {
  const auto waited = std::chrono::duration_cast<std::chrono::microseconds>(connector_.now() - since);
  const uint64_t us = waited.count() > 0 ? uint64_t(waited.count()) : 0;
  stats.wait_us += us;
  stats.wait_hist.add(us);
  ++stats.waited;
}

void Pool::dequeue(PoolClient* c) {
  if (c->wait_ == ClientWait::welcome) wait_welcome_.remove(c);
  else if (c->wait_ == ClientWait::server) wait_server_.remove(c);
  c->wait_ = ClientWait::none;
  c->wait_pool_ = nullptr;
  // No client waits here any more: a slot wanted for them is not.
  if (key_limit_ && wait_server_.empty() && wait_welcome_.empty()) connector_.slot_unwanted(*this);
}

void Pool::serve_waiters() {
  if (serving_) return;  // a callback re-entered; the outer loop continues
  serving_ = true;
  while (!idle_.empty() && !wait_server_.empty()) {
    PoolClient* c = wait_server_.front();
    note_waited(c->wait_since_);
    dequeue(c);
    PoolServer* s = next_idle();
    link(s, c);
    c->pool_server_assigned(s);
  }
  serving_ = false;
}

bool Pool::in_backoff() const { return in_failure_ && connector_.now() < retry_at_; }

bool Pool::can_open(bool use_reserve) const {
  size_t limit = size_t(settings_.pool_size) + (use_reserve ? size_t(settings_.reserve_pool_size) : 0);
  if (key_total() >= limit) return false;
  if (db_limit_ && db_limit_->full()) return false;
  if (user_limit_ && user_limit_->full()) return false;
  return true;
}

bool Pool::take_slot(bool use_reserve) {
  const int limit = settings_.pool_size + (use_reserve ? settings_.reserve_pool_size : 0);
  // A slot granted to this worker first (it is already counted), then a
  // free one. Undone in reverse if a later limit has none.
  bool granted[3] = {false, false, false};
  SharedLimit* limits[3] = {key_limit_, db_limit_, user_limit_};
  auto undo = [&](int upto) {
    for (int i = 0; i < upto; ++i) {
      if (!limits[i]) continue;
      if (granted[i]) limits[i]->granted[worker_ % 64].fetch_add(1, std::memory_order_relaxed);
      else limits[i]->give();
    }
  };
  if (!key_limit_) {
    size_t total = connecting_.size() + idle_.size() + active_.size() + resetting_.size();
    if (total >= size_t(std::max(0, limit))) return false;
  }
  for (int i = 0; i < 3; ++i) {
    SharedLimit* l = limits[i];
    if (!l) continue;
    if (key_limit_ && l->take_grant(worker_)) {
      granted[i] = true;
      continue;
    }
    const bool ok = i == 0 ? limit > 0 && l->try_take(limit) : l->try_take();
    if (!ok) {
      undo(i);
      return false;
    }
  }
  slot_held_ = true;
  return true;
}

void Pool::give_slot() {
  if (!slot_held_) return;
  slot_held_ = false;
  for (SharedLimit* l : {db_limit_, user_limit_, key_limit_})
    if (l) l->give();
}

bool Pool::open_one(bool use_reserve, proto::ErrorFields& error, bool& no_slot) {
  no_slot = !take_slot(use_reserve);
  if (no_slot) return false;
  bool ok = connector_.open_server(*this, error);
  give_slot();  // unused if no server was added
  return ok;
}

void Pool::open_as_needed() {
  if (in_backoff()) return;
  bool use_reserve = false;
  if (settings_.reserve_pool_size > 0 && !wait_server_.empty()) {
    use_reserve =
        connector_.now() - wait_server_.front()->wait_since_ >= settings_.reserve_pool_timeout;
  }
  for (;;) {
    size_t needed = wait_server_.size() + (wait_welcome_.empty() ? 0 : 1);
    if (connecting_.size() >= needed) return;
    proto::ErrorFields error;
    bool no_slot = false;
    if (!open_one(use_reserve, error, no_slot)) {
      if (no_slot) {
        if (key_limit_ && starved_by_shared_limit()) connector_.slot_wanted(*this);
        return;
      }
      // Nothing to try with (e.g. no credentials yet): tell the waiters.
      fail_waiters(error, false);
      return;
    }
  }
}

void Pool::fail_waiters(const proto::ErrorFields& e, bool welcome_only) {
  while (PoolClient* c = wait_welcome_.front()) {
    dequeue(c);
    c->pool_wait_failed(e);
  }
  if (welcome_only) return;
  while (PoolClient* c = wait_server_.front()) {
    dequeue(c);
    c->pool_wait_failed(e);
  }
}

void Pool::tick() {
  TimePoint now = connector_.now();
  if (in_failure_ && now >= retry_at_) in_failure_ = false;

  if (settings_.query_wait_timeout.count() > 0) {
    proto::ErrorFields e;
    e.severity = "ERROR";
    e.sqlstate = proto::sqlstate::kProtocolViolation;
    e.message = "query_wait_timeout";
    e.detail = "no server connection became available within query_wait_timeout";
    for (auto* l : {&wait_server_, &wait_welcome_}) {
      while (PoolClient* c = l->front()) {
        if (now - c->wait_since_ < settings_.query_wait_timeout) break;
        dequeue(c);
        c->pool_wait_failed(e);
      }
    }
  }

  // query_wait_notify: the longest waiters are at the front.
  if (settings_.query_wait_notify.count() > 0) {
    std::vector<PoolClient*> due;
    for (PoolClient* c = wait_server_.front(); c; c = decltype(wait_server_)::next(c)) {
      if (now - c->wait_since_ < settings_.query_wait_notify) break;
      if (!c->wait_noticed_) due.push_back(c);
    }
    for (PoolClient* c : due) {
      c->wait_noticed_ = true;
      c->pool_wait_notice();
    }
  }

  std::vector<PoolServer*> doomed;
  for (PoolServer* s = connecting_.front(); s; s = decltype(connecting_)::next(s)) {
    if (settings_.server_connect_timeout.count() > 0 &&
        now - s->since_ >= settings_.server_connect_timeout)
      doomed.push_back(s);
  }
  for (PoolServer* s : doomed) s->pool_close("server_connect_timeout");
  doomed.clear();

  size_t total = connecting_.size() + idle_.size() + active_.size() + resetting_.size();
  for (PoolServer* s = idle_.front(); s; s = decltype(idle_)::next(s)) {
    if (settings_.server_lifetime.count() > 0 && now - s->created_ >= settings_.server_lifetime) {
      doomed.push_back(s);
    } else if (settings_.server_idle_timeout.count() > 0 &&
               now - s->since_ >= settings_.server_idle_timeout &&
               total - doomed.size() > size_t(settings_.min_pool_size)) {
      doomed.push_back(s);
    }
  }
  for (PoolServer* s : doomed) {
    s->pool_close(now - s->created_ >= settings_.server_lifetime && settings_.server_lifetime.count() > 0
                      ? "server_lifetime"
                      : "server_idle_timeout");
  }

  if (have_welcome_ && !in_backoff()) {
    for (;;) {
      size_t total_now = connecting_.size() + idle_.size() + active_.size() + resetting_.size();
      if (total_now >= size_t(settings_.min_pool_size)) break;
      proto::ErrorFields error;
      bool no_slot = false;
      if (!open_one(false, error, no_slot)) break;
    }
  }
  open_as_needed();
}

void Pool::close_idle(const char* reason) {
  std::vector<PoolServer*> doomed;
  for (PoolServer* s = idle_.front(); s; s = decltype(idle_)::next(s)) doomed.push_back(s);
  for (PoolServer* s : doomed) s->pool_close(reason);
}

}  // namespace pgmux::pool

namespace pgmux::pool {

void Pool::reconnect(bool new_welcome) {
  ++generation_;
  if (new_welcome) have_welcome_ = false;
  close_idle("RECONNECT");
}

bool Pool::has_old_servers() const {
  for (const List<PoolServer, &PoolServer::pool_hook>* l : {&connecting_, &idle_, &active_, &resetting_})
    for (const PoolServer* s = l->front(); s; s = std::remove_reference_t<decltype(*l)>::next(s))
      if (s->generation_ != generation_) return true;
  return false;
}

bool Pool::close_one_idle(const char* reason) {
  PoolServer* s = idle_.front();  // idle_ is LIFO from the back: front is the oldest
  if (!s) return false;
  s->pool_close(reason);
  return true;
}

bool Pool::starved_by_shared_limit() const {
  if (wait_server_.empty() && wait_welcome_.empty()) return false;
  size_t needed = wait_server_.size() + (wait_welcome_.empty() ? 0 : 1);
  if (connecting_.size() >= needed) return false;
  size_t total = connecting_.size() + idle_.size() + active_.size() + resetting_.size();
  if (total >= size_t(settings_.pool_size)) return false;
  // Other workers' pools of this key hold the rest of pool_size.
  if (key_limit_ && key_total() >= size_t(settings_.pool_size)) return true;
  return (db_limit_ && db_limit_->full()) || (user_limit_ && user_limit_->full());
}

}  // namespace pgmux::pool
