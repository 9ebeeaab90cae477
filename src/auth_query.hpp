// auth_query: secrets of users missing from the userlist, looked up in
// PostgreSQL with [auth] query as [auth] query_user.
//
// - The lookups run on pools of their own (PoolKey::auth), whose connections
//   never carry anything a client sent (a client's search_path or other
//   startup parameter cannot change what the query reads: CVE-2025-12819
//   class); the user name is a bound parameter, never SQL text.
// - Concurrent lookups of one user on a worker share one query, and answers
//   (found or not) are cached for kCacheFor in a cache all workers share
//   (Hub::auth_cache), so a connection storm costs one query per user and
//   period (one per worker at most when they ask at the same moment).
// - A NULL secret (the default query's answer for an expired VALID UNTIL) is
//   "no such user".
// - Answers are kept per database entry *and* per database the query ran in:
//   for the "*" entry without query_database the client picks the latter, and
//   an answer read there must not serve logins to another database.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "auth/userlist.hpp"
#include "conf/config.hpp"
#include "pool/pool.hpp"

namespace pgmux {

class Worker;
class ClientConnection;

class AuthQuery {
 public:
  static constexpr std::chrono::seconds kCacheFor{5};

  enum class Answer { found, not_found, pending, failed };
  explicit AuthQuery(Worker& w);
  ~AuthQuery();

  // The secret of `user` for a login to database entry `db`: from the cache
  // (found / not_found, `secret` set when found), or pending: the client
  // gets auth_lookup_done later (unless it leaves first: forget()).
  Answer lookup(ClientConnection* c, const conf::DatabaseConfig& db, const std::string& user,
                std::optional<auth::Secret>& secret);
  void forget(ClientConnection* c);
  // The secret a lookup found for `user` when a login to client database
  // `database` succeeded with it (server logins of that database's pools
  // with md5 or plaintext secrets need it after the cache entry expired).
  const auth::Secret* known(const std::string& database, const std::string& user) const;
  // Only after the client proved its password: an unauthenticated client
  // must not grow or change these.
  void remember(const std::string& database, const std::string& user, const auth::Secret& secret);
  // The pools of `database` went (a "*" name unused for autodb_idle_timeout).
  void forget_database(const std::string& database);
  // Gives up on lookups older than `limit` (client_login_timeout).
  void tick(pool::TimePoint now, pool::Duration limit);

 private:
  class Lookup;
  friend class Lookup;
  // (database entry + '\x1f' + the database the query runs in, user)
  using Key = std::pair<std::string, std::string>;
  void finished(Lookup* l, Answer a, std::optional<auth::Secret> secret, const std::string& error);

  Worker& worker_;
  std::map<Key, std::unique_ptr<Lookup>> running_;
  std::map<std::pair<std::string, std::string>, auth::Secret> known_;  // (client database, user)
};

}  // namespace pgmux
