// The workflow routes of the head's HTTP endpoint (/api/runs, /api/runs/{id}, POST /api/runs, POST
// /api/runs/{id}/cancel), asked directly through the cluster's extension, as the head asks it: the
// JSON of a small run, the paging of a split's subtasks and its bounds, unknown ids and steps,
// conditional requests, who may start and cancel runs, and the dx_workflow_* metrics. (Over a real
// socket, with a token, in tests/integration/net_workflow_http.cpp.)
#include "cluster/cluster_extension.hpp"

#include <dx/dx.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "scoped_env.hpp"
#include "temp_dir.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using dx::detail::http_method;
using dx::detail::http_request;
using dx::detail::http_response;
using dx::detail::http_write_access;
using nlohmann::json;

namespace views_test {
std::int64_t square(std::int64_t x) { return x * x; }
std::int64_t chunk_sum(dx::chunk c) {
  std::int64_t s = 0;
  for (std::int64_t i = c.start; i < c.end; ++i) s += i;
  return s;
}
std::int64_t add(std::int64_t a, std::int64_t b) { return a + b; }
/// Waits (at most 20 s) until `path` exists.
std::int64_t wait_for_file(std::string path) {
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(2ms);
  return 1;
}
}  // namespace views_test

DX_REMOTE(views_test::square);
DX_REMOTE(views_test::chunk_sum);
DX_REMOTE(views_test::add);
DX_REMOTE(views_test::wait_for_file);

namespace {

const http_write_access allowed{true, 200, {}};
const http_write_access refused{false, 401, "no token"};

/// Asks the cluster's extension as the head does; FAILs when it does not answer.
http_response ask(dx::cluster& cl, http_method m, const std::string& path,
                  std::map<std::string, std::string> query = {}, std::string body = {},
                  const http_write_access& access = allowed, std::map<std::string, std::string> headers = {}) {
  auto ext = dx::detail::cluster_extensions::get(cl);
  REQUIRE(ext);
  http_request r;
  r.method = m;
  r.path = path;
  r.query = std::move(query);
  r.body = std::move(body);
  r.headers = std::move(headers);
  r.peer_loopback = true;
  auto answer = ext->serve_http(r, access);
  REQUIRE(answer);
  return *answer;
}

json get_json(dx::cluster& cl, const std::string& path, std::map<std::string, std::string> query = {}) {
  const auto r = ask(cl, http_method::get, path, std::move(query));
  INFO(r.body);
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  return json::parse(r.body);
}

const json* step_named(const json& run, const std::string& name) {
  for (const auto& s : run["steps"])
    if (s["name"] == name) return &s;
  return nullptr;
}

/// A run of four steps: a function, a split of 10 chunks over [0, 100), its aggregate, and a step
/// taking two inputs.
dx::workflow small_workflow() {
  return dx::workflow::from_json(R"({"name": "small", "steps": [
      {"name": "seed", "function": "views_test::square", "parameters": [3]},
      {"name": "parts", "function": "views_test::chunk_sum", "split": {"range": [0, 100], "chunk": 10}},
      {"name": "total", "aggregate": {"of": "parts", "function": "views_test::add"}},
      {"name": "report", "function": "views_test::add", "inputs": {"0": "seed", "1": "total"}}]})");
}

}  // namespace

TEST_CASE("workflow http: /api/runs lists the cluster's runs with their status, step counts and progress",
          "[workflow][http]") {
  dx::cluster cl{dx::options{}.threads(2)};
  auto run = cl.start(small_workflow(), dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  REQUIRE(run.status() == dx::workflow_status::succeeded);
  const json list = get_json(cl, "/api/runs");
  REQUIRE(list["runs"].size() == 1);
  const json& r = list["runs"][0];
  CHECK(r["id"] == run.id());
  CHECK(r["name"] == "small");
  CHECK(r["status"] == "SUCCEEDED");
  CHECK(r["steps"] == 4);
  CHECK(r["steps_by_status"] == json{{"SUCCEEDED", 4}});
  CHECK(r["progress"] == 1.0);
  CHECK(r["created_ms"].get<std::int64_t>() > 1'600'000'000'000);
  CHECK(r["updated_ms"].get<std::int64_t>() >= r["created_ms"].get<std::int64_t>());
  CHECK(run.result<std::int64_t>("report") == 9 + 4950);
}

TEST_CASE("workflow http: /api/runs/{id} shows each step with its status, dependencies and subtask counts",
          "[workflow][http]") {
  dx::cluster cl{dx::options{}.threads(2)};
  auto run = cl.start(small_workflow(), dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  const json j = get_json(cl, "/api/runs/" + run.id());
  CHECK(j["id"] == run.id());
  CHECK(j["status"] == "SUCCEEDED");
  REQUIRE(j["steps"].size() == 4);
  CHECK(j.find("subtasks") == j.end());  // only when asked for
  const json& seed = *step_named(j, "seed");
  CHECK(seed["kind"] == "function");
  CHECK(seed["function"] == "views_test::square");
  CHECK(seed["status"] == "SUCCEEDED");
  CHECK(seed["progress"] == 1.0);
  CHECK(seed["attempts"] == 1);
  CHECK(seed["assigned_to"] == "head");
  CHECK(seed["error"].is_null());
  CHECK(seed["dependencies"].empty());
  CHECK(seed["is_subtask"] == false);
  CHECK(seed["parent_task_id"].is_null());
  CHECK(seed["split"] == false);
  CHECK(seed.find("subtasks") == seed.end());
  const json& parts = *step_named(j, "parts");
  CHECK(parts["split"] == true);
  CHECK(parts["subtasks"]["count"] == 10);
  CHECK(parts["subtasks"]["planned"] == 10);
  CHECK(parts["subtasks"]["by_status"] == json{{"SUCCEEDED", 10}});
  const json& total = *step_named(j, "total");
  CHECK(total["kind"] == "aggregate");
  CHECK(total["aggregate_of"] == "parts");
  CHECK(total["dependencies"] == json::array({"parts"}));
  CHECK(total["subtasks"]["count"].get<int>() >= 1);  // its reductions
  const json& report = *step_named(j, "report");
  CHECK(report["dependencies"] == json::array({"seed", "total"}));
  // Steps come after their dependencies (the dashboard lays them out in that order).
  std::map<std::string, std::size_t> at;
  for (std::size_t i = 0; i < j["steps"].size(); ++i) at[j["steps"][i]["name"]] = i;
  for (const auto& s : j["steps"])
    for (const auto& d : s["dependencies"]) CHECK(at[d] < at[s["name"]]);
}

TEST_CASE("workflow http: /api/runs/{id}?subtasks= pages a split's chunks, within bounds", "[workflow][http]") {
  dx::cluster cl{dx::options{}.threads(2)};
  auto run = cl.start(small_workflow(), dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  const std::string path = "/api/runs/" + run.id();

  const json first = get_json(cl, path, {{"subtasks", "parts"}});
  CHECK(first["subtasks"]["step"] == "parts");
  CHECK(first["subtasks"]["offset"] == 0);
  CHECK(first["subtasks"]["limit"] == 100);  // the default
  CHECK(first["subtasks"]["total"] == 10);
  REQUIRE(first["subtasks"]["items"].size() == 10);
  const json& c0 = first["subtasks"]["items"][0];
  CHECK(c0["key"] == "parts#0");
  CHECK(c0["status"] == "SUCCEEDED");
  CHECK(c0["is_subtask"] == true);
  CHECK(c0["parent_task_id"] == "parts");
  CHECK(c0["part"] == json{{"start", 0}, {"end", 10}});
  CHECK(c0["attempts"] == 1);

  const json page = get_json(cl, path, {{"subtasks", "parts"}, {"offset", "7"}, {"limit", "2"}});
  REQUIRE(page["subtasks"]["items"].size() == 2);
  CHECK(page["subtasks"]["items"][0]["key"] == "parts#7");
  CHECK(page["subtasks"]["items"][1]["key"] == "parts#8");
  CHECK(page["subtasks"]["total"] == 10);
  const json tail = get_json(cl, path, {{"subtasks", "parts"}, {"offset", "9"}, {"limit", "1000"}});
  CHECK(tail["subtasks"]["items"].size() == 1);
  const json past = get_json(cl, path, {{"subtasks", "parts"}, {"offset", "1000000"}});
  CHECK(past["subtasks"]["items"].empty());
  CHECK(past["subtasks"]["total"] == 10);
  const json none = get_json(cl, path, {{"subtasks", "seed"}});  // a step without subtasks
  CHECK(none["subtasks"]["total"] == 0);
  const json done = get_json(cl, path, {{"subtasks", "parts"}, {"status", "SUCCEEDED"}, {"offset", "8"}});
  CHECK(done["subtasks"]["total"] == 10);
  CHECK(done["subtasks"]["items"].size() == 2);
  CHECK(done["subtasks"]["items"][0]["key"] == "parts#8");
  const json failed = get_json(cl, path, {{"subtasks", "parts"}, {"status", "FAILED"}});
  CHECK(failed["subtasks"]["total"] == 0);

  using q = std::map<std::string, std::string>;
  for (const q& bad : {q{{"subtasks", "parts"}, {"limit", "0"}}, q{{"subtasks", "parts"}, {"limit", "1001"}},
                       q{{"subtasks", "parts"}, {"limit", "x"}}, q{{"subtasks", "parts"}, {"offset", "-1"}},
                       q{{"subtasks", "parts"}, {"offset", "99999999999999999999999"}},
                       q{{"subtasks", "parts"}, {"status", "DONE"}}, q{{"offset", "3"}}}) {
    const auto r = ask(cl, http_method::get, path, bad);
    INFO(json(bad).dump() << " -> " << r.body);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body).contains("error"));
  }
  const auto unknown_step = ask(cl, http_method::get, path, {{"subtasks", "nope"}});
  CHECK(unknown_step.status == 404);
  CHECK_THAT(unknown_step.body, Catch::Contains("no step 'nope'"));
}

TEST_CASE("workflow http: unknown runs and routes under /api/runs are 404 with a JSON error, wrong methods 405",
          "[workflow][http]") {
  dx::cluster cl{dx::options{}.threads(1)};
  auto run = cl.start(small_workflow(), dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  for (const char* path : {"/api/runs/r-nope",
                           "/api/runs/"
                           "r-nope/cancel",
                           "/api/runs/a/b", "/api/runs//x"}) {
    const auto r = ask(cl, path == std::string("/api/runs/r-nope/cancel") ? http_method::post : http_method::get, path);
    INFO(path << " -> " << r.body);
    CHECK(r.status == 404);
    CHECK(r.content_type == "application/json");
    CHECK(json::parse(r.body).contains("error"));
  }
  const auto get_cancel = ask(cl, http_method::get, "/api/runs/" + run.id() + "/cancel");
  CHECK(get_cancel.status == 405);
  CHECK(get_cancel.headers == std::vector<std::pair<std::string, std::string>>{{"Allow", "POST"}});
  CHECK(ask(cl, http_method::post, "/api/runs/" + run.id()).status == 405);
  // The routes are counted by their pattern, not by each run's id.
  CHECK(ask(cl, http_method::get, "/api/runs/" + run.id()).route == "/api/runs/{id}");
  // Paths that are not the extension's are left to the head.
  http_request other;
  other.path = "/api/state";
  CHECK_FALSE(dx::detail::cluster_extensions::get(cl)->serve_http(other, allowed));
}

TEST_CASE("workflow http: a run's views carry an ETag: an unchanged run answers 304", "[workflow][http]") {
  dx::cluster cl{dx::options{}.threads(1)};
  auto run = cl.start(small_workflow(), dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  for (const std::string& path : {"/api/runs/" + run.id(), std::string("/api/runs")}) {
    const auto first = ask(cl, http_method::get, path);
    std::string etag;
    for (const auto& [k, v] : first.headers)
      if (k == "ETag") etag = v;
    REQUIRE_FALSE(etag.empty());
    const auto again = ask(cl, http_method::get, path, {}, {}, allowed, {{"if-none-match", etag}});
    CHECK(again.status == 304);
    CHECK(again.body.empty());
    CHECK(ask(cl, http_method::get, path, {}, {}, allowed, {{"if-none-match", "\"other\", W/" + etag}}).status == 304);
    CHECK(ask(cl, http_method::get, path, {}, {}, allowed, {{"if-none-match", "\"other\""}}).status == 200);
  }
  // Another run changes the list's tag.
  const auto before = ask(cl, http_method::get, "/api/runs");
  auto second = cl.start(small_workflow(), dx::run_options{}.without_journal());
  REQUIRE(second.wait_for(20s));
  std::string old_tag;
  for (const auto& [k, v] : before.headers)
    if (k == "ETag") old_tag = v;
  CHECK(ask(cl, http_method::get, "/api/runs", {}, {}, allowed, {{"if-none-match", old_tag}}).status == 200);
}

TEST_CASE(
    "workflow http: POST /api/runs starts a workflow with the default journal, an invalid one is 400 with its problems",
    "[workflow][http]") {
  const dx_support::temp_dir dir("dx_run_views");
  // Runs started over HTTP use the default journal.
  const dx_support::scoped_env env("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
  dx::cluster cl{dx::options{}.threads(2)};
  // Before any run exists, a cluster serving HTTP has made its extension; one of local threads
  // makes it on its first run.
  (void)cl.start(dx::workflow::from_json(R"({"name": "warm", "steps": [
      {"name": "a", "function": "views_test::square", "parameters": [1]}]})"),
                 dx::run_options{}.without_journal());

  const auto started = ask(cl, http_method::post, "/api/runs", {}, small_workflow().to_json());
  INFO(started.body);
  REQUIRE(started.status == 201);
  const json body = json::parse(started.body);
  const std::string id = body["id"];
  CHECK(body["url"] == "/api/runs/" + id);
  CHECK(started.headers == std::vector<std::pair<std::string, std::string>>{{"Location", "/api/runs/" + id}});
  // Nobody holds a handle of it: the cluster keeps the run while it goes on, and after.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  json view;
  do {
    std::this_thread::sleep_for(5ms);
    view = get_json(cl, "/api/runs/" + id);
  } while (view["status"] == "RUNNING" && std::chrono::steady_clock::now() < deadline);
  CHECK(view["status"] == "SUCCEEDED");
  // It was journaled where DX_JOURNAL says.
  const auto recorded = dx::workflow_run::recorded(id, dx::run_options{});
  CHECK(recorded.status == dx::workflow_status::succeeded);

  struct bad_case {
    std::string body;
    std::string problem;
  };
  for (const bad_case& b :
       {bad_case{"", "no body"}, bad_case{"{not json", "JSON"}, bad_case{"[1, 2]", "JSON object"},
        bad_case{R"({"name": "x", "steps": [{"name": "a", "function": "views_test::nope"}]})", "views_test::nope"},
        bad_case{R"({"name": "x", "steps": [{"name": "a", "function": "views_test::square", "parameters": [1]},
                                          {"name": "a", "function": "views_test::square", "parameters": [2]}]})",
                 "a"}}) {
    const auto r = ask(cl, http_method::post, "/api/runs", {}, b.body);
    INFO(b.body << " -> " << r.body);
    CHECK(r.status == 400);
    const json e = json::parse(r.body);
    CHECK(e.contains("error"));
    REQUIRE(e["problems"].is_array());
    REQUIRE_FALSE(e["problems"].empty());
    CHECK_THAT(e["problems"].dump(), Catch::Contains(b.problem));
  }
  // Without the right to write, nothing starts.
  const std::size_t runs_before = get_json(cl, "/api/runs")["runs"].size();
  const auto denied = ask(cl, http_method::post, "/api/runs", {}, small_workflow().to_json(), refused);
  CHECK(denied.status == 401);
  CHECK(json::parse(denied.body)["error"] == "no token");
  CHECK(get_json(cl, "/api/runs")["runs"].size() == runs_before);
}

TEST_CASE(
    "workflow http: POST /api/runs/{id}/cancel cancels a running run: 200, then 409, refused without the right to "
    "write",
    "[workflow][http]") {
  const dx_support::temp_dir dir("dx_run_views");
  const std::string gate = (dir.path() / "gate").string();
  dx::cluster cl{dx::options{}.threads(2)};
  dx::workflow wf{"held"};
  auto w = wf.step("wait", views_test::wait_for_file, gate);
  wf.step("after", views_test::square, std::int64_t{2}).after(w);
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  const std::string cancel = "/api/runs/" + run.id() + "/cancel";
  CHECK(ask(cl, http_method::post, cancel, {}, {}, refused).status == 401);
  CHECK(run.status() == dx::workflow_status::running);
  const auto r = ask(cl, http_method::post, cancel);
  INFO(r.body);
  CHECK(r.status == 200);
  CHECK(json::parse(r.body)["status"] == "CANCELLED");
  std::ofstream(gate) << "open\n";
  REQUIRE(run.wait_for(20s));
  CHECK(run.status() == dx::workflow_status::cancelled);
  const auto again = ask(cl, http_method::post, cancel);
  CHECK(again.status == 409);
  CHECK(json::parse(again.body)["status"] == "CANCELLED");
  const json view = get_json(cl, "/api/runs/" + run.id());
  CHECK(view["status"] == "CANCELLED");
  CHECK((*step_named(view, "after"))["status"] == "CANCELLED");
}

TEST_CASE("workflow http: a cluster keeps its runs while they go on and the last ended ones", "[workflow][http]") {
  dx::cluster cl{dx::options{}.threads(2)};
  constexpr std::size_t started = 40;
  for (std::size_t i = 0; i < started; ++i) {
    (void)cl.start(dx::workflow::from_json(R"({"name": "one", "steps": [
        {"name": "a", "function": "views_test::square", "parameters": [2]}]})"),
                   dx::run_options{}.without_journal());  // the handle is dropped at once
  }
  // Once every run has ended, the newest 32 are kept (workflow_host::kept_ended); an older one is
  // listed only while something still holds it (the thread that reported its last task may, for a
  // moment).
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  json list;
  bool settled = false;
  while (!settled && std::chrono::steady_clock::now() < deadline) {
    list = get_json(cl, "/api/runs");
    settled = list["runs"].size() == 32;
    for (const auto& r : list["runs"]) settled = settled && r["status"] == "SUCCEEDED";
    std::this_thread::sleep_for(5ms);
  }
  CHECK(settled);
  CHECK(list["runs"].size() == 32);
}

TEST_CASE("workflow http: dx_workflow_* metrics count runs, tasks by status and tasks finished", "[workflow][http]") {
  const dx_support::temp_dir dir("dx_run_views");
  dx::cluster cl{dx::options{}.threads(2)};
  auto run = cl.start(small_workflow(), dx::run_options{}.with_journal((dir.path() / "j.sqlite").string()));
  REQUIRE(run.wait_for(20s));
  const std::string text = cl.metrics().render();
  INFO(text);
  CHECK_THAT(text, Catch::Contains("# TYPE dx_workflow_runs gauge"));
  CHECK_THAT(text, Catch::Contains("dx_workflow_runs{status=\"SUCCEEDED\"} 1"));
  CHECK_THAT(text, Catch::Contains("dx_workflow_runs{status=\"RUNNING\"} 0"));
  CHECK_THAT(text, Catch::Contains("# TYPE dx_workflow_tasks gauge"));
  CHECK_THAT(text, Catch::Contains("dx_workflow_tasks{status=\"RUNNING\"} 0"));
  CHECK_THAT(text, Catch::Contains("# TYPE dx_workflow_tasks_finished_total counter"));
  // 4 steps, 10 chunks and the aggregate's reductions.
  const std::size_t tasks = run.steps().size();
  CHECK_THAT(text, Catch::Contains("dx_workflow_tasks_finished_total{status=\"SUCCEEDED\"} " + std::to_string(tasks)));
  CHECK_THAT(text, Catch::Contains("# TYPE dx_workflow_journal_commits_total counter"));
  CHECK_THAT(text, Catch::Contains("dx_workflow_journal_commits_total{journal=\""));
  CHECK_THAT(text, Catch::Contains("# TYPE dx_workflow_journal_commit_seconds_total counter"));
}
