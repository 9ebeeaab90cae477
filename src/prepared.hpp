// Named prepared statements under transaction pooling.
//
// Clients name statements as they like; pgmux gives every distinct
// (query, parameter types) one server-side name "pgmux_<id>" shared by all
// clients of the worker, so a statement prepared on a server connection by
// one client serves every other client that prepares the same text.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "protocol/sql_commands.hpp"

namespace pgmux {

struct PreparedStatement {
  uint64_t id = 0;
  std::string server_name;
  std::string query;
  std::string param_types;  // wire bytes: int16 count + int32 OIDs
  proto::PipelineKind pipeline_kind = proto::PipelineKind::unsafe;  // of query
  uint64_t generation = 0;  // PreparedRegistry::generation() when it was made
};
using StatementRef = std::shared_ptr<const PreparedStatement>;

// Tracker tags: protocol-level statements use their id, SQL-level ones
// have this bit set.
constexpr uint64_t kSqlStatementTag = uint64_t(1) << 63;
// Tracker tag of the Execute of a client's SQL DEALLOCATE sent through the
// extended protocol (its name goes when the server completes it).
constexpr uint64_t kDeallocTag = uint64_t(1) << 62;
// With kSqlStatementTag: the client's own PREPARE (not pgmux's re-prepare);
// if it fails, the client's name does not exist either.
constexpr uint64_t kClientPrepareTag = uint64_t(1) << 61;

class PreparedRegistry {
 public:
  StatementRef get(std::string_view query, std::string_view param_types);
  size_t size() const { return by_key_.size(); }
  // A server has accepted this statement (ParseComplete) at least once, so a
  // client's Parse of the same text can be answered without a server.
  void mark_proven(uint64_t id) { proven_.insert(id); }
  bool proven(uint64_t id) const { return proven_.count(id) != 0; }
  // A statement's result type changed on a server (a schema change): texts
  // prepared from now on get new statements (new server names), so a
  // client's re-prepare never reaches a stale plan. Clients keep the
  // statements they have, as their drivers keep the result types.
  void retire_all() {
    by_key_.clear();
    ++generation_;
  }
  // How many times the texts were retired: statements made since have this.
  uint64_t generation() const { return generation_; }
  // The current statement of `st`'s text (`st` itself unless retired).
  StatementRef renew(const StatementRef& st) {
    return st->generation == generation_ ? st : get(st->query, st->param_types);
  }

 private:
  std::unordered_map<std::string, std::weak_ptr<const PreparedStatement>> by_key_;
  std::unordered_set<uint64_t> proven_;
  uint64_t next_id_ = 1;
  uint64_t generation_ = 0;
  size_t sweep_at_ = 1024;
};

// Which statements one server connection has prepared, least recently used
// first out.
class ServerStatementCache {
 public:
  explicit ServerStatementCache(size_t capacity = 200) : capacity_(capacity) {}
  void set_capacity(size_t c) { capacity_ = c; }
  bool contains(uint64_t id);  // and marks it recently used
  // Records `id`, prepared by a Parse sent in request segment `segment` (a
  // Sync or simple Query ends a segment) and not answered yet; returns the
  // server name of an evicted statement, if any.
  std::optional<std::string> insert(uint64_t id, const std::string& server_name,
                                    uint64_t segment = 0);
  // The server answered the Parse: the statement is there.
  void confirm(uint64_t id) { pending_.erase(id); }
  // A request of segment `segment` may use the statement without a Parse
  // of its own: it is there, or its Parse is in the same segment (an error
  // before that Parse makes the server skip the request too). A Parse in an
  // earlier segment may still fail (marks it recently used).
  bool usable(uint64_t id, uint64_t segment);
  void erase(uint64_t id);
  void clear();
  size_t size() const { return index_.size(); }
  // The result type the server described for its copy of the statement
  // (proto::result_shape), 0 if not known; forgotten when it is parsed
  // again or leaves.
  void set_shape(uint64_t id, uint64_t shape);
  uint64_t shape(uint64_t id) const;

 private:
  size_t capacity_;
  std::unordered_map<uint64_t, uint64_t> shapes_;  // id -> result shape
  std::unordered_map<uint64_t, uint64_t> pending_;  // id -> segment of its unanswered Parse
  std::list<std::pair<uint64_t, std::string>> lru_;  // front = most recent
  std::unordered_map<uint64_t, std::list<std::pair<uint64_t, std::string>>::iterator> index_;
};

}  // namespace pgmux
