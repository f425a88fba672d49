// Registered functions shared by the distributed tests (defined and registered in
// net_functions.cpp, so every worker process of dx_net_tests has them).
#pragma once

#include <dx/archive.hpp>
#include <dx/dx.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace net_test {

int square(int x);
int add(int a, int b);
void noop();
std::string concat(std::string a, std::string b);
std::vector<double> make_vector(int n, double v);
double sum_vector(std::vector<double> v);
int throw_out_of_range(int x);
int sleep_ms_then(int ms, int value);
std::string big_string(int bytes);
std::size_t length_of(std::string s);
/// The total length of eight strings: a task with eight inputs.
std::size_t total_length8(std::string a, std::string b, std::string c, std::string d, std::string e, std::string f,
                          std::string g, std::string h);
/// Sleeps `ms`, then appends "<id> <pid>" as a line to the file at `path` (O_APPEND: one whole line
/// per run, whichever process runs it), so a test counts every run, not only the committed ones.
int logged_sleep(std::string path, int id, int ms);
int pid_of_runner();
/// x as a long: a result whose type differs from the int parameters that take it.
long widen(int x);
std::map<std::string, int> count_words(std::vector<std::string> words);

/// A user type with a serialize member.
struct point {
  int x = 0;
  double y = 0;
  std::string label;
  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& x& y& label;
  }
  bool operator==(const point&) const = default;
};
point scale_point(point p, int k);
std::optional<int> half_if_even(int x);
std::variant<int, std::string> int_or_text(int x);
std::tuple<int, std::string, double> make_triple(int x);
/// Sleeps `ms` and returns the pid of the process that ran it.
int sleep_then_pid(int ms);
/// Where and when a call ran (steady clock: one time base for all processes of a machine).
struct run_span {
  int pid = 0;
  std::int64_t start_ns = 0;
  std::int64_t end_ns = 0;
  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& pid& start_ns& end_ns;
  }
};
/// Sleeps `ms` and says where and when.
run_span timed_sleep(int ms);
/// Kills the process that runs it (SIGKILL) when that is a worker process started by a head
/// (DX_WORKER_OF is set); elsewhere it throws instead, so it can never kill the test runner.
int kill_own_worker(int x);

}  // namespace net_test
