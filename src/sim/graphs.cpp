#include "sim/graphs.hpp"

#include <dx/error.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

namespace dx::sim {

double kind_spec::seconds(double size) const { return base * std::pow(size, exponent); }

double graph::true_seconds(std::size_t i) const {
  const task_def& t = tasks[i];
  return kinds[t.kind].seconds(t.size) * t.noise;
}

std::size_t graph::edges() const {
  std::size_t n = 0;
  for (const task_def& t : tasks) n += t.inputs.size();
  return n;
}

bool graph::valid() const {
  const std::size_t n = tasks.size();
  std::vector<std::uint32_t> missing(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<sched::task_id> in = tasks[i].inputs;
    std::sort(in.begin(), in.end());
    if (std::adjacent_find(in.begin(), in.end()) != in.end()) return false;
    for (sched::task_id j : in)
      if (j >= n || j == i) return false;
    missing[i] = static_cast<std::uint32_t>(in.size());
    if (tasks[i].kind >= kinds.size()) return false;
  }
  const auto deps = dependents();
  std::vector<sched::task_id> ready;
  for (std::size_t i = 0; i < n; ++i)
    if (missing[i] == 0) ready.push_back(i);
  std::size_t seen = 0;
  while (!ready.empty()) {
    const sched::task_id t = ready.back();
    ready.pop_back();
    ++seen;
    for (sched::task_id d : deps[t])
      if (--missing[d] == 0) ready.push_back(d);
  }
  return seen == n;
}

double graph::total_work() const {
  double s = 0;
  for (std::size_t i = 0; i < tasks.size(); ++i) s += true_seconds(i);
  return s;
}

double graph::critical_path() const {
  std::vector<double> finish(tasks.size(), 0);
  double best = 0;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    double start = 0;
    for (sched::task_id j : tasks[i].inputs) start = std::max(start, finish[j]);
    finish[i] = start + true_seconds(i);
    best = std::max(best, finish[i]);
  }
  return best;
}

std::size_t graph::depth() const {
  std::vector<std::size_t> d(tasks.size(), 0);
  std::size_t best = 0;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    std::size_t m = 0;
    for (sched::task_id j : tasks[i].inputs) m = std::max(m, d[j]);
    d[i] = m + 1;
    best = std::max(best, d[i]);
  }
  return best;
}

std::vector<std::vector<sched::task_id>> graph::dependents() const {
  std::vector<std::vector<sched::task_id>> out(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i)
    for (sched::task_id j : tasks[i].inputs)
      if (j < tasks.size()) out[j].push_back(i);
  return out;
}

namespace {

double log_uniform(std::mt19937_64& rng, double lo, double hi) {
  if (!(hi > lo)) return lo;
  std::uniform_real_distribution<double> u(std::log(lo), std::log(hi));
  return std::exp(u(rng));
}

// One generator object per graph: kinds are drawn first from the seed, so every shape built
// with the same seed shares the same kinds and a model trained on one shape carries over.
class builder {
 public:
  builder(std::string shape, const graph_options& o) : o_(o), rng_(o.seed) {
    g_.shape = std::move(shape);
    const std::size_t k = std::max<std::size_t>(1, o.kinds);
    const double mid = std::sqrt(o.min_size * o.max_size);
    std::uniform_real_distribution<double> ex(o.min_exponent, std::max(o.min_exponent, o.max_exponent));
    for (std::size_t i = 0; i < k; ++i) {
      kind_spec s;
      s.name = "k";
      s.name += std::to_string(i);
      const double at_mid = log_uniform(rng_, o.min_kind_seconds, o.max_kind_seconds);
      s.exponent = ex(rng_);
      s.base = at_mid / std::pow(mid, s.exponent);
      g_.kinds.push_back(std::move(s));
    }
  }

  std::mt19937_64& rng() { return rng_; }

  void reserve(std::size_t n) { g_.tasks.reserve(n); }

  sched::task_id add(std::vector<sched::task_id> inputs) {
    task_def t;
    t.inputs = std::move(inputs);
    std::uniform_int_distribution<std::uint32_t> kind(0, static_cast<std::uint32_t>(g_.kinds.size() - 1));
    t.kind = kind(rng_);
    t.size = log_uniform(rng_, o_.min_size, o_.max_size);
    t.noise = o_.noise_sigma > 0 ? std::lognormal_distribution<double>(0, o_.noise_sigma)(rng_) : 1.0;
    t.output_bytes = static_cast<std::uint64_t>(
        log_uniform(rng_, static_cast<double>(std::max<std::uint64_t>(1, o_.min_output_bytes)),
                    static_cast<double>(std::max<std::uint64_t>(1, o_.max_output_bytes))));
    if (o_.priority_levels > 1) t.priority = std::uniform_int_distribution<int>(0, o_.priority_levels - 1)(rng_);
    if (o_.needs_fraction > 0 && !o_.needs.empty() &&
        std::uniform_real_distribution<double>(0, 1)(rng_) < o_.needs_fraction)
      t.needs = o_.needs;
    g_.tasks.push_back(std::move(t));
    return g_.tasks.size() - 1;
  }

  graph take() { return std::move(g_); }

 private:
  graph_options o_;
  std::mt19937_64 rng_;
  graph g_;
};

}  // namespace

graph random_dag(std::size_t tasks, std::size_t max_inputs, const graph_options& o) {
  builder b("random", o);
  b.reserve(tasks);
  std::vector<sched::task_id> in;
  for (std::size_t i = 0; i < tasks; ++i) {
    const std::size_t k = std::uniform_int_distribution<std::size_t>(0, std::min(max_inputs, i))(b.rng());
    in.clear();
    // k is small next to i except for the first few tasks, where the retry loop still ends
    // quickly because k <= i.
    std::uniform_int_distribution<sched::task_id> pick(0, i == 0 ? 0 : i - 1);
    while (in.size() < k) {
      const sched::task_id j = pick(b.rng());
      if (std::find(in.begin(), in.end(), j) == in.end()) in.push_back(j);
    }
    b.add(in);
  }
  return b.take();
}

graph fork_join(std::size_t stages, std::size_t width, const graph_options& o) {
  builder b("fork-join", o);
  b.reserve(1 + stages * (width + 1));
  sched::task_id join = b.add({});
  std::vector<sched::task_id> forks;
  for (std::size_t s = 0; s < stages; ++s) {
    forks.clear();
    for (std::size_t i = 0; i < width; ++i) forks.push_back(b.add({join}));
    join = b.add(forks);
  }
  return b.take();
}

graph map_reduce(std::size_t maps, std::size_t reduces, const graph_options& o) {
  builder b("map-reduce", o);
  b.reserve(maps + reduces + 1);
  std::vector<sched::task_id> m, r;
  for (std::size_t i = 0; i < maps; ++i) m.push_back(b.add({}));
  for (std::size_t i = 0; i < reduces; ++i) r.push_back(b.add(m));
  b.add(r);
  return b.take();
}

graph tree_reduction(std::size_t leaves, std::size_t fan_in, const graph_options& o) {
  builder b("tree", o);
  fan_in = std::max<std::size_t>(2, fan_in);
  std::vector<sched::task_id> level, next;
  for (std::size_t i = 0; i < std::max<std::size_t>(1, leaves); ++i) level.push_back(b.add({}));
  while (level.size() > 1) {
    next.clear();
    for (std::size_t i = 0; i < level.size(); i += fan_in) {
      const std::size_t end = std::min(level.size(), i + fan_in);
      next.push_back(b.add(std::vector<sched::task_id>(level.begin() + static_cast<std::ptrdiff_t>(i),
                                                       level.begin() + static_cast<std::ptrdiff_t>(end))));
    }
    level.swap(next);
  }
  return b.take();
}

graph wavefront(std::size_t rows, std::size_t cols, const graph_options& o) {
  builder b("wavefront", o);
  b.reserve(rows * cols);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t c = 0; c < cols; ++c) {
      std::vector<sched::task_id> in;
      if (c > 0) in.push_back(r * cols + c - 1);
      if (r > 0) in.push_back((r - 1) * cols + c);
      b.add(std::move(in));
    }
  return b.take();
}

graph independent(std::size_t tasks, double seconds) {
  graph g;
  g.shape = "independent";
  g.kinds.push_back({"work", seconds, 0});
  g.tasks.resize(tasks);
  return g;
}

graph chains(std::size_t count, std::size_t length, const graph_options& o) {
  builder b("chains", o);
  b.reserve(count * length);
  for (std::size_t s = 0; s < length; ++s)
    for (std::size_t c = 0; c < count; ++c) {
      const sched::task_id id = s * count + c;
      b.add(s == 0 ? std::vector<sched::task_id>{} : std::vector<sched::task_id>{id - count});
    }
  return b.take();
}

const std::vector<std::string>& graph_shapes() {
  static const std::vector<std::string> names{"random", "fork-join", "map-reduce", "tree", "wavefront", "chains"};
  return names;
}

graph make_graph(std::string_view shape, std::size_t tasks, std::size_t max_inputs, std::size_t width,
                 const graph_options& o) {
  tasks = std::max<std::size_t>(1, tasks);
  if (shape == "random") return random_dag(tasks, max_inputs, o);
  if (shape == "fork-join") {
    const std::size_t w = width ? width : 100;
    return fork_join(std::max<std::size_t>(1, (tasks - 1) / (w + 1)), w, o);
  }
  if (shape == "map-reduce") {
    const std::size_t r = width ? width : std::max<std::size_t>(1, static_cast<std::size_t>(std::sqrt(tasks) / 4));
    return map_reduce(tasks > r + 1 ? tasks - r - 1 : 1, r, o);
  }
  if (shape == "tree") {
    const std::size_t f = std::max<std::size_t>(2, width ? width : 4);
    // A tree with L leaves and fan-in f has about L * f / (f - 1) tasks.
    return tree_reduction(std::max<std::size_t>(1, tasks * (f - 1) / f), f, o);
  }
  if (shape == "wavefront") {
    const auto side = std::max<std::size_t>(1, static_cast<std::size_t>(std::sqrt(static_cast<double>(tasks))));
    return wavefront(side, std::max<std::size_t>(1, tasks / side), o);
  }
  if (shape == "chains") {
    const std::size_t c = width ? width : 100;
    return chains(c, std::max<std::size_t>(1, tasks / c), o);
  }
  dx::detail::throw_error(dx::detail::error_kind::generic, "unknown graph shape '" + std::string(shape) + "'");
}

}  // namespace dx::sim
