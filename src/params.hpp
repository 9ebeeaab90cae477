// Session parameters (GUCs) as name/value lists. GUC names are
// case-insensitive ("DateStyle" == "datestyle").
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pool/pool.hpp"

namespace pgmux {

bool param_name_equal(std::string_view a, std::string_view b);
std::string* find_param(pool::Params& p, std::string_view name);
const std::string* find_param(const pool::Params& p, std::string_view name);
void set_param(pool::Params& p, std::string_view name, std::string_view value);
// Names a client may set at startup: letters, digits, '_' and '.'.
bool valid_parameter_name(std::string_view name);
// Server-reported parameters that cannot (or must not) be SET by pgmux.
bool read_only_parameter(std::string_view name);
// libpq's "options": "-c name=value" / "--name=value" separated by
// whitespace, backslash escapes a character. Anything else is refused.
bool parse_options_string(std::string_view options,
                          std::vector<std::pair<std::string, std::string>>& out,
                          std::string& error);
// `v` as an E'...' string literal: the same meaning whatever
// standard_conforming_strings is.
void append_escaped_literal(std::string& s, std::string_view v);
// "name" quoted as an SQL identifier.
std::string quote_identifier(std::string_view name);
// A statement that gives `name` the value `value` as a startup packet would
// (pg_catalog.set_config with E-quoted literals).
std::string set_statement(std::string_view name, std::string_view value);
// RESET of a (validated) parameter name, each dotted part quoted.
std::string reset_statement(std::string_view name);

}  // namespace pgmux
