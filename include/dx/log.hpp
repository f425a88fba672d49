// dx/log.hpp — where dx's diagnostics go and how many of them.
//
//   dx::set_log_level(dx::log_level::info);          // or DX_LOG=info in the environment
//   dx::set_log_sink([](dx::log_level level, std::string_view message) {
//     my_logger.write(dx::to_string(level), message);  // instead of stderr
//   });
//   dx::set_log_sink(nullptr);                        // back to stderr
//
// dx logs one line per event: a connection closed, a worker joined or was lost, a cost model
// loaded or not saved, an alert nobody receives through on_alert. Without a sink each line goes to
// stderr as "dx[pid] level: message". The level starts from DX_LOG (debug, info, warn, error or
// off; warn when unset; an unknown value is reported and ignored); heads, workers and dx-worker
// read it at start, and worker processes a head starts with options::local_processes() inherit
// the level it has then. Alerts delivered to an on_alert callback are logged at info, so they are
// not printed twice at the default level.
#pragma once

#include <dx/export.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

namespace dx {

/// How important a log line is, least first. `off` as a threshold prints nothing.
enum class log_level : std::uint8_t { debug, info, warn, error, off };

/// Receives each log line at or above the level, without a trailing newline.
using log_sink = std::function<void(log_level level, std::string_view message)>;

/// Sends log lines to `sink` instead of stderr; an empty function (nullptr) restores stderr.
/// Calls to the sink are serialised (it need not be thread-safe) and run on the thread that
/// logs, possibly while dx holds internal locks: the sink must not call back into a cluster
/// (submit, forecast, ...). A line logged from inside the sink goes to stderr; an exception
/// thrown by the sink is reported on stderr and swallowed.
/// Thread-safe; blocks until a call of the previous sink in progress on another thread returns,
/// so whatever that sink captured may be destroyed once this returns.
DX_API void set_log_sink(log_sink sink);

/// Logs lines at `level` and above (log_level::off: none). Overrides DX_LOG.
/// Thread-safe; does not block.
DX_API void set_log_level(log_level level) noexcept;

/// The current threshold: what set_log_level() set, else DX_LOG, else log_level::warn.
/// Thread-safe; does not block.
DX_API log_level get_log_level() noexcept;

/// "debug", "info", "warn", "error" or "off". Thread-safe; does not block.
DX_API const char* to_string(log_level level) noexcept;

/// The level named `name` (as to_string() spells it, in any case; "warning" is also accepted);
/// std::nullopt for anything else. Thread-safe; does not block.
DX_API std::optional<log_level> parse_log_level(std::string_view name) noexcept;

}  // namespace dx
