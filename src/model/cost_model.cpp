// The learned cost model. What it learns is described in dx/cost_model.hpp, how it is laid out in
// cost_model_impl.hpp; the choices that are not obvious from either are explained where they are
// made below.
#include "model/cost_model_impl.hpp"

#include "common/log.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>
#include <Eigen/Dense>

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <numbers>
#include <sstream>
#include <system_error>
#include <utility>

namespace dx {

namespace {

using impl = cost_model::impl;

constexpr std::string_view file_magic = "dx-cost-model";
constexpr int file_version = 1;
constexpr double max_size = 0x1p64;
constexpr double infinity = std::numeric_limits<double>::infinity();

/// The size a task is bucketed by: the user's hint when given, else its input bytes.
double task_size(const task_features& f) noexcept {
  if (f.size_hint > 0) return std::min(f.size_hint, max_size);  // a NaN hint fails the test
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

double weighted_average(double a, std::uint64_t wa, double b, std::uint64_t wb) noexcept {
  if (!wb) return a;
  if (!wa) return b;
  const double total = static_cast<double>(wa) + static_cast<double>(wb);
  return (a * static_cast<double>(wa) + b * static_cast<double>(wb)) / total;
}

std::uint64_t link_key(impl::index from, impl::index to) noexcept {
  return std::uint64_t{from} << 32 | std::uint64_t{to};
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

// ---- file format helpers ---------------------------------------------------------------------------

/// Names may hold any bytes; in the file they are single tokens. Whitespace, '%' and bytes that are
/// not printable ASCII become %XX; the empty name is a lone "%" (which no other name encodes to).
std::string escape_name(std::string_view name) {
  if (name.empty()) return "%";
  std::string out;
  out.reserve(name.size());
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '%') {
      static constexpr char hex[] = "0123456789ABCDEF";
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += ch;
    }
  }
  return out;
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool unescape_name(std::string_view token, std::string& out) {
  out.clear();
  if (token == "%") return true;
  for (std::size_t i = 0; i < token.size(); ++i) {
    if (token[i] != '%') {
      out += token[i];
      continue;
    }
    if (i + 2 >= token.size()) return false;
    const int hi = hex_digit(token[i + 1]), lo = hex_digit(token[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

/// One line of a model file, split into tokens, with typed readers that throw dx::error naming
/// the file and line.
class line_reader {
 public:
  line_reader(std::string_view line, const std::string& path, std::size_t number) : path_(path), number_(number) {
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      const std::size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
      if (i > start) tokens_.push_back(line.substr(start, i - start));
    }
  }

  std::size_t size() const noexcept { return tokens_.size(); }
  std::string_view token(std::size_t i) const { return tokens_[i]; }

  void expect_fields(std::size_t n) const {
    if (tokens_.size() != n)
      fail(fmt::format("'{}' record has {} fields, expected {}", tokens_[0], tokens_.size() - 1, n - 1));
  }

  std::string name(std::size_t i) const {
    std::string out;
    if (!unescape_name(tokens_[i], out)) fail(fmt::format("bad name '{}'", tokens_[i]));
    return out;
  }

  std::uint64_t count(std::size_t i) const {
    std::uint64_t v = 0;
    const std::string_view t = tokens_[i];
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc{} || end != t.data() + t.size()) fail(fmt::format("bad count '{}'", t));
    return v;
  }

  /// A finite number in [lo, hi].
  double number(std::size_t i, double lo, double hi) const {
    double v = 0;
    const std::string_view t = tokens_[i];
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc{} || end != t.data() + t.size() || !std::isfinite(v)) fail(fmt::format("bad number '{}'", t));
    if (v < lo || v > hi) fail(fmt::format("{} out of range [{}, {}]", t, lo, hi));
    return v;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw error(fmt::format("cost model file {}: line {}: {}", path_, number_, why));
  }

 private:
  std::vector<std::string_view> tokens_;
  const std::string& path_;
  std::size_t number_;
};

// ---- files -----------------------------------------------------------------------------------------

class unique_fd {
 public:
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

[[noreturn]] void throw_io(const std::string& what, const std::filesystem::path& path, int err) {
  throw error(fmt::format("cost model: cannot {} {}: {}", what, path.string(),
                          std::error_code(err, std::generic_category()).message()));
}

/// The file's contents, or false when it does not exist.
bool read_file(const std::filesystem::path& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) return false;
    throw_io("read", path, err);
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw_io("read", path, errno);
  out = std::move(text).str();
  return true;
}

void write_all(int fd, std::string_view data, const std::filesystem::path& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_io("write", path, errno);
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, flushed to disk,
/// renamed over the target, and the directory flushed so the rename itself survives a crash.
void replace_file(const std::filesystem::path& path, std::string_view text) {
  const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  {
    unique_fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) throw_io("create", tmp, errno);
    try {
      write_all(fd.get(), text, tmp);
      if (::fsync(fd.get()) != 0) throw_io("flush", tmp, errno);
      if (::close(fd.release()) != 0) throw_io("close", tmp, errno);
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw_io("replace", path, err);
  }
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  unique_fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() >= 0) ::fsync(dir_fd.get());  // best effort: some file systems refuse it
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

const std::string& impl::kind_name(index k) const { return kind_names_.names.at(k); }
const std::string& impl::worker_name(index w) const { return worker_names_.names.at(w); }

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

void impl::merge_all(const impl& other) {
  if (&other == this) {
    const impl copy = other;
    merge_all(copy);
    return;
  }
  for (std::size_t k = 0; k < other.kinds_.size(); ++k) {
    const auto& classes = other.kinds_[k].by_class;
    bool touched = false;
    index kind = no_index;
    for (std::size_t c = 0; c < classes.size(); ++c) {
      const entry& from = classes[c];
      if (!from.mask) continue;
      if (kind == no_index) kind = kind_index(other.kind_names_.names[k]);
      entry& into = entry_for(kind, class_index(other.class_names_.names[c]));
      for (const bucket& ob : from.buckets) {
        bucket& b = into.find_or_insert(ob.index);
        b.ema = weighted_average(b.ema, b.all.n, ob.ema, ob.all.n);
        b.all.combine(ob.all);
        b.unsaved.combine(ob.unsaved);
        b.rejected += ob.rejected;
        b.unsaved_rejected += ob.unsaved_rejected;
        b.min_size = std::min(b.min_size, ob.min_size);
        b.max_size = std::max(b.max_size, ob.max_size);
        b.restarted_unsaved = b.restarted_unsaved || ob.restarted_unsaved;
      }
      refresh(into);
      touched = true;
    }
    if (touched) refresh_best_class(kinds_[kind]);
  }
  for (std::size_t i = 0; i < other.workers_.size(); ++i) {
    const worker_state& ow = other.workers_[i];
    index id = worker_names_.find(other.worker_names_.names[i]);
    if (id == no_index)
      id = worker_index(other.worker_names_.names[i], class_index(other.class_names_.names[ow.worker_class]));
    worker_state& w = workers_[id];
    w.factor = weighted_average(w.factor, w.updates, ow.factor, ow.updates);
    w.updates += ow.updates;
    w.unsaved_updates += ow.unsaved_updates;
  }
  const auto merge_smoothed = [](smoothed& into, const smoothed& from) {
    into.combine(from.value, from.n);
    into.unsaved += from.unsaved;
  };
  for (const auto& [key, ol] : other.links_) {
    const index from = worker_for_transfer(other.worker_names_.names[key >> 32]);
    const index to = worker_for_transfer(other.worker_names_.names[key & 0xffffffffu]);
    link_state& l = links_[link_key(from, to)];
    merge_smoothed(l.latency, ol.latency);
    merge_smoothed(l.bandwidth, ol.bandwidth);
  }
  merge_smoothed(network_.latency, other.network_.latency);
  merge_smoothed(network_.bandwidth, other.network_.bandwidth);
}

void impl::merge_unsaved(const impl& other) {
  for (std::size_t k = 0; k < other.kinds_.size(); ++k) {
    const auto& classes = other.kinds_[k].by_class;
    bool touched = false;
    index kind = no_index;
    for (std::size_t c = 0; c < classes.size(); ++c) {
      const entry& from = classes[c];
      for (const bucket& ob : from.buckets) {
        if (!ob.unsaved.n && !ob.unsaved_rejected && !ob.restarted_unsaved) continue;
        if (kind == no_index) kind = kind_index(other.kind_names_.names[k]);
        entry& into = entry_for(kind, class_index(other.class_names_.names[c]));
        bucket& b = into.find_or_insert(ob.index);
        if (ob.restarted_unsaved) {
          // The regime changed here since the file was read: what the file holds is stale.
          b = ob;
        } else {
          b.ema = weighted_average(b.ema, b.all.n, ob.ema, ob.unsaved.n);
          b.all.combine(ob.unsaved);
          b.rejected += ob.unsaved_rejected;
          b.min_size = std::min(b.min_size, ob.min_size);
          b.max_size = std::max(b.max_size, ob.max_size);
        }
        refresh(into);
        touched = true;
      }
    }
    if (touched) refresh_best_class(kinds_[kind]);
  }
  for (std::size_t i = 0; i < other.workers_.size(); ++i) {
    const worker_state& ow = other.workers_[i];
    if (!ow.unsaved_updates) continue;
    index id = worker_names_.find(other.worker_names_.names[i]);
    if (id == no_index)
      id = worker_index(other.worker_names_.names[i], class_index(other.class_names_.names[ow.worker_class]));
    worker_state& w = workers_[id];
    w.factor = weighted_average(w.factor, w.updates, ow.factor, ow.unsaved_updates);
    w.updates += ow.unsaved_updates;
  }
  for (const auto& [key, ol] : other.links_) {
    if (!ol.latency.unsaved && !ol.bandwidth.unsaved) continue;
    const index from = worker_for_transfer(other.worker_names_.names[key >> 32]);
    const index to = worker_for_transfer(other.worker_names_.names[key & 0xffffffffu]);
    link_state& l = links_[link_key(from, to)];
    l.latency.combine(ol.latency.value, ol.latency.unsaved);
    l.bandwidth.combine(ol.bandwidth.value, ol.bandwidth.unsaved);
  }
  network_.latency.combine(other.network_.latency.value, other.network_.latency.unsaved);
  network_.bandwidth.combine(other.network_.bandwidth.value, other.network_.bandwidth.unsaved);
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

// ---- file format -------------------------------------------------------------------------------------
//
//   dx-cost-model 1
//   bucket  <kind> <class> <log2 size> <count> <mean> <M2> <ema> <rejected> <min size> <max size> <mean log2 size>
//   worker  <name> <class> <factor> <updates>
//   link    <from> <to> <latency> <latency samples> <bandwidth> <bandwidth samples>
//   network <latency> <latency samples> <bandwidth> <bandwidth samples>
//
// Names are escaped (escape_name), numbers printed with 17 significant digits so that they read
// back exactly. Blank lines and lines starting with '#' are ignored.

std::string impl::serialize() const {
  fmt::memory_buffer out;
  fmt::format_to(std::back_inserter(out), "{} {}\n", file_magic, file_version);
  for (std::size_t k = 0; k < kinds_.size(); ++k) {
    for (std::size_t c = 0; c < kinds_[k].by_class.size(); ++c) {
      for (const bucket& b : kinds_[k].by_class[c].buckets) {
        fmt::format_to(std::back_inserter(out),
                       "bucket {} {} {} {} {:.17g} {:.17g} {:.17g} {} {:.17g} {:.17g} {:.17g}\n",
                       escape_name(kind_names_.names[k]), escape_name(class_names_.names[c]), b.index, b.all.n,
                       b.all.mean, b.all.m2, b.ema, b.rejected, b.min_size, b.max_size, b.all.log_size);
      }
    }
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const worker_state& w = workers_[i];
    if (!w.updates) continue;
    fmt::format_to(std::back_inserter(out), "worker {} {} {:.17g} {}\n", escape_name(worker_names_.names[i]),
                   escape_name(class_names_.names[w.worker_class]), w.factor, w.updates);
  }
  std::vector<std::uint64_t> keys;
  for (const auto& [key, l] : links_) {
    if (l.latency.n || l.bandwidth.n) keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());  // a stable file for a given model
  for (const std::uint64_t key : keys) {
    const link_state& l = links_.at(key);
    fmt::format_to(std::back_inserter(out), "link {} {} {:.17g} {} {:.17g} {}\n",
                   escape_name(worker_names_.names[key >> 32]), escape_name(worker_names_.names[key & 0xffffffffu]),
                   l.latency.value, l.latency.n, l.bandwidth.value, l.bandwidth.n);
  }
  if (network_.latency.n || network_.bandwidth.n) {
    fmt::format_to(std::back_inserter(out), "network {:.17g} {} {:.17g} {}\n", network_.latency.value,
                   network_.latency.n, network_.bandwidth.value, network_.bandwidth.n);
  }
  return fmt::to_string(out);
}

bool impl::parse(std::string_view text, const std::string& path) {
  std::size_t number = 0;
  bool header_seen = false;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const line_reader in(line, path, number);
    if (!header_seen) {
      if (in.size() != 2 || in.token(0) != file_magic) in.fail("not a dx cost model file (bad header)");
      int version = 0;
      const std::string_view v = in.token(1);
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
      if (ec != std::errc{} || end != v.data() + v.size()) in.fail(fmt::format("bad version '{}'", v));
      if (version != file_version) return false;
      header_seen = true;
      continue;
    }
    if (in.size() == 0 || in.token(0).front() == '#') continue;
    const std::string_view type = in.token(0);
    if (type == "bucket") {
      in.expect_fields(12);
      const std::string kind = in.name(1), worker_class = in.name(2);
      const std::uint64_t bucket_index = in.count(3);
      if (bucket_index >= bucket_count) in.fail(fmt::format("bucket index {} out of range", bucket_index));
      const auto index = static_cast<int>(bucket_index);
      bucket b;
      b.index = static_cast<std::uint8_t>(index);
      b.all.n = in.count(4);
      if (!b.all.n) in.fail("bucket with no samples");
      b.all.mean = in.number(5, 0, max_size);
      b.all.m2 = in.number(6, 0, std::numeric_limits<double>::max());
      b.ema = in.number(7, 0, max_size);
      if (!(b.all.mean > 0) || !(b.ema > 0)) in.fail("durations must be positive");
      b.rejected = in.count(8);
      b.min_size = in.number(9, 0, max_size);
      b.max_size = in.number(10, b.min_size, max_size);
      b.all.log_size = in.number(11, 0, 64);
      entry& e = entry_for(kind_index(kind), class_index(worker_class));
      const bool existed = e.find(index) != nullptr;
      bucket& into = e.find_or_insert(index);
      if (!existed) {
        into = b;
      } else {  // the same bucket twice: both count
        into.ema = weighted_average(into.ema, into.all.n, b.ema, b.all.n);
        into.all.combine(b.all);
        into.rejected += b.rejected;
        into.min_size = std::min(into.min_size, b.min_size);
        into.max_size = std::max(into.max_size, b.max_size);
      }
    } else if (type == "worker") {
      in.expect_fields(5);
      const std::string name = in.name(1), worker_class = in.name(2);
      const double factor = in.number(3, min_factor, max_factor);
      const std::uint64_t updates = in.count(4);
      index id = worker_names_.find(name);
      if (id == no_index) id = worker_index(name, class_index(worker_class));
      worker_state& w = workers_[id];
      w.factor = weighted_average(w.factor, w.updates, factor, updates);
      w.updates += updates;
    } else if (type == "link" || type == "network") {
      const bool is_link = type == "link";
      in.expect_fields(is_link ? 7 : 5);
      const std::size_t first = is_link ? 3 : 1;
      const double latency = in.number(first, 0, 1e9);
      const std::uint64_t latency_n = in.count(first + 1);
      const double bandwidth = in.number(first + 2, 0, std::numeric_limits<double>::max());
      const std::uint64_t bandwidth_n = in.count(first + 3);
      if (bandwidth_n && !(bandwidth > 0)) in.fail("bandwidth must be positive");
      link_state* l = &network_;
      if (is_link) {
        const index from = worker_for_transfer(in.name(1)), to = worker_for_transfer(in.name(2));
        l = &links_[link_key(from, to)];
      }
      l->latency.combine(latency, latency_n);
      l->bandwidth.combine(bandwidth, bandwidth_n);
    } else {
      in.fail(fmt::format("unknown record '{}'", type));
    }
  }
  if (!header_seen) throw error(fmt::format("cost model file {}: line 1: empty file", path));
  refresh_all();
  return true;
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
    out.push_back({impl_->kind_names_.names[k], ks.runs, ks.calibrated_runs, median(ks.recent_apes), ks.recent_ape});
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

void cost_model::merge(const cost_model& other) { impl_->merge_all(*other.impl_); }

void cost_model::save(const std::filesystem::path& path) const {
  if (path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) throw_io("create the directory of", path, ec.value());
  }
  const std::filesystem::path lock_path = path.string() + ".lock";
  unique_fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (lock.get() < 0) throw_io("create", lock_path, errno);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw_io("lock", lock_path, errno);
  }

  // Under the lock nobody else writes the file: read what it holds now and add what this model
  // learned since it last read or wrote a file, so neither our samples nor another program's
  // are lost and what was loaded is not counted twice.
  impl on_disk;
  std::string text;
  bool merge_new_only = false;
  if (read_file(path, text)) {
    try {
      merge_new_only = on_disk.parse(text, path.string());
      if (!merge_new_only) {
        detail::log(detail::log_level::warn, "cost model {}: another format version; replacing it", path.string());
      }
    } catch (const error& e) {
      detail::log(detail::log_level::warn, "{}; replacing the file", e.what());
    }
    if (!merge_new_only) on_disk = impl{};
  }
  if (merge_new_only) {
    on_disk.merge_unsaved(*impl_);
  } else {
    on_disk.merge_all(*impl_);  // nothing usable there: the whole model goes in
  }
  replace_file(path, on_disk.serialize());
  // What the model predicts is unchanged; only the record of what is already on disk moves.
  impl_->mark_saved();
}

bool cost_model::load(const std::filesystem::path& path) {
  std::string text;
  if (!read_file(path, text)) return false;
  impl loaded;
  if (!loaded.parse(text, path.string())) {
    detail::log(detail::log_level::warn, "cost model {}: another format version; ignored", path.string());
    return false;
  }
  impl_->merge_all(loaded);
  return true;
}

std::filesystem::path cost_model::default_path() {
  const auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  if (std::string p = env("DX_COSTMODEL"); !p.empty()) return p;
  const std::filesystem::path relative = std::filesystem::path("dx") / "cost_model.txt";
  // The XDG spec says a relative XDG_STATE_HOME is invalid and to be ignored.
  if (std::filesystem::path state = env("XDG_STATE_HOME"); state.is_absolute()) return state / relative;
  std::string home = env("HOME");
  if (home.empty()) {
    if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) home = pw->pw_dir;
  }
  if (home.empty()) return std::filesystem::temp_directory_path() / relative;
  return std::filesystem::path(home) / ".local" / "state" / relative;
}

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
