// ResponseTracker: which client request each server message answers.
//
// The tracker is driven the way src/ drives it: ClientConnection records every
// request it sends (sent) or answers itself (synthetic) and, once a client
// chunk is processed, flushes what is due (flush_due_responses: take_due when
// special() and the server is between messages); ServerConnection calls
// on_server_message at each message header, forwards the message unless it is
// hidden, and calls take_due once the message is complete
// (rewrite_server_bytes). The tests check the exact stream the client sees.
#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "protocol/tracker.hpp"
#include "support.hpp"

using namespace pgmux::proto;
using namespace pgmux::proto::test;

namespace {

using R = ResponseTracker::Request;
using Action = ResponseTracker::Action;

const std::vector<R> kAllRequests = {R::parse,   R::bind,  R::describe_stmt,
                                     R::describe_portal, R::execute, R::close,
                                     R::sync,    R::query, R::function_call};

const char* name(R r) {
  switch (r) {
    case R::parse: return "parse";
    case R::bind: return "bind";
    case R::describe_stmt: return "describe_stmt";
    case R::describe_portal: return "describe_portal";
    case R::execute: return "execute";
    case R::close: return "close";
    case R::sync: return "sync";
    case R::query: return "query";
    case R::function_call: return "function_call";
  }
  return "?";
}

// The message types that end each request (written from the protocol
// documentation, independently of tracker.cpp).
std::string terminators(R r) {
  switch (r) {
    case R::parse: return "1";
    case R::bind: return "2";
    case R::close: return "3";
    case R::describe_stmt:
    case R::describe_portal: return "Tn";
    case R::execute: return "CIs";
    case R::sync:
    case R::query:
    case R::function_call: return "Z";
  }
  return "";
}

bool extended(R r) { return r != R::sync && r != R::query && r != R::function_call; }
bool async_type(char t) { return t == 'N' || t == 'A' || t == 'S'; }

// Every backend message type, plus a few bytes no server sends.
const std::string kServerTypes = "123ACDEGHIKNRSTVWZcdnstv";
const std::string kOddTypes = std::string("\0\x7f\xff?X", 5);

// A synthetic response as pgmux builds it, marked so the tests can tell it
// from the server's messages in the client's stream.
std::string syn(char type, const std::string& mark = "") { return typed(type, "syn" + mark); }

// One client connection with its tracker, its server's output and what the
// client has received.
struct Harness {
  ResponseTracker t;
  std::string out;                  // everything the client received
  size_t seen_at = 0;               // seen() reports from here
  std::vector<uint64_t> unprepared;  // everything take_unprepared returned
  int serial = 0;

  // ClientConnection side.
  void send(R r, bool hidden = false, uint64_t tag = 0) { t.sent(r, hidden, tag); }
  void answer(std::string message) { t.synthetic(std::move(message)); }
  // flush_due_responses: the server is between messages.
  void flush() {
    if (!t.special()) return;
    t.take_due(out);
  }

  // ServerConnection side: one whole server message.
  Action server(char type) {
    std::string body = "srv" + std::to_string(serial++);
    Action a = t.on_server_message(type);
    if (a == Action::pass) out += typed(type, body);
    t.take_due(out);
    collect();
    return a;
  }
  void server_all(const std::string& types) {
    for (char c : types) server(c);
  }
  void collect() {
    auto tags = t.take_unprepared();
    unprepared.insert(unprepared.end(), tags.begin(), tags.end());
  }

  // The client's new messages as types; pgmux's own answers in brackets.
  std::string seen() {
    Result tail = Result::ok;
    std::vector<Msg> msgs = frame_all(out.substr(seen_at), &tail);
    REQUIRE(tail == Result::ok);
    seen_at = out.size();
    std::string s;
    for (const Msg& m : msgs) {
      if (m.body.rfind("syn", 0) == 0) s += std::string("[") + m.type + "]";
      else s += m.type;
    }
    return s;
  }
  std::vector<uint64_t> take_tags() { return std::exchange(unprepared, {}); }
};

// One server message and the tracker's state right after it.
struct Exp {
  char type;
  char action;  // 'p' pass, 'h' hide
  bool empty;
  bool special;
};

void feed(Harness& h, const std::vector<Exp>& script) {
  for (size_t i = 0; i < script.size(); ++i) {
    const Exp& e = script[i];
    INFO("server message #" << i << " '" << e.type << "'");
    Action a = h.server(e.type);
    CHECK(a == (e.action == 'p' ? Action::pass : Action::hide));
    CHECK(h.t.empty() == e.empty);
    CHECK(h.t.special() == e.special);
  }
}

void require_idle(ResponseTracker& t) {
  CHECK(t.empty());
  CHECK_FALSE(t.special());
  std::string due;
  CHECK_FALSE(t.take_due(due));
  CHECK(due.empty());
}

}  // namespace

// ---------------------------------------------------------------------------
// Basics

TEST_CASE("ResponseTracker: a new tracker is idle", "[tracker]") {
  ResponseTracker t;
  require_idle(t);
  CHECK(t.take_unprepared().empty());
}

TEST_CASE("ResponseTracker: with nothing in flight every message passes", "[tracker]") {
  // e.g. a FATAL ErrorResponse at server shutdown, or async messages.
  Harness h;
  for (char c : kServerTypes + kOddTypes) {
    INFO("type " << int(uint8_t(c)));
    CHECK(h.server(c) == Action::pass);
    require_idle(h.t);
  }
  CHECK(h.take_tags().empty());
  CHECK(h.seen().size() == kServerTypes.size() + kOddTypes.size());
}

TEST_CASE("ResponseTracker: every request type ends at exactly its terminators", "[tracker]") {
  for (R r : kAllRequests) {
    for (char c : kServerTypes + kOddTypes) {
      for (bool hidden : {false, true}) {
        INFO(name(r) << " hidden=" << hidden << " type " << int(uint8_t(c)) << " '" << c << "'");
        ResponseTracker t;
        t.sent(r, hidden, /*tag=*/5);
        CHECK(t.special() == hidden);
        Action a = t.on_server_message(c);
        if (async_type(c)) {
          CHECK(a == Action::pass);
          CHECK_FALSE(t.empty());
          CHECK(t.special() == hidden);
          CHECK(t.take_unprepared().empty());
        } else if (c == 'E') {
          CHECK(a == Action::pass);  // errors are always shown
          auto tags = t.take_unprepared();
          REQUIRE(tags.size() == 1);
          CHECK(tags[0] == 5);
          if (extended(r)) {
            CHECK(t.empty());  // the request is over
            CHECK_FALSE(t.special());
          } else {
            CHECK_FALSE(t.empty());  // a ReadyForQuery still follows
            CHECK(t.special() == hidden);
            CHECK(t.on_server_message('Z') == (hidden ? Action::hide : Action::pass));
            CHECK(t.empty());
          }
        } else {
          CHECK(a == (hidden ? Action::hide : Action::pass));
          bool ends = terminators(r).find(c) != std::string::npos;
          CHECK(t.empty() == ends);
          CHECK(t.special() == (hidden && !ends));
          CHECK(t.take_unprepared().empty());
        }
      }
    }
  }
}

TEST_CASE("ResponseTracker: a premature or late pop is visible in the next hidden/visible entry",
          "[tracker]") {
  // A hidden Parse behind each request: its ParseComplete must be hidden and
  // every message before it shown, which holds only if the request ends at
  // its last message and not before.
  struct Case {
    R r;
    std::string responses;
  };
  const std::vector<Case> cases = {
      {R::parse, "1"},           {R::bind, "2"},           {R::close, "3"},
      {R::describe_stmt, "tT"},  {R::describe_stmt, "tn"}, {R::describe_portal, "T"},
      {R::describe_portal, "n"}, {R::execute, "C"},        {R::execute, "DDDC"},
      {R::execute, "I"},         {R::execute, "DDs"},      {R::execute, "GC"},
      {R::execute, "HddcC"},     {R::sync, "Z"},           {R::query, "TDCTDDCIZ"},
      {R::query, "GCZ"},         {R::query, "HdcCZ"},      {R::function_call, "VZ"},
  };
  for (const Case& c : cases) {
    INFO(name(c.r) << " answered by " << c.responses);
    Harness h;
    h.send(c.r);
    h.send(R::parse, /*hidden=*/true, 9);
    h.send(R::bind);
    CHECK(h.t.special());
    h.server_all(c.responses);
    CHECK(h.seen() == c.responses);
    CHECK(h.t.special());
    CHECK(h.server('1') == Action::hide);
    CHECK_FALSE(h.t.special());
    CHECK(h.server('2') == Action::pass);
    CHECK(h.seen() == "2");
    require_idle(h.t);
    CHECK(h.take_tags().empty());
  }
}

// ---------------------------------------------------------------------------
// Extended query protocol

TEST_CASE("ResponseTracker: Parse/Bind/Describe/Execute/Sync pass through", "[tracker]") {
  Harness h;
  h.send(R::parse, false, 1);
  h.send(R::bind);
  h.send(R::describe_portal);
  h.send(R::execute);
  h.send(R::sync);
  h.flush();
  CHECK(h.seen().empty());
  CHECK_FALSE(h.t.special());
  feed(h, {
              {'1', 'p', false, false},
              {'2', 'p', false, false},
              {'T', 'p', false, false},
              {'D', 'p', false, false},
              {'D', 'p', false, false},
              {'C', 'p', false, false},
              {'Z', 'p', true, false},
          });
  CHECK(h.seen() == "12TDDCZ");
  CHECK(h.take_tags().empty());  // a successful Parse is not reported
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: Describe of a statement takes 't' and then 'T' or 'n'", "[tracker]") {
  for (char last : {'T', 'n'}) {
    INFO("last " << last);
    Harness h;
    h.send(R::parse);
    h.send(R::describe_stmt);
    h.send(R::sync);
    feed(h, {
                {'1', 'p', false, false},
                {'t', 'p', false, false},
                {last, 'p', false, false},
                {'Z', 'p', true, false},
            });
    CHECK(h.seen() == std::string("1t") + last + "Z");
  }
  SECTION("hidden: both messages are hidden") {
    Harness h;
    h.send(R::describe_stmt, true);
    h.send(R::describe_portal);
    h.send(R::sync);
    feed(h, {
                {'t', 'h', false, true},
                {'T', 'h', false, false},
                {'n', 'p', false, false},
                {'Z', 'p', true, false},
            });
    CHECK(h.seen() == "nZ");
  }
}

TEST_CASE("ResponseTracker: Execute ends at CommandComplete, EmptyQuery or PortalSuspended",
          "[tracker]") {
  Harness h;
  h.send(R::bind);
  h.send(R::execute);  // row limit reached
  h.send(R::execute);  // rest of the rows
  h.send(R::execute);  // empty query string
  h.send(R::sync);
  h.send(R::parse, true, 3);  // hidden: shows where the queue stands
  feed(h, {
              {'2', 'p', false, true},
              {'D', 'p', false, true},
              {'D', 'p', false, true},
              {'s', 'p', false, true},
              {'D', 'p', false, true},
              {'C', 'p', false, true},
              {'I', 'p', false, true},
              {'Z', 'p', false, true},
              {'1', 'h', true, false},
          });
  CHECK(h.seen() == "2DDsDCIZ");
}

TEST_CASE("ResponseTracker: Close and several pipelined Syncs", "[tracker]") {
  Harness h;
  for (int i = 0; i < 3; ++i) {
    h.send(R::parse);
    h.send(R::bind);
    h.send(R::execute);
    h.send(R::close);
    h.send(R::sync);
  }
  h.send(R::sync);  // a lone Sync
  for (int i = 0; i < 3; ++i) {
    h.server_all("12DC3");
    CHECK_FALSE(h.t.empty());
    h.server('Z');
  }
  CHECK_FALSE(h.t.empty());
  h.server('Z');
  CHECK(h.seen() == "12DC3Z12DC3Z12DC3ZZ");
  require_idle(h.t);
}

// ---------------------------------------------------------------------------
// Simple query protocol and FunctionCall

TEST_CASE("ResponseTracker: a simple Query with several result sets ends at 'Z'", "[tracker]") {
  Harness h;
  h.send(R::query);
  h.send(R::query, true, 4);  // hidden behind it
  feed(h, {
              {'T', 'p', false, true},
              {'D', 'p', false, true},
              {'C', 'p', false, true},
              {'C', 'p', false, true},  // e.g. BEGIN
              {'I', 'p', false, true},  // an empty statement
              {'T', 'p', false, true},
              {'C', 'p', false, true},
              {'S', 'p', false, true},  // SET reported a parameter
              {'Z', 'p', false, true},
              {'C', 'h', false, true},
              {'Z', 'h', true, false},
          });
  CHECK(h.seen() == "TDCCITCSZ");
  CHECK(h.take_tags().empty());
}

TEST_CASE("ResponseTracker: an error inside a simple Query", "[tracker]") {
  SECTION("visible Query: the error and its 'Z' pass, the tag is reported") {
    Harness h;
    h.send(R::query, false, 11);
    h.send(R::query);
    feed(h, {
                {'T', 'p', false, false},
                {'D', 'p', false, false},
                {'C', 'p', false, false},
                {'E', 'p', false, false},
                {'Z', 'p', false, false},
                {'C', 'p', false, false},
                {'Z', 'p', true, false},
            });
    CHECK(h.seen() == "TDCEZCZ");
    CHECK(h.take_tags() == std::vector<uint64_t>{11});
  }
  SECTION("without a tag nothing is reported") {
    Harness h;
    h.send(R::query);
    h.server_all("EZ");
    CHECK(h.seen() == "EZ");
    CHECK(h.take_tags().empty());
    require_idle(h.t);
  }
  SECTION("hidden Query (a re-run PREPARE): the error passes, the rest stays hidden") {
    Harness h;
    h.send(R::query, true, 12);  // injected PREPARE
    h.send(R::query);            // the client's EXECUTE
    feed(h, {
                {'N', 'p', false, true},
                {'E', 'p', false, true},
                {'Z', 'h', false, false},
                {'E', 'p', false, false},
                {'Z', 'p', true, false},
            });
    CHECK(h.seen() == "NEEZ");
    CHECK(h.take_tags() == std::vector<uint64_t>{12});
  }
  SECTION("the Query does not skip later requests") {
    Harness h;
    h.send(R::query);
    h.send(R::parse, true, 1);
    h.send(R::sync);
    h.server_all("EZ1Z");
    CHECK(h.seen() == "EZZ");
    CHECK(h.take_tags().empty());
    require_idle(h.t);
  }
}

TEST_CASE("ResponseTracker: FunctionCall", "[tracker]") {
  Harness h;
  h.send(R::function_call);
  h.send(R::function_call);
  h.send(R::close, true);
  feed(h, {
              {'V', 'p', false, true},
              {'Z', 'p', false, true},
              {'E', 'p', false, true},
              {'Z', 'p', false, true},
              {'3', 'h', true, false},
          });
  CHECK(h.seen() == "VZEZ");
}

// ---------------------------------------------------------------------------
// Hidden requests

TEST_CASE("ResponseTracker: a hidden Parse before a Bind", "[tracker]") {
  // pgmux re-prepares the statement on this server before the client's Bind.
  Harness h;
  h.send(R::close, true);        // evicted from the server's statement cache
  h.send(R::parse, true, 21);    // the statement the Bind uses
  h.send(R::bind);
  h.send(R::describe_stmt);
  h.send(R::execute);
  h.send(R::sync);
  CHECK(h.t.special());
  feed(h, {
              {'3', 'h', false, true},
              {'N', 'p', false, true},  // a notice during the hidden Parse
              {'1', 'h', false, false},
              {'2', 'p', false, false},
              {'t', 'p', false, false},
              {'n', 'p', false, false},
              {'C', 'p', false, false},
              {'Z', 'p', true, false},
          });
  CHECK(h.seen() == "N2tnCZ");
  CHECK(h.take_tags().empty());
}

TEST_CASE("ResponseTracker: the hidden request's messages are hidden whole, async ones pass",
          "[tracker]") {
  Harness h;
  h.send(R::query, true);
  h.send(R::query);
  h.server_all("TDDCSAN");  // hidden query output with async messages inside
  CHECK(h.seen() == "SAN");
  CHECK(h.server('Z') == Action::hide);
  h.server_all("CZ");
  CHECK(h.seen() == "CZ");
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: an error in a hidden Parse skips to the Sync", "[tracker]") {
  Harness h;
  h.send(R::parse, true, 31);
  h.send(R::bind);
  h.send(R::execute);
  h.send(R::sync);
  h.send(R::bind);
  h.send(R::execute);
  h.send(R::sync);
  feed(h, {
              {'E', 'p', false, false},
              {'Z', 'p', false, false},
              {'2', 'p', false, false},
              {'C', 'p', false, false},
              {'Z', 'p', true, false},
          });
  CHECK(h.seen() == "EZ2CZ");
  CHECK(h.take_tags() == std::vector<uint64_t>{31});
}

// ---------------------------------------------------------------------------
// Synthetic responses

TEST_CASE("ResponseTracker: a synthetic response with nothing in flight is due at once",
          "[tracker]") {
  Harness h;
  h.answer(syn('1'));
  CHECK(h.t.special());
  CHECK_FALSE(h.t.empty());
  h.flush();
  CHECK(h.seen() == "[1]");
  require_idle(h.t);
  CHECK(h.out == syn('1'));  // byte for byte
}

TEST_CASE("ResponseTracker: a synthetic response waits for every earlier request", "[tracker]") {
  Harness h;
  h.send(R::bind);
  h.send(R::execute);
  h.answer(syn('3', "a"));  // Close of a statement
  h.answer(syn('1', "b"));  // Parse of a statement the server has
  h.send(R::bind);
  h.answer(syn('3', "c"));
  h.send(R::sync);
  h.flush();
  std::string due;
  CHECK_FALSE(h.t.take_due(due));  // not at the head
  CHECK(due.empty());
  CHECK(h.seen().empty());
  feed(h, {
              {'2', 'p', false, true},
              {'D', 'p', false, true},
              {'C', 'p', false, true},  // the two synthetic answers follow at once
              {'2', 'p', false, false},
              {'Z', 'p', true, false},
          });
  CHECK(h.seen() == "2DC[3][1]2[3]Z");
  const std::string expect_tail =
      syn('3', "a") + syn('1', "b") + typed('2', "srv3") + syn('3', "c") + typed('Z', "srv4");
  CHECK(h.out.substr(h.out.size() - expect_tail.size()) == expect_tail);
}

TEST_CASE("ResponseTracker: synthetic answers to simple queries", "[tracker]") {
  // DEALLOCATE ALL / DISCARD ALL / "does not exist" answered by pgmux.
  Harness h;
  h.send(R::query);
  h.answer(typed('C', "synDEALLOCATE ALL") + typed('Z', "synI"));
  h.answer(typed('E', "syn26000") + typed('Z', "synI"));
  h.send(R::query);
  h.flush();
  CHECK(h.seen().empty());
  h.server_all("TDC");
  CHECK(h.seen() == "TDC");
  CHECK(h.t.special());
  h.server('Z');
  CHECK(h.seen() == "Z[C][Z][E][Z]");
  CHECK_FALSE(h.t.special());
  h.server_all("CZ");
  CHECK(h.seen() == "CZ");
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: synthetic after a hidden request", "[tracker]") {
  Harness h;
  h.send(R::parse, true, 1);
  h.answer(syn('1'));
  h.flush();
  CHECK(h.seen().empty());
  CHECK(h.server('1') == Action::hide);
  CHECK(h.seen() == "[1]");
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: take_due appends and reports", "[tracker]") {
  ResponseTracker t;
  std::string out = "prefix";
  CHECK_FALSE(t.take_due(out));
  CHECK(out == "prefix");
  t.synthetic(syn('1', "x"));
  t.synthetic(syn('3', "y"));
  t.sent(R::sync);
  t.synthetic(syn('1', "z"));
  CHECK(t.take_due(out));
  CHECK(out == "prefix" + syn('1', "x") + syn('3', "y"));
  CHECK_FALSE(t.take_due(out));
  CHECK(t.special());
  CHECK(t.on_server_message('Z') == Action::pass);
  CHECK(t.take_due(out));
  CHECK(out == "prefix" + syn('1', "x") + syn('3', "y") + syn('1', "z"));
  require_idle(t);
}

TEST_CASE("ResponseTracker: a synthetic entry not taken is dropped by the next message",
          "[tracker]") {
  // Documented fallback: the queue cannot stall on a synthetic entry. (The
  // real callers always take_due first.)
  ResponseTracker t;
  t.synthetic(syn('1'));
  t.sent(R::sync);
  CHECK(t.on_server_message('Z') == Action::pass);
  require_idle(t);
  // Asynchronous messages do not touch the queue, so not even the fallback.
  t.synthetic(syn('1'));
  CHECK(t.on_server_message('N') == Action::pass);
  CHECK(t.special());
  std::string due;
  CHECK(t.take_due(due));
  CHECK(due == syn('1'));
}

// ---------------------------------------------------------------------------
// Errors in the extended protocol

TEST_CASE("ResponseTracker: an error skips everything up to the Sync", "[tracker]") {
  Harness h;
  h.send(R::parse, false, 1);  // fails
  h.answer(syn('1'));          // Parse of a statement the server has
  h.send(R::bind);
  h.send(R::describe_stmt);
  h.send(R::close, true);      // evicted statement
  h.send(R::parse, true, 2);   // re-prepared for the next Bind
  h.send(R::bind);
  h.send(R::execute);
  h.answer(syn('3'));
  h.send(R::query, false, 3);  // a Query inside the pipeline is skipped too
  h.send(R::function_call);
  h.send(R::sync);
  h.send(R::parse, false, 4);  // after the Sync: processed again
  h.send(R::sync);
  h.flush();
  CHECK(h.t.special());
  feed(h, {
              {'E', 'p', false, false},
              {'Z', 'p', false, false},
              {'1', 'p', false, false},
              {'Z', 'p', true, false},
          });
  CHECK(h.seen() == "EZ1Z");
  CHECK(h.take_tags() == std::vector<uint64_t>{1, 2, 3});
}

TEST_CASE("ResponseTracker: errors at each point of a pipeline", "[tracker]") {
  SECTION("Bind fails after Parse succeeded") {
    Harness h;
    h.send(R::parse, false, 1);
    h.send(R::bind);
    h.send(R::execute);
    h.send(R::sync);
    h.server_all("1EZ");
    CHECK(h.seen() == "1EZ");
    CHECK(h.take_tags().empty());
    require_idle(h.t);
  }
  SECTION("Execute fails after DataRows") {
    Harness h;
    h.send(R::bind);
    h.send(R::execute);
    h.answer(syn('3'));
    h.send(R::sync);
    h.server_all("2DDNE");
    CHECK(h.seen() == "2DDNE");
    CHECK_FALSE(h.t.special());  // the synthetic CloseComplete is gone
    h.server('Z');
    CHECK(h.seen() == "Z");
    require_idle(h.t);
  }
  SECTION("Describe fails") {
    Harness h;
    h.send(R::describe_stmt);
    h.send(R::sync);
    h.server_all("EZ");
    CHECK(h.seen() == "EZ");
    require_idle(h.t);
  }
  SECTION("an error while the Sync is processed does not skip") {
    // e.g. a deferred constraint failing at the implicit COMMIT.
    Harness h;
    h.send(R::execute);
    h.send(R::sync);
    h.send(R::parse, true, 7);
    h.send(R::sync);
    feed(h, {
                {'C', 'p', false, true},
                {'E', 'p', false, true},
                {'Z', 'p', false, true},
                {'1', 'h', false, false},
                {'Z', 'p', true, false},
            });
    CHECK(h.seen() == "CEZZ");
    CHECK(h.take_tags().empty());
  }
  SECTION("an error in the second of several pipelines") {
    Harness h;
    for (int i = 1; i <= 3; ++i) {
      h.send(R::parse, false, uint64_t(i));
      h.send(R::bind);
      h.send(R::execute);
      h.send(R::sync);
    }
    h.server_all("12CZ");
    h.server_all("EZ");
    h.server_all("12CZ");
    CHECK(h.seen() == "12CZEZ12CZ");
    CHECK(h.take_tags() == std::vector<uint64_t>{2});
    require_idle(h.t);
  }
  SECTION("COPY FROM STDIN in an Execute fails") {
    // libpq: Bind/Execute/Sync, then CopyFail + Sync. The server ignores the
    // first Sync (it arrives in copy-in mode) and answers the second.
    Harness h;
    h.send(R::bind);
    h.send(R::execute);
    h.send(R::sync);
    h.server_all("2G");
    h.send(R::sync);  // ignored too: still in copy-in mode
    h.t.copy_in_finished();  // CopyFail
    h.send(R::sync);
    h.server_all("E");
    CHECK(h.t.empty() == false);
    h.server('Z');
    CHECK(h.seen() == "2GEZ");
    require_idle(h.t);
  }
}

TEST_CASE("ResponseTracker: requests sent after an error, before the Sync, get no response",
          "[tracker]") {
  // The server's error can arrive while the client is still sending the rest
  // of its pipeline (a large Bind, a Flush before the Sync, or just TCP
  // timing). The server discards all of it up to the Sync.
  Harness h;
  h.send(R::parse, false, 1);
  h.send(R::bind);
  h.server('E');
  CHECK(h.seen() == "E");
  CHECK(h.take_tags() == std::vector<uint64_t>{1});
  CHECK(h.t.empty());
  // The rest of the pipeline arrives from the client.
  h.send(R::bind);
  h.send(R::describe_portal);
  h.send(R::execute);
  h.send(R::close, true);      // eviction before a Parse
  h.send(R::parse, true, 2);   // hidden Parse for a Bind: never reaches the statement cache
  h.send(R::parse, false, 3);  // the client's own Parse
  h.answer(syn('1'));          // pgmux's ParseComplete: the server would have sent none
  h.send(R::query, true, 4);   // a Query is discarded as well
  h.send(R::function_call);
  h.flush();
  CHECK(h.seen().empty());  // nothing answered while skipping
  CHECK(h.t.empty());
  CHECK_FALSE(h.t.special());
  h.collect();
  CHECK(h.take_tags() == std::vector<uint64_t>{2, 3, 4});
  h.send(R::sync);
  CHECK_FALSE(h.t.empty());
  feed(h, {{'Z', 'p', true, false}});
  CHECK(h.seen() == "Z");
  // Back to normal: hidden and synthetic entries work again.
  h.send(R::parse, true, 5);
  h.send(R::bind);
  h.answer(syn('3'));
  h.send(R::sync);
  feed(h, {
              {'1', 'h', false, true},
              {'2', 'p', false, false},
              {'Z', 'p', true, false},
          });
  CHECK(h.seen() == "2[3]Z");
  CHECK(h.take_tags().empty());
}

TEST_CASE("ResponseTracker: an error with several requests queued but no Sync", "[tracker]") {
  Harness h;
  h.send(R::parse, true, 1);
  h.send(R::parse, false, 2);
  h.answer(syn('1'));
  h.send(R::bind);
  h.server('E');
  CHECK(h.take_tags() == std::vector<uint64_t>{1, 2});
  require_idle(h.t);
  h.send(R::execute);
  h.send(R::sync);
  h.server('Z');
  CHECK(h.seen() == "EZ");
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: simple-protocol errors never start skipping", "[tracker]") {
  for (R r : {R::query, R::function_call, R::sync}) {
    INFO(name(r));
    Harness h;
    h.send(r);
    h.server('E');
    h.send(R::parse, true, 1);  // sent before the 'Z': must still be tracked
    h.send(R::sync);
    h.server_all("Z1Z");
    CHECK(h.seen() == "EZZ");
    CHECK(h.take_tags().empty());
    require_idle(h.t);
  }
}

TEST_CASE("ResponseTracker: an unsolicited error with nothing in flight starts no skipping",
          "[tracker]") {
  Harness h;
  h.server('E');
  h.send(R::parse, true, 1);
  h.send(R::sync);
  h.server_all("1Z");
  CHECK(h.seen() == "EZ");
  CHECK(h.take_tags().empty());
  require_idle(h.t);
}

// ---------------------------------------------------------------------------
// Asynchronous messages and COPY

TEST_CASE("ResponseTracker: NoticeResponse, NotificationResponse and ParameterStatus pass",
          "[tracker]") {
  Harness h;
  h.send(R::parse, true, 1);
  h.send(R::bind);
  h.answer(syn('1'));
  h.send(R::execute);
  h.send(R::sync);
  for (char c : std::string("NAS")) {
    INFO(c);
    CHECK(h.server(c) == Action::pass);
    CHECK(h.t.special());
  }
  h.server('1');
  h.server_all("NAS");
  h.server('2');
  CHECK(h.seen() == "NASNAS2[1]");
  h.server_all("DNASCAZ");
  CHECK(h.seen() == "DNASCAZ");
  require_idle(h.t);
  h.server_all("NASNAS");
  CHECK(h.seen() == "NASNAS");
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: COPY inside an Execute and inside a Query", "[tracker]") {
  SECTION("COPY TO STDOUT in an Execute") {
    Harness h;
    h.send(R::bind);
    h.send(R::execute);
    h.send(R::sync);
    h.send(R::close, true);
    h.server_all("2Hdddc");
    CHECK(h.t.special());
    h.server_all("CZ");
    CHECK(h.server('3') == Action::hide);
    CHECK(h.seen() == "2HdddcCZ");
    require_idle(h.t);
  }
  SECTION("COPY FROM STDIN in an Execute (client's CopyData/CopyDone are not requests)") {
    Harness h;
    h.send(R::bind);
    h.send(R::execute);
    h.server_all("2G");
    h.t.copy_in_finished();  // CopyDone
    h.send(R::sync);
    h.send(R::parse, true, 1);
    h.server_all("CZ1");
    CHECK(h.seen() == "2GCZ");
    require_idle(h.t);
  }
  SECTION("COPY FROM STDIN in an Execute: the pipelined Sync is ignored (libpq)") {
    Harness h;
    h.send(R::parse);
    h.send(R::bind);
    h.send(R::describe_portal);
    h.send(R::execute);
    h.send(R::sync);  // sent with the Execute, reaches the server in copy-in mode
    h.server_all("12nG");
    h.t.copy_in_finished();  // CopyDone
    h.send(R::sync);         // libpq's Sync after CopyDone
    h.server_all("CZ");
    CHECK(h.seen() == "12nGCZ");
    require_idle(h.t);
  }
  SECTION("COPY FROM STDIN ended before the server starts it: later Syncs count") {
    // The client sends Execute, CopyData, CopyDone, Sync and the next
    // segment in one go; the CopyInResponse comes after all of that.
    Harness h;
    h.send(R::execute);
    h.send(R::sync);  // before the CopyDone: ignored in copy-in mode
    h.t.copy_in_finished();  // CopyDone, before the server's G
    h.send(R::sync);         // after it: answered
    h.send(R::bind);
    h.send(R::execute);
    h.send(R::sync);
    h.server_all("GCZ");
    CHECK_FALSE(h.t.empty());  // the next segment is still owed
    h.server_all("2CZ");
    CHECK(h.seen() == "GCZ2CZ");
    require_idle(h.t);
  }
  SECTION("two COPYs ended before the server starts either") {
    Harness h;
    h.send(R::execute);
    h.t.copy_in_finished();
    h.send(R::sync);
    h.send(R::execute);
    h.send(R::sync);  // ignored: before the second CopyFail
    h.t.copy_in_finished();
    h.send(R::sync);
    h.server_all("GEZ");  // the first fails (CopyFail)
    CHECK_FALSE(h.t.empty());
    h.server_all("GCZ");
    CHECK(h.seen() == "GEZGCZ");
    require_idle(h.t);
  }
  SECTION("COPY in a simple Query") {
    Harness h;
    h.send(R::query);
    h.send(R::query, true);
    h.server_all("G");
    CHECK(h.t.special());
    h.server_all("CHddcCZ");  // COPY FROM STDIN; COPY TO STDOUT
    h.server_all("GCZ");      // the hidden query
    CHECK(h.seen() == "GCHddcCZ");
    require_idle(h.t);
  }
  SECTION("COPY FROM STDIN in a simple Query fails (CopyFail)") {
    Harness h;
    h.send(R::query, false, 8);
    h.server_all("GEZ");
    CHECK(h.seen() == "GEZ");
    CHECK(h.take_tags() == std::vector<uint64_t>{8});
    require_idle(h.t);
  }
}

// ---------------------------------------------------------------------------
// Accounting

TEST_CASE("ResponseTracker: special() counts hidden and synthetic entries", "[tracker]") {
  ResponseTracker t;
  t.sent(R::parse);
  CHECK_FALSE(t.special());
  t.sent(R::close, true);
  t.sent(R::parse, true, 1);
  t.synthetic(syn('1'));
  t.sent(R::bind);
  t.synthetic(syn('3'));
  t.sent(R::sync);
  CHECK(t.special());
  CHECK(t.on_server_message('1') == Action::pass);
  CHECK(t.on_server_message('3') == Action::hide);
  CHECK(t.special());
  CHECK(t.on_server_message('1') == Action::hide);
  CHECK(t.special());  // two synthetic left
  std::string out;
  CHECK(t.take_due(out));
  CHECK(out == syn('1'));
  CHECK(t.special());
  CHECK(t.on_server_message('2') == Action::pass);
  CHECK(t.take_due(out));
  CHECK_FALSE(t.special());
  CHECK_FALSE(t.empty());
  CHECK(t.on_server_message('Z') == Action::pass);
  require_idle(t);
}

TEST_CASE("ResponseTracker: take_unprepared empties the list", "[tracker]") {
  ResponseTracker t;
  t.sent(R::parse, false, 1);
  t.sent(R::parse, false, 2);
  t.sent(R::sync);
  t.on_server_message('E');
  CHECK(t.take_unprepared() == std::vector<uint64_t>{1, 2});
  CHECK(t.take_unprepared().empty());
  t.on_server_message('Z');
  CHECK(t.take_unprepared().empty());
  require_idle(t);
}

TEST_CASE("ResponseTracker: clear() ends copy-in mode too", "[tracker]") {
  // Found by tests/fuzz/fuzz_tracker (corpus regress-clear-after-copy-in):
  // after clear() the next exchange's Sync was ignored as if the server were
  // still in COPY FROM STDIN, so its 'Z' was taken for unsolicited.
  ResponseTracker t;
  t.sent(R::execute);
  t.sent(R::sync);
  CHECK(t.on_server_message('G') == Action::pass);  // COPY FROM STDIN
  t.clear();
  require_idle(t);
  t.sent(R::sync);
  CHECK_FALSE(t.empty());
  CHECK(t.on_server_message('Z') == Action::pass);
  require_idle(t);
}

TEST_CASE("ResponseTracker: a hidden Sync dropped by copy-in mode is not pending", "[tracker]") {
  // Found by tests/fuzz/fuzz_tracker (corpus regress-copy-in-drops-hidden-sync):
  // the Syncs COPY FROM STDIN makes the server ignore were dropped from the
  // queue without leaving special(), which stayed true with nothing queued.
  ResponseTracker t;
  t.sent(R::execute);
  t.sent(R::sync, /*hidden=*/true);
  CHECK(t.special());
  CHECK(t.on_server_message('G') == Action::pass);
  CHECK_FALSE(t.special());
  t.copy_in_finished();
  CHECK(t.on_server_message('C') == Action::pass);
  require_idle(t);
}

TEST_CASE("ResponseTracker: clear() forgets everything in flight", "[tracker]") {
  ResponseTracker t;
  t.sent(R::parse, true, 1);
  t.synthetic(syn('1'));
  t.sent(R::bind);
  t.clear();
  require_idle(t);
  // ... including skipping after an error.
  t.sent(R::bind);
  t.on_server_message('E');
  t.clear();
  t.sent(R::parse, true, 2);
  CHECK(t.special());
  CHECK(t.on_server_message('1') == Action::hide);
  require_idle(t);
}

// ---------------------------------------------------------------------------
// Randomised: a model of the PostgreSQL backend answers what pgmux sends; the
// client must see exactly what it would see from a server that had received
// only the client's requests, with pgmux's own answers in place of the
// server's.

namespace {

struct Step {
  bool is_synthetic = false;
  R req = R::sync;
  bool hidden = false;
  uint64_t tag = 0;
  std::string message;  // synthetic
};

struct ServerModel {
  explicit ServerModel(Rng& r) : rng(r) {}
  Rng& rng;
  bool skipping = false;       // after an extended-protocol error, until Sync
  std::deque<std::string> pipe;  // server output not yet read by pgmux
  std::string expect;          // what the client should receive
  std::vector<uint64_t> expect_unprepared;
  int serial = 0;

  void emit(char type, bool hidden) {
    std::string m = typed(type, "srv" + std::to_string(serial++));
    pipe.push_back(m);
    if (!hidden || type == 'E' || async_type(type)) expect += m;
  }
  void maybe_async(bool hidden) {
    if (rng.chance(8)) emit("NAS"[rng.below(3)], hidden);
  }
  // Some rows, or a COPY TO STDOUT, then the command's end.
  void result(bool hidden, bool simple) {
    switch (rng.below(4)) {
      case 0:
        emit('H', hidden);
        for (size_t n = rng.below(3); n > 0; --n) emit('d', hidden);
        emit('c', hidden);
        emit('C', hidden);
        break;
      case 1:
        if (simple) emit('I', hidden);
        else emit('C', hidden);
        break;
      default:
        if (simple) emit('T', hidden);
        for (size_t n = rng.below(4); n > 0; --n) {
          emit('D', hidden);
          maybe_async(hidden);
        }
        emit(simple || rng.chance(80) ? 'C' : 's', hidden);
    }
  }
  void fail(const Step& s) {
    emit('E', s.hidden);
    if (s.tag) expect_unprepared.push_back(s.tag);
  }

  void process(const Step& s) {
    if (s.is_synthetic) {
      if (!skipping) expect += s.message;
      return;
    }
    if (skipping && s.req != R::sync) {
      if (s.tag) expect_unprepared.push_back(s.tag);
      return;
    }
    maybe_async(s.hidden);
    const bool error = rng.chance(12);
    switch (s.req) {
      case R::sync:
        skipping = false;
        if (rng.chance(5)) emit('E', s.hidden);  // failed COMMIT
        maybe_async(s.hidden);
        emit('Z', s.hidden);
        return;
      case R::query: {
        for (size_t n = rng.below(3); n > 0; --n) result(s.hidden, true);
        if (error) fail(s);
        else maybe_async(s.hidden);
        emit('Z', s.hidden);
        return;
      }
      case R::function_call:
        if (error) fail(s);
        else emit('V', s.hidden);
        emit('Z', s.hidden);
        return;
      default: break;
    }
    // Extended-protocol requests.
    if (error) {
      if (s.req == R::execute && rng.chance(50)) emit('D', s.hidden);
      fail(s);
      skipping = true;
      return;
    }
    switch (s.req) {
      case R::parse: emit('1', s.hidden); break;
      case R::bind: emit('2', s.hidden); break;
      case R::close: emit('3', s.hidden); break;
      case R::describe_stmt:
        emit('t', s.hidden);
        emit(rng.chance(50) ? 'T' : 'n', s.hidden);
        break;
      case R::describe_portal: emit(rng.chance(50) ? 'T' : 'n', s.hidden); break;
      case R::execute: result(s.hidden, false); break;
      default: break;
    }
  }
};

Step random_step(Rng& rng, uint64_t& next_tag, int& next_syn) {
  Step s;
  if (rng.chance(15)) {
    s.is_synthetic = true;
    const std::string mark = std::to_string(next_syn++);
    switch (rng.below(4)) {
      case 0: s.message = syn('1', mark); break;
      case 1: s.message = syn('3', mark); break;
      case 2: s.message = syn('C', mark) + syn('Z', mark); break;
      default: s.message = syn('S', mark) + syn('C', mark) + syn('Z', mark); break;
    }
    return s;
  }
  // Weighted towards the extended protocol, as a pipelining driver sends it.
  static const R weights[] = {R::parse, R::parse, R::bind,  R::bind,          R::describe_stmt,
                              R::describe_portal, R::execute, R::execute, R::close, R::sync,
                              R::sync,  R::sync,  R::query, R::query,        R::function_call};
  s.req = weights[rng.below(sizeof(weights) / sizeof(weights[0]))];
  const bool pgmux_kind = s.req == R::parse || s.req == R::close || s.req == R::query;
  s.hidden = rng.chance(pgmux_kind ? 30 : 5);
  if ((s.req == R::parse || s.req == R::query) && rng.chance(50)) s.tag = next_tag++;
  return s;
}

}  // namespace

TEST_CASE("ResponseTracker: randomised pipelines against a model of the server", "[tracker]") {
  for (uint64_t seed = 1; seed <= 3000; ++seed) {
    INFO("seed " << seed);
    Rng rng(seed);
    ServerModel server(rng);
    ResponseTracker t;
    std::string out;
    std::vector<uint64_t> unprepared;
    uint64_t next_tag = 100;
    int next_syn = 0;

    std::vector<Step> steps;
    for (size_t n = 1 + rng.below(40); n > 0; --n)
      steps.push_back(random_step(rng, next_tag, next_syn));
    steps.push_back(Step{});  // a final visible Sync

    size_t sent = 0;
    bool mid_message = false;  // a server header was read, its body not yet
    std::string body_pending;
    bool body_shown = false;
    auto collect = [&] {
      auto tags = t.take_unprepared();
      unprepared.insert(unprepared.end(), tags.begin(), tags.end());
    };
    for (;;) {
      const bool can_send = sent < steps.size();
      const bool can_read = mid_message || !server.pipe.empty();
      if (!can_send && !can_read) break;
      if (can_send && (!can_read || rng.chance(40))) {
        // A client chunk: one or more requests, then flush_due_responses.
        for (size_t n = 1 + rng.below(4); n > 0 && sent < steps.size(); --n) {
          const Step& s = steps[sent++];
          if (s.is_synthetic) t.synthetic(s.message);
          else t.sent(s.req, s.hidden, s.tag);
          server.process(s);
        }
        if (!mid_message && t.special()) t.take_due(out);
      } else if (mid_message) {
        // The rest of the message; then what became due.
        if (body_shown) out += body_pending;
        mid_message = false;
        t.take_due(out);
      } else {
        std::string m = std::move(server.pipe.front());
        server.pipe.pop_front();
        const bool shown = t.on_server_message(m[0]) == Action::pass;
        if (shown) out += m.substr(0, 5);
        collect();
        if (m.size() > 5 && rng.chance(50)) {
          mid_message = true;
          body_pending = m.substr(5);
          body_shown = shown;
        } else {
          if (shown) out += m.substr(5);
          t.take_due(out);
        }
      }
      collect();
      if (!mid_message && server.pipe.empty()) {
        // Every answer is in: the client has seen exactly the model's output
        // and nothing is left in flight.
        REQUIRE(out == server.expect);
        REQUIRE(t.empty());
        REQUIRE_FALSE(t.special());
      }
    }
    REQUIRE(out == server.expect);
    REQUIRE(unprepared == server.expect_unprepared);
    require_idle(t);
  }
}

// ---------------------------------------------------------------------------
// sent_failing: the request pgmux sends after an error it reported itself,
// so that the server's transaction fails too.

TEST_CASE("ResponseTracker: a failing Bind after pgmux's error: its error is hidden, the segment "
          "ends at the client's Sync",
          "[tracker]") {
  Harness h;
  h.send(R::parse, false, 7);      // earlier in the segment: skipped by the server
  h.answer(syn('E'));              // pgmux's own error (42P05)
  h.t.sent_failing(R::bind);       // Bind of a statement that does not exist
  h.send(R::sync);                 // the client's Sync
  CHECK(h.t.special());
  feed(h, {
              {'1', 'p', false, true},  // the Parse is answered, then pgmux's error is due
              {'E', 'h', false, false},  // the failing Bind: hidden
              {'Z', 'p', true, false},
          });
  CHECK(h.seen() == "1[E]Z");
  CHECK(h.take_tags().empty());
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: a failing simple Query: its error is hidden, its ReadyForQuery passes",
          "[tracker]") {
  Harness h;
  h.answer(syn('E'));
  h.t.sent_failing(R::query);
  h.flush();
  CHECK(h.seen() == "[E]");
  feed(h, {
              {'E', 'h', false, false},
              {'Z', 'p', true, false},
          });
  CHECK(h.seen() == "Z");
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: when an earlier request fails, pgmux's error and the failing request "
          "are skipped with it",
          "[tracker]") {
  Harness h;
  h.send(R::parse, /*hidden=*/true);  // the probe: refused in a failed transaction
  h.send(R::close, /*hidden=*/true);
  h.answer(syn('E'));
  h.t.sent_failing(R::bind);
  h.send(R::sync);
  feed(h, {
              {'E', 'p', false, false},  // 25P02 from the server: shown, the rest skipped
              {'Z', 'p', true, false},
          });
  CHECK(h.seen() == "EZ");
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: a failing request while the server skips to Sync is not queued",
          "[tracker]") {
  Harness h;
  h.send(R::execute);
  feed(h, {{'E', 'p', true, false}});  // no Sync sent yet: skipping
  CHECK(h.t.skipping());
  h.t.sent_failing(R::bind);
  CHECK(h.t.empty());
  CHECK_FALSE(h.t.special());
  h.send(R::sync);
  CHECK_FALSE(h.t.skipping());
  feed(h, {{'Z', 'p', true, false}});
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: a tagged Execute is reported when completed, not when it fails",
          "[tracker]") {
  Harness h;
  h.send(R::parse);
  h.send(R::bind);
  h.t.sent(R::execute, false, 42);
  h.send(R::sync);
  feed(h, {{'1', 'p', false, false}, {'2', 'p', false, false}, {'C', 'p', false, false}});
  CHECK(h.t.take_executed() == std::vector<uint64_t>{42});
  feed(h, {{'Z', 'p', true, false}});

  h.t.sent(R::execute, false, 43);
  h.send(R::sync);
  feed(h, {{'E', 'p', false, false}, {'Z', 'p', true, false}});
  CHECK(h.t.take_executed().empty());
  CHECK(h.take_tags() == std::vector<uint64_t>{43});  // reported as not done
}

TEST_CASE("ResponseTracker: describing names the statement Describe the next answer is for",
          "[tracker]") {
  Harness h;
  uint64_t stmt = 0, name = 0;
  CHECK_FALSE(h.t.describing(stmt, name));
  h.send(R::parse, true, 5);
  h.t.sent_describe(true, 5, 0);   // pgmux's own
  h.answer(syn('1'));               // a Parse pgmux answers itself
  h.t.sent_describe(false, 6, 42);  // the client's
  h.send(R::describe_stmt);        // a Describe pgmux does not follow
  h.send(R::sync);
  CHECK_FALSE(h.t.describing(stmt, name));  // a Parse is at the head
  h.server('1');
  REQUIRE(h.t.describing(stmt, name));
  CHECK(stmt == 5);
  CHECK(name == 0);
  h.server('t');
  CHECK(h.t.describing(stmt, name));  // still: 'T' / 'n' ends it
  h.server('T');
  // pgmux's answer is due first (synthetic entries are skipped).
  REQUIRE(h.t.describing(stmt, name));
  CHECK(stmt == 6);
  CHECK(name == 42);
  h.server('t');
  h.server('n');
  CHECK_FALSE(h.t.describing(stmt, name));
  h.server_all("tTZ");
  CHECK(h.seen() == "[1]tntTZ");
  require_idle(h.t);
  // A portal Describe tells it too.
  h.send(R::bind);
  h.t.sent_describe(false, 8, 44, /*portal=*/true);
  h.send(R::execute);
  h.send(R::sync);
  h.server('2');
  REQUIRE(h.t.describing(stmt, name));
  CHECK(stmt == 8);
  CHECK(name == 44);
  h.server_all("TDCZ");
  CHECK_FALSE(h.t.describing(stmt, name));
  CHECK(h.seen() == "2TDCZ");
  require_idle(h.t);
  // Sent while the server skips to Sync after an error: never answered,
  // and so said.
  Harness e;
  e.send(R::bind);
  e.server('E');
  CHECK_FALSE(e.t.sent_describe(false, 7, 43));
  CHECK_FALSE(e.t.describing(stmt, name));
  CHECK_FALSE(e.t.client_describes(7));
}

TEST_CASE("ResponseTracker: a client's Describe in flight, and one that fails, by statement", "[tracker]") {
  Harness h;
  CHECK(h.t.sent_describe(true, 5, 0));  // pgmux's own: not the client's
  CHECK(h.t.sent_describe(false, 6, 42));
  h.send(R::bind);
  CHECK(h.t.sent_describe(false, 7, 43, /*portal=*/true));
  h.send(R::execute);
  h.send(R::sync);
  CHECK_FALSE(h.t.client_describes(5));
  CHECK(h.t.client_describes(6));
  CHECK(h.t.client_describes(7));
  h.server_all("tT");  // pgmux's own, hidden
  h.server_all("tT");  // 6's
  CHECK_FALSE(h.t.client_describes(6));
  CHECK(h.t.client_describes(7));
  // The Bind fails: the portal Describe is never answered, and its name
  // tag is reported with the Parses that define no name.
  h.server('E');
  CHECK_FALSE(h.t.client_describes(7));
  CHECK(h.t.take_unnamed() == std::vector<uint64_t>{43});
  h.server('Z');
  require_idle(h.t);
}

TEST_CASE("ResponseTracker: simple Queries the server skips after an extended-protocol error are counted",
          "[tracker]") {
  ResponseTracker t;
  // Execute fails; the Query before the Sync is skipped (no 'Z' for it).
  t.sent(R::execute);
  t.sent(R::query);
  t.sent(R::sync);
  CHECK(t.take_skipped_queries() == 0);
  t.on_server_message('E');
  CHECK(t.has_reports());
  CHECK(t.take_skipped_queries() == 1);
  CHECK(t.take_skipped_queries() == 0);  // taken once
  CHECK(t.on_server_message('Z') == Action::pass);
  CHECK(t.empty());
  // The error comes before the Sync is sent: Queries sent meanwhile too.
  t.sent(R::execute);
  t.on_server_message('E');
  CHECK(t.skipping());
  t.sent(R::query);
  t.sent(R::function_call);
  t.sent(R::bind);
  CHECK(t.take_skipped_queries() == 2);
  t.sent(R::sync);
  CHECK_FALSE(t.skipping());
  t.sent(R::query);  // after the Sync: answered
  CHECK(t.take_skipped_queries() == 0);
  // A simple Query's own error is no skip.
  ResponseTracker u;
  u.sent(R::query);
  u.on_server_message('E');
  CHECK(u.take_skipped_queries() == 0);
}
