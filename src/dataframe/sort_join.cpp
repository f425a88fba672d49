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

  double double_at(std::size_t row) const noexcept { return doubles_[row]; }

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

piece_rows index_pieces(std::vector<const table*> pieces, bool with_piece_of = true) {
  piece_rows m;
  m.pieces = std::move(pieces);
  for (const table* p : m.pieces) {
    m.starts.push_back(m.rows);
    m.rows += p->num_rows();
  }
  if (m.pieces.size() > 1 && with_piece_of) {
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

// The rows of `m` at `rows`.
template <class Index>
table gather_table(const piece_rows& m, std::span<const Index> rows) {
  const table& first = *m.pieces.front();
  std::vector<column> cols;
  cols.reserve(first.num_columns());
  for (std::size_t c = 0; c < first.num_columns(); ++c) cols.push_back(gather(m, c, rows));
  return table(first.column_names(), std::move(cols));
}

// ---------------------------------------------------------------------------------------------
// One fixed-width key: a radix sort of (key, row) pairs
//
// A most-significant-digit pass scatters every row's key (relative to the smallest) and row number
// into one of up to 2048 buckets by its top bits, missing values into a last one; each bucket is
// then sorted on its own by the remaining bits. Both steps run in chunks on `run`: the scatter in
// row ranges (each chunk owns its slots of every bucket, so the order stays stable), the buckets
// one by one. Apart from the input and the output, a sort holds 12 bytes per row, and its
// temporaries are first touched by the threads that fill them.

constexpr unsigned msd_bits = 11;
constexpr std::size_t sort_chunk_rows = std::size_t{1} << 16;  // a multiple of 64: validity words

void run_chunks(const parallel_runner& run, std::size_t chunks, const std::function<void(std::size_t)>& fn) {
  if (chunks == 0) return;
  if (run && chunks > 1) {
    run(chunks, fn);
    return;
  }
  for (std::size_t i = 0; i < chunks; ++i) fn(i);
}

// An array left uninitialized, so that its pages are first touched where it is filled.
template <class T>
std::unique_ptr<T[]> uninitialized_array(std::size_t n) {
  std::unique_ptr<T[]> a(new T[n]);
  advise_huge_pages(a.get(), n * sizeof(T));
  return a;
}

// Stable sort of keys[0, n) (with their rows) by the low `bits` bits, most significant digit first.
template <class Index>
void sort_bucket(std::uint64_t* keys, Index* rows, std::size_t n, unsigned bits) {
  while (n > 1 && bits > 0) {
    if (n <= 32) {
      sort_run(keys, rows, n);
      return;
    }
    // Digits of about log2(n) bits: a few rows per sub-bucket, without clearing counters for
    // thousands of empty ones.
    const unsigned digit_bits = std::min({bits, msd_bits, std::max(3u, static_cast<unsigned>(std::bit_width(n)) - 1)});
    const unsigned shift = bits - digit_bits;
    const std::uint64_t mask = (std::uint64_t{1} << digit_bits) - 1;
    std::array<std::uint32_t, radix_buckets> count{};
    for (std::size_t i = 0; i < n; ++i) ++count[(keys[i] >> shift) & mask];
    bits = shift;
    if (count[(keys[0] >> shift) & mask] == n) continue;  // one digit for all: the next one decides
    thread_local std::vector<std::uint64_t> key_scratch;
    thread_local std::vector<Index> row_scratch;
    if (key_scratch.size() < n) key_scratch.resize(n);
    if (row_scratch.size() < n) row_scratch.resize(n);
    std::array<std::uint32_t, radix_buckets> at{};
    std::uint32_t sum = 0;
    for (std::size_t d = 0; d <= mask; ++d) {
      at[d] = sum;
      sum += count[d];
    }
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t to = at[(keys[i] >> shift) & mask]++;
      key_scratch[to] = keys[i];
      row_scratch[to] = rows[i];
    }
    std::copy_n(key_scratch.data(), n, keys);
    std::copy_n(row_scratch.data(), n, rows);
    if (key_scratch.size() * sizeof(std::uint64_t) > (std::size_t{32} << 20)) {
      std::vector<std::uint64_t>().swap(key_scratch);
      std::vector<Index>().swap(row_scratch);
    }
    std::size_t begin = 0;
    for (std::size_t d = 0; d <= mask; ++d) {
      if (count[d] > 1) sort_bucket(keys + begin, rows + begin, count[d], bits);
      begin += count[d];
    }
    return;
  }
}

// Calls f(piece, first local row, end local row, first global row) for the parts of global rows
// [begin, end) in each piece.
template <class F>
void for_segments(const piece_rows& m, std::size_t begin, std::size_t end, F&& f) {
  std::size_t p =
      static_cast<std::size_t>(std::upper_bound(m.starts.begin(), m.starts.end(), begin) - m.starts.begin()) - 1;
  while (begin < end) {
    const std::size_t piece_end = m.starts[p] + m.pieces[p]->num_rows();
    const std::size_t stop = std::min(end, piece_end);
    f(p, begin - m.starts[p], stop - m.starts[p], begin);
    begin = stop;
    ++p;
  }
}

struct chunk_stats {
  std::uint64_t lo = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t hi = 0;
  bool valid = false;
  bool negative_zero = false;
};

// More pieces are concatenated first: the gather finds a row's piece by comparing with each start.
constexpr std::size_t radix_max_pieces = 8;

template <class Index>
table radix_sort_one_key(const piece_rows& m, const multi_key& key, std::size_t key_index, const parallel_runner& run) {
  const std::size_t n = m.rows;
  const std::size_t chunks = (n + sort_chunk_rows - 1) / sort_chunk_rows;
  auto chunk_range = [&](std::size_t c) {
    return std::pair{c * sort_chunk_rows, std::min(n, (c + 1) * sort_chunk_rows)};
  };

  // The range of the keys, so that the top digit splits the keys actually present.
  std::vector<chunk_stats> stats(chunks);
  run_chunks(run, chunks, [&](std::size_t c) {
    chunk_stats s;
    const auto [b, e] = chunk_range(c);
    for_segments(m, b, e, [&](std::size_t p, std::size_t rb, std::size_t re, std::size_t) {
      const key_column& kc = key.parts[p];
      for (std::size_t r = rb; r < re; ++r) {
        if (kc.missing(r)) continue;
        const std::uint64_t u = kc.encode(r);
        s.lo = std::min(s.lo, u);
        s.hi = std::max(s.hi, u);
        s.valid = true;
        s.negative_zero |= kc.negative_zero(r);
      }
    });
    stats[c] = s;
  });
  chunk_stats all;
  for (const chunk_stats& s : stats) {
    all.lo = std::min(all.lo, s.lo);
    all.hi = std::max(all.hi, s.hi);
    all.valid |= s.valid;
    all.negative_zero |= s.negative_zero;
  }
  if (!all.valid) {
    // Every key is missing, so all are equal: the rows stay in order.
    std::vector<table> parts;
    for (const table* p : m.pieces) parts.push_back(*p);
    return concat(parts);
  }
  const std::uint64_t lo = all.lo;
  const unsigned bits = static_cast<unsigned>(std::bit_width(all.hi - lo));
  const unsigned top_bits = std::min(bits, msd_bits);
  const unsigned shift = bits - top_bits;
  const std::size_t buckets = (std::size_t{1} << top_bits) + 1;  // the last: missing keys
  const std::size_t missing_bucket = buckets - 1;

  // Where each chunk's rows of each bucket go: bucket by bucket, chunk by chunk.
  std::vector<std::uint32_t> slots(chunks * buckets, 0);
  run_chunks(run, chunks, [&](std::size_t c) {
    std::uint32_t* count = slots.data() + c * buckets;
    const auto [b, e] = chunk_range(c);
    for_segments(m, b, e, [&](std::size_t p, std::size_t rb, std::size_t re, std::size_t) {
      const key_column& kc = key.parts[p];
      for (std::size_t r = rb; r < re; ++r) {
        ++count[kc.missing(r) ? missing_bucket : static_cast<std::size_t>((kc.encode(r) - lo) >> shift)];
      }
    });
  });
  std::vector<std::size_t> bucket_start(buckets + 1, 0);
  {
    std::uint64_t sum = 0;
    for (std::size_t d = 0; d < buckets; ++d) {
      bucket_start[d] = sum;
      for (std::size_t c = 0; c < chunks; ++c) {
        const std::uint32_t here = slots[c * buckets + d];
        slots[c * buckets + d] = static_cast<std::uint32_t>(sum);
        sum += here;
      }
    }
    bucket_start[buckets] = sum;
  }
  std::unique_ptr<std::uint64_t[]> keys = uninitialized_array<std::uint64_t>(n);
  std::unique_ptr<Index[]> order = uninitialized_array<Index>(n);
  run_chunks(run, chunks, [&](std::size_t c) {
    std::uint32_t* at = slots.data() + c * buckets;
    const auto [b, e] = chunk_range(c);
    std::uint64_t* k = keys.get();
    Index* o = order.get();
    for_segments(m, b, e, [&](std::size_t p, std::size_t rb, std::size_t re, std::size_t g) {
      const key_column& kc = key.parts[p];
      for (std::size_t r = rb; r < re; ++r, ++g) {
        if (kc.missing(r)) {
          const std::uint32_t to = at[missing_bucket]++;
          k[to] = 0;
          o[to] = static_cast<Index>(g);
          continue;
        }
        const std::uint64_t u = kc.encode(r) - lo;
        const std::uint32_t to = at[static_cast<std::size_t>(u >> shift)]++;
        k[to] = u;
        o[to] = static_cast<Index>(g);
      }
    });
  });
  std::vector<std::uint32_t>().swap(slots);
  // Buckets several at a time, so that a claim is worth its synchronisation.
  constexpr std::size_t buckets_per_claim = 16;
  if (shift > 0) {
    run_chunks(run, (missing_bucket + buckets_per_claim - 1) / buckets_per_claim, [&](std::size_t c) {
      for (std::size_t d = c * buckets_per_claim; d < std::min(missing_bucket, (c + 1) * buckets_per_claim); ++d) {
        const std::size_t b = bucket_start[d], size = bucket_start[d + 1] - b;
        if (size > 1) sort_bucket(keys.get() + b, order.get() + b, size, shift);
      }
    });
  }
  const std::size_t present = bucket_start[missing_bucket];

  // The output, each column filled chunk by chunk: the key from the sorted keys (when they keep
  // it exactly), the others gathered by row.
  const table& first = *m.pieces.front();
  const std::size_t ncols = first.num_columns();
  const bool decode_key = !all.negative_zero;
  std::vector<std::shared_ptr<detail::column_storage>> out(ncols);
  std::vector<std::uint8_t> nulls(ncols, 0);
  run_chunks(run, ncols, [&](std::size_t c) {
    auto s = std::make_shared<detail::column_storage>();
    s->type = first.column_at(c).type();
    s->size = n;
    for (const table* p : m.pieces) nulls[c] |= p->column_at(c).has_nulls() ? 1 : 0;
    for_fixed_width(s->type, [&]<class T>(T*) {
      std::vector<T>& v = values_in<T>(*s);
      v.reserve(n);
      advise_huge_pages(v.data(), n * sizeof(T));
      v.resize(n);
    });
    if (nulls[c]) s->validity.assign((n + 63) / 64, 0);
    out[c] = std::move(s);
  });
  const std::size_t pieces = m.pieces.size();
  auto locate = [&](Index g) -> std::pair<std::size_t, std::size_t> {
    std::size_t p = 0;
    for (std::size_t q = 1; q < pieces; ++q) p += static_cast<std::size_t>(g) >= m.starts[q] ? 1 : 0;
    return {p, static_cast<std::size_t>(g) - m.starts[p]};
  };
  run_chunks(run, chunks, [&](std::size_t chunk) {
    const auto [b, e] = chunk_range(chunk);
    const Index* o = order.get();
    for (std::size_t c = 0; c < ncols; ++c) {
      detail::column_storage& s = *out[c];
      const bool from_keys = c == key_index && decode_key;
      for_fixed_width(s.type, [&]<class T>(T*) {
        T* dst = values_in<T>(s).data();
        std::size_t i = b;
        if (from_keys) {
          const key_column& kc = key.parts[0];
          const std::uint64_t* k = keys.get();
          for (; i < std::min(e, present); ++i) dst[i] = kc.template decode<T>(k[i] + lo);
        }
        if (pieces == 1) {
          const T* src = values_of<T>(m.pieces[0]->column_at(c));
          for (; i < e; ++i) dst[i] = src[o[i]];
        } else {
          std::array<const T*, radix_max_pieces> base{};
          for (std::size_t p = 0; p < pieces; ++p) base[p] = values_of<T>(m.pieces[p]->column_at(c));
          for (; i < e; ++i) {
            const auto [p, r] = locate(o[i]);
            dst[i] = base[p][r];
          }
        }
      });
      if (nulls[c]) {
        for (std::size_t i = b; i < e; ++i) {
          const auto [p, r] = locate(o[i]);
          if (!m.pieces[p]->column_at(c).is_null(r)) s.validity[i >> 6] |= std::uint64_t{1} << (i & 63);
        }
      }
    }
  });
  std::vector<column> cols;
  cols.reserve(ncols);
  for (std::size_t c = 0; c < ncols; ++c) {
    if (out[c]->type == column_type::string) {
      cols.push_back(gather<Index>(m, c, std::span<const Index>(order.get(), n)));
    } else {
      cols.push_back(column(std::shared_ptr<const detail::column_storage>(std::move(out[c]))));
    }
  }
  return table(first.column_names(), std::move(cols));
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
  if (spec.how == join_kind::semi || spec.how == join_kind::anti) {
    // Only the left side's columns come out, under their own names.
    for (const auto& [n, t] : left) plan.names.push_back(n);
    plan.keep_right.assign(right.size(), 0);
    return plan;
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

table sort_table(std::span<const table> pieces, const sort_spec& spec, const parallel_runner& run) {
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
  std::size_t rows = 0;
  for (const table* p : used) rows += p->num_rows();
  const std::size_t first_key = column_index(*used.front(), spec.by.front());
  const column_type key_type = used.front()->column_at(first_key).type();
  if (spec.by.size() == 1 && key_type != column_type::string && rows <= std::numeric_limits<std::uint32_t>::max()) {
    if (used.size() > radix_max_pieces) {
      const table all = concat(pieces);
      return sort_table(std::span<const table>(&all, 1), spec, run);
    }
    bool strings = false;
    for (std::size_t c = 0; c < used.front()->num_columns(); ++c) {
      strings |= used.front()->column_at(c).type() == column_type::string;
    }
    const piece_rows m = index_pieces(std::move(used), strings);
    return radix_sort_one_key<std::uint32_t>(m, multi_keys(m, spec.by, ascending)[0], first_key, run);
  }
  const piece_rows m = index_pieces(std::move(used));
  const std::vector<multi_key> keys = multi_keys(m, spec.by, ascending);
  auto sort_as = [&]<class Index>(Index) {
    std::vector<Index>& order = scratch<Index>(4, 0);
    sorted_order(m, keys, order);
    table out = gather_table<Index>(m, order);
    release_sort_scratch<Index>();
    return out;
  };
  if (m.rows <= std::numeric_limits<std::uint32_t>::max()) return sort_as(std::uint32_t{0});
  return sort_as(std::uint64_t{0});
}

table top_rows(const table& part, const sort_spec& spec, std::size_t k) {
  const std::size_t n = part.num_rows();
  if (k >= n) return sort_table(std::span<const table>(&part, 1), spec);
  if (k == 0) return part.slice(0, 0);
  const std::vector<bool> ascending = directions(spec);
  const std::vector<key_column> keys = key_columns(part, column_indices(part, spec.by), ascending);
  // A max-heap of the best k rows so far: its top is the worst of them, and a row enters only by
  // sorting before it. Ties go by row number, so the result is that of a stable sort.
  std::vector<std::int64_t> rows;
  if (keys.size() == 1 && keys[0].numeric()) {
    struct candidate {
      std::uint64_t missing;
      std::uint64_t key;
      std::uint64_t row;
      bool operator<(const candidate& o) const noexcept {
        return missing != o.missing ? missing < o.missing : key != o.key ? key < o.key : row < o.row;
      }
    };
    const key_column& kc = keys[0];
    std::vector<candidate> heap;
    heap.reserve(k);
    for (std::size_t r = 0; r < n; ++r) {
      const bool miss = kc.missing(r);
      const candidate c{miss ? 1u : 0u, miss ? 0 : kc.encode(r), r};
      if (heap.size() < k) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end());
      } else if (c < heap.front()) {
        std::pop_heap(heap.begin(), heap.end());
        heap.back() = c;
        std::push_heap(heap.begin(), heap.end());
      }
    }
    std::sort_heap(heap.begin(), heap.end());
    for (const candidate& c : heap) rows.push_back(static_cast<std::int64_t>(c.row));
  } else {
    auto before = [&](std::int64_t a, std::int64_t b) {
      const int c = compare_rows(keys, static_cast<std::size_t>(a), keys, static_cast<std::size_t>(b));
      return c != 0 ? c < 0 : a < b;
    };
    rows.reserve(k);
    for (std::size_t r = 0; r < n; ++r) {
      const auto row = static_cast<std::int64_t>(r);
      if (rows.size() < k) {
        rows.push_back(row);
        std::push_heap(rows.begin(), rows.end(), before);
      } else if (before(row, rows.front())) {
        std::pop_heap(rows.begin(), rows.end(), before);
        rows.back() = row;
        std::push_heap(rows.begin(), rows.end(), before);
      }
    }
    std::sort_heap(rows.begin(), rows.end(), before);
  }
  return take(part, rows);
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

namespace {

// A fixed-width key as the join table holds it: equal values (non-missing) give equal words.
// -0.0 becomes 0.0 so that it matches 0.0, as == says.
std::uint64_t join_word(const key_column& k, std::size_t row) noexcept {
  switch (k.type()) {
    case column_type::float64: {
      const double d = k.double_at(row);
      return std::bit_cast<std::uint64_t>(d == 0 ? 0.0 : d);
    }
    default:
      return k.encode(row);
  }
}

inline std::uint64_t join_hash(std::uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

// The joined table from the rows of each side (a negative right row: nulls), the left columns
// kept as they are when `left_whole`.
table assemble_join(const table& left, const table& right, const join_plan& plan,
                    const std::vector<std::int64_t>* lrows, const std::vector<std::int64_t>* rrows) {
  std::vector<column> cols;
  for (std::size_t c = 0; c < left.num_columns(); ++c)
    cols.push_back(lrows ? take(left.column_at(c), *lrows) : left.column_at(c));
  if (rrows) {
    for (std::size_t c = 0; c < right.num_columns(); ++c) {
      if (plan.keep_right[c]) cols.push_back(take(right.column_at(c), *rrows));
    }
  }
  return table(plan.names, std::move(cols));
}

// One fixed-width key pair. An open-addressing table of the right side's distinct keys, each
// with its rows in right order (first[slot], then next[row]); the probe walks the left rows
// once. Empty optional: the right side has more rows than a 32-bit row number holds.
std::optional<table> join_one_fixed_key(const table& left, const table& right, const join_plan& plan,
                                        const join_spec& spec) {
  const std::size_t nl = left.num_rows(), nr = right.num_rows();
  if (nr >= std::numeric_limits<std::uint32_t>::max()) return std::nullopt;
  const key_column lk(left.column_at(plan.left_keys[0]), true);
  const key_column rk(right.column_at(plan.right_keys[0]), true);
  constexpr std::uint32_t none = std::numeric_limits<std::uint32_t>::max();
  const std::size_t slots = std::bit_ceil(std::max<std::size_t>(16, 2 * nr));
  const std::uint64_t mask = slots - 1;
  std::vector<std::uint64_t> slot_word(slots);
  std::vector<std::uint32_t> slot_first(slots, none), slot_last(slots, none), next(nr, none);
  bool distinct = true;
  for (std::size_t r = 0; r < nr; ++r) {
    if (rk.missing(r)) continue;
    const std::uint64_t w = join_word(rk, r);
    std::uint64_t s = join_hash(w) & mask;
    while (slot_first[s] != none && slot_word[s] != w) s = (s + 1) & mask;
    if (slot_first[s] == none) {
      slot_word[s] = w;
      slot_first[s] = static_cast<std::uint32_t>(r);
    } else {
      next[slot_last[s]] = static_cast<std::uint32_t>(r);
      distinct = false;
    }
    slot_last[s] = static_cast<std::uint32_t>(r);
  }
  std::vector<std::uint32_t>().swap(slot_last);
  auto probe = [&](std::size_t l) -> std::uint32_t {
    if (lk.missing(l)) return none;
    const std::uint64_t w = join_word(lk, l);
    for (std::uint64_t s = join_hash(w) & mask;; s = (s + 1) & mask) {
      if (slot_first[s] == none) return none;
      if (slot_word[s] == w) return slot_first[s];
    }
  };
  const join_kind how = spec.how;
  if (how == join_kind::semi || how == join_kind::anti || distinct) {
    // At most one output row per left row.
    std::vector<std::int64_t> lrows, rrows;
    reserve_large(lrows, nl);
    if (how == join_kind::inner || how == join_kind::left) reserve_large(rrows, nl);
    for (std::size_t l = 0; l < nl; ++l) {
      const std::uint32_t r = probe(l);
      const bool keep = how == join_kind::anti ? r == none : (r != none || how == join_kind::left);
      if (!keep) continue;
      lrows.push_back(static_cast<std::int64_t>(l));
      if (how == join_kind::inner || how == join_kind::left)
        rrows.push_back(r == none ? -1 : static_cast<std::int64_t>(r));
    }
    const bool left_whole = lrows.size() == nl;
    if (left_whole) std::vector<std::int64_t>().swap(lrows);
    return assemble_join(left, right, plan, left_whole ? nullptr : &lrows,
                         how == join_kind::inner || how == join_kind::left ? &rrows : nullptr);
  }
  std::vector<std::int64_t> lrows, rrows;
  reserve_large(lrows, nl);
  reserve_large(rrows, nl);
  for (std::size_t l = 0; l < nl; ++l) {
    std::uint32_t r = probe(l);
    if (r == none && how == join_kind::left) {
      lrows.push_back(static_cast<std::int64_t>(l));
      rrows.push_back(-1);
    }
    for (; r != none; r = next[r]) {
      lrows.push_back(static_cast<std::int64_t>(l));
      rrows.push_back(static_cast<std::int64_t>(r));
    }
  }
  return assemble_join(left, right, plan, &lrows, &rrows);
}

}  // namespace

table hash_join(const table& left, const table& right, const join_spec& spec) {
  const join_plan plan = plan_join(schema_of(left), schema_of(right), spec);
  if (plan.left_keys.size() == 1 && left.column_at(plan.left_keys[0]).type() != column_type::string) {
    if (std::optional<table> joined = join_one_fixed_key(left, right, plan, spec)) return *std::move(joined);
  }
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
  if (spec.how == join_kind::semi || spec.how == join_kind::anti) {
    // Each left row once: those with a match (semi) or without one (anti).
    std::vector<std::uint8_t> matched(nl, 0);
    for (std::int64_t l : lrows) matched[static_cast<std::size_t>(l)] = 1;
    std::vector<std::int64_t> kept;
    for (std::size_t l = 0; l < nl; ++l) {
      if ((matched[l] != 0) == (spec.how == join_kind::semi)) kept.push_back(static_cast<std::int64_t>(l));
    }
    return assemble_join(left, right, plan, &kept, nullptr);
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
