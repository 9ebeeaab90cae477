#include "src/prepared.hpp"

#include "protocol/sql_commands.hpp"

namespace pgmux {

StatementRef PreparedRegistry::get(std::string_view query, std::string_view param_types) {
  std::string key;
  key.reserve(query.size() + 1 + param_types.size());
  key.append(query);
  key.push_back('\0');
  key.append(param_types);
  auto it = by_key_.find(key);
  if (it != by_key_.end()) {
    if (auto sp = it->second.lock()) return sp;
  }
  auto st = std::make_shared<PreparedStatement>();
  st->id = next_id_++;
  st->server_name = "pgmux_" + std::to_string(st->id);
  st->query = std::string(query);
  st->param_types = std::string(param_types);
  st->pipeline_kind = proto::pipeline_kind(st->query);
  st->generation = generation_;
  by_key_[std::move(key)] = st;
  if (by_key_.size() >= sweep_at_) {
    // Forget statements no client holds any more (and their proven mark).
    std::unordered_set<uint64_t> live;
    for (auto i = by_key_.begin(); i != by_key_.end();) {
      if (auto sp = i->second.lock()) {
        live.insert(sp->id);
        ++i;
      } else {
        i = by_key_.erase(i);
      }
    }
    for (auto i = proven_.begin(); i != proven_.end();) {
      if (live.count(*i)) ++i;
      else i = proven_.erase(i);
    }
    sweep_at_ = by_key_.size() * 2 + 1024;
  }
  return st;
}

bool ServerStatementCache::contains(uint64_t id) {
  auto it = index_.find(id);
  if (it == index_.end()) return false;
  lru_.splice(lru_.begin(), lru_, it->second);
  return true;
}

bool ServerStatementCache::usable(uint64_t id, uint64_t segment) {
  if (!contains(id)) return false;
  auto p = pending_.find(id);
  return p == pending_.end() || p->second == segment;
}

std::optional<std::string> ServerStatementCache::insert(uint64_t id, const std::string& server_name,
                                                         uint64_t segment) {
  pending_[id] = segment;
  shapes_.erase(id);  // a new Parse: the server plans it again
  if (contains(id)) return std::nullopt;
  lru_.emplace_front(id, server_name);
  index_[id] = lru_.begin();
  if (capacity_ > 0 && index_.size() > capacity_) {
    auto victim = std::prev(lru_.end());
    std::string name = std::move(victim->second);
    pending_.erase(victim->first);
    shapes_.erase(victim->first);
    index_.erase(victim->first);
    lru_.erase(victim);
    return name;
  }
  return std::nullopt;
}

void ServerStatementCache::erase(uint64_t id) {
  auto it = index_.find(id);
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
  pending_.erase(id);
  shapes_.erase(id);
}

void ServerStatementCache::set_shape(uint64_t id, uint64_t shape) {
  if (index_.count(id)) shapes_[id] = shape;
}

uint64_t ServerStatementCache::shape(uint64_t id) const {
  auto it = shapes_.find(id);
  return it == shapes_.end() ? 0 : it->second;
}

void ServerStatementCache::clear() {
  pending_.clear();
  shapes_.clear();
  lru_.clear();
  index_.clear();
}

}  // namespace pgmux
