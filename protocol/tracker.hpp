// Follows which client request each server message answers.
//
// Transaction pooling with prepared statements makes pgmux send requests the
// client never sent (a Parse on a server that lacks the statement) and
// answer some requests itself (a Parse the server already has, a Close).
// The tracker keeps the requests in flight in order so that the responses
// to injected requests are hidden and pgmux's own responses are inserted
// exactly where the server's would have been. Pure logic; no I/O.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace pgmux::proto {

class ResponseTracker {
 public:
  enum class Request : uint8_t {
    parse,            // -> ParseComplete '1'
    bind,             // -> BindComplete '2'
    describe_stmt,    // -> ParameterDescription 't' + RowDescription 'T' / NoData 'n'
    describe_portal,  // -> RowDescription 'T' / NoData 'n'
    execute,          // -> ... CommandComplete 'C' / EmptyQuery 'I' / PortalSuspended 's'
    close,            // -> CloseComplete '3'
    sync,             // -> ReadyForQuery 'Z'
    query,            // simple Query -> ... ReadyForQuery 'Z'
    function_call,    // -> FunctionCallResponse 'V' + ReadyForQuery 'Z'
  };
  enum class Action : uint8_t { pass, hide };

  // A request went to the server. `hidden`: pgmux sent it on its own and the
  // client must not see its response (errors are always shown).
  // `tag` (non-zero) marks a Parse whose statement pgmux records as prepared
  // on the server: if the Parse fails or is skipped after an error, the tag
  // is reported by take_unprepared so the record can be dropped.
  // `client_tag` (non-zero) marks a Parse the client sent (forwarded or
  // answered by pgmux): if it fails or is skipped, the client's statement
  // name must not exist, and take_unnamed reports the tag.
  void sent(Request r, bool hidden = false, uint64_t tag = 0, uint64_t client_tag = 0) {
    if (copy_in_ || skipping_ || hidden) return sent_slow(r, hidden, tag, client_tag);
    Entry e;
    e.req = r;
    e.tag = tag;
    e.client_tag = client_tag;
    q_.push_back(e);
  }
  // A Describe of a named statement: its answer tells the result type of
  // statement `stmt` (pgmux's id) on the server, and, for a client's
  // Describe (`name_tag` non-zero), the result type that client now knows
  // for its statement name (see describing).
  // A portal Describe (`portal`) of a portal bound to statement `stmt`
  // tells the same (its RowDescription has the statement's columns).
  // False: the server skips it (after an error). A client's Describe that
  // fails is reported as take_unnamed reports a Parse (its name tag).
  bool sent_describe(bool hidden, uint64_t stmt, uint64_t name_tag, bool portal = false) {
    const size_t before = q_.size();
    sent(portal ? Request::describe_portal : Request::describe_stmt, hidden);
    if (q_.size() == before) return false;
    q_.back().shape_stmt = stmt;
    q_.back().shape_name = name_tag;
    return true;
  }
  // The next request to be answered is such a Describe: its statement and
  // name tag. For the server's RowDescription / NoData before
  // on_server_message sees it.
  bool describing(uint64_t& stmt, uint64_t& name_tag) const {
    for (size_t i = head_; i < q_.size(); ++i) {
      const Entry& e = q_[i];
      if (e.is_synthetic) continue;
      if ((e.req != Request::describe_stmt && e.req != Request::describe_portal) || !e.shape_stmt)
        return false;
      stmt = e.shape_stmt;
      name_tag = e.shape_name;
      return true;
    }
    return false;
  }
  // A client's Describe (of the statement, or of a portal bound to it)
  // that tells the result type of statement `stmt` is unanswered.
  bool client_describes(uint64_t stmt) const {
    for (size_t i = head_; i < q_.size(); ++i)
      if (q_[i].shape_name && q_[i].shape_stmt == stmt) return true;
    return false;
  }
  // pgmux answers a request itself with this (complete) message, delivered
  // once every earlier request has been answered.
  void synthetic(std::string message, uint64_t client_tag = 0);
  // pgmux sent a request that must fail, so that the server's transaction
  // (explicit, or the implicit one up to the next Sync) fails like
  // PostgreSQL's would have, after an error pgmux reported itself (a
  // synthetic ErrorResponse queued just before). Its ErrorResponse is hidden;
  // everything else (a simple Query's ReadyForQuery) goes to the client.
  void sent_failing(Request r);

  // A server message of `type` starts. Returns whether it goes to the client.
  // An ErrorResponse ends the current extended-protocol request and, as the
  // server skips to the next Sync, drops what was queued before that Sync.
  Action on_server_message(char type) {
    // Inline for the usual message: part of the answer to the request at the
    // head, which is neither synthetic nor hit by an error or a COPY start.
    if (head_ < q_.size() && type != 'E' && type != 'N' && type != 'A' && type != 'S' &&
        type != 'G' && type != 'W') {
      Entry& head = q_[head_];
      if (!head.is_synthetic && !head.hide_error &&
          !(head.req == Request::describe_stmt && type == 't')) {
        Action a = head.hidden ? Action::hide : Action::pass;
        if (terminates(head, type)) {
          if (head.tag) report_done(head, type);
          pop_front();
        }
        return a;
      }
    }
    return on_server_message_slow(type);
  }

  // Appends the synthetic responses that are due now (at the head) to `out`.
  // Returns true if anything was appended.
  bool take_due(std::string& out);

  // Tags of Parse requests that failed or were skipped since the last call.
  std::vector<uint64_t> take_unprepared() { return take(kUnprepared); }
  // (take() is inline for the usual case: nothing to report.)
  // Client tags of Parse requests that failed or were skipped.
  std::vector<uint64_t> take_unnamed() { return take(kUnnamed); }
  // Tags of Parse requests the server answered with ParseComplete.
  std::vector<uint64_t> take_prepared() { return take(kPrepared); }
  // Tags of Execute requests the server completed (CommandComplete).
  std::vector<uint64_t> take_executed() { return take(kExecuted); }

  // The client sent CopyDone or CopyFail: an extended-protocol COPY FROM
  // STDIN is over, and Syncs count again (the server ignores Syncs it
  // receives while in copy-in mode).
  // If the server has not started the COPY yet (its CopyInResponse comes
  // later), the Syncs sent up to here will be ignored, the ones after not.
  void copy_in_finished() {
    if (copy_in_) copy_in_ = false;
    else copy_ends_.push_back(q_.size());
  }

  // Nothing in flight.
  bool empty() const { return head_ == q_.size(); }
  // Some report waits to be taken.
  bool has_reports() const { return !reports_.empty() || skipped_queries_ != 0; }
  // An error was answered and no Sync sent since: the server discards
  // requests until the next Sync.
  bool skipping() const { return skipping_; }
  // Simple Queries (and FunctionCalls) the server skips after an error in
  // an extended-protocol request, up to the next Sync: no ReadyForQuery
  // comes for them. Counted since the last call.
  size_t take_skipped_queries() { return std::exchange(skipped_queries_, 0); }
  // Something other than plain pass-through is queued (hidden or synthetic):
  // the caller must take the careful path for server output.
  bool special() const { return special_ > 0; }
  void clear() {
    q_.clear();
    head_ = 0;
    synth_.clear();
    synth_head_ = 0;
    reports_.clear();
    special_ = 0;
    skipping_ = false;
    skipped_queries_ = 0;
    copy_in_ = false;  // else the next exchange's Syncs would be ignored
    copy_ends_.clear();
  }

 private:
  struct Entry {
    Request req;
    bool hidden = false;
    bool is_synthetic = false;
    bool got_param_desc = false;  // describe_stmt: 't' seen
    bool hide_error = false;      // sent_failing: the expected error is hidden
    uint64_t tag = 0;
    uint64_t client_tag = 0;
    uint64_t shape_stmt = 0;  // sent_describe
    uint64_t shape_name = 0;
  };  // trivially copyable: queued and dequeued per request
  static bool terminates(const Entry& e, char type) {
    switch (e.req) {
      case Request::parse: return type == '1';
      case Request::bind: return type == '2';
      case Request::close: return type == '3';
      case Request::describe_stmt:
      case Request::describe_portal: return type == 'T' || type == 'n';
      case Request::execute: return type == 'C' || type == 'I' || type == 's';
      case Request::sync:
      case Request::query:
      case Request::function_call: return type == 'Z';
    }
    return false;
  }
  void pop_front() {  // inline: once per request
    const Entry& e = q_[head_];
    if (e.hidden || e.is_synthetic || e.hide_error) popped_special(e);
    if (++head_ == q_.size()) {
      q_.clear();  // keeps capacity for the next requests
      head_ = 0;
      if (!copy_ends_.empty()) copy_ends_.clear();  // positions in the old queue
    }
  }
  void popped_special(const Entry& e);
  // A tagged request was answered (its terminator `type`); out of line,
  // so that the inline on_server_message stays small.
  void report_done(const Entry& e, char type);
  void sent_slow(Request r, bool hidden, uint64_t tag, uint64_t client_tag);
  Action on_server_message_slow(char type);

  // A vector used as a queue (entries before head_ are done): an idle client
  // holds no allocation, unlike std::deque which allocates when constructed.
  std::vector<Entry> q_;
  size_t head_ = 0;
  Entry& front() { return q_[head_]; }
  // Messages of the synthetic entries, in queue order (entries leave the
  // queue in order, so a second FIFO keeps Entry small).
  std::vector<std::string> synth_;
  size_t synth_head_ = 0;
  size_t special_ = 0;
  bool skipping_ = false;  // after an error: waiting for the Sync's 'Z'
  size_t skipped_queries_ = 0;  // take_skipped_queries
  bool copy_in_ = false;   // extended-protocol COPY FROM STDIN in progress
  // Queue positions where the client ended a COPY (CopyDone/CopyFail) before
  // the server had started it: the Syncs before such a point are ignored.
  std::vector<size_t> copy_ends_;
  // Tag reports waiting to be taken, one list for the three kinds (an idle
  // client keeps one empty vector, not three).
  enum Report : uint8_t { kUnprepared, kPrepared, kUnnamed, kExecuted };
  std::vector<std::pair<Report, uint64_t>> reports_;
  void report(Report kind, uint64_t tag) { reports_.emplace_back(kind, tag); }
  std::vector<uint64_t> take(Report kind) {
    if (reports_.empty()) return {};
    return take_slow(kind);
  }
  std::vector<uint64_t> take_slow(Report kind);
};

}  // namespace pgmux::proto
