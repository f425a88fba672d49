// dx/metrics.hpp — counters, gauges and histograms an application adds to its cluster's metrics.
//
//   dx::cluster cl{dx::options{}.local_processes(2).http("127.0.0.1:8787")};
//   dx::counter rows = cl.metrics().add_counter("app_rows_read_total", "Rows read", {{"source", "csv"}});
//   dx::histogram lat = cl.metrics().add_histogram("app_parse_seconds", "Time to parse a file",
//                                                  dx::metrics::exponential_buckets(0.001, 4, 8));
//   rows.inc(1000);
//   lat.observe(0.012);
//   // GET http://127.0.0.1:8787/metrics shows them next to dx's own dx_* metrics, and
//   // cl.add_alert_rule(...) can watch them.
//
// Handles are cheap to copy and to use from any thread: an update is one relaxed atomic
// operation. Adding the same name with the same labels again returns the same series. A name or
// label that the Prometheus format does not allow, a name registered as another type, or another
// set of label names under one name is a dx::error that says which.
#pragma once

#include <dx/detail/metric_labels.hpp>
#include <dx/export.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dx {

/// The labels of one series: {{"source", "csv"}, {"region", "eu"}}.
using metric_labels = detail::metric_labels;

namespace detail {
struct metric_cell {
  std::atomic<double> value{0};
};
struct histogram_cell {
  std::vector<double> bounds;                            // upper bounds, ascending; +Inf implied
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts;  // bounds.size() + 1, not cumulative
  std::atomic<double> sum{0};
};
class exposition;
struct metrics_access;
}  // namespace detail

/// A value that only goes up (requests served, bytes read). Negative increments are ignored.
class counter {
 public:
  counter() = default;  ///< detached: updates go nowhere
  /// Adds `by` (ignored unless positive). Thread-safe (one relaxed atomic add); does not block.
  void inc(double by = 1) noexcept {
    if (cell_ && by > 0) cell_->value.fetch_add(by, std::memory_order_relaxed);
  }
  /// The current value (0 when detached). Thread-safe; does not block.
  double value() const noexcept { return cell_ ? cell_->value.load(std::memory_order_relaxed) : 0; }

 private:
  friend class metrics;
  explicit counter(detail::metric_cell* c) noexcept : cell_(c) {}
  detail::metric_cell* cell_ = nullptr;
};

/// A value that goes up and down (items in a buffer, temperature).
class gauge {
 public:
  gauge() = default;  ///< detached: updates go nowhere
  /// Sets the value. Thread-safe (one relaxed atomic store); does not block.
  void set(double v) noexcept {
    if (cell_) cell_->value.store(v, std::memory_order_relaxed);
  }
  /// Adds / subtracts `by`. Thread-safe (one relaxed atomic add); does not block.
  void inc(double by = 1) noexcept {
    if (cell_) cell_->value.fetch_add(by, std::memory_order_relaxed);
  }
  void dec(double by = 1) noexcept { inc(-by); }
  /// The current value (0 when detached). Thread-safe; does not block.
  double value() const noexcept { return cell_ ? cell_->value.load(std::memory_order_relaxed) : 0; }

 private:
  friend class metrics;
  explicit gauge(detail::metric_cell* c) noexcept : cell_(c) {}
  detail::metric_cell* cell_ = nullptr;
};

/// Counts observations into buckets (durations, sizes); exposed as _bucket, _sum and _count.
class histogram {
 public:
  histogram() = default;  ///< detached: observations go nowhere
  /// Counts `v` into the first bucket whose bound is at least `v` and adds it to the sum.
  /// Thread-safe (relaxed atomic adds; a reader may see the count before the sum); does not block.
  void observe(double v) noexcept {
    if (!cell_) return;
    std::size_t i = 0;
    const std::size_t n = cell_->bounds.size();
    while (i < n && v > cell_->bounds[i]) ++i;
    cell_->counts[i].fetch_add(1, std::memory_order_relaxed);
    cell_->sum.fetch_add(v, std::memory_order_relaxed);
  }
  /// Observations so far, and their sum (0 when detached). Thread-safe; do not block.
  std::uint64_t count() const noexcept;
  double sum() const noexcept { return cell_ ? cell_->sum.load(std::memory_order_relaxed) : 0; }

 private:
  friend class metrics;
  explicit histogram(detail::histogram_cell* c) noexcept : cell_(c) {}
  detail::histogram_cell* cell_ = nullptr;
};

/// A registry of metrics, rendered in the Prometheus text format. Each cluster has one
/// (cluster::metrics()); it also holds the runtime's own dx_* metrics, computed when read.
class DX_API metrics {
 public:
  /// An empty registry (dx's own metrics are added by the cluster that owns it). Does not block.
  metrics();
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  /// Adds a series (or returns the existing one with this name and these labels). Throws
  /// dx::error for an invalid name or label, or a name registered as another type or with other
  /// label names. Thread-safe (takes the registry's lock); does not block beyond it.
  counter add_counter(std::string_view name, std::string_view help, const metric_labels& labels = {});
  gauge add_gauge(std::string_view name, std::string_view help, const metric_labels& labels = {});
  /// `bounds`: the buckets' upper bounds, ascending (+Inf is added). Thread-safe, as add_counter;
  /// does not block beyond the registry's lock.
  histogram add_histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                          const metric_labels& labels = {});

  /// Everything, dx's metrics included, in the Prometheus text exposition format (0.0.4).
  /// Thread-safe; blocks only on the locks of the registry and of the runtime parts it reads.
  std::string render() const;
  /// The current value of one sample ("app_rows_read_total", or "app_parse_seconds_count" for a
  /// histogram's count) with exactly these labels; nullopt when there is no such sample.
  /// Thread-safe; blocks only on the locks of the registry and of the runtime parts it reads.
  std::optional<double> value(std::string_view sample, const metric_labels& labels = {}) const;

  /// `count` bounds start, start*factor, start*factor^2, ... Thread-safe; does not block.
  static std::vector<double> exponential_buckets(double start, double factor, std::size_t count);

 private:
  friend struct detail::metrics_access;
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dx
