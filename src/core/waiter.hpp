// A continuation that a blocked thread waits on. On a worker thread the wait runs other tasks;
// on any other thread it sleeps. Lives on the waiting thread's stack: firing touches it last
// (under its mutex, or through done_ before waking the worker by id), so the waiter may return
// and vanish as soon as it sees done.
#pragma once

#include <dx/detail/shared_state.hpp>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace dx::detail {

class executor_impl;

class waiter : public continuation {
 public:
  waiter() noexcept;
  waiter(const waiter&) = delete;
  waiter& operator=(const waiter&) = delete;

  /// Returns once the waiter has fired.
  void block() noexcept;

 private:
  static void on_fire(continuation* c) noexcept;

  std::atomic<bool> done_{false};
  executor_impl* ex_ = nullptr;
  std::size_t worker_id_ = 0;
  std::mutex m_;
  std::condition_variable cv_;
};

}  // namespace dx::detail
