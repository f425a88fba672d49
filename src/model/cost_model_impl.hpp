// The cost model's internals, with dense indexes for kinds, worker classes and workers so the
// scheduler predicts without hashing strings: a prediction is a few array lookups.
//
// Layout: kinds_[kind].by_class[class] is the entry of one (kind, worker class). An entry holds
// only the size buckets it has seen, in bucket order, with a 64-bit mask of which ones: bucket b
// sits at position popcount(mask below b), so finding it is O(1) and an entry costs memory for
// the few sizes a kind really runs at. Everything a prediction derives from the statistics (the
// estimate and spread of each bucket, the log-log fit, which buckets are calibrated) is refreshed
// when the entry changes, so predict() is const, O(1) and allocation-free.
//
// Persistence bookkeeping: each statistic also remembers the part learned since the model last
// read or wrote a file ("unsaved"), so that the usual load at start / save at exit adds only the
// new samples to the file instead of counting what was loaded a second time.
#pragma once

#include <dx/cost_model.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dx {

struct cost_model::impl {
  using index = std::uint32_t;
  static constexpr index no_index = ~index{0};

  index kind_index(std::string_view kind);                          // interns
  index class_index(std::string_view worker_class);                 // interns
  index worker_index(std::string_view worker, index worker_class);  // interns; (re)sets the class
  const std::string& kind_name(index k) const;                      // dx::error for an unknown index
  const std::string& worker_name(index w) const;                    // dx::error for an unknown index

  /// Class-level prediction (a worker of average speed of the class). O(1), no allocation.
  prediction predict(index kind, index worker_class, const task_features& f) const;
  /// predict(kind, class of w) times w's speed factor.
  prediction predict_on(index kind, index worker, const task_features& f) const;
  double worker_factor(index worker) const;
  /// Records a run and returns the prediction made before it (predict_on). A duration that is
  /// negative or not finite is ignored.
  prediction observe(index kind, index worker, const task_features& f, double seconds);
  bool calibrated(index kind, index worker_class) const;

  prediction predict_transfer(index from_worker, index to_worker, std::uint64_t bytes) const;
  void observe_transfer(index from_worker, index to_worker, std::uint64_t bytes, double seconds);

  // ---- tuning ----------------------------------------------------------------------------------------
  static constexpr int bucket_count = 64;
  /// Accepted samples a bucket needs before outliers are rejected from it (StarPU's threshold).
  static constexpr std::uint64_t outlier_min_samples = 10;
  /// A sample is an outlier when further than this fraction of the bucket mean from it.
  static constexpr double outlier_distance = 0.5;
  /// A bucket restarts (a new regime), or a worker's factor is learned anew, once its rejected
  /// samples outnumber its accepted ones by this much.
  static constexpr std::uint32_t regime_strikes = 10;
  static constexpr double duration_alpha = 0.2;
  static constexpr double factor_alpha = 0.2;
  static constexpr std::uint64_t factor_warmup = 3;  // first updates: a plain running mean
  static constexpr double min_factor = 1.0 / 64, max_factor = 64;
  /// The fit's exponent, when it scales a bucket's mean to another size (within the bucket's span
  /// or beyond the sizes seen), is kept within constant..cubic.
  static constexpr double min_extrapolation_slope = 0, max_extrapolation_slope = 3;
  /// Durations below this are taken as this (a clock too coarse for the task), so logs and
  /// ratios stay finite.
  static constexpr double min_seconds = 1e-9;
  static constexpr double min_speed_seconds = 20e-6;  // kinds shorter than this do not teach worker factors
  static constexpr std::uint64_t accuracy_min_samples = 20;
  static constexpr std::size_t ape_window = 10'000;
  static constexpr double recent_ape_alpha = 0.1;
  static constexpr double transfer_alpha = 0.05;
  static constexpr std::uint64_t large_transfer_bytes = 1 << 20, small_transfer_bytes = 64 << 10;
  static constexpr double default_latency = 200e-6, default_bandwidth = 100e6;
  static constexpr double transfer_relative_sd = 0.25;
  /// Sizes above this count as this; durations above it are refused when a file is read.
  static constexpr double max_task_size = 0x1p64;

  /// The average of `a` and `b` weighted by the sample counts behind them.
  static double weighted_average(double a, std::uint64_t wa, double b, std::uint64_t wb) noexcept {
    if (!wb) return a;
    if (!wa) return b;
    const double total = static_cast<double>(wa) + static_cast<double>(wb);
    return (a * static_cast<double>(wa) + b * static_cast<double>(wb)) / total;
  }
  static std::uint64_t link_key(index from, index to) noexcept { return std::uint64_t{from} << 32 | std::uint64_t{to}; }

  // ---- representation --------------------------------------------------------------------------------
  /// Count, mean and sum of squared deviations (Welford), plus the mean log2 size of the samples.
  struct moments {
    std::uint64_t n = 0;
    double mean = 0;
    double m2 = 0;
    double log_size = 0;
    void add(double x, double log2_size) noexcept;
    /// Chan et al.'s parallel combination: as if one accumulator had seen both sample sets.
    void combine(const moments& o) noexcept;
    double variance() const noexcept { return n > 1 ? m2 / static_cast<double>(n - 1) : 0; }
  };

  struct bucket {
    moments all;      // the samples of the current regime
    moments unsaved;  // the part of `all` no file has yet
    double ema = 0;
    std::uint64_t rejected = 0, unsaved_rejected = 0;
    double min_size = std::numeric_limits<double>::infinity(), max_size = 0;
    std::uint32_t strikes = 0;       // rejections minus acceptances, floored at 0
    bool restarted_unsaved = false;  // the regime changed since the last file write
    std::uint8_t index = 0;          // floor(log2(size))
    // Derived by refresh():
    double estimate = 0;  // mean, or the EMA when it has drifted more than one sd from the mean
    double sd = 0;
  };

  struct entry {
    std::uint64_t mask = 0;  // bit b: bucket b has samples
    std::vector<bucket> buckets;
    // Derived by refresh():
    std::uint64_t count = 0;            // accepted samples over all buckets
    std::uint64_t calibrated_mask = 0;  // buckets with at least min_samples
    double min_size = 0, max_size = 0;
    bool fit_valid = false;  // at least two buckets: log2(t) = intercept + slope * log2(size)
    double intercept = 0, slope = 0, bounded_slope = 0;
    double fit_relative_sd = 0;

    const bucket* find(int b) const noexcept;
    bucket& find_or_insert(int b);
  };

  struct kind_state {
    std::vector<entry> by_class;  // grown on demand; index = worker class
    index best_class = no_index;  // the class with the most samples, for other classes' fallback
    // Accuracy of this process's predictions (not persisted, not merged).
    std::uint64_t runs = 0;
    std::uint64_t calibrated_runs = 0;
    std::vector<double> recent_apes;  // ring of the last ape_window calibrated APEs
    std::size_t ape_next = 0;
    double recent_ape = 0;
    // The median of recent_apes, computed again once a hundredth of the ring has changed (a
    // median of 10,000 values per kind at every alert check cost a large head most of its time).
    mutable double median_ape = 0;
    mutable std::size_t apes_since_median = 0;
    mutable bool median_known = false;
  };

  struct worker_state {
    index worker_class = 0;
    double factor = 1;
    std::uint64_t updates = 0, unsaved_updates = 0;
    std::uint32_t strikes = 0;  // its runs rejected as outliers minus those accepted, floored at 0
  };

  /// A value learned as a running mean for the first samples, then as an exponential average.
  struct smoothed {
    double value = 0;
    std::uint64_t n = 0, unsaved = 0;
    void add(double x, double alpha) noexcept;
    /// Weighted by sample counts; `weight` of `v` (the count behind it).
    void combine(double v, std::uint64_t weight) noexcept;
  };

  struct link_state {
    smoothed latency, bandwidth;
  };

  struct record {
    index kind = 0, worker = 0;
    double predicted = 0, actual = 0;
    bool calibrated = false;
  };

  struct name_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct name_table {
    std::vector<std::string> names;
    std::unordered_map<std::string, index, name_hash, std::equal_to<>> ids;
    index intern(std::string_view name);
    index find(std::string_view name) const noexcept;
    /// The name of `id`; dx::error naming `what` ("kind") for an index never handed out.
    const std::string& name(index id, const char* what) const;
  };

  name_table kind_names_, class_names_, worker_names_;
  std::vector<kind_state> kinds_;
  std::vector<worker_state> workers_;
  std::unordered_map<std::uint64_t, link_state> links_;  // key: from << 32 | to
  link_state network_;                                   // every link's samples together

  std::vector<record> history_;  // ring once full
  std::size_t history_next_ = 0;
  std::size_t history_limit_ = 100'000;

  std::uint32_t min_samples_ = 3;
  double default_duration_ = 0.5;

  // ---- private helpers -------------------------------------------------------------------------------
  index default_class();
  /// Interns a worker seen only through transfers: keeps its class when known.
  index worker_for_transfer(std::string_view worker);
  entry& entry_for(index kind, index worker_class);
  const entry* find_entry(index kind, index worker_class) const noexcept;
  /// The class-level prediction from one entry's own data; `e` must have samples.
  prediction predict_from(const entry& e, const task_features& f) const noexcept;
  enum class verdict { accepted, rejected, restarted };
  /// Adds a (normalised) duration to its bucket, with outlier rejection and regime restarts.
  verdict add_sample(entry& e, double size, double seconds);
  void refresh(entry& e) const noexcept;
  void refresh_best_class(kind_state& ks) noexcept;
  void record_accuracy(index kind, const prediction& predicted, double seconds, bool kind_was_calibrated);
  void update_factor(worker_state& w, double ratio) noexcept;

  enum class merge_scope {
    everything,  ///< all `other` knows; its unsaved parts stay unsaved here (merge(), load())
    unsaved,     ///< only what `other` learned since it last read or wrote a file (save())
  };
  /// Adds what `other` knows, as `scope` says: bucket statistics are combined as if one
  /// accumulator had seen both sample sets; factors and link averages are weighted by counts.
  void merge(const impl& other, merge_scope scope);
  /// After a successful save: everything known is in the file now.
  void mark_saved() noexcept;
  /// Rebuilds the derived data of every entry (after a merge or a min_samples change).
  void refresh_all() noexcept;

  /// Parses a model file into this (empty) model. Returns false for another format version;
  /// throws dx::error naming the path and line when the file is damaged.
  bool parse(std::string_view text, const std::string& path_for_errors);
  std::string serialize() const;
};

namespace detail {

/// The friend of dx::cost_model that model_internals() goes through.
struct cost_model_access {
  static cost_model::impl& of(cost_model& m) noexcept { return *m.impl_; }
  static const cost_model::impl& of(const cost_model& m) noexcept { return *m.impl_; }
};

/// The model's dense-index interface, for the scheduler and the simulator: kind, class and worker
/// indexes and the O(1) predictions behind them. Private to the library (this header is not
/// installed), so users cannot call it. Not thread-safe, as the model itself.
inline cost_model::impl& model_internals(cost_model& m) noexcept { return cost_model_access::of(m); }
inline const cost_model::impl& model_internals(const cost_model& m) noexcept { return cost_model_access::of(m); }

}  // namespace detail
}  // namespace dx
