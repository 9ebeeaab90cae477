// Router decisions from health observations, without servers.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "pool/router.hpp"

using namespace pgmux::pool;
using namespace std::chrono_literals;
namespace conf = pgmux::conf;

namespace {

conf::DatabaseConfig two_replicas() {
  conf::DatabaseConfig db;
  db.name = "app";
  db.host = "10.0.0.1";
  db.port = 5432;
  db.replicas = {{"10.0.0.2", 5432}, {"10.0.0.3", 5433}};
  db.read_routing = conf::ReadRouting::explicit_;
  db.max_replica_lag = 10s;
  return db;
}

const TimePoint t0 = TimePoint{} + 1h;
const std::function<size_t(size_t)> no_load = [](size_t) { return size_t(0); };

// Primary at `lsn`, both replicas caught up with it.
void all_healthy(Router& r, uint64_t lsn = 1000, TimePoint at = t0) {
  r.check_ok(0, false, lsn, 0, at);
  r.check_ok(1, true, lsn, 0, at);
  r.check_ok(2, true, lsn, 0, at);
}

}  // namespace

TEST_CASE("router: lsn parsing", "[router]") {
  CHECK(parse_lsn("0/0") == 0u);
  CHECK(parse_lsn("16/B374D848") == 0x16B374D848ull);
  CHECK(parse_lsn("FFFFFFFF/FFFFFFFF") == 0xFFFFFFFFFFFFFFFFull);
  CHECK_FALSE(parse_lsn(""));
  CHECK_FALSE(parse_lsn("/1"));
  CHECK_FALSE(parse_lsn("1/"));
  CHECK_FALSE(parse_lsn("1"));
  CHECK_FALSE(parse_lsn("1/2/3"));
  CHECK_FALSE(parse_lsn("g/1"));
  CHECK_FALSE(parse_lsn("100000000/1"));
  CHECK_FALSE(parse_lsn(" 1/1"));
}

TEST_CASE("router: before any check, writes go to the configured host and reads fall back", "[router]") {
  Router r(two_replicas());
  REQUIRE(r.size() == 3);
  CHECK(r.backend(1).name == "10.0.0.2:5432");
  CHECK(r.route(Intent::write, {}, no_load).backend == 0);
  auto d = r.route(Intent::read, {}, no_load);
  CHECK(d.backend == 0);
  CHECK(d.fell_back);
}

TEST_CASE("router: reads go to healthy replicas, writes to the primary", "[router]") {
  Router r(two_replicas());
  all_healthy(r);
  CHECK(r.route(Intent::write, {}, no_load).backend == 0);
  std::set<int> seen;
  for (int k = 0; k < 10; ++k) {
    auto d = r.route(Intent::read, {}, no_load);
    CHECK_FALSE(d.fell_back);
    seen.insert(d.backend);
  }
  CHECK(seen == std::set<int>{1, 2});  // ties rotate
}

TEST_CASE("router: least_outstanding prefers the less busy replica", "[router]") {
  Router r(two_replicas());
  all_healthy(r);
  std::map<size_t, size_t> load{{1, 5}, {2, 1}};
  for (int k = 0; k < 6; ++k)
    CHECK(r.route(Intent::read, {}, [&](size_t i) { return load[i]; }).backend == 2);
  load[2] = 9;
  CHECK(r.route(Intent::read, {}, [&](size_t i) { return load[i]; }).backend == 1);
}

TEST_CASE("router: round_robin and random spread over eligible replicas only", "[router]") {
  for (auto lb : {conf::LoadBalance::round_robin, conf::LoadBalance::random}) {
    auto db = two_replicas();
    db.load_balance = lb;
    db.replicas.push_back({"10.0.0.4", 5432});
    Router r(db);
    all_healthy(r);
    r.check_ok(3, true, 1000, 0, t0);
    r.check_failed(2, "connection refused");
    std::map<int, int> hits;
    for (int k = 0; k < 200; ++k) hits[r.route(Intent::read, {}, no_load).backend]++;
    CHECK(hits.count(0) == 0);
    CHECK(hits.count(2) == 0);
    CHECK(hits[1] > 30);
    CHECK(hits[3] > 30);
    if (lb == conf::LoadBalance::round_robin) CHECK(hits[1] == hits[3]);
  }
}

TEST_CASE("router: a replica that is down or lags takes no reads; it comes back", "[router]") {
  Router r(two_replicas());
  all_healthy(r);
  auto ev = r.check_failed(1, "connection refused");
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].text == "down: connection refused");
  CHECK(r.check_failed(1, "connection refused").empty());  // logged once
  ev = r.check_ok(2, true, 900, 12.5, t0 + 1s);
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].text.find("excluded from reads: lag 12.500s") == 0);
  auto d = r.route(Intent::read, {}, no_load);
  CHECK(d.backend == 0);
  CHECK(d.fell_back);
  ev = r.check_ok(2, true, 1000, 0.2, t0 + 2s);
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].text.find("takes reads again") == 0);
  CHECK(r.route(Intent::read, {}, no_load).backend == 2);
  ev = r.check_ok(1, true, 1000, 0, t0 + 2s);
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].text == "up, replica");
}

TEST_CASE("router: byte lag bound", "[router]") {
  auto db = two_replicas();
  db.max_replica_lag.reset();
  db.max_replica_lag_bytes = 1024;
  Router r(db);
  all_healthy(r, 10000);
  r.check_ok(1, true, 10000 - 2048, 100.0, t0);  // time lag is not bounded here
  CHECK(r.backend(1).lag_bytes_known);
  CHECK(r.backend(1).lag_bytes == 2048);
  CHECK_FALSE(r.eligible_replica(1, {}));
  CHECK(r.eligible_replica(2, {}));
  r.check_ok(0, false, 10500, 0, t0 + 1s);  // the primary moves on
  CHECK(r.backend(2).lag_bytes == 500);
  CHECK(r.eligible_replica(2, {}));
}

TEST_CASE("router: replica_fallback = error refuses reads when no replica qualifies", "[router]") {
  auto db = two_replicas();
  db.replica_fallback = conf::ReplicaFallback::error;
  Router r(db);
  all_healthy(r);
  r.check_failed(1, "down");
  r.check_failed(2, "down");
  auto d = r.route(Intent::read, {}, no_load);
  CHECK(d.backend == -1);
  CHECK(d.error.severity == "FATAL");
  CHECK(d.error.message.find("replica_fallback") != std::string::npos);
  CHECK(r.route(Intent::write, {}, no_load).backend == 0);
}

TEST_CASE("router: read your writes waits for a replica that replayed past the write", "[router]") {
  Router r(two_replicas());
  all_healthy(r, 1000, t0);
  const TimePoint wrote = t0 + 500ms;
  // No primary sample after the write yet: only the primary has it for sure.
  auto d = r.route(Intent::read, wrote, no_load);
  CHECK(d.backend == 0);
  CHECK_FALSE(d.fell_back);
  // The primary's next check (after the write) is at 1500; replica 1 is
  // there, replica 2 not yet.
  r.check_ok(0, false, 1500, 0, t0 + 1s);
  r.check_ok(1, true, 1500, 0, t0 + 1s);
  r.check_ok(2, true, 1200, 0.1, t0 + 1s);
  for (int k = 0; k < 4; ++k) CHECK(r.route(Intent::read, wrote, no_load).backend == 1);
  // Without a write, both serve.
  std::set<int> seen;
  for (int k = 0; k < 4; ++k) seen.insert(r.route(Intent::read, {}, no_load).backend);
  CHECK(seen == std::set<int>{1, 2});
  // Read your writes to the primary is not a fallback: replica_fallback =
  // error does not refuse it.
  auto db = two_replicas();
  db.replica_fallback = conf::ReplicaFallback::error;
  Router strict(db);
  all_healthy(strict, 1000, t0);
  d = strict.route(Intent::read, wrote, no_load);
  CHECK(d.backend == 0);
  // Off: replicas serve at once.
  db.read_your_writes = false;
  Router off(db);
  all_healthy(off, 1000, t0);
  CHECK(off.route(Intent::read, wrote, no_load).backend > 0);
}

TEST_CASE("router: writes follow a promotion; two primaries refuse writes", "[router]") {
  Router r(two_replicas());
  all_healthy(r);
  r.check_failed(0, "connection refused");
  CHECK(r.route(Intent::write, {}, no_load).backend == 0);  // nobody else claims it yet
  auto ev = r.check_ok(1, false, 2000, 0, t0 + 2s);  // promoted
  bool announced = false;
  for (auto& e : ev) announced |= e.text.find("is now the primary") != std::string::npos;
  CHECK(announced);
  CHECK(r.route(Intent::write, {}, no_load).backend == 1);
  CHECK(r.route(Intent::read, {}, no_load).backend == 2);
  // The old primary comes back still claiming to be primary: refuse.
  ev = r.check_ok(0, false, 1000, 0, t0 + 3s);
  bool split = false;
  for (auto& e : ev) split |= e.text.find("more than one backend claims") != std::string::npos;
  CHECK(split);
  CHECK(r.split_brain());
  auto d = r.route(Intent::write, {}, no_load);
  CHECK(d.backend == -1);
  CHECK(d.error.message.find("claims to be the primary") != std::string::npos);
  // It is demoted (rejoins as a standby): writes stay on the new primary.
  r.check_ok(0, true, 1000, 5, t0 + 4s);
  CHECK_FALSE(r.split_brain());
  CHECK(r.route(Intent::write, {}, no_load).backend == 1);
}

TEST_CASE("router: target_session_attrs intents", "[router]") {
  Router r(two_replicas());
  all_healthy(r);
  CHECK(r.route(Intent::read_strict, {}, no_load).backend > 0);
  CHECK(r.route(Intent::prefer_read, {}, no_load).backend > 0);
  CHECK(r.route(Intent::any, {}, no_load).backend == 0);
  r.check_failed(1, "down");
  r.check_failed(2, "down");
  CHECK(r.route(Intent::read_strict, {}, no_load).backend == -1);
  auto d = r.route(Intent::prefer_read, {}, no_load);
  CHECK(d.backend == 0);
  r.check_failed(0, "down");
  CHECK(r.route(Intent::any, {}, no_load).backend == -1);
  r.check_ok(2, true, 1000, 0, t0);
  CHECK(r.route(Intent::any, {}, no_load).backend == 2);
}

TEST_CASE("router: a replica that stopped replaying is seen lagging by pgmux's own estimate", "[router]") {
  Router r(two_replicas());  // max_replica_lag 10s
  all_healthy(r, 1000, t0);
  // The primary moves on; replica 1 stays at 1000 and reports no delay
  // (it received nothing, so it thinks it is caught up).
  for (int k = 1; k <= 12; ++k) {
    r.check_ok(0, false, 1000 + uint64_t(k) * 100, 0, t0 + std::chrono::seconds(k));
    r.check_ok(2, true, 1000 + uint64_t(k) * 100, 0, t0 + std::chrono::seconds(k));
    r.check_ok(1, true, 1000, 0, t0 + std::chrono::seconds(k));
  }
  // Behind since the sample at t0+1s, checked at t0+12s: 11 s.
  CHECK(r.backend(1).lag_seconds == Approx(11.0));
  CHECK_FALSE(r.eligible_replica(1, {}));
  CHECK(r.eligible_replica(2, {}));
}
