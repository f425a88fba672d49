// Monte Carlo estimate of pi over two worker processes of this same program.
//
//   ./distributed_pi [samples per task] [tasks]
//
// The head starts two copies of this binary as workers (options::local_processes), sends each
// batch of samples to whichever worker is free, and combines the counts as they arrive.
#include <dx/archive.hpp>
#include <dx/dx.hpp>

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <random>

struct batch_result {
  std::uint64_t inside = 0;
  std::uint64_t total = 0;
  int pid = 0;
  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& inside& total& pid;
  }
};

batch_result sample_circle(std::uint64_t seed, std::uint64_t samples) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  batch_result r;
  for (std::uint64_t i = 0; i < samples; ++i) {
    const double x = unit(rng), y = unit(rng);
    r.inside += (x * x + y * y <= 1.0) ? 1 : 0;
  }
  r.total = samples;
  r.pid = static_cast<int>(::getpid());
  return r;
}
DX_REMOTE(sample_circle);

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);

  const std::uint64_t samples = argc > 1 ? std::stoull(argv[1]) : 2'000'000;
  const int tasks = argc > 2 ? std::stoi(argv[2]) : 16;

  const auto start = std::chrono::steady_clock::now();
  dx::cluster cl{dx::options{}.local_processes(2).head_runs_tasks(false)};
  fmt::print("head at {}, workers:", cl.endpoint());
  for (const auto& w : cl.workers()) fmt::print(" {}({} thread)", w.id, w.threads);
  fmt::print("\n");

  std::vector<dx::future<batch_result>> parts;
  for (int t = 0; t < tasks; ++t) parts.push_back(cl.submit(sample_circle, std::uint64_t(t) + 1, samples));
  auto total = dx::when_all(std::move(parts)).then([](std::vector<batch_result> rs) {
    batch_result sum;
    std::map<int, int> per_process;
    for (const auto& r : rs) {
      sum.inside += r.inside;
      sum.total += r.total;
      ++per_process[r.pid];
    }
    fmt::print("tasks per worker process:");
    for (auto [pid, n] : per_process) fmt::print(" pid {}: {}", pid, n);
    fmt::print("\n");
    return sum;
  });
  const batch_result r = total.get();
  const double pi = 4.0 * static_cast<double>(r.inside) / static_cast<double>(r.total);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  fmt::print("pi ~= {:.6f} from {} samples in {:.0f} ms\n", pi, r.total, ms);
  return std::abs(pi - 3.14159265) < 0.01 ? 0 : 1;
}
