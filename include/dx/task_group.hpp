// dx/task_group.hpp — fork-join: run tasks, then wait for all of them.
//
//   long fib(dx::executor& ex, int n) {
//     if (n < 2) return n;
//     long x, y;
//     dx::task_group tg{ex};
//     tg.run([&] { x = fib(ex, n - 1); });
//     tg.run([&] { y = fib(ex, n - 2); });
//     tg.wait();            // on a worker thread: runs other tasks meanwhile
//     return x + y;
//   }
#pragma once

#include <dx/detail/runtime.hpp>
#include <dx/detail/shared_state.hpp>
#include <dx/error.hpp>
#include <dx/executor.hpp>
#include <dx/export.hpp>

#include <atomic>
#include <cstddef>
#include <exception>
#include <type_traits>
#include <utility>

namespace dx {

/// How a task_group's wait() ended.
enum class task_group_status { complete, cancelled };

/// A set of tasks to wait for together, like oneTBB's task_group.
///
/// run() is thread-safe (tasks of the group may add tasks to it); wait() is called by one thread
/// at a time. The group may be reused after wait() returns. The destructor waits for tasks still
/// running, so captured references stay valid.
class DX_API task_group {
 public:
  /// An empty group whose tasks run on `ex`. Does not block.
  explicit task_group(executor& ex) noexcept : ex_(ex.impl()) {}
  /// Blocks until the group's tasks still running have finished (their exceptions are dropped).
  ~task_group();
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;

  /// Runs `f()` as a task of this group. Throws dx::executor_shutdown when called from another
  /// thread after the executor's shutdown began. Thread-safe (tasks of the group may call it);
  /// does not block.
  template <class F>
  void run(F&& f) {
    auto* t = new group_task<std::decay_t<F>>(this, std::forward<F>(f));
    pending_.fetch_add(one_task, std::memory_order_relaxed);
    if (!detail::try_enqueue(ex_, t)) {
      delete t;
      finish_one();
      detail::throw_error(detail::error_kind::executor_shutdown, "dx::task_group::run() after shutdown began");
    }
  }

  /// Blocks until every task run so far has finished; on a worker thread it runs other tasks
  /// meanwhile. Rethrows the first exception a task threw (the others are dropped). Returns
  /// cancelled if cancel() was called since the last wait. One thread at a time; blocks.
  task_group_status wait();

  /// Tasks of the group that have not started yet are skipped. Thread-safe; does not block.
  void cancel() noexcept { cancelled_.store(true, std::memory_order_relaxed); }
  /// Whether cancel() was called since the last wait. Thread-safe; does not block.
  bool is_cancelled() const noexcept { return cancelled_.load(std::memory_order_relaxed); }

 private:
  template <class F>
  class group_task final : public detail::task_base, public detail::pooled {
   public:
    template <class G>
    group_task(task_group* g, G&& f) : group_(g), f_(std::forward<G>(f)) {
      run = &run_group_task;
    }

   private:
    static void run_group_task(detail::task_base* t) noexcept {
      auto* self = static_cast<group_task*>(t);
      task_group* g = self->group_;
      if (!g->is_cancelled()) {
        try {
          self->f_();
        } catch (...) {
          g->record_error();
        }
      }
      delete self;
      g->finish_one();
    }
    task_group* group_;
    F f_;
  };

  void record_error() noexcept;

  // pending_ holds the number of unfinished tasks times two, plus the waiter_installed bit. The
  // last task's compare-and-swap is its last access to the group unless wait() is blocked on
  // waiter_, in which case the group cannot be gone until that waiter has fired. So wait() (and
  // the destructor) may return, and the group vanish, as soon as the count reaches zero.
  static constexpr std::size_t waiter_installed = 1;
  static constexpr std::size_t one_task = 2;

  void finish_one() noexcept {
    // acquire: a value with waiter_installed also makes waiter_ visible.
    std::size_t v = pending_.load(std::memory_order_acquire);
    for (;;) {
      if (v == (one_task | waiter_installed)) {
        detail::continuation* w = waiter_;  // read while the group is certainly alive
        // acq_rel: publishes this task's writes to wait(); takes the count and the bit to zero at once.
        if (pending_.compare_exchange_weak(v, 0, std::memory_order_acq_rel, std::memory_order_acquire)) {
          w->fire(w);
          return;
        }
      } else if (pending_.compare_exchange_weak(v, v - one_task, std::memory_order_acq_rel,
                                                std::memory_order_acquire)) {
        return;
      }
    }
  }

  detail::executor_impl* ex_;
  std::atomic<std::size_t> pending_{0};
  detail::continuation* waiter_ = nullptr;  // set by wait() before it sets waiter_installed
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;  // written by the task that set failed_, read after wait()
};

}  // namespace dx
