// Retries of registered functions (task_options::with_retries), over both transports: the
// in-process transport and TCP with real local worker processes. A worker process shares no memory
// with the test, so attempts are counted, and timed, through files; CLOCK_MONOTONIC (steady_clock)
// is one clock for every process of the machine. Every wait is bounded.
#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include "temp_dir.hpp"
#include "transports.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using json = nlohmann::json;

namespace retry_test {

std::vector<std::int64_t> read_starts(const std::string& path) {
  std::vector<std::int64_t> out;
  std::ifstream in(path);
  for (std::int64_t t; in >> t;) out.push_back(t);
  return out;
}

/// Records when it started (steady clock, ns) in `path`, then throws std::range_error on each of
/// its first `fail_first` runs and returns x * 2 after.
int flaky(std::string path, int fail_first, int x) {
  const auto now = std::chrono::steady_clock::now().time_since_epoch();
  { std::ofstream(path, std::ios::app) << std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() << '\n'; }
  const auto runs = read_starts(path).size();
  if (static_cast<int>(runs) <= fail_first) throw std::range_error("run " + std::to_string(runs) + " failed");
  return x * 2;
}

/// Throws std::invalid_argument on every run, recording it.
int always_invalid(std::string path) {
  std::ofstream(path, std::ios::app) << 0 << '\n';
  throw std::invalid_argument("never valid");
}

int plus_one(int x) { return x + 1; }

/// A one-parameter function for cl.map: records the run in `path`, throws on the first run when
/// the path's length is odd, and returns the length.
int first_run_fails_for_odd_lengths(std::string path) {
  std::ofstream(path, std::ios::app) << 0 << '\n';
  if (path.size() % 2 == 1 && read_starts(path).size() == 1) throw std::runtime_error("first run");
  return static_cast<int>(path.size());
}

}  // namespace retry_test

DX_REMOTE(retry_test::flaky);
DX_REMOTE(retry_test::always_invalid);
DX_REMOTE(retry_test::plus_one);
DX_REMOTE(retry_test::first_run_fails_for_odd_lengths);

namespace {

using namespace retry_test;

dx::options two_workers(dx::transport_kind k) {
  return dx::options{}
      .threads(2)
      .transport(k)
      .local_processes(2)
      .threads_per_process(1)
      .head_runs_tasks(false)
      .persist_cost_model(false);
}

/// A file per task in a folder of the test's own: the attempts it recorded.
struct run_log {
  std::string path;
  run_log(const dx_support::temp_dir& dir, const std::string& name) : path((dir.path() / name).string()) {}
  std::vector<std::int64_t> starts() const { return read_starts(path); }
};

template <class Fut>
void require_ready(Fut& f, std::chrono::milliseconds limit = 20s) {
  REQUIRE(f.wait_for(limit) == dx::future_status::ready);
}

/// The statuses of each attempt of the tasks of `kind` in the cluster's trace, by task and attempt.
std::map<std::uint64_t, std::map<int, std::string>> attempts_in_trace(dx::cluster& cl, const std::string& kind) {
  const auto path = std::filesystem::temp_directory_path() / ("dx-retry-trace-" + std::to_string(::getpid()) + ".json");
  cl.write_trace(path.string());
  std::ifstream in(path);
  const json trace = json::parse(in);
  std::filesystem::remove(path);
  std::map<std::uint64_t, std::map<int, std::string>> out;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X" || e["cat"] == "transfer" || e["name"] != kind) continue;
    out[e["args"]["task"].get<std::uint64_t>()][e["args"]["attempt"].get<int>()] =
        e["args"]["status"].get<std::string>();
  }
  return out;
}

}  // namespace

TEST_CASE(
    "retries: a remote task that throws twice succeeds on its third attempt, after the pauses, every attempt "
    "is in the trace and the metrics",
    "[net][retry]") {
  DX_TRANSPORTS();
  dx::cluster cl{two_workers(kind)};
  const dx_support::temp_dir dir("dx_retry");
  run_log runs(dir, "flaky");
  const auto opts =
      dx::task_options{}.with_retries({.max_attempts = 3, .initial_backoff = 60ms, .factor = 2, .jitter = 0.25});
  auto f = cl.submit(opts, flaky, runs.path, 2, 21);
  auto shared = f.share();
  auto dependent = cl.submit(plus_one, shared);  // waits through the retries, sees the one result
  require_ready(dependent);
  CHECK(shared.get() == 42);
  CHECK(dependent.get() == 43);
  const auto starts = runs.starts();
  REQUIRE(starts.size() == 3);
  // Pauses of [45, 60] ms, then [90, 120] ms, with slack above for the round trips.
  const auto gap1 = std::chrono::nanoseconds(starts[1] - starts[0]);
  const auto gap2 = std::chrono::nanoseconds(starts[2] - starts[1]);
  CHECK(gap1 >= 45ms);
  CHECK(gap1 < 60ms + 1s);
  CHECK(gap2 >= 90ms);
  CHECK(gap2 < 120ms + 1s);

  const auto attempts = attempts_in_trace(cl, "retry_test::flaky");
  REQUIRE(attempts.size() == 1);
  const auto& a = attempts.begin()->second;
  CHECK(a == std::map<int, std::string>{{1, "failed"}, {2, "failed"}, {3, "done"}});
  CHECK(cl.metrics().value("dx_tasks_retried_total", {{"kind", "retry_test::flaky"}}) == 2);
  CHECK(cl.metrics().value("dx_tasks_failed_total", {{"kind", "retry_test::flaky"}, {"worker", "none"}}) ==
        std::nullopt);
  CHECK(cl.metrics().value("dx_tasks_pausing", {{"kind", "retry_test::flaky"}}) == 0);
}

TEST_CASE("retries: exhausted, the caller gets the last remote exception with its type and worker", "[net][retry]") {
  DX_TRANSPORTS();
  dx::cluster cl{two_workers(kind)};
  const dx_support::temp_dir dir("dx_retry");
  run_log runs(dir, "exhausted");
  auto f =
      cl.submit(dx::task_options{}.with_retries({.max_attempts = 3, .initial_backoff = 5ms}), flaky, runs.path, 100, 1);
  require_ready(f);
  try {
    f.get();
    FAIL("no exception");
  } catch (const dx::remote_error& e) {
    CHECK(e.type_name() == "std::range_error");
    CHECK(e.message() == "run 3 failed");
    CHECK(e.type_bases() == std::vector<std::string>{"std::runtime_error", "std::exception"});
    CHECK_FALSE(e.worker().empty());
  }
  CHECK(runs.starts().size() == 3);
  const auto attempts = attempts_in_trace(cl, "retry_test::flaky");
  REQUIRE(attempts.size() == 1);
  CHECK(attempts.begin()->second == std::map<int, std::string>{{1, "failed"}, {2, "failed"}, {3, "failed"}});
}

TEST_CASE("retries: remote exceptions pass the filters by their type's and its bases' names", "[net][retry]") {
  DX_TRANSPORTS();
  dx::cluster cl{two_workers(kind)};
  const dx_support::temp_dir dir("dx_retry");
  const auto retry = dx::task_options{}.with_retries({.max_attempts = 3, .initial_backoff = 2ms});

  run_log by_base(dir, "by_base");  // std::range_error is a std::runtime_error
  auto a = cl.submit(dx::task_options{retry}.retry_on<std::runtime_error>(), flaky, by_base.path, 1, 5);
  run_log excluded(dir, "excluded");
  auto b = cl.submit(dx::task_options{retry}.retry_on<std::runtime_error>().never_retry_on<std::range_error>(), flaky,
                     excluded.path, 1, 5);
  run_log other(dir, "other");
  auto c = cl.submit(dx::task_options{retry}.retry_on<std::logic_error>(), flaky, other.path, 1, 5);
  run_log logic(dir, "logic");  // std::invalid_argument is a std::logic_error
  auto d = cl.submit(dx::task_options{retry}.retry_on<std::logic_error>(), always_invalid, logic.path);
  run_log plain(dir, "plain");  // no policy: an exception is final
  auto e = cl.submit(flaky, plain.path, 1, 5);
  for (auto* f : {&a, &b, &c, &e}) require_ready(*f);
  require_ready(d);

  CHECK(a.get() == 10);
  CHECK(by_base.starts().size() == 2);
  CHECK_THROWS_AS(b.get(), dx::remote_error);
  CHECK(excluded.starts().size() == 1);
  CHECK_THROWS_AS(c.get(), dx::remote_error);
  CHECK(other.starts().size() == 1);
  CHECK_THROWS_WITH(d.get(), Catch::Contains("std::invalid_argument"));
  CHECK(logic.starts().size() == 3);
  CHECK_THROWS_AS(e.get(), dx::remote_error);
  CHECK(plain.starts().size() == 1);
}

TEST_CASE("retries: a time limit covers every attempt and pause, a cancel during a pause ends the task",
          "[net][retry]") {
  DX_TRANSPORTS();
  dx::cluster cl{two_workers(kind)};
  const dx_support::temp_dir dir("dx_retry");
  run_log limited(dir, "limited");
  auto f = cl.submit(
      dx::task_options{}.with_timeout(400ms).with_retries({.max_attempts = 50, .initial_backoff = 150ms, .jitter = 0}),
      flaky, limited.path, 1000, 1);
  require_ready(f);
  CHECK_THROWS_AS(f.get(), dx::timeout);
  std::this_thread::sleep_for(400ms);  // no attempt starts after the limit
  const auto n = limited.starts().size();
  CHECK(n >= 2);
  CHECK(n <= 3);

  run_log paused(dir, "paused");
  auto g = cl.submit(dx::task_options{}.with_retries({.max_attempts = 5, .initial_backoff = 2s}), flaky, paused.path,
                     1000, 1);
  auto shared = g.share();
  auto dependent = cl.submit(plus_one, shared);
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (paused.starts().empty() && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(2ms);
  REQUIRE(paused.starts().size() == 1);
  const auto paused_by = std::chrono::steady_clock::now() + 10s;  // its failure reaches the head: it pauses
  while (cl.metrics().value("dx_tasks_pausing", {{"kind", "retry_test::flaky"}}) != 1 &&
         std::chrono::steady_clock::now() < paused_by)
    std::this_thread::sleep_for(2ms);
  CHECK(cl.metrics().value("dx_tasks_pausing", {{"kind", "retry_test::flaky"}}) == 1);
  CHECK(shared.cancel());
  CHECK_THROWS_AS(shared.get(), dx::cancelled);
  require_ready(dependent);
  CHECK_THROWS_AS(dependent.get(), dx::cancelled);
  cl.wait_idle();
  CHECK(paused.starts().size() == 1);
  CHECK(cl.metrics().value("dx_tasks_pausing", {{"kind", "retry_test::flaky"}}) == 0);
}

TEST_CASE("retries: many flaky tasks on both workers all finish once with their values", "[net][retry]") {
  DX_TRANSPORTS();
  dx::cluster cl{two_workers(kind)};
  const dx_support::temp_dir dir("dx_retry");
  std::vector<run_log> paths;
  std::vector<dx::future<int>> fs;
  const auto opts = dx::task_options{}.with_retries({.max_attempts = 4, .initial_backoff = 1ms, .jitter = 1});
  for (int i = 0; i < 60; ++i) {
    paths.emplace_back(dir, "many" + std::to_string(i));
    fs.push_back(cl.submit(opts, flaky, paths.back().path, i % 4, i));
  }
  for (int i = 0; i < 60; ++i) {
    require_ready(fs[i]);
    CHECK(fs[i].get() == 2 * i);
    CHECK(paths[i].starts().size() == static_cast<std::size_t>(i % 4 + 1));
  }
  CHECK(cl.metrics().value("dx_tasks_retried_total", {{"kind", "retry_test::flaky"}}) == 90);  // 15 * (0+1+2+3)
}

TEST_CASE("retries: cl.map of a registered function with retries runs a flaky input again, the others once",
          "[net][retry]") {
  DX_TRANSPORTS();
  dx::cluster cl{two_workers(kind)};
  const dx_support::temp_dir dir("dx_retry");
  std::vector<run_log> paths;
  std::vector<std::string> inputs;
  for (int i = 0; i < 20; ++i) {
    paths.emplace_back(dir, "map" + std::string(static_cast<std::size_t>(i), 'x'));  // lengths of both parities
    inputs.push_back(paths.back().path);
  }
  auto fs = cl.map(first_run_fails_for_odd_lengths, inputs,
                   dx::map_options{}.with_task_options(dx::task_options{}.with_retries({.initial_backoff = 1ms})));
  for (int i = 0; i < 20; ++i) {
    require_ready(fs[i]);
    CHECK(fs[i].get() == static_cast<int>(inputs[i].size()));
    CHECK(paths[i].starts().size() == (inputs[i].size() % 2 == 1 ? 2u : 1u));
  }
}
