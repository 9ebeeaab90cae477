#include "src/params.hpp"

#include <strings.h>

namespace pgmux {

bool param_name_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string* find_param(pool::Params& p, std::string_view name) {
  for (auto& [k, v] : p)
    if (param_name_equal(k, name)) return &v;
  return nullptr;
}

const std::string* find_param(const pool::Params& p, std::string_view name) {
  for (auto& [k, v] : p)
    if (param_name_equal(k, name)) return &v;
  return nullptr;
}

void set_param(pool::Params& p, std::string_view name, std::string_view value) {
  if (auto* v = find_param(p, name)) *v = value;
  else p.emplace_back(std::string(name), std::string(value));
}

bool valid_parameter_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

bool read_only_parameter(std::string_view name) {
  static constexpr std::string_view kReadOnly[] = {
      "server_version", "server_encoding", "integer_datetimes", "is_superuser",
      "session_authorization", "in_hot_standby", "scram_iterations"};
  for (auto ro : kReadOnly)
    if (param_name_equal(name, ro)) return true;
  return false;
}

bool parse_options_string(std::string_view options,
                          std::vector<std::pair<std::string, std::string>>& out,
                          std::string& error) {
  // Split into words on unescaped whitespace.
  std::vector<std::string> words;
  std::string cur;
  bool have = false;
  for (size_t i = 0; i < options.size(); ++i) {
    char c = options[i];
    if (c == '\\' && i + 1 < options.size()) {
      cur.push_back(options[++i]);
      have = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (have) words.push_back(std::move(cur));
      cur.clear();
      have = false;
    } else {
      cur.push_back(c);
      have = true;
    }
  }
  if (have) words.push_back(std::move(cur));

  auto add = [&](const std::string& setting) {
    auto eq = setting.find('=');
    if (eq == std::string::npos || eq == 0) {
      error = "unsupported startup option: \"" + setting + "\" (expected name=value)";
      return false;
    }
    std::string name = setting.substr(0, eq);
    for (char& ch : name)
      if (ch == '-') ch = '_';
    if (!valid_parameter_name(name)) {
      error = "unsupported startup option: \"" + setting + "\"";
      return false;
    }
    out.emplace_back(std::move(name), setting.substr(eq + 1));
    return true;
  };
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "-c") {
      if (i + 1 >= words.size()) {
        error = "unsupported startup option: \"-c\" without a setting";
        return false;
      }
      if (!add(words[++i])) return false;
    } else if (w.rfind("-c", 0) == 0 && w.size() > 2) {
      if (!add(w.substr(2))) return false;
    } else if (w.rfind("--", 0) == 0 && w.size() > 2) {
      if (!add(w.substr(2))) return false;
    } else {
      error = "unsupported startup option: \"" + w + "\" (only -c name=value is supported)";
      return false;
    }
  }
  return true;
}

std::string quote_identifier(std::string_view name) {
  std::string s = "\"";
  for (char c : name) {
    if (c == '"') s.push_back('"');
    s.push_back(c);
  }
  s.push_back('"');
  return s;
}

void append_escaped_literal(std::string& s, std::string_view v) {
  s.append("E'");
  for (char c : v) {
    if (c == '\'' || c == '\\') s.push_back(c);
    s.push_back(c);
  }
  s.push_back('\'');
}

std::string set_statement(std::string_view name, std::string_view value) {
  // set_config takes the value as a string, exactly as a startup packet or
  // PGOPTIONS gives it: "SET search_path TO 'a,b'" would name one schema
  // "a,b", set_config('search_path', 'a,b') names two.
  std::string s = "SELECT pg_catalog.set_config(";
  append_escaped_literal(s, name);
  s.append(", ");
  append_escaped_literal(s, value);
  s.append(", false)");
  return s;
}

std::string reset_statement(std::string_view name) {
  std::string s = "RESET ";
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    s += quote_identifier(name.substr(start, dot == std::string_view::npos ? name.npos : dot - start));
    if (dot == std::string_view::npos) break;
    s += '.';
    start = dot + 1;
  }
  return s;
}

}  // namespace pgmux
