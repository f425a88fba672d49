// dx/cost_model.hpp — what dx has learned about how long tasks take and how fast data moves.
//
//   dx::cost_model m;
//   m.load(dx::cost_model::default_path());                 // start calibrated (merges)
//   m.observe({.kind = "fft", .worker = "w1", .features = {.input_bytes = 1 << 20}, .seconds = 0.012});
//   dx::prediction p = m.predict("fft", "w1", {.input_bytes = 2 << 20});
//   std::printf("%.3f s +- %.3f\n", p.mean, p.sd);
//   m.save(dx::cost_model::default_path());                 // atomic, merges with what is there
//
// A duration is learned per (task kind, worker class), in buckets by log2 of the task's size (its
// size hint when given, else its input bytes): a running mean and spread per bucket, an EMA that
// follows drift, samples far from the mean rejected and the bucket reset when rejections pile up
// (the regime changed), and a least-squares fit of log(time) on log(size) across buckets to
// interpolate sizes not seen yet. Each worker has a learned speed factor relative to its class, so
// a prediction for a worker is the class's prediction times the worker's factor. Transfers are
// learned per link as latency + bytes / bandwidth. A cluster owns one model; this class is also
// usable on its own (the simulator and tools use it). Not thread-safe: a cluster hands out copies.
//
// Worker factors and class averages are learned together, so only their product is pinned down:
// predict() for a worker is what to rely on. The class average is the speed of the workers the
// class was first calibrated on, and a factor is relative to that.
#pragma once

#include <dx/export.hpp>
#include <dx/hint.hpp>  // dx::hint, which task_features::size_hint comes from

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dx {

namespace detail {
struct cost_model_access;  // defined in the library's sources: the scheduler's way in
}  // namespace detail

/// What the model knows about a task before it runs.
struct task_features {
  std::uint64_t input_bytes = 0;
  std::uint64_t output_bytes = 0;  ///< expected, when known (0: unknown)
  double size_hint = 0;            ///< from dx::hint; 0: none
};

/// A predicted duration or transfer time, in seconds.
struct prediction {
  double mean = 0;
  double sd = 0;
  /// False when the answer is a guess, whose sd is then its mean: the class ran the kind fewer
  /// than min_samples times at this size and cannot interpolate from other sizes (the few runs
  /// it has are used); the size lies outside the sizes seen (extrapolated from the nearest
  /// calibrated size); or the class never ran the kind (another class's runs of it are used,
  /// else the default duration).
  bool calibrated = false;
  std::uint64_t samples = 0;  ///< samples behind the answer
};

/// One measured task.
struct task_sample {
  std::string_view kind;                      ///< function name or user tag
  std::string_view worker;                    ///< worker id
  std::string_view worker_class = "default";  ///< workers of one class share what is learned
  task_features features = {};
  double seconds = 0;  ///< measured run time
};

/// A task's prediction next to what it took.
struct prediction_record {
  std::string kind;
  std::string worker;
  double predicted = 0;
  double actual = 0;
  bool calibrated = false;
};

/// How well a kind is predicted.
struct kind_accuracy {
  std::string kind;
  std::uint64_t samples = 0;             ///< observed runs
  std::uint64_t calibrated_samples = 0;  ///< runs predicted once the kind had 20 samples on the class
  /// median |predicted - actual| / actual over the last 10,000 of those, as of at most 1% of
  /// them ago (exact below 100)
  double median_ape = 0;
  double recent_ape = 0;  ///< an EMA of the same: rises when predictions drift
};

/// Every member function is not thread-safe (use one thread at a time, or a copy per thread)
/// and none blocks, except save() and load(), which do file I/O and, save(), wait for the file
/// lock.
class DX_API cost_model {
 public:
  /// An empty model (nothing learned). Does not block.
  cost_model();
  ~cost_model();
  cost_model(const cost_model&);
  cost_model& operator=(const cost_model&);
  /// A moved-from model may only be assigned to or destroyed.
  cost_model(cost_model&&) noexcept;
  cost_model& operator=(cost_model&&) noexcept;

  /// Records a measured run: updates the kind's bucket for the worker's class, the worker's
  /// speed factor, and the (predicted, actual) record. Returns the prediction the model would
  /// have made before this sample. A negative or non-finite duration is ignored. Not thread-safe;
  /// does not block.
  prediction observe(const task_sample& sample);

  /// Predicted run time of a task of `kind` on `worker` (its learned speed factor applied).
  /// An unknown worker counts as the class average; an unknown kind falls back as described
  /// on prediction::calibrated. Not thread-safe; does not block.
  prediction predict(std::string_view kind, std::string_view worker, const task_features& f,
                     std::string_view worker_class = "default") const;
  /// Predicted run time on a worker of average speed of the class. Not thread-safe; does not block.
  prediction predict_kind(std::string_view kind, const task_features& f,
                          std::string_view worker_class = "default") const;
  /// Whether `kind` has enough samples on the class to be trusted (at least min_samples()).
  /// A prediction for a size far from those seen can still be uncalibrated. Not thread-safe; does
  /// not block.
  bool calibrated(std::string_view kind, std::string_view worker_class = "default") const;

  /// A worker's learned speed: its run time over its class's prediction (1: average, 2: takes
  /// twice as long). 1 for a worker never seen. Not thread-safe; does not block.
  double worker_factor(std::string_view worker) const;

  /// Records a measured transfer of `bytes` from one worker to another. Not thread-safe; does not
  /// block.
  void observe_transfer(std::string_view from, std::string_view to, std::uint64_t bytes, double seconds);
  /// Predicted time to move `bytes` between two workers: the link's learned latency and
  /// bandwidth, else the cluster-wide averages, else 200 us and 100 MB/s; sd is a quarter of the
  /// mean. Nothing moves (0 s) for zero bytes or from a worker to itself. Latency is learned from
  /// transfers under 64 KB, bandwidth from transfers of 1 MB and more. Not thread-safe; does not
  /// block.
  prediction predict_transfer(std::string_view from, std::string_view to, std::uint64_t bytes) const;

  /// Kinds observed by this object (not loaded or merged), by name, with their accuracy. Not
  /// thread-safe; does not block.
  std::vector<kind_accuracy> accuracy() const;
  /// The most recent (predicted, actual) records, oldest first (the last history_limit()). Not
  /// thread-safe; does not block.
  std::vector<prediction_record> history() const;

  /// Adds what `other` learned (bucket statistics are combined as if one had seen all samples).
  /// Merging back a copy of this model counts what they share twice. History and accuracy are
  /// this object's own and are not merged. Not thread-safe; does not block.
  void merge(const cost_model& other);
  /// Writes the model to `path` atomically (a temporary file renamed over it), merged with what
  /// the file holds then, under a file lock, so concurrent programs lose nothing. What is added
  /// to the file is what this model learned since it last loaded or saved (so load at start and
  /// save at exit does not count the loaded part twice); a missing, damaged or other-version file
  /// gets the whole model (the latter two with a logged warning). Creates the directory. Throws
  /// dx::error naming the path when it cannot write.
  /// Takes the path as text (a std::filesystem::path converts implicitly). Not thread-safe (see
  /// the class); saves of other models, in this process or others, wait for the file lock.
  /// Blocks on the lock and on file I/O.
  void save(const std::string& path) const;
  /// Merges the model stored at `path` into this one. A missing file is not an error (returns
  /// false); a file of another format version is ignored with a logged warning (returns false);
  /// a damaged file throws dx::error naming the path and line.
  /// Not thread-safe (see the class); blocks on file I/O.
  bool load(const std::string& path);
  /// $DX_COSTMODEL, else $XDG_STATE_HOME/dx/cost_model.txt, else ~/.local/state/dx/cost_model.txt.
  /// Thread-safe; does not block.
  static std::string default_path();

  /// Samples a kind needs before its predictions count as calibrated (default 3, at least 1).
  /// Not thread-safe; does not block.
  std::uint32_t min_samples() const noexcept;
  void set_min_samples(std::uint32_t n) noexcept;
  /// Fallback duration for a kind nothing is known about (default 0.5 s, as Dask). Not
  /// thread-safe; does not block.
  void set_default_duration(double seconds) noexcept;
  /// How many (predicted, actual) records history() keeps (100,000). Not thread-safe; does not
  /// block.
  std::size_t history_limit() const noexcept;

  /// The representation, defined in the library's sources; opaque to users.
  struct impl;

 private:
  // The scheduler's fast paths (dense indexes) reach the representation through this.
  friend struct detail::cost_model_access;

  std::unique_ptr<impl> impl_;
};

}  // namespace dx
