// Backend health checks for routed databases (replicas or
// target_session_attrs): one checker per backend (on the first worker only)
// polls at
// health_check_interval, with health_check_timeout, over a pooled connection
// of its own (pool of one, separate from client traffic so a busy pool
// cannot starve the checks), and reports to the database's Router.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "pool/pool.hpp"
#include "pool/router.hpp"
#include "src/server.hpp"

namespace pgmux {

class Worker;
class HealthCheck;

// Routing state of one [databases.NAME] entry.
// Clients of the database share it (a reload that changes the backends
// replaces it; clients logged in before keep the old one until they leave).
struct RouteState {
  RouteState(std::shared_ptr<const conf::Config> cfg, const conf::DatabaseConfig& d)
      : owner(std::move(cfg)), db(&d), router(d) {}
  std::shared_ptr<const conf::Config> owner;  // the config *db lives in
  const conf::DatabaseConfig* db;
  pool::Router router;
  std::vector<std::unique_ptr<HealthCheck>> checks;  // one per backend
};

// One check's outcome. The first worker runs the checks and hands each
// outcome to every worker's router of the database (Worker::check_done).
struct CheckSample {
  bool ok = false;           // else `error` says why the backend is down
  bool in_recovery = false;  // pg_is_in_recovery()
  uint64_t lsn = 0;
  double lag_seconds = 0;
  pool::TimePoint started{};
  std::string error;
};

class HealthCheck final : public pool::PoolClient, public CheckOwner {
 public:
  HealthCheck(Worker& w, RouteState& route, size_t backend);
  ~HealthCheck() override;

  // Starts a check when one is due; times out a check that takes too long.
  void tick(pool::TimePoint now);
  // Shutdown: stop checking.
  void stop();

  // pool::PoolClient
  void pool_welcome_ready() override {}
  void pool_server_assigned(pool::PoolServer* server) override;
  void pool_wait_failed(const proto::ErrorFields& error) override;
  // CheckOwner
  void check_result(const std::vector<std::optional<std::string>>* row,
                    const std::string& error) override;

 private:
  void start(pool::TimePoint now);
  void failed(const std::string& why);
  void finished();

  Worker& worker_;
  RouteState& route_;
  size_t backend_;
  pool::Pool* pool_ = nullptr;
  ServerConnection* server_ = nullptr;  // running the check query
  bool in_flight_ = false;
  bool stopped_ = false;
  pool::TimePoint started_{};
  pool::TimePoint next_at_{};
};

// The query each check runs: role, WAL position (current on a primary,
// replayed on a replica) and the replica's own replay delay in seconds.
extern const char* const kHealthCheckQuery;

}  // namespace pgmux
