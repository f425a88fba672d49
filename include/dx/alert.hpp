// dx/alert.hpp — what the scheduler warns about while a cluster runs.
//
//   cl.on_alert([](const dx::alert& a) { std::cerr << "[" << dx::to_string(a.kind) << "] " << a.message << "\n"; });
//
// Each rule fires when its condition starts, and again only after it has cleared. Alerts are
// also written to dx's log (warning level).
#pragma once

#include <dx/detail/chrono.hpp>
#include <dx/detail/metric_labels.hpp>
#include <dx/export.hpp>

#include <cstdint>
#include <string>

namespace dx {

/// The labels of one metric series (the same type as in dx/metrics.hpp).
using metric_labels = detail::metric_labels;

enum class alert_kind : std::uint8_t {
  saturation,          ///< every worker is backed up: more workers would finish sooner
  imbalance,           ///< one worker's backlog far above the mean while another idles
  network_bound,       ///< moving inputs is predicted to cost more than computing
  straggler,           ///< a task has run past 2x its prediction
  prediction_drift,    ///< a kind's recent prediction error is far above its usual
  worker_lost,         ///< a worker went away without leaving
  unplaceable,         ///< a task needs resources no worker has
  worker_quarantined,  ///< a worker's results were invalid too often: it receives no more work
  /// the workflow journal's store cannot be reached (its commits are held by the head until it is
  /// back), is back, or another head took the journal over (subject: the journal)
  journal_unavailable,
  rule,  ///< a user's alert_rule over a metric (subject: the rule's name)
};

/// Number of alert kinds (for tables indexed by kind).
inline constexpr std::size_t alert_kind_count = static_cast<std::size_t>(alert_kind::rule) + 1;

/// The kind's name, "saturation", "worker_lost", ... Thread-safe; does not block.
DX_API const char* to_string(alert_kind k) noexcept;

/// One alert, as passed to cluster::on_alert callbacks. A plain value: safe to copy and read from
/// many threads.
struct alert {
  alert_kind kind = alert_kind::saturation;
  std::string subject;   ///< the worker, kind or task it is about ("cluster" for the whole)
  std::string message;   ///< a sentence with the numbers
  double value = 0;      ///< the measured quantity
  double threshold = 0;  ///< what it was compared with
  std::chrono::system_clock::time_point time;
};

/// A user rule: an alert when a sample of a metric stays above (or below) a threshold for a
/// while, like a Prometheus alerting rule. Each series of the metric that matches the labels is
/// watched on its own; an alert fires when its condition has held for `for_duration`, and again
/// only after it has cleared. Rules are evaluated at each heartbeat interval (options::heartbeat,
/// 0.5 s by default): by the head of a distributed cluster, by a thread of the cluster's own
/// otherwise, over whatever metrics the cluster has (an application's own included).
///
///   cl.add_alert_rule(dx::alert_rule("queue backed up").on("dx_worker_queue_depth").above(100)
///                         .for_at_least(std::chrono::seconds(10)));
///   cl.add_alert_rule(dx::alert_rule("no progress").on("dx_tasks_completed_total").rate_per_second()
///                         .below(1).for_at_least(std::chrono::seconds(30)));
///
/// Each setter returns *this so settings chain. A rule is safe to read from many threads; its
/// setters are not (set it up on one thread). Nothing here blocks.
///
/// Deprecated: writing the data members directly still works for this release; use on(), above(),
/// below(), for_at_least() and rate_per_second(). Reading the members stays.
struct alert_rule {
  enum class comparison : std::uint8_t { above, below };

  std::string name;
  std::string metric;    ///< a sample name: a counter, a gauge, or a histogram's x_count / x_sum
  metric_labels labels;  ///< only the series that have these labels (every series when empty)
  comparison when = comparison::above;
  double threshold = 0;
  std::chrono::milliseconds for_duration{0};
  bool rate = false;  ///< compare the per-second increase of the value (counters), not the value

  /// A rule called `rule_name` (unique within a cluster), watching nothing yet. Thread-safe; does
  /// not block.
  explicit alert_rule(std::string rule_name) : name(std::move(rule_name)) {}
  /// Watches the sample `sample`, only its series with the labels `match` (every series when
  /// empty). Not thread-safe; does not block.
  alert_rule& on(std::string sample, metric_labels match = {}) {
    metric = std::move(sample);
    labels = std::move(match);
    return *this;
  }
  /// Fires while the value is above `t`. Not thread-safe; does not block.
  alert_rule& above(double t) noexcept {
    when = comparison::above;
    threshold = t;
    return *this;
  }
  /// Fires while the value is below `t`. Not thread-safe; does not block.
  alert_rule& below(double t) noexcept {
    when = comparison::below;
    threshold = t;
    return *this;
  }
  /// Fires only once the condition has held this long (default 0). Not thread-safe; does not block.
  alert_rule& for_at_least(std::chrono::milliseconds d) noexcept {
    for_duration = d;
    return *this;
  }
  /// Compares the per-second increase of the value (for counters), not the value. Not thread-safe;
  /// does not block.
  alert_rule& rate_per_second(bool yes = true) noexcept {
    rate = yes;
    return *this;
  }
};

}  // namespace dx
