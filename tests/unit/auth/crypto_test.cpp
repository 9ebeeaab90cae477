// Known-answer tests for the OpenSSL wrappers and strict base64.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <stdexcept>
#include <string>

#include "auth/crypto.hpp"

using namespace pgmux::auth;

namespace {

std::string hex(std::string_view raw) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
}

std::string hex(const Sha256& h) { return hex(view(h)); }

}  // namespace

TEST_CASE("sha256 known answers", "[auth][crypto]") {
  CHECK(hex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex(sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // Embedded NUL bytes are data, not terminators.
  CHECK(sha256(std::string_view("a\0b", 3)) != sha256("a"));
}

TEST_CASE("hmac_sha256 known answers", "[auth][crypto]") {
  // RFC 4231 test case 2.
  CHECK(hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Empty key and message (checked with Python's hmac module).
  CHECK(hex(hmac_sha256("", "")) ==
        "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  CHECK(hmac_sha256("k1", "m") != hmac_sha256("k2", "m"));
  // RFC 4231 test case 1 (20-byte key) and 6 (key longer than the block:
  // hashed first), and a key of exactly one block (checked with Python).
  CHECK(hex(hmac_sha256(std::string(20, '\x0b'), "Hi There")) ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  CHECK(hex(hmac_sha256(std::string(131, '\xaa'),
                        "Test Using Larger Than Block-Size Key - Hash Key First")) ==
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  CHECK(hex(hmac_sha256(std::string(64, 'k'), "m")) ==
        "3b7a8d453e76edb519238a515105a57508d0f169f480ebeee120a9e7803289fa");
}

TEST_CASE("pbkdf2_sha256 known answers", "[auth][crypto]") {
  // RFC 7914 section 11 (first 32 bytes of the 64-byte output).
  CHECK(hex(pbkdf2_sha256("passwd", "salt", 1)) ==
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
  CHECK(hex(pbkdf2_sha256("password", "salt", 4096)) ==
        "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a");
  CHECK_NOTHROW(pbkdf2_sha256("", "", 1));
  CHECK_THROWS_AS(pbkdf2_sha256("pw", "salt", 0), std::invalid_argument);
  CHECK_THROWS_AS(pbkdf2_sha256("pw", "salt", -5), std::invalid_argument);
}

TEST_CASE("md5_hex known answers", "[auth][crypto]") {
  CHECK(md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(md5_hex("The quick brown fox jumps over the lazy dog") ==
        "9e107d9d372bb6826bd81d3542a419d6");
}

TEST_CASE("base64_encode RFC 4648 vectors", "[auth][crypto][base64]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode(std::string("\xff\xfe\xfd\x00", 4)) == "//79AA==");
  CHECK(base64_encode("n,,") == "biws");
  CHECK(base64_encode("y,,") == "eSws");
}

TEST_CASE("base64_decode accepts canonical input", "[auth][crypto][base64]") {
  CHECK(base64_decode("") == std::string());
  CHECK(base64_decode("Zg==") == std::string("f"));
  CHECK(base64_decode("Zm8=") == std::string("fo"));
  CHECK(base64_decode("Zm9v") == std::string("foo"));
  CHECK(base64_decode("Zm9vYmFy") == std::string("foobar"));
  CHECK(base64_decode("//79AA==") == std::string("\xff\xfe\xfd\x00", 4));
}

TEST_CASE("base64 round-trips every length and byte", "[auth][crypto][base64]") {
  std::string raw;
  for (int i = 0; i < 300; ++i) {
    auto decoded = base64_decode(base64_encode(raw));
    REQUIRE(decoded.has_value());
    REQUIRE(*decoded == raw);
    raw += static_cast<char>((i * 37 + 11) & 0xff);
  }
}

TEST_CASE("base64_decode is strict", "[auth][crypto][base64]") {
  const char* bad[] = {
      "Zg",         // missing padding
      "Zg=",        // short padding
      "Zm9",        // length not a multiple of 4
      "Z===",       // too much padding
      "====",       // padding only
      "Zg==Zg==",   // padding in the middle
      "Zm=v",       // '=' before data
      "Zh==",       // non-zero unused bits (canonical form is Zg==)
      "Zm9=",       // non-zero unused bits (canonical form is Zm8=)
      "Zm9v\n",     // whitespace
      " Zm9v",      // whitespace
      "Zm 9v",      // whitespace
      "Zm9-",       // URL-safe alphabet
      "Zm9_",       // URL-safe alphabet
      "Zm9v!AAA",   // bad character
      "Zm9\x80",    // non-ASCII
  };
  for (const char* b : bad) {
    INFO("input: " << b);
    CHECK_FALSE(base64_decode(b).has_value());
  }
  CHECK_FALSE(base64_decode(std::string_view("Zm9\0", 4)).has_value());
}

TEST_CASE("constant_time_equal", "[auth][crypto]") {
  CHECK(constant_time_equal("", ""));
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "ab"));
  CHECK_FALSE(constant_time_equal("", "a"));
  CHECK_FALSE(constant_time_equal("xbc", "abc"));
  CHECK(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  CHECK_FALSE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

TEST_CASE("random_bytes fills the buffer with varying data", "[auth][crypto]") {
  std::set<std::string> seen;
  for (int i = 0; i < 16; ++i) {
    std::string buf(32, '\0');
    random_bytes(buf.data(), buf.size());
    seen.insert(buf);
  }
  CHECK(seen.size() == 16);
  random_bytes(nullptr, 0);  // no-op
  std::set<uint32_t> words;
  for (int i = 0; i < 16; ++i) words.insert(random_u32());
  CHECK(words.size() > 1);
  // Small requests come from a per-thread block; a large one bypasses it.
  std::string big(8192, '\0');
  random_bytes(big.data(), big.size());
  CHECK(big.find(std::string(64, '\0')) == std::string::npos);
}

TEST_CASE("random_bytes: a forked child does not repeat its parent's bytes", "[auth][crypto]") {
  uint32_t warm = random_u32();  // the parent's block is filled now
  (void)warm;
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    unsigned char b[16];
    random_bytes(b, sizeof b);
    ssize_t w = write(fds[1], b, sizeof b);
    _exit(w == ssize_t(sizeof b) ? 0 : 1);
  }
  unsigned char mine[16], child[16];
  random_bytes(mine, sizeof mine);
  ssize_t r = read(fds[0], child, sizeof child);
  int status = 0;
  waitpid(pid, &status, 0);
  close(fds[0]);
  close(fds[1]);
  REQUIRE(r == ssize_t(sizeof child));
  CHECK(std::memcmp(mine, child, sizeof mine) != 0);
}
