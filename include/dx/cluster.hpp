// dx/cluster.hpp — the entry point: where tasks run.
//
//   double simulate(int seed, int steps);
//   DX_REMOTE(simulate);
//
//   dx::cluster cl;                                          // embedded: local threads only
//   dx::cluster lc{dx::options{}.local_processes(2)};        // + 2 worker processes on loopback
//   auto f = lc.submit(simulate, 1, 1000);                   // runs where it finishes first
//   auto g = lc.submit([](double x) { return x * 2; }, std::move(f));  // a lambda: local threads
//   std::cout << g.get() << "\n";
//
// A default-constructed cluster runs everything on a local work-stealing executor. A distributed
// cluster (options::listen or options::local_processes) has a head that sends calls of
// registered functions (DX_REMOTE) to workers: its own threads and peer processes that join.
// Futures passed as arguments are dependencies wherever their values were computed; a remote
// result stays on its worker until needed and moves from worker to worker directly.
#pragma once

#include <dx/alert.hpp>
#include <dx/cost_model.hpp>
#include <dx/detail/chrono.hpp>
#include <dx/detail/remote_submit.hpp>
#include <dx/executor.hpp>
#include <dx/export.hpp>
#include <dx/forecast.hpp>
#include <dx/future.hpp>
#include <dx/metrics.hpp>
#include <dx/options.hpp>
#include <dx/remote.hpp>
#include <dx/task_options.hpp>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace dx {

class task_graph;
struct map_options;

/// Where a worker is in its life.
enum class worker_state : std::uint8_t {
  active,       ///< receives work
  leaving,      ///< finishing its running tasks, receives no more
  gone,         ///< left or was lost
  quarantined,  ///< let go because too many of its results were invalid (replicated tasks); may not join again
  offline,      ///< its link is lost; it keeps its work for options::offline_grace, receives nothing new
};

/// A worker's record of results checked against other workers' copies (replicated tasks), kept
/// under its name and saved beside the cost model.
struct worker_reliability {
  std::uint64_t valid = 0;              ///< results that agreed with the canonical result
  std::uint64_t invalid = 0;            ///< results that disagreed with it
  std::uint64_t lost = 0;               ///< attempts lost with the worker
  std::uint64_t late = 0;               ///< copies answered after their hard deadline
  std::uint64_t consecutive_valid = 0;  ///< valid results since its last invalid one
  bool quarantined = false;
};

/// One worker of a cluster as the head sees it.
struct worker_info {
  /// The worker's name, its id everywhere (errors, metrics, dashboard, traces, forecasts and the
  /// cost model's speed factors, so what was learned of a worker follows its name from run to
  /// run): "head" for the head's own threads; `dx-worker --name NAME`; else "<host>-<n>", the
  /// worker's host name with the lowest index no live worker holds (the workers a head starts
  /// itself are "<host>-1", "<host>-2", ... in the order it starts them). Two live workers never
  /// share a name; one that left or was lost may join again under its name and takes its entry
  /// back.
  std::string id;
  std::string address;  ///< where its results can be fetched ("host:port")
  std::size_t threads = 0;
  std::map<std::string, double> resources;
  worker_state state = worker_state::active;
  std::size_t tasks_assigned = 0;  ///< dispatched there and not finished yet
  std::int64_t pid = 0;            ///< the worker's process id on its machine
  /// The round trip head -> worker -> head, smoothed over the head's pings (a few a second, on the
  /// head's clock), and its jitter (the mean deviation of those pings from it). The worker's
  /// window of work sent ahead, the placements that wait on it and its silence deadline grow
  /// with them.
  double round_trip_seconds = 0;
  double round_trip_jitter_seconds = 0;
  /// Its results checked against other workers' copies (see dx/replicate.hpp).
  worker_reliability reliability;
};

class workflow;
class workflow_run;
struct run_options;
struct run_summary;

namespace detail {

class cluster_alerts;
struct cluster_access;  // how dx itself reaches the head (src/cluster/cluster_access.hpp)
class extension_slot;
struct cluster_extensions;  // what higher layers attach (src/cluster/cluster_extension.hpp)

}  // namespace detail

/// Runs tasks on local threads and, when distributed, on workers. Thread-safe.
class DX_API cluster {
 public:
  /// Embedded local mode with the default options.
  cluster();
  /// Starts the cluster the options describe; a distributed one listens, starts its local
  /// processes and waits for them to join. Throws dx::error naming the address when it cannot
  /// listen, or when a token file cannot be read.
  explicit cluster(const options& opts);
  /// Finishes the submitted work, stops local worker processes and closes connections.
  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// Runs `f(args...)` somewhere in the cluster and returns its future. A registered function
  /// (DX_REMOTE) goes to the worker the scheduler picks, also when an argument or a future's value
  /// converts to its parameter (future<long> for an int: converted when ready, sent by value);
  /// anything else runs on the local threads. See executor::submit for how future arguments
  /// behave; a failed dependency fails the task. Arguments f cannot take fail to compile with
  /// dx's reason. Thread-safe; does not block.
  template <class F, class... A>
  requires(!detail::is_task_option_v<std::decay_t<F>>) auto submit(F&& f, A&&... args) {
    return submit(task_options{}, std::forward<F>(f), std::forward<A>(args)...);
  }
  /// submit() with what the task tells the scheduler: priority, resources, size hint (see
  /// dx/task_options.hpp). On the local threads only the priority's sign counts (high or low).
  template <class F, class... A>
  auto submit(const task_options& opts, F&& f, A&&... args) {
    static_assert(!detail::passes_lvalue_future_v<A...>, DX_NO_LVALUE_FUTURE_MESSAGE);
    using fn_type = std::decay_t<F>;
    if constexpr (detail::remote_call_ok<fn_type, A...>()) {
      if (head_) {
        if (const detail::remote_function* rf =
                detail::find_remote_by_address(reinterpret_cast<void (*)()>(static_cast<fn_type>(f)))) {
          return submit_remote_call<fn_type>(opts, *rf, std::forward<A>(args)...);
        }
      }
    }
    if (opts.replication || opts.deadlines)
      detail::throw_error(detail::error_kind::generic,
                          head_ ? "dx: replicate and deadline options need a registered function (DX_REMOTE): "
                                  "only its copies can run on distinct workers"
                                : "dx: replicate and deadline options need a distributed cluster and a registered "
                                  "function (DX_REMOTE)");
    const priority p = detail::local_priority(opts.priority);
    auto result = [&] {
      if constexpr (detail::callable_with_v<fn_type, A...>) {
        if (opts.retries_enabled())
          return detail::submit_retrying(local(), p, opts.retries, std::forward<F>(f), std::forward<A>(args)...);
      }
      return local().submit(p, std::forward<F>(f), std::forward<A>(args)...);
    }();
    if (opts.timeout.count() > 0)
      detail::stop_after(detail::future_access::state(result).get(), opts.timeout.count(),
                         opts.kind.empty() ? "local task" : ("task '" + opts.kind + "'").c_str());
    return result;
  }

  /// Cancels the work behind `f` wherever it is: a task not started (held by the head, queued on a
  /// worker or on the local threads) never runs; a running one is asked to stop and its late
  /// result is discarded; `f` and every dependent fail with dx::cancelled. The same as
  /// f.cancel(); see future::cancel. Returns whether the cancellation settled `f`. Thread-safe;
  /// does not block.
  template <class Future>
  requires(detail::is_future<Future>::value || detail::is_shared_future<Future>::value) bool cancel(const Future& f) {
    return f.cancel();
  }
  /// submit() with an executor priority: high becomes task priority 1 (before queued normal
  /// work), low -1, normal 0. Thread-safe; does not block.
  template <class F, class... A>
  auto submit(priority p, F&& f, A&&... args) {
    task_options o;
    o.priority = detail::task_priority(p);
    return submit(o, std::forward<F>(f), std::forward<A>(args)...);
  }
  template <class F, class... A>
  auto submit(const hint& h, F&& f, A&&... args) {
    task_options o;
    o.hint = h;
    return submit(o, std::forward<F>(f), std::forward<A>(args)...);
  }
  template <class F, class... A>
  auto submit(const resources& r, F&& f, A&&... args) {
    task_options o;
    o.resources = r;
    return submit(o, std::forward<F>(f), std::forward<A>(args)...);
  }
  /// Calls `f` on every element of `inputs` and returns a std::vector of futures, one per
  /// element in input order; a registered function runs on the workers in chunks sized by the
  /// cost model. Defined in dx/map.hpp (see there). Thread-safe; does not block.
  template <class F, class Range>
  auto map(F&& f, Range&& inputs, const map_options& opts);
  template <class F, class Range>
  auto map(F&& f, Range&& inputs);
  /// Fire and forget on the local threads; see executor::post.
  template <class F>
  void post(F&& f) {
    local().post(std::forward<F>(f));
  }
  /// Runs a task graph on the local threads; see executor::run.
  future<void> run(task_graph& g);
  /// Blocks until all submitted work, local and remote, has finished.
  void wait_idle();

  /// The address workers connect to ("127.0.0.1:40123"); empty when not distributed.
  std::string endpoint() const;
  /// The workers as the head sees them now, one entry per name (gone ones included), the head's
  /// own threads first when they run tasks. Thread-safe; takes the head's lock briefly.
  std::vector<worker_info> workers() const;
  /// Blocks until at least n peer workers (not counting the head's own threads) are active;
  /// throws dx::timeout naming how many joined when `timeout` passes first.
  void wait_for_workers(std::size_t n, std::chrono::milliseconds timeout);

  /// What the scheduler predicts for the work submitted and not finished: time left with its
  /// spread, backlog per worker, bottleneck, critical path. All zero when not distributed.
  dx::forecast forecast() const;
  /// Calls `callback` (on an internal thread; keep it short) for every alert raised from now on.
  /// Several callbacks may be registered.
  void on_alert(std::function<void(const alert&)> callback);
  /// A copy of what the cost model has learned so far (empty when not distributed).
  dx::cost_model cost_model_snapshot() const;

  /// The cluster's metrics: dx's own dx_* metrics (computed when read) and the application's
  /// (add_counter, add_gauge, add_histogram). Served at /metrics when options::http is set.
  dx::metrics& metrics() noexcept { return *metrics_; }
  /// Where the HTTP endpoint listens ("127.0.0.1:8787"); empty without options::http.
  std::string http_endpoint() const;
  /// Writes the kept task history (options::task_history) as Chrome trace-event JSON, loadable in
  /// Perfetto and chrome://tracing: a process per worker, a thread per worker thread, each task
  /// attempt (kind, task, attempt, status) and each result moved between workers. Throws
  /// dx::error naming the path when it cannot write. Not distributed: an empty trace.
  void write_trace(const std::string& path) const;
  /// Watches a metric (see dx/alert.hpp); its alerts reach on_alert callbacks, the log, the
  /// dashboard and dx_alerts_total. Throws dx::error for a rule without a name or metric, or a
  /// second rule of the same name; on a cluster that is not distributed, rules are not evaluated.
  void add_alert_rule(alert_rule rule);
  /// The latest alerts (at most 100), oldest first.
  std::vector<alert> recent_alerts() const;

  /// Starts a run of `wf` (see dx/workflow_run.hpp): validates it (dx::workflow_error listing
  /// its problems), records it in the journal `opts` names, and submits the steps that can run.
  /// Throws dx::error when the journal cannot be opened. Thread-safe; blocks while the run is
  /// recorded (one fsync), not while it runs.
  workflow_run start(const workflow& wf);
  workflow_run start(const workflow& wf, const run_options& opts);
  /// The runs recorded in the journal `opts` names, oldest first. Thread-safe; blocks on I/O.
  std::vector<run_summary> runs() const;
  std::vector<run_summary> runs(const run_options& opts) const;

  /// The local executor behind the cluster.
  executor& local() noexcept { return *local_; }
  const options& config() const noexcept { return options_; }

 private:
  friend struct detail::cluster_access;
  friend struct detail::cluster_extensions;
  template <class F, class... A>
  auto submit_remote_call(const task_options& opts, const detail::remote_function& rf, A&&... args) {
    using sig = detail::function_signature<F>;
    using params = typename sig::params;
    using R = typename sig::result;
    std::vector<detail::remote_arg> encoded;
    encoded.reserve(sizeof...(A));
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (detail::encode_remote_arg<std::tuple_element_t<I, params>>(encoded, std::forward<A>(args)), ...);
    }
    (std::index_sequence_for<A...>{});
    auto* state = new detail::remote_state<R>();
    detail::state_ptr<detail::shared_state<R>> owner(state);
    submit_remote(opts, rf, std::move(encoded), *state);
    return detail::future_access::make(std::move(owner));
  }
  void submit_remote(const task_options& opts, const detail::remote_function& rf,
                     std::vector<detail::remote_arg>&& args, detail::remote_result& result);

  options options_;
  std::unique_ptr<dx::metrics> metrics_;  // outlives the head, which reads and fills it
  std::unique_ptr<executor> local_;
  std::unique_ptr<detail::cluster_alerts> alerts_;  // outlives the head, which raises alerts
  std::shared_ptr<detail::head_core> head_;
  // Workflow runs: stopped first; the head's HTTP routes, metrics and traces reach them through it.
  std::shared_ptr<detail::extension_slot> extensions_;
};

/// True when this process was started as a worker (`--dx-worker` among the arguments).
DX_API bool is_worker(int argc, char** argv) noexcept;

/// Runs this process as a worker until its head stops it or goes away; returns the exit code.
/// Arguments: --connect host:port, --token-file F, --threads N, --resources name=amount,...,
/// --name NAME (see worker_info::id), --slowdown F (testing aid: each task takes F times as long);
/// --help lists them all. A head that refuses the worker (its name is taken by a live worker, a
/// wrong token) is reported on stderr with its reason, and the exit code is 1. Blocks for the
/// worker's life.
DX_API int worker_main(int argc, char** argv);

}  // namespace dx

#include <dx/map.hpp>  // cluster::map's definition: it needs the complete class
