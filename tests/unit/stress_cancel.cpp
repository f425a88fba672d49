// Stress of cancellation racing with completion: many short tasks, continuations and timeouts,
// cancelled from other threads while they run, finish or wait. Each future must settle exactly
// once, with its value or with dx::cancelled / dx::timeout, and nothing may leak or hang.
#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

/// The outcome of a settled future: 0 value, 1 cancelled, 2 timeout.
template <class Fut>
int outcome(Fut& f) {
  REQUIRE(f.wait_for(30s) == dx::future_status::ready);
  try {
    f.get();
    return 0;
  } catch (const dx::cancelled&) {
    return 1;
  } catch (const dx::timeout&) {
    return 2;
  }
}

}  // namespace

TEST_CASE("cancels racing with starts and completions settle every future once", "[stress][stop]") {
  for (std::size_t threads : {std::size_t{1}, std::size_t{2}, std::size_t{4}}) {
    INFO("threads: " << threads);
    dx::executor ex{threads};
    constexpr int n = 20'000;
    std::atomic<int> ran{0};
    std::vector<dx::shared_future<int>> fs;
    std::vector<dx::future<int>> dependents;
    fs.reserve(n);
    for (int i = 0; i < n; ++i) {
      fs.push_back(ex.submit(
                         [&ran](dx::stop_token st, int v) {
                           ran.fetch_add(1, std::memory_order_relaxed);
                           return st.stop_requested() ? -v : v;
                         },
                         i)
                       .share());
      if (i % 4 == 0) dependents.push_back(fs.back().then([](const int& v) { return v + 1; }));
    }
    // Two threads cancel every other future while the executor runs them.
    std::vector<std::thread> cancellers;
    std::atomic<int> settled_by_cancel{0};
    for (int c = 0; c < 2; ++c)
      cancellers.emplace_back([&, c] {
        for (int i = c; i < n; i += 4)
          if (fs[static_cast<std::size_t>(i)].cancel()) settled_by_cancel.fetch_add(1);
      });
    for (auto& t : cancellers) t.join();
    int values = 0, cancelled = 0;
    for (auto& f : fs) {
      const int o = outcome(f);
      values += o == 0;
      cancelled += o == 1;
    }
    for (auto& d : dependents) {
      const int o = outcome(d);
      CHECK(o != 2);
    }
    ex.wait_idle();
    CHECK(values + cancelled == n);
    CHECK(cancelled == settled_by_cancel.load());
    CHECK(ran.load() >= values);  // every value came from a run; some runs were discarded
  }
}

TEST_CASE("timeouts racing with completions settle every future once", "[stress][timeout]") {
  dx::cluster cl{dx::options{}.threads(2)};
  constexpr int n = 5'000;
  std::vector<dx::future<int>> fs;
  fs.reserve(n);
  for (int i = 0; i < n; ++i)
    fs.push_back(cl.submit(dx::task_options{}.with_timeout(std::chrono::microseconds(50 + (i % 200))), [i] {
      if (i % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
      return i;
    }));
  int values = 0, timeouts = 0;
  for (auto& f : fs) {
    const int o = outcome(f);
    values += o == 0;
    timeouts += o == 2;
  }
  CHECK(values + timeouts == n);
  cl.local().wait_idle();
}
