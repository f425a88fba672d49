// Tests of dx::task_group: fork-join, nested groups, exceptions, cancellation, destruction.
#include <dx/task_group.hpp>

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

/// Runs `tg.wait()` on an outside thread with a bound; false if it did not return in time (the
/// thread is then detached so the test can fail instead of hang, leaking the group on purpose).
template <class F>
bool finishes_soon(F f) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread t([f, done] {
    f();
    done->store(true);
  });
  if (!eventually([&] { return done->load(); })) {
    t.detach();
    return false;
  }
  t.join();
  return true;
}

}  // namespace

TEST_CASE("a task group runs every task and wait returns complete", "[task_group]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  constexpr int n = 2000;
  std::vector<std::atomic<int>> hits(n);
  dx::task_group tg{ex};
  for (int k = 0; k < n; ++k) tg.run([&, k] { hits[k].fetch_add(1); });
  CHECK(tg.wait() == dx::task_group_status::complete);
  int wrong = 0;
  for (auto& h : hits) wrong += h.load() != 1;
  CHECK(wrong == 0);
  // Waiting again with nothing pending returns at once.
  CHECK(tg.wait() == dx::task_group_status::complete);
}

TEST_CASE("wait on an empty task group returns complete at once", "[task_group]") {
  dx::executor ex{1};
  dx::task_group tg{ex};
  CHECK(tg.wait() == dx::task_group_status::complete);
  CHECK_FALSE(tg.is_cancelled());
}

TEST_CASE("tasks of a group may run more tasks into the same group", "[task_group]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  dx::task_group tg{ex};
  std::atomic<int> count{0};
  // A binary tree of 2^12 - 1 tasks, all in one group; wait() must wait for the whole tree.
  std::function<void(int)> grow = [&](int depth) {
    count.fetch_add(1);
    if (depth == 0) return;
    tg.run([&, depth] { grow(depth - 1); });
    tg.run([&, depth] { grow(depth - 1); });
  };
  tg.run([&] { grow(11); });
  CHECK(tg.wait() == dx::task_group_status::complete);
  CHECK(count.load() == (1 << 12) - 1);
}

TEST_CASE("wait rethrows the exception of a failed task and the group is reusable afterwards",
          "[task_group][exceptions]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  dx::task_group tg{ex};
  std::atomic<int> count{0};

  SECTION("one failing task among many") {
    for (int k = 0; k < 100; ++k) {
      tg.run([&, k] {
        ++count;
        if (k == 37) throw test_error("task 37 failed");
      });
    }
    CHECK_THROWS_WITH(tg.wait(), "task 37 failed");
    CHECK(count.load() == 100);  // the other tasks still ran
  }
  SECTION("several failing tasks: one of their exceptions is rethrown, once") {
    for (int k = 0; k < 10; ++k) tg.run([k] { throw test_error("failure " + std::to_string(k)); });
    try {
      tg.wait();
      FAIL("wait() did not throw");
    } catch (const test_error& e) {
      CHECK(std::string(e.what()).rfind("failure ", 0) == 0);
    }
  }
  SECTION("an exception of a type not derived from std::exception") {
    tg.run([] { throw 5; });
    try {
      tg.wait();
      FAIL("wait() did not throw");
    } catch (int v) {
      CHECK(v == 5);
    }
  }

  // Reuse: the error was consumed by the wait that threw.
  count = 0;
  for (int k = 0; k < 50; ++k) tg.run([&] { ++count; });
  CHECK(tg.wait() == dx::task_group_status::complete);
  CHECK(count.load() == 50);
  CHECK(tg.wait() == dx::task_group_status::complete);
}

TEST_CASE("cancel skips the tasks that have not started and wait reports cancelled", "[task_group][cancel]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  dx::task_group tg{ex};
  gate g;
  std::atomic<int> started{0};
  std::atomic<int> skipped_ran{0};
  // Occupy every worker with a started task of the group, so the rest cannot start.
  for (int k = 0; k < threads; ++k) {
    tg.run([&] {
      ++started;
      g.wait();
    });
  }
  REQUIRE(eventually([&] { return started.load() == threads; }));
  for (int k = 0; k < 100; ++k) tg.run([&] { ++skipped_ran; });
  tg.cancel();
  CHECK(tg.is_cancelled());
  g.open();
  CHECK(tg.wait() == dx::task_group_status::cancelled);
  CHECK(skipped_ran.load() == 0);
  CHECK(started.load() == threads);  // the running ones finished normally

  // The cancellation was consumed by wait(): the group runs tasks again.
  CHECK_FALSE(tg.is_cancelled());
  std::atomic<int> count{0};
  for (int k = 0; k < 10; ++k) tg.run([&] { ++count; });
  CHECK(tg.wait() == dx::task_group_status::complete);
  CHECK(count.load() == 10);
}

TEST_CASE("a task may cancel its own group", "[task_group][cancel]") {
  dx::executor ex{1};
  dx::task_group tg{ex};
  std::atomic<int> after{0};
  tg.run([&] {
    for (int k = 0; k < 20; ++k) tg.run([&] { ++after; });
    tg.cancel();
  });
  CHECK(tg.wait() == dx::task_group_status::cancelled);
  CHECK(after.load() == 0);
}

TEST_CASE("cancel before wait with no tasks still reports cancelled once", "[task_group][cancel]") {
  dx::executor ex{2};
  dx::task_group tg{ex};
  tg.cancel();
  CHECK(tg.wait() == dx::task_group_status::cancelled);
  CHECK(tg.wait() == dx::task_group_status::complete);
}

TEST_CASE("the task group destructor waits for tasks still running", "[task_group]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> finished{0};
  {
    int local_sum = 0;  // a local the tasks write: must stay valid until they end
    std::mutex m;
    dx::task_group tg{ex};
    for (int k = 0; k < 20; ++k) {
      tg.run([&, k] {
        std::this_thread::sleep_for(2ms);
        std::lock_guard lock(m);
        local_sum += k;
        ++finished;
      });
    }
    // no wait(): the destructor waits
  }
  CHECK(finished.load() == 20);

  // A destructor also swallows an exception nobody waited for, and still waits for the rest.
  finished = 0;
  {
    dx::task_group tg{ex};
    tg.run([] { throw test_error("never waited for"); });
    for (int k = 0; k < 5; ++k) {
      tg.run([&] {
        std::this_thread::sleep_for(2ms);
        ++finished;
      });
    }
  }
  CHECK(finished.load() == 5);
}

TEST_CASE("recursive fib with nested task groups computes the right value", "[task_group][nested]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  long result = -1;
  auto f = ex.submit([&] { result = fib_group(ex, 20); });
  dx_test::get_soon(f);
  CHECK(result == fib_seq(20));
  // The same from an outside thread: the top-level wait blocks instead of helping.
  CHECK(fib_group(ex, 16) == fib_seq(16));
}

TEST_CASE("a task group can be waited for from an outside thread and from a worker thread", "[task_group]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> count{0};

  SECTION("from an outside thread other than the one that ran the tasks") {
    dx::task_group tg{ex};
    for (int k = 0; k < 100; ++k) {
      tg.run([&] {
        std::this_thread::sleep_for(50us);
        ++count;
      });
    }
    dx::task_group_status status{};
    REQUIRE(finishes_soon([&] { status = tg.wait(); }));
    CHECK(status == dx::task_group_status::complete);
    CHECK(count.load() == 100);
  }
  SECTION("from a worker thread, with tasks still to run") {
    auto f = ex.submit([&] {
      dx::task_group tg{ex};
      for (int k = 0; k < 100; ++k) tg.run([&] { ++count; });
      auto status = tg.wait();
      return status == dx::task_group_status::complete && count.load() == 100;
    });
    CHECK(dx_test::get_soon(f));
  }
  SECTION("from a worker thread, for a group whose tasks wait on a promise set from outside") {
    dx::promise<int> p;
    dx::shared_future<int> sf = p.get_future().share();
    auto f = ex.submit([&] {
      dx::task_group tg{ex};
      for (int k = 0; k < 4; ++k) tg.run([&] { count += sf.get(); });
      tg.wait();
      return count.load();
    });
    std::this_thread::sleep_for(10ms);
    p.set_value(3);
    CHECK(dx_test::get_soon(f) == 12);
  }
  SECTION("a group run from a worker, waited for from outside") {
    dx::task_group tg{ex};
    auto f = ex.submit([&] {
      for (int k = 0; k < 50; ++k) tg.run([&] { ++count; });
    });
    dx_test::get_soon(f);
    REQUIRE(finishes_soon([&] { tg.wait(); }));
    CHECK(count.load() == 50);
  }
}

TEST_CASE("several task groups on one executor are independent", "[task_group]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  dx::task_group a{ex};
  dx::task_group b{ex};
  gate g;
  std::atomic<int> a_count{0};
  std::atomic<int> b_count{0};
  std::atomic<bool> b_started{false};
  b.run([&] {
    b_started = true;
    g.wait();
    ++b_count;
  });
  REQUIRE(eventually([&] { return b_started.load(); }));
  for (int k = 0; k < 10; ++k) a.run([&] { ++a_count; });
  // a's wait does not depend on b's blocked task (with one thread, a's tasks cannot run until b's
  // blocker is released, so only wait for a where another thread is free).
  if (threads > 1) {
    CHECK(a.wait() == dx::task_group_status::complete);
    CHECK(a_count.load() == 10);
    CHECK(b_count.load() == 0);
  }
  b.cancel();  // b's only task already started: it still finishes
  g.open();
  CHECK(b.wait() == dx::task_group_status::cancelled);
  CHECK(b_count.load() == 1);
  CHECK(a.wait() == dx::task_group_status::complete);
  CHECK(a_count.load() == 10);
}

TEST_CASE("run on a task group of a shut-down executor throws dx::executor_shutdown", "[task_group][shutdown]") {
  dx::executor ex{2};
  ex.shutdown();
  dx::task_group tg{ex};
  std::atomic<int> ran{0};
  CHECK_THROWS_AS(tg.run([&] { ++ran; }), dx::executor_shutdown);
  // The refused task does not count as pending: wait returns.
  CHECK(tg.wait() == dx::task_group_status::complete);
  CHECK(ran.load() == 0);
}

TEST_CASE("task groups created and destroyed in quick succession do not touch freed memory", "[task_group][lifetime]") {
  const int threads = GENERATE(1, 2, 4);
  dx::executor ex{static_cast<std::size_t>(threads)};
  std::atomic<int> count{0};
  for (int k = 0; k < 2000; ++k) {
    auto tg = std::make_unique<dx::task_group>(ex);
    tg->run([&] { ++count; });
    tg->wait();
    tg.reset();  // a task that finished the group must not touch it after wait() returned
  }
  CHECK(count.load() == 2000);
}
