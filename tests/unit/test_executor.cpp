// Tests of dx::executor: submit, post, dependencies, priorities, wait_idle, shutdown, nested waits.
#include <dx/executor.hpp>

#include <dx/dx.hpp>

#include "test_helpers.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace dx_test;  // the shared helpers of test_helpers.hpp

using namespace std::chrono_literals;

/// Records the order in which tasks ran.
class order_log {
 public:
  void add(std::string s) {
    std::lock_guard lock(m_);
    log_.push_back(std::move(s));
  }
  std::vector<std::string> get() {
    std::lock_guard lock(m_);
    return log_;
  }

 private:
  std::mutex m_;
  std::vector<std::string> log_;
};

dx::task<int> add_later(dx::executor& ex) {
  int a = co_await ex.submit([] { return 20; });
  co_return a + 22;
}

}  // namespace

TEST_CASE("submit returns the value the function computes", "[executor]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};

  auto i = ex.submit([] { return 42; });
  auto s = ex.submit([] { return std::string("hello"); });
  std::atomic<bool> ran{false};
  auto v = ex.submit([&] { ran = true; });
  auto sum = ex.submit([](int a, int b, int c) { return a + b + c; }, 1, 2, 3);

  CHECK(dx_test::get_soon(i) == 42);
  CHECK(dx_test::get_soon(s) == "hello");
  dx_test::get_soon(v);
  CHECK(ran.load());
  CHECK(dx_test::get_soon(sum) == 6);

  std::vector<dx::future<int>> many;
  for (int k = 0; k < 1000; ++k) many.push_back(ex.submit([k] { return k * k; }));
  for (int k = 0; k < 1000; ++k) REQUIRE(dx_test::get_soon(many[k]) == k * k);
}

TEST_CASE("submit copies lvalue arguments at the time of the call", "[executor][arguments]") {
  dx::executor ex{2};
  int x = 1;
  std::string text = "before";
  auto f = ex.submit([](int v, std::string t) { return t + std::to_string(v); }, x, text);
  x = 2;
  text = "after";
  CHECK(dx_test::get_soon(f) == "before1");
  CHECK(x == 2);
  CHECK(text == "after");
}

TEST_CASE("submit moves move-only arguments and move-only callables into the task", "[executor][arguments]") {
  dx::executor ex{2};
  auto f = ex.submit([](std::unique_ptr<int> p) { return *p + 1; }, std::make_unique<int>(41));
  CHECK(dx_test::get_soon(f) == 42);

  auto owned = std::make_unique<std::string>("captured");
  auto g = ex.submit([p = std::move(owned)] { return *p; });
  CHECK(owned == nullptr);
  CHECK(dx_test::get_soon(g) == "captured");

  // A move-only result travels out of the future too.
  auto h = ex.submit([](std::unique_ptr<int> p) { return p; }, std::make_unique<int>(7));
  std::unique_ptr<int> back = dx_test::get_soon(h);
  REQUIRE(back != nullptr);
  CHECK(*back == 7);

  // A moved std::string argument is moved, not copied: the source is left empty or unchanged
  // but the task sees the full value.
  std::string big(1000, 'x');
  auto k = ex.submit([](std::string s) { return s.size(); }, std::move(big));
  CHECK(dx_test::get_soon(k) == 1000u);
}

TEST_CASE("std::ref arguments give the task a reference to the caller's object", "[executor][arguments]") {
  dx::executor ex{2};
  int target = 0;
  auto f = ex.submit([](int& r) { r = 99; }, std::ref(target));
  dx_test::get_soon(f);
  CHECK(target == 99);
}

TEST_CASE("a future argument is a dependency whose value the task receives", "[executor][dependencies]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};

  std::atomic<bool> first_done{false};
  auto a = ex.submit([&] {
    std::this_thread::sleep_for(20ms);
    first_done = true;
    return 20;
  });
  std::atomic<bool> saw_first_done{false};
  auto b = ex.submit(
      [&](int x) {
        saw_first_done = first_done.load();
        return x + 22;
      },
      std::move(a));
  CHECK_FALSE(a.valid());  // moved into the task
  CHECK(dx_test::get_soon(b) == 42);
  CHECK(saw_first_done.load());

  // Several dependencies mixed with plain arguments, in order.
  auto p = ex.submit([] { return std::string("a"); });
  auto q = ex.submit([] { return 3; });
  auto r = ex.submit([](std::string s, int plain, int n) { return s + std::to_string(plain) + std::to_string(n); },
                     std::move(p), 10, std::move(q));
  CHECK(dx_test::get_soon(r) == "a103");

  // A chain: each task depends on the previous one.
  dx::future<int> chain = ex.submit([] { return 0; });
  for (int k = 0; k < 200; ++k) chain = ex.submit([](int v) { return v + 1; }, std::move(chain));
  CHECK(dx_test::get_soon(chain) == 200);

  // A move-only value is moved out of a future dependency.
  auto u = ex.submit([] { return std::make_unique<int>(5); });
  auto w = ex.submit([](std::unique_ptr<int> p2) { return *p2 * 2; }, std::move(u));
  CHECK(dx_test::get_soon(w) == 10);
}

TEST_CASE("a shared_future argument passes its value by const reference to every dependent task",
          "[executor][dependencies]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};

  dx::shared_future<std::vector<int>> data = ex.submit([] { return std::vector<int>{1, 2, 3, 4}; }).share();
  std::vector<dx::future<int>> sums;
  std::vector<const std::vector<int>*> seen(10, nullptr);
  for (int k = 0; k < 10; ++k) {
    sums.push_back(ex.submit(
        [k, &seen](const std::vector<int>& v) {
          seen[k] = &v;
          int s = 0;
          for (int e : v) s += e;
          return s + k;
        },
        data));
  }
  for (int k = 0; k < 10; ++k) CHECK(dx_test::get_soon(sums[k]) == 10 + k);
  // All of them saw the same object, the shared value itself, not copies.
  const std::vector<int>* shared_value = &data.get();
  for (auto* p : seen) CHECK(p == shared_value);
  CHECK(data.valid());
}

TEST_CASE("a future<void> argument orders the task without passing a value", "[executor][dependencies]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};

  std::atomic<int> step{0};
  dx::future<void> first = ex.submit([&] {
    std::this_thread::sleep_for(10ms);
    step = 1;
  });
  auto second = ex.submit([&] { return step.load() == 1 ? 2 : -1; }, std::move(first));
  CHECK(dx_test::get_soon(second) == 2);

  dx::shared_future<void> sv = ex.submit([&] { step = 5; }).share();
  auto third = ex.submit([&](int x) { return step.load() + x; }, sv, 1);
  auto fourth = ex.submit([&](int x) { return step.load() + x; }, 2, sv);
  CHECK(dx_test::get_soon(third) == 6);
  CHECK(dx_test::get_soon(fourth) == 7);
}

TEST_CASE("a dependency holding an exception skips the task and its future holds that exception",
          "[executor][dependencies][exceptions]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> ran{0};

  SECTION("an exceptional future made ready beforehand") {
    auto bad = dx::make_exceptional_future<int>(std::make_exception_ptr(test_error("boom")));
    auto f = ex.submit(
        [&](int v) {
          ++ran;
          return v;
        },
        std::move(bad));
    settle(ex, f);
    CHECK_THROWS_WITH(f.get(), "boom");
  }
  SECTION("a task that throws, as a future dependency") {
    auto bad = ex.submit([]() -> int { throw test_error("from task"); });
    auto f = ex.submit(
        [&](int v) {
          ++ran;
          return v;
        },
        std::move(bad));
    settle(ex, f);
    CHECK_THROWS_AS(f.get(), test_error);
  }
  SECTION("the failing one of several dependencies, as a shared_future") {
    auto good = ex.submit([] { return 1; });
    dx::shared_future<void> bad = ex.submit([] { throw test_error("void failed"); }).share();
    auto f = ex.submit([&](int) { ++ran; }, std::move(good), bad);
    auto g = ex.submit([&] { ++ran; }, bad);
    settle(ex, f);
    settle(ex, g);
    CHECK_THROWS_WITH(f.get(), "void failed");
    CHECK_THROWS_WITH(g.get(), "void failed");
  }
  SECTION("an exception propagates down a chain of dependencies") {
    dx::future<int> chain = ex.submit([]() -> int { throw test_error("root"); });
    for (int k = 0; k < 20; ++k) {
      chain = ex.submit(
          [&](int v) {
            ++ran;
            return v + 1;
          },
          std::move(chain));
    }
    settle(ex, chain);
    CHECK_THROWS_WITH(chain.get(), "root");
  }
  ex.wait_idle();
  CHECK(ran.load() == 0);
}

TEST_CASE("a task depending on a promise set later by another thread waits for the value", "[executor][dependencies]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};

  dx::promise<int> p;
  std::atomic<bool> value_set{false};
  std::atomic<bool> ran_early{false};
  auto f = ex.submit(
      [&](int v) {
        if (!value_set.load()) ran_early = true;
        return v * 2;
      },
      p.get_future());
  // Other work keeps flowing meanwhile: the waiting task occupies no thread.
  for (int k = 0; k < threads * 4; ++k) CHECK(dx_test::get_soon(ex.submit([k] { return k; })) == k);
  CHECK(f.wait_for(30ms) == dx::future_status::timeout);

  std::thread setter([&] {
    std::this_thread::sleep_for(20ms);
    value_set = true;
    p.set_value(21);
  });
  CHECK(dx_test::get_soon(f) == 42);
  setter.join();
  CHECK_FALSE(ran_early.load());
}

TEST_CASE("a broken promise as a dependency skips the task with dx::broken_promise", "[executor][dependencies]") {
  dx::executor ex{2};
  std::atomic<bool> ran{false};
  dx::future<void> f;
  {
    dx::promise<int> p;
    f = ex.submit([&](int) { ran = true; }, p.get_future());
  }
  settle(ex, f);
  CHECK_THROWS_AS(f.get(), dx::broken_promise);
  CHECK_FALSE(ran.load());
}

TEST_CASE("an exception thrown by a task reaches its future unchanged", "[executor][exceptions]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};

  auto f = ex.submit([]() -> int { throw test_error("task failed"); });
  settle(ex, f);
  CHECK_THROWS_AS(f.get(), test_error);

  auto g = ex.submit([] { throw 17; });
  settle(ex, g);
  try {
    g.get();
    FAIL("get() did not throw");
  } catch (int v) {
    CHECK(v == 17);
  }

  // The executor goes on working after a failed task.
  CHECK(dx_test::get_soon(ex.submit([] { return 3; })) == 3);
}

TEST_CASE("post runs fire-and-forget tasks exactly once", "[executor][post]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  constexpr int n = 5000;
  std::vector<std::atomic<int>> hits(n);
  std::atomic<int> count{0};
  for (int k = 0; k < n; ++k) {
    ex.post([&, k] {
      hits[k].fetch_add(1);
      count.fetch_add(1);
    });
  }
  ex.wait_idle();
  CHECK(count.load() == n);
  int wrong = 0;
  for (auto& h : hits) wrong += h.load() != 1;
  CHECK(wrong == 0);

  // Priorities are accepted by post as well.
  ex.post(dx::priority::high, [&] { count.fetch_add(10); });
  ex.post(dx::priority::low, [&] { count.fetch_add(100); });
  ex.wait_idle();
  CHECK(count.load() == n + 110);
}

TEST_CASE("a posted task that throws does not stop the executor", "[executor][post][exceptions]") {
  dx::executor ex{1};
  std::atomic<int> count{0};
  ex.post([] { throw test_error("expected test output: a posted task threw"); });
  ex.post([&] { ++count; });
  ex.wait_idle();
  CHECK(count.load() == 1);
  CHECK(dx_test::get_soon(ex.submit([] { return 1; })) == 1);
}

TEST_CASE("high-priority tasks submitted from outside start before queued normal ones and low ones after them",
          "[executor][priority]") {
  dx::executor ex{1};
  gate g;
  std::atomic<bool> started{false};
  auto blocker = ex.submit([&] {
    started = true;
    return g.wait();
  });
  REQUIRE(eventually([&] { return started.load(); }));

  order_log log;
  std::vector<dx::future<void>> futures;
  for (int k = 0; k < 5; ++k) futures.push_back(ex.submit([&, k] { log.add("N" + std::to_string(k)); }));
  for (int k = 0; k < 5; ++k) {
    futures.push_back(ex.submit(dx::priority::high, [&, k] { log.add("H" + std::to_string(k)); }));
    futures.push_back(ex.submit(dx::priority::low, [&, k] { log.add("L" + std::to_string(k)); }));
  }
  ex.post(dx::priority::high, [&] { log.add("Hpost"); });
  ex.post(dx::priority::low, [&] { log.add("Lpost"); });
  ex.post([&] { log.add("Npost"); });
  g.open();
  CHECK(dx_test::get_soon(blocker));
  for (auto& f : futures) dx_test::get_soon(f);
  ex.wait_idle();

  auto order = log.get();
  REQUIRE(order.size() == 18);
  INFO("order: " << [&] {
    std::string s;
    for (auto& e : order) s += e + " ";
    return s;
  }());
  std::size_t last_high = 0, first_normal = order.size(), last_normal = 0, first_low = order.size();
  for (std::size_t k = 0; k < order.size(); ++k) {
    char c = order[k][0];
    if (c == 'H') last_high = std::max(last_high, k);
    if (c == 'N') {
      first_normal = std::min(first_normal, k);
      last_normal = std::max(last_normal, k);
    }
    if (c == 'L') first_low = std::min(first_low, k);
  }
  CHECK(last_high < first_normal);
  CHECK(last_normal < first_low);
}

TEST_CASE("priorities are honoured for tasks submitted from inside a task", "[executor][priority]") {
  dx::executor ex{1};
  order_log log;
  auto outer = ex.submit([&] {
    for (int k = 0; k < 4; ++k) ex.post([&, k] { log.add("N" + std::to_string(k)); });
    for (int k = 0; k < 4; ++k) {
      ex.post(dx::priority::low, [&, k] { log.add("L" + std::to_string(k)); });
      ex.post(dx::priority::high, [&, k] { log.add("H" + std::to_string(k)); });
    }
  });
  dx_test::get_soon(outer);
  ex.wait_idle();
  auto order = log.get();
  REQUIRE(order.size() == 12);
  for (std::size_t k = 0; k < 4; ++k) CHECK(order[k][0] == 'H');
  for (std::size_t k = 4; k < 8; ++k) CHECK(order[k][0] == 'N');
  for (std::size_t k = 8; k < 12; ++k) CHECK(order[k][0] == 'L');
}

TEST_CASE("wait_idle waits for tasks submitted by tasks", "[executor][wait_idle]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> count{0};
  // A binary tree of posts, 2^12 - 1 tasks, each a little slow at the leaves.
  std::function<void(int)> spawn = [&](int depth) {
    count.fetch_add(1);
    if (depth == 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      return;
    }
    ex.post([&, depth] { spawn(depth - 1); });
    ex.submit([&, depth] { spawn(depth - 1); });  // the future is dropped: still waited for
  };
  ex.post([&] { spawn(11); });
  ex.wait_idle();
  CHECK(count.load() == (1 << 12) - 1);
}

TEST_CASE("wait_idle waits for tasks whose dependencies complete later", "[executor][wait_idle][dependencies]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> count{0};
  dx::promise<int> p;
  dx::shared_future<int> dep = p.get_future().share();
  for (int k = 0; k < 10; ++k) {
    ex.submit(
        [&](int v) {
          count.fetch_add(v);
          ex.post([&] { count.fetch_add(1000); });
        },
        dep);
  }
  std::thread setter([&] {
    std::this_thread::sleep_for(50ms);
    p.set_value(1);
  });
  ex.wait_idle();
  CHECK(count.load() == 10 + 10 * 1000);
  setter.join();
}

TEST_CASE("wait_idle on an executor with nothing to do returns", "[executor][wait_idle]") {
  dx::executor ex{2};
  ex.wait_idle();
  ex.wait_idle();
  std::atomic<int> count{0};
  ex.post([&] { ++count; });
  ex.wait_idle();
  CHECK(count.load() == 1);
  ex.wait_idle();
}

TEST_CASE("wait_idle and shutdown called from inside a task throw dx::error", "[executor][wait_idle]") {
  const int threads = GENERATE(1, 2);
  dx::executor ex{static_cast<std::size_t>(threads)};
  auto f = ex.submit([&] { ex.wait_idle(); });
  settle(ex, f);
  CHECK_THROWS_AS(f.get(), dx::error);
  auto g = ex.submit([&] { ex.shutdown(); });
  settle(ex, g);
  CHECK_THROWS_AS(g.get(), dx::error);
  // The executor still works.
  CHECK(dx_test::get_soon(ex.submit([] { return 5; })) == 5);
}

TEST_CASE("after shutdown began other threads are refused while pending tasks still complete", "[executor][shutdown]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  gate g;
  std::atomic<bool> started{false};
  std::atomic<int> ran{0};
  // Blocks one worker for real; once released, it submits from inside, which shutdown allows.
  auto blocker = ex.submit([&] {
    started = true;
    g.wait();
    auto child = ex.submit([] { return 7; });
    ex.post([&] { ++ran; });
    return child.get();
  });
  REQUIRE(eventually([&] { return started.load(); }));

  dx::promise<int> late_value;
  std::vector<dx::future<int>> pending;
  for (int k = 0; k < 20; ++k) {
    pending.push_back(ex.submit([&, k] {
      ++ran;
      return k;
    }));
  }
  auto waits_on_promise = ex.submit([](int v) { return v + 1; }, late_value.get_future());

  std::atomic<bool> shutdown_returned{false};
  std::thread closer([&] {
    ex.shutdown();
    shutdown_returned = true;
  });

  // Submit from this (outside) thread until the executor refuses. A refused future is ready at
  // once with dx::executor_shutdown; accepted ones are kept and must complete.
  std::vector<dx::future<int>> accepted_late;
  bool refused = false;
  auto deadline = std::chrono::steady_clock::now() + dx_test::bound;
  while (!refused && std::chrono::steady_clock::now() < deadline) {
    auto f = ex.submit([&] {
      ++ran;
      return -1;
    });
    if (f.is_ready()) {
      try {
        int v = f.get();
        CHECK(v == -1);  // accepted and already run by another worker
      } catch (const dx::executor_shutdown&) {
        refused = true;
      }
    } else {
      accepted_late.push_back(std::move(f));
    }
    if (!refused) std::this_thread::sleep_for(100us);
  }
  REQUIRE(refused);
  CHECK_THROWS_AS(ex.post([&] { ran += 1000000; }), dx::executor_shutdown);
  {
    auto f = ex.submit([] { return 1; });
    dx_test::require_ready_soon(f);
    CHECK_THROWS_AS(f.get(), dx::executor_shutdown);
  }
  // A task that waits on a dependency is refused as well.
  {
    dx::promise<int> never;
    auto f = ex.submit([](int v) { return v; }, never.get_future());
    dx_test::require_ready_soon(f);
    CHECK_THROWS_AS(f.get(), dx::executor_shutdown);
  }
  // Shutdown cannot finish while a task is still blocked.
  std::this_thread::sleep_for(20ms);
  CHECK_FALSE(shutdown_returned.load());

  late_value.set_value(41);
  g.open();
  CHECK(dx_test::get_soon(blocker) == 7);
  closer.join();
  CHECK(shutdown_returned.load());
  for (int k = 0; k < 20; ++k) CHECK(dx_test::get_soon(pending[k]) == k);
  for (auto& f : accepted_late) CHECK(dx_test::get_soon(f) == -1);
  CHECK(dx_test::get_soon(waits_on_promise) == 42);
  CHECK(ran.load() < 1000000);
  CHECK(ran.load() >= 21);
}

TEST_CASE("shutdown is idempotent and refuses work once it returned", "[executor][shutdown]") {
  dx::executor ex{2};
  std::atomic<int> count{0};
  for (int k = 0; k < 100; ++k) ex.post([&] { ++count; });
  ex.shutdown();
  CHECK(count.load() == 100);
  ex.shutdown();
  auto f = ex.submit([] { return 1; });
  dx_test::require_ready_soon(f);
  CHECK_THROWS_AS(f.get(), dx::executor_shutdown);
  CHECK_THROWS_AS(ex.post([] {}), dx::executor_shutdown);
  CHECK_THROWS_AS(ex.post(dx::priority::high, [] {}), dx::executor_shutdown);
  // dx::executor_shutdown is a dx::error.
  auto g = ex.submit([] { return 1; });
  dx_test::require_ready_soon(g);
  CHECK_THROWS_AS(g.get(), dx::error);
}

TEST_CASE("the destructor finishes all pending work before it returns", "[executor][shutdown]") {
  const int threads = GENERATE(1, 2, 4);
  std::atomic<int> count{0};
  dx::promise<void> later;
  std::thread setter;
  {
    dx::executor ex{static_cast<std::size_t>(threads)};
    for (int k = 0; k < 1000; ++k) {
      ex.post([&] {
        std::this_thread::sleep_for(std::chrono::microseconds(10));
        ++count;
      });
    }
    for (int k = 0; k < 100; ++k) {
      ex.submit([&] {
        ++count;
        ex.post([&] { ++count; });  // a task may submit while the executor shuts down
      });
    }
    dx::shared_future<void> dep = later.get_future().share();
    for (int k = 0; k < 10; ++k) ex.submit([&] { ++count; }, dep);
    setter = std::thread([&] {
      std::this_thread::sleep_for(50ms);
      later.set_value();
    });
  }
  CHECK(count.load() == 1000 + 200 + 10);
  setter.join();
}

TEST_CASE("future.get() inside a task waits for another task without deadlocking a one-thread executor",
          "[executor][nested]") {
  dx::executor ex{1};
  auto outer = ex.submit([&] {
    auto inner = ex.submit([] { return 20; });
    auto inner2 = ex.submit([](int v) { return v + 1; }, ex.submit([] { return 1; }));
    return inner.get() + inner2.get() + 20;
  });
  CHECK(dx_test::get_soon(outer) == 42);

  // Waiting on a promise another thread sets, from inside a task, also lets other tasks run.
  dx::promise<int> p;
  auto waiting = ex.submit([f = p.get_future()]() mutable { return f.get(); });
  std::vector<dx::future<int>> others;
  for (int k = 0; k < 10; ++k) others.push_back(ex.submit([k] { return k; }));
  for (int k = 0; k < 10; ++k) CHECK(dx_test::get_soon(others[k]) == k);
  p.set_value(9);
  CHECK(dx_test::get_soon(waiting) == 9);
}

TEST_CASE("recursive fib with nested get() computes the right value", "[executor][nested]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  auto f = ex.submit(fib_nested, std::ref(ex), 18);
  CHECK(dx_test::get_soon(f) == fib_seq(18));
}

TEST_CASE("a timed wait inside a task times out and later succeeds", "[executor][nested]") {
  const int threads = GENERATE(1, 2);
  dx::executor ex{static_cast<std::size_t>(threads)};
  dx::promise<int> p;
  dx::shared_future<int> sf = p.get_future().share();
  auto first = ex.submit([sf] { return sf.wait_for(10ms) == dx::future_status::timeout; });
  CHECK(dx_test::get_soon(first));
  p.set_value(3);
  auto second = ex.submit([sf] { return sf.wait_for(dx_test::bound) == dx::future_status::ready ? sf.get() : -1; });
  CHECK(dx_test::get_soon(second) == 3);
}

TEST_CASE("is_worker_thread is true only on the executor's own threads", "[executor]") {
  dx::executor ex{2};
  dx::executor other{1};
  CHECK_FALSE(ex.is_worker_thread());
  auto inside = ex.submit([&] { return ex.is_worker_thread(); });
  CHECK(dx_test::get_soon(inside));
  auto elsewhere = other.submit([&] { return ex.is_worker_thread(); });
  CHECK_FALSE(dx_test::get_soon(elsewhere));
  auto own = other.submit([&] { return other.is_worker_thread(); });
  CHECK(dx_test::get_soon(own));
  bool in_thread = true;
  std::thread t([&] { in_thread = ex.is_worker_thread(); });
  t.join();
  CHECK_FALSE(in_thread);
}

TEST_CASE("num_threads reports the requested thread count and at least one", "[executor]") {
  CHECK(dx::executor{1}.num_threads() == 1);
  CHECK(dx::executor{3}.num_threads() == 3);
  CHECK(dx::executor{0}.num_threads() == 1);
  CHECK(dx::executor::default_threads() >= 1);
  CHECK(dx::executor{}.num_threads() == dx::executor::default_threads());

  // All of the threads are really there: as many tasks as threads can block at once.
  dx::executor ex{3};
  std::atomic<int> arrived{0};
  gate g;
  std::vector<dx::future<bool>> fs;
  for (int k = 0; k < 3; ++k) {
    fs.push_back(ex.submit([&] {
      ++arrived;
      return g.wait();
    }));
  }
  CHECK(eventually([&] { return arrived.load() == 3; }));
  g.open();
  for (auto& f : fs) CHECK(dx_test::get_soon(f));
}

TEST_CASE("an executor that went idle still runs new tasks promptly", "[executor][idle]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  for (int round = 0; round < 3; ++round) {
    std::vector<dx::future<int>> fs;
    for (int k = 0; k < 100; ++k) fs.push_back(ex.submit([k] { return k; }));
    for (int k = 0; k < 100; ++k) REQUIRE(dx_test::get_soon(fs[k]) == k);
    ex.wait_idle();
    std::this_thread::sleep_for(200ms);  // every worker has gone to sleep by now
    auto f = ex.submit([] { return 1; });
    CHECK(dx_test::get_soon(f) == 1);
    std::atomic<int> posted{0};
    ex.post([&] { ++posted; });
    CHECK(eventually([&] { return posted.load() == 1; }));
  }
}

TEST_CASE("a callable returning dx::task runs as a coroutine whose result is the future's value",
          "[executor][coroutine]") {
  const int threads = GENERATE(1, 2);
  dx::executor ex{static_cast<std::size_t>(threads)};
  auto f = ex.submit(add_later, std::ref(ex));
  CHECK(dx_test::get_soon(f) == 42);
}

TEST_CASE("several outside threads submitting at once all get their results", "[executor]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  constexpr int submitters = 4;
  constexpr int per = 2000;
  std::vector<int> bad(submitters, 0);
  std::vector<std::thread> ts;
  for (int t = 0; t < submitters; ++t) {
    ts.emplace_back([&, t] {
      std::vector<dx::future<long>> fs;
      fs.reserve(per);
      for (int k = 0; k < per; ++k) {
        fs.push_back(ex.submit(
            k % 3 == 0 ? dx::priority::high : dx::priority::normal, [](long a, long b) { return a * 100000 + b; }, t,
            k));
      }
      for (int k = 0; k < per; ++k) {
        if (fs[k].wait_for(dx_test::bound) != dx::future_status::ready || fs[k].get() != t * 100000L + k) ++bad[t];
      }
    });
  }
  for (auto& th : ts) th.join();
  for (int t = 0; t < submitters; ++t) CHECK(bad[t] == 0);
}

TEST_CASE("a continuation made ready during a wait runs even if the waiting task then blocks", "[executor][wake]") {
  // The waiting task runs the producer itself while it waits; the continuation it makes ready must
  // stay visible to the other workers when the task goes on with work outside dx.
  dx::executor ex{4};
  for (int round = 0; round < 20; ++round) {
    gate continuation_ran;
    auto task = ex.submit([&] {
      dx::shared_future<int> produced = ex.submit([] { return 1; }).share();
      auto continued = produced.then([&](int) { continuation_ran.open(); });
      produced.wait();  // runs the producer here, which makes the continuation ready
      // Blocks (not a dx wait) until the continuation has run on another worker.
      return continuation_ran.wait();
    });
    REQUIRE(dx_test::get_soon(task));
  }
}

TEST_CASE("work submitted while a waiting worker wakes is not stranded", "[executor][wake]") {
  dx::executor ex{2};
  for (int round = 0; round < 30; ++round) {
    dx::promise<void> p;
    dx::shared_future<void> released = p.get_future().share();
    gate x_ran;
    std::atomic<bool> waiting{false};
    auto first = ex.submit([&] {
      waiting = true;
      released.wait();      // sleeps inside the executor's helping wait
      return x_ran.wait();  // then blocks outside dx until x has run elsewhere
    });
    REQUIRE(eventually([&] { return waiting.load(); }));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    auto x = ex.submit([&] { x_ran.open(); });
    p.set_value();
    REQUIRE(dx_test::get_soon(first));
    dx_test::get_soon(x);
  }
}
