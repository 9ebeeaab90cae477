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
  void sent(Request r, bool hidden = false, uint64_t tag = 0, uint64_t client_tag = 0);
  // pgmux answers a request itself with this (complete) message, delivered
  // once every earlier request has been answered.
  void synthetic(std::string message, uint64_t client_tag = 0);

  // A server message of `type` starts. Returns whether it goes to the client.
  // An ErrorResponse ends the current extended-protocol request and, as the
  // server skips to the next Sync, drops what was queued before that Sync.
  Action on_server_message(char type);

  // Appends the synthetic responses that are due now (at the head) to `out`.
  // Returns true if anything was appended.
  bool take_due(std::string& out);

  // Tags of Parse requests that failed or were skipped since the last call.
  std::vector<uint64_t> take_unprepared() { return take(kUnprepared); }
  // Client tags of Parse requests that failed or were skipped.
  std::vector<uint64_t> take_unnamed() { return take(kUnnamed); }
  // Tags of Parse requests the server answered with ParseComplete.
  std::vector<uint64_t> take_prepared() { return take(kPrepared); }

  // The client sent CopyDone or CopyFail: an extended-protocol COPY FROM
  // STDIN is over, and Syncs count again (the server ignores Syncs it
  // receives while in copy-in mode).
  void copy_in_finished() { copy_in_ = false; }

  // Nothing in flight.
  bool empty() const { return head_ == q_.size(); }
  // Something other than plain pass-through is queued (hidden or synthetic):
  // the caller must take the careful path for server output.
  bool special() const { return special_ > 0; }
  void clear() {
    q_.clear();
    head_ = 0;
    reports_.clear();
    special_ = 0;
    skipping_ = false;
    copy_in_ = false;  // else the next exchange's Syncs would be ignored
  }

 private:
  struct Entry {
    Request req;
    bool hidden = false;
    bool is_synthetic = false;
    bool got_param_desc = false;  // describe_stmt: 't' seen
    uint64_t tag = 0;
    uint64_t client_tag = 0;
    std::string message;          // synthetic response
  };
  static bool terminates(const Entry& e, char type);
  void pop_front();

  // A vector used as a queue (entries before head_ are done): an idle client
  // holds no allocation, unlike std::deque which allocates when constructed.
  std::vector<Entry> q_;
  size_t head_ = 0;
  Entry& front() { return q_[head_]; }
  size_t special_ = 0;
  bool skipping_ = false;  // after an error: waiting for the Sync's 'Z'
  bool copy_in_ = false;   // extended-protocol COPY FROM STDIN in progress
  // Tag reports waiting to be taken, one list for the three kinds (an idle
  // client keeps one empty vector, not three).
  enum Report : uint8_t { kUnprepared, kPrepared, kUnnamed };
  std::vector<std::pair<Report, uint64_t>> reports_;
  void report(Report kind, uint64_t tag) { reports_.emplace_back(kind, tag); }
  std::vector<uint64_t> take(Report kind);
};

}  // namespace pgmux::proto
