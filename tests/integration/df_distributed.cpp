// dx::dataframe on worker processes: the same plans give the same tables as on local threads.
#include <catch2/catch.hpp>
#include <dx/dataframe.hpp>
#include <dx/dx.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <string>

namespace {

namespace fs = std::filesystem;

dx::table square_x(dx::table t) {
  std::vector<std::optional<double>> sq;
  const dx::column& x = t["x"];
  for (std::size_t i = 0; i < t.num_rows(); ++i) {
    sq.push_back(x.is_null(i) ? std::nullopt : std::optional<double>(x.float64_at(i) * x.float64_at(i)));
  }
  return dx::table{{"k", t["k"]}, {"x", t["x"]}, {"x2", dx::column(sq)}};
}
DX_REMOTE(square_x);

dx::table random_table(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::optional<std::int64_t>> k;
  std::vector<std::optional<double>> x;
  std::vector<std::string> s;
  const char* words[] = {"Zürich", "東京", "Oslo", "", "émoji 🙂"};
  for (std::size_t i = 0; i < n; ++i) {
    k.push_back(rng() % 19 == 0 ? std::nullopt : std::optional<std::int64_t>(static_cast<std::int64_t>(rng() % 50)));
    x.push_back(rng() % 23 == 0 ? std::nullopt : std::optional<double>(static_cast<double>(rng() % 10000) / 7.0));
    s.push_back(words[rng() % 5]);
  }
  return dx::table{{"k", dx::column(k)}, {"x", dx::column(x)}, {"s", s}};
}

// Runs the same plans on a cluster and returns their results.
std::vector<dx::table> run_plans(dx::cluster& cl, const dx::table& t, const dx::table& small, const std::string& csv) {
  std::vector<dx::table> out;
  auto df = dx::dataframe::from_table(cl, t, 6);
  auto other = dx::dataframe::from_table(cl, small, 3);
  out.push_back(df.filter(df["x"] > 100.0 || df["s"] == "Oslo").with_column("y", df["x"] * 2 + 1).compute());
  out.push_back(df.groupby({"k"})
                    .agg({{"x", dx::agg::sum}, {"x", dx::agg::std}, {"s", dx::agg::nunique}, {"x", dx::agg::first}})
                    .compute());
  out.push_back(df.groupby({"k", "s"}).split_out(4).agg({{"x", dx::agg::mean}}).sort_values({"k", "s"}).compute());
  out.push_back(df.sort_values({"x", "k"}, {false, true}).compute());
  // One fixed-width key: one radix-sort task on local threads, the sample sort on workers.
  out.push_back(df.sort_values({"x"}).compute());
  out.push_back(df.sort_values({"k"}, false).compute());
  out.push_back(df.nlargest(9, {"x"}).compute());
  out.push_back(df.nsmallest(4, {"s", "x"}).compute());
  out.push_back(df.sort_values({"x"}, false).head(11));
  out.push_back(df.join(other, {"k"}, dx::join_kind::inner, dx::join_strategy::shuffle)
                    .sort_values({"k", "x", "label"})
                    .compute());
  out.push_back(df.join(other, {"k"}, dx::join_kind::left, dx::join_strategy::broadcast).compute());
  // Filters moved below the join, semi and anti joins.
  out.push_back(
      df.join(other, {"k"}, dx::join_kind::left, dx::join_strategy::broadcast).filter(dx::col("x") > 300.0).compute());
  out.push_back(
      df.join(other, {"k"}, dx::join_kind::semi, dx::join_strategy::shuffle).sort_values({"k", "x"}).compute());
  out.push_back(df.join(other, {"k"}, dx::join_kind::anti, dx::join_strategy::broadcast).compute());
  out.push_back(df.drop_duplicates({"k"}).compute());
  out.push_back(df.drop_duplicates({"s", "k"}, 3).compute());
  out.push_back(df.value_counts("s").compute());
  out.push_back(df.describe().compute());
  out.push_back(df.repartition(4).select({"k"}).compute());
  out.push_back(df.map_partitions(square_x).filter(dx::col("x2") > 1000.0).compute());
  out.push_back(df.head(7));
  dx::csv_options small_partitions;
  small_partitions.partition_bytes = 4096;
  auto csv_df = dx::dataframe::read_csv(cl, csv, small_partitions);
  out.push_back(csv_df.filter(csv_df["x"] < 500.0).groupby({"s"}).agg({{"x", dx::agg::max}}).compute());
  return out;
}

}  // namespace

TEST_CASE("plans give the same tables on worker processes as on local threads", "[dataframe][distributed]") {
  const fs::path dir = fs::temp_directory_path() / ("dx-df-dist-" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  const dx::table t = random_table(3000, 7);
  std::vector<std::optional<std::int64_t>> keys;
  std::vector<std::string> labels;
  for (int i = 0; i < 60; ++i) {
    keys.push_back(i % 9 == 0 ? std::nullopt : std::optional<std::int64_t>(i % 40));
    labels.push_back("label" + std::to_string(i));
  }
  const dx::table small{{"k", dx::column(keys)}, {"label", labels}};
  const std::string csv = (dir / "data.csv").string();
  {
    dx::cluster writer;
    dx::dataframe::from_table(writer, t, 3).to_csv(csv);
  }
  std::vector<dx::table> local, remote;
  {
    dx::cluster cl;
    local = run_plans(cl, t, small, csv);
  }
  {
    dx::cluster cl{dx::options{}.local_processes(2)};
    cl.wait_for_workers(2, std::chrono::seconds(30));
    remote = run_plans(cl, t, small, csv);
    // Tasks are learned and shown by what they do, not by the function that carries them.
    std::set<std::string> kinds;
    for (const auto& k : cl.cost_model_snapshot().accuracy()) kinds.insert(k.kind);
    std::string listed;
    for (const auto& k : kinds) listed += k + " ";
    INFO(listed);
    CHECK(kinds.count("dx.dataframe.memory") == 1);
    CHECK(kinds.count("dx.dataframe.read_csv+partial_agg") == 1);
    CHECK(kinds.count("dx.dataframe.sort") == 1);
    CHECK(kinds.count("dx.dataframe.join") == 1);
    for (const auto& k : kinds) {
      CHECK(k.starts_with("dx.dataframe."));
      CHECK_FALSE(k.starts_with("dx.dataframe.task"));
    }
  }
  REQUIRE(local.size() == remote.size());
  for (std::size_t i = 0; i < local.size(); ++i) {
    INFO("plan " << i << "\nlocal:\n" << local[i].to_string(10) << "remote:\n" << remote[i].to_string(10));
    CHECK(local[i].num_rows() > 0);
    CHECK(local[i] == remote[i]);
  }
  fs::remove_all(dir);
}

TEST_CASE("a malformed CSV row read on a worker is a dataframe error naming the file and line",
          "[dataframe][distributed]") {
  const fs::path dir = fs::temp_directory_path() / ("dx-df-bad-" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  const std::string path = (dir / "bad.csv").string();
  {
    std::ofstream out(path);
    out << "a,b\n";
    for (int i = 0; i < 50; ++i) out << i << "," << i * 2 << "\n";
    out << "51,oops\n";
  }
  dx::cluster cl{dx::options{}.local_processes(2)};
  cl.wait_for_workers(2, std::chrono::seconds(30));
  dx::csv_options opts;
  opts.schema["b"] = dx::column_type::int64;
  auto df = dx::dataframe::read_csv(cl, path, opts);
  try {
    (void)df.compute();
    FAIL("no error");
  } catch (const dx::dataframe_error& e) {
    CHECK(std::string(e.what()).find("bad.csv:52") != std::string::npos);
    CHECK(std::string(e.what()).find("on worker") != std::string::npos);
  }
  fs::remove_all(dir);
}
