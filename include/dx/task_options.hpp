// dx/task_options.hpp — what a submitted task tells the scheduler about itself.
//
//   cl.submit(dx::hint{.size = rows}, process, chunk);                 // bigger calls take longer
//   cl.submit(dx::resources{{"gpu", 1}, {"mem_mb", 2048}}, train, cfg); // only where that fits
//   cl.submit(dx::task_options{}.with_priority(10), urgent, x);        // before queued normal work
//   cl.submit(dx::task_options{}.with_kind("etl.parse"), run_step, s); // learned and shown apart
//   cl.submit(dx::task_options{}.with_timeout(2s), simulate, 1, 1000);  // dx::timeout after 2 s
//   cl.submit(dx::task_options{}.with_retries({.max_attempts = 5}), fetch, url); // again if it throws
//   cl.submit(dx::task_options{}.with_replicate({.copies = 3, .quorum = 2}), f, x);  // 2 of 3 agree
//   cl.submit(dx::task_options{}.with_deadline({.soft_factor = 3}), f, x);  // a twin for a straggler
//
// Priorities order the ready tasks (higher first; the default is 0), then the scheduler prefers
// tasks on the longest predicted path to the end of the graph. Resources are amounts a task holds
// while it runs; a worker declares its capacities (dx-worker --resources gpu=2,mem_mb=16000; "cpu"
// is its thread count unless declared), and the sum held by the tasks sent to a worker never
// exceeds them. A task no worker can host waits and raises an "unplaceable" alert.
#pragma once

#include <dx/hint.hpp>
#include <dx/replicate.hpp>
#include <dx/retry.hpp>

#include <chrono>
#include <initializer_list>
#include <map>
#include <memory>
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
  /// Whether and how it runs again after an exception (null: never). Set by with_retries(),
  /// retry_on() and never_retry_on(); shared, so copying options (and submitting with them)
  /// copies no filters.
  std::shared_ptr<const detail::retry_rules> retries;
  /// Copies on distinct workers and the quorum their results must reach (null: one run). See
  /// dx/replicate.hpp; registered functions only.
  std::shared_ptr<const dx::replicate> replication;
  /// When a copy is late (null: never). See dx/replicate.hpp; registered functions only.
  std::shared_ptr<const dx::deadline> deadlines;

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
  /// Runs the task again after it throws, as `p` says (see dx/retry.hpp): up to p.max_attempts
  /// runs in all, with growing pauses between them; the future receives the last exception when
  /// they run out. Every attempt shows in the task history, traces and dashboard. A local task's
  /// arguments are copied for each attempt (submit throws dx::error when they cannot be). Not
  /// thread-safe; does not block.
  task_options& with_retries(const retry_policy& p) {
    auto r = editable_retries();
    r->policy = p;
    r->policy_set = true;
    retries = std::move(r);
    return *this;
  }
  /// Runs the task as copies on distinct workers and accepts the result a quorum of them agree on
  /// (dx/replicate.hpp). Registered functions only: submit throws dx::error for a local callable,
  /// for a quorum over the copies, and for a comparator no DX_COMPARATOR registered. Not
  /// thread-safe; does not block.
  task_options& with_replicate(const dx::replicate& r) {
    replication = std::make_shared<const dx::replicate>(r);
    return *this;
  }
  /// Speculative and reissued copies of a late task (dx/replicate.hpp). Registered functions
  /// only. Not thread-safe; does not block.
  task_options& with_deadline(const dx::deadline& d) {
    deadlines = std::make_shared<const dx::deadline>(d);
    return *this;
  }
  /// Retries only exceptions of these types (or derived from them; a worker's exception by its
  /// type's name and its public bases' names). Without with_retries(), the default retry_policy.
  /// Not thread-safe; does not block.
  template <class... E>
  task_options& retry_on() {
    auto r = editable_retries();
    (r->only.push_back(detail::filter_for<E>()), ...);
    r->policy_set = true;
    retries = std::move(r);
    return *this;
  }
  /// Never retries exceptions of these types (or derived from them), whatever retry_on() says.
  /// Retries stay off unless with_retries() or retry_on() turns them on. Not thread-safe; does not
  /// block.
  template <class... E>
  task_options& never_retry_on() {
    auto r = editable_retries();
    (r->never.push_back(detail::filter_for<E>()), ...);
    retries = std::move(r);
    return *this;
  }
  /// Whether an exception may run the task again. Thread-safe; does not block.
  bool retries_enabled() const noexcept { return retries && retries->policy_set && retries->policy.max_attempts > 1; }

 private:
  std::shared_ptr<detail::retry_rules> editable_retries() const {
    return retries ? std::make_shared<detail::retry_rules>(*retries) : std::make_shared<detail::retry_rules>();
  }
};

}  // namespace dx
