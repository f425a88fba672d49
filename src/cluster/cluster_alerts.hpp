// A cluster's alerts: the alert center (observe/alert_rules.hpp) and, for a cluster without a
// head, the thread that evaluates its rules at each heartbeat interval. A distributed cluster's
// head evaluates them on its own tick instead.
#pragma once

#include "observe/alert_rules.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace dx::detail {

class cluster_alerts {
 public:
  cluster_alerts(dx::metrics& registry, std::chrono::milliseconds interval) : center_(registry), interval_(interval) {}
  ~cluster_alerts() { stop(); }
  cluster_alerts(const cluster_alerts&) = delete;
  cluster_alerts& operator=(const cluster_alerts&) = delete;

  observe::alert_center& center() noexcept { return center_; }

  /// Starts evaluating the rules on a thread of its own (once; later calls do nothing).
  /// Thread-safe; does not block.
  void evaluate_on_own_thread() {
    std::lock_guard lock(mutex_);
    if (thread_.joinable() || stopping_) return;
    thread_ = std::thread([this] { run(); });
  }

  /// Stops that thread. Thread-safe; blocks until it has stopped.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    const auto epoch = std::chrono::steady_clock::now();
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      cv_.wait_for(lock, interval_);
      if (stopping_) break;
      lock.unlock();
      center_.evaluate(std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch).count());
      center_.deliver();
      lock.lock();
    }
  }

  observe::alert_center center_;
  const std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace dx::detail
