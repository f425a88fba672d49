#include "net_functions.hpp"

#include <unistd.h>

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
int pid_of_runner() { return static_cast<int>(::getpid()); }
std::map<std::string, int> count_words(std::vector<std::string> words) {
  std::map<std::string, int> out;
  for (auto& w : words) ++out[w];
  return out;
}

}  // namespace net_test

DX_REMOTE(net_test::square);
DX_REMOTE(net_test::add);
DX_REMOTE(net_test::noop);
DX_REMOTE(net_test::concat);
DX_REMOTE(net_test::make_vector);
DX_REMOTE(net_test::sum_vector);
DX_REMOTE(net_test::throw_out_of_range);
DX_REMOTE(net_test::sleep_ms_then);
DX_REMOTE(net_test::big_string);
DX_REMOTE(net_test::length_of);
DX_REMOTE(net_test::pid_of_runner);
DX_REMOTE_AS("net_test.count_words", net_test::count_words);
