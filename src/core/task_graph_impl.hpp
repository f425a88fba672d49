// Task graph storage and runs. Private to dx.
#pragma once

#include <dx/detail/runtime.hpp>
#include <dx/detail/shared_state.hpp>
#include <dx/detail/unique_function.hpp>
#include <dx/future.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace dx::detail {

class graph_impl;

/// Successor lists: most nodes have one or two successors, so two live inline; more spill into
/// a heap array. Small, because a graph's size in memory is what its runs stream through.
class node_list {
 public:
  node_list() noexcept = default;
  node_list(const node_list&) = delete;
  node_list& operator=(const node_list&) = delete;
  ~node_list() { delete[] more_; }

  void push_back(struct graph_node* n) {
    if (size_ < 2) {
      inline_[size_++] = n;
      return;
    }
    if (size_ - 2 == capacity_) {
      std::uint32_t grown = capacity_ == 0 ? 4 : capacity_ * 2;
      auto* bigger = new graph_node*[grown];
      for (std::uint32_t i = 0; i < capacity_; ++i) bigger[i] = more_[i];
      delete[] more_;
      more_ = bigger;
      capacity_ = grown;
    }
    more_[size_++ - 2] = n;
  }
  std::size_t size() const noexcept { return size_; }
  graph_node* operator[](std::size_t i) const noexcept { return i < 2 ? inline_[i] : more_[i - 2]; }

 private:
  graph_node* inline_[2] = {nullptr, nullptr};
  graph_node** more_ = nullptr;
  std::uint32_t size_ = 0;
  std::uint32_t capacity_ = 0;
};

struct graph_node : task_base {
  graph_impl* graph = nullptr;
  unique_function work;
  graph_impl* module = nullptr;  // set for a task that runs another graph
  node_list successors;
  std::uint32_t num_predecessors = 0;
  // Predecessors still to finish in the current run. Equal to num_predecessors between runs:
  // add_edge raises both, and a run re-arms each node as it becomes ready.
  std::atomic<std::uint32_t> join{0};
  std::uint32_t index = 0;
  std::unique_ptr<std::string> name;  // most tasks are unnamed: keep the node small
};

/// A run waiting for the graph: its future's state, or the outer task that composed the graph.
struct queued_run {
  shared_state<void>* out = nullptr;
  graph_node* parent = nullptr;
  executor_impl* ex = nullptr;
  state_base* stop = nullptr;  // the outermost run's future state: cancelling it stops this run
};

/// The future state of a graph run. Cancelling it skips the tasks that have not started; the
/// run's future settles with dx::cancelled once the running ones return (the graph must outlive
/// its running tasks, so it cannot settle earlier).
class graph_run_state final : public shared_state<void> {
 public:
  bool request_stop(std::exception_ptr) noexcept override {
    // acq_rel: pairs with the run's claim() in deliver(); a request that finds the run settled
    // changes nothing.
    return (control_.fetch_or(stop_bit, std::memory_order_acq_rel) & claimed_bit) == 0;
  }
};

class graph_impl {
 public:
  explicit graph_impl(std::string n) : name(std::move(n)) {}

  std::string name;
  std::deque<graph_node> nodes;  // a deque keeps node addresses stable as the graph grows
  bool dirty = true;             // structure changed since the last validation
  // Set when an edge goes from a later task to an earlier one. Without such an edge the creation
  // order is a topological order, so the graph cannot have a cycle and validation skips the
  // search for one.
  bool has_backward_edge = false;
  bool has_modules = false;  // some task composes another graph
  std::vector<graph_node*> sources;

  // The current run. One run at a time: later ones wait in `queue`.
  std::mutex run_mutex;
  bool running = false;
  std::deque<queued_run> queue;
  queued_run current;
  std::atomic<std::size_t> pending{0};  // ready-or-running "tokens" of the current run
  std::atomic<bool> failed{false};
  std::exception_ptr error;

  void fail(std::exception_ptr e) noexcept {
    if (!failed.exchange(true, std::memory_order_acq_rel)) error = std::move(e);
  }
  std::string node_label(const graph_node& n) const;
};

/// Starts (or queues) a run of `g` on `ex`; the future is ready when it has finished.
future<void> run_graph(executor_impl* ex, graph_impl& g);

}  // namespace dx::detail
