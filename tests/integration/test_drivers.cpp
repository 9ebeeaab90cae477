// Real drivers through pgmux in transaction mode (issue 3): asyncpg,
// psycopg 3, pgjdbc and pgx (Debian's python3-asyncpg, python3-psycopg,
// libpostgresql-jdbc-java and golang-github-jackc-pgx-v4-dev, installed by
// scripts/test) name every statement
// themselves and keep it for the life of their connection, while each
// transaction may run on another server connection. The workloads are in
// tests/integration/drivers/; each checks every answer and exits non-zero
// with the first wrong one.
#include <catch2/catch.hpp>

#include <functional>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;

namespace {

// Debian's interpreter, which has the packaged drivers (a python3 earlier
// in PATH, e.g. pyenv's, may not).
const char* const kPython = "/usr/bin/python3";

std::string drivers_dir() {
  const std::string fixture = PGMUX_FIXTURE_SCRIPT;
  return fixture.substr(0, fixture.rfind('/')) + "/drivers";
}

// The pgmux settings each workload runs under: pgmux's default statement
// cache; one so small that statements are evicted and prepared again all
// the time; and server_pipelining (waiting clients' requests sent behind
// others' on busy servers).
const char* const kVariants[] = {"max_prepared_statements = 200", "max_prepared_statements = 3",
                                 "server_pipelining = true"};

// A transaction pool of 2 for database "drv" (a scratch database owned by
// scram_user), with `variant`.
PgmuxConfig drivers_config(const ScratchDatabase& db, const std::string& variant) {
  PgmuxConfig cfg;
  cfg.pgmux = "pool_mode = \"transaction\"\ndefault_pool_size = 2\n" + variant + "\n";
  cfg.rest = auth_section("scram-sha-256") + "\n" + database_section("drv", "dbname = \"" + db.name() + "\"\n") +
             "\n[log]\nconnections = false\ndisconnections = false\n";
  cfg.userlist = plaintext_userlist();
  return cfg;
}

// For each variant, on a scratch database: pgmux, then `command(mux)`
// with a table-name tag appended; it must exit 0 and print `expect`.
void run_workload(std::string_view tag, const std::function<std::vector<std::string>(const Pgmux&)>& command,
                  const std::string& expect) {
  ScratchDatabase db(tag);
  for (const std::string variant : kVariants) {
    DYNAMIC_SECTION(variant) {
      Pgmux mux(drivers_config(db, variant));
      std::vector<std::string> argv = command(mux);
      argv.push_back("t" + unique_suffix());
      auto r = run_process(argv, {}, 180s);
      INFO(argv[0] << " " << argv[1] << " output:\n" << r.output);
      CHECK(r.exit_code == 0);
      CHECK_THAT(r.output, Contains(expect));
      mux.finish();
    }
  }
}

std::string dsn(const Pgmux& mux) {
  return "postgresql://scram_user:scram_pw@127.0.0.1:" + std::to_string(mux.port()) + "/drv";
}

}  // namespace

TEST_CASE("drivers: asyncpg over a transaction pool of 2", "[drivers][prepared]") {
  run_workload(
      "asyncpg",
      [](const Pgmux& mux) { return std::vector<std::string>{kPython, drivers_dir() + "/asyncpg_workload.py", dsn(mux)}; },
      "connections x 25 rounds ok");
}

TEST_CASE("drivers: psycopg 3 over a transaction pool of 2", "[drivers][prepared]") {
  run_workload(
      "psycopg",
      [](const Pgmux& mux) {
        return std::vector<std::string>{kPython, drivers_dir() + "/psycopg_workload.py",
                                        mux.conninfo("drv", "scram_user", "scram_pw")};
      },
      "connections x 30 rounds ok");
}

// prepareThreshold=1: pgjdbc prepares every statement on the server under
// its own name (its ROLLBACK after an error too), runs batches as one
// pipeline and reads a result with a fetch size through a named portal.
TEST_CASE("drivers: pgjdbc over a transaction pool of 2", "[drivers][prepared]") {
  run_workload(
      "pgjdbc",
      [](const Pgmux& mux) {
        // Java's single-file launcher compiles the workload in memory.
        return std::vector<std::string>{"java", "-cp", "/usr/share/java/postgresql.jar",
                                        drivers_dir() + "/JdbcWorkload.java",
                                        "jdbc:postgresql://127.0.0.1:" + std::to_string(mux.port()) +
                                            "/drv?user=scram_user&password=scram_pw&prepareThreshold=1"};
      },
      "connections x 30 rounds ok");
}

// pgx v4 (its statement cache prepares every query under its own name),
// built from Debian's Go sources in GOPATH mode: batches, binary COPY, an
// explicitly named statement used across transactions.
TEST_CASE("drivers: pgx over a transaction pool of 2", "[drivers][prepared]") {
  static TempDir build;  // once per process: the sections share the binary
  static const std::string binary = [] {
    const std::string out = build.file("pgx_workload");
    auto r = run_process({"go", "build", "-o", out, drivers_dir() + "/pgx_workload.go"},
                         {{"GO111MODULE", "off"}, {"GOPATH", "/usr/share/gocode"}, {"GOCACHE", build.file("gocache")},
                          {"HOME", build.path()}},
                         300s);
    INFO("go build:\n" << r.output);
    REQUIRE(r.exit_code == 0);
    return out;
  }();
  run_workload(
      "pgx",
      [](const Pgmux& mux) { return std::vector<std::string>{binary, dsn(mux)}; },
      "connections x 30 rounds ok");
}
