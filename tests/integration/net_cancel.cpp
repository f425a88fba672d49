// Cancellation and timeouts of remote tasks, over both transports: the in-process transport
// (worker threads speaking the protocol) and TCP with real local worker processes. Workers report
// what they did through files (a worker process shares no memory with the test). Every wait is
// bounded.
#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include "transports.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace cancel_test {

/// Creates `path`.started, waits until its task is asked to stop (or `max_ms` passes), then, if it
/// was, creates `path`.
int wait_for_stop_then_touch(dx::stop_token st, std::string path, int max_ms) {
  std::ofstream(path + ".started") << "started\n";
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_ms);
  while (!st.stop_requested() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
  if (st.stop_requested()) std::ofstream(path) << "stopped\n";
  return 1;
}

/// The same through dx::this_task::stop_requested().
int poll_this_task_then_touch(std::string path, int max_ms) {
  std::ofstream(path + ".started") << "started\n";
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_ms);
  while (!dx::this_task::stop_requested() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(1ms);
  if (dx::this_task::stop_requested()) std::ofstream(path) << "stopped\n";
  return 1;
}

/// Appends a line to `path`: a trace that the task ran.
int mark_run(std::string path, int i) {
  std::ofstream(path, std::ios::app) << i << '\n';
  return i;
}

/// mark_run after an input.
int mark_after(int previous, std::string path) { return mark_run(path, previous); }

}  // namespace cancel_test

DX_REMOTE(cancel_test::wait_for_stop_then_touch);
DX_REMOTE(cancel_test::poll_this_task_then_touch);
DX_REMOTE(cancel_test::mark_run);
DX_REMOTE(cancel_test::mark_after);

namespace {

using namespace cancel_test;

/// One worker with one thread, so that a task that waits keeps every later task queued.
dx::options one_thread_worker(dx::transport_kind k) {
  return dx::options{}.threads(2).transport(k).local_processes(1).threads_per_process(1).head_runs_tasks(false);
}

/// A fresh path in the temporary directory, removed on destruction.
struct temp_path {
  std::string path;
  explicit temp_path(const std::string& what)
      : path((std::filesystem::temp_directory_path() /
              ("dx_cancel_" + std::to_string(::getpid()) + "_" + what + "_" + std::to_string(counter()++)))
                 .string()) {
    std::filesystem::remove(path);
  }
  ~temp_path() {
    std::filesystem::remove(path);
    std::filesystem::remove(path + ".started");
  }
  /// Waits (bounded) until a task given this path has started.
  bool started_within(std::chrono::milliseconds limit) const {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (std::filesystem::exists(path + ".started")) return true;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
  bool exists() const { return std::filesystem::exists(path); }
  std::size_t lines() const {
    std::ifstream in(path);
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }
};

bool appears_within(const temp_path& p, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (p.exists()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return p.exists();
}

double late_results(dx::cluster& cl) { return cl.metrics().value("dx_late_results_total").value_or(-1); }

bool late_results_reach(dx::cluster& cl, double n, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (late_results(cl) >= n) return true;
    std::this_thread::sleep_for(5ms);
  }
  return late_results(cl) >= n;
}

template <class Fut>
void require_ready(Fut& f, std::chrono::milliseconds limit = 10s) {
  REQUIRE(f.wait_for(limit) == dx::future_status::ready);
}

}  // namespace

TEST_CASE("cancel: tasks queued on a worker never run, the running one sees its stop_token", "[net][cancel]") {
  DX_TRANSPORTS();
  dx::cluster cl{one_thread_worker(kind)};
  temp_path stopped("stopped"), runs("runs");
  const double late_before = late_results(cl);
  auto blocker = cl.submit(wait_for_stop_then_touch, stopped.path, 20'000);
  std::vector<dx::future<int>> queued;
  for (int i = 0; i < 50; ++i) queued.push_back(cl.submit(mark_run, runs.path, i));
  // The blocker runs; the head sends what its window allows to the worker, behind it.
  REQUIRE(stopped.started_within(10s));
  std::this_thread::sleep_for(50ms);
  for (auto& f : queued) CHECK(cl.cancel(f));
  for (auto& f : queued) {
    REQUIRE(f.is_ready());
    REQUIRE_THROWS_AS(f.get(), dx::cancelled);
  }
  CHECK(blocker.cancel());
  REQUIRE(appears_within(stopped, 10s));  // the running task saw its token on the worker
  REQUIRE_THROWS_AS(blocker.get(), dx::cancelled);
  // Its late result arrives and is counted, not delivered.
  CHECK(late_results_reach(cl, late_before + 1, 10s));
  // The worker is free again: new work runs, and none of the cancelled tasks ran before it.
  auto after = cl.submit(mark_run, runs.path, 1000);
  require_ready(after);
  CHECK(after.get() == 1000);
  CHECK(runs.lines() == 1);
  CHECK(cl.metrics().value("dx_tasks_cancelled_total", {{"kind", "cancel_test::mark_run"}}) == 50.0);
}

TEST_CASE("cancel: a running remote task sees dx::this_task::stop_requested()", "[net][cancel]") {
  DX_TRANSPORTS();
  dx::cluster cl{one_thread_worker(kind)};
  temp_path stopped("this_task");
  auto f = cl.submit(poll_this_task_then_touch, stopped.path, 20'000);
  REQUIRE(stopped.started_within(10s));
  CHECK(f.cancel());
  REQUIRE(appears_within(stopped, 10s));
  REQUIRE_THROWS_AS(f.get(), dx::cancelled);
}

TEST_CASE("cancel: a remote task held at the head for its input never runs, nor do its dependents", "[net][cancel]") {
  DX_TRANSPORTS();
  dx::cluster cl{one_thread_worker(kind)};
  temp_path stopped("input"), runs("runs");
  auto input = cl.submit(wait_for_stop_then_touch, stopped.path, 20'000).share();
  REQUIRE(stopped.started_within(10s));
  auto held = cl.submit(mark_after, input, runs.path).share();
  auto dependent = cl.submit(mark_after, held, runs.path);
  CHECK(held.cancel());
  require_ready(dependent);
  REQUIRE_THROWS_AS(dependent.get(), dx::cancelled);
  REQUIRE_THROWS_AS(held.get(), dx::cancelled);
  // A task submitted after the cancel on the cancelled future fails the same way.
  auto later = cl.submit(mark_after, held, runs.path);
  require_ready(later);
  REQUIRE_THROWS_AS(later.get(), dx::cancelled);
  CHECK(input.cancel());
  REQUIRE(appears_within(stopped, 10s));
  cl.wait_idle();
  CHECK_FALSE(runs.exists());
}

TEST_CASE("cancel: a finished remote task is not changed", "[net][cancel]") {
  DX_TRANSPORTS();
  dx::cluster cl{one_thread_worker(kind)};
  temp_path runs("runs");
  auto f = cl.submit(mark_run, runs.path, 7);
  require_ready(f);
  CHECK_FALSE(f.cancel());
  CHECK(f.get() == 7);
}

TEST_CASE(
    "timeout: a remote task over its limit fails with dx::timeout, is asked to stop, its late result is "
    "counted",
    "[net][timeout]") {
  DX_TRANSPORTS();
  dx::cluster cl{one_thread_worker(kind)};
  temp_path stopped("timeout"), runs("runs");
  const double late_before = late_results(cl);
  const auto start = std::chrono::steady_clock::now();
  auto f = cl.submit(dx::task_options{}.with_timeout(200ms), wait_for_stop_then_touch, stopped.path, 20'000).share();
  auto dependent = cl.submit(mark_after, f, runs.path);
  require_ready(f);
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 200ms);
  CHECK(waited < 5s);
  try {
    f.get();
    FAIL("no timeout");
  } catch (const dx::timeout& e) {
    CHECK_THAT(e.what(), Catch::Contains("wait_for_stop_then_touch") && Catch::Contains("200 ms"));
  }
  require_ready(dependent);
  REQUIRE_THROWS_AS(dependent.get(), dx::timeout);
  REQUIRE(appears_within(stopped, 10s));  // asked to stop on the worker
  CHECK(late_results_reach(cl, late_before + 1, 10s));
  CHECK(cl.metrics().value("dx_tasks_timed_out_total", {{"kind", "cancel_test::wait_for_stop_then_touch"}}) == 1.0);
  CHECK_FALSE(runs.exists());
}

TEST_CASE("timeout: a remote task within its limit keeps its value, and one queued past its limit never runs",
          "[net][timeout]") {
  DX_TRANSPORTS();
  dx::cluster cl{one_thread_worker(kind)};
  temp_path stopped("blocker"), runs("runs");
  auto quick = cl.submit(dx::task_options{}.with_timeout(10s), mark_run, runs.path, 1);
  require_ready(quick);
  CHECK(quick.get() == 1);
  auto blocker = cl.submit(wait_for_stop_then_touch, stopped.path, 20'000);
  REQUIRE(stopped.started_within(10s));
  auto starved = cl.submit(dx::task_options{}.with_timeout(100ms), mark_run, runs.path, 2);
  require_ready(starved);
  REQUIRE_THROWS_AS(starved.get(), dx::timeout);
  blocker.cancel();
  REQUIRE(appears_within(stopped, 10s));
  auto after = cl.submit(mark_run, runs.path, 3);
  require_ready(after);
  CHECK(runs.lines() == 2);  // 1 and 3: the starved task never ran
}

TEST_CASE("cancel: a remote task whose local input is cancelled is cancelled, not failed", "[net][cancel]") {
  DX_TRANSPORTS();
  dx::cluster cl{one_thread_worker(kind)};
  temp_path runs("runs");
  dx::promise<int> gate;
  auto input = cl.submit([](int v) { return v; }, gate.get_future()).share();  // a local task
  auto remote = cl.submit(mark_after, input, runs.path);
  CHECK(cl.cancel(input));
  gate.set_value(1);
  require_ready(remote);
  REQUIRE_THROWS_AS(remote.get(), dx::cancelled);
  CHECK(cl.metrics().value("dx_tasks_cancelled_total", {{"kind", "cancel_test::mark_after"}}) == 1.0);
  CHECK(cl.metrics()
            .value("dx_tasks_failed_total", {{"kind", "cancel_test::mark_after"}, {"worker", "none"}})
            .value_or(0) == 0.0);
  CHECK_FALSE(runs.exists());
}
