// Observability of a live cluster: the HTTP endpoint (/metrics, /api/state, /api/tasks, the
// dashboard), malformed requests, user metrics and alert rules, trace export.
#include "cluster/cluster_access.hpp"
#include "cluster/worker.hpp"
#include "net_functions.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "http_client.hpp"

namespace http_test = dx_support::http;

using namespace std::chrono_literals;
using nlohmann::json;

namespace {

/// The names of the workers a head starts: after its host, in the order it starts them.
const std::string w1 = dx::detail::host_name() + "-1";
const std::string w2 = dx::detail::host_name() + "-2";

/// Sample lines of a Prometheus text exposition: "name{labels}" -> value.
std::map<std::string, double> parse_metrics(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

double sum_matching(const std::map<std::string, double>& m, const std::string& prefix, const std::string& contains) {
  double total = 0;
  for (const auto& [k, v] : m)
    if (k.rfind(prefix, 0) == 0 && k.find(contains) != std::string::npos) total += v;
  return total;
}

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (p()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return p();
}

dx::options observed(std::size_t processes) {
  return dx::options{}.threads(2).local_processes(processes).http("127.0.0.1:0").persist_cost_model(false);
}

}  // namespace

TEST_CASE("the HTTP endpoint serves metrics, state and task events that match the work done", "[net][observe]") {
  dx::cluster cl{observed(2)};
  const std::string ep = cl.http_endpoint();
  REQUIRE_FALSE(ep.empty());
  std::vector<dx::future<int>> ok, bad;
  for (int i = 0; i < 60; ++i) ok.push_back(cl.submit(net_test::square, i));
  for (int i = 0; i < 5; ++i) bad.push_back(cl.submit(net_test::throw_out_of_range, -1));
  for (auto& f : ok) f.get();
  for (auto& f : bad) CHECK_THROWS(f.get());

  const auto metrics = http_test::get(ep, "/metrics");
  REQUIRE(metrics.status == 200);
  CHECK_THAT(metrics.head, Catch::Contains("text/plain; version=0.0.4"));
  const auto m = parse_metrics(metrics.body);
  CHECK(sum_matching(m, "dx_tasks_completed_total{", "kind=\"net_test::square\"") == 60);
  CHECK(sum_matching(m, "dx_tasks_failed_total{", "kind=\"net_test::throw_out_of_range\"") == 5);
  CHECK(m.at("dx_tasks_submitted_total{kind=\"net_test::square\"}") == 60);
  CHECK(m.at("dx_task_duration_seconds_count{kind=\"net_test::square\"}") == 60);
  CHECK(m.at("dx_task_duration_seconds_bucket{kind=\"net_test::square\",le=\"+Inf\"}") == 60);
  CHECK(m.at("dx_workers{state=\"active\"}") == 3);
  CHECK(m.at("dx_worker_threads{worker=\"" + w1 + "\"}") == 1);
  CHECK(m.at("dx_tasks_pending{kind=\"net_test::square\"}") == 0);
  CHECK(m.at("dx_link_bytes_total{from=\"head\",to=\"" + w1 + "\"}") > 0);
  CHECK(m.at("dx_link_bytes_total{from=\"" + w2 + "\",to=\"head\"}") > 0);
  CHECK(eventually([&] {
    return parse_metrics(http_test::get(ep, "/metrics").body).at("dx_worker_memory_bytes{worker=\"" + w1 + "\"}") > 1e6;
  }));

  const auto state = http_test::get(ep, "/api/state");
  REQUIRE(state.status == 200);
  CHECK_THAT(state.head, Catch::Contains("application/json"));
  const json s = json::parse(state.body);
  CHECK(s["tasks"]["submitted"] == 65);
  CHECK(s["tasks"]["completed"] == 60);
  CHECK(s["tasks"]["failed"] == 5);
  CHECK(s["tasks"]["pending"] == 0);
  std::set<std::string> ids;
  std::uint64_t done_on_workers = 0;
  for (const auto& w : s["workers"]) {
    ids.insert(w["id"].get<std::string>());
    done_on_workers += w["completed"].get<std::uint64_t>();
    CHECK(w["state"] == "active");
  }
  CHECK(ids == std::set<std::string>{"head", w1, w2});
  CHECK(done_on_workers == 60);
  bool square_seen = false;
  for (const auto& k : s["kinds"])
    if (k["kind"] == "net_test::square") {
      square_seen = true;
      CHECK(k["completed"] == 60);
      CHECK(k["submitted"] == 60);
      CHECK(k["mean_seconds"].get<double>() >= 0);
    }
  CHECK(square_seen);
  CHECK(s["events"]["next"] == 65);

  const json all = json::parse(http_test::get(ep, "/api/tasks?limit=1000").body);
  REQUIRE(all["events"].size() == 65);
  CHECK(all["next"] == 65);
  CHECK(all["more"] == false);
  std::map<std::string, int> by_status;
  std::set<std::uint64_t> tasks;
  for (const auto& e : all["events"]) {
    ++by_status[e["status"].get<std::string>()];
    tasks.insert(e["task"].get<std::uint64_t>());
    CHECK(e["end"].get<double>() >= e["start"].get<double>());
    CHECK(e["attempt"] == 1);
  }
  CHECK(by_status == std::map<std::string, int>{{"done", 60}, {"failed", 5}});
  CHECK(tasks.size() == 65);
  const json page = json::parse(http_test::get(ep, "/api/tasks?since=10&limit=5").body);
  REQUIRE(page["events"].size() == 5);
  CHECK(page["events"][0]["seq"] == 10);
  CHECK(page["next"] == 15);
  CHECK(page["more"] == true);
  CHECK(json::parse(http_test::get(ep, "/api/tasks?since=65").body)["events"].empty());
  // Without since: the latest events.
  const json latest = json::parse(http_test::get(ep, "/api/tasks?limit=3").body);
  REQUIRE(latest["events"].size() == 3);
  CHECK(latest["events"][2]["seq"] == 64);

  const auto page_html = http_test::get(ep, "/");
  REQUIRE(page_html.status == 200);
  CHECK_THAT(page_html.head, Catch::Contains("text/html"));
  CHECK_THAT(page_html.body, Catch::Contains("<canvas"));
  CHECK_THAT(page_html.body, Catch::Contains("api/state"));
  // Self-contained: nothing is loaded from elsewhere.
  CHECK_FALSE(std::regex_search(page_html.body, std::regex(R"((src|href)\s*=\s*["']?(https?:)?//)")));

  const auto trace = http_test::get(ep, "/api/trace");
  REQUIRE(trace.status == 200);
  CHECK(json::parse(trace.body)["traceEvents"].size() > 65);

  CHECK(http_test::get(ep, "/nothing-here").status == 404);
  const auto head = http_test::send_raw(ep, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                        std::chrono::seconds(5));
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK_THAT(head.head, Catch::Contains("Content-Length: "));
}

TEST_CASE("malformed HTTP requests get a 4xx answer and the endpoint keeps serving", "[net][observe]") {
  dx::cluster cl{observed(0)};
  const std::string ep = cl.http_endpoint();
  using http_test::send_raw;
  CHECK(send_raw(ep, "this is not http\r\n\r\n").status == 400);
  CHECK(send_raw(ep, std::string(2000, '\x01') + "\r\n\r\n").status == 400);
  CHECK(send_raw(ep, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(10000, 'a') + "\r\n\r\n").status ==
        431);
  CHECK(send_raw(ep, "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n").status == 431);
  const auto post = send_raw(ep, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  CHECK(post.status == 405);
  CHECK_THAT(post.head, Catch::Contains("Allow: GET, HEAD"));
  const auto del = send_raw(ep, "DELETE /api/state HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(del.status == 405);
  CHECK_THAT(del.head, Catch::Contains("Allow: GET, HEAD, POST"));
  CHECK(send_raw(ep, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x'))
            .status == 413);
  CHECK(send_raw(ep, "GET http://example.com/metrics HTTP/1.1\r\nHost: x\r\n\r\n").status == 400);
  CHECK(send_raw(ep, "GET /api/tasks?since=%zz HTTP/1.1\r\nHost: x\r\n\r\n").status == 400);
  CHECK(send_raw(ep, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n").status == 400);
  CHECK(send_raw(ep, "GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n").status == 400);
  for (const char* q : {"since=-1", "since=abc", "since=", "limit=x", "since=1e3", "since=99999999999999999999999"}) {
    const auto r = http_test::get(ep, std::string("/api/tasks?") + q);
    INFO(q);
    CHECK(r.status == 400);
    CHECK_THAT(r.body, Catch::Contains("error"));
  }
  // A request cut off in the middle, and a connection that says nothing: closed, nothing else.
  {
    const int fd = http_test::connect_to(ep);
    http_test::send_all(fd, "GET /metr");
    ::shutdown(fd, SHUT_WR);
    CHECK(http_test::parse(http_test::read_all(fd, 5s)).status == 0);
    ::close(fd);
  }
  // More connections than it serves at once: the extra ones are told so, the others still work.
  std::vector<int> idle;
  for (int i = 0; i < 70; ++i) idle.push_back(http_test::connect_to(ep));
  const auto busy = http_test::get(ep, "/metrics");
  CHECK(busy.status == 503);
  for (int fd : idle) ::close(fd);
  CHECK(eventually([&] { return http_test::get(ep, "/metrics").status == 200; }));
  // Keep-alive: two requests on one connection.
  const auto two = http_test::send_raw(ep,
                                       "GET /api/state HTTP/1.1\r\nHost: x\r\n\r\n"
                                       "GET /api/tasks?since=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(two.status == 200);
  CHECK_THAT(two.body, Catch::Contains("HTTP/1.1 200"));
  const auto m = parse_metrics(http_test::get(ep, "/metrics").body);
  CHECK(m.at("dx_http_requests_total{path=\"(malformed)\",code=\"400\"}") >= 5);
  CHECK(m.at("dx_http_requests_total{path=\"(method)\",code=\"405\"}") == 1);  // DELETE
  CHECK(m.at("dx_http_requests_total{path=\"/metrics\",code=\"405\"}") == 1);  // POST of a page
  CHECK(m.at("dx_http_requests_total{path=\"/api/tasks\",code=\"400\"}") == 6);
}

TEST_CASE("a busy HTTP port fails the cluster's construction, naming the address", "[net][observe]") {
  dx::cluster first{observed(0)};
  const std::string taken = first.http_endpoint();
  try {
    dx::cluster second{dx::options{}.threads(1).http(taken).persist_cost_model(false)};
    FAIL("a second cluster listened on the same port");
  } catch (const dx::error& e) {
    CHECK_THAT(e.what(), Catch::Contains(taken));
  }
  CHECK_THROWS_WITH(dx::cluster(dx::options{}.threads(1).http("nonsense").persist_cost_model(false)),
                    Catch::Contains("nonsense"));
  CHECK(http_test::get(taken, "/api/state").status == 200);
}

TEST_CASE("application metrics appear next to dx's and alert rules watch them", "[net][observe]") {
  dx::cluster cl{dx::options{}.threads(2).listen("127.0.0.1:0").heartbeat(50ms, 5s).persist_cost_model(false)};
  dx::gauge depth = cl.metrics().add_gauge("app_queue_depth", "Items waiting", {{"queue", "ingest"}});
  dx::counter rows = cl.metrics().add_counter("app_rows_total", "Rows read");
  std::mutex mu;
  std::vector<dx::alert> seen;
  cl.on_alert([&](const dx::alert& a) {
    std::lock_guard lock(mu);
    seen.push_back(a);
  });
  auto rule_alerts = [&] {
    std::lock_guard lock(mu);
    std::vector<dx::alert> out;
    for (auto& a : seen)
      if (a.kind == dx::alert_kind::rule) out.push_back(a);
    return out;
  };
  cl.add_alert_rule(
      dx::alert_rule("ingest backed up").on("app_queue_depth", {{"queue", "ingest"}}).above(10).for_at_least(300ms));
  cl.add_alert_rule(dx::alert_rule("rows stalled").on("app_rows_total").rate_per_second().below(1).for_at_least(200ms));
  CHECK_THROWS_WITH(cl.add_alert_rule(dx::alert_rule("ingest backed up").on("app_queue_depth")),
                    Catch::Contains("already"));
  CHECK_THROWS(cl.add_alert_rule(dx::alert_rule("").on("app_queue_depth")));
  CHECK_THROWS(cl.add_alert_rule(dx::alert_rule("no metric")));

  // The counter never moves: "rows stalled" fires once, and stays fired (no repeat) while stalled.
  REQUIRE(eventually([&] { return !rule_alerts().empty(); }));
  std::this_thread::sleep_for(300ms);
  REQUIRE(rule_alerts().size() == 1);
  CHECK(rule_alerts()[0].subject == "rows stalled");

  depth.set(50);
  const auto set_at = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return rule_alerts().size() == 2; }));
  CHECK(std::chrono::steady_clock::now() - set_at >= 300ms);  // not before the duration held
  const dx::alert a = rule_alerts()[1];
  CHECK(a.subject == "ingest backed up");
  CHECK(a.value == 50);
  CHECK(a.threshold == 10);
  CHECK_THAT(a.message, Catch::Contains("app_queue_depth{queue=\"ingest\"}"));
  CHECK(cl.metrics().value("dx_alert_active", {{"rule", "ingest backed up"}}) == 1.0);
  CHECK(cl.metrics().value("dx_alerts_total", {{"kind", "rule"}}) == 2.0);
  CHECK(cl.metrics().value("app_queue_depth", {{"queue", "ingest"}}) == 50.0);
  bool in_recent = false;
  for (const auto& r : cl.recent_alerts()) in_recent = in_recent || r.subject == "ingest backed up";
  CHECK(in_recent);

  // Cleared, then again: a second alert.
  depth.set(0);
  REQUIRE(eventually([&] { return cl.metrics().value("dx_alert_active", {{"rule", "ingest backed up"}}) == 0.0; }));
  depth.set(99);
  REQUIRE(eventually([&] { return rule_alerts().size() == 3; }));
  // Rows flowing clear the stall rule.
  for (int i = 0; i < 40; ++i) {
    rows.inc(100);
    std::this_thread::sleep_for(10ms);
  }
  CHECK(cl.metrics().value("dx_alert_active", {{"rule", "rows stalled"}}) == 0.0);
}

TEST_CASE("a rule over a runtime metric sees every worker's series", "[net][observe]") {
  dx::cluster cl{dx::options{}
                     .threads(1)
                     .local_processes(2)
                     .transport(dx::transport_kind::in_process)
                     .head_runs_tasks(false)
                     .heartbeat(50ms, 5s)
                     .persist_cost_model(false)};
  std::atomic<int> fired{0};
  std::mutex mu;
  std::set<std::string> messages;
  cl.on_alert([&](const dx::alert& a) {
    if (a.kind != dx::alert_kind::rule) return;
    std::lock_guard lock(mu);
    messages.insert(a.message);
    ++fired;
  });
  cl.add_alert_rule(dx::alert_rule("busy worker").on("dx_worker_busy_threads").above(0).for_at_least(100ms));
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 8; ++i) fs.push_back(cl.submit(net_test::sleep_ms_then, 300, i));
  REQUIRE(eventually([&] { return fired.load() >= 2; }));
  for (auto& f : fs) f.get();
  std::lock_guard lock(mu);
  bool first = false, second = false;
  for (const auto& m : messages) {
    first = first || m.find("worker=\"" + w1 + "\"") != std::string::npos;
    second = second || m.find("worker=\"" + w2 + "\"") != std::string::npos;
  }
  CHECK(first);
  CHECK(second);
}

TEST_CASE("write_trace records every attempt once, lost ones included, and result transfers", "[net][observe]") {
  dx::cluster cl{dx::options{}
                     .threads(1)
                     .local_processes(2)
                     .transport(dx::transport_kind::in_process)
                     .head_runs_tasks(false)
                     .persist_cost_model(false)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 30; ++i) fs.push_back(cl.submit(net_test::sleep_ms_then, 20, i));
  REQUIRE(fs[3].wait_for(30s) == dx::future_status::ready);
  dx::detail::cluster_access::head(cl)->kill_local_worker(0);
  for (auto& f : fs) REQUIRE(f.wait_for(60s) == dx::future_status::ready);
  // A result larger than the inline limit is fetched by the head: a transfer.
  auto big = cl.submit(net_test::big_string, 200000);
  CHECK(big.get().size() == 200000);

  const auto path = std::filesystem::temp_directory_path() / ("dx-trace-" + std::to_string(::getpid()) + ".json");
  cl.write_trace(path.string());
  std::ifstream in(path);
  const json trace = json::parse(in);
  std::filesystem::remove(path);

  std::set<std::pair<std::uint64_t, int>> attempts;
  std::map<std::uint64_t, int> done;
  std::map<std::uint64_t, int> done_attempt;
  std::vector<std::pair<std::uint64_t, int>> lost;
  std::set<std::string> process_names;
  int transfers = 0;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "process_name") process_names.insert(e["args"]["name"].get<std::string>());
    if (e["ph"] != "X") continue;
    CHECK(e["dur"].get<double>() >= 0);
    CHECK(e["ts"].get<double>() > 1.6e15);  // microseconds since 1970
    if (e["cat"] == "transfer") {
      ++transfers;
      CHECK(e["args"]["bytes"].get<std::uint64_t>() >= 200000);
      continue;
    }
    const auto task = e["args"]["task"].get<std::uint64_t>();
    const int attempt = e["args"]["attempt"].get<int>();
    INFO("task " << task << " attempt " << attempt);
    CHECK(attempts.insert({task, attempt}).second);  // once per attempt
    if (e["args"]["status"] == "done") {
      ++done[task];
      done_attempt[task] = attempt;
      CHECK(e["name"] == (task == 31 ? "net_test::big_string" : "net_test::sleep_ms_then"));
    }
    if (e["args"]["status"] == "lost") lost.emplace_back(task, attempt);
  }
  CHECK(done.size() == 31);
  for (const auto& [task, n] : done) CHECK(n == 1);
  CHECK_FALSE(lost.empty());  // the killed worker had tasks
  for (const auto& [task, attempt] : lost) CHECK(attempt < done_attempt[task]);
  CHECK(transfers >= 1);
  CHECK(process_names.count(w1) + process_names.count(w2) == 2);

  CHECK_THROWS_WITH(cl.write_trace("/nonexistent-dir/x/run.json"), Catch::Contains("/nonexistent-dir/x/run.json"));
}

TEST_CASE("tasks handed back unstarted by a leaving worker run as their first attempt", "[net][observe]") {
  dx::cluster cl{dx::options{}
                     .threads(2)
                     .transport(dx::transport_kind::in_process)
                     .local_processes(2)
                     .head_runs_tasks(false)
                     .persist_cost_model(false)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 1000; ++i) fs.push_back(cl.submit(net_test::sleep_ms_then, i % 2, i));
  REQUIRE(fs[200].wait_for(30s) == dx::future_status::ready);
  dx::detail::cluster_access::head(cl)->leave_local_worker(0);
  for (auto& f : fs) REQUIRE(f.wait_for(60s) == dx::future_status::ready);

  const auto path = std::filesystem::temp_directory_path() / ("dx-leave-" + std::to_string(::getpid()) + ".json");
  cl.write_trace(path.string());
  std::ifstream in(path);
  const json trace = json::parse(in);
  std::filesystem::remove(path);
  std::map<std::uint64_t, int> done;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] != "X" || e["cat"] == "transfer") continue;
    const auto task = e["args"]["task"].get<std::uint64_t>();
    INFO("task " << task << " " << e["args"]["status"] << " on " << e["args"]["worker"]);
    CHECK(e["args"]["status"] == "done");
    CHECK(e["args"]["attempt"] == 1);  // nothing was lost or failed: every task ran once
    ++done[task];
  }
  CHECK(done.size() == 1000);
}

TEST_CASE("a task submitted with a kind is learned, counted and listed under it", "[net][observe]") {
  dx::cluster cl{observed(1)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 10; ++i)
    fs.push_back(cl.submit(dx::task_options{}.with_kind("app.small_square"), net_test::square, i));
  for (int i = 0; i < 5; ++i) fs.push_back(cl.submit(net_test::square, i));
  for (std::size_t i = 0; i < fs.size(); ++i) {
    const int x = static_cast<int>(i < 10 ? i : i - 10);
    CHECK(fs[i].get() == x * x);
  }
  const auto m = parse_metrics(http_test::get(cl.http_endpoint(), "/metrics").body);
  CHECK(sum_matching(m, "dx_tasks_completed_total{", "kind=\"app.small_square\"") == 10);
  CHECK(sum_matching(m, "dx_tasks_completed_total{", "kind=\"net_test::square\"") == 5);
  CHECK(m.at("dx_tasks_submitted_total{kind=\"app.small_square\"}") == 10);
  const dx::cost_model model = cl.cost_model_snapshot();
  CHECK(model.predict_kind("app.small_square", {}).samples > 0);
  CHECK(model.predict_kind("net_test::square", {}).samples > 0);
  const json all = json::parse(http_test::get(cl.http_endpoint(), "/api/tasks?limit=100").body);
  std::map<std::string, int> by_kind;
  for (const auto& e : all["events"])
    if (e["status"] == "done") ++by_kind[e["kind"].get<std::string>()];
  CHECK(by_kind == std::map<std::string, int>{{"app.small_square", 10}, {"net_test::square", 5}});
}

TEST_CASE("with metrics off the head keeps no counts or history", "[net][observe]") {
  dx::cluster cl{observed(1).metrics(false)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(cl.submit(net_test::square, i));
  for (auto& f : fs) f.get();
  const json s = json::parse(http_test::get(cl.http_endpoint(), "/api/state").body);
  CHECK(s["tasks"]["completed"] == 0);
  CHECK(json::parse(http_test::get(cl.http_endpoint(), "/api/tasks").body)["events"].empty());
  CHECK(http_test::get(cl.http_endpoint(), "/metrics").status == 200);
}

TEST_CASE("the state lists the tasks running now, with their worker thread and start", "[net][observe]") {
  dx::cluster cl{observed(2).heartbeat(50ms, 5s).head_runs_tasks(false)};
  const auto before = std::chrono::system_clock::now();
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 2; ++i) fs.push_back(cl.submit(net_test::sleep_ms_then, 1500, i));
  json running;
  REQUIRE(eventually([&] {
    running = json::parse(http_test::get(cl.http_endpoint(), "/api/state").body)["running"];
    return !running.empty();
  }));
  std::set<std::string> workers;
  for (const auto& r : running) {
    workers.insert(r["worker"].get<std::string>());
    CHECK(r["kind"] == "net_test::sleep_ms_then");
    CHECK(r["thread"] == 0);
    CHECK(r["attempt"] == 1);
    CHECK(r["start"].get<double>() >= std::chrono::duration<double>(before.time_since_epoch()).count() - 1);
  }
  for (const auto& w : workers) CHECK((w == w1 || w == w2));
  CHECK(cl.metrics().value("dx_tasks_running", {{"kind", "net_test::sleep_ms_then"}}).value_or(0) >= 1);
  for (auto& f : fs) f.get();
  CHECK(cl.metrics().value("dx_tasks_running", {{"kind", "net_test::sleep_ms_then"}}) == 0.0);
  CHECK(json::parse(http_test::get(cl.http_endpoint(), "/api/state").body)["running"].empty());
}

TEST_CASE("random and mutated HTTP requests never stop the endpoint", "[net][observe]") {
  dx::cluster cl{observed(0)};
  const std::string ep = cl.http_endpoint();
  const std::vector<std::string> seeds = {
      "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "GET /api/tasks?since=3&limit=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "HEAD /api/state HTTP/1.0\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  };
  std::mt19937 rng(12345);
  int answered = 0, closed = 0;
  for (int i = 0; i < 300; ++i) {
    std::string req = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < edits && !req.empty(); ++k) {
      const std::size_t at = rng() % req.size();
      switch (rng() % 4) {
        case 0:
          req[at] = static_cast<char>(rng() % 256);
          break;
        case 1:
          req.erase(at, 1 + rng() % 4);
          break;
        case 2:
          req.insert(at, std::string(1 + rng() % 3, static_cast<char>(rng() % 256)));
          break;
        default:
          req.insert(at, req.substr(0, std::min<std::size_t>(req.size(), rng() % 64)));
      }
    }
    // Half-closing the write side makes an incomplete request end instead of waiting for more.
    const int fd = http_test::connect_to(ep);
    http_test::send_all(fd, req);
    ::shutdown(fd, SHUT_WR);
    const auto r = http_test::parse(http_test::read_all(fd, 5s));
    ::close(fd);
    if (r.status == 0) {
      ++closed;
    } else {
      ++answered;
      CHECK(((r.status >= 200 && r.status < 300) || (r.status >= 400 && r.status < 500)));
    }
  }
  CHECK(answered > 0);
  CHECK(answered + closed == 300);
  CHECK(http_test::get(ep, "/metrics").status == 200);
}
