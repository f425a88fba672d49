// dx/detail/remote_submit.hpp — what cluster::submit checks and encodes before it sends a call of a
// registered function to the head: whether the arguments fit the parameters, and each argument's
// bytes (or the future it waits for). Not for users: include <dx/cluster.hpp>.
#pragma once

#include <dx/detail/remote_call.hpp>
#include <dx/executor.hpp>
#include <dx/future.hpp>
#include <dx/serialize.hpp>
#include <dx/task_options.hpp>

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace dx::detail {

template <class T>
inline constexpr bool is_task_option_v = std::is_same_v<T, task_options> || std::is_same_v<T, hint> ||
                                         std::is_same_v<T, resources> || std::is_same_v<T, priority>;

/// A task priority on the local threads, where only its sign counts.
constexpr priority local_priority(int task_priority) noexcept {
  return task_priority > 0 ? priority::high : task_priority < 0 ? priority::low : priority::normal;
}
/// An executor priority as a task priority: high 1 (before queued normal work), low -1.
constexpr int task_priority(priority p) noexcept { return p == priority::high ? 1 : p == priority::low ? -1 : 0; }

template <class P, class A>
constexpr bool remote_arg_ok() {
  if constexpr (is_dependency_v<A>) {
    // A future of another type whose value converts (future<long> for an int parameter) is
    // converted when ready and sent by value.
    using T = typename A::value_type;
    return std::is_same_v<T, P> || (!std::is_void_v<T> && std::is_convertible_v<const T&, P>);
  } else {
    return std::is_convertible_v<A, P>;  // as the local call would take it
  }
}

template <class F, class... A>
constexpr bool remote_call_ok() {
  if constexpr (!std::is_pointer_v<F> || !std::is_function_v<std::remove_pointer_t<F>>) {
    return false;
  } else {
    using sig = function_signature<F>;
    using params = typename sig::params;
    if constexpr (std::tuple_size_v<params> != sizeof...(A) || !result_serializable_v<typename sig::result>) {
      return false;
    } else {
      return []<std::size_t... I>(std::index_sequence<I...>) {
        return ((serializable<std::tuple_element_t<I, params>> &&
                 remote_arg_ok<std::tuple_element_t<I, params>, std::decay_t<A>>()) &&
                ...);
      }
      (std::index_sequence_for<A...>{});
    }
  }
}

template <class P, class A>
void encode_remote_arg(std::vector<remote_arg>& out, A&& a) {
  remote_arg& arg = out.emplace_back();
  using D = std::decay_t<A>;
  if constexpr (is_dependency_v<D>) {
    using T = typename D::value_type;
    if constexpr (is_shared_future<D>::value) {  // the value is copied out when encoded, never moved
      state_base* s = future_access::state(a).get();
      s->add_ref();
      arg.dependency = s;
    } else {
      arg.dependency = future_access::state(a).release();
    }
    if constexpr (std::is_same_v<T, P>) {
      arg.encode = &encode_ready_value<P>;
    } else {
      arg.encode = &encode_converted_value<T, P>;
      arg.by_value = true;
    }
  } else if constexpr (std::is_same_v<D, P>) {
    write_value(arg.bytes, static_cast<const P&>(a));
  } else {
    const P converted(std::forward<A>(a));
    write_value(arg.bytes, converted);
  }
}

}  // namespace dx::detail
