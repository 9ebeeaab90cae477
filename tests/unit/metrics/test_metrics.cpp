// The metrics endpoint's pure pieces: exposition formatting, label
// escaping, histogram conversion, HTTP request-head parsing and routing.
// The server itself (sockets, timeouts) is covered by
// tests/integration/test_metrics.cpp.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>

#include "src/metrics.hpp"

namespace m = pgmux::metrics;
using m::ParseStatus;

TEST_CASE("metrics: label values are escaped", "[metrics]") {
  CHECK(m::escape_label_value("plain") == "plain");
  CHECK(m::escape_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  CHECK(m::escape_label_value("") == "");
  CHECK(m::escape_label_value("tab\there") == "tab\there");  // only \, " and LF are escaped
  CHECK(m::labels({{"database", "app"}, {"user", "we\"ird"}}) == "database=\"app\",user=\"we\\\"ird\"");
  CHECK(m::labels({}) == "");
}

TEST_CASE("metrics: sample values", "[metrics]") {
  CHECK(m::format_value(0.0) == "0");
  CHECK(m::format_value(1.0) == "1");
  CHECK(m::format_value(-3.0) == "-3");
  CHECK(m::format_value(1.5) == "1.5");
  CHECK(m::format_value(0.000241) == "0.000241");
  CHECK(std::stod(m::format_value(1e300)) == 1e300);
  CHECK(m::format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(m::format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(m::format_value(std::nan("")) == "NaN");
  CHECK(m::format_value(uint64_t{18446744073709551615u}) == "18446744073709551615");
  CHECK(m::format_value(uint64_t{0}) == "0");
}

TEST_CASE("metrics: bucket bounds in seconds, exact decimals", "[metrics]") {
  CHECK(m::format_le_us(100) == "0.0001");
  CHECK(m::format_le_us(250) == "0.00025");
  CHECK(m::format_le_us(1000) == "0.001");
  CHECK(m::format_le_us(1000000) == "1");
  CHECK(m::format_le_us(2500000) == "2.5");
  CHECK(m::format_le_us(10000000) == "10");
  CHECK(m::format_le_us(1) == "0.000001");
  CHECK(m::format_le_us(0) == "0");
}

TEST_CASE("metrics: histogram buckets are cumulative and end with +Inf", "[metrics]") {
  using H = pgmux::pool::LatencyHistogram;
  H h;
  auto empty = m::cumulative_buckets(h);
  REQUIRE(empty.size() == H::kBuckets);
  for (const auto& b : empty) CHECK(b.cumulative == 0);
  CHECK(empty.back().le == "+Inf");

  h.add(50);        // <= 0.0001
  h.add(100);       // <= 0.0001 (bounds are inclusive)
  h.add(101);       // <= 0.00025
  h.add(30000);     // <= 0.05
  h.add(99000000);  // +Inf only
  auto b = m::cumulative_buckets(h);
  REQUIRE(b.size() == H::kBuckets);
  CHECK(b[0].le == "0.0001");
  CHECK(b[0].cumulative == 2);
  CHECK(b[1].le == "0.00025");
  CHECK(b[1].cumulative == 3);
  for (size_t i = 1; i < b.size(); ++i) CHECK(b[i].cumulative >= b[i - 1].cumulative);
  CHECK(b[b.size() - 2].le == "10");
  CHECK(b[b.size() - 2].cumulative == 4);
  CHECK(b.back().le == "+Inf");
  CHECK(b.back().cumulative == h.count);
  for (size_t i = 0; i + 1 < b.size(); ++i) CHECK(b[i].le == m::format_le_us(H::kBoundsUs[i]));
}

TEST_CASE("metrics: exposition groups samples under one HELP/TYPE per family", "[metrics]") {
  m::Exposition e;
  e.family("a_total", m::MetricType::counter, "A counter\nwith a \\ in its help");
  e.family("b", m::MetricType::gauge, "B");
  e.family("never", m::MetricType::gauge, "no samples: not printed");
  e.sample("b", m::labels({{"x", "1"}}), uint64_t{1});
  e.sample("a_total", "", 2.5);
  e.sample("b", m::labels({{"x", "2"}}), uint64_t{2});
  e.sample("a_total", m::labels({{"y", "q\""}}), uint64_t{3});
  CHECK(e.text() ==
        "# HELP a_total A counter\\nwith a \\\\ in its help\n"
        "# TYPE a_total counter\n"
        "a_total 2.5\n"
        "a_total{y=\"q\\\"\"} 3\n"
        "# HELP b B\n"
        "# TYPE b gauge\n"
        "b{x=\"1\"} 1\n"
        "b{x=\"2\"} 2\n");
}

TEST_CASE("metrics: histogram samples", "[metrics]") {
  pgmux::pool::LatencyHistogram h;
  h.add(200);
  h.add(3000000);
  m::Exposition e;
  e.family("d_seconds", m::MetricType::histogram, "D");
  e.histogram("d_seconds", m::labels({{"pool", "p"}}), h);
  const std::string t = e.text();
  CHECK(t.rfind("# HELP d_seconds D\n# TYPE d_seconds histogram\n", 0) == 0);
  CHECK_THAT(t, Catch::Matchers::Contains("d_seconds_bucket{pool=\"p\",le=\"0.0001\"} 0\n"));
  CHECK_THAT(t, Catch::Matchers::Contains("d_seconds_bucket{pool=\"p\",le=\"0.00025\"} 1\n"));
  CHECK_THAT(t, Catch::Matchers::Contains("d_seconds_bucket{pool=\"p\",le=\"2.5\"} 1\n"));
  CHECK_THAT(t, Catch::Matchers::Contains("d_seconds_bucket{pool=\"p\",le=\"5\"} 2\n"));
  CHECK_THAT(t, Catch::Matchers::Contains("d_seconds_bucket{pool=\"p\",le=\"+Inf\"} 2\n"));
  CHECK_THAT(t, Catch::Matchers::Contains("d_seconds_sum{pool=\"p\"} 3.0002\n"));
  CHECK_THAT(t, Catch::Matchers::EndsWith("d_seconds_count{pool=\"p\"} 2\n"));

  m::Exposition bare;
  bare.family("x", m::MetricType::histogram, "X");
  bare.histogram("x", "", h);
  CHECK_THAT(bare.text(), Catch::Matchers::Contains("x_bucket{le=\"+Inf\"} 2\nx_sum 3.0002\nx_count 2\n"));
}

TEST_CASE("metrics: request head parsing", "[metrics]") {
  SECTION("complete, CRLF") {
    const std::string req = "GET /metrics HTTP/1.1\r\nHost: localhost:9127\r\nAccept: */*\r\n\r\n";
    auto r = m::parse_request_head(req);
    REQUIRE(r.status == ParseStatus::ok);
    CHECK(r.request.method == "GET");
    CHECK(r.request.target == "/metrics");
    CHECK(r.request.path == "/metrics");
    CHECK(r.request.minor_version == 1);
    CHECK(r.head_size == req.size());
    // Bytes after the head (a body, another request) are not part of it.
    auto r2 = m::parse_request_head(req + "GARBAGE");
    REQUIRE(r2.status == ParseStatus::ok);
    CHECK(r2.head_size == req.size());
  }
  SECTION("bare LF, HTTP/1.0, no headers, leading empty lines") {
    auto r = m::parse_request_head("\r\n\nHEAD /health HTTP/1.0\n\n");
    REQUIRE(r.status == ParseStatus::ok);
    CHECK(r.request.method == "HEAD");
    CHECK(r.request.path == "/health");
    CHECK(r.request.minor_version == 0);
  }
  SECTION("query string and absolute-form") {
    auto r = m::parse_request_head("GET /metrics?name[]=x HTTP/1.1\r\n\r\n");
    REQUIRE(r.status == ParseStatus::ok);
    CHECK(r.request.path == "/metrics");
    r = m::parse_request_head("GET http://host:9127/health?x HTTP/1.1\r\n\r\n");
    REQUIRE(r.status == ParseStatus::ok);
    CHECK(r.request.path == "/health");
    r = m::parse_request_head("GET HTTP://host:9127 HTTP/1.1\r\n\r\n");
    REQUIRE(r.status == ParseStatus::ok);
    CHECK(r.request.path == "/");
  }
  SECTION("incomplete heads wait for more") {
    for (std::string_view part : {"", "G", "GET /met", "GET /metrics HTTP/1.1\r", "GET /metrics HTTP/1.1\r\n",
                                  "GET /metrics HTTP/1.1\r\nHost: x", "GET /metrics HTTP/1.1\r\nHost: x\r\n\r"}) {
      INFO(part);
      CHECK(m::parse_request_head(part).status == ParseStatus::need_more);
    }
  }
  SECTION("garbage is refused at once") {
    using namespace std::string_literals;
    // A PostgreSQL SSLRequest, a TLS ClientHello start, control bytes.
    for (const std::string& g : {"\x00\x00\x00\x08\x04\xd2\x16\x2f"s, "\x16\x03\x01\x02\x00\x01"s, "GET /\x01"s,
                                 "GET\t/ HTTP/1.1\r\n\r\n"s}) {
      CHECK(m::parse_request_head(g).status == ParseStatus::bad_request);
    }
    for (std::string_view g : {"GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
                               "GET /metrics HTTP/1.1 \r\n\r\n", "GET /metrics http/1.1\r\n\r\n",
                               "GET /metrics HTTP/1.12\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
                               "G(T /metrics HTTP/1.1\r\n\r\n", " GET /metrics HTTP/1.1\r\n\r\n",
                               "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n",
                               "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
                               "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
                               "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
                               "GET /metrics HTTP/1.1\r\nX: a\rb\r\n\r\n"}) {
      INFO(g);
      CHECK(m::parse_request_head(g).status == ParseStatus::bad_request);
    }
  }
  SECTION("header values may carry obs-text and tabs") {
    CHECK(m::parse_request_head("GET / HTTP/1.1\r\nUser-Agent: caf\xc3\xa9\t1\r\n\r\n").status == ParseStatus::ok);
  }
  SECTION("other HTTP versions") {
    CHECK(m::parse_request_head("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").status == ParseStatus::bad_version);
    CHECK(m::parse_request_head("GET / HTTP/0.9\r\n\r\n").status == ParseStatus::bad_version);
  }
  SECTION("size caps") {
    std::string big = "GET / HTTP/1.1\r\nX: " + std::string(9000, 'a');
    CHECK(m::parse_request_head(big).status == ParseStatus::too_large);
    CHECK(m::parse_request_head(big + "\r\n\r\n").status == ParseStatus::too_large);
    std::string just = "GET / HTTP/1.1\r\nX: ";
    just += std::string(100 - just.size() - 4, 'a') + "\r\n\r\n";
    REQUIRE(just.size() == 100);
    CHECK(m::parse_request_head(just, 100).status == ParseStatus::ok);
    CHECK(m::parse_request_head(just, 99).status == ParseStatus::too_large);
    std::string many = "GET / HTTP/1.1\r\n";
    for (size_t i = 0; i <= m::kMaxHeaderLines; ++i) many += "X: y\r\n";
    CHECK(m::parse_request_head(many + "\r\n").status == ParseStatus::too_large);
    CHECK(m::parse_request_head(std::string(20000, '\n')).status == ParseStatus::too_large);
  }
}

TEST_CASE("metrics: routing and responses", "[metrics]") {
  int renders = 0;
  auto render = [&] {
    ++renders;
    return std::string("pgmux_up 1\n");
  };
  auto get = [&](std::string_view req, bool shutting_down = false) {
    return m::respond(m::parse_request_head(req), shutting_down, render);
  };

  auto r = get("GET /metrics HTTP/1.1\r\n\r\n");
  CHECK(r.status == 200);
  CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(r.body == "pgmux_up 1\n");
  CHECK(renders == 1);

  CHECK(get("GET /health HTTP/1.1\r\n\r\n").status == 200);
  CHECK(get("GET /health HTTP/1.1\r\n\r\n").body == "ok\n");
  CHECK(get("GET /health HTTP/1.1\r\n\r\n", true).status == 503);
  CHECK(get("GET /health HTTP/1.1\r\n\r\n", true).body == "shutting down\n");
  CHECK(get("HEAD /health HTTP/1.1\r\n\r\n").status == 200);
  CHECK(get("GET / HTTP/1.1\r\n\r\n").status == 200);
  CHECK(get("GET /nope HTTP/1.1\r\n\r\n").status == 404);
  CHECK(get("GET /metrics/ HTTP/1.1\r\n\r\n").status == 404);
  CHECK(get("GET * HTTP/1.1\r\n\r\n").status == 404);
  auto post = get("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
  CHECK(post.status == 405);
  CHECK(post.extra_headers == "Allow: GET, HEAD\r\n");
  CHECK(get("DELETE /nope HTTP/1.1\r\n\r\n").status == 405);
  CHECK(get("OPTIONS * HTTP/1.1\r\n\r\n").status == 405);
  CHECK(get("\x01\x02").status == 400);
  CHECK(get("PRI * HTTP/2.0\r\n\r\n").status == 505);
  CHECK(get("GET / HTTP/1.1\r\nX: " + std::string(9000, 'a')).status == 431);
  CHECK(renders == 1);  // only /metrics renders

  const std::string full = m::serialize(r, false);
  CHECK(full == "HTTP/1.1 200 OK\r\n"
                "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                "Content-Length: 11\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n"
                "\r\n"
                "pgmux_up 1\n");
  // HEAD: the same headers (Content-Length of the body it would get), no body.
  CHECK(m::serialize(r, true) == full.substr(0, full.size() - 11));
  CHECK_THAT(m::serialize(post, false), Catch::Matchers::StartsWith("HTTP/1.1 405 Method Not Allowed\r\n"));
  CHECK_THAT(m::serialize(post, false), Catch::Matchers::Contains("\r\nAllow: GET, HEAD\r\n\r\n"));
}

TEST_CASE("metrics: listen addresses", "[metrics]") {
  std::string why;
  auto a = m::parse_listen_address("127.0.0.1:9127", why);
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 9127);
  a = m::parse_listen_address("[::1]:9127", why);
  REQUIRE(a);
  CHECK(a->host == "::1");
  CHECK(a->port == 9127);
  a = m::parse_listen_address("*:80", why);
  REQUIRE(a);
  CHECK(a->host == "*");
  CHECK(a->port == 80);
  for (std::string_view bad : {"", "9127", ":9127", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                               "127.0.0.1:9x", "::1:9127", "[::1]9127", "[::1]:", "[]:9127", "[::1"}) {
    INFO(bad);
    CHECK_FALSE(m::parse_listen_address(bad, why));
    CHECK_FALSE(why.empty());
  }
}
