// The admin console's SET key = value: one [pgmux] setting changed on a copy
// of the running config, validated like the file.
#include <catch2/catch.hpp>

#include "conf_test_util.hpp"

using namespace pgmux::conf;
using namespace pgmux::conf::test;
using Catch::Matchers::Contains;

namespace {

std::shared_ptr<const Config> set_ok(const Config& base, const std::string& key, const std::string& value) {
  auto r = apply_setting(base, key, value);
  INFO("SET " << key << " = " << value << ": " << r.error);
  REQUIRE(r.config != nullptr);
  return r.config;
}

std::string set_err(const Config& base, const std::string& key, const std::string& value) {
  auto r = apply_setting(base, key, value);
  INFO("SET " << key << " = " << value);
  REQUIRE(r.config == nullptr);
  REQUIRE_FALSE(r.error.empty());
  return r.error;
}

}  // namespace

TEST_CASE("SET changes one [pgmux] setting and keeps the rest") {
  auto base = ok(kMin + "[pgmux]\ndefault_pool_size = 7\nquery_timeout = \"3s\"\n");
  auto c = set_ok(*base, "default_pool_size", "50");
  CHECK(c->default_pool_size == 50);
  CHECK(c->query_timeout == std::chrono::seconds(3));
  CHECK(c->databases.count("app") == 1);
  CHECK(base->default_pool_size == 7);  // the running config is untouched
  CHECK(set_ok(*base, "default_pool_size", "'12'")->default_pool_size == 12);
  CHECK(set_ok(*base, "query_timeout", "'250ms'")->query_timeout == std::chrono::milliseconds(250));
  CHECK(set_ok(*base, "query_timeout", "10s")->query_timeout == std::chrono::seconds(10));
  CHECK(set_ok(*base, "pool_mode", "'session'")->pool_mode == PoolMode::session);
  CHECK(set_ok(*base, "pool_mode", "statement")->pool_mode == PoolMode::statement);
  CHECK(set_ok(*base, "server_reset_query_always", "on")->server_reset_query_always);
  CHECK_FALSE(set_ok(*base, "server_reset_query_always", "'false'")->server_reset_query_always);
  CHECK(set_ok(*base, "server_reset_query", "'SELECT ''x'' \"y\" \\\\'")->server_reset_query ==
        "SELECT 'x' \"y\" \\\\");
  CHECK(set_ok(*base, "max_packet_size", "'16MB'")->max_packet_size == 16u * 1024u * 1024u);
}

TEST_CASE("SET refuses what the file would refuse, naming the setting") {
  auto base = ok(kMin + "[pgmux]\ndefault_pool_size = 7\nmin_pool_size = 5\n");
  CHECK_THAT(set_err(*base, "default_pool_size", "0"), Contains("SET default_pool_size: must be >= 1"));
  CHECK_THAT(set_err(*base, "default_pool_size", "'lots'"), Contains("expected an integer"));
  CHECK_THAT(set_err(*base, "default_pool_size", "3"), Contains("must not exceed default_pool_size"));
  CHECK_THAT(set_err(*base, "query_timeout", "'5 fortnights'"), Contains("SET query_timeout"));
  CHECK_THAT(set_err(*base, "pool_mode", "'transactions'"), Contains("SET pool_mode"));
  CHECK_THAT(set_err(*base, "defualt_pool_size", "5"), Contains("did you mean 'default_pool_size'"));
  CHECK_THAT(set_err(*base, "listen", "'127.0.0.1:7000'"), Contains("takes a restart"));
  CHECK_THAT(set_err(*base, "workers", "4"), Contains("takes a restart"));
  CHECK_THAT(set_err(*base, "so_reuseport", "on"), Contains("takes a restart"));
  CHECK_THAT(set_err(*base, "listen_backlog", "64"), Contains("takes a restart"));
  CHECK_THAT(set_err(*base, "a.b", "4"), Contains("not a setting name"));
  CHECK_THAT(set_err(*base, "", "4"), Contains("not a setting name"));
  // Values that would break the TOML text stay values.
  CHECK_THAT(set_err(*base, "default_pool_size", "1\n[auth]\ntype = 'trust'"), Contains("expected an integer"));
  auto c = set_ok(*base, "server_reset_query", "'a\nb'");
  CHECK(c->server_reset_query == "a\nb");
  // Checks that span tables, as loading the file would make them.
  auto routed = ok("[auth]\ntype = \"trust\"\n[pgmux]\npool_mode = \"transaction\"\n"
                   "[databases.app]\nreplicas = [\"127.0.0.1:5433\"]\nread_routing = \"explicit\"\nuser = \"u\"\n"
                   "[databases.small]\npool_size = 3\n");
  CHECK_THAT(set_err(*routed, "pool_mode", "session"), Contains("[databases.app] has read_routing"));
  CHECK_THAT(set_err(*routed, "min_pool_size", "4"), Contains("[databases.small] would get min_pool_size 4"));
  CHECK(set_ok(*routed, "min_pool_size", "3")->min_pool_size == 3);
}

TEST_CASE("SET errors stay on one line whatever the value holds") {
  // Found by fuzz_config: a size value with a newline and NULs was quoted raw.
  auto base = ok(kMin);
  const std::string value("'x 0\nrese\0\0\t'", 13);
  const std::string e = set_err(*base, "max_packet_size", value);
  CHECK(e.find('\n') == std::string::npos);
  CHECK(e.find('\0') == std::string::npos);
  CHECK_THAT(e, Contains(R"(invalid size "x 0\nrese\x00\x00\t")"));
  CHECK_THAT(set_err(*base, "query_timeout", "'5\rs'"), Contains(R"("5\rs")"));
}

TEST_CASE("SET takes 0 and 1 for boolean settings, as PgBouncer's console") {
  auto base = ok(kMin);
  CHECK(set_ok(*base, "server_fast_close", "1")->server_fast_close);
  CHECK(set_ok(*base, "server_fast_close", "'1'")->server_fast_close);
  CHECK_FALSE(set_ok(*set_ok(*base, "server_fast_close", "on"), "server_fast_close", "0")->server_fast_close);
  CHECK(set_ok(*base, "tcp_keepalive", "0")->tcp_keepalive == false);
  CHECK_THAT(set_err(*base, "server_fast_close", "2"), Contains("expected a boolean"));
  // Integers stay integers for the other settings.
  CHECK(set_ok(*base, "default_pool_size", "1")->default_pool_size == 1);
}
