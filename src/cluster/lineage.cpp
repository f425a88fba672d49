// Lineage: a task's life from submitted to finished or failed, who waits on whom, and the table's
// reference counts that keep a task's lineage while a future or a dependent may still need it.
#include "cluster/builtins.hpp"
#include "cluster/head_state.hpp"
#include "common/log.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <dx/error.hpp>

namespace dx::detail {

/// Ready tasks belong to the scheduler until it decides where they run.
/// A replicated task never runs itself: its copies are issued instead (once).
void head_impl::make_ready_locked(task_entry& t) {
  if (t.replicas && !t.copy_of) {
    if (t.replicas->issued == 0) issue_copies_locked(t, t.replicas->rules.adaptive ? 1 : t.replicas->rules.copies);
    return;
  }
  sched_->task_ready(t.id, now_seconds());
}

std::size_t head_impl::runnable_locked() const {
  std::size_t n = 0;
  for (const auto& [id, t] : tasks_) {
    const sched::phase p = phase_locked(id);
    if ((p == sched::phase::ready && sched_->hostable(id)) || p == sched::phase::sent || p == sched::phase::running ||
        (p == sched::phase::waiting && !waits_on_local_locked(t)))
      ++n;
  }
  return n;
}

/// Whether t (or an input it waits for, transitively) waits on a local future, or on a task no
/// worker can host.
bool head_impl::waits_on_local_locked(const task_entry& t) const {
  for (const arg_slot& a : t.args) {
    if (a.pending_local) return true;
    if (!a.ref) continue;
    auto in = tasks_.find(a.ref);
    if (in == tasks_.end()) continue;
    // An input no worker can host never finishes either.
    const sched::phase p = phase_locked(in->first);
    if (p == sched::phase::ready && !sched_->hostable(in->first)) return true;
    if (p == sched::phase::waiting && waits_on_local_locked(in->second)) return true;
  }
  return false;
}

void head_impl::task_done_locked(worker_rec& w, wire::task_done_msg m, std::shared_ptr<const std::string> payload,
                                 deferred& d) {
  auto it = tasks_.find(m.task_id);
  const bool current = it != tasks_.end() && current_attempt_locked(it->second, w, m.attempt);
  const double now = now_seconds();
  const double seconds = static_cast<double>(m.duration_ns) * 1e-9;
  if (!current) {
    // A stale attempt (the task was moved or re-run, or given up): its result is not committed.
    if (!m.inline_result) release_later_locked(w, m.task_id);
    note_stale_completion_locked(m.task_id);
    if (it != tasks_.end())
      record_attempt_locked(it->second, w, now, seconds, m.thread, m.attempt, observe::attempt_end::superseded);
    return;
  }
  task_entry& t = it->second;
  if (observe_) {
    observe::kind_stats& k = *kinds_[t.kind];
    ++k.completed;
    observe::kind_stats::count_on(k.completed_on, w.sid);
    k.durations.observe(seconds);
    record_attempt_locked(t, w, now, seconds, m.thread, m.attempt, observe::attempt_end::done);
  }
  if (t.copy_of) {
    // A copy's result is compared at the head, which asked for it with the completion.
    sched_->task_finished(t.id, w.sid, now, seconds, m.result_size, false);
    if (!m.inline_result) {
      release_later_locked(w, t.id);
      copy_answered_locked(t, w, nullptr, nullptr, "its result was not sent to the head", d);
      return;
    }
    copy_answered_locked(t, w, payload ? std::move(payload) : std::make_shared<const std::string>(), nullptr, {}, d);
    return;
  }
  t.result_size = m.result_size;
  if (t.future && t.future->wants_notes && !t.delivered) {
    t.future->produced_by = w.id;
    t.future->run_seconds = seconds;
  }
  // From here the scheduler records it done, and w as its result's holder when the bytes stayed there.
  sched_->task_finished(t.id, w.sid, now, seconds, m.result_size, !m.inline_result);
  if (m.inline_result) t.inline_result = payload ? std::move(payload) : std::make_shared<const std::string>();
  count_finished_locked(t);
  if (t.future && !t.delivered && (t.inline_result || t.demanded)) deliver_locked(t, d);
  wake_dependents_locked(t, d);
  maybe_release_data_locked(t);
  if (t.lineage_refs == 0) erase_locked(t.id);
}

void head_impl::count_finished_locked(task_entry& t) {
  for (const arg_slot& a : t.args) {
    if (!a.ref) continue;
    auto in = tasks_.find(a.ref);
    if (in == tasks_.end()) continue;
    if (in->second.pending_dependents > 0) --in->second.pending_dependents;
    maybe_release_data_locked(in->second);
  }
  --unfinished_;
  idle_cv_.notify_all();  // wait_idle waits for zero, shutdown for no runnable task
}

void head_impl::wake_dependents_locked(task_entry& t, deferred& d) {
  std::vector<std::uint64_t> waiting;
  waiting.swap(t.waiting);
  for (auto dep : waiting) {
    auto it = tasks_.find(dep);
    if (it == tasks_.end()) continue;
    task_entry& dt = it->second;
    if (phase_locked(dep) != sched::phase::waiting) continue;
    if (dt.retry_timer) continue;  // waits out a retry's pause; counts its inputs again after it
    if (is_unsuccessful_locked(t.id)) {
      fail_after_input_locked(dep, t, d);
    } else if (--dt.deps_pending == 0) {
      make_ready_locked(dt);
    }
  }
}

void head_impl::task_failed_locked(worker_rec& w, const wire::task_failed_msg& m, deferred& d) {
  auto it = tasks_.find(m.task_id);
  if (it == tasks_.end() || !current_attempt_locked(it->second, w, m.attempt)) {
    note_stale_completion_locked(m.task_id);
    return;
  }
  task_entry& t = it->second;
  if (m.kind != wire::failure_kind::input_lost)
    record_attempt_locked(t, w, now_seconds(), static_cast<double>(m.duration_ns) * 1e-9, m.thread, m.attempt,
                          observe::attempt_end::failed);
  if (m.kind == wire::failure_kind::input_lost) {
    input_lost_locked(t, w, m.lost_input, d);
    return;
  }
  std::exception_ptr e;
  switch (m.kind) {
    case wire::failure_kind::not_registered:
      e = make_error(error_kind::not_registered, m.message);
      break;
    case wire::failure_kind::bad_arguments:
      e = make_error(error_kind::protocol, fmt::format("{} on worker {}: {}", t.function, w.id, m.message));
      break;
    case wire::failure_kind::too_large:
      e = make_error(error_kind::generic, m.message);
      break;
    default:
      e = rebuild_remote_failure(m.type_name, m.message, w.id);
      if (!e) e = std::make_exception_ptr(remote_error(m.type_name, m.type_bases, m.message, w.id));
      if (t.retries && retry_locked(t, w, e, d)) return;
  }
  if (t.copy_of) {
    // An exception is an answer too: copies that throw alike agree.
    sched_->task_failed(t.id, w.sid, now_seconds(), false);
    copy_answered_locked(t, w, nullptr, e, m.type_name + ": " + m.message, d);
    return;
  }
  fail_locked(t.id, e, d, &w);
}

/// Fails every task that has not finished (ids first: failing one may erase others).
void head_impl::fail_open_locked(const std::exception_ptr& e, deferred& d) {
  std::vector<std::uint64_t> open;
  for (auto& [id, t] : tasks_)
    if (!is_finished_locked(id)) open.push_back(id);
  for (auto id : open) fail_locked(id, e, d);
}

/// `ran_on`: the worker it failed on, for the statistics (default: where it was sent).
void head_impl::fail_locked(std::uint64_t id, std::exception_ptr e, deferred& d, const worker_rec* ran_on) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  task_entry& t = it->second;
  if (is_finished_locked(id)) return;
  if (t.copy_of) {  // a copy that will not answer (an input failed, the cluster stops)
    drop_copy_locked(t, d);
    return;
  }
  const sched::worker_id sent_to = sched_->sent_to(id);
  sched_->task_failed(id, sent_to, now_seconds(), false);
  if (observe_) {
    ++kinds_[t.kind]->failed;
    if (!ran_on) ran_on = by_sid_locked(sent_to);
    if (ran_on) {
      observe::kind_stats::count_on(kinds_[t.kind]->failed_on, ran_on->sid);
    } else {
      ++kinds_[t.kind]->failed_nowhere;
    }
  }
  settle_unsuccessful_locked(t, std::move(e), d);
}

void head_impl::settle_unsuccessful_locked(task_entry& t, std::exception_ptr e, deferred& d) {
  const std::uint64_t id = t.id;
  t.error = e;
  end_pause_locked(t);
  if (t.replicas && !t.copy_of) {  // its copies are given up with it
    t.replicas->settled = true;
    end_disputes_locked(*t.replicas);
    cancel_copies_locked(*t.replicas, false);
  }
  count_finished_locked(t);
  if (t.future && !t.delivered) {
    if (t.future->state().try_add_ref()) d.errors.emplace_back(t.future, e);
    t.delivered = true;
  }
  wake_dependents_locked(t, d);
  if (t.lineage_refs == 0) erase_locked(id);
}

bool head_impl::stop_locked(std::uint64_t id, std::exception_ptr outcome, bool timed_out, deferred& d) {
  auto it = tasks_.find(id);
  if (it == tasks_.end() || is_finished_locked(id)) return false;
  task_entry& t = it->second;
  if (t.copy_of) {
    drop_copy_locked(t, d);
    return false;
  }
  // The scheduler frees its slot and, if a worker has it, decides to tell that worker.
  sched_->task_cancelled(id, now_seconds(), timed_out);
  if (observe_) {
    observe::kind_stats& k = *kinds_[t.kind];
    if (timed_out) {
      ++k.timed_out;
      ++k.failed;
      ++k.failed_nowhere;
    } else {
      ++k.cancelled;
    }
  }
  settle_unsuccessful_locked(t, std::move(outcome), d);
  return true;
}

void head_impl::fail_after_input_locked(std::uint64_t id, const task_entry& input, deferred& d) {
  if (phase_locked(input.id) == sched::phase::cancelled) {
    stop_locked(id, input.error, false, d);
  } else {
    fail_locked(id, input.error, d);
  }
}

void head_impl::note_stale_completion_locked(std::uint64_t task) {
  // A task the head no longer knows, or one that ended without a result, was given up while a
  // worker ran it: what it reports now is a late result, discarded. (An attempt superseded by a
  // move or a re-run belongs to a task still open or done.)
  if (tasks_.find(task) == tasks_.end() || is_unsuccessful_locked(task)) ++late_results_;
}

void head_impl::unref_locked(std::uint64_t id) {
  std::vector<std::uint64_t> stack{id};
  while (!stack.empty()) {
    const std::uint64_t cur = stack.back();
    stack.pop_back();
    auto it = tasks_.find(cur);
    if (it == tasks_.end()) continue;
    task_entry& t = it->second;
    if (t.lineage_refs > 0) --t.lineage_refs;
    if (t.lineage_refs > 0 || !is_finished_locked(cur)) continue;
    for (const arg_slot& a : t.args)
      if (a.ref) stack.push_back(a.ref);
    maybe_release_data_locked(t);
    sched_->task_forgotten(cur);
    tasks_.erase(it);
  }
}

void head_impl::erase_locked(std::uint64_t id) {
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return;
  ++it->second.lineage_refs;  // unref_locked takes it back and erases
  unref_locked(id);
}

/// Puts t back in the queue once its inputs are available, recomputing lost ones first.
void head_impl::requeue_locked(task_entry& t, deferred& d) {
  t.deps_pending = 0;
  for (const arg_slot& a : t.args) {
    if (a.pending_local) ++t.deps_pending;
    if (!a.ref) continue;
    auto in = tasks_.find(a.ref);
    if (in == tasks_.end()) continue;
    task_entry& it = in->second;
    if (is_unsuccessful_locked(it.id)) {
      fail_after_input_locked(t.id, it, d);
      return;
    }
    if (available_locked(it)) continue;
    ++t.deps_pending;
    if (std::find(it.waiting.begin(), it.waiting.end(), t.id) == it.waiting.end()) it.waiting.push_back(t.id);
    recompute_locked(it, d);  // when it finished and its result is gone
  }
  if (t.deps_pending == 0) {
    make_ready_locked(t);
  } else {
    sched_->task_waiting(t.id, now_seconds());
  }
}

}  // namespace dx::detail
