// dx's diagnostics: one line per event, to the sink set with dx::set_log_sink or to stderr,
// prefixed "dx[pid] <level>:". The threshold is dx::set_log_level's, else DX_LOG's (debug, info,
// warn (default), error or off); see include/dx/log.hpp.
#pragma once

#include <dx/log.hpp>

#include <fmt/format.h>

#include <string_view>

namespace dx::detail {

using dx::log_level;

bool log_enabled(log_level level) noexcept;
/// Reads DX_LOG now (once per process) and reports an unknown value, so that a process states a
/// bad setting when it starts rather than at its first log line. Thread-safe.
void init_log_from_environment() noexcept;
/// True when set_log_level() chose the level (not DX_LOG): worker processes a head starts are
/// then given it through their environment.
bool log_level_set_in_code() noexcept;
/// DX_TRACE_STALL set: the head and workers log their task counts at every heartbeat.
bool stall_trace_enabled() noexcept;
void log_line(log_level level, std::string_view text) noexcept;

template <class... A>
void log(log_level level, fmt::format_string<A...> f, A&&... a) {
  if (log_enabled(level)) log_line(level, fmt::format(f, std::forward<A>(a)...));
}

}  // namespace dx::detail
