#include "protocol/tracker.hpp"

namespace pgmux::proto {

void ResponseTracker::sent(Request r, bool hidden, uint64_t tag) {
  Entry e;
  e.req = r;
  e.hidden = hidden;
  e.tag = tag;
  if (hidden) ++special_;
  q_.push_back(std::move(e));
}

void ResponseTracker::synthetic(std::string message) {
  Entry e;
  e.req = Request::parse;  // unused for synthetic entries
  e.is_synthetic = true;
  e.message = std::move(message);
  ++special_;
  q_.push_back(std::move(e));
}

void ResponseTracker::pop_front() {
  const Entry& e = q_.front();
  if (e.hidden || e.is_synthetic) --special_;
  q_.pop_front();
}

bool ResponseTracker::terminates(const Entry& e, char type) {
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

ResponseTracker::Action ResponseTracker::on_server_message(char type) {
  // Asynchronous messages belong to no request.
  if (type == 'N' || type == 'A' || type == 'S') return Action::pass;
  // Synthetic entries at the head must have been taken with take_due first;
  // if not, they are skipped over here so the queue cannot stall.
  while (!q_.empty() && q_.front().is_synthetic) pop_front();
  if (q_.empty()) return Action::pass;  // unsolicited (e.g. FATAL at shutdown)

  Entry& head = q_.front();
  if (type == 'E') {
    bool simple = head.req == Request::query || head.req == Request::function_call ||
                  head.req == Request::sync;
    if (simple) {
      // The query still ends with 'Z'; a statement it was to prepare is not.
      if (head.tag) unprepared_.push_back(head.tag);
      return Action::pass;
    }
    // The extended request failed: the server ignores everything up to the
    // next Sync, so nothing queued before it will be answered.
    while (!q_.empty() && (q_.front().is_synthetic || q_.front().req != Request::sync)) {
      if (q_.front().tag) unprepared_.push_back(q_.front().tag);
      pop_front();
    }
    return Action::pass;
  }
  Action a = head.hidden ? Action::hide : Action::pass;
  if (head.req == Request::describe_stmt && type == 't') head.got_param_desc = true;
  if (terminates(head, type)) pop_front();
  return a;
}

bool ResponseTracker::take_due(std::string& out) {
  bool any = false;
  while (!q_.empty() && q_.front().is_synthetic) {
    out += q_.front().message;
    pop_front();
    any = true;
  }
  return any;
}

}  // namespace pgmux::proto
