#include <dx/future.hpp>

#include <dx/executor.hpp>

#include "test_helpers.hpp"

#include <stdexcept>
#include <type_traits>

TEST_CASE("a continuation that returns a future is unwrapped", "[future][then]") {
  dx::executor ex{2};
  dx::promise<int> later;
  dx::future<int> chained = ex.submit([] { return 2; }).then([&](int v) {
    return std::move(later.get_future()).then([v](int w) { return v * w; });
  });
  static_assert(std::is_same_v<decltype(chained), dx::future<int>>);
  later.set_value(21);
  CHECK(dx_test::get_soon(chained) == 42);

  dx::future<void> done = dx::make_ready_future().then([&] { return ex.submit([] {}); });
  dx_test::get_soon(done);

  auto failing = dx::make_ready_future(1).then([](int) -> dx::future<int> {
    return dx::make_exceptional_future<int>(std::make_exception_ptr(std::runtime_error("inner")));
  });
  CHECK_THROWS_WITH(dx_test::get_soon(failing), "inner");
}
