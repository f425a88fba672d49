// dx_observe_job: a small distributed job for the observability integration tests
// (observe_tools.py). It serves the head's HTTP endpoint and runs in two phases:
//
//   phase 1  300 quick registered tasks of two kinds (obs::square, obs::slow_square) and a few
//            that throw (obs::fail_on), an application counter (app_rows_total{source="csv"})
//            and a user alert rule; prints "phase1 done <completed>" once they have finished.
//   phase 2  one obs::hold task per worker thread (the head's threads included), each sleeping
//            until the release file exists, so the job stays up with a stable completed count
//            while the tests look at it; prints "phase2 holding <tasks>".
//
// With --workflow, phase 1 also runs a workflow to its end (a step, a split of 20 chunks, their
// aggregate and a step taking two inputs), and phase 2 starts a second one whose first step holds
// until the release file exists; after "phase2 holding" come "workflow done <id>" and "workflow
// held <id>". The job waits for the second run before it exits.
//
// Usage: dx_observe_job RELEASE_FILE [DEADLINE_SECONDS] [--workflow]
// stdout: line 1 the HTTP endpoint ("127.0.0.1:PORT"), then the phase lines. Every wait is
// bounded: past the deadline (default 180 s) the program says so on stderr and exits with 3.
#include <dx/dx.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace obs {

int square(int x) { return x * x; }

int slow_square(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return x * x;
}

std::int64_t twice(std::int64_t x) { return 2 * x; }

std::int64_t chunk_sum(dx::chunk c) {
  std::int64_t s = 0;
  for (std::int64_t i = c.start; i < c.end; ++i) s += i;
  return s;
}

std::int64_t add(std::int64_t a, std::int64_t b) { return a + b; }

int fail_on(int x) { throw std::runtime_error("obs::fail_on(" + std::to_string(x) + ") fails on purpose"); }

/// Sleeps in 50 ms steps until `path` exists or 120 s pass; returns how many steps it slept.
int hold(std::string path) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int steps = 0;
  std::error_code ec;
  while (!std::filesystem::exists(path, ec) && std::chrono::steady_clock::now() < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ++steps;
  }
  return steps;
}

}  // namespace obs

DX_REMOTE(obs::square);
DX_REMOTE(obs::slow_square);
DX_REMOTE(obs::fail_on);
DX_REMOTE(obs::hold);
DX_REMOTE(obs::twice);
DX_REMOTE(obs::chunk_sum);
DX_REMOTE(obs::add);

namespace {

constexpr int quick_tasks = 300;  // half obs::square, half obs::slow_square
constexpr int failing_tasks = 5;

[[noreturn]] void give_up(const char* what) {
  std::fprintf(stderr, "dx_observe_job: %s before the deadline; giving up\n", what);
  std::fflush(stderr);
  std::_Exit(3);  // the tests kill the process group, worker processes included
}

template <class Future, class Deadline>
void wait_or_give_up(const Future& f, Deadline deadline, const char* what) {
  if (f.wait_until(deadline) != dx::future_status::ready) give_up(what);
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s RELEASE_FILE [DEADLINE_SECONDS]\n", argv[0]);
    return 2;
  }
  const std::string release = argv[1];
  const int deadline_s = argc > 2 ? std::atoi(argv[2]) : 180;
  const bool with_workflow = argc > 3 && std::string(argv[3]) == "--workflow";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(deadline_s > 0 ? deadline_s : 180);

  try {
    dx::cluster cl{dx::options{}.local_processes(2).threads(2).http("127.0.0.1:0").persist_cost_model(false)};
    std::printf("%s\n", cl.http_endpoint().c_str());
    std::fflush(stdout);

    // Phase 1.
    dx::counter rows = cl.metrics().add_counter("app_rows_total", "Rows read by the test job", {{"source", "csv"}});
    cl.add_alert_rule(
        dx::alert_rule("demo").on("dx_worker_busy_threads").above(0).for_at_least(std::chrono::milliseconds(100)));

    std::vector<dx::future<int>> quick;
    std::vector<dx::future<int>> failing;
    quick.reserve(quick_tasks);
    for (int i = 0; i < quick_tasks; ++i) {
      quick.push_back(i % 2 == 0 ? cl.submit(obs::square, i) : cl.submit(obs::slow_square, i));
    }
    for (int i = 0; i < failing_tasks; ++i) failing.push_back(cl.submit(obs::fail_on, i));

    long completed = 0;
    for (int i = 0; i < quick_tasks; ++i) {
      wait_or_give_up(quick[i], deadline, "phase 1 did not finish");
      if (quick[i].get() != i * i) {
        std::fprintf(stderr, "dx_observe_job: task %d returned a wrong value\n", i);
        return 1;
      }
      ++completed;
      rows.inc(10);
    }
    int failed = 0;
    for (auto& f : failing) {
      wait_or_give_up(f, deadline, "phase 1 (failing tasks) did not finish");
      try {
        f.get();
      } catch (const std::exception&) {
        ++failed;
      }
    }
    if (failed != failing_tasks) {
      std::fprintf(stderr, "dx_observe_job: %d of %d failing tasks failed\n", failed, failing_tasks);
      return 1;
    }
    dx::workflow_run done_run, held_run;
    if (with_workflow) {
      done_run = cl.start(dx::workflow::from_json(R"({"name": "observe-demo", "steps": [
          {"name": "seed", "function": "obs::twice", "parameters": [21]},
          {"name": "parts", "function": "obs::chunk_sum", "split": {"range": [0, 2000], "chunk": 100},
           "after": ["seed"]},
          {"name": "total", "aggregate": {"of": "parts", "function": "obs::add"}},
          {"name": "report", "function": "obs::add", "inputs": {"0": "seed", "1": "total"}}]})"),
                          dx::run_options{}.without_journal());
      if (!done_run.wait_for(deadline - std::chrono::steady_clock::now())) give_up("the workflow did not finish");
      if (done_run.status() != dx::workflow_status::succeeded ||
          done_run.result<std::int64_t>("report") != 42 + 1999000) {
        std::fprintf(stderr, "dx_observe_job: the workflow ended %s\n",
                     std::string(dx::to_string(done_run.status())).c_str());
        return 1;
      }
    }
    std::printf("phase1 done %ld\n", completed);
    std::fflush(stdout);

    // Phase 2: one hold per worker thread (the head's own threads run tasks too).
    std::size_t threads = 0;
    for (const auto& w : cl.workers()) threads += w.threads;
    std::vector<dx::future<int>> holds;
    for (std::size_t i = 0; i < threads; ++i) holds.push_back(cl.submit(obs::hold, release));
    if (with_workflow) {
      dx::workflow held{"observe-held"};
      auto wait = held.step("wait", obs::hold, release);
      held.step("after", obs::twice, std::int64_t{3}).after(wait);
      held_run = cl.start(held, dx::run_options{}.without_journal());
    }
    std::printf("phase2 holding %zu\n", holds.size());
    if (with_workflow)
      std::printf("workflow done %s\nworkflow held %s\n", done_run.id().c_str(), held_run.id().c_str());
    std::fflush(stdout);
    for (auto& h : holds) {
      wait_or_give_up(h, deadline, "phase 2 was not released");
      h.get();
    }
    if (with_workflow && (!held_run.wait_for(deadline - std::chrono::steady_clock::now()) ||
                          held_run.status() != dx::workflow_status::succeeded))
      give_up("the held workflow did not succeed");
    std::printf("released\n");
    std::fflush(stdout);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx_observe_job: %s\n", e.what());
    return 1;
  }
  return 0;
}
