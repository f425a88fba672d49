// SHA-256 digests as hex text: result checksums in the journal, workflow steps' digests and cache
// keys. A workflow of 100,000 steps takes some 300,000 of them between its validation and its end,
// so the digest's implementation is looked up once, not at every call.
#pragma once

#include <string>
#include <string_view>

namespace dx::detail {

/// The SHA-256 of `bytes` as 64 lowercase hex digits. Throws dx::error when OpenSSL cannot compute
/// it. Thread-safe; does not block.
std::string sha256_hex(std::string_view bytes);

}  // namespace dx::detail
