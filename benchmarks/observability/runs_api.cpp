// dx_bench_runs_api: what the workflow routes cost. A run of one split step of N chunks (default
// 100,000, one index each, a no-op function) on two worker processes, timed alone and while a
// client polls its views every INTERVAL ms (default 100: ten times the dashboard's rate; 0: without
// pause); the latency of each view (the run with its steps, a page of 100 chunks near the end, the
// list of runs), measured during the polled run and on the ended run.
//
//   dx_bench_runs_api [CHUNKS] [ROUNDS] [INTERVAL_MS]
//
// Prints one line per run and per view: medians with min-max. Rounds alternate the unpolled and
// the polled run, so that both see the same machine.
#include <dx/dx.hpp>

#include "http_client.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace bench {
std::int64_t noop_chunk(dx::chunk c) { return c.end - c.start; }
}  // namespace bench
DX_REMOTE(bench::noop_chunk);

namespace {

using clock_type = std::chrono::steady_clock;

struct spread {
  std::vector<double> v;
  void add(double x) { v.push_back(x); }
  std::string str(const char* unit, double scale) {
    if (v.empty()) return "none";
    std::sort(v.begin(), v.end());
    char buf[128];
    std::snprintf(buf, sizeof buf, "%.3g %s (%.3g-%.3g, n=%zu)", v[v.size() / 2] * scale, unit, v.front() * scale,
                  v.back() * scale, v.size());
    return buf;
  }
};

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const long chunks = argc > 1 ? std::atol(argv[1]) : 100'000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  const int interval_ms = argc > 3 ? std::atoi(argv[3]) : 100;
  dx::cluster cl{dx::options{}.local_processes(2).threads(2).http("127.0.0.1:0").persist_cost_model(false)};
  const std::string ep = cl.http_endpoint();
  const auto wf = dx::workflow::from_json(R"({"name": "bench", "steps": [
      {"name": "parts", "function": "bench::noop_chunk", "split": {"range": [0, )" +
                                          std::to_string(chunks) + R"(], "chunk": 1}}]})");
  spread alone, polled, detail, page, list, detail_done;
  for (int round = 0; round < rounds * 2; ++round) {
    const bool poll = round % 2 == 1;
    std::atomic<bool> stop{false};
    std::string id;
    const auto start = clock_type::now();
    auto run = cl.start(wf, dx::run_options{}.without_journal());
    id = run.id();
    std::thread poller;
    if (poll) {
      poller = std::thread([&] {
        dx_support::http::client c(ep);
        const std::string tail = "/api/runs/" + id + "?subtasks=parts&limit=100&offset=" + std::to_string(chunks - 100);
        while (!stop.load()) {
          auto t = clock_type::now();
          c.get("/api/runs/" + id);
          detail.add(seconds_since(t));
          t = clock_type::now();
          c.get(tail);
          page.add(seconds_since(t));
          t = clock_type::now();
          c.get("/api/runs");
          list.add(seconds_since(t));
          for (int slept = 0; slept < interval_ms && !stop.load(); slept += 5)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      });
    }
    run.wait();
    const double took = seconds_since(start);
    stop = true;
    if (poller.joinable()) poller.join();
    (poll ? polled : alone).add(took);
    std::printf("round %d: %s, %ld chunks in %.2f s\n", round / 2 + 1, poll ? "polled" : "alone", chunks, took);
    std::fflush(stdout);
    if (poll) {
      dx_support::http::client c(ep);
      for (int i = 0; i < 20; ++i) {
        auto t = clock_type::now();
        c.get("/api/runs/" + id);
        detail_done.add(seconds_since(t));
      }
    }
  }
  std::printf("run alone:            %s\n", alone.str("s", 1).c_str());
  std::printf("run polled:           %s\n", polled.str("s", 1).c_str());
  std::printf("GET run (running):    %s\n", detail.str("ms", 1e3).c_str());
  std::printf("GET page of 100:      %s\n", page.str("ms", 1e3).c_str());
  std::printf("GET /api/runs:        %s\n", list.str("ms", 1e3).c_str());
  std::printf("GET run (ended):      %s\n", detail_done.str("ms", 1e3).c_str());
  return 0;
}
