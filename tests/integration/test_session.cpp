// Session pooling against a real PostgreSQL (issue 2): authentication towards
// clients and servers, limits, cancel, COPY, real clients, protocol abuse and
// the command line.
#include <catch2/catch.hpp>

#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <latch>
#include <mutex>
#include <random>
#include <regex>
#include <thread>

#include "harness.hpp"

using namespace it;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using Catch::Matchers::EndsWith;

namespace {

const std::string kWrongPassword = "definitely-wrong";

// For tests that expect a connection to be refused by pgmux: the ErrorResponse
// (if any) carries SQLSTATE `code`, and the socket gets closed.
void expect_rejected(RawSocket& s, const std::string& what, std::chrono::milliseconds within = 3s) {
  auto rr = s.read_until_closed(within);
  INFO(what << ": got " << rr.data.size() << " bytes, closed=" << rr.closed << " after "
            << rr.seconds << " s");
  CHECK(rr.closed);
  if (!rr.data.empty()) {
    REQUIRE(rr.data[0] == 'E');
    REQUIRE(rr.data.size() >= 5);
    std::string payload = rr.data.substr(5);
    INFO("ErrorResponse message: " << error_field(payload, 'M'));
    CHECK(error_field(payload, 'C') == "08P01");
  }
}

// Reads backend messages until ReadyForQuery; fails on ErrorResponse/close.
void read_until_ready(RawSocket& s) {
  for (int i = 0; i < 100; ++i) {
    auto m = s.read_message(5s);
    REQUIRE(m.has_value());
    if (m->type == 'E') FAIL("ErrorResponse during login: " << error_field(m->payload, 'M'));
    if (m->type == 'Z') return;
  }
  FAIL("no ReadyForQuery after 100 messages");
}

}  // namespace

// ---------------------------------------------------------------------------
// a. trust

TEST_CASE("session: trust auth", "[session][auth]") {
  Pgmux mux(session_config("trust", userlist_line("trust_user", "")));
  auto c = connect(mux.conninfo("app", "trust_user"));
  CHECK(scalar(c.get(), "SELECT 1") == "1");
  CHECK(scalar(c.get(), "SELECT current_user") == "trust_user");
  c.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// b. md5 towards the client, with a plaintext secret and with the md5 hash

TEST_CASE("session: md5 client auth", "[session][auth]") {
  SECTION("plaintext secret in the userlist") {
    Pgmux mux(session_config("md5", userlist_line("md5_user", "md5_pw")));
    auto c = connect(mux.conninfo("app", "md5_user", "md5_pw"));
    CHECK(scalar(c.get(), "SELECT current_user") == "md5_user");
    auto err = connect_error(mux.conninfo("app", "md5_user", kWrongPassword));
    CHECK_THAT(err, Contains("password authentication failed for user"));
    c.reset();
    mux.finish();
  }
  SECTION("md5 hash from pg_authid in the userlist") {
    Pgmux mux(session_config("md5", userlist_line("md5_user", fixture().md5_user_hash)));
    auto c = connect(mux.conninfo("app", "md5_user", "md5_pw"));
    CHECK(scalar(c.get(), "SELECT current_user") == "md5_user");
    auto err = connect_error(mux.conninfo("app", "md5_user", kWrongPassword));
    CHECK_THAT(err, Contains("password authentication failed for user"));
    c.reset();
    mux.finish();
  }
}

// ---------------------------------------------------------------------------
// c. SCRAM towards the client with a plaintext secret

TEST_CASE("session: scram client auth with a plaintext secret", "[session][auth]") {
  Pgmux mux(session_config("scram-sha-256", userlist_line("scram_user", "scram_pw")));
  auto c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c.get(), "SELECT current_user") == "scram_user");
  auto err = connect_error(mux.conninfo("app", "scram_user", kWrongPassword));
  CHECK_THAT(err, Contains("password authentication failed for user"));
  c.reset();
  mux.finish();
}

// scram_iterations: the count pgmux's server-first message announces for a
// user with a plain password and for an unknown user (which must look the
// same); the login still works (libpq computes with that count).
TEST_CASE("session: scram_iterations", "[session][auth]") {
  Pgmux mux(session_config("scram-sha-256", userlist_line("scram_user", "scram_pw"), "scram_iterations = 10007\n"));
  auto announced = [&](const std::string& user) {
    RawSocket s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    REQUIRE(s.send(startup_packet({{"user", user}, {"database", "app"}})));
    auto sasl = s.read_message(5s);
    REQUIRE(sasl);
    REQUIRE(sasl->type == 'R');
    const std::string mechanism = "SCRAM-SHA-256";
    const std::string first = "n,,n=,r=rOprNGfwEbeRWgbNEkqO";
    std::string body = mechanism + std::string(1, '\0') + be32(uint32_t(first.size())) + first;
    REQUIRE(s.send("p" + be32(uint32_t(body.size() + 4)) + body));
    auto server_first = s.read_message(5s);
    REQUIRE(server_first);
    REQUIRE(server_first->type == 'R');
    REQUIRE(server_first->payload.size() > 4);
    return server_first->payload.substr(4);  // after the int32 11 (SASLContinue)
  };
  auto salt = [](const std::string& server_first) {
    const auto s = server_first.find(",s="), i = server_first.find(",i=");
    return server_first.substr(s + 3, i - s - 3);
  };
  const std::string known = announced("scram_user"), ghost = announced("ghost_user");
  CHECK_THAT(known, EndsWith(",i=10007"));
  CHECK_THAT(ghost, EndsWith(",i=10007"));
  // Salts: the same on every try for one user, known or not.
  CHECK(salt(announced("scram_user")) == salt(known));
  CHECK(salt(announced("ghost_user")) == salt(ghost));
  CHECK(salt(known) != salt(ghost));
  CHECK(salt(known).size() == salt(ghost).size());
  auto c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c.get(), "SELECT current_user") == "scram_user");
  c.reset();
  mux.finish();
  // A verifier in the userlist with another count than scram_iterations is
  // reported: an unknown user's login could be told from that user's.
  Pgmux mixed(session_config("scram-sha-256", userlist_line("scram_user", fixture().scram_user_verifier),
                             "scram_iterations = 10007\n"));
  CHECK_THAT(mixed.log_text(), Contains("1 SCRAM verifier(s) use 4096 iterations, [pgmux] scram_iterations is 10007"));
  mixed.finish();
}

// ---------------------------------------------------------------------------
// d. SCRAM pass-through: only the verifier is known to pgmux; the server login
//    uses the keys recovered from the client's proof.

TEST_CASE("session: scram pass-through with a verifier", "[session][auth]") {
  Pgmux mux(
      session_config("scram-sha-256", userlist_line("scram_user", fixture().scram_user_verifier)));
  auto c1 = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c1.get(), "SELECT current_user") == "scram_user");
  // A second concurrent session needs a second server login.
  auto c2 = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c2.get(), "SELECT current_user") == "scram_user");
  CHECK(scalar(c1.get(), "SELECT pg_backend_pid()") != scalar(c2.get(), "SELECT pg_backend_pid()"));

  auto err = connect_error(mux.conninfo("app", "scram_user", kWrongPassword));
  CHECK_THAT(err, Contains("password authentication failed for user"));
  c1.reset();
  c2.reset();
  // After the sessions ended, a new client still gets in (server reused or new).
  auto c3 = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c3.get(), "SELECT 1") == "1");
  c3.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// e. Before authentication pgmux says as little as possible: wrong password,
//    unknown user and unknown database give the same error text (apart from
//    the user name the client itself sent).

TEST_CASE("session: auth failures look the same", "[session][auth]") {
  for (std::string type : {"scram-sha-256", "md5"}) {
    INFO("auth type " << type);
    Pgmux mux(session_config(type, plaintext_userlist()));
    auto normalize = [](std::string msg, const std::string& user) {
      return replace_all(strip_conn_prefix(std::move(msg)), "\"" + user + "\"", "\"<user>\"");
    };
    std::string wrong_password =
        normalize(connect_error(mux.conninfo("app", "scram_user", kWrongPassword)), "scram_user");
    std::string unknown_user =
        normalize(connect_error(mux.conninfo("app", "ghost_user", "scram_pw")), "ghost_user");
    std::string unknown_db_right_pw =
        normalize(connect_error(mux.conninfo("no_such_db", "scram_user", "scram_pw")), "scram_user");
    std::string unknown_db_wrong_pw = normalize(
        connect_error(mux.conninfo("no_such_db", "scram_user", kWrongPassword)), "scram_user");

    CHECK_THAT(wrong_password, Contains("password authentication failed for user \"<user>\""));
    CHECK(unknown_user == wrong_password);
    CHECK(unknown_db_wrong_pw == wrong_password);
    CHECK(unknown_db_right_pw == wrong_password);
    REQUIRE(mux.alive());
    mux.finish();
  }
}

// ---------------------------------------------------------------------------
// f. Server-side authentication: md5, trust, and SCRAM with a password from the
//    config.

TEST_CASE("session: server auth md5 trust and configured password", "[session][auth]") {
  SECTION("md5 and trust servers, forced user with a configured password") {
    std::string userlist =
        userlist_line("md5_user", "md5_pw") + userlist_line("trust_user", "trust_pw");
    std::string forced = database_section(
        "forced", "dbname = \"app\"\nuser = \"scram_user\"\npassword = \"scram_pw\"\n");
    Pgmux mux(session_config("scram-sha-256", userlist, {}, forced));

    auto md5c = connect(mux.conninfo("app", "md5_user", "md5_pw"));
    CHECK(scalar(md5c.get(), "SELECT current_user") == "md5_user");

    auto trustc = connect(mux.conninfo("app", "trust_user", "trust_pw"));
    CHECK(scalar(trustc.get(), "SELECT current_user") == "trust_user");

    auto forcedc = connect(mux.conninfo("forced", "md5_user", "md5_pw"));
    CHECK(scalar(forcedc.get(), "SELECT current_user") == "scram_user");
    CHECK(scalar(forcedc.get(), "SELECT current_database()") == "app");

    md5c.reset();
    trustc.reset();
    forcedc.reset();
    mux.finish();
  }
  SECTION("[databases.app] password is used for the client's user") {
    // The client logs in by trust, so the only password pgmux has for the
    // SCRAM login to the server is the configured one.
    PgmuxConfig cfg;
    cfg.pgmux = "pool_mode = \"session\"\n";
    cfg.rest = auth_section("trust") + "\n" + database_section("app", "password = \"scram_pw\"\n");
    cfg.userlist = userlist_line("scram_user", "");
    Pgmux mux(cfg);
    auto c = connect(mux.conninfo("app", "scram_user"));
    CHECK(scalar(c.get(), "SELECT current_user") == "scram_user");
    c.reset();
    mux.finish();
  }
}

// ---------------------------------------------------------------------------
// g. 50 concurrent sessions over a pool of 5: everybody gets served, the
//    server never sees more than 5 backends.

TEST_CASE("session: 50 clients share a pool of 5", "[session][pool]") {
  // Database app2 is used by this test only, so the backend count is ours.
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist(), "default_pool_size = 5\n",
                           database_section("app2")));
  constexpr int kClients = 50;
  constexpr int kQueries = 3;
  const std::string conninfo = mux.conninfo("app2", "scram_user", "scram_pw");

  std::atomic<bool> done{false};
  std::atomic<int> max_backends{0};
  std::atomic<int> samples{0};
  std::string monitor_error;
  std::thread monitor([&] {
    Conn su = connect_raw(superuser_conninfo());
    if (PQstatus(su.get()) != CONNECTION_OK) {
      monitor_error = PQerrorMessage(su.get());
      return;
    }
    while (!done.load()) {
      auto r = try_exec(su.get(),
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'scram_user' "
                        "AND datname = 'app2' AND backend_type = 'client backend'");
      if (!r.ok) {
        monitor_error = r.message;
        return;
      }
      int n = std::stoi(r.rows.at(0).at(0));
      int prev = max_backends.load();
      while (n > prev && !max_backends.compare_exchange_weak(prev, n)) {
      }
      ++samples;
      std::this_thread::sleep_for(5ms);
    }
  });

  std::mutex errors_mutex;
  std::vector<std::string> errors;
  std::atomic<int> succeeded{0};
  std::latch start(kClients);
  std::vector<std::thread> clients;
  auto t0 = Clock::now();
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      start.arrive_and_wait();
      auto fail = [&](const std::string& what) {
        std::lock_guard<std::mutex> lock(errors_mutex);
        errors.push_back("client " + std::to_string(i) + ": " + what);
      };
      Conn c = connect_raw(conninfo);
      if (PQstatus(c.get()) != CONNECTION_OK) return fail(PQerrorMessage(c.get()));
      for (int q = 0; q < kQueries; ++q) {
        auto r = try_exec(c.get(), "SELECT pg_sleep(0.05)");
        if (!r.ok) return fail(r.message);
      }
      ++succeeded;
    });
  }
  for (auto& t : clients) t.join();
  double elapsed = seconds_since(t0);
  done = true;
  monitor.join();

  std::string first_errors;
  for (size_t i = 0; i < errors.size() && i < 5; ++i) first_errors += errors[i] + "\n";
  INFO("errors:\n" << first_errors << "monitor: " << monitor_error << "\nelapsed " << elapsed
                   << " s, " << samples.load() << " samples");
  CHECK(monitor_error.empty());
  CHECK(succeeded.load() == kClients);
  CHECK(max_backends.load() <= 5);
  CHECK(max_backends.load() >= 2);
  mux.finish();
}

// ---------------------------------------------------------------------------
// h. query_wait_timeout: a client that cannot get a server gives up with an
//    error naming the timeout; once the server is free, clients get in again.

TEST_CASE("session: query_wait_timeout", "[session][pool]") {
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist(),
                           "default_pool_size = 1\nquery_wait_timeout = \"1s\"\n"));
  const std::string conninfo = mux.conninfo("app", "scram_user", "scram_pw");
  auto a = connect(conninfo);
  REQUIRE(scalar(a.get(), "SELECT 1") == "1");  // A now holds the only server

  auto t0 = Clock::now();
  Conn b = connect_raw(conninfo);
  std::string err;
  if (PQstatus(b.get()) != CONNECTION_OK) {
    err = PQerrorMessage(b.get());
  } else {
    auto r = try_exec(b.get(), "SELECT 1");
    INFO("B's query should not have run");
    REQUIRE_FALSE(r.ok);
    err = r.message;
  }
  double elapsed = seconds_since(t0);
  INFO("error: " << err << "\nafter " << elapsed << " s");
  CHECK_THAT(err, Contains("query_wait_timeout"));
  CHECK(elapsed >= 0.8);
  CHECK(elapsed < 3.5);
  b.reset();

  a.reset();
  bool got_in = wait_until(
      [&] {
        Conn c = connect_raw(conninfo);
        return PQstatus(c.get()) == CONNECTION_OK && try_exec(c.get(), "SELECT 1").ok;
      },
      5s, 100ms);
  CHECK(got_in);
  mux.finish();
}

// ---------------------------------------------------------------------------
// i. max_client_conn

TEST_CASE("session: max_client_conn", "[session][limits]") {
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist(), "max_client_conn = 3\n"));
  const std::string conninfo = mux.conninfo("app", "scram_user", "scram_pw");
  std::vector<Conn> conns;
  for (int i = 0; i < 3; ++i) {
    conns.push_back(connect(conninfo));
    REQUIRE(scalar(conns.back().get(), "SELECT 1") == "1");
  }
  auto err = connect_error(conninfo);
  CHECK_THAT(err, Contains("no more connections allowed"));

  // The same refusal seen on the wire: SQLSTATE 53300 (too_many_connections).
  {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send(startup_packet({{"user", "scram_user"}, {"database", "app"}}));
    auto m = s.read_message(3s);
    REQUIRE(m.has_value());
    REQUIRE(m->type == 'E');
    CHECK_THAT(error_field(m->payload, 'M'), Contains("no more connections allowed"));
    CHECK(error_field(m->payload, 'C') == "53300");
  }

  conns.pop_back();
  bool got_in = wait_until(
      [&] {
        Conn c = connect_raw(conninfo);
        return PQstatus(c.get()) == CONNECTION_OK && try_exec(c.get(), "SELECT 1").ok;
      },
      3s, 50ms);
  CHECK(got_in);
  conns.clear();
  mux.finish();
}

// max_db_client_connections / max_user_client_connections: logged-in
// clients per database and per login user, counted over both workers; a
// refused login counts nowhere; the console shows the counts and its SET
// raises a limit at once.
TEST_CASE("session: max_db_client_connections and max_user_client_connections", "[session][limits][workers]") {
  PgmuxConfig cfg;
  cfg.pgmux = "workers = 2\npool_mode = \"transaction\"\nmax_db_client_connections = 3\n";
  cfg.rest = auth_section("trust") + "\n" + database_section("app", "user = \"trust_user\"\n") + "\n" +
             database_section("small", "dbname = \"app\"\nuser = \"trust_user\"\nmax_db_client_connections = 1\n") +
             "\n[users.bob]\nmax_user_client_connections = 2\n\n[admin]\nusers = [\"admin\"]\n";
  cfg.userlist = userlist_line("alice", "") + userlist_line("bob", "") + userlist_line("admin", "");
  Pgmux mux(cfg);
  Conn console = connect(mux.conninfo("pgmux", "admin"));
  auto cell = [&](const char* show, const std::string& row, const char* column) {
    return show_cell(console.get(), show, "name", row, column);
  };
  auto login = [&](const char* db, const char* user) {
    Conn c = connect(mux.conninfo(db, user));
    CHECK(scalar(c.get(), "SELECT 1") == "1");
    return c;
  };
  std::vector<Conn> alice, bob;
  alice.push_back(login("app", "alice"));
  alice.push_back(login("app", "alice"));
  bob.push_back(login("small", "bob"));
  bob.push_back(login("app", "bob"));  // app 3 of 3, bob 2 of 2

  CHECK_THAT(connect_error(mux.conninfo("app", "alice")),
             Contains("client connections exceeded (max_db_client_connections)"));
  CHECK_THAT(connect_error(mux.conninfo("small", "bob")),
             Contains("client connections exceeded (max_db_client_connections)"));
  {  // On the wire: FATAL 53300, as max_client_conn.
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send(startup_packet({{"user", "alice"}, {"database", "app"}}));
    auto m = s.read_message(3s);
    REQUIRE(m.has_value());
    REQUIRE(m->type == 'E');
    CHECK(error_field(m->payload, 'C') == "53300");
    CHECK(error_field(m->payload, 'S') == "FATAL");
  }
  CHECK(cell("SHOW DATABASES", "app", "max_client_connections") == "3");
  CHECK(cell("SHOW DATABASES", "app", "current_client_connections") == "3");
  CHECK(cell("SHOW DATABASES", "small", "max_client_connections") == "1");
  CHECK(cell("SHOW DATABASES", "small", "current_client_connections") == "1");
  CHECK(cell("SHOW USERS", "bob", "max_user_client_connections") == "2");
  CHECK(cell("SHOW USERS", "bob", "current_client_connections") == "2");
  CHECK(cell("SHOW USERS", "alice", "max_user_client_connections") == "0");
  CHECK(cell("SHOW USERS", "alice", "current_client_connections") == "2");
  CHECK(cell("SHOW USERS", "trust_user", "current_connections") != "0");  // the server user's connections

  // A place in app: bob is still at his own limit, alice gets in.
  alice.pop_back();
  CHECK(wait_until([&] { return cell("SHOW DATABASES", "app", "current_client_connections") == "2"; }, 3s, 20ms));
  CHECK_THAT(connect_error(mux.conninfo("app", "bob")),
             Contains("client connections exceeded (max_user_client_connections)"));
  alice.push_back(login("app", "alice"));

  // The console's SET applies to the next login.
  Result set(PQexec(console.get(), "SET max_db_client_connections = 4"));
  CHECK(PQresultStatus(set.get()) == PGRES_COMMAND_OK);
  alice.push_back(login("app", "alice"));
  CHECK(cell("SHOW DATABASES", "app", "current_client_connections") == "4");
  CHECK(contains(mux.log_text(), "login refused: user \"bob\" has 2 clients (max_user_client_connections)"));

  alice.clear();
  bob.clear();
  CHECK(wait_until([&] {
    return cell("SHOW DATABASES", "app", "current_client_connections") == "0" &&
           cell("SHOW DATABASES", "small", "current_client_connections") == "0" &&
           cell("SHOW USERS", "bob", "current_client_connections") == "0";
  }, 3s, 20ms));
  console.reset();
  mux.finish();
}

// autodb_idle_timeout: the pool of a name the "*" entry serves stays while
// a client uses it, and goes (its servers closed) once none has for that
// long; the name works again afterwards.
TEST_CASE("session: autodb_idle_timeout drops pools of names the \"*\" entry serves", "[session][limits]") {
  ScratchDatabase db("autodb");
  PgmuxConfig cfg;
  cfg.pgmux = "pool_mode = \"transaction\"\nautodb_idle_timeout = \"1s\"\n";
  cfg.rest = auth_section("scram-sha-256") + "\n" + database_section("\"*\"") +
             "\n[admin]\nusers = [\"admin\"]\n";
  cfg.userlist = plaintext_userlist() + userlist_line("admin", "admin_pw");
  Pgmux mux(cfg);
  Conn console = connect(mux.conninfo("pgmux", "admin", "admin_pw"));
  auto su = superuser();
  auto backends = [&] {
    return scalar(su.get(), "SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db.name() + "'");
  };
  auto pool_listed = [&] { return show_cell(console.get(), "SHOW POOLS", "database", db.name(), "pool_mode") != "no such cell"; };
  const std::string ci = mux.conninfo(db.name(), "scram_user", "scram_pw");
  {
    Conn c = connect(ci);
    CHECK(scalar(c.get(), "SELECT current_database()") == db.name());
    std::this_thread::sleep_for(2500ms);  // idle, but logged in: the pool stays
    CHECK(pool_listed());
    CHECK(backends() == "1");
    CHECK(scalar(c.get(), "SELECT 1") == "1");
  }
  const auto t0 = Clock::now();
  CHECK(wait_until([&] { return !pool_listed(); }, 6s, 50ms));
  INFO("pool gone after " << seconds_since(t0) << " s");
  CHECK(seconds_since(t0) >= 0.9);
  CHECK(wait_until([&] { return backends() == "0"; }, 3s, 50ms));
  CHECK(contains(mux.log_text(), "dropped: no client for autodb_idle_timeout"));
  Conn again = connect(ci);
  CHECK(scalar(again.get(), "SELECT current_database()") == db.name());
  CHECK(pool_listed());
  again.reset();
  console.reset();
  su.reset();
  mux.finish();
}

// Logins in progress are bounded (max_concurrent_logins); logged-in clients
// do not count.
TEST_CASE("session: max_concurrent_logins", "[session][limits]") {
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist(), "max_concurrent_logins = 2\n"));
  const std::string conninfo = mux.conninfo("app", "scram_user", "scram_pw");
  Conn in = connect(conninfo);  // logged in: not a login in progress
  // Two logins that stall after the startup packet (a SCRAM exchange never
  // answered).
  std::vector<RawSocket> stalled;
  for (int i = 0; i < 2; ++i) {
    stalled.push_back(RawSocket::connect_tcp(mux.port()));
    REQUIRE(stalled.back().valid());
    stalled.back().send(startup_packet({{"user", "scram_user"}, {"database", "app"}}));
    auto m = stalled.back().read_message(3s);
    REQUIRE(m.has_value());
    REQUIRE(m->type == 'R');  // AuthenticationSASL: the login waits for us
  }
  auto s = RawSocket::connect_tcp(mux.port());
  s.send(startup_packet({{"user", "scram_user"}, {"database", "app"}}));
  auto m = s.read_message(3s);
  REQUIRE(m.has_value());
  REQUIRE(m->type == 'E');
  CHECK(error_field(m->payload, 'C') == "53300");
  CHECK_THAT(error_field(m->payload, 'M'), Contains("max_concurrent_logins"));
  CHECK(scalar(in.get(), "SELECT 1") == "1");
  stalled.clear();
  CHECK(wait_until([&] {
    Conn c = connect_raw(conninfo);
    return PQstatus(c.get()) == CONNECTION_OK;
  }, 3s, 50ms));
  in.reset();
  mux.finish();
}

// A failed login is answered only after auth_failure_delay; a good one is not
// slowed down.
TEST_CASE("session: auth_failure_delay", "[session][auth][limits]") {
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist(), "auth_failure_delay = \"1s\"\n"));
  auto t0 = Clock::now();
  CHECK_THAT(connect_error(mux.conninfo("app", "scram_user", kWrongPassword)),
             Contains("password authentication failed"));
  CHECK(seconds_since(t0) >= 0.9);
  t0 = Clock::now();
  CHECK_THAT(connect_error(mux.conninfo("app", "nobody", "x")), Contains("password authentication failed"));
  CHECK(seconds_since(t0) >= 0.9);
  t0 = Clock::now();
  Conn ok = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(seconds_since(t0) < 0.9);
  ok.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// j. Cancel requests reach the right server backend, and only that one.

TEST_CASE("session: cancel request", "[session][cancel]") {
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist()));
  const std::string conninfo = mux.conninfo("app", "cancel_user", "cancel_pw");
  auto c1 = connect(conninfo);
  auto c2 = connect(conninfo);
  REQUIRE(scalar(c1.get(), "SELECT 1") == "1");
  REQUIRE(scalar(c2.get(), "SELECT 1") == "1");

  auto t0 = Clock::now();
  REQUIRE(PQsendQuery(c1.get(), "SELECT pg_sleep(10)") == 1);
  REQUIRE(PQsendQuery(c2.get(), "SELECT pg_sleep(1)") == 1);
  std::this_thread::sleep_for(300ms);

  PGcancel* cancel = PQgetCancel(c1.get());
  REQUIRE(cancel != nullptr);
  char errbuf[256] = {0};
  int sent = PQcancel(cancel, errbuf, sizeof errbuf);
  PQfreeCancel(cancel);
  INFO("PQcancel: " << errbuf);
  REQUIRE(sent == 1);

  {
    Result r(PQgetResult(c1.get()));
    double elapsed = seconds_since(t0);
    REQUIRE(r);
    INFO("c1: " << PQresultErrorMessage(r.get()) << " after " << elapsed << " s");
    CHECK(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
    const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    CHECK(std::string(state ? state : "") == "57014");
    CHECK(elapsed < 2.0);
    while (Result more{PQgetResult(c1.get())}) {
    }
  }
  {
    Result r(PQgetResult(c2.get()));
    double elapsed = seconds_since(t0);
    REQUIRE(r);
    INFO("c2: " << PQresultErrorMessage(r.get()));
    CHECK(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
    CHECK(elapsed >= 0.9);
    while (Result more{PQgetResult(c2.get())}) {
    }
  }
  // Both sessions stay usable.
  CHECK(scalar(c1.get(), "SELECT 1") == "1");
  CHECK(scalar(c2.get(), "SELECT 2") == "2");
  c1.reset();
  c2.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// k. The server backend dies under a session.

TEST_CASE("session: server backend killed", "[session][failure]") {
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist()));
  const std::string conninfo = mux.conninfo("app", "scram_user", "scram_pw");
  auto c = connect(conninfo);
  std::string pid = scalar(c.get(), "SELECT pg_backend_pid()");

  auto su = superuser();
  CHECK(scalar(su.get(), "SELECT pg_terminate_backend(" + pid + ")") == "t");
  CHECK(wait_until(
      [&] {
        return scalar(su.get(), "SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid) == "0";
      },
      5s));

  auto r = try_exec(c.get(), "SELECT 1");
  INFO("query after the backend was killed: " << r.message);
  CHECK_FALSE(r.ok);
  c.reset();

  REQUIRE(mux.alive());
  auto c2 = connect(conninfo);
  CHECK(scalar(c2.get(), "SELECT 1") == "1");
  CHECK(scalar(c2.get(), "SELECT pg_backend_pid()") != pid);
  c2.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// l. COPY FROM STDIN / TO STDOUT

TEST_CASE("session: COPY in and out", "[session][copy]") {
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist()));
  auto c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  const std::string table = "copy_it_" + unique_suffix();
  exec(c.get(), "CREATE TABLE " + table + " (id int, val text)");

  constexpr int kRows = 10000;
  {
    Result r(PQexec(c.get(), ("COPY " + table + " FROM STDIN").c_str()));
    REQUIRE(r);
    INFO(PQresultErrorMessage(r.get()));
    REQUIRE(PQresultStatus(r.get()) == PGRES_COPY_IN);
  }
  std::string chunk;
  for (int i = 0; i < kRows; ++i) {
    chunk += std::to_string(i) + "\tvalue-" + std::to_string(i) + "\n";
    if (chunk.size() > 8000 || i == kRows - 1) {
      REQUIRE(PQputCopyData(c.get(), chunk.data(), static_cast<int>(chunk.size())) == 1);
      chunk.clear();
    }
  }
  REQUIRE(PQputCopyEnd(c.get(), nullptr) == 1);
  {
    Result r(PQgetResult(c.get()));
    REQUIRE(r);
    INFO(PQresultErrorMessage(r.get()));
    REQUIRE(PQresultStatus(r.get()) == PGRES_COMMAND_OK);
    CHECK(std::string(PQcmdTuples(r.get())) == std::to_string(kRows));
    while (Result more{PQgetResult(c.get())}) {
    }
  }
  CHECK(scalar(c.get(), "SELECT count(*) FROM " + table) == std::to_string(kRows));

  {
    Result r(PQexec(c.get(), ("COPY " + table + " TO STDOUT").c_str()));
    REQUIRE(r);
    REQUIRE(PQresultStatus(r.get()) == PGRES_COPY_OUT);
  }
  long rows = 0;
  long long id_sum = 0;
  for (;;) {
    char* buf = nullptr;
    int n = PQgetCopyData(c.get(), &buf, 0);
    if (n > 0) {
      ++rows;
      id_sum += std::atoll(buf);
      PQfreemem(buf);
      continue;
    }
    REQUIRE(n == -1);  // -2 = error
    break;
  }
  {
    Result r(PQgetResult(c.get()));
    REQUIRE(r);
    CHECK(PQresultStatus(r.get()) == PGRES_COMMAND_OK);
    while (Result more{PQgetResult(c.get())}) {
    }
  }
  CHECK(rows == kRows);
  CHECK(id_sum == static_cast<long long>(kRows) * (kRows - 1) / 2);

  exec(c.get(), "DROP TABLE " + table);
  c.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// m. Real clients: psql and pgbench

TEST_CASE("session: psql and pgbench", "[session][clients]") {
  // The acceptance run: a session pool of 10 and a userlist of SCRAM
  // verifiers only (so every server login is SCRAM pass-through).
  Pgmux mux(session_config("scram-sha-256", userlist_line("scram_user", fixture().scram_user_verifier),
                           "default_pool_size = 10\n"));
  const auto& fx = fixture();

  auto psql = run_process({fx.pg_bin + "/psql", mux.conninfo("app", "scram_user", "scram_pw"), "-X",
                           "-A", "-t", "-c", "select 41+1"},
                          {}, 30s);
  INFO("psql output:\n" << psql.output);
  CHECK(psql.exit_code == 0);
  CHECK(trim(psql.output) == "42");

  const std::map<std::string, std::string> env = {{"PGPASSWORD", "scram_pw"}};
  const std::vector<std::string> target = {"-h", "127.0.0.1", "-p", std::to_string(mux.port()),
                                           "-U", "scram_user"};
  std::vector<std::string> init = {fx.pg_bin + "/pgbench", "-i", "-s", "1", "-q"};
  init.insert(init.end(), target.begin(), target.end());
  init.push_back("app");
  auto ir = run_process(init, env, 90s);
  {
    INFO("pgbench -i output:\n" << ir.output);
    REQUIRE(ir.exit_code == 0);
  }

  // 50 clients over 10 session-pooled servers: most of them queue, none fails.
  std::vector<std::string> run = {fx.pg_bin + "/pgbench", "-c", "50", "-j", "2", "-t", "100", "-S"};
  run.insert(run.end(), target.begin(), target.end());
  run.push_back("app");
  auto rr = run_process(run, env, 90s);
  INFO("pgbench output:\n" << rr.output);
  CHECK(rr.exit_code == 0);
  CHECK_THAT(rr.output, Contains("number of transactions actually processed: 5000/5000"));
  if (contains(rr.output, "number of failed transactions:")) {
    CHECK_THAT(rr.output, Contains("number of failed transactions: 0 "));
  }
  mux.finish();
}

// ---------------------------------------------------------------------------
// n. ParameterStatus comes from the real server; BackendKeyData from pgmux.

TEST_CASE("session: ParameterStatus and BackendKeyData", "[session][protocol]") {
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist()));
  auto c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  const char* version = PQparameterStatus(c.get(), "server_version");
  REQUIRE(version != nullptr);
  CHECK_THAT(std::string(version), StartsWith("15"));
  auto su = superuser();
  CHECK(std::string(version) == scalar(su.get(), "SHOW server_version"));
  CHECK(PQparameterStatus(c.get(), "client_encoding") != nullptr);
  CHECK(PQparameterStatus(c.get(), "integer_datetimes") != nullptr);

  int advertised = PQbackendPID(c.get());
  int real = std::stoi(scalar(c.get(), "SELECT pg_backend_pid()"));
  INFO("BackendKeyData pid " << advertised << ", server backend pid " << real);
  CHECK(advertised != real);
  c.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// o. Malformed packets end that connection (08P01) and nothing else.

TEST_CASE("session: malformed packets", "[session][protocol]") {
  Pgmux mux(session_config("trust", userlist_line("trust_user", "")));
  auto normal_client_works = [&] {
    REQUIRE(mux.alive());
    auto c = connect(mux.conninfo("app", "trust_user"));
    CHECK(scalar(c.get(), "SELECT 1") == "1");
  };

  SECTION("startup packet with length 3") {
    // A full 8-byte header (length, protocol code), so a framer that reads
    // both before deciding is tested too; PostgreSQL rejects after 4 bytes.
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send(be32(3) + be32(196608));
    expect_rejected(s, "length 3");
    normal_client_works();
  }
  SECTION("HTTP request instead of a startup packet") {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_rejected(s, "HTTP garbage");
    normal_client_works();
  }
  SECTION("startup packet declaring 1 MiB") {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send(be32(1u << 20) + be32(196608) + std::string("user\0trust_user\0", 16));
    expect_rejected(s, "huge startup packet");
    normal_client_works();
  }
  SECTION("unknown protocol version") {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send(startup_packet({{"user", "trust_user"}, {"database", "app"}}, 0x12345678));
    auto rr = s.read_until_closed(3s);
    INFO("got " << rr.data.size() << " bytes");
    CHECK(rr.closed);
    if (!rr.data.empty()) CHECK(rr.data[0] == 'E');
    normal_client_works();
  }
  SECTION("message with a huge declared length after login") {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send(startup_packet({{"user", "trust_user"}, {"database", "app"}}));
    read_until_ready(s);
    s.send(std::string("Q") + be32(0x7ffffff0u) + "SELECT 1");
    expect_rejected(s, "Q with length 0x7ffffff0");
    normal_client_works();
  }
  SECTION("message with a declared length below 4 after login") {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send(startup_packet({{"user", "trust_user"}, {"database", "app"}}));
    read_until_ready(s);
    s.send(std::string("Q") + be32(2));
    expect_rejected(s, "Q with length 2");
    normal_client_works();
  }
  mux.finish();
}

// ---------------------------------------------------------------------------
// p. client_login_timeout closes clients that do not finish logging in.

TEST_CASE("session: client_login_timeout", "[session][limits]") {
  // With tcp_defer_accept (on by default) a silent connection stays in the
  // kernel until it speaks, out of pgmux's sight: off here.
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist(),
                           "client_login_timeout = \"1s\"\ntcp_defer_accept = \"0s\"\n"));

  SECTION("silent client") {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    auto rr = s.read_until_closed(6s);
    INFO("closed=" << rr.closed << " after " << rr.seconds << " s");
    CHECK(rr.closed);
    CHECK(rr.seconds >= 0.5);
    CHECK(rr.seconds < 3.0);
  }
  SECTION("half a startup packet") {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    std::string pkt = startup_packet({{"user", "scram_user"}, {"database", "app"}});
    s.send(pkt.substr(0, 10));
    auto rr = s.read_until_closed(6s);
    INFO("closed=" << rr.closed << " after " << rr.seconds << " s");
    CHECK(rr.closed);
    CHECK(rr.seconds < 3.0);
  }
  SECTION("client stalls in the SCRAM exchange") {
    auto s = RawSocket::connect_tcp(mux.port());
    REQUIRE(s.valid());
    s.send(startup_packet({{"user", "scram_user"}, {"database", "app"}}));
    auto m = s.read_message(3s);
    REQUIRE(m.has_value());
    CHECK(m->type == 'R');  // AuthenticationSASL
    auto rr = s.read_until_closed(6s);
    INFO("closed=" << rr.closed << " after " << rr.seconds << " s");
    CHECK(rr.closed);
    CHECK(rr.seconds < 3.0);
  }
  REQUIRE(mux.alive());
  auto c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c.get(), "SELECT 1") == "1");
  c.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// q. Unix socket listener

TEST_CASE("session: unix socket", "[session][listen]") {
  {
    Pgmux mux(session_config("scram-sha-256", plaintext_userlist()));
    auto c = connect(mux.unix_conninfo("app", "scram_user", "scram_pw"));
    CHECK(scalar(c.get(), "SELECT current_user") == "scram_user");
    struct stat st {};
    REQUIRE(::stat(mux.unix_socket_path().c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0777);  // PgBouncer's default
    c.reset();
    mux.finish();
  }
  // unix_socket_mode and unix_socket_group: a group other than this
  // process's own, so the chown shows (root may give any; others one of
  // their supplementary groups).
  gid_t gid = ::getegid();
  if (::geteuid() == 0) {
    if (const group* ng = ::getgrnam("nogroup")) gid = ng->gr_gid;
    else if (const group* dg = ::getgrnam("daemon")) gid = dg->gr_gid;
  } else {
    std::vector<gid_t> groups(size_t(std::max(::getgroups(0, nullptr), 0)));
    groups.resize(size_t(std::max(::getgroups(int(groups.size()), groups.data()), 0)));
    for (gid_t x : groups)
      if (x != ::getegid()) gid = x;
  }
  if (gid == ::getegid()) WARN("no second group to give: the socket's group is checked against our own");
  const group* g = ::getgrgid(gid);
  REQUIRE(g);
  const std::string group_name = g->gr_name;
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist(),
                           "unix_socket_mode = \"0660\"\nunix_socket_group = \"" + group_name + "\"\n"));
  struct stat st {};
  REQUIRE(::stat(mux.unix_socket_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0660);
  CHECK(st.st_gid == gid);
  auto c = connect(mux.unix_conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(c.get(), "SELECT 1") == "1");
  c.reset();
  mux.finish();
  // A group that does not exist stops pgmux at start, with the reason.
  TempDir dir;
  const auto& fx = fixture();
  write_file(dir.file("bad.toml"), "[pgmux]\nlisten = [\"unix:" + dir.file("s.sock") +
                                       "\"]\nunix_socket_group = \"no_such_group_pgmux\"\n[auth]\ntype = \"trust\"\n"
                                       "[databases.app]\nhost = \"" + fx.pg_host + "\"\nport = " +
                                       std::to_string(fx.pg_port) + "\n");
  const auto r = run_process({pgmux_bin(), "--config", dir.file("bad.toml")}, {}, 20s);
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Contains("unix_socket_group \"no_such_group_pgmux\" is no group"));
  CHECK_FALSE(std::filesystem::exists(dir.file("s.sock")));
}

// ---------------------------------------------------------------------------
// The "*" entry serves any database name that has no entry of its own, with
// the server database named as the client asked.

TEST_CASE("session: wildcard database entry", "[session][routing]") {
  Pgmux mux(session_config("scram-sha-256", plaintext_userlist(), "",
                           database_section("\"*\"")));
  auto c = connect(mux.conninfo("app2", "scram_user", "scram_pw"));
  CHECK(scalar(c.get(), "SELECT current_database()") == "app2");
  auto a = connect(mux.conninfo("app", "scram_user", "scram_pw"));
  CHECK(scalar(a.get(), "SELECT current_database()") == "app");
  c.reset();
  a.reset();
  mux.finish();
}

// ---------------------------------------------------------------------------
// r. Command line: --check, --version, --help

TEST_CASE("cli: check version and help", "[cli]") {
  const std::string& bin = pgmux_bin();
  const auto& fx = fixture();
  TempDir dir;
  write_file(dir.file("userlist.txt"), plaintext_userlist());
  auto config = [&](const std::string& extra_pgmux) {
    return "[pgmux]\nlisten = [\"127.0.0.1:" + std::to_string(free_port()) +
           "\"]\npool_mode = \"session\"\n" + extra_pgmux + "\n[auth]\ntype = \"scram-sha-256\"\n" +
           "file = \"" + dir.file("userlist.txt") + "\"\n\n[databases.app]\nhost = \"" +
           fx.pg_host + "\"\nport = " + std::to_string(fx.pg_port) + "\n";
  };
  write_file(dir.file("good.toml"), config(""));
  write_file(dir.file("bad.toml"), config("default_pool_size = \"x\"\n"));

  SECTION("--check accepts a valid config") {
    auto r = run_process({bin, "--config", dir.file("good.toml"), "--check"}, {}, 20s);
    INFO(r.output);
    CHECK(r.exit_code == 0);
  }
  SECTION("--check rejects a broken config and names the key") {
    auto r = run_process({bin, "--config", dir.file("bad.toml"), "--check"}, {}, 20s);
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.output, Contains("default_pool_size"));
  }
  SECTION("--check with a missing file fails") {
    auto r = run_process({bin, "--config", dir.file("missing.toml"), "--check"}, {}, 20s);
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK_FALSE(trim(r.output).empty());
  }
  SECTION("starting with a broken config exits non-zero without crashing") {
    auto r = run_process({bin, "--config", dir.file("bad.toml")}, {}, 20s);
    INFO(r.output);
    CHECK_FALSE(r.timed_out);
    CHECK(r.signal == 0);
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.output, Contains("default_pool_size"));
    CHECK(bad_log_lines(r.output).empty());
  }
  SECTION("--version") {
    auto r = run_process({bin, "--version"}, {}, 20s);
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(std::regex_search(r.output, std::regex("[0-9]+\\.[0-9]+")));
  }
  SECTION("--help") {
    auto r = run_process({bin, "--help"}, {}, 20s);
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.output, Contains("--config"));
  }
}

// server_check_query / server_check_delay: a server idle for the delay runs
// the check before a client gets it; a check that fails takes the server out
// and the client gets another, three failures in a row end in an error.
TEST_CASE("session: server_check_query before reuse", "[session][pool][server_check]") {
  PgmuxConfig ok_cfg;
  ok_cfg.pgmux = "pool_mode = \"transaction\"\ndefault_pool_size = 2\nserver_check_delay = \"0s\"\n"
                 "server_check_query = \"SELECT 'pgmux server check'\"\n";
  ok_cfg.rest = auth_section("scram-sha-256") + "\n" + database_section("app") + "\n[log]\nlevel = \"debug\"\n";
  ok_cfg.userlist = plaintext_userlist();
  {
    Pgmux mux(ok_cfg);
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    for (int i = 0; i < 5; ++i) CHECK(scalar(c.get(), "SELECT " + std::to_string(i)) == std::to_string(i));
    CHECK_THAT(mux.log_text(), Contains("server_check_query before reuse"));
    // A server killed behind pgmux's back: the next query runs on a fresh one.
    Conn su = superuser();
    exec(su.get(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'scram_user' "
                   "AND datname = 'app' AND pid <> pg_backend_pid()");
    CHECK(wait_until([&] { return try_exec(c.get(), "SELECT 42").ok; }, 5s));
    CHECK(scalar(c.get(), "SELECT 43") == "43");
    c.reset();
    mux.finish();
  }
  PgmuxConfig bad_cfg = ok_cfg;
  bad_cfg.pgmux = replace_all(ok_cfg.pgmux, "SELECT 'pgmux server check'", "SELECT * FROM no_such_table_for_check");
  {
    Pgmux mux(bad_cfg);
    Conn c = connect(mux.conninfo("app", "scram_user", "scram_pw"));
    auto out = try_exec(c.get(), "SELECT 1");
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.message, Contains("server_check_query failed on 3 server connections"));
    CHECK_THAT(mux.log_text(), Contains("server_check_query failed"));
    CHECK(mux.alive());
    c.reset();
    mux.finish();
  }
}
