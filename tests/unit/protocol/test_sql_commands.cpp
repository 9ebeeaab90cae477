// classify_sql_command: PREPARE / EXECUTE / DEALLOCATE / DISCARD ALL in a
// simple Query, recognised only when the query string is exactly one such
// statement (src/client.cpp process_query acts on the result: a PREPARE's
// whole text is re-run, hidden, on other server connections, so a string
// holding more than one statement must never be taken for a PREPARE).
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "protocol/sql_commands.hpp"
#include "support.hpp"

using namespace pgmux::proto;
using namespace pgmux::proto::test;

namespace {

using Kind = SqlCommand::Kind;

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::other: return "other";
    case Kind::prepare: return "prepare";
    case Kind::execute: return "execute";
    case Kind::deallocate: return "deallocate";
    case Kind::deallocate_all: return "deallocate_all";
    case Kind::discard_all: return "discard_all";
  }
  return "?";
}

struct Case {
  std::string query;
  Kind kind;
  std::string name;
};

void check(const Case& c) {
  INFO("query: [" << c.query << "]");
  SqlCommand got = classify_sql_command(c.query);
  CHECK(kind_name(got.kind) == std::string(kind_name(c.kind)));
  CHECK(got.name == c.name);
  // The forwarding path only reads a query whole when its first bytes may
  // start a recognised command: never skip one, whatever the cut.
  if (got.kind != Kind::other) {
    for (size_t n = 0; n <= c.query.size(); ++n) {
      INFO("first " << n << " bytes");
      CHECK(may_be_sql_command(std::string_view(c.query).substr(0, n)));
    }
  }
}

void check_all(const std::vector<Case>& cases) {
  for (const Case& c : cases) check(c);
}

// The invariants of any result.
void check_consistent(std::string_view q, const SqlCommand& c) {
  INFO("query of " << q.size() << " bytes");
  switch (c.kind) {
    case Kind::other:
    case Kind::deallocate_all:
    case Kind::discard_all: CHECK(c.name.empty()); break;
    case Kind::prepare:
    case Kind::execute:
    case Kind::deallocate:
      CHECK_FALSE(c.name.empty());
      CHECK(c.name.size() <= 63);
      break;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// PREPARE

TEST_CASE("classify_sql_command: PREPARE", "[sql]") {
  check_all({
      {"PREPARE foo AS SELECT 1", Kind::prepare, "foo"},
      {"prepare foo as select 1", Kind::prepare, "foo"},
      {"PrEpArE foo AS SELECT 1", Kind::prepare, "foo"},
      {"PREPARE Foo_Bar9 AS SELECT 1", Kind::prepare, "foo_bar9"},
      {"PREPARE _x AS SELECT 1", Kind::prepare, "_x"},
      {"PREPARE a$1 AS SELECT 1", Kind::prepare, "a$1"},
      {"PREPARE foo (int, text) AS SELECT $1, $2", Kind::prepare, "foo"},
      {"PREPARE foo(int)AS SELECT $1", Kind::prepare, "foo"},
      {"PREPARE foo(int[], \"My Type\") AS SELECT $1", Kind::prepare, "foo"},
      {"PREPARE foo AS INSERT INTO t VALUES ($1) RETURNING id", Kind::prepare, "foo"},
      {"PREPARE foo AS SELECT 1;", Kind::prepare, "foo"},
      {"PREPARE foo AS SELECT 1 ;  \n\t", Kind::prepare, "foo"},
      {" \t\r\n\f\vPREPARE foo AS SELECT 1", Kind::prepare, "foo"},
      {"PREPARE\nfoo\nAS\nSELECT\n1\n", Kind::prepare, "foo"},
  });
}

TEST_CASE("classify_sql_command: quoted names keep their case and bytes", "[sql]") {
  check_all({
      {"PREPARE \"Foo\" AS SELECT 1", Kind::prepare, "Foo"},
      {"PREPARE \"FOO bar\" AS SELECT 1", Kind::prepare, "FOO bar"},
      {"PREPARE \"a\"\"b\" AS SELECT 1", Kind::prepare, "a\"b"},
      {"PREPARE \"\"\"\" AS SELECT 1", Kind::prepare, "\""},
      {"PREPARE \"a;b\" AS SELECT 1", Kind::prepare, "a;b"},
      {"PREPARE \"--x\" AS SELECT 1", Kind::prepare, "--x"},
      {"PREPARE \"/*\" AS SELECT 1", Kind::prepare, "/*"},
      {"PREPARE \"1st\" AS SELECT 1", Kind::prepare, "1st"},
      {"PREPARE \"$1\" AS SELECT 1", Kind::prepare, "$1"},
      {"PREPARE\"x\"AS SELECT 1", Kind::prepare, "x"},
      {"EXECUTE \"Foo\"", Kind::execute, "Foo"},
      {"EXECUTE \"Foo\"(1)", Kind::execute, "Foo"},
      {"EXECUTE\"Foo\"", Kind::execute, "Foo"},
      {"DEALLOCATE \"Foo\"", Kind::deallocate, "Foo"},
      {"DEALLOCATE PREPARE \"A\"\"B\";", Kind::deallocate, "A\"B"},
      {"DEALLOCATE \"ALL\"", Kind::deallocate, "ALL"},
      {"DEALLOCATE \"all\"", Kind::deallocate, "all"},
      // Zero-length or unterminated quoted names are errors.
      {"PREPARE \"\" AS SELECT 1", Kind::other, ""},
      {"EXECUTE \"\"", Kind::other, ""},
      {"DEALLOCATE \"\"", Kind::other, ""},
      {"PREPARE \"foo AS SELECT 1", Kind::other, ""},
      {"EXECUTE \"foo", Kind::other, ""},
      {"DEALLOCATE \"foo", Kind::other, ""},
      {"DEALLOCATE \"foo\"\"", Kind::other, ""},
  });
}

TEST_CASE("classify_sql_command: unquoted names fold ASCII only", "[sql]") {
  // PostgreSQL lower-cases A-Z; other bytes of a UTF-8 name stay as they are.
  check_all({
      {"PREPARE CAFÉ AS SELECT 1", Kind::prepare, "cafÉ"},
      {"EXECUTE café", Kind::execute, "café"},
      {"EXECUTE ÉtÉ", Kind::execute, "ÉtÉ"},
      {"DEALLOCATE Ωmega", Kind::deallocate, "Ωmega"},
  });
}

TEST_CASE("classify_sql_command: names are truncated like the server does (63 bytes)", "[sql]") {
  const std::string n63(63, 'a');
  check_all({
      {"EXECUTE " + n63, Kind::execute, n63},
      {"EXECUTE " + n63 + "b", Kind::execute, n63},
      {"EXECUTE " + std::string(200, 'X'), Kind::execute, std::string(63, 'x')},
      {"PREPARE \"" + n63 + "XYZ\" AS SELECT 1", Kind::prepare, n63},
      {"DEALLOCATE " + n63 + "zz", Kind::deallocate, n63},
      // A UTF-8 character is not split: 62 bytes + "é" (2 bytes) -> 62 bytes.
      {"EXECUTE " + std::string(62, 'a') + "é", Kind::execute, std::string(62, 'a')},
      {"EXECUTE " + std::string(61, 'a') + "é", Kind::execute, std::string(61, 'a') + "é"},
      {"EXECUTE \"" + std::string(61, 'a') + "€\"", Kind::execute, std::string(61, 'a')},
  });
  // Two names the server sees as one are one name for pgmux too.
  CHECK(classify_sql_command("EXECUTE " + n63 + "_one").name ==
        classify_sql_command("EXECUTE " + n63 + "_two").name);
}

TEST_CASE("classify_sql_command: PREPARE bodies with quotes, dollar quotes and comments", "[sql]") {
  check_all({
      {"PREPARE p AS SELECT ';'", Kind::prepare, "p"},
      {"PREPARE p AS SELECT ';' ;", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 'it''s; fine'", Kind::prepare, "p"},
      {"PREPARE p AS SELECT '', ';', ''''", Kind::prepare, "p"},
      {"PREPARE p AS SELECT \"a;b\" FROM t", Kind::prepare, "p"},
      {"PREPARE p AS SELECT \"a\"\";b\" FROM t", Kind::prepare, "p"},
      {"PREPARE p AS SELECT $$;$$", Kind::prepare, "p"},
      {"PREPARE p AS SELECT $$ it's; $$;", Kind::prepare, "p"},
      {"PREPARE p AS SELECT $tag$ ; $$ ; $tag$", Kind::prepare, "p"},
      {"PREPARE p AS SELECT $a$ $b$ ; $a$, $b$;$b$", Kind::prepare, "p"},
      {"PREPARE p AS SELECT $_x1$;$_x1$", Kind::prepare, "p"},
      {"PREPARE p AS SELECT $é$;$é$", Kind::prepare, "p"},
      {"PREPARE p(int) AS SELECT $1, $1$a$;$a$", Kind::prepare, "p"},  // $1, then $a$...$a$
      {"PREPARE p AS SELECT 1 -- ; SELECT 2", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 1 -- ;\n", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 1 /* ; */", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 1 /* a /* b ; */ ; */ ;", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 1; -- done", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 1; /* done */\n", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 1; /* a /* b */ c */", Kind::prepare, "p"},
      {"PREPARE p AS SELECT E'\\';'", Kind::prepare, "p"},     // E'\';'
      {"PREPARE p AS SELECT e'\\\\', ';'", Kind::prepare, "p"},  // e'\\', ';'
      {"PREPARE p AS SELECT U&'\\0041;'", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 1 FROM t WHERE a = ANY($1) AND b <> ';'", Kind::prepare, "p"},
      // A continued E'' string: E'a' <newline> '\' ; ...' is one constant.
      {"PREPARE p AS SELECT E'a'\n'\\' ; DELETE FROM t; SELECT '", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 'a' -- c\n'b;c'", Kind::prepare, "p"},
      // A backslash is fine when the rest is one statement either way.
      {"PREPARE p AS SELECT 'a\\b', '\\d+', 'x\\\\' FROM t;", Kind::prepare, "p"},
      {"PREPARE p AS SELECT 'a\\' || 'b' FROM t", Kind::prepare, "p"},
      {"EXECUTE p('a\\b', 'c')", Kind::execute, "p"},
  });
}

TEST_CASE("classify_sql_command: several statements are never one command", "[sql]") {
  check_all({
      {"PREPARE p AS SELECT 1; SELECT 2", Kind::other, ""},
      {"PREPARE p AS SELECT 1;SELECT 2;", Kind::other, ""},
      {"PREPARE p AS SELECT ';'; DELETE FROM t", Kind::other, ""},
      {"PREPARE p AS SELECT $$x$$; DELETE FROM t", Kind::other, ""},
      {"PREPARE p AS SELECT 1 -- c\n; DELETE FROM t", Kind::other, ""},
      {"PREPARE p AS SELECT 1 /* c */; DELETE FROM t", Kind::other, ""},
      {"PREPARE p AS SELECT 1;;", Kind::other, ""},  // conservative
      {"EXECUTE p; SELECT 1", Kind::other, ""},
      {"EXECUTE p(';'); SELECT 1", Kind::other, ""},
      {"DEALLOCATE p; SELECT 1", Kind::other, ""},
      {"DEALLOCATE p;;", Kind::other, ""},
      {"DEALLOCATE ALL; SELECT 1", Kind::other, ""},
      {"DISCARD ALL; SELECT 1", Kind::other, ""},
      {"SELECT 1; PREPARE p AS SELECT 1", Kind::other, ""},
      {"BEGIN; EXECUTE p; COMMIT", Kind::other, ""},
      // Backslashes do not escape in standard strings: 'a\' ends the string.
      {"PREPARE p AS SELECT 'a\\'; DELETE FROM t", Kind::other, ""},
      // A '$' inside an identifier starts no dollar quote.
      {"PREPARE p AS SELECT 1 AS a$b$; DELETE FROM t", Kind::other, ""},
      {"PREPARE p AS SELECT 1 AS a$b$; DELETE FROM t; SELECT $b$", Kind::other, ""},
      // Nor does a '$' followed by a digit ($1 is a parameter).
      {"PREPARE p AS SELECT $1$;$1$", Kind::other, ""},
      // Block comments nest: the ';' is outside the comment.
      {"PREPARE p AS SELECT 1 /* /* */ ' */ ; DELETE FROM t; SELECT ' '", Kind::other, ""},
      // E'\'' is one quote character; what follows is outside the string.
      {"PREPARE p AS SELECT E'\\'';DELETE FROM t;--'", Kind::other, ""},
      // A dollar-quote tag may hold non-ASCII bytes.
      {"PREPARE p AS SELECT $é$ ' $é$; DELETE FROM t; SELECT ' '", Kind::other, ""},
      // A line comment ends at '\r' as well as at '\n'.
      {"PREPARE p AS SELECT 1 -- c\r; DELETE FROM t", Kind::other, ""},
      // 'a' <newline> 'b' is one string constant, and in E'a' <newline> '\ , '
      // the continuation keeps the backslash escape: the string ends after ", ".
      {"PREPARE p AS SELECT E'a'\n'\\' , ' ; DELETE FROM t; --'", Kind::other, ""},
      // With standard_conforming_strings off, 'a\', ' is one string and the
      // DELETE a statement of its own; pgmux does not know the setting.
      {"PREPARE p AS SELECT 'a\\', '; DELETE FROM t; --'", Kind::other, ""},
      {"PREPARE p AS SELECT N'a\\', '; DELETE FROM t; --'", Kind::other, ""},
      {"EXECUTE p('a\\', '); DELETE FROM t; --')", Kind::other, ""},
      // In SJIS, 0x83 0x5C is one character: the server reads
      // E'<char>' ; DELETE FROM t; -- ' (see test_sql_route.cpp).
      {"PREPARE p AS SELECT E'\x83\\' ; DELETE FROM t; -- '", Kind::other, ""},
      {"EXECUTE p(E'\x83\\'); DELETE FROM t; -- ')", Kind::other, ""},
  });
}

// ---------------------------------------------------------------------------
// EXECUTE, DEALLOCATE, DISCARD

TEST_CASE("classify_sql_command: EXECUTE", "[sql]") {
  check_all({
      {"EXECUTE foo", Kind::execute, "foo"},
      {"execute FOO", Kind::execute, "foo"},
      {"EXECUTE foo;", Kind::execute, "foo"},
      {"  EXECUTE  foo  ;  ", Kind::execute, "foo"},
      {"EXECUTE foo(1, 'a;b', $$;$$)", Kind::execute, "foo"},
      {"EXECUTE foo (1);", Kind::execute, "foo"},
      {"EXECUTE/**/foo", Kind::execute, "foo"},
      {"EXECUTE -- c\nfoo", Kind::execute, "foo"},
      {"EXECUTE", Kind::other, ""},
      {"EXECUTE ;", Kind::other, ""},
      {"EXECUTE 1", Kind::other, ""},
      {"EXECUTE 1foo", Kind::other, ""},
      {"EXECUTE $1", Kind::other, ""},
      {"EXECUTE (foo)", Kind::other, ""},
      {"EXECUTEx foo", Kind::other, ""},
      {"EXECUTE_foo", Kind::other, ""},
      {"EXECUTE$1", Kind::other, ""},
      {"EXPLAIN EXECUTE foo", Kind::other, ""},
      {"CREATE TABLE t AS EXECUTE foo", Kind::other, ""},
  });
}

TEST_CASE("classify_sql_command: DEALLOCATE", "[sql]") {
  check_all({
      {"DEALLOCATE foo", Kind::deallocate, "foo"},
      {"deallocate FOO;", Kind::deallocate, "foo"},
      {"DEALLOCATE PREPARE foo", Kind::deallocate, "foo"},
      {"Deallocate Prepare Foo ; ", Kind::deallocate, "foo"},
      {"DEALLOCATE PREPARE prepare", Kind::deallocate, "prepare"},
      {"DEALLOCATE allx", Kind::deallocate, "allx"},
      {"DEALLOCATE /* c */ PREPARE -- c\n foo /* x */ ;", Kind::deallocate, "foo"},
      {"DEALLOCATE ALL", Kind::deallocate_all, ""},
      {"deallocate all;", Kind::deallocate_all, ""},
      {"DEALLOCATE PREPARE ALL", Kind::deallocate_all, ""},
      {"DEALLOCATE prepare all ; -- x", Kind::deallocate_all, ""},
      {"DEALLOCATE/**/ALL", Kind::deallocate_all, ""},
      {"DEALLOCATE", Kind::other, ""},
      {"DEALLOCATE;", Kind::other, ""},
      {"DEALLOCATE PREPARE", Kind::other, ""},
      {"DEALLOCATE PREPARE;", Kind::other, ""},
      {"DEALLOCATE foo bar", Kind::other, ""},
      {"DEALLOCATE foo(1)", Kind::other, ""},
      {"DEALLOCATE ALL x", Kind::other, ""},
      {"DEALLOCATE ALL ALL", Kind::other, ""},
      {"DEALLOCATE 1x", Kind::other, ""},
      {"DEALLOCATE $1", Kind::other, ""},
      {"DEALLOCATEfoo", Kind::other, ""},
      {"DEALLOCATED foo", Kind::other, ""},
  });
}

TEST_CASE("classify_sql_command: DISCARD ALL", "[sql]") {
  check_all({
      {"DISCARD ALL", Kind::discard_all, ""},
      {"discard all;", Kind::discard_all, ""},
      {"  Discard   All  ;  -- bye", Kind::discard_all, ""},
      {"/* x */DISCARD/* y */ALL/* z */", Kind::discard_all, ""},
      {"DISCARD", Kind::other, ""},
      {"DISCARD PLANS", Kind::other, ""},
      {"DISCARD SEQUENCES", Kind::other, ""},
      {"DISCARD TEMP", Kind::other, ""},
      {"DISCARD TEMPORARY", Kind::other, ""},
      {"DISCARD ALLx", Kind::other, ""},
      {"DISCARD ALL x", Kind::other, ""},
      {"DISCARD \"all\"", Kind::other, ""},
      {"DISCARDALL", Kind::other, ""},
  });
}

// ---------------------------------------------------------------------------
// Everything else

TEST_CASE("classify_sql_command: comments before the command", "[sql]") {
  check_all({
      {"-- c\nPREPARE p AS SELECT 1", Kind::prepare, "p"},
      {"--\nEXECUTE p", Kind::execute, "p"},
      {"/* c */PREPARE p AS SELECT 1", Kind::prepare, "p"},
      {"/**/EXECUTE p", Kind::execute, "p"},
      {"/* a /* b */ c */ EXECUTE p", Kind::execute, "p"},
      {"/* a */ -- b\n /* c */ DEALLOCATE p", Kind::deallocate, "p"},
      {"PREPARE--x\np AS SELECT 1", Kind::prepare, "p"},
      // The whole string is a comment.
      {"-- PREPARE p AS SELECT 1", Kind::other, ""},
      {"/* PREPARE p AS SELECT 1", Kind::other, ""},
      {"/* a /* b */ EXECUTE p", Kind::other, ""},
      {"/* EXECUTE p */", Kind::other, ""},
  });
}

TEST_CASE("classify_sql_command: other statements and near misses", "[sql]") {
  check_all({
      {"", Kind::other, ""},
      {" ", Kind::other, ""},
      {"\n\t", Kind::other, ""},
      {";", Kind::other, ""},
      {"-- only a comment", Kind::other, ""},
      {"/**/", Kind::other, ""},
      {"SELECT 1", Kind::other, ""},
      {"select 'PREPARE p AS SELECT 1'", Kind::other, ""},
      {"PREPAREd foo AS SELECT 1", Kind::other, ""},
      {"PREPARED foo", Kind::other, ""},
      {"prepare_foo", Kind::other, ""},
      {"PREPARE", Kind::other, ""},
      {"PREPARE ;", Kind::other, ""},
      {"PREPARE 1p AS SELECT 1", Kind::other, ""},
      {"PREPARE $1 AS SELECT 1", Kind::other, ""},
      // Two-phase commit, not a prepared statement named "transaction".
      {"PREPARE TRANSACTION 'x'", Kind::other, ""},
      {"prepare transaction 'foo';", Kind::other, ""},
      {"PREPARE transaction AS SELECT 1", Kind::prepare, "transaction"},
      {"PREPARE transaction(int) AS SELECT $1", Kind::prepare, "transaction"},
      // The grammar: PREPARE name [(types)] AS ..., EXECUTE name [(args)].
      {"PREPARE p", Kind::other, ""},
      {"PREPARE p;", Kind::other, ""},
      {"PREPARE p SELECT 1", Kind::other, ""},
      {"PREPARE p ASx SELECT 1", Kind::other, ""},
      {"PREPARE p.q AS SELECT 1", Kind::other, ""},
      {"EXECUTE p q", Kind::other, ""},
      {"EXECUTE p.q", Kind::other, ""},
      {"EXECUTE p 'x'", Kind::other, ""},
      // U&"..." names (Unicode escapes) are not decoded: left to the server.
      {"PREPARE U&\"d\\0061t\" AS SELECT 1", Kind::other, ""},
      {"EXECUTE U&\"d\\0061t\"", Kind::other, ""},
      {"DEALLOCATE U&\"d\\0061t\"", Kind::other, ""},
      {"(PREPARE p AS SELECT 1)", Kind::other, ""},
      {"\"PREPARE\" p AS SELECT 1", Kind::other, ""},
      {"EXECUTEx", Kind::other, ""},
      {"DO $$ BEGIN EXECUTE 'x'; END $$", Kind::other, ""},
      {"DISCARD PLANS", Kind::other, ""},
      {"COMMIT PREPARED 'x'", Kind::other, ""},
      {std::string("PREPARE\0p AS SELECT 1", 21), Kind::other, ""},
  });
}

// ---------------------------------------------------------------------------
// Properties

TEST_CASE("classify_sql_command: whitespace, comments, case and a final ';' change nothing",
          "[sql]") {
  const std::vector<Case> base = {
      {"PREPARE p AS SELECT 1", Kind::prepare, "p"},
      {"PREPARE \"Q\"(int) AS SELECT $1", Kind::prepare, "Q"},
      {"EXECUTE p", Kind::execute, "p"},
      {"EXECUTE p(1)", Kind::execute, "p"},
      {"DEALLOCATE p", Kind::deallocate, "p"},
      {"DEALLOCATE PREPARE p", Kind::deallocate, "p"},
      {"DEALLOCATE ALL", Kind::deallocate_all, ""},
      {"DISCARD ALL", Kind::discard_all, ""},
      {"SELECT 1", Kind::other, ""},
  };
  const std::vector<std::string> before = {"",        " ",       "\n\t ",
                                           "-- c\n", "/* c */", "/* /* n */ */\n"};
  const std::vector<std::string> after = {"",       " ",      ";",        " ; ",
                                          ";\n",    "; -- c", " /* c */", ";/* c */ "};
  for (const Case& c : base) {
    for (const std::string& b : before) {
      for (const std::string& a : after) {
        check({b + c.query + a, c.kind, c.name});
        // Keywords in upper and lower case (the quoted name keeps its case).
        std::string lower = c.query, upper = c.query;
        bool quoted = false;
        for (size_t i = 0; i < c.query.size(); ++i) {
          if (c.query[i] == '"') quoted = !quoted;
          if (quoted || c.query[i] == '"') continue;
          lower[i] = char(std::tolower(static_cast<unsigned char>(c.query[i])));
          upper[i] = char(std::toupper(static_cast<unsigned char>(c.query[i])));
        }
        check({b + lower + a, c.kind, c.name});
        check({b + upper + a, c.kind, c.name});
      }
    }
  }
}

TEST_CASE("classify_sql_command: every prefix of a command is handled", "[sql]") {
  const std::vector<std::string> queries = {
      "PREPARE \"a\"\"b\" (int, text) AS SELECT $1, 'x;''y', $t$ ; $t$, E'\\''"
      " /* /* ; */ */ -- ;\n;",
      "EXECUTE \"Foo\"(1, $$;$$);",
      "DEALLOCATE PREPARE \"x\" ;",
      "DEALLOCATE PREPARE ALL ;",
      "DISCARD ALL ;",
  };
  for (const std::string& q : queries) {
    for (size_t n = 0; n <= q.size(); ++n) {
      // An exact-size buffer, so that the sanitizer sees any read past it.
      std::unique_ptr<char[]> buf(new char[n + (n == 0)]);
      std::copy(q.begin(), q.begin() + ptrdiff_t(n), buf.get());
      std::string_view p(buf.get(), n);
      check_consistent(p, classify_sql_command(p));
    }
  }
}

TEST_CASE("classify_sql_command: random and mutated input never crashes", "[sql]") {
  const std::vector<std::string> seeds = {
      "PREPARE p AS SELECT 1",
      "PREPARE \"P\"\"x\"(int) AS SELECT $1, 'a;b', $q$;$q$, E'\\';', \"c;\" -- ;\n/* /* ; */ */;",
      "EXECUTE p(1, 'x')",
      "DEALLOCATE PREPARE ALL",
      "DEALLOCATE \"x\";",
      "DISCARD ALL",
      "/* a /* b */ */ -- c\nEXECUTE p",
  };
  const std::string alphabet =
      "PREPARE EXECUTE DEALLOCATE DISCARD ALL pa$;'\"-/*\\\n E e 1 ( ) \xc3\xa9";
  Rng rng(20240601);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string q;
    switch (rng.below(3)) {
      case 0: q = rng.bytes(rng.below(64)); break;
      case 1:
        for (size_t n = rng.below(48); n > 0; --n) q += alphabet[rng.below(alphabet.size())];
        break;
      default: {
        q = seeds[rng.below(seeds.size())];
        for (size_t ops = 1 + rng.below(4); ops > 0; --ops) {
          size_t at = rng.below(q.size() + 1);
          switch (rng.below(3)) {
            case 0: q.insert(at, 1, alphabet[rng.below(alphabet.size())]); break;
            case 1:
              if (!q.empty()) q.erase(std::min(at, q.size() - 1), 1 + rng.below(3));
              break;
            default:
              if (!q.empty()) q[std::min(at, q.size() - 1)] = char(rng.byte());
          }
        }
      }
    }
    SqlCommand c = classify_sql_command(q);
    check_consistent(q, c);
    // Deterministic, and the same in an exact-size buffer without a NUL
    // after it (the sanitizer sees any read past the end).
    std::unique_ptr<char[]> buf(new char[q.size() + q.empty()]);
    std::copy(q.begin(), q.end(), buf.get());
    SqlCommand again = classify_sql_command(std::string_view(buf.get(), q.size()));
    CHECK(again.kind == c.kind);
    CHECK(again.name == c.name);
  }
}

// ---------------------------------------------------------------------------
// may_be_sql_command: the cheap look at the first bytes

TEST_CASE("may_be_sql_command: other first keywords are left alone", "[sql]") {
  for (std::string_view q : {"SELECT 1", "select $1", "  \n\tSELECT 1", "-- hi\nINSERT INTO t VALUES (1)",
                             "/* app=web */ UPDATE t SET a = 1", "(SELECT 1)", "EXPLAIN EXECUTE x",
                             "DELETE FROM t", "deallocated", "PREPARED", "executes", "\"PREPARE\" x",
                             "'PREPARE'", "WITH x AS (SELECT 1) SELECT 1", "DO $$ BEGIN END $$", ";"}) {
    INFO("query: [" << q << "]");
    CHECK_FALSE(may_be_sql_command(q));
  }
}

TEST_CASE("may_be_sql_command: what may still become one", "[sql]") {
  for (std::string_view q : {"", " ", "\n\n", "--", "-- comment without its end", "/* open",
                             "/* a */ /* b", "P", "pre", "PREPAR", "E", "exec", "DEALLOC", "disc",
                             "PREPARE", "execute x", "Deallocate all", "DISCARD ALL", "/**/prepare",
                             "-- x\nEXECUTE q", "d"}) {
    INFO("query: [" << q << "]");
    CHECK(may_be_sql_command(q));
  }
}

TEST_CASE("unfollowable_sql_command: PREPARE, EXECUTE, DEALLOCATE pgmux cannot read", "[sql]") {
  for (std::string_view q : {"PREPARE a AS SELECT 1; EXECUTE a", "EXECUTE U&\"s\\0031\"",
                             "execute a; select 1", "DEALLOCATE a b", "  -- c\n PREPARE a; SELECT 1",
                             "EXECUTE", "deallocate"}) {
    INFO("query: [" << q << "]");
    CHECK(classify_sql_command(q).kind == Kind::other);
    CHECK(unfollowable_sql_command(q));
  }
  for (std::string_view q : {"PREPARE TRANSACTION 'x'", "prepare transaction 'x'", "SELECT 1",
                             "DISCARD PLANS", "DISCARD TEMP", "EXPLAIN EXECUTE a", "DELETE FROM t",
                             "executed", ""}) {
    INFO("query: [" << q << "]");
    CHECK_FALSE(unfollowable_sql_command(q));
  }
}

TEST_CASE("pipeline_safe_query: one statement that leaves no transaction open and sets nothing",
          "[sql]") {
  for (std::string_view q :
       {"SELECT abalance FROM pgbench_accounts WHERE aid = $1;", "select 1", "  -- c\n SELECT 1",
        "/* x */ select 1 ;  \n", "VALUES (1)", "TABLE t", "WITH x AS (SELECT 1) SELECT * FROM x",
        "INSERT INTO t VALUES (1)", "update t set a = 1", "DELETE FROM t", "SELECT pg_sleep(1)",
        "SELECT 'a;' ;;"}) {
    INFO("query: [" << q << "]");
    if (std::string_view(q) == "SELECT 'a;' ;;") {
      // A semicolon inside a literal: refused all the same (safe side).
      CHECK_FALSE(pipeline_safe_query(q));
      continue;
    }
    CHECK(pipeline_safe_query(q));
  }
  for (std::string_view q :
       {"BEGIN", "begin; select 1", "START TRANSACTION", "SET TimeZone = 'UTC'", "RESET ALL",
        "SELECT 1; BEGIN", "SELECT 1; SET x = 1", "SELECT set_config('TimeZone', 'UTC', false)",
        "select SET_CONFIG('a.b', 'c', false)", "COMMIT", "ROLLBACK", "DISCARD ALL", "PREPARE a AS SELECT 1",
        "EXECUTE a", "COPY t FROM STDIN", "CALL p()", "DO $$ BEGIN END $$", "LISTEN x", "SHOW TimeZone",
        "selection", "(SELECT 1)", "", "  ", "/* open comment SELECT 1"}) {
    INFO("query: [" << q << "]");
    CHECK_FALSE(pipeline_safe_query(q));
  }
}

TEST_CASE("pipeline_kind: COMMIT, END, ROLLBACK, ABORT alone end the transaction", "[sql]") {
  for (std::string_view q : {"COMMIT", "commit;", "END", "end transaction", "ROLLBACK WORK;", "abort",
                             "  COMMIT -- done\n", "/* c */ rollback transaction ;"}) {
    INFO("query: [" << q << "]");
    CHECK(pipeline_kind(q) == PipelineKind::ends_transaction);
  }
  for (std::string_view q : {"COMMIT AND CHAIN", "commit and no chain", "ROLLBACK TO SAVEPOINT a",
                             "rollback to a", "COMMIT PREPARED 'x'", "ROLLBACK PREPARED 'x'", "END; BEGIN",
                             "commit; select 1", "committed", "ENDx", "COMMIT WORK WORK"}) {
    INFO("query: [" << q << "]");
    CHECK(pipeline_kind(q) == PipelineKind::unsafe);
  }
  CHECK(pipeline_kind("SELECT 1") == PipelineKind::safe);
}

TEST_CASE("transaction_exit_statement: what PostgreSQL runs in a failed transaction block", "[sql]") {
  for (std::string_view q : {"COMMIT", "commit work", "END", "end transaction;", "COMMIT AND CHAIN", "ROLLBACK",
                             "rollback and no chain", "ABORT", "ROLLBACK TO SAVEPOINT s1", "rollback to s1",
                             "PREPARE TRANSACTION 'gx'", "/* c */ COMMIT", "  -- x\n  ROLLBACK", ";COMMIT",
                             " ; ;rollback", "prepare transaction E'gx'", "PREPARE TRANSACTION $$gx$$"}) {
    INFO("query: [" << q << "]");
    CHECK(transaction_exit_statement(q));
  }
  for (std::string_view q : {"COMMIT PREPARED 'gx'", "rollback prepared 'gx'", "BEGIN", "SELECT 1", "SAVEPOINT s1",
                             "RELEASE SAVEPOINT s1", "PREPARE p AS SELECT 1", "committed", "ends", "", "-- COMMIT",
                             // a prepared statement named "transaction"
                             "PREPARE transaction AS SELECT 1", "prepare transaction (int) as select $1",
                             "PREPARE TRANSACTION", ";", "; SELECT 1"}) {
    INFO("query: [" << q << "]");
    CHECK_FALSE(transaction_exit_statement(q));
  }
}

TEST_CASE("scan_set_statements: the dotted names SET and RESET statements name", "[sql]") {
  auto names = [](std::string_view q) {
    std::vector<std::string> out;
    scan_set_statements(q, out);
    return out;
  };
  using V = std::vector<std::string>;
  CHECK(names("SET myapp.tenant = 'a'") == V{"myapp.tenant"});
  CHECK(names("set session MyApp.Tenant to 42") == V{"myapp.tenant"});
  CHECK(names("RESET app.user_id") == V{"app.user_id"});
  CHECK(names("SET \"My\"\"App\".\"X\" = 1") == V{"my\"app.x"});
  CHECK(names("SET a.b.c = 1") == V{"a.b.c"});
  // Several statements, comments, and each name once.
  CHECK(names("SET work_mem = '1MB'; /* c */ SET a.x = 1;\n-- SET b.y = 1\nset a.x = 2; RESET c.z") ==
        V{"a.x", "c.z"});
  // Not a SET / RESET of a custom setting, or one that ends with its transaction.
  for (std::string_view q : {"SET LOCAL a.x = 1", "SET search_path = a.b", "SELECT 'SET a.x = 1'",
                             "SELECT set_config('a.x', '1', false)", "SET ROLE a", "RESET ALL", "SET",
                             "SET a.", "SET .x = 1", "SELECT 1; SELECT $$; SET a.x = 1$$",
                             "UPDATE t SET a.x = 1", "SET TIME ZONE 'UTC'", "SET SESSION AUTHORIZATION x",
                             "SET 'a.x' = 1", "/* unterminated SET a.x = 1"}) {
    INFO("query: [" << q << "]");
    CHECK(names(q).empty());
  }
  // PostgreSQL's grammar takes blanks around the dot; an unterminated comment after the name ends the scan.
  CHECK(names("SET a . x = 1;") == V{"a.x"});
  CHECK(names("SET a.x = 1 /* unterminated") == V{"a.x"});
  // Every prefix of every query, and bytes that end mid-token, never read past the end.
  const std::string q = "SET a.x = 'it''s'; RESET \"B\".y; SET SESSION c.z TO DEFAULT";
  for (size_t n = 0; n <= q.size(); ++n) names(std::string_view(q).substr(0, n));
  CHECK(names(q) == V{"a.x", "b.y", "c.z"});
}

TEST_CASE("scan_set_statements: the SET tags, in order, and which change nothing beyond the transaction",
          "[sql]") {
  auto tags = [](std::string_view q) {
    std::vector<std::string> out;
    return scan_set_statements(q, out);
  };
  using B = std::vector<bool>;
  CHECK(tags("SET LOCAL app.tenant = '42'") == B{true});
  CHECK(tags("set local work_mem = '8MB'; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE") == B{true, true});
  CHECK(tags("SET LOCAL SESSION AUTHORIZATION x") == B{true});
  CHECK(tags("SET TRANSACTION READ ONLY; SET work_mem = 1") == B{true, false});
  // The order PostgreSQL answers in (a failing statement ends the query).
  CHECK(tags("SET work_mem = '77MB'; COMMIT; SET LOCAL work_mem = 'bogus'") == B{false, true});
  CHECK(tags("SET work_mem = 1; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; SET ROLE x; "
             "SET TIME ZONE 'UTC'; SET SCHEMA 'a'; SET NAMES 'UTF8'; SET SESSION AUTHORIZATION DEFAULT") ==
        B(7, false));
  // LOCAL, TRANSACTION, SESSION and CONSTRAINTS before a dot start a custom setting's name.
  std::vector<std::string> names;
  CHECK(scan_set_statements("SET local.tenant = 'a'; SET SESSION local.t = 1; SET transaction.t = 1; "
                            "SET session.t = 1; SET constraints.t = 1",
                            names) == B(5, false));
  CHECK(names == std::vector<std::string>{"local.tenant", "local.t", "transaction.t", "session.t", "constraints.t"});
  // No SET tag: SET CONSTRAINTS answers SET CONSTRAINTS, RESET answers RESET.
  for (std::string_view q : {"SET CONSTRAINTS ALL DEFERRED", "RESET ALL", "RESET work_mem", "SELECT 1",
                             "SELECT 'SET LOCAL a = 1'", "UPDATE t SET a = 1", ""}) {
    INFO("query: [" << q << "]");
    CHECK(tags(q).empty());
  }
  CHECK(tags("SELECT 1; SET LOCAL a.b = 1") == B{true});
  // Names stop at the limit, whatever the query holds (no quadratic work).
  std::string many;
  for (int i = 0; i < 5000; ++i) many += "SET n" + std::to_string(i) + ".x = 1;";
  std::vector<std::string> capped;
  CHECK(scan_set_statements(many, capped, 64).size() == 5000);
  CHECK(capped.size() == 64);
}

TEST_CASE("set_config_names: custom settings a connect_query makes with set_config", "[sql]") {
  std::vector<std::string> names;
  set_config_names("SELECT pg_catalog.set_config('myapp.base', 'x', false), set_config('App.Y', '1', false), "
                   "set_config('work_mem', '1MB', false), set_config('it''s.x', '', false), "
                   "set_config(E'e.x', '', false), set_config('b\\ad.x', '', false), 'set_config(''q.x'')'",
                   names);
  CHECK(names == std::vector<std::string>{"myapp.base", "app.y", "it's.x"});
}

TEST_CASE("may_need_reading: SQL commands pgmux follows, SET and RESET", "[sql]") {
  for (std::string_view q : {"SET a.x = 1", "reset ALL", "  /* c */ set", "se", "RES", "PREPARE p AS SELECT 1",
                             "discard all", "", " ", "-", "/* open"}) {
    INFO("prefix: [" << q << "]");
    CHECK(may_need_reading(q));
  }
  for (std::string_view q : {"SELECT 1", "settle", "resetting", "(SET", "'SET'", "SHOW a.x", "VALUES (1)"}) {
    INFO("prefix: [" << q << "]");
    CHECK_FALSE(may_need_reading(q));
  }
}
