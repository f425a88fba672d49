// The scheduler's decision logic, pure: events in, decisions out. No sockets, threads or clocks:
// every event carries the caller's time in seconds. The same object runs inside the head of a
// live cluster and inside the discrete-event simulator.
//
// How it places work (policy::predictive):
// - A ready task is placed at once on the worker where it is predicted to finish first:
//   start = max(the worker's predicted free time, now + transfers of inputs it lacks), finish =
//   start + the task's predicted duration times the worker's speed factor. Workers are kept in
//   buckets of similar speed, each ordered by free time, so a placement looks at one worker per
//   bucket plus the workers holding the task's inputs: O(buckets + inputs + log workers).
// - A placed task stays in its worker's queue here until the worker has room: only enough tasks
//   to cover a round trip are sent ahead (a window measured in predicted seconds). Held tasks can
//   be taken by any worker that goes idle (no protocol needed: the worker never saw them), which
//   is how late joiners and fast workers get work.
// - An idle worker with nothing held anywhere asks for a sent-but-not-started task of the worker
//   predicted to finish last: decision `move`, answered by move_answered() after the victim
//   confirms it gave the task up (it may have started it: then nothing moves).
// - Queues are ordered by user priority, then by upward rank (the predicted critical path from
//   the task to the end of the graph), then by submission.
// - Tasks that declare resources are sent only where the sum of the declared needs of the tasks
//   sent there fits the worker's capacities, so a capacity is never over-committed.
#pragma once

#include <dx/alert.hpp>
#include <dx/cost_model.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace dx::sched {

using task_id = std::uint64_t;
using worker_id = std::uint32_t;  // chosen by the caller, never reused
inline constexpr worker_id no_worker = ~worker_id{0};

enum class policy : std::uint8_t {
  predictive,    ///< earliest predicted finish, learned model, rebalancing (dx's own)
  oracle,        ///< the same with true durations and speeds given by the caller (HEFT, perfect information)
  round_robin,   ///< each ready task to the next worker in turn, sent at once
  random,        ///< each ready task to a uniformly random worker, sent at once
  least_loaded,  ///< each ready task to the worker with the fewest tasks per thread, sent at once
  dask_like,     ///< Dask's rules: occupancy per thread from per-kind averages (no worker speeds),
                 ///< candidates restricted to workers holding inputs, input-free tasks held at
                 ///< the scheduler while workers have 1.1x their threads, idle workers steal
};

const char* to_string(policy p) noexcept;
std::optional<policy> parse_policy(std::string_view name) noexcept;

/// Named amounts (cpu, mem_mb, gpu, ...).
using resource_map = std::map<std::string, double>;

struct task_spec {
  task_id id = 0;
  std::string kind;               // function name or user tag
  std::vector<task_id> inputs;    // tasks whose results it reads (submitted earlier)
  std::uint64_t input_bytes = 0;  // bytes of inputs that are not tasks (sent with it, by the caller)
  double size_hint = 0;           // dx::hint
  int priority = 0;               // higher first
  resource_map needs;             // empty: limited by threads only
  double true_seconds = 0;        // oracle only: its run time on a worker of factor 1
  /// Copies of one task (replication) share a group, their original's id: no two tasks of a
  /// group are placed on one worker at once, nor on workers of one host with `spread_hosts`.
  task_id spread_group = 0;
  bool spread_hosts = false;
  /// Workers it must not be placed on (those that already ran a copy of it), and with
  /// `spread_hosts` their hosts too.
  std::vector<worker_id> avoid;
};

struct worker_spec {
  worker_id id = 0;
  std::string name;  // the cost model's worker key
  std::string worker_class = "default";
  std::uint32_t threads = 1;
  resource_map capacity;   // "cpu" defaults to threads
  double true_factor = 1;  // oracle only: its run-time multiplier
  std::string host;        // the machine it runs on (copies spread over hosts); empty: its own
};

enum class decision_kind : std::uint8_t {
  run,        ///< send `task` to `to`
  move,       ///< ask `from` to give queued `task` up; answer with move_answered()
  recompute,  ///< `task`'s result was lost with a worker and a pending task needs it: run it
              ///< again. Its placed dependents go back to waiting (as by task_waiting); the
              ///< caller calls task_ready() for `task` now and for them once it finishes again.
  cancel,     ///< tell `from`, which was sent `task`, to drop it if it has not started and else to
              ///< ask it to stop; whatever it reports for `task` later is a late result
};

struct decision {
  decision_kind kind = decision_kind::run;
  task_id task = 0;
  worker_id to = no_worker;
  worker_id from = no_worker;
  std::uint64_t sending = 0;  ///< run: which sending of the task this is (the scheduler's own check)
};

/// Where a task is in its life. A task placed in a worker's queue here but not sent reads as
/// ready: only the scheduler can tell the two apart, and only it needs to.
/// cancelled: given up at the caller's request (its own outcome, not a failure).
enum class phase : std::uint8_t { unknown, waiting, ready, sent, running, done, failed, cancelled };
const char* to_string(phase p) noexcept;

using dx::alert_kind;  // the public enum: the scheduler raises what users receive

struct alert_event {
  alert_kind kind = alert_kind::saturation;
  std::string subject;  // worker, kind or task the alert is about
  std::string message;  // a sentence with the numbers
  double value = 0;
  double threshold = 0;
  double time = 0;
};

struct worker_forecast {
  worker_id id = 0;
  std::string name;
  double backlog_seconds = 0;     // predicted work placed there, not finished, per thread
  double round_trip_seconds = 0;  // its link's, as the window counts it
  std::size_t queued = 0;         // placed there and not finished (held here or sent)
};

struct forecast_result {
  double now = 0;
  double remaining_seconds = 0;  // predicted time until every known task has finished
  double remaining_sd = 0;
  double lower_bound = 0;  // max(critical path left, work left / threads)
  std::vector<worker_forecast> workers;
  std::string bottleneck;                  // "worker w2" or "kind fft"
  std::vector<std::string> critical_path;  // kinds, first to last, of the longest remaining chain
  std::vector<task_id> critical_tasks;
  std::size_t tasks_left = 0;
  // Predictions of the tasks left that are guesses (prediction::calibrated false: a kind run too
  // few times, a size far from those seen), and their kinds, sorted.
  std::size_t uncalibrated_tasks = 0;
  std::vector<std::string> uncalibrated_kinds;
};

struct config {
  policy kind = policy::predictive;
  std::uint64_t seed = 1;
  /// Predicted seconds of work sent to each thread of a worker beyond its round trip and the
  /// jitter margin. At least one task per thread is always sent.
  double send_ahead_seconds = 0.002;
  std::uint32_t max_sent_per_thread = 256;
  /// Round trip head -> worker -> head assumed for a worker until worker_round_trip() reports
  /// one measured (each worker's own: a cluster's workers sit at different distances).
  double round_trip_seconds = 0.0002;
  /// A worker's window covers its round trip plus this many times its jitter (the mean deviation
  /// of its round trips): late replies then rarely leave a thread idle.
  double jitter_margin = 4;
  /// Bytes of arguments and inputs of the tasks sent to one worker and not finished there; past
  /// it the window closes (at least one task per thread is still sent). Bounds what a far worker,
  /// whose window spans many tasks, makes the head and the worker hold.
  std::uint64_t max_sent_bytes_per_worker = std::uint64_t{256} << 20;
  bool rebalance = true;
  /// Alert thresholds.
  double saturation_wait_seconds = 10;  // predicted wait for a new task on the least busy worker
  double imbalance_ratio = 2;           // max backlog / mean backlog
  double imbalance_min_seconds = 1;
  double straggler_ratio = 2;
  double drift_ratio = 2;  // recent error / usual error
  double drift_min_error = 0.25;
  double network_ratio = 1;  // transfer / compute over the recent window
};

/// Events in, decisions out. Not thread-safe: the owner serialises calls.
class scheduler {
 public:
  scheduler(config cfg, cost_model& model);
  ~scheduler();
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  // ---- events --------------------------------------------------------------------------------------
  /// A worker joins; one that left joins again under its id (and name) with nothing of its last
  /// stay but what the cost model learned of it.
  void worker_joined(const worker_spec& w, double now);
  /// The worker is gone (lost == true: without leaving). Its held and sent tasks come back to be
  /// placed again; results held only there are forgotten (a pending task needing one gets a
  /// recompute decision).
  void worker_left(worker_id w, bool lost, double now);
  /// The worker stops taking new work (graceful leave); what it was sent and did not start comes
  /// back through task_returned().
  void worker_draining(worker_id w, double now);
  /// A draining worker takes work again (it was offline and came back with what it was sent).
  void worker_back(worker_id w, double now);
  void task_submitted(const task_spec& t, double now);
  /// All its inputs are available: it can be placed.
  void task_ready(task_id t, double now);
  void task_started(task_id t, worker_id w, double now);
  /// Finished on `w` after `seconds` of run time with a result of `result_bytes`. `held_on_worker`:
  /// the result stays there (else it went to the caller, which sends it along with dependents).
  /// `w` = no_worker: the caller settled t's result itself, without a run of t's own (a quorum
  /// of its copies agreed); nothing is learned from it.
  void task_finished(task_id t, worker_id w, double now, double seconds, std::uint64_t result_bytes,
                     bool held_on_worker);
  /// Failed on `w`; `retry`: place it again, else it is done with. `w` = no_worker: the caller
  /// gives it up wherever the scheduler placed it (an input failed, the cluster stops).
  void task_failed(task_id t, worker_id w, double now, bool retry);
  /// The caller gave t up (cancelled, or `timed_out`: it ran past its time limit) before it
  /// finished. It leaves the queues and frees what it held (a held slot, a worker's window, its
  /// resources); its phase becomes cancelled (failed when timed out). If it was sent to a worker,
  /// a `cancel` decision for that worker follows. Its dependents are the caller's to give up. A
  /// finished task is not changed.
  void task_cancelled(task_id t, double now, bool timed_out);
  /// A task sent to a worker came back unrun (leave, move): place it again.
  void task_returned(task_id t, worker_id w, double now);
  /// The task is not ready any more (an input it needs is being recomputed): it leaves the
  /// queues, and the resources and window it held on a worker, until task_ready() again. The
  /// caller makes sure a worker it was sent to does not commit it (attempt numbers).
  void task_waiting(task_id t, double now);
  /// Nobody needs this result any more; it may be forgotten once it finished.
  void task_forgotten(task_id t);
  /// `w` no longer has t's result (it said so, or a fetch found nothing there).
  void holder_lost(task_id t, worker_id w);
  /// t's result was released everywhere (nobody needed it): it has no holders from now on, and
  /// a task that needs it later finds it lost.
  void result_released(task_id t);
  /// The answer to a move: `given_up` (the victim had not started it; it is placed anew) or not
  /// (it runs where it is).
  void move_answered(task_id t, worker_id from, bool given_up, double now);
  /// A heartbeat: what the worker runs and has queued, by its own count.
  void load_report(worker_id w, std::uint32_t running, std::uint32_t queued, double now);
  void transfer_measured(worker_id from, worker_id to, std::uint64_t bytes, double seconds);
  /// `bytes` sent by the caller (a task's arguments) reached `to` in `seconds`: the link from the
  /// caller to that worker, which placement charges a task's arguments at.
  void head_transfer_measured(worker_id to, std::uint64_t bytes, double seconds);
  /// The round trip to `w` as measured on the caller's clock (smoothed) and its jitter: its
  /// window, the placements that would wait on it, and moves from and to it count with them.
  /// Another worker's figures are never changed.
  void worker_round_trip(worker_id w, double round_trip_seconds, double jitter_seconds);
  /// The round trip assumed for workers that have no measured one (the simulator's fixed links).
  void set_round_trip(double seconds);

  // ---- decisions -----------------------------------------------------------------------------------
  /// Everything decided since the last call, in order. Also evaluates rebalancing and alerts.
  /// Every decision returned is current: one overtaken by an event since it was made (its task
  /// failed, came back or was made to wait; its worker left; a move was answered) is dropped
  /// here, so the caller carries decisions out without checking them against records of its own.
  void decide(double now, std::vector<decision>& out);
  /// Alerts raised since the last call (each fires when its condition starts, again only after
  /// it has cleared).
  void take_alerts(std::vector<alert_event>& out);

  // ---- views ---------------------------------------------------------------------------------------
  forecast_result forecast(double now) const;
  /// Where a task is: the worker it is placed on (held or sent), or no_worker.
  worker_id placed_on(task_id t) const;
  bool is_sent(task_id t) const;
  /// The one record of a task's phase (unknown: never submitted, or forgotten).
  phase phase_of(task_id t) const;
  /// The worker a task was sent to and has not finished on (sent or running), or no_worker.
  worker_id sent_to(task_id t) const;
  /// Workers holding t's result (empty: it is at the caller, or nowhere).
  const std::vector<worker_id>& holders(task_id t) const;
  /// Tasks sent to `w` and not finished there, in id order. O(tasks sent there).
  std::vector<task_id> tasks_on(worker_id w) const;
  /// How many tasks are sent to `w` and not finished there. O(1).
  std::size_t sent_count(worker_id w) const;
  /// Tasks whose result `w` holds, in id order. O(tasks known): for recovery, not for a hot path.
  std::vector<task_id> results_on(worker_id w) const;
  /// The predicted run time of t on a worker of factor 1 (the cost model's, for t's kind and
  /// size; 0 for a task not known).
  double predicted_seconds(task_id t) const;
  /// False when the task needs resources no active worker has, or its spread over workers or
  /// hosts finds no active worker left (it waits for such a worker).
  bool hostable(task_id t) const;
  std::size_t decisions_made() const noexcept;
  std::size_t moves_confirmed() const noexcept;
  const config& settings() const noexcept;
  cost_model& model() noexcept;

  struct state;

 private:
  std::unique_ptr<state> s_;
};

}  // namespace dx::sched
