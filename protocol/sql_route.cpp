#include "protocol/sql_route.hpp"

#include "protocol/sql_lexer.hpp"

namespace pgmux::proto {

namespace {

using detail::Scanner;
using detail::Token;
using Kind = Token::Kind;

bool statement_end(const Token& t) { return t.is(Kind::semicolon) || t.is(Kind::end); }

// ---------------------------------------------------------------------------
// BEGIN / START TRANSACTION

struct Modes {
  bool read_only = false;
  bool read_write = false;
};

// One transaction mode starting at `t`; false if `t` starts none.
bool transaction_mode(Scanner& scan, const Token& t, Modes& modes) {
  if (t.is_word("isolation")) {
    if (!scan.next().is_word("level")) return false;
    Token level = scan.next();
    if (level.is_word("serializable")) return true;
    if (level.is_word("repeatable")) return scan.next().is_word("read");
    if (level.is_word("read")) {
      Token which = scan.next();
      return which.is_word("committed") || which.is_word("uncommitted");
    }
    return false;
  }
  if (t.is_word("read")) {
    Token which = scan.next();
    if (which.is_word("only")) {
      modes.read_only = true;
      return true;
    }
    if (which.is_word("write")) {
      modes.read_write = true;
      return true;
    }
    return false;
  }
  if (t.is_word("deferrable")) return true;
  if (t.is_word("not")) return scan.next().is_word("deferrable");
  return false;
}

// ---------------------------------------------------------------------------
// Read-only statements

// The rest of a select-like statement (after its first word, inside
// `depth` parentheses): no INTO, no data-modifying keyword, no locking
// clause, parentheses balanced. Consumes through the statement's end.
bool read_only_body(Scanner& scan, size_t depth) {
  for (;;) {
    Token t = scan.next();
    // A ';' inside parentheses is a syntax error: "SELECT (1; SELECT 2)".
    if (statement_end(t)) return depth == 0;
    if (t.is(Kind::error)) return false;
    if (t.is(Kind::lparen)) ++depth;
    if (t.is(Kind::rparen) && depth-- == 0) return false;
    if (t.kind != Kind::word) continue;
    // SELECT INTO creates a table; a data-modifying statement can only be a
    // CTE body (WITH x AS (DELETE ...), nested WITH included) or the main
    // statement of a WITH. A column named like one of these keywords is
    // taken for it too: conservative.
    if (t.is_word("into") || t.is_word("insert") || t.is_word("update") || t.is_word("delete") ||
        t.is_word("merge")) {
      return false;
    }
    // FOR UPDATE and FOR NO KEY UPDATE are caught by UPDATE above.
    if (t.is_word("for")) {
      Scanner ahead = scan;
      Token a = ahead.next();
      if (a.is_word("share")) return false;
      if (a.is_word("key") && ahead.next().is_word("share")) return false;
    }
  }
}

// A statement starting with `first`, possibly after '(': SELECT, WITH,
// VALUES or TABLE, read-only. Consumes through the statement's end.
bool read_only_select(Scanner& scan, Token first) {
  size_t depth = 0;
  for (; first.is(Kind::lparen); first = scan.next()) ++depth;
  if (!first.is_word("select") && !first.is_word("with") && !first.is_word("values") &&
      !first.is_word("table")) {
    return false;
  }
  // Only SELECT stands alone (one row, no columns); the others need more.
  if (!first.is_word("select") && statement_end(scan.peek())) return false;
  return read_only_body(scan, depth);
}

// After "EXPLAIN (": whether the '(' opens a parenthesised select rather
// than an option list. Option names are never reserved words, so SELECT,
// WITH, TABLE and '(' decide; VALUES may be an option name too, but an
// option takes no parenthesised argument, so VALUES '(' is a select.
bool parenthesised_select_follows(const Scanner& scan) {
  Scanner ahead = scan;
  Token t = ahead.next();
  if (t.is(Kind::lparen) || t.is_word("select") || t.is_word("with") || t.is_word("table")) {
    return true;
  }
  return t.is_word("values") && ahead.next().is(Kind::lparen);
}

// EXPLAIN [ANALYZE | ANALYSE] [VERBOSE] stmt, EXPLAIN (options) stmt: as
// read-only as stmt (ANALYZE executes it). Consumes through the end.
bool read_only_explain(Scanner& scan) {
  Token t = scan.next();
  if (t.is(Kind::lparen) && !parenthesised_select_follows(scan)) {
    // Skip the option list: (ANALYZE, FORMAT JSON, SETTINGS true, ...).
    for (size_t depth = 1; depth > 0;) {
      t = scan.next();
      if (statement_end(t) || t.is(Kind::error)) return false;
      if (t.is(Kind::lparen)) ++depth;
      if (t.is(Kind::rparen)) --depth;
    }
    t = scan.next();
  } else {
    while (t.is_word("analyze") || t.is_word("analyse") || t.is_word("verbose")) t = scan.next();
  }
  return read_only_select(scan, t);
}

// The statement starting with `first` (neither ';' nor the end) is
// read-only. Consumes through its end when it is; may stop early otherwise.
bool read_only_statement(Scanner& scan, const Token& first) {
  if (first.is_word("show")) {
    // SHOW name [. name], SHOW ALL, SHOW TIME ZONE, SHOW TRANSACTION
    // ISOLATION LEVEL, ...: it only reads a setting.
    Token t = scan.next();
    if (!t.is(Kind::word) && !t.is(Kind::quoted)) return false;
    while (!statement_end(t)) {
      if (t.is(Kind::error)) return false;
      t = scan.next();
    }
    return true;
  }
  if (first.is_word("explain")) return read_only_explain(scan);
  return read_only_select(scan, first);
}

// is_read_only_query under one standard_conforming_strings setting.
bool all_read_only(std::string_view query, bool standard_strings, bool* saw_backslash,
                   size_t* count = nullptr) {
  Scanner scan(query, standard_strings);
  bool any = false;
  size_t n = 0;
  for (;;) {
    Token t = scan.next();
    if (t.is(Kind::end)) break;
    if (t.is(Kind::semicolon)) continue;
    if (t.is(Kind::error) || !read_only_statement(scan, t)) return false;
    any = true;
    ++n;
  }
  if (scan.saw_ambiguous_backslash()) return false;
  if (saw_backslash) *saw_backslash = scan.saw_backslash_in_standard_string();
  if (count) *count = n;
  return any;
}

bool has_nul(std::string_view query) { return query.find('\0') != std::string_view::npos; }

}  // namespace

bool begins_read_only_transaction(std::string_view query) {
  // A NUL would end the query string for the server: not ours to guess.
  if (has_nul(query)) return false;
  Scanner scan(query);
  Token t = scan.next();
  while (t.is(Kind::semicolon)) t = scan.next();
  if (t.is_word("begin")) {
    t = scan.next();
    if (t.is_word("work") || t.is_word("transaction")) t = scan.next();
  } else if (t.is_word("start")) {
    if (!scan.next().is_word("transaction")) return false;
    t = scan.next();
  } else {
    return false;
  }
  Modes modes;
  bool first = true;
  while (!statement_end(t)) {
    if (!first && t.is(Kind::comma)) t = scan.next();
    if (!transaction_mode(scan, t, modes)) return false;
    first = false;
    t = scan.next();
  }
  if (!modes.read_only || modes.read_write) return false;
  // The server scans the whole string before running any of it.
  while (!t.is(Kind::end)) {
    if (t.is(Kind::error)) return false;
    t = scan.next();
  }
  return true;
}

bool is_read_only_statement(std::string_view query) {
  size_t n = 0;
  return is_read_only_query(query, &n) && n == 1;
}

bool is_read_only_query(std::string_view query, size_t* statements) {
  if (has_nul(query)) return false;
  bool backslash = false;
  if (!all_read_only(query, true, &backslash, statements)) return false;
  // A backslash in a standard literal: where that literal ends depends on
  // standard_conforming_strings, which a session may have turned off.
  return !backslash || all_read_only(query, false, nullptr);
}

bool is_read_only_command_tag(std::string_view tag) {
  // The tag's words before a row count ("SELECT 5", "FETCH 2", "MOVE 0").
  while (!tag.empty() && (tag.back() == ' ' || (tag.back() >= '0' && tag.back() <= '9'))) tag.remove_suffix(1);
  static constexpr std::string_view kReadOnly[] = {
      "SELECT", "SHOW", "BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "END", "SET", "RESET",
      "FETCH", "MOVE", "DECLARE CURSOR", "CLOSE CURSOR", "CLOSE CURSOR ALL", "PREPARE", "DEALLOCATE",
      "DEALLOCATE ALL", "DISCARD ALL", "DISCARD PLANS", "DISCARD SEQUENCES", "DISCARD TEMP",
      "EXPLAIN", "SAVEPOINT", "RELEASE", "LISTEN", "UNLISTEN", "NOTIFY", "SET CONSTRAINTS",
      "LOCK TABLE", "PREPARE TRANSACTION"};
  for (std::string_view t : kReadOnly)
    if (tag == t) return true;
  return false;
}

bool may_write_behind_read_tag(std::string_view query) {
  using namespace detail;
  size_t statements = 0;
  if (is_read_only_query(query, &statements)) return false;
  // The first word of the first statement, past blanks, comments and '('.
  size_t i = 0;
  while (i < query.size()) {
    if (is_space(query[i]) || query[i] == '(') {
      ++i;
    } else if (starts_with_at(query, i, "--")) {
      i = skip_line_comment(query, i);
    } else if (starts_with_at(query, i, "/*")) {
      i = skip_block_comment(query, i);
    } else {
      break;
    }
  }
  size_t j = i;
  while (j < query.size() && ident_cont(query[j])) ++j;
  const std::string_view word = query.substr(i, j - i);
  for (std::string_view k : {"select", "with", "create", "execute", "table", "values"})
    if (keyword_is(word, k)) return true;
  // Several statements, not all read-only: which one writes is unknown.
  size_t semis = 0;
  for (char c : query) semis += c == ';';
  return semis > 0 && query.find_first_not_of(" \t\r\n;", query.find(';')) != std::string_view::npos;
}

}  // namespace pgmux::proto
