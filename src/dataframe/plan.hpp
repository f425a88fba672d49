// The dataframe's plans: the logical plan users build (df_node), the physical tasks it is lowered
// to (task_spec), and what one task does (run_task). Lowering fuses row-wise steps into the task
// that produces their partition and pushes column selections into CSV reads; run_task is pure,
// so the same task runs on a local thread or on a worker.
#pragma once

#include <dx/dataframe.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dataframe/expr.hpp"
#include "dataframe/kernels.hpp"

namespace dx::detail {

/// A table-to-table transformation applied to each partition.
struct df_step {
  enum class kind : std::uint8_t {
    filter,        // keep rows where `condition` is true
    with_column,   // name = condition
    select,        // keep `columns` (those present), in that order
    rename,        // renames
    map_function,  // call the registered function `name`
    partial_agg,   // agg -> partial state
    finalize_agg,  // combined state -> result
    distinct,      // distinct_rows(subset) of this partition
    row_count,     // one row: "rows"
    head,          // the first `count` rows
    top,           // the first `count` rows as sorted by `sort`
  };
  kind k = kind::filter;
  expr_ptr condition;
  std::string name;
  std::vector<std::string> columns;
  std::map<std::string, std::string> renames;
  df::agg_spec agg;
  df::sort_spec sort;
  std::uint64_t count = 0;

  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& k& name& columns& renames& agg& sort& count;
    bool has = condition != nullptr;
    ar& has;
    if constexpr (Archive::is_saving::value) {
      if (has) ar&* const_cast<expr_node*>(condition.get());
    } else {
      if (has) {
        auto e = std::make_shared<expr_node>();
        ar&* e;
        condition = std::move(e);
      } else {
        condition.reset();
      }
    }
  }
};

/// A node of the logical plan. Immutable once built; shared between dataframes.
struct df_node {
  enum class kind : std::uint8_t {
    memory,
    csv,
    rowwise,
    aggregate,
    sort,
    join,
    distinct,
    describe,
    repartition,
    row_count,
  };
  kind k = kind::memory;
  df::schema_t schema;
  std::vector<std::shared_ptr<const df_node>> inputs;
  std::size_t partitions = 1;

  std::vector<table> memory_parts;                    // memory
  std::shared_ptr<const df::csv_source> csv;          // csv
  std::vector<df::csv_range> ranges;                  // csv
  std::vector<df_step> steps;                         // rowwise
  df::agg_spec agg;                                   // aggregate
  std::size_t split_out = 1;                          // aggregate: output partitions (1: tree combine)
  df::sort_spec sort;                                 // sort
  std::size_t limit = 0;                              // sort: only the first `limit` rows (0: all)
  df::join_spec join;                                 // join
  join_strategy strategy = join_strategy::automatic;  // join
  std::vector<std::string> subset;                    // distinct

  mutable std::uint64_t last_skipped_rows = 0;  // of the last run from this node
};

using node_ptr = std::shared_ptr<const df_node>;

/// Which piece of which task's output a task reads.
struct input_ref {
  std::uint32_t task = 0;
  std::uint32_t piece = 0;

  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& task& piece;
  }
  friend bool operator==(const input_ref&, const input_ref&) = default;
};

/// One task of the physical plan: a head operation over its inputs, then steps, then a split.
struct task_spec {
  enum class head_kind : std::uint8_t {
    memory,       // the embedded partition
    csv,          // read `range` of `csv`, building `wanted` columns
    concat,       // inputs concatenated in order
    combine_agg,  // combine partial states
    boundaries,   // sort boundaries from samples, `count` ranges
    sort,         // sort_table of the inputs
    join,         // first `left_inputs` inputs form the left side, the rest the right side
    distinct,     // distinct_rows of the inputs
    describe,     // describe_table of the inputs
  };
  enum class split_kind : std::uint8_t {
    none,
    hash,         // by `split_keys` into `count` pieces
    range,        // by `sort` with the last input as boundaries
    even,         // `count` pieces of about equal rows
    with_sample,  // piece 0: the table, piece 1: sample_sort_keys(sort, count)
    with_count,   // piece 0: the table, piece 1: its row count (one row, "rows")
    by_position,  // `count` pieces by global row position: partition `part` of partitions whose
                  // row counts (in order) are the last input
  };

  head_kind head = head_kind::concat;
  std::vector<input_ref> inputs;
  table memory;
  std::shared_ptr<const df::csv_source> csv;
  df::csv_range range;
  std::vector<bool> wanted;
  df::agg_spec agg;
  df::sort_spec sort;
  df::join_spec join;
  std::uint32_t left_inputs = 0;
  std::vector<std::string> subset;
  std::vector<df_step> steps;
  split_kind split = split_kind::none;
  std::vector<std::string> split_keys;
  std::uint64_t count = 0;
  std::uint64_t part = 0;

  std::size_t pieces() const noexcept {
    switch (split) {
      case split_kind::none:
        return 1;
      case split_kind::with_sample:
      case split_kind::with_count:
        return 2;
      case split_kind::range:
        return 0;  // boundaries + 1, known when run
      default:
        return static_cast<std::size_t>(count);
    }
  }

  template <class Archive>
  void serialize(Archive& ar, unsigned);
};

/// What a task produced: its pieces and, for CSV reads, the rows skipped as malformed.
struct bundle {
  std::vector<table> pieces;
  std::map<std::uint32_t, std::uint64_t> skipped_rows;  // by CSV task, including upstream ones
  /// After an even split, the table the pieces are slices of, so that a caller wanting all pieces
  /// in order takes it instead of copying them together. Not sent between processes.
  table whole;

  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& pieces& skipped_rows;
  }
};

/// The physical plan: tasks in dependency order, and the pieces that form the result's partitions.
struct physical_plan {
  std::vector<task_spec> tasks;
  std::vector<input_ref> outputs;
};

struct lowering_options {
  /// At most this many inputs per task (remote calls have a fixed arity); more go through trees.
  std::size_t max_inputs = 8;
  /// Insert tasks that pick one piece of a multi-piece result, so a consumer fetches only it.
  bool pick_pieces = false;
  /// Every task runs in this process and may spread its work over the local threads: a sort by
  /// one fixed-width key becomes one task over all partitions, whose output is cut into slices,
  /// instead of a sample sort that moves every row between partitions.
  bool one_process = false;
};

/// Lowers `node`; every column of its output is computed.
physical_plan lower(const node_ptr& node, const lowering_options& options);
/// One line per task.
std::string describe_plan(const physical_plan& plan);
/// The kind a task is learned and shown as on a cluster: "dx.dataframe.read_csv+partial_agg".
std::string task_kind(const task_spec& t);
/// Runs one task on its inputs (in the order of spec.inputs); kernels that can spread their work
/// do so over `run`.
bundle run_task(const task_spec& spec, std::uint32_t task_id, const std::vector<const bundle*>& inputs,
                const df::parallel_runner& run = {});

/// Applies the steps to one partition.
table apply_steps(table t, const std::vector<df_step>& steps);

/// How many partitions a groupby's result should have when the user did not say: a sample of the
/// source, through the row-wise steps above it, estimates how many groups there are.
std::size_t automatic_split_out(const df_node& input, const df::agg_spec& spec);
/// The schema after the steps; dx::dataframe_error for unknown columns or type mismatches.
df::schema_t steps_schema(df::schema_t schema, const std::vector<df_step>& steps);

template <class Archive>
void task_spec::serialize(Archive& ar, unsigned) {
  ar& head& inputs& memory;
  bool has_csv = csv != nullptr;
  ar& has_csv;
  if constexpr (Archive::is_saving::value) {
    if (has_csv) ar&* const_cast<df::csv_source*>(csv.get());
  } else {
    if (has_csv) {
      auto c = std::make_shared<df::csv_source>();
      ar&* c;
      csv = std::move(c);
    }
  }
  ar& range& wanted& agg& sort& join& left_inputs& subset& steps& split& split_keys& count& part;
}

}  // namespace dx::detail
