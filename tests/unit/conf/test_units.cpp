// Durations, byte sizes and enum names (conf/units.cpp).
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <utility>

#include "conf/config.hpp"

using namespace pgmux::conf;
using std::chrono::milliseconds;

TEST_CASE("parse_duration accepts every unit and zero", "[conf][duration]") {
  const std::pair<const char*, int64_t> cases[] = {
      {"0", 0},
      {"0s", 0},
      {"0ms", 0},
      {"0min", 0},
      {"1ms", 1},
      {"250ms", 250},
      {"1s", 1000},
      {"15s", 15'000},
      {"15sec", 15'000},
      {"15 s", 15'000},
      {"15  min", 900'000},
      {"10min", 600'000},
      {"1h", 3'600'000},
      {"24h", 86'400'000},
      {"2d", 172'800'000},
      {"007s", 7'000},
      {"1000000ms", 1'000'000},
      {"106751991167d", int64_t{106751991167} * 86'400'000},  // near the limit of int64 ms
  };
  for (const auto& [text, ms] : cases) {
    INFO(text);
    const auto d = parse_duration(text);
    REQUIRE(d.has_value());
    CHECK(d->count() == ms);
  }
}

TEST_CASE("parse_duration rejects malformed, ambiguous and out-of-range values", "[conf][duration]") {
  const char* cases[] = {
      "",         // empty
      "15",       // a bare number other than 0 has no unit
      "1",        //
      "00 ",      // zero with trailing blank
      "0 ",       //
      " 15s",     // leading blank
      "15s ",     // trailing blank
      "-5s",      // negative
      "-0s",      //
      "+5s",      // sign
      "1.5s",     // fraction
      "1,5s",     //
      "15m",      // ambiguous: minutes or months
      "15M",      //
      "15S",      // units are case-sensitive
      "15MS",     //
      "15Min",    //
      "15mins",   // only the listed spellings
      "15 minutes",
      "15secs",   //
      "15us",     // microseconds are not supported
      "15w",      // weeks are not supported
      "s",        // unit without number
      "ms",       //
      "abc",      //
      "1h30min",  // no compound durations
      "0x10s",    //
      "1e3ms",    //
      "99999999999999999999s",  // does not fit in 64 bits
      "106751991168d",          // overflows int64 milliseconds
      "9223372036854775808ms",  //
  };
  for (const char* text : cases) {
    INFO('"' << text << '"');
    CHECK_FALSE(parse_duration(text).has_value());
  }
}

TEST_CASE("parse_bytes accepts bytes and 1024-based units", "[conf][bytes]") {
  const std::pair<const char*, uint64_t> cases[] = {
      {"0", 0},
      {"100", 100},
      {"100B", 100},
      {"100 B", 100},
      {"1kB", 1024},
      {"512kB", 512 * 1024},
      {"512KB", 512 * 1024},
      {"16MB", 16u << 20},
      {"64 MB", 64u << 20},
      {"1GB", uint64_t{1} << 30},
      {"2TB", uint64_t{2} << 40},
      {"16777215TB", uint64_t{16777215} << 40},
      {"18446744073709551615", UINT64_MAX},
  };
  for (const auto& [text, n] : cases) {
    INFO(text);
    const auto b = parse_bytes(text);
    REQUIRE(b.has_value());
    CHECK(*b == n);
  }
}

TEST_CASE("parse_bytes rejects malformed and out-of-range values", "[conf][bytes]") {
  const char* cases[] = {
      "",      "-1",       "-1MB",  "+1MB",   "1.5MB", "16mb", "16Mb",
      "16M",   "16K",      "16k",   "16kb",   "16MiB", "16 megabytes",
      "MB",    " 16MB",    "16MB ", "100 ",   "0x10",  "1e6",
      "16777216TB",            // 2^64: overflow
      "18446744073709551616",  // 2^64
      "20000000000000000000kB",
  };
  for (const char* text : cases) {
    INFO('"' << text << '"');
    CHECK_FALSE(parse_bytes(text).has_value());
  }
}

TEST_CASE("format_duration picks the largest exact unit", "[conf][duration]") {
  CHECK(format_duration(milliseconds(0)) == "0s");
  CHECK(format_duration(milliseconds(1)) == "1ms");
  CHECK(format_duration(milliseconds(250)) == "250ms");
  CHECK(format_duration(milliseconds(1500)) == "1500ms");
  CHECK(format_duration(milliseconds(1000)) == "1s");
  CHECK(format_duration(milliseconds(15'000)) == "15s");
  CHECK(format_duration(milliseconds(90'000)) == "90s");
  CHECK(format_duration(milliseconds(60'000)) == "1min");
  CHECK(format_duration(milliseconds(600'000)) == "10min");
  CHECK(format_duration(milliseconds(3'600'000)) == "1h");
  CHECK(format_duration(milliseconds(5'400'000)) == "90min");
  CHECK(format_duration(milliseconds(86'400'000)) == "1d");
  CHECK(format_duration(milliseconds(90'000'000)) == "25h");
  CHECK(format_duration(milliseconds(-1500)) == "-1500ms");
}

TEST_CASE("format_duration output parses back to the same value", "[conf][duration]") {
  for (int64_t ms : {int64_t{0}, int64_t{1}, int64_t{999}, int64_t{1000}, int64_t{59'000}, int64_t{61'000},
                     int64_t{120'000}, int64_t{7'200'000}, int64_t{172'800'000}, int64_t{172'800'001}}) {
    INFO(ms);
    const auto text = format_duration(milliseconds(ms));
    const auto back = parse_duration(text);
    REQUIRE(back.has_value());
    CHECK(back->count() == ms);
  }
}

TEST_CASE("format_bytes picks the largest exact unit and round-trips", "[conf][bytes]") {
  CHECK(format_bytes(0) == "0B");
  CHECK(format_bytes(100) == "100B");
  CHECK(format_bytes(1024) == "1kB");
  CHECK(format_bytes(1536) == "1536B");
  CHECK(format_bytes(1536 * 1024) == "1536kB");
  CHECK(format_bytes(64u << 20) == "64MB");
  CHECK(format_bytes(uint64_t{1} << 30) == "1GB");
  CHECK(format_bytes(uint64_t{3} << 40) == "3TB");
  for (uint64_t n : {uint64_t{0}, uint64_t{1}, uint64_t{1023}, uint64_t{1024}, uint64_t{1025}, uint64_t{1} << 20,
                     (uint64_t{1} << 30) + 1024, uint64_t{5} << 40}) {
    INFO(n);
    const auto back = parse_bytes(format_bytes(n));
    REQUIRE(back.has_value());
    CHECK(*back == n);
  }
}

TEST_CASE("enum names match the configuration spelling", "[conf][enum]") {
  CHECK(to_string(PoolMode::session) == "session");
  CHECK(to_string(PoolMode::transaction) == "transaction");
  CHECK(to_string(PoolMode::statement) == "statement");
  CHECK(to_string(AuthType::trust) == "trust");
  CHECK(to_string(AuthType::md5) == "md5");
  CHECK(to_string(AuthType::scram_sha_256) == "scram-sha-256");
  CHECK(to_string(AuthType::hba) == "hba");
  CHECK(to_string(TlsMode::disable) == "disable");
  CHECK(to_string(TlsMode::allow) == "allow");
  CHECK(to_string(TlsMode::prefer) == "prefer");
  CHECK(to_string(TlsMode::require) == "require");
  CHECK(to_string(TlsMode::verify_ca) == "verify-ca");
  CHECK(to_string(TlsMode::verify_full) == "verify-full");
  CHECK(to_string(ReadRouting::off) == "off");
  CHECK(to_string(ReadRouting::explicit_) == "explicit");
  CHECK(to_string(ReadRouting::automatic) == "auto");
  CHECK(to_string(LoadBalance::least_outstanding) == "least-outstanding");
  CHECK(to_string(LoadBalance::round_robin) == "round-robin");
  CHECK(to_string(LoadBalance::random) == "random");
  CHECK(to_string(ReplicaFallback::primary) == "primary");
  CHECK(to_string(ReplicaFallback::error) == "error");
  CHECK(to_string(TargetSessionAttrs::any) == "any");
  CHECK(to_string(TargetSessionAttrs::read_write) == "read-write");
  CHECK(to_string(TargetSessionAttrs::read_only) == "read-only");
  CHECK(to_string(TargetSessionAttrs::prefer_standby) == "prefer-standby");
}
