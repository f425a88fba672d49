// A job to watch: a pipeline of three kinds of tasks on two worker processes, with the dashboard,
// Prometheus metrics, an alert rule, a progress bar and a trace at the end.
//
//   build/examples/monitored_job [seconds] [address]     (default: about 30 s, 127.0.0.1:8787)
//   then open http://127.0.0.1:8787/ ; the trace is written to monitored_job.json.
#include <dx/dx.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

std::vector<double> load(int part, int rows) {
  std::mt19937 rng(static_cast<unsigned>(part));
  std::normal_distribution<double> d(0, 1);
  std::vector<double> v(static_cast<std::size_t>(rows));
  for (auto& x : v) x = d(rng);
  std::this_thread::sleep_for(std::chrono::milliseconds(5 + part % 7));
  return v;
}

double fit(std::vector<double> v) {
  double s = 0;
  for (double x : v) s += x * x;
  std::this_thread::sleep_for(std::chrono::milliseconds(20 + static_cast<int>(v.size() % 13)));
  return s / static_cast<double>(v.size());
}

double combine(double a, double b) {
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return a + b;
}

}  // namespace

DX_REMOTE(load);
DX_REMOTE(fit);
DX_REMOTE(combine);

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 30;
  const std::string address = argc > 2 ? argv[2] : "127.0.0.1:8787";
  dx::cluster cl{dx::options{}.local_processes(2).threads_per_process(2).threads(2).http(address)};
  fmt::print("dashboard: http://{}/   metrics: http://{}/metrics\n", cl.http_endpoint(), cl.http_endpoint());
  std::fflush(stdout);
  cl.on_alert([](const dx::alert& a) { fmt::print(stderr, "\nalert [{}] {}\n", dx::to_string(a.kind), a.message); });
  cl.add_alert_rule(
      dx::alert_rule("deep queue").on("dx_worker_queue_depth").above(50).for_at_least(std::chrono::seconds(2)));
  dx::counter parts_done = cl.metrics().add_counter("app_parts_total", "Parts combined into the result");

  // About 50 ms of work per part on 6 threads: `seconds` seconds of work in total.
  const int parts = std::max(8, seconds * 6 * 1000 / 50);
  std::vector<dx::future<double>> fits;
  for (int p = 0; p < parts; ++p) fits.push_back(cl.submit(fit, cl.submit(load, p, 2000 + 37 * (p % 50))));
  std::vector<dx::shared_future<double>> level;
  for (auto& f : fits) level.push_back(f.share());
  std::vector<dx::shared_future<double>> all = level;
  while (level.size() > 1) {  // a tree of sums
    std::vector<dx::shared_future<double>> next;
    for (std::size_t i = 0; i + 1 < level.size(); i += 2)
      next.push_back(cl.submit(combine, level[i], level[i + 1]).share());
    if (level.size() % 2) next.push_back(level.back());
    level = std::move(next);
    all.insert(all.end(), level.begin(), level.end());
  }
  dx::progress_options po;
  po.label = "tasks";
  dx::progress(cl, all, po);
  parts_done.inc(parts);
  fmt::print("mean square over {} parts: {:.4f}\n", parts, level.front().get() / parts);
  cl.write_trace("monitored_job.json");
  fmt::print("trace: monitored_job.json (open in https://ui.perfetto.dev)\n");
  if (const char* linger = std::getenv("DX_LINGER_SECONDS"))  // keeps the dashboard up to look at the end
    std::this_thread::sleep_for(std::chrono::seconds(std::atoi(linger)));
}
