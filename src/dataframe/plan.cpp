// Lowering logical dataframe plans to tasks, and running one task.
#include "dataframe/plan.hpp"

#include <dx/remote.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <unordered_map>

namespace dx::detail {

using df::schema_t;

// ---------------------------------------------------------------------------------------------
// Steps

namespace {

std::vector<std::string> names_of(const schema_t& s) {
  std::vector<std::string> out;
  out.reserve(s.size());
  for (const auto& [n, t] : s) out.push_back(n);
  return out;
}

std::ptrdiff_t find_in(const schema_t& s, const std::string& name) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i].first == name) return static_cast<std::ptrdiff_t>(i);
  }
  return -1;
}

partition_function find_partition_function(const std::string& name) {
  const remote_function* rf = find_remote(name);
  if (!rf || rf->address == nullptr) {
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            fmt::format("map_partitions: no function '{}' is registered in this process", name));
  }
  return reinterpret_cast<partition_function>(rf->address);
}

}  // namespace

schema_t steps_schema(schema_t schema, const std::vector<df_step>& steps) {
  for (const df_step& s : steps) {
    switch (s.k) {
      case df_step::kind::filter: {
        const column_type t = check_expr(*s.condition, schema);
        if (t != column_type::boolean) {
          dx::detail::throw_error(
              dx::detail::error_kind::dataframe,
              fmt::format("filter: the condition {} is {}, not bool", expr_text(*s.condition), type_name(t)));
        }
        break;
      }
      case df_step::kind::with_column: {
        const column_type t = check_expr(*s.condition, schema);
        const auto at = find_in(schema, s.name);
        if (at >= 0) {
          schema[static_cast<std::size_t>(at)].second = t;
        } else {
          schema.emplace_back(s.name, t);
        }
        break;
      }
      case df_step::kind::select: {
        schema_t out;
        for (const auto& n : s.columns) {
          const auto at = find_in(schema, n);
          if (at < 0)
            dx::detail::throw_error(dx::detail::error_kind::dataframe,
                                    "select: " + unknown_column_message(n, names_of(schema)));
          if (find_in(out, n) >= 0)
            dx::detail::throw_error(dx::detail::error_kind::dataframe,
                                    fmt::format("select: column '{}' named twice", n));
          out.push_back(schema[static_cast<std::size_t>(at)]);
        }
        schema = std::move(out);
        break;
      }
      case df_step::kind::rename: {
        for (const auto& [from, to] : s.renames) {
          if (find_in(schema, from) < 0)
            dx::detail::throw_error(dx::detail::error_kind::dataframe,
                                    "rename: " + unknown_column_message(from, names_of(schema)));
          if (to.empty())
            dx::detail::throw_error(dx::detail::error_kind::dataframe,
                                    fmt::format("rename: empty new name for '{}'", from));
        }
        for (auto& [n, t] : schema) {
          if (auto it = s.renames.find(n); it != s.renames.end()) n = it->second;
        }
        for (std::size_t i = 0; i < schema.size(); ++i) {
          for (std::size_t j = i + 1; j < schema.size(); ++j) {
            if (schema[i].first == schema[j].first) {
              dx::detail::throw_error(dx::detail::error_kind::dataframe,
                                      fmt::format("rename: two columns would be called '{}'", schema[i].first));
            }
          }
        }
        break;
      }
      case df_step::kind::map_function: {
        const partition_function fn = find_partition_function(s.name);
        table out;
        try {
          out = fn(df::empty_table(schema));
        } catch (const std::exception& e) {
          dx::detail::throw_error(dx::detail::error_kind::dataframe,
                                  fmt::format("map_partitions: '{}' failed on an empty partition (used to learn its "
                                              "output columns): {}",
                                              s.name, e.what()));
        }
        schema = df::schema_of(out);
        break;
      }
      case df_step::kind::partial_agg:
      case df_step::kind::finalize_agg:
        schema = df::aggregate_schema(schema, s.agg);
        break;
      case df_step::kind::distinct:
      case df_step::kind::head:
      case df_step::kind::top:
        break;
      case df_step::kind::row_count:
        schema = {{"rows", column_type::int64}};
        break;
    }
  }
  return schema;
}

namespace {

bool is_row_step(df_step::kind k) {
  return k == df_step::kind::filter || k == df_step::kind::with_column || k == df_step::kind::select ||
         k == df_step::kind::rename;
}

// Row-wise steps feeding a partial aggregation run block by block: each block's mask, filtered
// rows and computed columns stay in cache and are aggregated at once, instead of making a pass
// over memory per step. The blocks' partial states combine like partitions' do.
constexpr std::size_t aggregation_block_rows = 1u << 16;

std::optional<table> aggregate_in_blocks(const table& t, const std::vector<df_step>& steps, std::size_t& next) {
  std::size_t p = 0;
  while (p < steps.size() && is_row_step(steps[p].k)) ++p;
  if (p == 0 || p == steps.size() || steps[p].k != df_step::kind::partial_agg) return std::nullopt;
  if (t.num_rows() < 2 * aggregation_block_rows) return std::nullopt;
  const std::vector<df_step> row_steps(steps.begin(), steps.begin() + static_cast<std::ptrdiff_t>(p));
  std::vector<table> partials;
  for (std::size_t at = 0; at < t.num_rows(); at += aggregation_block_rows) {
    const std::size_t rows = std::min(aggregation_block_rows, t.num_rows() - at);
    partials.push_back(df::partial_aggregate(apply_steps(t.slice(at, rows), row_steps), steps[p].agg));
  }
  next = p + 1;
  return df::combine_aggregate(partials, steps[p].agg);
}

}  // namespace

table apply_steps(table t, const std::vector<df_step>& steps) {
  std::size_t first = 0;
  if (auto aggregated = aggregate_in_blocks(t, steps, first)) t = std::move(*aggregated);
  for (std::size_t i = first; i < steps.size(); ++i) {
    const df_step& s = steps[i];
    switch (s.k) {
      case df_step::kind::filter: {
        const column c = eval_expr(*s.condition, t);
        const std::size_t n = c.size();
        std::vector<std::uint8_t> mask(c.bool_data(), c.bool_data() + n);
        if (c.has_nulls()) {
          for (std::size_t r = 0; r < n; ++r) mask[r] &= c.is_null(r) ? 0 : 1;
        }
        t = df::filter_rows(t, mask);
        break;
      }
      case df_step::kind::with_column: {
        column c = eval_expr(*s.condition, t);
        std::vector<std::string> names = t.column_names();
        std::vector<column> cols = t.columns();
        if (auto at = t.find(s.name)) {
          cols[*at] = std::move(c);
        } else {
          names.push_back(s.name);
          cols.push_back(std::move(c));
        }
        t = table(std::move(names), std::move(cols));
        break;
      }
      case df_step::kind::select: {
        // Columns the plan never reads were not produced; a select keeps those present.
        std::vector<std::string> names;
        std::vector<column> cols;
        for (const auto& n : s.columns) {
          if (auto at = t.find(n)) {
            names.push_back(n);
            cols.push_back(t.column_at(*at));
          }
        }
        t = table(std::move(names), std::move(cols));
        break;
      }
      case df_step::kind::rename: {
        std::vector<std::string> names = t.column_names();
        for (auto& n : names) {
          if (auto it = s.renames.find(n); it != s.renames.end()) n = it->second;
        }
        t = table(std::move(names), t.columns());
        break;
      }
      case df_step::kind::map_function:
        t = find_partition_function(s.name)(std::move(t));
        break;
      case df_step::kind::partial_agg:
        t = df::partial_aggregate(t, s.agg);
        break;
      case df_step::kind::finalize_agg:
        t = df::finalize_aggregate(t, s.agg);
        break;
      case df_step::kind::distinct:
        t = df::distinct_rows(std::span<const table>(&t, 1), s.columns);
        break;
      case df_step::kind::row_count:
        t = table{{"rows", column(std::vector<std::int64_t>{static_cast<std::int64_t>(t.num_rows())})}};
        break;
      case df_step::kind::head:
        t = t.head(static_cast<std::size_t>(s.count));
        break;
      case df_step::kind::top:
        t = df::top_rows(t, s.sort, static_cast<std::size_t>(s.count));
        break;
    }
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Running one task

namespace {

/// Partition `part`'s share of each of `n` output partitions of about equal rows, given every
/// input partition's row count: output j holds global rows [total*j/n, total*(j+1)/n).
std::vector<table> split_by_position(const table& t, const table& counts, std::size_t part, std::size_t n) {
  const column& rows = counts["rows"];
  if (part >= rows.size())
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            fmt::format("repartition: partition {} of {} has no row count", part, rows.size()));
  std::uint64_t offset = 0, total = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto r = static_cast<std::uint64_t>(rows.int64_at(i));
    if (i < part) offset += r;
    total += r;
  }
  if (static_cast<std::uint64_t>(rows.int64_at(part)) != t.num_rows())
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            fmt::format("repartition: partition {} has {} rows, its count said {}", part, t.num_rows(),
                                        rows.int64_at(part)));
  std::vector<table> pieces;
  pieces.reserve(n);
  const std::uint64_t end = offset + t.num_rows();
  for (std::size_t j = 0; j < n; ++j) {
    // total * j / n, without the product overflowing: total = q * n + r.
    auto boundary = [&](std::uint64_t k) { return total / n * k + total % n * k / n; };
    const std::uint64_t lo = boundary(j), hi = boundary(j + 1);
    const std::uint64_t b = std::clamp(lo, offset, end), e = std::clamp(hi, offset, end);
    pieces.push_back(t.slice(static_cast<std::size_t>(b - offset), static_cast<std::size_t>(e - b)));
  }
  return pieces;
}

}  // namespace

bundle run_task(const task_spec& spec, std::uint32_t task_id, const std::vector<const bundle*>& inputs,
                const df::parallel_runner& run) {
  bundle out;
  std::vector<table> in;
  in.reserve(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const bundle& b = *inputs[i];
    for (const auto& [task, skipped] : b.skipped_rows) out.skipped_rows[task] = skipped;
    const std::uint32_t piece = spec.inputs[i].piece;
    if (piece < b.pieces.size()) {
      in.push_back(b.pieces[piece]);
    } else if (!b.pieces.empty()) {
      // A range split with fewer boundaries than ranges: the missing pieces are empty.
      in.push_back(b.pieces[0].slice(0, 0));
    } else {
      in.emplace_back();
    }
  }
  // A range or position split reads its boundaries or row counts as the last input; the head works
  // on the others.
  const bool last_input_guides =
      spec.split == task_spec::split_kind::range || spec.split == task_spec::split_kind::by_position;
  const std::span<const table> head_in(in.data(), last_input_guides && !in.empty() ? in.size() - 1 : in.size());
  table t;
  using H = task_spec::head_kind;
  switch (spec.head) {
    case H::memory:
      t = spec.memory;
      break;
    case H::csv: {
      df::csv_read_result r = df::read_csv_range(*spec.csv, spec.range, spec.wanted);
      out.skipped_rows[task_id] = r.skipped_rows;
      t = std::move(r.data);
      break;
    }
    case H::concat:
      t = df::concat(head_in);
      break;
    case H::combine_agg:
      t = df::combine_aggregate(in, spec.agg);
      break;
    case H::boundaries:
      t = df::sort_boundaries(in, spec.sort, static_cast<std::size_t>(spec.count));
      break;
    case H::sort:
      t = df::sort_table(in, spec.sort, run);
      break;
    case H::join: {
      const std::size_t nl = spec.left_inputs;
      const table left = df::concat(std::span<const table>(in.data(), nl));
      const table right = df::concat(std::span<const table>(in.data() + nl, in.size() - nl));
      t = df::hash_join(left, right, spec.join);
      break;
    }
    case H::distinct:
      t = df::distinct_rows(in, spec.subset);
      break;
    case H::describe:
      t = df::describe_table(in);
      break;
  }
  t = apply_steps(std::move(t), spec.steps);
  using S = task_spec::split_kind;
  switch (spec.split) {
    case S::none:
      out.pieces.push_back(std::move(t));
      break;
    case S::hash:
      out.pieces = df::hash_split(t, spec.split_keys, static_cast<std::size_t>(spec.count));
      break;
    case S::range:
      out.pieces = df::range_split(t, spec.sort, in.back());
      break;
    case S::even: {
      const std::size_t n = std::max<std::uint64_t>(1, spec.count);
      const std::size_t rows = t.num_rows();
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t b = rows * i / n, e = rows * (i + 1) / n;
        out.pieces.push_back(t.slice(b, e - b));
      }
      if (n > 1) out.whole = std::move(t);
      break;
    }
    case S::with_sample: {
      table sample = df::sample_sort_keys(t, spec.sort, static_cast<std::size_t>(spec.count));
      out.pieces.push_back(std::move(t));
      out.pieces.push_back(std::move(sample));
      break;
    }
    case S::with_count: {
      table rows{{"rows", column(std::vector<std::int64_t>{static_cast<std::int64_t>(t.num_rows())})}};
      out.pieces.push_back(std::move(t));
      out.pieces.push_back(std::move(rows));
      break;
    }
    case S::by_position:
      out.pieces = split_by_position(t, in.back(), static_cast<std::size_t>(spec.part),
                                     static_cast<std::size_t>(std::max<std::uint64_t>(1, spec.count)));
      break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Lowering

namespace {

using node = df_node;
using H = task_spec::head_kind;
using S = task_spec::split_kind;

// Whether a sort node sorts by a single int64, float64, bool or timestamp column.
bool one_fixed_width_key(const node& n) {
  if (n.sort.by.size() != 1) return false;
  for (const auto& [name, type] : n.schema) {
    if (name == n.sort.by[0]) return type != column_type::string;
  }
  return false;
}

std::size_t estimated_bytes(const node& n) {
  switch (n.k) {
    case node::kind::memory: {
      std::size_t b = 0;
      for (const auto& p : n.memory_parts) b += p.byte_size();
      return b;
    }
    case node::kind::csv: {
      std::size_t b = 0;
      for (const auto& r : n.ranges) b += r.end - r.begin;
      return b;
    }
    case node::kind::aggregate:
    case node::kind::describe:
    case node::kind::row_count:
      return n.split_out == 1 ? (1u << 20) : estimated_bytes(*n.inputs[0]);
    default: {
      std::size_t b = 0;
      for (const auto& i : n.inputs) b += estimated_bytes(*i);
      return b;
    }
  }
}

class lowerer {
 public:
  explicit lowerer(const lowering_options& options) : options_(options) {}

  physical_plan run(const node_ptr& original) {
    std::map<const node*, node_ptr> rewritten;
    root_ = push_filters(original, rewritten);
    const node_ptr& root = root_;
    count_parents(root.get());
    required_[root.get()] = all_of(*root);
    propagate_requirements(root.get());
    plan_.outputs = lower(root.get());
    if (options_.pick_pieces) insert_picks();
    return std::move(plan_);
  }

 private:
  static std::set<std::string> all_of(const node& n) {
    std::set<std::string> s;
    for (const auto& [name, t] : n.schema) s.insert(name);
    return s;
  }

  void count_parents(const node* n) {
    if (visited_.insert(n).second) {
      for (const auto& i : n->inputs) {
        ++parents_[i.get()];
        count_parents(i.get());
      }
    }
  }

  // Parents before children: a node's requirement is complete once all its parents are done.
  void propagate_requirements(const node* root) {
    std::vector<const node*> topo;
    std::set<const node*> done;
    std::function<void(const node*)> visit = [&](const node* n) {
      if (!done.insert(n).second) return;
      for (const auto& i : n->inputs) visit(i.get());
      topo.push_back(n);
    };
    visit(root);
    std::reverse(topo.begin(), topo.end());
    for (const node* n : topo) {
      const std::set<std::string>& need = required_[n];
      for (std::size_t i = 0; i < n->inputs.size(); ++i) {
        const node* in = n->inputs[i].get();
        std::set<std::string> mine = input_requirement(*n, need, *in);
        if (mine.empty() && !in->schema.empty()) mine.insert(in->schema.front().first);  // rows still count
        required_[in].insert(mine.begin(), mine.end());
      }
    }
  }

  // Filters right after a join that read only one side's columns run on that side before the
  // join instead: on the left side for every kind of join (each output row carries its left
  // row's values), on the right side only for inner joins (a left join's unmatched rows would
  // otherwise gain nulls where the filter dropped right rows). Filters are taken from the front
  // of the row-wise steps, where nothing has changed the join's columns yet.
  node_ptr push_filters(const node_ptr& n, std::map<const node*, node_ptr>& done) {
    if (auto it = done.find(n.get()); it != done.end()) return it->second;
    node_ptr out = n;
    std::vector<node_ptr> inputs;
    bool changed = false;
    for (const auto& in : n->inputs) {
      inputs.push_back(push_filters(in, done));
      changed |= inputs.back() != in;
    }
    if (changed) {
      auto copy = std::make_shared<node>(*n);
      copy->inputs = inputs;
      out = std::move(copy);
    }
    if (out->k == node::kind::rowwise && out->inputs[0]->k == node::kind::join) out = push_into_join(out);
    done[n.get()] = out;
    return out;
  }

  static node_ptr push_into_join(const node_ptr& above) {
    const node& join = *above->inputs[0];
    const df::schema_t& left = join.inputs[0]->schema;
    const df::schema_t& right = join.inputs[1]->schema;
    std::set<std::string> left_names, right_kept;
    for (const auto& [name, type] : left) left_names.insert(name);
    const bool right_columns_out = join.join.how == join_kind::inner || join.join.how == join_kind::left;
    if (right_columns_out) {
      for (std::size_t i = 0; i < right.size(); ++i) {
        bool merged = false;
        for (std::size_t k = 0; k < join.join.right_on.size(); ++k) {
          merged |= join.join.right_on[k] == right[i].first && join.join.left_on[k] == right[i].first;
        }
        if (!merged) right_kept.insert(right[i].first);
      }
    }
    std::vector<df_step> to_left, to_right, kept;
    std::size_t i = 0;
    for (; i < above->steps.size() && above->steps[i].k == df_step::kind::filter; ++i) {
      std::set<std::string> reads;
      expr_columns(*above->steps[i].condition, reads);
      bool all_left = !reads.empty(), all_right = !reads.empty() && join.join.how == join_kind::inner;
      for (const auto& c : reads) {
        // A name on both sides is suffixed in the output, so an unsuffixed name read here is the
        // one side's own.
        all_left = all_left && left_names.contains(c) && !right_kept.contains(c);
        all_right = all_right && right_kept.contains(c) && !left_names.contains(c);
      }
      (all_left ? to_left : all_right ? to_right : kept).push_back(above->steps[i]);
    }
    if (to_left.empty() && to_right.empty()) return above;
    kept.insert(kept.end(), above->steps.begin() + static_cast<std::ptrdiff_t>(i), above->steps.end());
    auto filtered = [](const node_ptr& in, const std::vector<df_step>& steps) -> node_ptr {
      if (steps.empty()) return in;
      auto n = std::make_shared<node>();
      if (in->k == node::kind::rowwise) {
        *n = *in;
      } else {
        n->k = node::kind::rowwise;
        n->inputs = {in};
        n->partitions = in->partitions;
        n->schema = in->schema;
      }
      n->steps.insert(n->steps.end(), steps.begin(), steps.end());
      return n;
    };
    auto new_join = std::make_shared<node>(join);
    new_join->inputs = {filtered(join.inputs[0], to_left), filtered(join.inputs[1], to_right)};
    if (kept.empty()) return new_join;
    auto rest = std::make_shared<node>(*above);
    rest->inputs = {new_join};
    rest->steps = std::move(kept);
    return rest;
  }

  std::set<std::string> input_requirement(const node& n, const std::set<std::string>& need, const node& in) {
    switch (n.k) {
      case node::kind::rowwise: {
        // Backwards through the steps: what each needs of the one before. A with_column whose
        // column nothing reads is not run at all.
        std::set<std::string> r = need;
        std::vector<bool>& kept = kept_steps_[&n];
        kept.assign(n.steps.size(), true);
        for (std::size_t i = n.steps.size(); i-- > 0;) {
          const df_step& s = n.steps[i];
          switch (s.k) {
            case df_step::kind::filter:
              expr_columns(*s.condition, r);
              break;
            case df_step::kind::with_column:
              if (r.erase(s.name)) {
                expr_columns(*s.condition, r);
              } else {
                kept[i] = false;
              }
              break;
            case df_step::kind::rename: {
              std::set<std::string> before;
              for (const auto& name : r) {
                std::string original = name;
                for (const auto& [from, to] : s.renames) {
                  if (to == name) original = from;
                }
                before.insert(original);
              }
              r = std::move(before);
              break;
            }
            case df_step::kind::select:
              break;
            default:
              // A function of whole partitions may read anything produced before it.
              return all_of(in);
          }
        }
        return r;
      }
      case node::kind::aggregate: {
        std::set<std::string> r(n.agg.keys.begin(), n.agg.keys.end());
        for (const auto& a : n.agg.aggs) r.insert(a.column);
        return r;
      }
      case node::kind::sort: {
        std::set<std::string> r = need;
        r.insert(n.sort.by.begin(), n.sort.by.end());
        return r;
      }
      case node::kind::repartition:
        return need;
      case node::kind::join:
        if (&in == n.inputs[1].get() && (n.join.how == join_kind::semi || n.join.how == join_kind::anti)) {
          // A semi or anti join reads only the keys of its right side.
          return std::set<std::string>(n.join.right_on.begin(), n.join.right_on.end());
        }
        return all_of(in);
      case node::kind::row_count:
        return {};
      case node::kind::describe: {
        // Only numeric columns are described: the others are never read or gathered.
        std::set<std::string> r;
        for (const auto& [name, type] : in.schema)
          if (type == column_type::int64 || type == column_type::float64) r.insert(name);
        return r;
      }
      default:
        return all_of(in);
    }
  }

  std::uint32_t add(task_spec t) {
    plan_.tasks.push_back(std::move(t));
    return static_cast<std::uint32_t>(plan_.tasks.size() - 1);
  }

  // A task the caller may extend with steps or a split: the producer itself when this node is
  // its only consumer and it does not split, else a new task reading the piece.
  std::uint32_t extendable(const input_ref& ref, bool exclusive) {
    task_spec& producer = plan_.tasks[ref.task];
    if (exclusive && ref.piece == 0 && producer.split == S::none) return ref.task;
    task_spec t;
    t.head = H::concat;
    t.inputs = {ref};
    return add(std::move(t));
  }

  // Reduces many pieces to one task with `final_head` reading at most max_inputs inputs; between,
  // `middle_head` tasks (concat, or the same reduction when it is associative).
  std::uint32_t reduce(std::vector<input_ref> refs, const task_spec& final_template, H middle_head,
                       const task_spec& middle_template) {
    const std::size_t fan_in = std::max<std::size_t>(2, options_.max_inputs);
    while (refs.size() > fan_in) {
      std::vector<input_ref> next;
      for (std::size_t i = 0; i < refs.size(); i += fan_in) {
        task_spec t = middle_template;
        t.head = middle_head;
        t.inputs.assign(refs.begin() + static_cast<std::ptrdiff_t>(i),
                        refs.begin() + static_cast<std::ptrdiff_t>(std::min(refs.size(), i + fan_in)));
        next.push_back({add(std::move(t)), 0});
      }
      refs = std::move(next);
    }
    task_spec t = final_template;
    t.inputs = std::move(refs);
    return add(std::move(t));
  }

  // Output j of a shuffle: piece j of every split task, reduced as reduce() does.
  std::vector<input_ref> gather_pieces(const std::vector<std::uint32_t>& split, std::size_t pieces,
                                       const task_spec& final_template, H middle_head,
                                       const task_spec& middle_template) {
    std::vector<input_ref> out;
    for (std::size_t j = 0; j < pieces; ++j) {
      std::vector<input_ref> refs;
      for (auto t : split) refs.push_back({t, static_cast<std::uint32_t>(j)});
      out.push_back({reduce(std::move(refs), final_template, middle_head, middle_template), 0});
    }
    return out;
  }

  void split_by_hash(std::uint32_t task, const std::vector<std::string>& keys, std::size_t pieces) {
    task_spec& t = plan_.tasks[task];
    t.split = S::hash;
    t.split_keys = keys;
    t.count = pieces;
  }

  std::vector<input_ref> lower(const node* n) {
    if (auto it = lowered_.find(n); it != lowered_.end()) return it->second;
    std::vector<input_ref> out = lower_new(n);
    lowered_[n] = out;
    return out;
  }

  bool exclusive_input(const node* n) const {
    auto it = parents_.find(n->inputs[0].get());
    return it != parents_.end() && it->second == 1;
  }

  std::vector<input_ref> lower_new(const node* n) {
    const std::set<std::string>& need = required_[n];
    std::vector<input_ref> out;
    switch (n->k) {
      case node::kind::memory: {
        for (const auto& p : n->memory_parts) {
          std::vector<std::string> names;
          std::vector<column> cols;
          for (std::size_t c = 0; c < p.num_columns(); ++c) {
            if (need.count(p.column_names()[c])) {
              names.push_back(p.column_names()[c]);
              cols.push_back(p.column_at(c));
            }
          }
          task_spec t;
          t.head = H::memory;
          t.memory = table(std::move(names), std::move(cols));
          out.push_back({add(std::move(t)), 0});
        }
        return out;
      }
      case node::kind::csv: {
        std::vector<bool> wanted(n->csv->names.size());
        for (std::size_t c = 0; c < wanted.size(); ++c) wanted[c] = need.count(n->csv->names[c]) != 0;
        for (const auto& r : n->ranges) {
          task_spec t;
          t.head = H::csv;
          t.csv = n->csv;
          t.range = r;
          t.wanted = wanted;
          out.push_back({add(std::move(t)), 0});
        }
        return out;
      }
      case node::kind::rowwise: {
        std::vector<df_step> steps;
        const auto kept = kept_steps_.find(n);
        for (std::size_t i = 0; i < n->steps.size(); ++i) {
          if (kept == kept_steps_.end() || kept->second[i]) steps.push_back(n->steps[i]);
        }
        for (const input_ref& ref : lower(n->inputs[0].get())) {
          const std::uint32_t t = extendable(ref, exclusive_input(n));
          auto& target = plan_.tasks[t].steps;
          target.insert(target.end(), steps.begin(), steps.end());
          out.push_back({t, 0});
        }
        return out;
      }
      case node::kind::aggregate: {
        df_step partial;
        partial.k = df_step::kind::partial_agg;
        partial.agg = n->agg;
        std::vector<std::uint32_t> partials;
        for (const input_ref& ref : lower(n->inputs[0].get())) {
          const std::uint32_t t = extendable(ref, exclusive_input(n));
          plan_.tasks[t].steps.push_back(partial);
          partials.push_back(t);
        }
        df_step finalize;
        finalize.k = df_step::kind::finalize_agg;
        finalize.agg = n->agg;
        task_spec combine;
        combine.head = H::combine_agg;
        combine.agg = n->agg;
        task_spec last = combine;
        last.steps.push_back(finalize);
        const std::size_t k = std::max<std::size_t>(1, n->split_out);
        if (k == 1) {
          std::vector<input_ref> refs;
          for (auto t : partials) refs.push_back({t, 0});
          out.push_back({reduce(std::move(refs), last, H::combine_agg, combine), 0});
          return out;
        }
        for (auto t : partials) split_by_hash(t, n->agg.keys, k);
        return gather_pieces(partials, k, last, H::combine_agg, combine);
      }
      case node::kind::sort: {
        const std::vector<input_ref> in = lower(n->inputs[0].get());
        const std::size_t parts = in.size();
        if (n->limit > 0) {
          // The first rows of a sort: each partition keeps its best `limit` rows, and one task
          // sorts the candidates (in partition order, so ties keep their order) and cuts them.
          df_step top;
          top.k = df_step::kind::top;
          top.sort = n->sort;
          top.count = n->limit;
          std::vector<input_ref> candidates;
          for (const input_ref& ref : in) {
            const std::uint32_t t = extendable(ref, exclusive_input(n));
            plan_.tasks[t].steps.push_back(top);
            candidates.push_back({t, 0});
          }
          task_spec merge;
          merge.head = H::sort;
          merge.sort = n->sort;
          df_step head;
          head.k = df_step::kind::head;
          head.count = n->limit;
          merge.steps.push_back(head);
          task_spec middle;
          middle.steps.push_back(top);
          out.push_back({reduce(std::move(candidates), merge, H::concat, middle), 0});
          return out;
        }
        if (options_.one_process && in.size() <= options_.max_inputs && one_fixed_width_key(*n)) {
          task_spec sorter;
          sorter.head = H::sort;
          sorter.sort = n->sort;
          sorter.inputs = in;
          sorter.split = S::even;
          sorter.count = parts;
          const std::uint32_t t = add(std::move(sorter));
          for (std::size_t j = 0; j < parts; ++j) out.push_back({t, static_cast<std::uint32_t>(j)});
          return out;
        }
        std::vector<std::uint32_t> sampled;
        for (const input_ref& ref : in) {
          const std::uint32_t t = extendable(ref, exclusive_input(n));
          plan_.tasks[t].split = S::with_sample;
          plan_.tasks[t].sort = n->sort;
          plan_.tasks[t].count = 256;
          sampled.push_back(t);
        }
        task_spec bounds;
        bounds.head = H::boundaries;
        bounds.sort = n->sort;
        bounds.count = parts;
        std::vector<input_ref> samples;
        for (auto t : sampled) samples.push_back({t, 1});
        const std::uint32_t b = reduce(std::move(samples), bounds, H::concat, task_spec{});
        std::vector<std::uint32_t> splits;
        for (auto t : sampled) {
          task_spec s;
          s.head = H::concat;
          s.inputs = {{t, 0}, {b, 0}};
          s.split = S::range;
          s.sort = n->sort;
          splits.push_back(add(std::move(s)));
        }
        task_spec sorter;
        sorter.head = H::sort;
        sorter.sort = n->sort;
        return gather_pieces(splits, parts, sorter, H::concat, task_spec{});
      }
      case node::kind::join: {
        const std::vector<input_ref> left = lower(n->inputs[0].get());
        const std::vector<input_ref> right = lower(n->inputs[1].get());
        const node& r = *n->inputs[1];
        task_spec joiner;
        joiner.head = H::join;
        joiner.join = n->join;
        const bool broadcast =
            n->strategy == join_strategy::broadcast ||
            (n->strategy == join_strategy::automatic && (right.size() == 1 || estimated_bytes(r) <= broadcast_bytes));
        if (broadcast) {
          // The right side, gathered once, meets every left partition where it is.
          input_ref whole =
              right.size() == 1 ? right[0] : input_ref{reduce(right, task_spec{}, H::concat, task_spec{}), 0};
          for (const input_ref& l : left) {
            task_spec t = joiner;
            t.inputs = {l, whole};
            t.left_inputs = 1;
            out.push_back({add(std::move(t)), 0});
          }
          return out;
        }
        const std::size_t k = std::max(left.size(), right.size());
        auto shuffle = [&](const std::vector<input_ref>& side, const std::vector<std::string>& keys, bool exclusive) {
          std::vector<std::uint32_t> split;
          for (const input_ref& ref : side) {
            const std::uint32_t t = extendable(ref, exclusive);
            split_by_hash(t, keys, k);
            split.push_back(t);
          }
          return split;
        };
        const auto ls = shuffle(left, n->join.left_on, parents_[n->inputs[0].get()] == 1);
        const auto rs =
            shuffle(right, n->join.right_on, parents_[n->inputs[1].get()] == 1 && n->inputs[0] != n->inputs[1]);
        for (std::size_t j = 0; j < k; ++j) {
          std::vector<input_ref> lr, rr;
          for (auto t : ls) lr.push_back({t, static_cast<std::uint32_t>(j)});
          for (auto t : rs) rr.push_back({t, static_cast<std::uint32_t>(j)});
          const std::size_t half = std::max<std::size_t>(1, options_.max_inputs / 2);
          if (lr.size() > half) lr = {{reduce(lr, task_spec{}, H::concat, task_spec{}), 0}};
          if (rr.size() > half) rr = {{reduce(rr, task_spec{}, H::concat, task_spec{}), 0}};
          task_spec t = joiner;
          t.left_inputs = static_cast<std::uint32_t>(lr.size());
          t.inputs = lr;
          t.inputs.insert(t.inputs.end(), rr.begin(), rr.end());
          out.push_back({add(std::move(t)), 0});
        }
        return out;
      }
      case node::kind::distinct: {
        df_step local;
        local.k = df_step::kind::distinct;
        local.columns = n->subset;
        std::vector<std::string> keys = n->subset;
        if (keys.empty())
          for (const auto& [name, type] : n->schema) keys.push_back(name);
        const std::size_t k = std::max<std::size_t>(1, n->split_out);
        std::vector<std::uint32_t> deduplicated;
        for (const input_ref& ref : lower(n->inputs[0].get())) {
          const std::uint32_t t = extendable(ref, exclusive_input(n));
          plan_.tasks[t].steps.push_back(local);
          if (k > 1) split_by_hash(t, keys, k);
          deduplicated.push_back(t);
        }
        task_spec d;
        d.head = H::distinct;
        d.subset = n->subset;
        // Pieces are read in partition order, so the first row of a combination stays first.
        return gather_pieces(deduplicated, k, d, H::distinct, d);
      }
      case node::kind::describe: {
        task_spec d;
        d.head = H::describe;
        out.push_back({reduce(lower(n->inputs[0].get()), d, H::concat, task_spec{}), 0});
        return out;
      }
      case node::kind::repartition: {
        const std::vector<input_ref> in = lower(n->inputs[0].get());
        const std::size_t parts = n->partitions;
        if (in.size() == 1) {
          const std::uint32_t t = extendable(in[0], exclusive_input(n));
          plan_.tasks[t].split = S::even;
          plan_.tasks[t].count = parts;
          for (std::size_t j = 0; j < parts; ++j) out.push_back({t, static_cast<std::uint32_t>(j)});
          return out;
        }
        // Balanced without gathering the data: every partition reports its row count, and each
        // one, given all the counts, cuts itself where the output partitions' boundaries fall.
        std::vector<std::uint32_t> counted;
        std::vector<input_ref> counts;
        for (const input_ref& ref : in) {
          const std::uint32_t t = extendable(ref, exclusive_input(n));
          plan_.tasks[t].split = S::with_count;
          counted.push_back(t);
          counts.push_back({t, 1});
        }
        const std::uint32_t all_counts = reduce(std::move(counts), task_spec{}, H::concat, task_spec{});
        std::vector<std::uint32_t> cut;
        for (std::size_t i = 0; i < counted.size(); ++i) {
          task_spec s;
          s.head = H::concat;
          s.inputs = {{counted[i], 0}, {all_counts, 0}};
          s.split = S::by_position;
          s.part = i;
          s.count = parts;
          cut.push_back(add(std::move(s)));
        }
        // Output j overlaps a run of neighbouring partitions; the others give it empty pieces.
        return gather_pieces(cut, parts, task_spec{}, H::concat, task_spec{});
      }
      case node::kind::row_count: {
        df_step count;
        count.k = df_step::kind::row_count;
        std::vector<input_ref> refs;
        for (const input_ref& ref : lower(n->inputs[0].get())) {
          const std::uint32_t t = extendable(ref, exclusive_input(n));
          plan_.tasks[t].steps.push_back(count);
          refs.push_back({t, 0});
        }
        out.push_back({reduce(std::move(refs), task_spec{}, H::concat, task_spec{}), 0});
        return out;
      }
    }
    return out;
  }

  // Remote tasks fetch whole results: give each consumer of a split result a task of its own
  // that picks its piece where the result is.
  void insert_picks() {
    physical_plan old = std::move(plan_);
    plan_ = physical_plan{};
    std::vector<std::uint32_t> index(old.tasks.size());
    std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint32_t> picks;
    auto map_ref = [&](input_ref ref) -> input_ref {
      const task_spec& producer = old.tasks[ref.task];
      const std::uint32_t moved = index[ref.task];
      if (producer.pieces() == 1) return {moved, ref.piece};
      auto key = std::make_pair(moved, ref.piece);
      auto it = picks.find(key);
      if (it == picks.end()) {
        task_spec pick;
        pick.head = H::concat;
        pick.inputs = {{moved, ref.piece}};
        it = picks.emplace(key, add(std::move(pick))).first;
      }
      return {it->second, 0};
    };
    for (std::size_t i = 0; i < old.tasks.size(); ++i) {
      task_spec t = std::move(old.tasks[i]);
      for (auto& in : t.inputs) in = map_ref(in);
      index[i] = add(std::move(t));
    }
    for (auto& o : old.outputs) plan_.outputs.push_back(map_ref(o));
  }

  static constexpr std::size_t broadcast_bytes = 32u << 20;

  lowering_options options_;
  node_ptr root_;  // the plan after rewrites: the nodes the maps below point into
  physical_plan plan_;
  std::set<const node*> visited_;
  std::unordered_map<const node*, std::size_t> parents_;
  std::unordered_map<const node*, std::set<std::string>> required_;
  std::unordered_map<const node*, std::vector<input_ref>> lowered_;
  std::unordered_map<const node*, std::vector<bool>> kept_steps_;  // rowwise: steps worth running
};

std::string_view head_name(H h) {
  switch (h) {
    case H::memory:
      return "memory";
    case H::csv:
      return "read_csv";
    case H::concat:
      return "concat";
    case H::combine_agg:
      return "combine";
    case H::boundaries:
      return "sort_boundaries";
    case H::sort:
      return "sort";
    case H::join:
      return "join";
    case H::distinct:
      return "distinct";
    case H::describe:
      return "describe";
  }
  return "?";
}

std::string_view split_name(S s) {
  switch (s) {
    case S::none:
      return "";
    case S::hash:
      return "hash_split";
    case S::range:
      return "range_split";
    case S::even:
    case S::by_position:
      return "split";
    case S::with_sample:
      return "sample";
    case S::with_count:
      return "count";
  }
  return "";
}

std::string step_text(const df_step& s) {
  switch (s.k) {
    case df_step::kind::filter:
      return "filter " + expr_text(*s.condition);
    case df_step::kind::with_column:
      return fmt::format("with_column {} = {}", s.name, expr_text(*s.condition));
    case df_step::kind::select:
      return fmt::format("select {}", fmt::join(s.columns, ","));
    case df_step::kind::rename:
      return "rename";
    case df_step::kind::map_function:
      return "map " + s.name;
    case df_step::kind::partial_agg:
      return "partial_agg";
    case df_step::kind::finalize_agg:
      return "finalize_agg";
    case df_step::kind::distinct:
      return "distinct";
    case df_step::kind::row_count:
      return "row_count";
    case df_step::kind::head:
      return fmt::format("head {}", s.count);
    case df_step::kind::top: {
      std::vector<std::string> keys;
      for (std::size_t i = 0; i < s.sort.by.size(); ++i) {
        const bool ascending = i < s.sort.ascending.size() ? s.sort.ascending[i] : true;
        keys.push_back(s.sort.by[i] + (ascending ? " asc" : " desc"));
      }
      return fmt::format("top {} by {}", s.count, fmt::join(keys, ","));
    }
  }
  return "?";
}

}  // namespace

physical_plan lower(const node_ptr& node, const lowering_options& options) { return lowerer(options).run(node); }

std::string task_kind(const task_spec& t) {
  std::string kind = fmt::format("dx.dataframe.{}", head_name(t.head));
  // Steps and splits that change what a byte of input costs; filters and projections do not much.
  for (const auto& s : t.steps) {
    switch (s.k) {
      case df_step::kind::map_function:
        kind += fmt::format("+map:{}", s.name);
        break;
      case df_step::kind::partial_agg:
      case df_step::kind::finalize_agg:
      case df_step::kind::distinct:
        kind += fmt::format("+{}", step_text(s));
        break;
      case df_step::kind::top:
        kind += "+top";
        break;
      default:
        break;
    }
  }
  if (t.split != S::none) kind += fmt::format("+{}", split_name(t.split));
  return kind;
}

std::string describe_plan(const physical_plan& plan) {
  std::string out;
  for (std::size_t i = 0; i < plan.tasks.size(); ++i) {
    const task_spec& t = plan.tasks[i];
    out += fmt::format("t{}: {}", i, head_name(t.head));
    if (t.head == H::csv) {
      std::vector<std::string> cols;
      for (std::size_t c = 0; c < t.wanted.size(); ++c) {
        if (t.wanted[c]) cols.push_back(t.csv->names[c]);
      }
      out += fmt::format(" {}[{}-{}) columns {}", t.csv->files[t.range.file], t.range.begin, t.range.end,
                         fmt::join(cols, ","));
    }
    if (t.head == H::memory)
      out += fmt::format(" {} rows, columns {}", t.memory.num_rows(), fmt::join(t.memory.column_names(), ","));
    if (!t.inputs.empty()) {
      out += " <-";
      for (const auto& in : t.inputs) out += fmt::format(" t{}.{}", in.task, in.piece);
    }
    for (const auto& s : t.steps) out += " | " + step_text(s);
    if (t.split != S::none) {
      out += fmt::format(" | {}", split_name(t.split));
      if (t.split == S::hash || t.split == S::even || t.split == S::by_position) out += fmt::format(" {}", t.count);
      if (t.split == S::by_position) out += fmt::format(" by position of part {}", t.part);
    }
    out += '\n';
  }
  out += "result:";
  for (const auto& o : plan.outputs) out += fmt::format(" t{}.{}", o.task, o.piece);
  out += '\n';
  return out;
}

}  // namespace dx::detail
