// Replicated tasks on worker processes (dx/replicate.hpp): copies on distinct workers, the
// canonical result from a quorum, a worker that corrupts its results on purpose (dx-worker
// --corrupt-results), tolerance and named comparisons, adaptive replication, speculative twins of
// a late copy (soft deadline) and copies reissued past a hard deadline whose late answer is still
// checked. Workers are copies of this binary started by hand so each can get its own flags.
#include "http_client.hpp"
#include "spawn_self.hpp"
#include "temp_dir.hpp"

#include <dx/cluster.hpp>
#include <dx/remote.hpp>
#include <dx/replicate.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using dx_support::reap_child;
using dx_support::spawn_self;

namespace rep_test {

/// Appends "<key> <pid>" to `marks` (one write on an O_APPEND descriptor: lines never mix).
void mark(const std::string& marks, const std::string& key) {
  const int fd = ::open(marks.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const std::string line = key + " " + std::to_string(::getpid()) + "\n";
  [[maybe_unused]] const auto n = ::write(fd, line.data(), line.size());
  ::close(fd);
}

std::int64_t square(std::string marks, std::int64_t x) {
  mark(marks, std::to_string(x));
  return x * x;
}

/// x plus a difference in the 13th digit that depends on the process: machines that round
/// differently.
double noisy(std::string marks, std::int64_t x) {
  mark(marks, std::to_string(x));
  return static_cast<double>(x) * (1 + 1e-13 * static_cast<double>(::getpid() % 7 + 1));
}

std::vector<double> vector_of(std::string marks, std::int64_t x) {
  mark(marks, std::to_string(x));
  return {static_cast<double>(x), static_cast<double>(::getpid())};
}

/// Agrees when the first elements are equal (the second names the process).
bool same_first(const std::vector<double>& a, const std::vector<double>& b) {
  return !a.empty() && !b.empty() && a[0] == b[0];
}

/// Sleeps `first_ms` on its first call for `x` (no mark of it yet), `ms` otherwise.
std::int64_t slow_first(std::string marks, std::int64_t x, std::int64_t first_ms, std::int64_t ms) {
  std::ifstream in(marks);
  std::string line;
  bool seen = false;
  while (std::getline(in, line)) seen = seen || line.rfind(std::to_string(x) + " ", 0) == 0;
  mark(marks, std::to_string(x));
  std::this_thread::sleep_for(std::chrono::milliseconds(seen ? ms : first_ms));
  return x + 1;
}

}  // namespace rep_test

DX_REMOTE_AS("rep.square", rep_test::square);
DX_REMOTE_AS("rep.noisy", rep_test::noisy);
DX_REMOTE_AS("rep.vector_of", rep_test::vector_of);
DX_REMOTE_AS("rep.slow_first", rep_test::slow_first);
DX_COMPARATOR("rep.same_first", rep_test::same_first);

namespace {

/// A head without task threads of its own and workers started with the given extra flags.
struct live_cluster {
  std::unique_ptr<dx::cluster> owner;
  dx::cluster& cl;
  std::vector<pid_t> workers;

  live_cluster(dx::options opts, const std::vector<std::vector<std::string>>& worker_flags)
      : owner(
            std::make_unique<dx::cluster>(opts.listen("127.0.0.1:0").head_runs_tasks(false).persist_cost_model(false))),
        cl(*owner) {
    for (const auto& flags : worker_flags) {
      std::vector<std::string> args{"--dx-worker", "--connect", cl.endpoint()};
      args.insert(args.end(), flags.begin(), flags.end());
      workers.push_back(spawn_self(args));
    }
    cl.wait_for_workers(worker_flags.size(), 20s);
  }
  ~live_cluster() {
    owner.reset();  // tells the workers to stop
    for (pid_t p : workers) reap_child(p, 5s);
  }
  dx::worker_info worker_of(pid_t pid) const {
    for (const auto& w : cl.workers())
      if (w.pid == pid) return w;
    return {};
  }
};

/// The pids that ran each key, in the order they ran.
std::map<std::string, std::vector<int>> runs_in(const std::filesystem::path& marks) {
  std::map<std::string, std::vector<int>> out;
  std::ifstream in(marks);
  std::string key;
  int pid = 0;
  while (in >> key >> pid) out[key].push_back(pid);
  return out;
}

/// Squares of [from, from + n) submitted with `opts` and checked; how many times they ran in all.
std::size_t square_batch(live_cluster& lc, const dx::task_options& opts, const std::string& marks, std::int64_t from,
                         std::int64_t n) {
  std::vector<dx::future<std::int64_t>> fs;
  for (std::int64_t i = from; i < from + n; ++i) fs.push_back(lc.cl.submit(opts, rep_test::square, marks, i));
  for (std::int64_t i = 0; i < n; ++i) {
    REQUIRE(fs[i].wait_for(60s) == dx::future_status::ready);
    CHECK(fs[i].get() == (from + i) * (from + i));
  }
  std::size_t runs = 0;
  for (const auto& [key, pids] : runs_in(marks))
    if (std::stoll(key) >= from && std::stoll(key) < from + n) runs += pids.size();
  return runs;
}

std::vector<std::string> one_thread(std::vector<std::string> extra = {}) {
  std::vector<std::string> flags{"--threads", "1"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

}  // namespace

TEST_CASE("replicated tasks run their copies on distinct workers and deliver the agreed result once",
          "[net][replicate]") {
  const dx_support::temp_dir dir("dx_rep_distinct");
  const std::string marks = (dir.path() / "marks").string();
  live_cluster lc(dx::options{}, {one_thread(), one_thread(), one_thread()});
  const auto opts = dx::task_options{}.with_replicate({.copies = 3, .quorum = 2});
  std::vector<dx::future<std::int64_t>> fs;
  for (std::int64_t i = 0; i < 30; ++i) fs.push_back(lc.cl.submit(opts, rep_test::square, marks, i));
  // A dependent sees the canonical result only, and runs once.
  auto dependent = lc.cl.submit(rep_test::square, marks, lc.cl.submit(opts, rep_test::square, marks, std::int64_t{-7}));
  for (std::int64_t i = 0; i < 30; ++i) {
    REQUIRE(fs[i].wait_for(60s) == dx::future_status::ready);
    CHECK(fs[i].get() == i * i);
  }
  REQUIRE(dependent.wait_for(60s) == dx::future_status::ready);
  CHECK(dependent.get() == 49 * 49);
  const auto runs = runs_in(marks);
  CHECK(runs.at("49").size() == 1);
  for (std::int64_t i = 0; i < 30; ++i) {
    const auto& pids = runs.at(std::to_string(i));
    INFO("task " << i);
    CHECK(pids.size() >= 2);  // the third copy may have been cancelled before it started
    CHECK(pids.size() <= 3);
    CHECK(std::set<int>(pids.begin(), pids.end()).size() == pids.size());  // never twice on one worker
  }
  std::uint64_t valid = 0;
  for (const auto& w : lc.cl.workers()) {
    valid += w.reliability.valid;
    CHECK(w.reliability.invalid == 0);
    CHECK_FALSE(w.reliability.quarantined);
  }
  CHECK(valid >= 60);
}

TEST_CASE("a worker that corrupts its results never makes a canonical result wrong, and is quarantined",
          "[net][replicate]") {
  const dx_support::temp_dir dir("dx_rep_corrupt");
  const std::string marks = (dir.path() / "marks").string();
  live_cluster lc(dx::options{}.http("127.0.0.1:0"),
                  {one_thread(), one_thread(), one_thread({"--corrupt-results", "1"})});
  const auto opts = dx::task_options{}.with_replicate({.copies = 2, .quorum = 2});
  std::vector<dx::future<std::int64_t>> fs;
  for (std::int64_t i = 1; i <= 60; ++i) fs.push_back(lc.cl.submit(opts, rep_test::square, marks, i));
  for (std::int64_t i = 1; i <= 60; ++i) {
    REQUIRE(fs[i - 1].wait_for(60s) == dx::future_status::ready);
    CHECK(fs[i - 1].get() == i * i);
  }
  const dx::worker_info bad = lc.worker_of(lc.workers[2]);
  INFO("bad worker " << bad.id << ": valid " << bad.reliability.valid << " invalid " << bad.reliability.invalid);
  CHECK(bad.reliability.valid == 0);
  CHECK(bad.reliability.invalid >= 4);
  CHECK(bad.reliability.quarantined);
  CHECK(bad.state == dx::worker_state::quarantined);
  for (int k = 0; k < 2; ++k) {
    const dx::worker_info good = lc.worker_of(lc.workers[k]);
    CHECK(good.reliability.invalid == 0);
    CHECK(good.reliability.valid > 0);
    CHECK_FALSE(good.reliability.quarantined);
  }
  // Metrics and the state the dashboard reads say so.
  const std::string metrics = dx_support::http::get(lc.cl.http_endpoint(), "/metrics").body;
  CHECK_THAT(metrics, Catch::Contains("dx_worker_quarantined{worker=\"" + bad.id + "\"} 1"));
  CHECK_THAT(metrics, Catch::Contains("dx_worker_results_total{worker=\"" + bad.id + "\",outcome=\"invalid\"}"));
  CHECK_THAT(metrics, Catch::Contains("dx_workers{state=\"quarantined\"} 1"));
  const std::string state = dx_support::http::get(lc.cl.http_endpoint(), "/api/state").body;
  CHECK_THAT(state, Catch::Contains("\"quarantined\":true"));
  // Work goes on without it.
  auto after = lc.cl.submit(opts, rep_test::square, marks, std::int64_t{1000});
  REQUIRE(after.wait_for(30s) == dx::future_status::ready);
  CHECK(after.get() == 1'000'000);
  // The metrics say so too.
  const dx::metrics& m = lc.cl.metrics();
  CHECK(m.value("dx_replica_copies_total").value_or(0) >= 122);  // 61 tasks, two copies each at least
  CHECK(m.value("dx_replica_quorum_failures_total") == 0.0);
  CHECK(m.value("dx_replica_trusted_alone_total") == 0.0);
  CHECK(m.value("dx_worker_results_total", {{"worker", bad.id}, {"outcome", "invalid"}}) ==
        static_cast<double>(bad.reliability.invalid));
  CHECK(m.value("dx_worker_results_total", {{"worker", bad.id}, {"outcome", "valid"}}) == 0.0);
}

TEST_CASE("when no quorum can form the task fails naming the disagreement and the workers", "[net][replicate]") {
  const dx_support::temp_dir dir("dx_rep_noquorum");
  const std::string marks = (dir.path() / "marks").string();
  live_cluster lc(dx::options{}, {one_thread(), one_thread({"--corrupt-results", "1"})});
  auto f = lc.cl.submit(dx::task_options{}.with_replicate({.copies = 2, .quorum = 2, .max_copies = 2}),
                        rep_test::square, marks, std::int64_t{7});
  REQUIRE(f.wait_for(60s) == dx::future_status::ready);
  try {
    f.get();
    FAIL("a task without a quorum succeeded");
  } catch (const dx::error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("no quorum") != std::string::npos);
    CHECK(what.find(lc.worker_of(lc.workers[0]).id) != std::string::npos);
    CHECK(what.find(lc.worker_of(lc.workers[1]).id) != std::string::npos);
  }
  // A dependent of it fails with it.
  auto g = lc.cl.submit(dx::task_options{}.with_replicate({.copies = 2, .quorum = 2, .max_copies = 2}),
                        rep_test::square, marks, std::int64_t{8});
  REQUIRE(g.wait_for(60s) == dx::future_status::ready);
  CHECK_THROWS_AS(g.get(), dx::error);
}

TEST_CASE("copies compare within a tolerance, or with a named comparator", "[net][replicate]") {
  const dx_support::temp_dir dir("dx_rep_compare");
  const std::string marks = (dir.path() / "marks").string();
  live_cluster lc(dx::options{}, {one_thread(), one_thread(), one_thread()});
  SECTION("exact comparison sees the last digits differ") {
    // Two of the three workers may round alike (pid % 7): only a failure naming no quorum, or the
    // value, may come out.
    auto f = lc.cl.submit(dx::task_options{}.with_replicate({.copies = 3, .quorum = 3, .max_copies = 3}),
                          rep_test::noisy, marks, std::int64_t{5});
    REQUIRE(f.wait_for(60s) == dx::future_status::ready);
    std::set<int> mods;
    for (pid_t p : lc.workers) mods.insert(p % 7);
    if (mods.size() > 1) CHECK_THROWS_WITH(f.get(), Catch::Contains("no quorum"));
  }
  SECTION("a tolerance accepts them") {
    auto f = lc.cl.submit(
        dx::task_options{}.with_replicate({.copies = 3, .quorum = 3, .compare = dx::comparison::tolerance(1e-9)}),
        rep_test::noisy, marks, std::int64_t{5});
    REQUIRE(f.wait_for(60s) == dx::future_status::ready);
    CHECK(std::fabs(f.get() - 5) < 1e-9);
  }
  SECTION("a tolerance over a vector compares every element") {
    auto f = lc.cl.submit(dx::task_options{}.with_replicate(
                              {.copies = 2, .quorum = 2, .max_copies = 2, .compare = dx::comparison::tolerance(1e-9)}),
                          rep_test::vector_of, marks, std::int64_t{5});
    REQUIRE(f.wait_for(60s) == dx::future_status::ready);
    CHECK_THROWS_WITH(f.get(), Catch::Contains("no quorum"));  // the pids differ
  }
  SECTION("a named comparator decides") {
    auto f = lc.cl.submit(dx::task_options{}.with_replicate(
                              {.copies = 2, .quorum = 2, .compare = dx::comparison::named("rep.same_first")}),
                          rep_test::vector_of, marks, std::int64_t{5});
    REQUIRE(f.wait_for(60s) == dx::future_status::ready);
    CHECK(f.get().at(0) == 5);
  }
  SECTION("an unknown comparator, or a quorum over the copies, is refused at submit") {
    CHECK_THROWS_WITH(lc.cl.submit(dx::task_options{}.with_replicate({.compare = dx::comparison::named("nope")}),
                                   rep_test::square, marks, std::int64_t{1}),
                      Catch::Contains("no comparator is registered under 'nope'"));
    CHECK_THROWS_WITH(lc.cl.submit(dx::task_options{}.with_replicate({.copies = 2, .quorum = 3}), rep_test::square,
                                   marks, std::int64_t{1}),
                      Catch::Contains("quorum must be from 1 to copies"));
    CHECK_THROWS_WITH(lc.cl.submit(
                          dx::task_options{}.with_replicate({}), [](int x) { return x; }, 1),
                      Catch::Contains("registered function"));
  }
}

TEST_CASE("adaptive replication trusts workers with a clean record and runs fewer copies", "[net][replicate]") {
  const dx_support::temp_dir dir("dx_rep_adaptive");
  const std::string marks = (dir.path() / "marks").string();
  live_cluster lc(dx::options{}, {one_thread(), one_thread()});
  const auto opts = dx::task_options{}.with_replicate({.copies = 2, .quorum = 2, .adaptive = true});
  // The first batch earns the workers their records: nobody is trusted before ten checked
  // results in a row.
  const auto run_batch = [&](std::int64_t from, std::int64_t n) { return square_batch(lc, opts, marks, from, n); };
  const std::size_t first = run_batch(0, 100);
  INFO("first batch: " << first << " runs for 100 tasks");
  CHECK(first >= 100);
  const std::size_t second = run_batch(1000, 200);
  INFO("second batch: " << second << " runs for 200 tasks");
  CHECK(second >= 200);
  CHECK(second < 260);  // full replication would be 400
}

TEST_CASE("adaptive replication trusts no worker before 100 of its results were checked", "[net][replicate]") {
  // Ten valid results in a row are too few to tell a worker wrong one time in ten from a good one
  // (it has such a start a third of the time): trusted then, its wrong results would be accepted
  // while the copies that could catch it are still out.
  const dx_support::temp_dir dir("dx_rep_adaptive_record");
  const std::string marks = (dir.path() / "marks").string();
  live_cluster lc(dx::options{}, {one_thread(), one_thread()});
  const auto opts = dx::task_options{}.with_replicate({.copies = 2, .quorum = 2, .adaptive = true});
  const auto run_batch = [&](std::int64_t from, std::int64_t n) { return square_batch(lc, opts, marks, from, n); };
  // Two runs of each task at least (a completion lost on a loaded machine may add a third run;
  // never fewer, which only a result believed alone would give).
  CHECK(run_batch(0, 40) >= 80);
  for (const auto& w : lc.cl.workers()) CHECK(w.reliability.consecutive_valid == 40);
  // 40 valid results in a row each, 40 checked: still replicated, every one.
  CHECK(run_batch(1000, 40) >= 80);
  CHECK(lc.cl.metrics().value("dx_replica_trusted_alone_total") == 0.0);
  for (const auto& w : lc.cl.workers()) {
    CHECK(w.reliability.valid == 80);
    CHECK(w.reliability.invalid == 0);
  }
}

TEST_CASE("adaptive replication counts answers in a disagreement not settled yet against their workers",
          "[net][replicate]") {
  // An invalid result is known one copy later than a valid one (the copy that breaks the tie):
  // until then a worker wrong one time in ten would show a record of valid results alone.
  const dx_support::temp_dir dir("dx_rep_adaptive_disputed");
  const std::string marks = (dir.path() / "marks").string();
  live_cluster lc(dx::options{}, {one_thread(), one_thread()});
  const auto opts = dx::task_options{}.with_replicate({.copies = 2, .quorum = 2, .adaptive = true});
  const auto run_batch = [&](std::int64_t from, std::int64_t n) { return square_batch(lc, opts, marks, from, n); };
  CHECK(run_batch(0, 100) >= 200);  // 100 checked results each: trusted from here
  // Four tasks whose copies disagree (each names its process) and whose third copy has nowhere to
  // go (two workers): their disagreements stay open.
  std::vector<dx::future<std::vector<double>>> open;
  for (std::int64_t i = 0; i < 4; ++i)
    open.push_back(lc.cl.submit(dx::task_options{}.with_replicate({.copies = 2, .quorum = 2, .max_copies = 3}),
                                rep_test::vector_of, marks, 500 + i));
  const auto open_runs = [&] {
    std::size_t n = 0;
    for (const auto& [key, pids] : runs_in(marks))
      if (std::stoll(key) >= 500 && std::stoll(key) < 504) n += pids.size();
    return n;
  };
  for (const auto deadline = std::chrono::steady_clock::now() + 20s;
       std::chrono::steady_clock::now() < deadline && open_runs() < 8;)
    std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(200ms);  // the answers reach the head
  // 4 open of 104, weighed one half each (neither worker has lost or won a disagreement yet): 2
  // of 104 likely invalid, over 1%, so neither worker is believed alone.
  const double alone_before = lc.cl.metrics().value("dx_replica_trusted_alone_total").value_or(-1);
  CHECK(run_batch(1000, 40) >= 80);
  CHECK(lc.cl.metrics().value("dx_replica_trusted_alone_total").value_or(-1) == alone_before);
  // Given up, they no longer count: trusted again.
  for (auto& f : open) f.cancel();
  CHECK(run_batch(2000, 40) < 60);
}

TEST_CASE("a copy that runs far past its prediction gets a speculative twin, and the first result wins",
          "[net][replicate]") {
  const dx_support::temp_dir dir("dx_rep_soft");
  const std::string marks = (dir.path() / "marks").string();
  live_cluster lc(dx::options{}.heartbeat(100ms, 5s), {one_thread(), one_thread()});
  // Calibrate the kind: 40 ms a call.
  std::vector<dx::future<std::int64_t>> warm;
  for (std::int64_t i = 0; i < 20; ++i) warm.push_back(lc.cl.submit(rep_test::slow_first, marks, i, 40, 40));
  for (auto& f : warm) REQUIRE(f.wait_for(60s) == dx::future_status::ready);
  const auto started = std::chrono::steady_clock::now();
  auto f = lc.cl.submit(dx::task_options{}.with_deadline({.soft_factor = 3}), rep_test::slow_first, marks,
                        std::int64_t{100}, 20'000, 40);
  REQUIRE(f.wait_for(15s) == dx::future_status::ready);
  CHECK(f.get() == 101);
  CHECK(std::chrono::steady_clock::now() - started < 10s);  // not the 20 s of the first copy
  CHECK(runs_in(marks).at("100").size() == 2);
}

TEST_CASE("a copy on a stopped worker is reissued past its hard deadline, and its late answer is still checked",
          "[net][replicate]") {
  const dx_support::temp_dir dir("dx_rep_hard");
  const std::string marks = (dir.path() / "marks").string();
  live_cluster lc(dx::options{}.heartbeat(200ms, 20s), {one_thread(), one_thread()});
  auto f = lc.cl.submit(dx::task_options{}.with_deadline({.hard = 1500ms}), rep_test::slow_first, marks,
                        std::int64_t{1}, 800, 10);
  // The first copy runs for 0.8 s on some worker: stop that worker while it does.
  int stopped = 0;
  for (const auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
    const auto runs = runs_in(marks);
    if (auto it = runs.find("1"); it != runs.end()) {
      stopped = it->second.front();
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  REQUIRE(stopped != 0);
  REQUIRE(::kill(stopped, SIGSTOP) == 0);
  REQUIRE(f.wait_for(15s) == dx::future_status::ready);
  CHECK(f.get() == 2);
  ::kill(stopped, SIGCONT);
  // The late answer comes, is compared with the canonical result and recorded.
  dx::worker_info late;
  for (const auto deadline = std::chrono::steady_clock::now() + 15s; std::chrono::steady_clock::now() < deadline;) {
    late = lc.worker_of(stopped);
    if (late.reliability.late > 0 && late.reliability.valid > 0) break;
    std::this_thread::sleep_for(20ms);
  }
  CHECK(late.reliability.late == 1);
  CHECK(late.reliability.valid == 1);
  CHECK(late.reliability.invalid == 0);
  CHECK(runs_in(marks).at("1").size() == 2);
}
