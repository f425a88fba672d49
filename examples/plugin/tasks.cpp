// A task library for dx-worker: build it as a shared module against dx::plugin, then
//
//   dx-worker --connect HEAD:PORT --plugin ./libdx_example_tasks.so
//
// and the head can submit these functions by their registered names.
#include "tasks.hpp"

#include <dx/remote.hpp>

#include <string>
#include <vector>

namespace tasks {

std::string shout(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return s + "!";
}

std::vector<long> primes_below(long n) {
  std::vector<long> out;
  for (long k = 2; k < n; ++k) {
    bool prime = true;
    for (long d = 2; d * d <= k && prime; ++d) prime = k % d != 0;
    if (prime) out.push_back(k);
  }
  return out;
}

}  // namespace tasks

DX_REMOTE_AS("tasks.shout", tasks::shout);
DX_REMOTE_AS("tasks.primes_below", tasks::primes_below);
