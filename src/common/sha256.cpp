#include "common/sha256.hpp"

#include <dx/error.hpp>

#include <openssl/evp.h>
#include <openssl/opensslv.h>

#include <array>

namespace dx::detail {

namespace {

/// OpenSSL 3 looks EVP_sha256() up in its provider tables at every EVP_Digest call (about a third
/// of a short digest's time); a digest fetched once skips that. Kept for the process's life.
const EVP_MD* sha256_md() {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  static const EVP_MD* const md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched ? fetched : EVP_sha256();
  }();
  return md;
#else
  return EVP_sha256();
#endif
}

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, sha256_md(), nullptr) != 1)
    throw_error(error_kind::generic, "cannot compute a SHA-256: OpenSSL's EVP_Digest failed");
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(2 * length, '0');
  for (unsigned int i = 0; i < length; ++i) {
    out[2 * i] = digits[digest[i] >> 4];
    out[2 * i + 1] = digits[digest[i] & 0xf];
  }
  return out;
}

}  // namespace dx::detail
