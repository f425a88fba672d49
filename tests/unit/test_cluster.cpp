// Tests of dx::cluster in the embedded mode: local threads behind the same submit/post/run API.
#include <dx/cluster.hpp>

#include <dx/dx.hpp>

#include "test_helpers.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

TEST_CASE("a default cluster runs on a local executor with the default thread count", "[cluster]") {
  dx::cluster cl;
  CHECK(cl.config().threads() == 0);
  CHECK(cl.local().num_threads() == dx::executor::default_threads());
  CHECK(cl.local().num_threads() >= 1);
  CHECK_FALSE(cl.local().is_worker_thread());
  auto f = cl.submit([&] { return cl.local().is_worker_thread(); });
  CHECK(dx_test::get_soon(f));
}

TEST_CASE("options threads(n) gives the cluster's executor n threads", "[cluster]") {
  const int n = GENERATE(1, 2, 3);
  dx::cluster cl{dx::options{}.threads(static_cast<std::size_t>(n))};
  CHECK(cl.config().threads() == static_cast<std::size_t>(n));
  CHECK(cl.local().num_threads() == static_cast<std::size_t>(n));
}

TEST_CASE("options setters chain and keep their values", "[cluster]") {
  dx::options o;
  CHECK(o.threads() == 0);
  dx::options& same = o.threads(5);
  CHECK(&same == &o);
  CHECK(o.threads() == 5);
}

TEST_CASE("a cluster submits tasks with arguments and dependencies", "[cluster]") {
  dx::cluster cl{dx::options{}.threads(3)};
  auto a = cl.submit([](int x) { return x * x; }, 7);
  auto b = cl.submit([](int x, std::string s) { return s + std::to_string(x); }, std::move(a), std::string("v="));
  CHECK(dx_test::get_soon(b) == "v=49");
  auto p = cl.submit([](std::unique_ptr<int> u) { return *u; }, std::make_unique<int>(3));
  CHECK(dx_test::get_soon(p) == 3);
  auto e = cl.submit([]() -> int { throw std::runtime_error("cluster task failed"); });
  dx_test::require_ready_soon(e);
  cl.wait_idle();  // the worker drops its reference to the exception first (see test_executor.cpp)
  CHECK_THROWS_WITH(e.get(), "cluster task failed");
}

TEST_CASE("a cluster posts fire-and-forget tasks and wait_idle waits for them", "[cluster]") {
  dx::cluster cl{dx::options{}.threads(3)};
  std::atomic<int> count{0};
  for (int k = 0; k < 1000; ++k) {
    cl.post([&] {
      int v = ++count;
      // A task posting more work through the cluster's executor is waited for as well.
      if (v % 100 == 0) cl.post([&] { count += 1000000; });
    });
  }
  cl.wait_idle();
  CHECK(count.load() == 10 * 1000000 + 1000);
}

TEST_CASE("a cluster runs task graphs", "[cluster][task_graph]") {
  dx::cluster cl{dx::options{}.threads(2)};
  int x = 0, y = 0, z = 0;
  dx::task_graph g{"cluster graph"};
  auto a = g.emplace([&] { x = 2; });
  auto b = g.emplace([&] { y = x + 3; });
  auto c = g.emplace([&] { z = x * y; });
  a.precede(b);
  b.precede(c);
  for (int run = 0; run < 5; ++run) {
    z = 0;
    dx_test::get_soon(cl.run(g));
    CHECK(z == 10);
  }
  std::atomic<int> d{0};
  dx::task_graph h;
  h.emplace([&] { ++d; });
  auto f = cl.run(h);
  cl.wait_idle();
  CHECK(d.load() == 1);
  dx_test::get_soon(f);
}

TEST_CASE("a cluster finishes pending work when destroyed", "[cluster]") {
  std::atomic<int> count{0};
  {
    dx::cluster cl{dx::options{}.threads(2)};
    for (int k = 0; k < 500; ++k) cl.post([&] { ++count; });
  }
  CHECK(count.load() == 500);
}

TEST_CASE("a cluster without workers evaluates alert rules over its metrics", "[cluster][alert]") {
  using namespace std::chrono_literals;
  dx_test::collector<dx::alert> seen;  // outlives the cluster, whose thread calls keep()
  dx::cluster cl{dx::options{}.threads(1).heartbeat(20ms, 1000ms)};
  cl.on_alert(seen.keep());
  auto alerts = [&] { return seen.items(); };
  dx::gauge depth = cl.metrics().add_gauge("app_queue_depth", "Items queued", {{"queue", "ingest"}});
  cl.add_alert_rule(dx::alert_rule("ingest backed up")
                        .on("app_queue_depth", {{"queue", "ingest"}})
                        .above(10)
                        .for_at_least(std::chrono::milliseconds(100)));
  CHECK_THROWS_WITH(cl.add_alert_rule(dx::alert_rule("ingest backed up").on("app_queue_depth")),
                    Catch::Contains("already"));
  CHECK_THROWS_WITH(cl.add_alert_rule(dx::alert_rule("no metric")), Catch::Contains("names no metric"));

  std::this_thread::sleep_for(200ms);
  CHECK(alerts().empty());  // below the threshold: nothing fires
  CHECK(cl.metrics().value("dx_alert_active", {{"rule", "ingest backed up"}}) == 0.0);

  depth.set(50);
  REQUIRE(dx_test::eventually([&] { return alerts().size() == 1; }));
  const dx::alert a = alerts()[0];
  CHECK(a.kind == dx::alert_kind::rule);
  CHECK(a.subject == "ingest backed up");
  CHECK(a.value == 50);
  CHECK(cl.metrics().value("dx_alert_active", {{"rule", "ingest backed up"}}) == 1.0);
  CHECK(cl.metrics().value("dx_alerts_total", {{"kind", "rule"}}) == 1.0);
  REQUIRE(cl.recent_alerts().size() == 1);
  CHECK(cl.recent_alerts()[0].subject == "ingest backed up");

  depth.set(0);  // cleared, then again: a second alert
  REQUIRE(dx_test::eventually([&] {
    return cl.metrics().value("dx_alert_active", {{"rule", "ingest backed up"}}) == 0.0;
  }));
  depth.set(99);
  REQUIRE(dx_test::eventually([&] { return alerts().size() == 2; }));
}
