// Startup-phase packets: parse_startup (StartupMessage, SSLRequest,
// GSSENCRequest, CancelRequest). Input: the bytes a client sends first.
//
// Properties:
//  - ok: `consumed` is the declared length and fits the input; the packet is
//    re-encoded (independently of protocol/builders) byte for byte from the
//    parsed fields; a StartupMessage has a non-empty "user", distinct names,
//    at most max_params pairs, protocol major 3; the other kinds have their
//    fixed size. Parsing only the packet's bytes gives the same result.
//  - invalid: an error text, every other field reset. need_more: all reset.
//  - Early decisions agree with the final one: for a packet that parses ok
//    every proper prefix is need_more; once a prefix is invalid, every
//    longer input is invalid too.
//  - The parameter cap: a StartupMessage with n pairs is ok with
//    max_params = n and invalid with n - 1.
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"
#include "protocol/codec.hpp"

using namespace pgmux::proto;
using namespace pgmux::fuzz;

namespace {

void check_reset(const StartupPacket& p) {
  FUZZ_CHECK(p.kind == StartupKind::startup);
  FUZZ_CHECK(p.protocol == 0 && p.params.empty() && p.cancel_pid == 0 && p.cancel_key == 0);
  FUZZ_CHECK(p.consumed == 0);
}

std::string encode(const StartupPacket& p) {
  std::string body;
  switch (p.kind) {
    case StartupKind::ssl_request: put32(body, kSslRequestCode); break;
    case StartupKind::gssenc_request: put32(body, kGssEncRequestCode); break;
    case StartupKind::cancel:
      put32(body, kCancelRequestCode);
      put32(body, p.cancel_pid);
      put32(body, p.cancel_key);
      break;
    case StartupKind::startup:
      put32(body, p.protocol);
      for (const auto& [name, value] : p.params) {
        putcs(body, name);
        putcs(body, value);
      }
      body.push_back('\0');
      break;
  }
  std::string out;
  put32(out, uint32_t(body.size() + 4));
  return out + body;
}

Result check_one(ByteSpan buf, StartupPacket& p, size_t max_len = kMaxStartupPacket,
                 size_t max_params = kMaxStartupParams) {
  const Result r = parse_startup(buf, p, max_len, max_params);
  switch (r) {
    case Result::need_more:
      check_reset(p);
      FUZZ_CHECK(p.error.empty());
      FUZZ_CHECK(buf.size() < 8 || read_u32(buf.data()) > buf.size());
      break;
    case Result::invalid:
      check_reset(p);
      FUZZ_CHECK(!p.error.empty());
      FUZZ_CHECK(p.error.size() < 512);  // bounded: it goes to logs and to the client
      break;
    case Result::ok: {
      FUZZ_CHECK(p.error.empty());
      FUZZ_CHECK(p.consumed >= 8 && p.consumed <= buf.size() && p.consumed <= max_len);
      FUZZ_CHECK(p.consumed == read_u32(buf.data()));
      FUZZ_CHECK(encode(p) == chars(buf.first(p.consumed)));
      if (p.kind == StartupKind::startup) {
        FUZZ_CHECK((p.protocol >> 16) == 3);
        FUZZ_CHECK(p.params.size() <= max_params);
        const std::string* user = p.param("user");
        FUZZ_CHECK(user != nullptr && !user->empty());
        for (size_t i = 0; i < p.params.size(); ++i) {
          FUZZ_CHECK(!p.params[i].first.empty());
          FUZZ_CHECK(p.param(p.params[i].first) == &p.params[i].second);  // first = only
        }
      } else {
        FUZZ_CHECK(p.params.empty() && p.protocol == 0);
        FUZZ_CHECK(p.consumed == (p.kind == StartupKind::cancel ? 16u : 8u));
      }
      break;
    }
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan buf(data, size);
  StartupPacket p;
  const Result r = check_one(buf, p);

  if (r == Result::ok) {
    StartupPacket q;
    FUZZ_CHECK(check_one(buf.first(p.consumed), q) == Result::ok);
    FUZZ_CHECK(q.params == p.params && q.kind == p.kind && q.protocol == p.protocol);
    FUZZ_CHECK(q.cancel_pid == p.cancel_pid && q.cancel_key == p.cancel_key);
    // Prefixes: need_more, never invalid or ok (a few cuts, to stay linear).
    for (size_t cut : {size_t(0), size_t(3), size_t(4), size_t(7), size_t(8), size_t(9),
                       p.consumed / 2, p.consumed - 1}) {
      if (cut < p.consumed) FUZZ_CHECK(check_one(buf.first(cut), q) == Result::need_more);
    }
    // A tighter size limit than the packet is invalid; exactly its size is ok.
    FUZZ_CHECK(check_one(buf, q, p.consumed) == Result::ok);
    FUZZ_CHECK(check_one(buf, q, p.consumed - 1) == Result::invalid);
    if (p.kind == StartupKind::startup) {
      const size_t n = p.params.size();
      FUZZ_CHECK(check_one(buf, q, kMaxStartupPacket, n) == Result::ok);
      FUZZ_CHECK(check_one(buf, q, kMaxStartupPacket, n - 1) == Result::invalid);
    }
  } else {
    // Where the input stops being need_more, it is decided for good.
    size_t lo = 0;
    StartupPacket q;
    while (lo < size && check_one(buf.first(lo), q) == Result::need_more) lo = lo < 16 ? lo + 1 : lo * 2;
    if (lo < size && check_one(buf.first(lo), q) == Result::invalid) {
      FUZZ_CHECK(r == Result::invalid);
    }
  }
  return 0;
}
