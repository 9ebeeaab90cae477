// The admin console: the virtual database "pgmux" (alias "pgbouncer", so
// PgBouncer's exporters and dashboards keep working). Simple queries only.
// SHOW commands use PgBouncer 1.18's column names and order where PgBouncer
// has the command, with pgmux's own columns at the end.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "pool/pool.hpp"

namespace pgmux {

class Worker;
class ClientConnection;

enum class AdminLevel : uint8_t { none, stats, admin };

bool is_admin_database(std::string_view db);
// [admin] users may run everything, stats_users only SHOW.
AdminLevel admin_level(const conf::Config& cfg, std::string_view user);

struct AdminReply {
  std::string out;   // messages to send before ReadyForQuery
  // The command completes later (PAUSE, WAIT_CLOSE): the worker calls
  // ClientConnection::admin_done with this tag when it does.
  bool later = false;
  std::string tag;
  std::string db;  // ... and its database argument (empty = all)
  bool close_after = false;  // SHUTDOWN: the session ends
};

// What the pools of one database did (SHOW STATS, SHOW TOTALS, the stats
// log line).
struct PoolTotals {
  // waits: server assignments (immediate ones too); waited: clients that
  // had to wait for one.
  uint64_t xact = 0, query = 0, recv = 0, sent = 0, xact_us = 0, query_us = 0, wait_us = 0, waits = 0, waited = 0;
  PoolTotals() = default;
  explicit PoolTotals(const pool::PoolStats& s);
  void add(const PoolTotals& t);
  // What came since `before` (a counter below it counts from 0).
  PoolTotals since(const PoolTotals& before) const;
};

// [log] stats_period: one log line per database with what its pools did
// since the previous call, `seconds` ago (rates per second, average times).
// `last` holds the totals of that call and is updated; with `emit` false
// nothing is logged (the first call after the period was turned on).
void log_stats(Worker& w, std::map<std::string, PoolTotals, std::less<>>& last, double seconds, bool emit);

// Runs one query string on the console.
AdminReply run_admin_command(Worker& w, ClientConnection& self, AdminLevel level,
                             std::string_view query);

}  // namespace pgmux
