// PostgreSQL's MD5 scheme. Expected values computed independently with
// Python's hashlib; the "md5pw"/"u3" hash was written by PostgreSQL 15.18
// (password_encryption = md5) into pg_authid.
#include <catch2/catch.hpp>

#include "auth/md5.hpp"

using namespace pgmux::auth;

TEST_CASE("md5_password_hash matches pg_authid", "[auth][md5]") {
  CHECK(md5_password_hash("postgres", "postgres") == "md53175bce1d3201d16594cebf9d7eb3f9d");
  CHECK(md5_password_hash("u3", "md5pw") == "md53867806aa705ef2accb28412450bbdf5");
  // Order is password then user.
  CHECK(md5_password_hash("md5pw", "u3") != md5_password_hash("u3", "md5pw"));
}

TEST_CASE("md5_response to an AuthenticationMD5Password challenge", "[auth][md5]") {
  const uint8_t salt1[4] = {0x01, 0x02, 0x03, 0x04};
  const uint8_t salt2[4] = {0xde, 0xad, 0xbe, 0xef};
  CHECK(md5_response("postgres", "postgres", salt1) == "md568be9ed08db75f318087ab337aaea044");
  CHECK(md5_response_from_hash("md53175bce1d3201d16594cebf9d7eb3f9d", salt1) ==
        "md568be9ed08db75f318087ab337aaea044");
  CHECK(md5_response_from_hash("md53867806aa705ef2accb28412450bbdf5", salt2) ==
        "md5722f51ba5270f0ce170e13821d11ea51");
  CHECK(md5_response("u3", "md5pw", salt2) == "md5722f51ba5270f0ce170e13821d11ea51");
  CHECK(md5_response("u3", "md5pw", salt1) != md5_response("u3", "md5pw", salt2));
  CHECK(md5_response("u3", "wrong", salt2) != "md5722f51ba5270f0ce170e13821d11ea51");
}

TEST_CASE("md5_response_from_hash normalizes hex case and rejects non-hashes", "[auth][md5]") {
  const uint8_t salt[4] = {0xde, 0xad, 0xbe, 0xef};
  CHECK(md5_response_from_hash("md53867806AA705EF2ACCB28412450BBDF5", salt) ==
        "md5722f51ba5270f0ce170e13821d11ea51");
  CHECK(md5_response_from_hash("plain password", salt).empty());
  CHECK(md5_response_from_hash("md5", salt).empty());
}

TEST_CASE("is_md5_hash", "[auth][md5]") {
  CHECK(is_md5_hash("md53175bce1d3201d16594cebf9d7eb3f9d"));
  CHECK(is_md5_hash("md53175BCE1D3201D16594CEBF9D7EB3F9D"));
  CHECK_FALSE(is_md5_hash("md53175bce1d3201d16594cebf9d7eb3f9"));    // 31 digits
  CHECK_FALSE(is_md5_hash("md53175bce1d3201d16594cebf9d7eb3f9d0"));  // 33 digits
  CHECK_FALSE(is_md5_hash("md53175bce1d3201d16594cebf9d7eb3f9g"));   // not hex
  CHECK_FALSE(is_md5_hash("MD53175bce1d3201d16594cebf9d7eb3f9d"));   // prefix is lowercase
  CHECK_FALSE(is_md5_hash("xx53175bce1d3201d16594cebf9d7eb3f9d"));
  CHECK_FALSE(is_md5_hash(""));
  CHECK_FALSE(is_md5_hash("md5"));
  CHECK_FALSE(is_md5_hash("SCRAM-SHA-256$4096:abc"));
}
