// dx/detail/remote_call.hpp — what DX_REMOTE and cluster::submit need to call a function in
// another process: the registry's entry points, decoding and calling from bytes, and the future
// state of a remote result. Each template here is a few lines per function or type; the work
// (registry, archives of the common types, errors) is compiled into dx. Not for users: include
// <dx/remote.hpp>.
#pragma once

#include <dx/chunk.hpp>
#include <dx/detail/json_view.hpp>
#include <dx/detail/map_chunk.hpp>
#include <dx/detail/result_compare.hpp>
#include <dx/detail/result_preview.hpp>
#include <dx/detail/shared_state.hpp>
#include <dx/export.hpp>
#include <dx/serialize.hpp>
#include <dx/stop_token.hpp>

#include <cstddef>
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
#ifndef DX_PLUGIN_API
#define DX_PLUGIN_API __attribute__((visibility("default")))
#endif

namespace dx::detail {

class head_core;

using byte_view = std::span<const char>;

/// Decodes the arguments, calls the function, returns the encoded result. Throws what the
/// function throws, or dx::protocol_error for arguments that do not decode.
using remote_invoker = std::string (*)(std::span<const byte_view> args);

/// A registered function: its stable name and how to call it from bytes. When every parameter
/// reads from JSON (dx/detail/json_view.hpp), also how to encode a parameter given as JSON and
/// what each parameter wants (`json_params`, `arity` entries); otherwise these are null.
struct remote_function {
  std::string name;
  remote_invoker invoke = nullptr;
  void (*address)() = nullptr;
  std::size_t arity = 0;
  json_argument_converter from_json = nullptr;
  const json_param* json_params = nullptr;
  /// How two of its results compare within a tolerance (replicated tasks); null when its result
  /// type holds no numbers.
  result_tolerance tolerance = nullptr;
  /// A short text of one of its results, for the workflow pages; null when its result type has
  /// none (dx/detail/result_preview.hpp).
  result_preview preview = nullptr;
};

/// Adds `fn` to the process-wide registry (static initialisation). Registering the same function
/// twice is harmless; a second, different function under a taken name is reported on stderr and
/// ignored. Returns whether the name now maps to this function. Thread-safe; does not block.
DX_PLUGIN_API bool register_remote(const char* name, remote_invoker invoke, void (*address)(),
                                   std::size_t arity) noexcept;
/// Adds to the registration of `address` under `name` how its parameters convert from JSON
/// (`params` holds one entry per parameter and outlives the process's use of the registry).
/// Returns false when `name` is not registered to `address`. Thread-safe; does not block.
DX_PLUGIN_API bool register_remote_json(const char* name, void (*address)(), json_argument_converter convert,
                                        const json_param* params) noexcept;
/// Adds to the registration of `address` under `name` how its results compare within a
/// tolerance. Returns false when `name` is not registered to `address`. Thread-safe; does not block.
DX_PLUGIN_API bool register_remote_tolerance(const char* name, void (*address)(), result_tolerance compare) noexcept;
/// Adds to the registration of `address` under `name` how its results are previewed. Returns
/// false when `name` is not registered to `address`. Thread-safe; does not block.
DX_PLUGIN_API bool register_remote_preview(const char* name, void (*address)(), result_preview preview) noexcept;
/// The function registered under `name`, or nullptr. Thread-safe; does not block.
DX_PLUGIN_API const remote_function* find_remote(std::string_view name) noexcept;
/// The registration of the function at `address`, or nullptr. Thread-safe; does not block.
DX_PLUGIN_API const remote_function* find_remote_by_address(void (*address)()) noexcept;

/// A function's result and the parameters its callers pass. A leading dx::stop_token is not one
/// of them: dx passes the running task's token there (takes_stop_token).
template <class F>
struct function_signature;
template <class R, class... P>
struct function_signature<R (*)(P...)> {
  using result = R;
  using params = std::tuple<std::decay_t<P>...>;
  static constexpr bool takes_stop_token = false;
};
template <class R, class... P>
struct function_signature<R (*)(stop_token, P...)> {
  using result = R;
  using params = std::tuple<std::decay_t<P>...>;
  static constexpr bool takes_stop_token = true;
};
template <class R, class... P>
struct function_signature<R (*)(const stop_token&, P...)> : function_signature<R (*)(stop_token, P...)> {};
template <class R, class... P>
struct function_signature<R (*)(P...) noexcept> : function_signature<R (*)(P...)> {};

template <class T>
constexpr bool result_serializable_v = std::is_void_v<T> || serializable<T>;

[[noreturn]] DX_PLUGIN_API void throw_undecodable_argument(std::size_t index, const char* what);
/// Throws dx::protocol_error unless a call brought `expected` arguments.
DX_PLUGIN_API void check_argument_count(std::size_t given, std::size_t expected);

/// Argument `i` of a call, decoded; a decoding failure becomes dx::protocol_error naming `i`.
template <class T>
T decode_argument(std::span<const byte_view> args, std::size_t i) {
  try {
    return read_value<T>(args[i]);
  } catch (const std::exception& e) {
    throw_undecodable_argument(i, e.what());
  }
}

template <auto F, bool Token, class R, class... P, std::size_t... I>
std::string invoke_remote_with(std::span<const byte_view> args, std::index_sequence<I...>) {
  check_argument_count(args.size(), sizeof...(P));
  // Braced initialisation decodes the arguments in order, so a failure names the first bad one.
  std::tuple<P...> decoded{decode_argument<P>(args, I)...};
  auto call = [&]() -> R {
    if constexpr (Token) {
      return F(this_task::get_stop_token(), std::move(std::get<I>(decoded))...);
    } else {
      return F(std::move(std::get<I>(decoded))...);
    }
  };
  std::string out;
  if constexpr (std::is_void_v<R>) {
    call();
  } else {
    write_value(out, call());
  }
  return out;
}

template <auto F, bool Token, class R, class... P>
std::string invoke_remote(std::span<const byte_view> args) {
  return invoke_remote_with<F, Token, R, std::decay_t<P>...>(args, std::index_sequence_for<P...>{});
}

/// The invoker of F, whose signature (results, parameters callers pass, stop token) is Sig.
template <auto F, class Sig, class... P>
remote_invoker remote_invoker_of(std::tuple<P...>*) {
  return &invoke_remote<F, Sig::takes_stop_token, typename Sig::result, P...>;
}

template <class P>
constexpr bool check_param() {
  static_assert(serializable<P>,
                "dx: a parameter of this DX_REMOTE function is not serializable. Give the type a "
                "`template <class Archive> void serialize(Archive&, unsigned)` member, include "
                "<dx/eigen.hpp> for Eigen types, or specialise dx::is_serializable for it.");
  return true;
}
template <class Params>
struct check_params;
template <class... P>
struct check_params<std::tuple<P...>> {
  static constexpr bool value = (check_param<P>() && ...);
};

/// Parameter `P` of a registered function read from JSON and encoded as a submit would encode it.
template <class P>
bool convert_json_parameter(const json_view& v, std::string& out, std::string& why) {
  P value{};
  if (!read_json(v, value, why)) return false;
  write_value(out, value);
  return true;
}

/// The converters of the common parameter types (those with a builtin codec), compiled once into
/// dx so that registering a function of them instantiates no JSON reading in the user's file.
template <class T>
struct builtin_json_converter : std::false_type {};
#define DX_DETAIL_BUILTIN_JSON_CONVERTER(...)                                                  \
  template <>                                                                                  \
  struct builtin_json_converter<__VA_ARGS__> : std::true_type {                                \
    DX_PLUGIN_API static bool convert(const json_view& v, std::string& out, std::string& why); \
  };
DX_DETAIL_SCALAR_CODECS(DX_DETAIL_BUILTIN_JSON_CONVERTER)
DX_DETAIL_CONTAINER_CODECS(DX_DETAIL_BUILTIN_JSON_CONVERTER)
#undef DX_DETAIL_BUILTIN_JSON_CONVERTER

using json_parameter_converter = bool (*)(const json_view&, std::string&, std::string&);

template <class P>
constexpr json_parameter_converter json_converter_of() noexcept {
  if constexpr (builtin_json_converter<P>::value) {
    return &builtin_json_converter<P>::convert;
  } else {
    return &convert_json_parameter<P>;
  }
}

template <class... P>
bool convert_json_arguments(std::size_t index, const json_view& v, std::string& out, std::string& why) {
  static constexpr json_parameter_converter converters[sizeof...(P) + 1] = {json_converter_of<P>()..., nullptr};
  if (index >= sizeof...(P)) {
    why = "is not a parameter of this function";
    return false;
  }
  return converters[index](v, out, why);
}

template <class... P>
inline constexpr json_param json_params_of[sizeof...(P) + 1] = {json_param_traits<P>::value()..., json_param{}};

/// Registers how F's parameters convert from JSON, when each of them can.
template <auto F, class... P>
void register_json_of(const char* name, std::tuple<P...>*) noexcept {
  if constexpr ((json_readable<P> && ...)) {
    register_remote_json(name, reinterpret_cast<void (*)()>(F), &convert_json_arguments<P...>, json_params_of<P...>);
  } else {
    (void)name;
  }
}

/// What DX_REMOTE_AS asks whether its argument names exactly one function: the call
/// `one_function(fn)` deduces only from a single function, never from an overload set.
struct function_probe {
  template <class F>
  requires std::is_function_v<F>
  static constexpr F* one_function(F* f) noexcept { return f; }
};
/// False, but only once instantiated, so that DX_REMOTE_AS's static_assert fires on its failing
/// branch alone.
template <class Probe>
inline constexpr bool names_one_function = false;

/// Registers `F` under `name`; what DX_REMOTE_AS expands to. Thread-safe; does not block.
template <auto F>
bool register_remote_function(const char* name) noexcept {
  using sig = function_signature<decltype(F)>;  // DX_REMOTE_AS passes only a function's address
  static_assert(check_params<typename sig::params>::value);
  static_assert(result_serializable_v<typename sig::result>,
                "dx: the result type of this DX_REMOTE function is not serializable. Give the type a "
                "`template <class Archive> void serialize(Archive&, unsigned)` member, include "
                "<dx/eigen.hpp> for Eigen types, or specialise dx::is_serializable for it.");
  const bool registered = register_remote(name, remote_invoker_of<F, sig>(static_cast<typename sig::params*>(nullptr)),
                                          reinterpret_cast<void (*)()>(F), std::tuple_size_v<typename sig::params>);
  if (registered) {
    register_map_chunk_of<F>(F, name);  // what cluster::map sends (dx/detail/map_chunk.hpp)
    register_json_of<F>(name, static_cast<typename sig::params*>(nullptr));  // what workflow steps send
    if constexpr (!std::is_void_v<typename sig::result>) {
      if constexpr (has_tolerance_v<typename sig::result>)
        register_remote_tolerance(name, reinterpret_cast<void (*)()>(F), tolerance_of<typename sig::result>());
      if constexpr (has_preview_v<typename sig::result>)
        register_remote_preview(name, reinterpret_cast<void (*)()>(F), preview_of<typename sig::result>());
    }
  }
  return registered;
}

// ---- the head side: futures of remote results ---------------------------------------------------

/// The non-template face of a remote result's future state, through which the head delivers the
/// bytes or the error.
class DX_API remote_result {
 public:
  virtual ~remote_result();
  /// Decodes and publishes the value; a value that does not decode becomes a protocol_error.
  virtual void deliver(byte_view bytes) noexcept = 0;
  virtual void fail(std::exception_ptr e) noexcept = 0;
  virtual state_base& state() noexcept = 0;

  /// How the task of a result that asked for notes (wants_notes) moves: sent to a worker to run,
  /// or waiting to run again after its attempt threw (a retry).
  struct note {
    enum class kind : std::uint8_t { sent, retrying };
    kind what = kind::sent;
    std::uint32_t attempt = 0;  ///< the head's count of its dispatches, this one included
    std::string worker;
    std::string message;  ///< the exception a retry follows
  };
  /// Called by the head outside its lock, from whichever thread settles it; notes of one task
  /// may reach here in any order relative to its value or error (they travel on other threads).
  virtual void on_note(const note&) noexcept {}

  std::shared_ptr<head_core> head;
  std::uint64_t task_id = 0;
  /// Set before construction is shared: the head sends notes (on_note) and fills produced_by.
  bool wants_notes = false;
  /// With wants_notes, set by the head before the value is delivered: the worker that computed it
  /// and how long the run took there.
  std::string produced_by;
  double run_seconds = 0;

 protected:
  /// Asks the head for the value (it may still be computing, or held by a worker).
  void request_value() noexcept;
  /// Tells the head the value is no longer wanted by this future.
  void released() noexcept;
  /// Asks the head to give the task up, settling the future with `outcome`; returns whether it did.
  bool stop_remote(std::exception_ptr outcome) noexcept;
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
  bool request_stop(std::exception_ptr outcome) noexcept override {
    shared_state<T>::request_stop(nullptr);  // records the request
    return stop_remote(std::move(outcome));
  }

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
  bool by_value = false;  // converted to the parameter's type: never passed as a reference to a result
};

template <class T>
std::string encode_ready_value(state_base& s) {
  std::string out;
  write_value(out, static_cast<shared_state<T>&>(s).value());
  return out;
}

/// The ready value of a future<T> converted to the parameter type P, encoded.
template <class T, class P>
std::string encode_converted_value(state_base& s) {
  std::string out;
  const P converted = std::as_const(static_cast<shared_state<T>&>(s).value());
  write_value(out, converted);
  return out;
}

}  // namespace dx::detail
