// The event feed behind GET /api/events (src/workflow/run_events.hpp): events are kept only while
// a client listens, a drain writes them as JSON in messages of at most batch_events, a full batch
// wakes the server, and events beyond max_pending are counted as lost and reported once. (Over a
// real WebSocket in tests/integration/net_events.cpp.)
#include "workflow/run_events.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

using dx::detail::run_event;
using dx::detail::run_event_feed;
using nlohmann::json;

namespace {

run_event task_event(const std::shared_ptr<const std::string>& run, std::string key, dx::task_status s) {
  run_event e;
  e.kind = run_event::type::task;
  e.status = static_cast<std::uint8_t>(s);
  e.attempts = 1;
  e.run = run;
  e.key = std::move(key);
  e.worker = "head";
  return e;
}

}  // namespace

TEST_CASE("run events: nothing is wanted or kept without a listener", "[workflow][events]") {
  run_event_feed feed;
  CHECK_FALSE(feed.wanted());
  feed.listeners(1);
  CHECK(feed.wanted());
  const auto run = std::make_shared<const std::string>("r-1");
  feed.push(task_event(run, "a", dx::task_status::running));
  feed.listeners(0);  // the last client left: what waited is dropped
  std::vector<std::string> out;
  feed.drain(out);
  CHECK(out.empty());
  CHECK(json::parse(feed.greeting()) == json{{"events", json::array()}});
}

TEST_CASE("run events: a drain writes the events in order as JSON, in messages of at most a batch",
          "[workflow][events]") {
  run_event_feed feed;
  feed.listeners(1);
  int wakes = 0;
  feed.set_wake([&] { ++wakes; });
  const auto run = std::make_shared<const std::string>("r-\"quoted\"");
  run_event started;
  started.kind = run_event::type::run;
  started.status = static_cast<std::uint8_t>(dx::workflow_status::running);
  started.run = run;
  feed.push(started);
  const std::size_t n = run_event_feed::batch_events + 10;
  for (std::size_t i = 0; i + 1 < n; ++i)
    feed.push(task_event(run, "parts#" + std::to_string(i), dx::task_status::succeeded));
  CHECK(wakes == 1);  // the first full batch woke the server, once until it drains
  run_event attempt;
  attempt.kind = run_event::type::attempt_end;
  attempt.ok = false;
  attempt.attempts = 2;
  attempt.run = run;
  attempt.key = "fit";
  feed.push(attempt);
  auto failed = task_event(run, "fit", dx::task_status::failed);
  failed.error = std::string(2000, 'x');
  failed.worker.clear();
  feed.push(failed);

  std::vector<std::string> out;
  feed.drain(out);
  REQUIRE(out.size() == 2);
  const json first = json::parse(out[0]), second = json::parse(out[1]);
  REQUIRE(first["events"].size() == run_event_feed::batch_events);
  REQUIRE(second["events"].size() == n + 2 - run_event_feed::batch_events);
  CHECK(first["events"][0] == json{{"type", "run"}, {"run", "r-\"quoted\""}, {"status", "RUNNING"}});
  CHECK(first["events"][1] == json{{"type", "task"},
                                   {"run", "r-\"quoted\""},
                                   {"key", "parts#0"},
                                   {"status", "SUCCEEDED"},
                                   {"attempts", 1},
                                   {"worker", "head"}});
  const json& a = second["events"][second["events"].size() - 2];
  CHECK(a == json{{"type", "attempt"},
                  {"run", "r-\"quoted\""},
                  {"key", "fit"},
                  {"phase", "end"},
                  {"ok", false},
                  {"attempt", 2},
                  {"worker", nullptr}});
  const json& f = second["events"].back();
  CHECK(f["status"] == "FAILED");
  CHECK(f["worker"].is_null());
  CHECK(f["error"].get<std::string>().size() == run_event_feed::max_error_bytes);
  out.clear();
  feed.drain(out);
  CHECK(out.empty());  // drained
}

TEST_CASE("run events: beyond max_pending events are counted as lost and reported once", "[workflow][events]") {
  run_event_feed feed;
  feed.listeners(1);
  const auto run = std::make_shared<const std::string>("r-1");
  for (std::size_t i = 0; i < run_event_feed::max_pending + 5; ++i)
    feed.push(task_event(run, "k", dx::task_status::running));
  CHECK(feed.lost() == 5);
  CHECK(feed.pushed() == run_event_feed::max_pending);
  std::vector<std::string> out;
  feed.drain(out);
  REQUIRE(out.size() == run_event_feed::max_pending / run_event_feed::batch_events + 1);
  CHECK(json::parse(out.back()) == json{{"events", json::array({{{"type", "lost"}, {"count", 5}}})}});
  out.clear();
  feed.drain(out);
  CHECK(out.empty());
}
