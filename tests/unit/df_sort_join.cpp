// Sorting, shuffling and joining kernels against answers computed here by brute force: a stable
// sort of row numbers with a comparator written from the documented order, nested-loop joins.
#include <catch2/catch.hpp>

#include "dataframe/kernels.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using dx::column;
using dx::column_type;
using dx::table;
using namespace dx::detail::df;

namespace {

// A table with an "id" column (the row number, to follow rows around) and key columns of every
// type full of nulls, NaN, -0.0, duplicates, extremes and multi-byte strings.
table random_table(std::size_t rows, std::uint64_t seed, const std::string& prefix = "") {
  std::mt19937_64 rng(seed);
  auto chance = [&](int percent) { return static_cast<int>(rng() % 100) < percent; };
  const std::vector<std::string> words{"", "a", "A", "ab", "b", "Zürich", "Zurich", "東京", "東", "😀", "😀a", "é", "e"};
  std::vector<std::int64_t> ids(rows);
  std::vector<std::optional<std::int64_t>> ints(rows);
  std::vector<std::optional<double>> doubles(rows);
  std::vector<std::optional<std::string>> strings(rows);
  std::vector<std::optional<bool>> bools(rows);
  std::vector<std::optional<dx::timestamp>> times(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    ids[r] = static_cast<std::int64_t>(r);
    if (!chance(10)) {
      if (chance(3)) {
        ints[r] = chance(50) ? std::numeric_limits<std::int64_t>::min() : std::numeric_limits<std::int64_t>::max();
      } else if (chance(50)) {
        ints[r] = static_cast<std::int64_t>(rng() % 11) - 5;
      } else {
        ints[r] = static_cast<std::int64_t>(rng());
      }
    }
    if (!chance(8)) {
      const int kind = static_cast<int>(rng() % 20);
      if (kind == 0) {
        doubles[r] = std::nan("");
      } else if (kind == 1) {
        doubles[r] = -0.0;
      } else if (kind == 2) {
        doubles[r] = 0.0;
      } else if (kind == 3) {
        doubles[r] = chance(50) ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
      } else if (kind == 4) {
        doubles[r] = chance(50) ? std::numeric_limits<double>::denorm_min() : -1e300;
      } else {
        doubles[r] = static_cast<double>(static_cast<int>(rng() % 61) - 30) / 10.0;
      }
    }
    if (!chance(10)) strings[r] = words[rng() % words.size()];
    if (!chance(10)) bools[r] = chance(50);
    if (!chance(10)) times[r] = dx::timestamp{(static_cast<std::int64_t>(rng() % 9) - 4) * 1'000'000'000};
  }
  return table({prefix + "id", prefix + "i", prefix + "f", prefix + "s", prefix + "b", prefix + "t"},
               {column(ids), column(ints), column(doubles), column(strings), column(bools), column(times)});
}

bool ref_missing(const column& c, std::size_t r) {
  return c.is_null(r) || (c.type() == column_type::float64 && std::isnan(c.float64_at(r)));
}

// The documented order of non-missing values, ascending.
int ref_value_compare(const column& a, std::size_t ra, const column& b, std::size_t rb) {
  auto three = [](auto x, auto y) { return x < y ? -1 : (y < x ? 1 : 0); };
  switch (a.type()) {
    case column_type::int64:
      return three(a.int64_at(ra), b.int64_at(rb));
    case column_type::float64:
      return three(a.float64_at(ra), b.float64_at(rb));
    case column_type::boolean:
      return three(int{a.bool_at(ra)}, int{b.bool_at(rb)});
    case column_type::timestamp:
      return three(a.timestamp_at(ra).nanoseconds, b.timestamp_at(rb).nanoseconds);
    case column_type::string: {
      const std::string_view x = a.string_at(ra), y = b.string_at(rb);
      for (std::size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
        const auto p = static_cast<unsigned char>(x[i]), q = static_cast<unsigned char>(y[i]);
        if (p != q) return p < q ? -1 : 1;
      }
      return three(x.size(), y.size());
    }
  }
  return 0;
}

int ref_compare(const column& a, std::size_t ra, const column& b, std::size_t rb, bool ascending) {
  const bool ma = ref_missing(a, ra), mb = ref_missing(b, rb);
  if (ma || mb) return ma == mb ? 0 : (ma ? 1 : -1);  // missing last whatever the direction
  const int c = ref_value_compare(a, ra, b, rb);
  return ascending ? c : -c;
}

int ref_compare_rows(const table& a, std::size_t ra, const table& b, std::size_t rb, const sort_spec& spec) {
  for (std::size_t k = 0; k < spec.by.size(); ++k) {
    const int c = ref_compare(a[spec.by[k]], ra, b[spec.by[k]], rb, spec.ascending[k]);
    if (c != 0) return c;
  }
  return 0;
}

std::vector<std::int64_t> ref_sorted_rows(const table& t, const sort_spec& spec) {
  std::vector<std::int64_t> rows(t.num_rows());
  std::iota(rows.begin(), rows.end(), 0);
  std::stable_sort(rows.begin(), rows.end(), [&](std::int64_t x, std::int64_t y) {
    return ref_compare_rows(t, static_cast<std::size_t>(x), t, static_cast<std::size_t>(y), spec) < 0;
  });
  return rows;
}

std::vector<std::int64_t> ids_of(const table& t, const std::string& name = "id") {
  std::vector<std::int64_t> out;
  const column& c = t[name];
  for (std::size_t r = 0; r < t.num_rows(); ++r) out.push_back(c.int64_at(r));
  return out;
}

std::vector<std::int64_t> ids_at(const table& t, const std::vector<std::int64_t>& rows) {
  std::vector<std::int64_t> out;
  for (std::int64_t r : rows) out.push_back(t["id"].int64_at(static_cast<std::size_t>(r)));
  return out;
}

// Partitions of random sizes (some empty, some of one row) as slices of `t`.
std::vector<table> random_partitions(const table& t, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<table> parts;
  std::size_t at = 0;
  while (at < t.num_rows()) {
    const int kind = static_cast<int>(rng() % 5);
    std::size_t len = kind == 0 ? 0 : kind == 1 ? 1 : 1 + rng() % (t.num_rows() / 3 + 1);
    len = std::min(len, t.num_rows() - at);
    parts.push_back(t.slice(at, len));
    at += len;
  }
  parts.push_back(t.slice(t.num_rows(), 0));
  return parts;
}

const std::vector<sort_spec> specs{
    {{"i"}, {true}},
    {{"i"}, {false}},
    {{"f"}, {true}},
    {{"f"}, {false}},
    {{"s"}, {true}},
    {{"s"}, {false}},
    {{"b"}, {true}},
    {{"t"}, {false}},
    {{"b", "f"}, {true, false}},
    {{"s", "i"}, {false, true}},
    {{"t", "s", "f"}, {true, true, false}},
    {{"b", "s", "t", "i"}, {false, true, false, true}},
};

std::string spec_name(const sort_spec& spec) {
  std::string s;
  for (std::size_t k = 0; k < spec.by.size(); ++k) s += spec.by[k] + (spec.ascending[k] ? "+ " : "- ");
  return s;
}

}  // namespace

TEST_CASE("sort_table sorts stably by any key types and directions, missing values last", "[df][sort]") {
  for (std::size_t rows : {0, 1, 2, 40, 300, 4000}) {
    for (std::uint64_t seed : {1, 2}) {
      const table t = random_table(rows, seed * 1000 + rows);
      for (const sort_spec& spec : specs) {
        INFO("rows " << rows << " seed " << seed << " by " << spec_name(spec));
        const std::vector<table> one{t};
        const table sorted = sort_table(one, spec);
        REQUIRE(ids_of(sorted) == ids_at(t, ref_sorted_rows(t, spec)));
        REQUIRE(sorted == take(t, ref_sorted_rows(t, spec)));
      }
    }
  }
}

TEST_CASE("sort_table concatenates pieces in order before sorting (global stability)", "[df][sort]") {
  const table t = random_table(2000, 7);
  const std::vector<table> parts = random_partitions(t, 8);
  for (const sort_spec& spec : specs) {
    INFO("by " << spec_name(spec));
    REQUIRE(ids_of(sort_table(parts, spec)) == ids_at(t, ref_sorted_rows(t, spec)));
  }
}

TEST_CASE("sorting numeric keys that span the whole 64-bit range, with nulls", "[df][sort]") {
  std::mt19937_64 rng(3);
  std::vector<std::optional<std::int64_t>> v;
  std::vector<std::int64_t> ids;
  for (std::int64_t r = 0; r < 5000; ++r) {
    ids.push_back(r);
    const int kind = static_cast<int>(rng() % 10);
    if (kind == 0) {
      v.push_back(std::nullopt);
    } else if (kind == 1) {
      v.push_back(std::numeric_limits<std::int64_t>::min());
    } else if (kind == 2) {
      v.push_back(std::numeric_limits<std::int64_t>::max());
    } else {
      v.push_back(static_cast<std::int64_t>(rng() % 7) - 3);
    }
  }
  const table t{{"id", column(ids)}, {"i", column(v)}};
  for (bool ascending : {true, false}) {
    const sort_spec spec{{"i"}, {ascending}};
    const std::vector<table> one{t};
    REQUIRE(ids_of(sort_table(one, spec)) == ids_at(t, ref_sorted_rows(t, spec)));
  }
}

TEST_CASE("radix sorting of spread, clustered and repeated numeric keys", "[df][sort]") {
  std::mt19937_64 rng(17);
  auto check = [](std::vector<std::int64_t> values) {
    std::vector<std::int64_t> ids(values.size());
    std::iota(ids.begin(), ids.end(), 0);
    std::vector<double> doubles(values.begin(), values.end());
    std::vector<dx::timestamp> times;
    std::vector<bool> bools;
    for (std::int64_t v : values) {
      times.push_back(dx::timestamp{v});
      bools.push_back(v % 3 == 0);
    }
    // The sorted key column may be rebuilt from the sorted keys: the whole table is compared.
    const table t{
        {"id", column(ids)}, {"i", column(values)}, {"f", column(doubles)}, {"t", column(times)}, {"b", column(bools)}};
    const std::vector<table> one{t};
    for (const std::string key : {"i", "f", "t", "b"}) {
      for (bool ascending : {true, false}) {
        const sort_spec spec{{key}, {ascending}};
        INFO(key << (ascending ? " ascending" : " descending"));
        const table sorted = sort_table(one, spec);
        REQUIRE(ids_of(sorted) == ids_at(t, ref_sorted_rows(t, spec)));
        REQUIRE(sorted == take(t, ref_sorted_rows(t, spec)));
      }
    }
  };
  std::vector<std::int64_t> spread, wide_repeats, clusters, runs;
  for (int i = 0; i < 20000; ++i) {
    spread.push_back(static_cast<std::int64_t>(rng()));
    wide_repeats.push_back(static_cast<std::int64_t>(rng() % 300) << 30);
    // A few far-apart clusters of close values: long runs of equal leading digits.
    clusters.push_back(static_cast<std::int64_t>(rng() % 3) * (std::int64_t{1} << 50) +
                       static_cast<std::int64_t>(rng() % 100000));
    // Many short runs: values sharing their leading digits in small groups.
    runs.push_back(static_cast<std::int64_t>(rng() % 5000) * (std::int64_t{1} << 30) +
                   static_cast<std::int64_t>(rng() % 64));
  }
  std::vector<std::int64_t> small;
  for (int i = 0; i < 500; ++i) small.push_back(static_cast<std::int64_t>(rng() % 7) - 3);
  check(small);
  check(spread);
  check(wide_repeats);
  check(clusters);
  check(runs);
}

TEST_CASE("float64 keys: -0.0 equals 0.0, NaN sorts with nulls, infinities and subnormals in order", "[df][sort]") {
  const double inf = std::numeric_limits<double>::infinity();
  const table t{{"id", column(std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8})},
                {"f", column(std::vector<std::optional<double>>{0.0, std::nan(""), -0.0, std::nullopt, inf, -inf,
                                                                5e-324, -5e-324, 0.0})}};
  const std::vector<table> one{t};
  REQUIRE(ids_of(sort_table(one, {{"f"}, {true}})) == std::vector<std::int64_t>{5, 7, 0, 2, 8, 6, 4, 1, 3});
  REQUIRE(ids_of(sort_table(one, {{"f"}, {false}})) == std::vector<std::int64_t>{4, 6, 0, 2, 8, 7, 5, 1, 3});
}

TEST_CASE("sorting keeps -0.0 as it was", "[df][sort]") {
  std::mt19937_64 rng(5);
  std::vector<double> values;
  std::vector<std::int64_t> ids;
  for (std::int64_t r = 0; r < 300; ++r) {
    ids.push_back(r);
    values.push_back(std::vector<double>{-0.0, 0.0, 1.5, -2.5}[rng() % 4]);
  }
  const table t{{"id", column(ids)}, {"f", column(values)}};
  const std::vector<table> one{t};
  for (bool ascending : {true, false}) {
    const table sorted = sort_table(one, {{"f"}, {ascending}});
    REQUIRE(ids_of(sorted) == ids_at(t, ref_sorted_rows(t, {{"f"}, {ascending}})));
    for (std::size_t r = 0; r < sorted.num_rows(); ++r) {
      const auto id = static_cast<std::size_t>(sorted["id"].int64_at(r));
      REQUIRE(std::signbit(sorted["f"].float64_at(r)) == std::signbit(values[id]));
    }
  }
}

TEST_CASE("ascending flags: one for all, or none meaning ascending", "[df][sort]") {
  const table t = random_table(100, 11);
  const std::vector<table> one{t};
  REQUIRE(sort_table(one, {{"i", "s"}, {false}}) == sort_table(one, {{"i", "s"}, {false, false}}));
  REQUIRE(sort_table(one, {{"i", "s"}, {}}) == sort_table(one, {{"i", "s"}, {true, true}}));
  REQUIRE_THROWS_AS(sort_table(one, {{"i", "s", "f"}, {true, false}}), dx::dataframe_error);
  REQUIRE_THROWS_WITH(sort_table(one, {{"nope"}, {true}}), Catch::Contains("nope"));
}

// Runs the chunks on three threads, each taking them from the end backwards, so that a kernel
// relying on chunk order or on one thread doing them all fails.
const parallel_runner three_threads = [](std::size_t chunks, const std::function<void(std::size_t)>& fn) {
  std::atomic<std::size_t> left{chunks};
  auto work = [&] {
    for (std::size_t n; (n = left.fetch_sub(1)) > 0 && n <= chunks;) fn(n - 1);
  };
  std::thread a(work), b(work);
  work();
  a.join();
  b.join();
};

TEST_CASE("one-key sorts over many chunks and pieces, on several threads, equal one stable sort", "[df][sort]") {
  // 150,000 rows: several 65,536-row chunks. Uniform doubles crowd into few top digits (their
  // exponents), so buckets are uneven and sorted over more than one level.
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const std::size_t rows = 150000;
  const table base = random_table(rows, 98);
  std::vector<std::optional<double>> u(rows);
  std::vector<std::int64_t> few(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    if (rng() % 50 != 0) u[r] = uniform(rng);
    few[r] = static_cast<std::int64_t>(rng() % 1000);
  }
  std::vector<std::string> names = base.column_names();
  std::vector<column> cols(base.columns().begin(), base.columns().end());
  names.push_back("u");
  cols.push_back(column(u));
  names.push_back("k");
  cols.push_back(column(few));
  const table t(names, cols);
  std::vector<table> eight;
  for (std::size_t p = 0; p < 8; ++p) eight.push_back(t.slice(p * rows / 8, (p + 1) * rows / 8 - p * rows / 8));
  eight.insert(eight.begin() + 3, t.slice(0, 0));
  const std::vector<table> many = random_partitions(t, 5);  // more than 8 pieces: concatenated first
  REQUIRE(many.size() > 8);
  for (const std::string key : {"u", "k", "i", "f", "b", "t"}) {
    for (bool ascending : {true, false}) {
      const sort_spec spec{{key}, {ascending}};
      INFO(key << (ascending ? " ascending" : " descending"));
      const std::vector<std::int64_t> expected = ref_sorted_rows(t, spec);
      const table want = take(t, expected);
      REQUIRE(sort_table(std::vector<table>{t}, spec, three_threads) == want);
      REQUIRE(sort_table(eight, spec, three_threads) == want);
      REQUIRE(sort_table(many, spec, three_threads) == want);
      REQUIRE(sort_table(eight, spec) == want);
    }
  }
}

TEST_CASE("one-key sorts of empty, all-missing and one-valued inputs", "[df][sort]") {
  const table empty{{"id", column(std::vector<std::int64_t>{})}, {"f", column(std::vector<double>{})}};
  REQUIRE(sort_table(std::vector<table>{empty, empty}, {{"f"}, {true}}, three_threads) == empty);
  std::vector<std::optional<double>> missing(70000);
  std::vector<std::int64_t> ids(70000), same(70000, 42);
  for (std::size_t r = 0; r < ids.size(); ++r) {
    ids[r] = static_cast<std::int64_t>(r);
    if (r % 2 == 0) missing[r] = std::nan("");
  }
  const table t{{"id", column(ids)}, {"f", column(missing)}, {"same", column(same)}};
  const std::vector<table> halves{t.slice(0, 30000), t.slice(30000, 40000)};
  for (bool ascending : {true, false}) {
    REQUIRE(ids_of(sort_table(halves, {{"f"}, {ascending}}, three_threads)) == ids);
    REQUIRE(ids_of(sort_table(halves, {{"same"}, {ascending}}, three_threads)) == ids);
  }
}

TEST_CASE("top_rows gives the first k rows of the stable sort, for every key type and k", "[df][sort][top]") {
  for (std::size_t rows : {0, 1, 7, 500, 3000}) {
    const table t = random_table(rows, 31 + rows);
    for (const sort_spec& spec : specs) {
      const table sorted = take(t, ref_sorted_rows(t, spec));
      for (std::size_t k : {std::size_t{0}, std::size_t{1}, std::size_t{5}, rows / 2, rows, rows + 3}) {
        INFO(rows << " rows, k " << k << ", by " << spec_name(spec));
        REQUIRE(top_rows(t, spec, k) == sorted.head(k));
      }
    }
  }
  // Many ties: the first k in row order among equal keys.
  std::vector<std::int64_t> ids(1000), same(1000, 3);
  std::iota(ids.begin(), ids.end(), 0);
  const table t{{"id", column(ids)}, {"k", column(same)}};
  REQUIRE(ids_of(top_rows(t, {{"k"}, {false}}, 4)) == std::vector<std::int64_t>{0, 1, 2, 3});
}

TEST_CASE("sample, boundaries, range_split and per-range sort equal one stable sort", "[df][sort]") {
  for (std::uint64_t seed : {21, 22, 23}) {
    const table t = random_table(3000, seed);
    const std::vector<table> parts = random_partitions(t, seed + 100);
    for (const sort_spec& spec : specs) {
      for (std::size_t ranges : {1, 2, 5, 16}) {
        INFO("seed " << seed << " by " << spec_name(spec) << " ranges " << ranges);
        std::vector<table> samples;
        for (const table& p : parts) {
          const table s = sample_sort_keys(p, spec, 25);
          REQUIRE(s.column_names() == spec.by);
          REQUIRE(s.num_rows() == std::min<std::size_t>(25, p.num_rows()));
          samples.push_back(s);
        }
        const table bounds = sort_boundaries(samples, spec, ranges);
        REQUIRE(bounds.num_rows() < ranges);
        // Boundaries are strictly increasing: equal keys cannot be split between ranges.
        for (std::size_t j = 1; j < bounds.num_rows(); ++j)
          REQUIRE(ref_compare_rows(bounds, j - 1, bounds, j, spec) < 0);

        std::vector<std::vector<table>> by_range(bounds.num_rows() + 1);
        for (const table& p : parts) {
          const std::vector<table> pieces = range_split(p, spec, bounds);
          REQUIRE(pieces.size() == bounds.num_rows() + 1);
          std::size_t total = 0;
          for (std::size_t j = 0; j < pieces.size(); ++j) {
            const table& piece = pieces[j];
            REQUIRE(piece.column_names() == t.column_names());
            total += piece.num_rows();
            for (std::size_t r = 0; r < piece.num_rows(); ++r) {
              if (j > 0) REQUIRE(ref_compare_rows(piece, r, bounds, j - 1, spec) > 0);
              if (j < bounds.num_rows()) REQUIRE(ref_compare_rows(piece, r, bounds, j, spec) <= 0);
              if (r > 0) REQUIRE(piece["id"].int64_at(r - 1) < piece["id"].int64_at(r));
            }
            by_range[j].push_back(piece);
          }
          REQUIRE(total == p.num_rows());
        }
        std::vector<table> sorted_ranges;
        for (const auto& pieces : by_range) sorted_ranges.push_back(sort_table(pieces, spec));
        const table result = concat(sorted_ranges);
        REQUIRE(ids_of(result) == ids_at(t, ref_sorted_rows(t, spec)));
        REQUIRE(result == take(t, ref_sorted_rows(t, spec)));
      }
    }
  }
}

TEST_CASE("sort_boundaries of no samples, and range_split without boundaries", "[df][sort]") {
  const sort_spec spec{{"i"}, {true}};
  const table t = random_table(10, 5);
  REQUIRE(sort_boundaries(std::span<const table>{}, spec, 4).num_rows() == 0);
  const std::vector<table> empty_samples{sample_sort_keys(t.slice(0, 0), spec, 10)};
  REQUIRE(sort_boundaries(empty_samples, spec, 4).num_rows() == 0);
  const std::vector<table> pieces = range_split(t, spec, sort_boundaries(empty_samples, spec, 4));
  REQUIRE(pieces.size() == 1);
  REQUIRE(pieces[0] == t);
  // Every key equal: one boundary at most, and all rows in one piece.
  const table same{{"id", column(std::vector<std::int64_t>{0, 1, 2, 3})},
                   {"i", column(std::vector<std::int64_t>{7, 7, 7, 7})}};
  const std::vector<table> same_samples{sample_sort_keys(same, spec, 10)};
  const table bounds = sort_boundaries(same_samples, spec, 4);
  REQUIRE(bounds.num_rows() <= 1);
  std::size_t nonempty = 0;
  for (const table& p : range_split(same, spec, bounds)) nonempty += p.num_rows() > 0 ? 1 : 0;
  REQUIRE(nonempty == 1);
}

TEST_CASE("hash_split keeps equal keys together and rows in order", "[df][shuffle]") {
  const table t = random_table(3000, 31);
  for (const std::vector<std::string>& keys :
       {std::vector<std::string>{"i"}, {"f"}, {"s"}, {"b"}, {"s", "i"}, {"t", "f", "b"}}) {
    for (std::size_t buckets : {1, 2, 7}) {
      const std::vector<table> split = hash_split(t, keys, buckets);
      REQUIRE(split.size() == buckets);
      std::map<std::string, std::size_t> bucket_of_key;
      std::vector<std::int64_t> all_ids;
      for (std::size_t b = 0; b < buckets; ++b) {
        const table& part = split[b];
        REQUIRE(part.column_names() == t.column_names());
        const std::vector<std::int64_t> ids = ids_of(part);
        REQUIRE(std::is_sorted(ids.begin(), ids.end()));
        all_ids.insert(all_ids.end(), ids.begin(), ids.end());
        for (std::size_t r = 0; r < part.num_rows(); ++r) {
          std::string key;
          for (const auto& k : keys) {
            const column& c = part[k];
            // -0.0 and 0.0 are equal keys: adding 0.0 turns -0.0 into 0.0.
            key += c.type() == column_type::float64 && !c.is_null(r) && !std::isnan(c.float64_at(r))
                       ? std::to_string(std::bit_cast<std::uint64_t>(c.float64_at(r) + 0.0))
                       : c.format(r);
            key += '\x1f';
          }
          const auto it = bucket_of_key.emplace(key, b).first;
          REQUIRE(it->second == b);
        }
      }
      std::sort(all_ids.begin(), all_ids.end());
      REQUIRE(all_ids == ids_of(t));
    }
  }
}

namespace {

struct ref_match {
  std::int64_t left;
  std::optional<std::int64_t> right;
  friend auto operator<=>(const ref_match&, const ref_match&) = default;
};

std::vector<ref_match> ref_join(const table& left, const table& right, const join_spec& spec) {
  std::vector<ref_match> out;
  for (std::size_t l = 0; l < left.num_rows(); ++l) {
    bool matched = false;
    for (std::size_t r = 0; r < right.num_rows(); ++r) {
      bool equal = true;
      for (std::size_t k = 0; k < spec.left_on.size() && equal; ++k) {
        const column& a = left[spec.left_on[k]];
        const column& b = right[spec.right_on[k]];
        equal = !ref_missing(a, l) && !ref_missing(b, r) && ref_value_compare(a, l, b, r) == 0;
      }
      if (!equal) continue;
      out.push_back({left["lid"].int64_at(l), right["rid"].int64_at(r)});
      matched = true;
    }
    if (!matched && spec.how == dx::join_kind::left) out.push_back({left["lid"].int64_at(l), std::nullopt});
  }
  return out;
}

std::vector<ref_match> matches_of(const table& joined) {
  std::vector<ref_match> out;
  const column& l = joined["lid"];
  const column& r = joined["rid"];
  for (std::size_t i = 0; i < joined.num_rows(); ++i) {
    out.push_back({l.int64_at(i), r.is_null(i) ? std::nullopt : std::optional<std::int64_t>(r.int64_at(i))});
  }
  return out;
}

table with_id(const table& t, const std::string& name) {
  std::vector<std::string> names{name};
  std::vector<column> cols{t["id"]};
  for (std::size_t c = 0; c < t.num_columns(); ++c) {
    names.push_back(t.column_names()[c]);
    cols.push_back(t.column_at(c));
  }
  return table(names, cols);
}

// Every output column holds the value of the row it claims to come from (nulls for no match).
void check_join_values(const table& joined, const table& left, const table& right, const join_spec& spec) {
  const schema_t schema = join_schema(schema_of(left), schema_of(right), spec);
  REQUIRE(schema == schema_of(joined));
  const std::vector<ref_match> m = matches_of(joined);
  std::size_t out_col = 0;
  for (std::size_t c = 0; c < left.num_columns(); ++c, ++out_col) {
    const column& src = left.column_at(c);
    const column& dst = joined.column_at(out_col);
    for (std::size_t i = 0; i < m.size(); ++i)
      REQUIRE(dst.format(i) == src.format(static_cast<std::size_t>(m[i].left)));
  }
  for (std::size_t c = 0; c < right.num_columns(); ++c) {
    const std::string& name = right.column_names()[c];
    bool merged = false;
    for (std::size_t k = 0; k < spec.right_on.size(); ++k)
      merged |= spec.right_on[k] == name && spec.left_on[k] == name;
    if (merged) continue;
    const column& src = right.column_at(c);
    const column& dst = joined.column_at(out_col++);
    for (std::size_t i = 0; i < m.size(); ++i) {
      REQUIRE(dst.format(i) == (m[i].right ? src.format(static_cast<std::size_t>(*m[i].right)) : "null"));
    }
  }
  REQUIRE(out_col == joined.num_columns());
}

}  // namespace

TEST_CASE("hash_join matches a nested-loop join: inner and left, duplicates, nulls, multi-key", "[df][join]") {
  for (std::uint64_t seed : {41, 42}) {
    for (std::size_t left_rows : {0, 1, 200}) {
      for (std::size_t right_rows : {0, 1, 150}) {
        const table left = with_id(random_table(left_rows, seed), "lid");
        const table right = with_id(random_table(right_rows, seed + 7), "rid");
        for (const std::vector<std::string>& on :
             {std::vector<std::string>{"b"}, {"i"}, {"f"}, {"s"}, {"t"}, {"s", "b"}, {"b", "t", "s"}}) {
          for (dx::join_kind how : {dx::join_kind::inner, dx::join_kind::left}) {
            const join_spec spec{on, on, how};
            INFO("seed " << seed << " rows " << left_rows << "x" << right_rows << " on " << on.size() << " keys, "
                         << (how == dx::join_kind::left ? "left" : "inner"));
            const table joined = hash_join(left, right, spec);
            REQUIRE(matches_of(joined) == ref_join(left, right, spec));
            check_join_values(joined, left, right, spec);
          }
        }
      }
    }
  }
}

// The left ids a semi (or anti) join keeps: each left row with (without) a match, once, in order.
static std::vector<std::int64_t> ref_semi_anti(const table& left, const table& right, const join_spec& spec) {
  const join_spec inner{spec.left_on, spec.right_on, dx::join_kind::inner};
  std::set<std::int64_t> matched;
  for (const ref_match& m : ref_join(left, right, inner)) matched.insert(m.left);
  std::vector<std::int64_t> out;
  for (std::size_t l = 0; l < left.num_rows(); ++l) {
    const std::int64_t id = left["lid"].int64_at(l);
    if (matched.contains(id) == (spec.how == dx::join_kind::semi)) out.push_back(id);
  }
  return out;
}

TEST_CASE("semi and anti joins keep each left row with, or without, a match once", "[df][join]") {
  for (std::uint64_t seed : {51, 52}) {
    for (std::size_t right_rows : {0, 1, 150}) {
      const table left = with_id(random_table(300, seed), "lid");
      const table right = with_id(random_table(right_rows, seed + 3), "rid");
      for (const std::vector<std::string>& on : {std::vector<std::string>{"i"}, {"f"}, {"s"}, {"b", "t"}}) {
        for (dx::join_kind how : {dx::join_kind::semi, dx::join_kind::anti}) {
          const join_spec spec{on, on, how};
          INFO("seed " << seed << " right rows " << right_rows << " on " << on.front() << " "
                       << (how == dx::join_kind::semi ? "semi" : "anti"));
          const table joined = hash_join(left, right, spec);
          REQUIRE(joined.column_names() == left.column_names());
          REQUIRE(ids_of(joined, "lid") == ref_semi_anti(left, right, spec));
          std::vector<std::int64_t> rows;
          for (std::int64_t id : ids_of(joined, "lid")) rows.push_back(id);
          REQUIRE(joined == take(left, rows));  // lid is the row number
        }
      }
    }
  }
}

TEST_CASE("joins with a dimension of distinct keys, every key type and kind, equal the nested loop", "[df][join]") {
  std::mt19937_64 rng(61);
  const std::size_t rows = 5000;
  // Left: keys from a small range with nulls, NaN and -0.0; the dimension: each key once, some
  // missing so that some left rows do not match.
  std::vector<std::optional<std::int64_t>> li(rows);
  std::vector<std::optional<double>> lf(rows);
  std::vector<std::optional<dx::timestamp>> lt(rows);
  std::vector<std::int64_t> lid(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    lid[r] = static_cast<std::int64_t>(r);
    if (rng() % 20 != 0) li[r] = static_cast<std::int64_t>(rng() % 60) - 10;
    const int kind = static_cast<int>(rng() % 25);
    if (kind == 0) {
      lf[r] = std::nan("");
    } else if (kind == 1) {
      lf[r] = -0.0;
    } else if (kind != 2) {
      lf[r] = static_cast<double>(static_cast<int>(rng() % 60) - 10) / 2.0;
    }
    if (rng() % 20 != 0) lt[r] = dx::timestamp{static_cast<std::int64_t>(rng() % 60) * 1000};
  }
  const table left{{"lid", column(lid)}, {"i", column(li)}, {"f", column(lf)}, {"t", column(lt)}};
  std::vector<std::int64_t> ri, rid;
  std::vector<double> rf;
  std::vector<dx::timestamp> rt;
  std::vector<std::string> label;
  for (std::int64_t k = -5; k < 40; k += 1) {
    if (k % 7 == 3) continue;
    rid.push_back(static_cast<std::int64_t>(rid.size()));
    ri.push_back(k);
    rf.push_back(k == 0 ? 0.0 : static_cast<double>(k) / 2.0);
    rt.push_back(dx::timestamp{k * 1000});
    label.push_back("r" + std::to_string(k));
  }
  const table right{
      {"rid", column(rid)}, {"i", column(ri)}, {"f", column(rf)}, {"t", column(rt)}, {"label", column(label)}};
  for (const std::string key : {"i", "f", "t"}) {
    for (dx::join_kind how : {dx::join_kind::inner, dx::join_kind::left, dx::join_kind::semi, dx::join_kind::anti}) {
      const join_spec spec{{key}, {key}, how};
      INFO(key << " kind " << static_cast<int>(how));
      const table joined = hash_join(left, right, spec);
      if (how == dx::join_kind::semi || how == dx::join_kind::anti) {
        REQUIRE(ids_of(joined, "lid") == ref_semi_anti(left, right, spec));
      } else {
        REQUIRE(matches_of(joined) == ref_join(left, right, spec));
        check_join_values(joined, left, right, spec);
      }
    }
  }
  // Every left row matching: the left columns come out as they are.
  const table all_match{{"lid", column(std::vector<std::int64_t>{0, 1, 2})},
                        {"i", column(std::vector<std::int64_t>{1, 2, 1})}};
  const table joined = hash_join(all_match, right, {{"i"}, {"i"}, dx::join_kind::inner});
  REQUIRE(joined["lid"] == all_match["lid"]);
  REQUIRE(joined["label"] == column(std::vector<std::string>{"r1", "r2", "r1"}));
}

TEST_CASE("join column names follow pandas merge", "[df][join]") {
  const table left{{"k", column(std::vector<std::int64_t>{1, 2, 2, 3})},
                   {"v", column(std::vector<std::string>{"a", "b", "c", "d"})},
                   {"lid", column(std::vector<std::int64_t>{0, 1, 2, 3})}};
  const table right{{"w", column(std::vector<double>{0.5, 1.5, 2.5})},
                    {"k", column(std::vector<std::int64_t>{2, 3, 2})},
                    {"v", column(std::vector<std::string>{"x", "y", "z"})},
                    {"rid", column(std::vector<std::int64_t>{0, 1, 2})}};
  const join_spec inner{{"k"}, {"k"}, dx::join_kind::inner};
  const table j = hash_join(left, right, inner);
  REQUIRE(j.column_names() == std::vector<std::string>{"k", "v_x", "lid", "w", "v_y", "rid"});
  REQUIRE(matches_of(j) == std::vector<ref_match>{{1, 0}, {1, 2}, {2, 0}, {2, 2}, {3, 1}});
  REQUIRE(j["v_y"].string_at(1) == "z");

  const join_spec left_join{{"k"}, {"k"}, dx::join_kind::left};
  const table lj = hash_join(left, right, left_join);
  REQUIRE(matches_of(lj) == std::vector<ref_match>{{0, std::nullopt}, {1, 0}, {1, 2}, {2, 0}, {2, 2}, {3, 1}});
  REQUIRE(lj["k"].int64_at(0) == 1);  // the key of an unmatched row comes from the left
  REQUIRE(lj["w"].is_null(0));

  // Different key names: both key columns stay; a non-key name on both sides gets suffixes.
  const table right2{{"key", column(std::vector<std::int64_t>{3})},
                     {"k", column(std::vector<std::int64_t>{99})},
                     {"rid", column(std::vector<std::int64_t>{0})}};
  const join_spec by_name{{"k"}, {"key"}, dx::join_kind::inner};
  const table j2 = hash_join(left, right2, by_name);
  REQUIRE(j2.column_names() == std::vector<std::string>{"k_x", "v", "lid", "key", "k_y", "rid"});
  REQUIRE(j2.num_rows() == 1);
  REQUIRE(j2["k_y"].int64_at(0) == 99);
  REQUIRE(join_schema(schema_of(left), schema_of(right2), by_name) == schema_of(j2));
}

TEST_CASE("join errors name the columns", "[df][join]") {
  const table left{{"k", column(std::vector<std::int64_t>{1})}, {"x", column(std::vector<double>{1})}};
  const table right{{"k", column(std::vector<double>{1.0})}, {"kk", column(std::vector<std::int64_t>{1})}};
  REQUIRE_THROWS_WITH(hash_join(left, right, {{"k"}, {"k"}, dx::join_kind::inner}),
                      Catch::Contains("'k' is int64") && Catch::Contains("'k' is float64"));
  REQUIRE_THROWS_WITH(join_schema(schema_of(left), schema_of(right), {{"x"}, {"kk"}, dx::join_kind::inner}),
                      Catch::Contains("'x' is float64") && Catch::Contains("'kk' is int64"));
  REQUIRE_THROWS_WITH(hash_join(left, right, {{"kx"}, {"k"}, dx::join_kind::inner}), Catch::Contains("'kx'"));
  REQUIRE_THROWS_WITH(hash_join(left, right, {{"k"}, {"nope"}, dx::join_kind::inner}), Catch::Contains("'nope'"));
  REQUIRE_THROWS_AS(hash_join(left, right, {{"k"}, {}, dx::join_kind::inner}), dx::dataframe_error);
  // Suffixing into a name that already exists.
  const table l2{{"k", column(std::vector<std::int64_t>{1})},
                 {"v", column(std::vector<std::int64_t>{1})},
                 {"v_x", column(std::vector<std::int64_t>{1})}};
  const table r2{{"k", column(std::vector<std::int64_t>{1})}, {"v", column(std::vector<std::int64_t>{1})}};
  REQUIRE_THROWS_WITH(hash_join(l2, r2, {{"k"}, {"k"}, dx::join_kind::inner}), Catch::Contains("v_x"));
}

TEST_CASE("joining hash-shuffled buckets gives the rows of the unshuffled join", "[df][join][shuffle]") {
  const table left = with_id(random_table(600, 51), "lid");
  const table right = with_id(random_table(400, 52), "rid");
  for (const std::vector<std::string>& on : {std::vector<std::string>{"i"}, {"f"}, {"s", "b"}, {"t", "f"}}) {
    for (dx::join_kind how : {dx::join_kind::inner, dx::join_kind::left}) {
      const join_spec spec{on, on, how};
      std::vector<ref_match> whole = matches_of(hash_join(left, right, spec));
      const std::vector<table> lb = hash_split(left, on, 5);
      const std::vector<table> rb = hash_split(right, on, 5);
      std::vector<ref_match> shuffled;
      for (std::size_t b = 0; b < 5; ++b) {
        const table part = hash_join(lb[b], rb[b], spec);
        REQUIRE(schema_of(part) == join_schema(schema_of(left), schema_of(right), spec));
        const std::vector<ref_match> m = matches_of(part);
        shuffled.insert(shuffled.end(), m.begin(), m.end());
      }
      std::sort(whole.begin(), whole.end());
      std::sort(shuffled.begin(), shuffled.end());
      REQUIRE(shuffled == whole);
    }
  }
}

TEST_CASE("sort pipeline on 10 million rows, one and two threads", "[.perf]") {
  constexpr std::size_t rows = 10'000'000, partitions = 8;
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<std::int64_t> keys(rows);
  std::vector<double> values(rows);
  for (std::size_t r = 0; r < rows; ++r) {
    keys[r] = static_cast<std::int64_t>(rng() % 1'000'000);
    values[r] = uniform(rng);
  }
  const table t{{"k", column(std::move(keys))}, {"v", column(std::move(values))}};
  std::vector<table> parts;
  for (std::size_t p = 0; p < partitions; ++p) {
    parts.push_back(t.slice(p * rows / partitions, (p + 1) * rows / partitions - p * rows / partitions));
  }
  const sort_spec spec{{"v"}, {true}};
  using clock = std::chrono::steady_clock;
  // CPU time as well: on a busy machine the wall clock also counts waiting for a core.
  auto cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
  };
  auto ms = [](clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  // Runs fn(0..count-1) on `threads` threads, as the executor would run one task per partition.
  auto parallel = [](std::size_t threads, std::size_t count, const auto& fn) {
    std::atomic<std::size_t> next{0};
    auto work = [&] {
      for (std::size_t i; (i = next++) < count;) fn(i);
    };
    std::vector<std::thread> pool;
    for (std::size_t k = 1; k < threads; ++k) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
  };
  // Three runs each: the first also pays for touching memory the process never used before.
  for (std::size_t threads : {1, 2}) {
    for (int run = 1; run <= 3; ++run) {
      const double cpu0 = cpu_ms();
      const auto t0 = clock::now();
      std::vector<table> samples(partitions);
      parallel(threads, partitions, [&](std::size_t p) { samples[p] = sample_sort_keys(parts[p], spec, 1000); });
      const table bounds = sort_boundaries(samples, spec, partitions);
      const auto t1 = clock::now();
      std::vector<std::vector<table>> split(partitions);
      parallel(threads, partitions, [&](std::size_t p) { split[p] = range_split(parts[p], spec, bounds); });
      std::vector<std::vector<table>> by_range(bounds.num_rows() + 1);
      for (const auto& pieces : split) {
        for (std::size_t j = 0; j < pieces.size(); ++j) by_range[j].push_back(pieces[j]);
      }
      const auto t2 = clock::now();
      std::vector<table> sorted(by_range.size());
      parallel(threads, by_range.size(), [&](std::size_t j) { sorted[j] = sort_table(by_range[j], spec); });
      const auto t3 = clock::now();
      const table result = concat(sorted);
      const auto t4 = clock::now();
      const double cpu = cpu_ms() - cpu0;
      std::cout << threads << " thread(s), run " << run << ": sort 10M rows by float64, " << partitions
                << " partitions: sample+boundaries " << ms(t0, t1) << " ms, range_split " << ms(t1, t2)
                << " ms, sort_table " << ms(t2, t3) << " ms, concat " << ms(t3, t4) << " ms, total " << ms(t0, t4)
                << " ms (" << cpu << " ms of CPU)\n";
      REQUIRE(result.num_rows() == rows);
      const double* v = result["v"].float64_data();
      REQUIRE(std::is_sorted(v, v + rows));
    }
  }
}
