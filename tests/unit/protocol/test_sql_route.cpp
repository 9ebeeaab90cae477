// begins_read_only_transaction / is_read_only_query: read/write routing from
// the SQL text. A false "true" sends a write (or a locking read) to a
// replica, so every case that must be false is as important as the ones that
// must be true; unknown or malformed input must come out false.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "protocol/sql_route.hpp"
#include "support.hpp"

using namespace pgmux::proto;
using namespace pgmux::proto::test;

namespace {

struct Case {
  std::string query;
  bool expected;
};

// The query with control and non-ASCII bytes escaped, for failure messages.
std::string printable(std::string_view q) {
  std::string out;
  for (char c : q) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

void check_read_only(const std::string& q, bool expected) {
  INFO("is_read_only_query [" << printable(q) << "]");
  CHECK(is_read_only_query(q) == expected);
}
void check_begins(const std::string& q, bool expected) {
  INFO("begins_read_only_transaction [" << printable(q) << "]");
  CHECK(begins_read_only_transaction(q) == expected);
}

// Case changes that keep every token's meaning: keywords are
// case-insensitive, and a letter is changed the same way wherever it is, so
// that dollar-quote tags still match.
std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string s) {
  for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string mixed(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z' && (c - 'a') % 2 == 0) c = char(c - 'a' + 'A');
    if (c >= 'A' && c <= 'Z' && (c - 'A') % 3 == 0) c = char(c - 'A' + 'a');
  }
  return s;
}

template <typename Check>
void check_all_cases(const std::vector<Case>& cases, Check check) {
  for (const Case& c : cases) {
    check(c.query, c.expected);
    check(lower(c.query), c.expected);
    check(upper(c.query), c.expected);
    check(mixed(c.query), c.expected);
  }
}
void read_only_cases(const std::vector<Case>& cases) { check_all_cases(cases, check_read_only); }
void begins_cases(const std::vector<Case>& cases) { check_all_cases(cases, check_begins); }

// Whitespace and comments that may stand in any gap between two tokens.
const std::vector<std::string> kGaps = {
    "\n", "\t", "   ", "\r\n", "\f", "/* c */", "/**/", "/* a /* b */ c */", "/*/ x **/",
    "-- c\n", " --\n", "-- c\r", "\n-- c\n\n", " /* x */ -- y\n /* z */ ",
};

// `q` has exactly one ' ' in each gap between tokens and none elsewhere:
// every gap (and the start and the end) gets each kind of space or comment.
template <typename Check>
void check_in_every_gap(const std::vector<Case>& cases, Check check) {
  for (const Case& c : cases) {
    for (const std::string& gap : kGaps) {
      std::string q;
      for (char ch : c.query) {
        if (ch == ' ') {
          q += gap;
        } else {
          q += ch;
        }
      }
      check(q, c.expected);
      check(gap + q, c.expected);
      check(q + (gap.find("--") != std::string::npos ? gap : gap + ";" + gap), c.expected);
      check(mixed(q), c.expected);
    }
  }
}

// An exact-size copy (no NUL after it), so the sanitizer sees any read past the end.
struct ExactBuffer {
  explicit ExactBuffer(std::string_view s) : buf(new char[s.size() + s.empty()]), size(s.size()) {
    std::copy(s.begin(), s.end(), buf.get());
  }
  std::string_view view() const { return {buf.get(), size}; }
  std::unique_ptr<char[]> buf;
  size_t size;
};

// ---------------------------------------------------------------------------
// Tables shared by several test cases.

// Single select-like statements (no trailing ';'), read-only or not; EXPLAIN
// of each must be classified the same way.
const std::vector<Case> kSelectLike = {
    {"SELECT 1", true},
    {"SELECT * FROM t WHERE id = $1", true},
    {"SELECT * FROM t WHERE x IN (SELECT y FROM u WHERE z > 0)", true},
    {"SELECT 1 AS for_update", true},
    {"WITH x AS (SELECT 1) SELECT * FROM x", true},
    {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 9) SELECT * FROM r",
     true},
    {"VALUES (1, 'a'), (2, 'b')", true},
    {"TABLE t", true},
    {"(SELECT 1) UNION (SELECT 2)", true},
    {"((SELECT 1))", true},
    {"(VALUES (1))", true},
    {"SELECT 'FOR UPDATE', $$ INTO $$, \"delete\" FROM t", true},
    {"SELECT * FROM t FOR UPDATE", false},
    {"SELECT * FROM t FOR NO KEY UPDATE", false},
    {"SELECT * FROM t FOR SHARE", false},
    {"SELECT * FROM t FOR KEY SHARE", false},
    {"SELECT * FROM (SELECT * FROM t FOR UPDATE) s", false},
    {"SELECT * INTO t2 FROM t", false},
    {"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", false},
    {"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", false},
    {"(SELECT * FROM t FOR SHARE) UNION (SELECT 2)", false},
    {"INSERT INTO t VALUES (1)", false},
    {"UPDATE t SET a = 1", false},
    {"DELETE FROM t", false},
    {"MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", false},
    {"CREATE TABLE t2 AS SELECT 1", false},
    {"EXECUTE p", false},
    {"DECLARE c CURSOR FOR SELECT 1", false},
};

// Queries that are read-only, several lexical forms of each.
const std::vector<std::string> kReadOnly = {
    "SELECT 1",
    "SELECT * FROM t WHERE a = 'x;y' AND b = $$;$$ -- ;",
    "SELECT \"for\", \"update\" FROM t /* FOR UPDATE */",
    "SHOW search_path",
    "VALUES (1)",
    "TABLE t",
    "(SELECT 1) UNION (SELECT 2)",
    "EXPLAIN ANALYZE SELECT 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "SELECT E'\\'; DELETE FROM t; --'",
    "SELECT 1 -- end",
    "SELECT 1; SELECT 2",
};

}  // namespace

// ===========================================================================
// begins_read_only_transaction

TEST_CASE("begins_read_only_transaction: the spellings of a read-only BEGIN", "[sql][route]") {
  begins_cases({
      {"BEGIN READ ONLY", true},
      {"BEGIN READ ONLY;", true},
      {"BEGIN READ ONLY ; ", true},
      {"BEGIN READ ONLY; SELECT 1; COMMIT", true},
      {"BEGIN WORK READ ONLY", true},
      {"BEGIN TRANSACTION READ ONLY", true},
      {"START TRANSACTION READ ONLY", true},
      {"START TRANSACTION READ ONLY;", true},
      {"BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", true},
      {"BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY", true},
      {"BEGIN ISOLATION LEVEL SERIALIZABLE,READ ONLY", true},
      {"BEGIN READ ONLY, ISOLATION LEVEL REPEATABLE READ", true},
      {"BEGIN READ ONLY ISOLATION LEVEL READ COMMITTED", true},
      {"BEGIN ISOLATION LEVEL READ UNCOMMITTED READ ONLY", true},
      {"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", true},
      {"BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY", true},
      {"BEGIN READ ONLY DEFERRABLE", true},
      {"BEGIN READ ONLY, NOT DEFERRABLE", true},
      {"BEGIN NOT DEFERRABLE READ ONLY", true},
      {"BEGIN DEFERRABLE, READ ONLY, ISOLATION LEVEL SERIALIZABLE", true},
      {"START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE", true},
      {"begin /* x */ isolation level serializable, read only deferrable", true},
      {"BEGIN READ ONLY READ ONLY", true},
      {"BEGIN/**/READ/**/ONLY", true},
      {"BEGIN\tREAD\nONLY", true},
      {"  \n BEGIN READ ONLY", true},
      {"-- hello\nBEGIN READ ONLY", true},
      {"/* a /* nested */ comment */ BEGIN READ ONLY", true},
      {"BEGIN -- c\nREAD -- c\r ONLY -- c", true},
      {"BEGIN READ /* a /* b */ c */ ONLY", true},
      // Empty statements before it change nothing.
      {";BEGIN READ ONLY", true},
      {" ; ; BEGIN READ ONLY", true},
      // What follows the first statement does not matter...
      {"BEGIN READ ONLY; INSERT INTO t VALUES (1)", true},
      {"BEGIN READ ONLY; SELECT ';'; COMMIT", true},
      {"BEGIN READ ONLY;BEGIN READ WRITE", true},
      {"START TRANSACTION READ ONLY; SELECT $$ ; $$; SELECT \"x;\"", true},
  });
}

TEST_CASE("begins_read_only_transaction: everything else is false", "[sql][route]") {
  begins_cases({
      {"", false},
      {" ", false},
      {";", false},
      {"; ;", false},
      {"-- BEGIN READ ONLY", false},
      {"/* BEGIN READ ONLY */", false},
      {"BEGIN", false},
      {"BEGIN;", false},
      {"BEGIN WORK", false},
      {"BEGIN TRANSACTION;", false},
      {"START TRANSACTION", false},
      {"BEGIN; SET TRANSACTION READ ONLY", false},
      {"BEGIN; SET TRANSACTION READ ONLY; SELECT 1", false},
      {"SET TRANSACTION READ ONLY", false},
      {"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", false},
      {"BEGIN READ WRITE", false},
      {"BEGIN ISOLATION LEVEL SERIALIZABLE", false},
      {"BEGIN DEFERRABLE", false},
      {"BEGIN NOT DEFERRABLE", false},
      {"BEGIN ISOLATION LEVEL SERIALIZABLE, DEFERRABLE", false},
      // READ ONLY together with READ WRITE: not ours to decide which wins.
      {"BEGIN READ ONLY READ WRITE", false},
      {"BEGIN READ ONLY, READ WRITE", false},
      {"BEGIN READ WRITE, READ ONLY", false},
      {"START TRANSACTION READ WRITE ISOLATION LEVEL SERIALIZABLE READ ONLY", false},
      // Wrong shapes: the server rejects them, or they are something else.
      {"START READ ONLY", false},
      {"START", false},
      {"START WORK READ ONLY", false},
      {"START TRANSACTION WORK READ ONLY", false},
      {"BEGIN TRANSACTION WORK READ ONLY", false},
      {"BEGIN WORK TRANSACTION READ ONLY", false},
      {"BEGIN WORK WORK READ ONLY", false},
      {"BEGIN READ", false},
      {"BEGIN READ;", false},
      {"BEGIN ONLY", false},
      {"BEGIN ONLY READ", false},
      {"BEGIN NOT READ ONLY", false},
      {"BEGIN READ NOT ONLY", false},
      {"BEGIN READ ONLY,", false},
      {"BEGIN READ ONLY ,;", false},
      {"BEGIN , READ ONLY", false},
      {"BEGIN READ ONLY,, DEFERRABLE", false},
      {"BEGIN READ ONLY x", false},
      {"BEGIN READ ONLY 1", false},
      {"BEGIN READ ONLY (", false},
      {"BEGIN (READ ONLY)", false},
      {"BEGIN READ ONLY NOT", false},
      {"BEGIN NOT NOT DEFERRABLE READ ONLY", false},
      {"BEGIN ISOLATION READ ONLY", false},
      {"BEGIN ISOLATION LEVEL READ ONLY", false},
      {"BEGIN ISOLATION LEVEL REPEATABLE READ ONLY", false},
      {"BEGIN ISOLATION LEVEL REPEATABLE, READ ONLY", false},
      {"BEGIN ISOLATION LEVEL SERIALIZABLE READ", false},
      {"BEGIN ISOLATION LEVEL READ WRITE READ ONLY", false},
      {"BEGIN ISOLATION LEVEL, READ ONLY", false},
      {"BEGIN LEVEL SERIALIZABLE READ ONLY", false},
      {"BEGIN ATOMIC", false},
      // Whole tokens only.
      {"BEGINREAD ONLY", false},
      {"BEGIN READONLY", false},
      {"BEGIN READ_ONLY", false},
      {"BEGIN READ ONLYX", false},
      {"BEGIN READ ONLY$", false},
      {"BEGIN$ READ ONLY", false},
      {"BEGINS READ ONLY", false},
      {"XBEGIN READ ONLY", false},
      {"BEGIN_ READ ONLY", false},
      // Keywords inside quotes, strings and comments do not count.
      {"\"BEGIN\" READ ONLY", false},
      {"BEGIN \"READ\" ONLY", false},
      {"BEGIN READ \"ONLY\"", false},
      {"BEGIN 'READ ONLY'", false},
      {"BEGIN E'READ ONLY'", false},
      {"BEGIN $$READ ONLY$$", false},
      {"BEGIN $x$READ ONLY$x$", false},
      {"BEGIN -- READ ONLY", false},
      {"BEGIN /* READ ONLY */", false},
      {"BEGIN /* READ ONLY */;", false},
      {"BEGIN; -- READ ONLY", false},
      {"BEGIN U&\"READ\" ONLY", false},
      // It must be the first statement.
      {"SELECT 1; BEGIN READ ONLY", false},
      {"COMMIT; BEGIN READ ONLY", false},
      {"ROLLBACK; START TRANSACTION READ ONLY", false},
      {"SELECT 'x'; BEGIN READ ONLY", false},
      {"SELECT 'BEGIN READ ONLY'", false},
      {"PREPARE TRANSACTION 'x'", false},
      {"COMMIT", false},
      {"END", false},
      {"ABORT", false},
  });
}

TEST_CASE("begins_read_only_transaction: an unscannable string is false", "[sql][route]") {
  // The server scans the whole string before running any of it: an
  // unterminated literal or comment anywhere means nothing runs.
  begins_cases({
      {"BEGIN READ ONLY; SELECT 'abc", false},
      {"BEGIN READ ONLY; SELECT E'abc\\'", false},
      {"BEGIN READ ONLY; SELECT \"abc", false},
      {"BEGIN READ ONLY; SELECT $$abc", false},
      {"BEGIN READ ONLY; SELECT $a$abc$b$", false},
      {"BEGIN READ ONLY /* unterminated", false},
      {"BEGIN READ ONLY; /* a /* b */", false},
      {"BEGIN READ ONLY; SELECT U&'x", false},
      {"BEGIN /* READ ONLY", false},
      {"BEGIN READ ONLY -- a line comment needs no newline", true},
      {"BEGIN READ ONLY; SELECT 'abc' -- '", true},
  });
  // A NUL ends the query string for the server: what follows is not seen.
  check_begins(std::string("BEGIN READ ONLY\0", 16), false);
  check_begins(std::string("BEGIN\0READ ONLY", 15), false);
  check_begins(std::string("BEGIN READ ONLY; SELECT '\0'", 27), false);
}

TEST_CASE("begins_read_only_transaction: every prefix, mode list and separator", "[sql][route]") {
  const std::vector<std::string> prefixes = {"BEGIN", "BEGIN WORK", "BEGIN TRANSACTION",
                                             "START TRANSACTION"};
  struct Modes {
    std::vector<std::string> items;
    bool expected;
  };
  const std::vector<Modes> lists = {
      {{"READ ONLY"}, true},
      {{"READ WRITE"}, false},
      {{"ISOLATION LEVEL SERIALIZABLE", "READ ONLY"}, true},
      {{"ISOLATION LEVEL REPEATABLE READ", "READ ONLY"}, true},
      {{"ISOLATION LEVEL READ COMMITTED", "READ ONLY"}, true},
      {{"ISOLATION LEVEL READ UNCOMMITTED", "READ ONLY"}, true},
      {{"READ ONLY", "ISOLATION LEVEL REPEATABLE READ"}, true},
      {{"READ ONLY", "ISOLATION LEVEL READ COMMITTED"}, true},
      {{"READ ONLY", "DEFERRABLE"}, true},
      {{"READ ONLY", "NOT DEFERRABLE"}, true},
      {{"NOT DEFERRABLE", "READ ONLY"}, true},
      {{"DEFERRABLE", "READ ONLY", "ISOLATION LEVEL SERIALIZABLE"}, true},
      {{"ISOLATION LEVEL SERIALIZABLE", "READ ONLY", "DEFERRABLE"}, true},
      {{"ISOLATION LEVEL SERIALIZABLE", "READ WRITE", "DEFERRABLE"}, false},
      {{"ISOLATION LEVEL SERIALIZABLE", "DEFERRABLE"}, false},
      {{"READ ONLY", "READ WRITE"}, false},
      {{"READ WRITE", "READ ONLY"}, false},
      {{"READ ONLY", "DEFERRABLE", "READ WRITE"}, false},
      {{"READ ONLY", "ISOLATION LEVEL"}, false},
      {{"READ ONLY", "LEVEL SERIALIZABLE"}, false},
      {{"READ ONLY", "DEFERRED"}, false},
      {{"READ ONLY", "NOT"}, false},
  };
  const std::vector<std::string> separators = {" ", ", ", ",", " , ", "\n,\n", " /* , */ ",
                                               ", -- x\n"};
  const std::vector<std::string> endings = {"", ";", " ; ", "; SELECT 1; COMMIT", "\n-- c"};
  for (const std::string& prefix : prefixes) {
    for (const Modes& m : lists) {
      for (const std::string& sep : separators) {
        std::string modes;
        for (size_t k = 0; k < m.items.size(); ++k) modes += (k ? sep : "") + m.items[k];
        for (const std::string& end : endings) {
          std::string q = prefix + " " + modes + end;
          check_begins(q, m.expected);
          check_begins(lower(q), m.expected);
          check_begins(mixed(q), m.expected);
          // A stray comma before, or after the last mode, is a syntax error.
          check_begins(prefix + ", " + modes + end, false);
          check_begins(prefix + " " + modes + "," + end, false);
        }
      }
    }
  }
}

TEST_CASE("begins_read_only_transaction: comments and spaces in every gap", "[sql][route]") {
  check_in_every_gap(
      {
          {"BEGIN READ ONLY", true},
          {"BEGIN WORK READ ONLY", true},
          {"BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ , READ ONLY NOT DEFERRABLE", true},
          {"START TRANSACTION READ ONLY , ISOLATION LEVEL SERIALIZABLE DEFERRABLE", true},
          {"START TRANSACTION ISOLATION LEVEL READ COMMITTED READ ONLY", true},
          {"BEGIN READ ONLY ; INSERT INTO t VALUES ( 1 )", true},
          {"BEGIN ; SET TRANSACTION READ ONLY", false},
          {"BEGIN READ WRITE", false},
          {"BEGIN READ ONLY READ WRITE", false},
          {"START READ ONLY", false},
          {"SELECT 1 ; BEGIN READ ONLY", false},
      },
      check_begins);
}

// ===========================================================================
// is_read_only_query

TEST_CASE("is_read_only_query: SELECT", "[sql][route]") {
  read_only_cases({
      {"SELECT 1", true},
      {"SELECT 1;", true},
      {"SELECT 1 ;  \n", true},
      {"  SELECT 1", true},
      {"SELECT", true},  // a valid statement: one row, no columns
      {"SELECT * FROM t", true},
      {"SELECT a, b FROM s.t WHERE x = 1 ORDER BY a DESC LIMIT 10 OFFSET 5", true},
      {"SELECT * FROM t WHERE x IN (SELECT y FROM u)", true},
      {"SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", true},
      {"SELECT (SELECT max(x) FROM u) FROM t", true},
      {"SELECT * FROM (SELECT 1) AS s", true},
      {"SELECT * FROM t1 JOIN t2 USING (id) LEFT JOIN t3 ON t3.a = t1.a", true},
      {"SELECT DISTINCT ON (a) a, b FROM t", true},
      {"SELECT count(*) FROM t GROUP BY x HAVING count(*) > 1", true},
      {"SELECT 1 UNION ALL SELECT 2 EXCEPT SELECT 3 INTERSECT SELECT 4", true},
      {"SELECT * FROM t TABLESAMPLE SYSTEM (10)", true},
      {"SELECT rank() OVER w FROM t WINDOW w AS (PARTITION BY a ORDER BY b)", true},
      {"SELECT ARRAY[1,2], '{1,2}'::int[], 1::text, CAST(1 AS bigint)", true},
      {"SELECT $1, $2::int, $10", true},
      {"SELECT * FROM t WHERE a = ANY($1)", true},
      {"SELECT now(), current_user, version()", true},
      {"SELECT x FROM t FOR READ ONLY", true},  // not a locking clause
      {"SELECT substring(s FROM 1 FOR 2) FROM t", true},
      {"SELECT overlay(s PLACING 'x' FROM 1 FOR 1) FROM t", true},
      {"SELECT a$b, a$b$c FROM t", true},
      {"SELECT 1.5e3, .5, 0x1F, 1_000", true},
      {"SELECT a->>'k', a #> '{x}', a @> b, a <-> b, a || b, -1 FROM t", true},
      // Identifiers that merely contain a keyword.
      {"SELECT 1 AS for_update", true},
      {"SELECT updated_at, into_x, format, deleted, inserted_by, merged, shared, forx FROM t",
       true},
      {"SELECT t.for_share, t.key_share, t.no_key FROM t", true},
      {"SELECT x AS into1, y AS _into, z AS \"into\" FROM t", true},
      {"SELECT insert_x, xupdate, delete$ FROM t", true},
      // Functions are not analysed (see the header).
      {"SELECT nextval('s')", true},
      {"SELECT pg_advisory_lock(1)", true},
      {"SELECT set_config('a.b', 'c', false)", true},
  });
}

TEST_CASE("is_read_only_query: locking clauses at any level", "[sql][route]") {
  read_only_cases({
      {"SELECT * FROM t FOR UPDATE", false},
      {"SELECT * FROM t FOR NO KEY UPDATE", false},
      {"SELECT * FROM t FOR SHARE", false},
      {"SELECT * FROM t FOR KEY SHARE", false},
      {"SELECT * FROM t FOR UPDATE;", false},
      {"SELECT * FROM t FOR UPDATE OF t NOWAIT", false},
      {"SELECT * FROM t FOR UPDATE SKIP LOCKED", false},
      {"SELECT * FROM t FOR SHARE OF t FOR UPDATE OF u", false},
      {"SELECT * FROM t LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED", false},
      {"SELECT * FROM t WHERE id = 1 FOR KEY SHARE OF t", false},
      {"SELECT * FROM (SELECT * FROM t FOR UPDATE) s", false},
      {"SELECT * FROM t WHERE id IN (SELECT id FROM u FOR KEY SHARE)", false},
      {"SELECT (SELECT x FROM t LIMIT 1 FOR SHARE)", false},
      {"SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a FOR NO KEY UPDATE)",
       false},
      {"SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.id = t.id FOR SHARE) l", false},
      {"(SELECT * FROM t FOR UPDATE)", false},
      {"(SELECT 1) UNION (SELECT * FROM t FOR SHARE)", false},
      {"TABLE t FOR UPDATE", false},
      {"VALUES (1) FOR UPDATE", false},
      {"SELECT substring(s FROM 1 FOR 2) FROM t FOR UPDATE", false},
      {"SELECT x FROM t FOR READ ONLY; SELECT * FROM t FOR SHARE", false},
      // Comments between the words.
      {"SELECT * FROM t FOR /* c */ UPDATE", false},
      {"SELECT * FROM t FOR -- c\n KEY -- d\n SHARE", false},
      {"SELECT * FROM t FOR/**/NO/**/KEY/**/UPDATE", false},
      {"SELECT * FROM t FOR /* a /* b */ */ SHARE", false},
      // Not a locking clause: the words are in literals, comments or quotes.
      {"SELECT 'FOR UPDATE' FROM t", true},
      {"SELECT 'x' AS \"for\", 'y' AS \"update\" FROM t", true},
      {"SELECT * FROM t AS \"for\"", true},
      {"SELECT \"for\" FROM t -- FOR UPDATE", true},
      {"SELECT \"FOR\" \"SHARE\" FROM t", true},
      {"SELECT * FROM t /* FOR UPDATE */", true},
      {"SELECT * FROM t WHERE a = $$ FOR SHARE $$", true},
      {"SELECT * FROM t FOR \"update\"", true},
      {"SELECT * FROM t FOR 'share'", true},
  });
}

TEST_CASE("is_read_only_query: SELECT INTO and other INTO", "[sql][route]") {
  read_only_cases({
      {"SELECT * INTO new_t FROM t", false},
      {"SELECT a INTO TEMP x FROM t", false},
      {"SELECT a INTO UNLOGGED TABLE x FROM t", false},
      {"SELECT 1 INTO t2", false},
      {"SELECT * FROM t INTO x", false},
      {"select a into strict b from t", false},
      {"SELECT a, b INTO x FROM t WHERE c IN (SELECT d FROM u)", false},
      {"(SELECT 1 INTO x)", false},
      {"WITH c AS (SELECT 1) SELECT * INTO x FROM c", false},
      {"INSERT INTO t SELECT 1", false},
      {"INSERT INTO t VALUES (1)", false},
      {"SELECT 1 /* */ INTO /* */ x", false},
      // Not INTO.
      {"SELECT 'INTO' FROM t", true},
      {"SELECT \"into\" FROM t", true},
      {"SELECT into_x, x_into, \"INTO\" FROM t", true},
      {"SELECT 1 -- INTO x", true},
      {"SELECT $q$ INTO $q$", true},
  });
}

TEST_CASE("is_read_only_query: WITH and data-modifying CTEs", "[sql][route]") {
  read_only_cases({
      {"WITH x AS (SELECT 1) SELECT * FROM x", true},
      {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) "
       "SELECT * FROM r",
       true},
      {"WITH a AS (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b", true},
      {"WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x", true},
      {"WITH x AS NOT MATERIALIZED (SELECT 1) SELECT * FROM x", true},
      {"WITH x AS (WITH y AS (SELECT 1) SELECT * FROM y) SELECT * FROM x", true},
      {"WITH x AS (SELECT 1) VALUES (1)", true},
      {"WITH x AS (SELECT 1) TABLE x", true},
      {"WITH x AS (SELECT 1) (SELECT * FROM x)", true},
      {"WITH x(a, b) AS (VALUES (1, 2)) SELECT a FROM x", true},
      {"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) "
       "SEARCH DEPTH FIRST BY n SET ord SELECT * FROM t LIMIT 3",
       true},
      {"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) "
       "CYCLE n SET is_cycle USING path SELECT * FROM t LIMIT 3",
       true},
      {"WITH x AS (SELECT 'DELETE FROM t') SELECT * FROM x", true},
      {"WITH \"update\" AS (SELECT 1) SELECT * FROM \"update\"", true},
      {"WITH x AS (SELECT $$ INSERT INTO t $$) SELECT 1", true},
      // A data-modifying body in any position, at any depth.
      {"WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", false},
      {"WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", false},
      {"WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", false},
      {"WITH x AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING *) "
       "SELECT 1",
       false},
      {"WITH a AS (DELETE FROM t), b AS (SELECT 2) SELECT * FROM b", false},
      {"WITH a AS (SELECT 1), b AS (DELETE FROM t) SELECT * FROM a", false},
      {"WITH a AS (SELECT 1), b AS (SELECT 2), c AS (UPDATE t SET x = 1) SELECT 1", false},
      {"WITH RECURSIVE a AS (SELECT 1), b AS (INSERT INTO t SELECT * FROM a) SELECT 1", false},
      {"WITH x AS MATERIALIZED (DELETE FROM t RETURNING *) SELECT 1", false},
      {"WITH x AS NOT MATERIALIZED (UPDATE t SET a = 1 RETURNING a) SELECT 1", false},
      {"WITH x AS (WITH y AS (DELETE FROM t RETURNING *) SELECT * FROM y) SELECT * FROM x",
       false},
      {"WITH x AS (WITH y AS (SELECT 1) INSERT INTO t SELECT * FROM y RETURNING *) SELECT 1",
       false},
      {"WITH x AS (SELECT * FROM (WITH z AS (DELETE FROM t RETURNING *) SELECT * FROM z) s) "
       "SELECT 1",
       false},
      {"SELECT * FROM (WITH z AS (DELETE FROM t RETURNING *) SELECT * FROM z) s", false},
      {"(WITH z AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM z)", false},
      {"WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", false},
      {"WITH x AS (SELECT * FROM t FOR SHARE) SELECT * FROM x", false},
      {"WITH x AS (SELECT * FROM (SELECT * FROM t FOR KEY SHARE) s) SELECT * FROM x", false},
      // The main statement of a WITH.
      {"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", false},
      {"WITH x AS (SELECT 1) DELETE FROM t", false},
      {"WITH x AS (SELECT 1) UPDATE t SET a = 1", false},
      {"WITH x AS (SELECT 1) MERGE INTO t USING x ON true WHEN MATCHED THEN DO NOTHING", false},
      {"WITH RECURSIVE t(n) AS (SELECT 1) CYCLE n SET c USING p DELETE FROM u", false},
      {"WITH x AS (SELECT 1) SELECT * FROM x FOR UPDATE", false},
  });
}

TEST_CASE("is_read_only_query: VALUES, TABLE, SHOW and parenthesised selects", "[sql][route]") {
  read_only_cases({
      {"VALUES (1)", true},
      {"VALUES (1, 'a'), (2, 'b') ORDER BY 1 LIMIT 1", true},
      {"values(1)", true},
      {"TABLE t", true},
      {"TABLE ONLY t", true},
      {"TABLE public.t", true},
      {"TABLE \"My Table\"", true},
      {"SHOW search_path", true},
      {"SHOW ALL", true},
      {"SHOW TIME ZONE", true},
      {"SHOW TRANSACTION ISOLATION LEVEL", true},
      {"SHOW SESSION AUTHORIZATION", true},
      {"SHOW \"search_path\"", true},
      {"SHOW pg_stat_statements.max", true},
      {"SHOW server_version; SHOW ALL", true},
      {"VALUES", false},
      {"TABLE;", false},
      {"WITH", false},
      {"WITH;", false},
      {"SHOW", false},
      {"SHOW;", false},
      {"SHOW 'x'", false},
      {"SHOW (x)", false},
      {"SHOW x 'unterminated", false},
      {"(SELECT 1)", true},
      {"(SELECT 1) UNION (SELECT 2)", true},
      {"(SELECT 1) UNION ALL (SELECT 2) ORDER BY 1", true},
      {"((SELECT 1))", true},
      {"(((SELECT 1)) UNION ((SELECT 2)))", true},
      {"(VALUES (1))", true},
      {"(TABLE t)", true},
      {"(WITH x AS (SELECT 1) SELECT * FROM x)", true},
      {"(SELECT 1) ORDER BY 1", true},
      {"(DELETE FROM t)", false},
      {"(INSERT INTO t VALUES (1))", false},
      {"(CREATE TABLE x ())", false},
      {"(SHOW ALL)", false},
      {"(EXPLAIN SELECT 1)", false},
      {"()", false},
      {"(", false},
      {")", false},
      {"(1)", false},
      {"('SELECT')", false},
  });
}

TEST_CASE("is_read_only_query: EXPLAIN", "[sql][route]") {
  read_only_cases({
      {"EXPLAIN SELECT 1", true},
      {"EXPLAIN ANALYZE SELECT 1", true},
      {"EXPLAIN ANALYSE SELECT 1", true},
      {"EXPLAIN VERBOSE SELECT 1", true},
      {"EXPLAIN ANALYZE VERBOSE SELECT * FROM t", true},
      {"explain analyze select 1;", true},
      {"EXPLAIN (ANALYZE) SELECT 1", true},
      {"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM t", true},
      {"EXPLAIN (ANALYZE true, COSTS off, TIMING 0) SELECT 1", true},
      {"EXPLAIN (FORMAT 'yaml') SELECT 1", true},
      {"EXPLAIN (SETTINGS, WAL, SUMMARY) WITH x AS (SELECT 1) SELECT * FROM x", true},
      {"EXPLAIN VALUES (1)", true},
      {"EXPLAIN TABLE t", true},
      {"EXPLAIN (SELECT 1)", true},
      {"EXPLAIN (VALUES (1))", true},
      {"EXPLAIN ((SELECT 1))", true},
      {"EXPLAIN (TABLE t)", true},
      {"EXPLAIN (WITH x AS (SELECT 1) SELECT * FROM x)", true},
      {"EXPLAIN (SELECT 1) UNION (SELECT 2)", true},
      {"EXPLAIN (ANALYZE) (SELECT 1)", true},
      {"EXPLAIN ANALYZE (VALUES (1))", true},
      {"EXPLAIN SELECT 1; EXPLAIN ANALYZE SELECT 2", true},
      {"EXPLAIN INSERT INTO t VALUES (1)", false},
      {"EXPLAIN ANALYZE INSERT INTO t VALUES (1)", false},
      {"EXPLAIN ANALYZE DELETE FROM t", false},
      {"EXPLAIN (ANALYZE) UPDATE t SET a = 1", false},
      {"EXPLAIN (ANALYZE, FORMAT JSON) MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
       false},
      {"EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", false},
      {"EXPLAIN (ANALYZE) SELECT * FROM t FOR SHARE", false},
      {"EXPLAIN SELECT * INTO x FROM t", false},
      {"EXPLAIN ANALYZE WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", false},
      {"EXPLAIN (ANALYZE) (SELECT * FROM t FOR UPDATE)", false},
      {"EXPLAIN (ANALYZE) (DELETE FROM t)", false},
      {"EXPLAIN EXECUTE p", false},
      {"EXPLAIN ANALYZE EXECUTE p(1)", false},
      {"EXPLAIN CREATE TABLE x AS SELECT 1", false},
      {"EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", false},
      {"EXPLAIN CREATE MATERIALIZED VIEW v AS SELECT 1", false},
      {"EXPLAIN DECLARE c CURSOR FOR SELECT 1", false},
      {"EXPLAIN SHOW ALL", false},
      {"EXPLAIN EXPLAIN SELECT 1", false},
      {"EXPLAIN", false},
      {"EXPLAIN;", false},
      {"EXPLAIN ANALYZE", false},
      {"EXPLAIN ANALYZE;", false},
      {"EXPLAIN (ANALYZE", false},
      {"EXPLAIN (ANALYZE)", false},
      {"EXPLAIN (ANALYZE) ;", false},
      {"EXPLAIN (ANALYZE; SELECT 1)", false},
      {"EXPLAIN (FORMAT 'json", false},
      {"EXPLAIN 'SELECT 1'", false},
      {"EXPLAIN \"SELECT\" 1", false},
      {"EXPLAIN SELECT 1; EXPLAIN ANALYZE DELETE FROM t", false},
      {"EXPLAINx SELECT 1", false},
  });
}

TEST_CASE("is_read_only_query: EXPLAIN of a statement is as read-only as the statement",
          "[sql][route]") {
  const std::vector<std::string> prefixes = {
      "EXPLAIN ",           "EXPLAIN ANALYZE ",         "EXPLAIN ANALYSE VERBOSE ",
      "EXPLAIN VERBOSE ",   "EXPLAIN (ANALYZE) ",       "EXPLAIN (ANALYZE, FORMAT JSON) ",
      "EXPLAIN (COSTS) ",   "explain\n(analyze on)\n",  "EXPLAIN /* c */ ANALYZE -- c\n",
      "EXPLAIN(BUFFERS)",   "EXPLAIN (FORMAT 'x;y') ",
  };
  for (const Case& c : kSelectLike) {
    check_read_only(c.query, c.expected);
    for (const std::string& p : prefixes) {
      check_read_only(p + c.query, c.expected);
      check_read_only(p + c.query + ";", c.expected);
      check_read_only(lower(p + c.query), c.expected);
    }
  }
}

TEST_CASE("is_read_only_query: statements that are never read-only", "[sql][route]") {
  const std::vector<std::string> writes = {
      "INSERT INTO t VALUES (1)",
      "INSERT INTO t SELECT * FROM u",
      "UPDATE t SET a = 1",
      "DELETE FROM t",
      "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
      "COPY t FROM STDIN",
      "COPY t TO STDOUT",
      "COPY (SELECT 1) TO STDOUT",
      "CREATE TABLE x (a int)",
      "CREATE TEMP TABLE x AS SELECT 1",
      "CREATE INDEX ON t (a)",
      "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; END",
      "ALTER TABLE t ADD COLUMN b int",
      "DROP TABLE t",
      "TRUNCATE t",
      "BEGIN",
      "BEGIN READ ONLY",
      "START TRANSACTION READ ONLY",
      "COMMIT",
      "ROLLBACK",
      "END",
      "ABORT",
      "SAVEPOINT s",
      "RELEASE SAVEPOINT s",
      "SET search_path = x",
      "SET LOCAL statement_timeout = 0",
      "SET TRANSACTION READ ONLY",
      "RESET ALL",
      "LOCK TABLE t",
      "PREPARE p AS SELECT 1",
      "EXECUTE p",
      "DEALLOCATE p",
      "DECLARE c CURSOR FOR SELECT 1",
      "FETCH c",
      "CLOSE c",
      "CALL p()",
      "DO $$BEGIN PERFORM 1; END$$",
      "LISTEN ch",
      "NOTIFY ch",
      "UNLISTEN *",
      "VACUUM",
      "ANALYZE t",
      "CLUSTER t",
      "REINDEX TABLE t",
      "GRANT SELECT ON t TO u",
      "REVOKE ALL ON t FROM u",
      "COMMENT ON TABLE t IS 'x'",
      "DISCARD ALL",
      "CHECKPOINT",
      "REFRESH MATERIALIZED VIEW v",
      "LOAD 'x'",
      "SECURITY LABEL ON TABLE t IS 'x'",
      "IMPORT FOREIGN SCHEMA s FROM SERVER f INTO l",
      // Not a statement start pgmux knows, or not a keyword at all.
      "select1",
      "SELECTX 1",
      "SELECT_ 1",
      "\"select\" 1",
      "\"SELECT\" 1",
      "U&\"select\" 1",
      "'SELECT 1'",
      "E'SELECT 1'",
      "$$SELECT 1$$",
      "$1",
      "1",
      "SHOWALL",
      "values1",
      "TABLEt",
      "WITHx AS (SELECT 1) SELECT 1",
      "EXPLAINANALYZE SELECT 1",
      "-",
      "*",
      "\\d",
  };
  for (const std::string& w : writes) {
    check_read_only(w, false);
    check_read_only(lower(w), false);
    check_read_only(w + ";", false);
    check_read_only("SELECT 1; " + w, false);
    check_read_only(w + "; SELECT 1", false);
  }
}

TEST_CASE("is_read_only_query: keywords hidden in literals, quotes and comments",
          "[sql][route]") {
  read_only_cases({
      // Standard strings, '' escape.
      {"SELECT 'it''s FOR UPDATE'", true},
      {"SELECT '', 'FOR', 'UPDATE'", true},
      {"SELECT 'x''; DELETE FROM t; --'", true},
      {"SELECT '''' FOR UPDATE", false},
      {"SELECT 'a' FOR UPDATE", false},
      // E'' strings: backslash escapes, including \' (E or e right before the quote).
      {"SELECT E'\\'' , 'x FOR UPDATE'", true},
      {"SELECT E'\\' FOR UPDATE'", true},
      {"SELECT e'\\'; DELETE FROM t; --'", true},
      {"SELECT E'\\\\' , 1 FOR UPDATE", false},
      {"SELECT E'\\\\\\'' FOR UPDATE", false},
      {"SELECT E'a''b' FOR UPDATE", false},
      {"SELECT E'\\x41\\n\\t\\u0041' FROM t", true},
      {"SELECT xe'\\'; DELETE FROM t; --'", false},  // identifier xe, then a standard string
      {"SELECT 1e'\\'; DELETE FROM t; --'", true},   // 1 then e'...' (old servers)
      // A standard string: the backslash escapes nothing (but see the
      // standard_conforming_strings case below).
      {"SELECT 'a\\' FOR UPDATE --'", false},
      // U&'' strings: a backslash starts a Unicode escape, never a quote.
      {"SELECT U&'\\0041' FROM t", true},
      {"SELECT U&'\\0041' FOR UPDATE", false},
      {"SELECT U&'x\\' , 1 FOR UPDATE", false},
      {"SELECT u&'FOR UPDATE'", true},
      {"SELECT U&'d!0061t!+000061' UESCAPE '!' FROM t", true},
      // UESCAPE '\': a backslash in a standard literal (see below): conservative.
      {"SELECT U&'d\\0061t' UESCAPE '\\' FROM t", false},
      {"SELECT U&\"for\" FROM t", true},
      {"SELECT U&\"a\"\"b; DELETE FROM t\" FROM t", true},
      // B'' and X'' strings.
      {"SELECT B'0101', X'FF' FROM t", true},
      {"SELECT B'0' FOR UPDATE", false},
      {"SELECT X'1F', 'FOR UPDATE'", true},
      // N'' (national) strings.
      {"SELECT N'FOR UPDATE'", true},
      {"SELECT N'x', 1 FOR UPDATE", false},
      // Dollar quotes.
      {"SELECT $$ FOR UPDATE $$", true},
      {"SELECT $$;$$, $$ INTO $$", true},
      {"SELECT $tag$ ; DELETE FROM t; $tag$", true},
      {"SELECT $a$ $b$ ; DELETE $b$ $a$", true},
      {"SELECT $a$ $$ ; DELETE FROM t; $$ $a$", true},
      {"SELECT $_1$ DELETE $_1$", true},
      {"SELECT $x1$ DELETE $x1$", true},
      {"SELECT $\xc3\xa9$ DELETE $\xc3\xa9$", true},
      {"SELECT $a$x$a$, 1 FOR UPDATE", false},
      {"SELECT $$x$$ FOR UPDATE", false},
      {"SELECT $a$ x $a$$a$ FOR UPDATE $a$", true},
      {"SELECT $a$ x $a$ $b$ FOR UPDATE $b$", true},
      // $1 is a parameter; a '$' inside an identifier starts no dollar quote.
      {"SELECT $1, $a$; DELETE FROM t; $a$", true},
      {"SELECT $1$a$ ; DELETE FROM t; $a$", true},  // $1 then $a$...$a$
      {"SELECT a$b$ FROM t; DELETE FROM t; SELECT $b$", false},
      {"SELECT a$$ FROM t; DELETE FROM t; SELECT $$", false},
      {"SELECT $ FOR UPDATE", false},
      {"SELECT $a FOR UPDATE", false},
      {"SELECT $a FROM t; SELECT $a$", false},
      // Quoted identifiers, "" escape.
      {"SELECT \"for\" FROM t", true},
      {"SELECT \"a\"\"; DELETE FROM t; \"\"b\" FROM t", true},
      {"SELECT \"a\"\"b\" FROM t FOR UPDATE", false},
      {"SELECT \"'\" FROM t FOR UPDATE --'", false},
      {"SELECT '\"' FROM t FOR UPDATE --\"", false},
      {"SELECT \"$$\" FROM t; DELETE FROM t; SELECT $$", false},
      // Line comments end at \n or \r.
      {"SELECT 1 -- ; DELETE FROM t", true},
      {"SELECT 1 -- FOR UPDATE", true},
      {"SELECT 1 -- x\n; DELETE FROM t", false},
      {"SELECT 1 -- x\r; DELETE FROM t", false},
      {"SELECT 1 -- x\n FOR UPDATE", false},
      {"SELECT 1 --'\n; DELETE FROM t", false},
      {"SELECT 1 -- /* \n; DELETE FROM t -- */", false},
      {"SELECT 1 - -1", true},
      {"SELECT 1 +-- x\n; DELETE FROM t", false},
      // Block comments nest.
      {"SELECT 1 /* ; DELETE FROM t */", true},
      {"SELECT 1 /* /* */ ; DELETE FROM t */", true},
      {"SELECT 1 /* /* */ */ ; DELETE FROM t", false},
      {"SELECT 1 /* -- */ ; DELETE FROM t", false},
      {"SELECT 1 /* ' */ ; DELETE FROM t --'", false},
      {"SELECT 1 /*/ ; DELETE FROM t */", true},
      {"SELECT 1 /**/ FOR UPDATE", false},
      {"SELECT 1 */ FOR UPDATE", false},
      {"SELECT 1 +/* x */ FOR UPDATE", false},
      {"SELECT '/*' FOR UPDATE --*/", false},
      {"SELECT $$/*$$ FOR UPDATE --*/", false},
  });
}

TEST_CASE("is_read_only_query: string constants continued across a newline", "[sql][route]") {
  // 'a' <newline> 'b' is one constant 'ab'; the continuation keeps the first
  // part's escaping rule, so E'a' <newline> '\'' is E'a\''.
  read_only_cases({
      {"SELECT 'a'\n'b' FROM t", true},
      {"SELECT 'a' -- c\n'b' FROM t", true},
      {"SELECT 'a'   -- c\n  -- d\n\n 'b' FROM t", true},
      {"SELECT 'a'\r'b' FROM t", true},
      // The server runs this DELETE: the continued string ends before it.
      {"SELECT E'a'\n'\\' , ' ; DELETE FROM t; --'", false},
      // Here the continued string swallows it.
      {"SELECT E'a'\n'\\' ; DELETE FROM t; SELECT '", true},
      {"SELECT E'a' -- c\n'\\' ; DELETE FROM t; SELECT '", true},
      // A block comment or no newline in between: no continuation.
      {"SELECT E'a' /* c */\n'\\'; DELETE FROM t; --'", false},
      {"SELECT E'a' '\\'; DELETE FROM t; --'", false},
      {"SELECT E'a'\n/* c */ '\\'; DELETE FROM t; --'", false},
      // Bit strings continue as bit strings (no backslash escape).
      {"SELECT B'0'\n'\\'; DELETE FROM t; --'", false},
      {"SELECT 'a'\n'b", false},
  });
}

TEST_CASE("is_read_only_query: standard_conforming_strings may be off", "[sql][route]") {
  // With it off, '...' takes backslash escapes like E'...'. Not knowing the
  // session's setting, a string is read-only only if it is under both.
  read_only_cases({
      {"SELECT 'a\\b', '\\d+' FROM t", true},
      {"SELECT 'a\\\\' FROM t", true},           // 'a\\': both ways a complete string
      {"SELECT 'a\\', ' FOR UPDATE'", false},    // off: 'a\', ' is one string
      {"SELECT 'a\\', '; DELETE FROM t; --'", false},
      {"SELECT 'C:\\' FROM t", false},           // off: unterminated
      {"SELECT * FROM t WHERE s LIKE 'a\\%' ESCAPE '\\'", false},
      {"SELECT N'a\\', ' FOR UPDATE'", false},
      // Not affected: E'', U&'', B'', dollar quotes, quoted identifiers.
      {"SELECT E'a\\\\' FROM t", true},
      {"SELECT U&'a\\0041' FROM t", true},
      {"SELECT $$\\$$, \"\\\" FROM t", true},
      {"SELECT B'1\\', ' FOR UPDATE'", true},  // B'1\' is invalid, but ends at the quote
  });
}

TEST_CASE("is_read_only_query: a backslash that may be half of a character", "[sql][route]") {
  // In SJIS (also BIG5, GBK, UHC, GB18030) 0x83 0x5C is one character. The
  // server converts to its encoding before scanning, so it reads
  // E'<char>' ; DELETE FROM t; -- ' and runs the DELETE, while a byte-wise
  // scan takes \' for an escaped quote. An escaping backslash right after a
  // non-ASCII byte is therefore never read-only.
  read_only_cases({
      {"SELECT E'\x83\\' ; DELETE FROM t; -- '", false},
      {"SELECT E'\x83\\' FROM t", false},
      {"SELECT E'\xc3\xa9\\n' FROM t", false},  // UTF-8 "é\n": conservative
      {"SELECT 'x' , E'\x83\\' ; DELETE FROM t; -- '", false},
      {"SELECT E'a'\n'\x83\\' ; DELETE FROM t; -- '", false},  // in a continuation
      // With standard_conforming_strings off, '...' is affected too.
      {"SELECT '\xc3\xa9\\d' FROM t", false},
      // Not affected: the backslash follows an ASCII byte, or escapes nothing.
      {"SELECT E'\\n\xc3\xa9' FROM t", true},
      {"SELECT E'\xc3\xa9 \\n' FROM t", true},
      {"SELECT E'\\\\\xc3\xa9' FROM t", true},
      {"SELECT '\xc3\xa9' , '\\d' FROM t", true},
      {"SELECT $$\x83\\$$, \"\x83\\\" FROM t", true},
      {"SELECT U&'\x83\\0041' FROM t", true},
      {"SELECT B'\x83\\' FROM t", true},
  });
}

TEST_CASE("is_read_only_query: several statements", "[sql][route]") {
  read_only_cases({
      {"SELECT 1; SELECT 2", true},
      {"SELECT 1;SELECT 2;", true},
      {"SELECT 1; SHOW ALL; VALUES (1); TABLE t; EXPLAIN SELECT 1", true},
      {";;SELECT 1;;", true},
      {"SELECT 1; ; ; SELECT 2", true},
      {"SELECT 1;\n-- c\n", true},
      {"SELECT 1; /* c */", true},
      {"SELECT 1; -- c", true},
      {"SELECT 1; INSERT INTO t VALUES (1)", false},
      {"INSERT INTO t VALUES (1); SELECT 1", false},
      {"SELECT 1; BEGIN", false},
      {"BEGIN; SELECT 1; COMMIT", false},
      {"SELECT 1; SELECT * FROM t FOR UPDATE", false},
      {"SELECT 1; SET x = 1", false},
      {"SELECT 1; SELECT 2; DELETE FROM t", false},
      {"SELECT 1; EXPLAIN ANALYZE DELETE FROM t", false},
      {"SELECT 1; SELECT 'x", false},
      {"SELECT 1; WITH x AS (DELETE FROM t) SELECT 1", false},
      // A ';' anywhere ends a statement (inside parentheses it is a syntax error).
      {"SELECT (1; DELETE FROM t)", false},
      {"SELECT (1; SELECT 2)", false},
      {"SELECT (1", false},
      {"SELECT 1)", false},
      {"SELECT (1)) + (1", false},
      {"(SELECT 1", false},
      {"((SELECT 1)", false},
      {"(SELECT 1))", false},
      {"SELECT 1; (SELECT 2", false},
      {"EXPLAIN (SELECT 1", false},
      {"EXPLAIN ((SELECT 1)", false},
      {"EXPLAIN (ANALYZE) (SELECT 1", false},
  });
}

TEST_CASE("is_read_only_query: empty, comment-only and unterminated strings", "[sql][route]") {
  read_only_cases({
      {"", false},
      {" ", false},
      {"\n\t\r\f", false},
      {";", false},
      {"; ;", false},
      {"--", false},
      {"-- SELECT 1", false},
      {"/**/", false},
      {"/* SELECT 1 */", false},
      {"/* c */ -- d", false},
      {"/* c */ ; -- d\n ;", false},
      {"SELECT 'abc", false},
      {"SELECT 'abc''", false},
      {"SELECT E'abc\\'", false},
      {"SELECT E'abc\\", false},
      {"SELECT \"abc", false},
      {"SELECT \"abc\"\"", false},
      {"SELECT $$abc", false},
      {"SELECT $$abc$", false},
      {"SELECT $a$abc$a", false},
      {"SELECT $a$abc$b$", false},
      {"SELECT 1 /* abc", false},
      {"SELECT 1 /* /* */", false},
      {"SELECT 1 /* */ */ /*", false},
      {"SELECT U&'x", false},
      {"SELECT U&\"x", false},
      {"SELECT B'01", false},
      {"SELECT X'", false},
      {"SELECT N'", false},
      {"SELECT '", false},
      {"SELECT 1 -- a line comment needs no newline", true},
  });
  // Dollar-quote tags are case-sensitive (so no case variants of these).
  check_read_only("SELECT $a$abc$A$", false);
  check_read_only("SELECT $TAG$ DELETE $tag$ x $TAG$", true);
  check_read_only("SELECT $Tag$ x $TAG$; DELETE FROM t; $tag$ $Tag$", true);
  // A NUL ends the query string for the server: never guess.
  check_read_only(std::string("SELECT 1\0", 9), false);
  check_read_only(std::string("SELECT 1\0; DELETE FROM t", 25), false);
  check_read_only(std::string("SELECT '\0'", 10), false);
  check_read_only(std::string("\0", 1), false);
}

TEST_CASE("is_read_only_query: comments and spaces in every gap", "[sql][route]") {
  check_in_every_gap(
      {
          {"SELECT 1", true},
          {"SELECT * FROM t WHERE x IN ( SELECT y FROM u ) ORDER BY 1", true},
          {"SELECT 1 AS for_update", true},
          {"WITH RECURSIVE r ( n ) AS ( SELECT 1 ) SELECT * FROM r", true},
          {"WITH x AS MATERIALIZED ( SELECT 1 ) , y AS ( SELECT 2 ) TABLE y", true},
          {"VALUES ( 1 ) , ( 2 )", true},
          {"TABLE t", true},
          {"SHOW ALL", true},
          {"( SELECT 1 ) UNION ( SELECT 2 )", true},
          {"EXPLAIN ANALYZE VERBOSE SELECT 1", true},
          {"EXPLAIN ( ANALYZE , FORMAT JSON ) SELECT 1", true},
          {"EXPLAIN ( SELECT 1 )", true},
          {"SELECT 1 ; SELECT 2", true},
          {"SELECT x FROM t FOR READ ONLY", true},
          {"SELECT * FROM t FOR UPDATE", false},
          {"SELECT * FROM t FOR NO KEY UPDATE", false},
          {"SELECT * FROM t FOR SHARE", false},
          {"SELECT * FROM t FOR KEY SHARE", false},
          {"SELECT * FROM t WHERE x IN ( SELECT y FROM u FOR SHARE )", false},
          {"SELECT * INTO x FROM t", false},
          {"WITH x AS ( DELETE FROM t RETURNING * ) SELECT * FROM x", false},
          {"WITH x AS ( SELECT 1 ) , y AS ( UPDATE t SET a = 1 ) SELECT 1", false},
          {"WITH x AS ( SELECT 1 ) INSERT INTO t SELECT * FROM x", false},
          {"EXPLAIN ANALYZE DELETE FROM t", false},
          {"EXPLAIN ( ANALYZE ) UPDATE t SET a = 1", false},
          {"SELECT 1 ; DELETE FROM t", false},
          {"INSERT INTO t VALUES ( 1 )", false},
          {"BEGIN READ ONLY", false},
          {"SET x = 1", false},
      },
      check_read_only);
}

TEST_CASE("is_read_only_query: read-only stays read-only when joined with read-only",
          "[sql][route]") {
  for (const std::string& q : kReadOnly) {
    REQUIRE(is_read_only_query(q));
    for (const std::string& other : kReadOnly) {
      check_read_only(q + "\n;" + other, true);
    }
    check_read_only(q + "\n;", true);
    check_read_only(q + "\n ; ;", true);
    check_read_only(";" + q, true);
    check_read_only(q + "\n; DELETE FROM t", false);
    check_read_only(q + "\n; SELECT * FROM t FOR UPDATE", false);
    check_read_only("UPDATE t SET a = 1;" + q, false);
    check_begins(q, false);
  }
}

// ===========================================================================
// Robustness: both functions are fed untrusted query strings.

namespace {

const std::vector<std::string>& robustness_seeds() {
  static const std::vector<std::string> seeds = [] {
    std::vector<std::string> s = {
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY NOT DEFERRABLE; SELECT 1",
        "START TRANSACTION READ ONLY /* c */ -- d\n;",
        "SELECT 'a''b', E'\\'', U&'\\0041', B'01', X'1F', N'x', $$ $ $$, $t$ $$ $t$, \"q\"\"\", "
        "$1 FROM t -- c\n/* /* n */ */ FOR KEY SHARE;",
        "WITH RECURSIVE x AS (DELETE FROM t RETURNING *) SELECT * INTO y FROM x FOR NO KEY UPDATE",
        "EXPLAIN (ANALYZE, FORMAT 'json') (SELECT 1) UNION (VALUES (1)); SHOW ALL; TABLE t",
        "SELECT E'a'\n'\\' , ' ; DELETE FROM t; --' -- c\r'x'",
        "SELECT 'a\\', ' FOR UPDATE'",
    };
    for (const Case& c : kSelectLike) s.push_back(c.query);
    for (const std::string& q : kReadOnly) s.push_back(q);
    return s;
  }();
  return seeds;
}

// Properties that hold for any input.
void check_properties(std::string_view q) {
  const bool ro = is_read_only_query(q);
  const bool begins = begins_read_only_transaction(q);
  INFO("query [" << printable(q) << "]");
  // BEGIN is never a read-only statement.
  if (begins) CHECK_FALSE(ro);
  // Deterministic.
  CHECK(is_read_only_query(q) == ro);
  CHECK(begins_read_only_transaction(q) == begins);
  // Appending a statement after a newline (which ends any line comment)
  // keeps a complete read-only string read-only only if the new statement is.
  if (ro) {
    std::string more(q);
    CHECK(is_read_only_query(more + "\n;SELECT 1"));
    CHECK_FALSE(is_read_only_query(more + "\n;DELETE FROM t"));
  }
  if (begins) CHECK(begins_read_only_transaction(std::string(q) + "\n;DELETE FROM t"));
}

}  // namespace

TEST_CASE("sql route: every prefix of every test string is handled", "[sql][route]") {
  std::vector<std::string> all = robustness_seeds();
  for (const Case& c : kSelectLike) {
    for (const char* p : {"EXPLAIN ", "EXPLAIN (ANALYZE) "}) all.push_back(p + c.query);
  }
  for (const std::string& q : all) {
    for (size_t n = 0; n <= q.size(); ++n) {
      ExactBuffer buf(std::string_view(q).substr(0, n));
      std::string_view p = buf.view();
      check_properties(p);
      // And every suffix: each byte as a token start.
      ExactBuffer tail(std::string_view(q).substr(n));
      (void)is_read_only_query(tail.view());
      (void)begins_read_only_transaction(tail.view());
    }
  }
}

TEST_CASE("sql route: random and mutated input never crashes", "[sql][route]") {
  const std::vector<std::string> fragments = {
      "SELECT", "select", "FOR", "UPDATE", "NO", "KEY", "SHARE", "INTO", "WITH", "AS",
      "DELETE", "INSERT", "MERGE", "VALUES", "TABLE", "SHOW", "EXPLAIN", "ANALYZE", "BEGIN",
      "START", "TRANSACTION", "READ", "ONLY", "WRITE", "ISOLATION", "LEVEL", "SERIALIZABLE",
      "NOT", "DEFERRABLE", "(", ")", ";", ",", "'", "''", "\"", "E'", "e'", "U&'", "U&\"",
      "B'", "X'", "N'", "\\", "\\'", "$", "$$", "$a$", "$1", "a$b", "--", "/*", "*/", "\n",
      "\r", " ", "\t", "1", "t", "x", "\xc3\xa9",
  };
  const std::vector<std::string>& seeds = robustness_seeds();
  Rng rng(20240917);
  for (int iter = 0; iter < 30000; ++iter) {
    std::string q;
    switch (rng.below(4)) {
      case 0: q = rng.bytes(rng.below(48)); break;
      case 1:
        for (size_t n = rng.below(24); n > 0; --n) {
          q += fragments[rng.below(fragments.size())];
          if (rng.chance(60)) q += ' ';
        }
        break;
      default: {
        q = seeds[rng.below(seeds.size())];
        for (size_t ops = 1 + rng.below(4); ops > 0; --ops) {
          size_t at = rng.below(q.size() + 1);
          switch (rng.below(4)) {
            case 0: q.insert(at, fragments[rng.below(fragments.size())]); break;
            case 1:
              if (!q.empty()) q.erase(std::min(at, q.size() - 1), 1 + rng.below(3));
              break;
            case 2: q.insert(at, 1, char(rng.byte())); break;
            default:
              if (!q.empty()) q[std::min(at, q.size() - 1)] = char(rng.byte());
          }
        }
      }
    }
    ExactBuffer buf(q);
    check_properties(buf.view());
  }
}

TEST_CASE("sql route: linear time on adversarial input", "[sql][route]") {
  // Each of these would take minutes under the sanitizers if a scan were
  // quadratic.
  struct Input {
    std::string query;
    bool read_only;
    bool begins = false;
  };
  const size_t n = 200000;
  std::vector<Input> inputs;
  {
    // A long dollar-quote tag and a body full of near-misses of it.
    const std::string tag = "$" + std::string(2000, 'a') + "$";
    std::string body;
    while (body.size() < 2 * n) body += "$" + std::string(1999, 'a') + "$a";
    inputs.push_back({"SELECT " + tag + body + tag, true});
    inputs.push_back({"SELECT " + tag + body, false});
  }
  {
    std::string nested, closing;
    for (size_t k = 0; k < n; ++k) nested += "/*";
    for (size_t k = 0; k < n; ++k) closing += "*/";
    inputs.push_back({"SELECT 1 " + nested + closing, true});
    inputs.push_back({"SELECT 1 " + nested, false});
    inputs.push_back({"BEGIN READ ONLY " + nested + closing, false, true});
  }
  inputs.push_back({"SELECT " + std::string(n, '(') + "1" + std::string(n, ')'), true});
  inputs.push_back({std::string(n, '(') + "SELECT 1" + std::string(n, ')'), true});
  inputs.push_back({"EXPLAIN (" + std::string(n, '(') + "SELECT 1" + std::string(n + 1, ')'), true});
  inputs.push_back({"EXPLAIN (ANALYZE" + std::string(n, '('), false});
  inputs.push_back({"SELECT 1 " + std::string(n, '/'), true});
  inputs.push_back({"SELECT 1 " + std::string(n, '-').substr(1) + "\n", true});
  {
    std::string fors;
    for (size_t k = 0; k < n / 4; ++k) fors += "FOR KEY ";
    inputs.push_back({"SELECT 1 " + fors, true});
  }
  inputs.push_back({"SELECT '" + std::string(2 * n, '\'') + "'", true});
  {
    std::string esc;
    for (size_t k = 0; k < n; ++k) esc += "\\'";
    inputs.push_back({"SELECT E'" + esc + "'", true});
    inputs.push_back({"SELECT '" + esc + "'", true});
  }
  {
    std::string cont = "SELECT 'a'", spaces = "SELECT 'a'";
    for (size_t k = 0; k < n / 8; ++k) cont += " -- c\n'b'";
    for (size_t k = 0; k < n / 8; ++k) spaces += "        ,'b'";
    inputs.push_back({cont, true});
    inputs.push_back({spaces, true});
  }
  {
    std::string many;
    for (size_t k = 0; k < n / 10; ++k) many += "SELECT 1; ";
    inputs.push_back({many, true});
    inputs.push_back({"BEGIN READ ONLY; " + many, false, true});
    inputs.push_back({std::string(n, ';'), false});
    std::string modes = "BEGIN READ ONLY";
    for (size_t k = 0; k < n / 16; ++k) modes += ", DEFERRABLE";
    inputs.push_back({modes, false, true});
  }
  const auto start = std::chrono::steady_clock::now();
  for (const Input& in : inputs) {
    INFO("input of " << in.query.size() << " bytes starting ["
                     << printable(in.query.substr(0, 40)) << "]");
    CHECK(is_read_only_query(in.query) == in.read_only);
    CHECK(begins_read_only_transaction(in.query) == in.begins);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // Generous even for a sanitizer build; a quadratic scan is far slower.
  CHECK(std::chrono::duration_cast<std::chrono::seconds>(elapsed).count() < 60);
}

TEST_CASE("is_read_only_statement: exactly one read-only statement", "[sql][route]") {
  using pgmux::proto::is_read_only_statement;
  CHECK(is_read_only_statement("SELECT 1"));
  CHECK(is_read_only_statement("  SELECT 1 ; ;"));
  CHECK(is_read_only_statement("/* a; */ SELECT ';' -- ;\n"));
  CHECK_FALSE(is_read_only_statement("SELECT 1; SELECT 2"));
  CHECK_FALSE(is_read_only_statement("SELECT 1; DELETE FROM t"));
  CHECK_FALSE(is_read_only_statement(""));
  CHECK_FALSE(is_read_only_statement(";"));
  CHECK_FALSE(is_read_only_statement("INSERT INTO t VALUES (1)"));
}

TEST_CASE("is_read_only_command_tag: which CommandComplete tags wrote nothing", "[sql][route]") {
  using pgmux::proto::is_read_only_command_tag;
  for (const char* t : {"SELECT 0", "SELECT 12", "SHOW", "BEGIN", "COMMIT", "ROLLBACK", "SET", "FETCH 3",
                        "MOVE 0", "DECLARE CURSOR", "EXPLAIN", "SAVEPOINT", "RELEASE", "DISCARD ALL"})
    CHECK(is_read_only_command_tag(t));
  for (const char* t : {"INSERT 0 1", "UPDATE 2", "DELETE 0", "MERGE 1", "COPY 5", "CREATE TABLE",
                        "DROP TABLE", "ALTER TABLE", "CALL", "DO", "TRUNCATE TABLE", "SELECT INTO",
                        "CREATE TABLE AS", "VACUUM", "", "select 1", "SELECTED"})
    CHECK_FALSE(is_read_only_command_tag(t));
}

TEST_CASE("may_write_behind_read_tag: writes a \"SELECT n\" tag hides", "[sql][route]") {
  using pgmux::proto::may_write_behind_read_tag;
  for (const char* q : {"CREATE TABLE t AS SELECT 1", "create unlogged table t as select 1",
                        "SELECT * INTO t FROM x", "select 1 into temp t", "WITH a AS (DELETE FROM t RETURNING *) SELECT * FROM a",
                        "EXECUTE stmt(1)", "/* c */ (SELECT 1 INTO t)", "SELECT 1 FOR UPDATE", "CREATE TABLE t (a int)",
                        "SET x = 1; CREATE TABLE t AS SELECT 1", "INSERT INTO t VALUES (1); SELECT 1"}) {
    INFO(q);
    CHECK(may_write_behind_read_tag(q));
  }
  for (const char* q : {"SELECT 1", "select * from t where a = 1", "WITH a AS (SELECT 1) SELECT * FROM a", "BEGIN",
                        "COMMIT", "SET x = 1", "SET x = 1;", "SHOW work_mem", "INSERT INTO t VALUES (1)",
                        "UPDATE t SET a = 1", "DROP TABLE t", "VACUUM t", "",
                        // A function that writes is not seen (documented); auto routing's
                        // 25006 retry counts it as a write.
                        "SELECT nextval('s')",
                        "-- only a comment"}) {
    INFO(q);
    CHECK_FALSE(may_write_behind_read_tag(q));
  }
}
