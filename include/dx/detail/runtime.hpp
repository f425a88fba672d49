// dx/detail/runtime.hpp — the non-template core that dx's header templates forward to.
// Not for users: names here may change in any release.
#pragma once

#include <dx/export.hpp>

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>

namespace dx {

/// Scheduling priority of a task. When tasks of several priorities are queued on an executor,
/// every high one starts before any normal one, and every normal one before any low one.
enum class priority : std::uint8_t { high = 0, normal = 1, low = 2 };

namespace detail {

class executor_impl;
class state_base;

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

/// Makes `s` the state of the task the calling thread runs (what dx::this_task asks), returning
/// the one it replaces. Thread-safe (per thread); does not block.
DX_API state_base* exchange_current_task(state_base* s) noexcept;
/// The state of the task the calling thread runs, or nullptr outside a task. Does not block.
DX_API state_base* current_task() noexcept;

/// Sets the calling thread's current task for a scope.
class current_task_scope {
 public:
  explicit current_task_scope(state_base* s) noexcept : previous_(exchange_current_task(s)) {}
  ~current_task_scope() { exchange_current_task(previous_); }
  current_task_scope(const current_task_scope&) = delete;
  current_task_scope& operator=(const current_task_scope&) = delete;

 private:
  state_base* previous_;
};

/// Settles `s` with dx::timeout ("<name> timed out after <limit>") and asks its task to stop,
/// unless it settled within `limit_ns` nanoseconds from now. Holds a reference on `s` until then.
/// One process-wide timer thread, started on first use, keeps the deadlines. Thread-safe; does
/// not block.
DX_API void stop_after(state_base* s, std::int64_t limit_ns, const char* name);

/// Enqueues `t` (announced on `ex` by the caller) on `ex` after `pause_ns` nanoseconds, from the
/// timer thread of stop_after; `s` is t's state, whose reference the caller gave to t. For a
/// retry's pause. Thread-safe; does not block.
DX_API void run_after(executor_impl* ex, task_base* t, state_base* s, std::int64_t pause_ns);

/// "250 ms", "1.5 s": a limit as a timeout message names it. Does not block.
DX_API std::string describe_limit(std::int64_t ns);

/// Counts a task that completed after a stop had settled its future (its result is discarded).
/// Thread-safe (a relaxed atomic counter); does not block.
DX_API void count_late_completion() noexcept;
/// Late completions of local tasks in this process so far. Thread-safe; does not block.
DX_API std::uint64_t late_completions() noexcept;

}  // namespace detail
}  // namespace dx
