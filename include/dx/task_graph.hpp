// dx/task_graph.hpp — static task graphs: build once, run many times.
//
//   dx::task_graph g{"pipeline"};
//   auto load  = g.emplace([] { load(); }).name("load");
//   auto left  = g.emplace([] { left(); });
//   auto right = g.emplace([] { right(); });
//   auto merge = g.emplace([] { merge(); }).name("merge");
//   load.precede(left, right);
//   merge.succeed(left, right);
//   ex.run(g).get();          // and again: graphs can be re-run
//
// A graph can hold another graph as one of its tasks (compose), which runs the whole inner graph
// at that point.
#pragma once

#include <dx/detail/unique_function.hpp>
#include <dx/export.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace dx {

namespace detail {
struct graph_node;
class graph_impl;
}  // namespace detail

class task_graph;

/// A handle to one task of a task_graph; cheap to copy; valid as long as its graph is.
/// Building a graph is not thread-safe: build from one thread, and not while it runs.
class DX_API graph_task {
 public:
  /// An empty handle (empty() is true). Does not block.
  graph_task() noexcept = default;

  /// Makes this task run before each of `others`. Not thread-safe; does not block.
  template <class... T>
  graph_task& precede(const T&... others) {
    (add_edge(*this, others), ...);
    return *this;
  }
  /// Makes this task run after each of `others`. Not thread-safe; does not block.
  template <class... T>
  graph_task& succeed(const T&... others) {
    (add_edge(others, *this), ...);
    return *this;
  }

  /// Names the task (shown in errors such as a cycle report). Not thread-safe; does not block.
  graph_task& name(std::string n);
  /// The task's name, or "" if it has none. Thread-safe while the graph is not being built; does
  /// not block.
  const std::string& name() const;

  /// Tasks this one runs before / after. Thread-safe while the graph is not being built; do not
  /// block.
  std::size_t num_successors() const;
  std::size_t num_predecessors() const;
  /// Whether the handle refers to no task; handles are equal when they refer to the same task.
  /// Thread-safe; do not block.
  bool empty() const noexcept { return node_ == nullptr; }
  bool operator==(const graph_task& o) const noexcept { return node_ == o.node_; }

 private:
  friend class task_graph;
  explicit graph_task(detail::graph_node* n) noexcept : node_(n) {}
  static void add_edge(const graph_task& from, const graph_task& to);
  detail::graph_node* node_ = nullptr;
};

/// A directed acyclic graph of tasks, run by executor::run(graph). Movable, not copyable. Building
/// (emplace, compose, clear, precede, succeed, name) is not thread-safe and must not overlap a
/// run; reading it (size, name) is thread-safe meanwhile. Nothing here blocks.
class DX_API task_graph {
 public:
  /// An empty graph called `name` (shown in errors). Does not block.
  explicit task_graph(std::string name = {});
  /// Must not run while the graph runs. Does not block.
  ~task_graph();
  task_graph(task_graph&&) noexcept;
  task_graph& operator=(task_graph&&) noexcept;
  task_graph(const task_graph&) = delete;
  task_graph& operator=(const task_graph&) = delete;

  /// Adds a task that calls `f()`. Not thread-safe; does not block.
  template <class F>
  graph_task emplace(F&& f) {
    static_assert(std::is_invocable_v<std::decay_t<F>&>, "a task_graph task must be callable with no arguments");
    return graph_task(add(detail::unique_function(std::forward<F>(f))));
  }

  /// Adds a task that runs all of `inner` (which must outlive this graph's runs, and must not be
  /// composed into a place where two runs of it could overlap). Not thread-safe; does not block.
  graph_task compose(task_graph& inner);

  /// Number of tasks, and whether there are none. Thread-safe while not being built; do not block.
  std::size_t size() const noexcept;
  bool empty() const noexcept { return size() == 0; }
  /// Removes every task (not while running). Not thread-safe; does not block.
  void clear();
  /// The graph's name. Thread-safe; does not block.
  const std::string& name() const noexcept;

  /// The representation, for the executor; not for users. Thread-safe; does not block.
  detail::graph_impl& impl() const noexcept { return *impl_; }

 private:
  detail::graph_node* add(detail::unique_function f);
  std::unique_ptr<detail::graph_impl> impl_;
};

}  // namespace dx
