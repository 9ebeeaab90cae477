// The TOML configuration loader: conf::load_string on arbitrary text (and
// the duration / size value parsers on short inputs).
//
// Properties:
//  - load_string never throws (documented) and gives exactly one of a Config
//    or an error;
//  - the error is one line (documented) starting with the source name;
//    toml11's own multi-line exception text reaching it means an internal
//    exception escaped the loader's checks (it is caught only by the last
//    resort catch in load_string);
//  - a loaded Config listens somewhere, has databases, names its source;
//  - parse_duration / parse_bytes: a parsed value formats (format_duration /
//    format_bytes) to a text that parses back to the same value;
//  - apply_setting (the console's SET key = value, on short inputs split at
//    the first '='): one of a Config or a one-line error naming the key,
//    and a changed Config keeps the base's listen addresses and databases.
#include <cstdint>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "fuzz_check.hpp"

using namespace pgmux::conf;

namespace {

const std::string kSource = "fuzz.toml";

void check_values(std::string_view s) {
  if (auto d = parse_duration(s)) {
    FUZZ_CHECK(d->count() >= 0);
    const auto again = parse_duration(format_duration(*d));
    FUZZ_CHECK(again && *again == *d);
  }
  if (auto n = parse_bytes(s)) {
    const auto again = parse_bytes(format_bytes(*n));
    FUZZ_CHECK(again && *again == *n);
  }
}

const Config& base() {
  static const std::shared_ptr<const Config> c =
      load_string("[auth]\ntype = \"trust\"\n[databases.app]\n", kSource, "/srv/pgmux").config;
  return *c;
}

void check_set(std::string_view s) {
  const size_t eq = s.find('=');
  if (eq == std::string_view::npos) return;
  const std::string_view key = s.substr(0, eq), value = s.substr(eq + 1);
  const LoadResult r = apply_setting(base(), key, value);
  FUZZ_CHECK((r.config == nullptr) != r.error.empty());
  if (r.config) {
    FUZZ_CHECK(r.config->listen.size() == base().listen.size());
    FUZZ_CHECK(r.config->databases.size() == 1);
  } else {
    FUZZ_CHECK(r.error.rfind("SET ", 0) == 0);
    FUZZ_CHECK(r.error.find('\n') == std::string::npos || key.find('\n') != std::string_view::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (size <= 64) check_values(text);
  if (size <= 256) check_set(text);

  const LoadResult r = load_string(text, kSource, "/srv/pgmux");
  FUZZ_CHECK((r.config == nullptr) != r.error.empty());
  if (r.config) {
    FUZZ_CHECK(!r.config->listen.empty());
    FUZZ_CHECK(!r.config->databases.empty());
    FUZZ_CHECK(r.config->source == kSource);
  } else {
    FUZZ_CHECK(r.error.rfind(kSource, 0) == 0);
    if (r.error.find('\n') != std::string::npos) {
      std::fprintf(stderr, "multi-line error:\n%s\n", r.error.c_str());
      FUZZ_CHECK(r.error.find('\n') == std::string::npos);
    }
  }
  return 0;
}
