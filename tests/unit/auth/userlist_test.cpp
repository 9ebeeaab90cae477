// PgBouncer's auth_file format.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

#include "auth/userlist.hpp"

using namespace pgmux::auth;

namespace {

constexpr const char* kVerifier =
    "SCRAM-SHA-256$4096:eRt/ZI1jeNN8IdH91EON3w==$Trc0mmFRcWsz+2rSlmXAZ44XOEVq0+ra/NYRiDcgtqs=:"
    "rEEHg1NBBrjgtZTWNBBe5SCsyFlP4A9A7Dw4hNkmY4U=";
constexpr const char* kMd5 = "md53175bce1d3201d16594cebf9d7eb3f9d";

std::shared_ptr<const Userlist> parse_ok(std::string_view text) {
  auto r = parse_userlist(text);
  INFO("error: " << r.error);
  REQUIRE(r.list);
  CHECK(r.error.empty());
  return r.list;
}

std::string parse_error(std::string_view text) {
  auto r = parse_userlist(text);
  CHECK_FALSE(r.list);
  return r.error;
}

std::string secret_of(const Userlist& l, std::string_view user) {
  const Secret* s = l.find(user);
  REQUIRE(s);
  return s->text;
}

}  // namespace

TEST_CASE("classify_secret", "[auth][userlist]") {
  Secret s = classify_secret(kVerifier);
  CHECK(s.kind == SecretKind::scram);
  CHECK(s.text == kVerifier);
  CHECK(s.scram.iterations == 4096);
  CHECK(s.scram.salt.size() == 16);

  s = classify_secret(kMd5);
  CHECK(s.kind == SecretKind::md5);
  CHECK(s.text == kMd5);

  CHECK(classify_secret("md53175BCE1D3201D16594CEBF9D7EB3F9D").kind == SecretKind::md5);
  CHECK(classify_secret("pencil").kind == SecretKind::plain);
  CHECK(classify_secret("").kind == SecretKind::plain);
  CHECK(classify_secret("md5").kind == SecretKind::plain);
  CHECK(classify_secret("md53175bce1d3201d16594cebf9d7eb3f9").kind == SecretKind::plain);
  CHECK(classify_secret("SCRAM-SHA-256$0:abc$def:ghi").kind == SecretKind::plain);
  CHECK(classify_secret("pencil").text == "pencil");
}

TEST_CASE("userlist: the three kinds of secret", "[auth][userlist]") {
  std::string text = std::string("\"alice\" \"") + kVerifier + "\"\n\"bob\" \"" + kMd5 +
                     "\"\n\"carol\" \"plain pw\"\n";
  auto list = parse_ok(text);
  REQUIRE(list->users.size() == 3);
  REQUIRE(list->find("alice"));
  CHECK(list->find("alice")->kind == SecretKind::scram);
  CHECK(list->find("alice")->scram.iterations == 4096);
  CHECK(list->find("bob")->kind == SecretKind::md5);
  CHECK(list->find("carol")->kind == SecretKind::plain);
  CHECK(secret_of(*list, "carol") == "plain pw");
  CHECK(list->find("dave") == nullptr);
  CHECK(list->find("Alice") == nullptr);  // names are case-sensitive
}

TEST_CASE("userlist: empty and comment-only files", "[auth][userlist]") {
  CHECK(parse_ok("")->users.empty());
  CHECK(parse_ok("\n\n   \n\t\n")->users.empty());
  CHECK(parse_ok("; comment\n# another \"with quotes\n  ; indented comment\n")->users.empty());
}

TEST_CASE("userlist: quoting", "[auth][userlist]") {
  auto list = parse_ok(
      "\"a\"\"b\" \"p\"\"w\"\n"          // doubled quotes
      "\"with space\" \"pass word\"\n"   // spaces inside quotes
      "\"semi;colon\" \"#hash\"\n"       // comment characters inside quotes
      "\"only\"\"\" \"\"\"\"\n"          // a name ending in a quote; a secret that is one quote
      "\"empty\" \"\"\n");               // empty secret
  CHECK(secret_of(*list, "a\"b") == "p\"w");
  CHECK(secret_of(*list, "with space") == "pass word");
  CHECK(secret_of(*list, "semi;colon") == "#hash");
  CHECK(secret_of(*list, "only\"") == "\"");
  CHECK(secret_of(*list, "empty").empty());
  CHECK(list->find("empty")->kind == SecretKind::plain);
}

TEST_CASE("userlist: whitespace, line ends and extra fields", "[auth][userlist]") {
  auto list = parse_ok(
      "\xEF\xBB\xBF\"bom\" \"x\"\r\n"          // UTF-8 BOM, CRLF
      "   \"indented\"\t\t\"tabs\"   \r\n"
      "\"extra\" \"secret\" \"third field\" ignored\n"
      "\"adjacent\" \"secret\"junk\n"
      "\"last\" \"no newline\"");
  CHECK(secret_of(*list, "bom") == "x");
  CHECK(secret_of(*list, "indented") == "tabs");
  CHECK(secret_of(*list, "extra") == "secret");
  CHECK(secret_of(*list, "adjacent") == "secret");
  CHECK(secret_of(*list, "last") == "no newline");
  CHECK(list->users.size() == 5);
}

TEST_CASE("userlist: duplicate user, last wins", "[auth][userlist]") {
  auto list = parse_ok("\"u\" \"first\"\n\"v\" \"other\"\n\"u\" \"second\"\n");
  CHECK(list->users.size() == 2);
  CHECK(secret_of(*list, "u") == "second");
}

TEST_CASE("userlist: errors name the line", "[auth][userlist]") {
  CHECK(parse_error("\"a\" \"x\"\n\n\"b\" \"unterminated\n\"c\" \"y\"\n") ==
        "line 3: unterminated quote");
  CHECK(parse_error("\"a\" \"x\"\n\"unterminated user\n") == "line 2: unterminated quote");
  CHECK(parse_error("\"a\" \"x\"\"\n") == "line 1: unterminated quote");  // "" is an escaped quote
  CHECK(parse_error("; c\nalice \"x\"\n") == "line 2: expected '\"' to start the user name");
  CHECK(parse_error("\"alice\" x\n") == "line 1: expected '\"' to start the secret");
  CHECK(parse_error("\"alice\"\n") == "line 1: missing secret (expected \"user\" \"secret\")");
  CHECK(parse_error("\"alice\"   \r\n") == "line 1: missing secret (expected \"user\" \"secret\")");
  CHECK(parse_error("\"alice\"\"x\"\n") ==
        "line 1: missing secret (expected \"user\" \"secret\")");  // user is alice"x
  CHECK(parse_error("\"alice\"x \"y\"\n") == "line 1: expected whitespace after the user name");
  CHECK(parse_error("\n\n\n\"\" \"x\"\n") == "line 4: empty user name");
  CHECK(parse_error(std::string("\"a\" \"x\0y\"\n", 11)) == "line 1: NUL byte");
  CHECK(parse_error("\"a\" \"x\"\r\n\"b\" \"SCRAM-SHA-256$4096:bad\"\r\n") ==
        "line 2: malformed SCRAM verifier for user \"b\"");
  // A quoted field cannot continue on the next line.
  CHECK(parse_error("\"a\" \"multi\nline\"\n") == "line 1: unterminated quote");
  // The secret must be on the same line as the user.
  CHECK(parse_error("\"a\"\n\"secret\"\n") == "line 1: missing secret (expected \"user\" \"secret\")");
}

TEST_CASE("load_userlist", "[auth][userlist]") {
  char path[] = "/tmp/pgmux_userlist_testXXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream f(path, std::ios::binary);
    f << "\"alice\" \"" << kMd5 << "\"\n";
  }
  auto r = load_userlist(path);
  REQUIRE(r.list);
  CHECK(r.list->find("alice")->kind == SecretKind::md5);
  {
    std::ofstream f(path, std::ios::binary);
    f << "\"alice\" \"x\"\n\"bob\n";
  }
  r = load_userlist(path);
  CHECK_FALSE(r.list);
  CHECK(r.error == "line 2: unterminated quote");
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
  }
  r = load_userlist(path);
  REQUIRE(r.list);
  CHECK(r.list->users.empty());
  std::remove(path);

  r = load_userlist(path);
  CHECK_FALSE(r.list);
  CHECK(r.error.rfind(std::string("cannot open ") + path + ": ", 0) == 0);
}
