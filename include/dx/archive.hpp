// dx/archive.hpp — Boost.Serialization for the types dx does not encode itself.
//
//   #include <dx/archive.hpp>
//   struct point {
//     double x, y;
//     template <class Archive> void serialize(Archive& ar, unsigned) { ar & x & y; }
//   };
//   double norm(point p);
//   DX_REMOTE(norm);   // needs this header: point is encoded by Boost in this file
//
// Include it in a file that registers (DX_REMOTE) or submits a remote function with a parameter
// or result that dx does not encode itself (see dx/serialize.hpp): your own types, tuples,
// optionals, variants, arrays, pairs, and containers other than the common ones. It brings the
// Boost binary archives and the Boost.Serialization functions for std::optional, std::tuple,
// std::variant, std::array and std::monostate. Without it, such a call stops the compiler with a
// message that names this header. Encoding and decoding are thread-safe and do not block.
#pragma once

#include <dx/serialize.hpp>

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/serialization/array.hpp>
#include <boost/serialization/map.hpp>
#include <boost/serialization/split_free.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/unordered_map.hpp>
#include <boost/serialization/utility.hpp>
#include <boost/serialization/vector.hpp>

#include <cstring>
#include <stdexcept>
#include <streambuf>

namespace dx::detail {

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

/// Encodes a T as a Boost binary archive: what write_value and read_value use for a type without a
/// builtin_codec, and what the builtin codecs are compiled from.
template <class T>
struct archive_codec {
  /// Appends the archive of `v` to `out`. Thread-safe; does not block.
  static void write(std::string& out, const T& v) {
    string_sink sink(out);
    boost::archive::binary_oarchive ar(sink, archive_flags);
    ar << v;
  }
  /// Decodes an archive of T; throws boost::archive::archive_exception (or std::exception) on
  /// bytes that are not one. Thread-safe; does not block.
  static T read(std::span<const char> in) {
    span_source source(in);
    boost::archive::binary_iarchive ar(source, archive_flags);
    T v{};
    ar >> v;
    return v;
  }
};

}  // namespace dx::detail

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
