// Shared helpers for dx's tests.
#pragma once

#include <dx/executor.hpp>
#include <dx/future.hpp>
#include <dx/task_group.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace dx_test {

/// Every wait in a test is bounded: a hang becomes a failure with a message, not a stuck run.
inline constexpr std::chrono::seconds bound{20};

template <class Fut>
void require_ready_soon(const Fut& f) {
  REQUIRE(f.wait_for(bound) == dx::future_status::ready);
}

/// get() after a bounded wait.
template <class Fut>
decltype(auto) get_soon(Fut&& f) {
  require_ready_soon(f);
  return f.get();
}

/// An exception type of the tests' own, so that a test can tell it apart from anything dx throws.
struct test_error : std::runtime_error {
  explicit test_error(const std::string& what) : std::runtime_error(what) {}
};

inline std::exception_ptr make_test_error(const std::string& what) { return std::make_exception_ptr(test_error(what)); }

/// The message of the exception of type E that `f()` throws, or a marker when it throws nothing
/// (an exception of another type escapes and fails the test).
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "<no exception>";
}

/// Waits until `f` is ready and the executor has let go of it. ThreadSanitizer cannot see the
/// reference count of a std::exception_ptr (libstdc++ is not instrumented), so a worker that drops
/// the last reference to an exception after the test read it looks like a race; waiting for the
/// executor to be idle first orders the worker's release before the test's reads.
template <class Fut>
void settle(dx::executor& ex, const Fut& f) {
  require_ready_soon(f);
  ex.wait_idle();
}

/// Polls `pred` until it holds or the test bound has passed; returns whether it held.
template <class Pred>
bool eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + bound;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

/// Values handed to a callback on another thread (alerts, events), kept for the test to read.
template <class T>
class collector {
 public:
  /// A callback that keeps each value it is given; it refers to this collector.
  auto keep() {
    return [this](const T& v) {
      std::lock_guard lock(mutex_);
      items_.push_back(v);
    };
  }
  /// What was kept so far, in order.
  std::vector<T> items() const {
    std::lock_guard lock(mutex_);
    return items_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<T> items_;
};

/// Waits, bounded, until `flag` is set; returns whether it was.
inline bool wait_flag(const std::atomic<bool>& flag) {
  return eventually([&] { return flag.load(); });
}

/// Blocks a thread for real (a worker waiting here does not run other tasks), at most for the
/// test bound, so a broken test fails instead of hanging.
class gate {
 public:
  void open() {
    std::lock_guard lock(m_);
    open_ = true;
    cv_.notify_all();
  }
  bool wait() {
    std::unique_lock lock(m_);
    return cv_.wait_for(lock, bound, [&] { return open_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

/// fib(n) computed sequentially: the reference for the parallel versions below.
inline long fib_seq(int n) { return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2); }

/// fib(n) with a submitted task per call whose future is waited on inside the task (nested waits).
inline long fib_nested(dx::executor& ex, int n) {
  if (n < 2) return n;
  auto a = ex.submit(fib_nested, std::ref(ex), n - 1);
  long b = fib_nested(ex, n - 2);
  return a.get() + b;
}

/// fib(n) by fork-join with a task_group per call.
inline long fib_group(dx::executor& ex, int n) {
  if (n < 2) return n;
  long x = 0, y = 0;
  dx::task_group tg{ex};
  tg.run([&] { x = fib_group(ex, n - 1); });
  tg.run([&] { y = fib_group(ex, n - 2); });
  tg.wait();
  return x + y;
}

}  // namespace dx_test
