// pgbouncer.ini -> pgmux TOML (`pgmux --convert-pgbouncer FILE`).
//
// The ini is read the way PgBouncer (1.18, what Debian ships) reads it:
// sections [pgbouncer], [databases], [users] and [peers]; whole-line comments
// starting with ';' or '#' (a ';' or '#' later in a line is part of the
// value); keys of letters, digits and "_.-*", or quoted ('name' or "name",
// "" for a double quote); the value runs to the end of the line.
// Connection strings in [databases] and [users] are key=value pairs separated
// by spaces; a value may be single-quoted ('' for a quote).
//
// Time settings are seconds, possibly fractional ("0.5" -> "500ms",
// "0" -> "0s"); a unit suffix as pgmux writes it (ms, s, min, h, d) is also
// accepted. Integers follow C strtol (0x.. hexadecimal, a leading 0 octal),
// as in PgBouncer. Booleans are integers (0 = off) or on/off, true/false,
// yes/no.
//
// The output is a complete pgmux configuration. Where PgBouncer's default
// differs from pgmux's (pool_mode = session, max_client_conn = 100,
// auth_type = md5, server_tls_sslmode = disable, listening on the unix socket
// in /tmp when listen_addr is unset) the PgBouncer value is written out, so the
// converted pooler behaves like the old one. Every setting that is not
// converted appears as a TOML comment:
//   # unsupported: KEY = VALUE (why)       pgmux has no such setting
//   # untranslatable: KEY = VALUE (why)    pgmux has the concept, not this value
// Relative paths are kept as written: pgmux resolves them against the
// directory of its config file, PgBouncer against its working directory.
#pragma once

#include <string>
#include <string_view>

namespace pgmux::conf {

struct ConvertResult {
  bool ok = false;
  std::string toml;   // the pgmux configuration, when ok
  std::string error;  // "<source>:<line>: reason" (no ":<line>" when the file cannot be read)
};

// `source` names the ini in error messages and in the output's header.
// Never throws.
ConvertResult convert_pgbouncer_ini(std::string_view ini_text, const std::string& source);

// Reads `path` and converts it; "<path>: cannot open: <strerror>" when it
// cannot be read. %include directives are not followed (listed as comments).
ConvertResult convert_pgbouncer_ini_file(const std::string& path);

}  // namespace pgmux::conf
