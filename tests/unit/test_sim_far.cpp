// Tests of the simulator with workers far from the head: each worker's own head link (latency and
// jitter), the round trips the head measures and hands to the scheduler, how much of the ideal a
// far cluster reaches, and exactly-once completion when latency and churn come together.
#include "sim/simulator.hpp"

#include "sim/graphs.hpp"
#include "sim_test_support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using dx::sched::policy;
namespace sim = dx::sim;
using sim_test::unfinished;

std::vector<sim::worker_def> workers(std::size_t n, std::uint32_t threads, double one_way, double jitter = 0) {
  sim::cluster_options c;
  c.workers = n;
  c.threads = threads;
  std::vector<sim::worker_def> out = sim::make_cluster(c);
  for (sim::worker_def& w : out) {
    w.head_latency = one_way;
    w.head_jitter = jitter;
  }
  return out;
}

sim::options with_policy(policy p, std::uint64_t seed = 1) {
  sim::options o;
  o.scheduler.kind = p;
  o.scheduler.seed = seed;
  o.link_seed = seed;
  return o;
}

}  // namespace

TEST_CASE("a task on a far worker finishes no earlier than its round trip plus its duration", "[sim][far]") {
  const sim::graph g = sim::independent(1, 0.010);
  const auto ws = workers(1, 1, 0.100);
  dx::cost_model m;
  const sim::result r = sim::simulate(g, ws, m, with_policy(policy::predictive));
  REQUIRE(r.exactly_once());
  CHECK(r.makespan >= 0.210);
  CHECK(r.makespan == Approx(0.210));
}

TEST_CASE("each worker's messages take its own latency", "[sim][far]") {
  const sim::graph g = sim::independent(2, 0.010);
  auto ws = workers(2, 1, 0.0001);
  ws[1].head_latency = 0.100;  // w0 keeps 100 us, w1 is 100 ms away
  sim::options o = with_policy(policy::round_robin);
  o.record_starts = true;
  dx::cost_model m;
  const sim::result r = sim::simulate(g, ws, m, o);
  REQUIRE(r.exactly_once());
  REQUIRE(r.starts[0].size() == 1);
  REQUIRE(r.starts[1].size() == 1);
  CHECK(r.starts[0][0].time < 0.001);
  CHECK(r.starts[1][0].time >= 0.100);
  CHECK(r.makespan >= 0.210);
  CHECK(r.makespan < 0.211);
}

TEST_CASE("a worker without a latency of its own uses options::head_latency", "[sim][far]") {
  const sim::graph g = sim::independent(1, 0.010);
  sim::cluster_options c;
  c.workers = 1;
  const auto ws = sim::make_cluster(c);
  REQUIRE_FALSE(ws[0].head_latency.has_value());
  sim::options o = with_policy(policy::predictive);
  o.head_latency = 0.050;
  dx::cost_model m;
  const sim::result r = sim::simulate(g, ws, m, o);
  REQUIRE(r.exactly_once());
  CHECK(r.makespan == Approx(0.110));
}

TEST_CASE("the head's measured round trip converges to the link's, and the scheduler counts it", "[sim][far]") {
  const sim::graph g = sim::independent(400, 0.010);
  auto ws = workers(2, 1, 0.0001);
  ws[1].head_latency = 0.050;
  sim::options o = with_policy(policy::predictive);
  o.heartbeat = 0.05;
  o.forecast_at = 1;  // the forecast when the last task finishes: every sample taken by then
  SECTION("a steady link: every sample the same") {
    dx::cost_model m;
    const sim::result r = sim::simulate(g, ws, m, o);
    REQUIRE(r.exactly_once());
    CHECK(r.workers[0].round_trip_seconds == Approx(0.0002));
    CHECK(r.workers[1].round_trip_seconds == Approx(0.100));
    // The deviation starts at an eighth of the first sample and falls by a quarter a sample.
    CHECK(r.workers[1].round_trip_jitter < 0.001);
    CHECK(r.workers[1].round_trip_samples >= 20);
    REQUIRE(r.forecast.taken);
    REQUIRE(r.forecast.round_trips.size() == 2);
    CHECK(r.forecast.round_trips[0] == Approx(0.0002));
    CHECK(r.forecast.round_trips[1] == Approx(0.100));
  }
  SECTION("a jittery link: the mean with its jitter") {
    ws[1].head_jitter = 0.005;  // each way: 10 ms more on average per round trip
    dx::cost_model m;
    const sim::result r = sim::simulate(g, ws, m, o);
    REQUIRE(r.exactly_once());
    CHECK(r.workers[1].round_trip_samples >= 20);
    CHECK(r.workers[1].round_trip_seconds > 0.100);
    CHECK(r.workers[1].round_trip_seconds < 0.130);
    CHECK(r.workers[1].round_trip_jitter > 0.001);
    CHECK(r.workers[1].round_trip_jitter < 0.020);
    REQUIRE(r.forecast.taken);
    CHECK(r.forecast.round_trips[1] == Approx(r.workers[1].round_trip_seconds));
  }
}

TEST_CASE("make_cluster draws round trips in the range and leaves the speeds as they were", "[sim][far]") {
  sim::cluster_options c;
  c.workers = 200;
  c.min_speed = 0.5;
  c.max_speed = 2;
  c.seed = 3;
  const auto near = sim::make_cluster(c);
  c.min_round_trip = 0.020;
  c.max_round_trip = 0.300;
  c.head_jitter = 0.002;
  const auto far = sim::make_cluster(c);
  REQUIRE(far.size() == near.size());
  std::size_t under_78ms = 0;  // the geometric middle of 20-300 ms
  for (std::size_t i = 0; i < far.size(); ++i) {
    CHECK(far[i].speed == near[i].speed);
    REQUIRE(far[i].head_latency.has_value());
    const double round_trip = 2 * *far[i].head_latency;
    CHECK(round_trip >= 0.020);
    CHECK(round_trip <= 0.300);
    CHECK(far[i].head_jitter == 0.002);
    under_78ms += round_trip < std::sqrt(0.020 * 0.300);
  }
  // Log-uniform: about half below the geometric middle.
  CHECK(under_78ms > 70);
  CHECK(under_78ms < 130);
}

TEST_CASE("with 200 ms round trips, 400 tasks of 10 ms on two threads reach 85% of the ideal", "[sim][far]") {
  const sim::graph g = sim::independent(400, 0.010);
  const auto ws = workers(2, 1, 0.100);
  const double ideal = g.total_work() / 2;
  REQUIRE(ideal == Approx(2.0));
  dx::cost_model m;
  // Cold, the scheduler probes the new kind with a few tasks before it sends a window's worth:
  // here two round trips of one task per thread (2.6 s).
  const sim::result cold = sim::simulate(g, ws, m, with_policy(policy::predictive));
  REQUIRE(cold.exactly_once());
  CAPTURE(cold.makespan);
  CHECK(ideal / cold.makespan >= 0.75);
  // Once the kind is known, only the first round trip is lost (2.2 s).
  const sim::result warm = sim::simulate(g, ws, m, with_policy(policy::predictive));
  REQUIRE(warm.exactly_once());
  CAPTURE(warm.makespan);
  CHECK(ideal / warm.makespan >= 0.85);
}

TEST_CASE("jitter never reorders the messages on a link", "[sim][far]") {
  // One worker, one thread, identical independent tasks: they are sent in id order, so they start
  // in id order unless a run message overtook an earlier one. Jitter of twice the task duration
  // would reorder almost every pair.
  const sim::graph g = sim::independent(300, 0.010);
  const auto ws = workers(1, 1, 0.050, 0.020);
  sim::options o = with_policy(policy::round_robin);
  o.record_starts = true;
  dx::cost_model m;
  const sim::result r = sim::simulate(g, ws, m, o);
  REQUIRE(r.exactly_once());
  REQUIRE(r.starts[0].size() == 300);
  for (std::size_t i = 1; i < r.starts[0].size(); ++i) REQUIRE(r.starts[0][i].task > r.starts[0][i - 1].task);
  CHECK(r.workers[0].round_trip_jitter > 0.005);
}

TEST_CASE("with jitter the run is deterministic for a link seed, and the seed matters", "[sim][far]") {
  sim::graph_options go;
  go.seed = 7;
  const sim::graph g = sim::random_dag(2000, 3, go);
  sim::cluster_options c;
  c.workers = 20;
  c.threads = 2;
  c.min_round_trip = 0.020;
  c.max_round_trip = 0.300;
  c.head_jitter = 0.010;
  c.seed = 7;
  const auto ws = sim::make_cluster(c);
  sim::options o = with_policy(policy::predictive, 7);
  dx::cost_model m1, m2, m3;
  const sim::result a = sim::simulate(g, ws, m1, o);
  const sim::result b = sim::simulate(g, ws, m2, o);
  INFO(unfinished(a));
  REQUIRE(a.exactly_once());
  CHECK(a.invalid_decisions == 0);
  CHECK(a.makespan == b.makespan);
  CHECK(a.decision_hash == b.decision_hash);
  CHECK(a.events == b.events);
  o.link_seed = 8;
  const sim::result other = sim::simulate(g, ws, m3, o);
  REQUIRE(other.exactly_once());
  CHECK(other.decision_hash != a.decision_hash);
}

TEST_CASE("every result is committed exactly once with far workers, jitter and churn", "[sim][far]") {
  sim::graph_options go;
  go.seed = 13;
  const sim::graph g = sim::random_dag(4000, 3, go);
  sim::cluster_options c;
  c.workers = 60;
  c.threads = 2;
  c.min_speed = 0.5;
  c.max_speed = 2;
  c.min_round_trip = 0.020;
  c.max_round_trip = 0.300;
  c.head_jitter = 0.005;
  c.seed = 13;
  auto ws = sim::make_cluster(c);
  sim::churn_options ch;
  ch.join_fraction = 0.15;
  ch.leave_fraction = 0.08;
  ch.crash_fraction = 0.05;
  ch.zombie_fraction = 0.05;
  ch.end = 0.7 * sim::estimate_makespan(g, ws);
  ch.keep = 10;
  ch.seed = 13;
  sim::add_churn(ws, ch);
  const policy p = GENERATE(policy::predictive, policy::oracle, policy::dask_like, policy::round_robin);
  CAPTURE(dx::sched::to_string(p));
  dx::cost_model m;
  const sim::result r = sim::simulate(g, ws, m, with_policy(p, 13));
  INFO(unfinished(r));
  CHECK(r.completed);
  CHECK(r.duplicate_commits == 0);
  CHECK(r.exactly_once());
  CHECK(r.invalid_decisions == 0);
  CHECK(r.returned + r.discarded_completions + r.recomputes > 0);
  // Every accepted completion is a first commit or a recomputation's; the rest were discarded.
  CHECK(r.runs_completed - r.discarded_completions == g.tasks.size() + r.recomputes);
}
