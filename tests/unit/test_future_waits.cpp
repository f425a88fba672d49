#include <dx/future.hpp>

#include <dx/when_all.hpp>

#include "test_helpers.hpp"

#include <chrono>
#include <thread>

using namespace std::chrono_literals;

TEST_CASE("timed waits accept any duration and clock, and saturate huge timeouts", "[future][wait]") {
  dx::promise<int> p;
  dx::shared_future<int> shared = p.get_future().share();

  CHECK(shared.wait_for(std::chrono::duration<double, std::milli>(1.5)) == dx::future_status::timeout);
  CHECK(shared.wait_until(std::chrono::steady_clock::now() + 1ms) == dx::future_status::timeout);
  CHECK(shared.wait_until(std::chrono::system_clock::now() + 1ms) == dx::future_status::timeout);
  CHECK(shared.wait_for(-5s) == dx::future_status::timeout);

  std::thread setter([&] {
    std::this_thread::sleep_for(5ms);
    p.set_value(7);
  });
  // A timeout of seconds::max() must neither overflow nor return early.
  CHECK(shared.wait_for(std::chrono::seconds::max()) == dx::future_status::ready);
  setter.join();
  CHECK(shared.wait_until(std::chrono::steady_clock::time_point::max()) == dx::future_status::ready);
  CHECK(shared.get() == 7);
}

TEST_CASE("a plain future's timed waits take fractional durations", "[future][wait]") {
  dx::promise<void> p;
  auto f = p.get_future();
  CHECK(f.wait_for(std::chrono::duration<double>(0.001)) == dx::future_status::timeout);
  p.set_value();
  CHECK(f.wait_for(std::chrono::duration<double>(1e300)) == dx::future_status::ready);
}

TEST_CASE("when_all takes const shared futures as variadic arguments", "[when_all]") {
  const dx::shared_future<int> a = dx::make_ready_future(1).share();
  const dx::shared_future<int> b = dx::make_ready_future(2).share();
  auto both = dx::when_all(a, b);
  auto [x, y] = dx_test::get_soon(both);
  CHECK(x + y == 3);
  CHECK(a.get() == 1);  // still valid: shared futures are copied, not moved
}
