// Text formats of auth/: the userlist file (parse_userlist), secrets
// (classify_secret, parse_scram_verifier) and strict base64 (base64_decode).
// Input: one text, given to each of them.
//
// Properties:
//  - parse_userlist: ok => every user name is non-empty and found by find();
//    written back in the same format ("" doubling quotes) and parsed again,
//    it gives the same users and secrets; a SCRAM secret carries a valid
//    verifier; an error is "line N: ..." in printable ASCII.
//  - parse_scram_verifier: ok => format/parse round trip; the text is the
//    formatted verifier unless the iteration count has leading zeros.
//  - base64_decode: ok => base64_encode gives the input back (one accepted
//    encoding per byte string); base64_encode(input) decodes to the input.
#include <cstdint>
#include <string>
#include <string_view>

#include "auth/crypto.hpp"
#include "auth/scram.hpp"
#include "auth/userlist.hpp"
#include "fuzz_check.hpp"

using namespace pgmux::auth;

namespace {

bool same_verifier(const ScramVerifier& a, const ScramVerifier& b) {
  return a.iterations == b.iterations && a.salt == b.salt && a.stored_key == b.stored_key &&
         a.server_key == b.server_key;
}

void check_userlist(std::string_view text) {
  const UserlistResult r = parse_userlist(text);
  if (!r.list) {
    FUZZ_CHECK(r.error.rfind("line ", 0) == 0);
    for (char ch : r.error) {
      const auto c = static_cast<unsigned char>(ch);
      FUZZ_CHECK(c >= 0x20 && c <= 0x7e);
    }
    return;
  }
  FUZZ_CHECK(r.error.empty());
  std::string again;
  for (const auto& [user, secret] : r.list->users) {
    FUZZ_CHECK(!user.empty());
    FUZZ_CHECK(r.list->find(user) == &secret);
    if (secret.kind == SecretKind::scram) {
      const auto v = parse_scram_verifier(secret.text);
      FUZZ_CHECK(v && same_verifier(*v, secret.scram));
    }
    again += pgmux::fuzz::quote(user) + " " + pgmux::fuzz::quote(secret.text) + "\n";
  }
  const UserlistResult r2 = parse_userlist(again);
  FUZZ_CHECK(r2.list != nullptr);
  FUZZ_CHECK(r2.list->users.size() == r.list->users.size());
  for (const auto& [user, secret] : r.list->users) {
    const Secret* s = r2.list->find(user);
    FUZZ_CHECK(s != nullptr && s->kind == secret.kind && s->text == secret.text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_userlist(text);

  const Secret s = classify_secret(text);
  FUZZ_CHECK(s.text == text);
  if (auto v = parse_scram_verifier(text)) {
    FUZZ_CHECK(s.kind == SecretKind::scram && same_verifier(*v, s.scram));
    FUZZ_CHECK(v->iterations >= 1);
    const std::string formatted = format_scram_verifier(*v);
    const auto v2 = parse_scram_verifier(formatted);
    FUZZ_CHECK(v2 && same_verifier(*v, *v2));
    const bool leading_zero = text.size() > 14 && text[14] == '0';
    if (!leading_zero) FUZZ_CHECK(formatted == text);
  } else {
    FUZZ_CHECK(s.kind != SecretKind::scram);
  }

  if (auto raw = base64_decode(text)) FUZZ_CHECK(base64_encode(*raw) == text);
  const auto back = base64_decode(base64_encode(text));
  FUZZ_CHECK(back && *back == text);
  return 0;
}
