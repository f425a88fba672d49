// dx/when_any.hpp — one future for the first of many to be ready.
//
//   auto first = dx::when_any(std::move(replicas)).get();
//   int value = first.futures[first.index].get();   // the others are given back, still running
#pragma once

#include <dx/when_all.hpp>

#include <atomic>
#include <cstddef>
#include <limits>
#include <memory>
#include <vector>

namespace dx {

/// The outcome of when_any: which input was ready first, and every input given back. A plain
/// value: one thread at a time uses it, as its futures.
template <class Fut>
struct when_any_result {
  /// Index of the first input found ready; `npos` when the input range was empty.
  std::size_t index = npos;
  /// All inputs, in their original order; futures[index] is ready.
  std::vector<Fut> futures;
  static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();
};

namespace detail {

/// Each registered input holds one reference to this state (the nodes live in it), so inputs that
/// become ready after the winner still find their node alive.
template <class Fut>
class when_any_state final : public shared_state<when_any_result<Fut>> {
  struct node : continuation {
    when_any_state* owner = nullptr;
    std::size_t index = 0;
  };

 public:
  explicit when_any_state(std::vector<Fut> inputs)
      : inputs_(std::move(inputs)), nodes_(new node[inputs_.size()]), gate_(2) {}

  future<when_any_result<Fut>> start() {
    const std::size_t n = inputs_.size();
    for (std::size_t i = 0; i < n; ++i) this->add_ref();  // one per registered node
    for (auto& f : inputs_) {
      if (executor_impl* ex = future_access::state(f)->executor()) {
        this->set_executor(ex);
        break;
      }
    }
    // The registering thread holds the future's reference until it returns the future.
    auto result = future_access::make(state_ptr<shared_state<when_any_result<Fut>>>(this));
    std::vector<state_base*> states(n);
    for (std::size_t i = 0; i < n; ++i) states[i] = future_access::state(inputs_[i]).get();
    for (std::size_t i = 0; i < n; ++i) {
      nodes_[i].owner = this;
      nodes_[i].index = i;
      nodes_[i].fire = &on_input_ready;
      states[i]->on_ready(&nodes_[i]);
    }
    pass_gate();
    return result;
  }

 private:
  static void on_input_ready(continuation* c) noexcept {
    auto* n = static_cast<node*>(c);
    when_any_state* self = n->owner;
    std::size_t none = when_any_result<Fut>::npos;
    if (self->winner_.compare_exchange_strong(none, n->index, std::memory_order_acq_rel)) self->pass_gate();
    self->release();
  }

  // Publishes once there is a winner and registration is over: inputs_ must not move while the
  // registering thread still reads it.
  void pass_gate() noexcept {
    if (gate_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    try {
      this->emplace(when_any_result<Fut>{winner_.load(std::memory_order_acquire), std::move(inputs_)});
    } catch (...) {
      this->store_error(std::current_exception());
    }
    this->publish();
  }

  std::vector<Fut> inputs_;
  std::unique_ptr<node[]> nodes_;
  std::atomic<std::size_t> winner_{when_any_result<Fut>::npos};
  std::atomic<int> gate_;
};

}  // namespace detail

/// A future that becomes ready as soon as any input is ready, holding that input's index and all
/// inputs given back. An input holding an exception counts as ready; the exception stays in that
/// input. An empty range gives a ready result with index == npos. Throws dx::no_state if an input
/// is empty. Thread-safe (the inputs are taken over); does not block.
template <class Fut, class = std::enable_if_t<detail::is_future<Fut>::value || detail::is_shared_future<Fut>::value>>
future<when_any_result<Fut>> when_any(std::vector<Fut> inputs) {
  detail::check_inputs(inputs, "dx::when_any() given an empty future");
  if (inputs.empty()) return make_ready_future(when_any_result<Fut>{});
  return (new detail::when_any_state<Fut>(std::move(inputs)))->start();
}

}  // namespace dx
