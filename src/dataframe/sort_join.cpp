// Sorting, shuffling and joining kernels.
//
// Sort order, per key column ascending or descending: missing values (nulls, and NaN in float64
// columns, as pandas treats NaN as missing) come after all others whatever the direction and are
// equal to each other; -0.0 equals 0.0; strings compare by bytes, which for UTF-8 is code point
// order. Every sort is stable.
//
// Joins require each pair of key columns to have the same type (int64 against float64 is a
// dx::dataframe_error, not a silent promotion): hash_split must send equal keys of both sides to
// the same bucket, and hash_rows hashes an int64 and the equal float64 differently. Null and NaN
// keys never match.
#include "dataframe/kernels.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <type_traits>
#include <unordered_set>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace dx::detail::df {

namespace {

constexpr std::uint64_t sign_bit = std::uint64_t{1} << 63;

// One key column as sorts and joins read it: raw pointers instead of per-row type dispatch.
class key_column {
 public:
  key_column(const column& c, bool ascending) : col_(&c), type_(c.type()), ascending_(ascending) {
    switch (type_) {
      case column_type::int64:
      case column_type::timestamp:
        ints_ = c.int64_data();
        break;
      case column_type::float64:
        doubles_ = c.float64_data();
        break;
      case column_type::boolean:
        bools_ = c.bool_data();
        break;
      case column_type::string:
        strings_.reserve(c.size());
        for (std::size_t i = 0; i < c.size(); ++i) strings_.push_back(c.string_at(i));
        break;
    }
  }

  column_type type() const noexcept { return type_; }
  bool numeric() const noexcept { return type_ != column_type::string; }

  bool missing(std::size_t row) const noexcept {
    return col_->is_null(row) || (doubles_ != nullptr && std::isnan(doubles_[row]));
  }

  // Ascending order of the result is this column's sort order (direction included) for values
  // that are not missing.
  std::uint64_t encode(std::size_t row) const noexcept {
    std::uint64_t u = 0;
    switch (type_) {
      case column_type::int64:
      case column_type::timestamp:
        u = static_cast<std::uint64_t>(ints_[row]) ^ sign_bit;
        break;
      case column_type::float64: {
        double d = doubles_[row];
        if (d == 0) d = 0;  // -0.0 sorts as 0.0
        const auto bits = std::bit_cast<std::uint64_t>(d);
        u = (bits & sign_bit) != 0 ? ~bits : bits | sign_bit;
        break;
      }
      case column_type::boolean:
        u = bools_[row];
        break;
      case column_type::string:
        break;
    }
    return ascending_ ? u : ~u;
  }

  // The value whose encode() is `u`, as the column stores it (int64_t, double or uint8_t).
  template <class T>
  T decode(std::uint64_t u) const noexcept {
    if (!ascending_) u = ~u;
    if constexpr (std::is_same_v<T, double>) {
      return std::bit_cast<double>((u & sign_bit) != 0 ? u ^ sign_bit : ~u);
    } else if constexpr (std::is_same_v<T, std::uint8_t>) {
      return static_cast<std::uint8_t>(u);
    } else {
      return static_cast<std::int64_t>(u ^ sign_bit);
    }
  }
  // -0.0, the one value encode() does not keep.
  bool negative_zero(std::size_t row) const noexcept {
    return doubles_ != nullptr && doubles_[row] == 0 && std::signbit(doubles_[row]);
  }

  // Three-way comparison of this column's row `a` with `other`'s row `b` (same type) in sort order.
  int compare(std::size_t a, const key_column& other, std::size_t b) const noexcept {
    const bool ma = missing(a), mb = other.missing(b);
    if (ma || mb) return ma == mb ? 0 : (ma ? 1 : -1);
    int c = 0;
    switch (type_) {
      case column_type::int64:
      case column_type::timestamp:
        c = three_way(ints_[a], other.ints_[b]);
        break;
      case column_type::float64:
        c = three_way(doubles_[a], other.doubles_[b]);
        break;
      case column_type::boolean:
        c = three_way(bools_[a], other.bools_[b]);
        break;
      case column_type::string: {
        const int r = strings_[a].compare(other.strings_[b]);
        c = r < 0 ? -1 : (r > 0 ? 1 : 0);
        break;
      }
    }
    return ascending_ ? c : -c;
  }

  // Equality of non-missing values (the caller checks missing first).
  bool equal_value(std::size_t a, const key_column& other, std::size_t b) const noexcept {
    switch (type_) {
      case column_type::int64:
      case column_type::timestamp:
        return ints_[a] == other.ints_[b];
      case column_type::float64:
        return doubles_[a] == other.doubles_[b];
      case column_type::boolean:
        return bools_[a] == other.bools_[b];
      case column_type::string:
        return strings_[a] == other.strings_[b];
    }
    return false;
  }

 private:
  template <class T>
  static int three_way(T x, T y) noexcept {
    return x < y ? -1 : (y < x ? 1 : 0);
  }

  const column* col_;
  column_type type_;
  bool ascending_;
  const std::int64_t* ints_ = nullptr;
  const double* doubles_ = nullptr;
  const std::uint8_t* bools_ = nullptr;
  std::vector<std::string_view> strings_;
};

std::vector<bool> directions(const sort_spec& spec) {
  if (spec.ascending.size() == spec.by.size()) return spec.ascending;
  if (spec.ascending.empty()) return std::vector<bool>(spec.by.size(), true);
  if (spec.ascending.size() == 1) return std::vector<bool>(spec.by.size(), spec.ascending[0]);
  dx::detail::throw_error(dx::detail::error_kind::dataframe,
                          "sort: " + std::to_string(spec.by.size()) + " columns but " +
                              std::to_string(spec.ascending.size()) + " ascending flags");
}

// The key columns of `t`, either found by name or (for boundary tables) taken in position.
std::vector<key_column> key_columns(const table& t, const std::vector<std::size_t>& indices,
                                    const std::vector<bool>& ascending) {
  std::vector<key_column> keys;
  keys.reserve(indices.size());
  for (std::size_t k = 0; k < indices.size(); ++k) keys.emplace_back(t.column_at(indices[k]), ascending[k]);
  return keys;
}

int compare_rows(const std::vector<key_column>& a, std::size_t ra, const std::vector<key_column>& b, std::size_t rb) {
  for (std::size_t k = 0; k < a.size(); ++k) {
    if (const int c = a[k].compare(ra, b[k], rb); c != 0) return c;
  }
  return 0;
}

constexpr unsigned radix_bits = 11;
constexpr std::size_t radix_buckets = std::size_t{1} << radix_bits;

// Buffers a thread reuses from one sort to the next: touching fresh pages costs more than the
// sort itself. Kept only while they are of moderate size. Slots: 0 radix keys, 1 their copy,
// 2 encoded keys, 3 rows grouped by piece (split_by_id), 4 the sorted order, 5 its copy.
template <class T>
std::vector<T>& scratch(unsigned slot, std::size_t n) {
  thread_local std::array<std::vector<T>, 6> buffers;
  std::vector<T>& v = buffers[slot];
  v.resize(n);
  return v;
}

template <class T>
void release_if_large(unsigned slot) {
  constexpr std::size_t keep_bytes = std::size_t{32} << 20;
  std::vector<T>& v = scratch<T>(slot, 0);
  if (v.capacity() * sizeof(T) > keep_bytes) std::vector<T>().swap(v);
}

// A vector for a large output column. Transparent huge pages (where the kernel grants them on
// request) make its first touch several times cheaper than with 4 KiB pages.
template <class T>
std::vector<T> output_vector(std::size_t n) {
  std::vector<T> v;
  v.reserve(n);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  if (n * sizeof(T) >= 2 * huge) {
    const auto begin = (reinterpret_cast<std::uintptr_t>(v.data()) + huge - 1) & ~(huge - 1);
    const auto end = (reinterpret_cast<std::uintptr_t>(v.data() + n)) & ~(huge - 1);
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#endif
  v.resize(n);
  return v;
}

// Stable sort of a short run by insertion, of a longer one by std::stable_sort.
template <class Index>
void sort_run(std::uint64_t* keys, Index* perm, std::size_t n) {
  if (n <= 32) {
    for (std::size_t i = 1; i < n; ++i) {
      const std::uint64_t k = keys[i];
      const Index v = perm[i];
      std::size_t j = i;
      for (; j > 0 && keys[j - 1] > k; --j) {
        keys[j] = keys[j - 1];
        perm[j] = perm[j - 1];
      }
      keys[j] = k;
      perm[j] = v;
    }
    return;
  }
  std::vector<std::pair<std::uint64_t, Index>> pairs(n);
  for (std::size_t i = 0; i < n; ++i) pairs[i] = {keys[i], perm[i]};
  std::stable_sort(pairs.begin(), pairs.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  for (std::size_t i = 0; i < n; ++i) std::tie(keys[i], perm[i]) = pairs[i];
}

// Digits of the most significant part that the radix passes sort; the rest is left to sort_run
// on runs of equal leading digits, which are short unless keys cluster.
constexpr unsigned radix_max_passes = 3;

// Stable LSD radix sort of `perm` by `keys` (keys[i] belongs to perm[i]); perm is permuted, and
// keys too when `keep_keys`. Digits that are the same for every key cost no pass.
template <class Index>
void radix_sort(std::vector<std::uint64_t>& keys, std::vector<Index>& perm, std::uint64_t max_key, bool keep_keys) {
  const std::size_t n = keys.size();
  const unsigned bits = static_cast<unsigned>(std::bit_width(max_key));
  if (bits == 0 || n < 2) return;
  if (n <= 64 || n > std::numeric_limits<std::uint32_t>::max()) {
    // Small inputs: the histograms would cost more than the sort. Huge ones (beyond 32-bit
    // counts) are not worth a second radix variant.
    sort_run(keys.data(), perm.data(), n);
    return;
  }
  const unsigned passes = (bits + radix_bits - 1) / radix_bits;
  const unsigned first = passes > radix_max_passes ? passes - radix_max_passes : 0;
  const bool partial = first > 0;
  std::vector<std::array<std::uint32_t, radix_buckets>> counts(passes);
  for (auto& c : counts) c.fill(0);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t k = keys[i];
    for (unsigned p = first; p < passes; ++p) ++counts[p][(k >> (p * radix_bits)) & (radix_buckets - 1)];
  }
  std::vector<unsigned> needed;
  for (unsigned p = first; p < passes; ++p) {
    if (counts[p][(keys[0] >> (p * radix_bits)) & (radix_buckets - 1)] != n) needed.push_back(p);
  }
  std::vector<std::uint64_t>& keys_out = scratch<std::uint64_t>(1, n);
  std::vector<Index>& perm_out = scratch<Index>(5, n);
  for (std::size_t step = 0; step < needed.size(); ++step) {
    const unsigned p = needed[step];
    const unsigned shift = p * radix_bits;
    std::array<std::uint32_t, radix_buckets>& pos = counts[p];
    std::uint32_t sum = 0;
    for (std::uint32_t& c : pos) {
      const std::uint32_t here = c;
      c = sum;
      sum += here;
    }
    const std::uint64_t* kin = keys.data();
    const Index* pin = perm.data();
    std::uint64_t* kout = keys_out.data();
    Index* pout = perm_out.data();
    if (step + 1 == needed.size() && !partial && !keep_keys) {
      // The last pass only has to place the row indices.
      for (std::size_t i = 0; i < n; ++i) pout[pos[(kin[i] >> shift) & (radix_buckets - 1)]++] = pin[i];
      perm.swap(perm_out);
      break;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t k = kin[i];
      const std::uint32_t at = pos[(k >> shift) & (radix_buckets - 1)]++;
      kout[at] = k;
      pout[at] = pin[i];
    }
    keys.swap(keys_out);
    perm.swap(perm_out);
  }
  if (!partial) return;
  const unsigned low_bits = first * radix_bits;
  for (std::size_t i = 0; i < n;) {
    const std::uint64_t lead = keys[i] >> low_bits;
    std::size_t j = i + 1;
    while (j < n && keys[j] >> low_bits == lead) ++j;
    if (j - i > 1) sort_run(keys.data() + i, perm.data() + i, j - i);
    i = j;
  }
}

// Rows of several tables of one schema seen as one: global row g is row g - starts[p] of piece
// p = piece_of[g] (piece_of is empty for a single piece).
struct piece_rows {
  std::vector<const table*> pieces;
  std::vector<std::size_t> starts;
  std::vector<std::uint16_t> piece_of;
  std::size_t rows = 0;
};

piece_rows index_pieces(std::vector<const table*> pieces) {
  piece_rows m;
  m.pieces = std::move(pieces);
  for (const table* p : m.pieces) {
    m.starts.push_back(m.rows);
    m.rows += p->num_rows();
  }
  if (m.pieces.size() > 1) {
    m.piece_of.resize(m.rows);
    for (std::size_t p = 0; p < m.pieces.size(); ++p) {
      std::fill_n(m.piece_of.begin() + static_cast<std::ptrdiff_t>(m.starts[p]), m.pieces[p]->num_rows(),
                  static_cast<std::uint16_t>(p));
    }
  }
  return m;
}

// One key column over all pieces.
struct multi_key {
  std::vector<key_column> parts;  // one per piece
  bool numeric() const noexcept { return parts.front().numeric(); }
};

std::vector<multi_key> multi_keys(const piece_rows& m, const std::vector<std::string>& by,
                                  const std::vector<bool>& ascending) {
  std::vector<multi_key> keys(by.size());
  for (std::size_t k = 0; k < by.size(); ++k) {
    for (const table* p : m.pieces) keys[k].parts.emplace_back(p->column_at(column_index(*p, by[k])), ascending[k]);
  }
  return keys;
}

// Stably reorders `perm` (global rows) by one numeric key column. With `want_keys`, when the
// values can be recovered from the sorted keys (none missing, no -0.0), leaves those in scratch
// slot 0 and returns what was subtracted from them.
template <class Index>
std::optional<std::uint64_t> sort_by_numeric(const piece_rows& m, const multi_key& key, std::vector<Index>& perm,
                                             bool identity, bool want_keys) {
  const std::size_t n = perm.size();
  // The key of every global row, and whether it is missing.
  std::vector<std::uint64_t>& encoded = scratch<std::uint64_t>(2, n);
  std::vector<std::uint8_t>& missing = scratch<std::uint8_t>(0, n);
  bool any_missing = false, any_valid = false, any_negative_zero = false;
  std::uint64_t lo = std::numeric_limits<std::uint64_t>::max(), hi = 0;
  for (std::size_t p = 0; p < m.pieces.size(); ++p) {
    const key_column& kc = key.parts[p];
    const std::size_t start = m.starts[p], rows = m.pieces[p]->num_rows();
    for (std::size_t r = 0; r < rows; ++r) {
      const bool miss = kc.missing(r);
      missing[start + r] = miss;
      if (miss) {
        any_missing = true;
        encoded[start + r] = 0;
        continue;
      }
      const std::uint64_t u = kc.encode(r);
      if (want_keys) any_negative_zero |= kc.negative_zero(r);
      encoded[start + r] = u;
      lo = std::min(lo, u);
      hi = std::max(hi, u);
      any_valid = true;
    }
  }
  if (!any_valid) return std::nullopt;  // all missing: all equal
  // Keys relative to the smallest need fewer digits; missing values get the key after the largest
  // unless the values use the whole 64-bit range, when they are moved to the end afterwards.
  const std::uint64_t range = hi - lo;
  const bool missing_fits = range != std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t missing_key = missing_fits ? range + 1 : 0;
  std::vector<std::uint64_t>& keys = scratch<std::uint64_t>(0, n);
  if (identity && !any_missing) {
    for (std::size_t i = 0; i < n; ++i) keys[i] = encoded[i] - lo;
  } else if (any_missing) {
    for (std::size_t i = 0; i < n; ++i) keys[i] = missing[perm[i]] ? missing_key : encoded[perm[i]] - lo;
  } else {
    for (std::size_t i = 0; i < n; ++i) keys[i] = encoded[perm[i]] - lo;
  }
  const bool keep_keys = want_keys && !any_missing && !any_negative_zero;
  radix_sort(keys, perm, any_missing && missing_fits ? range + 1 : range, keep_keys);
  if (any_missing && !missing_fits) {
    std::stable_partition(perm.begin(), perm.end(), [&](Index g) { return missing[g] == 0; });
  }
  if (keep_keys) return lo;
  return std::nullopt;
}

// The stable sorted order of all rows of `m` as global rows: sorts by the last key first, then
// stably by each earlier one, so numeric keys always take the radix path. For a single numeric
// key, returns what sort_by_numeric does with `want_keys`.
template <class Index>
std::optional<std::uint64_t> sorted_order(const piece_rows& m, const std::vector<multi_key>& keys,
                                          std::vector<Index>& perm) {
  perm.resize(m.rows);
  std::iota(perm.begin(), perm.end(), Index{0});
  std::optional<std::uint64_t> sorted_keys;
  for (std::size_t k = keys.size(); k-- > 0;) {
    const multi_key& key = keys[k];
    if (key.numeric()) {
      sorted_keys = sort_by_numeric(m, key, perm, k + 1 == keys.size(), keys.size() == 1);
    } else if (m.pieces.size() == 1) {
      const key_column& kc = key.parts[0];
      std::stable_sort(perm.begin(), perm.end(), [&](Index a, Index b) { return kc.compare(a, kc, b) < 0; });
    } else {
      std::stable_sort(perm.begin(), perm.end(), [&](Index a, Index b) {
        const std::size_t pa = m.piece_of[a], pb = m.piece_of[b];
        return key.parts[pa].compare(a - m.starts[pa], key.parts[pb], b - m.starts[pb]) < 0;
      });
    }
  }
  return sorted_keys;
}

template <class Index>
void release_sort_scratch() {
  release_if_large<std::uint64_t>(0);
  release_if_large<std::uint64_t>(1);
  release_if_large<std::uint64_t>(2);
  release_if_large<std::uint8_t>(0);
  release_if_large<Index>(4);
  release_if_large<Index>(5);
}

// Column `c` of the pieces of `m` at global rows `rows`, in that order.
template <class Index>
column gather(const piece_rows& m, std::size_t c, std::span<const Index> rows) {
  const std::size_t n = rows.size();
  const column_type type = m.pieces.front()->column_at(c).type();
  bool nulls = false;
  for (const table* p : m.pieces) nulls |= p->column_at(c).has_nulls();
  auto s = std::make_shared<detail::column_storage>();
  s->type = type;
  s->size = n;
  auto locate = [&](Index g) -> std::pair<std::size_t, std::size_t> {
    if (m.piece_of.empty()) return {0, static_cast<std::size_t>(g)};
    const std::size_t p = m.piece_of[g];
    return {p, static_cast<std::size_t>(g) - m.starts[p]};
  };
  auto fixed = [&]<class T>(T*) {
    std::vector<T> out = output_vector<T>(n);
    if (m.pieces.size() == 1) {
      const T* v = values_of<T>(m.pieces[0]->column_at(c));
      for (std::size_t i = 0; i < n; ++i) out[i] = v[rows[i]];
    } else {
      std::vector<const T*> base;
      for (const table* p : m.pieces) base.push_back(values_of<T>(p->column_at(c)));
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t p = m.piece_of[rows[i]];
        out[i] = base[p][rows[i] - m.starts[p]];
      }
    }
    values_in<T>(*s) = std::move(out);
  };
  if (!for_fixed_width(type, fixed)) {
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const auto [p, r] = locate(rows[i]);
      bytes += m.pieces[p]->column_at(c).string_at(r).size();
    }
    s->chars.reserve(bytes);
    s->offsets.reserve(n + 1);
    s->offsets.push_back(0);
    for (std::size_t i = 0; i < n; ++i) {
      const auto [p, r] = locate(rows[i]);
      s->chars.append(m.pieces[p]->column_at(c).string_at(r));
      s->offsets.push_back(s->chars.size());
    }
  }
  if (nulls) {
    s->validity.assign((n + 63) / 64, 0);
    for (std::size_t i = 0; i < n; ++i) {
      const auto [p, r] = locate(rows[i]);
      if (!m.pieces[p]->column_at(c).is_null(r)) s->validity[i >> 6] |= std::uint64_t{1} << (i & 63);
    }
  }
  return column(std::shared_ptr<const detail::column_storage>(std::move(s)));
}

// The rows of `m` at `rows`; column `known` (if any) is `known_column` instead of gathered.
template <class Index>
table gather_table(const piece_rows& m, std::span<const Index> rows, std::size_t known = SIZE_MAX,
                   const column* known_column = nullptr) {
  const table& first = *m.pieces.front();
  std::vector<column> cols;
  cols.reserve(first.num_columns());
  for (std::size_t c = 0; c < first.num_columns(); ++c) cols.push_back(c == known ? *known_column : gather(m, c, rows));
  return table(first.column_names(), std::move(cols));
}

// The key column rebuilt from its sorted keys (relative to `lo`), which is cheaper than gathering
// it by row.
column decode_keys(const key_column& key, const std::vector<std::uint64_t>& keys, std::uint64_t lo) {
  auto s = std::make_shared<detail::column_storage>();
  s->type = key.type();
  s->size = keys.size();
  auto fill = [&]<class T>(T*) {
    std::vector<T> out = output_vector<T>(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) out[i] = key.decode<T>(keys[i] + lo);
    values_in<T>(*s) = std::move(out);
  };
  for_fixed_width(key.type(), fill);
  return column(std::shared_ptr<const detail::column_storage>(std::move(s)));
}

// Splits `t` by piece ids (each < pieces), keeping row order within each piece.
template <class Id>
std::vector<table> split_by_id(const table& t, const std::vector<Id>& id, std::size_t pieces) {
  const std::size_t n = t.num_rows();
  std::vector<std::size_t> starts(pieces + 1, 0);
  for (Id p : id) ++starts[p + 1];
  std::vector<table> out(pieces);
  for (std::size_t p = 0; p < pieces; ++p) {
    if (starts[p + 1] == n) {
      // Everything in one piece: share the storage instead of copying.
      for (std::size_t q = 0; q < pieces; ++q) out[q] = q == p ? t : t.slice(0, 0);
      return out;
    }
  }
  std::partial_sum(starts.begin(), starts.end(), starts.begin());
  // The rows grouped by piece, each group in row order (a counting sort).
  std::vector<std::size_t> at(starts.begin(), starts.end() - 1);
  auto group = [&]<class Index>(Index) {
    std::vector<Index>& order = scratch<Index>(3, n);
    for (std::size_t i = 0; i < n; ++i) order[at[id[i]]++] = static_cast<Index>(i);
    // One gathered table in piece order, cut into slices: one allocation per column instead of
    // one per piece and column.
    const table grouped = gather_table<Index>(index_pieces({&t}), order);
    for (std::size_t p = 0; p < pieces; ++p) out[p] = grouped.slice(starts[p], starts[p + 1] - starts[p]);
    release_if_large<Index>(3);
  };
  if (n <= std::numeric_limits<std::uint32_t>::max()) {
    group(std::uint32_t{0});
  } else {
    group(std::uint64_t{0});
  }
  return out;
}

struct join_plan {
  std::vector<std::size_t> left_keys, right_keys;
  std::vector<std::uint8_t> keep_right;  // per right column: not merged into its left key
  std::vector<std::string> names;        // output names
};

std::size_t schema_index(const schema_t& schema, const std::string& name, const char* side) {
  for (std::size_t i = 0; i < schema.size(); ++i) {
    if (schema[i].first == name) return i;
  }
  std::vector<std::string> known;
  known.reserve(schema.size());
  for (const auto& [n, t] : schema) known.push_back(n);
  dx::detail::throw_error(dx::detail::error_kind::dataframe,
                          std::string("join: ") + side + " side: " + unknown_column_message(name, known));
}

join_plan plan_join(const schema_t& left, const schema_t& right, const join_spec& spec) {
  if (spec.left_on.empty() || spec.left_on.size() != spec.right_on.size()) {
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            "join: need the same, nonzero number of key columns on both sides (left " +
                                std::to_string(spec.left_on.size()) + ", right " +
                                std::to_string(spec.right_on.size()) + ")");
  }
  join_plan plan;
  plan.keep_right.assign(right.size(), 1);
  for (std::size_t k = 0; k < spec.left_on.size(); ++k) {
    const std::size_t l = schema_index(left, spec.left_on[k], "left");
    const std::size_t r = schema_index(right, spec.right_on[k], "right");
    if (left[l].second != right[r].second) {
      dx::detail::throw_error(dx::detail::error_kind::dataframe,
                              "join: key types differ: left '" + left[l].first + "' is " +
                                  std::string(type_name(left[l].second)) + ", right '" + right[r].first + "' is " +
                                  std::string(type_name(right[r].second)) + "; cast one of them");
    }
    plan.left_keys.push_back(l);
    plan.right_keys.push_back(r);
    if (spec.left_on[k] == spec.right_on[k]) plan.keep_right[r] = 0;
  }
  std::unordered_set<std::string> left_names, right_names;
  for (const auto& [n, t] : left) left_names.insert(n);
  for (std::size_t i = 0; i < right.size(); ++i) {
    if (plan.keep_right[i]) right_names.insert(right[i].first);
  }
  for (const auto& [n, t] : left) plan.names.push_back(right_names.contains(n) ? n + "_x" : n);
  for (std::size_t i = 0; i < right.size(); ++i) {
    if (!plan.keep_right[i]) continue;
    const std::string& n = right[i].first;
    plan.names.push_back(left_names.contains(n) ? n + "_y" : n);
  }
  std::unordered_set<std::string> seen;
  for (const auto& n : plan.names) {
    if (!seen.insert(n).second) {
      dx::detail::throw_error(dx::detail::error_kind::dataframe,
                              "join: the suffixes _x/_y give two columns named '" + n + "'; rename one first");
    }
  }
  return plan;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Sorting

table sample_sort_keys(const table& part, const sort_spec& spec, std::size_t samples) {
  const std::vector<std::size_t> indices = column_indices(part, spec.by);
  std::vector<column> cols;
  for (std::size_t i : indices) cols.push_back(part.column_at(i));
  const table keys(spec.by, std::move(cols));
  const std::size_t n = keys.num_rows();
  if (n <= samples) return keys;
  std::vector<std::int64_t> rows(samples);
  for (std::size_t i = 0; i < samples; ++i) rows[i] = static_cast<std::int64_t>(i * n / samples);
  return take(keys, rows);
}

table sort_boundaries(std::span<const table> samples, const sort_spec& spec, std::size_t parts) {
  const table all = concat(samples);
  if (all.num_columns() == 0) return all;
  const std::vector<bool> ascending = directions(spec);
  const std::vector<key_column> keys = key_columns(all, column_indices(all, spec.by), ascending);
  const std::size_t m = all.num_rows();
  const piece_rows rows = index_pieces({&all});
  std::vector<std::uint64_t> order;
  sorted_order(rows, multi_keys(rows, spec.by, ascending), order);
  // Boundary j closes range j: the last sample of the j-th of `parts` equal shares. Equal keys
  // must share a range, so repeated boundaries are dropped.
  std::vector<std::int64_t> chosen;
  for (std::size_t j = 1; j < parts; ++j) {
    const std::size_t end = j * m / parts;
    if (end == 0) continue;
    const auto row = static_cast<std::int64_t>(order[end - 1]);
    if (!chosen.empty() &&
        compare_rows(keys, static_cast<std::size_t>(chosen.back()), keys, static_cast<std::size_t>(row)) == 0) {
      continue;
    }
    chosen.push_back(row);
  }
  std::vector<column> cols;
  for (const auto& name : spec.by) cols.push_back(all[name]);
  return take(table(spec.by, std::move(cols)), chosen);
}

std::vector<table> range_split(const table& part, const sort_spec& spec, const table& boundaries) {
  const std::size_t nb = boundaries.num_rows();
  if (nb == 0) return {part};
  const std::vector<bool> ascending = directions(spec);
  const std::vector<std::size_t> part_idx = column_indices(part, spec.by);
  const std::vector<std::size_t> bound_idx = column_indices(boundaries, spec.by);
  for (std::size_t k = 0; k < part_idx.size(); ++k) {
    const column_type a = part.column_at(part_idx[k]).type(), b = boundaries.column_at(bound_idx[k]).type();
    if (a != b) {
      dx::detail::throw_error(dx::detail::error_kind::dataframe,
                              "sort: column '" + spec.by[k] + "' is " + std::string(type_name(a)) +
                                  " in one partition and " + std::string(type_name(b)) + " in another");
    }
  }
  const std::vector<key_column> keys = key_columns(part, part_idx, ascending);
  const std::vector<key_column> bounds = key_columns(boundaries, bound_idx, ascending);
  const std::size_t n = part.num_rows();
  // A row goes to the piece numbered by how many boundaries sort strictly before it.
  auto assign = [&]<class Id>(std::vector<Id>& piece) {
    piece.resize(n);
    if (keys.size() == 1 && keys[0].numeric()) {
      const key_column& key = keys[0];
      const key_column& bound = bounds[0];
      // Boundaries are sorted; missing ones are last and never before any row.
      std::vector<std::uint64_t> valid_bounds;
      for (std::size_t j = 0; j < nb; ++j) {
        if (!bound.missing(j)) valid_bounds.push_back(bound.encode(j));
      }
      const auto nvalid = static_cast<Id>(valid_bounds.size());
      const std::uint64_t* vb = valid_bounds.data();
      for (std::size_t i = 0; i < n; ++i) {
        if (key.missing(i)) {
          piece[i] = nvalid;
          continue;
        }
        const std::uint64_t u = key.encode(i);
        if (nvalid <= 16) {
          Id c = 0;
          for (Id j = 0; j < nvalid; ++j) c += vb[j] < u ? 1 : 0;
          piece[i] = c;
        } else {
          piece[i] = static_cast<Id>(std::lower_bound(vb, vb + nvalid, u) - vb);
        }
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        std::size_t lo = 0, hi = nb;
        while (lo < hi) {
          const std::size_t mid = (lo + hi) / 2;
          if (compare_rows(bounds, mid, keys, i) < 0) {
            lo = mid + 1;
          } else {
            hi = mid;
          }
        }
        piece[i] = static_cast<Id>(lo);
      }
    }
    return split_by_id(part, piece, nb + 1);
  };
  if (nb < 256) {
    std::vector<std::uint8_t> piece;
    return assign(piece);
  }
  std::vector<std::uint32_t> piece;
  return assign(piece);
}

table sort_table(std::span<const table> pieces, const sort_spec& spec) {
  std::vector<const table*> used;
  for (const table& p : pieces) {
    if (p.num_rows() > 0) used.push_back(&p);
  }
  if (used.empty()) return concat(pieces);  // no rows, but the schema when any piece has one
  if (used.size() > std::numeric_limits<std::uint16_t>::max()) {
    const table all = concat(pieces);
    return sort_table(std::span<const table>(&all, 1), spec);
  }
  const schema_t schema = schema_of(*used.front());
  for (const table* p : used) {
    if (schema_of(*p) != schema)
      dx::detail::throw_error(dx::detail::error_kind::dataframe, "sort: partitions with different columns");
  }
  const std::vector<bool> ascending = directions(spec);
  const piece_rows m = index_pieces(std::move(used));
  const std::vector<multi_key> keys = multi_keys(m, spec.by, ascending);
  auto sort_as = [&]<class Index>(Index) {
    std::vector<Index>& order = scratch<Index>(4, 0);
    table out;
    if (const std::optional<std::uint64_t> lo = sorted_order(m, keys, order)) {
      const column key = decode_keys(keys[0].parts[0], scratch<std::uint64_t>(0, m.rows), *lo);
      out = gather_table<Index>(m, order, column_index(*m.pieces[0], spec.by[0]), &key);
    } else {
      out = gather_table<Index>(m, order);
    }
    release_sort_scratch<Index>();
    return out;
  };
  if (m.rows <= std::numeric_limits<std::uint32_t>::max()) return sort_as(std::uint32_t{0});
  return sort_as(std::uint64_t{0});
}

// ---------------------------------------------------------------------------------------------
// Shuffling

std::vector<table> hash_split(const table& t, const std::vector<std::string>& keys, std::size_t buckets) {
  if (buckets <= 1) return {t};
  const std::vector<std::size_t> indices = column_indices(t, keys);
  std::vector<std::uint64_t> hashes;
  hash_rows(t, indices, hashes);
  std::vector<std::uint32_t> id(hashes.size());
  for (std::size_t i = 0; i < hashes.size(); ++i) id[i] = static_cast<std::uint32_t>(hashes[i] % buckets);
  return split_by_id(t, id, buckets);
}
// ---------------------------------------------------------------------------------------------
// Joining

schema_t join_schema(const schema_t& left, const schema_t& right, const join_spec& spec) {
  const join_plan plan = plan_join(left, right, spec);
  schema_t out;
  std::size_t next = 0;
  for (const auto& [n, t] : left) out.emplace_back(plan.names[next++], t);
  for (std::size_t i = 0; i < right.size(); ++i) {
    if (plan.keep_right[i]) out.emplace_back(plan.names[next++], right[i].second);
  }
  return out;
}

table hash_join(const table& left, const table& right, const join_spec& spec) {
  const join_plan plan = plan_join(schema_of(left), schema_of(right), spec);
  const std::vector<bool> ascending(plan.left_keys.size(), true);
  const std::vector<key_column> lkeys = key_columns(left, plan.left_keys, ascending);
  const std::vector<key_column> rkeys = key_columns(right, plan.right_keys, ascending);
  auto has_missing = [](const std::vector<key_column>& keys, std::size_t row) {
    for (const auto& k : keys) {
      if (k.missing(row)) return true;
    }
    return false;
  };

  // Chained hash table over the right rows with keys: head per slot, next per row. Rows are
  // inserted last to first, so each chain lists its rows in right order.
  const std::size_t nr = right.num_rows(), nl = left.num_rows();
  constexpr std::uint64_t none = std::numeric_limits<std::uint64_t>::max();
  std::vector<std::uint64_t> rhash, lhash;
  hash_rows(right, plan.right_keys, rhash);
  const std::size_t slots = std::bit_ceil(std::max<std::size_t>(16, 2 * nr));
  const std::uint64_t mask = slots - 1;
  std::vector<std::uint64_t> head(slots, none), next(nr, none);
  for (std::size_t r = nr; r-- > 0;) {
    if (has_missing(rkeys, r)) continue;
    const std::uint64_t s = rhash[r] & mask;
    next[r] = head[s];
    head[s] = r;
  }

  hash_rows(left, plan.left_keys, lhash);
  std::vector<std::int64_t> lrows, rrows;
  lrows.reserve(nl);
  rrows.reserve(nl);
  for (std::size_t l = 0; l < nl; ++l) {
    bool matched = false;
    if (!has_missing(lkeys, l)) {
      const std::uint64_t h = lhash[l];
      for (std::uint64_t r = head[h & mask]; r != none; r = next[r]) {
        if (rhash[r] != h) continue;
        bool equal = true;
        for (std::size_t k = 0; k < lkeys.size() && equal; ++k) equal = lkeys[k].equal_value(l, rkeys[k], r);
        if (!equal) continue;
        lrows.push_back(static_cast<std::int64_t>(l));
        rrows.push_back(static_cast<std::int64_t>(r));
        matched = true;
      }
    }
    if (!matched && spec.how == join_kind::left) {
      lrows.push_back(static_cast<std::int64_t>(l));
      rrows.push_back(-1);
    }
  }

  const table lt = take(left, lrows);
  const table rt = take(right, rrows);
  std::vector<column> cols(lt.columns().begin(), lt.columns().end());
  for (std::size_t i = 0; i < rt.num_columns(); ++i) {
    if (plan.keep_right[i]) cols.push_back(rt.column_at(i));
  }
  return table(plan.names, std::move(cols));
}

}  // namespace dx::detail::df
