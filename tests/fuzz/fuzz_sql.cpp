// SQL classifiers: classify_sql_command (protocol/sql_commands.hpp) and the
// read-only routing predicates (protocol/sql_route.hpp). Input: a query
// string (any bytes).
//
// Properties (all cheap consequences of the documented contracts):
//  - classify_sql_command: PREPARE/EXECUTE/DEALLOCATE name a statement of
//    1..63 bytes; the other kinds carry no name.
//  - is_read_only_statement(q)  =>  is_read_only_query(q) with 1 statement;
//    is_read_only_query(q)      =>  >= 1 statement;
//    begins_read_only_transaction(q) => !is_read_only_query(q) (BEGIN writes
//    nothing but is not a read-only statement);
//    a NUL byte anywhere => all false;
//    a read-only query stays read-only after a trailing ";" or a leading
//    comment line, with the same statement count;
//    two read-only queries joined by "\n;" make a read-only query whose
//    statements add up (the input is split in the middle).
//  - is_read_only_command_tag(tag) => same answer with a row count appended.
//  - pipeline_kind: a second statement after a ";" makes any query unsafe;
//    a trailing ";" or a leading comment line keeps the kind; a safe query
//    has no set_config in it (any case).
//  - transaction_exit_statement: a lone COMMIT/ROLLBACK... (pipeline kind
//    ends_transaction) is one; a safe query is none; a leading comment line
//    or ';' keeps the answer.
//  - scan_set_statements: at most 64 names, each with a dot, no upper-case
//    ASCII, and each once; a query without "set" (any case) names none; a
//    leading comment line keeps the names; no more SET tags than the
//    semicolons allow statements. set_config_names: dotted names only.
//  - Every predicate gives the same answer twice (no hidden state).
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "protocol/sql_commands.hpp"
#include "protocol/sql_route.hpp"

using namespace pgmux::proto;

namespace {

bool read_only(std::string_view q, size_t& n) {
  n = 0;
  const bool ro = is_read_only_query(q, &n);
  if (ro) FUZZ_CHECK(n >= 1);
  return ro;
}

void check_custom_settings(std::string_view q) {
  std::vector<std::string> names;
  const std::vector<bool> set_tags = scan_set_statements(q, names);
  FUZZ_CHECK(names.size() <= 64);
  // One SET tag per statement at most: no more than the semicolons allow.
  FUZZ_CHECK(set_tags.size() <= size_t(std::count(q.begin(), q.end(), ';')) + 1);
  std::vector<std::string> from_set_config;
  set_config_names(q, from_set_config);
  for (const std::string& n : from_set_config) FUZZ_CHECK(n.find('.') != std::string::npos);
  for (size_t i = 0; i < names.size(); ++i) {
    FUZZ_CHECK(names[i].find('.') != std::string::npos);
    for (char c : names[i]) FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
    for (size_t j = 0; j < i; ++j) FUZZ_CHECK(names[j] != names[i]);
  }
  std::string lower(q);
  for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("set") == std::string::npos) FUZZ_CHECK(names.empty());
  (void)may_need_reading(q);
  if (q.find('\n') == std::string_view::npos && q.find('\r') == std::string_view::npos) {
    std::vector<std::string> again;
    scan_set_statements("-- c\n" + std::string(q), again);
    FUZZ_CHECK(again == names);
  }
}

void check_query(std::string_view q) {
  check_custom_settings(q);
  const SqlCommand cmd = classify_sql_command(q);
  switch (cmd.kind) {
    case SqlCommand::Kind::prepare:
    case SqlCommand::Kind::execute:
    case SqlCommand::Kind::deallocate:
      FUZZ_CHECK(!cmd.name.empty() && cmd.name.size() <= 63);
      break;
    case SqlCommand::Kind::other:
    case SqlCommand::Kind::deallocate_all:
    case SqlCommand::Kind::discard_all:
      FUZZ_CHECK(cmd.name.empty());
      break;
  }

  size_t n = 0;
  const bool ro = read_only(q, n);
  const bool stmt = is_read_only_statement(q);
  const bool begin_ro = begins_read_only_transaction(q);
  if (stmt) FUZZ_CHECK(ro && n == 1);
  if (begin_ro) FUZZ_CHECK(!ro);
  if (q.find('\0') != std::string_view::npos) FUZZ_CHECK(!ro && !stmt && !begin_ro);
  size_t n2 = 0;
  FUZZ_CHECK(read_only(q, n2) == ro && n2 == n);
  FUZZ_CHECK(is_read_only_statement(q) == stmt);
  FUZZ_CHECK(begins_read_only_transaction(q) == begin_ro);

  const PipelineKind kind = pipeline_kind(q);
  FUZZ_CHECK(pipeline_kind(q) == kind);
  FUZZ_CHECK(pipeline_kind(std::string(q) + ";SELECT 1") == PipelineKind::unsafe);
  if (kind != PipelineKind::unsafe) {
    FUZZ_CHECK(pipeline_kind(std::string(q) + ";") == kind);
    FUZZ_CHECK(pipeline_kind("-- queued behind\n" + std::string(q)) == kind);
  }
  const bool exit_stmt = transaction_exit_statement(q);
  FUZZ_CHECK(transaction_exit_statement(q) == exit_stmt);
  if (kind == PipelineKind::ends_transaction) FUZZ_CHECK(exit_stmt);
  if (kind == PipelineKind::safe) FUZZ_CHECK(!exit_stmt);
  FUZZ_CHECK(transaction_exit_statement("-- c\n" + std::string(q)) == exit_stmt);
  FUZZ_CHECK(transaction_exit_statement(";" + std::string(q)) == exit_stmt);
  if (kind == PipelineKind::safe) {
    std::string lower(q);
    for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
    FUZZ_CHECK(lower.find("set_config") == std::string::npos);
  }

  if (ro) {
    size_t m = 0;
    FUZZ_CHECK(read_only(std::string(q) + "\n;", m) && m == n);
    FUZZ_CHECK(read_only("-- routed\n" + std::string(q), m) && m == n);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view q(reinterpret_cast<const char*>(data), size);
  check_query(q);

  // Two halves, each a query of its own, then joined again.
  const std::string_view a = q.substr(0, size / 2), b = q.substr(size / 2);
  size_t na = 0, nb = 0, nj = 0;
  if (read_only(a, na) && read_only(b, nb)) {
    const std::string joined = std::string(a) + "\n;" + std::string(b);
    FUZZ_CHECK(read_only(joined, nj) && nj == na + nb);
  }

  const bool tag = is_read_only_command_tag(q);
  FUZZ_CHECK(is_read_only_command_tag(std::string(q) + " 42") == tag);
  return 0;
}
