// dx/serialize.hpp — which values may cross process boundaries, and how they are encoded.
//
//   struct point {
//     double x, y;
//     template <class Archive> void serialize(Archive& ar, unsigned) { ar & x & y; }
//   };
//   static_assert(dx::serializable<std::map<std::string, std::vector<point>>>);
//
// Arguments and results of remote functions must be `dx::serializable`: arithmetic types and
// enums no wider than int (Boost stores enums as int); std::string; std::vector, std::map,
// std::unordered_map, std::optional, std::pair, std::tuple, std::variant and std::array of
// serializable types; any type with a `serialize(Archive&, unsigned)` member; Eigen dense
// matrices and arrays after `#include <dx/eigen.hpp>`. A type serialized by free
// Boost.Serialization functions is opted in by specialising `dx::is_serializable<T>` as
// std::true_type.
//
// Values are Boost.Serialization binary archives, but this header does not include Boost. The
// common types (arithmetic types, enums, std::string, dx::table, dx::column, and vectors and
// string-keyed maps of these: see DX_DETAIL_BUILTIN_CODECS below) are encoded by functions
// compiled once into dx. Any other type (your own struct, a tuple, an optional, a pair, ...) is
// encoded in your code by Boost: include <dx/archive.hpp> in the file that registers (DX_REMOTE)
// or submits it; without it, the compiler stops with a message that names <dx/archive.hpp>.
// Encoding and decoding share no state: they are thread-safe and do not block.
#pragma once

#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

// Entry points that stay visible even in a static dx, so that a plugin loaded by dx-worker (built
// against dx::plugin, without its own copy of dx) calls the worker's copy.
#ifndef DX_PLUGIN_API
#define DX_PLUGIN_API __attribute__((visibility("default")))
#endif

namespace boost::archive {
class binary_oarchive;
}  // namespace boost::archive

namespace dx {

class table;
class column;

/// Opt-in point for types serialized by free functions; the default detects everything listed
/// in the header comment.
template <class T>
struct is_serializable;

namespace detail {

template <class T>
concept has_serialize_member = requires(T& t, boost::archive::binary_oarchive& ar) {
  t.serialize(ar, 0u);
};

/// Boost.Serialization saves and loads every enum through an int: a wider one would be truncated.
template <class T>
constexpr bool enum_fits_int() {
  if constexpr (std::is_enum_v<T>) {
    return sizeof(std::underlying_type_t<T>) <= sizeof(int);
  } else {
    return false;
  }
}

template <class T>
struct serializable_impl
    : std::bool_constant<std::is_arithmetic_v<T> || enum_fits_int<T>() || has_serialize_member<T>> {};
template <>
struct serializable_impl<std::string> : std::true_type {};
template <class T, class A>
struct serializable_impl<std::vector<T, A>> : is_serializable<T> {};
template <class K, class V, class C, class A>
struct serializable_impl<std::map<K, V, C, A>> : std::conjunction<is_serializable<K>, is_serializable<V>> {};
template <class K, class V, class H, class E, class A>
struct serializable_impl<std::unordered_map<K, V, H, E, A>> : std::conjunction<is_serializable<K>, is_serializable<V>> {
};
template <class T>
struct serializable_impl<std::optional<T>> : is_serializable<T> {};
template <class A, class B>
struct serializable_impl<std::pair<A, B>> : std::conjunction<is_serializable<A>, is_serializable<B>> {};
template <class... T>
struct serializable_impl<std::tuple<T...>> : std::conjunction<is_serializable<T>...> {};
template <class... T>
struct serializable_impl<std::variant<T...>> : std::conjunction<is_serializable<T>...> {};
template <class T, std::size_t N>
struct serializable_impl<std::array<T, N>> : is_serializable<T> {};
template <>
struct serializable_impl<std::monostate> : std::true_type {};
template <>
struct serializable_impl<table> : std::true_type {};
template <>
struct serializable_impl<column> : std::true_type {};

}  // namespace detail

template <class T>
struct is_serializable : detail::serializable_impl<std::remove_cv_t<T>> {};

/// True when values of T can be arguments or results of remote functions.
template <class T>
concept serializable = is_serializable<std::remove_cvref_t<T>>::value;

namespace detail {

/// The encoders compiled once into dx (src/wire/values.cpp, src/dataframe/table_codec.cpp), so
/// that a remote function of a common type instantiates no Boost.Serialization code in the user's
/// file. `builtin_codec<T>::value` says whether T has one; its bytes are those of a Boost binary
/// archive of T, as for any other type. `write` appends to `out`; `read` throws
/// boost::archive::archive_exception (or std::exception) on bytes that are not such an archive.
/// Both are thread-safe and do not block.
template <class T>
struct builtin_codec : std::false_type {};

#define DX_DETAIL_BUILTIN_CODEC(...)                                         \
  template <>                                                                \
  struct builtin_codec<__VA_ARGS__> : std::true_type {                       \
    DX_PLUGIN_API static void write(std::string& out, const __VA_ARGS__& v); \
    DX_PLUGIN_API static __VA_ARGS__ read(std::span<const char> in);         \
  };

// The scalar types and std::string, whose codecs need no container declared.
// clang-format off
#define DX_DETAIL_SCALAR_CODECS(X)                                                        \
  X(bool) X(char) X(signed char) X(unsigned char) X(short) X(unsigned short) X(int)       \
  X(unsigned) X(long) X(unsigned long) X(long long) X(unsigned long long) X(float)        \
  X(double) X(long double) X(std::string)
// clang-format on

// The containers of them that remote functions commonly take.
#define DX_DETAIL_VECTOR(T) std::vector<T>
#define DX_DETAIL_MAP(V) std::map<std::string, V>
#define DX_DETAIL_UNORDERED_MAP(V) std::unordered_map<std::string, V>
// clang-format off
#define DX_DETAIL_CONTAINER_CODECS(X)                                                             \
  X(DX_DETAIL_VECTOR(bool)) X(DX_DETAIL_VECTOR(char)) X(DX_DETAIL_VECTOR(unsigned char))          \
  X(DX_DETAIL_VECTOR(int)) X(DX_DETAIL_VECTOR(unsigned)) X(DX_DETAIL_VECTOR(long))                \
  X(DX_DETAIL_VECTOR(unsigned long)) X(DX_DETAIL_VECTOR(long long))                               \
  X(DX_DETAIL_VECTOR(unsigned long long)) X(DX_DETAIL_VECTOR(float)) X(DX_DETAIL_VECTOR(double))  \
  X(DX_DETAIL_VECTOR(std::string)) X(DX_DETAIL_VECTOR(DX_DETAIL_VECTOR(double)))                  \
  X(DX_DETAIL_VECTOR(DX_DETAIL_VECTOR(int))) X(DX_DETAIL_MAP(int)) X(DX_DETAIL_MAP(long))         \
  X(DX_DETAIL_MAP(unsigned long)) X(DX_DETAIL_MAP(double)) X(DX_DETAIL_MAP(std::string))          \
  X(DX_DETAIL_UNORDERED_MAP(int)) X(DX_DETAIL_UNORDERED_MAP(double))
// clang-format on

#define DX_DETAIL_BUILTIN_CODECS(X) DX_DETAIL_SCALAR_CODECS(X) DX_DETAIL_CONTAINER_CODECS(X) X(table) X(column)

DX_DETAIL_BUILTIN_CODECS(DX_DETAIL_BUILTIN_CODEC)
#undef DX_DETAIL_BUILTIN_CODEC

/// How any other type is encoded: by Boost.Serialization in the user's code. Declared here,
/// defined by <dx/archive.hpp>.
template <class T>
struct archive_codec;

template <class T>
concept archive_codec_defined = requires {
  sizeof(archive_codec<T>);
};

/// Appends the encoding of `v` to `out`. Thread-safe; does not block.
template <class T>
void write_value(std::string& out, const T& v) {
  if constexpr (builtin_codec<T>::value) {
    builtin_codec<T>::write(out, v);
  } else if constexpr (enum_fits_int<T>()) {
    builtin_codec<int>::write(out, static_cast<int>(v));  // what Boost does with an enum
  } else {
    static_assert(archive_codec_defined<T>,
                  "dx: this type is encoded with Boost.Serialization in your code: #include "
                  "<dx/archive.hpp> in this file (dx compiles in the encoders of the common types only)");
    archive_codec<T>::write(out, v);
  }
}

/// Decodes a T written by write_value; throws boost::archive::archive_exception (or
/// std::exception) on bytes that are not such an encoding. Thread-safe; does not block.
template <class T>
T read_value(std::span<const char> in) {
  if constexpr (builtin_codec<T>::value) {
    return builtin_codec<T>::read(in);
  } else if constexpr (enum_fits_int<T>()) {
    return static_cast<T>(builtin_codec<int>::read(in));
  } else {
    static_assert(std::is_default_constructible_v<T>, "dx: a serialized type must be default-constructible");
    static_assert(archive_codec_defined<T>,
                  "dx: this type is decoded with Boost.Serialization in your code: #include "
                  "<dx/archive.hpp> in this file (dx compiles in the decoders of the common types only)");
    return archive_codec<T>::read(in);
  }
}

}  // namespace detail
}  // namespace dx
