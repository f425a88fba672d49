// Parks and wakes worker threads without losing a wake-up, in the style of an event count:
// a thread announces it is about to sleep (prepare_wait), re-checks for work, then either
// cancels or sleeps (commit_wait). A producer that made work visible and then sees a waiter wakes
// it; the seq_cst order between "work visible" and "waiter announced" guarantees one of the two
// sides sees the other.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>

namespace dx::detail {

class notifier {
  enum : int { running = 0, waiting = 1, notified = 2 };

  struct alignas(64) slot {
    std::atomic<int> state{running};
    std::mutex m;
    std::condition_variable cv;
  };

 public:
  explicit notifier(std::size_t n) : slots_(new slot[n]), size_(n) {}

  /// Thread i intends to sleep. It must re-check its wake-up condition, then cancel or commit.
  void prepare_wait(std::size_t i) noexcept {
    slots_[i].state.store(waiting, std::memory_order_seq_cst);
    waiting_.fetch_add(1, std::memory_order_seq_cst);
  }

  void cancel_wait(std::size_t i) noexcept {
    // If a notifier already claimed the slot, it also already took it off the count.
    if (slots_[i].state.exchange(running, std::memory_order_seq_cst) == waiting) {
      waiting_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  /// Sleeps until notified.
  void commit_wait(std::size_t i) noexcept {
    slot& s = slots_[i];
    std::unique_lock lock(s.m);
    s.cv.wait(lock, [&] { return s.state.load(std::memory_order_acquire) != waiting; });
    s.state.store(running, std::memory_order_relaxed);
  }

  /// Sleeps until notified or until `deadline`; returns false on timeout.
  bool commit_wait_until(std::size_t i, std::chrono::steady_clock::time_point deadline) noexcept {
    slot& s = slots_[i];
    {
      std::unique_lock lock(s.m);
      if (s.cv.wait_until(lock, deadline, [&] { return s.state.load(std::memory_order_acquire) != waiting; })) {
        s.state.store(running, std::memory_order_relaxed);
        return true;
      }
    }
    cancel_wait(i);
    return false;
  }

  /// Whether any thread is preparing to sleep or sleeping. Callers order their preceding
  /// "work is visible" write before this load with a seq_cst fence.
  bool any_waiting() const noexcept { return waiting_.load(std::memory_order_seq_cst) != 0; }

  /// Wakes thread i if it is waiting. Returns whether it did.
  bool notify(std::size_t i) noexcept {
    slot& s = slots_[i];
    int expected = waiting;
    if (!s.state.compare_exchange_strong(expected, notified, std::memory_order_seq_cst)) return false;
    waiting_.fetch_sub(1, std::memory_order_seq_cst);
    // Taking the lock orders this wake-up after the sleeper's predicate check.
    { std::lock_guard lock(s.m); }
    s.cv.notify_one();
    return true;
  }

  /// Wakes one waiting thread, if there is one.
  void notify_one() noexcept {
    if (!any_waiting()) return;
    std::size_t start = next_.fetch_add(1, std::memory_order_relaxed);
    for (std::size_t k = 0; k < size_; ++k) {
      if (notify((start + k) % size_)) return;
    }
  }

  void notify_all() noexcept {
    for (std::size_t i = 0; i < size_; ++i) notify(i);
  }

 private:
  std::unique_ptr<slot[]> slots_;
  std::size_t size_;
  alignas(64) std::atomic<std::size_t> waiting_{0};
  std::atomic<std::size_t> next_{0};
};

}  // namespace dx::detail
