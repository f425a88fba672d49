// Timers of local tasks: one timer thread keeps, in one heap, the deadlines of tasks with a time
// limit (a task not finished by its deadline has its future settled with dx::timeout and is asked
// to stop) and the retries waiting out their pause (the task is enqueued again when it ends).
#include <dx/detail/runtime.hpp>
#include <dx/detail/shared_state.hpp>
#include <dx/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace dx::detail {

namespace {

using clock = std::chrono::steady_clock;

struct deadline {
  clock::time_point at;
  state_base* state;  // one reference held
  std::string name;
  std::int64_t limit_ns;
  // A retry: the task to enqueue on `ex` at `at` (announced there; it holds the reference).
  task_base* rerun = nullptr;
  executor_impl* ex = nullptr;
  bool operator>(const deadline& o) const noexcept { return at > o.at; }
};

/// The timer thread. Started on first use; stopped and joined at exit, releasing what it holds.
class timer_service {
 public:
  ~timer_service() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    // At exit: executors are gone, so a retry still pausing has nowhere to run.
    while (!heap_.empty()) {
      heap_.top().state->release();
      heap_.pop();
    }
  }

  void add(deadline d) {
    std::vector<state_base*> settled;
    {
      std::lock_guard lock(mutex_);
      if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
      const bool earliest = heap_.empty() || d.at < heap_.top().at;
      heap_.push(std::move(d));
      if (earliest) cv_.notify_one();
      if (heap_.size() >= sweep_at_) sweep(settled);
    }
    // Released outside the lock: a value's destructor may submit work with a time limit.
    for (state_base* s : settled) s->release();
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    while (!stop_) {
      if (heap_.empty()) {
        cv_.wait(lock);
        continue;
      }
      // A copy: wait_until reads the time again after waking, when a push may have moved the heap.
      const auto next = heap_.top().at;
      if (clock::now() < next) {
        cv_.wait_until(lock, next);
        continue;
      }
      deadline d = heap_.top();
      heap_.pop();
      lock.unlock();
      // Settling runs continuations that have no executor: outside the lock.
      if (d.rerun) {
        enqueue(d.ex, d.rerun);  // it runs (or, settled meanwhile, ends at once) and releases itself
        lock.lock();
        continue;
      }
      if (!d.state->settled())
        d.state->request_stop(
            make_error(error_kind::timeout, fmt::format("{} timed out after {}", d.name, describe_limit(d.limit_ns))));
      d.state->release();
      lock.lock();
    }
  }

  // Entries of tasks that finished in time would hold their states (and values) until their
  // deadlines: when the heap doubles, those are dropped, so it stays within twice the tasks
  // still running under a limit.
  void sweep(std::vector<state_base*>& settled) {
    std::vector<deadline> keep;
    keep.reserve(heap_.size());
    while (!heap_.empty()) {
      deadline d = heap_.top();
      heap_.pop();
      if (d.state->settled() && !d.rerun) {
        settled.push_back(d.state);
      } else {
        keep.push_back(std::move(d));
      }
    }
    for (auto& d : keep) heap_.push(std::move(d));
    sweep_at_ = std::max<std::size_t>(1024, 2 * heap_.size());
  }

  std::size_t sweep_at_ = 1024;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::priority_queue<deadline, std::vector<deadline>, std::greater<>> heap_;
  bool stop_ = false;
  std::thread thread_;
};

timer_service& timers() {
  static timer_service service;
  return service;
}

}  // namespace

std::string describe_limit(std::int64_t ns) {
  if (ns < 1'000'000) return fmt::format("{} us", ns / 1000);
  if (ns < 10'000'000'000) {
    if (ns % 1'000'000 == 0) return fmt::format("{} ms", ns / 1'000'000);
    return fmt::format("{:.3g} ms", static_cast<double>(ns) * 1e-6);
  }
  return fmt::format("{:.3g} s", static_cast<double>(ns) * 1e-9);
}

void stop_after(state_base* s, std::int64_t limit_ns, const char* name) {
  if (s->settled()) return;
  s->add_ref();
  timers().add(deadline{clock::now() + std::chrono::nanoseconds(limit_ns), s, name, limit_ns});
}

void run_after(executor_impl* ex, task_base* t, state_base* s, std::int64_t pause_ns) {
  timers().add(deadline{clock::now() + std::chrono::nanoseconds(std::max<std::int64_t>(0, pause_ns)), s, {}, 0, t, ex});
}

}  // namespace dx::detail
