#include "protocol/sql_commands.hpp"

#include <algorithm>
#include <cctype>

namespace pgmux::proto {

namespace {

// PostgreSQL's lexer: identifiers start with a letter, '_' or a non-ASCII
// byte and go on with those, digits and '$'.
bool ident_start(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return std::isalpha(u) || u == '_' || u >= 0x80;
}
bool ident_cont(char c) {
  return ident_start(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '$';
}

// s[i] starts "/*": the index after the matching "*/" (comments nest).
size_t skip_block_comment(std::string_view s, size_t i) {
  int depth = 0;
  do {
    if (s.compare(i, 2, "/*") == 0) {
      ++depth;
      i += 2;
    } else if (s.compare(i, 2, "*/") == 0) {
      --depth;
      i += 2;
    } else {
      ++i;
    }
  } while (depth > 0 && i < s.size());
  return std::min(i, s.size());
}

// s[i] is the opening quote: the index after the closing one. `backslash`:
// an E'...' string, where a backslash escapes the next character.
size_t skip_quoted(std::string_view s, size_t i, bool backslash) {
  const char q = s[i++];
  while (i < s.size()) {
    if (backslash && s[i] == '\\') {
      i += 2;
    } else if (s[i] == q) {
      if (i + 1 < s.size() && s[i + 1] == q) {
        i += 2;
      } else {
        return i + 1;
      }
    } else {
      ++i;
    }
  }
  return s.size();
}

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

  void skip_space() {
    for (;;) {
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
      if (s.compare(i, 2, "--") == 0) {
        while (i < s.size() && s[i] != '\n') ++i;
      } else if (s.compare(i, 2, "/*") == 0) {
        i = skip_block_comment(s, i);
      } else {
        return;
      }
    }
  }

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
    if (i < s.size() && !ident_start(s[i])) return false;
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

  // True if no ';' outside quotes, dollar quotes and comments follows,
  // except a final one: the rest is one statement.
  bool single_statement() {
    size_t j = i;
    while (j < s.size()) {
      char c = s[j];
      if (ident_start(c)) {
        // A whole word, so that a '$' inside it starts no dollar quote.
        size_t k = j + 1;
        while (k < s.size() && ident_cont(s[k])) ++k;
        bool escape_string = k == j + 1 && (c == 'e' || c == 'E') && k < s.size() && s[k] == '\'';
        j = escape_string ? skip_quoted(s, k, true) : k;
      } else if (c == '\'' || c == '"') {
        j = skip_quoted(s, j, false);
      } else if (c == '$') {
        // $$ or $tag$; a tag is an identifier without '$'.
        size_t k = j + 1;
        if (k < s.size() && ident_start(s[k])) {
          while (k < s.size() && ident_cont(s[k]) && s[k] != '$') ++k;
        }
        if (k < s.size() && s[k] == '$') {
          std::string_view tag = s.substr(j, k - j + 1);
          size_t end = s.find(tag, k + 1);
          if (end == std::string_view::npos) return true;  // unterminated: the server errors
          j = end + tag.size();
        } else {
          ++j;  // a parameter ($1) or a stray '$'
        }
      } else if (s.compare(j, 2, "--") == 0) {
        while (j < s.size() && s[j] != '\n') ++j;
      } else if (s.compare(j, 2, "/*") == 0) {
        j = skip_block_comment(s, j);
      } else if (c == ';') {
        Lexer rest{s, j + 1};
        rest.skip_space();
        return rest.i == s.size();
      } else {
        ++j;
      }
    }
    return true;
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

}  // namespace pgmux::proto
