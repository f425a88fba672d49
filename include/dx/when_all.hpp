// dx/when_all.hpp — one future for the values of many.
//
//   std::vector<dx::future<int>> parts = ...;
//   dx::future<int> total = dx::when_all(std::move(parts)).then([](std::vector<int> v) {
//     return std::accumulate(v.begin(), v.end(), 0);
//   });
//   auto [a, b] = dx::when_all(ex.submit(f), ex.submit(g)).get();
#pragma once

#include <dx/future.hpp>

#include <atomic>
#include <cstddef>
#include <iterator>
#include <memory>
#include <tuple>
#include <variant>
#include <vector>

namespace dx {
namespace detail {

template <class Fut>
using future_value_t = typename std::decay_t<Fut>::value_type;

/// Storage slot for one input's value in a variadic when_all: void becomes std::monostate.
template <class T>
using value_or_monostate = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

/// Takes the value out of a ready input: moved from a future, copied from a shared_future.
template <class Fut>
auto take_value(Fut& f) -> value_or_monostate<future_value_t<Fut>> {
  using T = future_value_t<Fut>;
  auto& s = future_access::state(f);
  if constexpr (std::is_void_v<T>) {
    return std::monostate{};
  } else if constexpr (is_future<Fut>::value) {
    return std::move(s->value());
  } else {
    return s->value();
  }
}

/// One continuation per input, pointing back at the combined state.
template <class Owner>
struct input_node : continuation {
  Owner* owner = nullptr;
  std::size_t index = 0;
};

/// Common part of every when_* state: counts arrivals and finishes once the last one arrived and
/// registration is over. The extra count held by the registering thread keeps an input that is
/// already ready from finishing the state while later inputs are still being registered.
template <class Derived, class R>
class gathering_state : public shared_state<R> {
 public:
  using result_type = R;

 protected:
  explicit gathering_state(std::size_t inputs) : left_(inputs + 1) {}
  void arrive() noexcept {
    if (left_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      static_cast<Derived*>(this)->finish();
      this->publish();
      this->release();  // the reference held while inputs were outstanding
    }
  }

 private:
  std::atomic<std::size_t> left_;
};

template <class Fut>
class when_all_range_state final
    : public gathering_state<when_all_range_state<Fut>, std::conditional_t<std::is_void_v<future_value_t<Fut>>, void,
                                                                           std::vector<future_value_t<Fut>>>> {
  using T = future_value_t<Fut>;
  using node = input_node<when_all_range_state>;

 public:
  explicit when_all_range_state(std::vector<Fut> inputs)
      : when_all_range_state::gathering_state(inputs.size()),
        inputs_(std::move(inputs)),
        nodes_(new node[inputs_.size()]) {}

  auto start() {
    this->add_ref();
    for (auto& f : inputs_) {
      if (executor_impl* ex = future_access::state(f)->executor()) {
        this->set_executor(ex);
        break;
      }
    }
    auto result = future_access::make(state_ptr<shared_state<typename when_all_range_state::result_type>>(this));
    for (std::size_t i = 0; i < inputs_.size(); ++i) {
      nodes_[i].owner = this;
      nodes_[i].fire = [](continuation* c) noexcept { static_cast<node*>(c)->owner->arrive(); };
      future_access::state(inputs_[i])->on_ready(&nodes_[i]);
    }
    this->arrive();
    return result;
  }

  void finish() noexcept {
    for (auto& f : inputs_) {
      if (auto& s = future_access::state(f); s->has_error()) {
        this->store_error(s->error());
        return;
      }
    }
    if constexpr (!std::is_void_v<T>) {
      try {
        std::vector<T> values;
        values.reserve(inputs_.size());
        for (auto& f : inputs_) values.push_back(take_value(f));
        this->emplace(std::move(values));
      } catch (...) {
        this->store_error(std::current_exception());
      }
    }
    inputs_.clear();
  }

 private:
  std::vector<Fut> inputs_;
  std::unique_ptr<node[]> nodes_;
};

template <class... Futs>
class when_all_tuple_state final
    : public gathering_state<when_all_tuple_state<Futs...>, std::tuple<value_or_monostate<future_value_t<Futs>>...>> {
  using node = input_node<when_all_tuple_state>;

 public:
  explicit when_all_tuple_state(Futs&&... inputs)
      : when_all_tuple_state::gathering_state(sizeof...(Futs)), inputs_(std::move(inputs)...) {}

  auto start() {
    this->add_ref();
    std::apply(
        [&](auto&... f) {
          executor_impl* ex = nullptr;
          ((ex = ex ? ex : future_access::state(f)->executor()), ...);
          this->set_executor(ex);
        },
        inputs_);
    auto result = future_access::make(state_ptr<shared_state<typename when_all_tuple_state::result_type>>(this));
    std::size_t i = 0;
    std::apply(
        [&](auto&... f) {
          ((
               nodes_[i].owner = this,
               nodes_[i].fire = [](continuation* c) noexcept { static_cast<node*>(c)->owner->arrive(); },
               future_access::state(f)->on_ready(&nodes_[i]), ++i),
           ...);
        },
        inputs_);
    this->arrive();
    return result;
  }

  void finish() noexcept {
    bool failed = false;
    std::apply(
        [&](auto&... f) {
          ((failed = failed || (future_access::state(f)->has_error() &&
                                (this->store_error(future_access::state(f)->error()), true))),
           ...);
        },
        inputs_);
    if (failed) return;
    try {
      this->emplace(std::apply([](auto&... f) { return std::make_tuple(take_value(f)...); }, inputs_));
    } catch (...) {
      this->store_error(std::current_exception());
    }
  }

 private:
  std::tuple<Futs...> inputs_;
  node nodes_[sizeof...(Futs)];
};

template <class Fut>
void check_inputs(std::vector<Fut>& inputs, const char* what) {
  for (auto& f : inputs) check_state(future_access::state(f), what);
}

}  // namespace detail

/// A future for the values of all `inputs`, in input order, ready once every input is ready.
/// If any input holds an exception, the result holds the exception of the first such input (by
/// position). Futures are moved from; shared_futures are copied. future<void> inputs give a
/// future<void>. Throws dx::no_state if an input is empty. Thread-safe (the inputs are taken
/// over); does not block.
template <class Fut, class = std::enable_if_t<detail::is_future<Fut>::value || detail::is_shared_future<Fut>::value>>
auto when_all(std::vector<Fut> inputs) {
  detail::check_inputs(inputs, "dx::when_all() given an empty future");
  using state = detail::when_all_range_state<Fut>;
  return (new state(std::move(inputs)))->start();
}

/// when_all over an iterator range of futures (moved from) or shared_futures (copied).
/// Thread-safe (the inputs are taken over); does not block.
template <class It, class = typename std::iterator_traits<It>::iterator_category>
auto when_all(It first, It last) {
  using Fut = typename std::iterator_traits<It>::value_type;
  std::vector<Fut> inputs;
  for (; first != last; ++first) {
    if constexpr (detail::is_future<Fut>::value) {
      inputs.push_back(std::move(*first));
    } else {
      inputs.push_back(*first);
    }
  }
  return when_all(std::move(inputs));
}

/// A future of a tuple of the values of `inputs` (std::monostate for a future<void>), ready once
/// every input is ready; exceptions as for the range form. Thread-safe (the inputs are taken
/// over); does not block.
template <class... Futs,
          class = std::enable_if_t<(sizeof...(Futs) > 0) && ((detail::is_future<std::decay_t<Futs>>::value ||
                                                              detail::is_shared_future<std::decay_t<Futs>>::value) &&
                                                             ...)>>
auto when_all(Futs&&... inputs) {
  (detail::check_state(detail::future_access::state(inputs), "dx::when_all() given an empty future"), ...);
  using state = detail::when_all_tuple_state<std::decay_t<Futs>...>;
  return (new state(std::decay_t<Futs>(std::forward<Futs>(inputs))...))->start();
}

}  // namespace dx
