// Tests of dx::task_graph: building, ordering, re-running, queued runs, composition, errors.
#include <dx/task_graph.hpp>

#include <dx/dx.hpp>

#include "test_helpers.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace dx_test;  // the shared helpers of test_helpers.hpp

using namespace std::chrono_literals;

/// Start and end stamps of each task from one global counter: an edge a -> b is respected when
/// a's end stamp is below b's start stamp.
class stamps {
 public:
  explicit stamps(std::size_t n) : start_(n), end_(n), runs_(n) {}
  void begin(std::size_t i) {
    start_[i].store(clock_.fetch_add(1));
    runs_[i].fetch_add(1);
  }
  void finish(std::size_t i) { end_[i].store(clock_.fetch_add(1)); }
  std::uint64_t start(std::size_t i) const { return start_[i].load(); }
  std::uint64_t end(std::size_t i) const { return end_[i].load(); }
  int runs(std::size_t i) const { return runs_[i].load(); }
  bool before(std::size_t a, std::size_t b) const { return end(a) < start(b); }

 private:
  std::atomic<std::uint64_t> clock_{1};
  std::vector<std::atomic<std::uint64_t>> start_;
  std::vector<std::atomic<std::uint64_t>> end_;
  std::vector<std::atomic<int>> runs_;
};

}  // namespace

TEST_CASE("every task of a graph runs once and after all of its predecessors", "[task_graph]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};

  constexpr std::size_t n = 200;
  stamps st(n);
  dx::task_graph g{"ordering"};
  std::vector<dx::graph_task> tasks;
  for (std::size_t i = 0; i < n; ++i) {
    tasks.push_back(g.emplace([&st, i] {
      st.begin(i);
      if (i % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
      st.finish(i);
    }));
  }
  std::mt19937 rng(1234);
  std::vector<std::pair<std::size_t, std::size_t>> edges;
  for (std::size_t b = 1; b < n; ++b) {
    std::size_t preds = rng() % 4;
    for (std::size_t k = 0; k < preds; ++k) {
      std::size_t a = rng() % b;
      if (std::find(edges.begin(), edges.end(), std::make_pair(a, b)) != edges.end()) continue;
      edges.emplace_back(a, b);
      // Half of the edges through precede, half through succeed.
      if (rng() % 2) {
        tasks[a].precede(tasks[b]);
      } else {
        tasks[b].succeed(tasks[a]);
      }
    }
  }
  CHECK(g.size() == n);
  dx_test::get_soon(ex.run(g));
  for (std::size_t i = 0; i < n; ++i) REQUIRE(st.runs(i) == 1);
  std::size_t violated = 0;
  for (auto [a, b] : edges) violated += !st.before(a, b);
  CHECK(violated == 0);
}

TEST_CASE("precede and succeed accept several tasks at once", "[task_graph]") {
  dx::executor ex{2};
  stamps st(6);
  dx::task_graph g;
  std::vector<dx::graph_task> t;
  for (std::size_t i = 0; i < 6; ++i) {
    t.push_back(g.emplace([&st, i] {
      st.begin(i);
      st.finish(i);
    }));
  }
  t[0].precede(t[1], t[2], t[3]);
  t[5].succeed(t[1], t[2], t[3]).succeed(t[4]);
  CHECK(t[0].num_successors() == 3);
  CHECK(t[0].num_predecessors() == 0);
  CHECK(t[5].num_predecessors() == 4);
  CHECK(t[5].num_successors() == 0);
  CHECK(t[1].num_predecessors() == 1);
  CHECK(t[1].num_successors() == 1);
  dx_test::get_soon(ex.run(g));
  for (std::size_t i = 1; i <= 3; ++i) {
    CHECK(st.before(0, i));
    CHECK(st.before(i, 5));
  }
  CHECK(st.before(4, 5));
}

TEST_CASE("graph tasks carry names and the graph its name and size", "[task_graph]") {
  dx::task_graph g{"named graph"};
  CHECK(g.name() == "named graph");
  CHECK(g.empty());
  CHECK(g.size() == 0);
  auto a = g.emplace([] {}).name("alpha");
  auto b = g.emplace([] {});
  CHECK(a.name() == "alpha");
  CHECK(b.name().empty());
  b.name("beta").name("gamma");
  CHECK(b.name() == "gamma");
  CHECK(g.size() == 2);
  CHECK_FALSE(g.empty());
  CHECK_FALSE(a.empty());
  CHECK(a == a);
  CHECK_FALSE(a == b);
  dx::graph_task none;
  CHECK(none.empty());
  dx::task_graph unnamed;
  CHECK(unnamed.name().empty());
}

TEST_CASE("a diamond runs its join task after both branches", "[task_graph]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  int source = 0, left = 0, right = 0, sink = 0;
  dx::task_graph g{"diamond"};
  auto a = g.emplace([&] { source = 10; }).name("a");
  auto b = g.emplace([&] {
              std::this_thread::sleep_for(1ms);
              left = source + 1;
            }).name("b");
  auto c = g.emplace([&] { right = source + 2; }).name("c");
  auto d = g.emplace([&] { sink = left * right; }).name("d");
  a.precede(b, c);
  d.succeed(b, c);
  CHECK(a.num_successors() == 2);
  CHECK(d.num_predecessors() == 2);
  dx_test::get_soon(ex.run(g));
  CHECK(sink == 11 * 12);
}

TEST_CASE("re-running a graph 100 times gives the same result every time", "[task_graph]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  constexpr std::size_t n = 64;
  std::vector<long> value(n, 0);
  std::vector<std::vector<std::size_t>> preds(n);
  std::atomic<int> executions{0};
  dx::task_graph g;
  std::vector<dx::graph_task> t;
  for (std::size_t i = 0; i < n; ++i) {
    t.push_back(g.emplace([&, i] {
      long v = static_cast<long>(i);
      for (std::size_t p : preds[i]) v += value[p] * 3;
      value[i] = v % 1000003;
      ++executions;
    }));
  }
  std::mt19937 rng(99);
  for (std::size_t i = 1; i < n; ++i) {
    for (int k = 0; k < 3; ++k) {
      std::size_t p = rng() % i;
      if (std::find(preds[i].begin(), preds[i].end(), p) == preds[i].end()) {
        preds[i].push_back(p);
        t[p].precede(t[i]);
      }
    }
  }
  // The expected values, computed sequentially.
  std::vector<long> expected(n);
  for (std::size_t i = 0; i < n; ++i) {
    long v = static_cast<long>(i);
    for (std::size_t p : preds[i]) v += expected[p] * 3;
    expected[i] = v % 1000003;
  }
  for (int run = 0; run < 100; ++run) {
    std::fill(value.begin(), value.end(), -1);
    dx_test::get_soon(ex.run(g));
    REQUIRE(value == expected);
  }
  CHECK(executions.load() == 100 * static_cast<int>(n));
}

TEST_CASE("runs of one graph started without waiting are queued and each runs every task once",
          "[task_graph][concurrent]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  constexpr int middle = 16;
  constexpr int runs = 5;
  std::atomic<int> source_runs{0}, sink_runs{0};
  std::vector<std::atomic<int>> mid_runs(middle);
  std::atomic<int> overlaps{0};
  dx::task_graph g{"queued"};
  auto source = g.emplace([&] {
    int r = ++source_runs;
    // The previous run finished completely before this one started.
    if (sink_runs.load() != r - 1) ++overlaps;
  });
  auto sink = g.emplace([&] {
    int r = sink_runs.load() + 1;
    for (auto& m : mid_runs) {
      if (m.load() != r) ++overlaps;
    }
    if (source_runs.load() != r) ++overlaps;
    sink_runs.store(r);
  });
  for (int k = 0; k < middle; ++k) {
    auto m = g.emplace([&, k] {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      ++mid_runs[k];
    });
    source.precede(m);
    sink.succeed(m);
  }
  std::vector<dx::future<void>> fs;
  for (int r = 0; r < runs; ++r) fs.push_back(ex.run(g));
  for (auto& f : fs) dx_test::get_soon(f);
  CHECK(source_runs.load() == runs);
  CHECK(sink_runs.load() == runs);
  for (auto& m : mid_runs) CHECK(m.load() == runs);
  CHECK(overlaps.load() == 0);
}

TEST_CASE("runs of one graph started from several threads at once all complete", "[task_graph][concurrent]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> a_runs{0}, b_runs{0}, overlaps{0};
  dx::task_graph g;
  auto a = g.emplace([&] {
    if (a_runs.load() != b_runs.load()) ++overlaps;
    ++a_runs;
  });
  auto b = g.emplace([&] { ++b_runs; });
  a.precede(b);
  constexpr int callers = 4, per = 25;
  std::vector<std::thread> ts;
  std::atomic<int> not_ready{0};
  for (int c = 0; c < callers; ++c) {
    ts.emplace_back([&] {
      std::vector<dx::future<void>> fs;
      for (int k = 0; k < per; ++k) fs.push_back(ex.run(g));
      for (auto& f : fs) {
        if (f.wait_for(dx_test::bound) != dx::future_status::ready) ++not_ready;
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(not_ready.load() == 0);
  CHECK(a_runs.load() == callers * per);
  CHECK(b_runs.load() == callers * per);
  CHECK(overlaps.load() == 0);
}

TEST_CASE("a composed graph runs entirely between the composing task's predecessors and successors",
          "[task_graph][compose]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  // Stamps: 0 before, 1 after, 2..5 the inner tasks, 6 a task parallel to the module.
  stamps st(7);
  auto task = [&st](std::size_t i) {
    return [&st, i] {
      st.begin(i);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      st.finish(i);
    };
  };
  dx::task_graph inner{"inner"};
  auto i2 = inner.emplace(task(2));
  auto i3 = inner.emplace(task(3));
  auto i4 = inner.emplace(task(4));
  auto i5 = inner.emplace(task(5));
  i2.precede(i3, i4);
  i5.succeed(i3, i4);

  dx::task_graph outer{"outer"};
  auto before = outer.emplace(task(0));
  auto module = outer.compose(inner);
  auto after = outer.emplace(task(1));
  auto side = outer.emplace(task(6));
  before.precede(module, side);
  module.precede(after);
  CHECK(module.name() == "inner");
  CHECK(outer.size() == 4);

  dx_test::get_soon(ex.run(outer));
  for (std::size_t i = 0; i < 7; ++i) REQUIRE(st.runs(i) == 1);
  for (std::size_t i = 2; i <= 5; ++i) {
    CHECK(st.before(0, i));
    CHECK(st.before(i, 1));
  }
  CHECK(st.before(2, 3));
  CHECK(st.before(2, 4));
  CHECK(st.before(3, 5));
  CHECK(st.before(4, 5));
  CHECK(st.before(0, 6));

  // The inner graph is still a graph of its own and runs by itself too.
  dx_test::get_soon(ex.run(inner));
  CHECK(st.runs(2) == 2);
  CHECK(st.runs(0) == 1);
}

TEST_CASE("one inner graph composed twice in sequence runs twice and each time in its place", "[task_graph][compose]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::mutex m;
  std::vector<std::string> log;
  auto record = [&](std::string s) {
    std::lock_guard lock(m);
    log.push_back(std::move(s));
  };
  dx::task_graph inner{"inner"};
  auto x = inner.emplace([&] { record("x"); });
  auto y = inner.emplace([&] { record("y"); });
  x.precede(y);

  dx::task_graph outer;
  auto a = outer.emplace([&] { record("a"); });
  auto m1 = outer.compose(inner);
  auto b = outer.emplace([&] { record("b"); });
  auto m2 = outer.compose(inner);
  auto c = outer.emplace([&] { record("c"); });
  a.precede(m1);
  m1.precede(b);
  b.precede(m2);
  m2.precede(c);

  for (int run = 0; run < 10; ++run) {
    {
      std::lock_guard lock(m);
      log.clear();
    }
    dx_test::get_soon(ex.run(outer));
    std::lock_guard lock(m);
    REQUIRE(log == std::vector<std::string>{"a", "x", "y", "b", "x", "y", "c"});
  }
}

TEST_CASE("graphs composed in several levels run every task once per run", "[task_graph][compose]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> leaf_runs{0}, mid_runs{0}, top_runs{0};
  dx::task_graph leaf;
  for (int k = 0; k < 5; ++k) leaf.emplace([&] { ++leaf_runs; });
  dx::task_graph mid;
  auto mid_first = mid.emplace([&] { ++mid_runs; });
  auto mid_leaf = mid.compose(leaf);
  mid_first.precede(mid_leaf);
  dx::task_graph top;
  auto t1 = top.emplace([&] { ++top_runs; });
  auto t2 = top.compose(mid);
  auto t3 = top.emplace([&] {
    // Everything below the module has finished.
    if (leaf_runs.load() % 5 != 0) ++top_runs;
  });
  t1.precede(t2);
  t2.precede(t3);
  for (int run = 0; run < 20; ++run) dx_test::get_soon(ex.run(top));
  CHECK(leaf_runs.load() == 100);
  CHECK(mid_runs.load() == 20);
  CHECK(top_runs.load() == 20);
}

TEST_CASE("a cycle is reported as dx::cycle_error naming only the tasks on it", "[task_graph][errors]") {
  const int threads = GENERATE(1, 2);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> ran{0};
  dx::task_graph g{"cyclic"};
  // Index 0 is downstream of the cycle, so a search for it must walk back to the cycle.
  auto downstream = g.emplace([&] { ++ran; }).name("outside_after");  // #0
  auto upstream = g.emplace([&] { ++ran; }).name("outside_before");   // #1
  auto anonymous_on_cycle = g.emplace([&] { ++ran; });                // #2
  auto named_on_cycle = g.emplace([&] { ++ran; }).name("on_cycle");   // #3
  auto anonymous_downstream = g.emplace([&] { ++ran; });              // #4
  upstream.precede(anonymous_on_cycle);
  anonymous_on_cycle.precede(named_on_cycle);
  named_on_cycle.precede(anonymous_on_cycle);
  named_on_cycle.precede(downstream);
  downstream.precede(anonymous_downstream);

  auto f = ex.run(g);
  settle(ex, f);
  std::string what;
  try {
    f.get();
    FAIL("the run of a cyclic graph did not fail");
  } catch (const dx::cycle_error& e) {
    what = e.what();
  }
  INFO("what(): " << what);
  CHECK(what.find("on_cycle") != std::string::npos);
  CHECK(what.find("#2") != std::string::npos);
  CHECK(what.find("outside_after") == std::string::npos);
  CHECK(what.find("outside_before") == std::string::npos);
  CHECK(what.find("#0") == std::string::npos);
  CHECK(what.find("#1") == std::string::npos);
  CHECK(what.find("#4") == std::string::npos);
  CHECK(ran.load() == 0);

  // Every run of it fails the same way; cycle_error is a dx::error.
  auto again = ex.run(g);
  settle(ex, again);
  CHECK_THROWS_AS(again.get(), dx::error);
}

TEST_CASE("a task that precedes itself is a cycle", "[task_graph][errors]") {
  dx::executor ex{1};
  dx::task_graph g;
  auto ok = g.emplace([] {}).name("fine");
  auto self = g.emplace([] {}).name("selfish");
  self.precede(self);
  (void)ok;
  auto f = ex.run(g);
  settle(ex, f);
  try {
    f.get();
    FAIL("no cycle_error");
  } catch (const dx::cycle_error& e) {
    std::string what = e.what();
    INFO(what);
    CHECK(what.find("selfish") != std::string::npos);
    CHECK(what.find("fine") == std::string::npos);
  }
}

TEST_CASE("a graph cannot compose itself directly or through another graph", "[task_graph][compose][errors]") {
  dx::executor ex{2};
  dx::task_graph g{"g"};
  CHECK_THROWS_AS(g.compose(g), dx::cycle_error);

  std::atomic<int> ran{0};
  dx::task_graph a{"a"};
  dx::task_graph b{"b"};
  a.emplace([&] { ++ran; });
  b.emplace([&] { ++ran; });
  auto ab = a.compose(b);
  auto ba = b.compose(a);
  (void)ab;
  (void)ba;
  auto f = ex.run(a);
  settle(ex, f);
  CHECK_THROWS_AS(f.get(), dx::cycle_error);
  CHECK(ran.load() == 0);
}

TEST_CASE("a task that throws fails the run and the tasks after it are skipped", "[task_graph][exceptions]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> after_ran{0}, before_ran{0};
  std::atomic<bool> should_throw{true};
  dx::task_graph g;
  auto first = g.emplace([&] { ++before_ran; });
  auto thrower = g.emplace([&] {
    if (should_throw.load()) throw test_error("graph task failed");
  });
  auto next = g.emplace([&] { ++after_ran; });
  auto last = g.emplace([&] { ++after_ran; });
  first.precede(thrower);
  thrower.precede(next);
  next.precede(last);

  auto f = ex.run(g);
  settle(ex, f);
  CHECK_THROWS_WITH(f.get(), "graph task failed");
  CHECK(before_ran.load() == 1);
  CHECK(after_ran.load() == 0);

  // The graph can run again; this time it succeeds.
  should_throw = false;
  dx_test::get_soon(ex.run(g));
  CHECK(before_ran.load() == 2);
  CHECK(after_ran.load() == 2);
}

TEST_CASE("an exception inside a composed graph fails the outer run", "[task_graph][compose][exceptions]") {
  const int threads = GENERATE(1, 2);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> after_ran{0};
  dx::task_graph inner;
  inner.emplace([] { throw test_error("inner failed"); });
  dx::task_graph outer;
  auto m = outer.compose(inner);
  auto after = outer.emplace([&] { ++after_ran; });
  m.precede(after);
  auto f = ex.run(outer);
  settle(ex, f);
  CHECK_THROWS_WITH(f.get(), "inner failed");
  CHECK(after_ran.load() == 0);
}

TEST_CASE("running an empty graph completes", "[task_graph]") {
  dx::executor ex{2};
  dx::task_graph g;
  dx_test::get_soon(ex.run(g));
  dx_test::get_soon(ex.run(g));

  // An empty graph composed into another is a task that does nothing.
  dx::task_graph empty_inner;
  dx::task_graph outer;
  std::atomic<int> ran{0};
  auto a = outer.emplace([&] { ++ran; });
  auto m = outer.compose(empty_inner);
  auto b = outer.emplace([&] { ++ran; });
  a.precede(m);
  m.precede(b);
  dx_test::get_soon(ex.run(outer));
  CHECK(ran.load() == 2);
  ex.wait_idle();
}

TEST_CASE("precede between tasks of different graphs throws dx::error", "[task_graph][errors]") {
  dx::task_graph g1, g2;
  auto a = g1.emplace([] {});
  auto b = g2.emplace([] {});
  CHECK_THROWS_AS(a.precede(b), dx::error);
  CHECK_THROWS_AS(a.succeed(b), dx::error);
  CHECK(a.num_successors() == 0);
  CHECK(b.num_predecessors() == 0);
  dx::graph_task none;
  CHECK_THROWS_AS(a.precede(none), dx::error);
  CHECK_THROWS_AS(none.precede(a), dx::error);
}

TEST_CASE("clear removes every task and the graph can be rebuilt", "[task_graph]") {
  dx::executor ex{2};
  std::atomic<int> old_ran{0}, new_ran{0};
  dx::task_graph g{"rebuilt"};
  auto a = g.emplace([&] { ++old_ran; });
  auto b = g.emplace([&] { ++old_ran; });
  a.precede(b);
  dx_test::get_soon(ex.run(g));
  CHECK(old_ran.load() == 2);

  g.clear();
  CHECK(g.size() == 0);
  CHECK(g.empty());
  CHECK(g.name() == "rebuilt");
  dx_test::get_soon(ex.run(g));
  CHECK(old_ran.load() == 2);

  auto c = g.emplace([&] { ++new_ran; });
  auto d = g.emplace([&] { new_ran = new_ran * 10; });
  c.precede(d);
  CHECK(g.size() == 2);
  dx_test::get_soon(ex.run(g));
  CHECK(new_ran.load() == 10);
  CHECK(old_ran.load() == 2);
}

TEST_CASE("a moved task_graph keeps its tasks and edges and handles", "[task_graph]") {
  dx::executor ex{2};
  std::vector<int> order;
  std::mutex m;
  auto rec = [&](int v) {
    std::lock_guard lock(m);
    order.push_back(v);
  };
  dx::task_graph g{"original"};
  auto a = g.emplace([&] { rec(1); }).name("a");
  auto b = g.emplace([&] { rec(2); });

  dx::task_graph moved(std::move(g));
  CHECK(moved.size() == 2);
  CHECK(moved.name() == "original");
  a.precede(b);  // handles stay valid across the move
  CHECK(a.name() == "a");
  dx_test::get_soon(ex.run(moved));
  CHECK(order == std::vector<int>{1, 2});

  dx::task_graph assigned;
  assigned = std::move(moved);
  CHECK(assigned.size() == 2);
  order.clear();
  dx_test::get_soon(ex.run(assigned));
  CHECK(order == std::vector<int>{1, 2});

  // The moved-from graph is empty and can be built again.
  CHECK(g.size() == 0);
  std::atomic<int> ran{0};
  g.emplace([&] { ++ran; });
  CHECK(g.size() == 1);
  dx_test::get_soon(ex.run(g));
  CHECK(ran.load() == 1);
}

TEST_CASE("a graph run from inside a task completes even on one thread", "[task_graph][nested]") {
  dx::executor ex{1};
  std::atomic<int> ran{0};
  dx::task_graph g;
  auto a = g.emplace([&] { ++ran; });
  auto b = g.emplace([&] { ++ran; });
  a.precede(b);
  auto f = ex.submit([&] {
    ex.run(g).get();
    return ran.load();
  });
  CHECK(dx_test::get_soon(f) == 2);
  ex.wait_idle();
}

TEST_CASE("wait_idle waits for a graph run", "[task_graph][wait_idle]") {
  const int threads = GENERATE(1, 2);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> ran{0};
  dx::task_graph g;
  auto a = g.emplace([&] {
    std::this_thread::sleep_for(10ms);
    ++ran;
  });
  auto b = g.emplace([&] { ++ran; });
  a.precede(b);
  auto f = ex.run(g);
  ex.wait_idle();
  CHECK(ran.load() == 2);
  CHECK(f.is_ready());
}

TEST_CASE("running a graph on a shut-down executor gives dx::executor_shutdown", "[task_graph][shutdown]") {
  dx::executor ex{1};
  ex.shutdown();
  std::atomic<int> ran{0};
  dx::task_graph g;
  g.emplace([&] { ++ran; });
  auto f = ex.run(g);
  dx_test::require_ready_soon(f);
  CHECK_THROWS_AS(f.get(), dx::executor_shutdown);
  CHECK(ran.load() == 0);
}

TEST_CASE("different graphs run concurrently on one executor", "[task_graph][concurrent]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  constexpr int graphs = 8;
  std::vector<dx::task_graph> gs(graphs);
  std::vector<std::atomic<long>> sums(graphs);
  for (int k = 0; k < graphs; ++k) {
    auto root = gs[k].emplace([&, k] { sums[k] += 1; });
    for (int j = 0; j < 20; ++j) {
      auto t = gs[k].emplace([&, k] { sums[k] += 10; });
      root.precede(t);
    }
  }
  std::vector<dx::future<void>> fs;
  for (int r = 0; r < 3; ++r) {
    for (auto& g : gs) fs.push_back(ex.run(g));
  }
  for (auto& f : fs) dx_test::get_soon(f);
  for (auto& s : sums) CHECK(s.load() == 3 * 201);
}
