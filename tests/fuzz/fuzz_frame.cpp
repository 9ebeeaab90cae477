// Regular-message framing: peek_frame and StreamFramer on the same bytes.
//
// Input layout: byte 0 picks the maximum message length (low 3 bits) and the
// largest chunk size (high 5 bits), byte 1 seeds the chunk sizes; the rest
// is the byte stream (e.g. Query, Parse/Bind/Execute/Sync, or a server's
// response).
//
// Properties:
//  - peek_frame, applied message after message, is the reference: complete
//    messages (type, body length, body bytes), then need_more or invalid;
//    a proper prefix of a complete message is need_more.
//  - StreamFramer, fed the stream split at fuzzer-chosen points (and, after
//    reset(), in one chunk), reports exactly those messages: every piece
//    consumes >= 1 byte of a non-empty chunk, body pieces are the chunk's
//    first bytes, the consumed counts add up to the input size, header and
//    body pieces alternate as documented, and it fails exactly where
//    peek_frame says invalid (and stays failed).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "protocol/codec.hpp"

using namespace pgmux::proto;
using pgmux::fuzz::XorShift;

namespace {

struct Message {
  char type = 0;
  uint32_t body_length = 0;
  std::string body;
};

struct Reference {
  std::vector<Message> messages;  // complete messages
  Result end = Result::need_more; // after the last complete message
  size_t tail = 0;                // offset of the first incomplete/invalid byte
};

Reference reference(ByteSpan stream, uint32_t max_len) {
  Reference ref;
  size_t off = 0;
  for (;;) {
    const ByteSpan rest = stream.subspan(off);
    const FrameResult fr = peek_frame(rest, max_len);
    if (rest.size() >= 5) {
      FUZZ_CHECK(fr.frame.type == char(rest[0]));
      FUZZ_CHECK(fr.frame.length == read_u32(rest.data() + 1));
    }
    if (fr.result == Result::invalid) {
      FUZZ_CHECK(rest.size() >= 5);
      FUZZ_CHECK(fr.frame.length < 4 || fr.frame.length > max_len);
      ref.end = Result::invalid;
      ref.tail = off;
      return ref;
    }
    if (fr.result == Result::need_more) {
      FUZZ_CHECK(rest.size() < 5 || fr.frame.total() > rest.size());
      ref.end = Result::need_more;
      ref.tail = off;
      return ref;
    }
    FUZZ_CHECK(fr.frame.length >= 4 && fr.frame.length <= max_len);
    FUZZ_CHECK(fr.frame.total() <= rest.size());
    // Nothing before the end of the message decides it: prefixes need more.
    for (size_t cut : {size_t(0), size_t(4), size_t(5), fr.frame.total() - 1}) {
      if (cut < fr.frame.total()) {
        FUZZ_CHECK(peek_frame(rest.first(cut), max_len).result == Result::need_more);
      }
    }
    Message m;
    m.type = fr.frame.type;
    m.body_length = fr.frame.body_length();
    m.body.assign(pgmux::fuzz::chars(rest.subspan(5, m.body_length)));
    ref.messages.push_back(std::move(m));
    off += fr.frame.total();
  }
}

// Feeds `stream` to `f` in chunks of 1..max_chunk bytes (max_chunk 0 = one
// chunk) and checks the pieces against the reference.
void stream_check(StreamFramer& f, ByteSpan stream, const Reference& ref, uint32_t max_chunk,
                  uint32_t seed) {
  XorShift rng(seed);
  std::vector<Message> got;
  bool in_message = false;  // a header was seen, its body is incomplete
  Message cur;
  size_t consumed_total = 0;
  bool failed = false;

  size_t pos = 0;
  while (pos < stream.size()) {
    size_t n = stream.size() - pos;
    if (max_chunk != 0) n = std::min<size_t>(n, 1 + rng.next() % max_chunk);
    ByteSpan chunk = stream.subspan(pos, n);
    pos += n;
    while (!chunk.empty()) {
      const StreamFramer::Piece p = f.next(chunk);
      FUZZ_CHECK(p.consumed >= 1);
      FUZZ_CHECK(p.consumed <= chunk.size());
      consumed_total += p.consumed;
      switch (p.kind) {
        case StreamFramer::Kind::need_more:
          // Only a partial header can leave a non-empty chunk unanswered.
          FUZZ_CHECK(p.consumed == chunk.size());
          FUZZ_CHECK(!in_message);
          FUZZ_CHECK(f.in_header());
          FUZZ_CHECK(!f.at_boundary());
          break;
        case StreamFramer::Kind::header:
          FUZZ_CHECK(!in_message);
          FUZZ_CHECK(p.consumed <= 5);
          FUZZ_CHECK(p.data.empty());
          FUZZ_CHECK(!f.in_header());
          cur = Message{p.type, p.body_length, {}};
          FUZZ_CHECK(p.last_of_message == (p.body_length == 0));
          if (p.body_length == 0) {
            got.push_back(cur);
            FUZZ_CHECK(f.at_boundary());
          } else {
            in_message = true;
            FUZZ_CHECK(!f.at_boundary());
          }
          break;
        case StreamFramer::Kind::body:
          FUZZ_CHECK(in_message);
          FUZZ_CHECK(p.type == cur.type);
          FUZZ_CHECK(p.body_length == cur.body_length);
          FUZZ_CHECK(p.data.data() == chunk.data());
          FUZZ_CHECK(p.data.size() == p.consumed);
          cur.body.append(pgmux::fuzz::chars(p.data));
          FUZZ_CHECK(cur.body.size() <= cur.body_length);
          FUZZ_CHECK(p.last_of_message == (cur.body.size() == cur.body_length));
          if (p.last_of_message) {
            got.push_back(cur);
            in_message = false;
            FUZZ_CHECK(f.at_boundary());
          }
          break;
        case StreamFramer::Kind::invalid:
          FUZZ_CHECK(p.consumed == chunk.size());
          FUZZ_CHECK(f.failed());
          FUZZ_CHECK(!in_message);
          failed = true;
          break;
      }
      chunk = chunk.subspan(p.consumed);
      if (failed) break;
    }
    if (failed) {
      // Terminal: swallows the rest, whatever the chunking.
      const ByteSpan rest = stream.subspan(pos);
      const StreamFramer::Piece p = f.next(rest);
      FUZZ_CHECK(p.kind == StreamFramer::Kind::invalid);
      FUZZ_CHECK(p.consumed == rest.size());
      consumed_total += p.consumed;
      FUZZ_CHECK(f.failed() && !f.at_boundary());
      break;
    }
  }
  FUZZ_CHECK(f.next(ByteSpan{}).consumed == 0);

  // Same messages as peek_frame, same ending.
  FUZZ_CHECK(got.size() == ref.messages.size());
  for (size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK(got[i].type == ref.messages[i].type);
    FUZZ_CHECK(got[i].body_length == ref.messages[i].body_length);
    FUZZ_CHECK(got[i].body == ref.messages[i].body);
  }
  FUZZ_CHECK(failed == (ref.end == Result::invalid));
  FUZZ_CHECK(consumed_total == stream.size());
  if (!failed) {
    const size_t tail = stream.size() - ref.tail;
    FUZZ_CHECK(f.at_boundary() == (tail == 0));
    FUZZ_CHECK(f.in_header() == (tail > 0 && tail < 5));
    if (tail >= 5) {
      FUZZ_CHECK(in_message);
      FUZZ_CHECK(cur.type == char(stream[ref.tail]));
      FUZZ_CHECK(cur.body == pgmux::fuzz::chars(stream.subspan(ref.tail + 5)));
    } else {
      FUZZ_CHECK(!in_message);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static constexpr uint32_t kMaxLens[8] = {4, 5, 8, 16, 300, 65536, kDefaultMaxMessage, UINT32_MAX};
  static constexpr uint32_t kMaxChunks[8] = {1, 2, 3, 5, 7, 16, 64, 0};
  const uint32_t max_len = kMaxLens[data[0] & 7];
  const uint32_t max_chunk = kMaxChunks[(data[0] >> 3) & 7];
  const uint32_t seed = data[1] | (uint32_t(data[0] >> 6) << 8);
  const ByteSpan stream(data + 2, size - 2);

  const Reference ref = reference(stream, max_len);

  StreamFramer f(max_len);
  FUZZ_CHECK(f.at_boundary());
  stream_check(f, stream, ref, max_chunk, seed);
  f.reset();
  FUZZ_CHECK(f.at_boundary() && !f.failed());
  stream_check(f, stream, ref, 0, 0);
  return 0;
}
