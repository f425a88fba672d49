// local_tasks.cpp — local task overhead of dx against oneTBB and OpenMP, 2 threads, one binary.
//
// The peer kernels (tbb, omp) mirror ../shared/peers/local_tasks.cpp exactly, so that the figures
// here can be compared with the peer baselines in BENCHMARKS.md; dx's kernels do the same work
// through dx's own API. See benchmarks/RESULTS.md for the figures and run.py for the driver.
//
// Usage:
//   dx_bench_local_tasks <dx|tbb|omp> <bench> [reps=3]   1 untimed warm-up, then `reps` timed reps,
//                                                        one RESULT line per timed rep
//   dx_bench_local_tasks <dx|tbb|omp> <bench> --check    one run with counting task bodies: every
//                                                        task ran once, results right, DAG order kept
//   dx_bench_local_tasks <dx|tbb|omp> wavefront_repeat   (d) 10 times in one process, RSS after each
//   dx_bench_local_tasks --idle-cpu [dx|tbb|omp] [secs=10]  CPU use of an idle, warmed-up pool
//
// Benches (all task bodies are empty outside --check):
//   independent   spawn + wait 1,000,000 tasks. dx prints two variants per rep: `independent` (a
//                 task_group driven from the main thread, which is not a worker: 3 threads on 2
//                 cores) and `independent_in` (the same loop inside one task on the executor, as
//                 oneTBB's main thread joins its arena). tbb: task_group from main. omp: task x 1M.
//   fib30, fib25  recursive fib, a task per call (every call but the root), both children spawned,
//                 then wait. dx: a task_group per call, started on the executor (submit().get()).
//   chain         100,000 dependent tasks. dx: task_graph (emplace + precede) run by ex.run(g);
//                 tbb: flow graph continue_node + make_edge; omp: depend(in/out).
//   wavefront     500x500 grid, node (i,j) after (i-1,j) and (i,j-1); built like chain.
//   futures       1,000,000 results. dx: ex.submit([] { return 1; }) from main into a
//                 vector<future<int>>, then when_all(...).get() and a sum; tbb: task_group runs
//                 writing into a preallocated vector + wait; omp: task x 1M writing into a vector.
//
// RESULT fields: build_s/run_s/teardown_s (build = create the graph, run = execute it, teardown =
// destroy it; for non-graph benches everything is run), total_s = their sum, ns_per_task =
// total / tasks, ns_per_task_run = run / tasks, maxrss_kb = the process's peak RSS so far
// (getrusage ru_maxrss; on Linux it includes the launching process's peak, see hwm_kb()),
// hwm_kb = the peak RSS of this process image alone (VmHWM). Timing: std::chrono::steady_clock.

#include <dx/executor.hpp>
#include <dx/future.hpp>
#include <dx/task_graph.hpp>
#include <dx/task_group.hpp>
#include <dx/version.hpp>
#include <dx/when_all.hpp>

#include <omp.h>
#include <sys/resource.h>
#include <tbb/flow_graph.h>
#include <tbb/global_control.h>
#include <tbb/task_group.h>
#include <tbb/version.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kThreads = 2;
constexpr long kIndependent = 1000000;
constexpr long kFutures = 1000000;
constexpr long kChain = 100000;
constexpr long kGrid = 500;
constexpr int kRepeat = 10;  // wavefront_repeat

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// ------------------------------------------------------------------------------------------------
// Task bodies. Outside --check a body is one load of a global flag, as in the peer file.

bool g_check = false;
std::atomic<long> g_count{0};
std::atomic<long> g_other{0};  // tasks run by a thread other than the spawning one (check mode)
std::thread::id g_spawner;     // the thread that spawns (main, or the dx task of independent_in)
inline void body() {
  if (g_check) {
    g_count.fetch_add(1, std::memory_order_relaxed);
    if (std::this_thread::get_id() != g_spawner) g_other.fetch_add(1, std::memory_order_relaxed);
  }
}

// DAG order check (check mode only): node k must see its predecessors done before it runs.
std::unique_ptr<std::atomic<char>[]> g_done;
std::atomic<long> g_order_errors{0};
void dag_body(long k, long pred_a, long pred_b) {
  body();
  if (pred_a >= 0 && !g_done[pred_a].load(std::memory_order_acquire)) g_order_errors.fetch_add(1);
  if (pred_b >= 0 && !g_done[pred_b].load(std::memory_order_acquire)) g_order_errors.fetch_add(1);
  if (g_done[k].exchange(1, std::memory_order_acq_rel) != 0) g_order_errors.fetch_add(1);  // ran twice
}
// Predecessors of node k: chain k-1; wavefront (i-1,j) and (i,j-1).
void preds(bool wavefront, long k, long& a, long& b) {
  a = b = -1;
  if (!wavefront) {
    if (k > 0) a = k - 1;
    return;
  }
  long i = k / kGrid, j = k % kGrid;
  if (i > 0) a = (i - 1) * kGrid + j;
  if (j > 0) b = k - 1;
}

// Calls edge(from, to) for every edge of the chain or the wavefront, in the order the peer
// benchmark adds them.
template <class Edge>
void for_each_edge(bool wavefront, long n, Edge edge) {
  if (!wavefront) {
    for (long k = 1; k < n; ++k) edge(k - 1, k);
    return;
  }
  for (long i = 0; i < kGrid; ++i)
    for (long j = 0; j < kGrid; ++j) {
      if (j > 0) edge(i * kGrid + j - 1, i * kGrid + j);
      if (i > 0) edge((i - 1) * kGrid + j, i * kGrid + j);
    }
}

struct Result {
  long tasks = 0;
  double build = 0, run = 0, teardown = 0;  // seconds
  long value = 0;                           // fib value or futures sum, for checking
};

// A DAG bench's result from the four instants that split build, run and teardown.
Result dag_result(long n, Clock::time_point t0, Clock::time_point t1, Clock::time_point t2, Clock::time_point t3) {
  Result r;
  r.build = secs(t0, t1);
  r.run = secs(t1, t2);
  r.teardown = secs(t2, t3);
  r.tasks = n;
  return r;
}

long fib_calls(int n) {  // calls made by naive fib(n) = 2*F(n+1) - 1
  long a = 0, b = 1;
  for (int i = 0; i < n + 1; ++i) {
    long t = a + b;
    a = b;
    b = t;
  }
  return 2 * a - 1;
}
long fib_seq(int n) { return n < 2 ? n : fib_seq(n - 1) + fib_seq(n - 2); }

long maxrss_kb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}
// Peak resident set of this process image, from /proc/self/status. Unlike ru_maxrss, which Linux
// carries over from the parent across fork + exec (a python launcher's ~16 MB shows up in every
// child), VmHWM starts afresh at exec.
long hwm_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}
long rss_kb() {  // current resident set, from /proc/self/statm
  long pages_total = 0, pages_resident = 0;
  std::ifstream f("/proc/self/statm");
  f >> pages_total >> pages_resident;
  return pages_resident * (sysconf(_SC_PAGESIZE) / 1024);
}

// ------------------------------------------------------------------------------------------------
// dx

namespace dximpl {

dx::executor* g_ex = nullptr;

Result independent_main() {  // the main thread (not a worker) spawns and waits
  Result r;
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
  {
    dx::task_group tg{*g_ex};
    for (long i = 0; i < kIndependent; ++i) tg.run([] { body(); });
    tg.wait();
  }
  r.run = secs(t0, Clock::now());
  r.tasks = kIndependent;
  return r;
}

Result independent_in() {  // the same loop inside one task on the executor
  Result r;
  dx::executor& ex = *g_ex;
  auto t0 = Clock::now();
  ex.submit([&ex] {
      g_spawner = std::this_thread::get_id();
      dx::task_group tg{ex};
      for (long i = 0; i < kIndependent; ++i) tg.run([] { body(); });
      tg.wait();
    }).get();
  r.run = secs(t0, Clock::now());
  r.tasks = kIndependent;
  return r;
}

long fib(dx::executor& ex, int n) {
  if (n < 2) {
    body();
    return n;
  }
  long x = 0, y = 0;
  dx::task_group tg{ex};
  tg.run([&] { x = fib(ex, n - 1); });
  tg.run([&] { y = fib(ex, n - 2); });
  tg.wait();
  body();
  return x + y;
}

Result fibr(int n) {
  Result r;
  dx::executor& ex = *g_ex;
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
  r.value = ex.submit([&ex, n] { return fib(ex, n); }).get();
  r.run = secs(t0, Clock::now());
  r.tasks = fib_calls(n) - 1;
  return r;
}

template <bool Check>
Result dag(bool wavefront) {
  const long n = wavefront ? kGrid * kGrid : kChain;
  auto t0 = Clock::now();
  auto g = std::make_unique<dx::task_graph>();
  std::vector<dx::graph_task> nodes;
  nodes.reserve(n);
  for (long k = 0; k < n; ++k) {
    if constexpr (Check) {
      long a, b;
      preds(wavefront, k, a, b);
      nodes.push_back(g->emplace([k, a, b] { dag_body(k, a, b); }));
    } else {
      nodes.push_back(g->emplace([] { body(); }));
    }
  }
  for_each_edge(wavefront, n, [&](long from, long to) { nodes[from].precede(nodes[to]); });
  auto t1 = Clock::now();
  g_ex->run(*g).get();
  auto t2 = Clock::now();
  nodes.clear();
  nodes.shrink_to_fit();
  g.reset();
  auto t3 = Clock::now();
  return dag_result(n, t0, t1, t2, t3);
}

Result futures() {
  Result r;
  dx::executor& ex = *g_ex;
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
  std::vector<dx::future<int>> v;
  v.reserve(kFutures);
  for (long i = 0; i < kFutures; ++i) {
    v.push_back(ex.submit([] {
      body();
      return 1;
    }));
  }
  std::vector<int> values = dx::when_all(std::move(v)).get();
  r.value = std::accumulate(values.begin(), values.end(), 0L);
  r.run = secs(t0, Clock::now());
  r.tasks = kFutures;
  return r;
}

}  // namespace dximpl

// ------------------------------------------------------------------------------------------------
// oneTBB: as in the peer file.

namespace tbbimpl {
using namespace tbb::flow;

Result independent() {
  Result r;
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
  tbb::task_group tg;
  for (long i = 0; i < kIndependent; ++i) tg.run([] { body(); });
  tg.wait();
  r.run = secs(t0, Clock::now());
  r.tasks = kIndependent;
  return r;
}

long fib(int n) {
  if (n < 2) {
    body();
    return n;
  }
  long x = 0, y = 0;
  tbb::task_group tg;
  tg.run([&] { x = fib(n - 1); });
  tg.run([&] { y = fib(n - 2); });
  tg.wait();
  body();
  return x + y;
}

Result fibr(int n) {
  Result r;
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
  r.value = fib(n);
  r.run = secs(t0, Clock::now());
  r.tasks = fib_calls(n) - 1;
  return r;
}

using Node = continue_node<continue_msg>;

template <bool Check>
Result dag(bool wavefront) {
  const long n = wavefront ? kGrid * kGrid : kChain;
  auto t0 = Clock::now();
  auto g = std::make_unique<graph>();
  std::vector<std::unique_ptr<Node>> nodes;
  nodes.reserve(n);
  for (long k = 0; k < n; ++k) {
    if constexpr (Check) {
      long a, b;
      preds(wavefront, k, a, b);
      nodes.emplace_back(new Node(*g, [k, a, b](const continue_msg&) { dag_body(k, a, b); }));
    } else {
      nodes.emplace_back(new Node(*g, [](const continue_msg&) { body(); }));
    }
  }
  for_each_edge(wavefront, n, [&](long from, long to) { make_edge(*nodes[from], *nodes[to]); });
  auto t1 = Clock::now();
  nodes[0]->try_put(continue_msg());
  g->wait_for_all();
  auto t2 = Clock::now();
  nodes.clear();
  g.reset();
  auto t3 = Clock::now();
  return dag_result(n, t0, t1, t2, t3);
}

Result futures() {
  Result r;
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
  std::vector<int> out(kFutures);
  tbb::task_group tg;
  for (long i = 0; i < kFutures; ++i) {
    tg.run([&out, i] {
      body();
      out[i] = 1;
    });
  }
  tg.wait();
  r.value = std::accumulate(out.begin(), out.end(), 0L);
  r.run = secs(t0, Clock::now());
  r.tasks = kFutures;
  return r;
}

}  // namespace tbbimpl

// ------------------------------------------------------------------------------------------------
// OpenMP (libgomp): as in the peer file.

namespace ompimpl {

Result independent() {
  Result r;
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
#pragma omp parallel num_threads(kThreads)
#pragma omp single
  {
    if (g_check) g_spawner = std::this_thread::get_id();
    for (long i = 0; i < kIndependent; ++i) {
#pragma omp task
      body();
    }
  }
  r.run = secs(t0, Clock::now());
  r.tasks = kIndependent;
  return r;
}

long fib(int n) {
  if (n < 2) {
    body();
    return n;
  }
  long x = 0, y = 0;
#pragma omp task shared(x)
  x = fib(n - 1);
#pragma omp task shared(y)
  y = fib(n - 2);
#pragma omp taskwait
  body();
  return x + y;
}

Result fibr(int n) {
  Result r;
  auto t0 = Clock::now();
  long v = 0;
#pragma omp parallel num_threads(kThreads)
#pragma omp single
  {
    g_spawner = std::this_thread::get_id();
    v = fib(n);
  }
  r.run = secs(t0, Clock::now());
  r.value = v;
  r.tasks = fib_calls(n) - 1;
  return r;
}

// Check = true adds the order check (dag_body) to the task bodies; Check = false is the peer
// file's code exactly (the discarded branch captures nothing).
template <bool Check>
Result chain() {
  Result r;
  std::vector<char> dv(kChain);
  [[maybe_unused]] char* d = dv.data();
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
#pragma omp parallel num_threads(kThreads)
#pragma omp single
  {
    if (g_check) g_spawner = std::this_thread::get_id();
#pragma omp task depend(out : d[0])
    {
      if constexpr (Check) {
        dag_body(0, -1, -1);
      } else {
        body();
      }
    }
    for (long i = 1; i < kChain; ++i) {
#pragma omp task depend(in : d[i - 1]) depend(out : d[i])
      {
        if constexpr (Check) {
          dag_body(i, i - 1, -1);
        } else {
          body();
        }
      }
    }
  }
  r.run = secs(t0, Clock::now());
  r.tasks = kChain;
  return r;
}

template <bool Check>
Result wavefront() {
  Result r;
  const long N = kGrid;
  std::vector<char> dv(N * N);
  [[maybe_unused]] char* d = dv.data();
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
#pragma omp parallel num_threads(kThreads)
#pragma omp single
  {
    if (g_check) g_spawner = std::this_thread::get_id();
    for (long i = 0; i < N; ++i)
      for (long j = 0; j < N; ++j) {
        [[maybe_unused]] char* me = &d[i * N + j];
        [[maybe_unused]] const long k = i * N + j;
        if (i > 0 && j > 0) {
          [[maybe_unused]] char* up = &d[(i - 1) * N + j];
          [[maybe_unused]] char* left = &d[i * N + j - 1];
#pragma omp task depend(in : up[0], left[0]) depend(out : me[0])
          {
            if constexpr (Check) {
              dag_body(k, k - N, k - 1);
            } else {
              body();
            }
          }
        } else if (i > 0) {
          [[maybe_unused]] char* up = &d[(i - 1) * N + j];
#pragma omp task depend(in : up[0]) depend(out : me[0])
          {
            if constexpr (Check) {
              dag_body(k, k - N, -1);
            } else {
              body();
            }
          }
        } else if (j > 0) {
          [[maybe_unused]] char* left = &d[i * N + j - 1];
#pragma omp task depend(in : left[0]) depend(out : me[0])
          {
            if constexpr (Check) {
              dag_body(k, k - 1, -1);
            } else {
              body();
            }
          }
        } else {
#pragma omp task depend(out : me[0])
          {
            if constexpr (Check) {
              dag_body(k, -1, -1);
            } else {
              body();
            }
          }
        }
      }
  }
  r.run = secs(t0, Clock::now());
  r.tasks = N * N;
  return r;
}

Result futures() {
  Result r;
  g_spawner = std::this_thread::get_id();
  auto t0 = Clock::now();
  std::vector<int> out(kFutures);
  int* o = out.data();
#pragma omp parallel num_threads(kThreads)
#pragma omp single
  {
    if (g_check) g_spawner = std::this_thread::get_id();
    for (long i = 0; i < kFutures; ++i) {
#pragma omp task firstprivate(i)
      {
        body();
        o[i] = 1;
      }
    }
#pragma omp taskwait
  }
  r.value = std::accumulate(out.begin(), out.end(), 0L);
  r.run = secs(t0, Clock::now());
  r.tasks = kFutures;
  return r;
}

}  // namespace ompimpl

// ------------------------------------------------------------------------------------------------

const char* const kBenches[] = {"independent", "independent_in", "fib30", "fib25", "chain", "wavefront", "futures"};

// The benches a command-line bench name stands for: dx's `independent` measures both variants.
std::vector<std::string> variants(const std::string& sys, const std::string& bench) {
  if (sys == "dx" && bench == "independent") return {"independent", "independent_in"};
  return {bench};
}

// One repetition of `bench` on `sys`.
Result run_one(const std::string& sys, const std::string& bench) {
  if (sys == "dx") {
    if (bench == "independent") return dximpl::independent_main();
    if (bench == "independent_in") return dximpl::independent_in();
    if (bench == "fib30") return dximpl::fibr(30);
    if (bench == "fib25") return dximpl::fibr(25);
    if (bench == "chain") return g_check ? dximpl::dag<true>(false) : dximpl::dag<false>(false);
    if (bench == "wavefront") return g_check ? dximpl::dag<true>(true) : dximpl::dag<false>(true);
    if (bench == "futures") return dximpl::futures();
  } else if (sys == "tbb") {
    if (bench == "independent") return tbbimpl::independent();
    if (bench == "fib30") return tbbimpl::fibr(30);
    if (bench == "fib25") return tbbimpl::fibr(25);
    if (bench == "chain") return g_check ? tbbimpl::dag<true>(false) : tbbimpl::dag<false>(false);
    if (bench == "wavefront") return g_check ? tbbimpl::dag<true>(true) : tbbimpl::dag<false>(true);
    if (bench == "futures") return tbbimpl::futures();
  } else if (sys == "omp") {
    if (bench == "independent") return ompimpl::independent();
    if (bench == "fib30") return ompimpl::fibr(30);
    if (bench == "fib25") return ompimpl::fibr(25);
    if (bench == "chain") return g_check ? ompimpl::chain<true>() : ompimpl::chain<false>();
    if (bench == "wavefront") return g_check ? ompimpl::wavefront<true>() : ompimpl::wavefront<false>();
    if (bench == "futures") return ompimpl::futures();
  }
  std::fprintf(stderr, "unknown system/bench: %s %s\n", sys.c_str(), bench.c_str());
  std::exit(2);
}

bool is_dag(const std::string& bench) { return bench == "chain" || bench == "wavefront"; }

// --check: one run with counting bodies; verifies counts, values and (DAGs) order.
int check(const std::string& sys, const std::string& bench) {
  g_check = true;
  bool all_ok = true;
  for (int rep = 0; rep < 2; ++rep) {  // twice: the second run reuses warmed-up pools
    for (const std::string& name : variants(sys, bench)) {
      g_count.store(0);
      g_other.store(0);
      g_order_errors.store(0);
      const long n = name == "chain" ? kChain : kGrid * kGrid;
      if (is_dag(name)) {
        g_done.reset(new std::atomic<char>[n]);
        for (long k = 0; k < n; ++k) g_done[k].store(0, std::memory_order_relaxed);
      }
      Result r = run_one(sys, name);
      long expect = r.tasks;
      bool fib = name == "fib30" || name == "fib25";
      if (fib) expect = r.tasks + 1;  // + the root call
      long got = g_count.exchange(0);
      long other = g_other.exchange(0);
      bool ok = got == expect;
      std::string extra;
      if (fib) {
        long want = fib_seq(name == "fib30" ? 30 : 25);
        ok = ok && r.value == want;
        extra = " value=" + std::to_string(r.value) + " want=" + std::to_string(want);
      }
      if (name == "futures") {
        ok = ok && r.value == kFutures;
        extra = " sum=" + std::to_string(r.value) + " want=" + std::to_string(kFutures);
      }
      if (is_dag(name)) {
        long done = 0;
        for (long k = 0; k < n; ++k) done += g_done[k].load();
        long errs = g_order_errors.load();
        ok = ok && errs == 0 && done == n;
        extra = " order_errors=" + std::to_string(errs) + " done=" + std::to_string(done);
      }
      std::printf("CHECK system=%s bench=%s run=%d executed=%ld expected=%ld on_other_thread=%.1f%%%s %s\n",
                  sys.c_str(), name.c_str(), rep + 1, got, expect, 100.0 * other / std::max(1L, got), extra.c_str(),
                  ok ? "OK" : "FAIL");
      std::fflush(stdout);
      all_ok = all_ok && ok;
    }
  }
  return all_ok ? 0 : 1;
}

// --idle-cpu: a warmed-up, idle pool's CPU use (user + sys of the whole process).
int idle_cpu(const std::string& sys, double seconds) {
  std::optional<dx::executor> ex;
  std::unique_ptr<tbb::global_control> gc;
  if (sys == "dx") {
    ex.emplace(kThreads);
    if (ex->submit([] { return 1; }).get() != 1) return 1;
  } else if (sys == "tbb") {
    gc = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism, kThreads);
    tbb::task_group tg;
    tg.run([] {});
    tg.wait();
  } else if (sys == "omp") {
    int x = 0;
#pragma omp parallel num_threads(kThreads)
#pragma omp single
    {
#pragma omp task shared(x)
      x = 1;
    }
    if (x != 1) return 1;
  } else {
    std::fprintf(stderr, "unknown system: %s\n", sys.c_str());
    return 2;
  }
  auto cpu = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
  };
  double c0 = cpu();
  auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  double c1 = cpu();
  double wall = secs(t0, Clock::now());
  std::printf("IDLE system=%s wall_s=%.3f cpu_s=%.6f cpu_percent_of_one_core=%.4f\n", sys.c_str(), wall, c1 - c0,
              100.0 * (c1 - c0) / wall);
  return 0;
}

// wavefront_repeat: (d) 10 times in one process; RSS after each run shows whether memory grows.
int wavefront_repeat(const std::string& sys) {
  for (int it = 1; it <= kRepeat; ++it) {
    Result r = run_one(sys, "wavefront");
    std::printf("REPEAT system=%s bench=wavefront iter=%d total_s=%.6f rss_kb=%ld hwm_kb=%ld maxrss_kb=%ld\n",
                sys.c_str(), it, r.build + r.run + r.teardown, rss_kb(), hwm_kb(), maxrss_kb());
    std::fflush(stdout);
  }
  return 0;
}

void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s <dx|tbb|omp> <bench> [reps=3]\n"
               "       %s <dx|tbb|omp> <bench> --check\n"
               "       %s <dx|tbb|omp> wavefront_repeat\n"
               "       %s --idle-cpu [dx|tbb|omp] [seconds=10]\n"
               "benches:",
               argv0, argv0, argv0, argv0);
  for (const char* b : kBenches) std::fprintf(stderr, " %s", b);
  std::fprintf(stderr, " (independent_in: dx only; dx independent runs both variants)\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--idle-cpu") == 0) {
    return idle_cpu(argc >= 3 ? argv[2] : "dx", argc >= 4 ? std::atof(argv[3]) : 10.0);
  }
  if (argc < 3) {
    usage(argv[0]);
    return 2;
  }
  const std::string sys = argv[1], bench = argv[2];
  bool check_mode = false;
  int reps = 3;
  for (int i = 3; i < argc; ++i) {
    if (std::strcmp(argv[i], "--check") == 0) {
      check_mode = true;
    } else {
      reps = std::atoi(argv[i]);
    }
  }
  if (sys != "dx" && sys != "tbb" && sys != "omp") {
    usage(argv[0]);
    return 2;
  }

  std::optional<dx::executor> ex;
  std::unique_ptr<tbb::global_control> gc;
  if (sys == "dx") {
    ex.emplace(kThreads);
    dximpl::g_ex = &*ex;
  } else if (sys == "tbb") {
    gc = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism, kThreads);
  }
  std::printf("# dx=%d.%d.%d tbb(compile)=%s tbb(runtime)=%s _OPENMP=%d threads=%d\n", DX_VERSION_MAJOR,
              DX_VERSION_MINOR, DX_VERSION_PATCH, TBB_VERSION_STRING, TBB_runtime_version(), _OPENMP, kThreads);

  if (check_mode) return check(sys, bench);
  if (bench == "wavefront_repeat") return wavefront_repeat(sys);

  for (int rep = 0; rep <= reps; ++rep) {  // rep 0 = warm-up
    for (const std::string& name : variants(sys, bench)) {
      Result r = run_one(sys, name);
      if (rep == 0) continue;
      double total = r.build + r.run + r.teardown;
      std::printf(
          "RESULT system=%s bench=%s rep=%d tasks=%ld build_s=%.6f run_s=%.6f teardown_s=%.6f total_s=%.6f "
          "ns_per_task=%.1f ns_per_task_run=%.1f maxrss_kb=%ld hwm_kb=%ld\n",
          sys.c_str(), name.c_str(), rep, r.tasks, r.build, r.run, r.teardown, total, total * 1e9 / r.tasks,
          r.run * 1e9 / r.tasks, maxrss_kb(), hwm_kb());
      std::fflush(stdout);
    }
  }
  return 0;
}
