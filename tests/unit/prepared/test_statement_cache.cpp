// ServerStatementCache: which statements one server connection holds, and
// which of them a request may use without a Parse of its own.
#include <catch2/catch.hpp>

#include "src/prepared.hpp"

using pgmux::ServerStatementCache;

TEST_CASE("ServerStatementCache: least recently used out, its name returned", "[prepared]") {
  ServerStatementCache c(2);
  CHECK_FALSE(c.insert(1, "pgmux_1").has_value());
  CHECK_FALSE(c.insert(2, "pgmux_2").has_value());
  CHECK(c.contains(1));  // 1 is now the most recent
  auto evicted = c.insert(3, "pgmux_3");
  REQUIRE(evicted.has_value());
  CHECK(*evicted == "pgmux_2");
  CHECK_FALSE(c.contains(2));
  CHECK(c.size() == 2);
  c.erase(1);
  CHECK_FALSE(c.contains(1));
  c.clear();
  CHECK(c.size() == 0);
}

TEST_CASE("ServerStatementCache: an unanswered Parse counts only in its own segment", "[prepared]") {
  ServerStatementCache c(10);
  c.insert(5, "pgmux_5", /*segment=*/3);
  CHECK(c.usable(5, 3));        // Bind after the Parse, before the Sync
  CHECK_FALSE(c.usable(5, 4));  // after the Sync: the Parse may yet fail
  CHECK(c.contains(5));         // recorded all the same (a Parse again closes it first)
  c.confirm(5);
  CHECK(c.usable(5, 4));
  CHECK(c.usable(5, 9));
  CHECK_FALSE(c.usable(6, 4));

  // A new Parse of a recorded statement is pending again.
  c.insert(5, "pgmux_5", 9);
  CHECK_FALSE(c.usable(5, 10));
  CHECK(c.usable(5, 9));

  // Erasing (the Parse failed or was skipped) and eviction forget the mark.
  c.erase(5);
  CHECK_FALSE(c.usable(5, 9));
  c.insert(5, "pgmux_5", 11);
  c.confirm(5);
  CHECK(c.usable(5, 12));
}

TEST_CASE("ServerStatementCache: a statement's result type lasts as long as its copy", "[prepared]") {
  ServerStatementCache c(2);
  c.set_shape(1, 77);  // not there: nothing recorded
  CHECK(c.shape(1) == 0);
  c.insert(1, "pgmux_1");
  c.confirm(1);
  c.set_shape(1, 77);
  CHECK(c.shape(1) == 77);
  c.insert(1, "pgmux_1");  // parsed again: planned again
  CHECK(c.shape(1) == 0);
  c.set_shape(1, 78);
  c.insert(2, "pgmux_2");
  c.set_shape(2, 79);
  c.insert(3, "pgmux_3");  // evicts 1
  CHECK(c.shape(1) == 0);
  CHECK(c.shape(2) == 79);
  c.erase(2);
  CHECK(c.shape(2) == 0);
  c.insert(4, "pgmux_4");
  c.set_shape(4, 80);
  c.clear();
  CHECK(c.shape(4) == 0);
}
