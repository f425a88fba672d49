// The executor's runtime: worker threads, their deques, the shared queues, parking and the
// pending-work count. Private to dx.
#pragma once

#include <dx/detail/runtime.hpp>

#include "notifier.hpp"
#include "work_stealing_deque.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace dx::detail {

class executor_impl;

/// One worker thread's state. Counters are written by the owner only (plain load + store, no
/// read-modify-write) and read by wait_idle().
struct alignas(64) worker {
  executor_impl* owner = nullptr;
  std::size_t id = 0;
  work_stealing_deque<task_base*> deque;
  task_base* next = nullptr;  // a successor this thread runs next, skipping the queues
  bool completing = false;    // inside publish_from_task: the first ready successor goes to next
  std::size_t last_victim = 0;
  std::uint64_t rng = 0;
  alignas(64) std::atomic<std::uint64_t> spawned{0};
  std::atomic<std::uint64_t> completed{0};
  std::thread thread;

  void count_spawn() noexcept { spawned.store(spawned.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  void count_completion() noexcept {
    // release: wait_idle() that reads this count also sees the spawns that led to the task.
    completed.store(completed.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
};

/// A deque for one thread that is not a worker but submits to the executor (like the main
/// thread): the thread pushes without a lock and workers steal from it, as from each other.
/// A slot belongs to one thread at a time; a thread that exits gives it back for reuse.
struct alignas(64) external_slot {
  work_stealing_deque<task_base*> deque;
  std::atomic<bool> claimed{false};
};

/// The worker the calling thread is, of any executor; nullptr on other threads.
worker* this_worker() noexcept;

/// The index of the calling executor thread within its executor (0 on other threads).
inline std::uint32_t current_thread_index() noexcept {
  const worker* w = this_worker();
  return w ? static_cast<std::uint32_t>(w->id) : 0;
}

/// Hands blocks this thread freed for other threads back to them (see small_alloc.cpp); called
/// before a worker sleeps so its partial batch is not held up.
void flush_remote_frees() noexcept;

/// Takes an executor that has shut down and keeps it, as a tombstone, for the life of the process.
void retire_executor(executor_impl* ex) noexcept;

class executor_impl {
 public:
  explicit executor_impl(std::size_t threads);
  ~executor_impl();

  std::size_t size() const noexcept { return workers_.size(); }
  /// The calling thread's worker if it belongs to this executor.
  worker* own_worker() const noexcept {
    worker* w = this_worker();
    return w && w->owner == this ? w : nullptr;
  }

  bool announce() noexcept;
  void enqueue(task_base* t) noexcept;
  bool try_enqueue(task_base* t) noexcept;
  /// enqueue() for a successor the calling worker should run next, skipping the queues.
  void enqueue_next(task_base* t) noexcept {
    worker* w = own_worker();
    if (!w) {
      enqueue(t);
      return;
    }
    bool was_completing = std::exchange(w->completing, true);
    enqueue(t);
    w->completing = was_completing;
  }
  /// Counts as finished a unit of work that announce() counted but that never ran as a task.
  void retire() noexcept { external_cancelled_.fetch_add(1, std::memory_order_release); }

  void wait_idle();
  void shutdown();
  /// After shutdown(): frees the threads' state, leaving a tombstone that refuses all work.
  void release_workers() noexcept;

  /// Runs tasks on worker `w` until `done` is set; sleeps when there is nothing to run.
  void help_until(worker& w, const std::atomic<bool>& done) noexcept;
  /// Runs tasks on worker `w` until `ready()` or `deadline`; returns ready().
  template <class Ready>
  bool help_until(worker& w, Ready ready, std::chrono::steady_clock::time_point deadline) noexcept;
  /// Wakes worker `id` if it sleeps (used when what it waits for is done).
  void wake(std::size_t id) noexcept { notifier_.notify(id); }

  /// Runs `t` on `w` and counts it.
  void run_task(worker& w, task_base* t) noexcept {
    t->run(t);
    w.count_completion();
  }

 private:
  void worker_loop(worker& w) noexcept;
  task_base* find_task(worker& w) noexcept;
  task_base* wait_for_task(worker& w) noexcept;
  task_base* steal(worker& w) noexcept;
  task_base* take_inbox(worker& w) noexcept;
  task_base* take_priority(int level) noexcept;
  void enqueue_impl(task_base* t, bool may_run_next) noexcept;
  void push(task_base* t) noexcept;
  void push_local(worker& w, task_base* t) noexcept;
  void push_to(work_stealing_deque<task_base*>& d, task_base* t) noexcept;
  task_base* steal_from(work_stealing_deque<task_base*>& d) noexcept;
  void push_inbox(task_base* t) noexcept;
  void leave_helping(worker& w, bool slept) noexcept;
  bool work_visible() const noexcept;
  void push_priority(task_base* t) noexcept;
  external_slot* slot_for_this_thread() noexcept;
  task_base* steal_external() noexcept;
  void wake_one_if_sleeping() noexcept {
    // seq_cst fence: the task just made visible is ordered before the check for sleepers (see
    // notifier.hpp).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (notifier_.any_waiting()) notifier_.notify_one();
  }
  bool is_idle() const noexcept;
  void notify_idle_waiters() noexcept;

  std::vector<std::unique_ptr<worker>> workers_;
  notifier notifier_;

  // Slots of submitting threads that are not workers. Slots are created on demand up to the
  // limit and live as long as the executor's tombstone (threads keep pointers to them).
  static constexpr std::size_t max_external_slots = 16;
  std::unique_ptr<external_slot> external_slots_[max_external_slots];
  std::atomic<std::size_t> num_external_slots_{0};
  std::mutex external_slots_mutex_;

  // Normal-priority tasks from threads that are not workers when every slot is taken; workers
  // take them in batches.
  alignas(64) std::mutex inbox_mutex_;
  std::deque<task_base*> inbox_;
  std::atomic<std::size_t> inbox_size_{0};

  // High (0) and low (1) priority tasks, shared by all workers; rare, so a lock is fine.
  struct alignas(64) priority_queue {
    std::mutex mutex;
    std::deque<task_base*> tasks;
    std::atomic<std::size_t> size{0};
  };
  priority_queue priority_[2];

  // Pending-work accounting for tasks counted by threads that are not workers.
  alignas(64) std::atomic<std::uint64_t> external_spawned_{0};
  std::atomic<std::uint64_t> external_cancelled_{0};
  std::atomic<bool> accepting_{true};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> joined_{false};

  std::mutex idle_mutex_;
  std::condition_variable idle_cv_;
  std::atomic<int> idle_waiters_{0};
  std::mutex shutdown_mutex_;
};

template <class Ready>
bool executor_impl::help_until(worker& w, Ready ready, std::chrono::steady_clock::time_point deadline) noexcept {
  // Polls: this path registers nothing on what it waits for, so it can return at the deadline
  // without anything left pointing into its stack.
  constexpr auto poll = std::chrono::microseconds(500);
  bool slept = false;
  bool result = false;
  for (;;) {
    if (ready()) {
      result = true;
      break;
    }
    if (task_base* t = find_task(w)) {
      run_task(w, t);
      continue;
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      result = ready();
      break;
    }
    notifier_.prepare_wait(w.id);
    if (ready()) {
      notifier_.cancel_wait(w.id);
      result = true;
      break;
    }
    if (task_base* t = find_task(w)) {
      notifier_.cancel_wait(w.id);
      run_task(w, t);
      continue;
    }
    slept |= notifier_.commit_wait_until(w.id, std::min(deadline, now + poll));
  }
  leave_helping(w, slept);
  return result;
}

}  // namespace dx::detail
