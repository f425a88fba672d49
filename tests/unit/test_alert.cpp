// dx/alert.hpp: the alert kinds' names, the rule builder, and a below-threshold rule firing on a
// cluster's own metric.
#include <dx/alert.hpp>

#include <dx/cluster.hpp>

#include "test_helpers.hpp"

#include <chrono>
#include <set>
#include <string>
#include <vector>

TEST_CASE("every alert kind has its own name", "[alert]") {
  CHECK(dx::alert_kind_count == 10);
  std::set<std::string> names;
  for (std::size_t i = 0; i < dx::alert_kind_count; ++i) names.insert(dx::to_string(static_cast<dx::alert_kind>(i)));
  CHECK(names.size() == dx::alert_kind_count);
  CHECK(std::string(dx::to_string(dx::alert_kind::worker_lost)) == "worker_lost");
  CHECK(std::string(dx::to_string(dx::alert_kind::worker_quarantined)) == "worker_quarantined");
  CHECK(std::string(dx::to_string(dx::alert_kind::journal_unavailable)) == "journal_unavailable");
  CHECK(std::string(dx::to_string(dx::alert_kind::rule)) == "rule");
}

TEST_CASE("an alert rule starts watching nothing and its setters fill it in", "[alert]") {
  const dx::alert_rule fresh("r");
  CHECK(fresh.name == "r");
  CHECK(fresh.metric.empty());
  CHECK(fresh.when == dx::alert_rule::comparison::above);
  CHECK(fresh.for_duration == std::chrono::milliseconds(0));
  CHECK(!fresh.rate);
  const auto r = dx::alert_rule("slow")
                     .on("app_rows_total", {{"source", "csv"}})
                     .below(5)
                     .rate_per_second()
                     .for_at_least(std::chrono::seconds(3));
  CHECK(r.metric == "app_rows_total");
  CHECK(r.labels == dx::metric_labels{{"source", "csv"}});
  CHECK(r.when == dx::alert_rule::comparison::below);
  CHECK(r.threshold == 5);
  CHECK(r.rate);
  CHECK(r.for_duration == std::chrono::seconds(3));
}

TEST_CASE("a below rule fires on a cluster's gauge once the value drops", "[alert][cluster]") {
  using namespace std::chrono_literals;
  dx_test::collector<dx::alert> seen;  // outlives the cluster, whose thread calls keep()
  dx::cluster cl{dx::options{}.threads(1).heartbeat(20ms, 1000ms)};
  cl.on_alert(seen.keep());
  auto alerts = [&] { return seen.items(); };
  dx::gauge free_slots = cl.metrics().add_gauge("app_free_slots", "Free slots");
  free_slots.set(10);
  cl.add_alert_rule(dx::alert_rule("slots running out").on("app_free_slots").below(2));
  std::this_thread::sleep_for(100ms);
  CHECK(alerts().empty());
  free_slots.set(1);
  REQUIRE(dx_test::eventually([&] { return !alerts().empty(); }));
  const dx::alert a = alerts()[0];
  CHECK(a.kind == dx::alert_kind::rule);
  CHECK(a.subject == "slots running out");
  CHECK(a.value == 1);
  CHECK(a.threshold == 2);
  CHECK(!a.message.empty());
}
