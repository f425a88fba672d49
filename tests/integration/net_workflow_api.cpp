// The workflow routes of a live head's HTTP endpoint beyond starting and reading runs: resuming a
// run (one cancelled here, one found in the journal), validating a workflow without starting it,
// bad JSON answered with its position, bodies over the limit, and who may read and write: the
// token on POSTs, and on reads too when the endpoint listens on an address other than loopback.
#include <dx/dx.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "http_client.hpp"
#include "scoped_env.hpp"
#include "temp_dir.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using nlohmann::json;
namespace http_test = dx_support::http;

namespace wfapi_test {
std::int64_t wait_for_file(std::string path) {
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(2ms);
  return 1;
}
std::int64_t twice(std::int64_t x) { return 2 * x; }
}  // namespace wfapi_test

DX_REMOTE(wfapi_test::wait_for_file);
DX_REMOTE(wfapi_test::twice);

namespace {

/// A step held until `gate` exists, then one that depends on it.
std::string gated_workflow(const std::string& gate) {
  return json{
      {"name", "gated"},
      {"steps", json::array({{{"name", "hold"}, {"function", "wfapi_test::wait_for_file"}, {"parameters", {gate}}},
                             {{"name", "double"}, {"function", "wfapi_test::twice"}, {"inputs", {{"0", "hold"}}}}})}}
      .dump();
}

http_test::reply post(const std::string& ep, const std::string& target, const std::string& body,
                      const std::string& headers = {}) {
  return http_test::send_raw(
      ep, "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers +
              "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
}

http_test::reply get(const std::string& ep, const std::string& target, const std::string& headers = {}) {
  return http_test::send_raw(
      ep, "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers + "\r\n");
}

json run_view(const std::string& ep, const std::string& id, const std::string& headers = {}) {
  const auto r = get(ep, "/api/runs/" + id, headers);
  INFO(r.status << " " << r.body);
  REQUIRE(r.status == 200);
  return json::parse(r.body);
}

/// Waits (at most 20 s) until the run is no longer RUNNING; returns its view.
json wait_ended(const std::string& ep, const std::string& id, const std::string& headers = {}) {
  const auto end = std::chrono::steady_clock::now() + 20s;
  json v;
  do {
    std::this_thread::sleep_for(5ms);
    v = run_view(ep, id, headers);
  } while (v["status"] == "RUNNING" && std::chrono::steady_clock::now() < end);
  return v;
}

/// "0.0.0.0:PORT" -> "127.0.0.1:PORT": the endpoint listens everywhere, the test connects on loopback.
std::string via_loopback(const std::string& ep) { return "127.0.0.1" + ep.substr(ep.rfind(':')); }

dx::options served(const std::string& address = "127.0.0.1:0") {
  return dx::options{}.threads(2).http(address).persist_cost_model(false);
}

const std::string bearer = "Authorization: Bearer s3cret\r\n";

}  // namespace

TEST_CASE("workflow api: a cancelled run is resumed over HTTP and runs what had not succeeded", "[net][workflow-api]") {
  const dx_support::temp_dir dir("dx_wfapi");
  const dx_support::scoped_env env("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
  const std::string gate = (dir.path() / "gate").string();
  dx::cluster cl{served().token("s3cret")};
  const std::string ep = cl.http_endpoint();

  const auto started = post(ep, "/api/runs", gated_workflow(gate), bearer);
  INFO(started.body);
  REQUIRE(started.status == 201);
  const std::string id = json::parse(started.body)["id"];
  const std::string resume = "/api/runs/" + id + "/resume";

  // Running: nothing to resume.
  const auto busy = post(ep, resume, "", bearer);
  CHECK(busy.status == 409);
  CHECK(json::parse(busy.body)["status"] == "RUNNING");
  CHECK(post(ep, "/api/runs/" + id + "/cancel", "", bearer).status == 200);
  CHECK(wait_ended(ep, id)["status"] == "CANCELLED");

  // The token is needed as for cancel; an unknown run is 404.
  const auto anonymous = post(ep, resume, "");
  CHECK(anonymous.status == 401);
  CHECK_THAT(anonymous.head, Catch::Contains("WWW-Authenticate: Bearer"));
  CHECK(post(ep, resume, "", "Authorization: Bearer wrong\r\n").status == 401);
  CHECK(post(ep, "/api/runs/r-none/resume", "", bearer).status == 404);
  CHECK(get(ep, resume).status == 405);

  const auto resumed = post(ep, resume, "", bearer);
  INFO(resumed.body);
  REQUIRE(resumed.status == 200);
  CHECK(json::parse(resumed.body)["id"] == id);
  CHECK(json::parse(resumed.body)["status"] == "RUNNING");
  // The run is listed once, as the resumed engine has it.
  const json list = json::parse(get(ep, "/api/runs").body);
  CHECK(list["runs"].size() == 1);
  std::ofstream(gate) << "open\n";
  const json done = wait_ended(ep, id);
  CHECK(done["status"] == "SUCCEEDED");
  const auto again = post(ep, resume, "", bearer);
  CHECK(again.status == 409);
  CHECK(json::parse(again.body)["status"] == "SUCCEEDED");
  CHECK(dx::workflow_run::recorded(id, dx::run_options{}).status == dx::workflow_status::succeeded);
}

TEST_CASE("workflow api: a run found in the journal and not in this cluster is resumed over HTTP",
          "[net][workflow-api]") {
  const dx_support::temp_dir dir("dx_wfapi");
  const dx_support::scoped_env env("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
  const std::string gate = (dir.path() / "gate").string();
  std::string id;
  {
    dx::cluster first{served()};
    const auto started = post(first.http_endpoint(), "/api/runs", gated_workflow(gate));
    REQUIRE(started.status == 201);
    id = json::parse(started.body)["id"];
    CHECK(post(first.http_endpoint(), "/api/runs/" + id + "/cancel", "").status == 200);
    std::ofstream(gate) << "open\n";  // the cancelled attempt ends; the cluster can stop
  }
  dx::cluster second{served()};
  const std::string ep = second.http_endpoint();
  CHECK(json::parse(get(ep, "/api/runs").body)["runs"].empty());
  const auto resumed = post(ep, "/api/runs/" + id + "/resume", "");
  INFO(resumed.body);
  REQUIRE(resumed.status == 200);
  CHECK(wait_ended(ep, id)["status"] == "SUCCEEDED");
  CHECK(post(ep, "/api/runs/r-19700101T000000Z-none/resume", "").status == 404);
}

TEST_CASE("workflow api: validate lists every problem of a workflow and starts nothing", "[net][workflow-api]") {
  const dx_support::temp_dir dir("dx_wfapi");
  const dx_support::scoped_env env("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
  // A token on loopback: validating follows the read rule, open here.
  dx::cluster cl{served().token("s3cret")};
  const std::string ep = cl.http_endpoint();

  const auto good = post(ep, "/api/workflows/validate", gated_workflow("/nonexistent"));
  INFO(good.body);
  REQUIRE(good.status == 200);
  const json g = json::parse(good.body);
  CHECK(g["valid"] == true);
  CHECK(g["problems"].empty());
  CHECK(g["name"] == "gated");
  CHECK(g["steps"] == 2);

  const std::string bad = R"({"name": "bad", "steps": [
      {"name": "a", "function": "wfapi_test::nosuch"},
      {"name": "b", "function": "wfapi_test::twice", "parameters": {"0": "not a number"}},
      {"name": "c", "function": "wfapi_test::twice", "parameters": {"0": 1, "1": 2}}]})";
  const auto answer = post(ep, "/api/workflows/validate", bad);
  INFO(answer.body);
  REQUIRE(answer.status == 200);
  const json b = json::parse(answer.body);
  CHECK(b["valid"] == false);
  REQUIRE(b["problems"].size() >= 3);
  const std::string all = b["problems"].dump();
  CHECK_THAT(all, Catch::Contains("'a'"));
  CHECK_THAT(all, Catch::Contains("'b'"));
  CHECK_THAT(all, Catch::Contains("'c'"));
  // POST /api/runs refuses it with the same problems.
  const auto refused = post(ep, "/api/runs", bad, bearer);
  CHECK(refused.status == 400);
  CHECK(json::parse(refused.body)["problems"] == b["problems"]);

  const std::string cyclic = R"({"name": "loop", "steps": [
      {"name": "x", "function": "wfapi_test::twice", "inputs": {"0": "y"}},
      {"name": "y", "function": "wfapi_test::twice", "inputs": {"0": "x"}}]})";
  const json c = json::parse(post(ep, "/api/workflows/validate", cyclic).body);
  CHECK(c["valid"] == false);
  CHECK_THAT(c["problems"].dump(), Catch::Contains("cycle"));

  // Nothing was started, and the route takes POST only.
  CHECK(json::parse(get(ep, "/api/runs").body)["runs"].empty());
  CHECK(get(ep, "/api/workflows/validate").status == 405);
}

TEST_CASE("workflow api: a body that is not JSON is a 400 naming the byte, line and column", "[net][workflow-api]") {
  const dx_support::temp_dir dir("dx_wfapi");
  const dx_support::scoped_env env("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
  dx::cluster cl{served()};
  const std::string ep = cl.http_endpoint();
  const std::string broken = "{\"name\": \"x\",\n \"steps\": [}";  // the '}', byte 26 (from 1), is wrong
  for (const char* route : {"/api/workflows/validate", "/api/runs"}) {
    INFO(route);
    const auto r = post(ep, route, broken);
    INFO(r.body);
    REQUIRE(r.status == 400);
    const json j = json::parse(r.body);
    CHECK(j["position"]["byte"] == 26);
    CHECK(j["position"]["line"] == 2);
    CHECK(j["position"]["column"] == 12);
    CHECK_THAT(j["error"].get<std::string>(), Catch::Contains("byte 26 (line 2, column 12)"));
    CHECK(j["problems"].size() == 1);
  }
  CHECK(post(ep, "/api/workflows/validate", "").status == 400);
  // Over 4 MiB: refused from the Content-Length (413), for either route.
  const std::string huge(std::size_t{4} << 20 | 1, ' ');
  CHECK(post(ep, "/api/workflows/validate", huge).status == 413);
  CHECK(post(ep, "/api/runs", huge).status == 413);
  CHECK(json::parse(get(ep, "/api/runs").body)["runs"].empty());
}

TEST_CASE("workflow api: on an address other than loopback with a token, reading needs the token too",
          "[net][workflow-api]") {
  const dx_support::temp_dir dir("dx_wfapi");
  const dx_support::scoped_env env("DX_JOURNAL", (dir.path() / "journal.sqlite").string());
  SECTION("reads, validation and /metrics are refused without the token") {
    dx::cluster cl{served("0.0.0.0:0").token("s3cret")};
    const std::string ep = via_loopback(cl.http_endpoint());
    for (const char* target : {"/api/runs", "/api/state", "/api/tasks", "/api/runs/r-none", "/metrics"}) {
      INFO(target);
      const auto r = get(ep, target);
      CHECK(r.status == 401);
      CHECK_THAT(r.head, Catch::Contains("WWW-Authenticate: Bearer"));
      CHECK(get(ep, target, "Authorization: Bearer wrong\r\n").status == 401);
      CHECK(get(ep, target, bearer).status != 401);
    }
    CHECK(get(ep, "/api/runs", bearer).status == 200);
    CHECK(get(ep, "/").status == 200);  // the page holds no data
    CHECK(post(ep, "/api/workflows/validate", gated_workflow("/g")).status == 401);
    CHECK(post(ep, "/api/workflows/validate", gated_workflow("/g"), bearer).status == 200);
    CHECK(post(ep, "/api/runs", gated_workflow("/g")).status == 401);
  }
  SECTION("metrics_open keeps /metrics readable for a scraper without the token") {
    dx::cluster cl{served("0.0.0.0:0").token("s3cret").metrics_open(true)};
    const std::string ep = via_loopback(cl.http_endpoint());
    CHECK(get(ep, "/metrics").status == 200);
    CHECK(get(ep, "/api/runs").status == 401);
  }
  SECTION("http_token is the HTTP clients' token when set") {
    dx::cluster cl{served("0.0.0.0:0").token("s3cret").http_token("web-only")};
    const std::string ep = via_loopback(cl.http_endpoint());
    CHECK(get(ep, "/api/runs", bearer).status == 401);
    CHECK(get(ep, "/api/runs", "Authorization: Bearer web-only\r\n").status == 200);
  }
  SECTION("on loopback, reads stay open with a token") {
    dx::cluster cl{served().token("s3cret")};
    CHECK(get(cl.http_endpoint(), "/api/runs").status == 200);
    CHECK(get(cl.http_endpoint(), "/metrics").status == 200);
  }
}
