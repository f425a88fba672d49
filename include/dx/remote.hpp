// dx/remote.hpp — functions that may run in other processes.
//
//   double simulate(int seed, int steps);
//   DX_REMOTE(simulate);                       // registered as "simulate"
//   DX_REMOTE_AS("mc.simulate", other_fn);      // registered under a chosen, stable name
//
//   dx::cluster cl{dx::options{}.local_processes(2)};
//   dx::future<double> r = cl.submit(simulate, 7, 10'000);   // may run on a peer
//
// A registered function is found by name in every process that links the same registration
// (the application binary started as a worker, or a plugin loaded by dx-worker). Its parameter
// and return types must be dx::serializable; a type that is not fails to compile at DX_REMOTE.
// Lambdas and unregistered callables passed to cl.submit run on the local threads.
#pragma once

#include <dx/detail/shared_state.hpp>
#include <dx/error.hpp>
#include <dx/export.hpp>
#include <dx/serialize.hpp>

#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

// Registration entry points stay visible even in a static dx, so that a plugin loaded by
// dx-worker (built against dx::plugin, without its own copy of dx) registers into the worker.
#define DX_PLUGIN_API __attribute__((visibility("default")))

namespace dx::detail {

using byte_view = std::span<const char>;

/// Decodes the arguments, calls the function, returns the encoded result. Throws what the
/// function throws, or dx::protocol_error for arguments that do not decode.
using remote_invoker = std::string (*)(std::span<const byte_view> args);

/// A registered function: its stable name and how to call it from bytes.
struct remote_function {
  std::string name;
  remote_invoker invoke = nullptr;
  void (*address)() = nullptr;
  std::size_t arity = 0;
};

/// Adds `fn` to the process-wide registry (static initialisation). Registering the same function
/// twice is harmless; a second, different function under a taken name is reported on stderr and
/// ignored. Returns whether the name now maps to this function.
DX_PLUGIN_API bool register_remote(const char* name, remote_invoker invoke, void (*address)(),
                                   std::size_t arity) noexcept;
/// The function registered under `name`, or nullptr.
DX_PLUGIN_API const remote_function* find_remote(std::string_view name) noexcept;
/// The registration of the function at `address`, or nullptr.
DX_PLUGIN_API const remote_function* find_remote_by_address(void (*address)()) noexcept;

template <class F>
struct function_signature;
template <class R, class... P>
struct function_signature<R (*)(P...)> {
  using result = R;
  using params = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P>
struct function_signature<R (*)(P...) noexcept> : function_signature<R (*)(P...)> {};

template <class T>
constexpr bool result_serializable_v = std::is_void_v<T> || serializable<T>;

[[noreturn]] DX_PLUGIN_API void throw_undecodable_argument(std::size_t index, const char* what);

template <auto F>
std::string invoke_remote(std::span<const byte_view> args) {
  using sig = function_signature<decltype(F)>;
  using params = typename sig::params;
  constexpr std::size_t arity = std::tuple_size_v<params>;
  if (args.size() != arity) throw_undecodable_argument(args.size(), "wrong number of arguments");
  auto decoded = [&]<std::size_t... I>(std::index_sequence<I...>) {
    [[maybe_unused]] auto decode_one = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
      try {
        return read_value<std::tuple_element_t<J, params>>(args[J]);
      } catch (const std::exception& e) {
        throw_undecodable_argument(J, e.what());
      }
    };
    return params{decode_one(std::integral_constant<std::size_t, I>{})...};
  }
  (std::make_index_sequence<arity>{});
  std::string out;
  if constexpr (std::is_void_v<typename sig::result>) {
    std::apply([](auto&... a) { F(std::move(a)...); }, decoded);
  } else {
    write_value(out, std::apply([](auto&... a) { return F(std::move(a)...); }, decoded));
  }
  return out;
}

template <std::size_t I, class Params>
constexpr bool check_params() {
  if constexpr (I == std::tuple_size_v<Params>) {
    return true;
  } else {
    static_assert(serializable<std::tuple_element_t<I, Params>>,
                  "dx: a parameter of this DX_REMOTE function is not serializable. Give the type a "
                  "`template <class Archive> void serialize(Archive&, unsigned)` member, include "
                  "<dx/eigen.hpp> for Eigen types, or specialise dx::is_serializable for it.");
    return check_params<I + 1, Params>();
  }
}

template <auto F>
bool register_remote_function(const char* name) noexcept {
  using fn_type = decltype(F);
  static_assert(std::is_pointer_v<fn_type> && std::is_function_v<std::remove_pointer_t<fn_type>>,
                "dx: DX_REMOTE takes a function (not a lambda or member function); cast an overloaded "
                "function to the wanted signature");
  using sig = function_signature<fn_type>;
  static_assert(check_params<0, typename sig::params>());
  static_assert(result_serializable_v<typename sig::result>,
                "dx: the result type of this DX_REMOTE function is not serializable. Give the type a "
                "`template <class Archive> void serialize(Archive&, unsigned)` member, include "
                "<dx/eigen.hpp> for Eigen types, or specialise dx::is_serializable for it.");
  return register_remote(name, &invoke_remote<F>, reinterpret_cast<void (*)()>(F),
                         std::tuple_size_v<typename sig::params>);
}

// ---- the head side: futures of remote results ---------------------------------------------------

class head_core;

/// The non-template face of a remote result's future state, through which the head delivers the
/// bytes or the error.
class DX_API remote_result {
 public:
  virtual ~remote_result();
  /// Decodes and publishes the value; a value that does not decode becomes a protocol_error.
  virtual void deliver(byte_view bytes) noexcept = 0;
  virtual void fail(std::exception_ptr e) noexcept = 0;
  virtual state_base& state() noexcept = 0;

  std::shared_ptr<head_core> head;
  std::uint64_t task_id = 0;

 protected:
  /// Asks the head for the value (it may still be computing, or held by a worker).
  void request_value() noexcept;
  /// Tells the head the value is no longer wanted by this future.
  void released() noexcept;
};

DX_API std::exception_ptr undecodable_result(const char* what);

template <class T>
class remote_state final : public shared_state<T>, public remote_result {
 public:
  remote_state() { this->lazy_ = true; }
  ~remote_state() override { released(); }

  void deliver(byte_view bytes) noexcept override {
    if constexpr (std::is_void_v<T>) {
      (void)bytes;
      this->publish();
    } else {
      try {
        this->emplace(read_value<T>(bytes));
      } catch (const std::exception& e) {
        this->set_error(undecodable_result(e.what()));
        return;
      }
      this->publish();
    }
  }
  void fail(std::exception_ptr e) noexcept override { this->set_error(std::move(e)); }
  state_base& state() noexcept override { return *this; }

 protected:
  void demand() noexcept override { request_value(); }
};

/// One argument of a remote call as the head receives it: bytes known at submit time, or a
/// future whose value becomes the argument (a remote result by reference, a local one encoded
/// when ready).
struct remote_arg {
  std::string bytes;
  state_base* dependency = nullptr;  // one reference owned
  std::string (*encode)(state_base&) = nullptr;
  bool shared = false;  // a shared_future: copy the value out, never move
};

template <class T, bool Shared>
std::string encode_ready_value(state_base& s) {
  std::string out;
  write_value(out, static_cast<shared_state<T>&>(s).value());
  return out;
}

}  // namespace dx::detail

#define DX_DETAIL_CONCAT2(a, b) a##b
#define DX_DETAIL_CONCAT(a, b) DX_DETAIL_CONCAT2(a, b)

/// Registers `fn` under the stable name `name` so it may run in other processes.
#define DX_REMOTE_AS(name, fn)                                                           \
  [[maybe_unused]] static const bool DX_DETAIL_CONCAT(dx_remote_registered_, __LINE__) = \
      ::dx::detail::register_remote_function<fn>(name)

/// Registers `fn` under its spelled name (`DX_REMOTE(ns::f)` registers "ns::f").
#define DX_REMOTE(fn) DX_REMOTE_AS(#fn, fn)
