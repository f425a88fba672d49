// Alerts: the rules over the scheduler's own view (saturation, imbalance, network-bound
// placements, stragglers, prediction drift, unplaceable tasks), each raised when its condition
// starts and again only after it has cleared; and the names of alert kinds.
#include "sched/placement.hpp"

#include <fmt/format.h>
#include <algorithm>

namespace dx::sched {

void scheduler::state::raise(alert_kind kind, const std::string& subject, std::string message, double value,
                             double threshold, double now) {
  bool& active = alert_active[{static_cast<int>(kind), subject}];
  if (active) return;
  active = true;
  alerts.push_back({kind, subject, std::move(message), value, threshold, now});
}

void scheduler::state::clear(alert_kind kind, const std::string& subject) {
  auto it = alert_active.find({static_cast<int>(kind), subject});
  if (it != alert_active.end()) it->second = false;
}

void scheduler::state::raise_unplaceable(const task_rec& t, double now) {
  std::string need;
  for (auto& [name, idx] : resource_names)
    for (auto [r, amount] : t.needs)
      if (r == idx) need += fmt::format("{}{}={}", need.empty() ? "" : ", ", name, amount);
  if (t.needs.empty()) {  // a copy whose spread leaves no worker
    raise(alert_kind::unplaceable, fmt::format("task {}", t.id),
          fmt::format("task {} ({}) is a copy that must run on a worker (or host) none of its other copies ran on, "
                      "and no such worker is active: it waits for one to join",
                      t.id, m.kind_name(t.kind)),
          0, 0, now);
    return;
  }
  raise(alert_kind::unplaceable, fmt::format("task {}", t.id),
        fmt::format("task {} ({}) needs {} and no worker has that much", t.id, m.kind_name(t.kind), need), 0, 0, now);
}

void scheduler::state::check_alerts(double now) {
  if (now - last_alert_check < 0.25) return;
  last_alert_check = now;
  std::size_t active = 0, idle = 0, backed_up = 0;
  double sum_load = 0, max_load = 0, min_load = infinity;
  const worker_rec* heaviest = nullptr;
  for (const worker_rec* wp : by_id) {  // in id order, as the map; a pass over a vector
    if (!wp || !in_buckets(*wp)) continue;
    const worker_rec& w = *wp;
    ++active;
    sum_load += w.load();
    if (w.load() > max_load) {
      max_load = w.load();
      heaviest = &w;
    }
    min_load = std::min(min_load, w.load());
    // Idle: nothing placed there, or its last heartbeat said it runs and queues nothing.
    if ((w.sent == 0 && w.held.empty()) || (w.reported_running == 0 && w.reported_queued == 0 && w.reported)) ++idle;
    if (w.sent + w.held.size() > w.threads) ++backed_up;
  }
  // Loads built on fallback durations (a kind with no samples yet counts 0.5 s) would raise
  // alarms about nothing.
  if (active > 0 && uncalibrated_placed == 0) {
    if (backed_up == active && min_load > cfg.saturation_wait_seconds) {
      raise(alert_kind::saturation, "cluster",
            fmt::format("all {} workers are backed up: a new task waits {:.1f} s at best; more workers would "
                        "finish sooner",
                        active, min_load),
            min_load, cfg.saturation_wait_seconds, now);
    } else {
      clear(alert_kind::saturation, "cluster");
    }
    const double mean = sum_load / active;
    const worker_rec* flagged = nullptr;
    if (heaviest && idle > 0 && max_load > cfg.imbalance_min_seconds && max_load > cfg.imbalance_ratio * mean) {
      flagged = heaviest;
      raise(alert_kind::imbalance, heaviest->name,
            fmt::format("worker {} has {:.1f} s of work per thread, {:.1f}x the mean, while {} worker(s) idle",
                        heaviest->name, max_load, max_load / std::max(mean, 1e-9), idle),
            max_load / std::max(mean, 1e-9), cfg.imbalance_ratio, now);
    }
    // Every other worker's imbalance is over: a pass over the raised ones (a pass over the
    // workers would look each name up, 10,000 lookups at every check on a large cluster).
    const int kind = static_cast<int>(alert_kind::imbalance);
    for (auto it = alert_active.lower_bound({kind, std::string()}); it != alert_active.end() && it->first.first == kind;
         ++it)
      if (!flagged || it->first.second != flagged->name) it->second = false;
  }
  if (compute_window > 0) {
    const double ratio = transfer_window / compute_window;
    if (ratio > cfg.network_ratio && transfer_window > 0.1) {
      raise(
          alert_kind::network_bound, "cluster",
          fmt::format("moving inputs is predicted to take {:.1f}x the compute time of the tasks placed lately", ratio),
          ratio, cfg.network_ratio, now);
    } else {
      clear(alert_kind::network_bound, "cluster");
    }
    transfer_window *= 0.5;
    compute_window *= 0.5;
  }
  for (task_id id : running_tasks) {
    auto it = tasks.find(id);
    if (it == tasks.end() || it->second.state != task_state::running) continue;
    task_rec& t = it->second;
    const double expected = t.charge;
    if (t.straggler_reported || expected <= 0) continue;
    const double elapsed = now - t.started_at;
    if (elapsed > cfg.straggler_ratio * expected && elapsed > 0.05) {
      t.straggler_reported = true;
      const auto& w = worker(t.where);
      alerts.push_back({alert_kind::straggler, fmt::format("task {}", t.id),
                        fmt::format("task {} ({}) on {} has run {:.3f} s, {:.1f}x its prediction of {:.3f} s", t.id,
                                    m.kind_name(t.kind), w.name, elapsed, elapsed / expected, expected),
                        elapsed / expected, cfg.straggler_ratio, now});
    }
  }
  // Drift is about the learned model; a policy given true durations has none to drift.
  if (policy->learns()) {
    for (const kind_accuracy& a : model.accuracy()) {
      if (a.calibrated_samples < 20) continue;
      const double usual = std::max(a.median_ape, 1e-3);
      if (a.recent_ape > cfg.drift_ratio * usual && a.recent_ape > cfg.drift_min_error) {
        raise(alert_kind::prediction_drift, a.kind,
              fmt::format("predictions for {} are off by {:.0f}% lately against {:.0f}% usually", a.kind,
                          100 * a.recent_ape, 100 * a.median_ape),
              a.recent_ape, cfg.drift_ratio * usual, now);
      } else {
        clear(alert_kind::prediction_drift, a.kind);
      }
    }
  }
}

void scheduler::take_alerts(std::vector<alert_event>& out) {
  out.insert(out.end(), s_->alerts.begin(), s_->alerts.end());
  s_->alerts.clear();
}

}  // namespace dx::sched

namespace dx {
const char* to_string(alert_kind k) noexcept {
  switch (k) {
    case alert_kind::saturation:
      return "saturation";
    case alert_kind::imbalance:
      return "imbalance";
    case alert_kind::network_bound:
      return "network_bound";
    case alert_kind::straggler:
      return "straggler";
    case alert_kind::prediction_drift:
      return "prediction_drift";
    case alert_kind::worker_lost:
      return "worker_lost";
    case alert_kind::unplaceable:
      return "unplaceable";
    case alert_kind::worker_quarantined:
      return "worker_quarantined";
    case alert_kind::journal_unavailable:
      return "journal_unavailable";
    case alert_kind::rule:
      return "rule";
  }
  return "?";
}
}  // namespace dx
