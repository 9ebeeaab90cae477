#include "protocol/sql_commands.hpp"

#include <algorithm>
#include <cctype>
#include <initializer_list>

#include "protocol/sql_lexer.hpp"

namespace pgmux::proto {

namespace {

// The server truncates identifiers to NAMEDATALEN - 1 bytes, without
// splitting a (UTF-8) character.
void truncate_identifier(std::string& name) {
  constexpr size_t kMaxIdentifier = 63;
  if (name.size() <= kMaxIdentifier) return;
  size_t n = kMaxIdentifier;
  while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) --n;
  name.resize(n);
}

struct Lexer {
  std::string_view s;
  size_t i = 0;

  void skip_space() { i = detail::skip_space(s, i); }

  // A keyword or unquoted identifier, lower-cased; empty if none.
  std::string word() {
    skip_space();
    std::string w;
    while (i < s.size()) {
      char c = s[i];
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
          static_cast<unsigned char>(c) >= 0x80) {
        w.push_back(char(std::tolower(static_cast<unsigned char>(c))));
        ++i;
      } else {
        break;
      }
    }
    return w;
  }

  // An identifier: "Quoted ""name""" or unquoted (folded to lower case).
  bool identifier(std::string& out) {
    skip_space();
    if (i < s.size() && s[i] == '"') {
      ++i;
      out.clear();
      while (i < s.size()) {
        if (s[i] == '"') {
          if (i + 1 < s.size() && s[i + 1] == '"') {
            out.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          truncate_identifier(out);
          return !out.empty();
        }
        out.push_back(s[i++]);
      }
      return false;
    }
    if (i < s.size() && !detail::ident_start(s[i])) return false;
    out = word();
    truncate_identifier(out);
    return !out.empty();
  }

  // PREPARE name: a parameter list or AS follows (not PREPARE TRANSACTION 'x').
  bool at_paren_or_as() {
    skip_space();
    if (i < s.size() && s[i] == '(') return true;
    size_t save = i;
    bool as = word() == "as";
    i = save;
    return as;
  }

  // EXECUTE name: a parameter list may follow, then the statement ends.
  bool execute_rest() {
    skip_space();
    if (i < s.size() && s[i] == '(') return single_statement();
    return at_statement_end();
  }

  // Only a trailing ';' and comments may follow (one statement).
  bool at_statement_end() {
    skip_space();
    if (i < s.size() && s[i] == ';') {
      ++i;
      skip_space();
    }
    return i == s.size();
  }

  // True if no ';' outside strings, quoted identifiers, dollar quotes and
  // comments follows, except a final one: the rest is one statement. An
  // unterminated literal or comment counts as one statement (the server
  // rejects the whole string). A backslash in a '...' literal escapes the
  // quote after it when the session has standard_conforming_strings off:
  // then the rest must be one statement under both settings. An escaping
  // backslash right after a non-ASCII byte may be half of a character in
  // the client's encoding (sql_lexer.hpp): not provably one statement.
  bool single_statement() const {
    bool backslash = false;
    if (!one_statement(s.substr(i), true, &backslash)) return false;
    return !backslash || one_statement(s.substr(i), false, nullptr);
  }

  static bool one_statement(std::string_view rest, bool standard_strings, bool* backslash) {
    detail::Scanner scan(rest, standard_strings);
    for (;;) {
      detail::Token t = scan.next();
      if (scan.saw_ambiguous_backslash()) return false;
      if (backslash) *backslash = scan.saw_backslash_in_standard_string();
      if (t.is(detail::Token::Kind::end) || t.is(detail::Token::Kind::error)) return true;
      if (t.is(detail::Token::Kind::semicolon)) {
        return detail::skip_space(rest, scan.pos()) == rest.size();
      }
    }
  }
};

}  // namespace

SqlCommand classify_sql_command(std::string_view query) {
  SqlCommand cmd;
  Lexer lx{query};
  std::string first = lx.word();
  if (first == "prepare") {
    if (!lx.identifier(cmd.name) || !lx.at_paren_or_as() || !lx.single_statement()) return {};
    cmd.kind = SqlCommand::Kind::prepare;
  } else if (first == "execute") {
    if (!lx.identifier(cmd.name) || !lx.execute_rest()) return {};
    cmd.kind = SqlCommand::Kind::execute;
  } else if (first == "deallocate") {
    size_t save = lx.i;
    std::string w = lx.word();
    if (w == "prepare") {
      save = lx.i;
      w = lx.word();
    }
    if (w == "all") {
      if (!lx.at_statement_end()) return {};
      cmd.kind = SqlCommand::Kind::deallocate_all;
      return cmd;
    }
    lx.i = save;
    if (!lx.identifier(cmd.name) || !lx.at_statement_end()) return {};
    cmd.kind = SqlCommand::Kind::deallocate;
  } else if (first == "discard") {
    if (lx.word() != "all" || !lx.at_statement_end()) return {};
    cmd.kind = SqlCommand::Kind::discard_all;
  }
  return cmd;
}

namespace {
// The first keyword of `prefix`, as far as it goes, is one of `words`
// (blanks, comments, or a word cut off by the prefix's end: maybe).
bool first_word_may_be(std::string_view prefix, std::initializer_list<std::string_view> words) {
  bool closed = true;
  const size_t i = detail::skip_space(prefix, 0, &closed);
  if (i >= prefix.size()) return true;  // blanks or an open comment: not known yet
  // The last byte may start a comment ("--", "/*").
  if (i + 1 == prefix.size() && (prefix[i] == '-' || prefix[i] == '/')) return true;
  size_t j = i;
  while (j < prefix.size() && detail::ident_cont(prefix[j])) ++j;
  if (j == i) return false;  // a symbol, a quote, a parenthesis...
  const std::string_view word = prefix.substr(i, j - i);
  for (std::string_view k : words) {
    // The word may go on beyond the prefix: then it need only start a keyword.
    if (j == prefix.size() ? word.size() <= k.size() && detail::keyword_is(word, k.substr(0, word.size()))
                           : detail::keyword_is(word, k))
      return true;
  }
  return false;
}

// A Token naming a setting part: a word as is, a "quoted" one unquoted.
bool setting_name_part(const detail::Token& t, std::string& out) {
  if (t.is(detail::Token::Kind::word)) {
    out.append(t.text);
    return true;
  }
  if (!t.is(detail::Token::Kind::quoted) || t.text.size() < 2 || t.text[0] != '"') return false;
  for (size_t k = 1; k + 1 < t.text.size(); ++k) {
    out.push_back(t.text[k]);
    if (t.text[k] == '"') ++k;  // "" stands for one quote
  }
  return true;
}
// A custom setting's name, lower-cased, once, while fewer than `max` are known.
void add_custom_name(std::vector<std::string>& names, std::string name, size_t max) {
  if (name.empty() || names.size() >= max) return;
  for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(std::move(name));
}
}  // namespace

bool may_need_reading(std::string_view prefix) {
  return first_word_may_be(prefix, {"prepare", "execute", "deallocate", "discard", "set", "reset"});
}

std::vector<bool> scan_set_statements(std::string_view query, std::vector<std::string>& names, size_t max_names) {
  using K = detail::Token::Kind;
  detail::Scanner scan(query);
  std::vector<bool> set_tags;
  bool at_start = true;
  // A keyword, unless a '.' follows: then it starts a custom setting's
  // name (SET local.x, SET session.x are settings PostgreSQL accepts).
  auto keyword = [&](const detail::Token& t, std::string_view word) {
    if (!t.is_word(word)) return false;
    const detail::Token after = scan.peek();
    return !(after.is(K::other) && after.text == ".");
  };
  for (detail::Token t = scan.next(); !t.is(K::end) && !t.is(K::error); t = scan.next()) {
    const bool starts = at_start;
    at_start = t.is(K::semicolon);
    if (!starts || !(t.is_word("set") || t.is_word("reset"))) continue;
    const bool set = t.is_word("set");
    detail::Token n = scan.next();
    if (set && keyword(n, "session")) n = scan.next();
    if (set && (keyword(n, "local") || keyword(n, "transaction"))) {
      set_tags.push_back(true);
      continue;
    }
    if (set && keyword(n, "constraints")) continue;  // its tag is SET CONSTRAINTS
    if (set) set_tags.push_back(false);
    std::string name;
    if (!setting_name_part(n, name)) {
      at_start = n.is(K::semicolon);
      continue;
    }
    bool dotted = false;
    for (;;) {
      const detail::Token dot = scan.peek();
      if (!dot.is(K::other) || dot.text != ".") break;
      scan.next();
      name.push_back('.');
      if (!setting_name_part(scan.next(), name)) {
        name.clear();
        break;
      }
      dotted = true;
    }
    if (dotted) add_custom_name(names, std::move(name), max_names);
  }
  return set_tags;
}

void set_config_names(std::string_view query, std::vector<std::string>& names, size_t max_names) {
  using K = detail::Token::Kind;
  detail::Scanner scan(query);
  for (detail::Token t = scan.next(); !t.is(K::end) && !t.is(K::error); t = scan.next()) {
    if (!t.is_word("set_config") || !scan.peek().is(K::lparen)) continue;
    scan.next();
    const detail::Token arg = scan.next();
    // A plain '...' literal: '' stands for one quote.
    if (!arg.is(K::string) || arg.text.size() < 2 || arg.text[0] != '\'') continue;
    std::string name;
    for (size_t k = 1; k + 1 < arg.text.size(); ++k) {
      if (arg.text[k] == '\\') {
        name.clear();  // its meaning depends on standard_conforming_strings: not read
        break;
      }
      name.push_back(arg.text[k]);
      if (arg.text[k] == '\'') ++k;
    }
    if (name.find('.') != std::string::npos) add_custom_name(names, std::move(name), max_names);
  }
}

bool may_be_sql_command(std::string_view prefix) {
  return first_word_may_be(prefix, {"prepare", "execute", "deallocate", "discard"});
}

bool unfollowable_sql_command(std::string_view query) {
  Lexer lx{query};
  const std::string first = lx.word();
  if (first == "prepare") return lx.word() != "transaction";
  return first == "execute" || first == "deallocate";
}

PipelineKind pipeline_kind(std::string_view query) {
  Lexer lx{query};
  const std::string first = lx.word();
  // One statement: semicolons only at the end (one inside a literal or a
  // comment also counts: the answer errs on the safe side).
  size_t end = query.size();
  while (end > 0 && (query[end - 1] == ';' || std::isspace(static_cast<unsigned char>(query[end - 1]))))
    --end;
  if (query.substr(0, end).find(';') != std::string_view::npos) return PipelineKind::unsafe;
  if (first == "commit" || first == "end" || first == "rollback" || first == "abort") {
    Lexer rest{query.substr(0, end), lx.i};
    std::string w = rest.word();
    if (w == "work" || w == "transaction") w = rest.word();
    rest.skip_space();
    return w.empty() && rest.i >= rest.s.size() ? PipelineKind::ends_transaction : PipelineKind::unsafe;
  }
  static constexpr std::string_view kSafe[] = {"select", "values", "table", "with",
                                               "insert", "update", "delete"};
  bool known = false;
  for (std::string_view k : kSafe) known = known || first == k;
  if (!known) return PipelineKind::unsafe;
  static constexpr std::string_view kSetConfig = "set_config";
  for (size_t i = 0; i + kSetConfig.size() <= end; ++i) {
    size_t k = 0;
    while (k < kSetConfig.size() &&
           std::tolower(static_cast<unsigned char>(query[i + k])) == kSetConfig[k])
      ++k;
    if (k == kSetConfig.size()) return PipelineKind::unsafe;
  }
  return PipelineKind::safe;
}

bool transaction_exit_statement(std::string_view query) {
  Lexer lx{query};
  lx.skip_space();
  while (lx.i < lx.s.size() && lx.s[lx.i] == ';') {  // empty statements before it
    ++lx.i;
    lx.skip_space();
  }
  const std::string first = lx.word();
  if (first == "commit" || first == "end" || first == "rollback" || first == "abort") return lx.word() != "prepared";
  if (first != "prepare" || lx.word() != "transaction") return false;
  // PREPARE TRANSACTION 'gid', not a statement named "transaction"
  // (PREPARE transaction [(types)] AS ...).
  lx.skip_space();
  return lx.i < lx.s.size() && lx.s[lx.i] != '(' && lx.word() != "as";
}

}  // namespace pgmux::proto
