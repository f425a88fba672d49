// dx_bench_map: cluster::map of a 1 us registered function over N inputs on two local worker
// processes, side by side in one process with the two ways to do it by hand: one submit per input,
// and hand-made chunks (a registered function over a std::vector) at each size of a sweep.
//
//   dx_bench_map [items=1000000] [rounds=5]
//
// Each round runs every variant once, alternating, on the same cluster; the cost model is warmed
// up by one map before the first round. Prints per-variant medians (min-max) and the two ratios
// per round: one-submit-per-input / map, and map / the fixed chunk size with the best median.
#include <dx/dx.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace {

/// About 1 us of work: spins on the steady clock (a clock read costs about 20 ns here).
int work_1us(int x) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(1);
  while (std::chrono::steady_clock::now() < until) {
  }
  return x + 1;
}

/// The hand-chunked version: the same work over a vector of inputs.
std::vector<int> work_chunk(std::vector<int> xs) {
  for (int& x : xs) x = work_1us(x);
  return xs;
}

}  // namespace

DX_REMOTE(work_1us);
DX_REMOTE(work_chunk);

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string summary(const std::vector<double>& v, const char* unit) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.3f %s (%.3f-%.3f)", median(v), unit, *std::min_element(v.begin(), v.end()),
                *std::max_element(v.begin(), v.end()));
  return buf;
}

long long checksum(long long n) { return n * (n + 1) / 2; }  // sum of x + 1 over 0..n-1

std::size_t map_chunks_run(dx::cluster& cl) {
  cl.wait_idle();
  for (const auto& a : cl.cost_model_snapshot().accuracy())
    if (a.kind == "work_1us/map") return a.samples;
  return 0;
}

double run_map(dx::cluster& cl, const std::vector<int>& in) {
  const auto t0 = Clock::now();
  auto out = cl.map(work_1us, in);
  long long sum = 0;
  for (auto& f : out) sum += f.get();
  const auto t1 = Clock::now();
  if (sum != checksum(static_cast<long long>(in.size()))) std::abort();
  return secs(t0, t1);
}

double run_fixed(dx::cluster& cl, const std::vector<int>& in, std::size_t chunk) {
  const auto t0 = Clock::now();
  std::vector<dx::future<std::vector<int>>> parts;
  for (std::size_t b = 0; b < in.size(); b += chunk)
    parts.push_back(cl.submit(
        work_chunk, std::vector<int>(in.begin() + static_cast<std::ptrdiff_t>(b),
                                     in.begin() + static_cast<std::ptrdiff_t>(std::min(in.size(), b + chunk)))));
  std::vector<int> results;
  results.reserve(in.size());
  for (auto& f : parts) {
    std::vector<int> part = f.get();
    results.insert(results.end(), part.begin(), part.end());
  }
  const auto t1 = Clock::now();
  long long sum = 0;
  for (int r : results) sum += r;
  if (sum != checksum(static_cast<long long>(in.size()))) std::abort();
  return secs(t0, t1);
}

double run_each(dx::cluster& cl, const std::vector<int>& in) {
  const auto t0 = Clock::now();
  std::vector<dx::future<int>> out;
  out.reserve(in.size());
  for (int x : in) out.push_back(cl.submit(work_1us, x));
  long long sum = 0;
  for (auto& f : out) sum += f.get();
  const auto t1 = Clock::now();
  if (sum != checksum(static_cast<long long>(in.size()))) std::abort();
  return secs(t0, t1);
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const long items = argc > 1 ? std::atol(argv[1]) : 1'000'000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  dx::cluster cl{
      dx::options{}.local_processes(2).threads_per_process(1).head_runs_tasks(false).persist_cost_model(false)};
  cl.wait_for_workers(2, std::chrono::seconds(30));
  std::vector<int> in(static_cast<std::size_t>(items));
  for (long i = 0; i < items; ++i) in[static_cast<std::size_t>(i)] = static_cast<int>(i);

  const std::vector<std::size_t> sweep{1'000, 5'000, 20'000, 50'000, 125'000, 250'000};
  run_map(cl, in);  // warm-up: the cost model learns the chunks
  for (std::size_t c : sweep) run_fixed(cl, in, std::min<std::size_t>(c, in.size()));

  std::vector<double> map_s;
  std::vector<std::size_t> map_chunks;  // per round
  std::vector<double> each_s;
  std::map<std::size_t, std::vector<double>> fixed_s;
  for (int r = 0; r < rounds; ++r) {
    const std::size_t chunks_before = map_chunks_run(cl);
    map_s.push_back(run_map(cl, in));
    map_chunks.push_back(map_chunks_run(cl) - chunks_before);
    for (std::size_t c : sweep) fixed_s[c].push_back(run_fixed(cl, in, c));
    each_s.push_back(run_each(cl, in));
    std::printf("round %d: map %.3f s in %zu chunks, one submit per input %.3f s\n", r + 1, map_s.back(),
                map_chunks.back(), each_s.back());
    std::fflush(stdout);
  }

  std::size_t best = sweep.front();
  for (std::size_t c : sweep)
    if (median(fixed_s[c]) < median(fixed_s[best])) best = c;
  std::vector<double> speedup;
  std::vector<double> vs_best;
  for (int r = 0; r < rounds; ++r) {
    speedup.push_back(each_s[static_cast<std::size_t>(r)] / map_s[static_cast<std::size_t>(r)]);
    vs_best.push_back(map_s[static_cast<std::size_t>(r)] / fixed_s[best][static_cast<std::size_t>(r)]);
  }
  std::printf("\n%ld items of a 1 us registered function, 2 worker processes x 1 thread, %d rounds\n", items, rounds);
  std::printf("cl.map (automatic chunking)   %s\n", summary(map_s, "s").c_str());
  for (std::size_t c : sweep)
    std::printf("hand-chunked, %7zu / chunk  %s%s\n", c, summary(fixed_s[c], "s").c_str(),
                c == best ? "  <- best" : "");
  std::printf("one submit per input          %s\n", summary(each_s, "s").c_str());
  std::printf("one submit per input / map    %s\n", summary(speedup, "x").c_str());
  std::printf("map / best fixed (%6zu)      %s\n", best, summary(vs_best, "x").c_str());
  return 0;
}
