// Time-driven task events at the head: time limits (task_options::with_timeout) stop a task that
// has not finished in time, retries (task_options::with_retries) run a task that threw again once
// its pause is over, and a replicated task's copies meet their deadlines (replication.cpp). All
// wait in one heap that the tick serves.
#include "cluster/head_state.hpp"
#include "common/log.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace dx::detail {

namespace {

std::string describe_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

}  // namespace

bool head_impl::timer_live_locked(const task_timer& timer) const {
  auto it = tasks_.find(timer.task);
  if (it == tasks_.end() || is_finished_locked(timer.task)) return false;
  switch (timer.kind) {
    case timer_kind::limit:
      return true;
    case timer_kind::pause:
      return it->second.retry_timer == timer.token;
    case timer_kind::soft_deadline:
    case timer_kind::hard_deadline:  // only for the dispatch it was set for
      return it->second.attempt == timer.token && sched_->sent_to(timer.task) != sched::no_worker;
  }
  return false;
}

void head_impl::add_timer_locked(const task_timer& timer) {
  // Timers of tasks that finished long before their time (a limit of an hour on tasks of a
  // millisecond) would pile up until they come up: when the heap doubles, they are dropped, so it
  // stays within twice the timers that can still fire.
  if (timers_.size() >= sweep_timers_at_) {
    std::vector<task_timer> keep;
    keep.reserve(timers_.size());
    for (; !timers_.empty(); timers_.pop())
      if (timer_live_locked(timers_.top())) keep.push_back(timers_.top());
    timers_ = decltype(timers_)(std::greater<>(), std::move(keep));
    sweep_timers_at_ = std::max<std::size_t>(1024, 2 * timers_.size());
  }
  // Wake the tick only for a timer earlier than any it waits for.
  if (timers_.empty() || timer.at < timers_.top().at) {
    timer_added_ = true;
    tick_cv_.notify_all();
  }
  timers_.push(timer);
}

void head_impl::start_limit_locked(task_entry& t, std::chrono::nanoseconds limit) {
  add_timer_locked(task_timer{head_clock::now() + limit, t.id, limit.count(), 0});
}

bool head_impl::retry_locked(task_entry& t, worker_rec& w, const std::exception_ptr& e, deferred& d) {
  std::chrono::nanoseconds pause{0};
  if (!retry_after(*t.retries, e, ++t.thrown, pause)) {
    if (t.thrown > 1)
      log(log_level::info, "task {} ({}) failed on {} after {} attempts", t.id, t.function, w.id, t.thrown);
    return false;
  }
  // It leaves its worker (which ended the attempt) and waits; its slot there is free again.
  sched_->task_waiting(t.id, now_seconds());
  t.retry_timer = next_timer_++;
  if (observe_) {
    ++kinds_[t.kind]->retried;
    ++kinds_[t.kind]->pausing;
  }
  log(log_level::info, "task {} ({}) threw on {} (attempt {} of {}); running it again in {}", t.id, t.function, w.id,
      t.thrown, t.retries->policy.max_attempts, describe_limit(pause.count()));
  add_timer_locked(task_timer{head_clock::now() + pause, t.id, 0, t.retry_timer, timer_kind::pause});
  if (t.future && t.future->wants_notes)
    note_locked(t, {remote_result::note::kind::retrying, t.attempt, w.id, describe_exception(e)}, d);
  return true;
}

void head_impl::end_pause_locked(task_entry& t) {
  if (!t.retry_timer) return;
  t.retry_timer = 0;
  if (observe_ && kinds_[t.kind]->pausing > 0) --kinds_[t.kind]->pausing;
}

void head_impl::fire_timers_locked(deferred& d) {
  const auto now = head_clock::now();
  while (!timers_.empty() && timers_.top().at <= now) {
    const task_timer due = timers_.top();
    timers_.pop();
    if (!timer_live_locked(due)) continue;
    task_entry& t = tasks_.at(due.task);
    if (due.kind == timer_kind::soft_deadline || due.kind == timer_kind::hard_deadline) {
      copy_deadline_locked(t, due.kind == timer_kind::hard_deadline, d);
      continue;
    }
    if (due.kind == timer_kind::pause) {
      end_pause_locked(t);
      requeue_locked(t, d);  // ready again once its inputs are (a lost one is recomputed first)
      continue;
    }
    const std::string what =
        fmt::format("task {} ({}) timed out after {}", due.task, t.function, describe_limit(due.limit_ns));
    log(log_level::info, "{}", what);
    stop_locked(due.task, make_error(error_kind::timeout, what), true, d);
  }
}

}  // namespace dx::detail
