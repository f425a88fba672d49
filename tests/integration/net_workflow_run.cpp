// Workflow runs on worker processes, over both transports: function steps with inputs, a split
// step and its aggregate, a command step, and the journal's record of the run.
#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include "journal/journal.hpp"
#include "processes.hpp"
#include "spawn_self.hpp"
#include "temp_dir.hpp"
#include "transports.hpp"

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>

using namespace std::chrono_literals;

namespace wfnet_test {

std::int64_t seed(std::int64_t n) { return n * 3; }
std::int64_t squares(dx::chunk c, std::int64_t offset) {
  std::int64_t s = 0;
  for (std::int64_t i = c.start; i < c.end; ++i) s += (i + offset) * (i + offset);
  return s;
}
std::int64_t plus(std::int64_t a, std::int64_t b) { return a + b; }

}  // namespace wfnet_test

DX_REMOTE(wfnet_test::seed);
DX_REMOTE(wfnet_test::squares);
DX_REMOTE(wfnet_test::plus);

using namespace wfnet_test;

TEST_CASE("workflow run on workers: inputs, a split and its aggregate, a command, the journal", "[net][workflow-run]") {
  DX_TRANSPORTS();
  const dx_support::temp_dir dir("dx_wfnet");
  const auto opts = dx::run_options{}.with_journal((dir.path() / "journal.sqlite").string());
  dx::cluster cl{dx::options{}
                     .threads(2)
                     .transport(kind)
                     .local_processes(2)
                     .threads_per_process(1)
                     .head_runs_tasks(false)
                     .persist_cost_model(false)};
  auto wf = dx::workflow::from_json(R"({
    "name": "squares",
    "steps": [
      {"name": "offset", "function": "wfnet_test::seed", "parameters": [1]},
      {"name": "parts", "function": "wfnet_test::squares", "parameter_names": ["chunk", "offset"],
       "inputs": {"offset": "offset"}, "split": {"range": [0, 2000], "chunk": 150}},
      {"name": "total", "aggregate": {"of": "parts", "function": "wfnet_test::plus"}},
      {"name": "words", "command": ["sh", "-c", "echo $0 {n}", "total"], "parameters": {"n": 5}},
      {"name": "each", "command": ["echo", "<{item}>"], "split": {"items": ["a", "b", "c"], "chunk": 2}},
      {"name": "lines", "aggregate": {"of": "each", "command": ["sort", "-r"]}}
    ]})");
  auto run = cl.start(wf, opts);
  const bool ended = run.wait_for(60s);
  for (const auto& t : run.steps())
    if (!ended || t.status != dx::task_status::succeeded)
      UNSCOPED_INFO(t.key << " " << dx::to_string(t.status) << " " << t.error);
  REQUIRE(ended);
  REQUIRE(run.status() == dx::workflow_status::succeeded);
  std::int64_t expected = 0;
  for (std::int64_t i = 0; i < 2000; ++i) expected += (i + 3) * (i + 3);
  CHECK(run.result<std::int64_t>("total") == expected);
  std::size_t chunks = 0;
  for (const auto& t : run.steps()) chunks += (t.parent == "parts") ? 1 : 0;
  CHECK(chunks == 14);
  CHECK(run.result_bytes("words") == "total 5\n");
  CHECK(run.result_bytes("lines") == "<c>\n<b>\n<a>\n");
  const auto runs = cl.runs(opts);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].status == dx::workflow_status::succeeded);
  // A task waits READY until the head sends it to a worker, then is RUNNING there.
  auto j = dx::detail::journal::open(dir.path() / "journal.sqlite", dx::detail::journal::open_mode::read_only);
  std::vector<std::string> offset_statuses;
  for (const auto& t : j->transitions(run.id()))
    if (t.key == "offset") offset_statuses.push_back(t.status);
  CHECK(offset_statuses == std::vector<std::string>{"PENDING", "READY", "RUNNING", "SUCCEEDED"});
  for (const auto& t : j->load(run.id()).tasks) {
    if (t.key != "offset") continue;
    CHECK(t.assigned_to.rfind("head", 0) != 0);
    CHECK_FALSE(t.assigned_to.empty());
  }
}

namespace wfnet_test {

/// Busy for 200 us per index (a clock, not a sleep), so a chunk's time is proportional to its size.
std::int64_t busy_part(dx::chunk c) {
  const auto end = std::chrono::steady_clock::now() + (c.end - c.start) * 200us;
  while (std::chrono::steady_clock::now() < end) {
  }
  return c.end - c.start;
}

}  // namespace wfnet_test

DX_REMOTE(wfnet_test::busy_part);

TEST_CASE(
    "workflow run on workers: tasks name the worker that ran them, chunk auto starts from the model once it "
    "knows the step",
    "[net][workflow-run]") {
  const dx_support::temp_dir dir("dx_wfnet");
  dx::cluster cl{
      dx::options{}.threads(2).local_processes(2).threads_per_process(1).head_runs_tasks(false).persist_cost_model(
          false)};
  // 8,000 indices of 200 us on 2 threads: at most 1,000 a chunk; 200 ms is 1,000 indices.
  auto wf = dx::workflow::from_json(R"({"name": "sized", "steps": [
      {"name": "parts", "function": "wfnet_test::busy_part", "split": {"range": [0, 8000]}},
      {"name": "total", "aggregate": {"of": "parts", "function": "wfnet_test::plus"}}]})");
  auto sizes = [](const dx::workflow_run& run) {
    std::vector<std::int64_t> out;
    for (const auto& t : run.steps()) {
      if (t.parent != "parts") continue;
      const auto at = t.parameters.find("\"end\":");
      const auto start = std::stoll(t.parameters.substr(t.parameters.find(':') + 1));
      out.push_back(std::stoll(t.parameters.substr(at + 6)) - start);
    }
    return out;
  };
  std::vector<std::string> workers;
  for (const auto& w : cl.workers()) workers.push_back(w.id);
  auto first = cl.start(wf, dx::run_options{}.without_journal());
  REQUIRE(first.wait_for(60s));
  REQUIRE(first.status() == dx::workflow_status::succeeded);
  CHECK(first.result<std::int64_t>("total") == 8000);
  for (const auto& t : first.steps()) {
    if (t.parent != "parts") continue;
    INFO(t.key << " ran on '" << t.assigned_to << "'");
    CHECK(std::find(workers.begin(), workers.end(), t.assigned_to) != workers.end());
    CHECK(t.attempts == 1);
  }
  const auto probed = sizes(first);
  REQUIRE(probed.size() >= 3);
  CHECK(probed[0] == 1000 / 16);  // a probe: the model did not know the kind
  // The model learned the chunks by their size: the next run cuts them all at its answer.
  auto second = cl.start(wf, dx::run_options{}.without_journal());
  REQUIRE(second.wait_for(60s));
  REQUIRE(second.status() == dx::workflow_status::succeeded);
  const auto modelled = sizes(second);
  REQUIRE(modelled.size() >= 2);
  CHECK(modelled[0] > 1000 / 16);
  CHECK(modelled[0] >= 250);
  CHECK(modelled[0] <= 1000);
  for (std::size_t i = 0; i + 1 < modelled.size(); ++i) CHECK(modelled[i] == modelled[0]);
}

// ---- a head killed at random moments -------------------------------------------------------------

namespace wfnet_test {

/// Appends `key` to `dir`/marks (a side effect per run), after a few milliseconds of work.
std::int64_t mark(std::string dir, std::string key, std::int64_t value) {
  std::this_thread::sleep_for(std::chrono::milliseconds(15));
  std::ofstream(dir + "/marks", std::ios::app) << key << '\n';
  return value;
}
std::int64_t mark_chunk(dx::chunk c, std::string dir) {
  std::this_thread::sleep_for(std::chrono::milliseconds(15));
  std::ofstream(dir + "/marks", std::ios::app) << "sum#" << c.index << '\n';
  std::int64_t s = 0;
  for (std::int64_t i = c.start; i < c.end; ++i) s += i;
  return s;
}

/// 40 steps, each after the one before and the one at half its index, then a split of 30 chunks
/// and its aggregate.
dx::workflow killable(const std::string& dir) {
  dx::workflow wf{"killable"};
  std::vector<dx::step_ref> steps;
  for (int i = 0; i < 40; ++i) {
    auto s = wf.step("s" + std::to_string(i), mark, dir, "s" + std::to_string(i), std::int64_t{i});
    if (i > 0) s.after(steps[static_cast<std::size_t>(i - 1)], steps[static_cast<std::size_t>(i / 2)]);
    steps.push_back(s);
  }
  auto parts = wf.map("sum", mark_chunk, dx::split::range(0, 3000, 100), dir);
  parts.after(steps.back());
  wf.reduce("total", plus, parts);
  return wf;
}

}  // namespace wfnet_test

DX_REMOTE(wfnet_test::mark);
DX_REMOTE(wfnet_test::mark_chunk);

TEST_CASE("workflow child: runs or resumes the killable workflow", "[.][workflow-child]") {
  const char* dir = std::getenv("DX_TEST_DIR");
  REQUIRE(dir != nullptr);
  const auto opts = dx::run_options{}.with_journal(std::string(dir) + "/journal.sqlite");
  dx::cluster cl{
      dx::options{}.threads(2).transport(dx::transport_kind::in_process).local_processes(2).persist_cost_model(false)};
  std::string id;
  std::ifstream(std::string(dir) + "/run") >> id;
  dx::workflow_run run;
  if (id.empty()) {
    run = cl.start(killable(dir), opts);
    std::ofstream(std::string(dir) + "/run.tmp") << run.id() << '\n';
    std::rename((std::string(dir) + "/run.tmp").c_str(), (std::string(dir) + "/run").c_str());
  } else {
    try {
      run = dx::workflow_run::resume(cl, id, opts);
    } catch (const dx::workflow_error&) {
      return;  // it had ended before the kill
    }
  }
  REQUIRE(run.wait() == dx::workflow_status::succeeded);
}

TEST_CASE("workflow run: a head killed at random moments and resumed each time runs every committed step once",
          "[net][workflow-run]") {
  const dx_support::temp_dir dir("dx_wfkill");
  const std::string d = dir.path().string();
  std::mt19937 rng(std::random_device{}());
  auto marks = [&] {
    std::map<std::string, int> n;
    std::ifstream in(d + "/marks");
    for (std::string k; std::getline(in, k);) ++n[k];
    return n;
  };
  auto total_marks = [&] {
    const auto n = marks();
    return std::accumulate(n.begin(), n.end(), 0, [](int sum, const auto& m) { return sum + m.second; });
  };
  std::map<std::string, int> frozen;  // steps committed SUCCEEDED, with their runs at that moment
  bool finished = false;
  int killed_mid_run = 0;  // kills that found the run unfinished
  for (int round = 0; round < 12 && !finished; ++round) {
    const int before = total_marks();
    const pid_t head = dx_support::spawn_self({"workflow child: runs or resumes the killable workflow"},
                                              {"DX_TEST_DIR=" + d, "DX_LOG=error"});
    const bool last = round == 11;
    bool exited = false;
    if (!last) {
      // The kill lands at a random moment after this head has made progress (a run recorded and a
      // step run): a slow start (a sanitizer build, a busy machine) must not use up every kill
      // before the run exists.
      const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      int status = 0;
      while (std::chrono::steady_clock::now() < limit) {
        if (::waitpid(head, &status, WNOHANG) == head) {
          exited = true;
          break;
        }
        if (total_marks() > before && std::filesystem::exists(d + "/run")) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (!exited) {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 250)(rng)));
        ::kill(head, SIGKILL);
      }
    }
    if (!exited) exited = dx_support::reap_child(head, std::chrono::seconds(60));
    if (last) REQUIRE(exited);
    std::string id;
    std::ifstream(d + "/run") >> id;
    if (id.empty()) continue;  // killed before the run was recorded
    auto j = dx::detail::journal::open(d + "/journal.sqlite", dx::detail::journal::open_mode::read_only);
    const auto state = j->load(id);
    const auto now = marks();
    for (const auto& t : state.tasks) {
      if (t.status != "SUCCEEDED" || frozen.count(t.key)) continue;
      frozen[t.key] = now.count(t.key) ? now.at(t.key) : 0;
    }
    finished = state.run.status == "SUCCEEDED";
    if (!finished) ++killed_mid_run;
    INFO("round " << round << ": " << state.run.status << ", " << frozen.size() << " tasks committed");
  }
  REQUIRE(finished);
  CHECK(killed_mid_run >= 1);
  const auto runs = marks();
  for (const auto& [key, n] : frozen) {
    INFO(key);
    const int now = runs.count(key) ? runs.at(key) : 0;
    CHECK(now == n);  // never ran again once committed
  }
  for (int i = 0; i < 40; ++i) CHECK(runs.count("s" + std::to_string(i)) == 1);  // every step ran
  CHECK(frozen.count("total") == 1);
  std::string id;
  std::ifstream(d + "/run") >> id;
  dx::cluster cl;
  auto j = dx::detail::journal::open(d + "/journal.sqlite", dx::detail::journal::open_mode::read_only);
  const auto total = j->result(id, "total");
  REQUIRE(total);
  CHECK(dx::detail::read_value<std::int64_t>(std::span<const char>(total->data(), total->size())) == 3000 * 2999 / 2);
}
