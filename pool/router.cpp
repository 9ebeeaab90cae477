#include "pool/router.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>

namespace pgmux::pool {

namespace {
constexpr size_t kPrimaryHistory = 256;

std::string host_port(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::string format_lag(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", seconds);
  return buf;
}
}  // namespace

const char* to_string(BackendRole r) {
  switch (r) {
    case BackendRole::unknown: return "unknown";
    case BackendRole::primary: return "primary";
    case BackendRole::replica: return "replica";
  }
  return "?";
}

std::optional<uint64_t> parse_lsn(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 >= text.size()) return std::nullopt;
  uint32_t hi = 0, lo = 0;
  auto a = std::from_chars(text.data(), text.data() + slash, hi, 16);
  if (a.ec != std::errc() || a.ptr != text.data() + slash) return std::nullopt;
  auto b = std::from_chars(text.data() + slash + 1, text.data() + text.size(), lo, 16);
  if (b.ec != std::errc() || b.ptr != text.data() + text.size()) return std::nullopt;
  return (uint64_t(hi) << 32) | lo;
}

Router::Router(const conf::DatabaseConfig& db)
    : database_(db.name),
      balance_(db.load_balance),
      fallback_(db.replica_fallback),
      max_lag_(db.max_replica_lag),
      max_lag_bytes_(db.max_replica_lag_bytes),
      read_your_writes_(db.read_your_writes),
      rng_(std::random_device{}()) {
  auto add = [&](const std::string& host, uint16_t port, BackendRole guess) {
    BackendStatus b;
    b.host = host;
    b.port = port;
    b.name = host_port(host, port);
    b.role = guess;
    backends_.push_back(std::move(b));
  };
  add(db.host, db.port, BackendRole::unknown);
  for (const auto& r : db.replicas) add(r.host, r.port, BackendRole::unknown);
}

bool Router::reconfigure(const conf::DatabaseConfig& db) {
  if (backends_.size() != db.replicas.size() + 1) return false;
  for (size_t i = 0; i < backends_.size(); ++i) {
    const std::string& host = i == 0 ? db.host : db.replicas[i - 1].host;
    const uint16_t port = i == 0 ? db.port : db.replicas[i - 1].port;
    if (backends_[i].host != host || backends_[i].port != port) return false;
  }
  database_ = db.name;
  balance_ = db.load_balance;
  fallback_ = db.replica_fallback;
  max_lag_ = db.max_replica_lag;
  max_lag_bytes_ = db.max_replica_lag_bytes;
  read_your_writes_ = db.read_your_writes;
  return true;
}

std::vector<RouterEvent> Router::check_ok(size_t i, bool in_recovery, uint64_t lsn,
                                          double replay_lag_s, TimePoint started) {
  std::vector<RouterEvent> events;
  BackendStatus& b = backends_[i];
  const bool was_eligible = b.role == BackendRole::replica && eligible_replica(i, TimePoint{});
  const bool was_up = b.checked && b.up;
  const BackendRole was_role = b.role;
  const bool was_split = split_brain();

  b.checked = true;
  b.up = true;
  b.error.clear();
  b.role = in_recovery ? BackendRole::replica : BackendRole::primary;
  b.lsn = lsn;
  b.lag_seconds = in_recovery ? std::max(0.0, replay_lag_s) : 0.0;
  b.checked_at = started;
  if (!in_recovery) {
    primary_history_.emplace_back(started, lsn);
    if (primary_history_.size() > kPrimaryHistory) primary_history_.pop_front();
    newest_primary_lsn_ = std::max(newest_primary_lsn_, lsn);
    primary_lsn_known_ = true;
  }
  update_lag_bytes();
  if (in_recovery) {
    // pgmux's own estimate, which needs no clock on the replica: the oldest
    // primary position it has not replayed was reached at T, so it is at
    // least (its check time - T) behind. Catches a replica that stopped
    // receiving WAL, which reports no replay delay of its own.
    for (const auto& [t, plsn] : primary_history_) {
      if (plsn > lsn) {
        if (started > t)
          b.lag_seconds = std::max(b.lag_seconds,
                                   std::chrono::duration<double>(started - t).count());
        break;
      }
    }
  }

  if (!was_up) events.push_back({i, "up, " + std::string(to_string(b.role))});
  else if (was_role != b.role)
    events.push_back({i, std::string("role changed from ") + to_string(was_role) + " to " +
                             to_string(b.role)});
  if (!in_recovery && !split_brain()) {
    if (last_writer_ != int(i))
      events.push_back({i, "is now the primary: writes go here (was " +
                               backends_[size_t(last_writer_)].name + ")"});
    last_writer_ = int(i);
  }
  if (split_brain() && !was_split) {
    std::string names;
    for (const auto& o : backends_)
      if (o.checked && o.up && o.role == BackendRole::primary)
        names += (names.empty() ? "" : ", ") + o.name;
    events.push_back({i, "more than one backend claims to be primary (" + names +
                             "): refusing writes until only one does"});
  }
  if (b.role == BackendRole::replica) {
    bool now = eligible_replica(i, TimePoint{});
    if (was_eligible && !now) {
      std::string why = "lag " + format_lag(b.lag_seconds);
      if (b.lag_bytes_known) why += ", " + std::to_string(b.lag_bytes) + " bytes";
      events.push_back({i, "excluded from reads: " + why + " exceeds max_replica_lag"});
    } else if (!was_eligible && now && was_up && was_role == BackendRole::replica) {
      events.push_back({i, "takes reads again (lag " + format_lag(b.lag_seconds) + ")"});
    }
  }
  return events;
}

std::vector<RouterEvent> Router::check_failed(size_t i, std::string error) {
  std::vector<RouterEvent> events;
  BackendStatus& b = backends_[i];
  if (!b.checked || b.up || b.error != error) events.push_back({i, "down: " + error});
  b.checked = true;
  b.up = false;
  b.error = std::move(error);
  return events;
}

void Router::update_lag_bytes() {
  for (auto& b : backends_) {
    if (b.role != BackendRole::replica || !primary_lsn_known_) {
      b.lag_bytes_known = false;
      b.lag_bytes = 0;
      continue;
    }
    b.lag_bytes_known = true;
    b.lag_bytes = newest_primary_lsn_ > b.lsn ? newest_primary_lsn_ - b.lsn : 0;
  }
}

bool Router::split_brain() const {
  int n = 0;
  for (const auto& b : backends_) n += (b.checked && b.up && b.role == BackendRole::primary);
  return n > 1;
}

int Router::writer() const {
  if (split_brain()) return -1;
  return last_writer_;
}

bool Router::eligible_replica(size_t i, TimePoint wrote_at) const {
  const BackendStatus& b = backends_[i];
  if (!b.checked || !b.up || b.role != BackendRole::replica) return false;
  if (max_lag_ && b.lag_seconds * 1000.0 > double(max_lag_->count())) return false;
  if (max_lag_bytes_ && b.lag_bytes_known && b.lag_bytes > *max_lag_bytes_) return false;
  if (read_your_writes_ && wrote_at != TimePoint{}) {
    // The first primary position sampled after the write is at least the
    // write's commit position: the replica must have replayed past it.
    auto it = std::find_if(primary_history_.begin(), primary_history_.end(),
                           [&](const auto& s) { return s.first > wrote_at; });
    if (it == primary_history_.end()) return false;
    if (b.lsn < it->second) return false;
  }
  return true;
}

Decision Router::refuse(std::string message) const {
  Decision d;
  d.error = proto::fatal_error(proto::sqlstate::kConnectionFailure, std::move(message));
  return d;
}

Decision Router::pick_replica(TimePoint wrote_at, const std::function<size_t(size_t)>& load) {
  std::vector<size_t> ok;
  for (size_t i = 0; i < backends_.size(); ++i)
    if (eligible_replica(i, wrote_at)) ok.push_back(i);
  Decision d;
  if (ok.empty()) return d;
  switch (balance_) {
    case conf::LoadBalance::round_robin:
      d.backend = int(ok[rr_next_++ % ok.size()]);
      break;
    case conf::LoadBalance::random:
      d.backend = int(ok[std::uniform_int_distribution<size_t>(0, ok.size() - 1)(rng_)]);
      break;
    case conf::LoadBalance::least_outstanding: {
      // Ties rotate, so equal replicas share the work.
      size_t start = rr_next_++ % ok.size();
      size_t best = ok[start];
      size_t best_load = load ? load(best) : 0;
      for (size_t k = 1; k < ok.size(); ++k) {
        size_t i = ok[(start + k) % ok.size()];
        size_t l = load ? load(i) : 0;
        if (l < best_load) {
          best = i;
          best_load = l;
        }
      }
      d.backend = int(best);
      break;
    }
  }
  return d;
}

Decision Router::route(Intent intent, TimePoint wrote_at,
                       const std::function<size_t(size_t)>& load) {
  auto write = [&]() -> Decision {
    int w = writer();
    if (w < 0)
      return refuse("more than one backend of database \"" + database_ +
                    "\" claims to be the primary: pgmux refuses writes until only one does");
    Decision d;
    d.backend = w;
    return d;
  };
  switch (intent) {
    case Intent::write:
      return write();
    case Intent::read: {
      Decision d = pick_replica(read_your_writes_ ? wrote_at : TimePoint{}, load);
      if (d.backend >= 0) return d;
      // Read your writes: no replica has the client's write yet; the
      // primary has. That is not a fallback, whatever replica_fallback says.
      bool ryw = read_your_writes_ && wrote_at != TimePoint{} &&
                 pick_replica(TimePoint{}, nullptr).backend >= 0;
      if (!ryw && fallback_ == conf::ReplicaFallback::error)
        return refuse("no replica of database \"" + database_ +
                      "\" is available for read-only work (replica_fallback = \"error\")");
      d = write();
      d.fell_back = !ryw;
      return d;
    }
    case Intent::read_strict: {
      Decision d = pick_replica(TimePoint{}, load);
      if (d.backend >= 0) return d;
      return refuse("no read-only backend of database \"" + database_ +
                    "\" is available (target_session_attrs = \"read-only\")");
    }
    case Intent::prefer_read: {
      Decision d = pick_replica(TimePoint{}, load);
      if (d.backend >= 0) return d;
      d = write();
      d.fell_back = d.backend >= 0;
      return d;
    }
    case Intent::any:
      for (size_t i = 0; i < backends_.size(); ++i) {
        const BackendStatus& b = backends_[i];
        if (!b.checked || b.up) {
          Decision d;
          d.backend = int(i);
          return d;
        }
      }
      return refuse("no backend of database \"" + database_ + "\" is up");
  }
  return refuse("internal error: unknown routing intent");
}

}  // namespace pgmux::pool
