#include "net_functions.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include <chrono>
#include <numeric>
#include <stdexcept>
#include <thread>

namespace net_test {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
void noop() {}
std::string concat(std::string a, std::string b) { return a + b; }
std::vector<double> make_vector(int n, double v) { return std::vector<double>(static_cast<std::size_t>(n), v); }
double sum_vector(std::vector<double> v) { return std::accumulate(v.begin(), v.end(), 0.0); }
int throw_out_of_range(int x) { throw std::out_of_range("index " + std::to_string(x) + " is out of range"); }
int sleep_ms_then(int ms, int value) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return value;
}
std::string big_string(int bytes) {
  std::string s(static_cast<std::size_t>(bytes), '\0');
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}
std::size_t length_of(std::string s) { return s.size(); }
std::size_t total_length8(std::string a, std::string b, std::string c, std::string d, std::string e, std::string f,
                          std::string g, std::string h) {
  return a.size() + b.size() + c.size() + d.size() + e.size() + f.size() + g.size() + h.size();
}
int logged_sleep(std::string path, int id, int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + path);
  const std::string line = std::to_string(id) + " " + std::to_string(::getpid()) + "\n";
  const bool whole = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!whole) throw std::runtime_error("cannot append to " + path);
  return static_cast<int>(::getpid());
}
int pid_of_runner() { return static_cast<int>(::getpid()); }
long widen(int x) { return x; }
std::map<std::string, int> count_words(std::vector<std::string> words) {
  std::map<std::string, int> out;
  for (auto& w : words) ++out[w];
  return out;
}
point scale_point(point p, int k) { return {p.x * k, p.y * k, p.label + "*" + std::to_string(k)}; }
std::optional<int> half_if_even(int x) {
  if (x % 2) return std::nullopt;
  return x / 2;
}
std::variant<int, std::string> int_or_text(int x) {
  if (x < 0) return std::string("negative");
  return x;
}
std::tuple<int, std::string, double> make_triple(int x) { return {x, std::to_string(x), x / 2.0}; }
int sleep_then_pid(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<int>(::getpid());
}
run_span timed_sleep(int ms) {
  run_span r;
  r.pid = static_cast<int>(::getpid());
  r.start_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  r.end_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  return r;
}
int kill_own_worker(int x) {
  if (std::getenv("DX_WORKER_OF") == nullptr) throw std::logic_error("kill_own_worker outside a worker process");
  ::raise(SIGKILL);
  return x;
}

}  // namespace net_test

DX_REMOTE(net_test::square);
DX_REMOTE(net_test::timed_sleep);
DX_REMOTE(net_test::add);
DX_REMOTE(net_test::noop);
DX_REMOTE(net_test::concat);
DX_REMOTE(net_test::make_vector);
DX_REMOTE(net_test::sum_vector);
DX_REMOTE(net_test::throw_out_of_range);
DX_REMOTE(net_test::sleep_ms_then);
DX_REMOTE(net_test::big_string);
DX_REMOTE(net_test::length_of);
DX_REMOTE(net_test::total_length8);
DX_REMOTE(net_test::logged_sleep);
DX_REMOTE(net_test::pid_of_runner);
DX_REMOTE(net_test::widen);
DX_REMOTE_AS("net_test.count_words", net_test::count_words);
DX_REMOTE(net_test::scale_point);
DX_REMOTE(net_test::half_if_even);
DX_REMOTE(net_test::int_or_text);
DX_REMOTE(net_test::make_triple);
DX_REMOTE(net_test::sleep_then_pid);
DX_REMOTE(net_test::kill_own_worker);
