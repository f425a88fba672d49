// volunteers.cpp — replicated tasks and deadlines (dx/replicate.hpp) on worker processes, some of
// which are wrong or slow on purpose: copies of this binary started as workers with dx-worker's
// testing aids --corrupt-results P (a share P of their results has one byte changed) and
// --slowdown F (each task takes F times as long). run.py runs it side by side in its modes.
//
// Usage:
//   dx_bench_volunteers calibrate MS
//       the hash loop's iterations for MS ms of compute on this machine, printed.
//   dx_bench_volunteers quorum MODE TASKS ITERS WORKERS BAD P [--truth FILE]
//       WORKERS worker processes of 1 thread, the first BAD of them with --corrupt-results P; the
//       head runs no tasks. TASKS hash tasks of ITERS iterations each (every one deterministic),
//       submitted in two halves (all of the first half, its results, then the second half), with
//       MODE: plain (no replication), adaptive (replicate{.copies = 2, .quorum = 2, .adaptive =
//       true}) or full (the same without adaptive). Every result is compared with the true value
//       computed here (cached in FILE when given: it costs TASKS x ITERS of compute). Executions
//       are counted where they run, in a shared memory page every worker maps (one counter per
//       worker): work ratio = executions / TASKS, over the run and over the second half. Prints
//       the time of each half, wrong results, failed tasks, executions by good and by corrupting
//       workers, the workers' reliability records, and when each corrupting worker was quarantined
//       (seconds since the first submit, and executions so far).
//   dx_bench_volunteers straggler MODE TASKS MS WORKERS SLOW FACTOR
//       WORKERS worker processes of 1 thread, the first SLOW of them with --slowdown FACTOR; TASKS
//       tasks that sleep MS ms (sleeping, not computing: the 2 cores are not what is measured),
//       submitted at once; MODE: deadline (deadline{.soft_factor = 3}) or plain. Prints the
//       makespan (first submit to last result), the ideal (all of the work spread over every
//       worker's speed) and executions by normal and slow workers.
//
// Output: RESULT lines of key=value pairs. Timing: std::chrono::steady_clock.

#include <dx/dx.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

constexpr std::size_t max_slots = 64;

/// The counters of executions, one per worker, in a page shared by every process of the run
/// (DX_BENCH_COUNTERS names its file, DX_BENCH_SLOT the worker's counter); null when not set.
std::uint64_t* counters_page(const char* path) {
  if (!path || !*path) return nullptr;
  const int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return nullptr;
  void* p = ::mmap(nullptr, max_slots * sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  return p == MAP_FAILED ? nullptr : static_cast<std::uint64_t*>(p);
}

void count_execution() {
  static std::uint64_t* const page = counters_page(std::getenv("DX_BENCH_COUNTERS"));
  static const std::size_t slot = [] {
    const char* s = std::getenv("DX_BENCH_SLOT");
    return s ? static_cast<std::size_t>(std::atoi(s)) % max_slots : 0;
  }();
  if (page) std::atomic_ref<std::uint64_t>(page[slot]).fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

/// ITERS rounds of splitmix64 from `seed`: about ITERS x 1.5 ns of compute, a deterministic result.
std::uint64_t hash_work(std::uint64_t seed, std::uint64_t iters) {
  count_execution();
  std::uint64_t z = seed;
  for (std::uint64_t i = 0; i < iters; ++i) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
  }
  return z;
}
DX_REMOTE(hash_work);

std::int64_t sleep_ms(std::int64_t x, std::int64_t ms) {
  count_execution();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return x;
}
DX_REMOTE(sleep_ms);

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// A head without task threads and worker processes (copies of this binary) of one thread each,
/// every one with its own flags and its own execution counter.
struct volunteer_cluster {
  std::filesystem::path counters_file;
  std::uint64_t* counters = nullptr;
  std::unique_ptr<dx::cluster> cl;
  std::vector<pid_t> workers;

  explicit volunteer_cluster(const std::vector<std::vector<std::string>>& flags) {
    counters_file =
        std::filesystem::temp_directory_path() / ("dx_bench_volunteers_" + std::to_string(::getpid()) + ".counters");
    {
      std::ofstream out(counters_file, std::ios::binary | std::ios::trunc);
      const std::vector<char> zeros(max_slots * sizeof(std::uint64_t), 0);
      out.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    }
    counters = counters_page(counters_file.c_str());
    if (!counters) throw std::runtime_error("cannot map " + counters_file.string());
    cl = std::make_unique<dx::cluster>(
        dx::options{}.listen("127.0.0.1:0").head_runs_tasks(false).persist_cost_model(false));
    for (std::size_t i = 0; i < flags.size(); ++i) {
      std::vector<std::string> args{
          "/proc/self/exe",        "--dx-worker",     "--connect", cl->endpoint(), "--threads", "1", "--name",
          "v" + std::to_string(i), "--reconnect-for", "0"};
      args.insert(args.end(), flags[i].begin(), flags[i].end());
      std::vector<std::string> env;
      for (char** e = environ; *e; ++e) env.emplace_back(*e);
      env.push_back("DX_BENCH_COUNTERS=" + counters_file.string());
      env.push_back("DX_BENCH_SLOT=" + std::to_string(i));
      std::vector<char*> argv, envp;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      for (auto& e : env) envp.push_back(e.data());
      envp.push_back(nullptr);
      pid_t pid = 0;
      if (::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data()) != 0)
        throw std::runtime_error("cannot start a worker");
      workers.push_back(pid);
    }
    cl->wait_for_workers(flags.size(), std::chrono::seconds(60));
  }
  ~volunteer_cluster() {
    cl.reset();  // tells the workers to stop
    for (pid_t p : workers) {
      int status = 0;
      bool reaped = false;
      for (int i = 0; i < 500 && !reaped; ++i) {
        reaped = ::waitpid(p, &status, WNOHANG) == p;
        if (!reaped) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (!reaped) {
        ::kill(p, SIGKILL);
        ::waitpid(p, &status, 0);
      }
    }
    if (counters) ::munmap(counters, max_slots * sizeof(std::uint64_t));
    std::error_code ec;
    std::filesystem::remove(counters_file, ec);
  }
  std::uint64_t executions(std::size_t from, std::size_t to) const {
    std::uint64_t n = 0;
    for (std::size_t i = from; i < to; ++i)
      n += std::atomic_ref<std::uint64_t>(counters[i]).load(std::memory_order_relaxed);
    return n;
  }
};

std::uint64_t seed_of(std::uint64_t i) { return i * 0x2545f4914f6cdd1dULL + 1; }

/// The true results, from `path` when it holds them for these TASKS and ITERS, else computed (and
/// saved there when a path is given).
std::vector<std::uint64_t> true_values(std::uint64_t tasks, std::uint64_t iters, const std::string& path) {
  std::vector<std::uint64_t> v(tasks);
  if (!path.empty()) {
    std::ifstream in(path, std::ios::binary);
    std::uint64_t head[2] = {};
    if (in.read(reinterpret_cast<char*>(head), sizeof head) && head[0] == tasks && head[1] == iters &&
        in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(tasks * sizeof(std::uint64_t))))
      return v;
  }
  for (std::uint64_t i = 0; i < tasks; ++i) v[i] = hash_work(seed_of(i), iters);
  if (!path.empty()) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const std::uint64_t head[2] = {tasks, iters};
    out.write(reinterpret_cast<const char*>(head), sizeof head);
    out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(tasks * sizeof(std::uint64_t)));
  }
  return v;
}

int calibrate(double ms) {
  std::uint64_t iters = 1000;
  double best = 1e9;
  for (;;) {
    best = 1e9;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      volatile std::uint64_t sink = hash_work(r, iters);
      (void)sink;
      best = std::min(best, seconds_since(t0));
    }
    if (best >= 0.02) break;
    iters *= 2;
  }
  const auto per_ms = static_cast<double>(iters) / (best * 1000);
  std::printf("RESULT mode=calibrate ms=%.3f iters=%llu ns_per_iter=%.3f\n", ms,
              static_cast<unsigned long long>(per_ms * ms), best * 1e9 / static_cast<double>(iters));
  return 0;
}

int quorum(const std::string& mode, std::uint64_t tasks, std::uint64_t iters, std::size_t workers, std::size_t bad,
           const std::string& p, const std::string& truth_path) {
  dx::task_options opts;
  if (mode == "adaptive") {
    opts.with_replicate({.copies = 2, .quorum = 2, .adaptive = true});
  } else if (mode == "full") {
    opts.with_replicate({.copies = 2, .quorum = 2});
  } else if (mode != "plain") {
    std::fprintf(stderr, "dx_bench_volunteers: unknown quorum mode %s\n", mode.c_str());
    return 2;
  }
  const std::vector<std::uint64_t> truth = true_values(tasks, iters, truth_path);
  std::vector<std::vector<std::string>> flags(workers);
  for (std::size_t i = 0; i < bad && i < workers; ++i) flags[i] = {"--corrupt-results", p};
  volunteer_cluster vc(flags);
  dx::cluster& cl = *vc.cl;
  std::vector<std::string> names(workers);
  for (const auto& w : cl.workers())
    if (w.id.size() > 1 && w.id[0] == 'v')
      names[static_cast<std::size_t>(std::atoi(w.id.c_str() + 1)) % workers] = w.id;

  // Watches for the corrupting workers' quarantine: when, and after how many executions.
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<bool> done{false};
  std::mutex m;
  std::vector<double> quarantined_at(bad, -1);
  std::vector<std::uint64_t> quarantined_after(bad, 0);
  std::thread watch([&] {
    while (!done.load()) {
      for (const auto& w : cl.workers()) {
        for (std::size_t i = 0; i < bad; ++i) {
          if (w.id != names[i] || !w.reliability.quarantined) continue;
          std::lock_guard lock(m);
          if (quarantined_at[i] < 0) {
            quarantined_at[i] = seconds_since(t0);
            quarantined_after[i] = vc.executions(0, workers);
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  std::uint64_t wrong = 0, failed = 0;
  double half_s[2] = {};
  std::uint64_t exec_at_half = 0;
  std::string tenths;  // executions so far as each tenth of the results is in (in submission order)
  const std::uint64_t half = tasks / 2;
  for (int h = 0; h < 2; ++h) {
    const std::uint64_t from = h == 0 ? 0 : half, to = h == 0 ? half : tasks;
    const auto h0 = std::chrono::steady_clock::now();
    std::vector<dx::future<std::uint64_t>> fs;
    fs.reserve(to - from);
    for (std::uint64_t i = from; i < to; ++i) fs.push_back(cl.submit(opts, hash_work, seed_of(i), iters));
    for (std::uint64_t i = from; i < to; ++i) {
      try {
        wrong += fs[i - from].get() != truth[i];
      } catch (const std::exception&) {
        ++failed;
      }
      if (tasks >= 10 && (i + 1) % (tasks / 10) == 0)
        tenths += (tenths.empty() ? "" : ",") + std::to_string(vc.executions(0, workers));
    }
    half_s[h] = seconds_since(h0);
    if (h == 0) exec_at_half = vc.executions(0, workers);
  }
  const double total_s = seconds_since(t0);
  // Copies cancelled at the head may still be running: let them finish before counting.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  done = true;
  watch.join();
  const std::uint64_t exec_all = vc.executions(0, workers), exec_bad = vc.executions(0, bad);
  // The head's view: copies issued (cancelled ones included) and results believed alone.
  const double copies = cl.metrics().value("dx_replica_copies_total").value_or(-1);
  const double trusted = cl.metrics().value("dx_replica_trusted_alone_total").value_or(-1);
  std::string records, quarantines;
  for (const auto& w : cl.workers()) {
    const auto& r = w.reliability;
    records += (records.empty() ? "" : ";") + w.id + ":" + std::to_string(r.valid) + "/" + std::to_string(r.invalid) +
               "/" + std::to_string(r.consecutive_valid) + (r.quarantined ? "/Q" : "");
  }
  std::size_t n_quarantined = 0;
  for (std::size_t i = 0; i < bad; ++i) {
    if (quarantined_at[i] >= 0) ++n_quarantined;
    quarantines += (quarantines.empty() ? "" : ";") + names[i] + ":" +
                   (quarantined_at[i] < 0
                        ? std::string("never")
                        : std::to_string(quarantined_at[i]).substr(0, 5) + "s@" + std::to_string(quarantined_after[i]));
  }
  std::printf(
      "RESULT mode=quorum replication=%s tasks=%llu iters=%llu workers=%zu bad=%zu corrupt=%s total_s=%.4f "
      "first_half_s=%.4f second_half_s=%.4f wrong=%llu failed=%llu executions=%llu executions_bad=%llu "
      "work_ratio=%.4f work_ratio_second_half=%.4f executions_at_tenths=%s copies_issued=%.0f trusted_alone=%.0f "
      "quarantined=%zu quarantine=%s records=%s\n",
      mode.c_str(), static_cast<unsigned long long>(tasks), static_cast<unsigned long long>(iters), workers, bad,
      p.c_str(), total_s, half_s[0], half_s[1], static_cast<unsigned long long>(wrong),
      static_cast<unsigned long long>(failed), static_cast<unsigned long long>(exec_all),
      static_cast<unsigned long long>(exec_bad), static_cast<double>(exec_all) / static_cast<double>(tasks),
      static_cast<double>(exec_all - exec_at_half) / static_cast<double>(tasks - half), tenths.c_str(), copies, trusted,
      n_quarantined, quarantines.c_str(), records.c_str());
  return 0;
}

int straggler(const std::string& mode, std::uint64_t tasks, std::int64_t ms, std::size_t workers, std::size_t slow,
              const std::string& factor) {
  dx::task_options opts;
  if (mode == "deadline") {
    opts.with_deadline({.soft_factor = 3});
  } else if (mode != "plain") {
    std::fprintf(stderr, "dx_bench_volunteers: unknown straggler mode %s\n", mode.c_str());
    return 2;
  }
  std::vector<std::vector<std::string>> flags(workers);
  for (std::size_t i = 0; i < slow && i < workers; ++i) flags[i] = {"--slowdown", factor};
  volunteer_cluster vc(flags);
  dx::cluster& cl = *vc.cl;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<dx::future<std::int64_t>> fs;
  fs.reserve(tasks);
  for (std::uint64_t i = 0; i < tasks; ++i) fs.push_back(cl.submit(opts, sleep_ms, static_cast<std::int64_t>(i), ms));
  std::uint64_t wrong = 0;
  for (std::uint64_t i = 0; i < tasks; ++i) wrong += fs[i].get() != static_cast<std::int64_t>(i);
  const double wall = seconds_since(t0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::uint64_t exec_all = vc.executions(0, workers), exec_slow = vc.executions(0, slow);
  const double speed = static_cast<double>(workers - slow) + static_cast<double>(slow) / std::atof(factor.c_str());
  const double ideal = static_cast<double>(tasks) * static_cast<double>(ms) / 1000.0 / speed;
  std::printf(
      "RESULT mode=straggler deadline=%s tasks=%llu task_ms=%lld workers=%zu slow=%zu slowdown=%s makespan_s=%.4f "
      "ideal_s=%.4f wrong=%llu executions=%llu executions_slow=%llu\n",
      mode.c_str(), static_cast<unsigned long long>(tasks), static_cast<long long>(ms), workers, slow, factor.c_str(),
      wall, ideal, static_cast<unsigned long long>(wrong), static_cast<unsigned long long>(exec_all),
      static_cast<unsigned long long>(exec_slow));
  return 0;
}

int usage() {
  std::fputs(
      "usage: dx_bench_volunteers calibrate MS\n"
      "       dx_bench_volunteers quorum plain|adaptive|full TASKS ITERS WORKERS BAD P [--truth FILE]\n"
      "       dx_bench_volunteers straggler deadline|plain TASKS MS WORKERS SLOW FACTOR\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  if (argc < 2) return usage();
  const std::string what = argv[1];
  try {
    if (what == "calibrate" && argc == 3) return calibrate(std::atof(argv[2]));
    if (what == "quorum" && (argc == 8 || (argc == 10 && std::strcmp(argv[8], "--truth") == 0)))
      return quorum(argv[2], std::strtoull(argv[3], nullptr, 10), std::strtoull(argv[4], nullptr, 10),
                    std::strtoull(argv[5], nullptr, 10), std::strtoull(argv[6], nullptr, 10), argv[7],
                    argc == 10 ? argv[9] : "");
    if (what == "straggler" && argc == 8)
      return straggler(argv[2], std::strtoull(argv[3], nullptr, 10), std::atoll(argv[4]),
                       std::strtoull(argv[5], nullptr, 10), std::strtoull(argv[6], nullptr, 10), argv[7]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx_bench_volunteers: %s\n", e.what());
    return 1;
  }
  return usage();
}
