#include "src/health.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>

#include "src/worker.hpp"

namespace pgmux {

// The replay delay is 0 when the replica replayed everything it received
// (an idle primary must not make a replica look stale); otherwise it is the
// age of the last replayed transaction. pgmux adds its own estimate from
// the primary's WAL positions (see Router::check_ok).
// The primary's position is the insert position, not the write position:
// with synchronous_commit = off a commit record may still sit in the WAL
// buffers, and read your writes must wait for a replica to replay past it.
const char* const kHealthCheckQuery =
    "SELECT pg_catalog.pg_is_in_recovery(), "
    "CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() "
    "ELSE pg_catalog.pg_current_wal_insert_lsn() END, "
    "CASE WHEN NOT pg_catalog.pg_is_in_recovery() "
    "OR pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM pg_catalog.now() - "
    "pg_catalog.pg_last_xact_replay_timestamp()), 0) END";

HealthCheck::HealthCheck(Worker& w, RouteState& route, size_t backend)
    : worker_(w), route_(route), backend_(backend) {
  pool_ = &w.health_pool(route, backend);
}

HealthCheck::~HealthCheck() { stop(); }

void HealthCheck::stop() {
  stopped_ = true;
  leave_wait();
  if (ServerConnection* s = std::exchange(server_, nullptr)) s->abandon_check();
  in_flight_ = false;
}

void HealthCheck::tick(pool::TimePoint now) {
  if (stopped_) return;
  if (in_flight_) {
    if (now - started_ >= route_.db->health_check_timeout)
      failed("no answer within health_check_timeout (" +
             conf::format_duration(route_.db->health_check_timeout) + ")");
    return;
  }
  if (now >= next_at_) start(now);
}

void HealthCheck::start(pool::TimePoint now) {
  in_flight_ = true;
  started_ = now;
  next_at_ = now + route_.db->health_check_interval;
  if (!pool_->acquire_or_wait(this)) failed(pool_->last_error().message);
}

void HealthCheck::pool_server_assigned(pool::PoolServer* s) {
  if (!in_flight_ || stopped_) {
    pool_->release(s);
    return;
  }
  server_ = static_cast<ServerConnection*>(s);
  server_->run_check(kHealthCheckQuery, this);
}

void HealthCheck::pool_wait_failed(const proto::ErrorFields& error) {
  if (in_flight_) failed(error.message);
}

void HealthCheck::check_result(const std::vector<std::optional<std::string>>* row,
                               const std::string& error) {
  server_ = nullptr;
  if (!in_flight_ || stopped_) return;
  if (!row) {
    failed(error);
    return;
  }
  const auto& r = *row;
  std::optional<uint64_t> lsn;
  if (r.size() >= 3 && r[0] && r[1]) lsn = pool::parse_lsn(*r[1]);
  if (!lsn || (*r[0] != "t" && *r[0] != "f")) {
    failed("unexpected health check answer");
    return;
  }
  in_flight_ = false;
  CheckSample sample;
  sample.ok = true;
  sample.in_recovery = *r[0] == "t";
  sample.lsn = *lsn;
  sample.lag_seconds = r[2] ? std::strtod(r[2]->c_str(), nullptr) : 0.0;
  sample.started = started_;
  worker_.check_done(route_, backend_, sample);
}

void HealthCheck::failed(const std::string& why) {
  leave_wait();
  if (ServerConnection* s = std::exchange(server_, nullptr)) s->abandon_check();
  in_flight_ = false;
  CheckSample sample;
  sample.error = why;
  sample.started = started_;
  worker_.check_done(route_, backend_, sample);
}

}  // namespace pgmux
