// One connection from an application to pgmux.
#pragma once

#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>
#include <string>

#include "auth/scram.hpp"
#include "auth/userlist.hpp"
#include "conf/config.hpp"
#include "pool/pool.hpp"
#include "pool/router.hpp"
#include "protocol/builders.hpp"
#include "protocol/codec.hpp"
#include "protocol/tracker.hpp"
#include "src/admin.hpp"
#include "src/auth_query.hpp"
#include "src/params.hpp"
#include "src/prepared.hpp"
#include "src/socket.hpp"

namespace pgmux::proto {
struct SqlCommand;
}

namespace pgmux {

class Worker;
class ServerConnection;
struct RouteState;
enum class CloseReason;

// What a SQL DEALLOCATE name / DEALLOCATE ALL / DISCARD ALL sent through
// the extended protocol drops for the client.
// (discard_on_server: the client's own DISCARD ALL, which the server may run.)
enum class DeallocWhat : uint8_t { one, all, discard, discard_on_server };

class ClientConnection final : public SocketOwner, public pool::PoolClient {
 public:
  enum class State {
    startup,       // reading the startup packet (and SSL/GSS requests)
    auth,          // password exchange in progress
    wait_welcome,  // authenticated; waiting for the pool's server parameters
    idle,          // logged in, no server
    wait_server,   // a message arrived; waiting for a server from the pool
    syncing,       // linked; server is being brought to our parameters
    linked,        // forwarding both ways
    closing,
  };

  ClientConnection(Worker& w, Socket::Kind kind);
  ~ClientConnection() override;

  Socket& socket() { return socket_; }
  std::string tls_description() const { return socket_.tls_description(); }
  void start();

  // --- from the linked server ----------------------------------------------
  void deliver(IoBufferPtr buf, size_t offset, size_t n);
  void deliver(std::string&& data);
  bool write_backlogged() const { return socket_.queued() > 0; }
  proto::ResponseTracker& tracker() { return ms().tracker; }
  // Drops statement names whose Parse failed or was skipped (reported by
  // the tracker after an error).
  void forget_unnamed();
  // The server answered the client's Describe of one of its statements
  // (send_describe's tag) with this result type (proto::result_shape).
  void learn_shape(uint64_t tag, uint64_t shape);
  bool managed() const { return managed_; }
  void resume_reading();  // the server drained what we sent it
  void server_ready();                                // parameters in sync
  // server_pipelining: the client waits with one complete request, which
  // may go out behind another client's on a busy server.
  bool pipeline_request_ready() const;
  // Its request goes to `s`, queued behind the current client's.
  void pipelined_onto(ServerConnection* s);
  // pgmux's own answers that are due go out (see flush_due_responses).
  void flush_own_answers() {
    if (managed_ && ms_) flush_due_responses();
  }
  void server_sync_failed(const proto::ErrorFields& e);  // a SET was refused
  void server_lost(const proto::ErrorFields& e);         // the server died
  // The server saw ParameterStatus: the client now has this value.
  void parameter_changed(std::string_view name, std::string_view value);
  // The pool's value of `name` is about to change (its servers' startup
  // parameters did): a client without its own value keeps the one it was
  // told.
  void keep_told_value(std::string_view name, std::string_view value);
  // Transaction pooling, after a SET or RESET: the server reads what the
  // session now holds before it is given back; input waits meanwhile.
  void settings_pending() { state_ = State::syncing; }
  // The read: `unreported` are the session's settings that the server does
  // not report (those in `reported` follow ParameterStatus). They become
  // the client's, wherever its next transactions run. nullptr: the read
  // failed, the client keeps what it had.
  void settings_read(const pool::Params* unreported, const pool::Params& reported);
  // Names of custom settings (myapp.x) this client's SET / RESET named.
  const std::vector<std::string>* custom_settings() const { return ms_ ? &ms_->custom_settings : nullptr; }
  // The session parameters the client expects, name and value: the pool's
  // server values overridden by the client's own (startup, SET, options).
  template <class F>
  void for_each_param(F&& f) const {
    if (pool_) {
      for (const auto& [k, v] : pool_->welcome()) {
        const std::string* mine = find_param(desired_, k);
        f(k, mine ? *mine : v);
      }
    }
    for (const auto& [k, v] : desired_) {
      if (!pool_ || !find_param(pool_->welcome(), k)) f(k, v);
    }
  }
  conf::PoolMode mode() const { return mode_; }
  bool has_own_params() const { return !desired_.empty(); }
  // Identifies the client's own parameter set (equal sets, equal ids).
  uint64_t params_id();
  // No partial client message has been forwarded.
  bool at_message_boundary() const { return framer_.at_boundary(); }
  // Transaction/statement pooling: the server went back to the pool.
  void server_released();
  // The pool whose server parameters the client was told at login.
  const pool::Pool* home_pool() const { return pool_; }
  // Transactions are routed among the backends' pools.
  bool routed() const { return routing_ != nullptr; }
  // The client's value of a session parameter it set itself, or nullptr.
  const std::string* param(std::string_view name) const { return find_param(desired_, name); }
  // PAUSE ended for this client's database: its transaction may start.
  void resume_after_pause();
  // An admin console command that completed later (PAUSE, WAIT_CLOSE).
  void admin_done(const std::string& tag);

  // --- read/write routing ----------------------------------------------------
  // Client bytes held back while a replica works on a read (see
  // forward_to_server): the server answered everything sent, and is still
  // in the transaction, so they may go now.
  // Execute tags of DEALLOCATEs the server completed: their names go.
  void apply_deallocations(const std::vector<uint64_t>& tags);
  // Unprepared tags: a PREPARE of the client's that failed defines no name.
  void forget_failed_prepares(const std::vector<uint64_t>& tags);
  bool has_held() const { return !more_pending_.empty() && state_ == State::linked; }
  // Held input waits for the answers to what was sent (see ManagedState).
  bool waiting_for_answers() const { return ms_ && ms_->wait_for_answers; }
  void release_held();
  // The replica refused an auto-routed read (SQLSTATE 25006) before any row
  // reached the client: re-run it on the primary once the replica is
  // released.
  void begin_retry();
  // Read your writes: the server watches CommandComplete tags of routed
  // transactions on the primary; a tag that may have written marks it.
  bool watches_writes() const { return routing_ && routing_->write_link; }
  void note_write() {
    if (routing_) routing_->wrote = true;
  }

  // Ends the connection; `error` (if any) is sent first.
  void close(CloseReason reason, const proto::ErrorFields* error = nullptr);
  State state() const { return state_; }
  uint64_t id() const { return id_; }
  const std::string& user() const { return user_; }
  const std::string& database() const { return database_; }
  pool::TimePoint login_started() const { return login_started_; }
  ServerConnection* server() const { return server_; }
  uint64_t last_active_ms() const { return last_active_ms_; }

  // The server it was given failed server_check_query: take another.
  void server_check_failed();
  // auth_query answered (see AuthQuery::lookup).
  void auth_lookup_done(AuthQuery::Answer a, const std::optional<auth::Secret>& secret);

  // pool::PoolClient
  void pool_welcome_ready() override;
  void pool_server_assigned(pool::PoolServer* server) override;
  void pool_wait_failed(const proto::ErrorFields& error) override;
  void pool_wait_notice() override;

  pool::ListHook<ClientConnection> all_hook;
  pool::ListHook<ClientConnection> login_hook;

 private:
  // SocketOwner
  void on_read(Socket& s, IoBufferPtr buf, size_t n) override;
  void on_read_end(Socket& s, int status) override;
  void on_drained(Socket& s) override;
  void on_write_error(Socket& s, int status) override;
  void on_closed(Socket& s) override;
  void on_tls_handshake(Socket& s, bool ok, const std::string& error) override;

  void handle_login_bytes(const uint8_t* data, size_t n);
  bool handle_startup_packet(const proto::StartupPacket& p);
  bool handle_auth_message(char type, proto::ByteSpan body);
  void begin_auth();
  void note_sql_writes(const uint8_t* data, size_t n);
  conf::AuthType auth_method(std::string& refusal) const;
  void auth_succeeded();
  void auth_failed(const std::string& log_reason);
  void send_welcome();
  void complete_login(const pool::Params& params);
  void handle_idle_data(IoBufferPtr buf, size_t n);
  void forward_to_server(IoBufferPtr buf, size_t offset, size_t n);
  // Transaction pooling with prepared statements: rewrites statement names,
  // prepares statements on servers that lack them, answers Close itself.
  void forward_managed(IoBufferPtr buf, size_t offset, size_t n);
  bool process_message(char type, const std::string& body, std::string& out);
  void report_own_error(std::string error_response, std::string& out, bool simple);
  void fail_on_server(std::string& out, bool simple);
  bool deallocate_extended(DeallocWhat what, const std::string& name, std::string reply,
                           std::string& out);
  bool sql_command_extended(const proto::SqlCommand& cmd, std::string_view query,
                            const std::string& body_str, std::string& out);
  void run_hidden_extended(const std::string& sql, uint64_t tag, std::string& out);
  void run_hidden(const std::string& sql, uint64_t tag, std::string& out, bool simple);
  void deallocate_on_server(const std::string& name, std::string& out, bool simple);
  void ensure_sql_on_server(const std::string& name, StatementRef& st, std::string& out, bool simple,
                            bool follow_text = true);
  bool arm_execute(const std::string& body, std::string& out);
  bool drop_all_pending() const;
  bool uncertain_name(std::string_view name);
  pool::Params set_login_settings(std::string& out);
  std::string reset_to_login_params();
  // Requests in flight on the server; pgmux's own answers that are due go
  // out first (a tracker holding only those waits for nothing).
  bool awaiting_server() {
    flush_due_responses();
    return !ms().tracker.empty();
  }
  bool wait_for_answers() {
    ms().wait_for_answers = true;
    return true;
  }
  void probe_failed_transaction(std::string& out);
  void emit_parse(const StatementRef& st, std::string& out, bool hidden, uint64_t client_tag = 0);
  void send_describe(const StatementRef& st, std::string& out, bool hidden, const std::string& name = {});
  // A request for the server: its message goes into `out`, and the tracker
  // and the server's counters learn of it.
  void send_request(std::string& out, char type, std::string_view body,
                    proto::ResponseTracker::Request r, bool hidden = false, uint64_t tag = 0,
                    uint64_t client_tag = 0);
  void flush_due_responses();
  bool process_query(const std::string& body, std::string& out);
  void note_set_statements(std::string_view query, bool simple_query, bool named);
  // Parse of statements a server already accepted (+ Close) + Sync while no
  // server is linked: answered by pgmux alone. False if the chunk is
  // anything else.
  bool answer_without_server(const uint8_t* data, size_t n);
  void acquire_server();
  // Routed databases: the backend for the transaction starting with
  // pending_; false when routing refused it (the client is closed).
  bool choose_backend(pool::Pool*& target);
  pool::Intent routing_intent(bool& retryable);
  // Read route: how much of a chunk may go to the replica now (up to the
  // end of the first Query/Sync; nothing while an answer is still owed).
  size_t read_unit_cut(const uint8_t* data, size_t n) const;
  // Client input kept for later, in buffer-sized pieces: after what is held,
  // or with `at` from that index on (advanced past the new pieces).
  void hold(const uint8_t* data, size_t n, size_t* at = nullptr);
  void send(std::string&& data);
  void protocol_error(const std::string& what);
  bool parse_options(const std::string& options, std::string& error);

  Worker& worker_;
  Socket socket_;
  uint64_t id_;
  State state_ = State::startup;
  uint32_t pending_len_ = 0;  // bytes in pending_ (fills the padding after state_)
  uint8_t check_failures_ = 0;  // server_check_query failures in a row for this request
  std::string user_, database_;
  pool::Pool* pool_ = nullptr;
  ServerConnection* server_ = nullptr;
  // server_pipelining: the unnamed statement this client parsed on that
  // server in that request segment is pipeline-safe (vet_for_pipelining).
  const ServerConnection* vetted_unnamed_ = nullptr;
  uint64_t vetted_unnamed_segment_ = 0;
  proto::PipelineKind vetted_unnamed_kind_ = proto::PipelineKind::unsafe;
  bool pipelining_on() const;
  void vet_for_pipelining(char type, proto::ByteSpan body, uint32_t body_length);
  pool::TimePoint login_started_;

  proto::StreamFramer framer_;
  IoBufferPtr pending_;  // bytes read while waiting for a server
  static constexpr size_t kMaxPendingBuffers = 4;
  std::vector<std::pair<IoBufferPtr, size_t>> more_pending_;  // rare: pipelined while waiting

  // Authentication state lives on the heap only while a login is in
  // progress, so a logged-in idle client does not carry it.
  enum class Method { none, md5, scram };
  struct AuthState {
    std::string inbuf;  // startup and authentication messages
    Method method = Method::none;
    bool mock = false;  // unknown user or database: fail after the exchange
    std::string fail_reason;
    uint8_t md5_salt[4] = {};
    std::string md5_expected;
    std::optional<auth::ScramServer> scram;
    bool scram_first_done = false;
    bool from_verifier = false;  // SCRAM against a stored verifier: keys usable for pass-through
    // An hba rule with map= checked the certificate's common name (so
    // [tls] verify-full's name-is-the-user check does not apply).
    bool cert_name_mapped = false;
    // auth_query: the lookup ran (its answer, when found).
    bool failing = false;  // failed; closed after auth_failure_delay
    bool looked_up = false;
    bool lookup_pending = false;
    std::optional<auth::Secret> looked_up_secret;
  };
  std::unique_ptr<AuthState> auth_ = std::make_unique<AuthState>();

  // Only where the client differs from (or adds to) the pool's server values:
  // an idle client holds a few strings, not a copy of every parameter.
  pool::Params desired_;
  uint64_t params_id_ = 0;  // params_id(), 0 = to compute (desired_ changed)
  uint32_t cancel_pid_ = 0, cancel_key_ = 0;
  bool counted_ = false;  // counted against max_client_conn
  bool login_counted_ = false;  // in Hub::count_login (database_, user_)
  bool in_forward_managed_ = false;  // see forward_to_server
  bool delivery_failed_ = false;     // a write to the client failed: closing
  void delivery_failed();
  uint64_t last_active_ms_ = 0;  // loop time of the last read
  conf::PoolMode mode_ = conf::PoolMode::session;

  // transaction pooling with prepared statements (see forward_managed)
  bool managed_ = false;
  // Managed forwarding state (response tracking, the message in progress),
  // allocated at the first managed request: a client that never sent one
  // (idle in a pool of 10,000) does not carry it.
  struct ManagedState {
    proto::ResponseTracker tracker;
    std::vector<std::string> custom_settings;  // note_set_statements
    // A named statement holds a SET: its Executes, which pgmux does not
    // follow, answer with SET tags, so no SET tag is taken for a SET LOCAL
    // any more (see note_set_statements).
    bool named_sets = false;
    uint64_t next_parse_tag = 1;
    char acc_type = 0;
    bool accumulating = false;
    bool pass_current = false;  // the message in progress goes out unchanged
    // The statement whose result type pgmux described (hidden) for the
    // request waiting for answers (keep_result_type).
    uint64_t shape_wait = 0;
    bool skip_to_sync = false;  // pgmux answered an error: drop messages until Sync
    bool drop_current = false;  // the message in progress is dropped
    // pgmux must answer a request itself, or apply a Close, but the answer
    // depends on requests still in flight (a Parse that may fail, an error
    // that makes the server skip to Sync): the client's input is held until
    // the server has answered everything sent (the tracker is empty).
    bool wait_for_answers = false;
    // pgmux's DISCARD ALL went: the rest of the input waits for its answers,
    // then a hidden Sync commits it unless it failed (release_held).
    bool sync_after_answers = false;
    // SQL commands pgmux follows (a DEALLOCATE, DEALLOCATE ALL, DISCARD
    // ALL or PREPARE) in the unnamed statement and the portals bound to it:
    // what an Execute of such a portal carries.
    struct Armed {
      // set: a SET statement, whose Execute answers with a SET tag
      // (ServerConnection::expect_set_tag).
      enum class Kind : uint8_t { deallocate, prepare, set } kind = Kind::deallocate;
      bool scoped = false;  // set: SET LOCAL / SET TRANSACTION
      uint64_t tag = 0;
      // deallocate: what goes, recorded (named().deallocs) as the Execute goes.
      DeallocWhat what = DeallocWhat::one;
      // deallocate: non-empty when the server's CommandComplete is hidden
      // and this (pgmux's answer) takes its place.
      std::string reply;
      // The client's name (deallocate one, prepare); prepare: its
      // statement, recorded as the Execute goes.
      std::string name;
      StatementRef st;
    };
    // (On the heap: most clients never send such a command.)
    struct Arms {
      // The unnamed statement's, until the next Parse of it.
      std::optional<Armed> statement;
      // Portals bound to it, until bound to another statement or closed
      // (all go with the link to the server: the transaction ends).
      std::vector<std::pair<std::string, Armed>> portals;
      bool empty() const { return !statement && portals.empty(); }
    };
    std::unique_ptr<Arms> arms;
  };
  // The unnamed statement now holds a SQL command pgmux follows.
  ManagedState::Armed& arm(ManagedState::Armed::Kind kind, uint64_t tag) {
    if (!ms().arms) ms().arms = std::make_unique<ManagedState::Arms>();
    ms().arms->statement.emplace();
    ms().arms->statement->kind = kind;
    ms().arms->statement->tag = tag;
    return *ms().arms->statement;
  }
  // The unnamed statement is parsed again (its command goes; the portals
  // bound to it keep theirs).
  void disarm_statement() {
    if (!ms_ || !ms_->arms) return;
    ms_->arms->statement.reset();
    if (ms_->arms->empty()) ms_->arms.reset();
  }
  // `portal` is bound to another statement, or closed.
  void disarm_portal(std::string_view portal);
  std::unique_ptr<ManagedState> ms_;
  ManagedState& ms() { return ms_ ? *ms_ : make_ms(); }  // inline: called per message
  ManagedState& make_ms();
  // Named statements, allocated on first use: most clients never name one,
  // and an idle client should not carry four empty hash tables.
  struct NamedState {
    // A client's protocol-level statement: pgmux's statement, and the
    // result type the client was told when it described it (0 if it did
    // not; proto::result_shape).
    struct ClientStatement {
      StatementRef st;
      uint64_t shape = 0;
    };
    std::unordered_map<std::string, ClientStatement> stmts;  // client name -> statement
    // The client's Describes of its statements in flight: describe tag ->
    // name and statement (learn_shape).
    std::unordered_map<uint64_t, std::pair<std::string, uint64_t>> describing;
    // The last Bind, when it bound a statement whose result type the client
    // was not told (it never described it): a Describe of that portal tells
    // it (pgjdbc, libpq's PQexecPrepared: Bind, Describe portal, Execute).
    // Any Bind resets it, and so does whatever may close the portal or put
    // another in its place (Close portal, Query, Execute, FunctionCall,
    // Sync): a cursor of the same name does not have the statement's type.
    struct Bound {
      std::string portal, name;
      uint64_t id = 0;  // 0: none
    } bound;
    std::unordered_map<std::string, StatementRef> sql_stmts;  // SQL-level PREPARE names
    // Parses not yet answered: client tag -> name and the request segment
    // the Parse went in, and the tag that last defined each such name, so a
    // Parse the server skipped or refused leaves no name behind.
    struct Unconfirmed {
      std::string name;
      uint64_t segment;
    };
    std::unordered_map<uint64_t, Unconfirmed> unconfirmed;
    // DEALLOCATE [ALL] / DISCARD ALL in flight through the extended
    // protocol: the tag of its Execute -> what goes when the server completes it.
    struct Dealloc {
      DeallocWhat what;
      std::string name;  // one
    };
    std::unordered_map<uint64_t, Dealloc> deallocs;
    // SQL PREPAREs in flight through the extended protocol: the tag of the
    // Execute -> name (the name exists only if the server completes it).
    std::unordered_map<uint64_t, std::string> sql_prepares;
    std::unordered_map<std::string, uint64_t> name_tag;
    std::string acc;   // body of a message being inspected
    std::string held;  // header bytes of a message whose type is not known yet
  };
  std::unique_ptr<NamedState> named_;
  NamedState& named() {
    if (!named_) named_ = std::make_unique<NamedState>();
    return *named_;
  }
  std::unique_ptr<pool::Params> login_params_;  // desired_ at login, if any (DISCARD ALL)

  // Read/write routing, allocated only for clients of a routed database in
  // transaction or statement mode.
  struct Routing {
    std::shared_ptr<RouteState> route;
    pool::TimePoint wrote_at{};  // end of the last transaction sent to the primary
    bool read_link = false;      // the linked server is a replica chosen for a read
    bool write_link = false;     // the linked server was chosen for a write
    bool wrote = false;          // ... and a command in it may have written
    bool retrying = false;       // the replica is being released for a retry
    bool force_primary = false;  // the next transaction goes to the primary
    IoBufferPtr retry;           // an auto-routed read, kept until answered
    size_t retry_len = 0;
  };
  std::unique_ptr<Routing> routing_;

  // Admin console sessions (database "pgmux" / "pgbouncer").
  struct AdminState {
    AdminLevel level = AdminLevel::none;
    std::string in;       // bytes not processed yet
    bool busy = false;    // a command completes later
    bool skip = false;    // after an extended-protocol message: until Sync
  };
  std::unique_ptr<AdminState> admin_;
  void admin_input(const uint8_t* data, size_t n);
  void admin_welcome();
};

}  // namespace pgmux
