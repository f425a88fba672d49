// Retries (dx/retry.hpp): the pauses a policy gives, which exceptions its filters let through (local
// ones by type, remote ones by name and base names), and local tasks run again through
// cluster::submit with task_options::with_retries.
#include <dx/retry.hpp>

#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct app_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct derived_app_error : app_error {
  using app_error::app_error;
};

template <class E>
std::exception_ptr ptr(const char* what = "boom") {
  return std::make_exception_ptr(E(what));
}

dx::detail::retry_rules rules_of(const dx::task_options& o) { return *o.retries; }

bool retried(const dx::task_options& o, const std::exception_ptr& e, std::uint32_t failures = 1) {
  std::chrono::nanoseconds pause{0};
  return dx::detail::retry_after(rules_of(o), e, failures, pause);
}

/// Times at which an attempt started, and a function that fails its first `fail_first` attempts.
struct flaky {
  int fail_first;
  std::mutex m;
  std::vector<std::chrono::steady_clock::time_point> starts;

  int run(int x) {
    std::lock_guard lock(m);
    starts.push_back(std::chrono::steady_clock::now());
    if (static_cast<int>(starts.size()) <= fail_first) throw app_error("attempt " + std::to_string(starts.size()));
    return x * 2;
  }
  std::size_t attempts() {
    std::lock_guard lock(m);
    return starts.size();
  }
};

}  // namespace

TEST_CASE("retry_policy: pauses grow by the factor up to max_backoff, jitter only shortens them", "[retry]") {
  const dx::retry_policy p{.max_attempts = 10, .initial_backoff = 100ms, .factor = 2, .max_backoff = 1s, .jitter = 0.5};
  using dx::detail::backoff_before;
  CHECK(backoff_before(p, 1) == 100ms);
  CHECK(backoff_before(p, 2) == 200ms);
  CHECK(backoff_before(p, 3) == 400ms);
  CHECK(backoff_before(p, 4) == 800ms);
  CHECK(backoff_before(p, 5) == 1s);
  CHECK(backoff_before(p, 60) == 1s);  // capped, and no overflow on a long run
  CHECK(dx::detail::jittered(p, 400ms, 0.0) == 400ms);
  CHECK(dx::detail::jittered(p, 400ms, 0.5) == 300ms);
  CHECK(dx::detail::jittered(p, 400ms, 0.999999) > 200ms);
  const dx::retry_policy exact{.initial_backoff = 50ms, .factor = 0.5, .jitter = 0};
  CHECK(backoff_before(exact, 3) == 50ms);  // a factor below 1 counts as 1
  CHECK(dx::detail::jittered(exact, 50ms, 0.9) == 50ms);

  // Drawn pauses stay within [(1 - jitter) b, b].
  const auto opts = dx::task_options{}.with_retries(p);
  for (int i = 0; i < 200; ++i) {
    std::chrono::nanoseconds pause{0};
    REQUIRE(dx::detail::retry_after(rules_of(opts), ptr<app_error>(), 2, pause));
    CHECK(pause >= 100ms);
    CHECK(pause <= 200ms);
  }
}

TEST_CASE("retry_policy: max_attempts counts every run, the first included", "[retry]") {
  const auto opts = dx::task_options{}.with_retries({.max_attempts = 3});
  CHECK(retried(opts, ptr<app_error>(), 1));
  CHECK(retried(opts, ptr<app_error>(), 2));
  CHECK_FALSE(retried(opts, ptr<app_error>(), 3));
  CHECK_FALSE(dx::task_options{}.with_retries({.max_attempts = 1}).retries_enabled());
  CHECK_FALSE(dx::task_options{}.retries_enabled());
}

TEST_CASE("retry filters: retry_on takes a type and its subclasses, never_retry_on wins", "[retry]") {
  const auto any = dx::task_options{}.with_retries({});
  CHECK(retried(any, ptr<std::runtime_error>()));
  CHECK(retried(any, ptr<std::logic_error>()));

  const auto only_app = dx::task_options{}.with_retries({}).retry_on<app_error>();
  CHECK(retried(only_app, ptr<app_error>()));
  CHECK(retried(only_app, ptr<derived_app_error>()));
  CHECK_FALSE(retried(only_app, ptr<std::runtime_error>()));
  CHECK_FALSE(retried(only_app, ptr<std::logic_error>()));

  const auto all_but = dx::task_options{}
                           .with_retries({})
                           .retry_on<std::runtime_error, std::logic_error>()
                           .never_retry_on<derived_app_error, std::invalid_argument>();
  CHECK(retried(all_but, ptr<app_error>()));
  CHECK(retried(all_but, ptr<std::out_of_range>()));
  CHECK_FALSE(retried(all_but, ptr<derived_app_error>()));
  CHECK_FALSE(retried(all_but, ptr<std::invalid_argument>()));

  // retry_on alone turns retries on with the default policy; never_retry_on alone does not.
  CHECK(dx::task_options{}.retry_on<app_error>().retries_enabled());
  CHECK(rules_of(dx::task_options{}.retry_on<app_error>()).policy.max_attempts == dx::retry_policy{}.max_attempts);
  CHECK_FALSE(dx::task_options{}.never_retry_on<app_error>().retries_enabled());
  CHECK_FALSE(retried(dx::task_options{}.never_retry_on<app_error>(), ptr<std::runtime_error>()));
  // Setting a policy after the filters keeps them.
  const auto later = dx::task_options{}.retry_on<app_error>().with_retries({.max_attempts = 5});
  CHECK(rules_of(later).policy.max_attempts == 5);
  CHECK_FALSE(retried(later, ptr<std::logic_error>()));
}

TEST_CASE("retry filters: a remote exception matches by its type's name and its public bases' names", "[retry]") {
  auto remote = [](std::string type, std::vector<std::string> bases) {
    return std::make_exception_ptr(dx::remote_error(std::move(type), std::move(bases), "it failed", "w1"));
  };
  const auto only_runtime = dx::task_options{}.with_retries({}).retry_on<std::runtime_error>();
  CHECK(retried(only_runtime, remote("std::runtime_error", {"std::exception"})));
  CHECK(retried(only_runtime, remote("std::range_error", {"std::runtime_error", "std::exception"})));
  CHECK_FALSE(retried(only_runtime, remote("std::logic_error", {"std::exception"})));
  CHECK_FALSE(retried(only_runtime, remote("std::range_error", {})));  // bases not known: by name only

  const auto never_range = dx::task_options{}.with_retries({}).never_retry_on<std::range_error>();
  CHECK_FALSE(retried(never_range, remote("std::range_error", {"std::runtime_error", "std::exception"})));
  CHECK(retried(never_range, remote("std::overflow_error", {"std::runtime_error", "std::exception"})));

  // dx::remote_error itself names every remote exception.
  CHECK(retried(dx::task_options{}.retry_on<dx::remote_error>(), remote("anything", {})));
  // Its type and bases are kept.
  const dx::remote_error e("std::range_error", {"std::runtime_error", "std::exception"}, "m", "w");
  CHECK(e.type_bases() == std::vector<std::string>{"std::runtime_error", "std::exception"});
  CHECK(dx::remote_error("t", "m", "w").type_bases().empty());
  CHECK(dx::detail::type_name_of(typeid(std::range_error)) == "std::range_error");
}

TEST_CASE("retry filters: outcomes another attempt cannot change are never retried", "[retry]") {
  const auto any = dx::task_options{}.with_retries({}).retry_on<dx::error, std::exception>();
  CHECK_FALSE(retried(any, ptr<dx::cancelled>()));
  CHECK_FALSE(retried(any, ptr<dx::timeout>()));
  CHECK_FALSE(retried(any, ptr<dx::not_registered>()));
  CHECK_FALSE(retried(any, ptr<dx::protocol_error>()));
  CHECK_FALSE(retried(any, ptr<dx::executor_shutdown>()));
  CHECK(retried(any, ptr<dx::error>()));
  std::chrono::nanoseconds pause{0};
  CHECK_FALSE(dx::detail::retry_after(rules_of(any), nullptr, 1, pause));
}

TEST_CASE("local retries: a task that fails twice succeeds on its third attempt, after the pauses", "[retry]") {
  dx::cluster cl;
  auto f = std::make_shared<flaky>();
  f->fail_first = 2;
  const auto opts =
      dx::task_options{}.with_retries({.max_attempts = 3, .initial_backoff = 40ms, .factor = 2, .jitter = 0.25});
  auto fut = cl.submit(
      opts, [f](int x) { return f->run(x); }, 21);
  REQUIRE(fut.wait_for(10s) == dx::future_status::ready);
  CHECK(fut.get() == 42);
  REQUIRE(f->attempts() == 3);
  // Pause 1 within [30, 40] ms and pause 2 within [60, 80] ms, plus scheduling slack above.
  const auto gap1 = f->starts[1] - f->starts[0];
  const auto gap2 = f->starts[2] - f->starts[1];
  CHECK(gap1 >= 30ms);
  CHECK(gap1 < 40ms + 500ms);
  CHECK(gap2 >= 60ms);
  CHECK(gap2 < 80ms + 500ms);
}

TEST_CASE("local retries: exhausted, the future holds the last attempt's exception", "[retry]") {
  dx::cluster cl;
  auto f = std::make_shared<flaky>();
  f->fail_first = 100;
  auto fut = cl.submit(
      dx::task_options{}.with_retries({.max_attempts = 4, .initial_backoff = 1ms}), [f](int x) { return f->run(x); },
      1);
  REQUIRE(fut.wait_for(10s) == dx::future_status::ready);
  CHECK_THROWS_WITH(fut.get(), "attempt 4");
  CHECK(f->attempts() == 4);
}

TEST_CASE("local retries: filters decide, and without a policy nothing runs twice", "[retry]") {
  dx::cluster cl;
  std::atomic<int> runs{0};
  auto throws_logic = [&runs] {
    ++runs;
    throw std::logic_error("not transient");
  };
  auto a = cl.submit(dx::task_options{}.with_retries({.initial_backoff = 1ms}).retry_on<app_error>(), throws_logic);
  REQUIRE(a.wait_for(10s) == dx::future_status::ready);
  CHECK_THROWS_AS(a.get(), std::logic_error);
  CHECK(runs.exchange(0) == 1);

  auto b = cl.submit(dx::task_options{}.with_retries({.initial_backoff = 1ms}).never_retry_on<std::logic_error>(),
                     throws_logic);
  REQUIRE(b.wait_for(10s) == dx::future_status::ready);
  CHECK(runs.exchange(0) == 1);

  auto c = cl.submit(dx::task_options{}, throws_logic);
  REQUIRE(c.wait_for(10s) == dx::future_status::ready);
  CHECK(runs.exchange(0) == 1);

  auto d = cl.submit(dx::task_options{}.with_retries({.max_attempts = 3, .initial_backoff = 1ms}), throws_logic);
  REQUIRE(d.wait_for(10s) == dx::future_status::ready);
  CHECK(runs.exchange(0) == 3);
}

TEST_CASE("local retries: each attempt gets the arguments and the future's value afresh", "[retry]") {
  dx::cluster cl;
  auto input = cl.submit([] { return std::vector<int>{1, 2, 3}; });
  std::atomic<int> runs{0};
  auto fut = cl.submit(
      dx::task_options{}.with_retries({.initial_backoff = 1ms}),
      [&runs](std::vector<int> v, std::string s) {
        // Consumes its arguments: a retry still sees them whole.
        std::vector<int> taken = std::move(v);
        std::string t = std::move(s);
        if (++runs < 3) throw app_error("again");
        return static_cast<int>(taken.size() + t.size());
      },
      std::move(input), std::string("abcd"));
  REQUIRE(fut.wait_for(10s) == dx::future_status::ready);
  CHECK(fut.get() == 7);
  CHECK(runs == 3);
}

TEST_CASE("local retries: a cancel or time limit during a pause ends the task, wait_idle waits for pauses", "[retry]") {
  dx::cluster cl;
  std::atomic<int> runs{0};
  auto always = [&runs] {
    ++runs;
    throw app_error("again");
  };
  auto cancelled = cl.submit(dx::task_options{}.with_retries({.max_attempts = 5, .initial_backoff = 300ms}), always);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (runs == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  REQUIRE(runs == 1);
  CHECK(cancelled.cancel());
  CHECK_THROWS_AS(cancelled.get(), dx::cancelled);
  cl.wait_idle();  // the pause still runs out; the task does not run again
  CHECK(runs.exchange(0) == 1);

  auto limited = cl.submit(
      dx::task_options{}.with_timeout(150ms).with_retries({.max_attempts = 100, .initial_backoff = 40ms, .jitter = 0}),
      always);
  REQUIRE(limited.wait_for(10s) == dx::future_status::ready);
  CHECK_THROWS_AS(limited.get(), dx::timeout);
  cl.wait_idle();
  const int ran = runs.exchange(0);
  CHECK(ran >= 2);
  CHECK(ran <= 5);  // 150 ms covers the pauses of 40, 80 ms: no attempt after the limit

  auto waited = cl.submit(dx::task_options{}.with_retries({.max_attempts = 2, .initial_backoff = 100ms}), always);
  const auto start = std::chrono::steady_clock::now();
  cl.wait_idle();
  CHECK(std::chrono::steady_clock::now() - start >= 75ms);
  CHECK(runs == 2);
  CHECK(waited.is_ready());
}

TEST_CASE("local retries: arguments that cannot be copied are refused at submit with the reason", "[retry]") {
  dx::cluster cl;
  auto opts = dx::task_options{}.with_retries({});
  CHECK_THROWS_WITH(cl.submit(
                        opts, [](std::unique_ptr<int> p) { return *p; }, std::make_unique<int>(1)),
                    Catch::Matchers::Contains("cannot be copied"));
  // Without retries the same call runs.
  CHECK(cl.submit([](std::unique_ptr<int> p) { return *p; }, std::make_unique<int>(5)).get() == 5);
}

TEST_CASE("local retries: cl.map with retries runs each input alone, a flaky input runs again, the others once",
          "[retry]") {
  dx::cluster cl;
  std::vector<std::atomic<int>> runs(50);
  std::vector<int> inputs(50);
  for (int i = 0; i < 50; ++i) inputs[i] = i;
  auto fs = cl.map(
      [&runs](int i) {
        if (++runs[i] == 1 && i % 7 == 0) throw app_error("first run of a multiple of 7");
        return i * 3;
      },
      inputs, dx::map_options{}.with_task_options(dx::task_options{}.with_retries({.initial_backoff = 1ms})));
  REQUIRE(fs.size() == 50);
  for (int i = 0; i < 50; ++i) {
    CHECK(fs[i].get() == 3 * i);
    CHECK(runs[i] == (i % 7 == 0 ? 2 : 1));
  }
}
