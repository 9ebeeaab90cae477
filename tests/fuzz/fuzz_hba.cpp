// pg_hba.conf-style rules (auth/hba.hpp): parse_hba and HbaRules::match.
// Input: the text of an hba file.
//
// Properties:
//  - parse_hba never throws and gives exactly one of rules or an error; an
//    error is one line of printable ASCII starting with the source and ':'.
//  - ok => 1..10000 rules, lines strictly increasing; each rule has a
//    database and a user, no empty or '/'-leading name, an address exactly
//    when not local, a prefix length in range with the host bits cleared,
//    cert only on hostssl with clientcert verify-full, clientcert only on
//    hostssl, peer only on local, map= only with peer or cert.
//  - ok => the rules written back in the format (names quoted, addresses as
//    CIDR), when every line stays within the 8 KiB limit, parse to the same
//    rules.
//  - match: a request built from a rule (its network address, a name it
//    lists) is decided by that rule or an earlier one; a request built from
//    the input's last bytes is decided by a rule of the file or by none.
#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "auth/hba.hpp"
#include "fuzz_check.hpp"

using namespace pgmux::auth;

namespace {

const std::string kSource = "fuzz_hba.conf";

std::string format_names(const std::vector<HbaName>& names) {
  std::string out;
  for (const HbaName& n : names) {
    if (!out.empty()) out += ',';
    switch (n.kind) {
      case HbaName::Kind::all:
        out += "all";
        break;
      case HbaName::Kind::sameuser:
        out += "sameuser";
        break;
      case HbaName::Kind::replication:
        out += "replication";
        break;
      case HbaName::Kind::name:
        out += pgmux::fuzz::quote(n.name);
        break;
    }
  }
  return out;
}

std::string format_ip(const HbaAddress& a) {
  char buf[INET6_ADDRSTRLEN];
  const bool v6 = a.family == HbaAddress::Family::ipv6;
  FUZZ_CHECK(inet_ntop(v6 ? AF_INET6 : AF_INET, a.network.data(), buf, sizeof buf) != nullptr);
  return buf;
}

std::string format_rule(const HbaRule& r) {
  std::string out = std::string(to_string(r.type)) + " " + format_names(r.databases) + " " + format_names(r.users);
  if (r.address) {
    if (r.address->family == HbaAddress::Family::any) {
      out += " all";
    } else {
      out += " " + format_ip(*r.address) + "/" + std::to_string(r.address->prefix_len);
    }
  }
  out += " " + std::string(to_string(r.method));
  if (r.clientcert) out += " clientcert=" + *r.clientcert;
  if (r.map) out += " " + pgmux::fuzz::quote("map=" + *r.map);
  return out;
}

bool same_names(const std::vector<HbaName>& a, const std::vector<HbaName>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].kind != b[i].kind || a[i].name != b[i].name) return false;
  return true;
}

bool same_rule(const HbaRule& a, const HbaRule& b) {
  if (a.type != b.type || a.method != b.method || a.clientcert != b.clientcert || a.map != b.map) return false;
  if (!same_names(a.databases, b.databases) || !same_names(a.users, b.users)) return false;
  if (a.address.has_value() != b.address.has_value()) return false;
  if (a.address && (a.address->family != b.address->family || a.address->network != b.address->network ||
                    a.address->prefix_len != b.address->prefix_len))
    return false;
  return true;
}

void check_rule(const HbaRule& r) {
  FUZZ_CHECK(!r.databases.empty() && !r.users.empty());
  for (const auto* list : {&r.databases, &r.users}) {
    for (const HbaName& n : *list) {
      if (n.kind == HbaName::Kind::name) {
        FUZZ_CHECK(!n.name.empty() && n.name[0] != '/');
      } else {
        FUZZ_CHECK(n.name.empty());
      }
    }
  }
  for (const HbaName& n : r.users) FUZZ_CHECK(n.kind == HbaName::Kind::name || n.kind == HbaName::Kind::all);
  FUZZ_CHECK(r.address.has_value() == (r.type != HbaConnType::local));
  if (r.address && r.address->family != HbaAddress::Family::any) {
    const int max = r.address->family == HbaAddress::Family::ipv6 ? 128 : 32;
    FUZZ_CHECK(r.address->prefix_len >= 0 && r.address->prefix_len <= max);
    for (int bit = r.address->prefix_len; bit < 128; ++bit)
      FUZZ_CHECK((r.address->network[bit / 8] & (0x80 >> (bit % 8))) == 0);
  }
  if (r.address && r.address->family == HbaAddress::Family::any) FUZZ_CHECK(r.address->prefix_len == 0);
  if (r.method == HbaMethod::cert) FUZZ_CHECK(r.type == HbaConnType::hostssl && r.clientcert == "verify-full");
  if (r.clientcert) {
    FUZZ_CHECK(r.type == HbaConnType::hostssl);
    FUZZ_CHECK(*r.clientcert == "verify-ca" || *r.clientcert == "verify-full");
  }
  if (r.method == HbaMethod::peer) FUZZ_CHECK(r.type == HbaConnType::local);
  if (r.map) FUZZ_CHECK(!r.map->empty() && (r.method == HbaMethod::peer || r.method == HbaMethod::cert));
}

// A request the rule matches, if it can match anything at all.
bool request_for(const HbaRule& r, HbaRequest& req) {
  req = HbaRequest{};
  const HbaName* db = nullptr;
  for (const HbaName& n : r.databases)
    if (n.kind != HbaName::Kind::replication) db = &n;
  if (!db) return false;  // replication only: matches nothing
  const HbaName& user = r.users.front();
  req.user = user.kind == HbaName::Kind::name ? user.name : "someone";
  req.database = db->kind == HbaName::Kind::name ? db->name : req.user;
  req.unix_socket = r.type == HbaConnType::local;
  req.tls = r.type == HbaConnType::hostssl;
  if (r.address) req.address = r.address->family == HbaAddress::Family::any ? "::1" : format_ip(*r.address);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const HbaLoadResult r = parse_hba(text, kSource);
  FUZZ_CHECK((r.rules == nullptr) != r.error.empty());
  if (!r.rules) {
    FUZZ_CHECK(r.error.rfind(kSource + ":", 0) == 0);
    for (char ch : r.error) {
      const auto c = static_cast<unsigned char>(ch);
      FUZZ_CHECK(c >= 0x20 && c <= 0x7e);
    }
    return 0;
  }

  const auto& rules = r.rules->rules;
  FUZZ_CHECK(!rules.empty() && rules.size() <= 10000);
  int last_line = 0;
  std::string again;
  bool fits = true;
  for (const HbaRule& rule : rules) {
    FUZZ_CHECK(rule.line > last_line);
    last_line = rule.line;
    check_rule(rule);
    const std::string line = format_rule(rule);
    if (line.size() > 8192) fits = false;
    again += line + "\n";

    HbaRequest req;
    if (request_for(rule, req)) {
      const auto m = r.rules->match(req);
      FUZZ_CHECK(m && m->line <= rule.line);
    }
  }

  if (fits) {
    const HbaLoadResult r2 = parse_hba(again, kSource);
    FUZZ_CHECK(r2.rules != nullptr);
    FUZZ_CHECK(r2.rules->rules.size() == rules.size());
    for (size_t i = 0; i < rules.size(); ++i) {
      FUZZ_CHECK(same_rule(rules[i], r2.rules->rules[i]));
      FUZZ_CHECK(r2.rules->rules[i].line == static_cast<int>(i + 1));
    }
  }

  // A request from the input's tail: whatever it holds, the answer is a rule
  // of the file (or none).
  HbaRequest req;
  const std::string_view tail = text.substr(size - std::min<size_t>(size, 48));
  req.unix_socket = !tail.empty() && (tail[0] & 1);
  req.tls = !tail.empty() && (tail[0] & 2);
  req.address = std::string(tail.substr(std::min<size_t>(tail.size(), 1)));
  req.database = req.address;
  req.user = std::string(tail.substr(0, tail.size() / 2));
  if (const auto m = r.rules->match(req)) {
    bool found = false;
    for (const HbaRule& rule : rules) found = found || (rule.line == m->line && rule.method == m->method);
    FUZZ_CHECK(found);
  }
  return 0;
}
