// dx/serialize.hpp — how values cross process boundaries: Boost.Serialization binary archives.
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
#pragma once

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/serialization/array.hpp>
#include <boost/serialization/map.hpp>
#include <boost/serialization/split_free.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/unordered_map.hpp>
#include <boost/serialization/utility.hpp>
#include <boost/serialization/vector.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <streambuf>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace dx {

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

}  // namespace detail

template <class T>
struct is_serializable : detail::serializable_impl<std::remove_cv_t<T>> {};

/// True when values of T can be arguments or results of remote functions.
template <class T>
concept serializable = is_serializable<std::remove_cvref_t<T>>::value;

namespace detail {

/// Archive flags used on the wire: no archive header (dx's frame has its own version) and no
/// locale handling.
inline constexpr unsigned archive_flags = boost::archive::no_header | boost::archive::no_codecvt;

/// A streambuf appending to a std::string, so archives write straight into the frame body.
class string_sink final : public std::streambuf {
 public:
  explicit string_sink(std::string& out) noexcept : out_(out) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    out_.append(s, static_cast<std::size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) out_.push_back(traits_type::to_char_type(c));
    return traits_type::not_eof(c);
  }

 private:
  std::string& out_;
};

/// A streambuf reading a byte range without copying it.
class span_source final : public std::streambuf {
 public:
  explicit span_source(std::span<const char> in) noexcept {
    char* p = const_cast<char*>(in.data());  // read-only: the get area is never written
    setg(p, p, p + in.size());
  }
};

/// Appends the archive of `v` to `out`.
template <class T>
void write_value(std::string& out, const T& v) {
  string_sink sink(out);
  boost::archive::binary_oarchive ar(sink, archive_flags);
  ar << v;
}

/// Decodes a T written by write_value; throws boost::archive::archive_exception (or
/// std::exception) on bytes that are not such an archive.
template <class T>
T read_value(std::span<const char> in) {
  span_source source(in);
  boost::archive::binary_iarchive ar(source, archive_flags);
  if constexpr (std::is_default_constructible_v<T>) {
    T v{};
    ar >> v;
    return v;
  } else {
    static_assert(std::is_default_constructible_v<T>, "dx: a serialized type must be default-constructible");
  }
}

}  // namespace detail
}  // namespace dx

// Boost 1.74 knows boost::optional, boost::variant and boost::tuple only; these cover the std ones.
namespace boost::serialization {

// The engaged flag is a byte, not a bool: Boost loads a bool by copying a byte into it, so a
// damaged archive would make an invalid bool (a Boost assertion failure, undefined behaviour).
template <class Archive, class T>
void save(Archive& ar, const std::optional<T>& v, unsigned) {
  const std::uint8_t engaged = v.has_value() ? 1 : 0;
  ar << engaged;
  if (engaged) ar << *v;
}
template <class Archive, class T>
void load(Archive& ar, std::optional<T>& v, unsigned) {
  std::uint8_t engaged = 0;
  ar >> engaged;
  if (engaged > 1) throw std::runtime_error("dx: invalid std::optional flag in archive");
  if (engaged == 0) {
    v.reset();
    return;
  }
  T value{};
  ar >> value;
  v = std::move(value);
}
template <class Archive, class T>
void serialize(Archive& ar, std::optional<T>& v, unsigned version) {
  split_free(ar, v, version);
}

template <class Archive, class... T>
void serialize(Archive& ar, std::tuple<T...>& v, unsigned) {
  std::apply([&](auto&... e) { ((ar & e), ...); }, v);
}

// Boost's std::array overload would form a zero-length C array.
template <class Archive, class T>
void serialize(Archive&, std::array<T, 0>&, unsigned) {}

template <class Archive>
void serialize(Archive&, std::monostate&, unsigned) {}

template <class Archive, class... T>
void save(Archive& ar, const std::variant<T...>& v, unsigned) {
  const std::uint32_t index = static_cast<std::uint32_t>(v.index());
  ar << index;
  std::visit([&](const auto& e) { ar << e; }, v);
}
template <class Archive, class... T>
void load(Archive& ar, std::variant<T...>& v, unsigned) {
  std::uint32_t index = 0;
  ar >> index;
  if (index >= sizeof...(T)) throw std::runtime_error("dx: variant index out of range in archive");
  constexpr auto loaders = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<void (*)(Archive&, std::variant<T...>&), sizeof...(T)>{[](Archive& a, std::variant<T...>& out) {
      std::variant_alternative_t<I, std::variant<T...>> value{};
      a >> value;
      out.template emplace<I>(std::move(value));
    }...};
  }
  (std::index_sequence_for<T...>{});
  loaders[index](ar, v);
}
template <class Archive, class... T>
void serialize(Archive& ar, std::variant<T...>& v, unsigned version) {
  split_free(ar, v, version);
}

}  // namespace boost::serialization
