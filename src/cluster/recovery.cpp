// Recovery: what is lost comes back from lineage. A lost worker's tasks are requeued (or failed after
// too many losses), results held only there are recomputed when still needed, lost inputs and lost
// completions are run again.
#include "cluster/head_state.hpp"
#include "common/log.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <dx/error.hpp>

namespace dx::detail {

void head_impl::recompute_locked(task_entry& t, deferred& d) {
  if (phase_locked(t.id) != sched::phase::done) return;
  sched_->task_waiting(t.id, now_seconds());
  restart_locked(t, d);
}

void head_impl::result_lost_locked(task_entry& t, deferred& d) {
  if (!data_needed(t)) return;
  t.fetching = false;
  recompute_locked(t, d);
}

void head_impl::recompute_decided_locked(std::uint64_t id, deferred& d) {
  auto lost = tasks_.find(id);
  if (lost == tasks_.end()) return;
  task_entry& x = lost->second;
  // Unfinished readers were made to wait by the scheduler; each waits for x once.
  for (auto& [rid, r] : tasks_) {
    if (phase_locked(rid) != sched::phase::waiting || r.retry_timer) continue;  // pausing: counts inputs after
    bool reads = false;
    for (const arg_slot& a : r.args) reads = reads || a.ref == id;
    if (!reads || std::find(x.waiting.begin(), x.waiting.end(), rid) != x.waiting.end()) continue;
    x.waiting.push_back(rid);
    ++r.deps_pending;
  }
  restart_locked(x, d);
}

void head_impl::restart_locked(task_entry& t, deferred& d) {
  log(log_level::info, "recomputing task {} ({}): its result was lost", t.id, t.function);
  ++unfinished_;
  if (observe_) {
    ++kinds_[t.kind]->recomputed;
    ++kinds_[t.kind]->retried;
  }
  for (const arg_slot& a : t.args) {
    if (!a.ref) continue;
    auto in = tasks_.find(a.ref);
    if (in != tasks_.end()) ++in->second.pending_dependents;
  }
  requeue_locked(t, d);
}

void head_impl::remove_worker_locked(worker_rec& w, deferred& d) {
  const bool graceful = w.state == worker_state::leaving;
  w.state = worker_state::gone;
  // What was sent there and what is held there, before the scheduler forgets both.
  const std::vector<std::uint64_t> assigned = sched_->tasks_on(w.sid);
  const std::vector<std::uint64_t> held = sched_->results_on(w.sid);
  // It places the tasks again, and decides to recompute results lost there that unfinished
  // tasks read (recompute decisions, carried out by dispatch).
  sched_->worker_left(w.sid, !graceful && !shutting_down_, now_seconds());
  for (auto id : assigned) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) continue;
    task_entry& t = it->second;
    if (!graceful) {
      ++t.failures;
      t.lost_on.push_back(w.id);
      record_lost_attempt_locked(t, w);
    } else if (t.running_since >= 0) {
      record_lost_attempt_locked(t, w);  // it had started there and never finished
    } else {
      t.handed_back.push_back(t.attempt);  // sent as the worker left: it never saw it
    }
    if (t.failures >= opts_.allowed_failures()) {
      std::string on;
      for (const auto& n : t.lost_on) on += (on.empty() ? "" : ", ") + n;
      fail_locked(
          id,
          make_error(error_kind::worker_lost, fmt::format("task {} ({}) was running on {} workers that died: {}", id,
                                                          t.function, t.failures, on)),
          d);
      continue;
    }
    if (observe_ && !graceful) ++kinds_[t.kind]->retried;
    requeue_locked(t, d);
  }
  // A lost result that only a future still wants is the head's to recompute (the scheduler
  // knows nothing of futures).
  for (auto id : held) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) continue;
    task_entry& t = it->second;
    if (!available_locked(t)) result_lost_locked(t, d);
  }
  abandon_fetches_from_locked(w, d);
  w.to_release.clear();
  if (w.conn) {
    w.bytes_to_final += w.conn->bytes_sent();
    w.bytes_from_final += w.conn->bytes_received();
  }
  w.conn.reset();
  workers_cv_.notify_all();
  idle_cv_.notify_all();
}

void head_impl::abandon_fetches_from_locked(worker_rec& w, deferred& d) {
  std::vector<std::uint64_t> refetch;
  for (auto it = fetches_.begin(); it != fetches_.end();) {
    if (it->second.from == &w) {
      refetch.push_back(it->second.task);
      it = fetches_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto id : refetch) {
    auto t = tasks_.find(id);
    if (t == tasks_.end()) continue;
    t->second.fetching = false;
    if (t->second.future && !t->second.delivered && phase_locked(id) == sched::phase::done)
      deliver_locked(t->second, d);
  }
}

/// A worker that reports nothing queued or running while tasks sent to it long before are still
/// open lost them (a completion that never arrived): they are dispatched again, and a late
/// completion of the old attempt is ignored, so no future waits forever on it. `handled` is how
/// far into this connection's stream the worker had handled the head's frames when it reported.
void head_impl::requeue_stale_locked(worker_rec& w, std::uint64_t handled, deferred& d) {
  const double now = now_seconds();
  // Tasks still on their way there (a frame the worker has not handled yet, however long a large
  // one takes to send), or whose report is on its way back, are not stale.
  const auto cutoff = head_clock::now() - 4 * opts_.heartbeat_interval() - link_allowance_locked(w);
  std::vector<std::uint64_t> stale;
  for (auto id : sched_->tasks_on(w.sid)) {
    auto it = tasks_.find(id);
    // A task that ended meanwhile (timed out or cancelled while queued there) is not run again.
    if (it != tasks_.end() && !is_finished_locked(id) && it->second.dispatched_at < cutoff &&
        it->second.sent_through <= handled)
      stale.push_back(id);
  }
  if (stale.empty()) return;
  log(log_level::warn, "worker {} is idle but {} tasks sent to it are open; dispatching them again", w.id,
      stale.size());
  for (auto id : stale) {
    task_entry& t = tasks_.at(id);
    record_lost_attempt_locked(t, w);
    if (observe_) ++kinds_[t.kind]->retried;
    sched_->task_returned(id, w.sid, now);
    requeue_locked(t, d);
  }
}

/// The holder of an input of t is gone or lost it: recompute that input, then run t again.
void head_impl::input_lost_locked(task_entry& t, worker_rec& w, std::uint64_t lost_input, deferred& d) {
  sched_->task_returned(t.id, w.sid, now_seconds());
  auto in = tasks_.find(lost_input);
  if (in != tasks_.end()) {
    for (sched::worker_id h : std::vector<sched::worker_id>(sched_->holders(lost_input)))
      if (worker_rec* holder = by_sid_locked(h)) forget_holder_locked(in->second, *holder);
  }
  if (++t.failures >= opts_.allowed_failures()) {
    fail_locked(t.id,
                make_error(error_kind::worker_lost,
                           fmt::format("an input of task {} ({}) was lost {} times", t.id, t.function, t.failures)),
                d);
    return;
  }
  if (observe_) ++kinds_[t.kind]->retried;
  requeue_locked(t, d);
}

}  // namespace dx::detail
