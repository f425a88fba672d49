// dashboard.cpp — a 100,000-task run with the HTTP endpoint on, polled the way the dashboard polls.
//
// Usage:
//   dx_bench_dashboard [N=100000] [--poll] [--history H] [--spin-us 100] [--hold] [--forecast-probe]
//
// A cluster of local_processes(2) x threads_per_process(1), head_runs_tasks(false),
// persist_cost_model(false), http("127.0.0.1:0"), task_history(H) when --history is given (else
// the default, 100,000). N x cl.submit(spin, us) (a DX_REMOTE function that busy-waits `us`
// microseconds), then when_all(...).get(); the job's time runs from the first submit to the last
// result. No warm-up: the task history then holds exactly the N tasks of the job.
//
// --poll: two threads in this process, each with its own kept-alive loopback connection, do what
// the dashboard page's two loops do (src/observe/dashboard.html): GET /api/state, then wait 1 s
// after the answer; GET /api/tasks?since=NEXT&limit=5000 (the first request without since), then
// wait 0.5 s after the answer, or poll again at once when the answer says more=true and had
// events. They start before the first submit and stop once the job is done and they have seen
// everything (/api/tasks reached N, /api/state showed N completed); each request's latency and
// size is recorded. The task poller checks the sequence numbers: every event from 0 to N-1 seen
// once, in order; events the head's ring dropped before they were fetched (the answer's first >
// since) are counted as missed. The CPU time of the two poller threads is measured apart
// (CLOCK_THREAD_CPUTIME_ID), so the head's own CPU is the process's minus theirs.
//
// --forecast-probe: instead of the pollers, right after the last submit (N tasks queued) time
// cl.forecast() 5 times and GET /api/state 3 times 0.6 s apart (the head recomputes the forecast
// it serves when its copy is older than 0.5 s), then GET /metrics once; then let the job finish.
//
// --hold: after the job (and the pollers), print `RESULT mode=hold url=...` and keep the cluster
// up until a line arrives on stdin (run.py loads the dashboard in headless Chromium meanwhile).
//
// Output: RESULT lines of key=value pairs.

#include "http_client.hpp"

#include <dx/dx.hpp>

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

int spin(int us) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < end) {
  }
  return us;
}
DX_REMOTE(spin);

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double pct(std::vector<double> v, double p) {  // nearest rank
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(k, v.size() - 1)];
}

long status_kb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  return -1;
}

double process_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The unsigned number after `"key":` at or after `from` in a JSON text; -1 when absent.
long long json_uint_after(const std::string& s, const char* key, std::size_t from = 0, std::size_t* at = nullptr) {
  const std::string k = std::string("\"") + key + "\":";
  const std::size_t p = s.find(k, from);
  if (p == std::string::npos) return -1;
  if (at) *at = p + k.size();
  return std::strtoll(s.c_str() + p + k.size(), nullptr, 10);
}

struct path_stats {
  std::vector<double> ms;
  std::vector<double> bytes;
  double cpu_s = 0;
  std::string error;
};

struct task_check {
  long long seen = 0;      // events received
  long long missed = 0;    // dropped by the ring before they were fetched
  long long disorder = 0;  // an event whose seq was not the one expected next
  long long more_replies = 0;
  long long expected = 0;  // the next seq expected
};

std::string fmt_stats(const char* name, const path_stats& p) {
  char buf[512];
  std::snprintf(
      buf, sizeof buf,
      "RESULT mode=poll path=%s requests=%zu median_ms=%.3f p99_ms=%.3f max_ms=%.3f median_bytes=%.0f "
      "max_bytes=%.0f total_bytes=%.0f poller_cpu_s=%.3f",
      name, p.ms.size(), pct(p.ms, 50), pct(p.ms, 99), pct(p.ms, 100), pct(p.bytes, 50), pct(p.bytes, 100),
      [&] {
        double t = 0;
        for (double b : p.bytes) t += b;
        return t;
      }(),
      p.cpu_s);
  return buf;
}

bool has_flag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return true;
  return false;
}
long flag_value(int argc, char** argv, const char* flag, long dflt) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return std::atol(argv[i + 1]);
  return dflt;
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const long n = (argc > 1 && argv[1][0] != '-') ? std::atol(argv[1]) : 100000;
  const bool poll = has_flag(argc, argv, "--poll");
  const bool hold = has_flag(argc, argv, "--hold");
  const bool probe = has_flag(argc, argv, "--forecast-probe");
  const long history = flag_value(argc, argv, "--history", -1);
  const int spin_us = static_cast<int>(flag_value(argc, argv, "--spin-us", 100));

  dx::options opts =
      dx::options{}.local_processes(2).threads_per_process(1).head_runs_tasks(false).persist_cost_model(false).http(
          "127.0.0.1:0");
  if (history >= 0) opts.task_history(static_cast<std::size_t>(history));
  const auto s0 = Clock::now();
  dx::cluster cl{opts};
  const double startup = secs(s0, Clock::now());
  const std::string endpoint = cl.http_endpoint();
  std::printf("RESULT mode=endpoint url=http://%s/ startup_s=%.4f\n", endpoint.c_str(), startup);
  std::fflush(stdout);

  std::atomic<bool> job_done{false};
  const auto give_up_after = std::chrono::seconds(60);  // after the job, at most
  std::atomic<Clock::time_point::rep> done_at{0};
  path_stats state_st, tasks_st;
  task_check check;
  long long state_completed_last = -1;
  double tasks_lag_s = -1;                         // from the job's end until the poller had seen every event
  std::thread pollers[2];                          // state, tasks
  std::atomic<double> state_cpu{0}, tasks_cpu{0};  // each poller thread's CPU so far
  auto past_deadline = [&] {
    return job_done && Clock::now() - Clock::time_point(Clock::duration(done_at.load())) > give_up_after;
  };
  if (poll) {
    pollers[0] = std::thread([&] {  // the page's pollState loop
      dx_support::http::client http(endpoint);
      const double c0 = thread_cpu_s();
      try {
        for (;;) {
          const auto a = Clock::now();
          auto r = http.get("/api/state");
          state_st.ms.push_back(secs(a, Clock::now()) * 1e3);
          state_st.bytes.push_back(static_cast<double>(r.body.size()));
          if (r.status != 200) throw std::runtime_error("status " + std::to_string(r.status));
          const std::size_t obj = r.body.find("\"tasks\":{");  // "tasks":{..."completed":N
          if (obj != std::string::npos) state_completed_last = json_uint_after(r.body, "completed", obj);
          state_cpu = thread_cpu_s() - c0;
          if ((job_done && state_completed_last >= n) || past_deadline()) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(1000));
        }
      } catch (const std::exception& e) {
        state_st.error = e.what();
      }
      state_st.cpu_s = thread_cpu_s() - c0;
    });
    pollers[1] = std::thread([&] {  // the page's pollTasks loop
      dx_support::http::client http(endpoint);
      const double c0 = thread_cpu_s();
      long long next = -1;  // none yet: the first request has no since
      try {
        for (;;) {
          std::string target = "/api/tasks?";
          if (next >= 0) target += "since=" + std::to_string(next) + "&";
          target += "limit=5000";
          const auto a = Clock::now();
          auto r = http.get(target);
          tasks_st.ms.push_back(secs(a, Clock::now()) * 1e3);
          tasks_st.bytes.push_back(static_cast<double>(r.body.size()));
          if (r.status != 200) throw std::runtime_error("status " + std::to_string(r.status));
          // {"first":F,"next":X,"more":B,"events":[{...,"seq":S,...},...]} in any key order: the
          // top-level keys are read outside the events array, the seqs inside it.
          const std::size_t ev = r.body.find("\"events\":[");
          if (ev == std::string::npos) throw std::runtime_error("unexpected /api/tasks body");
          const std::size_t ev_end = r.body.find(']', ev);
          if (ev_end == std::string::npos) throw std::runtime_error("unexpected /api/tasks body");
          const std::string top = r.body.substr(0, ev) + r.body.substr(ev_end);
          const long long first = json_uint_after(top, "first");
          const long long nx = json_uint_after(top, "next");
          const bool more = top.find("\"more\":true") != std::string::npos;
          const std::size_t head_at = ev, tail = ev_end;
          if (next >= 0 && first > check.expected) {  // the ring dropped events before we got them
            check.missed += first - check.expected;
            check.expected = first;
          } else if (next < 0 && first > 0) {
            check.missed += first;
            check.expected = first;
          }
          long long events = 0;
          for (std::size_t p = head_at; p < tail;) {
            std::size_t at = 0;
            const long long seq = json_uint_after(r.body, "seq", p, &at);
            if (seq < 0 || at > tail) break;
            ++events;
            if (seq != check.expected) ++check.disorder;
            check.expected = seq + 1;
            p = at;
          }
          check.seen += events;
          tasks_cpu = thread_cpu_s() - c0;
          if (more) ++check.more_replies;
          next = nx;
          if (job_done && next >= n) {
            tasks_lag_s = secs(Clock::time_point(Clock::duration(done_at.load())), Clock::now());
            break;
          }
          if (past_deadline()) break;
          if (!(more && events > 0)) std::this_thread::sleep_for(std::chrono::milliseconds(500));
        }
      } catch (const std::exception& e) {
        tasks_st.error = e.what();
      }
      tasks_st.cpu_s = thread_cpu_s() - c0;
    });
  }

  const double cpu0 = process_cpu_s(), pcpu0 = state_cpu + tasks_cpu;
  const auto t0 = Clock::now();
  std::vector<dx::future<int>> fs;
  fs.reserve(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) fs.push_back(cl.submit(spin, spin_us));
  if (probe) {
    std::vector<double> fc_ms, state_ms;
    for (int i = 0; i < 5; ++i) {
      const auto a = Clock::now();
      const dx::forecast f = cl.forecast();
      fc_ms.push_back(secs(a, Clock::now()) * 1e3);
      (void)f;
    }
    dx_support::http::client http(endpoint);
    for (int i = 0; i < 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(600));
      const auto a = Clock::now();
      (void)http.get("/api/state");
      state_ms.push_back(secs(a, Clock::now()) * 1e3);
    }
    const auto a = Clock::now();
    (void)http.get("/metrics");
    const double metrics_ms = secs(a, Clock::now()) * 1e3;
    std::printf(
        "RESULT mode=forecast_probe queued=%ld forecast_ms_median=%.2f forecast_ms_max=%.2f state_ms=%.2f,%.2f,%.2f "
        "metrics_ms=%.2f\n",
        n, pct(fc_ms, 50), pct(fc_ms, 100), state_ms[0], state_ms[1], state_ms[2], metrics_ms);
    std::fflush(stdout);
  }
  const std::vector<int> vs = dx::when_all(std::move(fs)).get();
  const auto t1 = Clock::now();
  const double cpu1 = process_cpu_s(), pcpu1 = state_cpu + tasks_cpu;
  done_at = t1.time_since_epoch().count();
  job_done = true;
  long long sum = 0;
  for (int v : vs) sum += v;
  if (sum != static_cast<long long>(n) * spin_us) {
    std::fprintf(stderr, "wrong results\n");
    return 2;
  }
  const long hwm_at_end = status_kb("VmHWM");
  for (auto& t : pollers)
    if (t.joinable()) t.join();
  const double poller_cpu = state_st.cpu_s + tasks_st.cpu_s;  // includes the catch-up after the job

  const double wall = secs(t0, t1);
  std::printf(
      "RESULT mode=run tasks=%ld spin_us=%d poll=%d history=%ld wall_s=%.4f tasks_per_s=%.1f startup_s=%.4f "
      "process_cpu_s=%.3f pollers_cpu_s=%.3f head_cpu_s=%.3f head_hwm_kb=%ld head_rss_kb=%ld\n",
      n, spin_us, poll ? 1 : 0, history >= 0 ? history : 100000L, wall, static_cast<double>(n) / wall, startup,
      cpu1 - cpu0, pcpu1 - pcpu0, (cpu1 - cpu0) - (pcpu1 - pcpu0), hwm_at_end, status_kb("VmRSS"));
  if (poll) {
    std::printf("%s\n", fmt_stats("state", state_st).c_str());
    std::printf("%s\n", fmt_stats("tasks", tasks_st).c_str());
    std::printf(
        "RESULT mode=poll_check events_seen=%lld missed=%lld disorder=%lld more_replies=%lld next=%lld "
        "state_completed_last=%lld catch_up_s=%.3f poller_cpu_s=%.3f errors=%s|%s\n",
        check.seen, check.missed, check.disorder, check.more_replies, check.expected, state_completed_last, tasks_lag_s,
        poller_cpu, state_st.error.empty() ? "none" : "state", tasks_st.error.empty() ? "none" : "tasks");
    if (!state_st.error.empty() || !tasks_st.error.empty())
      std::fprintf(stderr, "poller errors: state: %s; tasks: %s\n", state_st.error.c_str(), tasks_st.error.c_str());
  }
  std::fflush(stdout);
  if (hold) {
    std::printf("RESULT mode=hold url=http://%s/\n", endpoint.c_str());
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);
  }
  return 0;
}
