// The head of a distributed cluster: keeps the task graph, places ready tasks on workers, moves
// results between the workers and the futures, and recovers from lost workers by re-running
// tasks from their lineage. This is its interface to dx::cluster; head_state.hpp has its records
// and the rooms that implement it.
#pragma once

#include <dx/cluster.hpp>
#include <dx/options.hpp>
#include <dx/remote.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dx::detail {

namespace observe {
class alert_center;
}
class extension_slot;

class head_core : public std::enable_shared_from_this<head_core> {
 public:
  /// `alerts` receives the scheduler's alerts and is evaluated on the head's tick; it and
  /// `registry` outlive the head. `extensions` is the cluster's: its HTTP routes are served next
  /// to the head's, its tasks are named in traces.
  static std::shared_ptr<head_core> create(const options& opts, executor& local, dx::metrics& registry,
                                           observe::alert_center& alerts, std::shared_ptr<extension_slot> extensions);
  virtual ~head_core() = default;

  virtual void submit(const task_options& opts, const remote_function& fn, std::vector<remote_arg>&& args,
                      remote_result& result) = 0;
  virtual dx::forecast forecast() const = 0;
  virtual dx::cost_model cost_model_snapshot() const = 0;
  /// The cost model's prediction for a task of `kind`, averaged over the active workers, and
  /// whether the model has seen enough of the kind to trust it (`known`).
  virtual dx::prediction predict_kind(std::string_view kind, const task_features& f, bool& known) const = 0;
  virtual std::string http_endpoint() const = 0;
  /// Chrome trace-event JSON of the kept task history (see cluster::write_trace).
  virtual std::string trace_json() const = 0;
  virtual void request_value(std::uint64_t task) noexcept = 0;
  /// Gives the task up (its future's cancel()): see head_impl::stop_locked. Returns whether
  /// `outcome` settled its future.
  virtual bool stop(std::uint64_t task, std::exception_ptr outcome) noexcept = 0;
  virtual void released(std::uint64_t task) noexcept = 0;

  virtual std::string endpoint() const = 0;
  virtual std::vector<worker_info> workers() const = 0;
  virtual void wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) = 0;
  virtual void wait_idle() = 0;
  /// Finishes (or, with no worker left, cancels) the remote work, stops the workers it started
  /// and closes every connection.
  virtual void shutdown() = 0;

  /// Testing aids: the in-process workers started for local_processes() with the in-process
  /// transport, by index.
  virtual void kill_local_worker(std::size_t index) = 0;
  virtual void leave_local_worker(std::size_t index) = 0;
  virtual std::size_t add_local_worker() = 0;
  /// The pids of the worker processes this head started.
  virtual std::vector<int> worker_pids() const = 0;
};

}  // namespace dx::detail
