// dx/chunk.hpp — the part of a split workflow step one task works on.
//
//   double partial_sum(dx::chunk c) {            // a step split as {"range": [0, 1000000]}
//     double s = 0;
//     for (std::int64_t i = c.start; i < c.end; ++i) s += f(i);
//     return s;
//   }
//   DX_REMOTE(partial_sum);
//
// A split step runs its function once per chunk; the function's dx::chunk parameter says which
// part: a half-open index range for a range split, the items for an items or lines split, and
// where this chunk sits among all of them. The type crosses processes with an encoder compiled
// into dx (no <dx/archive.hpp> needed), and reads from JSON as an object with any of the members
// "start", "end", "items" (strings), "index" and "count".
#pragma once

#include <dx/detail/json_view.hpp>
#include <dx/serialize.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace dx {

/// One chunk of a split step. A plain value: safe to read from many threads; nothing blocks.
struct chunk {
  std::int64_t start = 0;  ///< first index of a range split's chunk
  std::int64_t end = 0;    ///< one past its last index
  /// The items of an items split (a string item as it is, any other as its JSON text) or the
  /// lines of a lines split, in order.
  std::vector<std::string> items;
  std::uint64_t index = 0;  ///< this chunk's position among the step's chunks, from 0
  /// How many chunks the step has; 0 in the chunks a "chunk": "auto" split sends first to measure
  /// the step (the rest are sized from how long those took, so their count is not known yet).
  std::uint64_t count = 0;

  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& start& end& items& index& count;
  }
  friend bool operator==(const chunk&, const chunk&) = default;
};

namespace detail {

template <>
struct builtin_codec<chunk> : std::true_type {
  DX_PLUGIN_API static void write(std::string& out, const chunk& v);
  DX_PLUGIN_API static chunk read(std::span<const char> in);
};

template <>
struct json_reader<chunk> {
  static constexpr bool defined = true;
  static constexpr json_type type = json_type::object;
  static bool read(const json_view& v, chunk& out, std::string& why) {
    if (!v.is_object()) return json_wrong_type(v, "an object (a chunk)", why);
    out = chunk{};
    bool ok = true;
    v.for_each_member([&](std::string_view key, const json_view& m) {
      if (!ok) return;
      std::string inner;
      if (key == "start") {
        ok = read_json(m, out.start, inner);
      } else if (key == "end") {
        ok = read_json(m, out.end, inner);
      } else if (key == "items") {
        ok = read_json(m, out.items, inner);
      } else if (key == "index") {
        ok = read_json(m, out.index, inner);
      } else if (key == "count") {
        ok = read_json(m, out.count, inner);
      } else {
        ok = false;
        why = "has an unknown member '" + std::string(key) + "' (a chunk has start, end, items, index, count)";
        return;
      }
      if (!ok) {
        json_in_member(key, inner);
        why = std::move(inner);
      }
    });
    return ok;
  }
};

template <>
struct json_param_traits<chunk> {
  static constexpr json_param value() noexcept { return {json_type::object, false, false, true}; }
};

}  // namespace detail
}  // namespace dx
