// The Prometheus endpoint (`[admin] metrics_listen`), against a real
// PostgreSQL: pgbench through a transaction pool scraped while it runs and
// after (format, counters against what pgbench reports, gauges, SHOW STATS),
// routed backends, /health through a graceful shutdown, and HTTP abuse
// (garbage, oversized heads, slow and silent peers, many scrapers at once)
// that must not disturb pgmux.
//
// Every scrape goes through parse_exposition, a strict reader of the text
// format 0.0.4: HELP and TYPE before a family's samples and once, a family's
// samples together, `name{labels} value` lines with only the escapes the
// format defines, no duplicate series, and histogram buckets cumulative with
// +Inf last and equal to _count.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;

namespace {

// ---------------------------------------------------------------------------
// HTTP over a raw socket (IPv4 or IPv6), no assertions (thread-safe)

struct HttpReply {
  bool connected = false;
  bool closed = false;  // the server closed the connection (EOF or reset)
  std::string raw;
  int status = 0;  // 0: no parseable status line
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  double seconds = 0;  // until closed or timed out
};

int connect_to(const std::string& host, int port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (host.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) return -1;
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) return -1;
    len = sizeof *a;
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `request` (all of it, unless the server closes first) and reads
// until the server closes or `timeout` passes.
HttpReply http_raw(int port, std::string_view request, std::chrono::milliseconds timeout = 10s,
                   const std::string& host = "127.0.0.1") {
  HttpReply r;
  const auto t0 = Clock::now();
  int fd = connect_to(host, port);
  if (fd < 0) return r;
  r.connected = true;
  const auto deadline = t0 + timeout;
  size_t sent = 0;
  bool send_done = request.empty();
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, short(POLLIN | (send_done ? 0 : POLLOUT)), 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    if (!send_done && (p.revents & POLLOUT)) {
      ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) sent += size_t(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR) send_done = true;  // the server closed early
      if (sent == request.size()) send_done = true;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[16384];
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        r.raw.append(buf, size_t(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      r.closed = true;
      break;
    }
  }
  ::close(fd);
  r.seconds = seconds_since(t0);
  size_t end = r.raw.find("\r\n\r\n");
  if (r.raw.rfind("HTTP/1.1 ", 0) == 0 && r.raw.size() >= 12 && end != std::string::npos) {
    r.status = std::atoi(r.raw.substr(9, 3).c_str());
    size_t pos = r.raw.find("\r\n") + 2;
    while (pos < end) {
      size_t eol = r.raw.find("\r\n", pos);
      std::string line = r.raw.substr(pos, eol - pos);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        r.headers[name] = trim(line.substr(colon + 1));
      }
      pos = eol + 2;
    }
    r.body = r.raw.substr(end + 4);
  }
  return r;
}

HttpReply http_get(int port, std::string_view path, std::string_view method = "GET",
                   const std::string& host = "127.0.0.1") {
  return http_raw(port, std::string(method) + " " + std::string(path) + " HTTP/1.1\r\nHost: pgmux\r\nUser-Agent: it\r\n\r\n",
                  10s, host);
}

// ---------------------------------------------------------------------------
// Text exposition format 0.0.4, read strictly

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Scrape {
  bool ok = false;  // HTTP 200 with the exposition content type
  std::map<std::string, std::string> types;  // family -> counter | gauge | histogram
  std::set<std::string> helped;
  std::vector<Sample> samples;
  std::vector<std::string> errors;  // format violations

  bool matches(const Sample& s, const std::map<std::string, std::string>& want) const {
    for (const auto& [k, v] : want) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) return false;
    }
    return true;
  }
  std::vector<const Sample*> all(std::string_view name, const std::map<std::string, std::string>& want = {}) const {
    std::vector<const Sample*> out;
    for (const auto& s : samples)
      if (s.name == name && matches(s, want)) out.push_back(&s);
    return out;
  }
  double sum(std::string_view name, const std::map<std::string, std::string>& want = {}) const {
    double t = 0;
    for (const Sample* s : all(name, want)) t += s->value;
    return t;
  }
  // The value of the one sample that matches; nullopt when none or several.
  std::optional<double> one(std::string_view name, const std::map<std::string, std::string>& want = {}) const {
    auto v = all(name, want);
    if (v.size() != 1) return std::nullopt;
    return v[0]->value;
  }
};

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(n[i]);
    bool ok = std::isalpha(c) || c == '_' || c == ':' || (i > 0 && std::isdigit(c));
    if (!ok) return false;
  }
  return true;
}

std::optional<double> parse_float(std::string_view t) {
  if (t == "+Inf" || t == "Inf") return HUGE_VAL;
  if (t == "-Inf") return -HUGE_VAL;
  if (t == "NaN") return std::nan("");
  if (t.empty()) return std::nullopt;
  std::string s(t);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return v;
}

Scrape parse_exposition(const std::string& text) {
  Scrape sc;
  auto error = [&](const std::string& e) {
    if (sc.errors.size() < 20) sc.errors.push_back(e);
  };
  if (text.empty() || text.back() != '\n') error("the text does not end with a line feed");
  std::set<std::string> finished;  // families whose samples are over
  std::string current;             // family of the previous sample
  std::set<std::string> series;
  std::set<std::string> with_samples;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    const std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    const std::string where = "line " + std::to_string(line_no) + " \"" + line.substr(0, 120) + "\": ";
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::string kind = line.substr(0, 7);
      if (kind != "# HELP " && kind != "# TYPE ") continue;  // other comments are allowed
      size_t sp = line.find(' ', 7);
      std::string fam = line.substr(7, sp == std::string::npos ? std::string::npos : sp - 7);
      if (!valid_metric_name(fam)) error(where + "bad metric name");
      if (with_samples.count(fam)) error(where + "HELP/TYPE after samples of " + fam);
      if (kind == "# HELP ") {
        if (!sc.helped.insert(fam).second) error(where + "second HELP for " + fam);
      } else {
        std::string type = sp == std::string::npos ? "" : line.substr(sp + 1);
        static const std::set<std::string> types = {"counter", "gauge", "histogram", "summary", "untyped"};
        if (!types.count(type)) error(where + "unknown type");
        if (!sc.types.emplace(fam, type).second) error(where + "second TYPE for " + fam);
      }
      continue;
    }
    // name{labels} value
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!valid_metric_name(s.name)) {
      error(where + "bad metric name");
      continue;
    }
    bool bad = false;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (!bad) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        size_t eq = line.find('=', i);
        if (eq == std::string::npos) {
          bad = true;
          break;
        }
        std::string lname = line.substr(i, eq - i);
        if (!valid_metric_name(lname) || lname.find(':') != std::string::npos) bad = true;
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') {
          bad = true;
          break;
        }
        ++i;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            if (i >= line.size()) break;
            char e = line[i++];
            if (e == '\\') value += '\\';
            else if (e == '"') value += '"';
            else if (e == 'n') value += '\n';
            else bad = true;
          } else {
            value += c;
          }
        }
        if (!closed) bad = true;
        if (!s.labels.emplace(lname, value).second) bad = true;  // label twice
        if (i < line.size() && line[i] == ',') ++i;
        else if (i >= line.size() || line[i] != '}') bad = true;
      }
    }
    if (bad || i >= line.size() || line[i] != ' ') {
      error(where + "malformed sample");
      continue;
    }
    auto v = parse_float(std::string_view(line).substr(i + 1));
    if (!v) {
      error(where + "bad value (or a timestamp, which pgmux does not send)");
      continue;
    }
    s.value = *v;
    if (s.name.rfind("pgmux_", 0) != 0) error(where + "not prefixed pgmux_");
    // Which family the sample belongs to.
    std::string fam = s.name;
    for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (fam.size() > suffix.size() && fam.compare(fam.size() - suffix.size(), suffix.size(), suffix) == 0) {
        std::string base = fam.substr(0, fam.size() - suffix.size());
        auto t = sc.types.find(base);
        if (t != sc.types.end() && t->second == "histogram") {
          fam = base;
          break;
        }
      }
    }
    if (!sc.types.count(fam)) error(where + "no TYPE line before the samples of " + fam);
    if (!sc.helped.count(fam)) error(where + "no HELP line before the samples of " + fam);
    if (fam != current) {
      if (!current.empty()) finished.insert(current);
      if (finished.count(fam)) error(where + "samples of " + fam + " are not together");
      current = fam;
    }
    with_samples.insert(fam);
    std::string key = s.name + "{";
    for (const auto& [k, val] : s.labels) key += k + "=" + val + ",";
    if (!series.insert(key).second) error(where + "duplicate series");
    auto t = sc.types.find(fam);
    if (t != sc.types.end() && t->second == "counter" && (s.value < 0 || std::isnan(s.value)))
      error(where + "negative counter");
    sc.samples.push_back(std::move(s));
  }

  // Histograms: per series, buckets in increasing le, cumulative, +Inf last
  // and equal to _count; _sum present.
  for (const auto& [fam, type] : sc.types) {
    if (type != "histogram") continue;
    std::map<std::string, std::vector<const Sample*>> buckets;  // labels without le
    std::map<std::string, const Sample*> counts, sums;
    auto key_of = [](const Sample& s) {
      std::string k;
      for (const auto& [n, v] : s.labels)
        if (n != "le") k += n + "=" + v + ",";
      return k;
    };
    for (const auto& s : sc.samples) {
      if (s.name == fam + "_bucket") {
        if (!s.labels.count("le")) error(fam + ": bucket without le");
        buckets[key_of(s)].push_back(&s);
      } else if (s.name == fam + "_count") {
        counts[key_of(s)] = &s;
      } else if (s.name == fam + "_sum") {
        sums[key_of(s)] = &s;
      }
    }
    for (const auto& [k, bs] : buckets) {
      const std::string what = fam + "{" + k + "}: ";
      double prev_le = -HUGE_VAL, prev_count = 0;
      for (const Sample* b : bs) {
        auto le = parse_float(b->labels.count("le") ? b->labels.at("le") : "");
        if (!le) {
          error(what + "bad le");
          continue;
        }
        if (*le <= prev_le) error(what + "le not increasing at " + b->labels.at("le"));
        if (b->value < prev_count) error(what + "buckets not cumulative at le=" + b->labels.at("le"));
        prev_le = *le;
        prev_count = b->value;
      }
      if (bs.empty() || bs.back()->labels.at("le") != "+Inf") error(what + "last bucket is not +Inf");
      if (!counts.count(k)) error(what + "no _count");
      else if (!bs.empty() && counts.at(k)->value != bs.back()->value) error(what + "+Inf bucket != _count");
      if (!sums.count(k)) error(what + "no _sum");
    }
    if (buckets.size() != counts.size() || buckets.size() != sums.size()) error(fam + ": _count/_sum without buckets");
  }
  return sc;
}

Scrape scrape(int port) {
  HttpReply r = http_get(port, "/metrics");
  Scrape sc;
  if (r.status != 200) {
    sc.errors.push_back("GET /metrics: status " + std::to_string(r.status) + ", raw: " + r.raw.substr(0, 200));
    return sc;
  }
  sc = parse_exposition(r.body);
  sc.ok = true;
  if (r.headers["content-type"] != "text/plain; version=0.0.4; charset=utf-8")
    sc.errors.push_back("content type " + r.headers["content-type"]);
  if (r.headers["content-length"] != std::to_string(r.body.size()))
    sc.errors.push_back("content length " + r.headers["content-length"] + " for a body of " +
                        std::to_string(r.body.size()));
  return sc;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

// Transaction pooling, SCRAM, the fixture's userlist plus an admin, and the
// metrics endpoint on `mport`.
PgmuxConfig metrics_config(int mport, std::string extra_pgmux, std::string dbs,
                           std::string_view listen_host = "127.0.0.1") {
  PgmuxConfig c;
  c.pgmux = "pool_mode = \"transaction\"\n" + extra_pgmux;
  std::string host(listen_host);
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  c.rest = auth_section("scram-sha-256") + "\n" + dbs + "\n[admin]\nusers = [\"admin\"]\nmetrics_listen = \"" + host +
           ":" + std::to_string(mport) + "\"\n";
  c.userlist = plaintext_userlist() + userlist_line("admin", "admin_pw");
  return c;
}

// The metrics listener is bound right after the SQL listeners.
bool wait_metrics(int mport, const std::string& host = "127.0.0.1") {
  return wait_until([&] { return http_get(mport, "/health", "GET", host).status == 200; }, 5s, 20ms);
}

long processed_transactions(const std::string& pgbench_output) {
  const std::string marker = "number of transactions actually processed: ";
  size_t p = pgbench_output.find(marker);
  if (p == std::string::npos) return -1;
  return std::atol(pgbench_output.c_str() + p + marker.size());
}

bool ipv6_loopback() {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

// ---------------------------------------------------------------------------
// 1. pgbench through a transaction pool of 5, scraped while it runs and
//    after; the counters against pgbench's own count and SHOW STATS.

TEST_CASE("metrics: pgbench through a transaction pool, scraped while it runs", "[metrics][pgbench]") {
  const auto& fx = fixture();
  ScratchDatabase db("metrics");
  db.pgbench_init();
  const int mport = free_port();
  Pgmux mux(metrics_config(mport, "default_pool_size = 5\n",
                           database_section("bench", "dbname = \"" + db.name() + "\"\n")));
  REQUIRE(wait_metrics(mport));
  const std::map<std::string, std::string> bench = {{"database", "bench"}};

  // Before any traffic: the process metrics, no pool yet.
  {
    Scrape s = scrape(mport);
    INFO(joined(s.errors));
    REQUIRE(s.ok);
    CHECK(s.errors.empty());
    CHECK(s.one("pgmux_up") == 1.0);
    REQUIRE(s.all("pgmux_info").size() == 1);
    CHECK_FALSE(s.all("pgmux_info")[0]->labels.at("version").empty());
    CHECK(s.one("pgmux_client_connections") == 0.0);
    CHECK(s.one("pgmux_shutting_down") == 0.0);
    CHECK(s.all("pgmux_transactions_total").empty());
  }

  const int clients = 10;
  ProcessResult rr;
  std::atomic<bool> done{false};
  std::thread runner([&] {
    rr = pgbench_through(mux, "bench", {"-M", "simple", "-c", std::to_string(clients), "-j", "2", "-T", "3", "-n"},
                         40s);
    done = true;
  });

  // Scrapes while pgbench runs: every one well-formed, the gauges within
  // the limits, the counters never going back.
  int during = 0;
  std::vector<std::string> errors;
  double last_xact = 0;
  double max_servers = 0, max_clients = 0, max_pool_clients = 0, max_busy = 0, max_db_clients = 0;
  while (!done) {
    Scrape s = scrape(mport);
    if (done) break;  // only count scrapes entirely inside the run
    ++during;
    for (const auto& e : s.errors) errors.push_back("scrape " + std::to_string(during) + ": " + e);
    const double xact = s.sum("pgmux_transactions_total", bench);
    if (xact < last_xact) errors.push_back("pgmux_transactions_total went back");
    last_xact = xact;
    max_servers = std::max(max_servers, s.sum("pgmux_pool_server_connections", bench));
    max_busy = std::max(max_busy, s.sum("pgmux_pool_server_connections",
                                        {{"database", "bench"}, {"state", "active"}}));
    max_pool_clients = std::max(max_pool_clients, s.sum("pgmux_pool_client_connections", bench));
    max_clients = std::max(max_clients, s.one("pgmux_client_connections").value_or(-1));
    max_db_clients = std::max(max_db_clients, s.one("pgmux_database_client_connections", bench).value_or(-1));
    std::this_thread::sleep_for(100ms);
  }
  runner.join();
  INFO("pgbench output:\n" << rr.output);
  REQUIRE(rr.exit_code == 0);
  CHECK_THAT(rr.output, Contains("number of failed transactions: 0 ("));
  const long processed = processed_transactions(rr.output);
  REQUIRE(processed > 0);

  INFO("format errors while pgbench ran:\n" << joined(errors));
  CHECK(errors.empty());
  CHECK(during >= 3);
  CHECK(last_xact > 0);               // scrapes saw the work in progress
  CHECK(last_xact <= processed + 50);
  CHECK(max_servers <= 5);            // default_pool_size
  CHECK(max_busy >= 1);
  CHECK(max_clients <= clients + 1);  // pgbench's own setup connection at the start
  CHECK(max_clients >= 1);
  CHECK(max_pool_clients <= clients + 1);
  CHECK(max_db_clients >= 1);
  CHECK(max_db_clients <= clients + 1);

  // After the run, once pgbench's connections are gone.
  REQUIRE(wait_until([&] { return scrape(mport).one("pgmux_client_connections") == 0.0; }, 5s));
  Scrape s = scrape(mport);
  INFO(joined(s.errors));
  REQUIRE(s.ok);
  CHECK(s.errors.empty());
  const double xact = s.sum("pgmux_transactions_total", bench);
  const double queries = s.sum("pgmux_queries_total", bench);
  INFO("pgbench processed " << processed << "; pgmux_transactions_total " << xact << ", pgmux_queries_total "
                            << queries);
  // pgbench counts only the transactions of its script; pgmux also saw its
  // setup queries (scale and partition lookups, each its own transaction)
  // and any transaction the -T deadline cut short.
  CHECK(xact >= double(processed));
  CHECK(xact <= double(processed + clients + 10));
  // tpcb-like: BEGIN, 3 UPDATE, SELECT, INSERT, END.
  CHECK(queries >= 7.0 * double(processed));
  CHECK(queries <= 7.0 * double(processed + clients + 10));
  CHECK(s.sum("pgmux_received_bytes_total", bench) > 100.0 * double(processed));
  CHECK(s.sum("pgmux_sent_bytes_total", bench) > 100.0 * double(processed));
  CHECK(s.sum("pgmux_server_errors_total", bench) == 0.0);
  // Histograms agree with the counters they summarize.
  CHECK(s.sum("pgmux_transaction_duration_seconds_count", bench) == xact);
  CHECK(s.sum("pgmux_query_duration_seconds_count", bench) == queries);
  CHECK(s.sum("pgmux_transaction_duration_seconds_sum", bench) ==
        Approx(s.sum("pgmux_transaction_time_seconds_total", bench)).epsilon(1e-9));
  CHECK(s.sum("pgmux_query_duration_seconds_sum", bench) ==
        Approx(s.sum("pgmux_query_time_seconds_total", bench)).epsilon(1e-9));
  CHECK(s.sum("pgmux_wait_duration_seconds_sum", bench) ==
        Approx(s.sum("pgmux_wait_time_seconds_total", bench)).epsilon(1e-9).margin(1e-9));
  CHECK(s.sum("pgmux_wait_duration_seconds_count", bench) >= xact);  // one wait per transaction at least
  CHECK(s.sum("pgmux_transaction_time_seconds_total", bench) > 0);
  CHECK(s.sum("pgmux_query_time_seconds_total", bench) <= s.sum("pgmux_transaction_time_seconds_total", bench) + 1);
  // The pool's labels and gauges at rest.
  auto pool_size = s.all("pgmux_pool_size", bench);
  REQUIRE(pool_size.size() == 1);
  CHECK(pool_size[0]->value == 5);
  CHECK(pool_size[0]->labels.at("user") == "scram_user");
  CHECK(pool_size[0]->labels.at("role") == "primary");
  CHECK(pool_size[0]->labels.at("backend") == fx.pg_host + ":" + std::to_string(fx.pg_port));
  CHECK(s.one("pgmux_pool_server_connections", {{"database", "bench"}, {"state", "active"}}) == 0.0);
  const double idle = s.one("pgmux_pool_server_connections", {{"database", "bench"}, {"state", "idle"}}).value_or(-1);
  CHECK(idle >= 1);
  CHECK(idle <= 5);
  CHECK(s.one("pgmux_pool_client_connections", {{"database", "bench"}, {"state", "active"}}) == 0.0);
  CHECK(s.one("pgmux_pool_client_connections", {{"database", "bench"}, {"state", "waiting"}}) == 0.0);
  CHECK(s.one("pgmux_pool_max_wait_seconds", bench) == 0.0);
  CHECK(s.one("pgmux_server_connections", {{"state", "idle"}}) == idle);
  CHECK(s.sum("pgmux_clients_by_state") == 0.0);
  CHECK(s.one("pgmux_database_client_connections", bench) == 0.0);
  CHECK(s.one("pgmux_database_max_client_connections", bench) == 0.0);

  // The admin console tells the same story (SHOW STATS / SHOW POOLS).
  {
    Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
    Result stats(PQexec(admin.get(), "SHOW STATS"));
    REQUIRE(PQresultStatus(stats.get()) == PGRES_TUPLES_OK);
    auto col = [&](PGresult* r, const char* name) { return PQfnumber(r, name); };
    int row = -1;
    for (int i = 0; i < PQntuples(stats.get()); ++i)
      if (std::string(PQgetvalue(stats.get(), i, col(stats.get(), "database"))) == "bench") row = i;
    REQUIRE(row >= 0);
    auto num = [&](PGresult* r, const char* name) { return std::atof(PQgetvalue(r, row, col(r, name))); };
    CHECK(num(stats.get(), "total_xact_count") == xact);
    CHECK(num(stats.get(), "total_query_count") == queries);
    CHECK(num(stats.get(), "total_received") == s.sum("pgmux_received_bytes_total", bench));
    CHECK(num(stats.get(), "total_sent") == s.sum("pgmux_sent_bytes_total", bench));
    // PgBouncer reports times in microseconds.
    CHECK(num(stats.get(), "total_xact_time") ==
          Approx(s.sum("pgmux_transaction_time_seconds_total", bench) * 1e6).margin(1));
    CHECK(num(stats.get(), "total_query_time") ==
          Approx(s.sum("pgmux_query_time_seconds_total", bench) * 1e6).margin(1));
    CHECK(num(stats.get(), "total_wait_time") ==
          Approx(s.sum("pgmux_wait_time_seconds_total", bench) * 1e6).margin(1));

    Result pools(PQexec(admin.get(), "SHOW POOLS"));
    REQUIRE(PQresultStatus(pools.get()) == PGRES_TUPLES_OK);
    row = -1;
    for (int i = 0; i < PQntuples(pools.get()); ++i)
      if (std::string(PQgetvalue(pools.get(), i, col(pools.get(), "database"))) == "bench") row = i;
    REQUIRE(row >= 0);
    Scrape now = scrape(mport);
    CHECK(num(pools.get(), "sv_idle") ==
          now.one("pgmux_pool_server_connections", {{"database", "bench"}, {"state", "idle"}}));
    CHECK(num(pools.get(), "sv_active") == 0.0);
    CHECK(num(pools.get(), "cl_active") ==
          now.one("pgmux_pool_client_connections", {{"database", "bench"}, {"state", "active"}}));
    // The admin console's own connection is a client like any other.
    CHECK(now.sum("pgmux_clients_by_state") >= 1.0);
  }

  // A client in a transaction: active client and server of the pool.
  {
    Conn c = connect(mux.conninfo("bench", "scram_user", "scram_pw"));
    exec(c.get(), "BEGIN");
    exec(c.get(), "SELECT 1");
    Scrape busy = scrape(mport);
    CHECK(busy.errors.empty());
    CHECK(busy.one("pgmux_pool_client_connections", {{"database", "bench"}, {"state", "active"}}) == 1.0);
    CHECK(busy.one("pgmux_pool_server_connections", {{"database", "bench"}, {"state", "active"}}) == 1.0);
    CHECK(busy.one("pgmux_clients_by_state", {{"state", "linked"}}) == 1.0);
    CHECK(busy.one("pgmux_server_connections", {{"state", "linked"}}) == 1.0);
    exec(c.get(), "COMMIT");
    Scrape after = scrape(mport);
    CHECK(after.sum("pgmux_transactions_total", bench) == xact + 1);
    CHECK(after.sum("pgmux_queries_total", bench) == queries + 3);
    CHECK(after.one("pgmux_pool_server_connections", {{"database", "bench"}, {"state", "active"}}) == 0.0);
  }
  // Named prepared statements: each is prepared once per server (a miss),
  // every later Bind on a server that has it is a hit.
  {
    Scrape before = scrape(mport);
    CHECK(before.sum("pgmux_prepared_statements_total", bench) == 0.0);
    auto pr = pgbench_through(mux, "bench", {"-M", "prepared", "-c", "10", "-j", "2", "-t", "50", "-n"});
    INFO(pr.output);
    REQUIRE(pr.exit_code == 0);
    Scrape s = scrape(mport);
    const double hits = s.sum("pgmux_prepared_statements_total", {{"database", "bench"}, {"result", "hit"}});
    const double misses = s.sum("pgmux_prepared_statements_total", {{"database", "bench"}, {"result", "miss"}});
    INFO("hits " << hits << " misses " << misses);
    // tpcb-like: 7 statements, 10 clients x 50 transactions, at most 5
    // servers. Each Bind counts once, and so does each Parse pgmux did not
    // answer without a server.
    CHECK(hits + misses >= 7.0 * 10 * 50);
    CHECK(hits + misses <= 7.0 * 10 + 7.0 * 10 * 50);
    CHECK(misses >= 7.0);
    CHECK(misses <= 7.0 * 5);
  }
  CHECK(http_get(mport, "/health").status == 200);
  mux.finish();
}

// ---------------------------------------------------------------------------
// 2. HTTP: status codes, HEAD, and abuse that must not disturb pgmux.

TEST_CASE("metrics: HTTP errors, garbage, oversized and slow requests leave pgmux serving", "[metrics]") {
  const int mport = free_port();
  // A database whose name needs escaping in a label value.
  const std::string odd = "odd\"na\\me";
  Pgmux mux(metrics_config(mport, "",
                           database_section("app") + "\n[databases.\"odd\\\"na\\\\me\"]\nhost = \"@PG_HOST@\"\n"
                                                     "port = @PG_PORT@\ndbname = \"app\"\n"));
  REQUIRE(wait_metrics(mport));
  const auto t_start = Clock::now();

  // Started first, checked last: a peer that never finishes its request and
  // one that sends nothing are closed after the 10 s timeout.
  const int slow = connect_to("127.0.0.1", mport);
  const int silent = connect_to("127.0.0.1", mport);
  REQUIRE(slow >= 0);
  REQUIRE(silent >= 0);
  const std::string partial = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  REQUIRE(::send(slow, partial.data(), partial.size(), MSG_NOSIGNAL) == ssize_t(partial.size()));

  // Status codes.
  auto health = http_get(mport, "/health");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  CHECK(health.closed);
  CHECK(health.headers["connection"] == "close");
  auto nf = http_get(mport, "/nope");
  CHECK(nf.status == 404);
  CHECK(nf.closed);
  auto post = http_raw(mport, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  CHECK(post.status == 405);
  CHECK(post.headers["allow"] == "GET, HEAD");
  CHECK(post.closed);
  CHECK(http_get(mport, "/metrics", "PUT").status == 405);
  CHECK(http_get(mport, "/health", "DELETE").status == 405);
  // HEAD: the headers of GET, no body.
  auto head = http_get(mport, "/metrics", "HEAD");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(std::atol(head.headers["content-length"].c_str()) > 100);
  CHECK(head.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8");
  auto head_health = http_get(mport, "/health", "HEAD");
  CHECK(head_health.status == 200);
  CHECK(head_health.body.empty());
  CHECK(head_health.headers["content-length"] == "3");
  // A query string is not part of the path; HTTP/1.0 works.
  CHECK(http_raw(mport, "GET /metrics?x=1 HTTP/1.0\r\n\r\n").status == 200);

  // Garbage: a PostgreSQL startup packet (someone pointed psql at the wrong
  // port), a TLS ClientHello start, binary noise; HTTP/2's preface.
  using namespace std::string_literals;
  for (const std::string& g : {"\x00\x00\x00\x08\x04\xd2\x16\x2f"s, "\x16\x03\x01\x02\x00\x01\x00"s,
                               "\xff\xfe\x00\x01garbage\r\n\r\n"s, "hello\r\n\r\n"s}) {
    auto r = http_raw(mport, g, 5s);
    CHECK(r.status == 400);
    CHECK(r.closed);
    CHECK(r.seconds < 3);
  }
  auto h2 = http_raw(mport, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 5s);
  CHECK(h2.status == 505);
  CHECK(h2.closed);
  // Oversized heads: one huge header, a request line that never ends, many
  // header lines.
  auto big = http_raw(mport, "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n", 5s);
  CHECK(big.status == 431);
  CHECK(big.closed);
  auto endless = http_raw(mport, "GET /" + std::string(100000, 'a'), 5s);
  CHECK(endless.status == 431);
  CHECK(endless.closed);
  std::string many = "GET /metrics HTTP/1.1\r\n";
  for (int i = 0; i < 200; ++i) many += "X-" + std::to_string(i) + ": y\r\n";
  auto lots = http_raw(mport, many + "\r\n", 5s);
  CHECK(lots.status == 431);
  CHECK(lots.closed);
  // Bytes after the request (an unexpected body) do not spoil the answer.
  auto trailing = http_raw(mport, "GET /health HTTP/1.1\r\n\r\n" + std::string(200000, 'z'), 5s);
  CHECK(trailing.status == 200);
  CHECK(trailing.body == "ok\n");
  CHECK(trailing.closed);

  // Many scrapers at once (more than the server keeps open at a time, with
  // the two idle peers still holding their slots).
  {
    constexpr int kScrapers = 40;
    std::vector<HttpReply> replies(kScrapers);
    std::vector<std::thread> threads;
    for (int i = 0; i < kScrapers; ++i)
      threads.emplace_back([&, i] { replies[size_t(i)] = http_get(mport, i % 2 ? "/metrics" : "/health"); });
    for (auto& t : threads) t.join();
    int ok = 0;
    for (const auto& r : replies) ok += r.status == 200 && r.closed;
    CHECK(ok == kScrapers);
    for (int i = 1; i < kScrapers; i += 2) CHECK(parse_exposition(replies[size_t(i)].body).errors.empty());
  }

  // pgmux itself is unaffected.
  {
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(c.get(), "SELECT 40 + 2") == "42");
    Conn o = connect(mux.conninfo(odd, "scram_user", "scram_pw"));
    CHECK(scalar(o.get(), "SELECT 1") == "1");
  }
  Scrape s = scrape(mport);
  INFO(joined(s.errors));
  CHECK(s.errors.empty());
  // The strict reader undid the escapes: the label is the name as written.
  CHECK(s.one("pgmux_transactions_total", {{"database", odd}}) == 1.0);
  CHECK(s.one("pgmux_up") == 1.0);
  CHECK(s.sum("pgmux_queries_total", {{"database", "app"}}) >= 1.0);

  // The slow and the silent peer: closed by the timeout, not before.
  for (int fd : {slow, silent}) {
    pollfd p{fd, POLLIN, 0};
    std::string got;
    bool closed = false;
    while (!closed && seconds_since(t_start) < 20) {
      if (::poll(&p, 1, 500) <= 0) continue;
      char buf[512];
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) got.append(buf, size_t(n));
      else closed = true;
    }
    const double t = seconds_since(t_start);
    CHECK(closed);
    CHECK(t >= 9.0);
    CHECK(t < 15.0);
    CHECK(got.empty());  // no answer to an incomplete request
    ::close(fd);
  }
  CHECK(http_get(mport, "/health").status == 200);
  CHECK_THAT(mux.log_text(), Contains("metrics listening on http://127.0.0.1:" + std::to_string(mport)));
  CHECK_THAT(mux.log_text(), Contains("metrics: invalid request"));
  mux.finish();
}

// ---------------------------------------------------------------------------
// 3. /health is the readiness probe: 503 once a graceful shutdown started,
//    while /metrics still answers.

TEST_CASE("metrics: /health answers 503 during a graceful shutdown", "[metrics]") {
  const int mport = free_port();
  Pgmux mux(metrics_config(mport, "shutdown_timeout = \"20s\"\n", database_section("app")));
  REQUIRE(wait_metrics(mport));
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  exec(c.get(), "BEGIN");
  exec(c.get(), "SELECT 1");
  mux.signal(SIGTERM);
  REQUIRE(wait_until([&] { return http_get(mport, "/health").status == 503; }, 5s));
  auto h = http_get(mport, "/health");
  CHECK(h.status == 503);
  CHECK(h.body == "shutting down\n");
  auto hh = http_get(mport, "/health", "HEAD");
  CHECK(hh.status == 503);
  CHECK(hh.body.empty());
  Scrape s = scrape(mport);
  CHECK(s.errors.empty());
  CHECK(s.one("pgmux_shutting_down") == 1.0);
  CHECK(s.one("pgmux_up") == 1.0);
  CHECK(s.one("pgmux_pool_server_connections", {{"database", "app"}, {"state", "active"}}) == 1.0);
  // The transaction finishes; then pgmux ends, and the endpoint with it.
  exec(c.get(), "COMMIT");
  c.reset();
  REQUIRE(wait_until([&] { return !mux.alive(); }, 10s));
  CHECK_FALSE(http_get(mport, "/health").connected);
  const int status = mux.stop();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  mux.expect_clean_log();
}

// With two workers each has its own pool of a key: one series, their sum.
TEST_CASE("metrics: two workers' pools of one key are one series, their sum", "[metrics][workers]") {
  const int mport = free_port();
  Pgmux mux(metrics_config(mport, "workers = 2\n", database_section("app")));
  REQUIRE(wait_metrics(mport));
  Conn a = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  Conn b = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  for (PGconn* c : {a.get(), b.get()}) {
    exec(c, "BEGIN");
    exec(c, "SELECT 1");
  }
  Scrape busy = scrape(mport);
  INFO(joined(busy.errors));
  CHECK(busy.errors.empty());
  CHECK(busy.one("pgmux_pool_server_connections", {{"database", "app"}, {"state", "active"}}) == 2.0);
  CHECK(busy.one("pgmux_pool_client_connections", {{"database", "app"}, {"state", "active"}}) == 2.0);
  CHECK(busy.one("pgmux_client_connections") == 2.0);
  CHECK(busy.one("pgmux_clients_by_state", {{"state", "linked"}}) == 2.0);
  for (PGconn* c : {a.get(), b.get()}) exec(c, "COMMIT");
  Scrape after = scrape(mport);
  CHECK(after.errors.empty());
  CHECK(after.one("pgmux_transactions_total", {{"database", "app"}}) == 2.0);
  CHECK(after.one("pgmux_pool_server_connections", {{"database", "app"}, {"state", "idle"}}) == 2.0);
  // Both workers did have a pool (SHOW POOLS has a row for each).
  Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  Result pools(PQexec(admin.get(), "SHOW POOLS"));
  REQUIRE(PQresultStatus(pools.get()) == PGRES_TUPLES_OK);
  CHECK(PQntuples(pools.get()) == 2);
  a.reset();
  b.reset();
  admin.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// 4. A routed database: backends, roles, lag; pools labelled by role.

TEST_CASE("metrics: routed databases report their backends", "[metrics][routing]") {
  const auto& fx = fixture();
  REQUIRE(fx.replica_port != 0);  // pg_fixture.sh start DIR --replica (ctest's fixture has one)
  const int mport = free_port();
  std::string db = "[databases.ro]\nhost = \"127.0.0.1\"\nport = @PG_PORT@\ndbname = \"app\"\n"
                   "replicas = [\"127.0.0.1:@REPLICA_PORT@\"]\nread_routing = \"auto\"\n"
                   "health_check_interval = \"200ms\"\nhealth_check_timeout = \"1s\"\n"
                   "health_check_user = \"scram_user\"\n";
  Pgmux mux(metrics_config(mport, "default_pool_size = 3\n", db));
  REQUIRE(wait_metrics(mport));
  const std::string primary = "127.0.0.1:" + std::to_string(fx.pg_port);
  const std::string replica = "127.0.0.1:" + std::to_string(fx.replica_port);
  const std::map<std::string, std::string> p = {{"database", "ro"}, {"backend", primary}};
  const std::map<std::string, std::string> r = {{"database", "ro"}, {"backend", replica}};
  Scrape s;
  REQUIRE(wait_until(
      [&] {
        s = scrape(mport);
        return s.one("pgmux_backend_up", p) == 1.0 && s.one("pgmux_backend_up", r) == 1.0 &&
               s.one("pgmux_backend_replay_lag_seconds", r).has_value() &&
               s.one("pgmux_backend_replay_lag_bytes", r).has_value();
      },
      10s, 100ms));
  INFO(joined(s.errors));
  CHECK(s.errors.empty());
  auto role = [&](const std::map<std::string, std::string>& b, const char* name) {
    auto l = b;
    l["role"] = name;
    return s.one("pgmux_backend_role", l);
  };
  CHECK(role(p, "primary") == 1.0);
  CHECK(role(p, "replica") == 0.0);
  CHECK(role(p, "unknown") == 0.0);
  CHECK(role(r, "replica") == 1.0);
  CHECK(role(r, "primary") == 0.0);
  CHECK(s.one("pgmux_backend_is_writer", p) == 1.0);
  CHECK(s.one("pgmux_backend_is_writer", r) == 0.0);
  CHECK(s.one("pgmux_backend_replay_lag_seconds", r).value_or(-1) >= 0.0);
  CHECK_FALSE(s.one("pgmux_backend_replay_lag_seconds", p).has_value());  // a primary has no replay lag
  CHECK(s.one("pgmux_backend_wal_position_bytes", p).value_or(0) > 0.0);
  CHECK(s.one("pgmux_database_split_brain", {{"database", "ro"}}) == 0.0);
  CHECK(s.one("pgmux_backend_replay_lag_bytes", r).value_or(-1) >= 0.0);
  CHECK_FALSE(s.one("pgmux_backend_replay_lag_bytes", p).has_value());

  // A read goes to the replica, a write to the primary: the pools carry
  // their backend and role; the health checkers' pools are not reported.
  {
    Conn c = connect(mux.conninfo("ro", "scram_user", "scram_pw"));
    CHECK(wait_until(
        [&] {
          auto q = try_exec(c.get(), "SELECT pg_is_in_recovery()");
          return q.ok && q.rows.size() == 1 && q.rows[0][0] == "t";
        },
        5s, 50ms));
    exec(c.get(), "BEGIN");
    CHECK(scalar(c.get(), "SELECT pg_is_in_recovery()") == "f");
    exec(c.get(), "COMMIT");
  }
  s = scrape(mport);
  CHECK(s.errors.empty());
  auto rq = s.all("pgmux_queries_total", {{"database", "ro"}, {"backend", replica}});
  REQUIRE(rq.size() == 1);
  CHECK(rq[0]->labels.at("role") == "replica");
  CHECK(rq[0]->value >= 1.0);
  auto pq = s.all("pgmux_queries_total", {{"database", "ro"}, {"backend", primary}});
  REQUIRE(pq.size() == 1);
  CHECK(pq[0]->labels.at("role") == "primary");
  CHECK(pq[0]->value >= 3.0);
  CHECK(s.all("pgmux_pool_size", {{"database", "ro"}}).size() == 2);
  // The checkers' connections are in the process-wide count.
  CHECK(s.sum("pgmux_server_connections") >= 2.0);
  mux.finish();
}

// ---------------------------------------------------------------------------
// 5. Listen addresses: IPv6, and a port that cannot be bound stops pgmux.

TEST_CASE("metrics: IPv6 listen address, and a busy port refuses to start", "[metrics]") {
  if (ipv6_loopback()) {
    const int mport = free_port();
    Pgmux mux(metrics_config(mport, "", database_section("app"), "::1"));
    REQUIRE(wait_metrics(mport, "::1"));
    auto r = http_get(mport, "/metrics", "GET", "::1");
    CHECK(r.status == 200);
    CHECK(parse_exposition(r.body).errors.empty());
    CHECK_THAT(mux.log_text(), Contains("metrics listening on http://[::1]:" + std::to_string(mport)));
    mux.finish();
  } else {
    WARN("no IPv6 loopback here: the IPv6 part is skipped");
  }

  // The metrics port is taken: pgmux says so and exits 1.
  TempDir dir;
  int busy = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(busy >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(busy, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(busy, 1) == 0);
  REQUIRE(::getsockname(busy, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  const int busy_port = ntohs(a.sin_port);
  const auto& fx = fixture();
  const std::string cfg = dir.file("pgmux.toml");
  const std::string base = "[pgmux]\nlisten = [\"127.0.0.1:" + std::to_string(free_port()) +
                           "\"]\n[auth]\ntype = \"trust\"\n[databases.app]\nhost = \"" + fx.pg_host +
                           "\"\nport = " + std::to_string(fx.pg_port) + "\n[admin]\n";
  write_file(cfg, base + "metrics_listen = \"127.0.0.1:" + std::to_string(busy_port) + "\"\n");
  auto chk = run_process({pgmux_bin(), "--config", cfg, "--check"}, {}, 10s);
  INFO(chk.output);
  CHECK(chk.exit_code == 0);  // metrics_listen is accepted now
  auto res = run_process({pgmux_bin(), "--config", cfg}, {}, 10s);
  INFO(res.output);
  CHECK_FALSE(res.timed_out);
  CHECK(res.exit_code == 1);
  CHECK_THAT(res.output, Contains("cannot listen on 127.0.0.1:" + std::to_string(busy_port) + " (metrics)"));
  ::close(busy);
  // A malformed address is a configuration error.
  write_file(cfg, base + "metrics_listen = \"localhost\"\n");
  auto bad = run_process({pgmux_bin(), "--config", cfg, "--check"}, {}, 10s);
  INFO(bad.output);
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.output, Contains("metrics_listen"));
}

// A Bind that waits for pgmux's check of its statement's result type (the
// server copy went, here by eviction, and is prepared and described again)
// counts once, when it first comes.
TEST_CASE("metrics: a Bind that waits for a result-type check counts once", "[metrics]") {
  const int mport = free_port();
  Pgmux mux(metrics_config(mport, "default_pool_size = 1\nmax_prepared_statements = 1\n",
                           database_section("app")));
  REQUIRE(wait_metrics(mport));
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  { Result r(PQprepare(c.get(), "s", "SELECT 1 AS a", 0, nullptr)); REQUIRE(PQresultStatus(r.get()) == PGRES_COMMAND_OK); }
  { Result d(PQdescribePrepared(c.get(), "s")); REQUIRE(PQnfields(d.get()) == 1); }
  // Another statement takes the one place on the server: s's copy goes.
  { Result r(PQprepare(c.get(), "s2", "SELECT 2 AS b", 0, nullptr)); REQUIRE(PQresultStatus(r.get()) == PGRES_COMMAND_OK); }
  Scrape before = scrape(mport);
  const std::map<std::string, std::string> hit = {{"database", "app"}, {"result", "hit"}};
  const std::map<std::string, std::string> miss = {{"database", "app"}, {"result", "miss"}};
  const double hits = before.sum("pgmux_prepared_statements_total", hit);
  const double misses = before.sum("pgmux_prepared_statements_total", miss);
  Result r(PQexecPrepared(c.get(), "s", 0, nullptr, nullptr, nullptr, 0));
  REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
  CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == "1");
  Scrape after = scrape(mport);
  CHECK(after.sum("pgmux_prepared_statements_total", miss) == misses + 1);
  CHECK(after.sum("pgmux_prepared_statements_total", hit) == hits);
  c.reset();
  mux.finish();
}
