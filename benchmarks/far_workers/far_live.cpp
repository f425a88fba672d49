// far_live.cpp — dx with workers far away: each worker process joins the head through a
// dx-link process (tools/link_emulator) that delays both directions of its connection, as a WAN
// link would. run.py runs it side by side with Dask through the same dx-link.
//
// Usage:
//   dx_bench_far_live makespan DX_LINK TASKS MS ONE_WAY_MS... [--warm]
//       one worker process of 1 thread per ONE_WAY_MS (0: joins directly, else through a dx-link
//       of that one-way delay each direction); the head runs no tasks. TASKS x cl.submit(sleep_ms,
//       MS) all at once, then every result; wall time from the first submit to the last result.
//       --warm: one untimed round of the same tasks first (the cost model knows the kind; the
//       measured round then starts as a long-running job's later tasks do). Prints the makespan,
//       the ideal (TASKS x MS / workers) and their ratio.
//   dx_bench_far_live memory DX_LINK TASKS ONE_WAY_MS...
//       the same cluster; TASKS no-op tasks submitted at once (queued at the head, a window of them
//       sent to each worker), then 3 s of running; the head's resident memory (VmRSS) then and at
//       its peak (VmHWM), and how many had finished. The rest is cancelled.
//
// Output: RESULT lines of key=value pairs. Timing: std::chrono::steady_clock.

#include <dx/dx.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
DX_REMOTE(sleep_ms);

int noop(int x) { return x; }
DX_REMOTE(noop);

namespace {

/// A child process with its stdin and stdout as pipes (dx-link: it prints its address, and exits
/// when its stdin closes).
struct child {
  pid_t pid = -1;
  int to = -1;           // its stdin
  FILE* from = nullptr;  // its stdout

  child(const std::vector<std::string>& argv_s) {
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    std::vector<char*> argv;
    std::vector<std::string> copy = argv_s;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(in[0]);
    ::close(out[1]);
    if (rc != 0) throw std::runtime_error("cannot start " + argv_s[0]);
    to = in[1];
    from = ::fdopen(out[0], "r");
  }
  std::string line() {
    char buf[256] = {};
    if (!std::fgets(buf, sizeof buf, from)) return {};
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }
  ~child() {
    if (to >= 0) ::close(to);  // dx-link exits at the end of its input
    if (from) std::fclose(from);
    int status = 0;
    for (int i = 0; i < 200; ++i) {
      if (::waitpid(pid, &status, WNOHANG) == pid) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
};

/// A head (no task threads of its own) and one worker process per one-way delay, each through its
/// own dx-link unless the delay is 0.
struct far_cluster {
  std::unique_ptr<dx::cluster> cl;
  std::vector<std::unique_ptr<child>> links;
  std::vector<pid_t> workers;

  far_cluster(const std::string& dx_link, const std::vector<double>& one_way_ms) {
    cl = std::make_unique<dx::cluster>(
        dx::options{}.listen("127.0.0.1:0").head_runs_tasks(false).persist_cost_model(false));
    for (std::size_t i = 0; i < one_way_ms.size(); ++i) {
      std::string address = cl->endpoint();
      if (one_way_ms[i] > 0) {
        links.push_back(std::make_unique<child>(
            std::vector<std::string>{dx_link, "--to", address, "--delay-ms", std::to_string(one_way_ms[i])}));
        address = links.back()->line();
        if (address.empty()) throw std::runtime_error("dx-link printed no address");
      }
      std::vector<std::string> args{"/proc/self/exe",  "--dx-worker",
                                    "--connect",       address,
                                    "--threads",       "1",
                                    "--name",          "w" + std::to_string(i + 1),
                                    "--reconnect-for", "0"};
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      pid_t pid = 0;
      if (::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) != 0)
        throw std::runtime_error("cannot start a worker");
      workers.push_back(pid);
    }
    cl->wait_for_workers(one_way_ms.size(), std::chrono::seconds(30));
    // A few pings to settle each link's measure (the handshake gave the first).
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  }
  ~far_cluster() {
    cl.reset();
    for (pid_t p : workers) {
      int status = 0;
      for (int i = 0; i < 300 && ::waitpid(p, &status, WNOHANG) != p; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      ::kill(p, SIGKILL);
      ::waitpid(p, &status, WNOHANG);
    }
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Runs the tasks; returns the wall time and, in `when`, the time each result arrived (sorted).
double run_sleeps(dx::cluster& cl, int tasks, int ms, std::vector<double>* when = nullptr) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<dx::future<int>> fs;
  fs.reserve(static_cast<std::size_t>(tasks));
  std::mutex m;
  for (int i = 0; i < tasks; ++i) {
    auto f = cl.submit(sleep_ms, ms);
    if (when) {
      fs.push_back(f.then([&, t0](int v) {
        std::lock_guard lock(m);
        when->push_back(seconds_since(t0));
        return v;
      }));
    } else {
      fs.push_back(std::move(f));
    }
  }
  for (auto& f : fs) f.get();
  if (when) std::sort(when->begin(), when->end());
  return seconds_since(t0);
}

std::string links_label(const std::vector<double>& one_way_ms) {
  std::string s;
  for (double d : one_way_ms) s += (s.empty() ? "" : ",") + std::to_string(static_cast<int>(2 * d));
  return s;
}

/// A field of /proc/self/status in KiB ("VmRSS:", "VmHWM:").
long vm_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, n, field) == 0) return std::atol(line.c_str() + n);
  return 0;
}

int usage() {
  std::fputs(
      "usage: dx_bench_far_live makespan DX_LINK TASKS MS ONE_WAY_MS... [--warm]\n"
      "       dx_bench_far_live memory DX_LINK TASKS ONE_WAY_MS...\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  if (argc < 5) return usage();
  const std::string mode = argv[1], dx_link = argv[2];
  const int tasks = std::atoi(argv[3]);
  int first_delay = mode == "makespan" ? 5 : 4;
  const int ms = mode == "makespan" ? std::atoi(argv[4]) : 0;
  bool warm = false;
  std::vector<double> one_way;
  for (int i = first_delay; i < argc; ++i) {
    if (std::strcmp(argv[i], "--warm") == 0) {
      warm = true;
    } else {
      one_way.push_back(std::atof(argv[i]));
    }
  }
  if (one_way.empty() || tasks <= 0) return usage();
  far_cluster fc(dx_link, one_way);
  std::string rtts;
  for (const auto& w : fc.cl->workers()) rtts += (rtts.empty() ? "" : ",") + std::to_string(w.round_trip_seconds);
  if (mode == "makespan") {
    if (warm) run_sleeps(*fc.cl, tasks, ms);
    std::vector<double> when;
    const double wall = run_sleeps(*fc.cl, tasks, ms, &when);
    // When the first result, a tenth, half, nine tenths and all of them had arrived.
    std::string timeline;
    for (double q : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      const auto i = std::min(when.size() - 1, static_cast<std::size_t>(q * static_cast<double>(when.size())));
      timeline += (timeline.empty() ? "" : ",") + std::to_string(when[i]).substr(0, 5);
    }
    const double ideal = static_cast<double>(tasks) * ms / 1000.0 / static_cast<double>(one_way.size());
    std::printf(
        "RESULT mode=makespan system=dx links_ms=%s tasks=%d task_ms=%d warm=%d makespan_s=%.4f ideal_s=%.4f "
        "efficiency=%.4f measured_rtt_s=%s results_at_0_10_50_90_100pct_s=%s\n",
        links_label(one_way).c_str(), tasks, ms, warm ? 1 : 0, wall, ideal, ideal / wall, rtts.c_str(),
        timeline.c_str());
  } else if (mode == "memory") {
    // Every task submitted (queued at the head, a window of them sent to each worker), then 3 s of
    // running; the head's resident memory then and at its peak. The rest is cancelled.
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<dx::future<int>> fs;
    fs.reserve(static_cast<std::size_t>(tasks));
    for (int i = 0; i < tasks; ++i) fs.push_back(fc.cl->submit(noop, i));
    const double submit_s = seconds_since(t0);
    std::this_thread::sleep_for(std::chrono::seconds(3));
    std::size_t done = 0;
    for (auto& f : fs) done += f.is_ready();
    const long rss = vm_kib("VmRSS:"), peak = vm_kib("VmHWM:");
    for (auto& f : fs) f.cancel();
    std::printf(
        "RESULT mode=memory system=dx links_ms=%s tasks=%d submit_s=%.3f done_after_3s=%zu head_rss_kib=%ld "
        "head_peak_rss_kib=%ld\n",
        links_label(one_way).c_str(), tasks, submit_s, done, rss, peak);
  } else {
    return usage();
  }
  std::fflush(stdout);
  return 0;
}
