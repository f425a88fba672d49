// The alerts of one cluster, local or distributed: user rules evaluated over dx::metrics, alerts
// the runtime raises (the scheduler's), the recent ones for the dashboard, counts by kind for
// /metrics, and the callbacks that receive them. It needs only the metrics registry.
#pragma once

#include <dx/alert.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace dx {
class metrics;
}

namespace dx::detail::observe {

class alert_center {
 public:
  /// Registers a collector for dx_alerts_total and dx_alert_active with `registry`, which must
  /// outlive this object.
  explicit alert_center(dx::metrics& registry);
  ~alert_center();
  alert_center(const alert_center&) = delete;
  alert_center& operator=(const alert_center&) = delete;

  /// Validates and adds a rule. Throws dx::error naming what is wrong (no name, no metric, a
  /// negative duration, a NaN threshold, a name already used). Thread-safe; does not block.
  void add_rule(alert_rule rule);
  /// Whether any rule was added. Thread-safe.
  bool has_rules() const;
  /// Thread-safe; the callback runs on the thread that calls deliver().
  void on_alert(std::function<void(const alert&)> callback);
  /// Records an alert (logged at warning level, or at info when a callback will receive it) for the callbacks, the
  /// recent list and the metric. Thread-safe; never calls back into the caller.
  void raise(alert a);
  /// Reads the metrics the rules watch and raises the alerts of the rules whose condition has
  /// held long enough. `now`: seconds on any steady clock. Reading metrics runs the registry's
  /// collectors: the caller must hold no lock a collector takes. Thread-safe.
  void evaluate(double now);
  /// Runs the callbacks for the alerts raised since the last call, on the calling thread, with
  /// no lock held. Thread-safe.
  void deliver();
  bool has_pending() const;
  /// The last 100 alerts, oldest first. Thread-safe.
  std::vector<alert> recent() const;

 private:
  struct series_watch {
    double since = -1;  // when the condition started to hold; -1: it does not
    bool firing = false;
    double last_value = std::numeric_limits<double>::quiet_NaN();
    double last_time = 0;
  };
  struct rule_watch {
    alert_rule rule;
    std::map<metric_labels, series_watch> series;
    explicit rule_watch(alert_rule r) : rule(std::move(r)) {}
  };
  static constexpr std::size_t max_recent = 100;

  dx::metrics& registry_;
  std::uint64_t collector_key_ = 0;

  std::mutex rules_mutex_;  // taken before mutex_ (evaluation reads metrics in between)
  std::vector<rule_watch> rules_;

  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, bool>> rule_active_;
  std::deque<alert> recent_;
  std::array<std::uint64_t, alert_kind_count> by_kind_{};
  std::vector<alert> pending_;
  std::vector<std::function<void(const alert&)>> callbacks_;
};

}  // namespace dx::detail::observe
