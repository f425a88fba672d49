// How metrics are read: a registry and the runtime's collectors write families and samples to an
// exposition, which renders them as Prometheus text or keeps the ones an alert rule watches.
#pragma once

#include <dx/metrics.hpp>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dx::detail {

enum class metric_type : std::uint8_t { counter, gauge, histogram };

struct label_ref {
  std::string_view name;
  std::string_view value;
};

class exposition {
 public:
  virtual ~exposition() = default;
  /// Starts a family; its samples follow. False: nobody wants it, the caller may skip them.
  virtual bool family(std::string_view name, metric_type type, std::string_view help) = 0;
  virtual void sample(std::string_view name, std::span<const label_ref> labels, double value) = 0;

  void sample(std::string_view name, std::initializer_list<label_ref> labels, double value) {
    sample(name, std::span<const label_ref>(labels.begin(), labels.size()), value);
  }
  /// A histogram's _bucket (cumulative, with le), _sum and _count samples from per-bucket counts
  /// (counts.size() == bounds.size() + 1, the last for +Inf).
  void histogram_samples(std::string_view family, std::span<const label_ref> labels, std::span<const double> bounds,
                         std::span<const std::uint64_t> counts, double sum);
};

/// Renders the Prometheus text exposition format 0.0.4.
class text_exposition final : public exposition {
 public:
  bool family(std::string_view name, metric_type type, std::string_view help) override;
  void sample(std::string_view name, std::span<const label_ref> labels, double value) override;
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

/// Keeps the samples of the named families (each sample with its labels as name=value pairs,
/// sorted by name).
class sample_reader final : public exposition {
 public:
  struct sample_value {
    std::string name;
    metric_labels labels;
    double value = 0;
  };
  explicit sample_reader(std::set<std::string, std::less<>> families) : wanted_(std::move(families)) {}
  bool family(std::string_view name, metric_type type, std::string_view help) override;
  void sample(std::string_view name, std::span<const label_ref> labels, double value) override;
  std::vector<sample_value>& samples() { return samples_; }

 private:
  std::set<std::string, std::less<>> wanted_;
  bool taking_ = false;
  std::vector<sample_value> samples_;
};

/// The family a sample belongs to: "x_bucket", "x_sum", "x_count" may be samples of histogram x.
std::vector<std::string> families_of_sample(std::string_view sample);

/// Formats a sample value as Prometheus does (+Inf, -Inf, NaN, shortest round-trip otherwise).
std::string format_metric_value(double v);

struct metrics_access {
  using collector = std::function<void(exposition&)>;
  /// Adds a source of samples, called on every read; returns a key for remove_collector.
  static std::uint64_t add_collector(metrics& m, collector c);
  static void remove_collector(metrics& m, std::uint64_t key);
  /// Writes the registry's own metrics, then every collector's.
  static void collect(const metrics& m, exposition& out);
};

}  // namespace dx::detail
