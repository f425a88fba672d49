#include "cluster/auth.hpp"

#include <dx/error.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <fstream>
#include <random>

namespace dx::detail {

std::string make_nonce() {
  std::string nonce(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) != 1) {
    std::random_device rd;  // OpenSSL's generator failed; the kernel's is as good here
    for (char& c : nonce) c = static_cast<char>(rd());
  }
  return nonce;
}

std::string prove(std::string_view token, std::string_view nonce) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), token.data(), static_cast<int>(token.size()), reinterpret_cast<const unsigned char*>(nonce.data()),
       nonce.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

bool proof_valid(std::string_view token, std::string_view nonce, std::string_view proof) {
  const std::string expected = prove(token, nonce);
  return proof.size() == expected.size() && CRYPTO_memcmp(proof.data(), expected.data(), expected.size()) == 0;
}

bool tokens_equal(std::string_view a, std::string_view b) {
  // Digests of equal length, so that neither the lengths nor the first difference show in the time.
  const std::string da = prove("dx token comparison", a), db = prove("dx token comparison", b);
  return CRYPTO_memcmp(da.data(), db.data(), da.size()) == 0 && a.size() == b.size();
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw_error(error_kind::generic, "cannot read the token file '" + path + "'");
  std::string line;
  std::getline(in, line);
  const auto first = line.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) throw_error(error_kind::generic, "the token file '" + path + "' holds no token");
  const auto last = line.find_last_not_of(" \t\r\n");
  return line.substr(first, last - first + 1);
}

}  // namespace dx::detail
