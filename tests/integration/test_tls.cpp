// TLS (issue 5): clients to pgmux ([tls]) and pgmux to PostgreSQL
// ([server_tls]), with certificates made by the test with the openssl
// command; channel binding (SCRAM-SHA-256-PLUS) both ways; certificate reload
// on SIGHUP; bytes smuggled after SSLRequest.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;

namespace {

PgmuxConfig tls_config(const std::string& mode, const std::string& cert, const std::string& key,
                       const std::string& ca = {}, std::string extra_rest = {}) {
  PgmuxConfig c;
  c.pgmux = "pool_mode = \"transaction\"\n";
  c.rest = auth_section("scram-sha-256") + "\n" + database_section("app") + "\n[tls]\nmode = \"" + mode +
           "\"\ncert = \"" + cert + "\"\nkey = \"" + key + "\"\n" +
           (ca.empty() ? "" : "ca = \"" + ca + "\"\n") + extra_rest;
  c.userlist = plaintext_userlist() + userlist_line("admin", "admin_pw");
  c.rest += "\n[admin]\nusers = [\"admin\"]\n";
  return c;
}

// The subject of the certificate pgmux presents (openssl s_client speaks
// PostgreSQL's SSLRequest).
std::string presented_subject(int port) {
  auto r = run_process({"sh", "-c",
                        "echo | openssl s_client -starttls postgres -connect 127.0.0.1:" + std::to_string(port) +
                            " 2>/dev/null | openssl x509 -noout -subject"},
                       {}, 20s);
  return r.output;
}

// 40 MB through TLS: every byte arrives, in order (reads stop and resume
// with plaintext still inside OpenSSL when the other side cannot keep up).
void check_big_result(PGconn* c) {
  Result r(PQexec(c, "SELECT i, md5(i::text) || repeat('x', 800) FROM generate_series(1, 50000) i"));
  REQUIRE(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
  REQUIRE(PQntuples(r.get()) == 50000);
  bool ok = true;
  for (int i = 0; i < 50000 && ok; i += 997) {
    ok = std::atoi(PQgetvalue(r.get(), i, 0)) == i + 1 && PQgetlength(r.get(), i, 1) == 832;
  }
  CHECK(ok);
  CHECK(std::atoi(PQgetvalue(r.get(), 49999, 0)) == 50000);
}

}  // namespace

TEST_CASE("tls: libpq and psql through pgmux: require, verify-full, wrong CA, channel_binding=require",
          "[tls]") {
  Pki pki;
  const std::string crt = pki.issue("server", "localhost", "DNS:localhost,IP:127.0.0.1");
  Pgmux mux(tls_config("prefer", crt, pki.key_of(crt)));
  {
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw", "sslmode=require"));
    CHECK(PQsslInUse(c.get()) == 1);
    CHECK(std::string(PQsslAttribute(c.get(), "protocol")) >= "TLSv1.2");
    CHECK(scalar(c.get(), "SELECT 40 + 2") == "42");
    check_big_result(c.get());
  }
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    INFO("host " << host);
    Conn c = connect(replace_all(mux.conninfo("app", "scram_user", "scram_pw",
                                              "sslmode=verify-full sslrootcert=" + pki.ca),
                                 "host='127.0.0.1'", "host='" + host + "'"));
    CHECK(PQsslInUse(c.get()) == 1);
  }
  CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "scram_pw",
                                        "sslmode=verify-full sslrootcert=" + pki.other_ca)),
             Contains("certificate verify failed"));
  {
    // SHOW CLIENTS says which clients use TLS (PgBouncer's tls column).
    Conn admin = connect(mux.conninfo("pgmux", "admin", "admin_pw", "sslmode=require"));
    Result r(PQexec(admin.get(), "SHOW CLIENTS"));
    const int tls_col = PQfnumber(r.get(), "tls");
    REQUIRE(tls_col >= 0);
    CHECK_THAT(std::string(PQgetvalue(r.get(), 0, tls_col)), Contains("TLSv1."));
  }
  {
    // SCRAM-SHA-256-PLUS: libpq checks the binding to pgmux's certificate.
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw", "sslmode=require channel_binding=require"));
    CHECK(scalar(c.get(), "SELECT 1") == "1");
  }
  {
    // Plaintext is still fine with mode = prefer.
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw", "sslmode=disable"));
    CHECK(PQsslInUse(c.get()) == 0);
    CHECK(scalar(c.get(), "SELECT 1") == "1");
  }
  {
    const auto& fx = fixture();
    auto r = run_process({fx.pg_bin + "/psql", "-X", "-A", "-t", "-c", "SELECT 'over tls'",
                          "host=localhost port=" + std::to_string(mux.port()) +
                              " dbname=app user=scram_user sslmode=verify-full sslrootcert=" + pki.ca},
                         {{"PGPASSWORD", "scram_pw"}}, 20s);
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.output, Contains("over tls"));
  }
  mux.finish();
}

// [tls] tls13_ciphers and groups (PgBouncer's client_tls13_ciphers and
// client_tls_ecdhcurve): the suite libpq ends up with, and openssl s_client
// offering only groups pgmux refuses, then one it allows.
TEST_CASE("tls: tls13_ciphers and groups choose the suite and the key exchange", "[tls]") {
  Pki pki;
  const std::string crt = pki.issue("server", "localhost", "DNS:localhost,IP:127.0.0.1");
  Pgmux mux(tls_config("require", crt, pki.key_of(crt), {},
                       "tls13_ciphers = \"TLS_CHACHA20_POLY1305_SHA256\"\ngroups = \"P-384:X448\"\n"));
  {
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw", "sslmode=require"));
    CHECK(std::string(PQsslAttribute(c.get(), "protocol")) == "TLSv1.3");
    CHECK(std::string(PQsslAttribute(c.get(), "cipher")) == "TLS_CHACHA20_POLY1305_SHA256");
    CHECK(scalar(c.get(), "SELECT 1") == "1");
  }
  auto handshake = [&](const std::string& groups) {
    return run_process({"sh", "-c",
                        "echo | openssl s_client -starttls postgres -tls1_3 -groups " + groups +
                            " -connect 127.0.0.1:" + std::to_string(mux.port()) + " 2>&1"},
                       {}, 20s)
        .output;
  };
  const std::string refused = handshake("X25519:P-256");
  INFO(refused);
  CHECK_FALSE(contains(refused, "Server Temp Key"));
  const std::string p384 = handshake("X25519:P-384");
  INFO(p384);
  CHECK_THAT(p384, Contains("Server Temp Key: ECDH, secp384r1"));
  CHECK_THAT(p384, Contains("TLS_CHACHA20_POLY1305_SHA256"));
  mux.finish();
  // A name OpenSSL does not know stops pgmux at start, with the reason.
  TempDir dir;
  write_file(dir.file("bad.toml"), "[auth]\ntype = \"trust\"\n[databases.app]\n[tls]\nmode = \"require\"\ncert = \"" +
                                       crt + "\"\nkey = \"" + pki.key_of(crt) + "\"\ngroups = \"P-999\"\n");
  const auto r = run_process({pgmux_bin(), "--config", dir.file("bad.toml"), "--check"}, {}, 20s);
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Contains("groups \"P-999\""));
  // A misspelt suite among good ones too (OpenSSL alone would drop it).
  write_file(dir.file("bad13.toml"), "[auth]\ntype = \"trust\"\n[databases.app]\n[tls]\nmode = \"require\"\ncert = \"" +
                                         crt + "\"\nkey = \"" + pki.key_of(crt) +
                                         "\"\ntls13_ciphers = \"TLS_AES_128_GCM_SHA256:TLS_AES_128_GCM_SHA265\"\n");
  const auto r13 = run_process({pgmux_bin(), "--config", dir.file("bad13.toml"), "--check"}, {}, 20s);
  INFO(r13.output);
  CHECK(r13.exit_code == 1);
  CHECK_THAT(r13.output, Contains("unknown TLS 1.3 cipher suite \"TLS_AES_128_GCM_SHA265\""));
}

TEST_CASE("tls: mode require refuses plaintext; bytes after SSLRequest are refused", "[tls]") {
  Pki pki;
  const std::string crt = pki.issue("server", "localhost", "DNS:localhost,IP:127.0.0.1");
  Pgmux mux(tls_config("require", crt, pki.key_of(crt)));
  CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "scram_pw", "sslmode=disable")),
             Contains("SSL required"));
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw", "sslmode=require"));
  CHECK(scalar(c.get(), "SELECT 1") == "1");
  // A StartupMessage smuggled behind the SSLRequest (CVE-2021-23214 class):
  // no 'S', an error, the connection closed.
  {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send(be32(8) + be32(80877103) + startup_packet({{"user", "scram_user"}, {"database", "app"}}));
    auto r = s.read_until_closed(3s);
    CHECK(r.closed);
    REQUIRE_FALSE(r.data.empty());
    CHECK(r.data[0] == 'E');
    CHECK_THAT(r.data, Contains("data sent after SSLRequest"));
  }
  // A peer that does not speak TLS after 'S': pgmux closes, nothing hangs.
  {
    auto s = RawSocket::connect_tcp(mux.port());
    s.send(be32(8) + be32(80877103));
    auto m = s.read_until_closed(500ms);
    CHECK(m.data == "S");
    s.send(std::string("this is not a TLS ClientHello, just text\n"));
    auto r = s.read_until_closed(3s);
    CHECK(r.closed);
  }
  CHECK(scalar(c.get(), "SELECT 2") == "2");
  c.reset();
  mux.finish();
}

TEST_CASE("tls: client certificates with verify-ca and verify-full", "[tls]") {
  Pki pki;
  const std::string crt = pki.issue("server", "localhost", "DNS:localhost,IP:127.0.0.1");
  const std::string client = pki.issue("client", "scram_user", "");
  const std::string stranger = pki.issue("stranger", "scram_user", "", /*by_other_ca=*/true);
  auto with_cert = [&](const std::string& cert) {
    return "sslmode=require sslcert=" + cert + " sslkey=" + pki.key_of(cert);
  };
  SECTION("verify-full: the certificate's CN must be the user") {
    Pgmux mux(tls_config("verify-full", crt, pki.key_of(crt), pki.ca));
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw", with_cert(client)));
    CHECK(scalar(c.get(), "SELECT current_user") == "scram_user");
    CHECK_THAT(connect_error(mux.conninfo("app", "md5_user", "md5_pw", with_cert(client))),
               Contains("password authentication failed"));
    // pgmux logs it after closing the connection: it may come a moment later.
    CHECK(wait_until([&] { return contains(mux.log_text(), "is not the user name"); }, 3s, 20ms));
    CHECK_FALSE(connect_error(mux.conninfo("app", "scram_user", "scram_pw", "sslmode=require")).empty());
    CHECK_FALSE(connect_error(mux.conninfo("app", "scram_user", "scram_pw", with_cert(stranger))).empty());
    c.reset();
    mux.finish();
  }
  SECTION("verify-ca: any certificate from the CA") {
    Pgmux mux(tls_config("verify-ca", crt, pki.key_of(crt), pki.ca));
    Conn c = connect(mux.conninfo("app", "md5_user", "md5_pw", with_cert(client)));
    CHECK(scalar(c.get(), "SELECT current_user") == "md5_user");
    CHECK_FALSE(connect_error(mux.conninfo("app", "md5_user", "md5_pw", "sslmode=require")).empty());
    // pgmux logs it after closing the connection: it may come a moment later.
    CHECK(wait_until([&] { return contains(mux.log_text(), "TLS handshake"); }, 3s, 20ms));
    c.reset();
    mux.finish();
  }
}

TEST_CASE("tls: certificates reload on SIGHUP without dropping connected clients", "[tls][reload]") {
  Pki pki;
  const std::string first = pki.issue("first", "first.example", "DNS:localhost,IP:127.0.0.1");
  const std::string second = pki.issue("second", "second.example", "DNS:localhost,IP:127.0.0.1");
  TempDir live;
  const std::string cert = live.file("server.crt"), key = live.file("server.key");
  write_file(cert, read_file(first));
  write_file(key, read_file(pki.key_of(first)));
  Pgmux mux(tls_config("require", cert, key));
  Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw", "sslmode=require"));
  CHECK_THAT(presented_subject(mux.port()), Contains("first.example"));
  write_file(cert, read_file(second));
  write_file(key, read_file(pki.key_of(second)));
  mux.signal(SIGHUP);
  CHECK(wait_until([&] { return contains(presented_subject(mux.port()), "second.example"); }, 5s));
  CHECK(scalar(c.get(), "SELECT 'still here'") == "still here");
  // A key that does not match its certificate: the reload is refused.
  write_file(key, read_file(pki.key_of(first)));
  mux.signal(SIGHUP);
  CHECK(wait_until([&] { return contains(mux.log_text(), "reload refused"); }, 5s));
  CHECK_THAT(mux.log_text(), Contains("[tls] key " + key));
  CHECK_THAT(presented_subject(mux.port()), Contains("second.example"));
  c.reset();
  mux.finish();
}

TEST_CASE("tls: server_tls towards a PostgreSQL with ssl = on", "[tls][server_tls]") {
  Pki pki;
  // Valid for "localhost" only, not for 127.0.0.1.
  const std::string crt = pki.issue("postgres", "localhost", "DNS:localhost");
  PrivateCluster pg;
  pg.ctl("enable-ssl", {crt, pki.key_of(crt)});
  auto through = [&](const std::string& host, const std::string& server_tls) {
    PgmuxConfig c;
    c.pgmux = "pool_mode = \"transaction\"\nserver_connect_timeout = \"5s\"\n";
    c.rest = auth_section("scram-sha-256") + "\n[databases.app]\nhost = \"" + host +
             "\"\nport = " + std::to_string(pg.primary_port()) + "\n\n[server_tls]\n" + server_tls;
    c.userlist = plaintext_userlist();
    return c;
  };
  const std::string ssl_query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
  {
    // verify-full with the right name; SCRAM with channel binding (PostgreSQL
    // offers SCRAM-SHA-256-PLUS over TLS and pgmux takes it).
    Pgmux mux(through("localhost", "mode = \"verify-full\"\nca = \"" + pki.ca + "\"\n"));
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(c.get(), ssl_query) == "t");
    c.reset();
    mux.finish();
  }
  {
    // The default (prefer) uses TLS when the server has it.
    Pgmux mux(through("127.0.0.1", ""));
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(c.get(), ssl_query) == "t");
    check_big_result(c.get());
    c.reset();
    mux.finish();
  }
  {
    // verify-full with a name the certificate does not carry.
    Pgmux mux(through("127.0.0.1", "mode = \"verify-full\"\nca = \"" + pki.ca + "\"\n"));
    CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "scram_pw")),
               Contains("certificate verification failed"));
    mux.finish();
  }
  {
    // verify-ca against the wrong CA.
    Pgmux mux(through("localhost", "mode = \"verify-ca\"\nca = \"" + pki.other_ca + "\"\n"));
    CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "scram_pw")),
               Contains("certificate verification failed"));
    mux.finish();
  }
  {
    // verify-ca does not check the name.
    Pgmux mux(through("127.0.0.1", "mode = \"verify-ca\"\nca = \"" + pki.ca + "\"\n"));
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(c.get(), ssl_query) == "t");
    c.reset();
    mux.finish();
  }
  {
    // tls13_ciphers: the suite PostgreSQL reports for pgmux's connection.
    Pgmux mux(through("127.0.0.1", "mode = \"require\"\ntls13_ciphers = \"TLS_AES_128_GCM_SHA256\"\n"));
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(c.get(), "SELECT cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()") ==
          "TLS_AES_128_GCM_SHA256");
    c.reset();
    mux.finish();
  }
  {
    // groups: PostgreSQL takes only its ssl_ecdh_curve (prime256v1), so
    // offering X25519 alone fails the handshake, with a clear error.
    Pgmux mux(through("127.0.0.1", "mode = \"require\"\ngroups = \"X25519\"\n"));
    const std::string err = connect_error(mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK_FALSE(err.empty());
    CHECK_THAT(mux.log_text(), Contains("TLS"));
    mux.finish();
    Pgmux ok_mux(through("127.0.0.1", "mode = \"require\"\ngroups = \"X25519:P-256\"\n"));
    Conn c = connect(ok_mux.conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(c.get(), ssl_query) == "t");
    c.reset();
    ok_mux.finish();
  }
}

TEST_CASE("tls: server_tls client certificate towards a PostgreSQL that demands one", "[tls][server_tls]") {
  Pki pki;
  const std::string crt = pki.issue("postgres", "localhost", "DNS:localhost,IP:127.0.0.1");
  const std::string md5_cert = pki.issue("md5-client", "md5_user", "");
  PrivateCluster pg;
  pg.ctl("enable-ssl", {crt, Pki::key_of(crt), pki.ca});
  auto through = [&](const std::string& server_tls) {
    PgmuxConfig c;
    c.pgmux = "pool_mode = \"transaction\"\nserver_connect_timeout = \"5s\"\n";
    c.rest = auth_section("scram-sha-256") + "\n[databases.app]\nhost = \"127.0.0.1\"\nport = " +
             std::to_string(pg.primary_port()) + "\n\n[server_tls]\n" + server_tls;
    c.userlist = plaintext_userlist();
    return c;
  };
  {
    Pgmux mux(through("mode = \"verify-full\"\nca = \"" + pki.ca + "\"\ncert = \"" + md5_cert + "\"\nkey = \"" +
                      Pki::key_of(md5_cert) + "\"\n"));
    Conn c = connect(mux.conninfo("app", "md5_user", "md5_pw"));
    CHECK(scalar(c.get(), "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "/CN=md5_user");
    c.reset();
    mux.finish();
  }
  {
    // Without pgmux's certificate PostgreSQL refuses the login.
    Pgmux mux(through("mode = \"verify-full\"\nca = \"" + pki.ca + "\"\n"));
    CHECK_THAT(connect_error(mux.conninfo("app", "md5_user", "md5_pw")), Contains("certificate"));
    mux.finish();
  }
}

TEST_CASE("tls: server_tls require against a server without TLS fails clearly", "[tls][server_tls]") {
  PgmuxConfig c;
  c.pgmux = "pool_mode = \"transaction\"\n";
  c.rest = auth_section("scram-sha-256") + "\n" + database_section("app") + "\n[server_tls]\nmode = \"require\"\n";
  c.userlist = plaintext_userlist();
  Pgmux mux(c);
  CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", "scram_pw")), Contains("does not support TLS"));
  mux.finish();
}
