// live.cpp — dx's scheduler on a live cluster: placement on workers of different speeds, a random
// DAG, and the forecast, one measurement per process. See run.py for the driver (which also runs
// Dask on the same DAG) and benchmarks/RESULTS.md for the figures.
//
// The head starts copies of this binary as workers (by hand in `hetero`, through
// options::local_processes in `dag`), so main() hands over to dx::worker_main first when started
// as one.
//
// Usage:
//   dx_bench_scheduling hetero POLICY [--tasks 2000] [--ms 5] [--slowdown 3] [--cost-model FILE]
//                                     [--timeout 180]
//       head with head_runs_tasks(false) listening on 127.0.0.1:0; two workers of 1 thread started
//       here (`/proc/self/exe --dx-worker --connect ENDPOINT --threads 1 --name fast`, the second
//       `--name slow --slowdown S`): the names key their speed factors in a warm model. `tasks` x
//       cl.submit(hetero_task, ms) at once (a DX_REMOTE function that sleeps and returns its pid;
//       on the slow worker it takes S times as long), all waited for; makespan from the first
//       submit to the last result. The cost model starts empty (persist_cost_model(false)) unless
//       --cost-model FILE is given: then it is loaded from FILE and saved back to it at the end.
//       The RESULT line says model=warm when the model knew hetero_task at the start.
//   dx_bench_scheduling dag POLICY DAG_FILE [--reps 2] [--timeout 30]
//       local_processes(2) x threads_per_process(1), head_runs_tasks(false), cost model empty at
//       start. The DAG of DAG_FILE (first line: the number of tasks; then one line per task with
//       the indexes of the earlier tasks it depends on) is submitted at once, each task a call of
//       work0 .. work3 (by its number of dependencies) with the dependencies' futures as
//       arguments; each sleeps 1 ms and returns its depth (1 + the largest depth among its
//       arguments), which is checked against the depth computed here. `reps` runs in one
//       cluster: the first starts cold, the later ones with what the first taught the model.
//       Before the cluster starts, 300 x sleep_for(1 ms) are timed (what a 1 ms task costs).
//
// Both modes poll the futures every 1 ms from the main thread; when a quarter of the tasks have
// finished they call cl.forecast() and, at the end, compare its remaining_seconds with the time
// that was actually left. POLICY: predictive, round_robin, random, least_loaded, dask_like.
//
// Output: RESULT lines of key=value pairs. Timing: std::chrono::steady_clock. When a run misses its
// deadline (--timeout seconds from the first submit): a `RESULT mode=stall` line, the head's state
// on stderr, exit code 3.

#include <dx/dx.hpp>

#include "spawn_self.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

// ---- registered functions -----------------------------------------------------------------------

// Sleeps rather than spins, so that two workers and the head do not compete for the 2 cores: the
// measurement is about placement, not about CPU contention.
std::int64_t hetero_task(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<std::int64_t>(::getpid());
}
DX_REMOTE(hetero_task);

namespace {
void sleep_1ms() { std::this_thread::sleep_for(std::chrono::milliseconds(1)); }
}  // namespace

// One function per number of dependencies: a dependency must be a future passed as an argument.
int work0() {
  sleep_1ms();
  return 1;
}
int work1(int a) {
  sleep_1ms();
  return a + 1;
}
int work2(int a, int b) {
  sleep_1ms();
  return std::max(a, b) + 1;
}
int work3(int a, int b, int c) {
  sleep_1ms();
  return std::max({a, b, c}) + 1;
}
DX_REMOTE(work0);
DX_REMOTE(work1);
DX_REMOTE(work2);
DX_REMOTE(work3);

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::optional<dx::scheduling_policy> parse_policy(const std::string& s) {
  if (s == "predictive") return dx::scheduling_policy::predictive;
  if (s == "round_robin") return dx::scheduling_policy::round_robin;
  if (s == "random") return dx::scheduling_policy::random;
  if (s == "least_loaded") return dx::scheduling_policy::least_loaded;
  if (s == "dask_like") return dx::scheduling_policy::dask_like;
  return std::nullopt;
}

std::string flag_value(int argc, char** argv, const char* flag, const std::string& dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return argv[i + 1];
  return dflt;
}

// ---- worker processes started by hand (each needs its own flags) --------------------------------

// A worker: a copy of this program that exits when this process dies (dx::worker_main follows
// DX_WORKER_OF), so a head killed by the driver's timeout leaves nothing behind.
pid_t spawn_self(const std::vector<std::string>& args) {
  try {
    return dx_support::spawn_self(args, {"DX_WORKER_OF=" + std::to_string(::getpid())});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::exit(1);
  }
}

using dx_support::reap_child;

// ---- watching a run -------------------------------------------------------------------------------

struct watched {
  double makespan = 0;     // first submit to last result
  double forecast_at = 0;  // when forecast() was called, from the first submit
  std::size_t done_at_forecast = 0;
  dx::forecast fc;
  double fc_call_s = 0;  // how long forecast() took
  double actual_remaining() const { return makespan - forecast_at; }
  double forecast_error() const {
    const double a = actual_remaining();
    return a > 0 ? std::abs(fc.remaining_seconds - a) / a : 0;
  }
};

[[noreturn]] void stalled(const dx::cluster& cl, const std::string& what, std::size_t done, std::size_t n,
                          const std::vector<pid_t>& children) {
  // A RESULT line too, so that the driver can count stalled runs per policy.
  std::printf("RESULT mode=stall %s done=%zu tasks=%zu\n", what.c_str(), done, n);
  std::fflush(stdout);
  std::fprintf(stderr, "%s: deadline passed with %zu of %zu tasks finished\n", what.c_str(), done, n);
  try {
    for (const auto& w : cl.workers())
      std::fprintf(stderr, "  worker %s pid %lld threads %zu state %d tasks_assigned %zu\n", w.id.c_str(),
                   static_cast<long long>(w.pid), w.threads, static_cast<int>(w.state), w.tasks_assigned);
    const dx::forecast f = cl.forecast();
    std::fprintf(stderr, "  forecast: %zu tasks left, %.3f s remaining, bottleneck '%s'\n", f.tasks_left,
                 f.remaining_seconds, f.bottleneck.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "  (head state unavailable: %s)\n", e.what());
  }
  std::fflush(stderr);
  // The cluster's destructor would wait for the lost work: leave without it.
  for (pid_t p : children) ::kill(p, SIGKILL);
  std::_Exit(3);
}

// Polls every 1 ms until a quarter of the futures are ready, asks for a forecast, then waits for
// the rest; all bounded by `deadline`.
template <class Future>
watched watch(const dx::cluster& cl, const std::vector<Future>& fs, Clock::time_point t0, Clock::time_point deadline,
              const std::string& what, const std::vector<pid_t>& children) {
  watched w;
  const std::size_t n = fs.size();
  const std::size_t quarter = (n + 3) / 4;
  std::vector<std::size_t> pending(n);
  for (std::size_t i = 0; i < n; ++i) pending[i] = i;
  for (;;) {
    std::erase_if(pending, [&](std::size_t i) { return fs[i].is_ready(); });
    if (n - pending.size() >= quarter) break;
    if (Clock::now() > deadline) stalled(cl, what, n - pending.size(), n, children);
    std::this_thread::sleep_for(1ms);
  }
  const auto tf = Clock::now();
  w.done_at_forecast = n - pending.size();
  w.fc = cl.forecast();
  w.fc_call_s = secs(tf, Clock::now());
  w.forecast_at = secs(t0, tf);
  for (std::size_t k = 0; k < pending.size(); ++k) {
    if (fs[pending[k]].wait_until(deadline) != dx::future_status::ready) {
      std::size_t done = n - pending.size() + k;
      stalled(cl, what, done, n, children);
    }
  }
  w.makespan = secs(t0, Clock::now());
  return w;
}

void print_forecast(const watched& w) {
  // "worker slow" -> "worker:slow": a value of a RESULT line has no spaces
  std::string bottleneck = w.fc.bottleneck.empty() ? "-" : w.fc.bottleneck;
  std::replace(bottleneck.begin(), bottleneck.end(), ' ', ':');
  std::printf(
      " forecast_at_s=%.4f done_at_forecast=%zu predicted_remaining_s=%.4f predicted_sd_s=%.4f "
      "predicted_lower_bound_s=%.4f predicted_tasks_left=%zu actual_remaining_s=%.4f forecast_error=%.4f "
      "forecast_call_ms=%.3f bottleneck=%s",
      w.forecast_at, w.done_at_forecast, w.fc.remaining_seconds, w.fc.remaining_sd, w.fc.lower_bound_seconds,
      w.fc.tasks_left, w.actual_remaining(), w.forecast_error(), w.fc_call_s * 1e3, bottleneck.c_str());
  // What the forecast counted as still placed on each worker (held at the head or sent).
  for (const auto& b : w.fc.workers)
    std::printf(" fc_%s_tasks=%zu fc_%s_backlog_s=%.4f", b.id.c_str(), b.tasks, b.id.c_str(), b.backlog_seconds);
}

// Speed factor of the slow worker over the fast one as the model holds it.
double factor_ratio(const dx::cost_model& m) { return m.worker_factor("slow") / m.worker_factor("fast"); }

// ---- (1) heterogeneous workers --------------------------------------------------------------------

int hetero(const std::string& policy_name, dx::scheduling_policy policy, int argc, char** argv) {
  const long tasks = std::atol(flag_value(argc, argv, "--tasks", "2000").c_str());
  const int ms = std::atoi(flag_value(argc, argv, "--ms", "5").c_str());
  const std::string slowdown = flag_value(argc, argv, "--slowdown", "3");
  const std::string model_file = flag_value(argc, argv, "--cost-model", "");
  const double timeout = std::atof(flag_value(argc, argv, "--timeout", "180").c_str());

  dx::options opts =
      dx::options{}.listen("127.0.0.1:0").head_runs_tasks(false).scheduling(policy).persist_cost_model(false);
  if (!model_file.empty()) opts.persist_cost_model(true).cost_model_file(model_file);

  const auto s0 = Clock::now();
  auto cl = std::make_unique<dx::cluster>(opts);
  std::vector<pid_t> children;
  // Named, so that a warm cost model gives each its own speed factor whatever the order of joining.
  children.push_back(spawn_self({"--dx-worker", "--connect", cl->endpoint(), "--threads", "1", "--name", "fast"}));
  children.push_back(spawn_self(
      {"--dx-worker", "--connect", cl->endpoint(), "--threads", "1", "--name", "slow", "--slowdown", slowdown}));
  cl->wait_for_workers(2, 20s);
  const double startup = secs(s0, Clock::now());
  const pid_t fast_pid = children[0];
  const dx::cost_model before = cl->cost_model_snapshot();
  const bool calibrated_at_start = before.calibrated("hetero_task");

  std::vector<dx::future<std::int64_t>> fs;
  fs.reserve(static_cast<std::size_t>(tasks));
  const auto t0 = Clock::now();
  for (long i = 0; i < tasks; ++i) fs.push_back(cl->submit(hetero_task, ms));
  const double submit_s = secs(t0, Clock::now());
  const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout));
  const watched w = watch(*cl, fs, t0, deadline, "run=hetero policy=" + policy_name, children);

  long fast = 0, slow = 0;
  for (auto& f : fs) {
    const std::int64_t pid = f.get();
    if (pid == fast_pid) {
      ++fast;
    } else if (pid == children[1]) {
      ++slow;
    } else {
      std::fprintf(stderr, "a task ran in an unknown process %lld\n", static_cast<long long>(pid));
      return 2;
    }
  }
  const double f_ratio_end = factor_ratio(cl->cost_model_snapshot());
  const double sd = std::atof(slowdown.c_str());
  // Both workers busy to the end: tasks x (fast time) x (slow time) / (fast time + slow time).
  const double ideal = static_cast<double>(tasks) * (ms * 1e-3) * sd / (1 + sd);
  std::printf(
      "RESULT mode=hetero policy=%s model=%s tasks=%ld task_ms=%d slowdown=%s makespan_s=%.4f ideal_s=%.4f "
      "fast_tasks=%ld slow_tasks=%ld fast_share=%.4f submit_s=%.4f startup_s=%.4f calibrated_at_start=%d "
      "factor_ratio_start=%.3f factor_ratio_end=%.3f",
      policy_name.c_str(), calibrated_at_start ? "warm" : "cold", tasks, ms, slowdown.c_str(), w.makespan, ideal, fast,
      slow, static_cast<double>(fast) / static_cast<double>(tasks), submit_s, startup, calibrated_at_start ? 1 : 0,
      factor_ratio(before), f_ratio_end);
  print_forecast(w);
  std::printf("\n");
  std::fflush(stdout);

  cl.reset();  // stops the workers (and saves the cost model when it persists)
  for (pid_t p : children)
    if (!reap_child(p, 10s)) std::fprintf(stderr, "worker %d did not exit within 10 s; killed\n", static_cast<int>(p));
  return 0;
}

// ---- (2) random DAG -------------------------------------------------------------------------------

std::vector<std::vector<int>> read_dag(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::exit(1);
  }
  std::string line;
  std::getline(in, line);
  const long n = std::atol(line.c_str());
  std::vector<std::vector<int>> deps;
  while (static_cast<long>(deps.size()) < n && std::getline(in, line)) {
    std::istringstream s(line);
    std::vector<int> d;
    for (int j; s >> j;) {
      if (j < 0 || j >= static_cast<int>(deps.size())) {
        std::fprintf(stderr, "%s: task %zu depends on %d, not an earlier task\n", path.c_str(), deps.size(), j);
        std::exit(1);
      }
      d.push_back(j);
    }
    if (d.size() > 3) {
      std::fprintf(stderr, "%s: task %zu has %zu dependencies (at most 3)\n", path.c_str(), deps.size(), d.size());
      std::exit(1);
    }
    deps.push_back(std::move(d));
  }
  if (static_cast<long>(deps.size()) != n || n <= 0) {
    std::fprintf(stderr, "%s: expected %ld tasks, read %zu\n", path.c_str(), n, deps.size());
    std::exit(1);
  }
  return deps;
}

int dag(const std::string& policy_name, dx::scheduling_policy policy, const std::string& path, int argc, char** argv) {
  const int reps = std::atoi(flag_value(argc, argv, "--reps", "2").c_str());
  const double timeout = std::atof(flag_value(argc, argv, "--timeout", "30").c_str());
  const auto deps = read_dag(path);
  const std::size_t n = deps.size();
  std::vector<int> depth(n);
  std::size_t edges = 0;
  for (std::size_t i = 0; i < n; ++i) {
    int m = 0;
    for (int j : deps[i]) m = std::max(m, depth[static_cast<std::size_t>(j)]);
    depth[i] = m + 1;
    edges += deps[i].size();
  }
  const int critical_path = *std::max_element(depth.begin(), depth.end());

  // What a 1 ms task really costs here (as dask_tasks.py's sleep_cost), measured while idle.
  const int sleeps = 300;
  const auto q0 = Clock::now();
  for (int i = 0; i < sleeps; ++i) sleep_1ms();
  const double sleep_cost = secs(q0, Clock::now()) / sleeps;

  const auto s0 = Clock::now();
  dx::cluster cl{dx::options{}
                     .local_processes(2)
                     .threads_per_process(1)
                     .head_runs_tasks(false)
                     .scheduling(policy)
                     .persist_cost_model(false)};
  const double startup = secs(s0, Clock::now());
  const double ideal = static_cast<double>(n) * 1e-3 / 2;
  const double ideal_sleep = static_cast<double>(n) * sleep_cost / 2;

  for (int rep = 0; rep < reps; ++rep) {
    std::vector<dx::shared_future<int>> fs;
    fs.reserve(n);
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < n; ++i) {
      const auto& d = deps[i];
      auto at = [&](std::size_t k) { return fs[static_cast<std::size_t>(d[k])]; };
      switch (d.size()) {
        case 0:
          fs.push_back(cl.submit(work0).share());
          break;
        case 1:
          fs.push_back(cl.submit(work1, at(0)).share());
          break;
        case 2:
          fs.push_back(cl.submit(work2, at(0), at(1)).share());
          break;
        default:
          fs.push_back(cl.submit(work3, at(0), at(1), at(2)).share());
          break;
      }
    }
    const double submit_s = secs(t0, Clock::now());
    const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout));
    const watched w = watch(cl, fs, t0, deadline, "run=dag policy=" + policy_name + " rep=" + std::to_string(rep), {});
    for (std::size_t i = 0; i < n; ++i) {
      const int v = fs[i].get();
      if (v != depth[i]) {
        std::fprintf(stderr, "task %zu returned depth %d, expected %d\n", i, v, depth[i]);
        return 2;
      }
    }
    std::printf(
        "RESULT mode=dag system=dx policy=%s rep=%d model=%s tasks=%zu edges=%zu critical_path=%d makespan_s=%.4f "
        "ideal_s=%.4f ideal_sleep_s=%.4f sleep_cost_ms=%.4f ratio=%.4f ratio_sleep=%.4f submit_s=%.4f "
        "startup_s=%.4f",
        policy_name.c_str(), rep, rep == 0 ? "cold" : "warm", n, edges, critical_path, w.makespan, ideal, ideal_sleep,
        sleep_cost * 1e3, w.makespan / ideal, w.makespan / ideal_sleep, submit_s, startup);
    print_forecast(w);
    std::printf("\n");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  const std::string policy_name = argc > 2 ? argv[2] : "";
  const auto policy = parse_policy(policy_name);
  if (policy && mode == "hetero") return hetero(policy_name, *policy, argc, argv);
  if (policy && mode == "dag" && argc > 3) return dag(policy_name, *policy, argv[3], argc, argv);
  std::fprintf(stderr,
               "usage: %s hetero POLICY [--tasks 2000] [--ms 5] [--slowdown 3] [--cost-model FILE] [--timeout 180]\n"
               "       %s dag POLICY DAG_FILE [--reps 2] [--timeout 30]\n"
               "POLICY: predictive, round_robin, random, least_loaded, dask_like\n",
               argv[0], argv[0]);
  return 1;
}
