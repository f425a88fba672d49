// How much of a cluster far from its head dx keeps busy: independent tasks of one duration on
// workers whose round trips to the head range from a LAN's to a volunteer's, in the simulator
// (virtual time, deterministic for a seed). Efficiency = ideal makespan / simulated makespan, the
// ideal being the total work over the total threads. ideal / (ideal + the longest round trip) is
// printed next to it: when every worker is as far, no schedule beats it (the first task cannot
// start before a message reaches a worker, nor count before its completion comes back); with
// workers at different distances it is not a bound, as near workers can take a far one's share.
//
// Rows: round trips of 0.2, 10, 50 and 200 ms for every worker, and volunteers: each worker's
// round trip log-uniform in 20-300 ms with a mean extra 5 ms per message each way (jitter), over
// SEEDS seeds (the seed draws the round trips and the jitter). Columns: task durations 1, 10 and
// 100 ms. Each cell: predictive on a fresh cost model (cold: it learns the kind during the run),
// predictive on the model the cold run left (warm), and dask_like (cold), each median [min-max]
// over the seeds for the volunteer rows.
//
// Usage: dx_bench_far_workers [TASKS=2000] [WORKERS=8] [THREADS=2] [SEEDS=5] [SEND_AHEAD]
// SEND_AHEAD (seconds) replaces the scheduler's send_ahead_seconds, to see what a wider window buys.
// Prints a Markdown table and one RESULT line per simulation.
#include "sim/graphs.hpp"
#include "sim/simulator.hpp"

#include <dx/cost_model.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

namespace sim = dx::sim;
using dx::sched::policy;

struct link_setting {
  const char* label;
  double min_round_trip, max_round_trip, jitter;
  bool seeded;  // its draws depend on the seed
};

struct cell {
  std::vector<double> cold, warm, dask, bound;  // efficiencies, one per seed
};

std::string summary(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const double median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  char buf[64];
  if (v.front() == v.back())
    std::snprintf(buf, sizeof buf, "%.2f", median);
  else
    std::snprintf(buf, sizeof buf, "%.2f [%.2f-%.2f]", median, v.front(), v.back());
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const std::size_t tasks = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2000;
  const std::size_t workers = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 8;
  const auto threads = static_cast<std::uint32_t>(argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 2);
  const std::uint64_t seeds = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 5;
  const double send_ahead = argc > 5 ? std::strtod(argv[5], nullptr) : dx::sched::config{}.send_ahead_seconds;
  if (tasks == 0 || workers == 0 || threads == 0 || seeds == 0 || !(send_ahead >= 0)) {
    std::fprintf(stderr, "usage: dx_bench_far_workers [TASKS=2000] [WORKERS=8] [THREADS=2] [SEEDS=5] [SEND_AHEAD]\n");
    return 2;
  }
  const link_setting links[] = {
      {"0.2 ms", 0.0002, 0.0002, 0, false},
      {"10 ms", 0.010, 0.010, 0, false},
      {"50 ms", 0.050, 0.050, 0, false},
      {"200 ms", 0.200, 0.200, 0, false},
      {"volunteers: 20-300 ms, jitter 5 ms", 0.020, 0.300, 0.005, true},
  };
  const double durations[] = {0.001, 0.010, 0.100};

  std::vector<std::vector<cell>> cells(std::size(links), std::vector<cell>(std::size(durations)));
  for (std::size_t l = 0; l < std::size(links); ++l) {
    for (std::size_t d = 0; d < std::size(durations); ++d) {
      const sim::graph g = sim::independent(tasks, durations[d]);
      const double ideal = g.total_work() / static_cast<double>(workers * threads);
      for (std::uint64_t seed = 1; seed <= (links[l].seeded ? seeds : 1); ++seed) {
        sim::cluster_options c;
        c.workers = workers;
        c.threads = threads;
        c.min_round_trip = links[l].min_round_trip;
        c.max_round_trip = links[l].max_round_trip;
        c.head_jitter = links[l].jitter;
        c.seed = seed;
        const auto ws = sim::make_cluster(c);
        double longest = 0;
        for (const auto& w : ws) longest = std::max(longest, 2 * w.head_latency.value_or(0));
        auto run = [&](policy p, dx::cost_model& model) {
          sim::options o;
          o.scheduler.kind = p;
          o.scheduler.seed = seed;
          o.link_seed = seed;
          o.scheduler.send_ahead_seconds = send_ahead;
          const sim::result r = sim::simulate(g, ws, model, o);
          if (!r.exactly_once()) {
            std::fprintf(stderr, "dx_bench_far_workers: %s did not finish every task (%s, %g s tasks, seed %llu)\n",
                         dx::sched::to_string(p), links[l].label, durations[d], static_cast<unsigned long long>(seed));
            std::exit(1);
          }
          std::printf(
              "RESULT link=\"%s\" task_seconds=%g seed=%llu policy=%s makespan=%.6f ideal=%.6f efficiency=%.4f\n",
              links[l].label, durations[d], static_cast<unsigned long long>(seed), dx::sched::to_string(p), r.makespan,
              ideal, ideal / r.makespan);
          return ideal / r.makespan;
        };
        cell& x = cells[l][d];
        dx::cost_model model, dask_model;
        x.cold.push_back(run(policy::predictive, model));
        x.warm.push_back(run(policy::predictive, model));
        x.dask.push_back(run(policy::dask_like, dask_model));
        x.bound.push_back(ideal / (ideal + longest));
      }
    }
  }

  std::printf(
      "\n%zu independent tasks, %zu workers x %u threads, send_ahead_seconds %g; efficiency = (work / threads) / "
      "makespan\n\n",
      tasks, workers, threads, send_ahead);
  std::printf(
      "| round trip | task | predictive, cold | predictive, warm | dask_like, cold | ideal / (ideal + longest round "
      "trip) |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (std::size_t l = 0; l < std::size(links); ++l)
    for (std::size_t d = 0; d < std::size(durations); ++d) {
      const cell& x = cells[l][d];
      std::printf("| %s | %g ms | %s | %s | %s | %s |\n", links[l].label, 1e3 * durations[d], summary(x.cold).c_str(),
                  summary(x.warm).c_str(), summary(x.dask).c_str(), summary(x.bound).c_str());
    }
  return 0;
}
