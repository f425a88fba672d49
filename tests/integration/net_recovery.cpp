// Recovery of a distributed cluster: killed workers (in-process and real processes), workers
// joining and leaving mid-run, tasks that kill their workers, and workers outliving a dead head.
// Every wait is bounded.
#include "net_functions.hpp"
#include "spawn_self.hpp"

#include "cluster/cluster_access.hpp"
#include "cluster/worker.hpp"

#include <catch2/catch.hpp>

#include "processes.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

using namespace std::chrono_literals;
using dx_support::process_gone;
using dx_support::reap_child;
using dx_support::spawn_self;
using dx_support::wait_until;

namespace {

using clock_type = std::chrono::steady_clock;

template <class Fut>
void require_ready(Fut& f, std::chrono::milliseconds limit = 20s) {
  REQUIRE(f.wait_for(limit) == dx::future_status::ready);
}

void check_squares(std::vector<dx::future<int>>& fs) {
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < fs.size(); ++i) {
    require_ready(fs[i]);
    const int v = fs[i].get();
    if (v != static_cast<int>(i * i)) ++wrong;
  }
  REQUIRE(wrong == 0);
}

}  // namespace

TEST_CASE("recovery: an in-process worker killed mid-run loses no result", "[net][recovery]") {
  dx::cluster cl{
      dx::options{}.threads(2).transport(dx::transport_kind::in_process).local_processes(3).head_runs_tasks(false)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 10'000; ++i) fs.push_back(cl.submit(net_test::square, i));
  require_ready(fs[2000]);
  dx::detail::cluster_access::head(cl)->kill_local_worker(1);
  check_squares(fs);
  std::size_t gone = 0;
  for (const auto& w : cl.workers()) gone += w.state == dx::worker_state::gone;
  CHECK(cl.workers().size() - gone == 2);
  CHECK(cl.submit(net_test::square, 5).get() == 25);
}

TEST_CASE("recovery: a worker process killed with SIGKILL mid-run loses no result", "[net][recovery]") {
  dx::cluster cl{dx::options{}.threads(2).local_processes(3).head_runs_tasks(false).heartbeat(100ms, 1000ms)};
  auto ws = cl.workers();
  REQUIRE(ws.size() == 3);
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 10'000; ++i) fs.push_back(cl.submit(net_test::square, i));
  require_ready(fs[2000]);
  REQUIRE(::kill(static_cast<pid_t>(ws[1].pid), SIGKILL) == 0);
  check_squares(fs);
  REQUIRE(wait_until(5s, [&] {
    for (const auto& w : cl.workers())
      if (w.id == ws[1].id) return w.state == dx::worker_state::gone;
    return true;  // removed from the list
  }));
  // Dependents of results held by the dead worker are recomputed.
  auto a = cl.submit(net_test::square, 3);
  auto b = cl.submit(net_test::add, std::move(a), 1);
  CHECK(b.get() == 10);
}

TEST_CASE("recovery: a worker joining mid-run receives work (in-process)", "[net][recovery]") {
  dx::cluster cl{
      dx::options{}.threads(2).transport(dx::transport_kind::in_process).local_processes(1).head_runs_tasks(false)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 2000; ++i) fs.push_back(cl.submit(net_test::sleep_ms_then, 1, i));
  dx::detail::cluster_access::head(cl)->add_local_worker();
  REQUIRE(cl.workers().size() == 2);
  const std::string second = dx::detail::host_name() + "-2";  // the second worker the head started
  // The new worker must have tasks assigned at some point while the backlog lasts.
  bool new_worker_busy = wait_until(10s, [&] {
    for (const auto& w : cl.workers())
      if (w.id == second && w.tasks_assigned > 0) return true;
    return fs.back().is_ready();
  });
  CHECK(new_worker_busy);
  bool seen = false;
  for (const auto& w : cl.workers()) seen = seen || (w.id == second && w.tasks_assigned > 0);
  for (std::size_t i = 0; i < fs.size(); ++i) {
    require_ready(fs[i]);
    REQUIRE(fs[i].get() == static_cast<int>(i));
  }
  (void)seen;
}

TEST_CASE("recovery: a worker process joining mid-run receives work (tcp)", "[net][recovery]") {
  dx::cluster cl{dx::options{}.threads(2).local_processes(1).head_runs_tasks(false)};
  const int first_pid = static_cast<int>(cl.workers().at(0).pid);
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 2000; ++i) fs.push_back(cl.submit(net_test::sleep_then_pid, 1));
  const pid_t extra = spawn_self({"--dx-worker", "--connect", cl.endpoint(), "--threads", "1"});
  cl.wait_for_workers(2, 10s);
  // A worker process starts slowly under sanitizers: the first backlog may be gone by the time it
  // joins, so a second one is submitted once it has.
  for (int i = 0; i < 400; ++i) fs.push_back(cl.submit(net_test::sleep_then_pid, 5));
  std::map<int, int> by_pid;
  for (auto& f : fs) {
    require_ready(f);
    ++by_pid[f.get()];
  }
  CHECK(by_pid.count(first_pid) == 1);
  CHECK(by_pid.count(static_cast<int>(extra)) == 1);
  CHECK(by_pid.size() == 2);
  // The head stops the extra worker when the cluster goes; it is our child, so reap it here.
  ::kill(extra, SIGTERM);
  CHECK(reap_child(extra, 10s));
}

TEST_CASE("recovery: a task that kills its workers fails with worker_lost after allowed_failures", "[net][recovery]") {
  dx::cluster cl{
      dx::options{}.threads(2).local_processes(3).head_runs_tasks(false).allowed_failures(2).heartbeat(100ms, 1000ms)};
  auto f = cl.submit(net_test::kill_own_worker, 1);
  require_ready(f, 15s);
  CHECK_THROWS_AS(f.get(), dx::worker_lost);
  std::size_t gone = 0, active = 0;
  for (const auto& w : cl.workers()) {
    gone += w.state == dx::worker_state::gone;
    active += w.state == dx::worker_state::active;
  }
  CHECK(active == 1);
  // The surviving worker keeps serving.
  auto g = cl.submit(net_test::square, 9);
  require_ready(g);
  CHECK(g.get() == 81);
}

TEST_CASE("recovery child: a head with two workers that writes their pids", "[.][recovery-child]") {
  const char* file = std::getenv("DX_TEST_PIDFILE");
  REQUIRE(file != nullptr);
  dx::cluster cl{dx::options{}.threads(1).local_processes(2).head_runs_tasks(false).heartbeat(100ms, 1000ms)};
  {
    std::ofstream out(std::string(file) + ".tmp");
    for (int pid : dx::detail::cluster_access::head(cl)->worker_pids()) out << pid << "\n";
  }
  std::rename((std::string(file) + ".tmp").c_str(), file);
  std::this_thread::sleep_for(60s);  // the test kills this process long before
}

TEST_CASE("recovery: worker processes exit when their head is killed", "[net][recovery]") {
  const std::string file = "/tmp/dx_net_pids_" + std::to_string(::getpid());
  std::remove(file.c_str());
  const pid_t head =
      spawn_self({"recovery child: a head with two workers that writes their pids"}, {"DX_TEST_PIDFILE=" + file});
  std::vector<int> pids;
  const bool written = wait_until(20s, [&] {
    std::ifstream in(file);
    if (!in) return false;
    int p = 0;
    pids.clear();
    while (in >> p) pids.push_back(p);
    return pids.size() == 2;
  });
  std::remove(file.c_str());
  if (!written) {
    ::kill(head, SIGKILL);
    reap_child(head, 5s);
    FAIL("the head child did not write its workers' pids");
  }
  for (int p : pids) REQUIRE_FALSE(process_gone(p));
  REQUIRE(::kill(head, SIGKILL) == 0);
  REQUIRE(reap_child(head, 5s));
  const bool all_gone = wait_until(5s, [&] { return process_gone(pids[0]) && process_gone(pids[1]); });
  if (!all_gone)
    for (int p : pids) ::kill(p, SIGKILL);
  CHECK(all_gone);
}

TEST_CASE("recovery: a worker process sent SIGTERM leaves gracefully and hands back its tasks", "[net][recovery]") {
  dx::cluster cl{dx::options{}.threads(2).local_processes(2).threads_per_process(2).head_runs_tasks(false)};
  auto ws = cl.workers();
  REQUIRE(ws.size() == 2);
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 1000; ++i) fs.push_back(cl.submit(net_test::sleep_ms_then, i % 2, i));
  require_ready(fs[200]);
  REQUIRE(::kill(static_cast<pid_t>(ws[0].pid), SIGTERM) == 0);
  for (std::size_t i = 0; i < fs.size(); ++i) {
    require_ready(fs[i]);
    REQUIRE(fs[i].get() == static_cast<int>(i));
  }
  CHECK(wait_until(5s, [&] {
    for (const auto& w : cl.workers())
      if (w.id == ws[0].id) return w.state == dx::worker_state::gone;
    return true;
  }));
  CHECK(cl.submit(net_test::square, 6).get() == 36);
}

TEST_CASE("recovery: an in-process worker that leaves hands back its tasks", "[net][recovery]") {
  dx::cluster cl{
      dx::options{}.threads(2).transport(dx::transport_kind::in_process).local_processes(2).head_runs_tasks(false)};
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 1000; ++i) fs.push_back(cl.submit(net_test::sleep_ms_then, i % 2, i));
  require_ready(fs[200]);
  dx::detail::cluster_access::head(cl)->leave_local_worker(0);
  for (std::size_t i = 0; i < fs.size(); ++i) {
    require_ready(fs[i]);
    REQUIRE(fs[i].get() == static_cast<int>(i));
  }
  CHECK(wait_until(5s, [&] {
    for (const auto& w : cl.workers())
      if (w.id == dx::detail::host_name() + "-1") return w.state == dx::worker_state::gone;
    return true;
  }));
}
