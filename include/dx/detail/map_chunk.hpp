// dx/detail/map_chunk.hpp — the chunk runner of a registered function: what cluster::map sends to a
// worker as one task. DX_REMOTE registers, next to a function of one parameter, a runner that
// takes a std::vector of arguments, calls the function on each, and returns the results in one
// buffer: a header (item count, run time, the items that threw: index, type, message, worker)
// then the std::vector of the results of the items that did not throw, in order. The framing and
// the exception descriptions are compiled into dx. Not for users: include <dx/cluster.hpp>.
#pragma once

#include <dx/serialize.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef DX_PLUGIN_API
#define DX_PLUGIN_API __attribute__((visibility("default")))
#endif

namespace dx::detail {

/// One item of a chunk that threw: its index in the chunk, the exception's type and message, and
/// the worker that ran it.
struct map_item_failure {
  std::uint64_t index = 0;
  std::string type_name;
  std::string message;
  std::string worker;
};

/// What a chunk's result says besides the values.
struct map_chunk_header {
  std::uint64_t items = 0;
  std::uint64_t run_ns = 0;                ///< time the items took on the worker
  std::vector<map_item_failure> failures;  ///< by increasing index
};

using map_chunk_invoker = std::string (*)(std::span<const std::span<const char>> args);

/// The name under which the chunk runner of the function registered as `function` is registered.
/// Thread-safe; does not block.
DX_PLUGIN_API std::string map_chunk_name(std::string_view function);
/// Registers a chunk runner (static initialisation, from DX_REMOTE). Thread-safe; does not block.
DX_PLUGIN_API bool register_map_chunk_runner(const char* function, map_chunk_invoker invoke,
                                             void (*address)()) noexcept;
/// Describes the exception being handled (called in a catch block) as the failure of `index`, on
/// the worker running this thread. Thread-safe; does not block.
DX_PLUGIN_API map_item_failure describe_map_failure(std::uint64_t index) noexcept;
/// Nanoseconds on the steady clock. Thread-safe; does not block.
DX_PLUGIN_API std::uint64_t map_clock_ns() noexcept;
/// Appends the header of a chunk's result. Thread-safe; does not block.
DX_PLUGIN_API void write_map_chunk_header(std::string& out, const map_chunk_header& h);
/// Reads the header at the start of `in`; returns the offset of the values. Throws
/// dx::protocol_error on bytes that are not such a header. Thread-safe; does not block.
DX_PLUGIN_API std::size_t read_map_chunk_header(std::span<const char> in, map_chunk_header& h);
/// Throws dx::protocol_error: the arguments of a chunk do not decode. Thread-safe.
[[noreturn]] DX_PLUGIN_API void throw_undecodable_chunk(const char* what);

/// Whether the chunk runner of a function taking A and returning R can encode its vectors here
/// (always for the common types; for others, with <dx/archive.hpp> included).
template <class A, class R>
constexpr bool map_chunk_encodable() {
  constexpr bool args_ok = builtin_codec<std::vector<A>>::value || archive_codec_defined<std::vector<A>>;
  if constexpr (std::is_void_v<R>) {
    return args_ok;
  } else {
    return args_ok && (builtin_codec<std::vector<R>>::value || archive_codec_defined<std::vector<R>>);
  }
}

/// The chunk runner of F (taking A, returning R): args[0] is a std::vector<A>.
template <auto F, class R, class A>
std::string run_map_chunk(std::span<const std::span<const char>> args) {
  if (args.size() != 1) throw_undecodable_chunk("a chunk takes one argument");
  std::vector<A> in;
  try {
    in = read_value<std::vector<A>>(args[0]);
  } catch (const std::exception& e) {
    throw_undecodable_chunk(e.what());
  }
  map_chunk_header h;
  h.items = in.size();
  std::conditional_t<std::is_void_v<R>, int, std::vector<R>> out{};
  if constexpr (!std::is_void_v<R>) out.reserve(in.size());
  const std::uint64_t started = map_clock_ns();
  for (std::size_t i = 0; i < in.size(); ++i) {
    try {
      if constexpr (std::is_void_v<R>) {
        F(std::move(in[i]));
      } else {
        out.push_back(F(std::move(in[i])));
      }
    } catch (...) {
      h.failures.push_back(describe_map_failure(i));
    }
  }
  h.run_ns = map_clock_ns() - started;
  std::string bytes;
  write_map_chunk_header(bytes, h);
  if constexpr (!std::is_void_v<R>) write_value(bytes, out);
  return bytes;
}

/// Registers F's chunk runner under map_chunk_name(name) when F takes one parameter and its
/// vectors can be encoded here; otherwise cluster::map sends one task per item. Thread-safe; does
/// not block.
template <auto F, class R, class... P>
void register_map_chunk(const char* name) noexcept {
  if constexpr (sizeof...(P) == 1) {
    using A = std::decay_t<std::tuple_element_t<0, std::tuple<P...>>>;
    if constexpr (map_chunk_encodable<A, R>()) {
      register_map_chunk_runner(name, &run_map_chunk<F, R, A>, reinterpret_cast<void (*)()>(&run_map_chunk<F, R, A>));
    }
  }
}

template <auto F, class R, class... P>
void register_map_chunk_of(R (*)(P...), const char* name) noexcept {
  register_map_chunk<F, R, P...>(name);
}
template <auto F, class R, class... P>
void register_map_chunk_of(R (*)(P...) noexcept, const char* name) noexcept {
  register_map_chunk<F, R, P...>(name);
}

}  // namespace dx::detail
