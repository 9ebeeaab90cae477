// pgbouncer.ini -> pgmux TOML (conf::convert_pgbouncer_ini) on arbitrary
// ini text.
//
// Properties:
//  - never throws (documented); ok <=> no error, and the error names the
//    source;
//  - a successful conversion's TOML is valid TOML for conf::load_string (no
//    syntax error; settings pgmux refuses may still fail to load, which the
//    output says in "# refused:" comments).
#include <cstdint>
#include <string>
#include <string_view>

#include "conf/config.hpp"
#include "conf/pgbouncer_ini.hpp"
#include "fuzz_check.hpp"

using namespace pgmux::conf;

namespace {

// "<source>:<line>: syntax error: ..." or "<source>: syntax error: ..."
bool is_syntax_error(const std::string& error, const std::string& source) {
  if (error.rfind(source, 0) != 0) return false;
  size_t i = source.size();
  if (i < error.size() && error[i] == ':') {
    ++i;
    while (i < error.size() && error[i] >= '0' && error[i] <= '9') ++i;
  }
  return error.compare(i, 15, ": syntax error:") == 0 || error.compare(i, 14, " syntax error:") == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view ini(reinterpret_cast<const char*>(data), size);
  const ConvertResult r = convert_pgbouncer_ini(ini, "fuzz.ini");
  FUZZ_CHECK(r.ok == r.error.empty());
  if (!r.ok) {
    FUZZ_CHECK(r.error.rfind("fuzz.ini", 0) == 0);
    FUZZ_CHECK(r.error.find('\n') == std::string::npos);
  } else {
    const LoadResult l = load_string(r.toml, "out.toml", "/srv/pgmux");
    if (is_syntax_error(l.error, "out.toml")) {
      std::fprintf(stderr, "converted TOML does not parse: %s\n--- TOML:\n%s\n", l.error.c_str(),
                   r.toml.c_str());
      FUZZ_CHECK(!is_syntax_error(l.error, "out.toml"));
    }
  }
  return 0;
}
