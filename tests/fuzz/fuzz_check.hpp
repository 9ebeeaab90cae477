// Shared helpers for the libFuzzer targets in tests/fuzz.
//
// FUZZ_CHECK is an assertion that stays on in every build: a failed property
// prints the condition and aborts, which libFuzzer reports as a crash and
// saves the input as a reproducer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond)                                                                 \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace pgmux::fuzz {

// Big-endian encoders written independently of protocol/builders, so that
// round trips check the parsers against the wire format, not against
// themselves.
inline void put32(std::string& s, uint32_t v) {
  s.push_back(char(v >> 24));
  s.push_back(char((v >> 16) & 0xff));
  s.push_back(char((v >> 8) & 0xff));
  s.push_back(char(v & 0xff));
}
inline void put16(std::string& s, uint16_t v) {
  s.push_back(char(v >> 8));
  s.push_back(char(v & 0xff));
}
inline void putcs(std::string& s, std::string_view v) {
  s.append(v);
  s.push_back('\0');
}

// True if `v` lies inside `whole` (an empty view anywhere counts).
inline bool inside(std::string_view v, std::span<const uint8_t> whole) {
  if (v.empty()) return true;
  const auto* b = reinterpret_cast<const char*>(whole.data());
  return v.data() >= b && v.data() + v.size() <= b + whole.size();
}

inline std::string_view chars(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// A small deterministic PRNG (xorshift32) for fuzzer-seeded choices.
struct XorShift {
  uint32_t s;
  explicit XorShift(uint32_t seed) : s(seed * 2654435761u + 1u) {
    if (s == 0) s = 1;
  }
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return s;
  }
};

// A double-quoted field as the userlist and hba files write it ("" inside).
inline std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace pgmux::fuzz
