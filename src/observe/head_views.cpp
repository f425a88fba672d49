// /api/state, /api/tasks and the HTTP routes of a distributed cluster, from the records the head
// hands over (see head_views.hpp).
#include "observe/head_views.hpp"

#include "observe/dashboard.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>

namespace dx::detail::observe {

std::optional<double> shown_remaining_seconds(const state_record& s) {
  if (s.uncalibrated_kinds.empty()) return s.remaining_seconds;
  if (s.tasks_left == 0) return 0.0;
  if (!s.completion_rate || *s.completion_rate <= 0) return std::nullopt;
  return static_cast<double>(s.tasks_left) / *s.completion_rate;
}

std::optional<double> completion_rate(const history<task_event>& events, double now, double window) {
  std::size_t done = 0;
  double earliest_start = now;
  for (std::uint64_t seq = events.next(); seq > events.first();) {
    const task_event& e = events.at(--seq);
    const double end = e.start + e.duration;
    if (end <= now - window) break;  // events are recorded as attempts end
    if (e.status != attempt_end::done) continue;
    ++done;
    earliest_start = std::min(earliest_start, e.start);
  }
  const double span = now - std::max(earliest_start, now - window);
  if (done == 0 || span <= 0) return std::nullopt;
  return static_cast<double>(done) / span;
}

std::string state_json(const state_record& s) {
  using nlohmann::json;
  json j;
  j["version"] = s.version;
  j["now"] = s.now;
  j["started"] = s.started;
  j["policy"] = s.policy;
  std::uint64_t submitted = 0, completed = 0, failed = 0, retried = 0, moved = 0, open = 0, sent = 0, pausing = 0;
  json kinds = json::array();
  for (const kind_record& k : s.kinds) {
    submitted += k.submitted;
    completed += k.completed;
    failed += k.failed;
    retried += k.retried;
    pausing += k.pausing;
    moved += k.moved;
    open += k.open;
    sent += k.assigned;
    json kj{{"kind", k.kind},
            {"submitted", k.submitted},
            {"completed", k.completed},
            {"failed", k.failed},
            {"pending", k.open > k.assigned ? k.open - k.assigned : 0},
            {"pausing", k.pausing},
            {"assigned", k.assigned},
            {"mean_seconds", k.runs ? k.run_seconds / static_cast<double>(k.runs) : 0.0},
            {"prediction_error", nullptr}};
    if (k.prediction_error) kj["prediction_error"] = *k.prediction_error;
    kinds.push_back(std::move(kj));
  }
  std::uint64_t running = 0;
  json workers = json::array();
  for (const worker_record& w : s.workers) {
    if (w.state != "gone") running += w.busy;
    workers.push_back({{"id", w.id},
                       {"address", w.address},
                       {"state", w.state},
                       {"threads", w.threads},
                       {"busy_threads", w.busy},
                       {"queued", w.assigned - w.busy},
                       {"assigned", w.assigned},
                       {"completed", w.completed},
                       {"failed", w.failed},
                       {"memory_bytes", w.memory_bytes},
                       {"stored_bytes", w.stored_bytes},
                       {"resources", w.resources},
                       {"heartbeat_age_seconds", w.heartbeat_age_seconds},
                       {"backlog_seconds", w.backlog_seconds},
                       {"rtt_seconds", w.rtt_seconds},
                       {"rtt_jitter_seconds", w.rtt_jitter_seconds},
                       {"reliability",
                        {{"valid", w.valid},
                         {"invalid", w.invalid},
                         {"lost", w.lost},
                         {"late", w.late},
                         {"consecutive_valid", w.consecutive_valid},
                         {"quarantined", w.quarantined}}},
                       {"pid", w.pid}});
  }
  j["tasks"] = {{"submitted", submitted},
                {"pending", open > sent ? open - sent : 0},
                {"queued", sent > running ? sent - running : 0},
                {"running", running},
                {"completed", completed},
                {"failed", failed},
                {"retried", retried},
                {"pausing", pausing},
                {"moved", moved}};
  j["kinds"] = std::move(kinds);
  j["workers"] = std::move(workers);
  // While predictions are guesses, the time left comes from the completion rate (null before the
  // first completion) and carries no spread; `estimate` says which.
  const bool calibrated = s.uncalibrated_kinds.empty();
  const std::optional<double> remaining = shown_remaining_seconds(s);
  j["forecast"] = {{"remaining_seconds", remaining ? json(*remaining) : json(nullptr)},
                   {"remaining_sd", calibrated ? json(s.remaining_sd) : json(nullptr)},
                   {"lower_bound_seconds", s.lower_bound_seconds},
                   {"finish_time", remaining ? json(s.now + *remaining) : json(nullptr)},
                   {"tasks_left", s.tasks_left},
                   {"bottleneck", s.bottleneck},
                   {"critical_path", s.critical_path},
                   {"calibrated", calibrated},
                   {"uncalibrated_kinds", s.uncalibrated_kinds},
                   {"estimate", calibrated  ? "forecast"
                                : remaining ? "completion rate"
                                            : "none"},
                   {"completion_rate", s.completion_rate ? json(*s.completion_rate) : json(nullptr)},
                   {"predicted_remaining_seconds", s.remaining_seconds}};
  json alerts = json::array();
  for (const alert& a : s.alerts)
    alerts.push_back({{"kind", to_string(a.kind)},
                      {"subject", a.subject},
                      {"message", a.message},
                      {"value", a.value},
                      {"threshold", a.threshold},
                      {"time", std::chrono::duration<double>(a.time.time_since_epoch()).count()}});
  j["alerts"] = std::move(alerts);
  j["events"] = {{"first", s.events_first}, {"next", s.events_next}};
  json running_now = json::array();
  for (const running_record& r : s.running)
    running_now.push_back({{"task", r.task},
                           {"kind", r.kind},
                           {"worker", r.worker},
                           {"thread", r.thread},
                           {"attempt", r.attempt},
                           {"start", r.start}});
  j["running"] = std::move(running_now);
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string tasks_json(const task_page& p) {
  std::string out;
  out.reserve(64 + p.events.size() * 160);
  fmt::format_to(std::back_inserter(out), R"({{"first":{},"next":{},"more":{},"events":[)", p.first, p.to,
                 p.to < p.next ? "true" : "false");
  for (std::size_t i = 0; i < p.events.size(); ++i) {
    const task_event& e = p.events[i];
    if (i) out += ',';
    fmt::format_to(std::back_inserter(out), R"({{"seq":{},"task":{},"kind":")", p.from + i, e.task);
    json_escape_into(out, e.kind < p.kinds.size() ? std::string_view(p.kinds[e.kind]) : "?");
    out += R"(","worker":")";
    json_escape_into(out, e.worker < p.workers.size() ? std::string_view(p.workers[e.worker]) : "head");
    out += R"(","thread":)";
    if (e.thread == unknown_thread) {
      out += "null";
    } else {
      fmt::format_to(std::back_inserter(out), "{}", e.thread);
    }
    fmt::format_to(std::back_inserter(out), R"(,"attempt":{},"start":{:.6f},"end":{:.6f},"status":"{}"}})", e.attempt,
                   p.epoch_unix + e.start, p.epoch_unix + e.start + e.duration, to_string(e.status));
  }
  out += "]}";
  return out;
}

http_response serve_head_http(const http_request& r, const head_view_source& source) {
  auto json_error = [](unsigned status, const std::string& why) {
    return http_response{status, "application/json", nlohmann::json{{"error", why}}.dump()};
  };
  const bool known = r.path == "/" || r.path == "/index.html" || r.path == "/metrics" || r.path == "/api/state" ||
                     r.path == "/api/trace" || r.path == "/api/tasks";
  if (known && r.method == http_method::post)
    return {405,
            "text/plain; charset=utf-8",
            fmt::format("{} is read with GET or HEAD\n", r.path),
            {{"Allow", "GET, HEAD"}}};
  if (r.path == "/" || r.path == "/index.html") return {200, "text/html; charset=utf-8", std::string(dashboard_page())};
  if (r.path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", source.metrics_text()};
  if (r.path == "/api/state") return {200, "application/json", state_json(source.view_state())};
  if (r.path == "/api/trace") {
    // Megabytes for a full history: made and sent piece by piece from a snapshot of the events.
    auto writer = std::make_shared<chrome_trace_writer>(source.view_trace());
    http_response streamed{200, "application/json", {}};
    streamed.stream = [writer](std::string& piece) { return writer->next(piece, 64 * 1024); };
    return streamed;
  }
  if (r.path == "/api/tasks") {
    auto number = [&](const char* key) -> std::optional<std::optional<std::uint64_t>> {
      auto it = r.query.find(key);
      if (it == r.query.end()) return std::optional<std::uint64_t>{};
      std::uint64_t v = 0;
      const auto& s = it->second;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
      return std::optional<std::uint64_t>(v);
    };
    const auto since = number("since");
    if (!since) return json_error(400, "since must be a non-negative integer (a sequence number from 'next')");
    const auto limit = number("limit");
    if (!limit) return json_error(400, "limit must be a non-negative integer");
    const std::size_t n = std::clamp<std::uint64_t>(limit->value_or(2000), 1, 10000);
    return {200, "application/json", tasks_json(source.view_tasks(*since, n))};
  }
  return {
      404, "text/plain; charset=utf-8",
      fmt::format("no page at {}: try /, /metrics, /api/state, /api/tasks?since=N, /api/trace or /api/runs\n", r.path)};
}

}  // namespace dx::detail::observe
