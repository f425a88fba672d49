// Tests of dx::when_any.
#include <dx/when_any.hpp>

#include <dx/error.hpp>
#include <dx/executor.hpp>
#include <dx/future.hpp>

#include "test_helpers.hpp"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace dx_test;  // the shared helpers of test_helpers.hpp

template <class T>
std::vector<dx::future<T>> futures_of(std::vector<dx::promise<T>>& ps) {
  std::vector<dx::future<T>> fs;
  for (auto& p : ps) fs.push_back(p.get_future());
  return fs;
}

}  // namespace

TEST_CASE("when_any's index is the input that was ready when when_any was called", "[when_any]") {
  std::vector<dx::promise<int>> ps(4);
  auto fs = futures_of(ps);
  ps[2].set_value(22);
  auto any = dx::when_any(std::move(fs));
  STATIC_REQUIRE(std::is_same_v<decltype(any), dx::future<dx::when_any_result<dx::future<int>>>>);
  REQUIRE(any.is_ready());
  auto r = any.get();
  REQUIRE(r.index == 2);
  REQUIRE(r.futures.size() == 4);
  CHECK(r.futures[2].is_ready());
  CHECK(r.futures[2].get() == 22);
}

TEST_CASE("when_any with several inputs ready at once picks one of the ready ones", "[when_any]") {
  std::vector<dx::promise<int>> ps(4);
  auto fs = futures_of(ps);
  ps[3].set_value(3);
  ps[1].set_value(1);
  auto r = dx_test::get_soon(dx::when_any(std::move(fs)));
  CHECK((r.index == 1 || r.index == 3));
  REQUIRE(r.index < r.futures.size());
  CHECK(r.futures[r.index].is_ready());
  CHECK(r.futures[r.index].get() == static_cast<int>(r.index));
}

TEST_CASE("when_any's index is the first input to become ready later", "[when_any]") {
  std::vector<dx::promise<std::string>> ps(3);
  auto any = dx::when_any(futures_of(ps));
  CHECK_FALSE(any.is_ready());
  CHECK(any.wait_for(1ms) == dx::future_status::timeout);
  ps[1].set_value("one");
  REQUIRE(any.is_ready());
  ps[0].set_value("zero");  // after the winner: changes nothing
  auto r = any.get();
  CHECK(r.index == 1);
  CHECK(r.futures[1].get() == "one");
}

TEST_CASE("when_any gives back every input: the winner ready, the others valid and completing later", "[when_any]") {
  constexpr int n = 5;
  std::vector<dx::promise<int>> ps(n);
  auto any = dx::when_any(futures_of(ps));
  ps[3].set_value(300);
  auto r = dx_test::get_soon(any);
  REQUIRE(r.index == 3);
  REQUIRE(r.futures.size() == n);
  CHECK(r.futures[3].is_ready());
  for (int i = 0; i < n; ++i) {
    REQUIRE(r.futures[i].valid());
    if (i != 3) CHECK_FALSE(r.futures[i].is_ready());
  }
  // The others still complete, from another thread.
  {
    std::jthread setter([&] {
      for (int i = 0; i < n; ++i) {
        if (i != 3) ps[i].set_value(i * 100);
      }
    });
  }
  for (int i = 0; i < n; ++i) CHECK(dx_test::get_soon(r.futures[i]) == i * 100);
}

TEST_CASE("when_any counts an input holding an exception as ready and leaves the exception in it", "[when_any]") {
  std::vector<dx::promise<int>> ps(3);
  auto any = dx::when_any(futures_of(ps));
  ps[2].set_exception(make_test_error("failed input"));
  REQUIRE(any.is_ready());
  auto r = any.get();  // the combined future itself holds no exception
  REQUIRE(r.index == 2);
  CHECK(r.futures[2].is_ready());
  CHECK(message_of<test_error>([&] { r.futures[2].get(); }) == "failed input");
  ps[0].set_value(0);
  ps[1].set_value(1);
  CHECK(dx_test::get_soon(r.futures[1]) == 1);
}

TEST_CASE("when_any counts a broken promise as ready", "[when_any]") {
  std::vector<dx::promise<int>> ps(2);
  auto any = dx::when_any(futures_of(ps));
  { auto dead = std::move(ps[0]); }
  auto r = dx_test::get_soon(any);
  REQUIRE(r.index == 0);
  CHECK_THROWS_AS(r.futures[0].get(), dx::broken_promise);
  ps[1].set_value(1);
  CHECK(dx_test::get_soon(r.futures[1]) == 1);
}

TEST_CASE("when_any over an empty range is ready at once with index npos", "[when_any]") {
  auto any = dx::when_any(std::vector<dx::future<int>>{});
  REQUIRE(any.is_ready());
  auto r = any.get();
  CHECK(r.index == dx::when_any_result<dx::future<int>>::npos);
  CHECK(r.futures.empty());

  auto shared = dx_test::get_soon(dx::when_any(std::vector<dx::shared_future<void>>{}));
  CHECK(shared.index == dx::when_any_result<dx::shared_future<void>>::npos);
}

TEST_CASE("when_any of a single input", "[when_any]") {
  dx::promise<void> p;
  std::vector<dx::future<void>> in;
  in.push_back(p.get_future());
  auto any = dx::when_any(std::move(in));
  CHECK_FALSE(any.is_ready());
  p.set_value();
  auto r = dx_test::get_soon(any);
  CHECK(r.index == 0);
  REQUIRE(r.futures.size() == 1);
  CHECK_NOTHROW(r.futures[0].get());
}

TEST_CASE("when_any over shared_futures leaves the originals valid", "[when_any][shared_future]") {
  dx::promise<int> a;
  dx::promise<int> b;
  std::vector<dx::shared_future<int>> in{a.get_future().share(), b.get_future().share()};
  auto any = dx::when_any(in);
  STATIC_REQUIRE(std::is_same_v<decltype(any), dx::future<dx::when_any_result<dx::shared_future<int>>>>);
  b.set_value(2);
  auto r = dx_test::get_soon(any);
  CHECK(r.index == 1);
  CHECK(r.futures[1].get() == 2);
  CHECK(in[0].valid());
  CHECK(in[1].valid());
  CHECK(in[1].get() == 2);
  a.set_value(1);
  CHECK(r.futures[0].get() == 1);
  CHECK(in[0].get() == 1);
}

TEST_CASE("when_any with inputs completed later from another thread", "[when_any]") {
  std::vector<dx::promise<int>> ps(4);
  auto any = dx::when_any(futures_of(ps));
  std::jthread setter([&] {
    std::this_thread::sleep_for(5ms);
    ps[1].set_value(11);
    ps[3].set_value(33);
    ps[0].set_value(0);
    ps[2].set_value(22);
  });
  auto r = dx_test::get_soon(any);
  // The setter sets input 1 first; every other input is set after it.
  CHECK(r.index == 1);
  REQUIRE(r.futures.size() == 4);
  CHECK(dx_test::get_soon(r.futures[1]) == 11);
  CHECK(dx_test::get_soon(r.futures[3]) == 33);
  CHECK(dx_test::get_soon(r.futures[0]) == 0);
  CHECK(dx_test::get_soon(r.futures[2]) == 22);
}

TEST_CASE("when_any of two promises racing from two threads, 1000 times", "[when_any]") {
  int bad_index = 0;
  int not_ready = 0;
  int wrong_value = 0;
  int winners[2] = {0, 0};
  for (int round = 0; round < 1000; ++round) {
    dx::promise<int> a;
    dx::promise<int> b;
    std::vector<dx::future<int>> in;
    in.push_back(a.get_future());
    in.push_back(b.get_future());
    auto any = dx::when_any(std::move(in));
    std::atomic<bool> go{false};
    {
      std::jthread ta([&] {
        while (!go.load()) std::this_thread::yield();
        a.set_value(10);
      });
      std::jthread tb([&] {
        while (!go.load()) std::this_thread::yield();
        b.set_value(20);
      });
      go = true;
    }
    auto r = dx_test::get_soon(any);
    if (r.index > 1 || r.futures.size() != 2) {
      ++bad_index;
      continue;
    }
    ++winners[r.index];
    if (!r.futures[r.index].is_ready()) ++not_ready;
    if (r.futures[0].get() != 10 || r.futures[1].get() != 20) ++wrong_value;
  }
  CHECK(bad_index == 0);
  CHECK(not_ready == 0);
  CHECK(wrong_value == 0);
  CHECK(winners[0] + winners[1] == 1000);
}

TEST_CASE("when_any of shared_futures racing from two threads while registering", "[when_any][shared_future]") {
  int bad = 0;
  for (int round = 0; round < 300; ++round) {
    dx::promise<int> a;
    dx::promise<int> b;
    std::vector<dx::shared_future<int>> in{a.get_future(), b.get_future()};
    std::jthread ta([&] { a.set_value(1); });
    std::jthread tb([&] { b.set_value(2); });
    auto r = dx_test::get_soon(dx::when_any(in));  // registration races with the setters
    if (r.index > 1 || !r.futures[r.index].is_ready() || r.futures[r.index].get() != static_cast<int>(r.index) + 1) {
      ++bad;
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("when_any of executor tasks picks the task that could run", "[when_any][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  dx::promise<int> gate;
  std::vector<dx::future<int>> in;
  in.push_back(ex.submit([](int v) { return v; }, gate.get_future()));  // cannot run before the gate
  in.push_back(ex.submit([] { return 7; }));
  auto r = dx_test::get_soon(dx::when_any(std::move(in)));
  REQUIRE(r.index == 1);
  CHECK(r.futures[1].get() == 7);
  CHECK_FALSE(r.futures[0].is_ready());
  gate.set_value(3);
  CHECK(dx_test::get_soon(r.futures[0]) == 3);
}

TEST_CASE("when_any of many executor tasks gives a ready winner every time", "[when_any][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  int bad = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<dx::future<int>> in;
    for (int i = 0; i < 8; ++i) in.push_back(ex.submit([i] { return i; }));
    auto r = dx_test::get_soon(dx::when_any(std::move(in)));
    if (r.index >= 8 || !r.futures[r.index].is_ready()) {
      ++bad;
      continue;
    }
    for (int i = 0; i < 8; ++i) {
      if (dx_test::get_soon(r.futures[i]) != i) ++bad;
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("when_any given an empty future throws dx::no_state", "[when_any]") {
  std::vector<dx::future<int>> in;
  in.push_back(dx::make_ready_future(1));
  in.emplace_back();
  CHECK_THROWS_AS(dx::when_any(std::move(in)), dx::no_state);

  std::vector<dx::shared_future<int>> shared(1);
  CHECK_THROWS_AS(dx::when_any(shared), dx::no_state);
}

TEST_CASE("when_any's result can be dropped before the other inputs complete", "[when_any]") {
  // The nodes of the losers stay registered; completing them afterwards must be safe.
  std::vector<dx::promise<int>> ps(3);
  {
    auto any = dx::when_any(futures_of(ps));
    ps[0].set_value(0);
    auto r = dx_test::get_soon(any);
    CHECK(r.index == 0);
  }
  ps[1].set_value(1);
  ps[2].set_exception(make_test_error("late"));
  SUCCEED();
}
