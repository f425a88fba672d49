// render.cpp — how long dx takes to render its metrics in the Prometheus text format.
//
// Usage:
//   dx_bench_metrics_render registry [calls=50]
//       a standalone dx::metrics with the user series below (10,100 samples); times
//       metrics::render() `calls` times after 3 untimed calls; also the time to register them.
//   dx_bench_metrics_render dump
//       prints that registry's render() (to compare with prom_peer.py --dump).
//   dx_bench_metrics_render register
//       registration alone: 2,500 .. 20,000 series of one labelled counter family, the time to
//       add them all and the time to add (look up) an existing one again.
//   dx_bench_metrics_render cluster [calls=50] [kinds=200] [tasks_per_kind=50]
//       a live cluster: local_processes(8), transport in_process, threads(1),
//       persist_cost_model(false), http("127.0.0.1:0"); `kinds` registered functions
//       (kind_100, kind_101, ...) run tasks_per_kind no-op tasks each; then it times
//       (1) cl.metrics().render() with the runtime's dx_* metrics only, (2) the same after the user
//       series below are added to cl.metrics() (the combined output /metrics serves), and (3) GET
//       /metrics over one kept-alive loopback connection (request, render, transfer).
//
// The user series (prom_peer.py builds the same ones with prometheus_client):
//   counter   app_requests_total{route="/api/v1/resource/R",code=C}  R = 0..999, C in 200 201 404
//             500 503: 5,000 series, value (R*31 + i*7) % 1000 + 1 for the i-th code
//   gauge     app_queue_depth{shard="shard-Q/100",queue="queue-Q"}   Q = 0..3999: 4,000 series,
//             value Q*0.25 + 0.5
//   histogram app_request_duration_seconds{endpoint="endpoint-E"}   E = 0..99, 8 bounds 0.001*4^k:
//             100 series x (9 buckets + _sum + _count) = 1,100 samples; 20 observations each,
//             0.0005 * 1.7^((E + j) % 20) for j = 0..19
//   In all 10,100 samples (lines that are not comments).
//
// Output: RESULT lines of key=value pairs. Times: std::chrono::steady_clock, milliseconds.

#include "http_client.hpp"

#include <dx/dx.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

// ---- registered functions: kind_100 .. kind_299 ---------------------------------------------------

template <int K>
int kind_fn(int x) {
  return x + K;
}

// One namespace per registration: DX_REMOTE_AS names its variable after the line.
#define OBENCH_REG1(n)                    \
  namespace obench_reg_##n {              \
    DX_REMOTE_AS("kind_" #n, kind_fn<n>); \
  }
// clang-format off
// (clang-format packs these expansions differently on each pass: one per line reads best.)
#define OBENCH_REG10(p) \
  OBENCH_REG1(p##0) \
  OBENCH_REG1(p##1) \
  OBENCH_REG1(p##2) \
  OBENCH_REG1(p##3) \
  OBENCH_REG1(p##4) \
  OBENCH_REG1(p##5) \
  OBENCH_REG1(p##6) \
  OBENCH_REG1(p##7) \
  OBENCH_REG1(p##8) \
  OBENCH_REG1(p##9)
#define OBENCH_REG100(p) \
  OBENCH_REG10(p##0) \
  OBENCH_REG10(p##1) \
  OBENCH_REG10(p##2) \
  OBENCH_REG10(p##3) \
  OBENCH_REG10(p##4) \
  OBENCH_REG10(p##5) \
  OBENCH_REG10(p##6) \
  OBENCH_REG10(p##7) \
  OBENCH_REG10(p##8) \
  OBENCH_REG10(p##9)
// clang-format on
OBENCH_REG100(1)
OBENCH_REG100(2)

namespace {

constexpr int max_kinds = 200;
using kind_ptr = int (*)(int);
const std::array<kind_ptr, max_kinds> kind_fns = []<std::size_t... I>(std::index_sequence<I...>) {
  return std::array<kind_ptr, max_kinds>{&kind_fn<100 + static_cast<int>(I)>...};
}
(std::make_index_sequence<max_kinds>{});

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point a) { return std::chrono::duration<double, std::milli>(Clock::now() - a).count(); }

double pct(std::vector<double> v, double p) {  // nearest rank
  std::sort(v.begin(), v.end());
  const auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(k, v.size() - 1)];
}

std::size_t count_samples(const std::string& text, std::size_t* dx_samples = nullptr) {
  std::size_t n = 0, dx = 0;
  for (std::size_t p = 0; p < text.size();) {
    std::size_t e = text.find('\n', p);
    if (e == std::string::npos) e = text.size();
    if (e > p && text[p] != '#') {
      ++n;
      if (text.compare(p, 3, "dx_") == 0) ++dx;
    }
    p = e + 1;
  }
  if (dx_samples) *dx_samples = dx;
  return n;
}

// Adds the user series described at the top to `m`.
void add_user_series(dx::metrics& m) {
  static const char* codes[] = {"200", "201", "404", "500", "503"};
  for (int r = 0; r < 1000; ++r)
    for (int i = 0; i < 5; ++i)
      m.add_counter("app_requests_total", "Requests served, by route and status code.",
                    {{"route", "/api/v1/resource/" + std::to_string(r)}, {"code", codes[i]}})
          .inc((r * 31 + i * 7) % 1000 + 1);
  for (int q = 0; q < 4000; ++q)
    m.add_gauge("app_queue_depth", "Items waiting, by shard and queue.",
                {{"shard", "shard-" + std::to_string(q / 100)}, {"queue", "queue-" + std::to_string(q)}})
        .set(q * 0.25 + 0.5);
  const std::vector<double> bounds = dx::metrics::exponential_buckets(0.001, 4, 8);
  for (int e = 0; e < 100; ++e) {
    dx::histogram h = m.add_histogram("app_request_duration_seconds", "Time to answer a request, by endpoint.", bounds,
                                      {{"endpoint", "endpoint-" + std::to_string(e)}});
    for (int j = 0; j < 20; ++j) h.observe(0.0005 * std::pow(1.7, (e + j) % 20));
  }
}

// Samples per family ("dx_tasks_completed_total:1800,..."), for the runtime's families.
std::string family_counts(const std::string& text) {
  std::vector<std::pair<std::string, std::size_t>> fams;
  for (std::size_t p = 0; p < text.size();) {
    std::size_t e = text.find('\n', p);
    if (e == std::string::npos) e = text.size();
    if (e > p && text[p] != '#') {
      std::size_t end = text.find_first_of("{ ", p);
      std::string name = text.substr(p, std::min(end, e) - p);
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::size_t n = std::strlen(suffix);
        if (name.size() > n && name.compare(name.size() - n, n, suffix) == 0) {
          name.resize(name.size() - n);
          break;
        }
      }
      if (fams.empty() || fams.back().first != name) fams.emplace_back(name, 0);
      ++fams.back().second;
    }
    p = e + 1;
  }
  std::string out;
  for (const auto& [name, n] : fams) out += (out.empty() ? "" : ",") + name + ":" + std::to_string(n);
  return out;
}

struct timing {
  std::vector<double> ms;
  std::size_t bytes = 0, samples = 0, dx_samples = 0;
  std::string last;
};

template <class F>
timing time_calls(long calls, F&& render) {
  timing t;
  for (int i = 0; i < 3; ++i) (void)render();  // untimed
  std::string last;
  for (long i = 0; i < calls; ++i) {
    const auto a = Clock::now();
    std::string s = render();
    t.ms.push_back(ms_since(a));
    if (i + 1 == calls) last = std::move(s);
  }
  t.bytes = last.size();
  t.samples = count_samples(last, &t.dx_samples);
  t.last = std::move(last);
  return t;
}

void report(const char* mode, const timing& t, const char* extra = "") {
  std::printf(
      "RESULT mode=%s calls=%zu samples=%zu dx_samples=%zu bytes=%zu median_ms=%.3f p99_ms=%.3f min_ms=%.3f "
      "max_ms=%.3f%s\n",
      mode, t.ms.size(), t.samples, t.dx_samples, t.bytes, pct(t.ms, 50), pct(t.ms, 99), pct(t.ms, 0), pct(t.ms, 100),
      extra);
  std::fflush(stdout);
}

int registry(long calls) {
  dx::metrics m;
  const auto a = Clock::now();
  add_user_series(m);
  const double reg_ms = ms_since(a);
  char extra[64];
  std::snprintf(extra, sizeof extra, " register_ms=%.1f", reg_ms);
  report("registry", time_calls(calls, [&] { return m.render(); }), extra);
  return 0;
}

int register_scaling() {
  for (int n : {2500, 5000, 10000, 20000}) {
    dx::metrics m;
    auto a = Clock::now();
    for (int i = 0; i < n; ++i) m.add_counter("app_items_total", "Items.", {{"item", std::to_string(i)}}).inc();
    const double all_ms = ms_since(a);
    a = Clock::now();
    for (int i = 0; i < 100; ++i)
      m.add_counter("app_items_total", "Items.", {{"item", std::to_string(n - 1 - i)}}).inc();
    const double again_us = ms_since(a) * 1e3 / 100;
    std::printf("RESULT mode=register series=%d register_ms=%.1f per_series_us=%.2f lookup_existing_us=%.1f\n", n,
                all_ms, all_ms * 1e3 / n, again_us);
    std::fflush(stdout);
  }
  return 0;
}

int dump() {
  dx::metrics m;
  add_user_series(m);
  const std::string s = m.render();
  std::fwrite(s.data(), 1, s.size(), stdout);
  return 0;
}

int cluster(long calls, int kinds, long per_kind) {
  kinds = std::clamp(kinds, 1, max_kinds);
  dx::cluster cl{dx::options{}
                     .local_processes(8)
                     .transport(dx::transport_kind::in_process)
                     .threads(1)
                     .persist_cost_model(false)
                     .http("127.0.0.1:0")};
  const auto t0 = Clock::now();
  std::vector<dx::future<int>> fs;
  fs.reserve(static_cast<std::size_t>(kinds * per_kind));
  for (long j = 0; j < per_kind; ++j)
    for (int k = 0; k < kinds; ++k) fs.push_back(cl.submit(kind_fns[static_cast<std::size_t>(k)], static_cast<int>(j)));
  long long sum = 0, expect = 0;
  const std::vector<int> vs = dx::when_all(std::move(fs)).get();
  for (long j = 0; j < per_kind; ++j)
    for (int k = 0; k < kinds; ++k) expect += j + 100 + k;
  for (int v : vs) sum += v;
  if (sum != expect) {
    std::fprintf(stderr, "wrong results: %lld, expected %lld\n", sum, expect);
    return 2;
  }
  cl.wait_idle();
  std::printf("RESULT mode=cluster_tasks kinds=%d tasks=%ld seconds=%.3f workers=%zu\n", kinds,
              static_cast<long>(kinds) * per_kind, ms_since(t0) / 1e3, cl.workers().size());
  std::fflush(stdout);

  const timing runtime = time_calls(calls, [&] { return cl.metrics().render(); });
  report("cluster_runtime", runtime);
  std::printf("RESULT mode=cluster_families families=%s\n", family_counts(runtime.last).c_str());
  const auto a = Clock::now();
  add_user_series(cl.metrics());
  const double reg_ms = ms_since(a);
  char extra[64];
  std::snprintf(extra, sizeof extra, " register_ms=%.1f", reg_ms);
  report("cluster_combined", time_calls(calls, [&] { return cl.metrics().render(); }), extra);
  dx_support::http::client http(cl.http_endpoint());
  report("cluster_http_metrics", time_calls(calls, [&] {
           auto r = http.get("/metrics");
           if (r.status != 200) {
             std::fprintf(stderr, "GET /metrics: %d\n", r.status);
             std::exit(2);
           }
           return std::move(r.body);
         }));
  return 0;
}

long arg_long(int argc, char** argv, int i, long dflt) { return argc > i ? std::atol(argv[i]) : dflt; }

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "registry") return registry(arg_long(argc, argv, 2, 50));
  if (mode == "dump") return dump();
  if (mode == "register") return register_scaling();
  if (mode == "cluster")
    return cluster(arg_long(argc, argv, 2, 50), static_cast<int>(arg_long(argc, argv, 3, 200)),
                   arg_long(argc, argv, 4, 50));
  std::fprintf(stderr,
               "usage: %s registry [calls=50] | dump | register | cluster [calls=50] [kinds=200] [tasks_per_kind=50]\n",
               argv[0]);
  return 1;
}
