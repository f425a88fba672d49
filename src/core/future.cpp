#include <dx/detail/shared_state.hpp>
#include <dx/future.hpp>

#include "executor_impl.hpp"
#include "waiter.hpp"

#include <condition_variable>
#include <mutex>

namespace dx::detail {

state_base::~state_base() = default;

void state_base::publish() noexcept {
  continuation* list = head_.exchange(ready_tag(), std::memory_order_acq_rel);
  // The list is a stack; reverse it so continuations fire in registration order.
  continuation* ordered = nullptr;
  while (list) {
    continuation* next = list->next;
    list->next = ordered;
    ordered = list;
    list = next;
  }
  while (ordered) {
    continuation* next = ordered->next;  // read first: firing may free the node
    ordered->fire(ordered);
    ordered = next;
  }
}

void state_base::publish_from_task() noexcept {
  worker* w = this_worker();
  if (!w) {
    publish();
    return;
  }
  bool was_completing = std::exchange(w->completing, true);
  publish();
  w->completing = was_completing;
}

void state_base::wait() noexcept {
  if (is_ready()) return;
  waiter w;
  on_ready(&w);
  w.block();
}

namespace {

/// A waiter for a timed wait on a thread that is not a worker. Heap-allocated and shared by the
/// waiting thread and the state: after a timeout the state may still fire it later.
struct timed_waiter : continuation {
  std::atomic<int> refs{2};
  std::mutex m;
  std::condition_variable cv;
  bool fired = false;

  void release() noexcept {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  static void on_fire(continuation* c) noexcept {
    auto* self = static_cast<timed_waiter*>(c);
    {
      std::lock_guard lock(self->m);
      self->fired = true;
      self->cv.notify_one();
    }
    self->release();
  }
};

}  // namespace

bool state_base::wait_until(std::chrono::steady_clock::time_point deadline) noexcept {
  if (is_ready()) return true;
  if (worker* w = this_worker()) {
    return w->owner->help_until(
        *w, [this] { return is_ready(); }, deadline);
  }
  auto* tw = new timed_waiter;
  tw->fire = &timed_waiter::on_fire;
  on_ready(tw);
  {
    std::unique_lock lock(tw->m);
    tw->cv.wait_until(lock, deadline, [&] { return tw->fired; });
  }
  tw->release();
  return is_ready();
}

void waiter::on_fire(continuation* c) noexcept {
  auto* self = static_cast<waiter*>(c);
  if (executor_impl* ex = self->ex_) {
    // Copy what the wake-up needs: once done_ is set the waiter may return and vanish.
    std::size_t id = self->worker_id_;
    self->done_.store(true, std::memory_order_seq_cst);
    ex->wake(id);
  } else {
    std::lock_guard lock(self->m_);
    self->done_.store(true, std::memory_order_relaxed);
    self->cv_.notify_one();
  }
}

waiter::waiter() noexcept {
  fire = &on_fire;
  if (worker* w = this_worker()) {
    ex_ = w->owner;
    worker_id_ = w->id;
  }
}

void waiter::block() noexcept {
  if (ex_) {
    ex_->help_until(*this_worker(), done_);
  } else {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return done_.load(std::memory_order_relaxed); });
  }
}

}  // namespace dx::detail

namespace dx::detail {

namespace {
thread_local state_base* tls_current_task = nullptr;
// Relaxed: a statistic, read for metrics only.
std::atomic<std::uint64_t> late_completion_count{0};
}  // namespace

state_base* exchange_current_task(state_base* s) noexcept { return std::exchange(tls_current_task, s); }
state_base* current_task() noexcept { return tls_current_task; }
void count_late_completion() noexcept { late_completion_count.fetch_add(1, std::memory_order_relaxed); }
std::uint64_t late_completions() noexcept { return late_completion_count.load(std::memory_order_relaxed); }

}  // namespace dx::detail
