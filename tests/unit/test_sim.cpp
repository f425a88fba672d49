// Tests of the cluster simulator (src/sim/) and, through it, of the scheduler's guarantees:
// generator shapes, determinism, exactly-once completion under churn, resources, priorities,
// learning, and how policies compare.
#include "sim/simulator.hpp"

#include "sim/graphs.hpp"
#include "sim_test_support.hpp"

#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

namespace {

using dx::sched::policy;
namespace sim = dx::sim;
using sim_test::unfinished;

sim::options with_policy(policy p, std::uint64_t seed = 1) {
  sim::options o;
  o.scheduler.kind = p;
  o.scheduler.seed = seed;
  return o;
}

std::vector<sim::worker_def> cluster(std::size_t n, std::uint32_t threads, double min_speed, double max_speed,
                                     std::uint64_t seed = 1) {
  sim::cluster_options c;
  c.workers = n;
  c.threads = threads;
  c.min_speed = min_speed;
  c.max_speed = max_speed;
  c.seed = seed;
  return sim::make_cluster(c);
}

sim::graph_options seeded(std::uint64_t seed, double noise_sigma = 0.08) {
  sim::graph_options o;
  o.seed = seed;
  o.noise_sigma = noise_sigma;
  return o;
}

}  // namespace

TEST_CASE("random_dag: each task reads up to max_inputs distinct earlier tasks", "[sim]") {
  const sim::graph g = sim::random_dag(5000, 3, seeded(3));
  REQUIRE(g.tasks.size() == 5000);
  CHECK(g.valid());
  CHECK(g.kinds.size() == 5);
  std::size_t with[4] = {0, 0, 0, 0};
  for (std::size_t i = 0; i < g.tasks.size(); ++i) {
    const auto& in = g.tasks[i].inputs;
    REQUIRE(in.size() <= std::min<std::size_t>(3, i));
    for (auto j : in) REQUIRE(j < i);
    ++with[in.size()];
  }
  // k ~ U{0..3}: each count about a quarter of the tasks, 1.5 inputs per task on average.
  for (std::size_t c : with) CHECK(std::abs(static_cast<double>(c) - 1250.0) < 150.0);
  CHECK(std::abs(static_cast<double>(g.edges()) / 5000.0 - 1.5) < 0.05);
  CHECK(g.tasks[0].inputs.empty());
}

TEST_CASE("fork_join, map_reduce, tree, wavefront and chains have the documented shapes", "[sim]") {
  SECTION("fork-join") {
    const sim::graph g = sim::fork_join(4, 10, {});
    CHECK(g.tasks.size() == 1 + 4 * 11);
    CHECK(g.edges() == 4 * 10 * 2);
    CHECK(g.depth() == 1 + 4 * 2);
    CHECK(g.valid());
    CHECK(g.tasks.back().inputs.size() == 10);
  }
  SECTION("map-reduce") {
    const sim::graph g = sim::map_reduce(100, 8, {});
    CHECK(g.tasks.size() == 100 + 8 + 1);
    CHECK(g.edges() == 100 * 8 + 8);
    CHECK(g.depth() == 3);
    CHECK(g.valid());
  }
  SECTION("tree reduction") {
    const sim::graph g = sim::tree_reduction(64, 4, {});
    CHECK(g.tasks.size() == 64 + 16 + 4 + 1);
    CHECK(g.edges() == g.tasks.size() - 1);
    CHECK(g.depth() == 4);
    CHECK(g.valid());
    const sim::graph odd = sim::tree_reduction(10, 3, {});
    CHECK(odd.tasks.size() == 10 + 4 + 2 + 1);
    CHECK(odd.valid());
  }
  SECTION("wavefront") {
    const sim::graph g = sim::wavefront(20, 30, {});
    CHECK(g.tasks.size() == 600);
    CHECK(g.edges() == 2 * 600 - 20 - 30);
    CHECK(g.depth() == 20 + 30 - 1);
    CHECK(g.valid());
    // Cell (2, 3) reads (2, 2) and (1, 3).
    const auto& in = g.tasks[2 * 30 + 3].inputs;
    CHECK(std::find(in.begin(), in.end(), 2 * 30 + 2) != in.end());
    CHECK(std::find(in.begin(), in.end(), 1 * 30 + 3) != in.end());
  }
  SECTION("chains") {
    const sim::graph g = sim::chains(7, 9, {});
    CHECK(g.tasks.size() == 63);
    CHECK(g.edges() == 7 * 8);
    CHECK(g.depth() == 9);
    CHECK(g.valid());
  }
  SECTION("make_graph by name, and a cycle is rejected") {
    for (const std::string& shape : sim::graph_shapes()) {
      const sim::graph g = sim::make_graph(shape, 1000, 3, 0, {});
      CHECK(g.shape == shape);
      CHECK(g.valid());
      CHECK(g.tasks.size() > 500);
      CHECK(g.tasks.size() < 1500);
    }
    CHECK_THROWS_AS(sim::make_graph("spiral", 10, 3, 0, {}), dx::error);
    sim::graph bad = sim::chains(1, 3, {});
    bad.tasks[0].inputs = {2};
    CHECK_FALSE(bad.valid());
  }
}

TEST_CASE("task durations follow base * size^exponent with per-task lognormal noise", "[sim]") {
  const sim::graph g = sim::random_dag(4000, 2, seeded(9, 0.08));
  double sum = 0, sum2 = 0;
  for (std::size_t i = 0; i < g.tasks.size(); ++i) {
    const auto& t = g.tasks[i];
    REQUIRE(t.size >= 1e3);
    REQUIRE(t.size <= 1e6);
    REQUIRE(g.true_seconds(i) == Approx(g.kinds[t.kind].base * std::pow(t.size, g.kinds[t.kind].exponent) * t.noise));
    const double l = std::log(t.noise);
    sum += l;
    sum2 += l * l;
  }
  const double n = static_cast<double>(g.tasks.size());
  CHECK(std::abs(sum / n) < 0.01);
  CHECK(std::sqrt(sum2 / n - (sum / n) * (sum / n)) == Approx(0.08).epsilon(0.1));
  // The same seed gives the same kinds whatever the shape.
  const sim::graph other = sim::wavefront(10, 10, seeded(9));
  for (std::size_t k = 0; k < g.kinds.size(); ++k) {
    CHECK(other.kinds[k].base == g.kinds[k].base);
    CHECK(other.kinds[k].exponent == g.kinds[k].exponent);
  }
}

TEST_CASE("the simulator is deterministic for a given seed", "[sim]") {
  const sim::graph g = sim::random_dag(3000, 3, seeded(5));
  auto workers = cluster(60, 2, 0.25, 4, 5);
  sim::options o = with_policy(policy::predictive, 5);
  SECTION("everything submitted at once") {}
  SECTION("waves and churn") {
    o.wave_size = 500;
    o.wave_interval = 0.05;
    sim::churn_options ch;
    ch.end = 0.5;
    ch.keep = 10;
    sim::add_churn(workers, ch);
  }
  dx::cost_model m1, m2;
  const sim::result a = sim::simulate(g, workers, m1, o);
  const sim::result b = sim::simulate(g, workers, m2, o);
  CHECK(a.makespan == b.makespan);
  CHECK(a.decisions == b.decisions);
  CHECK(a.decision_hash == b.decision_hash);
  CHECK(a.attempts == b.attempts);
  CHECK(a.events == b.events);
  CHECK(a.finished == b.finished);
  CHECK(a.transfers.bytes == b.transfers.bytes);
  CHECK(a.decisions > 0);
}

TEST_CASE("run time is the true duration times the worker's factor, and busy time adds up", "[sim]") {
  const sim::graph g = sim::random_dag(400, 2, seeded(2));
  auto workers = cluster(1, 1, 2, 2);
  dx::cost_model m;
  const sim::result r = sim::simulate(g, workers, m, with_policy(policy::round_robin));
  REQUIRE(r.exactly_once());
  CHECK(r.work_seconds == Approx(2 * g.total_work()));
  CHECK(r.workers[0].busy_seconds == Approx(r.work_seconds));
  CHECK(r.workers[0].tasks_run == 400);
  CHECK(r.makespan >= r.work_seconds);
  // One worker holds every result: nothing crosses the network.
  CHECK(r.transfers.count == 0);
  CHECK(r.discarded_completions == 0);
  CHECK(r.attempts == 400);
}

TEST_CASE("a fetch costs the larger latency plus the bytes over the smaller bandwidth", "[sim]") {
  sim::graph_options go = seeded(1);
  go.min_output_bytes = go.max_output_bytes = 10'000'000;
  const sim::graph g = sim::chains(1, 2, go);
  auto workers = cluster(2, 1, 1, 1);
  workers[0].bandwidth = 1e9;
  workers[0].latency = 1e-3;
  workers[1].bandwidth = 1e8;
  workers[1].latency = 2e-3;
  dx::cost_model m;
  // Round robin puts the two tasks on different workers, whichever comes first.
  const sim::result r = sim::simulate(g, workers, m, with_policy(policy::round_robin));
  REQUIRE(r.exactly_once());
  REQUIRE(r.transfers.count == 1);
  CHECK(r.transfers.bytes == 10'000'000);
  CHECK(r.transfers.seconds == Approx(2e-3 + 10'000'000 / 1e8));
  CHECK(r.makespan > r.transfers.seconds + r.work_seconds);
}

TEST_CASE("results under the inline limit travel with the completion: no fetches", "[sim]") {
  sim::graph_options go = seeded(2);
  go.max_output_bytes = 32 << 10;
  const sim::graph g = sim::random_dag(2000, 3, go);
  const auto workers = cluster(30, 2, 0.5, 2, 2);
  dx::cost_model m;
  const sim::result r = sim::simulate(g, workers, m, with_policy(policy::random, 2));
  REQUIRE(r.exactly_once());
  CHECK(r.transfers.count == 0);
}

TEST_CASE("tasks submitted in waves start no earlier than their wave", "[sim]") {
  const sim::graph g = sim::random_dag(3000, 3, seeded(15));
  const auto workers = cluster(40, 1, 0.5, 2, 15);
  sim::options o = with_policy(policy::predictive, 15);
  o.wave_size = 400;
  o.wave_interval = 0.2;
  o.record_starts = true;
  dx::cost_model m;
  const sim::result r = sim::simulate(g, workers, m, o);
  INFO(unfinished(r));
  REQUIRE(r.exactly_once());
  CHECK(r.invalid_decisions == 0);
  for (const auto& starts : r.starts)
    for (const sim::start_record& s : starts) {
      const double wave_time = static_cast<double>(s.task / o.wave_size) * o.wave_interval;
      REQUIRE(s.time >= wave_time);
      REQUIRE(s.ready_time >= wave_time);
    }
  CHECK(r.makespan >= static_cast<double>((g.tasks.size() - 1) / o.wave_size) * o.wave_interval);
}

TEST_CASE("every result is committed exactly once with rebalancing and churn", "[sim]") {
  const sim::graph g = sim::random_dag(5000, 3, seeded(11));
  auto workers = cluster(100, 2, 0.25, 4, 11);
  sim::churn_options ch;
  ch.join_fraction = 0.15;
  ch.leave_fraction = 0.08;
  ch.crash_fraction = 0.05;
  ch.zombie_fraction = 0.05;
  ch.end = 0.7 * sim::estimate_makespan(g, workers);
  ch.keep = 20;
  ch.seed = 11;
  sim::add_churn(workers, ch);
  const policy p = GENERATE(policy::predictive, policy::oracle, policy::dask_like, policy::round_robin, policy::random,
                            policy::least_loaded);
  CAPTURE(dx::sched::to_string(p));
  sim::options o = with_policy(p, 11);
  o.scheduler.rebalance = true;
  dx::cost_model m;
  const sim::result r = sim::simulate(g, workers, m, o);
  INFO(unfinished(r));
  CHECK(r.completed);
  CHECK(r.finished == g.tasks.size());
  CHECK(r.duplicate_commits == 0);
  CHECK(r.exactly_once());
  CHECK(r.invalid_decisions == 0);
  // The churn did exercise the protocol: returned tasks, discarded late completions, reruns.
  CHECK(r.returned + r.discarded_completions + r.recomputes > 0);
  CHECK(r.runs_started >= g.tasks.size());
  std::size_t late_joiner_tasks = 0;
  for (std::size_t w = 0; w < workers.size(); ++w)
    if (workers[w].join_time > 0) late_joiner_tasks += r.workers[w].tasks_run;
  CHECK(late_joiner_tasks > 0);
}

TEST_CASE("declared resources are never over-committed", "[sim]") {
  sim::graph_options go;
  go.seed = 4;
  go.needs = {{"gpu", 1}};
  go.needs_fraction = 0.6;
  const sim::graph g = sim::random_dag(3000, 2, go);
  sim::cluster_options c;
  c.workers = 40;
  c.threads = 2;
  c.min_speed = 0.5;
  c.max_speed = 2;
  c.capacity = {{"gpu", 1}};
  const auto workers = sim::make_cluster(c);
  const policy p = GENERATE(policy::predictive, policy::oracle, policy::dask_like);
  CAPTURE(dx::sched::to_string(p));
  dx::cost_model m;
  const sim::result r = sim::simulate(g, workers, m, with_policy(p, 4));
  INFO(unfinished(r));
  CHECK(r.exactly_once());
  CHECK(r.max_resource_ratio > 0);
  CHECK(r.max_resource_ratio <= 1.0 + 1e-9);
}

TEST_CASE("among tasks ready together, a worker starts the higher priority first", "[sim]") {
  sim::graph_options go;
  go.seed = 6;
  go.priority_levels = 4;
  // Independent tasks (chains of length 1) and two levels of a wavefront: ties at several instants.
  const int shape = GENERATE(0, 1);
  const sim::graph g = shape == 0 ? sim::chains(600, 1, go) : sim::wavefront(30, 30, go);
  const policy p = GENERATE(policy::predictive, policy::oracle);
  CAPTURE(g.shape, dx::sched::to_string(p));
  const auto workers = cluster(12, 1, 0.5, 2, 6);
  sim::options o = with_policy(p, 6);
  o.record_starts = true;
  dx::cost_model m;
  const sim::result r = sim::simulate(g, workers, m, o);
  REQUIRE(r.exactly_once());
  std::size_t starts = 0;
  for (const auto& s : r.starts) starts += s.size();
  CHECK(starts == g.tasks.size());
  CHECK(r.priority_inversions == 0);
}

TEST_CASE("a cold model converges: per-kind error after warm-up is under 15% with 8% noise", "[sim]") {
  const sim::graph g = sim::random_dag(6000, 3, seeded(8, 0.08));
  const auto workers = cluster(80, 1, 0.5, 2, 8);
  dx::cost_model m;
  const sim::result r = sim::simulate(g, workers, m, with_policy(policy::predictive, 8));
  REQUIRE(r.exactly_once());
  REQUIRE(r.predictions.size() == g.tasks.size());
  const std::size_t half = r.predictions.size() / 2;
  for (std::size_t k = 0; k < g.kinds.size(); ++k) {
    CAPTURE(k);
    CHECK(r.median_ape(half, r.predictions.size(), static_cast<int>(k)) < 0.15);
  }
  REQUIRE(r.accuracy.size() == g.kinds.size());
  for (const auto& a : r.accuracy) {
    CAPTURE(a.kind);
    CHECK(a.samples > 0);
    CHECK(a.median_ape < 0.15);
  }
}

TEST_CASE("a second run with the same model starts calibrated", "[sim]") {
  const sim::graph g = sim::random_dag(3000, 3, seeded(12));
  const auto workers = cluster(50, 1, 0.5, 2, 12);
  dx::cost_model m;
  const sim::result first = sim::simulate(g, workers, m, with_policy(policy::predictive, 12));
  const sim::result second = sim::simulate(g, workers, m, with_policy(policy::predictive, 12));
  REQUIRE(first.exactly_once());
  REQUIRE(second.exactly_once());
  const std::size_t early = 150;
  const double e1 = first.median_ape(0, early), e2 = second.median_ape(0, early);
  CAPTURE(e1, e2);
  CHECK(e2 < 0.15);
  CHECK(e2 < e1);
  std::size_t calibrated = 0;
  for (std::size_t i = 0; i < early; ++i) calibrated += second.predictions[i].calibrated;
  CHECK(calibrated == early);
}

TEST_CASE("predictive beats round_robin on heterogeneous speeds, and the oracle is the best", "[sim]") {
  const sim::graph g = sim::random_dag(5000, 3, seeded(13));
  const auto workers = cluster(100, 1, 0.25, 4, 13);
  auto run = [&](policy p) {
    dx::cost_model m;
    sim::result r = sim::simulate(g, workers, m, with_policy(p, 13));
    INFO(dx::sched::to_string(p) << ": " << unfinished(r));
    REQUIRE(r.exactly_once());
    return r;
  };
  const sim::result oracle = run(policy::oracle), round_robin = run(policy::round_robin);
  dx::cost_model m;
  const sim::result cold = sim::simulate(g, workers, m, with_policy(policy::predictive, 13));
  const sim::result warm = sim::simulate(g, workers, m, with_policy(policy::predictive, 13));
  REQUIRE(cold.exactly_once());
  REQUIRE(warm.exactly_once());
  CAPTURE(oracle.makespan, cold.makespan, warm.makespan, round_robin.makespan);
  CHECK(cold.makespan < 0.7 * round_robin.makespan);
  CHECK(oracle.makespan <= 1.05 * cold.makespan);
  CHECK(oracle.makespan <= 1.05 * warm.makespan);
  // Cold, the model learns 5 kinds and 100 speed factors from 5,000 tasks while it places them.
  CHECK(cold.makespan <= 1.5 * oracle.makespan);
  CHECK(warm.makespan <= 1.1 * oracle.makespan);
  // No schedule beats the work spread perfectly over the cluster's capacity.
  double capacity = 0;
  for (const auto& w : workers) capacity += w.threads / w.speed;
  CHECK(oracle.makespan >= g.total_work() / capacity);
}

TEST_CASE("the forecast at 25% done is recorded next to what happened", "[sim]") {
  const sim::graph g = sim::random_dag(4000, 3, seeded(14));
  const auto workers = cluster(60, 1, 0.5, 2, 14);
  dx::cost_model m;
  const sim::result r = sim::simulate(g, workers, m, with_policy(policy::oracle, 14));
  REQUIRE(r.exactly_once());
  REQUIRE(r.forecast.taken);
  CHECK(r.forecast.at > 0);
  CHECK(r.forecast.at < r.makespan);
  CHECK(r.forecast.actual_remaining == Approx(r.makespan - r.forecast.at));
  CHECK(r.forecast.tasks_left <= 3000);
  CHECK(r.forecast.tasks_left >= 2900);
  CHECK(std::isfinite(r.forecast.relative_error));
  // With true durations the forecast has no excuse to be far off.
  CHECK(std::abs(r.forecast.relative_error) < 0.5);
  CHECK(r.scheduler_seconds > 0);
}
