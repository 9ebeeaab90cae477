// The forwarding path (peek_frame, StreamFramer::next) must not allocate.
// This file replaces the global operator new/delete of the test binary with
// counting versions backed by malloc/free.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#include "support.hpp"

namespace {
std::atomic<size_t> g_allocations{0};
}

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

using namespace pgmux::proto;
using namespace pgmux::proto::test;

TEST_CASE("peek_frame and StreamFramer::next do not allocate", "[framing][alloc]") {
  const std::string stream = all_typed_messages() + "Q" + be32(2);
  // Sanity: the counter works.
  {
    const size_t before = g_allocations.load();
    auto* p = new std::string(100, 'x');
    delete p;
    REQUIRE(g_allocations.load() > before);
  }
  size_t pieces = 0, frames = 0;
  const size_t before = g_allocations.load();
  {
    ByteSpan b = span(stream);
    for (;;) {
      FrameResult fr = peek_frame(b);
      if (fr.result != Result::ok) break;
      ++frames;
      b = b.subspan(fr.frame.total());
    }
    for (size_t step : {size_t(1), size_t(3), size_t(7), size_t(4096)}) {
      StreamFramer f;
      ByteSpan all = span(stream);
      while (!all.empty()) {
        ByteSpan chunk = all.first(std::min(step, all.size()));
        all = all.subspan(chunk.size());
        while (!chunk.empty()) {
          StreamFramer::Piece p = f.next(chunk);
          chunk = chunk.subspan(p.consumed);
          ++pieces;
        }
      }
    }
  }
  const size_t after = g_allocations.load();
  CHECK(after == before);
  CHECK(frames == 31);
  CHECK(pieces > stream.size());
}
