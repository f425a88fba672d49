// What the dashboard and the JSON API show of a distributed cluster, and the HTTP routes that
// serve them. The head hands plain records over (head_view_source); this room turns them into
// JSON outside the head's lock and never reaches into the runtime.
#pragma once

#include "observe/http_server.hpp"
#include "observe/runtime_stats.hpp"

#include <dx/alert.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dx::detail::observe {

struct kind_record {
  std::string kind;
  std::uint64_t submitted = 0, completed = 0, failed = 0, retried = 0, moved = 0;
  std::uint64_t pausing = 0;   // waiting out a retry's pause
  std::uint64_t open = 0;      // submitted and not finished
  std::uint64_t assigned = 0;  // sent to a worker and not finished
  std::uint64_t runs = 0;      // completed runs timed
  double run_seconds = 0;      // their sum
  std::optional<double> prediction_error;
};

struct worker_record {
  std::string id, address, state;
  std::size_t threads = 0, busy = 0, assigned = 0;
  std::uint64_t completed = 0, failed = 0, memory_bytes = 0, stored_bytes = 0;
  std::map<std::string, double> resources;
  double heartbeat_age_seconds = 0, backlog_seconds = 0;
  double rtt_seconds = 0, rtt_jitter_seconds = 0;
  std::int64_t pid = 0;
  // Its results checked against other workers' copies (replicated tasks).
  std::uint64_t valid = 0, invalid = 0, lost = 0, late = 0, consecutive_valid = 0;
  bool quarantined = false;
};

struct running_record {
  std::uint64_t task = 0;
  std::string kind, worker;
  std::uint32_t thread = 0, attempt = 0;
  double start = 0;  // Unix seconds
};

/// The whole of /api/state.
struct state_record {
  std::string version, policy;
  double now = 0, started = 0;  // Unix seconds
  std::vector<kind_record> kinds;
  std::vector<worker_record> workers;  // the head's own threads first
  double remaining_seconds = 0, remaining_sd = 0, lower_bound_seconds = 0, finish_time = 0;
  std::size_t tasks_left = 0;
  // The forecast's predictions of what is left are guesses for these kinds (empty: calibrated).
  std::vector<std::string> uncalibrated_kinds;
  std::optional<double> completion_rate;  // tasks completed per second recently; none: no completions
  std::string bottleneck;
  std::vector<std::string> critical_path;
  std::vector<alert> alerts;
  std::uint64_t events_first = 0, events_next = 0;
  std::vector<running_record> running;
};

/// One page of /api/tasks: events [from, to) of the history that holds [first, next).
struct task_page {
  std::uint64_t first = 0, next = 0, from = 0, to = 0;
  std::vector<task_event> events;
  std::vector<std::string> kinds, workers;  // names by index
  double epoch_unix = 0;                    // event times are seconds after this
};

/// What the head offers its views. Each call takes the head's lock briefly and copies.
class head_view_source {
 public:
  virtual ~head_view_source() = default;
  virtual state_record view_state() const = 0;
  virtual task_page view_tasks(std::optional<std::uint64_t> since, std::size_t limit) const = 0;
  virtual trace_input view_trace() const = 0;
  virtual std::string metrics_text() const = 0;
};

/// The time left as the dashboard shows it: the forecast's when it is calibrated; while it is not,
/// tasks_left over the observed completion rate (none before the first completion).
std::optional<double> shown_remaining_seconds(const state_record& s);
/// Completions per second from a history of attempts: those that ended in the last `window`
/// seconds before `now`, over the time since the earliest of them started (at most `window`).
std::optional<double> completion_rate(const history<task_event>& events, double now, double window);
std::string state_json(const state_record& s);
std::string tasks_json(const task_page& p);
/// Routes a request: the dashboard, /metrics, /api/state, /api/tasks, /api/trace (read with GET or
/// HEAD; 405 otherwise); 400 for bad query parameters, 404 elsewhere.
http_response serve_head_http(const http_request& r, const head_view_source& source);

}  // namespace dx::detail::observe
