// What a process reports about itself in heartbeats and metrics: its resident memory.
#pragma once

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

}  // namespace dx::detail
