// A deterministic discrete-event simulator of a dx cluster, driving the real scheduler
// (dx::sched::scheduler) on a virtual clock: the sim plays the head's runtime and every worker,
// so a policy can be measured on thousands of workers in seconds and its mistakes (a result
// committed twice, a task lost, a capacity over-committed) are caught.
//
//   dx::sim::graph g = dx::sim::random_dag(10'000, 3);
//   dx::sim::cluster_options c;
//   c.workers = 100;
//   c.min_speed = 0.25;
//   c.max_speed = 4;
//   dx::sim::options o;
//   o.scheduler.kind = dx::sched::policy::predictive;
//   dx::cost_model model;
//   dx::sim::result r = dx::sim::simulate(g, dx::sim::make_cluster(c), model, o);
//   fmt::print("{:.3f} s, exactly once: {}\n", r.makespan, r.exactly_once());
//
// The model of the runtime, in short:
// - Head <-> worker messages take the worker's own one-way `head_latency` (options::head_latency
//   when it has none) plus, with `head_jitter`, a random extra delay per message; messages on one
//   link keep their order in each direction. The head submits tasks, tracks readiness, calls
//   decide() after every batch of events at one virtual time and every `tick`, and applies the
//   decisions.
// - The head measures each worker's round trip as a live head does (cluster/round_trip.hpp): the
//   handshake is the first sample, then a ping at join and every `heartbeat`, echoed at once with
//   the worker's load; the smoothed round trip and its jitter go to worker_round_trip().
// - A worker keeps a FIFO of the tasks it was sent and runs up to `threads` at once, the first
//   whose inputs exist somewhere (a task whose input was lost waits in the FIFO without holding a
//   thread). A started task first fetches the inputs it lacks (inputs of a task are fetched
//   together: the slowest link, or the worker's own link for the sum of bytes, whichever is
//   longer), then runs for its true duration times the worker's speed factor. A fetch under way
//   completes even if its source goes away meanwhile. Link contention between tasks is not
//   modelled.
// - A result over `inline_limit` bytes stays on the worker that computed it; a smaller one
//   travels with the completion and is then free for every dependent. Fetched copies serve the
//   worker that fetched them; the computing worker is the result's only source for others, which
//   is also what the scheduler knows.
// - When a result is lost, its pending dependents hear task_ready again once it is recomputed
//   (the scheduler puts them back to waiting); a recompute decision is followed by task_ready of
//   that task as soon as its own inputs exist.
// - Every `run` decision is a new attempt; a completion of a stale attempt, or from a worker the
//   head declared lost, is discarded and counted.
// - Churn: late joins, graceful leaves (drain: unstarted tasks return, running ones finish, then
//   the worker leaves and its results go with it: the scheduler has no event for handing them
//   over, so it recomputes those still needed), crashes (everything there is gone; the head
//   learns after `loss_detection`) and zombies (declared lost at once, yet they keep running
//   what they have and their late completions arrive and must be discarded).
#pragma once

#include "sched/scheduler.hpp"
#include "sim/graphs.hpp"

#include <dx/cost_model.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace dx::sim {

/// How a worker goes away at its leave_time.
enum class leave_kind : std::uint8_t {
  graceful,  ///< drains, then leaves
  crash,     ///< vanishes with what it ran and held; the head notices after loss_detection
  zombie,    ///< presumed lost by the head at once, yet keeps running and reporting
};
const char* to_string(leave_kind k) noexcept;

struct worker_def {
  std::string name;
  std::string worker_class = "default";
  std::uint32_t threads = 1;
  /// Run-time multiplier: 0.25 runs 4x faster than a worker of factor 1, 4 is 4x slower.
  double speed = 1;
  double bandwidth = 1.25e9;  ///< bytes per second
  double latency = 50e-6;     ///< seconds; a link costs the larger latency of its two ends
  /// One way to and from the head, in seconds; unset: options::head_latency.
  std::optional<double> head_latency;
  /// Mean extra delay of each message to or from the head, in seconds (exponential, drawn from
  /// options::link_seed; a message never overtakes an earlier one on the same link).
  double head_jitter = 0;
  sched::resource_map capacity;
  double join_time = 0;
  double leave_time = std::numeric_limits<double>::infinity();
  leave_kind leave = leave_kind::graceful;
};

struct cluster_options {
  std::size_t workers = 100;
  std::uint32_t threads = 1;
  /// Speed factors are log-uniform in [min_speed, max_speed].
  double min_speed = 1;
  double max_speed = 1;
  double bandwidth = 1.25e9;
  double latency = 50e-6;
  /// Each worker's round trip to the head is log-uniform in [min_round_trip, max_round_trip]
  /// seconds (uniform when min_round_trip is 0), as volunteers far apart would be; both 0: every
  /// worker uses options::head_latency.
  double min_round_trip = 0;
  double max_round_trip = 0;
  double head_jitter = 0;  ///< worker_def::head_jitter of every worker
  sched::resource_map capacity;
  std::uint64_t seed = 1;
};
/// Workers named w0, w1, ..., all present from time 0. The round trips are drawn from a stream of
/// their own, so a cluster's speeds do not change when round trips are added.
std::vector<worker_def> make_cluster(const cluster_options& o);

struct churn_options {
  double join_fraction = 0.1;     ///< share of workers that join late
  double leave_fraction = 0.05;   ///< share that leave gracefully
  double crash_fraction = 0.03;   ///< share that crash
  double zombie_fraction = 0.02;  ///< share presumed lost while still running
  /// Churn times are uniform in [start, end] (virtual seconds).
  double start = 0;
  double end = 1;
  /// The first `keep` workers never churn, so some capacity always remains.
  std::size_t keep = 1;
  std::uint64_t seed = 1;
};
/// Gives some workers a late join_time and some a leave_time and leave kind. A worker never
/// leaves before it joins.
void add_churn(std::vector<worker_def>& workers, const churn_options& o);

/// A rough makespan: the larger of the critical path at the cluster's mean speed and the total
/// work over the cluster's capacity. For choosing churn windows and wave intervals.
double estimate_makespan(const graph& g, const std::vector<worker_def>& workers);

struct options {
  /// The scheduler's settings; `scheduler.kind` is the policy under test and `scheduler.seed`
  /// seeds it (the graph and cluster carry every other draw but the links' jitter).
  sched::config scheduler;
  double head_latency = 100e-6;  ///< one way, head <-> worker, for workers without their own
  /// Seeds the links' jitter (worker_def::head_jitter), the only draws the sim makes at run time;
  /// each link has its own stream, so one worker's traffic does not change another's delays.
  std::uint64_t link_seed = 1;
  double loss_detection = 0.5;  ///< from a crash to worker_left(lost) at the head
  double tick = 0.010;          ///< decide() at least this often, so rebalancing and alerts run
  double heartbeat = 0.5;       ///< the head pings each worker this often; the echo is its load report
  std::uint64_t inline_limit = 64 << 10;
  /// 0: every task submitted at time 0. Else tasks are submitted in id order, `wave_size` at a
  /// time, one wave every `wave_interval` seconds.
  std::size_t wave_size = 0;
  double wave_interval = 0.1;
  /// forecast() is called when this share of the tasks has finished.
  double forecast_at = 0.25;
  /// Keep each worker's start order (result::starts) and count priority inversions.
  bool record_starts = false;
  /// Give up when nothing but periodic events has happened for this long.
  double stall_timeout = 60;
  double time_limit = 1e7;
};

/// One task start on a worker.
struct start_record {
  sched::task_id task = 0;
  double time = 0;        ///< when a thread took it
  double ready_time = 0;  ///< when the head last told the scheduler it was ready
  int priority = 0;
};

struct worker_result {
  std::string name;
  double speed = 1;
  std::uint32_t threads = 1;
  double busy_seconds = 0;  ///< run time of the tasks it finished (fetching excluded)
  std::size_t tasks_run = 0;
  /// The head's measurement of its round trip at the end: smoothed, its jitter (mean deviation)
  /// and the samples taken (the handshake's included).
  double round_trip_seconds = 0;
  double round_trip_jitter = 0;
  std::size_t round_trip_samples = 0;
};

struct transfer_stats {
  std::size_t count = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
};

/// The scheduler's forecast when forecast_at of the tasks had finished, against what happened.
struct forecast_check {
  bool taken = false;
  double at = 0;
  std::size_t tasks_left = 0;
  double predicted_remaining = 0;
  double predicted_sd = 0;
  double lower_bound = 0;
  double actual_remaining = 0;
  double relative_error = 0;  ///< (predicted - actual) / actual
  /// The round trip the scheduler counted for each worker then (forecast_result::workers), by
  /// worker index; 0 for a worker it did not list (not joined, or gone).
  std::vector<double> round_trips;
};

/// The model's prediction for one accepted completion, made just before the scheduler heard of
/// it (so the sample itself is not in it).
struct prediction_sample {
  std::uint32_t kind = 0;
  float ape = 0;  ///< |predicted - actual| / actual
  bool calibrated = false;
};

/// The scheduler's entry points, for result::scheduler_profile.
enum class scheduler_call : std::uint8_t {
  decide,
  task_submitted,
  task_ready,
  task_started,
  task_finished,
  task_returned,
  move_answered,
  worker_joined,
  worker_draining,
  worker_left,
  load_report,
  transfer_measured,
  set_round_trip,
  forecast,
  take_alerts,
  worker_round_trip,
};
inline constexpr std::size_t scheduler_call_count = 16;
const char* to_string(scheduler_call c) noexcept;

struct call_cost {
  std::size_t calls = 0;
  double seconds = 0;
};

struct result {
  sched::policy policy = sched::policy::predictive;
  bool completed = false;  ///< every task finished before a stall or the time limit
  double makespan = 0;     ///< virtual time of the last first commit
  std::size_t tasks = 0;
  std::size_t finished = 0;
  std::size_t events = 0;

  // Exactly-once bookkeeping.
  std::size_t attempts = 0;               ///< run decisions applied
  std::size_t runs_started = 0;           ///< starts on workers (zombies included)
  std::size_t runs_completed = 0;         ///< runs that ended on a live worker or zombie
  std::size_t discarded_completions = 0;  ///< stale attempt, presumed-lost worker or duplicate
  std::size_t duplicate_commits = 0;      ///< accepted completions beyond one per (re)computation
  std::size_t recomputes = 0;             ///< recompute decisions applied
  std::size_t returned = 0;               ///< task_returned() calls
  std::size_t lost_messages = 0;          ///< run or move messages that reached no live worker
  std::size_t invalid_decisions = 0;      ///< a run of a task not ready or already done, etc.
  std::size_t moves_requested = 0;
  std::size_t moves_confirmed = 0;  ///< answers with given_up that reached the head

  transfer_stats transfers;
  std::vector<worker_result> workers;
  double work_seconds = 0;  ///< run time of every run that completed

  // The scheduler's cost: the only real-time measurement.
  double scheduler_seconds = 0;
  std::size_t scheduler_calls = 0;
  std::size_t decisions = 0;
  std::uint64_t decision_hash = 0;  ///< of every decision and its virtual time, for determinism checks
  std::array<call_cost, scheduler_call_count> scheduler_profile{};  ///< indexed by scheduler_call

  std::vector<kind_accuracy> accuracy;         ///< model.accuracy() at the end
  std::vector<std::string> kind_names;         ///< graph kinds, indexed by prediction_sample::kind
  std::vector<prediction_sample> predictions;  ///< one per accepted completion, in commit order
  forecast_check forecast;
  std::vector<sched::alert_event> alerts;
  std::size_t alerts_dropped = 0;  ///< beyond the kept 10,000

  double max_resource_ratio = 0;        ///< max over starts of declared needs running / capacity
  std::size_t priority_inversions = 0;  ///< with record_starts: see simulate()
  std::vector<std::vector<start_record>> starts;
  /// The first unfinished tasks and where the sim and the scheduler think they are: for the
  /// message of a failed check.
  std::vector<std::string> unfinished;
  /// The first invalid decisions, with what was wrong.
  std::vector<std::string> invalid;

  /// Every task finished, none committed twice.
  bool exactly_once() const noexcept { return completed && finished == tasks && duplicate_commits == 0; }
  /// Decisions over the scheduler's CPU time, forecast() left out (a view called once, not part
  /// of deciding).
  double decisions_per_second() const noexcept;
  /// Median APE of predictions[first, last) of `kind` (-1: all kinds); 0 when none.
  double median_ape(std::size_t first, std::size_t last, int kind = -1) const;
  /// Mean APE, same selection.
  double mean_ape(std::size_t first, std::size_t last, int kind = -1) const;
};

/// Runs `g` on `workers` under the policy in `o.scheduler`, learning into `model` (which the
/// scheduler reads and the caller may have trained). Deterministic: the same inputs give the
/// same decisions, virtual times and result, except the scheduler's measured CPU time.
/// priority_inversions (with record_starts) counts starts on a worker that came after the start
/// of a lower-priority task that had become ready at the same virtual time.
/// Throws std::invalid_argument when the graph is invalid or there is no worker.
result simulate(const graph& g, const std::vector<worker_def>& workers, cost_model& model, const options& o);

}  // namespace dx::sim
