// hostile.cpp — a head's remote no-op throughput and its memory while attackers connect to its
// worker port and announce frame bodies near the frame limit, against the same run unattacked.
//
// The head starts copies of this binary as workers (options::local_processes), so main() hands
// over to dx::worker_main first when started as one. Driver: run_hostile.py; figures in
// benchmarks/RESULTS.md.
//
// Usage:
//   dx_bench_hostile [N=50000] [attackers=0] [announce_mib=255]
//       cluster of local_processes(2) x threads_per_process(1), head_runs_tasks(false), the
//       default frame limit (256 MiB). After an untimed warm-up of 5,000 tasks, `attackers`
//       threads each hold one raw TCP connection to the head's worker port at a time: connect,
//       send a 24-byte frame header announcing a hello with a payload of announce_mib MiB, then
//       1 KiB of it every millisecond until the head closes the connection, and connect again.
//       Then N x cl.submit(noop, i) and when_all(...).get(), timed; tasks/s = N / time.
//       The head's peak resident memory (VmHWM of this process) is read after the run, and the
//       attackers' connections counted.
//
// Output: one RESULT line of key=value pairs.

#include <dx/dx.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

int noop(int x) { return x; }
DX_REMOTE(noop);

namespace {

long arg_long(int argc, char** argv, int i, long fallback) { return i < argc ? std::atol(argv[i]) : fallback; }

/// VmHWM of this process in MiB.
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

/// The 24-byte header of a frame of type hello (1) with an archive of 0 bytes and a payload of
/// `payload` bytes: what an attacker needs to make a head reserve memory, if it sizes bodies from
/// headers.
std::string header_announcing(std::uint64_t payload) {
  std::string h(24, '\0');
  char* p = h.data();
  auto put = [&](std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) *p++ = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  put(0x31575844, 4);  // "DXW1"
  put(4, 2);           // protocol version
  put(1, 2);           // hello
  put(0, 4);           // flags
  put(0, 4);           // archive size
  put(payload, 8);
  return h;
}

void attack(const std::string& endpoint, std::uint64_t announce, const std::atomic<bool>& stop,
            std::atomic<long>& connections) {
  const auto colon = endpoint.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(endpoint.c_str() + colon + 1)));
  ::inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &addr.sin_addr);
  const std::string header = header_announcing(announce);
  const std::string trickle(1024, 'x');
  char sink[4096];
  while (!stop.load(std::memory_order_relaxed)) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      if (fd >= 0) ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    connections.fetch_add(1, std::memory_order_relaxed);
    bool open = ::send(fd, header.data(), header.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(header.size());
    while (open && !stop.load(std::memory_order_relaxed)) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 1) > 0 && ::recv(fd, sink, sizeof sink, MSG_DONTWAIT) == 0) break;  // closed by the head
      open = ::send(fd, trickle.data(), trickle.size(), MSG_NOSIGNAL | MSG_DONTWAIT) > 0 || errno == EAGAIN;
    }
    ::close(fd);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  const long n = arg_long(argc, argv, 1, 50000);
  const long attackers = arg_long(argc, argv, 2, 0);
  const long announce_mib = arg_long(argc, argv, 3, 255);
  dx::cluster cl{dx::options{}.local_processes(2).threads_per_process(1).head_runs_tasks(false)};
  {
    std::vector<dx::future<int>> warm;
    for (int i = 0; i < 5000; ++i) warm.push_back(cl.submit(noop, i));
    dx::when_all(std::move(warm)).get();
  }
  std::atomic<bool> stop{false};
  std::atomic<long> connections{0};
  std::vector<std::thread> threads;
  for (long i = 0; i < attackers; ++i)
    threads.emplace_back(attack, cl.endpoint(), static_cast<std::uint64_t>(announce_mib) << 20, std::cref(stop),
                         std::ref(connections));
  if (attackers > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the attack is under way
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<dx::future<int>> fs;
  fs.reserve(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) fs.push_back(cl.submit(noop, static_cast<int>(i)));
  dx::when_all(std::move(fs)).get();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stop = true;
  for (auto& t : threads) t.join();
  std::printf(
      "RESULT tasks=%ld attackers=%ld announce_mib=%ld wall_s=%.4f tasks_per_s=%.1f peak_rss_mib=%.1f "
      "attack_connections=%ld\n",
      n, attackers, announce_mib, wall, n / wall, peak_rss_mib(), connections.load());
  return 0;
}
