#include <dx/task_graph.hpp>

#include "executor_impl.hpp"
#include "task_graph_impl.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <vector>

namespace dx::detail {

namespace {

void start_run(graph_impl& g, queued_run run) noexcept;
void finish_node(graph_node* n) noexcept;

std::string describe(const graph_impl& g) {
  return g.name.empty() ? std::string("task_graph") : "task_graph '" + g.name + "'";
}

/// Reports a cycle by the names of the tasks on it, if there is one. Kahn's algorithm.
void check_acyclic(graph_impl& g) {
  const std::size_t n = g.nodes.size();
  std::vector<std::uint32_t> indegree(n);
  for (auto& node : g.nodes) indegree[node.index] = node.num_predecessors;
  std::vector<graph_node*> stack(g.sources.begin(), g.sources.end());
  std::size_t visited = 0;
  while (!stack.empty()) {
    graph_node* node = stack.back();
    stack.pop_back();
    ++visited;
    for (std::size_t i = 0; i < node->successors.size(); ++i) {
      graph_node* s = node->successors[i];
      if (--indegree[s->index] == 0) stack.push_back(s);
    }
  }
  if (visited == n) return;
  // Every node left has a predecessor that is also left: walking predecessors must repeat.
  std::vector<graph_node*> some_pred(n, nullptr);
  for (auto& node : g.nodes) {
    if (indegree[node.index] == 0) continue;
    for (std::size_t i = 0; i < node.successors.size(); ++i) {
      graph_node* s = node.successors[i];
      if (indegree[s->index] != 0) some_pred[s->index] = &node;
    }
  }
  graph_node* at = nullptr;
  for (auto& node : g.nodes) {
    if (indegree[node.index] != 0) {
      at = &node;
      break;
    }
  }
  std::vector<int> seen(n, -1);
  std::vector<graph_node*> path;
  while (seen[at->index] < 0) {
    seen[at->index] = static_cast<int>(path.size());
    path.push_back(at);
    at = some_pred[at->index];
  }
  // path[seen[at]..] is the cycle, walked against the edges: report it along them.
  std::vector<graph_node*> cycle(path.begin() + seen[at->index], path.end());
  std::reverse(cycle.begin(), cycle.end());
  std::string names;
  for (graph_node* c : cycle) names += g.node_label(*c) + " -> ";
  names += g.node_label(*cycle.front());
  throw_error(error_kind::cycle, fmt::format("{} has a cycle: {}", describe(g), names));
}

/// Runs once after each change of structure: finds the sources and, when an edge points
/// backwards, checks for a cycle. A sequential scan otherwise, as cheap as it gets.
void validate(graph_impl& g) {
  g.sources.clear();
  for (auto& node : g.nodes) {
    if (node.num_predecessors == 0) g.sources.push_back(&node);
  }
  if (g.has_backward_edge) check_acyclic(g);
  g.dirty = false;
}

/// A graph that (through compose) contains itself could never finish.
void check_composition(const graph_impl& g, std::vector<const graph_impl*>& path) {
  if (std::find(path.begin(), path.end(), &g) != path.end()) {
    throw_error(error_kind::cycle, fmt::format("{} contains itself through compose()", describe(g)));
  }
  path.push_back(&g);
  for (const auto& node : g.nodes) {
    if (node.module) check_composition(*node.module, path);
  }
  path.pop_back();
}

bool stop_requested(const queued_run& run) noexcept { return run.stop && run.stop->stop_requested(); }

void deliver(queued_run run, std::exception_ptr error) noexcept {
  if (run.out) {
    if (!error && stop_requested(run)) error = make_error(error_kind::cancelled, "the task graph run was cancelled");
    if (!run.out->claim()) {  // cannot happen today (graph runs settle only here); kept for safety
      run.out->release();
      return;
    }
    if (error) run.out->store_error(std::move(error));
    run.out->publish_from_task();
    run.out->release();
  } else if (run.parent) {
    if (error) run.parent->graph->fail(std::move(error));
    finish_node(run.parent);
  }
}

void complete_run(graph_impl& g) noexcept {
  queued_run done = g.current;
  std::exception_ptr error = std::move(g.error);
  queued_run next;
  bool has_next = false;
  {
    std::lock_guard lock(g.run_mutex);
    if (!g.queue.empty()) {
      next = g.queue.front();
      g.queue.pop_front();
      has_next = true;
    } else {
      g.running = false;  // from here on the owner may destroy g: touch it no more
    }
  }
  if (has_next) start_run(g, next);
  executor_impl* ex = done.ex;
  bool counted = done.out != nullptr;
  deliver(done, std::move(error));
  if (counted) ex->retire();
}

void run_node(task_base* t) noexcept {
  auto* n = static_cast<graph_node*>(t);
  graph_impl& g = *n->graph;
  if (g.failed.load(std::memory_order_acquire) || stop_requested(g.current)) {
    finish_node(n);  // after a failure or a cancel the remaining tasks are skipped
    return;
  }
  if (n->module) {
    queued_run inner{nullptr, n, g.current.ex, g.current.stop};
    bool start = false;
    {
      std::lock_guard lock(n->module->run_mutex);
      if (n->module->running) {
        n->module->queue.push_back(inner);
      } else {
        n->module->running = true;
        start = true;
      }
    }
    if (start) start_run(*n->module, inner);
    return;  // the inner run finishes n when it completes
  }
  try {
    current_task_scope scope(g.current.stop);
    n->work();
  } catch (...) {
    g.fail(std::current_exception());
  }
  finish_node(n);
}

void finish_node(graph_node* n) noexcept {
  graph_impl& g = *n->graph;
  executor_impl* ex = g.current.ex;
  graph_node* carry = nullptr;
  for (std::size_t i = 0; i < n->successors.size(); ++i) {
    graph_node* s = n->successors[i];
    if (s->num_predecessors == 1 || s->join.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      s->join.store(s->num_predecessors, std::memory_order_relaxed);  // armed for the next run
      if (!carry) {
        carry = s;  // inherits this node's token: no shared counter touched
        continue;
      }
      g.pending.fetch_add(1, std::memory_order_relaxed);  // before the successor can finish
      ex->enqueue(s);
    }
  }
  if (carry) {
    ex->enqueue_next(carry);
    return;
  }
  if (g.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) complete_run(g);
}

void start_run(graph_impl& g, queued_run run) noexcept {
  g.current = run;
  g.error = nullptr;
  g.failed.store(false, std::memory_order_relaxed);
  try {
    if (g.dirty) {
      if (g.has_modules) {
        std::vector<const graph_impl*> path;
        check_composition(g, path);
      }
      validate(g);
    }
  } catch (...) {
    g.error = std::current_exception();
    complete_run(g);
    return;
  }
  if (g.sources.empty()) {  // an empty graph
    complete_run(g);
    return;
  }
  g.pending.store(g.sources.size(), std::memory_order_relaxed);
  // Copy: the last source may finish the run (and let another start) before the loop ends.
  const std::size_t count = g.sources.size();
  graph_node* single = count == 1 ? g.sources[0] : nullptr;
  if (single) {
    run.ex->enqueue(single);
    return;
  }
  std::vector<graph_node*> sources(g.sources);
  for (graph_node* s : sources) run.ex->enqueue(s);
}

}  // namespace

std::string graph_impl::node_label(const graph_node& n) const {
  return n.name && !n.name->empty() ? "'" + *n.name + "'" : fmt::format("#{}", n.index);
}

future<void> run_graph(executor_impl* ex, graph_impl& g) {
  auto* out = new graph_run_state;
  out->set_executor(ex);
  out->add_ref();  // one for the run, one for the returned future
  future<void> result = future_access::make(state_ptr<shared_state<void>>(out));
  if (!ex->announce()) {
    out->set_error(make_error(error_kind::executor_shutdown, "task graph run on a dx::executor that is shutting down"));
    out->release();
    return result;
  }
  queued_run run{out, nullptr, ex, out};
  {
    std::lock_guard lock(g.run_mutex);
    if (g.running) {
      g.queue.push_back(run);
      return result;
    }
    g.running = true;
  }
  start_run(g, run);
  return result;
}

}  // namespace dx::detail

namespace dx {

using detail::graph_impl;
using detail::graph_node;

graph_task& graph_task::name(std::string n) {
  node_->name = std::make_unique<std::string>(std::move(n));
  return *this;
}
const std::string& graph_task::name() const {
  static const std::string none;
  return node_->name ? *node_->name : none;
}
std::size_t graph_task::num_successors() const { return node_->successors.size(); }
std::size_t graph_task::num_predecessors() const { return node_->num_predecessors; }

void graph_task::add_edge(const graph_task& from, const graph_task& to) {
  if (from.empty() || to.empty())
    detail::throw_error(detail::error_kind::no_state, "precede/succeed on an empty dx::graph_task");
  if (from.node_->graph != to.node_->graph) {
    detail::throw_error(detail::error_kind::generic, "precede/succeed between tasks of different task_graphs");
  }
  graph_node* to_node = to.node_;
  from.node_->successors.push_back(to_node);
  ++to_node->num_predecessors;
  to_node->join.store(to_node->num_predecessors, std::memory_order_relaxed);
  graph_impl* g = from.node_->graph;
  g->dirty = true;
  if (from.node_->index >= to_node->index) g->has_backward_edge = true;
}

task_graph::task_graph(std::string name) : impl_(std::make_unique<graph_impl>(std::move(name))) {}
task_graph::~task_graph() = default;
task_graph::task_graph(task_graph&&) noexcept = default;
task_graph& task_graph::operator=(task_graph&&) noexcept = default;

graph_node* task_graph::add(detail::unique_function f) {
  if (!impl_) impl_ = std::make_unique<graph_impl>(std::string());
  graph_node& n = impl_->nodes.emplace_back();
  n.graph = impl_.get();
  n.work = std::move(f);
  n.run = &detail::run_node;
  n.index = static_cast<std::uint32_t>(impl_->nodes.size() - 1);
  impl_->dirty = true;
  return &n;
}

graph_task task_graph::compose(task_graph& inner) {
  if (&inner == this) detail::throw_error(detail::error_kind::cycle, "a task_graph cannot compose itself");
  graph_node* n = add(detail::unique_function());
  n->module = &inner.impl();
  impl_->has_modules = true;
  if (!inner.name().empty()) n->name = std::make_unique<std::string>(inner.name());
  return graph_task(n);
}

std::size_t task_graph::size() const noexcept { return impl_ ? impl_->nodes.size() : 0; }

void task_graph::clear() {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->run_mutex);
    if (impl_->running) detail::throw_error(detail::error_kind::generic, "task_graph::clear() while the graph runs");
  }
  impl_->nodes.clear();
  impl_->sources.clear();
  impl_->dirty = true;
  impl_->has_backward_edge = false;
  impl_->has_modules = false;
}

const std::string& task_graph::name() const noexcept {
  static const std::string none;
  return impl_ ? impl_->name : none;
}

}  // namespace dx
