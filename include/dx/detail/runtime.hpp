// dx/detail/runtime.hpp — the non-template core that dx's header templates forward to.
// Not for users: names here may change in any release.
#pragma once

#include <dx/export.hpp>

#include <cstdint>

namespace dx {

/// Scheduling priority of a task. When tasks of several priorities are queued on an executor,
/// every high one starts before any normal one, and every normal one before any low one.
enum class priority : std::uint8_t { high = 0, normal = 1, low = 2 };

namespace detail {

class executor_impl;

/// A unit of work an executor runs: one intrusive header, no separate allocation. The object that
/// embeds it (a submitted call, a continuation, a graph node, a coroutine resumption) supplies
/// `run`, which executes the work and releases whatever the task owns.
struct task_base {
  using run_fn = void (*)(task_base*) noexcept;
  run_fn run = nullptr;
  priority prio = priority::normal;
  /// Set when the task was already counted as pending (announce()) while it waited for
  /// dependencies, so enqueueing it does not count it twice.
  bool announced = false;
};

/// Counts one pending task on `ex` ahead of enqueueing it (for a task that waits on dependencies
/// first), so wait_idle() and shutdown wait for it. Returns false, counting nothing, when `ex` is
/// shutting down and the caller is not one of its threads.
DX_API bool announce(executor_impl* ex) noexcept;

/// Makes `t` runnable on `ex`. From one of ex's threads it goes to that thread's deque; from any
/// other thread to the shared submission queue. Never blocks on other tasks; thread-safe.
DX_API void enqueue(executor_impl* ex, task_base* t) noexcept;

/// Like enqueue, but returns false (and does nothing) if `ex` is shutting down and the caller is
/// not one of ex's threads.
DX_API bool try_enqueue(executor_impl* ex, task_base* t) noexcept;

/// The executor whose worker thread is calling, or nullptr on any other thread.
DX_API executor_impl* current_executor() noexcept;

/// Reports the exception being handled (call it inside a catch block) as an unhandled task
/// exception: a posted task has no future to carry it. Prints it to stderr.
DX_API void report_unhandled_exception() noexcept;

}  // namespace detail
}  // namespace dx
