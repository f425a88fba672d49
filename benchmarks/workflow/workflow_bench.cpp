// workflow_bench.cpp — durable workflows against the plain runtime and against their targets: the
// rate of journaled no-op steps, a resume after a kill -9, automatic chunking of a split, and a
// random DAG of 1 ms steps. One measurement per process; run.py drives them (and Dask on the DAG)
// and benchmarks/RESULTS.md keeps the figures.
//
// The cluster starts copies of this binary as workers (options::local_processes), so main() hands
// over to dx::worker_main first when started as one.
//
// Usage:
//   dx_bench_workflow steps N ROUNDS [--only journal_on,plain_submit,journal_off] [--dir DIR]
//       dx::options{}.local_processes(2) (the head's threads run tasks too, as by default),
//       persist_cost_model(false). Each round, in an order that turns from round to round: a
//       workflow of N independent steps of the registered no-op `noop_step(x)` journaled (a
//       journal in DIR, one fsync per group), the same N calls through cl.submit + get(), and the
//       workflow without a journal (run_options{}.without_journal()). Steps/s from cl.start() to
//       wait() returning (building the dx::workflow is timed apart), from the first submit to the
//       last get() for cl.submit, and the head's CPU time per step (all its threads). Every step's parameter is new in
//       each run, so the journal's cache is asked and misses, as for new work.
//   dx_bench_workflow resume N [--dir DIR]
//       A child process (this binary, `resume-child`) starts a workflow of N independent steps of
//       `mark_step(i)`, journaled; each run of a step appends "GENERATION KEY STEADY_NS" to a marks
//       file (the generation from the environment: 1 in the child and its workers, 2 here). When
//       the journal holds N/2 steps SUCCEEDED, the child is killed with SIGKILL. Then a cluster of
//       local_processes(2) starts here and workflow_run::resume(cl, id) continues the run. Reports:
//       the time from the resume() call to the first step started by a worker of generation 2
//       (an upper bound of the first dispatch: it includes the trip to the worker), the time
//       resume() took to return, and how many steps the journal had SUCCEEDED at the kill ran
//       again (the target is 0).
//   dx_bench_workflow map_auto N ROUNDS [--per-item M] [--dir DIR]
//       local_processes(2), threads_per_process(1), head_runs_tasks(false), cost model empty at
//       start; a split step over [0, N) of `busy_chunk`, which spins 10 us on the clock per index.
//       One chunk-auto run first (cold: the model does not know the kind yet; reported apart).
//       Then each round: chunk auto, each fixed chunk size of the sweep, and one subtask per item
//       on the first M indices (its time extrapolated to N: time x N / M). Journaled.
//   dx_bench_workflow dag DAG_FILE REPS [--journal on|off] [--dir DIR]
//       local_processes(2), threads_per_process(1), head_runs_tasks(false): the layout of Dask's
//       LocalCluster in ../shared/peers/dask_tasks.py. DAG_FILE as benchmarks/scheduling/run.py
//       writes it (the number of tasks, then per task the indexes of the earlier tasks it depends
//       on; dask_tasks.make_dag(2000, 3, 12345)). Each task a step `sleep_step` (sleeps 1 ms) after
//       its dependencies; REPS runs in one cluster (the first cold). Makespan from cl.start() to
//       wait(); ideal = tasks x 1 ms / 2 workers (as dask_tasks.py computes it), also with the
//       measured cost of a 1 ms sleep.
//   dx_bench_workflow define N
//       What defining the workflow of `resume` costs, N steps: building it in C++, steps() (the
//       analysis a run starts with), to_json and from_json (which validates).
//
// Output: RESULT lines of key=value pairs. Timing: std::chrono::steady_clock.

#include <dx/dx.hpp>

#include "spawn_self.hpp"

#include <sqlite3.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

// ---- registered functions -----------------------------------------------------------------------

std::int64_t noop_step(std::int64_t x) { return x; }
DX_REMOTE(noop_step);

namespace {

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// The marks file of `resume`, opened once per process for appending (small appends are atomic).
int marks_fd() {
  static const int fd = [] {
    const char* path = std::getenv("DX_BENCH_MARKS");
    return path ? ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
  }();
  return fd;
}

}  // namespace

/// A step of `resume`: records that it ran (generation, index, when), then returns its index.
std::int64_t mark_step(std::int64_t i) {
  static const char* generation = std::getenv("DX_BENCH_GENERATION");
  char line[96];
  const int n = std::snprintf(line, sizeof line, "%s %lld %lld\n", generation ? generation : "0",
                              static_cast<long long>(i), static_cast<long long>(steady_ns()));
  if (marks_fd() >= 0 && ::write(marks_fd(), line, static_cast<std::size_t>(n)) != n) std::abort();
  return i;
}
DX_REMOTE(mark_step);

/// 10 us of work per index of the chunk (spinning on the clock, about 20 ns a read).
std::int64_t busy_chunk(dx::chunk c) {
  for (std::int64_t i = c.start; i < c.end; ++i) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(10);
    while (std::chrono::steady_clock::now() < until) {
    }
  }
  return c.end - c.start;
}
DX_REMOTE(busy_chunk);

/// A task of the DAG: 1 ms asleep (as dask_tasks.work). `salt` makes each run's steps new work.
std::int64_t sleep_step(std::int64_t i, std::int64_t salt) {
  (void)salt;
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return i;
}
DX_REMOTE(sleep_step);

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string flag_value(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

/// A fresh folder for this process's journal, removed when the measurement ends.
struct scratch_dir {
  std::filesystem::path path;
  explicit scratch_dir(const std::string& parent) {
    path = std::filesystem::path(parent) / ("dx_bench_workflow_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string journal() const { return (path / "journal.sqlite").string(); }
};

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "dx_bench_workflow: %s\n", what.c_str());
  std::exit(2);
}

void require_succeeded(const dx::workflow_run& run, const char* what) {
  if (run.status() == dx::workflow_status::succeeded) return;
  for (const auto& t : run.steps())
    if (t.status != dx::task_status::succeeded && t.status != dx::task_status::cached) {
      std::fprintf(stderr, "%s: %s is %s: %s\n", what, t.key.c_str(), std::string(dx::to_string(t.status)).c_str(),
                   t.error.c_str());
      break;
    }
  fail(std::string(what) + ": the run ended " + std::string(dx::to_string(run.status())));
}

// ---- steps --------------------------------------------------------------------------------------

dx::workflow noop_workflow(std::size_t n, std::int64_t salt) {
  dx::workflow wf{"noops"};
  for (std::size_t i = 0; i < n; ++i) wf.step("s" + std::to_string(i), noop_step, salt + static_cast<std::int64_t>(i));
  return wf;
}

struct timed_run {
  double seconds = 0, build_seconds = 0, head_cpu = 0;
};

/// CPU seconds this process (the head: all its threads) has used so far.
double head_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

timed_run run_workflow(dx::cluster& cl, std::size_t n, std::int64_t salt, const dx::run_options& opts) {
  const auto b0 = Clock::now();
  const dx::workflow wf = noop_workflow(n, salt);
  const double c0 = head_cpu_seconds();
  const auto t0 = Clock::now();
  auto run = cl.start(wf, opts);
  run.wait();
  const auto t1 = Clock::now();
  const double c1 = head_cpu_seconds();
  require_succeeded(run, "steps");
  return {secs(t0, t1), secs(b0, t0), c1 - c0};
}

timed_run run_plain(dx::cluster& cl, std::size_t n, std::int64_t salt) {
  const double c0 = head_cpu_seconds();
  const auto t0 = Clock::now();
  std::vector<dx::future<std::int64_t>> fs;
  fs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) fs.push_back(cl.submit(noop_step, salt + static_cast<std::int64_t>(i)));
  std::int64_t sum = 0;
  for (auto& f : fs) sum += f.get();
  const auto t1 = Clock::now();
  const double c1 = head_cpu_seconds();
  const auto nn = static_cast<std::int64_t>(n);
  if (sum != salt * nn + nn * (nn - 1) / 2) fail("plain submit: wrong results");
  return {secs(t0, t1), 0, c1 - c0};
}

int steps(int argc, char** argv) {
  const auto n = static_cast<std::size_t>(std::atol(argv[2]));
  const int rounds = std::atoi(argv[3]);
  const scratch_dir dir(flag_value(argc, argv, "--dir", "/tmp"));
  const auto journaled = dx::run_options{}.with_journal(dir.journal());
  const auto unjournaled = dx::run_options{}.without_journal();
  dx::cluster cl{dx::options{}.local_processes(2).persist_cost_model(false)};
  cl.wait_for_workers(2, std::chrono::seconds(30));
  std::int64_t salt = 1'000'000'000;
  auto next_salt = [&] { return salt += static_cast<std::int64_t>(n) + 1; };
  // Warm-up: connections, the journal's file, the workers' code paths.
  run_workflow(cl, std::min<std::size_t>(n, 2000), next_salt(), journaled);
  run_plain(cl, std::min<std::size_t>(n, 2000), next_salt());
  run_workflow(cl, std::min<std::size_t>(n, 2000), next_salt(), unjournaled);

  const char* names[] = {"journal_on", "plain_submit", "journal_off"};
  const std::string only = "," + flag_value(argc, argv, "--only", "journal_on,plain_submit,journal_off") + ",";
  for (int r = 0; r < rounds; ++r) {
    double s[3] = {0, 0, 0}, build[3] = {0, 0, 0}, cpu[3] = {0, 0, 0};
    for (int k = 0; k < 3; ++k) {
      const int v = (k + r) % 3;
      if (only.find("," + std::string(names[v]) + ",") == std::string::npos) continue;
      const timed_run t = v == 0   ? run_workflow(cl, n, next_salt(), journaled)
                          : v == 1 ? run_plain(cl, n, next_salt())
                                   : run_workflow(cl, n, next_salt(), unjournaled);
      s[v] = t.seconds;
      build[v] = t.build_seconds;
      cpu[v] = t.head_cpu;
    }
    for (int v = 0; v < 3; ++v)
      if (s[v] > 0)
        std::printf(
            "RESULT mode=steps variant=%s round=%d steps=%zu seconds=%.4f steps_per_s=%.1f build_s=%.4f "
            "head_cpu_us_per_step=%.2f\n",
            names[v], r + 1, n, s[v], static_cast<double>(n) / s[v], build[v], cpu[v] * 1e6 / static_cast<double>(n));
    if (s[0] > 0 && s[1] > 0 && s[2] > 0)
      std::printf("RESULT mode=steps_ratio round=%d on_vs_plain=%.4f off_vs_plain=%.4f\n", r + 1, s[1] / s[0],
                  s[1] / s[2]);
    std::fflush(stdout);
  }
  return 0;
}

// ---- resume -------------------------------------------------------------------------------------

dx::workflow marking_workflow(std::size_t n) {
  dx::workflow wf{"resumable"};
  for (std::size_t i = 0; i < n; ++i) wf.step("m" + std::to_string(i), mark_step, static_cast<std::int64_t>(i));
  return wf;
}

/// The child: starts the run, writes its id, and waits (until it is killed).
int resume_child(int, char** argv) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the benchmark, whatever becomes of it
  const std::string dir = argv[2];
  const auto n = static_cast<std::size_t>(std::atol(argv[3]));
  dx::cluster cl{dx::options{}.local_processes(2).persist_cost_model(false)};
  cl.wait_for_workers(2, std::chrono::seconds(30));
  const dx::workflow wf = marking_workflow(n);
  auto run = cl.start(wf, dx::run_options{}.with_journal(dir + "/journal.sqlite"));
  { std::ofstream(dir + "/run.tmp") << run.id() << '\n'; }
  std::filesystem::rename(dir + "/run.tmp", dir + "/run");
  run.wait();
  return 0;
}

/// The steps of run `id` the journal holds SUCCEEDED, counted by SQL (the journal's own reader
/// loads every task: too slow to catch a run of 100,000 no-op steps half done); 0 while the
/// journal is being created.
std::size_t count_succeeded_now(const std::string& journal, const std::string& id) {
  sqlite3* db = nullptr;
  std::size_t n = 0;
  if (sqlite3_open_v2(journal.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 1000);
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM tasks WHERE run = ?1 AND status = 'SUCCEEDED'", -1, &s, nullptr) ==
        SQLITE_OK) {
      sqlite3_bind_text(s, 1, id.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(s) == SQLITE_ROW) n = static_cast<std::size_t>(sqlite3_column_int64(s, 0));
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return n;
}

std::size_t count_succeeded(const std::string& id, const dx::run_options& opts, std::set<std::string>* keys) {
  std::vector<dx::task_state> tasks;
  dx::workflow_run::recorded(id, opts, &tasks);
  std::size_t n = 0;
  for (const auto& t : tasks) {
    if (t.status != dx::task_status::succeeded) continue;
    ++n;
    if (keys) keys->insert(t.key);
  }
  return n;
}

int resume(int argc, char** argv) {
  const auto n = static_cast<std::size_t>(std::atol(argv[2]));
  const scratch_dir dir(flag_value(argc, argv, "--dir", "/tmp"));
  const std::string marks = (dir.path / "marks").string();
  const auto opts = dx::run_options{}.with_journal(dir.journal());
  const auto c0 = Clock::now();
  const pid_t child = dx_support::spawn_self({"resume-child", dir.path.string(), std::to_string(n)},
                                             {"DX_BENCH_GENERATION=1", "DX_BENCH_MARKS=" + marks});
  std::string id;
  const auto limit = Clock::now() + std::chrono::seconds(600);
  while (id.empty()) {
    if (Clock::now() > limit) fail("the child wrote no run id");
    std::ifstream(dir.path / "run") >> id;
    if (id.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto c1 = Clock::now();
  std::size_t at_kill = 0;
  while ((at_kill = count_succeeded_now(dir.journal(), id)) < n / 2) {
    if (Clock::now() > limit) fail("the child's run did not get half done");
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) fail("the child ended before half its run was done");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(child, SIGKILL);
  const auto c2 = Clock::now();
  int status = 0;
  ::waitpid(child, &status, 0);
  // What the journal holds once the child is gone: those steps must not run again.
  std::set<std::string> done_keys;
  const std::size_t committed = count_succeeded(id, opts, &done_keys);
  std::printf("# child: start to run id %.2f s, run id to kill %.2f s; %zu SUCCEEDED when polled, %zu committed\n",
              secs(c0, c1), secs(c1, c2), at_kill, committed);
  std::fflush(stdout);
  // The child's workers see their head gone and exit; give them a moment so their last marks land.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  ::setenv("DX_BENCH_GENERATION", "2", 1);
  ::setenv("DX_BENCH_MARKS", marks.c_str(), 1);
  dx::cluster cl{dx::options{}.local_processes(2).persist_cost_model(false)};
  cl.wait_for_workers(2, std::chrono::seconds(30));
  const std::int64_t t0_ns = steady_ns();
  const auto t0 = Clock::now();
  auto run = dx::workflow_run::resume(cl, id, opts);
  const auto t1 = Clock::now();
  run.wait();
  const auto t2 = Clock::now();
  require_succeeded(run, "resume");

  std::ifstream in(marks);
  std::int64_t first_new = -1;
  std::size_t reruns = 0, second_runs = 0;
  std::set<std::int64_t> ran;
  for (std::string line; std::getline(in, line);) {
    std::istringstream s(line);
    int generation = 0;
    long long index = 0, when = 0;
    if (!(s >> generation >> index >> when)) continue;
    ran.insert(index);
    if (generation != 2) continue;
    ++second_runs;
    if (first_new < 0 || when < first_new) first_new = when;
    if (done_keys.count("m" + std::to_string(index))) ++reruns;
  }
  if (ran.size() != n) fail("not every step ran");
  std::printf(
      "RESULT mode=resume steps=%zu done_at_kill=%zu first_dispatch_s=%.4f resume_call_s=%.4f rest_s=%.4f "
      "steps_run_after=%zu finished_rerun=%zu\n",
      n, committed, static_cast<double>(first_new - t0_ns) * 1e-9, secs(t0, t1), secs(t0, t2), second_runs, reruns);
  return 0;
}

// ---- map_auto -----------------------------------------------------------------------------------

double run_split(dx::cluster& cl, std::int64_t items, std::int64_t chunk, const dx::run_options& opts,
                 std::size_t* chunks) {
  dx::workflow wf{"busy"};
  wf.map("parts", busy_chunk, dx::split::range(0, items, chunk));
  const auto t0 = Clock::now();
  auto run = cl.start(wf, opts);
  run.wait();
  const auto t1 = Clock::now();
  require_succeeded(run, "map_auto");
  if (chunks) {
    *chunks = 0;
    for (const auto& t : run.steps()) *chunks += t.parent == "parts" ? 1 : 0;
  }
  return secs(t0, t1);
}

int map_auto(int argc, char** argv) {
  const std::int64_t n = std::atoll(argv[2]);
  const int rounds = std::atoi(argv[3]);
  const std::int64_t per_item = std::atoll(flag_value(argc, argv, "--per-item", "20000").c_str());
  const scratch_dir dir(flag_value(argc, argv, "--dir", "/tmp"));
  const auto opts = dx::run_options{}.with_journal(dir.journal());
  dx::cluster cl{
      dx::options{}.local_processes(2).threads_per_process(1).head_runs_tasks(false).persist_cost_model(false)};
  cl.wait_for_workers(2, std::chrono::seconds(30));
  const std::vector<std::int64_t> sweep{1'000, 5'000, 20'000, 50'000, 125'000};
  std::size_t chunks = 0;
  const double cold = run_split(cl, n, 0, opts, &chunks);
  std::printf("RESULT mode=map_auto variant=auto_cold round=0 items=%lld seconds=%.4f chunks=%zu\n",
              static_cast<long long>(n), cold, chunks);
  std::fflush(stdout);
  for (int r = 0; r < rounds; ++r) {
    const double a = run_split(cl, n, 0, opts, &chunks);
    std::printf("RESULT mode=map_auto variant=auto round=%d items=%lld seconds=%.4f chunks=%zu\n", r + 1,
                static_cast<long long>(n), a, chunks);
    for (std::int64_t c : sweep) {
      const double f = run_split(cl, n, std::min(c, n), opts, &chunks);
      std::printf("RESULT mode=map_auto variant=fixed chunk=%lld round=%d items=%lld seconds=%.4f chunks=%zu\n",
                  static_cast<long long>(c), r + 1, static_cast<long long>(n), f, chunks);
    }
    const std::int64_t m = std::min(per_item, n);
    const double e = run_split(cl, m, 1, opts, &chunks);
    std::printf(
        "RESULT mode=map_auto variant=per_item round=%d items=%lld measured_items=%lld measured_s=%.4f "
        "seconds=%.4f chunks=%zu\n",
        r + 1, static_cast<long long>(n), static_cast<long long>(m), e,
        e * static_cast<double>(n) / static_cast<double>(m), chunks);
    std::fflush(stdout);
  }
  return 0;
}

// ---- dag ----------------------------------------------------------------------------------------

std::vector<std::vector<int>> read_dag(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read " + path);
  std::string line;
  std::getline(in, line);
  const long n = std::atol(line.c_str());
  std::vector<std::vector<int>> deps;
  while (static_cast<long>(deps.size()) < n && std::getline(in, line)) {
    std::istringstream s(line);
    std::vector<int> d;
    for (int j; s >> j;) {
      if (j < 0 || j >= static_cast<int>(deps.size())) fail(path + ": a task depends on a task not before it");
      d.push_back(j);
    }
    deps.push_back(std::move(d));
  }
  if (static_cast<long>(deps.size()) != n || n <= 0) fail(path + ": fewer tasks than its first line says");
  return deps;
}

int dag(int argc, char** argv) {
  const auto deps = read_dag(argv[2]);
  const int reps = std::atoi(argv[3]);
  const bool journaled = flag_value(argc, argv, "--journal", "on") == "on";
  const scratch_dir dir(flag_value(argc, argv, "--dir", "/tmp"));
  const auto opts = journaled ? dx::run_options{}.with_journal(dir.journal()) : dx::run_options{}.without_journal();
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
  // What a 1 ms task really costs here (as dask_tasks.py's sleep_cost), measured before the cluster.
  const auto q0 = Clock::now();
  for (int i = 0; i < 300; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double sleep_cost = secs(q0, Clock::now()) / 300;
  const double ideal = static_cast<double>(n) * 1e-3 / 2;
  const double ideal_sleep = static_cast<double>(n) * sleep_cost / 2;

  dx::cluster cl{
      dx::options{}.local_processes(2).threads_per_process(1).head_runs_tasks(false).persist_cost_model(false)};
  cl.wait_for_workers(2, std::chrono::seconds(30));
  for (int rep = 0; rep < reps; ++rep) {
    const auto b0 = Clock::now();
    dx::workflow wf{"dag"};
    std::vector<dx::step_ref> refs;
    refs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto s = wf.step("t" + std::to_string(i), sleep_step, static_cast<std::int64_t>(i), std::int64_t{rep});
      for (int j : deps[i]) s.after(refs[static_cast<std::size_t>(j)]);
      refs.push_back(s);
    }
    const auto t0 = Clock::now();
    auto run = cl.start(wf, opts);
    run.wait();
    const auto t1 = Clock::now();
    require_succeeded(run, "dag");
    const double makespan = secs(t0, t1);
    std::printf(
        "RESULT mode=dag system=dx journal=%s rep=%d model=%s tasks=%zu edges=%zu critical_path=%d makespan_s=%.4f "
        "ideal_s=%.4f ideal_sleep_s=%.4f sleep_cost_ms=%.4f ratio=%.4f ratio_sleep=%.4f build_s=%.4f\n",
        journaled ? "on" : "off", rep, rep == 0 ? "cold" : "warm", n, edges, critical_path, makespan, ideal,
        ideal_sleep, sleep_cost * 1e3, makespan / ideal, makespan / ideal_sleep, secs(b0, t0));
    std::fflush(stdout);
  }
  return 0;
}

// ---- define -------------------------------------------------------------------------------------

int define(int, char** argv) {
  const auto n = static_cast<std::size_t>(std::atol(argv[2]));
  const auto b0 = Clock::now();
  const dx::workflow wf = marking_workflow(n);
  const auto b1 = Clock::now();
  const auto steps = wf.steps();
  const auto b2 = Clock::now();
  const std::string text = wf.to_json(-1);
  const auto b3 = Clock::now();
  const auto back = dx::workflow::from_json(text);
  const auto b4 = Clock::now();
  if (steps.size() != n || back.size() != n) fail("define: steps lost");
  std::printf("RESULT mode=define steps=%zu build_s=%.4f steps_s=%.4f to_json_s=%.4f json_bytes=%zu from_json_s=%.4f\n",
              n, secs(b0, b1), secs(b1, b2), secs(b2, b3), text.size(), secs(b3, b4));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "steps" && argc > 3) return steps(argc, argv);
  if (mode == "resume" && argc > 2) return resume(argc, argv);
  if (mode == "resume-child" && argc > 3) return resume_child(argc, argv);
  if (mode == "map_auto" && argc > 3) return map_auto(argc, argv);
  if (mode == "dag" && argc > 3) return dag(argc, argv);
  if (mode == "define" && argc > 2) return define(argc, argv);
  std::fprintf(stderr,
               "usage: %s steps N ROUNDS [--only journal_on,plain_submit,journal_off] [--dir DIR]\n"
               "       %s resume N [--dir DIR]\n"
               "       %s map_auto N ROUNDS [--per-item M] [--dir DIR]\n"
               "       %s dag DAG_FILE REPS [--journal on|off] [--dir DIR]\n"
               "       %s define N\n",
               argv[0], argv[0], argv[0], argv[0], argv[0]);
  return 1;
}
