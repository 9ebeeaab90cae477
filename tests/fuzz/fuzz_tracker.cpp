// ResponseTracker (protocol/tracker.hpp) driven by a fuzzer-chosen sequence
// of the calls src/ makes: sent() / synthetic() on the client side,
// on_server_message() / take_due() on the server side, the take_* reports,
// copy_in_finished() and clear().
//
// Input: one byte per operation, the low 4 bits pick it, the high 4 bits are
// its argument (see the switch; tests/fuzz/make_seeds.py writes sequences
// such as Parse/Bind/Execute/Sync answered by 1 2 D C Z).
//
// Properties: nothing crashes or grows without bound;
//  - empty() implies !special() (nothing hidden or synthetic is pending);
//  - after clear() nothing of the old exchange remains (a Sync is tracked);
//  - synthetic messages come out of take_due whole, each at most once and in
//    the order they were queued, and take_due returns true iff it appended;
//  - every reported tag was given to sent(), a Parse tag is reported
//    prepared at most once and never both prepared and unprepared.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "protocol/tracker.hpp"

using namespace pgmux::proto;
using R = ResponseTracker::Request;

namespace {

// Parse and Query first: the ones src/ tags.
constexpr R kRequests[] = {R::parse,           R::query,   R::bind,  R::describe_stmt, R::execute,
                           R::describe_portal, R::sync,    R::close, R::function_call};
// Every backend message type and one no server sends.
constexpr char kServerTypes[] = "123ACDEGHIKNRSTVWZcdnstv?";

struct Model {
  ResponseTracker t;
  uint64_t next_tag = 1;
  uint64_t next_syn = 0;     // serial of the next synthetic message
  uint64_t delivered = 0;    // synthetic messages delivered (their serials are increasing)
  bool have_delivered = false;
  uint64_t last_delivered = 0;
  std::set<uint64_t> tags;                   // tags given to sent(parse...) / synthetic()
  std::map<uint64_t, int> prepared, unprepared, unnamed;

  void collect() {
    for (uint64_t tag : t.take_prepared()) {
      FUZZ_CHECK(tags.count(tag));
      FUZZ_CHECK(++prepared[tag] == 1);
      FUZZ_CHECK(!unprepared.count(tag));
    }
    for (uint64_t tag : t.take_unprepared()) {
      FUZZ_CHECK(tags.count(tag));
      FUZZ_CHECK(!prepared.count(tag));
      ++unprepared[tag];
    }
    for (uint64_t tag : t.take_unnamed()) {
      FUZZ_CHECK(tags.count(tag));
      ++unnamed[tag];
    }
  }

  void take_due() {
    std::string out;
    const bool any = t.take_due(out);
    FUZZ_CHECK(any == !out.empty());
    // Synthetic messages are "<serial>;" with increasing serials.
    size_t pos = 0;
    while (pos < out.size()) {
      const size_t semi = out.find(';', pos);
      FUZZ_CHECK(semi != std::string::npos);
      const uint64_t serial = std::stoull(out.substr(pos, semi - pos));
      FUZZ_CHECK(serial < next_syn);
      FUZZ_CHECK(!have_delivered || serial > last_delivered);
      have_delivered = true;
      last_delivered = serial;
      ++delivered;
      pos = semi + 1;
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;  // long sequences add nothing but time
  Model m;
  for (size_t i = 0; i < size; ++i) {
    const uint8_t op = data[i] & 0x0f, arg = data[i] >> 4;
    switch (op) {
      case 0: case 1: case 2: case 3: {
        // A client request: arg 0..8 picks it, 9..15 the first seven with a
        // tag; op bit 1: hidden, bit 0: with a client tag.
        const R r = kRequests[arg < 9 ? arg : arg - 9];
        uint64_t tag = 0, client_tag = 0;
        if (arg >= 9) {
          tag = m.next_tag++;
          m.tags.insert(tag);
        }
        if (op & 1) {
          client_tag = m.next_tag++;
          m.tags.insert(client_tag);
        }
        m.t.sent(r, (op & 2) != 0, tag, client_tag);
        break;
      }
      case 4: case 5: case 6: case 7: case 8: case 9: {
        // A server message: type kServerTypes[(arg >> 1) * 6 + op - 4];
        // arg bit 0: take_due after it, as ServerConnection does.
        const size_t k = (size_t(arg >> 1) * 6 + op - 4) % (sizeof(kServerTypes) - 1);
        m.t.on_server_message(kServerTypes[k]);
        if (arg & 1) m.take_due();
        break;
      }
      case 10: {  // pgmux answers itself
        uint64_t client_tag = 0;
        if (arg & 1) {
          client_tag = m.next_tag++;
          m.tags.insert(client_tag);
        }
        m.t.synthetic(std::to_string(m.next_syn++) + ";", client_tag);
        break;
      }
      case 11: m.take_due(); break;
      case 12: m.collect(); break;
      case 13: m.t.copy_in_finished(); break;
      case 14:
        if (arg == 0) {
          m.t.clear();  // the server connection is gone
          FUZZ_CHECK(m.t.empty() && !m.t.special());
          // Nothing of the old exchange (skipping, copy-in mode) remains:
          // a Sync is tracked and answered by 'Z'.
          m.t.sent(R::sync);
          FUZZ_CHECK(!m.t.empty());
          m.t.on_server_message('Z');
          FUZZ_CHECK(m.t.empty());
        }
        break;
      case 15: m.take_due(); m.collect(); break;
    }
    if (m.t.empty()) FUZZ_CHECK(!m.t.special());
  }
  m.take_due();
  m.collect();
  return 0;
}
