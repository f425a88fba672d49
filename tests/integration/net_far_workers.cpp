// Workers far away: worker processes that join the head (and serve their results) through the link
// emulator (tools/link_emulator), which delays each direction of a loopback connection as a WAN
// link would. The head measures each link's round trip, sends a far worker enough work to cover
// it, takes work back for idle near workers, gathers inputs from a far worker in one round trip,
// and tells a slow link from a dead one. Every wait is bounded.
#include "net_functions.hpp"
#include "raw_client.hpp"
#include "spawn_self.hpp"
#include "temp_dir.hpp"

#include "link_emulator.hpp"
#include "wire/messages.hpp"

#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using dx_support::reap_child;
using dx_support::spawn_self;

namespace {

dx::link::profile delay_of(std::chrono::microseconds one_way) {
  dx::link::profile p;
  p.delay = one_way;
  return p;
}

/// A head without task threads of its own, and worker processes each joining directly or through
/// a link of its own.
struct far_cluster {
  std::unique_ptr<dx::cluster> owner;
  dx::cluster& cl;
  std::vector<std::unique_ptr<dx::link::emulator>> links;
  std::vector<pid_t> pids;

  explicit far_cluster(dx::options opts)
      : owner(
            std::make_unique<dx::cluster>(opts.listen("127.0.0.1:0").head_runs_tasks(false).persist_cost_model(false))),
        cl(*owner) {}
  ~far_cluster() {
    for (auto& l : links) l->cut();  // a stalled link would hold the workers' goodbye
    owner.reset();
    for (pid_t p : pids) reap_child(p, 5s);
  }

  /// Starts a worker named `name` whose link to the head delays each direction by `one_way`
  /// (0: direct); returns its link (nullptr when direct).
  dx::link::emulator* join(const std::string& name, std::chrono::microseconds one_way,
                           std::vector<std::string> flags = {}) {
    std::string head = cl.endpoint();
    dx::link::emulator* link = nullptr;
    if (one_way.count() > 0) {
      links.push_back(std::make_unique<dx::link::emulator>(head, delay_of(one_way), delay_of(one_way)));
      link = links.back().get();
      head = link->address();
    }
    std::vector<std::string> args{"--dx-worker", "--connect", head, "--name", name, "--reconnect-for", "0"};
    args.insert(args.end(), flags.begin(), flags.end());
    pids.push_back(spawn_self(args));
    return link;
  }

  std::optional<dx::worker_info> worker(const std::string& name) const {
    for (const auto& w : cl.workers())
      if (w.id == name) return w;
    return std::nullopt;
  }

  /// Waits until `name`'s smoothed round trip satisfies `ok`, up to `limit`.
  bool round_trip_becomes(const std::string& name, const std::function<bool(double)>& ok,
                          std::chrono::milliseconds limit) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto w = worker(name); w && ok(w->round_trip_seconds)) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
};

/// A free loopback port (bound, read and released: the worker binds it right after).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// Each line of a logged_sleep file: task id -> the pids that ran it.
std::map<int, std::vector<int>> runs_in(const std::filesystem::path& file) {
  std::map<int, std::vector<int>> runs;
  std::ifstream in(file);
  int id = 0, pid = 0;
  while (in >> id >> pid) runs[id].push_back(pid);
  return runs;
}

}  // namespace

TEST_CASE("far workers: each worker's round trip is measured, shown and followed when the link gets faster",
          "[net][far]") {
  far_cluster fc(dx::options{}.heartbeat(50ms, 5s));
  fc.join("near", 0us);
  dx::link::emulator* link = fc.join("far", 150ms);
  fc.cl.wait_for_workers(2, 20s);
  // The handshake gives a first measure; pings refine it.
  CHECK(fc.round_trip_becomes(
      "far", [](double rtt) { return rtt > 0.28 && rtt < 0.6; }, 5s));
  CHECK(fc.round_trip_becomes(
      "near", [](double rtt) { return rtt > 0 && rtt < 0.05; }, 5s));
  const auto far_rtt = fc.cl.metrics().value("dx_worker_rtt_seconds", {{"worker", "far"}});
  REQUIRE(far_rtt);
  CHECK(*far_rtt > 0.28);
  // The link gets faster: the measure follows within a few pings.
  link->set_profiles(delay_of(5ms), delay_of(5ms));
  CHECK(fc.round_trip_becomes(
      "far", [](double rtt) { return rtt < 0.06; }, 10s));
  CHECK(fc.worker("near")->round_trip_seconds < 0.05);
}

TEST_CASE("far workers: a far worker gets a window of work and every task runs once", "[net][far]") {
  dx_support::temp_dir dir;
  const auto log = (dir.path() / "runs.txt").string();
  far_cluster fc(dx::options{}.heartbeat(100ms, 5s));
  fc.join("near", 0us);
  fc.join("far", 100ms);  // a 200 ms round trip
  fc.cl.wait_for_workers(2, 20s);
  REQUIRE(fc.round_trip_becomes(
      "far", [](double rtt) { return rtt > 0.15; }, 5s));
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 200; ++i) fs.push_back(fc.cl.submit(net_test::logged_sleep, log, i, 10));
  std::map<int, int> by_pid;
  for (auto& f : fs) {
    REQUIRE(f.wait_for(60s) == dx::future_status::ready);
    ++by_pid[f.get()];
  }
  const auto runs = runs_in(log);
  CHECK(runs.size() == 200);
  for (const auto& [id, pids] : runs) CHECK(pids.size() == 1);
  // One task per round trip would give the far worker about 5 of the 200 (the run takes about a
  // second); its window gives it close to half, less what the model's first probes of a new
  // kind cost.
  const int far_pid = static_cast<int>(fc.worker("far")->pid);
  INFO("tasks run on the far worker: " << by_pid[far_pid] << " of 200");
  CHECK(by_pid[far_pid] >= 30);
}

TEST_CASE("far workers: work sent ahead to a far worker is taken back when a near worker idles, each task runs once",
          "[net][far]") {
  dx_support::temp_dir dir;
  const auto log = (dir.path() / "runs.txt").string();
  far_cluster fc(dx::options{}.heartbeat(100ms, 5s));
  fc.join("far", 150ms);  // a 300 ms round trip
  fc.cl.wait_for_workers(1, 20s);
  REQUIRE(fc.round_trip_becomes(
      "far", [](double rtt) { return rtt > 0.25; }, 5s));
  // Teach the model the task's length first, so the window is sized in seconds of work.
  std::vector<dx::future<int>> warm;
  for (int i = 0; i < 4; ++i) warm.push_back(fc.cl.submit(net_test::logged_sleep, log, 1000 + i, 40));
  for (auto& f : warm) REQUIRE(f.wait_for(30s) == dx::future_status::ready);
  // The far worker is sent a round trip's worth of 40 ms tasks, the first of which runs far
  // longer than predicted: the others wait behind it there, long enough for a near worker to start
  // even in a sanitizer build on a busy machine.
  std::vector<dx::future<int>> fs;
  fs.push_back(fc.cl.submit(net_test::logged_sleep, log, 0, 4000));
  for (int i = 1; i < 12; ++i) fs.push_back(fc.cl.submit(net_test::logged_sleep, log, i, 40));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline && fc.worker("far")->tasks_assigned < 4)
    std::this_thread::sleep_for(10ms);
  REQUIRE(fc.worker("far")->tasks_assigned >= 4);
  // A near worker joins: it takes what is held, then asks for what was sent ahead and not started.
  fc.join("near", 0us);
  fc.cl.wait_for_workers(2, 20s);
  std::map<int, int> by_pid;
  for (auto& f : fs) {
    REQUIRE(f.wait_for(60s) == dx::future_status::ready);
    ++by_pid[f.get()];
  }
  const auto runs = runs_in(log);
  for (int i = 0; i < 12; ++i) {
    INFO("task " << i);
    REQUIRE(runs.count(i));
    CHECK(runs.at(i).size() == 1);
  }
  const int near_pid = static_cast<int>(fc.worker("near")->pid);
  CHECK(by_pid[near_pid] >= 6);
  double moved = 0;
  std::istringstream text(fc.cl.metrics().render());
  for (std::string line; std::getline(text, line);)
    if (line.starts_with("dx_tasks_moved_total{")) moved += std::stod(line.substr(line.rfind(' ') + 1));
  CHECK(moved >= 1);
}

TEST_CASE("far workers: a task with 8 inputs held by a far worker gathers them in about one round trip", "[net][far]") {
  far_cluster fc(dx::options{}.heartbeat(100ms, 5s));
  // The producer's results are served through a link of 150 ms each way: it binds a port of its
  // own and tells its peers the link's address instead.
  const int data_port = free_port();
  dx::link::emulator data_link("127.0.0.1:" + std::to_string(data_port), delay_of(150ms), delay_of(150ms));
  fc.join("producer", 0us,
          {"--resources", "left=1", "--listen", "127.0.0.1:" + std::to_string(data_port), "--advertise",
           data_link.address()});
  fc.join("consumer", 0us, {"--resources", "right=1"});
  fc.cl.wait_for_workers(2, 20s);
  // Results over the inline limit stay where they were made.
  std::vector<dx::future<std::string>> parts;
  for (int i = 0; i < 8; ++i) parts.push_back(fc.cl.submit(dx::resources{{"left", 1}}, net_test::big_string, 100'000));
  const auto t0 = std::chrono::steady_clock::now();
  auto total = fc.cl.submit(dx::resources{{"right", 1}}, net_test::total_length8, std::move(parts[0]),
                            std::move(parts[1]), std::move(parts[2]), std::move(parts[3]), std::move(parts[4]),
                            std::move(parts[5]), std::move(parts[6]), std::move(parts[7]));
  REQUIRE(total.wait_for(30s) == dx::future_status::ready);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(total.get() == 800'000u);
  // One by one the fetches would take 8 round trips (2.4 s); together: the peer handshake's half
  // round trip, then one round trip for all eight.
  INFO("gathered in " << seconds << " s");
  CHECK(seconds > 0.3);  // the link was in the way
  CHECK(seconds < 1.5);
}

TEST_CASE(
    "far workers: a 300 ms link keeps its worker, a link stalled past the deadline loses it and its tasks "
    "run elsewhere",
    "[net][far]") {
  dx_support::temp_dir dir;
  const auto log = (dir.path() / "runs.txt").string();
  // A silence deadline of 250 ms, shorter than the far link's round trip: without room for the
  // link the far worker would be dropped at once.
  far_cluster fc(dx::options{}.heartbeat(50ms, 250ms));
  dx::link::emulator* link = fc.join("far", 150ms);
  fc.join("near", 0us, {"--slowdown", "2"});
  fc.cl.wait_for_workers(2, 20s);
  std::vector<dx::future<int>> first;
  for (int i = 0; i < 40; ++i) first.push_back(fc.cl.submit(net_test::logged_sleep, log, i, 20));
  for (auto& f : first) REQUIRE(f.wait_for(60s) == dx::future_status::ready);
  std::this_thread::sleep_for(1s);
  REQUIRE(fc.worker("far"));
  CHECK(fc.worker("far")->state == dx::worker_state::active);
  // The link stalls with tasks on the far worker: the head gives up on it after its deadline and
  // runs them on the near one.
  std::vector<dx::future<int>> second;
  for (int i = 100; i < 140; ++i) second.push_back(fc.cl.submit(net_test::logged_sleep, log, i, 50));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline && fc.worker("far")->tasks_assigned == 0)
    std::this_thread::sleep_for(5ms);
  REQUIRE(fc.worker("far")->tasks_assigned > 0);
  link->stall(true);
  for (auto& f : second) REQUIRE(f.wait_for(60s) == dx::future_status::ready);
  CHECK(fc.worker("far")->state == dx::worker_state::gone);
  const auto runs = runs_in(log);
  for (int i = 100; i < 140; ++i) CHECK(runs.count(i));
}

TEST_CASE("far workers: a worker that echoes pings it was never sent changes no other worker's round trip",
          "[net][far]") {
  far_cluster fc(dx::options{}.heartbeat(50ms, 5s));
  fc.join("honest", 50ms);
  fc.cl.wait_for_workers(1, 20s);
  REQUIRE(fc.round_trip_becomes(
      "honest", [](double rtt) { return rtt > 0.08; }, 5s));
  // A raw worker that answers every ping with made-up numbers, at once and repeatedly.
  dx_support::raw_client liar(fc.cl.endpoint());
  auto challenge = liar.read_frame();
  REQUIRE(challenge);
  dx::wire::hello_msg hello;
  hello.role = dx::wire::peer_role::worker;
  hello.name = "liar";
  hello.threads = 1;
  hello.data_address = "127.0.0.1:1";
  hello.pid = 1;
  REQUIRE(liar.send(dx_support::bytes_of(hello)));
  const auto until = std::chrono::steady_clock::now() + 1500ms;
  std::uint64_t echo = 1;
  while (std::chrono::steady_clock::now() < until) {
    auto f = liar.read_frame(200ms);
    dx::wire::heartbeat_msg hb;
    hb.echo = echo++ * 7919;  // numbers the head never sent to it
    REQUIRE(liar.send(dx_support::bytes_of(hb)));
    if (f && f->type == static_cast<std::uint16_t>(dx::wire::msg::heartbeat)) {
      const auto ping = dx::wire::decode<dx::wire::heartbeat_msg>(*f);
      hb.echo = ping.ping + 1000;  // the next pings, before they are sent
      REQUIRE(liar.send(dx_support::bytes_of(hb)));
    }
  }
  // Its own round trip is the handshake's (a loopback one); the honest worker's is untouched.
  const auto liar_info = fc.worker("liar");
  REQUIRE(liar_info);
  CHECK(liar_info->round_trip_seconds < 0.05);
  const double honest = fc.worker("honest")->round_trip_seconds;
  CHECK(honest > 0.08);
  CHECK(honest < 0.3);
}

TEST_CASE("far workers: the head learns the bandwidth of a worker's link from the arguments it sends", "[net][far]") {
  far_cluster fc(dx::options{}.heartbeat(50ms, 5s));
  // 4 MiB/s towards the worker, a 20 ms round trip.
  dx::link::profile slow = delay_of(10ms);
  slow.bytes_per_second = 4 << 20;
  std::string head = fc.cl.endpoint();
  fc.links.push_back(std::make_unique<dx::link::emulator>(head, delay_of(10ms), slow));
  fc.pids.push_back(
      spawn_self({"--dx-worker", "--connect", fc.links.back()->address(), "--name", "thin", "--reconnect-for", "0"}));
  fc.cl.wait_for_workers(1, 20s);
  // An argument of 4 MiB takes about a second on that link.
  auto f = fc.cl.submit(net_test::length_of, std::string(4 << 20, 'x'));
  REQUIRE(f.wait_for(30s) == dx::future_status::ready);
  CHECK(f.get() == std::size_t{4} << 20);
  // The worker's next heartbeat reports how long the frame took.
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  dx::prediction p;
  while (std::chrono::steady_clock::now() < deadline) {
    p = fc.cl.cost_model_snapshot().predict_transfer("head", "thin", 4 << 20);
    if (p.samples > 0) break;
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE(p.samples > 0);
  INFO("predicted for 4 MiB: " << p.mean << " s");
  CHECK(p.mean > 0.5);
  CHECK(p.mean < 3);
}
