// Tests of dx::parallel_for.
#include <dx/parallel_for.hpp>

#include <dx/cluster.hpp>
#include <dx/executor.hpp>

#include "test_helpers.hpp"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

TEST_CASE("parallel_for calls fn once for every index of the range, with 1, 2 and 4 threads", "[parallel_for]") {
  for (std::size_t threads : {1u, 2u, 4u}) {
    dx::executor ex{threads};
    for (std::size_t n : {0u, 1u, 7u, 1000u, 100'003u}) {
      std::vector<std::atomic<int>> hits(n);
      dx::parallel_for(ex, std::size_t{0}, n, [&](std::size_t i) { hits[i].fetch_add(1, std::memory_order_relaxed); });
      for (std::size_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
    }
  }
}

TEST_CASE("parallel_for takes a range of mixed integer types, negative starts and a grain", "[parallel_for]") {
  dx::executor ex{2};
  std::atomic<std::int64_t> sum{0};
  dx::parallel_for(
      ex, -50, std::int64_t{50}, [&](std::int64_t i) { sum.fetch_add(i); }, dx::grain{10});
  CHECK(sum.load() == -50);
  int calls = 0;
  dx::parallel_for(ex, 5, 5, [&](int) { ++calls; });
  dx::parallel_for(ex, 5, 2, [&](int) { ++calls; });
  CHECK(calls == 0);
}

TEST_CASE("parallel_for runs on the executor's threads and spreads the work over them", "[parallel_for]") {
  dx::executor ex{2};
  std::mutex m;
  std::set<std::thread::id> ids;
  dx::parallel_for(ex, 0, 64, [&](int) {
    {
      std::lock_guard lock(m);
      ids.insert(std::this_thread::get_id());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  CHECK(ids.count(std::this_thread::get_id()) == 0);  // not the calling thread
  CHECK(ids.size() == 2);
}

TEST_CASE("parallel_for rethrows the first exception and skips the chunks not started", "[parallel_for]") {
  dx::executor ex{2};
  std::atomic<int> calls{0};
  CHECK_THROWS_AS(dx::parallel_for(ex, 0, 1'000'000,
                                   [&](int i) {
                                     calls.fetch_add(1, std::memory_order_relaxed);
                                     if (i == 10) throw dx_test::test_error("index 10");
                                   }),
                  dx_test::test_error);
  CHECK(calls.load() < 1'000'000);
}

TEST_CASE("parallel_for nested in a task of the same executor does not deadlock, even on one thread",
          "[parallel_for]") {
  for (std::size_t threads : {1u, 2u}) {
    dx::executor ex{threads};
    auto f = ex.submit([&] {
      std::atomic<int> n{0};
      dx::parallel_for(ex, 0, 100, [&](int) { dx::parallel_for(ex, 0, 10, [&](int) { n.fetch_add(1); }); });
      return n.load();
    });
    CHECK(dx_test::get_soon(f) == 1000);
  }
}

TEST_CASE("parallel_for on a cluster uses its local threads", "[parallel_for][cluster]") {
  dx::cluster cl{dx::options{}.threads(2)};
  std::vector<int> out(1000);
  dx::parallel_for(cl, 0, 1000, [&](int i) { out[static_cast<std::size_t>(i)] = 2 * i; });
  for (int i = 0; i < 1000; ++i) REQUIRE(out[static_cast<std::size_t>(i)] == 2 * i);
}
