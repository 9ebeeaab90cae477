// hba_file (issue 5): pg_hba.conf-style rules decide who may log in and how:
// by address, user, database, TLS or not, client certificates; first match
// wins; reloadable; refusals look like wrong passwords.
#include <catch2/catch.hpp>

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;

namespace {

// `hba_path`: where the rules file is (written by the caller).
PgmuxConfig hba_config(const std::string& hba_path, const std::string& tls = {}) {
  PgmuxConfig c;
  c.pgmux = "pool_mode = \"transaction\"\n";
  c.rest = "[auth]\ntype = \"hba\"\nfile = \"@USERLIST@\"\nhba_file = \"" + hba_path + "\"\n\n" +
           database_section("app") + database_section("other", "dbname = \"app\"\n") + tls;
  c.userlist = plaintext_userlist();
  return c;
}

// Pgmux writes its own files; the hba file goes next to them before start.
struct HbaPgmux {
  TempDir staging;
  std::unique_ptr<Pgmux> mux;
  HbaPgmux(const std::string& hba_text, const std::string& tls = {}, const std::string& listen_host = "127.0.0.1") {
    write_file(staging.file("pgmux_hba.conf"), hba_text);
    PgmuxConfig c = hba_config(staging.file("pgmux_hba.conf"), tls);
    c.listen_host = listen_host;
    mux = std::make_unique<Pgmux>(c);
  }
  void rewrite(const std::string& hba_text) { write_file(staging.file("pgmux_hba.conf"), hba_text); }
};

}  // namespace

TEST_CASE("hba: rules by user, database and address; first match wins; reload", "[hba]") {
  HbaPgmux h(
      "# TYPE DATABASE USER ADDRESS METHOD\n"
      "host all md5_user 127.0.0.1/32 reject\n"
      "host other scram_user all reject\n"
      "host app scram_user 127.0.0.1/32 scram-sha-256\n"
      "host all all 10.0.0.0/8 trust\n"
      "host all all 0.0.0.0/0 md5\n");
  Pgmux& mux = *h.mux;
  {
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(c.get(), "SELECT current_user") == "scram_user");
  }
  const std::string refused_md5 = connect_error(mux.conninfo("app", "md5_user", "md5_pw"));
  CHECK_THAT(refused_md5, Contains("password authentication failed for user \"md5_user\""));
  CHECK_THAT(connect_error(mux.conninfo("other", "scram_user", "scram_pw")),
             Contains("password authentication failed"));
  // cancel_user falls through to the md5 rule (the 10/8 trust rule is not ours).
  {
    Conn c = connect(mux.conninfo("app", "cancel_user", "cancel_pw"));
    CHECK(scalar(c.get(), "SELECT current_user") == "cancel_user");
  }
  CHECK_THAT(connect_error(mux.conninfo("app", "cancel_user", "wrong")), Contains("password authentication failed"));
  // No local rule: the unix socket is refused.
  CHECK_THAT(connect_error(mux.unix_conninfo("app", "scram_user", "scram_pw")),
             Contains("password authentication failed"));
  CHECK_THAT(mux.log_text(), Contains("rejected (hba line 2)"));
  CHECK_THAT(mux.log_text(), Contains("no hba rule matches (local)"));

  // Reload: local trust first, md5_user allowed.
  h.rewrite("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n");
  mux.signal(SIGHUP);
  REQUIRE(wait_until([&] { return contains(mux.log_text(), "reload: "); }, 5s));
  {
    Conn c = connect(mux.unix_conninfo("app", "md5_user"));  // no password: trust
    CHECK(scalar(c.get(), "SELECT current_user") == "md5_user");
    Conn d = connect(mux.conninfo("other", "md5_user", "md5_pw"));
    CHECK(scalar(d.get(), "SELECT 1") == "1");
  }
  // A broken file is refused; the rules in force stay.
  h.rewrite("host all all 127.0.0.1/32 peer\n");
  mux.signal(SIGHUP);
  CHECK(wait_until([&] { return contains(mux.log_text(), "reload refused"); }, 5s));
  CHECK_THAT(mux.log_text(), Contains("pgmux_hba.conf:1"));
  {
    Conn c = connect(mux.unix_conninfo("app", "md5_user"));
    CHECK(scalar(c.get(), "SELECT 1") == "1");
  }
  mux.finish();
}

// peer (local lines): the OS user of the process at the other end of the
// unix socket must be the user name; no password is asked. The admin
// console, where this process's OS user is an admin, shows it.
TEST_CASE("hba: peer on unix sockets", "[hba]") {
  const passwd* pw = ::getpwuid(::geteuid());
  REQUIRE(pw);
  const std::string me = pw->pw_name;
  TempDir staging;
  write_file(staging.file("pgmux_hba.conf"), "local pgmux all peer\nlocal all all scram-sha-256\n"
                                             "host all all 127.0.0.1/32 scram-sha-256\n");
  PgmuxConfig c = hba_config(staging.file("pgmux_hba.conf"));
  c.rest += "\n[admin]\nusers = [\"" + me + "\", \"admin\"]\n";
  // Listed, as every user must be when there is a userlist (PgBouncer's
  // rule too); its password is never asked for.
  c.userlist += userlist_line("admin", "admin_pw") + userlist_line(me, "never_asked");
  Pgmux mux(c);
  {
    Conn console = connect(mux.unix_conninfo("pgmux", me));  // no password
    CHECK_THAT(scalar(console.get(), "SHOW VERSION"), Contains("pgmux"));
  }
  // Another user name over the same socket: refused like a wrong password,
  // with the reason in the log.
  CHECK_THAT(connect_error(mux.unix_conninfo("pgmux", "admin", "admin_pw")),
             Contains("password authentication failed for user \"admin\""));
  CHECK_THAT(mux.log_text(), Contains("peer authentication: the client runs as OS user \"" + me +
                                      "\", which may not log in as \"admin\" (hba line 1)"));
  // Other databases keep their password rule on the socket; TCP too.
  {
    Conn app = connect(mux.unix_conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(app.get(), "SELECT current_user") == "scram_user");
    Conn tcp = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
    CHECK_THAT(scalar(tcp.get(), "SHOW VERSION"), Contains("pgmux"));
  }
  mux.finish();
}

// map= with [auth] ident_file (PgBouncer's auth_ident_file): this process's
// OS user may log in as "admin" (a name line) and as any "ops_<me>" user (a
// regular expression), not as itself; a map the file lacks stops pgmux.
TEST_CASE("hba: peer with an ident map", "[hba]") {
  const passwd* pw = ::getpwuid(::geteuid());
  REQUIRE(pw);
  const std::string me = pw->pw_name;
  TempDir staging;
  write_file(staging.file("pgmux_hba.conf"), "local pgmux all peer map=ops\nhost all all 127.0.0.1/32 scram-sha-256\n");
  write_file(staging.file("pgmux_ident.conf"), "# MAP SYSTEM DATABASE\nops " + me + " admin\nops /^(.*)$ ops_\\1\n"
                                               "other " + me + " " + me + "\n");
  PgmuxConfig c = hba_config(staging.file("pgmux_hba.conf"));
  c.rest = replace_all(c.rest, "hba_file = ", "ident_file = \"" + staging.file("pgmux_ident.conf") + "\"\nhba_file = ");
  c.rest += "\n[admin]\nusers = [\"" + me + "\", \"admin\", \"ops_" + me + "\"]\n";
  c.userlist += userlist_line("admin", "admin_pw") + userlist_line(me, "never_asked") +
                userlist_line("ops_" + me, "never_asked");
  {
    Pgmux mux(c);
    Conn as_admin = connect(mux.unix_conninfo("pgmux", "admin"));  // no password
    CHECK_THAT(scalar(as_admin.get(), "SHOW VERSION"), Contains("pgmux"));
    Conn as_ops = connect(mux.unix_conninfo("pgmux", "ops_" + me));
    CHECK_THAT(scalar(as_ops.get(), "SHOW VERSION"), Contains("pgmux"));
    // The map has no line for logging in as oneself.
    CHECK_THAT(connect_error(mux.unix_conninfo("pgmux", me, "never_asked")),
               Contains("password authentication failed for user \"" + me + "\""));
    CHECK_THAT(mux.log_text(), Contains("which may not log in as \"" + me + "\" (map ops) (hba line 1)"));
    as_admin.reset();
    as_ops.reset();
    mux.finish();
  }
  // A map= the ident file does not have: refused at start, with the line.
  write_file(staging.file("pgmux_hba.conf"), "local pgmux all peer map=nosuch\n");
  TempDir dir;
  const auto& fx = fixture();
  write_file(dir.file("bad.toml"), "[auth]\ntype = \"hba\"\nhba_file = \"" + staging.file("pgmux_hba.conf") +
                                       "\"\nident_file = \"" + staging.file("pgmux_ident.conf") +
                                       "\"\n[databases.app]\nhost = \"" + fx.pg_host + "\"\n");
  const auto r = run_process({pgmux_bin(), "--config", dir.file("bad.toml"), "--check"}, {}, 20s);
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Contains("pgmux_hba.conf:1: map \"nosuch\" is not in"));
}

TEST_CASE("hba: hostssl, hostnossl and cert", "[hba][tls]") {
  Pki pki;
  const std::string crt = pki.issue("server", "localhost", "DNS:localhost,IP:127.0.0.1");
  const std::string client = pki.issue("client", "scram_user", "");
  const std::string tls = "\n[tls]\nmode = \"prefer\"\ncert = \"" + crt + "\"\nkey = \"" + Pki::key_of(crt) +
                          "\"\nca = \"" + pki.ca + "\"\n";
  HbaPgmux h(
      "hostnossl all md5_user all reject\n"
      "hostssl all scram_user all cert\n"
      "hostssl all cancel_user all scram-sha-256 clientcert=verify-ca\n"
      "hostssl all all all scram-sha-256\n"
      "host all all all md5\n",
      tls);
  Pgmux& mux = *h.mux;
  const std::string with_cert = "sslmode=require sslcert=" + client + " sslkey=" + Pki::key_of(client);
  {
    // cert: the certificate is the credential (no password sent).
    Conn c = connect(mux.conninfo("app", "scram_user", "", with_cert));
    CHECK(scalar(c.get(), "SELECT current_user") == "scram_user");
  }
  CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "scram_pw", "sslmode=require")),
             Contains("password authentication failed"));
  CHECK_THAT(mux.log_text(), Contains("no client certificate verified"));
  // md5_user: refused without TLS, scram-sha-256 with it.
  CHECK_THAT(connect_error(mux.conninfo("app", "md5_user", "md5_pw", "sslmode=disable")),
             Contains("password authentication failed"));
  {
    Conn c = connect(mux.conninfo("app", "md5_user", "md5_pw", "sslmode=require"));
    CHECK(scalar(c.get(), "SELECT current_user") == "md5_user");
  }
  // clientcert=verify-ca: a password and a certificate from the CA.
  CHECK_THAT(connect_error(mux.conninfo("app", "cancel_user", "cancel_pw", "sslmode=require")),
             Contains("password authentication failed"));
  {
    Conn c = connect(mux.conninfo("app", "cancel_user", "cancel_pw", with_cert));
    CHECK(scalar(c.get(), "SELECT current_user") == "cancel_user");
  }
  // Plaintext falls to the last rule.
  {
    Conn c = connect(mux.conninfo("app", "cancel_user", "cancel_pw", "sslmode=disable"));
    CHECK(scalar(c.get(), "SELECT 1") == "1");
  }
  mux.finish();
}

// cert with map=: a certificate whose common name is not a user name logs
// in as the user the ident map gives it.
TEST_CASE("hba: cert with an ident map", "[hba][tls]") {
  Pki pki;
  const std::string crt = pki.issue("server", "localhost", "DNS:localhost,IP:127.0.0.1");
  const std::string client = pki.issue("client", "app-server-1.example.com", "");
  TempDir staging;
  write_file(staging.file("ident.conf"), "certs /^app-server-[0-9]+\\.example\\.com$ scram_user\n");
  write_file(staging.file("pgmux_hba.conf"), "hostssl all all all cert map=certs\nhost all all all scram-sha-256\n");
  PgmuxConfig c = hba_config(staging.file("pgmux_hba.conf"),
                             "\n[tls]\nmode = \"prefer\"\ncert = \"" + crt + "\"\nkey = \"" + Pki::key_of(crt) +
                                 "\"\nca = \"" + pki.ca + "\"\n");
  c.rest = replace_all(c.rest, "hba_file = ", "ident_file = \"" + staging.file("ident.conf") + "\"\nhba_file = ");
  Pgmux mux(c);
  const std::string with_cert = "sslmode=require sslcert=" + client + " sslkey=" + Pki::key_of(client);
  {
    Conn ok = connect(mux.conninfo("app", "scram_user", "", with_cert));
    CHECK(scalar(ok.get(), "SELECT current_user") == "scram_user");
  }
  CHECK_THAT(connect_error(mux.conninfo("app", "md5_user", "md5_pw", with_cert)),
             Contains("password authentication failed for user \"md5_user\""));
  CHECK_THAT(mux.log_text(), Contains("client certificate common name \"app-server-1.example.com\" may not log in as "
                                      "\"md5_user\" (map certs)"));
  mux.finish();
  // [tls] mode = "verify-full" wants the common name to be the user; a
  // cert rule whose map allowed the name stands in for that check.
  c.rest = replace_all(c.rest, "mode = \"prefer\"", "mode = \"verify-full\"");
  Pgmux strict(c);
  {
    Conn ok = connect(strict.conninfo("app", "scram_user", "", with_cert));
    CHECK(scalar(ok.get(), "SELECT current_user") == "scram_user");
  }
  strict.finish();
}

// listen = "*" binds one dual-stack socket: IPv4 peers arrive as
// ::ffff:a.b.c.d and must still meet the IPv4 rules.
TEST_CASE("hba: IPv4 rules apply on a dual-stack listener", "[hba]") {
  HbaPgmux h(
      "host all md5_user 127.0.0.0/8 reject\n"
      "host all all all scram-sha-256\n",
      {}, "*");
  Pgmux& mux = *h.mux;
  CHECK_THAT(connect_error(mux.conninfo("app", "md5_user", "md5_pw")), Contains("password authentication failed"));
  CHECK_THAT(mux.log_text(), Contains("rejected (hba line 1)"));
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c.get(), "SELECT 1") == "1");
  c.reset();
  mux.finish();
}
