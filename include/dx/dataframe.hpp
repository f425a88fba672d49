// dx/dataframe.hpp — a partitioned, lazy dataframe that runs on a dx::cluster.
//
//   dx::cluster cl;   // or dx::cluster cl{dx::options{}.local_processes(2)}
//   auto df = dx::dataframe::read_csv(cl, "data/trips-*.csv");
//   dx::table by_city = df.filter(df["fare"] > 0 && !df["city"].is_null())
//                         .with_column("total", df["fare"] + df["tip"])
//                         .groupby({"city"})
//                         .agg({{"total", dx::agg::sum}, {"total", dx::agg::mean}})
//                         .sort_values({"total_sum"}, false)
//                         .compute();
//   std::cout << by_city;
//
// Operations only describe the work; compute(), head(), to_csv() and the other sinks run it. The
// plan is lowered to a task graph with one task per partition and step: row-wise steps (filter,
// select, with_column) run fused in one task, and the columns a plan never reads are not even
// parsed from CSV. On a cluster with workers, tasks run on the workers and partitions move
// between them; otherwise on the local threads. Every mistake (an unknown column, a type
// mismatch, a malformed CSV row, a glob matching nothing) is a dx::dataframe_error naming it.
#pragma once

#include <dx/error.hpp>  // dx::dataframe_error
#include <dx/export.hpp>
#include <dx/table.hpp>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace dx {

class cluster;

namespace detail {
struct expr_node;
struct df_node;
struct df_access;
}  // namespace detail

/// A column expression, evaluated per row: `df["a"] * 2 + df["b"]`, `df["city"] == "Oslo"`,
/// `dx::col("t") >= dx::timestamp{...}`. Arithmetic on int64 stays int64 (division gives float64);
/// mixing int64 and float64 gives float64. A null operand gives null; `&&` and `||` follow SQL's
/// three-valued logic; filter keeps the rows where the condition is true (not null). An expr is
/// immutable: every member function, and every function building one below, is thread-safe and
/// does not block (nothing is evaluated until a dataframe sink runs).
class DX_API expr {
 public:
  /// A literal. Integers are int64, floating point float64; const char* and std::string are strings.
  /// Thread-safe; does not block.
  template <class I>
  requires(std::is_integral_v<I> && !std::is_same_v<I, bool>) expr(I v)
      : expr(int64_literal(static_cast<std::int64_t>(v))) {}
  template <class F>
  requires std::is_floating_point_v<F> expr(F v) : expr(float64_literal(static_cast<double>(v))) {}
  expr(bool v);
  expr(const char* v);
  expr(std::string v);
  expr(timestamp v);

  /// True where the value is missing / present. Thread-safe; does not block.
  expr is_null() const;
  expr is_not_null() const;
  /// Strings: true where the value starts with `prefix`. Thread-safe; does not block.
  expr starts_with(std::string prefix) const;
  /// Converts to another type (int64 <-> float64 <-> bool, timestamp <-> int64 nanoseconds,
  /// anything -> string, string -> numbers; text that does not convert becomes null). Thread-safe;
  /// does not block.
  expr cast(column_type to) const;

  /// The expression as text, "((a * 2) + b)". Thread-safe; does not block.
  std::string to_string() const;

  /// The expression tree (internal: its type is only declared here), and literals of an exact
  /// type. Thread-safe; do not block.
  explicit expr(std::shared_ptr<const detail::expr_node> node) : node_(std::move(node)) {}
  static expr int64_literal(std::int64_t v);
  static expr float64_literal(double v);
  const std::shared_ptr<const detail::expr_node>& node() const noexcept { return node_; }

 private:
  std::shared_ptr<const detail::expr_node> node_;
};

/// The column called `name` of whatever dataframe the expression is used on. Thread-safe; does not
/// block.
DX_API expr col(std::string name);
/// A null literal of the given type. Thread-safe; does not block.
DX_API expr null_of(column_type type);

/// Arithmetic, comparison and logic, building a new expr from its operands. Thread-safe; do not
/// block.
DX_API expr operator+(const expr& a, const expr& b);
DX_API expr operator-(const expr& a, const expr& b);
DX_API expr operator*(const expr& a, const expr& b);
DX_API expr operator/(const expr& a, const expr& b);
DX_API expr operator%(const expr& a, const expr& b);
DX_API expr operator-(const expr& a);
DX_API expr operator==(const expr& a, const expr& b);
DX_API expr operator!=(const expr& a, const expr& b);
DX_API expr operator<(const expr& a, const expr& b);
DX_API expr operator<=(const expr& a, const expr& b);
DX_API expr operator>(const expr& a, const expr& b);
DX_API expr operator>=(const expr& a, const expr& b);
DX_API expr operator&&(const expr& a, const expr& b);
DX_API expr operator||(const expr& a, const expr& b);
DX_API expr operator!(const expr& a);

/// What groupby().agg() computes per group. Nulls are skipped: count counts values, first is the
/// first value present, nunique counts distinct values. sum of no values is 0; mean, min, max,
/// first of no values and std of fewer than two are null. std is the sample standard deviation.
enum class agg : std::uint8_t { sum, mean, count, min, max, std, first, nunique };
/// "sum", "mean", ... as in output column names. Thread-safe; does not block.
DX_API std::string_view agg_name(agg a) noexcept;

/// One output column of an aggregation; named "<column>_<agg>" ("value_sum") unless `as` is set.
/// A plain value: safe to copy and read from many threads; nothing here blocks.
struct aggregation {
  aggregation() = default;
  aggregation(std::string column_name, dx::agg function, std::string output_name = {})
      : column(std::move(column_name)), fn(function), as(std::move(output_name)) {}
  std::string column;
  dx::agg fn = agg::sum;
  std::string as;
};

/// inner: the matching pairs. left: also each unmatched left row once, with nulls on the right.
/// semi: each left row that has a match, once, with the left columns only. anti: each left row
/// without a match (null keys never match, so those rows are kept), left columns only.
enum class join_kind : std::uint8_t { inner, left, semi, anti };
/// How join moves rows: automatic broadcasts the right side when it is one partition or small
/// (under 32 MB by its estimate), else shuffles both sides by key hash.
enum class join_strategy : std::uint8_t { automatic, broadcast, shuffle };

/// How read_csv reads and to_csv writes, as a chain of setters:
///
///   auto df = dx::dataframe::read_csv(cl, "data/*.tsv", dx::csv_options{}.with_delimiter('\t').with_header(false));
///
/// Each setter returns *this so settings chain. An object is safe to read from many threads; its
/// setters are not (set it up on one thread). Nothing here blocks.
///
/// Deprecated: writing the data members directly, or aggregate initialisation
/// (`dx::csv_options{.delimiter = ';'}`), still works for this release; use the with_*() setters.
/// Reading the members stays.
struct csv_options {
  char delimiter = ',';
  char quote = '"';
  /// The first line names the columns. Without a header, columns are "column0", "column1", ...
  /// unless `names` gives them.
  bool header = true;
  std::vector<std::string> names;
  /// Fields that mean "missing" (compared after unquoting).
  std::vector<std::string> null_values{"", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"};
  /// Types by column name, overriding inference. Inference looks at the first `inference_bytes`
  /// of the first file: int64, then float64, bool (true/false), timestamp (ISO 8601), else string.
  std::map<std::string, column_type> schema;
  std::size_t inference_bytes = 1u << 20;
  /// Bytes per partition; 0 picks about four partitions per thread, between 1 MiB and 64 MiB.
  std::size_t partition_bytes = 0;
  /// Skip malformed rows (wrong field count, a value not of the column's type, an unclosed
  /// quote) instead of failing; dataframe::skipped_rows() says how many the last run skipped.
  bool skip_bad_rows = false;

  /// The field separator (default ','). Not thread-safe; does not block.
  csv_options& with_delimiter(char c) noexcept {
    delimiter = c;
    return *this;
  }
  /// The quote character (default '"'). Not thread-safe; does not block.
  csv_options& with_quote(char c) noexcept {
    quote = c;
    return *this;
  }
  /// Whether the first line names the columns (default true). Not thread-safe; does not block.
  csv_options& with_header(bool yes) noexcept {
    header = yes;
    return *this;
  }
  /// Column names for files without a header. Not thread-safe; does not block.
  csv_options& with_names(std::vector<std::string> column_names) {
    names = std::move(column_names);
    return *this;
  }
  /// The fields that mean "missing", replacing the defaults. Not thread-safe; does not block.
  csv_options& with_null_values(std::vector<std::string> values) {
    null_values = std::move(values);
    return *this;
  }
  /// Reads `column` as `type` instead of inferring it; adds to earlier calls. Not thread-safe;
  /// does not block.
  csv_options& with_type(const std::string& column, column_type type) {
    schema[column] = type;
    return *this;
  }
  /// Types by column name, replacing earlier ones. Not thread-safe; does not block.
  csv_options& with_schema(std::map<std::string, column_type> types) {
    schema = std::move(types);
    return *this;
  }
  /// How much of the first file type inference looks at (default 1 MiB). Not thread-safe; does
  /// not block.
  csv_options& with_inference_bytes(std::size_t bytes) noexcept {
    inference_bytes = bytes;
    return *this;
  }
  /// Bytes per partition (default 0: about four partitions per thread). Not thread-safe; does not
  /// block.
  csv_options& with_partition_bytes(std::size_t bytes) noexcept {
    partition_bytes = bytes;
    return *this;
  }
  /// Skip malformed rows instead of failing (default false). Not thread-safe; does not block.
  csv_options& with_skip_bad_rows(bool yes = true) noexcept {
    skip_bad_rows = yes;
    return *this;
  }
};

/// Per-partition function for map_partitions; register it with DX_REMOTE so that workers find it.
using partition_function = table (*)(table);

class group_by;

class DX_API dataframe {
 public:
  /// Reads every file matching `path_or_glob` (`*`, `?` and `[...]` in the file name part), split
  /// into byte ranges at row boundaries. Reads the header and a sample now to learn the schema;
  /// the rest is read when the plan runs. dx::dataframe_error when nothing matches, a file cannot
  /// be read, or the files' headers differ.
  /// Thread-safe; blocks while it reads the header and sample.
  static dataframe read_csv(cluster& cl, const std::string& path_or_glob, const csv_options& options = {});
  /// A dataframe over an in-memory table, split into `partitions` row ranges (0: one per thread).
  /// The table's storage is shared, not copied.
  /// Thread-safe; does not block.
  static dataframe from_table(cluster& cl, table t, std::size_t partitions = 0);
  /// Shorthand for from_table(cl, table{columns}, partitions).
  /// Thread-safe; does not block.
  static dataframe from_columns(cluster& cl, std::initializer_list<std::pair<std::string, column>> columns,
                                std::size_t partitions = 0);

  /// The columns this dataframe will have, with their types.
  /// Thread-safe; does not block.
  std::vector<std::string> column_names() const;
  /// The columns with their types. Thread-safe; does not block.
  std::vector<std::pair<std::string, column_type>> schema() const;
  /// How many partitions the plan has at its end. Thread-safe; does not block.
  std::size_t num_partitions() const;

  /// The column as an expression; dx::dataframe_error naming the closest names when unknown.
  /// Thread-safe; does not block.
  expr operator[](const std::string& name) const;

  /// Only the named columns, in that order. Thread-safe; does not block.
  dataframe select(const std::vector<std::string>& columns) const;
  /// Every column but the named ones. Thread-safe; does not block.
  dataframe drop(const std::vector<std::string>& columns) const;
  /// The rows where `condition` is true (not null). Thread-safe; does not block.
  dataframe filter(const expr& condition) const;
  /// Adds (or replaces) a column computed from `value`.
  /// Thread-safe; does not block.
  dataframe with_column(const std::string& name, const expr& value) const;
  /// Another name for with_column. Thread-safe; does not block.
  dataframe assign(const std::string& name, const expr& value) const { return with_column(name, value); }
  /// The same columns, those named in `old_to_new` renamed. Thread-safe; does not block.
  dataframe rename(const std::map<std::string, std::string>& old_to_new) const;
  /// Applies `fn` to every partition. Its output schema is learned by calling it on an empty
  /// partition now; dx::dataframe_error if `fn` is not registered with DX_REMOTE.
  /// Thread-safe; blocks while `fn` runs on the empty partition.
  dataframe map_partitions(partition_function fn) const;

  /// Rows grouped by equal values of `keys`; see group_by. Thread-safe; does not block.
  group_by groupby(std::vector<std::string> keys) const;
  /// Aggregates the whole dataframe into one row. Thread-safe; does not block.
  dataframe agg(std::vector<aggregation> aggregations) const;
  /// Sorted by `by` (ascending unless `ascending` says otherwise per column, or one value for all);
  /// nulls last. Stable: equal keys keep their order. Thread-safe; does not block.
  dataframe sort_values(std::vector<std::string> by, bool ascending = true) const;
  /// Thread-safe; does not block.
  dataframe sort_values(std::vector<std::string> by, std::vector<bool> ascending) const;
  /// The `n` rows with the largest values of `columns` (compared in that order), largest first:
  /// the first n rows of sort_values(columns, false), so missing values (nulls, NaN) come only
  /// after every value and equal keys keep their order (pandas' keep="first"). Each partition
  /// keeps its best n rows in one pass and one task merges those: the other rows are never
  /// sorted or moved. The result is one partition. Thread-safe; does not block.
  dataframe nlargest(std::size_t n, std::vector<std::string> columns) const;
  /// The `n` rows with the smallest values of `columns`, smallest first; otherwise as nlargest.
  /// Thread-safe; does not block.
  dataframe nsmallest(std::size_t n, std::vector<std::string> columns) const;
  /// Rows of this dataframe matched with `right` on equal values of `on` (same names on both
  /// sides) or of `left_on` / `right_on`. Null keys never match. Other columns present on both
  /// sides get the suffixes "_x" and "_y"; semi and anti joins give the left columns only and read
  /// only the right side's keys. The small side is broadcast; otherwise both are shuffled by key
  /// hash. Thread-safe; does not block.
  dataframe join(const dataframe& right, const std::vector<std::string>& on, join_kind how = join_kind::inner,
                 join_strategy strategy = join_strategy::automatic) const;
  /// Thread-safe; does not block.
  dataframe join(const dataframe& right, const std::vector<std::string>& left_on,
                 const std::vector<std::string>& right_on, join_kind how = join_kind::inner,
                 join_strategy strategy = join_strategy::automatic) const;
  /// The first row of each distinct combination of `subset` (all columns when empty), in their
  /// original order, in one partition. With `split_out` > 1 the rows are shuffled by the hash of
  /// `subset` into that many partitions instead, so no task holds every distinct row: each
  /// partition keeps the first row of each of its combinations, in their original order.
  /// Thread-safe; does not block.
  dataframe drop_duplicates(std::vector<std::string> subset = {}, std::size_t split_out = 1) const;
  /// Distinct values of `column` with their counts ("count"), most frequent first; nulls skipped.
  /// Thread-safe; does not block.
  dataframe value_counts(const std::string& column) const;
  /// count, mean, std, min, 25%, 50%, 75%, max of each numeric column: a "statistic" column and
  /// one float64 column per numeric column (as pandas describes).
  /// Thread-safe; does not block.
  dataframe describe() const;
  /// The same rows, in order, in `partitions` partitions whose sizes differ by at most one row.
  /// Each partition reports its row count, then cuts itself where the new boundaries fall: the
  /// rows are never gathered in one place.
  /// Thread-safe; does not block.
  dataframe repartition(std::size_t partitions) const;

  /// Runs the plan and gathers the result.
  /// Thread-safe; blocks until the plan has run.
  table compute() const;
  /// The first `n` rows, computing only the partitions needed for them; of a sort_values, only
  /// each partition's first n rows are kept and merged (as nlargest does), never the whole sort.
  /// Thread-safe; blocks until those partitions have run.
  table head(std::size_t n = 10) const;
  /// The number of rows.
  /// Thread-safe; blocks until the plan has run.
  std::size_t count_rows() const;
  /// Writes CSV: with a `*` in `path`, one file per partition (the `*` replaced by its number),
  /// else one file. Each file is written to a temporary name and renamed when complete.
  /// Thread-safe; blocks until every file is written.
  void to_csv(const std::string& path, const csv_options& options = {}) const;
  /// Malformed rows the last run skipped (csv_options::skip_bad_rows).
  /// Thread-safe; does not block.
  std::size_t skipped_rows() const;

  /// The plan as text, after fusion and rewrites, one line per task: column selections pushed
  /// into sources, filters moved below joins (to the side whose columns they read; the right
  /// side only for inner joins), "top k by ..." steps for nlargest/nsmallest, and in one process
  /// a sort by one fixed-width key as a single task over all partitions.
  /// Thread-safe; does not block.
  std::string explain() const;

  /// The plan's root node (internal: its type is only declared here). Thread-safe; does not block.
  const std::shared_ptr<const detail::df_node>& node() const noexcept { return node_; }
  /// The cluster the dataframe runs on. Thread-safe; does not block.
  cluster& owner() const noexcept { return *cluster_; }

 private:
  friend class group_by;
  friend struct detail::df_access;
  dataframe(cluster& cl, std::shared_ptr<const detail::df_node> node);

  cluster* cluster_;
  std::shared_ptr<const detail::df_node> node_;
};

/// groupby(keys): rows with null keys are dropped. The result has the keys and one column per
/// aggregation, sorted by the keys (within each partition when shuffled, see split_out).
class DX_API group_by {
 public:
  /// One row per group: the keys and one column per aggregation. Thread-safe; without split_out()
  /// on a CSV source, blocks while it reads the sample that decides whether to shuffle (the first
  /// MiB of the first file); otherwise does not block.
  dataframe agg(std::vector<aggregation> aggregations) const;
  /// The sum / mean of `column` per group, named like the column. Thread-safe; blocks as agg()
  /// does.
  dataframe sum(const std::string& column) const { return agg({{column, dx::agg::sum, column}}); }
  dataframe mean(const std::string& column) const { return agg({{column, dx::agg::mean, column}}); }
  /// The number of rows of each group, as "count". Thread-safe; blocks as agg() does.
  dataframe count() const;
  /// Shuffles partial aggregates by key hash into `partitions` output partitions instead of
  /// combining them in one tree: for many groups. The result is then sorted within each partition.
  /// By default (0) the source is sampled (20,000 rows of an in-memory table, the first MiB of a
  /// CSV source, through the row-wise steps before the groupby): when most sampled rows form
  /// groups of their own, the result is shuffled into as many partitions as the input has;
  /// otherwise the partial aggregates are combined in a tree into one sorted partition. A source
  /// under 200,000 rows (estimated from the sample for CSV), or one reached through map_partitions, is
  /// never shuffled. Not thread-safe (it changes this group_by); does not block.
  group_by& split_out(std::size_t partitions);

 private:
  friend class dataframe;
  group_by(dataframe source, std::vector<std::string> keys);

  dataframe source_;
  std::vector<std::string> keys_;
  std::size_t split_out_ = 0;
};

}  // namespace dx
