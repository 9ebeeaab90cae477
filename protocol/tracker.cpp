#include "protocol/tracker.hpp"

namespace pgmux::proto {

namespace {
// A simple Query or FunctionCall: answered up to its own ReadyForQuery.
bool simple_statement(ResponseTracker::Request r) {
  return r == ResponseTracker::Request::query || r == ResponseTracker::Request::function_call;
}
}  // namespace

void ResponseTracker::sent_slow(Request r, bool hidden, uint64_t tag, uint64_t client_tag) {
  if (copy_in_ && r == Request::sync) return;  // ignored by the server in copy-in mode
  if (skipping_) {
    // The server discards everything up to the next Sync after an error in
    // an extended-protocol request: no response will come for this one.
    if (r != Request::sync) {
      if (tag) report(kUnprepared, tag);
      if (client_tag) report(kUnnamed, client_tag);
      if (simple_statement(r)) ++skipped_queries_;
      return;
    }
    skipping_ = false;
  }
  Entry e;
  e.req = r;
  e.hidden = hidden;
  e.tag = tag;
  e.client_tag = client_tag;
  if (hidden) ++special_;
  q_.push_back(std::move(e));
}

void ResponseTracker::synthetic(std::string message, uint64_t client_tag) {
  if (skipping_) {  // the server would have discarded the request
    if (client_tag) report(kUnnamed, client_tag);
    return;
  }
  Entry e;
  e.req = Request::parse;  // unused for synthetic entries
  e.is_synthetic = true;
  e.client_tag = client_tag;
  synth_.push_back(std::move(message));
  ++special_;
  q_.push_back(std::move(e));
}

void ResponseTracker::sent_failing(Request r) {
  if (skipping_ && r != Request::sync) {  // the server discards it anyway
    if (simple_statement(r)) ++skipped_queries_;
    return;
  }
  Entry e;
  e.req = r;
  e.hide_error = true;
  ++special_;
  q_.push_back(e);
}

void ResponseTracker::report_done(const Entry& e, char type) {
  if (e.req == Request::parse) report(kPrepared, e.tag);
  else if (e.req == Request::execute && type == 'C') report(kExecuted, e.tag);
}

void ResponseTracker::popped_special(const Entry& e) {
  --special_;
  if (e.is_synthetic && ++synth_head_ == synth_.size()) {
    synth_.clear();
    synth_head_ = 0;
  }
}

ResponseTracker::Action ResponseTracker::on_server_message_slow(char type) {
  // Asynchronous messages belong to no request.
  if (type == 'N' || type == 'A' || type == 'S') return Action::pass;
  // Synthetic entries at the head must have been taken with take_due first;
  // if not, they are skipped over here so the queue cannot stall.
  while (!empty() && front().is_synthetic) pop_front();
  if (empty()) return Action::pass;  // unsolicited (e.g. FATAL at shutdown)

  Entry& head = front();
  if (type == 'E') {
    const Action a = head.hide_error ? Action::hide : Action::pass;
    bool simple = head.req == Request::query || head.req == Request::function_call ||
                  head.req == Request::sync;
    if (simple) {
      // The query still ends with 'Z'; a statement it was to prepare is not.
      if (head.tag) report(kUnprepared, head.tag);
      head.hide_error = false;  // (a second error would be shown)
      if (a == Action::hide) --special_;
      return a;
    }
    // The extended request failed: the server ignores everything up to the
    // next Sync, so nothing queued before it will be answered.
    while (!empty() && (front().is_synthetic || front().req != Request::sync)) {
      if (!front().is_synthetic && simple_statement(front().req)) ++skipped_queries_;
      if (front().tag) report(kUnprepared, front().tag);
      if (front().client_tag) report(kUnnamed, front().client_tag);
      if (front().shape_name) report(kUnnamed, front().shape_name);
      pop_front();
    }
    // No Sync sent yet: what the client sends until then is discarded too.
    skipping_ = empty();
    return a;
  }
  if ((type == 'G' || type == 'W') && head.req == Request::execute) {
    // COPY FROM STDIN started by Execute: every Sync the client sent after
    // that Execute reaches the server in copy-in mode and is ignored, up to
    // the client's CopyDone/CopyFail if it came already (copy_in_finished),
    // else up to the one to come (copy_in_).
    while (!copy_ends_.empty() && copy_ends_.front() <= head_) copy_ends_.erase(copy_ends_.begin());
    size_t end = q_.size();
    if (copy_ends_.empty()) {
      copy_in_ = true;
    } else {
      end = copy_ends_.front();
      copy_ends_.erase(copy_ends_.begin());
    }
    size_t keep = head_ + 1;
    for (size_t i = head_ + 1; i < q_.size(); ++i) {
      if (i < end && q_[i].req == Request::sync && !q_[i].is_synthetic) {
        if (q_[i].hidden) --special_;  // dropped: no longer pending
        continue;
      }
      if (keep != i) q_[keep] = std::move(q_[i]);
      ++keep;
    }
    const size_t dropped = q_.size() - keep;
    q_.resize(keep);
    for (size_t& e : copy_ends_) e -= dropped;  // later ones move up
  }
  Action a = head.hidden ? Action::hide : Action::pass;
  if (head.req == Request::describe_stmt && type == 't') head.got_param_desc = true;
  if (terminates(head, type)) {
    if (head.tag) report_done(head, type);
    pop_front();
  }
  return a;
}

std::vector<uint64_t> ResponseTracker::take_slow(Report kind) {
  std::vector<uint64_t> out;
  size_t keep = 0;
  for (auto& r : reports_) {
    if (r.first == kind) out.push_back(r.second);
    else reports_[keep++] = r;
  }
  reports_.resize(keep);
  return out;
}

bool ResponseTracker::take_due(std::string& out) {
  bool any = false;
  while (!empty() && front().is_synthetic) {
    out += synth_[synth_head_];
    pop_front();
    any = true;
  }
  return any;
}

}  // namespace pgmux::proto
