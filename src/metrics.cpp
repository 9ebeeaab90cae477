#include "src/metrics.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pgmux_version.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>

#include "pool/router.hpp"
#include "src/client.hpp"
#include "src/health.hpp"
#include "src/server.hpp"
#include "src/socket.hpp"
#include "src/worker.hpp"

namespace pgmux::metrics {

// ---------------------------------------------------------------------------
// Exposition format

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '"': out += "\\\""; break;
      case '\n': out += "\\n"; break;
      default: out += c;
    }
  }
  return out;
}

std::string labels(std::initializer_list<std::pair<std::string_view, std::string_view>> kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    if (!out.empty()) out += ',';
    out += k;
    out += "=\"";
    out += escape_label_value(v);
    out += '"';
  }
  return out;
}

namespace {

// `base` plus one more label.
std::string with(const std::string& base, std::string_view k, std::string_view v) {
  std::string one = labels({{k, v}});
  if (base.empty()) return one;
  return base + "," + one;
}

}  // namespace

std::string format_value(uint64_t v) { return std::to_string(v); }

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers (counts stored as double, 0, 1) without a fraction.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0)
    return std::to_string(static_cast<int64_t>(v));
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string format_le_us(uint64_t bound_us) {
  // Decimal arithmetic, not floating point: le labels must be exact and
  // stable across versions ("0.00025", not "0.00025000000000000001").
  std::string out = std::to_string(bound_us / 1000000);
  uint64_t frac = bound_us % 1000000;
  if (frac != 0) {
    std::string f = std::to_string(frac);
    f.insert(0, 6 - f.size(), '0');
    while (!f.empty() && f.back() == '0') f.pop_back();
    out += '.';
    out += f;
  }
  return out;
}

std::vector<Bucket> cumulative_buckets(const pool::LatencyHistogram& h) {
  using H = pool::LatencyHistogram;
  std::vector<Bucket> out;
  out.reserve(H::kBuckets);
  uint64_t running = 0;
  for (size_t i = 0; i < H::kBuckets; ++i) {
    running += h.counts[i];
    out.push_back({i + 1 < H::kBuckets ? format_le_us(H::kBoundsUs[i]) : std::string("+Inf"), running});
  }
  return out;
}

void Exposition::family(std::string_view name, MetricType type, std::string_view help) {
  if (index_.count(std::string(name))) return;
  Family f;
  f.head = "# HELP ";
  f.head += name;
  f.head += ' ';
  // HELP text escapes backslash and line feed.
  for (char c : help) {
    if (c == '\\') f.head += "\\\\";
    else if (c == '\n') f.head += "\\n";
    else f.head += c;
  }
  f.head += "\n# TYPE ";
  f.head += name;
  f.head += type == MetricType::counter ? " counter\n" : type == MetricType::gauge ? " gauge\n" : " histogram\n";
  index_.emplace(std::string(name), families_.size());
  families_.push_back(std::move(f));
}

Exposition::Family& Exposition::find(std::string_view name) {
  auto it = index_.find(std::string(name));
  if (it != index_.end()) return families_[it->second];
  // Not declared: still a valid exposition, without HELP.
  Family f;
  f.head = "# TYPE " + std::string(name) + " untyped\n";
  index_.emplace(std::string(name), families_.size());
  families_.push_back(std::move(f));
  return families_.back();
}

void Exposition::sample(std::string_view family, std::string_view name, std::string_view labels,
                        std::string_view value) {
  std::string& b = find(family).body;
  b += name;
  if (!labels.empty()) {
    b += '{';
    b += labels;
    b += '}';
  }
  b += ' ';
  b += value;
  b += '\n';
}

void Exposition::histogram(std::string_view family, std::string_view labels,
                           const pool::LatencyHistogram& h) {
  const std::string base(labels);
  const std::string fam(family);
  for (const Bucket& bk : cumulative_buckets(h))
    sample(family, fam + "_bucket", with(base, "le", bk.le), format_value(bk.cumulative));
  sample(family, fam + "_sum", labels, format_value(double(h.sum_us) / 1e6));
  sample(family, fam + "_count", labels, format_value(h.count));
}

std::string Exposition::text() const {
  std::string out;
  size_t n = 0;
  for (const auto& f : families_) n += f.head.size() + f.body.size();
  out.reserve(n);
  for (const auto& f : families_) {
    if (f.body.empty()) continue;  // declared, nothing to report (e.g. no routed database)
    out += f.head;
    out += f.body;
  }
  return out;
}

// ---------------------------------------------------------------------------
// What a worker reports

namespace {

using MT = MetricType;

const char* client_state_name(ClientConnection::State s) {
  using S = ClientConnection::State;
  switch (s) {
    case S::startup: return "startup";
    case S::auth: return "auth";
    case S::wait_welcome: return "wait_welcome";
    case S::idle: return "idle";
    case S::wait_server: return "wait_server";
    case S::syncing: return "syncing";
    case S::linked: return "linked";
    case S::closing: return "closing";
    default: return "other";
  }
}
constexpr std::array<const char*, 8> kClientStates = {"startup", "auth", "wait_welcome", "idle",
                                                      "wait_server", "syncing", "linked", "closing"};

const char* server_state_name(ServerConnection::State s) {
  using S = ServerConnection::State;
  switch (s) {
    case S::resolving: return "resolving";
    case S::connecting: return "connecting";
    case S::login: return "login";
    case S::internal: return "internal";
    case S::idle: return "idle";
    case S::linked: return "linked";
    case S::draining: return "draining";
    case S::closing: return "closing";
    default: return "other";
  }
}
constexpr std::array<const char*, 8> kServerStates = {"resolving", "connecting", "login", "internal",
                                                      "idle", "linked", "draining", "closing"};

std::string host_port(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

void declare_families(Exposition& e) {
  e.family("pgmux_up", MT::gauge, "1: pgmux is running and answered the scrape");
  e.family("pgmux_info", MT::gauge, "Build information, always 1: the version is a label");
  e.family("pgmux_start_time_seconds", MT::gauge, "When the metrics endpoint started, in seconds since the Unix epoch");
  e.family("pgmux_shutting_down", MT::gauge, "1 once a graceful shutdown started, else 0");
  e.family("pgmux_client_connections", MT::gauge, "Client connections counted against max_client_conn");
  e.family("pgmux_max_client_connections", MT::gauge, "The max_client_conn setting");
  e.family("pgmux_clients_by_state", MT::gauge, "Client connections by connection state");
  e.family("pgmux_database_client_connections", MT::gauge,
           "Logged-in clients of the database entry (counted against max_db_client_connections)");
  e.family("pgmux_database_max_client_connections", MT::gauge,
           "The database entry's max_db_client_connections (0 = unlimited)");
  e.family("pgmux_server_connections", MT::gauge,
           "Server connections by connection state (health checkers' own included)");
  e.family("pgmux_io_buffers", MT::gauge, "16 KiB I/O buffers held by connections with data in flight");

  e.family("pgmux_pool_client_connections", MT::gauge,
           "Clients of the pool: active = logged in and not waiting (linked or idle), waiting = waiting for a server");
  e.family("pgmux_pool_server_connections", MT::gauge, "Server connections of the pool by pool state");
  e.family("pgmux_pool_size", MT::gauge, "The pool's pool_size");
  e.family("pgmux_pool_max_wait_seconds", MT::gauge, "How long the oldest waiting client of the pool has waited");
  e.family("pgmux_transactions_total", MT::counter, "Transactions completed through the pool");
  e.family("pgmux_queries_total", MT::counter, "Requests answered through the pool (every ReadyForQuery)");
  e.family("pgmux_received_bytes_total", MT::counter, "Bytes received from clients and sent on to servers");
  e.family("pgmux_sent_bytes_total", MT::counter, "Bytes received from servers and sent on to clients");
  e.family("pgmux_server_errors_total", MT::counter, "Server connections lost or refused at login");
  e.family("pgmux_prepared_statements_total", MT::counter,
           "Named prepared statements used (Parse, Bind, Describe) in transaction/statement mode: "
           "result=hit when the server already had it, miss when pgmux prepared it there");
  e.family("pgmux_pipelined_requests_total", MT::counter,
           "server_pipelining: requests of waiting clients sent behind another client's request "
           "on a busy server");
  e.family("pgmux_transaction_time_seconds_total", MT::counter, "Time spent in transactions");
  e.family("pgmux_query_time_seconds_total", MT::counter, "Time spent in queries");
  e.family("pgmux_wait_time_seconds_total", MT::counter, "Time clients waited for a server");
  e.family("pgmux_query_duration_seconds", MT::histogram, "Query duration");
  e.family("pgmux_transaction_duration_seconds", MT::histogram, "Transaction duration");
  e.family("pgmux_wait_duration_seconds", MT::histogram, "How long clients waited for a server");

  e.family("pgmux_backend_up", MT::gauge, "1 when the last health check of the backend succeeded (0 before the first)");
  e.family("pgmux_backend_role", MT::gauge, "1 for the role the backend reported at its last check");
  e.family("pgmux_backend_is_writer", MT::gauge, "1 for the backend writes go to");
  e.family("pgmux_backend_replay_lag_seconds", MT::gauge, "Replica replay delay (replicas that are up)");
  e.family("pgmux_backend_replay_lag_bytes", MT::gauge,
           "Newest primary WAL position minus the replica's replay position (when known)");
  e.family("pgmux_backend_wal_position_bytes", MT::gauge,
           "WAL position: insert position on a primary, replay position on a replica");
  e.family("pgmux_database_split_brain", MT::gauge, "1 when more than one backend of the database says it is a primary");
}

double g_start_time = 0;  // set by MetricsServer

}  // namespace

std::string render(const Worker& w) {
  Exposition e;
  declare_families(e);
  const conf::Config& cfg = w.config();

  // --- process ---------------------------------------------------------------
  e.sample("pgmux_up", "", uint64_t{1});
  e.sample("pgmux_info", labels({{"version", PGMUX_VERSION}}), uint64_t{1});
  if (g_start_time > 0) e.sample("pgmux_start_time_seconds", "", g_start_time);
  e.sample("pgmux_shutting_down", "", uint64_t{w.shutting_down() ? 1u : 0u});
  e.sample("pgmux_client_connections", "", uint64_t{w.client_count()});
  e.sample("pgmux_max_client_connections", "", uint64_t(cfg.max_client_conn));
  for (const auto& [name, db] : cfg.databases) {
    const std::string l = labels({{"database", name}});
    e.sample("pgmux_database_client_connections", l, uint64_t(w.hub().clients_of_database(name)));
    e.sample("pgmux_database_max_client_connections", l, uint64_t(cfg.effective_max_db_client_connections(&db)));
  }

  std::unordered_map<std::string, uint64_t> client_states;
  std::unordered_map<const pool::Pool*, uint64_t> active_clients;
  each_client(w, [&](const Worker&, const ClientConnection& c) {
    ++client_states[client_state_name(c.state())];
    using S = ClientConnection::State;
    if (c.state() == S::idle || c.state() == S::syncing || c.state() == S::linked) {
      // The pool of the server it uses now (a replica's, when routed),
      // else the one it logged in to.
      const pool::Pool* p = c.home_pool();
      if (const ServerConnection* s = c.server(); s && s->pool()) p = s->pool();
      if (p) ++active_clients[p];
    }
  });
  for (const char* s : kClientStates)
    e.sample("pgmux_clients_by_state", labels({{"state", s}}), client_states[s]);
  if (auto it = client_states.find("other"); it != client_states.end())
    e.sample("pgmux_clients_by_state", labels({{"state", "other"}}), it->second);

  std::unordered_map<std::string, uint64_t> server_states;
  each_server(w, [&](const Worker&, const ServerConnection& s) { ++server_states[server_state_name(s.state())]; });
  for (const char* s : kServerStates)
    e.sample("pgmux_server_connections", labels({{"state", s}}), server_states[s]);
  if (auto it = server_states.find("other"); it != server_states.end())
    e.sample("pgmux_server_connections", labels({{"state", "other"}}), it->second);
  uint64_t io_buffers = 0;
  for (const Worker* x : w.all()) io_buffers += x->io_buffers_in_use();
  e.sample("pgmux_io_buffers", "", io_buffers);

  // --- pools -------------------------------------------------------------------
  std::unordered_map<const conf::DatabaseConfig*, const RouteState*> routes;
  w.for_each_route([&](const RouteState& r) { routes[r.db] = &r; });

  // Every worker has its own pool of a key: one series is their sum.
  struct Agg {
    pool::PoolCounts n;
    uint64_t active = 0;
    int pool_size = 0;
    pool::Duration max_wait{0};
    pool::PoolStats st;
  };
  std::map<std::string, Agg> pools;  // by label set, in a stable order
  each_pool(w, [&](const Worker&, const PoolKey& key, const pool::Pool& p, const conf::DatabaseConfig& db) {
    if (key.health) return;  // the health checker's pool of one: internal
    std::string backend;
    std::string role = "primary";
    auto rit = routes.find(&db);
    if (rit != routes.end() && key.backend < rit->second->router.size()) {
      const pool::BackendStatus& b = rit->second->router.backend(key.backend);
      backend = b.name;
      role = pool::to_string(b.role);
    } else if (key.backend > 0 && key.backend <= db.replicas.size()) {
      backend = host_port(db.replicas[key.backend - 1].host, db.replicas[key.backend - 1].port);
    } else {
      backend = host_port(db.host, db.port);
    }
    const std::string l =
        labels({{"database", key.database}, {"user", key.user}, {"backend", backend}, {"role", role}});
    Agg& a = pools[l];
    const pool::PoolCounts n = p.counts();
    a.n.waiting_welcome += n.waiting_welcome;
    a.n.waiting_server += n.waiting_server;
    a.n.active += n.active;
    a.n.idle += n.idle;
    a.n.connecting += n.connecting;
    a.n.resetting += n.resetting;
    auto it = active_clients.find(&p);
    a.active += it == active_clients.end() ? 0 : it->second;
    a.pool_size = p.settings().pool_size;
    a.max_wait = std::max(a.max_wait, p.max_wait());
    a.st.add(p.stats);
  });
  for (const auto& [l, a] : pools) {
    const pool::PoolCounts& n = a.n;
    e.sample("pgmux_pool_client_connections", with(l, "state", "active"), a.active);
    e.sample("pgmux_pool_client_connections", with(l, "state", "waiting"),
             uint64_t{n.waiting_welcome + n.waiting_server});
    e.sample("pgmux_pool_server_connections", with(l, "state", "active"), uint64_t{n.active});
    e.sample("pgmux_pool_server_connections", with(l, "state", "idle"), uint64_t{n.idle});
    e.sample("pgmux_pool_server_connections", with(l, "state", "connecting"), uint64_t{n.connecting});
    e.sample("pgmux_pool_server_connections", with(l, "state", "resetting"), uint64_t{n.resetting});
    e.sample("pgmux_pool_size", l, uint64_t(a.pool_size));
    e.sample("pgmux_pool_max_wait_seconds", l, double(a.max_wait.count()) / 1e3);
    const pool::PoolStats& st = a.st;
    e.sample("pgmux_transactions_total", l, st.xact_count);
    e.sample("pgmux_queries_total", l, st.query_count);
    e.sample("pgmux_received_bytes_total", l, st.client_bytes);
    e.sample("pgmux_sent_bytes_total", l, st.server_bytes);
    e.sample("pgmux_server_errors_total", l, st.server_errors);
    e.sample("pgmux_prepared_statements_total", with(l, "result", "hit"), st.prepared_hits);
    e.sample("pgmux_prepared_statements_total", with(l, "result", "miss"), st.prepared_misses);
    e.sample("pgmux_pipelined_requests_total", l, st.pipelined);
    e.sample("pgmux_transaction_time_seconds_total", l, double(st.xact_us) / 1e6);
    e.sample("pgmux_query_time_seconds_total", l, double(st.query_us) / 1e6);
    e.sample("pgmux_wait_time_seconds_total", l, double(st.wait_us) / 1e6);
    e.histogram("pgmux_query_duration_seconds", l, st.query_hist);
    e.histogram("pgmux_transaction_duration_seconds", l, st.xact_hist);
    e.histogram("pgmux_wait_duration_seconds", l, st.wait_hist);
  }

  // --- backends of routed databases -------------------------------------------
  w.for_each_route([&](const RouteState& r) {
    const pool::Router& router = r.router;
    const std::string& database = r.db->name;
    e.sample("pgmux_database_split_brain", labels({{"database", database}}),
             uint64_t{router.split_brain() ? 1u : 0u});
    const int writer = router.writer();
    for (size_t i = 0; i < router.size(); ++i) {
      const pool::BackendStatus& b = router.backend(i);
      const std::string l = labels({{"database", database}, {"backend", b.name}});
      e.sample("pgmux_backend_up", l, uint64_t{b.up ? 1u : 0u});
      for (auto role : {pool::BackendRole::primary, pool::BackendRole::replica, pool::BackendRole::unknown})
        e.sample("pgmux_backend_role", with(l, "role", pool::to_string(role)), uint64_t{b.role == role ? 1u : 0u});
      e.sample("pgmux_backend_is_writer", l, uint64_t{writer == int(i) ? 1u : 0u});
      if (b.checked && b.up) {
        e.sample("pgmux_backend_wal_position_bytes", l, b.lsn);
        if (b.role == pool::BackendRole::replica) {
          e.sample("pgmux_backend_replay_lag_seconds", l, b.lag_seconds);
          if (b.lag_bytes_known) e.sample("pgmux_backend_replay_lag_bytes", l, b.lag_bytes);
        }
      }
    }
  });
  return e.text();
}

// ---------------------------------------------------------------------------
// HTTP

const char* const kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

namespace {

bool is_tchar(unsigned char c) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}
bool is_vchar(unsigned char c) { return c > 0x20 && c < 0x7f; }
// Bytes allowed in a header field value (obs-text included).
bool is_field_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

// A line (without its line end) may carry a '\r' only as the last byte of
// an incomplete read, before the '\n' arrives.
bool partial_ok(std::string_view line, bool request_line) {
  for (size_t i = 0; i < line.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(line[i]);
    if (c == '\r' && i + 1 == line.size()) continue;
    if (request_line ? (c != ' ' && !is_vchar(c)) : !is_field_char(c)) return false;
  }
  return true;
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

ParseStatus parse_request_line(std::string_view line, HttpRequest& r) {
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0) return ParseStatus::bad_request;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return ParseStatus::bad_request;
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  for (char c : method)
    if (!is_tchar(static_cast<unsigned char>(c))) return ParseStatus::bad_request;
  for (char c : target)
    if (!is_vchar(static_cast<unsigned char>(c))) return ParseStatus::bad_request;
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !std::isdigit(static_cast<unsigned char>(version[5])) ||
      version[6] != '.' || !std::isdigit(static_cast<unsigned char>(version[7])))
    return ParseStatus::bad_request;
  if (version[5] != '1') return ParseStatus::bad_version;
  r.method = std::string(method);
  r.target = std::string(target);
  r.minor_version = version[7] - '0';
  std::string_view path = target;
  if (iequals_prefix(path, "http://") || iequals_prefix(path, "https://")) {
    // absolute-form: drop scheme and authority
    path.remove_prefix(path.find("//") + 2);
    size_t slash = path.find_first_of("/?#");
    if (slash == std::string_view::npos || path[slash] != '/') path = "/";
    else path.remove_prefix(slash);
  } else if (path != "*" && path.front() != '/') {
    return ParseStatus::bad_request;
  }
  path = path.substr(0, path.find_first_of("?#"));
  r.path = std::string(path);
  return ParseStatus::ok;
}

bool valid_header_line(std::string_view line) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;  // also obs-fold (leading space)
  for (size_t i = 0; i < colon; ++i)
    if (!is_tchar(static_cast<unsigned char>(line[i]))) return false;
  for (size_t i = colon + 1; i < line.size(); ++i)
    if (!is_field_char(static_cast<unsigned char>(line[i]))) return false;
  return true;
}

}  // namespace

ParseResult parse_request_head(std::string_view data, size_t max_head) {
  ParseResult out;
  size_t pos = 0;
  // A client may send empty lines before the request line (RFC 9112 2.2).
  for (;;) {
    if (data.substr(pos, 2) == "\r\n") pos += 2;
    else if (data.substr(pos, 1) == "\n") pos += 1;
    else break;
    if (pos > max_head) {
      out.status = ParseStatus::too_large;
      return out;
    }
  }
  size_t lines = 0;
  for (;;) {
    const size_t nl = data.find('\n', pos);
    if (nl == std::string_view::npos) {
      // Incomplete line: refuse bytes that can never become valid now.
      if (!partial_ok(data.substr(pos), lines == 0)) out.status = ParseStatus::bad_request;
      else if (data.size() > max_head) out.status = ParseStatus::too_large;
      else out.status = ParseStatus::need_more;
      return out;
    }
    if (nl + 1 > max_head) {
      out.status = ParseStatus::too_large;
      return out;
    }
    std::string_view line = data.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (lines == 0) {
      out.status = parse_request_line(line, out.request);
      if (out.status != ParseStatus::ok) return out;
    } else if (line.empty()) {
      out.status = ParseStatus::ok;
      out.head_size = nl + 1;
      return out;
    } else {
      if (lines > kMaxHeaderLines) {
        out.status = ParseStatus::too_large;
        return out;
      }
      if (!valid_header_line(line)) {
        out.status = ParseStatus::bad_request;
        return out;
      }
    }
    ++lines;
    pos = nl + 1;
  }
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

std::string serialize(const HttpResponse& r, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\n";
  out += "Connection: close\r\n";
  out += r.extra_headers;
  out += "\r\n";
  if (!head_only) out += r.body;
  return out;
}

HttpResponse respond(const ParseResult& parsed, bool shutting_down,
                     const std::function<std::string()>& render_metrics) {
  HttpResponse r;
  switch (parsed.status) {
    case ParseStatus::ok: break;
    case ParseStatus::too_large:
      r.status = 431;
      r.body = "request header fields too large\n";
      return r;
    case ParseStatus::bad_version:
      r.status = 505;
      r.body = "HTTP version not supported\n";
      return r;
    case ParseStatus::need_more:
    case ParseStatus::bad_request:
      r.status = 400;
      r.body = "bad request\n";
      return r;
  }
  const HttpRequest& q = parsed.request;
  if (q.method != "GET" && q.method != "HEAD") {
    r.status = 405;
    r.body = "method not allowed\n";
    r.extra_headers = "Allow: GET, HEAD\r\n";
    return r;
  }
  if (q.path == "/metrics") {
    r.content_type = kMetricsContentType;
    r.body = render_metrics();
  } else if (q.path == "/health") {
    if (shutting_down) {
      r.status = 503;
      r.body = "shutting down\n";
    } else {
      r.body = "ok\n";
    }
  } else if (q.path == "/") {
    r.body = "pgmux " PGMUX_VERSION "\n/metrics  Prometheus metrics\n/health   200 while running, 503 once shutting down\n";
  } else {
    r.status = 404;
    r.body = "not found\n";
  }
  return r;
}

std::optional<ListenAddress> parse_listen_address(std::string_view s, std::string& why) {
  ListenAddress a;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close == 1 || close + 1 >= s.size() || s[close + 1] != ':') {
      why = "expected \"[ipv6]:port\"";
      return std::nullopt;
    }
    a.host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      why = "expected \"host:port\", \"[ipv6]:port\" or \"*:port\"";
      return std::nullopt;
    }
    a.host = std::string(s.substr(0, colon));
    if (a.host.find(':') != std::string::npos) {
      why = "an IPv6 address needs brackets: \"[ipv6]:port\"";
      return std::nullopt;
    }
    port = s.substr(colon + 1);
  }
  unsigned value = 0;
  auto r = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || r.ec != std::errc() || r.ptr != port.data() + port.size() || value == 0 || value > 65535) {
    why = "invalid port \"" + std::string(port) + "\"";
    return std::nullopt;
  }
  a.port = static_cast<uint16_t>(value);
  return a;
}

// ---------------------------------------------------------------------------
// The server

struct MetricsServer::Conn {
  uv_tcp_t tcp{};
  uv_write_t write_req{};
  uv_shutdown_t shutdown_req{};
  MetricsServer* server = nullptr;
  std::string head;      // the request so far
  std::string response;  // kept alive until the write completes
  std::string peer;
  uint64_t deadline_ms = 0;
  size_t discarded = 0;    // bytes read after the request (a body, pipelined requests)
  bool responded = false;  // the response is written or being written
  bool sent = false;       // ... and the write side is shut down
  bool peer_eof = false;
  bool closing = false;
};

namespace {

// Rate limit for the warnings untrusted peers can cause.
struct WarnLimit {
  uint64_t window_start_ms = 0;
  unsigned count = 0;
  bool allow(uint64_t now_ms) {
    if (now_ms - window_start_ms >= 10'000) {
      window_start_ms = now_ms;
      count = 0;
    }
    return ++count <= 5;
  }
};
WarnLimit g_warn_limit;

std::string sockaddr_text(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    uv_ip4_name(a, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(a->sin_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
  uv_ip6_name(a, ip, sizeof ip);
  std::string out;
  out += '[';
  out += ip;
  out += "]:";
  out += std::to_string(ntohs(a->sin6_port));
  return out;
}

}  // namespace

MetricsServer::MetricsServer(Worker& w) : worker_(w) {
  if (g_start_time == 0) {
    uv_timeval64_t tv{};
    if (uv_gettimeofday(&tv) == 0) g_start_time = double(tv.tv_sec) + double(tv.tv_usec) / 1e6;
  }
}

MetricsServer::~MetricsServer() = default;

bool MetricsServer::start(const std::string& listen) {
  uv_loop_t* loop = worker_.loop();
  uv_tcp_init(loop, &listener_);
  listener_.data = this;
  listener_open_ = true;
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  timer_open_ = true;

  std::string why;
  auto a = parse_listen_address(listen, why);
  if (!a) {
    spdlog::critical("cannot listen on {} (metrics): {}", listen, why);
    return false;
  }
  sockaddr_storage ss{};
  std::string host = a->host == "*" ? "::" : a->host;
  int rc = uv_ip4_addr(host.c_str(), a->port, reinterpret_cast<sockaddr_in*>(&ss));
  if (rc != 0) rc = uv_ip6_addr(host.c_str(), a->port, reinterpret_cast<sockaddr_in6*>(&ss));
  if (rc == 0) rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&ss), 0);
  if (rc != 0 && a->host == "*") {
    // No IPv6 on this host: all IPv4 addresses.
    uv_ip4_addr("0.0.0.0", a->port, reinterpret_cast<sockaddr_in*>(&ss));
    rc = uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&ss), 0);
  }
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 128, on_connection);
  if (rc != 0) {
    spdlog::critical("cannot listen on {} (metrics): {}", listen, uv_strerror(rc));
    return false;
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  address_ = listen;
  if (uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &len) == 0)
    address_ = sockaddr_text(bound);
  spdlog::info("metrics listening on http://{}/metrics (and /health)", address_);
  return true;
}

void MetricsServer::close() {
  if (closed_) return;
  closed_ = true;
  if (listener_open_) uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  if (timer_open_) uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  std::vector<Conn*> all(conns_.begin(), conns_.end());
  for (Conn* c : all) close_conn(c);
}

void MetricsServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<MetricsServer*>(server->data);
  if (status < 0) {
    if (g_warn_limit.allow(uv_now(self->worker_.loop())))
      spdlog::warn("metrics: accept on {} failed: {}", self->address_, uv_strerror(status));
    return;
  }
  self->accept_one();
}

void MetricsServer::accept_one() {
  if (closed_) return;
  uv_loop_t* loop = worker_.loop();
  auto* c = new Conn;
  c->server = this;
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  conns_.insert(c);
  int rc = uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), reinterpret_cast<uv_stream_t*>(&c->tcp));
  if (rc != 0) {
    if (g_warn_limit.allow(uv_now(loop))) spdlog::warn("metrics: accept failed: {}", uv_strerror(rc));
    close_conn(c);
    return;
  }
  sockaddr_storage ss{};
  int len = sizeof ss;
  c->peer = uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0 ? sockaddr_text(ss) : "?";
  if (conns_.size() > kMaxConnections) {
    // Make room by closing the connection that has been silent longest
    // (idle peers must not lock scrapers out), else refuse the new one.
    Conn* oldest = nullptr;
    for (Conn* o : conns_)
      if (o != c && !o->closing && !o->responded && (!oldest || o->deadline_ms < oldest->deadline_ms)) oldest = o;
    if (g_warn_limit.allow(uv_now(loop)))
      spdlog::warn("metrics: more than {} connections open; closing the oldest idle one", kMaxConnections);
    if (!oldest) {
      close_conn(c);
      return;
    }
    close_conn(oldest);
  }
  c->deadline_ms = uv_now(loop) + kTimeoutMs;
  rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read);
  if (rc != 0) {
    close_conn(c);
    return;
  }
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_))) uv_timer_start(&timer_, on_timer, 1000, 1000);
}

void MetricsServer::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(h->data);
  buf->base = c->server->read_buf_;
  buf->len = sizeof c->server->read_buf_;
}

void MetricsServer::on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(s->data);
  if (c->closing || n == 0) return;
  MetricsServer* self = c->server;
  if (n < 0) {
    uv_read_stop(s);
    // Before the request is complete, or once the response is out: done.
    // Otherwise finish writing first.
    if (!c->responded || c->sent) self->close_conn(c);
    else c->peer_eof = true;
    return;
  }
  self->handle_data(c, buf->base, size_t(n));
}

void MetricsServer::handle_data(Conn* c, const char* data, size_t n) {
  if (c->responded) {
    // Discard what follows the request while the peer reads the response;
    // a peer that keeps sending a lot is not a scraper.
    c->discarded += n;
    if (c->discarded > 1024 * 1024) close_conn(c);
    return;
  }
  c->head.append(data, n);
  ParseResult parsed = parse_request_head(c->head, kMaxRequestHead);
  if (parsed.status == ParseStatus::need_more) return;
  const bool head_only = parsed.status == ParseStatus::ok && parsed.request.method == "HEAD";
  HttpResponse r;
  try {
    r = respond(parsed, worker_.shutting_down(), [this] {
      std::string text;
      worker_.hub().read_all(&worker_, [&] { text = render(worker_); });
      return text;
    });
  } catch (const std::exception& e) {
    // Never let a failure while rendering escape a libuv callback.
    spdlog::warn("metrics: cannot answer {}: {}", c->peer, e.what());
    r = HttpResponse{};
    r.status = 500;
    r.body = "internal error\n";
  }
  if (parsed.status != ParseStatus::ok) {
    if (g_warn_limit.allow(uv_now(worker_.loop())))
      spdlog::warn("metrics: invalid request from {}: {} {}", c->peer, r.status, reason_phrase(r.status));
  } else {
    spdlog::debug("metrics: {} {} {} -> {}", c->peer, parsed.request.method, parsed.request.target, r.status);
  }
  c->discarded = c->head.size() - std::min(c->head.size(), parsed.head_size);
  c->head.clear();
  c->head.shrink_to_fit();
  send(c, r, head_only);
}

void MetricsServer::send(Conn* c, const HttpResponse& r, bool head_only) {
  c->responded = true;
  c->response = serialize(r, head_only);
  c->deadline_ms = uv_now(worker_.loop()) + kTimeoutMs;
  c->write_req.data = c;
  uv_buf_t b = uv_buf_init(c->response.data(), static_cast<unsigned>(c->response.size()));
  if (uv_write(&c->write_req, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1, on_write) != 0) close_conn(c);
}

void MetricsServer::on_write(uv_write_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  if (c->closing) return;
  MetricsServer* self = c->server;
  c->response.clear();
  c->response.shrink_to_fit();
  if (status < 0) {
    spdlog::debug("metrics: write to {} failed: {}", c->peer, uv_strerror(status));
    self->close_conn(c);
    return;
  }
  // Half-close and wait for the peer to close: closing with unread request
  // bytes would reset the connection and could destroy the response
  // before the peer read it.
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, reinterpret_cast<uv_stream_t*>(&c->tcp), on_shutdown) != 0)
    self->close_conn(c);
}

void MetricsServer::on_shutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  if (c->closing) return;
  c->sent = true;
  if (status < 0 || c->peer_eof) c->server->close_conn(c);
}

void MetricsServer::close_conn(Conn* c) {
  if (c->closing) return;
  c->closing = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_conn_closed);
}

void MetricsServer::on_conn_closed(uv_handle_t* h) {
  auto* c = static_cast<Conn*>(h->data);
  MetricsServer* self = c->server;
  self->conns_.erase(c);
  delete c;
  if (self->conns_.empty() && !self->closed_) uv_timer_stop(&self->timer_);
}

void MetricsServer::on_timer(uv_timer_t* t) {
  auto* self = static_cast<MetricsServer*>(t->data);
  const uint64_t now = uv_now(self->worker_.loop());
  std::vector<Conn*> expired;
  for (Conn* c : self->conns_)
    if (!c->closing && now >= c->deadline_ms) expired.push_back(c);
  for (Conn* c : expired) {
    if (!c->responded && g_warn_limit.allow(now))
      spdlog::warn("metrics: no complete request from {} within {} s; closing", c->peer, kTimeoutMs / 1000);
    else
      spdlog::debug("metrics: closing {} (timeout)", c->peer);
    self->close_conn(c);
  }
}

}  // namespace pgmux::metrics
