// distributed.cpp — dx's distributed runtime against its yardsticks, one binary.
//
// The head starts copies of this binary as workers (options::local_processes), so main() hands
// over to dx::worker_main first when started as one. See run.py for the driver and
// benchmarks/RESULTS.md for the figures.
//
// Usage:
//   dx_bench_distributed throughput [N=100000] [reps=1]
//       cluster of local_processes(2) x threads_per_process(1), head_runs_tasks(false);
//       N x cl.submit(noop, i) into a vector, then when_all(...).get(); tasks/s = N / time from
//       the first submit to the last result. One untimed warm-up of min(N, 10000) tasks first.
//       Cluster start-up (constructor; it waits for the workers to join) is reported apart,
//       as are the CPU microseconds per task of the head and of the two workers.
//       --metrics-off: the head keeps no runtime metrics and no task history
//       (options .metrics(false).task_history(0)), to measure what they cost (see
//       benchmarks/observability/run.py).
//   dx_bench_distributed timeout_overhead [N=100000] [reps=5]
//       cluster as for throughput; in one process, rounds of N plain no-ops and N no-ops with
//       task_options{}.with_timeout(1 h).with_retries({.max_attempts = 3}) (order alternating by
//       round), each timed as throughput. Prints each batch, then the medians and
//       (timeout + retries) / plain as a ratio of times.
//   dx_bench_distributed cancel [N=100000]
//       cluster as for throughput; one hold_until_stopped task per worker keeps both workers busy,
//       then N no-ops are submitted (queued: held by the head or sent ahead to a worker) and
//       cancelled one by one with future::cancel(); timed from the first cancel until every one
//       of the N futures is ready (each checked to hold dx::cancelled). Then the holders are
//       cancelled; checks that no no-op ran (dx_tasks_completed_total for noop unchanged, and
//       dx_late_results_total counts the two holders only).
//   dx_bench_distributed latency [calls=2000] [msg_bytes=0] [--raw-first]
//       cluster of local_processes(1), head_runs_tasks(false); `calls` x cl.submit(noop, i).get()
//       each timed, after 200 untimed calls; the bytes the head writes and reads per call are
//       taken from TCP_INFO of the head's sockets. Then (or first, with --raw-first) a blocking TCP ping-pong
//       over 127.0.0.1 with TCP_NODELAY between this process and a forked child, `calls` round
//       trips of msg_bytes (0: the larger of the dx request and reply per call, at least 64 B).
//   --tls DIR (throughput, latency, fetch): mutual TLS on every link, with DIR/head.pem, head.key
//       and ca.pem (the worker processes use the same certificate). See run_tls.py.
//   dx_bench_distributed fetch [MiB=255] [--raw-first]
//       cluster of local_processes(1), head_runs_tasks(false), max_frame_size 512 MiB;
//       f = cl.submit(make_bytes, n); cl.wait_idle() (the worker made the string and reported
//       done; the value stays there, it is over the inline limit); then f.get() is timed: the
//       request, the transfer, the decoding into a std::string. Against it: a forked child
//       writes the same number of bytes over loopback TCP in 1 MiB writes after a 1-byte
//       request, the parent reads them into a preallocated buffer; timed from the request to
//       the last byte. The default is 255 MiB, not 256: a local worker process keeps the default
//       256 MiB frame limit whatever the head's max_frame_size (worker_main takes no such option),
//       and a 256 MiB string encodes to 256 MiB + 8 bytes.
//   Under mpirun (throughput, latency, fetch; see run_mpi.py), the workers are the MPI job's
//       other ranks over the MPI transport instead of local_processes: `mpirun -np 3` for
//       throughput, `-np 2` for latency and fetch; the raw TCP yardsticks (fork) are left out.
//   dx_bench_distributed memory [total=1000000] [batch=10000]
//       cluster as for throughput; batches of `batch` tasks are submitted, all got and the futures
//       dropped; VmRSS of the head (/proc/self/status) and of each worker (/proc/<pid>/status,
//       pid from cl.workers()) after the first 100,000 tasks and at the end.
//
// Output: RESULT lines of key=value pairs (one per measurement). Timing: std::chrono::steady_clock.

#include <dx/dx.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/tcp.h>  // struct tcp_info with byte counters (glibc's netinet/tcp.h lacks them)
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

// ---- registered functions -----------------------------------------------------------------------

int noop(int x) { return x; }
DX_REMOTE(noop);

// Holds a worker thread until its task is cancelled (or `ms` passes).
int hold_until_stopped(dx::stop_token st, int ms) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!st.stop_requested() && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return 0;
}
DX_REMOTE(hold_until_stopped);

std::string make_bytes(std::uint64_t n) {
  std::string s(n, '\0');
  for (std::uint64_t i = 0; i < n; i += 4096) s[i] = static_cast<char>('a' + (i / 4096) % 26);
  return s;
}
DX_REMOTE(make_bytes);

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

double pct(std::vector<double> v, double p) {  // nearest-rank percentile, as in the peer file
  std::sort(v.begin(), v.end());
  const auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(k, v.size() - 1)];
}

// VmRSS (or another field) of /proc/<pid>/status in KiB; pid 0 is this process.
long status_kb(long pid, const char* field) {
  std::ifstream f(pid == 0 ? std::string("/proc/self/status") : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(f, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  }
  return -1;
}

// CPU seconds (user + system) of another process, from /proc/<pid>/stat.
double proc_cpu_s(long pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = s.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream in(s.substr(close + 2));
  std::string tok;
  unsigned long utime = 0, stime = 0;
  for (int field = 3; in >> tok; ++field) {
    if (field == 14) utime = std::stoul(tok);
    if (field == 15) {
      stime = std::stoul(tok);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// Bytes sent (acknowledged) and received, and segments out and in, summed over this process's TCP
// sockets (TCP_INFO of every socket in /proc/self/fd): the head's traffic with its workers.
struct tcp_counts {
  double sent = 0, received = 0, segs_out = 0, segs_in = 0;
};
tcp_counts self_tcp() {
  tcp_counts c;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return c;
  while (dirent* e = readdir(d)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(d)) continue;
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) continue;
    c.sent += static_cast<double>(ti.tcpi_bytes_acked);
    c.received += static_cast<double>(ti.tcpi_bytes_received);
    c.segs_out += ti.tcpi_segs_out;
    c.segs_in += ti.tcpi_segs_in;
  }
  closedir(d);
  return c;
}

std::vector<long> worker_pids(const dx::cluster& cl) {
  std::vector<long> pids;
  for (const auto& w : cl.workers())
    if (w.id != "head") pids.push_back(static_cast<long>(w.pid));
  return pids;
}

// ---- raw TCP yardsticks (as in ../shared/peers/physical_limits.cpp) ----------------------------

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t k = ::write(fd, p, n);
    if (k < 0) die("write");
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}
void read_all(int fd, char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t k = ::read(fd, p, n);
    if (k <= 0) die("read");
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}
void nodelay(int fd) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) die("TCP_NODELAY");
}
std::pair<int, int> listen_loopback() {
  const int lfd = socket(AF_INET, SOCK_STREAM, 0);
  if (lfd < 0) die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
  if (listen(lfd, 1) != 0) die("listen");
  socklen_t len = sizeof a;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  return {lfd, ntohs(a.sin_port)};
}
int connect_loopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
  return fd;
}

// Ping-pong of msg bytes with a forked echo process; returns each round trip in microseconds.
std::vector<double> raw_pingpong(long calls, std::size_t msg, long warm) {
  auto [lfd, port] = listen_loopback();
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(lfd);
    const int fd = connect_loopback(port);
    nodelay(fd);
    std::vector<char> buf(msg);
    for (long i = 0; i < warm + calls; ++i) {
      read_all(fd, buf.data(), msg);
      write_all(fd, buf.data(), msg);
    }
    close(fd);
    _exit(0);
  }
  const int fd = accept(lfd, nullptr, nullptr);
  if (fd < 0) die("accept");
  nodelay(fd);
  std::vector<char> buf(msg, 'x');
  for (long i = 0; i < warm; ++i) {
    write_all(fd, buf.data(), msg);
    read_all(fd, buf.data(), msg);
  }
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(calls));
  for (long i = 0; i < calls; ++i) {
    const auto a = Clock::now();
    write_all(fd, buf.data(), msg);
    read_all(fd, buf.data(), msg);
    us.push_back(secs(a, Clock::now()) * 1e6);
  }
  close(fd);
  close(lfd);
  waitpid(pid, nullptr, 0);
  return us;
}

// A forked child sends `bytes` in `chunk` writes after a 1-byte request; returns the seconds from
// the request to the last byte read here into a preallocated (and pre-touched) buffer.
double raw_bulk(std::size_t bytes, std::size_t chunk) {
  auto [lfd, port] = listen_loopback();
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(lfd);
    const int fd = connect_loopback(port);
    std::vector<char> buf(chunk, 'x');
    char req = 0;
    read_all(fd, &req, 1);
    std::size_t sent = 0;
    while (sent < bytes) {
      const std::size_t k = std::min(chunk, bytes - sent);
      write_all(fd, buf.data(), k);
      sent += k;
    }
    close(fd);
    _exit(0);
  }
  const int fd = accept(lfd, nullptr, nullptr);
  if (fd < 0) die("accept");
  std::string sink(bytes, '\0');  // allocated and touched before the clock starts
  char req = 1;
  const auto t0 = Clock::now();
  write_all(fd, &req, 1);
  read_all(fd, sink.data(), bytes);
  const double s = secs(t0, Clock::now());
  close(fd);
  close(lfd);
  waitpid(pid, nullptr, 0);
  if (sink[bytes / 2] != 'x') std::fprintf(stderr, "raw_bulk: bad byte\n");
  return s;
}

// ---- modes ---------------------------------------------------------------------------------------

long arg_long(int argc, char** argv, int i, long dflt) {
  return (argc > i && argv[i][0] != '-') ? std::atol(argv[i]) : dflt;
}
bool has_flag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0) return true;
  return false;
}

dx::tls_options g_tls;  // --tls DIR: head.pem, head.key and ca.pem of DIR; workers are started with them

/// `o` with TLS on every link when --tls was given.
dx::options secured(dx::options o) {
  if (g_tls.enabled()) o.tls(g_tls);
  return o;
}

/// Under mpirun (run_mpi.py) the workers are the job's other ranks, joined over the MPI transport
/// (one thread each): the cluster waits for them instead of starting processes.
bool under_mpi() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr; }

/// A head without tasks of its own and `n` one-thread worker processes.
dx::options with_workers(std::size_t n) {
  dx::options o = dx::options{}.head_runs_tasks(false);
  if (!under_mpi()) o.local_processes(n).threads_per_process(1);
  return secured(o);
}

dx::options two_workers() { return with_workers(2); }
bool g_metrics_off = false;  // --metrics-off (throughput only)

// Submits n no-ops (arguments first..first+n-1), waits for all with when_all; checks the sum.
void run_batch(dx::cluster& cl, long first, long n) {
  std::vector<dx::future<int>> fs;
  fs.reserve(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) fs.push_back(cl.submit(noop, static_cast<int>((first + i) & 0xffff)));
  const std::vector<int> vs = dx::when_all(std::move(fs)).get();
  long long sum = 0, expect = 0;
  for (long i = 0; i < n; ++i) {
    sum += vs[static_cast<std::size_t>(i)];
    expect += (first + i) & 0xffff;
  }
  if (sum != expect) {
    std::fprintf(stderr, "wrong results: sum %lld, expected %lld\n", sum, expect);
    std::exit(2);
  }
}

int throughput(long n, long reps) {
  const auto s0 = Clock::now();
  dx::options opts = two_workers();
  if (g_metrics_off) opts.metrics(false).task_history(0);
  dx::cluster cl{opts};
  const double startup = secs(s0, Clock::now());
  const auto pids = worker_pids(cl);
  if (pids.size() != 2) die("expected 2 workers");
  run_batch(cl, 0, std::min(n, 10000L));  // warm-up
  cl.wait_idle();
  for (long r = 0; r < reps; ++r) {
    const double h0 = self_cpu_s(), w0 = proc_cpu_s(pids[0]) + proc_cpu_s(pids[1]);
    const auto t0 = Clock::now();
    run_batch(cl, 0, n);
    const double t = secs(t0, Clock::now());
    const double h1 = self_cpu_s(), w1 = proc_cpu_s(pids[0]) + proc_cpu_s(pids[1]);
    std::printf(
        "RESULT mode=throughput tasks=%ld rep=%ld wall_s=%.4f tasks_per_s=%.1f startup_s=%.4f "
        "head_cpu_us_per_task=%.2f workers_cpu_us_per_task=%.2f metrics=%s\n",
        n, r, t, static_cast<double>(n) / t, startup, (h1 - h0) * 1e6 / static_cast<double>(n),
        (w1 - w0) * 1e6 / static_cast<double>(n), g_metrics_off ? "off" : "on");
    std::fflush(stdout);
  }
  return 0;
}

std::vector<dx::future<int>> submit_noops(dx::cluster& cl, long n, bool with_timeout) {
  std::vector<dx::future<int>> fs;
  fs.reserve(static_cast<std::size_t>(n));
  // Both built once, so that the only difference between the two is the time limit and the retries.
  const dx::task_options limited =
      dx::task_options{}.with_timeout(std::chrono::hours(1)).with_retries({.max_attempts = 3});
  const dx::task_options plain;
  const dx::task_options& opts = with_timeout ? limited : plain;
  for (long i = 0; i < n; ++i) fs.push_back(cl.submit(opts, noop, static_cast<int>(i & 0xffff)));
  return fs;
}

int timeout_overhead(long n, long reps) {
  dx::cluster cl{two_workers()};
  if (worker_pids(cl).size() != 2) die("expected 2 workers");
  run_batch(cl, 0, std::min(n, 10000L));  // warm-up
  std::vector<double> plain, timed;
  for (long r = 0; r < reps; ++r) {
    for (int k = 0; k < 2; ++k) {
      const bool with_timeout = (k == 0) == (r % 2 == 1);
      const auto t0 = Clock::now();
      auto fs = submit_noops(cl, n, with_timeout);
      const std::vector<int> vs = dx::when_all(std::move(fs)).get();
      const double t = secs(t0, Clock::now());
      if (static_cast<long>(vs.size()) != n) die("missing results");
      (with_timeout ? timed : plain).push_back(t);
      std::printf("RESULT mode=timeout_overhead tasks=%ld rep=%ld system=%s wall_s=%.4f tasks_per_s=%.1f\n", n, r,
                  with_timeout ? "with_timeout_retries" : "plain", t, static_cast<double>(n) / t);
      std::fflush(stdout);
    }
  }
  const double mp = pct(plain, 50), mt = pct(timed, 50);
  std::printf(
      "RESULT mode=timeout_overhead_summary tasks=%ld reps=%ld plain_median_s=%.4f with_timeout_retries_median_s=%.4f "
      "plain_tasks_per_s=%.1f with_timeout_retries_tasks_per_s=%.1f ratio=%.3f\n",
      n, reps, mp, mt, static_cast<double>(n) / mp, static_cast<double>(n) / mt, mt / mp);
  return 0;
}

int cancel_queued(long n) {
  dx::cluster cl{two_workers()};
  if (worker_pids(cl).size() != 2) die("expected 2 workers");
  run_batch(cl, 0, std::min(n, 10000L));  // warm-up
  cl.wait_idle();
  const double completed_before =
      cl.metrics().value("dx_tasks_completed_total", {{"kind", "noop"}, {"worker", "w1"}}).value_or(0) +
      cl.metrics().value("dx_tasks_completed_total", {{"kind", "noop"}, {"worker", "w2"}}).value_or(0);
  const double late_before = cl.metrics().value("dx_late_results_total").value_or(0);
  std::vector<dx::future<int>> holders;
  for (int i = 0; i < 2; ++i) holders.push_back(cl.submit(hold_until_stopped, 60'000));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // both holders start
  auto fs = submit_noops(cl, n, false);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::size_t on_workers = 0;
  for (const auto& w : cl.workers()) on_workers += w.tasks_assigned;
  on_workers -= std::min<std::size_t>(on_workers, 2);  // the holders
  const auto t0 = Clock::now();
  for (auto& f : fs) f.cancel();
  for (auto& f : fs)
    if (f.wait_for(std::chrono::seconds(30)) != dx::future_status::ready) die("a cancelled future did not settle");
  const double t = secs(t0, Clock::now());
  std::size_t cancelled = 0;
  for (auto& f : fs) {
    try {
      f.get();
    } catch (const dx::cancelled&) {
      ++cancelled;
    }
  }
  for (auto& h : holders) h.cancel();
  // The holders' late results arrive; any no-op that ran would report too.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (cl.metrics().value("dx_late_results_total").value_or(0) < late_before + 2 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double late = cl.metrics().value("dx_late_results_total").value_or(0) - late_before;
  const double completed =
      cl.metrics().value("dx_tasks_completed_total", {{"kind", "noop"}, {"worker", "w1"}}).value_or(0) +
      cl.metrics().value("dx_tasks_completed_total", {{"kind", "noop"}, {"worker", "w2"}}).value_or(0) -
      completed_before;
  std::printf(
      "RESULT mode=cancel tasks=%ld sent_to_workers=%zu settle_s=%.4f cancelled=%zu noops_completed=%.0f "
      "late_results=%.0f\n",
      n, on_workers, t, cancelled, completed, late);
  return cancelled == static_cast<std::size_t>(n) && completed == 0 && late == 2 ? 0 : 3;
}

void report_latency(const char* system, const std::vector<double>& us, std::size_t msg, double bytes_out,
                    double bytes_in) {
  std::printf(
      "RESULT mode=latency system=%s calls=%zu msg_bytes=%zu median_us=%.2f p90_us=%.2f p99_us=%.2f "
      "min_us=%.2f bytes_out_per_call=%.1f bytes_in_per_call=%.1f\n",
      system, us.size(), msg, pct(us, 50), pct(us, 90), pct(us, 99), pct(us, 0), bytes_out, bytes_in);
  std::fflush(stdout);
}

int latency(long calls, long msg_arg, bool raw_first) {
  const long warm = 200;
  std::size_t msg = msg_arg > 0 ? static_cast<std::size_t>(msg_arg) : 64;
  if (raw_first) report_latency("raw_tcp", raw_pingpong(calls, msg, warm), msg, msg, msg);

  dx::cluster cl{with_workers(1)};
  for (long i = 0; i < warm; ++i)
    if (cl.submit(noop, static_cast<int>(i)).get() != static_cast<int>(i)) die("wrong result");
  cl.wait_idle();
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(calls));
  const tcp_counts c0 = self_tcp();
  for (long i = 0; i < calls; ++i) {
    const auto a = Clock::now();
    const int v = cl.submit(noop, static_cast<int>(i)).get();
    us.push_back(secs(a, Clock::now()) * 1e6);
    if (v != static_cast<int>(i)) die("wrong result");
  }
  const tcp_counts c1 = self_tcp();
  const double n = static_cast<double>(calls);
  const double out = (c1.sent - c0.sent) / n, in = (c1.received - c0.received) / n;
  report_latency("dx", us, 0, out, in);
  std::printf("RESULT mode=latency_segments segs_out_per_call=%.2f segs_in_per_call=%.2f\n",
              (c1.segs_out - c0.segs_out) / n, (c1.segs_in - c0.segs_in) / n);

  if (!raw_first && !under_mpi()) {  // no fork() in an MPI process
    if (msg_arg <= 0) msg = std::max<std::size_t>(64, static_cast<std::size_t>(std::max(out, in) + 0.5));
    report_latency("raw_tcp", raw_pingpong(calls, msg, warm), msg, msg, msg);
  }
  return 0;
}

int fetch(long mib, bool raw_first) {
  const std::size_t bytes = static_cast<std::size_t>(mib) << 20;
  auto raw = [&] {
    const double s = raw_bulk(bytes, std::size_t{1} << 20);
    std::printf("RESULT mode=fetch system=raw_tcp bytes=%zu seconds=%.4f GBps=%.3f\n", bytes, s,
                static_cast<double>(bytes) / s / 1e9);
    std::fflush(stdout);
  };
  if (raw_first) raw();
  {
    dx::cluster cl{with_workers(1).max_frame_size(std::uint64_t{512} << 20)};
    // warm-up: a smaller fetch over the same path
    if (cl.submit(make_bytes, std::uint64_t{1} << 20).get().size() != (std::size_t{1} << 20)) die("warm-up");
    auto f = cl.submit(make_bytes, static_cast<std::uint64_t>(bytes));
    const auto g0 = Clock::now();
    cl.wait_idle();
    const double gen = secs(g0, Clock::now());
    const double h0 = self_cpu_s();
    const auto t0 = Clock::now();
    const std::string v = f.get();
    const double s = secs(t0, Clock::now());
    const double h1 = self_cpu_s();
    if (v.size() != bytes || v[4096] != 'b') die("wrong fetched value");
    std::printf(
        "RESULT mode=fetch system=dx bytes=%zu seconds=%.4f GBps=%.3f generate_s=%.4f head_cpu_s=%.4f "
        "head_hwm_kb=%ld\n",
        bytes, s, static_cast<double>(bytes) / s / 1e9, gen, h1 - h0, status_kb(0, "VmHWM"));
    std::fflush(stdout);
  }
  if (!raw_first && !under_mpi()) raw();  // no fork() in an MPI process
  return 0;
}

int memory(long total, long batch) {
  dx::cluster cl{two_workers()};
  const auto pids = worker_pids(cl);
  if (pids.size() != 2) die("expected 2 workers");
  auto sample = [&](long done) {
    std::printf("RESULT mode=memory tasks_done=%ld head_rss_kb=%ld w1_rss_kb=%ld w2_rss_kb=%ld\n", done,
                status_kb(0, "VmRSS"), status_kb(pids[0], "VmRSS"), status_kb(pids[1], "VmRSS"));
    std::fflush(stdout);
  };
  sample(0);
  const auto t0 = Clock::now();
  for (long done = 0; done < total;) {
    const long n = std::min(batch, total - done);
    run_batch(cl, done, n);
    done += n;
    if (done == 100000 || done == total || done % 200000 == 0) sample(done);
  }
  std::printf("RESULT mode=memory_time tasks=%ld seconds=%.3f tasks_per_s=%.1f\n", total, secs(t0, Clock::now()),
              static_cast<double>(total) / secs(t0, Clock::now()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  const bool raw_first = has_flag(argc, argv, "--raw-first");
  g_metrics_off = has_flag(argc, argv, "--metrics-off");
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--tls") == 0) {
      const std::string dir = argv[i + 1];
      g_tls =
          dx::tls_options{.certificate = dir + "/head.pem", .private_key = dir + "/head.key", .ca = dir + "/ca.pem"};
    }
  if (mode == "throughput") return throughput(arg_long(argc, argv, 2, 100000), arg_long(argc, argv, 3, 1));
  if (mode == "timeout_overhead") return timeout_overhead(arg_long(argc, argv, 2, 100000), arg_long(argc, argv, 3, 5));
  if (mode == "cancel") return cancel_queued(arg_long(argc, argv, 2, 100000));
  if (mode == "latency") return latency(arg_long(argc, argv, 2, 2000), arg_long(argc, argv, 3, 0), raw_first);
  if (mode == "fetch") return fetch(arg_long(argc, argv, 2, 255), raw_first);
  if (mode == "memory") return memory(arg_long(argc, argv, 2, 1000000), arg_long(argc, argv, 3, 10000));
  std::fprintf(stderr,
               "usage: %s throughput [N=100000] [reps=1] [--metrics-off] | timeout_overhead [N=100000] [reps=5] | "
               "cancel [N=100000] | latency [calls=2000] [msg_bytes=0] [--raw-first] | "
               "fetch [MiB=255] [--raw-first] | memory [total=1000000] [batch=10000]\n",
               argv[0]);
  return 1;
}
