// Shared helpers for the conf/ unit tests (not a test file itself: the test
// glob only picks up *.cpp).
#pragma once

#include <catch2/catch.hpp>

#include <string>

#include "conf/config.hpp"

namespace pgmux::conf::test {

// The smallest valid configuration: with the default auth type
// (scram-sha-256) a userlist file would be required, so use trust.
inline const std::string kMin = "[auth]\ntype = \"trust\"\n\n[databases.app]\n";

inline LoadResult load(const std::string& text, const std::string& base_dir = "/etc/pgmux") {
  return load_string(text, "t.toml", base_dir);
}

// Loads `text`, requires success and returns the config.
inline std::shared_ptr<const Config> ok(const std::string& text, const std::string& base_dir = "/etc/pgmux") {
  auto r = load(text, base_dir);
  INFO("config:\n" << text);
  INFO("error: " << r.error);
  REQUIRE(r.config != nullptr);
  REQUIRE(r.error.empty());
  return r.config;
}

// Loads `text`, requires failure and returns the error message.
inline std::string err(const std::string& text, const std::string& base_dir = "/etc/pgmux") {
  auto r = load(text, base_dir);
  INFO("config:\n" << text);
  REQUIRE(r.config == nullptr);
  REQUIRE_FALSE(r.error.empty());
  return r.error;
}

}  // namespace pgmux::conf::test
