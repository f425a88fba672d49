// The handshake's secret check: HMAC-SHA256 challenge-response over a shared token (OpenSSL).
#pragma once

#include <string>
#include <string_view>

namespace dx::detail {

/// 32 random bytes.
std::string make_nonce();
/// HMAC-SHA256(token, nonce), 32 bytes.
std::string prove(std::string_view token, std::string_view nonce);
/// Constant-time check of a proof.
bool proof_valid(std::string_view token, std::string_view nonce, std::string_view proof);
/// Constant-time comparison of two tokens (the time taken does not depend on where they differ).
bool tokens_equal(std::string_view a, std::string_view b);
/// Reads a token file: the first line with surrounding whitespace trimmed. Throws dx::error
/// naming the file when it cannot be read or holds no token.
std::string read_token_file(const std::string& path);

}  // namespace dx::detail
