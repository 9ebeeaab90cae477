// Recognises the few SQL commands pgmux must act on under transaction
// pooling: PREPARE / EXECUTE / DEALLOCATE (SQL-level prepared statements)
// and DISCARD ALL. Only a query string holding exactly one such statement
// is recognised; anything else is an ordinary query.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::proto {

struct SqlCommand {
  enum class Kind { other, prepare, execute, deallocate, deallocate_all, discard_all };
  Kind kind = Kind::other;
  std::string name;  // statement name, case-folded unless it was quoted
};

SqlCommand classify_sql_command(std::string_view query);

// Whether a query whose first bytes are `prefix` (maybe all of it) may be
// one classify_sql_command recognises: false when its first keyword, after
// blanks and comments, is already known to be another one. Lets the
// forwarding path leave most queries alone without reading them whole.
bool may_be_sql_command(std::string_view prefix);

// A query classify_sql_command does not recognise, yet starting with
// PREPARE (not PREPARE TRANSACTION), EXECUTE or DEALLOCATE: several
// statements in one string, a Unicode-escaped name (U&"..."), a syntax
// error. Run as it is, it would act on whatever the server connection
// holds under the name: transaction pooling refuses it.
bool unfollowable_sql_command(std::string_view query);

// Whether a query whose first bytes are `prefix` may be one pgmux reads
// whole under transaction pooling: a command classify_sql_command
// recognises, or a SET / RESET (scan_set_statements).
bool may_need_reading(std::string_view prefix);

// The SET and RESET statements of `query`:
//  - the custom settings (a name with a dot: myapp.tenant) they name,
//    lower-cased, are added to `names` if not there yet, up to `max_names`
//    in all. No catalog lists them, so pgmux asks the server for these by
//    name after the transaction. SET LOCAL is left out (it ends with the
//    transaction); a statement pgmux cannot read (U&"..." names) is skipped;
//  - the result has one entry per statement answered with the command tag
//    SET, in order: true for one that changes nothing beyond its
//    transaction (SET LOCAL, SET TRANSACTION), false for the others.
std::vector<bool> scan_set_statements(std::string_view query, std::vector<std::string>& names,
                                      size_t max_names = 64);

// The custom settings `query` names as the first argument of a
// set_config('myapp.x', ...) call (a plain '...' literal), added to `names`
// as scan_set_statements does: what a connect_query may make without SET.
void set_config_names(std::string_view query, std::vector<std::string>& names, size_t max_names = 64);

// What server_pipelining may queue another client's request behind:
//  - safe: a statement that, run outside a transaction block, cannot leave
//    one open nor change a setting by itself: one SELECT, VALUES, TABLE,
//    WITH, INSERT, UPDATE or DELETE with no set_config() in its text (and
//    no semicolon but trailing ones). A function it calls that runs SET is
//    not seen (README: Pooling modes).
//  - ends_transaction: COMMIT, END, ROLLBACK or ABORT (optionally WORK or
//    TRANSACTION) alone: whatever the block did, the session is idle after
//    it (not AND CHAIN, TO SAVEPOINT or PREPARED).
enum class PipelineKind : uint8_t { unsafe, safe, ends_transaction };
PipelineKind pipeline_kind(std::string_view query);
// PostgreSQL's IsTransactionExitStmt, for a text the server parsed as one
// statement: COMMIT / END, ROLLBACK / ABORT (TO SAVEPOINT too), PREPARE
// TRANSACTION; not COMMIT / ROLLBACK PREPARED. PostgreSQL parses, binds and
// runs these in a failed transaction block, and refuses the rest (25P02).
bool transaction_exit_statement(std::string_view query);
inline bool pipeline_safe_query(std::string_view query) { return pipeline_kind(query) == PipelineKind::safe; }

}  // namespace pgmux::proto
