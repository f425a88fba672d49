// The wall-clock time as Unix milliseconds: what durable records (the journal, run views) carry,
// so that other processes and other days can read them.
#pragma once

#include <chrono>
#include <cstdint>

namespace dx::detail {

/// Milliseconds since the Unix epoch, by the system clock. Thread-safe; does not block.
inline std::int64_t unix_ms_now() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace dx::detail
