// What a process reports about itself in heartbeats and metrics.
#pragma once

#include "core/executor_impl.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstdio>

namespace dx::detail {

/// Resident set size of this process, from /proc/self/statm (0 where that is not available).
inline std::uint64_t resident_memory_bytes() noexcept {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  const int got = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (got != 2) return 0;
  const long page = ::sysconf(_SC_PAGESIZE);
  return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(page > 0 ? page : 4096);
}

/// The index of the calling executor thread within its executor (0 on other threads).
inline std::uint32_t current_thread_index() noexcept {
  const worker* w = this_worker();
  return w ? static_cast<std::uint32_t>(w->id) : 0;
}

}  // namespace dx::detail
