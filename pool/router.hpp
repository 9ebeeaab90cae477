// Which backend runs a transaction: the primary for writes, a healthy and
// fresh enough replica for reads. Logic only: health observations come in
// through check_ok / check_failed (from the health checker), decisions go
// out as backend indexes, so every rule is unit-tested without servers.
//
// Backend 0 is the configured `host`, backends 1.. are `replicas` in order.
// The configured roles are only a starting guess: the role that counts is
// what each server says (pg_is_in_recovery), so writes follow a promotion and
// never go to a demoted primary.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "conf/config.hpp"
#include "pool/pool.hpp"

namespace pgmux::pool {

enum class BackendRole { unknown, primary, replica };
const char* to_string(BackendRole r);

struct BackendStatus {
  std::string host;
  uint16_t port = 5432;
  std::string name;  // "host:port", for logs and errors
  bool checked = false;  // at least one check finished (either way)
  bool up = false;
  BackendRole role = BackendRole::unknown;
  // Primary: pg_current_wal_insert_lsn(); replica: pg_last_wal_replay_lsn().
  uint64_t lsn = 0;
  // Replica: how far replay is behind (0 when it replayed all it received).
  double lag_seconds = 0;
  // Replica: the newest primary WAL position seen minus `lsn`; unknown
  // until a primary has been seen.
  bool lag_bytes_known = false;
  uint64_t lag_bytes = 0;
  TimePoint checked_at{};  // start of the last successful check
  std::string error;       // why it is down
};

// What a check changed, for the log.
struct RouterEvent {
  size_t backend = 0;
  std::string text;
};

// How a transaction wants to be routed.
enum class Intent {
  write,        // the primary
  read,         // a replica if one is eligible, else replica_fallback decides
  read_strict,  // a replica or nothing (target_session_attrs = read-only)
  prefer_read,  // a replica, else the primary (prefer-standby)
  any,          // the first backend that is up (target_session_attrs = any)
};

struct Decision {
  int backend = -1;            // -1: refused, see error
  bool fell_back = false;      // a read that went to the primary
  proto::ErrorFields error;    // FATAL, when refused
};

class Router {
 public:
  explicit Router(const conf::DatabaseConfig& db);

  // Reload: takes the entry's new policy (balancing, lag bounds, fallback,
  // read your writes) and keeps what the checks learned. False, and nothing
  // changed, when the backends (host, port, order) differ.
  bool reconfigure(const conf::DatabaseConfig& db);

  size_t size() const { return backends_.size(); }
  const BackendStatus& backend(size_t i) const { return backends_[i]; }
  const std::string& database() const { return database_; }

  // --- from the health checker -------------------------------------------
  // `started`: when the check query was sent (its LSN is at least as new).
  std::vector<RouterEvent> check_ok(size_t i, bool in_recovery, uint64_t lsn, double replay_lag_s,
                                    TimePoint started);
  std::vector<RouterEvent> check_failed(size_t i, std::string error);

  // --- decisions ----------------------------------------------------------
  // `wrote_at`: the client's last write commit on the primary (read your
  // writes); TimePoint{} when none. `load(i)`: outstanding work on backend i
  // for least_outstanding balancing.
  Decision route(Intent intent, TimePoint wrote_at, const std::function<size_t(size_t)>& load);

  // The backend writes go to (-1 when refused, e.g. two primaries).
  int writer() const;
  // A replica that may take reads now, for a client whose last write was at
  // `wrote_at` (TimePoint{} = none).
  bool eligible_replica(size_t i, TimePoint wrote_at) const;
  // More than one backend says it is a primary.
  bool split_brain() const;

 private:
  Decision refuse(std::string message) const;
  Decision pick_replica(TimePoint wrote_at, const std::function<size_t(size_t)>& load);
  void update_lag_bytes();

  std::string database_;
  conf::LoadBalance balance_;
  conf::ReplicaFallback fallback_;
  std::optional<conf::Duration> max_lag_;
  std::optional<uint64_t> max_lag_bytes_;
  bool read_your_writes_;
  std::vector<BackendStatus> backends_;
  int last_writer_ = 0;  // the primary as last seen (starts as configured)
  // Primary WAL positions with the time their check started: a read after a
  // write at T may use a replica that replayed past a position sampled
  // after T.
  std::deque<std::pair<TimePoint, uint64_t>> primary_history_;
  uint64_t newest_primary_lsn_ = 0;
  bool primary_lsn_known_ = false;
  size_t rr_next_ = 0;
  std::minstd_rand rng_;
};

// "16/B374D848" -> 0x16B374D848; nullopt when malformed.
std::optional<uint64_t> parse_lsn(std::string_view text);

}  // namespace pgmux::pool
