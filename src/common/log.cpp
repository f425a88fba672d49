#include "common/log.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace dx::detail {

namespace {
log_level configured_level() noexcept {
  const char* v = std::getenv("DX_LOG");
  if (!v) return log_level::warn;
  if (!std::strcmp(v, "debug")) return log_level::debug;
  if (!std::strcmp(v, "info")) return log_level::info;
  if (!std::strcmp(v, "off")) return log_level::off;
  return log_level::warn;
}
}  // namespace

bool log_enabled(log_level level) noexcept {
  static const log_level threshold = configured_level();
  return level >= threshold && level != log_level::off;
}

bool stall_trace_enabled() noexcept {
  static const bool enabled = std::getenv("DX_TRACE_STALL") != nullptr;
  return enabled;
}

void log_line(log_level level, std::string_view text) noexcept {
  static constexpr const char* names[] = {"debug", "info", "warn", "off"};
  // One fprintf per line so lines from several threads do not interleave.
  std::fprintf(stderr, "dx[%d] %s: %.*s\n", static_cast<int>(::getpid()), names[static_cast<int>(level)],
               static_cast<int>(text.size()), text.data());
}

}  // namespace dx::detail
