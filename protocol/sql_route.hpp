// Read/write routing from the SQL text alone: which query strings may run on
// a replica. Pure functions over the query string (a simple Query's text or
// a Parse's statement), no allocation, linear time, safe on any bytes.
//
// The lexical rules are PostgreSQL's (protocol/sql_lexer.hpp): a keyword or a
// ';' inside a string ('', E'', U&'', B'', X'', $tag$...$tag$), a quoted
// identifier or a comment (--, nested /* */) never counts, and keywords match
// whole tokens only, in any case ("updated_at" and "for_update" are
// identifiers; "for" in double quotes is an identifier).
//
// Both functions are conservative: a string they cannot prove to be what
// they look for (a syntax they do not know, an unterminated literal or
// comment, a NUL byte) gives false, which routes to the primary.
#pragma once

#include <cstddef>
#include <string_view>

namespace pgmux::proto {

// True when the query string's first (non-empty) statement is
//   BEGIN [WORK | TRANSACTION] modes    or    START TRANSACTION modes
// whose transaction modes, separated by commas or whitespace, include READ
// ONLY and not READ WRITE. The modes are ISOLATION LEVEL {SERIALIZABLE |
// REPEATABLE READ | READ COMMITTED | READ UNCOMMITTED}, READ WRITE, READ ONLY,
// [NOT] DEFERRABLE; anything else in the statement gives false. What follows
// the first ';' does not matter, except that a string the server cannot
// even scan (an unterminated literal or comment anywhere) gives false.
//   "BEGIN READ ONLY; SELECT 1; COMMIT"                                -> true
//   "begin /* x */ isolation level serializable, read only deferrable" -> true
//   "BEGIN; SET TRANSACTION READ ONLY"                                 -> false
bool begins_read_only_transaction(std::string_view query);

// True when the string holds at least one statement and every statement
// (split on ';', empty ones ignored) is provably read-only, so that the whole
// string may run on a replica outside a transaction block ("auto" routing).
// Read-only statements:
//   SELECT ...   without INTO (SELECT INTO creates a table) and without a
//                locking clause (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE,
//                FOR KEY SHARE) at any nesting level;
//   WITH [RECURSIVE] ... SELECT / VALUES / TABLE ...   whose CTE bodies, at any
//                nesting level, hold no INSERT / UPDATE / DELETE / MERGE and
//                no locking clause;
//   VALUES ...,  TABLE name,  parenthesised selects "(SELECT 1) UNION (SELECT 2)";
//   SHOW name,   SHOW ALL;
//   EXPLAIN [ANALYZE] [VERBOSE] stmt,  EXPLAIN (options) stmt   when stmt is
//                one of the selects above (EXPLAIN ANALYZE runs it).
// Everything else is not: INSERT, UPDATE, DELETE, MERGE, COPY, DDL, BEGIN,
// COMMIT, SET, RESET, LOCK, PREPARE, EXECUTE, DECLARE, FETCH, CALL, DO,
// LISTEN, NOTIFY, VACUUM, ..., and an empty or comment-only string.
//
// Conservative by construction: in a select-like statement, any INTO,
// INSERT, UPDATE, DELETE or MERGE token (outside literals and quoted
// identifiers) makes it not read-only, even where it is a column name
// ("SELECT update FROM t"; quote it: "update"), and so does FOR followed by
// SHARE or KEY SHARE.
//
// Functions are not analysed: "SELECT nextval('s')" or a volatile function
// that writes is classified read-only. A replica refuses the write
// (SQLSTATE 25006, read_only_sql_transaction) and the pooler retries such a
// query on the primary.
//
// Neither the session's standard_conforming_strings nor its client encoding
// is known here, and both move where a literal ends:
//  - with standard_conforming_strings off, '...' takes backslash escapes
//    like E'...': a string whose '...' literals hold a backslash is
//    read-only only if it is under both settings ("SELECT 'C:\'" is not);
//  - in SJIS, BIG5, GBK, UHC and GB18030 a character's second byte may be
//    0x5C ('\'), which the server (scanning after conversion) never takes
//    for an escape: an escaping backslash right after a non-ASCII byte makes
//    the string not read-only.
// A ';' inside parentheses or an unbalanced parenthesis (a syntax error)
// makes it not read-only too.
// `statements` (if given) receives the number of statements when true.
bool is_read_only_query(std::string_view query, size_t* statements = nullptr);

// is_read_only_query for a string holding exactly one statement (auto
// routing of single statements outside a transaction block: if a replica
// refuses it, it can be re-run on the primary before any row was sent).
bool is_read_only_statement(std::string_view query);

// True when a CommandComplete tag names a command that writes nothing a
// replica would have to replay (SELECT, SHOW, BEGIN, COMMIT, SET, FETCH,
// ...). For read-your-writes: a transaction whose tags are all read-only did
// not write, unless a function it called did (a SELECT calling a writing
// function reports "SELECT n").
bool is_read_only_command_tag(std::string_view tag);

// Read your writes: statements that may write although their CommandComplete
// tag looks read-only ("SELECT n"): CREATE TABLE ... AS, SELECT ... INTO,
// EXECUTE of such a statement, and any SELECT / WITH / TABLE / VALUES the
// classifier cannot prove read-only (CREATE in general: it writes anyway).
// Statements whose tag names their write (INSERT, UPDATE, DROP, ...) or that
// write nothing (SET, BEGIN) are false: the tag tells, or there is nothing
// to tell. A string of several statements that is not read-only is true. A
// function that writes inside a SELECT the classifier accepts is not seen.
bool may_write_behind_read_tag(std::string_view query);

}  // namespace pgmux::proto
