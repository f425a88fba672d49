// dx-sim: runs a generated task graph on a simulated cluster under one or more scheduling
// policies and compares them: makespan (and its ratio to the oracle's), moves, prediction error
// per kind, the forecast made at 25% done, and the scheduler's own speed.
//
//   dx-sim --workers 1000 --speeds 0.25:4 --graph random --tasks 100000 --policy all --seed 1
#include "sim/graphs.hpp"
#include "sim/simulator.hpp"

#include <dx/cost_model.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr const char* usage = R"(usage: dx-sim [options]

Simulates a cluster running a generated task graph under dx's scheduler and compares policies.

cluster
  --workers N          workers (default 100)
  --threads N          threads per worker (default 1)
  --speeds A:B         speed factors log-uniform in [A, B]; 0.25 runs 4x faster, 4 runs 4x slower
                       (default 1:1)
  --bandwidth B        bytes/s per worker link (default 1.25e9)
  --latency-us U       per-worker link latency in microseconds (default 50)
  --head-latency-us U  one-way head <-> worker latency in microseconds (default 100)
  --round-trip-ms A:B  each worker's own round trip to the head, log-uniform in [A, B]
                       milliseconds (uniform when A is 0; A alone: every worker the same), e.g.
                       --round-trip-ms 20:300 for volunteers far apart (default: twice
                       --head-latency-us for every worker)
  --jitter-ms J        mean extra delay of each message to or from the head, in milliseconds,
                       exponential; a message never overtakes an earlier one on its link
                       (default 0)
  --churn              late joins (10%), graceful leaves (5%), crashes (3%) and workers wrongly
                       presumed lost (2%) during the first 70% of the estimated makespan
graph
  --graph SHAPE        random, fork-join, map-reduce, tree, wavefront, chains (default random)
  --tasks N            about N tasks (default 10000)
  --kinds K            task kinds (default 5)
  --max-inputs N       random: each task reads U{0..N} earlier tasks (default 3)
  --width N            fork-join width, map-reduce reducers, tree fan-in, chain count (0: default)
  --noise S            sigma of the lognormal noise on durations (default 0.08)
  --priorities L       task priorities uniform in [0, L) (default 1: all equal)
  --waves N            submit N tasks at a time, a wave every 10% of the estimated makespan
                       (default 0: all at once)
scheduling
  --policy LIST        comma-separated: predictive, oracle, dask_like, round_robin, random,
                       least_loaded, or all (default predictive)
  --no-rebalance       turn the scheduler's rebalancing off
  --model-file F       predictive starts from the cost model in F (else cold)
  --save-model F       save the model predictive learned to F
output
  --seed N             seed of the graph, the cluster and the scheduler (default 1)
  --json               one JSON object instead of the table
  --profile            the scheduler's CPU time by entry point
  --help               this text

Each policy runs on a fresh cost model. Exit status: 0 done, 1 a run did not finish every task,
2 bad arguments.
)";

struct bad_args : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class T>
T parse_number(std::string_view flag, std::string_view text) {
  T v{};
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc{} || p != end) throw bad_args(fmt::format("{} expects a number, not '{}'", flag, text));
  return v;
}

struct cli {
  dx::sim::cluster_options cluster;
  double head_latency = 100e-6;
  bool churn = false;
  std::string shape = "random";
  std::size_t tasks = 10'000;
  std::size_t max_inputs = 3;
  std::size_t width = 0;
  std::size_t waves = 0;
  dx::sim::graph_options graph;
  std::vector<dx::sched::policy> policies{dx::sched::policy::predictive};
  bool rebalance = true;
  std::string model_file, save_model;
  std::uint64_t seed = 1;
  bool json = false;
  bool profile = false;
};

std::vector<dx::sched::policy> parse_policies(std::string_view list) {
  using dx::sched::policy;
  if (list == "all")
    return {policy::oracle,      policy::predictive, policy::dask_like,
            policy::round_robin, policy::random,     policy::least_loaded};
  std::vector<policy> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const std::string_view name = list.substr(0, comma);
    const auto p = dx::sched::parse_policy(name);
    if (!p) throw bad_args(fmt::format("unknown policy '{}'", name));
    if (std::find(out.begin(), out.end(), *p) == out.end()) out.push_back(*p);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
  }
  if (out.empty()) throw bad_args("--policy needs at least one policy");
  return out;
}

cli parse(int argc, char** argv) {
  cli c;
  std::optional<std::uint64_t> seed;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) throw bad_args(fmt::format("{} needs a value", a));
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    } else if (a == "--workers") {
      c.cluster.workers = parse_number<std::size_t>(a, value());
      if (c.cluster.workers == 0) throw bad_args("--workers must be at least 1");
    } else if (a == "--threads") {
      c.cluster.threads = parse_number<std::uint32_t>(a, value());
      if (c.cluster.threads == 0) throw bad_args("--threads must be at least 1");
    } else if (a == "--speeds") {
      const std::string_view v = value();
      const auto colon = v.find(':');
      if (colon == std::string_view::npos) throw bad_args(fmt::format("--speeds expects A:B, not '{}'", v));
      c.cluster.min_speed = parse_number<double>(a, v.substr(0, colon));
      c.cluster.max_speed = parse_number<double>(a, v.substr(colon + 1));
      if (!(c.cluster.min_speed > 0) || !(c.cluster.max_speed >= c.cluster.min_speed))
        throw bad_args("--speeds needs 0 < A <= B");
    } else if (a == "--bandwidth") {
      c.cluster.bandwidth = parse_number<double>(a, value());
      if (!(c.cluster.bandwidth > 0)) throw bad_args("--bandwidth must be positive");
    } else if (a == "--latency-us") {
      c.cluster.latency = parse_number<double>(a, value()) * 1e-6;
      if (!(c.cluster.latency >= 0)) throw bad_args("--latency-us must not be negative");
    } else if (a == "--head-latency-us") {
      c.head_latency = parse_number<double>(a, value()) * 1e-6;
      if (!(c.head_latency >= 0)) throw bad_args("--head-latency-us must not be negative");
    } else if (a == "--round-trip-ms") {
      const std::string_view v = value();
      const auto colon = v.find(':');
      c.cluster.min_round_trip = parse_number<double>(a, v.substr(0, colon)) * 1e-3;
      c.cluster.max_round_trip = colon == std::string_view::npos ? c.cluster.min_round_trip
                                                                 : parse_number<double>(a, v.substr(colon + 1)) * 1e-3;
      if (!(c.cluster.min_round_trip >= 0) || !(c.cluster.max_round_trip >= c.cluster.min_round_trip) ||
          !(c.cluster.max_round_trip > 0))
        throw bad_args("--round-trip-ms needs 0 <= A <= B and B > 0");
    } else if (a == "--jitter-ms") {
      c.cluster.head_jitter = parse_number<double>(a, value()) * 1e-3;
      if (!(c.cluster.head_jitter >= 0)) throw bad_args("--jitter-ms must not be negative");
    } else if (a == "--churn") {
      c.churn = true;
    } else if (a == "--graph") {
      c.shape = value();
      const auto& shapes = dx::sim::graph_shapes();
      if (std::find(shapes.begin(), shapes.end(), c.shape) == shapes.end())
        throw bad_args(
            fmt::format("unknown graph '{}' (one of random, fork-join, map-reduce, tree, wavefront, chains)", c.shape));
    } else if (a == "--tasks") {
      c.tasks = parse_number<std::size_t>(a, value());
      if (c.tasks == 0) throw bad_args("--tasks must be at least 1");
    } else if (a == "--kinds") {
      c.graph.kinds = parse_number<std::size_t>(a, value());
      if (c.graph.kinds == 0) throw bad_args("--kinds must be at least 1");
    } else if (a == "--max-inputs") {
      c.max_inputs = parse_number<std::size_t>(a, value());
    } else if (a == "--width") {
      c.width = parse_number<std::size_t>(a, value());
    } else if (a == "--noise") {
      c.graph.noise_sigma = parse_number<double>(a, value());
      if (!(c.graph.noise_sigma >= 0)) throw bad_args("--noise must not be negative");
    } else if (a == "--priorities") {
      c.graph.priority_levels = parse_number<int>(a, value());
      if (c.graph.priority_levels < 1) throw bad_args("--priorities must be at least 1");
    } else if (a == "--waves") {
      c.waves = parse_number<std::size_t>(a, value());
    } else if (a == "--policy") {
      c.policies = parse_policies(value());
    } else if (a == "--no-rebalance") {
      c.rebalance = false;
    } else if (a == "--model-file") {
      c.model_file = value();
    } else if (a == "--save-model") {
      c.save_model = value();
    } else if (a == "--seed") {
      seed = parse_number<std::uint64_t>(a, value());
    } else if (a == "--json") {
      c.json = true;
    } else if (a == "--profile") {
      c.profile = true;
    } else {
      throw bad_args(fmt::format("unknown option '{}'", a));
    }
  }
  c.seed = seed.value_or(1);
  c.graph.seed = c.seed;
  // Different streams for the cluster and the graph, both fixed by the one seed.
  c.cluster.seed = c.seed * 0x9e3779b97f4a7c15ull + 1;
  return c;
}

struct run {
  dx::sched::policy policy;
  dx::sim::result r;
  double wall_seconds = 0;
};

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\')
      out += fmt::format("\\{}", ch);
    else if (static_cast<unsigned char>(ch) < 0x20)
      out += fmt::format("\\u{:04x}", static_cast<int>(ch));
    else
      out += ch;
  }
  return out + "\"";
}

// JSON has no infinity or NaN.
std::string json_number(double v) { return std::isfinite(v) ? fmt::format("{:.6g}", v) : "null"; }

std::string profile_json(const dx::sim::result& r) {
  std::string out;
  for (std::size_t i = 0; i < dx::sim::scheduler_call_count; ++i) {
    const auto& p = r.scheduler_profile[i];
    if (p.calls == 0) continue;
    out += fmt::format("{}{}:{{\"calls\":{},\"seconds\":{}}}", out.empty() ? "" : ",",
                       json_string(dx::sim::to_string(static_cast<dx::sim::scheduler_call>(i))), p.calls,
                       json_number(p.seconds));
  }
  return out;
}

int main_impl(int argc, char** argv) {
  const cli c = parse(argc, argv);
  using clock = std::chrono::steady_clock;

  const auto t0 = clock::now();
  const dx::sim::graph g = dx::sim::make_graph(c.shape, c.tasks, c.max_inputs, c.width, c.graph);
  std::vector<dx::sim::worker_def> workers = dx::sim::make_cluster(c.cluster);
  const double estimate = dx::sim::estimate_makespan(g, workers);
  if (c.churn) {
    dx::sim::churn_options ch;
    ch.end = 0.7 * estimate;
    ch.keep = std::max<std::size_t>(1, workers.size() / 10);
    ch.seed = c.seed + 7;
    dx::sim::add_churn(workers, ch);
  }
  const double build_seconds = std::chrono::duration<double>(clock::now() - t0).count();

  double capacity = 0;
  for (const auto& w : workers) capacity += w.threads / w.speed;
  const double work = g.total_work(), cp = g.critical_path();
  // A bound no schedule beats: all the work spread perfectly, or the critical path on the fastest
  // worker (transfers and latencies left out).
  double fastest = workers.front().speed;
  for (const auto& w : workers) fastest = std::min(fastest, w.speed);
  const double bound = std::max(work / capacity, cp * fastest);
  // The head's round trips as configured (workers without their own use --head-latency-us).
  const bool own_round_trips = c.cluster.max_round_trip > 0;
  const double rtt_lo = own_round_trips ? c.cluster.min_round_trip : 2 * c.head_latency,
               rtt_hi = own_round_trips ? c.cluster.max_round_trip : 2 * c.head_latency;

  std::vector<run> runs;
  for (dx::sched::policy p : c.policies) {
    dx::cost_model model;
    if (p == dx::sched::policy::predictive && !c.model_file.empty()) model.load(c.model_file);
    dx::sim::options o;
    o.scheduler.kind = p;
    o.scheduler.seed = c.seed;
    o.scheduler.rebalance = c.rebalance;
    o.head_latency = c.head_latency;
    o.link_seed = c.seed;
    if (c.waves) {
      o.wave_size = c.waves;
      o.wave_interval = std::max(1e-3, 0.1 * estimate);
    }
    const auto s = clock::now();
    dx::sim::result r = dx::sim::simulate(g, workers, model, o);
    const double wall = std::chrono::duration<double>(clock::now() - s).count();
    if (p == dx::sched::policy::predictive && !c.save_model.empty()) model.save(c.save_model);
    runs.push_back({p, std::move(r), wall});
    if (!c.json) std::fprintf(stderr, "dx-sim: %s done in %.1f s\n", dx::sched::to_string(p), runs.back().wall_seconds);
  }

  const run* oracle = nullptr;
  for (const run& r : runs)
    if (r.policy == dx::sched::policy::oracle) oracle = &r;
  auto ratio = [&](const run& r) { return oracle && oracle->r.makespan > 0 ? r.r.makespan / oracle->r.makespan : NAN; };

  bool all_done = true;
  for (const run& r : runs) all_done = all_done && r.r.exactly_once();

  if (c.json) {
    std::string out = "{";
    out += fmt::format(
        "\"graph\":{{\"shape\":{},\"tasks\":{},\"edges\":{},\"depth\":{},\"kinds\":{},\"work_seconds\":{},"
        "\"critical_path_seconds\":{}}},",
        json_string(g.shape), g.tasks.size(), g.edges(), g.depth(), g.kinds.size(), json_number(work), json_number(cp));
    out += fmt::format(
        "\"cluster\":{{\"workers\":{},\"threads\":{},\"min_speed\":{},\"max_speed\":{},\"churn\":{},"
        "\"min_round_trip\":{},\"max_round_trip\":{},\"jitter\":{}}},"
        "\"lower_bound_seconds\":{},\"seed\":{},\"runs\":[",
        workers.size(), c.cluster.threads, json_number(c.cluster.min_speed), json_number(c.cluster.max_speed),
        c.churn ? "true" : "false", json_number(rtt_lo), json_number(rtt_hi), json_number(c.cluster.head_jitter),
        json_number(bound), c.seed);
    for (std::size_t i = 0; i < runs.size(); ++i) {
      const dx::sim::result& r = runs[i].r;
      out += i ? "," : "";
      out += fmt::format(
          "{{\"policy\":{},\"completed\":{},\"exactly_once\":{},\"makespan\":{},\"ratio_to_oracle\":{},"
          "\"attempts\":{},\"runs_completed\":{},\"discarded_completions\":{},\"recomputes\":{},"
          "\"moves_requested\":{},\"moves_confirmed\":{},\"transfers\":{{\"count\":{},\"bytes\":{},\"seconds\":{}}},"
          "\"scheduler_seconds\":{},\"scheduler_calls\":{},\"decisions\":{},\"decisions_per_second\":{},"
          "\"wall_seconds\":{},\"alerts\":{},\"max_resource_ratio\":{},",
          json_string(dx::sched::to_string(runs[i].policy)), r.completed ? "true" : "false",
          r.exactly_once() ? "true" : "false", json_number(r.makespan), json_number(ratio(runs[i])), r.attempts,
          r.runs_completed, r.discarded_completions, r.recomputes, r.moves_requested, r.moves_confirmed,
          r.transfers.count, r.transfers.bytes, json_number(r.transfers.seconds), json_number(r.scheduler_seconds),
          r.scheduler_calls, r.decisions, json_number(r.decisions_per_second()), json_number(runs[i].wall_seconds),
          r.alerts.size() + r.alerts_dropped, json_number(r.max_resource_ratio));
      out += fmt::format(
          "\"scheduler_profile\":{{{}}},\"forecast\":{{\"taken\":{},\"at\":{},\"predicted_remaining\":{},\"predicted_"
          "sd\":{},"
          "\"actual_remaining\":{},\"relative_error\":{}}},\"accuracy\":[",
          profile_json(r), r.forecast.taken ? "true" : "false", json_number(r.forecast.at),
          json_number(r.forecast.predicted_remaining), json_number(r.forecast.predicted_sd),
          json_number(r.forecast.actual_remaining), json_number(r.forecast.relative_error));
      for (std::size_t k = 0; k < r.accuracy.size(); ++k)
        out += fmt::format("{}{{\"kind\":{},\"samples\":{},\"median_ape\":{},\"recent_ape\":{}}}", k ? "," : "",
                           json_string(r.accuracy[k].kind), r.accuracy[k].samples,
                           json_number(r.accuracy[k].median_ape), json_number(r.accuracy[k].recent_ape));
      out += "]}";
    }
    out += "]}\n";
    std::fputs(out.c_str(), stdout);
    return all_done ? 0 : 1;
  }

  fmt::print("graph {}: {} tasks, {} edges, depth {}, {} kinds; work {:.1f} s, critical path {:.3f} s\n", g.shape,
             g.tasks.size(), g.edges(), g.depth(), g.kinds.size(), work, cp);
  fmt::print(
      "cluster: {} workers x {} threads, speeds {}:{}, round trips {}{} ms{}{}; lower bound {:.3f} s (built in "
      "{:.2f} s)\n\n",
      workers.size(), c.cluster.threads, c.cluster.min_speed, c.cluster.max_speed, 1e3 * rtt_lo,
      rtt_hi > rtt_lo ? fmt::format(":{}", 1e3 * rtt_hi) : "",
      c.cluster.head_jitter > 0 ? fmt::format(" + jitter {} ms", 1e3 * c.cluster.head_jitter) : "",
      c.churn ? ", churn" : "", bound, build_seconds);
  fmt::print("{:<13} {:>10} {:>7} {:>13} {:>9} {:>12} {:>12} {:>11} {:>7}  {}\n", "policy", "makespan", "/oracle",
             "moves req/ok", "forecast", "decisions/s", "sched CPU s", "forecast s", "wall s", "MAPE by kind (median)");
  for (const run& rr : runs) {
    const dx::sim::result& r = rr.r;
    std::string mape;
    for (const auto& a : r.accuracy) mape += fmt::format("{} {:.1f}% ", a.kind, 100 * a.median_ape);
    if (mape.empty()) mape = "-";
    const double q = ratio(rr);
    const double forecast_seconds =
        r.scheduler_profile[static_cast<std::size_t>(dx::sim::scheduler_call::forecast)].seconds;
    fmt::print("{:<13} {:>9.3f}s {:>7} {:>13} {:>9} {:>12.0f} {:>12.2f} {:>11.2f} {:>7.1f}  {}{}\n",
               dx::sched::to_string(rr.policy), r.makespan, std::isnan(q) ? "-" : fmt::format("{:.3f}", q),
               fmt::format("{}/{}", r.moves_requested, r.moves_confirmed),
               r.forecast.taken ? fmt::format("{:+.1f}%", 100 * r.forecast.relative_error) : "-",
               r.decisions_per_second(), r.scheduler_seconds - forecast_seconds, forecast_seconds, rr.wall_seconds,
               mape, r.exactly_once() ? "" : fmt::format(" [INCOMPLETE: {} of {} finished]", r.finished, r.tasks));
  }
  fmt::print("\n{:<13} {:>9} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9}\n", "policy", "attempts", "discarded", "recomputed",
             "returned", "alerts", "transfers", "GB moved");
  for (const run& rr : runs) {
    const dx::sim::result& r = rr.r;
    fmt::print("{:<13} {:>9} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9.2f}\n", dx::sched::to_string(rr.policy), r.attempts,
               r.discarded_completions, r.recomputes, r.returned, r.alerts.size() + r.alerts_dropped, r.transfers.count,
               static_cast<double>(r.transfers.bytes) / 1e9);
  }
  if (c.profile) {
    fmt::print("\nscheduler CPU by entry point (calls, total, per call):\n");
    for (const run& rr : runs) {
      fmt::print("  {}:", dx::sched::to_string(rr.policy));
      for (std::size_t i = 0; i < dx::sim::scheduler_call_count; ++i) {
        const auto& p = rr.r.scheduler_profile[i];
        if (p.seconds < 0.01 * rr.r.scheduler_seconds) continue;
        fmt::print(" {} {}x {:.2f}s {:.1f}us;", dx::sim::to_string(static_cast<dx::sim::scheduler_call>(i)), p.calls,
                   p.seconds, 1e6 * p.seconds / static_cast<double>(p.calls));
      }
      fmt::print("\n");
    }
  }
  for (const run& rr : runs)
    if (!rr.r.unfinished.empty()) {
      fmt::print("\n{}: unfinished tasks, first {}:\n", dx::sched::to_string(rr.policy), rr.r.unfinished.size());
      for (const std::string& u : rr.r.unfinished) fmt::print("  {}\n", u);
    }
  return all_done ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return main_impl(argc, argv);
  } catch (const bad_args& e) {
    std::fprintf(stderr, "dx-sim: %s\nTry 'dx-sim --help'.\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx-sim: %s\n", e.what());
    return 1;
  }
}
