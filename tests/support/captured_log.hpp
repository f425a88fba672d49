// dx's log lines, captured while the object lives (through dx::set_log_sink), for tests that
// check what was logged and why.
//
//   dx_support::captured_log log;
//   ...
//   CHECK_FALSE(log.wait_for({"refused a TLS connection", "certificate has expired"}).empty());
#pragma once

#include "common/log.hpp"
#include "processes.hpp"

#include <dx/log.hpp>

#include <chrono>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace dx_support {

class captured_log {
 public:
  /// Every line is captured: the rate limit of repeated lines (common/log.hpp) is lifted while
  /// the object lives (a test may set it again after constructing it).
  captured_log() : interval_before_(dx::detail::log_repeat_interval()) {
    dx::detail::set_log_repeat_interval(std::chrono::milliseconds(0));
    dx::set_log_sink([this](dx::log_level, std::string_view line) {
      std::lock_guard lk(m_);
      lines_.emplace_back(line);
    });
  }
  ~captured_log() {
    dx::set_log_sink(nullptr);
    dx::detail::set_log_repeat_interval(interval_before_);
  }
  captured_log(const captured_log&) = delete;
  captured_log& operator=(const captured_log&) = delete;

  /// Waits (at most `limit`) for a line containing every one of `parts`; returns it, or "" if
  /// none came.
  std::string wait_for(std::initializer_list<std::string> parts,
                       std::chrono::milliseconds limit = std::chrono::milliseconds(10'000)) {
    std::string found;
    wait_until(limit, [&] {
      std::lock_guard lk(m_);
      for (const auto& l : lines_) {
        bool all = true;
        for (const auto& p : parts) all = all && l.find(p) != std::string::npos;
        if (all) {
          found = l;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  /// How many lines captured so far contain `part`.
  std::size_t count_containing(std::string_view part) {
    std::lock_guard lk(m_);
    std::size_t n = 0;
    for (const auto& l : lines_) n += l.find(part) != std::string::npos ? 1 : 0;
    return n;
  }

 private:
  std::chrono::milliseconds interval_before_;
  std::mutex m_;
  std::vector<std::string> lines_;
};

}  // namespace dx_support
