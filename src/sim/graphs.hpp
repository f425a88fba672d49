// Task graphs for the simulator: the usual shapes (random DAG, fork-join, map-reduce, tree
// reduction, wavefront, independent chains) with task kinds whose true durations are known, so a
// scheduling policy can be judged against ground truth.
//
//   dx::sim::graph_options o;
//   o.seed = 7;
//   dx::sim::graph g = dx::sim::random_dag(10'000, 3, o);
//   double work = g.total_work();  // seconds on a worker of speed factor 1
#pragma once

#include "sched/scheduler.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dx::sim {

/// A task kind with a size-dependent true duration: seconds(size) = base * size^exponent.
struct kind_spec {
  std::string name;
  double base = 1e-3;
  double exponent = 1;
  double seconds(double size) const;
};

/// One task. Its id is its index in graph::tasks; every input is an earlier task, so the index
/// order is a topological order.
struct task_def {
  std::vector<sched::task_id> inputs;
  std::uint32_t kind = 0;
  double size = 1;
  /// Lognormal multiplier drawn once per task: every attempt of the task takes the same time on
  /// a given worker, as a real function on the same input would.
  double noise = 1;
  std::uint64_t output_bytes = 0;
  std::uint64_t input_bytes = 0;  ///< bytes sent with the task that no task produced
  int priority = 0;
  sched::resource_map needs;
};

struct graph {
  std::string shape;
  std::vector<kind_spec> kinds;
  std::vector<task_def> tasks;

  /// Run time of task i on a worker of speed factor 1, noise included.
  double true_seconds(std::size_t i) const;
  std::size_t edges() const;
  /// Every input names an existing task, no task lists an input twice and the inputs admit a
  /// topological order (checked with Kahn's algorithm, not assumed from the index order).
  bool valid() const;
  double total_work() const;
  /// Longest chain of true durations on speed-factor-1 workers, transfers left out.
  double critical_path() const;
  /// Length in tasks of the longest chain.
  std::size_t depth() const;
  /// For each task, the tasks that read its result, in increasing id order.
  std::vector<std::vector<sched::task_id>> dependents() const;
};

/// How tasks are decorated. Durations come out between a few hundred microseconds and a few
/// hundred milliseconds with the defaults.
struct graph_options {
  std::uint64_t seed = 1;
  std::size_t kinds = 5;
  /// Task sizes are log-uniform in [min_size, max_size].
  double min_size = 1e3;
  double max_size = 1e6;
  /// A kind's duration at the geometric middle of the size range is log-uniform in this range.
  double min_kind_seconds = 0.002;
  double max_kind_seconds = 0.05;
  /// A kind's size exponent is uniform in this range.
  double min_exponent = 0.5;
  double max_exponent = 1.2;
  /// sigma of the per-task lognormal noise on durations.
  double noise_sigma = 0.08;
  /// Output sizes are log-uniform in this range.
  std::uint64_t min_output_bytes = 1 << 10;
  std::uint64_t max_output_bytes = 4 << 20;
  /// Each task's priority is uniform in [0, priority_levels).
  int priority_levels = 1;
  /// This share of the tasks declares `needs`.
  double needs_fraction = 0;
  sched::resource_map needs;
};

/// Task i reads k ~ U{0..min(max_inputs, i)} distinct earlier tasks, chosen uniformly.
graph random_dag(std::size_t tasks, std::size_t max_inputs, const graph_options& o = {});
/// A source, then `stages` times: `width` tasks reading the previous join, and a join reading
/// them all. 1 + stages * (width + 1) tasks.
graph fork_join(std::size_t stages, std::size_t width, const graph_options& o = {});
/// `maps` independent tasks, `reduces` tasks each reading every map, and one final task reading
/// every reduce.
graph map_reduce(std::size_t maps, std::size_t reduces, const graph_options& o = {});
/// `leaves` independent tasks combined `fan_in` at a time, level by level, down to one root.
graph tree_reduction(std::size_t leaves, std::size_t fan_in, const graph_options& o = {});
/// A rows x cols grid; cell (r, c) reads (r, c - 1) and (r - 1, c). Id of (r, c) = r * cols + c.
graph wavefront(std::size_t rows, std::size_t cols, const graph_options& o = {});
/// `tasks` independent tasks of one kind taking exactly `seconds` each on a worker of factor 1
/// (no noise, no size): the simplest load, whose ideal makespan is work / threads.
graph independent(std::size_t tasks, double seconds);
/// `count` independent chains of `length` tasks, interleaved: task i reads task i - count.
graph chains(std::size_t count, std::size_t length, const graph_options& o = {});

/// A shape by name with about `tasks` tasks: "random", "fork-join", "map-reduce", "tree",
/// "wavefront", "chains". `max_inputs` is used by "random", `width` by "fork-join" (width),
/// "map-reduce" (reduces), "tree" (fan-in) and "chains" (count); 0 picks a default.
/// Throws std::invalid_argument on an unknown shape.
graph make_graph(std::string_view shape, std::size_t tasks, std::size_t max_inputs, std::size_t width,
                 const graph_options& o = {});
/// The shape names make_graph accepts.
const std::vector<std::string>& graph_shapes();

}  // namespace dx::sim
