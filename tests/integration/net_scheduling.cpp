// The scheduler in a live cluster: heterogeneous worker processes (dx-worker --slowdown), the
// baselines, resources, priorities, forecasts, alerts and the cost model persisted between runs.
// Workers are copies of this binary started by hand so each can get its own flags.
#include "net_functions.hpp"
#include "spawn_self.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using dx_support::reap_child;
using dx_support::spawn_self;

namespace {

/// A head without task threads of its own and workers started with the given extra flags.
struct live_cluster {
  std::unique_ptr<dx::cluster> owner;
  dx::cluster& cl;
  std::vector<pid_t> workers;

  live_cluster(dx::options opts, const std::vector<std::vector<std::string>>& worker_flags)
      : owner(
            std::make_unique<dx::cluster>(opts.listen("127.0.0.1:0").head_runs_tasks(false).persist_cost_model(false))),
        cl(*owner) {
    for (const auto& flags : worker_flags) {
      std::vector<std::string> args{"--dx-worker", "--connect", cl.endpoint()};
      args.insert(args.end(), flags.begin(), flags.end());
      workers.push_back(spawn_self(args));
    }
    cl.wait_for_workers(worker_flags.size(), 20s);
  }
  ~live_cluster() {
    owner.reset();  // tells the workers to stop
    for (pid_t p : workers) reap_child(p, 5s);
  }
};

std::vector<net_test::run_span> run_all(std::vector<dx::future<net_test::run_span>>& fs) {
  std::vector<net_test::run_span> out;
  for (auto& f : fs) {
    REQUIRE(f.wait_for(60s) == dx::future_status::ready);
    out.push_back(f.get());
  }
  return out;
}

std::map<int, int> count_by_pid(const std::vector<net_test::run_span>& spans) {
  std::map<int, int> n;
  for (auto& s : spans) ++n[s.pid];
  return n;
}

}  // namespace

TEST_CASE("a worker slowed 3x gets a small share of the work", "[net][sched]") {
  live_cluster lc(dx::options{}, {{"--threads", "1"}, {"--threads", "1", "--slowdown", "3"}});
  std::vector<dx::future<net_test::run_span>> fs;
  for (int i = 0; i < 120; ++i) fs.push_back(lc.cl.submit(net_test::timed_sleep, 5));
  auto spans = run_all(fs);
  auto by_pid = count_by_pid(spans);
  const int fast = by_pid[lc.workers[0]];
  const int slow = by_pid[lc.workers[1]];
  INFO("fast " << fast << " slow " << slow);
  CHECK(fast + slow == 120);
  // Ideal is 3:1 (90 / 30); round-robin would give 60 / 60.
  CHECK(fast >= 78);
  // The model learned the slow worker (ids follow the order in which the workers joined).
  std::string fast_id, slow_id;
  for (const auto& w : lc.cl.workers()) {
    if (w.pid == lc.workers[0]) fast_id = w.id;
    if (w.pid == lc.workers[1]) slow_id = w.id;
  }
  auto model = lc.cl.cost_model_snapshot();
  CHECK(model.worker_factor(slow_id) / model.worker_factor(fast_id) > 2.0);
}

TEST_CASE("round_robin places tasks in turn whatever the speeds", "[net][sched]") {
  live_cluster lc(dx::options{}.scheduling(dx::scheduling_policy::round_robin),
                  {{"--threads", "1"}, {"--threads", "1", "--slowdown", "3"}});
  std::vector<dx::future<net_test::run_span>> fs;
  for (int i = 0; i < 40; ++i) fs.push_back(lc.cl.submit(net_test::timed_sleep, 2));
  auto by_pid = count_by_pid(run_all(fs));
  CHECK(by_pid[lc.workers[0]] == 20);
  CHECK(by_pid[lc.workers[1]] == 20);
}

TEST_CASE("tasks needing a resource run only where it is declared, never beyond its capacity", "[net][sched]") {
  live_cluster lc(dx::options{}, {{"--threads", "3", "--resources", "gpu=1"}, {"--threads", "3"}});
  std::vector<dx::future<net_test::run_span>> fs;
  for (int i = 0; i < 8; ++i) fs.push_back(lc.cl.submit(dx::resources{{"gpu", 1}}, net_test::timed_sleep, 20));
  auto spans = run_all(fs);
  for (auto& s : spans) CHECK(s.pid == lc.workers[0]);
  std::sort(spans.begin(), spans.end(), [](auto& a, auto& b) { return a.start_ns < b.start_ns; });
  for (std::size_t i = 1; i < spans.size(); ++i) CHECK(spans[i].start_ns >= spans[i - 1].end_ns);
}

TEST_CASE("a task no worker can host raises an unplaceable alert and runs once a worker can", "[net][sched]") {
  live_cluster lc(dx::options{}, {{"--threads", "1"}});
  std::mutex m;
  std::vector<dx::alert> alerts;
  lc.cl.on_alert([&](const dx::alert& a) {
    std::lock_guard lock(m);
    alerts.push_back(a);
  });
  auto f = lc.cl.submit(dx::resources{{"gpu", 2}}, net_test::timed_sleep, 1);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    std::lock_guard lock(m);
    for (auto& a : alerts) seen = seen || a.kind == dx::alert_kind::unplaceable;
  }
  REQUIRE(seen);
  {
    std::lock_guard lock(m);
    for (auto& a : alerts)
      if (a.kind == dx::alert_kind::unplaceable) CHECK_THAT(a.message, Catch::Contains("gpu=2"));
  }
  CHECK(f.wait_for(100ms) == dx::future_status::timeout);
  const pid_t big = spawn_self({"--dx-worker", "--connect", lc.cl.endpoint(), "--resources", "gpu=2"});
  lc.workers.push_back(big);
  REQUIRE(f.wait_for(20s) == dx::future_status::ready);
  CHECK(f.get().pid == big);
}

/// On one worker thread, with the kind learned: how many of 12 low tasks start before the last of
/// 3 high ones, submitted after them. Only what was already sent ahead may start first.
template <class Low, class High>
int lows_before_last_high(Low submit_low, High submit_high) {
  live_cluster lc(dx::options{}, {{"--threads", "1"}});
  // Teach the model the kind so the send-ahead window is small (a few tasks).
  std::vector<dx::future<net_test::run_span>> warm;
  for (int i = 0; i < 4; ++i) warm.push_back(lc.cl.submit(net_test::timed_sleep, 20));
  run_all(warm);
  std::vector<dx::future<net_test::run_span>> low, high;
  for (int i = 0; i < 12; ++i) low.push_back(submit_low(lc.cl));
  for (int i = 0; i < 3; ++i) high.push_back(submit_high(lc.cl));
  auto lows = run_all(low);
  auto highs = run_all(high);
  std::int64_t last_high = 0;
  for (auto& h : highs) last_high = std::max(last_high, h.start_ns);
  int lows_before = 0;
  for (auto& l : lows) lows_before += l.start_ns < last_high;
  return lows_before;
}

TEST_CASE("higher priority tasks start before queued lower ones", "[net][sched]") {
  const int lows_before = lows_before_last_high(
      [](dx::cluster& cl) { return cl.submit(dx::task_options{}.with_priority(-1), net_test::timed_sleep, 20); },
      [](dx::cluster& cl) { return cl.submit(dx::task_options{}.with_priority(5), net_test::timed_sleep, 20); });
  INFO("low-priority tasks started before the last high one: " << lows_before);
  CHECK(lows_before <= 4);
}

TEST_CASE("an executor priority given to cluster::submit orders remote tasks too", "[net][sched]") {
  const int lows_before =
      lows_before_last_high([](dx::cluster& cl) { return cl.submit(dx::priority::low, net_test::timed_sleep, 20); },
                            [](dx::cluster& cl) { return cl.submit(dx::priority::high, net_test::timed_sleep, 20); });
  INFO("low-priority tasks started before the last high one: " << lows_before);
  CHECK(lows_before <= 4);
}

TEST_CASE("forecast predicts the time left once the kind is known", "[net][sched]") {
  live_cluster lc(dx::options{}, {{"--threads", "1"}, {"--threads", "1"}});
  std::vector<dx::future<net_test::run_span>> fs;
  for (int i = 0; i < 10; ++i) fs.push_back(lc.cl.submit(net_test::timed_sleep, 10));
  run_all(fs);
  fs.clear();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) fs.push_back(lc.cl.submit(net_test::timed_sleep, 10));
  const dx::forecast f = lc.cl.forecast();
  run_all(fs);
  const double actual = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("predicted " << f.remaining_seconds << " s, took " << actual << " s");
  CHECK(f.tasks_left > 90);
  CHECK(f.remaining_seconds > 0.6 * actual);
  CHECK(f.remaining_seconds < 1.5 * actual);
  CHECK(f.workers.size() == 2);
  CHECK(!f.critical_path.empty());
  CHECK(f.lower_bound_seconds <= f.remaining_seconds + 1e-9);
  const dx::forecast after = lc.cl.forecast();
  CHECK(after.tasks_left == 0);
}

TEST_CASE("a lost worker raises an alert", "[net][sched]") {
  live_cluster lc(dx::options{}.heartbeat(100ms, 2s), {{"--threads", "1"}, {"--threads", "1"}});
  std::atomic<int> lost{0};
  lc.cl.on_alert([&](const dx::alert& a) {
    if (a.kind == dx::alert_kind::worker_lost) ++lost;
  });
  ::kill(lc.workers[1], SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (lost == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  CHECK(lost == 1);
}

TEST_CASE("the second run of a program starts with the cost model the first one learned", "[net][sched]") {
  const auto file = std::filesystem::temp_directory_path() / ("dx-costmodel-test-" + std::to_string(::getpid()));
  std::filesystem::remove(file);
  auto run = [&](int tasks) {
    dx::cluster cl(dx::options{}.local_processes(1).head_runs_tasks(false).cost_model_file(file.string()));
    const dx::cost_model before = cl.cost_model_snapshot();
    std::vector<dx::future<net_test::run_span>> fs;
    for (int i = 0; i < tasks; ++i) fs.push_back(cl.submit(net_test::timed_sleep, 15));
    run_all(fs);
    return before;
  };
  const dx::cost_model first = run(8);
  CHECK_FALSE(first.calibrated("net_test::timed_sleep"));
  REQUIRE(std::filesystem::exists(file));
  const dx::cost_model second = run(1);
  REQUIRE(second.calibrated("net_test::timed_sleep"));
  const dx::prediction p = second.predict_kind("net_test::timed_sleep", {});
  CHECK(p.mean > 0.010);
  CHECK(p.mean < 0.040);
  std::filesystem::remove(file);
}

TEST_CASE("destroying a cluster with a task no worker can host cancels it instead of waiting", "[net][sched]") {
  dx::future<net_test::run_span> f;
  dx::future<int> dependent;
  const auto start = std::chrono::steady_clock::now();
  {
    live_cluster lc(dx::options{}, {{"--threads", "1"}});
    f = lc.cl.submit(dx::resources{{"gpu", 1}}, net_test::timed_sleep, 1);
    // A task reading the unhostable one's result cannot run either.
    dependent = lc.cl.submit(net_test::square, lc.cl.submit(dx::resources{{"gpu", 1}}, net_test::square, 3));
    auto g = lc.cl.submit(net_test::timed_sleep, 1);
    REQUIRE(g.wait_for(20s) == dx::future_status::ready);
  }
  CHECK(std::chrono::steady_clock::now() - start < 15s);
  REQUIRE(f.wait_for(1s) == dx::future_status::ready);
  CHECK_THROWS_AS(f.get(), dx::error);
  REQUIRE(dependent.wait_for(1s) == dx::future_status::ready);
  CHECK_THROWS_AS(dependent.get(), dx::error);
}

TEST_CASE("the cost model learns a link from a result fetched between workers", "[net][sched]") {
  live_cluster lc(dx::options{}.heartbeat(100ms, 5s),
                  {{"--threads", "1", "--resources", "left=1"}, {"--threads", "1", "--resources", "right=1"}});
  // Resources pin the producer to one worker and the consumer to the other.
  auto big = lc.cl.submit(dx::resources{{"left", 1}}, net_test::big_string, 4 << 20);
  auto len = lc.cl.submit(dx::resources{{"right", 1}}, net_test::length_of, std::move(big));
  REQUIRE(len.wait_for(20s) == dx::future_status::ready);
  CHECK(len.get() == std::size_t{4} << 20);
  std::string left, right;
  for (const auto& w : lc.cl.workers()) {
    if (w.resources.count("left")) left = w.id;
    if (w.resources.count("right")) right = w.id;
  }
  REQUIRE(!left.empty());
  REQUIRE(!right.empty());
  // The fetch is reported with the consumer's next heartbeat.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  dx::prediction p;
  while (std::chrono::steady_clock::now() < deadline) {
    p = lc.cl.cost_model_snapshot().predict_transfer(left, right, 4 << 20);
    if (p.samples > 0) break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(p.samples > 0);
  CHECK(p.mean > 0);
}
