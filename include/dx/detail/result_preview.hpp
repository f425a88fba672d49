// dx/detail/result_preview.hpp — a short text of an encoded result, for people: what the head's
// workflow pages show of a step's result (a number, the start of a string, the first items of a
// range of numbers). A registered function whose result type is one of these gets a preview at
// registration; for any other type the page shows the result's size.
#pragma once

#include <dx/detail/result_compare.hpp>
#include <dx/serialize.hpp>

#include <cstdio>
#include <iterator>
#include <span>
#include <string>
#include <type_traits>

namespace dx::detail {

/// The preview of an encoded result, at most about `limit` characters. Throws when the bytes do
/// not decode.
using result_preview = std::string (*)(std::span<const char> bytes, std::size_t limit);

template <class T>
std::string preview_number(T v) {
  char buf[40];
  if constexpr (std::is_floating_point_v<T>) {
    std::snprintf(buf, sizeof buf, "%.17g", static_cast<double>(v));
  } else if constexpr (std::is_signed_v<T>) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  } else {
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
  }
  return buf;
}

/// `text` cut to `limit` bytes (without splitting a UTF-8 sequence), with "…" when cut.
inline std::string preview_text(const std::string& text, std::size_t limit) {
  if (text.size() <= limit) return text;
  std::size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end) + "\xE2\x80\xA6";
}

/// Whether results of type T have a preview (a constant that does not compare function pointers,
/// which sanitizer builds cannot do at compile time).
template <class T>
inline constexpr bool has_preview_v = std::is_same_v<T, bool> || is_number_v<T> || std::is_same_v<T, std::string> ||
                                      (number_range<T> && std::is_default_constructible_v<T>);

/// The preview of results of type T: numbers, bool, strings and ranges of numbers; null otherwise.
template <class T>
constexpr result_preview preview_of() {
  if constexpr (std::is_same_v<T, bool>) {
    return [](std::span<const char> b, std::size_t) { return std::string(read_value<bool>(b) ? "true" : "false"); };
  } else if constexpr (is_number_v<T>) {
    return [](std::span<const char> b, std::size_t) { return preview_number(read_value<T>(b)); };
  } else if constexpr (std::is_same_v<T, std::string>) {
    return [](std::span<const char> b, std::size_t limit) { return preview_text(read_value<std::string>(b), limit); };
  } else if constexpr (number_range<T> && std::is_default_constructible_v<T>) {
    return [](std::span<const char> b, std::size_t limit) {
      const T r = read_value<T>(b);
      std::string out = "[";
      std::size_t shown = 0;
      for (auto it = std::begin(r); it != std::end(r); ++it, ++shown) {
        std::string item = preview_number(*it);
        if (out.size() + item.size() + 2 > limit) break;
        if (shown) out += ", ";
        out += item;
      }
      const auto n = static_cast<std::size_t>(std::size(r));
      if (shown < n) out += (shown ? ", \xE2\x80\xA6" : "\xE2\x80\xA6");
      out += "] (" + std::to_string(n) + (n == 1 ? " item)" : " items)");
      return out;
    };
  } else {
    return nullptr;
  }
}

}  // namespace dx::detail
