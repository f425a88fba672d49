// quickstart: dx's local runtime in one page — futures with continuations, fork-join, a task
// graph and a coroutine, each timed.
#include <dx/dx.hpp>

#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <numeric>
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

template <class F>
auto timed(const char* what, F&& f) {
  auto start = std::chrono::steady_clock::now();
  auto result = f();
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  fmt::print("  {:<44} {:>14}   {:8.2f} ms\n", what, result, ms);
  return result;
}

}  // namespace

int main() {
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
  return 0;
}
