#include "src/client.hpp"

#include <spdlog/spdlog.h>
#include <strings.h>

#include <cctype>
#include <cstring>

#include "auth/crypto.hpp"
#include "auth/md5.hpp"
#include "protocol/inspect.hpp"
#include "src/params.hpp"
#include "protocol/sql_commands.hpp"
#include "protocol/sql_route.hpp"
#include "src/server.hpp"
#include "src/worker.hpp"

namespace pgmux {


namespace {
constexpr size_t kMaxAuthMessage = 16 * 1024;  // SASL/password messages are tiny

using proto::fatal_error;

// An ErrorResponse (severity ERROR) pgmux gives in place of the server's.
std::string error_message(const char* sqlstate, std::string message) {
  proto::ErrorFields e;
  e.sqlstate = sqlstate;
  e.message = std::move(message);
  std::string m;
  proto::error_response(m, e);
  return m;
}
// PostgreSQL's ErrorResponse about a prepared statement name: 26000 "does
// not exist" or 42P05 "already exists".
std::string statement_error(const char* sqlstate, std::string_view name, std::string_view what) {
  return error_message(sqlstate, "prepared statement \"" + std::string(name) + "\" " + std::string(what));
}
std::string does_not_exist_error(std::string_view name) { return statement_error("26000", name, "does not exist"); }
std::string already_exists(std::string_view name) { return statement_error("42P05", name, "already exists"); }
// SQL-level statements keep their names on the server, where pgmux's own
// (pgmux_<n>, pgmux.*) live too.
bool reserved_name(std::string_view name) { return name.starts_with("pgmux"); }
// What PostgreSQL says when a statement's result type changed since it was
// prepared. Drivers know it by its routine (asyncpg then drops its cached
// statement and retries; pgjdbc prepares again).
std::string stale_result_error() {
  proto::ErrorFields e;
  e.sqlstate = "0A000";
  e.message = "cached plan must not change result type";
  e.routine = "RevalidateCachedQuery";
  std::string m;
  proto::error_response(m, e);
  return m;
}
std::string unfollowable_error() {
  return error_message("0A000",
                       "pgmux cannot follow this statement under transaction pooling: PREPARE, "
                       "EXECUTE and DEALLOCATE must be alone in a query, with a plain or "
                       "double-quoted name");
}
std::string named_sql_command_error() {
  return error_message("0A000",
                       "pgmux cannot follow PREPARE, EXECUTE or DEALLOCATE in a named prepared statement under "
                       "transaction pooling (its server session may hold another client's statement of that "
                       "name): send it as a simple query or through the unnamed statement");
}
std::string reserved_name_error(std::string_view name) {
  return error_message("0A000", "prepared statement name \"" + std::string(name) +
                                    "\" is reserved by pgmux (names starting with \"pgmux\")");
}

// SQL-level statements live in the registry under a key of their own: the
// name and the PREPARE statement's text, which pgmux re-runs on a server
// that lacks the statement.
std::string sql_statement_key(std::string_view name, std::string_view prepare_sql) {
  std::string key = "\x01sql\x01";
  key.append(name);
  key.push_back('\x01');
  key.append(prepare_sql);
  return key;
}
std::string_view sql_prepare_text(const PreparedStatement& st) {
  return std::string_view(st.query).substr(st.query.rfind('\x01') + 1);
}
}  // namespace

ClientConnection::ClientConnection(Worker& w, Socket::Kind kind)
    : worker_(w),
      socket_(w.loop(), kind, this),
      id_(w.next_id()),
      framer_(w.config().max_packet_size) {}

ClientConnection::~ClientConnection() = default;

void ClientConnection::start() {
  login_started_ = worker_.now();
  worker_.client_started(this);
  socket_.set_nodelay();
  worker_.set_tcp_options(socket_, "C-" + std::to_string(id_));
  if (worker_.config().log.connections)
    spdlog::info("C-{} connection from {}", id_, socket_.peer_name());
  if (socket_.read_start() != 0) close(CloseReason::client_gone);
}

// ---------------------------------------------------------------------------
// Reading

void ClientConnection::on_read(Socket&, IoBufferPtr buf, size_t n) {
  last_active_ms_ = uv_now(worker_.loop());
  switch (state_) {
    case State::startup:
    case State::auth:
      handle_login_bytes(buf->data, n);
      return;
    case State::idle:
      handle_idle_data(std::move(buf), n);
      return;
    case State::linked:
      forward_to_server(std::move(buf), 0, n);
      return;
    case State::wait_server:
    case State::syncing:
      // Pipelined data while we wait for a server: keep it in order, and
      // stop reading once a few buffers are held.
      more_pending_.emplace_back(std::move(buf), n);
      if (more_pending_.size() >= kMaxPendingBuffers) socket_.read_stop();
      return;
    case State::wait_welcome:
      // Reading is stopped in this state; bytes here would be a bug.
      spdlog::error("C-{} unexpected data while {}", id_, int(state_));
      close(CloseReason::internal_error);
      return;
    case State::closing:
      return;
  }
}

void ClientConnection::on_read_end(Socket&, int status) {
  if (status != UV_EOF && status != UV_ECONNRESET)
    spdlog::debug("C-{} read error: {}", id_, uv_strerror(status));
  close(CloseReason::client_gone);
}

void ClientConnection::on_drained(Socket&) {
  // (A client queued behind another on the server does not read for it.)
  if (server_ && server_->linked_client() == this) server_->resume_reading();
}

void ClientConnection::on_write_error(Socket&, int status) {
  spdlog::debug("C-{} write error: {}", id_, uv_strerror(status));
  close(CloseReason::client_gone);
}

void ClientConnection::on_tls_handshake(Socket&, bool ok, const std::string& error) {
  if (ok) {
    spdlog::debug("C-{} TLS established ({})", id_, socket_.tls_description());
    return;
  }
  spdlog::warn("C-{} TLS handshake with {} failed: {}", id_, socket_.peer_name(), error);
  close(CloseReason::protocol_violation);
}

void ClientConnection::auth_lookup_done(AuthQuery::Answer a, const std::optional<auth::Secret>& secret) {
  if (state_ != State::auth || !auth_ || !auth_->lookup_pending) return;
  auth_->lookup_pending = false;
  if (a == AuthQuery::Answer::failed) {
    // The server could not answer: say so (it tells nothing about the user).
    auto e = fatal_error(proto::sqlstate::kConnectionFailure, "authentication lookup failed, try again later");
    close(CloseReason::wait_failed, &e);
    return;
  }
  auth_->looked_up = true;
  auth_->looked_up_secret = secret;
  if (socket_.read_start() != 0) {
    close(CloseReason::client_gone);
    return;
  }
  begin_auth();
}

void ClientConnection::on_closed(Socket&) {
  worker_.client_finished(this);
  delete this;
}

void ClientConnection::resume_reading() {
  if (state_ == State::linked && socket_.read_start() != 0) close(CloseReason::client_gone);
}

// ---------------------------------------------------------------------------
// Startup and authentication

void ClientConnection::handle_login_bytes(const uint8_t* data, size_t n) {
  auth_->inbuf.append(reinterpret_cast<const char*>(data), n);
  while (state_ == State::startup || state_ == State::auth) {
    if (auth_->failing) return;  // closed after auth_failure_delay
    proto::ByteSpan in = proto::as_bytes(auth_->inbuf);
    if (state_ == State::startup) {
      proto::StartupPacket p;
      auto r = proto::parse_startup(in, p, proto::kMaxStartupPacket,
                                    size_t(worker_.config().max_startup_params));
      if (r == proto::Result::need_more) return;
      if (r == proto::Result::invalid) {
        protocol_error("invalid startup packet: " + p.error);
        return;
      }
      auth_->inbuf.erase(0, p.consumed);
      if (!handle_startup_packet(p)) return;
    } else {
      auto fr = proto::peek_frame(in, kMaxAuthMessage);
      if (fr.result == proto::Result::need_more) return;
      if (fr.result == proto::Result::invalid) {
        protocol_error("invalid message length during authentication");
        return;
      }
      std::string msg = auth_->inbuf.substr(0, fr.frame.total());
      auth_->inbuf.erase(0, fr.frame.total());
      if (!handle_auth_message(fr.frame.type, proto::as_bytes(msg).subspan(5))) return;
    }
  }
  if (state_ != State::closing && auth_ && !auth_->inbuf.empty()) {
    // A client must wait for AuthenticationOk/ReadyForQuery before sending
    // queries; anything else at this point is a protocol violation.
    protocol_error("unexpected data before login completed");
  }
}

bool ClientConnection::handle_startup_packet(const proto::StartupPacket& p) {
  switch (p.kind) {
    case proto::StartupKind::ssl_request:
    case proto::StartupKind::gssenc_request: {
      // Bytes after the request, before our answer, would be read as if
      // they came over TLS: a man in the middle could inject them
      // (CVE-2021-23214).
      if (!auth_->inbuf.empty()) {
        protocol_error("data sent after SSLRequest before the response");
        return false;
      }
      const auto& ctx = worker_.client_tls();
      // TLS over TCP only (as PostgreSQL: libpq never asks on unix sockets).
      const bool tls = p.kind == proto::StartupKind::ssl_request && ctx &&
                       socket_.kind() == Socket::Kind::tcp && !socket_.tls();
      if (!tls) {
        if (socket_.tls()) {
          protocol_error("SSLRequest inside TLS");
          return false;
        }
        send(std::string("N"));  // the client may continue in plaintext
        return true;
      }
      send(std::string("S"));
      if (socket_.start_tls(ctx) != 0) {
        close(CloseReason::internal_error);
        return false;
      }
      return true;
    }
    case proto::StartupKind::cancel:
      worker_.handle_cancel(p.cancel_pid, p.cancel_key);
      close(CloseReason::cancel_request);
      return false;
    case proto::StartupKind::startup:
      break;
  }

  if (const std::string* u = p.param("user")) user_ = *u;
  const std::string* db = p.param("database");
  database_ = (db && !db->empty()) ? *db : user_;

  std::string out;
  // Protocol 3.x with x > 0, or _pq_ options: say what we support.
  std::vector<std::string> unrecognized;
  for (auto& [k, v] : p.params)
    if (k.rfind("_pq_.", 0) == 0) unrecognized.push_back(k);
  if ((p.protocol & 0xFFFF) != 0 || !unrecognized.empty())
    proto::negotiate_protocol_version(out, 0, unrecognized);
  if (!out.empty()) send(std::move(out));

  if (const auto& ctx = worker_.client_tls();
      ctx && !socket_.tls_established() && socket_.kind() == Socket::Kind::tcp &&
      conf::tls_required(ctx->mode())) {
    const std::string* u = p.param("user");
    spdlog::warn("C-{} plaintext login refused for user \"{}\" from {}: [tls] mode = \"{}\"", id_,
                 u ? *u : "", socket_.peer_name(), conf::to_string(ctx->mode()));
    auto e = fatal_error(proto::sqlstate::kInvalidAuthorization, "SSL required");
    close(CloseReason::auth_failed, &e);
    return false;
  }
  if (p.param("replication")) {
    auto e = fatal_error(proto::sqlstate::kFeatureNotSupported,
                   "replication connections are not supported by pgmux");
    close(CloseReason::unsupported, &e);
    return false;
  }
  // Counted here at once (every worker's clients count): the close path
  // uncounts it.
  if (!worker_.try_count_client(this)) {
    auto e = fatal_error(proto::sqlstate::kTooManyConnections,
                   "no more connections allowed (max_client_conn)");
    close(CloseReason::too_many_clients, &e);
    return false;
  }
  counted_ = true;
  // A storm of logins (each may cost a SCRAM computation and a server
  // login) is bounded; logged-in clients are not affected.
  if (worker_.logins_in_progress() > size_t(worker_.config().max_concurrent_logins)) {
    auto e = fatal_error(proto::sqlstate::kTooManyConnections,
                         "too many logins in progress (max_concurrent_logins), try again");
    close(CloseReason::too_many_clients, &e);
    return false;
  }

  for (auto& [k, v] : p.params) {
    if (k == "user" || k == "database" || k.rfind("_pq_.", 0) == 0) continue;
    if (k == "options") {
      std::string err;
      if (!parse_options(v, err)) {
        auto e = fatal_error(proto::sqlstate::kFeatureNotSupported, err);
        close(CloseReason::unsupported, &e);
        return false;
      }
      continue;
    }
    if (!valid_parameter_name(k)) {
      auto e = fatal_error(proto::sqlstate::kFeatureNotSupported, "unsupported startup parameter: " + k);
      close(CloseReason::unsupported, &e);
      return false;
    }
    set_param(desired_, k, v);
  }
  // PgBouncer's application_name_add_host: where the client came from, in
  // pg_stat_activity and PostgreSQL's logs (%a). Only at login: a later SET
  // application_name is the client's own.
  if (worker_.config().application_name_add_host && !is_admin_database(database_)) {
    const std::string* app = find_param(desired_, "application_name");
    set_param(desired_, "application_name",
              (app && !app->empty() ? *app : std::string("app")) + " - " + socket_.peer_name());
  }
  begin_auth();
  return state_ == State::auth;
}

bool ClientConnection::parse_options(const std::string& options, std::string& error) {
  std::vector<std::pair<std::string, std::string>> settings;
  if (!parse_options_string(options, settings, error)) return false;
  for (auto& [k, v] : settings) set_param(desired_, k, v);
  return true;
}

void ClientConnection::begin_auth() {
  const conf::Config& cfg = worker_.config();
  const bool admin_db = is_admin_database(database_);
  const conf::DatabaseConfig* db = admin_db ? nullptr : cfg.find_database(database_);
  const auth::Userlist* users = worker_.userlist();
  const auth::Secret* secret = users ? users->find(user_) : nullptr;
  std::string hba_refusal;
  const conf::AuthType type = auth_method(hba_refusal);
  // auth_query for users the userlist does not have (PgBouncer's order).
  const bool lookup = !secret && !admin_db && db && cfg.auth_lookup(*db).enabled && type != conf::AuthType::trust;
  if (lookup && !auth_->looked_up) {
    std::optional<auth::Secret> found;
    // Pending from here: the answer may come before lookup() returns.
    auth_->lookup_pending = true;
    state_ = State::auth;
    socket_.read_stop();  // nothing is due from the client until we answer
    const AuthQuery::Answer a = worker_.auth_query().lookup(this, *db, user_, found);
    if (a != AuthQuery::Answer::pending) auth_lookup_done(a, found);  // from the cache: same path
    return;
  }
  if (lookup && auth_->looked_up_secret) secret = &*auth_->looked_up_secret;

  if (!hba_refusal.empty())
    auth_->fail_reason = hba_refusal;
  else if (admin_db && admin_level(cfg, user_) == AdminLevel::none)
    auth_->fail_reason = "user \"" + user_ + "\" is not in [admin] users or stats_users";
  else if (!db && !admin_db) auth_->fail_reason = "unknown database \"" + database_ + "\"";
  else if (lookup && !secret) auth_->fail_reason = "unknown user \"" + user_ + "\" (auth query)";
  else if (users && !secret) auth_->fail_reason = "unknown user \"" + user_ + "\"";
  else if (!users && !secret && type != conf::AuthType::trust)
    auth_->fail_reason = "no userlist loaded, and no auth_query for this database";
  else if (type != conf::AuthType::trust && secret && secret->text.empty())
    auth_->fail_reason = "empty password in the userlist (like PostgreSQL, no password means no login)";
  else if (const auto& ctx = worker_.client_tls();
           ctx && ctx->mode() == conf::TlsMode::verify_full && socket_.tls_established() &&
           socket_.tls_peer_common_name() != user_ && !auth_->cert_name_mapped)
    auth_->fail_reason = "client certificate common name \"" + socket_.tls_peer_common_name() +
                         "\" is not the user name ([tls] mode = \"verify-full\")";
  auth_->mock = !auth_->fail_reason.empty();

  state_ = State::auth;
  std::string out;
  if (type == conf::AuthType::trust) {
    if (auth_->mock) auth_failed(auth_->fail_reason);
    else auth_succeeded();
    return;
  }
  bool use_scram = type == conf::AuthType::scram_sha_256 ||
                   (type == conf::AuthType::md5 && secret && secret->kind == auth::SecretKind::scram);
  if (!use_scram) {
    auth_->method = Method::md5;
    auth::random_bytes(auth_->md5_salt, sizeof(auth_->md5_salt));
    if (!auth_->mock) {
      if (secret->kind == auth::SecretKind::md5)
        auth_->md5_expected = auth::md5_response_from_hash(secret->text, auth_->md5_salt);
      else
        auth_->md5_expected = auth::md5_response(user_, secret->text, auth_->md5_salt);
    }
    proto::auth_md5(out, auth_->md5_salt);
  } else {
    auth_->method = Method::scram;
    if (!auth_->mock && secret->kind == auth::SecretKind::md5) {
      auth_->fail_reason = "the userlist holds an md5 hash for \"" + user_ +
                     "\", which cannot verify SCRAM; store a SCRAM verifier or plain password";
      auth_->mock = true;
    }
    if (auth_->mock) {
      // The count a plaintext user's verifier gets, so an unknown user
      // looks like one.
      auth_->scram.emplace(auth::ScramServer::mock(user_, worker_.config().scram_iterations));
    } else if (secret->kind == auth::SecretKind::scram) {
      auth_->scram.emplace(secret->scram);
      auth_->from_verifier = true;
    } else {
      auth_->scram.emplace(worker_.verifier_for_plain(user_, secret->text));
    }
    // Over TLS, channel binding (tls-server-end-point) is offered too, so
    // libpq's channel_binding=require works through pgmux.
    std::string cb = socket_.tls_end_point();
    if (!cb.empty()) {
      auth_->scram->set_channel_binding(std::move(cb));
      proto::auth_sasl(out, {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
    } else {
      proto::auth_sasl(out, {"SCRAM-SHA-256"});
    }
  }
  send(std::move(out));
}

// The method for this login: [auth] type, or with type = "hba" the first
// matching rule's. A refusal (no rule, reject, a client certificate the rule
// needs and the client lacks) fills `refusal` and returns the method the
// failing exchange goes through, so it looks like any wrong password.
// "trust" also stands for hba's cert (no password: the certificate was
// checked here).
conf::AuthType ClientConnection::auth_method(std::string& refusal) const {
  const conf::AuthType configured = worker_.config().auth.type;
  if (configured != conf::AuthType::hba) return configured;
  auth::HbaRequest req;
  req.unix_socket = socket_.kind() == Socket::Kind::pipe;
  req.tls = socket_.tls_established();
  int port = 0;
  if (!req.unix_socket) socket_.address(true, req.address, port);
  // A dual-stack listener ("*") sees IPv4 peers as ::ffff:a.b.c.d; the
  // rules for IPv4 ranges must still apply to them (PostgreSQL, with a
  // socket per family, sees them as IPv4).
  if (req.address.rfind("::ffff:", 0) == 0 && conf::is_ipv4(req.address.substr(7)))
    req.address = req.address.substr(7);
  req.database = database_;
  req.user = user_;
  const auth::HbaRules* rules = worker_.hba();
  const std::optional<auth::HbaMatch> m = rules ? rules->match(req) : std::nullopt;
  if (!m) {
    refusal = std::string("no hba rule matches (") + (req.unix_socket ? "local" : req.tls ? "TLS" : "no TLS") + ")";
    return conf::AuthType::scram_sha_256;
  }
  const std::string at = " (hba line " + std::to_string(m->line) + ")";
  if (m->method == auth::HbaMethod::reject) {
    refusal = "rejected" + at;
    return conf::AuthType::scram_sha_256;
  }
  // With map=, the ident file says which OS users / certificate names may
  // log in as which users; without, the name must be the user's.
  auto name_fits = [&](const std::string& name) {
    if (!m->map) return name == user_;
    const auth::IdentMap* ident = worker_.ident();
    return ident && ident->allows(*m->map, name, user_);
  };
  const std::string how = m->map ? " (map " + *m->map + ")" : std::string();
  if (m->clientcert) {
    if (!socket_.tls_peer_verified()) {
      refusal = "no client certificate verified by [tls] ca" + at;
      return conf::AuthType::scram_sha_256;
    }
    if (*m->clientcert == "verify-full" && !name_fits(socket_.tls_peer_common_name())) {
      refusal = "client certificate common name \"" + socket_.tls_peer_common_name() + "\" may not log in as \"" +
                user_ + "\"" + how + at;
      return conf::AuthType::scram_sha_256;
    }
    if (*m->clientcert == "verify-full" && m->map && auth_) auth_->cert_name_mapped = true;
  }
  if (m->method == auth::HbaMethod::peer) {
    std::string os_user;
    if (!socket_.peer_os_user(os_user)) {
      refusal = "peer authentication: the client's OS user is unknown" + at;
      return conf::AuthType::scram_sha_256;
    }
    if (!name_fits(os_user)) {
      refusal = "peer authentication: the client runs as OS user \"" + os_user + "\", which may not log in as \"" +
                user_ + "\"" + how + at;
      return conf::AuthType::scram_sha_256;
    }
  }
  switch (m->method) {
    case auth::HbaMethod::trust:
    case auth::HbaMethod::cert:
    case auth::HbaMethod::peer:
      return conf::AuthType::trust;
    case auth::HbaMethod::md5:
      return conf::AuthType::md5;
    case auth::HbaMethod::scram_sha_256:
    case auth::HbaMethod::reject:
      break;
  }
  return conf::AuthType::scram_sha_256;
}

bool ClientConnection::handle_auth_message(char type, proto::ByteSpan body) {
  if (type != 'p') {
    protocol_error(std::string("expected a password message, got '") + type + "'");
    return false;
  }
  if (auth_->method == Method::md5) {
    auto pw = proto::parse_password_message(body);
    if (!pw) {
      protocol_error("malformed password message");
      return false;
    }
    if (auth_->mock) auth_failed(auth_->fail_reason);
    else if (auth::constant_time_equal(*pw, auth_->md5_expected)) auth_succeeded();
    else auth_failed("password does not match (md5)");
    return false;
  }
  if (auth_->method != Method::scram || !auth_->scram) {
    protocol_error("unexpected password message");
    return false;
  }
  std::string reply, err;
  if (!auth_->scram_first_done) {
    auto init = proto::parse_sasl_initial_response(body);
    if (!init || !init->has_data) {
      protocol_error("malformed SASLInitialResponse");
      return false;
    }
    if (!auth_->scram->handle_client_first(init->mechanism, init->data, reply, err)) {
      auth_failed(auth_->mock ? auth_->fail_reason : "SCRAM: " + err);
      return false;
    }
    auth_->scram_first_done = true;
    std::string out;
    proto::auth_sasl_continue(out, reply);
    send(std::move(out));
    return true;
  }
  if (!auth_->scram->handle_client_final(proto::as_chars(body), reply, err)) {
    auth_failed(auth_->mock ? auth_->fail_reason : "SCRAM: " + err);
    return false;
  }
  std::string out;
  proto::auth_sasl_final(out, reply);
  send(std::move(out));
  if (auth_->from_verifier) worker_.remember_scram_keys(database_, user_, auth_->scram->keys());
  auth_->scram.reset();
  auth_succeeded();
  return false;
}

void ClientConnection::auth_failed(const std::string& log_reason) {
  spdlog::warn("C-{} login failed for user \"{}\" database \"{}\" from {}: {}", id_, user_,
               database_, socket_.peer_name(), log_reason);
  // One message for unknown user, unknown database and wrong password.
  auto e = fatal_error(proto::sqlstate::kInvalidPassword,
                 "password authentication failed for user \"" + user_ + "\"");
  const conf::Duration delay = worker_.config().auth_failure_delay;
  if (delay.count() > 0) {
    // Slow down password guessing: the answer comes after the delay, and
    // nothing more is read (or parsed) from this client meanwhile.
    socket_.read_stop();
    if (auth_) auth_->failing = true;
    worker_.close_later(this, worker_.now() + delay, CloseReason::auth_failed, std::move(e));
    return;
  }
  close(CloseReason::auth_failed, &e);
}

void ClientConnection::auth_succeeded() {
  // The looked-up secret served a right password: this database's server
  // logins may use it (never before the password, see AuthQuery::remember).
  if (auth_ && auth_->looked_up_secret) worker_.auth_query().remember(database_, user_, *auth_->looked_up_secret);
  // A reload during the password exchange may have removed the database
  // (or the admin user): checked again against the config in force now.
  const conf::DatabaseConfig* db =
      is_admin_database(database_) ? nullptr : worker_.config().find_database(database_);
  const bool gone = is_admin_database(database_) ? admin_level(worker_.config(), user_) == AdminLevel::none
                                                 : db == nullptr;
  if (gone) {
    auth_failed("database or admin user removed by a reload during the login");
    return;
  }
  if (db && (worker_.is_disabled(database_) || worker_.is_disabled(db->name))) {
    auto e = proto::fatal_error(proto::sqlstate::kCannotConnectNow,
                                "database \"" + database_ + "\" does not allow connections (DISABLE on the admin console)");
    close(CloseReason::disabled, &e);
    return;
  }
  // Per-database and per-user client limits count logged-in clients (after
  // the password, as PostgreSQL's own connection limits); the admin console
  // is not a database's client.
  if (db) {
    const conf::Config& cfg = worker_.config();
    const int max_db = cfg.effective_max_db_client_connections(db);
    const int max_user = cfg.effective_max_user_client_connections(user_);
    const Hub::LoginRefusal refused = worker_.hub().count_login(database_, max_db, user_, max_user);
    if (refused != Hub::LoginRefusal::none) {
      const bool by_db = refused == Hub::LoginRefusal::db;
      spdlog::warn("C-{} login refused: {} \"{}\" has {} clients (max_{}_client_connections)", id_,
                   by_db ? "database" : "user", by_db ? database_ : user_, by_db ? max_db : max_user,
                   by_db ? "db" : "user");
      auto e = proto::fatal_error(proto::sqlstate::kTooManyConnections,
                                  std::string("client connections exceeded (max_") + (by_db ? "db" : "user") +
                                      "_client_connections)");
      close(CloseReason::too_many_clients, &e);
      return;
    }
    login_counted_ = true;
  }
  auth_.reset();
  if (is_admin_database(database_)) {
    admin_ = std::make_unique<AdminState>();
    admin_->level = admin_level(worker_.config(), user_);
    admin_welcome();
    return;
  }
  const std::string& pool_user = (db && db->user) ? *db->user : user_;
  mode_ = worker_.config().effective_pool_mode(*db, user_);
  managed_ = mode_ != conf::PoolMode::session && worker_.config().max_prepared_statements > 0;
  uint16_t home = 0;
  if (std::shared_ptr<RouteState> route = db->routed() ? worker_.route_for(*db) : nullptr) {
    // The backend whose parameters the client is told: where a session
    // goes (target_session_attrs), else the primary.
    pool::Intent intent = pool::Intent::write;
    if (db->target_session_attrs) {
      switch (*db->target_session_attrs) {
        case conf::TargetSessionAttrs::read_write: intent = pool::Intent::write; break;
        case conf::TargetSessionAttrs::read_only: intent = pool::Intent::read_strict; break;
        case conf::TargetSessionAttrs::prefer_standby: intent = pool::Intent::prefer_read; break;
        case conf::TargetSessionAttrs::any: intent = pool::Intent::any; break;
      }
    }
    pool::Decision d = route->router.route(intent, {}, nullptr);
    // Per-transaction routing decides later; a login only needs some
    // backend's parameters (reads may work while writes are refused).
    if (d.backend < 0 && mode_ != conf::PoolMode::session && !db->target_session_attrs)
      d.backend = 0;
    if (d.backend < 0) {
      spdlog::warn("C-{} database \"{}\": {}", id_, database_, d.error.message);
      close(CloseReason::wait_failed, &d.error);
      return;
    }
    home = uint16_t(d.backend);
    if (mode_ != conf::PoolMode::session) {
      routing_ = std::make_unique<Routing>();
      routing_->route = route;
    }
  }
  pool_ = &worker_.pool_for(PoolKey{database_, pool_user, home}, *db);
  state_ = State::wait_welcome;
  socket_.read_stop();
  if (pool_->wait_welcome(this)) send_welcome();
}

void ClientConnection::pool_welcome_ready() {
  if (state_ == State::wait_welcome) send_welcome();
}

void ClientConnection::send_welcome() {
  // What the client is told is what it will get: the pool's server values,
  // overridden by what the client asked for (applied with SET on link).
  pool::Params told = pool_->welcome();
  for (auto& [k, v] : desired_) {
    if (auto* cur = find_param(told, k)) *cur = v;
  }
  if (!desired_.empty()) login_params_ = std::make_unique<pool::Params>(desired_);
  if (worker_.config().log.connections)
    spdlog::info("C-{} login ok: user \"{}\" database \"{}\" from {}", id_, user_, database_,
                 socket_.peer_name());
  complete_login(told);
}

// AuthenticationOk, the parameters, a cancel key, ReadyForQuery: the client
// is logged in (a pooled session or the admin console).
void ClientConnection::complete_login(const pool::Params& params) {
  std::string out;
  proto::auth_ok(out);
  for (const auto& [k, v] : params) proto::parameter_status(out, k, v);
  worker_.register_cancel_key(this, cancel_pid_, cancel_key_);
  proto::backend_key_data(out, cancel_pid_, cancel_key_);
  proto::ready_for_query(out, 'I');
  send(std::move(out));
  state_ = State::idle;
  last_active_ms_ = uv_now(worker_.loop());
  worker_.client_logged_in(this);
  if (socket_.read_start() != 0) close(CloseReason::client_gone);
}

// ---------------------------------------------------------------------------
// Logged in

void ClientConnection::admin_welcome() {
  const std::string* enc = find_param(desired_, "client_encoding");
  const std::string* app = find_param(desired_, "application_name");
  const pool::Params params = {
      {"server_version", "15.0"},        {"server_encoding", "UTF8"},
      {"client_encoding", enc ? *enc : "UTF8"}, {"DateStyle", "ISO, MDY"},
      {"TimeZone", "UTC"},                {"integer_datetimes", "on"},
      {"standard_conforming_strings", "on"}, {"application_name", app ? *app : ""},
      {"is_superuser", "off"}};
  spdlog::info("C-{} admin console login: user \"{}\" ({}) from {}", id_, user_,
               admin_->level == AdminLevel::admin ? "admin" : "stats only", socket_.peer_name());
  complete_login(params);
}

// The console speaks the simple query protocol only, like PgBouncer's.
void ClientConnection::admin_input(const uint8_t* data, size_t n) {
  AdminState& a = *admin_;
  if (n > 0) a.in.append(reinterpret_cast<const char*>(data), n);
  constexpr uint32_t kMaxAdminMessage = 64 * 1024;
  while (!a.busy && state_ != State::closing) {
    auto fr = proto::peek_frame(proto::as_bytes(a.in), kMaxAdminMessage);
    if (fr.result == proto::Result::need_more) return;
    if (fr.result == proto::Result::invalid) {
      protocol_error("invalid message on the admin console");
      return;
    }
    std::string msg = a.in.substr(0, fr.frame.total());
    a.in.erase(0, fr.frame.total());
    proto::ByteSpan body = proto::as_bytes(msg).subspan(5);
    std::string out;
    switch (fr.frame.type) {
      case 'X':
        close(CloseReason::client_terminate);
        return;
      case 'Q': {
        auto q = proto::parse_query(body);
        if (!q) {
          protocol_error("malformed Query");
          return;
        }
        AdminReply r = run_admin_command(worker_, *this, a.level, *q);
        out = std::move(r.out);
        if (r.later) {
          a.busy = true;
          if (!out.empty()) send(std::move(out));
          worker_.admin_wait(this, r.tag, r.db);
          continue;
        }
        proto::ready_for_query(out, 'I');
        send(std::move(out));
        if (r.close_after) close(CloseReason::shutdown);
        continue;
      }
      case 'S':
        a.skip = false;
        proto::ready_for_query(out, 'I');
        send(std::move(out));
        continue;
      case 'H':
        continue;
      default:
        if (!a.skip) {
          proto::ErrorFields e;
          e.sqlstate = proto::sqlstate::kFeatureNotSupported;
          e.message = "the admin console accepts only simple queries";
          proto::error_response(out, e);
          send(std::move(out));
          a.skip = true;
        }
        continue;
    }
  }
}

void ClientConnection::admin_done(const std::string& tag) {
  if (!admin_ || state_ == State::closing) return;
  std::string out;
  proto::command_complete(out, tag);
  proto::ready_for_query(out, 'I');
  send(std::move(out));
  admin_->busy = false;
  if (!admin_->in.empty()) admin_input(nullptr, 0);
}

void ClientConnection::resume_after_pause() {
  if (state_ == State::wait_server) acquire_server();
}

void ClientConnection::handle_idle_data(IoBufferPtr buf, size_t n) {
  if (admin_) {
    admin_input(buf->data, n);
    return;
  }
  // Terminate before any query: no server needed.
  if (framer_.at_boundary() && buf->data[0] == 'X') {
    close(CloseReason::client_terminate);
    return;
  }
  if (managed_ && answer_without_server(buf->data, n)) return;
  pending_ = std::move(buf);
  pending_len_ = uint32_t(n);
  state_ = State::wait_server;
  acquire_server();
  // Reading goes on while waiting: stopping and restarting would cost two
  // epoll_ctl calls per wait, and a client that hangs up while queued is
  // noticed at once. More data while waiting is kept (bounded) in order.
}

void ClientConnection::acquire_server() {
  if (worker_.is_paused(database_)) {
    worker_.park(this);  // RESUME calls resume_after_pause
    return;
  }
  pool::Pool* target = pool_;
  if (routing_ && !choose_backend(target)) return;
  if (!target->acquire_or_wait(this)) {
    proto::ErrorFields err = target->last_error();
    err.severity = "FATAL";
    close(CloseReason::wait_failed, &err);
    return;
  }
  // Queued: a busy server may take the longest waiting client that fits
  // behind its current request (server_pipelining).
  if (state_ == State::wait_server && waiting() == pool::ClientWait::server &&
      target->settings().server_pipelining && !target->can_grow() && pipeline_request_ready()) {
    pool::PoolServer* s = target->find_active([](pool::PoolServer* p) {
      return static_cast<ServerConnection*>(p)->pipeline_slot_open();
    });
    if (s) static_cast<ServerConnection*>(s)->fill_pipeline_slot();
  }
}

void ClientConnection::pool_server_assigned(pool::PoolServer* s) {
  server_ = static_cast<ServerConnection*>(s);
  state_ = State::syncing;
  server_->link(this);  // calls server_ready / server_sync_failed, maybe now
}

// ---------------------------------------------------------------------------
// Read/write routing

pool::Intent ClientConnection::routing_intent(bool& retryable) {
  retryable = false;
  const conf::DatabaseConfig& db = *routing_->route->db;
  if (db.target_session_attrs) {
    switch (*db.target_session_attrs) {
      case conf::TargetSessionAttrs::read_write: return pool::Intent::write;
      case conf::TargetSessionAttrs::read_only: return pool::Intent::read_strict;
      case conf::TargetSessionAttrs::prefer_standby: return pool::Intent::prefer_read;
      case conf::TargetSessionAttrs::any: return pool::Intent::any;
    }
  }
  if (db.read_routing == conf::ReadRouting::off) return pool::Intent::write;
  // Every transaction of a read-only session (SET, startup options).
  if (const std::string* v = find_param(desired_, "default_transaction_read_only"); v && *v == "on")
    return pool::Intent::read;
  if (!pending_ || !framer_.at_boundary()) return pool::Intent::write;
  proto::ByteSpan in(pending_->data, pending_len_);
  auto fr = proto::peek_frame(in, worker_.config().max_packet_size);
  if (fr.result != proto::Result::ok) return pool::Intent::write;
  proto::ByteSpan body = in.subspan(5, fr.frame.total() - 5);
  std::string_view sql;
  bool unnamed = true;
  if (fr.frame.type == 'Q') {
    auto q = proto::parse_query(body);
    if (!q) return pool::Intent::write;
    sql = *q;
  } else if (fr.frame.type == 'P') {
    auto p = proto::parse_parse(body);
    if (!p) return pool::Intent::write;
    sql = p->query;
    unnamed = p->statement.empty();
  } else {
    return pool::Intent::write;
  }
  if (proto::begins_read_only_transaction(sql)) return pool::Intent::read;
  if (db.read_routing != conf::ReadRouting::automatic || !unnamed ||
      !proto::is_read_only_statement(sql))
    return pool::Intent::write;
  // A single statement outside a transaction block: it may still call a
  // function that writes, so it goes to a replica only if it can be re-run
  // on the primary. That needs the whole request (a Query, or unnamed
  // extended messages up to Sync) in this buffer.
  if (fr.frame.type == 'Q') {
    retryable = true;
    return pool::Intent::read;
  }
  size_t pos = 0;
  while (pos < pending_len_) {
    auto m = proto::peek_frame(in.subspan(pos), worker_.config().max_packet_size);
    if (m.result != proto::Result::ok) break;
    char t = m.frame.type;
    pos += m.frame.total();
    if (t == 'S') {
      retryable = true;
      return pool::Intent::read;
    }
    if (t != 'P' && t != 'B' && t != 'D' && t != 'E' && t != 'H') break;
    if (t == 'P' && pos != m.frame.total()) break;  // a second Parse
  }
  return pool::Intent::write;
}

bool ClientConnection::choose_backend(pool::Pool*& target) {
  Routing& r = *routing_;
  RouteState& rs = *r.route;
  const conf::DatabaseConfig& db = *rs.db;
  bool retryable = false;
  pool::Intent intent = pool::Intent::write;
  if (r.force_primary) r.force_primary = false;
  else intent = routing_intent(retryable);
  const std::string& user = pool_->user();
  auto load = [&](size_t i) {
    pool::PoolCounts c = worker_.pool_for(PoolKey{database_, user, uint16_t(i)}, db, rs.owner).counts();
    return c.active + c.waiting_server;
  };
  pool::Decision d = rs.router.route(intent, r.wrote_at, load);
  if (d.backend < 0) {
    spdlog::warn("C-{} database \"{}\": {}", id_, database_, d.error.message);
    close(CloseReason::wait_failed, &d.error);
    return false;
  }
  target = &worker_.pool_for(PoolKey{database_, user, uint16_t(d.backend)}, db, rs.owner);
  r.write_link = intent == pool::Intent::write;
  // (r.wrote survives from a retry: the re-run statement writes.)
  r.read_link = !r.write_link && d.backend != rs.router.writer();
  r.retry.reset();
  if (r.read_link && retryable) {
    r.retry = acquire_io_buffer();
    std::memcpy(r.retry->data, pending_->data, pending_len_);
    r.retry_len = pending_len_;
  }
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("C-{} {} -> {}{}", id_, r.write_link ? "write" : "read",
                  rs.router.backend(size_t(d.backend)).name, d.fell_back ? " (fallback)" : "");
  return true;
}

size_t ClientConnection::read_unit_cut(const uint8_t* data, size_t n) const {
  proto::StreamFramer probe = framer_;
  if (probe.at_boundary() && server_->owed_ready() > 0) return 0;
  size_t pos = 0;
  while (pos < n) {
    auto piece = probe.next(proto::ByteSpan(data + pos, n - pos));
    pos += piece.consumed;
    if (piece.kind == proto::StreamFramer::Kind::invalid ||
        piece.kind == proto::StreamFramer::Kind::need_more)
      return n;
    if (piece.last_of_message && (piece.type == 'Q' || piece.type == 'S' || piece.type == 'F'))
      return pos;
  }
  return n;
}

void ClientConnection::hold(const uint8_t* data, size_t n, size_t* at) {
  while (n > 0) {
    const size_t k = std::min(n, IoBuffer::kSize);
    IoBufferPtr b = acquire_io_buffer();
    std::memcpy(b->data, data, k);
    auto where = at ? more_pending_.begin() + long((*at)++) : more_pending_.end();
    more_pending_.emplace(where, std::move(b), k);
    data += k;
    n -= k;
  }
  if (more_pending_.size() >= kMaxPendingBuffers) socket_.read_stop();
}

void ClientConnection::release_held() {
  if (ms_) ms_->wait_for_answers = false;
  if (ms_ && ms_->sync_after_answers) {
    // pgmux's DISCARD ALL ran (or failed, and the server now skips to the
    // client's Sync): a hidden Sync commits it at once, as PostgreSQL
    // does, unless the server is skipping.
    ms_->sync_after_answers = false;
    if (server_ && state_ == State::linked && !ms_->tracker.skipping()) {
      std::string out;
      send_request(out, 'S', {}, proto::ResponseTracker::Request::sync, /*hidden=*/true);
      server_->forward_copy(out);
    }
  }
  if (state_ != State::linked || more_pending_.empty()) return;
  auto held = std::move(more_pending_);
  more_pending_.clear();
  for (auto& [b, n] : held) {
    if (state_ != State::linked || !server_) return;
    forward_to_server(std::move(b), 0, n);
  }
  if (state_ == State::linked && more_pending_.size() < kMaxPendingBuffers &&
      (!server_ || !server_->write_backlogged()) && socket_.read_start() != 0)
    close(CloseReason::client_gone);
}

void ClientConnection::begin_retry() {
  if (routing_ && routing_->retry) routing_->retrying = true;
}

void ClientConnection::pool_wait_failed(const proto::ErrorFields& error) {
  proto::ErrorFields e = error;
  e.severity = "FATAL";
  close(CloseReason::wait_failed, &e);
}

// query_wait_notify: a NoticeResponse may come between any two messages, and
// nothing else goes to a waiting client.
void ClientConnection::pool_wait_notice() {
  proto::ErrorFields n;
  n.severity = "NOTICE";
  n.sqlstate = "00000";
  n.message = "no server connection is available yet: this client waits in the queue";
  n.detail = "waited query_wait_notify (" + conf::format_duration(worker_.config().query_wait_notify) +
             "); query_wait_timeout ends the wait";
  std::string out;
  proto::notice_response(out, n);
  send(std::move(out));
}

// ---------------------------------------------------------------------------
// server_pipelining

bool ClientConnection::pipelining_on() const {
  const pool::Pool* p = server_ ? server_->pool() : pool_;
  return p && p->settings().server_pipelining;
}

// A message forwarded as it is (forward_managed): its statement is
// pipeline-safe (ServerConnection::vet). Parse: the unnamed statement
// (named ones are inspected); Bind: of the unnamed statement to the
// unnamed portal. The whole body must be in this chunk.
void ClientConnection::vet_for_pipelining(char t, proto::ByteSpan body, uint32_t len) {
  switch (t) {
    case 'P': {
      // The unnamed statement: a NUL, then the query up to its own NUL.
      std::optional<std::string_view> q;
      if (body.size() >= len && len > 1) {
        std::string_view b(reinterpret_cast<const char*>(body.data()), len);
        if (size_t nul = b.find('\0', 1); nul != std::string_view::npos) q = b.substr(1, nul - 1);
      }
      const proto::PipelineKind kind = q ? proto::pipeline_kind(*q) : proto::PipelineKind::unsafe;
      vetted_unnamed_ = server_;
      vetted_unnamed_segment_ = server_->segment();
      vetted_unnamed_kind_ = kind;
      server_->vet(kind);
      return;
    }
    case 'B':
      if (vetted_unnamed_ == server_ && vetted_unnamed_segment_ == server_->segment())
        server_->vet(vetted_unnamed_kind_);
      return;
    case 'Q':
      if (body.size() < len) return;
      if (auto q = proto::parse_query(body.subspan(0, len))) server_->vet(proto::pipeline_kind(*q));
      return;
    default:
      return;
  }
}

// The client waits for a server with one complete request: messages up to
// a Sync or a Query, nothing after.
bool ClientConnection::pipeline_request_ready() const {
  if (state_ != State::wait_server || !pending_ || !more_pending_.empty() || admin_) return false;
  // Between messages: the waiting bytes start one.
  if (!framer_.at_boundary() || (named_ && !named_->held.empty()) || (ms_ && ms_->accumulating))
    return false;
  // A read on a replica is sent one segment at a time once the server owes
  // nothing (forward_to_server), and an auto-routed one may be re-run on
  // the primary: neither goes behind another client's request.
  if (routing_ && (routing_->retry || routing_->read_link)) return false;
  proto::ByteSpan data(pending_->data, pending_len_);
  size_t pos = 0;
  char last = 0;
  while (pos < data.size()) {
    auto fr = proto::peek_frame(data.subspan(pos), worker_.config().max_packet_size);
    if (fr.result != proto::Result::ok) return false;
    last = char(data[pos]);
    // SQL commands pgmux follows (PREPARE, EXECUTE, DEALLOCATE, DISCARD)
    // are judged against the server's state as it is when they are read
    // (a transaction status, settings to reset): not behind another
    // client's request, whose end changes that state.
    std::string_view body(reinterpret_cast<const char*>(data.data()) + pos + 5, fr.frame.total() - 5);
    if (last == 'Q' && proto::may_be_sql_command(body)) return false;
    if (last == 'P') {
      const size_t nul = body.find('\0');
      if (nul == std::string_view::npos || proto::may_be_sql_command(body.substr(nul + 1))) return false;
    }
    pos += fr.frame.total();
  }
  return last == 'S' || last == 'Q';
}

void ClientConnection::pipelined_onto(ServerConnection* s) {
  leave_wait();
  server_ = s;
  s->queue_next(this);
  spdlog::debug("C-{} pipelined behind C-{} on {}", id_, s->linked_client() ? s->linked_client()->id() : 0,
                s->name());
  state_ = State::syncing;
  server_ready();
}

void ClientConnection::server_ready() {
  check_failures_ = 0;
  state_ = State::linked;
  if (routing_ && routing_->retry && server_) server_->arm_retry();
  if (pending_) {
    size_t n = pending_len_;
    pending_len_ = 0;
    forward_to_server(std::move(pending_), 0, n);
    if (state_ != State::linked) return;
  }
  if (!more_pending_.empty()) {
    auto more = std::move(more_pending_);
    more_pending_.clear();
    for (auto& [buf, n] : more) {
      if (state_ != State::linked || !server_) break;
      forward_to_server(std::move(buf), 0, n);
    }
    if (state_ != State::linked) return;
  }
  // This request may leave room behind it for a waiting client's.
  if (server_ && server_->linked_client() == this) server_->fill_pipeline_slot();
  if (state_ != State::linked) return;
  if (!server_ || !server_->write_backlogged()) {
    if (socket_.read_start() != 0) close(CloseReason::client_gone);
  }
}

void ClientConnection::server_released() {
  server_ = nullptr;
  vetted_unnamed_ = nullptr;
  if (state_ != State::linked) return;
  state_ = State::idle;
  if (routing_) {
    Routing& r = *routing_;
    if (r.write_link && r.wrote) r.wrote_at = worker_.now();
    r.read_link = r.write_link = r.wrote = false;
    if (r.retrying) {
      r.retrying = false;
      r.wrote = true;  // the statement writes: its primary run counts as a write
      r.force_primary = true;
      pending_ = std::move(r.retry);
      pending_len_ = uint32_t(r.retry_len);
      spdlog::debug("C-{} replica refused a read as read-only: re-running it on the primary", id_);
    } else {
      r.retry.reset();
    }
  }
  if (ms_) {
    ms_->wait_for_answers = false;  // everything was answered
    // The unnamed statement stays on that server: an Execute of it in a
    // later transaction (elsewhere) is not the armed command.
    ms_->arms.reset();
  }
  if (!pending_ && !more_pending_.empty()) {
    // Held while a replica answered, or while pgmux waited for answers
    // before answering a request itself: the next transaction starts here.
    pending_ = std::move(more_pending_.front().first);
    pending_len_ = uint32_t(more_pending_.front().second);
    more_pending_.erase(more_pending_.begin());
  }
  if (pending_) {
    state_ = State::wait_server;
    acquire_server();
    return;  // server_ready restarts reading
  }
  if (socket_.read_start() != 0) close(CloseReason::client_gone);
}

void ClientConnection::server_sync_failed(const proto::ErrorFields& e) {
  server_ = nullptr;  // the server cleans itself up
  proto::ErrorFields f = e;
  f.severity = "FATAL";
  close(CloseReason::server_gone, &f);
}

void ClientConnection::server_check_failed() {
  server_ = nullptr;
  if (state_ != State::syncing) return;
  // A check that fails on every server (a broken server_check_query, a
  // backend refusing work) must not loop: three servers, then an error.
  if (++check_failures_ >= 3) {
    check_failures_ = 0;
    auto e = fatal_error(proto::sqlstate::kConnectionFailure,
                         "server_check_query failed on 3 server connections in a row");
    close(CloseReason::server_gone, &e);
    return;
  }
  state_ = State::wait_server;
  acquire_server();
}

void ClientConnection::server_lost(const proto::ErrorFields& e) {
  server_ = nullptr;
  close(CloseReason::server_gone, &e);
}

void ClientConnection::parameter_changed(std::string_view name, std::string_view value) {
  // in_hot_standby and the like describe the server, not the session: a
  // client that saw a promotion does not ask the next server to change it.
  if (read_only_parameter(name)) return;
  set_param(desired_, name, value);
  params_id_ = 0;
}

void ClientConnection::keep_told_value(std::string_view name, std::string_view value) {
  if (find_param(desired_, name) || read_only_parameter(name)) return;
  set_param(desired_, name, value);
  params_id_ = 0;
}

// The SET and RESET statements the client sends. Custom settings (myapp.x)
// are in no catalog, so the names they use are read by name after its
// transactions (ServerConnection::read_settings), 64 at most. And the server
// is told, in order, which of the SET tags a simple query will answer with
// change nothing beyond the transaction (SET LOCAL, SET TRANSACTION): those
// cost no read. An unnamed statement holding a SET is armed, and each
// Execute of it tells the same (arm_execute). A named one cannot be
// followed to its Executes: from then on no SET tag of this client is taken
// as a SET LOCAL.
void ClientConnection::note_set_statements(std::string_view query, bool simple_query, bool named) {
  if (!proto::may_need_reading(query)) return;
  ManagedState& m = ms();
  const std::vector<bool> set_tags = proto::scan_set_statements(query, m.custom_settings);
  if (set_tags.empty()) return;
  // Where a literal ends may depend on standard_conforming_strings (or on
  // the client encoding) when it holds a backslash: then the statements
  // pgmux sees may not be the server's, and none is taken for a SET LOCAL.
  const bool sure = query.find('\\') == std::string_view::npos;
  if (named) {
    m.named_sets = true;
  } else if (simple_query) {
    if (server_)
      for (bool scoped : set_tags) server_->expect_set_tag(scoped && sure && !m.named_sets);
  } else {
    // Only a Parse right after a Sync surely runs: after an error the server
    // skips it, and the unnamed statement it keeps is an older one.
    arm(ManagedState::Armed::Kind::set, 0).scoped = set_tags[0] && sure && server_ && server_->after_sync();
  }
}

void ClientConnection::settings_read(const pool::Params* read, const pool::Params& reported) {
  if (state_ == State::syncing) state_ = State::linked;
  if (!read) return;
  const pool::Params& unreported = *read;
  pool::Params next;
  next.reserve(desired_.size() + unreported.size());
  for (const auto& [k, v] : desired_) {
    if (find_param(reported, k) || read_only_parameter(k)) {
      next.emplace_back(k, v);
    } else if (!find_param(unreported, k) && login_params_) {
      // Not on the session now: a RESET (or SET ... TO DEFAULT). As in
      // PostgreSQL, a startup option is what that returns to.
      if (const std::string* at_login = find_param(*login_params_, k)) next.emplace_back(k, *at_login);
    }
  }
  for (const auto& [k, v] : unreported) set_param(next, k, v);
  if (next != desired_) {
    desired_ = std::move(next);
    params_id_ = 0;
  }
}

uint64_t ClientConnection::params_id() {
  if (params_id_ == 0) params_id_ = worker_.param_set_id(desired_);
  return params_id_;
}

// Read your writes: a command tagged "SELECT n" may still have written
// (CREATE TABLE AS, SELECT INTO). On a primary link the statements the
// client sends are classified too (may_write_behind_read_tag; a Query or
// Parse cut across reads counts as a write at once).
void ClientConnection::note_sql_writes(const uint8_t* data, size_t n) {
  if (!framer_.at_boundary()) return;  // judged when the message began
  size_t pos = 0;
  while (pos < n && !routing_->wrote) {
    const char t = char(data[pos]);
    auto fr = proto::peek_frame(proto::ByteSpan(data + pos, n - pos), worker_.config().max_packet_size);
    if (fr.result != proto::Result::ok) {
      if (t == 'Q' || t == 'P') routing_->wrote = true;
      return;
    }
    proto::ByteSpan body(data + pos + 5, fr.frame.total() - 5);
    if (t == 'Q') {
      auto q = proto::parse_query(body);
      if (!q || proto::may_write_behind_read_tag(*q)) routing_->wrote = true;
    } else if (t == 'P') {
      auto p = proto::parse_parse(body);
      if (!p || proto::may_write_behind_read_tag(p->query)) routing_->wrote = true;
    }
    pos += fr.frame.total();
  }
}

void ClientConnection::forward_to_server(IoBufferPtr buf, size_t offset, size_t n) {
  if (server_->has_next() && server_->linked_client() == this) {
    // Another client's request follows this one's on the server: what this
    // client sends now waits for the next transaction (server_released).
    hold(buf->data + offset, n);
    return;
  }
  if (routing_ && routing_->write_link && !routing_->wrote && routing_->route->router.size() > 1 &&
      routing_->route->db->read_your_writes)
    note_sql_writes(buf->data + offset, n);
  if (routing_ && routing_->read_link) {
    // A replica must see only the transaction it was chosen for: what the
    // client pipelines after a Query or Sync waits until the answer says
    // whether the transaction goes on (then it follows) or ended (then it
    // is routed afresh).
    if (!more_pending_.empty()) {
      if (offset == 0) {
        more_pending_.emplace_back(std::move(buf), n);
        if (more_pending_.size() >= kMaxPendingBuffers) socket_.read_stop();
      } else {
        hold(buf->data + offset, n);
      }
      return;
    }
    size_t cut = read_unit_cut(buf->data + offset, n);
    if (cut < n) {
      hold(buf->data + offset + cut, n - cut);
      n = cut;
      if (n == 0) return;
    }
  }
  if (managed_) {
    // A failed delivery to the client (pgmux's own answers go out in the
    // middle) closes it only once this chunk is done with: the code below
    // goes on using the server.
    in_forward_managed_ = true;
    forward_managed(std::move(buf), offset, n);
    in_forward_managed_ = false;
    if (delivery_failed_ && state_ != State::closing) close(CloseReason::client_gone);
    return;
  }
  proto::ByteSpan chunk(buf->data + offset, n);
  size_t pos = 0;
  while (pos < chunk.size()) {
    auto piece = framer_.next(chunk.subspan(pos));
    if (piece.kind == proto::StreamFramer::Kind::invalid) {
      protocol_error("invalid message length");
      return;
    }
    if (piece.kind == proto::StreamFramer::Kind::header) {
      if (piece.type == 'X') {
        // Forward what came before Terminate; the session ends here.
        if (pos > 0) server_->forward(std::move(buf), offset, pos);
        close(CloseReason::client_terminate);
        return;
      }
      server_->count_untracked_request(piece.type);
    }
    if (piece.kind == proto::StreamFramer::Kind::need_more) break;
    pos += piece.consumed;
  }
  server_->forward(std::move(buf), offset, n);
  if (server_ && server_->write_backlogged()) socket_.read_stop();
}

namespace {
using Req = proto::ResponseTracker::Request;
using namespace std::string_view_literals;

void append_message(std::string& out, char type, std::string_view body) {
  proto::MessageWriter w(out, type);
  w.bytes(body);
  w.finish();
}

std::string parse_complete() {
  std::string m;
  append_message(m, '1', {});
  return m;
}

std::string close_complete() {
  std::string m;
  append_message(m, '3', {});
  return m;
}

// Whether a message must be seen whole under transaction pooling, decided
// from its first body bytes when they are in the same read (`body` = what
// follows the header in the chunk): only messages naming a statement, and
// simple queries that may be PREPARE/EXECUTE/DEALLOCATE/DISCARD. Everything
// else (unnamed Parse/Bind/Describe, ordinary queries) passes untouched.
// Whether the query text starting at body[at] (as far as this read has it)
// may be a SQL command pgmux follows (PREPARE, EXECUTE, DEALLOCATE, DISCARD
// ALL) or a SET / RESET whose custom setting names pgmux notes, maybe after
// blanks or comments. A first byte rules most queries out ("SELECT" its
// first word).
bool may_be_sql_command_at(proto::ByteSpan body, size_t at) {
  if (at >= body.size()) return true;  // not read yet
  switch (body[at]) {
    case 'P': case 'p': case 'E': case 'e': case 'D': case 'd': case 'S': case 's': case 'R': case 'r':
    case ' ': case '\t': case '\r': case '\n': case '\f': case '\v': case '-': case '/': {
      const char* q = reinterpret_cast<const char*>(body.data()) + at;
      const size_t avail = body.size() - at;
      const void* end = std::memchr(q, 0, avail);
      return proto::may_need_reading(
          std::string_view(q, end ? size_t(static_cast<const char*>(end) - q) : avail));
    }
    default:
      return false;
  }
}

// `armed`: the unnamed statement or a portal holds a SQL command pgmux
// follows, so Execute (and Bind and Close, which move it) are inspected too.
// `watch_portal`: a portal Describe tells a statement's result type
// (NamedState::bound).
bool needs_inspection(char t, proto::ByteSpan body, bool armed, bool watch_portal) {
  switch (t) {
    case 'E':
      return armed;
    case 'P':  // statement name first; an unnamed one may be a SQL command
      return body.empty() || body[0] != 0 || may_be_sql_command_at(body, 1);
    case 'B':  // portal name, then statement name (and the armed statement's portal)
      return armed || body.size() < 2 || body[0] != 0 || body[1] != 0;
    case 'C':  // 'S'/'P', then the name
      if (armed) return true;
      [[fallthrough]];
    case 'D':
      return body.size() < 2 || (body[0] == 'S' && body[1] != 0) || (watch_portal && body[0] == 'P');
    case 'Q':
      return may_be_sql_command_at(body, 0);
    default:
      return false;
  }
}

std::string command_complete_and_ready(std::string_view tag, char status) {
  std::string m;
  proto::command_complete(m, tag);
  proto::ready_for_query(m, status);
  return m;
}
}  // namespace

// Client bytes under transaction pooling with prepared statements. Most
// chunks go out untouched (the common Bind/Execute/Sync of an unnamed
// statement, simple queries); a chunk is rebuilt only when it carries a
// message that names a statement.
void ClientConnection::forward_managed(IoBufferPtr buf, size_t offset, size_t n) {
  proto::ByteSpan chunk(buf->data + offset, n);
  ManagedState& m = ms();  // never freed while the client lives
  if (m.wait_for_answers) {  // after what is already held
    hold(chunk.data(), chunk.size());
    return;
  }
  std::string out;
  // Output == input bytes so far. Not so when the chunk goes on with the
  // body of a message pgmux inspects or drops, or after held header bytes.
  bool raw = (!named_ || named_->held.empty()) && !m.accumulating && !m.drop_current;
  size_t raw_end = 0;        // raw: bytes of the chunk to send as they are
  // From here on the output differs from the input: it starts with the
  // chunk's bytes up to raw_end.
  auto leave_raw = [&] {
    if (!raw) return;
    out.assign(proto::as_chars(chunk.subspan(0, raw_end)));
    raw = false;
  };
  size_t pos = 0;
  while (pos < chunk.size()) {
    size_t start = pos;
    auto piece = framer_.next(chunk.subspan(pos));
    using K = proto::StreamFramer::Kind;
    if (piece.kind == K::invalid) {
      protocol_error("invalid message length");
      return;
    }
    if (piece.kind == K::need_more) {
      // The chunk ends inside a header: hold those bytes until the type is known.
      if (framer_.in_header()) named().held.append(proto::as_chars(chunk.subspan(start)));
      break;
    }
    pos += piece.consumed;
    proto::ByteSpan bytes = chunk.subspan(start, piece.consumed);
    if (piece.kind == K::header) {
      char t = piece.type;
      if (t == 'X') {
        leave_raw();
        if (!out.empty()) server_->forward_copy(out);
        close(CloseReason::client_terminate);
        return;
      }
      m.drop_current = false;
      if (m.skip_to_sync && t != 'S') {
        // After an error pgmux reported itself, the server would ignore
        // everything up to Sync: so does pgmux.
        leave_raw();
        if (named_) named_->held.clear();
        m.drop_current = true;
        m.pass_current = false;
        m.accumulating = false;
        continue;
      }
      if (t == 'S') m.skip_to_sync = false;
      // Whatever may bind, close or replace a portal forgets the bound one
      // (NamedState::bound; a Close of a portal does when it is read).
      if (named_ && (t == 'B' || t == 'Q' || t == 'S' || t == 'F' || t == 'E')) named_->bound.id = 0;
      proto::ByteSpan after = chunk.subspan(pos);
      if (needs_inspection(t, after, m.arms != nullptr, named_ && named_->bound.id != 0)) {
        leave_raw();
        if (named_) named_->held.clear();
        m.accumulating = true;
        m.acc_type = t;
        named().acc.clear();
        m.pass_current = false;
        if (piece.last_of_message) {  // no body: malformed for these types
          protocol_error("empty extended-protocol message");
          return;
        }
        continue;
      }
      m.pass_current = true;
      switch (t) {
        case 'Q': m.tracker.sent(Req::query); break;
        case 'S': m.tracker.sent(Req::sync); break;
        case 'F': m.tracker.sent(Req::function_call); break;
        case 'E': m.tracker.sent(Req::execute); break;
        case 'P':
          if (m.arms) disarm_statement();
          m.tracker.sent(Req::parse);
          break;
        case 'B': m.tracker.sent(Req::bind); break;
        case 'D': m.tracker.sent(after[0] == 'S' ? Req::describe_stmt : Req::describe_portal); break;
        case 'C': m.tracker.sent(Req::close); break;
        case 'c': case 'f': m.tracker.copy_in_finished(); break;
        default: break;
      }
      if (pipelining_on()) vet_for_pipelining(t, after, piece.body_length);
      server_->count_request(t);
      server_->note_skipping(m.tracker);
      if (named_ && !named_->held.empty()) {
        leave_raw();
        out += named_->held;
        named_->held.clear();
      }
      if (raw) raw_end = pos;
      else out.append(proto::as_chars(bytes));
      continue;
    }
    // body piece
    if (m.drop_current) continue;
    if (m.accumulating) {
      if (named().acc.size() + piece.data.size() > worker_.config().max_packet_size) {
        protocol_error("message too large");
        return;
      }
      named().acc.append(proto::as_chars(piece.data));
      if (piece.last_of_message) {
        m.accumulating = false;
        if (!process_message(m.acc_type, named().acc, out)) return;
        if (m.wait_for_answers) {
          // This message and the rest of the chunk wait for the answers; a
          // Flush makes the server send them even without a Sync.
          // Held input that arrived meanwhile (while a server was being
          // linked) comes after this.
          std::string msg;
          append_message(msg, m.acc_type, named().acc);
          size_t at = 0;
          hold(reinterpret_cast<const uint8_t*>(msg.data()), msg.size(), &at);
          hold(chunk.data() + pos, chunk.size() - pos, &at);
          leave_raw();
          append_message(out, 'H', {});
          break;
        }
        if (m.sync_after_answers) {
          // The rest of the chunk waits for the answers to this message
          // (sent): see release_held. An empty piece stands for nothing
          // held yet, so that the answers release the wait.
          m.wait_for_answers = true;
          size_t at = 0;
          if (pos < chunk.size()) hold(chunk.data() + pos, chunk.size() - pos, &at);
          else more_pending_.emplace(more_pending_.begin(), acquire_io_buffer(), 0);
          leave_raw();
          append_message(out, 'H', {});
          break;
        }
      }
    } else if (m.pass_current) {
      if (raw) raw_end = pos;
      else out.append(proto::as_chars(bytes));
    }
  }
  if (raw) {
    if (raw_end > 0) server_->forward(std::move(buf), offset, raw_end);
  } else if (!out.empty()) {
    server_->forward_copy(out);
  }
  flush_due_responses();
  // Requests sent while the server skips to Sync after an error never run.
  if (server_) {
    const std::vector<uint64_t> unprepared = m.tracker.take_unprepared();
    server_->forget_unprepared(unprepared);
    forget_failed_prepares(unprepared);
  }
  forget_unnamed();
  if (server_) server_->maybe_release();
  if (server_ && server_->write_backlogged()) socket_.read_stop();
}

ClientConnection::ManagedState& ClientConnection::make_ms() {
  ms_ = std::make_unique<ManagedState>();
  return *ms_;
}

bool ClientConnection::answer_without_server(const uint8_t* data, size_t n) {
  // Cheap refusal first: only Parse of a named statement, Close and Sync
  // can be answered here, and most chunks start with something else (an
  // unnamed Parse, a Bind, a Query).
  if (n < 5 || (data[0] != 'P' && data[0] != 'C' && data[0] != 'S') ||
      (data[0] == 'P' && (n < 6 || data[5] == 0)))
    return false;
  if (!framer_.at_boundary() || (named_ && !named_->held.empty()) || ms().skip_to_sync) return false;
  struct Step {
    char type;
    std::string name;
    StatementRef st;
  };
  std::vector<Step> steps;
  size_t pos = 0;
  while (pos < n) {
    auto fr = proto::peek_frame(proto::ByteSpan(data + pos, n - pos), worker_.config().max_packet_size);
    if (fr.result != proto::Result::ok) return false;
    proto::ByteSpan body(data + pos + 5, fr.frame.body_length());
    char t = fr.frame.type;
    pos += fr.frame.total();
    if (t == 'P') {
      auto m = proto::parse_parse(body);
      if (!m || m->statement.empty() ||
          (named_ && named_->stmts.count(std::string(m->statement))))
        return false;
      // A name defined twice in the chunk: the second Parse must fail (42P05,
      // unless a Close came between), which the general path handles.
      for (const Step& s : steps)
        if (s.type == 'P' && s.name == m->statement) return false;
      size_t types_at = m->statement.size() + 1 + m->query.size() + 1;
      std::string_view types(reinterpret_cast<const char*>(body.data()) + types_at,
                             body.size() - types_at);
      StatementRef st = worker_.prepared().get(m->query, types);
      if (!worker_.prepared().proven(st->id)) return false;
      steps.push_back({t, std::string(m->statement), st});
    } else if (t == 'C') {
      auto m = proto::parse_close(body);
      if (!m || m->kind != 'S' || m->name.empty()) return false;
      steps.push_back({t, std::string(m->name), nullptr});
    } else if (t == 'S') {
      if (pos != n) return false;  // Sync must end the chunk
      steps.push_back({t, {}, nullptr});
    } else {
      return false;
    }
  }
  if (steps.empty() || steps.back().type != 'S') return false;
  std::string out;
  for (auto& st : steps) {
    if (st.type == 'P') {
      named().stmts[st.name] = {st.st};
      append_message(out, '1', {});
    } else if (st.type == 'C') {
      named().stmts.erase(st.name);
      append_message(out, '3', {});
    } else {
      proto::ready_for_query(out, 'I');
    }
  }
  deliver(std::move(out));
  return true;
}

// A client Parse the server refused or skipped defines no name.
void ClientConnection::forget_unnamed() {
  if (!named_) {
    ms().tracker.take_unnamed();  // nothing was named
    return;
  }
  for (uint64_t tag : ms().tracker.take_unnamed()) {
    named().describing.erase(tag);  // a Describe that failed tells nothing
    auto it = named().unconfirmed.find(tag);
    if (it == named().unconfirmed.end()) continue;
    auto nt = named().name_tag.find(it->second.name);
    if (nt != named().name_tag.end() && nt->second == tag) {
      named().stmts.erase(it->second.name);
      named().name_tag.erase(nt);
    }
    named().unconfirmed.erase(it);
  }
  // Once nothing is in flight every remaining Parse has been answered.
  if (ms().tracker.empty()) {
    named().unconfirmed.clear();
    named().deallocs.clear();
    named().sql_prepares.clear();
    named().name_tag.clear();
    named().describing.clear();
  }
}

// pgmux's own answers (ParseComplete, CloseComplete) go out as soon as every
// earlier request has been answered and the server is between messages.
void ClientConnection::flush_due_responses() {
  if (!ms().tracker.special() || !server_ || !server_->at_message_boundary()) return;
  std::string due;
  if (ms().tracker.take_due(due)) deliver(std::move(due));
}

// SQL DEALLOCATE of one of the client's names, DEALLOCATE ALL or DISCARD
// ALL through the extended protocol (psycopg 3 in pipeline mode drops its
// statements so; Npgsql resets pooled connections with DISCARD ALL). What
// goes is the client's, not the server's (whose statements other clients
// share): the server runs DEALLOCATE of a statement pgmux prepares for the
// purpose (closed first, in case one was left), so the client gets the
// answers of the command (ParseComplete, BindComplete, NoData,
// CommandComplete), or the server's error where PostgreSQL would give one
// (25P02 in a failed transaction block). For DEALLOCATE ALL and DISCARD
// ALL, the server's CommandComplete is hidden and `reply` (pgmux's) takes
// its place. The client's names (and for DISCARD ALL its settings) go when
// the server completes the Execute (apply_deallocations).
bool ClientConnection::deallocate_extended(DeallocWhat what, const std::string& name,
                                           std::string reply, std::string& out) {
  send_request(out, 'P', "\0DEALLOCATE \"pgmux.dealloc\"\0\0\0"sv, Req::parse);
  const uint64_t tag = kDeallocTag | ms().next_parse_tag++;
  ManagedState::Armed& a = arm(ManagedState::Armed::Kind::deallocate, tag);
  a.what = what;
  a.reply = std::move(reply);
  if (what == DeallocWhat::one) a.name = name;
  return true;
}

bool ClientConnection::drop_all_pending() const {
  if (!named_) return false;
  for (const auto& [tag, d] : named_->deallocs)
    if (d.what != DeallocWhat::one) return true;
  return false;
}

void ClientConnection::disarm_portal(std::string_view portal) {
  if (!ms_ || !ms_->arms) return;
  std::erase_if(ms_->arms->portals, [&](const auto& p) { return p.first == portal; });
  if (ms_->arms->empty()) ms_->arms.reset();
}

// An Execute of a portal bound to an armed statement runs the SQL command:
// it carries the command's tag, a PREPARE's name is recorded as it goes
// (dropped again if the server refuses or skips it: forget_failed_prepares),
// and a DEALLOCATE's statement is prepared for it (it may run more than once).
bool ClientConnection::arm_execute(const std::string& body, std::string& out) {
  using Kind = ManagedState::Armed::Kind;
  const std::string_view portal(body.data(), strnlen(body.data(), body.size()));
  ManagedState::Armed* found = nullptr;
  if (ms().arms)
    for (auto& [name, armed] : ms().arms->portals)
      if (name == portal) found = &armed;
  if (!found) {
    send_request(out, 'E', body, Req::execute);
    return true;
  }
  ManagedState::Armed& a = *found;
  if (a.kind == Kind::set) {
    server_->expect_set_tag(a.scoped && !ms().named_sets);
    send_request(out, 'E', body, Req::execute);
    return true;
  }
  if (a.kind == Kind::prepare) {
    if (named().stmts.count(a.name) || named().sql_stmts.count(a.name)) {
      // Defined since the Parse, or by an earlier Execute of the portal:
      // PostgreSQL refuses the PREPARE here.
      report_own_error(already_exists(a.name), out, /*simple=*/false);
      ms().skip_to_sync = true;
      return true;
    }
    named().sql_stmts[a.name] = a.st;
    named().sql_prepares[a.tag] = a.name;
    server_->sql_prepared()[a.name] = a.st->id;
    send_request(out, 'E', body, Req::execute, /*hidden=*/false, a.tag);
    return true;
  }
  if (a.what == DeallocWhat::one && !ms().tracker.skipping()) {
    // PostgreSQL looks the name up when it runs the DEALLOCATE. Not the
    // client's: a same-named SQL statement of another client on this
    // server must not go.
    if (uncertain_name(a.name)) return wait_for_answers();
    if (!named().stmts.count(a.name) && !named().sql_stmts.count(a.name)) {
      report_own_error(does_not_exist_error(a.name), out, /*simple=*/false);
      ms().skip_to_sync = true;
      return true;
    }
  }
  const bool discard = a.what == DeallocWhat::discard && !ms().tracker.skipping();
  if (discard) {
    // Whether PostgreSQL would run it depends on what went since the Parse.
    if (awaiting_server()) return wait_for_answers();
    if (server_->pipelining() || server_->tx_status() != 'I') {
      report_own_error(error_message("25001", "DISCARD ALL cannot be executed within a pipeline"),
                       out, /*simple=*/false);
      ms().skip_to_sync = true;
      return true;
    }
  }
  if (a.what != DeallocWhat::discard_on_server) {
    // The statement the client's DEALLOCATE runs on (closed first, in case
    // one was left).
    send_request(out, 'C', "Spgmux.dealloc\0"sv, Req::close, /*hidden=*/true);
    send_request(out, 'P', "pgmux.dealloc\0SELECT\0\0\0"sv, Req::parse, /*hidden=*/true);
  }
  // In flight from here on (uncertain, drop_all_pending); applied when the
  // server completes the Execute (apply_deallocations).
  named().deallocs[a.tag] = {a.what, a.name};
  send_request(out, 'E', body, Req::execute, /*hidden=*/!a.reply.empty(), a.tag);
  // PostgreSQL commits a DISCARD ALL at once: it leaves no pipeline behind
  // (nor does pgmux's, once its hidden Sync went: sync_after_answers).
  if (a.what != DeallocWhat::discard) server_->client_executed();
  if (!a.reply.empty()) ms().tracker.synthetic(a.reply);
  if (discard) ms().sync_after_answers = true;
  if (a.what == DeallocWhat::discard_on_server && !ms().tracker.skipping()) {
    // Should the server run the client's DISCARD ALL, its settings go back
    // to the server connection's, not the client's login values: those
    // follow (skipped if the server refuses the DISCARD ALL).
    set_login_settings(out);
  }
  if (discard) {
    // The server's settings go back to the client's login values right
    // after the client's Execute (skipped with it if it fails; never if
    // the client does not execute it), so what follows in the segment sees
    // them. The server reports the values that change.
    run_hidden_extended("RESET ALL", 0, out);
    server_->settings_reset_to(set_login_settings(out));
  }
  return true;
}

// Hidden SETs of the client's startup values on the server; returns them.
pool::Params ClientConnection::set_login_settings(std::string& out) {
  pool::Params login = login_params_ ? *login_params_ : pool::Params{};
  for (const auto& [k, v] : login)
    if (!read_only_parameter(k)) run_hidden_extended(set_statement(k, v), 0, out);
  return login;
}

// A statement pgmux runs on the server in the middle of the client's
// extended-protocol segment (where a simple Query would end the implicit
// transaction), through a statement and a portal of pgmux's (the client's
// unnamed ones stay), all answers hidden but errors. The statement is
// closed first too, in case an error left one.
void ClientConnection::run_hidden_extended(const std::string& sql, uint64_t tag, std::string& out) {
  send_request(out, 'C', "Spgmux.sql\0"sv, Req::close, /*hidden=*/true);
  std::string parse = "pgmux.sql";
  parse.push_back('\0');
  parse.append(sql);
  parse.append("\0\0\0"sv);
  send_request(out, 'P', parse, Req::parse, /*hidden=*/true);
  // portal, statement, no parameter formats, parameters or result formats
  send_request(out, 'B', "pgmux.sql\0pgmux.sql\0\0\0\0\0\0\0"sv, Req::bind, /*hidden=*/true);
  send_request(out, 'E', "pgmux.sql\0\0\0\0\0"sv, Req::execute, /*hidden=*/true, tag);
  send_request(out, 'C', "Ppgmux.sql\0"sv, Req::close, /*hidden=*/true);
  send_request(out, 'C', "Spgmux.sql\0"sv, Req::close, /*hidden=*/true);
}

// A statement pgmux runs on the server, hidden: a simple Query between the
// client's simple queries, else in the middle of an extended-protocol
// segment (run_hidden_extended).
void ClientConnection::run_hidden(const std::string& sql, uint64_t tag, std::string& out, bool simple) {
  if (!simple) return run_hidden_extended(sql, tag, out);
  std::string body = sql;
  body.push_back('\0');
  send_request(out, 'Q', body, Req::query, /*hidden=*/true, tag);
}

// The server's SQL statement `name` goes (hidden; pgmux's records say it is
// there, and nothing in flight could make the server skip this).
void ClientConnection::deallocate_on_server(const std::string& name, std::string& out, bool simple) {
  run_hidden("DEALLOCATE " + quote_identifier(name), 0, out, simple);
  server_->sql_prepared().erase(name);
}

// The client's SQL statement `name` on this server, re-prepared (hidden)
// when the server has none or another client's under that name. After a
// schema change (the texts retired) it is the current statement of its
// name and text: a copy on the server may be from before the change, where
// the client prepared its own after it (PostgreSQL would run that); every
// EXECUTE comes with its RowDescription, so the client is bound to no
// result type. Not so a protocol-level Bind of the name (!follow_text): the
// client may have described the statement, and PostgreSQL refuses it with
// another result type. The use counts for the request about to go (a stale
// copy's 0A000 retires the texts).
void ClientConnection::ensure_sql_on_server(const std::string& name, StatementRef& st, std::string& out,
                                            bool simple, bool follow_text) {
  if (follow_text) st = worker_.prepared().renew(st);
  auto& on_server = server_->sql_prepared();
  auto it = on_server.find(name);
  if (it == on_server.end() || it->second != st->id) {
    if (it != on_server.end()) deallocate_on_server(name, out, simple);
    run_hidden(std::string(sql_prepare_text(*st)), st->id | kSqlStatementTag, out, simple);
    on_server[name] = st->id;
  }
  server_->note_statement_use(st->generation);
}

// SQL PREPARE, EXECUTE, DEALLOCATE ALL and DISCARD ALL sent as the unnamed
// statement of the extended protocol, as psycopg 3, asyncpg, pgx and Npgsql
// send every query: the rules of process_query, with the server answering
// the client's own messages wherever it can, so the answers (and the errors
// and their order) are PostgreSQL's.
bool ClientConnection::sql_command_extended(const proto::SqlCommand& cmd, std::string_view query,
                                            const std::string& body_str, std::string& out) {
  using Kind = proto::SqlCommand::Kind;
  auto pass = [&] {
    send_request(out, 'P', body_str, Req::parse);
    return true;
  };
  // After an error the server skips to Sync: nothing of it runs.
  if (ms().tracker.skipping()) return pass();
  // pgmux's records and the server's status must be settled first.
  if (awaiting_server()) return wait_for_answers();
  // In a failed transaction block the server refuses it (a syntax error,
  // else 25P02) and runs none of it.
  if (server_->in_failed_transaction()) return pass();
  auto& on_server = server_->sql_prepared();
  switch (cmd.kind) {
    case Kind::prepare: {
      if (reserved_name(cmd.name)) {
        report_own_error(reserved_name_error(cmd.name), out, /*simple=*/false);
        ms().skip_to_sync = true;
        return true;
      }
      if (auto mine = named().sql_stmts.find(cmd.name); mine != named().sql_stmts.end()) {
        // The server refuses it in PostgreSQL's order: a syntax error at
        // the Parse, else 42P05 at the Execute.
        ensure_sql_on_server(cmd.name, mine->second, out, /*simple=*/false);
        return pass();
      }
      if (named().stmts.count(cmd.name)) {  // a protocol-level statement of the client
        report_own_error(already_exists(cmd.name), out, /*simple=*/false);
        ms().skip_to_sync = true;
        return true;
      }
      StatementRef st = worker_.prepared().get(sql_statement_key(cmd.name, query), {});
      if (on_server.count(cmd.name)) deallocate_on_server(cmd.name, out, /*simple=*/false);  // another client's
      ManagedState::Armed& a =
          arm(ManagedState::Armed::Kind::prepare, st->id | kSqlStatementTag | kClientPrepareTag);
      a.name = cmd.name;
      a.st = st;
      return pass();
    }
    case Kind::execute:
      if (auto mine = named().sql_stmts.find(cmd.name); mine != named().sql_stmts.end()) {
        ensure_sql_on_server(cmd.name, mine->second, out, /*simple=*/false);
      } else if (reserved_name(cmd.name)) {
        // pgmux's own statements are no client's (one namespace: EXECUTE
        // would run a protocol-level pgmux_<n>).
        report_own_error(does_not_exist_error(cmd.name), out, /*simple=*/false);
        ms().skip_to_sync = true;
        return true;
      } else if (on_server.count(cmd.name)) {
        // Another client's statement must not run: once it is gone the
        // server answers 26000 where PostgreSQL would.
        deallocate_on_server(cmd.name, out, /*simple=*/false);
      }
      return pass();
    case Kind::deallocate_all: {
      std::string reply;
      proto::command_complete(reply, "DEALLOCATE ALL");
      return deallocate_extended(DeallocWhat::all, {}, std::move(reply), out);
    }
    case Kind::discard_all: {
      // Maybe in a transaction block or a pipeline, where PostgreSQL
      // refuses it (25001): the server decides. Should it run the DISCARD
      // ALL (after a ROLLBACK or COMMIT in the segment, say), every record
      // of that server's session goes, and the client's names and settings.
      if (server_->tx_status() != 'I' || server_->pipelining()) {
        const uint64_t tag = kDeallocTag | ms().next_parse_tag++;
        arm(ManagedState::Armed::Kind::deallocate, tag).what = DeallocWhat::discard_on_server;
        return pass();
      }
      // Settings are reset when the client's Execute goes (arm_execute).
      std::string reply;
      proto::command_complete(reply, "DISCARD ALL");
      return deallocate_extended(DeallocWhat::discard, {}, std::move(reply), out);
    }
    default:
      return pass();
  }
}

void ClientConnection::forget_failed_prepares(const std::vector<uint64_t>& tags) {
  if (!named_) return;
  for (uint64_t tag : tags) {
    const uint64_t both = kSqlStatementTag | kClientPrepareTag;
    if ((tag & both) != both) continue;
    named_->sql_prepares.erase(tag);
    const uint64_t id = tag & ~both;
    std::erase_if(named_->sql_stmts, [&](const auto& kv) { return kv.second->id == id; });
  }
}

void ClientConnection::apply_deallocations(const std::vector<uint64_t>& tags) {
  if (!named_) return;
  for (uint64_t tag : tags) {
    named_->sql_prepares.erase(tag);  // a PREPARE completed
    auto it = named_->deallocs.find(tag);
    if (it == named_->deallocs.end()) continue;
    switch (it->second.what) {
      case DeallocWhat::one:
        named_->stmts.erase(it->second.name);
        named_->sql_stmts.erase(it->second.name);
        break;
      case DeallocWhat::discard_on_server:
        if (server_) {
          server_->forget_session_state();
          server_->settings_reset_to(login_params_ ? *login_params_ : pool::Params{});
        }
        [[fallthrough]];
      case DeallocWhat::discard:
        reset_to_login_params();  // the server reported the values that changed
        [[fallthrough]];
      case DeallocWhat::all:
        // Server copies stay for other clients; this client's names go.
        named_->stmts.clear();
        named_->sql_stmts.clear();
        break;
    }
    named_->deallocs.erase(it);
  }
}

// DISCARD ALL: the client's settings go back to what it had at login.
// Returns a ParameterStatus for each reported value that changes.
std::string ClientConnection::reset_to_login_params() {
  pool::Params before;
  for_each_param([&](const std::string& k, const std::string& v) { before.emplace_back(k, v); });
  desired_ = login_params_ ? *login_params_ : pool::Params{};
  params_id_ = 0;
  std::string m;
  for_each_param([&](const std::string& k, const std::string& v) {
    const std::string* was = find_param(before, k);
    if (!was || *was != v) proto::parameter_status(m, k, v);
  });
  return m;
}

// After an error pgmux reports itself in place of the server's, the server's
// transaction must fail too, as PostgreSQL's would have: an explicit
// transaction block goes to the aborted state, and the implicit transaction
// of an extended-protocol segment rolls back at its Sync (so a statement
// earlier in the segment is not committed). pgmux sends a request that
// always fails and hides its error: a Bind of a statement no client name
// maps to (the server then skips to the client's Sync), or, for a simple
// Query, a statement that does not parse, whose ReadyForQuery (with the
// server's true transaction status) goes to the client.
//
// PostgreSQL refuses any statement but COMMIT/ROLLBACK in a failed
// transaction block before it looks at statement names (25P02), and so must
// pgmux. A simple Query is answered only when nothing is in flight, so the
// server's last ReadyForQuery tells (process_query sends the client's query
// as it is then). In an extended-protocol segment a COMMIT or ROLLBACK may
// precede without a Sync, so the server decides: pgmux first sends a hidden
// Parse of a probe statement (and its Close). In a failed transaction the server
// refuses it, the client sees that 25P02 (errors are never hidden), and the
// server skips pgmux's error and the rest to Sync; else the probe's answers
// are hidden and pgmux's error follows.
void ClientConnection::report_own_error(std::string error_response, std::string& out, bool simple) {
  if (!simple) probe_failed_transaction(out);
  ms().tracker.synthetic(std::move(error_response));
  fail_on_server(out, simple);
}

// The probe, when the server may be in a failed transaction block by the
// time it reaches the next request: anything in flight or unsynced, or the
// last ReadyForQuery said so. An idle server, or one in a healthy
// transaction with nothing pending, is not probed.
void ClientConnection::probe_failed_transaction(std::string& out) {
  if (!server_->busy() && server_->tx_status() != 'E') return;
  send_request(out, 'P', "pgmux.probe\0SELECT\0\0\0"sv, Req::parse, /*hidden=*/true);
  send_request(out, 'C', "Spgmux.probe\0"sv, Req::close, /*hidden=*/true);
}

void ClientConnection::fail_on_server(std::string& out, bool simple) {
  if (simple) {
    append_message(out, 'Q', "pgmux: fail the transaction\0"sv);
    ms().tracker.sent_failing(Req::query);
    server_->count_request('Q');
    server_->note_skipping(ms().tracker);
    return;
  }
  // Bind: portal "", statement "pgmux.fail", no formats, parameters or result formats.
  append_message(out, 'B', "\0pgmux.fail\0\0\0\0\0\0\0"sv);
  ms().tracker.sent_failing(Req::bind);
  server_->count_request('B');
}

void ClientConnection::emit_parse(const StatementRef& st, std::string& out, bool hidden,
                                  uint64_t client_tag) {
  auto hidden_close = [&](const std::string& server_name) {
    std::string body;
    body.push_back('S');
    body.append(server_name);
    body.push_back('\0');
    send_request(out, 'C', body, Req::close, /*hidden=*/true);
  };
  if (auto evicted = server_->statements().insert(st->id, st->server_name, server_->segment()))
    hidden_close(*evicted);
  // The same name is closed first too: the server may hold the statement
  // although pgmux's record says it does not, when an eviction Close was
  // skipped by the server after an error earlier in the pipeline (the record
  // forgets at eviction). Closing a missing statement is no error, so the
  // Parse never fails with 42P05.
  hidden_close(st->server_name);
  std::string body;
  body.append(st->server_name);
  body.push_back('\0');
  body.append(st->query);
  body.push_back('\0');
  body.append(st->param_types);
  if (pipelining_on()) server_->vet(st->pipeline_kind);
  send_request(out, 'P', body, Req::parse, hidden, st->id, client_tag);
}

// A Describe of statement `st`; the client's (`name`: its name for it) or
// pgmux's own (hidden). Its answer tells the result type (learn_shape).
void ClientConnection::send_describe(const StatementRef& st, std::string& out, bool hidden,
                                    const std::string& name) {
  std::string body = "S" + st->server_name;
  body.push_back('\0');
  append_message(out, 'D', body);
  uint64_t tag = 0;
  if (!hidden) tag = ms().next_parse_tag++;
  if (ms().tracker.sent_describe(hidden, st->id, tag) && tag) named().describing[tag] = {name, st->id};
  server_->count_request('D', hidden);
}

void ClientConnection::learn_shape(uint64_t tag, uint64_t shape) {
  if (!named_) return;
  auto it = named_->describing.find(tag);
  if (it == named_->describing.end()) return;
  auto s = named_->stmts.find(it->second.first);
  if (s != named_->stmts.end() && s->second.st->id == it->second.second) s->second.shape = shape;
  named_->describing.erase(it);
}

void ClientConnection::send_request(std::string& out, char type, std::string_view body, Req r,
                                    bool hidden, uint64_t tag, uint64_t client_tag) {
  append_message(out, type, body);
  ms().tracker.sent(r, hidden, tag, client_tag);
  server_->count_request(type, hidden);
  server_->note_skipping(ms().tracker);
}

// Whether the client has a statement `name` is not known yet: its Parse
// went in an earlier request segment and is not answered (if it fails,
// PostgreSQL would answer a use of the name with 26000, even in a failed
// transaction), or a DEALLOCATE of it (or DEALLOCATE ALL, DISCARD ALL) or
// a SQL PREPARE of it is in flight.
bool ClientConnection::uncertain_name(std::string_view name) {
  if (!awaiting_server()) return false;  // everything is answered
  auto nt = named().name_tag.find(std::string(name));
  if (nt != named().name_tag.end()) {
    auto u = named().unconfirmed.find(nt->second);
    if (u != named().unconfirmed.end() && u->second.segment != server_->segment()) return true;
  }
  for (const auto& [tag, d] : named().deallocs)
    if (d.what != DeallocWhat::one || d.name == name) return true;
  for (const auto& [tag, n] : named().sql_prepares)
    if (n == name) return true;
  return false;
}

bool ClientConnection::process_message(char type, const std::string& body_str, std::string& out) {
  proto::ByteSpan body = proto::as_bytes(body_str);
  auto pass = [&](Req r) {
    send_request(out, type, body_str, r);
    return true;
  };
  auto lookup = [&](std::string_view name) -> NamedState::ClientStatement* {
    auto it = named().stmts.find(std::string(name));
    return it == named().stmts.end() ? nullptr : &it->second;
  };
  // The client has a statement of that name (protocol or SQL level: one
  // namespace, as in PostgreSQL).
  auto owns = [&](const std::string& name) {
    return named().stmts.count(name) > 0 || named().sql_stmts.count(name) > 0;
  };
  auto uncertain = [&](std::string_view name) { return uncertain_name(name); };
  // A request that waited for keep_result_type's check was counted then.
  bool counted = false;
  auto prepared_on_server = [&](const StatementRef& st) {
    const bool hit = server_->statements().usable(st->id, server_->segment());
    if (pool::Pool* p = server_->pool(); p && !counted)
      ++(hit ? p->stats.prepared_hits : p->stats.prepared_misses);
    return hit;
  };
  auto ensure = [&](const StatementRef& st) {
    if (!prepared_on_server(st)) emit_parse(st, out, /*hidden=*/true);
  };
  // A client's statement keeps the result type the client was told: after
  // a schema change PostgreSQL refuses to run it with another (0A000). The
  // server's copy may be younger than the client's statement (pgmux
  // prepared it there for the client, or another client did), or older (a
  // stale plan of a statement the client prepared after the change): when
  // its result type is not known, or differs, pgmux describes it (hidden;
  // a copy that differs is first parsed again, so that it has the current
  // schema's plan) and the request waits for the answer. The client gets
  // 0A000 only when the current plan's result type differs from what it was
  // told. nullopt: go on; else process_message's result.
  auto keep_result_type = [&](NamedState::ClientStatement& cs) -> std::optional<bool> {
    // Told no result type, a statement of retired texts takes the current
    // one of its text: the client may have prepared it after the schema
    // change, onto a copy planned before it (pgmux answered the Parse), and
    // PostgreSQL would plan it anew; nothing the client knows changes. Not
    // while a Describe of it is in flight: its answer tells the client a
    // result type, which must stay the statement's (learn_shape).
    if (!cs.shape && cs.st->generation != worker_.prepared().generation() &&
        !ms().tracker.client_describes(cs.st->id))
      cs.st = worker_.prepared().renew(cs.st);
    const StatementRef& st = cs.st;
    const uint64_t told = cs.shape;
    const bool checked = ms().shape_wait == st->id;  // described for this request already
    ms().shape_wait = 0;
    counted = checked;
    if (!told || ms().tracker.skipping()) return std::nullopt;  // (the server skips the request)
    uint64_t has = 0;
    if (server_->statements().usable(st->id, server_->segment())) has = server_->statements().shape(st->id);
    if (has == told || has == proto::kUnreadableShape || told == proto::kUnreadableShape) return std::nullopt;
    if (checked) {
      // Still not known (it left the server): go on.
      if (!has) return std::nullopt;
      // The current plan's result type is not the client's: PostgreSQL's
      // error, and a schema change (statements prepared from now on get new
      // server names, as when a server reports one).
      if (st->generation == worker_.prepared().generation()) worker_.invalidate_plans(server_->dbname(), server_->name());
      report_own_error(stale_result_error(), out, /*simple=*/false);
      ms().skip_to_sync = true;
      return true;
    }
    if (has) server_->statements().erase(st->id);  // parsed again (Close + Parse)
    ensure(st);
    // The describe's 0A000, if the copy is stale, counts as this segment's.
    server_->note_statement_use(st->generation);
    send_describe(st, out, /*hidden=*/true);
    ms().shape_wait = st->id;
    return wait_for_answers();
  };
  // A Bind or Describe of a name that is no protocol-level statement of the
  // client: its SQL-level statement (one namespace, as in PostgreSQL), put
  // on this server first; else the client has no such statement, and must
  // not get another client's (or pgmux's) that the server holds so named.
  auto other_name = [&](std::string_view name, Req r) {
    if (ms().tracker.skipping()) return pass(r);  // the server skips it
    if (uncertain(name)) return wait_for_answers();  // its PREPARE is in flight
    const std::string key(name);
    if (auto sql = named().sql_stmts.find(key); sql != named().sql_stmts.end()) {
      if (awaiting_server()) return wait_for_answers();  // records and status settled first
      // In a failed transaction block PostgreSQL refuses it (25P02); the
      // probe makes the server do so whether it has the statement or not.
      if (server_->in_failed_transaction()) probe_failed_transaction(out);
      else ensure_sql_on_server(key, sql->second, out, /*simple=*/false, /*follow_text=*/false);
      return pass(r);
    }
    // PostgreSQL looks the name up first (26000, even in a failed
    // transaction block), and so does the server, unless it holds a
    // statement of that name that is not the client's.
    if (!server_->sql_prepared().count(key) && !reserved_name(name)) return pass(r);
    ms().tracker.synthetic(does_not_exist_error(name));
    fail_on_server(out, /*simple=*/false);
    ms().skip_to_sync = true;
    return true;
  };
  switch (type) {
    case 'P': {
      auto m = proto::parse_parse(body);
      if (!m) {
        protocol_error("malformed Parse message");
        return false;
      }
      if (!m->statement.empty()) note_set_statements(m->query, /*simple_query=*/false, /*named=*/true);
      if (m->statement.empty()) {
        disarm_statement();
        vetted_unnamed_ = nullptr;  // not read for server_pipelining
        proto::SqlCommand cmd = proto::classify_sql_command(m->query);
        if (cmd.kind == proto::SqlCommand::Kind::other) {
          if (!proto::unfollowable_sql_command(m->query)) {
            note_set_statements(m->query, /*simple_query=*/false, /*named=*/false);  // arms a SET
            return pass(Req::parse);
          }
          // The server skips it after an error, or refuses it in a failed
          // transaction block; else pgmux refuses it.
          if (ms().tracker.skipping()) return pass(Req::parse);
          if (awaiting_server()) return wait_for_answers();
          if (server_->in_failed_transaction()) return pass(Req::parse);
          report_own_error(unfollowable_error(), out, /*simple=*/false);
          ms().skip_to_sync = true;
          return true;
        }
        if (cmd.kind == proto::SqlCommand::Kind::deallocate)  // the name is looked up at the Execute
          return deallocate_extended(DeallocWhat::one, cmd.name, {}, out);
        return sql_command_extended(cmd, m->query, body_str, out);
      }
      // A SQL PREPARE, EXECUTE or DEALLOCATE of one name: shared by text
      // among clients, the statement would run or drop whatever the server
      // session holds under that name, another client's included. (DEALLOCATE
      // ALL and DISCARD ALL are seen by their command tags.)
      if (const auto k = proto::classify_sql_command(m->query).kind;
          k == proto::SqlCommand::Kind::prepare || k == proto::SqlCommand::Kind::execute ||
          k == proto::SqlCommand::Kind::deallocate ||
          (k == proto::SqlCommand::Kind::other && proto::unfollowable_sql_command(m->query))) {
        if (ms().tracker.skipping()) return true;  // the server would skip it: nothing to answer
        report_own_error(named_sql_command_error(), out, /*simple=*/false);
        ms().skip_to_sync = true;
        return true;
      }
      // A name defined after a DEALLOCATE ALL in flight would go with it.
      if (drop_all_pending() && awaiting_server()) return wait_for_answers();
      // PostgreSQL parses COMMIT, ROLLBACK... in a failed transaction block
      // too: no probe for those.
      const bool exit_stmt = proto::transaction_exit_statement(m->query);
      if (owns(std::string(m->statement))) {
        // Whether the name exists may hang on a Parse in flight.
        if (!ms().tracker.skipping() && awaiting_server()) return wait_for_answers();
        if (exit_stmt) {
          ms().tracker.synthetic(already_exists(m->statement));
          fail_on_server(out, /*simple=*/false);
        } else {
          report_own_error(already_exists(m->statement), out, /*simple=*/false);
        }
        ms().skip_to_sync = true;
        return true;
      }
      size_t types_at = m->statement.size() + 1 + m->query.size() + 1;
      std::string_view types(body_str.data() + types_at, body_str.size() - types_at);
      StatementRef st = worker_.prepared().get(m->query, types);
      std::string name(m->statement);
      named().stmts[name] = {st};
      uint64_t ctag = ms().next_parse_tag++;
      named().unconfirmed[ctag] = {name, server_->segment()};
      named().name_tag[name] = ctag;
      if (prepared_on_server(st)) {
        // PostgreSQL would refuse the Parse in a failed transaction block.
        if (!exit_stmt) probe_failed_transaction(out);
        ms().tracker.synthetic(parse_complete(), ctag);
      } else {
        emit_parse(st, out, /*hidden=*/false, ctag);
      }
      return true;
    }
    case 'B': {
      auto m = proto::parse_bind(body);
      if (!m) {
        protocol_error("malformed Bind message");
        return false;
      }
      // The armed statement bound to a portal: its Executes run the command
      // (another statement bound to that portal replaces it).
      if (ms().arms) {
        disarm_portal(m->portal);
        if (m->statement.empty() && ms().arms && ms().arms->statement)
          ms().arms->portals.emplace_back(std::string(m->portal), *ms().arms->statement);
      }
      if (m->statement.empty()) return pass(Req::bind);
      NamedState::ClientStatement* cs = lookup(m->statement);
      if (!cs) return other_name(m->statement, Req::bind);
      if (uncertain(m->statement)) return wait_for_answers();
      if (auto r = keep_result_type(*cs)) return *r;
      const StatementRef* st = &cs->st;
      if (!cs->shape) {  // (assigned in place: no allocation per Bind once the names fit)
        auto& b = named().bound;
        b.portal.assign(m->portal);
        b.name.assign(m->statement);
        b.id = (*st)->id;
      }
      ensure(*st);
      server_->note_statement_use((*st)->generation);
      std::string nb;
      nb.reserve(body_str.size() + (*st)->server_name.size());
      nb.append(body_str, 0, m->statement_offset);
      nb.append((*st)->server_name);
      nb.push_back('\0');
      nb.append(body_str, m->statement_offset + m->statement.size() + 1, std::string::npos);
      if (pipelining_on()) server_->vet((*st)->pipeline_kind);
      send_request(out, 'B', nb, Req::bind);
      return true;
    }
    case 'D': {
      auto m = proto::parse_describe(body);
      if (!m) {
        protocol_error("malformed Describe message");
        return false;
      }
      if (m->kind == 'P') {
        auto& b = named().bound;
        if (!b.id || m->name != b.portal) return pass(Req::describe_portal);
        const uint64_t tag = ms().next_parse_tag++;
        append_message(out, 'D', body_str);
        if (ms().tracker.sent_describe(/*hidden=*/false, b.id, tag, /*portal=*/true))
          named().describing[tag] = {b.name, b.id};
        server_->count_request('D');
        return true;
      }
      if (m->name.empty()) return pass(Req::describe_stmt);
      NamedState::ClientStatement* cs = lookup(m->name);
      if (!cs) return other_name(m->name, Req::describe_stmt);
      if (uncertain(m->name)) return wait_for_answers();
      if (auto r = keep_result_type(*cs)) return *r;
      const StatementRef* st = &cs->st;
      ensure(*st);
      server_->note_statement_use((*st)->generation);
      send_describe(*st, out, /*hidden=*/false, std::string(m->name));
      return true;
    }
    case 'C': {
      auto m = proto::parse_close(body);
      if (!m) {
        protocol_error("malformed Close message");
        return false;
      }
      if (m->kind == 'P') {
        if (named_) named_->bound.id = 0;
        if (ms().arms) disarm_portal(m->name);
      }
      if (m->kind == 'S' && !m->name.empty()) {
        // After an error the server skips to Sync, and so would PostgreSQL:
        // the name stays. Whether an error comes may hang on what is in flight.
        if (ms().tracker.skipping()) return true;
        if (awaiting_server()) return wait_for_answers();
        // The server copy stays for other clients; only this name goes
        // (a SQL-level statement's too: one namespace).
        named().stmts.erase(std::string(m->name));
        named().sql_stmts.erase(std::string(m->name));
        ms().tracker.synthetic(close_complete());
        return true;
      }
      return pass(Req::close);
    }
    case 'Q':
      return process_query(body_str, out);
    case 'E':
      return arm_execute(body_str, out);
    default:
      return pass(Req::query);  // not reached: only inspected types come here
  }
}

// SQL-level prepared statements under transaction pooling. Every server
// connection keeps its own PREPAREd names; pgmux re-runs a client's PREPARE
// (hidden) on the server its EXECUTE lands on, and never lets a client run
// or drop a statement another client prepared under the same name.
bool ClientConnection::process_query(const std::string& body_str, std::string& out) {
  auto q = proto::parse_query(proto::as_bytes(body_str));
  auto forward_query = [&](uint64_t tag = 0) {
    if (q) note_set_statements(*q, /*simple_query=*/true, /*named=*/false);  // as it goes, in its segment
    send_request(out, 'Q', body_str, Req::query, false, tag);
    return true;
  };
  if (!q) return forward_query();
  proto::SqlCommand cmd = proto::classify_sql_command(*q);
  const bool unfollowable =
      cmd.kind == proto::SqlCommand::Kind::other && proto::unfollowable_sql_command(*q);
  // pgmux may answer these itself, from the server's transaction status and
  // its own records: both must be settled first.
  if ((cmd.kind != proto::SqlCommand::Kind::other || unfollowable) && awaiting_server())
    return wait_for_answers();
  if (unfollowable) {
    // In a failed transaction block the server refuses it anyway.
    if (server_->in_failed_transaction()) return forward_query();
    report_own_error(unfollowable_error(), out, /*simple=*/true);
    return true;
  }
  auto& on_server = server_->sql_prepared();
  // pgmux's own error; the server's ReadyForQuery follows (report_own_error).
  auto does_not_exist = [&](const std::string& name) {
    report_own_error(does_not_exist_error(name), out, /*simple=*/true);
    return true;
  };
  // PREPARE, EXECUTE and DEALLOCATE [ALL] in a failed transaction block go
  // to the server as they are: it refuses them as PostgreSQL does (a syntax
  // error, else 25P02) and runs none of them, so pgmux's records stay as
  // they are (a hidden DEALLOCATE there would fail).
  if (cmd.kind != proto::SqlCommand::Kind::other && server_->in_failed_transaction())
    return forward_query();
  switch (cmd.kind) {
    case proto::SqlCommand::Kind::other:
      return forward_query();
    case proto::SqlCommand::Kind::prepare: {
      if (reserved_name(cmd.name)) {
        report_own_error(reserved_name_error(cmd.name), out, /*simple=*/true);
        return true;
      }
      // One namespace for SQL and protocol-level statements, as in PostgreSQL.
      if (auto mine = named().sql_stmts.find(cmd.name); mine != named().sql_stmts.end()) {
        // The client's statement is put on this server (as for EXECUTE) and
        // the PREPARE goes as it is: the server refuses it in PostgreSQL's
        // order (a syntax or analysis error first, else 42P05).
        ensure_sql_on_server(cmd.name, mine->second, out, /*simple=*/true);
        return forward_query();
      }
      if (named().stmts.count(cmd.name)) {
        report_own_error(already_exists(cmd.name), out, /*simple=*/true);
        return true;
      }
      StatementRef st = worker_.prepared().get(sql_statement_key(cmd.name, *q), {});
      auto it = on_server.find(cmd.name);
      if (it != on_server.end()) deallocate_on_server(cmd.name, out, /*simple=*/true);
      named().sql_stmts[cmd.name] = st;
      on_server[cmd.name] = st->id;
      return forward_query(st->id | kSqlStatementTag | kClientPrepareTag);
    }
    case proto::SqlCommand::Kind::execute: {
      auto mine = named().sql_stmts.find(cmd.name);
      // Not ours: never run what another client prepared under this name
      // (the client's session has no such statement).
      if (mine == named().sql_stmts.end()) return does_not_exist(cmd.name);
      ensure_sql_on_server(cmd.name, mine->second, out, /*simple=*/true);
      return forward_query();
    }
    case proto::SqlCommand::Kind::deallocate: {
      auto mine = named().sql_stmts.find(cmd.name);
      auto it = on_server.find(cmd.name);
      if (mine == named().sql_stmts.end()) {
        if (named().stmts.count(cmd.name)) {
          // A protocol-level statement of this client (PostgreSQL has one
          // namespace for both; psycopg 3 drops its statements this way).
          // The server copy stays for other clients.
          named().stmts.erase(cmd.name);
          ms().tracker.synthetic(command_complete_and_ready("DEALLOCATE", server_->tx_status()));
          return true;
        }
        return does_not_exist(cmd.name);
      }
      uint64_t id = mine->second->id;
      named().sql_stmts.erase(mine);
      if (it != on_server.end() && it->second == id) {
        on_server.erase(it);
        return forward_query();
      }
      ms().tracker.synthetic(command_complete_and_ready("DEALLOCATE", server_->tx_status()));
      return true;
    }
    case proto::SqlCommand::Kind::deallocate_all:
      // Server copies stay for other clients; this client's names go.
      named().stmts.clear();
      named().sql_stmts.clear();
      ms().tracker.synthetic(command_complete_and_ready("DEALLOCATE ALL", server_->tx_status()));
      return true;
    case proto::SqlCommand::Kind::discard_all: {
      if (server_->tx_status() != 'I') return forward_query();  // the server refuses it
      named().stmts.clear();
      named().sql_stmts.clear();
      std::string m = reset_to_login_params();
      m += command_complete_and_ready("DISCARD ALL", 'I');
      ms().tracker.synthetic(std::move(m));
      return true;
    }
  }
  return forward_query();
}

void ClientConnection::deliver(IoBufferPtr buf, size_t offset, size_t n) {
  if (state_ == State::closing || delivery_failed_) return;
  if (socket_.write(std::move(buf), offset, n) != 0) delivery_failed();
}

void ClientConnection::deliver(std::string&& data) {
  if (state_ == State::closing || delivery_failed_) return;
  if (socket_.write(std::move(data)) != 0) delivery_failed();
}

void ClientConnection::delivery_failed() {
  delivery_failed_ = true;
  if (!in_forward_managed_) close(CloseReason::client_gone);
}

void ClientConnection::send(std::string&& data) {
  if (socket_.write(std::move(data)) != 0 && state_ != State::closing)
    close(CloseReason::client_gone);
}

void ClientConnection::protocol_error(const std::string& what) {
  spdlog::warn("C-{} protocol violation from {}: {}", id_, socket_.peer_name(), what);
  auto e = fatal_error(proto::sqlstate::kProtocolViolation, "protocol violation: " + what);
  close(CloseReason::protocol_violation, &e);
}

// ---------------------------------------------------------------------------
// The one cleanup path

void ClientConnection::close(CloseReason reason, const proto::ErrorFields* error) {
  if (state_ == State::closing) return;
  State was = state_;
  state_ = State::closing;
  if (error) {
    std::string out;
    proto::error_response(out, *error);
    socket_.write(std::move(out));
  }
  leave_wait();
  if (auth_ && auth_->lookup_pending) worker_.auth_query().forget(this);
  worker_.unpark(this);
  if (admin_) worker_.admin_wait_cancel(this);
  if (server_) {
    ServerConnection* s = server_;
    server_ = nullptr;
    // A query still running would hold its locks until it ends: cancel it.
    // Not when another client's request is queued behind it on the server
    // (server_pipelining): a cancel landing after the query ended would hit
    // that one, so the query runs to its end; query_timeout still cancels.
    if (s->busy() && s->state() == ServerConnection::State::linked && s->linked_client() == this &&
        (!s->has_next() || reason == CloseReason::timeout))
      worker_.cancel_server_query(s);
    s->unlink_client(this, !managed_ || !ms_ || ms_->tracker.empty());
  }
  pending_.reset();
  more_pending_.clear();
  routing_.reset();
  if (cancel_pid_) worker_.unregister_cancel_key(cancel_pid_);
  if (counted_) {
    worker_.uncount_client(this);
    counted_ = false;
  }
  if (login_counted_) {
    worker_.hub().uncount_login(database_, user_);
    login_counted_ = false;
  }
  bool quiet = reason == CloseReason::cancel_request ||
               (was == State::startup && user_.empty() && reason == CloseReason::client_gone);
  if (!quiet && worker_.config().log.disconnections) {
    if (error)
      spdlog::info("C-{} closing ({}): {}", id_, to_string(reason), error->message);
    else
      spdlog::info("C-{} closing ({})", id_, to_string(reason));
  }
  socket_.close_after_flush();
}

}  // namespace pgmux
