// Stress tests of the executor, task groups and task graphs: many tasks, many threads, big graphs.
// Sizes are scaled down under sanitizers, which slow dx down by an order of magnitude.
#include <dx/dx.hpp>

#include "test_helpers.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DX_STRESS_TSAN 1
#endif
#if __has_feature(address_sanitizer)
#define DX_STRESS_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define DX_STRESS_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define DX_STRESS_ASAN 1
#endif

namespace {

using namespace dx_test;  // the shared helpers of test_helpers.hpp

using namespace std::chrono_literals;

#if defined(DX_STRESS_TSAN)
constexpr int scale = 2;  // sizes are divided by this
#elif defined(DX_STRESS_ASAN)
constexpr int scale = 2;
#else
constexpr int scale = 1;
#endif

constexpr int scaled(int n) { return n / scale; }

/// A random DAG: edges go from lower to higher indices only, so it is acyclic. Most edges are
/// local (within a window), some reach far back.
struct random_dag {
  static constexpr long modulus = 1000003;
  std::vector<std::vector<std::size_t>> preds;
  std::vector<long> expected;

  random_dag(std::size_t n, std::uint32_t seed) : preds(n), expected(n) {
    std::mt19937 rng(seed);
    for (std::size_t i = 1; i < n; ++i) {
      std::size_t count = rng() % 5;
      for (std::size_t k = 0; k < count; ++k) {
        std::size_t lo = (rng() % 4 != 0 && i > 64) ? i - 64 : 0;
        std::size_t p = lo + rng() % (i - lo);
        if (std::find(preds[i].begin(), preds[i].end(), p) == preds[i].end()) preds[i].push_back(p);
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<long> in;
      for (std::size_t p : preds[i]) in.push_back(expected[p]);
      expected[i] = node_value(i, in);
    }
  }

  static long node_value(std::size_t i, const std::vector<long>& in) {
    long s = 0;
    for (long v : in) s = (s + v) % modulus;
    return (s * 31 + static_cast<long>(i)) % modulus;
  }
};

}  // namespace

TEST_CASE("a million tiny tasks in one task group all run exactly once", "[stress][task_group]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  const int n = scaled(1000000);
  std::vector<std::atomic<std::uint8_t>> hits(n);
  dx::task_group tg{ex};

  SECTION("run from an outside thread") {
    for (int k = 0; k < n; ++k) tg.run([&hits, k] { hits[k].fetch_add(1, std::memory_order_relaxed); });
    CHECK(tg.wait() == dx::task_group_status::complete);
  }
  SECTION("run from inside a task, as a splitting tree") {
    std::function<void(int, int)> split = [&](int lo, int hi) {
      while (hi - lo > 64) {
        int mid = lo + (hi - lo) / 2;
        tg.run([&split, mid, hi] { split(mid, hi); });
        hi = mid;
      }
      for (int k = lo; k < hi; ++k) tg.run([&hits, k] { hits[k].fetch_add(1, std::memory_order_relaxed); });
    };
    tg.run([&] { split(0, n); });
    CHECK(tg.wait() == dx::task_group_status::complete);
  }
  int wrong = 0;
  for (auto& h : hits) wrong += h.load(std::memory_order_relaxed) != 1;
  CHECK(wrong == 0);
}

TEST_CASE("a million submitted tasks joined by when_all give the right sum", "[stress][executor]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  const int n = scaled(1000000);
  std::vector<dx::future<long>> fs;
  fs.reserve(n);
  for (int k = 0; k < n; ++k) fs.push_back(ex.submit([k] { return static_cast<long>(k) * 3 + 1; }));
  auto all = dx::when_all(std::move(fs));
  std::vector<long> values = dx_test::get_soon(all);
  REQUIRE(values.size() == static_cast<std::size_t>(n));
  long sum = std::accumulate(values.begin(), values.end(), 0L);
  CHECK(sum == 3L * n * (n - 1) / 2 + n);
  bool in_order = true;
  for (int k = 0; k < n; ++k) in_order = in_order && values[k] == static_cast<long>(k) * 3 + 1;
  CHECK(in_order);
}

TEST_CASE("a random DAG of 10000 nodes as a task graph computes what a sequential run computes",
          "[stress][task_graph]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  const std::size_t n = 10000;
  random_dag dag(n, 20240611);
  std::vector<long> value(n, -1);
  dx::task_graph g{"random dag"};
  std::vector<dx::graph_task> tasks;
  tasks.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    tasks.push_back(g.emplace([&, i] {
      std::vector<long> in;
      in.reserve(dag.preds[i].size());
      for (std::size_t p : dag.preds[i]) in.push_back(value[p]);
      value[i] = random_dag::node_value(i, in);
    }));
  }
  std::size_t edges = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t p : dag.preds[i]) {
      tasks[p].precede(tasks[i]);
      ++edges;
    }
  }
  CHECK(edges > n);
  const int runs = scale == 1 ? 20 : 5;
  for (int run = 0; run < runs; ++run) {
    std::fill(value.begin(), value.end(), -1);
    dx_test::get_soon(ex.run(g));
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < n; ++i) mismatches += value[i] != dag.expected[i];
    REQUIRE(mismatches == 0);
  }
}

TEST_CASE("a random DAG of 10000 nodes built from futures computes what a sequential run computes",
          "[stress][executor][dependencies]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  const std::size_t n = 10000;
  random_dag dag(n, 20240611);
  const int rounds = scale == 1 ? 5 : 2;
  for (int round = 0; round < rounds; ++round) {
    std::vector<dx::shared_future<long>> node(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (dag.preds[i].empty()) {
        node[i] = ex.submit([i] { return random_dag::node_value(i, {}); }).share();
        continue;
      }
      std::vector<dx::shared_future<long>> in;
      for (std::size_t p : dag.preds[i]) in.push_back(node[p]);
      if (i % 2 == 0) {
        // when_all of the predecessors as one dependency.
        node[i] =
            ex.submit([i](std::vector<long> v) { return random_dag::node_value(i, v); }, dx::when_all(std::move(in)))
                .share();
      } else {
        // The first predecessor also as a direct shared_future argument (a second dependency).
        node[i] = ex.submit(
                        [i](const long& first, std::vector<long> v) {
                          if (v.empty() || v[0] != first) return -1L;
                          return random_dag::node_value(i, v);
                        },
                        node[dag.preds[i][0]], dx::when_all(std::move(in)))
                      .share();
      }
    }
    std::size_t mismatches = 0;
    for (std::size_t i = n; i-- > 0;) {
      REQUIRE(node[i].wait_for(dx_test::bound) == dx::future_status::ready);
      mismatches += node[i].get() != dag.expected[i];
    }
    CHECK(mismatches == 0);
  }
}

TEST_CASE("eight outside threads submitting 100000 tasks each all get their results", "[stress][executor]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  constexpr int submitters = 8;
  const int per = scaled(100000);
  std::vector<long> bad(submitters, 0);
  std::vector<std::thread> ts;
  std::atomic<int> go{0};
  for (int t = 0; t < submitters; ++t) {
    ts.emplace_back([&, t] {
      ++go;
      while (go.load() < submitters) std::this_thread::yield();  // start together
      std::vector<dx::future<long>> fs;
      fs.reserve(per);
      for (int k = 0; k < per; ++k) {
        dx::priority p = k % 16 == 0 ? dx::priority::high : (k % 16 == 1 ? dx::priority::low : dx::priority::normal);
        fs.push_back(ex.submit(
            p, [](long a, long b) { return a * 1000000 + b; }, t, k));
      }
      for (int k = 0; k < per; ++k) {
        if (fs[k].wait_for(dx_test::bound) != dx::future_status::ready || fs[k].get() != t * 1000000L + k) ++bad[t];
      }
    });
  }
  for (auto& th : ts) th.join();
  for (int t = 0; t < submitters; ++t) CHECK(bad[t] == 0);
}

TEST_CASE("nested waits on one thread compute fib(22) without deadlock", "[stress][executor][nested]") {
  dx::executor ex{1};
  auto f = ex.submit(fib_nested, std::ref(ex), 22);
  CHECK(dx_test::get_soon(f) == fib_seq(22));
  auto g = ex.submit(fib_group, std::ref(ex), 22);
  CHECK(dx_test::get_soon(g) == fib_seq(22));
}

TEST_CASE("nested waits on several threads compute fib(24) without deadlock", "[stress][executor][nested]") {
  const int threads = GENERATE(2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  const int n = scale == 1 ? 24 : 20;
  auto f = ex.submit(fib_nested, std::ref(ex), n);
  CHECK(dx_test::get_soon(f) == fib_seq(n));
  auto g = ex.submit(fib_group, std::ref(ex), n);
  CHECK(dx_test::get_soon(g) == fib_seq(n));
}

TEST_CASE("executors created and destroyed with pending work lose no task", "[stress][executor][shutdown]") {
  const int iterations = scale == 1 ? 200 : 50;
  std::mt19937 rng(7);
  for (int it = 0; it < iterations; ++it) {
    const std::size_t threads = 1 + it % 4;
    std::atomic<int> count{0};
    int expected = 0;
    dx::promise<void> later;
    std::thread setter;
    {
      dx::executor ex{threads};
      const int posts = 200 + static_cast<int>(rng() % 300);
      for (int k = 0; k < posts; ++k) ex.post([&] { count.fetch_add(1, std::memory_order_relaxed); });
      expected += posts;
      for (int k = 0; k < 50; ++k) {
        ex.submit([&] {
          count.fetch_add(1, std::memory_order_relaxed);
          ex.post([&] { count.fetch_add(1, std::memory_order_relaxed); });
        });
      }
      expected += 100;
      {
        dx::task_group tg{ex};
        for (int k = 0; k < 20; ++k) tg.run([&] { count.fetch_add(1, std::memory_order_relaxed); });
        expected += 20;
      }
      dx::shared_future<void> dep = later.get_future().share();
      for (int k = 0; k < 5; ++k) ex.submit([&] { count.fetch_add(1, std::memory_order_relaxed); }, dep);
      expected += 5;
      setter = std::thread([&] { later.set_value(); });
      // Leave with work still queued: the destructor must finish it all.
    }
    setter.join();
    REQUIRE(count.load() == expected);
  }
}

TEST_CASE("concurrent wait_idle callers each wait for everything submitted before their call",
          "[stress][executor][wait_idle]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  const int batches = scaled(20000);
  constexpr int per_batch = 20;
  std::atomic<long> done{0};
  std::atomic<long> submitted{0};
  std::atomic<bool> producing{true};
  std::atomic<long> violations{0};
  std::atomic<long> waits{0};

  std::vector<std::thread> waiters;
  for (int w = 0; w < 4; ++w) {
    waiters.emplace_back([&] {
      while (producing.load()) {
        long before = submitted.load();
        ex.wait_idle();
        ++waits;
        if (done.load() < before) ++violations;
      }
      ex.wait_idle();
      if (done.load() != submitted.load()) ++violations;
    });
  }
  for (int b = 0; b < batches; ++b) {
    for (int k = 0; k < per_batch; ++k) {
      if (k % 4 == 0) {
        // A task that spawns a child: the parent counts both, before the child can run.
        ex.post([&] {
          ex.post([&] { done.fetch_add(1); });
          done.fetch_add(1);
        });
        submitted.fetch_add(2);
      } else {
        ex.post([&] { done.fetch_add(1); });
        submitted.fetch_add(1);
      }
    }
    if (b % 64 == 0) std::this_thread::sleep_for(50us);
  }
  producing = false;
  for (auto& t : waiters) t.join();
  ex.wait_idle();
  CHECK(done.load() == submitted.load());
  CHECK(violations.load() == 0);
  CHECK(waits.load() > 0);
}

TEST_CASE("task groups destroyed right after wait returns are never touched again", "[stress][task_group][lifetime]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  const int rounds = scaled(200000);
  constexpr int callers = 2;
  std::atomic<long> count{0};
  std::vector<std::thread> ts;
  for (int c = 0; c < callers; ++c) {
    ts.emplace_back([&] {
      for (int k = 0; k < rounds / callers; ++k) {
        auto tg = std::make_unique<dx::task_group>(ex);
        tg->run([&] { count.fetch_add(1, std::memory_order_relaxed); });
        tg->wait();
        // Overwrite the group's memory at once: a task still touching it after wait() returned
        // shows up as a use-after-free under ASan, or as a corrupted heap.
        tg.reset();
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(count.load() == rounds / callers * callers);
}

TEST_CASE("task groups on worker stacks give correct results under heavy nesting", "[stress][task_group][nested]") {
  const int threads = GENERATE(2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  const int n = scale == 1 ? 25 : 20;
  const int repeats = scale == 1 ? 3 : 1;
  for (int r = 0; r < repeats; ++r) {
    auto f = ex.submit(fib_group, std::ref(ex), n);
    REQUIRE(dx_test::get_soon(f) == fib_seq(n));
  }
}
