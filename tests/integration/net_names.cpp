// Worker names: the name a worker joins under (dx-worker --name, or "<host>-<n>") is its id in
// workers(), errors, metrics, traces, forecasts and the cost model's speed factors; two live
// workers never share one; a worker that left may join again under its name. Every wait is bounded.
#include "net_functions.hpp"
#include "spawn_self.hpp"
#include "temp_dir.hpp"

#include "cluster/worker.hpp"

#include <catch2/catch.hpp>

#include "transports.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using dx_support::reap_child;
using dx_support::spawn_self;

namespace {

/// A head without task threads of its own that workers join by hand.
dx::options head_for(dx::transport_kind k) {
  return dx::options{}.threads(2).transport(k).listen("127.0.0.1:0").head_runs_tasks(false);
}

/// A worker in this process (threads speaking the protocol), named `name` (empty: by the head).
std::unique_ptr<dx::detail::worker_runtime> worker_named(dx::cluster& cl, dx::transport_kind k,
                                                         const std::string& name) {
  dx::detail::worker_config wc;
  wc.connect = cl.endpoint();
  wc.transport = k;
  wc.name = name;
  wc.connect_timeout = 10s;
  return std::make_unique<dx::detail::worker_runtime>(wc);
}

std::vector<std::string> ids_of(const dx::cluster& cl, bool live_only = true) {
  std::vector<std::string> ids;
  for (const auto& w : cl.workers())
    if (!live_only || w.state != dx::worker_state::gone) ids.push_back(w.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

/// Waits (bounded) until the worker named `id` is gone.
bool gone_within(const dx::cluster& cl, const std::string& id, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& w : cl.workers())
      if (w.id == id && w.state == dx::worker_state::gone) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

std::string host_n(int n) { return dx::detail::host_name() + "-" + std::to_string(n); }

}  // namespace

TEST_CASE("names: a worker's name is its id in workers(), errors, metrics, traces and the cost model", "[net][names]") {
  DX_TRANSPORTS();
  dx::cluster cl{head_for(kind)};
  auto alpha = worker_named(cl, kind, "alpha");
  alpha->start();
  CHECK(alpha->id() == "alpha");
  REQUIRE(ids_of(cl) == std::vector<std::string>{"alpha"});

  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(cl.submit(net_test::sleep_ms_then, 1, i));
  for (int i = 0; i < 50; ++i) REQUIRE(fs[static_cast<std::size_t>(i)].get() == i);
  auto bad = cl.submit(net_test::throw_out_of_range, 3);
  try {
    bad.get();
    FAIL("no exception");
  } catch (const dx::remote_error& e) {
    CHECK(e.worker() == "alpha");
  }
  const std::string metrics = cl.metrics().render();
  CHECK(metrics.find("dx_worker_threads{worker=\"alpha\"}") != std::string::npos);
  CHECK(metrics.find("worker=\"w1\"") == std::string::npos);
  const dx::forecast fc = cl.forecast();
  for (const auto& w : fc.workers) CHECK(w.id == "alpha");
  // The cost model learned the worker under its name.
  bool learned = false;
  for (const auto& r : cl.cost_model_snapshot().history()) learned = learned || r.worker == "alpha";
  CHECK(learned);
  dx_support::temp_dir dir("dx_names_trace");
  cl.write_trace((dir.path() / "trace.json").string());
  std::ifstream in(dir.path() / "trace.json");
  std::stringstream trace;
  trace << in.rdbuf();
  CHECK(trace.str().find("\"alpha\"") != std::string::npos);
}

TEST_CASE("names: a second live worker with a name is refused, the name is free again once its worker left",
          "[net][names]") {
  DX_TRANSPORTS();
  dx::cluster cl{head_for(kind)};
  auto first = worker_named(cl, kind, "alpha");
  first->start();

  auto second = worker_named(cl, kind, "alpha");
  try {
    second->start();
    FAIL("a second worker named alpha was accepted");
  } catch (const dx::protocol_error& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find("a worker named 'alpha' is already connected") != std::string::npos);
  }
  second.reset();
  // The first one is untouched and keeps working.
  REQUIRE(ids_of(cl, false) == std::vector<std::string>{"alpha"});
  REQUIRE(cl.submit(net_test::square, 9).get() == 81);

  SECTION("after a graceful leave") { first->leave(); }
  SECTION("after it was lost") { first->kill(); }
  REQUIRE(gone_within(cl, "alpha", 10s));
  first.reset();
  auto again = worker_named(cl, kind, "alpha");
  again->start();
  // One record for the name, active again, running tasks.
  const auto ws = cl.workers();
  REQUIRE(ws.size() == 1);
  CHECK(ws[0].id == "alpha");
  CHECK(ws[0].state == dx::worker_state::active);
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 20; ++i) fs.push_back(cl.submit(net_test::square, i));
  for (int i = 0; i < 20; ++i) CHECK(fs[static_cast<std::size_t>(i)].get() == i * i);
  // Its counters continue under the one name: a single series per worker in /metrics.
  const std::string metrics = cl.metrics().render();
  const auto first_at = metrics.find("dx_worker_state{worker=\"alpha\"");
  REQUIRE(first_at != std::string::npos);
  CHECK(metrics.find("dx_worker_state{worker=\"alpha\"", first_at + 1) == std::string::npos);
}

TEST_CASE("names: unnamed workers are named after their host with the lowest free index", "[net][names]") {
  DX_TRANSPORTS();
  dx::cluster cl{head_for(kind)};
  auto a = worker_named(cl, kind, "");
  a->start();
  auto b = worker_named(cl, kind, "");
  b->start();
  CHECK(a->id() == host_n(1));
  CHECK(b->id() == host_n(2));
  a->kill();
  REQUIRE(gone_within(cl, host_n(1), 10s));
  a.reset();
  auto c = worker_named(cl, kind, "");
  c->start();
  CHECK(c->id() == host_n(1));  // taken back: the lowest index no live worker holds
  CHECK(ids_of(cl) == std::vector<std::string>{host_n(1), host_n(2)});
}

TEST_CASE("names: the workers a head starts are named after its host in the order it starts them", "[net][names]") {
  DX_TRANSPORTS();
  dx::cluster cl{dx::options{}.threads(2).transport(kind).local_processes(2).head_runs_tasks(false)};
  CHECK(ids_of(cl) == std::vector<std::string>{host_n(1), host_n(2)});
  if (kind == dx::transport_kind::tcp) {
    // Its names are kept for them: an unnamed worker joining later takes the next index.
    auto extra = worker_named(cl, kind, "");
    extra->start();
    CHECK(extra->id() == host_n(3));
  }
}

namespace {

/// Starts this binary as `dx-worker` with `args`, its stderr to `err_file`; returns its exit code,
/// or -1 when it did not exit within `limit` (it is killed then).
int run_worker_process(const std::vector<std::string>& args, const std::string& err_file,
                       std::chrono::milliseconds limit) {
  std::vector<std::string> argv_s{"/proc/self/exe", "--dx-worker"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE(rc == 0);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

// Without --reconnect-for 0 it tries again until the name is free (net_reconnect.cpp).
TEST_CASE(
    "names: dx-worker --reconnect-for 0 with a name already live prints why and exits with 1, the head keeps "
    "serving",
    "[net][names]") {
  auto owner = std::make_unique<dx::cluster>(head_for(dx::transport_kind::tcp));
  dx::cluster& cl = *owner;
  const pid_t alpha = spawn_self({"--dx-worker", "--connect", cl.endpoint(), "--name", "alpha"});
  cl.wait_for_workers(1, 20s);
  dx_support::temp_dir dir("dx_names_dup");
  const std::string err = (dir.path() / "stderr.txt").string();
  CHECK(run_worker_process({"--connect", cl.endpoint(), "--name", "alpha", "--reconnect-for", "0"}, err, 20s) == 1);
  const std::string said = read_all(err);
  INFO(said);
  CHECK(said.find("dx-worker: the head at " + cl.endpoint() +
                  " rejected this worker: a worker named 'alpha' is "
                  "already connected") != std::string::npos);
  CHECK(ids_of(cl, false) == std::vector<std::string>{"alpha"});
  CHECK(cl.submit(net_test::pid_of_runner).get() == alpha);
  owner.reset();  // tells the worker to stop
  reap_child(alpha, 5s);
}

TEST_CASE("names: a worker keeps its learned speed across a restart in which the workers join in the other order",
          "[net][names]") {
  dx_support::temp_dir dir("dx_names_model");
  const std::string file = (dir.path() / "model.txt").string();
  const auto run = [&](const std::vector<std::string>& order, dx::cost_model& at_start, dx::cost_model& at_end) {
    dx::cluster cl{dx::options{}.listen("127.0.0.1:0").head_runs_tasks(false).cost_model_file(file)};
    std::vector<pid_t> pids;
    for (const std::string& name : order) {
      std::vector<std::string> args{"--dx-worker", "--connect", cl.endpoint(), "--threads", "1", "--name", name};
      if (name == "slow") args.insert(args.end(), {"--slowdown", "3"});
      pids.push_back(spawn_self(args));
      cl.wait_for_workers(pids.size(), 20s);  // one at a time: this order
    }
    for (const auto& w : cl.workers())
      for (std::size_t i = 0; i < order.size(); ++i)
        if (w.id == order[i]) CHECK(w.pid == pids[i]);
    REQUIRE(cl.workers().size() == 2);
    at_start = cl.cost_model_snapshot();
    std::vector<dx::future<net_test::run_span>> fs;
    for (int i = 0; i < 80; ++i) fs.push_back(cl.submit(net_test::timed_sleep, 4));
    for (auto& f : fs) REQUIRE(f.wait_for(60s) == dx::future_status::ready);
    at_end = cl.cost_model_snapshot();
    cl.wait_idle();
    return pids;
  };
  dx::cost_model start1, end1, start2, end2;
  std::vector<pid_t> pids = run({"fast", "slow"}, start1, end1);
  for (pid_t p : pids) reap_child(p, 5s);
  INFO("first run: fast " << end1.worker_factor("fast") << ", slow " << end1.worker_factor("slow"));
  REQUIRE(end1.worker_factor("slow") / end1.worker_factor("fast") > 2.0);

  pids = run({"slow", "fast"}, start2, end2);
  for (pid_t p : pids) reap_child(p, 5s);
  INFO("second run starts with: fast " << start2.worker_factor("fast") << ", slow " << start2.worker_factor("slow"));
  INFO("second run ends with: fast " << end2.worker_factor("fast") << ", slow " << end2.worker_factor("slow"));
  // Loaded under the names, whatever the order of joining: the fast worker starts with its own factor.
  CHECK(start2.worker_factor("fast") == Approx(end1.worker_factor("fast")).epsilon(0.05));
  CHECK(start2.worker_factor("slow") == Approx(end1.worker_factor("slow")).epsilon(0.05));
  CHECK(end2.worker_factor("slow") / end2.worker_factor("fast") > 2.0);
}
