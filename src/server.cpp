#include "src/server.hpp"

#include <spdlog/spdlog.h>

#include <cstring>
#include <utility>

#include "auth/md5.hpp"
#include "protocol/builders.hpp"
#include "protocol/sql_commands.hpp"
#include "protocol/sql_route.hpp"
#include "src/client.hpp"
#include "src/params.hpp"
#include "src/worker.hpp"

namespace pgmux {

namespace {
constexpr size_t kMaxWatchedMessage = 64 * 1024;  // ParameterStatus, ReadyForQuery
// A setting of pgmux's whose value on the server is not known (after a
// RESET): equal to no value a client can have, so it is SET again.
constexpr std::string_view kUnknownSetting = "\x01unknown";
constexpr uint32_t kMaxLoginMessage = 1024 * 1024;

enum Purpose {
  kPurposeLogin = 1,
  kPurposeSync = 2,
  kPurposeReset = 3,
  kPurposeCheck = 4,
  kPurposeServerCheck = 5,
  kPurposeSettings = 6,
  kPurposeResetAll = 7,
  kPurposeBaseline = 8,
};

// What a client's SET or RESET left in the session (transaction pooling):
// every setting whose value came from SET (or set_config), and the role of
// SET ROLE, which pg_settings does not list. Read when the transaction is
// over, so a rolled-back SET, SET LOCAL and savepoints need no parsing.
constexpr std::string_view kReadSettingsSql =
    "SELECT name, pg_catalog.current_setting(name) FROM pg_catalog.pg_settings "
    "WHERE source OPERATOR(pg_catalog.=) 'session' "
    "UNION ALL SELECT 'role', pg_catalog.current_setting('role') "
    "WHERE pg_catalog.current_setting('role') OPERATOR(pg_catalog.<>) 'none'";

constexpr auto server_error = &proto::fatal_error;
}  // namespace

ServerConnection::ServerConnection(Worker& w, pool::Pool& pool, const conf::DatabaseConfig& db,
                                   std::string user, std::string dbname, std::string host,
                                   uint16_t port, std::optional<std::string> password)
    : worker_(w),
      connect_query_(db.connect_query),
      // The entry's parameters are its clients' defaults; pgmux's own
      // connections (health checks, auth lookups) go without them.
      startup_params_(pool.health_check() || pool.auth_lookup() ? decltype(startup_params_){} : db.parameters),
      user_(std::move(user)),
      dbname_(std::move(dbname)),
      host_(std::move(host)),
      name_("S-" + std::to_string(w.next_id())),
      port_(port),
      password_(std::move(password)),
      socket_(w.loop(), (!host_.empty() && host_[0] == '/') ? Socket::Kind::pipe
                                                             : Socket::Kind::tcp,
              this),
      framer_(w.config().max_packet_size),
      statements_(size_t(w.config().max_prepared_statements)),
      loop_(w.loop()) {}

ServerConnection::~ServerConnection() = default;

bool ServerConnection::start(proto::ErrorFields& error) {
  if (socket_.kind() == Socket::Kind::pipe) {
    state_ = State::connecting;
    socket_.connect_unix(host_ + "/.s.PGSQL." + std::to_string(port_));
    return true;
  }
  sockaddr_in a4{};
  sockaddr_in6 a6{};
  if (uv_ip4_addr(host_.c_str(), port_, &a4) == 0) {
    connect_to(reinterpret_cast<const sockaddr*>(&a4));
    return true;
  }
  if (uv_ip6_addr(host_.c_str(), port_, &a6) == 0) {
    connect_to(reinterpret_cast<const sockaddr*>(&a6));
    return true;
  }
  state_ = State::resolving;
  resolve_req_ = new uv_getaddrinfo_t;
  resolve_req_->data = this;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(worker_.loop(), resolve_req_, on_resolved, host_.c_str(), nullptr, &hints);
  if (rc != 0) {
    delete resolve_req_;
    resolve_req_ = nullptr;
    error = server_error(proto::sqlstate::kConnectionFailure,
                         "cannot resolve server host \"" + host_ + "\": " + uv_strerror(rc));
    return false;
  }
  return true;
}

void ServerConnection::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* self = static_cast<ServerConnection*>(req->data);
  delete req;
  if (!self) {  // the connection was closed meanwhile
    uv_freeaddrinfo(res);
    return;
  }
  self->resolve_req_ = nullptr;
  if (status != 0 || !res) {
    uv_freeaddrinfo(res);
    self->login_failed(server_error(proto::sqlstate::kConnectionFailure,
                                    "cannot resolve server host \"" + self->host_ +
                                        "\": " + uv_strerror(status)));
    return;
  }
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  uv_freeaddrinfo(res);
  if (ss.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(self->port_);
  else reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(self->port_);
  self->connect_to(reinterpret_cast<const sockaddr*>(&ss));
}

void ServerConnection::connect_to(const sockaddr* addr) {
  state_ = State::connecting;
  int rc = socket_.connect(addr);
  if (rc != 0) {
    login_failed(server_error(proto::sqlstate::kConnectionFailure,
                              "cannot connect to server " + host_ + ":" + std::to_string(port_) +
                                  ": " + uv_strerror(rc)));
  }
}

void ServerConnection::on_connected(Socket&, int status) {
  if (state_ != State::connecting) return;
  if (status != 0) {
    login_failed(server_error(proto::sqlstate::kConnectionFailure,
                              "cannot connect to server " + host_ + ":" + std::to_string(port_) +
                                  ": " + uv_strerror(status)));
    return;
  }
  socket_.set_nodelay();
  worker_.set_tcp_options(socket_, name_);
  state_ = State::login;
  if (socket_.read_start() != 0) {
    login_failed(server_error(proto::sqlstate::kConnectionFailure, "cannot read from server"));
    return;
  }
  // TLS towards the server as libpq does: not over unix sockets; with
  // "prefer" a server that says 'N' gets a plaintext login.
  if (worker_.server_tls() && socket_.kind() == Socket::Kind::tcp) {
    tls_ctx_ = worker_.server_tls();  // a reload meanwhile must not change the plan
    std::string out;
    proto::ssl_request(out);
    awaiting_tls_answer_ = true;
    send(std::move(out));
    return;
  }
  send_startup();
}

void ServerConnection::on_tls_handshake(Socket&, bool ok, const std::string& error) {
  if (state_ != State::login) return;
  if (!ok) {
    login_failed(server_error(proto::sqlstate::kConnectionFailure,
                              "TLS handshake with server " + host_ + ":" + std::to_string(port_) +
                                  " failed: " + error));
    return;
  }
  spdlog::debug("{} TLS established with {}:{} ({})", name_, host_, port_, socket_.tls_description());
  send_startup();
}

// The server's one-byte answer to SSLRequest.
void ServerConnection::handle_tls_answer(const uint8_t* data, size_t n) {
  awaiting_tls_answer_ = false;
  const conf::TlsMode mode = tls_ctx_->mode();
  if ((data[0] == 'S' || data[0] == 'N') && n > 1) {
    // Bytes after the answer could be injected by a man in the middle and,
    // after 'S', read as if they came over TLS (CVE-2021-23222).
    login_failed(server_error(proto::sqlstate::kProtocolViolation,
                              "server sent unencrypted data after its SSL response"));
    return;
  }
  if (data[0] == 'S') {
    if (socket_.start_tls(tls_ctx_, host_) != 0)
      login_failed(server_error(proto::sqlstate::kConnectionFailure, "cannot start TLS"));
    return;
  }
  if (data[0] == 'N') {
    if (conf::tls_required(mode)) {
      login_failed(server_error(proto::sqlstate::kConnectionFailure,
                                "server " + host_ + ":" + std::to_string(port_) +
                                    " does not support TLS, and [server_tls] mode = \"" +
                                    std::string(conf::to_string(mode)) + "\" requires it"));
      return;
    }
    send_startup();
    return;
  }
  // 'E': a server too old for SSLRequest; anything else is garbage.
  login_failed(server_error(proto::sqlstate::kProtocolViolation,
                            std::string("server answered SSLRequest with '") + char(data[0]) + "'"));
}

void ServerConnection::send_startup() {
  std::string out;
  std::vector<std::pair<std::string, std::string>> params = {{"user", user_}, {"database", dbname_}};
  params.insert(params.end(), startup_params_.begin(), startup_params_.end());
  proto::startup_message(out, params);
  send(std::move(out));
}

// ---------------------------------------------------------------------------
// Reading

void ServerConnection::on_read(Socket&, IoBufferPtr buf, size_t n) {
  switch (state_) {
    case State::linked:
      forward_to_client(std::move(buf), n);
      return;
    case State::draining: {
      bool release_point = false;
      size_t used = 0;
      if (!scan_server_bytes(proto::ByteSpan(buf->data, n), release_point, used)) return;
      if (in_copy_in_) close("client left during COPY");
      // An error: PostgreSQL discards everything up to a Sync that will
      // never come.
      else if (unsynced_) close("client left with a failed extended-protocol request");
      else if (pending_z_ == 0 && framer_.at_boundary()) after_client_left();
      return;
    }
    case State::login:
      if (awaiting_tls_answer_) {
        handle_tls_answer(buf->data, n);
        return;
      }
      [[fallthrough]];
    case State::internal:
    case State::idle:
      inbuf_.append(reinterpret_cast<const char*>(buf->data), n);
      buf.reset();
      process_buffered();
      return;
    default:
      return;
  }
}

bool ServerConnection::process_buffered() {
  while (!inbuf_.empty()) {
    if (state_ != State::login && state_ != State::internal && state_ != State::idle) break;
    auto fr = proto::peek_frame(proto::as_bytes(inbuf_), kMaxLoginMessage);
    if (fr.result == proto::Result::need_more) return true;
    if (fr.result == proto::Result::invalid) {
      fail("invalid message from server");
      return false;
    }
    std::string msg = inbuf_.substr(0, fr.frame.total());
    inbuf_.erase(0, fr.frame.total());
    proto::ByteSpan body = proto::as_bytes(msg).subspan(5);
    bool ok = true;
    switch (state_) {
      case State::login:
        ok = handle_login_message(fr.frame.type, body);
        break;
      case State::internal:
        ok = handle_internal_message(fr.frame.type, body);
        break;
      case State::idle:
        // Asynchronous messages while nobody is linked.
        if (fr.frame.type == 'S') {
          if (auto ps = proto::parse_parameter_status(body)) note_parameter(ps->name, ps->value);
        } else if (fr.frame.type == 'E') {
          auto f = proto::parse_error_fields(body);
          spdlog::warn("{} idle server sent error: {}", name_, f ? f->message : "(malformed)");
        }
        break;
      default:
        break;
    }
    if (!ok) return false;
  }
  // A client linked while bytes were still buffered gets them as they are.
  if (state_ == State::linked && !inbuf_.empty() && client_) {
    std::string rest;
    rest.swap(inbuf_);
    client_->deliver(std::move(rest));
  }
  return true;
}

void ServerConnection::note_parameter(std::string_view name, std::string_view value) {
  set_param(params_, name, value);
  synced_with_ = {};
}

bool ServerConnection::handle_login_message(char type, proto::ByteSpan body) {
  switch (type) {
    case 'R':
      return handle_auth(body);
    case 'S': {
      auto ps = proto::parse_parameter_status(body);
      if (!ps) {
        fail("malformed ParameterStatus from server");
        return false;
      }
      note_parameter(ps->name, ps->value);
      return true;
    }
    case 'K': {
      auto k = proto::parse_backend_key_data(body);
      if (!k) {
        fail("malformed BackendKeyData from server");
        return false;
      }
      key_ = *k;
      return true;
    }
    case 'E': {
      auto f = proto::parse_error_fields(body);
      proto::ErrorFields e = f ? *f : server_error(proto::sqlstate::kConnectionFailure, "malformed error");
      e.message = "server login failed: " + e.message;
      login_failed(e);
      return false;
    }
    case 'N':
    case 'v':  // NegotiateProtocolVersion: we ask for 3.0 and no options
      return true;
    case 'Z': {
      auto st = proto::parse_ready_for_query(body);
      if (!st) {
        fail("malformed ReadyForQuery from server");
        return false;
      }
      tx_status_ = *st;
      login_complete();
      return true;
    }
    default:
      login_failed(server_error(proto::sqlstate::kProtocolViolation,
                                std::string("unexpected message '") + type + "' during server login"));
      return false;
  }
}

bool ServerConnection::handle_auth(proto::ByteSpan body) {
  auto req = proto::parse_auth_request(body);
  if (!req) {
    fail("malformed authentication request from server");
    return false;
  }
  const pool::Pool* p = pool();
  const auth::Secret* secret = worker_.find_secret(user_, p ? p->database() : std::string());
  std::optional<std::string> password;
  if (password_) password = *password_;
  else if (secret && secret->kind == auth::SecretKind::plain) password = secret->text;

  auto no_credentials = [&](const char* method) {
    login_failed(server_error(proto::sqlstate::kInvalidPassword,
                              std::string("server requested ") + method +
                                  " authentication, but pgmux has no usable secret for user \"" +
                                  user_ + "\""));
    return false;
  };

  std::string out;
  switch (req->code) {
    case 0:  // AuthenticationOk
      scram_.reset();
      return true;
    case 3:  // cleartext
      if (!password) return no_credentials("cleartext password");
      proto::password_message(out, *password);
      break;
    case 5: {  // md5
      if (req->data.size() != 4) {
        fail("malformed md5 salt from server");
        return false;
      }
      const uint8_t* salt = reinterpret_cast<const uint8_t*>(req->data.data());
      if (password) proto::password_message(out, auth::md5_response(user_, *password, salt));
      else if (secret && secret->kind == auth::SecretKind::md5)
        proto::password_message(out, auth::md5_response_from_hash(secret->text, salt));
      else return no_credentials("md5");
      break;
    }
    case 10: {  // SASL
      auto mechs = proto::parse_sasl_mechanisms(req->data);
      bool has_scram = false, has_plus = false;
      if (mechs)
        for (auto& m : *mechs) {
          has_scram |= (m == "SCRAM-SHA-256");
          has_plus |= (m == "SCRAM-SHA-256-PLUS");
        }
      if (!has_scram) {
        login_failed(server_error(proto::sqlstate::kFeatureNotSupported,
                                  "server offers no supported SASL mechanism"));
        return false;
      }
      if (password) {
        scram_.emplace(auth::ScramClient::with_password(*password));
      } else if (const auth::ScramKeys* keys = worker_.scram_keys(p ? p->database() : std::string(), user_)) {
        scram_.emplace(auth::ScramClient::with_keys(*keys));
      } else {
        return no_credentials("SCRAM");
      }
      // Channel binding whenever the server offers it over TLS: a man in the
      // middle terminating TLS cannot relay the exchange.
      if (socket_.tls_established()) {
        std::string cb = has_plus ? socket_.tls_end_point() : std::string();
        if (!cb.empty()) scram_->set_channel_binding(std::move(cb));
        else scram_->set_could_bind();
      }
      proto::sasl_initial_response(out, scram_->mechanism(), scram_->client_first());
      break;
    }
    case 11: {
      if (!scram_) {
        fail("unexpected SASLContinue from server");
        return false;
      }
      std::string final_msg, err;
      if (!scram_->handle_server_first(req->data, final_msg, err)) {
        login_failed(server_error(proto::sqlstate::kInvalidPassword, "server SCRAM: " + err));
        return false;
      }
      proto::sasl_response(out, final_msg);
      break;
    }
    case 12: {
      std::string err;
      if (!scram_ || !scram_->handle_server_final(req->data, err)) {
        login_failed(server_error(proto::sqlstate::kInvalidPassword,
                                  "server SCRAM signature invalid: " + err));
        return false;
      }
      return true;
    }
    default:
      login_failed(server_error(proto::sqlstate::kFeatureNotSupported,
                                "server requested unsupported authentication method " +
                                    std::to_string(req->code)));
      return false;
  }
  send(std::move(out));
  return true;
}

void ServerConnection::login_failed(proto::ErrorFields e) {
  if (state_ == State::closing) return;
  spdlog::warn("{} login to {}:{} as \"{}\" failed: {}", name_, host_, port_, user_, e.message);
  pool::Pool* p = pool();
  state_ = State::closing;
  if (p) p->server_login_failed(this, e);
  socket_.close();
}

void ServerConnection::login_complete() {
  spdlog::debug("{} logged in to {}:{} as \"{}\" (backend pid {})", name_, host_, port_, user_,
                key_.pid);
  if (!connect_query_.empty()) {
    run_internal({connect_query_}, kPurposeLogin);
    return;
  }
  state_ = State::idle;
  last_used_ms_ = uv_now(loop_);
  if (pool()) pool()->server_login_ok(this, params_);
}

// ---------------------------------------------------------------------------
// pgmux's own queries: connect_query, parameter sync, rollback and reset.

void ServerConnection::run_internal(std::deque<std::string> queries, int purpose,
                                    const std::vector<std::string>& params) {
  internal_queries_ = std::move(queries);
  internal_purpose_ = purpose;
  internal_error_.reset();
  state_ = State::internal;
  std::string out;
  if (params.empty()) proto::query(out, internal_queries_.front());
  else proto::query_with_params(out, internal_queries_.front(), params);
  send(std::move(out));
}

bool ServerConnection::handle_internal_message(char type, proto::ByteSpan body) {
  switch (type) {
    case 'S': {
      auto ps = proto::parse_parameter_status(body);
      if (!ps) {
        fail("malformed ParameterStatus from server");
        return false;
      }
      note_parameter(ps->name, ps->value);
      if (internal_purpose_ == kPurposeSync && client_) {
        // The client learns the value as the server normalised it.
        client_->parameter_changed(ps->name, ps->value);
        std::string out;
        proto::parameter_status(out, ps->name, ps->value);
        client_->deliver(std::move(out));
      }
      return true;
    }
    case 'E': {
      auto f = proto::parse_error_fields(body);
      internal_error_ = f ? *f : server_error(proto::sqlstate::kInternalError, "malformed error");
      return true;
    }
    case 'Z': {
      auto st = proto::parse_ready_for_query(body);
      if (!st) {
        fail("malformed ReadyForQuery from server");
        return false;
      }
      tx_status_ = *st;
      internal_queries_.pop_front();
      if (!internal_error_ && !internal_queries_.empty()) {
        std::string out;
        proto::query(out, internal_queries_.front());
        send(std::move(out));
        return true;
      }
      internal_done();
      return true;
    }
    case 'D':
      if (internal_purpose_ == kPurposeSettings || internal_purpose_ == kPurposeBaseline) {
        auto row = proto::parse_data_row(body);
        if (!row || row->size() != 2 || !(*row)[0] || !(*row)[1]) {
          fail("malformed session settings row from server");
          return false;
        }
        // After a SET TRANSACTION, transaction_isolation shows as set in
        // the session: it cannot be replayed (nor need be).
        std::string_view name = *(*row)[0];
        if (!param_name_equal(name, "transaction_isolation") && !param_name_equal(name, "transaction_read_only") &&
            !param_name_equal(name, "transaction_deferrable"))
          settings_read_.emplace_back(std::string(name), std::string(*(*row)[1]));
        return true;
      }
      if (internal_purpose_ == kPurposeCheck && !check_row_seen_) {
        auto row = proto::parse_data_row(body);
        if (!row) {
          fail("malformed DataRow from server");
          return false;
        }
        check_row_seen_ = true;
        for (const auto& v : *row)
          check_row_.push_back(v ? std::optional<std::string>(std::string(*v)) : std::nullopt);
      }
      return true;
    case 'C': case 'T': case 'I': case 'N': case 'A':
    case '1': case '2': case 'n':  // ParseComplete, BindComplete, NoData (run_check with params)
      return true;
    default:
      fail("unexpected message in response to an internal query");
      return false;
  }
}

// A step of bringing the server to a linked client's settings (SETs, or
// the RESET ALL before them) ended. False, with the connection unlinked,
// when the client left meanwhile or the step failed (the client is told).
bool ServerConnection::sync_step_ok() {
  if (!client_) {
    state_ = State::linked;
    unlink_client();
    return false;
  }
  if (internal_error_) {
    ClientConnection* c = client_;
    client_ = nullptr;
    state_ = State::linked;
    c->server_sync_failed(*internal_error_);
    unlink_client();
    return false;
  }
  return true;
}

void ServerConnection::internal_done() {
  int purpose = internal_purpose_;
  internal_purpose_ = 0;
  switch (purpose) {
    case kPurposeLogin: {
      if (internal_error_) {
        proto::ErrorFields e = *internal_error_;
        e.message = "connect_query failed: " + e.message;
        login_failed(e);
        return;
      }
      // What connect_query set is where every client starts: read it, so
      // that it is neither given to clients as their own nor RESET.
      std::vector<std::string> custom;
      proto::scan_set_statements(connect_query_, custom);
      proto::set_config_names(connect_query_, custom);
      settings_read_.clear();
      run_internal({settings_read_sql(custom)}, kPurposeBaseline);
      return;
    }
    case kPurposeBaseline:
      if (internal_error_) {
        proto::ErrorFields e = *internal_error_;
        e.message = "reading the settings connect_query made failed: " + e.message;
        login_failed(e);
        return;
      }
      baseline_.clear();
      for (auto& [k, v] : settings_read_)
        if (!read_only_parameter(k) && !find_param(params_, k)) set_param(baseline_, k, v);
      settings_read_.clear();
      state_ = State::idle;
      if (pool()) pool()->server_login_ok(this, params_);
      return;
    case kPurposeSync:
      if (!sync_step_ok()) return;
      // A SET that did not change the server's value (e.g. DateStyle 'ISO'
      // on a server at 'ISO, MDY') sends no ParameterStatus: the client's
      // spelling is equivalent to the server's, so adopt the server's, or
      // every later link would SET it again.
      for (const std::string& k : syncing_keys_)
        if (const std::string* v = find_param(params_, k)) client_->parameter_changed(k, *v);
      syncing_keys_.clear();
      mark_synced(client_);
      state_ = State::linked;
      client_->server_ready();
      return;
    case kPurposeServerCheck: {
      if (!client_) {  // the client left during the check
        state_ = State::linked;
        unlink_client();
        return;
      }
      if (internal_error_ || tx_status_ != 'I') {
        spdlog::warn("{} server_check_query failed: {}", name_,
                     internal_error_ ? internal_error_->message : std::string("left a transaction open"));
        server_check_failed("server_check_query failed");
        return;
      }
      state_ = State::linked;
      link_sync();
      return;
    }
    case kPurposeCheck: {
      CheckOwner* owner = check_owner_;
      check_owner_ = nullptr;
      std::string error;
      if (internal_error_) error = internal_error_->message;
      else if (!check_row_seen_ && !check_empty_ok_) error = "health check query returned no row";
      // The row is ours before the connection goes back: releasing it may
      // hand it at once to the next waiting check, which clears check_row_.
      std::vector<std::optional<std::string>> row = std::move(check_row_);
      check_row_.clear();
      state_ = State::idle;
      if (tx_status_ != 'I') {
        close("health check left a transaction open");
      } else if (pool()) {
        pool()->release(this);
      }
      if (owner) owner->check_result(error.empty() ? &row : nullptr, error);
      return;
    }
    case kPurposeReset:
      if (internal_error_) {
        spdlog::warn("{} reset failed: {}", name_, internal_error_->message);
        read_after_reset_ = false;
        close("reset query failed");
        return;
      }
      synced_with_ = {};
      // server_reset_query (DISCARD ALL by default) ran: settings and
      // prepared statements are gone.
      if (reset_discards_) forget_session_state();
      // After a ROLLBACK alone the statements are still on the server, and
      // pgmux's records must say so (else a later Parse or PREPARE of the
      // same name fails with 42P05).
      reset_discards_ = false;
      if (std::exchange(read_after_reset_, false)) {
        read_settings();
        return;
      }
      state_ = State::idle;
      if (pool()) pool()->release(this);
      return;
    case kPurposeResetAll: {
      if (!sync_step_ok()) return;
      custom_dirty_ = false;
      forget_settings();
      state_ = State::linked;
      link_sync();
      return;
    }
    case kPurposeSettings: {
      if (internal_error_) {
        // (A lock outlasting the client's own lock_timeout, say.)
        settings_lost("reading the session's settings failed: " + internal_error_->message,
                      "reading the session's settings failed");
        return;
      }
      adopt_settings_read();
      ClientConnection* c = client_;
      state_ = State::linked;
      if (c) {
        c->settings_read(&settings_own_, params_);
        settings_own_.clear();
        release_to_pool();
        return;
      }
      // Nobody linked (the client left, or was released first).
      state_ = State::idle;
      if (pool()) pool()->release(this);
      return;
    }
    default:
      return;
  }
}

// ---------------------------------------------------------------------------
// Linking

void ServerConnection::link(ClientConnection* c) {
  client_ = c;
  syncing_keys_.clear();
  expected_set_tags_.clear();
  set_tags_lost_ = false;
  after_sync_ = true;
  query_start_ns_ = xact_start_ns_ = 0;
  client_mode_ = c->mode();
  // server_check_query: a connection idle for server_check_delay or longer
  // proves it still works before the client gets it (0 = every time).
  const conf::Config& cfg = worker_.config();
  const uint64_t now_ms = uv_now(loop_);
  if (!cfg.server_check_query.empty() && now_ms - last_used_ms_ >= uint64_t(cfg.server_check_delay.count())) {
    spdlog::debug("{} idle {} ms: server_check_query before reuse", name_, now_ms - last_used_ms_);
    last_used_ms_ = now_ms;
    run_internal({cfg.server_check_query}, kPurposeServerCheck);
    return;
  }
  link_sync();
}

ServerConnection::SyncedWith ServerConnection::sync_key(ClientConnection* c) const {
  const pool::Pool* home = c->home_pool();
  if (!home) return {};
  return {c->params_id(), home, home->welcome_version()};
}

void ServerConnection::link_sync() {
  ClientConnection* c = client_;
  // Another client's SET may have left a setting here that pgmux could not
  // read (a custom myapp.x it could not name, or one pg_settings hides from
  // the role): everything goes back first, then the usual SETs. The session
  // user and role first (RESET ALL leaves them alone, and runs with their
  // privileges).
  if (custom_dirty_ && custom_owner_ != c->id()) {
    run_internal({"SET SESSION AUTHORIZATION DEFAULT; RESET ALL"}, kPurposeResetAll);
    return;
  }
  // Common cases first: the server was in sync with an equal parameter set
  // before, or a client that set nothing of its own expects the pool's
  // values and the server is still at exactly those: no SET.
  if ((synced_with_.set != 0 && synced_with_ == sync_key(c)) ||
      (!c->has_own_params() && set_by_us_.empty() && pool() && pool() == c->home_pool() &&
       params_ == pool()->welcome())) {
    state_ = State::linked;
    c->server_ready();
    return;
  }
  // RESETs first, then SETs, the role last: the settings are made with the
  // pool user's privileges, not with a role another client left.
  std::string resets, sets, role;
  auto add = [](std::string& to, std::string stmt) {
    if (!to.empty()) to += "; ";
    to += stmt;
  };
  std::vector<std::pair<std::string, std::string>> newly_set;
  c->for_each_param([&](const std::string& k, const std::string& v) {
    if (read_only_parameter(k)) return;
    const std::string* cur = find_param(params_, k);
    bool reported = cur != nullptr;
    if (!cur) cur = find_param(set_by_us_, k);
    if (!cur) cur = find_param(baseline_, k);  // as connect_query left it
    if (cur && *cur == v) return;
    if (param_name_equal(k, "role")) {
      if (find_param(set_by_us_, k)) add(resets, reset_statement(k));
      role = set_statement(k, v);
    } else {
      add(sets, set_statement(k, v));
    }
    if (!reported) newly_set.emplace_back(k, v);
    else syncing_keys_.push_back(k);
  });
  // A setting made for (or by) an earlier client that this client does not
  // have goes back to the server's default, or to connect_query's value.
  for (const auto& [k, v] : set_by_us_) {
    if (c->param(k)) continue;
    if (const std::string* b = find_param(baseline_, k)) {
      if (v != *b) add(sets, set_statement(k, *b));
    } else {
      add(resets, reset_statement(k));
    }
  }
  std::string sql = std::move(resets);
  if (!sets.empty()) add(sql, std::move(sets));
  if (!role.empty()) add(sql, std::move(role));
  if (sql.empty()) {
    mark_synced(c);
    state_ = State::linked;
    c->server_ready();
    return;
  }
  // Non-reported settings are remembered as SET (a failure makes the
  // whole statement roll back, and the connection is then reset anyway).
  for (auto& [k, v] : newly_set) set_param(set_by_us_, k, v);
  std::erase_if(set_by_us_, [&](const auto& kv) { return !c->param(kv.first); });  // RESET or back to baseline
  synced_with_ = {};
  run_internal({sql}, kPurposeSync);
}

// A command the client ran (or pgmux for it) that changes the session
// below pgmux's records. RESET (ALL or one setting) may have reset what
// pgmux SET for a client's startup options: each is SET again (or RESET) at
// the next link. DEALLOCATE ALL (in a multi-statement query, which pgmux
// does not recognise) drops every prepared statement; DISCARD ALL too.
void ServerConnection::note_session_command(std::string_view tag) {
  if (tag == "SET" && client_mode_ != conf::PoolMode::session) {
    // A SET LOCAL or SET TRANSACTION the client sent (expect_set_tag)
    // changes nothing beyond its transaction.
    const uint64_t answering = oldest_unanswered_segment();
    while (!expected_set_tags_.empty() && expected_set_tags_.front().first < answering)
      expected_set_tags_.pop_front();
    bool scoped = false;
    if (!expected_set_tags_.empty() && expected_set_tags_.front().first == answering) {
      scoped = expected_set_tags_.front().second;
      expected_set_tags_.pop_front();
    }
    if (!scoped) {
      settings_changed_ = true;
      custom_dirty_ = true;
      custom_owner_ = client_ ? client_->id() : 0;
    }
  } else if (tag == "RESET" && client_mode_ != conf::PoolMode::session) {
    settings_changed_ = true;
  }
  if (tag == "RESET") {
    for (auto& [k, v] : set_by_us_) v = kUnknownSetting;
    synced_with_ = {};
  } else if (tag == "DEALLOCATE ALL") {
    statements_.clear();
    sql_prepared_.clear();
  } else if (tag == "DISCARD ALL") {
    forget_session_state();
  }
}

void ServerConnection::copy_in_started() {
  in_copy_in_ = true;
  after_sync_ = false;  // a Parse now is refused (a protocol violation in COPY)
  if (!last_was_execute_) return;
  int ignored = syncs_since_execute_;
  if (copy_ignored_syncs_.empty()) {
    extended_copy_in_ = true;  // Syncs until the client's CopyDone are ignored
  } else {
    ignored = copy_ignored_syncs_.front();
    copy_ignored_syncs_.erase(copy_ignored_syncs_.begin());
  }
  pending_z_ -= ignored;
  if (pending_z_ < 0) pending_z_ = 0;
  syncs_since_execute_ = 0;
}

// The client ended a COPY. If the server has not started an
// extended-protocol one yet (its CopyInResponse comes later), the Syncs
// since its Execute will be ignored, the ones from here on not
// (copy_in_started).
void ServerConnection::copy_done_sent() {
  if (!in_copy_in_ && last_was_execute_) copy_ignored_syncs_.push_back(syncs_since_execute_);
  extended_copy_in_ = false;
}

void ServerConnection::settings_reset_to(const pool::Params& values) {
  custom_dirty_ = false;
  forget_settings();
  for (const auto& [k, v] : values)
    if (!read_only_parameter(k) && !find_param(params_, k)) set_param(set_by_us_, k, v);
}

// A RESET ALL or DISCARD ALL ran: no setting of a client's is left, nor
// what connect_query made (set again at the next link).
void ServerConnection::forget_settings() {
  set_by_us_.clear();
  for (const auto& [k, v] : baseline_) set_param(set_by_us_, k, kUnknownSetting);
  synced_with_ = {};
}

void ServerConnection::run_check(const std::string& sql, CheckOwner* owner,
                                 const std::vector<std::string>& params, bool empty_ok) {
  check_owner_ = owner;
  check_row_.clear();
  check_row_seen_ = false;
  check_empty_ok_ = empty_ok;
  run_internal({sql}, kPurposeCheck, params);
}

void ServerConnection::abandon_check() {
  if (!check_owner_) return;
  check_owner_ = nullptr;
  close("health check timed out");
}

void ServerConnection::forward_copy(const std::string& data) {
  if (state_ == State::closing) return;
  int rc = socket_.write_copy(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  if (rc != 0) fail("write to server failed");
}

// Statistics at each ReadyForQuery of forwarded traffic: one request
// answered; with status 'I', one transaction over.
void ServerConnection::count_ready() {
  pool::Pool* p = pool();
  if (!p) {
    if (tx_status_ == 'I') xact_start_ns_ = 0;  // transaction_timeout reads it
    return;
  }
  const uint64_t now = uv_hrtime();
  pool::PoolStats& st = p->stats;
  if (query_start_ns_) {
    uint64_t us = (now - query_start_ns_) / 1000;
    ++st.query_count;
    st.query_us += us;
    st.query_hist.add(us);
  }
  query_start_ns_ = pending_z_ > 0 ? now : 0;  // pipelined: the next one is being answered
  if (tx_status_ == 'I' && xact_start_ns_) {
    uint64_t us = (now - xact_start_ns_) / 1000;
    ++st.xact_count;
    st.xact_us += us;
    st.xact_hist.add(us);
    xact_start_ns_ = 0;
  }
}

void ServerConnection::forward(IoBufferPtr buf, size_t offset, size_t n) {
  if (state_ == State::closing) return;
  if (pool::Pool* p = pool()) p->stats.client_bytes += n;
  int rc = socket_.write(std::move(buf), offset, n);
  if (rc != 0) fail("write to server failed");
}

void ServerConnection::count_untracked_request(char type) {
  using Req = proto::ResponseTracker::Request;
  count_request(type);
  switch (type) {
    case 'Q': untracked_.sent(Req::query); break;
    case 'S': untracked_.sent(Req::sync); break;
    case 'F': untracked_.sent(Req::function_call); break;
    case 'E': untracked_.sent(Req::execute); break;
    case 'P': untracked_.sent(Req::parse); break;
    case 'B': untracked_.sent(Req::bind); break;
    // (a portal's Describe is answered as a statement's, without the
    // ParameterDescription: its body need not be read)
    case 'D': untracked_.sent(Req::describe_stmt); break;
    case 'C': untracked_.sent(Req::close); break;
    case 'c': case 'f': untracked_.copy_in_finished(); break;
    default: return;
  }
  note_skipping(untracked_);
}

// Bookkeeping on every server message while forwarding, shared by the plain
// and the rewriting path: ReadyForQuery (transaction status, what is still
// owed), ParameterStatus (the client's view follows), COPY IN.
void ServerConnection::watch_header(char type, bool& release_point) {
  // Errors are read too (rare): the SQLSTATE decides a read's retry, and a
  // stale plan makes pgmux prepare its statements again.
  watched_type_ =
      (type == 'Z' || type == 'S' || type == 'E' || (type == 'C' && (client_ || state_ == State::draining)))
          ? type
          : 0;
  msg_acc_.clear();
  // The result type of a named statement a Describe asked for (the tracker
  // has not seen this message yet).
  if ((type == 'T' || type == 'n') && client_ && client_->managed() &&
      client_->tracker().describing(described_stmt_, described_name_)) {
    watched_type_ = type;
    watch_overflow_ = false;
  }
  if (retry_armed_ && !retry_wanted_ && !retry_decided_) {
    switch (type) {
      case 'E': break;  // the SQLSTATE decides
      // Nothing the client could act on yet.
      case '1': case '2': case 't': case 'T': case 'n': case 'S': case 'N': break;
      default: retry_decided_ = true; break;
    }
  }
  if (type == 'G' || type == 'W') copy_in_started();
  release_point = false;  // more than a ReadyForQuery followed
}

void ServerConnection::watch_body(proto::ByteSpan data) {
  if (!watched_type_) return;
  // A command tag matters for read-your-writes routing, or when it may
  // change the session under pgmux (SET and RESET under transaction
  // pooling, DISCARD ALL, DEALLOCATE ALL): most tags are dropped at their
  // first bytes ("SELECT n" at its third).
  // (The client may have left since the header: the server drains.)
  if (watched_type_ == 'C' && msg_acc_.empty() && !data.empty() && data[0] != 'R' && data[0] != 'D' &&
      !(data[0] == 'S' && client_mode_ != conf::PoolMode::session && (data.size() < 3 || data[2] == 'T')) &&
      !(client_ && client_->watches_writes())) {
    watched_type_ = 0;
    return;
  }
  if (msg_acc_.size() + data.size() <= kMaxWatchedMessage) {
    msg_acc_.append(proto::as_chars(data));
  } else if (watched_type_ == 'T') {
    watch_overflow_ = true;  // too many columns to compare
    msg_acc_.clear();
  } else {
    watched_type_ = 0;
  }
}

void ServerConnection::watch_end(bool& release_point) {
  if (!watched_type_) return;
  proto::ByteSpan body = proto::as_bytes(msg_acc_);
  if (watched_type_ == 'C') {
    auto tag = proto::parse_command_complete(body);
    if (client_ && client_->watches_writes() && (!tag || !proto::is_read_only_command_tag(*tag)))
      client_->note_write();
    if (tag) note_session_command(*tag);
  } else if (watched_type_ == 'E') {
    if (retry_armed_ && !retry_wanted_ && !retry_decided_) {
      auto e = proto::parse_error_fields(body);
      if (e && e->sqlstate == "25006") retry_wanted_ = true;
      else retry_decided_ = true;
    }
    // A stale plan: the texts are retired once per schema change. The
    // error answers the oldest unanswered segment; it retires them when
    // every statement that segment uses is of the current generation (an
    // old statement failing again changes nothing).
    if (proto::is_stale_plan_error(body)) {
      const uint64_t answering = oldest_unanswered_segment();
      for (const auto& [seg, gen] : statement_uses_)
        if (seg == answering && gen == worker_.prepared().generation()) worker_.invalidate_plans(dbname_, name_);
    }
  } else if (watched_type_ == 'T' || watched_type_ == 'n') {
    const uint64_t shape = watch_overflow_ ? proto::kUnreadableShape : proto::result_shape(watched_type_, body);
    statements_.set_shape(described_stmt_, shape);
    if (described_name_ && client_) client_->learn_shape(described_name_, shape);
    watch_overflow_ = false;
  } else if (watched_type_ == 'Z') {
    if (auto st = proto::parse_ready_for_query(body)) tx_status_ = *st;
    if (tx_status_ == 'I') param_status_since_idle_ = false;
    if (pending_z_ > 0) --pending_z_;
    if (owed_current_ > 0 && --owed_current_ == 0) handoff_ = true;
    count_ready();
    in_copy_in_ = false;
    ready_since_ms_ = uv_now(loop_);
    release_point = pending_z_ == 0 && !unsynced_;
    // server_fast_close: an outdated session server at rest goes (with its
    // client) after this turn's I/O, once the answer is out.
    if (release_point && tx_status_ == 'I' && client_ && client_->mode() == conf::PoolMode::session &&
        worker_.config().server_fast_close && pool() && pool()->outdated(this))
      worker_.fast_close_due();
    if (!statement_uses_.empty()) {  // answered segments
      const uint64_t oldest = oldest_unanswered_segment();
      std::erase_if(statement_uses_, [&](const auto& u) { return u.first < oldest; });
    }
    if (release_point) {
      copy_ignored_syncs_.clear();  // no COPY can start now
      // Nothing is in flight: no older request can take an answer.
      if (!untracked_.empty()) untracked_.clear();
    }
  } else if (auto ps = proto::parse_parameter_status(body)) {
    param_status_since_idle_ = true;
    note_parameter(ps->name, ps->value);
    if (client_) client_->parameter_changed(ps->name, ps->value);
  }
  watched_type_ = 0;
}

// What the tracker learnt about Parses: failed or skipped ones are not on
// the server (nor named for the client); accepted ones are proven.
void ServerConnection::absorb_tracker_reports(proto::ResponseTracker& tracker) {
  note_skipping(tracker);
  const std::vector<uint64_t> unprepared = tracker.take_unprepared();
  forget_unprepared(unprepared);
  client_->forget_failed_prepares(unprepared);
  client_->apply_deallocations(tracker.take_executed());
  client_->forget_unnamed();
  for (uint64_t tag : tracker.take_prepared()) {
    if (tag & kSqlStatementTag) continue;
    worker_.prepared().mark_proven(tag);
    statements_.confirm(tag);
  }
}

// Both scans stop after the current client's last ReadyForQuery when a
// pipelined client is queued (handoff_): `used` says how far they went.
bool ServerConnection::scan_server_bytes(proto::ByteSpan chunk, bool& release_point, size_t& used) {
  size_t pos = 0;
  while (pos < chunk.size()) {
    auto piece = framer_.next(chunk.subspan(pos));
    using K = proto::StreamFramer::Kind;
    if (piece.kind == K::invalid) {
      fail("invalid message length from server");
      return false;
    }
    if (piece.kind == K::need_more) break;
    if (piece.kind == K::header) {
      watch_header(piece.type, release_point);
      if (client_ && client_->managed()) {
        proto::ResponseTracker& tracker = client_->tracker();
        tracker.on_server_message(piece.type);
        if (piece.type == 'E' || piece.type == '1' || tracker.has_reports())
          absorb_tracker_reports(tracker);
      } else if (!untracked_.empty()) {  // (also while draining: no client)
        untracked_.on_server_message(piece.type);
        if (untracked_.has_reports()) note_skipping(untracked_);
      }
    } else {
      watch_body(piece.data);
    }
    if (piece.last_of_message) watch_end(release_point);
    pos += piece.consumed;
    if (handoff_) break;
  }
  used = pos;
  return true;
}

bool ServerConnection::rewrite_server_bytes(proto::ByteSpan chunk, bool& release_point,
                                            std::string& out, size_t& used) {
  proto::ResponseTracker& tracker = client_->tracker();
  size_t pos = 0;
  while (pos < chunk.size()) {
    size_t start = pos;
    auto piece = framer_.next(chunk.subspan(pos));
    using K = proto::StreamFramer::Kind;
    if (piece.kind == K::invalid) {
      fail("invalid message length from server");
      return false;
    }
    if (piece.kind == K::need_more) {
      if (framer_.in_header()) held_header_.append(proto::as_chars(chunk.subspan(start)));
      break;
    }
    pos += piece.consumed;
    proto::ByteSpan bytes = chunk.subspan(start, piece.consumed);
    if (piece.kind == K::header) {
      watch_header(piece.type, release_point);
      hiding_ = tracker.on_server_message(piece.type) == proto::ResponseTracker::Action::hide;
      if (!hiding_) {
        out += held_header_;
        out.append(proto::as_chars(bytes));
      }
      held_header_.clear();
    } else {
      watch_body(piece.data);
      if (!hiding_) out.append(proto::as_chars(bytes));
    }
    if (piece.last_of_message) {
      watch_end(release_point);
      hiding_ = false;
      tracker.take_due(out);
      // In order: a DISCARD ALL's reset comes before a later SET's
      // ParameterStatus changes the client's parameters again.
      if (tracker.has_reports()) absorb_tracker_reports(tracker);
      if (handoff_) break;
    }
  }
  used = pos;
  absorb_tracker_reports(tracker);
  return true;
}

void ServerConnection::forward_to_client(IoBufferPtr buf, size_t n) {
  if (pool::Pool* p = pool()) p->stats.server_bytes += n;
  forward_answers(std::move(buf), n);
}

void ServerConnection::forward_answers(IoBufferPtr buf, size_t n) {
  bool release_point = false;
  proto::ByteSpan chunk(buf->data, n);
  std::string out;
  // The careful path also finishes a message it started to hide, though
  // the tracker may have nothing special left once its header was seen.
  bool rewritten = client_ && client_->managed() &&
                   (client_->tracker().special() || !held_header_.empty() || hiding_);
  size_t used = n;
  if (rewritten) {
    if (!rewrite_server_bytes(chunk, release_point, out, used)) return;
  } else if (!scan_server_bytes(chunk, release_point, used)) {
    return;
  }
  if (handoff_) {
    hand_over(std::move(buf), used, n, rewritten, out);
    return;
  }
  if (!client_) return;
  bool at_rest = release_point && client_->mode() != conf::PoolMode::session &&
                 client_->at_message_boundary() && framer_.at_boundary() &&
                 (!client_->managed() || client_->tracker().empty());
  if (retry_armed_) {
    constexpr size_t kMaxHeldAnswer = 64 * 1024;
    if (rewritten) retry_out_ += out;
    else retry_out_.append(reinterpret_cast<const char*>(buf->data), n);
    buf.reset();
    if (retry_wanted_ && at_rest && tx_status_ == 'I') {
      // The replica refused a write: the client never sees this answer,
      // the request runs again on the primary.
      retry_armed_ = retry_wanted_ = false;
      retry_out_.clear();
      ClientConnection* c = client_;
      c->begin_retry();
      release_to_pool();
      return;
    }
    bool undecided = !retry_decided_ && (retry_wanted_ ? !release_point : true);
    if (undecided && retry_out_.size() < kMaxHeldAnswer) return;
    retry_armed_ = false;
    out = std::move(retry_out_);
    retry_out_.clear();
    rewritten = true;
  }
  if (at_rest && tx_status_ != 'I' && client_->mode() == conf::PoolMode::statement) {
    // Statement pooling cannot keep a transaction open: the client gets the
    // error instead of BEGIN's ReadyForQuery (the last 6 bytes), and the
    // transaction is rolled back before the server is reused.
    constexpr size_t kReadyForQuerySize = 6;
    if (rewritten) {
      if (out.size() >= kReadyForQuerySize) out.resize(out.size() - kReadyForQuerySize);
      if (!out.empty()) client_->deliver(std::move(out));
    } else if (n > kReadyForQuerySize) {
      client_->deliver(std::move(buf), 0, n - kReadyForQuerySize);
    }
    auto e = proto::fatal_error(proto::sqlstate::kProtocolViolation,
                                "transaction blocks not allowed in statement pooling mode");
    ClientConnection* c = client_;
    client_ = nullptr;
    if (c->state() != ClientConnection::State::closing) c->server_lost(e);
    state_ = State::linked;
    unlink_client();
    return;
  }
  if (at_rest && tx_status_ == 'I') {
    // The transaction is over. Hand the server to the next waiting client
    // first, so its query is on the way to PostgreSQL while this client's
    // answer is written: the handoff is on every transaction's critical path
    // when clients outnumber servers.
    ClientConnection* c = client_;
    const bool answer_first = c->has_held();  // held input replays on release
    if (!answer_first) release_to_pool();
    if (rewritten) {
      if (!out.empty()) c->deliver(std::move(out));
    } else {
      c->deliver(std::move(buf), 0, n);
    }
    if (answer_first && client_ == c) release_to_pool();
    return;
  }
  if (rewritten) {
    if (!out.empty()) client_->deliver(std::move(out));
  } else {
    client_->deliver(std::move(buf), 0, n);
  }
  if (!client_) return;  // delivery failed and the client closed
  // Still in the transaction, nothing owed: what the client held back for
  // this replica, or until every answer was in, may follow.
  const bool waited = client_->waiting_for_answers();
  if (client_->has_held() &&
      (waited ? client_->managed() && client_->tracker().empty() : pending_z_ == 0)) {
    client_->release_held();
    if (!client_) return;
  }
  if (client_->write_backlogged()) {
    socket_.read_stop();
    read_paused_ = true;
  }
}

// ---------------------------------------------------------------------------
// server_pipelining

bool ServerConnection::pipeline_slot_open() const {
  // The current client's one request in flight (everything up to its Sync
  // or Query) started outside a transaction block (the last ReadyForQuery
  // said 'I') and holds only statements that cannot leave one open or
  // change a setting: the server is idle, with the same session, once it
  // is answered.
  // Or, begun inside a transaction block ('T', not failed), it is one
  // COMMIT, ROLLBACK... alone, and no setting changed in the block (SET
  // LOCAL goes back at its end, after the queued client was found in sync).
  return state_ == State::linked && client_ && !next_ && !next_gone_ && !handoff_ && pending_z_ == 1 &&
         cancels_in_flight_ == 0 &&
         !unsynced_ && last_segment_safe_ && !settings_changed_ &&
         (tx_status_ == 'I' || (tx_status_ == 'T' && last_segment_ends_tx_ && !param_status_since_idle_)) &&
         !retry_armed_ && !in_copy_in_ &&
         !extended_copy_in_ && client_mode_ == conf::PoolMode::transaction && pool() &&
         pool()->settings().server_pipelining && pool()->keeps_busy(this);
}

bool ServerConnection::fits_behind(ClientConnection* b) const {
  if (b->mode() != conf::PoolMode::transaction) return false;
  if (custom_dirty_ && custom_owner_ != b->id()) return false;
  // No SET before b's request (link_sync's fast cases).
  return (synced_with_.set != 0 && synced_with_ == sync_key(b)) ||
         (!b->has_own_params() && set_by_us_.empty() && pool() == b->home_pool() &&
          params_ == pool()->welcome());
}

bool ServerConnection::fill_pipeline_slot() {
  // An idle server serves the waiters (its serving may be deferred to the
  // end of the loop turn).
  if (!pool() || !pool()->has_waiters() || pool()->has_idle() || pool()->can_grow() || !pipeline_slot_open())
    return false;
  pool::PoolClient* w = pool()->take_waiter([this](pool::PoolClient* pc) {
    auto* c = static_cast<ClientConnection*>(pc);
    return c->pipeline_request_ready() && fits_behind(c);
  });
  if (!w) return false;
  static_cast<ClientConnection*>(w)->pipelined_onto(this);
  return true;
}

// The current client's last request is answered (its last ReadyForQuery
// ends the first `used` bytes of the chunk). The queued client's request,
// sent long ago, is answered from here on.
void ServerConnection::hand_over(IoBufferPtr buf, size_t used, size_t n, bool rewritten,
                                 std::string& out) {
  handoff_ = false;
  owed_current_ = 0;
  orphan_cancelled_ = false;
  hiding_ = false;  // at a message boundary
  held_header_.clear();
  ClientConnection* a = client_;
  // The current client's part of the chunk.
  std::string part;
  const bool whole = !rewritten && used == n;
  if (rewritten) part = std::move(out);
  else if (!whole) part.assign(reinterpret_cast<const char*>(buf->data), used);
  auto deliver_part = [&] {
    if (!a) return;
    if (whole) a->deliver(std::move(buf), 0, n);
    else if (!part.empty()) a->deliver(std::move(part));
  };
  if (tx_status_ != 'I') {
    // Vetting makes this impossible; if it ever happens, the queued
    // client's request ran inside this transaction: end both.
    spdlog::error("{} server_pipelining: a transaction was left open ahead of a queued client's request; "
                  "closing the connection",
                  name_);
    deliver_part();
    fail("a pipelined request ran inside another client's transaction");
    return;
  }
  // As at the end of any transaction (see forward_to_client): a client with
  // input held back gets its answer before that input goes to a server.
  // (The queued client keeps its place: a client that leaves meanwhile
  // goes through unlink_client, which sees it.)
  const bool answer_first = a && a->has_held();
  if (a && !answer_first) {
    client_ = nullptr;
    a->server_released();
  }
  deliver_part();
  if (a && answer_first && client_ == a) {
    client_ = nullptr;
    a->server_released();
  }
  client_ = nullptr;
  if (state_ != State::linked) return;
  ClientConnection* b = std::exchange(next_, nullptr);
  next_gone_ = false;
  const bool cancel = std::exchange(cancel_next_, false);
  if (!b) {
    // The queued client left: nobody reads what its request brings.
    close("a pipelined client left with its request in flight");
    return;
  }
  client_ = b;
  client_mode_ = b->mode();
  syncing_keys_.clear();
  if (pool::Pool* p = pool()) p->hand_over(this, b);
  busy_since_ms_ = uv_now(loop_);
  query_start_ns_ = xact_start_ns_ = uv_hrtime();
  if (used < n && client_ == b && state_ == State::linked) {
    std::memmove(buf->data, buf->data + used, n - used);
    forward_answers(std::move(buf), n - used);
  }
  if (client_ != b || state_ != State::linked) return;  // b's answers were all in, or it left
  if (pending_z_ == 0 && !unsynced_) {
    // pgmux answered b's request itself: nothing is owed, and no answer
    // will come to end the transaction.
    b->flush_own_answers();
    if (client_ == b) maybe_release();
    return;
  }
  // b's cancel, deferred while it was queued, goes now that its request
  // runs; nobody is queued behind it this turn (the cancel could land on
  // that one).
  if (cancel) worker_.cancel_server_query(this);
  else fill_pipeline_slot();
}

void ServerConnection::forget_unprepared(const std::vector<uint64_t>& tags) {
  for (uint64_t tag : tags) {
    if (tag & kDeallocTag) continue;  // a DEALLOCATE's Execute, not a statement
    if (tag & kSqlStatementTag) {
      uint64_t id = tag & ~(kSqlStatementTag | kClientPrepareTag);
      for (auto it = sql_prepared_.begin(); it != sql_prepared_.end();) {
        if (it->second == id) it = sql_prepared_.erase(it);
        else ++it;
      }
    } else {
      statements_.erase(tag);
    }
  }
}

void ServerConnection::maybe_release() {
  if (state_ != State::linked || !client_ || client_->mode() == conf::PoolMode::session) return;
  if (pending_z_ == 0 && !unsynced_ && tx_status_ == 'I' && framer_.at_boundary() &&
      client_->at_message_boundary() && client_->tracker().empty())
    release_to_pool();
}

// Transaction/statement pooling: the transaction is over, the client keeps
// its session with pgmux and this connection serves someone else.
void ServerConnection::release_to_pool() {
  ClientConnection* c = client_;
  // A SET or RESET ran: what the session holds now is read first, for this
  // client (its next transaction may land elsewhere) and for the next one
  // here. The client's input waits meanwhile. While a cancel is in flight
  // (it could hit the read), after PostgreSQL has answered it.
  if (settings_changed_ && c->state() == ClientConnection::State::linked && !cancel_unanswered_) {
    c->settings_pending();
    if (cancels_in_flight_ == 0) read_settings();
    else read_after_cancel_ = true;  // cancel_done
    return;
  }
  client_ = nullptr;
  retry_armed_ = false;
  c->server_released();
  if (read_paused_) {
    read_paused_ = false;
    socket_.read_start();
  }
  if (hold_for_cancel()) return;  // after_client_left reads the settings then
  const conf::Config& cfg = worker_.config();
  if (cfg.server_reset_query_always && !cfg.server_reset_query.empty()) {
    if (pool()) pool()->begin_reset(this);
    reset_discards_ = true;
    run_internal({cfg.server_reset_query}, kPurposeReset);
    return;
  }
  if (settings_changed_) {
    if (pool()) pool()->begin_reset(this);
    read_settings();
    return;
  }
  state_ = State::idle;
  if (pool()) pool()->release(this);
}

void ServerConnection::read_settings() {
  settings_changed_ = false;
  settings_read_.clear();
  // Custom settings (myapp.x), which pg_settings leaves out, by name: the
  // ones the client's SET and RESET statements named, and the ones it or
  // the connection had already (a RESET of one shows as an empty value).
  std::vector<std::string> custom;
  auto add = [&](std::string_view name) {
    if (name.find('.') != std::string_view::npos &&
        std::none_of(custom.begin(), custom.end(), [&](const std::string& c) { return param_name_equal(c, name); }))
      custom.emplace_back(name);
  };
  if (client_) {
    if (const auto* named = client_->custom_settings())
      for (const std::string& n : *named) add(n);
    client_->for_each_param([&](const std::string& k, const std::string&) { add(k); });
  }
  for (const auto& [k, v] : set_by_us_) add(k);
  for (const auto& [k, v] : baseline_) add(k);
  run_internal({settings_read_sql(custom)}, kPurposeSettings);
}

std::string ServerConnection::settings_read_sql(const std::vector<std::string>& custom) {
  std::string sql(kReadSettingsSql);
  if (!custom.empty()) {
    sql += " UNION ALL SELECT n, pg_catalog.current_setting(n, true) FROM pg_catalog.unnest(ARRAY[";
    for (size_t i = 0; i < custom.size(); ++i) {
      if (i) sql += ", ";
      append_escaped_literal(sql, custom[i]);
    }
    sql += "]::pg_catalog.text[]) AS n WHERE COALESCE(pg_catalog.current_setting(n, true), '') "
           "OPERATOR(pg_catalog.<>) ''";
  }
  return sql;
}

// The session's settings as read: the ones the server reports are followed
// through ParameterStatus already; the others are what a client landing
// here must SET or RESET (link_sync), as if pgmux had made them.
// The session's settings cannot be read: the connection, whose session is
// not known, is closed, and the linked client goes on without what it SET
// carried over to its next transactions.
void ServerConnection::settings_lost(const std::string& why, const char* close_reason) {
  ClientConnection* c = std::exchange(client_, nullptr);
  spdlog::warn("{} {}{}", name_, why,
               c ? fmt::format(" (C-{}'s SET applies to its next transactions no more)", c->id()) : "");
  close(close_reason);
  if (c) {
    c->settings_read(nullptr, params_);
    c->server_released();
  }
}

// What connect_query set (baseline_) is nobody's own: a value still equal
// to it is left out, and one a client RESET is set again at the next link.
void ServerConnection::adopt_settings_read() {
  set_by_us_.clear();
  settings_own_.clear();
  for (auto& [k, v] : settings_read_) {
    if (read_only_parameter(k) || find_param(params_, k)) continue;
    const std::string* b = find_param(baseline_, k);
    if (b && *b == v) {
      // At connect_query's value: the client's own only if it had another
      // one (a startup option), which this SET replaced.
      if (const std::string* mine = client_ ? client_->param(k) : nullptr; mine && *mine != v)
        set_param(settings_own_, k, v);
      continue;
    }
    set_param(set_by_us_, k, v);
    set_param(settings_own_, k, v);
  }
  for (const auto& [k, v] : baseline_)
    if (!find_param(settings_read_, k)) set_param(set_by_us_, k, kUnknownSetting);
  settings_read_.clear();
  synced_with_ = {};
}

void ServerConnection::resume_reading() {
  if (read_paused_ && state_ == State::linked) {
    read_paused_ = false;
    if (socket_.read_start() != 0) fail("cannot read from server");
  }
}

void ServerConnection::unlink_client(const ClientConnection* c, bool responses_tracked) {
  if (c == next_ && c) {
    // Queued behind the current client, its request already sent: its
    // answers will have no reader (hand_over closes the connection then).
    next_ = nullptr;
    next_gone_ = true;
    cancel_next_ = false;
    if (!client_) both_left();
    return;
  }
  if (c != client_) return;
  if (next_gone_) {
    client_ = nullptr;
    both_left();
    return;
  }
  if (has_next()) {
    // The current client left with another queued behind it: its answers
    // are dropped up to its last ReadyForQuery, then the queued client's
    // begin (hand_over).
    client_ = nullptr;
    last_used_ms_ = uv_now(loop_);
    if (read_paused_) {
      read_paused_ = false;
      socket_.read_start();
    }
    return;
  }
  unlink_client(responses_tracked);
}

// Both the current and the queued client left: nobody is hurt by a cancel
// now, and the connection, with unread requests in flight, is not reused.
void ServerConnection::both_left() {
  if (busy()) worker_.cancel_server_query(this);
  close("both pipelined clients left with requests in flight");
}

// The current client left with one queued behind it: its statement runs to
// its end (a cancel could hit the queued request), up to query_timeout.
void ServerConnection::check_orphan_timeout(uint64_t now_ms, uint64_t query_ms) {
  if (client_ || !next_ || orphan_cancelled_ || !busy() || now_ms - busy_since_ms_ < query_ms) return;
  orphan_cancelled_ = true;
  spdlog::info("{} query_timeout: cancelling the statement of a client that left", name_);
  worker_.cancel_server_query(this);
}

void ServerConnection::unlink_client(bool responses_tracked) {
  client_ = nullptr;
  read_after_cancel_ = false;  // after_client_left reads the settings, once the cancel is answered
  last_used_ms_ = uv_now(loop_);
  retry_armed_ = false;
  retry_out_.clear();
  if (state_ == State::internal && (internal_purpose_ == kPurposeSync || internal_purpose_ == kPurposeServerCheck ||
                                     internal_purpose_ == kPurposeSettings || internal_purpose_ == kPurposeResetAll))
    return;  // finishes later
  if (state_ != State::linked) {
    close("client left during an internal query");
    return;
  }
  if (read_paused_) {
    read_paused_ = false;
    socket_.read_start();
  }
  if (unsynced_ || in_copy_in_ || !responses_tracked) {
    // Mid-pipeline or mid-COPY, or statements being prepared: the only safe
    // thing is a fresh connection.
    close("client left with a query in progress");
    return;
  }
  if (pending_z_ > 0 || !framer_.at_boundary()) {
    // Let the running query finish, discarding its output, then clean up.
    state_ = State::draining;
    if (pool()) pool()->begin_reset(this);
    return;
  }
  after_client_left();
}

void ServerConnection::after_client_left() {
  if (held_for_cancel_ || hold_for_cancel()) return;
  std::deque<std::string> q;
  if (tx_status_ != 'I') q.push_back("ROLLBACK");
  const conf::Config& cfg = worker_.config();
  bool reset = client_mode_ == conf::PoolMode::session || cfg.server_reset_query_always;
  reset_discards_ = reset && !cfg.server_reset_query.empty();
  if (reset_discards_) q.push_back(cfg.server_reset_query);
  // A SET the client made before it left (committed, or earlier in a
  // pipeline) is still on the session unless the reset query discards it.
  const bool read = settings_changed_ && !reset_discards_;
  settings_changed_ = false;
  if (q.empty() && !read) {
    state_ = State::idle;
    if (pool()) pool()->release(this);
    return;
  }
  if (pool() && PoolServer::state() != pool::ServerState::resetting) pool()->begin_reset(this);
  if (q.empty()) {
    read_settings();
    return;
  }
  read_after_reset_ = read;
  run_internal(std::move(q), kPurposeReset);
}

// True when the connection may not serve anyone now because of a cancel
// request (see cancel_sent): held until cancel_done, or closed.
bool ServerConnection::hold_for_cancel() {
  if (cancel_unanswered_) {
    close("a cancel request to it went unanswered: its signal may still come");
    return true;
  }
  if (cancels_in_flight_ == 0) return false;
  held_for_cancel_ = true;
  // Between clients: nothing is owed, so anything the server says now
  // (a notice, its own end) is read as while draining.
  state_ = State::draining;
  if (pool() && PoolServer::state() != pool::ServerState::resetting) pool()->begin_reset(this);
  spdlog::debug("{} held until PostgreSQL has answered its cancel request", name_);
  return true;
}

void ServerConnection::cancel_done(bool answered) {
  if (cancels_in_flight_ > 0) --cancels_in_flight_;
  if (!answered) cancel_unanswered_ = true;
  if (cancels_in_flight_ > 0 || state_ == State::closing) return;
  if (std::exchange(read_after_cancel_, false) && client_) {
    if (!cancel_unanswered_) {
      read_settings();
      return;
    }
    // Its signal may still come.
    settings_lost("a cancel request went unanswered before the session's settings were read",
                  "a cancel request to it went unanswered: its signal may still come");
    return;
  }
  if (!held_for_cancel_) return;
  held_for_cancel_ = false;
  after_client_left();  // rolls back / resets as needed, then back to the pool
}

// ---------------------------------------------------------------------------
// Ending

void ServerConnection::on_read_end(Socket&, int status) {
  if (state_ == State::login || state_ == State::connecting) {
    login_failed(server_error(proto::sqlstate::kConnectionFailure,
                              std::string("server closed the connection during login: ") +
                                  uv_strerror(status)));
    return;
  }
  fail(status == UV_EOF ? "server closed the connection" : uv_strerror(status));
}

void ServerConnection::on_drained(Socket&) {
  if (client_) client_->resume_reading();
  if (next_) next_->resume_reading();  // its request waited for the write queue too
}

void ServerConnection::on_write_error(Socket&, int status) { fail(uv_strerror(status)); }

void ServerConnection::fail(const char* reason) {
  if (state_ == State::closing) return;
  if (state_ == State::login || state_ == State::connecting || state_ == State::resolving) {
    login_failed(server_error(proto::sqlstate::kConnectionFailure, reason));
    return;
  }
  if (client_ && state_ == State::internal && internal_purpose_ == kPurposeServerCheck) {
    // Found dead by server_check_query: the client gets another server.
    server_check_failed(reason);
    return;
  }
  if (client_) {
    ClientConnection* c = client_;
    client_ = nullptr;
    if (pool()) ++pool()->stats.server_errors;
    c->server_lost(server_error(proto::sqlstate::kConnectionFailure,
                                std::string("server connection lost: ") + reason));
  }
  close(reason);
}

void ServerConnection::server_check_failed(const char* reason) {
  ClientConnection* c = client_;
  client_ = nullptr;
  internal_purpose_ = 0;
  if (pool()) ++pool()->stats.server_errors;
  close(reason);
  if (c) c->server_check_failed();
}

void ServerConnection::pool_close(const char* reason) {
  if (state_ == State::connecting || state_ == State::login || state_ == State::resolving) {
    login_failed(server_error(proto::sqlstate::kConnectionFailure, reason));
    return;
  }
  close(reason);
}

void ServerConnection::close(const char* reason) {
  if (state_ == State::closing) return;
  spdlog::info("{} closing ({}:{}, user \"{}\"): {}", name_, host_, port_, user_, reason);
  state_ = State::closing;
  if (resolve_req_) {
    resolve_req_->data = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(resolve_req_));
    resolve_req_ = nullptr;
  }
  if (pool()) pool()->remove(this);
  next_gone_ = false;
  for (ClientConnection* c : {std::exchange(client_, nullptr), std::exchange(next_, nullptr)}) {
    if (c)
      c->server_lost(server_error(proto::sqlstate::kConnectionFailure,
                                  std::string("server connection closed: ") + reason));
  }
  if (CheckOwner* owner = std::exchange(check_owner_, nullptr))
    owner->check_result(nullptr, std::string("connection closed: ") + reason);
  // Be polite to PostgreSQL when we are the ones ending it.
  std::string out;
  proto::terminate(out);
  socket_.write(std::move(out));
  socket_.close();
}

void ServerConnection::on_closed(Socket&) {
  worker_.server_finished(this);
  delete this;
}

void ServerConnection::send(std::string&& data) {
  if (state_ == State::closing) return;
  if (socket_.write(std::move(data)) != 0) fail("write to server failed");
}

}  // namespace pgmux
