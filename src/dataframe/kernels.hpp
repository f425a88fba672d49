// Kernels of dx::dataframe: what one task does to one or a few partitions. Pure functions of
// tables (no cluster, no threads), so each is tested alone and runs the same on any worker.
#pragma once

#include <dx/dataframe.hpp>
#include <dx/table.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace dx::detail::df {

using schema_t = std::vector<std::pair<std::string, column_type>>;

/// How a kernel may spread its work over threads: run(chunks, fn) calls fn(0) ... fn(chunks - 1),
/// in any order and possibly at once, and returns when every call has returned. Kernels cut their
/// work into many more chunks than threads, so a thread that the machine deschedules delays the
/// others by one chunk at most. Empty: everything on the calling thread.
using parallel_runner = std::function<void(std::size_t chunks, const std::function<void(std::size_t)>& fn)>;

schema_t schema_of(const table& t);
/// A table with the given schema and no rows.
table empty_table(const schema_t& schema);
/// The index of `name` in `t`, or dx::dataframe_error naming the closest columns.
std::size_t column_index(const table& t, std::string_view name);
std::vector<std::size_t> column_indices(const table& t, const std::vector<std::string>& names);

// ---------------------------------------------------------------------------------------------
// Fixed-width values: int64 and timestamp as std::int64_t, float64 as double, bool as std::uint8_t

/// The contiguous values of a fixed-width column, as T.
template <class T>
const T* values_of(const column& c) {
  if constexpr (std::is_same_v<T, double>) {
    return c.float64_data();
  } else if constexpr (std::is_same_v<T, std::uint8_t>) {
    return c.bool_data();
  } else {
    return c.int64_data();
  }
}

/// The vector of a column's storage that holds values of T.
template <class T>
std::vector<T>& values_in(column_storage& s) {
  if constexpr (std::is_same_v<T, double>) {
    return s.doubles;
  } else if constexpr (std::is_same_v<T, std::uint8_t>) {
    return s.bools;
  } else {
    return s.ints;
  }
}

/// Calls f(static_cast<T*>(nullptr)) with the value type T of a fixed-width column type; for a
/// string column it calls nothing and returns false.
template <class F>
bool for_fixed_width(column_type type, F&& f) {
  switch (type) {
    case column_type::int64:
    case column_type::timestamp:
      f(static_cast<std::int64_t*>(nullptr));
      return true;
    case column_type::float64:
      f(static_cast<double*>(nullptr));
      return true;
    case column_type::boolean:
      f(static_cast<std::uint8_t*>(nullptr));
      return true;
    case column_type::string:
      break;
  }
  return false;
}

/// Asks the kernel to back [data, data + bytes) with huge pages where it grants them on request:
/// the first touch of a large fresh array then takes a fault per 2 MiB instead of per 4 KiB.
void advise_huge_pages(void* data, std::size_t bytes) noexcept;

/// Reserves room for n values in `v` (empty), advised as above.
template <class T>
void reserve_large(std::vector<T>& v, std::size_t n) {
  v.reserve(n);
  advise_huge_pages(v.data(), n * sizeof(T));
}

// ---------------------------------------------------------------------------------------------
// Building columns (column_ops.cpp)

/// Appends values of one type, then finish() gives the column. Nulls are tracked only once one
/// is appended.
class column_builder {
 public:
  explicit column_builder(column_type type, std::size_t expected_rows = 0);
  column_type type() const noexcept { return storage_->type; }
  std::size_t size() const noexcept { return storage_->size; }

  void append_int64(std::int64_t v);  // also timestamps (nanoseconds)
  void append_float64(double v);
  void append_bool(bool v);
  void append_string(std::string_view v);
  void append_null();
  /// Appends row `row` of `c` (same type), null or not.
  void append_from(const column& c, std::size_t row);
  column finish();

 private:
  void mark_valid();
  std::shared_ptr<detail::column_storage> storage_;
  bool has_nulls_ = false;
};

/// A column from a vector of values and an optional validity (one byte per row, 1 = present).
column make_int64(std::vector<std::int64_t> values, const std::vector<std::uint8_t>* valid = nullptr);
column make_float64(std::vector<double> values, const std::vector<std::uint8_t>* valid = nullptr);
column make_bool(std::vector<std::uint8_t> values, const std::vector<std::uint8_t>* valid = nullptr);
column make_timestamp(std::vector<std::int64_t> values, const std::vector<std::uint8_t>* valid = nullptr);

/// Rows of `c` at `rows`, in that order; a negative index gives a null.
column take(const column& c, std::span<const std::int64_t> rows);
table take(const table& t, std::span<const std::int64_t> rows);
/// Rows where mask[i] != 0.
column filter_rows(const column& c, std::span<const std::uint8_t> mask, std::size_t kept);
table filter_rows(const table& t, std::span<const std::uint8_t> mask);
/// Tables of the same schema, one after the other (a table with no columns and no rows is skipped).
table concat(std::span<const table> parts);
column concat_columns(std::span<const column> parts);

/// A 64-bit hash of each row's values in `key_columns` (nulls hash alike), into `out` (resized).
void hash_rows(const table& t, std::span<const std::size_t> key_columns, std::vector<std::uint64_t>& out);
/// Whether value `ra` of a equals value `rb` of b (same type): null equals null, NaN equals NaN.
bool values_equal(const column& a, std::size_t ra, const column& b, std::size_t rb);
/// Whether row `ra` of a and row `rb` of b have equal values in the given columns (null equals null).
bool rows_equal(const table& a, std::span<const std::size_t> a_columns, std::size_t ra, const table& b,
                std::span<const std::size_t> b_columns, std::size_t rb);
/// Three-way comparison of two values of the same type; nulls after every value. NaN after numbers.
int compare_values(const column& a, std::size_t ra, const column& b, std::size_t rb);

// ---------------------------------------------------------------------------------------------
// CSV (csv.cpp)

/// What read_csv learned when the dataframe was defined.
struct csv_source {
  std::vector<std::string> files;
  csv_options options;
  std::vector<std::string> names;  // columns in file order
  std::vector<column_type> types;  // per column

  template <class Archive>
  void serialize(Archive& ar, unsigned);
};

/// One partition: [begin, end) of files[file], starting at a row boundary (after the header for
/// the first range) and ending at one. first_line is the 1-based line number of `begin`.
struct csv_range {
  std::uint32_t file = 0;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  std::uint64_t first_line = 1;

  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& file& begin& end& first_line;
  }
};

/// Expands the glob, checks every file's header against the first, infers types from the first
/// file (options.schema overrides). dx::dataframe_error when nothing matches, a file cannot be read,
/// headers differ, or the schema names a column the file lacks.
csv_source open_csv(const std::string& path_or_glob, const csv_options& options);
/// Byte ranges of about `target_bytes` each (0: automatic for `threads`), cut at row boundaries
/// (never inside a quoted field).
std::vector<csv_range> split_csv(const csv_source& source, std::size_t target_bytes, std::size_t threads);

struct csv_read_result {
  table data;
  std::size_t skipped_rows = 0;
};
/// Parses one range, building only the columns with wanted[i] (in file order); the others are
/// skipped without converting. A malformed row is a dx::dataframe_error "file:line: reason" unless
/// options.skip_bad_rows, when it is counted and dropped.
csv_read_result read_csv_range(const csv_source& source, const csv_range& range, const std::vector<bool>& wanted);
/// Writes `t` as CSV (header first when `header`), quoting fields that need it; nulls as empty
/// fields; float64 in the shortest form that reads back exactly; timestamps in ISO 8601.
void write_csv(std::string& out, const table& t, const csv_options& options, bool header);

// ---------------------------------------------------------------------------------------------
// Aggregation (aggregate.cpp)

struct agg_spec {
  std::vector<std::string> keys;  // may be empty: one group of everything
  std::vector<aggregation> aggs;  // `as` always set (names resolved by the planner)

  template <class Archive>
  void serialize(Archive& ar, unsigned);
};

/// Output schema (keys, then one column per aggregation); dx::dataframe_error for an unknown
/// column or an aggregation its type does not support (sum/mean/std of strings).
schema_t aggregate_schema(const schema_t& input, const agg_spec& spec);
/// Per-partition partial state: the key columns first, then whatever state the aggregations need.
/// Rows with a null key are dropped.
table partial_aggregate(const table& input, const agg_spec& spec);
/// Merges partial states (in partition order, for `first`) into one partial state.
table combine_aggregate(std::span<const table> partials, const agg_spec& spec);
/// The result from a combined state, sorted by the keys.
table finalize_aggregate(const table& combined, const agg_spec& spec);

/// The first row of each distinct combination of `subset` columns (all when empty), in order of
/// first appearance across `parts` taken in order.
table distinct_rows(std::span<const table> parts, const std::vector<std::string>& subset);
/// pandas' describe() of the numeric columns of all `parts` together.
table describe_table(std::span<const table> parts);

// ---------------------------------------------------------------------------------------------
// Sorting, shuffling and joining (sort_join.cpp)

struct sort_spec {
  std::vector<std::string> by;
  std::vector<bool> ascending;  // one per `by`

  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& by& ascending;
  }
};

/// Up to `samples` rows of the `by` columns of `part`, evenly spaced.
table sample_sort_keys(const table& part, const sort_spec& spec, std::size_t samples);
/// `parts - 1` boundary rows (the `by` columns) splitting the sampled keys into `parts` ranges of
/// about equal size; fewer when keys repeat.
table sort_boundaries(std::span<const table> samples, const sort_spec& spec, std::size_t parts);
/// Splits `part` into boundaries.num_rows() + 1 pieces: piece j has the rows whose keys sort after
/// boundary j-1 and not after boundary j (nulls with the largest keys).
std::vector<table> range_split(const table& part, const sort_spec& spec, const table& boundaries);
/// The pieces (in partition order) concatenated and stably sorted. A single fixed-width key is
/// sorted by a most-significant-digit radix pass over all rows (spread over `run`) and then by
/// each bucket on its own, holding 12 bytes per row besides the input and the output.
table sort_table(std::span<const table> pieces, const sort_spec& spec, const parallel_runner& run = {});

/// The first `k` rows of sort_table({part}, spec), found without sorting the rest: one pass that
/// keeps the best k seen so far.
table top_rows(const table& part, const sort_spec& spec, std::size_t k);

/// Splits rows into `buckets` by the hash of `keys` (equal keys, nulls included, land together).
std::vector<table> hash_split(const table& t, const std::vector<std::string>& keys, std::size_t buckets);

struct join_spec {
  std::vector<std::string> left_on;
  std::vector<std::string> right_on;
  join_kind how = join_kind::inner;

  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& left_on& right_on& how;
  }
};

/// Output schema: the left columns, then the right ones except right keys named like their left
/// key; other names on both sides get "_x" (left) and "_y" (right). Semi and anti joins: the left
/// columns alone, as they are.
schema_t join_schema(const schema_t& left, const schema_t& right, const join_spec& spec);
/// Hash join; output rows in left order, matches in right order. Null keys never match; a left
/// join keeps unmatched left rows with nulls on the right. One fixed-width key pair is joined
/// through an open-addressing table over the right side: when its keys are distinct (a dimension)
/// each left row finds its one match, the left columns are kept as they are when every row
/// matches, and the right columns are gathered once.
table hash_join(const table& left, const table& right, const join_spec& spec);

// ---------------------------------------------------------------------------------------------
// Serialization of the plan's parts that travel to workers.

template <class Archive>
void csv_source::serialize(Archive& ar, unsigned) {
  ar& files;
  ar& options.delimiter& options.quote& options.header& options.names& options.null_values;
  ar& options.schema& options.inference_bytes& options.partition_bytes& options.skip_bad_rows;
  ar& names& types;
}

template <class Archive>
void agg_spec::serialize(Archive& ar, unsigned) {
  ar& keys;
  std::uint64_t n = aggs.size();
  ar& n;
  aggs.resize(static_cast<std::size_t>(n));
  for (aggregation& a : aggs) ar& a.column& a.fn& a.as;
}

}  // namespace dx::detail::df
