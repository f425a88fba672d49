// Watching processes a test started: whether one has ended, and bounded waits for a condition.
#pragma once

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

namespace dx_support {

/// True when `pid` no longer runs: no such process, or a zombie.
inline bool process_gone(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const auto paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return true;
  const char state = line[paren + 2];
  return state == 'Z' || state == 'X';
}

/// Polls `pred` every few milliseconds until it holds or `limit` passes; returns its last answer.
inline bool wait_until(std::chrono::milliseconds limit, const std::function<bool()>& pred) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

}  // namespace dx_support
