// Workflow runs through a live head's HTTP endpoint, over real sockets: /api/runs and
// /api/runs/{id} while a run goes on and after it ended, the paging of its chunks, the dx_workflow_*
// metrics and the trace's names; a workflow posted and cancelled over HTTP; the cluster's token on
// the routes that change it, and what a cluster without a token accepts.
#include <dx/dx.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "scoped_env.hpp"
#include "temp_dir.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using nlohmann::json;
namespace http_test = dx_support::http;

namespace wfhttp_test {
std::int64_t wait_for_file(std::string path) {
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(2ms);
  return 1;
}
std::int64_t chunk_sum(dx::chunk c) {
  std::int64_t s = 0;
  for (std::int64_t i = c.start; i < c.end; ++i) s += i;
  return s;
}
std::int64_t add(std::int64_t a, std::int64_t b) { return a + b; }
}  // namespace wfhttp_test

DX_REMOTE(wfhttp_test::wait_for_file);
DX_REMOTE(wfhttp_test::chunk_sum);
DX_REMOTE(wfhttp_test::add);

namespace {

/// A held step, then a split of 20 chunks and its aggregate.
std::string gated_workflow(const std::string& gate) {
  return json{
      {"name", "gated"},
      {"steps", json::array({{{"name", "hold"}, {"function", "wfhttp_test::wait_for_file"}, {"parameters", {gate}}},
                             {{"name", "parts"},
                              {"function", "wfhttp_test::chunk_sum"},
                              {"split", {{"range", {0, 400}}, {"chunk", 20}}},
                              {"after", {"hold"}}},
                             {{"name", "total"}, {"aggregate", {{"of", "parts"}, {"function", "wfhttp_test::add"}}}}})}}
      .dump();
}

json get_json(const std::string& ep, const std::string& target) {
  const auto r = http_test::get(ep, target);
  INFO(target << " -> " << r.status << " " << r.body);
  REQUIRE(r.status == 200);
  CHECK_THAT(r.head, Catch::Contains("Content-Type: application/json"));
  return json::parse(r.body);
}

const json& step_named(const json& run, const std::string& name) {
  for (const auto& s : run["steps"])
    if (s["name"] == name) return s;
  FAIL("no step " << name);
  static const json none;
  return none;
}

http_test::reply post(const std::string& ep, const std::string& target, const std::string& body,
                      const std::string& headers = {}, const std::string& host = "127.0.0.1") {
  return http_test::send_raw(
      ep, "POST " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n" + headers +
              "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
}

/// Waits (at most 20 s) until the run's status is no longer RUNNING; returns its view.
json wait_ended(const std::string& ep, const std::string& id) {
  const auto end = std::chrono::steady_clock::now() + 20s;
  json v;
  do {
    std::this_thread::sleep_for(5ms);
    v = get_json(ep, "/api/runs/" + id);
  } while (v["status"] == "RUNNING" && std::chrono::steady_clock::now() < end);
  return v;
}

dx::options served() {
  return dx::options{}.threads(2).local_processes(1).http("127.0.0.1:0").persist_cost_model(false);
}

}  // namespace

TEST_CASE("workflow http: a run is listed and shown while it runs and after, metrics and traces name it",
          "[net][workflow-http]") {
  const dx_support::temp_dir dir("dx_wfhttp");
  const std::string gate = (dir.path() / "gate").string();
  dx::cluster cl{served()};
  const std::string ep = cl.http_endpoint();
  auto run = cl.start(dx::workflow::from_json(gated_workflow(gate)),
                      dx::run_options{}.with_journal((dir.path() / "journal.sqlite").string()));

  // While it runs: the held step is RUNNING on a worker, the rest waits.
  const json list = get_json(ep, "/api/runs");
  REQUIRE(list["runs"].size() == 1);
  CHECK(list["runs"][0]["id"] == run.id());
  CHECK(list["runs"][0]["status"] == "RUNNING");
  CHECK(list["runs"][0]["progress"].get<double>() < 1.0);
  const json running = get_json(ep, "/api/runs/" + run.id());
  CHECK(running["status"] == "RUNNING");
  CHECK(step_named(running, "hold")["status"] == "RUNNING");
  CHECK(step_named(running, "parts")["status"] == "PENDING");
  CHECK(step_named(running, "parts")["dependencies"] == json::array({"hold"}));
  CHECK(step_named(running, "total")["status"] == "PENDING");
  const std::string metrics_running = http_test::get(ep, "/metrics").body;
  CHECK_THAT(metrics_running, Catch::Contains("dx_workflow_runs{status=\"RUNNING\"} 1"));
  CHECK_THAT(metrics_running, Catch::Contains("dx_workflow_tasks{status=\"RUNNING\"} 1"));
  CHECK_THAT(metrics_running, Catch::Contains("dx_workflow_tasks{status=\"PENDING\"} 2"));

  std::ofstream(gate) << "open\n";
  REQUIRE(run.wait_for(30s));
  REQUIRE(run.status() == dx::workflow_status::succeeded);

  // After: every step succeeded, the split's 20 chunks counted and paged.
  const json done = get_json(ep, "/api/runs/" + run.id());
  CHECK(done["status"] == "SUCCEEDED");
  CHECK(done["progress"] == 1.0);
  const json& parts = step_named(done, "parts");
  CHECK(parts["subtasks"]["count"] == 20);
  CHECK(parts["subtasks"]["by_status"] == json{{"SUCCEEDED", 20}});
  const json& hold = step_named(done, "hold");
  CHECK_FALSE(hold["assigned_to"].is_null());
  const json page = get_json(ep, "/api/runs/" + run.id() + "?subtasks=parts&offset=18&limit=5");
  REQUIRE(page["subtasks"]["items"].size() == 2);
  CHECK(page["subtasks"]["items"][1]["key"] == "parts#19");
  CHECK(page["subtasks"]["items"][1]["part"] == json{{"start", 380}, {"end", 400}});
  CHECK(page["subtasks"]["items"][1]["parent_task_id"] == "parts");
  CHECK(http_test::get(ep, "/api/runs/" + run.id() + "?subtasks=parts&limit=5000").status == 400);
  CHECK(http_test::get(ep, "/api/runs/r-none").status == 404);
  CHECK(run.result<std::int64_t>("total") == 399 * 400 / 2);
  // ?step=NAME adds that step's result: its size and a preview; a split step has none.
  const json with_total = get_json(ep, "/api/runs/" + run.id() + "?step=total");
  const json& total = step_named(with_total, "total");
  REQUIRE(total.contains("result"));
  CHECK(total["result"]["preview"] == std::to_string(399 * 400 / 2));
  CHECK(total["result"]["bytes"].get<std::uint64_t>() > 0);
  CHECK(total["result"]["truncated"] == false);
  CHECK_FALSE(step_named(with_total, "hold").contains("result"));  // only the step asked for
  CHECK_FALSE(step_named(get_json(ep, "/api/runs/" + run.id() + "?step=parts"), "parts").contains("result"));
  CHECK(http_test::get(ep, "/api/runs/" + run.id() + "?step=nope").status == 404);

  const std::string metrics = http_test::get(ep, "/metrics").body;
  CHECK_THAT(metrics, Catch::Contains("dx_workflow_runs{status=\"SUCCEEDED\"} 1"));
  CHECK_THAT(metrics, Catch::Contains("dx_workflow_tasks_finished_total{status=\"SUCCEEDED\"} " +
                                      std::to_string(run.steps().size())));
  CHECK_THAT(metrics, Catch::Contains("dx_workflow_journal_commits_total{journal="));
  CHECK_THAT(metrics, Catch::Contains("dx_http_requests_total{path=\"/api/runs/{id}\",code=\"200\"}"));

  // The trace names the workflow's tasks by their keys, their function kept as the kind.
  const json trace = get_json(ep, "/api/trace");
  std::set<std::string> names;
  for (const auto& e : trace["traceEvents"])
    if (e["ph"] == "X" && e["cat"] == "workflow") {
      names.insert(e["name"].get<std::string>());
      if (e["name"] == "hold") CHECK(e["args"]["kind"] == "wfhttp_test::wait_for_file");
    }
  CHECK(names.count("hold") == 1);
  CHECK(names.count("parts#0") == 1);
  CHECK(names.count("parts#19") == 1);
}

TEST_CASE("workflow http: a command step's result shows the end of its output", "[net][workflow-http]") {
  const dx_support::temp_dir dir("dx_wfhttp_cmd");
  dx::cluster cl{served()};
  const std::string ep = cl.http_endpoint();
  // 3,000 lines of output: more than a preview holds, so it shows their end.
  const std::string wf =
      json{{"name", "talk"},
           {"steps", json::array({{{"name", "say"}, {"command", {"sh", "-c", "seq 1 3000; echo last line"}}}})}}
          .dump();
  auto run = cl.start(dx::workflow::from_json(wf), dx::run_options{});
  REQUIRE(run.wait_for(30s));
  REQUIRE(run.status() == dx::workflow_status::succeeded);
  const json got = get_json(ep, "/api/runs/" + run.id() + "?step=say");
  const json& r = step_named(got, "say")["result"];
  CHECK(r["tail"] == true);
  CHECK(r["truncated"] == true);
  CHECK(r["bytes"].get<std::size_t>() > 10000);
  const std::string preview = r["preview"].get<std::string>();
  CHECK(preview.size() <= 2048);
  CHECK_THAT(preview, Catch::EndsWith("2999\n3000\nlast line\n"));
}

TEST_CASE("workflow http: with a token, a workflow is posted and cancelled only with it", "[net][workflow-http]") {
  const dx_support::temp_dir dir("dx_wfhttp");
  // Runs started over HTTP use the default journal.
  const dx_support::scoped_env env("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
  const std::string gate = (dir.path() / "gate").string();
  dx::cluster cl{served().token("s3cret-token")};
  const std::string ep = cl.http_endpoint();
  const std::string wf = gated_workflow(gate);
  const std::string bearer = "Authorization: Bearer s3cret-token\r\n";

  const auto missing = post(ep, "/api/runs", wf);
  CHECK(missing.status == 401);
  CHECK_THAT(missing.head, Catch::Contains("WWW-Authenticate: Bearer"));
  CHECK_THAT(json::parse(missing.body)["error"].get<std::string>(), Catch::Contains("token"));
  CHECK(post(ep, "/api/runs", wf, "Authorization: Bearer wrong\r\n").status == 401);
  CHECK(post(ep, "/api/runs", wf, "Authorization: Basic czNjcmV0\r\n").status == 401);
  // A page of another site, even with the token, may not change the cluster.
  CHECK(post(ep, "/api/runs", wf, bearer + "Origin: http://evil.example\r\n").status == 403);
  CHECK(get_json(ep, "/api/runs")["runs"].empty());  // reading needs no token
  const auto invalid = post(ep, "/api/runs", R"({"name": "x", "steps": []})", bearer);
  CHECK(invalid.status == 400);
  CHECK_FALSE(json::parse(invalid.body)["problems"].empty());

  const auto started = post(ep, "/api/runs", wf, bearer);
  INFO(started.body);
  REQUIRE(started.status == 201);
  const std::string id = json::parse(started.body)["id"];
  CHECK_THAT(started.head, Catch::Contains("Location: /api/runs/" + id));
  CHECK(get_json(ep, "/api/runs/" + id)["status"] == "RUNNING");

  const std::string cancel = "/api/runs/" + id + "/cancel";
  CHECK(post(ep, cancel, "").status == 401);
  CHECK(get_json(ep, "/api/runs/" + id)["status"] == "RUNNING");
  const auto cancelled = post(ep, cancel, "", bearer);
  CHECK(cancelled.status == 200);
  CHECK(json::parse(cancelled.body)["status"] == "CANCELLED");
  std::ofstream(gate) << "open\n";  // the held step may end now; its result is ignored
  const json view = wait_ended(ep, id);
  CHECK(view["status"] == "CANCELLED");
  CHECK(step_named(view, "parts")["status"] == "CANCELLED");
  CHECK(post(ep, cancel, "", bearer).status == 409);
  CHECK(post(ep, "/api/runs/r-none/cancel", "", bearer).status == 404);
  // Posted runs go to the default journal ($DX_JOURNAL here).
  CHECK(dx::workflow_run::recorded(id, dx::run_options{}).status == dx::workflow_status::cancelled);
}

TEST_CASE("workflow http: without a token, changes are taken from this machine under a loopback name only",
          "[net][workflow-http]") {
  const dx_support::temp_dir dir("dx_wfhttp");
  // Runs started over HTTP use the default journal.
  const dx_support::scoped_env env("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
  dx::cluster cl{served()};
  const std::string ep = cl.http_endpoint();
  // A name of another site that resolves to this machine (DNS rebinding): refused.
  const auto rebound = post(ep, "/api/runs/r-none/cancel", "", {}, "evil.example:80");
  CHECK(rebound.status == 403);
  CHECK_THAT(json::parse(rebound.body)["error"].get<std::string>(), Catch::Contains("loopback"));
  CHECK(post(ep, "/api/runs/r-none/cancel", "", "Origin: http://evil.example\r\n").status == 403);
  // Under a loopback name, from this machine, the request is served (no such run: 404).
  for (const char* host : {"127.0.0.1", "localhost:8080", "[::1]:80"}) {
    INFO(host);
    CHECK(post(ep, "/api/runs/r-none/cancel", "", {}, host).status == 404);
  }
  CHECK(post(ep, "/api/runs/r-none/cancel", "", "Origin: http://" + ep + "\r\n", ep).status == 404);
  // The whole flow: post a small workflow, see it succeed.
  const std::string wf = R"({"name": "tiny", "steps": [
      {"name": "parts", "function": "wfhttp_test::chunk_sum", "split": {"range": [0, 10], "chunk": 5}},
      {"name": "total", "aggregate": {"of": "parts", "function": "wfhttp_test::add"}}]})";
  const auto started = post(ep, "/api/runs", wf);
  INFO(started.body);
  REQUIRE(started.status == 201);
  const json view = wait_ended(ep, json::parse(started.body)["id"]);
  CHECK(view["status"] == "SUCCEEDED");
  // The head's own pages are read-only.
  const auto page_post = post(ep, "/api/state", "{}");
  CHECK(page_post.status == 405);
  CHECK_THAT(page_post.head, Catch::Contains("Allow: GET, HEAD"));
}
