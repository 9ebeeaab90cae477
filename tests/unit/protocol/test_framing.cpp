// peek_frame and StreamFramer.
#include <algorithm>

#include "support.hpp"

using namespace pgmux::proto;
using namespace pgmux::proto::test;

TEST_CASE("peek_frame: header and length validation", "[framing]") {
  SECTION("fewer than 5 bytes is need_more, whatever they are") {
    for (size_t n = 0; n < 5; ++n) {
      std::string b(n, '\xff');
      CHECK(peek_frame(span(b)).result == Result::need_more);
      std::string z(n, '\0');
      CHECK(peek_frame(span(z)).result == Result::need_more);
    }
  }
  SECTION("length < 4 is invalid as soon as the header is present") {
    for (uint32_t len = 0; len < 4; ++len) {
      std::string b = "Q" + be32(len);
      FrameResult r = peek_frame(span(b));
      CHECK(r.result == Result::invalid);
      CHECK(r.frame.type == 'Q');
      CHECK(r.frame.length == len);
      b += "xxxxxxxx";
      CHECK(peek_frame(span(b)).result == Result::invalid);
    }
  }
  SECTION("length > max_len is invalid even if only the header is present") {
    std::string b = "D" + be32(101);
    CHECK(peek_frame(span(b), 100).result == Result::invalid);
    CHECK(peek_frame(span(b), 101).result == Result::need_more);
    std::string huge = "D" + be32(0xffffffffu);
    CHECK(peek_frame(span(huge)).result == Result::invalid);
    CHECK(peek_frame(span(huge), 0xffffffffu).result == Result::need_more);
    std::string def = "D" + be32(kDefaultMaxMessage + 1);
    CHECK(peek_frame(span(def)).result == Result::invalid);
    std::string at = "D" + be32(kDefaultMaxMessage);
    CHECK(peek_frame(span(at)).result == Result::need_more);
  }
  SECTION("length exactly 4: empty body, complete with the header") {
    std::string b = "S" + be32(4);
    FrameResult r = peek_frame(span(b));
    REQUIRE(r.result == Result::ok);
    CHECK(r.frame.type == 'S');
    CHECK(r.frame.length == 4);
    CHECK(r.frame.body_length() == 0);
    CHECK(r.frame.total() == 5);
    CHECK(peek_frame(span(b), 4).result == Result::ok);
    CHECK(peek_frame(span(b), 3).result == Result::invalid);
  }
  SECTION("ok only once the whole body is present; trailing bytes ignored") {
    std::string msg = typed('Q', cs("SELECT 1"));
    for (size_t n = 0; n < msg.size(); ++n) {
      FrameResult r = peek_frame(span(msg).first(n));
      CHECK(r.result == Result::need_more);
      if (n >= 5) {
        CHECK(r.frame.type == 'Q');
        CHECK(r.frame.length == 13);
      }
    }
    FrameResult r = peek_frame(span(msg));
    REQUIRE(r.result == Result::ok);
    CHECK(r.frame.total() == msg.size());
    CHECK(r.frame.body_length() == 9);
    std::string more = msg + typed('S', "") + "garbage";
    r = peek_frame(span(more));
    REQUIRE(r.result == Result::ok);
    CHECK(r.frame.total() == msg.size());
  }
  SECTION("big-endian length, all bytes significant") {
    std::string b = "x" + std::string("\x00\x01\x02\x03", 4);
    FrameResult r = peek_frame(span(b), 0xffffffffu);
    CHECK(r.frame.length == 0x00010203u);
    b = "x" + std::string("\x01\x00\x00\x00", 4);
    r = peek_frame(span(b), 0xffffffffu);
    CHECK(r.frame.length == 0x01000000u);
    CHECK(r.frame.total() == 0x01000001u);
  }
}

TEST_CASE("peek_frame splits the reference stream", "[framing]") {
  const std::string stream = all_typed_messages();
  Result tail = Result::invalid;
  std::vector<Msg> msgs = frame_all(stream, &tail);
  CHECK(tail == Result::ok);
  CHECK(msgs.size() == 31);
  size_t total = 0;
  for (const auto& m : msgs) total += 5 + m.body.size();
  CHECK(total == stream.size());
}

namespace {

void check_stream_every_split(const std::string& stream, const std::vector<Msg>& expect) {
  // No split.
  {
    StreamFramer f;
    FramerRun run = run_framer(f, {span(stream)});
    REQUIRE_FALSE(run.invalid);
    REQUIRE(run.messages == expect);
    REQUIRE(f.at_boundary());
  }
  // One byte per chunk.
  {
    StreamFramer f;
    std::vector<ByteSpan> chunks;
    for (size_t i = 0; i < stream.size(); ++i) chunks.push_back(span(stream).subspan(i, 1));
    FramerRun run = run_framer(f, chunks);
    REQUIRE(run.messages == expect);
    REQUIRE(f.at_boundary());
  }
  // Every single split point (including the empty first/last chunk).
  for (size_t a = 0; a <= stream.size(); ++a) {
    StreamFramer f;
    FramerRun run = run_framer(f, cut(stream, {a}));
    INFO("split at " << a);
    REQUIRE_FALSE(run.invalid);
    REQUIRE(run.messages == expect);
    REQUIRE(f.at_boundary());
  }
}

}  // namespace

TEST_CASE("StreamFramer: every single split of a stream of all messages", "[framing]") {
  const std::string stream = all_typed_messages();
  const std::vector<Msg> expect = frame_all(stream);
  check_stream_every_split(stream, expect);
}

TEST_CASE("StreamFramer: every pair of split points of a small stream", "[framing]") {
  std::string stream;
  ready_for_query(stream, 'I');
  sync(stream);
  query(stream, "SELECT 42");
  backend_key_data(stream, 1, 2);
  stream += typed('1', "");
  command_complete(stream, "BEGIN");
  const std::vector<Msg> expect = frame_all(stream);
  REQUIRE(expect.size() == 6);
  size_t runs = 0;
  for (size_t a = 0; a <= stream.size(); ++a) {
    for (size_t b = a; b <= stream.size(); ++b) {
      StreamFramer f;
      FramerRun run = run_framer(f, cut(stream, {a, b}));
      INFO("split at " << a << " and " << b);
      REQUIRE_FALSE(run.invalid);
      REQUIRE(run.messages == expect);
      REQUIRE(f.at_boundary());
      ++runs;
    }
  }
  CHECK(runs == (stream.size() + 1) * (stream.size() + 2) / 2);
}

TEST_CASE("StreamFramer: seeded random chunkings of the full stream", "[framing]") {
  const std::string stream = all_typed_messages();
  const std::vector<Msg> expect = frame_all(stream);
  Rng rng(0x5eed0001);
  for (int iter = 0; iter < 4000; ++iter) {
    std::vector<size_t> at;
    const size_t cuts = rng.below(iter % 2 ? 8 : 200);
    for (size_t i = 0; i < cuts; ++i) at.push_back(rng.below(stream.size() + 1));
    std::sort(at.begin(), at.end());
    StreamFramer f;
    FramerRun run = run_framer(f, cut(stream, at));
    INFO("iteration " << iter);
    REQUIRE_FALSE(run.invalid);
    REQUIRE(run.messages == expect);
    REQUIRE(f.at_boundary());
  }
}

TEST_CASE("StreamFramer: reused across a stream repeated many times", "[framing]") {
  const std::string one = all_typed_messages();
  std::string stream;
  for (int i = 0; i < 20; ++i) stream += one;
  const std::vector<Msg> expect = frame_all(stream);
  REQUIRE(expect.size() == 20 * 31);
  Rng rng(7);
  StreamFramer f;
  std::vector<ByteSpan> chunks;
  ByteSpan rest = span(stream);
  while (!rest.empty()) {
    const size_t n = std::min(rest.size(), 1 + rng.below(4096));
    chunks.push_back(rest.first(n));
    rest = rest.subspan(n);
  }
  FramerRun run = run_framer(f, chunks);
  CHECK(run.messages == expect);
}

TEST_CASE("StreamFramer: piece details", "[framing]") {
  SECTION("empty chunk: need_more, consumed 0, at boundary") {
    StreamFramer f;
    StreamFramer::Piece p = f.next({});
    CHECK(p.kind == StreamFramer::Kind::need_more);
    CHECK(p.consumed == 0);
    CHECK(f.at_boundary());
  }
  SECTION("zero-body message is a single header piece") {
    std::string s = typed('S', "");
    StreamFramer f;
    StreamFramer::Piece p = f.next(span(s));
    CHECK(p.kind == StreamFramer::Kind::header);
    CHECK(p.consumed == 5);
    CHECK(p.type == 'S');
    CHECK(p.body_length == 0);
    CHECK(p.last_of_message);
    CHECK(p.data.empty());
    CHECK(f.at_boundary());
  }
  SECTION("header then one body piece referencing the chunk") {
    std::string s = typed('Q', cs("SELECT 1")) + "Z";
    StreamFramer f;
    ByteSpan chunk = span(s);
    StreamFramer::Piece p = f.next(chunk);
    CHECK(p.kind == StreamFramer::Kind::header);
    CHECK(p.consumed == 5);
    CHECK(p.body_length == 9);
    CHECK_FALSE(p.last_of_message);
    CHECK_FALSE(f.at_boundary());
    chunk = chunk.subspan(p.consumed);
    p = f.next(chunk);
    CHECK(p.kind == StreamFramer::Kind::body);
    CHECK(p.consumed == 9);
    CHECK(p.data.data() == chunk.data());
    CHECK(as_chars(p.data) == std::string_view("SELECT 1\0", 9));
    CHECK(p.last_of_message);
    CHECK(f.at_boundary());
    chunk = chunk.subspan(p.consumed);
    p = f.next(chunk);  // 'Z' alone: header incomplete
    CHECK(p.kind == StreamFramer::Kind::need_more);
    CHECK(p.consumed == 1);
    CHECK_FALSE(f.at_boundary());
  }
  SECTION("header split 1+4, 2+3, 3+2, 4+1 and 1+1+1+1+1") {
    std::string s = typed('D', "abc");
    for (size_t a = 1; a < 5; ++a) {
      StreamFramer f;
      StreamFramer::Piece p = f.next(span(s).first(a));
      CHECK(p.kind == StreamFramer::Kind::need_more);
      CHECK(p.consumed == a);
      p = f.next(span(s).subspan(a));
      CHECK(p.kind == StreamFramer::Kind::header);
      CHECK(p.consumed == 5 - a);
      CHECK(p.type == 'D');
      CHECK(p.body_length == 3);
      p = f.next(span(s).subspan(5));
      CHECK(p.kind == StreamFramer::Kind::body);
      CHECK(p.consumed == 3);
      CHECK(p.last_of_message);
    }
    StreamFramer f;
    for (size_t i = 0; i < 4; ++i) {
      StreamFramer::Piece p = f.next(span(s).subspan(i, 1));
      CHECK(p.kind == StreamFramer::Kind::need_more);
      CHECK(p.consumed == 1);
    }
    StreamFramer::Piece p = f.next(span(s).subspan(4));
    CHECK(p.kind == StreamFramer::Kind::header);
    CHECK(p.consumed == 1);
  }
  SECTION("body split: pieces never run past the message") {
    std::string s = typed('d', "0123456789") + typed('c', "");
    StreamFramer f;
    ByteSpan all = span(s);
    CHECK(f.next(all.first(7)).kind == StreamFramer::Kind::header);  // consumes 5
    StreamFramer::Piece p = f.next(all.subspan(5, 2));
    CHECK(p.kind == StreamFramer::Kind::body);
    CHECK(as_chars(p.data) == "01");
    CHECK_FALSE(p.last_of_message);
    p = f.next(all.subspan(7));  // rest of body + next message
    CHECK(p.kind == StreamFramer::Kind::body);
    CHECK(p.consumed == 8);
    CHECK(as_chars(p.data) == "23456789");
    CHECK(p.last_of_message);
    p = f.next(all.subspan(15));
    CHECK(p.kind == StreamFramer::Kind::header);
    CHECK(p.type == 'c');
    CHECK(p.last_of_message);
  }
  SECTION("a body larger than any chunk is streamed") {
    const uint32_t body = 1000000;
    std::string header = "d" + be32(body + 4);
    std::string piece(4096, 'x');
    StreamFramer f;
    StreamFramer::Piece p = f.next(span(header));
    REQUIRE(p.kind == StreamFramer::Kind::header);
    CHECK(p.body_length == body);
    uint32_t got = 0;
    int pieces = 0;
    while (got < body) {
      p = f.next(span(piece));
      REQUIRE(p.kind == StreamFramer::Kind::body);
      got += uint32_t(p.consumed);
      ++pieces;
      CHECK(p.last_of_message == (got == body));
    }
    CHECK(got == body);
    CHECK(pieces == int((body + 4095) / 4096));
    CHECK(f.at_boundary());
  }
}

TEST_CASE("StreamFramer: invalid lengths", "[framing]") {
  SECTION("length < 4 and > max_len, at every split, after valid messages") {
    std::string prefix;
    ready_for_query(prefix, 'I');
    query(prefix, "x");
    const std::vector<Msg> expect = frame_all(prefix);
    for (uint32_t bad : {0u, 1u, 2u, 3u, 65u, 0x80000000u, 0xffffffffu}) {
      const std::string stream = prefix + "Q" + be32(bad) + "rest of the stream";
      for (size_t a = 0; a <= stream.size(); ++a) {
        StreamFramer f(64);
        FramerRun run = run_framer(f, cut(stream, {a}));
        INFO("length " << bad << " split at " << a);
        REQUIRE(run.invalid);
        REQUIRE(run.messages == expect);
        REQUIRE(f.failed());
      }
    }
  }
  SECTION("invalid is sticky and reset() recovers") {
    std::string bad = "Q" + be32(2);
    StreamFramer f;
    StreamFramer::Piece p = f.next(span(bad));
    CHECK(p.kind == StreamFramer::Kind::invalid);
    CHECK(p.type == 'Q');
    CHECK(p.consumed == 5);
    CHECK(f.failed());
    CHECK_FALSE(f.at_boundary());
    std::string good = typed('S', "");
    p = f.next(span(good));
    CHECK(p.kind == StreamFramer::Kind::invalid);
    CHECK(p.consumed == good.size());
    p = f.next({});
    CHECK(p.kind == StreamFramer::Kind::invalid);
    CHECK(p.consumed == 0);
    f.reset();
    CHECK(f.at_boundary());
    CHECK_FALSE(f.failed());
    p = f.next(span(good));
    CHECK(p.kind == StreamFramer::Kind::header);
    CHECK(p.last_of_message);
  }
  SECTION("max_len is inclusive and can be changed between messages") {
    std::string s = typed('d', std::string(96, 'x'));  // length 100
    StreamFramer f(100);
    FramerRun run = run_framer(f, {span(s)});
    CHECK_FALSE(run.invalid);
    CHECK(run.messages.size() == 1);
    f.set_max_len(99);
    run = run_framer(f, {span(s)});
    CHECK(run.invalid);
  }
  SECTION("reset() mid-message drops the partial state") {
    std::string s = typed('d', "abcdef");
    StreamFramer f;
    CHECK(f.next(span(s).first(3)).kind == StreamFramer::Kind::need_more);
    f.reset();
    CHECK(f.at_boundary());
    FramerRun run = run_framer(f, {span(s)});
    CHECK(run.messages == std::vector<Msg>{{'d', "abcdef"}});
    CHECK(f.next(span(s).first(8)).kind == StreamFramer::Kind::header);
    f.reset();
    CHECK(f.at_boundary());
    run = run_framer(f, {span(s)});
    CHECK(run.messages == std::vector<Msg>{{'d', "abcdef"}});
  }
}

namespace {

// A random stream of messages: mostly valid, small lengths; optionally ends
// with an invalid header.
std::string random_stream(Rng& rng, uint32_t max_len, bool end_invalid) {
  std::string s;
  const size_t n = rng.below(30);
  for (size_t i = 0; i < n; ++i) {
    const size_t body = rng.chance(10) ? rng.below(max_len - 3) : rng.below(12);
    s += typed(char(rng.byte()), rng.bytes(body));
  }
  if (end_invalid) {
    const uint32_t bad = rng.chance(50) ? uint32_t(rng.below(4)) : max_len + 1 + uint32_t(rng.below(1000));
    s += std::string(1, char(rng.byte())) + be32(bad) + rng.bytes(rng.below(20));
  } else if (rng.chance(50)) {
    s += rng.bytes(rng.below(5));  // an incomplete header at the end
  }
  return s;
}

}  // namespace

TEST_CASE("StreamFramer agrees with peek_frame on random streams", "[framing][random]") {
  Rng rng(0xf4a3e);
  const uint32_t max_len = 200;
  for (int iter = 0; iter < 3000; ++iter) {
    const bool end_invalid = rng.chance(40);
    const std::string stream = random_stream(rng, max_len, end_invalid);
    Result tail = Result::ok;
    const std::vector<Msg> expect = frame_all(stream, &tail, max_len);
    std::vector<size_t> at;
    const size_t cuts = rng.below(12);
    for (size_t i = 0; i < cuts; ++i) at.push_back(rng.below(stream.size() + 1));
    std::sort(at.begin(), at.end());
    StreamFramer f(max_len);
    FramerRun run = run_framer(f, cut(stream, at));
    INFO("iteration " << iter);
    REQUIRE(run.messages == expect);
    REQUIRE(run.invalid == (tail == Result::invalid));
    REQUIRE(run.invalid == end_invalid);
    // A stream ending on a partial message leaves the framer mid-message.
    if (!run.invalid) {
      const size_t framed = [&] {
        size_t t = 0;
        for (const auto& m : expect) t += 5 + m.body.size();
        return t;
      }();
      REQUIRE(f.at_boundary() == (framed == stream.size()));
    }
  }
}

TEST_CASE("peek_frame and StreamFramer on raw random bytes", "[framing][random]") {
  Rng rng(0xbadc0de);
  for (int iter = 0; iter < 20000; ++iter) {
    const std::string b = rng.bytes(rng.below(64));
    const uint32_t max_len = iter % 3 == 0 ? kDefaultMaxMessage : uint32_t(rng.below(80));
    FrameResult r = peek_frame(span(b), max_len);
    INFO("iteration " << iter);
    if (b.size() < 5) {
      REQUIRE(r.result == Result::need_more);
      continue;
    }
    const uint32_t len = read_u32(span(b).data() + 1);
    REQUIRE(r.frame.type == b[0]);
    REQUIRE(r.frame.length == len);
    if (len < 4 || len > max_len) {
      REQUIRE(r.result == Result::invalid);
    } else if (size_t(len) + 1 <= b.size()) {
      REQUIRE(r.result == Result::ok);
      // Any prefix that still holds the header but not the body: need_more.
      for (size_t n = 5; n < r.frame.total(); ++n) {
        REQUIRE(peek_frame(span(b).first(n), max_len).result == Result::need_more);
      }
    } else {
      REQUIRE(r.result == Result::need_more);
    }
    // The framer agrees with peek_frame on the same bytes.
    Result tail = Result::ok;
    const std::vector<Msg> expect = frame_all(b, &tail, max_len);
    StreamFramer f(max_len);
    std::vector<size_t> at;
    if (!b.empty()) at.push_back(rng.below(b.size() + 1));
    FramerRun run = run_framer(f, cut(b, at));
    REQUIRE(run.messages == expect);
    REQUIRE(run.invalid == (tail == Result::invalid));
  }
}
