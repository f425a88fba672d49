// The head's side of its views: copies of its records for observe's /api/state, /api/tasks,
// /api/trace and /metrics (rendered by observe/head_views.cpp outside the head's lock).
#include "cluster/head_state.hpp"
#include "common/process_stats.hpp"

#include <dx/version.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace dx::detail {

observe::state_record head_impl::view_state() const {
  observe::state_record s;
  s.alerts = alerts_.recent();
  std::lock_guard lock(mutex_);
  s.version = fmt::format("{}.{}.{}", DX_VERSION_MAJOR, DX_VERSION_MINOR, DX_VERSION_PATCH);
  s.now = unix_seconds(now_seconds());
  s.started = epoch_unix_;
  s.policy = sched::to_string(sched_->settings().kind);
  const std::vector<std::uint64_t> assigned = assigned_by_kind_locked();
  for (std::size_t i = 0; i < kinds_.size(); ++i) {
    const observe::kind_stats& k = *kinds_[i];
    observe::kind_record& r = s.kinds.emplace_back();
    r.kind = k.name;
    r.submitted = k.submitted;
    r.completed = k.completed;
    r.failed = k.failed;
    r.retried = k.retried;
    r.pausing = k.pausing;
    r.moved = k.moved;
    r.open = k.open();
    r.assigned = assigned[i];
    r.runs = k.durations.count();
    r.run_seconds = k.durations.sum;
  }
  for (const auto& a : model_.accuracy())
    if (a.calibrated_samples > 0)
      for (auto& r : s.kinds)
        if (r.kind == a.kind) r.prediction_error = a.median_ape;
  const sched::forecast_result& fc = cached_forecast_locked();
  const auto now = head_clock::now();
  for (const auto& [id, w] : workers_) {
    observe::worker_record& r = s.workers.emplace_back();
    for (const auto& k : kinds_) {
      if (w->sid < k->completed_on.size()) r.completed += k->completed_on[w->sid];
      if (w->sid < k->failed_on.size()) r.failed += k->failed_on[w->sid];
    }
    r.id = id;
    r.address = w->data_address;
    r.state = state_name(w->state);
    r.threads = w->threads;
    r.busy = busy_locked(*w);
    r.assigned = sched_->sent_count(w->sid);
    r.memory_bytes = w->local ? resident_memory_bytes() : w->memory_bytes;
    r.stored_bytes = w->stored_bytes;
    r.resources = w->resources;
    r.heartbeat_age_seconds = std::chrono::duration<double>(now - w->last_seen).count();
    r.rtt_seconds = w->round_trip.seconds();
    r.rtt_jitter_seconds = w->round_trip.jitter();
    r.backlog_seconds = backlog_of(fc, w->sid);
    r.pid = w->pid;
    if (auto rel = reliability_.find(id); rel != reliability_.end()) {
      r.valid = rel->second.valid;
      r.invalid = rel->second.invalid;
      r.lost = rel->second.lost;
      r.late = rel->second.late;
      r.consecutive_valid = rel->second.consecutive_valid;
      r.quarantined = rel->second.quarantined;
    }
  }
  std::stable_sort(s.workers.begin(), s.workers.end(),
                   [](const observe::worker_record& a, const observe::worker_record& b) {
                     return (a.id == "head") > (b.id == "head");
                   });
  s.remaining_seconds = fc.remaining_seconds;
  s.remaining_sd = fc.remaining_sd;
  s.lower_bound_seconds = fc.lower_bound;
  s.finish_time = unix_seconds(now_seconds() + fc.remaining_seconds);
  s.tasks_left = fc.tasks_left;
  s.bottleneck = fc.bottleneck;
  s.critical_path = fc.critical_path;
  s.uncalibrated_kinds = fc.uncalibrated_kinds;
  s.completion_rate = observe::completion_rate(task_events_, now_seconds(), 30.0);
  s.events_first = task_events_.first();
  s.events_next = task_events_.next();
  // Tasks running now (as heartbeats reported them), for the task stream's open bars.
  for (const auto& [id, w] : workers_) {
    if (w->state == worker_state::gone) continue;
    for (auto task : sched_->tasks_on(w->sid)) {
      if (s.running.size() >= max_running_listed) break;
      auto it = tasks_.find(task);
      if (it == tasks_.end() || it->second.running_since < 0) continue;
      s.running.push_back({task, kinds_[it->second.kind]->name, id, it->second.running_thread,
                           run_number(it->second, it->second.attempt), unix_seconds(it->second.running_since)});
    }
  }
  return s;
}

/// The events are copied under the lock and written out after it: a page of 10,000 events takes
/// milliseconds to format, which dispatching should not wait for.
observe::task_page head_impl::view_tasks(std::optional<std::uint64_t> since, std::size_t limit) const {
  observe::task_page p;
  std::lock_guard lock(mutex_);
  p.first = task_events_.first();
  p.next = task_events_.next();
  p.from = std::min(since ? std::max(*since, p.first) : (p.next - p.first > limit ? p.next - limit : p.first), p.next);
  p.to = std::min<std::uint64_t>(p.next, p.from + limit);
  p.events.reserve(static_cast<std::size_t>(p.to - p.from));
  for (std::uint64_t seq = p.from; seq < p.to; ++seq) p.events.push_back(task_events_.at(seq));
  for (const auto& k : kinds_) p.kinds.push_back(k->name);
  for (const worker_rec* w : by_sid_) p.workers.push_back(w ? w->id : std::string("none"));
  p.epoch_unix = epoch_unix_;
  return p;
}

observe::trace_input head_impl::view_trace() const {
  observe::trace_input in;
  {
    std::lock_guard lock(mutex_);
    // Shared, not copied: the lock is held for a pointer per 4096 events.
    in.tasks = task_events_.snapshot();
    in.transfers = transfer_events_.snapshot();
    for (const auto& k : kinds_) in.kinds.push_back(k->name);
    for (const worker_rec* w : by_sid_) in.workers.push_back(w ? w->id : std::string("none"));
    in.epoch_unix_us = epoch_unix_ * 1e6;
  }
  // The extension's names for its tasks (a workflow's steps and chunks), asked without the head's
  // lock: the extension takes locks of its own, which are held while it calls the head.
  if (auto ext = extensions_ ? extensions_->get() : nullptr; ext && !in.tasks.empty()) {
    std::vector<std::uint64_t> ids;
    ids.reserve(in.tasks.size());
    for (const auto& e : in.tasks) ids.push_back(e.task);
    in.labels = ext->task_labels(ids);
  }
  return in;
}

std::string head_impl::trace_json() const {
  std::string out;
  observe::write_chrome_trace(view_trace(), out);
  return out;
}

std::string head_impl::metrics_text() const { return metrics_.render(); }

std::string head_impl::http_endpoint() const { return http_ ? http_->endpoint() : std::string(); }

}  // namespace dx::detail
