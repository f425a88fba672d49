// Column primitives the kernels share: building, gathering, concatenating, hashing, comparing.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dataframe/kernels.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace dx::detail::df {

schema_t schema_of(const table& t) {
  schema_t s;
  s.reserve(t.num_columns());
  for (std::size_t i = 0; i < t.num_columns(); ++i) s.emplace_back(t.column_names()[i], t.column_at(i).type());
  return s;
}

table empty_table(const schema_t& schema) {
  std::vector<std::string> names;
  std::vector<column> cols;
  for (const auto& [n, t] : schema) {
    names.push_back(n);
    cols.push_back(column_builder(t).finish());
  }
  return table(std::move(names), std::move(cols));
}

std::size_t column_index(const table& t, std::string_view name) {
  if (auto i = t.find(name)) return *i;
  dx::detail::throw_error(dx::detail::error_kind::dataframe, unknown_column_message(name, t.column_names()));
}

std::vector<std::size_t> column_indices(const table& t, const std::vector<std::string>& names) {
  std::vector<std::size_t> out;
  out.reserve(names.size());
  for (const auto& n : names) out.push_back(column_index(t, n));
  return out;
}

// ---------------------------------------------------------------------------------------------
// column_builder

column_builder::column_builder(column_type type, std::size_t expected_rows)
    : storage_(std::make_shared<detail::column_storage>()) {
  storage_->type = type;
  switch (type) {
    case column_type::int64:
    case column_type::timestamp:
      storage_->ints.reserve(expected_rows);
      break;
    case column_type::float64:
      storage_->doubles.reserve(expected_rows);
      break;
    case column_type::boolean:
      storage_->bools.reserve(expected_rows);
      break;
    case column_type::string:
      storage_->offsets.reserve(expected_rows + 1);
      storage_->offsets.push_back(0);
      break;
  }
}

void column_builder::mark_valid() {
  if (!has_nulls_) return;
  const std::size_t i = storage_->size;
  if ((i >> 6) >= storage_->validity.size()) storage_->validity.push_back(0);
  storage_->validity[i >> 6] |= std::uint64_t{1} << (i & 63);
}

void column_builder::append_int64(std::int64_t v) {
  mark_valid();
  storage_->ints.push_back(v);
  ++storage_->size;
}
void column_builder::append_float64(double v) {
  mark_valid();
  storage_->doubles.push_back(v);
  ++storage_->size;
}
void column_builder::append_bool(bool v) {
  mark_valid();
  storage_->bools.push_back(v ? 1 : 0);
  ++storage_->size;
}
void column_builder::append_string(std::string_view v) {
  mark_valid();
  storage_->chars.append(v);
  storage_->offsets.push_back(storage_->chars.size());
  ++storage_->size;
}

void column_builder::append_null() {
  const std::size_t i = storage_->size;
  if (!has_nulls_) {
    has_nulls_ = true;
    // Every row so far had a value.
    storage_->validity.assign(i / 64 + 1, 0);
    for (std::size_t w = 0; w < i / 64; ++w) storage_->validity[w] = ~std::uint64_t{0};
    if (i % 64) storage_->validity[i / 64] = (std::uint64_t{1} << (i % 64)) - 1;
  } else if ((i >> 6) >= storage_->validity.size()) {
    storage_->validity.push_back(0);
  }
  switch (storage_->type) {
    case column_type::int64:
    case column_type::timestamp:
      storage_->ints.push_back(0);
      break;
    case column_type::float64:
      storage_->doubles.push_back(0.0);
      break;
    case column_type::boolean:
      storage_->bools.push_back(0);
      break;
    case column_type::string:
      storage_->offsets.push_back(storage_->chars.size());
      break;
  }
  ++storage_->size;
}

void column_builder::append_from(const column& c, std::size_t row) {
  if (c.is_null(row)) {
    append_null();
    return;
  }
  switch (storage_->type) {
    case column_type::int64:
    case column_type::timestamp:
      append_int64(c.int64_data()[row]);
      break;
    case column_type::float64:
      append_float64(c.float64_data()[row]);
      break;
    case column_type::boolean:
      append_bool(c.bool_data()[row] != 0);
      break;
    case column_type::string:
      append_string(c.string_at(row));
      break;
  }
}

column column_builder::finish() {
  auto s = std::move(storage_);
  if (has_nulls_) s->validity.resize((s->size + 63) / 64, 0);
  if (s->size == 0) s->validity.clear();
  storage_ = std::make_shared<detail::column_storage>();
  storage_->type = s->type;
  if (s->type == column_type::string) storage_->offsets.push_back(0);
  has_nulls_ = false;
  return column(std::shared_ptr<const detail::column_storage>(std::move(s)));
}

namespace {

std::vector<std::uint64_t> pack_validity(const std::vector<std::uint8_t>* valid, std::size_t rows) {
  std::vector<std::uint64_t> bits;
  if (!valid) return bits;
  if (valid->size() != rows)
    dx::detail::throw_error(dx::detail::error_kind::dataframe, "column: validity of another length than the values");
  bool any_null = false;
  bits.assign((rows + 63) / 64, 0);
  for (std::size_t i = 0; i < rows; ++i) {
    if ((*valid)[i]) {
      bits[i >> 6] |= std::uint64_t{1} << (i & 63);
    } else {
      any_null = true;
    }
  }
  if (!any_null) bits.clear();
  return bits;
}

template <class V>
column make_numeric(column_type type, V values, const std::vector<std::uint8_t>* valid) {
  auto s = std::make_shared<detail::column_storage>();
  s->type = type;
  s->size = values.size();
  s->validity = pack_validity(valid, values.size());
  if constexpr (std::is_same_v<V, std::vector<double>>) {
    s->doubles = std::move(values);
  } else if constexpr (std::is_same_v<V, std::vector<std::uint8_t>>) {
    s->bools = std::move(values);
  } else {
    s->ints = std::move(values);
  }
  return column(std::shared_ptr<const detail::column_storage>(std::move(s)));
}

}  // namespace

column make_int64(std::vector<std::int64_t> values, const std::vector<std::uint8_t>* valid) {
  return make_numeric(column_type::int64, std::move(values), valid);
}
column make_float64(std::vector<double> values, const std::vector<std::uint8_t>* valid) {
  return make_numeric(column_type::float64, std::move(values), valid);
}
column make_bool(std::vector<std::uint8_t> values, const std::vector<std::uint8_t>* valid) {
  for (auto& b : values) b = b ? 1 : 0;
  return make_numeric(column_type::boolean, std::move(values), valid);
}
column make_timestamp(std::vector<std::int64_t> values, const std::vector<std::uint8_t>* valid) {
  return make_numeric(column_type::timestamp, std::move(values), valid);
}

// ---------------------------------------------------------------------------------------------
// take, filter, concat

namespace {

// Gathers fixed-width values; returns the validity bytes only when a null is produced.
template <class T>
void gather(const T* src, std::span<const std::int64_t> rows, const column& c, std::vector<T>& out,
            std::vector<std::uint8_t>& valid, bool& any_null) {
  reserve_large(out, rows.size());
  out.resize(rows.size());
  const bool source_nulls = c.has_nulls();
  bool negative = false;
  for (std::int64_t r : rows) negative |= r < 0;
  if (!source_nulls && !negative) {
    for (std::size_t i = 0; i < rows.size(); ++i) out[i] = src[rows[i]];
    return;
  }
  valid.assign(rows.size(), 1);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::int64_t r = rows[i];
    if (r < 0 || c.is_null(static_cast<std::size_t>(r))) {
      out[i] = T{};
      valid[i] = 0;
      any_null = true;
    } else {
      out[i] = src[r];
    }
  }
}

}  // namespace

void advise_huge_pages([[maybe_unused]] void* data, [[maybe_unused]] std::size_t bytes) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  if (data == nullptr || bytes < 2 * huge) return;
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + huge - 1) & ~(huge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(huge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

column take(const column& c, std::span<const std::int64_t> rows) {
  std::vector<std::uint8_t> valid;
  bool any_null = false;
  switch (c.type()) {
    case column_type::int64:
    case column_type::timestamp: {
      std::vector<std::int64_t> out;
      gather(c.int64_data(), rows, c, out, valid, any_null);
      return make_numeric(c.type(), std::move(out), any_null ? &valid : nullptr);
    }
    case column_type::float64: {
      std::vector<double> out;
      gather(c.float64_data(), rows, c, out, valid, any_null);
      return make_float64(std::move(out), any_null ? &valid : nullptr);
    }
    case column_type::boolean: {
      std::vector<std::uint8_t> out;
      gather(c.bool_data(), rows, c, out, valid, any_null);
      return make_numeric(column_type::boolean, std::move(out), any_null ? &valid : nullptr);
    }
    case column_type::string: {
      std::size_t bytes = 0;
      for (std::int64_t r : rows) {
        if (r >= 0) bytes += c.string_at(static_cast<std::size_t>(r)).size();
      }
      auto s = std::make_shared<detail::column_storage>();
      s->type = column_type::string;
      s->size = rows.size();
      s->chars.reserve(bytes);
      s->offsets.reserve(rows.size() + 1);
      s->offsets.push_back(0);
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const std::int64_t r = rows[i];
        if (r < 0 || c.is_null(static_cast<std::size_t>(r))) {
          if (s->validity.empty()) {
            s->validity.assign((rows.size() + 63) / 64, 0);
            for (std::size_t j = 0; j < i; ++j) s->validity[j >> 6] |= std::uint64_t{1} << (j & 63);
          }
        } else {
          s->chars.append(c.string_at(static_cast<std::size_t>(r)));
          if (!s->validity.empty()) s->validity[i >> 6] |= std::uint64_t{1} << (i & 63);
        }
        s->offsets.push_back(s->chars.size());
      }
      return column(std::shared_ptr<const detail::column_storage>(std::move(s)));
    }
  }
  return c;
}

table take(const table& t, std::span<const std::int64_t> rows) {
  std::vector<column> cols;
  cols.reserve(t.num_columns());
  for (const auto& c : t.columns()) cols.push_back(take(c, rows));
  return table(t.column_names(), std::move(cols));
}

column filter_rows(const column& c, std::span<const std::uint8_t> mask, std::size_t kept) {
  if (kept == c.size()) return c;
  const bool nulls = c.has_nulls();
  column compacted;
  const bool fixed = for_fixed_width(c.type(), [&]<class T>(T*) {
    const T* src = values_of<T>(c);
    // Branch-free compaction writes every row and advances past kept ones: one spare slot.
    std::vector<T> out(kept + 1);
    std::size_t j = 0;
    for (std::size_t i = 0; i < mask.size(); ++i) {
      out[j] = src[i];
      j += mask[i] != 0;
    }
    out.resize(kept);
    std::vector<std::uint8_t> valid;
    if (nulls) {
      valid.reserve(kept);
      for (std::size_t i = 0; i < mask.size(); ++i) {
        if (mask[i]) valid.push_back(c.is_null(i) ? 0 : 1);
      }
    }
    compacted = make_numeric(c.type(), std::move(out), nulls ? &valid : nullptr);
  });
  if (fixed) return compacted;
  column_builder b(column_type::string, kept);
  for (std::size_t i = 0; i < mask.size(); ++i) {
    if (mask[i]) b.append_from(c, i);
  }
  return b.finish();
}

table filter_rows(const table& t, std::span<const std::uint8_t> mask) {
  std::size_t kept = 0;
  for (std::uint8_t m : mask) kept += m != 0;
  std::vector<column> cols;
  cols.reserve(t.num_columns());
  for (const auto& c : t.columns()) cols.push_back(filter_rows(c, mask, kept));
  return table(t.column_names(), std::move(cols));
}

column concat_columns(std::span<const column> parts) {
  if (parts.empty()) return column();
  if (parts.size() == 1) return parts[0];
  const column_type type = parts[0].type();
  std::size_t rows = 0;
  bool nulls = false;
  for (const auto& p : parts) {
    if (p.type() != type) {
      dx::detail::throw_error(dx::detail::error_kind::dataframe,
                              fmt::format("concat: a {} column and a {} column", type_name(type), type_name(p.type())));
    }
    rows += p.size();
    nulls |= p.has_nulls();
  }
  auto s = std::make_shared<detail::column_storage>();
  s->type = type;
  s->size = rows;
  const bool fixed = for_fixed_width(type, [&]<class T>(T*) {
    std::vector<T>& out = values_in<T>(*s);
    reserve_large(out, rows);
    for (const auto& p : parts) out.insert(out.end(), values_of<T>(p), values_of<T>(p) + p.size());
  });
  if (!fixed) {
    std::size_t bytes = 0;
    for (const auto& p : parts) {
      const auto& o = p.storage().offsets;
      bytes += o[p.offset() + p.size()] - o[p.offset()];
    }
    s->chars.reserve(bytes);
    s->offsets.reserve(rows + 1);
    s->offsets.push_back(0);
    for (const auto& p : parts) {
      const auto& o = p.storage().offsets;
      const std::uint64_t first = o[p.offset()];
      const std::uint64_t base = s->chars.size();
      s->chars.append(p.storage().chars, first, o[p.offset() + p.size()] - first);
      for (std::size_t i = 1; i <= p.size(); ++i) s->offsets.push_back(base + o[p.offset() + i] - first);
    }
  }
  if (nulls) {
    s->validity.assign((rows + 63) / 64, 0);
    std::size_t at = 0;
    for (const auto& p : parts) {
      for (std::size_t i = 0; i < p.size(); ++i, ++at) {
        if (!p.is_null(i)) s->validity[at >> 6] |= std::uint64_t{1} << (at & 63);
      }
    }
  }
  return column(std::shared_ptr<const detail::column_storage>(std::move(s)));
}

table concat(std::span<const table> parts) {
  std::vector<const table*> used;
  for (const auto& p : parts) {
    if (p.num_columns() != 0 || p.num_rows() != 0) used.push_back(&p);
  }
  if (used.empty()) return parts.empty() ? table{} : parts[0];
  if (used.size() == 1) return *used[0];
  const table& first = *used[0];
  for (const table* p : used) {
    if (p->column_names() != first.column_names()) {
      dx::detail::throw_error(dx::detail::error_kind::dataframe, "concat: partitions with different columns");
    }
  }
  std::vector<column> cols;
  for (std::size_t c = 0; c < first.num_columns(); ++c) {
    std::vector<column> pieces;
    pieces.reserve(used.size());
    for (const table* p : used) pieces.push_back(p->column_at(c));
    cols.push_back(concat_columns(pieces));
  }
  return table(first.column_names(), std::move(cols));
}

// ---------------------------------------------------------------------------------------------
// hashing and comparing

namespace {

inline std::uint64_t mix(std::uint64_t x) noexcept {
  // splitmix64's finaliser: every input bit affects every output bit.
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline std::uint64_t hash_bytes(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ s.size();
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = mix(h ^ w);
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  return mix(h ^ tail);
}

constexpr std::uint64_t null_hash = 0x5bd1e9955bd1e995ULL;

}  // namespace

void hash_rows(const table& t, std::span<const std::size_t> key_columns, std::vector<std::uint64_t>& out) {
  const std::size_t n = t.num_rows();
  out.assign(n, 0);
  bool first = true;
  for (std::size_t k : key_columns) {
    const column& c = t.column_at(k);
    const bool nulls = c.has_nulls();
    auto combine = [&](std::size_t i, std::uint64_t h) { out[i] = first ? h : mix(out[i] * 31 + h); };
    switch (c.type()) {
      case column_type::int64:
      case column_type::timestamp: {
        const std::int64_t* v = c.int64_data();
        for (std::size_t i = 0; i < n; ++i) combine(i, mix(static_cast<std::uint64_t>(v[i])));
        break;
      }
      case column_type::float64: {
        const double* v = c.float64_data();
        for (std::size_t i = 0; i < n; ++i) {
          double d = v[i];
          if (d == 0) d = 0;  // -0.0 and 0.0 are equal keys
          std::uint64_t bits;
          std::memcpy(&bits, &d, 8);
          if (std::isnan(d)) bits = 0x7ff8000000000000ULL;
          combine(i, mix(bits));
        }
        break;
      }
      case column_type::boolean: {
        const std::uint8_t* v = c.bool_data();
        for (std::size_t i = 0; i < n; ++i) combine(i, mix(v[i]));
        break;
      }
      case column_type::string:
        for (std::size_t i = 0; i < n; ++i) combine(i, hash_bytes(c.string_at(i)));
        break;
    }
    if (nulls) {
      for (std::size_t i = 0; i < n; ++i) {
        if (c.is_null(i)) out[i] = first ? null_hash : mix(out[i] * 31 + null_hash);
      }
    }
    first = false;
  }
}

bool values_equal(const column& a, std::size_t ra, const column& b, std::size_t rb) {
  const bool na = a.is_null(ra), nb = b.is_null(rb);
  if (na || nb) return na == nb;
  switch (a.type()) {
    case column_type::int64:
    case column_type::timestamp:
      return a.int64_data()[ra] == b.int64_data()[rb];
    case column_type::float64: {
      const double x = a.float64_data()[ra], y = b.float64_data()[rb];
      return x == y || (std::isnan(x) && std::isnan(y));
    }
    case column_type::boolean:
      return a.bool_data()[ra] == b.bool_data()[rb];
    case column_type::string:
      return a.string_at(ra) == b.string_at(rb);
  }
  return false;
}

bool rows_equal(const table& a, std::span<const std::size_t> a_columns, std::size_t ra, const table& b,
                std::span<const std::size_t> b_columns, std::size_t rb) {
  for (std::size_t k = 0; k < a_columns.size(); ++k) {
    if (!values_equal(a.column_at(a_columns[k]), ra, b.column_at(b_columns[k]), rb)) return false;
  }
  return true;
}

int compare_values(const column& a, std::size_t ra, const column& b, std::size_t rb) {
  const bool na = a.is_null(ra), nb = b.is_null(rb);
  if (na || nb) return na == nb ? 0 : (na ? 1 : -1);
  switch (a.type()) {
    case column_type::int64:
    case column_type::timestamp: {
      const std::int64_t x = a.int64_data()[ra], y = b.int64_data()[rb];
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    case column_type::float64: {
      const double x = a.float64_data()[ra], y = b.float64_data()[rb];
      const bool nx = std::isnan(x), ny = std::isnan(y);
      if (nx || ny) return nx == ny ? 0 : (nx ? 1 : -1);
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    case column_type::boolean: {
      const int x = a.bool_data()[ra], y = b.bool_data()[rb];
      return x - y;
    }
    case column_type::string: {
      const int c = a.string_at(ra).compare(b.string_at(rb));
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
  }
  return 0;
}

}  // namespace dx::detail::df
