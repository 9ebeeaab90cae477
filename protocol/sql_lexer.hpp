// Internal: the PostgreSQL lexical rules shared by the SQL classifiers
// (sql_commands.cpp, sql_route.cpp). Not part of the protocol library's
// interface; include it from protocol/*.cpp only.
//
// It follows the server's scanner (src/backend/parser/scan.l) closely enough
// to find token boundaries exactly: where strings, quoted identifiers, dollar
// quotes and comments begin and end. That is what both classifiers need: a
// ';' or a keyword inside any of those must never count. Everything here is
// linear in the input and never reads past its end.
#pragma once

#include <cctype>
#include <cstddef>
#include <string_view>

namespace pgmux::proto::detail {

// Identifiers start with a letter, '_' or a non-ASCII byte and go on with
// those, digits and '$'.
inline bool ident_start(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u == '_' || u >= 0x80;
}
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool ident_cont(char c) { return ident_start(c) || is_digit(c) || c == '$'; }
inline bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }
inline bool is_newline(char c) { return c == '\n' || c == '\r'; }
inline bool starts_with_at(std::string_view s, size_t i, std::string_view p) {
  return i <= s.size() && s.size() - i >= p.size() && s.substr(i, p.size()) == p;
}

// ASCII-only case-insensitive comparison with a lower-case keyword (the
// server folds only A-Z when it looks up keywords).
inline bool keyword_is(std::string_view word, std::string_view lower_keyword) {
  if (word.size() != lower_keyword.size()) return false;
  for (size_t k = 0; k < word.size(); ++k) {
    char c = word[k];
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    if (c != lower_keyword[k]) return false;
  }
  return true;
}

// s[i..] starts "--": the index of the newline ending the comment (a line
// comment ends at '\n' or '\r'), or s.size().
inline size_t skip_line_comment(std::string_view s, size_t i) {
  while (i < s.size() && !is_newline(s[i])) ++i;
  return i;
}

// s[i..] starts "/*": the index after the matching "*/" (comments nest), or
// s.size() with *closed = false when the comment is unterminated.
inline size_t skip_block_comment(std::string_view s, size_t i, bool* closed = nullptr) {
  size_t depth = 0;
  do {
    if (starts_with_at(s, i, "/*")) {
      ++depth;
      i += 2;
    } else if (starts_with_at(s, i, "*/")) {
      --depth;
      i += 2;
    } else {
      ++i;
    }
  } while (depth > 0 && i < s.size());
  if (closed) *closed = depth == 0;
  return i < s.size() ? i : s.size();
}

// Whitespace and comments from s[i]: the index of the next token, or s.size().
// *closed = false when the input ends inside a block comment.
inline size_t skip_space(std::string_view s, size_t i, bool* closed = nullptr) {
  if (closed) *closed = true;
  for (;;) {
    while (i < s.size() && is_space(s[i])) ++i;
    if (starts_with_at(s, i, "--")) {
      i = skip_line_comment(s, i);
    } else if (starts_with_at(s, i, "/*")) {
      i = skip_block_comment(s, i, closed);
    } else {
      return i;
    }
  }
}

// How backslashes and doubled quotes behave inside a '...' literal.
enum class StringStyle {
  standard,  // '...', U&'...', N'...' (standard_conforming_strings on): '' is a quote
  escape,    // E'...' (and '...' with standard_conforming_strings off): \x and ''
  bits,      // B'...', X'...': the first quote ends the literal
};

// s[i] is the quote after a string literal's body: if the literal goes on
// ('a' <newline> 'b' is one literal 'ab', in the same style, also when the
// separating whitespace holds "--" comments but no block comment), the index
// of the continuing quote; otherwise std::string_view::npos.
inline size_t string_continuation(std::string_view s, size_t i) {
  size_t j = i + 1;
  bool newline = false;
  while (j < s.size() && !newline) {
    char c = s[j];
    if (c == ' ' || c == '\t' || c == '\f' || c == '\v') {
      ++j;
    } else if (is_newline(c)) {
      newline = true;
      ++j;
    } else if (starts_with_at(s, j, "--")) {
      j = skip_line_comment(s, j);
    } else {
      break;
    }
  }
  if (!newline) return std::string_view::npos;
  for (;;) {
    while (j < s.size() && is_space(s[j])) ++j;
    if (!starts_with_at(s, j, "--")) break;
    j = skip_line_comment(s, j);
    if (j == s.size()) break;  // "{comment}{newline}": a final comment is no separator
  }
  return j < s.size() && s[j] == '\'' ? j : std::string_view::npos;
}

// What skip_string saw in a literal's body.
struct StringNotes {
  bool backslash = false;  // a backslash anywhere
  // An escaping backslash right after a non-ASCII byte: in the client
  // encodings SJIS, BIG5, GBK, UHC and GB18030 that byte 0x5C may be the
  // second half of a character (the server converts to its own encoding
  // before scanning), so where the literal ends is not known.
  bool ambiguous_backslash = false;
};

// s[i] is the opening quote of a string literal: the index after its end,
// continuations included, or s.size() with *closed = false when unterminated.
inline size_t skip_string(std::string_view s, size_t i, StringStyle style, bool* closed = nullptr,
                          StringNotes* notes = nullptr) {
  ++i;  // the opening quote
  while (i < s.size()) {
    char c = s[i];
    if (c == '\\') {
      if (notes) {
        notes->backslash = true;
        if (style == StringStyle::escape && static_cast<unsigned char>(s[i - 1]) >= 0x80) {
          notes->ambiguous_backslash = true;
        }
      }
      i += style == StringStyle::escape ? 2 : 1;
    } else if (c == '\'') {
      if (style != StringStyle::bits && i + 1 < s.size() && s[i + 1] == '\'') {
        i += 2;
        continue;
      }
      size_t next = string_continuation(s, i);
      if (next == std::string_view::npos) {
        if (closed) *closed = true;
        return i + 1;
      }
      i = next + 1;
    } else {
      ++i;
    }
  }
  if (closed) *closed = false;
  return s.size();
}

// s[i] is the opening '"' of a quoted identifier: the index after the closing
// one ("" inside is a quote), or s.size() with *closed = false.
inline size_t skip_quoted_identifier(std::string_view s, size_t i, bool* closed = nullptr) {
  ++i;
  while (i < s.size()) {
    if (s[i] == '"') {
      if (i + 1 < s.size() && s[i + 1] == '"') {
        i += 2;
        continue;
      }
      if (closed) *closed = true;
      return i + 1;
    }
    ++i;
  }
  if (closed) *closed = false;
  return s.size();
}

// s[i] == '$' at a token start: if a dollar quote opens there ($$ or $tag$,
// where the tag follows identifier rules but holds no '$'), the index after
// the opening delimiter; otherwise npos ($1 is a parameter, a lone '$' a
// character of its own).
inline size_t dollar_quote_open(std::string_view s, size_t i) {
  size_t k = i + 1;
  if (k < s.size() && ident_start(s[k])) {
    while (k < s.size() && (ident_start(s[k]) || is_digit(s[k]))) ++k;
  }
  return k < s.size() && s[k] == '$' ? k + 1 : std::string_view::npos;
}

// The body of a dollar quote opened by `tag` (delimiters included) starts at
// s[i]: the index after the first occurrence of `tag`, or s.size() with
// *closed = false. Linear: the tag holds '$' only at both ends, so a partial
// match starting at one '$' ends by the next '$'.
inline size_t skip_dollar_body(std::string_view s, size_t i, std::string_view tag,
                               bool* closed = nullptr) {
  for (; i < s.size(); ++i) {
    if (s[i] != '$') continue;
    size_t k = 1;
    while (k < tag.size() && i + k < s.size() && s[i + k] == tag[k]) ++k;
    if (k == tag.size()) {
      if (closed) *closed = true;
      return i + k;
    }
  }
  if (closed) *closed = false;
  return s.size();
}

// One token of a query string. Operators come one character at a time (the
// classifiers look only at words and a few punctuation marks).
struct Token {
  enum class Kind {
    end,     // no more input
    error,   // an unterminated string, quoted identifier, dollar quote or comment
    word,    // a keyword or unquoted identifier
    quoted,  // "identifier" or U&"identifier"
    string,  // any string literal or dollar-quoted string
    number,  // a run of digits (".", exponents, "_" come as their own tokens)
    param,   // $1
    semicolon,
    lparen,
    rparen,
    comma,
    other,  // any other single character
  };
  Kind kind = Kind::end;
  std::string_view text;

  bool is(Kind k) const { return kind == k; }
  bool is_word(std::string_view lower_keyword) const {
    return kind == Kind::word && keyword_is(text, lower_keyword);
  }
};

// Splits a query string into tokens, the way the server's scanner does.
// `standard_strings`: standard_conforming_strings (on by default since 9.1);
// off makes '...' behave like E'...'.
class Scanner {
 public:
  explicit Scanner(std::string_view s, bool standard_strings = true)
      : s_(s), standard_strings_(standard_strings) {}

  Token next() {
    using K = Token::Kind;
    bool closed = true;
    i_ = skip_space(s_, i_, &closed);
    if (!closed) return make(K::error, i_);
    if (i_ >= s_.size()) return {K::end, s_.substr(s_.size())};
    const size_t start = i_;
    const char c = s_[i_];
    const char c1 = i_ + 1 < s_.size() ? s_[i_ + 1] : '\0';
    const char c2 = i_ + 2 < s_.size() ? s_[i_ + 2] : '\0';
    switch (c) {
      case ';': return single(K::semicolon);
      case '(': return single(K::lparen);
      case ')': return single(K::rparen);
      case ',': return single(K::comma);
      case '\'':
        return string_at(start, standard_strings_ ? StringStyle::standard : StringStyle::escape);
      case '"': return quoted_at(start, start);
      case '$': {
        size_t body = dollar_quote_open(s_, i_);
        if (body != std::string_view::npos) {
          i_ = skip_dollar_body(s_, body, s_.substr(start, body - start), &closed);
          return make(closed ? K::string : K::error, start);
        }
        if (is_digit(c1)) {
          ++i_;
          while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
          return make(K::param, start);
        }
        return single(K::other);
      }
      default: break;
    }
    if (ident_start(c)) {
      // A one-letter prefix glued to a quote: E'', B'', X'', U&'', U&"".
      if ((c == 'e' || c == 'E') && c1 == '\'') return string_at(start, StringStyle::escape, 1);
      if ((c == 'b' || c == 'B' || c == 'x' || c == 'X') && c1 == '\'') {
        return string_at(start, StringStyle::bits, 1);
      }
      if ((c == 'u' || c == 'U') && c1 == '&' && c2 == '\'') {
        return string_at(start, StringStyle::standard, 2);
      }
      if ((c == 'u' || c == 'U') && c1 == '&' && c2 == '"') return quoted_at(start, start + 2);
      ++i_;
      while (i_ < s_.size() && ident_cont(s_[i_])) ++i_;
      return make(K::word, start);
    }
    if (is_digit(c)) {
      while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
      return make(K::number, start);
    }
    return single(K::other);
  }

  // The next token, without consuming it.
  Token peek() const {
    Scanner copy = *this;
    return copy.next();
  }

  size_t pos() const { return i_; }
  // Whether a standard '...' literal held a backslash: its meaning (and so
  // where the literal ends) depends on standard_conforming_strings.
  bool saw_backslash_in_standard_string() const { return backslash_; }
  // Whether an escaping backslash followed a non-ASCII byte (StringNotes):
  // then where a literal ends depends on the client encoding.
  bool saw_ambiguous_backslash() const { return ambiguous_; }

 private:
  Token make(Token::Kind k, size_t start) const { return {k, s_.substr(start, i_ - start)}; }
  Token single(Token::Kind k) {
    ++i_;
    return make(k, i_ - 1);
  }
  Token string_at(size_t start, StringStyle style, size_t prefix = 0) {
    bool closed = true;
    StringNotes notes;
    i_ = skip_string(s_, start + prefix, style, &closed, &notes);
    if (notes.backslash && prefix == 0 && style == StringStyle::standard) backslash_ = true;
    if (notes.ambiguous_backslash) ambiguous_ = true;
    return make(closed ? Token::Kind::string : Token::Kind::error, start);
  }
  Token quoted_at(size_t start, size_t quote) {
    bool closed = true;
    i_ = skip_quoted_identifier(s_, quote, &closed);
    return make(closed ? Token::Kind::quoted : Token::Kind::error, start);
  }

  std::string_view s_;
  size_t i_ = 0;
  bool standard_strings_ = true;
  bool backslash_ = false;
  bool ambiguous_ = false;
};

}  // namespace pgmux::proto::detail
