// dx/table.hpp — typed, columnar, in-memory tables: what a dx::dataframe computes into.
//
//   dx::table t{{"city", std::vector<std::string>{"Oslo", "Lima"}}, {"temp", std::vector<double>{3.5, 18}}};
//   std::cout << t;                       // an aligned text table
//   double lima = t["temp"].float64_at(1);
//
// A column holds one type (int64, float64, boolean, string, timestamp) and marks missing values
// in a validity bitmap. Columns share their storage: copying or slicing a column or a table is
// cheap and never copies the values. Tables are immutable once built and safe to read from many
// threads.
#pragma once

#include <dx/error.hpp>
#include <dx/export.hpp>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dx {

// dx::dataframe_error is declared in dx/error.hpp, with the other errors.

enum class column_type : std::uint8_t { int64, float64, boolean, string, timestamp };

/// "int64", "float64", "bool", "string", "timestamp". Thread-safe; does not block.
DX_API std::string_view type_name(column_type t) noexcept;

/// A point in time: nanoseconds since 1970-01-01T00:00:00 UTC. A plain value, ordered by time.
struct timestamp {
  std::int64_t nanoseconds = 0;
  friend auto operator<=>(timestamp, timestamp) = default;
};

/// ISO 8601: "2026-11-23T08:15:00" (fractional seconds only when present). Thread-safe; does not
/// block.
DX_API std::string format_timestamp(timestamp t);
/// Parses "YYYY-MM-DD", "YYYY-MM-DD HH:MM[:SS[.fraction]]" (or with 'T'), optionally ending in
/// "Z" or "+HH:MM"/"-HH:MM"; nullopt when the text is not such a time. Thread-safe; does not block.
DX_API std::optional<timestamp> parse_timestamp(std::string_view text) noexcept;

namespace detail {

/// The values behind one or more columns. Only one of the vectors is used, by type.
struct column_storage {
  column_type type = column_type::int64;
  std::size_t size = 0;
  std::vector<std::int64_t> ints;       // int64 and timestamp
  std::vector<double> doubles;          // float64
  std::vector<std::uint8_t> bools;      // boolean, 0 or 1
  std::vector<std::uint64_t> offsets;   // string: size + 1 offsets into chars
  std::string chars;                    // string: the bytes of all values
  std::vector<std::uint64_t> validity;  // bit i set: row i has a value; empty: no nulls
};

}  // namespace detail

/// One typed column, possibly a slice of shared storage. Immutable: every member function is
/// thread-safe and none blocks; the constructors and slice() throw dx::dataframe_error on bad input.
class DX_API column {
 public:
  /// An empty int64 column. Does not block.
  column();
  /// A column of these values, none null. Do not block.
  column(std::vector<std::int64_t> values);
  column(std::vector<double> values);
  column(std::vector<bool> values);
  column(std::vector<std::string> values);
  column(std::vector<timestamp> values);
  /// Missing values are nulls. Do not block.
  column(std::vector<std::optional<std::int64_t>> values);
  column(std::vector<std::optional<double>> values);
  column(std::vector<std::optional<bool>> values);
  column(std::vector<std::optional<std::string>> values);
  column(std::vector<std::optional<timestamp>> values);
  /// `rows` nulls of type `type`. Thread-safe; does not block.
  static column nulls(column_type type, std::size_t rows);
  /// Takes the storage; `storage->size` is the length. Validates the layout (dx::dataframe_error).
  /// Does not block.
  explicit column(std::shared_ptr<const detail::column_storage> storage);

  /// The type, the number of rows, and whether there are none. Thread-safe; does not block.
  column_type type() const noexcept { return storage_->type; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  /// Whether any row is null, how many, and whether `row` is null / has a value. Thread-safe; does not block.
  bool has_nulls() const noexcept;
  std::size_t null_count() const noexcept;
  bool is_null(std::size_t row) const noexcept {
    if (storage_->validity.empty()) return false;
    const std::size_t bit = offset_ + row;
    return ((storage_->validity[bit >> 6] >> (bit & 63)) & 1u) == 0;
  }
  bool is_valid(std::size_t row) const noexcept { return !is_null(row); }

  /// The value at `row`; unspecified (but safe) for a null row. Throw dx::dataframe_error when the
  /// column has another type. Thread-safe; does not block.
  std::int64_t int64_at(std::size_t row) const;
  double float64_at(std::size_t row) const;
  bool bool_at(std::size_t row) const;
  std::string_view string_at(std::size_t row) const;
  timestamp timestamp_at(std::size_t row) const;
  /// int64, float64, bool (0/1) or timestamp (nanoseconds) as a double. Thread-safe; does not block.
  double numeric_at(std::size_t row) const;

  /// Contiguous values for kernels (size() of them); nullptr for other types. int64_data also
  /// serves timestamp columns. Thread-safe; does not block.
  const std::int64_t* int64_data() const noexcept;
  const double* float64_data() const noexcept;
  const std::uint8_t* bool_data() const noexcept;

  /// The value as text as a table prints it ("null" for a missing one). Thread-safe; does not block.
  std::string format(std::size_t row) const;

  /// Rows [offset, offset + length) sharing this column's storage; dx::dataframe_error past the
  /// end. Thread-safe; does not block.
  column slice(std::size_t offset, std::size_t length) const;
  /// A column with its own, compact storage (what serialization sends). Thread-safe; does not block.
  column compact() const;

  /// Where this column's values are: storage and first row. Thread-safe; does not block.
  const detail::column_storage& storage() const noexcept { return *storage_; }
  std::size_t offset() const noexcept { return offset_; }
  /// Bytes of values, offsets and validity this column covers. Thread-safe; does not block.
  std::size_t byte_size() const noexcept;

  /// Equal types, lengths, nulls and values (float64 compared exactly; NaN equals NaN). Thread-safe; does not block.
  friend DX_API bool operator==(const column& a, const column& b);

  /// Boost.Serialization: saves the compact form; loading validates it (dx::dataframe_error).
  /// Thread-safe for distinct archives and objects; does not block.
  template <class Archive>
  void serialize(Archive& ar, unsigned /*version*/) {
    if constexpr (Archive::is_saving::value) {
      const column c = compact();
      const detail::column_storage& s = *c.storage_;
      auto type = static_cast<std::uint8_t>(s.type);
      std::uint64_t rows = s.size;
      ar& type& rows;
      ar& const_cast<std::vector<std::int64_t>&>(s.ints) & const_cast<std::vector<double>&>(s.doubles);
      ar& const_cast<std::vector<std::uint8_t>&>(s.bools) & const_cast<std::vector<std::uint64_t>&>(s.offsets);
      ar& const_cast<std::string&>(s.chars) & const_cast<std::vector<std::uint64_t>&>(s.validity);
    } else {
      auto s = std::make_shared<detail::column_storage>();
      std::uint8_t type = 0;
      std::uint64_t rows = 0;
      ar& type& rows;
      ar & s->ints & s->doubles & s->bools & s->offsets & s->chars & s->validity;
      s->type = static_cast<column_type>(type);
      s->size = static_cast<std::size_t>(rows);
      *this = column(std::shared_ptr<const detail::column_storage>(std::move(s)));
    }
  }

 private:
  column(std::shared_ptr<const detail::column_storage> storage, std::size_t offset, std::size_t length);
  std::shared_ptr<const detail::column_storage> storage_;
  std::size_t offset_ = 0;
  std::size_t size_ = 0;
};

/// Named columns of equal length. Immutable: every member function is thread-safe and none
/// blocks; lookups of a missing column throw dx::dataframe_error.
class DX_API table {
 public:
  /// A table with no columns. Does not block.
  table() = default;
  /// Throws dx::dataframe_error for duplicate or empty names and columns of unequal length.
  /// Does not block.
  table(std::vector<std::string> names, std::vector<column> columns);
  table(std::initializer_list<std::pair<std::string, column>> columns);

  /// Rows, columns, the names and the columns in order. Thread-safe; does not block.
  std::size_t num_rows() const noexcept { return rows_; }
  std::size_t num_columns() const noexcept { return columns_.size(); }
  const std::vector<std::string>& column_names() const noexcept { return names_; }
  const std::vector<column>& columns() const noexcept { return columns_; }

  /// The column called `name`; dx::dataframe_error naming it and the closest existing names.
  /// Thread-safe; does not block.
  const column& operator[](std::string_view name) const;
  /// The column at `index`; dx::dataframe_error when there is none. Thread-safe; does not block.
  const column& column_at(std::size_t index) const {
    if (index >= columns_.size()) {
      detail::throw_error(detail::error_kind::dataframe, "table: column index " + std::to_string(index) + " of " +
                                                             std::to_string(columns_.size()) + " columns");
    }
    return columns_[index];
  }
  /// The index of `name`, or nullopt. Thread-safe; does not block.
  std::optional<std::size_t> find(std::string_view name) const noexcept;

  /// Rows [offset, offset + length), sharing storage. Thread-safe; does not block.
  table slice(std::size_t offset, std::size_t length) const;
  /// The first `n` rows. Thread-safe; does not block.
  table head(std::size_t n) const { return slice(0, n < rows_ ? n : rows_); }
  /// Bytes of all columns' values. Thread-safe; does not block.
  std::size_t byte_size() const noexcept;

  /// An aligned text table: a header, a rule, then rows; numbers right-aligned. With more than
  /// `max_rows` rows, the first and last max_rows / 2 are shown around a "..." line. Thread-safe;
  /// does not block.
  std::string to_string(std::size_t max_rows = 20) const;

  /// Same names in the same order and equal columns. Thread-safe; does not block.
  friend DX_API bool operator==(const table& a, const table& b);

  /// Boost.Serialization: the names, the columns and the row count. Thread-safe for distinct
  /// archives and objects; does not block.
  template <class Archive>
  void serialize(Archive& ar, unsigned /*version*/) {
    std::uint64_t rows = rows_;
    ar& names_& columns_& rows;
    rows_ = static_cast<std::size_t>(rows);
  }

 private:
  std::vector<std::string> names_;
  std::vector<column> columns_;
  std::size_t rows_ = 0;
};

/// Writes t.to_string(). Thread-safe for distinct streams; does not block beyond the stream.
DX_API std::ostream& operator<<(std::ostream& os, const table& t);

namespace detail {
/// "unknown column 'x'; closest: 'y', 'z'" (or the list of columns when none is close).
DX_API std::string unknown_column_message(std::string_view name, const std::vector<std::string>& known);
}  // namespace detail

}  // namespace dx
