#include "protocol/sql_commands.hpp"

#include <cctype>

namespace pgmux::proto {

namespace {

struct Lexer {
  std::string_view s;
  size_t i = 0;

  void skip_space() {
    for (;;) {
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
      if (s.compare(i, 2, "--") == 0) {
        while (i < s.size() && s[i] != '\n') ++i;
      } else if (s.compare(i, 2, "/*") == 0) {
        int depth = 0;  // SQL block comments nest
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
          return !out.empty();
        }
        out.push_back(s[i++]);
      }
      return false;
    }
    if (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    out = word();
    return !out.empty();
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
      if (c == '\'' || c == '"') {
        char q = c;
        ++j;
        while (j < s.size()) {
          if (s[j] == q) {
            if (j + 1 < s.size() && s[j + 1] == q) {
              j += 2;
              continue;
            }
            break;
          }
          ++j;
        }
        ++j;
      } else if (c == '$') {
        size_t k = j + 1;
        while (k < s.size() && (std::isalnum(static_cast<unsigned char>(s[k])) || s[k] == '_')) ++k;
        if (k < s.size() && s[k] == '$') {
          std::string_view tag = s.substr(j, k - j + 1);
          size_t end = s.find(tag, k + 1);
          if (end == std::string_view::npos) return true;  // unterminated: the server errors
          j = end + tag.size();
        } else {
          ++j;
        }
      } else if (s.compare(j, 2, "--") == 0) {
        while (j < s.size() && s[j] != '\n') ++j;
      } else if (s.compare(j, 2, "/*") == 0) {
        size_t end = s.find("*/", j + 2);
        j = end == std::string_view::npos ? s.size() : end + 2;
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
    if (!lx.identifier(cmd.name) || !lx.single_statement()) return {};
    cmd.kind = SqlCommand::Kind::prepare;
  } else if (first == "execute") {
    if (!lx.identifier(cmd.name) || !lx.single_statement()) return {};
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
