// dx/detail/runtime.hpp — the non-template core that dx's header templates forward to.
// Not for users: names here may change in any release.
#pragma once

#include <dx/export.hpp>

#include <cstddef>
#include <cstdint>
#include <new>

namespace dx {

/// Scheduling priority of a task. When tasks of several priorities are queued on an executor,
/// every high one starts before any normal one, and every normal one before any low one.
enum class priority : std::uint8_t { high = 0, normal = 1, low = 2 };

namespace detail {

class executor_impl;

/// Memory for task-sized objects (tasks, future states, continuations) from a per-thread pool.
/// Blocks freed by another thread go back to the thread that allocated them, in batches, so a
/// producer thread feeding consumer threads reuses its own memory. Thread-safe.
DX_API void* allocate_small(std::size_t size);
DX_API void deallocate_small(void* p, std::size_t size) noexcept;

/// Base for the classes dx allocates per task: routes new/delete to the task pool.
struct pooled {
  static void* operator new(std::size_t size) { return allocate_small(size); }
  static void operator delete(void* p, std::size_t size) noexcept { deallocate_small(p, size); }
  // Over-aligned types bypass the pool.
  static void* operator new(std::size_t size, std::align_val_t al) { return ::operator new(size, al); }
  static void operator delete(void* p, std::size_t size, std::align_val_t al) noexcept {
    ::operator delete(p, size, al);
  }
};

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

/// Reports the exception being handled (call it inside a catch block) as an unhandled task
/// exception: a posted task has no future to carry it. Prints it to stderr.
DX_API void report_unhandled_exception() noexcept;

}  // namespace detail
}  // namespace dx
