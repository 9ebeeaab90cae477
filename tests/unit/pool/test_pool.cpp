// Pool logic without sockets: a fake connector and a hand-driven clock.
#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "pool/pool.hpp"

using namespace pgmux::pool;
using namespace std::chrono_literals;
namespace proto = pgmux::proto;

namespace {

struct FakeServer : PoolServer {
  std::vector<std::string> closes;
  void pool_close(const char* reason) override {
    closes.emplace_back(reason);
    if (pool()) pool()->remove(this);
  }
};

struct FakeClient : PoolClient {
  int welcomed = 0;
  PoolServer* assigned = nullptr;
  std::vector<std::string> errors;
  void pool_welcome_ready() override { ++welcomed; }
  void pool_server_assigned(PoolServer* s) override { assigned = s; }
  void pool_wait_failed(const proto::ErrorFields& e) override { errors.push_back(e.message); }
  void pool_wait_notice() override { ++notices; }
  int notices = 0;
};

struct FakeConnector : Connector {
  TimePoint t = TimePoint{} + 1h;
  std::vector<std::unique_ptr<FakeServer>> servers;
  bool refuse = false;
  bool open_server(Pool& pool, proto::ErrorFields& error) override {
    if (refuse) {
      error.message = "no credentials";
      return false;
    }
    servers.push_back(std::make_unique<FakeServer>());
    pool.add_connecting(servers.back().get());
    return true;
  }
  TimePoint now() const override { return t; }
  FakeServer* last() { return servers.back().get(); }
};

PoolSettings settings(int size) {
  PoolSettings s;
  s.pool_size = size;
  s.query_wait_timeout = 2000ms;
  s.server_connect_timeout = 1000ms;
  s.server_login_retry = 3000ms;
  s.server_idle_timeout = 10000ms;
  s.server_lifetime = 60000ms;
  return s;
}

Params welcome() { return {{"server_version", "15.0"}}; }

// Logs in every connecting server.
void login_all(Pool& p, FakeConnector& c) {
  for (auto& s : c.servers)
    if (s->state() == ServerState::connecting) p.server_login_ok(s.get(), welcome());
}

}  // namespace

TEST_CASE("first client waits for the welcome; one connection is opened") {
  FakeConnector c;
  Pool p("app", "alice", settings(5), c);
  FakeClient a, b;
  CHECK_FALSE(p.wait_welcome(&a));
  CHECK_FALSE(p.wait_welcome(&b));
  REQUIRE(c.servers.size() == 1);  // one login is enough for every waiter
  CHECK(p.counts().waiting_welcome == 2);
  p.server_login_ok(c.last(), welcome());
  CHECK(a.welcomed == 1);
  CHECK(b.welcomed == 1);
  CHECK(p.welcome_ready());
  CHECK(p.welcome()[0].first == "server_version");
  CHECK(p.counts().idle == 1);
  FakeClient late;
  CHECK(p.wait_welcome(&late));  // cached from now on
}

TEST_CASE("reconnect(true): new logins wait for a new server's values, not an old one's") {
  FakeConnector c;
  Pool p("app", "alice", settings(5), c);
  FakeClient a;
  CHECK_FALSE(p.wait_welcome(&a));
  FakeServer* first = c.last();
  p.server_login_ok(first, {{"TimeZone", "Pacific/Auckland"}});
  // A second server is on its way when the parameters change.
  FakeClient busy;
  PoolServer* got = nullptr;
  REQUIRE(p.acquire(&busy, got) == Acquire::assigned);
  FakeClient busy2;
  REQUIRE(p.acquire(&busy2, got) == Acquire::queued);
  FakeServer* old_connecting = c.last();
  REQUIRE(old_connecting != first);
  const uint64_t old_version = p.welcome_version();
  p.reconnect(true);
  CHECK_FALSE(p.welcome_ready());
  FakeClient b;
  CHECK_FALSE(p.wait_welcome(&b));
  // The server opened before the change logs in: it is closed (it would
  // serve with the old settings) and gives no welcome.
  const size_t opened = c.servers.size();
  p.server_login_ok(old_connecting, {{"TimeZone", "Pacific/Auckland"}});
  CHECK(old_connecting->closes == std::vector<std::string>{"RECONNECT"});
  CHECK_FALSE(p.welcome_ready());
  CHECK(b.welcomed == 0);
  CHECK(c.servers.size() > opened);  // another one replaces it for the waiters
  // A server of the new generation gives the welcome.
  FakeServer* fresh = c.last();
  REQUIRE(fresh->state() == ServerState::connecting);
  p.server_login_ok(fresh, {{"TimeZone", "Europe/Lisbon"}});
  CHECK(p.welcome_ready());
  CHECK(b.welcomed == 1);
  CHECK(p.welcome()[0].second == "Europe/Lisbon");
  CHECK(p.welcome_version() != old_version);
  CHECK(busy2.assigned == fresh);
  // A plain reconnect keeps the cached values.
  p.reconnect();
  CHECK(p.welcome_ready());
}

TEST_CASE("reconnect(true) with the pool's only server still logging in") {
  FakeConnector c;
  Pool p("app", "alice", settings(1), c);
  FakeClient a;
  CHECK_FALSE(p.wait_welcome(&a));
  FakeServer* first = c.last();
  p.reconnect(true);
  FakeClient b;
  CHECK_FALSE(p.wait_welcome(&b));
  p.server_login_ok(first, {{"TimeZone", "Pacific/Auckland"}});
  CHECK(first->closes == std::vector<std::string>{"RECONNECT"});
  REQUIRE(c.servers.size() == 2);  // its slot went to a new one
  CHECK(a.welcomed == 0);
  p.server_login_ok(c.last(), {{"TimeZone", "Europe/Lisbon"}});
  CHECK(a.welcomed == 1);
  CHECK(b.welcomed == 1);
  CHECK(p.welcome()[0].second == "Europe/Lisbon");
}

TEST_CASE("acquire takes an idle server, LIFO, and release returns it") {
  FakeConnector c;
  Pool p("app", "alice", settings(5), c);
  FakeClient a, b, d;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  REQUIRE(p.acquire(&a, s, e) == Acquire::queued);
  REQUIRE(p.acquire(&b, s, e) == Acquire::queued);
  REQUIRE(c.servers.size() == 2);
  login_all(p, c);
  REQUIRE(a.assigned != nullptr);
  REQUIRE(b.assigned != nullptr);
  CHECK(a.assigned != b.assigned);
  CHECK(a.assigned->client() == &a);
  CHECK(p.counts().active == 2);
  c.t += 1s;
  p.release(a.assigned);
  c.t += 1s;
  p.release(b.assigned);
  REQUIRE(p.acquire(&d, s, e) == Acquire::assigned);
  CHECK(s == b.assigned);  // most recently released first
  CHECK(s->state() == ServerState::active);
}

TEST_CASE("round_robin: idle servers are reused oldest first") {
  FakeConnector c;
  PoolSettings st = settings(3);
  st.round_robin = true;
  Pool p("app", "alice", st, c);
  FakeClient a, b, d, late1, late2, late3;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  for (FakeClient* x : {&a, &b, &d}) REQUIRE(p.acquire(x, s, e) == Acquire::queued);
  login_all(p, c);
  PoolServer* first = a.assigned;
  PoolServer* second = b.assigned;
  PoolServer* third = d.assigned;
  p.release(first);
  p.release(second);
  p.release(third);
  REQUIRE(p.acquire(&late1, s, e) == Acquire::assigned);
  CHECK(s == first);  // released longest ago
  p.release(s);       // now the most recent: last in line
  REQUIRE(p.acquire(&late2, s, e) == Acquire::assigned);
  CHECK(s == second);
  REQUIRE(p.acquire(&late3, s, e) == Acquire::assigned);
  CHECK(s == third);
  FakeClient waiter;
  REQUIRE(p.acquire(&waiter, s, e) == Acquire::assigned);  // `first`, idle again
  CHECK(s == first);
  // Waiters still go first come, first served, each with the server released.
  FakeClient queued1, queued2;
  REQUIRE(p.acquire(&queued1, s, e) == Acquire::queued);
  REQUIRE(p.acquire(&queued2, s, e) == Acquire::queued);
  p.release(third);
  CHECK(queued1.assigned == third);
  p.release(second);
  CHECK(queued2.assigned == second);
}

TEST_CASE("clients beyond pool_size wait in FIFO order") {
  FakeConnector c;
  Pool p("app", "alice", settings(2), c);
  std::vector<FakeClient> cl(6);
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  for (auto& x : cl) REQUIRE(p.acquire(&x, s, e) == Acquire::queued);
  CHECK(c.servers.size() == 2);  // bounded by pool_size
  login_all(p, c);
  CHECK(cl[0].assigned);
  CHECK(cl[1].assigned);
  CHECK_FALSE(cl[2].assigned);
  CHECK(p.counts().waiting_server == 4);
  for (size_t i = 2; i < cl.size(); ++i) {
    PoolServer* srv = cl[i - 2].assigned;
    p.begin_reset(srv);
    CHECK(srv->state() == ServerState::resetting);
    CHECK_FALSE(cl[i].assigned);  // not before the reset finished
    p.release(srv);
    CHECK(cl[i].assigned == srv);
    for (size_t j = i + 1; j < cl.size(); ++j) CHECK_FALSE(cl[j].assigned);
  }
  CHECK(c.servers.size() == 2);
}

TEST_CASE("a newcomer never overtakes a waiting client") {
  FakeConnector c;
  Pool p("app", "alice", settings(1), c);
  FakeClient a, b, n;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  p.acquire(&a, s, e);
  login_all(p, c);
  REQUIRE(a.assigned);
  REQUIRE(p.acquire(&b, s, e) == Acquire::queued);
  p.release(a.assigned);
  CHECK(b.assigned);
  REQUIRE(p.acquire(&n, s, e) == Acquire::queued);
}

TEST_CASE("query_wait_timeout fails waiting clients in order") {
  FakeConnector c;
  Pool p("app", "alice", settings(1), c);
  FakeClient a, b, d;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  p.acquire(&a, s, e);
  login_all(p, c);
  p.acquire(&b, s, e);
  c.t += 1500ms;
  p.acquire(&d, s, e);
  c.t += 600ms;  // b waited 2.1 s, d 0.6 s
  p.tick();
  REQUIRE(b.errors.size() == 1);
  CHECK(b.errors[0] == "query_wait_timeout");
  CHECK(d.errors.empty());
  CHECK(p.counts().waiting_server == 1);
  c.t += 2s;
  p.tick();
  CHECK(d.errors.size() == 1);
}

TEST_CASE("query_wait_notify tells each client once per wait, longest waiters first") {
  FakeConnector c;
  PoolSettings st = settings(1);
  st.query_wait_timeout = 0ms;
  st.query_wait_notify = 1000ms;
  Pool p("app", "alice", st, c);
  FakeClient a, b, d;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  p.acquire(&a, s, e);
  login_all(p, c);
  PoolServer* held = s ? s : a.assigned;
  REQUIRE(held);
  s = nullptr;
  p.acquire(&b, s, e);
  c.t += 700ms;
  p.acquire(&d, s, e);
  c.t += 400ms;  // b waited 1.1 s, d 0.4 s
  p.tick();
  CHECK(b.notices == 1);
  CHECK(d.notices == 0);
  c.t += 700ms;  // b 1.8 s, d 1.1 s
  p.tick();
  CHECK(b.notices == 1);  // once per wait
  CHECK(d.notices == 1);
  CHECK(b.errors.empty());  // query_wait_timeout 0: no limit
  // b gets the server; when it waits again, the clock starts over.
  p.release(held);
  REQUIRE(b.assigned);
  PoolServer* bs = b.assigned;
  p.release(bs);
  REQUIRE(d.assigned);
  b.assigned = nullptr;
  s = nullptr;
  p.acquire(&b, s, e);
  CHECK_FALSE(s);
  c.t += 500ms;
  p.tick();
  CHECK(b.notices == 1);
  c.t += 600ms;
  p.tick();
  CHECK(b.notices == 2);
  st.query_wait_notify = 0ms;  // off
  Pool off("app", "bob", st, c);
  FakeClient x, y;
  s = nullptr;
  off.acquire(&x, s, e);
  login_all(off, c);
  s = nullptr;
  off.acquire(&y, s, e);
  c.t += 10s;
  off.tick();
  CHECK(y.notices == 0);
}

TEST_CASE("cancel_wait removes a client from the queue") {
  FakeConnector c;
  Pool p("app", "alice", settings(1), c);
  FakeClient a, b, d;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  p.acquire(&a, s, e);
  login_all(p, c);
  p.acquire(&b, s, e);
  p.acquire(&d, s, e);
  p.cancel_wait(&b);
  CHECK(b.waiting() == ClientWait::none);
  p.release(a.assigned);
  CHECK_FALSE(b.assigned);
  CHECK(d.assigned);
}

TEST_CASE("login failure fails welcome waiters and starts the backoff") {
  FakeConnector c;
  Pool p("app", "alice", settings(3), c);
  FakeClient a, b;
  p.wait_welcome(&a);
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  p.acquire(&b, s, e);
  proto::ErrorFields err;
  err.message = "server login failed: password authentication failed";
  for (auto& srv : c.servers) p.server_login_failed(srv.get(), err);
  CHECK(a.errors.size() == 1);
  CHECK(b.errors.size() == 1);  // nothing left that could serve it
  // During the backoff new clients fail at once, without a new attempt.
  size_t opened = c.servers.size();
  FakeClient n;
  CHECK(p.acquire(&n, s, e) == Acquire::failed);
  CHECK(e.message == err.message);
  CHECK(c.servers.size() == opened);
  c.t += 3001ms;
  p.tick();
  FakeClient m;
  CHECK(p.acquire(&m, s, e) == Acquire::queued);
  CHECK(c.servers.size() == opened + 1);
}

TEST_CASE("a connector that cannot even try fails the waiters") {
  FakeConnector c;
  c.refuse = true;
  Pool p("app", "alice", settings(3), c);
  FakeClient a;
  p.wait_welcome(&a);
  REQUIRE(a.errors.size() == 1);
  CHECK(a.errors[0] == "no credentials");
}

TEST_CASE("server_connect_timeout closes connections stuck in login") {
  FakeConnector c;
  Pool p("app", "alice", settings(2), c);
  FakeClient a;
  p.wait_welcome(&a);
  c.t += 999ms;
  p.tick();
  CHECK(c.last()->closes.empty());
  c.t += 2ms;
  p.tick();
  REQUIRE(c.servers[0]->closes.size() == 1);
  CHECK(c.servers[0]->closes[0] == "server_connect_timeout");
  // The waiter is still there, so a new connection is attempted.
  CHECK(c.servers.size() == 2);
}

TEST_CASE("idle timeout keeps min_pool_size; lifetime closes old servers") {
  FakeConnector c;
  auto st = settings(4);
  st.min_pool_size = 1;
  Pool p("app", "alice", st, c);
  std::vector<FakeClient> cl(3);
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  for (auto& x : cl) p.acquire(&x, s, e);
  login_all(p, c);
  for (auto& x : cl) p.release(x.assigned);
  CHECK(p.counts().idle == 3);
  c.t += 10001ms;
  p.tick();
  CHECK(p.counts().idle == 1);  // min_pool_size kept
  c.t += 60s;
  p.tick();
  // The survivor exceeded server_lifetime; min_pool_size opens a fresh one.
  CHECK(p.counts().idle == 0);
  CHECK(p.counts().connecting == 1);
}

TEST_CASE("min_pool_size is filled once the pool has logged in") {
  FakeConnector c;
  auto st = settings(5);
  st.min_pool_size = 3;
  Pool p("app", "alice", st, c);
  p.tick();
  CHECK(c.servers.empty());  // no credentials known yet
  FakeClient a;
  p.wait_welcome(&a);
  login_all(p, c);
  p.tick();
  CHECK(p.counts().total_servers() == 3);
}

TEST_CASE("reserve pool opens after reserve_pool_timeout") {
  FakeConnector c;
  auto st = settings(1);
  st.reserve_pool_size = 2;
  st.reserve_pool_timeout = 500ms;
  Pool p("app", "alice", st, c);
  FakeClient a, b, d;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  p.acquire(&a, s, e);
  login_all(p, c);
  p.acquire(&b, s, e);
  p.tick();
  CHECK(c.servers.size() == 1);
  c.t += 600ms;
  p.tick();
  CHECK(c.servers.size() == 2);
  login_all(p, c);
  CHECK(b.assigned);
}

TEST_CASE("shared limits bound pools together") {
  FakeConnector c;
  SharedLimit db{3, 0};
  std::vector<FakeClient> cl(4);  // outlive the pools that queue them
  Pool p1("app", "alice", settings(5), c, &db, nullptr);
  Pool p2("app", "bob", settings(5), c, &db, nullptr);
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  p1.acquire(&cl[0], s, e);
  p1.acquire(&cl[1], s, e);
  p2.acquire(&cl[2], s, e);
  p2.acquire(&cl[3], s, e);
  CHECK(db.count == 3);
  CHECK(c.servers.size() == 3);
  // A server leaving frees a slot (here its own pool's waiter takes it).
  p1.remove(c.servers[0].get());
  CHECK(db.count == 3);
  CHECK(c.servers.size() == 4);
}

TEST_CASE("remove from any state keeps the lists consistent") {
  FakeConnector c;
  Pool p("app", "alice", settings(3), c);
  FakeClient a, b;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  p.acquire(&a, s, e);
  p.acquire(&b, s, e);
  login_all(p, c);
  p.begin_reset(a.assigned);
  p.remove(a.assigned);
  p.remove(b.assigned);
  CHECK(p.counts().total_servers() == 0);
  CHECK(a.assigned->state() == ServerState::none);
  CHECK(a.assigned->pool() == nullptr);
  p.remove(a.assigned);  // idempotent
}

TEST_CASE("a pool starved by a shared limit can take an idle slot from another pool") {
  FakeConnector c;
  SharedLimit db{2, 0};
  std::vector<FakeClient> cl(3);
  Pool p1("app", "alice", settings(5), c, &db, nullptr);
  Pool p2("app", "bob", settings(5), c, &db, nullptr);
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  p1.acquire(&cl[0], s, e);
  p1.acquire(&cl[1], s, e);
  login_all(p1, c);
  p1.release(cl[0].assigned);
  p1.release(cl[1].assigned);
  CHECK(db.count == 2);
  CHECK_FALSE(p2.starved_by_shared_limit());
  REQUIRE(p2.acquire(&cl[2], s, e) == Acquire::queued);
  CHECK(p2.starved_by_shared_limit());
  CHECK(p2.counts().total_servers() == 0);
  REQUIRE(p1.close_one_idle("freeing a slot"));
  CHECK(db.count == 1);  // p1 gave one back; p2 opens it on its next tick
  p2.tick();
  CHECK(p2.counts().connecting == 1);
  CHECK(db.count == 2);
  CHECK_FALSE(p2.starved_by_shared_limit());
}

// Two workers' pools of one key share pool_size through a key limit.
TEST_CASE("a key limit bounds the pools of every worker together") {
  FakeConnector c;
  SharedLimit key;
  std::vector<FakeClient> cl(4);
  Pool w0("app", "alice", settings(2), c, nullptr, nullptr, &key);
  Pool w1("app", "alice", settings(2), c, nullptr, nullptr, &key);
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  REQUIRE(w0.acquire(&cl[0], s, e) == Acquire::queued);
  REQUIRE(w0.acquire(&cl[1], s, e) == Acquire::queued);
  CHECK(key.count == 2);
  CHECK(w0.key_total() == 2);
  // The other worker's pool opens nothing: the key is at pool_size.
  REQUIRE(w1.acquire(&cl[2], s, e) == Acquire::queued);
  CHECK(w1.counts().total_servers() == 0);
  CHECK(w1.starved_by_shared_limit());
  login_all(w0, c);
  w0.release(cl[0].assigned);
  CHECK_FALSE(w0.starved_by_shared_limit());
  // The first worker gives its idle server up; the second opens one.
  REQUIRE(w0.close_one_idle("freeing a slot for another worker's clients"));
  CHECK(key.count == 1);
  w1.tick();
  CHECK(w1.counts().connecting == 1);
  CHECK(key.count == 2);
  CHECK_FALSE(w1.starved_by_shared_limit());
  // Servers leaving any way give their slot back.
  login_all(w1, c);
  w0.remove(cl[1].assigned);
  w1.remove(cl[2].assigned);
  CHECK(key.count == 0);
}

// The pools of one (database, user) on workers 0 and 1, under the pool
// key's shared limit, and three clients.
struct TwoWorkers {
  explicit TwoWorkers(int pool_size)
      : w0("app", "alice", settings(pool_size), c, nullptr, nullptr, &key),
        w1("app", "alice", settings(pool_size), c, nullptr, nullptr, &key) {
    w0.set_worker(0);
    w1.set_worker(1);
  }
  FakeConnector c;
  SharedLimit key;
  std::vector<FakeClient> cl = std::vector<FakeClient>(3);
  Pool w0, w1;
};

TEST_CASE("a slot granted to a worker is taken only by that worker's pools") {
  TwoWorkers t(1);
  auto& [c, key, cl, w0, w1] = t;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  REQUIRE(w0.acquire(&cl[0], s, e) == Acquire::queued);
  login_all(w0, c);
  REQUIRE(w1.acquire(&cl[1], s, e) == Acquire::queued);  // no slot left
  REQUIRE(w0.acquire(&cl[2], s, e) == Acquire::queued);  // waits behind cl[0]
  // Worker 0 closes its server for worker 1: the slot stays counted, as a
  // grant, and the count never goes above the limit on the way.
  w0.grant_slot_on_close(&key, 1);
  CHECK(key.count == 1);
  w0.remove(cl[0].assigned);
  CHECK(key.count == 1);
  CHECK(key.granted[1] == 1);
  w0.tick();  // its own waiter cannot take it
  CHECK(w0.counts().total_servers() == 0);
  w1.open_for_waiters();
  CHECK(w1.counts().connecting == 1);
  CHECK(key.count == 1);
  CHECK(key.granted[1] == 0);
  // Only the next server to leave gives its slot so.
  login_all(w1, c);
  w1.remove(cl[1].assigned);
  CHECK(key.count == 0);
  CHECK(key.granted[1] == 0);
  // A grant nobody used goes back to everyone.
  REQUIRE(w0.counts().waiting_server == 1);
  w0.tick();
  login_all(w0, c);
  w0.grant_slot_on_close(&key, 1);
  w0.remove(cl[2].assigned);
  CHECK(key.count == 1);
  key.drop_grants(1);
  CHECK(key.count == 0);
}

// A slot moving to another worker never makes the pool look over its size:
// a release in the meantime keeps its server (it was closed as if a reload
// had shrunk the pool).
TEST_CASE("a slot on its way to another worker does not close a released server") {
  TwoWorkers t(2);
  auto& [c, key, cl, w0, w1] = t;
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  REQUIRE(w0.acquire(&cl[0], s, e) == Acquire::queued);
  login_all(w0, c);
  REQUIRE(w1.acquire(&cl[1], s, e) == Acquire::queued);
  login_all(w1, c);
  REQUIRE(key.count == 2);
  w0.grant_slot_on_close(&key, 1);  // w0's server is about to close for worker 1
  w1.release(cl[1].assigned);       // meanwhile, on worker 1
  CHECK(w1.counts().idle == 1);
  CHECK(key.count == 2);
  w0.remove(cl[0].assigned);
  CHECK(key.count == 2);
  CHECK(key.granted[1] == 1);
}

TEST_CASE("a slot is taken from every limit or from none") {
  FakeConnector c;
  SharedLimit key, db{1, 0}, user{5, 0};
  std::vector<FakeClient> cl(3);
  Pool p1("app", "alice", settings(3), c, &db, &user, &key);
  Pool p2("app", "alice", settings(3), c, &db, &user, &key);
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  REQUIRE(p1.acquire(&cl[0], s, e) == Acquire::queued);
  CHECK(key.count == 1);
  CHECK(db.count == 1);
  CHECK(user.count == 1);
  // max_db_connections is full: the key and user slots taken first go back.
  REQUIRE(p2.acquire(&cl[1], s, e) == Acquire::queued);
  CHECK(c.servers.size() == 1);
  CHECK(key.count == 1);
  CHECK(db.count == 1);
  CHECK(user.count == 1);
  // A connector that cannot open gives the slot back too.
  db.max = 5;
  c.refuse = true;
  p2.acquire(&cl[2], s, e);
  CHECK(cl[2].errors == std::vector<std::string>{"no credentials"});
  CHECK(key.count == 1);
  CHECK(db.count == 1);
  CHECK(user.count == 1);
}

TEST_CASE("update_settings shrinks a pool: idle servers now, busy ones on release") {
  FakeConnector c;
  Pool p("app", "alice", settings(4), c);
  std::vector<FakeClient> cl(6);
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  for (int i = 0; i < 4; ++i) REQUIRE(p.acquire(&cl[size_t(i)], s, e) == Acquire::queued);
  login_all(p, c);
  p.release(cl[0].assigned);  // one idle, three active
  CHECK(p.counts().idle == 1);
  CHECK(p.counts().active == 3);
  p.update_settings(settings(2));
  CHECK(p.counts().idle == 0);  // the idle one went at once
  CHECK(p.counts().active == 3);
  CHECK(static_cast<FakeServer*>(cl[0].assigned)->closes.size() == 1);
  // A waiter is not served by a server over the new size...
  REQUIRE(p.acquire(&cl[4], s, e) == Acquire::queued);
  p.release(cl[1].assigned);
  CHECK(p.counts().total_servers() == 2);
  CHECK_FALSE(cl[4].assigned);
  // ...but by one within it.
  p.release(cl[2].assigned);
  CHECK(cl[4].assigned == cl[2].assigned);
  CHECK(p.counts().total_servers() == 2);
  // Growing again opens servers for waiters at once.
  REQUIRE(p.acquire(&cl[5], s, e) == Acquire::queued);
  CHECK(p.counts().connecting == 0);
  p.update_settings(settings(3));
  CHECK(p.counts().connecting == 1);
  login_all(p, c);
  CHECK(cl[5].assigned != nullptr);
}

namespace {
// A connector that batches like the worker: serves run when it says so.
struct DeferringConnector : FakeConnector {
  std::vector<Pool*> deferred;
  std::vector<Pool*> forgotten;
  void defer_serve(Pool& pool) override { deferred.push_back(&pool); }
  void forget_pool(Pool& pool) override { forgotten.push_back(&pool); }
  void run() {
    std::vector<Pool*> v;
    v.swap(deferred);
    for (Pool* p : v) p->serve_deferred();
  }
};
}  // namespace

TEST_CASE("a released server serves queued clients when the connector runs the deferred serve") {
  DeferringConnector c;
  Pool p("app", "alice", settings(2), c);
  std::vector<FakeClient> cl(5);
  PoolServer* s = nullptr;
  proto::ErrorFields e;
  for (auto& x : cl) REQUIRE(p.acquire(&x, s, e) == Acquire::queued);
  login_all(p, c);  // a login serves at once: nothing else would wake the waiters
  REQUIRE(cl[0].assigned);
  REQUIRE(cl[1].assigned);
  CHECK(c.deferred.empty());
  PoolServer* s0 = cl[0].assigned;
  PoolServer* s1 = cl[1].assigned;
  p.release(s0);
  p.release(s1);
  // One deferred serve for both releases; nobody served yet.
  CHECK(c.deferred.size() == 1);
  CHECK_FALSE(cl[2].assigned);
  CHECK(p.counts().idle == 2);
  // A newcomer in between still queues behind the waiters.
  FakeClient late;
  REQUIRE(p.acquire(&late, s, e) == Acquire::queued);
  CHECK(cl[2].assigned);
  CHECK(cl[3].assigned);
  CHECK_FALSE(cl[4].assigned);
  c.run();  // the deferred serve finds nothing left to do
  CHECK_FALSE(cl[4].assigned);
  p.release(cl[2].assigned);
  CHECK_FALSE(cl[4].assigned);
  c.run();
  CHECK(cl[4].assigned);
  CHECK(p.counts().waiting_server == 1);  // `late`
  // Without waiters a release defers nothing.
  p.release(cl[3].assigned);
  c.run();
  CHECK(late.assigned);
  p.release(cl[4].assigned);
  CHECK(c.deferred.empty());
}

TEST_CASE("a pool destroyed with a deferred serve pending tells the connector") {
  DeferringConnector c;
  {
    Pool p("app", "alice", settings(1), c);
    FakeClient a, b;
    PoolServer* s = nullptr;
    proto::ErrorFields e;
    REQUIRE(p.acquire(&a, s, e) == Acquire::queued);
    REQUIRE(p.acquire(&b, s, e) == Acquire::queued);
    login_all(p, c);
    REQUIRE(a.assigned);
    p.release(a.assigned);
    REQUIRE(c.deferred.size() == 1);
    CHECK(c.forgotten.empty());
    p.cancel_wait(&b);
  }
  REQUIRE(c.forgotten.size() == 1);
  CHECK(c.forgotten[0] == c.deferred[0]);
}
