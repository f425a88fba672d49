// A dataframe pipeline: generate a table of trips, write it as CSV files, read them back in
// parallel, then filter, group and sort.
//
//   dataframe_groupby [rows] [workers]
//
// With workers > 0 the plan runs on that many worker processes (started from this program),
// else on the local threads.
#include <dx/dx.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>

namespace {

dx::table generate_trips(std::size_t rows) {
  const std::vector<std::string> cities{"Oslo", "Lima", "Zürich", "東京", "Nairobi", "Quito", "Perth", "Tromsø"};
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> fare(2.0, 80.0);
  std::vector<std::int64_t> id(rows);
  std::vector<std::string> city(rows);
  std::vector<std::optional<double>> fares(rows);
  std::vector<double> tip(rows);
  std::vector<dx::timestamp> start(rows);
  const std::int64_t day = 86'400'000'000'000;
  const std::int64_t first = dx::parse_timestamp("2026-11-01")->nanoseconds;
  for (std::size_t i = 0; i < rows; ++i) {
    id[i] = static_cast<std::int64_t>(i);
    city[i] = cities[rng() % cities.size()];
    // About one fare in fifty is missing, as real data has gaps.
    if (rng() % 50 != 0) fares[i] = fare(rng);
    tip[i] = static_cast<double>(rng() % 500) / 100.0;
    start[i] = dx::timestamp{first + static_cast<std::int64_t>(rng() % (21 * static_cast<std::uint64_t>(day)))};
  }
  return dx::table{{"id", std::move(id)},
                   {"city", std::move(city)},
                   {"fare", dx::column(std::move(fares))},
                   {"tip", std::move(tip)},
                   {"start", std::move(start)}};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const std::size_t rows = argc > 1 ? std::stoul(argv[1]) : 1'000'000;
  const std::size_t workers = argc > 2 ? std::stoul(argv[2]) : 0;

  dx::options opts;
  if (workers > 0) opts.local_processes(workers);
  dx::cluster cl{opts};
  if (workers > 0) cl.wait_for_workers(workers, std::chrono::seconds(30));

  // A folder of this run's own: two runs at once (ctest -j) must not delete each other's files.
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("dx-dataframe-example-{}", ::getpid());
  std::filesystem::create_directories(dir);

  auto t0 = std::chrono::steady_clock::now();
  dx::dataframe::from_table(cl, generate_trips(rows), 4).to_csv((dir / "trips-*.csv").string());
  fmt::print("wrote {} trips as 4 CSV files in {:.2f} s\n", rows, seconds_since(t0));

  t0 = std::chrono::steady_clock::now();
  auto trips = dx::dataframe::read_csv(cl, (dir / "trips-*.csv").string());
  auto by_city = trips.filter(trips["fare"] > 10.0 && trips["start"] >= "2026-11-08")
                     .with_column("total", trips["fare"] + trips["tip"])
                     .groupby({"city"})
                     .agg({{"total", dx::agg::sum},
                           {"total", dx::agg::mean},
                           {"fare", dx::agg::max},
                           {"id", dx::agg::count, "trips"}})
                     .sort_values({"total_sum"}, false);
  std::cout << "\nplan (" << trips.num_partitions() << " partitions read in parallel):\n" << by_city.explain();
  const dx::table result = by_city.compute();
  fmt::print("\nrevenue by city, trips over 10 from 8 November ({:.2f} s):\n", seconds_since(t0));
  std::cout << result;

  t0 = std::chrono::steady_clock::now();
  const dx::table longest = trips.sort_values({"fare", "id"}, {false, true}).head(5);
  fmt::print("\nthe five highest fares ({:.2f} s):\n", seconds_since(t0));
  std::cout << longest;

  std::cout << "\nfares described:\n" << trips.select({"fare", "tip"}).describe().compute();
  std::filesystem::remove_all(dir);
  return 0;
}
