#include "src/admin.hpp"

#include <pgmux_version.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <ctime>
#include <map>
#include <vector>

#include "protocol/builders.hpp"
#include "src/client.hpp"
#include "src/health.hpp"
#include "src/server.hpp"
#include "src/worker.hpp"

namespace pgmux {

namespace {

using Row = std::vector<std::string>;

std::string upper(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = char(std::toupper(static_cast<unsigned char>(c)));
  return o;
}

std::vector<std::string> words(std::string_view q) {
  std::vector<std::string> w;
  size_t i = 0;
  while (i < q.size()) {
    while (i < q.size() && (std::isspace(static_cast<unsigned char>(q[i])) || q[i] == ',')) ++i;
    size_t j = i;
    while (j < q.size() && !std::isspace(static_cast<unsigned char>(q[j])) && q[j] != ',') ++j;
    if (j > i) w.emplace_back(q.substr(i, j - i));
    i = j;
  }
  return w;
}

// A database name argument: quotes removed.
std::string unquote(std::string s) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front())
    return s.substr(1, s.size() - 2);
  return s;
}

void table(std::string& out, const std::vector<std::string>& cols, const std::vector<Row>& rows,
           const std::string& tag = "SHOW") {
  proto::row_description_text(out, cols);
  for (const Row& r : rows) proto::data_row(out, r);
  proto::command_complete(out, tag);
}

void error(std::string& out, const char* sqlstate, std::string msg) {
  proto::ErrorFields e;
  e.sqlstate = sqlstate;
  e.message = std::move(msg);
  proto::error_response(out, e);
}

std::string n(uint64_t v) { return std::to_string(v); }

// Wall-clock text of a steady-clock instant, PgBouncer's format.
std::string wall_time(pool::TimePoint t) {
  if (t == pool::TimePoint{}) return "";
  auto now_steady = pool::Clock::now();
  auto now_wall = std::chrono::system_clock::now();
  auto wall = now_wall - std::chrono::duration_cast<std::chrono::system_clock::duration>(now_steady - t);
  std::time_t tt = std::chrono::system_clock::to_time_t(wall);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string backend_name(const RouteState* route, const conf::DatabaseConfig& db, uint16_t backend) {
  if (route && backend < route->router.size()) return route->router.backend(backend).name;
  return db.host + ":" + std::to_string(db.port);
}

std::string backend_role(const RouteState* route, uint16_t backend) {
  if (!route || backend >= route->router.size()) return "primary";
  return pool::to_string(route->router.backend(backend).role);
}

std::string backend_lag(const RouteState* route, uint16_t backend) {
  if (!route || backend >= route->router.size()) return "";
  const auto& b = route->router.backend(backend);
  if (b.role != pool::BackendRole::replica) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", b.lag_seconds);
  return buf;
}

const RouteState* route_of(Worker& w, const conf::DatabaseConfig& db) {
  const RouteState* found = nullptr;
  w.for_each_route([&](const RouteState& r) {
    if (r.db == &db) found = &r;
  });
  return found;
}

// PgBouncer's avg_* figures: per second for counts and bytes, per
// transaction / query / wait for times.
struct Averages {
  uint64_t xact, query, recv, sent, xact_us, query_us, wait_us;
  Averages(const PoolTotals& t, double seconds) {
    auto rate = [&](uint64_t v) { return seconds > 0 ? uint64_t(double(v) / seconds) : 0; };
    auto per = [](uint64_t v, uint64_t d) { return d ? v / d : 0; };
    xact = rate(t.xact);
    query = rate(t.query);
    recv = rate(t.recv);
    sent = rate(t.sent);
    xact_us = per(t.xact_us, t.xact);
    query_us = per(t.query_us, t.query);
    wait_us = per(t.wait_us, t.waits);
  }
};

// SHOW STATS / SHOW TOTALS: the totals, then averages since pgmux started.
Row totals_row(const PoolTotals& t, double uptime) {
  const Averages a(t, uptime);
  return {n(t.xact),   n(t.query),   n(t.recv),   n(t.sent),      n(t.xact_us),    n(t.query_us), n(t.wait_us),
          n(a.xact),   n(a.query),   n(a.recv),   n(a.sent),      n(a.xact_us),    n(a.query_us), n(a.wait_us)};
}

// Totals of the pools of each database (pgmux's own pools left out).
std::map<std::string, PoolTotals, std::less<>> totals_by_database(Worker& w) {
  std::map<std::string, PoolTotals, std::less<>> by_db;
  each_pool(w, [&](Worker&, const PoolKey& key, const pool::Pool& p, const conf::DatabaseConfig&) {
    if (!key.health) by_db[key.database].add(PoolTotals(p.stats));
  });
  return by_db;
}

double uptime_seconds(Worker& w) {
  return std::chrono::duration<double>(pool::Clock::now() - w.started_at()).count();
}

void show_pools(Worker& w, std::string& out) {
  // Clients per pool: a linked client counts where its server is, others
  // where they logged in.
  std::map<const pool::Pool*, uint64_t> active;
  each_client(w, [&](Worker&, const ClientConnection& c) {
    using S = ClientConnection::State;
    S st = c.state();
    if (st != S::idle && st != S::linked && st != S::syncing) return;
    const pool::Pool* p = c.server() ? c.server()->pool() : c.home_pool();
    if (p) ++active[p];
  });
  // Cancel requests in flight (sv_active_cancel, as PgBouncer counts its
  // cancel connections) and servers held until theirs are answered
  // (sv_being_canceled; they sit in the resetting list, sv_tested).
  std::map<const pool::Pool*, uint64_t> cancels, held;
  each_server(w, [&](Worker&, const ServerConnection& s) {
    if (!s.pool()) return;
    cancels[s.pool()] += s.cancels_in_flight();
    held[s.pool()] += s.held_for_cancel();
  });
  std::vector<Row> rows;
  each_pool(w, [&](Worker& x, const PoolKey& key, const pool::Pool& p, const conf::DatabaseConfig& db) {
    if (key.health) return;
    auto c = p.counts();
    auto wait = p.max_wait();
    const RouteState* route = route_of(x, db);
    conf::PoolMode mode = db.pool_mode.value_or(w.config().pool_mode);
    uint64_t wait_us = uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(wait).count());
    rows.push_back({key.database, key.user, n(active[&p]), n(c.waiting_server + c.waiting_welcome), "0", "0",
                    n(c.active), n(cancels[&p]), n(held[&p]), n(c.idle), "0", n(c.resetting - held[&p]),
                    n(c.connecting),
                    n(wait_us / 1000000), n(wait_us % 1000000), std::string(conf::to_string(mode)),
                    backend_name(route, db, key.backend), backend_role(route, key.backend),
                    backend_lag(route, key.backend), n(uint64_t(x.index()))});
  });
  table(out,
        {"database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
         "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
         "maxwait", "maxwait_us", "pool_mode", "backend", "role", "lag", "worker"},
        rows);
}

// SHOW STATS: per database the totals then the averages (totals_row's
// order); SHOW STATS_TOTALS / STATS_AVERAGES: one half each, under
// PgBouncer's shorter column names.
enum class StatsPart { all, totals, averages };

void show_stats(Worker& w, std::string& out, StatsPart part) {
  constexpr size_t kHalf = 7;
  std::vector<Row> rows;
  double up = uptime_seconds(w);
  for (auto& [db, t] : totals_by_database(w)) {
    Row r = totals_row(t, up);
    if (part == StatsPart::totals) r.resize(kHalf);
    if (part == StatsPart::averages) r.erase(r.begin(), r.begin() + kHalf);
    r.insert(r.begin(), db);
    rows.push_back(std::move(r));
  }
  if (part == StatsPart::all)
    table(out,
          {"database", "total_xact_count", "total_query_count", "total_received", "total_sent",
           "total_xact_time", "total_query_time", "total_wait_time", "avg_xact_count", "avg_query_count",
           "avg_recv", "avg_sent", "avg_xact_time", "avg_query_time", "avg_wait_time"},
          rows);
  else
    table(out,
          {"database", "xact_count", "query_count", "bytes_received", "bytes_sent", "xact_time", "query_time",
           "wait_time"},
          rows);
}

void show_totals(Worker& w, std::string& out) {
  PoolTotals t;
  for (const auto& [db, d] : totals_by_database(w)) t.add(d);
  Row v = totals_row(t, uptime_seconds(w));
  static const char* names[] = {"total_xact_count", "total_query_count", "total_client_bytes",
                                "total_server_bytes", "total_xact_time", "total_query_time",
                                "total_wait_time", "avg_xact_count", "avg_query_count",
                                "avg_client_bytes", "avg_server_bytes", "avg_xact_time",
                                "avg_query_time", "avg_wait_time"};
  std::vector<Row> rows;
  for (size_t i = 0; i < v.size(); ++i) rows.push_back({names[i], v[i]});
  table(out, {"name", "value"}, rows);
}

const char* client_state(ClientConnection::State s) {
  using S = ClientConnection::State;
  switch (s) {
    case S::startup: case S::auth: case S::wait_welcome: return "login";
    case S::idle: case S::linked: case S::syncing: return "active";
    case S::wait_server: return "waiting";
    case S::closing: return "closing";
  }
  return "?";
}

const char* server_state(ServerConnection::State s) {
  using S = ServerConnection::State;
  switch (s) {
    case S::resolving: case S::connecting: case S::login: return "login";
    case S::internal: case S::draining: return "tested";
    case S::idle: return "idle";
    case S::linked: return "active";
    case S::closing: return "closing";
  }
  return "?";
}

void show_clients(Worker& w, std::string& out) {
  std::vector<Row> rows;
  each_client(w, [&](Worker& x, const ClientConnection& c) {
    const uint64_t now_ms = uv_now(x.loop());
    std::string addr = "unix", laddr = "unix";
    int port = 0, lport = 0;
    auto& sock = const_cast<ClientConnection&>(c).socket();
    sock.address(true, addr, port);
    sock.address(false, laddr, lport);
    uint64_t idle_ms = now_ms > c.last_active_ms() ? now_ms - c.last_active_ms() : 0;
    std::string request = c.last_active_ms() ? wall_time(pool::Clock::now() - std::chrono::milliseconds(idle_ms))
                                             : wall_time(c.login_started());
    uint64_t wait_us = 0;
    if (c.waiting() != pool::ClientWait::none)
      wait_us = uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(pool::Clock::now() - c.wait_since()).count());
    const std::string* app = c.param("application_name");
    rows.push_back({"C", c.user(), c.database(), client_state(c.state()), addr, n(uint64_t(port)), laddr,
                    n(uint64_t(lport)), wall_time(c.login_started()), request, n(wait_us / 1000000),
                    n(wait_us % 1000000), "0", "C-" + n(c.id()), c.server() ? c.server()->name() : "", "0",
                    c.tls_description(), app ? *app : "", n(c.id()), n(uint64_t(x.index()))});
  });
  table(out,
        {"type", "user", "database", "state", "addr", "port", "local_addr", "local_port", "connect_time",
         "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
         "application_name", "id", "worker"},
        rows);
}

void show_servers(Worker& w, std::string& out) {
  std::vector<Row> rows;
  each_server(w, [&](Worker& x, const ServerConnection& s) {
    std::string laddr;
    int lport = 0;
    const_cast<ServerConnection&>(s).local_address(laddr, lport);
    const pool::Pool* p = s.pool();
    std::string db = p ? p->database() : "";
    const ClientConnection* c = s.linked_client();
    std::string role = "primary";
    if (p) {
      if (const conf::DatabaseConfig* dc = w.config().find_database(db))
        role = backend_role(route_of(x, *dc), p->backend());
      if (p->auth_lookup()) role += " (auth query)";
      else if (p->health_check()) role += " (health check)";
    }
    rows.push_back({"S", s.user(), db, server_state(s.state()), s.host(), n(s.port()), laddr,
                    n(uint64_t(lport)), wall_time(s.created_at()), wall_time(s.state_since()), "0", "0",
                    "0", s.name(), c ? "C-" + n(c->id()) : "", n(s.backend_pid()), s.tls_description(), "",
                    role, n(uint64_t(x.index()))});
  });
  table(out,
        {"type", "user", "database", "state", "addr", "port", "local_addr", "local_port", "connect_time",
         "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
         "application_name", "role", "worker"},
        rows);
}

void show_databases(Worker& w, std::string& out) {
  const conf::Config& cfg = w.config();
  std::vector<Row> rows;
  for (const auto& [name, db] : cfg.databases) {
    uint64_t current = 0;
    each_pool(w, [&](Worker&, const PoolKey& key, const pool::Pool& p, const conf::DatabaseConfig& d) {
      // Every worker's pools of this entry hold the same config object.
      if (&d == &db && !key.health) current += p.counts().total_servers();
    });
    std::string replicas;
    for (const auto& r : db.replicas) replicas += (replicas.empty() ? "" : ",") + r.host + ":" + n(r.port);
    rows.push_back({name, db.host, n(db.port), db.dbname.empty() ? name : db.dbname, db.user.value_or(""),
                    n(uint64_t(cfg.effective_pool_size(db))), n(uint64_t(db.min_pool_size.value_or(cfg.min_pool_size))),
                    n(uint64_t(db.reserve_pool_size.value_or(cfg.reserve_pool_size))),
                    db.pool_mode ? std::string(conf::to_string(*db.pool_mode)) : "",
                    n(uint64_t(cfg.effective_max_db_connections(&db))), n(current),
                    n(uint64_t(cfg.effective_max_db_client_connections(&db))),
                    n(uint64_t(w.hub().clients_of_database(name))), w.is_paused(name) ? "1" : "0", w.is_disabled(name) ? "1" : "0", replicas, std::string(conf::to_string(db.read_routing))});
  }
  table(out,
        {"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool",
         "pool_mode", "max_connections", "current_connections", "max_client_connections",
         "current_client_connections", "paused", "disabled", "replicas",
         "read_routing"},
        rows);
}

void show_users(Worker& w, std::string& out) {
  const conf::Config& cfg = w.config();
  std::map<std::string, const conf::UserConfig*> users;
  if (const auth::Userlist* ul = w.userlist())
    for (const auto& [u, s] : ul->users) users[u];
  for (const auto& [u, uc] : cfg.users) users[u] = &uc;
  // Users with server connections or logged-in clients (auth_query's, or
  // any under trust) are listed too.
  std::map<std::string, uint64_t> servers;  // by server user
  each_pool(w, [&](Worker&, const PoolKey& key, const pool::Pool& p, const conf::DatabaseConfig&) {
    if (!key.health) servers[key.user] += p.counts().total_servers();
  });
  const auto clients = w.hub().clients_by_user();
  for (const auto& [u, count] : servers) users[u];
  for (const auto& [u, count] : clients) users[u];
  std::vector<Row> rows;
  auto opt = [](const std::optional<int>& v) { return v ? n(uint64_t(*v)) : std::string(); };
  for (auto& [u, uc] : users) {
    const auto s = servers.find(u);
    const auto c = clients.find(u);
    rows.push_back({u, uc ? opt(uc->pool_size) : "", uc ? opt(uc->reserve_pool_size) : "",
                    uc && uc->pool_mode ? std::string(conf::to_string(*uc->pool_mode)) : "",
                    n(uint64_t(cfg.effective_max_user_connections(u))), n(s == servers.end() ? 0 : s->second),
                    n(uint64_t(cfg.effective_max_user_client_connections(u))),
                    n(uint64_t(c == clients.end() ? 0 : c->second))});
  }
  // PgBouncer 1.24's columns.
  table(out,
        {"name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections", "current_connections",
         "max_user_client_connections", "current_client_connections"},
        rows);
}

void show_config(Worker& w, std::string& out) {
  const conf::Config& c = w.config();
  const conf::Config d;
  auto dur = [](conf::Duration x) { return conf::format_duration(x); };
  auto octal = [](uint32_t mode) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", mode);
    return std::string(buf);
  };
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (auto& x : v) s += (s.empty() ? "" : ",") + x;
    return s;
  };
  std::string listen;
  for (auto& l : c.listen) listen += (listen.empty() ? "" : ",") + l.text;
  std::vector<Row> rows = {
      {"listen", listen, "127.0.0.1:6432"},
      {"workers", n(uint64_t(c.workers)), n(uint64_t(d.workers))},
      {"so_reuseport", c.so_reuseport ? "1" : "0", "0"},
      {"listen_backlog", n(uint64_t(c.listen_backlog)), n(uint64_t(d.listen_backlog))},
      {"unix_socket_mode", octal(c.unix_socket_mode), octal(d.unix_socket_mode)},
      {"unix_socket_group", c.unix_socket_group, ""},
      {"pool_mode", std::string(conf::to_string(c.pool_mode)), std::string(conf::to_string(d.pool_mode))},
      {"max_client_conn", n(uint64_t(c.max_client_conn)), n(uint64_t(d.max_client_conn))},
      {"default_pool_size", n(uint64_t(c.default_pool_size)), n(uint64_t(d.default_pool_size))},
      {"min_pool_size", n(uint64_t(c.min_pool_size)), n(uint64_t(d.min_pool_size))},
      {"reserve_pool_size", n(uint64_t(c.reserve_pool_size)), n(uint64_t(d.reserve_pool_size))},
      {"reserve_pool_timeout", dur(c.reserve_pool_timeout), dur(d.reserve_pool_timeout)},
      {"max_db_connections", n(uint64_t(c.max_db_connections)), n(uint64_t(d.max_db_connections))},
      {"max_user_connections", n(uint64_t(c.max_user_connections)), n(uint64_t(d.max_user_connections))},
      {"max_db_client_connections", n(uint64_t(c.max_db_client_connections)), n(uint64_t(d.max_db_client_connections))},
      {"max_user_client_connections", n(uint64_t(c.max_user_client_connections)),
       n(uint64_t(d.max_user_client_connections))},
      {"max_prepared_statements", n(uint64_t(c.max_prepared_statements)), n(uint64_t(d.max_prepared_statements))},
      {"server_reset_query", c.server_reset_query, d.server_reset_query},
      {"server_reset_query_always", c.server_reset_query_always ? "1" : "0", "0"},
      {"server_fast_close", c.server_fast_close ? "1" : "0", "0"},
      {"server_round_robin", c.server_round_robin ? "1" : "0", "0"},
      {"application_name_add_host", c.application_name_add_host ? "1" : "0", "0"},
      {"server_pipelining", c.server_pipelining ? "1" : "0", "0"},
      {"server_connect_timeout", dur(c.server_connect_timeout), dur(d.server_connect_timeout)},
      {"cancel_wait_timeout", dur(c.cancel_wait_timeout), dur(d.cancel_wait_timeout)},
      {"server_login_retry", dur(c.server_login_retry), dur(d.server_login_retry)},
      {"server_idle_timeout", dur(c.server_idle_timeout), dur(d.server_idle_timeout)},
      {"server_lifetime", dur(c.server_lifetime), dur(d.server_lifetime)},
      {"query_timeout", dur(c.query_timeout), dur(d.query_timeout)},
      {"query_wait_timeout", dur(c.query_wait_timeout), dur(d.query_wait_timeout)},
      {"query_wait_notify", dur(c.query_wait_notify), dur(d.query_wait_notify)},
      {"client_idle_timeout", dur(c.client_idle_timeout), dur(d.client_idle_timeout)},
      {"client_login_timeout", dur(c.client_login_timeout), dur(d.client_login_timeout)},
      {"idle_transaction_timeout", dur(c.idle_transaction_timeout), dur(d.idle_transaction_timeout)},
      {"transaction_timeout", dur(c.transaction_timeout), dur(d.transaction_timeout)},
      {"shutdown_timeout", dur(c.shutdown_timeout), dur(d.shutdown_timeout)},
      {"autodb_idle_timeout", dur(c.autodb_idle_timeout), dur(d.autodb_idle_timeout)},
      {"max_packet_size", n(c.max_packet_size), n(d.max_packet_size)},
      {"tcp_keepalive", c.tcp_keepalive ? "1" : "0", d.tcp_keepalive ? "1" : "0"},
      {"tcp_keepidle", dur(c.tcp_keepidle), dur(d.tcp_keepidle)},
      {"tcp_keepintvl", dur(c.tcp_keepintvl), dur(d.tcp_keepintvl)},
      {"tcp_keepcnt", n(uint64_t(c.tcp_keepcnt)), n(uint64_t(d.tcp_keepcnt))},
      {"tcp_user_timeout", dur(c.tcp_user_timeout), dur(d.tcp_user_timeout)},
      {"tcp_socket_buffer", n(c.tcp_socket_buffer), n(d.tcp_socket_buffer)},
      {"scram_iterations", n(uint64_t(c.scram_iterations)), n(uint64_t(d.scram_iterations))},
      {"tcp_defer_accept", dur(c.tcp_defer_accept), dur(d.tcp_defer_accept)},
      {"auth_type", std::string(conf::to_string(c.auth.type)), std::string(conf::to_string(d.auth.type))},
      {"auth_file", c.auth.file, ""},
      {"admin_users", join(c.admin.users), ""},
      {"stats_users", join(c.admin.stats_users), ""},
      {"metrics_listen", c.admin.metrics_listen, ""},
      {"log_level", c.log.level, d.log.level},
      {"stats_period", dur(c.log.stats_period), dur(d.log.stats_period)},
  };
  // [pgmux] settings other than the bound sockets can be SET on the console;
  // the rest changes with the file and RELOAD.
  for (Row& r : rows) {
    // Besides the restart-only ones, these come from other tables of the file.
    static const char* kFileOnly[] = {"auth_type", "auth_file",      "admin_users", "stats_users",
                                      "metrics_listen", "log_level", "stats_period"};
    const bool fixed = conf::is_restart_only(r[0]) ||
                       std::find_if(std::begin(kFileOnly), std::end(kFileOnly),
                                    [&](const char* k) { return r[0] == k; }) != std::end(kFileOnly);
    r.push_back(fixed ? "no" : "yes");
  }
  table(out, {"key", "value", "default", "changeable"}, rows);
}

void show_lists(Worker& w, std::string& out) {
  uint64_t pools = 0, used_servers = 0, login_clients = 0, used_clients = 0;
  each_pool(w, [&](Worker&, const PoolKey& key, const pool::Pool&, const conf::DatabaseConfig&) { pools += !key.health; });
  each_server(w, [&](Worker&, const ServerConnection&) { ++used_servers; });
  each_client(w, [&](Worker&, const ClientConnection& c) {
    using S = ClientConnection::State;
    if (c.state() == S::startup || c.state() == S::auth) ++login_clients;
    else ++used_clients;
  });
  uint64_t users = 0;
  if (const auth::Userlist* ul = w.userlist()) users = ul->users.size();
  std::vector<Row> rows = {{"databases", n(w.config().databases.size())},
                           {"users", n(users)},
                           {"pools", n(pools)},
                           {"free_clients", "0"},
                           {"used_clients", n(used_clients)},
                           {"login_clients", n(login_clients)},
                           {"free_servers", "0"},
                           {"used_servers", n(used_servers)},
                           {"dns_names", "0"},
                           {"dns_zones", "0"},
                           {"dns_queries", "0"},
                           {"dns_pending", "0"}};
  table(out, {"list", "items"}, rows);
}

void show_state(Worker& w, std::string& out) {
  bool paused = w.is_paused("");
  table(out, {"key", "value"},
        {{"active", (!paused && !w.shutting_down()) ? "yes" : "no"},
         {"paused", paused ? "yes" : "no"},
         {"suspended", "no"},
         {"shutting_down", w.shutting_down() ? "yes" : "no"}});
}

void show_help(std::string& out) {
  proto::ErrorFields f;
  f.severity = "NOTICE";
  f.sqlstate = "00000";
  f.message = "Console usage";
  f.detail =
      "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION|STATE\n"
      "\tSHOW LISTS|STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
      "\tPAUSE [<db>]\n\tRESUME [<db>]\n\tDISABLE <db>\n\tENABLE <db>\n\tRECONNECT [<db>]\n\tKILL <db>\n"
      "\tKILL_CLIENT <id>\n"
      "\tWAIT_CLOSE [<db>]\n\tRELOAD\n\tSET <key> = <value>\n\tSHUTDOWN [WAIT_FOR_CLIENTS]";
  proto::notice_response(out, f);
  proto::command_complete(out, "SHOW");
}

}  // namespace

bool is_admin_database(std::string_view db) { return db == "pgmux" || db == "pgbouncer"; }

AdminLevel admin_level(const conf::Config& cfg, std::string_view user) {
  for (const auto& u : cfg.admin.users)
    if (u == user) return AdminLevel::admin;
  for (const auto& u : cfg.admin.stats_users)
    if (u == user) return AdminLevel::stats;
  return AdminLevel::none;
}

PoolTotals::PoolTotals(const pool::PoolStats& s)
    : xact(s.xact_count),
      query(s.query_count),
      recv(s.client_bytes),
      sent(s.server_bytes),
      xact_us(s.xact_us),
      query_us(s.query_us),
      wait_us(s.wait_us),
      waits(s.wait_hist.count),
      waited(s.waited) {}

namespace {
constexpr uint64_t PoolTotals::*kTotalsFields[] = {&PoolTotals::xact,     &PoolTotals::query,   &PoolTotals::recv,
                                                   &PoolTotals::sent,     &PoolTotals::xact_us, &PoolTotals::query_us,
                                                   &PoolTotals::wait_us,  &PoolTotals::waits,   &PoolTotals::waited};
}  // namespace

void PoolTotals::add(const PoolTotals& t) {
  for (auto f : kTotalsFields) this->*f += t.*f;
}

PoolTotals PoolTotals::since(const PoolTotals& before) const {
  PoolTotals d;
  for (auto f : kTotalsFields) d.*f = this->*f >= before.*f ? this->*f - before.*f : 0;
  return d;
}

void log_stats(Worker& w, std::map<std::string, PoolTotals, std::less<>>& last, double seconds, bool emit) {
  const auto live = totals_by_database(w);
  // Pools dropped after a reload count on, so that the totals only grow:
  // the snapshot holds every database that had pools, lines go to those
  // that have some now.
  auto now = live;
  for (Worker* x : w.all())
    for (const auto& [db, gone] : x->dropped_totals()) now[db].add(gone);
  if (emit) {
    for (const auto& [db, t] : now) {
      if (!live.count(db)) continue;
      const auto it = last.find(db);
      const PoolTotals d = it != last.end() ? t.since(it->second) : t;
      const Averages a(d, seconds);
      spdlog::info("stats {}: {} xacts/s, {} queries/s, in {} B/s, out {} B/s, xact {} us, query {} us, "
                   "wait {} us ({} clients waited)",
                   db, a.xact, a.query, a.recv, a.sent, a.xact_us, a.query_us, a.wait_us, d.waited);
    }
  }
  last = std::move(now);
}

namespace {
// SHOW `what` (upper case); false if unknown. Inside Hub::read_all.
bool show(Worker& w, const std::string& what, std::string& out) {
  if (what == "POOLS") show_pools(w, out);
  else if (what == "STATS") show_stats(w, out, StatsPart::all);
  else if (what == "STATS_TOTALS") show_stats(w, out, StatsPart::totals);
  else if (what == "STATS_AVERAGES") show_stats(w, out, StatsPart::averages);
  else if (what == "TOTALS") show_totals(w, out);
  else if (what == "CLIENTS") show_clients(w, out);
  else if (what == "SERVERS") show_servers(w, out);
  else if (what == "DATABASES") show_databases(w, out);
  else if (what == "USERS") show_users(w, out);
  else if (what == "CONFIG") show_config(w, out);
  else if (what == "LISTS") show_lists(w, out);
  else if (what == "STATE") show_state(w, out);
  else if (what == "HELP") show_help(out);
  else if (what == "VERSION")
    table(out, {"version"}, {{std::string("pgmux ") + PGMUX_VERSION + " (PgBouncer 1.18.0 compatible console)"}});
  else return false;
  return true;
}
}  // namespace

AdminReply run_admin_command(Worker& w, ClientConnection& self, AdminLevel level, std::string_view query) {
  AdminReply r;
  std::string q(query);
  while (!q.empty() && (std::isspace(static_cast<unsigned char>(q.back())) || q.back() == ';')) q.pop_back();
  std::vector<std::string> a = words(q);
  if (a.empty()) {
    proto::empty_query_response(r.out);
    return r;
  }
  const std::string cmd = upper(a[0]);
  const std::string arg1 = a.size() > 1 ? upper(a[1]) : "";
  auto bad = [&]() {
    error(r.out, "42601", "invalid command '" + q + "', use SHOW HELP;");
    return r;
  };
  if (cmd == "SHOW") {
    if (a.size() != 2) return bad();
    bool known = true;
    w.hub().read_all(&w, [&] { known = show(w, arg1, r.out); });
    if (!known) return bad();
    return r;
  }
  static const char* kKnown[] = {"PAUSE", "RESUME", "RECONNECT", "KILL", "KILL_CLIENT", "WAIT_CLOSE",
                                 "RELOAD", "SHUTDOWN", "SET", "SUSPEND", "DISABLE", "ENABLE"};
  if (std::find(std::begin(kKnown), std::end(kKnown), cmd) == std::end(kKnown)) return bad();
  if (level != AdminLevel::admin) {
    error(r.out, "42501", "admin access needed for " + cmd + " (this user is in [admin] stats_users)");
    return r;
  }
  const std::string db = a.size() > 1 ? unquote(a[1]) : "";
  auto known_db = [&]() {
    if (db.empty() || w.config().databases.count(db)) return true;
    error(r.out, "42704", "no such database: " + db);
    return false;
  };
  spdlog::info("C-{} admin console: {}", self.id(), q);
  if (cmd == "PAUSE") {
    if (a.size() > 2 || !known_db()) return a.size() > 2 ? bad() : r;
    w.hub().broadcast(&w, [db](Worker& x) { x.pause(db); });
    r.later = true;
    r.tag = "PAUSE";
    r.db = db;
  } else if (cmd == "RESUME") {
    if (a.size() > 2 || !known_db()) return a.size() > 2 ? bad() : r;
    w.hub().broadcast(&w, [db](Worker& x) { x.resume(db); });
    proto::command_complete(r.out, "RESUME");
  } else if (cmd == "RECONNECT") {
    if (a.size() > 2 || !known_db()) return a.size() > 2 ? bad() : r;
    w.hub().broadcast(&w, [db](Worker& x) { x.reconnect(db); });
    proto::command_complete(r.out, "RECONNECT");
  } else if (cmd == "WAIT_CLOSE") {
    if (a.size() > 2 || !known_db()) return a.size() > 2 ? bad() : r;
    r.later = true;
    r.tag = "WAIT_CLOSE";
    r.db = db;
  } else if (cmd == "KILL") {
    if (a.size() != 2) return bad();
    if (!known_db()) return r;
    w.hub().broadcast(&w, [db](Worker& x) { x.kill_database(db); });
    proto::command_complete(r.out, "KILL");
  } else if (cmd == "DISABLE" || cmd == "ENABLE") {
    if (a.size() != 2) return bad();
    // A name the "*" entry serves may be disabled too, and a disabled name
    // enabled even after a reload removed its entry.
    const bool served = !db.empty() && (w.config().databases.count(db) || w.config().databases.count("*") ||
                                        (cmd == "ENABLE" && w.is_disabled(db)));
    if (!served) {
      error(r.out, "42704", "no such database: " + db);
      return r;
    }
    if (cmd == "DISABLE" && !w.config().databases.count(db)) {
      // Only "*" serves it: a typo would be taken too. Said when no client
      // has used the name yet.
      bool used = false;
      w.hub().read_all(&w, [&] {
        each_pool(w, [&](Worker&, const PoolKey& key, const pool::Pool&, const conf::DatabaseConfig&) {
          used = used || key.database == db;
        });
      });
      if (!used) {
        proto::ErrorFields f;
        f.severity = "NOTICE";
        f.sqlstate = "00000";
        f.message = "database \"" + db + "\" has no entry of its own and no client has used it: disabled as a "
                    "name the \"*\" entry serves";
        f.hint = "Check the spelling; ENABLE undoes it.";
        proto::notice_response(r.out, f);
      }
    }
    if (cmd == "DISABLE") w.hub().broadcast(&w, [db](Worker& x) { x.disable(db); });
    else w.hub().broadcast(&w, [db](Worker& x) { x.enable(db); });
    proto::command_complete(r.out, cmd);
  } else if (cmd == "KILL_CLIENT") {
    if (a.size() != 2) return bad();
    std::string id = a[1];
    if (id.rfind("C-", 0) == 0) id = id.substr(2);
    char* end = nullptr;
    unsigned long long v = std::strtoull(id.c_str(), &end, 10);
    // The worker that has the client closes it.
    Worker* owner = nullptr;
    if (!id.empty() && !*end)
      w.hub().read_all(&w, [&] {
        each_client(w, [&](Worker& x, const ClientConnection& c) {
          if (c.id() == v && c.state() != ClientConnection::State::closing) owner = &x;
        });
      });
    if (owner == &w) owner = w.kill_client(v) ? owner : nullptr;
    else if (owner) owner->post([v](Worker& x) { x.kill_client(v); });
    if (!owner) {
      error(r.out, "42704", "no such client: " + a[1]);
      return r;
    }
    proto::command_complete(r.out, "KILL_CLIENT");
  } else if (cmd == "RELOAD") {
    if (a.size() != 1) return bad();
    std::string why;
    if (!w.reload(&why)) {
      error(r.out, "F0000", "reload refused, the running configuration stays in force: " + why);
      return r;
    }
    proto::command_complete(r.out, "RELOAD");
  } else if (cmd == "SET") {
    // SET key = value | SET key TO value; the value is a SQL literal.
    std::string_view rest = std::string_view(q).substr(3);
    auto skip = [&] {
      while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.front()))) rest.remove_prefix(1);
    };
    skip();
    size_t k = 0;
    while (k < rest.size() && (std::isalnum(static_cast<unsigned char>(rest[k])) || rest[k] == '_')) ++k;
    std::string key(rest.substr(0, k));
    for (char& ch : key) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    rest.remove_prefix(k);
    skip();
    if (!rest.empty() && rest.front() == '=') rest.remove_prefix(1);
    else if (rest.size() > 2 && upper(std::string(rest.substr(0, 2))) == "TO" &&
             std::isspace(static_cast<unsigned char>(rest[2])))
      rest.remove_prefix(2);
    else return bad();
    skip();
    if (key.empty() || rest.empty()) return bad();
    std::string why;
    if (!w.set_setting(key, rest, why)) {
      error(r.out, "22023", why);
      return r;
    }
    proto::command_complete(r.out, "SET");
  } else if (cmd == "SHUTDOWN") {
    if (a.size() == 1) {
      proto::command_complete(r.out, "SHUTDOWN");
      r.close_after = true;
      w.request_shutdown(false);
    } else if (a.size() == 2 && arg1 == "WAIT_FOR_CLIENTS") {
      proto::command_complete(r.out, "SHUTDOWN");
      r.close_after = true;
      w.request_shutdown(true);
    } else {
      return bad();
    }
  } else {
    error(r.out, "0A000",
          cmd + " is not supported by pgmux (SUSPEND: use so_reuseport for a restart without dropping clients)");
  }
  return r;
}

}  // namespace pgmux
