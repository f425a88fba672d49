// Workers that go offline and come back (options::offline_grace): a worker whose link is lost
// keeps the work it was sent, computes on, and sends its answers once it joins again; past the
// grace its work moves, and its late answer is not taken; a new process under its name replaces
// it at once; workers the head starts itself never wait. The link is cut and held down by the
// link emulator (tools/link_emulator) between the head and a worker process, as a network that
// goes down would.
#include "link_emulator.hpp"
#include "spawn_self.hpp"
#include "temp_dir.hpp"

#include <dx/cluster.hpp>
#include <dx/remote.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using dx_support::reap_child;
using dx_support::spawn_self;

namespace offline_test {

/// Appends "<what> <key> <pid>" to `marks` (one write on an O_APPEND descriptor: lines never mix).
void mark(const std::string& marks, const std::string& what, std::int64_t key) {
  const int fd = ::open(marks.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const std::string line = what + " " + std::to_string(key) + " " + std::to_string(::getpid()) + "\n";
  [[maybe_unused]] const auto n = ::write(fd, line.data(), line.size());
  ::close(fd);
}

/// Marks its start, sleeps `ms`, marks its end: x + 1.
std::int64_t slow(std::string marks, std::int64_t x, std::int64_t ms) {
  mark(marks, "start", x);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  mark(marks, "end", x);
  return x + 1;
}

}  // namespace offline_test

DX_REMOTE_AS("offline.slow", offline_test::slow);

namespace {

/// The pids that marked `what` for `key`, in order.
std::vector<int> marked(const std::filesystem::path& marks, const std::string& what, std::int64_t key) {
  std::vector<int> out;
  std::ifstream in(marks);
  std::string w;
  std::int64_t k = 0;
  int pid = 0;
  while (in >> w >> k >> pid)
    if (w == what && k == key) out.push_back(pid);
  return out;
}

bool eventually(const std::function<bool()>& ok, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (ok()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return ok();
}

dx::link::profile no_delay() { return {}; }

/// A head without task threads of its own; worker processes join it directly or through a link
/// that the test cuts and holds down.
struct offline_cluster {
  std::unique_ptr<dx::cluster> owner;
  dx::cluster& cl;
  std::vector<std::unique_ptr<dx::link::emulator>> links;
  std::vector<pid_t> pids;

  explicit offline_cluster(dx::options opts)
      : owner(std::make_unique<dx::cluster>(
            opts.listen("127.0.0.1:0").head_runs_tasks(false).persist_cost_model(false).heartbeat(200ms, 2s))),
        cl(*owner) {}
  ~offline_cluster() {
    for (auto& l : links) l->stall(false);
    owner.reset();
    for (pid_t p : pids) reap_child(p, 10s);
  }

  /// Starts a worker named `name` with one thread and a "gpu", which waits up to 30 s for its
  /// head when the link is lost; through a link of its own when `linked` (returned).
  dx::link::emulator* join(const std::string& name, bool linked) {
    std::string head = cl.endpoint();
    dx::link::emulator* link = nullptr;
    if (linked) {
      links.push_back(std::make_unique<dx::link::emulator>(head, no_delay(), no_delay()));
      link = links.back().get();
      head = link->address();
    }
    pids.push_back(spawn_self({"--dx-worker", "--connect", head, "--name", name, "--threads", "1", "--resources",
                               "gpu=1", "--reconnect-for", "30s"}));
    return link;
  }

  std::optional<dx::worker_info> worker(const std::string& name) const {
    for (const auto& w : cl.workers())
      if (w.id == name) return w;
    return std::nullopt;
  }
  bool in_state(const std::string& name, dx::worker_state s) const {
    auto w = worker(name);
    return w && w->state == s;
  }
};

const dx::task_options on_gpu = dx::task_options{}.with_resources({{"gpu", 1}});

}  // namespace

TEST_CASE("a worker offline within the grace keeps its work and sends the answers it computed meanwhile, once",
          "[net][offline]") {
  const dx_support::temp_dir dir("dx_offline_back");
  const std::string marks = (dir.path() / "marks").string();
  offline_cluster oc(dx::options{}.offline_grace(30s));
  dx::link::emulator* link = oc.join("away", true);
  oc.cl.wait_for_workers(1, 20s);
  auto f = oc.cl.submit(on_gpu, offline_test::slow, marks, std::int64_t{1}, std::int64_t{1500});
  REQUIRE(eventually([&] { return !marked(marks, "start", 1).empty(); }, 20s));
  // The network goes down: connections drop, and no byte moves until it is back.
  link->stall(true);
  link->cut();
  REQUIRE(eventually([&] { return oc.in_state("away", dx::worker_state::offline); }, 10s));
  CHECK(oc.worker("away")->tasks_assigned == 1);  // its work waits for it
  // It computes on while away; the head hears nothing of it.
  REQUIRE(eventually([&] { return !marked(marks, "end", 1).empty(); }, 10s));
  CHECK(f.wait_for(0ms) == dx::future_status::timeout);
  link->stall(false);
  REQUIRE(f.wait_for(20s) == dx::future_status::ready);
  CHECK(f.get() == 2);
  CHECK(marked(marks, "start", 1).size() == 1);  // never run again
  REQUIRE(eventually([&] { return oc.in_state("away", dx::worker_state::active); }, 10s));
  CHECK(oc.worker("away")->reliability.lost == 0);
  // And it takes new work as before.
  auto g = oc.cl.submit(on_gpu, offline_test::slow, marks, std::int64_t{2}, std::int64_t{10});
  REQUIRE(g.wait_for(20s) == dx::future_status::ready);
  CHECK(g.get() == 3);
}

TEST_CASE("a worker offline past the grace loses its work to another, and its late answer is not taken",
          "[net][offline]") {
  const dx_support::temp_dir dir("dx_offline_late");
  const std::string marks = (dir.path() / "marks").string();
  offline_cluster oc(dx::options{}.offline_grace(1s));
  dx::link::emulator* link = oc.join("away", true);
  oc.cl.wait_for_workers(1, 20s);
  auto f = oc.cl.submit(on_gpu, offline_test::slow, marks, std::int64_t{1}, std::int64_t{3000});
  REQUIRE(eventually([&] { return !marked(marks, "start", 1).empty(); }, 20s));
  const int away_pid = marked(marks, "start", 1).front();
  link->stall(true);
  link->cut();
  REQUIRE(eventually([&] { return oc.in_state("away", dx::worker_state::offline); }, 10s));
  oc.join("spare", false);
  // Past the grace the task moves to the spare worker, which answers it.
  REQUIRE(f.wait_for(30s) == dx::future_status::ready);
  const std::int64_t answer = f.get();
  CHECK(answer == 2);
  const auto starts = marked(marks, "start", 1);
  REQUIRE(starts.size() == 2);
  CHECK(starts[1] != away_pid);
  CHECK(oc.in_state("away", dx::worker_state::gone));
  // The network comes back: the head holds nothing for it, so it joins afresh, its old answer
  // dropped; the result stays the one delivered.
  link->stall(false);
  REQUIRE(eventually([&] { return oc.in_state("away", dx::worker_state::active); }, 20s));
  CHECK(oc.worker("away")->pid == away_pid);  // the same process, joined afresh
  auto g = oc.cl.submit(dx::task_options{}, offline_test::slow, marks, std::int64_t{5}, std::int64_t{10});
  REQUIRE(g.wait_for(20s) == dx::future_status::ready);
  CHECK(g.get() == 6);
}

TEST_CASE("a new process under an offline worker's name replaces it, and its work moves at once", "[net][offline]") {
  const dx_support::temp_dir dir("dx_offline_new");
  const std::string marks = (dir.path() / "marks").string();
  offline_cluster oc(dx::options{}.offline_grace(60s));
  oc.join("away", false);
  oc.cl.wait_for_workers(1, 20s);
  auto f = oc.cl.submit(on_gpu, offline_test::slow, marks, std::int64_t{1}, std::int64_t{2000});
  REQUIRE(eventually([&] { return !marked(marks, "start", 1).empty(); }, 20s));
  const pid_t first = oc.pids.front();
  ::kill(first, SIGKILL);
  REQUIRE(eventually([&] { return oc.in_state("away", dx::worker_state::offline); }, 10s));
  reap_child(first, 5s);
  oc.pids.clear();
  oc.join("away", false);                                // the machine restarted: a new process, nothing held
  REQUIRE(f.wait_for(20s) == dx::future_status::ready);  // long before the grace of 60 s
  CHECK(f.get() == 2);
  CHECK(marked(marks, "start", 1).size() == 2);
  CHECK(oc.in_state("away", dx::worker_state::active));
}

TEST_CASE("workers a head starts itself never wait offline", "[net][offline]") {
  const dx_support::temp_dir dir("dx_offline_local");
  const std::string marks = (dir.path() / "marks").string();
  dx::cluster cl(dx::options{}
                     .listen("127.0.0.1:0")
                     .head_runs_tasks(false)
                     .persist_cost_model(false)
                     .local_processes(2)
                     .threads_per_process(1)
                     .offline_grace(60s));
  cl.wait_for_workers(2, 20s);
  auto f = cl.submit(offline_test::slow, marks, std::int64_t{1}, std::int64_t{2000});
  REQUIRE(eventually([&] { return !marked(marks, "start", 1).empty(); }, 20s));
  const int ran_on = marked(marks, "start", 1).front();
  ::kill(ran_on, SIGKILL);
  REQUIRE(f.wait_for(20s) == dx::future_status::ready);
  CHECK(f.get() == 2);
  for (const auto& w : cl.workers()) CHECK(w.state != dx::worker_state::offline);
}
