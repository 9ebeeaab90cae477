// pg_hba.conf-style rules: parse_hba, load_hba_file, HbaRules::match.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

#include "auth/hba.hpp"

using namespace pgmux::auth;

namespace {

constexpr const char* kSource = "pgmux_hba.conf";

std::shared_ptr<const HbaRules> parse_ok(std::string_view text) {
  auto r = parse_hba(text, kSource);
  INFO("error: " << r.error);
  REQUIRE(r.rules);
  CHECK(r.error.empty());
  return r.rules;
}

std::string parse_error(std::string_view text) {
  auto r = parse_hba(text, kSource);
  CHECK_FALSE(r.rules);
  CHECK_FALSE(r.error.empty());
  return r.error;
}

// The one rule of a one-record text.
HbaRule rule_of(std::string_view text) {
  auto rules = parse_ok(text);
  REQUIRE(rules->rules.size() == 1);
  return rules->rules[0];
}

HbaRequest tcp(std::string address, std::string database = "db", std::string user = "alice", bool tls = false) {
  HbaRequest r;
  r.address = std::move(address);
  r.database = std::move(database);
  r.user = std::move(user);
  r.tls = tls;
  return r;
}

HbaRequest tls(std::string address, std::string database = "db", std::string user = "alice") {
  return tcp(std::move(address), std::move(database), std::move(user), true);
}

HbaRequest unix_socket(std::string database = "db", std::string user = "alice") {
  HbaRequest r;
  r.unix_socket = true;
  r.database = std::move(database);
  r.user = std::move(user);
  return r;
}

// The line of the rule that decides, 0 when none matches.
int line_for(const HbaRules& rules, const HbaRequest& req) {
  auto m = rules.match(req);
  return m ? m->line : 0;
}

bool matches(std::string_view text, const HbaRequest& req) { return parse_ok(text)->match(req).has_value(); }

std::string v4_network(const HbaAddress& a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", a.network[0], a.network[1], a.network[2], a.network[3]);
  return buf;
}

}  // namespace

TEST_CASE("hba: to_string", "[auth][hba]") {
  CHECK(to_string(HbaConnType::local) == "local");
  CHECK(to_string(HbaConnType::host) == "host");
  CHECK(to_string(HbaConnType::hostssl) == "hostssl");
  CHECK(to_string(HbaConnType::hostnossl) == "hostnossl");
  CHECK(to_string(HbaMethod::trust) == "trust");
  CHECK(to_string(HbaMethod::reject) == "reject");
  CHECK(to_string(HbaMethod::md5) == "md5");
  CHECK(to_string(HbaMethod::scram_sha_256) == "scram-sha-256");
  CHECK(to_string(HbaMethod::cert) == "cert");
}

TEST_CASE("hba: a typical file", "[auth][hba]") {
  auto rules = parse_ok(
      "# TYPE  DATABASE        USER            ADDRESS                 METHOD\n"
      "\n"
      "local   all             postgres                                trust\n"
      "host    app,reports     alice,bob       10.0.0.0/8              scram-sha-256\n"
      "hostssl all             all             ::/0                    cert\n"
      "hostnossl sameuser      all             127.0.0.1 255.255.255.255 md5   # trailing comment\n"
      "host    replication     all             all                     reject\n"
      "hostssl all             all             all                     md5 clientcert=verify-ca\n");
  REQUIRE(rules->rules.size() == 6);
  const auto& r = rules->rules;

  CHECK(r[0].type == HbaConnType::local);
  CHECK(r[0].line == 3);
  REQUIRE(r[0].databases.size() == 1);
  CHECK(r[0].databases[0].kind == HbaName::Kind::all);
  REQUIRE(r[0].users.size() == 1);
  CHECK(r[0].users[0].kind == HbaName::Kind::name);
  CHECK(r[0].users[0].name == "postgres");
  CHECK_FALSE(r[0].address);
  CHECK(r[0].method == HbaMethod::trust);
  CHECK_FALSE(r[0].clientcert);

  CHECK(r[1].type == HbaConnType::host);
  CHECK(r[1].line == 4);
  REQUIRE(r[1].databases.size() == 2);
  CHECK(r[1].databases[0].name == "app");
  CHECK(r[1].databases[1].name == "reports");
  REQUIRE(r[1].users.size() == 2);
  CHECK(r[1].users[0].name == "alice");
  CHECK(r[1].users[1].name == "bob");
  REQUIRE(r[1].address);
  CHECK(r[1].address->family == HbaAddress::Family::ipv4);
  CHECK(r[1].address->prefix_len == 8);
  CHECK(v4_network(*r[1].address) == "10.0.0.0");
  CHECK(r[1].method == HbaMethod::scram_sha_256);

  CHECK(r[2].type == HbaConnType::hostssl);
  REQUIRE(r[2].address);
  CHECK(r[2].address->family == HbaAddress::Family::ipv6);
  CHECK(r[2].address->prefix_len == 0);
  CHECK(r[2].method == HbaMethod::cert);
  CHECK(r[2].clientcert == "verify-full");  // implied by cert

  CHECK(r[3].type == HbaConnType::hostnossl);
  CHECK(r[3].databases[0].kind == HbaName::Kind::sameuser);
  CHECK(r[3].users[0].kind == HbaName::Kind::all);
  REQUIRE(r[3].address);
  CHECK(r[3].address->family == HbaAddress::Family::ipv4);
  CHECK(r[3].address->prefix_len == 32);
  CHECK(v4_network(*r[3].address) == "127.0.0.1");
  CHECK(r[3].method == HbaMethod::md5);

  CHECK(r[4].databases[0].kind == HbaName::Kind::replication);
  REQUIRE(r[4].address);
  CHECK(r[4].address->family == HbaAddress::Family::any);
  CHECK(r[4].method == HbaMethod::reject);

  CHECK(r[5].method == HbaMethod::md5);
  CHECK(r[5].clientcert == "verify-ca");
  CHECK(r[5].line == 8);

  // What the rules decide.
  CHECK(line_for(*rules, unix_socket("x", "postgres")) == 3);
  CHECK(line_for(*rules, unix_socket("x", "alice")) == 0);
  CHECK(line_for(*rules, tcp("10.1.2.3", "app", "alice")) == 4);
  CHECK(line_for(*rules, tcp("10.1.2.3", "other", "alice")) == 0);
  CHECK(line_for(*rules, tls("10.1.2.3", "other", "alice")) == 8);
  CHECK(line_for(*rules, tls("2001:db8::1", "other", "alice")) == 5);
  CHECK(line_for(*rules, tcp("127.0.0.1", "carol", "carol")) == 6);
  CHECK(line_for(*rules, tcp("127.0.0.1", "carol", "dave")) == 0);
  auto m = rules->match(tls("10.1.2.3", "other", "alice"));
  REQUIRE(m);
  CHECK(m->method == HbaMethod::md5);
  CHECK(m->clientcert == "verify-ca");
  m = rules->match(tls("::1"));
  REQUIRE(m);
  CHECK(m->method == HbaMethod::cert);
  CHECK(m->clientcert == "verify-full");
  m = rules->match(unix_socket("x", "postgres"));
  REQUIRE(m);
  CHECK(m->method == HbaMethod::trust);
  CHECK_FALSE(m->clientcert);
}

TEST_CASE("hba: connection types against unix socket and TLS", "[auth][hba]") {
  const auto local = parse_ok("local all all trust\n");
  const auto host = parse_ok("host all all all trust\n");
  const auto hostssl = parse_ok("hostssl all all all trust\n");
  const auto hostnossl = parse_ok("hostnossl all all all trust\n");
  HbaRequest unix_tls = unix_socket();
  unix_tls.tls = true;  // meaningless on a socket; local still matches, host* never

  CHECK(local->match(unix_socket()));
  CHECK(local->match(unix_tls));
  CHECK_FALSE(local->match(tcp("127.0.0.1")));
  CHECK_FALSE(local->match(tls("127.0.0.1")));

  CHECK_FALSE(host->match(unix_socket()));
  CHECK_FALSE(host->match(unix_tls));
  CHECK(host->match(tcp("127.0.0.1")));
  CHECK(host->match(tls("127.0.0.1")));

  CHECK_FALSE(hostssl->match(unix_socket()));
  CHECK_FALSE(hostssl->match(unix_tls));
  CHECK_FALSE(hostssl->match(tcp("127.0.0.1")));
  CHECK(hostssl->match(tls("127.0.0.1")));

  CHECK_FALSE(hostnossl->match(unix_socket()));
  CHECK_FALSE(hostnossl->match(unix_tls));
  CHECK(hostnossl->match(tcp("127.0.0.1")));
  CHECK_FALSE(hostnossl->match(tls("127.0.0.1")));
}

TEST_CASE("hba: first matching rule wins", "[auth][hba]") {
  auto rules = parse_ok(
      "host    all  mallory  all          reject\n"
      "host    all  all      10.0.0.5/32  trust\n"
      "host    all  all      10.0.0.0/8   md5\n"
      "hostssl all  all      all          cert\n"
      "host    all  all      all          scram-sha-256\n");
  auto method_for = [&](const HbaRequest& req) {
    auto m = rules->match(req);
    REQUIRE(m);
    return m->method;
  };
  CHECK(method_for(tcp("10.0.0.5", "db", "mallory")) == HbaMethod::reject);
  CHECK(method_for(tcp("10.0.0.5")) == HbaMethod::trust);
  CHECK(method_for(tcp("10.0.0.6")) == HbaMethod::md5);
  CHECK(method_for(tls("10.0.0.6")) == HbaMethod::md5);  // line 3 comes before hostssl
  CHECK(method_for(tls("192.168.0.1")) == HbaMethod::cert);
  CHECK(method_for(tcp("192.168.0.1")) == HbaMethod::scram_sha_256);
  CHECK(line_for(*rules, tcp("192.168.0.1")) == 5);
  CHECK_FALSE(rules->match(unix_socket()));  // no local rule: the caller rejects

  // The same rules in the other order: the broad rule hides the others.
  auto reversed = parse_ok(
      "host    all  all      all          scram-sha-256\n"
      "host    all  mallory  all          reject\n");
  CHECK(line_for(*reversed, tcp("10.0.0.5", "db", "mallory")) == 1);
}

TEST_CASE("hba: DATABASE keywords and names", "[auth][hba]") {
  SECTION("all") {
    CHECK(matches("local all all trust", unix_socket("anything")));
    CHECK(matches("local all all trust", unix_socket("")));
  }
  SECTION("names are exact and case-sensitive") {
    CHECK(matches("local app all trust", unix_socket("app")));
    CHECK_FALSE(matches("local app all trust", unix_socket("App")));
    CHECK_FALSE(matches("local app all trust", unix_socket("app2")));
    CHECK_FALSE(matches("local app all trust", unix_socket("ap")));
  }
  SECTION("lists") {
    const char* text = "local a,b,c all trust";
    CHECK(matches(text, unix_socket("a")));
    CHECK(matches(text, unix_socket("b")));
    CHECK(matches(text, unix_socket("c")));
    CHECK_FALSE(matches(text, unix_socket("d")));
    CHECK_FALSE(matches(text, unix_socket("a,b")));
    // Blanks after a comma continue the list (as in PostgreSQL).
    auto r = rule_of("local a, b,\tc all trust");
    REQUIRE(r.databases.size() == 3);
    CHECK(r.databases[2].name == "c");
    CHECK(r.users[0].kind == HbaName::Kind::all);
    // A keyword in a list.
    CHECK(matches("local a,all all trust", unix_socket("z")));
  }
  SECTION("sameuser") {
    CHECK(matches("local sameuser all trust", unix_socket("alice", "alice")));
    CHECK_FALSE(matches("local sameuser all trust", unix_socket("alice", "bob")));
    CHECK_FALSE(matches("local sameuser all trust", unix_socket("Alice", "alice")));
    CHECK(matches("local sameuser,shared all trust", unix_socket("shared", "bob")));
    CHECK(matches("host sameuser all all md5", tcp("::1", "bob", "bob")));
  }
  SECTION("replication is accepted and never matches") {
    auto r = rule_of("local replication all trust");
    CHECK(r.databases[0].kind == HbaName::Kind::replication);
    CHECK_FALSE(matches("local replication all trust", unix_socket("replication")));
    CHECK_FALSE(matches("host replication all all trust", tcp("10.0.0.1", "replication")));
    CHECK(matches("local replication,app all trust", unix_socket("app")));
  }
  SECTION("quoted keywords are names") {
    auto r = rule_of("local \"all\",\"sameuser\",\"replication\",\"samerole\",\"samegroup\" all trust");
    REQUIRE(r.databases.size() == 5);
    for (const auto& d : r.databases) CHECK(d.kind == HbaName::Kind::name);
    CHECK(r.databases[0].name == "all");
    CHECK(r.databases[4].name == "samegroup");
    const char* text = "local \"all\",\"sameuser\",\"replication\" all trust";
    CHECK(matches(text, unix_socket("all")));
    CHECK(matches(text, unix_socket("sameuser")));
    CHECK(matches(text, unix_socket("replication")));
    CHECK_FALSE(matches(text, unix_socket("other")));
    CHECK_FALSE(matches(text, unix_socket("alice", "alice")));
  }
  SECTION("+ and @ when quoted, + unquoted are database names") {
    auto r = rule_of("local +db,\"@db\" all trust");
    CHECK(r.databases[0].name == "+db");
    CHECK(r.databases[1].name == "@db");
  }
  SECTION("keywords are case-sensitive") {
    auto r = rule_of("local ALL,SameUser ALL trust");
    CHECK(r.databases[0].kind == HbaName::Kind::name);
    CHECK(r.databases[0].name == "ALL");
    CHECK(r.databases[1].kind == HbaName::Kind::name);
    CHECK(r.users[0].kind == HbaName::Kind::name);
    CHECK_FALSE(matches("local ALL all trust", unix_socket("db")));
  }
}

TEST_CASE("hba: USER keywords and names", "[auth][hba]") {
  CHECK(matches("local all all trust", unix_socket("db", "anyone")));
  CHECK(matches("local all alice trust", unix_socket("db", "alice")));
  CHECK_FALSE(matches("local all alice trust", unix_socket("db", "Alice")));
  CHECK_FALSE(matches("local all alice trust", unix_socket("db", "bob")));
  CHECK(matches("local all alice,bob trust", unix_socket("db", "bob")));
  CHECK_FALSE(matches("local all alice,bob trust", unix_socket("db", "carol")));
  // Quoted: plain names.
  auto r = rule_of("local all \"all\",\"+staff\",\"@users\",sameuser trust");
  REQUIRE(r.users.size() == 4);
  for (const auto& u : r.users) CHECK(u.kind == HbaName::Kind::name);
  CHECK(r.users[1].name == "+staff");
  CHECK(r.users[2].name == "@users");
  CHECK(r.users[3].name == "sameuser");  // a keyword only in DATABASE
  CHECK(matches("local all \"all\" trust", unix_socket("db", "all")));
  CHECK_FALSE(matches("local all \"all\" trust", unix_socket("db", "alice")));
  CHECK(matches("local all \"+staff\" trust", unix_socket("db", "+staff")));
}

TEST_CASE("hba: IPv4 addresses", "[auth][hba]") {
  SECTION("/0 matches every IPv4 peer and no IPv6 peer") {
    const char* t = "host all all 0.0.0.0/0 trust";
    CHECK(matches(t, tcp("0.0.0.0")));
    CHECK(matches(t, tcp("255.255.255.255")));
    CHECK(matches(t, tcp("127.0.0.1")));
    CHECK_FALSE(matches(t, tcp("::1")));
    CHECK_FALSE(matches(t, tcp("::ffff:127.0.0.1")));
  }
  SECTION("/32 is one address") {
    const char* t = "host all all 192.168.1.7/32 trust";
    CHECK(matches(t, tcp("192.168.1.7")));
    CHECK_FALSE(matches(t, tcp("192.168.1.6")));
    CHECK_FALSE(matches(t, tcp("192.168.1.8")));
    CHECK_FALSE(matches(t, tcp("::ffff:192.168.1.7")));
  }
  SECTION("prefix boundaries") {
    const char* t = "host all all 10.20.0.0/14 trust";  // 10.20.0.0 - 10.23.255.255
    CHECK(matches(t, tcp("10.20.0.0")));
    CHECK(matches(t, tcp("10.23.255.255")));
    CHECK_FALSE(matches(t, tcp("10.19.255.255")));
    CHECK_FALSE(matches(t, tcp("10.24.0.0")));
    const char* t31 = "host all all 10.0.0.2/31 trust";
    CHECK(matches(t31, tcp("10.0.0.2")));
    CHECK(matches(t31, tcp("10.0.0.3")));
    CHECK_FALSE(matches(t31, tcp("10.0.0.1")));
    CHECK_FALSE(matches(t31, tcp("10.0.0.4")));
    const char* t1 = "host all all 128.0.0.0/1 trust";
    CHECK(matches(t1, tcp("200.1.1.1")));
    CHECK_FALSE(matches(t1, tcp("127.255.255.255")));
  }
  SECTION("host bits beyond the prefix are ignored") {
    auto r = rule_of("host all all 10.1.2.3/8 trust");
    CHECK(v4_network(*r.address) == "10.0.0.0");
    CHECK(r.address->prefix_len == 8);
    CHECK(matches("host all all 10.1.2.3/8 trust", tcp("10.200.0.1")));
    CHECK(v4_network(*rule_of("host all all 255.255.255.255/0 trust").address) == "0.0.0.0");
    CHECK(v4_network(*rule_of("host all all 10.0.0.255/25 trust").address) == "10.0.0.128");
  }
  SECTION("leading zeros in the prefix length") {
    CHECK(rule_of("host all all 10.0.0.0/08 trust").address->prefix_len == 8);
    CHECK(rule_of("host all all 10.0.0.0/000 trust").address->prefix_len == 0);
  }
}

TEST_CASE("hba: IPv6 addresses", "[auth][hba]") {
  SECTION("::1/128") {
    const char* t = "host all all ::1/128 trust";
    CHECK(matches(t, tcp("::1")));
    CHECK(matches(t, tcp("0:0:0:0:0:0:0:1")));
    CHECK_FALSE(matches(t, tcp("::2")));
    CHECK_FALSE(matches(t, tcp("::")));
    CHECK_FALSE(matches(t, tcp("127.0.0.1")));
  }
  SECTION("::/0 matches every IPv6 peer and no IPv4 peer") {
    const char* t = "host all all ::/0 trust";
    CHECK(matches(t, tcp("::1")));
    CHECK(matches(t, tcp("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    CHECK(matches(t, tcp("::ffff:10.0.0.1")));
    CHECK_FALSE(matches(t, tcp("10.0.0.1")));
  }
  SECTION("prefixes that do not end on a byte") {
    const char* t = "host all all 2001:db8::/33 trust";
    CHECK(matches(t, tcp("2001:db8::1")));
    CHECK(matches(t, tcp("2001:db8:7fff:ffff::1")));
    CHECK_FALSE(matches(t, tcp("2001:db8:8000::")));
    CHECK_FALSE(matches(t, tcp("2001:db9::")));
    const char* t127 = "host all all fe80::2/127 trust";
    CHECK(matches(t127, tcp("fe80::2")));
    CHECK(matches(t127, tcp("fe80::3")));
    CHECK_FALSE(matches(t127, tcp("fe80::4")));
  }
  SECTION("host bits beyond the prefix are ignored") {
    auto r = rule_of("host all all 2001:db8::dead:beef/32 trust");
    CHECK(r.address->prefix_len == 32);
    CHECK(r.address->network[3] == 0xb8);
    for (size_t i = 4; i < 16; ++i) CHECK(r.address->network[i] == 0);
    CHECK(matches("host all all 2001:db8::dead:beef/32 trust", tcp("2001:db8:1::1")));
  }
  SECTION("IPv4-mapped peers match IPv6 rules only (as in PostgreSQL)") {
    CHECK_FALSE(matches("host all all 10.0.0.0/8 trust", tcp("::ffff:10.1.2.3")));
    CHECK(matches("host all all ::ffff:10.0.0.0/104 trust", tcp("::ffff:10.1.2.3")));
    CHECK_FALSE(matches("host all all ::ffff:10.0.0.0/104 trust", tcp("10.1.2.3")));
  }
  SECTION("the zone of a link-local peer does not take part") {
    CHECK(matches("host all all fe80::/10 trust", tcp("fe80::1%eth0")));
  }
}

TEST_CASE("hba: ADDRESS all and broken peer addresses", "[auth][hba]") {
  const char* t = "host all all all trust";
  CHECK(matches(t, tcp("10.0.0.1")));
  CHECK(matches(t, tcp("::1")));
  // A peer address that is no IP matches no host rule, not even all.
  CHECK_FALSE(matches(t, tcp("")));
  CHECK_FALSE(matches(t, tcp("localhost")));
  CHECK_FALSE(matches(t, tcp("10.0.0.1:5432")));
  CHECK_FALSE(matches(t, tcp(std::string("10.0.0.1\0x", 10))));
  CHECK_FALSE(matches("host all all 0.0.0.0/0 trust", tcp("garbage")));
  // ... but a local rule does not care about the address.
  HbaRequest req = unix_socket();
  req.address = "garbage";
  CHECK(matches("local all all trust", req));
}

TEST_CASE("hba: IP address with a netmask field", "[auth][hba]") {
  SECTION("IPv4") {
    auto r = rule_of("host all all 127.0.0.1 255.255.255.255 md5");
    REQUIRE(r.address);
    CHECK(r.address->family == HbaAddress::Family::ipv4);
    CHECK(r.address->prefix_len == 32);
    CHECK(r.method == HbaMethod::md5);
    CHECK(rule_of("host all all 10.0.0.0 255.0.0.0 md5").address->prefix_len == 8);
    CHECK(rule_of("host all all 10.0.0.0 255.255.240.0 md5").address->prefix_len == 20);
    CHECK(rule_of("host all all 0.0.0.0 0.0.0.0 md5").address->prefix_len == 0);
    CHECK(v4_network(*rule_of("host all all 10.9.8.7 255.255.0.0 md5").address) == "10.9.0.0");
    const char* t = "host all all 192.168.0.0 255.255.255.0 md5";
    CHECK(matches(t, tcp("192.168.0.200")));
    CHECK_FALSE(matches(t, tcp("192.168.1.1")));
  }
  SECTION("IPv6") {
    auto r = rule_of("host all all ::1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff md5");
    CHECK(r.address->family == HbaAddress::Family::ipv6);
    CHECK(r.address->prefix_len == 128);
    CHECK(rule_of("host all all fe80:: ffc0:: md5").address->prefix_len == 10);
    CHECK(rule_of("host all all :: :: md5").address->prefix_len == 0);
    CHECK(matches("host all all fe80:: ffc0:: md5", tcp("febf::1")));
    CHECK_FALSE(matches("host all all fe80:: ffc0:: md5", tcp("fec0::1")));
  }
  SECTION("errors") {
    CHECK(parse_error("host all all 127.0.0.1 md5\n") ==
          "pgmux_hba.conf:1: invalid netmask \"md5\" (an IP address without /prefix takes a netmask field)");
    CHECK(parse_error("host all all 127.0.0.1\n") ==
          "pgmux_hba.conf:1: missing netmask after IP address \"127.0.0.1\" (expected: host DATABASE USER "
          "ADDRESS METHOD [OPTIONS])");
    CHECK(parse_error("host all all 127.0.0.1 255.255.255.255\n") ==
          "pgmux_hba.conf:1: missing METHOD (expected: host DATABASE USER ADDRESS METHOD [OPTIONS])");
    CHECK(parse_error("host all all 127.0.0.1 ffff:: md5\n") ==
          "pgmux_hba.conf:1: IP address \"127.0.0.1\" and netmask \"ffff::\" are of different address families");
    CHECK(parse_error("host all all ::1 255.255.255.255 md5\n") ==
          "pgmux_hba.conf:1: IP address \"::1\" and netmask \"255.255.255.255\" are of different address "
          "families");
    CHECK(parse_error("host all all 10.0.0.0 255.0.255.0 md5\n") ==
          "pgmux_hba.conf:1: netmask \"255.0.255.0\" is not contiguous");
    CHECK(parse_error("host all all 10.0.0.0 255.255.255.254x md5\n") ==
          "pgmux_hba.conf:1: invalid netmask \"255.255.255.254x\" (an IP address without /prefix takes a "
          "netmask field)");
    CHECK(parse_error("host all all 10.0.0.0 0.255.255.255 md5\n") ==
          "pgmux_hba.conf:1: netmask \"0.255.255.255\" is not contiguous");
    CHECK(parse_error("host all all 10.0.0.0 255.255.255.253 md5\n") ==
          "pgmux_hba.conf:1: netmask \"255.255.255.253\" is not contiguous");
    CHECK(parse_error("host all all ::1 ffff::1 md5\n") == "pgmux_hba.conf:1: netmask \"ffff::1\" is not contiguous");
    CHECK(parse_error("host all all 10.0.0.0 255.0.0.0,255.0.0.0 md5\n") ==
          "pgmux_hba.conf:1: netmask must be a single value");
  }
}

TEST_CASE("hba: address errors", "[auth][hba]") {
  CHECK(parse_error("host all all db.example.com md5\n") ==
        "pgmux_hba.conf:1: host names are not supported by pgmux: \"db.example.com\"; write an IP address "
        "with /prefix, or all");
  CHECK(parse_error("host all all .example.com md5\n") ==
        "pgmux_hba.conf:1: host names are not supported by pgmux: \".example.com\"; write an IP address with "
        "/prefix, or all");
  CHECK(parse_error("host all all localhost md5\n") ==
        "pgmux_hba.conf:1: host names are not supported by pgmux: \"localhost\"; write an IP address with "
        "/prefix, or all");
  CHECK(parse_error("host all all \"all\" md5\n") ==
        "pgmux_hba.conf:1: host names are not supported by pgmux: \"all\" (quoted, so not the keyword all); "
        "write an IP address with /prefix, or all");
  CHECK(parse_error("host all all samehost md5\n") ==
        "pgmux_hba.conf:1: samehost is not supported by pgmux; write the addresses as CIDR");
  CHECK(parse_error("host all all samenet md5\n") ==
        "pgmux_hba.conf:1: samenet is not supported by pgmux; write the addresses as CIDR");
  CHECK(parse_error("host all all 300.1.1.1 255.0.0.0 md5\n") == "pgmux_hba.conf:1: invalid IP address \"300.1.1.1\"");
  CHECK(parse_error("host all all 1.2.3 255.0.0.0 md5\n") == "pgmux_hba.conf:1: invalid IP address \"1.2.3\"");
  CHECK(parse_error("host all all fe80::1%eth0 ffff:: md5\n") ==
        "pgmux_hba.conf:1: invalid IP address \"fe80::1%eth0\"");
  CHECK(parse_error("host all all 1::2::3 ffff:: md5\n") == "pgmux_hba.conf:1: invalid IP address \"1::2::3\"");
  CHECK(parse_error("host all all 10.0.0.0/33 md5\n") ==
        "pgmux_hba.conf:1: invalid prefix length in \"10.0.0.0/33\" (0..32 for IPv4)");
  CHECK(parse_error("host all all ::/129 md5\n") ==
        "pgmux_hba.conf:1: invalid prefix length in \"::/129\" (0..128 for IPv6)");
  CHECK(parse_error("host all all 10.0.0.0/ md5\n") ==
        "pgmux_hba.conf:1: invalid prefix length in \"10.0.0.0/\" (0..32 for IPv4)");
  CHECK(parse_error("host all all 10.0.0.0/-1 md5\n") ==
        "pgmux_hba.conf:1: invalid prefix length in \"10.0.0.0/-1\" (0..32 for IPv4)");
  CHECK(parse_error("host all all 10.0.0.0/+8 md5\n") ==
        "pgmux_hba.conf:1: invalid prefix length in \"10.0.0.0/+8\" (0..32 for IPv4)");
  CHECK(parse_error("host all all 10.0.0.0/8x md5\n") ==
        "pgmux_hba.conf:1: invalid prefix length in \"10.0.0.0/8x\" (0..32 for IPv4)");
  CHECK(parse_error("host all all 10.0.0.0/0008 md5\n") ==
        "pgmux_hba.conf:1: invalid prefix length in \"10.0.0.0/0008\" (0..32 for IPv4)");
  CHECK(parse_error("host all all 10.0.0.0/8/8 md5\n") ==
        "pgmux_hba.conf:1: invalid prefix length in \"10.0.0.0/8/8\" (0..32 for IPv4)");
  CHECK(parse_error("host all all ::1/99999999999999999999 md5\n") ==
        "pgmux_hba.conf:1: invalid prefix length in \"::1/99999999999999999999\" (0..128 for IPv6)");
  CHECK(parse_error("host all all 10.0.0/8 md5\n") ==
        "pgmux_hba.conf:1: invalid IP address \"10.0.0\" in \"10.0.0/8\"");
  CHECK(parse_error("host all all /8 md5\n") == "pgmux_hba.conf:1: invalid IP address \"\" in \"/8\"");
  CHECK(parse_error("host all all example.com/8 md5\n") ==
        "pgmux_hba.conf:1: invalid IP address \"example.com\" in \"example.com/8\"");
  CHECK(parse_error("host all all 10.0.0.0/8,::1/128 md5\n") ==
        "pgmux_hba.conf:1: address must be a single value");
  CHECK(parse_error("host all all\n") ==
        "pgmux_hba.conf:1: missing ADDRESS (expected: host DATABASE USER ADDRESS METHOD [OPTIONS])");
  CHECK(parse_error("hostssl all all 10.0.0.0/8\n") ==
        "pgmux_hba.conf:1: missing METHOD (expected: hostssl DATABASE USER ADDRESS METHOD [OPTIONS])");
  // Quoting does not hide an address (only the keywords).
  CHECK(rule_of("host all all \"10.0.0.0/8\" md5").address->prefix_len == 8);
}

TEST_CASE("hba: methods", "[auth][hba]") {
  CHECK(rule_of("local all all trust").method == HbaMethod::trust);
  CHECK(rule_of("local all all reject").method == HbaMethod::reject);
  CHECK(rule_of("local all all md5").method == HbaMethod::md5);
  CHECK(rule_of("local all all scram-sha-256").method == HbaMethod::scram_sha_256);
  CHECK(rule_of("hostssl all all all cert").method == HbaMethod::cert);
  CHECK(rule_of("host all all all \"md5\"").method == HbaMethod::md5);  // quotes do not matter here
  // A reject rule matches (and so decides) like any other.
  auto m = parse_ok("local all all reject\nlocal all all trust\n")->match(unix_socket());
  REQUIRE(m);
  CHECK(m->method == HbaMethod::reject);
  CHECK(m->line == 1);

  CHECK(parse_error("local all all password\n") ==
        "pgmux_hba.conf:1: password (cleartext) is not supported; use scram-sha-256");
  CHECK(rule_of("local all all peer").method == HbaMethod::peer);
  CHECK(parse_error("host all all all peer\n") ==
        "pgmux_hba.conf:1: peer authentication is only supported on local lines (unix sockets)");
  CHECK(rule_of("local all all peer map=admins").map == "admins");
  CHECK(rule_of("hostssl all all all cert map=certs").map == "certs");
  // As in PostgreSQL, not on password rules (also with clientcert=verify-full).
  CHECK(parse_error("hostssl all all all md5 clientcert=verify-full map=certs\n") ==
        "pgmux_hba.conf:1: map is only used with peer and cert (it maps the OS user or the certificate's common name)");
  CHECK(parse_error("local all all md5 map=admins\n") ==
        "pgmux_hba.conf:1: map is only used with peer and cert (it maps the OS user or the certificate's common name)");
  CHECK(parse_error("local all all peer map=a map=b\n") == "pgmux_hba.conf:1: map given twice");
  for (const char* method : {"ident", "gss", "sspi", "ldap", "radius", "pam", "bsd", "oauth"}) {
    CHECK(parse_error(std::string("host all all all ") + method + "\n") ==
          std::string("pgmux_hba.conf:1: authentication method \"") + method + "\" is not supported by pgmux");
  }
  CHECK(parse_error("local all all MD5\n") == "pgmux_hba.conf:1: unknown authentication method \"MD5\"");
  CHECK(parse_error("local all all scram-sha256\n") ==
        "pgmux_hba.conf:1: unknown authentication method \"scram-sha256\"");
  CHECK(parse_error("local all all krb5\n") == "pgmux_hba.conf:1: unknown authentication method \"krb5\"");
  CHECK(parse_error("local all all md5,trust\n") == "pgmux_hba.conf:1: authentication method must be a single value");
  CHECK(parse_error("local all all\n") ==
        "pgmux_hba.conf:1: missing METHOD (expected: local DATABASE USER METHOD [OPTIONS])");
  // An address on a local line.
  CHECK(parse_error("local all all 127.0.0.1/32 md5\n") ==
        "pgmux_hba.conf:1: unknown authentication method \"127.0.0.1/32\" (local lines have no ADDRESS field)");
  CHECK(parse_error("local all all ::1 md5\n") ==
        "pgmux_hba.conf:1: unknown authentication method \"::1\" (local lines have no ADDRESS field)");
  CHECK(parse_error("local all all all md5\n") ==
        "pgmux_hba.conf:1: unknown authentication method \"all\" (local lines have no ADDRESS field)");

  SECTION("cert only on hostssl") {
    CHECK(parse_error("local all all cert\n") == "pgmux_hba.conf:1: cert authentication is only supported on hostssl lines");
    CHECK(parse_error("host all all all cert\n") == "pgmux_hba.conf:1: cert authentication is only supported on hostssl lines");
    CHECK(parse_error("hostnossl all all all cert\n") ==
          "pgmux_hba.conf:1: cert authentication is only supported on hostssl lines");
  }
}

TEST_CASE("hba: options", "[auth][hba]") {
  CHECK(rule_of("hostssl all all all md5 clientcert=verify-ca").clientcert == "verify-ca");
  CHECK(rule_of("hostssl all all all scram-sha-256 clientcert=verify-full").clientcert == "verify-full");
  CHECK(rule_of("hostssl all all all trust clientcert=\"verify-full\"").clientcert == "verify-full");
  CHECK(rule_of("hostssl all all all cert clientcert=verify-full").clientcert == "verify-full");
  CHECK(rule_of("hostssl all all all cert").clientcert == "verify-full");
  CHECK_FALSE(rule_of("hostssl all all all md5").clientcert);
  CHECK_FALSE(rule_of("host all all all md5").clientcert);

  CHECK(parse_error("hostssl all all all cert clientcert=verify-ca\n") ==
        "pgmux_hba.conf:1: clientcert only accepts verify-full with cert authentication");
  CHECK(parse_error("host all all all md5 clientcert=verify-full\n") ==
        "pgmux_hba.conf:1: clientcert can only be configured for hostssl lines");
  CHECK(parse_error("hostnossl all all all md5 clientcert=verify-full\n") ==
        "pgmux_hba.conf:1: clientcert can only be configured for hostssl lines");
  CHECK(parse_error("local all all md5 clientcert=verify-full\n") ==
        "pgmux_hba.conf:1: clientcert can only be configured for hostssl lines");
  for (const char* v : {"1", "0", "no-verify", "", "VERIFY-FULL", "verify-full "}) {
    INFO(v);
    CHECK(parse_error(std::string("hostssl all all all md5 \"clientcert=") + v + "\"\n") ==
          std::string("pgmux_hba.conf:1: invalid clientcert value \"") + v + "\" (expected verify-ca or verify-full)");
  }
  CHECK(parse_error("hostssl all all all md5 clientcert=verify-ca clientcert=verify-full\n") ==
        "pgmux_hba.conf:1: clientcert given twice");
  CHECK(parse_error("hostssl all all all md5 clientcert\n") ==
        "pgmux_hba.conf:1: authentication option not in name=value format: \"clientcert\"");
  CHECK(parse_error("hostssl all all all cert map=\n") == "pgmux_hba.conf:1: empty map name");
  CHECK(parse_error("hostssl all all all cert clientname=DN\n") ==
        "pgmux_hba.conf:1: authentication option \"clientname\" is not supported by pgmux");
  CHECK(parse_error("host all all all md5 ldapserver=x\n") ==
        "pgmux_hba.conf:1: authentication option \"ldapserver\" is not supported by pgmux");
  CHECK(parse_error("host all all all md5 radiusservers=x\n") ==
        "pgmux_hba.conf:1: authentication option \"radiusservers\" is not supported by pgmux");
  CHECK(parse_error("host all all all md5 colour=blue\n") ==
        "pgmux_hba.conf:1: unknown authentication option \"colour\"");
  CHECK(parse_error("host all all all md5 =x\n") == "pgmux_hba.conf:1: unknown authentication option \"\"");
  CHECK(parse_error("host all all all md5 extra\n") ==
        "pgmux_hba.conf:1: authentication option not in name=value format: \"extra\"");
  // Options in a comma list are read one by one, as in PostgreSQL.
  CHECK(parse_error("hostssl all all all md5 clientcert=verify-ca,clientcert=verify-ca\n") ==
        "pgmux_hba.conf:1: clientcert given twice");
}

TEST_CASE("hba: unsupported DATABASE and USER forms", "[auth][hba]") {
  CHECK(parse_error("local samerole all md5\n") == "pgmux_hba.conf:1: samerole is not supported by pgmux (it has no roles)");
  CHECK(parse_error("local samegroup all md5\n") ==
        "pgmux_hba.conf:1: samegroup is not supported by pgmux (it has no roles)");
  CHECK(parse_error("local app,samerole all md5\n") ==
        "pgmux_hba.conf:1: samerole is not supported by pgmux (it has no roles)");
  CHECK(parse_error("local all +staff md5\n") ==
        "pgmux_hba.conf:1: +group (role membership) is not supported by pgmux: \"+staff\"");
  CHECK(parse_error("local all alice,+staff md5\n") ==
        "pgmux_hba.conf:1: +group (role membership) is not supported by pgmux: \"+staff\"");
  CHECK(parse_error("local all @users.txt md5\n") ==
        "pgmux_hba.conf:1: @file includes are not supported by pgmux: \"@users.txt\"");
  CHECK(parse_error("local @dbs all md5\n") == "pgmux_hba.conf:1: @file includes are not supported by pgmux: \"@dbs\"");
  CHECK(parse_error("local /^app_.*$ all md5\n") ==
        "pgmux_hba.conf:1: regular expressions are not supported by pgmux: \"/^app_.*$\"");
  CHECK(parse_error("local all \"/^a\" md5\n") ==
        "pgmux_hba.conf:1: regular expressions are not supported by pgmux: \"/^a\"");
  CHECK(parse_error("local \"\" all md5\n") == "pgmux_hba.conf:1: empty database name");
  CHECK(parse_error("local all \"\" md5\n") == "pgmux_hba.conf:1: empty user name");
  CHECK(parse_error("local all a,\"\" md5\n") == "pgmux_hba.conf:1: empty user name");
}

TEST_CASE("hba: connection type errors and include directives", "[auth][hba]") {
  CHECK(parse_error("# comment\n\nhots all all all md5\n") == "pgmux_hba.conf:3: unknown connection type \"hots\"");
  CHECK(parse_error("Host all all all md5\n") == "pgmux_hba.conf:1: unknown connection type \"Host\"");
  CHECK(parse_error("hostgssenc all all all md5\n") ==
        "pgmux_hba.conf:1: connection type \"hostgssenc\" is not supported by pgmux (no GSSAPI encryption)");
  CHECK(parse_error("hostnogssenc all all all md5\n") ==
        "pgmux_hba.conf:1: connection type \"hostnogssenc\" is not supported by pgmux (no GSSAPI encryption)");
  CHECK(parse_error("host,local all all all md5\n") == "pgmux_hba.conf:1: connection type must be a single value");
  for (const char* inc : {"include", "include_if_exists", "include_dir"}) {
    CHECK(parse_error(std::string(inc) + " other.conf\n") ==
          std::string("pgmux_hba.conf:1: include directives are not supported by pgmux (\"") + inc + "\")");
  }
  CHECK(parse_error("local\n") == "pgmux_hba.conf:1: missing DATABASE (expected: local DATABASE USER METHOD [OPTIONS])");
  CHECK(parse_error("local all\n") == "pgmux_hba.conf:1: missing USER (expected: local DATABASE USER METHOD [OPTIONS])");
  CHECK(parse_error("hostnossl all\n") ==
        "pgmux_hba.conf:1: missing USER (expected: hostnossl DATABASE USER ADDRESS METHOD [OPTIONS])");
  CHECK(parse_error("host\n") ==
        "pgmux_hba.conf:1: missing DATABASE (expected: host DATABASE USER ADDRESS METHOD [OPTIONS])");
}

TEST_CASE("hba: quoting", "[auth][hba]") {
  SECTION("blanks, commas and # inside quotes") {
    auto r = rule_of("local \"my db\",\"a,b\",\"#x\" \"first last\" trust");
    REQUIRE(r.databases.size() == 3);
    CHECK(r.databases[0].name == "my db");
    CHECK(r.databases[1].name == "a,b");
    CHECK(r.databases[2].name == "#x");
    CHECK(r.users[0].name == "first last");
    CHECK(matches("local \"my db\" all trust", unix_socket("my db")));
    CHECK_FALSE(matches("local \"a,b\" all trust", unix_socket("a")));
  }
  SECTION("a doubled quote inside quotes is one quote") {
    CHECK(rule_of("local \"a\"\"b\" all trust").databases[0].name == "a\"b");
    CHECK(rule_of("local \"\"\"\" all trust").databases[0].name == "\"");
    CHECK(rule_of("local \"x\"\"\" all trust").databases[0].name == "x\"");
  }
  SECTION("quotes in the middle of a field (PostgreSQL's tokenizer)") {
    CHECK(rule_of("local ab\"c d\"e all trust").databases[0].name == "abc de");
    CHECK(rule_of("local a\"ll\" all trust").databases[0].kind == HbaName::Kind::name);
    CHECK(rule_of("local a\"ll\" all trust").databases[0].name == "all");
  }
  SECTION("tabs and several blanks separate fields") {
    auto r = rule_of("  host\t\tapp  \t alice\t10.0.0.0/8   md5   ");
    CHECK(r.databases[0].name == "app");
    CHECK(r.users[0].name == "alice");
    CHECK(r.method == HbaMethod::md5);
  }
  SECTION("UTF-8 names") {
    auto r = rule_of("local caf\xC3\xA9 \"\xE2\x82\xAC user\" trust");
    CHECK(r.databases[0].name == "caf\xC3\xA9");
    CHECK(r.users[0].name == "\xE2\x82\xAC user");
    CHECK(matches("local caf\xC3\xA9 all trust", unix_socket("caf\xC3\xA9")));
  }
  SECTION("errors") {
    CHECK(parse_error("local \"all all trust\n") == "pgmux_hba.conf:1: unterminated quote");
    CHECK(parse_error("local all all trust\nlocal \"a\"\"\" \"b all trust\n") ==
          "pgmux_hba.conf:2: unterminated quote");
    CHECK(parse_error("local all all \"trust\n") == "pgmux_hba.conf:1: unterminated quote");
    // A quoted field cannot continue on the next line without a backslash.
    CHECK(parse_error("local \"a\nb\" all trust\n") == "pgmux_hba.conf:1: unterminated quote");
  }
}

TEST_CASE("hba: list syntax errors", "[auth][hba]") {
  CHECK(parse_error("local a,,b all trust\n") == "pgmux_hba.conf:1: empty element in a comma-separated list");
  CHECK(parse_error("local ,a all trust\n") == "pgmux_hba.conf:1: empty element in a comma-separated list");
  CHECK(parse_error("local a ,b all trust\n") == "pgmux_hba.conf:1: empty element in a comma-separated list");
  CHECK(parse_error("local a, ,b all trust\n") == "pgmux_hba.conf:1: empty element in a comma-separated list");
  CHECK(parse_error("local all all trust,\n") == "pgmux_hba.conf:1: comma-separated list ends with a comma");
  CHECK(parse_error("local all all trust, # comment\n") ==
        "pgmux_hba.conf:1: comma-separated list ends with a comma");
  CHECK(parse_error("local all a,#b trust\n") == "pgmux_hba.conf:1: comma-separated list ends with a comma");
}

TEST_CASE("hba: comments, blank lines, line ends, continuations", "[auth][hba]") {
  SECTION("comments and blank lines") {
    auto rules = parse_ok(
        "# header\n"
        "\n"
        "   \t  \n"
        "   # indented comment with \"an unterminated quote\n"
        "local all all trust# comment right after the method\n"
        "local all all md5 #clientcert=bogus\n"
        "#local all all bogus\n");
    REQUIRE(rules->rules.size() == 2);
    CHECK(rules->rules[0].line == 5);
    CHECK(rules->rules[0].method == HbaMethod::trust);
    CHECK(rules->rules[1].line == 6);
    CHECK_FALSE(rules->rules[1].clientcert);
    // '#' ends a token in the middle, too.
    CHECK(parse_error("local all alice#bob trust\n") ==
          "pgmux_hba.conf:1: missing METHOD (expected: local DATABASE USER METHOD [OPTIONS])");
  }
  SECTION("CRLF, a BOM, no final newline") {
    auto rules = parse_ok("\xEF\xBB\xBFlocal all all trust\r\nhost all all ::1/128 md5\r\n\r\nlocal a b reject");
    REQUIRE(rules->rules.size() == 3);
    CHECK(rules->rules[0].method == HbaMethod::trust);
    CHECK(rules->rules[1].method == HbaMethod::md5);
    CHECK(rules->rules[2].line == 4);
    CHECK(rules->rules[2].users[0].name == "b");
    // A BOM anywhere else is not a blank.
    CHECK(parse_error("local all all trust\n\xEF\xBB\xBFlocal all all trust\n") ==
          "pgmux_hba.conf:2: unknown connection type \"???local\"");
  }
  SECTION("a backslash at the end of a line continues the record") {
    auto rules = parse_ok(
        "host all \\\n"
        "     alice \\\n"
        "     10.0.0.0/8 md5\n"
        "local all al\\\n"
        "ice trust\n"  // the line break vanishes: "alice"
        "local all bob trust\\");  // at the end of the text: just dropped
    REQUIRE(rules->rules.size() == 3);
    CHECK(rules->rules[0].line == 1);
    CHECK(rules->rules[0].users[0].name == "alice");
    CHECK(rules->rules[0].address->prefix_len == 8);
    CHECK(rules->rules[1].line == 4);
    CHECK(rules->rules[1].users[0].name == "alice");
    CHECK(rules->rules[2].line == 6);
    // Continuations apply inside quotes and comments too (PostgreSQL 14+).
    CHECK(rule_of("local \"a \\\nb\" all trust").databases[0].name == "a b");
    auto c = parse_ok("# comment \\\nlocal all all reject\nlocal all all trust\n");
    REQUIRE(c->rules.size() == 1);
    CHECK(c->rules[0].line == 3);
    // CRLF before the continuation.
    CHECK(rule_of("local all \\\r\nalice trust\r\n").users[0].name == "alice");
    // A backslash elsewhere is an ordinary character.
    CHECK(rule_of("local a\\b all trust").databases[0].name == "a\\b");
    // Errors name the first line of the record.
    CHECK(parse_error("local all all trust\nhost all \\\nall \\\nall bogus\n") ==
          "pgmux_hba.conf:2: unknown authentication method \"bogus\"");
  }
}

TEST_CASE("hba: errors name the first bad line", "[auth][hba]") {
  CHECK(parse_error("local all all trust\nlocal all all bogus\nhots all all trust\n") ==
        "pgmux_hba.conf:2: unknown authentication method \"bogus\"");
  CHECK(parse_hba("x", "/etc/pgmux/hba.conf").error == "/etc/pgmux/hba.conf:1: unknown connection type \"x\"");
  // Non-printable bytes in the echoed token become '?', long tokens are cut.
  CHECK(parse_error("local all all tr\xC3\xBCst\n") == "pgmux_hba.conf:1: unknown authentication method \"tr??st\"");
  const std::string long_name(100, 'x');
  CHECK(parse_error(long_name + "\n") ==
        "pgmux_hba.conf:1: unknown connection type \"" + std::string(64, 'x') + "...\"");
}

TEST_CASE("hba: hostile bytes", "[auth][hba]") {
  CHECK(parse_error(std::string("local all all trust\nlocal all a\0b trust\n", 40)) == "pgmux_hba.conf:2: NUL byte");
  CHECK(parse_error(std::string("# comment \0\n", 12)) == "pgmux_hba.conf:1: NUL byte");
  CHECK(parse_error("local all all trust\x01\n") == "pgmux_hba.conf:1: control character 0x01");
  CHECK(parse_error("local all all trust\x7f\n") == "pgmux_hba.conf:1: control character 0x7f");
  CHECK(parse_error("local all\vall trust\n") == "pgmux_hba.conf:1: control character 0x0b");
  CHECK(parse_error("local all\fall trust\n") == "pgmux_hba.conf:1: control character 0x0c");
  CHECK(parse_error("\x1b[31mlocal all all trust\n") == "pgmux_hba.conf:1: control character 0x1b");
  // A lone CR is a blank (PostgreSQL's pg_isblank).
  CHECK(rule_of("local\rall\rall\rtrust").method == HbaMethod::trust);

  SECTION("invalid UTF-8") {
    for (const char* bad : {"\x80", "\xBF", "\xC3", "\xC3(", "\xC0\xAF", "\xC1\xBF", "\xE0\x80\xAF",
                            "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xF8\x88\x80\x80\x80", "\xFF", "\xFE",
                            "\xF0\x9F\x98"}) {
      INFO(bad);
      CHECK(parse_error(std::string("local all all trust\n# ") + bad + "\n") == "pgmux_hba.conf:2: invalid UTF-8");
    }
    // Valid: 2-, 3- and 4-byte sequences, the largest code point.
    CHECK(rule_of("local \xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF all trust")
              .databases[0]
              .name.size() == 18);
  }
}

TEST_CASE("hba: limits", "[auth][hba]") {
  SECTION("a record of 8 KiB is fine, one byte more is not") {
    const std::string head = "local all ";
    const std::string tail = " trust";
    const std::string user(8192 - head.size() - tail.size(), 'u');
    auto rules = parse_ok(head + user + tail + "\n");
    CHECK(rules->rules[0].users[0].name == user);
    CHECK(parse_ok(head + user + tail + "\r\n"));  // the line end does not count
    CHECK(parse_error("local all all trust\n" + head + user + "u" + tail + "\n") ==
          "pgmux_hba.conf:2: line too long (more than 8192 bytes)");
    CHECK(parse_error("# " + std::string(9000, 'c') + "\n") == "pgmux_hba.conf:1: line too long (more than 8192 bytes)");
    // Continuations count together.
    const std::string half(5000, 'u');
    CHECK(parse_error("local all " + half + "\\\n" + half + " trust\n") ==
          "pgmux_hba.conf:1: line too long (more than 8192 bytes)");
    // Many continued empty lines: still short.
    std::string many = "local all all \\\n";
    for (int i = 0; i < 20000; ++i) many += "\\\n";
    many += "trust\n";
    CHECK(parse_ok(many)->rules[0].method == HbaMethod::trust);
  }
  SECTION("10000 rules, not one more") {
    std::string text;
    for (int i = 0; i < 10000; ++i) text += "local db" + std::to_string(i) + " all trust\n";
    text += "# comments after the last rule are fine\n\n";
    auto rules = parse_ok(text);
    CHECK(rules->rules.size() == 10000);
    CHECK(rules->rules.back().line == 10000);
    CHECK(line_for(*rules, unix_socket("db9999")) == 10000);
    CHECK(parse_error(text + "local all all trust\n") == "pgmux_hba.conf:10003: too many rules (at most 10000)");
  }
}

TEST_CASE("hba: a file without rules is refused", "[auth][hba]") {
  CHECK(parse_error("") == "pgmux_hba.conf: no rules (every connection would be rejected)");
  CHECK(parse_error("# only comments\n\n  \n") == "pgmux_hba.conf: no rules (every connection would be rejected)");
  CHECK(parse_error("\xEF\xBB\xBF") == "pgmux_hba.conf: no rules (every connection would be rejected)");
}

TEST_CASE("hba: arbitrary bytes never throw, errors are one printable line", "[auth][hba]") {
  // A small deterministic mutation run over valid lines; tests/fuzz/fuzz_hba.cpp does the real work.
  const std::string base =
      "local all all trust\nhost \"a b\",c all 10.0.0.0/8 md5\nhostssl all all ::1 ffff:: cert clientcert=verify-full\n"
      "host all all 127.0.0.1 255.255.255.255 scram-sha-256 # c\n";
  uint32_t s = 12345;
  auto next = [&s] {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return s;
  };
  for (int round = 0; round < 3000; ++round) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = next() % (text.size() + 1);
      switch (next() % 3) {
        case 0:
          text.insert(at, 1, static_cast<char>(next() & 0xff));
          break;
        case 1:
          if (at < text.size()) text.erase(at, 1 + next() % 8);
          break;
        default:
          if (at < text.size()) text[at] = "\"#,\\ \t\n/:.0@+="[next() % 15];
          break;
      }
    }
    HbaLoadResult r;
    REQUIRE_NOTHROW(r = parse_hba(text, kSource));
    CHECK((r.rules == nullptr) != r.error.empty());
    if (!r.rules) {
      CHECK(r.error.rfind("pgmux_hba.conf:", 0) == 0);
      for (char ch : r.error) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c > 0x7e) FAIL("non-printable byte in error: " << r.error);
      }
    } else {
      for (const auto& rule : r.rules->rules) {
        CHECK_FALSE(rule.databases.empty());
        CHECK_FALSE(rule.users.empty());
        CHECK(rule.address.has_value() == (rule.type != HbaConnType::local));
      }
      (void)r.rules->match(tcp("10.1.1.1"));
    }
  }
}

TEST_CASE("load_hba_file", "[auth][hba]") {
  char path[] = "/tmp/pgmux_hba_testXXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream f(path, std::ios::binary);
    f << "# pgmux\nhost all all 10.0.0.0/8 scram-sha-256\n";
  }
  auto r = load_hba_file(path);
  REQUIRE(r.rules);
  CHECK(r.error.empty());
  REQUIRE(r.rules->rules.size() == 1);
  CHECK(r.rules->rules[0].line == 2);
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << "local all all trust\nhots all all md5\n";
  }
  r = load_hba_file(path);
  CHECK_FALSE(r.rules);
  CHECK(r.error == std::string(path) + ":2: unknown connection type \"hots\"");
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
  }
  r = load_hba_file(path);
  CHECK_FALSE(r.rules);
  CHECK(r.error == std::string(path) + ": no rules (every connection would be rejected)");
  std::remove(path);

  r = load_hba_file(path);
  CHECK_FALSE(r.rules);
  CHECK(r.error == std::string(path) + ": cannot open: No such file or directory");
}

TEST_CASE("ident maps: names, regular expressions with \\1, all", "[auth][hba][ident]") {
  auto r = parse_ident("# comment\n"
                       "ops   alice      admin\n"
                       "ops   /^(.*)@example\\.com$   \\1\n"
                       "ops   \"/literal\" lit\n"
                       "any   root       all\n",
                       "ident.conf");
  INFO(r.error);
  REQUIRE(r.map);
  const IdentMap& m = *r.map;
  CHECK(m.has_map("ops"));
  CHECK(m.has_map("any"));
  CHECK_FALSE(m.has_map("nope"));
  CHECK(m.allows("ops", "alice", "admin"));
  CHECK_FALSE(m.allows("ops", "alice", "alice"));
  CHECK_FALSE(m.allows("other", "alice", "admin"));
  CHECK(m.allows("ops", "bob@example.com", "bob"));
  CHECK_FALSE(m.allows("ops", "bob@example.com", "carol"));
  CHECK_FALSE(m.allows("ops", "bob@example.org", "bob"));
  CHECK(m.allows("ops", "/literal", "lit"));  // quoted: a name, not an expression
  CHECK(m.allows("any", "root", "whoever"));
  CHECK_FALSE(m.allows("any", "nobody", "whoever"));

  // As PostgreSQL: the expression is searched, not anchored; only the first
  // \1 is replaced; a \1 whose group took no part allows nothing.
  auto more = parse_ident("part /ob x\nmulti /^(a)(b)$ \\1-\\1\nopt /^(a)?bob$ x\\1y\n", "ident.conf");
  REQUIRE(more.map);
  CHECK(more.map->allows("part", "robert", "x"));
  CHECK_FALSE(more.map->allows("part", "alice", "x"));
  CHECK(more.map->allows("multi", "ab", "a-\\1"));
  CHECK_FALSE(more.map->allows("multi", "ab", "a-a"));
  CHECK(more.map->allows("opt", "abob", "xay"));
  CHECK_FALSE(more.map->allows("opt", "bob", "xy"));
  CHECK(m.entries[1].line == 3);

  auto err = [](std::string_view text) {
    auto x = parse_ident(text, "ident.conf");
    CHECK_FALSE(x.map);
    return x.error;
  };
  CHECK(err("ops alice\n") == "ident.conf:1: expected MAPNAME SYSTEM-USERNAME DATABASE-USERNAME");
  CHECK(err("ops alice admin extra\n") == "ident.conf:1: expected MAPNAME SYSTEM-USERNAME DATABASE-USERNAME");
  CHECK(err("ops a,b admin\n") == "ident.conf:1: a list where one value is expected");
  CHECK(err("\nops alice +admins\n") ==
        "ident.conf:2: group roles and regular expressions as DATABASE-USERNAME are not supported by pgmux");
  CHECK(err("ops /(unclosed admin\n").rfind("ident.conf:1: invalid regular expression \"(unclosed\"", 0) == 0);
  // An empty file is a valid (empty) map set.
  auto empty = parse_ident("# nothing\n", "ident.conf");
  REQUIRE(empty.map);
  CHECK(empty.map->entries.empty());
}
