// Registered functions shared by the distributed tests (defined and registered in
// net_functions.cpp, so every worker process of dx_net_tests has them).
#pragma once

#include <dx/dx.hpp>

#include <map>
#include <string>
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
int pid_of_runner();
std::map<std::string, int> count_words(std::vector<std::string> words);

}  // namespace net_test
