#include "src/hub.hpp"

#include <thread>

#include "src/worker.hpp"

namespace pgmux {

static_assert(conf::kMaxWorkers <= 64, "pool::SharedLimit keeps one want bit and one grant slot per worker, 64 of each");

void Hub::broadcast(Worker* self, const std::function<void(Worker&)>& fn) {
  if (self) fn(*self);
  for (Worker* w : workers_)
    if (w != self) w->post(fn);
}

void Hub::read_all(Worker* self, const std::function<void()>& fn) {
  if (workers_.size() <= 1) {
    fn();
    return;
  }
  // Another worker may be reading all: while we wait for our turn, we must
  // still park when it asks, or both would wait for ever.
  while (!read_mu_.try_lock()) {
    if (self) self->park_if_asked();
    std::this_thread::yield();
  }
  {
    std::lock_guard lk(park_mu_);
    ++round_;
    parked_ = 0;
  }
  size_t expected = 0;
  for (Worker* w : workers_)
    if (w != self && w->ask_park()) ++expected;
  {
    std::unique_lock lk(park_mu_);
    park_cv_.wait(lk, [&] { return parked_ >= expected; });
  }
  struct Release {
    Hub& h;
    ~Release() {
      {
        std::lock_guard lk(h.park_mu_);
        h.released_ = h.round_;
      }
      h.park_cv_.notify_all();
      h.read_mu_.unlock();
    }
  } release{*this};
  fn();
}

void Hub::park() {
  std::unique_lock lk(park_mu_);
  const uint64_t round = round_;
  ++parked_;
  park_cv_.notify_all();
  park_cv_.wait(lk, [&] { return released_ >= round; });
}

void Hub::park_gone() {
  {
    std::lock_guard lk(park_mu_);
    ++parked_;
  }
  park_cv_.notify_all();
}

Hub::LoginRefusal Hub::count_login(const std::string& db, int max_db, const std::string& user, int max_user) {
  std::lock_guard lk(login_counts_mu_);
  auto d = db_clients_.find(db);
  auto u = user_clients_.find(user);
  if (max_db > 0 && d != db_clients_.end() && d->second >= max_db) return LoginRefusal::db;
  if (max_user > 0 && u != user_clients_.end() && u->second >= max_user) return LoginRefusal::user;
  ++db_clients_[db];
  ++user_clients_[user];
  return LoginRefusal::none;
}

void Hub::uncount_login(const std::string& db, const std::string& user) {
  std::lock_guard lk(login_counts_mu_);
  for (auto [m, key] : {std::pair{&db_clients_, &db}, std::pair{&user_clients_, &user}}) {
    auto it = m->find(*key);
    if (it != m->end() && --it->second <= 0) m->erase(it);
  }
}

int64_t Hub::clients_of_database(const std::string& db) {
  std::lock_guard lk(login_counts_mu_);
  auto it = db_clients_.find(db);
  return it == db_clients_.end() ? 0 : it->second;
}

std::map<std::string, int64_t, std::less<>> Hub::clients_by_user() {
  std::lock_guard lk(login_counts_mu_);
  return user_clients_;
}

size_t Hub::pick_worker() {
  const size_t n = workers_.size();
  if (n == 1) {
    workers_[0]->load.fetch_add(1, std::memory_order_relaxed);
    return 0;
  }
  const size_t start = rr_.fetch_add(1, std::memory_order_relaxed) % n;
  size_t best = start;
  int64_t best_load = workers_[start]->load.load(std::memory_order_relaxed);
  for (size_t k = 1; k < n; ++k) {
    size_t i = (start + k) % n;
    int64_t l = workers_[i]->load.load(std::memory_order_relaxed);
    if (l < best_load) {
      best = i;
      best_load = l;
    }
  }
  workers_[best]->load.fetch_add(1, std::memory_order_relaxed);
  return best;
}

pool::SharedLimit& Hub::limit(LimitMap& m, const std::string& name) {
  std::lock_guard lk(limits_mu_);
  auto& p = m[name];
  if (!p) p = std::make_unique<pool::SharedLimit>();
  return *p;
}

void Hub::for_each_limit(const std::function<void(LimitKind, const std::string&, pool::SharedLimit&)>& f) {
  std::lock_guard lk(limits_mu_);
  for (auto [kind, m] : {std::pair{LimitKind::db, &db_limits_}, std::pair{LimitKind::user, &user_limits_},
                         std::pair{LimitKind::key, &key_limits_}})
    for (auto& [name, l] : *m) f(kind, name, *l);
}

void Hub::worker_stopped() {
  if (stopped_.fetch_add(1) + 1 != workers_.size()) return;
  // The first worker's loop holds the process's handles (signals, metrics):
  // they close there.
  workers_[0]->post([this](Worker&) {
    if (on_all_stopped) on_all_stopped();
  });
}

}  // namespace pgmux
