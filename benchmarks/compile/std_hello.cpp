// The baseline: a hello world including the standard headers a dx program would otherwise use.
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

int main() {
  std::cout << "hello\n";
  return 0;
}
