// dx/task_options.hpp — what a submitted task tells the scheduler about itself.
//
//   cl.submit(dx::hint{.size = rows}, process, chunk);                 // bigger calls take longer
//   cl.submit(dx::resources{{"gpu", 1}, {"mem_mb", 2048}}, train, cfg); // only where that fits
//   cl.submit(dx::task_options{}.with_priority(10), urgent, x);        // before queued normal work
//   cl.submit(dx::task_options{}.with_kind("etl.parse"), run_step, s); // learned and shown apart
//   cl.submit(dx::task_options{}.with_timeout(2s), simulate, 1, 1000);  // dx::timeout after 2 s
//
// Priorities order the ready tasks (higher first; the default is 0), then the scheduler prefers
// tasks on the longest predicted path to the end of the graph. Resources are amounts a task holds
// while it runs; a worker declares its capacities (dx-worker --resources gpu=2,mem_mb=16000; "cpu"
// is its thread count unless declared), and the sum held by the tasks sent to a worker never
// exceeds them. A task no worker can host waits and raises an "unplaceable" alert.
#pragma once

#include <dx/hint.hpp>

#include <chrono>
#include <initializer_list>
#include <map>
#include <string>
#include <utility>

namespace dx {

/// Named amounts a task needs while it runs (cpu, mem_mb, gpu, or any name workers declare). Safe
/// to read from many threads; nothing here blocks.
struct resources {
  std::map<std::string, double> amounts;

  resources() = default;
  resources(std::initializer_list<std::pair<const std::string, double>> list) : amounts(list) {}
  /// Whether no amount is named. Thread-safe; does not block.
  bool empty() const noexcept { return amounts.empty(); }
};

/// Everything a task may say about itself at submit, as a chain of setters:
///
///   cl.submit(dx::task_options{}.with_priority(10).with_kind("etl.parse"), run_step, s);
///
/// Each setter returns *this so settings chain. An object is safe to read from many threads; its
/// setters are not (set it up on one thread). Nothing here blocks.
///
/// Deprecated: writing the data members directly, or aggregate initialisation
/// (`dx::task_options{.priority = 10}`), still works for this release; use the with_*() setters.
/// Reading the members stays.
struct task_options {
  int priority = 0;         ///< higher runs first among ready tasks
  dx::resources resources;  ///< what it holds while it runs
  dx::hint hint;            ///< its size, for the cost model
  /// The kind the cost model learns it as and metrics, the dashboard and traces show it as; the
  /// function's registered name when empty. For one function that does different work per call.
  std::string kind;
  /// How long the task may take, from submission (zero: no limit). See with_timeout().
  std::chrono::nanoseconds timeout{0};

  /// Higher runs first among ready tasks (default 0). Not thread-safe; does not block.
  task_options& with_priority(int p) noexcept {
    priority = p;
    return *this;
  }
  /// What the task holds while it runs. Not thread-safe; does not block.
  task_options& with_resources(dx::resources r) {
    resources = std::move(r);
    return *this;
  }
  /// Its size, for the cost model. Not thread-safe; does not block.
  task_options& with_hint(dx::hint h) noexcept {
    hint = h;
    return *this;
  }
  /// The kind it is learned and shown as (default: the function's registered name). Not
  /// thread-safe; does not block.
  task_options& with_kind(std::string k) {
    kind = std::move(k);
    return *this;
  }
  /// A limit on the task's time from submission to its result (zero or less: none). When it
  /// passes, the future fails with dx::timeout naming the task and the limit, the task is asked
  /// to stop (dx::stop_token, dx::this_task::stop_requested()), a task not yet started never runs,
  /// dependents fail with the same error, and a result that comes later is discarded and counted
  /// (dx_late_results_total). Enforced by the head for registered functions and by a timer thread
  /// for local tasks. Not thread-safe; does not block.
  template <class Rep, class Period>
  task_options& with_timeout(std::chrono::duration<Rep, Period> d) noexcept {
    timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
    return *this;
  }
};

}  // namespace dx
