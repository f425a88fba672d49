// The head's JSON view (/api/state) of its forecast: calibrated, or calibrating with the time left
// from the observed completion rate.
#include "observe/head_views.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using dx::detail::observe::attempt_end;
using dx::detail::observe::history;
using dx::detail::observe::state_record;
using dx::detail::observe::task_event;

namespace {
state_record forecast_of(double remaining, std::size_t left) {
  state_record s;
  s.now = 1000;
  s.remaining_seconds = remaining;
  s.remaining_sd = 3;
  s.tasks_left = left;
  return s;
}
}  // namespace

TEST_CASE("/api/state shows a calibrated forecast as it is", "[observe][forecast]") {
  const auto j = nlohmann::json::parse(dx::detail::observe::state_json(forecast_of(42, 10)))["forecast"];
  CHECK(j["calibrated"] == true);
  CHECK(j["estimate"] == "forecast");
  CHECK(j["remaining_seconds"] == 42.0);
  CHECK(j["remaining_sd"] == 3.0);
  CHECK(j["finish_time"] == 1042.0);
  CHECK(j["uncalibrated_kinds"].empty());
}

TEST_CASE("/api/state says calibrating and estimates from the completion rate, not the default",
          "[observe][forecast]") {
  state_record s = forecast_of(119, 40);  // 40 tasks of an unseen kind at the 0.5 s default... on 1/6 threads
  s.uncalibrated_kinds = {"etl.parse"};
  s.completion_rate = 4.0;
  auto j = nlohmann::json::parse(dx::detail::observe::state_json(s))["forecast"];
  CHECK(j["calibrated"] == false);
  CHECK(j["uncalibrated_kinds"] == nlohmann::json::array({"etl.parse"}));
  CHECK(j["estimate"] == "completion rate");
  CHECK(j["remaining_seconds"] == 10.0);
  CHECK(j["remaining_sd"].is_null());
  CHECK(j["finish_time"] == 1010.0);
  CHECK(j["predicted_remaining_seconds"] == 119.0);

  s.completion_rate.reset();  // nothing finished yet: no estimate at all
  j = nlohmann::json::parse(dx::detail::observe::state_json(s))["forecast"];
  CHECK(j["estimate"] == "none");
  CHECK(j["remaining_seconds"].is_null());
  CHECK(j["finish_time"].is_null());
}

TEST_CASE("The completion rate counts recent completed attempts over the time they span", "[observe][forecast]") {
  history<task_event> h(100);
  CHECK_FALSE(dx::detail::observe::completion_rate(h, 10, 30));
  // Two threads, 1 s tasks, from t = 0 to t = 10: 20 completions, 2 per second.
  for (int i = 0; i < 10; ++i)
    for (int thread = 0; thread < 2; ++thread) {
      task_event e;
      e.start = i;
      e.duration = 1;
      h.push(e);
    }
  task_event failed;
  failed.start = 9.5;
  failed.duration = 0.5;
  failed.status = attempt_end::failed;
  h.push(failed);
  REQUIRE(dx::detail::observe::completion_rate(h, 10, 30));
  CHECK(*dx::detail::observe::completion_rate(h, 10, 30) == Approx(2.0));
  // Only the last 4 s count with a 4 s window: 8 completions.
  CHECK(*dx::detail::observe::completion_rate(h, 10, 4) == Approx(2.0));
  // Long after, nothing recent.
  CHECK_FALSE(dx::detail::observe::completion_rate(h, 100, 30));
}
