// dx's diagnostics: one line per event, to the sink set with dx::set_log_sink or to stderr,
// prefixed "dx[pid] <level>:". The threshold is dx::set_log_level's, else DX_LOG's (debug, info,
// warn (default), error or off); see include/dx/log.hpp.
#pragma once

#include <dx/log.hpp>

#include <fmt/format.h>

#include <chrono>
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

/// Rate limiting of lines a peer can cause at will (junk connections, refused handshakes): the
/// first line of a cause in each interval is written; the rest are counted, and the next line
/// written for that cause says how many were left out. Returns true when a line of `cause` may
/// be written now, with `suppressed` set to the count left out since the last one.
/// Thread-safe; does not block on anything but a short internal lock.
bool log_repeat_allowed(std::string_view cause, std::uint64_t& suppressed) noexcept;
/// The interval of log_limited (10 s unless changed; DX_LOG_REPEAT_MS in the environment sets
/// it at start). Tests shorten it. Thread-safe.
void set_log_repeat_interval(std::chrono::milliseconds interval) noexcept;
std::chrono::milliseconds log_repeat_interval() noexcept;

/// log() for lines a remote peer can trigger repeatedly: one line per cause (the format string)
/// per interval, with a count of the lines left out.
template <class... A>
void log_limited(log_level level, fmt::format_string<A...> f, A&&... a) {
  if (!log_enabled(level)) return;
  const fmt::string_view text = f;
  const std::string_view cause(text.data(), text.size());
  std::uint64_t suppressed = 0;
  if (!log_repeat_allowed(cause, suppressed)) return;
  std::string line = fmt::format(f, std::forward<A>(a)...);
  if (suppressed > 0)
    line += fmt::format(" ({} similar line{} left out in the last {} ms)", suppressed, suppressed == 1 ? "" : "s",
                        log_repeat_interval().count());
  log_line(level, line);
}

}  // namespace dx::detail
