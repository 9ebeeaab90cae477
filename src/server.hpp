// One connection from pgmux to a PostgreSQL server.
#pragma once

#include <uv.h>

#include <deque>
#include <utility>
#include <unordered_map>
#include <vector>
#include <optional>
#include <string>

#include "auth/scram.hpp"
#include "conf/config.hpp"
#include "pool/pool.hpp"
#include "protocol/codec.hpp"
#include "protocol/sql_commands.hpp"
#include "protocol/inspect.hpp"
#include "protocol/tracker.hpp"
#include "src/prepared.hpp"
#include "src/socket.hpp"
#include "src/tls.hpp"

namespace pgmux {

class Worker;
class ClientConnection;

// Gets the answer to a health-check query run on a pooled connection.
class CheckOwner {
 public:
  virtual ~CheckOwner() = default;
  // `row`: the first row (NULL = nullopt) when the query succeeded, else
  // null and `error` says why.
  virtual void check_result(const std::vector<std::optional<std::string>>* row,
                            const std::string& error) = 0;
};

class ServerConnection final : public SocketOwner, public pool::PoolServer {
 public:
  enum class State {
    resolving,   // looking up the host name
    connecting,  // TCP / unix connect in progress
    login,       // startup + authentication
    internal,    // running pgmux's own queries (connect_query, SETs, reset)
    idle,        // in the pool, nobody linked
    linked,      // forwarding for a client
    draining,    // client gone; discarding the rest of its replies
    closing,
  };

  ServerConnection(Worker& w, pool::Pool& pool, const conf::DatabaseConfig& db,
                   std::string user, std::string dbname, std::string host, uint16_t port,
                   std::optional<std::string> password);
  ~ServerConnection() override;

  // Starts resolving/connecting; false (error set) when it cannot even start.
  bool start(proto::ErrorFields& error);

  // A client was linked by the pool: bring session parameters in line with
  // what the client expects, then tell it (ClientConnection::server_ready).
  void link(ClientConnection* c);
  // Runs a health-check query (the connection is assigned to the checker);
  // the owner hears the outcome exactly once, then the connection goes
  // back to its pool (or closes).
  // `params`: sent as bound values (extended protocol). `empty_ok`: no row
  // is an answer (check_result gets an empty row), not an error.
  void run_check(const std::string& sql, CheckOwner* owner, const std::vector<std::string>& params = {},
                 bool empty_ok = false);
  // The checker gave up waiting: forget it (the connection is closed).
  void abandon_check();
  // Client bytes to forward as they are.
  void forward(IoBufferPtr buf, size_t offset, size_t n);
  void forward_copy(const std::string& data);
  // The linked client is gone: roll back / reset and return to the pool if
  // the connection is at a clean boundary, else close it.
  // `responses_tracked`: the client's response tracker was empty, so the
  // server's prepared-statement records are exact.
  void unlink_client(bool responses_tracked = true);
  // `c` (the current or the queued client) is gone.
  void unlink_client(const ClientConnection* c, bool responses_tracked);
  // Backpressure: the client drained its write queue.
  void resume_reading();
  bool write_backlogged() const { return socket_.queued() > 0; }
  // Bookkeeping of what the server still owes: every Query, Sync and
  // FunctionCall is answered by exactly one ReadyForQuery.
  // `hidden`: pgmux's own request (its Execute does not count as the
  // client's statement in a pipeline: pipelining()).
  void count_request(char type, bool hidden = false) {
    bool was_busy = pending_z_ > 0 || unsynced_;
    const proto::PipelineKind vetted = std::exchange(vetted_, proto::PipelineKind::unsafe);
    if (type == 'S') after_sync_ = !extended_copy_in_;  // (ignored in copy-in mode)
    else if (type != 'Q' && type != 'F') after_sync_ = false;  // a Query keeps it (it needs no Sync)
    switch (type) {
      case 'S':
        // In copy-in mode the server ignores Sync: no ReadyForQuery for it.
        if (extended_copy_in_) break;
        ++syncs_since_execute_;
        ++pending_z_;
        pipelining_ = false;
        ++segment_;
        unsynced_ = false;
        last_segment_safe_ = segment_safe_;
        last_segment_ends_tx_ = false;  // (a COMMIT counts as a simple Query only)
        segment_safe_ = true;
        break;
      case 'Q': case 'F':
        ++pending_z_;
        ++segment_;
        // A Query after extended-protocol messages without a Sync is a
        // segment of its own only for the server's error handling: not safe.
        last_segment_safe_ = segment_safe_ && !unsynced_ && vetted != proto::PipelineKind::unsafe && type == 'Q';
        last_segment_ends_tx_ = last_segment_safe_ && vetted == proto::PipelineKind::ends_transaction;
        segment_safe_ = true;
        unsynced_ = false;
        last_was_execute_ = pipelining_ = false;
        break;
      case 'E':
        syncs_since_execute_ = 0;
        last_was_execute_ = unsynced_ = true;
        if (!hidden) pipelining_ = true;
        break;
      case 'P': case 'B':
        // Through the extended protocol only safe statements count: a
        // COMMIT's Bind may fail (parameters) or its Execute name another
        // portal, and the block would stay open.
        if (vetted != proto::PipelineKind::safe) segment_safe_ = false;
        unsynced_ = true;
        break;
      case 'D': case 'C': case 'H': unsynced_ = true; break;
      case 'c': case 'f': copy_done_sent(); segment_safe_ = false; break;
      default: segment_safe_ = false; break;
    }
    if (!was_busy && (pending_z_ > 0 || unsynced_)) {
      busy_since_ms_ = uv_now(loop_);
      query_start_ns_ = uv_hrtime();
      if (!xact_start_ns_) xact_start_ns_ = query_start_ns_;
    }
  }
  // A request of a client whose messages pgmux forwards untouched, with no
  // response tracker of its own (max_prepared_statements = 0, or session
  // pooling): the connection's own tracker follows them, so that a simple
  // Query PostgreSQL skips after an extended-protocol error is not counted
  // as owed (see note_skipping).
  void count_untracked_request(char type);
  // ReadyForQuery messages the server still owes.
  int owed_ready() const { return pending_z_; }

  // server_pipelining: a client whose complete request would otherwise wait
  // for a server goes out on a busy one, behind the current client's last
  // request, when that request is known to leave the server idle with the
  // session unchanged (see proto::pipeline_safe_query). The next client
  // takes over at the current one's last ReadyForQuery.
  //
  // The client vouches for the next Parse, Bind or Query (its statement
  // is pipeline-safe); an Execute needs no vetting (its portal was bound
  // in the same segment).
  void vet(proto::PipelineKind kind) { vetted_ = kind; }
  // A waiting client may go out behind the current client's request now
  // (if it fits_behind).
  bool pipeline_slot_open() const;
  // `b` needs no SET on this server first.
  bool fits_behind(ClientConnection* b) const;
  // A queued client's request goes out behind the current client's.
  void queue_next(ClientConnection* b) {
    next_ = b;
    owed_current_ = pending_z_;
  }
  // The queued client, if any (nullptr when none or when it left).
  ClientConnection* next_client() const { return next_; }
  bool has_next() const { return next_ != nullptr || next_gone_; }
  // The pipeline slot is open: the longest-waiting client of the pool that
  // fits behind the current one goes now. False: none went.
  bool fill_pipeline_slot();
  // A cancel request of the queued client: sent when its request runs.
  void cancel_when_next_runs() { cancel_next_ = true; }
  // CancelRequests for this backend on their way (Worker's CancelSender).
  // PostgreSQL signals a backend twice for one (its process, then its
  // process group), and the second signal can land after the cancelled
  // statement ended, cancelling whatever the backend runs next. It has
  // landed once PostgreSQL closed the cancel connection: until then the
  // connection serves nobody else (held, in the pool's resetting list), and
  // it is closed rather than reused if that never came (`answered` false).
  void cancel_sent() { ++cancels_in_flight_; }
  void cancel_done(bool answered);
  unsigned cancels_in_flight() const { return cancels_in_flight_; }
  bool held_for_cancel() const { return held_for_cancel_; }
  // query_timeout for the statement of a current client that left with
  // another queued behind it (nobody else checks it).
  void check_orphan_timeout(uint64_t now_ms, uint64_t query_ms);
  // The client's request is an auto-routed read on a replica: hold the
  // answer until it is clear whether the replica refused it as a write
  // (SQLSTATE 25006, before any row), in which case the client re-runs it
  // on the primary and never sees this answer.
  void arm_retry() {
    retry_armed_ = true;
    retry_wanted_ = retry_decided_ = false;
    retry_out_.clear();
  }
  // For query_timeout / idle_transaction_timeout (loop milliseconds).
  bool busy() const { return pending_z_ > 0 || unsynced_; }
  // An Execute went since the last Sync.
  bool executed_since_sync() const { return last_was_execute_ && syncs_since_execute_ == 0; }
  // ... a client's Execute, which may have left the implicit transaction
  // open, where PostgreSQL refuses commands that cannot run in a
  // transaction block ("within a pipeline"). pgmux's own Executes do not
  // count: PostgreSQL would not have run them.
  bool pipelining() const { return pipelining_; }
  // A client's Execute whose answer pgmux hides (and replaces) all the same.
  void client_executed() { pipelining_ = true; }
  // With nothing in flight and no error pending: the server is in a failed
  // transaction block. The last ReadyForQuery said so, and no Execute ran
  // since (in a failed block only a ROLLBACK or COMMIT can, which ends it).
  bool in_failed_transaction() const { return tx_status_ == 'E' && !executed_since_sync(); }
  // The request segment being sent (see ServerStatementCache::usable).
  uint64_t segment() const { return segment_; }
  uint64_t busy_since_ms() const { return busy_since_ms_; }
  uint64_t ready_since_ms() const { return ready_since_ms_; }

  void close(const char* reason);
  State state() const { return state_; }
  uint32_t backend_pid() const { return key_.pid; }
  uint32_t backend_key() const { return key_.key; }
  const std::string& host() const { return host_; }
  const std::string& user() const { return user_; }
  std::string tls_description() const { return socket_.tls_description(); }
  bool local_address(std::string& ip, int& port) const { return socket_.address(false, ip, port); }
  uint16_t port() const { return port_; }
  const std::string& name() const { return name_; }
  const std::string& dbname() const { return dbname_; }  // on the server
  ClientConnection* linked_client() const { return client_; }
  ServerStatementCache& statements() { return statements_; }
  // A Bind or Describe of a statement of that generation goes out in the
  // segment being sent (see stale plans in watch_end): the oldest
  // generation each unanswered segment uses is kept.
  void note_statement_use(uint64_t generation) {
    if (statement_uses_.empty() || statement_uses_.back().first != segment_)
      statement_uses_.emplace_back(segment_, generation);
    else if (generation < statement_uses_.back().second)
      statement_uses_.back().second = generation;
  }
  // SQL-level PREPARE names on this connection -> statement id.
  std::unordered_map<std::string, uint64_t>& sql_prepared() { return sql_prepared_; }
  // RESET ALL, then SET of these (a client's login values), went to the
  // server: pgmux's own settings there are these only.
  void settings_reset_to(const pool::Params& values);
  // A command tag the server sent: SET and RESET (transaction pooling)
  // make the settings be read before the connection serves anyone else.
  void note_session_command(std::string_view tag);
  // The server ran a client's DISCARD ALL: its prepared statements and the
  // settings pgmux made are gone.
  void forget_session_state() {
    statements_.clear();
    sql_prepared_.clear();
    custom_dirty_ = false;
    forget_settings();
  }
  void forget_settings();
  // After an error in an extended-protocol request the server skips
  // everything up to the next Sync, simple Queries included: those owe no
  // ReadyForQuery (their segments are over), and until the client's Sync
  // is sent the connection is not at rest, whatever came since (a Query
  // would have ended the extended-protocol run otherwise).
  void note_skipping(proto::ResponseTracker& tracker) {
    if (const size_t n = tracker.take_skipped_queries())
      pending_z_ = pending_z_ > int(n) ? pending_z_ - int(n) : 0;
    if (tracker.skipping()) unsynced_ = true;
  }
  // Nothing but simple Queries since the last Sync (or since the link): the
  // server runs the next message whatever came before (no extended-protocol
  // error can make it skip to a Sync).
  bool after_sync() const { return after_sync_; }
  // The client is sending (in the request segment being sent) a statement
  // that answers with a SET tag, the next one pgmux followed: `scoped` when
  // it changes nothing beyond its transaction (SET LOCAL, SET TRANSACTION).
  // The tags come back in the same order within the segment, and a failing
  // statement ends the segment, so a tag is matched with the oldest entry
  // of the segment it answers. Only a scoped one skips the read.
  void expect_set_tag(bool scoped) {
    if (set_tags_lost_) return;
    if (expected_set_tags_.size() >= 256) {  // never mismatched: from now on every tag counts
      expected_set_tags_.clear();
      set_tags_lost_ = true;
      return;
    }
    expected_set_tags_.emplace_back(segment_, scoped);
  }
  char tx_status() const { return tx_status_; }
  // uv_hrtime() when the current client's transaction (or statement outside
  // one) began on this server; 0 between transactions.
  uint64_t xact_start_ns() const { return xact_start_ns_; }
  // Transaction pooling: give the connection back if nothing is in flight
  // (after requests pgmux answered itself).
  void maybe_release();
  void forget_unprepared(const std::vector<uint64_t>& tags);
  // The server's framer is between messages (safe to insert our own).
  bool at_message_boundary() const { return framer_.at_boundary(); }

  // pool::PoolServer
  void pool_close(const char* reason) override;

  pool::ListHook<ServerConnection> all_hook;

 private:
  // SocketOwner
  void on_read(Socket& s, IoBufferPtr buf, size_t n) override;
  void on_read_end(Socket& s, int status) override;
  void on_drained(Socket& s) override;
  void on_write_error(Socket& s, int status) override;
  void on_connected(Socket& s, int status) override;
  void on_tls_handshake(Socket& s, bool ok, const std::string& error) override;
  void handle_tls_answer(const uint8_t* data, size_t n);
  void link_sync();  // link's second half: the client's parameters
  void server_check_failed(const char* reason);
  uint64_t last_used_ms_ = 0;  // loop time the last client left (or login ended)
  void on_closed(Socket& s) override;

  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  void connect_to(const sockaddr* addr);
  void send_startup();
  bool process_buffered();  // complete messages in inbuf_ (login/internal/idle)
  bool handle_login_message(char type, proto::ByteSpan body);
  bool handle_internal_message(char type, proto::ByteSpan body);
  bool handle_auth(proto::ByteSpan body);
  void login_failed(proto::ErrorFields e);
  void login_complete();
  // `params`: the (single) query is sent with bound values (extended protocol).
  void run_internal(std::deque<std::string> queries, int purpose, const std::vector<std::string>& params = {});
  void internal_done();
  void forward_to_client(IoBufferPtr buf, size_t n);
  // Scans server bytes: tracks ReadyForQuery, ParameterStatus and COPY;
  // returns false (after failing the connection) on a framing error.
  // `release_point` is set when a ReadyForQuery answered everything sent.
  bool scan_server_bytes(proto::ByteSpan chunk, bool& release_point, size_t& used);
  // Same scan for a client whose responses are rewritten (hidden responses
  // of injected requests, pgmux's own responses inserted): builds `out`.
  bool rewrite_server_bytes(proto::ByteSpan chunk, bool& release_point, std::string& out, size_t& used);
  void watch_header(char type, bool& release_point);
  void watch_body(proto::ByteSpan data);
  void watch_end(bool& release_point);
  void absorb_tracker_reports(proto::ResponseTracker& tracker);
  void count_ready();
  void release_to_pool();
  void after_client_left();
  void note_parameter(std::string_view name, std::string_view value);
  void send(std::string&& data);
  void fail(const char* reason);

  Worker& worker_;
  std::string connect_query_;  // a copy: a reload may free the entry it came from
  std::vector<std::pair<std::string, std::string>> startup_params_;  // the entry's parameters (copied too)
  std::string user_, dbname_, host_, name_;
  uint16_t port_;
  std::optional<std::string> password_;  // for the server login, if known
  Socket socket_;
  State state_ = State::resolving;
  uv_getaddrinfo_t* resolve_req_ = nullptr;
  ClientConnection* client_ = nullptr;
  // server_pipelining (see can_pipeline_behind).
  ClientConnection* next_ = nullptr;  // the queued client
  int owed_current_ = 0;     // ReadyForQuery messages owed to client_ before next_ runs
  bool handoff_ = false;     // the scan stopped at the current client's last one
  bool next_gone_ = false;   // the queued client left: its answers have no reader
  bool cancel_next_ = false; // the queued client asked to cancel
  bool orphan_cancelled_ = false;  // check_orphan_timeout sent its cancel
  uint16_t cancels_in_flight_ = 0;   // see cancel_sent
  bool held_for_cancel_ = false;     // waiting for them before it serves again
  bool cancel_unanswered_ = false;   // one was never answered
  bool hold_for_cancel();
  void both_left();
  proto::PipelineKind vetted_ = proto::PipelineKind::unsafe;  // of the next Parse / Bind / Query
  bool segment_safe_ = true; // every one sent since the last Sync was vetted
  bool last_segment_safe_ = false;     // the last segment (up to its Sync) was safe,
  bool last_segment_ends_tx_ = false;  // ... and a simple Query of one COMMIT, ROLLBACK...
  bool param_status_since_idle_ = false;  // a ParameterStatus came since the last ReadyForQuery 'I'

  void hand_over(IoBufferPtr buf, size_t used, size_t n, bool rewritten, std::string& out);
  void forward_answers(IoBufferPtr buf, size_t n);

  std::string inbuf_;  // whole messages while not forwarding
  proto::StreamFramer framer_;
  std::string msg_acc_;  // body of a small message being watched (S, Z)
  char watched_type_ = 0;
  // A statement Describe's answer being watched (tracker.describing).
  uint64_t described_stmt_ = 0, described_name_ = 0;
  bool watch_overflow_ = false;  // its RowDescription is over kMaxWatchedMessage
  bool hiding_ = false;       // the message in progress is not for the client
  std::string held_header_;   // header bytes whose message type is not known yet

  std::optional<auth::ScramClient> scram_;
  bool awaiting_tls_answer_ = false;  // SSLRequest sent, 'S' / 'N' not read yet
  std::shared_ptr<const tls::Context> tls_ctx_;  // as when the SSLRequest went out
  proto::BackendKey key_;
  pool::Params params_;         // ParameterStatus values as the server reported
  // Non-reported settings on the session that are not the server's
  // defaults: SET by pgmux for a client, or found by read_settings after a
  // client's SET (cleared by reset).
  pool::Params set_by_us_;
  // A SET or RESET completed since the settings were last read (transaction
  // pooling): they are read before the connection serves anyone else.
  bool settings_changed_ = false;
  bool read_after_reset_ = false;  // read them once the running reset is done
  bool read_after_cancel_ = false;  // ... once PostgreSQL has answered the cancels in flight
  // A SET ran that may have made a setting the read could not see (a
  // custom myapp.x pgmux could not name, one pg_settings hides from the
  // role): another client than the owner (the one that ran it; 0 = none
  // left) gets the connection after RESET ROLE and RESET ALL.
  bool custom_dirty_ = false;
  uint64_t custom_owner_ = 0;
  pool::Params settings_read_;     // rows of the read in progress
  pool::Params settings_own_;      // ... of them, the client's own (not baseline_)
  // What connect_query set, read after it ran: every client's starting
  // values, neither RESET nor counted as anyone's own.
  pool::Params baseline_;
  // (request segment, scoped) per SET tag expected: see expect_set_tag.
  std::deque<std::pair<uint64_t, bool>> expected_set_tags_;
  bool set_tags_lost_ = false;
  bool after_sync_ = true;  // after_sync()
  void read_settings();
  void adopt_settings_read();
  bool sync_step_ok();
  void settings_lost(const std::string& why, const char* close_reason);
  static std::string settings_read_sql(const std::vector<std::string>& custom);
  // The parameter set this server was last found in sync with: a client
  // with the same set (and the same welcome) needs no comparison. Any
  // change to params_ or set_by_us_ forgets it.
  struct SyncedWith {
    uint64_t set = 0;
    const pool::Pool* home = nullptr;
    uint64_t welcome = 0;
    bool operator==(const SyncedWith&) const = default;
  };
  SyncedWith synced_with_;
  SyncedWith sync_key(ClientConnection* c) const;
  void mark_synced(ClientConnection* c) { synced_with_ = sync_key(c); }
  char tx_status_ = 'I';
  int pending_z_ = 0;        // ReadyForQuery messages still owed to the client
  bool unsynced_ = false;    // extended-protocol messages sent since the last Sync
  // Follows the requests of untracked clients (count_untracked_request);
  // empty whenever none is in flight, and the connection is at rest only
  // then.
  proto::ResponseTracker untracked_;
  bool reset_discards_ = false;  // the running reset includes server_reset_query
  uint64_t segment_ = 0;         // Syncs and simple Queries sent so far
  bool read_paused_ = false;
  bool in_copy_in_ = false;  // server waits for CopyData from the client
  // COPY FROM STDIN started by Execute: Syncs sent after that Execute and
  // until CopyDone/CopyFail are ignored by the server.
  bool extended_copy_in_ = false;
  bool last_was_execute_ = false;
  bool pipelining_ = false;  // pipelining()
  int syncs_since_execute_ = 0;
  void copy_in_started();  // out of line: watch_header stays small
  // The client sent CopyDone/CopyFail (out of line: count_request stays small).
  void copy_done_sent();

  conf::PoolMode client_mode_ = conf::PoolMode::session;

  ServerStatementCache statements_;
  // (segment, oldest PreparedStatement::generation bound or described in
  // it) for segments not answered yet.
  std::vector<std::pair<uint64_t, uint64_t>> statement_uses_;
  // The segment the server's next message answers: every Sync or Query
  // sent starts a segment and owes one ReadyForQuery.
  uint64_t oldest_unanswered_segment() const { return segment_ - uint64_t(pending_z_); }
  std::unordered_map<std::string, uint64_t> sql_prepared_;
  uv_loop_t* loop_;
  uint64_t busy_since_ms_ = 0;   // when the server started owing a reply
  uint64_t query_start_ns_ = 0;  // statistics: the request being answered
  uint64_t xact_start_ns_ = 0;   // ... and the transaction it belongs to
  uint64_t ready_since_ms_ = 0;  // last ReadyForQuery
  std::deque<std::string> internal_queries_;
  std::vector<std::string> syncing_keys_;  // reported parameters being SET on link
  int internal_purpose_ = 0;
  std::optional<proto::ErrorFields> internal_error_;
  bool retry_armed_ = false;
  bool retry_wanted_ = false;   // 25006 seen: swallow up to ReadyForQuery
  bool retry_decided_ = false;  // the answer goes to the client
  std::string retry_out_;       // the answer held meanwhile
  CheckOwner* check_owner_ = nullptr;
  bool check_empty_ok_ = false;
  std::vector<std::optional<std::string>> check_row_;
  bool check_row_seen_ = false;
  std::vector<int> copy_ignored_syncs_;  // see copy_done_sent (cold: last)
};

}  // namespace pgmux
