// How fast the scheduler decides: 10,000 simulated workers (speeds 0.25x-4x, learned), a wide
// random DAG of 1,000,000 tasks of 5 kinds (each reads up to 3 of the 1,000 tasks before it),
// driven directly through the scheduler's events with no simulator in between. Completions come
// back in the order tasks were sent. Timed separately:
//   place: decide() calls, which turn ready tasks into run decisions (the decision logic);
//   cycle: every scheduler call of the run (submit, ready, decide, started, finished).
// Prints one RESULT line per round. Usage: dx_bench_decisions [ROUNDS=5] [TASKS=1000000] [WORKERS=10000]
#include "sched/scheduler.hpp"

#include <dx/cost_model.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

struct round_result {
  double place_s = 0, cycle_s = 0;
  std::size_t decisions = 0, placed = 0;
};

round_result run_round(std::size_t n_tasks, std::uint32_t n_workers, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const char* kinds[] = {"k0", "k1", "k2", "k3", "k4"};
  dx::cost_model model;
  // A warm model: every worker has run each kind a few times.
  std::vector<double> speed(n_workers);
  std::uniform_real_distribution<double> log_speed(std::log(0.25), std::log(4.0));
  for (std::uint32_t w = 0; w < n_workers; ++w) {
    speed[w] = std::exp(log_speed(rng));
    const std::string name = "w" + std::to_string(w);
    for (int k = 0; k < 5; ++k)
      for (int i = 0; i < 4; ++i)
        model.observe({.kind = kinds[k], .worker = name, .features = {}, .seconds = 0.01 * (k + 1) * speed[w]});
  }
  dx::sched::config cfg;
  cfg.kind = dx::sched::policy::predictive;
  dx::sched::scheduler sched(cfg, model);
  round_result r;
  double now = 0;
  auto timed = [&](double& acc, auto&& f) {
    const auto t0 = clock_type::now();
    f();
    acc += std::chrono::duration<double>(clock_type::now() - t0).count();
  };
  for (std::uint32_t w = 0; w < n_workers; ++w) {
    dx::sched::worker_spec spec;
    spec.id = w;
    spec.name = "w" + std::to_string(w);
    timed(r.cycle_s, [&] { sched.worker_joined(spec, now); });
  }

  // The graph: dependents and how many inputs each task still waits for.
  std::vector<std::vector<std::uint64_t>> dependents(n_tasks);
  std::vector<std::uint32_t> waiting(n_tasks, 0);
  std::vector<dx::sched::task_spec> specs(n_tasks);
  for (std::size_t i = 0; i < n_tasks; ++i) {
    dx::sched::task_spec& t = specs[i];
    t.id = i + 1;
    t.kind = kinds[rng() % 5];
    const std::size_t k = i == 0 ? 0 : rng() % std::min<std::size_t>(4, i + 1);
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t window = std::min<std::size_t>(i, 1000);
      const std::size_t in = i - 1 - rng() % window;
      if (std::find(t.inputs.begin(), t.inputs.end(), in + 1) != t.inputs.end()) continue;
      t.inputs.push_back(in + 1);
      dependents[in].push_back(i);
      ++waiting[i];
    }
  }
  for (auto& t : specs) timed(r.cycle_s, [&] { sched.task_submitted(t, now); });
  for (std::size_t i = 0; i < n_tasks; ++i)
    if (waiting[i] == 0) timed(r.cycle_s, [&] { sched.task_ready(i + 1, now); });

  std::vector<dx::sched::decision> out;
  std::deque<dx::sched::decision> sent;
  std::size_t finished = 0;
  auto decide = [&] {
    out.clear();
    double spent = 0;
    timed(spent, [&] { sched.decide(now, out); });
    r.place_s += spent;
    r.cycle_s += spent;
    r.decisions += out.size();
    for (auto& d : out)
      if (d.kind == dx::sched::decision_kind::run) {
        ++r.placed;
        sent.push_back(d);
      }
  };
  decide();
  while (finished < n_tasks) {
    if (sent.empty()) {
      decide();
      if (sent.empty()) {
        std::fprintf(stderr, "stalled after %zu tasks\n", finished);
        std::exit(1);
      }
      continue;
    }
    // A batch of completions, then one decide, as a head does per received frame.
    for (int b = 0; b < 64 && !sent.empty(); ++b) {
      const dx::sched::decision d = sent.front();
      sent.pop_front();
      const std::size_t i = d.task - 1;
      const double seconds = 0.01 * (std::stoi(specs[i].kind.substr(1)) + 1) * speed[d.to];
      now += 1e-5;
      timed(r.cycle_s, [&] {
        sched.task_started(d.task, d.to, now);
        sched.task_finished(d.task, d.to, now, seconds, 64, false);
      });
      ++finished;
      for (std::uint64_t dep : dependents[i])
        if (--waiting[dep] == 0) timed(r.cycle_s, [&] { sched.task_ready(dep + 1, now); });
    }
    decide();
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const std::size_t tasks = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1'000'000;
  const auto workers = static_cast<std::uint32_t>(argc > 3 ? std::atoi(argv[3]) : 10'000);
  if (rounds <= 0 || tasks == 0 || workers == 0) {
    std::fprintf(stderr, "usage: %s [ROUNDS>0] [TASKS>0] [WORKERS>0]\n", argv[0]);
    return 2;
  }
  for (int round = 0; round < rounds; ++round) {
    const round_result r = run_round(tasks, workers, 1 + round);
    std::printf(
        "RESULT round=%d tasks=%zu workers=%u decisions=%zu place_s=%.3f decisions_per_s=%.0f cycle_s=%.3f "
        "tasks_per_s=%.0f\n",
        round, tasks, workers, r.decisions, r.place_s, r.placed / r.place_s, r.cycle_s, tasks / r.cycle_s);
    std::fflush(stdout);
  }
  return 0;
}
