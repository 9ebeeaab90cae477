// auth_query (issue 5): secrets of users missing from the userlist, looked up
// in PostgreSQL as [auth] query_user; SCRAM pass-through with those secrets;
// expired passwords; unknown users; a client's search_path cannot redirect
// the lookup; concurrent logins; the short cache.
#include <catch2/catch.hpp>

#include <future>
#include <thread>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;

namespace {

// Roles of the test's own on the fixture's primary, dropped at the end.
struct Roles {
  std::string suffix = unique_suffix();
  std::string auth = "aq_auth_" + suffix, user = "aq_user_" + suffix, old = "aq_old_" + suffix,
              victim = "aq_victim_" + suffix, schema = "aq_evil_" + suffix;
  Roles() {
    Conn su = superuser();
    exec(su.get(), "SET password_encryption = 'scram-sha-256'");
    exec(su.get(), "CREATE ROLE " + auth + " LOGIN SUPERUSER PASSWORD 'auth_pw'");
    exec(su.get(), "CREATE ROLE " + user + " LOGIN PASSWORD 'user_pw'");
    exec(su.get(), "CREATE ROLE " + old + " LOGIN PASSWORD 'old_pw' VALID UNTIL '2001-01-01'");
    exec(su.get(), "CREATE ROLE " + victim + " LOGIN PASSWORD '" + unique_suffix() + "-unguessable'");
    for (const auto& r : {user, old, victim}) exec(su.get(), "GRANT CONNECT ON DATABASE postgres TO " + r);
  }
  ~Roles() {
    Conn su = connect_raw(superuser_conninfo());
    if (PQstatus(su.get()) != CONNECTION_OK) return;
    try_exec(su.get(), "DROP SCHEMA IF EXISTS " + schema + " CASCADE");
    for (const auto& r : {user, old, victim, auth, "aq_tmp_" + suffix}) {
      try_exec(su.get(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + r + "'");
      try_exec(su.get(), "DROP ROLE IF EXISTS " + r);
    }
  }
};

PgmuxConfig aq_config(const Roles& r, const std::string& query_line = {}) {
  PgmuxConfig c;
  c.pgmux = "pool_mode = \"transaction\"\n";
  c.rest = "[auth]\ntype = \"scram-sha-256\"\nfile = \"@USERLIST@\"\nquery_user = \"" + r.auth + "\"\n" +
           (query_line.empty() ? "query = \"" + std::string(
                                     "SELECT usename, CASE WHEN valuntil IS NULL OR valuntil > pg_catalog.now() "
                                     "THEN passwd END FROM pg_catalog.pg_shadow WHERE usename = $1") + "\"\n"
                               : query_line) +
           "\n[databases.postgres]\nhost = \"@PG_HOST@\"\nport = @PG_PORT@\n";
  // Only the lookup role is in the userlist.
  c.userlist = userlist_line(r.auth, "auth_pw");
  return c;
}

}  // namespace

TEST_CASE("auth_query: login, SCRAM pass-through, wrong password, unknown and expired users", "[auth_query]") {
  Roles r;
  Pgmux mux(aq_config(r));
  {
    Conn c = connect(mux.conninfo("postgres", r.user, "user_pw"));
    CHECK(scalar(c.get(), "SELECT current_user") == r.user);
    // Transaction pooling: the server login used the keys from this login.
    CHECK(scalar(c.get(), "SELECT 1") == "1");
  }
  const std::string wrong = connect_error(mux.conninfo("postgres", r.user, "not_it"));
  const std::string unknown = connect_error(mux.conninfo("postgres", "aq_nobody_" + r.suffix, "x"));
  const std::string expired = connect_error(mux.conninfo("postgres", r.old, "old_pw"));
  CHECK_THAT(wrong, Contains("password authentication failed for user \"" + r.user + "\""));
  // The same answer for all three (only the user name differs).
  CHECK(replace_all(unknown, "aq_nobody_" + r.suffix, r.user) == wrong);
  CHECK(replace_all(expired, r.old, r.user) == wrong);
  CHECK_THAT(mux.log_text(), Contains("(auth query)"));
  // Twenty logins at once: all served (one lookup, shared).
  std::vector<std::future<bool>> logins;
  for (int i = 0; i < 20; ++i)
    logins.push_back(std::async(std::launch::async, [&] {
      Conn c = connect_raw(mux.conninfo("postgres", r.user, "user_pw"));
      return PQstatus(c.get()) == CONNECTION_OK && try_exec(c.get(), "SELECT 1").ok;
    }));
  int ok = 0;
  for (auto& f : logins) ok += f.get();
  CHECK(ok == 20);
  // Different users at once: more lookups than the lookup pool has
  // connections (a released connection goes straight to the next lookup).
  {
    Conn su = superuser();
    exec(su.get(), "SET password_encryption = 'scram-sha-256'");
    for (int i = 0; i < 6; ++i)
      exec(su.get(), "CREATE ROLE aq_many" + std::to_string(i) + "_" + r.suffix + " LOGIN PASSWORD 'many_pw'");
  }
  std::vector<std::future<std::string>> many;
  for (int i = 0; i < 6; ++i)
    many.push_back(std::async(std::launch::async, [&, i] {
      Conn c = connect_raw(mux.conninfo("postgres", "aq_many" + std::to_string(i) + "_" + r.suffix, "many_pw"));
      return PQstatus(c.get()) == CONNECTION_OK ? std::string() : std::string(PQerrorMessage(c.get()));
    }));
  for (auto& f : many) CHECK(f.get() == "");
  {
    Conn su = superuser();
    for (int i = 0; i < 6; ++i) try_exec(su.get(), "DROP ROLE aq_many" + std::to_string(i) + "_" + r.suffix);
  }
  mux.finish();
}

TEST_CASE("auth_query: a client's search_path cannot redirect the lookup", "[auth_query]") {
  Roles r;
  // A schema whose pg_shadow says every role has the password "evil_pw".
  std::string verifier;
  {
    Conn su = superuser();
    exec(su.get(), "SET password_encryption = 'scram-sha-256'");
    exec(su.get(), "CREATE ROLE aq_tmp_" + r.suffix + " PASSWORD 'evil_pw'");
    verifier = scalar(su.get(), "SELECT rolpassword FROM pg_authid WHERE rolname = 'aq_tmp_" + r.suffix + "'");
    exec(su.get(), "CREATE SCHEMA " + r.schema);
    exec(su.get(), "CREATE VIEW " + r.schema + ".pg_shadow AS SELECT rolname::name AS usename, '" + verifier +
                       "'::text AS passwd, NULL::timestamptz AS valuntil FROM pg_catalog.pg_roles");
    exec(su.get(), "GRANT USAGE ON SCHEMA " + r.schema + " TO PUBLIC");
    exec(su.get(), "GRANT SELECT ON " + r.schema + ".pg_shadow TO PUBLIC");
  }
  // An unqualified query, as many PgBouncer setups have.
  Pgmux mux(aq_config(r, "query = \"SELECT usename, passwd FROM pg_shadow WHERE usename = $1\"\n"));
  const std::string evil_path = "options='-c search_path=" + r.schema + ",pg_catalog'";
  CHECK_THAT(connect_error(mux.conninfo("postgres", r.victim, "evil_pw", evil_path)),
             Contains("password authentication failed"));
  CHECK_FALSE(contains(mux.log_text(), "login ok: user \"" + r.victim + "\""));
  // The same startup options do not get in the way of a real login.
  Conn c = connect(mux.conninfo("postgres", r.user, "user_pw", evil_path));
  // ...and the client's session has its search_path (the first schema is
  // the evil one), replayed on whichever server it lands on.
  CHECK(scalar(c.get(), "SHOW search_path") == r.schema + ",pg_catalog");
  CHECK(scalar(c.get(), "SELECT pg_catalog.current_schema()") == r.schema);
  c.reset();
  mux.finish();
}

// With two workers the cache is one: the first client (kept connected, so
// the next goes to the other worker) looked the user up on one worker, the
// next login is checked on the other against the same answer.
TEST_CASE("auth_query: answers are cached briefly; a changed password applies after that", "[auth_query][workers]") {
  int workers = 1;
  SECTION("one worker") {}
  SECTION("two workers share the cache") { workers = 2; }
  Roles r;
  PgmuxConfig cfg = aq_config(r);
  cfg.pgmux += "workers = " + std::to_string(workers) + "\n";
  Pgmux mux(cfg);
  Conn first = connect(mux.conninfo("postgres", r.user, "user_pw"));
  {
    Conn su = superuser();
    exec(su.get(), "SET password_encryption = 'scram-sha-256'");
    exec(su.get(), "ALTER ROLE " + r.user + " PASSWORD 'new_pw'");
  }
  auto t0 = Clock::now();
  // Until the cache entry expires pgmux still checks the old verifier.
  CHECK_FALSE(connect_error(mux.conninfo("postgres", r.user, "new_pw")).empty());
  CHECK(seconds_since(t0) < 5);
  first.reset();
  std::this_thread::sleep_for(5500ms);
  Conn c = connect(mux.conninfo("postgres", r.user, "new_pw"));
  CHECK(scalar(c.get(), "SELECT current_user") == r.user);
  c.reset();
  mux.finish();
}

TEST_CASE("auth_query: the lookup role failing gives a clear error, not a hang", "[auth_query]") {
  Roles r;
  PgmuxConfig c = aq_config(r);
  c.userlist = userlist_line(r.auth, "wrong_auth_pw");
  Pgmux mux(c);
  auto t0 = Clock::now();
  CHECK_THAT(connect_error(mux.conninfo("postgres", r.user, "user_pw")), Contains("authentication lookup failed"));
  CHECK(seconds_since(t0) < 10);
  CHECK_THAT(mux.log_text(), Contains("auth query for user"));
  mux.finish();
}

// PgBouncer's auth_dbname and per-database auth_user / auth_query: the lookup
// function lives in one database only, and a role without superuser runs it
// there for logins to every entry; another entry overrides the role, the
// query and the database; an entry without a lookup knows only the userlist.
TEST_CASE("auth_query: query_database and per-database auth_query_user, auth_query", "[auth_query]") {
  Roles r;
  const std::string lookup = "aq_lookup_" + r.suffix;
  // Dropped after the database (which takes the role's privileges in it).
  struct DropLookupRole {
    std::string role;
    ~DropLookupRole() {
      Conn su = connect_raw(superuser_conninfo());
      if (PQstatus(su.get()) != CONNECTION_OK) return;
      try_exec(su.get(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '" + role + "'");
      try_exec(su.get(), "DROP ROLE IF EXISTS " + role);
    }
  } drop_lookup_role{lookup};
  ScratchDatabase authdb("aqdb");
  {
    Conn su = superuser();
    exec(su.get(), "CREATE ROLE " + lookup + " LOGIN PASSWORD 'lookup_pw'");
    exec(su.get(), "GRANT CONNECT ON DATABASE " + authdb.name() + " TO " + lookup);
    Conn in_db = superuser(authdb.name());
    exec(in_db.get(),
         "CREATE FUNCTION public.pgmux_lookup(text) RETURNS TABLE (usename name, passwd text) "
         "LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$ SELECT usename, CASE WHEN valuntil "
         "IS NULL OR valuntil > now() THEN passwd END FROM pg_catalog.pg_shadow WHERE usename = $1 $$");
    exec(in_db.get(), "REVOKE ALL ON FUNCTION public.pgmux_lookup(text) FROM PUBLIC");
    exec(in_db.get(), "GRANT EXECUTE ON FUNCTION public.pgmux_lookup(text) TO " + lookup);
  }
  auto lookup_databases = [&](const std::string& role) {
    Conn su = superuser();
    return scalar(su.get(), "SELECT coalesce(string_agg(DISTINCT datname, ','), '') FROM pg_stat_activity "
                            "WHERE usename = '" + role + "'");
  };

  SECTION("one lookup database for all entries, an entry with its own lookup") {
    PgmuxConfig c;
    c.pgmux = "pool_mode = \"transaction\"\n";
    c.rest = "[auth]\ntype = \"scram-sha-256\"\nfile = \"@USERLIST@\"\nquery_user = \"" + lookup +
             "\"\nquery = \"SELECT * FROM public.pgmux_lookup($1)\"\nquery_database = \"authdb\"\n" +
             database_section("postgres") + database_section("authdb", "dbname = \"" + authdb.name() + "\"\n") +
             // Its own lookup: the superuser's, with the catalog query, in
             // the client's database (no pgmux_lookup there).
             database_section("pg2", "dbname = \"postgres\"\nauth_query_user = \"" + r.auth +
                                          "\"\nauth_query = \"SELECT usename, passwd FROM pg_catalog.pg_shadow "
                                          "WHERE usename = $1\"\nauth_query_database = \"\"\n");
    c.userlist = userlist_line(lookup, "lookup_pw") + userlist_line(r.auth, "auth_pw");
    Pgmux mux(c);
    {
      Conn app = connect(mux.conninfo("postgres", r.user, "user_pw"));
      CHECK(scalar(app.get(), "SELECT current_user || '@' || current_database()") == r.user + "@postgres");
    }
    // The lookup connection sits in the auth database, nowhere else.
    CHECK(lookup_databases(lookup) == authdb.name());
    CHECK_THAT(connect_error(mux.conninfo("postgres", r.user, "not_it")),
               Contains("password authentication failed for user \"" + r.user + "\""));
    CHECK_THAT(connect_error(mux.conninfo("postgres", r.old, "old_pw")),
               Contains("password authentication failed for user \"" + r.old + "\""));
    {
      Conn pg2 = connect(mux.conninfo("pg2", r.user, "user_pw"));
      CHECK(scalar(pg2.get(), "SELECT current_user") == r.user);
    }
    CHECK(lookup_databases(r.auth) == "postgres");
    CHECK(lookup_databases(lookup) == authdb.name());
    mux.finish();
  }

  SECTION("without [auth] query only the entries with auth_query_user look users up") {
    PgmuxConfig c;
    c.pgmux = "pool_mode = \"transaction\"\n";
    c.rest = "[auth]\ntype = \"scram-sha-256\"\nfile = \"@USERLIST@\"\n" +
             database_section("postgres", "auth_query_user = \"" + lookup +
                                              "\"\nauth_query = \"SELECT * FROM public.pgmux_lookup($1)\"\n"
                                              "auth_query_database = \"authdb\"\n") +
             database_section("authdb", "dbname = \"" + authdb.name() + "\"\n") +
             database_section("noq", "dbname = \"postgres\"\n");
    c.userlist = userlist_line(lookup, "lookup_pw");
    Pgmux mux(c);
    {
      Conn app = connect(mux.conninfo("postgres", r.user, "user_pw"));
      CHECK(scalar(app.get(), "SELECT current_user") == r.user);
    }
    CHECK_THAT(connect_error(mux.conninfo("noq", r.user, "user_pw")),
               Contains("password authentication failed for user \"" + r.user + "\""));
    CHECK_THAT(mux.log_text(), Contains("unknown user \"" + r.user + "\""));
    CHECK(lookup_databases(lookup) == authdb.name());
    mux.finish();
  }
}

// With the "*" entry and no query_database the client picks the database the
// lookup runs in. An answer read in one database must not serve logins to
// another: here a database whose lookup function forges the victim's
// secret, then, within the cache period, a login to a database with the real
// lookup.
TEST_CASE("auth_query: answers read in one database never serve another", "[auth_query]") {
  Roles r;
  ScratchDatabase forged("aqforged"), real("aqreal");
  std::string evil_verifier;
  {
    Conn su = superuser();
    exec(su.get(), "SET password_encryption = 'scram-sha-256'");
    exec(su.get(), "CREATE ROLE aq_tmp_" + r.suffix + " PASSWORD 'evil_pw'");
    evil_verifier = scalar(su.get(), "SELECT rolpassword FROM pg_authid WHERE rolname = 'aq_tmp_" + r.suffix + "'");
    for (const ScratchDatabase* d : {&forged, &real}) exec(su.get(), "GRANT CONNECT ON DATABASE " + d->name() + " TO " + r.victim);
    Conn f = superuser(forged.name());
    exec(f.get(), "CREATE FUNCTION public.pgmux_lookup(text) RETURNS TABLE (usename name, passwd text) LANGUAGE sql "
                  "AS $$ SELECT $1::name, '" + evil_verifier + "'::text $$");
    Conn g = superuser(real.name());
    exec(g.get(), "CREATE FUNCTION public.pgmux_lookup(text) RETURNS TABLE (usename name, passwd text) LANGUAGE sql "
                  "SECURITY DEFINER SET search_path = pg_catalog AS $$ SELECT usename, passwd FROM "
                  "pg_catalog.pg_shadow WHERE usename = $1 $$");
  }
  PgmuxConfig c;
  c.pgmux = "pool_mode = \"transaction\"\n";
  c.rest = "[auth]\ntype = \"scram-sha-256\"\nfile = \"@USERLIST@\"\nquery_user = \"" + r.auth +
           "\"\nquery = \"SELECT * FROM public.pgmux_lookup($1)\"\n" + database_section("\"*\"");
  c.userlist = userlist_line(r.auth, "auth_pw");
  Pgmux mux(c);
  // pgmux accepts the forged password for the forged database (its lookup
  // said so, and a pool is made for the login; PostgreSQL then refuses the
  // server login)...
  (void)connect_error(mux.conninfo(forged.name(), r.victim, "evil_pw"));
  CHECK_THAT(mux.log_text(), Contains("pool " + forged.name() + "/" + r.victim + " created"));
  // ...but not for the other database, whose own lookup runs.
  CHECK_THAT(connect_error(mux.conninfo(real.name(), r.victim, "evil_pw")),
             Contains("password authentication failed for user \"" + r.victim + "\""));
  CHECK_FALSE(contains(mux.log_text(), "pool " + real.name() + "/" + r.victim + " created"));
  // Names that lead nowhere, tried before any login: their lookup pools
  // do not stay (10 s after their last use).
  const std::string nowhere = "aq_nowhere_" + r.suffix;
  for (int i = 0; i < 3; ++i)
    (void)connect_error(mux.conninfo(nowhere + std::to_string(i), r.victim, "evil_pw"));
  CHECK(wait_until(
      [&] {
        const std::string log = mux.log_text();
        for (int i = 0; i < 3; ++i)
          if (!contains(log, "auth query pool " + nowhere + std::to_string(i) + "/" + r.auth + " dropped: unused"))
            return false;
        return true;
      },
      20s, 250ms));
  mux.finish();
}
