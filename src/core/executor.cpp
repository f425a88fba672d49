#include <dx/executor.hpp>
#include <dx/task_graph.hpp>

#include "executor_impl.hpp"
#include "task_graph_impl.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <exception>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DX_CPU_RELAX() _mm_pause()
#else
#define DX_CPU_RELAX() std::this_thread::yield()
#endif

namespace dx::detail {

namespace {
thread_local worker* tls_worker = nullptr;

// How long an idle worker keeps looking for work before it sleeps. Waking a sleeping thread on
// the other core costs tens of microseconds here, so a short spin pays for itself when work
// arrives in bursts, while an idle executor still goes to sleep at once in human terms.
constexpr int spin_rounds = 64;
constexpr int yield_rounds = 16;
// Tasks a worker moves at once from the shared inbox to its own deque.
constexpr std::size_t inbox_batch = 32;
}  // namespace

worker* this_worker() noexcept { return tls_worker; }

executor_impl::executor_impl(std::size_t threads) : workers_(), notifier_(threads) {
  workers_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    auto w = std::make_unique<worker>();
    w->owner = this;
    w->id = i;
    w->last_victim = (i + 1) % threads;
    w->rng = 0x9E3779B97F4A7C15ull * (i + 1);
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) {
    worker* self = w.get();
    self->thread = std::thread([this, self] { worker_loop(*self); });
  }
}

executor_impl::~executor_impl() { shutdown(); }

bool executor_impl::announce() noexcept {
  if (worker* w = own_worker()) {
    w->count_spawn();
    return true;
  }
  // seq_cst pairs with shutdown(): either shutdown's idle check counts this task, or this sees
  // accepting_ false and cancels it.
  external_spawned_.fetch_add(1, std::memory_order_seq_cst);
  if (!accepting_.load(std::memory_order_seq_cst)) {
    external_cancelled_.fetch_add(1, std::memory_order_release);
    return false;
  }
  return true;
}

void executor_impl::enqueue(task_base* t) noexcept { enqueue_impl(t, true); }

void executor_impl::enqueue_impl(task_base* t, bool may_run_next) noexcept {
  worker* w = own_worker();
  if (t->announced) {
    t->announced = false;
  } else if (w) {
    w->count_spawn();
  } else {
    external_spawned_.fetch_add(1, std::memory_order_seq_cst);
  }
  if (t->prio != priority::normal) {
    push_priority(t);
  } else if (w) {
    if (may_run_next && w->completing && w->next == nullptr) {
      w->next = t;  // this thread runs it as soon as the current task returns
      return;
    }
    push_local(*w, t);
  } else {
    push(t);
  }
}

bool executor_impl::try_enqueue(task_base* t) noexcept {
  if (!t->announced && !own_worker()) {
    if (!announce()) return false;
    t->announced = true;
  }
  // A new submission never takes the run-next shortcut: the code that submitted it may go on
  // running for long, and the task must stay visible to thieves meanwhile.
  enqueue_impl(t, false);
  return true;
}

void executor_impl::push_local(worker& w, task_base* t) noexcept { push_to(w.deque, t); }

void executor_impl::push_to(work_stealing_deque<task_base*>& d, task_base* t) noexcept {
  try {
    d.push(t);
  } catch (...) {  // the deque could not grow: the shared inbox takes it
    push_inbox(t);
    return;
  }
  // Every push checks for sleepers. Skipping the check when the deque seemed non-empty is not
  // safe: a pusher descheduled between reading top and publishing the task can hold an
  // arbitrarily stale view while the last thief empties the deque and goes to sleep.
  wake_one_if_sleeping();
}

namespace {

/// The slots the calling thread holds, by executor. Given back when the thread exits. Executors
/// are never freed (see retire_executor), so the pointers stay valid.
struct slot_bindings {
  static constexpr int capacity = 8;
  executor_impl* executors[capacity] = {};
  external_slot* slots[capacity] = {};
  int size = 0;

  ~slot_bindings();
};

thread_local slot_bindings tls_slots;
// Set once tls_slots is destroyed at thread exit: later submissions from this thread use the
// inbox. Separate and trivially destructible, as stores to members at the end of a destructor
// may be dropped by the compiler.
thread_local bool tls_slots_dead = false;

slot_bindings::~slot_bindings() {
  for (int i = 0; i < size; ++i) slots[i]->claimed.store(false, std::memory_order_release);
  tls_slots_dead = true;
}

}  // namespace

external_slot* executor_impl::slot_for_this_thread() noexcept {
  if (tls_slots_dead) return nullptr;
  slot_bindings& b = tls_slots;
  for (int i = 0; i < b.size; ++i) {
    if (b.executors[i] == this) return b.slots[i];
  }
  if (b.size == slot_bindings::capacity) return nullptr;
  external_slot* slot = nullptr;
  // acquire: a slot given back by an exited thread comes with that thread's last pushes.
  const std::size_t n = num_external_slots_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n && !slot; ++i) {
    bool free = false;
    if (external_slots_[i]->claimed.compare_exchange_strong(free, true, std::memory_order_acq_rel)) {
      slot = external_slots_[i].get();
    }
  }
  if (!slot) {
    std::lock_guard lock(external_slots_mutex_);
    const std::size_t m = num_external_slots_.load(std::memory_order_relaxed);
    if (m == max_external_slots) return nullptr;
    try {
      external_slots_[m] = std::make_unique<external_slot>();
    } catch (...) {
      return nullptr;  // fall back to the inbox
    }
    slot = external_slots_[m].get();
    slot->claimed.store(true, std::memory_order_relaxed);
    num_external_slots_.store(m + 1, std::memory_order_release);  // publishes the slot to thieves
  }
  b.executors[b.size] = this;
  b.slots[b.size] = slot;
  ++b.size;
  return slot;
}

void executor_impl::push(task_base* t) noexcept {
  if (external_slot* slot = slot_for_this_thread()) {
    push_to(slot->deque, t);
  } else {
    push_inbox(t);
  }
}

void executor_impl::push_inbox(task_base* t) noexcept {
  {
    std::lock_guard lock(inbox_mutex_);
    inbox_.push_back(t);
    inbox_size_.store(inbox_.size(), std::memory_order_relaxed);
  }
  wake_one_if_sleeping();
}

task_base* executor_impl::steal_from(work_stealing_deque<task_base*>& d) noexcept {
  task_base* t = d.steal();
  // More left: pass the wake-up on, so another sleeping thief helps.
  if (t && !d.empty()) wake_one_if_sleeping();
  return t;
}

task_base* executor_impl::steal_external() noexcept {
  const std::size_t n = num_external_slots_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n; ++i) {
    if (task_base* t = steal_from(external_slots_[i]->deque)) return t;
  }
  return nullptr;
}

void executor_impl::push_priority(task_base* t) noexcept {
  priority_queue& q = priority_[t->prio == priority::high ? 0 : 1];
  {
    std::lock_guard lock(q.mutex);
    q.tasks.push_back(t);
    q.size.store(q.tasks.size(), std::memory_order_relaxed);
  }
  wake_one_if_sleeping();
}

task_base* executor_impl::take_priority(int level) noexcept {
  priority_queue& q = priority_[level];
  std::lock_guard lock(q.mutex);
  if (q.tasks.empty()) return nullptr;
  task_base* t = q.tasks.front();
  q.tasks.pop_front();
  q.size.store(q.tasks.size(), std::memory_order_relaxed);
  return t;
}

task_base* executor_impl::take_inbox(worker& w) noexcept {
  task_base* first = nullptr;
  std::size_t moved = 0;
  {
    std::lock_guard lock(inbox_mutex_);
    if (inbox_.empty()) return nullptr;
    first = inbox_.front();
    inbox_.pop_front();
    // Take a share, not all: other workers find the rest in the inbox or steal them.
    std::size_t share = std::min(inbox_batch, inbox_.size() / workers_.size());
    try {
      for (; moved < share; ++moved) {
        w.deque.push(inbox_.front());
        inbox_.pop_front();
      }
    } catch (...) {  // the deque could not grow: the rest stays in the inbox
    }
    inbox_size_.store(inbox_.size(), std::memory_order_relaxed);
  }
  if (moved > 0) wake_one_if_sleeping();
  return first;
}

task_base* executor_impl::steal(worker& w) noexcept {
  const std::size_t n = workers_.size();
  if (n == 1) return nullptr;
  if (task_base* t = steal_from(workers_[w.last_victim]->deque)) return t;
  // xorshift64: a random start spreads thieves over victims.
  w.rng ^= w.rng << 13;
  w.rng ^= w.rng >> 7;
  w.rng ^= w.rng << 17;
  std::size_t start = w.rng % n;
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t v = (start + k) % n;
    if (v == w.id) continue;
    if (task_base* t = steal_from(workers_[v]->deque)) {
      w.last_victim = v;
      return t;
    }
  }
  return nullptr;
}

task_base* executor_impl::find_task(worker& w) noexcept {
  if (priority_[0].size.load(std::memory_order_relaxed) != 0) {
    if (task_base* t = take_priority(0)) return t;
  }
  if (w.next) return std::exchange(w.next, nullptr);
  if (task_base* t = w.deque.pop()) return t;
  if (task_base* t = steal_external()) return t;
  if (inbox_size_.load(std::memory_order_relaxed) != 0) {
    if (task_base* t = take_inbox(w)) return t;
  }
  if (task_base* t = steal(w)) return t;
  if (priority_[1].size.load(std::memory_order_relaxed) != 0) {
    if (task_base* t = take_priority(1)) return t;
  }
  return nullptr;
}

task_base* executor_impl::wait_for_task(worker& w) noexcept {
  notify_idle_waiters();
  flush_remote_frees();
  for (;;) {
    for (int i = 0; i < spin_rounds + yield_rounds; ++i) {
      if (task_base* t = find_task(w)) return t;
      if (i < spin_rounds) {
        for (int k = 0; k < 16; ++k) DX_CPU_RELAX();
      } else {
        std::this_thread::yield();
      }
    }
    notifier_.prepare_wait(w.id);
    if (task_base* t = find_task(w)) {
      notifier_.cancel_wait(w.id);
      return t;
    }
    if (stopping_.load(std::memory_order_seq_cst)) {
      notifier_.cancel_wait(w.id);
      return nullptr;
    }
    notifier_.commit_wait(w.id);
  }
}

void executor_impl::worker_loop(worker& w) noexcept {
  tls_worker = &w;
  for (;;) {
    task_base* t = find_task(w);
    if (!t) t = wait_for_task(w);
    if (!t) break;
    run_task(w, t);
  }
  tls_worker = nullptr;
}

void executor_impl::help_until(worker& w, const std::atomic<bool>& done) noexcept {
  bool slept = false;
  for (;;) {
    if (done.load(std::memory_order_acquire)) break;
    if (task_base* t = find_task(w)) {
      run_task(w, t);
      continue;
    }
    bool found = false;
    bool finished = false;
    for (int i = 0; i < spin_rounds && !found; ++i) {
      if (done.load(std::memory_order_acquire)) {
        finished = true;
        break;
      }
      if (task_base* t = find_task(w)) {
        run_task(w, t);
        found = true;
      } else {
        for (int k = 0; k < 16; ++k) DX_CPU_RELAX();
      }
    }
    if (finished) break;
    if (found) continue;
    notifier_.prepare_wait(w.id);
    if (done.load(std::memory_order_seq_cst)) {
      notifier_.cancel_wait(w.id);
      break;
    }
    if (task_base* t = find_task(w)) {
      notifier_.cancel_wait(w.id);
      run_task(w, t);
      continue;
    }
    notifier_.commit_wait(w.id);
    slept = true;
  }
  leave_helping(w, slept);
}

void executor_impl::leave_helping(worker& w, bool slept) noexcept {
  // A successor parked for this thread must not wait for the user code that runs next.
  if (task_base* t = std::exchange(w.next, nullptr)) {
    push_local(w, t);
    return;
  }
  // The wake-up that ended the sleep may have been meant for new work rather than for the wait:
  // pass it on so the work does not wait for this thread's task to finish.
  if (slept && work_visible()) wake_one_if_sleeping();
}

bool executor_impl::work_visible() const noexcept {
  if (priority_[0].size.load(std::memory_order_relaxed) != 0) return true;
  if (priority_[1].size.load(std::memory_order_relaxed) != 0) return true;
  if (inbox_size_.load(std::memory_order_relaxed) != 0) return true;
  for (const auto& other : workers_) {
    if (!other->deque.empty()) return true;
  }
  const std::size_t n = num_external_slots_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n; ++i) {
    if (!external_slots_[i]->deque.empty()) return true;
  }
  return false;
}

bool executor_impl::is_idle() const noexcept {
  // Completions first, then spawns: every count is monotonic and a task is counted as spawned
  // before it can complete, so equal sums mean that at an instant between the two reads nothing
  // was pending.
  std::uint64_t done = external_cancelled_.load(std::memory_order_acquire);
  for (const auto& w : workers_) done += w->completed.load(std::memory_order_acquire);
  std::uint64_t spawned = external_spawned_.load(std::memory_order_acquire);
  for (const auto& w : workers_) spawned += w->spawned.load(std::memory_order_acquire);
  return done == spawned;
}

void executor_impl::notify_idle_waiters() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (idle_waiters_.load(std::memory_order_seq_cst) == 0) return;
  { std::lock_guard lock(idle_mutex_); }
  idle_cv_.notify_all();
}

void executor_impl::wait_idle() {
  if (joined_.load(std::memory_order_acquire)) return;
  if (own_worker()) {
    throw_error(error_kind::generic,
                "dx::executor::wait_idle() called from one of its own tasks would wait for itself");
  }
  std::unique_lock lock(idle_mutex_);
  idle_waiters_.fetch_add(1, std::memory_order_seq_cst);
  // The timeout is a safety net only; workers notify when they run out of work.
  while (!is_idle()) idle_cv_.wait_for(lock, std::chrono::milliseconds(10));
  idle_waiters_.fetch_sub(1, std::memory_order_relaxed);
}

void executor_impl::shutdown() {
  if (own_worker()) {
    throw_error(error_kind::generic, "dx::executor::shutdown() called from one of its own tasks would wait for itself");
  }
  std::lock_guard guard(shutdown_mutex_);
  if (joined_.load(std::memory_order_acquire)) return;
  accepting_.store(false, std::memory_order_seq_cst);
  wait_idle();
  stopping_.store(true, std::memory_order_seq_cst);
  notifier_.notify_all();
  for (auto& w : workers_) w->thread.join();
  joined_.store(true, std::memory_order_release);
}

void executor_impl::release_workers() noexcept {
  std::lock_guard guard(shutdown_mutex_);
  workers_.clear();
}

void retire_executor(executor_impl* ex) noexcept {
  // Futures may outlive their executor and still point at it (then() asks it to take the
  // continuation). So the executor's memory is never reused: its threads and deques are freed,
  // and a small tombstone that refuses all work stays, reachable from here.
  static std::mutex mutex;
  static auto* graveyard = new std::vector<std::unique_ptr<executor_impl>>();
  ex->release_workers();
  std::lock_guard lock(mutex);
  graveyard->emplace_back(ex);
}

bool announce(executor_impl* ex) noexcept { return ex->announce(); }
void enqueue(executor_impl* ex, task_base* t) noexcept { ex->enqueue(t); }
bool try_enqueue(executor_impl* ex, task_base* t) noexcept { return ex->try_enqueue(t); }
void report_unhandled_exception() noexcept {
  try {
    throw;
  } catch (const std::exception& e) {
    fmt::print(stderr, "dx: a posted task threw an exception: {}\n", e.what());
  } catch (...) {
    fmt::print(stderr, "dx: a posted task threw an exception of unknown type\n");
  }
}

}  // namespace dx::detail

namespace dx {

executor::executor(std::size_t threads) : impl_(new detail::executor_impl(std::max<std::size_t>(threads, 1))) {}

executor::~executor() {
  impl_->shutdown();
  detail::retire_executor(impl_);
}

std::size_t executor::num_threads() const noexcept { return impl_->size(); }
void executor::wait_idle() { impl_->wait_idle(); }
void executor::shutdown() { impl_->shutdown(); }
bool executor::is_worker_thread() const noexcept { return impl_->own_worker() != nullptr; }

std::size_t executor::default_threads() noexcept {
  return std::max<std::size_t>(std::thread::hardware_concurrency(), 1);
}

future<void> executor::run(task_graph& g) { return detail::run_graph(impl_, g.impl()); }

}  // namespace dx
