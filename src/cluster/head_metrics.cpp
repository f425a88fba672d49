// The head's observations: per-kind statistics, the record of attempts, the cached forecast, and
// the collector behind the head's families on /metrics.
#include "cluster/head_state.hpp"
#include "common/process_stats.hpp"
#include "model/cost_model_impl.hpp"

#include <algorithm>
#include <dx/cost_model.hpp>

namespace dx::detail {

std::uint32_t head_impl::kind_index_locked(const std::string& name) {
  cost_model::impl& model = model_internals(model_);
  const cost_model::impl::index k = model.kind_index(name);  // the scheduler interns the same name
  if (k >= kind_slot_.size()) kind_slot_.resize(std::size_t{k} + 1, no_kind_slot);
  std::uint32_t& slot = kind_slot_[k];
  if (slot == no_kind_slot) {
    kinds_.push_back(std::make_unique<observe::kind_stats>());
    kinds_.back()->name = model.kind_name(k);
    slot = static_cast<std::uint32_t>(kinds_.size() - 1);
  }
  return slot;
}

/// The run that dispatch `attempt` of t was, as users count attempts: a dispatch handed back
/// before it started (a move, a leaving worker) never ran, so it is not an attempt.
std::uint32_t head_impl::run_number(const task_entry& t, std::uint32_t attempt) {
  std::uint32_t earlier = 0;
  for (auto d : t.handed_back) earlier += d < attempt ? 1 : 0;
  return attempt - earlier;
}

/// One attempt of t ended on w `seconds` after it started (the worker's measure); `now` is when
/// the head learned it.
void head_impl::record_attempt_locked(const task_entry& t, const worker_rec& w, double now, double seconds,
                                      std::uint32_t thread, std::uint32_t attempt, observe::attempt_end how) {
  if (!observe_) return;
  observe::task_event e;
  e.task = t.id;
  e.start = now - seconds;
  e.duration = static_cast<float>(seconds);
  e.kind = t.kind;
  e.worker = w.sid;
  e.thread = static_cast<std::uint16_t>(std::min<std::uint32_t>(thread, observe::unknown_thread));
  e.attempt = static_cast<std::uint16_t>(std::min<std::uint32_t>(run_number(t, attempt), 0xffff));
  e.status = how;
  task_events_.push(e);
}

/// The attempt of t on w ended without an answer: from when it started running (or was sent,
/// when no heartbeat said it had started) until now.
void head_impl::record_lost_attempt_locked(const task_entry& t, const worker_rec& w) {
  ++reliability_locked(w.id).lost;
  const double now = now_seconds();
  const bool started = t.running_since >= 0;
  const double from = started ? t.running_since : std::chrono::duration<double>(t.dispatched_at - epoch_).count();
  record_attempt_locked(t, w, now, now - from, started ? t.running_thread : observe::unknown_thread, t.attempt,
                        observe::attempt_end::lost);
}

/// The forecast for metrics and the dashboard: it list-schedules everything left, too much to do
/// for every scrape of a large run. It is kept at least 0.5 s and at least 20 times as long as
/// it took to compute, so that however many tasks are left it costs the head about 5% at most.
const sched::forecast_result& head_impl::cached_forecast_locked() const {
  const double now = now_seconds();
  if (!forecast_cache_ || now - forecast_at_ > std::max(0.5, 20 * forecast_cost_)) {
    const auto started = head_clock::now();
    forecast_cache_ = sched_->forecast(now);
    forecast_at_ = now;
    forecast_cost_ = std::chrono::duration<double>(head_clock::now() - started).count();
  }
  return *forecast_cache_;
}

double head_impl::backlog_of(const sched::forecast_result& fc, sched::worker_id sid) {
  for (const auto& b : fc.workers)
    if (b.id == sid) return b.backlog_seconds;
  return 0.0;
}

std::string head_impl::worker_name(std::uint32_t sid) const {
  if (sid == observe::no_worker) return "head";
  return sid < by_sid_.size() && by_sid_[sid] ? by_sid_[sid]->id : std::string("none");
}

/// Tasks sent to workers and not finished, by kind; `running`: those a heartbeat saw running.
std::vector<std::uint64_t> head_impl::assigned_by_kind_locked(std::vector<std::uint64_t>* running) const {
  std::vector<std::uint64_t> n(kinds_.size(), 0);
  if (running) running->assign(kinds_.size(), 0);
  for (const auto& [id, w] : workers_)
    for (auto task : sched_->tasks_on(w->sid))
      if (auto it = tasks_.find(task); it != tasks_.end() && it->second.kind < n.size()) {
        ++n[it->second.kind];
        if (running && it->second.running_since >= 0) ++(*running)[it->second.kind];
      }
  return n;
}

void head_impl::collect(exposition& out) const {
  std::lock_guard lock(mutex_);
  using detail::metric_type;
  auto per_kind = [&](const char* name, metric_type type, const char* help, auto value) {
    if (!out.family(name, type, help)) return;
    for (const auto& k : kinds_) out.sample(name, {{"kind", k->name}}, static_cast<double>(value(*k)));
  };
  per_kind("dx_tasks_submitted_total", metric_type::counter, "Tasks submitted, by kind (function).",
           [](const observe::kind_stats& k) { return k.submitted; });
  auto per_kind_worker = [&](const char* name, const char* help, auto member, auto nowhere) {
    if (!out.family(name, metric_type::counter, help)) return;
    for (const auto& k : kinds_) {
      const std::vector<std::uint64_t>& v = (*k).*member;
      for (std::size_t w = 0; w < v.size(); ++w)
        if (v[w])
          out.sample(name, {{"kind", k->name}, {"worker", worker_name(static_cast<std::uint32_t>(w))}},
                     static_cast<double>(v[w]));
      if (nowhere(*k)) out.sample(name, {{"kind", k->name}, {"worker", "none"}}, static_cast<double>(nowhere(*k)));
    }
  };
  per_kind_worker("dx_tasks_completed_total", "Task attempts that completed, by kind and worker.",
                  &observe::kind_stats::completed_on, [](const observe::kind_stats&) { return std::uint64_t{0}; });
  per_kind_worker("dx_tasks_failed_total", "Tasks that failed, by kind and worker (none: before reaching one).",
                  &observe::kind_stats::failed_on, [](const observe::kind_stats& k) { return k.failed_nowhere; });
  per_kind("dx_tasks_retried_total", metric_type::counter,
           "Tasks run again after a lost worker, a lost input or a lost result, or after an exception "
           "(task_options::with_retries).",
           [](const observe::kind_stats& k) { return k.retried; });
  per_kind("dx_tasks_pausing", metric_type::gauge,
           "Tasks that threw and wait out the pause before their next attempt (task_options::with_retries).",
           [](const observe::kind_stats& k) { return k.pausing; });
  per_kind("dx_tasks_moved_total", metric_type::counter, "Tasks taken back from a worker's queue to run elsewhere.",
           [](const observe::kind_stats& k) { return k.moved; });
  per_kind("dx_tasks_cancelled_total", metric_type::counter,
           "Tasks cancelled before they finished (their own outcome, not failures).",
           [](const observe::kind_stats& k) { return k.cancelled; });
  per_kind("dx_tasks_timed_out_total", metric_type::counter,
           "Tasks past their time limit (task_options::with_timeout); also counted as failed.",
           [](const observe::kind_stats& k) { return k.timed_out; });
  if (out.family("dx_late_results_total", metric_type::counter,
                 "Results that came after their task was cancelled or timed out, discarded: from workers, and from "
                 "local tasks of this process."))
    out.sample("dx_late_results_total", {}, static_cast<double>(late_results_ + late_completions()));
  // Replicated tasks and deadlines (replication.cpp).
  auto total = [&](const char* name, const char* help, std::uint64_t value) {
    if (out.family(name, metric_type::counter, help)) out.sample(name, {}, static_cast<double>(value));
  };
  total("dx_replica_copies_total",
        "Copies of replicated tasks and tasks with deadlines issued to workers, the first ones included.",
        copies_issued_);
  total("dx_replica_speculative_total", "Speculative twins of copies past their soft deadline (part of the copies).",
        copies_speculative_);
  total("dx_replica_reissued_total", "Copies issued again past their hard deadline (part of the copies).",
        copies_reissued_);
  total("dx_replica_trusted_alone_total", "Results of a trusted worker accepted alone (adaptive replication).",
        trusted_alone_);
  total("dx_replica_quorum_failures_total", "Replicated tasks that failed for want of a quorum.", quorums_failed_);
  std::vector<std::uint64_t> running;
  const std::vector<std::uint64_t> assigned = assigned_by_kind_locked(&running);
  if (out.family("dx_tasks_pending", metric_type::gauge, "Tasks at the head: waiting for inputs or for a worker.")) {
    for (std::size_t i = 0; i < kinds_.size(); ++i) {
      const std::uint64_t open = kinds_[i]->open();
      out.sample("dx_tasks_pending", {{"kind", kinds_[i]->name}},
                 static_cast<double>(open > assigned[i] ? open - assigned[i] : 0));
    }
  }
  if (out.family("dx_tasks_assigned", metric_type::gauge, "Tasks sent to a worker and not finished.")) {
    for (std::size_t i = 0; i < kinds_.size(); ++i)
      out.sample("dx_tasks_assigned", {{"kind", kinds_[i]->name}}, static_cast<double>(assigned[i]));
  }
  if (out.family("dx_tasks_running", metric_type::gauge,
                 "Tasks running on a worker, as its last heartbeat reported (part of dx_tasks_assigned).")) {
    for (std::size_t i = 0; i < kinds_.size(); ++i)
      out.sample("dx_tasks_running", {{"kind", kinds_[i]->name}}, static_cast<double>(running[i]));
  }
  if (out.family("dx_task_duration_seconds", metric_type::histogram, "Run time of completed tasks, by kind.")) {
    for (const auto& k : kinds_) {
      const label_ref l[] = {{"kind", k->name}};
      out.histogram_samples("dx_task_duration_seconds", l, observe::duration_bounds, k->durations.counts,
                            k->durations.sum);
    }
  }
  // Workers.
  const sched::forecast_result& fc = cached_forecast_locked();
  const auto now = head_clock::now();
  auto per_worker = [&](const char* name, const char* help, auto value) {
    if (!out.family(name, metric_type::gauge, help)) return;
    for (const auto& [id, w] : workers_)
      if (w->state != worker_state::gone) out.sample(name, {{"worker", id}}, static_cast<double>(value(*w)));
  };
  per_worker("dx_worker_threads", "Threads of the worker.", [](const worker_rec& w) { return w.threads; });
  per_worker("dx_worker_busy_threads", "Threads running a task, as the worker's last heartbeat reported.",
             [&](const worker_rec& w) { return busy_locked(w); });
  per_worker("dx_worker_queue_depth", "Tasks sent to the worker and not started.",
             [&](const worker_rec& w) { return sched_->sent_count(w.sid) - busy_locked(w); });
  per_worker("dx_worker_memory_bytes", "Resident memory of the worker process.",
             [&](const worker_rec& w) { return w.local ? resident_memory_bytes() : w.memory_bytes; });
  per_worker("dx_worker_stored_bytes", "Results the worker keeps for others.",
             [](const worker_rec& w) { return w.stored_bytes; });
  per_worker("dx_worker_heartbeat_age_seconds", "Seconds since the worker was last heard from.",
             [&](const worker_rec& w) { return std::chrono::duration<double>(now - w.last_seen).count(); });
  per_worker("dx_worker_rtt_seconds", "Round trip head -> worker -> head, smoothed over the head's pings.",
             [](const worker_rec& w) { return w.round_trip.seconds(); });
  per_worker("dx_worker_rtt_jitter_seconds", "Mean deviation of the worker's round trips from the smoothed one.",
             [](const worker_rec& w) { return w.round_trip.jitter(); });
  per_worker("dx_worker_predicted_backlog_seconds", "Predicted work placed on the worker, per thread.",
             [&](const worker_rec& w) { return backlog_of(fc, w.sid); });
  if (out.family("dx_worker_resource_capacity", metric_type::gauge, "Resources the worker declared.")) {
    for (const auto& [id, w] : workers_)
      if (w->state != worker_state::gone)
        for (const auto& [r, amount] : w->resources)
          out.sample("dx_worker_resource_capacity", {{"worker", id}, {"resource", r}}, amount);
  }
  if (out.family("dx_worker_state", metric_type::gauge, "1 for the state each worker is in.")) {
    for (const auto& [id, w] : workers_)
      out.sample("dx_worker_state", {{"worker", id}, {"state", state_name(w->state)}}, 1);
  }
  if (out.family("dx_workers", metric_type::gauge, "Workers by state.")) {
    constexpr int states = static_cast<int>(worker_state::offline) + 1;
    std::size_t by[states] = {};
    for (const auto& [id, w] : workers_) ++by[static_cast<int>(w->state)];
    for (int i = 0; i < states; ++i)
      out.sample("dx_workers", {{"state", state_name(static_cast<worker_state>(i))}}, static_cast<double>(by[i]));
  }
  // Replication: workers' records of checked results, and the copies issued.
  if (out.family("dx_worker_results_total", metric_type::counter,
                 "Results of a worker checked against other workers' copies (valid, invalid), its attempts lost "
                 "with it (lost) and its copies answered past their hard deadline (late).")) {
    for (const auto& [name, r] : reliability_) {
      out.sample("dx_worker_results_total", {{"worker", name}, {"outcome", "valid"}}, static_cast<double>(r.valid));
      out.sample("dx_worker_results_total", {{"worker", name}, {"outcome", "invalid"}}, static_cast<double>(r.invalid));
      out.sample("dx_worker_results_total", {{"worker", name}, {"outcome", "lost"}}, static_cast<double>(r.lost));
      out.sample("dx_worker_results_total", {{"worker", name}, {"outcome", "late"}}, static_cast<double>(r.late));
    }
  }
  if (out.family("dx_worker_consecutive_valid", metric_type::gauge,
                 "Valid results of the worker since its last invalid one (adaptive replication trusts from 10).")) {
    for (const auto& [name, r] : reliability_)
      out.sample("dx_worker_consecutive_valid", {{"worker", name}}, static_cast<double>(r.consecutive_valid));
  }
  if (out.family("dx_worker_quarantined", metric_type::gauge, "1 for a worker quarantined for invalid results.")) {
    for (const auto& [name, r] : reliability_)
      out.sample("dx_worker_quarantined", {{"worker", name}}, r.quarantined ? 1 : 0);
  }
  // Links.
  if (out.family("dx_link_bytes_total", metric_type::counter,
                 "Bytes sent over a link: head to worker and back (frames), worker to worker (results).")) {
    for (const auto& [id, w] : workers_) {
      if (w->local) continue;  // the head's own threads: not a network link
      // A worker that joined again under its name continues its counters.
      const std::uint64_t to = w->bytes_to_final + (w->conn ? w->conn->bytes_sent() : 0);
      const std::uint64_t from = w->bytes_from_final + (w->conn ? w->conn->bytes_received() : 0);
      out.sample("dx_link_bytes_total", {{"from", "head"}, {"to", id}}, static_cast<double>(to));
      out.sample("dx_link_bytes_total", {{"from", id}, {"to", "head"}}, static_cast<double>(from));
    }
    for (const auto& [link, st] : links_)
      if (link.second != observe::no_worker)
        out.sample("dx_link_bytes_total", {{"from", worker_name(link.first)}, {"to", worker_name(link.second)}},
                   static_cast<double>(st.bytes));
  }
  if (out.family("dx_transfer_duration_seconds", metric_type::histogram,
                 "Time to move a result from one worker to another (or to the head).")) {
    for (const auto& [link, st] : links_) {
      const std::string from = worker_name(link.first), to = worker_name(link.second);
      const label_ref l[] = {{"from", from}, {"to", to}};
      out.histogram_samples("dx_transfer_duration_seconds", l, observe::duration_bounds, st.durations.counts,
                            st.durations.sum);
    }
  }
  // Model, forecast, alerts.
  if (out.family("dx_prediction_error_ratio", metric_type::gauge,
                 "Median |predicted - actual| / actual of a kind's run time, once it has 20 samples.")) {
    for (const auto& a : model_.accuracy())
      if (a.calibrated_samples > 0) out.sample("dx_prediction_error_ratio", {{"kind", a.kind}}, a.median_ape);
  }
  if (out.family("dx_forecast_remaining_seconds", metric_type::gauge,
                 "Predicted time until every submitted task has finished."))
    out.sample("dx_forecast_remaining_seconds", {}, fc.remaining_seconds);
  if (out.family("dx_forecast_remaining_sd_seconds", metric_type::gauge, "Spread of that prediction."))
    out.sample("dx_forecast_remaining_sd_seconds", {}, fc.remaining_sd);
  if (out.family("dx_forecast_lower_bound_seconds", metric_type::gauge,
                 "Lower bound of the time left: critical path, or work over threads."))
    out.sample("dx_forecast_lower_bound_seconds", {}, fc.lower_bound);
  if (out.family("dx_uptime_seconds", metric_type::gauge, "Seconds since the cluster started."))
    out.sample("dx_uptime_seconds", {}, now_seconds());
  if (http_ &&
      out.family("dx_http_requests_total", metric_type::counter, "HTTP requests served, by path and status.")) {
    for (const auto& [key, n] : http_->counts().by_path_and_code)
      out.sample("dx_http_requests_total", {{"path", key.first}, {"code", std::to_string(key.second)}},
                 static_cast<double>(n));
  }
  if (http_ && out.family("dx_http_websocket_clients", metric_type::gauge,
                          "Clients of the WebSocket /api/events connected now."))
    out.sample("dx_http_websocket_clients", {}, static_cast<double>(http_->websocket_clients()));
  if (http_ && out.family("dx_http_websocket_dropped_total", metric_type::counter,
                          "WebSocket clients dropped for leaving more than options::websocket_queue_bytes unread."))
    out.sample("dx_http_websocket_dropped_total", {}, static_cast<double>(http_->websocket_dropped()));
}

const char* state_name(worker_state s) noexcept {
  switch (s) {
    case worker_state::active:
      return "active";
    case worker_state::leaving:
      return "leaving";
    case worker_state::gone:
      return "gone";
    case worker_state::quarantined:
      return "quarantined";
    case worker_state::offline:
      return "offline";
  }
  return "?";
}

}  // namespace dx::detail
