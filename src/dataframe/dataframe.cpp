// dx::dataframe: building plans, and running them on a cluster's local threads or its workers.
#include <dx/archive.hpp>
#include <dx/cluster.hpp>
#include <dx/dataframe.hpp>
#include <dx/parallel_for.hpp>
#include <dx/remote.hpp>
#include <dx/task_graph.hpp>
#include <dx/task_group.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_set>

#include "cluster/cluster_access.hpp"
#include "common/atomic_file.hpp"
#include "dataframe/plan.hpp"

namespace dx::detail::df_remote {

// Tasks sent to workers: the encoded task_spec and its inputs' results. Remote calls have a fixed
// arity, so there is one function per input count; the lowering keeps tasks within eight inputs.
bundle run_encoded(const std::string& encoded, std::initializer_list<const bundle*> inputs) {
  const auto [spec, task_id] = read_value<std::pair<task_spec, std::uint32_t>>(encoded);
  return run_task(spec, task_id, std::vector<const bundle*>(inputs));
}

bundle task0(std::string s) { return run_encoded(s, {}); }
bundle task1(std::string s, bundle a) { return run_encoded(s, {&a}); }
bundle task2(std::string s, bundle a, bundle b) { return run_encoded(s, {&a, &b}); }
bundle task3(std::string s, bundle a, bundle b, bundle c) { return run_encoded(s, {&a, &b, &c}); }
bundle task4(std::string s, bundle a, bundle b, bundle c, bundle d) { return run_encoded(s, {&a, &b, &c, &d}); }
bundle task5(std::string s, bundle a, bundle b, bundle c, bundle d, bundle e) {
  return run_encoded(s, {&a, &b, &c, &d, &e});
}
bundle task6(std::string s, bundle a, bundle b, bundle c, bundle d, bundle e, bundle f) {
  return run_encoded(s, {&a, &b, &c, &d, &e, &f});
}
bundle task7(std::string s, bundle a, bundle b, bundle c, bundle d, bundle e, bundle f, bundle g) {
  return run_encoded(s, {&a, &b, &c, &d, &e, &f, &g});
}
bundle task8(std::string s, bundle a, bundle b, bundle c, bundle d, bundle e, bundle f, bundle g, bundle h) {
  return run_encoded(s, {&a, &b, &c, &d, &e, &f, &g, &h});
}

}  // namespace dx::detail::df_remote

DX_REMOTE_AS("dx.dataframe.task0", dx::detail::df_remote::task0);
DX_REMOTE_AS("dx.dataframe.task1", dx::detail::df_remote::task1);
DX_REMOTE_AS("dx.dataframe.task2", dx::detail::df_remote::task2);
DX_REMOTE_AS("dx.dataframe.task3", dx::detail::df_remote::task3);
DX_REMOTE_AS("dx.dataframe.task4", dx::detail::df_remote::task4);
DX_REMOTE_AS("dx.dataframe.task5", dx::detail::df_remote::task5);
DX_REMOTE_AS("dx.dataframe.task6", dx::detail::df_remote::task6);
DX_REMOTE_AS("dx.dataframe.task7", dx::detail::df_remote::task7);
DX_REMOTE_AS("dx.dataframe.task8", dx::detail::df_remote::task8);

namespace dx::detail {

/// Builds dataframes from plan nodes for the free functions here (the constructor is private).
struct df_access {
  static dataframe make(cluster& cl, std::shared_ptr<const df_node> node) { return dataframe(cl, std::move(node)); }
};

namespace {

bool distributed(const cluster& cl) { return cluster_access::head(cl) != nullptr; }

std::size_t cluster_threads(cluster& cl) {
  if (!distributed(cl)) return cl.local().num_threads();
  std::size_t threads = 0;
  for (const worker_info& w : cl.workers()) {
    if (w.state == worker_state::active) threads += w.threads;
  }
  return std::max<std::size_t>(threads, cl.config().local_processes() + 1);
}

/// Runs a physical plan's tasks as they are needed, keeping results for later requests.
class plan_runner {
 public:
  plan_runner(cluster& cl, physical_plan plan, bool keep_results)
      : cluster_(cl), plan_(std::move(plan)), keep_(keep_results) {
    local_results_.resize(plan_.tasks.size());
    remote_results_.resize(plan_.tasks.size());
  }

  const physical_plan& plan() const noexcept { return plan_; }

  /// The tables of `refs`, running every task they need that has not run yet.
  std::vector<table> fetch(const std::vector<input_ref>& refs) {
    std::vector<bool> needed(plan_.tasks.size(), false);
    for (const auto& r : refs) needed[r.task] = true;
    for (std::size_t i = plan_.tasks.size(); i-- > 0;) {
      if (!needed[i] || done(i)) {
        needed[i] = needed[i] && !done(i);
        continue;
      }
      for (const auto& in : plan_.tasks[i].inputs) needed[in.task] = true;
    }
    for (std::size_t i = 0; i < needed.size(); ++i) needed[i] = needed[i] && !done(i);
    if (distributed(cluster_)) {
      submit_remote(needed);
    } else {
      run_local(needed, refs);
    }
    std::vector<table> out;
    out.reserve(refs.size());
    for (const auto& r : refs) {
      const bundle& b = result(r.task);
      for (const auto& [task, n] : b.skipped_rows) skipped_[task] = n;
      if (r.piece < b.pieces.size()) {
        out.push_back(b.pieces[r.piece]);
      } else {
        out.push_back(b.pieces.empty() ? table{} : b.pieces[0].slice(0, 0));
      }
    }
    return out;
  }

  /// The table whose slices `refs` are, in order, when one task's even split made them all.
  std::optional<table> whole_of(const std::vector<input_ref>& refs) {
    if (refs.empty() || distributed(cluster_)) return std::nullopt;
    for (std::size_t j = 0; j < refs.size(); ++j) {
      if (refs[j].task != refs[0].task || refs[j].piece != j) return std::nullopt;
    }
    const bundle& b = result(refs[0].task);
    if (b.pieces.size() != refs.size() || b.whole.num_columns() == 0) return std::nullopt;
    return b.whole;
  }

  std::uint64_t skipped_rows() const {
    std::uint64_t n = 0;
    for (const auto& [task, k] : skipped_) n += k;
    return n;
  }

 private:
  bool done(std::size_t i) const {
    return distributed(cluster_) ? remote_results_[i].valid() : local_results_[i] != nullptr;
  }

  const bundle& result(std::size_t i) {
    if (!distributed(cluster_)) return *local_results_[i];
    try {
      return remote_results_[i].get();
    } catch (const remote_error& e) {
      // A worker's dataframe error is still a dataframe error, naming the worker.
      if (e.type_name() == "dx::dataframe_error") {
        dx::detail::throw_error(dx::detail::error_kind::dataframe,
                                fmt::format("{} (on worker {})", e.message(), e.worker()));
      }
      throw;
    }
  }

  // Kernels spread their chunks over the local threads; a chunk waits for no other.
  df::parallel_runner local_runner() {
    executor& ex = cluster_.local();
    if (ex.num_threads() < 2) return {};
    return [&ex](std::size_t chunks, const std::function<void(std::size_t)>& fn) {
      dx::parallel_for(ex, std::size_t{0}, chunks, [&fn](std::size_t i) { fn(i); });
    };
  }

  void run_local(const std::vector<bool>& needed, const std::vector<input_ref>& refs) {
    // Results are dropped once every task reading them has run, unless they are asked for.
    std::vector<std::atomic<std::size_t>> readers(plan_.tasks.size());
    std::vector<bool> kept(plan_.tasks.size(), keep_);
    for (const auto& r : refs) kept[r.task] = true;
    task_graph g{"dataframe"};
    std::vector<graph_task> nodes(plan_.tasks.size());
    for (std::size_t i = 0; i < plan_.tasks.size(); ++i) {
      if (!needed[i]) continue;
      for (const auto& in : plan_.tasks[i].inputs) readers[in.task].fetch_add(1, std::memory_order_relaxed);
      nodes[i] = g.emplace([this, i, &readers, &kept] {
                    const task_spec& spec = plan_.tasks[i];
                    std::vector<const bundle*> inputs;
                    inputs.reserve(spec.inputs.size());
                    for (const auto& in : spec.inputs) inputs.push_back(local_results_[in.task].get());
                    auto out = std::make_shared<const bundle>(
                        run_task(spec, static_cast<std::uint32_t>(i), inputs, local_runner()));
                    inputs.clear();
                    local_results_[i] = std::move(out);
                    for (const auto& in : spec.inputs) {
                      if (readers[in.task].fetch_sub(1, std::memory_order_acq_rel) == 1 && !kept[in.task]) {
                        local_results_[in.task].reset();
                      }
                    }
                  }).name(fmt::format("t{}", i));
      for (const auto& in : plan_.tasks[i].inputs) {
        if (needed[in.task]) nodes[in.task].precede(nodes[i]);
      }
    }
    if (g.size() == 0) return;
    cluster_.local().run(g).get();
  }

  void submit_remote(const std::vector<bool>& needed) {
    for (std::size_t i = 0; i < plan_.tasks.size(); ++i) {
      if (!needed[i]) continue;
      const task_spec& spec = plan_.tasks[i];
      std::string encoded;
      write_value(encoded, std::make_pair(spec, static_cast<std::uint32_t>(i)));
      std::vector<shared_future<bundle>> in;
      for (const auto& r : spec.inputs) in.push_back(remote_results_[r.task]);
      remote_results_[i] = submit_arity(task_options{}.with_kind(task_kind(spec)), std::move(encoded), in).share();
    }
  }

  future<bundle> submit_arity(const task_options& o, std::string s, std::vector<shared_future<bundle>>& in) {
    namespace r = df_remote;
    cluster& c = cluster_;
    switch (in.size()) {
      case 0:
        return c.submit(o, r::task0, std::move(s));
      case 1:
        return c.submit(o, r::task1, std::move(s), in[0]);
      case 2:
        return c.submit(o, r::task2, std::move(s), in[0], in[1]);
      case 3:
        return c.submit(o, r::task3, std::move(s), in[0], in[1], in[2]);
      case 4:
        return c.submit(o, r::task4, std::move(s), in[0], in[1], in[2], in[3]);
      case 5:
        return c.submit(o, r::task5, std::move(s), in[0], in[1], in[2], in[3], in[4]);
      case 6:
        return c.submit(o, r::task6, std::move(s), in[0], in[1], in[2], in[3], in[4], in[5]);
      case 7:
        return c.submit(o, r::task7, std::move(s), in[0], in[1], in[2], in[3], in[4], in[5], in[6]);
      case 8:
        return c.submit(o, r::task8, std::move(s), in[0], in[1], in[2], in[3], in[4], in[5], in[6], in[7]);
      default:
        dx::detail::throw_error(dx::detail::error_kind::dataframe,
                                fmt::format("dataframe: a task with {} inputs (at most 8)", in.size()));
    }
  }

  cluster& cluster_;
  physical_plan plan_;
  bool keep_;
  std::vector<std::shared_ptr<const bundle>> local_results_;
  std::vector<shared_future<bundle>> remote_results_;
  std::map<std::uint32_t, std::uint64_t> skipped_;
};

lowering_options lowering_for(cluster& cl) {
  lowering_options o;
  o.max_inputs = 8;
  o.pick_pieces = distributed(cl);
  o.one_process = !distributed(cl);
  return o;
}

// The skipped-row count of a plan's last run lives in its root node, which dataframes share.
std::mutex skipped_mutex;

void remember_skipped(const df_node* root, std::uint64_t n) {
  std::lock_guard lock(skipped_mutex);
  root->last_skipped_rows = n;
}

std::shared_ptr<df_node> derive(const dataframe& from, df_node::kind k) {
  auto n = std::make_shared<df_node>();
  n->k = k;
  n->inputs.push_back(from.node());
  n->partitions = from.node()->partitions;
  return n;
}

// Row-wise steps on a row-wise node extend it, so a chain of them stays one node.
dataframe with_step(const dataframe& df, df_step step) {
  const node_ptr& in = df.node();
  std::shared_ptr<df_node> n =
      in->k == df_node::kind::rowwise ? std::make_shared<df_node>(*in) : derive(df, df_node::kind::rowwise);
  n->schema = steps_schema(in->schema, {step});
  n->steps.push_back(std::move(step));
  return df_access::make(df.owner(), std::move(n));
}

void check_columns(const df::schema_t& schema, const std::vector<std::string>& names, std::string_view what) {
  std::vector<std::string> known;
  for (const auto& [n, t] : schema) known.push_back(n);
  for (const auto& name : names) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      dx::detail::throw_error(dx::detail::error_kind::dataframe,
                              fmt::format("{}: {}", what, unknown_column_message(name, known)));
    }
  }
}

}  // namespace

/// The partitions as one table. Large results copy their columns in parallel: gathering is a
/// plain memory copy, and one thread alone cannot saturate the memory bus.
table gather_partitions(executor& ex, const std::vector<table>& parts) {
  if (parts.size() == 1) return parts[0];
  std::size_t bytes = 0;
  for (const auto& p : parts) bytes += p.byte_size();
  const std::size_t ncols = parts[0].num_columns();
  if (bytes < (16u << 20) || ncols < 2 || ex.num_threads() < 2) return df::concat(parts);
  for (const auto& p : parts) {
    if (p.column_names() != parts[0].column_names()) return df::concat(parts);  // reports the mismatch
  }
  std::vector<column> cols(ncols);
  std::vector<std::exception_ptr> errors(ncols);
  {
    task_group tg{ex};
    for (std::size_t c = 0; c < ncols; ++c) {
      tg.run([&, c] {
        try {
          std::vector<column> pieces;
          pieces.reserve(parts.size());
          for (const auto& p : parts) pieces.push_back(p.column_at(c));
          cols[c] = df::concat_columns(pieces);
        } catch (...) {
          errors[c] = std::current_exception();
        }
      });
    }
    tg.wait();
  }
  for (const auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return table(parts[0].column_names(), std::move(cols));
}

}  // namespace dx::detail

namespace dx {

using detail::df_node;
using detail::df_step;

dataframe::dataframe(cluster& cl, std::shared_ptr<const detail::df_node> node)
    : cluster_(&cl), node_(std::move(node)) {}

dataframe dataframe::read_csv(cluster& cl, const std::string& path_or_glob, const csv_options& options) {
  if (options.delimiter == options.quote || options.delimiter == '\n' || options.delimiter == '\r' ||
      options.quote == '\n' || options.quote == '\r') {
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            fmt::format("read_csv: delimiter '{}' and quote '{}' must differ and not be line ends",
                                        options.delimiter, options.quote));
  }
  auto source = std::make_shared<detail::df::csv_source>(detail::df::open_csv(path_or_glob, options));
  auto n = std::make_shared<df_node>();
  n->k = df_node::kind::csv;
  n->ranges = detail::df::split_csv(*source, options.partition_bytes, detail::cluster_threads(cl));
  for (std::size_t i = 0; i < source->names.size(); ++i) n->schema.emplace_back(source->names[i], source->types[i]);
  n->csv = std::move(source);
  n->partitions = n->ranges.size();
  return dataframe(cl, std::move(n));
}

dataframe dataframe::from_table(cluster& cl, table t, std::size_t partitions) {
  if (partitions == 0) partitions = std::max<std::size_t>(1, detail::cluster_threads(cl));
  auto n = std::make_shared<df_node>();
  n->k = df_node::kind::memory;
  n->schema = detail::df::schema_of(t);
  const std::size_t rows = t.num_rows();
  partitions = std::max<std::size_t>(1, std::min(partitions, std::max<std::size_t>(rows, 1)));
  for (std::size_t i = 0; i < partitions; ++i) {
    const std::size_t b = rows * i / partitions, e = rows * (i + 1) / partitions;
    n->memory_parts.push_back(t.slice(b, e - b));
  }
  n->partitions = partitions;
  return dataframe(cl, std::move(n));
}

dataframe dataframe::from_columns(cluster& cl, std::initializer_list<std::pair<std::string, column>> columns,
                                  std::size_t partitions) {
  return from_table(cl, table(columns), partitions);
}

std::vector<std::string> dataframe::column_names() const {
  std::vector<std::string> out;
  for (const auto& [n, t] : node_->schema) out.push_back(n);
  return out;
}
std::vector<std::pair<std::string, column_type>> dataframe::schema() const { return node_->schema; }
std::size_t dataframe::num_partitions() const { return node_->partitions; }

expr dataframe::operator[](const std::string& name) const {
  detail::check_columns(node_->schema, {name}, "dataframe");
  return col(name);
}

dataframe dataframe::select(const std::vector<std::string>& columns) const {
  // A partition without columns has no rows either: keep at least one column.
  if (columns.empty()) dx::detail::throw_error(dx::detail::error_kind::dataframe, "select: no columns");
  df_step s;
  s.k = df_step::kind::select;
  s.columns = columns;
  return detail::with_step(*this, std::move(s));
}

dataframe dataframe::drop(const std::vector<std::string>& columns) const {
  detail::check_columns(node_->schema, columns, "drop");
  std::vector<std::string> keep;
  for (const auto& [n, t] : node_->schema) {
    if (std::find(columns.begin(), columns.end(), n) == columns.end()) keep.push_back(n);
  }
  return select(keep);
}

dataframe dataframe::filter(const expr& condition) const {
  df_step s;
  s.k = df_step::kind::filter;
  s.condition = condition.node();
  return detail::with_step(*this, std::move(s));
}

dataframe dataframe::with_column(const std::string& name, const expr& value) const {
  if (name.empty()) dx::detail::throw_error(dx::detail::error_kind::dataframe, "with_column: empty column name");
  df_step s;
  s.k = df_step::kind::with_column;
  s.name = name;
  s.condition = value.node();
  return detail::with_step(*this, std::move(s));
}

dataframe dataframe::rename(const std::map<std::string, std::string>& old_to_new) const {
  df_step s;
  s.k = df_step::kind::rename;
  s.renames = old_to_new;
  return detail::with_step(*this, std::move(s));
}

dataframe dataframe::map_partitions(partition_function fn) const {
  const detail::remote_function* rf = fn ? detail::find_remote_by_address(reinterpret_cast<void (*)()>(fn)) : nullptr;
  if (!rf) {
    dx::detail::throw_error(
        dx::detail::error_kind::dataframe,
        "map_partitions: the function is not registered; register it with DX_REMOTE(fn) so that workers find it");
  }
  df_step s;
  s.k = df_step::kind::map_function;
  s.name = rf->name;
  return detail::with_step(*this, std::move(s));
}

group_by dataframe::groupby(std::vector<std::string> keys) const {
  if (keys.empty()) dx::detail::throw_error(dx::detail::error_kind::dataframe, "groupby: no key columns");
  detail::check_columns(node_->schema, keys, "groupby");
  return group_by(*this, std::move(keys));
}

namespace {

dataframe aggregate(const dataframe& source, std::vector<std::string> keys, std::vector<aggregation> aggs,
                    std::size_t split_out) {
  if (aggs.empty()) dx::detail::throw_error(dx::detail::error_kind::dataframe, "agg: no aggregations");
  for (auto& a : aggs) {
    if (a.as.empty()) a.as = fmt::format("{}_{}", a.column, agg_name(a.fn));
  }
  auto n = detail::derive(source, df_node::kind::aggregate);
  n->agg.keys = std::move(keys);
  n->agg.aggs = std::move(aggs);
  n->schema = detail::df::aggregate_schema(source.node()->schema, n->agg);
  for (std::size_t i = 0; i < n->schema.size(); ++i) {
    for (std::size_t j = i + 1; j < n->schema.size(); ++j) {
      if (n->schema[i].first == n->schema[j].first) {
        dx::detail::throw_error(
            dx::detail::error_kind::dataframe,
            fmt::format("agg: two output columns are called '{}'; name one with `as`", n->schema[i].first));
      }
    }
  }
  n->split_out = split_out != 0 ? split_out : detail::automatic_split_out(*source.node(), n->agg);
  n->partitions = n->split_out;
  return detail::df_access::make(source.owner(), std::move(n));
}

}  // namespace

dataframe dataframe::agg(std::vector<aggregation> aggregations) const {
  return aggregate(*this, {}, std::move(aggregations), 1);
}

group_by::group_by(dataframe source, std::vector<std::string> keys)
    : source_(std::move(source)), keys_(std::move(keys)) {}

group_by& group_by::split_out(std::size_t partitions) {
  split_out_ = partitions;
  return *this;
}

dataframe group_by::agg(std::vector<aggregation> aggregations) const {
  return aggregate(source_, keys_, std::move(aggregations), split_out_);
}

dataframe group_by::count() const {
  // The size of each group: count a key column (never null inside a group).
  return agg({{keys_.front(), dx::agg::count, "count"}});
}

dataframe dataframe::sort_values(std::vector<std::string> by, bool ascending) const {
  std::vector<bool> dirs(by.size(), ascending);
  return sort_values(std::move(by), std::move(dirs));
}

dataframe dataframe::sort_values(std::vector<std::string> by, std::vector<bool> ascending) const {
  if (by.empty()) dx::detail::throw_error(dx::detail::error_kind::dataframe, "sort_values: no columns to sort by");
  if (ascending.size() != by.size()) {
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            fmt::format("sort_values: {} columns but {} directions", by.size(), ascending.size()));
  }
  detail::check_columns(node_->schema, by, "sort_values");
  auto n = detail::derive(*this, df_node::kind::sort);
  n->schema = node_->schema;
  n->sort.by = std::move(by);
  n->sort.ascending = std::move(ascending);
  return dataframe(*cluster_, std::move(n));
}

namespace {

dataframe first_sorted(const dataframe& df, std::size_t n, std::vector<std::string> columns, bool ascending) {
  if (n == 0) {
    df_step s;
    s.k = df_step::kind::head;
    s.count = 0;
    (void)df.sort_values(std::move(columns), ascending);  // checks the columns
    return detail::with_step(df, std::move(s));
  }
  auto sorted = std::make_shared<df_node>(*df.sort_values(std::move(columns), ascending).node());
  sorted->limit = n;
  sorted->partitions = 1;
  return detail::df_access::make(df.owner(), std::move(sorted));
}

}  // namespace

dataframe dataframe::nlargest(std::size_t n, std::vector<std::string> columns) const {
  return first_sorted(*this, n, std::move(columns), false);
}

dataframe dataframe::nsmallest(std::size_t n, std::vector<std::string> columns) const {
  return first_sorted(*this, n, std::move(columns), true);
}

dataframe dataframe::join(const dataframe& right, const std::vector<std::string>& on, join_kind how,
                          join_strategy strategy) const {
  return join(right, on, on, how, strategy);
}

dataframe dataframe::join(const dataframe& right, const std::vector<std::string>& left_on,
                          const std::vector<std::string>& right_on, join_kind how, join_strategy strategy) const {
  if (&right.owner() != cluster_)
    dx::detail::throw_error(dx::detail::error_kind::dataframe, "join: the dataframes belong to different clusters");
  if (left_on.empty() || left_on.size() != right_on.size()) {
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            fmt::format("join: {} left keys and {} right keys", left_on.size(), right_on.size()));
  }
  detail::check_columns(node_->schema, left_on, "join (left side)");
  detail::check_columns(right.node()->schema, right_on, "join (right side)");
  auto n = detail::derive(*this, df_node::kind::join);
  n->inputs.push_back(right.node());
  n->join.left_on = left_on;
  n->join.right_on = right_on;
  n->join.how = how;
  n->strategy = strategy;
  n->schema = detail::df::join_schema(node_->schema, right.node()->schema, n->join);
  n->partitions = std::max(node_->partitions, right.node()->partitions);
  return dataframe(*cluster_, std::move(n));
}

dataframe dataframe::drop_duplicates(std::vector<std::string> subset, std::size_t split_out) const {
  detail::check_columns(node_->schema, subset, "drop_duplicates");
  if (split_out == 0)
    dx::detail::throw_error(dx::detail::error_kind::dataframe, "drop_duplicates: split_out must be at least 1");
  auto n = detail::derive(*this, df_node::kind::distinct);
  n->schema = node_->schema;
  n->subset = std::move(subset);
  n->split_out = split_out;
  n->partitions = split_out;
  return dataframe(*cluster_, std::move(n));
}

dataframe dataframe::value_counts(const std::string& column) const {
  detail::check_columns(node_->schema, {column}, "value_counts");
  if (column == "count") {
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            "value_counts: the column is called 'count', which the result's count column also is");
  }
  return groupby({column}).agg({{column, dx::agg::count, "count"}}).sort_values({"count", column}, {false, true});
}

dataframe dataframe::describe() const {
  bool numeric = false;
  for (const auto& [n, t] : node_->schema) numeric |= t == column_type::int64 || t == column_type::float64;
  if (!numeric) dx::detail::throw_error(dx::detail::error_kind::dataframe, "describe: no numeric columns");
  auto n = detail::derive(*this, df_node::kind::describe);
  n->schema.emplace_back("statistic", column_type::string);
  for (const auto& [name, t] : node_->schema) {
    if (t == column_type::int64 || t == column_type::float64) n->schema.emplace_back(name, column_type::float64);
  }
  n->partitions = 1;
  return dataframe(*cluster_, std::move(n));
}

dataframe dataframe::repartition(std::size_t partitions) const {
  if (partitions == 0) dx::detail::throw_error(dx::detail::error_kind::dataframe, "repartition: zero partitions");
  auto n = detail::derive(*this, df_node::kind::repartition);
  n->schema = node_->schema;
  n->partitions = partitions;
  return dataframe(*cluster_, std::move(n));
}

table dataframe::compute() const {
  detail::plan_runner runner(*cluster_, detail::lower(node_, detail::lowering_for(*cluster_)), false);
  const std::vector<table> parts = runner.fetch(runner.plan().outputs);
  detail::remember_skipped(node_.get(), runner.skipped_rows());
  if (std::optional<table> whole = runner.whole_of(runner.plan().outputs)) return *std::move(whole);
  std::vector<table> nonempty;
  for (const auto& p : parts) {
    if (p.num_columns() != 0) nonempty.push_back(p);
  }
  if (nonempty.empty()) return detail::df::empty_table(node_->schema);
  return detail::gather_partitions(cluster_->local(), nonempty);
}

table dataframe::head(std::size_t n) const {
  if (node_->k == df_node::kind::sort && (node_->limit == 0 || node_->limit > n) && n > 0) {
    auto first = std::make_shared<df_node>(*node_);
    first->limit = n;
    first->partitions = 1;
    return dataframe(*cluster_, std::move(first)).compute();
  }
  detail::plan_runner runner(*cluster_, detail::lower(node_, detail::lowering_for(*cluster_)), true);
  std::vector<table> got;
  std::size_t rows = 0;
  for (const auto& ref : runner.plan().outputs) {
    if (rows >= n) break;
    table part = runner.fetch({ref}).front();
    if (part.num_columns() == 0) continue;
    part = part.head(n - rows);
    rows += part.num_rows();
    got.push_back(std::move(part));
  }
  detail::remember_skipped(node_.get(), runner.skipped_rows());
  if (got.empty()) return detail::df::empty_table(node_->schema);
  return detail::df::concat(got);
}

std::size_t dataframe::count_rows() const {
  auto n = detail::derive(*this, df_node::kind::row_count);
  n->schema = {{"rows", column_type::int64}};
  n->partitions = 1;
  const table counts = dataframe(*cluster_, std::move(n)).compute();
  std::size_t rows = 0;
  if (counts.num_columns() == 1) {
    const column& c = counts.column_at(0);
    for (std::size_t i = 0; i < c.size(); ++i) rows += static_cast<std::size_t>(c.int64_at(i));
  }
  return rows;
}

void dataframe::to_csv(const std::string& path, const csv_options& options) const {
  const auto star = path.find('*');
  // Streamed a partition at a time into an atomic_file: the target is replaced only once the
  // whole file is on disk. Its errors (dx::error) are reported as this call's dataframe_error.
  auto write_file = [&](const std::string& target, const std::vector<table>& parts) {
    try {
      detail::atomic_file out(target);
      std::string text;
      bool header = options.header;
      if (parts.empty()) detail::df::write_csv(text, detail::df::empty_table(node_->schema), options, header);
      for (const auto& p : parts) {
        if (p.num_columns() == 0) continue;
        text.clear();
        detail::df::write_csv(text, p, options, header);
        header = false;
        out.write(text);
      }
      if (parts.empty()) out.write(text);
      out.commit();
    } catch (const dataframe_error&) {
      throw;
    } catch (const error& e) {
      dx::detail::throw_error(dx::detail::error_kind::dataframe, fmt::format("to_csv: {}", e.what()));
    }
  };
  detail::plan_runner runner(*cluster_, detail::lower(node_, detail::lowering_for(*cluster_)), false);
  const std::vector<table> parts = runner.fetch(runner.plan().outputs);
  if (star == std::string::npos) {
    write_file(path, parts);
  } else {
    for (std::size_t i = 0; i < parts.size(); ++i) {
      std::string target = path;
      target.replace(star, 1, std::to_string(i));
      write_file(target, {parts[i]});
    }
  }
  detail::remember_skipped(node_.get(), runner.skipped_rows());
}

std::size_t dataframe::skipped_rows() const {
  std::lock_guard lock(detail::skipped_mutex);
  return static_cast<std::size_t>(node_->last_skipped_rows);
}

std::string dataframe::explain() const {
  return detail::describe_plan(detail::lower(node_, detail::lowering_for(*cluster_)));
}

}  // namespace dx
