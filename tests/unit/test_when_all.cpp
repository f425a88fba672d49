// Tests of dx::when_all: the range, iterator-pair and variadic forms.
#include <dx/when_all.hpp>

#include <dx/error.hpp>
#include <dx/executor.hpp>
#include <dx/future.hpp>

#include "test_helpers.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace dx_test;  // the shared helpers of test_helpers.hpp

}  // namespace

TEST_CASE("when_all over a vector of ready futures gives their values in input order", "[when_all]") {
  std::vector<dx::future<int>> in;
  for (int i = 0; i < 5; ++i) in.push_back(dx::make_ready_future(i * 10));
  auto all = dx::when_all(std::move(in));
  STATIC_REQUIRE(std::is_same_v<decltype(all), dx::future<std::vector<int>>>);
  REQUIRE(all.is_ready());
  CHECK(all.get() == std::vector<int>{0, 10, 20, 30, 40});
}

TEST_CASE("when_all over promises becomes ready only once the last input is set", "[when_all]") {
  std::vector<dx::promise<std::string>> ps(3);
  std::vector<dx::future<std::string>> in;
  for (auto& p : ps) in.push_back(p.get_future());
  auto all = dx::when_all(std::move(in));
  CHECK_FALSE(all.is_ready());
  ps[2].set_value("c");
  ps[0].set_value("a");
  CHECK_FALSE(all.is_ready());
  CHECK(all.wait_for(1ms) == dx::future_status::timeout);
  ps[1].set_value("b");
  REQUIRE(all.is_ready());
  CHECK(all.get() == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("when_all over an iterator pair of futures moves them and keeps input order", "[when_all]") {
  std::vector<dx::promise<int>> ps(4);
  std::vector<dx::future<int>> in;
  for (auto& p : ps) in.push_back(p.get_future());
  auto all = dx::when_all(in.begin(), in.end());
  STATIC_REQUIRE(std::is_same_v<decltype(all), dx::future<std::vector<int>>>);
  for (auto& f : in) CHECK_FALSE(f.valid());  // futures are moved from
  for (int i = 3; i >= 0; --i) ps[i].set_value(i + 100);
  CHECK(dx_test::get_soon(all) == std::vector<int>{100, 101, 102, 103});
}

TEST_CASE("when_all over an iterator pair of part of a range takes only that part", "[when_all]") {
  std::vector<dx::future<int>> in;
  for (int i = 0; i < 6; ++i) in.push_back(dx::make_ready_future(i));
  auto all = dx::when_all(in.begin() + 1, in.begin() + 4);
  CHECK(dx_test::get_soon(all) == std::vector<int>{1, 2, 3});
  CHECK(in[0].valid());
  CHECK(in[5].valid());
  CHECK(in[0].get() == 0);
}

TEST_CASE("when_all over shared_futures copies them and leaves them valid", "[when_all][shared_future]") {
  dx::promise<int> a;
  dx::promise<int> b;
  std::vector<dx::shared_future<int>> in{a.get_future().share(), b.get_future().share()};
  in.push_back(in[0]);  // the same input twice is fine for shared futures
  auto all = dx::when_all(in);
  STATIC_REQUIRE(std::is_same_v<decltype(all), dx::future<std::vector<int>>>);
  auto by_iterators = dx::when_all(in.begin(), in.end());
  b.set_value(2);
  CHECK_FALSE(all.is_ready());
  a.set_value(1);
  CHECK(dx_test::get_soon(all) == std::vector<int>{1, 2, 1});
  CHECK(dx_test::get_soon(by_iterators) == std::vector<int>{1, 2, 1});
  for (auto& s : in) {
    REQUIRE(s.valid());
    CHECK(s.is_ready());
  }
  CHECK(in[1].get() == 2);
}

TEST_CASE("when_all over an empty range gives a ready, empty vector", "[when_all]") {
  auto all = dx::when_all(std::vector<dx::future<int>>{});
  REQUIRE(all.is_ready());
  CHECK(all.get().empty());

  std::vector<dx::shared_future<std::string>> none;
  auto all2 = dx::when_all(none.begin(), none.end());
  REQUIRE(all2.is_ready());
  CHECK(all2.get().empty());

  auto voids = dx::when_all(std::vector<dx::future<void>>{});
  STATIC_REQUIRE(std::is_same_v<decltype(voids), dx::future<void>>);
  REQUIRE(voids.is_ready());
  CHECK_NOTHROW(voids.get());
}

TEST_CASE("when_all over future<void> inputs gives a future<void>", "[when_all]") {
  std::vector<dx::promise<void>> ps(3);
  std::vector<dx::future<void>> in;
  for (auto& p : ps) in.push_back(p.get_future());
  auto all = dx::when_all(std::move(in));
  STATIC_REQUIRE(std::is_same_v<decltype(all), dx::future<void>>);
  ps[0].set_value();
  ps[2].set_value();
  CHECK_FALSE(all.is_ready());
  ps[1].set_value();
  REQUIRE(all.is_ready());
  CHECK_NOTHROW(all.get());
}

TEST_CASE("when_all over future<void> inputs carries the first input's exception", "[when_all]") {
  std::vector<dx::promise<void>> ps(3);
  std::vector<dx::future<void>> in;
  for (auto& p : ps) in.push_back(p.get_future());
  auto all = dx::when_all(std::move(in));
  ps[2].set_exception(make_test_error("third"));
  ps[1].set_exception(make_test_error("second"));
  ps[0].set_value();
  CHECK(message_of<test_error>([&] { dx_test::get_soon(all); }) == "second");
}

TEST_CASE("variadic when_all gives a tuple of the values with std::monostate for void", "[when_all]") {
  dx::promise<int> pi;
  dx::promise<void> pv;
  dx::promise<std::string> ps;
  auto all = dx::when_all(pi.get_future(), pv.get_future(), ps.get_future());
  STATIC_REQUIRE(std::is_same_v<decltype(all), dx::future<std::tuple<int, std::monostate, std::string>>>);
  ps.set_value("s");
  pv.set_value();
  CHECK_FALSE(all.is_ready());
  pi.set_value(7);
  REQUIRE(all.is_ready());
  auto [i, v, s] = all.get();
  CHECK(i == 7);
  CHECK(v == std::monostate{});
  CHECK(s == "s");
}

TEST_CASE("variadic when_all of a single future gives a one-element tuple", "[when_all]") {
  auto all = dx::when_all(dx::make_ready_future(3));
  STATIC_REQUIRE(std::is_same_v<decltype(all), dx::future<std::tuple<int>>>);
  CHECK(std::get<0>(dx_test::get_soon(all)) == 3);
}

TEST_CASE("variadic when_all mixes futures and shared_futures, copying the shared ones", "[when_all][shared_future]") {
  dx::promise<std::string> ps;
  dx::shared_future<std::string> shared = ps.get_future().share();
  dx::promise<int> pi;
  dx::future<int> fi = pi.get_future();
  auto all = dx::when_all(std::move(fi), shared, dx::make_ready_future(), shared);
  STATIC_REQUIRE(std::is_same_v<decltype(all), dx::future<std::tuple<int, std::string, std::monostate, std::string>>>);
  CHECK_FALSE(fi.valid());  // the future was moved in
  CHECK(shared.valid());    // the shared one was copied
  ps.set_value("x");
  pi.set_value(1);
  auto [i, s1, m, s2] = dx_test::get_soon(all);
  CHECK(i == 1);
  CHECK(s1 == "x");
  CHECK(s2 == "x");
  (void)m;
  CHECK(shared.get() == "x");  // copying the value out left the shared value alone
}

TEST_CASE("variadic when_all moves a move-only value out of a future", "[when_all]") {
  dx::promise<std::unique_ptr<int>> p;
  auto all = dx::when_all(p.get_future(), dx::make_ready_future(2));
  p.set_value(std::make_unique<int>(40));
  auto [ptr, two] = dx_test::get_soon(all);
  REQUIRE(ptr);
  CHECK(*ptr + two == 42);
}

TEST_CASE("range when_all moves move-only values out of the futures", "[when_all]") {
  std::vector<dx::future<std::unique_ptr<int>>> in;
  for (int i = 0; i < 3; ++i) in.push_back(dx::make_ready_future(std::make_unique<int>(i)));
  auto values = dx_test::get_soon(dx::when_all(std::move(in)));
  REQUIRE(values.size() == 3);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(values[i]);
    CHECK(*values[i] == i);
  }
}

TEST_CASE("when_all result holds the exception of the first failing input by position", "[when_all]") {
  // Inputs 1 and 3 fail; 3 fails first in time, but 1 comes first by position.
  std::vector<dx::promise<int>> ps(5);
  std::vector<dx::future<int>> in;
  for (auto& p : ps) in.push_back(p.get_future());
  auto all = dx::when_all(std::move(in));
  ps[3].set_exception(make_test_error("input 3"));
  ps[0].set_value(0);
  ps[4].set_value(4);
  CHECK_FALSE(all.is_ready());  // not before every input is ready
  ps[1].set_exception(make_test_error("input 1"));
  CHECK_FALSE(all.is_ready());
  ps[2].set_value(2);
  REQUIRE(all.is_ready());
  CHECK(message_of<test_error>([&] { all.get(); }) == "input 1");
}

TEST_CASE("when_all over shared_futures reports the first failing input by position", "[when_all][shared_future]") {
  dx::promise<int> a;
  dx::promise<int> b;
  dx::promise<int> c;
  std::vector<dx::shared_future<int>> in{a.get_future(), b.get_future(), c.get_future()};
  auto all = dx::when_all(in);
  c.set_exception(make_test_error("c"));
  b.set_exception(make_test_error("b"));
  a.set_value(1);
  CHECK(message_of<test_error>([&] { dx_test::get_soon(all); }) == "b");
}

TEST_CASE("variadic when_all holds the exception of the first failing input by position", "[when_all]") {
  dx::promise<int> a;
  dx::promise<void> b;
  dx::promise<std::string> c;
  auto all = dx::when_all(a.get_future(), b.get_future(), c.get_future());
  c.set_exception(make_test_error("c failed"));
  b.set_exception(make_test_error("b failed"));
  a.set_value(1);
  REQUIRE(all.is_ready());
  CHECK(message_of<test_error>([&] { all.get(); }) == "b failed");

  // Only the last one fails.
  auto one = dx::when_all(dx::make_ready_future(1), dx::make_exceptional_future<int>(make_test_error("last")));
  CHECK(message_of<test_error>([&] { dx_test::get_soon(one); }) == "last");
}

TEST_CASE("when_all carries dx::broken_promise from an abandoned input", "[when_all]") {
  std::vector<dx::future<int>> in;
  in.push_back(dx::make_ready_future(1));
  { in.push_back(dx::promise<int>().get_future()); }
  CHECK_THROWS_AS(dx_test::get_soon(dx::when_all(std::move(in))), dx::broken_promise);
}

TEST_CASE("when_all over inputs completed from other threads in random order keeps input order", "[when_all]") {
  constexpr int n = 200;
  constexpr int setters = 4;
  std::mt19937 rng(12345);
  for (int round = 0; round < 10; ++round) {
    std::vector<dx::promise<int>> ps(n);
    std::vector<dx::future<int>> in;
    for (auto& p : ps) in.push_back(p.get_future());
    auto all = dx::when_all(std::move(in));
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    {
      std::vector<std::jthread> threads;
      for (int t = 0; t < setters; ++t) {
        threads.emplace_back([&, t] {
          for (int k = t; k < n; k += setters) ps[order[k]].set_value(order[k] * 3);
        });
      }
    }
    auto values = dx_test::get_soon(all);
    REQUIRE(values.size() == n);
    int bad = 0;
    for (int i = 0; i < n; ++i) bad += values[i] != i * 3;
    REQUIRE(bad == 0);
  }
}

TEST_CASE("variadic when_all over inputs completed concurrently from other threads", "[when_all]") {
  for (int round = 0; round < 200; ++round) {
    dx::promise<int> a;
    dx::promise<std::string> b;
    dx::promise<void> c;
    auto all = dx::when_all(a.get_future(), b.get_future(), c.get_future());
    {
      std::jthread t1([&] { a.set_value(round); });
      std::jthread t2([&] { b.set_value("r"); });
      std::jthread t3([&] { c.set_value(); });
    }
    auto [x, y, z] = dx_test::get_soon(all);
    (void)z;
    REQUIRE(x == round);
    REQUIRE(y == "r");
  }
}

TEST_CASE("when_all of 10,000 futures from executor submit gives every value in order", "[when_all][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  constexpr int n = 10000;
  std::vector<dx::future<long long>> in;
  in.reserve(n);
  for (int i = 0; i < n; ++i) in.push_back(ex.submit([i] { return static_cast<long long>(i) * i; }));
  auto values = dx_test::get_soon(dx::when_all(std::move(in)));
  REQUIRE(values.size() == n);
  int bad = 0;
  for (int i = 0; i < n; ++i) bad += values[i] != static_cast<long long>(i) * i;
  CHECK(bad == 0);
}

TEST_CASE("when_all of executor futures registered while they complete loses no input", "[when_all][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  for (int round = 0; round < 50; ++round) {
    std::vector<dx::future<int>> in;
    for (int i = 0; i < 50; ++i) in.push_back(ex.submit([i] { return i; }));
    auto values = dx_test::get_soon(dx::when_all(std::move(in)));
    REQUIRE(values.size() == 50);
    REQUIRE(std::accumulate(values.begin(), values.end(), 0) == 49 * 50 / 2);
    REQUIRE(values[49] == 49);
  }
}

TEST_CASE("when_all of void tasks from an executor waits for all of them", "[when_all][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  std::atomic<int> ran{0};
  std::vector<dx::future<void>> in;
  for (int i = 0; i < 1000; ++i) in.push_back(ex.submit([&ran] { ran.fetch_add(1); }));
  dx_test::get_soon(dx::when_all(std::move(in)));
  CHECK(ran.load() == 1000);
}

TEST_CASE("variadic when_all of executor tasks and the exception of the first failing one", "[when_all][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  dx::promise<void> gate;
  dx::shared_future<void> g = gate.get_future().share();
  // The second task fails last in time (it waits for the gate); it still wins by position.
  auto all = dx::when_all(ex.submit([] { return 1; }), ex.submit([]() -> int { throw test_error("second"); }, g),
                          ex.submit([]() -> std::string { throw test_error("third"); }));
  std::this_thread::sleep_for(2ms);
  gate.set_value();
  CHECK(message_of<test_error>([&] { dx_test::get_soon(all); }) == "second");
}

TEST_CASE("when_all's result can be continued with then()", "[when_all][then]") {
  dx::promise<int> a;
  dx::promise<int> b;
  std::vector<dx::future<int>> in;
  in.push_back(a.get_future());
  in.push_back(b.get_future());
  auto sum =
      dx::when_all(std::move(in)).then([](std::vector<int> v) { return std::accumulate(v.begin(), v.end(), 0); });
  a.set_value(40);
  b.set_value(2);
  CHECK(dx_test::get_soon(sum) == 42);
}

TEST_CASE("when_all given an empty future throws dx::no_state", "[when_all]") {
  SECTION("range form") {
    std::vector<dx::future<int>> in;
    in.push_back(dx::make_ready_future(1));
    in.emplace_back();
    CHECK_THROWS_AS(dx::when_all(std::move(in)), dx::no_state);
  }
  SECTION("range form with a moved-from future") {
    std::vector<dx::future<int>> in;
    in.push_back(dx::make_ready_future(1));
    auto stolen = std::move(in[0]);
    CHECK_THROWS_AS(dx::when_all(std::move(in)), dx::no_state);
  }
  SECTION("iterator form") {
    std::vector<dx::future<int>> in(2);
    CHECK_THROWS_AS(dx::when_all(in.begin(), in.end()), dx::no_state);
  }
  SECTION("shared_future range") {
    std::vector<dx::shared_future<int>> in{dx::make_ready_future(1).share(), dx::shared_future<int>()};
    CHECK_THROWS_AS(dx::when_all(in), dx::no_state);
  }
  SECTION("variadic form") {
    dx::future<int> empty;
    CHECK_THROWS_AS(dx::when_all(dx::make_ready_future(1), std::move(empty)), dx::no_state);
    dx::shared_future<void> empty_shared;
    CHECK_THROWS_AS(dx::when_all(empty_shared, dx::make_ready_future()), dx::no_state);
  }
}

TEST_CASE("when_all given an empty future leaves the other inputs untouched", "[when_all]") {
  dx::promise<int> p;
  dx::future<int> good = p.get_future();
  dx::future<int> empty;
  CHECK_THROWS_AS(dx::when_all(std::move(good), std::move(empty)), dx::no_state);
  // The check happens before anything is consumed, so the good future is still there.
  REQUIRE(good.valid());
  p.set_value(5);
  CHECK(good.get() == 5);
}
