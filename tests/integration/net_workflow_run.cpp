// Workflow runs on worker processes, over both transports: function steps with inputs, a split
// step and its aggregate, a command step, and the journal's record of the run.
#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include "temp_dir.hpp"
#include "transports.hpp"

#include <chrono>
#include <cstdint>
#include <string>

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
}
