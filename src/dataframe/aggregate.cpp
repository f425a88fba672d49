// Grouped aggregation, distinct rows and describe().
//
// A partial state is an ordinary table with one row per group: the key columns first (so that
// hash_split can shuffle states by key), then the state columns of each aggregation i in order:
//
//   sum        "#i.sum"    int64 (int64/bool input) or float64
//   count      "#i.count"  int64
//   mean       "#i.sum" (as for sum), "#i.count"
//   std        "#i.count" int64, "#i.mean" float64, "#i.m2" float64 (sum of squared deviations)
//   min, max,  "#i.value"  of the input type; null when the group had no value
//   first
//   nunique    "#i.set"    string: the group's distinct values, sorted and encoded (see nunique)
//
// Combining states is itself an aggregation over the concatenated states: sums add, min/max/first
// apply again (first in partition order), std merges with Chan's formula and sets are united.
//
// Every kernel maps input rows to accumulator "slots" through one of three slot functions chosen
// once per table (all rows in one group; a small-range int64 key used directly as an offset; a
// group id per row from a hash table), and loops are templated on it so that the per-row work is
// an index computation and an add, with no calls or type switches.
#include "dataframe/kernels.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dx::detail::df {
namespace {

std::string output_name(const aggregation& a) {
  return a.as.empty() ? a.column + "_" + std::string(agg_name(a.fn)) : a.as;
}

std::string state_name(std::size_t index, std::string_view part) {
  std::string name = "#";
  name += std::to_string(index);
  name += '.';
  name += part;
  return name;
}

/// The state columns an aggregation keeps, by name suffix.
std::vector<std::string_view> state_parts(agg fn) {
  switch (fn) {
    case agg::sum:
      return {"sum"};
    case agg::count:
      return {"count"};
    case agg::mean:
      return {"sum", "count"};
    case agg::std:
      return {"count", "mean", "m2"};
    case agg::min:
    case agg::max:
    case agg::first:
      return {"value"};
    case agg::nunique:
      return {"set"};
  }
  return {};
}

/// The output type of `fn` over a column of type `t`; dx::dataframe_error when `fn` cannot apply.
column_type output_type(const aggregation& a, column_type t) {
  const bool numeric = t == column_type::int64 || t == column_type::float64 || t == column_type::boolean;
  auto refuse = [&] {
    dx::detail::throw_error(dx::detail::error_kind::dataframe, "agg: cannot take the " + std::string(agg_name(a.fn)) +
                                                                   " of " + std::string(type_name(t)) + " column '" +
                                                                   a.column + "'");
  };
  switch (a.fn) {
    case agg::sum:
      if (!numeric) refuse();
      return t == column_type::float64 ? column_type::float64 : column_type::int64;
    case agg::mean:
    case agg::std:
      if (!numeric) refuse();
      return column_type::float64;
    case agg::count:
    case agg::nunique:
      return column_type::int64;
    case agg::min:
    case agg::max:
    case agg::first:
      return t;
  }
  refuse();
  return t;
}

// ---------------------------------------------------------------------------------------------
// Reading columns inside loops

/// Row validity without column::is_null's indirections; `all()` lets loops skip the test.
class validity_view {
 public:
  explicit validity_view(const column& c) {
    if (c.has_nulls()) {
      words_ = c.storage().validity.data();
      offset_ = c.offset();
    }
  }
  bool all() const noexcept { return words_ == nullptr; }
  bool operator()(std::size_t row) const noexcept {
    if (words_ == nullptr) return true;
    const std::size_t bit = offset_ + row;
    return ((words_[bit >> 6] >> (bit & 63)) & 1u) != 0;
  }

 private:
  const std::uint64_t* words_ = nullptr;
  std::size_t offset_ = 0;
};

class string_reader {
 public:
  explicit string_reader(const column& c)
      : offsets_(c.storage().offsets.data() + c.offset()), chars_(c.storage().chars.data()) {}
  std::string_view operator()(std::size_t row) const noexcept {
    return {chars_ + offsets_[row], static_cast<std::size_t>(offsets_[row + 1] - offsets_[row])};
  }

 private:
  const std::uint64_t* offsets_;
  const char* chars_;
};

/// Calls f(pointer) with the column's contiguous values: int64_t (int64, timestamp), double or
/// uint8_t (bool).
template <class F>
decltype(auto) with_numeric_data(const column& c, F&& f) {
  switch (c.type()) {
    case column_type::int64:
    case column_type::timestamp:
      return f(c.int64_data());
    case column_type::float64:
      return f(c.float64_data());
    case column_type::boolean:
      return f(c.bool_data());
    case column_type::string:
      break;
  }
  dx::detail::throw_error(dx::detail::error_kind::dataframe, "agg: internal error: numeric kernel on a string column");
}

// ---------------------------------------------------------------------------------------------
// Grouping: rows to accumulator slots

struct single_slot {
  std::uint32_t operator()(std::size_t) const noexcept { return 0; }
};
struct offset_slots {
  const std::int64_t* keys;
  std::uint64_t base;
  std::uint32_t operator()(std::size_t row) const noexcept {
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(keys[row]) - base);
  }
};
struct mapped_slots {
  const std::uint32_t* ids;
  std::uint32_t operator()(std::size_t row) const noexcept { return ids[row]; }
};

constexpr std::uint32_t unassigned = std::numeric_limits<std::uint32_t>::max();

struct grouping {
  enum class mode : std::uint8_t { single, offset, mapped };
  mode how = mode::single;
  std::size_t rows = 0;
  /// Accumulator slots; rows with a null key go to a slot that is no group.
  std::size_t slots = 1;
  const std::int64_t* keys = nullptr;  // mode::offset
  std::uint64_t base = 0;              // mode::offset
  std::vector<std::uint32_t> ids;      // mode::mapped
  /// The slot of each output group, in output order.
  std::vector<std::uint32_t> groups;
  /// The keys of the output groups.
  std::vector<column> key_columns;

  template <class F>
  void visit(F&& f) const {
    switch (how) {
      case mode::single:
        f(single_slot{});
        return;
      case mode::offset:
        f(offset_slots{keys, base});
        return;
      case mode::mapped:
        f(mapped_slots{ids.data()});
        return;
    }
  }
};

column make_int_keys(column_type type, std::vector<std::int64_t> values) {
  return type == column_type::timestamp ? make_timestamp(std::move(values)) : make_int64(std::move(values));
}

/// Groups of a single int64/timestamp key whose values span a small range: the key minus the
/// smallest key is the slot, and slots in ascending order are the groups in key order.
bool group_dense_int64(grouping& g, const column& key) {
  const std::size_t n = key.size();
  const std::int64_t* v = key.int64_data();
  const validity_view valid(key);
  std::int64_t lo = std::numeric_limits<std::int64_t>::max();
  std::int64_t hi = std::numeric_limits<std::int64_t>::min();
  bool any = false;
  if (valid.all()) {
    // Four independent lanes: without 64-bit vector compares in the baseline instruction set,
    // one lane would be bound by the latency of its min/max chain.
    std::int64_t lo4[4] = {lo, lo, lo, lo};
    std::int64_t hi4[4] = {hi, hi, hi, hi};
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
      for (std::size_t j = 0; j < 4; ++j) {
        lo4[j] = std::min(lo4[j], v[i + j]);
        hi4[j] = std::max(hi4[j], v[i + j]);
      }
    }
    for (; i < n; ++i) {
      lo4[0] = std::min(lo4[0], v[i]);
      hi4[0] = std::max(hi4[0], v[i]);
    }
    lo = std::min({lo4[0], lo4[1], lo4[2], lo4[3]});
    hi = std::max({hi4[0], hi4[1], hi4[2], hi4[3]});
    any = n > 0;
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      if (!valid(i)) continue;
      lo = std::min(lo, v[i]);
      hi = std::max(hi, v[i]);
      any = true;
    }
  }
  if (!any) lo = hi = 0;
  const std::uint64_t range = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
  const std::uint64_t limit = std::min<std::uint64_t>(4 * static_cast<std::uint64_t>(n) + 1024, 1u << 22);
  if (range >= limit) return false;

  const auto width = static_cast<std::size_t>(range) + 1;
  const auto base = static_cast<std::uint64_t>(lo);
  std::vector<std::uint8_t> seen(width + 1);
  if (valid.all()) {
    g.how = grouping::mode::offset;
    g.keys = v;
    g.base = base;
    g.slots = width;
    for (std::size_t i = 0; i < n; ++i) seen[static_cast<std::uint64_t>(v[i]) - base] = 1;
  } else {
    g.how = grouping::mode::mapped;
    g.slots = width + 1;
    g.ids.resize(n);
    const auto trash = static_cast<std::uint32_t>(width);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t slot = valid(i) ? static_cast<std::uint32_t>(static_cast<std::uint64_t>(v[i]) - base) : trash;
      g.ids[i] = slot;
      seen[slot] = 1;
    }
  }
  std::vector<std::int64_t> key_values;
  for (std::size_t s = 0; s < width; ++s) {
    if (!seen[s]) continue;
    g.groups.push_back(static_cast<std::uint32_t>(s));
    key_values.push_back(static_cast<std::int64_t>(base + s));
  }
  g.key_columns.push_back(make_int_keys(key.type(), std::move(key_values)));
  return true;
}

/// Open addressing over group ids; the caller keeps what a group is (its key or first row).
class group_table {
 public:
  group_table() { resize(10); }
  /// The group matching `hash` for which `is_group(id)` holds, or a new id from `add()`.
  template <class Match, class Add>
  std::uint32_t find_or_add(std::uint64_t hash, Match&& is_group, Add&& add) {
    std::size_t pos = position(hash);
    for (;;) {
      const std::uint32_t id = cells_[pos];
      if (id == unassigned) break;
      if (hashes_[id] == hash && is_group(id)) return id;
      pos = (pos + 1) & mask_;
    }
    const auto id = static_cast<std::uint32_t>(hashes_.size());
    hashes_.push_back(hash);
    add();
    cells_[pos] = id;
    if (hashes_.size() * 2 > cells_.size()) resize(bits_ + 1);
    return id;
  }
  std::size_t size() const noexcept { return hashes_.size(); }

 private:
  std::size_t position(std::uint64_t hash) const noexcept {
    return static_cast<std::size_t>((hash * 0x9E3779B97F4A7C15ull) >> (64 - bits_));
  }
  void resize(unsigned bits) {
    bits_ = bits;
    cells_.assign(std::size_t{1} << bits, unassigned);
    mask_ = cells_.size() - 1;
    for (std::uint32_t id = 0; id < hashes_.size(); ++id) {
      std::size_t pos = position(hashes_[id]);
      while (cells_[pos] != unassigned) pos = (pos + 1) & mask_;
      cells_[pos] = id;
    }
  }
  unsigned bits_ = 0;
  std::size_t mask_ = 0;
  std::vector<std::uint32_t> cells_;
  std::vector<std::uint64_t> hashes_;  // per group
};

/// Replaces the placeholder id of rows with a null key by the slot after the last group.
void finish_mapped(grouping& g, std::size_t group_count) {
  g.how = grouping::mode::mapped;
  g.slots = group_count + 1;
  const auto trash = static_cast<std::uint32_t>(group_count);
  for (std::uint32_t& id : g.ids)
    if (id == unassigned) id = trash;
  g.groups.resize(group_count);
  std::iota(g.groups.begin(), g.groups.end(), 0u);
}

void group_hashed_int64(grouping& g, const column& key) {
  const std::size_t n = key.size();
  const std::int64_t* v = key.int64_data();
  const validity_view valid(key);
  group_table groups;
  std::vector<std::int64_t> key_values;
  g.ids.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!valid(i)) {
      g.ids[i] = unassigned;
      continue;
    }
    const std::int64_t x = v[i];
    g.ids[i] = groups.find_or_add(
        static_cast<std::uint64_t>(x), [&](std::uint32_t id) { return key_values[id] == x; },
        [&] { key_values.push_back(x); });
  }
  finish_mapped(g, groups.size());
  g.key_columns.push_back(make_int_keys(key.type(), std::move(key_values)));
}

void group_bool(grouping& g, const column& key) {
  const std::size_t n = key.size();
  const std::uint8_t* v = key.bool_data();
  const validity_view valid(key);
  g.how = grouping::mode::mapped;
  g.slots = 3;
  g.ids.resize(n);
  bool seen[3] = {false, false, false};
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t slot = valid(i) ? (v[i] != 0 ? 1u : 0u) : 2u;
    g.ids[i] = slot;
    seen[slot] = true;
  }
  std::vector<std::uint8_t> key_values;
  for (std::uint32_t s = 0; s < 2; ++s) {
    if (!seen[s]) continue;
    g.groups.push_back(s);
    key_values.push_back(static_cast<std::uint8_t>(s));
  }
  g.key_columns.push_back(make_bool(std::move(key_values)));
}

/// Any keys: hash_rows and an equality test on rows.
template <class Equal>
void group_hashed_rows(grouping& g, const table& t, std::span<const std::size_t> key_columns, Equal&& equal) {
  const std::size_t n = t.num_rows();
  std::vector<std::uint64_t> hashes;
  hash_rows(t, key_columns, hashes);
  std::vector<validity_view> validity;
  for (std::size_t k : key_columns)
    if (t.column_at(k).has_nulls()) validity.emplace_back(t.column_at(k));
  group_table groups;
  std::vector<std::int64_t> first_rows;
  g.ids.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    bool null_key = false;
    for (const validity_view& valid : validity) null_key |= !valid(i);
    if (null_key) {
      g.ids[i] = unassigned;
      continue;
    }
    g.ids[i] = groups.find_or_add(
        hashes[i], [&](std::uint32_t id) { return equal(static_cast<std::size_t>(first_rows[id]), i); },
        [&] { first_rows.push_back(static_cast<std::int64_t>(i)); });
  }
  finish_mapped(g, groups.size());
  for (std::size_t k : key_columns) g.key_columns.push_back(take(t.column_at(k), first_rows));
}

grouping group_rows(const table& t, std::span<const std::size_t> key_columns) {
  grouping g;
  g.rows = t.num_rows();
  if (key_columns.empty()) {
    g.groups = {0};
    return g;
  }
  if (key_columns.size() == 1) {
    const column& key = t.column_at(key_columns[0]);
    switch (key.type()) {
      case column_type::int64:
      case column_type::timestamp:
        if (!group_dense_int64(g, key)) group_hashed_int64(g, key);
        return g;
      case column_type::boolean:
        group_bool(g, key);
        return g;
      case column_type::string: {
        const string_reader str(key);
        group_hashed_rows(g, t, key_columns, [&](std::size_t a, std::size_t b) { return str(a) == str(b); });
        return g;
      }
      case column_type::float64:
        break;
    }
  }
  group_hashed_rows(g, t, key_columns,
                    [&](std::size_t a, std::size_t b) { return rows_equal(t, key_columns, a, t, key_columns, b); });
  return g;
}

// ---------------------------------------------------------------------------------------------
// Kernels: one aggregation of one column into per-group columns

template <class T>
std::vector<T> gather(const std::vector<T>& slots, const std::vector<std::uint32_t>& groups) {
  std::vector<T> out(groups.size());
  for (std::size_t j = 0; j < groups.size(); ++j) out[j] = slots[groups[j]];
  return out;
}

/// A validity vector for make_*, or nothing when every group has a value.
std::optional<std::vector<std::uint8_t>> validity_of(std::vector<std::uint8_t> has) {
  if (std::all_of(has.begin(), has.end(), [](std::uint8_t h) { return h != 0; })) return std::nullopt;
  return has;
}

template <class Slot, class T, class A>
void add_values(Slot slot, std::size_t n, const T* v, const validity_view& valid, A* acc) {
  if (valid.all()) {
    for (std::size_t i = 0; i < n; ++i) acc[slot(i)] += static_cast<A>(v[i]);
  } else {
    for (std::size_t i = 0; i < n; ++i)
      if (valid(i)) acc[slot(i)] += static_cast<A>(v[i]);
  }
}

/// int64/bool sums wrap around on overflow (computed unsigned) rather than being undefined.
column sum_column(const grouping& g, const column& c) {
  const validity_view valid(c);
  if (c.type() == column_type::float64) {
    std::vector<double> acc(g.slots);
    g.visit([&](auto slot) { add_values(slot, g.rows, c.float64_data(), valid, acc.data()); });
    return make_float64(gather(acc, g.groups));
  }
  std::vector<std::uint64_t> acc(g.slots);
  with_numeric_data(
      c, [&](const auto* data) { g.visit([&](auto slot) { add_values(slot, g.rows, data, valid, acc.data()); }); });
  std::vector<std::int64_t> out(g.groups.size());
  for (std::size_t j = 0; j < out.size(); ++j) out[j] = static_cast<std::int64_t>(acc[g.groups[j]]);
  return make_int64(std::move(out));
}

column count_column(const grouping& g, const column& c) {
  const validity_view valid(c);
  std::vector<std::int64_t> acc(g.slots);
  if (g.how == grouping::mode::single) {
    acc[0] = static_cast<std::int64_t>(g.rows - c.null_count());
  } else {
    g.visit([&](auto slot) {
      if (valid.all()) {
        for (std::size_t i = 0; i < g.rows; ++i) ++acc[slot(i)];
      } else {
        for (std::size_t i = 0; i < g.rows; ++i) acc[slot(i)] += valid(i) ? 1 : 0;
      }
    });
  }
  return make_int64(gather(acc, g.groups));
}

/// count, mean and sum of squared deviations per group with the corrected two-pass algorithm
/// (Chan, Golub, LeVeque): the second pass also sums the deviations, which removes the rounding
/// error of the first pass's mean. That mean error would otherwise enter Chan's merge linearly.
std::vector<column> std_partial(const grouping& g, const column& c) {
  const validity_view valid(c);
  std::vector<std::int64_t> counts(g.slots);
  std::vector<double> means(g.slots);
  std::vector<double> m2(g.slots);
  std::vector<double> deviations(g.slots);
  with_numeric_data(c, [&](const auto* data) {
    g.visit([&](auto slot) {
      for (std::size_t i = 0; i < g.rows; ++i) {
        if (!valid(i)) continue;
        const std::uint32_t s = slot(i);
        means[s] += static_cast<double>(data[i]);
        ++counts[s];
      }
      for (std::size_t s = 0; s < g.slots; ++s)
        if (counts[s] > 0) means[s] /= static_cast<double>(counts[s]);
      for (std::size_t i = 0; i < g.rows; ++i) {
        if (!valid(i)) continue;
        const std::uint32_t s = slot(i);
        const double d = static_cast<double>(data[i]) - means[s];
        deviations[s] += d;
        m2[s] += d * d;
      }
    });
  });
  for (std::size_t s = 0; s < g.slots; ++s) {
    if (counts[s] == 0) continue;
    const double n = static_cast<double>(counts[s]);
    means[s] += deviations[s] / n;
    m2[s] = std::max(0.0, m2[s] - deviations[s] * deviations[s] / n);
  }
  return {make_int64(gather(counts, g.groups)), make_float64(gather(means, g.groups)),
          make_float64(gather(m2, g.groups))};
}

/// Merges (count, mean, m2) states in row order with Chan et al.'s pairwise update.
std::vector<column> std_combine(const grouping& g, const column& count, const column& mean, const column& m2) {
  const std::int64_t* nb = count.int64_data();
  const double* mb = mean.float64_data();
  const double* qb = m2.float64_data();
  std::vector<std::int64_t> counts(g.slots);
  std::vector<double> means(g.slots);
  std::vector<double> sq(g.slots);
  g.visit([&](auto slot) {
    for (std::size_t i = 0; i < g.rows; ++i) {
      if (nb[i] == 0) continue;
      const std::uint32_t s = slot(i);
      const std::int64_t na = counts[s];
      if (na == 0) {
        counts[s] = nb[i];
        means[s] = mb[i];
        sq[s] = qb[i];
        continue;
      }
      const double n = static_cast<double>(na + nb[i]);
      const double delta = mb[i] - means[s];
      means[s] += delta * static_cast<double>(nb[i]) / n;
      sq[s] += qb[i] + delta * delta * static_cast<double>(na) * static_cast<double>(nb[i]) / n;
      counts[s] = na + nb[i];
    }
  });
  return {make_int64(gather(counts, g.groups)), make_float64(gather(means, g.groups)),
          make_float64(gather(sq, g.groups))};
}

/// Orders as compare_values does: NaN after every number, so max prefers NaN and min avoids it.
template <bool is_max, class T>
bool better(T x, T best) {
  if constexpr (std::is_floating_point_v<T>) {
    if constexpr (is_max)
      return x > best || (x != x && best == best);
    else
      return x < best || (best != best && x == x);
  } else {
    if constexpr (is_max)
      return x > best;
    else
      return x < best;
  }
}

template <bool is_max>
column extreme_column(const grouping& g, const column& c) {
  const validity_view valid(c);
  if (c.type() == column_type::string) {
    const string_reader str(c);
    std::vector<std::int64_t> best(g.slots, -1);
    g.visit([&](auto slot) {
      for (std::size_t i = 0; i < g.rows; ++i) {
        if (!valid(i)) continue;
        std::int64_t& b = best[slot(i)];
        if (b < 0 || better<is_max>(str(i), str(static_cast<std::size_t>(b)))) b = static_cast<std::int64_t>(i);
      }
    });
    return take(c, gather(best, g.groups));
  }
  return with_numeric_data(c, [&](const auto* data) {
    using T = std::remove_cvref_t<decltype(*data)>;
    std::vector<T> best(g.slots);
    std::vector<std::uint8_t> has(g.slots);
    g.visit([&](auto slot) {
      for (std::size_t i = 0; i < g.rows; ++i) {
        if (!valid(i)) continue;
        const std::uint32_t s = slot(i);
        if (!has[s] || better<is_max>(data[i], best[s])) {
          best[s] = data[i];
          has[s] = 1;
        }
      }
    });
    auto present = validity_of(gather(has, g.groups));
    const std::vector<std::uint8_t>* validity = present ? &*present : nullptr;
    auto values = gather(best, g.groups);
    switch (c.type()) {
      case column_type::float64:
        if constexpr (std::is_same_v<T, double>) return make_float64(std::move(values), validity);
        break;
      case column_type::boolean:
        if constexpr (std::is_same_v<T, std::uint8_t>) return make_bool(std::move(values), validity);
        break;
      case column_type::timestamp:
        if constexpr (std::is_same_v<T, std::int64_t>) return make_timestamp(std::move(values), validity);
        break;
      case column_type::int64:
        if constexpr (std::is_same_v<T, std::int64_t>) return make_int64(std::move(values), validity);
        break;
      case column_type::string:
        break;
    }
    dx::detail::throw_error(dx::detail::error_kind::dataframe, "agg: internal error: min/max type mismatch");
  });
}

column first_column(const grouping& g, const column& c) {
  const validity_view valid(c);
  std::vector<std::int64_t> first(g.slots, -1);
  g.visit([&](auto slot) {
    for (std::size_t i = 0; i < g.rows; ++i) {
      if (!valid(i)) continue;
      std::int64_t& f = first[slot(i)];
      if (f < 0) f = static_cast<std::int64_t>(i);
    }
  });
  return take(c, gather(first, g.groups));
}

// nunique keeps each group's distinct values as a string: a tag byte, then the values in
// ascending order. 'n': 8-byte words (int64 and timestamp values, float64 bits with -0.0 folded
// into 0.0 and every NaN into one NaN, bool 0/1); 's': per string a 4-byte length and the bytes.
constexpr char numeric_set = 'n';
constexpr char string_set = 's';

std::uint64_t canonical_bits(double x) {
  if (x == 0) return 0;
  if (x != x) return 0x7ff8000000000000ull;
  return std::bit_cast<std::uint64_t>(x);
}

template <class V>
void append_value(std::string& out, const V& value) {
  if constexpr (std::is_same_v<V, std::uint64_t>) {
    char bytes[8];
    std::memcpy(bytes, &value, 8);
    out.append(bytes, 8);
  } else {
    const auto length = static_cast<std::uint32_t>(value.size());
    char bytes[4];
    std::memcpy(bytes, &length, 4);
    out.append(bytes, 4);
    out.append(value);
  }
}

/// Sorts and dedups (slot, value) pairs, then writes each group's set.
template <class V>
column encode_sets(const grouping& g, std::vector<std::pair<std::uint32_t, V>>& pairs, char tag) {
  std::sort(pairs.begin(), pairs.end());
  pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
  std::vector<std::size_t> begin(g.slots + 1, 0);
  for (const auto& p : pairs) ++begin[p.first + 1];
  std::partial_sum(begin.begin(), begin.end(), begin.begin());
  column_builder out(column_type::string, g.groups.size());
  std::string set;
  for (std::uint32_t s : g.groups) {
    set.assign(1, tag);
    for (std::size_t j = begin[s]; j < begin[s + 1]; ++j) append_value(set, pairs[j].second);
    out.append_string(set);
  }
  return out.finish();
}

column nunique_partial(const grouping& g, const column& c) {
  const validity_view valid(c);
  if (c.type() == column_type::string) {
    const string_reader str(c);
    std::vector<std::pair<std::uint32_t, std::string_view>> pairs;
    pairs.reserve(g.rows);
    g.visit([&](auto slot) {
      for (std::size_t i = 0; i < g.rows; ++i)
        if (valid(i)) pairs.emplace_back(slot(i), str(i));
    });
    return encode_sets(g, pairs, string_set);
  }
  std::vector<std::pair<std::uint32_t, std::uint64_t>> pairs;
  pairs.reserve(g.rows);
  with_numeric_data(c, [&](const auto* data) {
    using T = std::remove_cvref_t<decltype(*data)>;
    g.visit([&](auto slot) {
      for (std::size_t i = 0; i < g.rows; ++i) {
        if (!valid(i)) continue;
        if constexpr (std::is_same_v<T, double>)
          pairs.emplace_back(slot(i), canonical_bits(data[i]));
        else
          pairs.emplace_back(slot(i), static_cast<std::uint64_t>(data[i]));
      }
    });
  });
  return encode_sets(g, pairs, numeric_set);
}

std::size_t set_size(std::string_view set) {
  if (set.empty()) return 0;
  if (set[0] == numeric_set) return (set.size() - 1) / 8;
  std::size_t count = 0;
  for (std::size_t at = 1; at + 4 <= set.size(); ++count) {
    std::uint32_t length = 0;
    std::memcpy(&length, set.data() + at, 4);
    at += 4 + length;
  }
  return count;
}

column nunique_combine(const grouping& g, const column& sets) {
  const string_reader str(sets);
  char tag = numeric_set;
  for (std::size_t i = 0; i < g.rows; ++i) {
    if (!str(i).empty()) {
      tag = str(i)[0];
      break;
    }
  }
  if (tag == string_set) {
    std::vector<std::pair<std::uint32_t, std::string_view>> pairs;
    g.visit([&](auto slot) {
      for (std::size_t i = 0; i < g.rows; ++i) {
        const std::string_view set = str(i);
        const std::uint32_t s = slot(i);
        for (std::size_t at = 1; at + 4 <= set.size();) {
          std::uint32_t length = 0;
          std::memcpy(&length, set.data() + at, 4);
          pairs.emplace_back(s, set.substr(at + 4, length));
          at += 4 + length;
        }
      }
    });
    return encode_sets(g, pairs, string_set);
  }
  std::vector<std::pair<std::uint32_t, std::uint64_t>> pairs;
  g.visit([&](auto slot) {
    for (std::size_t i = 0; i < g.rows; ++i) {
      const std::string_view set = str(i);
      const std::uint32_t s = slot(i);
      for (std::size_t at = 1; at + 8 <= set.size(); at += 8) {
        std::uint64_t word = 0;
        std::memcpy(&word, set.data() + at, 8);
        pairs.emplace_back(s, word);
      }
    }
  });
  return encode_sets(g, pairs, numeric_set);
}

std::vector<std::size_t> leading_columns(std::size_t n) {
  std::vector<std::size_t> out(n);
  std::iota(out.begin(), out.end(), std::size_t{0});
  return out;
}

/// The number of state columns after the keys that `spec` needs.
std::size_t state_width(const agg_spec& spec) {
  std::size_t width = 0;
  for (const aggregation& a : spec.aggs) width += state_parts(a.fn).size();
  return width;
}

void check_state(const table& t, const agg_spec& spec, std::string_view what) {
  if (t.num_columns() != spec.keys.size() + state_width(spec))
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            "agg: " + std::string(what) +
                                " got a table that is not a partial state of this aggregation (" +
                                std::to_string(t.num_columns()) + " columns)");
}

/// The order of the rows of `t` by ascending `key_columns` (no nulls among them).
std::vector<std::int64_t> key_order(const table& t, std::size_t key_count) {
  std::vector<std::int64_t> order(t.num_rows());
  std::iota(order.begin(), order.end(), std::int64_t{0});
  if (key_count == 0 || t.num_rows() < 2) return order;
  const column& first = t.column_at(0);
  if (key_count == 1 && (first.type() == column_type::int64 || first.type() == column_type::timestamp)) {
    const std::int64_t* v = first.int64_data();
    if (std::is_sorted(v, v + t.num_rows())) return order;
    std::sort(order.begin(), order.end(), [v](std::int64_t a, std::int64_t b) { return v[a] < v[b]; });
    return order;
  }
  std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    for (std::size_t k = 0; k < key_count; ++k) {
      const column& c = t.column_at(k);
      const int cmp = compare_values(c, static_cast<std::size_t>(a), c, static_cast<std::size_t>(b));
      if (cmp != 0) return cmp < 0;
    }
    return false;
  });
  return order;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

schema_t aggregate_schema(const schema_t& input, const agg_spec& spec) {
  std::vector<std::string> names;
  names.reserve(input.size());
  for (const auto& [name, type] : input) names.push_back(name);
  auto type_of = [&](const std::string& name) {
    for (const auto& [n, t] : input)
      if (n == name) return t;
    dx::detail::throw_error(dx::detail::error_kind::dataframe, "agg: " + unknown_column_message(name, names));
  };
  schema_t out;
  for (const std::string& key : spec.keys) out.emplace_back(key, type_of(key));
  for (const aggregation& a : spec.aggs) out.emplace_back(output_name(a), output_type(a, type_of(a.column)));
  return out;
}

table partial_aggregate(const table& input, const agg_spec& spec) {
  aggregate_schema(schema_of(input), spec);
  const std::vector<std::size_t> keys = column_indices(input, spec.keys);
  const grouping g = group_rows(input, keys);

  std::vector<std::string> names(spec.keys);
  std::vector<column> columns(g.key_columns);
  auto add = [&](std::size_t index, std::string_view part, column c) {
    names.push_back(state_name(index, part));
    columns.push_back(std::move(c));
  };
  for (std::size_t i = 0; i < spec.aggs.size(); ++i) {
    const aggregation& a = spec.aggs[i];
    const column& c = input.column_at(column_index(input, a.column));
    switch (a.fn) {
      case agg::sum:
        add(i, "sum", sum_column(g, c));
        break;
      case agg::count:
        add(i, "count", count_column(g, c));
        break;
      case agg::mean:
        add(i, "sum", sum_column(g, c));
        add(i, "count", count_column(g, c));
        break;
      case agg::std: {
        std::vector<column> state = std_partial(g, c);
        add(i, "count", std::move(state[0]));
        add(i, "mean", std::move(state[1]));
        add(i, "m2", std::move(state[2]));
        break;
      }
      case agg::min:
        add(i, "value", extreme_column<false>(g, c));
        break;
      case agg::max:
        add(i, "value", extreme_column<true>(g, c));
        break;
      case agg::first:
        add(i, "value", first_column(g, c));
        break;
      case agg::nunique:
        add(i, "set", nunique_partial(g, c));
        break;
    }
  }
  return table(std::move(names), std::move(columns));
}

table combine_aggregate(std::span<const table> partials, const agg_spec& spec) {
  std::vector<table> states;
  for (const table& t : partials)
    if (t.num_columns() > 0) states.push_back(t);
  if (states.empty()) dx::detail::throw_error(dx::detail::error_kind::dataframe, "agg: combine got no partial states");
  for (const table& t : states) check_state(t, spec, "combine");
  if (states.size() == 1) return states.front();

  const table all = concat(states);
  const std::vector<std::size_t> keys = leading_columns(spec.keys.size());
  const grouping g = group_rows(all, keys);

  std::vector<std::string> names(spec.keys);
  std::vector<column> columns(g.key_columns);
  std::size_t at = spec.keys.size();
  auto next = [&]() -> const column& {
    names.push_back(all.column_names()[at]);
    return all.column_at(at++);
  };
  for (const aggregation& a : spec.aggs) {
    switch (a.fn) {
      case agg::sum:
      case agg::count:
        columns.push_back(sum_column(g, next()));
        break;
      case agg::mean:
        columns.push_back(sum_column(g, next()));
        columns.push_back(sum_column(g, next()));
        break;
      case agg::std: {
        const column& count = next();
        const column& mean = next();
        const column& m2 = next();
        for (column& c : std_combine(g, count, mean, m2)) columns.push_back(std::move(c));
        break;
      }
      case agg::min:
        columns.push_back(extreme_column<false>(g, next()));
        break;
      case agg::max:
        columns.push_back(extreme_column<true>(g, next()));
        break;
      case agg::first:
        columns.push_back(first_column(g, next()));
        break;
      case agg::nunique:
        columns.push_back(nunique_combine(g, next()));
        break;
    }
  }
  return table(std::move(names), std::move(columns));
}

table finalize_aggregate(const table& combined, const agg_spec& spec) {
  check_state(combined, spec, "finalize");
  const std::size_t rows = combined.num_rows();
  std::vector<std::string> names(spec.keys);
  std::vector<column> columns;
  for (std::size_t k = 0; k < spec.keys.size(); ++k) columns.push_back(combined.column_at(k));
  std::size_t at = spec.keys.size();
  for (const aggregation& a : spec.aggs) {
    names.push_back(output_name(a));
    switch (a.fn) {
      case agg::sum:
      case agg::count:
      case agg::min:
      case agg::max:
      case agg::first:
        columns.push_back(combined.column_at(at++));
        break;
      case agg::mean: {
        const column& sum = combined.column_at(at++);
        const std::int64_t* count = combined.column_at(at++).int64_data();
        std::vector<double> mean(rows);
        std::vector<std::uint8_t> valid(rows);
        for (std::size_t r = 0; r < rows; ++r) {
          if (count[r] == 0) continue;
          const double total =
              sum.type() == column_type::float64 ? sum.float64_data()[r] : static_cast<double>(sum.int64_data()[r]);
          mean[r] = total / static_cast<double>(count[r]);
          valid[r] = 1;
        }
        auto present = validity_of(std::move(valid));
        columns.push_back(make_float64(std::move(mean), present ? &*present : nullptr));
        break;
      }
      case agg::std: {
        const std::int64_t* count = combined.column_at(at).int64_data();
        const double* m2 = combined.column_at(at + 2).float64_data();
        at += 3;
        std::vector<double> out(rows);
        std::vector<std::uint8_t> valid(rows);
        for (std::size_t r = 0; r < rows; ++r) {
          if (count[r] < 2) continue;
          out[r] = std::sqrt(std::max(0.0, m2[r]) / static_cast<double>(count[r] - 1));
          valid[r] = 1;
        }
        auto present = validity_of(std::move(valid));
        columns.push_back(make_float64(std::move(out), present ? &*present : nullptr));
        break;
      }
      case agg::nunique: {
        const string_reader sets(combined.column_at(at++));
        std::vector<std::int64_t> out(rows);
        for (std::size_t r = 0; r < rows; ++r) out[r] = static_cast<std::int64_t>(set_size(sets(r)));
        columns.push_back(make_int64(std::move(out)));
        break;
      }
    }
  }
  table result(std::move(names), std::move(columns));
  const std::vector<std::int64_t> order = key_order(combined, spec.keys.size());
  for (std::size_t r = 0; r < order.size(); ++r)
    if (order[r] != static_cast<std::int64_t>(r)) return take(result, order);
  return result;
}

// ---------------------------------------------------------------------------------------------

table distinct_rows(std::span<const table> parts, const std::vector<std::string>& subset) {
  struct origin {
    std::uint32_t part;
    std::uint32_t row;
  };
  std::vector<std::vector<std::size_t>> columns_of(parts.size());
  std::vector<origin> firsts;
  group_table seen;
  std::vector<table> kept;
  std::vector<std::uint64_t> hashes;
  for (std::size_t p = 0; p < parts.size(); ++p) {
    const table& part = parts[p];
    if (part.num_columns() == 0) continue;
    if (subset.empty()) {
      columns_of[p] = leading_columns(part.num_columns());
    } else {
      columns_of[p] = column_indices(part, subset);
    }
    const std::vector<std::size_t>& cols = columns_of[p];
    hash_rows(part, cols, hashes);
    std::vector<std::int64_t> rows;
    for (std::size_t r = 0; r < part.num_rows(); ++r) {
      bool added = false;
      seen.find_or_add(
          hashes[r],
          [&](std::uint32_t id) {
            const origin o = firsts[id];
            return rows_equal(parts[o.part], columns_of[o.part], o.row, part, cols, r);
          },
          [&] {
            firsts.push_back({static_cast<std::uint32_t>(p), static_cast<std::uint32_t>(r)});
            added = true;
          });
      if (added) rows.push_back(static_cast<std::int64_t>(r));
    }
    kept.push_back(rows.size() == part.num_rows() ? part : take(part, rows));
  }
  if (kept.empty()) return parts.empty() ? table{} : parts.front();
  return kept.size() == 1 ? kept.front() : concat(kept);
}

namespace {

/// numpy's 'linear' quantile of sorted values, with its lerp (exact at both ends).
double quantile(const std::vector<double>& sorted, double q) {
  const double position = q * static_cast<double>(sorted.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(position));
  const std::size_t above = std::min(below + 1, sorted.size() - 1);
  const double t = position - static_cast<double>(below);
  const double a = sorted[below];
  const double b = sorted[above];
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

}  // namespace

table describe_table(std::span<const table> parts) {
  const table* schema = nullptr;
  for (const table& t : parts)
    if (t.num_columns() > 0) {
      schema = &t;
      break;
    }
  std::vector<std::string> names{"statistic"};
  std::vector<column> columns{
      column(std::vector<std::string>{"count", "mean", "std", "min", "25%", "50%", "75%", "max"})};
  if (schema != nullptr) {
    for (std::size_t c = 0; c < schema->num_columns(); ++c) {
      const column_type type = schema->column_at(c).type();
      if (type != column_type::int64 && type != column_type::float64) continue;
      const std::string& name = schema->column_names()[c];
      // Like pandas, NaN counts as missing here.
      std::vector<double> values;
      for (const table& t : parts) {
        if (t.num_columns() == 0) continue;
        const column& col = t.column_at(column_index(t, name));
        const validity_view valid(col);
        with_numeric_data(col, [&](const auto* data) {
          for (std::size_t i = 0; i < col.size(); ++i) {
            const auto x = static_cast<double>(data[i]);
            if (valid(i) && x == x) values.push_back(x);
          }
        });
      }
      std::sort(values.begin(), values.end());
      const std::size_t n = values.size();
      std::vector<std::optional<double>> stats(8);
      stats[0] = static_cast<double>(n);
      if (n > 0) {
        double sum = 0;
        for (double x : values) sum += x;
        const double mean = sum / static_cast<double>(n);
        stats[1] = mean;
        if (n > 1) {
          double m2 = 0;
          for (double x : values) m2 += (x - mean) * (x - mean);
          stats[2] = std::sqrt(m2 / static_cast<double>(n - 1));
        }
        stats[3] = values.front();
        stats[4] = quantile(values, 0.25);
        stats[5] = quantile(values, 0.5);
        stats[6] = quantile(values, 0.75);
        stats[7] = values.back();
      }
      names.push_back(name);
      columns.emplace_back(std::move(stats));
    }
  }
  if (names.size() == 1) dx::detail::throw_error(dx::detail::error_kind::dataframe, "describe: no numeric columns");
  return table(std::move(names), std::move(columns));
}

}  // namespace dx::detail::df

namespace dx {

std::string_view agg_name(agg a) noexcept {
  switch (a) {
    case agg::sum:
      return "sum";
    case agg::mean:
      return "mean";
    case agg::count:
      return "count";
    case agg::min:
      return "min";
    case agg::max:
      return "max";
    case agg::std:
      return "std";
    case agg::first:
      return "first";
    case agg::nunique:
      return "nunique";
  }
  return "?";
}

}  // namespace dx
