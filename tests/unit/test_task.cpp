// Tests of dx::task<T> coroutines run by an executor.
#include <dx/task.hpp>

#include <dx/error.hpp>
#include <dx/executor.hpp>
#include <dx/future.hpp>
#include <dx/when_all.hpp>

#include "test_helpers.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <numeric>
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

dx::task<int> answer() { co_return 42; }

dx::task<int> add_later(dx::executor& ex) {
  int a = co_await ex.submit([] { return 20; });
  int b = co_await ex.submit([] { return 22; });
  co_return a + b;
}

dx::task<std::string> stringify(dx::executor& ex, int x) {
  int v = co_await ex.submit([x] { return x * 2; });
  co_return std::to_string(v);
}

dx::task<int> twice(int x) { co_return 2 * x; }

dx::task<void> set_flag(std::atomic<int>& flag, int value) {
  flag = value;
  co_return;
}

dx::task<int> throws_in_body(int x) {
  if (x > 0) throw test_error("body " + std::to_string(x));
  co_return x;
}

dx::task<void> throws_void() {
  throw test_error("void body");
  co_return;
}

}  // namespace

TEST_CASE("submit of a coroutine returning dx::task<T> gives a future<T>", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto f = ex.submit(answer);
  STATIC_REQUIRE(std::is_same_v<decltype(f), dx::future<int>>);
  CHECK(dx_test::get_soon(f) == 42);
}

TEST_CASE("a coroutine can co_await futures from submit and receives their values", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto f = ex.submit(add_later, std::ref(ex));
  CHECK(dx_test::get_soon(f) == 42);
  auto g = ex.submit(stringify, std::ref(ex), 21);
  STATIC_REQUIRE(std::is_same_v<decltype(g), dx::future<std::string>>);
  CHECK(dx_test::get_soon(g) == "42");
}

TEST_CASE("a coroutine lambda with captures and arguments runs through submit", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  int base = 100;
  auto f = ex.submit(
      [&ex, base](int x, std::string s) -> dx::task<std::string> {
        int v = co_await ex.submit([x] { return x + 1; });
        co_return s + std::to_string(base + v);
      },
      1, std::string("n="));
  CHECK(dx_test::get_soon(f) == "n=102");
}

TEST_CASE("co_await of an already-ready future continues with its value", "[task]") {
  const int threads = GENERATE(1, 2);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto f = ex.submit([&ex]() -> dx::task<int> {
    int a = co_await dx::make_ready_future(5);
    auto done = ex.submit([] { return 6; });
    done.wait();  // ready before the co_await
    int b = co_await std::move(done);
    co_return a* b + (ex.is_worker_thread() ? 0 : 1000);
  });
  CHECK(dx_test::get_soon(f) == 30);
}

TEST_CASE("co_await of a promise set later from another thread resumes on a worker thread", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  dx::promise<int> p;
  dx::future<int> pf = p.get_future();
  std::atomic<bool> about_to_await{false};
  std::atomic<bool> resumed_on_worker{false};
  auto f = ex.submit([&]() -> dx::task<int> {
    about_to_await = true;
    int v = co_await pf;  // an lvalue future is consumed like get()
    resumed_on_worker = ex.is_worker_thread();
    co_return v + 1;
  });
  REQUIRE(wait_flag(about_to_await));
  std::this_thread::sleep_for(2ms);
  CHECK_FALSE(f.is_ready());
  {
    std::jthread setter([&] { p.set_value(41); });
  }
  CHECK(dx_test::get_soon(f) == 42);
  CHECK(resumed_on_worker.load());
  CHECK_FALSE(pf.valid());
}

TEST_CASE("a suspended coroutine does not occupy a worker thread", "[task]") {
  // With one thread: the coroutine waits on a promise, and other tasks still run meanwhile.
  dx::executor ex(1);
  dx::promise<int> p;
  auto f = ex.submit([fut = p.get_future()]() mutable -> dx::task<int> { co_return co_await std::move(fut); });
  auto other = ex.submit([] { return 7; });
  CHECK(dx_test::get_soon(other) == 7);
  CHECK_FALSE(f.is_ready());
  p.set_value(9);
  CHECK(dx_test::get_soon(f) == 9);
}

TEST_CASE("a coroutine can co_await a move-only value and a future<void>", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  std::atomic<int> side{0};
  auto f = ex.submit([&]() -> dx::task<std::unique_ptr<int>> {
    co_await ex.submit([&side] { side = 5; });
    std::unique_ptr<int> p = co_await ex.submit([] { return std::make_unique<int>(37); });
    *p += side.load();
    co_return p;
  });
  STATIC_REQUIRE(std::is_same_v<decltype(f), dx::future<std::unique_ptr<int>>>);
  auto p = dx_test::get_soon(f);
  REQUIRE(p);
  CHECK(*p == 42);
}

TEST_CASE("a coroutine can co_await a shared_future, which stays valid", "[task][shared_future]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  dx::promise<std::string> p;
  dx::shared_future<std::string> s = p.get_future().share();
  std::vector<dx::future<std::size_t>> readers;
  for (int i = 0; i < 10; ++i) {
    readers.push_back(ex.submit([s, i]() -> dx::task<std::size_t> {
      const std::string& v = co_await s;
      bool still_valid = s.valid();
      co_return v.size() * 10 + static_cast<std::size_t>(i) * (still_valid ? 1 : 0);
    }));
  }
  std::this_thread::sleep_for(2ms);
  p.set_value("abcd");
  for (int i = 0; i < 10; ++i) CHECK(dx_test::get_soon(readers[i]) == 40u + i);
  CHECK(s.get() == "abcd");
}

TEST_CASE("a coroutine can co_await a shared_future<void>", "[task][shared_future]") {
  dx::executor ex(2);
  dx::promise<void> p;
  dx::shared_future<void> s = p.get_future().share();
  auto f = ex.submit([s]() -> dx::task<int> {
    co_await s;
    co_return 1;
  });
  p.set_value();
  CHECK(dx_test::get_soon(f) == 1);
}

TEST_CASE("a coroutine can co_await a nested dx::task and receive its value", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto f = ex.submit([&ex]() -> dx::task<std::string> {
    int a = co_await twice(10);                 // completes without suspending
    std::string b = co_await stringify(ex, a);  // suspends on an executor future inside
    int c = co_await add_later(ex);             // nested task with two awaits
    co_return b + "/" + std::to_string(c);
  });
  CHECK(dx_test::get_soon(f) == "40/42");
}

TEST_CASE("a nested task<void> runs before the awaiting coroutine continues", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  std::atomic<int> flag{0};
  auto f = ex.submit([&]() -> dx::task<int> {
    co_await set_flag(flag, 7);
    int seen = flag.load();
    co_await set_flag(flag, 8);
    co_return seen * 10 + flag.load();
  });
  CHECK(dx_test::get_soon(f) == 78);
}

TEST_CASE("nested tasks several levels deep each awaiting executor futures", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  struct rec {
    static dx::task<int> depth(dx::executor& ex, int n) {
      if (n == 0) co_return co_await ex.submit([] { return 1; });
      int below = co_await depth(ex, n - 1);
      int here = co_await ex.submit([n] { return n; });
      co_return below + here;
    }
  };
  auto f = ex.submit(&rec::depth, std::ref(ex), 50);
  CHECK(dx_test::get_soon(f) == 1 + 50 * 51 / 2);
}

TEST_CASE("a task<void> coroutine gives a future<void> that is ready when it ends", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  std::atomic<int> steps{0};
  auto f = ex.submit([&]() -> dx::task<void> {
    ++steps;
    co_await ex.submit([&steps] { ++steps; });
    ++steps;
  });
  STATIC_REQUIRE(std::is_same_v<decltype(f), dx::future<void>>);
  dx_test::get_soon(f);
  CHECK(steps.load() == 3);

  std::atomic<int> flag{0};
  auto g = ex.submit(set_flag, std::ref(flag), 5);
  dx_test::get_soon(g);
  CHECK(flag.load() == 5);
}

TEST_CASE("an exception thrown inside a coroutine reaches its future", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  auto f = ex.submit(throws_in_body, 3);
  CHECK(message_of<test_error>([&] { dx_test::get_soon(f); }) == "body 3");
  auto v = ex.submit(throws_void);
  CHECK(message_of<test_error>([&] { dx_test::get_soon(v); }) == "void body");
  auto ok = ex.submit(throws_in_body, 0);
  CHECK(dx_test::get_soon(ok) == 0);

  // After a suspension, too.
  auto late = ex.submit([&ex]() -> dx::task<int> {
    int v = co_await ex.submit([] { return 1; });
    if (v == 1) throw test_error("after await");
    co_return v;
  });
  CHECK(message_of<test_error>([&] { dx_test::get_soon(late); }) == "after await");
}

TEST_CASE("an exception from an awaited future propagates into the coroutine and can be caught there", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  SECTION("caught inside the coroutine") {
    auto f = ex.submit([&ex]() -> dx::task<std::string> {
      try {
        co_await ex.submit([]() -> int { throw test_error("awaited"); });
      } catch (const test_error& e) {
        co_return std::string("caught ") + e.what();
      }
      co_return "not thrown";
    });
    CHECK(dx_test::get_soon(f) == "caught awaited");
  }
  SECTION("a promise's exception set later from another thread") {
    dx::promise<int> p;
    auto f = ex.submit([fut = p.get_future()]() mutable -> dx::task<int> {
      try {
        co_return co_await std::move(fut);
      } catch (const test_error&) {
        co_return -1;
      }
    });
    std::jthread setter([&] { p.set_exception(std::make_exception_ptr(test_error("later"))); });
    CHECK(dx_test::get_soon(f) == -1);
  }
  SECTION("not caught: it reaches the coroutine's future") {
    auto f = ex.submit([&ex]() -> dx::task<int> {
      int v = co_await ex.submit([]() -> int { throw test_error("uncaught"); });
      co_return v;
    });
    CHECK(message_of<test_error>([&] { dx_test::get_soon(f); }) == "uncaught");
  }
  SECTION("from a nested task") {
    auto f = ex.submit([]() -> dx::task<int> {
      try {
        co_await throws_in_body(9);
      } catch (const test_error& e) {
        co_return std::string(e.what()) == "body 9" ? 1 : 2;
      }
      co_return 3;
    });
    CHECK(dx_test::get_soon(f) == 1);
  }
  SECTION("a broken promise") {
    auto p = std::make_unique<dx::promise<int>>();
    auto f = ex.submit([fut = p->get_future()]() mutable -> dx::task<int> {
      try {
        co_await std::move(fut);
      } catch (const dx::broken_promise&) {
        co_return 1;
      }
      co_return 0;
    });
    p.reset();
    CHECK(dx_test::get_soon(f) == 1);
  }
}

TEST_CASE("co_await on an empty future throws dx::no_state inside the coroutine", "[task]") {
  dx::executor ex(2);
  auto f = ex.submit([]() -> dx::task<int> {
    dx::future<int> empty;
    try {
      co_await std::move(empty);
    } catch (const dx::no_state&) {
      co_return 1;
    }
    co_return 0;
  });
  CHECK(dx_test::get_soon(f) == 1);

  auto g = ex.submit([]() -> dx::task<int> {
    dx::shared_future<int> empty;
    co_return co_await empty;
  });
  CHECK_THROWS_AS(dx_test::get_soon(g), dx::no_state);
}

TEST_CASE("a coroutine survives 10,000 sequential co_awaits", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  constexpr int n = 10000;
  SECTION("of executor futures") {
    auto f = ex.submit([&ex]() -> dx::task<long long> {
      long long sum = 0;
      for (int i = 0; i < n; ++i) sum += co_await ex.submit([i] { return i; });
      co_return sum;
    });
    CHECK(dx_test::get_soon(f) == static_cast<long long>(n) * (n - 1) / 2);
  }
  SECTION("of nested tasks that complete at once") {
    auto f = ex.submit([]() -> dx::task<long long> {
      long long sum = 0;
      for (int i = 0; i < n; ++i) sum += co_await twice(i);
      co_return sum;
    });
    CHECK(dx_test::get_soon(f) == static_cast<long long>(n) * (n - 1));
  }
  SECTION("of ready futures") {
    auto f = ex.submit([]() -> dx::task<long long> {
      long long sum = 0;
      for (int i = 0; i < n; ++i) sum += co_await dx::make_ready_future(i);
      co_return sum;
    });
    CHECK(dx_test::get_soon(f) == static_cast<long long>(n) * (n - 1) / 2);
  }
}

TEST_CASE("1,000 concurrent coroutines each awaiting futures all finish with their values", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  constexpr int n = 1000;
  std::vector<dx::future<int>> fs;
  fs.reserve(n);
  for (int i = 0; i < n; ++i) {
    fs.push_back(ex.submit(
        [&ex](int i) -> dx::task<int> {
          int a = co_await ex.submit([i] { return i; });
          int b = co_await ex.submit([i] { return 2 * i; });
          int c = co_await twice(a);
          co_return a + b + c;
        },
        i));
  }
  auto values = dx_test::get_soon(dx::when_all(std::move(fs)));
  REQUIRE(values.size() == n);
  int bad = 0;
  for (int i = 0; i < n; ++i) bad += values[i] != 5 * i;
  CHECK(bad == 0);
}

TEST_CASE("1,000 coroutines awaiting promises set from other threads all resume", "[task]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  constexpr int n = 1000;
  std::vector<dx::promise<int>> ps(n);
  std::vector<dx::future<int>> fs;
  fs.reserve(n);
  for (int i = 0; i < n; ++i) {
    // The future is captured, not passed as an argument (an argument would be a dependency).
    fs.push_back(ex.submit([in = ps[i].get_future()]() mutable -> dx::task<int> { co_return co_await std::move(in); }));
  }
  {
    std::vector<std::jthread> setters;
    for (int t = 0; t < 2; ++t) {
      setters.emplace_back([&, t] {
        for (int i = t; i < n; i += 2) ps[i].set_value(i);
      });
    }
  }
  auto values = dx_test::get_soon(dx::when_all(std::move(fs)));
  int bad = 0;
  for (int i = 0; i < n; ++i) bad += values[i] != i;
  CHECK(bad == 0);
}

TEST_CASE("a coroutine on a one-thread executor can await another task of the same executor", "[task]") {
  dx::executor ex(1);
  SECTION("a plain task") {
    auto f = ex.submit([&ex]() -> dx::task<int> {
      int v = co_await ex.submit([] { return 41; });
      co_return v + 1;
    });
    CHECK(dx_test::get_soon(f) == 42);
  }
  SECTION("another coroutine submitted to the same executor") {
    auto f = ex.submit([&ex]() -> dx::task<int> {
      int v = co_await ex.submit(add_later, std::ref(ex));
      co_return v * 2;
    });
    CHECK(dx_test::get_soon(f) == 84);
  }
  SECTION("a blocking get() of a task of the same executor inside a coroutine") {
    auto f = ex.submit([&ex]() -> dx::task<int> {
      auto inner = ex.submit([] { return 5; });
      if (inner.wait_for(dx_test::bound) != dx::future_status::ready) co_return -1;
      co_return inner.get();
    });
    CHECK(dx_test::get_soon(f) == 5);
  }
  SECTION("a chain of coroutines, each awaiting the next") {
    struct rec {
      static dx::task<int> chain(dx::executor& ex, int n) {
        if (n == 0) co_return 0;
        co_return 1 + co_await ex.submit(&rec::chain, std::ref(ex), n - 1);
      }
    };
    auto f = ex.submit(&rec::chain, std::ref(ex), 200);
    CHECK(dx_test::get_soon(f) == 200);
  }
}

TEST_CASE("a coroutine can co_await dx::when_all of executor futures", "[task][when_all]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  SECTION("variadic") {
    auto f = ex.submit([&ex]() -> dx::task<std::string> {
      auto [a, b, c] = co_await dx::when_all(ex.submit([] { return 1; }), ex.submit([] { return std::string("x"); }),
                                             ex.submit([] {}));
      (void)c;
      co_return b + std::to_string(a);
    });
    CHECK(dx_test::get_soon(f) == "x1");
  }
  SECTION("range") {
    auto f = ex.submit([&ex]() -> dx::task<int> {
      std::vector<dx::future<int>> parts;
      for (int i = 1; i <= 100; ++i) parts.push_back(ex.submit([i] { return i; }));
      std::vector<int> v = co_await dx::when_all(std::move(parts));
      co_return std::accumulate(v.begin(), v.end(), 0);
    });
    CHECK(dx_test::get_soon(f) == 5050);
  }
  SECTION("of promises set from another thread, failing") {
    dx::promise<int> a;
    dx::promise<int> b;
    auto f = ex.submit([fa = a.get_future(), fb = b.get_future()]() mutable -> dx::task<std::string> {
      try {
        auto [x, y] = co_await dx::when_all(std::move(fa), std::move(fb));
        co_return std::to_string(x + y);
      } catch (const test_error& e) {
        co_return e.what();
      }
    });
    std::jthread setter([&] {
      b.set_exception(std::make_exception_ptr(test_error("b failed")));
      a.set_value(1);
    });
    CHECK(dx_test::get_soon(f) == "b failed");
  }
}

TEST_CASE("a coroutine resumes on a worker after awaiting a when_all of bare promises", "[task][when_all]") {
  const int threads = GENERATE(1, 2, 4);
  CAPTURE(threads);
  dx::executor ex(threads);
  dx::promise<int> a;
  dx::promise<int> b;
  std::atomic<bool> on_worker{false};
  auto f = ex.submit([&, fa = a.get_future(), fb = b.get_future()]() mutable -> dx::task<int> {
    std::vector<dx::future<int>> in;
    in.push_back(std::move(fa));
    in.push_back(std::move(fb));
    auto v = co_await dx::when_all(std::move(in));
    on_worker = ex.is_worker_thread();
    co_return v[0] * v[1];
  });
  {
    std::jthread setter([&] {
      std::this_thread::sleep_for(2ms);
      a.set_value(6);
      b.set_value(7);
    });
  }
  CHECK(dx_test::get_soon(f) == 42);
  CHECK(on_worker.load());
}

TEST_CASE("a coroutine awaiting a future of another executor resumes on its own executor", "[task]") {
  const int threads = GENERATE(1, 2);
  CAPTURE(threads);
  dx::executor other(2);  // declared first: `mine` (whose coroutine uses `other`) shuts down first
  dx::executor mine(threads);
  dx::promise<void> gate;
  dx::shared_future<void> g = gate.get_future().share();
  auto f = mine.submit([&]() -> dx::task<int> {
    // Not ready when awaited: it waits for the gate on the other executor.
    int v = co_await other.submit([] { return 5; }, g);
    bool on_mine = mine.is_worker_thread();
    bool on_other = other.is_worker_thread();
    co_return v + (on_mine ? 10 : 0) + (on_other ? 100 : 0);
  });
  std::this_thread::sleep_for(2ms);
  gate.set_value();
  CHECK(dx_test::get_soon(f) == 15);
}

TEST_CASE("a nested task can return a move-only value", "[task]") {
  dx::executor ex(2);
  struct holder {
    static dx::task<std::unique_ptr<int>> make(dx::executor& ex, int v) {
      int w = co_await ex.submit([v] { return v + 1; });
      co_return std::make_unique<int>(w);
    }
  };
  auto f = ex.submit([&ex]() -> dx::task<int> {
    std::unique_ptr<int> a = co_await holder::make(ex, 1);
    std::unique_ptr<int> b = co_await holder::make(ex, 2);
    co_return *a * 10 + *b;
  });
  CHECK(dx_test::get_soon(f) == 23);
}

TEST_CASE("a coroutine can be submitted with a priority", "[task]") {
  dx::executor ex(2);
  auto f = ex.submit(dx::priority::high, add_later, std::ref(ex));
  auto g = ex.submit(dx::priority::low, [&ex]() -> dx::task<int> { co_return co_await ex.submit([] { return 1; }); });
  CHECK(dx_test::get_soon(f) == 42);
  CHECK(dx_test::get_soon(g) == 1);
}

TEST_CASE("a task object that is never started destroys its frame and arguments", "[task]") {
  auto token = std::make_shared<int>(1);
  struct holder {
    static dx::task<int> keep(std::shared_ptr<int> p) { co_return *p; }
  };
  {
    dx::task<int> t = holder::keep(token);
    CHECK(token.use_count() == 2);  // the frame holds a copy
    dx::task<int> moved = std::move(t);
    CHECK(token.use_count() == 2);
  }
  CHECK(token.use_count() == 1);
}

TEST_CASE("a finished coroutine releases its frame and arguments", "[task]") {
  dx::executor ex(2);
  auto token = std::make_shared<int>(5);
  struct holder {
    static dx::task<int> keep(dx::executor& ex, std::shared_ptr<int> p) {
      int v = co_await ex.submit([] { return 1; });
      co_return *p + v;
    }
  };
  auto f = ex.submit(&holder::keep, std::ref(ex), token);
  CHECK(dx_test::get_soon(f) == 6);
  ex.wait_idle();
  // The submit's stored argument and the coroutine's parameter copy are both gone once the task
  // has finished and its future was consumed.
  CHECK(token.use_count() == 1);
}

namespace {
/// A value whose copies throw after the first: moving it into the task's future fails.
struct fragile {
  explicit fragile(int v) : value(v) {}
  fragile(const fragile& o) : value(o.value), copies(o.copies + 1) {
    if (copies > 1) throw std::runtime_error("copy failed");
  }
  int value;
  int copies = 0;
};

dx::task<fragile> make_fragile() { co_return fragile(7); }
}  // namespace

TEST_CASE("a coroutine whose result cannot be copied out reports that in its future", "[task]") {
  dx::executor ex{2};
  auto f = ex.submit(make_fragile);
  dx_test::settle(ex, f);
  CHECK_THROWS_WITH(f.get(), "copy failed");
}
