// pg_hba.conf-style access rules: which connections may log in, and how.
//
// One rule per line, PostgreSQL's format (client-auth.sgml, "The pg_hba.conf
// File"):
//
//   local      DATABASE USER                 METHOD [OPTIONS]
//   host       DATABASE USER ADDRESS         METHOD [OPTIONS]
//   hostssl    DATABASE USER IP-ADDRESS IP-MASK METHOD [OPTIONS]
//   hostnossl  ...
//
// Fields are separated by blanks (space, tab, CR); '#' outside quotes starts
// a comment; blank lines are ignored; a line ending in '\' continues on the
// next one (PostgreSQL 14+; even inside quotes or a comment), and errors name
// the record's first line. Double quotes may appear anywhere in a field and
// "" inside quotes is one quote; any quote in a list element makes it a plain
// name ("all" is a database called all, "+x" a user called +x). DATABASE and
// USER are comma-separated lists ("a, b" is one list, as in PostgreSQL).
// Keywords, connection types, methods and option names are case-sensitive.
//
// The first rule whose type, database, user and address match decides; when
// none matches the caller rejects the connection.
//
// Supported:
//   DATABASE  all, sameuser, replication (accepted but never matches: pgmux
//             refuses replication connections), names
//   USER      all, names
//   ADDRESS   all, IPv4/IPv6 CIDR ("10.0.0.0/8", "::1/128"), or an IP address
//             followed by a netmask column ("127.0.0.1 255.255.255.255").
//             Host bits set beyond the prefix are ignored (PostgreSQL masks
//             them too). An IPv4 rule matches only IPv4 peers and an IPv6
//             rule only IPv6 peers, even for IPv4-mapped IPv6 peers
//             (::ffff:1.2.3.4), as PostgreSQL documents; "all" matches both.
//   METHOD    trust, reject, md5, scram-sha-256, cert (hostssl only), peer
//             (local only: the client process's OS user must be the user
//             name, or map= says which may)
//   OPTIONS   clientcert=verify-ca|verify-full (hostssl only; cert implies
//             verify-full and refuses verify-ca, as in PostgreSQL);
//             map=NAME (peer, cert, clientcert=verify-full: see IdentMap)
//
// Refused with an error naming the line (the whole file is refused: a
// half-loaded access policy is worse than none):
//   samerole/samegroup, +group, @file, /regex, include directives,
//   samehost/samenet, host names, non-contiguous netmasks, hostgssenc and
//   hostnogssenc, password and the methods pgmux does not implement (ident,
//   gss, sspi, ldap, radius, pam, bsd), peer on host lines, any other option, an empty
//   name or list element, a list where one value is expected, an
//   unterminated quote, NUL bytes and other control characters, invalid
//   UTF-8, records longer than 8 KiB, more than 10000 rules, and a file
//   without any rule (as PostgreSQL does).
//
// Stricter than PostgreSQL, which accepts these silently: an unterminated
// quote, empty list elements ("a,,b", "a," at the end), netmasks that are
// not contiguous, control characters and invalid UTF-8.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::auth {

enum class HbaConnType { local, host, hostssl, hostnossl };
enum class HbaMethod { trust, reject, md5, scram_sha_256, cert, peer };

// "local", "hostssl", ...; "trust", "scram-sha-256", ... (as written in the file)
std::string_view to_string(HbaConnType type);
std::string_view to_string(HbaMethod method);

// One element of a DATABASE or USER list.
struct HbaName {
  enum class Kind {
    name,         // matches exactly `name` (case-sensitive)
    all,          // every database / user
    sameuser,     // DATABASE only: the database named like the user
    replication,  // DATABASE only: physical replication; never matches in pgmux
  };
  Kind kind = Kind::name;
  std::string name;  // kind == name
};

struct HbaAddress {
  enum class Family { any, ipv4, ipv6 };  // any: the keyword all
  Family family = Family::any;
  std::array<uint8_t, 16> network{};  // host bits cleared; IPv4 in the first 4 bytes
  int prefix_len = 0;                 // 0..32 (ipv4), 0..128 (ipv6)
};

struct HbaRule {
  HbaConnType type = HbaConnType::local;
  std::vector<HbaName> databases;      // never empty
  std::vector<HbaName> users;          // never empty
  std::optional<HbaAddress> address;   // nullopt exactly for local
  HbaMethod method = HbaMethod::reject;
  // "verify-ca" or "verify-full": the client must present a certificate the
  // CA trusts (verify-full: whose CN is the user name). Always "verify-full"
  // for cert; only on hostssl rules.
  std::optional<std::string> clientcert;
  // map=NAME: the ident map that says which OS user (peer) or certificate
  // common name (cert, clientcert=verify-full) may log in as which user.
  std::optional<std::string> map;
  int line = 0;  // first line of the record in the file
};

struct HbaRequest {
  bool unix_socket = false;  // else TCP
  bool tls = false;          // TCP only: the connection is encrypted
  std::string address;       // TCP: the peer IP as text ("127.0.0.1", "::1", "fe80::1%eth0")
  std::string database;
  std::string user;
};

struct HbaMatch {
  HbaMethod method = HbaMethod::reject;
  int line = 0;
  std::optional<std::string> clientcert;  // as on the rule
  std::optional<std::string> map;         // as on the rule
};

struct HbaRules {
  std::vector<HbaRule> rules;  // in file order
  // The first matching rule; nullopt when none matches (the caller rejects).
  // A TCP request whose address is not an IP address matches no host rule,
  // not even "all".
  std::optional<HbaMatch> match(const HbaRequest& request) const;
};

struct HbaLoadResult {
  std::shared_ptr<const HbaRules> rules;  // null on error
  // One line, printable ASCII after the source: "<source>:<line>: <reason>",
  // or "<source>: <reason>" when no line is to blame.
  std::string error;
};

// `source` names the text in errors (the file's path).
HbaLoadResult parse_hba(std::string_view text, const std::string& source);
// Errors: "<path>: cannot open: <reason>", "<path>: cannot read: <reason>",
// or parse_hba's with the path as source.
HbaLoadResult load_hba_file(const std::string& path);

// pg_ident.conf-style user name maps ([auth] ident_file, PgBouncer's
// auth_ident_file), for map= on peer and cert rules:
//
//   MAPNAME  SYSTEM-USERNAME  DATABASE-USERNAME
//
// SYSTEM-USERNAME is a name, or /regex (ECMAScript, searched unanchored as
// PostgreSQL does; \1 in DATABASE-USERNAME is its first group);
// DATABASE-USERNAME is a name or all. Same lexical rules as the hba file.
// Refused: +group and /regex as DATABASE-USERNAME, include directives.
struct IdentEntry {
  std::string map;
  std::string system_user;                    // the name, or the expression without its '/'
  std::shared_ptr<const std::regex> pattern;  // set for /regex entries
  std::string database_user;
  bool all_users = false;  // DATABASE-USERNAME all
  int line = 0;
};

struct IdentMap {
  std::vector<IdentEntry> entries;  // in file order
  bool has_map(std::string_view name) const;
  // A line of `map` lets OS user / certificate name `system_user` log in
  // as `database_user`.
  bool allows(std::string_view map, const std::string& system_user, std::string_view database_user) const;
};

struct IdentLoadResult {
  std::shared_ptr<const IdentMap> map;  // null on error
  std::string error;                    // as HbaLoadResult's
};
IdentLoadResult parse_ident(std::string_view text, const std::string& source);
IdentLoadResult load_ident_file(const std::string& path);

}  // namespace pgmux::auth
