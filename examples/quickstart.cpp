// quickstart: dx's local runtime in one page — futures with continuations, fork-join, a task
// graph and a coroutine, each timed — then a workflow on two worker processes: a split step and
// its aggregate, journaled, with its progress shown as it runs.
#include <dx/dx.hpp>

#include <fmt/core.h>

#include <unistd.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <thread>
#include <vector>

namespace {

double simulate(int seed, int steps) {
  // A small deterministic random walk: stands in for real per-task work.
  std::uint64_t x = 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(seed);
  double pos = 0;
  for (int i = 0; i < steps; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    pos += (x & 1) ? 1.0 : -1.0;
  }
  return std::abs(pos);
}

long fib(dx::executor& ex, int n) {
  if (n < 2) return n;
  if (n < 16) return fib(ex, n - 1) + fib(ex, n - 2);  // small enough to do in place
  long x = 0, y = 0;
  dx::task_group tg{ex};
  tg.run([&] { x = fib(ex, n - 1); });
  tg.run([&] { y = fib(ex, n - 2); });
  tg.wait();
  return x + y;
}

dx::task<double> mean_of_squares(dx::executor& ex, int n) {
  std::vector<dx::future<double>> parts;
  for (int i = 1; i <= n; ++i) parts.push_back(ex.submit([i] { return double(i) * i; }));
  std::vector<double> squares = co_await dx::when_all(std::move(parts));
  co_return std::accumulate(squares.begin(), squares.end(), 0.0) / n;
}

/// How many points of a chunk of a quasi-random sequence fall inside the unit circle.
std::int64_t count_inside(dx::chunk c) {
  std::int64_t inside = 0;
  for (std::int64_t i = c.start; i < c.end; ++i) {
    const double x = std::fmod(static_cast<double>(i) * 0.7548776662466927, 1.0);
    const double y = std::fmod(static_cast<double>(i) * 0.5698402909980532, 1.0);
    inside += x * x + y * y <= 1.0 ? 1 : 0;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(40));  // a chunk of real work takes a while
  return inside;
}
std::int64_t add(std::int64_t a, std::int64_t b) { return a + b; }

template <class F>
auto timed(const char* what, F&& f) {
  auto start = std::chrono::steady_clock::now();
  auto result = f();
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  fmt::print("  {:<44} {:>14}   {:8.2f} ms\n", what, result, ms);
  return result;
}

/// The workflow part: two worker processes run a split step's chunks, the head aggregates them;
/// every change is journaled, so the run could be resumed by its id had this process died.
void workflow_demo() {
  const auto journal = std::filesystem::temp_directory_path() / ("dx-quickstart-" + std::to_string(::getpid()));
  dx::cluster cl{dx::options{}.local_processes(2).head_runs_tasks(false).http("127.0.0.1:0").persist_cost_model(false)};
  fmt::print("\nworkflow on {} worker processes; dashboard: http://{}/\n", cl.workers().size(), cl.http_endpoint());
  dx::workflow wf{"estimate-pi"};
  auto parts = wf.map("sample", count_inside, dx::split::range(0, 20'000'000, 500'000));
  wf.reduce("total", add, parts);
  const auto start = std::chrono::steady_clock::now();
  dx::workflow_run run = cl.start(wf, dx::run_options{}.with_journal((journal / "journal.sqlite").string()));
  const bool terminal = ::isatty(STDOUT_FILENO) == 1;  // a live line on a terminal, one line at the end otherwise
  while (!run.wait_for(std::chrono::milliseconds(200))) {
    if (!terminal) continue;
    for (const auto& t : run.steps())
      if (t.key == "sample") fmt::print("\r  run {}: sample {:3.0f}% done", run.id(), 100 * t.progress);
    std::fflush(stdout);
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  fmt::print("{}  run {}: {} in {:.0f} ms, 40 chunks aggregated: pi ~ {:.6f}\n", terminal ? "\r" : "", run.id(),
             dx::to_string(run.status()), ms, 4.0 * static_cast<double>(run.result<std::int64_t>("total")) / 20e6);
  std::filesystem::remove_all(journal);
}

}  // namespace

DX_REMOTE(count_inside);
DX_REMOTE(add);

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);  // the workers are this program
  dx::cluster cl;
  dx::executor& ex = cl.local();
  fmt::print("dx {} quickstart on {} threads\n", dx::version_string, ex.num_threads());

  timed("mean |walk| of 1000 random walks (futures)", [&] {
    std::vector<dx::future<double>> runs;
    for (int s = 0; s < 1000; ++s) runs.push_back(cl.submit(simulate, s, 10'000));
    dx::future<double> mean = dx::when_all(std::move(runs)).then([](std::vector<double> v) {
      return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
    });
    auto report = cl.submit([](double m) { return fmt::format("{:.4f}", m); }, std::move(mean));
    return report.get();
  });

  timed("fib(32) by fork-join (task_group)", [&] { return ex.submit([&] { return fib(ex, 32); }).get(); });

  timed("sum over a 200x200 wavefront task graph", [&] {
    constexpr int n = 200;
    std::vector<long> cell(n * n, 0);
    dx::task_graph g{"wavefront"};
    std::vector<dx::graph_task> t(n * n);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        t[i * n + j] = g.emplace([&cell, i, j] {
          long up = i > 0 ? cell[(i - 1) * n + j] : 1;
          long left = j > 0 ? cell[i * n + j - 1] : 1;
          cell[i * n + j] = (up + left) % 1'000'003;
        });
        if (i > 0) t[(i - 1) * n + j].precede(t[i * n + j]);
        if (j > 0) t[i * n + j - 1].precede(t[i * n + j]);
      }
    }
    cl.run(g).get();
    return cell.back();
  });

  timed("mean of squares 1..1000 (coroutine)", [&] { return ex.submit(mean_of_squares, std::ref(ex), 1000).get(); });
  workflow_demo();
  return 0;
}
