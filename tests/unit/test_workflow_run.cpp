// Workflow runs (dx/workflow_run.hpp) on a cluster of local threads: steps in dependency order with
// their inputs, failures skipping what depends on them, split steps and their aggregates, command
// steps, the journal's record, the cache, and resuming an interrupted run without rerunning what
// had finished.
#include <dx/workflow_run.hpp>

#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include "common/sha256.hpp"
#include "journal/journal.hpp"
#include "workflow/cache_filter.hpp"
#include "workflow/run_journal.hpp"

#include <nlohmann/json.hpp>
#include "temp_dir.hpp"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace wfrun_test {

std::atomic<int> loads{0};
std::atomic<int> fits{0};

std::int64_t load(std::int64_t n) {
  ++loads;
  return n * 10;
}
std::int64_t fit(std::int64_t data, std::int64_t iterations) {
  ++fits;
  return data + iterations;
}
std::int64_t explode(std::int64_t) { throw std::runtime_error("no data"); }
std::int64_t partial_sum(dx::chunk c) {
  std::int64_t s = 0;
  for (std::int64_t i = c.start; i < c.end; ++i) s += i;
  return s;
}
std::int64_t add(std::int64_t a, std::int64_t b) { return a + b; }
std::string join(std::string a, std::string b) { return a + "," + b; }
std::string item_upper(dx::chunk c) {
  std::string out;
  for (const auto& it : c.items)
    for (char ch : it) out += static_cast<char>(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
  return out;
}
/// Waits (bounded) until `path` exists, counting its run in `path`.runs.
std::int64_t wait_for_file(std::string path, std::int64_t v) {
  std::ofstream(path + ".runs", std::ios::app) << "run\n";
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(2ms);
  return v;
}

/// Throws until it has been called `fail_times` times (counted per name in `flaky_calls`).
std::atomic<int> flaky_calls{0};
std::int64_t flaky(std::int64_t fail_times) {
  if (++flaky_calls <= fail_times) throw std::runtime_error("not yet");
  return 7;
}
/// Busy for 500 us per index of its chunk (a clock, not a sleep: a sleep overshoots on a busy
/// machine), so a chunk's duration is proportional to its size.
std::int64_t busy_chunk(dx::chunk c) {
  const auto end = std::chrono::steady_clock::now() + (c.end - c.start) * 500us;
  while (std::chrono::steady_clock::now() < end) {
  }
  return c.end - c.start;
}

}  // namespace wfrun_test

DX_REMOTE(wfrun_test::flaky);
DX_REMOTE(wfrun_test::busy_chunk);
DX_REMOTE(wfrun_test::load);
DX_REMOTE(wfrun_test::fit);
DX_REMOTE(wfrun_test::explode);
DX_REMOTE(wfrun_test::partial_sum);
DX_REMOTE(wfrun_test::add);
DX_REMOTE(wfrun_test::join);
DX_REMOTE(wfrun_test::item_upper);
DX_REMOTE(wfrun_test::wait_for_file);

using namespace wfrun_test;

namespace {

/// A subtask's part, from its parameters {"start":S,"end":E}.
std::pair<std::int64_t, std::int64_t> part_of(const dx::task_state& t) {
  const auto j = nlohmann::json::parse(t.parameters);
  return {j.at("start").get<std::int64_t>(), j.at("end").get<std::int64_t>()};
}

dx::task_status status_of(const dx::workflow_run& run, const std::string& key) {
  for (const auto& t : run.steps())
    if (t.key == key) return t.status;
  FAIL("no task " << key);
  return dx::task_status::pending;
}

std::size_t lines_of(const std::string& path) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

}  // namespace

TEST_CASE("workflow run: steps run in order with their inputs, the result is the last step's", "[workflow-run]") {
  dx::cluster cl;
  dx::workflow wf{"train"};
  auto l = wf.step("load", load, std::int64_t{4});
  wf.step("fit", fit, l, std::int64_t{2});
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  CHECK(run.status() == dx::workflow_status::succeeded);
  CHECK(run.result<std::int64_t>("load") == 40);
  CHECK(run.result<std::int64_t>("fit") == 42);
  CHECK(status_of(run, "fit") == dx::task_status::succeeded);
  CHECK_THROWS_AS(run.result<std::int64_t>("nope"), dx::workflow_error);
}

TEST_CASE("workflow run: a failed step fails the run and skips what depends on it", "[workflow-run]") {
  dx::cluster cl;
  dx::workflow wf{"broken"};
  auto a = wf.step("a", explode, std::int64_t{1});
  auto b = wf.step("b", fit, a, std::int64_t{1});
  wf.step("c", fit, b, std::int64_t{1});
  wf.step("independent", load, std::int64_t{7});
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  CHECK(run.status() == dx::workflow_status::failed);
  CHECK(status_of(run, "a") == dx::task_status::failed);
  CHECK(status_of(run, "b") == dx::task_status::skipped);
  CHECK(status_of(run, "c") == dx::task_status::skipped);
  CHECK(status_of(run, "independent") == dx::task_status::succeeded);
  CHECK(run.result<std::int64_t>("independent") == 70);
  for (const auto& t : run.steps())
    if (t.key == "a") CHECK_THAT(t.error, Catch::Contains("no data"));
}

TEST_CASE("workflow run: a split step's chunks are aggregated as a sequential fold would", "[workflow-run]") {
  dx::cluster cl;
  for (std::int64_t chunk :
       {std::int64_t{0}, std::int64_t{1}, std::int64_t{7}, std::int64_t{100}, std::int64_t{5000}}) {
    INFO("chunk " << chunk);
    dx::workflow wf{"sum"};
    auto parts = wf.map("parts", partial_sum, dx::split::range(3, 1003, chunk));
    wf.reduce("total", add, parts);
    auto run = cl.start(wf, dx::run_options{}.without_journal());
    REQUIRE(run.wait_for(20s));
    REQUIRE(run.status() == dx::workflow_status::succeeded);
    std::int64_t expected = 0;
    for (std::int64_t i = 3; i < 1003; ++i) expected += i;
    CHECK(run.result<std::int64_t>("total") == expected);
    std::size_t chunks = 0;
    for (const auto& t : run.steps()) chunks += t.parent == "parts" ? 1 : 0;
    if (chunk == 7) CHECK(chunks == 143);
  }
  // Items keep their order through a reducer that is not commutative.
  dx::workflow wf{"words"};
  auto up = wf.map("up", item_upper, dx::split::over_items({"a", "b", "c", "d", "e"}, 1));
  wf.reduce("joined", join, up);
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  CHECK(run.result<std::string>("joined") == "A,B,C,D,E");
}

TEST_CASE("workflow run: a command step's result is its standard output", "[workflow-run]") {
  dx::cluster cl;
  auto wf = dx::workflow::from_json(R"({"name": "cmd", "steps": [
      {"name": "hello", "command": ["echo", "{word}", "{n}"], "parameters": {"word": "hi", "n": 3}}]})");
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  REQUIRE(run.status() == dx::workflow_status::succeeded);
  CHECK(run.result_bytes("hello") == "hi 3\n");
}

TEST_CASE("workflow run: journaled, listed, and cached the second time", "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const auto opts = dx::run_options{}.with_journal((dir.path() / "journal.sqlite").string());
  dx::cluster cl;
  dx::workflow wf{"cached"};
  auto l = wf.step("load", load, std::int64_t{5});
  wf.step("fit", fit, l, std::int64_t{1});
  loads = 0;
  fits = 0;
  auto first = cl.start(wf, opts);
  REQUIRE(first.wait_for(20s));
  CHECK(first.status() == dx::workflow_status::succeeded);
  CHECK(loads == 1);
  CHECK(fits == 1);
  auto second = cl.start(wf, opts);
  REQUIRE(second.wait_for(20s));
  CHECK(second.status() == dx::workflow_status::succeeded);
  CHECK(second.id() != first.id());
  CHECK(loads == 1);  // nothing ran again
  CHECK(fits == 1);
  CHECK(status_of(second, "load") == dx::task_status::cached);
  CHECK(second.result<std::int64_t>("fit") == 51);
  const auto runs = cl.runs(opts);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].id == first.id());
  CHECK(runs[0].status == dx::workflow_status::succeeded);
  CHECK(runs[1].name == "cached");
}

TEST_CASE("workflow run: a step's replicate and deadline are kept in the journal's definition", "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const auto opts = dx::run_options{}.with_journal((dir.path() / "journal.sqlite").string());
  dx::cluster cl;  // no workers: the step runs once, on the local threads
  dx::workflow wf{"replicated"};
  wf.step("load", load, std::int64_t{5})
      .with(dx::task_options{}
                .with_replicate({.copies = 3, .quorum = 2, .compare = dx::comparison::tolerance(1e-6, 0.5)})
                .with_deadline({.soft_factor = 2.5, .hard = 45s}));
  auto run = cl.start(wf, opts);
  REQUIRE(run.wait_for(20s));
  CHECK(run.status() == dx::workflow_status::succeeded);
  CHECK(run.result<std::int64_t>("load") == 50);
  auto j = dx::detail::journal::open(opts.journal, dx::detail::journal::open_mode::read_only);
  const auto steps = dx::workflow::from_json(j->run(run.id()).definition).steps();
  REQUIRE(steps.size() == 1);
  REQUIRE(steps[0].options.replication);
  CHECK(steps[0].options.replication->copies == 3);
  CHECK(steps[0].options.replication->quorum == 2);
  CHECK(steps[0].options.replication->compare.kind == dx::comparison::kind_t::tolerance);
  CHECK(steps[0].options.replication->compare.relative == 1e-6);
  CHECK(steps[0].options.replication->compare.absolute == 0.5);
  REQUIRE(steps[0].options.deadlines);
  CHECK(steps[0].options.deadlines->soft_factor == 2.5);
  CHECK(steps[0].options.deadlines->hard == std::chrono::nanoseconds(45s));
}

TEST_CASE("workflow run: a journal opened again still offers what it holds to the cache", "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const auto opts = dx::run_options{}.with_journal((dir.path() / "journal.sqlite").string());
  dx::workflow wf{"cached"};
  auto l = wf.step("load", load, std::int64_t{6});
  wf.step("fit", fit, l, std::int64_t{2});
  loads = 0;
  fits = 0;
  {
    dx::cluster cl;
    auto first = cl.start(wf, opts);
    REQUIRE(first.wait_for(20s));
    REQUIRE(first.status() == dx::workflow_status::succeeded);
  }  // the run, its cluster and the journal's writer are gone: the next run opens it anew
  dx::cluster cl;
  auto second = cl.start(wf, opts);
  REQUIRE(second.wait_for(20s));
  CHECK(second.status() == dx::workflow_status::succeeded);
  CHECK(loads == 1);
  CHECK(fits == 1);
  CHECK(status_of(second, "load") == dx::task_status::cached);
  CHECK(status_of(second, "fit") == dx::task_status::cached);
  CHECK(second.result<std::int64_t>("fit") == 62);
}

TEST_CASE("workflow run: a journal being closed on one thread is opened again on another once it is closed",
          "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const auto path = dir.path() / "journal.sqlite";
  auto first = dx::detail::run_journal::at(path);
  // A change that takes a while, so that closing the writer (which applies it first) does too.
  first->change([](dx::detail::journal&) { std::this_thread::sleep_for(300ms); });
  std::thread closer([w = std::move(first)]() mutable { w.reset(); });  // the last holder, elsewhere
  std::this_thread::sleep_for(50ms);
  std::shared_ptr<dx::detail::run_journal> second;
  CHECK_NOTHROW(second = dx::detail::run_journal::at(path));  // waits for the close, not "in use"
  closer.join();
  REQUIRE(second);
  CHECK(second.get() != nullptr);
}

TEST_CASE("workflow run: the cache filter holds every key added, and few others", "[workflow-run]") {
  const auto key = [](const char* set, int i) { return dx::detail::sha256_hex(std::string(set) + std::to_string(i)); };
  dx::detail::cache_filter f;
  for (int i = 0; i < 20000; ++i) f.add(key("added ", i));
  for (int i = 0; i < 20000; ++i) REQUIRE(f.may_hold(key("added ", i)));
  int false_positives = 0;
  for (int i = 0; i < 20000; ++i) false_positives += f.may_hold(key("other ", i));
  CHECK(false_positives < 20);  // about 1 in 100,000 at this load
}

TEST_CASE("workflow run: a run interrupted by its cluster resumes in another without rerunning what finished",
          "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const auto opts = dx::run_options{}.with_journal((dir.path() / "journal.sqlite").string());
  const std::string gate = (dir.path() / "gate").string();
  dx::workflow good{"resumable"};
  auto a = good.step("first", wait_for_file, (dir.path() / "open").string(), std::int64_t{1});
  good.step("second", wait_for_file, gate, std::int64_t{2}).after(a);
  std::ofstream((dir.path() / "open").string()) << "open\n";
  std::string id;
  // The running step may end only once the stopping cluster has interrupted the run (the
  // cluster's destructor waits for it): a thread opens the gate when the journal says so.
  std::thread opener;
  {
    dx::cluster cl;
    auto run = cl.start(good, opts);
    id = run.id();
    const auto end = std::chrono::steady_clock::now() + 20s;
    while (lines_of(gate + ".runs") < 1 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(2ms);
    REQUIRE(lines_of(gate + ".runs") == 1);  // second is running, first has finished
    opener = std::thread([&opts, &gate, id] {
      const auto until = std::chrono::steady_clock::now() + 20s;
      while (std::chrono::steady_clock::now() < until) {
        auto j = dx::detail::journal::open(opts.journal, dx::detail::journal::open_mode::read_only);
        if (j->load(id).run.status == "INTERRUPTED") break;
        std::this_thread::sleep_for(2ms);
      }
      std::ofstream(gate) << "open\n";
    });
  }
  opener.join();
  {
    dx::cluster cl;
    const auto runs = cl.runs(opts);
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].status == dx::workflow_status::interrupted);
    auto run = dx::workflow_run::resume(cl, id, opts);
    CHECK(run.id() == id);
    REQUIRE(run.wait_for(20s));
    CHECK(run.status() == dx::workflow_status::succeeded);
    CHECK(run.result<std::int64_t>("second") == 2);
    CHECK(lines_of((dir.path() / "open").string() + ".runs") == 1);  // first did not run again
    CHECK(lines_of(gate + ".runs") == 2);                            // second had not finished: it ran again
    CHECK_THROWS_AS(dx::workflow_run::resume(cl, id, opts), dx::workflow_error);  // it has ended
  }
}

TEST_CASE("workflow run: a chunk that fails fails its split step and skips the aggregate", "[workflow-run]") {
  dx::cluster cl;
  auto wf = dx::workflow::from_json(R"({"name": "bad", "steps": [
      {"name": "each", "command": ["sh", "-c", "test {item} != b"], "split": {"items": ["a", "b", "c"]}},
      {"name": "all", "aggregate": {"of": "each", "command": ["cat"]}}]})");
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(20s));
  CHECK(run.status() == dx::workflow_status::failed);
  CHECK(status_of(run, "each#1") == dx::task_status::failed);
  CHECK(status_of(run, "each") == dx::task_status::failed);
  CHECK(status_of(run, "all") == dx::task_status::skipped);
  CHECK(status_of(run, "each#0") == dx::task_status::succeeded);
}

TEST_CASE("workflow run: cancel stops the running steps and ends the run CANCELLED", "[workflow-run]") {
  dx::cluster cl;
  auto wf = dx::workflow::from_json(R"({"name": "slow", "steps": [
      {"name": "sleep", "command": ["sleep", "30"]},
      {"name": "after", "command": ["true"], "after": ["sleep"]}]})");
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  std::this_thread::sleep_for(50ms);
  CHECK(run.cancel());
  CHECK_FALSE(run.cancel());
  REQUIRE(run.wait_for(20s));
  CHECK(run.status() == dx::workflow_status::cancelled);
  CHECK(status_of(run, "after") == dx::task_status::cancelled);
}

TEST_CASE("workflow run: interrupt stops the running steps at once and leaves the run INTERRUPTED, to resume",
          "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const auto opts = dx::run_options{}.with_journal((dir.path() / "journal.sqlite").string());
  auto wf = dx::workflow::from_json(R"({"name": "long", "steps": [
      {"name": "first", "command": ["true"]},
      {"name": "sleep", "command": ["sleep", "{seconds}"], "parameters": {"seconds": 30}, "after": ["first"]}]})");
  std::string id;
  {
    dx::cluster cl;
    auto run = cl.start(wf, opts);
    id = run.id();
    const auto end = std::chrono::steady_clock::now() + 20s;
    while (status_of(run, "sleep") != dx::task_status::running && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(2ms);
    REQUIRE(status_of(run, "sleep") == dx::task_status::running);
    const auto asked = std::chrono::steady_clock::now();
    CHECK(run.interrupt());
    CHECK_FALSE(run.interrupt());
    REQUIRE(run.wait_for(20s));
    CHECK(std::chrono::steady_clock::now() - asked < 10s);  // the 30 s command was stopped
    CHECK(run.status() == dx::workflow_status::interrupted);
    CHECK_FALSE(run.cancel());
  }
  std::vector<dx::task_state> tasks;
  CHECK(dx::workflow_run::recorded(id, opts, &tasks).status == dx::workflow_status::interrupted);
  REQUIRE(tasks.size() == 2);
  CHECK(tasks[0].status == dx::task_status::succeeded);
  CHECK(tasks[1].status == dx::task_status::running);  // to run again on resume
}

TEST_CASE("workflow run: request_cancel asks the head of a run through its journal, which cancels it",
          "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const auto opts = dx::run_options{}.with_journal((dir.path() / "journal.sqlite").string());
  auto wf = dx::workflow::from_json(R"({"name": "long", "steps": [
      {"name": "sleep", "command": ["sleep", "30"]},
      {"name": "after", "command": ["true"], "after": ["sleep"]}]})");
  dx::cluster cl;
  auto run = cl.start(wf, opts);
  const auto asked = std::chrono::steady_clock::now();
  // The journal's writer (here, of this process) takes the request and cancels the run.
  const dx::cancel_answer a = dx::workflow_run::request_cancel(run.id(), opts, 20s);
  INFO(a.message);
  CHECK(a.cancelled);
  CHECK(a.status == dx::workflow_status::cancelled);
  CHECK_THAT(a.message, Catch::Contains("CANCELLED"));
  CHECK(std::chrono::steady_clock::now() - asked < 10s);
  REQUIRE(run.wait_for(20s));
  CHECK(run.status() == dx::workflow_status::cancelled);
  CHECK(status_of(run, "after") == dx::task_status::cancelled);

  // A run that ended is not asked; a run the journal does not have is an error.
  const dx::cancel_answer again = dx::workflow_run::request_cancel(run.id(), opts, 20s);
  CHECK_FALSE(again.cancelled);
  CHECK(again.status == dx::workflow_status::cancelled);
  CHECK_THAT(again.message, Catch::Contains("is not running: it ended CANCELLED"));
  CHECK_THROWS_AS(dx::workflow_run::request_cancel("r-nope", opts), dx::workflow_error);
  auto j = dx::detail::journal::open(opts.journal, dx::detail::journal::open_mode::read_only);
  REQUIRE(j->request(1).has_value());
  CHECK(j->request(1)->answer == "cancelled");
  CHECK(j->open_requests().empty());
}

TEST_CASE("workflow run: runs a dead head left RUNNING are INTERRUPTED when the journal is next opened to write",
          "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const auto path = (dir.path() / "journal.sqlite").string();
  std::string id;
  {
    auto j = dx::detail::journal::open(path, dx::detail::journal::open_mode::write);
    id = j->create_run("orphan", "{}");
    j->set_run_status(id, "RUNNING");
    j->commit();
  }
  dx::cluster cl;
  const auto opts = dx::run_options{}.with_journal(path);
  REQUIRE(cl.runs(opts).size() == 1);
  CHECK(cl.runs(opts)[0].status == dx::workflow_status::running);  // read-only: nothing changes
  dx::workflow wf{"next"};
  wf.step("load", load, std::int64_t{1});
  auto run = cl.start(wf, opts);
  REQUIRE(run.wait_for(20s));
  const auto runs = cl.runs(opts);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].id == id);
  CHECK(runs[0].status == dx::workflow_status::interrupted);
}

TEST_CASE("workflow run: chunk auto measures a few small chunks, then cuts the rest to take the target time",
          "[workflow-run]") {
  dx::cluster cl{dx::options{}.threads(2)};
  // 4,000 indices of 500 us: at most 500 a chunk (4 per thread); 200 ms is 400 indices.
  auto wf = dx::workflow::from_json(R"({"name": "auto", "steps": [
      {"name": "parts", "function": "wfrun_test::busy_chunk", "split": {"range": [0, 4000]}},
      {"name": "total", "aggregate": {"of": "parts", "function": "wfrun_test::add"}}]})");
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(60s));
  REQUIRE(run.status() == dx::workflow_status::succeeded);
  CHECK(run.result<std::int64_t>("total") == 4000);
  std::vector<std::pair<std::int64_t, std::int64_t>> parts;
  for (const auto& t : run.steps())
    if (t.parent == "parts") parts.push_back(part_of(t));
  REQUIRE(parts.size() >= 4);
  // The chunks tile the range in order.
  for (std::size_t i = 0; i < parts.size(); ++i) CHECK(parts[i].first == (i == 0 ? 0 : parts[i - 1].second));
  CHECK(parts.back().second == 4000);
  // Two probes (one per thread) of 500 / 16 indices, then chunks near 400 indices (the clock of a
  // busy machine only makes chunks look slower, so smaller), never over 500.
  CHECK(parts[0].second - parts[0].first == 31);
  CHECK(parts[1].second - parts[1].first == 31);
  const std::int64_t sized = parts[2].second - parts[2].first;
  CHECK(sized >= 100);
  CHECK(sized <= 500);
  for (std::size_t i = 2; i + 1 < parts.size(); ++i) CHECK(parts[i].second - parts[i].first == sized);
}

TEST_CASE("workflow run: a step retried after it threw is RETRYING between attempts, then succeeds", "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const auto path = (dir.path() / "journal.sqlite").string();
  flaky_calls = 0;
  dx::cluster cl;
  auto wf = dx::workflow::from_json(R"({"name": "flaky", "steps": [
      {"name": "f", "function": "wfrun_test::flaky", "parameters": [2],
       "retries": {"max_attempts": 3, "backoff": "20ms"}}]})");
  auto run = cl.start(wf, dx::run_options{}.with_journal(path));
  REQUIRE(run.wait_for(20s));
  REQUIRE(run.status() == dx::workflow_status::succeeded);
  CHECK(run.result<std::int64_t>("f") == 7);
  CHECK(flaky_calls == 3);
  const auto steps = run.steps();
  REQUIRE(steps.size() == 1);
  CHECK(steps[0].attempts == 3);
  CHECK(steps[0].error.empty());
  // The journal saw it wait twice, with the exception it waited after.
  auto j = dx::detail::journal::open(path, dx::detail::journal::open_mode::read_only);
  int retrying = 0;
  for (const auto& t : j->transitions(run.id()))
    if (t.key == "f" && t.status == "RETRYING") {
      ++retrying;
      CHECK(t.detail.find("not yet") != std::string::npos);
    }
  CHECK(retrying == 2);
}

TEST_CASE("workflow run: a long chain of steps and a failure at its head skip every step below", "[workflow-run]") {
  dx::cluster cl;
  dx::workflow wf{"chain"};
  auto prev = wf.step("s0", explode, std::int64_t{0});
  for (int i = 1; i < 20000; ++i) prev = wf.step("s" + std::to_string(i), fit, prev, std::int64_t{1});
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  REQUIRE(run.wait_for(60s));
  CHECK(run.status() == dx::workflow_status::failed);
  CHECK(status_of(run, "s19999") == dx::task_status::skipped);
}

TEST_CASE("workflow run: a step cancelled before the local threads started it ends CANCELLED, the run with it",
          "[workflow-run]") {
  const dx_support::temp_dir dir("dx_wfrun");
  const std::string gate = (dir.path() / "gate").string();
  dx::cluster cl{dx::options{}.threads(1)};
  // The only thread holds the first step; the second waits in the executor's queue when the run is
  // cancelled, so it never starts: the run must not wait for it.
  dx::workflow wf{"queued"};
  wf.step("holds", wait_for_file, gate, std::int64_t{1});
  wf.step("queued", load, std::int64_t{2});
  auto run = cl.start(wf, dx::run_options{}.without_journal());
  const auto end = std::chrono::steady_clock::now() + 20s;
  while (lines_of(gate + ".runs") < 1 && std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(2ms);
  REQUIRE(lines_of(gate + ".runs") == 1);
  loads = 0;
  CHECK(run.cancel());
  std::ofstream(gate) << "open\n";
  REQUIRE(run.wait_for(20s));
  CHECK(run.status() == dx::workflow_status::cancelled);
  CHECK(status_of(run, "queued") == dx::task_status::cancelled);
  CHECK(loads == 0);
}
