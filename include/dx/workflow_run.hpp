// dx/workflow_run.hpp — running a workflow on a cluster, durably: every change of its steps is
// written to a journal, so a run whose head died is resumed by its id without running again what
// had finished.
//
//   dx::cluster cl{dx::options{}.local_processes(2)};
//   dx::workflow_run run = cl.start(wf, dx::run_options{}.with_journal("/var/lib/dx/journal.sqlite"));
//   std::cout << run.id() << "\n";                    // "r-20261206T051500Z-3f9a..."
//   if (run.wait() == dx::workflow_status::succeeded) use(run.result<double>("fit"));
//   for (const dx::task_state& t : run.steps()) std::cout << t.key << " " << dx::to_string(t.status) << "\n";
//
//   // after a crash, in a new process with the same registered functions:
//   dx::workflow_run again = dx::workflow_run::resume(cl, id, opts);  // finished steps are not rerun
//
// A step runs once every step it depends on has succeeded, with the results of its inputs passed
// as its arguments; a step whose dependency failed (or was skipped) is SKIPPED, and the run FAILS
// once nothing more can run. A split step runs as one subtask per chunk ("step#0", "step#1", ...),
// and an aggregate step reduces the chunks' results as a tree. A step whose definition and inputs
// match a step that succeeded before (in any run of the journal) is CACHED: its result is reused.
#pragma once

#include <dx/export.hpp>
#include <dx/serialize.hpp>
#include <dx/workflow.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dx {

class cluster;

namespace detail {
class run_engine;
}

/// Where a run keeps its journal. A plain value; nothing blocks.
struct run_options {
  /// The journal file: $DX_JOURNAL when set, else this path, else
  /// $XDG_STATE_HOME/dx/journal.sqlite ($HOME/.local/state/dx/journal.sqlite).
  std::string journal;
  /// false: nothing is written (the run cannot be resumed, nothing is cached).
  bool journaled = true;

  /// Keeps the journal at `path` (unless $DX_JOURNAL names another). Does not block.
  run_options& with_journal(std::string path) {
    journal = std::move(path);
    journaled = true;
    return *this;
  }
  /// Runs without a journal. Does not block.
  run_options& without_journal() noexcept {
    journaled = false;
    return *this;
  }
};

/// One task of a run as it stands: a step, or a subtask of a split or aggregate step.
struct task_state {
  std::string key;     ///< the step's name, or "<step>#<n>" for a subtask
  std::string parent;  ///< the step of a subtask; empty for a step
  bool is_subtask = false;
  task_status status = task_status::pending;
  std::uint32_t attempts = 0;  ///< times it was sent to run
  std::string assigned_to;     ///< the worker it was last sent to (or that computed its result)
  double progress = 0;         ///< share of its subtasks finished (1 once it succeeded)
  std::string error;           ///< why it failed or was skipped (or, while RETRYING, why it is retried)
  /// A split subtask's part as JSON: {"start":S,"end":E} (indices of a range, positions of the
  /// items); empty for any other task.
  std::string parameters;
};

/// A run in a journal, as cluster::runs() lists it.
struct run_summary {
  std::string id, name;
  workflow_status status = workflow_status::created;
  std::int64_t created_ms = 0, updated_ms = 0;  ///< milliseconds since the Unix epoch
};

/// What came of asking, through the journal, the process that runs a run to cancel it
/// (workflow_run::request_cancel; `dx cancel`). A plain value.
struct cancel_answer {
  bool cancelled = false;                             ///< the run ended CANCELLED
  workflow_status status = workflow_status::created;  ///< the run's status when the answer came
  std::string message;                                ///< what came of it, in words (why not, when not)
};

/// A run of a workflow on a cluster (see the header comment). Copies share the run. Every member
/// is thread-safe. The cluster must outlive the run's work: destroying the cluster interrupts its
/// runs (INTERRUPTED in the journal, resumable).
class DX_API workflow_run {
 public:
  /// An empty handle (valid() false).
  workflow_run() = default;

  /// The run `id` as the journal `opts` names has it, and its tasks, read without taking the
  /// journal over (another process may be running it). Throws dx::error for a journal that cannot
  /// be read or a run it does not have. Thread-safe; blocks on I/O.
  static run_summary recorded(std::string_view id, const run_options& opts, std::vector<task_state>* tasks = nullptr);

  /// Continues the run `id` of the journal `opts` names, in this cluster: steps and subtasks that
  /// succeeded are loaded with their results, the others run (a run that failed or was cancelled
  /// runs again what did not succeed). The run keeps its id. Throws dx::workflow_error for an
  /// unknown run, one that succeeded, or a definition this process cannot run
  /// (a function not registered here); dx::error for a journal that cannot be opened. Blocks
  /// while it loads the journal.
  static workflow_run resume(cluster& cl, std::string_view id, const run_options& opts = {});

  /// Asks the process that runs the run `id` of the journal `opts` names (another process, or
  /// this one) to cancel it as cancel() does there: the request is written to the journal, where
  /// that process's journal writer finds it within a fraction of a second. Waits up to `wait` for
  /// the answer, and withdraws the request when none came. A run that is not running (it ended,
  /// was interrupted, or its head is gone) is not asked: the answer says so. Throws
  /// dx::workflow_error for a run the journal does not have; dx::error for a journal that cannot
  /// be read or written (damaged, or written by a dx too old to take requests). Thread-safe;
  /// blocks.
  static cancel_answer request_cancel(std::string_view id, const run_options& opts,
                                      std::chrono::milliseconds wait = std::chrono::seconds(10));

  bool valid() const noexcept { return e_ != nullptr; }
  /// The run's id, stable across resumes. Does not block.
  const std::string& id() const;
  /// Where the run is now. Does not block.
  workflow_status status() const;
  /// Every task of the run (steps, then subtasks as they are made), as it stands. Does not block.
  std::vector<task_state> steps() const;
  /// Blocks until the run has ended (succeeded, failed or cancelled) and returns how it ended.
  workflow_status wait() const;
  /// Blocks until the run has ended or `d` passed; returns whether it ended.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    return wait_for_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(d));
  }
  /// The result of a step that succeeded (or was cached), decoded as T (the step's function's
  /// result type). Throws dx::workflow_error when the step has no result (not finished, failed,
  /// a split step without an aggregate). Does not block.
  template <class T>
  T result(std::string_view step) const {
    const std::string bytes = result_bytes(step);
    return detail::read_value<T>(std::span<const char>(bytes.data(), bytes.size()));
  }
  /// A command step's result (its standard output), or a result's encoded bytes for any other.
  /// Throws as result(). Does not block.
  std::string result_bytes(std::string_view step) const;
  /// Cancels the run: running tasks are asked to stop, no new task starts, the run ends
  /// CANCELLED. Returns false when it had ended already. Does not block.
  bool cancel();
  /// Stops the run in this process without ending it, as destroying its cluster does: no new
  /// task starts, running tasks are asked to stop (their outcomes are ignored and they run again
  /// on resume), and the journal says INTERRUPTED, so that resume() continues the run later, in
  /// this process or another. For a program that stops on a signal (dx run on Ctrl-C). Returns
  /// false when the run was not running. Does not wait for the tasks (wait() does).
  bool interrupt();

 private:
  friend class cluster;
  explicit workflow_run(std::shared_ptr<detail::run_engine> e) : e_(std::move(e)) {}
  bool wait_for_ns(std::chrono::nanoseconds d) const;
  std::shared_ptr<detail::run_engine> e_;
};

}  // namespace dx
