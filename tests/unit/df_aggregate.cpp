// Aggregation kernels (partial, combine, finalize), distinct_rows and describe_table, checked
// against answers computed here with plain std::map loops.
#include <dx/archive.hpp>

#include <catch2/catch.hpp>

#include "dataframe/kernels.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace df = dx::detail::df;
using dx::agg;
using dx::column;
using dx::column_type;
using dx::table;

namespace {

// A cell as the reference sees it; variant's ordering matches the column orderings for the
// values used here (no NaN keys).
using cell = std::variant<std::int64_t, double, bool, std::string>;
using key_t = std::vector<cell>;

std::optional<cell> cell_at(const column& c, std::size_t row) {
  if (c.is_null(row)) return std::nullopt;
  switch (c.type()) {
    case column_type::int64:
      return cell{c.int64_at(row)};
    case column_type::float64:
      return cell{c.float64_at(row)};
    case column_type::boolean:
      return cell{c.bool_at(row)};
    case column_type::string:
      return cell{std::string(c.string_at(row))};
    case column_type::timestamp:
      return cell{c.timestamp_at(row).nanoseconds};
  }
  return std::nullopt;
}

double as_double(const cell& c) {
  if (auto* i = std::get_if<std::int64_t>(&c)) return static_cast<double>(*i);
  if (auto* d = std::get_if<double>(&c)) return *d;
  if (auto* b = std::get_if<bool>(&c)) return *b ? 1.0 : 0.0;
  FAIL("not numeric");
  return 0;
}

/// Everything the reference needs of one group: the non-null values of each value column, in order.
struct ref_group {
  std::map<std::string, std::vector<cell>> values;
};

/// The expected value of one aggregation over `values` (nullopt: null).
std::optional<cell> expected(agg fn, column_type type, const std::vector<cell>& values) {
  switch (fn) {
    case agg::count:
      return cell{static_cast<std::int64_t>(values.size())};
    case agg::nunique:
      return cell{static_cast<std::int64_t>(std::set<cell>(values.begin(), values.end()).size())};
    case agg::sum: {
      if (type == column_type::float64) {
        double s = 0;
        for (const cell& v : values) s += std::get<double>(v);
        return cell{s};
      }
      std::int64_t s = 0;
      for (const cell& v : values) s += static_cast<std::int64_t>(as_double(v));
      return cell{s};
    }
    case agg::mean: {
      if (values.empty()) return std::nullopt;
      double s = 0;
      for (const cell& v : values) s += as_double(v);
      return cell{s / static_cast<double>(values.size())};
    }
    case agg::std: {
      if (values.size() < 2) return std::nullopt;
      double s = 0;
      for (const cell& v : values) s += as_double(v);
      const double mean = s / static_cast<double>(values.size());
      double m2 = 0;
      for (const cell& v : values) m2 += (as_double(v) - mean) * (as_double(v) - mean);
      return cell{std::sqrt(m2 / static_cast<double>(values.size() - 1))};
    }
    case agg::min:
      if (values.empty()) return std::nullopt;
      return *std::min_element(values.begin(), values.end());
    case agg::max:
      if (values.empty()) return std::nullopt;
      return *std::max_element(values.begin(), values.end());
    case agg::first:
      if (values.empty()) return std::nullopt;
      return values.front();
  }
  return std::nullopt;
}

bool supports(agg fn, column_type type) {
  const bool numeric = type == column_type::int64 || type == column_type::float64 || type == column_type::boolean;
  if (fn == agg::sum || fn == agg::mean || fn == agg::std) return numeric;
  return true;
}

std::string agg_label(agg fn) { return std::string(dx::agg_name(fn)); }

const std::vector<agg> all_aggs{agg::sum, agg::mean, agg::count, agg::min,
                                agg::max, agg::std,  agg::first, agg::nunique};

/// Every supported aggregation of every non-key column.
df::agg_spec full_spec(const table& t, std::vector<std::string> keys) {
  df::agg_spec spec;
  spec.keys = keys;
  for (std::size_t c = 0; c < t.num_columns(); ++c) {
    const std::string& name = t.column_names()[c];
    if (std::find(keys.begin(), keys.end(), name) != keys.end()) continue;
    for (agg fn : all_aggs)
      if (supports(fn, t.column_at(c).type())) spec.aggs.push_back({name, fn, name + "_" + agg_label(fn)});
  }
  return spec;
}

/// The result computed with maps, in key order, as cells.
std::vector<std::vector<std::optional<cell>>> reference(const table& t, const df::agg_spec& spec) {
  std::map<key_t, ref_group> groups;
  if (spec.keys.empty()) groups[{}];
  for (std::size_t r = 0; r < t.num_rows(); ++r) {
    key_t key;
    bool null_key = false;
    for (const std::string& k : spec.keys) {
      auto v = cell_at(t[k], r);
      if (!v)
        null_key = true;
      else
        key.push_back(*v);
    }
    if (null_key) continue;
    ref_group& g = groups[key];
    std::set<std::string> columns;
    for (const auto& a : spec.aggs) columns.insert(a.column);
    for (const std::string& c : columns) {
      auto& values = g.values[c];
      if (auto v = cell_at(t[c], r)) values.push_back(*v);
    }
  }
  std::vector<std::vector<std::optional<cell>>> rows;
  for (auto& [key, g] : groups) {
    std::vector<std::optional<cell>> row(key.begin(), key.end());
    for (const auto& a : spec.aggs) row.push_back(expected(a.fn, t[a.column].type(), g.values[a.column]));
    rows.push_back(std::move(row));
  }
  return rows;
}

void check_against_reference(const table& result, const table& input, const df::agg_spec& spec) {
  const auto want = reference(input, spec);
  REQUIRE(result.num_rows() == want.size());
  REQUIRE(result.num_columns() == spec.keys.size() + spec.aggs.size());
  for (std::size_t k = 0; k < spec.keys.size(); ++k) CHECK(result.column_names()[k] == spec.keys[k]);
  for (std::size_t a = 0; a < spec.aggs.size(); ++a)
    CHECK(result.column_names()[spec.keys.size() + a] == spec.aggs[a].as);
  for (std::size_t r = 0; r < want.size(); ++r) {
    for (std::size_t c = 0; c < result.num_columns(); ++c) {
      const auto got = cell_at(result.column_at(c), r);
      const auto& exp = want[r][c];
      INFO("row " << r << " column " << result.column_names()[c]);
      REQUIRE(got.has_value() == exp.has_value());
      if (!got) continue;
      if (std::holds_alternative<double>(*exp) && std::holds_alternative<double>(*got)) {
        const double g = std::get<double>(*got);
        const double e = std::get<double>(*exp);
        CHECK(g == Approx(e).epsilon(1e-12).margin(1e-12));
      } else {
        CHECK(*got == *exp);
      }
    }
  }
}

table run(std::span<const table> parts, const df::agg_spec& spec) {
  std::vector<table> partials;
  for (const table& p : parts) partials.push_back(df::partial_aggregate(p, spec));
  return df::finalize_aggregate(df::combine_aggregate(partials, spec), spec);
}

/// Splits `t` into `count` consecutive pieces at random cuts (some pieces empty).
std::vector<table> split(const table& t, std::size_t count, std::mt19937_64& rng) {
  std::vector<std::size_t> cuts{0, t.num_rows()};
  for (std::size_t i = 1; i < count; ++i)
    cuts.push_back(std::uniform_int_distribution<std::size_t>(0, t.num_rows())(rng));
  std::sort(cuts.begin(), cuts.end());
  std::vector<table> parts;
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) parts.push_back(t.slice(cuts[i], cuts[i + 1] - cuts[i]));
  return parts;
}

template <class T, class Gen>
std::vector<std::optional<T>> generate(std::size_t n, double null_share, std::mt19937_64& rng, Gen&& gen) {
  std::bernoulli_distribution null(null_share);
  std::vector<std::optional<T>> out;
  for (std::size_t i = 0; i < n; ++i) {
    if (null(rng))
      out.emplace_back();
    else
      out.emplace_back(gen());
  }
  return out;
}

const std::vector<std::string> words{"Zürich", "東京", "Oslo", "Lima", "", "oslo", "São Paulo", "a", "ab"};

/// Key columns k_int, k_str, k_f64, k_bool, k_ts, k_wide (int64 over a huge range) and value
/// columns i, f, s, b, t; every column has some nulls when `null_share` > 0.
table random_table(std::size_t n, double null_share, std::mt19937_64& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto k_int = generate<std::int64_t>(n, null_share, rng, [&] { return std::int64_t{pick(-3, 9)}; });
  auto k_str = generate<std::string>(n, null_share, rng, [&] { return words[pick(0, 4)]; });
  auto k_f64 = generate<double>(n, null_share, rng, [&] { return pick(-2, 3) * 0.5; });
  auto k_bool = generate<bool>(n, null_share, rng, [&] { return pick(0, 1) == 1; });
  auto k_ts = generate<dx::timestamp>(
      n, null_share, rng, [&] { return dx::timestamp{1'700'000'000'000'000'000 + pick(0, 5) * 1'000'000'000ll}; });
  auto k_wide = generate<std::int64_t>(n, null_share, rng,
                                       [&] { return std::int64_t{pick(0, 6)} * 1'000'000'000'000'000ll - 3; });
  auto i = generate<std::int64_t>(n, null_share, rng, [&] { return std::int64_t{pick(-1000, 1000)}; });
  auto f = generate<double>(n, null_share, rng, [&] { return pick(-400, 400) * 0.25; });
  auto s = generate<std::string>(n, null_share, rng, [&] { return words[pick(0, 8)]; });
  auto b = generate<bool>(n, null_share, rng, [&] { return pick(0, 2) == 0; });
  auto t = generate<dx::timestamp>(n, null_share, rng, [&] { return dx::timestamp{pick(-50, 50) * 1000ll}; });
  return table{{"k_int", column(k_int)},   {"k_str", column(k_str)}, {"k_f64", column(k_f64)},
               {"k_bool", column(k_bool)}, {"k_ts", column(k_ts)},   {"k_wide", column(k_wide)},
               {"i", column(i)},           {"f", column(f)},         {"s", column(s)},
               {"b", column(b)},           {"t", column(t)}};
}

/// The input without the key columns that are not `keys`, so that every remaining non-key
/// column is a value column.
table values_and(const table& t, const std::vector<std::string>& keys) {
  std::vector<std::string> names;
  std::vector<column> columns;
  for (std::size_t c = 0; c < t.num_columns(); ++c) {
    const std::string& name = t.column_names()[c];
    const bool is_key_column = name.rfind("k_", 0) == 0;
    if (is_key_column && std::find(keys.begin(), keys.end(), name) == keys.end()) continue;
    names.push_back(name);
    columns.push_back(t.column_at(c));
  }
  return table(std::move(names), std::move(columns));
}

const std::vector<std::vector<std::string>> key_sets{
    {"k_int"}, {"k_str"}, {"k_f64"}, {"k_bool"}, {"k_ts"}, {"k_wide"}, {"k_str", "k_int"}, {"k_bool", "k_ts", "k_f64"},
    {}};

std::string describe_keys(const std::vector<std::string>& keys) {
  std::string out = "keys:";
  for (const auto& k : keys) out += " " + k;
  return out;
}

/// Equal tables except float64 columns whose names contain "std", compared within 1e-12.
void check_same(const table& a, const table& b) {
  REQUIRE(a.column_names() == b.column_names());
  REQUIRE(a.num_rows() == b.num_rows());
  for (std::size_t c = 0; c < a.num_columns(); ++c) {
    const std::string& name = a.column_names()[c];
    INFO("column " << name);
    if (name.find("std") == std::string::npos) {
      CHECK(a.column_at(c) == b.column_at(c));
      continue;
    }
    for (std::size_t r = 0; r < a.num_rows(); ++r) {
      REQUIRE(a.column_at(c).is_null(r) == b.column_at(c).is_null(r));
      if (!a.column_at(c).is_null(r))
        CHECK(a.column_at(c).float64_at(r) == Approx(b.column_at(c).float64_at(r)).epsilon(1e-12).margin(1e-12));
    }
  }
}

}  // namespace

TEST_CASE("every aggregation for every key type matches a map-based reference", "[aggregate]") {
  std::mt19937_64 rng(7);
  for (double null_share : {0.0, 0.15}) {
    const table data = random_table(600, null_share, rng);
    for (const auto& keys : key_sets) {
      INFO(describe_keys(keys) << " null share " << null_share);
      const table input = values_and(data, keys);
      const df::agg_spec spec = full_spec(input, keys);
      for (std::size_t parts : {1u, 2u, 7u}) {
        INFO(parts << " partitions");
        const auto pieces = split(input, parts, rng);
        check_against_reference(run(pieces, spec), input, spec);
      }
    }
  }
}

TEST_CASE("aggregate_schema gives output types and refuses what cannot be computed", "[aggregate]") {
  const df::schema_t input{{"city", column_type::string},
                           {"n", column_type::int64},
                           {"x", column_type::float64},
                           {"ok", column_type::boolean},
                           {"at", column_type::timestamp}};
  df::agg_spec spec;
  spec.keys = {"city"};
  spec.aggs = {{"n", agg::sum, "a"},  {"ok", agg::sum, "b"},     {"x", agg::sum, "c"},        {"n", agg::mean, "d"},
               {"x", agg::std, "e"},  {"city", agg::count, "f"}, {"city", agg::nunique, "g"}, {"city", agg::min, "h"},
               {"at", agg::max, "i"}, {"at", agg::first, "j"},   {"ok", agg::first, "k"}};
  const df::schema_t want{{"city", column_type::string}, {"a", column_type::int64},     {"b", column_type::int64},
                          {"c", column_type::float64},   {"d", column_type::float64},   {"e", column_type::float64},
                          {"f", column_type::int64},     {"g", column_type::int64},     {"h", column_type::string},
                          {"i", column_type::timestamp}, {"j", column_type::timestamp}, {"k", column_type::boolean}};
  CHECK(df::aggregate_schema(input, spec) == want);

  auto message = [&](agg fn, std::string column) {
    df::agg_spec bad;
    bad.aggs = {{column, fn, "out"}};
    try {
      df::aggregate_schema(input, bad);
    } catch (const dx::dataframe_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message(agg::mean, "city") == "agg: cannot take the mean of string column 'city'");
  CHECK(message(agg::sum, "city") == "agg: cannot take the sum of string column 'city'");
  CHECK(message(agg::sum, "at") == "agg: cannot take the sum of timestamp column 'at'");
  CHECK(message(agg::std, "at") == "agg: cannot take the std of timestamp column 'at'");
  CHECK_THAT(message(agg::sum, "cty"), Catch::Contains("cty") && Catch::Contains("city"));

  const table t{{"city", std::vector<std::string>{"Oslo"}}, {"n", std::vector<std::int64_t>{1}}};
  df::agg_spec mean_of_city;
  mean_of_city.aggs = {{"city", agg::mean, "m"}};
  CHECK_THROWS_WITH(df::partial_aggregate(t, mean_of_city), "agg: cannot take the mean of string column 'city'");
  df::agg_spec unknown_key;
  unknown_key.keys = {"town"};
  unknown_key.aggs = {{"n", agg::sum, "s"}};
  CHECK_THROWS_AS(df::partial_aggregate(t, unknown_key), dx::dataframe_error);
}

TEST_CASE("partitionings and combine tree shapes give the same result", "[aggregate]") {
  std::mt19937_64 rng(11);
  const table data = random_table(900, 0.1, rng);
  for (const auto& keys : key_sets) {
    INFO(describe_keys(keys));
    const table input = values_and(data, keys);
    const df::agg_spec spec = full_spec(input, keys);
    const table whole = run(std::vector<table>{input}, spec);

    for (std::size_t parts : {2u, 7u, 16u}) {
      INFO(parts << " partitions");
      auto pieces = split(input, parts, rng);
      // Empty and one-row partitions among them.
      pieces.insert(pieces.begin() + 1, input.slice(0, 0));
      pieces.push_back(input.slice(0, 0));
      std::vector<table> partials;
      for (const table& p : pieces) partials.push_back(df::partial_aggregate(p, spec));

      check_same(df::finalize_aggregate(df::combine_aggregate(partials, spec), spec), whole);

      // Pairs, then pairs of pairs, keeping partition order.
      std::vector<table> level = partials;
      while (level.size() > 1) {
        std::vector<table> next;
        for (std::size_t i = 0; i < level.size(); i += 2) {
          const std::size_t n = std::min<std::size_t>(2, level.size() - i);
          next.push_back(df::combine_aggregate(std::span<const table>(level).subspan(i, n), spec));
        }
        level = std::move(next);
      }
      check_same(df::finalize_aggregate(level.front(), spec), whole);

      // A left fold.
      table acc = partials.front();
      for (std::size_t i = 1; i < partials.size(); ++i) {
        const table pair[] = {acc, partials[i]};
        acc = df::combine_aggregate(pair, spec);
      }
      check_same(df::finalize_aggregate(acc, spec), whole);
    }

    // One row per partition.
    std::vector<table> singles;
    for (std::size_t r = 0; r < 60; ++r) singles.push_back(input.slice(r, 1));
    check_against_reference(run(singles, spec), input.slice(0, 60), spec);
  }
}

TEST_CASE("partial states shuffled by key with hash_split combine per bucket to the same groups", "[aggregate]") {
  std::mt19937_64 rng(5);
  const table data = random_table(700, 0.1, rng);
  for (const auto& keys : key_sets) {
    if (keys.empty()) continue;
    INFO(describe_keys(keys));
    const table input = values_and(data, keys);
    const df::agg_spec spec = full_spec(input, keys);
    const auto pieces = split(input, 5, rng);
    constexpr std::size_t buckets = 3;
    std::vector<std::vector<table>> by_bucket(buckets);
    for (const table& p : pieces) {
      const auto split_state = df::hash_split(df::partial_aggregate(p, spec), keys, buckets);
      REQUIRE(split_state.size() == buckets);
      for (std::size_t b = 0; b < buckets; ++b) by_bucket[b].push_back(split_state[b]);
    }
    std::vector<table> finals;
    for (const auto& states : by_bucket)
      finals.push_back(df::finalize_aggregate(df::combine_aggregate(states, spec), spec));
    const table gathered = df::concat(finals);
    const table whole = run(pieces, spec);
    REQUIRE(gathered.num_rows() == whole.num_rows());

    // Same groups with the same values, in any order.
    auto rows_of = [](const table& t) {
      std::vector<std::vector<std::string>> rows;
      for (std::size_t r = 0; r < t.num_rows(); ++r) {
        std::vector<std::string> row;
        for (std::size_t c = 0; c < t.num_columns(); ++c) {
          const bool is_std = t.column_names()[c].find("std") != std::string::npos;
          row.push_back(is_std ? "" : t.column_at(c).format(r));
        }
        rows.push_back(std::move(row));
      }
      std::sort(rows.begin(), rows.end());
      return rows;
    };
    CHECK(rows_of(gathered) == rows_of(whole));
  }
}

TEST_CASE("partial states survive serialization", "[aggregate]") {
  std::mt19937_64 rng(9);
  const table data = random_table(300, 0.1, rng);
  for (const std::vector<std::string>& keys : {std::vector<std::string>{"k_str"}, std::vector<std::string>{}}) {
    INFO(describe_keys(keys));
    const table input = values_and(data, keys);
    df::agg_spec spec = full_spec(input, keys);
    std::string bytes;
    dx::detail::write_value(bytes, spec);
    spec = dx::detail::read_value<df::agg_spec>(bytes);
    const auto pieces = split(input, 4, rng);
    std::vector<table> partials;
    for (const table& p : pieces) {
      std::string wire;
      dx::detail::write_value(wire, df::partial_aggregate(p, spec));
      partials.push_back(dx::detail::read_value<table>(wire));
    }
    check_against_reference(df::finalize_aggregate(df::combine_aggregate(partials, spec), spec), input, spec);
  }
}

TEST_CASE("without keys the result is one row, also for empty input", "[aggregate]") {
  const table empty{
      {"x", std::vector<double>{}}, {"n", std::vector<std::int64_t>{}}, {"s", std::vector<std::string>{}}};
  df::agg_spec spec;
  spec.aggs = {{"x", agg::sum, "x_sum"},     {"n", agg::sum, "n_sum"},   {"x", agg::mean, "x_mean"},
               {"x", agg::count, "x_count"}, {"s", agg::min, "s_min"},   {"x", agg::std, "x_std"},
               {"n", agg::first, "n_first"}, {"s", agg::nunique, "s_nu"}};
  const table parts[] = {empty, empty};
  const table out = run(parts, spec);
  REQUIRE(out.num_rows() == 1);
  CHECK(out["x_sum"].float64_at(0) == 0.0);
  CHECK(out["n_sum"].int64_at(0) == 0);
  CHECK(out["x_mean"].is_null(0));
  CHECK(out["x_count"].int64_at(0) == 0);
  CHECK(out["s_min"].is_null(0));
  CHECK(out["x_std"].is_null(0));
  CHECK(out["n_first"].is_null(0));
  CHECK(out["s_nu"].int64_at(0) == 0);

  const table one{{"x", std::vector<std::optional<double>>{std::nullopt, 2.5}},
                  {"n", std::vector<std::optional<std::int64_t>>{std::nullopt, 4}},
                  {"s", std::vector<std::string>{"b", "a"}}};
  const table three[] = {empty, one, empty};
  const table r = run(three, spec);
  REQUIRE(r.num_rows() == 1);
  CHECK(r["x_sum"].float64_at(0) == 2.5);
  CHECK(r["x_mean"].float64_at(0) == 2.5);
  CHECK(r["x_count"].int64_at(0) == 1);
  CHECK(r["s_min"].string_at(0) == "a");
  CHECK(r["x_std"].is_null(0));
  CHECK(r["n_first"].int64_at(0) == 4);
  CHECK(r["s_nu"].int64_at(0) == 2);
}

TEST_CASE("null keys are dropped and null values skipped", "[aggregate]") {
  const table t{{"k", std::vector<std::optional<std::int64_t>>{1, std::nullopt, 1, 2, std::nullopt}},
                {"v", std::vector<std::optional<double>>{std::nullopt, 5.0, 3.0, std::nullopt, 1.0}}};
  df::agg_spec spec;
  spec.keys = {"k"};
  spec.aggs = {{"v", agg::sum, "sum"},     {"v", agg::count, "count"}, {"v", agg::mean, "mean"},
               {"v", agg::first, "first"}, {"v", agg::max, "max"},     {"v", agg::nunique, "nu"}};
  const table out = run(std::vector<table>{t}, spec);
  REQUIRE(out.num_rows() == 2);
  CHECK(out["k"].int64_at(0) == 1);
  CHECK(out["k"].int64_at(1) == 2);
  CHECK(out["sum"].float64_at(0) == 3.0);
  CHECK(out["sum"].float64_at(1) == 0.0);
  CHECK(out["count"].int64_at(1) == 0);
  CHECK(out["mean"].is_null(1));
  CHECK(out["first"].float64_at(0) == 3.0);
  CHECK(out["first"].is_null(1));
  CHECK(out["max"].is_null(1));
  CHECK(out["nu"].int64_at(0) == 1);
  CHECK(out["nu"].int64_at(1) == 0);
}

TEST_CASE("first follows row order across partitions, nunique merges sets exactly", "[aggregate]") {
  const table a{{"k", std::vector<std::string>{"東京", "Zürich"}},
                {"v", std::vector<std::optional<std::string>>{std::nullopt, "x"}}};
  const table b{{"k", std::vector<std::string>{"東京", "東京"}},
                {"v", std::vector<std::optional<std::string>>{"y", "x"}}};
  const table c{{"k", std::vector<std::string>{"Zürich"}}, {"v", std::vector<std::optional<std::string>>{"y"}}};
  df::agg_spec spec;
  spec.keys = {"k"};
  spec.aggs = {{"v", agg::first, "first"}, {"v", agg::nunique, "nu"}, {"v", agg::min, "min"}, {"v", agg::max, "max"}};
  const table parts[] = {a, b, c};
  const table out = run(parts, spec);
  REQUIRE(out.num_rows() == 2);
  // Byte order: "Z" (0x5A) before "東" (0xE6).
  CHECK(out["k"].string_at(0) == "Zürich");
  CHECK(out["k"].string_at(1) == "東京");
  CHECK(out["first"].string_at(0) == "x");
  CHECK(out["first"].string_at(1) == "y");
  CHECK(out["nu"].int64_at(0) == 2);
  CHECK(out["nu"].int64_at(1) == 2);
  CHECK(out["min"].string_at(1) == "x");
  CHECK(out["max"].string_at(1) == "y");

  // Float nunique folds -0.0 into 0.0 and counts NaN once.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const table f1{{"v", std::vector<double>{0.0, nan, 1.0}}};
  const table f2{{"v", std::vector<double>{-0.0, nan, 2.0}}};
  df::agg_spec nu;
  nu.aggs = {{"v", agg::nunique, "nu"}, {"v", agg::max, "max"}, {"v", agg::min, "min"}};
  const table fs[] = {f1, f2};
  const table n = run(fs, nu);
  CHECK(n["nu"].int64_at(0) == 4);
  CHECK(std::isnan(n["max"].float64_at(0)));  // NaN sorts after every number
  CHECK(n["min"].float64_at(0) == 0.0);
}

TEST_CASE("std merges accurately across partitions with a large common offset", "[aggregate]") {
  std::vector<double> values;
  for (int i = 0; i < 1000; ++i) values.push_back(1e9 + (i % 10) * 0.1);
  const table t{{"v", values}};
  df::agg_spec spec;
  spec.aggs = {{"v", agg::std, "std"}};
  double mean = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double m2 = 0;
  for (double v : values) m2 += (v - mean) * (v - mean);
  const double want = std::sqrt(m2 / (values.size() - 1));
  std::mt19937_64 rng(3);
  for (std::size_t parts : {1u, 3u, 10u}) {
    const table out = run(split(t, parts, rng), spec);
    CHECK(out["std"].float64_at(0) == Approx(want).epsilon(1e-9));
  }
}

TEST_CASE("the dense int64 path handles negative keys, nulls and wide ranges", "[aggregate]") {
  const table t{
      {"k", std::vector<std::optional<std::int64_t>>{-5, 3, std::nullopt, -5, std::numeric_limits<std::int64_t>::max(),
                                                     std::numeric_limits<std::int64_t>::min()}},
      {"v", std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}}};
  df::agg_spec spec;
  spec.keys = {"k"};
  spec.aggs = {{"v", agg::sum, "s"}};
  const table out = run(std::vector<table>{t}, spec);
  REQUIRE(out.num_rows() == 4);
  CHECK(out["k"].int64_at(0) == std::numeric_limits<std::int64_t>::min());
  CHECK(out["s"].int64_at(0) == 6);
  CHECK(out["k"].int64_at(1) == -5);
  CHECK(out["s"].int64_at(1) == 5);
  CHECK(out["k"].int64_at(2) == 3);
  CHECK(out["k"].int64_at(3) == std::numeric_limits<std::int64_t>::max());

  const table dense{{"k", std::vector<std::optional<std::int64_t>>{-5, 3, std::nullopt, -5}},
                    {"v", std::vector<std::int64_t>{1, 2, 3, 4}}};
  const table d = run(std::vector<table>{dense}, spec);
  REQUIRE(d.num_rows() == 2);
  CHECK(d["k"].int64_at(0) == -5);
  CHECK(d["s"].int64_at(0) == 5);
  CHECK(d["s"].int64_at(1) == 2);
}

TEST_CASE("describe_table matches a hand computation", "[describe]") {
  const table p1{{"a", std::vector<std::optional<std::int64_t>>{1, 2, std::nullopt}},
                 {"name", std::vector<std::string>{"x", "y", "z"}},
                 {"b", std::vector<std::optional<double>>{0.5, std::nullopt, 2.0}},
                 {"flag", std::vector<bool>{true, false, true}}};
  const table p2{{"a", std::vector<std::optional<std::int64_t>>{4, 3}},
                 {"name", std::vector<std::string>{"u", "v"}},
                 {"b", std::vector<std::optional<double>>{std::nullopt, std::nullopt}},
                 {"flag", std::vector<bool>{false, false}}};
  const table parts[] = {p1, p2};
  const table d = df::describe_table(parts);
  REQUIRE(d.column_names() == std::vector<std::string>{"statistic", "a", "b"});
  REQUIRE(d.num_rows() == 8);
  const std::vector<std::string> stats{"count", "mean", "std", "min", "25%", "50%", "75%", "max"};
  for (std::size_t r = 0; r < 8; ++r) CHECK(d["statistic"].string_at(r) == stats[r]);
  // a = 1, 2, 3, 4: pandas gives these.
  const std::vector<double> a{4, 2.5, 1.2909944487358056, 1, 1.75, 2.5, 3.25, 4};
  for (std::size_t r = 0; r < 8; ++r) CHECK(d["a"].float64_at(r) == Approx(a[r]).epsilon(1e-15));
  // b = 0.5, 2.0
  const std::vector<double> b{2, 1.25, 1.0606601717798212, 0.5, 0.875, 1.25, 1.625, 2.0};
  for (std::size_t r = 0; r < 8; ++r) CHECK(d["b"].float64_at(r) == Approx(b[r]).epsilon(1e-15));

  const table single{{"v", std::vector<double>{7}}};
  const table d1 = df::describe_table(std::span<const table>(&single, 1));
  CHECK(d1["v"].float64_at(0) == 1);
  CHECK(d1["v"].is_null(2));
  CHECK(d1["v"].float64_at(5) == 7);

  const table text{{"s", std::vector<std::string>{"a"}}, {"f", std::vector<bool>{true}}};
  CHECK_THROWS_WITH(df::describe_table(std::span<const table>(&text, 1)), "describe: no numeric columns");
}

TEST_CASE("distinct_rows keeps first occurrences in order, on all columns or a subset", "[distinct]") {
  const table p1{{"a", std::vector<std::optional<std::int64_t>>{1, 2, 1, std::nullopt}},
                 {"b", std::vector<std::string>{"x", "y", "x", "z"}},
                 {"c", std::vector<double>{0.5, 1.5, 2.5, 3.5}}};
  const table p2{{"a", std::vector<std::optional<std::int64_t>>{std::nullopt, 3, 2}},
                 {"b", std::vector<std::string>{"z", "東京", "y"}},
                 {"c", std::vector<double>{9, 9, 1.5}}};
  const table empty = p1.slice(0, 0);
  const table parts[] = {empty, p1, empty, p2};

  const table by_ab = df::distinct_rows(parts, {"a", "b"});
  REQUIRE(by_ab.column_names() == std::vector<std::string>{"a", "b", "c"});
  REQUIRE(by_ab.num_rows() == 4);
  CHECK(by_ab["c"].float64_at(0) == 0.5);
  CHECK(by_ab["c"].float64_at(1) == 1.5);
  CHECK(by_ab["c"].float64_at(2) == 3.5);  // null key row kept once
  CHECK(by_ab["b"].string_at(3) == "東京");

  const table all = df::distinct_rows(parts, {});
  REQUIRE(all.num_rows() == 6);
  const std::vector<double> c{0.5, 1.5, 2.5, 3.5, 9, 9};
  for (std::size_t r = 0; r < c.size(); ++r) CHECK(all["c"].float64_at(r) == c[r]);

  const table by_c = df::distinct_rows(parts, {"c"});
  CHECK(by_c.num_rows() == 5);
  CHECK_THROWS_AS(df::distinct_rows(parts, {"nope"}), dx::dataframe_error);
}

TEST_CASE("groupby-sum throughput", "[.perf]") {
  constexpr std::size_t partitions = 8;
  constexpr std::size_t rows = 1'250'000;
  std::mt19937_64 rng(1);
  std::vector<table> parts;
  for (std::size_t p = 0; p < partitions; ++p) {
    std::vector<std::int64_t> keys(rows);
    std::vector<double> values(rows);
    for (std::size_t i = 0; i < rows; ++i) {
      keys[i] = static_cast<std::int64_t>(rng() % 1000);
      values[i] = static_cast<double>(rng() % 10000) * 0.01;
    }
    parts.push_back(table{{"key", column(std::move(keys))}, {"value", column(std::move(values))}});
  }
  auto measure = [&](const df::agg_spec& spec, const char* what) {
    // Thread CPU time as well as wall time: on a shared machine the wall time includes waiting.
    auto cpu_now = [] {
      timespec ts{};
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
    };
    double best = 1e300;
    double best_cpu = 1e300;
    for (int round = 0; round < 5; ++round) {
      const double cpu_start = cpu_now();
      const auto start = std::chrono::steady_clock::now();
      std::vector<table> partials;
      for (const table& p : parts) partials.push_back(df::partial_aggregate(p, spec));
      const table out = df::finalize_aggregate(df::combine_aggregate(partials, spec), spec);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      best = std::min(best, ms);
      best_cpu = std::min(best_cpu, cpu_now() - cpu_start);
      REQUIRE(out.num_rows() == 1000);
    }
    std::cout << what << ": " << best << " ms for " << partitions * rows << " rows, "
              << best * 1e6 / static_cast<double>(partitions * rows) << " ns/row (CPU time " << best_cpu << " ms, "
              << best_cpu * 1e6 / static_cast<double>(partitions * rows) << " ns/row)\n";
  };
  df::agg_spec sum;
  sum.keys = {"key"};
  sum.aggs = {{"value", agg::sum, "value"}};
  measure(sum, "dense int64 key, sum");
  df::agg_spec several = sum;
  several.aggs = {{"value", agg::mean, "mean"}, {"value", agg::std, "std"}, {"value", agg::max, "max"}};
  measure(several, "dense int64 key, mean+std+max");

  // The hash path: the same keys spread over a wide range.
  for (table& p : parts) {
    std::vector<std::int64_t> keys(rows);
    const std::int64_t* k = p["key"].int64_data();
    for (std::size_t i = 0; i < rows; ++i) keys[i] = k[i] * 1'000'000'007;
    p = table{{"key", column(std::move(keys))}, {"value", p["value"]}};
  }
  measure(sum, "hashed int64 key, sum");

  for (table& p : parts) {
    std::vector<std::string> keys(rows);
    const std::int64_t* k = p["key"].int64_data();
    for (std::size_t i = 0; i < rows; ++i) keys[i] = "city-" + std::to_string(k[i] / 1'000'000'007);
    p = table{{"key", column(std::move(keys))}, {"value", p["value"]}};
  }
  measure(sum, "string key, sum");
}
