// Prometheus metrics endpoint: `[admin] metrics_listen = "host:port"` serves
// the text exposition format (version 0.0.4) on GET /metrics and a
// liveness/readiness probe on GET /health, from a small HTTP/1.1 server on
// the worker's loop (plain libuv TCP, no dependency).
//
// The server answers one request per connection and closes it
// (`Connection: close`): scrapes are seconds apart, so keep-alive buys
// nothing and every connection's life is bounded. Untrusted input is
// bounded too: the request head is capped (431), anything that is not a
// well-formed HTTP/1.x request head gets 400, a peer that is slow or idle is
// closed after a timeout, and the number of concurrent connections is
// capped. Nothing here can block the loop or end the process.
//
// The pieces that do not need a socket (label escaping, value and histogram
// formatting, request-head parsing, routing) are pure functions, unit-tested
// in tests/unit/metrics.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "pool/pool.hpp"

namespace pgmux {

class Worker;

namespace metrics {

// ---------------------------------------------------------------------------
// Exposition format

// A label value escaped for the text format: backslash, double quote and
// line feed become \\, \" and \n.
std::string escape_label_value(std::string_view v);
// `name="value",name2="value2"` (values escaped), no braces.
std::string labels(std::initializer_list<std::pair<std::string_view, std::string_view>> kv);
// A sample value: integers exactly, others in the shortest form that reads
// back the same; +Inf, -Inf, NaN as the format spells them.
std::string format_value(double v);
std::string format_value(uint64_t v);
// A bucket bound given in microseconds as seconds in plain decimal
// ("0.00025", "1", "10").
std::string format_le_us(uint64_t bound_us);

struct Bucket {
  std::string le;       // "0.0001" ... "+Inf"
  uint64_t cumulative;  // observations <= le
};
// The histogram's non-cumulative counts as Prometheus buckets: cumulative,
// one per bound, "+Inf" last (equal to the total count).
std::vector<Bucket> cumulative_buckets(const pool::LatencyHistogram& h);

enum class MetricType { counter, gauge, histogram };

// Collects samples by family, so each family's HELP and TYPE come once and
// before all its samples, whatever order the samples are produced in.
// Families appear in the order they were declared.
class Exposition {
 public:
  void family(std::string_view name, MetricType type, std::string_view help);
  // `name` is the family, or for histograms the family plus _bucket / _sum /
  // _count; `labels` as built by labels(), may be empty.
  void sample(std::string_view family, std::string_view name, std::string_view labels,
              std::string_view value);
  void sample(std::string_view family, std::string_view labels, double value) {
    sample(family, family, labels, format_value(value));
  }
  void sample(std::string_view family, std::string_view labels, uint64_t value) {
    sample(family, family, labels, format_value(value));
  }
  // _bucket{...,le=...} lines, _sum (seconds) and _count.
  void histogram(std::string_view family, std::string_view labels, const pool::LatencyHistogram& h);
  std::string text() const;

 private:
  struct Family {
    std::string head;  // HELP + TYPE lines
    std::string body;  // samples
  };
  Family& find(std::string_view name);
  std::vector<Family> families_;
  std::unordered_map<std::string, size_t> index_;
};

// Every metric of a running worker (see README "Metrics").
std::string render(const Worker& w);

// ---------------------------------------------------------------------------
// HTTP

constexpr size_t kMaxRequestHead = 8 * 1024;
constexpr size_t kMaxHeaderLines = 100;

enum class ParseStatus {
  need_more,    // the head is not complete yet (and valid so far)
  ok,
  bad_request,  // 400
  too_large,    // 431: head longer than the cap, or too many header lines
  bad_version,  // 505: HTTP/x.y with x != 1
};

struct HttpRequest {
  std::string method;
  std::string target;  // as sent
  std::string path;    // target without query string (absolute-form reduced to its path)
  int minor_version = 1;
};

struct ParseResult {
  ParseStatus status = ParseStatus::need_more;
  HttpRequest request;  // when ok
  size_t head_size = 0; // bytes of the head including the blank line, when ok
};

// Parses a request head (request line and header lines up to the blank
// line; CRLF or bare LF line ends). Invalid bytes are reported as soon as
// they arrive, so garbage (a PostgreSQL startup packet, TLS) is refused
// without waiting for a line end.
ParseResult parse_request_head(std::string_view data, size_t max_head = kMaxRequestHead);

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string extra_headers;  // complete "Name: value\r\n" lines
};

const char* reason_phrase(int status);
// Status line, headers (Content-Type, Content-Length, Connection: close)
// and, unless `head_only`, the body.
std::string serialize(const HttpResponse& r, bool head_only);

// What the server answers to a parse result: errors, 405 for methods other
// than GET and HEAD, /metrics (body from `render_metrics`), /health (503
// once `shutting_down`), / (an index), 404 for the rest.
HttpResponse respond(const ParseResult& parsed, bool shutting_down,
                     const std::function<std::string()>& render_metrics);

extern const char* const kMetricsContentType;

// "host:port", "[ipv6]:port" or "*:port" -> host ("*" kept) and port.
struct ListenAddress {
  std::string host;
  uint16_t port = 0;
};
std::optional<ListenAddress> parse_listen_address(std::string_view s, std::string& why);

// ---------------------------------------------------------------------------
// The server

class MetricsServer {
 public:
  explicit MetricsServer(Worker& w);
  // The loop must have run the close callbacks (close(), then the loop
  // ended) before the server is destroyed.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and listens on `listen` ([admin] metrics_listen); false with a
  // logged reason.
  bool start(const std::string& listen);
  // Stops listening and closes every connection; idempotent.
  void close();
  size_t connections() const { return conns_.size(); }

  // A peer gets this long to send its request and read the answer.
  static constexpr uint64_t kTimeoutMs = 10'000;
  // Beyond this, a new connection closes the oldest one still without a
  // complete request (or, if there is none, is closed itself).
  static constexpr size_t kMaxConnections = 64;

 private:
  struct Conn;
  static void on_connection(uv_stream_t* server, int status);
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_shutdown(uv_shutdown_t* req, int status);
  static void on_conn_closed(uv_handle_t* h);
  static void on_timer(uv_timer_t* t);
  void accept_one();
  void handle_data(Conn* c, const char* data, size_t n);
  void send(Conn* c, const HttpResponse& r, bool head_only);
  void close_conn(Conn* c);

  Worker& worker_;
  uv_tcp_t listener_{};
  uv_timer_t timer_{};
  bool listener_open_ = false;
  bool timer_open_ = false;
  bool closed_ = false;
  std::string address_;  // as bound, for logs
  std::unordered_set<Conn*> conns_;
  char read_buf_[16 * 1024];  // shared: libuv reads into it and calls on_read at once
};

}  // namespace metrics
}  // namespace pgmux
