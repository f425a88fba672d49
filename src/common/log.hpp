// dx's diagnostics: one line per event on stderr, prefixed "dx[pid] <level>:". DX_LOG=debug,
// info, warn (default) or off chooses what is printed.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace dx::detail {

enum class log_level { debug = 0, info = 1, warn = 2, off = 3 };

bool log_enabled(log_level level) noexcept;
/// DX_TRACE_STALL set: the head and workers log their task counts at every heartbeat.
bool stall_trace_enabled() noexcept;
void log_line(log_level level, std::string_view text) noexcept;

template <class... A>
void log(log_level level, fmt::format_string<A...> f, A&&... a) {
  if (log_enabled(level)) log_line(level, fmt::format(f, std::forward<A>(a)...));
}

}  // namespace dx::detail
