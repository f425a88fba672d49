// dx::dataframe end to end: each operation against answers computed here with plain loops.
#include <dx/dataframe.hpp>

#include <catch2/catch.hpp>
#include <dx/dx.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>

namespace {

namespace fs = std::filesystem;

std::atomic<int> partitions_mapped{0};

dx::table add_one_to_x(dx::table t) {
  partitions_mapped.fetch_add(1);
  std::vector<std::optional<std::int64_t>> x;
  for (std::size_t i = 0; i < t.num_rows(); ++i) {
    const dx::column& c = t["x"];
    x.push_back(c.is_null(i) ? std::nullopt : std::optional<std::int64_t>(c.int64_at(i) + 1));
  }
  return dx::table{{"x", dx::column(x)}, {"partition_rows", std::vector<std::int64_t>(t.num_rows(), t.num_rows())}};
}
DX_REMOTE(add_one_to_x);

dx::table not_registered(dx::table t) { return t; }

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("dx-df-" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const dx::dataframe_error& e) {
    return e.what();
  }
  return "(no dx::dataframe_error)";
}

// A table of n rows: id 0..n-1, key id % 7 (null every 11th), value id * 0.5 (null every 13th),
// name "n<id%5>" with some unicode.
dx::table sample_table(std::size_t n) {
  std::vector<std::int64_t> id;
  std::vector<std::optional<std::int64_t>> key;
  std::vector<std::optional<double>> value;
  std::vector<std::optional<std::string>> name;
  const char* names[] = {"Zürich", "東京", "Oslo", "Lima", "🙂 smile"};
  for (std::size_t i = 0; i < n; ++i) {
    id.push_back(static_cast<std::int64_t>(i));
    key.push_back(i % 11 == 3 ? std::nullopt : std::optional<std::int64_t>(static_cast<std::int64_t>(i % 7)));
    value.push_back(i % 13 == 5 ? std::nullopt : std::optional<double>(static_cast<double>(i) * 0.5));
    name.push_back(i % 17 == 2 ? std::nullopt : std::optional<std::string>(names[i % 5]));
  }
  return dx::table{{"id", id}, {"key", dx::column(key)}, {"value", dx::column(value)}, {"name", dx::column(name)}};
}

}  // namespace

TEST_CASE("filter, with_column and select compute what a row loop computes", "[dataframe]") {
  dx::cluster cl;
  const dx::table t = sample_table(1000);
  for (std::size_t parts : {1, 3, 8}) {
    auto df = dx::dataframe::from_table(cl, t, parts);
    auto out = df.filter(df["value"] > 100.0 && !df["name"].is_null())
                   .with_column("twice", df["id"] * 2 + df["key"])
                   .select({"id", "twice", "name"})
                   .compute();
    std::vector<std::int64_t> ids;
    std::vector<std::optional<std::int64_t>> twice;
    for (std::size_t i = 0; i < 1000; ++i) {
      const bool value_ok = !t["value"].is_null(i) && t["value"].float64_at(i) > 100.0;
      if (!value_ok || t["name"].is_null(i)) continue;
      ids.push_back(static_cast<std::int64_t>(i));
      twice.push_back(t["key"].is_null(i) ? std::nullopt : std::optional<std::int64_t>(2 * i + t["key"].int64_at(i)));
    }
    REQUIRE(out.column_names() == std::vector<std::string>{"id", "twice", "name"});
    REQUIRE(out["id"] == dx::column(ids));
    REQUIRE(out["twice"] == dx::column(twice));
  }
}

TEST_CASE("expressions follow the type and null rules", "[dataframe][expr]") {
  dx::cluster cl;
  auto df = dx::dataframe::from_columns(
      cl,
      {{"a", std::vector<std::optional<std::int64_t>>{7, -7, std::nullopt, 0}},
       {"b", std::vector<std::optional<double>>{2.0, 0.5, 1.0, std::nullopt}},
       {"p", std::vector<std::optional<bool>>{true, false, std::nullopt, std::nullopt}},
       {"s", std::vector<std::optional<std::string>>{"apple", "apricot", std::nullopt, "banana"}},
       {"t", std::vector<dx::timestamp>{*dx::parse_timestamp("2026-01-01"), *dx::parse_timestamp("2026-06-01"),
                                        *dx::parse_timestamp("2025-12-31T23:59:59"),
                                        *dx::parse_timestamp("2026-01-01T00:00:00.5Z")}}},
      2);
  const dx::table r = df.with_column("sum", df["a"] + df["b"])
                          .with_column("div", df["a"] / 2)
                          .with_column("mod", df["a"] % 3)
                          .with_column("neg", -df["a"])
                          .with_column("and", df["p"] && (df["a"] > 0))
                          .with_column("or", df["p"] || (df["a"] < 0))
                          .with_column("not", !df["p"])
                          .with_column("isnull", df["a"].is_null())
                          .with_column("prefix", df["s"].starts_with("ap"))
                          .with_column("eq", df["s"] == "banana")
                          .with_column("after", df["t"] > "2026-01-01")
                          .with_column("text", df["a"].cast(dx::column_type::string))
                          .compute();
  using O = std::optional<double>;
  REQUIRE(r["sum"] == dx::column(std::vector<O>{9.0, -6.5, std::nullopt, std::nullopt}));
  REQUIRE(r["div"] == dx::column(std::vector<O>{3.5, -3.5, std::nullopt, 0.0}));
  REQUIRE(r["mod"] == dx::column(std::vector<std::optional<std::int64_t>>{1, 2, std::nullopt, 0}));  // Python's sign
  REQUIRE(r["neg"] == dx::column(std::vector<std::optional<std::int64_t>>{-7, 7, std::nullopt, 0}));
  using B = std::optional<bool>;
  // SQL logic: false && null = false, true || null = true.
  REQUIRE(r["and"] == dx::column(std::vector<B>{true, false, std::nullopt, false}));
  REQUIRE(r["or"] == dx::column(std::vector<B>{true, true, std::nullopt, std::nullopt}));
  REQUIRE(r["not"] == dx::column(std::vector<B>{false, true, std::nullopt, std::nullopt}));
  REQUIRE(r["isnull"] == dx::column(std::vector<bool>{false, false, true, false}));
  REQUIRE(r["prefix"] == dx::column(std::vector<B>{true, true, std::nullopt, false}));
  REQUIRE(r["eq"] == dx::column(std::vector<B>{false, false, std::nullopt, true}));
  REQUIRE(r["after"] == dx::column(std::vector<bool>{false, true, false, true}));
  REQUIRE(r["text"] == dx::column(std::vector<std::optional<std::string>>{"7", "-7", std::nullopt, "0"}));
}

TEST_CASE("mistakes are dataframe errors that name the problem", "[dataframe][errors]") {
  dx::cluster cl;
  auto df = dx::dataframe::from_table(cl, sample_table(10), 2);
  CHECK(error_of([&] { (void)df["vlaue"]; }).find("closest: 'value'") != std::string::npos);
  CHECK(error_of([&] { (void)df.filter(dx::col("nmae") == "x"); }).find("unknown column 'nmae'; closest: 'name'") !=
        std::string::npos);
  CHECK(error_of([&] { (void)df.with_column("x", df["name"] + 1); }).find("cannot add string and int64") !=
        std::string::npos);
  CHECK(error_of([&] { (void)df.filter(df["id"] + 1); }).find("not bool") != std::string::npos);
  CHECK(error_of([&] { (void)df.filter(df["name"] > 3); }).find("cannot compare string with int64") !=
        std::string::npos);
  CHECK(error_of([&] { (void)df.map_partitions(not_registered); }).find("DX_REMOTE") != std::string::npos);
  CHECK(error_of([&] { (void)df.groupby({"kye"}); }).find("closest: 'key'") != std::string::npos);
  CHECK(error_of([&] { (void)df.sort_values({"nope"}); }).find("unknown column 'nope'") != std::string::npos);
  CHECK(error_of([&] { (void)df.groupby({"key"}).agg({{"name", dx::agg::mean}}); }).find("name") != std::string::npos);
  CHECK(error_of([&] { (void)dx::dataframe::read_csv(cl, "/nonexistent-dx-dir/*.csv"); }).find("no file matches") !=
        std::string::npos);
  CHECK(error_of([&] { (void)df.select({"id", "id"}); }).find("twice") != std::string::npos);
}

TEST_CASE("nothing runs before a sink, and head runs only the partitions it needs", "[dataframe][lazy]") {
  dx::cluster cl;
  std::vector<std::int64_t> x(800);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<std::int64_t>(i);
  auto df = dx::dataframe::from_columns(cl, {{"x", x}}, 8).map_partitions(add_one_to_x);
  partitions_mapped = 0;  // learning the output schema called it once on an empty partition
  auto filtered = df.filter(df["x"] > 10);
  CHECK(partitions_mapped.load() == 0);
  const dx::table h = filtered.head(5);
  CHECK(partitions_mapped.load() == 1);
  REQUIRE(h.num_rows() == 5);
  CHECK(h["x"].int64_at(0) == 11);
  CHECK(h["partition_rows"].int64_at(0) == 100);
  partitions_mapped = 0;
  CHECK(filtered.count_rows() == 790);
  CHECK(partitions_mapped.load() == 8);
}

TEST_CASE("groupby aggregates like a map of groups, with nulls and empty partitions", "[dataframe][groupby]") {
  dx::cluster cl;
  const dx::table t = sample_table(500);
  // Partitions emptied by a filter: ids 100..299 are removed, so some partitions have no rows.
  auto df = dx::dataframe::from_table(cl, t, 10);
  auto kept = df.filter(df["id"] < 100 || df["id"] >= 300);
  const dx::table g = kept.groupby({"key"})
                          .agg({{"value", dx::agg::sum},
                                {"value", dx::agg::count},
                                {"value", dx::agg::mean},
                                {"value", dx::agg::max},
                                {"name", dx::agg::nunique},
                                {"name", dx::agg::first}})
                          .compute();
  struct acc {
    double sum = 0;
    std::int64_t count = 0;
    std::optional<double> max;
    std::set<std::string> names;
    std::optional<std::string> first;
  };
  std::map<std::int64_t, acc> want;
  for (std::size_t i = 0; i < 500; ++i) {
    if (i >= 100 && i < 300) continue;
    if (t["key"].is_null(i)) continue;
    acc& a = want[t["key"].int64_at(i)];
    if (!t["value"].is_null(i)) {
      const double v = t["value"].float64_at(i);
      a.sum += v;
      ++a.count;
      a.max = a.max ? std::max(*a.max, v) : v;
    }
    if (!t["name"].is_null(i)) {
      a.names.insert(std::string(t["name"].string_at(i)));
      if (!a.first) a.first = std::string(t["name"].string_at(i));
    }
  }
  REQUIRE(g.num_rows() == want.size());
  std::size_t row = 0;
  for (const auto& [key, a] : want) {
    CHECK(g["key"].int64_at(row) == key);
    CHECK(g["value_sum"].float64_at(row) == Approx(a.sum));
    CHECK(g["value_count"].int64_at(row) == a.count);
    CHECK(g["value_mean"].float64_at(row) == Approx(a.sum / static_cast<double>(a.count)));
    CHECK(g["value_max"].float64_at(row) == *a.max);
    CHECK(g["name_nunique"].int64_at(row) == static_cast<std::int64_t>(a.names.size()));
    CHECK(g["name_first"].string_at(row) == *a.first);
    ++row;
  }
  // The same with a hash shuffle of the partial aggregates.
  const dx::table shuffled =
      kept.groupby({"key"}).split_out(3).agg({{"value", dx::agg::sum}}).sort_values({"key"}).compute();
  REQUIRE(shuffled.num_rows() == want.size());
  row = 0;
  for (const auto& [key, a] : want) {
    CHECK(shuffled["key"].int64_at(row) == key);
    CHECK(shuffled["value_sum"].float64_at(row) == Approx(a.sum));
    ++row;
  }
}

TEST_CASE("a whole-frame agg gives one row", "[dataframe][groupby]") {
  dx::cluster cl;
  auto df = dx::dataframe::from_table(cl, sample_table(300), 4);
  const dx::table r = df.filter(df["value"] > 50.0).agg({{"value", dx::agg::mean}, {"id", dx::agg::min}}).compute();
  double sum = 0;
  std::int64_t n = 0, min_id = -1;
  const dx::table t = sample_table(300);
  for (std::size_t i = 0; i < 300; ++i) {
    if (t["value"].is_null(i) || t["value"].float64_at(i) <= 50.0) continue;
    sum += t["value"].float64_at(i);
    ++n;
    if (min_id < 0) min_id = static_cast<std::int64_t>(i);
  }
  REQUIRE(r.num_rows() == 1);
  CHECK(r["value_mean"].float64_at(0) == Approx(sum / static_cast<double>(n)));
  CHECK(r["id_min"].int64_at(0) == min_id);
}

TEST_CASE("sort_values orders by several columns, nulls last, stable", "[dataframe][sort]") {
  dx::cluster cl;
  const dx::table t = sample_table(700);
  auto df = dx::dataframe::from_table(cl, t, 5);
  const dx::table s = df.sort_values({"key", "value"}, {true, false}).compute();
  std::vector<std::size_t> order(700);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto cmp_key = [&](std::size_t a, std::size_t b) {
    const bool na = t["key"].is_null(a), nb = t["key"].is_null(b);
    if (na != nb) return nb;
    if (!na && t["key"].int64_at(a) != t["key"].int64_at(b)) return t["key"].int64_at(a) < t["key"].int64_at(b);
    const bool va = t["value"].is_null(a), vb = t["value"].is_null(b);
    if (va != vb) return vb;
    if (va) return false;
    return t["value"].float64_at(a) > t["value"].float64_at(b);
  };
  std::stable_sort(order.begin(), order.end(), cmp_key);
  REQUIRE(s.num_rows() == 700);
  for (std::size_t i = 0; i < order.size(); ++i) REQUIRE(s["id"].int64_at(i) == static_cast<std::int64_t>(order[i]));
}

TEST_CASE("sort_values by one fixed-width column is one task over all partitions, cut into slices",
          "[dataframe][sort]") {
  dx::cluster cl{dx::options{}.threads(2)};
  const std::size_t rows = 90000;
  std::mt19937_64 rng(4);
  std::vector<std::int64_t> ids(rows);
  std::vector<std::optional<double>> values(rows);
  std::vector<std::optional<std::string>> names(rows);
  for (std::size_t i = 0; i < rows; ++i) {
    ids[i] = static_cast<std::int64_t>(i);
    if (rng() % 20 != 0) values[i] = static_cast<double>(rng() % 500) / 4.0 - 30.0;  // ties and negatives
    if (rng() % 7 != 0) names[i] = "n" + std::to_string(rng() % 100);
  }
  const dx::table t{{"id", dx::column(ids)}, {"value", dx::column(values)}, {"name", dx::column(names)}};
  for (std::size_t partitions : {1, 3, 8, 11}) {
    auto df = dx::dataframe::from_table(cl, t, partitions);
    for (bool ascending : {true, false}) {
      INFO(partitions << " partitions, " << (ascending ? "ascending" : "descending"));
      std::vector<std::int64_t> order(ids);
      std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
        const auto& x = values[static_cast<std::size_t>(a)];
        const auto& y = values[static_cast<std::size_t>(b)];
        if (!x || !y) return x.has_value() && !y.has_value();
        return ascending ? *x < *y : *x > *y;
      });
      const dx::dataframe sorted = df.sort_values({"value"}, ascending);
      const dx::table got = sorted.compute();
      std::vector<std::optional<double>> want_values;
      std::vector<std::optional<std::string>> want_names;
      for (std::int64_t r : order) {
        want_values.push_back(values[static_cast<std::size_t>(r)]);
        want_names.push_back(names[static_cast<std::size_t>(r)]);
      }
      REQUIRE(got == dx::table{{"id", dx::column(order)},
                               {"value", dx::column(want_values)},
                               {"name", dx::column(want_names)}});
      CHECK(sorted.num_partitions() == partitions);
      CHECK(sorted.head(7) == got.head(7));
      CHECK(sorted.count_rows() == rows);
      const std::string plan = sorted.explain();
      if (partitions <= 8) {
        CHECK(plan.find("sort_boundaries") == std::string::npos);
        CHECK(plan.find(": sort <-") != std::string::npos);
        CHECK(plan.find("| split " + std::to_string(partitions)) != std::string::npos);
      } else {
        CHECK(plan.find("sort_boundaries") != std::string::npos);  // more inputs than one task takes
      }
    }
  }
  // Sorting by a string column, or by two columns, keeps the sample sort over the partitions.
  auto df = dx::dataframe::from_table(cl, t, 4);
  CHECK(df.sort_values({"name"}).explain().find("sort_boundaries") != std::string::npos);
  CHECK(df.sort_values({"value", "id"}).explain().find("sort_boundaries") != std::string::npos);
}

TEST_CASE("nlargest, nsmallest and head of a sort keep each partition's best rows and merge them",
          "[dataframe][sort][top]") {
  dx::cluster cl{dx::options{}.threads(2)};
  const dx::table t = sample_table(5000);
  for (std::size_t partitions : {1, 4, 13}) {
    auto df = dx::dataframe::from_table(cl, t, partitions);
    for (std::size_t n : {0, 1, 5, 100, 4999, 5000, 6000}) {
      INFO(partitions << " partitions, n " << n);
      const dx::table by_value_desc = df.sort_values({"value"}, false).compute();
      const dx::table by_key_value = df.sort_values({"key", "value"}, {true, false}).compute();
      CHECK(df.nlargest(n, {"value"}).compute() == by_value_desc.head(n));
      CHECK(df.nsmallest(n, {"value"}).compute() == df.sort_values({"value"}).compute().head(n));
      CHECK(df.sort_values({"value"}, false).head(n) == by_value_desc.head(n));
      CHECK(df.sort_values({"key", "value"}, {true, false}).head(n) == by_key_value.head(n));
      CHECK(df.nsmallest(n, {"name"}).compute() == df.sort_values({"name"}).compute().head(n));
    }
  }
  auto df = dx::dataframe::from_table(cl, t, 4);
  const dx::dataframe top = df.filter(df["value"] > 10.0).nlargest(5, {"value"});
  CHECK(top.num_partitions() == 1);
  const std::string plan = top.explain();
  CHECK(plan.find("top 5 by value desc") != std::string::npos);
  CHECK(plan.find("sort_boundaries") == std::string::npos);
  CHECK(df.sort_values({"value"}).explain().find("top") == std::string::npos);  // no head: a whole sort
  CHECK(error_of([&] { (void)df.nlargest(3, {"nope"}); }).find("nope") != std::string::npos);
}

TEST_CASE("semi and anti joins keep the left rows with or without a match, broadcast or shuffled",
          "[dataframe][join]") {
  dx::cluster cl;
  const dx::table left = sample_table(300);
  std::vector<std::optional<std::int64_t>> rkey{0, 1, 1, 3, std::nullopt, 9};
  const dx::table right{{"key", dx::column(rkey)}, {"other", std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}}};
  for (auto strategy : {dx::join_strategy::broadcast, dx::join_strategy::shuffle}) {
    auto l = dx::dataframe::from_table(cl, left, 4);
    auto r = dx::dataframe::from_table(cl, right, 2);
    const dx::dataframe semi = l.join(r, {"key"}, dx::join_kind::semi, strategy);
    const dx::dataframe anti = l.join(r, {"key"}, dx::join_kind::anti, strategy);
    CHECK(semi.column_names() == left.column_names());
    const dx::table s = semi.sort_values({"id"}).compute();
    const dx::table a = anti.sort_values({"id"}).compute();
    std::vector<std::int64_t> want_semi, want_anti;
    for (std::size_t i = 0; i < left.num_rows(); ++i) {
      const dx::column& k = left["key"];
      const bool match = !k.is_null(i) && (k.int64_at(i) == 0 || k.int64_at(i) == 1 || k.int64_at(i) == 3);
      (match ? want_semi : want_anti).push_back(static_cast<std::int64_t>(i));
    }
    REQUIRE(s.num_rows() == want_semi.size());
    REQUIRE(a.num_rows() == want_anti.size());
    for (std::size_t i = 0; i < want_semi.size(); ++i) CHECK(s["id"].int64_at(i) == want_semi[i]);
    for (std::size_t i = 0; i < want_anti.size(); ++i) CHECK(a["id"].int64_at(i) == want_anti[i]);
    // Only the right side's keys are read.
    const std::string plan = semi.explain();
    INFO(plan);
    CHECK((plan.find("rows, columns key\n") != std::string::npos ||
           plan.find("rows, columns key |") != std::string::npos));
    CHECK(plan.find("columns key,other") == std::string::npos);
  }
}

TEST_CASE("filters after a join run before it on the side they read, only where that keeps the result",
          "[dataframe][join][optimizer]") {
  dx::cluster cl;
  const dx::table left = sample_table(400);
  std::vector<std::optional<std::int64_t>> rkey{0, 1, 1, 3, std::nullopt, 5, 6};
  std::vector<std::optional<double>> weight{1.5, std::nullopt, 2.5, 3.5, 4.5, 0.5, 9.0};
  const dx::table right{{"key", dx::column(rkey)},
                        {"weight", dx::column(weight)},
                        {"name", std::vector<std::string>{"a", "b", "c", "d", "e", "f", "g"}}};
  // Whether the join task itself still filters (the filter was not moved below it).
  auto join_filters = [](const std::string& plan) {
    std::istringstream lines(plan);
    for (std::string line; std::getline(lines, line);) {
      if (line.find(": join") != std::string::npos) return line.find("filter") != std::string::npos;
    }
    return false;
  };
  for (auto strategy : {dx::join_strategy::broadcast, dx::join_strategy::shuffle}) {
    for (auto how : {dx::join_kind::inner, dx::join_kind::left, dx::join_kind::semi, dx::join_kind::anti}) {
      auto l = dx::dataframe::from_table(cl, left, 3);
      auto r = dx::dataframe::from_table(cl, right, 2);
      const dx::dataframe joined = l.join(r, {"key"}, how, strategy);
      const dx::table whole = joined.compute();
      auto reference = [&](const dx::expr& condition) {
        auto plain = dx::dataframe::from_table(cl, whole, 1);
        return plain.filter(condition).sort_values({"id"}).compute();
      };
      const bool right_out = how == dx::join_kind::inner || how == dx::join_kind::left;
      INFO("kind " << static_cast<int>(how));
      // Left columns: moved below every kind of join.
      const dx::expr on_left = dx::col("value") > 50.0 && dx::col("id") % 3 != 0;
      const dx::dataframe f1 = joined.filter(on_left);
      CHECK(f1.sort_values({"id"}).compute() == reference(on_left));
      CHECK_FALSE(join_filters(f1.explain()));
      if (!right_out) continue;
      // Right columns: below an inner join only.
      const dx::expr on_right = dx::col("weight") > 2.0;
      const dx::dataframe f2 = joined.filter(on_right);
      CHECK(f2.sort_values({"id", "weight"}).compute() ==
            dx::dataframe::from_table(cl, whole, 1).filter(on_right).sort_values({"id", "weight"}).compute());
      CHECK(join_filters(f2.explain()) == (how == dx::join_kind::left));
      // Both sides in one condition: stays above the join.
      const dx::expr both = dx::col("weight") * 100.0 < dx::col("value");
      const dx::dataframe f3 = joined.filter(both).with_column("twice", dx::col("value") * 2);
      CHECK(f3.sort_values({"id", "weight"}).compute() == dx::dataframe::from_table(cl, whole, 1)
                                                              .filter(both)
                                                              .with_column("twice", dx::col("value") * 2)
                                                              .sort_values({"id", "weight"})
                                                              .compute());
      CHECK(join_filters(f3.explain()));
    }
  }
}

TEST_CASE("join matches rows like a nested loop, broadcast or shuffled", "[dataframe][join]") {
  dx::cluster cl;
  const dx::table left = sample_table(200);
  std::vector<std::optional<std::int64_t>> rkey{0, 1, 1, 3, std::nullopt, 9};
  std::vector<std::string> label{"zero", "one", "uno", "three", "none", "nine"};
  const dx::table right{{"key", dx::column(rkey)}, {"label", label}};
  for (auto strategy : {dx::join_strategy::broadcast, dx::join_strategy::shuffle}) {
    for (auto how : {dx::join_kind::inner, dx::join_kind::left}) {
      auto l = dx::dataframe::from_table(cl, left, 4);
      auto r = dx::dataframe::from_table(cl, right, 2);
      const dx::table j = l.join(r, {"key"}, how, strategy).sort_values({"id", "label"}).compute();
      std::vector<std::pair<std::int64_t, std::optional<std::string>>> want;
      for (std::size_t i = 0; i < 200; ++i) {
        bool matched = false;
        for (std::size_t k = 0; k < rkey.size(); ++k) {
          if (!left["key"].is_null(i) && rkey[k] && *rkey[k] == left["key"].int64_at(i)) {
            want.emplace_back(static_cast<std::int64_t>(i), label[k]);
            matched = true;
          }
        }
        if (!matched && how == dx::join_kind::left) want.emplace_back(static_cast<std::int64_t>(i), std::nullopt);
      }
      std::sort(want.begin(), want.end(), [](const auto& a, const auto& b) {
        if (a.first != b.first) return a.first < b.first;
        if (a.second.has_value() != b.second.has_value()) return a.second.has_value();
        return a.second < b.second;
      });
      REQUIRE(j.num_rows() == want.size());
      REQUIRE(j.column_names() == std::vector<std::string>{"id", "key", "value", "name", "label"});
      for (std::size_t i = 0; i < want.size(); ++i) {
        CHECK(j["id"].int64_at(i) == want[i].first);
        CHECK(j["label"].is_null(i) == !want[i].second.has_value());
        if (want[i].second) CHECK(j["label"].string_at(i) == *want[i].second);
      }
    }
  }
}

TEST_CASE("drop_duplicates, value_counts, describe and repartition", "[dataframe]") {
  dx::cluster cl;
  const dx::table t = sample_table(400);
  auto df = dx::dataframe::from_table(cl, t, 6);

  const dx::table d = df.drop_duplicates({"key", "name"}).compute();
  std::set<std::pair<std::optional<std::int64_t>, std::optional<std::string>>> seen;
  std::vector<std::int64_t> first_ids;
  for (std::size_t i = 0; i < 400; ++i) {
    auto k = std::make_pair(t["key"].is_null(i) ? std::nullopt : std::optional<std::int64_t>(t["key"].int64_at(i)),
                            t["name"].is_null(i) ? std::nullopt : std::optional<std::string>(t["name"].string_at(i)));
    if (seen.insert(k).second) first_ids.push_back(static_cast<std::int64_t>(i));
  }
  CHECK(d["id"] == dx::column(first_ids));
  // Shuffled by key: the same rows, first of each key, in three partitions.
  auto spread = df.drop_duplicates({"key", "name"}, 3);
  CHECK(spread.num_partitions() == 3);
  CHECK(spread.explain().find("hash_split 3") != std::string::npos);
  CHECK(spread.sort_values({"id"}).compute() == d);
  CHECK_THROWS_WITH(df.drop_duplicates({}, 0), Catch::Contains("split_out"));
  // Every column: only exact duplicates go.
  CHECK(df.drop_duplicates({}, 4).count_rows() == 400);
  CHECK(df.select({"key"}).drop_duplicates({}, 4).sort_values({"key"}).compute() ==
        df.select({"key"}).drop_duplicates().sort_values({"key"}).compute());

  const dx::table vc = df.value_counts("name").compute();
  std::map<std::string, std::int64_t> counts;
  for (std::size_t i = 0; i < 400; ++i) {
    if (!t["name"].is_null(i)) ++counts[std::string(t["name"].string_at(i))];
  }
  REQUIRE(vc.num_rows() == counts.size());
  for (std::size_t i = 0; i < vc.num_rows(); ++i) {
    CHECK(vc["count"].int64_at(i) == counts.at(std::string(vc["name"].string_at(i))));
    if (i > 0) CHECK(vc["count"].int64_at(i - 1) >= vc["count"].int64_at(i));
  }

  const dx::table desc = df.describe().compute();
  REQUIRE(desc.column_names() == std::vector<std::string>{"statistic", "id", "key", "value"});
  const std::string described = df.describe().explain();
  INFO(described);
  CHECK(described.find("columns id,key,value") != std::string::npos);  // the strings are never gathered
  CHECK(desc["statistic"].string_at(0) == "count");
  CHECK(desc["id"].float64_at(0) == 400.0);
  CHECK(desc["id"].float64_at(1) == Approx(199.5));  // mean
  CHECK(desc["id"].float64_at(5) == Approx(199.5));  // median
  CHECK(desc["id"].float64_at(7) == 399.0);          // max

  auto re = df.repartition(3);
  CHECK(re.num_partitions() == 3);
  CHECK(re.compute() == t);
}

TEST_CASE("repartition balances rows in order without gathering them into one task", "[dataframe]") {
  dx::cluster cl;
  std::vector<std::int64_t> x(1000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<std::int64_t>(i);
  auto df = dx::dataframe::from_columns(cl, {{"x", x}}, 8);
  // Partitions of 125 rows; the filter leaves 125 + 5 + 0 x 5 + 100 rows.
  auto uneven = df.filter(df["x"] < 130 || df["x"] >= 900);
  auto sizes_of = [](const dx::table& t) {
    std::map<std::int64_t, std::int64_t> rows_by_size;  // partition size -> rows in such partitions
    for (std::size_t i = 0; i < t.num_rows(); ++i) ++rows_by_size[t["partition_rows"].int64_at(i)];
    return rows_by_size;
  };
  auto in_order = [](const dx::table& t, const std::vector<std::int64_t>& expected) {
    if (t.num_rows() != expected.size()) return false;
    for (std::size_t i = 0; i < t.num_rows(); ++i)
      if (t["x"].int64_at(i) != expected[i] + 1) return false;
    return true;
  };
  std::vector<std::int64_t> kept;
  for (auto v : x)
    if (v < 130 || v >= 900) kept.push_back(v);

  auto three = uneven.repartition(3);
  CHECK(three.num_partitions() == 3);
  const std::string plan = three.explain();
  INFO(plan);
  CHECK(plan.find("by position") != std::string::npos);
  CHECK(plan.find("concat <- t0.0 t1.0 t2.0 t3.0") == std::string::npos);  // no task gathers the data
  const dx::table t3 = three.map_partitions(add_one_to_x).compute();
  CHECK(in_order(t3, kept));
  // 230 rows: [0, 76), [76, 153), [153, 230).
  CHECK(sizes_of(t3) == std::map<std::int64_t, std::int64_t>{{76, 76}, {77, 154}});

  const dx::table t20 = uneven.repartition(20).map_partitions(add_one_to_x).compute();  // more than before
  CHECK(in_order(t20, kept));
  CHECK(sizes_of(t20) == std::map<std::int64_t, std::int64_t>{{11, 11 * 10}, {12, 12 * 10}});

  // One partition in: it is split where it is.
  const dx::table one = df.repartition(1).repartition(6).map_partitions(add_one_to_x).compute();
  CHECK(in_order(one, x));
  CHECK(sizes_of(one) == std::map<std::int64_t, std::int64_t>{{166, 166 * 2}, {167, 167 * 4}});

  // More partitions than a task reads inputs: the counts and the outputs go through trees.
  auto many = dx::dataframe::from_columns(cl, {{"x", x}}, 45);
  const dx::table t7 = many.filter(many["x"] % 3 != 0).repartition(7).map_partitions(add_one_to_x).compute();
  std::vector<std::int64_t> not_thirds;
  for (auto v : x)
    if (v % 3 != 0) not_thirds.push_back(v);
  CHECK(in_order(t7, not_thirds));
  CHECK(sizes_of(t7) == std::map<std::int64_t, std::int64_t>{{95, 95 * 6}, {96, 96}});
}

TEST_CASE("read_csv prunes unread columns and counts skipped rows", "[dataframe][csv]") {
  temp_dir dir;
  std::string text = "id,city,fare,note\n";
  for (int i = 0; i < 300; ++i) {
    text += std::to_string(i) + "," + (i % 3 ? "Oslo" : "\"Lima, Peru\"") + "," + std::to_string(i * 1.25) +
            ",\"multi\nline " + std::to_string(i) + "\"\n";
  }
  text += "301,Oslo,not-a-number,x\n";
  write_file(dir.file("a.csv"), text);
  write_file(dir.file("b.csv"), "id,city,fare,note\n1000,Bergen,250.5,\n");
  dx::cluster cl;
  dx::csv_options opts;
  opts.partition_bytes = 1024;
  opts.skip_bad_rows = true;
  opts.schema["fare"] = dx::column_type::float64;
  auto df = dx::dataframe::read_csv(cl, dir.file("*.csv"), opts);
  CHECK(df.num_partitions() > 3);
  auto q = df.filter(df["fare"] > 100.0).select({"id", "fare"});
  const std::string plan = q.explain();
  CHECK(plan.find("columns id,fare") != std::string::npos);
  CHECK(plan.find("note") == std::string::npos);
  const dx::table r = q.compute();
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 300; ++i) {
    if (i * 1.25 > 100.0) ids.push_back(i);
  }
  ids.push_back(1000);
  CHECK(r["id"] == dx::column(ids));
  if (!(r["id"] == dx::column(ids))) std::cout << r;
  CHECK(q.skipped_rows() == 1);

  opts.skip_bad_rows = false;
  auto strict = dx::dataframe::read_csv(cl, dir.file("a.csv"), opts);
  const std::string message = error_of([&] { (void)strict.compute(); });
  CHECK(message.find("a.csv:") != std::string::npos);
  CHECK(message.find("not-a-number") != std::string::npos);
}

TEST_CASE("to_csv writes one file or one per partition that read back the same", "[dataframe][csv]") {
  temp_dir dir;
  dx::cluster cl;
  const dx::table t = sample_table(250);
  auto df = dx::dataframe::from_table(cl, t, 4);
  df.to_csv(dir.file("all.csv"));
  df.to_csv(dir.file("part-*.csv"));
  CHECK(fs::exists(dir.file("part-0.csv")));
  CHECK(fs::exists(dir.file("part-3.csv")));
  CHECK(!fs::exists(dir.file("part-4.csv")));
  dx::csv_options opts;
  opts.schema["key"] = dx::column_type::int64;
  const dx::table one = dx::dataframe::read_csv(cl, dir.file("all.csv"), opts).compute();
  const dx::table many = dx::dataframe::read_csv(cl, dir.file("part-*.csv"), opts).compute();
  CHECK(one == t);
  CHECK(many == t);
}

TEST_CASE("a table prints as an aligned text table", "[dataframe][print]") {
  const dx::table t{{"city", std::vector<std::string>{"Oslo", "東京"}},
                    {"temp", std::vector<std::optional<double>>{3.5, std::nullopt}},
                    {"n", std::vector<std::int64_t>{12, 7}}};
  CHECK(t.to_string() ==
        "city  temp   n\n"
        "----  ----  --\n"
        "Oslo   3.5  12\n"
        "東京  null   7\n"
        "[2 rows x 3 columns]\n");
}

TEST_CASE("results do not depend on partitioning, down to one-row and empty partitions", "[dataframe]") {
  dx::cluster cl;
  const dx::table t = sample_table(45);
  auto run = [&](std::size_t parts) {
    auto df = dx::dataframe::from_table(cl, t, parts);
    // The filter leaves some partitions empty.
    auto some = df.filter(df["id"] % 4 != 1 && (df["id"] < 10 || df["id"] > 20));
    std::vector<dx::table> out;
    out.push_back(some.compute());
    out.push_back(
        some.groupby({"name"}).agg({{"value", dx::agg::sum}, {"key", dx::agg::std}, {"id", dx::agg::first}}).compute());
    out.push_back(some.groupby({"key"}).split_out(5).agg({{"value", dx::agg::min}}).sort_values({"key"}).compute());
    out.push_back(some.sort_values({"name", "id"}, {false, true}).compute());
    out.push_back(some.join(df.select({"id", "name"}), {"id"}, dx::join_kind::left, dx::join_strategy::shuffle)
                      .sort_values({"id"})
                      .compute());
    out.push_back(some.drop_duplicates({"name"}).compute());
    out.push_back(some.drop_duplicates({"name"}, 3).sort_values({"id"}).compute());
    out.push_back(some.repartition(4).compute());
    out.push_back(dx::table{{"rows", std::vector<std::int64_t>{static_cast<std::int64_t>(some.count_rows())}}});
    return out;
  };
  const std::vector<dx::table> one = run(1);
  CHECK(one[0].num_rows() > 10);
  for (std::size_t parts : {2, 7, 45}) {
    const std::vector<dx::table> many = run(parts);
    for (std::size_t i = 0; i < one.size(); ++i) {
      INFO("partitions " << parts << ", plan " << i << "\n" << one[i].to_string(50) << many[i].to_string(50));
      CHECK(many[i] == one[i]);
    }
  }
}

TEST_CASE("a large result is gathered intact", "[dataframe]") {
  dx::cluster cl;
  const std::size_t n = 1'200'000;  // over 16 MB: the columns are gathered in parallel
  std::vector<std::int64_t> a(n);
  std::vector<std::optional<double>> b(n);
  for (std::size_t i = 0; i < n; ++i) {
    a[i] = static_cast<std::int64_t>(i * 7 % n);
    if (i % 1000 != 0) b[i] = static_cast<double>(i) / 3;
  }
  const dx::table t{{"a", a}, {"b", dx::column(b)}};
  auto df = dx::dataframe::from_table(cl, t, 5);
  CHECK(df.with_column("a", df["a"]).compute() == t);
  const dx::table sorted = df.sort_values({"a"}).compute();
  REQUIRE(sorted.num_rows() == n);
  for (std::size_t i = 0; i < n; i += 9973) CHECK(sorted["a"].int64_at(i) == static_cast<std::int64_t>(i));
}

TEST_CASE("groupby shuffles by key when groups are many, and combines in a tree when few", "[dataframe][groupby]") {
  dx::cluster cl;
  const std::size_t n = 300'000;
  std::vector<std::int64_t> unique(n), few(n);
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    unique[i] = static_cast<std::int64_t>((i * 7919) % n);  // a permutation: every key once
    few[i] = static_cast<std::int64_t>(i % 10);
    v[i] = static_cast<double>(i % 100);
  }
  auto df = dx::dataframe::from_columns(cl, {{"u", unique}, {"f", few}, {"v", v}}, 4);
  auto many = df.groupby({"u"}).agg({{"v", dx::agg::sum}});
  auto small = df.groupby({"f"}).agg({{"v", dx::agg::sum}});
  CHECK(many.num_partitions() == 4);
  CHECK(many.explain().find("hash_split 4") != std::string::npos);
  CHECK(small.num_partitions() == 1);
  CHECK(small.explain().find("hash_split") == std::string::npos);
  const dx::table m = many.sort_values({"u"}).compute();
  REQUIRE(m.num_rows() == n);
  for (std::size_t i = 0; i < n; i += 997) CHECK(m["u"].int64_at(i) == static_cast<std::int64_t>(i));
  double total = 0;
  for (std::size_t i = 0; i < n; ++i) total += m["v_sum"].float64_at(i);
  CHECK(total == Approx(static_cast<double>(n / 100) * 4950.0));
  const dx::table s = small.compute();
  REQUIRE(s.num_rows() == 10);
  for (std::size_t k = 0; k < 10; ++k) CHECK(s["f"].int64_at(k) == static_cast<std::int64_t>(k));
}

TEST_CASE("a groupby over CSV files samples their start to choose a shuffle or a tree", "[dataframe][groupby][csv]") {
  dx::cluster cl;
  temp_dir dir;
  const std::size_t n = 400'000;
  std::string text = "id,unique,few,note\n";
  text.reserve(n * 40);
  for (std::size_t i = 0; i < n; ++i) {
    text += std::to_string(i) + ',' + std::to_string((i * 7919) % n) + ',' + std::to_string(i % 10) + ',';
    text += i % 3 == 0 ? "\"a, quoted\nnote\"\n" : "plain\n";  // quoted newlines where the sample is cut
  }
  REQUIRE(text.size() > (8u << 20));
  write_file(dir.file("rows.csv"), text);
  dx::csv_options options;
  options.partition_bytes = 2u << 20;
  auto df = dx::dataframe::read_csv(cl, dir.file("rows.csv"), options);
  REQUIRE(df.num_partitions() >= 4);

  auto many = df.groupby({"unique"}).agg({{"id", dx::agg::sum}});
  auto few = df.groupby({"few"}).agg({{"id", dx::agg::count}});
  // A filter before the groupby runs on the sample too: here it leaves one group.
  auto filtered = df.filter(df["unique"] < 2).groupby({"few"}).agg({{"id", dx::agg::count}});
  CHECK(many.num_partitions() == df.num_partitions());
  CHECK(many.explain().find("hash_split") != std::string::npos);
  CHECK(few.num_partitions() == 1);
  CHECK(few.explain().find("hash_split") == std::string::npos);
  CHECK(filtered.num_partitions() == 1);
  // Asked for, a shuffle happens whatever the sample says.
  CHECK(df.groupby({"few"}).split_out(3).agg({{"id", dx::agg::count}}).num_partitions() == 3);
  // Narrow rows: a small file by bytes still has enough rows to shuffle; fewer rows never do.
  for (const std::size_t rows : {150'000u, 600'000u}) {
    std::string narrow = "k\n";
    for (std::size_t i = 0; i < rows; ++i) narrow += std::to_string((i * 7919) % rows) + '\n';
    write_file(dir.file("narrow.csv"), narrow);
    dx::csv_options small_parts;
    small_parts.partition_bytes = 256u << 10;
    auto keys = dx::dataframe::read_csv(cl, dir.file("narrow.csv"), small_parts);
    INFO(rows << " rows, " << narrow.size() << " bytes");
    REQUIRE(keys.num_partitions() >= 4);
    CHECK(keys.groupby({"k"}).count().num_partitions() == (rows > 200'000 ? keys.num_partitions() : 1));
    CHECK(keys.groupby({"k"}).count().count_rows() == rows);
  }

  const dx::table m = many.sort_values({"unique"}).compute();
  REQUIRE(m.num_rows() == n);
  std::vector<std::int64_t> id_of(n);
  for (std::size_t i = 0; i < n; ++i) id_of[(i * 7919) % n] = static_cast<std::int64_t>(i);
  for (std::size_t k = 0; k < n; k += 991) {
    CHECK(m["unique"].int64_at(k) == static_cast<std::int64_t>(k));
    CHECK(m["id_sum"].int64_at(k) == id_of[k]);
  }
  const dx::table f = few.compute();
  REQUIRE(f.num_rows() == 10);
  for (std::size_t k = 0; k < 10; ++k) CHECK(f["id_count"].int64_at(k) == static_cast<std::int64_t>(n / 10));
}

TEST_CASE("computed columns run exactly when something reads them, through renames and selects", "[dataframe][plan]") {
  dx::cluster cl;
  using I = std::vector<std::int64_t>;
  auto df = dx::dataframe::from_columns(cl, {{"x", I{1, 2, 3}}, {"a", I{10, 20, 30}}}, 2);
  // An overwritten column renamed, then filtered: the overwrite must run.
  auto q = df.with_column("a", dx::col("a") * 2).rename({{"a", "c"}}).filter(dx::col("c") > 30);
  CHECK(q.select({"x"}).compute() == dx::table{{"x", I{2, 3}}});
  CHECK(q.count_rows() == 2);
  CHECK(q.compute() == dx::table{{"x", I{2, 3}}, {"c", I{40, 60}}});
  // A new column renamed, then filtered.
  CHECK(df.with_column("b", dx::col("a") * 2).rename({{"b", "c"}}).filter(dx::col("c") > 30).select({"x"}).compute() ==
        dx::table{{"x", I{2, 3}}});
  // A column only an unused column reads is not computed either.
  auto unused = df.with_column("b", dx::col("a") + 1).with_column("c", dx::col("b") * 2).select({"x"});
  CHECK(unused.compute() == dx::table{{"x", I{1, 2, 3}}});
  CHECK(unused.explain().find("with_column") == std::string::npos);
  // A name reused by a rename after the computed column was dropped by a select.
  CHECK(df.with_column("b", dx::col("a") + 1).select({"x"}).rename({{"x", "b"}}).compute() ==
        dx::table{{"b", I{1, 2, 3}}});
  CHECK(df.with_column("b", dx::col("a") + 1)
            .rename({{"b", "c"}})
            .with_column("c", dx::col("x"))
            .select({"x", "c"})
            .compute() == dx::table{{"x", I{1, 2, 3}}, {"c", I{1, 2, 3}}});
  // Float remainders take the divisor's sign, like integer ones.
  const dx::table m = df.with_column("r", dx::col("x").cast(dx::column_type::float64) % -2.0).compute();
  CHECK(m["r"] == dx::column(std::vector<double>{-1.0, 0.0, -1.0}));
  CHECK(error_of([&] { (void)df.select({}); }).find("no columns") != std::string::npos);
}

TEST_CASE("to_csv with one file per partition computes the plan once", "[dataframe][csv]") {
  temp_dir dir;
  dx::cluster cl;
  std::vector<std::int64_t> x{5, 3, 8, 1, 9, 2, 7, 4};
  auto df = dx::dataframe::from_columns(cl, {{"x", x}}, 4).map_partitions(add_one_to_x).sort_values({"x"});
  partitions_mapped = 0;
  df.to_csv(dir.file("s-*.csv"));
  CHECK(partitions_mapped.load() == 4);
  dx::csv_options bad;
  bad.delimiter = '"';
  CHECK(error_of([&] { (void)dx::dataframe::read_csv(cl, dir.file("s-*.csv"), bad); }).find("must differ") !=
        std::string::npos);
}

TEST_CASE("row-wise steps feeding an aggregation in large partitions give the loop's answers", "[dataframe][groupby]") {
  // 400,000 rows in 2 partitions: the filter and the computed column run block by block.
  dx::cluster cl;
  const std::size_t n = 400'000;
  std::vector<std::int64_t> k(n);
  std::vector<std::optional<double>> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    k[i] = static_cast<std::int64_t>((i * 31) % 97);
    if (i % 17 != 0) v[i] = static_cast<double>(i % 1000) / 8.0;
  }
  auto df = dx::dataframe::from_columns(cl, {{"k", k}, {"v", dx::column(v)}}, 2);
  auto q = df.filter(df["v"] > 20.0 || df["k"] == 3).with_column("w", df["v"] * 2);
  CHECK(q.explain().find("filter") != std::string::npos);
  const dx::table g = q.groupby({"k"})
                          .agg({{"w", dx::agg::sum},
                                {"w", dx::agg::count},
                                {"w", dx::agg::first},
                                {"w", dx::agg::nunique},
                                {"v", dx::agg::std}})
                          .compute();
  const dx::table all = q.agg({{"w", dx::agg::mean}, {"k", dx::agg::count}}).compute();
  struct acc {
    double sum = 0, sq = 0;
    std::int64_t count = 0;
    std::optional<double> first;
    std::set<double> distinct;
  };
  std::map<std::int64_t, acc> want;
  double total = 0;
  std::int64_t rows = 0, values = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const bool keep = (v[i] && *v[i] > 20.0) || k[i] == 3;
    if (!keep) continue;
    ++rows;
    acc& a = want[k[i]];
    if (!v[i]) continue;
    const double w = *v[i] * 2;
    a.sum += w;
    a.sq += *v[i] * *v[i];
    ++a.count;
    if (!a.first) a.first = w;
    a.distinct.insert(w);
    total += w;
    ++values;
  }
  REQUIRE(g.num_rows() == want.size());
  std::size_t row = 0;
  for (const auto& [key, a] : want) {
    CHECK(g["k"].int64_at(row) == key);
    CHECK(g["w_sum"].float64_at(row) == Approx(a.sum));
    CHECK(g["w_count"].int64_at(row) == a.count);
    CHECK(g["w_first"].float64_at(row) == *a.first);
    CHECK(g["w_nunique"].int64_at(row) == static_cast<std::int64_t>(a.distinct.size()));
    const double mean = a.sum / 2 / static_cast<double>(a.count);
    const double var = (a.sq - static_cast<double>(a.count) * mean * mean) / static_cast<double>(a.count - 1);
    CHECK(g["v_std"].float64_at(row) == Approx(std::sqrt(var)).epsilon(1e-9));
    ++row;
  }
  CHECK(all["w_mean"].float64_at(0) == Approx(total / static_cast<double>(values)));
  CHECK(all["k_count"].int64_at(0) == rows);
}
