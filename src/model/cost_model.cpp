// What the cost model learns and how it predicts: bucket statistics with outlier rejection and
// regime restarts, the log-log fit across buckets, EWMAs, worker speed factors, link latency and
// bandwidth, prediction accuracy, and merging two models. The file format (save, load, the
// default path) is in cost_model_file.cpp. What is learned is described in dx/cost_model.hpp, how
// it is laid out in cost_model_impl.hpp; choices not obvious from either are explained below.
#include "model/cost_model_impl.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <Eigen/Dense>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <iterator>
#include <limits>
#include <numbers>
#include <utility>

namespace dx {

namespace {

using impl = cost_model::impl;

constexpr double infinity = std::numeric_limits<double>::infinity();

/// The size a task is bucketed by: the user's hint when given, else its input bytes.
double task_size(const task_features& f) noexcept {
  if (f.size_hint > 0) return std::min(f.size_hint, impl::max_task_size);  // a NaN hint fails the test
  return static_cast<double>(f.input_bytes);
}

/// floor(log2(size)); sizes below 2 (including 0) share bucket 0.
int bucket_of(double size) noexcept {
  if (!(size >= 2)) return 0;
  return std::min(std::ilogb(size), impl::bucket_count - 1);
}

double log2_size(double size) noexcept { return std::log2(std::max(size, 1.0)); }

/// The set bit of `mask` nearest to bit `b` (the larger one on a tie: over-predicting a task is
/// cheaper for a scheduler than under-predicting it). `mask` must not be 0.
int nearest_bit(std::uint64_t mask, int b) noexcept {
  assert(mask != 0);
  if ((mask >> b) & 1) return b;
  const std::uint64_t bit = std::uint64_t{1} << b;
  const std::uint64_t below = mask & (bit - 1);
  const std::uint64_t above = mask & ~((bit << 1) - 1);  // bit << 1 wraps to 0 for b == 63: none above
  if (!below) return std::countr_zero(above);
  const int lower = 63 - std::countl_zero(below);
  if (!above) return lower;
  const int upper = std::countr_zero(above);
  return b - lower < upper - b ? lower : upper;
}

/// Median of the values (the mean of the two middle ones for an even count).
double median(std::vector<double> v) {
  if (v.empty()) return 0;
  const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  const double upper = *mid;
  if (v.size() % 2) return upper;
  return (*std::max_element(v.begin(), mid) + upper) / 2;
}

}  // namespace

// ---- statistics --------------------------------------------------------------------------------------

void impl::moments::add(double x, double log2_size) noexcept {
  ++n;
  const double inv = 1.0 / static_cast<double>(n);
  const double delta = x - mean;
  mean += delta * inv;
  m2 += delta * (x - mean);
  log_size += (log2_size - log_size) * inv;
}

void impl::moments::combine(const moments& o) noexcept {
  if (!o.n) return;
  if (!n) {
    *this = o;
    return;
  }
  const double na = static_cast<double>(n), nb = static_cast<double>(o.n), total = na + nb;
  const double delta = o.mean - mean;
  mean += delta * nb / total;
  m2 += o.m2 + delta * delta * na * nb / total;
  log_size += (o.log_size - log_size) * nb / total;
  n += o.n;
}

void impl::smoothed::add(double x, double alpha) noexcept {
  ++n;
  ++unsaved;
  // A running mean until the average has 1/alpha samples behind it, then the exponential average:
  // the first sample is taken as is, and a freak early sample does not linger.
  value += std::max(alpha, 1.0 / static_cast<double>(n)) * (x - value);
}

void impl::smoothed::combine(double v, std::uint64_t weight) noexcept {
  value = weighted_average(value, n, v, weight);
  n += weight;
}

// ---- names -------------------------------------------------------------------------------------------

impl::index impl::name_table::intern(std::string_view name) {
  if (const auto it = ids.find(name); it != ids.end()) return it->second;
  const auto id = static_cast<index>(names.size());
  names.emplace_back(name);
  try {
    ids.emplace(names.back(), id);
  } catch (...) {
    names.pop_back();
    throw;
  }
  return id;
}

impl::index impl::name_table::find(std::string_view name) const noexcept {
  const auto it = ids.find(name);
  return it == ids.end() ? no_index : it->second;
}

const std::string& impl::name_table::name(index id, const char* what) const {
  if (id >= names.size()) {
    detail::throw_error(detail::error_kind::generic,
                        fmt::format("dx cost model: no {} has index {} ({} known)", what, id, names.size()));
  }
  return names[id];
}

impl::index impl::kind_index(std::string_view kind) {
  const index id = kind_names_.intern(kind);
  if (id == kinds_.size()) kinds_.emplace_back();
  return id;
}

impl::index impl::class_index(std::string_view worker_class) { return class_names_.intern(worker_class); }

impl::index impl::default_class() { return class_index("default"); }

impl::index impl::worker_index(std::string_view worker, index worker_class) {
  const index id = worker_names_.intern(worker);
  if (id == workers_.size()) workers_.emplace_back();
  workers_[id].worker_class = worker_class;
  return id;
}

impl::index impl::worker_for_transfer(std::string_view worker) {
  const index known = worker_names_.find(worker);
  return known != no_index ? known : worker_index(worker, default_class());
}

const std::string& impl::kind_name(index k) const { return kind_names_.name(k, "kind"); }
const std::string& impl::worker_name(index w) const { return worker_names_.name(w, "worker"); }

// ---- entries -----------------------------------------------------------------------------------------

const impl::bucket* impl::entry::find(int b) const noexcept {
  const std::uint64_t bit = std::uint64_t{1} << b;
  if (!(mask & bit)) return nullptr;
  return &buckets[static_cast<std::size_t>(std::popcount(mask & (bit - 1)))];
}

impl::bucket& impl::entry::find_or_insert(int b) {
  const std::uint64_t bit = std::uint64_t{1} << b;
  const auto pos = static_cast<std::ptrdiff_t>(std::popcount(mask & (bit - 1)));
  if (mask & bit) return buckets[static_cast<std::size_t>(pos)];
  auto it = buckets.insert(buckets.begin() + pos, bucket{});
  it->index = static_cast<std::uint8_t>(b);
  mask |= bit;
  return *it;
}

impl::entry& impl::entry_for(index kind, index worker_class) {
  auto& by_class = kinds_[kind].by_class;
  if (by_class.size() <= worker_class) by_class.resize(worker_class + std::size_t{1});
  return by_class[worker_class];
}

const impl::entry* impl::find_entry(index kind, index worker_class) const noexcept {
  if (kind >= kinds_.size()) return nullptr;
  const auto& by_class = kinds_[kind].by_class;
  if (worker_class >= by_class.size() || !by_class[worker_class].mask) return nullptr;
  return &by_class[worker_class];
}

void impl::refresh(entry& e) const noexcept {
  e.count = 0;
  e.calibrated_mask = 0;
  e.min_size = infinity;
  e.max_size = 0;
  // Weighted least squares of log2(time) on log2(size), one point per bucket weighted by its
  // sample count, through the 2x2 normal equations (fixed-size: no allocation).
  Eigen::Matrix2d normal = Eigen::Matrix2d::Zero();
  Eigen::Vector2d rhs = Eigen::Vector2d::Zero();
  double spread_weight = 0, relative_variance = 0;
  for (bucket& b : e.buckets) {
    const moments& m = b.all;
    b.sd = std::sqrt(m.variance());
    // The mean is the steadier estimate; the EMA is used once it has moved more than one sd away,
    // which a steady stream of samples rarely does (its own spread is a third of the samples') and
    // a drifting one soon does.
    b.estimate = m.n > 1 && std::abs(b.ema - m.mean) > b.sd ? b.ema : m.mean;
    e.count += m.n;
    if (m.n >= min_samples_) e.calibrated_mask |= std::uint64_t{1} << b.index;
    e.min_size = std::min(e.min_size, b.min_size);
    e.max_size = std::max(e.max_size, b.max_size);

    const double w = static_cast<double>(m.n), x = m.log_size, y = std::log2(b.estimate);
    normal(0, 0) += w;
    normal(0, 1) += w * x;
    normal(1, 1) += w * x * x;
    rhs(0) += w * y;
    rhs(1) += w * x * y;
    if (m.n > 1) {
      spread_weight += w;
      relative_variance += w * m.variance() / (m.mean * m.mean);
    }
  }
  normal(1, 0) = normal(0, 1);

  e.fit_valid = false;
  if (e.buckets.size() < 2) return;
  if (!(normal.determinant() > 1e-12 * normal(0, 0) * normal(1, 1))) return;
  const Eigen::Vector2d coef = normal.ldlt().solve(rhs);
  if (!coef.allFinite()) return;
  e.fit_valid = true;
  e.intercept = coef(0);
  e.slope = coef(1);
  e.bounded_slope = std::clamp(e.slope, min_extrapolation_slope, max_extrapolation_slope);

  // The spread of a fitted prediction: how far the buckets sit from the line, plus how much runs
  // vary within a bucket, both relative to the mean.
  double residual = 0;
  for (const bucket& b : e.buckets) {
    const double r = std::log2(b.estimate) - (e.intercept + e.slope * b.all.log_size);
    residual += static_cast<double>(b.all.n) * r * r;
  }
  const double log_variance = residual / normal(0, 0) * std::numbers::ln2 * std::numbers::ln2;
  e.fit_relative_sd = std::sqrt(log_variance + (spread_weight > 0 ? relative_variance / spread_weight : 0));
}

void impl::refresh_best_class(kind_state& ks) noexcept {
  ks.best_class = no_index;
  std::uint64_t best = 0;
  for (std::size_t c = 0; c < ks.by_class.size(); ++c) {
    if (ks.by_class[c].count > best) {
      best = ks.by_class[c].count;
      ks.best_class = static_cast<index>(c);
    }
  }
}

void impl::refresh_all() noexcept {
  for (kind_state& ks : kinds_) {
    for (entry& e : ks.by_class) refresh(e);
    refresh_best_class(ks);
  }
}

// ---- predictions -------------------------------------------------------------------------------------

prediction impl::predict_from(const entry& e, const task_features& f) const noexcept {
  const double size = task_size(f);
  const int b = bucket_of(size);
  if ((e.calibrated_mask >> b) & 1) {
    const bucket& own = *e.find(b);
    prediction p{own.estimate, own.sd, true, own.all.n};
    if (e.fit_valid) {
      // A bucket spans a factor of two in size: move along the fitted slope from the bucket's
      // typical size to this one.
      const double scale = std::exp2(e.bounded_slope * (log2_size(size) - own.all.log_size));
      p.mean *= scale;
      p.sd *= scale;
    }
    return p;
  }
  const double log_size = log2_size(size);
  if (e.fit_valid && size >= 0.9 * e.min_size && size <= 1.1 * e.max_size) {
    const double mean = std::exp2(e.intercept + e.slope * log_size);
    const bool calibrated = e.count >= min_samples_;
    return {mean, calibrated ? mean * e.fit_relative_sd : mean, calibrated, e.count};
  }
  // Outside the sizes seen the fit is a guess (StarPU trusts it only inside them): start from the
  // nearest calibrated bucket, follow the fit's slope bounded to a plausible range, and say the
  // answer is not calibrated. With one bucket only there is no slope: that bucket's mean.
  const int nearest = nearest_bit(e.calibrated_mask ? e.calibrated_mask : e.mask, b);
  const bucket& anchor = *e.find(nearest);
  double mean = anchor.estimate;
  if (e.fit_valid) mean *= std::exp2(e.bounded_slope * (log_size - anchor.all.log_size));
  return {mean, mean, false, anchor.all.n};
}

prediction impl::predict(index kind, index worker_class, const task_features& f) const {
  if (const entry* e = find_entry(kind, worker_class)) return predict_from(*e, f);
  if (kind < kinds_.size() && kinds_[kind].best_class != no_index) {
    // Another class's runs of the same kind say more than a blind default.
    prediction p = predict_from(kinds_[kind].by_class[kinds_[kind].best_class], f);
    p.calibrated = false;
    p.sd = p.mean;
    return p;
  }
  return {default_duration_, default_duration_, false, 0};
}

prediction impl::predict_on(index kind, index worker, const task_features& f) const {
  const worker_state& w = workers_[worker];
  prediction p = predict(kind, w.worker_class, f);
  p.mean *= w.factor;
  p.sd *= w.factor;
  return p;
}

double impl::worker_factor(index worker) const { return workers_[worker].factor; }

bool impl::calibrated(index kind, index worker_class) const {
  const entry* e = find_entry(kind, worker_class);
  return e && e->count >= min_samples_;
}

// ---- learning ----------------------------------------------------------------------------------------

void impl::update_factor(worker_state& w, double ratio) noexcept {
  ratio = std::clamp(ratio, min_factor, max_factor);
  ++w.updates;
  ++w.unsaved_updates;
  const double weight = w.updates <= factor_warmup ? 1.0 / static_cast<double>(w.updates) : factor_alpha;
  w.factor = std::clamp(w.factor + weight * (ratio - w.factor), min_factor, max_factor);
}

impl::verdict impl::add_sample(entry& e, double size, double seconds) {
  bucket& b = e.find_or_insert(bucket_of(size));
  verdict result = verdict::accepted;
  if (b.all.n >= outlier_min_samples && std::abs(seconds - b.all.mean) > outlier_distance * b.all.mean) {
    ++b.rejected;
    ++b.unsaved_rejected;
    // StarPU flushes once rejections reach the accepted count, which for a bucket with a long
    // history takes as long as that history. Counting rejections minus acceptances instead
    // restarts as soon as most recent samples disagree with the mean, while scattered outliers
    // (under half the samples) drain the count back to zero.
    if (++b.strikes < regime_strikes) return verdict::rejected;
    const std::uint8_t index = b.index;
    b = bucket{};
    b.index = index;
    b.restarted_unsaved = true;
    result = verdict::restarted;
  } else if (b.strikes) {
    --b.strikes;
  }
  const double log_size = log2_size(size);
  b.all.add(seconds, log_size);
  b.unsaved.add(seconds, log_size);
  b.ema += std::max(duration_alpha, 1.0 / static_cast<double>(b.all.n)) * (seconds - b.ema);
  b.min_size = std::min(b.min_size, size);
  b.max_size = std::max(b.max_size, size);
  return result;
}

void impl::record_accuracy(index kind, const prediction& predicted, double seconds, bool kind_was_calibrated) {
  kind_state& ks = kinds_[kind];
  ++ks.runs;
  if (!kind_was_calibrated) return;
  const double ape = std::abs(predicted.mean - seconds) / std::max(seconds, min_seconds);
  ++ks.calibrated_runs;
  if (ks.recent_apes.size() < ape_window) {
    ks.recent_apes.push_back(ape);
  } else {
    ks.recent_apes[ks.ape_next] = ape;
    ks.ape_next = (ks.ape_next + 1) % ape_window;
  }
  ++ks.apes_since_median;
  ks.recent_ape = ks.calibrated_runs == 1 ? ape : ks.recent_ape + recent_ape_alpha * (ape - ks.recent_ape);
}

prediction impl::observe(index kind, index worker, const task_features& f, double seconds) {
  worker_state& w = workers_[worker];
  const prediction for_class = predict(kind, w.worker_class, f);
  prediction before = for_class;
  before.mean *= w.factor;
  before.sd *= w.factor;
  if (!std::isfinite(seconds) || seconds < 0) return before;

  entry& e = entry_for(kind, w.worker_class);
  record_accuracy(kind, before, seconds, e.count >= accuracy_min_samples);
  const record r{kind, worker, before.mean, seconds, before.calibrated};
  if (history_.size() < history_limit_) {
    history_.push_back(r);
  } else {
    history_[history_next_] = r;
    history_next_ = (history_next_ + 1) % history_limit_;
  }

  // The bucket learns durations normalised by the worker's factor, so that slow and fast workers
  // teach the class one average. A sample that is far off is either the kind changing (every
  // worker sees it) or the worker changing (every kind sees it); each has its own strike count
  // and whichever fills up first restarts: the bucket's regime, or the worker's factor. Outliers
  // do not move the factor meanwhile, so one kind's change does not leak into every other kind
  // run on the same workers.
  const double actual = std::max(seconds, min_seconds);
  const double ratio = actual / for_class.mean;
  const double size = task_size(f);
  // Kinds this short measure timers, caches and scheduling more than a worker's speed: they teach
  // their kind, not the worker's factor (which every other kind's predictions are scaled by).
  const bool measures_speed = for_class.mean >= min_speed_seconds;
  if (!measures_speed) {
    add_sample(e, size, actual / w.factor);
  } else if (for_class.calibrated && w.updates < factor_warmup) {
    // A worker's speed is still being learned: normalised with this sample included, its first
    // runs neither drag the class mean nor count as outliers.
    update_factor(w, ratio);
    add_sample(e, size, actual / w.factor);
  } else {
    switch (add_sample(e, size, actual / w.factor)) {
      case verdict::accepted:
        if (for_class.calibrated) update_factor(w, ratio);
        if (w.strikes) --w.strikes;
        break;
      case verdict::restarted:  // the kind changed: the worker's misses were the kind's
        w.strikes = 0;
        break;
      case verdict::rejected:
        if (for_class.calibrated && ++w.strikes >= regime_strikes) {
          w.strikes = 0;
          w.updates = 0;
          update_factor(w, ratio);
        }
        break;
    }
  }
  refresh(e);
  refresh_best_class(kinds_[kind]);
  return before;
}

// ---- transfers ---------------------------------------------------------------------------------------

prediction impl::predict_transfer(index from, index to, std::uint64_t bytes) const {
  if (bytes == 0 || (from == to && from != no_index)) return {0, 0, true, 0};
  const link_state* link = nullptr;
  if (from != no_index && to != no_index) {
    if (const auto it = links_.find(link_key(from, to)); it != links_.end()) link = &it->second;
  }
  std::uint64_t samples = 0;
  bool learned = true;
  const auto pick = [&](const smoothed* own, const smoothed& network, double fallback) {
    if (own && own->n) {
      samples += own->n;
      return own->value;
    }
    if (network.n) {
      samples += network.n;
      return network.value;
    }
    learned = false;
    return fallback;
  };
  const double latency = pick(link ? &link->latency : nullptr, network_.latency, default_latency);
  const double bandwidth = pick(link ? &link->bandwidth : nullptr, network_.bandwidth, default_bandwidth);
  const double mean = latency + static_cast<double>(bytes) / bandwidth;
  // Links are not observed often enough to learn a spread; a quarter of the mean is the order of
  // the variation seen on shared networks, and keeps transfers from looking exact.
  return {mean, transfer_relative_sd * mean, learned, samples};
}

void impl::observe_transfer(index from, index to, std::uint64_t bytes, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0 || from == to) return;
  if (bytes < small_transfer_bytes) {
    link_state& link = links_[link_key(from, to)];
    link.latency.add(seconds, transfer_alpha);
    network_.latency.add(seconds, transfer_alpha);
  } else if (bytes >= large_transfer_bytes) {
    link_state& link = links_[link_key(from, to)];
    // Bandwidth is learned net of the latency already known, so that latency + bytes / bandwidth
    // gives back the measured time; the floor keeps a noisy latency from inflating it.
    const double latency = link.latency.n ? link.latency.value : network_.latency.n ? network_.latency.value : 0;
    const double moving = std::max(seconds - latency, seconds / 2);
    if (!(moving > 0)) return;
    const double bandwidth = static_cast<double>(bytes) / moving;
    link.bandwidth.add(bandwidth, transfer_alpha);
    network_.bandwidth.add(bandwidth, transfer_alpha);
  }
  // Mid-sized transfers mix latency and bandwidth in unknown proportions: they teach neither.
}

// ---- merging -----------------------------------------------------------------------------------------
//
// One walk serves both merges. merge_scope::everything adds all that `other` knows and carries its
// unsaved parts along (merge(), load()); merge_scope::unsaved adds only what `other` learned since
// it last read or wrote a file, into a model just read from that file (save()).

void impl::merge(const impl& other, merge_scope scope) {
  if (&other == this) {
    const impl copy = other;
    merge(copy, scope);
    return;
  }
  const bool everything = scope == merge_scope::everything;
  for (std::size_t k = 0; k < other.kinds_.size(); ++k) {
    const auto& classes = other.kinds_[k].by_class;
    bool touched = false;
    index kind = no_index;
    for (std::size_t c = 0; c < classes.size(); ++c) {
      entry* into = nullptr;
      for (const bucket& ob : classes[c].buckets) {
        if (!everything && !ob.unsaved.n && !ob.unsaved_rejected && !ob.restarted_unsaved) continue;
        if (kind == no_index) kind = kind_index(other.kind_names_.names[k]);
        if (!into) into = &entry_for(kind, class_index(other.class_names_.names[c]));
        bucket& b = into->find_or_insert(ob.index);
        if (!everything && ob.restarted_unsaved) {
          // The regime changed here since the file was read: what the file holds is stale.
          b = ob;
          continue;
        }
        const moments& added = everything ? ob.all : ob.unsaved;
        b.ema = weighted_average(b.ema, b.all.n, ob.ema, added.n);
        b.all.combine(added);
        b.rejected += everything ? ob.rejected : ob.unsaved_rejected;
        b.min_size = std::min(b.min_size, ob.min_size);
        b.max_size = std::max(b.max_size, ob.max_size);
        if (everything) {
          b.unsaved.combine(ob.unsaved);
          b.unsaved_rejected += ob.unsaved_rejected;
          b.restarted_unsaved = b.restarted_unsaved || ob.restarted_unsaved;
        }
      }
      if (into) {
        refresh(*into);
        touched = true;
      }
    }
    if (touched) refresh_best_class(kinds_[kind]);
  }
  for (std::size_t i = 0; i < other.workers_.size(); ++i) {
    const worker_state& ow = other.workers_[i];
    const std::uint64_t added = everything ? ow.updates : ow.unsaved_updates;
    if (!everything && !added) continue;
    index id = worker_names_.find(other.worker_names_.names[i]);
    if (id == no_index)
      id = worker_index(other.worker_names_.names[i], class_index(other.class_names_.names[ow.worker_class]));
    worker_state& w = workers_[id];
    w.factor = weighted_average(w.factor, w.updates, ow.factor, added);
    w.updates += added;
    if (everything) w.unsaved_updates += ow.unsaved_updates;
  }
  const auto merge_smoothed = [everything](smoothed& into, const smoothed& from) {
    into.combine(from.value, everything ? from.n : from.unsaved);
    if (everything) into.unsaved += from.unsaved;
  };
  for (const auto& [key, ol] : other.links_) {
    if (!everything && !ol.latency.unsaved && !ol.bandwidth.unsaved) continue;
    const index from = worker_for_transfer(other.worker_names_.names[key >> 32]);
    const index to = worker_for_transfer(other.worker_names_.names[key & 0xffffffffu]);
    link_state& l = links_[link_key(from, to)];
    merge_smoothed(l.latency, ol.latency);
    merge_smoothed(l.bandwidth, ol.bandwidth);
  }
  merge_smoothed(network_.latency, other.network_.latency);
  merge_smoothed(network_.bandwidth, other.network_.bandwidth);
}

void impl::mark_saved() noexcept {
  for (kind_state& ks : kinds_) {
    for (entry& e : ks.by_class) {
      for (bucket& b : e.buckets) {
        b.unsaved = {};
        b.unsaved_rejected = 0;
        b.restarted_unsaved = false;
      }
    }
  }
  for (worker_state& w : workers_) w.unsaved_updates = 0;
  for (auto& [key, l] : links_) l.latency.unsaved = l.bandwidth.unsaved = 0;
  network_.latency.unsaved = network_.bandwidth.unsaved = 0;
}

// ---- cost_model --------------------------------------------------------------------------------------

cost_model::cost_model() : impl_(std::make_unique<impl>()) {}
cost_model::~cost_model() = default;
cost_model::cost_model(const cost_model& other) : impl_(std::make_unique<impl>(*other.impl_)) {}
cost_model& cost_model::operator=(const cost_model& other) {
  if (this != &other) impl_ = std::make_unique<impl>(*other.impl_);
  return *this;
}
cost_model::cost_model(cost_model&&) noexcept = default;
cost_model& cost_model::operator=(cost_model&&) noexcept = default;

prediction cost_model::observe(const task_sample& sample) {
  const impl::index kind = impl_->kind_index(sample.kind);
  const impl::index worker = impl_->worker_index(sample.worker, impl_->class_index(sample.worker_class));
  return impl_->observe(kind, worker, sample.features, sample.seconds);
}

prediction cost_model::predict(std::string_view kind, std::string_view worker, const task_features& f,
                               std::string_view worker_class) const {
  prediction p = predict_kind(kind, f, worker_class);
  const double factor = worker_factor(worker);
  p.mean *= factor;
  p.sd *= factor;
  return p;
}

prediction cost_model::predict_kind(std::string_view kind, const task_features& f,
                                    std::string_view worker_class) const {
  return impl_->predict(impl_->kind_names_.find(kind), impl_->class_names_.find(worker_class), f);
}

bool cost_model::calibrated(std::string_view kind, std::string_view worker_class) const {
  return impl_->calibrated(impl_->kind_names_.find(kind), impl_->class_names_.find(worker_class));
}

double cost_model::worker_factor(std::string_view worker) const {
  const impl::index w = impl_->worker_names_.find(worker);
  return w == impl::no_index ? 1.0 : impl_->worker_factor(w);
}

void cost_model::observe_transfer(std::string_view from, std::string_view to, std::uint64_t bytes, double seconds) {
  if (from == to) return;
  const impl::index a = impl_->worker_for_transfer(from);
  const impl::index b = impl_->worker_for_transfer(to);
  impl_->observe_transfer(a, b, bytes, seconds);
}

prediction cost_model::predict_transfer(std::string_view from, std::string_view to, std::uint64_t bytes) const {
  if (from == to) return {0, 0, true, 0};
  return impl_->predict_transfer(impl_->worker_names_.find(from), impl_->worker_names_.find(to), bytes);
}

std::vector<kind_accuracy> cost_model::accuracy() const {
  std::vector<kind_accuracy> out;
  for (std::size_t k = 0; k < impl_->kinds_.size(); ++k) {
    const impl::kind_state& ks = impl_->kinds_[k];
    if (!ks.runs) continue;
    if (!ks.median_known || ks.apes_since_median * 100 >= std::max<std::size_t>(ks.recent_apes.size(), 100)) {
      ks.median_ape = median(ks.recent_apes);
      ks.apes_since_median = 0;
      ks.median_known = true;
    }
    out.push_back({impl_->kind_names_.names[k], ks.runs, ks.calibrated_runs, ks.median_ape, ks.recent_ape});
  }
  std::sort(out.begin(), out.end(), [](const kind_accuracy& a, const kind_accuracy& b) { return a.kind < b.kind; });
  return out;
}

std::vector<prediction_record> cost_model::history() const {
  const auto& ring = impl_->history_;
  std::vector<prediction_record> out;
  out.reserve(ring.size());
  // Until the ring is full it is in order; after, the oldest record is the next to be replaced.
  const std::size_t start = ring.size() < impl_->history_limit_ ? 0 : impl_->history_next_;
  for (std::size_t i = 0; i < ring.size(); ++i) {
    const impl::record& r = ring[(start + i) % ring.size()];
    out.push_back(
        {impl_->kind_names_.names[r.kind], impl_->worker_names_.names[r.worker], r.predicted, r.actual, r.calibrated});
  }
  return out;
}

void cost_model::merge(const cost_model& other) { impl_->merge(*other.impl_, impl::merge_scope::everything); }

std::uint32_t cost_model::min_samples() const noexcept { return impl_->min_samples_; }

void cost_model::set_min_samples(std::uint32_t n) noexcept {
  impl_->min_samples_ = std::max<std::uint32_t>(n, 1);
  impl_->refresh_all();
}

void cost_model::set_default_duration(double seconds) noexcept {
  if (std::isfinite(seconds) && seconds >= 0) impl_->default_duration_ = seconds;
}

std::size_t cost_model::history_limit() const noexcept { return impl_->history_limit_; }

}  // namespace dx
