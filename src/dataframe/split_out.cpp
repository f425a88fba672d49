// The lowering's one sampling decision: how many partitions a groupby's result gets when the user
// gave no split_out. It reads a sample of the source through the row-wise steps above it and
// counts the groups (a tree combine for few groups, a hash shuffle for many).
#include "dataframe/plan.hpp"

#include <algorithm>

namespace dx::detail {

/// How many partitions a groupby's result should have when the user did not say: a sample of an
/// in-memory source, through the row-wise steps above it, estimates how many groups there are.
std::size_t automatic_split_out(const df_node& input, const df::agg_spec& spec) {
  std::vector<const df_node*> rowwise;
  const df_node* base = &input;
  while (base->k == df_node::kind::rowwise) {
    for (const df_step& s : base->steps) {
      if (s.k == df_step::kind::map_function) return 1;  // never call user code while planning
    }
    rowwise.push_back(base);
    base = base->inputs[0].get();
  }
  if (base->partitions < 2) return 1;
  constexpr std::size_t sample_rows = 20'000;
  table sample;
  if (base->k == df_node::kind::memory) {
    std::size_t total = 0;
    for (const auto& p : base->memory_parts) total += p.num_rows();
    // Few rows, few groups at most: a tree combine is cheap whatever the keys.
    if (total < 10 * sample_rows) return 1;
    sample = base->memory_parts.front().head(sample_rows);
  } else if (base->k == df_node::kind::csv) {
    // The first MiB of the first partition: about as many rows as an in-memory sample. The row
    // cut off at its end is dropped as malformed, and so is any row the real read would reject.
    constexpr std::uint64_t sample_bytes = 1u << 20;
    std::uint64_t total = 0;
    for (const auto& r : base->ranges) total += r.end - r.begin;
    df::csv_source probe = *base->csv;
    probe.options.skip_bad_rows = true;
    df::csv_range first = base->ranges.front();
    first.end = std::min(first.end, first.begin + sample_bytes);
    try {
      sample = df::read_csv_range(probe, first, {}).data;
    } catch (const std::exception&) {
      return 1;  // an unreadable file is reported by the read itself
    }
    // The same threshold as in memory, in rows estimated from the sample's bytes per row.
    const double rows_per_byte = static_cast<double>(sample.num_rows()) /
                                 static_cast<double>(std::max<std::uint64_t>(1, first.end - first.begin));
    if (static_cast<double>(total) * rows_per_byte < 10.0 * sample_rows) return 1;
  } else {
    return 1;
  }
  for (auto it = rowwise.rbegin(); it != rowwise.rend(); ++it) sample = apply_steps(std::move(sample), (*it)->steps);
  if (sample.num_rows() < 1000) return 1;
  df::agg_spec count_only;
  count_only.keys = spec.keys;
  count_only.aggs.emplace_back(spec.keys.front(), agg::count, "n");
  const std::size_t groups = df::partial_aggregate(sample, count_only).num_rows();
  return 2 * groups > sample.num_rows() ? base->partitions : 1;
}

}  // namespace dx::detail
