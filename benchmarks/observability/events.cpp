// dx_bench_events: what the WebSocket /api/events delivers and costs. A run of one split step of
// N chunks (default 100,000, one index each, a no-op function) on two worker processes, timed
// with 0 and with CLIENTS (default 4) clients reading /api/events, in alternating rounds; with
// clients, the events each received per second of the run (task, attempt and run events).
//
//   dx_bench_events [CHUNKS] [ROUNDS] [CLIENTS]
//
// Prints one line per round and medians with min-max: the head's task rate alone and with the
// clients, their ratio, and the events per second one client received.
#include <dx/dx.hpp>

#include "http_client.hpp"
#include "ws_client.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
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
  double median() {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
  }
  std::string str(const char* unit, double scale = 1) {
    if (v.empty()) return "none";
    std::sort(v.begin(), v.end());
    char buf[128];
    std::snprintf(buf, sizeof buf, "%.4g %s (%.4g-%.4g, n=%zu)", v[v.size() / 2] * scale, unit, v.front() * scale,
                  v.back() * scale, v.size());
    return buf;
  }
};

/// A metric's value from the head's /metrics (0 when absent).
double metric(const std::string& ep, const std::string& name) {
  const std::string text = dx_support::http::get(ep, "/metrics").body;
  const auto at = text.find("\n" + name + " ");
  return at == std::string::npos ? 0 : std::atof(text.c_str() + at + name.size() + 2);
}

/// Events in one message: the "type" keys counted, which is what a client parses per event.
std::size_t events_in(const std::string& m) {
  std::size_t n = 0;
  for (std::size_t at = m.find("\"type\":"); at != std::string::npos; at = m.find("\"type\":", at + 7)) ++n;
  return n;
}

/// A client that reads until told to stop, counting events and the last time it received one.
struct reader {
  std::unique_ptr<dx_support::ws::client> c;
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> events{0};
  std::atomic<bool> finished{false};  // saw a run event that is not RUNNING
  std::atomic<bool> ended{false};     // the connection ended (dropped as too slow)
  clock_type::time_point first{}, last{};
  std::thread t;

  explicit reader(const std::string& ep) : c(std::make_unique<dx_support::ws::client>(ep, "/api/events")) {
    if (!c->accepted()) {
      std::fprintf(stderr, "upgrade refused: %u\n", c->status());
      std::exit(1);
    }
    (void)c->read(std::chrono::seconds(5));  // {"events": []}: subscribed
    t = std::thread([this] {
      try {
        while (!stop.load()) {
          auto m = c->read(std::chrono::milliseconds(50));
          if (!m) continue;
          const auto now = clock_type::now();
          const std::size_t n = events_in(*m);
          if (events.load() == 0 && n > 0) first = now;
          if (n > 0) last = now;
          events.fetch_add(n);
          if (m->find(R"("type":"run")") != std::string::npos &&
              (m->find(R"("status":"SUCCEEDED")") != std::string::npos ||
               m->find(R"("status":"FAILED")") != std::string::npos))
            finished.store(true);
        }
      } catch (const std::exception& e) {
        ended.store(true);
      }
    });
  }
  ~reader() {
    stop.store(true);
    t.join();
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const long chunks = argc > 1 ? std::atol(argv[1]) : 100'000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const int clients = argc > 3 ? std::atoi(argv[3]) : 4;
  dx::cluster cl{dx::options{}.local_processes(2).threads(2).http("127.0.0.1:0").persist_cost_model(false)};
  const std::string ep = cl.http_endpoint();
  const auto wf = dx::workflow::from_json(R"({"name": "bench", "steps": [
      {"name": "parts", "function": "bench::noop_chunk", "split": {"range": [0, )" +
                                          std::to_string(chunks) + R"(], "chunk": 1}}]})");
  auto timed_run = [&] {
    const auto t0 = clock_type::now();
    auto run = cl.start(wf, dx::run_options{}.without_journal());
    run.wait();
    return std::chrono::duration<double>(clock_type::now() - t0).count();
  };
  timed_run();  // warm-up: workers, the cost model
  spread alone, with, ratio, delivered, per_run_events;
  double dropped_before = 0, dropped_total = 0;
  for (int r = 0; r < rounds; ++r) {
    const double a = timed_run();
    std::vector<std::unique_ptr<reader>> readers;
    for (int i = 0; i < clients; ++i) readers.push_back(std::make_unique<reader>(ep));
    const auto t0 = clock_type::now();
    const double w = timed_run();
    // The first client's events: those of the run, until its final status arrived.
    reader& one = *readers.front();
    const auto deadline = clock_type::now() + std::chrono::seconds(30);
    while (!one.finished.load() && !one.ended.load() && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const double span = std::chrono::duration<double>(one.last - t0).count();
    const double rate = static_cast<double>(one.events.load()) / span;
    const bool one_dropped = one.ended.load();
    readers.clear();
    const double dropped_now = metric(ep, "dx_http_websocket_dropped_total");
    const double dropped_here = dropped_now - dropped_before;
    dropped_before = dropped_now;
    dropped_total += dropped_here;
    alone.add(static_cast<double>(chunks) / a);
    with.add(static_cast<double>(chunks) / w);
    ratio.add(a / w);
    if (!one_dropped) {  // a dropped client's rate says nothing of what is delivered
      delivered.add(rate);
      per_run_events.add(static_cast<double>(one.events.load()));
    }
    std::printf(
        "round %d: alone %.0f tasks/s, with %d clients %.0f tasks/s; one client received %zu events in %.3f s: "
        "%.0f events/s%s; clients dropped as too slow: %.0f\n",
        r, chunks / a, clients, chunks / w, one.events.load(), span, rate, one_dropped ? " (it was dropped)" : "",
        dropped_here);
  }
  std::printf("task rate, 0 clients: %s\n", alone.str("tasks/s").c_str());
  std::printf("task rate, %d clients: %s\n", clients, with.str("tasks/s").c_str());
  std::printf("ratio (with / alone): %s\n", ratio.str("").c_str());
  std::printf("events delivered to one client: %s (%s per run)\n", delivered.str("events/s").c_str(),
              per_run_events.str("events").c_str());
  std::printf("clients dropped as too slow: %.0f of %d\n", dropped_total, rounds * clients);
  return 0;
}
