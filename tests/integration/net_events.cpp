// The WebSocket GET /api/events of a live head: a client hears a run's status and its tasks'
// changes in batches; the token and the Origin are checked before the upgrade; a client that does
// not read is dropped while the run and the other clients go on; the number of clients is bounded.
#include <dx/dx.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "ws_client.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using nlohmann::json;
namespace http_test = dx_support::http;
namespace ws_test = dx_support::ws;

namespace events_test {
std::int64_t chunk_sum(dx::chunk c) {
  std::int64_t s = 0;
  for (std::int64_t i = c.start; i < c.end; ++i) s += i;
  return s;
}
std::int64_t add(std::int64_t a, std::int64_t b) { return a + b; }
/// A chunk that takes 1 ms, so that a run of many makes events at a rate a reader keeps up with.
std::int64_t paced_chunk(dx::chunk c) {
  std::this_thread::sleep_for(1ms);
  return chunk_sum(c);
}
}  // namespace events_test

DX_REMOTE(events_test::chunk_sum);
DX_REMOTE(events_test::paced_chunk);
DX_REMOTE(events_test::add);

namespace {

/// A split of `chunks` chunks of one index each, and its aggregate.
dx::workflow split_workflow(int chunks) {
  return dx::workflow::from_json(json{
      {"name", "events"},
      {"steps", json::array({{{"name", "parts"},
                              {"function", "events_test::chunk_sum"},
                              {"split", {{"range", {0, chunks}}, {"chunk", 1}}}},
                             {{"name", "total"}, {"aggregate", {{"of", "parts"}, {"function", "events_test::add"}}}}})}}
                                     .dump());
}

/// A split of `chunks` chunks of 1 ms each, without an aggregate (whose reductions would come in
/// one burst at the end): events at an even pace.
dx::workflow paced_workflow(int chunks) {
  return dx::workflow::from_json(json{{"name", "paced"},
                                      {"steps", json::array({{{"name", "parts"},
                                                              {"function", "events_test::paced_chunk"},
                                                              {"split", {{"range", {0, chunks}}, {"chunk", 1}}}}})}}
                                     .dump());
}

dx::options served() { return dx::options{}.threads(2).http("127.0.0.1:0").persist_cost_model(false); }

/// A metric's value from /metrics (-1 when absent).
double metric(const std::string& ep, const std::string& name) {
  const std::string text = http_test::get(ep, "/metrics").body;
  const std::regex line("(^|\\n)" + name + " ([0-9.e+]+)");
  std::smatch m;
  return std::regex_search(text, m, line) ? std::stod(m[2]) : -1;
}

/// Waits (at most 10 s) until `pred`.
template <class Pred>
bool eventually(Pred pred) {
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

/// Reads the subscription's first message, {"events": []}.
void subscribed(ws_test::client& c) {
  const auto hello = c.read(5s);
  REQUIRE(hello);
  CHECK(json::parse(*hello) == json{{"events", json::array()}});
}

/// What a client heard of one run, read until the run's final status (at most 20 s).
struct heard {
  std::size_t messages = 0, events = 0;
  std::vector<std::string> run_statuses;
  std::map<std::string, json> last_task;  // key -> its last task event
  std::size_t attempts_started = 0, attempts_ended = 0;
};

heard listen_until_ended(ws_test::client& c, const std::string& run) {
  // Messages are kept as they come and parsed afterwards, so that the client reads as fast as the
  // head sends (one that falls 1 MiB behind would be dropped as too slow).
  std::vector<std::string> raw;
  const std::string final_marks[] = {R"("type":"run","run":")" + run + R"(","status":"SUCCEEDED")",
                                     R"("type":"run","run":")" + run + R"(","status":"FAILED")",
                                     R"("type":"run","run":")" + run + R"(","status":"CANCELLED")"};
  const auto end = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < end) {
    std::optional<std::string> m;
    try {
      m = c.read(500ms);
    } catch (const boost::system::system_error& e) {
      FAIL("the connection ended: " << e.what() << " (close code " << c.close_reason().code << ", "
                                    << c.close_reason().reason.c_str() << ") after " << raw.size() << " messages");
    }
    if (!m) continue;
    raw.push_back(std::move(*m));
    const std::string& last = raw.back();
    if (std::any_of(std::begin(final_marks), std::end(final_marks),
                    [&](const std::string& mark) { return last.find(mark) != std::string::npos; }))
      break;
  }
  heard h;
  h.messages = raw.size();
  for (const auto& text : raw) {
    const json j = json::parse(text);
    for (const json& e : j["events"]) {
      ++h.events;
      if (e["run"] != run) continue;
      if (e["type"] == "run") h.run_statuses.push_back(e["status"]);
      if (e["type"] == "task") h.last_task[e["key"]] = e;
      if (e["type"] == "attempt") ++(e["phase"] == "start" ? h.attempts_started : h.attempts_ended);
    }
  }
  return h;
}

}  // namespace

TEST_CASE("events: a client hears a run's status and its tasks' changes, many events to a message", "[net][events]") {
  dx::cluster cl{served()};
  const std::string ep = cl.http_endpoint();
  ws_test::client c(ep, "/api/events");
  REQUIRE(c.accepted());
  subscribed(c);
  CHECK(metric(ep, "dx_http_websocket_clients") == 1);

  auto run = cl.start(split_workflow(300), dx::run_options{}.without_journal());
  const heard h = listen_until_ended(c, run.id());
  REQUIRE(run.wait_for(20s));
  REQUIRE(run.status() == dx::workflow_status::succeeded);
  REQUIRE(h.run_statuses.size() >= 2);
  CHECK(h.run_statuses.front() == "RUNNING");
  CHECK(h.run_statuses.back() == "SUCCEEDED");
  // Every chunk and both steps ended SUCCEEDED, as their last event says, with a worker.
  REQUIRE(h.last_task.count("total") == 1);
  CHECK(h.last_task.at("total")["status"] == "SUCCEEDED");
  CHECK(h.last_task.at("parts")["status"] == "SUCCEEDED");
  for (int i = 0; i < 300; ++i) {
    const std::string key = "parts#" + std::to_string(i);
    INFO(key);
    REQUIRE(h.last_task.count(key) == 1);
    CHECK(h.last_task.at(key)["status"] == "SUCCEEDED");
    CHECK(h.last_task.at(key)["attempts"] == 1);
    CHECK(h.last_task.at(key)["worker"].is_string());
  }
  CHECK(h.attempts_started >= 300);
  CHECK(h.attempts_ended >= 300);
  // Batched: a burst of some 1,500 events comes in far fewer messages.
  CHECK(h.events > 1000);
  CHECK(h.messages * 10 < h.events);
  c.close();
  CHECK(eventually([&] { return metric(ep, "dx_http_websocket_clients") == 0; }));
}

TEST_CASE("events: the upgrade needs the token where reading does, and a page of this site", "[net][events]") {
  SECTION("an endpoint on every address, with a token: 401 without it, accepted with it") {
    dx::cluster cl{served().http("0.0.0.0:0").token("s3cret")};
    const std::string ep = "127.0.0.1" + cl.http_endpoint().substr(cl.http_endpoint().rfind(':'));
    ws_test::client none(ep, "/api/events");
    CHECK_FALSE(none.accepted());
    CHECK(none.status() == 401);
    ws_test::client wrong(ep, "/api/events?token=nope");
    CHECK_FALSE(wrong.accepted());
    CHECK(wrong.status() == 401);
    ws_test::client by_query(ep, "/api/events?token=s3cret");
    CHECK(by_query.accepted());
    ws_test::client by_header(ep, "/api/events", {{"Authorization", "Bearer s3cret"}});
    CHECK(by_header.accepted());
    subscribed(by_header);
  }
  SECTION("on loopback, no token is needed; a page of another site is refused") {
    dx::cluster cl{served().token("s3cret")};
    const std::string ep = cl.http_endpoint();
    ws_test::client open(ep, "/api/events");
    CHECK(open.accepted());
    ws_test::client foreign(ep, "/api/events", {{"Origin", "http://evil.example"}});
    CHECK_FALSE(foreign.accepted());
    CHECK(foreign.status() == 403);
    ws_test::client same(ep, "/api/events", {{"Origin", "http://" + ep}});
    CHECK(same.accepted());
    // A GET without the upgrade is told to upgrade.
    CHECK(http_test::get(ep, "/api/events").status == 426);
  }
}

TEST_CASE("events: a client that does not read is dropped while the run and the other clients go on", "[net][events]") {
  dx::cluster cl{served().websocket_queue_bytes(std::size_t{4} << 20)};
  const std::string ep = cl.http_endpoint();
  // A tiny receive window, never read: what the head sends piles up in its queue.
  ws_test::client slow(ep, "/api/events", {}, 4096);
  REQUIRE(slow.accepted());
  ws_test::client fast(ep, "/api/events");
  REQUIRE(fast.accepted());
  subscribed(fast);

  // Some 6.5 MB of events over five seconds (1.3 MB/s): more than the slow client's queue (4 MiB)
  // and socket buffers hold, at a pace the other client keeps up with even on a busy machine (it
  // may fall three seconds behind before it is dropped too). A burst faster than a client reads
  // (the 10,000 reductions of an aggregate at the end) would drop a client that reads as fast as
  // it can but has no core to itself.
  auto run = cl.start(paced_workflow(10'000), dx::run_options{}.without_journal());
  const heard h = listen_until_ended(fast, run.id());
  REQUIRE(run.wait_for(60s));
  CHECK(run.status() == dx::workflow_status::succeeded);
  REQUIRE_FALSE(h.run_statuses.empty());
  CHECK(h.run_statuses.back() == "SUCCEEDED");
  CHECK(h.last_task.count("parts#9999") == 1);
  CHECK(metric(ep, "dx_http_websocket_dropped_total") >= 1);
  CHECK(eventually([&] { return metric(ep, "dx_http_websocket_clients") == 1; }));
  // The slow client finds, after what it had received, that it was closed.
  bool ended = false;
  for (int i = 0; i < 10'000 && !ended; ++i) {
    try {
      if (!slow.read(2s)) break;
    } catch (const boost::system::system_error&) {
      ended = true;
    }
  }
  CHECK(ended);
  if (slow.closed_by_frame()) {
    CHECK(slow.close_reason().code == boost::beast::websocket::close_code::policy_error);
    CHECK(std::string(slow.close_reason().reason.c_str()) == "too slow");
  }
}

TEST_CASE("events: over the client limit the upgrade is answered 503", "[net][events]") {
  dx::cluster cl{served().websocket_clients(2)};
  const std::string ep = cl.http_endpoint();
  std::optional<ws_test::client> a(std::in_place, ep, "/api/events");
  ws_test::client b(ep, "/api/events");
  CHECK(a->accepted());
  CHECK(b.accepted());
  ws_test::client c(ep, "/api/events");
  CHECK_FALSE(c.accepted());
  CHECK(c.status() == 503);
  a->close();
  a.reset();
  CHECK(eventually([&] { return metric(ep, "dx_http_websocket_clients") == 1; }));
  ws_test::client d(ep, "/api/events");
  CHECK(d.accepted());
  subscribed(d);
}
