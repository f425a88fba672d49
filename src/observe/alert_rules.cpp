// The alert center: user rules over the metrics registry, runtime alerts, recent alerts, counts
// and callbacks (see alert_rules.hpp).
#include "observe/alert_rules.hpp"

#include "common/log.hpp"
#include "observe/exposition.hpp"

#include <dx/error.hpp>
#include <dx/metrics.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace dx::detail::observe {

namespace {
std::string series_name(const std::string& name, const metric_labels& labels) {
  if (labels.empty()) return name;
  std::string out = name + "{";
  for (std::size_t i = 0; i < labels.size(); ++i)
    out += fmt::format("{}{}=\"{}\"", i ? "," : "", labels[i].first, labels[i].second);
  return out + "}";
}
}  // namespace

alert_center::alert_center(dx::metrics& registry) : registry_(registry) {
  collector_key_ = metrics_access::add_collector(registry_, [this](exposition& out) {
    std::lock_guard lock(mutex_);
    if (out.family("dx_alerts_total", metric_type::counter, "Alerts raised, by kind.")) {
      for (std::size_t i = 0; i < alert_kind_count; ++i)
        out.sample("dx_alerts_total", {{"kind", to_string(static_cast<alert_kind>(i))}},
                   static_cast<double>(by_kind_[i]));
    }
    if (out.family("dx_alert_active", metric_type::gauge, "1 while a user alert rule is firing.")) {
      for (const auto& [name, active] : rule_active_) out.sample("dx_alert_active", {{"rule", name}}, active ? 1 : 0);
    }
  });
}

alert_center::~alert_center() { metrics_access::remove_collector(registry_, collector_key_); }

void alert_center::add_rule(alert_rule rule) {
  if (rule.name.empty()) throw_error(error_kind::generic, "an alert rule needs a name");
  if (rule.metric.empty()) throw_error(error_kind::generic, fmt::format("alert rule '{}' names no metric", rule.name));
  if (rule.for_duration.count() < 0)
    throw_error(error_kind::generic, fmt::format("alert rule '{}': for_duration is negative", rule.name));
  if (std::isnan(rule.threshold))
    throw_error(error_kind::generic, fmt::format("alert rule '{}': the threshold is not a number", rule.name));
  std::sort(rule.labels.begin(), rule.labels.end());
  std::lock_guard rules(rules_mutex_);
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, active] : rule_active_)
      if (name == rule.name)
        throw_error(error_kind::generic, fmt::format("there is already an alert rule '{}'", rule.name));
    rule_active_.emplace_back(rule.name, false);
  }
  rules_.emplace_back(std::move(rule));
}

bool alert_center::has_rules() const {
  std::lock_guard lock(mutex_);
  return !rule_active_.empty();
}

void alert_center::on_alert(std::function<void(const alert&)> callback) {
  if (!callback) return;
  std::lock_guard lock(mutex_);
  callbacks_.push_back(std::move(callback));
}

void alert_center::raise(alert a) {
  std::lock_guard lock(mutex_);
  // An alert an on_alert callback receives is the application's to report: logged at info, so
  // the default level does not print it a second time. Nobody listening: a warning.
  log(callbacks_.empty() ? log_level::warn : log_level::info, "alert {}: {}", to_string(a.kind), a.message);
  ++by_kind_[static_cast<std::size_t>(a.kind)];
  recent_.push_back(a);
  if (recent_.size() > max_recent) recent_.pop_front();
  pending_.push_back(std::move(a));
}

void alert_center::evaluate(double now) {
  std::lock_guard rules(rules_mutex_);
  if (rules_.empty()) return;
  std::set<std::string, std::less<>> families;
  for (const rule_watch& r : rules_)
    for (auto& f : families_of_sample(r.rule.metric)) families.insert(std::move(f));
  sample_reader reader(std::move(families));
  metrics_access::collect(registry_, reader);
  std::vector<alert> fired;
  std::vector<std::pair<std::string, bool>> active;
  for (rule_watch& r : rules_) {
    std::set<metric_labels> seen;
    bool any_firing = false;
    for (const auto& s : reader.samples()) {
      if (s.name != r.rule.metric) continue;
      const bool matches = std::all_of(r.rule.labels.begin(), r.rule.labels.end(), [&](const auto& want) {
        return std::find(s.labels.begin(), s.labels.end(), want) != s.labels.end();
      });
      if (!matches) continue;
      seen.insert(s.labels);
      series_watch& w = r.series[s.labels];
      double v = s.value;
      if (r.rule.rate) {
        const double prev = w.last_value, prev_time = w.last_time;
        w.last_value = s.value;
        w.last_time = now;
        if (std::isnan(prev) || now <= prev_time) continue;
        v = std::max(0.0, s.value - prev) / (now - prev_time);  // a counter reset counts as no increase
      }
      const bool holds = r.rule.when == alert_rule::comparison::above ? v > r.rule.threshold : v < r.rule.threshold;
      if (!holds) {
        if (w.firing)
          log(log_level::info, "alert rule '{}' cleared for {}", r.rule.name, series_name(s.name, s.labels));
        w.since = -1;
        w.firing = false;
        continue;
      }
      if (w.since < 0) w.since = now;
      const double held = now - w.since;
      if (!w.firing && held >= std::chrono::duration<double>(r.rule.for_duration).count()) {
        w.firing = true;
        alert a;
        a.kind = alert_kind::rule;
        a.subject = r.rule.name;
        a.message =
            fmt::format("rule '{}': {}{} = {:.4g}, {} {:.4g} for {:.1f} s", r.rule.name, series_name(s.name, s.labels),
                        r.rule.rate ? " per second" : "", v,
                        r.rule.when == alert_rule::comparison::above ? "above" : "below", r.rule.threshold, held);
        a.value = v;
        a.threshold = r.rule.threshold;
        a.time = std::chrono::system_clock::now();
        fired.push_back(std::move(a));
      }
      any_firing = any_firing || w.firing;
    }
    std::erase_if(r.series, [&](const auto& e) { return !seen.count(e.first); });
    active.emplace_back(r.rule.name, any_firing);
  }
  for (auto& a : fired) raise(std::move(a));
  std::lock_guard lock(mutex_);
  rule_active_ = std::move(active);
}

void alert_center::deliver() {
  std::vector<alert> pending;
  std::vector<std::function<void(const alert&)>> callbacks;
  {
    std::lock_guard lock(mutex_);
    if (pending_.empty()) return;
    pending.swap(pending_);
    callbacks = callbacks_;
  }
  for (const alert& a : pending)
    for (auto& cb : callbacks) {
      try {
        cb(a);
      } catch (const std::exception& e) {
        log(log_level::warn, "an alert callback threw: {}", e.what());
      } catch (...) {
        log(log_level::warn, "an alert callback threw");
      }
    }
}

bool alert_center::has_pending() const {
  std::lock_guard lock(mutex_);
  return !pending_.empty();
}

std::vector<alert> alert_center::recent() const {
  std::lock_guard lock(mutex_);
  return std::vector<alert>(recent_.begin(), recent_.end());
}

}  // namespace dx::detail::observe
