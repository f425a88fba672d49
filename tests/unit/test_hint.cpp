// dx::hint: the size a caller gives a task, the same type wherever it is spelled, and what the cost
// model learns sizes from.
#include <dx/hint.hpp>

#include <dx/cost_model.hpp>
#include <dx/task_options.hpp>

#include <catch2/catch.hpp>

#include <type_traits>

static_assert(std::is_same_v<decltype(dx::task_options::hint), dx::hint>, "task_options holds a dx::hint");
static_assert(std::is_trivially_copyable_v<dx::hint>, "a hint is a plain value");

TEST_CASE("a hint without a size means no hint", "[hint]") {
  CHECK(dx::hint{}.size == 0);
  CHECK(dx::hint{.size = 42}.size == 42);
  CHECK(dx::task_options{}.hint.size == 0);
  CHECK(dx::task_options{}.with_hint(dx::hint{.size = 7}).hint.size == 7);
}

TEST_CASE("the cost model tells hinted sizes apart", "[hint][cost_model]") {
  dx::cost_model m;
  for (int i = 0; i < 10; ++i) {
    m.observe({.kind = "scan", .worker = "w", .features = {.size_hint = 1e3}, .seconds = 0.001});
    m.observe({.kind = "scan", .worker = "w", .features = {.size_hint = 1e6}, .seconds = 1.0});
  }
  const dx::prediction small = m.predict("scan", "w", {.size_hint = 1e3});
  const dx::prediction large = m.predict("scan", "w", {.size_hint = 1e6});
  CHECK(small.calibrated);
  CHECK(large.calibrated);
  CHECK(small.mean == Approx(0.001).epsilon(0.1));
  CHECK(large.mean == Approx(1.0).epsilon(0.1));
}
