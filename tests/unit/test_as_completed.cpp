// Tests of dx::as_completed and dx::completion_stream.
#include <dx/as_completed.hpp>

#include <dx/error.hpp>
#include <dx/executor.hpp>
#include <dx/future.hpp>
#include <dx/task.hpp>

#include "test_helpers.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::vector<dx::future<int>> futures_of(std::vector<dx::promise<int>>& ps) {
  std::vector<dx::future<int>> fs;
  for (auto& p : ps) fs.push_back(p.get_future());
  return fs;
}

dx::task<std::vector<int>> collect(dx::completion_stream<dx::future<int>>& stream) {
  std::vector<int> seen;
  while (std::optional<dx::future<int>> f = co_await stream.next()) {
    try {
      seen.push_back(f->get());
    } catch (const dx_test::test_error&) {
      seen.push_back(-1);
    }
  }
  co_return seen;
}

}  // namespace

TEST_CASE("as_completed hands futures back in the order they become ready, not the input order", "[as_completed]") {
  std::vector<dx::promise<int>> ps(4);
  auto stream = dx::as_completed(futures_of(ps));
  CHECK(stream.size() == 4);
  ps[2].set_value(2);
  ps[0].set_value(0);
  auto first = dx_test::get_soon(stream.next());
  REQUIRE(first.has_value());
  CHECK(first->get() == 2);
  auto second = dx_test::get_soon(stream.next());
  CHECK(second->get() == 0);
  auto third = stream.next();
  CHECK_FALSE(third.is_ready());  // nothing else is ready yet
  ps[3].set_value(3);
  CHECK(dx_test::get_soon(third)->get() == 3);
  ps[1].set_value(1);
  CHECK(dx_test::get_soon(stream.next())->get() == 1);
  CHECK_FALSE(dx_test::get_soon(stream.next()).has_value());  // every input handed back
  CHECK(stream.size() == 0);
}

TEST_CASE("as_completed hands back a failed future like a ready one, its get() rethrows", "[as_completed]") {
  std::vector<dx::promise<int>> ps(3);
  auto stream = dx::as_completed(futures_of(ps));
  ps[1].set_exception(std::make_exception_ptr(dx_test::test_error("item 1")));
  ps[2].set_value(20);
  ps[0].set_value(10);
  std::vector<int> order;
  for (dx::future<int> f : stream) {
    try {
      order.push_back(f.get());
    } catch (const dx_test::test_error& e) {
      CHECK(std::string(e.what()) == "item 1");
      order.push_back(-1);
    }
  }
  CHECK(order == std::vector<int>{-1, 20, 10});
}

TEST_CASE("as_completed of executor tasks yields each as it finishes, the range form blocking in steps",
          "[as_completed]") {
  dx::executor ex{2};
  dx::promise<void> gate;
  dx::shared_future<void> open = gate.get_future().share();
  std::vector<dx::future<int>> fs;
  fs.push_back(ex.submit([](int) { return 0; }, 0));  // ready at once
  fs.push_back(ex.submit([] { return 1; }, open));    // only after the gate opens
  auto stream = dx::as_completed(std::move(fs));
  auto it = stream.begin();
  REQUIRE(it != stream.end());
  CHECK(dx::future<int>(*it).get() == 0);
  std::thread opener([&] {
    std::this_thread::sleep_for(5ms);
    gate.set_value();
  });
  ++it;
  REQUIRE(it != stream.end());
  CHECK(dx::future<int>(*it).get() == 1);
  ++it;
  CHECK(it == stream.end());
  opener.join();
}

TEST_CASE("as_completed streams into a dx::task with co_await, suspending instead of blocking",
          "[as_completed][task]") {
  for (std::size_t threads : {1u, 2u}) {
    dx::executor ex{threads};
    std::vector<dx::promise<int>> ps(3);
    auto stream = dx::as_completed(futures_of(ps));
    auto seen = ex.submit([&] { return collect(stream); });
    std::this_thread::sleep_for(2ms);
    CHECK_FALSE(seen.is_ready());  // the coroutine waits for the first input
    ps[1].set_value(1);
    ps[2].set_exception(std::make_exception_ptr(dx_test::test_error("two")));
    ps[0].set_value(0);
    CHECK(dx_test::get_soon(seen) == std::vector<int>{1, -1, 0});
  }
}

TEST_CASE("a completion stream accepts more futures while it is consumed", "[as_completed]") {
  dx::promise<int> a;
  dx::promise<int> b;
  dx::completion_stream<dx::future<int>> stream;
  CHECK_FALSE(dx_test::get_soon(stream.next()).has_value());  // empty
  stream.add(a.get_future());
  auto pending = stream.next();
  stream.add(b.get_future());
  b.set_value(2);
  CHECK(dx_test::get_soon(pending)->get() == 2);
  a.set_value(1);
  CHECK(dx_test::get_soon(stream.next())->get() == 1);
  CHECK_FALSE(dx_test::get_soon(stream.next()).has_value());
}

TEST_CASE("as_completed takes shared futures and refuses empty ones and a second pending next()", "[as_completed]") {
  dx::promise<int> p;
  dx::shared_future<int> s = p.get_future().share();
  auto stream = dx::as_completed(std::vector<dx::shared_future<int>>{s, s});
  auto pending = stream.next();
  CHECK_THROWS_AS(stream.next(), dx::error);
  p.set_value(7);
  CHECK(dx_test::get_soon(pending)->get() == 7);
  CHECK(dx_test::get_soon(stream.next())->get() == 7);
  std::vector<dx::future<int>> with_empty(1);
  CHECK_THROWS_AS(dx::as_completed(std::move(with_empty)), dx::no_state);
}

TEST_CASE("as_completed hands back every one of many futures completed from several threads once", "[as_completed]") {
  for (std::size_t threads : {1u, 2u, 4u}) {
    dx::executor ex{threads};
    std::vector<dx::future<int>> fs;
    for (int i = 0; i < 2000; ++i) fs.push_back(ex.submit([i] { return i; }));
    std::vector<int> seen(2000, 0);
    for (dx::future<int> f : dx::as_completed(std::move(fs))) ++seen[static_cast<std::size_t>(f.get())];
    CHECK(std::count(seen.begin(), seen.end(), 1) == 2000);
  }
}
