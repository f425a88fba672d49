// Tests of dx::future, dx::shared_future, dx::promise, make_ready_future and
// make_exceptional_future.
#include <dx/future.hpp>

#include <dx/error.hpp>
#include <dx/executor.hpp>

#include "test_helpers.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

namespace {

using namespace dx_test;  // the shared helpers of test_helpers.hpp

/// A type whose construction from an int throws when the int is negative.
struct picky {
  explicit picky(int v) : value(v) {
    if (v < 0) throw test_error("picky refused " + std::to_string(v));
  }
  int value;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Ready and exceptional futures, promise basics.

TEST_CASE("make_ready_future gives a ready, valid future whose get() returns the value once", "[future]") {
  dx::future<int> f = dx::make_ready_future(42);
  REQUIRE(f.valid());
  CHECK(f.is_ready());
  CHECK(f.wait_for(0ms) == dx::future_status::ready);
  CHECK(f.wait_until(std::chrono::steady_clock::now()) == dx::future_status::ready);
  f.wait();
  CHECK(f.get() == 42);
  CHECK_FALSE(f.valid());
}

TEST_CASE("make_ready_future decays its argument and moves strings in", "[future]") {
  const int x = 7;
  auto fi = dx::make_ready_future(x);
  STATIC_REQUIRE(std::is_same_v<decltype(fi), dx::future<int>>);
  CHECK(fi.get() == 7);

  std::string s = "hello";
  auto fs = dx::make_ready_future(s);
  STATIC_REQUIRE(std::is_same_v<decltype(fs), dx::future<std::string>>);
  CHECK(s == "hello");  // copied from an lvalue
  CHECK(fs.get() == "hello");
}

TEST_CASE("make_ready_future without an argument gives a ready future<void>", "[future]") {
  dx::future<void> f = dx::make_ready_future();
  REQUIRE(f.valid());
  CHECK(f.is_ready());
  f.get();
  CHECK_FALSE(f.valid());
}

TEST_CASE("make_exceptional_future gives a ready future that rethrows the exception from get()", "[future]") {
  auto f = dx::make_exceptional_future<int>(make_test_error("boom"));
  REQUIRE(f.valid());
  CHECK(f.is_ready());
  CHECK(f.wait_for(0ms) == dx::future_status::ready);
  CHECK(message_of<test_error>([&] { f.get(); }) == "boom");
  CHECK_FALSE(f.valid());

  auto v = dx::make_exceptional_future<void>(make_test_error("void boom"));
  CHECK(message_of<test_error>([&] { v.get(); }) == "void boom");
}

TEST_CASE("a promise's future becomes ready with the value set later", "[future][promise]") {
  dx::promise<std::string> p;
  dx::future<std::string> f = p.get_future();
  REQUIRE(f.valid());
  CHECK_FALSE(f.is_ready());
  p.set_value("forty-two");
  CHECK(f.is_ready());
  CHECK(f.get() == "forty-two");
}

TEST_CASE("a promise set from another thread wakes a thread blocked in get()", "[future][promise]") {
  dx::promise<int> p;
  dx::future<int> f = p.get_future();
  std::jthread setter([&] {
    std::this_thread::sleep_for(5ms);
    p.set_value(99);
  });
  CHECK(dx_test::get_soon(f) == 99);
}

TEST_CASE("wait() on a promise's future returns once another thread sets the value", "[future][promise]") {
  dx::promise<int> p;
  dx::future<int> f = p.get_future();
  std::jthread setter([&] {
    std::this_thread::sleep_for(5ms);
    p.set_value(3);
  });
  dx_test::require_ready_soon(f);
  f.wait();
  CHECK(f.is_ready());
  CHECK(f.get() == 3);
}

TEST_CASE("set_exception makes get() rethrow that exception", "[future][promise]") {
  dx::promise<int> p;
  auto f = p.get_future();
  p.set_exception(make_test_error("bad"));
  REQUIRE(f.is_ready());
  CHECK(message_of<test_error>([&] { f.get(); }) == "bad");
}

TEST_CASE("promise<void> works for set_value and set_exception", "[future][promise]") {
  dx::promise<void> p;
  dx::future<void> f = p.get_future();
  CHECK_FALSE(f.is_ready());
  p.set_value();
  REQUIRE(f.is_ready());
  CHECK_NOTHROW(f.get());

  dx::promise<void> q;
  auto g = q.get_future();
  q.set_exception(make_test_error("void"));
  CHECK(message_of<test_error>([&] { g.get(); }) == "void");
}

TEST_CASE("a move-only value travels through a promise and a future", "[future][promise]") {
  dx::promise<std::unique_ptr<int>> p;
  auto f = p.get_future();
  p.set_value(std::make_unique<int>(17));
  std::unique_ptr<int> v = dx_test::get_soon(f);
  REQUIRE(v);
  CHECK(*v == 17);
}

TEST_CASE("set_value forwards several constructor arguments to the value", "[future][promise]") {
  dx::promise<std::string> p;
  auto f = p.get_future();
  p.set_value(3u, 'x');
  CHECK(f.get() == "xxx");
}

// ---------------------------------------------------------------------------------------------
// Errors: broken promise, empty futures, misuse of promises.

TEST_CASE("destroying a promise without a value gives its future dx::broken_promise", "[future][promise]") {
  dx::future<int> f;
  {
    dx::promise<int> p;
    f = p.get_future();
    CHECK_FALSE(f.is_ready());
  }
  REQUIRE(f.is_ready());
  CHECK_THROWS_AS(f.get(), dx::broken_promise);

  dx::future<void> v;
  { v = dx::promise<void>().get_future(); }
  CHECK_THROWS_AS(dx_test::get_soon(v), dx::broken_promise);
}

TEST_CASE("dx::broken_promise is a dx::error", "[future][promise]") {
  dx::future<int> f;
  { f = dx::promise<int>().get_future(); }
  CHECK_THROWS_AS(f.get(), dx::error);
}

TEST_CASE("a promise that was satisfied does not break its future when destroyed", "[future][promise]") {
  dx::future<int> f;
  {
    dx::promise<int> p;
    f = p.get_future();
    p.set_value(5);
  }
  CHECK(f.get() == 5);
}

TEST_CASE("a promise destroyed on another thread wakes a waiter with dx::broken_promise", "[future][promise]") {
  auto p = std::make_unique<dx::promise<int>>();
  auto f = p->get_future();
  std::jthread killer([&] {
    std::this_thread::sleep_for(5ms);
    p.reset();
  });
  CHECK_THROWS_AS(dx_test::get_soon(f), dx::broken_promise);
}

TEST_CASE("move-assigning over an unsatisfied promise breaks the old promise's future", "[future][promise]") {
  dx::promise<int> a;
  auto fa = a.get_future();
  dx::promise<int> b;
  auto fb = b.get_future();
  a = std::move(b);
  REQUIRE(fa.is_ready());
  CHECK_THROWS_AS(fa.get(), dx::broken_promise);
  CHECK_FALSE(fb.is_ready());
  a.set_value(8);  // a now drives b's state
  CHECK(fb.get() == 8);
}

TEST_CASE("a moved promise keeps driving the same future", "[future][promise]") {
  dx::promise<int> a;
  auto f = a.get_future();
  dx::promise<int> b(std::move(a));
  CHECK_THROWS_AS(a.get_future(), dx::no_state);
  CHECK_THROWS_AS(a.set_value(1), dx::no_state);
  b.set_value(11);
  CHECK(f.get() == 11);
}

TEST_CASE("get_future() called twice throws dx::error", "[future][promise]") {
  dx::promise<int> p;
  auto f = p.get_future();
  CHECK_THROWS_AS(p.get_future(), dx::error);
  // The first future is unaffected.
  p.set_value(1);
  CHECK(f.get() == 1);
}

TEST_CASE("set_value twice throws dx::error and keeps the first value", "[future][promise]") {
  dx::promise<int> p;
  auto f = p.get_future();
  p.set_value(1);
  CHECK_THROWS_AS(p.set_value(2), dx::error);
  CHECK_THROWS_AS(p.set_exception(make_test_error("late")), dx::error);
  CHECK(f.get() == 1);

  dx::promise<void> q;
  auto g = q.get_future();
  q.set_exception(make_test_error("first"));
  CHECK_THROWS_AS(q.set_value(), dx::error);
  CHECK(message_of<test_error>([&] { g.get(); }) == "first");
}

TEST_CASE("a promise whose set_value threw can still be satisfied or breaks its future", "[future][promise]") {
  // The value's constructor throws: no value was stored, so the promise is not satisfied. Like
  // std::promise, dx must not leave the future waiting forever.
  SECTION("destroying it afterwards gives dx::broken_promise") {
    dx::future<picky> f;
    {
      dx::promise<picky> p;
      f = p.get_future();
      CHECK_THROWS_AS(p.set_value(-1), test_error);
    }
    // The promise is gone: its future must be ready now (no waiting needed).
    REQUIRE(f.is_ready());
    CHECK_THROWS_AS(f.get(), dx::broken_promise);
  }
  SECTION("setting a valid value afterwards works") {
    dx::promise<picky> p;
    auto f = p.get_future();
    CHECK_THROWS_AS(p.set_value(-1), test_error);
    CHECK_NOTHROW(p.set_value(4));
    REQUIRE(f.is_ready());
    CHECK(f.get().value == 4);
  }
}

TEST_CASE("every member of an empty future but valid() throws dx::no_state", "[future]") {
  dx::future<int> f;
  CHECK_FALSE(f.valid());
  CHECK_THROWS_AS(f.get(), dx::no_state);
  CHECK_THROWS_AS(f.wait(), dx::no_state);
  CHECK_THROWS_AS(f.is_ready(), dx::no_state);
  CHECK_THROWS_AS(f.wait_for(1ms), dx::no_state);
  CHECK_THROWS_AS(f.wait_until(std::chrono::steady_clock::now()), dx::no_state);
  CHECK_THROWS_AS(f.then([](int v) { return v; }), dx::no_state);
  CHECK_THROWS_AS(f.share(), dx::no_state);

  dx::future<void> v;
  CHECK_THROWS_AS(v.get(), dx::no_state);
  CHECK_THROWS_AS(v.then([] { return 1; }), dx::no_state);
}

TEST_CASE("get() on a consumed or moved-from future throws dx::no_state", "[future]") {
  auto f = dx::make_ready_future(1);
  CHECK(f.get() == 1);
  CHECK_FALSE(f.valid());
  CHECK_THROWS_AS(f.get(), dx::no_state);

  auto g = dx::make_ready_future(2);
  auto h = std::move(g);
  CHECK_FALSE(g.valid());
  CHECK_THROWS_AS(g.get(), dx::no_state);
  CHECK_THROWS_AS(g.wait(), dx::no_state);
  CHECK_THROWS_AS(g.is_ready(), dx::no_state);
  CHECK_THROWS_AS(g.then([](int v) { return v; }), dx::no_state);
  CHECK_THROWS_AS(g.share(), dx::no_state);
  CHECK(h.get() == 2);
}

TEST_CASE("then() and share() consume the future they are called on", "[future]") {
  auto f = dx::make_ready_future(1);
  auto g = f.then([](int v) { return v + 1; });
  CHECK_FALSE(f.valid());
  CHECK_THROWS_AS(f.get(), dx::no_state);
  auto s = g.share();
  CHECK_FALSE(g.valid());
  CHECK_THROWS_AS(g.get(), dx::no_state);
  CHECK(s.get() == 2);
}

TEST_CASE("dx::no_state is a dx::error", "[future]") {
  dx::future<int> f;
  CHECK_THROWS_AS(f.get(), dx::error);
}

TEST_CASE("every member of an empty shared_future but valid() throws dx::no_state", "[future][shared_future]") {
  dx::shared_future<int> s;
  CHECK_FALSE(s.valid());
  CHECK_THROWS_AS(s.get(), dx::no_state);
  CHECK_THROWS_AS(s.wait(), dx::no_state);
  CHECK_THROWS_AS(s.is_ready(), dx::no_state);
  CHECK_THROWS_AS(s.wait_for(1ms), dx::no_state);
  CHECK_THROWS_AS(s.then([](const int& v) { return v; }), dx::no_state);

  dx::shared_future<void> v;
  CHECK_THROWS_AS(v.get(), dx::no_state);
}

// ---------------------------------------------------------------------------------------------
// Timed waits.

TEST_CASE("wait_for on a never-set promise times out, and reports ready after the value is set", "[future]") {
  dx::promise<int> p;
  auto f = p.get_future();
  CHECK(f.wait_for(20ms) == dx::future_status::timeout);
  CHECK(f.wait_for(0ms) == dx::future_status::timeout);
  CHECK(f.wait_for(-5ms) == dx::future_status::timeout);
  CHECK_FALSE(f.is_ready());
  CHECK(f.valid());  // a timed-out wait does not consume the future
  p.set_value(6);
  CHECK(f.wait_for(0ms) == dx::future_status::ready);
  CHECK(f.wait_for(dx_test::bound) == dx::future_status::ready);
  CHECK(f.get() == 6);
}

TEST_CASE("wait_until with a past deadline times out and with a later one sees a value set meanwhile", "[future]") {
  dx::promise<int> p;
  auto f = p.get_future();
  CHECK(f.wait_until(std::chrono::steady_clock::now() - 1s) == dx::future_status::timeout);
  CHECK(f.wait_until(std::chrono::steady_clock::now() + 10ms) == dx::future_status::timeout);
  CHECK(f.wait_until(std::chrono::system_clock::now() + 10ms) == dx::future_status::timeout);
  std::jthread setter([&] {
    std::this_thread::sleep_for(5ms);
    p.set_value(12);
  });
  CHECK(f.wait_until(std::chrono::system_clock::now() + dx_test::bound) == dx::future_status::ready);
  CHECK(f.wait_until(std::chrono::steady_clock::now() + dx_test::bound) == dx::future_status::ready);
  CHECK(f.get() == 12);
}

TEST_CASE("wait_for and wait_until accept durations of any representation", "[future]") {
  dx::promise<int> p;
  auto f = p.get_future();
  CHECK(f.wait_for(std::chrono::duration<double, std::milli>(2.5)) == dx::future_status::timeout);
  CHECK(f.wait_for(std::chrono::microseconds(100)) == dx::future_status::timeout);
  p.set_value(1);
  CHECK(f.wait_for(std::chrono::duration<double>(0.001)) == dx::future_status::ready);
  CHECK(f.get() == 1);
}

TEST_CASE("a timed-out wait_for leaves a future that still receives the value later", "[future]") {
  // Repeated timeouts register waiters that fire after the waiting thread gave up.
  dx::promise<int> p;
  auto f = p.get_future();
  for (int i = 0; i < 20; ++i) REQUIRE(f.wait_for(1ms) == dx::future_status::timeout);
  std::jthread setter([&] { p.set_value(77); });
  CHECK(dx_test::get_soon(f) == 77);
}

TEST_CASE("shared_future::wait_for times out on a never-set promise and is ready after set",
          "[future][shared_future]") {
  dx::promise<int> p;
  dx::shared_future<int> s = p.get_future().share();
  CHECK(s.wait_for(20ms) == dx::future_status::timeout);
  CHECK(s.wait_for(0ms) == dx::future_status::timeout);
  CHECK_FALSE(s.is_ready());
  p.set_value(5);
  CHECK(s.wait_for(0ms) == dx::future_status::ready);
  CHECK(s.is_ready());
  CHECK(s.get() == 5);
}

TEST_CASE("wait_for inside an executor task times out on a never-set promise", "[future][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  dx::promise<int> p;
  dx::shared_future<int> s = p.get_future().share();
  auto status = ex.submit([s, &ex] {
    bool worker = ex.is_worker_thread();
    auto st = s.wait_for(20ms);
    return std::make_pair(worker, st);
  });
  auto [worker, st] = dx_test::get_soon(status);
  CHECK(worker);
  CHECK(st == dx::future_status::timeout);
  p.set_value(1);  // lets nothing dangle
  CHECK(s.get() == 1);
}

TEST_CASE("wait_for inside an executor task returns ready when another thread sets the promise", "[future][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  dx::promise<int> p;
  dx::shared_future<int> s = p.get_future().share();
  std::atomic<bool> waiting{false};
  auto result = ex.submit([s, &waiting] {
    waiting = true;
    auto st = s.wait_for(dx_test::bound);
    return st == dx::future_status::ready ? s.get() : -1;
  });
  REQUIRE(wait_flag(waiting));
  std::this_thread::sleep_for(2ms);
  p.set_value(31);
  CHECK(dx_test::get_soon(result) == 31);
}

TEST_CASE("wait_for inside an executor task on a future of the same executor runs it even with one thread",
          "[future][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto outer = ex.submit([&ex] {
    dx::future<int> inner = ex.submit([] { return 21; });
    if (inner.wait_for(dx_test::bound) != dx::future_status::ready) return -1;
    return inner.get() * 2;
  });
  CHECK(dx_test::get_soon(outer) == 42);
}

TEST_CASE("wait_until inside an executor task times out on a never-set promise", "[future][executor]") {
  const int threads = GENERATE(1, 2);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto result = ex.submit([] {
    dx::promise<int> never;
    auto f = never.get_future();
    return f.wait_until(std::chrono::steady_clock::now() + 10ms);
  });
  CHECK(dx_test::get_soon(result) == dx::future_status::timeout);
}

// ---------------------------------------------------------------------------------------------
// Continuations.

TEST_CASE("then() on a ready future runs the continuation at once on the calling thread", "[future][then]") {
  bool ran = false;
  std::thread::id where;
  auto f = dx::make_ready_future(20).then([&](int v) {
    ran = true;
    where = std::this_thread::get_id();
    return v + 22;
  });
  CHECK(ran);
  CHECK(where == std::this_thread::get_id());
  REQUIRE(f.is_ready());
  CHECK(f.get() == 42);
}

TEST_CASE("then() on a not-yet-ready future runs the continuation once the value is set", "[future][then]") {
  dx::promise<int> p;
  int calls = 0;
  auto f = p.get_future().then([&](int v) {
    ++calls;
    return std::to_string(v);
  });
  STATIC_REQUIRE(std::is_same_v<decltype(f), dx::future<std::string>>);
  CHECK(calls == 0);
  CHECK_FALSE(f.is_ready());
  p.set_value(123);
  CHECK(calls == 1);
  REQUIRE(f.is_ready());
  CHECK(f.get() == "123");
  CHECK(calls == 1);
}

TEST_CASE("chained then() calls run in order and pass each result on", "[future][then]") {
  dx::promise<int> p;
  std::vector<int> order;
  auto f = p.get_future()
               .then([&](int v) {
                 order.push_back(1);
                 return v + 1;
               })
               .then([&](int v) {
                 order.push_back(2);
                 return v * 10;
               })
               .then([&](int v) {
                 order.push_back(3);
                 return std::to_string(v);
               });
  CHECK(order.empty());
  p.set_value(4);
  CHECK(f.get() == "50");
  CHECK(order == std::vector<int>{1, 2, 3});
}

TEST_CASE("then() on future<void> calls f with no argument", "[future][then]") {
  dx::promise<void> p;
  bool first = false;
  auto f = p.get_future()
               .then([&] {
                 first = true;
                 return 9;
               })
               .then([](int v) { return v + 1; });
  CHECK_FALSE(first);
  p.set_value();
  CHECK(first);
  REQUIRE(f.is_ready());
  CHECK(f.get() == 10);

  auto g = dx::make_ready_future().then([] { return 3; });
  CHECK(g.get() == 3);
}

TEST_CASE("an exception skips every continuation of a chain and reaches its end", "[future][then]") {
  int calls = 0;
  auto f = dx::make_exceptional_future<int>(make_test_error("deep"))
               .then([&](int v) {
                 ++calls;
                 return v;
               })
               .then([&](int v) {
                 ++calls;
                 return std::to_string(v);
               })
               .then([&](std::string) {
                 ++calls;
                 return 1.5;
               });
  CHECK(calls == 0);
  CHECK(message_of<test_error>([&] { f.get(); }) == "deep");
}

TEST_CASE("an exception thrown by the continuation reaches the returned future", "[future][then]") {
  dx::promise<int> p;
  int after = 0;
  auto f = p.get_future().then([](int v) -> int { throw test_error("from f " + std::to_string(v)); }).then([&](int v) {
    ++after;
    return v;
  });
  p.set_value(5);
  CHECK(after == 0);
  CHECK(message_of<test_error>([&] { f.get(); }) == "from f 5");

  auto g = dx::make_ready_future().then([]() -> int { throw test_error("void source"); });
  CHECK(message_of<test_error>([&] { g.get(); }) == "void source");
}

TEST_CASE("then() skips the continuation when the future holds an exception", "[future][then]") {
  dx::promise<int> p;
  bool called = false;
  auto f = p.get_future().then([&](int v) {
    called = true;
    return v;
  });
  p.set_exception(make_test_error("skipped"));
  REQUIRE(f.is_ready());
  CHECK_FALSE(called);
  CHECK(message_of<test_error>([&] { f.get(); }) == "skipped");
}

TEST_CASE("then() propagates dx::broken_promise to the continuation's future", "[future][then]") {
  dx::future<int> f;
  bool called = false;
  {
    dx::promise<int> p;
    f = p.get_future().then([&](int v) {
      called = true;
      return v;
    });
  }
  CHECK_FALSE(called);
  CHECK_THROWS_AS(dx_test::get_soon(f), dx::broken_promise);
}

TEST_CASE("then() moves a move-only value into the continuation and out of it", "[future][then]") {
  dx::promise<std::unique_ptr<int>> p;
  auto f = p.get_future()
               .then([](std::unique_ptr<int> v) {
                 *v += 1;
                 return v;
               })
               .then([](std::unique_ptr<int> v) { return *v * 2; });
  p.set_value(std::make_unique<int>(20));
  CHECK(f.get() == 42);
}

TEST_CASE("then() accepts a move-only continuation", "[future][then]") {
  auto owned = std::make_unique<int>(40);
  auto f = dx::make_ready_future(2).then([o = std::move(owned)](int v) { return *o + v; });
  CHECK(f.get() == 42);

  dx::promise<int> p;
  auto g = p.get_future().then([o = std::make_unique<int>(1)](int v) { return *o + v; });
  p.set_value(1);
  CHECK(g.get() == 2);
}

TEST_CASE("continuations of a bare promise's future run inline on the thread that sets the value", "[future][then]") {
  dx::promise<int> p;
  std::thread::id continuation_thread;
  std::thread::id setter_thread;
  std::atomic<bool> done_before_set_returned{false};
  std::atomic<bool> ran{false};
  auto f = p.get_future().then([&](int v) {
    continuation_thread = std::this_thread::get_id();
    ran = true;
    return v + 1;
  });
  {
    std::jthread setter([&] {
      setter_thread = std::this_thread::get_id();
      p.set_value(1);
      done_before_set_returned = ran.load();
    });
  }
  CHECK(done_before_set_returned);
  CHECK(continuation_thread == setter_thread);
  CHECK(continuation_thread != std::this_thread::get_id());
  CHECK(f.get() == 2);
}

TEST_CASE("continuations of executor-produced futures run on the executor's worker threads",
          "[future][then][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);

  SECTION("then() attached before the task ran") {
    dx::promise<int> gate;
    auto src = ex.submit([](int v) { return v; }, gate.get_future());
    auto f = src.then([&ex](int v) { return std::make_pair(v + 1, ex.is_worker_thread()); });
    gate.set_value(1);  // from the main thread, which is not a worker
    auto [v, on_worker] = dx_test::get_soon(f);
    CHECK(v == 2);
    CHECK(on_worker);
  }
  SECTION("then() attached after the task's future is ready") {
    auto src = ex.submit([] { return 5; });
    dx_test::require_ready_soon(src);
    auto f = src.then([&ex](int v) { return std::make_pair(v, ex.is_worker_thread()); });
    auto [v, on_worker] = dx_test::get_soon(f);
    CHECK(v == 5);
    CHECK(on_worker);
  }
  SECTION("a chain of continuations") {
    auto f = ex.submit([] { return 1; })
                 .then([&ex](int v) { return ex.is_worker_thread() ? v + 1 : -100; })
                 .then([&ex](int v) { return ex.is_worker_thread() ? v + 1 : -100; })
                 .then([&ex](int v) { return ex.is_worker_thread() ? v + 1 : -100; });
    CHECK(dx_test::get_soon(f) == 4);
  }
  SECTION("a continuation of a future<void> task") {
    std::atomic<int> side{0};
    auto f = ex.submit([&side] { side = 3; }).then([&] { return ex.is_worker_thread() ? side.load() : -1; });
    CHECK(dx_test::get_soon(f) == 3);
  }
  SECTION("a continuation of a shared executor future") {
    auto s = ex.submit([] { return 8; }).share();
    auto a = s.then([&ex](const int& v) { return ex.is_worker_thread() ? v : -1; });
    auto b = s.then([&ex](const int& v) { return ex.is_worker_thread() ? v * 2 : -1; });
    CHECK(dx_test::get_soon(a) == 8);
    CHECK(dx_test::get_soon(b) == 16);
  }
}

TEST_CASE("a continuation of an executor future sees an exception of the task skip f", "[future][then][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  std::atomic<bool> called{false};
  auto f = ex.submit([]() -> int { throw test_error("task failed"); }).then([&](int v) {
    called = true;
    return v;
  });
  CHECK(message_of<test_error>([&] { dx_test::get_soon(f); }) == "task failed");
  CHECK_FALSE(called);
}

TEST_CASE("many continuations on many executor futures all run exactly once", "[future][then][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  constexpr int n = 2000;
  std::atomic<int> runs{0};
  std::vector<dx::future<int>> fs;
  fs.reserve(n);
  for (int i = 0; i < n; ++i) {
    fs.push_back(ex.submit([i] { return i; }).then([&runs](int v) {
      runs.fetch_add(1);
      return v * 3;
    }));
  }
  long long bad = 0;
  for (int i = 0; i < n; ++i) {
    if (dx_test::get_soon(fs[i]) != i * 3) ++bad;
  }
  CHECK(bad == 0);
  CHECK(runs.load() == n);
}

TEST_CASE("continuations race with set_value from another thread without losing a call", "[future][then]") {
  // then() registration on one thread and set_value on another, many times.
  for (int round = 0; round < 300; ++round) {
    dx::promise<int> p;
    auto f = p.get_future();
    std::jthread setter([&] { p.set_value(round); });
    auto g = f.then([](int v) { return v + 1; });
    REQUIRE(dx_test::get_soon(g) == round + 1);
  }
}

// ---------------------------------------------------------------------------------------------
// shared_future.

TEST_CASE("share() turns a future into a shared_future that every copy can get()", "[future][shared_future]") {
  dx::promise<std::string> p;
  dx::future<std::string> f = p.get_future();
  dx::shared_future<std::string> a = f.share();
  CHECK_FALSE(f.valid());
  REQUIRE(a.valid());
  dx::shared_future<std::string> b = a;
  CHECK(b.valid());
  CHECK_FALSE(a.is_ready());
  p.set_value("shared");
  CHECK(a.get() == "shared");
  CHECK(b.get() == "shared");
  CHECK(a.get() == "shared");   // get() does not consume
  CHECK(&a.get() == &b.get());  // the same value, by reference
  CHECK(a.valid());
}

TEST_CASE("a shared_future converts implicitly from a future", "[future][shared_future]") {
  dx::shared_future<int> s = dx::make_ready_future(4);
  CHECK(s.get() == 4);
  dx::shared_future<void> v = dx::make_ready_future();
  CHECK_NOTHROW(v.get());
}

TEST_CASE("a shared_future rethrows its exception from every get()", "[future][shared_future]") {
  dx::shared_future<int> s = dx::make_exceptional_future<int>(make_test_error("again"));
  auto copy = s;
  CHECK(message_of<test_error>([&] { (void)s.get(); }) == "again");
  CHECK(message_of<test_error>([&] { (void)s.get(); }) == "again");
  CHECK(message_of<test_error>([&] { (void)copy.get(); }) == "again");
  CHECK(s.valid());
}

TEST_CASE("then() on a shared_future passes a const reference and leaves it valid", "[future][shared_future][then]") {
  dx::promise<std::string> p;
  dx::shared_future<std::string> s = p.get_future().share();
  const std::string* seen_a = nullptr;
  const std::string* seen_b = nullptr;
  auto a = s.then([&](const std::string& v) {
    seen_a = &v;
    return v.size();
  });
  auto b = s.then([&](const std::string& v) {
    seen_b = &v;
    return v + "!";
  });
  CHECK(s.valid());
  p.set_value("abc");
  CHECK(a.get() == 3);
  CHECK(b.get() == "abc!");
  CHECK(s.valid());
  CHECK(seen_a == &s.get());  // no copy of the value was made
  CHECK(seen_b == &s.get());
  // then() on the already-ready shared future runs at once.
  auto c = s.then([](const std::string& v) { return v.front(); });
  REQUIRE(c.is_ready());
  CHECK(c.get() == 'a');
  CHECK(s.get() == "abc");
}

TEST_CASE("then() on a shared_future of a move-only value does not move the value out",
          "[future][shared_future][then]") {
  dx::promise<std::unique_ptr<int>> p;
  dx::shared_future<std::unique_ptr<int>> s = p.get_future().share();
  auto a = s.then([](const std::unique_ptr<int>& v) { return *v + 1; });
  auto b = s.then([](const std::unique_ptr<int>& v) { return *v + 2; });
  p.set_value(std::make_unique<int>(10));
  CHECK(a.get() == 11);
  CHECK(b.get() == 12);
  REQUIRE(s.get() != nullptr);
  CHECK(*s.get() == 10);
}

TEST_CASE("then() on shared_future<void> calls f with no argument", "[future][shared_future][then]") {
  dx::promise<void> p;
  dx::shared_future<void> s = p.get_future().share();
  int calls = 0;
  auto a = s.then([&] { return ++calls; });
  auto b = s.then([&] { return ++calls; });
  p.set_value();
  CHECK(a.get() + b.get() == 3);
  CHECK(calls == 2);
  CHECK(s.valid());
}

TEST_CASE("then() on an exceptional shared_future skips f for every continuation", "[future][shared_future][then]") {
  dx::promise<int> p;
  dx::shared_future<int> s = p.get_future().share();
  int calls = 0;
  auto a = s.then([&](const int& v) {
    ++calls;
    return v;
  });
  auto b = s.then([&](const int& v) {
    ++calls;
    return v;
  });
  p.set_exception(make_test_error("shared bad"));
  CHECK(calls == 0);
  CHECK(message_of<test_error>([&] { a.get(); }) == "shared bad");
  CHECK(message_of<test_error>([&] { b.get(); }) == "shared bad");
}

TEST_CASE("many threads calling get() on copies of one shared_future all see the same value",
          "[future][shared_future]") {
  constexpr int num_threads = 8;
  dx::promise<std::vector<int>> p;
  dx::shared_future<std::vector<int>> s = p.get_future().share();
  std::atomic<int> started{0};
  std::atomic<int> good{0};
  std::atomic<int> bad{0};
  std::atomic<const std::vector<int>*> seen{nullptr};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < num_threads; ++t) {
      threads.emplace_back([copy = s, &started, &good, &bad, &seen] {
        ++started;
        if (copy.wait_for(dx_test::bound) != dx::future_status::ready) {
          ++bad;
          return;
        }
        for (int i = 0; i < 100; ++i) {
          const std::vector<int>& v = copy.get();
          const std::vector<int>* expected = nullptr;
          seen.compare_exchange_strong(expected, &v);
          if (v.size() == 1000 && v[999] == 999 && &v == seen.load()) {
            ++good;
          } else {
            ++bad;
          }
        }
      });
    }
    auto deadline = std::chrono::steady_clock::now() + dx_test::bound;
    while (started.load() < num_threads && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    std::vector<int> value(1000);
    for (int i = 0; i < 1000; ++i) value[i] = i;
    p.set_value(std::move(value));
  }
  CHECK(bad.load() == 0);
  CHECK(good.load() == num_threads * 100);
  CHECK(seen.load() == &s.get());
}

TEST_CASE("many threads waiting on one shared_future are all woken by an exception", "[future][shared_future]") {
  constexpr int num_threads = 6;
  dx::promise<int> p;
  dx::shared_future<int> s = p.get_future().share();
  std::atomic<int> caught{0};
  std::atomic<int> started{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < num_threads; ++t) {
      threads.emplace_back([s, &caught, &started] {
        ++started;
        if (s.wait_for(dx_test::bound) != dx::future_status::ready) return;
        try {
          (void)s.get();
        } catch (const test_error&) {
          ++caught;
        }
      });
    }
    auto deadline = std::chrono::steady_clock::now() + dx_test::bound;
    while (started.load() < num_threads && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    p.set_exception(make_test_error("all"));
  }
  CHECK(caught.load() == num_threads);
}

// ---------------------------------------------------------------------------------------------
// Futures from an executor.

TEST_CASE("executor::submit returns a future of the function's result", "[future][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto a = ex.submit([](int x, int y) { return x * y; }, 6, 7);
  auto b = ex.submit([] {});
  STATIC_REQUIRE(std::is_same_v<decltype(b), dx::future<void>>);
  CHECK(dx_test::get_soon(a) == 42);
  CHECK_NOTHROW(dx_test::get_soon(b));
}

TEST_CASE("a move-only value travels through executor submit, dependencies and then", "[future][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto a = ex.submit([] { return std::make_unique<int>(20); });
  STATIC_REQUIRE(std::is_same_v<decltype(a), dx::future<std::unique_ptr<int>>>);
  // The future is a dependency: the task receives the unique_ptr itself.
  auto b = ex.submit(
      [](std::unique_ptr<int> p) {
        *p += 1;
        return p;
      },
      std::move(a));
  auto c = b.then([](std::unique_ptr<int> p) {
    *p *= 2;
    return p;
  });
  auto d = ex.submit([o = std::make_unique<int>(0)](std::unique_ptr<int> p) { return *p + *o; }, std::move(c));
  CHECK(dx_test::get_soon(d) == 42);
}

TEST_CASE("an exception thrown by a submitted task reaches its future", "[future][executor]") {
  const int threads = GENERATE(1, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto f = ex.submit([]() -> int { throw test_error("in task"); });
  CHECK(message_of<test_error>([&] { dx_test::get_soon(f); }) == "in task");
}

TEST_CASE("a task depending on a promise's future runs once it is set and skips on its exception",
          "[future][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  dx::promise<int> ok;
  dx::promise<int> bad;
  std::atomic<int> calls{0};
  auto a = ex.submit(
      [&calls](int v) {
        ++calls;
        return v + 1;
      },
      ok.get_future());
  auto b = ex.submit(
      [&calls](int v) {
        ++calls;
        return v + 1;
      },
      bad.get_future());
  CHECK_FALSE(a.is_ready());
  std::jthread setter([&] {
    ok.set_value(41);
    bad.set_exception(make_test_error("dependency"));
  });
  CHECK(dx_test::get_soon(a) == 42);
  CHECK(message_of<test_error>([&] { dx_test::get_soon(b); }) == "dependency");
  CHECK(calls.load() == 1);
}

TEST_CASE("get() on a worker thread waiting for a future of the same executor does not deadlock",
          "[future][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto f = ex.submit([&ex] {
    int sum = 0;
    for (int i = 0; i < 20; ++i) {
      auto inner = ex.submit([i] { return i; });
      if (inner.wait_for(dx_test::bound) != dx::future_status::ready) return -1;
      sum += inner.get();
    }
    return sum;
  });
  CHECK(dx_test::get_soon(f) == 190);
}

TEST_CASE("a blocking get() on a worker thread is woken by a value set from another thread", "[future][executor]") {
  // The task blocks in get() (no timeout): it must be woken when the main thread sets the value.
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  for (int round = 0; round < 30; ++round) {
    dx::promise<int> p;
    dx::shared_future<int> s = p.get_future().share();
    std::atomic<bool> started{false};
    auto f = ex.submit([s, &started] {
      started = true;
      return s.get() + 1;
    });
    REQUIRE(wait_flag(started));
    if (round % 2 == 0) std::this_thread::sleep_for(1ms);
    p.set_value(round);
    REQUIRE(dx_test::get_soon(f) == round + 1);
  }
}

TEST_CASE("continuations attached from several threads while the value is set all run once",
          "[future][shared_future][then]") {
  constexpr int num_threads = 4;
  constexpr int per_thread = 200;
  dx::promise<int> p;
  dx::shared_future<int> s = p.get_future().share();
  std::atomic<int> runs{0};
  std::atomic<int> go{0};
  std::vector<std::vector<dx::future<int>>> results(num_threads);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < num_threads; ++t) {
      threads.emplace_back([s, t, &runs, &go, &results] {
        ++go;
        for (int i = 0; i < per_thread; ++i) {
          results[t].push_back(s.then([&runs, i](const int& v) {
            runs.fetch_add(1);
            return v + i;
          }));
        }
      });
    }
    auto deadline = std::chrono::steady_clock::now() + dx_test::bound;
    while (go.load() < num_threads && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    p.set_value(1000);  // races with the registrations
  }
  int bad = 0;
  for (int t = 0; t < num_threads; ++t) {
    REQUIRE(results[t].size() == per_thread);
    for (int i = 0; i < per_thread; ++i) {
      if (dx_test::get_soon(results[t][i]) != 1000 + i) ++bad;
    }
  }
  CHECK(bad == 0);
  CHECK(runs.load() == num_threads * per_thread);
}

// then() with a continuation that returns void.

TEST_CASE("then() with a continuation returning void gives a future<void>", "[future][then]") {
  dx::promise<void> p;
  bool first = false;
  bool second = false;
  auto f = p.get_future()
               .then([&] {
                 first = true;
                 return 9;
               })
               .then([&](int v) { second = (v == 9); });
  STATIC_REQUIRE(std::is_same_v<decltype(f), dx::future<void>>);
  CHECK_FALSE(first);
  p.set_value();
  CHECK(first);
  CHECK(second);
  REQUIRE(f.is_ready());
  CHECK_NOTHROW(f.get());
}

TEST_CASE("an exception skips a continuation returning void and reaches its future", "[future][then]") {
  int calls = 0;
  auto f = dx::make_exceptional_future<int>(make_test_error("deep")).then([&](int) { ++calls; }).then([&] {
    ++calls;
    return 1.5;
  });
  CHECK(calls == 0);
  CHECK(message_of<test_error>([&] { f.get(); }) == "deep");
}

TEST_CASE("an exception thrown by a continuation returning void reaches the returned future", "[future][then]") {
  auto g = dx::make_ready_future().then([] { throw test_error("void f"); });
  CHECK(message_of<test_error>([&] { g.get(); }) == "void f");
}

TEST_CASE("a continuation returning void of an executor future runs on a worker", "[future][then][executor]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  std::atomic<bool> on_worker{false};
  auto f = ex.submit([] { return 1; }).then([&](int) { on_worker = ex.is_worker_thread(); });
  dx_test::get_soon(f);
  CHECK(on_worker.load());
}
