// What the head's HTTP routes show of a cluster's workflow runs (/api/runs, /api/runs/{id}): plain
// records that a run's engine copies under its lock, and their JSON, written after the lock is
// released (docs/http-api.md describes the routes and every field).
#pragma once

#include <dx/workflow.hpp>
#include <dx/workflow_run.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dx::detail {

/// How many tasks are in each status (indexed by task_status).
struct status_counts {
  std::array<std::uint64_t, 9> by{};
  void add(task_status s) noexcept { ++by[static_cast<std::size_t>(s)]; }
  std::uint64_t operator[](task_status s) const noexcept { return by[static_cast<std::size_t>(s)]; }
  std::uint64_t total() const noexcept;
};

/// One run as /api/runs lists it.
struct run_summary_view {
  std::string id, name;
  workflow_status status = workflow_status::created;
  std::int64_t created_ms = 0, updated_ms = 0;  // Unix milliseconds
  std::uint64_t version = 0;                    // grows with every change the views show
  status_counts steps;                          // the run's steps (not their subtasks) by status
  double progress = 0;                          // the mean of the steps' progress, 0..1
};

/// One step of a run, with counts of its subtasks (a split's chunks, an aggregate's reductions).
struct step_view {
  std::string name;
  std::string kind;      // "function", "command" or "aggregate"
  std::string function;  // a function step's (or a function aggregate's) registered name
  std::vector<std::string> command;
  std::vector<std::string> dependencies;
  bool split = false;
  std::string aggregate_of;  // the split step an aggregate combines
  task_status status = task_status::pending;
  double progress = 0;
  std::uint32_t attempts = 0;
  std::string assigned_to, error;
  std::uint64_t subtasks = 0;  // made so far
  status_counts subtask_status;
  /// A split's chunks in all once its cut is decided (0: not yet known, while it measures).
  std::uint64_t chunks_planned = 0;
  /// Its result, for the one step a request names (?step=NAME) once it succeeded.
  struct result_view {
    std::uint64_t bytes = 0;             // the result's size (a command's: its standard output's)
    std::optional<std::string> preview;  // a short text; none for a result type without one
    bool truncated = false;              // the preview is part of it
    bool tail = false;                   // ... its end (a command's output), else its start
  };
  std::optional<result_view> result;
};

/// The result view of a step whose result is `bytes` (a command's: its output as text; a
/// function's: encoded). Thread-safe; does not block.
step_view::result_view result_view_of(const step_view& s, const std::string& bytes);

/// Which subtasks of a step a request pages through (?subtasks=STEP&offset=&limit=&status=).
struct subtask_query {
  std::string step;
  std::uint64_t offset = 0;
  std::uint64_t limit = 100;
  std::optional<task_status> status;  // only these
};

/// One page of a step's subtasks: [offset, offset + items.size()) of the `total` that match.
struct subtask_page {
  std::string step;
  std::uint64_t offset = 0, limit = 0, total = 0;
  std::optional<task_status> status;
  std::vector<task_state> items;
};

/// The whole of /api/runs/{id}.
struct run_detail_view {
  run_summary_view run;
  std::vector<step_view> steps;  // in an order where each comes after its dependencies
  std::optional<subtask_page> subtasks;
};

/// Bounds of a subtask page: a split can have 100,000 chunks, a page never more than this.
constexpr std::uint64_t default_subtask_page = 100;
constexpr std::uint64_t max_subtask_page = 1000;

std::string runs_json(const std::vector<run_summary_view>& runs);
std::string run_json(const run_detail_view& run);

}  // namespace dx::detail
