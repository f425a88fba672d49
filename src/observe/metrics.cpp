#include "observe/exposition.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <set>

namespace dx {

namespace detail {

namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

void escape_into(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

const char* type_name(metric_type t) {
  switch (t) {
    case metric_type::counter:
      return "counter";
    case metric_type::gauge:
      return "gauge";
    case metric_type::histogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

std::string format_metric_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void exposition::histogram_samples(std::string_view family, std::span<const label_ref> labels,
                                   std::span<const double> bounds, std::span<const std::uint64_t> counts, double sum) {
  std::vector<label_ref> with_le(labels.begin(), labels.end());
  with_le.push_back({"le", {}});
  std::string name(family);
  const std::size_t base = name.size();
  name += "_bucket";
  std::uint64_t cumulative = 0;
  std::string le;
  for (std::size_t i = 0; i <= bounds.size() && i < counts.size(); ++i) {
    cumulative += counts[i];
    le = i < bounds.size() ? format_metric_value(bounds[i]) : "+Inf";
    with_le.back().value = le;
    sample(name, with_le, static_cast<double>(cumulative));
  }
  name.resize(base);
  name += "_sum";
  sample(name, labels, sum);
  name.resize(base);
  name += "_count";
  sample(name, labels, static_cast<double>(cumulative));
}

bool text_exposition::family(std::string_view name, metric_type type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  escape_into(out_, help, false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type_name(type);
  out_ += '\n';
  return true;
}

void text_exposition::sample(std::string_view name, std::span<const label_ref> labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const label_ref& l : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += l.name;
      out_ += "=\"";
      escape_into(out_, l.value, true);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    fmt::format_to(std::back_inserter(out_), "{}", static_cast<long long>(value));
  } else {
    out_ += format_metric_value(value);
  }
  out_ += '\n';
}

bool sample_reader::family(std::string_view name, metric_type, std::string_view) {
  taking_ = wanted_.find(name) != wanted_.end();
  return taking_;
}

void sample_reader::sample(std::string_view name, std::span<const label_ref> labels, double value) {
  if (!taking_) return;
  sample_value& s = samples_.emplace_back();
  s.name = name;
  for (const label_ref& l : labels) s.labels.emplace_back(l.name, l.value);
  std::sort(s.labels.begin(), s.labels.end());
  s.value = value;
}

std::vector<std::string> families_of_sample(std::string_view sample) {
  std::vector<std::string> out{std::string(sample)};
  for (std::string_view suffix : {"_bucket", "_sum", "_count"})
    if (sample.size() > suffix.size() && sample.ends_with(suffix))
      out.emplace_back(sample.substr(0, sample.size() - suffix.size()));
  return out;
}

}  // namespace detail

std::uint64_t histogram::count() const noexcept {
  if (!cell_) return 0;
  std::uint64_t n = 0;
  for (std::size_t i = 0; i <= cell_->bounds.size(); ++i) n += cell_->counts[i].load(std::memory_order_relaxed);
  return n;
}

struct metrics::impl {
  struct series {
    metric_labels labels;  // sorted by name
    std::unique_ptr<detail::metric_cell> cell;
    std::unique_ptr<detail::histogram_cell> hist;
  };
  struct family {
    std::string help;
    detail::metric_type type = detail::metric_type::counter;
    std::vector<std::string> label_names;  // sorted
    std::vector<double> bounds;
    std::vector<std::unique_ptr<series>> series_list;  // in the order they were added
    std::map<metric_labels, series*> by_labels;
  };

  mutable std::mutex mutex;
  std::map<std::string, family, std::less<>> families;
  std::vector<std::pair<std::uint64_t, std::shared_ptr<detail::metrics_access::collector>>> collectors;
  std::uint64_t next_collector = 1;

  series& find_or_add(std::string_view name, std::string_view help, detail::metric_type type,
                      const metric_labels& given, const std::vector<double>* bounds) {
    if (!detail::valid_metric_name(name))
      detail::throw_error(detail::error_kind::generic,
                          fmt::format("'{}' is not a valid metric name (letters, digits, '_' and ':', not starting "
                                      "with a digit)",
                                      name));
    if (name.starts_with("dx_"))
      detail::throw_error(detail::error_kind::generic,
                          fmt::format("metric '{}': the dx_ prefix is reserved for dx's own metrics", name));
    metric_labels labels = given;
    std::sort(labels.begin(), labels.end());
    std::vector<std::string> names;
    for (std::size_t i = 0; i < labels.size(); ++i) {
      const auto& [n, v] = labels[i];
      if (!detail::valid_label_name(n) || (type == detail::metric_type::histogram && n == "le"))
        detail::throw_error(detail::error_kind::generic,
                            fmt::format("metric '{}': '{}' is not a valid label name", name, n));
      if (i > 0 && labels[i - 1].first == n)
        detail::throw_error(detail::error_kind::generic,
                            fmt::format("metric '{}': label '{}' is given twice", name, n));
      names.push_back(n);
    }
    std::lock_guard lock(mutex);
    auto it = families.find(name);
    if (it == families.end()) {
      family f;
      f.help = std::string(help);
      f.type = type;
      f.label_names = names;
      if (bounds) f.bounds = *bounds;
      it = families.emplace(std::string(name), std::move(f)).first;
    }
    family& f = it->second;
    if (f.type != type)
      detail::throw_error(detail::error_kind::generic, fmt::format("metric '{}' is a {}, not a {}", name,
                                                                   detail::type_name(f.type), detail::type_name(type)));
    if (f.label_names != names)
      detail::throw_error(detail::error_kind::generic,
                          fmt::format("metric '{}' has the labels [{}], not [{}]", name, fmt::join(f.label_names, ", "),
                                      fmt::join(names, ", ")));
    if (bounds && f.bounds != *bounds)
      detail::throw_error(detail::error_kind::generic,
                          fmt::format("histogram '{}' was added with other bucket bounds", name));
    if (auto found = f.by_labels.find(labels); found != f.by_labels.end()) return *found->second;
    auto s = std::make_unique<series>();
    s->labels = std::move(labels);
    if (type == detail::metric_type::histogram) {
      s->hist = std::make_unique<detail::histogram_cell>();
      s->hist->bounds = f.bounds;
      s->hist->counts = std::make_unique<std::atomic<std::uint64_t>[]>(f.bounds.size() + 1);
      for (std::size_t i = 0; i <= f.bounds.size(); ++i) s->hist->counts[i].store(0);
    } else {
      s->cell = std::make_unique<detail::metric_cell>();
    }
    f.by_labels.emplace(s->labels, s.get());
    f.series_list.push_back(std::move(s));
    return *f.series_list.back();
  }

  void collect_own(detail::exposition& out) const {
    std::lock_guard lock(mutex);
    std::vector<detail::label_ref> refs;
    std::vector<std::uint64_t> counts;
    for (const auto& [name, f] : families) {
      if (!out.family(name, f.type, f.help)) continue;
      for (const auto& s : f.series_list) {
        refs.clear();
        for (const auto& [n, v] : s->labels) refs.push_back({n, v});
        if (s->hist) {
          counts.assign(f.bounds.size() + 1, 0);
          for (std::size_t i = 0; i < counts.size(); ++i)
            counts[i] = s->hist->counts[i].load(std::memory_order_relaxed);
          out.histogram_samples(name, refs, f.bounds, counts, s->hist->sum.load(std::memory_order_relaxed));
        } else {
          out.sample(name, refs, s->cell->value.load(std::memory_order_relaxed));
        }
      }
    }
  }
};

metrics::metrics() : impl_(std::make_unique<impl>()) {}
metrics::~metrics() = default;

counter metrics::add_counter(std::string_view name, std::string_view help, const metric_labels& labels) {
  return counter(impl_->find_or_add(name, help, detail::metric_type::counter, labels, nullptr).cell.get());
}

gauge metrics::add_gauge(std::string_view name, std::string_view help, const metric_labels& labels) {
  return gauge(impl_->find_or_add(name, help, detail::metric_type::gauge, labels, nullptr).cell.get());
}

histogram metrics::add_histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                                 const metric_labels& labels) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (std::isnan(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
      detail::throw_error(detail::error_kind::generic,
                          fmt::format("histogram '{}': bucket bounds must be ascending numbers", name));
  }
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();  // +Inf is implied
  return histogram(impl_->find_or_add(name, help, detail::metric_type::histogram, labels, &bounds).hist.get());
}

std::string metrics::render() const {
  detail::text_exposition out;
  detail::metrics_access::collect(*this, out);
  return out.take();
}

std::optional<double> metrics::value(std::string_view sample, const metric_labels& labels) const {
  std::set<std::string, std::less<>> fams;
  for (auto& f : detail::families_of_sample(sample)) fams.insert(std::move(f));
  detail::sample_reader reader(std::move(fams));
  detail::metrics_access::collect(*this, reader);
  metric_labels want = labels;
  std::sort(want.begin(), want.end());
  for (const auto& s : reader.samples())
    if (s.name == sample && s.labels == want) return s.value;
  return std::nullopt;
}

std::vector<double> metrics::exponential_buckets(double start, double factor, std::size_t count) {
  if (!(start > 0) || !(factor > 1))
    detail::throw_error(
        detail::error_kind::generic,
        fmt::format("exponential_buckets needs start > 0 and factor > 1 (got {} and {})", start, factor));
  std::vector<double> out;
  double b = start;
  for (std::size_t i = 0; i < count; ++i, b *= factor) out.push_back(b);
  return out;
}

namespace detail {

std::uint64_t metrics_access::add_collector(metrics& m, collector c) {
  std::lock_guard lock(m.impl_->mutex);
  const std::uint64_t key = m.impl_->next_collector++;
  m.impl_->collectors.emplace_back(key, std::make_shared<collector>(std::move(c)));
  return key;
}

void metrics_access::remove_collector(metrics& m, std::uint64_t key) {
  std::lock_guard lock(m.impl_->mutex);
  std::erase_if(m.impl_->collectors, [&](const auto& p) { return p.first == key; });
}

void metrics_access::collect(const metrics& m, exposition& out) {
  // Collectors run without the registry's lock: they take their owners' locks.
  std::vector<std::shared_ptr<collector>> cs;
  {
    std::lock_guard lock(m.impl_->mutex);
    for (const auto& [key, c] : m.impl_->collectors) cs.push_back(c);
  }
  for (const auto& c : cs) (*c)(out);
  m.impl_->collect_own(out);
}

}  // namespace detail

}  // namespace dx
