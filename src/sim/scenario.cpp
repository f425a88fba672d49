// Scenarios and their summaries: the clusters a simulation runs on (speeds, churn), the
// makespan a cluster could reach at best, and the statistics of a result. The engine that runs a
// scenario is simulator.cpp.
#include "sim/simulator.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

namespace dx::sim {

const char* to_string(leave_kind k) noexcept {
  switch (k) {
    case leave_kind::graceful:
      return "graceful";
    case leave_kind::crash:
      return "crash";
    case leave_kind::zombie:
      return "zombie";
  }
  return "?";
}

const char* to_string(scheduler_call c) noexcept {
  static constexpr const char* names[scheduler_call_count] = {
      "decide",         "task_submitted", "task_ready",      "task_started",     "task_finished", "task_returned",
      "move_answered",  "worker_joined",  "worker_draining", "worker_left",      "load_report",   "transfer_measured",
      "set_round_trip", "forecast",       "take_alerts",     "worker_round_trip"};
  const auto i = static_cast<std::size_t>(c);
  return i < scheduler_call_count ? names[i] : "?";
}

std::vector<worker_def> make_cluster(const cluster_options& o) {
  std::mt19937_64 rng(o.seed);
  std::vector<worker_def> out;
  out.reserve(o.workers);
  const double lo = std::min(o.min_speed, o.max_speed), hi = std::max(o.min_speed, o.max_speed);
  std::uniform_real_distribution<double> u(std::log(lo), std::log(hi));
  // Round trips come from a stream of their own: adding them leaves the speeds of a seed as they were.
  std::mt19937_64 rtt_rng(o.seed ^ 0x5851f42d4c957f2dull);
  const double rtt_lo = std::max(0.0, std::min(o.min_round_trip, o.max_round_trip)),
               rtt_hi = std::max(o.min_round_trip, o.max_round_trip);
  const bool log_uniform = rtt_lo > 0;
  std::uniform_real_distribution<double> rtt(log_uniform ? std::log(rtt_lo) : 0.0,
                                             log_uniform ? std::log(rtt_hi) : rtt_hi);
  for (std::size_t i = 0; i < o.workers; ++i) {
    worker_def w;
    // Appended rather than "w" + to_string(i): GCC 12 warns falsely (-Wrestrict) on the latter.
    w.name = "w";
    w.name += std::to_string(i);
    w.threads = std::max<std::uint32_t>(1, o.threads);
    w.speed = hi > lo ? std::exp(u(rng)) : lo;
    w.bandwidth = o.bandwidth;
    w.latency = o.latency;
    if (rtt_hi > 0) {
      const double x = rtt(rtt_rng);
      w.head_latency = (log_uniform ? std::exp(x) : x) / 2;
    }
    w.head_jitter = o.head_jitter;
    w.capacity = o.capacity;
    out.push_back(std::move(w));
  }
  return out;
}

void add_churn(std::vector<worker_def>& workers, const churn_options& o) {
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> when(o.start, std::max(o.start, o.end));
  std::uniform_real_distribution<double> u01(0, 1);
  const double leave_total = o.leave_fraction + o.crash_fraction + o.zombie_fraction;
  for (std::size_t i = o.keep; i < workers.size(); ++i) {
    worker_def& w = workers[i];
    // Both draws happen for every worker so that changing one fraction does not reshuffle the
    // rest of the churn.
    const double j = u01(rng), l = u01(rng), t1 = when(rng), t2 = when(rng);
    if (j < o.join_fraction) w.join_time = t1;
    if (l < leave_total) {
      w.leave = l < o.leave_fraction                      ? leave_kind::graceful
                : l < o.leave_fraction + o.crash_fraction ? leave_kind::crash
                                                          : leave_kind::zombie;
      w.leave_time = std::max(t2, w.join_time + 0.25 * (o.end - o.start) + 1e-3);
    }
  }
}

double estimate_makespan(const graph& g, const std::vector<worker_def>& workers) {
  double capacity = 0, threads = 0;
  for (const worker_def& w : workers) {
    capacity += w.threads / w.speed;
    threads += w.threads;
  }
  if (workers.empty() || capacity <= 0) return 0;
  // A busy cluster runs a task at the thread-weighted harmonic mean of the speed factors.
  return std::max(g.critical_path() * threads / capacity, g.total_work() / capacity);
}

double result::decisions_per_second() const noexcept {
  const double s = scheduler_seconds - scheduler_profile[static_cast<std::size_t>(scheduler_call::forecast)].seconds;
  return s > 0 ? static_cast<double>(decisions) / s : 0;
}

namespace {

std::vector<double> select_apes(const std::vector<prediction_sample>& p, std::size_t first, std::size_t last,
                                int kind) {
  std::vector<double> v;
  last = std::min(last, p.size());
  for (std::size_t i = first; i < last; ++i)
    if (kind < 0 || p[i].kind == static_cast<std::uint32_t>(kind)) v.push_back(p[i].ape);
  return v;
}

}  // namespace

double result::median_ape(std::size_t first, std::size_t last, int kind) const {
  auto v = select_apes(predictions, first, last, kind);
  if (v.empty()) return 0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

double result::mean_ape(std::size_t first, std::size_t last, int kind) const {
  auto v = select_apes(predictions, first, last, kind);
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

}  // namespace dx::sim
