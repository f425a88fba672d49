// The logger behind dx/log.hpp and common/log.hpp: a threshold read from DX_LOG once and changed
// by set_log_level, and a sink (or stderr) that receives the lines.
#include "common/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

namespace dx {

namespace {

constexpr log_level default_level = log_level::warn;

void write_stderr(log_level level, std::string_view text) noexcept {
  // One fprintf per line so lines from several threads do not interleave.
  std::fprintf(stderr, "dx[%d] %s: %.*s\n", static_cast<int>(::getpid()), to_string(level),
               static_cast<int>(text.size()), text.data());
}

struct level_state {
  std::atomic<log_level> threshold{default_level};
  std::atomic<bool> set_in_code{false};
  std::atomic<bool> report_bad_value{false};
  std::string bad_value;  // DX_LOG when it names no level; written once, before the flag
};

/// The threshold, read from DX_LOG on first use. A bad value is reported once, after the state
/// exists (the sink may ask for the level).
level_state& levels() noexcept {
  static level_state* s = [] {
    auto* st = new level_state;  // never destroyed: threads may log during static destruction
    const char* v = std::getenv("DX_LOG");
    if (v && *v) {
      if (auto level = parse_log_level(v)) {
        st->threshold.store(*level, std::memory_order_relaxed);
      } else {
        st->bad_value = v;
        st->report_bad_value.store(true, std::memory_order_release);
      }
    }
    return st;
  }();
  // Acquire pairs with the release above: bad_value is complete when the flag is seen.
  if (s->report_bad_value.load(std::memory_order_relaxed) &&
      s->report_bad_value.exchange(false, std::memory_order_acquire))
    detail::log_line(log_level::warn,
                     "DX_LOG='" + s->bad_value + "' is not a log level (debug, info, warn, error or off); using warn");
  return *s;
}

// The sink: replaced under the mutex, called under it (calls are serialised and
// set_log_sink waits for one in progress). Recursive: the sink may call set_log_sink.
struct sink_state {
  std::recursive_mutex mutex;
  std::shared_ptr<log_sink> sink;
};

sink_state& sinks() noexcept {
  static sink_state* s = new sink_state;  // never destroyed, as levels()
  return *s;
}

// Set while this thread runs the sink: a line it logs goes to stderr instead of recursing.
thread_local bool in_sink = false;

}  // namespace

void set_log_sink(log_sink sink) {
  auto next = sink ? std::make_shared<log_sink>(std::move(sink)) : nullptr;
  sink_state& s = sinks();
  std::shared_ptr<log_sink> previous;
  {
    std::lock_guard lock(s.mutex);
    previous = std::exchange(s.sink, std::move(next));
  }
  // `previous` is destroyed here, outside the lock (unless a call of it is on this thread's stack,
  // which holds its own reference).
}

void set_log_level(log_level level) noexcept {
  if (level > log_level::off) level = log_level::off;
  level_state& s = levels();
  // Relaxed: the level is a filter with no data depending on it; a thread may see the change a
  // little late.
  s.threshold.store(level, std::memory_order_relaxed);
  s.set_in_code.store(true, std::memory_order_relaxed);
}

log_level get_log_level() noexcept { return levels().threshold.load(std::memory_order_relaxed); }

const char* to_string(log_level level) noexcept {
  switch (level) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
    case log_level::off:
      return "off";
  }
  return "?";
}

std::optional<log_level> parse_log_level(std::string_view name) noexcept {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "debug") return log_level::debug;
  if (lower == "info") return log_level::info;
  if (lower == "warn" || lower == "warning") return log_level::warn;
  if (lower == "error") return log_level::error;
  if (lower == "off") return log_level::off;
  return std::nullopt;
}

namespace detail {

bool log_enabled(log_level level) noexcept {
  return level != log_level::off && level >= levels().threshold.load(std::memory_order_relaxed);
}

void init_log_from_environment() noexcept { (void)levels(); }

bool log_level_set_in_code() noexcept { return levels().set_in_code.load(std::memory_order_relaxed); }

bool stall_trace_enabled() noexcept {
  static const bool enabled = std::getenv("DX_TRACE_STALL") != nullptr;
  return enabled;
}

namespace {

// The causes of rate-limited lines: format strings, so a bounded set.
struct repeat_state {
  std::mutex mutex;
  std::atomic<std::int64_t> interval_ms{10'000};
  struct cause_record {
    std::chrono::steady_clock::time_point last_written{};
    std::uint64_t suppressed = 0;
  };
  std::unordered_map<std::string, cause_record> causes;  // guarded by mutex
};

repeat_state& repeats() noexcept {
  static repeat_state* s = [] {
    auto* st = new repeat_state;  // never destroyed, as levels()
    if (const char* v = std::getenv("DX_LOG_REPEAT_MS"); v && *v) {
      char* end = nullptr;
      const long long ms = std::strtoll(v, &end, 10);
      if (end && *end == '\0' && ms >= 0) st->interval_ms.store(ms, std::memory_order_relaxed);
    }
    return st;
  }();
  return *s;
}

}  // namespace

bool log_repeat_allowed(std::string_view cause, std::uint64_t& suppressed) noexcept {
  repeat_state& s = repeats();
  const auto interval = std::chrono::milliseconds(s.interval_ms.load(std::memory_order_relaxed));
  const auto now = std::chrono::steady_clock::now();
  try {
    std::lock_guard lock(s.mutex);
    auto [it, fresh] = s.causes.try_emplace(std::string(cause));
    auto& rec = it->second;
    if (!fresh && now - rec.last_written < interval) {
      ++rec.suppressed;
      return false;
    }
    rec.last_written = now;
    suppressed = std::exchange(rec.suppressed, 0);
    return true;
  } catch (...) {
    return true;  // out of memory for the record: write the line
  }
}

void set_log_repeat_interval(std::chrono::milliseconds interval) noexcept {
  repeat_state& s = repeats();
  std::lock_guard lock(s.mutex);
  s.interval_ms.store(std::max<std::int64_t>(0, interval.count()), std::memory_order_relaxed);
  s.causes.clear();  // every cause starts a new interval
}

std::chrono::milliseconds log_repeat_interval() noexcept {
  return std::chrono::milliseconds(repeats().interval_ms.load(std::memory_order_relaxed));
}

void log_line(log_level level, std::string_view text) noexcept {
  if (in_sink) {
    write_stderr(level, text);
    return;
  }
  sink_state& s = sinks();
  std::lock_guard lock(s.mutex);
  const std::shared_ptr<log_sink> sink = s.sink;  // kept alive even if the sink replaces itself
  if (!sink) {
    write_stderr(level, text);
    return;
  }
  in_sink = true;
  try {
    (*sink)(level, text);
  } catch (const std::exception& e) {
    write_stderr(log_level::warn, std::string("the log sink threw: ") + e.what());
  } catch (...) {
    write_stderr(log_level::warn, "the log sink threw");
  }
  in_sink = false;
}

}  // namespace detail

}  // namespace dx
