// Tests of cancellation and timeouts of local work: dx::stop_token, dx::this_task, future::cancel,
// shared_future::cancel, cancelled graphs and coroutine tasks, task_options::with_timeout.
#include <dx/stop_token.hpp>

#include <dx/dx.hpp>

#include "test_helpers.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

namespace {

using namespace dx_test;  // the shared helpers of test_helpers.hpp
using namespace std::chrono_literals;

/// Blocks an executor thread until opened, so that later tasks stay queued.
struct held_thread {
  std::atomic<bool> open{false};
  std::atomic<bool> entered{false};
  void pass() {
    entered = true;
    for (int i = 0; i < 20'000 && !open; ++i) std::this_thread::sleep_for(1ms);
  }
  void wait_entered() {
    for (int i = 0; i < 20'000 && !entered; ++i) std::this_thread::sleep_for(1ms);
    REQUIRE(entered);
  }
};

/// Waits (bounded) until `token` is stopped; returns whether it was.
template <class Stopped>
bool wait_for_stop(Stopped stopped) {
  for (int i = 0; i < 20'000; ++i) {
    if (stopped()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

template <class Fut>
std::string error_of(Fut& f) {
  require_ready_soon(f);
  try {
    f.get();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("a default stop_token is never stopped, and outside a task this_task is not stopped", "[stop]") {
  dx::stop_token t;
  CHECK_FALSE(t.stop_requested());
  CHECK_FALSE(t.stop_possible());
  CHECK_FALSE(dx::this_task::stop_requested());
  CHECK_FALSE(dx::this_task::get_stop_token().stop_possible());
}

TEST_CASE("a task cancelled before it starts never runs and its future fails with dx::cancelled", "[stop]") {
  dx::executor ex{1};
  held_thread g;
  auto blocker = ex.submit([&] { g.pass(); });
  g.wait_entered();
  std::atomic<int> ran{0};
  auto f = ex.submit([&] { return ++ran; });
  CHECK(f.cancel());
  CHECK(f.is_ready());      // settled at once, while the task is still queued
  CHECK_FALSE(f.cancel());  // a second cancel changes nothing
  g.open = true;
  get_soon(blocker);
  REQUIRE_THROWS_AS(f.get(), dx::cancelled);
  ex.wait_idle();
  CHECK(ran == 0);
}

TEST_CASE("every dependent of a cancelled task fails with dx::cancelled and none of them runs", "[stop]") {
  dx::executor ex{1};
  held_thread g;
  auto blocker = ex.submit([&] { g.pass(); });
  g.wait_entered();
  std::atomic<int> ran{0};
  auto a = ex.submit([&] { return ++ran; }).share();
  auto b = ex.submit(
      [&](int x) {
        ++ran;
        return x + 1;
      },
      a);
  auto c = a.then([&](const int& x) {
    ++ran;
    return x * 2;
  });
  auto d = ex.submit(
      [&](int x) {
        ++ran;
        return x;
      },
      std::move(b));
  a.cancel();
  g.open = true;
  get_soon(blocker);
  REQUIRE_THROWS_AS(get_soon(c), dx::cancelled);
  REQUIRE_THROWS_AS(get_soon(d), dx::cancelled);
  ex.wait_idle();
  CHECK(ran == 0);
}

TEST_CASE("a running task sees the cancel through its stop_token and its late result is discarded", "[stop]") {
  dx::executor ex{2};
  std::atomic<bool> started{false};
  std::atomic<bool> saw_stop{false};
  const std::uint64_t late_before = dx::detail::late_completions();
  auto f = ex.submit(
      [&](dx::stop_token st, int v) {
        started = true;
        saw_stop = wait_for_stop([&] { return st.stop_requested(); });
        return v;
      },
      7);
  REQUIRE(wait_for_stop([&] { return started.load(); }));
  CHECK(f.cancel());
  REQUIRE_THROWS_AS(get_soon(f), dx::cancelled);
  ex.wait_idle();
  CHECK(saw_stop);
  CHECK(dx::detail::late_completions() == late_before + 1);
}

TEST_CASE("a running task sees the cancel through dx::this_task::stop_requested()", "[stop]") {
  dx::executor ex{2};
  std::atomic<bool> started{false};
  std::atomic<bool> saw_stop{false};
  auto f = ex.submit([&] {
    started = true;
    saw_stop = wait_for_stop([] { return dx::this_task::stop_requested(); });
  });
  REQUIRE(wait_for_stop([&] { return started.load(); }));
  f.cancel();
  REQUIRE_THROWS_AS(get_soon(f), dx::cancelled);
  ex.wait_idle();
  CHECK(saw_stop);
}

TEST_CASE("cancelling a finished task changes nothing", "[stop]") {
  dx::executor ex{1};
  auto f = ex.submit([] { return 42; });
  f.wait();
  CHECK_FALSE(f.cancel());
  CHECK(f.get() == 42);
}

TEST_CASE("shared_future::cancel cancels for every copy", "[stop]") {
  dx::executor ex{1};
  held_thread g;
  auto blocker = ex.submit([&] { g.pass(); });
  g.wait_entered();
  auto s = ex.submit([] { return 1; }).share();
  auto copy = s;
  CHECK(copy.cancel());
  g.open = true;
  get_soon(blocker);
  REQUIRE_THROWS_AS(get_soon(s), dx::cancelled);
}

TEST_CASE("a cancelled continuation never runs", "[stop]") {
  dx::promise<int> p;
  bool ran = false;
  auto f = p.get_future().then([&](int v) {
    ran = true;
    return v;
  });
  CHECK(f.cancel());
  p.set_value(1);
  REQUIRE_THROWS_AS(f.get(), dx::cancelled);
  CHECK_FALSE(ran);
}

TEST_CASE("cancelling a promise's future only records the request", "[stop]") {
  dx::promise<int> p;
  auto f = p.get_future();
  CHECK_FALSE(f.cancel());
  p.set_value(3);
  CHECK(f.get() == 3);
}

TEST_CASE("a cancelled coroutine task discards its result", "[stop]") {
  dx::executor ex{2};
  std::atomic<bool> started{false};
  auto f = ex.submit([&]() -> dx::task<int> {
    started = true;
    wait_for_stop([] { return dx::this_task::stop_requested(); });
    co_return 5;
  });
  REQUIRE(wait_for_stop([&] { return started.load(); }));
  f.cancel();
  REQUIRE_THROWS_AS(get_soon(f), dx::cancelled);
  ex.wait_idle();
}

TEST_CASE("cancelling a graph run skips its remaining tasks and fails the run with dx::cancelled", "[stop][graph]") {
  dx::executor ex{2};
  dx::task_graph g("pipeline");
  std::atomic<bool> started{false};
  std::atomic<bool> saw_stop{false};
  std::atomic<int> later{0};
  auto first = g.emplace([&] {
    started = true;
    saw_stop = wait_for_stop([] { return dx::this_task::stop_requested(); });
  });
  auto second = g.emplace([&] { ++later; });
  auto third = g.emplace([&] { ++later; });
  first.precede(second);
  second.precede(third);
  auto run = ex.run(g);
  REQUIRE(wait_for_stop([&] { return started.load(); }));
  CHECK(run.cancel());
  REQUIRE_THROWS_AS(get_soon(run), dx::cancelled);
  CHECK(saw_stop);
  CHECK(later == 0);
  // The graph runs again, from its first task, after a cancelled run.
  started = false;
  auto again = ex.run(g);
  REQUIRE(wait_for_stop([&] { return started.load(); }));
  again.cancel();
  REQUIRE_THROWS_AS(get_soon(again), dx::cancelled);
}

TEST_CASE("a queued graph run that is cancelled runs none of its tasks", "[stop][graph]") {
  dx::executor ex{2};
  dx::task_graph g;
  std::atomic<int> runs{0};
  held_thread gt;
  g.emplace([&] {
    if (++runs == 1) gt.pass();
  });
  auto first = ex.run(g);
  gt.wait_entered();
  auto second = ex.run(g);  // queued behind the first
  CHECK(second.cancel());
  gt.open = true;
  get_soon(first);
  REQUIRE_THROWS_AS(get_soon(second), dx::cancelled);
  CHECK(runs == 1);
}

TEST_CASE("a local task over its timeout fails with dx::timeout naming it and the limit, and is asked to stop",
          "[stop][timeout]") {
  dx::cluster cl{dx::options{}.threads(2)};
  std::atomic<bool> saw_stop{false};
  const std::uint64_t late_before = dx::detail::late_completions();
  auto f = cl.submit(dx::task_options{}.with_timeout(50ms).with_kind("slow.step"), [&](dx::stop_token st) {
    saw_stop = wait_for_stop([&] { return st.stop_requested(); });
    return 1;
  });
  const auto what = error_of(f);
  CHECK_THAT(what, Catch::Contains("slow.step") && Catch::Contains("50 ms"));
  cl.local().wait_idle();
  CHECK(saw_stop);
  CHECK(dx::detail::late_completions() == late_before + 1);
}

TEST_CASE("a local task that finishes within its timeout keeps its value", "[stop][timeout]") {
  dx::cluster cl{dx::options{}.threads(1)};
  auto f = cl.submit(dx::task_options{}.with_timeout(10s), [] { return 9; });
  CHECK(get_soon(f) == 9);
}

TEST_CASE("a local task whose timeout passes while it is queued never runs", "[stop][timeout]") {
  dx::cluster cl{dx::options{}.threads(1)};
  held_thread g;
  auto blocker = cl.submit([&] { g.pass(); });
  g.wait_entered();
  std::atomic<bool> ran{false};
  auto f = cl.submit(dx::task_options{}.with_timeout(20ms), [&] { ran = true; }).share();
  auto dependent = cl.submit([](int) {}, f.then([] { return 1; }));
  REQUIRE_THROWS_AS(get_soon(f), dx::timeout);  // while the only thread is still busy
  g.open = true;
  get_soon(blocker);
  REQUIRE_THROWS_AS(get_soon(dependent), dx::timeout);
  cl.local().wait_idle();
  CHECK_FALSE(ran);
}

TEST_CASE("tasks that finish within a long timeout do not stay alive until it passes", "[stop][timeout]") {
  dx::cluster cl{dx::options{}.threads(2)};
  struct counted {
    std::shared_ptr<int> alive = std::make_shared<int>(0);
  };
  std::weak_ptr<int> first;
  for (int i = 0; i < 5000; ++i) {
    auto f = cl.submit(dx::task_options{}.with_timeout(1h), [] { return counted{}; }).share();
    require_ready_soon(f);
    if (i == 0) first = f.get().alive;
  }
  // Only the timer could still hold the first task's state (and value): it dropped it.
  CHECK(first.expired());
}
