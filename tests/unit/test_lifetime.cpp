#include <dx/dx.hpp>

#include "test_helpers.hpp"

#include <atomic>
#include <thread>

TEST_CASE("a future outlives its executor and still gets continuations", "[executor][lifetime]") {
  dx::future<int> f;
  {
    dx::executor ex{2};
    f = ex.submit([] { return 20; });
    dx_test::require_ready_soon(f);
  }
  // The executor is gone: the continuation runs inline on this thread instead.
  std::thread::id ran_on;
  auto g = std::move(f).then([&](int v) {
    ran_on = std::this_thread::get_id();
    return v + 22;
  });
  CHECK(dx_test::get_soon(g) == 42);
  CHECK(ran_on == std::this_thread::get_id());
}

TEST_CASE("a continuation registered before the executor dies still runs before it dies", "[executor][lifetime]") {
  std::atomic<int> ran{0};
  dx::promise<int> p;
  dx::future<int> after;
  {
    dx::executor ex{1};
    auto first = ex.submit([](int v) { return v; }, p.get_future());
    after = std::move(first).then([&](int v) {
      ++ran;
      return v * 2;
    });
    std::thread setter([&] { p.set_value(21); });
    setter.join();
    // The destructor finishes pending work, including the continuation.
  }
  CHECK(ran.load() == 1);
  CHECK(dx_test::get_soon(after) == 42);
}

TEST_CASE("many executors created and destroyed leave nothing running", "[executor][lifetime]") {
  for (int i = 0; i < 50; ++i) {
    dx::executor ex{2};
    std::atomic<int> count{0};
    for (int k = 0; k < 100; ++k) ex.post([&] { ++count; });
    ex.wait_idle();
    CHECK(count.load() == 100);
  }
}
