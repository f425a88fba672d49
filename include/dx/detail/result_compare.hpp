// dx/detail/result_compare.hpp — how the head compares two encoded results of a replicated
// task (dx/replicate.hpp): the comparators registered by name, and the tolerance comparison that
// a registered function's result type gets when it holds numbers.
#pragma once

#include <dx/serialize.hpp>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <span>
#include <string_view>
#include <type_traits>

namespace dx {
namespace detail {

/// Compares two encoded results; true when they agree. Throws when they do not decode.
using result_comparator = bool (*)(std::span<const char> a, std::span<const char> b);
/// Compares two encoded results within a tolerance; null for a result type without numbers.
using result_tolerance = bool (*)(std::span<const char> a, std::span<const char> b, double rel, double abs);

/// Adds a comparator under `name` (DX_COMPARATOR). Thread-safe; does not block.
DX_PLUGIN_API bool register_comparator(const char* name, result_comparator compare) noexcept;
/// The comparator registered under `name`, or null. Thread-safe; does not block.
DX_PLUGIN_API result_comparator find_comparator(std::string_view name) noexcept;

/// Numbers: arithmetic types but bool and the character types (a string is text, not numbers).
template <class T>
constexpr bool is_number_v =
    std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char> &&
    !std::is_same_v<T, signed char> && !std::is_same_v<T, unsigned char> && !std::is_same_v<T, wchar_t> &&
    !std::is_same_v<T, char8_t> && !std::is_same_v<T, char16_t> && !std::is_same_v<T, char32_t>;

template <class T>
concept number_range = requires(const T& r) {
  std::begin(r);
  std::end(r);
  std::size(r);
}
&&is_number_v<std::decay_t<decltype(*std::begin(std::declval<const T&>()))>>;

inline bool within(double a, double b, double rel, double abs) noexcept {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (a == b) return true;
  return std::fabs(a - b) <= std::max(abs, rel * std::max(std::fabs(a), std::fabs(b)));
}

/// Whether results of type T compare within a tolerance (a constant that does not compare function
/// pointers, which sanitizer builds cannot do at compile time).
template <class T>
inline constexpr bool has_tolerance_v = is_number_v<T> || (number_range<T> && std::is_default_constructible_v<T>);

/// The tolerance comparison of results of type T: numbers and ranges of numbers; null otherwise.
template <class T>
constexpr result_tolerance tolerance_of() {
  if constexpr (is_number_v<T>) {
    return [](std::span<const char> a, std::span<const char> b, double rel, double abs) {
      return within(static_cast<double>(read_value<T>(a)), static_cast<double>(read_value<T>(b)), rel, abs);
    };
  } else if constexpr (number_range<T> && std::is_default_constructible_v<T>) {
    return [](std::span<const char> a, std::span<const char> b, double rel, double abs) {
      const T x = read_value<T>(a), y = read_value<T>(b);
      if (std::size(x) != std::size(y)) return false;
      auto i = std::begin(x);
      for (auto j = std::begin(y); i != std::end(x); ++i, ++j)
        if (!within(static_cast<double>(*i), static_cast<double>(*j), rel, abs)) return false;
      return true;
    };
  } else {
    return nullptr;
  }
}

}  // namespace detail

}  // namespace dx
